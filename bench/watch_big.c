/*
 * bench/watch_big.c -- watching the 1,000,000-trace store of ls_big.c:
 * `deja stats --by version` and `deja drift` (first half of the traffic
 * against the second) as subprocesses, wall time and peak RSS each; and
 * the tracer's recording cost with a rules file of 5 rules against none
 * (runs alternated, each a fresh store).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench.h"

/* The five rules, all passing on the small workload (the work is the
 * checking, not the tagging). */
static const char rules_text[] = "prompt: input.prompt nonempty\n"
                                 "prompt_size: input.prompt length 1..8192\n"
                                 "answer: output.completion nonempty\n"
                                 "answer_size: output.completion length 1..8192\n"
                                 "answer_text: output.completion matches [a-z]\n";

/* Time `argv` through the measuring helper `runs` times after a warm-up;
 * figures `id` (ms) and `id`_rss (MB). */
static void time_cmd(bench_report *rep, const bench_config *c, char **argv, const char *id,
                     const char *what, size_t runs)
{
    bench_figure *ft = bench_report_add(rep, id, "small", 0, "ms", 0);
    char rss_id[64], cpu_id[64], errfile[4096];
    bench_figure *fm, *fc;

    snprintf(rss_id, sizeof rss_id, "%s_rss", id);
    snprintf(cpu_id, sizeof cpu_id, "%s_cpu", id);
    fm = bench_report_add(rep, rss_id, "small", 0, "MB", 0);
    fc = bench_report_add(rep, cpu_id, "small", 0, "ms", 0);
    if (ft == NULL || fm == NULL || fc == NULL)
        return;
    snprintf(fc->spread, sizeof fc->spread, "%zu runs", runs);
    snprintf(fc->note, sizeof fc->note,
             "user + system CPU of the deja process (wall time on an idle 2-core machine is "
             "about half of it)");
    snprintf(errfile, sizeof errfile, "%s/watch.stderr", c->workdir);
    snprintf(ft->spread, sizeof ft->spread, "%zu runs, warm page cache", runs);
    snprintf(fm->spread, sizeof fm->spread, "%zu runs", runs);
    snprintf(ft->note, sizeof ft->note, "%s over %zu traces, fork to exit", what, c->big_n);
    snprintf(fm->note, sizeof fm->note, "ru_maxrss of the deja process");
    if (c->big_n >= 1000000) {
        bench_figure_target(ft, 1, SYS_DEJA, 5000, "<= 5 s");
        bench_figure_target(fm, 1, SYS_DEJA, 128, "<= 128 MB");
    }
    for (size_t i = 0; i <= runs; i++) {
        bench_exec_run r;

        bench_exec_measured(argv, errfile, &r);
        /* drift exits 1 when something drifted: still a measurement. */
        if (!r.ok && r.code != 1) {
            bench_report_note(rep, "%s: %s", id, r.err);
            return;
        }
        if (i == 0)
            continue;
        ft->v[SYS_DEJA][ft->n[SYS_DEJA]++] = r.ms;
        fm->v[SYS_DEJA][fm->n[SYS_DEJA]++] = (double)r.rss_kb / 1024.0;
        fc->v[SYS_DEJA][fc->n[SYS_DEJA]++] = r.cpu_ms;
    }
}

/* CPU time of the whole process (every thread: the writer is where the
 * rules run), in seconds. */
static double process_cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Record `n` traces of the small workload into a new store under `dir`,
 * with `rules` checked at record time (NULL: none); traces/s to flush, and
 * the process's CPU per trace in µs (every thread) in `*cpu_us`. */
static double record_rate(const bench_workload *w, const char *dir, size_t n,
                          const deja_rules *rules, double *cpu_us)
{
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    bench_thread t;
    deja_tracer *tr = NULL;
    char path[4200];
    double t0, c0, rate = -1;
    size_t i;

    bench_rmrf(dir);
    bench_mkdirs(dir);
    snprintf(path, sizeof path, "%s/deja.store", dir);
    if (rules != NULL) {
        o.check = deja_rules_tracer_check;
        o.check_payload = (void *)rules;
    }
    if (bench_thread_init(&t, w, 7) != 0)
        return -1;
    if (deja_tracer_open(&tr, path, &o) != 0) {
        bench_thread_free(&t);
        return -1;
    }
    t0 = bench_now();
    c0 = process_cpu_s();
    for (i = 0; i < n; i++) {
        bench_record r;
        const bench_record *src = &w->recs[i % w->nrecs];
        deja_span *sp = NULL;

        bench_record_stamp(&r, src, t.stamp, i);
        if (deja_span_begin(&sp, tr, r.model, r.version) != 0)
            break;
        deja_span_add_text(sp, DEJA_INPUT, r.in[0].name, r.in[0].data, r.in[0].size);
        for (size_t k = 0; k < r.nparams; k++)
            deja_span_param_num(sp, r.params[k].key, r.params[k].num);
        deja_span_tag(sp, r.tags[0].key, r.tags[0].value);
        deja_span_add_text(sp, DEJA_OUTPUT, r.out[0].name, r.out[0].data, r.out[0].size);
        if (deja_span_end(sp, DEJA_STATUS_OK, NULL) != 0)
            break;
    }
    if (i == n && deja_tracer_flush(tr) == 0) {
        rate = (double)n / (bench_now() - t0);
        *cpu_us = (process_cpu_s() - c0) * 1e6 / (double)n;
    }
    deja_tracer_close(tr);
    bench_thread_free(&t);
    bench_rmrf(dir);
    return rate;
}

/* Time `stats --by version` and `drift` (first half of the traffic
 * against the second) over the big store at `store`. */
static void time_scans(bench_report *rep, const bench_config *c, const char *store,
                       int64_t oldest, int64_t newest, size_t runs)
{
    char *deja = (char *)c->deja_bin, *path = (char *)store;
    char *stats[] = {deja, "--store", path, "stats", "--by", "version", NULL};
    char base[128], cur[128], iso[40];
    char *drift[] = {deja, "--store", path, "drift", "--baseline", base, "--current", cur, NULL};
    const time_t mid = (time_t)((oldest / 2 + newest / 2) / 1000000000LL);
    struct tm tm;

    time_cmd(rep, c, stats, "stats_by_version", "deja stats --by version", runs);
    /* The first half of the traffic against the second, as RFC 3339. */
    gmtime_r(&mid, &tm);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(base, sizeof base, "until=%s", iso);
    snprintf(cur, sizeof cur, "since=%s", iso);
    time_cmd(rep, c, drift, "drift_halves",
             "deja drift (first half vs second half, sample 10000 each)", runs);
}

int bench_watch_big(bench_report *rep, const bench_config *c)
{
    char store[4400], dir[4200];
    int have_big = 1;
    deja_store *st = NULL;
    int64_t oldest = 0, newest = 0;
    const size_t runs = c->quick ? 2 : 3;
    bench_workload w;
    deja_rules *rules = NULL;
    bench_figure *fn, *fr, *fc, *fcpu;

    bench_big_store_dir(c, dir, sizeof dir);
    snprintf(store, sizeof store, "%s/deja.store", dir);
    if (deja_store_open(&st, store, DEJA_STORE_READONLY) != 0 ||
        deja_store_time_range(st, &oldest, &newest) != 0) {
        /* The recording figures below need no store: go on to them. */
        bench_report_note(rep, "watch: no store at %s (the ls pass builds it)", store);
        have_big = 0;
    }
    deja_store_close(st);
    if (have_big) {
        time_scans(rep, c, store, oldest, newest, runs);
    }
    /* Recording with 5 rules vs none. */
    if (bench_workload_small(&w, 4096, 0x5eed0002) != 0 ||
        deja_rules_parse(&rules, rules_text, strlen(rules_text), "bench") != 0) {
        bench_report_note(rep, "watch: cannot set up the recording runs");
        return -1;
    }
    fn = bench_report_add(rep, "record_no_rules", "small", 1, "traces/s", 1);
    fr = bench_report_add(rep, "record_5_rules", "small", 1, "traces/s", 1);
    fc = bench_report_add(rep, "record_rules_cost", "small", 1, "%", 0);
    fcpu = bench_report_add(rep, "record_rules_cpu_cost", "small", 1, "%", 0);
    snprintf(dir, sizeof dir, "%s/watch-record", c->workdir);
    for (size_t i = 0; fn && fr && fc && fcpu && i < runs; i++) {
        const size_t n = c->quick ? 20000 : 200000;
        double a, b, ca = 0, cb = 0;

        /* Alternate which goes first, so that a load that changes during
         * the pair does not always favour the same side. */
        if (i % 2 == 0) {
            a = record_rate(&w, dir, n, NULL, &ca);
            b = record_rate(&w, dir, n, rules, &cb);
        } else {
            b = record_rate(&w, dir, n, rules, &cb);
            a = record_rate(&w, dir, n, NULL, &ca);
        }
        if (a <= 0 || b <= 0) {
            bench_report_note(rep, "watch: a recording run failed: %s", deja_error_last());
            break;
        }
        fn->v[SYS_DEJA][fn->n[SYS_DEJA]++] = a;
        fr->v[SYS_DEJA][fr->n[SYS_DEJA]++] = b;
        fc->v[SYS_DEJA][fc->n[SYS_DEJA]++] = 100.0 * (a - b) / a;
        fcpu->v[SYS_DEJA][fcpu->n[SYS_DEJA]++] = 100.0 * (cb - ca) / ca;
    }
    if (fn && fr && fc && fcpu) {
        snprintf(fn->spread, sizeof fn->spread, "%zu runs", runs);
        snprintf(fr->spread, sizeof fr->spread, "%zu runs", runs);
        snprintf(fc->spread, sizeof fc->spread, "%zu paired runs", runs);
        snprintf(fc->note, sizeof fc->note,
                 "throughput lost to 5 record-time rules (checked on the writer thread)");
        bench_figure_target(fc, 1, SYS_DEJA, 10, "<= 10 %");
        snprintf(fcpu->spread, sizeof fcpu->spread, "%zu paired runs", runs);
        snprintf(fcpu->note, sizeof fcpu->note,
                 "CPU per trace (every thread) added by 5 record-time rules; steadier than "
                 "throughput on a loaded machine");
        bench_figure_target(fcpu, 1, SYS_DEJA, 10, "<= 10 %");
    }
    deja_rules_free(rules);
    bench_workload_free(&w);
    return 0;
}
