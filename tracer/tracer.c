/*
 * tracer/tracer.c -- the tracer's lifecycle and its bounded queue.
 *
 * Recording threads hand ended spans to the writer without a lock: a
 * compare-and-swap reserves a place (count and bytes, see `held`), a
 * fetch-add gives the position, a release store publishes the span; the
 * writer thread (writer.c) pops them in position order. The writer is woken
 * only when the queue reaches `wake_at` spans, when a flush asks for it, or
 * when the queue is full: otherwise it wakes on its own every
 * flush_interval_ms, so that ending a span costs no syscall.
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
    else if (in != NULL && in->version == 3) /* version 3 ended before queue_bytes */
        memcpy(out, in, offsetof(deja_tracer_options, queue_bytes));
    else if (in != NULL && in->version == 4) /* version 4 ended before checkpoints */
        memcpy(out, in, offsetof(deja_tracer_options, checkpoints));
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
    if (out->queue_bytes == 0 || out->queue_bytes > DEJA__HELD_BYTES_MAX)
        return deja__error_set(DEJA_EINVAL, "tracer options: queue_bytes must be 1..%llu",
                               (unsigned long long)DEJA__HELD_BYTES_MAX);
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
    for (deja_span *s; (s = deja__mpmc_pop(&t->pool)) != NULL;)
        deja__span_destroy(s);
    deja__mpmc_free(&t->pool);
    for (size_t i = 0; t->ring != NULL && i <= t->ring_mask; i++)
        deja__span_destroy(atomic_load(&t->ring[i]));
    free(t->ring);
    deja_env_free(t->env_owned);
    deja_store_close(t->store);
    deja__sampler_free(atomic_load(&t->sampler));
    deja__lost_free(t);
    deja_env_free(t->env_own);
    free(t->failed_ids);
    free(t->ckpt_select);
    pthread_cond_destroy(&t->done);
    pthread_cond_destroy(&t->not_full);
    pthread_cond_destroy(&t->not_empty);
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
    pthread_cond_init(&t->not_empty, &ca);
    pthread_cond_init(&t->not_full, &ca);
    pthread_cond_init(&t->done, &ca);
    t->ring_cap = t->opts.queue_capacity;
    t->bytes_max = t->opts.queue_bytes;
    t->ring_mask = 1;
    while (t->ring_mask + 1 < t->ring_cap)
        t->ring_mask = t->ring_mask * 2 + 1;
    t->ring = calloc(t->ring_mask + 1, sizeof *t->ring);
    if (t->ring == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "tracer open: out of memory for a queue of %zu",
                             t->ring_cap);
        goto cleanup;
    }
    for (size_t i = 0; i <= t->ring_mask; i++)
        atomic_init(&t->ring[i], NULL);
    t->wake_at = t->opts.batch_max < DEJA__WAKE_AT ? t->opts.batch_max : DEJA__WAKE_AT;
    if (t->wake_at > t->ring_cap / 2)
        t->wake_at = t->ring_cap / 2;
    if (t->wake_at == 0)
        t->wake_at = 1;
    /* Big spans fill the byte bound before wake_at of them are queued:
     * the writer is woken by bytes too, else recorders would wait for its
     * interval (tensors of ~250 KB: 500 traces/s instead of 4,600). */
    t->wake_bytes = t->bytes_max / 4 != 0 ? t->bytes_max / 4 : 1;
    size_t pool_max = t->ring_cap + 2 * (size_t)t->opts.batch_max;
    if (pool_max > DEJA__SPAN_POOL_MAX)
        pool_max = DEJA__SPAN_POOL_MAX;
    if ((rc = deja__mpmc_init(&t->pool, pool_max)) != 0)
        goto cleanup;
    if (t->opts.env_vars == NULL) {
        t->env = deja_env_current(&t->env_digest);
    } else {
        if ((rc = deja__env_capture_with(t->opts.env_vars, &t->env_own, &t->env_digest)) != 0)
            goto cleanup;
        t->env = t->env_own;
    }
    t->opts.env_vars = NULL; /* the caller's string is not kept */
    if ((rc = deja__tracer_checkpoints_init(t)) != 0)
        goto cleanup;
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

/* Reserve a place for one span of `bytes` bytes in `held`: refused when
 * the queue holds ring_cap spans, or when the bytes would pass bytes_max
 * while other spans are held (a span alone may pass it, or it could never
 * be recorded). Stores the queue's length with the span in `*count`, and
 * the bytes held with it in `*after`. Returns 0 or -1 (full). */
static int reserve(deja_tracer *t, uint64_t bytes, uint64_t *count, uint64_t *after)
{
    /* Sequentially consistent (a plain load on x86): a blocked recorder
     * that announced itself must see every release made before the
     * writer looked for it. */
    uint64_t h = atomic_load(&t->held);
    for (;;) {
        const uint64_t n = h >> DEJA__HELD_BYTES_BITS;
        const uint64_t b = h & DEJA__HELD_BYTES_MAX;
        if (n >= t->ring_cap || bytes > DEJA__HELD_BYTES_MAX - b ||
            (b != 0 && (b >= t->bytes_max || bytes > t->bytes_max - b)))
            return -1;
        if (atomic_compare_exchange_weak_explicit(&t->held, &h, h + DEJA__HELD_COUNT(1) + bytes,
                                                  memory_order_seq_cst, memory_order_relaxed)) {
            *count = n + 1;
            *after = b + bytes;
            return 0;
        }
    }
}

/* Wake the writer if it sleeps. The first recorder to see it asleep
 * clears the flag, so that one signal is sent, not one per recorder. */
static void wake_writer(deja_tracer *t)
{
    if (atomic_load(&t->writer_sleeping) && atomic_exchange(&t->writer_sleeping, 0)) {
        pthread_mutex_lock(&t->lock);
        pthread_cond_signal(&t->not_empty);
        pthread_mutex_unlock(&t->lock);
    }
}

/* The queue is full: under DEJA_QUEUE_BLOCK wait until a place is
 * reserved (0), under DEJA_QUEUE_DROP return -1. */
static int reserve_slow(deja_tracer *t, uint64_t bytes, uint64_t *count, uint64_t *after)
{
    if (t->opts.queue_full != DEJA_QUEUE_BLOCK) {
        wake_writer(t);
        return -1;
    }
    pthread_mutex_lock(&t->lock);
    atomic_fetch_add(&t->blocked, 1);
    while (reserve(t, bytes, count, after) != 0) {
        if (atomic_load(&t->writer_sleeping))
            pthread_cond_signal(&t->not_empty);
        pthread_cond_wait(&t->not_full, &t->lock);
    }
    atomic_fetch_sub(&t->blocked, 1);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* Push an ended span (tracer.c's half of deja_span_end): reserve, take a
 * position, publish. No lock unless the queue is full or the writer must
 * be woken. Under DEJA_QUEUE_BLOCK a full queue (in count or bytes) waits
 * for room; under DEJA_QUEUE_DROP it drops the span, counts it and returns
 * DEJA_EFULL. */
int deja__tracer_enqueue(deja_tracer *t, deja_span *span, size_t *backlog)
{
    int rc = 0;
    uint64_t count = 0, after = 0;
    if (span->bytes > DEJA__HELD_BYTES_MAX)
        span->bytes = DEJA__HELD_BYTES_MAX;
    if (reserve(t, span->bytes, &count, &after) != 0 &&
        reserve_slow(t, span->bytes, &count, &after) != 0) {
        const uint64_t h = atomic_load(&t->held);
        atomic_fetch_add_explicit(&t->dropped, 1, memory_order_relaxed);
        deja__lost_count(t, span->model_name, span->model_version, DEJA__LOST_DROPPED);
        *backlog = t->ring_cap;
        deja__span_recycle(span);
        rc = deja__error_set(DEJA_EFULL,
                             "tracer: queue full (%llu traces, %llu bytes), trace dropped",
                             (unsigned long long)(h >> DEJA__HELD_BYTES_BITS),
                             (unsigned long long)(h & DEJA__HELD_BYTES_MAX));
        goto cleanup;
    }
    const uint64_t pos = atomic_fetch_add_explicit(&t->tail, 1, memory_order_relaxed);
    atomic_store_explicit(&t->ring[pos & t->ring_mask], span, memory_order_release);
    *backlog = (size_t)count;
    if (count >= t->wake_at || after >= t->wake_bytes)
        wake_writer(t);
cleanup:
    return rc;
}

/* Take the next published span in position order, or NULL. The writer
 * only; the place it held in the count is given back by
 * deja__tracer_release, after the cell is cleared. */
deja_span *deja__tracer_pop(deja_tracer *t)
{
    _Atomic(deja_span *) *cell = &t->ring[t->ring_head & t->ring_mask];
    deja_span *s = atomic_load_explicit(cell, memory_order_acquire);
    if (s == NULL)
        return NULL;
    atomic_store_explicit(cell, NULL, memory_order_relaxed);
    t->ring_head++;
    return s;
}

/* Give back `count` places and `bytes` bytes; wake blocked recorders. */
void deja__tracer_release(deja_tracer *t, size_t count, uint64_t bytes)
{
    if (count == 0 && bytes == 0)
        return;
    atomic_fetch_sub(&t->held, DEJA__HELD_COUNT(count) + bytes);
    if (atomic_load(&t->blocked) != 0) {
        pthread_mutex_lock(&t->lock);
        pthread_cond_broadcast(&t->not_full);
        pthread_mutex_unlock(&t->lock);
    }
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
    const uint64_t target = atomic_load(&tracer->tail);
    if (tracer->flush_target < target)
        tracer->flush_target = target;
    if (atomic_load(&tracer->writer_sleeping))
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
    const uint64_t enqueued = atomic_load(&tracer->tail);
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
