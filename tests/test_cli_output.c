/*
 * tests/test_cli_output.c -- the command line's contract with pipes, files
 * and scripts, run as a user runs it (the real binary): output that cannot
 * be written is an error (exit 2, one line on stderr), and the global
 * options are taken before or after the command.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "cli_harness.h"

/* The helpers under test directly: linked from deja_cli. */
#include "cli/cli.h"

static char tmp_root[] = "/tmp/deja-test-cli-output-XXXXXX";
static char store[600];

static const char requests[] =
    "{\"inputs\": {\"prompt\": \"The fox\"}, \"params\": {\"max_tokens\": 20}}\n"
    "{\"inputs\": {\"prompt\": \"A lion lay\"}, \"params\": {\"temperature\": 0.5}, "
    "\"tags\": {\"user\": \"someone-with-a-very-long-name\", \"team\": "
    "\"a-team-whose-tag-runs-past-any-terminal-of-eighty-columns\"}}\n";

static int group_setup(void **state)
{
    cli_run r;
    const char *req;
    int ok;

    (void)state;
    if (cli_group_begin(tmp_root) != 0)
        return -1;
    snprintf(store, sizeof store, "%s/s.store", tmp_root);
    req = cli_tmp_path(tmp_root, "requests.jsonl");
    if (cli_write_file(req, requests) != 0)
        return -1;
    if (cli_exec(&r, NULL, req, "--store", store, "run", "--model", "textgen-v1", NULL) != 0)
        return -1;
    ok = r.status == 0;
    cli_run_free(&r);
    return ok ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    cli_rm_rf(tmp_root);
    return 0;
}

/* Run `sh -c script` with DEJA and STORE in its environment; return its
 * exit status and leave its stderr in *err (malloc'd). */
static int sh(const char *script, char **err)
{
    char cmd[4096];
    const char *errfile = cli_tmp_path(tmp_root, "sh.err");
    int status;

    setenv("DEJA", DEJA_BIN, 1);
    setenv("STORE", store, 1);
    snprintf(cmd, sizeof cmd, "%s 2>'%s'", script, errfile);
    status = system(cmd);
    *err = cli_slurp(errfile, NULL);
    assert_non_null(*err);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* Every command that writes to a full disk fails: exit 2, one line. */
static void test_cli_output__full_disk_is_an_error(void **state)
{
    static const char *const scripts[] = {
        "\"$DEJA\" --store \"$STORE\" ls >/dev/full",
        "\"$DEJA\" --store \"$STORE\" ls --json >/dev/full",
        "\"$DEJA\" --store \"$STORE\" stats >/dev/full",
        "\"$DEJA\" --store \"$STORE\" stats --json >/dev/full",
        "\"$DEJA\" --store \"$STORE\" verify >/dev/full",
        "\"$DEJA\" --store \"$STORE\" show \"$(\"$DEJA\" --store \"$STORE\" ls --limit 1 | cut -c1-26)\" >/dev/full",
        "\"$DEJA\" --help >/dev/full",
        "\"$DEJA\" --version >/dev/full",
        "\"$DEJA\" ls --help >/dev/full",
    };
    (void)state;
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        char *err = NULL;
        const int rc = sh(scripts[i], &err);
        if (rc != 2 || strncmp(err, "deja: cannot write the output", 29) != 0 ||
            cli_count_lines(err) != 1)
            fail_msg("%s: exit %d, stderr '%s'", scripts[i], rc, err);
        free(err);
    }
}

/* Run `deja --store STORE ls` with stdout a pipe whose reader is already
 * gone, SIGPIPE ignored or not; return the wait status, stderr in *err. */
static int ls_into_closed_pipe(int ignore_sigpipe, char **err)
{
    const char *errfile = cli_tmp_path(tmp_root, "pipe.err");
    int fds[2], status = -1;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const int efd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        signal(SIGPIPE, ignore_sigpipe ? SIG_IGN : SIG_DFL);
        if (efd < 0 || dup2(fds[1], 1) < 0 || dup2(efd, 2) < 0)
            _exit(99);
        execl(DEJA_BIN, DEJA_BIN, "--store", store, "ls", (char *)NULL);
        _exit(98);
    }
    close(fds[1]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    *err = cli_slurp(errfile, NULL);
    assert_non_null(*err);
    return status;
}

/* A reader that went away: with SIGPIPE's default the writer just ends (as
 * any Unix filter does); with SIGPIPE ignored, the failed write is an error. */
static void test_cli_output__closed_pipe(void **state)
{
    char *err = NULL;
    int status;

    (void)state;
    status = ls_into_closed_pipe(1, &err);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    if (strncmp(err, "deja: cannot write the output", 29) != 0 || cli_count_lines(err) != 1)
        fail_msg("stderr '%s'", err);
    free(err);
    status = ls_into_closed_pipe(0, &err);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGPIPE);
    assert_string_equal(err, "");
    free(err);
}

/* --store (and --color) before or after the command, in both spellings. */
static void test_cli_output__global_options_anywhere(void **state)
{
    static const char *const forms[][6] = {
        {"--store", NULL, "ls", NULL},
        {"ls", "--store", NULL, NULL},
        {"ls", "--limit", "5", "--store", NULL, NULL},
        {"--color=always", "ls", "--store", NULL, "--color", "never"}, /* the last one wins */
    };
    cli_run want, got;

    (void)state;
    assert_int_equal(cli_exec(&want, NULL, NULL, "--store", store, "ls", NULL), 0);
    assert_int_equal(want.status, 0);
    assert_int_equal(cli_count_lines(want.out), 2);
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        const char *args[8] = {0};
        size_t n = 0;
        for (size_t k = 0; k < 6; k++) {
            if (forms[f][k] == NULL && k > 0 && forms[f][k - 1] != NULL &&
                strcmp(forms[f][k - 1], "--store") == 0)
                args[n++] = store;
            else if (forms[f][k] != NULL)
                args[n++] = forms[f][k];
        }
        assert_int_equal(cli_execv(&got, NULL, NULL, args), 0);
        if (got.status != 0 || strcmp(got.out, want.out) != 0)
            fail_msg("form %zu: exit %d, out '%s', err '%s'", f, got.status, got.out, got.err);
        cli_run_free(&got);
    }
    /* --store=PATH after the command; the last one given wins. */
    char opt[700];
    snprintf(opt, sizeof opt, "--store=%s", store);
    assert_int_equal(cli_exec(&got, NULL, NULL, "--store", "/nonexistent", "stats", opt, NULL), 0);
    assert_int_equal(got.status, 0);
    cli_run_free(&got);
    /* A missing value, a bad --color, and "--" ends the options. */
    assert_int_equal(cli_exec(&got, NULL, NULL, "ls", "--store", NULL), 0);
    assert_int_equal(got.status, 2);
    assert_non_null(strstr(got.err, "deja: option '--store' needs a value"));
    cli_run_free(&got);
    assert_int_equal(cli_exec(&got, NULL, NULL, "ls", "--store", store, "--color=blue", NULL), 0);
    assert_int_equal(got.status, 2);
    cli_assert_one_error(&got, "--color must be auto, always or never");
    cli_run_free(&got);
    assert_int_equal(cli_exec(&got, NULL, NULL, "--store", store, "ls", "--", "--store", NULL), 0);
    assert_int_equal(got.status, 2);
    cli_run_free(&got);
    cli_run_free(&want);
}

/* The time forms of --since/--until on the command line. */
static void test_cli_output__time_forms(void **state)
{
    static const struct {
        const char *opt, *value;
        size_t lines;
    } cases[] = {
        {"--since", "@0", 2},      {"--until", "@0", 0},       {"--since", "1h30m", 2},
        {"--since", "yesterday", 2}, {"--until", "yesterday", 0}, {"--until", "now", 2},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cli_run r;
        assert_int_equal(
            cli_exec(&r, NULL, NULL, "--store", store, "ls", cases[i].opt, cases[i].value, NULL), 0);
        if (r.status != 0 || cli_count_lines(r.out) != cases[i].lines)
            fail_msg("ls %s %s: exit %d, %zu lines (%s)", cases[i].opt, cases[i].value, r.status,
                     cli_count_lines(r.out), r.err);
        cli_run_free(&r);
    }
}

/* cli_put_fitted: cut at the width with "…", characters not bytes,
 * colour escapes of no width. */
static void test_cli_output__fitted_lines(void **state)
{
    static const struct {
        const char *line;
        int width;
        const char *want;
    } cases[] = {
        {"abcdef", 0, "abcdef"},
        {"abcdef", 6, "abcdef"},
        {"abcdef", 4, "abc\xe2\x80\xa6"},
        {"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 3, "\xc3\xa9\xc3\xa9\xe2\x80\xa6"},
        {"\033[31mred\033[0m and more", 9, "\033[31mred\033[0m and \xe2\x80\xa6\033[0m"},
        {"\033[31mred\033[0m", 3, "\033[31mred\033[0m"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&out, &len);
        assert_non_null(fp);
        cli_put_fitted(fp, cases[i].line, strlen(cases[i].line), cases[i].width);
        fclose(fp);
        assert_string_equal(out, cases[i].want);
        free(out);
    }
}

/* `deja ls` in a terminal (a pty from script(1), COLUMNS wide): every line
 * fits, the long one ends in "…", the status is coloured unless NO_COLOR;
 * in a pipe, whole lines and no colour unless --color=always. */
static void test_cli_output__terminal(void **state)
{
    char *out, *err;
    const char *file = cli_tmp_path(tmp_root, "tty.out");
    char cmd[1600];
    size_t lines;

    (void)state;
    if (system("command -v script >/dev/null 2>&1") != 0)
        skip();
    snprintf(cmd, sizeof cmd,
             "COLUMNS=70 script -qec '\"$DEJA\" --store \"$STORE\" ls' /dev/null | tr -d '\\r' > '%s'",
             file);
    assert_int_equal(sh(cmd, &err), 0);
    free(err);
    out = cli_slurp(file, NULL);
    assert_non_null(out);
    lines = cli_count_lines(out);
    assert_int_equal(lines, 2);
    for (size_t i = 0; i < lines; i++) {
        char *line = cli_line(out, i);
        size_t cols = 0;
        for (const char *p = line; *p; p++) {
            if (*p == '\033') {
                while (*p && *p != 'm')
                    p++;
                continue;
            }
            cols += ((unsigned char)*p & 0xC0) != 0x80;
        }
        if (cols > 70)
            fail_msg("line %zu has %zu columns: %s", i, cols, line);
        free(line);
    }
    assert_non_null(strstr(out, "\xe2\x80\xa6"));
    assert_non_null(strstr(out, "\033[32mok"));
    free(out);

    snprintf(cmd, sizeof cmd,
             "NO_COLOR=1 COLUMNS=70 script -qec '\"$DEJA\" --store \"$STORE\" ls' /dev/null > '%s'",
             file);
    assert_int_equal(sh(cmd, &err), 0);
    free(err);
    out = cli_slurp(file, NULL);
    assert_null(strchr(out, '\033'));
    free(out);

    snprintf(cmd, sizeof cmd, "\"$DEJA\" --store \"$STORE\" ls > '%s'", file);
    assert_int_equal(sh(cmd, &err), 0);
    free(err);
    out = cli_slurp(file, NULL);
    assert_null(strchr(out, '\033'));
    assert_null(strstr(out, "\xe2\x80\xa6"));
    assert_non_null(strstr(out, "a-team-whose-tag-runs-past-any-terminal-of-eighty-columns"));
    free(out);

    snprintf(cmd, sizeof cmd, "\"$DEJA\" --store \"$STORE\" ls --color=always > '%s'", file);
    assert_int_equal(sh(cmd, &err), 0);
    free(err);
    out = cli_slurp(file, NULL);
    assert_non_null(strstr(out, "\033[32mok"));
    free(out);
}

/* The progress bar: drawn only on a terminal, erased before other output. */
static void test_cli_output__progress_bar(void **state)
{
    char *out = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&out, &len);
    cli_progress p;

    (void)state;
    assert_non_null(fp);
    cli_progress_init(&p, fp, "traces", 0);
    cli_progress_draw(&p, 3, 10, NULL); /* not a terminal: nothing */
    fflush(fp);
    assert_int_equal(len, 0);
    p.tty = 1; /* as on a terminal */
    cli_progress_draw(&p, 3, 10, NULL);
    cli_progress_draw(&p, 10, 10, "done");
    cli_progress_clear(&p);
    cli_progress_free(&p);
    fclose(fp);
    assert_string_equal(out, "\r\033[K[#########.....................] 3/10 traces"
                             "\r\033[K[##############################] 10/10 traces done"
                             "\r\033[K");
    free(out);
}

/* Start `deja --store STORE run --model textgen-v1` with its stdin and
 * stdout pipes to this process (*in to write requests, *out to read
 * results) and its stderr into `errfile`. */
static pid_t run_piped(const char *store_path, const char *errfile, int *in, FILE **out)
{
    int to_run[2], from_run[2];
    pid_t pid;

    assert_int_equal(pipe(to_run), 0);
    assert_int_equal(pipe(from_run), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const int efd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        signal(SIGPIPE, SIG_DFL);
        if (efd < 0 || dup2(to_run[0], 0) < 0 || dup2(from_run[1], 1) < 0 || dup2(efd, 2) < 0)
            _exit(99);
        close(to_run[1]);
        close(from_run[0]);
        execl(DEJA_BIN, DEJA_BIN, "--store", store_path, "run", "--model", "textgen-v1",
              (char *)NULL);
        _exit(98);
    }
    close(to_run[0]);
    close(from_run[1]);
    *in = to_run[1];
    *out = fdopen(from_run[0], "r");
    assert_non_null(*out);
    return pid;
}

/* Wait for `pid` at most `secs` seconds, then kill it and fail: a run
 * that does not stop must fail the test, not hang it. */
static int wait_or_kill(pid_t pid, int secs)
{
    int status = 0;

    for (int i = 0; i < secs * 20; i++) {
        const pid_t w = waitpid(pid, &status, WNOHANG);
        assert_true(w >= 0);
        if (w == pid)
            return status;
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fail_msg("deja run did not stop within %d s", secs);
    return status;
}

/* `deja run` stopped by a signal (Ctrl-C, kill) or by a reader that went
 * away (`deja run | head`) stops reading requests, commits every trace
 * whose id it printed, and then ends by that signal. */
static void test_cli_output__run_stopped_commits_what_it_printed(void **state)
{
    static const char request[] = "{\"inputs\": {\"prompt\": \"The fox\"}, \"seed\": 7}\n";
    static const int sigs[] = {SIGTERM, SIGPIPE};

    (void)state;
    signal(SIGPIPE, SIG_IGN); /* this process writes to a pipe deja may close */
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
        char name[64], ids[4][32], line[512];
        const char *errfile = cli_tmp_path(tmp_root, "run-stop.err");
        const char *path;
        size_t nids = 0;
        int in, status;
        FILE *out;
        pid_t pid;
        char *err;
        cli_run r;

        snprintf(name, sizeof name, "stop-%d.store", sigs[k]);
        path = cli_tmp_path(tmp_root, name);
        pid = run_piped(path, errfile, &in, &out);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(write(in, request, sizeof request - 1), (ssize_t)(sizeof request - 1));
            assert_non_null(fgets(line, sizeof line, out));
            assert_true(strlen(line) > 26);
            memcpy(ids[nids], line, 26);
            ids[nids++][26] = '\0';
        }
        if (sigs[k] == SIGTERM) {
            kill(pid, SIGTERM); /* while it waits for the next request */
        } else {
            fclose(out); /* the reader goes away; the next result hits it */
            out = NULL;
            assert_int_equal(write(in, request, sizeof request - 1), (ssize_t)(sizeof request - 1));
        }
        status = wait_or_kill(pid, 60);
        close(in);
        if (out != NULL)
            fclose(out);
        err = cli_slurp(errfile, NULL);
        assert_non_null(err);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != sigs[k])
            fail_msg("signal %d: wait status %#x, stderr '%s'", sigs[k], status, err);
        if (sigs[k] == SIGTERM && strstr(err, "deja: stopped by SIGTERM") == NULL)
            fail_msg("stderr '%s'", err);
        free(err);
        for (size_t i = 0; i < nids; i++) {
            assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "show", ids[i], NULL), 0);
            if (r.status != 0)
                fail_msg("trace %s printed but not committed: %s", ids[i], r.err);
            cli_run_free(&r);
        }
        /* After SIGPIPE the fourth request was recorded too: its result
         * was the write that failed. */
        assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "ls", NULL), 0);
        assert_int_equal(cli_count_lines(r.out), sigs[k] == SIGPIPE ? 4 : 3);
        cli_run_free(&r);
    }
    signal(SIGPIPE, SIG_DFL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_output__full_disk_is_an_error),
        cmocka_unit_test(test_cli_output__closed_pipe),
        cmocka_unit_test(test_cli_output__global_options_anywhere),
        cmocka_unit_test(test_cli_output__time_forms),
        cmocka_unit_test(test_cli_output__fitted_lines),
        cmocka_unit_test(test_cli_output__terminal),
        cmocka_unit_test(test_cli_output__progress_bar),
        cmocka_unit_test(test_cli_output__run_stopped_commits_what_it_printed),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
