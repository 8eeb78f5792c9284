/*
 * deja_model.h -- the model plugin ABI. Tiny and stable.
 *
 * A model plugin is a shared object that exports one function:
 *
 *   const deja_model_plugin *deja_model_entry(void);
 *
 * returning a static description: the ABI version it was built against, the
 * model's name and version, and three functions. deja checks abi_version
 * when it loads the plugin: it loads plugins built against any version from
 * DEJA_MODEL_ABI_MIN to its own DEJA_MODEL_ABI_VERSION and refuses others
 * (so a plugin that uses what ABI 2 added is refused by a host that only
 * speaks ABI 1, instead of reading past the host's tables).
 *
 * ABI history (only ever appended to):
 *   1  the plugin description, deja_model_info's digest, the ctx table up
 *      to fail.
 *   2  deja_model_info.host (digests and library versions for open), the
 *      ctx's note, param_count, param_at, rng_fill and output_kind (what an
 *      output is), a ctx safe to call from the threads of one inference.
 *   3  the ctx's checkpoint (named intermediate values, compared on replay).
 *      A plugin built against ABI 3 still loads in an ABI 2 host when it
 *      only calls deja_ctx_checkpoint() through its wrapper (which tests
 *      the table's size), but hosts check abi_version, so build against the
 *      oldest header you need.
 *
 * The model reaches the world only through its deja_ctx: it reads inputs
 * and params, takes seeds, draws from named RNG streams and reads the clock
 * through the ctx, and writes its outputs there. When recording, deja keeps
 * every value the model consumed; when replaying, it feeds the very same
 * values back, so a model that follows this rule replays bit for bit.
 *
 * The plugin links against nothing of deja's: the ctx functions below are
 * inline wrappers over a table the host supplies. Adding a function appends
 * to that table; nothing is ever removed or reordered.
 *
 * Threads: one inference may call its ctx from several threads (ABI 2: the
 * host serialises the calls). But the order in which two threads draw from
 * ONE stream is not reproducible, so give each thread its own stream
 * (deja_ctx_rng_u64(ctx, "noise.0"), "noise.1", ... or the helper
 * deja_ctx_rng_u64_part) and each thread's draws replay exactly.
 */
#ifndef DEJA_MODEL_H
#define DEJA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "deja.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DEJA_MODEL_ABI_VERSION 3
/* The oldest plugin ABI this header's host still loads. */
#define DEJA_MODEL_ABI_MIN 1

/* The plugin may serve several threads with one instance. */
#define DEJA_MODEL_THREAD_SAFE 1u

typedef struct deja_model_info deja_model_info;

/* What the host offers open() (ABI 2): digests without linking xxHash, and
 * a way to report the libraries the model depends on. */
typedef struct deja_model_host {
    uint32_t size; /* sizeof(deja_model_host) of the host */
    /* XXH3-128 of `size` bytes at `data`, written to out[16]. */
    void (*digest)(const void *data, size_t size, uint8_t out[16]);
    /* XXH3-128 of the whole file at `path`, written to out[16]. Returns 0,
     * or -1 when the file cannot be read. */
    int (*digest_file)(const char *path, uint8_t out[16]);
    /* Report that the model depends on library `name` at `version` (e.g.
     * its inference runtime): it joins the environment recorded with each
     * trace and compared on replay. Returns 0, or -1 (bad or too many). */
    int (*library)(deja_model_info *info, const char *name, const char *version);
} deja_model_host;

/* What open() may tell the host about the loaded instance. */
struct deja_model_info {
    uint8_t digest[64]; /* digest of the weights the instance loaded */
    size_t digest_size; /* 0: the host uses the plugin file's digest */
    /* ABI 2: set by the host before open(), never NULL for a plugin built
     * against ABI 2. */
    const deja_model_host *host;
    void *host_state; /* the host's own; do not touch */
};

/* Digest the weights file at `path` as the instance's digest (ABI 2).
 * Returns 0, or -1 when it cannot be read. */
static inline int deja_model_info_weights(deja_model_info *info, const char *path)
{
    if (info->host == NULL || info->host->digest_file(path, info->digest) != 0)
        return -1;
    info->digest_size = 16;
    return 0;
}

/* Report a library the model depends on and its version (ABI 2). */
static inline int deja_model_info_library(deja_model_info *info, const char *name,
                                          const char *version)
{
    return info->host != NULL ? info->host->library(info, name, version) : -1;
}

typedef struct deja_model_plugin {
    uint32_t abi_version; /* DEJA_MODEL_ABI_VERSION */
    const char *name;     /* model name, e.g. "textgen" */
    const char *version;  /* model version, e.g. "4" */
    uint32_t flags;       /* DEJA_MODEL_THREAD_SAFE or 0 */
    /* Create an instance from `arg` (the part after ':' in PATH:ARG, or
     * NULL). On failure return non-zero and write a message into err. */
    int (*open)(const char *arg, void **instance, deja_model_info *info, char *err,
                size_t errcap);
    /* Run one inference. Return 0, or non-zero after deja_ctx_fail(). */
    int (*infer)(void *instance, deja_ctx *ctx);
    void (*close)(void *instance);
} deja_model_plugin;

typedef const deja_model_plugin *(*deja_model_entry_fn)(void);
#define DEJA_MODEL_ENTRY "deja_model_entry"

/* The host's table behind deja_ctx. Plugins use the inline wrappers. */
typedef struct deja_ctx_vtable {
    uint32_t size; /* sizeof(deja_ctx_vtable) of the host */
    const deja_tensor *(*input)(deja_ctx *ctx, const char *name);
    const deja_tensor *(*input_at)(deja_ctx *ctx, size_t index);
    size_t (*input_count)(deja_ctx *ctx);
    const deja_param *(*param)(deja_ctx *ctx, const char *key);
    uint64_t (*seed)(deja_ctx *ctx, const char *name);
    uint64_t (*rng_u64)(deja_ctx *ctx, const char *stream);
    int64_t (*now_ns)(deja_ctx *ctx);
    int (*output)(deja_ctx *ctx, const deja_tensor *tensor);
    void (*fail)(deja_ctx *ctx, const char *message);
    /* Appended: hosts older than this have a smaller `size`. */
    void (*note)(deja_ctx *ctx, const char *message);
    size_t (*param_count)(deja_ctx *ctx);
    const deja_param *(*param_at)(deja_ctx *ctx, size_t index);
    void (*rng_fill)(deja_ctx *ctx, const char *stream, uint64_t *out, size_t n);
    /* ABI 2 */
    int (*output_kind)(deja_ctx *ctx, const char *name, deja_output_kind kind);
    /* ABI 3 */
    int (*checkpoint)(deja_ctx *ctx, const deja_tensor *tensor);
} deja_ctx_vtable;

/* Non-zero when the host's table has the member `m`. */
#define DEJA_CTX_HAS(ctx, m)                                                                     \
    ((ctx)->vt->size >= offsetof(deja_ctx_vtable, m) + sizeof((ctx)->vt->m) && (ctx)->vt->m)

/* Every ctx starts with its table. */
struct deja_ctx {
    const deja_ctx_vtable *vt;
};

/* The input called `name`, or NULL. */
static inline const deja_tensor *deja_ctx_input(deja_ctx *ctx, const char *name)
{
    return ctx->vt->input(ctx, name);
}

static inline size_t deja_ctx_input_count(deja_ctx *ctx)
{
    return ctx->vt->input_count(ctx);
}

static inline const deja_tensor *deja_ctx_input_at(deja_ctx *ctx, size_t index)
{
    return ctx->vt->input_at(ctx, index);
}

/* The param called `key`, or NULL. */
static inline const deja_param *deja_ctx_param(deja_ctx *ctx, const char *key)
{
    return ctx->vt->param(ctx, key);
}

/* The numeric param `key`, or `dflt` when absent or not a number. */
static inline double deja_ctx_param_num(deja_ctx *ctx, const char *key, double dflt)
{
    const deja_param *p = ctx->vt->param(ctx, key);
    return (p && p->kind == DEJA_PARAM_NUM) ? p->num : dflt;
}

/* How many params there are (0 from a host too old to tell). */
static inline size_t deja_ctx_param_count(deja_ctx *ctx)
{
    return DEJA_CTX_HAS(ctx, param_count) ? ctx->vt->param_count(ctx) : 0;
}

/* Param number `index`, or NULL past the end. */
static inline const deja_param *deja_ctx_param_at(deja_ctx *ctx, size_t index)
{
    return DEJA_CTX_HAS(ctx, param_at) ? ctx->vt->param_at(ctx, index) : NULL;
}

/* A seed for the model's own use, recorded under `name` (replayed as is). */
static inline uint64_t deja_ctx_seed(deja_ctx *ctx, const char *name)
{
    return ctx->vt->seed(ctx, name);
}

/* The next 64 random bits of the named stream; every draw is recorded. */
static inline uint64_t deja_ctx_rng_u64(deja_ctx *ctx, const char *stream)
{
    return ctx->vt->rng_u64(ctx, stream);
}

/* The next `n` draws of the named stream into `out`, as `n` calls of
 * deja_ctx_rng_u64() would give them, but asked for at once (one round trip
 * for a model in another process). */
static inline void deja_ctx_rng_fill(deja_ctx *ctx, const char *stream, uint64_t *out, size_t n)
{
    if (DEJA_CTX_HAS(ctx, rng_fill)) {
        ctx->vt->rng_fill(ctx, stream, out, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = ctx->vt->rng_u64(ctx, stream);
}

/* A uniform double in [0, 1) from the named stream (53 bits of a draw). */
static inline double deja_ctx_rng_f64(deja_ctx *ctx, const char *stream)
{
    return (double)(ctx->vt->rng_u64(ctx, stream) >> 11) * (1.0 / 9007199254740992.0);
}

/* The current Unix time in nanoseconds; recorded and replayed. */
static inline int64_t deja_ctx_now(deja_ctx *ctx)
{
    return ctx->vt->now_ns(ctx);
}

/* Write an output tensor; its bytes are copied. */
static inline int deja_ctx_output(deja_ctx *ctx, const deja_tensor *tensor)
{
    return ctx->vt->output(ctx, tensor);
}

/* Write UTF-8 text as an output. */
static inline int deja_ctx_output_text(deja_ctx *ctx, const char *name, const char *text,
                                       size_t len)
{
    uint64_t shape[1] = {len};
    deja_tensor t = {name, DEJA_UTF8, 1, shape, text, len};
    return ctx->vt->output(ctx, &t);
}

/* The next 64 random bits of part `part` of the named stream: its own
 * stream "<stream>.<part>", for the threads of one inference (one part
 * per thread keeps every thread's draws reproducible). */
static inline uint64_t deja_ctx_rng_u64_part(deja_ctx *ctx, const char *stream, unsigned part)
{
    char name[256];
    size_t n = 0;
    char digits[16];
    size_t nd = 0;
    while (stream[n] != '\0' && n < sizeof(name) - 18) {
        name[n] = stream[n];
        n++;
    }
    do {
        digits[nd++] = (char)('0' + part % 10);
        part /= 10;
    } while (part != 0);
    name[n++] = '.';
    while (nd > 0)
        name[n++] = digits[--nd];
    name[n] = '\0';
    return ctx->vt->rng_u64(ctx, name);
}

/* Declare what output `name` is (ABI 2; see deja_output_kind in deja.h):
 * recorded with the trace, and the diff compares the output accordingly.
 * Returns 0, or -1 when the host predates ABI 2. */
static inline int deja_ctx_output_kind(deja_ctx *ctx, const char *name, deja_output_kind kind)
{
    if (ctx->vt->size < offsetof(deja_ctx_vtable, output_kind) + sizeof(ctx->vt->output_kind))
        return -1;
    return ctx->vt->output_kind(ctx, name, kind);
}

/* Write an output and declare its kind in one call. */
static inline int deja_ctx_output_as(deja_ctx *ctx, const deja_tensor *tensor,
                                     deja_output_kind kind)
{
    int rc = deja_ctx_output_kind(ctx, tensor->name, kind);
    return rc == 0 ? ctx->vt->output(ctx, tensor) : rc;
}

/* What deja_ctx_checkpoint() returns when the host asks the model to stop
 * the inference (a replay with --stop-at-first found the first divergent
 * checkpoint): return from infer (0 is fine), nothing after it is used. */
#define DEJA_CHECKPOINT_STOP 1

/* Record `tensor` as the next checkpoint of this inference (ABI 3): a
 * named intermediate value (an embedding, a layer's output, the logits and
 * the sampled token of step k). The run decides which are kept (`deja run
 * --checkpoints`; none by default, and then the call costs a test); a
 * replay compares them in order with the recorded ones and names the first
 * that differs. Returns 0, DEJA_CHECKPOINT_STOP (stop the inference now),
 * or a negative code (a malformed tensor). Hosts older than ABI 3 ignore
 * it (0). */
static inline int deja_ctx_checkpoint(deja_ctx *ctx, const deja_tensor *tensor)
{
    if (!DEJA_CTX_HAS(ctx, checkpoint))
        return 0;
    return ctx->vt->checkpoint(ctx, tensor);
}

/* Mark the inference failed with `message`; infer then returns non-zero. */
static inline void deja_ctx_fail(deja_ctx *ctx, const char *message)
{
    ctx->vt->fail(ctx, message);
}

/* Tell the host something about this inference that may explain a
 * difference from a recording (an endpoint's changed system_fingerprint);
 * a replay reports it with the likely causes of a divergence. Ignored
 * when recording, and by hosts that predate it. */
static inline void deja_ctx_note(deja_ctx *ctx, const char *message)
{
    if (ctx->vt->size >= offsetof(deja_ctx_vtable, note) + sizeof ctx->vt->note &&
        ctx->vt->note) {
        ctx->vt->note(ctx, message);
    }
}

/* ------------------------------------------------------------------------
 * Serving a model from another process: the runner side of `exec:`
 *
 * `deja replay --model 'exec:COMMAND ARGS...'` starts COMMAND and speaks
 * the runner protocol with it over its stdin and stdout (framed protobuf,
 * see proto/deja.proto and the README). A program that links libdeja
 * becomes such a runner by handing any plugin table to deja_runner_serve()
 * (or deja_runner_main()): the very same table a C plugin exports, so one
 * model can be a plugin and a runner. Inside infer, the ctx is a proxy:
 * inputs and params come from the host's request; every seed, RNG draw and
 * clock read is asked of the host, which records it (deja run) or feeds back
 * the recorded one (deja replay); outputs and the failure message go back
 * with the result. These two functions, unlike the rest of this header,
 * live in libdeja.
 *
 *   static const deja_model_plugin plugin = {DEJA_MODEL_ABI_VERSION, "echo", "1", 0,
 *                                            NULL, echo_infer, NULL};
 *   int main(int argc, char **argv) { return deja_runner_main(&plugin, argc, argv); }
 * ---------------------------------------------------------------------- */

/* The runner protocol version this libdeja speaks. */
#define DEJA_RUNNER_PROTOCOL 1

/* How a runner introduces itself beyond the plugin table. */
typedef struct deja_runner_options {
    unsigned version;
    const deja_kv *libs; /* library name -> version (e.g. "torch" -> "2.1.0"), sent in the hello */
    size_t nlibs;
} deja_runner_options;

#define DEJA_RUNNER_OPTIONS_VERSION 1
#define DEJA_RUNNER_OPTIONS_INIT {DEJA_RUNNER_OPTIONS_VERSION, NULL, 0}

/* Serve `plugin` over the runner protocol: read requests from `in_fd`,
 * write answers to `out_fd`, until the host closes `in_fd`. First calls
 * plugin->open(arg, ...) (when not NULL) and sends the hello with the
 * plugin's name, version, flags and the digest open reported (none when
 * open leaves digest_size 0); if open fails, sends its message in the hello
 * and returns DEJA_EMODEL. Then, per request, calls plugin->infer with a
 * proxy ctx and sends its outputs, or the failure (a non-zero return or
 * deja_ctx_fail()), as the result; a failing inference does not end the
 * service. infer runs on the calling thread, one request at a time. Nothing
 * is ever written to stdout unless `out_fd` is 1, so a runner should move
 * its stdout away first (deja_runner_main does). Calls plugin->close at
 * the end. `opts` may be NULL. Returns 0 when the host closed the stream
 * between requests, DEJA_EIO when a read or write failed, DEJA_ECORRUPT
 * when the host sent something malformed (with the byte offset in
 * deja_error_last()), DEJA_EMODEL when open failed, DEJA_EINVAL for a bad
 * plugin table (nothing is sent then). */
DEJA_API int deja_runner_serve(const deja_model_plugin *plugin, const char *arg, int in_fd,
                               int out_fd, const deja_runner_options *opts);

/* A whole runner's main(): moves the protocol off stdout (fd 1 then writes
 * to stderr, so a stray printf cannot corrupt the stream), serves `plugin`
 * on stdin with argv[1] as its ARG (NULL when argc < 2), and returns the
 * exit status: 0 when the host closed the stream, else 2 after one line on
 * stderr naming the problem. */
DEJA_API int deja_runner_main(const deja_model_plugin *plugin, int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif /* DEJA_MODEL_H */
