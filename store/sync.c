/*
 * store/sync.c -- what copying a store to and from elsewhere needs: trace
 * ids in ascending order after a cursor, whether a trace, blob or
 * environment is present, opaque values in meta (a shipping position), and
 * the content-defined cut of a payload into the store's chunks.
 */
#include <string.h>

#include "store/store_internal.h"

/* Call `fn` on the ids of the traces after `after` (NULL: from the first),
 * in ascending order (time order), at most `max` of them, in one read
 * transaction. Stops at and returns the first non-zero result of `fn`. */
int deja__store_ids_after(deja_store *store, const deja_id *after, size_t max,
                          int (*fn)(const deja_id *id, void *payload), void *payload)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    deja_id id;
    size_t n = 0;
    int rc, mrc;

    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    mrc = mdb_cursor_open(txn, store->traces, &cur);
    if (mrc != 0) {
        rc = deja__mdb_error(mrc, "listing traces");
        goto cleanup;
    }
    if (after != NULL) {
        k.mv_size = 16;
        k.mv_data = (void *)after->bytes;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (mrc == 0 && k.mv_size == 16 && memcmp(k.mv_data, after->bytes, 16) == 0)
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    } else {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    while (mrc == 0 && n < max) {
        if (k.mv_size == 16) {
            memcpy(id.bytes, k.mv_data, 16);
            rc = fn(&id, payload);
            if (rc != 0)
                goto cleanup;
            n++;
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = deja__mdb_error(mrc, "listing traces");

cleanup:
    if (cur != NULL)
        mdb_cursor_close(cur);
    deja__rtxn_end(store, txn);
    return rc;
}

/* Whether the store holds the trace, blob or environment `key` (16 bytes):
 * 1 yes, 0 no, or a negative code. */
int deja__store_has(deja_store *store, deja__kind kind, const uint8_t key[16])
{
    MDB_txn *txn = NULL;
    MDB_val k = {16, (void *)key}, v;
    MDB_dbi dbi = kind == DEJA__KIND_TRACE ? store->traces
                  : kind == DEJA__KIND_BLOB ? store->blobs
                                            : store->envs;
    int rc = deja__rtxn_begin(store, &txn);

    if (rc != 0)
        return rc;
    rc = mdb_get(txn, dbi, &k, &v);
    rc = rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : deja__mdb_error(rc, "looking up a record");
    deja__rtxn_end(store, txn);
    return rc;
}

/* The value under `key` in meta, copied into `out` (replacing its
 * content); `*found` says whether there is one. */
int deja__store_meta_get(deja_store *store, const char *key, deja__buf *out, int *found)
{
    MDB_txn *txn = NULL;
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = deja__rtxn_begin(store, &txn);

    *found = 0;
    out->size = 0;
    if (rc != 0)
        return rc;
    rc = mdb_get(txn, store->meta, &k, &v);
    if (rc == 0) {
        *found = 1;
        rc = deja__buf_append(out, v.mv_data, v.mv_size);
    } else {
        rc = rc == MDB_NOTFOUND ? 0 : deja__mdb_error(rc, key);
    }
    deja__rtxn_end(store, txn);
    return rc;
}

typedef struct meta_put {
    const char *key;
    const void *data;
    size_t size;
} meta_put;

static int meta_put_fill(deja__wtxn *w, void *payload)
{
    const meta_put *m = payload;
    MDB_val k = {strlen(m->key), (void *)m->key}, v = {m->size, (void *)m->data};
    int rc = mdb_put(w->txn, w->store->meta, &k, &v, 0);

    if (rc == MDB_MAP_FULL)
        w->map_full = 1;
    return rc == 0 ? 0 : deja__mdb_error(rc, m->key);
}

/* Set the value under `key` in meta, in a write transaction of its own. */
int deja__store_meta_put(deja_store *store, const char *key, const void *data, size_t size)
{
    meta_put m = {key, data, size};

    if (strlen(key) == 0 || strlen(key) > 400)
        return deja__error_set(DEJA_EINVAL, "meta key of %zu bytes", strlen(key));
    return deja__store_write(store, meta_put_fill, &m);
}

/* The length of the store's next chunk of the `n` bytes at `p`. */
size_t deja__store_cut(const void *p, size_t n)
{
    return deja__chunk_next(p, n);
}
