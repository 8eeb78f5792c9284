/*
 * store/gc.c -- deja_store_gc: retention. Delete the traces older than a
 * time (with their index entries), then sweep the blobs, chunks and
 * environments that no remaining trace references, in one write
 * transaction. With a size target (the disk budget), evict the oldest
 * traces that are neither pinned nor protected, round after round, until
 * the pages in use fit the target. Pinned traces are never deleted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"

/* A set of 16-byte digests: open addressing, linear probing, sized once
 * from the number of records of the database it mirrors (only digests
 * present there are inserted), so its memory is bounded by the store. */
typedef struct digest_set {
    uint8_t *keys; /* cap * 16 bytes */
    uint8_t *used; /* cap flags */
    size_t cap;    /* a power of two, above twice the possible entries */
} digest_set;

/* Make `s` room for `entries` digests. */
static int set_init(digest_set *s, size_t entries)
{
    size_t cap = 16;

    memset(s, 0, sizeof *s);
    while (cap / 2 <= entries) {
        if (cap > SIZE_MAX / 64)
            return deja__error_set(DEJA_ENOMEM, "gc: %zu records are beyond the bound", entries);
        cap *= 2;
    }
    s->keys = malloc(cap * 16);
    s->used = calloc(cap, 1);
    if (s->keys == NULL || s->used == NULL) {
        free(s->keys);
        free(s->used);
        memset(s, 0, sizeof *s);
        return deja__error_set(DEJA_ENOMEM, "gc: out of memory for %zu digests", entries);
    }
    s->cap = cap;
    return 0;
}

static void set_free(digest_set *s)
{
    free(s->keys);
    free(s->used);
    memset(s, 0, sizeof *s);
}

/* The slot of `d` in `s`: where it is, or the empty slot where it goes. */
static size_t set_slot(const digest_set *s, const uint8_t *d)
{
    uint64_t h = 0;
    size_t i;

    memcpy(&h, d, sizeof h); /* digests are uniform already */
    for (i = (size_t)h & (s->cap - 1); s->used[i]; i = (i + 1) & (s->cap - 1))
        if (memcmp(s->keys + i * 16, d, 16) == 0)
            break;
    return i;
}

static int set_has(const digest_set *s, const uint8_t *d)
{
    return s->used[set_slot(s, d)];
}

/* Insert `d` (the caller keeps the count within the size given to init). */
static void set_add(digest_set *s, const uint8_t *d)
{
    size_t i = set_slot(s, d);

    if (!s->used[i]) {
        s->used[i] = 1;
        memcpy(s->keys + i * 16, d, 16);
    }
}

typedef struct gc_state {
    const deja_gc_options *opts;
    deja_gc_stats stats;
    uint64_t unique_freed; /* bytes before compression of what was deleted */
    uint64_t raw_freed;    /* raw bytes attributed to the deleted traces */
    digest_set blobs, chunks, envs;
    int unknown_refs;   /* a remaining trace did not decode: sweep no blob or env */
    int unknown_chunks; /* a kept blob's chunk list did not parse: sweep no chunk */
    int dry;            /* a dry run: w->txn is a read transaction, nothing is written */
    const deja_digest *keep_env; /* an environment a live writer uses, or NULL */
    uint64_t max_bytes;          /* evict down to this many bytes in use; 0: no target */
    unsigned protect_percent;    /* share of what stays that protected traces may keep */
    uint64_t protect_bytes;      /* what protected traces may keep from eviction */
    uint64_t protected_bytes;    /* estimated bytes of the protected traces left */
    uint64_t estimated_bytes;    /* estimated bytes of all the traces left */
    char protect_tag[DEJA__PROTECT_TAG_MAX + 1];
    uint64_t evicted, evicted_bytes;
    int evict_only;   /* the budget's path: no sweep unless an evicted trace had blobs */
    int evicted_refs; /* an evicted trace referenced a blob */
    deja__refs refs;  /* the trace at hand: from its refs, not decoded */
    uint64_t done, total; /* records marked and swept, of all (progress) */
} gc_state;

/* Map an LMDB failure in `w`, noting a full map so that the write reruns. */
static int gc_mdb_error(deja__wtxn *w, int rc, const char *what)
{
    if (rc == MDB_MAP_FULL)
        w->map_full = 1;
    return deja__mdb_error(rc, what);
}

/* Whether `w` holds a read transaction (a dry run): nothing is written. */
static int read_only(const deja__wtxn *w)
{
    return w->dry_run;
}

/* Delete `key` from `dbi`; an absent key is fine. A dry run deletes
 * nothing. */
static int del_key(deja__wtxn *w, MDB_dbi dbi, const void *key, size_t n, const char *what)
{
    MDB_val k = {n, (void *)key};
    int rc = read_only(w) ? 0 : mdb_del(w->txn, dbi, &k, NULL);

    if (rc == 0 || rc == MDB_NOTFOUND)
        return 0;
    return gc_mdb_error(w, rc, what);
}

/* The raw size a record's header claims ('D' records), else its size. */
static uint64_t record_raw_size(const MDB_val *v)
{
    const uint8_t *p = v->mv_data;

    if (v->mv_size < DEJA__RECORD_HEADER || p[0] != DEJA__RECORD_MAGIC)
        return v->mv_size;
    return (uint64_t)p[6] | (uint64_t)p[7] << 8 | (uint64_t)p[8] << 16 | (uint64_t)p[9] << 24;
}

/* The raw size of the record of a trace value (behind its refs, if any). */
static uint64_t value_raw_size(const MDB_val *v)
{
    const uint8_t *refs, *rec;
    size_t nrefs, nrec;

    if (deja__trace_value_split(v->mv_data, v->mv_size, &refs, &nrefs, &rec, &nrec) == 0) {
        const MDB_val r = {nrec, (void *)rec};

        return record_raw_size(&r);
    }
    return v->mv_size;
}

/* Subtract `delta` from the counter meta "count/<name>", never below 0. */
static int count_sub(deja__wtxn *w, const char *name, uint64_t delta)
{
    char key[64];
    uint64_t x;

    if (delta == 0 || read_only(w))
        return 0;
    snprintf(key, sizeof key, "count/%s", name);
    x = deja__meta_u64(w->store, w->txn, key);
    return deja__wtxn_meta_put_u64(w, key, x > delta ? x - delta : 0);
}

/* The cursors a collection deletes through, one per database, kept for
 * the whole transaction: keys deleted oldest first sit next to each other,
 * and LMDB finds a key on the page its cursor is on without a search from
 * the root. */
typedef struct del_cursors {
    deja__wtxn *w;
    MDB_dbi dbi[5];
    MDB_cursor *cur[5];
    size_t n;
} del_cursors;

/* The cursor of `c` on `dbi` in `*cur`, opened and kept on first use; when
 * `c` has no place left, one of the caller's own (`*own` set: close it). */
static int cursor_of(del_cursors *c, MDB_dbi dbi, MDB_cursor **cur, int *own)
{
    int rc;

    *own = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->dbi[i] == dbi) {
            *cur = c->cur[i];
            return 0;
        }
    rc = mdb_cursor_open(c->w->txn, dbi, cur);
    if (rc != 0)
        return rc;
    if (c->n == sizeof c->cur / sizeof c->cur[0]) {
        *own = 1;
    } else {
        c->dbi[c->n] = dbi;
        c->cur[c->n++] = *cur;
    }
    return 0;
}

/* Delete `key` from `dbi` through its cursor in `c`; an absent key is
 * fine. A dry run deletes nothing. `what` names the database in errors. */
static int cursor_del(del_cursors *c, MDB_dbi dbi, const void *key, size_t n, const char *what)
{
    MDB_val k = {n, (void *)key}, v;
    MDB_cursor *cur = NULL;
    char msg[64];
    int own = 0, rc;

    if (read_only(c->w))
        return 0;
    rc = cursor_of(c, dbi, &cur, &own);
    if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET);
        if (rc == 0)
            rc = mdb_cursor_del(cur, 0);
        if (own)
            mdb_cursor_close(cur);
    }
    if (rc == 0 || rc == MDB_NOTFOUND)
        return 0;
    snprintf(msg, sizeof msg, "gc: deleting a %s entry", what);
    return gc_mdb_error(c->w, rc, msg);
}

/* Close the cursors of `c` (before its transaction ends). */
static void del_cursors_close(del_cursors *c)
{
    for (size_t i = 0; i < c->n; i++)
        mdb_cursor_close(c->cur[i]);
    c->n = 0;
}

/* What delete_index_entry deletes with: the cursors and the trace's id. */
typedef struct ix_del {
    del_cursors *c;
    const deja_id *id;
} ix_del;

/* deja__ix_each callback of delete_trace: delete one index entry, through
 * the cursor of its index. */
static int delete_index_entry(deja__ix_kind kind, const uint8_t *key, size_t n, const char *what,
                              void *payload)
{
    const ix_del *d = payload;
    del_cursors *c = d->c;
    MDB_cursor *cur = NULL;
    int own = 0, rc;

    (void)what;
    if (read_only(c->w))
        return 0;
    rc = cursor_of(c, deja__ix_dbi(c->w->store, kind), &cur, &own);
    if (rc != 0)
        return gc_mdb_error(c->w, rc, "gc: deleting an index entry");
    rc = deja__ix_del(c->w, cur, kind, key, n, d->id);
    if (own)
        mdb_cursor_close(cur);
    return rc;
}

/* Delete the index entries and the record of trace `t` (its refs view,
 * value `v`), kept aside first while deltas may need it. */
static int delete_trace(del_cursors *c, const deja_trace *t, const MDB_val *v)
{
    int rc = deja__delta_keep(c->w, &t->id, v);

    if (rc == 0) {
        ix_del d = {c, &t->id};
        rc = deja__ix_each(c->w->store, t, delete_index_entry, &d);
    }

    if (rc == 0)
        rc = cursor_del(c, c->w->store->traces, t->id.bytes, 16, "trace");
    if (rc == 0 && c->w->store->has_repeats)
        rc = cursor_del(c, c->w->store->repeats, t->id.bytes, 16, "repeat count");
    return rc;
}

/* Whether eviction spares `t` while protected traces fit their share:
 * errors, traces that broke a validation rule (tag deja.invalid) and traces
 * carrying the protect tag. */
static int is_protected(const gc_state *g, const deja_trace *t)
{
    if (t->status == DEJA_STATUS_ERROR)
        return 1;
    for (size_t i = 0; i < t->ntags; i++) {
        const char *key = t->tags[i].key ? t->tags[i].key : "";

        if (strcmp(key, "deja.invalid") == 0 ||
            (g->protect_tag[0] && strcmp(key, g->protect_tag) == 0))
            return 1;
    }
    return 0;
}

/* The stored bytes of the chunks of blob `d` (value `bv`), 0 when it is
 * stored whole. */
static uint64_t chunks_bytes(deja__wtxn *w, const deja_digest *d, const MDB_val *bv)
{
    deja__chunked it;
    const uint8_t *cd;
    uint64_t n = 0;
    size_t cs;

    if (bv->mv_size == 0 || ((const uint8_t *)bv->mv_data)[0] != DEJA__CHUNKED_MAGIC ||
        !w->store->has_chunks || deja__chunked_parse(bv->mv_data, bv->mv_size, d, &it) != 0)
        return 0;
    while (deja__chunked_next(&it, &cs, &cd)) {
        MDB_val k = {16, (void *)cd}, v;

        if (mdb_get(w->txn, w->store->chunks, &k, &v) == 0)
            n += v.mv_size;
    }
    return n;
}

/* What deleting the trace of refs `r` (value `v`) may free: its value and
 * the stored size of each blob it references, with its chunks (shared ones
 * free less). */
static uint64_t trace_estimate(deja__wtxn *w, const deja__refs *r, const MDB_val *v)
{
    uint64_t n = v->mv_size;

    for (size_t i = 0; i < r->nblobs; i++) {
        MDB_val k = {16, (void *)(r->blobs + i * 16)}, bv;
        deja_digest d;

        if (mdb_get(w->txn, w->store->blobs, &k, &bv) != 0)
            continue;
        memcpy(d.bytes, r->blobs + i * 16, 16);
        n += bv.mv_size;
        n += chunks_bytes(w, &d, &bv);
    }
    return n;
}

/* Step (a): delete the traces older than the cutoff, oldest first; ids are
 * time-ordered, so the walk stops at the first newer one. A trace that does
 * not decode is kept and not counted. */
static int delete_old(deja__wtxn *w, gc_state *g)
{
    const int64_t before = g->opts->before_ns;
    const int64_t cutoff_ms = before >= 0 ? before / 1000000 : -((-before + 999999) / 1000000);
    MDB_cursor *cur = NULL;
    del_cursors dc = {w, {0}, {NULL}, 0};
    MDB_val k, v;
    deja_id id;
    int rc, mrc;

    rc = mdb_cursor_open(w->txn, w->store->traces, &cur);
    if (rc != 0)
        return gc_mdb_error(w, rc, "gc: walking traces");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;) {
        const deja_trace *t;
        int deleted = 0;

        if (k.mv_size != 16) {
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        memcpy(id.bytes, k.mv_data, 16);
        if (deja_id_time_ms(&id) >= cutoff_ms)
            break;
        rc = deja__refs_read(w->store, w->txn, &id, &v, &g->refs);
        t = &g->refs.view;
        if (rc == DEJA_ECORRUPT || rc == DEJA_ENOMEM || rc == DEJA_EINVAL) {
            rc = 0; /* undecodable: kept, not counted */
        } else if (rc != 0) {
            break;
        } else if (!(g->opts->keep_errors && t->status == DEJA_STATUS_ERROR) &&
                   !deja__pinned_txn(w->store, w->txn, &id)) {
            g->stats.traces++;
            g->stats.bytes += v.mv_size;
            g->unique_freed += value_raw_size(&v);
            g->raw_freed += g->refs.raw_bytes;
            rc = delete_trace(&dc, t, &v);
            deleted = 1;
        }
        if (rc != 0)
            break;
        if (deleted && !read_only(w)) {
            k.mv_size = 16;
            k.mv_data = id.bytes;
            mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        } else {
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
    }
    del_cursors_close(&dc);
    mdb_cursor_close(cur);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = gc_mdb_error(w, mrc, "gc: walking traces");
    return rc;
}

/* The number of records in `dbi`. */
static int entries(deja__wtxn *w, MDB_dbi dbi, size_t *out)
{
    MDB_stat st;
    int rc = mdb_stat(w->txn, dbi, &st);

    if (rc != 0)
        return gc_mdb_error(w, rc, "gc: counting records");
    *out = st.ms_entries;
    return 0;
}

/* Add `d` to `s` when it is a key of `dbi` (so that `s` never holds more
 * than the records of `dbi`). */
static int mark(deja__wtxn *w, MDB_dbi dbi, digest_set *s, const uint8_t *d)
{
    MDB_val k = {16, (void *)d}, v;
    int rc;

    if (set_has(s, d))
        return 0;
    rc = mdb_get(w->txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return gc_mdb_error(w, rc, "gc: marking");
    set_add(s, d);
    return 0;
}

/* Whether step (a) deletes the decoded trace `t` (a dry run needs to
 * know, since it deleted nothing). */
static int goes(const gc_state *g, const deja_trace *t)
{
    const int64_t before = g->opts->before_ns;
    const int64_t cutoff_ms = before >= 0 ? before / 1000000 : -((-before + 999999) / 1000000);

    return deja_id_time_ms(&t->id) < cutoff_ms &&
           !(g->opts->keep_errors && t->status == DEJA_STATUS_ERROR);
}

/* Step (b): mark the blobs and environments of every remaining trace. */
static int mark_traces(deja__wtxn *w, gc_state *g)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    deja_id id;
    int rc = 0, mrc;

    mrc = mdb_cursor_open(w->txn, w->store->traces, &cur);
    if (mrc != 0)
        return gc_mdb_error(w, mrc, "gc: walking traces");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const deja_trace *t;

        deja__progress(++g->done, g->total);
        if (k.mv_size != 16) {
            g->unknown_refs = 1;
            continue;
        }
        memcpy(id.bytes, k.mv_data, 16);
        rc = deja__refs_read(w->store, w->txn, &id, &v, &g->refs);
        if (rc == DEJA_ECORRUPT || rc == DEJA_ENOMEM || rc == DEJA_EINVAL) {
            g->unknown_refs = 1;
            rc = 0;
            continue;
        }
        if (rc != 0)
            break;
        t = &g->refs.view;
        if (read_only(w) && goes(g, t))
            continue;
        for (size_t i = 0; rc == 0 && i < g->refs.nblobs; i++)
            rc = mark(w, w->store->blobs, &g->blobs, g->refs.blobs + i * 16);
        if (rc == 0 && t->has_env)
            rc = mark(w, w->store->envs, &g->envs, t->env.bytes);
        if (rc == 0 && g->max_bytes > 0) {
            const uint64_t est = trace_estimate(w, &g->refs, &v);

            g->estimated_bytes += est;
            if (is_protected(g, t) && !deja__pinned_txn(w->store, w->txn, &id))
                g->protected_bytes += est;
        }
    }
    mdb_cursor_close(cur);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = gc_mdb_error(w, mrc, "gc: walking traces");
    return rc;
}

/* What a sweep does with one record: keep it (0), delete it (1), or fail. */
typedef int (*sweep_fn)(deja__wtxn *w, gc_state *g, const MDB_val *k, const MDB_val *v);

/* Walk `dbi` and delete the records `decide` says to, counting them in
 * `*count` and their bytes. */
static int sweep(deja__wtxn *w, gc_state *g, MDB_dbi dbi, sweep_fn decide, uint64_t *count)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint8_t key[16];
    int rc = 0, mrc;

    mrc = mdb_cursor_open(w->txn, dbi, &cur);
    if (mrc != 0)
        return gc_mdb_error(w, mrc, "gc: sweeping");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;) {
        deja__progress(++g->done, g->total);
        if (k.mv_size != 16) {
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        rc = decide(w, g, &k, &v);
        if (rc < 0)
            break;
        if (rc == 0) {
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        (*count)++;
        g->stats.bytes += v.mv_size;
        g->unique_freed += record_raw_size(&v);
        memcpy(key, k.mv_data, 16);
        rc = del_key(w, dbi, key, 16, "gc: deleting a record");
        if (rc != 0)
            break;
        if (read_only(w)) {
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        k.mv_size = 16;
        k.mv_data = key;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    if (rc >= 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = gc_mdb_error(w, mrc, "gc: sweeping");
    return rc < 0 ? rc : 0;
}

/* A blob goes when no trace marked it; a kept chunked blob marks its
 * chunks. */
static int decide_blob(deja__wtxn *w, gc_state *g, const MDB_val *k, const MDB_val *v)
{
    deja__chunked it;
    const uint8_t *cd;
    deja_digest key;
    size_t cs;
    int rc;

    if (!set_has(&g->blobs, k->mv_data))
        return 1;
    if (v->mv_size == 0 || ((const uint8_t *)v->mv_data)[0] != DEJA__CHUNKED_MAGIC ||
        !w->store->has_chunks)
        return 0;
    memcpy(key.bytes, k->mv_data, 16);
    if (deja__chunked_parse(v->mv_data, v->mv_size, &key, &it) != 0) {
        g->unknown_chunks = 1;
        return 0;
    }
    while (deja__chunked_next(&it, &cs, &cd)) {
        rc = mark(w, w->store->chunks, &g->chunks, cd);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int decide_chunk(deja__wtxn *w, gc_state *g, const MDB_val *k, const MDB_val *v)
{
    (void)w;
    (void)v;
    return !set_has(&g->chunks, k->mv_data);
}

static int decide_env(deja__wtxn *w, gc_state *g, const MDB_val *k, const MDB_val *v)
{
    (void)w;
    (void)v;
    return !set_has(&g->envs, k->mv_data);
}

/* Whether a remaining trace marked blob `d`: deja__delta_rescue's test. */
static int blob_live(const uint8_t *d, void *payload)
{
    const gc_state *g = payload;

    return set_has(&g->blobs, d);
}

/* Steps (b) and (c): mark what the remaining traces reference, then sweep
 * the blobs, chunks and environments nothing marked. */
static int collect(deja__wtxn *w, gc_state *g)
{
    size_t nblobs = 0, nchunks = 0, nenvs = 0, ntraces = 0;
    int rc;

    g->unknown_refs = g->unknown_chunks = 0;
    g->protected_bytes = g->estimated_bytes = 0;
    set_free(&g->blobs);
    set_free(&g->chunks);
    set_free(&g->envs);
    rc = entries(w, w->store->blobs, &nblobs);
    if (rc == 0 && w->store->has_chunks)
        rc = entries(w, w->store->chunks, &nchunks);
    if (rc == 0)
        rc = entries(w, w->store->envs, &nenvs);
    if (rc == 0)
        rc = entries(w, w->store->traces, &ntraces);
    g->done = 0;
    g->total = (uint64_t)ntraces + nblobs + nchunks + nenvs;
    if (rc == 0)
        rc = set_init(&g->blobs, nblobs);
    if (rc == 0)
        rc = set_init(&g->chunks, nchunks);
    if (rc == 0)
        rc = set_init(&g->envs, nenvs);
    if (rc == 0)
        rc = mark_traces(w, g);
    if (rc == 0 && g->keep_env != NULL)
        rc = mark(w, w->store->envs, &g->envs, g->keep_env->bytes);
    /* Deltas whose parent went: whole again, before their bases go. */
    if (rc == 0 && deja__delta_pending(w)) {
        uint64_t rewritten = 0;

        rc = deja__delta_rescue(w, g->unknown_refs ? NULL : blob_live, g, &rewritten);
    }
    if (rc == 0 && !g->unknown_refs)
        rc = sweep(w, g, w->store->blobs, decide_blob, &g->stats.blobs);
    if (rc == 0 && !g->unknown_refs && !g->unknown_chunks && w->store->has_chunks)
        rc = sweep(w, g, w->store->chunks, decide_chunk, &g->stats.chunks);
    if (rc == 0 && !g->unknown_refs)
        rc = sweep(w, g, w->store->envs, decide_env, &g->stats.envs);
    return rc;
}

/* Evict the oldest traces that are neither pinned nor protected (protected
 * ones too, oldest first, while they hold more than their share) until the
 * estimate of what they free reaches `excess`. Sets `*deleted` to the
 * number evicted. A trace that does not decode is kept. */
static int evict_oldest(deja__wtxn *w, gc_state *g, uint64_t excess, uint64_t *deleted)
{
    MDB_cursor *cur = NULL;
    del_cursors dc = {w, {0}, {NULL}, 0};
    MDB_val k, v;
    deja_id id;
    uint64_t freed = 0;
    int rc = 0, mrc;

    *deleted = 0;
    mrc = mdb_cursor_open(w->txn, w->store->traces, &cur);
    if (mrc != 0)
        return gc_mdb_error(w, mrc, "gc: walking traces");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && freed < excess;) {
        const deja_trace *t = &g->refs.view;
        int evict = 0;

        if (k.mv_size != 16) {
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        memcpy(id.bytes, k.mv_data, 16);
        rc = deja__refs_read(w->store, w->txn, &id, &v, &g->refs);
        if (rc == DEJA_ECORRUPT || rc == DEJA_ENOMEM || rc == DEJA_EINVAL) {
            rc = 0;
        } else if (rc != 0) {
            break;
        } else if (!deja__pinned_txn(w->store, w->txn, &id)) {
            const uint64_t est = trace_estimate(w, &g->refs, &v);

            if (!is_protected(g, t)) {
                evict = 1;
            } else if (g->protected_bytes > g->protect_bytes) {
                evict = 1;
                g->protected_bytes -= est < g->protected_bytes ? est : g->protected_bytes;
            }
            if (evict) {
                if (g->refs.nblobs > 0)
                    g->evicted_refs = 1;
                freed += est;
                g->stats.traces++;
                g->stats.bytes += v.mv_size;
                g->unique_freed += value_raw_size(&v);
                g->raw_freed += g->refs.raw_bytes;
                g->evicted_bytes += est;
                (*deleted)++;
                rc = delete_trace(&dc, t, &v);
            }
        }
        if (rc != 0)
            break;
        if (evict && !read_only(w)) {
            k.mv_size = 16;
            k.mv_data = id.bytes;
            mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        } else {
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
    }
    del_cursors_close(&dc);
    mdb_cursor_close(cur);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = gc_mdb_error(w, mrc, "gc: walking traces");
    return rc;
}

/* `x` * `num` / `den`, without overflow for the sizes of a store. */
static uint64_t scale(uint64_t x, uint64_t num, uint64_t den)
{
    if (den == 0)
        return x;
    return (uint64_t)((long double)x * (long double)num / (long double)den);
}

/* The number of entries of index `kind` whose key starts with the `n`
 * bytes of `prefix`. */
static int count_prefix(deja__wtxn *w, deja__ix_kind kind, const void *prefix, size_t n,
                        uint64_t *out)
{
    return deja__ix_count(w->store, w->txn, kind, prefix, n, out);
}

/* The budget's eviction, without decoding the whole store: the data to
 * evict and the protected traces' share come from the counters and the
 * indexes (errors, deja.invalid and protect-tag entries at the average
 * trace size); the sweep runs only when an evicted trace referenced a blob
 * (inline payloads leave nothing behind; environments are few and are
 * swept by the next full collection). */
static int evict_by_counters(deja__wtxn *w, gc_state *g)
{
    const uint8_t error_key[1] = {(uint8_t)DEJA_STATUS_ERROR};
    char tag[DEJA__PROTECT_TAG_MAX + 2];
    uint64_t used = 0, stored, evict, n = 0, nprot = 0;
    MDB_stat st;
    int rc, mrc;

    rc = deja__txn_used_bytes(w->store, w->txn, &used);
    if (rc != 0 || used <= g->max_bytes)
        return rc;
    mrc = mdb_stat(w->txn, w->store->traces, &st);
    if (mrc != 0)
        return gc_mdb_error(w, mrc, "gc: counting traces");
    stored = deja__meta_u64(w->store, w->txn, "count/stored_bytes");
    evict = scale(used - g->max_bytes, stored, used);
    rc = count_prefix(w, DEJA__IX_STATUS, error_key, 1, &nprot);
    if (rc == 0)
        rc = count_prefix(w, DEJA__IX_TAG, "deja.invalid=", 13, &n);
    nprot += n;
    if (rc == 0 && g->protect_tag[0]) {
        snprintf(tag, sizeof tag, "%s=", g->protect_tag);
        rc = count_prefix(w, DEJA__IX_TAG, tag, strlen(tag), &n);
        nprot += n;
    }
    if (rc != 0)
        return rc;
    g->protected_bytes = st.ms_entries ? nprot * (stored / st.ms_entries) : 0;
    g->protect_bytes = (stored > evict ? stored - evict : 0) / 100 * g->protect_percent;
    rc = evict_oldest(w, g, evict, &g->evicted);
    if (rc == 0 && (g->evicted_refs || deja__delta_pending(w)))
        rc = collect(w, g);
    return rc;
}

/* The whole collection inside one write transaction; repeatable (every
 * result is reset here). Returns 1 after a dry run so that it is rolled
 * back. */
static int gc_fill(deja__wtxn *w, void *payload)
{
    gc_state *g = payload;
    uint64_t used = 0;
    int rc;

    memset(&g->stats, 0, sizeof g->stats);
    g->unique_freed = g->raw_freed = 0;
    g->evicted = g->evicted_bytes = 0;

    g->evicted_refs = 0;
    if (g->evict_only) {
        rc = evict_by_counters(w, g);
        goto counters;
    }
    rc = delete_old(w, g);
    if (rc == 0)
        rc = collect(w, g);
    if (rc == 0 && g->max_bytes > 0)
        rc = deja__txn_used_bytes(w->store, w->txn, &used);
    /* Eviction works on data, not pages: deleting records leaves holes in
     * pages that later writes fill (keys by digest land anywhere), so the
     * pages in use barely drop inside the transaction. The data to evict
     * is the share of the pages above the target, in the estimates' unit
     * (records, blobs and chunks of each trace), oldest first, in one
     * round; protected traces may keep their share of what stays. */
    if (rc == 0 && g->max_bytes > 0 && used > g->max_bytes) {
        const uint64_t evict = scale(used - g->max_bytes, g->estimated_bytes, used);
        const uint64_t stays = g->estimated_bytes - evict;

        g->protect_bytes = stays / 100 * g->protect_percent;
        rc = evict_oldest(w, g, evict, &g->evicted);
        if (rc == 0 && g->evicted > 0)
            rc = collect(w, g);
    }
counters:
    /* The counters: stored_bytes and unique_bytes lose exactly the value
     * bytes and the raw sizes of the deleted records. raw_bytes is
     * approximate: it loses each deleted trace's encoding and blob payloads
     * (what writing it added), but not the environment bytes counted once
     * per write. */
    if (rc == 0)
        rc = count_sub(w, "stored_bytes", g->stats.bytes);
    if (rc == 0)
        rc = count_sub(w, "unique_bytes", g->unique_freed);
    if (rc == 0)
        rc = count_sub(w, "raw_bytes", g->raw_freed);
    if (rc == 0 && g->evicted > 0 && !read_only(w))
        rc = deja__wtxn_count_add(w, "evicted", g->evicted);
    if (rc == 0 && g->evicted > 0 && !read_only(w))
        rc = deja__wtxn_count_add(w, "evicted_bytes", g->evicted_bytes);
    if (rc == 0 && g->evicted > 0 && !read_only(w))
        rc = deja__wtxn_count_add(w, "evictions", 1);
    if (rc == 0 && g->evicted > 0 && !read_only(w))
        rc = deja__wtxn_meta_put_u64(w, DEJA__BUDGET_MARK,
                                     deja__meta_u64(w->store, w->txn, "count/stored_bytes"));
    return rc;
}

/* Run a collection with `opts` (see deja_store_gc), evicting down to
 * `max_bytes` in use when not 0, and never sweeping `keep_env` (may be
 * NULL): the environment a live writer of this process references. With
 * `evict_only`, the budget's cheap path (evict_by_counters). */
static int gc_run(deja_store *store, const deja_gc_options *opts, uint64_t max_bytes,
                  const deja_digest *keep_env, int evict_only, deja_gc_stats *out)
{
    gc_state g;
    int rc;

    memset(&g, 0, sizeof g);
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (store == NULL || opts == NULL)
        return deja__error_set(DEJA_EINVAL, "gc: no store or no options");
    if (opts->version < 1 || opts->version > DEJA_GC_OPTIONS_VERSION)
        return deja__error_set(DEJA_EVERSION, "gc: options version %u, this deja knows 1 to %d",
                               opts->version, DEJA_GC_OPTIONS_VERSION);
    if (!store->writable && !opts->dry_run)
        return deja__error_set(DEJA_EINVAL, "store '%s' is open read-only: gc needs write",
                               store->path);
    /* LMDB trusts its pages, and a write on damaged ones spreads the
     * damage: check the structure first. Not for the budget's eviction
     * between a writer's commits: its pages are those the writer itself
     * writes to unchecked, checked when the store was opened, and reading
     * the whole file at each eviction would cost more than the eviction
     * (deja_store_budget_set checks before it evicts). */
    if (!evict_only) {
        rc = deja__store_check_or_fail(store, "gc");
        if (rc != 0)
            return rc;
    }
    g.opts = opts;
    g.keep_env = keep_env;
    g.max_bytes = max_bytes;
    g.evict_only = evict_only;
    if (max_bytes > 0) {
        deja_budget b;

        rc = deja_store_budget_get(store, &b);
        if (rc != 0)
            return rc;
        g.protect_percent = b.protect_percent;
        snprintf(g.protect_tag, sizeof g.protect_tag, "%s", b.protect_tag);
    }
    if (opts->dry_run) {
        /* Count in a read transaction: a dry run never writes. */
        deja__wtxn w;
        memset(&w, 0, sizeof w);
        w.store = store;
        w.dry_run = 1;
        rc = deja__rtxn_begin(store, &w.txn);
        if (rc == 0) {
            rc = gc_fill(&w, &g);
            deja__rtxn_end(store, w.txn);
        }
    } else {
        rc = deja__store_write(store, gc_fill, &g);
    }
    if (rc == 0 && out != NULL)
        *out = g.stats;
    set_free(&g.blobs);
    set_free(&g.chunks);
    set_free(&g.envs);
    deja__refs_free(&g.refs);
    return rc;
}

/* Evict for the disk budget; see store/store.h. */
int deja__store_evict(deja_store *store, uint64_t max_bytes, const deja_digest *keep_env)
{
    const deja_gc_options o = DEJA_GC_OPTIONS_INIT;

    return gc_run(store, &o, max_bytes, keep_env, 1, NULL);
}

/* Delete old traces and everything only they referenced, or evict down to a
 * size; see deja.h. */
int deja_store_gc(deja_store *store, const deja_gc_options *opts, deja_gc_stats *out)
{
    const uint64_t max_bytes = opts != NULL && opts->version >= 2 ? opts->max_bytes : 0;

    return gc_run(store, opts, max_bytes, NULL, 0, out);
}
