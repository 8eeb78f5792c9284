/*
 * tests/test_compact.c -- `deja compact` and deja_store_compact(): the file
 * shrinks to what is in use and holds the same traces; a writer's presence
 * refuses it and leaves the store untouched; a reader open meanwhile keeps
 * reading; stats reports the file size and the free space inside it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cli_harness.h"
#include "deja.h"

static char tmp_root[] = "/tmp/deja-test-compact-XXXXXX";

/* Record `n` traces with big inputs into `store` with `deja run`. */
static void record(const char *store, int n)
{
    const char *req = cli_tmp_path(tmp_root, "requests.jsonl");
    FILE *f = fopen(req, "w");
    cli_run r;

    assert_non_null(f);
    for (int i = 0; i < n; i++) {
        fprintf(f, "{\"inputs\": {\"prompt\": \"The fox %d ", i);
        for (int k = 0; k < 2000; k++)
            fputc('a' + (i * 7 + k * 13) % 26, f);
        fprintf(f, "\"}, \"params\": {\"max_tokens\": 8}}\n");
    }
    fclose(f);
    assert_int_equal(cli_exec(&r, NULL, req, "--store", store, "run", "--model", "textgen-v1",
                              NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
}

/* `deja ls` of the store (malloc'd). */
static char *ls(const char *store)
{
    cli_run r;
    char *out;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", NULL), 0);
    assert_int_equal(r.status, 0);
    out = strdup(r.out);
    cli_run_free(&r);
    return out;
}

static void space(const char *store, uint64_t *file, uint64_t *free_bytes)
{
    deja_store *s = NULL;
    assert_int_equal(deja_store_open(&s, store, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_space(s, file, free_bytes), 0);
    deja_store_close(s);
}

/* gc frees space inside the file; compact gives it back, keeps the rest. */
static void test_compact__shrinks_and_keeps(void **state)
{
    const char *store = cli_tmp_path(tmp_root, "a.store");
    uint64_t file0, free0, file1, free1;
    char *before, *after;
    cli_run r;

    (void)state;
    record(store, 200);
    /* Delete the older half: the traces of a second run survive. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "gc", "--older-than", "0s", NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    record(store, 20);
    space(store, &file0, &free0);
    assert_true(free0 > file0 / 2); /* most of the file is free pages */
    before = ls(store);
    assert_int_equal(cli_count_lines(before), 20);

    assert_int_equal(cli_exec(&r, NULL, NULL, "compact", "--store", store, NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "compacted"));
    cli_run_free(&r);

    space(store, &file1, &free1);
    assert_true(file1 < file0 / 2);
    assert_true(free1 < file1 / 4);
    after = ls(store);
    assert_string_equal(before, after);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "verify", NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    /* Nothing left beside the store. */
    {
        char cmd[800];
        snprintf(cmd, sizeof cmd, "ls -d '%s'.compact-* >/dev/null 2>&1", store);
        assert_int_not_equal(system(cmd), 0);
    }
    /* stats shows both figures. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "stats", NULL), 0);
    assert_non_null(strstr(r.out, "file bytes"));
    assert_non_null(strstr(r.out, "free in the file"));
    cli_run_free(&r);
    free(before);
    free(after);
}

/* A process holding the store for writing: compact refuses, touches nothing. */
static void test_compact__refused_while_a_writer_holds_the_store(void **state)
{
    const char *store = cli_tmp_path(tmp_root, "b.store");
    deja_store *w = NULL;
    uint64_t file0, free0, file1, free1;
    char *before, *after;
    cli_run r;

    (void)state;
    record(store, 10);
    before = ls(store);
    space(store, &file0, &free0);
    assert_int_equal(deja_store_open(&w, store, DEJA_STORE_WRITE), 0);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "compact", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "open for writing by another process");
    cli_run_free(&r);
    deja_store_close(w);
    space(store, &file1, &free1);
    assert_true(file0 == file1);
    after = ls(store);
    assert_string_equal(before, after);
    /* Once the writer is gone, it runs. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "compact", "--json", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"file_bytes\":"));
    cli_run_free(&r);
    free(before);
    free(after);
}

static int count_cb(const deja_trace *t, void *payload)
{
    (void)t;
    (*(size_t *)payload)++;
    return 0;
}

/* A reader open across the compaction keeps reading whole traces. */
static void test_compact__reader_keeps_reading(void **state)
{
    const char *store = cli_tmp_path(tmp_root, "c.store");
    deja_store *rd = NULL;
    size_t n = 0;
    cli_run r;

    (void)state;
    record(store, 30);
    assert_int_equal(deja_store_open(&rd, store, DEJA_STORE_READONLY), 0);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "compact", NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(deja_store_list(rd, NULL, count_cb, NULL, &n), 0);
    assert_int_equal(n, 30);
    deja_store_close(rd);
    /* And a writer after it writes into the compacted store. */
    record(store, 5);
    char *after = ls(store);
    assert_int_equal(cli_count_lines(after), 35);
    free(after);
}

static int setup(void **state)
{
    (void)state;
    return cli_group_begin(tmp_root);
}

static int teardown(void **state)
{
    (void)state;
    cli_rm_rf(tmp_root);
    return 0;
}

/* A private store stays private: the compacted copy takes the modes of the
 * store it replaces (0700 and 0600), not mdb_copy's 0755 and 0644. */
static void test_compact__keeps_modes(void **state)
{
    (void)state;
    const char *store = cli_tmp_path(tmp_root, "modes.store");
    char data[600];
    struct stat st;
    mode_t old = umask(022);

    record(store, 3);
    assert_int_equal(deja_store_compact(store, NULL, NULL), 0);
    umask(old);
    assert_int_equal(stat(store, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(data, sizeof data, "%s/data.mdb", store);
    assert_int_equal(stat(data, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compact__shrinks_and_keeps),
        cmocka_unit_test(test_compact__refused_while_a_writer_holds_the_store),
        cmocka_unit_test(test_compact__reader_keeps_reading),
        cmocka_unit_test(test_compact__keeps_modes),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
