/*
 * tracer/writer.c -- the writer thread: pops ended spans in batches, applies
 * redaction, and commits each batch in one store write transaction together
 * with this process's environment (once) and the tracer's counters.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tracer/tracer_internal.h"

/* What one store write puts: trace views, maybe the environment, and the
 * counter deltas. Read-only inside fill, so that fill can be rerun. */
typedef struct fill_args {
    const deja_trace *views;
    size_t nviews;
    const deja_env *env; /* NULL: already stored */
    uint64_t dropped, sampled_out, redacted;
} fill_args;

/* The fill callback of deja__store_write(): puts every trace, the
 * environment and the counters. Repeatable; returns the first error. */
static int fill(deja__wtxn *w, void *payload)
{
    const fill_args *a = payload;
    int rc = 0;
    for (size_t i = 0; i < a->nviews; i++)
        if ((rc = deja__wtxn_put_trace(w, &a->views[i], NULL)) != 0)
            goto cleanup;
    if (a->env != NULL) {
        deja_digest d;
        if ((rc = deja__wtxn_put_env(w, a->env, &d)) != 0)
            goto cleanup;
    }
    if (a->dropped != 0 || a->sampled_out != 0 || a->redacted != 0)
        rc = deja__wtxn_count(w, a->dropped, a->sampled_out, a->redacted);
cleanup:
    return rc;
}

/* A deja_trace view of an ended span: pointers into its arena. */
static void span_view(const deja_tracer *t, const deja_span *s, deja_trace *v)
{
    memset(v, 0, sizeof *v);
    v->id = s->id;
    v->start_ns = s->start_ns;
    v->duration_ns = s->duration_ns;
    v->model_name = s->model_name;
    v->model_version = s->model_version;
    v->model_digest = s->model_digest_size != 0 ? s->model_digest : NULL;
    v->model_digest_size = s->model_digest_size;
    v->inputs = s->inputs;
    v->ninputs = s->ninputs;
    v->outputs = s->outputs;
    v->noutputs = s->noutputs;
    v->params = s->params;
    v->nparams = s->nparams;
    v->seeds = s->seeds;
    v->nseeds = s->nseeds;
    v->rng = s->rng;
    v->nrng = s->nrng;
    v->clock_ns = s->clock_ns;
    v->nclock = s->nclock;
    v->has_env = 1;
    v->env = t->env_digest;
    v->status = s->status;
    v->error = s->error != NULL ? s->error : "";
    v->tags = s->tags;
    v->ntags = s->ntags;
    v->has_parent = s->has_parent;
    v->parent = s->parent;
}

/* Run the redaction callback over the tensors of one side, compacting
 * away dropped tensors. Returns -1 when the whole trace must go, else 0. */
static int redact_side(const deja_tracer *t, deja_side side, deja_tensor *arr, size_t *n)
{
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        deja_tensor tt = arr[i];
        size_t size = tt.size;
        int r = t->opts.redact(side, tt.name, tt.dtype, (uint8_t *)(uintptr_t)tt.data, &size,
                               t->opts.redact_payload);
        if (r < 0)
            return -1;
        if (r == 1)
            continue;
        if (size < tt.size) {
            /* The arena always holds at least one shape slot. */
            const size_t esize = deja_dtype_size(tt.dtype);
            uint64_t *shape = (uint64_t *)(uintptr_t)tt.shape;
            tt.size = size - size % esize;
            tt.ndim = 1;
            shape[0] = tt.size / esize;
        }
        arr[k++] = tt;
    }
    *n = k;
    return 0;
}

/* Remember a store failure of `count` traces for the next flush. */
static void note_failure(deja_tracer *t, uint64_t count)
{
    atomic_fetch_add(&t->failed, count);
    pthread_mutex_lock(&t->lock);
    t->failed_unreported += count;
    snprintf(t->writer_error, sizeof t->writer_error, "%s", deja_error_last());
    pthread_mutex_unlock(&t->lock);
}

/* Reported counter values: what the store has been told so far. */
typedef struct reported {
    uint64_t dropped, sampled_out, redacted;
} reported;

/* Redact, convert and commit one batch of spans, then recycle them. A
 * failed batch is retried trace by trace so that one bad trace loses only
 * itself. */
static void write_batch(deja_tracer *t, deja_span **batch, size_t n, deja_trace *views,
                        reported *rep)
{
    size_t nv = 0;
    for (size_t i = 0; i < n; i++) {
        deja_span *s = batch[i];
        if (t->opts.redact != NULL &&
            (redact_side(t, DEJA_INPUT, s->inputs, &s->ninputs) != 0 ||
             redact_side(t, DEJA_OUTPUT, s->outputs, &s->noutputs) != 0)) {
            atomic_fetch_add(&t->redacted, 1);
            continue;
        }
        span_view(t, s, &views[nv++]);
    }
    fill_args a = {views, nv, t->env_written ? NULL : t->env, 0, 0, 0};
    const uint64_t dropped = atomic_load(&t->dropped);
    const uint64_t sampled = atomic_load(&t->sampled_out);
    const uint64_t redacted = atomic_load(&t->redacted);
    a.dropped = dropped - rep->dropped;
    a.sampled_out = sampled - rep->sampled_out;
    a.redacted = redacted - rep->redacted;
    if (nv == 0 && a.dropped == 0 && a.sampled_out == 0 && a.redacted == 0)
        goto cleanup;
    if (nv == 0)
        a.env = NULL;
    if (deja__store_write(t->store, fill, &a) == 0) {
        atomic_fetch_add(&t->written, nv);
        if (a.env != NULL)
            t->env_written = 1;
        *rep = (reported){dropped, sampled, redacted};
        goto cleanup;
    }
    if (nv <= 1) {
        note_failure(t, nv);
        goto cleanup;
    }
    /* One by one: the counters and the environment go with the first
     * trace that commits. */
    for (size_t i = 0; i < nv; i++) {
        fill_args one = a;
        one.views = &views[i];
        one.nviews = 1;
        if (deja__store_write(t->store, fill, &one) != 0) {
            note_failure(t, 1);
            continue;
        }
        atomic_fetch_add(&t->written, 1);
        if (one.env != NULL)
            t->env_written = 1;
        a.env = NULL;
        a.dropped = a.sampled_out = a.redacted = 0;
        *rep = (reported){dropped, sampled, redacted};
    }
cleanup:
    deja__span_recycle_many(batch, n);
}

/* CLOCK_MONOTONIC now plus `ms` milliseconds. */
static struct timespec deadline_after(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* The writer thread. Waits (at most flush_interval_ms) for the queue to
 * reach wake_at spans, a flush or a stop; pops up to batch_max spans;
 * writes them and advances committed_seq, which flushers wait on. Stops
 * when asked and the queue is empty. */
void *deja__writer_main(void *arg)
{
    deja_tracer *t = arg;
    const size_t cap = t->opts.batch_max;
    deja_span *one_span[1];
    deja_trace one_view[1];
    deja_span **batch = malloc(cap * sizeof *batch);
    deja_trace *views = malloc(cap * sizeof *views);
    size_t bmax = cap;
    if (batch == NULL || views == NULL) {
        free(batch);
        free(views);
        batch = one_span;
        views = one_view;
        bmax = 1;
    }
    reported rep = {0, 0, 0};
    const unsigned interval = t->opts.flush_interval_ms;

    pthread_mutex_lock(&t->lock);
    for (;;) {
        if (!t->stop && t->flush_target <= t->committed_seq &&
            (t->ring_count == 0 || (interval != 0 && t->ring_count < t->wake_at))) {
            const struct timespec dl = deadline_after(interval != 0 ? interval : 1);
            t->writer_sleeping = 1;
            while (!t->stop && t->flush_target <= t->committed_seq && t->ring_count < t->wake_at)
                if (pthread_cond_timedwait(&t->not_empty, &t->lock, &dl) == ETIMEDOUT)
                    break;
            t->writer_sleeping = 0;
        }
        const int stop = t->stop;
        size_t n = t->ring_count < bmax ? t->ring_count : bmax;
        for (size_t i = 0; i < n; i++) {
            batch[i] = t->ring[t->ring_head];
            t->ring_head = (t->ring_head + 1) % t->ring_cap;
        }
        t->ring_count -= n;
        const int drained = t->ring_count == 0;
        if (n != 0)
            pthread_cond_broadcast(&t->not_full);
        pthread_mutex_unlock(&t->lock);

        write_batch(t, batch, n, views, &rep);

        pthread_mutex_lock(&t->lock);
        t->committed_seq += n;
        pthread_cond_broadcast(&t->done);
        if (stop && drained)
            break;
    }
    pthread_mutex_unlock(&t->lock);
    if (batch != one_span) {
        free(batch);
        free(views);
    }
    return NULL;
}
