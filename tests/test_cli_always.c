/*
 * tests/test_cli_always.c -- `deja pin`, `unpin`, `budget`, `gc --max-size`,
 * `ls --pinned` and the sampling options of `deja run` through the real
 * binary: what a platform team leaving deja on for months types.
 */
#include <jansson.h>

#include "cli_harness.h"

static char root[] = "/tmp/deja-test-cli-always-XXXXXX";

static const char *tmp(const char *name)
{
    return cli_tmp_path(root, name);
}

/* Record `n` textgen inferences with ~1.5 KB prompts into `store`, with
 * `extra` options for `deja run` (NULL-terminated; may be NULL). */
static void record_with(const char *store, int n, int offset, const char *const *extra)
{
    const char *req = tmp("req.jsonl");
    FILE *fp = fopen(req, "w");
    cli_run r;

    assert_non_null(fp);
    for (int i = 0; i < n; i++) {
        fprintf(fp, "{\"inputs\":{\"prompt\":\"Once upon a time %d ", i + offset);
        for (int k = 0; k < 150; k++)
            fprintf(fp, "%c%d", 'a' + (i * 7 + k) % 26, (i * 31 + k * 17) % 1000);
        fprintf(fp, "\"},\"params\":{\"max_tokens\":20},\"seed\":%d}\n", i + offset);
    }
    fclose(fp);
    {
        const char *args[CLI_MAX_ARGS] = {"--store",    store,        "run", "--model",
                                          "textgen-v1", "--requests", req};
        size_t n_args = 7;

        for (size_t i = 0; extra != NULL && extra[i] != NULL && n_args < CLI_MAX_ARGS - 1; i++)
            args[n_args++] = extra[i];
        args[n_args] = NULL;
        assert_int_equal(cli_execv(&r, NULL, NULL, args), 0);
    }
    if (r.status != 0)
        fail_msg("run failed (%d): %s", r.status, r.err);
    cli_run_free(&r);
}

static void record(const char *store, int n, int offset)
{
    record_with(store, n, offset, NULL);
}

/* The number of lines `deja ls` prints with one extra option (or none). */
static size_t ls_count(const char *store, const char *opt)
{
    cli_run r;
    size_t n;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", opt, NULL), 0);
    assert_int_equal(r.status, 0);
    n = cli_count_lines(r.out);
    cli_run_free(&r);
    return n;
}

/* The id (26 characters) of the oldest trace of `store`. */
static void oldest_id(const char *store, char out[27])
{
    cli_run r;
    char *last;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", NULL), 0);
    last = cli_line(r.out, cli_count_lines(r.out) - 1);
    assert_non_null(last);
    memcpy(out, last, 26);
    out[26] = '\0';
    free(last);
    cli_run_free(&r);
}

static json_t *budget_json(const char *store)
{
    cli_run r;
    json_t *j;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "budget", "--json", NULL), 0);
    assert_int_equal(r.status, 0);
    j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    cli_run_free(&r);
    return j;
}

/* pin / unpin / ls --pinned / show: a pinned trace survives gc by age and by
 * size, shows its note, and goes once unpinned. */
static void test_cli_always__pin(void **state)
{
    const char *store = tmp("pin.store");
    char id[27];
    cli_run r;
    json_t *j;

    (void)state;
    record(store, 400, 0);
    oldest_id(store, id);
    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", store, "pin", id, "--note", "BUG-4711", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "pinned "));
    cli_run_free(&r);
    assert_int_equal(ls_count(store, "--pinned"), 1);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, NULL), 0);
    assert_non_null(strstr(r.out, "BUG-4711"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, "--json", NULL), 0);
    j = json_loads(r.out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "pin"), "note")),
                        "BUG-4711");
    json_decref(j);
    cli_run_free(&r);

    /* gc by age and by size: the pinned trace stays. */
    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", store, "gc", "--older-than", "2099-01-01", NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(ls_count(store, NULL), 1);
    record(store, 400, 1000);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "gc", "--max-size", "64K", NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(ls_count(store, "--pinned"), 1);
    assert_true(ls_count(store, NULL) >= 1);

    /* Unpin; unpinning again is an error that names the trace. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "unpin", id, NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "unpin", id, NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "is not pinned");
    cli_run_free(&r);
    assert_int_equal(ls_count(store, "--pinned"), 0);

    /* Errors: no id, an unknown id, a missing store (not created). */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "pin", NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "no trace id given"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "pin", "ZZZZZZ", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", tmp("nope"), "pin", id, NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "does not exist");
    assert_false(cli_exists(tmp("nope")));
    cli_run_free(&r);
}

/* budget: set on a new store, recording stays within it, stats and budget
 * report evictions; bad values are refused and change nothing. */
static void test_cli_always__budget(void **state)
{
    const char *store = tmp("budget.store");
    cli_run r;
    json_t *j;
    struct stat st;
    char data[300];

    (void)state;
    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", store, "budget", "512K", "--protect-share", "10", NULL),
        0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "512.0 KiB"));
    cli_run_free(&r);
    for (int round = 0; round < 4; round++)
        record(store, 500, round * 500);
    j = budget_json(store);
    assert_int_equal(json_integer_value(json_object_get(j, "max_bytes")), 512 * 1024);
    assert_int_equal(json_integer_value(json_object_get(j, "protect_percent")), 10);
    assert_true(json_integer_value(json_object_get(j, "evicted")) > 0);
    json_decref(j);
    snprintf(data, sizeof data, "%s/data.mdb", store);
    assert_int_equal(stat(data, &st), 0);
    assert_true((uint64_t)st.st_size <= 2 * 512 * 1024 + (1 << 20));
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "stats", NULL), 0);
    assert_non_null(strstr(r.out, "evicted (budget)"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "verify", NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "budget", "lots", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "cannot read size 'lots'");
    cli_run_free(&r);
    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", store, "budget", "--protect-share", "101", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "not a percentage");
    cli_run_free(&r);
    j = budget_json(store);
    assert_int_equal(json_integer_value(json_object_get(j, "max_bytes")), 512 * 1024);
    json_decref(j);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "budget", "none", NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    j = budget_json(store);
    assert_int_equal(json_integer_value(json_object_get(j, "max_bytes")), 0);
    json_decref(j);
}

/* gc --max-size: a dry run changes nothing; then the oldest go; a bad size
 * is refused. */
static void test_cli_always__gc_max_size(void **state)
{
    const char *store = tmp("gc.store");
    size_t before;
    cli_run r;
    json_t *j;

    (void)state;
    record(store, 800, 0);
    before = ls_count(store, NULL);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "gc", "--max-size", "256K",
                              "--dry-run", "--json", NULL),
                     0);
    assert_int_equal(r.status, 0);
    j = json_loads(r.out, 0, NULL);
    assert_true(json_integer_value(json_object_get(j, "traces")) > 0);
    json_decref(j);
    cli_run_free(&r);
    assert_int_equal(ls_count(store, NULL), before);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "gc", "--max-size", "256K", NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_true(ls_count(store, NULL) < before);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "gc", "--max-size", "0", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--max-size: cannot read size '0'");
    cli_run_free(&r);
}

/* The sampling options: a rate per model, the first N kept, dedup of
 * identical requests with their repeat count shown; every decision in
 * `deja stats`; bad values refused with the store untouched. */
static void test_cli_always__sampling(void **state)
{
    const char *store = tmp("sampling.store");
    const char *const none[] = {"--sample", "model=textgen:0", "--keep-first", "3", NULL};
    cli_run r;
    json_t *j;
    char id[27];

    (void)state;
    record_with(store, 50, 0, none);
    assert_int_equal(ls_count(store, NULL), 3);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "stats", "--json", NULL), 0);
    j = json_loads(r.out, 0, NULL);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "counters"), "sample.kept_first")),
        3);
    assert_int_equal(json_integer_value(json_object_get(j, "sampled_out")), 47);
    json_decref(j);
    cli_run_free(&r);

    /* 20 requests, each sent three times in one run: recorded once each
     * (dedup remembers the requests of one recording process). */
    {
        const char *req = tmp("dup.jsonl");
        FILE *fp = fopen(req, "w");

        assert_non_null(fp);
        for (int round = 0; round < 3; round++)
            for (int i = 0; i < 20; i++)
                fprintf(fp, "{\"inputs\":{\"prompt\":\"Once %d\"},\"seed\":%d}\n", i, i);
        fclose(fp);
        assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "run", "--model", "textgen-v1",
                                  "--requests", req, "--dedup", NULL),
                         0);
        assert_int_equal(r.status, 0);
        cli_run_free(&r);
    }
    assert_int_equal(ls_count(store, NULL), 3 + 20);
    {
        cli_run ls;
        char *newest;

        assert_int_equal(cli_exec(&ls, NULL, NULL, "--store", store, "ls", "--limit", "1", NULL),
                         0);
        newest = cli_line(ls.out, 0);
        memcpy(id, newest, 26);
        id[26] = '\0';
        free(newest);
        cli_run_free(&ls);
    }
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, "--json", NULL), 0);
    j = json_loads(r.out, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "repeats")), 2);
    json_decref(j);
    cli_run_free(&r);

    /* Sampling everything away keeps what breaks a rule of --rules. */
    {
        const char *req = tmp("rules.jsonl");
        const char *rules = tmp("rules.txt");
        const char *rstore = tmp("rules.store");
        FILE *fp = fopen(req, "w");

        assert_non_null(fp);
        for (int i = 0; i < 10; i++)
            fprintf(fp, "{\"inputs\":{\"prompt\":\"%s %d\"}}\n", i % 3 == 0 ? "Beware" : "Once",
                    i);
        fclose(fp);
        assert_int_equal(cli_write_file(rules, "once: input.prompt matches ^Once\n"), 0);
        assert_int_equal(cli_exec(&r, NULL, NULL, "--store", rstore, "run", "--model",
                                  "textgen-v1", "--requests", req, "--rules", rules, "--sample",
                                  "0", NULL),
                         0);
        assert_int_equal(r.status, 0);
        /* Every id printed is either in the store or marked as left out. */
        {
            size_t left_out = 0;
            for (const char *p = r.out; (p = strstr(p, "  left out by sampling\n")) != NULL; p++)
                left_out++;
            assert_int_equal(left_out, 6);
            assert_int_equal(cli_count_lines(r.out), 10 + 6);
        }
        cli_run_free(&r);
        assert_int_equal(ls_count(rstore, NULL), 4); /* lines 0, 3, 6, 9 */
        assert_int_equal(cli_exec(&r, NULL, NULL, "--store", rstore, "ls", "--tag",
                                  "deja.invalid=once", NULL),
                         0);
        assert_int_equal(cli_count_lines(r.out), 4);
        cli_run_free(&r);
    }

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", tmp("never.store"), "run", "--model",
                              "textgen-v1", "--sample", "model=textgen:2", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--sample: cannot read 'model=textgen:2'");
    assert_false(cli_exists(tmp("never.store")));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", tmp("never.store"), "run", "--model",
                              "textgen-v1", "--keep-slower", "soon", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--keep-slower: cannot read duration 'soon'");
    cli_run_free(&r);
}

static int setup(void **state)
{
    (void)state;
    return cli_group_begin(root);
}

static int teardown(void **state)
{
    (void)state;
    cli_rm_rf(root);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_always__pin),
        cmocka_unit_test(test_cli_always__budget),
        cmocka_unit_test(test_cli_always__gc_max_size),
        cmocka_unit_test(test_cli_always__sampling),
    };

    return cmocka_run_group_tests_name("test_cli_always", tests, setup, teardown);
}
