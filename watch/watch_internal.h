/*
 * watch/watch_internal.h -- the watch room's private toolbox.
 *
 * watch/ holds what looks at a live store rather than at one trace: health
 * per group (health.c), drift between two selections (drift.c, with the
 * statistics in stats.c), validation rules (rules.c, check.c) and the HTML
 * report (report.c, svg.c). It reads the store through the public API and
 * store/store.h (errors) only, and is called by the CLI; nothing below it
 * calls into it (the tracer takes rules through a callback option).
 *
 * This header holds what several of those files share: a bounded quantile
 * sketch, a string-keyed hash map, reading tensor elements as doubles, and
 * the one place that decides whether an output holds scores over classes.
 */
#ifndef DEJA_WATCH_INTERNAL_H
#define DEJA_WATCH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "deja.h"

/* ------------------------------------------------------------------------
 * Quantile sketch (sketch.c): relative-error log buckets (the DDSketch
 * idea). Every positive value lands in bucket ceil(log(v) / log(gamma)),
 * gamma = (1 + a) / (1 - a) with a = DEJA__SKETCH_ALPHA, so a quantile
 * read back is within a relative error a of a value of the sample at that
 * rank. Values <= DEJA__SKETCH_MIN (and negative ones, by magnitude, on a
 * mirrored side) are kept too. Memory: one counter per bucket between the
 * smallest and largest magnitude seen (about 900 for 1 us .. 100 s).
 * ---------------------------------------------------------------------- */

#define DEJA__SKETCH_ALPHA 0.01
#define DEJA__SKETCH_MIN 1e-9

typedef struct deja__sketch_side {
    uint64_t *counts;
    int32_t lo; /* bucket index of counts[0] */
    size_t n;   /* counters allocated */
} deja__sketch_side;

typedef struct deja__sketch {
    deja__sketch_side pos, neg;
    uint64_t zero; /* |v| <= DEJA__SKETCH_MIN */
    uint64_t count;
    double min, max, sum;
} deja__sketch;

/* Zero-initialise with memset or {0}; free with deja__sketch_free. */
int deja__sketch_add(deja__sketch *s, double v); /* 0 or DEJA_ENOMEM; NaN ignored */
double deja__sketch_quantile(const deja__sketch *s, double q); /* NaN when empty */
void deja__sketch_free(deja__sketch *s);

/* ------------------------------------------------------------------------
 * A map from a string key to a caller-sized value block (map.c): open
 * addressing, keys and values owned by the map, insertion order kept.
 * ---------------------------------------------------------------------- */

typedef struct deja__map {
    char **keys;      /* in insertion order */
    void **values;    /* zero-initialised blocks of `width` bytes */
    size_t n, cap;
    size_t *slots;    /* index + 1 into keys, 0 empty */
    size_t nslots;
    size_t width;
} deja__map;

void deja__map_init(deja__map *m, size_t width);
/* The value block of `key`, created (zeroed) when absent; NULL when out of
 * memory. `*created` (may be NULL) says which. */
void *deja__map_get(deja__map *m, const char *key, size_t klen, int *created);
/* The value block of `key`, or NULL when absent. */
void *deja__map_find(const deja__map *m, const char *key, size_t klen);
void deja__map_free(deja__map *m);

/* Add every value counted in `src` to `dst`. 0 or DEJA_ENOMEM. */
int deja__sketch_merge(deja__sketch *dst, const deja__sketch *src);

/* ------------------------------------------------------------------------
 * Scanning a selection on several threads (scan.c).
 * ---------------------------------------------------------------------- */

/* Called for each trace with the state of the thread that listed it: the
 * trace's summary only (deja__trace_summary in store/store.h: id, times,
 * model, status, tags, input and output bytes; no tensor), valid during
 * the call. Return non-zero to stop the whole scan. */
struct deja__trace_summary;
typedef int (*deja__scan_cb)(const struct deja__trace_summary *s, void *state);

/* Threads a scan uses: the online cores, at most 4. */
size_t deja__watch_threads(void);

/* List the traces matching `filter` (its limit ignored) on `nstates`
 * threads (the caller's among them), thread i passing states[i] to `cb`.
 * Order is unspecified: callers merge their states afterwards. Unreadable
 * records are counted in `*bad` (may be NULL). Returns 0 or the first
 * store error. */
int deja__watch_scan(deja_store *store, const deja_filter *filter, void **states, size_t nstates,
                     deja__scan_cb cb, uint64_t *bad);

/* ------------------------------------------------------------------------
 * Tensors (values.c).
 * ---------------------------------------------------------------------- */

/* Whether the element type holds numbers (floats, integers, bool). */
int deja__watch_is_numeric(deja_dtype d);
int deja__watch_is_float(deja_dtype d);

/* Element `i` of a numeric tensor as a double (f16/bf16 converted). */
double deja__watch_value(const deja_tensor *t, size_t i);

/* Number of elements of a numeric tensor (size / element size). */
size_t deja__watch_count(const deja_tensor *t);

/* The kind the producer declared for output `name` of `trace` (recorded
 * with the trace through the plugin ABI v2 or deja_span_output_kind; the
 * first declaration wins), DEJA_KIND_AUTO when none was declared. */
deja_output_kind deja__watch_kind_of(const deja_trace *trace, const char *name);

/* Whether `t`, an output of declared kind `kind` (DEJA_KIND_AUTO for
 * inputs and undeclared outputs), holds scores or probabilities over
 * classes, the last axis being the class axis. The one place that decides
 * it, by the diff's rule: a float tensor whose last axis has at least 2
 * entries, declared DEJA_KIND_SCORES or DEJA_KIND_PROBS; any other
 * declared kind is not scores, whatever its name; undeclared, a name
 * containing "logit", "score", "prob" or "class" decides. */
int deja__watch_is_scores(const deja_tensor *t, deja_output_kind kind);

/* Rows of a scores tensor (product of every axis but the last) and the
 * number of classes (the last axis). */
size_t deja__watch_rows(const deja_tensor *t, size_t *classes);

/* The arg-max class of row `r` of a scores tensor (NaN ranks lowest). */
size_t deja__watch_argmax(const deja_tensor *t, size_t r, size_t classes);

/* UTF-8 characters (code points) in `size` bytes. */
size_t deja__watch_utf8_chars(const uint8_t *s, size_t size);

/* ------------------------------------------------------------------------
 * Statistics (stats.c).
 * ---------------------------------------------------------------------- */

/* Inner edges of `bins` quantile bins of `n` sorted values (rank
 * floor(k (n - 1) / bins) for k = 1..bins-1), repeated edges removed (and
 * an edge at the maximum): written to `edges`, returns how many (0 when
 * n is 0). */
size_t deja__stats_edges(const double *sorted, size_t n, size_t bins, double *edges);

/* The bin of `v` for `nedges` edges: bin i holds (edges[i-1], edges[i]],
 * bin 0 everything up to edges[0], bin nedges what is above the last. */
size_t deja__stats_bin(const double *edges, size_t nedges, double v);

/* Population stability index of two histograms over the same bins:
 * sum (c - b) ln(c / b) over the shares, an empty bin's share taken as
 * 1e-4. NaN when either side is empty. */
double deja__stats_psi(const uint64_t *base, const uint64_t *cur, size_t nbins);

/* Two-sample Kolmogorov-Smirnov statistic: the largest distance between
 * the empirical distribution functions of sorted `a` and sorted `b`. */
double deja__stats_ks(const double *a, size_t na, const double *b, size_t nb);

/* Its asymptotic p-value: the limiting Kolmogorov distribution's
 * survival at D sqrt(na nb / (na + nb)) (scipy.special.kolmogorov). */
double deja__stats_ks_p(double d, size_t na, size_t nb);

/* Chi-square test of homogeneity of two label histograms over the same
 * `k` labels (labels seen on neither side left out): the statistic, and
 * its p-value in `*p` (k' - 1 degrees of freedom). */
double deja__stats_chi2(const uint64_t *base, const uint64_t *cur, size_t k, double *p);

/* ------------------------------------------------------------------------
 * The report's charts and escaping (svg.c).
 * ---------------------------------------------------------------------- */

/* One line of a chart: n points (x in Unix ns). */
typedef struct deja__series {
    const char *name;
    const int64_t *x;
    const double *y;
    size_t n;
} deja__series;

/* Write `s` with &, <, >, " and ' escaped (control characters but tab and
 * newline become '?'). NULL writes nothing. */
void deja__html_escape(FILE *fp, const char *s);

/* The color of series `i`. */
const char *deja__svg_color(size_t i);

/* An inline SVG line chart of `nseries` series over [x0, x1] (UTC time
 * labels), y from 0, with a legend. */
void deja__svg_lines(FILE *fp, const char *title, const char *unit, const deja__series *series,
                     size_t nseries, int64_t x0, int64_t x1);

/* An inline SVG chart of paired bars: shares `a` and `b` (0..1) of `n`
 * bins named `labels`. */
void deja__svg_bars(FILE *fp, const char *title, const char *const *labels, const double *a,
                    const double *b, size_t n, const char *name_a, const char *name_b);

/* A deterministic 64-bit generator (splitmix64) for reproducible samples. */
uint64_t deja__watch_rand(uint64_t *state);

#endif /* DEJA_WATCH_INTERNAL_H */
