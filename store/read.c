/*
 * store/read.c -- reading the store: resolve id prefixes, get traces, blobs
 * and environments, list with filters (streaming, newest first), stats.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store_internal.h"

int deja__blob_check(const deja_digest *blob, const void *data, size_t size)
{
    const deja_digest got = deja_digest_of(data, size);
    char hex[33];

    if (memcmp(got.bytes, blob->bytes, 16) == 0)
        return 0;
    deja_digest_format(blob, hex);
    return deja__error_set(DEJA_ECORRUPT, "blob %s: content does not match its digest", hex);
}

int deja__blob_malformed(const deja_digest *blob, const char *what, const char *why)
{
    char hex[33];

    deja_digest_format(blob, hex);
    return deja__error_set(DEJA_ECORRUPT, "blob %s: %s is malformed (%s)", hex, what, why);
}

/* Read the blob `digest` inside `txn`: a whole record (the only kind before
 * chunking) or a chunk list to reassemble; the payload is checked against
 * its digest. Messages are built on failure only. The caller frees `*data`. */
int deja__blob_get_txn(deja_store *store, MDB_txn *txn, const deja_digest *digest, void **data,
                       size_t *size)
{
    MDB_val k = {16, (void *)digest->bytes}, v;
    char hex[33], what[48], why[400];
    const char *msg;
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc;

    *data = NULL;
    *size = 0;
    rc = mdb_get(txn, store->blobs, &k, &v);
    if (rc == 0 && v.mv_size > 0 && ((const uint8_t *)v.mv_data)[0] == DEJA__CHUNKED_MAGIC)
        return deja__chunked_read(store, txn, digest, v.mv_data, v.mv_size, 1, data, size);
    if (rc == 0 && v.mv_size > 0 && ((const uint8_t *)v.mv_data)[0] == DEJA__DELTA_MAGIC)
        return deja__delta_read(store, txn, digest, v.mv_data, v.mv_size, data, size);
    if (rc == 0) {
        rc = deja__record_decode(store, txn, v.mv_data, v.mv_size, "blob", &buf, &n);
        if (rc == 0) {
            rc = deja__blob_check(digest, buf, n);
            if (rc == 0) {
                *data = buf;
                *size = n;
                return 0;
            }
            free(buf);
            return rc;
        }
        /* "blob: why" from the record becomes "blob DIGEST: why" */
        msg = deja_error_last();
        if (strncmp(msg, "blob: ", 6) == 0)
            msg += 6;
        snprintf(why, sizeof why, "%s", msg);
        deja_digest_format(digest, hex);
        return deja__error_set(rc, "blob %s: %s", hex, why);
    }
    deja_digest_format(digest, hex);
    if (rc == MDB_NOTFOUND)
        return deja__error_set(DEJA_ENOTFOUND, "blob %s is missing", hex);
    snprintf(what, sizeof what, "blob %s", hex);
    return deja__mdb_error(rc, what);
}

/* Read a blob's payload in a read transaction of its own. */
int deja__store_blob_get(deja_store *store, const deja_digest *digest, void **data, size_t *size)
{
    MDB_txn *txn = NULL;
    int rc = deja__rtxn_begin(store, &txn);

    if (rc != 0)
        return rc;
    rc = deja__blob_get_txn(store, txn, digest, data, size);
    deja__rtxn_end(store, txn);
    return rc;
}

/* deja__record_visit's callback: decode the trace record's bytes into
 * the deja_trace ** at `arg` (the record is copied into the trace). */
static int decode_trace(const uint8_t *data, size_t size, void *arg)
{
    return deja__trace_decode(data, size, arg);
}

/* Decode the trace record stored under `id` in `txn`, blobs not loaded.
 * DEJA_ENOTFOUND when there is none. The id is formatted for messages on
 * failure only. */
int deja__trace_read_txn(deja_store *store, MDB_txn *txn, const deja_id *id, deja_trace **out)
{
    MDB_val k = {16, (void *)id->bytes}, v;
    char text[DEJA_ID_STRLEN + 1], what[48], why[400];
    const char *msg;
    int rc, decoded = 0;

    *out = NULL;
    rc = mdb_get(txn, store->traces, &k, &v);
    if (rc != 0) {
        deja_id_format(id, text);
        if (rc == MDB_NOTFOUND)
            return deja__error_set(DEJA_ENOTFOUND, "no trace %s", text);
        snprintf(what, sizeof what, "trace %s", text);
        return deja__mdb_error(rc, what);
    }
    {
        const uint8_t *refs, *rec;
        size_t nrefs, nrec;

        if (deja__trace_value_split(v.mv_data, v.mv_size, &refs, &nrefs, &rec, &nrec) != 0)
            rc = deja__error_set(DEJA_ECORRUPT, "trace: its references are malformed");
        else
            rc = deja__record_visit(store, txn, rec, nrec, "trace", decode_trace, out, &decoded);
    }
    if (rc == 0 && memcmp((*out)->id.bytes, id->bytes, 16) == 0)
        return 0;
    deja_id_format(id, text);
    if (rc == 0) {
        deja_trace_free(*out);
        *out = NULL;
        return deja__error_set(DEJA_ECORRUPT, "trace %s: record holds another id", text);
    }
    /* Name the trace: "trace: why" from the record becomes "trace ID: why". */
    msg = deja_error_last();
    if (!decoded && strncmp(msg, "trace: ", 7) == 0)
        msg += 7;
    snprintf(why, sizeof why, "%s", msg);
    return deja__error_set(rc, "trace %s: %s", text, why);
}

/* Load every blob-stored payload of `trace` (inputs then outputs). */
static int attach_blobs(deja_store *store, MDB_txn *txn, deja_trace *trace)
{
    char text[DEJA_ID_STRLEN + 1], hex[33];
    const deja_digest *d;
    void *data;
    size_t size;
    int rc;

    for (int side = 0; side < 2; side++) {
        size_t n = side == DEJA_INPUT ? trace->ninputs : trace->noutputs;

        for (size_t i = 0; i < n; i++) {
            d = deja__trace_blob(trace, (deja_side)side, i);
            if (d == NULL)
                continue;
            rc = deja__blob_get_txn(store, txn, d, &data, &size);
            if (rc == 0)
                rc = deja__trace_attach(trace, (deja_side)side, i, data, size);
            if (rc == 0)
                continue;
            deja_id_format(&trace->id, text);
            if (rc == DEJA_ENOTFOUND) {
                deja_digest_format(d, hex);
                return deja__error_set(DEJA_ECORRUPT, "trace %s: blob %s is missing", text, hex);
            }
            return deja__error_wrap(rc, "trace %s: ", text);
        }
    }
    return 0;
}

/* Read and decode a trace with all its payloads. */
int deja_trace_get(deja_store *store, const deja_id *id, deja_trace **out)
{
    MDB_txn *txn = NULL;
    deja_trace *trace = NULL;
    int rc;

    *out = NULL;
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    rc = deja__trace_read_txn(store, txn, id, &trace);
    if (rc == 0)
        rc = attach_blobs(store, txn, trace);
    deja__rtxn_end(store, txn);
    if (rc != 0) {
        deja_trace_free(trace);
        return rc;
    }
    *out = trace;
    return 0;
}

/* Find the one trace whose printed id starts with `prefix`. The prefix
 * covers the id range [prefix000..., prefixZZZ...]. */
int deja_store_resolve(deja_store *store, const char *prefix, deja_id *out)
{
    char lo_text[DEJA_ID_STRLEN + 1], hi_text[DEJA_ID_STRLEN + 1];
    char a[DEJA_ID_STRLEN + 1], b[DEJA_ID_STRLEN + 1];
    deja_id lo, hi, first;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    size_t n = prefix ? strlen(prefix) : 0;
    int rc;

    if (n == 0 || n > DEJA_ID_STRLEN)
        return deja__error_set(DEJA_EINVAL, "'%s' is not an id prefix", prefix ? prefix : "");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)prefix[i] >= 0x80 || prefix[i] == 'u' || prefix[i] == 'U')
            return deja__error_set(DEJA_EINVAL, "'%s' is not an id prefix", prefix);
    memset(lo_text, '0', DEJA_ID_STRLEN);
    memset(hi_text, 'Z', DEJA_ID_STRLEN);
    memcpy(lo_text, prefix, n);
    memcpy(hi_text, prefix, n);
    lo_text[DEJA_ID_STRLEN] = hi_text[DEJA_ID_STRLEN] = '\0';
    if (deja_id_parse(&lo, lo_text) != 0 || deja_id_parse(&hi, hi_text) != 0)
        return deja__error_set(DEJA_EINVAL, "'%s' is not an id prefix", prefix);
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_open(txn, store->traces, &cur);
    if (rc != 0) {
        rc = deja__mdb_error(rc, "resolving an id");
        goto cleanup;
    }
    k.mv_size = 16;
    k.mv_data = lo.bytes;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND ||
        (rc == 0 && (k.mv_size != 16 || memcmp(k.mv_data, hi.bytes, 16) > 0))) {
        rc = deja__error_set(DEJA_ENOTFOUND, "no trace with id prefix '%s'", prefix);
        goto cleanup;
    }
    if (rc != 0) {
        rc = deja__mdb_error(rc, "resolving an id");
        goto cleanup;
    }
    memcpy(first.bytes, k.mv_data, 16);
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    if (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, hi.bytes, 16) <= 0) {
        deja_id second;

        memcpy(second.bytes, k.mv_data, 16);
        deja_id_format(&first, a);
        deja_id_format(&second, b);
        rc = deja__error_set(DEJA_EAMBIGUOUS, "id prefix '%s' matches several traces (%s, %s)",
                             prefix, a, b);
        goto cleanup;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rc = deja__mdb_error(rc, "resolving an id");
        goto cleanup;
    }
    *out = first;
    rc = 0;

cleanup:
    if (cur != NULL)
        mdb_cursor_close(cur);
    deja__rtxn_end(store, txn);
    return rc;
}

/* ------------------------------------------------------------------------
 * Listing. A walker goes backwards over the keys `prefix` + 16-byte id of
 * one database, between two ids; several walkers (one per model version)
 * are merged newest first.
 * ---------------------------------------------------------------------- */

typedef struct walker {
    deja__ix_iter it;
    int values; /* a walk of `traces` itself: it.value is the trace's */
} walker;

typedef struct list_state {
    deja_store *store;
    MDB_txn *txn;
    const deja_filter *filter;
    deja_id lo, hi;
    walker *walkers;
    size_t nwalkers, cap;
} list_state;

/* Add a walker over the key `prefix` of index `kind` (store/ix.h), or for
 * `kind` -1 over database `dbi` keyed by id (plen 0), and start it on the
 * newest id within the bounds. */
static int walker_add(list_state *s, int kind, MDB_dbi dbi, const void *prefix, size_t plen)
{
    walker *w;
    int rc;

    if (plen + 16 > sizeof w->it.key)
        return 1; /* no key this long can exist: nothing to walk */
    if (s->nwalkers == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        walker *grown = realloc(s->walkers, cap * sizeof *grown);

        if (grown == NULL)
            return deja__error_set(DEJA_ENOMEM, "listing: out of memory");
        s->walkers = grown;
        s->cap = cap;
    }
    w = &s->walkers[s->nwalkers];
    if (kind >= 0)
        rc = deja__ix_iter_open_kind(&w->it, s->store, s->txn, (deja__ix_kind)kind, prefix, plen);
    else
        rc = deja__ix_iter_open(&w->it, s->txn, dbi, 0, prefix, plen);
    if (rc != 0)
        return rc;
    w->values = kind < 0 && dbi == s->store->traces;
    s->nwalkers++;
    return deja__ix_iter_last(&w->it, &s->lo, &s->hi);
}

/* deja__ix_keys callback of walkers_for_model: one walker per version. */
static int add_version(const uint8_t *key, size_t n, const uint8_t *id, void *payload)
{
    list_state *s = payload;
    int rc = walker_add(s, DEJA__IX_MODEL, 0, key, n);

    (void)id;
    return rc > 0 ? 0 : rc;
}

/* One walker per version of model `name`: its keys "name\0version\0". */
static int walkers_for_model(list_state *s, const char *name)
{
    return deja__ix_keys(s->store, s->txn, DEJA__IX_MODEL, name, strlen(name) + 1, add_version,
                         s);
}

/* Whether the filter asks for pinned traces only (a field of version 2). */
static int wants_pinned(const deja_filter *f)
{
    return f->version >= 2 && f->pinned;
}

/* Whether a decoded trace passes every filter but the pin and the limit;
 * see store/store.h. */
int deja__trace_matches(const deja_trace *t, const deja_filter *f)
{
    const char *name = t->model_name ? t->model_name : "";
    const char *version = t->model_version ? t->model_version : "";

    if (f->model != NULL && strcmp(f->model, name) != 0)
        return 0;
    if (f->model_version != NULL && strcmp(f->model_version, version) != 0)
        return 0;
    if (f->since_ns != 0 && t->start_ns < f->since_ns)
        return 0;
    if (f->until_ns != 0 && t->start_ns >= f->until_ns)
        return 0;
    if (f->status >= 0 && (int)t->status != f->status)
        return 0;
    for (size_t i = 0; i < f->ntags; i++) {
        size_t j;

        for (j = 0; j < t->ntags; j++)
            if (strcmp(t->tags[j].key ? t->tags[j].key : "",
                       f->tags[i].key ? f->tags[i].key : "") == 0 &&
                strcmp(t->tags[j].value ? t->tags[j].value : "",
                       f->tags[i].value ? f->tags[i].value : "") == 0)
                break;
        if (j == t->ntags)
            return 0;
    }
    return 1;
}

/* The id made of `ms` then ten `fill` bytes; ms is clamped to 48 bits. */
static void id_at(deja_id *id, int64_t ms, uint8_t fill)
{
    if (ms < 0)
        ms = 0;
    if (ms > (int64_t)0xFFFFFFFFFFFF)
        ms = (int64_t)0xFFFFFFFFFFFF;
    for (int i = 0; i < 6; i++)
        id->bytes[i] = (uint8_t)((uint64_t)ms >> (8 * (5 - i)));
    memset(id->bytes + 6, fill, 10);
}

/* Floor division of nanoseconds to milliseconds. */
static int64_t ns_to_ms(int64_t ns)
{
    return ns >= 0 ? ns / 1000000 : -((-ns + 999999) / 1000000);
}

/* Ids are stamped when a span begins, start_ns too, from clocks read a
 * moment apart: the id window is widened by this much and start_ns is
 * checked exactly on each decoded trace. */
#define ID_SLACK_MS 1000

/* List the traces matching `filter`, newest first. */
int deja_store_list(deja_store *store, const deja_filter *filter, deja_trace_cb cb, deja_bad_cb bad,
                    void *payload)
{
    return deja__store_list_between(store, filter, NULL, NULL, cb, bad, payload);
}

/* The value of trace `id` in `txn`, for a listing: DEJA_ENOTFOUND or an
 * LMDB error naming the trace. */
static int value_txn(deja_store *store, MDB_txn *txn, const deja_id *id, MDB_val *v)
{
    MDB_val k = {16, (void *)id->bytes};
    char text[DEJA_ID_STRLEN + 1], what[48];
    int rc = mdb_get(txn, store->traces, &k, v);

    if (rc == 0)
        return 0;
    deja_id_format(id, text);
    if (rc == MDB_NOTFOUND)
        return deja__error_set(DEJA_ENOTFOUND, "no trace %s", text);
    snprintf(what, sizeof what, "trace %s", text);
    return deja__mdb_error(rc, what);
}

static int list_between(deja_store *store, const deja_filter *filter, const deja_id *lo_id,
                        const deja_id *hi_id, deja_trace_cb cb, deja__summary_cb light,
                        deja_bad_cb bad, void *payload);

/* deja_store_list, also bounded by ids: lo <= id <= hi (either may be NULL). */
int deja__store_list_between(deja_store *store, const deja_filter *filter, const deja_id *lo_id,
                             const deja_id *hi_id, deja_trace_cb cb, deja_bad_cb bad,
                             void *payload)
{
    return list_between(store, filter, lo_id, hi_id, cb, NULL, bad, payload);
}

/* The same, the callback seeing each trace's summary only. */
int deja__store_peek_between(deja_store *store, const deja_filter *filter, const deja_id *lo_id,
                             const deja_id *hi_id, deja__summary_cb cb, deja_bad_cb bad,
                             void *payload)
{
    return list_between(store, filter, lo_id, hi_id, NULL, cb, bad, payload);
}

/* The walk of both: full traces to `cb`, or summaries to `light`. A trace
 * whose value carries a summary that the filter refuses is skipped without
 * decompressing its record, in both. */
static int list_between(deja_store *store, const deja_filter *filter, const deja_id *lo_id,
                        const deja_id *hi_id, deja_trace_cb cb, deja__summary_cb light,
                        deja_bad_cb bad, void *payload)
{
    deja__summary_reader sr;
    static const deja_filter none = DEJA_FILTER_INIT;
    const deja_filter *f = filter ? filter : &none;
    list_state s;
    uint8_t key[512];
    size_t listed = 0, n, maxkey;
    int rc, chosen = 0;

    memset(&s, 0, sizeof s);
    memset(&sr, 0, sizeof sr);
    s.store = store;
    s.filter = f;
    id_at(&s.lo, f->since_ns != 0 ? ns_to_ms(f->since_ns) - ID_SLACK_MS : 0, 0x00);
    if (f->until_ns != 0)
        id_at(&s.hi, ns_to_ms(f->until_ns - 1) + ID_SLACK_MS, 0xFF);
    else
        memset(s.hi.bytes, 0xFF, 16);
    if (lo_id != NULL && memcmp(lo_id->bytes, s.lo.bytes, 16) > 0)
        s.lo = *lo_id;
    if (hi_id != NULL && memcmp(hi_id->bytes, s.hi.bytes, 16) < 0)
        s.hi = *hi_id;
    if (memcmp(s.lo.bytes, s.hi.bytes, 16) > 0)
        return 0;
    rc = deja__rtxn_begin(store, &s.txn);
    if (rc != 0)
        return rc;

    maxkey = (size_t)mdb_env_get_maxkeysize(store->env);
    if (maxkey > sizeof key)
        maxkey = sizeof key;
    /* Walk the narrowest index whose key fits; every filter is checked again
     * on the decoded trace, so any walk that covers the matches is right.
     * Pins are few: their database is the narrowest of all. */
    if (wants_pinned(f)) {
        if (!store->has_pins) {
            deja__rtxn_end(store, s.txn);
            return 0;
        }
        rc = walker_add(&s, -1, store->pins, key, 0);
        chosen = 1;
    }
    for (size_t i = 0; i < f->ntags && !chosen; i++) {
        const char *k = f->tags[i].key ? f->tags[i].key : "";
        const char *v = f->tags[i].value ? f->tags[i].value : "";

        n = strlen(k) + 1 + strlen(v) + 1;
        if (n + 16 <= maxkey) {
            snprintf((char *)key, sizeof key, "%s=%s", k, v);
            rc = walker_add(&s, DEJA__IX_TAG, 0, key, n);
            chosen = 1;
        }
    }
    if (!chosen && f->model != NULL && f->model_version != NULL) {
        size_t mn = strlen(f->model), vn = strlen(f->model_version);

        n = mn + vn + 2;
        if (n + 16 <= maxkey) {
            memcpy(key, f->model, mn + 1);
            memcpy(key + mn + 1, f->model_version, vn + 1);
            rc = walker_add(&s, DEJA__IX_MODEL, 0, key, n);
            chosen = 1;
        }
    }
    if (!chosen && f->model != NULL && strlen(f->model) + 2 + 16 <= maxkey) {
        rc = walkers_for_model(&s, f->model);
        chosen = 1;
    }
    if (!chosen && f->status >= 0) {
        key[0] = (uint8_t)f->status;
        rc = walker_add(&s, DEJA__IX_STATUS, 0, key, 1);
        chosen = 1;
    }
    if (!chosen)
        rc = walker_add(&s, -1, store->traces, key, 0);
    if (rc > 0)
        rc = 0;

    while (rc == 0 && (f->limit == 0 || listed < f->limit)) {
        walker *best = NULL;
        deja_trace *t = NULL;
        const deja_trace *view = NULL;
        deja__trace_summary sum;
        MDB_val v;
        char text[DEJA_ID_STRLEN + 1];
        deja_id id;
        int stop = 0;

        for (size_t i = 0; i < s.nwalkers; i++)
            if (s.walkers[i].it.valid &&
                (best == NULL || memcmp(s.walkers[i].it.id.bytes, best->it.id.bytes, 16) > 0))
                best = &s.walkers[i];
        if (best == NULL)
            break;
        id = best->it.id;
        if (best->values) /* read with the key: no second lookup */
            v = best->it.value;
        else
            rc = value_txn(store, s.txn, &id, &v);
        if (rc == 0 && light != NULL) {
            rc = deja__trace_summary_read(store, s.txn, &id, &v, &sr, &sum);
            view = rc == 0 ? sum.trace : NULL;
        } else if (rc == 0 && deja__trace_summary_of(&id, &v, &sr, &sum) &&
                   !deja__trace_matches(sum.trace, f)) {
            rc = deja__ix_iter_prev(&best->it); /* refused by its summary: not decoded */
            continue;
        } else if (rc == 0) {
            rc = deja__trace_read_txn(store, s.txn, &id, &t);
            view = t;
        }
        if (rc == 0) {
            if (deja__trace_matches(view, f) &&
                (!wants_pinned(f) || deja__pinned_txn(store, s.txn, &id))) {
                listed++;
                stop = (light != NULL ? light(&sum, payload) : cb(t, payload)) != 0;
            }
            deja_trace_free(t);
        } else if (rc == DEJA_ENOTFOUND || rc == DEJA_ECORRUPT || rc == DEJA_ENOMEM) {
            if (rc == DEJA_ENOTFOUND) {
                deja_id_format(&id, text);
                rc =
                    deja__error_set(DEJA_ECORRUPT, "index entry for trace %s: no such trace", text);
            }
            stop = bad != NULL && bad(&id, rc, deja_error_last(), payload) != 0;
            rc = 0;
        } else {
            break;
        }
        if (stop)
            break;
        rc = deja__ix_iter_prev(&best->it);
    }

    for (size_t i = 0; i < s.nwalkers; i++)
        deja__ix_iter_close(&s.walkers[i].it);
    free(s.walkers);
    deja__rtxn_end(store, s.txn);
    deja__summary_reader_free(&sr);
    return rc;
}

/* Store-wide figures. */
int deja_store_stats_get(deja_store *store, deja_store_stats *out)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    struct stat fs;
    char path[4096];
    int rc;

    memset(out, 0, sizeof *out);
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    if ((rc = mdb_stat(txn, store->traces, &st)) != 0)
        goto lmdb_error;
    out->traces = st.ms_entries;
    if ((rc = mdb_stat(txn, store->blobs, &st)) != 0)
        goto lmdb_error;
    out->blobs = st.ms_entries;
    if ((rc = mdb_stat(txn, store->envs, &st)) != 0)
        goto lmdb_error;
    out->envs = st.ms_entries;
    out->raw_bytes = deja__meta_u64(store, txn, "count/raw_bytes");
    out->unique_bytes = deja__meta_u64(store, txn, "count/unique_bytes");
    out->stored_bytes = deja__meta_u64(store, txn, "count/stored_bytes");
    out->dropped = deja__meta_u64(store, txn, "count/dropped");
    out->sampled_out = deja__meta_u64(store, txn, "count/sampled_out");
    out->redacted = deja__meta_u64(store, txn, "count/redacted");
    /* gc subtracts what it deletes from raw_bytes approximately (what a
     * deleted trace added when written): never report fewer bytes before
     * dedup than after, nor any content bytes for an empty store. */
    if (out->raw_bytes < out->unique_bytes)
        out->raw_bytes = out->unique_bytes;
    if (out->traces == 0 && out->blobs == 0 && out->envs == 0)
        out->raw_bytes = out->unique_bytes = out->stored_bytes = 0;
    rc = deja__dict_count(store, txn, &out->dictionaries);
    if (rc == 0)
        rc = deja__meta_u32(store, txn, "format", &out->format, NULL);
    if (rc != 0)
        goto cleanup;
    snprintf(path, sizeof path, "%s/data.mdb", store->path);
    if (stat(path, &fs) == 0)
        out->file_bytes = (uint64_t)fs.st_size;
    goto cleanup;

lmdb_error:
    rc = deja__mdb_error(rc, "reading store statistics");
cleanup:
    deja__rtxn_end(store, txn);
    return rc;
}

/* Read the environment stored under `digest`, checking its digest. */
int deja_store_env_get(deja_store *store, const deja_digest *digest, deja_env **out)
{
    MDB_txn *txn = NULL;
    MDB_val k = {16, (void *)digest->bytes}, v;
    char hex[33], what[56];
    uint8_t *raw = NULL;
    size_t n = 0;
    deja_digest got;
    int rc;

    *out = NULL;
    deja_digest_format(digest, hex);
    snprintf(what, sizeof what, "environment %s", hex);
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_get(txn, store->envs, &k, &v);
    if (rc == MDB_NOTFOUND) {
        rc = deja__error_set(DEJA_ENOTFOUND, "no environment %s", hex);
        goto cleanup;
    }
    if (rc != 0) {
        rc = deja__mdb_error(rc, what);
        goto cleanup;
    }
    rc = deja__record_decode(store, txn, v.mv_data, v.mv_size, what, &raw, &n);
    if (rc != 0)
        goto cleanup;
    got = deja_digest_of(raw, n);
    if (memcmp(got.bytes, digest->bytes, 16) != 0) {
        rc = deja__error_set(DEJA_ECORRUPT, "%s: content does not match its digest", what);
        goto cleanup;
    }
    rc = deja__env_decode(raw, n, out);
    if (rc != 0)
        deja__error_wrap(rc, "%s: ", what);

cleanup:
    free(raw);
    deja__rtxn_end(store, txn);
    return rc;
}
