/*
 * tests/test_pipeline.c -- trees of traces and the replay of pipeline runs
 * (replay/tree.c, replay/pipeline.c): the example pipeline preprocess ->
 * classifier -> postprocess recorded by examples/pipeline, replayed with
 * step 2 changed (classifier-v5: a retrained weight flips some labels),
 * isolated and chained; and hostile stores whose parents form cycles or go
 * too deep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli_harness.h"
#include "deja.h"

#define RUNS 8

static char tmp_root[] = "/tmp/deja-test-pipeline-XXXXXX";
static char store_path[600];
static deja_id roots[RUNS];

/* The nodes of `t` whose model is `name`: the index of the first. */
static size_t node_named(const deja_tree *t, size_t from, const char *name)
{
    for (size_t i = from; i < t->nnodes; i++) {
        if (strcmp(t->nodes[i].model_name, name) == 0)
            return i;
    }
    return DEJA_TREE_NONE;
}

static int group_setup(void **state)
{
    char cmd[4096];
    FILE *fp;
    size_t n = 0;
    char line[64];
    (void)state;
    if (cli_group_begin(tmp_root) != 0)
        return -1;
    snprintf(store_path, sizeof store_path, "%s/p.store", tmp_root);
    /* Relative plugin names: the steps record them, and replay finds them
     * on DEJA_PLUGIN_PATH. */
    snprintf(cmd, sizeof cmd, "%s/pipeline %s preprocess classifier-v1 postprocess %d",
             DEJA_BIN_DIR, store_path, RUNS);
    fp = popen(cmd, "r");
    if (fp == NULL)
        return -1;
    while (n < RUNS && fgets(line, sizeof line, fp) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (deja_id_parse(&roots[n], line) != 0)
            break;
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

static deja_store *open_store(void)
{
    deja_store *s = NULL;
    assert_int_equal(deja_store_open(&s, store_path, DEJA_STORE_READONLY), 0);
    return s;
}

/* A run's tree: the root, then its three steps in the order they ran. */
static void test_pipeline__tree_of_a_run(void **state)
{
    deja_store *s = open_store();
    deja_tree *t = NULL;
    deja_id top;
    (void)state;
    assert_int_equal(deja_tree_get(s, &roots[0], 1, &t), 0);
    assert_int_equal(t->nnodes, 4);
    assert_int_equal(t->nroots, 1);
    assert_string_equal(t->nodes[0].model_name, "pipeline");
    assert_int_equal(t->nodes[0].nsteps, 3);
    assert_true(t->nodes[0].parent == DEJA_TREE_NONE);
    assert_string_equal(t->nodes[1].model_name, "preprocess");
    assert_string_equal(t->nodes[2].model_name, "classifier");
    assert_string_equal(t->nodes[3].model_name, "postprocess");
    for (size_t i = 1; i < 4; i++) {
        assert_int_equal(t->nodes[i].depth, 1);
        assert_int_equal(t->nodes[i].parent, 0);
        assert_true(t->nodes[i].has_model_config);
    }
    assert_string_equal(t->nodes[2].model_plugin, "classifier-v1");
    /* From a step, up to its root. */
    assert_int_equal(deja_tree_root(s, &t->nodes[3].id, &top), 0);
    assert_memory_equal(&top, &roots[0], sizeof top);
    deja_tree_free(t);
    /* Several roots in one scan, in the order given. */
    assert_int_equal(deja_tree_get(s, roots, RUNS, &t), 0);
    assert_int_equal(t->nnodes, 4 * RUNS);
    assert_int_equal(t->nroots, RUNS);
    assert_memory_equal(&t->nodes[4].id, &roots[1], sizeof(deja_id));
    deja_tree_free(t);
    deja_store_close(s);
}

/* Replay every run with the classifier changed to v5; `check` looks at
 * each result. Returns how many runs diverged at the classifier. */
static size_t replay_all(deja_pipeline_mode mode, const char *classify, size_t *affected)
{
    deja_store *s = open_store();
    deja_step_model m = {"classifier", classify};
    deja_pipeline_options o = DEJA_PIPELINE_OPTIONS_INIT;
    size_t diverging = 0;
    o.mode = mode;
    o.models = &m;
    o.nmodels = 1;
    *affected = 0;
    for (size_t r = 0; r < RUNS; r++) {
        deja_pipeline_result *res = NULL;
        size_t cls, post, pre;
        assert_int_equal(deja_pipeline_replay(s, &roots[r], &o, &res), 0);
        cls = node_named(res->tree, 0, "classifier");
        post = node_named(res->tree, 0, "postprocess");
        pre = node_named(res->tree, 0, "preprocess");
        assert_true(cls != DEJA_TREE_NONE && post != DEJA_TREE_NONE && pre != DEJA_TREE_NONE);
        /* The root has no model: the run itself, not replayed, not skipped. */
        assert_int_equal(res->steps[0].skip, DEJA_STEP_RUN);
        assert_int_equal(res->skipped, 0);
        assert_int_equal(res->replayed, 3);
        /* Steps 1 and 3 replay on their recorded models. */
        assert_string_equal(res->steps[pre].spec, "preprocess");
        assert_string_equal(res->steps[post].spec, "postprocess");
        assert_int_equal(res->steps[pre].verdict, DEJA_VERDICT_SAME);
        assert_string_equal(res->steps[cls].model_version, "5");
        /* Step 3 never diverges on its own: its recorded inputs reproduce. */
        assert_false(res->steps[post].own);
        if (res->steps[cls].verdict == DEJA_VERDICT_DIVERGED) {
            diverging++;
            assert_int_equal(res->first, cls);
            assert_true(res->steps[cls].own);
        } else {
            assert_true(res->first == DEJA_TREE_NONE);
        }
        if (mode == DEJA_PIPELINE_ISOLATED) {
            assert_int_equal(res->steps[post].verdict, DEJA_VERDICT_SAME);
            assert_int_equal(res->steps[post].nfed, 0);
            assert_int_equal(res->affected, 0);
        } else {
            /* Fed the classifier's replayed logits. */
            assert_int_equal(res->steps[post].nfed, 1);
            assert_int_equal(res->steps[cls].nfed, 1);
            if (res->steps[post].verdict == DEJA_VERDICT_DIVERGED) {
                assert_true(res->steps[post].affected);
                assert_int_equal(res->steps[post].cause, cls);
                assert_int_equal(res->steps[post].alone, DEJA_VERDICT_SAME);
                assert_int_equal(res->steps[cls].verdict, DEJA_VERDICT_DIVERGED);
                (*affected)++;
            }
        }
        deja_pipeline_result_free(res);
    }
    deja_store_close(s);
    return diverging;
}

/* Isolated: the classifier is named, the postprocess reproduces. */
static void test_pipeline__isolated_names_step2(void **state)
{
    size_t affected;
    (void)state;
    assert_true(replay_all(DEJA_PIPELINE_ISOLATED, "classifier-v5", &affected) >= 2);
}

/* Chained: the classifier is named, and the postprocess is listed as
 * changed because of it. */
static void test_pipeline__chained_lists_step3_affected(void **state)
{
    size_t affected;
    (void)state;
    assert_true(replay_all(DEJA_PIPELINE_CHAINED, "classifier-v5", &affected) >= 2);
    assert_true(affected >= 2);
}

/* The recorded models reproduce every step, chained too. */
static void test_pipeline__same_models_reproduce(void **state)
{
    deja_store *s = open_store();
    deja_pipeline_options o = DEJA_PIPELINE_OPTIONS_INIT;
    deja_pipeline_result *res = NULL;
    (void)state;
    o.mode = DEJA_PIPELINE_CHAINED;
    assert_int_equal(deja_pipeline_replay(s, &roots[1], &o, &res), 0);
    assert_int_equal(res->same, 3);
    assert_true(res->first == DEJA_TREE_NONE);
    assert_int_equal(res->affected, 0);
    for (size_t i = 1; i < res->tree->nnodes; i++)
        assert_false(res->steps[i].fed_changed);
    deja_pipeline_result_free(res);
    deja_store_close(s);
}

/* A bare model serves the steps named like it; a name the tree lacks, a
 * step given as the root, two models for one step: refused. */
static void test_pipeline__bad_input(void **state)
{
    deja_store *s = open_store();
    deja_pipeline_options o = DEJA_PIPELINE_OPTIONS_INIT;
    deja_pipeline_result *res = NULL;
    deja_tree *t = NULL;
    deja_step_model bare = {NULL, "classifier-v5"};
    deja_step_model unknown = {"nope", "classifier-v5"};
    deja_step_model other = {NULL, "textgen-v1"};
    deja_step_model twice[2] = {{"classifier", "classifier-v5"}, {NULL, "classifier-v4"}};
    (void)state;
    o.models = &bare;
    o.nmodels = 1;
    assert_int_equal(deja_pipeline_replay(s, &roots[0], &o, &res), 0);
    assert_string_equal(res->steps[node_named(res->tree, 0, "classifier")].spec, "classifier-v5");
    deja_pipeline_result_free(res);
    res = NULL;

    o.models = &unknown;
    assert_int_equal(deja_pipeline_replay(s, &roots[0], &o, &res), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "no step named 'nope'"));
    assert_non_null(strstr(deja_error_last(), "classifier"));
    assert_null(res);

    o.models = &other;
    assert_int_equal(deja_pipeline_replay(s, &roots[0], &o, &res), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "STEP=SPEC"));

    o.models = twice;
    o.nmodels = 2;
    assert_int_equal(deja_pipeline_replay(s, &roots[0], &o, &res), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "two models for step 'classifier'"));

    o.nmodels = 0;
    assert_int_equal(deja_tree_get(s, &roots[0], 1, &t), 0);
    assert_int_equal(deja_pipeline_replay(s, &t->nodes[2].id, &o, &res), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "is a step of pipeline"));
    {
        char root[DEJA_ID_STRLEN + 1];
        deja_id_format(&roots[0], root);
        assert_non_null(strstr(deja_error_last(), root));
    }
    deja_tree_free(t);
    deja_store_close(s);
}

/* Record a span named `name` with parent `parent` (may be NULL), left open
 * in `*out`. */
static void span_open(deja_tracer *tr, const char *name, const deja_id *parent, deja_span **out)
{
    assert_int_equal(deja_span_begin(out, tr, name, "1"), 0);
    if (parent != NULL)
        assert_int_equal(deja_span_parent(*out, parent), 0);
    assert_int_equal(deja_span_add_text(*out, DEJA_OUTPUT, "y", "x", 1), 0);
}

/* A hostile store: parents that form cycles, and a chain deeper than the
 * bound. Every walk ends, the cycle is named, the depth refused. */
static void test_pipeline__hostile_parents(void **state)
{
    char path[700];
    deja_tracer *tr = NULL;
    deja_span *a = NULL, *b = NULL, *self = NULL, *chain = NULL;
    deja_id ida, idb, idself, first, prev, top;
    deja_store *s = NULL;
    deja_tree *t = NULL;
    deja_pipeline_result *res = NULL;
    (void)state;
    snprintf(path, sizeof path, "%s/hostile.store", tmp_root);
    assert_int_equal(deja_tracer_open(&tr, path, NULL), 0);
    /* a <-> b, and a trace that is its own parent. */
    span_open(tr, "a", NULL, &a);
    span_open(tr, "b", NULL, &b);
    ida = *deja_span_id(a);
    idb = *deja_span_id(b);
    assert_int_equal(deja_span_parent(a, &idb), 0);
    assert_int_equal(deja_span_parent(b, &ida), 0);
    assert_int_equal(deja_span_end(a, DEJA_STATUS_OK, NULL), 0);
    assert_int_equal(deja_span_end(b, DEJA_STATUS_OK, NULL), 0);
    span_open(tr, "self", NULL, &self);
    idself = *deja_span_id(self);
    assert_int_equal(deja_span_parent(self, &idself), 0);
    assert_int_equal(deja_span_end(self, DEJA_STATUS_OK, NULL), 0);
    /* A chain one level deeper than the bound. */
    for (int i = 0; i <= DEJA_TREE_MAX_DEPTH + 1; i++) {
        span_open(tr, "link", i ? &prev : NULL, &chain);
        prev = *deja_span_id(chain);
        if (i == 0)
            first = prev;
        assert_int_equal(deja_span_end(chain, DEJA_STATUS_OK, NULL), 0);
    }
    assert_int_equal(deja_tracer_flush(tr), 0);
    deja_tracer_close(tr);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_tree_root(s, &ida, &top), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "cycle"));
    assert_int_equal(deja_tree_root(s, &idself, &top), DEJA_ECORRUPT);
    assert_int_equal(deja_tree_get(s, &ida, 1, &t), 0);
    assert_int_equal(t->nnodes, 2);
    assert_int_equal(t->nnotes, 1);
    assert_non_null(strstr(t->notes[0], "cycle"));
    deja_tree_free(t);
    assert_int_equal(deja_tree_get(s, &idself, 1, &t), 0);
    assert_int_equal(t->nnodes, 1);
    deja_tree_free(t);
    t = NULL;
    /* A replay of a cycle refuses the root: it has a parent in the store. */
    assert_int_equal(deja_pipeline_replay(s, &ida, NULL, &res), DEJA_ECORRUPT);
    assert_null(res);
    /* Too deep, from either end. */
    assert_int_equal(deja_tree_get(s, &first, 1, &t), DEJA_ENOMEM);
    assert_non_null(strstr(deja_error_last(), "deeper than"));
    assert_null(t);
    assert_int_equal(deja_tree_root(s, &prev, &top), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "levels of parents"));
    /* A step nobody gave a model for, and no recorded one: not replayed. */
    deja_store_close(s);
}

/* A run with more steps than a tree may hold: refused, not grown without
 * bound. */
static void test_pipeline__size_bound(void **state)
{
    char path[700];
    deja_tracer *tr = NULL;
    deja_span *root = NULL, *step = NULL;
    deja_tracer_options to = DEJA_TRACER_OPTIONS_INIT;
    deja_id rid;
    deja_store *s = NULL;
    deja_tree *t = NULL;
    (void)state;
    snprintf(path, sizeof path, "%s/wide.store", tmp_root);
    to.batch_max = 4096;
    assert_int_equal(deja_tracer_open(&tr, path, &to), 0);
    span_open(tr, "app", NULL, &root);
    rid = *deja_span_id(root);
    assert_int_equal(deja_span_end(root, DEJA_STATUS_OK, NULL), 0);
    for (int i = 0; i < DEJA_TREE_MAX_NODES; i++) {
        span_open(tr, "step", &rid, &step);
        assert_int_equal(deja_span_end(step, DEJA_STATUS_OK, NULL), 0);
    }
    assert_int_equal(deja_tracer_flush(tr), 0);
    deja_tracer_close(tr);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_tree_get(s, &rid, 1, &t), DEJA_ENOMEM);
    assert_non_null(strstr(deja_error_last(), "more than 10000 traces"));
    assert_null(t);
    deja_store_close(s);
}

/* A step recorded without its model (the span API alone) and given none:
 * listed as not replayed, the others go on. */
static void test_pipeline__step_without_model(void **state)
{
    char path[700];
    deja_tracer *tr = NULL;
    deja_span *root = NULL, *step = NULL;
    deja_id rid;
    deja_store *s = NULL;
    deja_pipeline_result *res = NULL;
    (void)state;
    snprintf(path, sizeof path, "%s/nomodel.store", tmp_root);
    assert_int_equal(deja_tracer_open(&tr, path, NULL), 0);
    span_open(tr, "app", NULL, &root);
    rid = *deja_span_id(root);
    span_open(tr, "mystery", &rid, &step);
    assert_int_equal(deja_span_end(step, DEJA_STATUS_OK, NULL), 0);
    assert_int_equal(deja_span_end(root, DEJA_STATUS_OK, NULL), 0);
    assert_int_equal(deja_tracer_flush(tr), 0);
    deja_tracer_close(tr);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_pipeline_replay(s, &rid, NULL, &res), 0);
    assert_int_equal(res->tree->nnodes, 2);
    assert_int_equal(res->steps[0].skip, DEJA_STEP_RUN);
    assert_int_equal(res->steps[1].skip, DEJA_STEP_NO_MODEL);
    assert_int_equal(res->skipped, 1);
    assert_int_equal(res->replayed, 0);
    deja_pipeline_result_free(res);
    deja_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline__tree_of_a_run),
        cmocka_unit_test(test_pipeline__isolated_names_step2),
        cmocka_unit_test(test_pipeline__chained_lists_step3_affected),
        cmocka_unit_test(test_pipeline__same_models_reproduce),
        cmocka_unit_test(test_pipeline__bad_input),
        cmocka_unit_test(test_pipeline__hostile_parents),
        cmocka_unit_test(test_pipeline__step_without_model),
        cmocka_unit_test(test_pipeline__size_bound),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
