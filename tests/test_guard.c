/*
 * tests/test_guard.c -- guarded regions (store/guard.c): a data.mdb cut
 * short after the store was opened makes a read fault; inside
 * deja_store_guard that is DEJA_ECORRUPT with a message, outside it the
 * process dies. Faults outside any region keep going where they went.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli_harness.h"
#include "deja.h"

static char tmp_root[] = "/tmp/deja-test-guard-XXXXXX";

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

/* A store of `n` traces with 2 KiB inputs each, so that its trees take
 * many pages past the first few. */
static const char *make_store(const char *name, int n)
{
    const char *path = cli_tmp_path(tmp_root, name);
    deja_tracer *t = NULL;
    char text[2048];

    assert_int_equal(deja_tracer_open(&t, path, NULL), 0);
    for (int i = 0; i < n; i++) {
        deja_span *s = NULL;
        memset(text, 'a' + i % 26, sizeof text);
        snprintf(text, 32, "request %d", i);
        assert_int_equal(deja_span_begin(&s, t, "m", "1"), 0);
        assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", text, sizeof text), 0);
        assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
    }
    deja_tracer_close(t);
    return path;
}

static int count_cb(const deja_trace *trace, void *payload)
{
    (void)trace;
    (*(size_t *)payload)++;
    return 0;
}

/* The guarded function: list every trace. */
static int list_all(deja_store *store, void *payload)
{
    return deja_store_list(store, NULL, count_cb, NULL, payload);
}

/* Cut `store`'s data.mdb to its two meta pages. */
static void cut_short(const char *store)
{
    char data[4096];
    snprintf(data, sizeof data, "%s/data.mdb", store);
    assert_int_equal(truncate(data, 8192), 0);
}

static void test_guard__intact_store_runs_through(void **state)
{
    (void)state;
    const char *path = make_store("intact.store", 20);
    deja_store *store = NULL;
    size_t n = 0;

    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_guard(store, list_all, &n), 0);
    assert_int_equal(n, 20);
    assert_int_equal(deja_store_guard(store, NULL, NULL), DEJA_EINVAL);
    deja_store_close(store);
}

/* Without a region, the read of a page past the end kills the process:
 * what the guard is for. */
static void test_guard__cut_store_kills_unguarded_read(void **state)
{
    (void)state;
    const char *path = make_store("cut-unguarded.store", 300);
    int status = 0;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        deja_store *store = NULL;
        size_t n = 0;
        /* cmocka catches faults itself: the child dies as a program would. */
        signal(SIGBUS, SIG_DFL);
        signal(SIGSEGV, SIG_DFL);
        if (deja_store_open(&store, path, DEJA_STORE_READONLY) != 0)
            _exit(3);
        cut_short(path);
        deja_store_list(store, NULL, count_cb, NULL, &n);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 3);
}

/* In a region, the same read is DEJA_ECORRUPT with a message naming the
 * store, and the process goes on: it can close the handle and open the
 * store again (refused now: the file is short). Run in a child, whose
 * _exit skips the leak check: the region leaves LMDB's cursor and
 * transaction behind, as deja_store_guard documents. */
static void test_guard__cut_store_is_an_error(void **state)
{
    (void)state;
    const char *path = make_store("cut-guarded.store", 300);
    int status = 0;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        deja_store *store = NULL;
        size_t n = 0;
        const char *msg;
        if (deja_store_open(&store, path, DEJA_STORE_READONLY) != 0)
            _exit(3);
        cut_short(path);
        if (deja_store_guard(store, list_all, &n) != DEJA_ECORRUPT)
            _exit(4);
        msg = deja_error_last();
        if (strstr(msg, "is damaged (SIGBUS while reading it)") == NULL ||
            strstr(msg, path) == NULL || strstr(msg, "run deja verify") == NULL)
            _exit(5);
        deja_store_close(store);
        if (deja_store_open(&store, path, DEJA_STORE_READONLY) != DEJA_ECORRUPT)
            _exit(6);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void on_old_handler(int sig)
{
    (void)sig;
    _exit(42);
}

/* A fault outside any region, once the guard's handlers are in place, goes
 * to the handler the program had before. */
static void test_guard__fault_outside_goes_to_previous_handler(void **state)
{
    (void)state;
    const char *path = make_store("outside.store", 3);
    int status = 0;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        deja_store *store = NULL;
        size_t n = 0;
        signal(SIGBUS, on_old_handler);
        if (deja_store_open(&store, path, DEJA_STORE_READONLY) != 0 ||
            deja_store_guard(store, list_all, &n) != 0 || n != 3)
            _exit(3);
        deja_store_close(store);
        raise(SIGBUS);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guard__intact_store_runs_through),
        cmocka_unit_test(test_guard__cut_store_kills_unguarded_read),
        cmocka_unit_test(test_guard__cut_store_is_an_error),
        cmocka_unit_test(test_guard__fault_outside_goes_to_previous_handler),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
