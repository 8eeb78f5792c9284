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

/* The ids collected by collect_id. */
typedef struct id_list {
    uint8_t *ids;
    size_t n, cap;
} id_list;

/* deja__ix_scan callback: keep the entry's id. */
static int collect_id(const uint8_t *key, size_t n, const uint8_t *id, void *payload)
{
    id_list *l = payload;

    (void)key;
    (void)n;
    if (id == NULL)
        return 0;
    if (l->n == l->cap) {
        const size_t grown_cap = l->cap ? l->cap * 2 : 256;
        uint8_t *grown = realloc(l->ids, grown_cap * 16);

        if (grown == NULL)
            return deja__error_set(DEJA_ENOMEM, "counting invalid traces: out of memory");
        l->ids = grown;
        l->cap = grown_cap;
    }
    memcpy(l->ids + 16 * l->n++, id, 16);
    return 0;
}

/* Count the distinct ids of the tag index entries "deja.invalid=RULE\0":
 * a trace that broke several rules has one entry per rule. */
int deja_store_invalid_count(deja_store *store, uint64_t *out)
{
    static const char prefix[] = DEJA_INVALID_TAG "=";
    MDB_txn *txn = NULL;
    id_list l = {NULL, 0, 0};
    size_t distinct = 0;
    int rc;

    *out = 0;
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    rc = deja__ix_scan(store, txn, DEJA__IX_TAG, prefix, sizeof prefix - 1, collect_id, &l);
    if (rc != 0)
        goto cleanup;
    if (l.n > 0)
        qsort(l.ids, l.n, 16, id_cmp);
    for (size_t i = 0; i < l.n; i++)
        distinct += i == 0 || memcmp(l.ids + 16 * i, l.ids + 16 * (i - 1), 16) != 0;
    *out = distinct;

cleanup:
    deja__rtxn_end(store, txn);
    free(l.ids);
    return rc;
}
