/*
 * tracer/tracer_internal.h -- the tracer room's private structures, shared by
 * span.c (the calling thread's side), tracer.c (queue and lifecycle),
 * writer.c (the writer thread), ctx.c (the determinism context) and rng.c.
 * Nothing outside tracer/ includes this header.
 *
 * Room tracer/: the interceptor (spans, writer thread, determinism context,
 * environment fingerprint). It calls core/, proto/ and store/ (through
 * store/store.h); replay/ reaches the determinism context through the public
 * API (deja_ctx).
 */
#ifndef DEJA_TRACER_INTERNAL_H
#define DEJA_TRACER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "deja.h"
#include "core/limits.h"
#include "proto/codec.h"
#include "store/store.h"

/* Bytes of one span allocation: the span, its first arena block and that
 * block's data (about 3.6 KB); most inferences fit in it, so recording
 * them allocates nothing beyond a recycled span. With malloc's header the
 * allocation is one page. */
#define DEJA__SPAN_ALLOC (4096 - 16)

/* Spans kept for reuse per tracer at most: enough for a full queue and a
 * batch at the writer, so that a steady stream of spans recycles memory
 * that is already mapped (fresh pages cost far more than the copy). Pooled
 * spans keep only their first block (4 KB): the pool holds 16 MB at most.
 * Spans are made only as recorders need them: recording back to back, the
 * queue's byte bound (12 MB by default), the writer's two batches and the
 * spans being recorded. */
#define DEJA__SPAN_POOL_MAX 4096

/* Payloads are copied with streaming stores once this many spans wait for
 * the writer: their memory has then left the caches (about 2.5 KB a span
 * of the small workload: 256 spans fill half of a 1 MB L2), and reading
 * it back for ownership costs more than the copy itself. */
#define DEJA__STREAM_AT 256

/* The writer gives the store's mapped pages back once the process's
 * file-backed RSS has grown this much since it last did (writer.c); every
 * DEJA__TRIM_MS ms where /proc cannot tell. */
#ifndef DEJA__TRIM_BYTES /* a build may set it, e.g. to pair runs without trims */
#define DEJA__TRIM_BYTES ((int64_t)4 << 20)
#endif
#define DEJA__TRIM_MS 50
/* ... and checks between every this many traces a commit puts (0: after
 * the commit only), since one commit of chat traces alone maps 3-10 MB. */
#ifndef DEJA__TRIM_EVERY
#define DEJA__TRIM_EVERY 8
#endif

/* The writer is woken once this many spans wait (or on its interval). */
#define DEJA__WAKE_AT 64

/* Ids of traces lost to a store error kept for deja_tracer_failed_ids. */
#define DEJA__FAILED_IDS_MAX 4096

/* tracer/env.c: the selection of variables recorded (see env_vars). */
int deja__env_spec_check(const char *spec, const char *what);
int deja__env_capture_with(const char *spec, deja_env **out, deja_digest *digest);

/* Bounds on the tracer options. */
#define DEJA__QUEUE_MAX ((size_t)1 << 24)
#define DEJA__BATCH_MAX 65536u

/* One block of a span's arena. Blocks never move, so every pointer into
 * the arena stays valid until the span is recycled. Small things (names,
 * arrays, shapes) are bumped up from the bottom, tensor payloads down from
 * the top, 64-aligned: the small things share few cache lines, and the
 * payloads fill whole lines (copied with streaming stores). */
typedef struct deja__block {
    struct deja__block *next;
    size_t cap;
    size_t used; /* bottom: bytes used from data */
    size_t top;  /* payloads live in data[top..cap) */
    _Alignas(16) uint8_t data[];
} deja__block;

/* A span: the trace being built, as arrays of public structs pointing into
 * the span's own arena. The writer turns it into a deja_trace view without
 * copying anything, and writes nothing into a span (but when redacting):
 * it reads it and hands the pointer back to the pool. The span and
 * its first arena block are one allocation: `first` follows the struct. */
struct deja_span {
    /* Kept across reuse. */
    deja__block *first; /* the block allocated with the span */
    deja__block *head;  /* current block (blocks chained newest first) */
    size_t bytes;       /* of the allocation and every block: held by the queue */
    int streamed;       /* streaming stores not yet fenced (span.c: span_fence) */

    /* Set by begin; cleared from here to model_digest on reuse. */
    deja_tracer *tracer;
    deja_id id;
    int64_t start_ns;
    int64_t duration_ns;
    const char *model_name;
    const char *model_version;
    const char *error;
    deja_status status;
    int has_parent;

    deja_tensor *inputs;
    size_t ninputs, cap_inputs;
    deja_tensor *outputs;
    size_t noutputs, cap_outputs;
    deja_param *params;
    size_t nparams, cap_params;
    deja_seed *seeds;
    size_t nseeds, cap_seeds;
    deja_tag *tags;
    size_t ntags, cap_tags;
    size_t model_digest_size;

    /* Rarely used: still cleared, but past the hot lines. */
    deja_rng_stream *rng;
    size_t *rng_cap; /* capacity of each stream's draws array */
    size_t nrng, cap_rng;
    int64_t *clock_ns;
    size_t nclock, cap_clock;
    deja_id parent;
    int has_model_config;
    const char *model_plugin;
    const char *model_config;
    deja_output_decl *kinds;
    size_t nkinds, cap_kinds;
    size_t ndraws;     /* RNG draws over all streams */
    int too_many;      /* a draw beyond DEJA__MAX_DRAWS was refused */
    int bad_name;      /* an RNG stream name broke the rule of core/text.h */
    deja_checkpoint *ckpts; /* checkpoint.c */
    size_t nckpts, cap_ckpts;
    size_t ckpt_bytes;  /* payload bytes kept by the checkpoints */
    int ckpt_dropped;   /* a checkpoint beyond DEJA_CHECKPOINT_MAX was dropped */
    uint8_t model_digest[64]; /* not cleared: model_digest_size bytes valid */
};

/* The one rule for a well-formed tensor, shared by recording (span.c) and
 * replay (ctx.c): 0 or DEJA_EINVAL naming the tensor. */
int deja__tensor_check(const deja_tensor *tensor);

/* Sampling decisions, counted per tracer and added to the store's counters
 * ("sample.kept_error", ...) by the writer. */
enum {
    DEJA__KEPT_ERROR,
    DEJA__KEPT_INVALID,
    DEJA__KEPT_SLOW,
    DEJA__KEPT_FIRST,
    DEJA__KEPT_RATE,
    DEJA__DEDUPED,
    DEJA__SAMPLE_NCOUNTERS
};

/* A sampling policy (sampler.c); NULL in the tracer when none is set. */
typedef struct deja__sampler deja__sampler;

/* `held` packs the traces in the queue (high 24 bits) and the bytes of
 * span memory ended and not yet committed (low 40 bits). */
#define DEJA__HELD_BYTES_BITS 40
#define DEJA__HELD_BYTES_MAX ((((uint64_t)1) << DEJA__HELD_BYTES_BITS) - 1)
#define DEJA__HELD_COUNT(n) ((uint64_t)(n) << DEJA__HELD_BYTES_BITS)

/* A bounded multi-producer multi-consumer queue of pointers (Vyukov's: a
 * sequence number per cell), for the span pool. */
typedef struct deja__mpmc_cell {
    _Atomic size_t seq;
    void *item;
} deja__mpmc_cell;

typedef struct deja__mpmc {
    deja__mpmc_cell *cells;
    size_t mask;
    _Alignas(64) _Atomic size_t enq;
    _Alignas(64) _Atomic size_t deq;
} deja__mpmc;

/* Set up `q` for at least `cap` items (rounded up to a power of two).
 * Returns 0 or DEJA_ENOMEM. */
int deja__mpmc_init(deja__mpmc *q, size_t cap);
/* Free the cells (not the items). Accepts a zeroed queue. */
void deja__mpmc_free(deja__mpmc *q);
/* Add `item`; 0, or -1 when the queue is full. Any thread. */
int deja__mpmc_push(deja__mpmc *q, void *item);
/* Take an item, or NULL when the queue is empty. Any thread. */
void *deja__mpmc_pop(deja__mpmc *q);

struct deja_tracer {
    deja_tracer_options opts;
    _Atomic(deja__sampler *) sampler; /* set once, before the first span ends */
    _Atomic uint64_t sample_counts[DEJA__SAMPLE_NCOUNTERS];
    deja_store *store;
    deja_digest env_digest;
    const deja_env *env;
    deja_env *env_own; /* env when the options select other variables */
    deja_env *env_owned; /* env with the model's libraries, when given */

    /* The bounded queue of ended spans. Recording threads never take a
     * lock on the common path: one compare-and-swap reserves a place in
     * `held` (count and bytes), one fetch-add on `tail` gives the span its
     * position, one release store publishes it in `ring`; the writer alone
     * takes cells from `ring_head` on, in position order. Locks and
     * conditions are for sleeping only (the writer, a blocked recorder, a
     * flusher). */
    _Alignas(64) _Atomic uint64_t held; /* DEJA__HELD_COUNT(n) + bytes */
    _Alignas(64) _Atomic uint64_t tail; /* positions handed out: spans enqueued */
    _Alignas(64) _Atomic(deja_span *) *ring; /* ring_mask + 1 cells, NULL when free */
    size_t ring_mask;
    size_t ring_cap;     /* queue_capacity: traces waiting at most */
    uint64_t bytes_max;  /* queue_bytes */
    uint64_t ring_head;  /* the writer's next position */
    size_t wake_at;      /* wake the writer when the queue holds this many */
    uint64_t wake_bytes; /* ... or this many bytes (a quarter of bytes_max) */
    _Atomic int writer_sleeping;
    _Atomic int blocked; /* recorders waiting for room (DEJA_QUEUE_BLOCK) */
    pthread_mutex_t lock;
    pthread_cond_t not_empty; /* the writer waits here */
    pthread_cond_t not_full;  /* BLOCK-policy recorders wait here */
    pthread_cond_t done;      /* flushers wait here */
    int stop;
    uint64_t committed_seq;     /* spans the writer has finished with */
    uint64_t flush_target;      /* a flusher waits until committed_seq reaches it */
    uint64_t failed_unreported; /* failures not yet returned by a flush */
    deja_id *failed_ids;        /* the first DEJA__FAILED_IDS_MAX lost traces, under lock */
    size_t nfailed_ids;
    char writer_error[512];

    pthread_t writer;
    int writer_started;
    int64_t trimmed_ms;  /* when the writer last trimmed the store's map */
    int64_t trimmed_rss; /* file-backed RSS after that trim (bytes) */

    /* Recycled spans, trimmed to their first block: a bounded lock-free
     * queue (deja__mpmc) that recording threads take from a few at a time
     * into a thread-local cache (span.c) and the writer gives back to. */
    deja__mpmc pool;

    /* Counters. `ended` is not counted on the hot path: it is enqueued_seq
     * plus dropped plus sampled_out (see deja_tracer_stats_get). */
    _Atomic uint64_t written;
    _Atomic uint64_t dropped;
    _Atomic uint64_t sampled_out;
    _Atomic uint64_t redacted;
    _Atomic uint64_t failed;
    /* Losses per model version (lost.c), created on the first. */
    _Atomic(struct deja__lost *) lost;

    /* Which checkpoints spans keep (checkpoint.c): ckpt_select is the
     * tracer's own copy of the selection, NULL when none. */
    char *ckpt_select;
    int ckpt_all;
    int ckpt_digest;
};

/* ------------------------------------------------------------------------
 * Losses per model version (lost.c): spans sampled out or dropped, counted
 * against their model and version as well as store-wide.
 * ---------------------------------------------------------------------- */

#define DEJA__LOST_SLOTS 256 /* versions counted; more are counted store-wide only */
#define DEJA__LOST_SAMPLED_OUT 0
#define DEJA__LOST_DROPPED 1
#define DEJA__LOST_KINDS 2

typedef struct deja__lost_slot {
    _Atomic uint64_t key; /* hash of model and version; 0: empty */
    char *model, *version;
    _Atomic uint64_t n[DEJA__LOST_KINDS];
    uint64_t reported[DEJA__LOST_KINDS]; /* committed so far (writer only) */
} deja__lost_slot;

typedef struct deja__lost deja__lost;

/* What changed in one slot since the last commit. */
typedef struct deja__lost_delta {
    deja__lost_slot *slot;
    uint64_t now[DEJA__LOST_KINDS], delta[DEJA__LOST_KINDS];
} deja__lost_delta;

/* Count one span of `model`@`version` lost (`which`: DEJA__LOST_*). Any
 * thread; lock-free but for a version's first loss. */
void deja__lost_count(deja_tracer *t, const char *model, const char *version, int which);

/* The writer: the slots that changed since the last reported commit (at
 * most `cap`, into `out`), written by deja__lost_put inside a commit and
 * marked reported once it committed. */
size_t deja__lost_take(deja_tracer *t, deja__lost_delta *out, size_t cap);
int deja__lost_put(deja__wtxn *w, const deja__lost_delta *d, size_t n);
void deja__lost_reported(const deja__lost_delta *d, size_t n);

/* Free the table (at close). */
void deja__lost_free(deja_tracer *t);

/* tracer/checkpoint.c: set the tracer's checkpoint selection from its
 * options (checked). */
int deja__tracer_checkpoints_init(deja_tracer *t);

/* Copy a payload into the span's arena, as deja_span_add copies tensors
 * (span.c); NULL when out of memory. */
void *deja__span_payload_copy(deja_span *span, const void *src, size_t size);

/* Allocate `size` bytes (16-aligned) from the span's arena, or NULL. */
void *deja__span_alloc(deja_span *span, size_t size);

/* Give a span back for reuse: to the calling thread's span cache, else to
 * its tracer's pool, else free it. Any thread. */
void deja__span_recycle(deja_span *span);

/* Recycle `n` spans of one tracer at once (one lock), for the writer. */
void deja__span_recycle_many(deja_span **spans, size_t n);

/* Free a span and its arena for good. Accepts NULL. */
void deja__span_destroy(deja_span *span);

/* Find the rng stream `name` of a span; create it with `seed` when absent
 * and `create` is set. Returns its index, or a negative DEJA_E* code. */
int deja__span_rng_stream(deja_span *span, const char *name, uint64_t seed, int create);

/* Append a draw to stream `index` of the span. */
int deja__span_rng_append(deja_span *span, size_t index, uint64_t draw);

/* Hand an ended span to the writer (tracer.c). Returns 0 or DEJA_EFULL.
 * Stores the queue's length after the push in `*backlog`. */
int deja__tracer_enqueue(deja_tracer *tracer, deja_span *span, size_t *backlog);

/* Release `count` queue places and `bytes` held bytes (for the writer, in
 * tracer.c) and wake the recorders waiting for room. */
void deja__tracer_release(deja_tracer *tracer, size_t count, uint64_t bytes);

/* Take the next ended span in position order, or NULL when none is
 * published yet (the writer only). */
deja_span *deja__tracer_pop(deja_tracer *tracer);

/* Decide under policy `s` whether to keep the ended span (1) or leave it
 * out (0, counted as sampled out or as a repeat). Thread-safe. */
int deja__sampler_keep(deja_tracer *t, deja__sampler *s, const deja_span *span);

/* Hand the repeats counted by dedup since the last call to `cb` (the id of
 * the trace kept for the request, and the count), zeroing them. */
void deja__sampler_take_repeats(deja__sampler *s, void (*cb)(const deja_id *, uint64_t, void *),
                                void *payload);

/* The store counter name of decision DEJA__KEPT_* / DEJA__DEDUPED. */
const char *deja__sample_counter_name(int which);

void deja__sampler_free(deja__sampler *s);

/* Fill `v` with a view of the ended span `s` (pointers into the span; the
 * writer's and the sampler's view of what will be stored). */
void deja__span_view(const deja_tracer *t, const deja_span *s, deja_trace *v);

/* The writer thread's body (writer.c). */
void *deja__writer_main(void *arg);

/* Random numbers (rng.c). */
uint64_t deja__mix64(uint64_t x);
uint64_t deja__hash_name(const char *name);
/* A double in [0, 1) from a cheap thread-local generator (not for replay). */
double deja__fast_uniform(void);
/* 64 bits from the operating system (getrandom), never 0. */
uint64_t deja__os_random(void);

#endif /* DEJA_TRACER_INTERNAL_H */
