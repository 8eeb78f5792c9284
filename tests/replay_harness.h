/*
 * tests/replay_harness.h -- what the tests of replay and bisect share: a
 * store of their own under the build directory, made fresh for each case,
 * and the `deja` binary run on it through the shell.
 *
 *   #define REPLAY_TEST_NAME "test_replay"
 *   #include "replay_harness.h"
 *   ...
 *   cmocka_unit_test_setup_teardown(test_replay__x, replay_setup, replay_teardown),
 *
 * Each case then records into and reads from `store_path`,
 * "<DEJA_BUILD_DIR>/<REPLAY_TEST_NAME>.<pid>.store". Include after cmocka.h.
 */
#ifndef DEJA_TESTS_REPLAY_HARNESS_H
#define DEJA_TESTS_REPLAY_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef REPLAY_TEST_NAME
#error "define REPLAY_TEST_NAME (the test's name, as in its store's file name) first"
#endif

/* The store of the running case. */
static char store_path[256];

/* Remove the store at `store_path` and whatever is in it; missing is fine.
 * Returns 0, or -1 when it could not be removed. */
static inline int replay_store_remove(void)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", store_path);
    return system(cmd) == 0 ? 0 : -1;
}

/* cmocka setup of a case: set `store_path` to this process's store and
 * remove what a previous case left there. Returns 0, or -1 when it could
 * not be removed. */
static inline int replay_setup(void **state)
{
    (void)state;
    snprintf(store_path, sizeof(store_path), "%s/%s.%ld.store", DEJA_BUILD_DIR, REPLAY_TEST_NAME,
             (long)getpid());
    return replay_store_remove();
}

/* cmocka teardown of a case: remove its store. Returns 0, or -1 when it
 * could not be removed. */
static inline int replay_teardown(void **state)
{
    (void)state;
    return replay_store_remove();
}

/* Read the file `path` into `buf` (`cap` bytes, NUL-terminated, cut to fit)
 * and remove it; a missing file fails the case. */
static inline void replay_read_and_remove(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    remove(path);
}

/* Run the deja binary through the shell on the case's store (DEJA_STORE)
 * with the build's plugins (DEJA_PLUGIN_PATH) and the shell words made by
 * the printf format `fmt`. Its stdout goes into `out` (`outcap` bytes,
 * NUL-terminated, cut to fit), its stderr into `err` likewise, or, when
 * `err` is NULL, into `out` with stdout. Returns its exit status, or -1 when
 * it did not exit. */
static inline int replay_run_deja(char *out, size_t outcap, char *err, size_t errcap,
                                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static inline int replay_run_deja(char *out, size_t outcap, char *err, size_t errcap,
                                  const char *fmt, ...)
{
    char cmd[4096], args[1536], path_out[300], path_err[300];
    va_list ap;
    int st;

    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(path_out, sizeof(path_out), "%s.out", store_path);
    snprintf(path_err, sizeof(path_err), "%s.err", store_path);
    if (err != NULL)
        snprintf(cmd, sizeof(cmd), "DEJA_STORE='%s' DEJA_PLUGIN_PATH='%s' '%s' %s >'%s' 2>'%s'",
                 store_path, DEJA_LIB_DIR, DEJA_BIN, args, path_out, path_err);
    else
        snprintf(cmd, sizeof(cmd), "DEJA_STORE='%s' DEJA_PLUGIN_PATH='%s' '%s' %s >'%s' 2>&1",
                 store_path, DEJA_LIB_DIR, DEJA_BIN, args, path_out);
    st = system(cmd);
    replay_read_and_remove(path_out, out, outcap);
    if (err != NULL)
        replay_read_and_remove(path_err, err, errcap);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif /* DEJA_TESTS_REPLAY_HARNESS_H */
