/*
 * store/store.h -- the store room's interface to the rest of libdeja.
 *
 * tracer/, replay/ and proto/ talk to the store through this header only.
 * Public reading functions (deja_store_open, deja_trace_get, ...) are in
 * include/deja.h; this header adds what the library needs internally: the
 * write side. Errors, ids and bounds come from core/.
 *
 * On disk: one LMDB environment (a directory) with named databases
 *   meta     "format" -> u32 format version; "dict.current" -> u32 dictionary
 *            id; "dict/<u32 id>" -> zstd dictionary; "count/<name>" -> u64
 *            counters (dropped, sampled_out, redacted, raw_bytes, ...)
 *   traces   16-byte id -> 'R' | varint n | refs | record (compressed Trace
 *            protobuf); the refs (format 2, store/trace_refs.c) name its
 *            model, status, tags, environment and blobs uncompressed, for
 *            gc, and (format 4) its summary: start, duration, payload
 *            sizes, for scans; a value of format 1 is the record alone
 *   blobs    16-byte XXH3-128 digest of the payload -> a record holding
 *            the payload, or a chunk list (first byte 'C': the digests and
 *            sizes of its content-defined chunks, see store/chunk.c), or
 *            a delta against a parent trace (first byte 'X', format 3,
 *            see store/delta.c)
 *   chunks   16-byte XXH3-128 digest -> record (compressed chunk)
 *   envs     16-byte digest -> record (compressed Environment protobuf)
 *   ixd_model "name\0version\0" -> ids, ixd_tag "key=value\0" -> ids,
 *   ixd_status status byte -> ids: the indexes, each id a 16-byte LMDB
 *            duplicate of its key (format 5); formats 1-4 kept one key per
 *            entry, prefix + id -> "", in ix_model, ix_tag and ix_status
 *            (empty in format 5). See store/ix.h.
 *   dead     16-byte id -> trace value: empty but inside gc (store/delta.c)
 * A record is a small header (codec, dictionary id, raw size) then the
 * payload; see store/record.c.
 *
 * Room store/: the LMDB store. It calls core/ and proto/; tracer/, replay/
 * and bundle/ call it through this header only.
 */
#ifndef DEJA_STORE_STORE_H
#define DEJA_STORE_STORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "deja.h"
#include "proto/codec.h"

/* On-disk format this build writes and the newest it reads. */
#define DEJA__FORMAT_VERSION 5

/* Tensors up to this size are stored inline in the trace record; larger
 * ones are blobs, stored once per distinct payload. */
#define DEJA__INLINE_MAX 1024

/* ------------------------------------------------------------------------
 * Writing. All writes happen in one LMDB write transaction per call to
 * deja__store_write(), which runs `fill` inside it and commits. When the
 * map is full, the transaction is aborted, the map grown, and `fill` is
 * called again from the start: it must be repeatable. If `fill` returns
 * non-zero the transaction is aborted and nothing is written.
 * ---------------------------------------------------------------------- */

typedef struct deja__wtxn deja__wtxn;
typedef int (*deja__fill_fn)(deja__wtxn *w, void *payload);

int deja__store_write(deja_store *store, deja__fill_fn fill, void *payload);

/* Store one trace: tensors above DEJA__INLINE_MAX become blobs (stored
 * once), the record is compressed with the current dictionary, and index
 * entries are added. A trace whose id is already present is left as it is
 * (imports are idempotent); `*added` (may be NULL) says which. */
int deja__wtxn_put_trace(deja__wtxn *w, const deja_trace *trace, int *added);

/* A trace prepared for storing outside any transaction (possibly on another
 * thread): its encoding, its record compressed with the dictionary current
 * when prepared (dictionaries are never deleted, so the record stays valid),
 * and the payloads above DEJA__INLINE_MAX with their digests, to be stored
 * as blobs by deja__wtxn_put_prepared. Zero-initialise; the buffers are
 * reused from one trace to the next; release with deja__prepared_free().
 * The blob pointers point into the trace, which must outlive the put. */
typedef struct deja__prep_blob {
    const void *data;
    size_t size;
    deja_digest digest;
} deja__prep_blob;

typedef struct deja__prepared {
    deja__buf enc; /* the encoded Trace protobuf (raw record payload) */
    deja__buf rec; /* the record: header and compressed payload */
    deja__buf refs;    /* the refs prefix of the trace value (store/trace_refs.c) */
    deja__buf digests; /* scratch: the blob digests, 16 bytes each */
    deja__prep_blob *blobs;
    size_t nblobs, cap_blobs;
    int rc; /* 0 once prepared; else the code of the failed preparation */
} deja__prepared;

void deja__prepared_free(deja__prepared *p);

/* A compression context for deja__store_prepare_trace (one per thread), or
 * NULL when out of memory; freed with deja__cctx_free (accepts NULL). */
void *deja__cctx_new(void);
void deja__cctx_free(void *cctx);

/* Prepare `trace` into `p` with the compression context `cctx`: encode,
 * digest the large payloads, compress with the store's current dictionary
 * (as last seen by a write transaction of this handle). Takes no write
 * lock: many threads may prepare at once, each with its own cctx and `p`.
 * Sets and returns p->rc. */
int deja__store_prepare_trace(deja_store *store, void *cctx, const deja_trace *trace,
                              deja__prepared *p);

/* Store a prepared trace: like deja__wtxn_put_trace, with the CPU work
 * already done. Reads `p` only, so that fill stays repeatable. */
int deja__wtxn_put_prepared(deja__wtxn *w, const deja_trace *trace, const deja__prepared *p,
                            int *added);

/* Store a payload once; its digest is written to `out`. */
int deja__wtxn_put_blob(deja__wtxn *w, const void *data, size_t size, deja_digest *out);

/* Store an environment once; its digest is written to `out`. */
int deja__wtxn_put_env(deja__wtxn *w, const deja_env *env, deja_digest *out);
/* Store `env` (digest `digest`) unless already present. */
int deja__wtxn_ensure_env(deja__wtxn *w, const deja_env *env, const deja_digest *digest);

/* Add `delta` to the store-wide counter "count/<name>" (shown by `deja
 * stats`, listed by deja_store_counters). */
int deja__wtxn_count_add(deja__wtxn *w, const char *name, uint64_t delta);

/* Whether a decoded trace passes the filters of `f` on its model, version,
 * times, status and tags (not the pin, which needs a transaction, nor the
 * limit): the one rule of deja_store_list, also applied by fleet/. */
int deja__trace_matches(const deja_trace *t, const deja_filter *f);

/* Add `delta` to the counter `counter` ("sampled_out", "dropped") of
 * model `model` version `version` (store/group_count.c): the tracers'
 * losses per model version, beside the store-wide counters. */
int deja__wtxn_group_count_add(deja__wtxn *w, const char *counter, const char *model,
                               const char *version, uint64_t delta);

/* Call `cb` on every counter per model version (counter, model, version,
 * value), in key order; a non-zero return stops. Returns 0 or the store's
 * error. */
typedef int (*deja__group_count_cb)(const char *counter, const char *model, const char *version,
                                    uint64_t value, void *payload);
int deja__store_group_counts(deja_store *store, deja__group_count_cb cb, void *payload);

/* A repeat count of dedup sampling: `count` more requests identical to the
 * one trace `id` recorded. */
typedef struct deja__repeat {
    deja_id id;
    uint64_t count;
} deja__repeat;

/* Add `count` to the repeats of trace `id` (store/repeat.c). */
int deja__wtxn_repeats_add(deja__wtxn *w, const deja_id *id, uint64_t count);

/* The budget's eviction: evict the oldest unpinned traces for the pages in
 * use above `max_bytes`, never sweeping `keep_env` (may be NULL), the
 * environment a live writer of this process references. Cheap: decodes
 * only the traces it looks at, and sweeps only when they held blobs. */
int deja__store_evict(deja_store *store, uint64_t max_bytes, const deja_digest *keep_env);

/* Enforce the store's disk budget, if it has one: when the pages in use
 * exceed it, evict down to DEJA__BUDGET_LOW_WATER percent of it (see
 * store/budget.c). Cheap when under budget (one read transaction). */
int deja__store_budget_enforce(deja_store *store, const deja_digest *keep_env);
#define DEJA__BUDGET_LOW_WATER 90
#define DEJA__BUDGET_HARD 10

/* Add to the store-wide tracer counters shown by `deja stats`. */
int deja__wtxn_count(deja__wtxn *w, uint64_t dropped, uint64_t sampled_out, uint64_t redacted);

/* Read a blob's payload (decompressed, digest checked). The caller frees
 * `*data` with free(). */
int deja__store_blob_get(deja_store *store, const deja_digest *digest, void **data, size_t *size);

/* Ask LMDB to write its buffers to disk (the tracer opens with MDB_NOSYNC
 * and syncs on flush). */
int deja__store_sync(deja_store *store);

/* Drop the pages of the store's map from this process's page tables (they
 * stay in the page cache): a long-running writer's RSS then does not grow
 * with the store (store/map_trim.c). One thread at a time per handle.
 * Returns 0 or DEJA_EIO. */
int deja__store_map_trim(deja_store *store);

/* deja__store_map_trim for the handle's writer inside its own write
 * transaction (a fill callback): trims only when the map's place is known
 * from an earlier trim. Returns 0, or 1 when nothing was done. */
int deja__store_map_trim_known(deja_store *store);

/* deja_store_list() over the traces whose id is also within [lo, hi]
 * (either bound may be NULL): a scan split across threads lists disjoint
 * id ranges (store/read.c). */
int deja__store_list_between(deja_store *store, const deja_filter *filter, const deja_id *lo,
                             const deja_id *hi, deja_trace_cb cb, deja_bad_cb bad, void *payload);

/* What a scan sees of one trace: `trace` holds its id, start_ns,
 * duration_ns, model name and version, status and tags, and nothing else
 * (no tensors, params, seeds, clock reads, error text; has_env may be
 * set); input_bytes and output_bytes are the payload bytes of its inputs
 * and of its outputs. */
typedef struct deja__trace_summary {
    const deja_trace *trace;
    uint64_t input_bytes, output_bytes;
} deja__trace_summary;

typedef int (*deja__summary_cb)(const deja__trace_summary *s, void *payload);

/* deja__store_list_between showing each trace's summary only, for scans
 * of whole stores: read from the summary the trace value carries (format
 * 3, store/trace_summary.c) without decompressing its record, or for an
 * older value from its decompressed record without unpacking the rest
 * (deja__trace_peek); nothing is allocated per trace. What `cb` sees is
 * valid during the call only. */
int deja__store_peek_between(deja_store *store, const deja_filter *filter, const deja_id *lo,
                             const deja_id *hi, deja__summary_cb cb, deja_bad_cb bad,
                             void *payload);

/* Give back the resident pages of a read-only store's memory map (they
 * are read again from the page cache when touched): long scans call it
 * now and then to keep their resident size bounded (store/extent.c). */
void deja__store_trim(deja_store *store);
/* ------------------------------------------------------------------------
 * Copying a store elsewhere and back (store/sync.c): fleet/ ships traces in
 * id order from a position kept in meta, and pulls what is missing.
 * ---------------------------------------------------------------------- */

typedef enum deja__kind { DEJA__KIND_TRACE, DEJA__KIND_BLOB, DEJA__KIND_ENV } deja__kind;

/* Call `fn` on the ids of the traces after `after` (NULL: from the first),
 * ascending, at most `max` of them; stops at the first non-zero result of
 * `fn` and returns it. */
int deja__store_ids_after(deja_store *store, const deja_id *after, size_t max,
                          int (*fn)(const deja_id *id, void *payload), void *payload);

/* Read the records of the traces `ids` (in one read transaction), each
 * decompressed but not decoded (the encoded Trace message), and hand them
 * in order to `cb` (index in `ids`, bytes valid during the call). Stops at
 * the first non-zero result of `cb` and returns it; DEJA_ENOTFOUND for an
 * id not stored, DEJA_ECORRUPT for a record that does not decompress
 * (store/raw.c). */
typedef int (*deja__raw_cb)(size_t index, const uint8_t *data, size_t size, void *payload);
int deja__store_traces_raw(deja_store *store, const deja_id *ids, size_t n, deja__raw_cb cb,
                           void *payload);

/* Whether the trace, blob or environment `key` is stored: 1, 0 or a
 * negative code. */
int deja__store_has(deja_store *store, deja__kind kind, const uint8_t key[16]);

/* Opaque values in meta: get (copied into `out`, `*found` says whether
 * present) and put (in a write transaction of its own). */
int deja__store_meta_get(deja_store *store, const char *key, deja__buf *out, int *found);
int deja__store_meta_put(deja_store *store, const char *key, const void *data, size_t size);

/* The length of the first content-defined chunk of the `n` bytes at `p`,
 * as the store cuts blobs (n itself when the payload is one chunk). */
size_t deja__store_cut(const void *p, size_t n);

/* Open flags beyond the public ones. */
#define DEJA__STORE_NOSYNC 0x100

#endif /* DEJA_STORE_STORE_H */
