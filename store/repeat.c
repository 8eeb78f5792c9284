/*
 * store/repeat.c -- repeat counts of deduplicating sampling: how many more
 * identical requests (same model, version, inputs, params and seeds) a
 * recorded trace stands for. A record of the `repeats` database under the
 * trace's 16-byte id: a u64, little-endian. gc deletes it with its trace.
 */
#include <string.h>

#include "store/store_internal.h"

/* Add `count` to the repeats of `id`; see store/store.h. */
int deja__wtxn_repeats_add(deja__wtxn *w, const deja_id *id, uint64_t count)
{
    MDB_val k = {16, (void *)id->bytes}, v;
    uint64_t x = 0;
    uint8_t out[8];

    if (count == 0 || !w->store->has_repeats)
        return 0;
    if (mdb_get(w->txn, w->store->repeats, &k, &v) == 0 && v.mv_size == 8)
        x = deja__le64_get(v.mv_data);
    deja__le64_put(out, x + count);
    return deja__wtxn_put(w, w->store->repeats, id->bytes, 16, out, 8, 0, "counting repeats");
}

/* The repeats of trace `id`; see deja.h. */
int deja_trace_repeats(deja_store *store, const deja_id *id, uint64_t *out)
{
    MDB_txn *txn = NULL;
    MDB_val k, v;
    int rc;

    if (store == NULL || id == NULL || out == NULL)
        return deja__error_set(DEJA_EINVAL, "repeats: no store, id or output");
    *out = 0;
    if (!store->has_repeats)
        return 0;
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    k.mv_size = 16;
    k.mv_data = (void *)id->bytes;
    rc = mdb_get(txn, store->repeats, &k, &v);
    if (rc == 0 && v.mv_size == 8) {
        *out = deja__le64_get(v.mv_data);
    } else if (rc == 0) {
        rc = deja__error_set(DEJA_ECORRUPT, "repeat count of %zu bytes", v.mv_size);
        goto cleanup;
    } else if (rc != MDB_NOTFOUND) {
        rc = deja__mdb_error(rc, "reading a repeat count");
        goto cleanup;
    }
    rc = 0;
cleanup:
    deja__rtxn_end(store, txn);
    return rc;
}
