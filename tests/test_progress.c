/*
 * tests/test_progress.c -- the calling thread's progress handler
 * (deja_progress_handler, core/progress.c): verify, gc, compact, export and
 * import report to it, rising to their total; nothing is reported without
 * one, or to another thread's. Then the CLI: a bar on a terminal (a pty),
 * none in a pipe.
 */
#include "cli_harness.h"

#include <pthread.h>

#include "deja.h"

static char tmp_root[] = "/tmp/deja-test-progress-XXXXXX";

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

/* What a handler saw. */
typedef struct seen {
    size_t calls;
    size_t done, total;
    int went_back; /* done fell, or the total changed (within one phase) */
} seen;

static void on_progress(size_t done, size_t total, void *payload)
{
    seen *s = payload;
    if (s->calls > 0 && total == s->total && done < s->done)
        s->went_back = 1;
    s->calls++;
    s->done = done;
    s->total = total;
}

/* Reset `s` and make it the calling thread's handler. */
static void watch(seen *s)
{
    memset(s, 0, sizeof *s);
    deja_progress_handler(on_progress, s);
}

/* Check that `s` ended at its total, `total` when not 0. */
static void assert_finished(const seen *s, size_t total)
{
    assert_true(s->calls > 0);
    assert_false(s->went_back);
    assert_int_equal(s->done, s->total);
    if (total != 0)
        assert_int_equal(s->total, total);
}

#define NTRACES 40

/* A store of NTRACES traces with distinct 2 KiB inputs (blobs). */
static const char *make_store(const char *name, deja_id *ids)
{
    const char *path = cli_tmp_path(tmp_root, name);
    deja_tracer *t = NULL;
    char text[2048];

    assert_int_equal(deja_tracer_open(&t, path, NULL), 0);
    for (int i = 0; i < NTRACES; i++) {
        deja_span *s = NULL;
        memset(text, 'a' + i % 26, sizeof text);
        snprintf(text, 32, "request %d", i);
        assert_int_equal(deja_span_begin(&s, t, "m", "1"), 0);
        if (ids != NULL)
            ids[i] = *deja_span_id(s);
        assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", text, sizeof text), 0);
        assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
    }
    deja_tracer_close(t);
    return path;
}

static void test_progress__store_and_bundle_operations(void **state)
{
    (void)state;
    deja_id ids[NTRACES];
    const char *path = make_store("ops.store", ids);
    const char *copy = cli_tmp_path(tmp_root, "copy.store");
    const char *bundle = cli_tmp_path(tmp_root, "ops.deja");
    deja_gc_options gc = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats gs;
    deja_store *store = NULL;
    seen s;

    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_WRITE), 0);
    watch(&s);
    assert_int_equal(deja_store_verify(store, NULL, NULL), 0);
    /* Every record: traces, blobs, environments and index entries. */
    assert_finished(&s, 0);
    assert_true(s.total > 2 * NTRACES);

    watch(&s);
    gc.dry_run = 1;
    assert_int_equal(deja_store_gc(store, &gc, &gs), 0);
    assert_finished(&s, 0);
    assert_true(s.total >= 2 * NTRACES);

    watch(&s);
    assert_int_equal(deja_bundle_export(store, ids, NTRACES, NULL, bundle), 0);
    assert_finished(&s, NTRACES);
    deja_store_close(store);

    assert_int_equal(deja_store_open(&store, copy, DEJA_STORE_WRITE), 0);
    watch(&s);
    assert_int_equal(deja_bundle_import(store, bundle, NULL), 0);
    assert_finished(&s, NTRACES);
    deja_store_close(store);

    watch(&s);
    assert_int_equal(deja_store_compact(path, NULL, NULL), 0);
    assert_finished(&s, 0);

    /* No handler: nothing is called. */
    watch(&s);
    deja_progress_handler(NULL, NULL);
    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_verify(store, NULL, NULL), 0);
    deja_store_close(store);
    assert_int_equal(s.calls, 0);
}

typedef struct verify_job {
    const char *path;
    int rc;
} verify_job;

static void *verify_thread(void *arg)
{
    verify_job *j = arg;
    deja_store *store = NULL;
    j->rc = deja_store_open(&store, j->path, DEJA_STORE_READONLY);
    if (j->rc == 0)
        j->rc = deja_store_verify(store, NULL, NULL);
    deja_store_close(store);
    return NULL;
}

/* A handler belongs to the thread that set it. */
static void test_progress__per_thread(void **state)
{
    (void)state;
    verify_job j = {make_store("thread.store", NULL), -1};
    pthread_t th;
    seen s;

    watch(&s);
    assert_int_equal(pthread_create(&th, NULL, verify_thread, &j), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(j.rc, 0);
    assert_int_equal(s.calls, 0);
    deja_progress_handler(NULL, NULL);
}

/* Run DEJA_BIN with `args` on a pseudo-terminal as stdout and stderr;
 * what it wrote goes to `out` (NUL-terminated, at most `cap` - 1 bytes).
 * Returns the exit status. */
static int run_on_pty(const char *const *args, char *out, size_t cap)
{
    const char *argv[16];
    size_t n = 0, len = 0;
    int master, status = 0;
    pid_t pid;

    argv[n++] = DEJA_BIN;
    while (args[n - 1] != NULL && n < 15) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const int slave = open(ptsname(master), O_RDWR);
        if (slave < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
            _exit(126);
        close(master);
        setenv("DEJA_PROGRESS_DELAY_MS", "0", 1);
        execv(DEJA_BIN, (char *const *)argv);
        _exit(127);
    }
    for (;;) {
        const ssize_t r = read(master, out + len, cap - 1 - len);
        if (r <= 0) /* EIO once the child closed its side */
            break;
        len += (size_t)r;
        if (len == cap - 1)
            break;
    }
    out[len] = '\0';
    close(master);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* On a terminal, verify and gc draw a bar on stderr and erase it; in a
 * pipe (cli_exec's files) there is none. */
static void test_progress__cli_bar_only_on_a_terminal(void **state)
{
    (void)state;
    const char *path = make_store("cli.store", NULL);
    static char out[65536];
    cli_run r;

    {
        const char *const args[] = {"--store", path, "verify", NULL};
        assert_int_equal(run_on_pty(args, out, sizeof out), 0);
        assert_non_null(strstr(out, "records verified"));
        assert_non_null(strstr(out, "\r\033[K["));
        assert_non_null(strstr(out, "store OK"));
    }
    {
        const char *const args[] = {"--store", path, "gc", "--older-than", "1d", "--dry-run",
                                    NULL};
        assert_int_equal(run_on_pty(args, out, sizeof out), 0);
        assert_non_null(strstr(out, "records collected"));
    }
    setenv("DEJA_PROGRESS_DELAY_MS", "0", 1);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "verify", NULL), 0);
    unsetenv("DEJA_PROGRESS_DELAY_MS");
    assert_int_equal(r.status, 0);
    assert_null(strstr(r.err, "records verified"));
    assert_null(strchr(r.err, '\r'));
    cli_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress__store_and_bundle_operations),
        cmocka_unit_test(test_progress__per_thread),
        cmocka_unit_test(test_progress__cli_bar_only_on_a_terminal),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
