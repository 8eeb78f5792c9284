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
 *   5. diff, replay and bisect.
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

#define DEJA_VERSION_STRING "0.1.0"

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
} deja_tracer_options;

#define DEJA_TRACER_OPTIONS_VERSION 1
#define DEJA_TRACER_OPTIONS_INIT                                                                 \
    {                                                                                            \
        DEJA_TRACER_OPTIONS_VERSION, 1.0, (size_t)64 << 20, 4096, DEJA_QUEUE_BLOCK, 1024, 100, \
            NULL, NULL                                                                           \
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

/* Begin a span: one inference of model `name` at `version`. The span
 * belongs to the calling thread until deja_span_end() or deja_span_abort().
 * Its id and start time are taken now. */
DEJA_API int deja_span_begin(deja_span **out, deja_tracer *tracer, const char *name,
                             const char *version);

/* The id of the span; valid until the span ends. */
DEJA_API const deja_id *deja_span_id(const deja_span *span);

/* Set the digest of the model's weights (any length up to 64 bytes). */
DEJA_API int deja_span_model_digest(deja_span *span, const void *digest, size_t size);

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
};

/* Open the store at `path` (a directory). With DEJA_STORE_READONLY a
 * missing store is DEJA_ENOTFOUND and nothing is created. A store written by
 * a newer format version is DEJA_EVERSION. */
DEJA_API int deja_store_open(deja_store **out, const char *path, int flags);

/* Close the store. Accepts NULL. */
DEJA_API void deja_store_close(deja_store *store);

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
} deja_filter;

#define DEJA_FILTER_VERSION 1
#define DEJA_FILTER_INIT {DEJA_FILTER_VERSION, NULL, NULL, 0, 0, -1, NULL, 0, 0}

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

/* Check that every record decodes, every blob matches its digest, and every
 * reference (blob, environment, index entry) resolves. Each problem is
 * passed to `problem` (may be NULL) as one line. Returns the number of
 * problems found (0 when sound), or a negative code if the check itself
 * could not run. */
typedef void (*deja_problem_cb)(const char *line, void *payload);
DEJA_API int deja_store_verify(deja_store *store, deja_problem_cb problem, void *payload);

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
 * up as lib<name>.so or <name>.so in $DEJA_PLUGIN_PATH and next to the deja
 * library. Errors: DEJA_ENOTFOUND (no such file), DEJA_EINVAL (not a deja
 * plugin), DEJA_EVERSION (another ABI version), DEJA_EMODEL (open failed). */
DEJA_API int deja_model_load(deja_model **out, const char *spec);

DEJA_API void deja_model_free(deja_model *model);

DEJA_API const char *deja_model_name(const deja_model *model);
DEJA_API const char *deja_model_version(const deja_model *model);
/* The weights digest the plugin reported, else XXH3-128 of the plugin file. */
DEJA_API const uint8_t *deja_model_digest(const deja_model *model, size_t *size);
/* The spec the model was loaded from, and the plugin file's path. */
DEJA_API const char *deja_model_spec(const deja_model *model);
DEJA_API const char *deja_model_path(const deja_model *model);
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

/* The error the model set with deja_ctx_fail(), or NULL. */
DEJA_API const char *deja_ctx_error(const deja_ctx *ctx);

DEJA_API void deja_ctx_free(deja_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif /* DEJA_H */
