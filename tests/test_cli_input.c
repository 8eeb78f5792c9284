/*
 * tests/test_cli_input.c -- hostile or odd input to the real binary: request
 * lines whose arrays lie about their shape, shapes that overflow, NUL bytes,
 * non-finite params in JSON output, and `show FILE.deja --md`.
 */
#include "cli_harness.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>

#include <jansson.h>

#include "deja.h"

static char tmp_root[] = "/tmp/deja-test-input-XXXXXX";

static int group_setup(void **state)
{
    (void)state;
    return cli_group_begin(tmp_root);
}

static int group_teardown(void **state)
{
    (void)state;
    cli_rm_rf(tmp_root);
    return 0;
}

/* Run `deja --store STORE run --model textgen-v1 --requests FILE` where
 * FILE holds `len` bytes of `line`; the output (stdout and stderr) in
 * `out`; returns the exit status. With `limit_mb`, under that much address
 * space (not under ASan, whose shadow memory needs more). */
static int run_line(const char *store, const char *line, size_t len, unsigned limit_mb, char *out,
                    size_t cap)
{
    const char *file = cli_tmp_path(tmp_root, "req.jsonl");
    char cmd[2048];
    FILE *fp = fopen(file, "wb");
    size_t n;

    assert_non_null(fp);
    assert_int_equal(fwrite(line, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
#if defined(__SANITIZE_ADDRESS__) /* gcc */
    limit_mb = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) /* clang */
    limit_mb = 0;
#endif
#endif
    if (limit_mb != 0)
        snprintf(cmd, sizeof cmd, "ulimit -v %u; %s --store %s run --model textgen-v1 --requests %s 2>&1",
                 limit_mb * 1024, DEJA_BIN, store, file);
    else
        snprintf(cmd, sizeof cmd, "%s --store %s run --model textgen-v1 --requests %s 2>&1",
                 DEJA_BIN, store, file);
    fp = popen(cmd, "r");
    assert_non_null(fp);
    n = fread(out, 1, cap - 1, fp);
    out[n] = '\0';
    const int status = pclose(fp);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* A short line whose nested array claims, by its first elements, 14^8
 * (1.5 billion) floats: refused as not rectangular before anything that
 * size is allocated (the run has 1 GiB of address space). */
static void test_cli_input__array_shape_checked_before_allocating(void **state)
{
    (void)state;
    char line[1024], out[4096];
    size_t n = 0;
    const char *store = cli_tmp_path(tmp_root, "shape.store");

    n += (size_t)snprintf(line + n, sizeof line - n, "{\"inputs\": {\"x\": ");
    for (int d = 0; d < 8; d++)
        n += (size_t)snprintf(line + n, sizeof line - n, "[");
    n += (size_t)snprintf(line + n, sizeof line - n, "0");
    for (int d = 0; d < 8; d++) {
        for (int k = 1; k < 14; k++)
            n += (size_t)snprintf(line + n, sizeof line - n, ",0");
        n += (size_t)snprintf(line + n, sizeof line - n, "]");
    }
    n += (size_t)snprintf(line + n, sizeof line - n, "}}\n");
    assert_true(n < 500);
    assert_int_equal(run_line(store, line, n, 1024, out, sizeof out), 2);
    if (strstr(out, "rectangular") == NULL)
        fail_msg("output: %s", out);
}

/* A shape whose element count overflows names the problem, not "needs 0". */
static void test_cli_input__shape_overflow(void **state)
{
    (void)state;
    char out[4096];
    const char *store = cli_tmp_path(tmp_root, "overflow.store");
    const char line[] = "{\"inputs\": {\"x\": {\"dtype\": \"f32\", \"shape\": [4611686018427387904, "
                        "4], \"base64\": \"AAAAAA==\"}}}\n";

    assert_int_equal(run_line(store, line, sizeof line - 1, 0, out, sizeof out), 2);
    if (strstr(out, "more than") == NULL || strstr(out, "needs 0") != NULL)
        fail_msg("output: %s", out);
}

/* A raw NUL byte inside a line is named as such. */
static void test_cli_input__nul_byte(void **state)
{
    (void)state;
    char out[4096];
    const char *store = cli_tmp_path(tmp_root, "nul.store");
    const char line[] = "{\"inputs\": {\"p\": \"a\0b\"}}\n";

    assert_int_equal(run_line(store, line, sizeof line - 1, 0, out, sizeof out), 2);
    if (strstr(out, "NUL byte at column 20") == NULL)
        fail_msg("output: %s", out);
}

/* NaN and infinite params (legal in the API and in bundles) print as the
 * strings "nan", "inf", "-inf" in every JSON output. */
static void test_cli_input__non_finite_params_json(void **state)
{
    (void)state;
    const char *store = cli_tmp_path(tmp_root, "nan.store");
    deja_tracer *t = NULL;
    deja_span *s = NULL;
    char id[DEJA_ID_STRLEN + 1];
    cli_run r;

    assert_int_equal(deja_tracer_open(&t, store, NULL), 0);
    assert_int_equal(deja_span_begin(&s, t, "m", "1"), 0);
    deja_id_format(deja_span_id(s), id);
    assert_int_equal(deja_span_param_num(s, "a", NAN), 0);
    assert_int_equal(deja_span_param_num(s, "b", INFINITY), 0);
    assert_int_equal(deja_span_param_num(s, "c", -INFINITY), 0);
    assert_int_equal(deja_span_param_num(s, "d", 0.5), 0);
    assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
    deja_tracer_close(t);

    for (int k = 0; k < 2; k++) {
        if (k == 0)
            assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--json", NULL), 0);
        else
            assert_int_equal(
                cli_exec(&r, NULL, NULL, "--store", store, "show", id, "--json", NULL), 0);
        if (r.status != 0)
            fail_msg("exit %d: %s", r.status, r.err);
        json_error_t e;
        json_t *j = json_loads(r.out, JSON_DISABLE_EOF_CHECK, &e);
        assert_non_null(j);
        json_t *p = json_object_get(j, "params");
        assert_string_equal(json_string_value(json_object_get(p, "a")), "nan");
        assert_string_equal(json_string_value(json_object_get(p, "b")), "inf");
        assert_string_equal(json_string_value(json_object_get(p, "c")), "-inf");
        assert_true(json_real_value(json_object_get(p, "d")) == 0.5);
        json_decref(j);
        cli_run_free(&r);
    }
}

/* `show FILE.deja --md` prints the bundle's Markdown report. */
static void test_cli_input__show_bundle_md(void **state)
{
    (void)state;
    const char *store = cli_tmp_path(tmp_root, "nan.store"); /* made above */
    const char *bundle = cli_tmp_path(tmp_root, "case.deja");
    cli_run r;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", "-o", bundle, NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "show", bundle, "--md", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "## deja bundle `case.deja`", 26) == 0);
    assert_non_null(strstr(r.out, "### Reproduce"));
    assert_null(strstr(r.out, tmp_root));
    cli_run_free(&r);
}

/* A bundle shown in place while its reader goes away (SIGPIPE) leaves no
 * temporary store behind, and one left by a killed process is removed by
 * the next run. */
static void test_cli_input__bundle_temp_cleaned(void **state)
{
    (void)state;
    char tmpdir[300], stale[400], bundle[300];
    int fds[2], status;
    pid_t pid;
    DIR *d;
    const struct dirent *e;
    int left = 0;

    snprintf(tmpdir, sizeof tmpdir, "%s", cli_tmp_path(tmp_root, "tmpdir"));
    snprintf(bundle, sizeof bundle, "%s", cli_tmp_path(tmp_root, "case.deja")); /* made above */
    assert_int_equal(mkdir(tmpdir, 0700), 0);
    snprintf(stale, sizeof stale, "%s/deja-bundle-999999999-abcdef", tmpdir);
    assert_int_equal(mkdir(stale, 0700), 0);
    assert_int_equal(cli_write_file(cli_tmp_path(stale, "data.mdb"), "x"), 0);
    assert_int_equal(pipe(fds), 0);
    close(fds[0]); /* nobody reads: the first write raises SIGPIPE */
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(fds[1], 1) < 0 || dup2(null, 2) < 0)
            _exit(126);
        setenv("TMPDIR", tmpdir, 1);
        execl(DEJA_BIN, DEJA_BIN, "show", bundle, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGPIPE);
    d = opendir(tmpdir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') {
            print_message("left in TMPDIR: %s\n", e->d_name);
            left++;
        }
    closedir(d);
    assert_int_equal(left, 0);
}

/* `--model m.so` (no '/') loads the m.so it found and digested in the
 * current directory, not another m.so on the library path. */
static void test_cli_input__plugin_path_resolved_once(void **state)
{
    (void)state;
    char here[300], there[300], store[300], cmd[4096];
    cli_run r;

    snprintf(here, sizeof here, "%s", cli_tmp_path(tmp_root, "here"));
    snprintf(there, sizeof there, "%s", cli_tmp_path(tmp_root, "there"));
    snprintf(store, sizeof store, "%s", cli_tmp_path(tmp_root, "path.store"));
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s %s && cp %s/test-leaky.so %s/m.so && cp %s/test-inferfail.so %s/m.so",
             here, there, DEJA_LIB_DIR, here, DEJA_LIB_DIR, there);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(cli_write_file(cli_tmp_path(tmp_root, "p.jsonl"),
                                    "{\"inputs\": {\"prompt\": \"hi\"}}\n"),
                     0);
    setenv("LD_LIBRARY_PATH", there, 1);
    assert_int_equal(cli_exec(&r, here, cli_tmp_path(tmp_root, "p.jsonl"), "--store", store,
                              "run", "--model", "m.so", NULL),
                     0);
    unsetenv("LD_LIBRARY_PATH");
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--json", NULL), 0);
    assert_int_equal(r.status, 0);
    if (strstr(r.out, "\"name\": \"leaky\"") == NULL &&
        strstr(r.out, "\"name\":\"leaky\"") == NULL)
        fail_msg("recorded: %s", r.out);
    cli_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_input__array_shape_checked_before_allocating),
        cmocka_unit_test(test_cli_input__shape_overflow),
        cmocka_unit_test(test_cli_input__nul_byte),
        cmocka_unit_test(test_cli_input__non_finite_params_json),
        cmocka_unit_test(test_cli_input__show_bundle_md),
        cmocka_unit_test(test_cli_input__bundle_temp_cleaned),
        cmocka_unit_test(test_cli_input__plugin_path_resolved_once),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
