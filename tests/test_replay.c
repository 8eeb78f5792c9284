/*
 * tests/test_replay.c -- the replay engine and `deja replay` / `deja diff`:
 * every demo trace replays bit-identically on its own version; other
 * versions diverge (textgen) or stay close (classifier v3) or change labels
 * (classifier v5); a plugin reading unrecorded randomness is reported
 * nondeterministic; bad input (unknown id, another model's traces, a
 * plugin failing on one trace, a plugin that does not load) is handled;
 * a session (replay/session.h) replays like deja_replay_run across runs.
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
#include "replay/session.h"

#include <cmocka.h>

#define REPLAY_TEST_NAME "test_replay"
#include "replay_harness.h"

#define MAX_IDS 64

/* A request: a text prompt or a feature vector, and optional params. */
typedef struct request {
    const char *prompt; /* utf8 input "prompt" when not NULL */
    const float *x;     /* else f32 input named `xname` */
    size_t nx;
    const char *xname;
    int fail; /* adds the bool param "fail" = 1 */
} request;

/* Record `n` requests through the plugin `spec` into the test store, as
 * `deja run` does; ids are written to `ids`. */
static void record(const char *spec, const request *req, size_t n, uint64_t seed, deja_id *ids)
{
    deja_tracer *tracer = NULL;
    deja_model *model = NULL;
    size_t i, dsize = 0;
    assert_int_equal(deja_model_load(&model, spec), 0);
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    for (i = 0; i < n; i++) {
        deja_span *span = NULL;
        deja_ctx *ctx = NULL;
        const uint8_t *digest = deja_model_digest(model, &dsize);
        int rc;
        assert_int_equal(
            deja_span_begin(&span, tracer, deja_model_name(model), deja_model_version(model)), 0);
        ids[i] = *deja_span_id(span);
        assert_int_equal(deja_span_model_digest(span, digest, dsize), 0);
        if (req[i].prompt) {
            assert_int_equal(deja_span_add_text(span, DEJA_INPUT, "prompt", req[i].prompt,
                                                strlen(req[i].prompt)),
                             0);
            assert_int_equal(deja_span_param_num(span, "temperature", 0.9), 0);
            assert_int_equal(deja_span_param_num(span, "max_tokens", 40), 0);
        } else {
            uint64_t shape[1] = {req[i].nx};
            deja_tensor t = {req[i].xname, DEJA_F32, 1, shape, req[i].x, req[i].nx * sizeof(float)};
            assert_int_equal(deja_span_add(span, DEJA_INPUT, &t), 0);
        }
        if (req[i].fail) {
            assert_int_equal(deja_span_param_bool(span, "fail", 1), 0);
        }
        assert_int_equal(deja_ctx_record(&ctx, span, seed + i), 0);
        rc = deja_model_infer(model, ctx);
        deja_ctx_free(ctx);
        assert_int_equal(deja_span_end(span, rc ? DEJA_STATUS_ERROR : DEJA_STATUS_OK,
                                       rc ? deja_error_last() : NULL),
                         0);
    }
    deja_tracer_close(tracer);
    deja_model_free(model);
}

/* Results gathered by the callback. */
typedef struct results {
    size_t n;
    deja_verdict verdict[MAX_IDS];
    size_t index[MAX_IDS];
    int code[MAX_IDS];
    char error[MAX_IDS][256];
    int label_changed[MAX_IDS];
    int varying_value[MAX_IDS];
    int varying_stable[MAX_IDS];
    size_t nunrecorded[MAX_IDS];
} results;

static int gather(const deja_replay_result *r, void *payload)
{
    results *res = payload;
    size_t k = res->n++, i;
    assert_true(k < MAX_IDS);
    res->verdict[k] = r->verdict;
    res->index[k] = r->index;
    res->code[k] = r->code;
    snprintf(res->error[k], sizeof(res->error[k]), "%s", r->error);
    res->nunrecorded[k] = r->nunrecorded;
    if (r->diff) {
        for (i = 0; i < r->diff->ntensors; i++) {
            res->label_changed[k] |= r->diff->tensors[i].rows_label > 0;
        }
    }
    for (i = 0; i < r->nvarying; i++) {
        res->varying_value[k] |= strcmp(r->varying[i], "value") == 0;
        res->varying_stable[k] |= strcmp(r->varying[i], "stable") == 0;
    }
    return 0;
}

/* Replay `ids` on `spec` with `o` and gather the results. */
static int replay(const deja_id *ids, size_t n, const char *spec, const deja_replay_options *o,
                  results *res, deja_replay_summary *sum)
{
    deja_store *store = NULL;
    int rc;
    memset(res, 0, sizeof(*res));
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    rc = deja_replay_run(store, ids, n, spec, o, gather, res, sum);
    deja_store_close(store);
    return rc;
}

static const request prompts[] = {
    {"Once upon a time", NULL, 0, NULL, 0},
    {"The old man", NULL, 0, NULL, 0},
    {"At midnight the wolf", NULL, 0, NULL, 0},
};
#define NPROMPTS (sizeof(prompts) / sizeof(prompts[0]))

#define NFEAT 24
static float features[NFEAT][16];
static request feature_req[NFEAT];

/* Deterministic feature vectors in [-1, 1). */
static void make_features(void)
{
    uint64_t s = 12345;
    size_t i, j;
    for (i = 0; i < NFEAT; i++) {
        for (j = 0; j < 16; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            features[i][j] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        }
        feature_req[i].x = features[i];
        feature_req[i].nx = 16;
        feature_req[i].xname = "features";
    }
}

static void test_replay__demo_traces_are_same_on_their_version(void **state)
{
    deja_id ids[NFEAT];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    deja_replay_summary sum;
    results res;
    char spec[64];
    int v;
    (void)state;
    make_features();
    for (v = 1; v <= 6; v++) {
        snprintf(spec, sizeof(spec), "textgen-v%d", v);
        record(spec, prompts, NPROMPTS, 100, ids);
        o.jobs = (unsigned)(v % 2 + 1);
        assert_int_equal(replay(ids, NPROMPTS, spec, &o, &res, &sum), 0);
        assert_int_equal(sum.total, NPROMPTS);
        assert_int_equal(sum.same, NPROMPTS);
        snprintf(spec, sizeof(spec), "classifier-v%d", v);
        record(spec, feature_req, 4, 7, ids);
        assert_int_equal(replay(ids, 4, spec, &o, &res, &sum), 0);
        assert_int_equal(sum.same, 4);
    }
}

static void test_replay__textgen_v6_diverges(void **state)
{
    deja_id ids[NPROMPTS];
    deja_replay_summary sum;
    results res;
    size_t i;
    (void)state;
    record("textgen-v1", prompts, NPROMPTS, 100, ids);
    assert_int_equal(replay(ids, NPROMPTS, "textgen-v6", NULL, &res, &sum), 0);
    assert_int_equal(sum.error, 0);
    assert_true(sum.diverged > 0);
    /* Results come in selection order. */
    for (i = 0; i < res.n; i++) {
        assert_int_equal(res.index[i], i);
    }
}

/* A session keeps the model loaded across runs: runs of a few ids each,
 * and a run of traces given themselves, give the verdicts of one
 * deja_replay_run, each run's results indexed from 0; a NULL trace given
 * is an ERROR result. */
static void test_replay__session_runs_like_replay_run(void **state)
{
    deja_id ids[NPROMPTS];
    deja_trace *traces[NPROMPTS + 1];
    deja_replay_summary sum, part;
    deja__replay_session *ss = NULL;
    deja_store *store = NULL;
    results whole, res;
    size_t i;
    (void)state;
    record("textgen-v1", prompts, NPROMPTS, 100, ids);
    assert_int_equal(replay(ids, NPROMPTS, "textgen-v6", NULL, &whole, &sum), 0);
    assert_true(sum.diverged > 0);
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja__replay_session_open(&ss, store, "textgen-v6", NULL, 1), 0);
    memset(&res, 0, sizeof(res));
    assert_int_equal(deja__replay_session_run(ss, ids, 1, gather, &res, &part), 0);
    assert_int_equal(part.total, 1);
    assert_int_equal(deja__replay_session_run(ss, ids + 1, NPROMPTS - 1, gather, &res, &part), 0);
    assert_int_equal(part.total, NPROMPTS - 1);
    assert_int_equal(res.n, NPROMPTS);
    for (i = 0; i < NPROMPTS; i++) {
        assert_int_equal(res.verdict[i], whole.verdict[i]);
    }
    assert_int_equal(res.index[1], 0); /* each run counts from 0 */
    for (i = 0; i < NPROMPTS; i++) {
        assert_int_equal(deja_trace_get(store, &ids[i], &traces[i]), 0);
    }
    traces[NPROMPTS] = NULL;
    memset(&res, 0, sizeof(res));
    assert_int_equal(deja__replay_session_run_traces(ss, traces, NPROMPTS + 1, gather, &res, &part),
                     0);
    assert_int_equal(res.n, NPROMPTS + 1);
    for (i = 0; i < NPROMPTS; i++) {
        assert_int_equal(res.verdict[i], whole.verdict[i]);
        assert_null(traces[i]); /* taken */
    }
    assert_int_equal(res.verdict[NPROMPTS], DEJA_VERDICT_ERROR);
    assert_int_equal(part.error, 1);
    deja__replay_session_close(ss);
    deja_store_close(store);
}

static void test_replay__classifier_close_then_labels(void **state)
{
    deja_id ids[NFEAT];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    deja_replay_summary sum;
    results res;
    size_t i, labels = 0;
    (void)state;
    make_features();
    record("classifier-v1", feature_req, NFEAT, 1, ids);
    /* v3 sums in another order: not bit-identical, within tolerance. */
    assert_int_equal(replay(ids, NFEAT, "classifier-v3", NULL, &res, &sum), 0);
    assert_int_equal(sum.diverged, 0);
    assert_true(sum.close > 0);
    /* With no tolerance at all, the same replay diverges. */
    o.diff.atol = 0;
    o.diff.rtol = 0;
    assert_int_equal(replay(ids, NFEAT, "classifier-v3", &o, &res, &sum), 0);
    assert_true(sum.diverged > 0);
    /* v5 changed a weight: some labels flip. */
    o.jobs = 3;
    o.diff.atol = -1;
    o.diff.rtol = -1;
    assert_int_equal(replay(ids, NFEAT, "classifier-v5", &o, &res, &sum), 0);
    assert_true(sum.diverged > 0);
    for (i = 0; i < res.n; i++) {
        labels += res.label_changed[i];
        assert_int_equal(res.index[i], i);
    }
    assert_true(labels > 0);
}

static void test_replay__nondeterministic(void **state)
{
    static const request req[2] = {{"hello", NULL, 0, NULL, 0}, {"world", NULL, 0, NULL, 0}};
    deja_id ids[2];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    deja_replay_summary sum;
    results res;
    size_t i;
    (void)state;
    record("test-leaky", req, 2, 5, ids);
    o.repeat = 3;
    o.jobs = 2;
    assert_int_equal(replay(ids, 2, "test-leaky", &o, &res, &sum), 0);
    assert_int_equal(sum.nondeterministic, 2);
    assert_int_equal(sum.diverged, 0);
    for (i = 0; i < 2; i++) {
        assert_int_equal(res.verdict[i], DEJA_VERDICT_NONDETERMINISTIC);
        assert_true(res.varying_value[i]);
        assert_false(res.varying_stable[i]);
    }
    /* Without repeats the difference cannot be told from a regression. */
    o.repeat = 1;
    assert_int_equal(replay(ids, 2, "test-leaky", &o, &res, &sum), 0);
    assert_int_equal(sum.diverged, 2);
}

static void test_replay__bad_input(void **state)
{
    static const float xs[3][4] = {{1, 2, 3, 4}, {-1, 0, 0, 1}, {2, 2, 2, 2}};
    request req[4];
    deja_id ids[5], textgen_ids[1];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    deja_replay_summary sum;
    results res;
    size_t i;
    (void)state;
    memset(req, 0, sizeof(req));
    for (i = 0; i < 3; i++) {
        req[i].x = xs[i];
        req[i].nx = 4;
        req[i].xname = "x";
    }
    req[3] = req[0];
    req[3].fail = 1; /* recorded as an error trace */
    record("test-planted:0/9", req, 4, 3, ids);
    record("textgen-v1", prompts, 1, 3, textgen_ids);
    ids[4] = textgen_ids[0];

    /* The model fails on one trace: that one is an error, the others
     * replay; the recorded failure replays as the same failure. */
    assert_int_equal(replay(ids, 4, "test-planted:0/9/1", NULL, &res, &sum), 0);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_SAME);
    assert_int_equal(res.verdict[1], DEJA_VERDICT_ERROR);
    assert_int_equal(res.code[1], DEJA_EMODEL);
    assert_non_null(strstr(res.error[1], "negative input"));
    assert_int_equal(res.verdict[2], DEJA_VERDICT_SAME);
    assert_int_equal(res.verdict[3], DEJA_VERDICT_SAME);
    assert_int_equal(sum.trouble, 0);

    /* A trace of another model: trouble unless forced. */
    assert_int_equal(replay(ids, 5, "test-planted:0/9", NULL, &res, &sum), 0);
    assert_int_equal(res.verdict[4], DEJA_VERDICT_ERROR);
    assert_non_null(strstr(res.error[4], "textgen"));
    assert_int_equal(sum.trouble, 1);
    assert_int_equal(sum.name_mismatch, 1);
    assert_int_equal(sum.same, 4);
    o.force = 1;
    assert_int_equal(replay(ids, 5, "test-planted:0/9", &o, &res, &sum), 0);
    assert_int_equal(sum.trouble, 0);
    assert_int_equal(sum.name_mismatch, 1);
    assert_int_equal(res.verdict[4], DEJA_VERDICT_ERROR); /* no input 'x': the model fails */
    assert_int_equal(res.code[4], DEJA_EMODEL);

    /* An id that is not in the store: that trace is trouble. */
    memset(&ids[4], 0x5a, sizeof(ids[4]));
    assert_int_equal(replay(ids, 5, "test-planted:0/9", NULL, &res, &sum), 0);
    assert_int_equal(res.verdict[4], DEJA_VERDICT_ERROR);
    assert_int_equal(res.code[4], DEJA_ENOTFOUND);
    assert_int_equal(sum.same, 4);

    /* A plugin that does not exist, or does not open. */
    assert_int_equal(replay(ids, 4, "no-such-plugin", NULL, &res, &sum), DEJA_ENOTFOUND);
    assert_int_equal(replay(ids, 4, "test-planted:nonsense", NULL, &res, &sum), DEJA_EMODEL);
    assert_int_equal(res.n, 0);
}

static void test_replay__isolate_survives_a_crash(void **state)
{
    static const request req[3] = {
        {"hello", NULL, 0, NULL, 0}, {"boom", NULL, 0, NULL, 0}, {"world", NULL, 0, NULL, 0}};
    deja_id ids[3];
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    deja_replay_summary sum;
    results res;
    (void)state;
    record("test-crashy", req, 3, 1, ids);
    /* Isolated, the replay reads back what the child wrote. */
    o.isolate = 1;
    assert_int_equal(replay(ids, 3, "test-crashy", &o, &res, &sum), 0);
    assert_int_equal(sum.same, 3);
    /* The armed plugin crashes on "boom": that trace only is an error. (One
     * job: a fork taken while another thread holds a sanitizer's allocator
     * lock could hang the ASan build.) */
    assert_int_equal(replay(ids, 3, "test-crashy:crash", &o, &res, &sum), 0);
    assert_int_equal(res.n, 3);
    assert_int_equal(res.verdict[0], DEJA_VERDICT_SAME);
    assert_int_equal(res.verdict[1], DEJA_VERDICT_ERROR);
    assert_int_equal(res.code[1], DEJA_EMODEL);
    assert_true(strstr(res.error[1], "crashed") || strstr(res.error[1], "exited"));
    assert_int_equal(res.verdict[2], DEJA_VERDICT_SAME);
    assert_int_equal(sum.trouble, 0);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        n += *s == '\n';
    }
    return n;
}

static void test_replay__cli(void **state)
{
    static char out[65536], err[4096];
    deja_id ids[NPROMPTS], fids[4];
    char a[DEJA_ID_STRLEN + 1], b[DEJA_ID_STRLEN + 1];
    (void)state;
    make_features();
    record("textgen-v1", prompts, NPROMPTS, 100, ids);
    record("classifier-v1", feature_req, 4, 7, fids);
    deja_id_format(&ids[0], a);
    deja_id_format(&ids[1], b);

    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err),
                                     "replay --trace-model textgen --model textgen-v1 --jobs 2"),
                     0);
    assert_non_null(strstr(out, "3 traces replayed: 3 same, 0 close, 0 diverged, 0 error"));
    assert_string_equal(err, "");

    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err),
                                     "replay --trace-model textgen --model textgen-v6"),
                     1);
    assert_non_null(strstr(out, "diverged"));
    assert_non_null(strstr(out, "completion: text differs at byte"));
    assert_int_equal(count_lines(err), 1);

    /* --json: one object per trace, then the summary. */
    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err),
                                     "replay %s %s --model textgen-v6 --json", a, b),
                     1);
    assert_int_equal(count_lines(out), 2 + 1);
    assert_non_null(strstr(out, "{\"summary\":{"));
    assert_non_null(strstr(out, "\"traces\":2"));
    assert_non_null(strstr(out, "\"verdict\":\"diverged\""));
    assert_non_null(strstr(out, "\"hunk\""));

    /* The classifier's traces on textgen: another model name. */
    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err),
                                     "replay --trace-model classifier --model textgen-v1"),
                     2);
    assert_non_null(strstr(err, "--force"));
    assert_int_equal(count_lines(err), 1);

    /* An id that does not exist; a model that does not exist. */
    assert_int_equal(
        replay_run_deja(out, sizeof(out), err, sizeof(err), "replay ZZZZZZ --model textgen-v1"), 2);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "ZZZZZZ"));
    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err), "replay --model nope-v9"),
                     2);
    assert_int_equal(count_lines(err), 1);
    assert_non_null(strstr(err, "nope-v9"));
    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err), "replay %s", a), 2);
    assert_non_null(strstr(err, "--model"));

    /* deja diff: two traces of the same prompt list differ as text. */
    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err), "diff %s %s", a, a), 0);
    assert_non_null(strstr(out, "same"));
    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err), "diff %s %s", a, b), 1);
    assert_non_null(strstr(out, "completion: text differs at byte"));
    assert_non_null(strstr(out, "[-"));
    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err), "diff %s %s --json", a, b),
                     1);
    assert_int_equal(count_lines(out), 1);
    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err), "diff %s", a), 2);
    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err), "diff %s ZZZZZZ", a), 2);
    assert_int_equal(count_lines(err), 1);

    /* Recorded in another environment: each difference is listed, and is
     * a likely cause of a divergence. */
    {
        char reqpath[300], cmd[400];
        FILE *f;
        snprintf(reqpath, sizeof(reqpath), "%s.req", store_path);
        f = fopen(reqpath, "w");
        assert_non_null(f);
        fputs("{\"inputs\": {\"prompt\": \"The wolf\"}, \"tags\": {\"env\": \"x\"}}\n", f);
        fclose(f);
        setenv("OMP_NUM_THREADS", "77", 1);
        snprintf(cmd, sizeof(cmd), "run --model textgen-v1 --requests '%s'", reqpath);
        assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err), "%s", cmd), 0);
        unsetenv("OMP_NUM_THREADS");
        remove(reqpath);
        assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err),
                                         "replay --tag env=x --model textgen-v1"),
                         0);
        assert_non_null(strstr(out, "environment: "));
        assert_non_null(strstr(out, "variable OMP_NUM_THREADS: '77' recorded, unset now"));
        assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err),
                                         "replay --tag env=x --model textgen-v6"),
                         1);
        assert_non_null(
            strstr(out, "likely cause: environment: variable OMP_NUM_THREADS: '77' recorded"));
        assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err),
                                         "replay --tag env=x --model textgen-v6 --json"),
                         1);
        assert_non_null(strstr(out, "\"environment_changes\":[\""));
    }

    /* Classifier v3 is close. */
    assert_int_equal(replay_run_deja(out, sizeof(out), err, sizeof(err),
                                     "replay --trace-model classifier --model classifier-v3"),
                     0);
    assert_non_null(strstr(out, "close"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay__demo_traces_are_same_on_their_version,
                                        replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_replay__textgen_v6_diverges, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_replay__classifier_close_then_labels, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_replay__nondeterministic, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_replay__bad_input, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_replay__isolate_survives_a_crash, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_replay__cli, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_replay__session_runs_like_replay_run, replay_setup,
                                        replay_teardown),
    };
    setenv("DEJA_PLUGIN_PATH", DEJA_LIB_DIR, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
