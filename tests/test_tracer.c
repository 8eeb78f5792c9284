/*
 * tests/test_tracer.c -- the span API and the asynchronous writer: traces
 * recorded from several threads and processes come back byte for byte;
 * drop, sampling, redaction and truncation are applied and counted; flush
 * makes traces durable and visible to other processes, even across SIGKILL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deja.h"

#define NTHREADS 4
#define PER_THREAD 60

static char *make_dir(char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/deja_test_tracer_XXXXXX");
    assert_non_null(mkdtemp(buf));
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "/s.store");
    return buf;
}

static void remove_dir(const char *store)
{
    char cmd[512];
    const char *slash = strrchr(store, '/');
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(slash - store), store);
    assert_int_equal(system(cmd), 0);
}

/* ---- the expected content of trace (thread, i) ---- */

typedef struct expect {
    deja_id id;
    int thread, i;
} expect;

static void fill_text(char *buf, size_t n, int thread, int i)
{
    for (size_t k = 0; k < n; k++)
        buf[k] = (char)('a' + (int)((k * 7 + (size_t)thread * 13 + (size_t)i) % 26));
}

static size_t prompt_len(int i)
{
    return i % 5 == 0 ? 3000 : (size_t)(10 + i); /* some above the inline size: blobs */
}

static void record_one(deja_tracer *t, int thread, int i, deja_id *id_out)
{
    deja_span *s = NULL;
    char name[32], tagv[32];
    char prompt[4096];
    snprintf(name, sizeof name, "model-%d", thread % 2);
    assert_int_equal(deja_span_begin(&s, t, name, "1.2"), 0);
    *id_out = *deja_span_id(s);
    const uint8_t digest[20] = {1, 2, 3, (uint8_t)thread, (uint8_t)i};
    assert_int_equal(deja_span_model_digest(s, digest, sizeof digest), 0);
    fill_text(prompt, prompt_len(i), thread, i);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", prompt, prompt_len(i)), 0);
    float v[6];
    for (int k = 0; k < 6; k++)
        v[k] = (float)(thread * 1000 + i) + (float)k * 0.5f;
    uint64_t shape[2] = {2, 3};
    deja_tensor x = {"x", DEJA_F32, 2, shape, v, sizeof v};
    assert_int_equal(deja_span_add(s, DEJA_INPUT, &x), 0);
    assert_int_equal(deja_span_param_num(s, "temperature", 0.25 * i), 0);
    assert_int_equal(deja_span_param_str(s, "mode", thread % 2 ? "greedy" : "beam"), 0);
    assert_int_equal(deja_span_param_bool(s, "stream", i % 2), 0);
    assert_int_equal(deja_span_seed(s, "numpy", (uint64_t)thread << 32 | (uint64_t)i), 0);
    assert_int_equal(deja_span_clock(s, 1700000000000000000LL + i), 0);
    snprintf(tagv, sizeof tagv, "%d/%d", thread, i);
    assert_int_equal(deja_span_tag(s, "who", tagv), 0);
    if (i > 0) {
        deja_id parent = {{(uint8_t)thread, (uint8_t)i}};
        assert_int_equal(deja_span_parent(s, &parent), 0);
    }
    assert_int_equal(deja_span_add_bytes(s, DEJA_OUTPUT, "raw", prompt, prompt_len(i) / 2), 0);
    if (i % 7 == 3)
        assert_int_equal(deja_span_end(s, DEJA_STATUS_ERROR, "out of tokens"), 0);
    else
        assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
}

static void check_one(const deja_trace *tr, int thread, int i)
{
    char name[32], tagv[32], prompt[4096];
    deja_digest env;
    deja_env_current(&env);
    snprintf(name, sizeof name, "model-%d", thread % 2);
    assert_string_equal(tr->model_name, name);
    assert_string_equal(tr->model_version, "1.2");
    const uint8_t digest[20] = {1, 2, 3, (uint8_t)thread, (uint8_t)i};
    assert_int_equal(tr->model_digest_size, sizeof digest);
    assert_memory_equal(tr->model_digest, digest, sizeof digest);
    fill_text(prompt, prompt_len(i), thread, i);
    assert_int_equal(tr->ninputs, 2);
    assert_string_equal(tr->inputs[0].name, "prompt");
    assert_int_equal(tr->inputs[0].dtype, DEJA_UTF8);
    assert_int_equal(tr->inputs[0].size, prompt_len(i));
    assert_int_equal(tr->inputs[0].ndim, 1);
    assert_int_equal(tr->inputs[0].shape[0], prompt_len(i));
    assert_memory_equal(tr->inputs[0].data, prompt, prompt_len(i));
    float v[6];
    for (int k = 0; k < 6; k++)
        v[k] = (float)(thread * 1000 + i) + (float)k * 0.5f;
    assert_string_equal(tr->inputs[1].name, "x");
    assert_int_equal(tr->inputs[1].dtype, DEJA_F32);
    assert_int_equal(tr->inputs[1].ndim, 2);
    assert_int_equal(tr->inputs[1].shape[0], 2);
    assert_int_equal(tr->inputs[1].shape[1], 3);
    assert_memory_equal(tr->inputs[1].data, v, sizeof v);
    assert_int_equal(tr->noutputs, 1);
    assert_string_equal(tr->outputs[0].name, "raw");
    assert_int_equal(tr->outputs[0].dtype, DEJA_BYTES);
    assert_int_equal(tr->outputs[0].size, prompt_len(i) / 2);
    assert_memory_equal(tr->outputs[0].data, prompt, prompt_len(i) / 2);
    assert_int_equal(tr->nparams, 3);
    assert_string_equal(tr->params[0].key, "temperature");
    assert_int_equal(tr->params[0].kind, DEJA_PARAM_NUM);
    assert_true(tr->params[0].num == 0.25 * i);
    assert_string_equal(tr->params[1].key, "mode");
    assert_int_equal(tr->params[1].kind, DEJA_PARAM_STR);
    assert_string_equal(tr->params[1].str, thread % 2 ? "greedy" : "beam");
    assert_string_equal(tr->params[2].key, "stream");
    assert_int_equal(tr->params[2].kind, DEJA_PARAM_BOOL);
    assert_int_equal(tr->params[2].flag, i % 2);
    assert_int_equal(tr->nseeds, 1);
    assert_string_equal(tr->seeds[0].name, "numpy");
    assert_true(tr->seeds[0].value == ((uint64_t)thread << 32 | (uint64_t)i));
    assert_int_equal(tr->nclock, 1);
    assert_true(tr->clock_ns[0] == 1700000000000000000LL + i);
    snprintf(tagv, sizeof tagv, "%d/%d", thread, i);
    assert_int_equal(tr->ntags, 1);
    assert_string_equal(tr->tags[0].key, "who");
    assert_string_equal(tr->tags[0].value, tagv);
    assert_int_equal(tr->has_parent, i > 0);
    if (i > 0) {
        deja_id parent = {{(uint8_t)thread, (uint8_t)i}};
        assert_memory_equal(&tr->parent, &parent, sizeof parent);
    }
    assert_true(tr->has_env);
    assert_memory_equal(&tr->env, &env, sizeof env);
    if (i % 7 == 3) {
        assert_int_equal(tr->status, DEJA_STATUS_ERROR);
        assert_string_equal(tr->error, "out of tokens");
    } else {
        assert_int_equal(tr->status, DEJA_STATUS_OK);
        assert_string_equal(tr->error, "");
    }
    assert_true(tr->duration_ns >= 0);
    assert_true(tr->start_ns / 1000000 == deja_id_time_ms(&tr->id) ||
                tr->start_ns / 1000000 + 1 >= deja_id_time_ms(&tr->id));
}

typedef struct worker {
    deja_tracer *t;
    int thread;
    expect e[PER_THREAD];
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        w->e[i].thread = w->thread;
        w->e[i].i = i;
        record_one(w->t, w->thread, i, &w->e[i].id);
    }
    return NULL;
}

static int count_cb(const deja_trace *trace, void *payload)
{
    (void)trace;
    (*(size_t *)payload)++;
    return 0;
}

static size_t count_traces(deja_store *st)
{
    size_t n = 0;
    deja_filter f = DEJA_FILTER_INIT;
    assert_int_equal(deja_store_list(st, &f, count_cb, NULL, &n), 0);
    return n;
}

static void test_tracer__threads_read_back(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.batch_max = 16; /* several batches */
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    static worker w[NTHREADS];
    pthread_t th[NTHREADS];
    for (int k = 0; k < NTHREADS; k++) {
        w[k].t = t;
        w[k].thread = k;
        assert_int_equal(pthread_create(&th[k], NULL, worker_main, &w[k]), 0);
    }
    for (int k = 0; k < NTHREADS; k++)
        pthread_join(th[k], NULL);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats st;
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.ended, NTHREADS * PER_THREAD);
    assert_int_equal(st.written, NTHREADS * PER_THREAD);
    assert_int_equal(st.dropped + st.failed + st.sampled_out + st.redacted, 0);
    deja_tracer_close(t);

    deja_store *s = NULL;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(count_traces(s), NTHREADS * PER_THREAD);
    for (int k = 0; k < NTHREADS; k++)
        for (int i = 0; i < PER_THREAD; i++) {
            deja_trace *tr = NULL;
            assert_int_equal(deja_trace_get(s, &w[k].e[i].id, &tr), 0);
            assert_memory_equal(&tr->id, &w[k].e[i].id, sizeof(deja_id));
            check_one(tr, k, i);
            deja_trace_free(tr);
        }
    deja_env *env = NULL;
    deja_digest d;
    deja_env_current(&d);
    assert_int_equal(deja_store_env_get(s, &d, &env), 0);
    assert_string_equal(env->kernel, deja_env_current(NULL)->kernel);
    deja_env_free(env);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    remove_dir(path);
}

#define MANY_PER_THREAD 150

typedef struct many_worker {
    deja_tracer *t;
    int thread;
    deja_id ids[MANY_PER_THREAD];
} many_worker;

static void *many_worker_main(void *arg)
{
    many_worker *w = arg;
    for (int i = 0; i < MANY_PER_THREAD; i++)
        record_one(w->t, w->thread, i, &w->ids[i]);
    return NULL;
}

/* Enough traces from several threads, in small batches, for the writer's
 * helpers to prepare batches in parallel and for the compression dictionary
 * to appear midway: traces prepared before and after it all come back byte
 * for byte, and the counters add up. */
static void test_tracer__parallel_prepare_dictionary(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.batch_max = 8;
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    static many_worker w[NTHREADS];
    pthread_t th[NTHREADS];
    for (int k = 0; k < NTHREADS; k++) {
        w[k].t = t;
        w[k].thread = k;
        assert_int_equal(pthread_create(&th[k], NULL, many_worker_main, &w[k]), 0);
    }
    for (int k = 0; k < NTHREADS; k++)
        pthread_join(th[k], NULL);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats st;
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.ended, NTHREADS * MANY_PER_THREAD);
    assert_int_equal(st.written, NTHREADS * MANY_PER_THREAD);
    assert_int_equal(st.dropped + st.failed + st.sampled_out + st.redacted, 0);
    deja_tracer_close(t);

    deja_store *s = NULL;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    deja_store_stats ss;
    assert_int_equal(deja_store_stats_get(s, &ss), 0);
    assert_int_equal(ss.traces, NTHREADS * MANY_PER_THREAD);
    assert_int_equal(ss.dictionaries, 1);
    for (int k = 0; k < NTHREADS; k++)
        for (int i = 0; i < MANY_PER_THREAD; i++) {
            deja_trace *tr = NULL;
            assert_int_equal(deja_trace_get(s, &w[k].ids[i], &tr), 0);
            assert_memory_equal(&tr->id, &w[k].ids[i], sizeof(deja_id));
            check_one(tr, k, i);
            deja_trace_free(tr);
        }
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    remove_dir(path);
}

/* A redaction callback that blocks the writer on its first call until the
 * test releases it: makes "the writer is slow" deterministic. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_entered, gate_open;

static int gate_cb(deja_side side, const char *name, deja_dtype dtype, uint8_t *data, size_t *size,
                   void *payload)
{
    (void)side, (void)name, (void)dtype, (void)data, (void)size, (void)payload;
    pthread_mutex_lock(&gate_lock);
    gate_entered = 1;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    return 0;
}

static int simple_span(deja_tracer *t, const char *model, deja_status status)
{
    deja_span *s = NULL;
    assert_int_equal(deja_span_begin(&s, t, model, "1"), 0);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", "hello", 5), 0);
    return deja_span_end(s, status, status == DEJA_STATUS_ERROR ? "boom" : NULL);
}

static void test_tracer__drop_counts(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.queue_capacity = 1;
    o.queue_full = DEJA_QUEUE_DROP;
    o.redact = gate_cb;
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    assert_int_equal(simple_span(t, "m", DEJA_STATUS_OK), 0);
    pthread_mutex_lock(&gate_lock);
    while (!gate_entered)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    /* The writer holds span 1 in the callback: one more fits, the rest drop. */
    assert_int_equal(simple_span(t, "m", DEJA_STATUS_OK), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(simple_span(t, "m", DEJA_STATUS_OK), DEJA_EFULL);
    pthread_mutex_lock(&gate_lock);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats st;
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.ended, 10);
    assert_int_equal(st.dropped, 8);
    assert_int_equal(st.written, 2);
    deja_tracer_close(t);

    deja_store *s = NULL;
    deja_store_stats ss;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_stats_get(s, &ss), 0);
    assert_int_equal(ss.dropped, 8);
    assert_int_equal(ss.traces, 2);
    assert_int_equal(count_traces(s), 2);
    deja_store_close(s);
    remove_dir(path);
}

static int status_cb(const deja_trace *trace, void *payload)
{
    size_t *n = payload;
    assert_int_equal(trace->status, DEJA_STATUS_ERROR);
    (*n)++;
    return 0;
}

static void test_tracer__sampling_keeps_errors(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.sample_rate = 0.0;
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    for (int i = 0; i < 25; i++)
        assert_int_equal(simple_span(t, "m", i % 5 == 0 ? DEJA_STATUS_ERROR : DEJA_STATUS_OK), 0);
    deja_tracer_stats st;
    deja_tracer_close(t);
    t = NULL;
    (void)st;

    deja_store *s = NULL;
    deja_store_stats ss;
    size_t n = 0;
    deja_filter f = DEJA_FILTER_INIT;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_list(s, &f, status_cb, NULL, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(deja_store_stats_get(s, &ss), 0);
    assert_int_equal(ss.sampled_out, 20);
    deja_store_close(s);
    remove_dir(path);
}

/* Masks every "secret" in text inputs, drops tensors named "drop_me", and
 * drops whole traces with a tensor named "poison". */
static int mask_cb(deja_side side, const char *name, deja_dtype dtype, uint8_t *data, size_t *size,
                   void *payload)
{
    (*(int *)payload)++;
    if (strcmp(name, "poison") == 0)
        return -1;
    if (strcmp(name, "drop_me") == 0)
        return 1;
    if (side == DEJA_INPUT && dtype == DEJA_UTF8)
        for (size_t k = 0; k + 6 <= *size; k++)
            if (memcmp(data + k, "secret", 6) == 0)
                memset(data + k, '*', 6);
    if (strcmp(name, "shorten") == 0 && *size > 4)
        *size = 4;
    return 0;
}

static void test_tracer__redaction(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    int calls = 0;
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.redact = mask_cb;
    o.redact_payload = &calls;
    deja_tracer *t = NULL;
    deja_span *s = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    assert_int_equal(deja_span_begin(&s, t, "m", "1"), 0);
    deja_id id = *deja_span_id(s);
    const char *text = "my secret is secret";
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", text, strlen(text)), 0);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "drop_me", "x", 1), 0);
    assert_int_equal(deja_span_add_text(s, DEJA_OUTPUT, "shorten", "abcdefgh", 8), 0);
    assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
    assert_int_equal(deja_span_begin(&s, t, "m", "1"), 0);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "poison", "x", 1), 0);
    assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats st;
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.redacted, 1);
    assert_int_equal(st.written, 1);
    deja_tracer_close(t);
    assert_true(calls >= 4);

    deja_store *st2 = NULL;
    deja_trace *tr = NULL;
    deja_store_stats ss;
    assert_int_equal(deja_store_open(&st2, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_trace_get(st2, &id, &tr), 0);
    assert_int_equal(tr->ninputs, 1);
    assert_int_equal(tr->inputs[0].size, strlen(text));
    assert_memory_equal(tr->inputs[0].data, "my ****** is ******", strlen(text));
    assert_int_equal(tr->noutputs, 1);
    assert_int_equal(tr->outputs[0].size, 4);
    assert_int_equal(tr->outputs[0].shape[0], 4);
    assert_memory_equal(tr->outputs[0].data, "abcd", 4);
    deja_trace_free(tr);
    assert_int_equal(deja_store_stats_get(st2, &ss), 0);
    assert_int_equal(ss.redacted, 1);
    assert_int_equal(ss.traces, 1);
    deja_store_close(st2);
    remove_dir(path);
}

static void test_tracer__truncation(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.max_payload = 16;
    deja_tracer *t = NULL;
    deja_span *s = NULL;
    char big[100];
    memset(big, 'z', sizeof big);
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    assert_int_equal(deja_span_begin(&s, t, "m", "1"), 0);
    deja_id id = *deja_span_id(s);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "long", big, sizeof big), 0);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "short", big, 3), 0);
    assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
    deja_tracer_close(t);

    deja_store *st = NULL;
    deja_trace *tr = NULL;
    assert_int_equal(deja_store_open(&st, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_trace_get(st, &id, &tr), 0);
    assert_int_equal(tr->inputs[0].size, 16);
    assert_int_equal(tr->inputs[0].shape[0], 16);
    assert_int_equal(tr->inputs[1].size, 3);
    assert_int_equal(tr->ntags, 1);
    assert_string_equal(tr->tags[0].key, "deja.truncated");
    assert_string_equal(tr->tags[0].value, "long");
    deja_trace_free(tr);
    deja_store_close(st);
    remove_dir(path);
}

/* In a child process: open the store and return how many traces it holds
 * (as the exit status, capped), or 255 on failure. */
static int count_in_child(const char *path)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        deja_store *s = NULL;
        size_t n = 0;
        deja_filter f = DEJA_FILTER_INIT;
        if (deja_store_open(&s, path, DEJA_STORE_READONLY) != 0 ||
            deja_store_list(s, &f, count_cb, NULL, &n) != 0)
            _exit(255);
        deja_store_close(s);
        _exit(n > 254 ? 254 : (int)n);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_tracer__flush_visible(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.flush_interval_ms = 3600u * 1000u; /* only the flush can commit */
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    for (int i = 0; i < 7; i++)
        assert_int_equal(simple_span(t, "m", DEJA_STATUS_OK), 0);
    assert_int_equal(deja_tracer_flush(t), 0);
    assert_int_equal(count_in_child(path), 7);
    for (int i = 0; i < 3; i++)
        assert_int_equal(simple_span(t, "m", DEJA_STATUS_OK), 0);
    assert_int_equal(deja_tracer_flush(t), 0);
    assert_int_equal(count_in_child(path), 10);
    deja_tracer_close(t);
    remove_dir(path);
}

static void test_tracer__processes(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    enum { NPROC = 3, EACH = 150 };
    pid_t pids[NPROC];
    for (int p = 0; p < NPROC; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
            o.batch_max = 8;
            o.flush_interval_ms = 1;
            deja_tracer *t = NULL;
            if (deja_tracer_open(&t, path, &o) != 0)
                _exit(1);
            for (int i = 0; i < EACH; i++) {
                deja_span *s = NULL;
                char buf[2000];
                memset(buf, 'a' + p, sizeof buf);
                buf[0] = (char)i;
                if (deja_span_begin(&s, t, "proc", "1") != 0 ||
                    deja_span_add_text(s, DEJA_INPUT, "prompt", buf, sizeof buf) != 0 ||
                    deja_span_end(s, DEJA_STATUS_OK, NULL) != 0)
                    _exit(1);
            }
            if (deja_tracer_flush(t) != 0)
                _exit(1);
            deja_tracer_stats st;
            deja_tracer_stats_get(t, &st);
            deja_tracer_close(t);
            _exit(st.written == EACH ? 0 : 1);
        }
    }
    for (int p = 0; p < NPROC; p++) {
        int status = 0;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    deja_store *s = NULL;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(count_traces(s), NPROC * EACH);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    remove_dir(path);
}

static void test_tracer__sigkill(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
        o.batch_max = 4;
        o.flush_interval_ms = 1;
        deja_tracer *t = NULL;
        if (deja_tracer_open(&t, path, &o) != 0)
            _exit(1);
        for (int i = 0; i < 100; i++)
            if (simple_span(t, "before", DEJA_STATUS_OK) != 0)
                _exit(1);
        if (deja_tracer_flush(t) != 0)
            _exit(1);
        if (write(fds[1], "k", 1) != 1)
            _exit(1);
        for (;;) {
            deja_span *s = NULL;
            char buf[3000];
            memset(buf, 'q', sizeof buf);
            if (deja_span_begin(&s, t, "after", "1") != 0)
                _exit(1);
            deja_span_add_text(s, DEJA_INPUT, "prompt", buf, sizeof buf);
            deja_span_end(s, DEJA_STATUS_OK, NULL);
        }
    }
    close(fds[1]);
    char c = 0;
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    usleep(20000); /* let it be in the middle of writing; not needed for the check */
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));

    deja_store *s = NULL;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_true(count_traces(s) >= 100);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_filter f = DEJA_FILTER_INIT;
    f.model = "before";
    size_t n = 0;
    assert_int_equal(deja_store_list(s, &f, count_cb, NULL, &n), 0);
    assert_int_equal(n, 100);
    deja_store_close(s);
    remove_dir(path);
}

typedef struct blocker {
    deja_tracer *t;
    int n;
} blocker;

static void *blocker_main(void *arg)
{
    blocker *b = arg;
    for (int i = 0; i < b->n; i++)
        if (simple_span(b->t, "block", DEJA_STATUS_OK) != 0)
            return (void *)1;
    return NULL;
}

/* A queue of one under the BLOCK policy: recorders wait, nothing is lost. */
static void test_tracer__block_loses_nothing(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.queue_capacity = 1;
    o.batch_max = 1;
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    blocker b = {t, 50};
    pthread_t th[3];
    for (int k = 0; k < 3; k++)
        assert_int_equal(pthread_create(&th[k], NULL, blocker_main, &b), 0);
    for (int k = 0; k < 3; k++) {
        void *ret = NULL;
        pthread_join(th[k], &ret);
        assert_null(ret);
    }
    /* An aborted span is never recorded. */
    deja_span *s = NULL;
    assert_int_equal(deja_span_begin(&s, t, "aborted", "1"), 0);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", "x", 1), 0);
    deja_span_abort(s);
    deja_tracer_stats st;
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.written, 150);
    assert_int_equal(st.dropped, 0);
    deja_tracer_close(t);
    deja_store *ss = NULL;
    assert_int_equal(deja_store_open(&ss, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(count_traces(ss), 150);
    deja_store_close(ss);
    remove_dir(path);
}

/* ---- a deep queue: payloads copied while hundreds of spans wait ---- */

static pthread_mutex_t gate2_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate2_cond = PTHREAD_COND_INITIALIZER;
static int gate2_entered, gate2_open;

/* Blocks the writer (in its first redaction call) until the test opens the
 * gate, so that the queue is deep whatever the machine's speed. */
static int gate2_cb(deja_side side, const char *name, deja_dtype dtype, uint8_t *data, size_t *size,
                    void *payload)
{
    (void)side, (void)name, (void)dtype, (void)data, (void)size, (void)payload;
    pthread_mutex_lock(&gate2_lock);
    gate2_entered = 1;
    pthread_cond_broadcast(&gate2_cond);
    while (!gate2_open)
        pthread_cond_wait(&gate2_cond, &gate2_lock);
    pthread_mutex_unlock(&gate2_lock);
    return 0;
}

#define DEEP_SPANS 400

static size_t deep_in_len(int i)
{
    return i % 50 == 7 ? 12000 : 200 + (size_t)(i * 37) % 3000;
}

static size_t deep_out_len(int i)
{
    return 100 + (size_t)(i * 53) % 2000;
}

static void deep_fill(uint8_t *buf, size_t n, int i, int salt)
{
    for (size_t k = 0; k < n; k++)
        buf[k] = (uint8_t)(k * 31 + (size_t)i * 7 + (size_t)salt);
}

/* Record span `i` of the deep test: payloads of many sizes (some beyond
 * the span's first arena block), many tags on some. Returns its id. */
static deja_id deep_record(deja_tracer *t, int i, int abort_it)
{
    static uint8_t in[12000], out[2100];
    deja_span *s = NULL;
    char key[32], val[32];
    assert_int_equal(deja_span_begin(&s, t, "deep-model", i % 2 ? "v1" : NULL), 0);
    const deja_id id = *deja_span_id(s);
    deep_fill(in, deep_in_len(i), i, 1);
    deep_fill(out, deep_out_len(i), i, 2);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", (const char *)in, deep_in_len(i)),
                     0);
    assert_int_equal(deja_span_param_num(s, "temperature", i * 0.5), 0);
    assert_int_equal(deja_span_seed(s, "seed", (uint64_t)i * 977), 0);
    const int ntags = i % 50 == 7 ? 40 : 1;
    for (int k = 0; k < ntags; k++) {
        snprintf(key, sizeof key, "k%d", k);
        snprintf(val, sizeof val, "v%d-%d", i, k);
        assert_int_equal(deja_span_tag(s, key, val), 0);
    }
    assert_int_equal(deja_span_add_bytes(s, DEJA_OUTPUT, "completion", out, deep_out_len(i)), 0);
    if (abort_it)
        deja_span_abort(s);
    else
        assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
    return id;
}

static void deep_check(deja_store *st, const deja_id *id, int i)
{
    static uint8_t in[12000], out[2100];
    char val[32];
    deja_trace *tr = NULL;
    assert_int_equal(deja_trace_get(st, id, &tr), 0);
    assert_string_equal(tr->model_name, "deep-model");
    assert_string_equal(tr->model_version, i % 2 ? "v1" : "");
    deep_fill(in, deep_in_len(i), i, 1);
    deep_fill(out, deep_out_len(i), i, 2);
    assert_int_equal(tr->ninputs, 1);
    assert_int_equal(tr->inputs[0].size, deep_in_len(i));
    assert_int_equal(tr->inputs[0].shape[0], deep_in_len(i));
    assert_string_equal(tr->inputs[0].name, "prompt");
    assert_memory_equal(tr->inputs[0].data, in, deep_in_len(i));
    assert_int_equal(tr->noutputs, 1);
    assert_int_equal(tr->outputs[0].size, deep_out_len(i));
    assert_memory_equal(tr->outputs[0].data, out, deep_out_len(i));
    assert_int_equal(tr->nparams, 1);
    assert_true(tr->params[0].num == i * 0.5);
    assert_int_equal(tr->nseeds, 1);
    assert_true(tr->seeds[0].value == (uint64_t)i * 977);
    const size_t ntags = i % 50 == 7 ? 40 : 1;
    assert_int_equal(tr->ntags, ntags);
    snprintf(val, sizeof val, "v%d-%zu", i, ntags - 1);
    assert_string_equal(tr->tags[ntags - 1].value, val);
    deja_trace_free(tr);
}

/* A thread that records a few spans and exits: its span cache is freed. */
static void *short_lived(void *arg)
{
    deja_tracer *t = arg;
    for (int i = 0; i < 5; i++)
        deep_record(t, i, i % 2);
    return NULL;
}

/* Hundreds of spans wait for a blocked writer (payloads are then copied
 * with streaming stores), some overflow their first arena block, some are
 * aborted (their memory is reused at once); every recorded one comes back
 * byte for byte. Then the thread's cached spans serve a second tracer. */
static void test_tracer__deep_queue_round_trip(void **state)
{
    (void)state;
    char path[256], path2[256];
    static deja_id ids[DEEP_SPANS];
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.queue_capacity = 1024;
    o.redact = gate2_cb;
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    const deja_id first = deep_record(t, 0, 0);
    pthread_mutex_lock(&gate2_lock);
    while (!gate2_entered)
        pthread_cond_wait(&gate2_cond, &gate2_lock);
    pthread_mutex_unlock(&gate2_lock);
    size_t recorded = 1;
    for (int i = 1; i < DEEP_SPANS; i++) {
        ids[i] = deep_record(t, i, i % 10 == 5);
        recorded += i % 10 != 5;
    }
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, short_lived, t), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    recorded += 3;
    pthread_mutex_lock(&gate2_lock);
    gate2_open = 1;
    pthread_cond_broadcast(&gate2_cond);
    pthread_mutex_unlock(&gate2_lock);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats st;
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.written, recorded);
    assert_int_equal(st.ended, recorded);
    assert_int_equal(st.dropped + st.failed + st.sampled_out + st.redacted, 0);
    deja_tracer_close(t);

    /* A second tracer on this thread: spans cached from the first serve. */
    make_dir(path2, sizeof path2);
    assert_int_equal(deja_tracer_open(&t, path2, NULL), 0);
    static deja_id ids2[20];
    for (int i = 0; i < 20; i++)
        ids2[i] = deep_record(t, i, 0);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_close(t);

    deja_store *st1 = NULL;
    assert_int_equal(deja_store_open(&st1, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(count_traces(st1), recorded);
    deep_check(st1, &first, 0);
    for (int i = 1; i < DEEP_SPANS; i++)
        if (i % 10 != 5)
            deep_check(st1, &ids[i], i);
    deja_store_close(st1);
    assert_int_equal(deja_store_open(&st1, path2, DEJA_STORE_READONLY), 0);
    assert_int_equal(count_traces(st1), 20);
    for (int i = 0; i < 20; i++)
        deep_check(st1, &ids2[i], i);
    deja_store_close(st1);
    remove_dir(path);
    remove_dir(path2);
}

static void test_tracer__bad_options(void **state)
{
    (void)state;
    deja_tracer *t = NULL;
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.sample_rate = 1.5;
    assert_int_equal(deja_tracer_open(&t, "/tmp/deja_never_created", &o), DEJA_EINVAL);
    assert_null(t);
    o = (deja_tracer_options)DEJA_TRACER_OPTIONS_INIT;
    o.queue_capacity = 0;
    assert_int_equal(deja_tracer_open(&t, "/tmp/deja_never_created", &o), DEJA_EINVAL);
    o = (deja_tracer_options)DEJA_TRACER_OPTIONS_INIT;
    o.queue_bytes = 0;
    assert_int_equal(deja_tracer_open(&t, "/tmp/deja_never_created", &o), DEJA_EINVAL);
    o = (deja_tracer_options)DEJA_TRACER_OPTIONS_INIT;
    o.version = 99;
    assert_int_equal(deja_tracer_open(&t, "/tmp/deja_never_created", &o), DEJA_EVERSION);
    assert_int_equal(access("/tmp/deja_never_created", F_OK), -1);
    deja_tracer_close(NULL);
    deja_span_abort(NULL);
}

/* A gc while a recorder pauses deletes the environment no committed trace
 * refers to yet; the recorder's next traces must still find theirs. */
static void test_tracer__gc_during_pause_keeps_env(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    deja_tracer *t = NULL;
    deja_id id;
    assert_int_equal(deja_tracer_open(&t, path, NULL), 0);
    record_one(t, 0, 1, &id);
    assert_int_equal(deja_tracer_flush(t), 0);

    /* The pause: another handle deletes every trace, and with them the
     * environment. */
    deja_store *s = NULL;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    deja_gc_options g = DEJA_GC_OPTIONS_INIT;
    g.before_ns = INT64_MAX;
    deja_gc_stats gs;
    assert_int_equal(deja_store_gc(s, &g, &gs), 0);
    assert_int_equal(gs.traces, 1);
    assert_int_equal(gs.envs, 1);
    deja_store_close(s);

    record_one(t, 0, 2, &id);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_close(t);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    deja_trace *tr = NULL;
    assert_int_equal(deja_trace_get(s, &id, &tr), 0);
    deja_env *env = NULL;
    assert_int_equal(deja_store_env_get(s, &tr->env, &env), 0);
    deja_env_free(env);
    deja_trace_free(tr);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    remove_dir(path);
}

/* ---- the queue bounded in bytes, and the ring under many threads ---- */

/* A gate passed as the redaction payload: the writer stops in its first
 * redaction call until the test opens it. */
typedef struct bgate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int entered, open;
} bgate;

#define BGATE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0}

static int bgate_cb(deja_side side, const char *name, deja_dtype dtype, uint8_t *data,
                    size_t *size, void *payload)
{
    bgate *g = payload;
    (void)side, (void)name, (void)dtype, (void)data, (void)size;
    pthread_mutex_lock(&g->lock);
    g->entered = 1;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static void bgate_wait_entered(bgate *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->entered)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void bgate_open(bgate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

#define BIG_PAYLOAD (64 * 1024)

/* Record one span with a BIG_PAYLOAD input stamped with `i`. */
static int big_span(deja_tracer *t, int i)
{
    static _Thread_local uint8_t buf[BIG_PAYLOAD];
    deja_span *s = NULL;
    assert_int_equal(deja_span_begin(&s, t, "big", "1"), 0);
    memset(buf, i & 0xff, sizeof buf);
    memcpy(buf, &i, sizeof i);
    assert_int_equal(deja_span_add_bytes(s, DEJA_INPUT, "image", buf, sizeof buf), 0);
    return deja_span_end(s, DEJA_STATUS_OK, NULL);
}

/* Collect the ids of listed traces (up to 256). */
typedef struct id_list {
    deja_id ids[256];
    size_t n;
} id_list;

static int collect_cb(const deja_trace *tr, void *payload)
{
    id_list *l = payload;
    assert_true(l->n < 256);
    l->ids[l->n++] = tr->id;
    return 0;
}

/* Check that every trace of the store is a big_span, byte for byte;
 * returns how many there are. */
static size_t big_check(const char *path)
{
    deja_store *s = NULL;
    static id_list l;
    uint8_t want[BIG_PAYLOAD];
    deja_filter f = DEJA_FILTER_INIT;
    l.n = 0;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_list(s, &f, collect_cb, NULL, &l), 0);
    for (size_t k = 0; k < l.n; k++) {
        deja_trace *tr = NULL;
        int i;
        assert_int_equal(deja_trace_get(s, &l.ids[k], &tr), 0);
        assert_int_equal(tr->ninputs, 1);
        assert_int_equal(tr->inputs[0].size, BIG_PAYLOAD);
        memcpy(&i, tr->inputs[0].data, sizeof i);
        memset(want, i & 0xff, sizeof want);
        memcpy(want, &i, sizeof i);
        assert_memory_equal(tr->inputs[0].data, want, sizeof want);
        deja_trace_free(tr);
    }
    deja_store_close(s);
    return l.n;
}

/* Under DEJA_QUEUE_DROP a queue of 256 KB takes at most four spans of
 * 64 KB (each holds more than its payload), the count allowing 4096: the
 * rest are dropped and counted, what was taken is written byte for byte.
 * A span larger than the whole bound is taken when nothing else is held,
 * and only then. */
static void test_tracer__bytes_bound_drop(void **state)
{
    (void)state;
    char path[256];
    bgate g = BGATE_INIT;
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.queue_bytes = 256 * 1024;
    o.queue_full = DEJA_QUEUE_DROP;
    o.redact = bgate_cb;
    o.redact_payload = &g;
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    assert_int_equal(big_span(t, 0), 0);
    bgate_wait_entered(&g); /* the writer holds span 0: its bytes are still held */
    int taken = 1;
    for (int i = 1; i < 20; i++) {
        const int rc = big_span(t, i);
        assert_true(rc == 0 || rc == DEJA_EFULL);
        taken += rc == 0;
    }
    assert_true(taken >= 2 && taken <= 4);
    bgate_open(&g);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats st;
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.ended, 20);
    assert_int_equal(st.written, (uint64_t)taken);
    assert_int_equal(st.dropped, (uint64_t)(20 - taken));
    deja_tracer_close(t);
    assert_int_equal(big_check(path), (size_t)taken);
    remove_dir(path);

    /* A bound smaller than one span. */
    bgate g2 = BGATE_INIT;
    make_dir(path, sizeof path);
    o.queue_bytes = 16 * 1024;
    o.redact_payload = &g2;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    assert_int_equal(big_span(t, 1), 0);
    bgate_wait_entered(&g2);
    assert_int_equal(big_span(t, 2), DEJA_EFULL);
    bgate_open(&g2);
    assert_int_equal(deja_tracer_flush(t), 0);
    assert_int_equal(big_span(t, 3), 0); /* nothing held again */
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.written, 2);
    assert_int_equal(st.dropped, 1);
    deja_tracer_close(t);
    assert_int_equal(big_check(path), 2);
    remove_dir(path);
}

/* The default options bound the queue at 12 MB (include/deja.h, README),
 * so that recording stays within 32 MB above the process's baseline: with
 * the writer held up, spans of one 4 KB allocation each (a 1 KB input) are
 * taken until 12 MB are held, well before the 4,096 traces the count
 * allows, and the rest are dropped under DEJA_QUEUE_DROP; what was taken
 * is written. */
static void test_tracer__bytes_bound_default(void **state)
{
    (void)state;
    enum { SPANS = 4000 };
    char path[256];
    uint8_t payload[1024];
    bgate g = BGATE_INIT;
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    assert_int_equal(o.queue_bytes, (size_t)12 << 20);
    assert_true(o.queue_capacity > SPANS);
    o.queue_full = DEJA_QUEUE_DROP;
    o.redact = bgate_cb;
    o.redact_payload = &g;
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    int taken = 0;
    for (int i = 0; i < SPANS; i++) {
        deja_span *sp = NULL;
        assert_int_equal(deja_span_begin(&sp, t, "small", "1"), 0);
        memset(payload, i & 0xff, sizeof payload);
        assert_int_equal(deja_span_add_bytes(sp, DEJA_INPUT, "x", payload, sizeof payload), 0);
        const int rc = deja_span_end(sp, DEJA_STATUS_OK, NULL);
        assert_true(rc == 0 || rc == DEJA_EFULL);
        taken += rc == 0;
        if (i == 0)
            bgate_wait_entered(&g); /* the writer holds span 0: its bytes are still held */
    }
    assert_true(taken >= (12 << 20) / 4096 - 1 && taken <= (12 << 20) / 4000);
    bgate_open(&g);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats st;
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.written, (uint64_t)taken);
    assert_int_equal(st.dropped, (uint64_t)(SPANS - taken));
    deja_tracer_close(t);
    remove_dir(path);
}

/* Big spans fill the byte bound before the writer's wake_at (64) of them
 * are queued: the writer is woken by bytes as well (a quarter of the
 * bound), not only by its interval. With an interval of an hour and a
 * bound of 1 MB, five spans of 64 KB are committed without a flush (the
 * writer used to sleep until its interval, recorders blocked behind it).
 * The wait below is a bound on a hang, not a timing: it passes in
 * milliseconds, and fails only if the writer sleeps on. */
static void test_tracer__bytes_wake_writer(void **state)
{
    (void)state;
    char path[256];
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.queue_bytes = 1 << 20;
    o.flush_interval_ms = 3600u * 1000u;
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(big_span(t, i), 0);
    deja_tracer_stats st;
    for (int tries = 0; tries < 3000; tries++) { /* 30 s at most */
        deja_tracer_stats_get(t, &st);
        if (st.written >= 4)
            break;
        usleep(10 * 1000);
    }
    assert_true(st.written >= 4);
    /* Recorders blocked by the byte bound are let through the same way. */
    for (int i = 5; i < 40; i++)
        assert_int_equal(big_span(t, i), 0);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.written, 40);
    assert_int_equal(st.dropped, 0);
    deja_tracer_close(t);
    assert_int_equal(big_check(path), 40);
    remove_dir(path);
}

typedef struct big_recorder {
    deja_tracer *t;
    int first, n;
    atomic_int *ended;
} big_recorder;

static void *big_recorder_main(void *arg)
{
    big_recorder *r = arg;
    for (int i = 0; i < r->n; i++) {
        if (big_span(r->t, r->first + i) != 0)
            return (void *)1;
        atomic_fetch_add(r->ended, 1);
    }
    return NULL;
}

/* Under DEJA_QUEUE_BLOCK the byte bound holds recorders back: with the
 * writer stopped, three threads get at most four 64 KB spans past a bound
 * of 256 KB, whatever time they are given; once the writer runs, every
 * span is written byte for byte and none is dropped. */
static void test_tracer__bytes_bound_block(void **state)
{
    (void)state;
    char path[256];
    bgate g = BGATE_INIT;
    atomic_int ended = 0;
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.queue_bytes = 256 * 1024;
    o.batch_max = 2;
    o.redact = bgate_cb;
    o.redact_payload = &g;
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    big_recorder r[3];
    pthread_t th[3];
    for (int k = 0; k < 3; k++) {
        r[k] = (big_recorder){t, k * 1000, 30, &ended};
        assert_int_equal(pthread_create(&th[k], NULL, big_recorder_main, &r[k]), 0);
    }
    bgate_wait_entered(&g);
    usleep(200 * 1000); /* time to overrun the bound, were it not enforced */
    assert_true(atomic_load(&ended) <= 4);
    bgate_open(&g);
    for (int k = 0; k < 3; k++) {
        void *ret = NULL;
        pthread_join(th[k], &ret);
        assert_null(ret);
    }
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats st;
    deja_tracer_stats_get(t, &st);
    assert_int_equal(st.written, 90);
    assert_int_equal(st.dropped, 0);
    deja_tracer_close(t);
    assert_int_equal(big_check(path), 90);
    remove_dir(path);
}

#define STREAM_THREADS 4
#define STREAM_PER_THREAD 300

typedef struct stream_worker {
    deja_tracer *t;
    deja_id ids[STREAM_PER_THREAD];
    int k;
} stream_worker;

/* The payload of span `i` of thread `k` (`side` 1 or 2): 300..1,499 bytes,
 * so that most are copied with streaming stores once the queue is deep. */
static size_t stream_len(int k, int i, int side)
{
    return 300 + (size_t)((i * 37 + k * 101 + side * 59) % 1200);
}

static void stream_fill(uint8_t *buf, int k, int i, int side)
{
    const size_t n = stream_len(k, i, side);
    for (size_t j = 0; j < n; j++)
        buf[j] = (uint8_t)(j * 13 + (size_t)i * 5 + (size_t)k * 71 + (size_t)side);
}

/* Record STREAM_PER_THREAD spans with two payloads each; every seventh is
 * aborted after its payloads were copied (its memory is reused at once by
 * the next). Returns NULL, or non-NULL on the first failure. */
static void *stream_main(void *arg)
{
    stream_worker *w = arg;
    static _Thread_local uint8_t in[1600], out[1600];
    for (int i = 0; i < STREAM_PER_THREAD; i++) {
        deja_span *s = NULL;
        if (deja_span_begin(&s, w->t, "stream", "1") != 0)
            return (void *)1;
        w->ids[i] = *deja_span_id(s);
        stream_fill(in, w->k, i, 1);
        stream_fill(out, w->k, i, 2);
        if (deja_span_add_bytes(s, DEJA_INPUT, "in", in, stream_len(w->k, i, 1)) != 0 ||
            deja_span_add_bytes(s, DEJA_OUTPUT, "out", out, stream_len(w->k, i, 2)) != 0)
            return (void *)1;
        if (i % 7 == 3)
            deja_span_abort(s);
        else if (deja_span_end(s, DEJA_STATUS_OK, NULL) != 0)
            return (void *)1;
    }
    return NULL;
}

/* Four threads fill a queue held by a blocked writer, so that their
 * payloads go with streaming stores, fenced once per span at its end (not
 * per payload); aborted spans are reused at once. Every recorded trace
 * reads back byte for byte, and no aborted one was written. */
static void test_tracer__deep_queue_threads(void **state)
{
    (void)state;
    static stream_worker w[STREAM_THREADS];
    static uint8_t want[1600];
    char path[256];
    bgate g = BGATE_INIT;
    make_dir(path, sizeof path);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.queue_capacity = 2048;
    o.redact = bgate_cb;
    o.redact_payload = &g;
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, &o), 0);
    pthread_t th[STREAM_THREADS];
    for (int k = 0; k < STREAM_THREADS; k++) {
        w[k] = (stream_worker){t, {{{0}}}, k};
        assert_int_equal(pthread_create(&th[k], NULL, stream_main, &w[k]), 0);
    }
    for (int k = 0; k < STREAM_THREADS; k++) {
        void *ret = NULL;
        pthread_join(th[k], &ret);
        assert_null(ret);
    }
    bgate_open(&g);
    assert_int_equal(deja_tracer_flush(t), 0);
    deja_tracer_stats st;
    deja_tracer_stats_get(t, &st);
    const uint64_t kept = STREAM_THREADS * (STREAM_PER_THREAD - (STREAM_PER_THREAD + 3) / 7);
    assert_int_equal(st.written, kept);
    deja_tracer_close(t);

    deja_store *s = NULL;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    for (int k = 0; k < STREAM_THREADS; k++)
        for (int i = 0; i < STREAM_PER_THREAD; i++) {
            deja_trace *tr = NULL;
            const int rc = deja_trace_get(s, &w[k].ids[i], &tr);
            if (i % 7 == 3) {
                assert_int_equal(rc, DEJA_ENOTFOUND);
                continue;
            }
            assert_int_equal(rc, 0);
            assert_int_equal(tr->ninputs, 1);
            assert_int_equal(tr->noutputs, 1);
            stream_fill(want, k, i, 1);
            assert_int_equal(tr->inputs[0].size, stream_len(k, i, 1));
            assert_memory_equal(tr->inputs[0].data, want, stream_len(k, i, 1));
            stream_fill(want, k, i, 2);
            assert_int_equal(tr->outputs[0].size, stream_len(k, i, 2));
            assert_memory_equal(tr->outputs[0].data, want, stream_len(k, i, 2));
            deja_trace_free(tr);
        }
    deja_store_close(s);
    remove_dir(path);
}

#define RING_THREADS 16
#define RING_PER_THREAD 400

typedef struct ring_worker {
    deja_tracer *t;
    deja_id ids[RING_PER_THREAD];
    int ok[RING_PER_THREAD];
    int k;
} ring_worker;

static void *ring_main(void *arg)
{
    ring_worker *w = arg;
    char text[64];
    for (int i = 0; i < RING_PER_THREAD; i++) {
        deja_span *s = NULL;
        if (deja_span_begin(&s, w->t, "ring", "1") != 0)
            return (void *)1;
        w->ids[i] = *deja_span_id(s);
        const int n = snprintf(text, sizeof text, "thread %d span %d", w->k, i);
        if (deja_span_add_text(s, DEJA_INPUT, "prompt", text, (size_t)n) != 0)
            return (void *)1;
        const int rc = deja_span_end(s, DEJA_STATUS_OK, NULL);
        if (rc != 0 && rc != DEJA_EFULL)
            return (void *)1;
        w->ok[i] = rc == 0;
    }
    return NULL;
}

/* Sixteen threads through a queue of 8 places (its ring wraps hundreds of
 * times), under both policies: every span taken is written once, with its
 * own content; under BLOCK none is dropped, under DROP ended = written +
 * dropped. */
static void test_tracer__ring_many_threads(void **state)
{
    (void)state;
    static ring_worker w[RING_THREADS];
    for (int policy = 0; policy < 2; policy++) {
        char path[256];
        make_dir(path, sizeof path);
        deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
        o.queue_capacity = 8;
        o.batch_max = 4;
        o.flush_interval_ms = 0;
        o.queue_full = policy ? DEJA_QUEUE_DROP : DEJA_QUEUE_BLOCK;
        deja_tracer *t = NULL;
        assert_int_equal(deja_tracer_open(&t, path, &o), 0);
        pthread_t th[RING_THREADS];
        for (int k = 0; k < RING_THREADS; k++) {
            memset(&w[k], 0, sizeof w[k]);
            w[k].t = t;
            w[k].k = k;
            assert_int_equal(pthread_create(&th[k], NULL, ring_main, &w[k]), 0);
        }
        for (int k = 0; k < RING_THREADS; k++) {
            void *ret = NULL;
            pthread_join(th[k], &ret);
            assert_null(ret);
        }
        assert_int_equal(deja_tracer_flush(t), 0);
        deja_tracer_stats st;
        deja_tracer_stats_get(t, &st);
        deja_tracer_close(t);
        uint64_t taken = 0;
        for (int k = 0; k < RING_THREADS; k++)
            for (int i = 0; i < RING_PER_THREAD; i++)
                taken += (uint64_t)w[k].ok[i];
        assert_int_equal(st.ended, RING_THREADS * RING_PER_THREAD);
        assert_int_equal(st.written, taken);
        assert_int_equal(st.written + st.dropped, st.ended);
        if (policy == 0)
            assert_int_equal(st.dropped, 0);

        deja_store *s = NULL;
        char want[64];
        assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
        assert_int_equal(count_traces(s), (size_t)taken);
        for (int k = 0; k < RING_THREADS; k++)
            for (int i = 0; i < RING_PER_THREAD; i++) {
                deja_trace *tr = NULL;
                const int rc = deja_trace_get(s, &w[k].ids[i], &tr);
                if (!w[k].ok[i]) {
                    assert_int_equal(rc, DEJA_ENOTFOUND);
                    continue;
                }
                assert_int_equal(rc, 0);
                const int n = snprintf(want, sizeof want, "thread %d span %d", k, i);
                assert_int_equal(tr->inputs[0].size, (size_t)n);
                assert_memory_equal(tr->inputs[0].data, want, (size_t)n);
                deja_trace_free(tr);
            }
        deja_store_close(s);
        remove_dir(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tracer__threads_read_back),
        cmocka_unit_test(test_tracer__drop_counts),
        cmocka_unit_test(test_tracer__sampling_keeps_errors),
        cmocka_unit_test(test_tracer__redaction),
        cmocka_unit_test(test_tracer__truncation),
        cmocka_unit_test(test_tracer__flush_visible),
        cmocka_unit_test(test_tracer__processes),
        cmocka_unit_test(test_tracer__sigkill),
        cmocka_unit_test(test_tracer__block_loses_nothing),
        cmocka_unit_test(test_tracer__deep_queue_round_trip),
        cmocka_unit_test(test_tracer__deep_queue_threads),
        cmocka_unit_test(test_tracer__bad_options),
        cmocka_unit_test(test_tracer__parallel_prepare_dictionary),
        cmocka_unit_test(test_tracer__gc_during_pause_keeps_env),
        cmocka_unit_test(test_tracer__bytes_bound_drop),
        cmocka_unit_test(test_tracer__bytes_bound_block),
        cmocka_unit_test(test_tracer__bytes_bound_default),
        cmocka_unit_test(test_tracer__bytes_wake_writer),
        cmocka_unit_test(test_tracer__ring_many_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
