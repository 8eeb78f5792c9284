/*
 * store/store_internal.h -- what the files of store/ share with each other
 * and nobody else: the store handle, read transactions and records.
 */
#ifndef DEJA_STORE_STORE_INTERNAL_H
#define DEJA_STORE_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/codec.h"
#include "store/store.h"

/* Record header: magic 'D', codec, u32 dictionary id, u32 raw size. */
#define DEJA__RECORD_MAGIC 'D'
#define DEJA__RECORD_HEADER 10
#define DEJA__CODEC_RAW 0
#define DEJA__CODEC_ZSTD 1

/* Content-defined chunking of blobs (store/chunk.c): chunk sizes, and the
 * value of a chunked blob ('C', version, total size, chunk list). */
#define DEJA__CHUNK_MIN 128
#define DEJA__CHUNK_AVG_BITS 9
#define DEJA__CHUNK_MAX 8192
#define DEJA__CHUNKED_MAGIC 'C'
#define DEJA__CHUNKED_VERSION 1

/* Dictionary training: samples kept per write handle while no dictionary
 * exists, and the number needed before training. */
#define DEJA__DICT_SAMPLES_MAX 2000
#define DEJA__DICT_SAMPLES_BYTES ((size_t)4 << 20)
#define DEJA__DICT_TRAIN_AT 256
#define DEJA__DICT_SIZE ((size_t)32 << 10)

/* Decoded chunks a handle keeps for reads (direct-mapped by digest): a
 * system prompt or a conversation's earlier turns are read from memory. */
#define DEJA__CHUNK_CACHE_SLOTS 1024
#define DEJA__CHUNK_CACHE_BYTES ((size_t)4 << 20)

typedef struct deja__chunk_slot {
    uint8_t digest[16];
    size_t size;
    uint8_t *data; /* NULL for an empty slot */
} deja__chunk_slot;

/* Reset read transactions a handle keeps for reuse. */
#define DEJA__RTXN_POOL_MAX 8

/* One trained dictionary, loaded on first use and kept until close. */
typedef struct deja__dict {
    uint32_t id;
    void *cdict; /* ZSTD_CDict *, created by writers only */
    void *ddict; /* ZSTD_DDict *, shared by readers (read-only once built) */
    uint8_t *content; /* the dictionary's bytes, for the decoders (store/record.c) */
    size_t size;
} deja__dict;

/* The databases of the three indexes (model, tag, status) in one layout. */
typedef struct deja__ix_layout {
    MDB_dbi dbi[3];
    int dup; /* 1: format 5's (duplicates), 0: flat */
} deja__ix_layout;

struct deja_store {
    MDB_env *env;
    char *path;
    int writable;
    MDB_dbi meta, traces, blobs, envs;
    /* The indexes (store/ix.h): their databases in each layout, and the
     * one in use, switched once from flat to dup when a writer converts
     * the store (also under a read-only handle: store/ix.c). */
    deja__ix_layout ix_flat, ix_dups;
    const deja__ix_layout *_Atomic ix;
    int ix_upgrade; /* a writer found flat indexes holding entries: convert */
    MDB_dbi chunks;
    int has_chunks; /* 0 for a store written before chunking, opened read-only */
    int nolock;     /* opened read-only without LMDB's locks (no write access) */
    MDB_dbi pins;   /* 16-byte trace id -> pin record (store/pin.c) */
    int has_pins;   /* 0 for a store written before pins, opened read-only */
    MDB_dbi repeats; /* 16-byte trace id -> u64 repeats of its request (dedup) */
    int has_repeats; /* 0 for a store written before dedup, opened read-only */
    MDB_dbi dead;    /* inside gc only: values of the traces it deleted (store/delta.c) */
    int has_dead;    /* 0 for a store opened read-only before deltas */

    /* Held shared by every transaction of this handle, exclusively while the
     * map is resized (LMDB requires no live transaction in the process). */
    pthread_rwlock_t resize;
    unsigned map_gen; /* maps made: counted under resize held exclusively */

    /* Where the map was found in /proc/self/maps (store/map_trim.c): valid
     * while map_gen is trim_gen; the writer's alone. */
    uintptr_t trim_lo, trim_hi;
    unsigned trim_gen;
    int trim_known;

    /* Protects dicts, the pool of decompression contexts, that of reset
     * read transactions and the chunk cache. */
    pthread_mutex_t lock;
    deja__dict **dicts;
    size_t ndicts;
    void **dctx_pool; /* decoders (store/record.c) free for use */
    size_t ndctx_pool;
    MDB_txn *rtxn_pool[DEJA__RTXN_POOL_MAX]; /* reset read transactions */
    size_t nrtxn_pool;
    deja__chunk_slot *chunk_cache; /* DEJA__CHUNK_CACHE_SLOTS, made on first use */
    size_t chunk_cache_bytes;

    /* Held across deja__store_write: the writer state below belongs to one
     * write transaction at a time (LMDB serialises the transactions too, but
     * the sample bookkeeping reaches past begin and commit). */
    pthread_mutex_t wlock;
    int writer_lock; /* flock'd STORE/writer.lock of a writable handle, else -1 */
    void *cctx; /* ZSTD_CCtx * */
    deja__buf samples;
    size_t *sample_sizes;
    size_t nsamples;
    size_t train_failed_at; /* sample count of the last failed training */

    /* The current dictionary as last seen by a committed write transaction
     * of this handle: what deja__store_prepare_trace compresses with. */
    _Atomic uint32_t dict_hint;

    /* The writer's parents for deltas (store/delta.c), under wlock. */
    struct deja__delta_map *delta;
};

struct deja__wtxn {
    deja_store *store;
    MDB_txn *txn;
    int map_full;        /* an LMDB call hit MDB_MAP_FULL: grow and rerun */
    int drop_samples;    /* a dictionary exists: drop the samples after commit */
    int dict_loaded;     /* dict_id read from meta in this transaction */
    uint32_t dict_id;    /* current dictionary, 0 for none */
    uint32_t trained_id; /* dictionary trained in this transaction, 0 for none */
    uint64_t raw_bytes, unique_bytes, stored_bytes;
    deja__buf scratch;
    int dry_run; /* txn is a read transaction (gc --dry-run): write nothing */
    int delta_marked;    /* meta "delta" written in this transaction */
    int delta_state;     /* gc: 0 not looked, 1 the store holds deltas, 2 it does not */
    uint64_t dead_count; /* gc: deleted traces kept in `dead` for their deltas */
};

/* Begin a read transaction on `store` (taking the resize lock shared and
 * adopting a map grown by another process). End it with deja__rtxn_end. */
int deja__rtxn_begin(deja_store *store, MDB_txn **out);
void deja__rtxn_end(deja_store *store, MDB_txn *txn);

/* store/store_files.c: the files of a store directory, checked before LMDB
 * opens them. deja__store_files_check refuses a lock.mdb or data.mdb that
 * is a symlink or not a regular file, and a data.mdb smaller than its
 * meta page claims (or empty, when read); `*data_exists` says whether
 * data.mdb exists. deja__store_files_prepare checks the free space of a
 * new store's directory and creates its lock file. deja__store_shared
 * says whether a new store gets the umask's modes instead of 0700/0600. */
int deja__store_files_check(const char *dir, int writable, int *data_exists);
int deja__store_files_prepare(const char *dir, int shared);
int deja__store_files_recheck(const char *dir, int data_fd);
int deja__store_shared(int flags);

/* store/pagecheck.c: the structure of data.mdb, checked without LMDB. */
int deja__store_check_pages(const char *path, deja_problem_cb cb, void *payload);
int deja__store_check_meta(const char *path, char *msg, size_t cap);
int deja__store_check_or_fail(deja_store *store, const char *what);

/* Map an LMDB error to a deja code with a message naming `what`. */
int deja__mdb_error(int rc, const char *what);

/* Open STORE/writer.lock and hold a shared flock on it in *fd: every
 * writable handle does, so that deja_store_compact() knows writers are
 * about (store/compact.c). Waits while a compaction runs. */
int deja__store_writer_lock(const char *path, int *fd);

/* Compress `size` bytes into a record (header + payload) in `out`, with
 * dictionary `dict_id` (0 for none). Falls back to raw when compressing does
 * not help. Only inside a write transaction. */
int deja__record_encode(deja__wtxn *w, const void *data, size_t size, uint32_t dict_id,
                        deja__buf *out);

/* Compress like deja__record_encode, outside any transaction: with the
 * context `cctx` (a ZSTD_CCtx *) and the compression dictionary `cdict`
 * (a ZSTD_CDict * of dictionary `dict_id`, or NULL and 0 for none). */
int deja__record_encode_cctx(void *cctx, void *cdict, uint32_t dict_id, const void *data,
                             size_t size, deja__buf *out);

/* The compression form of dictionary `id`, loaded (in a read transaction of
 * its own when not cached yet) and cached until close. Outside any write
 * transaction of the calling thread. */
int deja__dict_cdict(deja_store *store, uint32_t id, void **cdict);

/* Decode the record `rec` (`size` bytes) read in `txn` into a malloc'd
 * buffer `*out` of `*out_size` bytes (never NULL on success; free() it).
 * `what` names the record in error messages ("trace 01J..."). Thread-safe. */
int deja__record_decode(deja_store *store, MDB_txn *txn, const void *rec, size_t size,
                        const char *what, uint8_t **out, size_t *out_size);
/* The same into `out` (content replaced, memory reused): for scans. */
int deja__record_decode_buf(deja_store *store, MDB_txn *txn, const void *rec, size_t size,
                            const char *what, deja__buf *out);
/* Decode the record `rec` and call `use` on its bytes, which stay valid
 * during the call only: a raw record's own bytes in the map, or the
 * decompression buffer of a pooled decoder (no allocation), or for a large
 * record a malloc'd buffer freed after. Returns the record's error, or
 * what `use` returns (`*used` tells which, when not NULL). */
int deja__record_visit(deja_store *store, MDB_txn *txn, const void *rec, size_t size,
                       const char *what, int (*use)(const uint8_t *data, size_t size, void *arg),
                       void *arg, int *used);

/* The compression (`cdict`, may be NULL) and decompression (`ddict`, may be
 * NULL) forms of dictionary `id`, read from meta in `txn` on first use and
 * cached until close. Unknown id -> DEJA_ECORRUPT. */
int deja__dict_get(deja_store *store, MDB_txn *txn, uint32_t id, void **cdict, void **ddict);

/* Hand a raw trace record to the dictionary sampler of a write handle, and
 * train a dictionary in `w` when enough samples are held. */
void deja__dict_sample(deja__wtxn *w, const void *data, size_t size);
int deja__dict_maybe_train(deja__wtxn *w);
void deja__dict_samples_drop(deja_store *store);

/* The number of dictionaries in the store, as seen by `txn`. */
int deja__dict_count(deja_store *store, MDB_txn *txn, uint32_t *out);

/* A decompression context (ZSTD_DCtx *) from the handle's pool, or NULL
 * when out of memory; given back reset (its prefix or dictionary dropped). */
void *deja__dctx_take(deja_store *store);
void deja__dctx_give(deja_store *store, void *dctx);

/* Free the caches of record.c. */
void deja__record_cleanup(deja_store *store);

/* Write `size` bytes under `key` of `dbi` in `w`, noting a full map so that
 * the write reruns; MDB_NOOVERWRITE on an existing key is not an error. */
int deja__wtxn_put(deja__wtxn *w, MDB_dbi dbi, const void *key, size_t ksize, const void *data,
                   size_t size, unsigned flags, const char *what);

/* The little-endian u64 at `p`; write `x` little-endian into 8 bytes. */
uint64_t deja__le64_get(const void *p);
void deja__le64_put(uint8_t *p, uint64_t x);

/* Write the u64 `value` (little-endian) under meta `key` in `w`. */
int deja__wtxn_meta_put_u64(deja__wtxn *w, const char *key, uint64_t value);

/* Meta key of the store's stored_bytes right after the last eviction. */
#define DEJA__BUDGET_MARK "budget.mark"

/* Non-zero when trace `id` is pinned, as seen by `txn` (store/pin.c). */
int deja__pinned_txn(deja_store *store, MDB_txn *txn, const deja_id *id);

/* The bytes of the pages the store's databases use, as seen by `txn`: what
 * the disk budget bounds (free pages, reused by later writes, excluded). */
int deja__txn_used_bytes(deja_store *store, MDB_txn *txn, uint64_t *out);

/* Meta helpers: read a u32 / u64 under `key` (0 when absent), add to a u64. */
int deja__meta_u32(deja_store *store, MDB_txn *txn, const char *key, uint32_t *out, int *found);
uint64_t deja__meta_u64(deja_store *store, MDB_txn *txn, const char *key);

/* Blob payload read inside `txn`, digest checked. */
int deja__blob_get_txn(deja_store *store, MDB_txn *txn, const deja_digest *digest, void **data,
                       size_t *size);

/* Decode a trace record read in `txn` under `id` (no blobs loaded). */
int deja__trace_read_txn(deja_store *store, MDB_txn *txn, const deja_id *id, deja_trace **out);

/* A parsed chunk list (the value of a chunked blob), walked in order. */
typedef struct deja__chunked {
    const uint8_t *entries, *end;
    size_t total; /* payload bytes */
    size_t count; /* chunks */
} deja__chunked;

/* The length of the chunk starting at `p` with `n` bytes left (see chunk.c). */
size_t deja__chunk_next(const uint8_t *p, size_t n);

/* Build a chunk list: begin (replacing `out`), then add each chunk. */
int deja__chunked_begin(deja__buf *out, size_t total);
int deja__chunked_add(deja__buf *out, size_t size, const deja_digest *digest);

/* Check the chunk list `v` of blob `blob` (bounds, sizes adding up) and
 * set `it` to its first chunk; DEJA_ECORRUPT naming the blob if malformed.
 * deja__chunked_next gives 1 and the next chunk, 0 at the end. */
int deja__chunked_parse(const void *v, size_t n, const deja_digest *blob, deja__chunked *it);
int deja__chunked_next(deja__chunked *it, size_t *size, const uint8_t **digest);

/* Read chunk `digest` (`size` bytes, checked with its digest) into `dst`.
 * Errors name `blob` (may be NULL) and the chunk; a missing chunk is
 * DEJA_ECORRUPT when `blob` is given, DEJA_ENOTFOUND otherwise. */
int deja__chunk_read(deja_store *store, MDB_txn *txn, const uint8_t *digest, size_t size,
                     const deja_digest *blob, uint8_t *dst);

/* Whether the `size` bytes at `data` are the content of blob `blob`: 0,
 * or DEJA_ECORRUPT "blob DIGEST: content does not match its digest". */
int deja__blob_check(const deja_digest *blob, const void *data, size_t size);

/* DEJA_ECORRUPT "blob DIGEST: WHAT is malformed (WHY)": the error for a
 * stored form of blob `blob` (`what`: "delta", "chunk list") that does not
 * parse or cannot be used. */
int deja__blob_malformed(const deja_digest *blob, const char *what, const char *why);

/* Reassemble chunked blob `blob` from its chunk list `v` into a malloc'd
 * `*data`, every chunk and the whole payload checked. With `cached`,
 * chunks are taken from and kept in the handle's chunk cache (verify reads
 * the disk only). */
int deja__chunked_read(deja_store *store, MDB_txn *txn, const deja_digest *blob, const void *v,
                       size_t n, int cached, void **data, size_t *size);

/* The chunk cache by digest, also for reconstructed deltas: copy a cached
 * payload of `size` bytes into `dst` (1, or 0 when not cached); keep a
 * copy of a checked one (up to 1/16 of the cache's bytes). */
int deja__chunk_cache_get(deja_store *store, const uint8_t *digest, size_t size, uint8_t *dst);
void deja__chunk_cache_put(deja_store *store, const uint8_t *digest, const uint8_t *data,
                           size_t size);

/* Free the chunk cache of a handle. */
void deja__chunk_cache_free(deja_store *store);

/* The indexes: store/ix.h. */

/* store/trace_refs.c: the references a trace value of format 2 carries
 * in front of its record ('R' | varint n | refs | record), read by gc and
 * the disk budget instead of decoding the record. */
#define DEJA__REFS_MAGIC 'R'
/* Bits of the refs' flags byte. */
#define DEJA__REFS_HAS_ENV 1
#define DEJA__REFS_HAS_SUMMARY 2 /* format 4 */

/* What gc needs of a trace: `view` holds its id, model, status, tags and
 * environment (what deja__ix_each and protection read; no tensors), and
 * `blobs` the `nblobs` 16-byte digests of its blob-stored payloads.
 * `raw_bytes` is what it added to count/raw_bytes. Zero-initialise, reuse
 * from one trace to the next, release with deja__refs_free. */
typedef struct deja__refs {
    deja_trace view;
    const uint8_t *blobs;
    size_t nblobs;
    uint64_t raw_bytes;
    /* The summary (format 4): view.start_ns and view.duration_ns, and the
     * payload bytes of the inputs and of the outputs; 0 when absent. */
    int has_summary;
    uint64_t input_bytes, output_bytes;
    deja_trace *decoded; /* a value of format 1, decoded */
    deja__buf arena;     /* the strings of view */
    deja__buf digests;   /* blobs of a decoded trace */
    deja_tag *tags;
    size_t cap_tags;
} deja__refs;

/* Append 'R', the length and the refs of `trace` to `out`; `blobs` holds
 * the `nblobs` digests of its blob-stored payloads (inputs then outputs). */
int deja__refs_encode(const deja_trace *trace, const uint8_t *blobs, size_t nblobs,
                      uint64_t raw_bytes, deja__buf *out);

/* Split a trace value into its refs (NULL, 0 for format 1) and its record;
 * -1 when the prefix is malformed. */
int deja__trace_value_split(const void *value, size_t size, const uint8_t **refs, size_t *nrefs,
                            const uint8_t **rec, size_t *nrec);

/* Decompress the record of trace value `v` (its refs skipped) into `out`
 * (replacing its content), as deja__record_decode_buf does. */
int deja__trace_value_record(deja_store *store, MDB_txn *txn, const MDB_val *v, const char *what,
                             deja__buf *out);

/* The references of trace `id` (value `v`, read in `txn`): parsed from its
 * refs, or, for a value of format 1, by decoding its record. DEJA_ECORRUPT
 * naming the trace when they cannot be had. */
int deja__refs_read(deja_store *store, MDB_txn *txn, const deja_id *id, const MDB_val *v,
                    deja__refs *r);
void deja__refs_free(deja__refs *r);

/* Whether the refs in value `v` agree with `t`, the trace decoded from
 * it: 1 yes (or no refs), 0 no with `*why` saying how, negative on error. */
int deja__refs_check(const deja_trace *t, const MDB_val *v, const char **why);

/* store/delta.c: a text input stored as a delta against its parent trace
 * (a blob value 'X'; see the file's header). The chain bound: a delta's
 * base holds deltas only of a smaller depth, at most DEJA__DELTA_DEPTH_MAX,
 * so reading a trace follows at most that many parents. */
#define DEJA__DELTA_MAGIC 'X'
#define DEJA__DELTA_VERSION 1
#define DEJA__DELTA_DEPTH_MAX 8
#define DEJA__DELTA_BASE_MAX ((size_t)4 << 20)
#define DEJA__DELTA_FP 96         /* bytes of a text input fingerprinted */
#define DEJA__DELTA_META "delta" /* meta key, 1 once the store holds a delta */

typedef struct deja__delta_map deja__delta_map;

/* A parsed delta header. */
typedef struct deja__delta {
    unsigned depth;  /* 1..DEJA__DELTA_DEPTH_MAX */
    size_t total;    /* payload bytes */
    deja_id parent;  /* the trace holding the base */
    uint32_t input;  /* the input of the parent that starts the base */
    const uint8_t *frame;
    size_t nframe;
} deja__delta;

/* Parse the delta value `v` (`n` bytes) of blob `blob`: DEJA_ECORRUPT
 * naming the blob when malformed. */
int deja__delta_parse(const void *v, size_t n, const deja_digest *blob, deja__delta *out);

/* Reconstruct the delta blob `blob` (value `v`) read in `txn` into a
 * malloc'd `*data`, checked against its digest: DEJA_ECORRUPT naming the
 * blob when its parent is missing or anything does not add up. */
int deja__delta_read(deja_store *store, MDB_txn *txn, const deja_digest *blob, const void *v,
                     size_t n, void **data, size_t *size);

/* Writing: store input payload `data` of `trace` (absent from the blobs,
 * digest `digest`) as a delta when a parent is known: 1 stored, 0 not (store
 * it whole), negative on error. deja__delta_note remembers the text inputs
 * of a trace just stored as parents. deja__delta_free at close. */
int deja__delta_put(deja__wtxn *w, const deja_trace *trace, const void *data, size_t size,
                    const deja_digest *digest);
void deja__delta_note(deja__wtxn *w, const deja_trace *trace);
void deja__delta_free(deja_store *store);

/* gc: keep the value of trace `id`, about to be deleted, while deltas may
 * need it (when the store holds any); deja__delta_pending says whether any
 * was kept. deja__delta_rescue rewrites whole every delta blob that `live`
 * says is still used (NULL: every one) and whose parent is deleted, then
 * forgets the kept values; `*rewritten` counts the blobs. */
int deja__delta_keep(deja__wtxn *w, const deja_id *id, const MDB_val *value);
int deja__delta_pending(const deja__wtxn *w);
int deja__delta_rescue(deja__wtxn *w, int (*live)(const uint8_t *digest, void *payload),
                       void *payload, uint64_t *rewritten);

/* Replace the value of blob `digest` with `data` stored whole (chunked or
 * one record), as a new blob would be. */
int deja__wtxn_blob_rewrite(deja__wtxn *w, const void *data, size_t size,
                            const deja_digest *digest);

/* Parse the refs `p` (`n` bytes, as split off a value) of trace `id` into
 * `r`: 0, DEJA_ECORRUPT or DEJA_ENOMEM, no message set. */
int deja__refs_parse(const deja_id *id, const uint8_t *p, size_t n, deja__refs *r);

/* store/trace_summary.c: the summary in the refs (format 4):
 *   varint zigzag(start_ns - the id's millisecond in ns) | varint
 *   zigzag(duration_ns) | varint input bytes | varint output bytes
 * (the start is nearly always within a second of the id's millisecond:
 * 1-4 bytes instead of 9). */

/* Append the summary of `trace` to `out`: 0 or DEJA_ENOMEM. */
int deja__trace_summary_encode(const deja_trace *trace, deja__buf *out);

/* Read the summary at `*p` (before `end`) into r->view (start_ns,
 * duration_ns; r->view.id must be set) and r's byte counts, advancing
 * `*p`. 0, or -1 when cut short or malformed. */
int deja__trace_summary_decode(const uint8_t **p, const uint8_t *end, deja__refs *r);

/* The payload bytes of the inputs and of the outputs of `t`. */
void deja__trace_summary_sizes(const deja_trace *t, uint64_t *in, uint64_t *out);

/* Whether the summary parsed into `r` says what trace `t` says. */
int deja__trace_summary_agrees(const deja__refs *r, const deja_trace *t);

/* What reading summaries reuses from one trace to the next.
 * Zero-initialise; release with deja__summary_reader_free. */
typedef struct deja__summary_reader {
    deja__refs refs;
    deja__buf raw; /* a record without a summary, decompressed */
    deja__peek pk;
    deja_trace view;
} deja__summary_reader;

/* The summary of trace `id` from its value `v` read in `txn` (valid until
 * the next call with `r`): from its refs when they carry one, else from
 * its record, decompressed and peeked. DEJA_ECORRUPT naming the trace when
 * neither can be read, DEJA_ENOMEM. */
int deja__trace_summary_read(deja_store *store, MDB_txn *txn, const deja_id *id,
                             const MDB_val *v, deja__summary_reader *r, deja__trace_summary *out);

/* The summary of `v` when its refs carry one (1, `out` set, valid until
 * the next call with `r`), else 0 (no summary, or refs that do not parse:
 * the caller reads the record, which reports what is wrong). */
int deja__trace_summary_of(const deja_id *id, const MDB_val *v, deja__summary_reader *r,
                           deja__trace_summary *out);
void deja__summary_reader_free(deja__summary_reader *r);

#include "store/ix.h"

#endif /* DEJA_STORE_STORE_INTERNAL_H */
