/*
 * watch/health.c -- health per model, version or tag value (and per time
 * bucket): traces, errors, invalid traces, latency quantiles, payload
 * sizes. One streaming pass over the store; memory grows with the number
 * of groups and buckets, never with the number of traces.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "store/store.h"
#include "watch/watch_internal.h"

/* Bounds: a group name longer than this is cut; buckets at most. */
#define GROUP_MAX 512
#define ROWS_MAX ((size_t)1 << 20)

/* The accumulator of one row. */
typedef struct acc {
    int64_t bucket_ns;
    deja_health_row row;
    deja__sketch latency;
} acc;

/* What one scanning thread accumulates. */
typedef struct health_state {
    const deja_health_options *o;
    deja__map rows; /* "group\x1fbucket" -> acc */
    uint64_t traces;
    int rc;
} health_state;

/* Floor of `t` to a multiple of `every`. */
static int64_t bucket_of(int64_t t, int64_t every)
{
    int64_t q = t / every;

    if (t % every != 0 && t < 0)
        q--;
    return q * every;
}

/* Append `src` to `out` (length `*n`, room `cap`, NUL kept), cut. */
static void put(char *out, size_t *n, size_t cap, const char *src)
{
    size_t len = strlen(src);

    if (len > cap - 1 - *n)
        len = cap - 1 - *n;
    memcpy(out + *n, src, len);
    *n += len;
    out[*n] = '\0';
}

/* Write the group name of `t` into `out`; returns its length. Called per
 * trace: no printf. */
static size_t group_name(const deja_trace *t, const deja_health_options *o, char *out, size_t cap)
{
    const char *name = t->model_name ? t->model_name : "";
    const char *version = t->model_version ? t->model_version : "";
    size_t n = 0;

    out[0] = '\0';
    if (o->by == DEJA_GROUP_MODEL) {
        put(out, &n, cap, name);
    } else if (o->by == DEJA_GROUP_VERSION) {
        put(out, &n, cap, name);
        put(out, &n, cap, "@");
        put(out, &n, cap, version);
    } else {
        const char *value = "-";

        for (size_t i = 0; i < t->ntags; i++)
            if (t->tags[i].key != NULL && strcmp(t->tags[i].key, o->tag_key) == 0) {
                value = t->tags[i].value ? t->tags[i].value : "";
                break;
            }
        put(out, &n, cap, value);
    }
    return n;
}

/* Whether `t` carries the tag deja.invalid. */
static int is_invalid(const deja_trace *t)
{
    for (size_t i = 0; i < t->ntags; i++)
        if (t->tags[i].key != NULL && strcmp(t->tags[i].key, DEJA_INVALID_TAG) == 0)
            return 1;
    return 0;
}

/* Scan callback: count one trace into its row. */
static int add_trace(const deja__trace_summary *sum, void *payload)
{
    const deja_trace *t = sum->trace;
    health_state *s = payload;
    char key[GROUP_MAX + 32];
    size_t glen = group_name(t, s->o, key, GROUP_MAX);
    const int64_t bucket = s->o->every_ns > 0 ? bucket_of(t->start_ns, s->o->every_ns) : 0;
    acc *a;
    int created;
    int klen;

    if (s->o->every_ns > 0) {
        klen = snprintf(key + glen, sizeof key - glen, "\x1f%" PRId64, bucket);
    } else {
        memcpy(key + glen, "\x1f" "0", 3);
        klen = 2;
    }
    a = deja__map_get(&s->rows, key, glen + (size_t)klen, &created);
    if (a == NULL)
        goto nomem;
    if (created) {
        if (s->rows.n > ROWS_MAX) {
            s->rc = deja__error_set(DEJA_ENOMEM,
                                    "health: more than %zu groups and buckets (use a wider "
                                    "--every or a narrower selection)",
                                    ROWS_MAX);
            return 1;
        }
        a->bucket_ns = bucket;
        a->row.first_ns = a->row.last_ns = t->start_ns;
    }
    a->row.traces++;
    a->row.errors += t->status == DEJA_STATUS_ERROR;
    a->row.invalid += is_invalid(t);
    if (t->start_ns < a->row.first_ns)
        a->row.first_ns = t->start_ns;
    if (t->start_ns > a->row.last_ns)
        a->row.last_ns = t->start_ns;
    a->row.input_bytes += sum->input_bytes;
    a->row.output_bytes += sum->output_bytes;
    if (deja__sketch_add(&a->latency, (double)t->duration_ns) != 0)
        goto nomem;
    s->traces++;
    return 0;
nomem:
    s->rc = deja__error_set(DEJA_ENOMEM, "health: out of memory");
    return 1;
}

/* Adds the store's counters per model version to the rows of their group. */
typedef struct lost_join {
    const deja_health_options *o;
    deja_health_row *rows;
    deja__map index; /* group name -> size_t row index + 1 */
} lost_join;

/* deja__store_group_counts callback: add one counter to its group's row. */
static int add_lost(const char *counter, const char *model, const char *version, uint64_t value,
                    void *payload)
{
    lost_join *j = payload;
    char name[GROUP_MAX];
    const int n = j->o->by == DEJA_GROUP_MODEL ? snprintf(name, sizeof name, "%s", model)
                                               : snprintf(name, sizeof name, "%s@%s", model, version);
    const size_t *at;
    deja_health_row *r;

    if (n < 0)
        return 0;
    at = deja__map_find(&j->index, name, (size_t)n < sizeof name ? (size_t)n : sizeof name - 1);
    if (at == NULL)
        return 0; /* a group outside the selection */
    r = &j->rows[*at - 1];
    if (strcmp(counter, "sampled_out") == 0)
        r->sampled_out += value;
    else if (strcmp(counter, "dropped") == 0)
        r->dropped += value;
    return 0;
}

/* Fill the sampled-out and dropped counts of each row from the counters
 * the tracers keep per model version (store/group_count.c). */
static int join_lost(deja_store *store, const deja_health_options *o, deja_health_row *rows,
                     size_t nrows)
{
    lost_join j;
    int rc = 0;

    j.o = o;
    j.rows = rows;
    deja__map_init(&j.index, sizeof(size_t));
    for (size_t i = 0; i < nrows && rc == 0; i++) {
        size_t *at = deja__map_get(&j.index, rows[i].group, strlen(rows[i].group), NULL);

        if (at == NULL)
            rc = deja__error_set(DEJA_ENOMEM, "health: out of memory");
        else
            *at = i + 1;
    }
    if (rc == 0)
        rc = deja__store_group_counts(store, add_lost, &j);
    deja__map_free(&j.index);
    return rc;
}

/* A row to sort: its accumulator, its group's name and rank. */
typedef struct sorted_row {
    acc *a;
    const char *group; /* the key, cut at \x1f */
    size_t glen;
    int64_t group_last; /* newest trace of the whole group */
} sorted_row;

/* Groups with the newest traces first (then by name), each group's
 * buckets oldest first. */
static int row_cmp(const void *pa, const void *pb)
{
    const sorted_row *a = pa, *b = pb;
    int c;

    if (a->group_last != b->group_last)
        return a->group_last > b->group_last ? -1 : 1;
    c = strcmp(a->group, b->group);
    if (c != 0)
        return c;
    return a->a->bucket_ns < b->a->bucket_ns ? -1 : a->a->bucket_ns > b->a->bucket_ns;
}

/* Merge the rows of `src` into `dst`. */
static int merge_state(health_state *dst, health_state *src)
{
    for (size_t i = 0; i < src->rows.n; i++) {
        const acc *from = src->rows.values[i];
        const char *key = src->rows.keys[i];
        int created;
        acc *to = deja__map_get(&dst->rows, key, strlen(key), &created);

        if (to == NULL)
            return deja__error_set(DEJA_ENOMEM, "health: out of memory");
        if (created) {
            to->bucket_ns = from->bucket_ns;
            to->row.first_ns = from->row.first_ns;
            to->row.last_ns = from->row.last_ns;
        }
        to->row.traces += from->row.traces;
        to->row.errors += from->row.errors;
        to->row.invalid += from->row.invalid;
        to->row.input_bytes += from->row.input_bytes;
        to->row.output_bytes += from->row.output_bytes;
        if (from->row.first_ns < to->row.first_ns)
            to->row.first_ns = from->row.first_ns;
        if (from->row.last_ns > to->row.last_ns)
            to->row.last_ns = from->row.last_ns;
        if (deja__sketch_merge(&to->latency, &from->latency) != 0)
            return DEJA_ENOMEM;
    }
    dst->traces += src->traces;
    return 0;
}

static void state_free(health_state *s)
{
    for (size_t i = 0; i < s->rows.n; i++)
        deja__sketch_free(&((acc *)s->rows.values[i])->latency);
    deja__map_free(&s->rows);
}

/* The result: rows and their group names in one allocation each. */
typedef struct health_impl {
    deja_health pub;
    deja_health_row *rows;
    char **names;
    size_t nnames;
} health_impl;

void deja_health_free(deja_health *health)
{
    health_impl *h = (health_impl *)health;

    if (h == NULL)
        return;
    for (size_t i = 0; i < h->nnames; i++)
        free(h->names[i]);
    free(h->names);
    free(h->rows);
    free(h);
}

int deja_health_compute(deja_store *store, const deja_filter *filter,
                        const deja_health_options *opts, deja_health **out)
{
    static const deja_health_options dflt = DEJA_HEALTH_OPTIONS_INIT;
    const deja_health_options *o = opts ? opts : &dflt;
    const size_t nthreads = deja__watch_threads();
    health_state *states = NULL;
    void *ptrs[8];
    health_impl *h = NULL;
    sorted_row *sorted = NULL;
    deja__map groups; /* group -> int64_t newest */
    deja_store_stats st;
    uint64_t bad = 0;
    size_t nrows = 0;
    int rc;

    *out = NULL;
    deja__map_init(&groups, sizeof(int64_t));
    if (o->version != DEJA_HEALTH_OPTIONS_VERSION)
        return deja__error_set(DEJA_EVERSION, "health options: version %u, expected %u",
                               o->version, DEJA_HEALTH_OPTIONS_VERSION);
    if (o->by != DEJA_GROUP_MODEL && o->by != DEJA_GROUP_VERSION && o->by != DEJA_GROUP_TAG)
        return deja__error_set(DEJA_EINVAL, "health: unknown grouping %d", (int)o->by);
    if (o->by == DEJA_GROUP_TAG && (o->tag_key == NULL || o->tag_key[0] == '\0'))
        return deja__error_set(DEJA_EINVAL, "health: grouping by tag needs a tag key");
    if (o->every_ns < 0)
        return deja__error_set(DEJA_EINVAL, "health: the bucket width must be positive");
    states = calloc(nthreads, sizeof *states);
    if (states == NULL)
        return deja__error_set(DEJA_ENOMEM, "health: out of memory");
    for (size_t i = 0; i < nthreads; i++) {
        states[i].o = o;
        deja__map_init(&states[i].rows, sizeof(acc));
        ptrs[i] = &states[i];
    }
    rc = deja__watch_scan(store, filter, ptrs, nthreads, add_trace, &bad);
    for (size_t i = 0; i < nthreads && rc == 0; i++)
        rc = states[i].rc;
    for (size_t i = 1; i < nthreads && rc == 0; i++)
        rc = merge_state(&states[0], &states[i]);
    if (rc == 0)
        rc = deja_store_stats_get(store, &st);
    if (rc != 0)
        goto cleanup;

    nrows = states[0].rows.n;
    h = calloc(1, sizeof *h);
    sorted = calloc(nrows ? nrows : 1, sizeof *sorted);
    if (h == NULL || sorted == NULL)
        goto nomem;
    h->rows = calloc(nrows ? nrows : 1, sizeof *h->rows);
    if (h->rows == NULL)
        goto nomem;
    for (size_t i = 0; i < nrows; i++) {
        acc *a = states[0].rows.values[i];
        const char *key = states[0].rows.keys[i];
        const char *sep = strchr(key, '\x1f');
        int64_t *last;

        sorted[i].a = a;
        sorted[i].group = key;
        sorted[i].glen = sep ? (size_t)(sep - key) : strlen(key);
        last = deja__map_get(&groups, key, sorted[i].glen, NULL);
        if (last == NULL)
            goto nomem;
        if (*last < a->row.last_ns)
            *last = a->row.last_ns;
    }
    h->names = calloc(groups.n ? groups.n : 1, sizeof *h->names);
    if (h->names == NULL)
        goto nomem;
    for (size_t i = 0; i < nrows; i++) {
        /* Cut the key at the separator: the group's name. */
        ((char *)sorted[i].group)[sorted[i].glen] = '\0';
        sorted[i].group_last = *(int64_t *)deja__map_find(&groups, sorted[i].group, sorted[i].glen);
    }
    qsort(sorted, nrows, sizeof *sorted, row_cmp);
    for (size_t i = 0; i < nrows; i++) {
        acc *a = sorted[i].a;
        deja_health_row *r = &h->rows[i];

        if (h->nnames == 0 || strcmp(h->names[h->nnames - 1], sorted[i].group) != 0) {
            h->names[h->nnames] = strdup(sorted[i].group);
            if (h->names[h->nnames] == NULL)
                goto nomem;
            h->nnames++;
        }
        *r = a->row;
        r->group = h->names[h->nnames - 1];
        r->bucket_ns = a->bucket_ns;
        r->latency_p50_ns = deja__sketch_quantile(&a->latency, 0.50);
        r->latency_p95_ns = deja__sketch_quantile(&a->latency, 0.95);
        r->latency_p99_ns = deja__sketch_quantile(&a->latency, 0.99);
        r->latency_max_ns = a->latency.max;
    }
    /* Losses are counted per model version, without a time: per group when
     * grouping by model or version without buckets. */
    if (o->every_ns == 0 && o->by != DEJA_GROUP_TAG) {
        rc = join_lost(store, o, h->rows, nrows);
        if (rc != 0)
            goto cleanup;
    }
    h->pub.rows = h->rows;
    h->pub.nrows = nrows;
    h->pub.traces = states[0].traces;
    h->pub.bad = bad;
    h->pub.dropped = st.dropped;
    h->pub.sampled_out = st.sampled_out;
    h->pub.redacted = st.redacted;
    *out = &h->pub;
    h = NULL;
    goto cleanup;

nomem:
    rc = deja__error_set(DEJA_ENOMEM, "health: out of memory");
cleanup:
    deja_health_free(h ? &h->pub : NULL);
    free(sorted);
    deja__map_free(&groups);
    for (size_t i = 0; i < nthreads; i++)
        state_free(&states[i]);
    free(states);
    return rc;
}
