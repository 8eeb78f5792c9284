/*
 * bench/burst.c -- a burst of big tensors through deja's tracer: 1 GB of
 * 8 MB tensors recorded back to back from one thread, with the default
 * options (the queue bounded at 12 MB), in a child process. A sampler
 * thread reads the child's RssAnon every millisecond; the figure is its
 * peak above the child's baseline (taken with the tensor already in
 * memory and the tracer open), against the queue's byte bound.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define BURST_TENSOR ((size_t)8 << 20)

typedef struct burst_result {
    int ok;
    long base_kb, peak_kb;
    double wall;
    uint64_t written, dropped;
    size_t spans;
    char msg[200];
} burst_result;

typedef struct sampler {
    atomic_int stop;
    atomic_long peak_kb;
} sampler;

/* Sample RssAnon every millisecond until told to stop. */
static void *sample_main(void *arg)
{
    sampler *s = arg;
    const struct timespec ms = {0, 1000000};
    while (!atomic_load(&s->stop)) {
        const long kb = bench_status_kb("RssAnon");
        if (kb > atomic_load(&s->peak_kb)) {
            atomic_store(&s->peak_kb, kb);
        }
        nanosleep(&ms, NULL);
    }
    return NULL;
}

/* The child: record `total` bytes of tensors into a store under `dir`. */
static void burst_child(const char *dir, size_t total, burst_result *res)
{
    char path[1300];
    deja_tracer *t = NULL;
    sampler sm;
    pthread_t th;
    int sampling = 0;
    float *data = malloc(BURST_TENSOR);
    const uint64_t shape[1] = {BURST_TENSOR / sizeof(float)};
    snprintf(path, sizeof(path), "%s/deja.store", dir);
    if (data == NULL) {
        snprintf(res->msg, sizeof(res->msg), "out of memory");
        return;
    }
    /* Mostly zeros: compression is cheap, the store stays small on disk,
     * and the stamp makes each tensor a distinct blob. */
    memset(data, 0, BURST_TENSOR);
    if (deja_tracer_open(&t, path, NULL) != 0) {
        snprintf(res->msg, sizeof(res->msg), "tracer open: %s", deja_error_last());
        free(data);
        return;
    }
    res->base_kb = bench_status_kb("RssAnon");
    atomic_init(&sm.stop, 0);
    atomic_init(&sm.peak_kb, res->base_kb);
    sampling = pthread_create(&th, NULL, sample_main, &sm) == 0;
    const double t0 = bench_now();
    res->ok = 1;
    for (size_t done = 0; done < total; done += BURST_TENSOR) {
        deja_span *sp = NULL;
        deja_tensor tensor = {"image", DEJA_F32, 1, shape, data, BURST_TENSOR};
        const uint64_t seq = res->spans++;
        memcpy(data, &seq, sizeof(seq));
        if (deja_span_begin(&sp, t, "burst", "1") != 0 ||
            deja_span_add(sp, DEJA_INPUT, &tensor) != 0 ||
            deja_span_end(sp, DEJA_STATUS_OK, NULL) != 0) {
            snprintf(res->msg, sizeof(res->msg), "recording: %s", deja_error_last());
            res->ok = 0;
            break;
        }
    }
    if (deja_tracer_flush(t) != 0) {
        res->ok = 0;
    }
    res->wall = bench_now() - t0;
    if (sampling) {
        atomic_store(&sm.stop, 1);
        pthread_join(th, NULL);
    }
    res->peak_kb = atomic_load(&sm.peak_kb);
    deja_tracer_stats st;
    deja_tracer_stats_get(t, &st);
    res->written = st.written;
    res->dropped = st.dropped;
    deja_tracer_close(t);
    free(data);
}

/* See bench.h. */
int bench_burst(bench_report *rep, const bench_config *c)
{
    const size_t total = (c->quick ? (size_t)256 : (size_t)1024) << 20;
    bench_figure *f = bench_report_add(rep, "burst_heap", "tensor", 1, "MB", 0);
    burst_result res;
    char dir[1200];
    int fd[2], status = 0;
    long maxrss = 0;
    if (f == NULL) {
        return -1;
    }
    snprintf(f->spread, sizeof(f->spread), "1 run of %zu MB%s", total >> 20,
             c->quick ? " (quick)" : "");
    const deja_tracer_options dflt = DEJA_TRACER_OPTIONS_INIT;
    const size_t bound_mb = dflt.queue_bytes >> 20;
    char target[64];
    snprintf(f->note, sizeof(f->note),
             "peak RssAnon above the baseline while recording %zu MB of 8 MB tensors back to "
             "back (default options: queue bound %zu MB), sampled every ms",
             total >> 20, bound_mb);
    snprintf(target, sizeof(target), "<= %zu MB bound + 1 tensor", bound_mb);
    bench_figure_target(f, 1, SYS_DEJA, (double)(bound_mb + (BURST_TENSOR >> 20)), target);
    snprintf(dir, sizeof(dir), "%s/burst", c->workdir);
    if (bench_rmrf(dir) != 0 || bench_mkdirs(dir) != 0) {
        return -1;
    }
    memset(&res, 0, sizeof(res));
    const pid_t pid = bench_child_fork(fd);
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        burst_result r;
        memset(&r, 0, sizeof(r));
        burst_child(dir, total, &r);
        _exit(write(fd[1], &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 3);
    }
    if (bench_child_collect(pid, fd[0], &res, sizeof(res), &maxrss, &status) != 0 || !res.ok) {
        bench_report_note(rep, "burst: failed (%s, status %d)", res.msg, status);
        bench_rmrf(dir);
        return -1;
    }
    bench_rmrf(dir);
    f->v[SYS_DEJA][f->n[SYS_DEJA]++] = (double)(res.peak_kb - res.base_kb) / 1024.0;
    fprintf(stderr,
            "deja-bench:   burst: %zu tensors of 8 MB in %.2f s, %llu written, %llu dropped, "
            "heap +%.0f MB at peak\n",
            res.spans, res.wall, (unsigned long long)res.written,
            (unsigned long long)res.dropped, (double)(res.peak_kb - res.base_kb) / 1024.0);
    return 0;
}
