/*
 * bench/report.c -- the figures: one table on stdout and the same figures
 * as JSON. Each figure holds, per system, a set of repeats (min, median,
 * max) and a headline value; ratios deja/baseline pair repeat i of deja with
 * repeat i of the baseline, measured moments apart in the same run.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* Add a figure; returns it zeroed (values NAN), or NULL (out of memory). */
bench_figure *bench_report_add(bench_report *r, const char *id, const char *workload,
                               int threads, const char *unit, int higher_better)
{
    bench_figure *f;
    int sys;
    if (r->nfigs == r->cap) {
        bench_figure **p = bench_array_grow(r->figs, &r->cap, 32, sizeof(*p));
        if (p == NULL) {
            return NULL;
        }
        r->figs = p;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    r->figs[r->nfigs++] = f;
    snprintf(f->id, sizeof(f->id), "%s", id);
    snprintf(f->workload, sizeof(f->workload), "%s", workload);
    snprintf(f->unit, sizeof(f->unit), "%s", unit);
    f->threads = threads;
    f->higher_better = higher_better;
    for (sys = 0; sys < SYS_COUNT; sys++) {
        f->overall[sys] = NAN;
    }
    return f;
}

/* Attach a target to the first free slot of `f`. */
void bench_figure_target(bench_figure *f, int kind, int sys, double x, const char *text)
{
    int i;
    for (i = 0; i < 2; i++) {
        if (f->target[i].kind == 0) {
            f->target[i].kind = kind;
            f->target[i].sys = sys;
            f->target[i].x = x;
            snprintf(f->target[i].text, sizeof(f->target[i].text), "%s", text);
            return;
        }
    }
}

/* Keep a note for the report, and say it now on stderr. */
void bench_report_note(bench_report *r, const char *fmt, ...)
{
    va_list ap;
    char line[200];
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "deja-bench: %s\n", line);
    if (r->nnotes < sizeof(r->notes) / sizeof(r->notes[0])) {
        snprintf(r->notes[r->nnotes++], sizeof(r->notes[0]), "%s", line);
    }
}

/* See bench.h. */
double bench_figure_value(const bench_figure *f, int sys)
{
    if (!isnan(f->overall[sys])) {
        return f->overall[sys];
    }
    return bench_summarize(f->v[sys], f->n[sys]).median;
}

/* Ratios deja/`sys` pair by pair. */
static bench_summary pair_ratios(const bench_figure *f, int sys)
{
    double r[BENCH_MAX_SAMPLES];
    const size_t n = f->n[SYS_DEJA] < f->n[sys] ? f->n[SYS_DEJA] : f->n[sys];
    size_t i;
    for (i = 0; i < n; i++) {
        r[i] = f->v[sys][i] != 0 ? f->v[SYS_DEJA][i] / f->v[sys][i] : NAN;
    }
    return bench_summarize(r, n);
}

/* The headline ratio deja/`sys`: of the headline values when a figure has
 * them, else the median of the paired ratios. */
static double headline_ratio(const bench_figure *f, int sys)
{
    if (!isnan(f->overall[SYS_DEJA]) && !isnan(f->overall[sys])) {
        return f->overall[sys] != 0 ? f->overall[SYS_DEJA] / f->overall[sys] : NAN;
    }
    return pair_ratios(f, sys).median;
}

/* Evaluate target `i`: 1 met, 0 missed, -1 not measured. `by` says how far
 * off a miss is. */
static int target_met(const bench_figure *f, int i, char *by, size_t cap)
{
    const int kind = f->target[i].kind;
    const double x = f->target[i].x;
    const double v = kind <= 2 ? bench_figure_value(f, SYS_DEJA)
                               : headline_ratio(f, f->target[i].sys);
    const int want_low = kind == 1 || kind == 3;
    by[0] = '\0';
    if (kind == 0 || isnan(v)) {
        return -1;
    }
    if (want_low ? v <= x : v >= x) {
        return 1;
    }
    if (want_low) {
        snprintf(by, cap, "%.3gx over", v / x);
    } else {
        snprintf(by, cap, "%.3gx short", v > 0 ? x / v : INFINITY);
    }
    return 0;
}

/* Format `v` for the table in a way that suits `unit`; "-" for NAN. */
static void fmt_val(char *out, size_t cap, const char *unit, double v)
{
    if (isnan(v)) {
        snprintf(out, cap, "-");
    } else if (strcmp(unit, "traces/s") == 0) {
        if (v >= 1e6) {
            snprintf(out, cap, "%.2fM", v / 1e6);
        } else if (v >= 1e3) {
            snprintf(out, cap, "%.1fk", v / 1e3);
        } else {
            snprintf(out, cap, "%.0f", v);
        }
    } else if (strcmp(unit, "cores") == 0) {
        snprintf(out, cap, "%.2f", v);
    } else if (strcmp(unit, "ms") == 0 || strcmp(unit, "MB") == 0) {
        snprintf(out, cap, "%.1f", v);
    } else {
        snprintf(out, cap, "%.0f", v);
    }
}

static const char *const sys_short[SYS_COUNT] = {"deja", "jsonl.zst", "sqlite", "lmdb-raw"};

/* Print the table, the misses and the notes. */
void bench_report_print(const bench_report *r)
{
    size_t i;
    int sys, t;
    if (r->quick) {
        printf("\n*** QUICK RUN (--quick): small sets and short runs; the figures are a "
               "smoke test, not measurements of the targets ***\n");
    }
    printf("\n%-26s %-6s %3s %-8s | %9s %9s %9s %9s | %7s %7s %7s | %-34s\n", "figure",
           "load", "thr", "unit", "deja", "jsonl.zst", "sqlite", "lmdb-raw", "d/jsonl",
           "d/sqlite", "d/lmdb", "target: met?");
    for (i = 0; i < 152; i++) {
        putchar('-');
    }
    putchar('\n');
    for (i = 0; i < r->nfigs; i++) {
        const bench_figure *f = r->figs[i];
        char thr[8], vals[SYS_COUNT][24], rat[SYS_COUNT][16], tgt[96] = "";
        thr[0] = '\0';
        if (f->threads) {
            snprintf(thr, sizeof(thr), "%d", f->threads);
        }
        for (sys = 0; sys < SYS_COUNT; sys++) {
            const double rv = sys ? headline_ratio(f, sys) : NAN;
            fmt_val(vals[sys], sizeof(vals[sys]), f->unit, bench_figure_value(f, sys));
            if (isnan(rv)) {
                snprintf(rat[sys], sizeof(rat[sys]), "-");
            } else {
                snprintf(rat[sys], sizeof(rat[sys]), "%.3g", rv);
            }
        }
        for (t = 0; t < 2; t++) {
            char by[32];
            const int met = target_met(f, t, by, sizeof(by));
            if (f->target[t].kind == 0) {
                continue;
            }
            snprintf(tgt + strlen(tgt), sizeof(tgt) - strlen(tgt), "%s%s: %s", t ? "; " : "",
                     f->target[t].text, met < 0 ? "n/a" : met ? "yes" : "NO");
        }
        printf("%-26s %-6s %3s %-8s | %9s %9s %9s %9s | %7s %7s %7s | %s\n", f->id, f->workload,
               thr, f->unit, vals[0], vals[1], vals[2], vals[3], rat[1], rat[2], rat[3], tgt);
    }
    printf("\nRatios are deja/baseline, paired within this run (for times and bytes lower "
           "is better for deja, for rates higher).\n");
    printf("\nEvery figure as min / median / max over its repeats (n, what a repeat is):\n");
    for (i = 0; i < r->nfigs; i++) {
        const bench_figure *f = r->figs[i];
        char line[512];
        size_t len = 0;
        line[0] = '\0';
        for (sys = 0; sys < SYS_COUNT; sys++) {
            const bench_summary sm = bench_summarize(f->v[sys], f->n[sys]);
            char lo[24], md[24], hi[24];
            if (sm.n == 0 || len >= sizeof(line)) {
                continue;
            }
            fmt_val(lo, sizeof(lo), f->unit, sm.min);
            fmt_val(md, sizeof(md), f->unit, sm.median);
            fmt_val(hi, sizeof(hi), f->unit, sm.max);
            len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s %s / %s / %s (%zu)",
                                    len ? "; " : "", sys_short[sys], lo, md, hi, sm.n);
        }
        char thr[8] = "";
        if (f->threads) {
            snprintf(thr, sizeof(thr), "%d", f->threads);
        }
        printf("  %-26s %-6s %3s %-8s %s [%s]%s\n", f->id, f->workload, thr, f->unit, line,
               f->spread, r->quick ? " QUICK" : "");
    }
    for (i = 0; i < r->nfigs; i++) {
        const bench_figure *f = r->figs[i];
        for (t = 0; t < 2; t++) {
            char by[32], v[24], wl[40];
            if (target_met(f, t, by, sizeof(by)) != 0) {
                continue;
            }
            if (f->threads) {
                snprintf(wl, sizeof(wl), "%s x%d", f->workload, f->threads);
            } else {
                snprintf(wl, sizeof(wl), "%s", f->workload);
            }
            if (f->target[t].kind <= 2) {
                fmt_val(v, sizeof(v), f->unit, bench_figure_value(f, SYS_DEJA));
                printf("MISSED %s %s: deja %s %s, target %s (%s)\n", f->id, wl, v, f->unit,
                       f->target[t].text, by);
            } else {
                printf("MISSED %s %s: deja/%s = %.3g, target %s (%s)\n", f->id, wl,
                       sys_short[f->target[t].sys], headline_ratio(f, f->target[t].sys),
                       f->target[t].text, by);
            }
        }
    }
    for (i = 0; i < r->nnotes; i++) {
        printf("note: %s\n", r->notes[i]);
    }
}

/* A JSON number, or null for NAN and infinities. */
static json_t *number(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* A summary as JSON: min, median, max, n and the headline value. */
static json_t *summary_json(bench_summary s, double value)
{
    return json_pack("{s:o, s:o, s:o, s:I, s:o}", "min", number(s.min), "median",
                     number(s.median), "max", number(s.max), "n", (json_int_t)s.n, "value",
                     number(value));
}

/* One figure as JSON, with its systems, ratios and targets; NULL on OOM. */
static json_t *figure_json(const bench_figure *f, int quick)
{
    json_t *o = json_object(), *systems = json_object(), *ratios = json_object();
    json_t *targets = json_array();
    int sys, t;
    if (o == NULL || systems == NULL || ratios == NULL || targets == NULL) {
        json_decref(o);
        json_decref(systems);
        json_decref(ratios);
        json_decref(targets);
        return NULL;
    }
    json_object_set_new(o, "figure", json_string(f->id));
    json_object_set_new(o, "workload", json_string(f->workload));
    if (f->threads) {
        json_object_set_new(o, "threads", json_integer(f->threads));
    }
    json_object_set_new(o, "unit", json_string(f->unit));
    json_object_set_new(o, "higher_is_better", json_boolean(f->higher_better));
    json_object_set_new(o, "spread", json_string(f->spread));
    json_object_set_new(o, "quick", json_boolean(quick));
    if (f->note[0]) {
        json_object_set_new(o, "note", json_string(f->note));
    }
    for (sys = 0; sys < SYS_COUNT; sys++) {
        if (f->n[sys] == 0) {
            continue;
        }
        json_object_set_new(systems, sys_short[sys],
                            summary_json(bench_summarize(f->v[sys], f->n[sys]),
                                         bench_figure_value(f, sys)));
        if (sys != SYS_DEJA && f->n[SYS_DEJA] > 0) {
            json_object_set_new(ratios, sys_short[sys],
                                summary_json(pair_ratios(f, sys), headline_ratio(f, sys)));
        }
    }
    for (t = 0; t < 2; t++) {
        char by[32];
        const int met = target_met(f, t, by, sizeof(by));
        if (f->target[t].kind == 0) {
            continue;
        }
        json_array_append_new(targets,
                              json_pack("{s:s, s:s, s:o, s:s}", "target", f->target[t].text,
                                        "on", f->target[t].kind <= 2
                                                  ? "deja"
                                                  : sys_short[f->target[t].sys],
                                        "met", met < 0 ? json_null() : json_boolean(met), "by",
                                        by));
    }
    json_object_set_new(o, "systems", systems);
    json_object_set_new(o, "ratios", ratios);
    json_object_set_new(o, "targets", targets);
    return o;
}

/* Write every figure to `path` as one JSON document. Returns 0 or -1. */
int bench_report_write_json(const bench_report *r, const char *path)
{
    json_t *root = json_object(), *figs = json_array(), *notes = json_array();
    char host[256] = "";
    char date[32];
    const time_t now = time(NULL);
    struct tm tm;
    size_t i;
    int rc = -1;
    if (root == NULL || figs == NULL || notes == NULL) {
        goto cleanup;
    }
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    gethostname(host, sizeof(host) - 1);
    json_object_set_new(root, "bench", json_string("deja-bench"));
    json_object_set_new(root, "deja_version", json_string(DEJA_VERSION_STRING));
    json_object_set_new(root, "workload_version", json_integer(BENCH_WORKLOAD_VERSION));
    json_object_set_new(root, "date", json_string(date));
    json_object_set_new(root, "quick", json_boolean(r->quick));
    json_object_set_new(root, "run", json_string(r->quick ? "quick: short runs, small sets; "
                                                            "not a measurement of the targets"
                                                          : "full"));
    json_object_set_new(root, "cpus", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    json_object_set_new(root, "seconds", json_real(bench_now() - r->started));
    json_object_set_new(root, "ratio", json_string("deja/baseline, paired repeat by repeat"));
    for (i = 0; i < r->nfigs; i++) {
        json_t *f = figure_json(r->figs[i], r->quick);
        if (f == NULL || json_array_append_new(figs, f) != 0) {
            goto cleanup;
        }
    }
    for (i = 0; i < r->nnotes; i++) {
        json_array_append_new(notes, json_string(r->notes[i]));
    }
    json_object_set(root, "figures", figs);
    json_object_set(root, "notes", notes);
    if (json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(6)) != 0) {
        fprintf(stderr, "deja-bench: cannot write %s\n", path);
        goto cleanup;
    }
    rc = 0;
cleanup:
    json_decref(figs);
    json_decref(notes);
    json_decref(root);
    return rc;
}

/* Free every figure. The report may be reused after. */
void bench_report_free(bench_report *r)
{
    size_t i;
    for (i = 0; i < r->nfigs; i++) {
        free(r->figs[i]);
    }
    free(r->figs);
    memset(r, 0, sizeof(*r));
}
