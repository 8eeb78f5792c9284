/*
 * store/tag_count.c -- counting the traces that carry a tag key, from the
 * tag index alone (for `deja stats`: traces a validation rule flagged).
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* Count the distinct ids of the ix_tag entries "deja.invalid=RULE\0" + id:
 * a trace that broke several rules has one entry per rule. */
int deja_store_invalid_count(deja_store *store, uint64_t *out)
{
    static const char prefix[] = DEJA_INVALID_TAG "=";
    const size_t plen = sizeof prefix - 1;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint8_t *ids = NULL;
    size_t n = 0, cap = 0, distinct = 0;
    int rc;

    *out = 0;
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_open(txn, store->ix_tag, &cur);
    if (rc != 0) {
        rc = deja__mdb_error(rc, "counting invalid traces");
        goto cleanup;
    }
    k.mv_size = plen;
    k.mv_data = (void *)prefix;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < plen + 16 || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        if (n == cap) {
            const size_t grown_cap = cap ? cap * 2 : 256;
            uint8_t *grown = realloc(ids, grown_cap * 16);

            if (grown == NULL) {
                rc = deja__error_set(DEJA_ENOMEM, "counting invalid traces: out of memory");
                goto cleanup;
            }
            ids = grown;
            cap = grown_cap;
        }
        memcpy(ids + 16 * n++, (const uint8_t *)k.mv_data + k.mv_size - 16, 16);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rc = deja__mdb_error(rc, "counting invalid traces");
        goto cleanup;
    }
    rc = 0;
    if (n > 0)
        qsort(ids, n, 16, id_cmp);
    for (size_t i = 0; i < n; i++)
        distinct += i == 0 || memcmp(ids + 16 * i, ids + 16 * (i - 1), 16) != 0;
    *out = distinct;

cleanup:
    if (cur != NULL)
        mdb_cursor_close(cur);
    deja__rtxn_end(store, txn);
    free(ids);
    return rc;
}
