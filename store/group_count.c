/*
 * store/group_count.c -- counters per model version: traces the tracers
 * never recorded (sampled out, dropped), kept beside the store-wide ones
 * so that `deja stats --by model|version` can show them per group.
 *
 * In meta: "gcount/<counter>/<model>\x1f<version>" -> u64 (little-endian).
 * A key longer than LMDB allows is not kept: that loss is counted
 * store-wide only.
 */
#include <stdio.h>
#include <string.h>

#include "store/store_internal.h"

#define PREFIX "gcount/"
#define KEY_MAX 512

/* Build the key of `counter` for `model`@`version`; its length, or 0 when
 * it does not fit. */
static size_t key_of(deja_store *store, const char *counter, const char *model,
                     const char *version, char *key)
{
    const int n = snprintf(key, KEY_MAX, PREFIX "%s/%s\x1f%s", counter, model ? model : "",
                           version ? version : "");

    if (n < 0 || n >= KEY_MAX || n > mdb_env_get_maxkeysize(store->env))
        return 0;
    return (size_t)n;
}

int deja__wtxn_group_count_add(deja__wtxn *w, const char *counter, const char *model,
                               const char *version, uint64_t delta)
{
    char key[KEY_MAX];

    if (delta == 0 || key_of(w->store, counter, model, version, key) == 0)
        return 0;
    return deja__wtxn_meta_put_u64(w, key, deja__meta_u64(w->store, w->txn, key) + delta);
}

int deja__store_group_counts(deja_store *store, deja__group_count_cb cb, void *payload)
{
    const size_t plen = sizeof PREFIX - 1;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc;

    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_open(txn, store->meta, &cur);
    if (rc != 0) {
        rc = deja__mdb_error(rc, "reading group counters");
        goto cleanup;
    }
    k.mv_size = plen;
    k.mv_data = (void *)PREFIX;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char key[KEY_MAX];
        char *counter, *model, *version;

        if (k.mv_size < plen || memcmp(k.mv_data, PREFIX, plen) != 0)
            break;
        if (k.mv_size >= sizeof key || v.mv_size != 8)
            continue; /* not one of ours */
        memcpy(key, k.mv_data, k.mv_size);
        key[k.mv_size] = '\0';
        counter = key + plen;
        model = strchr(counter, '/');
        if (model == NULL)
            continue;
        *model++ = '\0';
        version = strrchr(model, '\x1f');
        if (version == NULL)
            continue;
        *version++ = '\0';
        if (cb(counter, model, version, deja__le64_get(v.mv_data), payload) != 0)
            break;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rc = deja__mdb_error(rc, "reading group counters");
        goto cleanup;
    }
    rc = 0;

cleanup:
    if (cur != NULL)
        mdb_cursor_close(cur);
    deja__rtxn_end(store, txn);
    return rc;
}
