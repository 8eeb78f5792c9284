/*
 * bench/measure.c -- the passes every workload goes through, each run on
 * all four systems in the same process run and on the same records:
 *
 *   hot path   the cost of one recorded inference on the calling thread,
 *              span begin to end (deja: copy and enqueue into the default
 *              queue, the writer running on the other core; baselines:
 *              serialize and append inline), median and p99 per burst, the
 *              CPU per span of the calling thread and of the others, and
 *              the mean per span of a sustained run;
 *   ingest     N recording threads for a fixed time, then a flush; each
 *              system in a forked child so that its peak RSS is its own;
 *   bytes/read a fixed set of distinct records written once; bytes on disk
 *              per trace, then every trace read back on one thread.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* Set up per-thread scratch for recording records of `w`. */
int bench_thread_init(bench_thread *t, const bench_workload *w, uint64_t salt)
{
    memset(t, 0, sizeof(*t));
    t->salt = salt;
    t->stamp = malloc(w->stamp_max ? w->stamp_max : 1);
    if (t->stamp == NULL || bench_buf_reserve(&t->json, 1 << 16) != 0) {
        bench_thread_free(t);
        return -1;
    }
    return 0;
}

/* Free per-thread scratch. Accepts a zeroed thread. */
void bench_thread_free(bench_thread *t)
{
    free(t->stamp);
    bench_buf_free(&t->json);
    bench_buf_free(&t->aux);
    memset(t, 0, sizeof(*t));
}

/* Record pool entry `seq % n` stamped with `seq`. */
static int record_one(const bench_sink_ops *ops, bench_sink *s, bench_thread *t,
                      const bench_workload *w, uint64_t seq)
{
    bench_record r;
    t->pool_index = (size_t)(seq % w->nrecs);
    bench_record_stamp(&r, &w->recs[t->pool_index], t->stamp, seq);
    return ops->record(s, t, &r);
}

/* Whether system `sys` was selected with --systems. */
static int sys_enabled(const bench_config *c, int sys)
{
    return (c->systems >> sys) & 1u;
}

/* The scratch directory of system `sys` for a pass over `w`. */
static void sys_dir(char *out, size_t cap, const bench_config *c, const char *pass,
                    const bench_workload *w, int sys)
{
    snprintf(out, cap, "%s/%s-%s/%s", c->workdir, pass, w->name, bench_sink_get(sys)->name);
}

/* Prepare an empty directory for a system's files. */
static int fresh_dir(const char *dir)
{
    if (bench_rmrf(dir) != 0 || bench_mkdirs(dir) != 0) {
        fprintf(stderr, "deja-bench: cannot prepare %s: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Hot path
 * ---------------------------------------------------------------------- */

/* Time `per` recordings on this thread into `lat` (ns each). */
static int time_spans(const bench_sink_ops *ops, bench_sink *s, bench_thread *t,
                      const bench_workload *w, uint64_t *seq, size_t per, double *lat,
                      double model_ns)
{
    size_t i;
    for (i = 0; i < per; i++) {
        bench_record r;
        uint64_t t0, t1;
        int rc;
        t->pool_index = (size_t)(*seq % w->nrecs);
        bench_record_stamp(&r, &w->recs[t->pool_index], t->stamp, *seq);
        (*seq)++;
        bench_spin_ns(model_ns);
        t0 = bench_ticks();
        rc = ops->record(s, t, &r);
        t1 = bench_ticks();
        if (rc != 0) {
            return -1;
        }
        if (lat != NULL) {
            lat[i] = bench_ticks_to_ns(t1 - t0);
        }
    }
    return 0;
}

/* CPU seconds of the calling thread and of the whole process. */
static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double process_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Spans per timed burst at most: half of deja's default queue (4,096), so
 * that a burst never waits for the writer, whatever its speed (bursts of
 * big records are cut to two thirds of the byte bound as well). */
#define HOT_BURST 2000

/* See bench.h. Bursts of at most HOT_BURST spans into the default queue,
 * each followed by an untimed drain; repeats alternate between the
 * systems, so that the ratio of repeat r pairs measurements taken moments
 * apart. Per burst: median and p99 of the calling thread's time per span,
 * the calling thread's CPU per span, and the CPU the process spent on its
 * other threads (deja's writer and helpers) per span, from the burst's
 * start to the end of its drain. Then the sustained mean: spans back to
 * back for a fixed time, the final flush included, divided by the spans. */
int bench_hot_path(bench_report *rep, const bench_config *c, const bench_workload *w,
                   size_t spans)
{
    bench_sink *sinks[SYS_COUNT] = {0};
    bench_thread th[SYS_COUNT];
    uint64_t seq[SYS_COUNT] = {0};
    char dirs[SYS_COUNT][1024];
    /* Two thirds of the default byte bound (12 MB: 8 MB, what half the
     * 16 MB bound of before gave) too, so that a burst of big records does
     * not wait for the writer either: bursts of the small workload stay
     * at 2,000 spans of 4 KB, as before. */
    const deja_tracer_options dflt = DEJA_TRACER_OPTIONS_INIT;
    const size_t burst_bytes = dflt.queue_bytes / 3 * 2;
    const size_t payload = w->nrecs ? w->raw_bytes / w->nrecs : 0;
    const size_t rec_bytes = payload + 512 > 4096 ? payload + 4096 : 4096; /* a span's 4 KB */
    size_t per = spans < HOT_BURST ? spans : HOT_BURST;
    if (per > burst_bytes / rec_bytes) {
        per = burst_bytes / rec_bytes;
    }
    if (per == 0) {
        per = 1;
    }
    size_t repeats = spans / per;
    if (repeats > BENCH_MAX_SAMPLES) {
        repeats = BENCH_MAX_SAMPLES;
    }
    if (repeats == 0) {
        repeats = 1;
    }
    const size_t sustained_runs = 3;
    const double sustained_s = c->quick ? 0.3 : 3.0;
    double *lat = malloc(per * sizeof(double));
    bench_figure *fmed = bench_report_add(rep, "hot_path_median", w->name, 1, "ns", 0);
    bench_figure *fp99 = bench_report_add(rep, "hot_path_p99", w->name, 1, "ns", 0);
    bench_figure *fcall = bench_report_add(rep, "hot_cpu_caller", w->name, 1, "ns", 0);
    bench_figure *fwrit = bench_report_add(rep, "hot_cpu_writer", w->name, 1, "ns", 0);
    bench_figure *ftot = bench_report_add(rep, "hot_cpu_total", w->name, 1, "ns", 0);
    bench_figure *fmean = bench_report_add(rep, "hot_mean_sustained", w->name, 1, "ns", 0);
    size_t r;
    int sys, rc = -1;
    memset(th, 0, sizeof(th));
    if (lat == NULL || fmed == NULL || fp99 == NULL || fcall == NULL || fwrit == NULL ||
        ftot == NULL || fmean == NULL) {
        goto cleanup;
    }
    snprintf(fmed->spread, sizeof(fmed->spread), "%zu bursts x %zu spans", repeats, per);
    snprintf(fp99->spread, sizeof(fp99->spread), "%zu bursts x %zu spans", repeats, per);
    snprintf(fcall->spread, sizeof(fcall->spread), "%zu bursts x %zu spans", repeats, per);
    snprintf(fwrit->spread, sizeof(fwrit->spread), "%zu bursts x %zu spans", repeats, per);
    snprintf(ftot->spread, sizeof(ftot->spread), "%zu bursts x %zu spans", repeats, per);
    snprintf(ftot->note, sizeof(ftot->note),
             "CPU per trace over every thread, burst + drain: what recording costs in all "
             "(compare systems on this, not on the calling thread)");
    snprintf(fmean->spread, sizeof(fmean->spread), "%zu runs of %.1f s%s", sustained_runs,
             sustained_s, c->quick ? " (quick)" : "");
    snprintf(fmed->note, sizeof(fmed->note),
             "deja: span begin..end, default queue, the writer running; "
             "baselines: serialize + append inline");
    snprintf(fcall->note, sizeof(fcall->note),
             "CPU time of the recording thread per span (its burst only)");
    snprintf(fwrit->note, sizeof(fwrit->note),
             "CPU time of every other thread of the process per span (deja: the writer "
             "and its helpers), burst + drain");
    snprintf(fmean->note, sizeof(fmean->note),
             "wall time per span recording back to back, the final flush included: "
             "the writer's throughput bounds it");
    if (strcmp(w->name, "small") == 0) {
        bench_figure_target(fmed, 1, SYS_DEJA, 300, "<= 300 ns");
        bench_figure_target(fp99, 1, SYS_DEJA, 5000, "<= 5 us");
    }
    for (sys = 0; sys < SYS_COUNT; sys++) {
        const bench_sink_ops *ops = bench_sink_get(sys);
        if (!sys_enabled(c, sys)) {
            continue;
        }
        sys_dir(dirs[sys], sizeof(dirs[sys]), c, "hot", w, sys);
        if (fresh_dir(dirs[sys]) != 0 || bench_thread_init(&th[sys], w, (uint64_t)sys + 1) != 0 ||
            ops->open(&sinks[sys], dirs[sys], w) != 0) {
            bench_report_note(rep, "hot path %s: %s could not open", w->name, ops->name);
            sinks[sys] = NULL;
            continue;
        }
        /* Warm up: allocator, page cache, the store's first pages. */
        if (time_spans(ops, sinks[sys], &th[sys], w, &seq[sys], per, NULL, 0) != 0 ||
            ops->finish(sinks[sys]) != 0) {
            bench_report_note(rep, "hot path %s: %s failed warming up", w->name, ops->name);
        }
    }
    for (r = 0; r < repeats; r++) {
        for (sys = 0; sys < SYS_COUNT; sys++) {
            const bench_sink_ops *ops = bench_sink_get(sys);
            if (sinks[sys] == NULL) {
                continue;
            }
            const double p0 = process_cpu(), c0 = thread_cpu();
            if (time_spans(ops, sinks[sys], &th[sys], w, &seq[sys], per, lat, c->model_ns) !=
                0) {
                bench_report_note(rep, "hot path %s: %s failed recording", w->name, ops->name);
                continue;
            }
            const double c1 = thread_cpu();
            /* Drain, so that the next burst starts alike; the CPU the
             * other threads spend on this burst is counted up to here. */
            if (ops->thread_end != NULL) {
                ops->thread_end(sinks[sys], &th[sys]);
            }
            if (ops->finish(sinks[sys]) != 0) {
                bench_report_note(rep, "hot path %s: %s failed to flush", w->name, ops->name);
            }
            const double p1 = process_cpu(), c2 = thread_cpu();
            fmed->v[sys][fmed->n[sys]++] = bench_quantile(lat, per, 0.50);
            fp99->v[sys][fp99->n[sys]++] = bench_quantile(lat, per, 0.99);
            fcall->v[sys][fcall->n[sys]++] = (c1 - c0) * 1e9 / (double)per;
            const double others = (p1 - p0) - (c2 - c0);
            fwrit->v[sys][fwrit->n[sys]++] = (others > 0 ? others : 0) * 1e9 / (double)per;
            ftot->v[sys][ftot->n[sys]++] = (p1 - p0) * 1e9 / (double)per;
        }
    }
    for (r = 0; r < sustained_runs; r++) {
        for (sys = 0; sys < SYS_COUNT; sys++) {
            const bench_sink_ops *ops = bench_sink_get(sys);
            size_t n = 0;
            if (sinks[sys] == NULL) {
                continue;
            }
            const double t0 = bench_now();
            while (bench_now() - t0 < sustained_s) {
                if (time_spans(ops, sinks[sys], &th[sys], w, &seq[sys], 256, NULL, c->model_ns) !=
                    0) {
                    break;
                }
                n += 256;
            }
            if (ops->thread_end != NULL) {
                ops->thread_end(sinks[sys], &th[sys]);
            }
            if (ops->finish(sinks[sys]) != 0) {
                bench_report_note(rep, "hot path %s: %s failed to flush", w->name, ops->name);
            }
            fmean->v[sys][fmean->n[sys]++] = (bench_now() - t0) * 1e9 / (double)n;
        }
    }
    rc = 0;
cleanup:
    for (sys = 0; sys < SYS_COUNT; sys++) {
        if (sinks[sys] != NULL) {
            const bench_sink_ops *ops = bench_sink_get(sys);
            if (ops->thread_end != NULL) {
                ops->thread_end(sinks[sys], &th[sys]);
            }
            if (sys == SYS_DEJA && ops->lost(sinks[sys]) != 0) {
                bench_report_note(rep, "hot path %s: deja lost %llu traces", w->name,
                                  (unsigned long long)ops->lost(sinks[sys]));
            }
            ops->close(sinks[sys]);
            bench_rmrf(dirs[sys]);
        }
        bench_thread_free(&th[sys]);
    }
    free(lat);
    return rc;
}

/* ------------------------------------------------------------------------
 * Sustained ingest, each system in a child process
 * ---------------------------------------------------------------------- */

typedef struct ingest_result {
    int ok;
    double wall;
    uint64_t committed;
    uint64_t recorded;
    uint64_t lost;
    size_t nwin;
    double win[BENCH_MAX_SAMPLES];
    long rss_start_kb;  /* VmRSS at fork: the bench's image, inherited */
    long anon_start_kb; /* RssAnon at fork */
    long anon_peak_kb;  /* RssAnon sampled at each window and after the flush */
    long rss_peak_kb;   /* VmRSS, sampled likewise */
    long file_peak_kb;  /* RssFile (mapped store pages), sampled likewise */
    double cpu;         /* CPU seconds of the child (every thread) while recording */
    char msg[200];
} ingest_result;

typedef struct ingest_shared {
    const bench_sink_ops *ops;
    bench_sink *sink;
    const bench_workload *w;
    atomic_int stop;
    atomic_int failed;
    int nthreads;
} ingest_shared;

typedef struct ingest_worker {
    ingest_shared *sh;
    int index;
    uint64_t recorded;
    pthread_t tid;
} ingest_worker;

/* A recording thread: record pool entries back to back until told to
 * stop, then close its share of the sink (the raw limit's transaction). */
static void *ingest_thread(void *arg)
{
    ingest_worker *wk = arg;
    ingest_shared *sh = wk->sh;
    bench_thread t;
    uint64_t seq = (uint64_t)wk->index;
    if (bench_thread_init(&t, sh->w, (uint64_t)wk->index + 1) != 0) {
        atomic_store(&sh->failed, 1);
        return NULL;
    }
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        if (record_one(sh->ops, sh->sink, &t, sh->w, seq) != 0) {
            atomic_store(&sh->failed, 1);
            break;
        }
        wk->recorded++;
        seq += (uint64_t)sh->nthreads;
    }
    if (sh->ops->thread_end != NULL && sh->ops->thread_end(sh->sink, &t) != 0) {
        atomic_store(&sh->failed, 1);
    }
    bench_thread_free(&t);
    return NULL;
}

/* Sleep until the monotonic time `t` (seconds). */
static void sleep_until(double t)
{
    double now;
    while ((now = bench_now()) < t) {
        const double d = t - now;
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* Raise the peaks of RssAnon, VmRSS and RssFile of `res` to the current
 * ones. */
static void anon_sample(ingest_result *res)
{
    const long kb = bench_status_kb("RssAnon");
    const long rss = bench_status_kb("VmRSS");
    const long file = bench_status_kb("RssFile");
    if (kb > res->anon_peak_kb) {
        res->anon_peak_kb = kb;
    }
    if (rss > res->rss_peak_kb) {
        res->rss_peak_kb = rss;
    }
    if (file > res->file_peak_kb) {
        res->file_peak_kb = file;
    }
}

/* CPU seconds of the whole process so far (user + system, every thread). */
static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* The child's side: record for `seconds` with `nthreads`, fill `res`. */
static void ingest_child(const bench_sink_ops *ops, const char *dir, const bench_workload *w,
                         int nthreads, double seconds, size_t nwin, ingest_result *res)
{
    ingest_shared sh;
    ingest_worker wk[64];
    double t0, prev_t;
    uint64_t prev_c = 0;
    size_t i;
    int k, started = 0;
    memset(&sh, 0, sizeof(sh));
    res->rss_start_kb = bench_status_kb("VmRSS");
    res->anon_start_kb = bench_status_kb("RssAnon");
    res->anon_peak_kb = res->anon_start_kb;
    res->rss_peak_kb = res->rss_start_kb;
    sh.ops = ops;
    sh.w = w;
    sh.nthreads = nthreads;
    if (ops->open(&sh.sink, dir, w) != 0) {
        snprintf(res->msg, sizeof(res->msg), "open failed");
        return;
    }
    t0 = bench_now();
    prev_t = t0;
    res->cpu = -self_cpu();
    for (k = 0; k < nthreads; k++) {
        wk[k] = (ingest_worker){&sh, k, 0, 0};
        if (pthread_create(&wk[k].tid, NULL, ingest_thread, &wk[k]) != 0) {
            atomic_store(&sh.failed, 1);
            break;
        }
        started++;
    }
    for (i = 0; i < nwin && !atomic_load(&sh.failed); i++) {
        uint64_t cnow;
        double tnow;
        sleep_until(t0 + seconds * (double)(i + 1) / (double)nwin);
        cnow = ops->committed(sh.sink);
        tnow = bench_now();
        res->win[res->nwin++] = (double)(cnow - prev_c) / (tnow - prev_t);
        prev_c = cnow;
        prev_t = tnow;
        anon_sample(res);
    }
    atomic_store(&sh.stop, 1);
    for (k = 0; k < started; k++) {
        pthread_join(wk[k].tid, NULL);
        res->recorded += wk[k].recorded;
    }
    if (ops->finish(sh.sink) != 0) {
        atomic_store(&sh.failed, 1);
    }
    res->wall = bench_now() - t0;
    res->cpu += self_cpu();
    anon_sample(res);
    res->committed = ops->committed(sh.sink);
    res->lost = ops->lost(sh.sink);
    ops->close(sh.sink);
    if (atomic_load(&sh.failed)) {
        snprintf(res->msg, sizeof(res->msg), "recording failed: %s", deja_error_last());
        return;
    }
    res->ok = 1;
}

/* Run `fn`'s ingest in a child; its result comes back through a pipe and
 * its peak RSS through wait4(). Returns 0 or -1. */
static int run_ingest_child(const bench_sink_ops *ops, const char *dir,
                            const bench_workload *w, int nthreads, double seconds,
                            size_t nwin, ingest_result *res, long *maxrss_kb)
{
    int fd[2], got;
    pid_t pid;
    int status = 0;
    memset(res, 0, sizeof(*res));
    pid = bench_child_fork(fd);
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        ingest_result r;
        size_t off = 0;
        memset(&r, 0, sizeof(r));
        ingest_child(ops, dir, w, nthreads, seconds, nwin, &r);
        while (off < sizeof(r)) {
            const ssize_t n = write(fd[1], (const char *)&r + off, sizeof(r) - off);
            if (n <= 0) {
                _exit(3);
            }
            off += (size_t)n;
        }
        _exit(0);
    }
    got = bench_child_collect(pid, fd[0], res, sizeof(*res), maxrss_kb, &status);
    if (got < 0) {
        return -1;
    }
    if (got > 0) {
        memset(res, 0, sizeof(*res));
        snprintf(res->msg, sizeof(res->msg), "child died (status %d)", status);
    }
    return 0;
}

/* See bench.h. */
int bench_ingest(bench_report *rep, const bench_config *c, const bench_workload *w,
                 int threads)
{
    bench_figure *f = bench_report_add(rep, "ingest", w->name, threads, "traces/s", 1);
    bench_figure *fr = bench_report_add(rep, "recording_rss", w->name, threads, "MB", 0);
    bench_figure *fa = bench_report_add(rep, "recording_heap", w->name, threads, "MB", 0);
    bench_figure *fc = bench_report_add(rep, "ingest_cores", w->name, threads, "cores", 0);
    const int small = strcmp(w->name, "small") == 0;
    const int tensor = strcmp(w->name, "tensor") == 0;
    const double seconds = small ? c->ingest_seconds : c->ingest_seconds_big;
    const size_t nwin = 10;
    int sys;
    if (f == NULL || fr == NULL || fa == NULL || fc == NULL) {
        return -1;
    }
    snprintf(f->spread, sizeof(f->spread), "%zu windows of %.2g s%s", nwin,
             seconds / (double)nwin, seconds < 10 ? " (SHORT RUN)" : "");
    snprintf(f->note, sizeof(f->note),
             "headline = committed / wall time including the final flush; %.3g s per system%s",
             seconds, seconds < 10 ? "; runs under 10 s are not measurements of the target" : "");
    snprintf(fr->spread, sizeof(fr->spread), "1 run, sampled per window");
    snprintf(fr->note, sizeof(fr->note),
             "peak VmRSS of the recording child minus its RSS at fork (its own baseline); "
             "includes the store pages it maps (RssFile, in the JSON note)");
    snprintf(fa->spread, sizeof(fa->spread), "1 run, sampled per window");
    snprintf(fa->note, sizeof(fa->note),
             "peak RssAnon (heap: queues, spans, buffers) of the recording child minus at fork");
    snprintf(fc->spread, sizeof(fc->spread), "1 run");
    snprintf(fc->note, sizeof(fc->note),
             "CPU seconds of the recording child (every thread) / wall seconds");
    if (small) {
        bench_figure_target(f, 4, SYS_LMDB, 0.5, ">= 50% of lmdb-raw");
        bench_figure_target(f, 4, SYS_SQLITE, 2.0, ">= 2x sqlite");
    }
    if (threads == 1 && sys_enabled(c, SYS_DEJA)) {
        bench_figure_target(fr, 1, SYS_DEJA, tensor ? 96 : 32, tensor ? "<= 96 MB" : "<= 32 MB");
        bench_figure_target(fa, 1, SYS_DEJA, tensor ? 96 : 32, tensor ? "<= 96 MB" : "<= 32 MB");
    }
    for (sys = 0; sys < SYS_COUNT; sys++) {
        const bench_sink_ops *ops = bench_sink_get(sys);
        ingest_result res;
        long maxrss = 0;
        char dir[1200];
        size_t i;
        if (!sys_enabled(c, sys)) {
            continue;
        }
        snprintf(dir, sizeof(dir), "%s/ingest-%s-%d/%s", c->workdir, w->name, threads,
                 ops->name);
        if (fresh_dir(dir) != 0 ||
            run_ingest_child(ops, dir, w, threads, seconds, nwin, &res, &maxrss) != 0) {
            bench_report_note(rep, "ingest %s x%d: %s could not run", w->name, threads,
                              ops->name);
            continue;
        }
        bench_rmrf(dir);
        if (!res.ok) {
            bench_report_note(rep, "ingest %s x%d: %s: %s", w->name, threads, ops->name,
                              res.msg);
            continue;
        }
        if (res.lost != 0 || res.committed != res.recorded) {
            bench_report_note(rep,
                              "ingest %s x%d: %s recorded %llu, committed %llu, lost %llu",
                              w->name, threads, ops->name, (unsigned long long)res.recorded,
                              (unsigned long long)res.committed,
                              (unsigned long long)res.lost);
        }
        for (i = 0; i < res.nwin && i < BENCH_MAX_SAMPLES; i++) {
            f->v[sys][f->n[sys]++] = res.win[i];
        }
        f->overall[sys] = (double)res.committed / res.wall;
        (void)maxrss; /* ru_maxrss counts the bench image inherited at fork */
        fr->v[sys][fr->n[sys]++] = (double)(res.rss_peak_kb - res.rss_start_kb) / 1024.0;
        fa->v[sys][fa->n[sys]++] = (double)(res.anon_peak_kb - res.anon_start_kb) / 1024.0;
        fc->v[sys][fc->n[sys]++] = res.wall > 0 ? res.cpu / res.wall : NAN;
        if (sys == SYS_DEJA) {
            snprintf(fr->note + strlen(fr->note), sizeof(fr->note) - strlen(fr->note),
                     "; deja RssFile peak %.0f MB", (double)res.file_peak_kb / 1024.0);
        }
        fprintf(stderr,
                "deja-bench:   ingest %-6s x%d %-9s %9.0f traces/s (%llu in %.2f s, "
                "rss +%.0f MB, heap +%.0f MB, file %.0f MB, %.2f cores)\n",
                w->name, threads, ops->name, f->overall[sys],
                (unsigned long long)res.committed, res.wall,
                (double)(res.rss_peak_kb - res.rss_start_kb) / 1024.0,
                (double)(res.anon_peak_kb - res.anon_start_kb) / 1024.0,
                (double)res.file_peak_kb / 1024.0, res.cpu / res.wall);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Bytes on disk and read-back
 * ---------------------------------------------------------------------- */

/* Store figures from deja's own accounting, as a note. */
static void deja_stats_note(bench_figure *f, const char *dir, size_t n)
{
    char path[1200];
    deja_store *st = NULL;
    deja_store_stats s;
    if (snprintf(path, sizeof(path), "%s/deja.store", dir) >= (int)sizeof(path) ||
        deja_store_open(&st, path, DEJA_STORE_READONLY) != 0) {
        return;
    }
    if (deja_store_stats_get(st, &s) == 0 && n > 0) {
        snprintf(f->note, sizeof(f->note),
                 "deja per trace: raw %.0f B, after dedup %.0f B, stored %.0f B; %llu blobs, "
                 "%u dictionaries",
                 (double)s.raw_bytes / (double)n, (double)s.unique_bytes / (double)n,
                 (double)s.stored_bytes / (double)n, (unsigned long long)s.blobs,
                 (unsigned)s.dictionaries);
    }
    deja_store_close(st);
}

/* See bench.h. */
int bench_bytes_and_read(bench_report *rep, const bench_config *c, const bench_workload *w)
{
    bench_figure *fb = bench_report_add(rep, "bytes_per_trace", w->name, 0, "bytes", 0);
    bench_figure *fw = bench_report_add(rep, "write_set", w->name, 1, "traces/s", 1);
    bench_figure *fr = bench_report_add(rep, "read", w->name, 1, "traces/s", 1);
    bench_figure *fc = bench_report_add(rep, "read_cpu", w->name, 1, "traces/s", 1);
    deja_id *ids = calloc(w->nrecs ? w->nrecs : 1, sizeof(*ids));
    char dirs[SYS_COUNT][1024];
    int written[SYS_COUNT] = {0};
    size_t r, i;
    int sys;
    if (fb == NULL || fw == NULL || fr == NULL || fc == NULL || ids == NULL) {
        free(ids);
        return -1;
    }
    snprintf(fb->spread, sizeof(fb->spread), "%zu distinct traces", w->nrecs);
    snprintf(fw->spread, sizeof(fw->spread), "1 run, durable at the end");
    snprintf(fr->spread, sizeof(fr->spread), "%zu repeats", c->read_repeats);
    snprintf(fr->note, sizeof(fr->note),
             "one thread: select + decompress + decode every trace (deja_trace_get by id; "
             "sqlite by id; jsonl.zst stream; lmdb-raw get + copy)");
    snprintf(fc->spread, sizeof(fc->spread), "%zu repeats", c->read_repeats);
    snprintf(fc->note, sizeof(fc->note),
             "the same reads per second of the reading thread's CPU time: one core's rate, "
             "whatever else the machine runs");
    if (strcmp(w->name, "chat") == 0) {
        bench_figure_target(fb, 3, SYS_JSONL, 1.5, "<= 1.5x jsonl.zst");
        bench_figure_target(fb, 3, SYS_SQLITE, 0.1, "<= 1/10 sqlite");
    }
    if (strcmp(w->name, "small") == 0) {
        bench_figure_target(fr, 2, SYS_DEJA, 250000, ">= 250k/s");
        bench_figure_target(fc, 2, SYS_DEJA, 250000, ">= 250k/s");
    }
    for (sys = 0; sys < SYS_COUNT; sys++) {
        const bench_sink_ops *ops = bench_sink_get(sys);
        bench_sink *s = NULL;
        bench_thread t;
        double t0;
        int ok = 1;
        if (!sys_enabled(c, sys)) {
            continue;
        }
        sys_dir(dirs[sys], sizeof(dirs[sys]), c, "set", w, sys);
        if (fresh_dir(dirs[sys]) != 0 || bench_thread_init(&t, w, (uint64_t)sys + 1) != 0) {
            continue;
        }
        t0 = bench_now();
        if (ops->open(&s, dirs[sys], w) != 0) {
            bench_report_note(rep, "set %s: %s could not open", w->name, ops->name);
            bench_thread_free(&t);
            continue;
        }
        for (i = 0; i < w->nrecs && ok; i++) {
            ok = record_one(ops, s, &t, w, i) == 0;
            if (sys == SYS_DEJA) {
                ids[i] = t.last_id;
            }
        }
        if (ops->thread_end != NULL && ops->thread_end(s, &t) != 0) {
            ok = 0;
        }
        ok = ok && ops->finish(s) == 0 && ops->lost(s) == 0;
        ops->close(s);
        bench_thread_free(&t);
        if (!ok) {
            bench_report_note(rep, "set %s: %s failed writing: %s", w->name, ops->name,
                              sys == SYS_DEJA ? deja_error_last() : "");
            continue;
        }
        fw->v[sys][fw->n[sys]++] = (double)w->nrecs / (bench_now() - t0);
        fb->v[sys][fb->n[sys]++] = (double)ops->disk_bytes(dirs[sys]) / (double)w->nrecs;
        written[sys] = 1;
        if (sys == SYS_DEJA) {
            deja_stats_note(fb, dirs[sys], w->nrecs);
        }
    }
    for (r = 0; r < c->read_repeats; r++) {
        for (sys = 0; sys < SYS_COUNT; sys++) {
            double secs = 0, cpu0, cpu;
            int64_t n;
            if (!written[sys]) {
                continue;
            }
            cpu0 = thread_cpu();
            n = bench_sink_get(sys)->read_all(dirs[sys], ids, w->nrecs, &secs);
            cpu = thread_cpu() - cpu0;
            if (n != (int64_t)w->nrecs || secs <= 0) {
                if (r == 0) {
                    bench_report_note(rep, "read %s: %s read %lld of %zu traces", w->name,
                                      bench_sink_get(sys)->name, (long long)n, w->nrecs);
                }
                continue;
            }
            fr->v[sys][fr->n[sys]++] = (double)n / secs;
            if (cpu > 0) {
                fc->v[sys][fc->n[sys]++] = (double)n / cpu;
            }
        }
    }
    for (sys = 0; sys < SYS_COUNT; sys++) {
        if (sys_enabled(c, sys) && !c->keep) {
            bench_rmrf(dirs[sys]);
        }
    }
    free(ids);
    return 0;
}

/* ------------------------------------------------------------------------
 * Ingest at a disk budget
 * ---------------------------------------------------------------------- */

/* Run `seconds` of ingest of `w` into `dir` (reused: a second run finds the
 * store the first one filled). The rate, or -1 when it could not run. */
static double budget_run(const bench_sink_ops *ops, const char *dir, const bench_workload *w,
                         int threads, double seconds)
{
    ingest_result res;
    long maxrss = 0;

    if (run_ingest_child(ops, dir, w, threads, seconds, 10, &res, &maxrss) != 0 || !res.ok)
        return -1;
    return (double)res.committed / res.wall;
}

/* Set a budget of `max` bytes on the deja store in `dir` (created). */
static int budget_set(const char *dir, uint64_t max)
{
    char path[1300];
    deja_store *s = NULL;
    deja_budget b;
    int rc;

    snprintf(path, sizeof(path), "%s/deja.store", dir);
    rc = deja_store_open(&s, path, DEJA_STORE_WRITE);
    if (rc == 0)
        rc = deja_store_budget_get(s, &b);
    if (rc == 0) {
        b.max_bytes = max;
        rc = deja_store_budget_set(s, &b);
    }
    deja_store_close(s);
    return rc;
}

/* See bench.h. */
int bench_budget(bench_report *rep, const bench_config *c, const bench_workload *w)
{
    const uint64_t budget = (c->quick ? 8 : 32) * ((uint64_t)1 << 20);
    const bench_sink_ops *ops = bench_sink_get(SYS_DEJA);
    bench_figure *fn = bench_report_add(rep, "ingest_no_budget", w->name, 2, "traces/s", 1);
    bench_figure *fb = bench_report_add(rep, "ingest_at_budget", w->name, 2, "traces/s", 1);
    double rate[2][3];
    int runs = c->quick ? 1 : 3;

    if (fn == NULL || fb == NULL)
        return -1;
    snprintf(fb->note, sizeof(fb->note),
             "a %llu MiB budget, store full (filled by a first run), eviction in the loop; "
             "target >= 70%% of ingest_no_budget (same store state, 2 threads)",
             (unsigned long long)(budget >> 20));
    for (int k = 0; k < runs; k++) {
        for (int with = 0; with < 2; with++) {
            char dir[1200];

            snprintf(dir, sizeof(dir), "%s/budget-%d-%d", c->workdir, with, k);
            if (fresh_dir(dir) != 0 || (with && budget_set(dir, budget) != 0) ||
                budget_run(ops, dir, w, 2, c->ingest_seconds / 2) < 0 ||
                (rate[with][k] = budget_run(ops, dir, w, 2, c->ingest_seconds)) < 0) {
                bench_report_note(rep, "ingest at a budget: run %d could not run", k);
                return -1;
            }
            bench_rmrf(dir);
            (with ? fb : fn)->v[SYS_DEJA][(with ? fb : fn)->n[SYS_DEJA]++] = rate[with][k];
        }
        fprintf(stderr,
                "deja-bench:   ingest %s x2 at a budget: %.0f traces/s vs %.0f without (%.0f%%)\n",
                w->name, rate[1][k], rate[0][k], 100.0 * rate[1][k] / rate[0][k]);
        bench_report_note(rep,
                          "ingest %s x2 at a %llu MiB budget, run %d: %.0f vs %.0f traces/s "
                          "without = %.0f%% (target >= 70%%)",
                          w->name, (unsigned long long)(budget >> 20), k + 1, rate[1][k],
                          rate[0][k], 100.0 * rate[1][k] / rate[0][k]);
    }
    fb->overall[SYS_DEJA] = fb->v[SYS_DEJA][0];
    fn->overall[SYS_DEJA] = fn->v[SYS_DEJA][0];
    return 0;
}
