/*
 * tests/test_checkpoint.c -- checkpoints: recorded as the model produces
 * them (bytes, or digest and summary), compared in order on replay, and
 * the first divergent one named; absent and extra ones reported;
 * --stop-at-first; the first divergent token of a generation; plugins of
 * the previous ABI still load and replay. Records with the real `deja run`,
 * replays through the library (deja_replay_run) and the real binary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deja.h"
#include "deja_model.h"

#include <cmocka.h>
#include <jansson.h>

#define REPLAY_TEST_NAME "test_checkpoint"
#include "replay_harness.h"

static char out[1 << 16];

/* Record one request (`n` copies) with `deja run` and `args`. */
static void record(const char *args, const char *model)
{
    char req[300];
    snprintf(req, sizeof req, "%s.req", store_path);
    FILE *f = fopen(req, "w");
    assert_non_null(f);
    fputs("{\"inputs\": {\"prompt\": \"hello\"}}\n", f);
    fclose(f);
    int rc = replay_run_deja(out, sizeof out, NULL, 0, "run --model %s --requests '%s' %s", model,
                             req, args);
    remove(req);
    if (rc != 0)
        fail_msg("deja run failed: %s", out);
}

/* What a replay callback keeps of the one result. */
typedef struct seen {
    int n;
    deja_verdict verdict;
    size_t noutputs;
    int has;
    deja_checkpoint_diff c;
    char first[64], detail[512], token[512], summary[1024];
    char absent[4][64], extra[4][64];
} seen;

static int on_result(const deja_replay_result *r, void *payload)
{
    seen *s = payload;
    s->n++;
    s->verdict = r->verdict;
    s->noutputs = r->noutputs;
    if (r->verdict == DEJA_VERDICT_ERROR)
        print_message("error: %s\n", r->error);
    if (r->checkpoints == NULL)
        return 0;
    s->has = 1;
    s->c = *r->checkpoints;
    snprintf(s->first, sizeof s->first, "%s", s->c.first ? s->c.first : "");
    snprintf(s->detail, sizeof s->detail, "%s", s->c.first_detail ? s->c.first_detail : "");
    snprintf(s->token, sizeof s->token, "%s", s->c.token ? s->c.token : "");
    snprintf(s->summary, sizeof s->summary, "%s", s->c.summary);
    for (size_t i = 0; i < s->c.nabsent && i < 4; i++)
        snprintf(s->absent[i], sizeof s->absent[i], "%s", s->c.absent[i]);
    for (size_t i = 0; i < s->c.nextra && i < 4; i++)
        snprintf(s->extra[i], sizeof s->extra[i], "%s", s->c.extra[i]);
    return 0;
}

/* Collect the ids of a listing (at most 4). */
typedef struct ids {
    deja_id v[4];
    size_t n;
} ids;

static int on_list(const deja_trace *t, void *payload)
{
    ids *l = payload;
    if (l->n < 4)
        l->v[l->n++] = t->id;
    return 0;
}

/* Replay every trace of the store on `spec` and keep the (last) result. */
static void replay(const char *spec, int stop_at_first, int isolate, seen *s)
{
    deja_store *st = NULL;
    ids l = {.n = 0};
    deja_filter f = DEJA_FILTER_INIT;
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    deja_replay_summary sum;
    memset(s, 0, sizeof *s);
    o.stop_at_first = stop_at_first;
    o.isolate = isolate;
    assert_int_equal(deja_store_open(&st, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_list(st, &f, on_list, NULL, &l), 0);
    assert_true(l.n >= 1);
    assert_int_equal(deja_replay_run(st, l.v, l.n, spec, &o, on_result, s, &sum), 0);
    deja_store_close(st);
}

/* The one trace of the store, read back (the caller frees it). */
static deja_trace *the_trace(deja_store **st)
{
    ids l = {.n = 0};
    deja_filter f = DEJA_FILTER_INIT;
    deja_trace *t = NULL;
    assert_int_equal(deja_store_open(st, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_list(*st, &f, on_list, NULL, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(deja_trace_get(*st, &l.v[0], &t), 0);
    return t;
}

/* Selections: all, none, names and prefixes; malformed ones refused. */
static void test_checkpoint__select(void **state)
{
    (void)state;
    assert_true(deja_checkpoint_select_match("all", "x"));
    assert_false(deja_checkpoint_select_match("none", "x"));
    assert_false(deja_checkpoint_select_match(NULL, "x"));
    assert_false(deja_checkpoint_select_match("", "x"));
    assert_true(deja_checkpoint_select_match("a,layer*,b", "layer3"));
    assert_true(deja_checkpoint_select_match("a,layer*,b", "b"));
    assert_false(deja_checkpoint_select_match("a,layer*,b", "lay"));
    assert_false(deja_checkpoint_select_match("ab", "a"));
    assert_int_equal(deja_checkpoint_select_check("all"), 0);
    assert_int_equal(deja_checkpoint_select_check("x,y*"), 0);
    assert_int_equal(deja_checkpoint_select_check("x,,y"), DEJA_EINVAL);
    assert_int_equal(deja_checkpoint_select_check("x y"), DEJA_EINVAL);
    assert_int_equal(deja_checkpoint_select_check("*x"), DEJA_EINVAL);
    assert_int_equal(deja_checkpoint_select_check(""), DEJA_EINVAL);
}

/* Without --checkpoints nothing is kept, and a replay has nothing to
 * compare. */
static void test_checkpoint__none_by_default(void **state)
{
    deja_store *st = NULL;
    seen s;
    (void)state;
    record("", "test-ckpt");
    deja_trace *t = the_trace(&st);
    assert_int_equal(t->ncheckpoints, 0);
    assert_string_equal(t->checkpoint_select, "");
    deja_trace_free(t);
    deja_store_close(st);
    replay("test-ckpt:diverge=2", 0, 0, &s);
    assert_int_equal(s.verdict, DEJA_VERDICT_DIVERGED);
    assert_false(s.has);
}

/* Equal up to layer 3, different from there: the first divergence is
 * layer3, the three before it bit-identical, with where it differs. */
static void test_checkpoint__first_divergence(void **state)
{
    deja_store *st = NULL;
    seen s;
    (void)state;
    record("--checkpoints all", "test-ckpt");
    deja_trace *t = the_trace(&st);
    assert_int_equal(t->ncheckpoints, 6);
    assert_string_equal(t->checkpoints[3].tensor.name, "layer3");
    assert_false(t->checkpoints[3].digest_only);
    assert_int_equal(t->checkpoints[3].tensor.size, 32);
    assert_true(t->checkpoints[3].stats.numeric);
    assert_true(t->checkpoints[3].stats.max == 18.5);
    deja_trace_free(t);
    deja_store_close(st);

    replay("test-ckpt", 0, 0, &s);
    assert_int_equal(s.verdict, DEJA_VERDICT_SAME);
    assert_true(s.has);
    assert_int_equal(s.c.identical, 6);
    assert_string_equal(s.first, "");

    for (int k = 0; k < 6; k += 3) {
        char spec[64];
        snprintf(spec, sizeof spec, "test-ckpt:diverge=%d", k);
        replay(spec, 0, 0, &s);
        assert_int_equal(s.verdict, DEJA_VERDICT_DIVERGED);
        assert_true(s.has);
        char want[16];
        snprintf(want, sizeof want, "layer%d", k);
        assert_string_equal(s.first, want);
        assert_int_equal(s.c.first_index, (size_t)k);
        assert_int_equal(s.c.identical, (size_t)k);
        assert_int_equal(s.c.compared, 6);
        assert_int_equal(s.c.first_verdict, DEJA_VERDICT_DIVERGED);
        assert_non_null(strstr(s.detail, "at [1, 2]"));
        assert_non_null(strstr(s.summary, "first divergence: "));
        assert_int_equal(s.c.nabsent + s.c.nextra, 0);
    }
    assert_non_null(strstr(s.summary, "everything before it bit-identical"));
}

/* A recorded checkpoint the replay never produces is absent; one the
 * recording's selection would have kept but did not record is extra;
 * one outside the selection is neither. */
static void test_checkpoint__absent_extra(void **state)
{
    seen s;
    (void)state;
    record("--checkpoints 'layer*'", "test-ckpt");
    replay("test-ckpt:skip=2,extra", 0, 0, &s);
    assert_true(s.has);
    assert_string_equal(s.first, "");
    assert_int_equal(s.c.identical, 5);
    assert_int_equal(s.c.nabsent, 1);
    assert_string_equal(s.absent[0], "layer2#0");
    assert_int_equal(s.c.nextra, 1);
    assert_string_equal(s.extra[0], "layer.extra#0");
    assert_non_null(strstr(s.summary, "1 absent, 1 extra"));
    /* Outputs: `produced` differs (5 + 1 vs 6 is the same count; y same). */
    assert_true(replay_teardown(NULL) == 0);

    record("--checkpoints layer1,layer4", "test-ckpt");
    replay("test-ckpt:extra", 0, 0, &s);
    assert_true(s.has);
    assert_int_equal(s.c.recorded, 2);
    assert_int_equal(s.c.identical, 2);
    assert_int_equal(s.c.nextra, 0); /* layer.extra is outside the selection */
    assert_int_equal(s.c.nabsent, 0);
}

/* Digest-only: no bytes kept, digest and summary instead; compared by
 * digest, and the summary says how the values moved. */
static void test_checkpoint__digest_only(void **state)
{
    deja_store *st = NULL;
    seen s;
    (void)state;
    record("--checkpoints-digest", "test-ckpt");
    deja_trace *t = the_trace(&st);
    assert_int_equal(t->ncheckpoints, 6);
    assert_string_equal(t->checkpoint_select, "all");
    for (size_t i = 0; i < t->ncheckpoints; i++) {
        assert_true(t->checkpoints[i].digest_only);
        assert_null(t->checkpoints[i].tensor.data);
        assert_int_equal(t->checkpoints[i].tensor.size, 32);
    }
    assert_true(t->checkpoints[5].stats.min == 25.0);
    assert_true(t->checkpoints[5].stats.mean == 26.75);
    deja_trace_free(t);
    deja_store_close(st);

    replay("test-ckpt", 0, 0, &s);
    assert_int_equal(s.c.identical, 6);
    replay("test-ckpt:diverge=4", 0, 0, &s);
    assert_string_equal(s.first, "layer4");
    assert_int_equal(s.c.identical, 4);
    assert_non_null(strstr(s.detail, "digest differs"));
    assert_non_null(strstr(s.detail, "mean"));

    /* The JSON of show says so too. */
    /* One trace: the id prefix "0" names it. */
    assert_int_equal(replay_run_deja(out, sizeof out, NULL, 0, "show --json 0"), 0);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    assert_non_null(j);
    json_t *cks = json_object_get(j, "checkpoints");
    assert_int_equal(json_array_size(cks), 6);
    for (size_t i = 0; i < 6; i++) {
        json_t *c = json_array_get(cks, i);
        assert_true(json_is_true(json_object_get(c, "digest_only")));
        assert_null(json_object_get(c, "base64"));
        assert_non_null(json_object_get(json_object_get(c, "summary"), "mean"));
    }
    json_decref(j);
}

/* --stop-at-first: the inference stops at the first divergent checkpoint
 * (nothing after it is produced, no outputs), in process and isolated. */
static void test_checkpoint__stop_at_first(void **state)
{
    seen s;
    (void)state;
    record("--checkpoints all", "test-ckpt");
    for (int isolate = 0; isolate < 2; isolate++) {
        replay("test-ckpt:diverge=2", 1, isolate, &s);
        assert_int_equal(s.verdict, DEJA_VERDICT_DIVERGED);
        assert_true(s.c.stopped);
        assert_string_equal(s.first, "layer2");
        assert_int_equal(s.c.compared, 3);
        assert_int_equal(s.noutputs, 0);
        assert_int_equal(s.c.nabsent, 0); /* not reached is not absent */
        assert_non_null(strstr(s.summary, "stopped there"));
    }
    /* No divergence: runs to the end. */
    replay("test-ckpt", 1, 0, &s);
    assert_int_equal(s.verdict, DEJA_VERDICT_SAME);
    assert_false(s.c.stopped);
    assert_int_equal(s.noutputs, 2);
    /* The CLI says so. */
    assert_int_equal(replay_run_deja(out, sizeof out, NULL, 0,
                                     "replay --model test-ckpt:diverge=2 --stop-at-first"),
                     1);
    assert_non_null(strstr(out, "stopped at the first divergent checkpoint"));
    assert_non_null(strstr(out, "first divergence: layer2"));
    assert_int_equal(replay_run_deja(out, sizeof out, NULL, 0,
                                     "replay --model test-ckpt:diverge=2 --json"),
                     1);
    assert_non_null(strstr(out, "\"checkpoints\":{"));
    assert_non_null(strstr(out, "\"name\":\"layer2\""));
    /* The fleet's workers replay to the end: refused, not ignored. */
    assert_int_equal(replay_run_deja(out, sizeof out, NULL, 0,
                                     "replay --model test-ckpt --stop-at-first "
                                     "--via nats://127.0.0.1:9"),
                     2);
    assert_non_null(strstr(out, "--stop-at-first does not apply with --via"));
}

/* Generation: the first divergent token, and which logit flipped the
 * sampler (or that the logits were identical and the draw differed). */
static void test_checkpoint__token(void **state)
{
    seen s;
    (void)state;
    record("--checkpoints all", "test-ckpt:gen");
    replay("test-ckpt:gen,flip=5", 0, 0, &s);
    assert_int_equal(s.verdict, DEJA_VERDICT_DIVERGED);
    assert_string_equal(s.first, "logits");
    assert_int_equal(s.c.first_occurrence, 5);
    assert_int_equal(s.c.first_index, 10); /* after 5 steps of logits and token */
    assert_int_equal(s.c.identical, 14);   /* all but that step's logits and token */
    assert_non_null(strstr(s.token, "first divergent token: step 5"));
    assert_non_null(strstr(s.token, "recorded 3, replayed 4"));
    assert_non_null(strstr(s.token, "overtook"));

    replay("test-ckpt:gen,draw=4", 0, 0, &s);
    assert_string_equal(s.first, "token");
    assert_int_equal(s.c.first_occurrence, 4);
    assert_non_null(strstr(s.token, "step 4"));
    assert_non_null(strstr(s.token, "bit-identical: the sampler's draw differed"));
}

/* The span API: the tracer's selection decides; a checkpoint beyond the
 * per-checkpoint bound keeps its digest only. */
static void test_checkpoint__span_api(void **state)
{
    deja_tracer *tr = NULL;
    deja_span *sp = NULL;
    deja_store *st = NULL;
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    (void)state;
    o.checkpoints = "emb,big,e*";
    assert_int_equal(deja_tracer_open(&tr, store_path, &o), 0);
    assert_int_equal(deja_span_begin(&sp, tr, "app", "1"), 0);
    assert_true(deja_span_checkpoint_wanted(sp, "emb"));
    assert_false(deja_span_checkpoint_wanted(sp, "other"));
    float v[4] = {1, 2, 3, 4};
    uint64_t shape[1] = {4};
    deja_tensor t = {"emb", DEJA_F32, 1, shape, v, sizeof v};
    assert_int_equal(deja_span_checkpoint(sp, &t), 0);
    t.name = "other";
    assert_int_equal(deja_span_checkpoint(sp, &t), 0); /* not selected: not kept */
    const size_t n = DEJA_CHECKPOINT_MAX_BYTES + 4;
    uint8_t *big = calloc(1, n);
    assert_non_null(big);
    uint64_t bshape[1] = {n};
    deja_tensor b = {"big", DEJA_U8, 1, bshape, big, n};
    assert_int_equal(deja_span_checkpoint(sp, &b), 0);
    free(big);
    deja_tensor bad = {"emb", DEJA_F32, 1, shape, v, 3}; /* size does not match */
    assert_int_equal(deja_span_checkpoint(sp, &bad), DEJA_EINVAL);
    deja_tensor esc = {"e\x1b[2J", DEJA_F32, 1, shape, v, sizeof v}; /* moves a terminal */
    assert_int_equal(deja_span_checkpoint(sp, &esc), DEJA_EINVAL);
    assert_int_equal(deja_span_end(sp, DEJA_STATUS_OK, NULL), 0);
    deja_tracer_close(tr);

    deja_trace *tt = the_trace(&st);
    assert_int_equal(tt->ncheckpoints, 2);
    assert_string_equal(tt->checkpoints[0].tensor.name, "emb");
    assert_false(tt->checkpoints[0].digest_only);
    assert_memory_equal(tt->checkpoints[0].tensor.data, v, sizeof v);
    assert_string_equal(tt->checkpoints[1].tensor.name, "big");
    assert_true(tt->checkpoints[1].digest_only);
    assert_int_equal(tt->checkpoints[1].tensor.size, n);
    assert_string_equal(tt->checkpoint_select, "emb,big,e*");
    deja_trace_free(tt);
    deja_store_close(st);

    /* A bad selection is refused at open, and nothing is created. */
    o.checkpoints = "a b";
    assert_int_equal(deja_tracer_open(&tr, store_path, &o), DEJA_EINVAL);
}

/* A plugin built against the previous ABI (2) loads, records and replays
 * bit for bit in this host. */
static void test_checkpoint__previous_abi(void **state)
{
    deja_model *m = NULL;
    seen s;
    (void)state;
    assert_int_equal(deja_model_load(&m, "test-abi2"), 0);
    deja_model_free(m);
    record("--checkpoints all", "test-abi2");
    replay("test-abi2", 0, 0, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.verdict, DEJA_VERDICT_SAME);
    assert_true(s.has); /* recorded with a selection, none produced */
    assert_int_equal(s.c.recorded, 0);
    assert_int_equal(s.c.nextra, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint__select),
        cmocka_unit_test_setup_teardown(test_checkpoint__none_by_default, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint__first_divergence, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint__absent_extra, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint__digest_only, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint__stop_at_first, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint__token, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint__span_api, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint__previous_abi, replay_setup,
                                        replay_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
