/*
 * watch/drift.c -- drift between two selections, field by field.
 *
 * Pass 1 streams each selection on several threads (scan.c): counts,
 * errors, a latency sketch, and the reproducible sample (the ids that hash
 * lowest under the seed). Pass 2 reads the sampled traces, payloads and
 * all, and extracts their fields; then each field is compared (stats.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "store/store.h"
#include "watch/watch_internal.h"

#define SAMPLE_MAX ((size_t)1 << 22)
#define FIELDS_MAX 512
#define LABELS_MAX 1000
#define LABEL_ROWS_MAX 64
#define TOKENS_PER_TEXT 4096
#define VOCAB_MAX ((size_t)1 << 21)
#define EXAMPLES_MAX 3
#define NAME_LEN 200

/* ------------------------------------------------------------------------
 * Pass 1: counts and the sample.
 * ---------------------------------------------------------------------- */

typedef struct pick {
    uint64_t prio;
    deja_id id;
} pick;

typedef struct pass1 {
    uint64_t seed;
    size_t cap;
    pick *heap; /* max-heap on prio: the `cap` lowest seen */
    size_t n;
    uint64_t traces, errors;
    deja__sketch latency;
    pick err[EXAMPLES_MAX]; /* errors of lowest prio, ascending */
    size_t nerr;
    int rc;
} pass1;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The sampling priority of an id: a hash under the seed. */
static uint64_t prio_of(const deja_id *id, uint64_t seed)
{
    uint64_t a, b;

    memcpy(&a, id->bytes, 8);
    memcpy(&b, id->bytes + 8, 8);
    return mix64(mix64(a ^ seed) ^ (b + 0x9E3779B97F4A7C15ULL));
}

static void heap_down(pick *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;

        if (l < n && h[l].prio > h[m].prio)
            m = l;
        if (l + 1 < n && h[l + 1].prio > h[m].prio)
            m = l + 1;
        if (m == i)
            return;
        const pick t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_up(pick *h, size_t i)
{
    while (i > 0 && h[(i - 1) / 2].prio < h[i].prio) {
        const pick t = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

/* Scan callback: count the trace and offer it to the sample. */
static int pass1_cb(const deja__trace_summary *sum, void *state)
{
    const deja_trace *t = sum->trace;
    pass1 *p = state;
    const pick k = {prio_of(&t->id, p->seed), t->id};

    p->traces++;
    if (deja__sketch_add(&p->latency, (double)t->duration_ns / 1e6) != 0) {
        p->rc = DEJA_ENOMEM;
        return 1;
    }
    if (t->status == DEJA_STATUS_ERROR) {
        size_t i = p->nerr < EXAMPLES_MAX ? p->nerr++ : EXAMPLES_MAX;

        p->errors++;
        while (i > 0 && p->err[i - 1].prio > k.prio) {
            if (i < EXAMPLES_MAX)
                p->err[i] = p->err[i - 1];
            i--;
        }
        if (i < EXAMPLES_MAX)
            p->err[i] = k;
    }
    if (p->n < p->cap) {
        p->heap[p->n] = k;
        heap_up(p->heap, p->n++);
    } else if (p->cap > 0 && k.prio < p->heap[0].prio) {
        p->heap[0] = k;
        heap_down(p->heap, p->n, 0);
    }
    return 0;
}

static int pick_by_prio(const void *a, const void *b)
{
    const pick *x = a, *y = b;

    return x->prio < y->prio ? -1 : x->prio > y->prio;
}

static int pick_by_id(const void *a, const void *b)
{
    return memcmp(((const pick *)a)->id.bytes, ((const pick *)b)->id.bytes, 16);
}

/* What pass 1 gives for one selection. */
typedef struct selection {
    pick *sample; /* sorted by id */
    size_t nsample;
    uint64_t traces, errors, bad;
    deja__sketch latency;
    pick err[EXAMPLES_MAX];
    size_t nerr;
} selection;

/* Run pass 1 over `filter` into `sel`. */
static int run_pass1(deja_store *store, const deja_filter *filter, size_t cap, uint64_t seed,
                     selection *sel)
{
    const size_t nthreads = deja__watch_threads();
    pass1 states[8];
    void *ptrs[8];
    pick errs[8 * EXAMPLES_MAX];
    size_t total = 0, nerrs = 0;
    int rc = 0;

    memset(states, 0, sizeof states);
    for (size_t i = 0; i < nthreads; i++) {
        states[i].seed = seed;
        states[i].cap = cap;
        states[i].heap = malloc((cap ? cap : 1) * sizeof(pick));
        if (states[i].heap == NULL)
            rc = deja__error_set(DEJA_ENOMEM, "drift: out of memory for a sample of %zu", cap);
        ptrs[i] = &states[i];
    }
    if (rc == 0)
        rc = deja__watch_scan(store, filter, ptrs, nthreads, pass1_cb, &sel->bad);
    for (size_t i = 0; i < nthreads && rc == 0; i++)
        if (states[i].rc != 0)
            rc = deja__error_set(states[i].rc, "drift: out of memory");
    for (size_t i = 0; i < nthreads && rc == 0; i++)
        total += states[i].n;
    if (rc == 0 && (sel->sample = malloc((total ? total : 1) * sizeof(pick))) == NULL)
        rc = deja__error_set(DEJA_ENOMEM, "drift: out of memory");
    for (size_t i = 0; i < nthreads && rc == 0; i++) {
        memcpy(sel->sample + sel->nsample, states[i].heap, states[i].n * sizeof(pick));
        sel->nsample += states[i].n;
        sel->traces += states[i].traces;
        sel->errors += states[i].errors;
        if (deja__sketch_merge(&sel->latency, &states[i].latency) != 0)
            rc = deja__error_set(DEJA_ENOMEM, "drift: out of memory");
        for (size_t k = 0; k < states[i].nerr; k++)
            errs[nerrs++] = states[i].err[k];
    }
    if (rc == 0) {
        /* The union's lowest `cap`, whatever thread saw them. */
        qsort(sel->sample, sel->nsample, sizeof(pick), pick_by_prio);
        if (sel->nsample > cap)
            sel->nsample = cap;
        qsort(sel->sample, sel->nsample, sizeof(pick), pick_by_id);
        /* Likewise the errors of lowest priority. */
        qsort(errs, nerrs, sizeof(pick), pick_by_prio);
        sel->nerr = nerrs < EXAMPLES_MAX ? nerrs : EXAMPLES_MAX;
        memcpy(sel->err, errs, sel->nerr * sizeof(pick));
    }
    for (size_t i = 0; i < nthreads; i++) {
        free(states[i].heap);
        deja__sketch_free(&states[i].latency);
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * Pass 2: fields of the sampled traces.
 * ---------------------------------------------------------------------- */

typedef struct pair {
    double v;
    uint32_t who; /* index in the side's sample (id order) */
} pair;

typedef struct vals {
    pair *p;
    size_t n, cap;
} vals;

/* A set of 64-bit token hashes (0 stands for 1). */
typedef struct u64set {
    uint64_t *v;
    size_t n, cap;
} u64set;

typedef struct field {
    deja_drift_kind kind;
    int chars;   /* new tokens: characters rather than words */
    vals side[2];
    uint64_t nan[2], inf[2];
    uint64_t count[2], hits[2]; /* rates */
    u64set half, all;           /* new tokens: vocabularies of the baseline */
    uint64_t half_tokens, half_new, cur_tokens, cur_new;
} field;

typedef struct extractor {
    deja__map fields; /* name -> field */
    const deja_drift_options *o;
    int side;        /* 0 baseline, 1 current */
    int second_half; /* baseline: a trace of the second half */
    uint32_t who;
    int rc;
} extractor;

static int vals_push(vals *a, double v, uint32_t who)
{
    if (a->n == a->cap) {
        const size_t cap = a->cap ? a->cap * 2 : 256;
        pair *grown = realloc(a->p, cap * sizeof *grown);

        if (grown == NULL)
            return -1;
        a->p = grown;
        a->cap = cap;
    }
    a->p[a->n].v = v;
    a->p[a->n].who = who;
    a->n++;
    return 0;
}

static int set_has(const u64set *s, uint64_t h)
{
    if (s->cap == 0)
        return 0;
    h = h ? h : 1;
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->v[i] == h)
            return 1;
        if (s->v[i] == 0)
            return 0;
    }
}

/* Add `h`; a full set (VOCAB_MAX) stays as it is. */
static int set_add(u64set *s, uint64_t h)
{
    h = h ? h : 1;
    if ((s->n + 1) * 2 > s->cap) {
        const size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *v;

        if (cap > 2 * VOCAB_MAX)
            return 0;
        v = calloc(cap, sizeof *v);
        if (v == NULL)
            return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i] != 0) {
                size_t j = s->v[i] & (cap - 1);

                while (v[j] != 0)
                    j = (j + 1) & (cap - 1);
                v[j] = s->v[i];
            }
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->v[i] == h)
            return 0;
        if (s->v[i] == 0) {
            s->v[i] = h;
            s->n++;
            return 0;
        }
    }
}

/* The field called `name` (created with `kind`), or NULL when out of
 * memory or past FIELDS_MAX (then the field is left out). */
static field *field_get(extractor *x, const char *name, deja_drift_kind kind)
{
    int created;
    field *f;

    if (x->fields.n >= FIELDS_MAX && deja__map_find(&x->fields, name, strlen(name)) == NULL)
        return NULL;
    f = deja__map_get(&x->fields, name, strlen(name), &created);
    if (f == NULL) {
        x->rc = DEJA_ENOMEM;
        return NULL;
    }
    if (created)
        f->kind = kind;
    return f->kind == kind ? f : NULL;
}

/* Count a numeric value into field `name`. */
static void add_number(extractor *x, const char *name, double v)
{
    field *f = field_get(x, name, DEJA_DRIFT_NUMERIC);

    if (f == NULL)
        return;
    if (isnan(v))
        f->nan[x->side]++;
    else if (isinf(v))
        f->inf[x->side]++;
    else if (vals_push(&f->side[x->side], v, x->who) != 0)
        x->rc = DEJA_ENOMEM;
}

/* Count one trace into the rate field `name`: `hit` or not. */
static void add_rate(extractor *x, const char *name, int hit)
{
    field *f = field_get(x, name, DEJA_DRIFT_RATE);

    if (f == NULL)
        return;
    f->count[x->side]++;
    f->hits[x->side] += hit != 0;
    if (hit && x->side == 1 && vals_push(&f->side[1], 1.0, x->who) != 0)
        x->rc = DEJA_ENOMEM;
}

/* The hashes of the words (ASCII letters and digits, case folded, and
 * any non-ASCII byte) or of the characters (UTF-8 code points) of a
 * text, at most TOKENS_PER_TEXT. Returns how many. */
static size_t tokens_of(const uint8_t *s, size_t n, int chars, uint64_t *out)
{
    size_t k = 0, i = 0;

    while (i < n && k < TOKENS_PER_TEXT) {
        uint64_t h = 1469598103934665603ULL;
        size_t j = i;

        if (chars) {
            j++;
            while (j < n && (s[j] & 0xC0) == 0x80)
                j++;
            for (size_t q = i; q < j; q++)
                h = (h ^ s[q]) * 1099511628211ULL;
            out[k++] = h;
            i = j;
            continue;
        }
        while (j < n && (s[j] >= 0x80 || (s[j] >= '0' && s[j] <= '9') ||
                         ((s[j] | 0x20) >= 'a' && (s[j] | 0x20) <= 'z')))
            j++;
        if (j == i) {
            i++;
            continue;
        }
        for (size_t q = i; q < j; q++) {
            const uint8_t c = s[q] < 0x80 && s[q] >= 'A' && s[q] <= 'Z' ? s[q] | 0x20 : s[q];

            h = (h ^ c) * 1099511628211ULL;
        }
        out[k++] = h;
        i = j;
    }
    return k;
}

/* Count the new tokens of one text into field `name`. */
static void add_tokens(extractor *x, const char *name, const uint8_t *s, size_t n, int chars,
                       uint64_t *buf)
{
    field *f = field_get(x, name, DEJA_DRIFT_NEW_TOKENS);
    const size_t k = tokens_of(s, n, chars, buf);
    size_t fresh = 0;

    if (f == NULL)
        return;
    f->chars = chars;
    for (size_t i = 0; i < k; i++) {
        if (x->side == 0 && !x->second_half) {
            if (set_add(&f->half, buf[i]) != 0 || set_add(&f->all, buf[i]) != 0)
                x->rc = DEJA_ENOMEM;
        } else if (x->side == 0) {
            fresh += !set_has(&f->half, buf[i]);
            if (set_add(&f->all, buf[i]) != 0)
                x->rc = DEJA_ENOMEM;
        } else {
            fresh += !set_has(&f->all, buf[i]);
        }
    }
    if (x->side == 0 && x->second_half) {
        f->half_tokens += k;
        f->half_new += fresh;
    } else if (x->side == 1) {
        f->cur_tokens += k;
        f->cur_new += fresh;
        if (k > 0 && vals_push(&f->side[1], (double)fresh / (double)k, x->who) != 0)
            x->rc = DEJA_ENOMEM;
    }
}

/* Extract every field of one tensor. */
static void add_tensor(extractor *x, const char *sidename, const deja_tensor *t,
                       deja_output_kind kind, uint64_t *buf)
{
    char name[NAME_LEN];
    const char *tn = t->name ? t->name : "?";

    if (t->data == NULL && t->size > 0)
        return;
    if (t->dtype == DEJA_UTF8) {
        const uint8_t *s = t->data;

        snprintf(name, sizeof name, "%s.%s (length)", sidename, tn);
        add_number(x, name, (double)deja__watch_utf8_chars(s, t->size));
        snprintf(name, sizeof name, "%s.%s (empty)", sidename, tn);
        add_rate(x, name, t->size == 0);
        snprintf(name, sizeof name, "%s.%s (new words)", sidename, tn);
        add_tokens(x, name, s, t->size, 0, buf);
        snprintf(name, sizeof name, "%s.%s (new characters)", sidename, tn);
        add_tokens(x, name, s, t->size, 1, buf);
        return;
    }
    if (!deja__watch_is_numeric(t->dtype))
        return;
    if (deja__watch_is_scores(t, kind)) {
        size_t classes, rows = deja__watch_rows(t, &classes);
        field *f;

        snprintf(name, sizeof name, "%s.%s (label)", sidename, tn);
        f = field_get(x, name, DEJA_DRIFT_LABELS);
        for (size_t r = 0; f != NULL && r < rows && r < LABEL_ROWS_MAX; r++)
            if (vals_push(&f->side[x->side], (double)deja__watch_argmax(t, r, classes), x->who) !=
                0)
                x->rc = DEJA_ENOMEM;
        if (rows > 0) {
            snprintf(name, sizeof name, "%s.%s (top score)", sidename, tn);
            add_number(x, name, deja__watch_value(t, deja__watch_argmax(t, 0, classes)));
        }
        return;
    }
    const size_t n = deja__watch_count(t);
    for (size_t i = 0; i < n && i < x->o->max_positions; i++) {
        if (n == 1)
            snprintf(name, sizeof name, "%s.%s", sidename, tn);
        else
            snprintf(name, sizeof name, "%s.%s[%zu]", sidename, tn, i);
        add_number(x, name, deja__watch_value(t, i));
    }
}

/* Pages of the map are given back after this many sampled traces: reads
 * of a sample are scattered over the whole file. */
#define TRIM_EVERY 512

/* Read the sampled traces of one side and extract their fields. */
static int run_pass2(deja_store *store, extractor *x, const selection *sel, uint64_t *bad)
{
    uint64_t *buf = malloc(TOKENS_PER_TEXT * sizeof *buf);
    int rc = 0;

    if (buf == NULL)
        return deja__error_set(DEJA_ENOMEM, "drift: out of memory");
    /* The baseline in two halves split by a bit of the sampling hash (a
     * random split, whatever the traffic's order): new tokens of the
     * second half against the first give the share to expect without
     * drift. */
    size_t *order = malloc((sel->nsample ? sel->nsample : 1) * sizeof *order);
    size_t half = 0;

    if (order == NULL) {
        free(buf);
        return deja__error_set(DEJA_ENOMEM, "drift: out of memory");
    }
    for (size_t k = 0; k < sel->nsample; k++)
        if (x->side != 0 || (sel->sample[k].prio >> 40 & 1) == 0)
            order[half++] = k;
    for (size_t k = 0, n = half; x->side == 0 && k < sel->nsample; k++)
        if ((sel->sample[k].prio >> 40 & 1) != 0)
            order[n++] = k;
    for (size_t k = 0; k < sel->nsample && rc == 0; k++) {
        const size_t i = order[k];
        deja_trace *t = NULL;

        if (k % TRIM_EVERY == TRIM_EVERY - 1)
            deja__store_trim(store);
        rc = deja_trace_get(store, &sel->sample[i].id, &t);
        if (rc == DEJA_ECORRUPT || rc == DEJA_ENOTFOUND) {
            (*bad)++;
            rc = 0;
            continue;
        }
        if (rc != 0)
            break;
        x->who = (uint32_t)i;
        x->second_half = x->side == 0 && k >= half;
        for (size_t j = 0; j < t->ninputs; j++)
            add_tensor(x, "input", &t->inputs[j], DEJA_KIND_AUTO, buf);
        if (t->status == DEJA_STATUS_OK)
            for (size_t j = 0; j < t->noutputs; j++)
                add_tensor(x, "output", &t->outputs[j],
                           deja__watch_kind_of(t, t->outputs[j].name), buf);
        add_number(x, "latency (ms)", (double)t->duration_ns / 1e6);
        deja_trace_free(t);
        if (x->rc != 0)
            rc = deja__error_set(x->rc, "drift: out of memory");
    }
    free(order);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------------
 * Comparing the fields.
 * ---------------------------------------------------------------------- */

typedef struct drift_impl {
    deja_drift pub;
    deja_drift_field *fields;
    void **owned;
    size_t nowned, capowned;
} drift_impl;

/* Keep `p` until the result is freed; NULL when `p` is NULL or out of
 * memory (then `p` is freed). */
static void *own(drift_impl *d, void *p)
{
    if (p == NULL)
        return NULL;
    if (d->nowned == d->capowned) {
        const size_t cap = d->capowned ? d->capowned * 2 : 64;
        void **grown = realloc(d->owned, cap * sizeof *grown);

        if (grown == NULL) {
            free(p);
            return NULL;
        }
        d->owned = grown;
        d->capowned = cap;
    }
    d->owned[d->nowned++] = p;
    return p;
}

void deja_drift_free(deja_drift *drift)
{
    drift_impl *d = (drift_impl *)drift;

    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nowned; i++)
        free(d->owned[i]);
    free(d->owned);
    free(d->fields);
    free(d);
}

static int pair_cmp(const void *a, const void *b)
{
    const pair *x = a, *y = b;

    if (x->v != y->v)
        return x->v < y->v ? -1 : 1;
    return x->who < y->who ? -1 : x->who > y->who;
}

/* Summary statistics of sorted finite values. */
static void summarize(const pair *p, size_t n, deja_drift_side *s)
{
    double sum = 0, sq = 0;

    s->n = n;
    s->mean = s->std = s->min = s->max = s->p50 = s->p95 = s->p99 = NAN;
    s->rate = NAN;
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        sum += p[i].v;
    s->mean = sum / (double)n;
    for (size_t i = 0; i < n; i++)
        sq += (p[i].v - s->mean) * (p[i].v - s->mean);
    s->std = n > 1 ? sqrt(sq / (double)(n - 1)) : 0.0;
    s->min = p[0].v;
    s->max = p[n - 1].v;
    s->p50 = p[(size_t)floor(0.50 * (double)(n - 1))].v;
    s->p95 = p[(size_t)floor(0.95 * (double)(n - 1))].v;
    s->p99 = p[(size_t)floor(0.99 * (double)(n - 1))].v;
}

/* Up to EXAMPLES_MAX ids of the current sample whose values (pairs `p`)
 * satisfy `in`, newest first. */
typedef int (*in_region_fn)(double v, const void *arg);

static int examples_of(drift_impl *d, deja_drift_field *out, const pair *p, size_t n,
                       in_region_fn in, const void *arg, const selection *cur)
{
    uint32_t best[EXAMPLES_MAX];
    size_t nb = 0;
    deja_id *ids;

    for (size_t i = 0; i < n; i++) {
        size_t k;

        if (!in(p[i].v, arg))
            continue;
        /* Keep the largest `who` (newest ids), descending, no repeats. */
        for (k = 0; k < nb && best[k] > p[i].who; k++)
            ;
        if (k < nb && best[k] == p[i].who)
            continue;
        if (k >= EXAMPLES_MAX)
            continue;
        if (nb < EXAMPLES_MAX)
            nb++;
        memmove(best + k + 1, best + k, (nb - 1 - k) * sizeof best[0]);
        best[k] = p[i].who;
    }
    if (nb == 0)
        return 0;
    ids = own(d, malloc(nb * sizeof *ids));
    if (ids == NULL)
        return -1;
    for (size_t i = 0; i < nb; i++)
        ids[i] = cur->sample[best[i]].id;
    out->examples = ids;
    out->nexamples = nb;
    return 0;
}

typedef struct bin_arg {
    const double *edges;
    size_t nedges, bin;
} bin_arg;

static int in_bin(double v, const void *arg)
{
    const bin_arg *b = arg;

    return deja__stats_bin(b->edges, b->nedges, v) == b->bin;
}

static int is_value(double v, const void *arg)
{
    return v == *(const double *)arg;
}

static int at_least(double v, const void *arg)
{
    return v >= *(const double *)arg && v > 0;
}

/* Bins whose share grew most: its index. */
static size_t most_grown(const double *base, const double *cur, size_t n)
{
    size_t best = 0;

    for (size_t i = 1; i < n; i++)
        if (cur[i] - base[i] > cur[best] - base[best])
            best = i;
    return best;
}

/* Format an interval "(a, b]" of bin `i`. */
static char *bin_region(const double *edges, size_t ne, size_t i)
{
    char *s = NULL;
    int n;

    if (ne == 0)
        n = asprintf(&s, "all values");
    else if (i == 0)
        n = asprintf(&s, "<= %.6g", edges[0]);
    else if (i == ne)
        n = asprintf(&s, "> %.6g", edges[ne - 1]);
    else
        n = asprintf(&s, "(%.6g, %.6g]", edges[i - 1], edges[i]);
    return n < 0 ? NULL : s;
}

/* Compare a numeric field. */
static int compare_numeric(drift_impl *d, deja_drift_field *out, field *f,
                           const deja_drift_options *o, const selection *cur)
{
    pair *b = f->side[0].p, *c = f->side[1].p;
    const size_t nb = f->side[0].n, nc = f->side[1].n;
    double *bv = NULL, *cv = NULL, *edges, *bs, *cs;
    uint64_t *bcnt = NULL, *ccnt = NULL;
    size_t ne, nbins, grown;
    bin_arg arg;
    int rc = -1;

    qsort(b, nb, sizeof *b, pair_cmp);
    qsort(c, nc, sizeof *c, pair_cmp);
    summarize(b, nb, &out->baseline);
    summarize(c, nc, &out->current);
    out->baseline.nan = f->nan[0];
    out->baseline.inf = f->inf[0];
    out->current.nan = f->nan[1];
    out->current.inf = f->inf[1];
    out->metric = "psi";
    out->threshold = o->psi_threshold;
    if (nb == 0 || nc == 0)
        return 0;
    bv = malloc(nb * sizeof *bv);
    cv = malloc(nc * sizeof *cv);
    edges = own(d, malloc(o->bins * sizeof *edges));
    if (bv == NULL || cv == NULL || edges == NULL)
        goto cleanup;
    for (size_t i = 0; i < nb; i++)
        bv[i] = b[i].v;
    for (size_t i = 0; i < nc; i++)
        cv[i] = c[i].v;
    ne = deja__stats_edges(bv, nb, o->bins, edges);
    nbins = ne + 1;
    bcnt = calloc(nbins, sizeof *bcnt);
    ccnt = calloc(nbins, sizeof *ccnt);
    bs = own(d, malloc(nbins * sizeof *bs));
    cs = own(d, malloc(nbins * sizeof *cs));
    if (bcnt == NULL || ccnt == NULL || bs == NULL || cs == NULL)
        goto cleanup;
    for (size_t i = 0; i < nb; i++)
        bcnt[deja__stats_bin(edges, ne, bv[i])]++;
    for (size_t i = 0; i < nc; i++)
        ccnt[deja__stats_bin(edges, ne, cv[i])]++;
    for (size_t i = 0; i < nbins; i++) {
        bs[i] = (double)bcnt[i] / (double)nb;
        cs[i] = (double)ccnt[i] / (double)nc;
    }
    out->psi = deja__stats_psi(bcnt, ccnt, nbins);
    out->ks = deja__stats_ks(bv, nb, cv, nc);
    out->ks_p = deja__stats_ks_p(out->ks, nb, nc);
    out->score = out->psi;
    out->nbins = nbins;
    out->edges = edges;
    out->base_share = bs;
    out->cur_share = cs;
    grown = most_grown(bs, cs, nbins);
    out->region = own(d, bin_region(edges, ne, grown));
    arg = (bin_arg){edges, ne, grown};
    if (out->region == NULL || examples_of(d, out, c, nc, in_bin, &arg, cur) != 0)
        goto cleanup;
    rc = 0;

cleanup:
    free(bv);
    free(cv);
    free(bcnt);
    free(ccnt);
    return rc;
}

static int double_cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Compare a label field. */
static int compare_labels(drift_impl *d, deja_drift_field *out, field *f,
                          const deja_drift_options *o, const selection *cur)
{
    double *labels = NULL, *bs, *cs;
    uint64_t *bcnt = NULL, *ccnt = NULL;
    const char **names;
    size_t nl = 0, grown;
    int rc = -1;

    out->metric = "psi";
    out->threshold = o->psi_threshold;
    out->baseline.n = f->side[0].n;
    out->current.n = f->side[1].n;
    if (f->side[0].n == 0 || f->side[1].n == 0)
        return 0;
    labels = malloc((f->side[0].n + f->side[1].n) * sizeof *labels);
    if (labels == NULL)
        return -1;
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < f->side[s].n; i++)
            labels[nl++] = f->side[s].p[i].v;
    qsort(labels, nl, sizeof *labels, double_cmp);
    {
        size_t k = 0;

        for (size_t i = 0; i < nl; i++)
            if (k == 0 || labels[i] != labels[k - 1])
                labels[k++] = labels[i];
        nl = k < LABELS_MAX ? k : LABELS_MAX;
    }
    bcnt = calloc(nl, sizeof *bcnt);
    ccnt = calloc(nl, sizeof *ccnt);
    bs = own(d, malloc(nl * sizeof *bs));
    cs = own(d, malloc(nl * sizeof *cs));
    names = own(d, calloc(nl, sizeof *names));
    if (bcnt == NULL || ccnt == NULL || bs == NULL || cs == NULL || names == NULL)
        goto cleanup;
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < f->side[s].n; i++) {
            const double *hit =
                bsearch(&f->side[s].p[i].v, labels, nl, sizeof *labels, double_cmp);

            if (hit != NULL)
                (s == 0 ? bcnt : ccnt)[hit - labels]++;
        }
    for (size_t i = 0; i < nl; i++) {
        char *name = NULL;

        bs[i] = (double)bcnt[i] / (double)f->side[0].n;
        cs[i] = (double)ccnt[i] / (double)f->side[1].n;
        if (asprintf(&name, "%.0f", labels[i]) < 0 || (names[i] = own(d, name)) == NULL)
            goto cleanup;
    }
    out->psi = deja__stats_psi(bcnt, ccnt, nl);
    out->chi2 = deja__stats_chi2(bcnt, ccnt, nl, &out->chi2_p);
    out->score = out->psi;
    out->nbins = nl;
    out->labels = names;
    out->base_share = bs;
    out->cur_share = cs;
    grown = most_grown(bs, cs, nl);
    {
        char *region = NULL;

        if (asprintf(&region, "label %s", names[grown]) < 0 ||
            (out->region = own(d, region)) == NULL)
            goto cleanup;
    }
    if (examples_of(d, out, f->side[1].p, f->side[1].n, is_value, &labels[grown], cur) != 0)
        goto cleanup;
    rc = 0;

cleanup:
    free(labels);
    free(bcnt);
    free(ccnt);
    return rc;
}

/* Compare a new-tokens field. */
static int compare_tokens(drift_impl *d, deja_drift_field *out, field *f,
                          const deja_drift_options *o, const selection *cur)
{
    double worst = 0;

    out->metric = "new share excess";
    out->threshold = o->new_token_threshold;
    out->baseline.n = f->half_tokens;
    out->current.n = f->cur_tokens;
    out->baseline.rate = f->half_tokens ? (double)f->half_new / (double)f->half_tokens : 0.0;
    out->current.rate = f->cur_tokens ? (double)f->cur_new / (double)f->cur_tokens : NAN;
    if (f->cur_tokens == 0 || f->all.n == 0)
        return 0;
    out->score = out->current.rate - out->baseline.rate;
    for (size_t i = 0; i < f->side[1].n; i++)
        if (f->side[1].p[i].v > worst)
            worst = f->side[1].p[i].v;
    out->region = f->chars ? "texts with the most new characters" : "texts with the most new words";
    return examples_of(d, out, f->side[1].p, f->side[1].n, at_least, &worst, cur);
}

/* Compare a rate field. */
static int compare_rate(drift_impl *d, deja_drift_field *out, field *f,
                        const deja_drift_options *o, const selection *cur)
{
    const double one = 1.0;

    out->metric = "rate change";
    out->threshold = o->rate_threshold;
    out->baseline.n = f->count[0];
    out->current.n = f->count[1];
    out->baseline.rate = f->count[0] ? (double)f->hits[0] / (double)f->count[0] : NAN;
    out->current.rate = f->count[1] ? (double)f->hits[1] / (double)f->count[1] : NAN;
    if (f->count[0] == 0 || f->count[1] == 0)
        return 0;
    out->score = fabs(out->current.rate - out->baseline.rate);
    out->region = "traces where it holds";
    return examples_of(d, out, f->side[1].p, f->side[1].n, is_value, &one, cur);
}

/* Rank: drifted first, then by score / threshold, then by name. */
static int field_rank(const void *pa, const void *pb)
{
    const deja_drift_field *a = pa, *b = pb;
    const double ra = isnan(a->score) ? -1 : a->score / (a->threshold > 0 ? a->threshold : 1);
    const double rb = isnan(b->score) ? -1 : b->score / (b->threshold > 0 ? b->threshold : 1);

    if (a->drifted != b->drifted)
        return a->drifted ? -1 : 1;
    if (ra != rb)
        return ra > rb ? -1 : 1;
    return strcmp(a->name, b->name);
}

static void field_free(field *f)
{
    free(f->side[0].p);
    free(f->side[1].p);
    free(f->half.v);
    free(f->all.v);
}

/* The errors field, from pass 1 (the whole selections). */
static int errors_field(drift_impl *d, deja_drift_field *out, const selection *base,
                        const selection *cur, const deja_drift_options *o)
{
    deja_id *ids;

    out->name = "errors";
    out->kind = DEJA_DRIFT_RATE;
    out->metric = "rate change";
    out->threshold = o->rate_threshold;
    out->baseline.n = base->traces;
    out->current.n = cur->traces;
    out->baseline.rate = (double)base->errors / (double)base->traces;
    out->current.rate = (double)cur->errors / (double)cur->traces;
    out->score = fabs(out->current.rate - out->baseline.rate);
    out->region = "failed traces";
    if (cur->nerr == 0)
        return 0;
    ids = own(d, malloc(cur->nerr * sizeof *ids));
    if (ids == NULL)
        return -1;
    for (size_t i = 0; i < cur->nerr; i++)
        ids[i] = cur->err[i].id;
    out->examples = ids;
    out->nexamples = cur->nerr;
    return 0;
}

int deja_drift_compute(deja_store *store, const deja_filter *baseline, const deja_filter *current,
                       const deja_drift_options *opts, deja_drift **out)
{
    static const deja_drift_options dflt = DEJA_DRIFT_OPTIONS_INIT;
    const deja_drift_options *o = opts ? opts : &dflt;
    selection sel[2];
    extractor x;
    drift_impl *d = NULL;
    size_t nf = 0;
    int rc;

    *out = NULL;
    memset(sel, 0, sizeof sel);
    memset(&x, 0, sizeof x);
    deja__map_init(&x.fields, sizeof(field));
    if (o->version != DEJA_DRIFT_OPTIONS_VERSION)
        return deja__error_set(DEJA_EVERSION, "drift options: version %u, expected %u",
                               o->version, DEJA_DRIFT_OPTIONS_VERSION);
    if (o->sample == 0 || o->sample > SAMPLE_MAX || o->bins < 2 || o->bins > 100 ||
        o->max_positions == 0 || !(o->psi_threshold > 0) || !(o->rate_threshold > 0) ||
        !(o->new_token_threshold > 0))
        return deja__error_set(DEJA_EINVAL,
                               "drift: sample must be 1..%zu, bins 2..100, positions and "
                               "thresholds positive",
                               SAMPLE_MAX);
    x.o = o;
    for (int s = 0; s < 2; s++) {
        rc = run_pass1(store, s == 0 ? baseline : current, o->sample, o->seed, &sel[s]);
        if (rc != 0)
            goto cleanup;
        if (sel[s].traces == 0) {
            rc = deja__error_set(DEJA_EINVAL, "drift: the %s selection holds no trace",
                                 s == 0 ? "baseline" : "current");
            goto cleanup;
        }
    }
    for (int s = 0; s < 2; s++) {
        uint64_t bad = 0;

        x.side = s;
        rc = run_pass2(store, &x, &sel[s], &bad);
        sel[s].bad += bad;
        if (rc != 0)
            goto cleanup;
    }

    d = calloc(1, sizeof *d);
    if (d == NULL || (d->fields = calloc(x.fields.n + 1, sizeof *d->fields)) == NULL)
        goto nomem;
    if (errors_field(d, &d->fields[nf++], &sel[0], &sel[1], o) != 0)
        goto nomem;
    for (size_t i = 0; i < x.fields.n; i++) {
        field *f = x.fields.values[i];
        deja_drift_field *df = &d->fields[nf];

        df->name = own(d, strdup(x.fields.keys[i]));
        if (df->name == NULL)
            goto nomem;
        df->kind = f->kind;
        df->psi = df->ks = df->ks_p = df->chi2 = df->chi2_p = NAN;
        df->score = NAN;
        if (f->kind == DEJA_DRIFT_NUMERIC)
            rc = compare_numeric(d, df, f, o, &sel[1]);
        else if (f->kind == DEJA_DRIFT_LABELS)
            rc = compare_labels(d, df, f, o, &sel[1]);
        else if (f->kind == DEJA_DRIFT_NEW_TOKENS)
            rc = compare_tokens(d, df, f, o, &sel[1]);
        else
            rc = compare_rate(d, df, f, o, &sel[1]);
        if (rc != 0)
            goto nomem;
        if (strcmp(df->name, "latency (ms)") == 0) {
            /* Quantiles of the whole selections, not of the samples. */
            df->baseline.p50 = deja__sketch_quantile(&sel[0].latency, 0.50);
            df->baseline.p95 = deja__sketch_quantile(&sel[0].latency, 0.95);
            df->baseline.p99 = deja__sketch_quantile(&sel[0].latency, 0.99);
            df->current.p50 = deja__sketch_quantile(&sel[1].latency, 0.50);
            df->current.p95 = deja__sketch_quantile(&sel[1].latency, 0.95);
            df->current.p99 = deja__sketch_quantile(&sel[1].latency, 0.99);
        }
        nf++;
    }
    for (size_t i = 0; i < nf; i++) {
        deja_drift_field *df = &d->fields[i];

        if (i == 0)
            df->psi = df->ks = df->ks_p = df->chi2 = df->chi2_p = NAN;
        df->drifted = !isnan(df->score) && df->score > df->threshold;
        /* Latency shifts by microseconds move its PSI: it drifts when its
         * p50 or p95 also moved by a quarter. */
        if (df->drifted && strcmp(df->name, "latency (ms)") == 0)
            df->drifted = !(df->current.p50 <= 1.25 * df->baseline.p50 &&
                            df->current.p50 >= 0.8 * df->baseline.p50 &&
                            df->current.p95 <= 1.25 * df->baseline.p95 &&
                            df->current.p95 >= 0.8 * df->baseline.p95);
        d->pub.ndrifted += df->drifted;
    }
    qsort(d->fields, nf, sizeof *d->fields, field_rank);
    d->pub.fields = d->fields;
    d->pub.nfields = nf;
    d->pub.baseline_traces = sel[0].traces;
    d->pub.current_traces = sel[1].traces;
    d->pub.baseline_sampled = sel[0].nsample;
    d->pub.current_sampled = sel[1].nsample;
    d->pub.bad = sel[0].bad + sel[1].bad;
    *out = &d->pub;
    d = NULL;
    rc = 0;
    goto cleanup;

nomem:
    rc = deja__error_set(DEJA_ENOMEM, "drift: out of memory");
cleanup:
    deja_drift_free(d ? &d->pub : NULL);
    for (size_t i = 0; i < x.fields.n; i++)
        field_free(x.fields.values[i]);
    deja__map_free(&x.fields);
    for (int s = 0; s < 2; s++) {
        free(sel[s].sample);
        deja__sketch_free(&sel[s].latency);
    }
    return rc;
}
