/*
 * tests/test_cli_escape.c -- text from a trace or a bundle is untrusted: the
 * terminal, shell and Markdown escapes (cli/cli_escape.c) on their own, then the
 * real binary's `show` (text and --md) and `ls` on a trace recorded with
 * escape sequences, shell syntax and Markdown in its names, and which
 * environment variables a report shows.
 */
#include "cli_harness.h"

#include "cli/cli_escape.h"

#include "deja.h"
#include "store/store.h"
#include "store/store_internal.h"

static char tmp_root[] = "/tmp/deja-test-escape-XXXXXX";

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

/* What `put` prints for `s` (and `arg`), in a static buffer. */
static const char *printed(void (*put)(FILE *, const char *), const char *s)
{
    static char buf[1024];
    FILE *fp;

    memset(buf, 0, sizeof buf);
    fp = fmemopen(buf, sizeof buf, "w");

    assert_non_null(fp);
    put(fp, s);
    assert_int_equal(fclose(fp), 0);
    return buf;
}

static void put_code_table(FILE *fp, const char *s)
{
    cli_put_md_code(fp, s, 1);
}

static void put_code(FILE *fp, const char *s)
{
    cli_put_md_code(fp, s, 0);
}

static void test_cli_escape__terminal(void **state)
{
    (void)state;
    assert_string_equal(printed(cli_put_term, "plain é ü"), "plain é ü");
    assert_string_equal(printed(cli_put_term, "a\x1b[2Jb"), "a\\x1b[2Jb");
    assert_string_equal(printed(cli_put_term, "l1\nl2\tx\r"), "l1\\nl2\\tx\\r");
    assert_string_equal(printed(cli_put_term, "\x7f"), "\\x7f");
    assert_string_equal(printed(cli_put_term, "c1 \xc2\x9b" "31m"), "c1 \\xc2\\x9b31m");
    assert_string_equal(printed(cli_put_term, "bad \xff\xc3"), "bad \\xff\\xc3");
    assert_string_equal(printed(cli_put_term, "over \xc0\xaf"), "over \\xc0\\xaf");
    assert_string_equal(printed(cli_put_term, NULL), "");
}

/* Each quoted word, read back by a real shell, is the word itself. */
static void test_cli_escape__shell(void **state)
{
    (void)state;
    static const char *const words[] = {
        "textgen-v1", "", "a b", "it's", "x; touch /tmp/pwned", "$(id)", "`id`", "a\nb",
        "esc\x1b[0m", "\xff", "back\\slash", "*", "-v1",
    };
    assert_string_equal(printed(cli_put_shell, "textgen-v1"), "textgen-v1");
    assert_string_equal(printed(cli_put_shell, "x; touch /tmp/p"), "'x; touch /tmp/p'");
    assert_string_equal(printed(cli_put_shell, "it's"), "'it'\\''s'");
    assert_string_equal(printed(cli_put_shell, ""), "''");
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char cmd[1200], want[64];
        const char *q = printed(cli_put_shell, words[i]);
        const char *script = cli_tmp_path(tmp_root, "word.sh");
        FILE *f = fopen(script, "w");
        assert_non_null(f);
        fprintf(f, "printf '%%s' %s | od -An -tx1 | tr -d ' \\n'\n", q);
        assert_int_equal(fclose(f), 0);
        snprintf(cmd, sizeof cmd, "bash %s", script);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char got[256] = "";
        size_t n = fread(got, 1, sizeof got - 1, p);
        got[n] = '\0';
        assert_int_equal(pclose(p), 0);
        want[0] = '\0';
        for (const unsigned char *c = (const unsigned char *)words[i]; *c; c++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%02x", *c);
        if (strcmp(got, want) != 0)
            fail_msg("word %zu quoted as %s reads back as %s, not %s", i, q, got, want);
    }
}

static void test_cli_escape__markdown(void **state)
{
    (void)state;
    assert_string_equal(printed(put_code, "v1"), "`v1`");
    assert_string_equal(printed(put_code, "a`b"), "``a`b``");
    assert_string_equal(printed(put_code, "`x``"), "``` `x`` ```");
    assert_string_equal(printed(put_code_table, "a|b"), "`a\\|b`");
    assert_string_equal(printed(put_code, "a|b"), "`a|b`");
    assert_string_equal(printed(put_code, "x\ny"), "`x\\ny`");
    assert_string_equal(printed(cli_put_md_text, "*bold* | [l](u) <b>"),
                        "\\*bold\\* \\| \\[l\\]\\(u\\) \\<b\\>");
    assert_string_equal(printed(cli_put_md_text, "oops\x1b]0;t\x07"), "oops\\x1b\\]0;t\\x07");
}

/* A store with one error trace whose every string is hostile, recorded
 * through the public API (which records faithfully what it is given), in
 * an environment that recorded a variable off the default list. */
/* A trace and its environment written to a store below the tracer, as a
 * damaged store or other software could hold them. */
typedef struct env_put {
    deja_env env;
    deja_digest d;
    deja_trace t;
} env_put;

static int put_env_cb(deja__wtxn *w, void *payload)
{
    env_put *e = payload;
    int rc = deja__wtxn_put_env(w, &e->env, &e->d);

    e->t.env = e->d;
    return rc != 0 ? rc : deja__wtxn_put_trace(w, &e->t, NULL);
}

static const char *hostile_store(char *id_out)
{
    static const char prompt[] = "hi ````\n```";
    static const uint64_t shape[] = {sizeof prompt - 1};
    static const deja_kv vars[] = {{"DEJA_TEST_EXTRA_VAR", "extra"}};
    static const deja_tensor inputs[] = {
        {"prompt\x1b[2J", DEJA_UTF8, 1, shape, (const uint8_t *)prompt, sizeof prompt - 1}};
    static const deja_tag tags[] = {{"user|x", "`u1`\x07"}};
    deja_param params[] = {{"mode", DEJA_PARAM_STR, 0.0, "a|b\x1b", 0}};
    const char *store = cli_tmp_path(tmp_root, "hostile.store");
    env_put e = {.env = *deja_env_current(NULL)};
    deja_store *s = NULL;

    /* The tracer refuses such names (see test_verdicts): the store is
     * written below it, as a damaged store or other software may hold. */
    e.env.vars = vars;
    e.env.nvars = 1;
    deja__id_new_at(&e.t.id, 1700000000000);
    e.t.start_ns = 1700000000000LL * 1000000;
    e.t.model_name = "m\x1b[31mred|`x`";
    e.t.model_version = "1; touch /tmp/deja-pwned #";
    e.t.inputs = inputs;
    e.t.ninputs = 1;
    e.t.tags = tags;
    e.t.ntags = 1;
    e.t.params = params;
    e.t.nparams = 1;
    e.t.status = DEJA_STATUS_ERROR;
    e.t.error = "boom\x1b]0;title\x07 | <img src=x>";
    e.t.has_env = 1;
    deja_id_format(&e.t.id, id_out);
    assert_int_equal(deja_store_open(&s, store, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja__store_write(s, put_env_cb, &e), 0);
    deja_store_close(s);
    return store;
}

static void assert_no_control(const char *out)
{
    for (const unsigned char *p = (const unsigned char *)out; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
            fail_msg("raw control byte 0x%02x in output:\n%s", *p, out);
}

static void test_cli_escape__show_and_ls(void **state)
{
    (void)state;
    char id[DEJA_ID_STRLEN + 1];
    const char *store = hostile_store(id);
    cli_run r;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, NULL), 0);
    assert_int_equal(r.status, 0);
    assert_no_control(r.out);
    assert_non_null(strstr(r.out, "m\\x1b[31mred"));
    assert_non_null(strstr(r.out, "DEJA_TEST_EXTRA_VAR=extra"));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_no_control(r.out);
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, "--md", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_no_control(r.out);
    /* An application's span names no plugin: the command asks for one
     * instead of pasting a name made from the hostile model name. */
    assert_non_null(strstr(r.out, "--model PLUGIN[:ARG]\n"));
    assert_null(strstr(r.out, "--model m"));
    assert_null(strstr(r.out, "touch /tmp/deja-pwned #'\n"));
    /* Table cells cannot be broken nor code spans closed. */
    assert_non_null(strstr(r.out, "| model | `` m\\x1b[31mred\\|`x` `` |"));
    assert_non_null(strstr(r.out, "``user\\|x=`u1`\\x07``"));
    assert_non_null(strstr(r.out, "\\| \\<img src=x\\>"));
    /* The fence of a preview is longer than any backtick run inside. */
    assert_non_null(strstr(r.out, "  `````\n"));
    /* Nothing of this machine: no absolute path of the store, and no
     * variable off the README's list. */
    assert_null(strstr(r.out, tmp_root));
    assert_null(strstr(r.out, "DEJA_TEST_EXTRA_VAR"));
    cli_run_free(&r);
}

/* Two traces of "textgen" whose version, output name, output and tag carry
 * escape sequences, as a bundle from a stranger or a damaged store could
 * (the tracer refuses such names: written below it, as hostile_store). */
static const char *hostile_replay_store(char *id_a, char *id_b)
{
    static const char prompt[] = "hello";
    static const char *const outs[2] = {"\x1b[2Jwiped\x1b]0;title\x07", "other\x1b[31m text\x9b"};
    static const uint64_t in_shape[] = {sizeof prompt - 1};
    static const deja_tag tags[] = {{"who", "\x1b[5mblink"}};
    const char *store = cli_tmp_path(tmp_root, "hostile-replay.store");
    deja_store *s = NULL;

    assert_int_equal(deja_store_open(&s, store, DEJA_STORE_WRITE), 0);
    for (int i = 0; i < 2; i++) {
        const uint64_t out_shape[] = {strlen(outs[i])};
        const deja_tensor inputs[] = {
            {"prompt", DEJA_UTF8, 1, in_shape, (const uint8_t *)prompt, sizeof prompt - 1}};
        const deja_tensor outputs[] = {{"completion\x1b[1m", DEJA_UTF8, 1, out_shape,
                                        (const uint8_t *)outs[i], strlen(outs[i])}};
        env_put e = {.env = *deja_env_current(NULL)};

        deja__id_new_at(&e.t.id, 1700000000000 + i);
        e.t.start_ns = (1700000000000LL + i) * 1000000;
        e.t.model_name = "textgen";
        e.t.model_version = "9\x1b]0;pwned\x07\x1b[31m";
        e.t.inputs = inputs;
        e.t.ninputs = 1;
        e.t.outputs = outputs;
        e.t.noutputs = 1;
        e.t.tags = tags;
        e.t.ntags = 1;
        e.t.status = DEJA_STATUS_OK;
        e.t.has_env = 1;
        deja_id_format(&e.t.id, i == 0 ? id_a : id_b);
        assert_int_equal(deja__store_write(s, put_env_cb, &e), 0);
    }
    deja_store_close(s);
    return store;
}

/* Replay, diff and bisect print the recorded version, output names and
 * values, and causes made from them: every control character escaped, on
 * stdout and stderr alike. */
static void test_cli_escape__replay_diff_bisect(void **state)
{
    (void)state;
    char a[DEJA_ID_STRLEN + 1], b[DEJA_ID_STRLEN + 1];
    const char *store = hostile_replay_store(a, b);
    cli_run r;

    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", store, "replay", "--model", "textgen-v1", NULL), 0);
    assert_int_equal(r.status, 1);
    assert_no_control(r.out);
    assert_no_control(r.err);
    /* The likely cause names the recorded version, escaped. */
    assert_non_null(strstr(r.out, "9\\x1b]0;pwned\\x07\\x1b[31m"));
    assert_non_null(strstr(r.out, "completion\\x1b[1m"));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "diff", a, b, NULL), 0);
    assert_int_equal(r.status, 1);
    assert_no_control(r.out);
    assert_no_control(r.err);
    assert_non_null(strstr(r.out, "textgen@9\\x1b]0;pwned\\x07\\x1b[31m"));
    assert_non_null(strstr(r.out, "completion\\x1b[1m: "));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "bisect", "textgen-v1",
                              "textgen-v2", "--force", NULL),
                     0);
    assert_true(r.status <= 2);
    assert_no_control(r.out);
    assert_no_control(r.err);
    cli_run_free(&r);

    /* An error line quoting a trace's text stays one escaped line. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", a, "--model",
                              "/nonexistent/\x1b[2J.so", NULL),
                     0);
    assert_int_equal(r.status, 2);
    assert_no_control(r.err);
    assert_non_null(strstr(r.err, "\\x1b[2J"));
    cli_run_free(&r);
}

/* A trace recorded before secrets were kept out (its environment holds
 * TF_VAR_db_password): no output shows that value. */
static void test_cli_escape__old_secrets_not_shown(void **state)
{
    (void)state;
    const char *store = cli_tmp_path(tmp_root, "old.store");
    static const deja_kv vars[] = {{"OMP_NUM_THREADS", "4"}, {"TF_VAR_db_password", "hunter2"}};
    env_put e = {.env = *deja_env_current(NULL)};
    deja_store *s = NULL;
    char id[DEJA_ID_STRLEN + 1];

    e.env.vars = vars;
    e.env.nvars = 2;
    deja__id_new_at(&e.t.id, 1700000000000);
    e.t.start_ns = 1700000000000LL * 1000000;
    e.t.model_name = "m";
    e.t.model_version = "1";
    e.t.error = "";
    e.t.has_env = 1;
    deja_id_format(&e.t.id, id);
    assert_int_equal(deja_store_open(&s, store, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja__store_write(s, put_env_cb, &e), 0);
    deja_store_close(s);

    const char *const modes[] = {"--md", "--json", NULL};
    for (size_t i = 0; i < 3; i++) {
        cli_run r;
        assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, modes[i], NULL),
                         0);
        assert_int_equal(r.status, 0);
        assert_null(strstr(r.out, "hunter2"));
        assert_non_null(strstr(r.out, "OMP_NUM_THREADS"));
        cli_run_free(&r);
    }
}

/* `deja run --env-vars` adds to what is recorded (shown by `show --json`,
 * never by `--md`); a bad rule is refused before any store is made. */
static void test_cli_escape__run_env_vars(void **state)
{
    (void)state;
    char store[300], bad_store[300], reqs[300];
    cli_run r;

    snprintf(store, sizeof store, "%s", cli_tmp_path(tmp_root, "envvars.store"));
    snprintf(bad_store, sizeof bad_store, "%s", cli_tmp_path(tmp_root, "never.store"));
    snprintf(reqs, sizeof reqs, "%s", cli_tmp_path(tmp_root, "one.jsonl"));
    assert_int_equal(cli_write_file(reqs, "{\"inputs\": {\"prompt\": \"hi\"}}\n"), 0);
    setenv("DEJA_TEST_RUN_VAR", "on", 1);
    setenv("DEJA_TEST_RUN_TOKEN", "s3cret", 1);
    assert_int_equal(cli_exec(&r, NULL, reqs, "--store", store, "run", "--model", "textgen-v1",
                              "--env-vars", "DEJA_TEST_RUN_*", NULL),
                     0);
    assert_int_equal(r.status, 0);
    char id[DEJA_ID_STRLEN + 1];
    snprintf(id, sizeof id, "%.26s", r.out);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, "--json", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"DEJA_TEST_RUN_VAR\""));
    assert_null(strstr(r.out, "s3cret"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, "--md", NULL), 0);
    assert_null(strstr(r.out, "DEJA_TEST_RUN_VAR"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, reqs, "--store", bad_store, "run", "--model", "textgen-v1",
                              "--env-vars", "A=B", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "'A=B' is not a variable name");
    assert_false(cli_exists(bad_store));
    cli_run_free(&r);
}

/* A checkpoint name is a name like any other: a trace whose only bad name
 * is a checkpoint's is not exported (the bundle's own check refuses it, as
 * import would), and `show` prints it escaped. */
static void test_cli_escape__checkpoint_name(void **state)
{
    static const float values[] = {1.0f, 2.0f};
    static const uint64_t shape[] = {2};
    deja_checkpoint cps[1];
    const char *store = cli_tmp_path(tmp_root, "checkpoint.store");
    const char *bundle = cli_tmp_path(tmp_root, "checkpoint.deja");
    env_put e = {.env = *deja_env_current(NULL)};
    char id[DEJA_ID_STRLEN + 1];
    deja_store *s = NULL;
    cli_run r;

    (void)state;
    memset(cps, 0, sizeof cps);
    cps[0].tensor = (deja_tensor){"layer\x1b[2J", DEJA_F32, 1, shape, (const uint8_t *)values,
                                  sizeof values};
    deja__id_new_at(&e.t.id, 1700000000001);
    e.t.start_ns = 1700000000001LL * 1000000;
    e.t.model_name = "m";
    e.t.model_version = "1";
    e.t.error = "";
    e.t.has_env = 1;
    e.t.checkpoints = cps;
    e.t.ncheckpoints = 1;
    deja_id_format(&e.t.id, id);
    assert_int_equal(deja_store_open(&s, store, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja__store_write(s, put_env_cb, &e), 0);
    deja_store_close(s);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, NULL), 0);
    assert_int_equal(r.status, 0);
    assert_no_control(r.out);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", id, "-o", bundle, NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "checkpoint 1's name holds a control character");
    assert_false(cli_exists(bundle));
    cli_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_escape__terminal),
        cmocka_unit_test(test_cli_escape__shell),
        cmocka_unit_test(test_cli_escape__markdown),
        cmocka_unit_test(test_cli_escape__show_and_ls),
        cmocka_unit_test(test_cli_escape__replay_diff_bisect),
        cmocka_unit_test(test_cli_escape__old_secrets_not_shown),
        cmocka_unit_test(test_cli_escape__run_env_vars),
        cmocka_unit_test(test_cli_escape__checkpoint_name),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
