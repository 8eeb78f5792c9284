/*
 * tests/test_verdicts.c -- verdicts that never lie: each case replays a
 * trace of the probe plugin (tests/plugins/probe.c), which misbehaves on
 * purpose, and checks the verdict and the cause it names. Every case
 * failed on the code before the fix it covers (issue 9).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Before cmocka.h, whose fail() macro would clash with the vtable's fail. */
#include "deja.h"
#include "deja_model.h"

#include <cmocka.h>

#define REPLAY_TEST_NAME "test_verdicts"
#include "replay_harness.h"

#define MAX_IDS 16
#define LINE 512

/* Record `n` inferences of `spec` on x = [i+1, 2, 3, 4] as `deja run`
 * does (the plugin's name, ARG and libraries recorded), with a tracer
 * that truncates payloads beyond `max_payload` (0: the default). */
static void record_n(const char *spec, size_t n, size_t max_payload, deja_id *ids)
{
    deja_tracer *tracer = NULL;
    deja_model *model = NULL;
    deja_tracer_options to = DEJA_TRACER_OPTIONS_INIT;
    size_t i, dsize = 0;
    assert_int_equal(deja_model_load(&model, spec), 0);
    to.libs = deja_model_libs(model, &to.nlibs);
    if (max_payload)
        to.max_payload = max_payload;
    assert_int_equal(deja_tracer_open(&tracer, store_path, &to), 0);
    for (i = 0; i < n; i++) {
        deja_span *span = NULL;
        deja_ctx *ctx = NULL;
        const uint8_t *digest = deja_model_digest(model, &dsize);
        float x[4] = {(float)i + 1, 2, 3, 4};
        uint64_t shape[1] = {4};
        deja_tensor t = {"x", DEJA_F32, 1, shape, x, sizeof(x)};
        uint64_t seed = 100 + i;
        int rc;
        assert_int_equal(
            deja_span_begin(&span, tracer, deja_model_name(model), deja_model_version(model)), 0);
        ids[i] = *deja_span_id(span);
        assert_int_equal(deja_span_model_digest(span, digest, dsize), 0);
        assert_int_equal(deja_span_model_config(span, deja_model_plugin_name(model),
                                                deja_model_config(model)),
                         0);
        assert_int_equal(deja_span_add(span, DEJA_INPUT, &t), 0);
        assert_int_equal(deja_ctx_record_v2(&ctx, span, &seed), 0);
        rc = deja_model_infer(model, ctx);
        deja_ctx_free(ctx);
        assert_int_equal(deja_span_end(span, rc ? DEJA_STATUS_ERROR : DEJA_STATUS_OK,
                                       rc ? deja_error_last() : NULL),
                         0);
    }
    deja_tracer_close(tracer);
    deja_model_free(model);
}

/* What the callback keeps of each result. */
typedef struct results {
    size_t n;
    deja_verdict verdict[MAX_IDS];
    char error[MAX_IDS][LINE];
    char varying[MAX_IDS][LINE];  /* "a,b," */
    char changes[MAX_IDS][LINE];  /* model changes, "; "-separated */
    char env[MAX_IDS][LINE];      /* environment lines */
    char notes[MAX_IDS][LINE];    /* comparison notes */
    char short_[MAX_IDS][LINE];   /* unconsumed lines */
    char noise[MAX_IDS][LINE];    /* noise lines */
    size_t nunrecorded[MAX_IDS];
    int label_changed[MAX_IDS];
} results;

static void join(char *dst, const char *const *v, size_t n)
{
    size_t i;
    dst[0] = '\0';
    for (i = 0; i < n; i++) {
        strncat(dst, v[i], LINE - strlen(dst) - 3);
        strcat(dst, "; ");
    }
}

static int gather(const deja_replay_result *r, void *payload)
{
    results *res = payload;
    size_t k = res->n++, i;
    assert_true(k < MAX_IDS);
    res->verdict[k] = r->verdict;
    snprintf(res->error[k], LINE, "%s", r->error);
    join(res->varying[k], r->varying, r->nvarying);
    join(res->changes[k], r->model_changes, r->nmodel_changes);
    join(res->env[k], r->env, r->nenv);
    join(res->notes[k], r->notes, r->nnotes);
    join(res->short_[k], r->unconsumed, r->nunconsumed);
    join(res->noise[k], r->noise, r->nnoise);
    res->nunrecorded[k] = r->nunrecorded;
    for (i = 0; r->diff && i < r->diff->ntensors; i++)
        res->label_changed[k] |= r->diff->tensors[i].rows_label > 0;
    return 0;
}

/* Replay `ids` on `spec` with `o` (NULL: defaults) and gather. */
static void replay(const deja_id *ids, size_t n, const char *spec, const deja_replay_options *o,
                   results *res)
{
    deja_store *store = NULL;
    memset(res, 0, sizeof(*res));
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_replay_run(store, ids, n, spec, o, gather, res, NULL), 0);
    deja_store_close(store);
    assert_int_equal(res->n, n);
}

/* Item 1: an output that differs the same way on every repeat is a
 * divergence even though another output varies. */
static void test_verdicts__repeat_keeps_a_stable_divergence(void **state)
{
    deja_id ids[2];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    results res;
    (void)state;
    record_n("test-probe:vary", 2, 0, ids);
    o.repeat = 3;
    replay(ids, 2, "test-probe:vary,v=1", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_DIVERGED);
    assert_int_equal(res.verdict[1], DEJA_VERDICT_DIVERGED);
    assert_string_equal(res.varying[0], "b; ");
    /* On its own version, only the varying output differs. */
    replay(ids, 2, "test-probe:vary", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_NONDETERMINISTIC);
    assert_int_equal(res.verdict[1], DEJA_VERDICT_NONDETERMINISTIC);
}

/* Item 1: the hint names the right reason for nondeterminism. */
static void test_verdicts__nondeterminism_hint(void **state)
{
    static char out[16384];
    deja_id ids[1];
    (void)state;
    record_n("test-probe:madeup", 1, 0, ids);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0,
                                     "replay --model test-probe:madeup --repeat 3"),
                     0);
    assert_non_null(strstr(out, "nondeterministic"));
    assert_non_null(strstr(out, "the recording lacks"));
    assert_null(strstr(out, "outside deja_ctx"));
    /* State hidden in the model: that is what "outside deja_ctx" means. */
    replay_store_remove();
    record_n("test-probe:vary", 1, 0, ids);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0,
                                     "replay --model test-probe:vary --repeat 3"),
                     0);
    assert_non_null(strstr(out, "nondeterministic"));
    assert_non_null(strstr(out, "outside deja_ctx"));
}

/* Item 2: a recorded failure is reproduced by the same failure after the
 * same outputs; another message is a divergence. */
static void test_verdicts__failure_reproduced(void **state)
{
    deja_id ids[1], bare[1];
    results res;
    (void)state;
    record_n("test-probe:fail=boom", 1, 0, ids);
    replay(ids, 1, "test-probe:fail=boom", NULL, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_SAME);
    replay(ids, 1, "test-probe:fail=kaboom", NULL, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_DIVERGED);
    assert_non_null(strstr(res.error[0], "kaboom"));
    /* The same failure after different outputs is not the same. */
    replay(ids, 1, "test-probe:fail=boom,v=2", NULL, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_DIVERGED);
    /* A bare return code. */
    record_n("test-probe:bare", 1, 0, bare);
    replay(bare, 1, "test-probe:bare", NULL, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_SAME);
}

/* Item 3: isolated repeats run one after the other in one child, so state
 * hidden in the model's memory still shows as nondeterminism. */
static void test_verdicts__isolate_repeat_nondeterministic(void **state)
{
    deja_id ids[2];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    results res;
    (void)state;
    record_n("test-probe:vary", 2, 0, ids);
    o.repeat = 3;
    o.isolate = 1;
    replay(ids, 2, "test-probe:vary", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_NONDETERMINISTIC);
    assert_int_equal(res.verdict[1], DEJA_VERDICT_NONDETERMINISTIC);
}

/* Item 4: a truncated output compares on its recorded prefix, and says so. */
static void test_verdicts__truncated_output(void **state)
{
    deja_id ids[1];
    results res;
    (void)state;
    record_n("test-probe:big=4000", 1, 1000, ids);
    replay(ids, 1, "test-probe:big=4000", NULL, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_SAME);
    assert_non_null(strstr(res.notes[0], "'big' was truncated when recorded"));
    assert_non_null(strstr(res.notes[0], "first 1000 of 4000 bytes"));
}

/* Item 5: an output recording refused is refused on replay too. */
static void test_verdicts__refused_output(void **state)
{
    deja_id ids[1];
    results res;
    (void)state;
    record_n("test-probe:badout", 1, 0, ids);
    replay(ids, 1, "test-probe:badout", NULL, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_SAME);
}

/* Item 6: fewer values consumed are reported like extra ones. */
static void test_verdicts__fewer_values(void **state)
{
    deja_id ids[1];
    results res;
    (void)state;
    record_n("test-probe:draws=5,clocks=2", 1, 0, ids);
    replay(ids, 1, "test-probe:draws=3,clocks=1,noseed", NULL, &res);
    assert_non_null(strstr(res.short_[0], "stream 'noise': 3 of the 5 recorded draws consumed"));
    assert_non_null(strstr(res.short_[0], "clock: 1 of the 2 recorded reads consumed"));
    assert_non_null(strstr(res.short_[0], "seed 'init' was recorded but not asked for"));
    replay(ids, 1, "test-probe:draws=5,clocks=2", NULL, &res);
    assert_string_equal(res.short_[0], "");
}

/* Item 7: a hanging model times out; isolated, its worker is killed. */
static void test_verdicts__timeout(void **state)
{
    deja_id ids[1];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    results res;
    (void)state;
    record_n("test-probe", 1, 0, ids);
    o.isolate = 1;
    o.timeout = 0.5;
    replay(ids, 1, "test-probe:hang", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_ERROR);
    assert_non_null(strstr(res.error[0], "timed out after 0.5 s"));
}

/* Item 7, in process: the hanging inference is left behind, the next trace
 * replays on a fresh instance. */
static void test_verdicts__timeout_in_process(void **state)
{
    deja_id ids[2];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    results res;
    (void)state;
    record_n("test-probe", 2, 0, ids);
    o.timeout = 0.5;
    replay(ids, 2, "test-probe:hangon=1", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_ERROR);
    assert_non_null(strstr(res.error[0], "timed out after 0.5 s"));
    assert_int_equal(res.verdict[1], DEJA_VERDICT_SAME);
}

/* Item 8: a crash without --isolate names the trace and suggests
 * --isolate before the process dies. */
static void test_verdicts__crash_names_the_trace(void **state)
{
    static char out[16384], err[4096];
    char cmd[1024], id[DEJA_ID_STRLEN + 1];
    char *p;
    (void)state;
    snprintf(cmd, sizeof(cmd),
             "printf '{\"inputs\":{\"prompt\":\"boom\"}}\n' | DEJA_STORE='%s' "
             "DEJA_PLUGIN_PATH='%s' '%s' run --model test-crashy --json > '%s.out' 2>/dev/null",
             store_path, DEJA_LIB_DIR, DEJA_BIN, store_path);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s.out", store_path);
    replay_read_and_remove(cmd, out, sizeof(out));
    assert_non_null(p = strstr(out, "\"id\":\""));
    memcpy(id, p + 6, DEJA_ID_STRLEN);
    id[DEJA_ID_STRLEN] = '\0';
    assert_int_not_equal(
        replay_run_deja(out, sizeof(out), err, sizeof(err), "replay --model test-crashy:crash"), 0);
    assert_non_null(strstr(err, "the model crashed while replaying trace "));
    assert_non_null(strstr(err, id));
    assert_non_null(strstr(err, "--isolate"));
}

/* Item 9: the ARG and the weights digest are recorded and compared; the
 * likely cause names them. */
static void test_verdicts__model_identity(void **state)
{
    static char out[16384];
    char w1[300], w2[300];
    char spec[700];
    deja_id ids[1], wid[1];
    results res;
    FILE *f;
    (void)state;
    record_n("test-probe:v=1", 1, 0, ids);
    replay(ids, 1, "test-probe", NULL, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_DIVERGED);
    assert_string_equal(res.changes[0], "configuration differs (ARG 'v=1' vs none); ");
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "replay --model test-probe"), 1);
    assert_non_null(strstr(out, "likely cause: configuration differs (ARG 'v=1' vs none)"));
    assert_null(strstr(out, "same model version"));
    /* Weights digested through the host table. */
    snprintf(w1, sizeof(w1), "%s.w1", store_path);
    snprintf(w2, sizeof(w2), "%s.w2", store_path);
    assert_non_null(f = fopen(w1, "w"));
    fputs("weights one", f);
    fclose(f);
    assert_non_null(f = fopen(w2, "w"));
    fputs("weights two", f);
    fclose(f);
    snprintf(spec, sizeof(spec), "test-probe:weights=%s", w1);
    record_n(spec, 1, 0, wid);
    replay(wid, 1, spec, NULL, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_SAME);
    assert_string_equal(res.changes[0], "");
    /* The same file name holding other weights. */
    rename(w2, w1);
    replay(wid, 1, spec, NULL, &res);
    assert_non_null(strstr(res.changes[0], "weights differ (digest "));
    remove(w1);
}

/* Item 11: a declared kind overrides the name heuristic; a plugin's
 * libraries join the environment. */
static void test_verdicts__output_kinds_and_libraries(void **state)
{
    deja_id ids[1], lid[1];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    results res;
    (void)state;
    o.diff.atol = 100;
    record_n("test-probe:name=word_scores", 1, 0, ids);
    replay(ids, 1, "test-probe:name=word_scores,v=1", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_DIVERGED); /* the heuristic: a label */
    assert_true(res.label_changed[0]);
    record_n("test-probe:name=word_scores,declare=values", 1, 0, ids);
    replay(ids, 1, "test-probe:name=word_scores,declare=values,v=1", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_CLOSE);
    assert_false(res.label_changed[0]);
    /* Declared scores are scores whatever the name. */
    record_n("test-probe:name=word_conf,declare=scores", 1, 0, ids);
    replay(ids, 1, "test-probe:name=word_conf,declare=scores,v=1", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_DIVERGED);
    assert_true(res.label_changed[0]);
    /* deja diff of two traces follows the declaration too. */
    {
        static char out[16384];
        deja_id a[1], b[1];
        char sa[DEJA_ID_STRLEN + 1], sb[DEJA_ID_STRLEN + 1];
        record_n("test-probe:name=word_scores,declare=values", 1, 0, a);
        record_n("test-probe:name=word_scores,declare=values,v=1", 1, 0, b);
        deja_id_format(&a[0], sa);
        deja_id_format(&b[0], sb);
        assert_int_equal(
            replay_run_deja(out, sizeof(out), NULL, 0, "diff %s %s --atol 100", sa, sb), 0);
        assert_null(strstr(out, "label"));
    }
    /* An upgraded runtime is an environment difference. */
    record_n("test-probe:lib=onnxruntime@1.16", 1, 0, lid);
    replay(lid, 1, "test-probe:lib=onnxruntime@1.16", NULL, &res);
    assert_string_equal(res.env[0], "");
    replay(lid, 1, "test-probe:lib=onnxruntime@1.17", NULL, &res);
    assert_non_null(strstr(res.env[0], "library onnxruntime: '1.16' recorded, '1.17' now"));
}

/* Item 10: bisect blames the model change when the environment is the
 * same for the last good and the first bad version. */
static void test_verdicts__bisect_blames_the_model(void **state)
{
    static char out[16384];
    char cmd[1024];
    (void)state;
    snprintf(cmd, sizeof(cmd),
             "printf '{\"inputs\":{\"x\":[1,2,3,4]}}\\n' | OMP_DYNAMIC=true DEJA_STORE='%s' "
             "DEJA_PLUGIN_PATH='%s' '%s' run --model test-probe >/dev/null 2>&1",
             store_path, DEJA_LIB_DIR, DEJA_BIN);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0,
                                     "bisect test-probe test-probe:v=0 test-probe:v=1"),
                     0);
    assert_non_null(strstr(out, "first bad version: test-probe:v=1"));
    assert_non_null(strstr(out, "likely cause: the model changed between test-probe:v=0 and "
                                "test-probe:v=1"));
    assert_null(strstr(out, "likely cause: environment"));
    /* Replay itself still names the environment difference. */
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "replay --model test-probe:v=1"),
                     1);
    assert_non_null(strstr(out, "OMP_DYNAMIC"));
}

/* Item 12: show --md's reproduce command works as printed. */
static void test_verdicts__md_reproduce(void **state)
{
    static char out[16384], out2[16384];
    char id[DEJA_ID_STRLEN + 1], *cmd, *end;
    deja_id ids[1];
    deja_tracer *tracer = NULL;
    deja_span *span = NULL;
    (void)state;
    record_n("test-probe:v=1", 1, 0, ids);
    deja_id_format(&ids[0], id);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "show %s --md", id), 0);
    assert_non_null(cmd = strstr(out, "```sh\ndeja replay "));
    cmd += 6;
    assert_non_null(strstr(cmd, "--model test-probe:v=1\n"));
    assert_null(strstr(out, "--store /"));
    end = strchr(cmd, '\n');
    *end = '\0';
    assert_int_equal(replay_run_deja(out2, sizeof(out2), NULL, 0, "%s", cmd + 5), 0);
    assert_non_null(strstr(out2, "same"));
    /* A plugin named by its path: printed relative to here, and it works. */
    replay_store_remove();
    {
        char spec[600];
        snprintf(spec, sizeof(spec), "%s/test-probe.so:v=2", DEJA_LIB_DIR);
        record_n(spec, 1, 0, ids);
    }
    deja_id_format(&ids[0], id);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "show %s --md", id), 0);
    assert_non_null(cmd = strstr(out, "```sh\ndeja replay "));
    cmd += 6;
    end = strchr(cmd, '\n');
    *end = '\0';
    assert_null(strstr(cmd, " --model /"));
    assert_non_null(strstr(cmd, "test-probe.so:v=2"));
    assert_int_equal(replay_run_deja(out2, sizeof(out2), NULL, 0, "%s", cmd + 5), 0);
    /* A span of an application: no plugin is known, no name is made up. */
    replay_store_remove();
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    assert_int_equal(deja_span_begin(&span, tracer, "sentiment", "2.1.0"), 0);
    ids[0] = *deja_span_id(span);
    assert_int_equal(deja_span_end(span, DEJA_STATUS_OK, NULL), 0);
    deja_tracer_close(tracer);
    deja_id_format(&ids[0], id);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "show %s --md", id), 0);
    assert_non_null(strstr(out, "--model PLUGIN[:ARG]"));
    assert_non_null(strstr(out, "recorded by an application"));
    assert_null(strstr(out, "sentiment-v2"));
    /* A trace without its plugin whose model names one that exists here. */
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    assert_int_equal(deja_span_begin(&span, tracer, "textgen", "1"), 0);
    ids[0] = *deja_span_id(span);
    assert_int_equal(deja_span_end(span, DEJA_STATUS_OK, NULL), 0);
    deja_tracer_close(tracer);
    deja_id_format(&ids[0], id);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "show %s --md", id), 0);
    assert_non_null(strstr(out, "--model textgen-v1\n"));
}

/* Item 16: "seed": 0 is seed 0, reproducibly. */
static void test_verdicts__seed_zero(void **state)
{
    static char out[16384];
    deja_store *store = NULL;
    deja_id ids[2];
    uint64_t seeds[2];
    size_t n = 0, i;
    char *p, req[300];
    FILE *f;
    (void)state;
    snprintf(req, sizeof(req), "%s.req", store_path);
    assert_non_null(f = fopen(req, "w"));
    fputs("{\"inputs\": {\"x\": [1]}, \"seed\": 0}\n{\"inputs\": {\"x\": [1]}, \"seed\": 0}\n", f);
    fclose(f);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0,
                                     "run --model test-probe --json --requests '%s'", req),
                     0);
    remove(req);
    for (p = out; n < 2 && (p = strstr(p, "\"id\":\"")) != NULL; p += 6) {
        char text[DEJA_ID_STRLEN + 1];
        memcpy(text, p + 6, DEJA_ID_STRLEN);
        text[DEJA_ID_STRLEN] = '\0';
        assert_int_equal(deja_id_parse(&ids[n++], text), 0);
    }
    assert_int_equal(n, 2);
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    for (i = 0; i < 2; i++) {
        deja_trace *t = NULL;
        assert_int_equal(deja_trace_get(store, &ids[i], &t), 0);
        assert_int_equal(t->nseeds, 1);
        seeds[i] = t->seeds[0].value;
        deja_trace_free(t);
    }
    deja_store_close(store);
    assert_true(seeds[0] == seeds[1]);
}

/* Item 17: the threads of one inference share a ctx, each drawing from its
 * own part of a stream: every replay reproduces. */
static void test_verdicts__threads(void **state)
{
    deja_id ids[5];
    results res;
    size_t i;
    (void)state;
    record_n("test-probe:threads", 5, 0, ids);
    replay(ids, 5, "test-probe:threads", NULL, &res);
    for (i = 0; i < 5; i++)
        assert_int_equal(res.verdict[i], DEJA_VERDICT_SAME);
}

/* Item 13: anything recorded is readable: a span at the bound of RNG
 * draws is recorded and read back; one draw past it is refused at the end
 * of the span, and nothing unreadable reaches the store. */
static void test_verdicts__draw_bound(void **state)
{
    deja_tracer *tracer = NULL;
    deja_store *store = NULL;
    deja_trace *t = NULL;
    deja_id id;
    size_t k;
    int pass;
    (void)state;
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    for (pass = 0; pass < 2; pass++) {
        deja_span *span = NULL;
        deja_ctx *ctx = NULL;
        uint64_t seed = 1;
        assert_int_equal(deja_span_begin(&span, tracer, "many", "1"), 0);
        if (pass == 0)
            id = *deja_span_id(span);
        assert_int_equal(deja_ctx_record_v2(&ctx, span, &seed), 0);
        for (k = 0; k < ((size_t)1 << 22) + (size_t)pass; k++)
            (void)deja_ctx_rng_u64(ctx, k % 2 ? "a" : "b");
        deja_ctx_free(ctx);
        assert_int_equal(deja_span_end(span, DEJA_STATUS_OK, NULL), pass ? DEJA_EINVAL : 0);
    }
    deja_tracer_close(tracer);
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_trace_get(store, &id, &t), 0);
    assert_int_equal(t->rng[0].ndraws + t->rng[1].ndraws, (size_t)1 << 22);
    deja_trace_free(t);
    assert_int_equal(deja_store_verify(store, NULL, NULL), 0);
    deja_store_close(store);
}

/* Item 15: text with NUL characters is recorded byte for byte; a name that
 * is not valid UTF-8 (or holds control characters) is refused when
 * recorded, data that is not is kept as it is. */
static void test_verdicts__nul_text_and_bad_names(void **state)
{
    static char out[16384];
    char req[300], id[DEJA_ID_STRLEN + 1];
    deja_store *store = NULL;
    deja_trace *t = NULL;
    deja_tracer *tracer = NULL;
    deja_span *span = NULL;
    deja_id tid;
    FILE *f;
    char *p;
    (void)state;
    snprintf(req, sizeof(req), "%s.req", store_path);
    assert_non_null(f = fopen(req, "w"));
    fputs("{\"inputs\": {\"prompt\": \"a\\u0000b\"}}\n", f);
    fclose(f);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0,
                                     "run --model test-probe --json --requests '%s'", req),
                     0);
    remove(req);
    assert_non_null(p = strstr(out, "\"id\":\""));
    memcpy(id, p + 6, DEJA_ID_STRLEN);
    id[DEJA_ID_STRLEN] = '\0';
    assert_int_equal(deja_id_parse(&tid, id), 0);
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_trace_get(store, &tid, &t), 0);
    assert_int_equal(t->inputs[0].size, 3);
    assert_memory_equal(t->inputs[0].data, "a\0b", 3);
    deja_trace_free(t);
    deja_store_close(store);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "show --json %s", id), 0);
    assert_non_null(strstr(out, "a\\u0000b"));
    /* Names that are not UTF-8 or hold control characters are refused
     * when recorded (a bundle could not carry them, a terminal would obey
     * them), each call saying which name; the span goes on. */
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    assert_int_equal(deja_span_begin(&span, tracer, "bad\xff", "1"), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "the model name is not valid UTF-8"));
    assert_int_equal(deja_span_begin(&span, tracer, "m", "1\x1b[31m"), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "the model version holds a control character"));
    assert_int_equal(deja_span_begin(&span, tracer, "m", "1"), 0);
    assert_int_equal(deja_span_add_text(span, DEJA_OUTPUT, "bad\xff", "x", 1), DEJA_EINVAL);
    assert_int_equal(deja_span_tag(span, "k\xfe", "v"), DEJA_EINVAL);
    assert_int_equal(deja_span_tag(span, "k", "line\nbreak"), DEJA_EINVAL);
    assert_int_equal(deja_span_param_num(span, "p\x07", 1.0), DEJA_EINVAL);
    assert_int_equal(deja_span_seed(span, "\xc0\xaf", 1), DEJA_EINVAL); /* overlong */
    assert_int_equal(deja_span_model_version(span, "2\r"), DEJA_EINVAL);
    assert_int_equal(deja_span_tag(span, "k", "caf\xc3\xa9 \xe2\x9c\x93"), 0); /* UTF-8 */
    assert_int_equal(deja_span_add_text(span, DEJA_OUTPUT, "good", "x\xff", 2), 0); /* data */
    assert_int_equal(deja_span_end(span, DEJA_STATUS_OK, NULL), 0);
    deja_tracer_close(tracer);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "ls --json --model m"), 0);
    assert_non_null(strstr(out, "caf\xc3\xa9"));
}

/* The noise baseline: a difference the recorded version shows too on this
 * machine is noise, reported apart; only what the candidate alone shows is
 * a regression. */
static void test_verdicts__baseline(void **state)
{
    deja_id ids[1];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    results res;
    deja_store *store = NULL;
    (void)state;
    record_n("test-probe:envnoise", 1, 0, ids);
    setenv("PROBE_NOISE", "1", 1);
    replay(ids, 1, "test-probe:envnoise,draws=3", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_DIVERGED); /* noise taken for a regression */
    o.baseline = "test-probe:envnoise";
    replay(ids, 1, "test-probe:envnoise,draws=3", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_SAME);
    assert_non_null(strstr(res.noise[0], "a: "));
    /* The candidate's own change still diverges, beside the noise. */
    replay(ids, 1, "test-probe:envnoise,v=1", &o, &res);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_DIVERGED);
    assert_non_null(strstr(res.noise[0], "a: "));
    /* A baseline that does not load is trouble for the whole run. */
    o.baseline = "no-such-plugin";
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_replay_run(store, ids, 1, "test-probe", &o, NULL, NULL, NULL),
                     DEJA_ENOTFOUND);
    deja_store_close(store);
    unsetenv("PROBE_NOISE");
}

/* The CI gate: exit 1 only above --max-diverged. */
static void test_verdicts__max_diverged(void **state)
{
    static char out[16384];
    deja_id ids[4];
    (void)state;
    record_n("test-probe", 4, 0, ids);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0,
                                     "replay --model test-probe:v=1 --max-diverged 4"),
                     0);
    assert_non_null(strstr(out, "at most 4 allowed: pass"));
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0,
                                     "replay --model test-probe:v=1 --max-diverged 3"),
                     1);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0,
                                     "replay --model test-probe:v=1 --max-diverged 50%%"),
                     1);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0,
                                     "replay --model test-probe:v=1 --max-diverged 100%%"),
                     0);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0,
                                     "replay --model test-probe:v=1 --max-diverged 1x"),
                     2);
}

/* Item 1, bisect: with --repeat, a version whose stable output diverges is
 * bad even though another output varies. */
static void test_verdicts__bisect_repeat(void **state)
{
    static const char *const specs[] = {"test-probe:vary", "test-probe:vary,draws=3",
                                        "test-probe:vary,v=1"};
    deja_id ids[2];
    deja_bisect_options o = DEJA_BISECT_OPTIONS_INIT;
    deja_bisect_result *r = NULL;
    deja_store *store = NULL;
    (void)state;
    record_n("test-probe:vary", 2, 0, ids);
    o.replay.repeat = 3;
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_bisect(store, ids, 2, specs, 3, &o, &r), 0);
    assert_int_equal(r->first_bad, 2);
    assert_int_equal(r->nevidence, 2);
    assert_non_null(r->evidence[0].cause);
    deja_bisect_result_free(r);
    deja_store_close(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define CASE(name) cmocka_unit_test_setup_teardown(name, replay_setup, replay_teardown)
        CASE(test_verdicts__repeat_keeps_a_stable_divergence),
        CASE(test_verdicts__nondeterminism_hint),
        CASE(test_verdicts__failure_reproduced),
        CASE(test_verdicts__isolate_repeat_nondeterministic),
        CASE(test_verdicts__truncated_output),
        CASE(test_verdicts__refused_output),
        CASE(test_verdicts__fewer_values),
        CASE(test_verdicts__timeout),
        CASE(test_verdicts__timeout_in_process),
        CASE(test_verdicts__crash_names_the_trace),
        CASE(test_verdicts__model_identity),
        CASE(test_verdicts__output_kinds_and_libraries),
        CASE(test_verdicts__bisect_blames_the_model),
        CASE(test_verdicts__md_reproduce),
        CASE(test_verdicts__seed_zero),
        CASE(test_verdicts__threads),
        CASE(test_verdicts__draw_bound),
        CASE(test_verdicts__nul_text_and_bad_names),
        CASE(test_verdicts__baseline),
        CASE(test_verdicts__max_diverged),
        CASE(test_verdicts__bisect_repeat),
#undef CASE
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
