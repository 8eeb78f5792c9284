/*
 * store/pin.c -- pinned traces: never deleted by gc, age or the budget.
 *
 * A pin is a record of the `pins` database under the trace's 16-byte id:
 * the u64 (little-endian) Unix time it was pinned, in ns, then the note's
 * bytes (at most DEJA__PIN_NOTE_MAX). A store written before pins has no
 * `pins` database: opened read-only, nothing in it is pinned.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"

#define PIN_HEADER 8

/* Non-zero when trace `id` is pinned, as seen by `txn`. */
int deja__pinned_txn(deja_store *store, MDB_txn *txn, const deja_id *id)
{
    MDB_val k = {16, (void *)id->bytes}, v;

    return store->has_pins && mdb_get(txn, store->pins, &k, &v) == 0;
}

typedef struct pin_op {
    const deja_id *id;
    const char *note;
    size_t note_len;
    int unpin;
} pin_op;

/* The write of deja_trace_pin / deja_trace_unpin, inside one transaction. */
static int pin_fill(deja__wtxn *w, void *payload)
{
    const pin_op *op = payload;
    MDB_val k = {16, (void *)op->id->bytes}, v;
    char text[DEJA_ID_STRLEN + 1];
    uint8_t *rec = NULL;
    int64_t now;
    int rc;

    deja_id_format(op->id, text);
    if (op->unpin) {
        rc = mdb_del(w->txn, w->store->pins, &k, NULL);
        if (rc == MDB_NOTFOUND)
            return deja__error_set(DEJA_ENOTFOUND, "trace %s is not pinned", text);
        return rc == 0 ? 0 : deja__mdb_error(rc, "unpinning");
    }
    rc = mdb_get(w->txn, w->store->traces, &k, &v);
    if (rc == MDB_NOTFOUND)
        return deja__error_set(DEJA_ENOTFOUND, "no trace %s to pin", text);
    if (rc != 0)
        return deja__mdb_error(rc, "pinning");
    rec = malloc(PIN_HEADER + op->note_len + 1);
    if (rec == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory pinning trace %s", text);
    now = deja__now_ns();
    deja__le64_put(rec, (uint64_t)now);
    if (op->note_len > 0)
        memcpy(rec + PIN_HEADER, op->note, op->note_len);
    rc = deja__wtxn_put(w, w->store->pins, op->id->bytes, 16, rec, PIN_HEADER + op->note_len, 0,
                        "pinning");
    free(rec);
    return rc;
}

/* Run `op` in a write transaction of `store`, which must be writable. */
static int pin_write(deja_store *store, pin_op *op)
{
    if (store == NULL || op->id == NULL)
        return deja__error_set(DEJA_EINVAL, "pin: no store or no trace id");
    if (!store->writable || !store->has_pins)
        return deja__error_set(DEJA_EINVAL, "store '%s' is open read-only: pinning needs write",
                               store->path);
    return deja__store_write(store, pin_fill, op);
}

/* Pin trace `id` with `note`; see deja.h. */
int deja_trace_pin(deja_store *store, const deja_id *id, const char *note)
{
    pin_op op = {id, note, note ? strlen(note) : 0, 0};

    if (op.note_len > DEJA__PIN_NOTE_MAX)
        return deja__error_set(DEJA_EINVAL, "pin note of %zu bytes is over the limit of %d",
                               op.note_len, DEJA__PIN_NOTE_MAX);
    return pin_write(store, &op);
}

/* Unpin trace `id`; see deja.h. */
int deja_trace_unpin(deja_store *store, const deja_id *id)
{
    pin_op op = {id, NULL, 0, 1};

    return pin_write(store, &op);
}

/* Whether `id` is pinned, with its note and time; see deja.h. */
int deja_trace_pin_get(deja_store *store, const deja_id *id, char **note, int64_t *pinned_ns)
{
    MDB_txn *txn = NULL;
    MDB_val k, v;
    uint64_t at = 0;
    int rc;

    if (note != NULL)
        *note = NULL;
    if (pinned_ns != NULL)
        *pinned_ns = 0;
    if (store == NULL || id == NULL)
        return deja__error_set(DEJA_EINVAL, "pin: no store or no trace id");
    if (!store->has_pins)
        return 0;
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    k.mv_size = 16;
    k.mv_data = (void *)id->bytes;
    rc = mdb_get(txn, store->pins, &k, &v);
    if (rc == MDB_NOTFOUND) {
        rc = 0;
        goto cleanup;
    }
    if (rc != 0) {
        rc = deja__mdb_error(rc, "reading a pin");
        goto cleanup;
    }
    if (v.mv_size < PIN_HEADER || v.mv_size > PIN_HEADER + DEJA__PIN_NOTE_MAX) {
        rc = deja__error_set(DEJA_ECORRUPT, "pin record of %zu bytes", v.mv_size);
        goto cleanup;
    }
    at = deja__le64_get(v.mv_data);
    if (pinned_ns != NULL)
        *pinned_ns = (int64_t)at;
    if (note != NULL) {
        const size_t n = v.mv_size - PIN_HEADER;

        *note = malloc(n + 1);
        if (*note == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory reading a pin note");
            goto cleanup;
        }
        memcpy(*note, (const uint8_t *)v.mv_data + PIN_HEADER, n);
        (*note)[n] = '\0';
    }
    rc = 1;
cleanup:
    deja__rtxn_end(store, txn);
    return rc;
}
