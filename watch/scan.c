/*
 * watch/scan.c -- a selection streamed on several threads: the time range
 * of the selection is cut into windows, and each thread lists the windows
 * it takes (deja_store_list with narrowed since/until) into a state of its
 * own, which the caller merges. Windows are disjoint ranges of ids (the
 * millisecond an id starts with), so each matching trace is seen exactly
 * once, and no thread decodes a trace another one lists. Only each
 * trace's summary is read (deja__store_peek_between: from the summary its
 * value carries, no record decompressed; nothing is allocated per trace):
 * what health and drift's first pass need.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "watch/watch_internal.h"

/* Windows per thread: enough to even out bursts of traffic. */
#define WINDOWS_PER_THREAD 8
/* Pages of the map are given back after this many traces per thread
 * (about 8 MB of pages for small traces of ~1 KB: a peak RSS of ~60 MB on
 * the bench's store; every 4,096 cost a third more system time). */
#define TRIM_EVERY 8192

typedef struct scan_job {
    deja_store *store;
    deja_filter base;
    int64_t lo, width; /* window w: ids of ms [lo + w*width, lo + (w+1)*width) */
    size_t nwindows;
    _Atomic size_t next;
    deja__scan_cb cb;
    _Atomic int stop;
    _Atomic uint64_t bad;
} scan_job;

typedef struct scan_thread {
    scan_job *job;
    void *state;
    pthread_t tid;
    int started;
    int rc;
    uint64_t seen;
} scan_thread;

/* deja__store_peek_between callback: hand the summary to the caller's. */
static int on_trace(const deja__trace_summary *t, void *payload)
{
    scan_thread *th = payload;

    if (++th->seen % TRIM_EVERY == 0)
        deja__store_trim(th->job->store);
    if (th->job->cb(t, th->state) != 0) {
        th->job->stop = 1;
        return 1;
    }
    return th->job->stop;
}

/* deja_store_list callback: count an unreadable record, go on. */
static int on_bad(const deja_id *id, int code, const char *message, void *payload)
{
    scan_thread *th = payload;

    (void)id;
    (void)code;
    (void)message;
    atomic_fetch_add(&th->job->bad, 1);
    return 0;
}

/* The id made of `ms` then ten `fill` bytes. */
static void id_at(deja_id *id, int64_t ms, uint8_t fill)
{
    if (ms < 0)
        ms = 0;
    for (int i = 0; i < 6; i++)
        id->bytes[i] = (uint8_t)((uint64_t)ms >> (8 * (5 - i)));
    memset(id->bytes + 6, fill, 10);
}

/* A thread: list windows until none is left. */
static void *scan_main(void *arg)
{
    scan_thread *th = arg;
    scan_job *job = th->job;
    size_t w;

    while (!job->stop && (w = atomic_fetch_add(&job->next, 1)) < job->nwindows) {
        deja_id lo, hi;

        id_at(&lo, job->lo + (int64_t)w * job->width, 0x00);
        id_at(&hi, job->lo + (int64_t)(w + 1) * job->width - 1, 0xFF);
        th->rc = deja__store_peek_between(job->store, &job->base, w > 0 ? &lo : NULL,
                                          w + 1 < job->nwindows ? &hi : NULL, on_trace, on_bad,
                                          th);
        if (th->rc != 0) {
            job->stop = 1;
            break;
        }
    }
    return NULL;
}

size_t deja__watch_threads(void)
{
    const char *env = getenv("DEJA_WATCH_THREADS");
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (env != NULL && env[0] >= '1' && env[0] <= '4' && env[1] == '\0')
        n = env[0] - '0';
    return n < 1 ? 1 : n > 4 ? 4 : (size_t)n;
}

int deja__watch_scan(deja_store *store, const deja_filter *filter, void **states, size_t nstates,
                     deja__scan_cb cb, uint64_t *bad)
{
    static const deja_filter none = DEJA_FILTER_INIT;
    scan_job job;
    scan_thread *th = NULL;
    int64_t oldest, newest, lo, hi;
    int rc;

    memset(&job, 0, sizeof job);
    job.store = store;
    job.base = filter ? *filter : none;
    job.base.limit = 0;
    job.cb = cb;
    rc = deja_store_time_range(store, &oldest, &newest);
    if (rc != 0)
        return rc;
    /* In milliseconds of ids; start times may differ from their id's
     * millisecond a little (the store's listing allows a second). */
    lo = oldest / 1000000;
    hi = newest / 1000000;
    if (job.base.since_ns > 0 && job.base.since_ns / 1000000 - 1000 > lo)
        lo = job.base.since_ns / 1000000 - 1000;
    if (job.base.until_ns > 0 && job.base.until_ns / 1000000 + 1000 < hi)
        hi = job.base.until_ns / 1000000 + 1000;
    job.nwindows = nstates * WINDOWS_PER_THREAD;
    if (nstates <= 1 || hi <= lo || (uint64_t)(hi - lo) < job.nwindows)
        job.nwindows = 1;
    job.lo = lo;
    job.width = job.nwindows > 1 ? (hi - lo) / (int64_t)job.nwindows + 1 : 1;
    th = calloc(nstates ? nstates : 1, sizeof *th);
    if (th == NULL)
        return deja__error_set(DEJA_ENOMEM, "scan: out of memory");
    for (size_t i = 0; i < nstates; i++) {
        th[i].job = &job;
        th[i].state = states[i];
    }
    /* The calling thread is thread 0. */
    for (size_t i = 1; i < nstates && job.nwindows > 1; i++)
        th[i].started = pthread_create(&th[i].tid, NULL, scan_main, &th[i]) == 0;
    scan_main(&th[0]);
    for (size_t i = 1; i < nstates; i++)
        if (th[i].started)
            pthread_join(th[i].tid, NULL);
    rc = 0;
    for (size_t i = 0; i < nstates && rc == 0; i++)
        rc = th[i].rc;
    if (bad != NULL)
        *bad = atomic_load(&job.bad);
    free(th);
    return rc;
}
