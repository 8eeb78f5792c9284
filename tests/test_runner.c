/*
 * tests/test_runner.c -- models in another process (`exec:`, runner/):
 * the command-line splitting, the ctx round trip (every seed, batched RNG
 * draw and clock read recorded through a runner, then fed back on replay
 * bit for bit), and every way a runner can fail: a failing model, a crash,
 * an exit, a hang (timeout), garbage on its stdout, a refused load; each
 * fails only its own inference and the next one gets a fresh runner.
 * Runners: tests/runners/c_runner.c (C over libdeja) and
 * tests/runners/runner.js (Node.js, protobuf written by hand).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Before cmocka.h, whose fail() macro would rewrite the ctx's. */
#include "deja.h"
#include "deja_model.h"
#include "proto/runner_msg.h"
#include "runner/runner.h"

#include <cmocka.h>

#define REPLAY_TEST_NAME "test_runner"
#include "replay_harness.h"

#ifndef DEJA_C_RUNNER
#error "DEJA_C_RUNNER (the path of tests/runners/c_runner.c's build) must be defined"
#endif
#define C_RUNNER "exec:" DEJA_C_RUNNER
#define NODE_RUNNER "exec:node " DEJA_SOURCE_DIR "/tests/runners/runner.js"

/* Assert that `text` contains `needle`, showing both when it does not. */
static void assert_has(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", needle, text);
}

static int have_node(void)
{
    return access("/usr/bin/node", X_OK) == 0;
}

/* Record one inference of `model` on input x=`x` with the string param
 * action=`action` (NULL: none) into the case's store. Returns the result
 * of deja_model_infer; the trace id goes to `id`. */
static int record_one(deja_tracer *tracer, deja_model *model, const char *x, const char *action,
                      deja_id *id)
{
    deja_span *span = NULL;
    deja_ctx *ctx = NULL;
    size_t dsize = 0;
    const uint8_t *digest = deja_model_digest(model, &dsize);

    assert_int_equal(
        deja_span_begin(&span, tracer, deja_model_name(model), deja_model_version(model)), 0);
    *id = *deja_span_id(span);
    if (dsize > 0)
        assert_int_equal(deja_span_model_digest(span, digest, dsize), 0);
    assert_int_equal(deja_span_add_text(span, DEJA_INPUT, "x", x, strlen(x)), 0);
    if (action != NULL)
        assert_int_equal(deja_span_param_str(span, "action", action), 0);
    assert_int_equal(deja_ctx_record(&ctx, span, 0), 0);
    const int rc = deja_model_infer(model, ctx);
    deja_ctx_free(ctx);
    assert_int_equal(deja_span_end(span, rc == 0 ? DEJA_STATUS_OK : DEJA_STATUS_ERROR,
                                   rc == 0 ? NULL : deja_error_last()),
                     0);
    return rc;
}

/* The output called `name` of `t`, failing the case when absent. */
static const deja_tensor *output_of(const deja_trace *t, const char *name)
{
    for (size_t i = 0; i < t->noutputs; i++)
        if (strcmp(t->outputs[i].name, name) == 0)
            return &t->outputs[i];
    fail_msg("no output '%s'", name);
    return NULL;
}

/* The rng stream `name` of `t`, or fail. */
static const deja_rng_stream *stream_of(const deja_trace *t, const char *name)
{
    for (size_t i = 0; i < t->nrng; i++)
        if (strcmp(t->rng[i].name, name) == 0)
            return &t->rng[i];
    fail_msg("no stream '%s'", name);
    return NULL;
}

/* Every value the runner's model consumed (its "ctx" output: seed, 2 + 5
 * draws, clock) is in the trace, in order. */
static void check_recorded_ctx(const deja_trace *t)
{
    const deja_tensor *c = output_of(t, "ctx");
    uint64_t v[9];
    assert_int_equal(c->dtype, DEJA_U64);
    assert_int_equal(c->size, sizeof v);
    memcpy(v, c->data, sizeof v);
    assert_int_equal(t->nseeds, 1);
    assert_string_equal(t->seeds[0].name, "s");
    assert_true(t->seeds[0].value == v[0]);
    const deja_rng_stream *noise = stream_of(t, "noise");
    assert_int_equal(noise->ndraws, 2);
    assert_true(noise->draws[0] == v[1] && noise->draws[1] == v[2]);
    const deja_rng_stream *batch = stream_of(t, "batch");
    assert_int_equal(batch->ndraws, 5);
    assert_memory_equal(batch->draws, &v[3], 5 * sizeof(uint64_t));
    assert_int_equal(t->nclock, 1);
    assert_true((uint64_t)t->clock_ns[0] == v[8]);
}

/* Replay trace `id` through a fresh ctx on `model`: outputs bit-identical
 * to the recorded ones, and nothing made up. */
static void check_replays_exactly(deja_store *store, deja_model *model, const deja_id *id)
{
    deja_trace *t = NULL;
    deja_ctx *ctx = NULL;
    size_t n = 0;
    assert_int_equal(deja_trace_get(store, id, &t), 0);
    check_recorded_ctx(t);
    assert_int_equal(deja_ctx_replay(&ctx, t), 0);
    assert_int_equal(deja_model_infer(model, ctx), 0);
    const deja_tensor *outs = deja_ctx_outputs(ctx, &n);
    assert_int_equal(n, t->noutputs);
    for (size_t i = 0; i < n; i++) {
        const deja_tensor *rec = output_of(t, outs[i].name);
        assert_int_equal(outs[i].dtype, rec->dtype);
        assert_int_equal(outs[i].size, rec->size);
        assert_memory_equal(outs[i].data, rec->data, rec->size);
    }
    assert_int_equal(deja_ctx_unrecorded(ctx, NULL), 0);
    deja_ctx_free(ctx);
    deja_trace_free(t);
}

/* Record two traces through `spec`, then replay both on a new runner. */
static void round_trip(const char *spec, const char *name)
{
    deja_tracer *tracer = NULL;
    deja_model *model = NULL;
    deja_store *store = NULL;
    deja_id ids[2];

    assert_int_equal(deja_model_load(&model, spec), 0);
    assert_string_equal(deja_model_name(model), name);
    assert_string_equal(deja_model_version(model), "1");
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    assert_int_equal(record_one(tracer, model, "first", NULL, &ids[0]), 0);
    assert_int_equal(record_one(tracer, model, "second \xce\xbb", NULL, &ids[1]), 0);
    deja_tracer_close(tracer);
    deja_model_free(model);

    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_model_load(&model, spec), 0);
    for (int i = 0; i < 2; i++)
        check_replays_exactly(store, model, &ids[i]);
    deja_model_free(model);

    /* And through the replay engine, two runners at once. */
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    deja_replay_summary sum;
    o.jobs = 2;
    assert_int_equal(deja_replay_run(store, ids, 2, spec, &o, NULL, NULL, &sum), 0);
    assert_int_equal(sum.same, 2);
    deja_store_close(store);
}

static void test_runner__words(void **state)
{
    char **argv = NULL;
    size_t argc = 0;
    (void)state;
    assert_int_equal(
        deja__words_split("  python3 'my model.py' \"a \\\"b\\\" $c\" d\\ e 'f'\"g\"h  ", &argv,
                          &argc),
        0);
    assert_int_equal(argc, 5);
    assert_string_equal(argv[0], "python3");
    assert_string_equal(argv[1], "my model.py");
    assert_string_equal(argv[2], "a \"b\" $c");
    assert_string_equal(argv[3], "d e");
    assert_string_equal(argv[4], "fgh");
    assert_null(argv[5]);
    deja__words_free(argv);
    assert_int_equal(deja__words_split("a ''", &argv, &argc), 0);
    assert_int_equal(argc, 2);
    assert_string_equal(argv[1], "");
    deja__words_free(argv);
    assert_int_equal(deja__words_split("a 'b", &argv, &argc), DEJA_EINVAL);
    assert_has(deja_error_last(), "unclosed '");
    assert_int_equal(deja__words_split("a \"b", &argv, &argc), DEJA_EINVAL);
    assert_int_equal(deja__words_split("a b\\", &argv, &argc), DEJA_EINVAL);
    assert_int_equal(deja__words_split("   ", &argv, &argc), DEJA_EINVAL);
    assert_null(argv);
}

static void test_runner__round_trip_c(void **state)
{
    (void)state;
    round_trip(C_RUNNER, "crunner");
}

static void test_runner__round_trip_node(void **state)
{
    (void)state;
    if (!have_node())
        skip();
    round_trip(NODE_RUNNER, "noderunner");
}

/* The same runner failing in each way in turn: each failure is the
 * inference's only, with a message saying what happened, and the next
 * inference is served (by a fresh process when the old one died). */
static void failures(const char *spec)
{
    static const struct {
        const char *action;
        const char *expect;
    } cases[] = {
        {"fail", "asked to fail"},
        {"crash", "killed by signal 6"},
        {"exit", "exited with status 3"},
        {"print", NULL}, /* harmless: stdout was moved to stderr */
    };
    deja_tracer *tracer = NULL;
    deja_model *model = NULL;
    deja_id id;

    assert_int_equal(deja_model_load(&model, spec), 0);
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int rc = record_one(tracer, model, "x", cases[i].action, &id);
        if (cases[i].expect == NULL) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, DEJA_EMODEL);
            assert_has(deja_error_last(), cases[i].expect);
        }
        assert_int_equal(record_one(tracer, model, "after", NULL, &id), 0);
    }
    deja_tracer_close(tracer);
    deja_model_free(model);
}

static void test_runner__failures_c(void **state)
{
    (void)state;
    failures(C_RUNNER);
}

static void test_runner__failures_node(void **state)
{
    (void)state;
    if (!have_node())
        skip();
    failures(NODE_RUNNER);
}

/* A hanging runner is killed at the timeout; the next inference runs. */
static void test_runner__timeout(void **state)
{
    deja_model_options mo = DEJA_MODEL_OPTIONS_INIT;
    deja_tracer *tracer = NULL;
    deja_model *model = NULL;
    deja_id id;
    (void)state;
    mo.timeout_ms = 300;
    assert_int_equal(deja_model_load_ext(&model, C_RUNNER, &mo), 0);
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    assert_int_equal(record_one(tracer, model, "x", "hang", &id), DEJA_EMODEL);
    assert_has(deja_error_last(), "timed out after 0.3 s");
    assert_int_equal(record_one(tracer, model, "after", NULL, &id), 0);
    deja_tracer_close(tracer);
    deja_model_free(model);
}

/* Garbage from a runner: a clear error with the byte offset, never a
 * crash, a hang or a huge allocation; the next inference runs. */
static void test_runner__garbage(void **state)
{
    static const struct {
        const char *action;
        const char *expect;
    } cases[] = {
        {"garbage", "not a RunnerMessage"},
        {"huge", "says 4294967295 bytes"},
        {"hello", "expected a call or a result, got a hello"},
        {"badtensor", "output 'y': its shape holds 12 bytes of f32 but the payload is 5"},
        {"badcall", "call: 0 RNG draws"},
        {"cut", "ended inside the message"},
    };
    deja_tracer *tracer = NULL;
    deja_model *model = NULL;
    deja_id id;
    (void)state;
    if (!have_node())
        skip();
    assert_int_equal(deja_model_load(&model, NODE_RUNNER), 0);
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(record_one(tracer, model, "x", cases[i].action, &id), DEJA_EMODEL);
        assert_has(deja_error_last(), cases[i].expect);
        assert_has(deja_error_last(), "byte offset");
        assert_int_equal(record_one(tracer, model, "after", NULL, &id), 0);
    }
    deja_tracer_close(tracer);
    deja_model_free(model);
}

/* What a runner says before serving: a refused load, another protocol, a
 * missing command, garbage instead of a hello. */
static void test_runner__load_errors(void **state)
{
    deja_model *model = (deja_model *)0x1;
    (void)state;
    assert_int_equal(deja_model_load(&model, C_RUNNER " badopen"), DEJA_EMODEL);
    assert_null(model);
    assert_has(deja_error_last(), "the model failed to load: no weights at /nonexistent");
    assert_int_equal(deja_model_load(&model, "exec:no-such-command-deja-test"), DEJA_ENOTFOUND);
    assert_has(deja_error_last(), "no-such-command-deja-test");
    assert_int_equal(deja_model_load(&model, "exec:"), DEJA_EINVAL);
    assert_int_equal(deja_model_load(&model, "exec:'unclosed"), DEJA_EINVAL);
    assert_int_equal(deja_model_load(&model, "exec:/bin/true"), DEJA_EMODEL);
    assert_has(deja_error_last(), "exited with status 0 before its hello");
    if (!have_node())
        return;
    assert_int_equal(deja_model_load(&model, NODE_RUNNER " protocol2"), DEJA_EVERSION);
    assert_has(deja_error_last(), "speaks runner protocol 2");
    assert_int_equal(deja_model_load(&model, NODE_RUNNER " garbagehello"), DEJA_EMODEL);
    assert_has(deja_error_last(), "byte offset 0");
}

/* The CLI: run and replay through exec:, stderr prefixed, --jobs N starts
 * N runners, show --md names the exec command. */
static void test_runner__cli(void **state)
{
    char out[16384], err[16384];
    (void)state;
    char req[320];
    snprintf(req, sizeof req, "%s.jsonl", store_path);
    FILE *f = fopen(req, "w");
    assert_non_null(f);
    fputs("{\"inputs\":{\"x\":\"a\"}}\n{\"inputs\":{\"x\":\"b\"}}\n"
          "{\"inputs\":{\"x\":\"c\"},\"params\":{\"action\":\"crash\"}}\n"
          "{\"inputs\":{\"x\":\"d\"}}\n{\"inputs\":{\"x\":\"e\"}}\n",
          f);
    fclose(f);
    int rc = replay_run_deja(out, sizeof out, err, sizeof err,
                             "run --model 'exec:%s' --requests '%s'", DEJA_C_RUNNER, req);
    remove(req);
    assert_int_equal(rc, 0);
    assert_has(err, "[crunner] served one");
    assert_has(out, "killed by signal 6");
    rc = replay_run_deja(out, sizeof out, err, sizeof err,
                         "replay --status ok --jobs 3 --model 'exec:%s'", DEJA_C_RUNNER);
    assert_int_equal(rc, 0);
    assert_has(out, "4 traces replayed: 4 same");
    /* One "started" line per runner process (the C runner prints one at
     * open): three workers, three runners. */
    size_t started = 0;
    for (const char *p = err; (p = strstr(p, "runner started")) != NULL; p++)
        started++;
    assert_int_equal(started, 3);
    /* The crash replays as the same crash: the recorded error, reproduced. */
    rc = replay_run_deja(out, sizeof out, err, sizeof err,
                         "replay --status error --model 'exec:%s'", DEJA_C_RUNNER);
    assert_int_equal(rc, 0);
    assert_has(out, "1 trace replayed: 1 same");
    /* show --md's reproduce command names the runner (quoted for a shell
     * when it must be). */
    rc = replay_run_deja(out, sizeof out, err, sizeof err, "ls --limit 1 --json");
    assert_int_equal(rc, 0);
    const char *idp = strstr(out, "\"id\":");
    assert_non_null(idp);
    char id[27];
    idp = strchr(idp + 5, '"');
    assert_non_null(idp);
    memcpy(id, idp + 1, 26);
    id[26] = '\0';
    rc = replay_run_deja(out, sizeof out, err, sizeof err, "show %s --md", id);
    assert_int_equal(rc, 0);
    assert_has(out, "--model ");
    assert_has(out, "exec:" DEJA_C_RUNNER);
    /* Under --isolate each inference runs in a fork of deja, which starts a
     * runner of its own: the crash is still seen as the recorded crash. */
    rc = replay_run_deja(out, sizeof out, err, sizeof err, "replay --isolate --model 'exec:%s'",
                         DEJA_C_RUNNER);
    assert_has(out, "5 traces replayed: 5 same");
    assert_int_equal(rc, 0);
}

/* A runner's note (deja_ctx_note) reaches the replaying host's ctx. */
static void test_runner__note(void **state)
{
    deja_tracer *tracer = NULL;
    deja_model *model = NULL;
    deja_store *store = NULL;
    deja_trace *t = NULL;
    deja_ctx *ctx = NULL;
    const char *const *lines = NULL;
    deja_id id;
    (void)state;
    assert_int_equal(deja_model_load(&model, C_RUNNER), 0);
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    assert_int_equal(record_one(tracer, model, "x", "note", &id), 0);
    deja_tracer_close(tracer);
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_trace_get(store, &id, &t), 0);
    assert_int_equal(deja_ctx_replay(&ctx, t), 0);
    assert_int_equal(deja_model_infer(model, ctx), 0);
    assert_int_equal(deja_ctx_unrecorded(ctx, &lines), 1);
    assert_string_equal(lines[0], "a note from the runner");
    deja_ctx_free(ctx);
    deja_trace_free(t);
    deja_store_close(store);
    deja_model_free(model);
}

/* Non-zero while process `pid` runs (a zombie counts as ended). */
static int process_alive(long pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')');
    return close_paren != NULL && close_paren[1] == ' ' && close_paren[2] != 'Z' &&
           close_paren[2] != 'X';
}

static void *hang_in_thread(void *arg)
{
    deja_model *model = arg;
    deja_tracer *tracer = NULL;
    deja_id id;
    if (deja_tracer_open(&tracer, store_path, NULL) == 0)
        record_one(tracer, model, "x", "hang", &id);
    return NULL;
}

/* A program that exits while an inference hangs in its runner (the caller
 * gave up on it: a replay's timeout) leaves no runner behind. */
static void test_runner__no_runner_outlives_deja(void **state)
{
    char log[320], text[4096];
    (void)state;
    snprintf(log, sizeof log, "%s.log", store_path);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        deja_model *model = NULL;
        pthread_t th;
        if (freopen(log, "w", stderr) == NULL || deja_model_load(&model, C_RUNNER) != 0 ||
            pthread_create(&th, NULL, hang_in_thread, model) != 0)
            _exit(3);
        usleep(500 * 1000);
        exit(0); /* with the inference still hanging */
    }
    int status = 0;
    /* Its status is not checked: under LeakSanitizer the abandoned model is
     * a leak report at exit, after deja's own exit handler ran. */
    assert_int_equal(waitpid(child, &status, 0), child);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    const size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    remove(log);
    text[n] = '\0';
    const char *p = strstr(text, "runner started, pid ");
    assert_non_null(p);
    const long pid = strtol(p + strlen("runner started, pid "), NULL, 10);
    assert_true(pid > 0);
    for (int i = 0; i < 500 && process_alive(pid); i++)
        usleep(10 * 1000);
    if (process_alive(pid)) {
        kill((pid_t)pid, SIGKILL);
        fail_msg("runner %ld outlived the program that started it", pid);
    }
}

static int process_alive(long pid);

/* replay --timeout reaches the runner: a runner that hangs is killed at
 * the replay's timeout, not left running after deja exits. */
static void test_runner__replay_timeout(void **state)
{
    deja_model_options mo = DEJA_MODEL_OPTIONS_INIT;
    deja_tracer *tracer = NULL;
    deja_model *model = NULL;
    deja_id id;
    char out[16384], err[16384];
    (void)state;
    mo.timeout_ms = 200;
    assert_int_equal(deja_model_load_ext(&model, C_RUNNER, &mo), 0);
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    assert_int_equal(record_one(tracer, model, "x", "hang", &id), DEJA_EMODEL);
    deja_tracer_close(tracer);
    deja_model_free(model);
    replay_run_deja(out, sizeof out, err, sizeof err, "replay --timeout 1 --model 'exec:%s'",
                    DEJA_C_RUNNER);
    assert_has(out, "timed out after 1 s");
    /* Every runner this replay started is gone (the C runner prints its pid
     * when it starts). */
    size_t seen = 0;
    for (const char *p = err; (p = strstr(p, "runner started, pid ")) != NULL; p++) {
        const long pid = strtol(p + strlen("runner started, pid "), NULL, 10);
        assert_true(pid > 0);
        for (int i = 0; i < 500 && process_alive(pid); i++)
            usleep(10 * 1000);
        if (process_alive(pid)) {
            kill((pid_t)pid, SIGKILL);
            fail_msg("runner %ld outlived the replay", pid);
        }
        seen++;
    }
    assert_true(seen >= 1);
}

/* Bisect over exec runners: two that reproduce, two that diverge; the
 * first divergent one is named. */
static void test_runner__bisect(void **state)
{
    char out[16384], err[16384];
    (void)state;
    char req[320];
    snprintf(req, sizeof req, "%s.jsonl", store_path);
    FILE *f = fopen(req, "w");
    assert_non_null(f);
    fputs("{\"inputs\":{\"x\":\"a\"}}\n{\"inputs\":{\"x\":\"b\"}}\n", f);
    fclose(f);
    int rc = replay_run_deja(out, sizeof out, err, sizeof err,
                             "run --model 'exec:%s' --requests '%s'", DEJA_C_RUNNER, req);
    remove(req);
    assert_int_equal(rc, 0);
    rc = replay_run_deja(out, sizeof out, err, sizeof err,
                         "bisect 'exec:%s' 'exec:%s echo' 'exec:%s shifted' \"exec:%s 'shifted'\"",
                         DEJA_C_RUNNER, DEJA_C_RUNNER, DEJA_C_RUNNER, DEJA_C_RUNNER);
    assert_int_equal(rc, 0);
    assert_has(out, "first bad version: exec:" DEJA_C_RUNNER " shifted (version 3 of 4)");
}

/* The decoder of the runner's messages on mutated frames: every answer is
 * a message or a clean error, never a crash or an overread (ASan). */
static void test_runner__decode_mutations(void **state)
{
    static const uint64_t shape[2] = {2, 2};
    static const float data[4] = {1, 2, 3, 4};
    const deja_tensor outs[2] = {{"logits", DEJA_F32, 2, shape, data, sizeof data},
                                 {"text", DEJA_UTF8, 1, (const uint64_t[]){5}, "hello", 5}};
    deja__rmsg m;
    deja__buf frame = {0};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    (void)state;
    memset(&m, 0, sizeof m);
    m.kind = DEJA__RMSG_RESULT;
    m.ok = 1;
    m.tensors = outs;
    m.ntensors = 2;
    assert_int_equal(deja__rmsg_encode(&m, &frame), 0);
    const size_t n = frame.size - DEJA__RUNNER_PREFIX;
    assert_int_equal(deja__rmsg_prefix(frame.data), n);
    deja__rmsg *d = NULL;
    assert_int_equal(deja__rmsg_decode(frame.data + DEJA__RUNNER_PREFIX, n, &d), 0);
    assert_int_equal(d->ntensors, 2);
    assert_memory_equal(d->tensors[0].data, data, sizeof data);
    deja__rmsg_free(d);
    uint8_t *copy = malloc(n);
    assert_non_null(copy);
    size_t ok = 0, bad = 0;
    for (int i = 0; i < 20000; i++) {
        memcpy(copy, frame.data + DEJA__RUNNER_PREFIX, n);
        for (int k = 0; k < 1 + i % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            copy[x % n] = (uint8_t)(x >> 32);
        }
        const size_t len = i % 5 == 0 ? (size_t)(x >> 40) % (n + 1) : n;
        const int rc = deja__rmsg_decode(copy, len, &d);
        if (rc == 0) {
            ok++;
            for (size_t t = 0; t < d->ntensors; t++)
                assert_true(d->tensors[t].size == 0 || d->tensors[t].data != NULL);
            deja__rmsg_free(d);
        } else {
            assert_int_equal(rc, DEJA_ECORRUPT);
            assert_true(deja_error_last()[0] != '\0');
            bad++;
        }
    }
    assert_true(ok > 0 && bad > 0);
    free(copy);
    deja__buf_free(&frame);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runner__words),
        cmocka_unit_test_setup_teardown(test_runner__round_trip_c, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__round_trip_node, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__failures_c, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__failures_node, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__timeout, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__garbage, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__load_errors, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__cli, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__bisect, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__note, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__replay_timeout, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_runner__no_runner_outlives_deja, replay_setup,
                                        replay_teardown),
        cmocka_unit_test(test_runner__decode_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
