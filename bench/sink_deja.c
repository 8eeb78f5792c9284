/*
 * bench/sink_deja.c -- deja behind the bench's sink interface, through the
 * public API only: the span API to record, deja_trace_get to read back.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

struct bench_sink {
    deja_tracer *tracer;
};

/* The store lives in <dir>/deja.store, which the tracer creates. */
static void store_path(char *out, size_t cap, const char *dir)
{
    snprintf(out, cap, "%s/deja.store", dir);
}

/* Open a tracer on <dir>/deja.store, blocking when the queue is full.
 * Returns 0 or -1 (the message printed). */
static int deja_open(bench_sink **out, const char *dir, const bench_workload *w)
{
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    bench_sink *s = calloc(1, sizeof(*s));
    char path[4096];
    int rc;
    (void)w;
    if (s == NULL) {
        return -1;
    }
    o.queue_full = DEJA_QUEUE_BLOCK;
    store_path(path, sizeof(path), dir);
    rc = deja_tracer_open(&s->tracer, path, &o);
    if (rc != 0) {
        fprintf(stderr, "deja-bench: deja_tracer_open %s: %s\n", path, deja_error_last());
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

/* Add the `n` tensors `tensors` to `sp` on `side`: text as text, the rest
 * as one-dimensional tensors. Stops at the first failure and returns its
 * code; returns 0 when all were added. */
static inline int add_tensors(deja_span *sp, deja_side side, const bench_tensor *tensors, size_t n)
{
    size_t i;
    int rc = 0;
    for (i = 0; rc == 0 && i < n; i++) {
        const bench_tensor *bt = &tensors[i];
        if (bt->dtype == DEJA_UTF8) {
            rc = deja_span_add_text(sp, side, bt->name, bt->data, bt->size);
        } else {
            const deja_tensor dt = {bt->name, bt->dtype, 1, bt->shape, bt->data, bt->size};
            rc = deja_span_add(sp, side, &dt);
        }
    }
    return rc;
}

/* One inference, as an instrumented program records it. */
static int deja_record(bench_sink *s, bench_thread *t, const bench_record *r)
{
    deja_span *sp = NULL;
    size_t i;
    int rc = deja_span_begin(&sp, s->tracer, r->model, r->version);
    if (rc != 0) {
        return rc;
    }
    rc = deja_span_model_digest(sp, r->digest, sizeof(r->digest));
    if (rc == 0) {
        rc = add_tensors(sp, DEJA_INPUT, r->in, r->nin);
    }
    for (i = 0; rc == 0 && i < r->nparams; i++) {
        const bench_param *p = &r->params[i];
        rc = p->kind == DEJA_PARAM_STR ? deja_span_param_str(sp, p->key, p->str)
                                       : deja_span_param_num(sp, p->key, p->num);
    }
    if (rc == 0) {
        rc = deja_span_seed(sp, "seed", r->seed);
    }
    for (i = 0; rc == 0 && i < r->ntags; i++) {
        rc = deja_span_tag(sp, r->tags[i].key, r->tags[i].value);
    }
    if (rc == 0) {
        rc = add_tensors(sp, DEJA_OUTPUT, r->out, r->nout);
    }
    if (rc != 0) {
        deja_span_abort(sp);
        return rc;
    }
    t->last_id = *deja_span_id(sp);
    return deja_span_end(sp, DEJA_STATUS_OK, NULL);
}

/* Flush: every span ended so far is committed and synced. */
static int deja_finish(bench_sink *s)
{
    const int rc = deja_tracer_flush(s->tracer);
    if (rc != 0) {
        fprintf(stderr, "deja-bench: deja_tracer_flush: %s\n", deja_error_last());
    }
    return rc;
}

/* Traces the writer has committed so far. */
static uint64_t deja_committed(bench_sink *s)
{
    deja_tracer_stats st;
    deja_tracer_stats_get(s->tracer, &st);
    return st.written;
}

/* Traces lost for any reason: dropped, failed, redacted or sampled out. */
static uint64_t deja_lost(bench_sink *s)
{
    deja_tracer_stats st;
    deja_tracer_stats_get(s->tracer, &st);
    return st.dropped + st.failed + st.redacted + st.sampled_out;
}

/* Close the tracer (it flushes). Accepts NULL. */
static void deja_close(bench_sink *s)
{
    if (s != NULL) {
        deja_tracer_close(s->tracer);
        free(s);
    }
}

/* Bytes on disk of the store directory. */
static uint64_t deja_disk_bytes(const char *dir)
{
    return bench_du(dir);
}

/* Read every recorded trace by id, payloads loaded and decoded. */
static int64_t deja_read_all(const char *dir, const deja_id *ids, size_t nids, double *seconds)
{
    deja_store *st = NULL;
    char path[4096];
    int64_t n = 0;
    size_t i;
    double t0;
    store_path(path, sizeof(path), dir);
    if (deja_store_open(&st, path, DEJA_STORE_READONLY) != 0) {
        fprintf(stderr, "deja-bench: deja_store_open %s: %s\n", path, deja_error_last());
        return -1;
    }
    t0 = bench_now();
    for (i = 0; i < nids; i++) {
        deja_trace *tr = NULL;
        if (deja_trace_get(st, &ids[i], &tr) != 0) {
            fprintf(stderr, "deja-bench: deja_trace_get: %s\n", deja_error_last());
            n = -1;
            break;
        }
        n += tr->ninputs > 0 ? 1 : 0;
        deja_trace_free(tr);
    }
    *seconds = bench_now() - t0;
    deja_store_close(st);
    return n;
}

const bench_sink_ops bench_sink_deja = {
    .name = "deja",
    .open = deja_open,
    .record = deja_record,
    .finish = deja_finish,
    .committed = deja_committed,
    .lost = deja_lost,
    .close = deja_close,
    .disk_bytes = deja_disk_bytes,
    .read_all = deja_read_all,
};
