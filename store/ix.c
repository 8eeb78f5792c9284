/*
 * store/ix.c -- the indexes' layout: writing, deleting, counting and
 * walking index entries in the dup layout (format 5) and the flat one
 * (formats 1-4), and converting a flat store when a writer opens it. See
 * store/ix.h for both layouts.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "store/ix.h"
#include "store/store_internal.h"

static const char *const flat_names[DEJA__IX_KINDS] = {"ix_model", "ix_tag", "ix_status"};
static const char *const dup_names[DEJA__IX_KINDS] = {"ixd_model", "ixd_tag", "ixd_status"};
static const char *const kind_names[DEJA__IX_KINDS] = {"model", "tag", "status"};

#define DUP_FLAGS (MDB_DUPSORT | MDB_DUPFIXED)

/* The layout in use, loaded once per operation (it may switch). */
static const deja__ix_layout *layout(deja_store *store)
{
    return atomic_load(&store->ix);
}

MDB_dbi deja__ix_dbi(deja_store *store, deja__ix_kind kind)
{
    return layout(store)->dbi[kind];
}

int deja__ix_is_dup(deja_store *store)
{
    return layout(store)->dup;
}

/* An LMDB error of a write in `w`, naming `what`: a full map reruns. */
static int write_error(deja__wtxn *w, int rc, const char *what, deja__ix_kind kind)
{
    char msg[64];

    if (rc == MDB_MAP_FULL)
        w->map_full = 1;
    snprintf(msg, sizeof msg, "%s the %s index", what, kind_names[kind]);
    return deja__mdb_error(rc, msg);
}

int deja__ix_open(deja_store *store, MDB_txn *txn, int create)
{
    MDB_dbi flat[DEJA__IX_KINDS], dup[DEJA__IX_KINDS];
    int rc, found = 1, empty = 1;

    store->ix_upgrade = 0;
    for (int i = 0; i < DEJA__IX_KINDS; i++) {
        rc = mdb_dbi_open(txn, flat_names[i], create ? MDB_CREATE : 0, &flat[i]);
        if (rc == MDB_NOTFOUND)
            return deja__error_set(DEJA_ECORRUPT,
                                   "store '%s' is not a deja store (database '%s' is missing)",
                                   store->path, flat_names[i]);
        if (rc != 0)
            return deja__mdb_error(rc, flat_names[i]);
    }
    for (int i = 0; i < DEJA__IX_KINDS && found; i++) {
        rc = mdb_dbi_open(txn, dup_names[i], DUP_FLAGS, &dup[i]);
        if (rc == MDB_NOTFOUND)
            found = 0;
        else if (rc != 0)
            return deja__mdb_error(rc, dup_names[i]);
    }
    if (!found && create) {
        for (int i = 0; i < DEJA__IX_KINDS && empty; i++) {
            MDB_stat st;

            rc = mdb_stat(txn, flat[i], &st);
            if (rc != 0)
                return deja__mdb_error(rc, flat_names[i]);
            empty = st.ms_entries == 0;
        }
        /* A new store (or one without an index entry): dup from the start. */
        for (int i = 0; i < DEJA__IX_KINDS && empty; i++) {
            rc = mdb_dbi_open(txn, dup_names[i], MDB_CREATE | DUP_FLAGS, &dup[i]);
            if (rc != 0)
                return deja__mdb_error(rc, dup_names[i]);
        }
        found = empty;
        store->ix_upgrade = !empty;
    }
    for (int i = 0; i < DEJA__IX_KINDS; i++) {
        store->ix_flat.dbi[i] = flat[i];
        store->ix_dups.dbi[i] = found ? dup[i] : flat[i];
    }
    store->ix_flat.dup = 0;
    store->ix_dups.dup = found;
    atomic_store(&store->ix, found ? &store->ix_dups : &store->ix_flat);
    return 0;
}

/* What the conversion made: the dup databases, once committed. */
typedef struct upgrade_state {
    MDB_dbi dup[DEJA__IX_KINDS];
    int done; /* the dup databases were there already: nothing to convert */
} upgrade_state;

/* Put `key` -> `id` into the dup database `dbi`: appended while ids come
 * in order (pages filled), else inserted; present already is fine. */
static int dup_put(MDB_txn *txn, MDB_dbi dbi, const uint8_t *key, size_t n, const uint8_t *id)
{
    MDB_val k = {n, (void *)key}, v = {16, (void *)id};
    int rc = mdb_put(txn, dbi, &k, &v, MDB_APPENDDUP);

    /* Out of order (or present): an APPENDDUP refused leaves the key as
     * it was, and a plain put of a present pair succeeds. */
    if (rc == MDB_KEYEXIST) {
        k.mv_size = n;
        k.mv_data = (void *)key;
        v.mv_size = 16;
        v.mv_data = (void *)id;
        rc = mdb_put(txn, dbi, &k, &v, 0);
    }
    return rc;
}

/* The conversion, in one write transaction: each flat entry put into its
 * dup database (flat keys come in prefix then id order: appended), then
 * the flat databases emptied. A flat key too short to hold an id is
 * dropped (it named no trace). */
static int upgrade_fill(deja__wtxn *w, void *payload)
{
    upgrade_state *u = payload;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc;

    u->done = 0;
    rc = mdb_dbi_open(w->txn, dup_names[0], DUP_FLAGS, &u->dup[0]);
    if (rc == 0) {
        u->done = 1; /* another writer converted it first */
        return 0;
    }
    for (int i = 0; i < DEJA__IX_KINDS; i++) {
        MDB_dbi flat;

        rc = mdb_dbi_open(w->txn, dup_names[i], MDB_CREATE | DUP_FLAGS, &u->dup[i]);
        if (rc == 0)
            rc = mdb_dbi_open(w->txn, flat_names[i], 0, &flat);
        if (rc == 0)
            rc = mdb_cursor_open(w->txn, flat, &cur);
        if (rc != 0)
            return write_error(w, rc, "converting", (deja__ix_kind)i);
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            const uint8_t *p = k.mv_data;

            if (k.mv_size < 17)
                continue;
            rc = dup_put(w->txn, u->dup[i], p, k.mv_size - 16, p + k.mv_size - 16);
            if (rc != 0)
                break;
        }
        mdb_cursor_close(cur);
        if (rc == MDB_NOTFOUND)
            rc = mdb_drop(w->txn, flat, 0);
        if (rc != 0)
            return write_error(w, rc, "converting", (deja__ix_kind)i);
    }
    {
        const uint8_t format[4] = {DEJA__FORMAT_VERSION, 0, 0, 0};

        return deja__wtxn_put(w, w->store->meta, "format", 6, format, 4, 0,
                              "writing the format version");
    }
}

/* Open the dup databases (converted by another handle) in a read
 * transaction of their own and switch to them. */
static int open_dups(deja_store *store)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi[DEJA__IX_KINDS];
    int rc;

    pthread_mutex_lock(&store->lock); /* mdb_dbi_open: one thread at a time */
    rc = layout(store)->dup ? 0 : mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
    for (int i = 0; txn != NULL && rc == 0 && i < DEJA__IX_KINDS; i++)
        rc = mdb_dbi_open(txn, dup_names[i], DUP_FLAGS, &dbi[i]);
    if (txn != NULL && rc == 0)
        rc = mdb_txn_commit(txn);
    else if (txn != NULL)
        mdb_txn_abort(txn);
    if (txn != NULL && rc == 0) {
        for (int i = 0; i < DEJA__IX_KINDS; i++)
            store->ix_dups.dbi[i] = dbi[i];
        store->ix_dups.dup = 1;
        atomic_store(&store->ix, &store->ix_dups);
    }
    pthread_mutex_unlock(&store->lock);
    return rc == 0 ? 0 : deja__mdb_error(rc, "opening the converted indexes");
}

int deja__ix_upgrade(deja_store *store)
{
    upgrade_state u;
    int rc;

    if (!store->ix_upgrade)
        return 0;
    memset(&u, 0, sizeof u);
    rc = deja__store_write(store, upgrade_fill, &u);
    if (rc != 0)
        return rc;
    if (u.done) /* converted by another writer: open its databases here */
        return open_dups(store);
    for (int i = 0; i < DEJA__IX_KINDS; i++)
        store->ix_dups.dbi[i] = u.dup[i];
    store->ix_dups.dup = 1;
    atomic_store(&store->ix, &store->ix_dups);
    store->ix_upgrade = 0;
    return 0;
}

void deja__ix_refresh(deja_store *store, MDB_txn **txn)
{
    uint32_t format = 0;

    if (layout(store)->dup ||
        deja__meta_u32(store, *txn, "format", &format, NULL) != 0 || format < 5)
        return;
    /* A writer converted the indexes since this handle opened: use its
     * databases from now on, and renew `txn` so that it sees them. */
    if (open_dups(store) != 0)
        return;
    mdb_txn_reset(*txn);
    if (mdb_txn_renew(*txn) != 0) {
        mdb_txn_abort(*txn);
        *txn = NULL;
    }
}

/* "name\0version\0" of `trace` into `key`; 0 if it and an id exceed `max`. */
size_t deja__ix_model_key(const deja_trace *trace, uint8_t *key, size_t max)
{
    const char *name = trace->model_name ? trace->model_name : "";
    const char *version = trace->model_version ? trace->model_version : "";
    size_t n = strlen(name), v = strlen(version);

    if (n + v + 2 + 16 > max)
        return 0;
    memcpy(key, name, n + 1);
    memcpy(key + n + 1, version, v + 1);
    return n + v + 2;
}

/* "key=value\0" into `key`; 0 if it and an id exceed `max`. */
size_t deja__ix_tag_key(const deja_tag *tag, uint8_t *key, size_t max)
{
    const char *k = tag->key ? tag->key : "", *v = tag->value ? tag->value : "";
    size_t kn = strlen(k), vn = strlen(v);

    if (kn + vn + 2 + 16 > max)
        return 0;
    memcpy(key, k, kn);
    key[kn] = '=';
    memcpy(key + kn + 1, v, vn + 1);
    return kn + vn + 2;
}

int deja__ix_each(deja_store *store, const deja_trace *trace, deja__ix_fn fn, void *payload)
{
    uint8_t key[512];
    size_t max = (size_t)mdb_env_get_maxkeysize(store->env), n;
    int rc = 0;

    if (max > sizeof key)
        max = sizeof key;
    n = deja__ix_model_key(trace, key, max);
    if (n > 0)
        rc = fn(DEJA__IX_MODEL, key, n, "model", payload);
    for (size_t i = 0; rc == 0 && i < trace->ntags; i++) {
        n = deja__ix_tag_key(&trace->tags[i], key, max);
        if (n > 0)
            rc = fn(DEJA__IX_TAG, key, n, "tag", payload);
    }
    if (rc == 0) {
        key[0] = (uint8_t)trace->status;
        rc = fn(DEJA__IX_STATUS, key, 1, "status", payload);
    }
    return rc;
}

/* The flat key `key` + `id` in `buf` (512 bytes); 0 when too long. */
static size_t flat_key(uint8_t *buf, const uint8_t *key, size_t n, const uint8_t *id)
{
    if (n + 16 > 512)
        return 0;
    memcpy(buf, key, n);
    memcpy(buf + n, id, 16);
    return n + 16;
}

int deja__ix_put(deja__wtxn *w, deja__ix_kind kind, const uint8_t *key, size_t n,
                 const deja_id *id)
{
    uint8_t buf[512];
    MDB_val k, v = {0, ""};
    int rc;

    /* The message is formatted only on failure: formatting it on every
     * entry cost ~2,100 instructions per trace (callgrind). */
    const deja__ix_layout *l = layout(w->store);

    if (l->dup) {
        rc = dup_put(w->txn, l->dbi[kind], key, n, id->bytes);
    } else {
        k.mv_size = flat_key(buf, key, n, id->bytes);
        k.mv_data = buf;
        rc = k.mv_size == 0 ? 0 : mdb_put(w->txn, l->dbi[kind], &k, &v, 0);
    }
    return rc == 0 ? 0 : write_error(w, rc, "writing", kind);
}

int deja__ix_del(deja__wtxn *w, MDB_cursor *cur, deja__ix_kind kind, const uint8_t *key, size_t n,
                 const deja_id *id)
{
    uint8_t buf[512];
    MDB_val k = {n, (void *)key}, v = {16, (void *)id->bytes};
    int rc;

    if (layout(w->store)->dup) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH);
    } else {
        k.mv_size = flat_key(buf, key, n, id->bytes);
        k.mv_data = buf;
        rc = k.mv_size == 0 ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET);
    }
    if (rc == 0)
        rc = mdb_cursor_del(cur, 0);
    if (rc == 0 || rc == MDB_NOTFOUND)
        return 0;
    return write_error(w, rc, "gc: deleting from", kind);
}

int deja__ix_has(deja_store *store, MDB_txn *txn, deja__ix_kind kind, const uint8_t *key,
                 size_t n, const deja_id *id)
{
    uint8_t buf[512];
    MDB_cursor *cur = NULL;
    MDB_val k = {n, (void *)key}, v = {16, (void *)id->bytes};
    int rc;

    const deja__ix_layout *l = layout(store);

    if (l->dup) {
        rc = mdb_cursor_open(txn, l->dbi[kind], &cur);
        if (rc == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_GET_BOTH);
        if (cur != NULL)
            mdb_cursor_close(cur);
    } else {
        k.mv_size = flat_key(buf, key, n, id->bytes);
        k.mv_data = buf;
        rc = k.mv_size == 0 ? MDB_NOTFOUND : mdb_get(txn, l->dbi[kind], &k, &v);
    }
    if (rc == 0)
        return 1;
    if (rc == MDB_NOTFOUND)
        return 0;
    return deja__mdb_error(rc, "reading an index");
}

/* Whether `k` starts with the `n` bytes of `prefix`. */
static int has_prefix(const MDB_val *k, const void *prefix, size_t n)
{
    return k->mv_size >= n && memcmp(k->mv_data, prefix, n) == 0;
}

/* The walk of deja__ix_scan (`all`: every entry) and deja__ix_keys (one
 * call per key). */
static int walk(deja_store *store, MDB_txn *txn, deja__ix_kind kind, const void *prefix, size_t n,
                int all, deja__ix_entry_fn fn, void *payload)
{
    MDB_cursor *cur = NULL;
    MDB_val k = {n, (void *)prefix}, v;
    uint8_t last[512];
    size_t nlast = 0;
    int rc, frc = 0, have_last = 0;
    const deja__ix_layout *l = layout(store);

    rc = mdb_cursor_open(txn, l->dbi[kind], &cur);
    if (rc != 0)
        return deja__mdb_error(rc, "reading an index");
    rc = mdb_cursor_get(cur, &k, &v, n > 0 ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && frc == 0 && has_prefix(&k, prefix, n)) {
        const uint8_t *p = k.mv_data;

        if (l->dup) {
            if (all) {
                frc = fn(p, k.mv_size, v.mv_size == 16 ? v.mv_data : NULL, payload);
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            } else {
                frc = fn(p, k.mv_size, NULL, payload);
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_NODUP);
            }
            continue;
        }
        if (all) {
            frc = k.mv_size < 17 ? fn(p, k.mv_size, NULL, payload)
                                 : fn(p, k.mv_size - 16, p + k.mv_size - 16, payload);
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        /* One call per prefix: skip its other ids (flat keys of one prefix
         * are adjacent; a prefix never is a prefix of another one). */
        if (k.mv_size >= 17 && k.mv_size - 16 <= sizeof last &&
            !(have_last && nlast == k.mv_size - 16 && memcmp(last, p, nlast) == 0)) {
            nlast = k.mv_size - 16;
            memcpy(last, p, nlast);
            have_last = 1;
            frc = fn(last, nlast, NULL, payload);
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (frc != 0)
        return frc;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return deja__mdb_error(rc, "reading an index");
    return 0;
}

int deja__ix_scan(deja_store *store, MDB_txn *txn, deja__ix_kind kind, const void *prefix,
                  size_t n, deja__ix_entry_fn fn, void *payload)
{
    return walk(store, txn, kind, prefix, n, 1, fn, payload);
}

int deja__ix_keys(deja_store *store, MDB_txn *txn, deja__ix_kind kind, const void *prefix,
                  size_t n, deja__ix_entry_fn fn, void *payload)
{
    return walk(store, txn, kind, prefix, n, 0, fn, payload);
}

int deja__ix_count(deja_store *store, MDB_txn *txn, deja__ix_kind kind, const void *prefix,
                   size_t n, uint64_t *out)
{
    MDB_cursor *cur = NULL;
    MDB_val k = {n, (void *)prefix}, v;
    size_t count;
    int rc;
    const deja__ix_layout *l = layout(store);

    *out = 0;
    rc = mdb_cursor_open(txn, l->dbi[kind], &cur);
    if (rc != 0)
        return deja__mdb_error(rc, "counting");
    for (rc = mdb_cursor_get(cur, &k, &v, n > 0 ? MDB_SET_RANGE : MDB_FIRST);
         rc == 0 && has_prefix(&k, prefix, n);
         rc = mdb_cursor_get(cur, &k, &v, l->dup ? MDB_NEXT_NODUP : MDB_NEXT)) {
        if (!l->dup) {
            (*out)++;
            continue;
        }
        rc = mdb_cursor_count(cur, &count);
        if (rc != 0)
            break;
        *out += count;
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : deja__mdb_error(rc, "counting");
}

/* ------------------------------------------------------------------------
 * The iterator.
 * ---------------------------------------------------------------------- */

int deja__ix_iter_open(deja__ix_iter *it, MDB_txn *txn, MDB_dbi dbi, int dup, const void *key,
                       size_t n)
{
    int rc;

    memset(it, 0, sizeof *it);
    if (n + 16 > sizeof it->key)
        return deja__error_set(DEJA_EINVAL, "index key of %zu bytes is too long", n);
    memcpy(it->key, key, n);
    it->n = n;
    it->dup = dup;
    rc = mdb_cursor_open(txn, dbi, &it->cur);
    if (rc != 0) {
        it->cur = NULL;
        return deja__mdb_error(rc, "reading an index");
    }
    return 0;
}

int deja__ix_iter_open_kind(deja__ix_iter *it, deja_store *store, MDB_txn *txn,
                            deja__ix_kind kind, const void *key, size_t n)
{
    const deja__ix_layout *l = layout(store);

    return deja__ix_iter_open(it, txn, l->dbi[kind], l->dup, key, n);
}

void deja__ix_iter_close(deja__ix_iter *it)
{
    if (it->cur != NULL)
        mdb_cursor_close(it->cur);
    it->cur = NULL;
    it->valid = 0;
}

/* Take the entry `k`, `v` the cursor is on (LMDB's `rc`): valid when it
 * belongs to the key and lies within the bounds. */
static int accept(deja__ix_iter *it, int rc, const MDB_val *k, const MDB_val *v)
{
    const uint8_t *id;

    it->valid = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return deja__mdb_error(rc, "reading an index");
    if (it->dup) {
        if (v->mv_size != 16)
            return 0;
        id = v->mv_data;
        it->value.mv_size = 0;
        it->value.mv_data = NULL;
    } else {
        if (k->mv_size != it->n + 16 || memcmp(k->mv_data, it->key, it->n) != 0)
            return 0;
        id = (const uint8_t *)k->mv_data + it->n;
        it->value = *v;
    }
    if (memcmp(id, it->lo.bytes, 16) < 0 || memcmp(id, it->hi.bytes, 16) > 0)
        return 0;
    memcpy(it->id.bytes, id, 16);
    it->valid = 1;
    return 0;
}

int deja__ix_iter_last(deja__ix_iter *it, const deja_id *lo, const deja_id *hi)
{
    MDB_val k = {it->n, it->key}, v;
    int rc;

    it->lo = *lo;
    it->hi = *hi;
    if (it->dup) {
        v.mv_size = 16;
        v.mv_data = it->hi.bytes;
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_GET_BOTH_RANGE);
        if (rc == 0 && (v.mv_size != 16 || memcmp(v.mv_data, it->hi.bytes, 16) != 0))
            rc = mdb_cursor_get(it->cur, &k, &v, MDB_PREV_DUP);
        else if (rc == MDB_NOTFOUND) {
            k.mv_size = it->n;
            k.mv_data = it->key;
            rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET);
            if (rc == 0)
                rc = mdb_cursor_get(it->cur, &k, &v, MDB_LAST_DUP);
        }
        return accept(it, rc, &k, &v);
    }
    memcpy(it->key + it->n, it->hi.bytes, 16);
    k.mv_size = it->n + 16;
    rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && (k.mv_size != it->n + 16 || memcmp(k.mv_data, it->key, it->n + 16) != 0))
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_LAST);
    return accept(it, rc, &k, &v);
}

int deja__ix_iter_prev(deja__ix_iter *it)
{
    MDB_val k, v;
    int rc = mdb_cursor_get(it->cur, &k, &v, it->dup ? MDB_PREV_DUP : MDB_PREV);

    return accept(it, rc, &k, &v);
}

int deja__ix_iter_first(deja__ix_iter *it, const deja_id *lo, const deja_id *hi)
{
    MDB_val k = {it->n, it->key}, v;
    int rc;

    it->lo = *lo;
    it->hi = *hi;
    if (it->dup) {
        v.mv_size = 16;
        v.mv_data = it->lo.bytes;
        rc = mdb_cursor_get(it->cur, &k, &v, MDB_GET_BOTH_RANGE);
        return accept(it, rc, &k, &v);
    }
    memcpy(it->key + it->n, it->lo.bytes, 16);
    k.mv_size = it->n + 16;
    rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET_RANGE);
    return accept(it, rc, &k, &v);
}

int deja__ix_iter_next(deja__ix_iter *it)
{
    MDB_val k, v;
    int rc = mdb_cursor_get(it->cur, &k, &v, it->dup ? MDB_NEXT_DUP : MDB_NEXT);

    return accept(it, rc, &k, &v);
}

uint64_t deja__ix_extra_pages(deja_store *store, MDB_txn *txn, uint64_t psize)
{
    const uint64_t per_page = psize > 32 ? (psize - 16) / 16 : 1;
    const deja__ix_layout *l = layout(store);
    uint64_t pages = 0;

    if (!l->dup)
        return 0;
    for (int i = 0; i < DEJA__IX_KINDS; i++) {
        MDB_stat st;

        /* ms_entries counts the ids; the pages holding a key's ids apart
         * from its node are not in ms_*_pages. The ids of a key with few
         * of them sit in its node (counted twice here: at most 16 bytes
         * an entry). */
        if (mdb_stat(txn, l->dbi[i], &st) == 0)
            pages += (st.ms_entries + per_page - 1) / per_page;
    }
    return pages;
}
