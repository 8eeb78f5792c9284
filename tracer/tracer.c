/*
 * tracer/tracer.c -- the tracer's lifecycle and its bounded queue.
 *
 * Recording threads push ended spans into a ring under one mutex; the writer
 * thread (writer.c) pops them in batches. The writer is woken only when the
 * queue reaches `wake_at` spans, when a flush asks for it, or when the
 * queue is full: otherwise it wakes on its own every flush_interval_ms, so
 * that ending a span costs no syscall.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracer/tracer_internal.h"

/* Check the options and fill in a copy. */
static int options_check(const deja_tracer_options *in, deja_tracer_options *out)
{
    const deja_tracer_options dflt = DEJA_TRACER_OPTIONS_INIT;
    *out = dflt;
    if (in != NULL && in->version == 1) /* version 1 ended before env_vars */
        memcpy(out, in, offsetof(deja_tracer_options, env_vars));
    else if (in != NULL && in->version == 2) /* version 2 ended before check */
        memcpy(out, in, offsetof(deja_tracer_options, check));
    else if (in != NULL)
        *out = *in;
    if (out->version == 1)
        out->env_vars = NULL;
    if (out->version < 1 || out->version > DEJA_TRACER_OPTIONS_VERSION)
        return deja__error_set(DEJA_EVERSION, "tracer options: version %u, expected 1..%u",
                               out->version, DEJA_TRACER_OPTIONS_VERSION);
    if (!(out->sample_rate >= 0.0 && out->sample_rate <= 1.0))
        return deja__error_set(DEJA_EINVAL, "tracer options: sample_rate must be in 0..1");
    if (out->queue_capacity == 0 || out->queue_capacity > DEJA__QUEUE_MAX)
        return deja__error_set(DEJA_EINVAL, "tracer options: queue_capacity must be 1..%zu",
                               DEJA__QUEUE_MAX);
    if (out->batch_max == 0 || out->batch_max > DEJA__BATCH_MAX)
        return deja__error_set(DEJA_EINVAL, "tracer options: batch_max must be 1..%u",
                               DEJA__BATCH_MAX);
    if (out->queue_full != DEJA_QUEUE_BLOCK && out->queue_full != DEJA_QUEUE_DROP)
        return deja__error_set(DEJA_EINVAL, "tracer options: unknown queue_full policy %d",
                               (int)out->queue_full);
    if (out->flush_interval_ms > 3600u * 1000u)
        return deja__error_set(DEJA_EINVAL, "tracer options: flush_interval_ms above one hour");
    if (deja__env_spec_check(getenv("DEJA_ENV_VARS"), "DEJA_ENV_VARS") != 0 ||
        deja__env_spec_check(out->env_vars, "tracer options: env_vars") != 0)
        return DEJA_EINVAL;
    return 0;
}

/* Free a tracer whose writer is not running (or was joined). */
static void tracer_free(deja_tracer *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->pool_n; i++)
        deja__span_destroy(t->pool[i]);
    free(t->pool);
    for (size_t i = 0; i < t->ring_count; i++)
        deja__span_destroy(t->ring[(t->ring_head + i) % t->ring_cap]);
    free(t->ring);
    deja_env_free(t->env_owned);
    deja_store_close(t->store);
    deja__sampler_free(atomic_load(&t->sampler));
    deja__lost_free(t);
    deja_env_free(t->env_own);
    free(t->failed_ids);
    pthread_cond_destroy(&t->done);
    pthread_cond_destroy(&t->not_full);
    pthread_cond_destroy(&t->not_empty);
    pthread_mutex_destroy(&t->pool_lock);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Open a tracer on the store at `path` (created if needed), capture the
 * environment and start the writer thread. The caller owns `*out` and
 * closes it with deja_tracer_close(). */
int deja_tracer_open(deja_tracer **out, const char *path, const deja_tracer_options *opts)
{
    int rc = 0;
    deja_tracer *t = NULL;
    pthread_condattr_t ca;
    int ca_ok = 0;
    if (out == NULL || path == NULL) {
        rc = deja__error_set(DEJA_EINVAL, "tracer open: out and path are required");
        goto cleanup;
    }
    *out = NULL;
    if ((t = calloc(1, sizeof *t)) == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "tracer open: out of memory");
        goto cleanup;
    }
    if ((rc = options_check(opts, &t->opts)) != 0) {
        free(t);
        t = NULL;
        goto cleanup;
    }
    if (pthread_condattr_init(&ca) != 0) {
        free(t);
        t = NULL;
        rc = deja__error_set(DEJA_ENOMEM, "tracer open: cannot create condition variables");
        goto cleanup;
    }
    ca_ok = 1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->pool_lock, NULL);
    pthread_cond_init(&t->not_empty, &ca);
    pthread_cond_init(&t->not_full, &ca);
    pthread_cond_init(&t->done, &ca);
    t->ring_cap = t->opts.queue_capacity;
    t->ring = calloc(t->ring_cap, sizeof *t->ring);
    if (t->ring == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "tracer open: out of memory for a queue of %zu",
                             t->ring_cap);
        goto cleanup;
    }
    t->wake_at = t->opts.batch_max < DEJA__WAKE_AT ? t->opts.batch_max : DEJA__WAKE_AT;
    if (t->wake_at > t->ring_cap / 2)
        t->wake_at = t->ring_cap / 2;
    if (t->wake_at == 0)
        t->wake_at = 1;
    t->pool_max = t->ring_cap + t->opts.batch_max;
    if (t->pool_max > DEJA__SPAN_POOL_MAX)
        t->pool_max = DEJA__SPAN_POOL_MAX;
    t->pool = malloc(t->pool_max * sizeof *t->pool);
    if (t->pool == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "tracer open: out of memory for a pool of %zu",
                             t->pool_max);
        goto cleanup;
    }
    if (t->opts.env_vars == NULL) {
        t->env = deja_env_current(&t->env_digest);
    } else {
        if ((rc = deja__env_capture_with(t->opts.env_vars, &t->env_own, &t->env_digest)) != 0)
            goto cleanup;
        t->env = t->env_own;
    }
    t->opts.env_vars = NULL; /* the caller's string is not kept */
    if (t->opts.nlibs != 0) {
        /* The model's libraries join the environment (a copy: the
         * caller's array may go). */
        deja_env *with = NULL;
        rc = deja_env_with_libs(t->env, t->opts.libs, t->opts.nlibs, &with, &t->env_digest);
        if (rc != 0)
            goto cleanup;
        t->env_owned = with;
        t->env = with;
        t->opts.libs = NULL;
        t->opts.nlibs = 0;
    }
    if ((rc = deja_store_open(&t->store, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC)) != 0)
        goto cleanup;
    if (pthread_create(&t->writer, NULL, deja__writer_main, t) != 0) {
        rc = deja__error_set(DEJA_EIO, "tracer open: cannot start the writer thread");
        goto cleanup;
    }
    t->writer_started = 1;
    pthread_setname_np(t->writer, "deja-writer");
    *out = t;
    t = NULL;
cleanup:
    if (ca_ok)
        pthread_condattr_destroy(&ca);
    tracer_free(t);
    return rc;
}

/* Push an ended span (tracer.c's half of deja_span_end). Under
 * DEJA_QUEUE_BLOCK waits for room; under DEJA_QUEUE_DROP a full queue drops
 * the span, counts it and returns DEJA_EFULL. */
int deja__tracer_enqueue(deja_tracer *t, deja_span *span, size_t *backlog)
{
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    while (t->ring_count == t->ring_cap && t->opts.queue_full == DEJA_QUEUE_BLOCK) {
        if (t->writer_sleeping)
            pthread_cond_signal(&t->not_empty);
        pthread_cond_wait(&t->not_full, &t->lock);
    }
    if (t->ring_count == t->ring_cap) {
        if (t->writer_sleeping)
            pthread_cond_signal(&t->not_empty);
        pthread_mutex_unlock(&t->lock);
        atomic_fetch_add_explicit(&t->dropped, 1, memory_order_relaxed);
        deja__lost_count(t, span->model_name, span->model_version, DEJA__LOST_DROPPED);
        *backlog = t->ring_cap;
        deja__span_recycle(span);
        rc = deja__error_set(DEJA_EFULL, "tracer: queue full (%zu traces), trace dropped",
                             t->ring_cap);
        goto cleanup;
    }
    t->ring[(t->ring_head + t->ring_count) % t->ring_cap] = span;
    t->ring_count++;
    t->enqueued_seq++;
    *backlog = t->ring_count;
    if (t->writer_sleeping && t->ring_count >= t->wake_at)
        pthread_cond_signal(&t->not_empty);
    pthread_mutex_unlock(&t->lock);
cleanup:
    return rc;
}

/* Wait until every span ended before the call is committed, then have LMDB
 * write its buffers to disk. Returns 0, or DEJA_EIO when traces were lost
 * to store errors since the last flush (the writer's message is given). */
int deja_tracer_flush(deja_tracer *tracer)
{
    int rc = 0;
    if (tracer == NULL)
        return deja__error_set(DEJA_EINVAL, "tracer flush: tracer is NULL");
    pthread_mutex_lock(&tracer->lock);
    /* Only spans handed over before this call: a busy queue that never
     * drains does not hold the flush back. */
    const uint64_t target = tracer->enqueued_seq;
    if (tracer->flush_target < target)
        tracer->flush_target = target;
    if (tracer->writer_sleeping)
        pthread_cond_signal(&tracer->not_empty);
    while (tracer->committed_seq < target)
        pthread_cond_wait(&tracer->done, &tracer->lock);
    const uint64_t failed = tracer->failed_unreported;
    char msg[sizeof tracer->writer_error];
    memcpy(msg, tracer->writer_error, sizeof msg);
    tracer->failed_unreported = 0;
    pthread_mutex_unlock(&tracer->lock);
    if (failed != 0) {
        rc = deja__error_set(DEJA_EIO, "tracer: %llu traces lost to store errors: %s",
                             (unsigned long long)failed, msg);
        goto cleanup;
    }
    rc = deja__store_sync(tracer->store);
cleanup:
    return rc;
}

/* Flush, stop and join the writer, sync and close the store, free the
 * tracer. Accepts NULL. */
void deja_tracer_close(deja_tracer *tracer)
{
    if (tracer == NULL)
        return;
    if (tracer->writer_started) {
        pthread_mutex_lock(&tracer->lock);
        tracer->stop = 1;
        pthread_cond_signal(&tracer->not_empty);
        pthread_mutex_unlock(&tracer->lock);
        pthread_join(tracer->writer, NULL);
        tracer->writer_started = 0;
    }
    deja__store_sync(tracer->store);
    tracer_free(tracer);
}

/* Copy the tracer's counters into `out`. */
void deja_tracer_stats_get(deja_tracer *tracer, deja_tracer_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    if (tracer == NULL)
        return;
    /* Written before enqueued, so that written never exceeds ended. */
    out->written = atomic_load(&tracer->written);
    out->redacted = atomic_load(&tracer->redacted);
    out->failed = atomic_load(&tracer->failed);
    pthread_mutex_lock(&tracer->lock);
    const uint64_t enqueued = tracer->enqueued_seq;
    pthread_mutex_unlock(&tracer->lock);
    out->dropped = atomic_load(&tracer->dropped);
    out->sampled_out = atomic_load(&tracer->sampled_out);
    /* Every ended span was enqueued, dropped or sampled out. */
    out->ended = enqueued + out->dropped + out->sampled_out;
}

/* The ids of the traces lost to a store error since the tracer opened;
 * see deja.h. */
size_t deja_tracer_failed_ids(deja_tracer *tracer, deja_id *out, size_t cap)
{
    size_t n;

    pthread_mutex_lock(&tracer->lock);
    n = tracer->nfailed_ids;
    for (size_t i = 0; i < n && i < cap; i++)
        out[i] = tracer->failed_ids[i];
    pthread_mutex_unlock(&tracer->lock);
    return n;
}
