/*
 * deja.h -- the flight recorder for ML inference: recording and reading.
 *
 * deja records every inference a program makes (inputs, outputs, model
 * identity, parameters, the seeds, RNG draws and clock reads the model
 * consumed, and the machine's environment) into a compressed,
 * content-addressed LMDB store, and replays it later.
 *
 * This header is the manual. It reads top to bottom:
 *   1. errors, ids and tensors (the shared vocabulary);
 *   2. the tracer: record inferences from your own program (span API);
 *   3. the store: list, read, count and verify what was recorded;
 *   4. models and the determinism context: load a model plugin
 *      (deja_model.h) and run it, recording or replaying;
 *   5. diff, replay and bisect;
 *   6. bundles: one file to hand a reproducible case to someone else;
 *   7. LLM endpoints: the OpenAI-compatible recording proxy and deja serve;
 *   8. watching: health per version, drift, validation rules, a report;
 *   9. many machines: ship to and pull from NATS JetStream, replay on many
 *      workers; OTLP out.
 *
 * Conventions. Functions return 0 or a negative DEJA_E* code; when they
 * fail, deja_error_last() holds a one-line message that names the problem
 * ("trace 01J8...: record is truncated"). Constructors fill an `out`
 * pointer. Destructors accept NULL. Strings are UTF-8, NUL-terminated
 * unless a length is given. Options structs start with `version`; start from
 * the matching *_INIT macro.
 */
#ifndef DEJA_H
#define DEJA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DEJA_API __attribute__((visibility("default")))
#else
#define DEJA_API
#endif

#define DEJA_VERSION_STRING "0.2.0"

/* ------------------------------------------------------------------------
 * 1. Errors, ids, tensors
 * ---------------------------------------------------------------------- */

/* Return codes. 0 is success; every failure is negative. */
enum {
    DEJA_OK = 0,
    DEJA_ENOTFOUND = -1,  /* no such trace, blob, store or plugin */
    DEJA_EAMBIGUOUS = -2, /* an id prefix matches more than one trace */
    DEJA_ECORRUPT = -3,   /* a record, blob or file fails to decode or verify */
    DEJA_EIO = -4,        /* the operating system or LMDB refused */
    DEJA_EINVAL = -5,     /* a bad argument or a malformed input */
    DEJA_ENOMEM = -6,     /* out of memory, or a size beyond a bound */
    DEJA_EVERSION = -7,   /* written by a newer deja, or another plugin ABI */
    DEJA_EFULL = -8,      /* the tracer queue is full and the policy is drop */
    DEJA_EMODEL = -9,     /* a model plugin failed or returned an error */
    DEJA_EBUSY = -10,     /* the store is open for writing elsewhere */
};

/* Name of a return code ("not found", "corrupt", ...). Never NULL. */
DEJA_API const char *deja_strerror(int code);

/* The detailed message of the last failure on the calling thread, or "" if
 * none. Valid until the next deja call on this thread. */
DEJA_API const char *deja_error_last(void);

/* A trace id: 128 bits in ULID layout (48-bit milliseconds since the Unix
 * epoch, then 80 random bits), big-endian so that byte order is time order.
 * Printed as 26 characters of Crockford base32. */
typedef struct deja_id {
    uint8_t bytes[16];
} deja_id;

#define DEJA_ID_STRLEN 26

/* Write the 26-character form of `id` and a NUL into `out`. */
DEJA_API void deja_id_format(const deja_id *id, char out[DEJA_ID_STRLEN + 1]);

/* Parse a full 26-character id (case-insensitive, Crockford aliases
 * accepted). Returns DEJA_EINVAL for anything else. */
DEJA_API int deja_id_parse(deja_id *out, const char *text);

/* Milliseconds since the Unix epoch held in an id. */
DEJA_API int64_t deja_id_time_ms(const deja_id *id);

/* A 128-bit content digest (XXH3-128, big-endian canonical form). */
typedef struct deja_digest {
    uint8_t bytes[16];
} deja_digest;

/* Digest of `size` bytes at `data`. */
DEJA_API deja_digest deja_digest_of(const void *data, size_t size);

/* Write the 32 lowercase hex characters of `d` and a NUL into `out`. */
DEJA_API void deja_digest_format(const deja_digest *d, char out[33]);

/* Element types of a tensor. Text is a DEJA_UTF8 tensor of shape [bytes]. */
typedef enum deja_dtype {
    DEJA_DTYPE_INVALID = 0,
    DEJA_F16 = 1,
    DEJA_BF16 = 2,
    DEJA_F32 = 3,
    DEJA_F64 = 4,
    DEJA_I8 = 5,
    DEJA_I16 = 6,
    DEJA_I32 = 7,
    DEJA_I64 = 8,
    DEJA_U8 = 9,
    DEJA_U16 = 10,
    DEJA_U32 = 11,
    DEJA_U64 = 12,
    DEJA_BOOL = 13,
    DEJA_BYTES = 14,
    DEJA_UTF8 = 15,
} deja_dtype;

/* Name of a dtype ("f32", "utf8", ...), or NULL if out of range. */
DEJA_API const char *deja_dtype_name(deja_dtype dtype);

/* The dtype called `name`, or DEJA_DTYPE_INVALID. */
DEJA_API deja_dtype deja_dtype_parse(const char *name);

/* Size in bytes of one element (1 for bytes, utf8 and bool), 0 if invalid. */
DEJA_API size_t deja_dtype_size(deja_dtype dtype);

/* The value of one f16 (IEEE half) or bf16 element, given its 16 bits. */
DEJA_API double deja_f16_value(uint16_t bits);
DEJA_API double deja_bf16_value(uint16_t bits);

#define DEJA_MAX_DIMS 8

/* A named tensor: a view, never owning. `size` is the payload size in bytes;
 * for fixed-size dtypes it equals the product of the shape times the element
 * size. */
typedef struct deja_tensor {
    const char *name;
    deja_dtype dtype;
    size_t ndim;
    const uint64_t *shape;
    const void *data;
    size_t size;
} deja_tensor;

/* What an output is, as its producer declares it. The diff compares scores
 * and probabilities over classes (the last axis) by their arg-max and
 * top-k as well as by value; embeddings and plain values by value only;
 * text as text. An undeclared output (DEJA_KIND_AUTO) falls back to a
 * heuristic: a float output with a last axis of at least 2 whose name
 * contains "logit", "score", "prob" or "class" is taken for scores. */
typedef enum deja_output_kind {
    DEJA_KIND_AUTO = 0,      /* not declared: the name heuristic decides */
    DEJA_KIND_SCORES = 1,    /* scores (logits) over classes, class axis last */
    DEJA_KIND_PROBS = 2,     /* probabilities over classes, class axis last */
    DEJA_KIND_EMBEDDING = 3, /* an embedding vector: values, no label */
    DEJA_KIND_VALUES = 4,    /* plain numbers: values, no label */
    DEJA_KIND_TEXT = 5,      /* text (utf8, or bytes holding text) */
} deja_output_kind;

#define DEJA_KIND_MAX DEJA_KIND_TEXT

/* Name of an output kind ("auto", "scores", "probs", "embedding",
 * "values", "text"); "unknown" out of range. */
DEJA_API const char *deja_output_kind_name(deja_output_kind kind);

/* A declared kind of one output, by name. */
typedef struct deja_output_decl {
    const char *name;
    deja_output_kind kind;
} deja_output_decl;

/* ------------------------------------------------------------------------
 * 2. The tracer: record inferences
 *
 *   deja_tracer *t;
 *   deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
 *   deja_tracer_open(&t, "my.store", &o);
 *   deja_span *s;
 *   deja_span_begin(&s, t, "sentiment", "2.1.0");
 *   deja_span_add_text(s, DEJA_INPUT, "prompt", text, len);
 *   deja_span_param_num(s, "temperature", 0.7);
 *   deja_span_seed(s, "numpy", seed);
 *   ... run the model ...
 *   deja_span_add_text(s, DEJA_OUTPUT, "completion", out, out_len);
 *   deja_span_end(s, DEJA_STATUS_OK, NULL);
 *   deja_tracer_close(t);
 *
 * The calling thread only copies and enqueues: a writer thread compresses,
 * content-addresses and commits many traces per LMDB transaction. Any number
 * of threads may record through one tracer at once, and several processes
 * may record into one store at once.
 * ---------------------------------------------------------------------- */

typedef struct deja_tracer deja_tracer;
typedef struct deja_span deja_span;

/* What to do when the writer cannot keep up and the queue is full. */
typedef enum deja_queue_policy {
    DEJA_QUEUE_BLOCK = 0, /* the recording thread waits for room */
    DEJA_QUEUE_DROP = 1,  /* the trace is dropped and counted (deja stats) */
} deja_queue_policy;

/* Which side of the inference a tensor belongs to. */
typedef enum deja_side { DEJA_INPUT = 0, DEJA_OUTPUT = 1 } deja_side;

typedef enum deja_status { DEJA_STATUS_OK = 0, DEJA_STATUS_ERROR = 1 } deja_status;

/* A redaction callback sees each tensor on the writer thread before it is
 * stored. It may overwrite the bytes in place and shorten `*size`; it
 * returns 0 to keep the tensor, 1 to drop it, negative to drop the whole
 * trace (counted as redacted). */
typedef int (*deja_redact_cb)(deja_side side, const char *name, deja_dtype dtype, uint8_t *data,
                              size_t *size, void *payload);

/* A record-time check (see deja_tracer_options.check): writes the names
 * of up to `cap` rules `trace` breaks into `failed` and returns how many.
 * deja_rules_tracer_check() is one, over the rules of a rules file. */
struct deja_trace;
typedef size_t (*deja_check_cb)(const struct deja_trace *trace, const char **failed, size_t cap,
                                void *payload);

typedef struct deja_tracer_options {
    unsigned version;
    double sample_rate;         /* 0..1 fraction of ok traces kept; errors always kept */
    size_t max_payload;         /* a tensor larger than this is truncated to it and tagged */
    size_t queue_capacity;      /* traces waiting for the writer */
    deja_queue_policy queue_full;
    unsigned batch_max;         /* traces per LMDB transaction at most */
    unsigned flush_interval_ms; /* the writer commits at least this often */
    deja_redact_cb redact;      /* optional */
    void *redact_payload;
    /* Environment variables recorded besides (or instead of) the defaults
     * listed in the README: rules separated by commas or spaces, "NAME" or
     * "PREFIX*" adds, "-NAME" or "-PREFIX*" removes, the last matching rule
     * wins. Applied after $DEJA_ENV_VARS (same syntax); NULL for none. A
     * name that looks like a secret (deja_env_var_is_secret) is never
     * recorded. Read during deja_tracer_open only. (Since version 2.) */
    const char *env_vars;
    /* Validation at record time, or NULL: called on the writer thread for
     * each trace before it is stored; each rule it names becomes a tag
     * deja.invalid=RULE on the trace (`deja ls --tag deja.invalid=RULE`,
     * counted by `deja stats`). A failed rule never blocks or drops a
     * trace, and the recording thread never waits for the check. (Since
     * version 3.) */
    deja_check_cb check;
    void *check_payload;
    /* Libraries the recorded model depends on (name -> version, e.g. its
     * inference runtime; deja_model_libs()), added to the environment of
     * every trace so that an upgrade shows as an environment difference. */
    const struct deja_kv *libs;
    size_t nlibs;
    /* Bytes of span memory ended and not yet committed by the writer, at
     * most (default 12 MB: with the writer's own memory and the store's
     * mapped pages, recording stays within 32 MB above the process's
     * baseline): the queue is bounded in bytes as well as in traces
     * (queue_capacity), and queue_full applies to both. A single
     * trace larger than the bound is accepted only when nothing else is
     * held, so that it can be recorded at all. (Since version 4.) */
    size_t queue_bytes;
    /* Checkpoints (see deja_span_checkpoint): which to record, "none" (or
     * NULL: the default, nothing is recorded and a checkpoint costs one
     * test), "all", or names separated by commas (a name ending in '*' is a
     * prefix: "layer*"). With checkpoints_digest, each keeps its digest and
     * a summary (shape, dtype, min, max, mean, NaN and Inf counts) instead
     * of its bytes. (Since version 5.) */
    const char *checkpoints;
    int checkpoints_digest;
} deja_tracer_options;

#define DEJA_TRACER_OPTIONS_VERSION 5
#define DEJA_TRACER_OPTIONS_INIT                                                                 \
    {                                                                                            \
        DEJA_TRACER_OPTIONS_VERSION, 1.0, (size_t)64 << 20, 4096, DEJA_QUEUE_BLOCK, 64, 100, \
            NULL, NULL, NULL, NULL, NULL, NULL, 0, (size_t)12 << 20, NULL, 0                     \
    }

/* Open a tracer that records into the store at `path`, creating the store
 * if needed, and start its writer thread. `opts` may be NULL for defaults.
 * The environment fingerprint of this process is captured here, once. */
DEJA_API int deja_tracer_open(deja_tracer **out, const char *path,
                              const deja_tracer_options *opts);

/* Wait until every span ended before this call is committed to the store.
 * After it returns 0, a crash of this process (even SIGKILL) loses none of
 * them. */
DEJA_API int deja_tracer_flush(deja_tracer *tracer);

/* Flush, stop the writer and free the tracer. Accepts NULL. */
DEJA_API void deja_tracer_close(deja_tracer *tracer);

/* Counters of a tracer since it was opened. */
typedef struct deja_tracer_stats {
    uint64_t ended;       /* spans ended */
    uint64_t written;     /* traces committed */
    uint64_t dropped;     /* dropped because the queue was full */
    uint64_t sampled_out; /* left out by sample_rate */
    uint64_t redacted;    /* dropped by the redaction callback */
    uint64_t failed;      /* lost to a store error (see deja_error_last of the writer) */
} deja_tracer_stats;

DEJA_API void deja_tracer_stats_get(deja_tracer *tracer, deja_tracer_stats *out);

/* The ids of the traces lost to a store error (a full disk...) since the
 * tracer opened, in the order they were lost: the first `cap` go to `out`.
 * Returns how many are known (at most the first 4,096 are kept), so that
 * a caller that printed ids can say which of them were not committed. */
DEJA_API size_t deja_tracer_failed_ids(deja_tracer *tracer, deja_id *out, size_t cap);

/* Sampling that keeps what matters. Without a policy a tracer keeps every
 * error and a flat sample_rate of the rest (its options). With one, an
 * ended span is kept, in this order: when it failed; when it broke a
 * validation rule (tag deja.invalid); when it took longer than
 * keep_slower_ns; when it is among the first keep_first spans of its model
 * version seen by this tracer; else with the rate of the first entry of
 * `rates` matching its model (and version, when the entry gives one), or
 * `rate`. So a rare model is not sampled away by a busy one. With dedup, a
 * kept ok span identical to one kept before (same model, version, inputs,
 * params and seeds; among the last ~16,000 distinct requests) is not
 * recorded: it counts as a repeat of the first (deja_trace_repeats). Every
 * decision is counted in the store ("sample.kept_error", "sample.kept_slow",
 * ..., "sampled_out", "sample.deduplicated"; see deja_store_counters). */
typedef struct deja_sample_rate {
    const char *model;   /* model name */
    const char *version; /* model version, or NULL for any */
    double rate;         /* 0..1 */
} deja_sample_rate;

typedef struct deja_sampling {
    unsigned version;
    double rate;                    /* 0..1: ok spans no rule matches */
    const deja_sample_rate *rates;  /* first match wins; copied */
    size_t nrates;
    int64_t keep_slower_ns;         /* keep every span slower than this; 0: off */
    unsigned keep_first;            /* keep the first N spans of each model version; 0: off */
    int dedup;                      /* keep one span per identical request, count the rest */
} deja_sampling;

#define DEJA_SAMPLING_VERSION 1
#define DEJA_SAMPLING_INIT {DEJA_SAMPLING_VERSION, 1.0, NULL, 0, 0, 0, 0}

/* Give `tracer` the sampling policy `policy` (copied), once, before the
 * first span ends. DEJA_EINVAL for a rate outside 0..1 or a second call. */
DEJA_API int deja_tracer_sampling_set(deja_tracer *tracer, const deja_sampling *policy);

/* Begin a span: one inference of model `name` at `version`. The span
 * belongs to the calling thread until deja_span_end() or deja_span_abort().
 * Its id and start time are taken now.
 *
 * Names -- the model's name and version, tag keys and values, and the
 * names of tensors, params, seeds and RNG streams -- are at most 4096 bytes
 * of UTF-8 without control characters: a call given another is refused
 * with DEJA_EINVAL naming which (a bundle could not carry it, a terminal
 * would obey it). Data (tensors, param values, error text) is any bytes. */
DEJA_API int deja_span_begin(deja_span **out, deja_tracer *tracer, const char *name,
                             const char *version);

/* Replace the model version given to deja_span_begin(), for a version known
 * only from the inference's answer (as the proxy learns the server's model
 * from its response). */
DEJA_API int deja_span_model_version(deja_span *span, const char *version);

/* The id of the span; valid until the span ends. */
DEJA_API const deja_id *deja_span_id(const deja_span *span);

/* Set the digest of the model's weights (any length up to 64 bytes). */
DEJA_API int deja_span_model_digest(deja_span *span, const void *digest, size_t size);

/* Record how the model was loaded: `plugin` as the user named it (a bare
 * name, or the plugin file's absolute path) and `config`, the ARG of
 * PLUGIN:ARG (NULL or "" when there was none). Replay compares the
 * configuration and names it as the likely cause when it differs. */
DEJA_API int deja_span_model_config(deja_span *span, const char *plugin, const char *config);

/* Declare what output `name` is (see deja_output_kind); the diff compares
 * it accordingly. A later declaration of the same name replaces it. */
DEJA_API int deja_span_output_kind(deja_span *span, const char *name, deja_output_kind kind);

/* Add a tensor as input or output; its bytes are copied. */
DEJA_API int deja_span_add(deja_span *span, deja_side side, const deja_tensor *tensor);

/* Add UTF-8 text (`len` bytes) as a DEJA_UTF8 tensor. */
DEJA_API int deja_span_add_text(deja_span *span, deja_side side, const char *name,
                                const char *text, size_t len);

/* Add opaque bytes as a DEJA_BYTES tensor. */
DEJA_API int deja_span_add_bytes(deja_span *span, deja_side side, const char *name,
                                 const void *data, size_t size);

/* Parameters: key -> number, string or boolean. */
DEJA_API int deja_span_param_num(deja_span *span, const char *key, double value);
DEJA_API int deja_span_param_str(deja_span *span, const char *key, const char *value);
DEJA_API int deja_span_param_bool(deja_span *span, const char *key, int value);

/* Record a seed that the caller's own RNG used, under `name`. */
DEJA_API int deja_span_seed(deja_span *span, const char *name, uint64_t value);

/* Record a clock read (Unix nanoseconds) that the caller's code consumed. */
DEJA_API int deja_span_clock(deja_span *span, int64_t unix_ns);

/* Add a tag key=value, used by `deja ls --tag`. */
DEJA_API int deja_span_tag(deja_span *span, const char *key, const char *value);

/* Make this span a step of the pipeline run recorded as `parent`. */
DEJA_API int deja_span_parent(deja_span *span, const deja_id *parent);

/* Checkpoints: named intermediate values of one inference (an embedding, a
 * layer's activations, the logits and the sampled token at step k of a
 * generation), recorded in the order they are produced so that a replay
 * can name the first one that differs. Whether a checkpoint is kept, and
 * whether as bytes or as digest and summary, is the tracer's choice
 * (deja_tracer_options.checkpoints): code records every checkpoint it has
 * and the run decides. A name may repeat (one "logits" per generated
 * token): the k-th occurrence of a name is compared with the k-th recorded.
 * Bounds: at most DEJA_CHECKPOINT_MAX per trace (more are dropped and the
 * trace tagged deja.checkpoints=dropped); a checkpoint beyond
 * DEJA_CHECKPOINT_MAX_BYTES, or one past DEJA_CHECKPOINT_TRACE_BYTES of
 * checkpoint bytes in the trace, keeps its digest and summary only. */
#define DEJA_CHECKPOINT_MAX 65536
#define DEJA_CHECKPOINT_MAX_BYTES ((size_t)1 << 20)
#define DEJA_CHECKPOINT_TRACE_BYTES ((size_t)16 << 20)

/* Record `tensor` as the next checkpoint of the span when the tracer's
 * selection keeps its name (its bytes are copied, or digested). Returns 0
 * (also when the name is not selected), DEJA_EINVAL for a malformed
 * tensor, DEJA_ENOMEM. */
DEJA_API int deja_span_checkpoint(deja_span *span, const deja_tensor *tensor);

/* Whether the tracer's selection keeps checkpoint `name`: 1 or 0. Lets a
 * caller skip computing a value nobody records. */
DEJA_API int deja_span_checkpoint_wanted(const deja_span *span, const char *name);

/* Whether checkpoint `name` is kept by the selection `select` ("all", or
 * names separated by commas, where a name ending in '*' is a prefix; NULL,
 * "" and "none" keep nothing). Returns 1 or 0. */
DEJA_API int deja_checkpoint_select_match(const char *select, const char *name);

/* Check a selection as deja_tracer_open() does. Returns 0, or DEJA_EINVAL
 * with a message naming the problem. */
DEJA_API int deja_checkpoint_select_check(const char *select);

/* End the span with its status (and error text when status is
 * DEJA_STATUS_ERROR, else NULL), and hand it to the writer. The span is
 * freed whatever the result. Returns DEJA_EFULL when the queue was full and
 * the policy is DEJA_QUEUE_DROP (the drop is counted). */
DEJA_API int deja_span_end(deja_span *span, deja_status status, const char *error);

/* Throw the span away unrecorded. Accepts NULL. */
DEJA_API void deja_span_abort(deja_span *span);

/* ------------------------------------------------------------------------
 * 3. The store: read what was recorded
 * ---------------------------------------------------------------------- */

typedef struct deja_store deja_store;

enum {
    DEJA_STORE_READONLY = 0, /* open an existing store for reading; never creates */
    DEJA_STORE_WRITE = 1,    /* open for writing, creating the store if needed */
    DEJA_STORE_SHARED = 2,   /* with WRITE: a new store gets the umask's modes, not 0700/0600 */
};

/* Open the store at `path` (a directory). With DEJA_STORE_READONLY a
 * missing store is DEJA_ENOTFOUND and nothing is created. A store written by
 * a newer format version is DEJA_EVERSION. A new store is private
 * (directory 0700, files 0600) unless DEJA_STORE_SHARED is given or
 * $DEJA_STORE_SHARED is set (then 0777/0666 less the umask). A data.mdb or
 * lock.mdb that is a symbolic link or not a regular file is refused
 * (DEJA_EINVAL); a data.mdb shorter than its meta page claims, or empty
 * when read, is DEJA_ECORRUPT. A reader without write access to lock.mdb
 * reads without LMDB's locks (see deja_store_unlocked). */
DEJA_API int deja_store_open(deja_store **out, const char *path, int flags);

/* Whether `store` was opened read-only without LMDB's locks because the
 * lock file could not be written: reads then do not hold off a concurrent
 * writer, which may change pages under them. Returns 1 or 0. */
DEJA_API int deja_store_unlocked(const deja_store *store);

/* Close the store. Accepts NULL. */
DEJA_API void deja_store_close(deja_store *store);

/* Run `fn(store, payload)` in a guarded region and return what it returns:
 * a SIGBUS or SIGSEGV raised on the calling thread while it runs (LMDB
 * reading a page of a data.mdb damaged or cut short after it was opened)
 * ends it instead of the process, and deja_store_guard returns
 * DEJA_ECORRUPT, "store 'PATH' is damaged (SIGBUS while reading it): run
 * deja verify". `store` (may be NULL) only names the store in the message.
 * After such an error the handle may hold locks and memory the region left
 * behind: only close it (a write handle keeps LMDB's writer lock until the
 * process exits). The handlers for both signals are installed on entry (a
 * fault outside any region goes to the handler the program had before, or
 * takes the default action); fn must not longjmp out itself. Regions nest.
 * Returns fn's result, DEJA_ECORRUPT, or DEJA_EINVAL (fn NULL). */
typedef int (*deja_guarded_fn)(deja_store *store, void *payload);
DEJA_API int deja_store_guard(deja_store *store, deja_guarded_fn fn, void *payload);

typedef enum deja_param_kind {
    DEJA_PARAM_NUM = 0,
    DEJA_PARAM_STR = 1,
    DEJA_PARAM_BOOL = 2,
} deja_param_kind;

typedef struct deja_param {
    const char *key;
    deja_param_kind kind;
    double num;
    const char *str;
    int flag;
} deja_param;

typedef struct deja_seed {
    const char *name;
    uint64_t value;
} deja_seed;

typedef struct deja_rng_stream {
    const char *name;
    uint64_t seed;
    const uint64_t *draws;
    size_t ndraws;
} deja_rng_stream;

typedef struct deja_tag {
    const char *key;
    const char *value;
} deja_tag;

/* A summary of a tensor's values: elements, NaN and Inf counts, and the
 * minimum, maximum and mean of the finite ones (0 when none). `numeric`
 * is 0 for bytes and utf8, whose summary is their size only. */
typedef struct deja_tensor_stats {
    int numeric;
    uint64_t count;
    uint64_t nnan;
    uint64_t ninf;
    double min;
    double max;
    double mean;
} deja_tensor_stats;

/* Summarise `tensor` into `out`. Returns 0 or DEJA_EINVAL. */
DEJA_API int deja_tensor_stats_of(const deja_tensor *tensor, deja_tensor_stats *out);

/* One recorded checkpoint (see deja_span_checkpoint). `tensor.data` is
 * NULL when only the digest and summary were kept (digest_only); its
 * `size` is then the size the bytes had. digest and stats are always set. */
typedef struct deja_checkpoint {
    deja_tensor tensor;
    int digest_only;
    deja_digest digest; /* XXH3-128 of the payload */
    deja_tensor_stats stats;
} deja_checkpoint;

/* One recorded inference, decoded. Everything it points to is owned by the
 * trace and freed by deja_trace_free(). */
typedef struct deja_trace {
    deja_id id;
    int64_t start_ns; /* Unix time */
    int64_t duration_ns;
    const char *model_name;
    const char *model_version;
    const uint8_t *model_digest;
    size_t model_digest_size;
    const deja_tensor *inputs;
    size_t ninputs;
    const deja_tensor *outputs;
    size_t noutputs;
    const deja_param *params;
    size_t nparams;
    const deja_seed *seeds;
    size_t nseeds;
    const deja_rng_stream *rng;
    size_t nrng;
    const int64_t *clock_ns;
    size_t nclock;
    int has_env;
    deja_digest env;
    deja_status status;
    const char *error; /* "" when ok */
    const deja_tag *tags;
    size_t ntags;
    int has_parent;
    deja_id parent;
    /* How the model was loaded (deja_span_model_config): has_model_config is
     * 0 for traces recorded without it (an application's span). */
    int has_model_config;
    const char *model_plugin; /* as the user named it; "" when unknown */
    const char *model_config; /* the ARG; "" when none */
    const deja_output_decl *output_kinds; /* declared kinds of outputs */
    size_t noutput_kinds;
    /* Checkpoints in the order the model produced them, and the selection
     * they were recorded with ("" when none: "all", or names). */
    const deja_checkpoint *checkpoints;
    size_t ncheckpoints;
    const char *checkpoint_select;
} deja_trace;

/* Find the one trace whose printed id starts with `prefix` (at least one
 * character). DEJA_ENOTFOUND if none, DEJA_EAMBIGUOUS if several. */
DEJA_API int deja_store_resolve(deja_store *store, const char *prefix, deja_id *out);

/* Read and decode a trace, with every payload (blobs loaded). The caller
 * frees it with deja_trace_free(). */
DEJA_API int deja_trace_get(deja_store *store, const deja_id *id, deja_trace **out);

/* Free a trace. Accepts NULL. */
DEJA_API void deja_trace_free(deja_trace *trace);

/* A selection of traces, as `deja ls` filters them. Zero / NULL fields do
 * not filter. Tags must all match. */
typedef struct deja_filter {
    unsigned version;
    const char *model;
    const char *model_version;
    int64_t since_ns; /* start_ns >= since_ns, when non-zero */
    int64_t until_ns; /* start_ns < until_ns, when non-zero */
    int status;       /* -1 any, else a deja_status */
    const deja_tag *tags;
    size_t ntags;
    size_t limit; /* 0 = no limit */
    /* version 2 */
    int pinned; /* only pinned traces (deja_trace_pin) */
} deja_filter;

#define DEJA_FILTER_VERSION 2
#define DEJA_FILTER_INIT {DEJA_FILTER_VERSION, NULL, NULL, 0, 0, -1, NULL, 0, 0, 0}

/* Called for each listed trace (payloads not loaded: tensors carry name,
 * dtype, shape and size, and data is NULL for blob-stored ones). Return 0 to
 * go on, non-zero to stop. A record that fails to decode is passed to
 * `bad` (may be NULL) with the error code, and listing goes on. */
typedef int (*deja_trace_cb)(const deja_trace *trace, void *payload);
typedef int (*deja_bad_cb)(const deja_id *id, int code, const char *message, void *payload);

/* List the traces matching `filter`, newest first, streaming: memory use
 * does not grow with the store. Returns 0, or the first error of the store
 * itself. */
DEJA_API int deja_store_list(deja_store *store, const deja_filter *filter, deja_trace_cb cb,
                             deja_bad_cb bad, void *payload);

/* Store-wide figures, as `deja stats` prints them. */
typedef struct deja_store_stats {
    uint64_t traces;
    uint64_t blobs;
    uint64_t envs;
    uint64_t raw_bytes;     /* payload and record bytes before dedup and compression */
    uint64_t unique_bytes;  /* after dedup, before compression */
    uint64_t stored_bytes;  /* after dedup and compression (record values) */
    uint64_t file_bytes;    /* size of the data file on disk */
    uint64_t dropped;       /* traces dropped by tracers (queue full) */
    uint64_t sampled_out;   /* traces left out by sampling */
    uint64_t redacted;      /* traces dropped by redaction */
    uint32_t dictionaries;  /* trained compression dictionaries */
    uint32_t format;        /* on-disk format version */
} deja_store_stats;

DEJA_API int deja_store_stats_get(deja_store *store, deja_store_stats *out);

/* The LMDB file's size and the bytes inside it that hold nothing (pages
 * freed by deletions, and the unused tail), which deja_store_compact()
 * gives back. */
DEJA_API int deja_store_space(deja_store *store, uint64_t *file_bytes, uint64_t *free_bytes);

/* Rewrite the store at `path` compacted (as `mdb_copy -c` does: live pages
 * only, the free pages dropped) and put it in place atomically: the new
 * store directory is exchanged with the old one in one rename, so a reader
 * sees either store, whole. Processes that had the store open for reading
 * keep reading the old copy until they reopen it. Refused with DEJA_EBUSY
 * while any process has the store open for writing (a tracer, `deja run`,
 * import, gc); a writer that opens the store while compact runs waits for it.
 * The file sizes before and after go to *before and *after (may be NULL). */
DEJA_API int deja_store_compact(const char *path, uint64_t *before, uint64_t *after);

/* Progress: `done` of `total` units of a long operation. */
typedef void (*deja_progress_cb)(size_t done, size_t total, void *payload);

/* Set the calling thread's progress handler (NULL: none, the default). The
 * long operations the thread then runs call it as they go, on that thread,
 * with `done` rising to `total` in their own units: deja_store_verify
 * (records checked), deja_store_gc (records marked and swept),
 * deja_store_compact (bytes written of the live data), deja_bundle_export
 * (traces written) and deja_bundle_import (records added). It stays set
 * until changed; the handler must not call deja on the same store. */
DEJA_API void deja_progress_handler(deja_progress_cb cb, void *payload);

/* Check that every record decodes, every blob matches its digest, and every
 * reference (blob, environment, index entry) resolves. Each problem is
 * passed to `problem` (may be NULL) as one line. Returns the number of
 * problems found (0 when sound), or a negative code if the check itself
 * could not run. */
typedef void (*deja_problem_cb)(const char *line, void *payload);
DEJA_API int deja_store_verify(deja_store *store, deja_problem_cb problem, void *payload);

/* Retention: which traces deja_store_gc() deletes. */
typedef struct deja_gc_options {
    unsigned version;
    int64_t before_ns; /* delete traces started before this Unix time (by their id's millisecond) */
    int keep_errors;   /* keep error traces whatever their age */
    int dry_run;       /* count what would go, delete nothing */
    /* version 2 */
    uint64_t max_bytes; /* also evict the oldest traces until the pages in use fit; 0: no */
} deja_gc_options;

#define DEJA_GC_OPTIONS_VERSION 2
#define DEJA_GC_OPTIONS_INIT {DEJA_GC_OPTIONS_VERSION, 0, 0, 0, 0}

/* What deja_store_gc() deleted (or, with dry_run, would delete). */
typedef struct deja_gc_stats {
    uint64_t traces, blobs, chunks, envs;
    uint64_t bytes; /* value bytes freed */
} deja_gc_stats;

/* Delete the traces whose id is older than opts->before_ns (but error
 * traces when opts->keep_errors, and pinned traces always), with their
 * index entries; with opts->max_bytes, then evict the oldest traces that are
 * neither pinned nor protected (see deja_budget) until the pages in use fit
 * max_bytes; then delete the blobs,
 * chunks and environments no longer referenced by any remaining trace. All
 * in one write transaction: all or nothing. A record that cannot be decoded
 * is kept and not counted; when a remaining trace (or a remaining blob's
 * chunk list) cannot be decoded, what it references is unknown and no blob
 * (or no chunk) is deleted. With opts->dry_run nothing is written and `out`
 * holds what would be deleted. The store must be opened DEJA_STORE_WRITE
 * (else DEJA_EINVAL). */
DEJA_API int deja_store_gc(deja_store *store, const deja_gc_options *opts, deja_gc_stats *out);

/* Pins: a pinned trace (one attached to a bug report, say) is never deleted
 * by gc, --older-than or the disk budget, and keeps everything it
 * references. Pin `id` with a `note` saying why (may be NULL; at most 4,096
 * bytes); pinning a pinned trace replaces its note. Needs a store opened
 * DEJA_STORE_WRITE. DEJA_ENOTFOUND when no such trace. */
DEJA_API int deja_trace_pin(deja_store *store, const deja_id *id, const char *note);

/* Unpin `id`. DEJA_ENOTFOUND when it is not pinned. */
DEJA_API int deja_trace_unpin(deja_store *store, const deja_id *id);

/* Whether `id` is pinned: 1 (and, when not NULL, `*note`, malloc'd, for
 * the caller to free, and `*pinned_ns`, when it was pinned), 0 when not, or
 * a negative code. */
DEJA_API int deja_trace_pin_get(deja_store *store, const deja_id *id, char **note,
                                int64_t *pinned_ns);

/* How many more requests identical to trace `id`'s were left out by dedup
 * sampling (deja_sampling.dedup) into `*out` (0 when none). */
DEJA_API int deja_trace_repeats(deja_store *store, const deja_id *id, uint64_t *out);

/* The disk budget of a store, kept in the store itself so that every writer
 * honours it. When the pages in use exceed max_bytes, the writer that
 * notices evicts the oldest traces down to 90 % of it, with the blobs,
 * chunks and environments only they used, in one transaction (never a
 * half-deleted trace). Pinned traces are never evicted. Protected traces --
 * errors, traces tagged deja.invalid (a broken validation rule) and traces
 * carrying the tag key `protect_tag` -- are evicted only while they hold
 * more than protect_percent of the budget, oldest first. */
typedef struct deja_budget {
    unsigned version;
    uint64_t max_bytes;       /* 0: no budget */
    unsigned protect_percent; /* share of max_bytes protected traces may keep (default 25) */
    char protect_tag[256];    /* tag key that protects a trace (default "deja.keep") */
    /* Filled by deja_store_budget_get, ignored by _set: */
    uint64_t used_bytes;     /* pages in use now */
    uint64_t file_bytes;     /* size of the data file */
    uint64_t evicted;        /* traces evicted so far */
    uint64_t evicted_bytes;  /* their estimated bytes */
    uint64_t evictions;      /* eviction rounds so far */
    uint64_t pinned;         /* traces pinned now */
} deja_budget;

#define DEJA_BUDGET_VERSION 1

/* Read the budget and the figures beside it into `out` (version set). */
DEJA_API int deja_store_budget_get(deja_store *store, deja_budget *out);

/* Set the budget from `b` (max_bytes, protect_percent, protect_tag): takes
 * effect for every writer at its next commit. Enforces it once right away.
 * DEJA_EINVAL for a percent above 100 or a tag with control characters. */
DEJA_API int deja_store_budget_set(deja_store *store, const deja_budget *b);

/* Call `cb` with the name and value of each store-wide counter ("dropped",
 * "sampled_out", "evicted", "sample.slow", ...), in name order. `cb`
 * returns 0 to go on. */
typedef int (*deja_counter_cb)(const char *name, uint64_t value, void *payload);
DEJA_API int deja_store_counters(deja_store *store, deja_counter_cb cb, void *payload);

/* The environment a trace was recorded in (or the current one). */
typedef struct deja_kv {
    const char *key;
    const char *value;
} deja_kv;

typedef struct deja_env {
    const char *arch;
    const char *cpu_vendor;
    const char *cpu_model;
    const char *const *isa; /* sorted flag names */
    size_t nisa;
    uint32_t cores;
    uint64_t memory_bytes;
    const char *os;
    const char *kernel;
    const char *libc;
    const char *compiler;
    const char *const *gpus;
    size_t ngpus;
    uint32_t threads;
    const char *fp_rounding;
    int ftz;
    int daz;
    const deja_kv *vars; /* sorted by key */
    size_t nvars;
    const deja_kv *libs; /* sorted by key */
    size_t nlibs;
} deja_env;

/* Read the environment stored under `digest`. Free with deja_env_free(). */
DEJA_API int deja_store_env_get(deja_store *store, const deja_digest *digest, deja_env **out);

/* The environment of this process, captured once and cached: do not free.
 * Its digest is written to `digest` when not NULL. */
DEJA_API const deja_env *deja_env_current(deja_digest *digest);

DEJA_API void deja_env_free(deja_env *env);

/* Whether an environment variable's name looks like it holds a secret (it
 * contains TOKEN, KEY, SECRET, PASS, PWD, CRED, AUTH, PRIVATE, SESSION,
 * COOKIE, LICENSE or SIGNATURE, in any case). Such a variable is never
 * recorded, and printing code skips it in traces recorded before this
 * rule. Returns 1 or 0. */
DEJA_API int deja_env_var_is_secret(const char *name);

/* Whether the variable `name` is on the default list of recorded variables
 * (the README lists them) and does not look like a secret. `show --md`
 * prints only those. Returns 1 or 0. */
DEJA_API int deja_env_var_is_default(const char *name);

/* Declare a library, or another setting that changes numerics, and its
 * version ("torch" -> "1.13.1", "torch.threads" -> "4"), to be recorded
 * among the environment's libraries. The environment is captured once per
 * process (when the first tracer opens, or at deja_env_current()): declare
 * before that. Returns 0, DEJA_EINVAL (no name, or declared after capture
 * with a new value), DEJA_ENOMEM (more than 32 declared). */
DEJA_API int deja_env_lib_set(const char *name, const char *version);

/* A copy of `base` with the libraries `libs` (name -> version, e.g. a
 * model's inference runtime) added; a library of the same name takes the
 * given version. Its digest goes to `digest` when not NULL. Free `*out`
 * with deja_env_free(). Returns 0, DEJA_EINVAL or DEJA_ENOMEM. */
DEJA_API int deja_env_with_libs(const deja_env *base, const deja_kv *libs, size_t n,
                                deja_env **out, deja_digest *digest);

/* ------------------------------------------------------------------------
 * 4. Models and the determinism context
 *
 * A model is a plugin (see deja_model.h) loaded from a shared object. It
 * talks to the world through a deja_ctx: its inputs, params, seeds, RNG
 * streams and clock. A recording ctx takes fresh values and writes each
 * into the span; a replaying ctx feeds back the recorded ones.
 * ---------------------------------------------------------------------- */

typedef struct deja_model deja_model;
typedef struct deja_ctx deja_ctx;

/* Load the plugin named by `spec`, "PATH[:ARG]" (ARG is passed to the
 * plugin's open). PATH may also be a bare name such as "textgen-v3", looked
 * up as lib<name>.so or <name>.so in $DEJA_PLUGIN_PATH, next to the deja
 * library and in the installed plugin folder (PREFIX/lib/deja). Errors: DEJA_ENOTFOUND (no such file), DEJA_EINVAL (not a deja
 * plugin), DEJA_EVERSION (another ABI version), DEJA_EMODEL (open failed). */
DEJA_API int deja_model_load(deja_model **out, const char *spec);

/* How a model is loaded and run. */
typedef struct deja_model_options {
    unsigned version;
    unsigned timeout_ms; /* exec: runners: the longest a runner may take to start, or
                            to answer one inference, before it is killed and the
                            inference fails; 0 takes DEJA_MODEL_TIMEOUT_MS */
} deja_model_options;

#define DEJA_MODEL_TIMEOUT_MS 300000u
#define DEJA_MODEL_OPTIONS_VERSION 1
#define DEJA_MODEL_OPTIONS_INIT {DEJA_MODEL_OPTIONS_VERSION, 0}

/* deja_model_load() with options (`opts` may be NULL for the defaults).
 * `spec` may also be "exec:COMMAND ARGS...": a model in another process,
 * any language. The rest of the spec is split into words as a shell would
 * (quotes '...' and "...", backslash escapes) but no shell runs: COMMAND
 * is found on $PATH and started with the words as its arguments, and
 * speaks the runner protocol (deja_model.h, README) on its stdin and
 * stdout; its stderr passes through, each line prefixed "[NAME] ". The
 * name, version and digest are those of the runner's hello. One model
 * holds one runner process, which serves one inference at a time: a
 * runner that crashes, exits, times out or sends a malformed message fails
 * the inference it was serving (DEJA_EMODEL naming its exit status, signal,
 * timeout, or the byte offset of the bad message) and is started afresh for
 * the next. Errors at load: those of deja_model_load(), DEJA_EMODEL when the
 * runner cannot start or its hello is refused. */
DEJA_API int deja_model_load_ext(deja_model **out, const char *spec,
                                 const deja_model_options *opts);

DEJA_API void deja_model_free(deja_model *model);

DEJA_API const char *deja_model_name(const deja_model *model);
DEJA_API const char *deja_model_version(const deja_model *model);
/* The weights digest the plugin reported, else XXH3-128 of the plugin file. */
DEJA_API const uint8_t *deja_model_digest(const deja_model *model, size_t *size);
/* The spec the model was loaded from, and the plugin file's path. */
DEJA_API const char *deja_model_spec(const deja_model *model);
DEJA_API const char *deja_model_path(const deja_model *model);
/* The libraries and versions a model in another process reported (an
 * exec runner's hello: "torch" -> "1.13.1", "torch.threads" -> "4", ...),
 * owned by the model; for a C plugin, those it reported through
 * deja_model_info_library() when it opened. deja records them into the environment of the
 * traces it records through the model, and compares them on replay. */
DEJA_API const deja_kv *deja_model_libs(const deja_model *model, size_t *n);

/* The ARG of the spec (after the first ':'), or NULL when there was none. */
DEJA_API const char *deja_model_config(const deja_model *model);
/* The plugin as the user named it, to record with the trace: a bare name
 * as given, or the absolute path of the plugin file. Owned by the model. */
DEJA_API const char *deja_model_plugin_name(const deja_model *model);
/* Non-zero when one instance may serve several threads at once. */
DEJA_API int deja_model_thread_safe(const deja_model *model);

/* Run one inference. Returns 0, or DEJA_EMODEL with the plugin's message in
 * deja_error_last(). */
DEJA_API int deja_model_infer(deja_model *model, deja_ctx *ctx);

/* A recording context over `span`: the model reads the span's inputs and
 * params; seeds, RNG draws and clock reads are fresh (derived from
 * `base_seed`, or from the OS when it is 0) and recorded into the span;
 * outputs go into the span. The span must outlive the ctx. */
DEJA_API int deja_ctx_record(deja_ctx **out, deja_span *span, uint64_t base_seed);

/* As deja_ctx_record(), but `base_seed` NULL takes a seed from the OS and
 * any value, 0 included, is used as given. */
DEJA_API int deja_ctx_record_v2(deja_ctx **out, deja_span *span, const uint64_t *base_seed);

/* A replaying context over a recorded trace: inputs and params are the
 * trace's, and seeds, RNG draws and clock reads are fed back in recorded
 * order. The trace must outlive the ctx. */
DEJA_API int deja_ctx_replay(deja_ctx **out, const deja_trace *trace);

/* Outputs the model wrote into a replaying ctx (owned by the ctx). */
DEJA_API const deja_tensor *deja_ctx_outputs(const deja_ctx *ctx, size_t *n);

/* How a replaying ctx departed from the recording: values asked for that
 * were never recorded (a seed, a stream draw past the recorded ones, a
 * clock read), each described in one line. 0 when none. */
DEJA_API size_t deja_ctx_unrecorded(const deja_ctx *ctx, const char *const **lines);

/* After a replayed inference: the recorded values the model left unused (a
 * stream drawn fewer times, fewer clock reads, a seed never asked for), one
 * line each, owned by the ctx. 0 when none, and for a recording ctx. */
DEJA_API size_t deja_ctx_unconsumed(deja_ctx *ctx, const char *const **lines);

/* The output kinds the model declared on a replaying ctx (owned by it). */
DEJA_API const deja_output_decl *deja_ctx_output_kinds(const deja_ctx *ctx, size_t *n);

/* The error the model set with deja_ctx_fail(), or NULL. */
DEJA_API const char *deja_ctx_error(const deja_ctx *ctx);

DEJA_API void deja_ctx_free(deja_ctx *ctx);

/* Called with each checkpoint a model produces on a replaying ctx, in
 * order (the tensor is valid during the call only). Returns 0 to go on, or
 * DEJA_CHECKPOINT_STOP (deja_model.h) to ask the model to stop the
 * inference there: the ctx then answers every later checkpoint with
 * DEJA_CHECKPOINT_STOP too. */
typedef int (*deja_checkpoint_cb)(const deja_tensor *tensor, void *payload);

/* Give a replaying ctx its checkpoint callback (NULL: checkpoints are
 * ignored, the default). DEJA_EINVAL for a recording ctx. */
DEJA_API int deja_ctx_on_checkpoint(deja_ctx *ctx, deja_checkpoint_cb cb, void *payload);

/* Whether the checkpoints a model produces through `ctx` are used: kept
 * by a recording ctx's tracer, or passed to a replaying ctx's callback.
 * Returns 1 or 0 (also for a ctx deja did not make). A model in another
 * process is told, so that it sends none when none is used. */
DEJA_API int deja_ctx_checkpoints_active(const deja_ctx *ctx);

/* ------------------------------------------------------------------------
 * 5. Diff, replay and bisect
 *
 *   deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
 *   o.jobs = 4;
 *   deja_replay_summary sum;
 *   deja_replay_run(store, ids, n, "textgen-v4", &o, on_result, NULL, &sum);
 *
 * The replay engine loads a model, feeds each selected trace its recorded
 * inputs and params and, through a replaying deja_ctx, the very seeds, RNG
 * draws and clock reads it consumed, then diffs the outputs against the
 * recorded ones. Each trace gets a verdict; a divergence carries what
 * probably caused it (environment differences, values the model asked for
 * that were never recorded). Bisect replays a list of model versions to
 * find the first one that stops reproducing.
 * ---------------------------------------------------------------------- */

/* What a replay (or a diff) concluded, from best to worst. */
typedef enum deja_verdict {
    DEJA_VERDICT_SAME = 0,     /* every output bit-identical */
    DEJA_VERDICT_CLOSE = 1,    /* outputs differ, all within the tolerances */
    DEJA_VERDICT_NONDETERMINISTIC = 2, /* repeats of one replay disagree */
    DEJA_VERDICT_DIVERGED = 3, /* some output differs beyond the tolerances */
    DEJA_VERDICT_ERROR = 4,    /* the trace could not be replayed */
} deja_verdict;

/* Name of a verdict ("same", "close", "nondeterministic", "diverged",
 * "error"). Never NULL. */
DEJA_API const char *deja_verdict_name(deja_verdict verdict);

/* Tolerances. A float element is within tolerance when
 * |a - b| <= atol + rtol * |a| (a is the expected side), or when a and b
 * are at most `ulps` units in the last place apart. A negative atol or rtol
 * (the default) takes the usual one for the dtype, as PyTorch's
 * assert_close does: atol 1e-5 and rtol 1e-3 (f16), 1.6e-2 (bf16), 1.3e-6
 * (f32); atol and rtol 1e-7 (f64). NaN matches NaN only; an infinity
 * matches the same infinity only. Integers, bytes and text have no
 * tolerance. Scores are float outputs whose last axis is a class axis
 * declared DEJA_KIND_SCORES or DEJA_KIND_PROBS, or, undeclared, whose
 * names contain "logit", "score", "prob" or "class"); for those the
 * arg-max and the top `topk` classes of every row are compared too, and a
 * changed arg-max is a divergence whatever the tolerances. A truncated
 * output (recorded cut to the tracer's max_payload, tagged
 * deja.truncated) is compared on the recorded prefix only. */
typedef struct deja_diff_options {
    unsigned version;
    double atol;
    double rtol;
    uint64_t ulps;
    unsigned topk; /* 0: do not compare top-k */
    /* Declared kinds of outputs (the first entry of a name wins); outputs
     * not listed fall back to the name heuristic. */
    const deja_output_decl *kinds;
    size_t nkinds;
    /* version 2: text outputs describe up to this many differing word hunks
     * (0: DEJA_DIFF_MAX_HUNKS; at most DEJA_DIFF_MAX_HUNKS_LIMIT). */
    unsigned max_hunks;
} deja_diff_options;

#define DEJA_DIFF_MAX_HUNKS 3
#define DEJA_DIFF_MAX_HUNKS_LIMIT 10000
#define DEJA_DIFF_OPTIONS_VERSION 2
#define DEJA_DIFF_OPTIONS_INIT {DEJA_DIFF_OPTIONS_VERSION, -1.0, -1.0, 0, 5, NULL, 0, 0}

/* How one output compares. */
typedef enum deja_diff_kind {
    DEJA_DIFF_EQUAL = 0,    /* bit-identical */
    DEJA_DIFF_VALUES = 1,   /* same name, dtype and shape; some values differ */
    DEJA_DIFF_DTYPE = 2,    /* the dtypes differ */
    DEJA_DIFF_SHAPE = 3,    /* the shapes (or sizes) differ */
    DEJA_DIFF_ONLY_A = 4,   /* the output exists only on side a (expected) */
    DEJA_DIFF_ONLY_B = 5,   /* the output exists only on side b (actual) */
} deja_diff_kind;

/* The comparison of one output tensor, present on side a, side b or both.
 * Counts are in elements (bytes for bytes, utf8 and bool). */
typedef struct deja_tensor_diff {
    const char *name;
    deja_diff_kind kind;
    deja_verdict verdict;   /* SAME, CLOSE or DIVERGED */
    deja_dtype dtype_a;     /* DEJA_DTYPE_INVALID when absent */
    deja_dtype dtype_b;
    uint64_t count;         /* elements compared */
    uint64_t ndiff;         /* elements not bit-identical */
    uint64_t nbeyond;       /* elements beyond the tolerances */
    int64_t first;          /* flat index of the first differing element, -1 if none */
    /* Floats only. */
    double max_abs;         /* largest |a - b| (infinite when a NaN or Inf mismatches) */
    int64_t worst;          /* flat index of the first element with the largest |a - b| */
    double max_rel;         /* largest |a - b| / max(|a|, |b|) */
    uint64_t max_ulps;      /* largest distance in units in the last place */
    uint64_t nnan;          /* elements where NaN/Inf-ness differs between a and b */
    /* Scores only (see deja_diff_options). */
    int is_scores;
    uint64_t rows;          /* rows along the class axis */
    uint64_t rows_label;    /* rows whose arg-max changed */
    uint64_t rows_topk;     /* rows whose top-k changed */
    int64_t label_row;      /* first row whose arg-max changed, or -1 */
    int64_t label_a;        /* its arg-max on each side */
    int64_t label_b;
    /* Text only: the word-level hunks around the differences (at most
     * max_hunks), "...the cat [-sat-]{+ran+} on the mat [-.-]{+!+}" */
    const char *hunk;       /* NULL when not text or equal */
    const char *detail;     /* one line describing the difference, "" when equal */
} deja_tensor_diff;

/* The comparison of two sets of outputs. Everything it points to is owned
 * by the diff and freed by deja_diff_free(). */
typedef struct deja_diff {
    deja_verdict verdict; /* the worst verdict of the tensors (SAME when none) */
    const deja_tensor_diff *tensors; /* in the order of a, then b's extra ones */
    size_t ntensors;
    const char *summary;  /* one line: "same", "2 outputs differ: ..." */
} deja_diff;

/* Diff outputs `a` (expected, e.g. recorded) against `b` (actual), pairing
 * tensors by name. `opts` may be NULL for the defaults. A different set of
 * names, dtype or shape is a difference, not an error. The caller frees the
 * result with deja_diff_free(). Returns 0, DEJA_EINVAL or DEJA_ENOMEM. */
DEJA_API int deja_diff_outputs(const deja_tensor *a, size_t na, const deja_tensor *b, size_t nb,
                               const deja_diff_options *opts, deja_diff **out);

/* Diff two tensors as one output (their names may differ; a's is kept). */
DEJA_API int deja_diff_tensor(const deja_tensor *a, const deja_tensor *b,
                              const deja_diff_options *opts, deja_diff **out);

/* Free a diff. Accepts NULL. */
DEJA_API void deja_diff_free(deja_diff *diff);

/* The differences between two environments that can change numerics: CPU
 * architecture and model, ISA flags such as AVX-512 or FMA, thread count,
 * floating-point mode, libc, GPUs, library versions and the recorded
 * environment variables. One line each ("isa: avx512f recorded, absent
 * now"). Owned by the result, freed by deja_env_diff_free(). */
typedef struct deja_env_diff {
    const char *const *lines;
    size_t nlines;
} deja_env_diff;

/* Compare `recorded` with `current` (either may be NULL: one line then
 * says that environment is unknown). Returns 0 or DEJA_ENOMEM. */
DEJA_API int deja_env_compare(const deja_env *recorded, const deja_env *current,
                              deja_env_diff **out);

DEJA_API void deja_env_diff_free(deja_env_diff *diff);

/* How the checkpoints of a replay compare with the recorded ones. The
 * replay's checkpoints are compared as they are produced, the k-th
 * occurrence of a name with the k-th recorded one: bit for bit, or by
 * digest (and summary) for those recorded digest-only. The first that is
 * not bit-identical is "the first divergence": everything before it was
 * bit-identical. Owned by the replay result. */
typedef struct deja_checkpoint_diff {
    size_t recorded;       /* checkpoints in the trace */
    size_t compared;       /* replayed checkpoints paired with a recorded one */
    size_t identical;      /* of those, bit-identical (digest-equal) */
    const char *first;     /* name of the first divergent checkpoint, or NULL */
    size_t first_index;    /* its position in the recorded sequence */
    size_t first_occurrence; /* which occurrence of its name (0-based: the step) */
    deja_verdict first_verdict; /* CLOSE (within the tolerances) or DIVERGED */
    const char *first_detail;   /* "max abs 2.1e-03 at [0, 17]", "digest differs; ..." */
    /* For a generation recording per-step "token" checkpoints: the first
     * step whose token differs and, when the logits of that step were
     * recorded, which logit flipped the sampler; NULL when no token
     * differs. */
    const char *token;
    const char *const *absent; /* recorded, never produced ("name#k"), one line each */
    size_t nabsent;
    const char *const *extra;  /* produced, selected by the recording, not recorded */
    size_t nextra;
    int stopped;           /* --stop-at-first stopped the inference at `first` */
    const char *summary;   /* one line: "first divergence: ...; everything before it
                              bit-identical", "12 checkpoints bit-identical" */
} deja_checkpoint_diff;

/* The outcome of replaying one trace, handed to the result callback. It and
 * everything it points to are valid during the callback only. */
typedef struct deja_replay_result {
    deja_id id;
    size_t index;                /* position in the selection */
    deja_verdict verdict;
    int code;                    /* for ERROR: the deja error code */
    const char *error;           /* for ERROR: the message; else "" */
    const deja_trace *trace;     /* the recorded trace; NULL if it could not be read */
    const deja_diff *diff;       /* recorded (a) vs replayed (b); NULL for ERROR */
    const char *model_name;      /* the replaying model */
    const char *model_version;
    /* Likely causes of a divergence. */
    const char *const *env;      /* environment differences (deja_env_compare) */
    size_t nenv;
    int env_first;               /* first result to carry this recorded environment */
    const char *const *unrecorded; /* deja_ctx_unrecorded() lines of the replay */
    size_t nunrecorded;
    /* Recorded values the replay left unused (deja_ctx_unconsumed()). */
    const char *const *unconsumed;
    size_t nunconsumed;
    /* With repeat > 1: the outputs (or "status") that varied between
     * repeats. Set for NONDETERMINISTIC, and for DIVERGED when another,
     * stable output diverged. */
    const char *const *varying;
    size_t nvarying;
    /* The replayed outputs (of the first run); NULL and 0 when it failed. */
    const deja_tensor *outputs;
    size_t noutputs;
    /* Likely causes: how the replaying model differs from the recorded one
     * ("the model changed: ...", "configuration differs (ARG 'a' vs 'b')",
     * "weights differ (digest A vs B)"); none when it is the same. */
    const char *const *model_changes;
    size_t nmodel_changes;
    /* Notes on the comparison itself ("output 'x' was truncated when
     * recorded: compared on its first N bytes"). */
    const char *const *notes;
    size_t nnotes;
    /* With a baseline: the outputs whose difference from the recording the
     * baseline shows too (noise, not counted in the verdict), one line each
     * ("name: detail"). */
    const char *const *noise;
    size_t nnoise;
    /* The checkpoints of the replay compared with the recorded ones, or NULL
     * when the trace recorded none (see deja_checkpoint_diff). */
    const struct deja_checkpoint_diff *checkpoints;
} deja_replay_result;

/* Called once per trace, in selection order, on the thread that called
 * deja_replay_run(). Return 0 to go on, non-zero to stop the replay. */
typedef int (*deja_replay_cb)(const deja_replay_result *result, void *payload);

/* deja_replay_options.progress (deja_progress_cb, section 3) is called
 * after each trace is replayed, from any worker thread, serialised: `done`
 * of `total` traces. */

typedef struct deja_replay_options {
    unsigned version;
    unsigned jobs;       /* worker threads; 0 or 1 replays on the calling thread */
    unsigned repeat;     /* replays per trace (at least 1); > 1 detects nondeterminism */
    deja_diff_options diff;
    int force;           /* replay traces recorded by another model name */
    int isolate;         /* run each inference in a child process (fork): a model that
                            crashes fails its trace only, the replay goes on */
    deja_progress_cb progress; /* optional */
    void *progress_payload;
    /* Seconds one inference (all repeats of one trace) may take before it
     * is abandoned as an ERROR "timed out after N s"; 0: no limit. An
     * isolated worker is killed; an in-process one is left running and its
     * model instance replaced. */
    double timeout;
    /* A noise baseline (PLUGIN[:ARG], normally the version that recorded
     * the traces), or NULL: each trace is replayed on it too, once, and an
     * output that the baseline already replays differently from the
     * recording (thread count, hardware: noise) does not count against the
     * model under test unless it differs worse there. */
    const char *baseline;
    /* Version 2: stop each inference at its first divergent checkpoint
     * (the model is told by DEJA_CHECKPOINT_STOP); the verdict is then that
     * checkpoint's, and the outputs are not compared. */
    int stop_at_first;
} deja_replay_options;

#define DEJA_REPLAY_OPTIONS_VERSION 2
#define DEJA_REPLAY_TIMEOUT_DEFAULT 300.0
#define DEJA_REPLAY_OPTIONS_INIT                                                                 \
    {DEJA_REPLAY_OPTIONS_VERSION, 1, 1, DEJA_DIFF_OPTIONS_INIT, 0, 0, NULL, NULL, \
     DEJA_REPLAY_TIMEOUT_DEFAULT, NULL, 0}

/* Counts of verdicts over one replay. `trouble` counts ERROR results that
 * are the caller's problem rather than the model's (a trace that cannot be
 * read, a model name that differs without `force`). */
typedef struct deja_replay_summary {
    size_t total;
    size_t same;
    size_t close;
    size_t nondeterministic;
    size_t diverged;
    size_t error;
    size_t trouble;
    size_t name_mismatch; /* traces recorded by another model name */
    size_t noisy;         /* traces with differences the baseline shows too */
} deja_replay_summary;

/* Replay the `n` traces `ids` of `store` on the model `model_spec`
 * (PLUGIN[:ARG], as deja_model_load), and pass each result to `cb` (may be
 * NULL). With jobs > 1 the traces replay in parallel on one model instance
 * per worker, or one shared instance when the plugin is thread-safe;
 * results still reach `cb` in selection order. A trace that cannot be read,
 * or whose model name differs from the plugin's (without `force`), or whose
 * replay fails, is an ERROR result and the others go on. `summary` (may be
 * NULL) receives the counts. Returns 0 when every trace was replayed or
 * reported, DEJA_ENOTFOUND/DEJA_EINVAL/DEJA_EVERSION/DEJA_EMODEL when the
 * model cannot be loaded, DEJA_EINVAL for bad options. */
DEJA_API int deja_replay_run(deja_store *store, const deja_id *ids, size_t n,
                             const char *model_spec, const deja_replay_options *opts,
                             deja_replay_cb cb, void *payload, deja_replay_summary *summary);

/* The trace whose inference the calling thread is running inside
 * deja_replay_run() (without isolation): 1 with its id in `*out` (may be
 * NULL), else 0. Async-signal-safe, for a crash handler that names the
 * trace that crashed. */
DEJA_API int deja_replay_current_trace(deja_id *out);

/* One step of a bisection: a version tested and what it gave. */
typedef struct deja_bisect_step {
    size_t index;           /* position of the version in the list */
    const char *spec;       /* its PLUGIN[:ARG] */
    int bad;                /* 1 bad, 0 good */
    deja_replay_summary summary;
} deja_bisect_step;

/* A trace that made a version bad (or, with invert, that it reproduced). */
typedef struct deja_bisect_evidence {
    deja_id id;
    deja_verdict verdict;
    const char *detail;     /* the diff's summary or the error message */
    int label_changed;      /* a score output changed its arg-max */
    const char *const *env; /* likely causes: environment differences that the
                               last good version did not show */
    size_t nenv;
    const char *cause;      /* the likely cause in one line ("the model changed
                               between A and B: ..."), or NULL */
} deja_bisect_evidence;

/* The outcome of a bisection, freed by deja_bisect_result_free(). */
typedef struct deja_bisect_result {
    size_t first_bad;       /* index of the first bad version */
    const char *first_bad_spec;
    size_t last_good;       /* index of the last good version before it */
    const deja_bisect_step *steps; /* every version tested, in order */
    size_t nsteps;
    const deja_bisect_evidence *evidence; /* the first bad version's */
    size_t nevidence;
} deja_bisect_result;

/* Decide whether version `index` of a bisection is bad: set `*bad` to 1
 * or 0 and return 0, or return a negative code to abort the search. */
typedef int (*deja_bisect_check_fn)(size_t index, int *bad, void *payload);

/* Called after each step of deja_bisect() (may be NULL in the options). */
typedef void (*deja_bisect_step_cb)(const deja_bisect_step *step, void *payload);

typedef struct deja_bisect_options {
    unsigned version;
    int invert;                  /* bad when the replay reproduces the recording */
    deja_replay_options replay;  /* how each version is replayed */
    deja_bisect_step_cb on_step; /* optional */
    void *payload;
} deja_bisect_options;

#define DEJA_BISECT_OPTIONS_VERSION 1
#define DEJA_BISECT_OPTIONS_INIT                                                                 \
    {DEJA_BISECT_OPTIONS_VERSION, 0, DEJA_REPLAY_OPTIONS_INIT, NULL, NULL}

/* The search behind deja_bisect(), over `n` >= 2 versions of which the
 * first is good and the last bad by assumption: binary search with `check`,
 * O(log n) calls, never calling it on index 0 or n-1. Writes the index of
 * the first bad version. Returns 0, DEJA_EINVAL, or what `check` returned. */
DEJA_API int deja_bisect_search(size_t n, deja_bisect_check_fn check, void *payload,
                                size_t *first_bad);

/* Bisect the `nspecs` model versions `specs` (PLUGIN[:ARG], oldest first)
 * over the `n` traces `ids`. A version is bad when the replay of any trace
 * diverges from its recorded outputs or fails (with `invert`: when every
 * trace reproduces); nondeterministic traces count for neither. Both ends
 * are checked first: DEJA_EINVAL when they agree (message says which way).
 * Then a binary search. The caller frees `*out` with
 * deja_bisect_result_free(). Returns 0, DEJA_EINVAL, or a code from
 * loading a model or reading a trace. */
DEJA_API int deja_bisect(deja_store *store, const deja_id *ids, size_t n,
                         const char *const *specs, size_t nspecs,
                         const deja_bisect_options *opts, deja_bisect_result **out);

DEJA_API void deja_bisect_result_free(deja_bisect_result *result);

/* ------------------------------------------------------------------------
 * 5b. Pipelines
 *
 * A trace with a parent (deja_span_parent) is a step of its parent's run:
 * a request that goes through several models (preprocess -> classify ->
 * postprocess, retrieve -> rerank -> generate) is a tree of traces. Trees
 * come from stores and bundles, which may be hostile: a tree is bounded in
 * depth and size, and a cycle of parents is cut, never followed.
 * ---------------------------------------------------------------------- */

#define DEJA_TREE_MAX_DEPTH 64    /* levels below a root */
#define DEJA_TREE_MAX_NODES 10000 /* traces in one tree */
#define DEJA_TREE_NONE ((size_t)-1)

/* One trace of a tree, without payloads. */
typedef struct deja_tree_node {
    deja_id id;
    size_t parent;   /* index of its parent in the tree's nodes; DEJA_TREE_NONE for a root */
    unsigned depth;  /* 0 for a root */
    size_t nsteps;   /* its direct steps */
    const char *model_name;
    const char *model_version;
    deja_status status;
    int64_t start_ns;
    int64_t duration_ns;
    int has_parent;  /* the trace's recorded parent (for a root: one not in the tree) */
    deja_id recorded_parent;
    int has_model_config; /* how its model was loaded, as deja_trace's fields */
    const char *model_plugin;
    const char *model_config;
} deja_tree_node;

/* Trees of traces, freed by deja_tree_free(). Nodes come root first, then
 * its steps depth-first, the steps of one trace in the order they started. */
typedef struct deja_tree {
    const deja_tree_node *nodes;
    size_t nnodes;
    size_t nroots;
    const char *const *notes; /* what was cut ("trace X: parents form a cycle") */
    size_t nnotes;
} deja_tree;

/* Walk up from trace `id` through its recorded parents and write the
 * top-most one found in the store to `root` (`id` itself when it has no
 * parent, or when its parent is not in the store). Returns 0,
 * DEJA_ENOTFOUND when `id` is not in the store, DEJA_ECORRUPT when the
 * parents form a cycle or go deeper than DEJA_TREE_MAX_DEPTH. */
DEJA_API int deja_tree_root(deja_store *store, const deja_id *id, deja_id *root);

/* The trees below the `nroots` traces `roots` (each need not be a
 * top-level trace: its tree is then the part below it), found by one scan
 * of the store's traces started since the oldest root, less an hour (a step
 * starts after its parent; the hour covers a clock set back). Returns 0, DEJA_ENOTFOUND when a root is not in the store,
 * DEJA_ENOMEM when the trees hold more than DEJA_TREE_MAX_NODES traces or
 * a tree is deeper than DEJA_TREE_MAX_DEPTH, or a code of the store. */
DEJA_API int deja_tree_get(deja_store *store, const deja_id *roots, size_t nroots,
                           deja_tree **out);

/* Free trees. Accepts NULL. */
DEJA_API void deja_tree_free(deja_tree *tree);

/* How a pipeline replay feeds each step. Isolated: its recorded inputs, so
 * each step is judged alone. Chained: an input whose recorded bytes (and
 * dtype) equal a recorded output of a step that came before it in the
 * tree's order (an ancestor, or an earlier step; the latest one wins) is
 * replaced by that step's replayed output, so a change upstream shows
 * downstream. */
typedef enum deja_pipeline_mode {
    DEJA_PIPELINE_ISOLATED = 0,
    DEJA_PIPELINE_CHAINED = 1,
} deja_pipeline_mode;

/* The model for the steps recorded under the model name `step`; with
 * `step` NULL, for the steps recorded under the loaded model's own name. */
typedef struct deja_step_model {
    const char *step;
    const char *spec; /* PLUGIN[:ARG] */
} deja_step_model;

typedef struct deja_pipeline_options {
    unsigned version;
    deja_pipeline_mode mode;
    const deja_step_model *models; /* a step given no model replays on the one
                                      it recorded (deja_span_model_config) */
    size_t nmodels;
    deja_diff_options diff;
} deja_pipeline_options;

#define DEJA_PIPELINE_OPTIONS_VERSION 1
#define DEJA_PIPELINE_OPTIONS_INIT                                                               \
    {DEJA_PIPELINE_OPTIONS_VERSION, DEJA_PIPELINE_ISOLATED, NULL, 0, DEJA_DIFF_OPTIONS_INIT}

/* Why a step was not replayed. */
typedef enum deja_step_skip {
    DEJA_STEP_REPLAYED = 0,
    DEJA_STEP_RUN = 1,      /* the run itself: it has steps and no model was given or recorded */
    DEJA_STEP_NO_MODEL = 2, /* no model given for its name and none recorded */
} deja_step_skip;

/* The replay of one step (one node of the tree, same index). */
typedef struct deja_step_result {
    deja_step_skip skip;
    const char *spec;          /* the model it replayed on; NULL when skipped */
    const char *model_version; /* that model's version */
    deja_verdict verdict;      /* recorded outputs vs replayed (chained: as fed) */
    const char *detail;        /* the diff's summary or the error; "" when skipped */
    const deja_diff *diff;     /* NULL when skipped or ERROR */
    /* Chained only. */
    size_t nfed;               /* inputs replaced by an earlier step's replayed output */
    int fed_changed;           /* some of them differ from the recording */
    deja_verdict alone;        /* with fed_changed: the verdict on its recorded inputs */
    int own;                   /* it diverges (or fails) on its own inputs */
    int affected;              /* chained: it diverges only because of what it was fed */
    size_t cause;              /* for affected: the step upstream that diverged, else DEJA_TREE_NONE */
    /* Likely causes of a difference: how the environment it was recorded in
     * differs from this one (deja_env_compare); none when the step
     * reproduced. */
    const char *const *env;
    size_t nenv;
} deja_step_result;

/* A pipeline replay, freed by deja_pipeline_result_free(). */
typedef struct deja_pipeline_result {
    const deja_tree *tree;           /* the root's tree */
    const deja_step_result *steps;   /* one per node of the tree */
    deja_pipeline_mode mode;
    size_t first;                    /* the first step (tree order) that diverges or fails on its
                                        own, or DEJA_TREE_NONE */
    size_t replayed, same, close, diverged, error, skipped, affected;
} deja_pipeline_result;

/* Replay the pipeline run `root` (a trace without a parent): every step on
 * its model, fed as `opts->mode` says, each judged against its recorded
 * outputs. A step whose model cannot be loaded or run is an ERROR step and
 * the others go on. Returns 0, DEJA_EINVAL when `root` has a parent in the
 * store (the message names the root to use) or a model is given for a step
 * name the tree does not have, DEJA_ENOTFOUND, or a code of deja_tree_get. */
DEJA_API int deja_pipeline_replay(deja_store *store, const deja_id *root,
                                  const deja_pipeline_options *opts,
                                  deja_pipeline_result **out);

DEJA_API void deja_pipeline_result_free(deja_pipeline_result *result);

/* ------------------------------------------------------------------------
 * 6. Bundles
 *
 *   deja_bundle_options o = DEJA_BUNDLE_OPTIONS_INIT;
 *   deja_bundle_export(store, ids, n, &o, "bug.deja");   (on one machine)
 *   deja_bundle_import(other, "bug.deja", &stats);       (on another)
 *
 * A bundle is one file holding selected traces with every blob and
 * environment they reference, the identities of the models that recorded
 * them and a checksum: the reproducible case to attach to a bug report.
 * Bundles come from strangers and are treated as untrusted input: every
 * size is bounded before use, the decompressed size is capped, every blob
 * and environment is checked against its digest, and a bundle never makes
 * deja load, run or write anything outside the store.
 *
 * The file: a 48-byte header (magic "DEJABNDL", u32 format version, u32
 * flags, u64 compressed length, u64 decompressed length, 16-byte XXH3-128
 * of the compressed body followed by the first 32 header bytes; integers
 * little-endian), then one zstd frame holding records [u8 kind][u32 length]
 * [bytes]: first the manifest, then environments ([16-byte digest]
 * [Environment]), blobs ([16-byte digest][payload]) and traces (Trace), see
 * proto/deja.proto.
 * ---------------------------------------------------------------------- */

typedef struct deja_bundle deja_bundle;

/* The first bytes of every bundle file. */
#define DEJA_BUNDLE_MAGIC "DEJABNDL"
#define DEJA_BUNDLE_MAGIC_LEN 8

/* How a bundle is written. */
typedef struct deja_bundle_options {
    unsigned version;
    int level;              /* zstd level, 1..19; 0 for the default (3) */
    const char *with_model; /* PLUGIN[:ARG] to record (name and digest only), or NULL */
    int include_plugin;     /* also hold the plugin file itself (needs with_model) */
} deja_bundle_options;

#define DEJA_BUNDLE_OPTIONS_VERSION 1
#define DEJA_BUNDLE_OPTIONS_INIT {DEJA_BUNDLE_OPTIONS_VERSION, 0, NULL, 0}

/* A model identity held by a bundle, with the number of its traces. */
typedef struct deja_bundle_model {
    const char *name;
    const char *version;
    const uint8_t *digest; /* weights digest, may be empty */
    size_t digest_size;
    uint64_t traces;
} deja_bundle_model;

/* The plugin a bundle was exported with (--with-model). */
typedef struct deja_bundle_plugin {
    const char *spec;          /* as given: "textgen-v1", "path/to/x.so:ARG" */
    const char *file;          /* base name of the plugin file */
    deja_digest file_digest;   /* XXH3-128 of the plugin file */
    uint64_t file_size;
    const char *model_name;    /* what the plugin reported */
    const char *model_version;
    const uint8_t *model_digest;
    size_t model_digest_size;
    const void *data;          /* the plugin file (--include-plugin), else NULL; never run */
    size_t size;
} deja_bundle_plugin;

/* What a bundle holds. Owned by the bundle (or freed with
 * deja_bundle_info_free() when it came from deja_bundle_verify()). */
typedef struct deja_bundle_info {
    uint32_t format;          /* format version of the file */
    const char *deja_version; /* the deja that wrote it */
    int64_t created_ns;       /* Unix time */
    uint64_t traces;
    uint64_t blobs;
    uint64_t envs;
    uint64_t file_bytes;      /* size of the file */
    uint64_t body_bytes;      /* size of the records, decompressed */
    deja_digest checksum;     /* the header's XXH3-128 */
    const deja_bundle_model *models;
    size_t nmodels;
    const deja_bundle_plugin *plugin; /* NULL when none was recorded */
} deja_bundle_info;

/* What an import did. */
typedef struct deja_bundle_import_stats {
    uint64_t traces;       /* traces in the bundle */
    uint64_t traces_added; /* of which were new to the store (the others were kept as they were) */
    uint64_t blobs;        /* blobs in the bundle */
    uint64_t blobs_added;  /* blobs the store did not hold before */
    uint64_t envs;
    uint64_t envs_added;
} deja_bundle_import_stats;

/* Write the `n` traces `ids` of `store` (n >= 1; duplicates are written
 * once) with every blob and environment they reference into a new bundle
 * at `path`. `opts` may be NULL for the defaults. With opts->with_model the
 * plugin is loaded to record its file name, file digest and model
 * identity; with include_plugin the plugin file is held too. The file is
 * written under a temporary name next to `path` and renamed when complete,
 * replacing any file there: never a half-written bundle under `path`.
 * Returns 0, DEJA_EINVAL (no traces, bad options, a tensor too large for a
 * bundle), DEJA_ENOTFOUND (a trace or the plugin), DEJA_EIO, DEJA_ENOMEM,
 * or the error of reading the store. */
DEJA_API int deja_bundle_export(deja_store *store, const deja_id *ids, size_t n,
                                const deja_bundle_options *opts, const char *path);

/* Check the whole bundle at `path`: header, checksum, size bounds, every
 * record, every digest and reference. Nothing is written anywhere. When
 * `info` is not NULL it receives what the bundle holds, freed with
 * deja_bundle_info_free(). Returns 0, DEJA_ENOTFOUND or DEJA_EIO (the
 * file), DEJA_ECORRUPT (the message says what is wrong, at which offset or
 * record), DEJA_EVERSION (written by a newer deja) or DEJA_ENOMEM. */
DEJA_API int deja_bundle_verify(const char *path, deja_bundle_info **info);

/* Free info from deja_bundle_verify(). Accepts NULL. */
DEJA_API void deja_bundle_info_free(deja_bundle_info *info);

/* Verify the bundle at `path` as deja_bundle_verify() does, then add all it
 * holds to `store` (open for writing) in one transaction: everything or,
 * on any failure, nothing. Blobs and environments already in the store are
 * not stored twice, traces already present (same id) are left as they are,
 * so importing a bundle twice changes nothing; trace ids are kept. `out`
 * (may be NULL) receives the counts. Nothing the bundle holds is loaded or
 * run, and nothing is written outside the store. Returns 0, the codes of
 * deja_bundle_verify(), or the store's error. */
DEJA_API int deja_bundle_import(deja_store *store, const char *path,
                                deja_bundle_import_stats *out);

/* Verify the bundle at `path` and load it into a private temporary store
 * (a directory under $TMPDIR, else /tmp) so that it can be read and
 * replayed without importing it. Close with deja_bundle_close(). Returns
 * the codes of deja_bundle_import(). */
DEJA_API int deja_bundle_open(deja_bundle **out, const char *path);

/* The bundle's store: usable by every reading function (deja_store_list,
 * deja_trace_get, deja_replay_run, ...) until deja_bundle_close(); never
 * write to it. Owned by the bundle. */
DEJA_API deja_store *deja_bundle_store(deja_bundle *bundle);

/* What the bundle holds. Owned by the bundle. */
DEJA_API const deja_bundle_info *deja_bundle_info_get(const deja_bundle *bundle);

/* Close the bundle and remove its temporary store. Accepts NULL. */
DEJA_API void deja_bundle_close(deja_bundle *bundle);

/* Remove the temporary stores of every bundle this process holds open
 * (deja_bundle_open), for a signal handler: it calls only unlink and rmdir
 * and is async-signal-safe; the bundles must not be used afterwards. A
 * temporary store left by a process that was killed (SIGKILL) is removed
 * by the next deja_bundle_open of the same user. */
DEJA_API void deja_bundle_remove_temp(void);

/* ------------------------------------------------------------------------
 * 7. LLM endpoints: the recording proxy and deja serve
 *
 *   deja_proxy_options o = DEJA_PROXY_OPTIONS_INIT;
 *   o.listen = "127.0.0.1:8080";
 *   o.upstream = "http://127.0.0.1:8000";
 *   deja_server *p;
 *   deja_proxy_start(&p, tracer, &o);    (serves on its own threads)
 *   ...
 *   deja_server_stop(p);
 *
 * The proxy speaks the OpenAI-compatible protocol on both sides: every
 * POST to .../chat/completions, .../completions and .../embeddings is
 * forwarded and recorded as a trace; anything else is forwarded
 * unrecorded. Streams (server-sent events) pass through chunk by chunk as
 * they arrive. Secrets never reach the store: the Authorization,
 * Proxy-Authorization, api-key, x-api-key, Cookie and Set-Cookie headers,
 * and every header named in `redact_headers`, are forwarded but never
 * recorded. `deja serve` exposes a deja model (PLUGIN[:ARG]) through the
 * same protocol, the request's `seed` becoming the determinism context's
 * base seed.
 * ---------------------------------------------------------------------- */

typedef struct deja_server deja_server;

typedef struct deja_proxy_options {
    unsigned version;
    const char *listen;   /* "HOST:PORT" (port 0: any free one); NULL: 127.0.0.1:8080 */
    const char *upstream; /* "http://HOST:PORT[/PREFIX]": request paths are appended */
    const deja_tag *tags; /* added to every trace */
    size_t ntags;
    const char *const *redact_headers; /* more headers never recorded (any case) */
    size_t nredact_headers;
    size_t max_request;   /* a larger request body gets 413 */
    size_t max_response;  /* a larger upstream answer gets 502 (a stream is cut) */
    unsigned timeout_ms;  /* the whole upstream exchange; 0: none */
    unsigned connect_timeout_ms;
    unsigned max_clients; /* connections served at once */
} deja_proxy_options;

#define DEJA_PROXY_OPTIONS_VERSION 1
#define DEJA_PROXY_OPTIONS_INIT                                                                  \
    {DEJA_PROXY_OPTIONS_VERSION, NULL, NULL, NULL, 0, NULL, 0, (size_t)64 << 20,             \
     (size_t)256 << 20, 600000, 10000, 1024}

/* Start a recording proxy in front of opts->upstream, recording through
 * `tracer` (which must outlive the server). Serves on its own threads
 * until deja_server_stop(). Returns 0, DEJA_EINVAL (bad options or
 * address) or DEJA_EIO (cannot listen: the message says why). */
DEJA_API int deja_proxy_start(deja_server **out, deja_tracer *tracer,
                              const deja_proxy_options *opts);

typedef struct deja_serve_options {
    unsigned version;
    const char *listen;  /* as for the proxy */
    const char *model;   /* PLUGIN[:ARG], as deja_model_load */
    deja_tracer *record; /* record every inference served through it; NULL: record nothing */
    size_t max_request;  /* a larger request body gets 413 */
    unsigned max_clients;
} deja_serve_options;

#define DEJA_SERVE_OPTIONS_VERSION 1
#define DEJA_SERVE_OPTIONS_INIT                                                                  \
    {DEJA_SERVE_OPTIONS_VERSION, NULL, NULL, NULL, (size_t)16 << 20, 1024}

/* Load opts->model and serve it as an OpenAI-compatible endpoint: GET
 * /v1/models, POST /v1/chat/completions and /v1/completions, streaming or
 * not. Chat messages' contents, joined by newlines, become the input
 * "prompt"; temperature, top_p, top_k, max_tokens and stop become params
 * of those names; the completion is the output "completion". Returns 0,
 * the codes of deja_model_load(), DEJA_EINVAL or DEJA_EIO. */
DEJA_API int deja_serve_start(deja_server **out, const deja_serve_options *opts);

/* The TCP port the server listens on (useful after asking for port 0). */
DEJA_API unsigned deja_server_port(const deja_server *server);

#define DEJA_SERVER_WHY_MAX 256

/* Exchanges a server has answered, and of those how many it recorded. */
typedef struct deja_server_stats {
    uint64_t requests;
    uint64_t recorded;
    uint64_t truncated; /* recorded streams cut short (client gone, upstream closed) */
    uint64_t failed;    /* answered with an error status */
    /* Recordable exchanges answered but not recorded: the tracer refused
     * them (a model name that breaks the name rule, out of memory). Their
     * answer is forwarded unchanged. `unrecorded_why` is the first
     * refusal's reason ("" when none), cut to fit. */
    uint64_t unrecorded;
    char unrecorded_why[DEJA_SERVER_WHY_MAX];
} deja_server_stats;

DEJA_API void deja_server_stats_get(const deja_server *server, deja_server_stats *out);

/* Stop listening, finish or cut the exchanges in flight, free the server.
 * Accepts NULL. */
DEJA_API void deja_server_stop(deja_server *server);

/* ------------------------------------------------------------------------
 * 8. Watching the live system: health per group, drift, validation rules
 *
 *   deja_health_options o = DEJA_HEALTH_OPTIONS_INIT;   (group by version)
 *   deja_health *h;
 *   deja_health_compute(store, NULL, &o, &h);
 *   for (size_t i = 0; i < h->nrows; i++) ... h->rows[i].latency_p95_ns ...
 *   deja_health_free(h);
 *
 * These functions stream over a store (memory bounded by the number of
 * groups, not of traces) and answer "is something wrong, since when, on
 * which version, and which traces show it".
 * ---------------------------------------------------------------------- */

/* What health rows are grouped by. */
typedef enum deja_group_by {
    DEJA_GROUP_MODEL = 0,   /* the model name */
    DEJA_GROUP_VERSION = 1, /* "name@version" */
    DEJA_GROUP_TAG = 2,     /* the value of one tag ("-" when a trace lacks it) */
} deja_group_by;

typedef struct deja_health_options {
    unsigned version;
    deja_group_by by;
    const char *tag_key; /* DEJA_GROUP_TAG: the tag's key */
    int64_t every_ns;    /* > 0: one row per group and time bucket of this width */
} deja_health_options;

#define DEJA_HEALTH_OPTIONS_VERSION 1
#define DEJA_HEALTH_OPTIONS_INIT {DEJA_HEALTH_OPTIONS_VERSION, DEJA_GROUP_VERSION, NULL, 0}

/* The tag a failed validation rule leaves on a trace: deja.invalid=RULE. */
#define DEJA_INVALID_TAG "deja.invalid"

/* One group (and time bucket) of traces. Latencies are the recorded
 * durations; quantiles come from a sketch with a relative error of 1%. */
typedef struct deja_health_row {
    const char *group;
    int64_t bucket_ns;   /* start of the time bucket (Unix ns); 0 without every_ns */
    uint64_t traces;
    uint64_t errors;     /* status error */
    uint64_t invalid;    /* tagged deja.invalid (a rule failed at record time) */
    int64_t first_ns;    /* start of the oldest and newest trace */
    int64_t last_ns;
    double latency_p50_ns;
    double latency_p95_ns;
    double latency_p99_ns;
    double latency_max_ns;
    uint64_t input_bytes;  /* payload bytes of every input, summed */
    uint64_t output_bytes;
    /* Spans of this group the tracers never recorded, since the store began
     * (counted per model version by the tracers): sampled out, and dropped
     * on a full queue. Grouping by model or version without time buckets
     * only; 0 otherwise (see deja_health's store-wide counters). */
    uint64_t sampled_out;
    uint64_t dropped;
} deja_health_row;

/* Health of a selection. The store-wide counters of traces that were
 * never recorded (dropped, sampled out, redacted) are given once besides
 * the per-group ones of the rows. Owned by the result, freed by deja_health_free(). */
typedef struct deja_health {
    const deja_health_row *rows; /* by group (first seen, newest first), then bucket, oldest first */
    size_t nrows;
    uint64_t traces;             /* traces in the selection */
    uint64_t bad;                /* records that could not be read (skipped) */
    uint64_t dropped;            /* store-wide tracer counters */
    uint64_t sampled_out;
    uint64_t redacted;
} deja_health;

/* Stream over the traces of `store` matching `filter` (NULL: all; its
 * limit is ignored) and compute a row per group (and time bucket) as
 * `opts` says (NULL: by version). The caller frees `*out` with
 * deja_health_free(). Returns 0, DEJA_EINVAL (bad options), DEJA_ENOMEM,
 * or the store's error. */
DEJA_API int deja_health_compute(deja_store *store, const deja_filter *filter,
                                 const deja_health_options *opts, deja_health **out);

/* Free a health result. Accepts NULL. */
DEJA_API void deja_health_free(deja_health *health);

/* The start of the oldest and the end of the newest trace of `store` by
 * their ids (millisecond precision, Unix ns); both 0 when it is empty.
 * Returns 0 or the store's error. */
DEJA_API int deja_store_time_range(deja_store *store, int64_t *oldest_ns, int64_t *newest_ns);

/* Traces of `store` tagged deja.invalid (any rule), counted from the tag
 * index without reading a trace. Returns 0 or the store's error. */
DEJA_API int deja_store_invalid_count(deja_store *store, uint64_t *out);

/* Validation rules: what valid inputs and outputs look like. A rules file
 * holds one rule per line ('#' starts a comment):
 *
 *   NAME: SIDE.TENSOR CHECK [ARGUMENTS]
 *
 * NAME ([A-Za-z0-9_.-], unique) is what a violation is called and the
 * value of the deja.invalid tag; SIDE is `input` or `output`; TENSOR is a
 * tensor's name, or `*` for every tensor of that side the check applies
 * to. The checks:
 *
 *   finite                 every element is neither NaN nor infinite
 *   range LO HI            every element is within [LO, HI]
 *   sum S [TOL]            every row (last axis) sums to S within TOL (1e-3)
 *   in A,B,...             text: is one of the words; integers: every
 *                          element is; scores: every row's arg-max class is
 *   length MIN..MAX        text length in characters (either bound may be
 *                          left out: "..2000", "1..")
 *   matches REGEX          text matches the POSIX extended REGEX (rest of line)
 *   json                   text is one valid JSON value
 *   nonempty               the tensor is present and not empty
 *
 * A named tensor that is absent passes every check but `nonempty`; a
 * tensor of the wrong type for a check breaks the rule when named, and is
 * skipped under `*`. Output rules do not apply to error traces. */
typedef struct deja_rules deja_rules;

/* Parse rules from `len` bytes of `text`; `source` names them in messages
 * ("rules.txt:3: unknown check 'fnite'"). Returns 0, DEJA_EINVAL with that
 * message, or DEJA_ENOMEM. Free with deja_rules_free(). */
DEJA_API int deja_rules_parse(deja_rules **out, const char *text, size_t len,
                              const char *source);

/* Read and parse the rules file at `path` (at most 1 MiB). Returns the
 * codes of deja_rules_parse(), or DEJA_ENOTFOUND/DEJA_EIO for the file. */
DEJA_API int deja_rules_load(deja_rules **out, const char *path);

/* Free rules. Accepts NULL. */
DEJA_API void deja_rules_free(deja_rules *rules);

/* Number of rules, and the name of rule `i` (NULL when out of range). */
DEJA_API size_t deja_rules_count(const deja_rules *rules);
DEJA_API const char *deja_rules_name(const deja_rules *rules, size_t i);

/* One broken rule on one tensor. Valid during the callback only. */
typedef struct deja_violation {
    const char *rule;   /* the rule's name */
    deja_side side;
    const char *tensor; /* the tensor's name */
    const char *detail; /* "element 3 is NaN", "length 0 is below 1" */
} deja_violation;

/* Called for each violation; return 0 to go on, non-zero to stop. */
typedef int (*deja_violation_cb)(const deja_violation *violation, void *payload);

/* Apply every rule to the inputs and outputs of `trace` (only their data
 * is read: payloads must be loaded). Each violation goes to `cb` (may be
 * NULL), at most one per rule and tensor. Thread-safe: one rules object may
 * check traces on many threads at once. Returns the number of rules
 * broken (0 when valid), or DEJA_ENOMEM. */
DEJA_API int deja_rules_apply(const deja_rules *rules, const deja_trace *trace,
                              deja_violation_cb cb, void *payload);

/* The record-time check of the tracer (see deja_tracer_options.check),
 * with `payload` a const deja_rules *: writes the names of up to `cap`
 * broken rules into `failed` (owned by the rules) and returns how many. */
DEJA_API size_t deja_rules_tracer_check(const deja_trace *trace, const char **failed, size_t cap,
                                        void *payload);

/* What deja_rules_check_store() went over. */
typedef struct deja_check_summary {
    uint64_t traces;     /* traces checked */
    uint64_t invalid;    /* of which broke at least one rule */
    uint64_t violations; /* broken rules, summed over traces and tensors */
    uint64_t bad;        /* records that could not be read (passed to `bad`) */
} deja_check_summary;

/* Called for each violation found over a store, with its trace. */
typedef int (*deja_trace_violation_cb)(const deja_trace *trace, const deja_violation *violation,
                                       void *payload);

/* Apply `rules` to every trace of `store` matching `filter` (NULL: all),
 * newest first, loading payloads stored as blobs when a trace has any.
 * Violations go to `cb`, unreadable records to `bad` (either may be NULL);
 * `summary` (may be NULL) receives the counts. Returns 0 or the store's
 * error. */
DEJA_API int deja_rules_check_store(deja_store *store, const deja_rules *rules,
                                    const deja_filter *filter, deja_trace_violation_cb cb,
                                    deja_bad_cb bad, void *payload, deja_check_summary *summary);

/* Drift between two selections (`deja drift`): every field of the traces,
 * compared between a baseline and a current selection.
 *
 *  - numeric inputs and outputs, per flattened position (the first
 *    max_positions of each tensor), the latency, text lengths and the top
 *    score of a scores output: PSI over the baseline's quantile bins
 *    (drifted when above psi_threshold), the two-sample Kolmogorov-Smirnov
 *    statistic and its asymptotic p-value, summary statistics, NaN and
 *    infinity counts;
 *  - outputs of scores over classes: the distribution of the predicted
 *    label (arg-max), PSI and the chi-square test of homogeneity;
 *  - text: the share of words, and of characters, of current texts never
 *    seen in the baseline, against the share the baseline's second half
 *    has against its first (drifted when the excess is above
 *    new_token_threshold); the empty-output rate;
 *  - the error rate (drifted when it moved by more than rate_threshold);
 *    the latency is a numeric field that drifts only when its p50 or p95
 *    also moved by more than a quarter.
 *
 * Each selection is sampled reproducibly: the `sample` traces whose ids
 * hash lowest under `seed`, whatever the order or the threads that listed
 * them. Error rate and latency quantiles cover the whole selection. */
typedef enum deja_drift_kind {
    DEJA_DRIFT_NUMERIC = 0,
    DEJA_DRIFT_LABELS = 1,
    DEJA_DRIFT_NEW_TOKENS = 2,
    DEJA_DRIFT_RATE = 3,
} deja_drift_kind;

/* One selection's side of a field. */
typedef struct deja_drift_side {
    uint64_t n;        /* values (numeric), rows (labels), tokens (new tokens), traces (rates) */
    uint64_t nan;      /* numeric: NaN values, left out of the statistics */
    uint64_t inf;      /* numeric: infinite values, left out too */
    double mean, std, min, max, p50, p95, p99; /* numeric */
    double rate;       /* rates and new tokens: the share */
} deja_drift_side;

/* One field, compared. Owned by the deja_drift. */
typedef struct deja_drift_field {
    const char *name;   /* "input.features[3]", "output.logits (label)", "latency (ms)",
                           "errors", "output.completion (new words)" */
    deja_drift_kind kind;
    const char *metric; /* "psi", "new share excess", "rate change" */
    double score;       /* the metric (absolute for a rate change) */
    double threshold;
    int drifted;        /* score > threshold */
    double psi, ks, ks_p, chi2, chi2_p; /* NaN when not computed */
    deja_drift_side baseline, current;
    /* The histogram: numeric fields have nbins bins split by the nbins - 1
     * `edges` (bin i holds (edges[i-1], edges[i]]); labels have one bin per
     * label, named by `labels`. Shares of each side's values. */
    size_t nbins;
    const double *edges;
    const char *const *labels;
    const double *base_share;
    const double *cur_share;
    /* Where the current selection departs most (the bin or label whose
     * share grew most, "(0.52, 0.91]", "label 7"), and current traces in
     * it, newest first. */
    const char *region;
    const deja_id *examples;
    size_t nexamples;
} deja_drift_field;

/* The result, freed by deja_drift_free(). */
typedef struct deja_drift {
    const deja_drift_field *fields; /* drifted first, then by score / threshold */
    size_t nfields;
    size_t ndrifted;
    uint64_t baseline_traces; /* matched by each selection */
    uint64_t current_traces;
    uint64_t baseline_sampled; /* of which were sampled */
    uint64_t current_sampled;
    uint64_t bad;              /* records that could not be read (skipped) */
} deja_drift;

typedef struct deja_drift_options {
    unsigned version;
    size_t sample;              /* traces per selection at most (default 10000) */
    uint64_t seed;              /* of the sample */
    unsigned bins;              /* quantile bins of numeric fields, 2..100 (10) */
    double psi_threshold;       /* 0.2: "significant" by the usual convention */
    double rate_threshold;      /* 0.05 */
    double new_token_threshold; /* 0.1 */
    size_t max_positions;       /* numeric positions per tensor (16) */
} deja_drift_options;

#define DEJA_DRIFT_OPTIONS_VERSION 1
#define DEJA_DRIFT_OPTIONS_INIT {DEJA_DRIFT_OPTIONS_VERSION, 10000, 1, 10, 0.2, 0.05, 0.1, 16}

/* Compare the traces of `store` matching `current` with those matching
 * `baseline` (NULL: every trace), field by field, as described above. The
 * caller frees `*out` with deja_drift_free(). Returns 0, DEJA_EINVAL (bad
 * options; an empty selection: the message says which), DEJA_ENOMEM, or
 * the store's error. */
DEJA_API int deja_drift_compute(deja_store *store, const deja_filter *baseline,
                                const deja_filter *current, const deja_drift_options *opts,
                                deja_drift **out);

/* Free a drift result. Accepts NULL. */
DEJA_API void deja_drift_free(deja_drift *drift);
/* The HTML report (`deja report`): one self-contained file -- no script,
 * no external style, font or image; charts are inline SVG -- with the
 * health of each version over time (traffic, latency, error rate), the
 * drift table with baseline-vs-current histograms of the most drifted
 * fields, rule violations, and replay or bisect results. Every trace id
 * links to an entry that gives the commands showing and replaying it.
 * Everything in it that came from traces is HTML-escaped. */

/* A trace the report lists: its id, a short label (a verdict, a rule)
 * and a detail that may span lines. */
typedef struct deja_report_trace {
    deja_id id;
    const char *label;
    const char *detail;
} deja_report_trace;

/* One version tested by a bisection. */
typedef struct deja_report_step {
    const char *spec;
    int bad;
    uint64_t same, close, diverged, error;
} deja_report_step;

/* What goes into the report; NULL or 0 fields leave their section out
 * (it then says what would fill it). */
typedef struct deja_report {
    unsigned version;
    const char *store;     /* as the commands must name it */
    const char *selection; /* the filters, in words */
    int64_t generated_ns;
    const deja_health *totals;   /* by version */
    const deja_health *timeline; /* by version and time bucket */
    int64_t every_ns;            /* the timeline's bucket */
    const deja_drift *drift;
    const char *baseline; /* the drift's selections, in words */
    const char *current;
    size_t drift_charts; /* histograms of this many top drifted fields */
    const char *rules;   /* the rules file checked, or NULL (record-time tags) */
    uint64_t checked;    /* traces checked, and how many broke a rule */
    uint64_t invalid;
    const deja_report_trace *violations;
    size_t nviolations;
    const char *replay_source; /* the results file, or NULL */
    const char *replay_model;
    uint64_t verdicts[5]; /* by deja_verdict */
    const deja_report_trace *replayed; /* the divergent traces (or bisect evidence) */
    size_t nreplayed;
    const deja_report_step *steps; /* a bisection, or NULL */
    size_t nsteps;
    const char *first_bad;
} deja_report;

#define DEJA_REPORT_VERSION 1

/* Write the report `r` to `path` (replaced atomically: written under a
 * temporary name, then renamed). Returns 0, DEJA_EINVAL, DEJA_EIO (the
 * message names the file) or DEJA_ENOMEM. */
DEJA_API int deja_report_write(const deja_report *report, const char *path);

/* ------------------------------------------------------------------------
 * 9. Many machines: NATS JetStream
 *
 *   deja_fleet *f;
 *   deja_fleet_options fo = DEJA_FLEET_OPTIONS_INIT;
 *   fo.servers = "nats://10.0.0.5:4222,nats://10.0.0.6:4222";
 *   deja_fleet_connect(&f, &fo);
 *   deja_fleet_ship(f, store, NULL, &stats);          (on every host)
 *   deja_fleet_pull(f, other, &filter, NULL, 0, &ps);  (anywhere)
 *   deja_fleet_close(f);
 *
 * Each host records into its own store; shipping copies its traces to the
 * stream DEJA_TRACES (subject deja.traces.<model>.<version>.<id>, names
 * escaped, the trace id as Nats-Msg-Id; at most one message per subject, so
 * a trace is stored once however often it is shipped), and the blobs, chunks
 * and environments they reference to the content-addressed stream
 * DEJA_OBJECTS (subject deja.obj.<b|c|e>.<hex digest>, one message per
 * digest, fleet-wide). The streams are created on first use, replicated
 * `replicas` times. Everything received is checked against its digest.
 * ---------------------------------------------------------------------- */

typedef struct deja_fleet deja_fleet;

/* Where the fleet's JetStream is and how to log in. Credentials come from
 * these fields, else from a URL's user:password@, else from $NATS_USER and
 * $NATS_PASSWORD, $NATS_TOKEN, $NATS_CREDS (a .creds file). They are never
 * written into a message: URLs in messages lose their user information. */
typedef struct deja_fleet_options {
    unsigned version;
    const char *servers;  /* "nats://HOST:PORT[,HOST:PORT...]" (scheme optional) */
    const char *user;     /* with password */
    const char *password;
    const char *token;
    const char *creds;    /* a NATS .creds file */
    unsigned replicas;    /* replicas of the streams deja creates; 0 for 1 */
    unsigned timeout_ms;  /* connecting, and waiting for each answer; 0 for 5000 */
} deja_fleet_options;

#define DEJA_FLEET_OPTIONS_VERSION 1
#define DEJA_FLEET_OPTIONS_INIT {DEJA_FLEET_OPTIONS_VERSION, NULL, NULL, NULL, NULL, NULL, 0, 0}

/* Connect to the servers of `opts` and make sure deja's streams exist.
 * Returns 0, DEJA_EINVAL (bad options), or DEJA_EIO with a message saying
 * which: no server reachable, authentication refused, no JetStream. */
DEJA_API int deja_fleet_connect(deja_fleet **out, const deja_fleet_options *opts);

/* Close the connection (waiting for nothing). Accepts NULL. */
DEJA_API void deja_fleet_close(deja_fleet *fleet);

/* What a ship did so far (cumulative over the call). */
typedef struct deja_ship_stats {
    uint64_t traces;          /* traces acknowledged by the stream */
    uint64_t traces_present;  /* of which the stream held already */
    uint64_t objects;         /* blobs, chunks and environments acknowledged */
    uint64_t objects_present; /* of which the stream held already (stored once) */
    uint64_t objects_skipped; /* not sent at all: known present */
    uint64_t bytes;           /* message bytes sent */
    uint64_t filtered;        /* traces passed over: they do not match the filter */
    uint64_t rounds;          /* batches acknowledged (with follow: including empty polls) */
    int64_t lag_ns;           /* the last batch's longest time from a trace's end to its ack */
    deja_id position;         /* the last acknowledged trace (all zero: none yet) */
} deja_ship_stats;

/* Called after each acknowledged batch and, with follow, each poll. Return
 * non-zero to stop (the position is saved first). */
typedef int (*deja_ship_cb)(const deja_ship_stats *stats, void *payload);

typedef struct deja_ship_options {
    unsigned version;
    const deja_filter *filter; /* which traces to ship; NULL for all (limit ignored) */
    int follow;                /* keep shipping new traces until `progress` says stop */
    unsigned poll_ms;          /* follow: time between looks for new traces; 0 for 200 */
    unsigned settle_ms;        /* look again this far behind the position for traces that
                                  committed late (long spans); 0 for 60000 */
    unsigned batch;            /* traces per acknowledged batch; 0 for 256 */
    deja_ship_cb progress;     /* optional */
    void *payload;
} deja_ship_options;

#define DEJA_SHIP_OPTIONS_VERSION 1
#define DEJA_SHIP_OPTIONS_INIT {DEJA_SHIP_OPTIONS_VERSION, NULL, 0, 0, 0, 0, NULL, NULL}

/* Ship the traces of `store` (open for writing: the position is kept in
 * its meta) in id order, starting after the last acknowledged position for
 * these servers and this filter, in batches: the objects a batch references
 * are published and acknowledged first, then its traces, then the position
 * is saved. A ship killed at any point resumes where it was acknowledged;
 * what it re-sends the streams already hold and keep once. A batch that
 * fails for a transient reason (a node lost, a leader election) is sent
 * again for up to 30 s. `opts` may be NULL. Returns 0, DEJA_EIO (the
 * fleet; the message says why), or the store's error. */
DEJA_API int deja_fleet_ship(deja_fleet *fleet, deja_store *store, const deja_ship_options *opts,
                             deja_ship_stats *out);

/* What a pull did. */
typedef struct deja_pull_stats {
    uint64_t traces;       /* traces selected in the stream */
    uint64_t traces_added; /* of which were new to the store */
    uint64_t blobs_added;
    uint64_t envs_added;
    uint64_t bytes;        /* message bytes received */
} deja_pull_stats;

/* Copy the traces of the fleet that match `filter` (NULL: all; tags,
 * status, time window and limit are applied as in deja_store_list) and,
 * when `nids` > 0, whose id starts with one of the `nids` printed prefixes
 * `ids`, with every blob and environment they reference, into `store`
 * (open for writing). Traces the store holds are left as they are, so
 * pulling twice changes nothing. Each trace is written with what it
 * references in one transaction, after every digest was checked. Returns
 * 0, DEJA_EIO, DEJA_ECORRUPT (a message that fails its digest or does not
 * decode; the message names it), or the store's error. */
DEJA_API int deja_fleet_pull(deja_fleet *fleet, deja_store *store, const deja_filter *filter,
                             const char *const *ids, size_t nids, deja_pull_stats *out);

/* Distributed replay. The coordinator (deja_fleet_replay) ships the
 * selected traces (stored once, as by deja_fleet_ship), enqueues one job
 * per trace on the work-queue stream DEJA_JOBS and collects the results
 * from DEJA_RESULTS; any number of workers (deja_fleet_work, on any
 * machine) take jobs, fetch the trace and its blobs into a local cache
 * store, replay it with deja_replay_run and publish the result, then
 * acknowledge the job. A job not acknowledged within the ack deadline (a
 * worker killed or cut off) is delivered again to another worker; a result
 * that arrives twice is counted once, so every trace gets exactly one
 * verdict. */

/* Replay the `n` traces `ids` of `store` on `model_spec` through the
 * fleet's workers, and pass each result to `cb` in selection order, like
 * deja_replay_run (same callback, summary and options; opts->jobs is the
 * workers' business and ignored; progress is called as results arrive).
 * The environment lines of a result are those of the worker that replayed
 * it. Waits for workers for as long as it takes; `cb` returning non-zero
 * stops. Returns 0, DEJA_EINVAL, DEJA_EIO (the fleet) or the store's
 * error. */
DEJA_API int deja_fleet_replay(deja_fleet *fleet, deja_store *store, const deja_id *ids,
                               size_t n, const char *model_spec, const deja_replay_options *opts,
                               deja_replay_cb cb, void *payload, deja_replay_summary *summary);

/* Says when a worker should stop (checked between jobs and while idle):
 * non-zero to stop. */
typedef int (*deja_stop_fn)(void *payload);

typedef struct deja_worker_options {
    unsigned version;
    const char *model_spec; /* replay on this model; NULL: the one each job names */
    unsigned ack_wait_ms;   /* a job not acknowledged this long is given to another
                               worker (the workers' consumer is made with it); 0: 10000 */
    unsigned prefetch;      /* jobs taken (and replayed) at once; 0: 16 */
    uint64_t max_jobs;      /* stop after this many jobs; 0: no limit */
    deja_stop_fn stop;      /* optional */
    void *payload;
} deja_worker_options;

#define DEJA_WORKER_OPTIONS_VERSION 1
#define DEJA_WORKER_OPTIONS_INIT {DEJA_WORKER_OPTIONS_VERSION, NULL, 0, 0, 0, NULL, NULL}

typedef struct deja_worker_stats {
    uint64_t jobs;    /* jobs done and acknowledged */
    uint64_t errors;  /* of which ended in an ERROR verdict */
} deja_worker_stats;

/* Take replay jobs from the fleet until opts->stop says so (or max_jobs),
 * with `cache` (a store open for writing) holding the traces and blobs
 * fetched. A job whose trace cannot be fetched or replayed gets an ERROR
 * result naming why; only trouble with the fleet itself ends the loop.
 * Returns 0 when stopped, DEJA_EIO, or the cache store's error. */
DEJA_API int deja_fleet_work(deja_fleet *fleet, deja_store *cache,
                             const deja_worker_options *opts, deja_worker_stats *out);

/* OTLP out: traces as OpenTelemetry spans, for Phoenix, Langfuse, Jaeger or
 * any OpenTelemetry Collector. One span per trace: the trace id is the
 * span's trace id (a step of a pipeline takes its parent's, with the
 * parent's span as parent), the last 8 id bytes its span id, kind CLIENT,
 * named "<gen_ai.operation.name> <model>". Attributes follow the GenAI
 * semantic conventions where they apply: gen_ai.operation.name (the tag of
 * that name, else text_completion for text in and out, else inference),
 * gen_ai.provider.name (from a tag of that name), gen_ai.request.model,
 * gen_ai.request.<param> for temperature, max_tokens, top_p, top_k, seed,
 * frequency_penalty, presence_penalty, gen_ai.usage.input_tokens and
 * output_tokens (from params or tags input_tokens/prompt_tokens,
 * output_tokens/completion_tokens), and with `messages`
 * gen_ai.input.messages / gen_ai.output.messages (the text tensors, as the
 * conventions' JSON). deja's own: deja.trace.id, deja.model.version,
 * deja.param.<k>, deja.tag.<k>, deja.seed.<name>, deja.env.digest, and per
 * tensor deja.<input|output>.<name>.dtype, .shape, .size, .digest (XXH3-128:
 * the blob digest of a large payload) and .content only up to `inline_max`
 * bytes (text as a string, else bytes). The status is OK or ERROR with the
 * error text. */
typedef struct deja_otlp_options {
    unsigned version;
    const char *url;          /* OTLP/HTTP endpoint; a URL with no path gets /v1/traces */
    const char *file;         /* or: write the request body (one ExportTraceServiceRequest
                                 with every span) to this file, replaced atomically */
    const char *service_name; /* resource service.name; NULL for "deja" */
    size_t inline_max;        /* content inline up to this many bytes; 0 for 4096 */
    int messages;             /* opt in: the GenAI message attributes (full text) */
    unsigned batch;           /* spans per HTTP request; 0 for 512 */
    unsigned timeout_ms;      /* per HTTP request; 0 for 10000 */
} deja_otlp_options;

#define DEJA_OTLP_OPTIONS_VERSION 1
#define DEJA_OTLP_OPTIONS_INIT {DEJA_OTLP_OPTIONS_VERSION, NULL, NULL, NULL, 0, 0, 0, 0}

typedef struct deja_otlp_stats {
    uint64_t spans;
    uint64_t requests; /* HTTP requests answered 2xx (0 for a file) */
    uint64_t bytes;    /* request body bytes */
} deja_otlp_stats;

/* Send the `n` traces `ids` of `store` as OTLP spans to opts->url
 * (protobuf bodies, Content-Type application/x-protobuf, libcurl), or write
 * them to opts->file (exactly one of the two). Returns 0, DEJA_EINVAL (bad
 * options), DEJA_EIO (the endpoint answered other than 2xx, or was
 * unreachable: the message gives the HTTP status and the start of the
 * answer; spans of earlier requests were delivered), or the store's error. */
DEJA_API int deja_otlp_export(deja_store *store, const deja_id *ids, size_t n,
                              const deja_otlp_options *opts, deja_otlp_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* DEJA_H */
