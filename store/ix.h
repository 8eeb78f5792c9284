/*
 * store/ix.h -- the three indexes (model, tag, status) and their layout on
 * disk, owned by store/ix.c: every reader and writer of an index goes
 * through these functions, which know both layouts.
 *
 * Format 5 ("dup"): one key per prefix, the trace ids its values, as LMDB
 * duplicates of 16 bytes (MDB_DUPSORT | MDB_DUPFIXED), in the databases
 *   ixd_model  "name\0version\0" -> ids
 *   ixd_tag    "key=value\0"     -> ids
 *   ixd_status status byte       -> ids
 * The ids of a key sit packed in pages of their own, 16 bytes each,
 * written in order (ids are time-ordered: MDB_APPENDDUP, pages filled).
 *
 * Formats 1-4 ("flat"): one key per entry, prefix + 16-byte id, empty
 * value, in ix_model, ix_tag and ix_status. A store of format 4 or older
 * opened read-only is read in that layout; a writer opening it converts
 * its indexes in one transaction (store/ix.c: deja__ix_upgrade) and leaves
 * ix_model, ix_tag and ix_status empty (kept, so that an older deja finds
 * the databases it expects and refuses the format by its number).
 *
 * Which entries a trace has (deja__ix_each) does not depend on the layout:
 * a prefix whose key would exceed LMDB's key size with 16 bytes after it is
 * not indexed, in either.
 */
#ifndef DEJA_STORE_IX_H
#define DEJA_STORE_IX_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef enum deja__ix_kind { DEJA__IX_MODEL = 0, DEJA__IX_TAG = 1, DEJA__IX_STATUS = 2 } deja__ix_kind;
#define DEJA__IX_KINDS 3

/* The database of index `kind` in the layout `store` uses, and whether
 * that layout is the dup one. */
MDB_dbi deja__ix_dbi(deja_store *store, deja__ix_kind kind);
int deja__ix_is_dup(deja_store *store);

/* Open the index databases in `txn` (store/store.c's open_dbs): the dup
 * ones when present (or created, for a new store: `create` and the flat
 * ones empty), else the flat ones; for a writer that found a flat layout
 * holding entries, sets store->ix_upgrade. */
int deja__ix_open(deja_store *store, MDB_txn *txn, int create);

/* Called by deja__rtxn_begin on `*txn` while the handle reads the flat
 * layout: when the store's format says a writer has converted it since,
 * switch to the dup databases and renew `*txn` (set to NULL if that
 * fails) so that it sees them. Cheap otherwise (one meta lookup). */
void deja__ix_refresh(deja_store *store, MDB_txn **txn);

/* Convert the flat indexes of a writable store into the dup layout, in one
 * write transaction (no-op when another writer did it first). */
int deja__ix_upgrade(deja_store *store);

/* The index keys of a trace. Each returns the prefix's length, or 0 when
 * the prefix and 16 bytes would exceed `max` (not indexed). */
size_t deja__ix_model_key(const deja_trace *trace, uint8_t *key, size_t max);
size_t deja__ix_tag_key(const deja_tag *tag, uint8_t *key, size_t max);

/* Call `fn` on each index entry of `trace` (its id is trace->id): its model
 * entry, one per tag, its status entry; `what` names the index ("model",
 * "tag", "status"), `key` its prefix (no id). Stops at and returns the
 * first non-zero result. The one definition of which entries a trace has:
 * writing, gc and verify all go through it. */
typedef int (*deja__ix_fn)(deja__ix_kind kind, const uint8_t *key, size_t n, const char *what,
                           void *payload);
int deja__ix_each(deja_store *store, const deja_trace *trace, deja__ix_fn fn, void *payload);

/* Add the entry `key` -> `id` to index `kind` in `w`; present already is
 * fine. Errors name the index; a full map sets w->map_full. */
int deja__ix_put(deja__wtxn *w, deja__ix_kind kind, const uint8_t *key, size_t n,
                 const deja_id *id);

/* Delete the entry `key` -> `id` through `cur`, a cursor on index `kind`
 * in `w` (absent is fine). */
int deja__ix_del(deja__wtxn *w, MDB_cursor *cur, deja__ix_kind kind, const uint8_t *key, size_t n,
                 const deja_id *id);

/* Whether the entry `key` -> `id` exists in `txn`: 1, 0 or a negative code. */
int deja__ix_has(deja_store *store, MDB_txn *txn, deja__ix_kind kind, const uint8_t *key,
                 size_t n, const deja_id *id);

/* The number of entries of index `kind` whose key starts with the `n`
 * bytes at `prefix`, into `*out`. */
int deja__ix_count(deja_store *store, MDB_txn *txn, deja__ix_kind kind, const void *prefix,
                   size_t n, uint64_t *out);

/* Call `fn` on every entry of index `kind` whose key starts with `prefix`
 * (n 0: all), keys in order and each key's ids oldest first: `key` is the
 * prefix part (`n` bytes), `id` its 16 bytes, or NULL for an entry too
 * malformed to hold one (verify reports it). A non-zero result of `fn`
 * stops and is returned. */
typedef int (*deja__ix_entry_fn)(const uint8_t *key, size_t n, const uint8_t *id, void *payload);
int deja__ix_scan(deja_store *store, MDB_txn *txn, deja__ix_kind kind, const void *prefix,
                  size_t n, deja__ix_entry_fn fn, void *payload);

/* Call `fn` once on each distinct key of index `kind` that starts with
 * `prefix`, in order (`id` NULL). */
int deja__ix_keys(deja_store *store, MDB_txn *txn, deja__ix_kind kind, const void *prefix,
                  size_t n, deja__ix_entry_fn fn, void *payload);

/* An iterator over the ids of one key between two bounds, newest first
 * (last, prev) or oldest first (first, next). Flat, it also walks a
 * database keyed by the id alone (n 0: traces, pins), `value` then being
 * the entry's value. After each call `valid` says whether `id` holds one;
 * each returns 0 or a negative code. */
typedef struct deja__ix_iter {
    MDB_cursor *cur;
    int dup;
    uint8_t key[512];
    size_t n;
    deja_id lo, hi;
    int valid;
    deja_id id;
    MDB_val value;
} deja__ix_iter;

/* Open `it` on the key `key` (`n` bytes) of `dbi`, `dup` saying its
 * layout; nothing positioned yet. DEJA_EINVAL when the key is too long. */
int deja__ix_iter_open(deja__ix_iter *it, MDB_txn *txn, MDB_dbi dbi, int dup, const void *key,
                       size_t n);
/* The same on index `kind` of `store`. */
int deja__ix_iter_open_kind(deja__ix_iter *it, deja_store *store, MDB_txn *txn,
                            deja__ix_kind kind, const void *key, size_t n);
int deja__ix_iter_last(deja__ix_iter *it, const deja_id *lo, const deja_id *hi);
int deja__ix_iter_prev(deja__ix_iter *it);
int deja__ix_iter_first(deja__ix_iter *it, const deja_id *lo, const deja_id *hi);
int deja__ix_iter_next(deja__ix_iter *it);
void deja__ix_iter_close(deja__ix_iter *it);

/* The database pages of the dup indexes that mdb_stat does not count (a
 * key's ids in pages of their own), estimated as full pages of ids; added
 * to the pages in use by store/budget.c. */
uint64_t deja__ix_extra_pages(deja_store *store, MDB_txn *txn, uint64_t psize);

#endif /* DEJA_STORE_IX_H */
