/*
 * store/raw.c -- trace records as stored, decompressed but not decoded:
 * for copying traces elsewhere (fleet/'s ship publishes these bytes, the
 * encoding of the Trace message, without unpacking and encoding it again).
 */
#include <stdio.h>
#include <string.h>

#include "store/store_internal.h"

int deja__store_traces_raw(deja_store *store, const deja_id *ids, size_t n, deja__raw_cb cb,
                           void *payload)
{
    char text[DEJA_ID_STRLEN + 1], what[48];
    deja__buf raw = {NULL, 0, 0};
    MDB_txn *txn = NULL;
    int rc;

    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        MDB_val k = {16, (void *)ids[i].bytes}, v;

        deja_id_format(&ids[i], text);
        snprintf(what, sizeof what, "trace %s", text);
        rc = mdb_get(txn, store->traces, &k, &v);
        if (rc == MDB_NOTFOUND) {
            rc = deja__error_set(DEJA_ENOTFOUND, "no trace %s", text);
            break;
        }
        if (rc != 0) {
            rc = deja__mdb_error(rc, what);
            break;
        }
        rc = deja__trace_value_record(store, txn, &v, what, &raw);
        if (rc == 0)
            rc = cb(i, raw.data, raw.size, payload);
    }
    deja__rtxn_end(store, txn);
    deja__buf_free(&raw);
    return rc;
}
