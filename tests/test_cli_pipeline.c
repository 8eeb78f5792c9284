/*
 * tests/test_cli_pipeline.c -- pipelines through the real binary: the
 * example pipeline (preprocess -> classifier-v1 -> postprocess) recorded by
 * build/bin/pipeline, listed (ls --root, --tree), shown as a tree, replayed
 * with step 2 changed (isolated and chained, text and JSON), bisected over
 * step 2's versions, and refused where the input is wrong.
 */
#include "cli_harness.h"

#include <jansson.h>

#include "deja.h"

#define RUNS 8

static char tmp_root[] = "/tmp/deja-test-cli-pipeline-XXXXXX";
static char store[600];
static char roots[RUNS][27];

static int group_setup(void **state)
{
    char cmd[4096], line[64];
    FILE *fp;
    size_t n = 0;
    (void)state;
    if (cli_group_begin(tmp_root) != 0)
        return -1;
    snprintf(store, sizeof store, "%s/p.store", tmp_root);
    snprintf(cmd, sizeof cmd, "%s/pipeline %s preprocess classifier-v1 postprocess %d",
             DEJA_BIN_DIR, store, RUNS);
    fp = popen(cmd, "r");
    if (fp == NULL)
        return -1;
    while (n < RUNS && fgets(line, sizeof line, fp) != NULL) {
        if (strlen(line) != 27)
            break;
        memcpy(roots[n], line, 26);
        roots[n][26] = '\0';
        n++;
    }
    return pclose(fp) == 0 && n == RUNS ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    cli_rm_rf(tmp_root);
    return 0;
}

/* Occurrences of `needle` in `text`. */
static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The id of the step `name` of root `r` (from ls --tree --json). */
static void step_id(size_t r, const char *name, char out[27])
{
    cli_run run;
    json_t *tree, *steps;
    assert_int_equal(cli_exec(&run, NULL, NULL, "--store", store, "show", roots[r], "--json",
                              NULL),
                     0);
    assert_int_equal(run.status, 0);
    tree = json_loads(run.out, 0, NULL);
    assert_non_null(tree);
    steps = json_object_get(json_object_get(json_object_get(tree, "pipeline"), "tree"), "steps");
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(steps); i++) {
        json_t *s = json_array_get(steps, i);
        if (strcmp(json_string_value(json_object_get(json_object_get(s, "model"), "name")),
                   name) == 0)
            snprintf(out, 27, "%s", json_string_value(json_object_get(s, "id")));
    }
    assert_int_equal(strlen(out), 26);
    json_decref(tree);
    cli_run_free(&run);
}

/* ls --root lists the runs only, and --limit counts them; --tree draws
 * each run with its steps. */
static void test_cli_pipeline__ls_root_and_tree(void **state)
{
    cli_run r;
    (void)state;
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--root", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(cli_count_lines(r.out), RUNS);
    assert_int_equal(count_of(r.out, "pipeline@1"), RUNS);
    assert_int_equal(count_of(r.out, "classifier@"), 0);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--root", "--limit", "3",
                              NULL),
                     0);
    assert_int_equal(cli_count_lines(r.out), 3);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--tree", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(cli_count_lines(r.out), 4 * RUNS);
    assert_int_equal(count_of(r.out, "├─ "), 2 * RUNS);
    assert_int_equal(count_of(r.out, "└─ "), RUNS);
    assert_non_null(strstr(r.out, "└─ "));
    {
        /* The newest run first, its steps below it in the order they ran. */
        char *l0 = cli_line(r.out, 0), *l1 = cli_line(r.out, 1), *l3 = cli_line(r.out, 3);
        assert_non_null(strstr(l0, roots[RUNS - 1]));
        assert_non_null(strstr(l1, "├─ "));
        assert_non_null(strstr(l1, "preprocess@1"));
        assert_non_null(strstr(l3, "└─ "));
        assert_non_null(strstr(l3, "postprocess@1"));
        free(l0);
        free(l1);
        free(l3);
    }
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--tree", "--limit", "1",
                              "--json", NULL),
                     0);
    {
        json_t *t = json_loads(r.out, 0, NULL);
        assert_non_null(t);
        assert_string_equal(json_string_value(json_object_get(t, "id")), roots[RUNS - 1]);
        assert_int_equal(json_array_size(json_object_get(t, "steps")), 3);
        json_decref(t);
    }
    cli_run_free(&r);
}

/* show on a step draws its run's tree with the step marked. */
static void test_cli_pipeline__show_tree(void **state)
{
    cli_run r;
    char cls[27];
    (void)state;
    step_id(0, "classifier", cls);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", cls, NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "pipeline  4 traces"));
    assert_non_null(strstr(r.out, roots[0]));
    assert_non_null(strstr(r.out, "classifier@1  ok"));
    assert_int_equal(count_of(r.out, "<- this trace"), 1);
    assert_non_null(strstr(r.out, cls));
    cli_run_free(&r);
    /* The bug report: the tree and the command that replays the run. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", cls, "--md", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "### Pipeline"));
    assert_non_null(strstr(r.out, "This trace is a step of the run"));
    {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "deja replay %s --chained", roots[0]);
        assert_non_null(strstr(r.out, cmd));
    }
    assert_null(strstr(r.out, "\033["));
    cli_run_free(&r);
}

/* Isolated: step 2 is named, step 3 reproduces; chained: step 3 is listed
 * as changed because of step 2. Every run at once, selected by filter. */
static void test_cli_pipeline__replay_names_step2(void **state)
{
    cli_run r;
    (void)state;
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", "--trace-model",
                              "pipeline", "--model", "classifier=classifier-v5", NULL),
                     0);
    assert_int_equal(r.status, 1);
    assert_int_equal(count_of(r.out, "pipeline 01"), RUNS);
    assert_true(count_of(r.out, "first divergence: step classifier") >= 2);
    assert_int_equal(count_of(r.out, "postprocess@1  same"), RUNS);
    assert_int_equal(count_of(r.out, "affected downstream"), 0);
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", roots[0], "--model",
                              "classifier=classifier-v5", "--chained", NULL),
                     0);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "(chained, 4 traces)"));
    assert_non_null(strstr(r.out, "first divergence: step classifier"));
    assert_non_null(strstr(r.out, "affected downstream: postprocess"));
    assert_non_null(strstr(r.out, "[because of classifier"));
    assert_non_null(strstr(r.out, "pipeline@1  run"));
    cli_run_free(&r);

    /* A filter that selects steps too (newest first: steps before their
     * run) replays each run once; --limit counts runs. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", "--status", "ok",
                              "--isolated", NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_int_equal(count_of(r.out, "pipeline 01"), RUNS);
    assert_int_equal(count_of(r.out, "3 steps replayed: 3 same"), RUNS);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", "--status", "ok",
                              "--limit", "2", "--chained", NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_int_equal(count_of(r.out, "pipeline 01"), 2);
    assert_non_null(strstr(r.out, roots[RUNS - 1]));
    cli_run_free(&r);

    /* A divergence comes with its likely causes: the environment changed. */
    {
        const char *was = getenv("OMP_NUM_THREADS");
        char *saved = was ? strdup(was) : NULL;
        setenv("OMP_NUM_THREADS", saved && strcmp(saved, "3") == 0 ? "4" : "3", 1);
        assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", roots[0],
                                  "--model", "classifier=classifier-v5", NULL),
                         0);
        if (saved != NULL)
            setenv("OMP_NUM_THREADS", saved, 1);
        else
            unsetenv("OMP_NUM_THREADS");
        free(saved);
    }
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "likely cause: variable OMP_NUM_THREADS"));
    cli_run_free(&r);

    /* The recorded versions reproduce: exit 0, no divergence. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", roots[0], "--chained",
                              NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "first divergence: none"));
    assert_non_null(strstr(r.out, "3 steps replayed: 3 same"));
    cli_run_free(&r);
}

/* The JSON form: a pipeline_step per trace, then the summary. */
static void test_cli_pipeline__replay_json(void **state)
{
    cli_run r;
    json_t *sum, *first, *aff;
    char *last;
    (void)state;
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", roots[0], "--model",
                              "classifier=classifier-v5", "--chained", "--json", NULL),
                     0);
    assert_int_equal(r.status, 1);
    assert_int_equal(cli_count_lines(r.out), 5);
    last = cli_line(r.out, 4);
    sum = json_loads(last, 0, NULL);
    assert_non_null(sum);
    first = json_object_get(sum, "first_divergence");
    assert_string_equal(json_string_value(json_object_get(first, "step")), "classifier");
    aff = json_object_get(sum, "affected_steps");
    assert_int_equal(json_array_size(aff), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(aff, 0), "step")),
                        "postprocess");
    assert_string_equal(json_string_value(json_object_get(sum, "mode")), "chained");
    json_decref(sum);
    free(last);
    cli_run_free(&r);
}

/* bisect over step 2's versions inside the runs. */
static void test_cli_pipeline__bisect_step(void **state)
{
    cli_run r;
    (void)state;
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "bisect", "classifier-v1",
                              "classifier-v2", "classifier-v3", "classifier-v4", "classifier-v5",
                              "classifier-v6", "--id", roots[0], "--step", "classifier", NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "first bad version: classifier-v5"));
    assert_non_null(strstr(r.out, "over 1 trace"));
    cli_run_free(&r);
    /* Every run (by filter): the steps of all of them. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "bisect", "classifier-v1",
                              "classifier-v5", "--model", "pipeline", "--step", "classifier",
                              NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "over 8 traces"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "bisect", "classifier-v1",
                              "classifier-v5", "--id", roots[0], "--step", "nope", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "no step named 'nope'");
    cli_run_free(&r);
}

/* A run handed over whole: export --steps, then the bundle replays it step
 * by step in place; without --steps the bundle holds the root alone. */
static void test_cli_pipeline__export_steps(void **state)
{
    char bundle[700];
    cli_run r;
    (void)state;
    snprintf(bundle, sizeof bundle, "%s/run.deja", tmp_root);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", roots[0], "-o", bundle,
                              "--steps", "--json", NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"traces\":4"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "replay", bundle, roots[0], "--model",
                              "classifier=classifier-v5", "--chained", NULL),
                     0);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "affected downstream: postprocess"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", roots[0], "-o", bundle,
                              "--json", NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"traces\":1"));
    cli_run_free(&r);
}

/* Bad input: an unknown step, a step given as the root, both modes, a
 * model that is no step: one line on stderr, exit 2. */
static void test_cli_pipeline__bad_input(void **state)
{
    cli_run r;
    char cls[27];
    (void)state;
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", roots[0], "--model",
                              "nope=classifier-v5", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "has no step named 'nope' (its steps: pipeline, preprocess, "
                             "classifier, postprocess)");
    assert_string_equal(r.out, "");
    cli_run_free(&r);

    step_id(0, "classifier", cls);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", cls, "--isolated",
                              NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "is a step of pipeline");
    assert_non_null(strstr(r.err, roots[0]));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", roots[0], "--isolated",
                              "--chained", NULL),
                     0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "exclude each other"));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", roots[0], "--isolated",
                              "--model", "textgen-v1", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "give it as STEP=SPEC");
    cli_run_free(&r);

    /* A plain replay of a root is still the plain replay of that trace. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", roots[0], "--model",
                              "classifier-v1", NULL),
                     0);
    assert_int_equal(r.status, 2);
    assert_null(strstr(r.out, "first divergence"));
    cli_run_free(&r);
}

/* A hostile store, and a bundle made from it: parents that form a cycle.
 * show prints the trace and refuses the tree; replay and the bundle's
 * replay refuse the root; nothing loops. */
static void test_cli_pipeline__hostile_cycle(void **state)
{
    char hostile[700], bundle[700], ida[27];
    deja_tracer *tr = NULL;
    deja_span *a = NULL, *b = NULL;
    deja_id ia, ib;
    cli_run r;
    (void)state;
    snprintf(hostile, sizeof hostile, "%s/hostile.store", tmp_root);
    snprintf(bundle, sizeof bundle, "%s/hostile.deja", tmp_root);
    assert_int_equal(deja_tracer_open(&tr, hostile, NULL), 0);
    assert_int_equal(deja_span_begin(&a, tr, "a", "1"), 0);
    assert_int_equal(deja_span_begin(&b, tr, "b", "1"), 0);
    ia = *deja_span_id(a);
    ib = *deja_span_id(b);
    assert_int_equal(deja_span_parent(a, &ib), 0);
    assert_int_equal(deja_span_parent(b, &ia), 0);
    assert_int_equal(deja_span_end(a, DEJA_STATUS_OK, NULL), 0);
    assert_int_equal(deja_span_end(b, DEJA_STATUS_OK, NULL), 0);
    assert_int_equal(deja_tracer_flush(tr), 0);
    deja_tracer_close(tr);
    deja_id_format(&ia, ida);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", hostile, "show", ida, NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.out, ida));
    cli_assert_one_error(&r, "parents form a cycle");
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", hostile, "replay", ida, "--isolated",
                              NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "parents form a cycle");
    cli_run_free(&r);

    /* Neither is a top-level trace. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", hostile, "ls", "--tree", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "");
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", hostile, "export", "-o", bundle, NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "replay", bundle, ida, "--chained", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "parents form a cycle");
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "show", bundle, ida, "--json", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "parents form a cycle");
    cli_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_pipeline__ls_root_and_tree),
        cmocka_unit_test(test_cli_pipeline__show_tree),
        cmocka_unit_test(test_cli_pipeline__replay_names_step2),
        cmocka_unit_test(test_cli_pipeline__replay_json),
        cmocka_unit_test(test_cli_pipeline__bisect_step),
        cmocka_unit_test(test_cli_pipeline__export_steps),
        cmocka_unit_test(test_cli_pipeline__bad_input),
        cmocka_unit_test(test_cli_pipeline__hostile_cycle),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
