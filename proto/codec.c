/*
 * proto/codec.c -- encode and decode Trace and Environment records.
 *
 * The only file that touches the generated protobuf-c types. Encoding
 * builds the protobuf-c message on the stack (or in one heap arena for very
 * large traces) with pointers into the caller's structs, so a trace costs
 * one pack and no per-field allocation. Environments and manifests are
 * decoded by unpacking with protobuf-c, checking every field a reader relies
 * on, and wrapping the message in a private struct whose first member is the
 * public struct. Traces, read far more often, are decoded by hand into one
 * allocation: proto/trace_decode.c.
 */
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/codec.h"
#include "proto/deja.pb-c.h"
#include "core/error.h"
#include "core/limits.h"

/* Draws per trace, at most (core/limits.h: the same bound as recording). */
#define MAX_DRAWS ((uint64_t)DEJA__MAX_DRAWS)

/* Bytes of protobuf-c message structs that encoding keeps on the stack;
 * beyond this one heap arena is used. */
#define STACK_ARENA 8192

/* Upper bound on any element count handed to the encoder, so that sizing
 * the arena cannot overflow. */
#define MAX_COUNT ((size_t)1 << 24)

#define ALIGN_UP(n) (((n) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1))

/* ------------------------------------------------------------------------
 * Shared checks
 * ---------------------------------------------------------------------- */

/* Return `s` as the non-const char * protobuf-c wants, "" for NULL. The
 * packer never writes through it. */
static char *pb_str(const char *s)
{
    return (char *)(s ? s : "");
}

/* Write "[3,4]" for `shape` into `out` (truncated with "..." if long). */
static void format_shape(char *out, size_t cap, const uint64_t *shape, size_t ndim)
{
    size_t used = 0;
    int n = snprintf(out, cap, "[");

    used = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < ndim && used < cap; i++) {
        n = snprintf(out + used, cap - used, "%s%llu", i ? "," : "", (unsigned long long)shape[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (used < cap)
        snprintf(out + used, cap - used, "]");
    else if (cap > 4)
        memcpy(out + cap - 4, "...", 4);
}

/* Check that the shape of tensor `name` agrees with its dtype and payload
 * size. Fixed-size dtypes need product(shape) * element size == size
 * (with no overflow); bytes and utf8 are free-form. Returns 0, or `code`
 * with a message naming the tensor. */
int deja__tensor_shape_check(int code, const char *what, const char *name, deja_dtype dtype,
                             const uint64_t *shape, size_t ndim, uint64_t size)
{
    const char *dname = deja_dtype_name(dtype);
    const size_t esize = deja_dtype_size(dtype);
    uint64_t bytes = esize;
    char sh[128];

    if (dname == NULL)
        return deja__error_set(code, "%stensor '%s': unknown dtype %d", what, name, (int)dtype);
    if (ndim > DEJA_MAX_DIMS)
        return deja__error_set(code, "%stensor '%s': %zu dimensions (at most %d)", what, name, ndim,
                               DEJA_MAX_DIMS);
    if (ndim > 0 && shape == NULL)
        return deja__error_set(code, "%stensor '%s': %zu dimensions but no shape", what, name,
                               ndim);
    if (dtype == DEJA_BYTES || dtype == DEJA_UTF8)
        return 0;
    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] != 0 && bytes > UINT64_MAX / shape[i]) {
            format_shape(sh, sizeof sh, shape, ndim);
            return deja__error_set(code, "%stensor '%s': shape %s of %s overflows", what, name, sh,
                                   dname);
        }
        bytes *= shape[i];
    }
    if (bytes != size) {
        format_shape(sh, sizeof sh, shape, ndim);
        return deja__error_set(code,
                               "%stensor '%s': shape %s holds %llu bytes of %s but the payload "
                               "is %llu",
                               what, name, sh, (unsigned long long)bytes, dname,
                               (unsigned long long)size);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Trace encoding
 * ---------------------------------------------------------------------- */

/* Take `n` elements of `size` bytes from the arena cursor `*p`. */
static void *carve(uint8_t **p, size_t n, size_t size)
{
    void *r = *p;

    *p += ALIGN_UP(n * size);
    return r;
}

/* Fill `dst` from tensor `src` (number `index` on side `side`). A payload
 * larger than `inline_max` goes through `put` (when not NULL), its digest
 * written to `dig`, which must outlive the pack. Returns 0 or the error of
 * the check or of `put`. */
static int encode_tensor(const deja_tensor *src, const char *side, size_t index,
                         Deja__Pb__Tensor *dst, deja_digest *dig, size_t inline_max,
                         deja__blob_put_fn put, void *payload)
{
    const char *name = src->name ? src->name : "";
    int rc;

    deja__pb__tensor__init(dst);
    if (src->name == NULL)
        return deja__error_set(DEJA_EINVAL, "%s %zu has no name", side, index);
    rc = deja__tensor_shape_check(DEJA_EINVAL, "", name, src->dtype, src->shape, src->ndim, src->size);
    if (rc != 0)
        return rc;
    if (src->size > 0 && src->data == NULL)
        return deja__error_set(DEJA_EINVAL, "tensor '%s': %zu bytes but no data", name, src->size);
    dst->name = pb_str(name);
    dst->dtype = (Deja__Pb__DType)src->dtype;
    dst->n_shape = src->ndim;
    dst->shape = (uint64_t *)src->shape;
    dst->size = src->size;
    if (put != NULL && src->size > inline_max) {
        rc = put(src->data, src->size, dig, payload);
        if (rc != 0)
            return deja__error_wrap(rc, "tensor '%s': ", name);
        dst->blob.data = dig->bytes;
        dst->blob.len = sizeof dig->bytes;
    } else {
        dst->data.data = (uint8_t *)src->data;
        dst->data.len = src->size;
    }
    return 0;
}

/* Encode `trace` as a deja.pb.Trace into `out`, replacing its content.
 * Tensors larger than `inline_max` are handed to `put` (when not NULL) and
 * stored as digest and size. The message points into `trace` while it is
 * packed; nothing is allocated except, for traces with very many fields,
 * one arena. Returns 0, DEJA_EINVAL for an inconsistent trace (with a
 * message naming the field), DEJA_ENOMEM, or the error of `put`. */
int deja__trace_encode(const deja_trace *trace, size_t inline_max, deja__blob_put_fn put,
                       void *payload, deja__buf *out)
{
    alignas(max_align_t) uint8_t stack[STACK_ARENA];
    Deja__Pb__Trace msg = DEJA__PB__TRACE__INIT;
    Deja__Pb__Model model = DEJA__PB__MODEL__INIT;
    uint8_t *heap = NULL;
    uint8_t *p;
    size_t nt;
    size_t need;
    size_t len;
    size_t written;
    Deja__Pb__Tensor *tensors;
    Deja__Pb__Tensor **tptrs;
    deja_digest *digests;
    Deja__Pb__Param *params;
    Deja__Pb__Param **pptrs;
    Deja__Pb__Seed *seeds;
    Deja__Pb__Seed **sptrs;
    Deja__Pb__RngStream *rngs;
    Deja__Pb__RngStream **rptrs;
    Deja__Pb__Tag *tags;
    Deja__Pb__Tag **gptrs;
    Deja__Pb__OutputKind *kinds;
    Deja__Pb__OutputKind **kptrs;
    Deja__Pb__Checkpoint *cks;
    Deja__Pb__Checkpoint **ckptrs;
    Deja__Pb__Tensor *cktensors;
    int rc = 0;

    if (trace == NULL || out == NULL) {
        rc = deja__error_set(DEJA_EINVAL, "no trace to encode");
        goto cleanup;
    }
    out->size = 0;
    if (trace->ninputs > MAX_COUNT || trace->noutputs > MAX_COUNT || trace->nparams > MAX_COUNT ||
        trace->nseeds > MAX_COUNT || trace->nrng > MAX_COUNT || trace->ntags > MAX_COUNT ||
        trace->noutput_kinds > MAX_COUNT || trace->ncheckpoints > MAX_COUNT) {
        rc = deja__error_set(DEJA_ENOMEM, "trace has more than %zu elements in a list", MAX_COUNT);
        goto cleanup;
    }
    if ((trace->ninputs && !trace->inputs) || (trace->noutputs && !trace->outputs) ||
        (trace->nparams && !trace->params) || (trace->nseeds && !trace->seeds) ||
        (trace->nrng && !trace->rng) || (trace->ntags && !trace->tags) ||
        (trace->nclock && !trace->clock_ns) || (trace->model_digest_size && !trace->model_digest) ||
        (trace->noutput_kinds && !trace->output_kinds) ||
        (trace->ncheckpoints && !trace->checkpoints)) {
        rc = deja__error_set(DEJA_EINVAL, "trace has a count without its array");
        goto cleanup;
    }
    if (trace->status != DEJA_STATUS_OK && trace->status != DEJA_STATUS_ERROR) {
        rc = deja__error_set(DEJA_EINVAL, "trace has unknown status %d", (int)trace->status);
        goto cleanup;
    }

    nt = trace->ninputs + trace->noutputs;
    need = ALIGN_UP(nt * sizeof *tensors) + ALIGN_UP(nt * sizeof *tptrs) +
           ALIGN_UP(nt * sizeof *digests) + ALIGN_UP(trace->nparams * sizeof *params) +
           ALIGN_UP(trace->nparams * sizeof *pptrs) + ALIGN_UP(trace->nseeds * sizeof *seeds) +
           ALIGN_UP(trace->nseeds * sizeof *sptrs) + ALIGN_UP(trace->nrng * sizeof *rngs) +
           ALIGN_UP(trace->nrng * sizeof *rptrs) + ALIGN_UP(trace->ntags * sizeof *tags) +
           ALIGN_UP(trace->ntags * sizeof *gptrs) + ALIGN_UP(trace->noutput_kinds * sizeof *kinds) +
           ALIGN_UP(trace->noutput_kinds * sizeof *kptrs) +
           ALIGN_UP(trace->ncheckpoints * sizeof *cks) +
           ALIGN_UP(trace->ncheckpoints * sizeof *ckptrs) +
           ALIGN_UP(trace->ncheckpoints * sizeof *cktensors);
    if (need <= sizeof stack) {
        p = stack;
    } else {
        heap = malloc(need);
        if (heap == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory encoding a trace (%zu bytes)", need);
            goto cleanup;
        }
        p = heap;
    }
    tensors = carve(&p, nt, sizeof *tensors);
    tptrs = carve(&p, nt, sizeof *tptrs);
    digests = carve(&p, nt, sizeof *digests);
    params = carve(&p, trace->nparams, sizeof *params);
    pptrs = carve(&p, trace->nparams, sizeof *pptrs);
    seeds = carve(&p, trace->nseeds, sizeof *seeds);
    sptrs = carve(&p, trace->nseeds, sizeof *sptrs);
    rngs = carve(&p, trace->nrng, sizeof *rngs);
    rptrs = carve(&p, trace->nrng, sizeof *rptrs);
    tags = carve(&p, trace->ntags, sizeof *tags);
    gptrs = carve(&p, trace->ntags, sizeof *gptrs);
    kinds = carve(&p, trace->noutput_kinds, sizeof *kinds);
    kptrs = carve(&p, trace->noutput_kinds, sizeof *kptrs);
    cks = carve(&p, trace->ncheckpoints, sizeof *cks);
    ckptrs = carve(&p, trace->ncheckpoints, sizeof *ckptrs);
    cktensors = carve(&p, trace->ncheckpoints, sizeof *cktensors);

    msg.id.data = (uint8_t *)trace->id.bytes;
    msg.id.len = sizeof trace->id.bytes;
    msg.start_ns = trace->start_ns;
    msg.duration_ns = trace->duration_ns;
    model.name = pb_str(trace->model_name);
    model.version = pb_str(trace->model_version);
    model.digest.data = (uint8_t *)trace->model_digest;
    model.digest.len = trace->model_digest_size;
    model.has_config = trace->has_model_config != 0;
    model.plugin = pb_str(trace->model_plugin);
    model.config = pb_str(trace->model_config);
    msg.model = &model;
    for (size_t i = 0; i < trace->noutput_kinds; i++) {
        deja__pb__output_kind__init(&kinds[i]);
        kinds[i].name = pb_str(trace->output_kinds[i].name);
        kinds[i].kind = (uint32_t)trace->output_kinds[i].kind;
        kptrs[i] = &kinds[i];
    }
    msg.n_output_kinds = trace->noutput_kinds;
    msg.output_kinds = kptrs;

    for (size_t i = 0; i < nt; i++) {
        const int is_in = i < trace->ninputs;
        const size_t k = is_in ? i : i - trace->ninputs;
        const deja_tensor *src = is_in ? &trace->inputs[k] : &trace->outputs[k];

        rc = encode_tensor(src, is_in ? "input" : "output", k, &tensors[i], &digests[i], inline_max,
                           put, payload);
        if (rc != 0)
            goto cleanup;
        tptrs[i] = &tensors[i];
    }
    msg.n_inputs = trace->ninputs;
    msg.inputs = tptrs;
    msg.n_outputs = trace->noutputs;
    msg.outputs = tptrs + trace->ninputs;

    for (size_t i = 0; i < trace->ncheckpoints; i++) {
        const deja_checkpoint *src = &trace->checkpoints[i];
        deja_tensor view = src->tensor;

        deja__pb__checkpoint__init(&cks[i]);
        if (src->digest_only) {
            /* The shape and size describe the bytes, which are not kept. */
            deja__pb__tensor__init(&cktensors[i]);
            rc = deja__tensor_shape_check(DEJA_EINVAL, "checkpoint ", pb_str(view.name), view.dtype,
                                    view.shape, view.ndim, view.size);
            if (rc == 0 && view.name == NULL)
                rc = deja__error_set(DEJA_EINVAL, "checkpoint %zu has no name", i);
            cktensors[i].name = pb_str(view.name);
            cktensors[i].dtype = (Deja__Pb__DType)view.dtype;
            cktensors[i].n_shape = view.ndim;
            cktensors[i].shape = (uint64_t *)view.shape;
            cktensors[i].size = view.size;
            cks[i].digest_only = 1;
            cks[i].digest.data = (uint8_t *)src->digest.bytes;
            cks[i].digest.len = sizeof src->digest.bytes;
            cks[i].nan = src->stats.nnan;
            cks[i].inf = src->stats.ninf;
            cks[i].min = src->stats.min;
            cks[i].max = src->stats.max;
            cks[i].mean = src->stats.mean;
        } else {
            /* Always inline: checkpoints are bounded and never blobs. */
            rc = encode_tensor(&view, "checkpoint", i, &cktensors[i], NULL, 0, NULL, NULL);
        }
        if (rc != 0)
            goto cleanup;
        cks[i].tensor = &cktensors[i];
        ckptrs[i] = &cks[i];
    }
    msg.n_checkpoints = trace->ncheckpoints;
    msg.checkpoints = ckptrs;
    msg.checkpoint_select = pb_str(trace->checkpoint_select);

    for (size_t i = 0; i < trace->nparams; i++) {
        const deja_param *src = &trace->params[i];
        Deja__Pb__Param *dst = &params[i];

        deja__pb__param__init(dst);
        dst->key = pb_str(src->key);
        switch (src->kind) {
        case DEJA_PARAM_NUM:
            dst->value_case = DEJA__PB__PARAM__VALUE_NUM;
            dst->num = src->num;
            break;
        case DEJA_PARAM_STR:
            dst->value_case = DEJA__PB__PARAM__VALUE_STR;
            dst->str = pb_str(src->str);
            break;
        case DEJA_PARAM_BOOL:
            dst->value_case = DEJA__PB__PARAM__VALUE_FLAG;
            dst->flag = src->flag != 0;
            break;
        default:
            rc = deja__error_set(DEJA_EINVAL, "param '%s': unknown kind %d", dst->key,
                                 (int)src->kind);
            goto cleanup;
        }
        pptrs[i] = dst;
    }
    msg.n_params = trace->nparams;
    msg.params = pptrs;

    for (size_t i = 0; i < trace->nseeds; i++) {
        deja__pb__seed__init(&seeds[i]);
        seeds[i].name = pb_str(trace->seeds[i].name);
        seeds[i].value = trace->seeds[i].value;
        sptrs[i] = &seeds[i];
    }
    msg.n_seeds = trace->nseeds;
    msg.seeds = sptrs;

    for (size_t i = 0; i < trace->nrng; i++) {
        const deja_rng_stream *src = &trace->rng[i];

        if (src->ndraws > 0 && src->draws == NULL) {
            rc = deja__error_set(DEJA_EINVAL, "rng stream '%s': %zu draws but no array",
                                 pb_str(src->name), src->ndraws);
            goto cleanup;
        }
        deja__pb__rng_stream__init(&rngs[i]);
        rngs[i].name = pb_str(src->name);
        rngs[i].seed = src->seed;
        if (deja__rng_is_generated(src->seed, src->draws, src->ndraws)) {
            rngs[i].count = src->ndraws; /* implied by the seed: store the count only */
        } else {
            rngs[i].n_draws = src->ndraws;
            rngs[i].draws = (uint64_t *)src->draws;
        }
        rptrs[i] = &rngs[i];
    }
    msg.n_rng = trace->nrng;
    msg.rng = rptrs;
    {
        uint64_t all = 0;
        for (size_t i = 0; i < trace->nrng; i++)
            all += trace->rng[i].ndraws;
        if (all > MAX_DRAWS) {
            rc = deja__error_set(DEJA_EINVAL, "trace has %llu rng draws, more than the %llu a trace "
                                 "can hold", (unsigned long long)all,
                                 (unsigned long long)MAX_DRAWS);
            goto cleanup;
        }
    }

    msg.n_clock_ns = trace->nclock;
    msg.clock_ns = (int64_t *)trace->clock_ns;
    if (trace->has_env) {
        msg.env.data = (uint8_t *)trace->env.bytes;
        msg.env.len = sizeof trace->env.bytes;
    }
    msg.status = trace->status == DEJA_STATUS_ERROR ? DEJA__PB__STATUS__STATUS_ERROR
                                                    : DEJA__PB__STATUS__STATUS_OK;
    msg.error = pb_str(trace->error);

    for (size_t i = 0; i < trace->ntags; i++) {
        deja__pb__tag__init(&tags[i]);
        tags[i].key = pb_str(trace->tags[i].key);
        tags[i].value = pb_str(trace->tags[i].value);
        gptrs[i] = &tags[i];
    }
    msg.n_tags = trace->ntags;
    msg.tags = gptrs;
    if (trace->has_parent) {
        msg.parent.data = (uint8_t *)trace->parent.bytes;
        msg.parent.len = sizeof trace->parent.bytes;
    }

    len = deja__pb__trace__get_packed_size(&msg);
    rc = deja__buf_reserve(out, len);
    if (rc != 0)
        goto cleanup;
    written = deja__pb__trace__pack(&msg, out->data);
    if (written != len) {
        rc = deja__error_set(DEJA_EINVAL, "trace packed to %zu bytes, expected %zu", written, len);
        goto cleanup;
    }
    out->size = written;
cleanup:
    free(heap);
    return rc;
}

/* ------------------------------------------------------------------------
 * Shared by the decoders of environments and manifests (traces: proto/trace_decode.c)
 * ---------------------------------------------------------------------- */

static const uint8_t empty_payload[1];

/* Check a binary field that must be `want` bytes or (when `may_be_empty`)
 * empty. Returns 0 or DEJA_ECORRUPT naming `what`. */
static int check_len(const char *prefix, const char *what, size_t len, size_t want,
                     int may_be_empty)
{
    if (len == want || (may_be_empty && len == 0))
        return 0;
    return deja__error_set(DEJA_ECORRUPT, "%s%s is %zu bytes, not %s%zu", prefix, what, len,
                           may_be_empty ? "0 or " : "", want);
}

/* ------------------------------------------------------------------------
 * Environments
 * ---------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_kv(const void *a, const void *b)
{
    const Deja__Pb__KeyValue *x = *(const Deja__Pb__KeyValue *const *)a;
    const Deja__Pb__KeyValue *y = *(const Deja__Pb__KeyValue *const *)b;
    const int c = strcmp(x->key, y->key);

    return c != 0 ? c : strcmp(x->value, y->value);
}

/* Encode `env` into `out` (replacing its content) canonically: isa, vars
 * and libs are written sorted (a sorted copy; `env` is not modified) and
 * NULL strings as "", so equal environments give equal bytes. GPUs keep
 * their order (it names devices). Returns 0, DEJA_EINVAL or DEJA_ENOMEM. */
int deja__env_encode(const deja_env *env, deja__buf *out)
{
    Deja__Pb__Environment msg = DEJA__PB__ENVIRONMENT__INIT;
    uint8_t *arena = NULL;
    uint8_t *p;
    char **isa;
    char **gpus;
    Deja__Pb__KeyValue *kvs;
    Deja__Pb__KeyValue **kptrs;
    size_t nkv;
    size_t need;
    size_t len;
    size_t written;
    int rc = 0;

    if (env == NULL || out == NULL) {
        rc = deja__error_set(DEJA_EINVAL, "no environment to encode");
        goto cleanup;
    }
    out->size = 0;
    if (env->nisa > MAX_COUNT || env->ngpus > MAX_COUNT || env->nvars > MAX_COUNT ||
        env->nlibs > MAX_COUNT) {
        rc = deja__error_set(DEJA_ENOMEM, "environment has more than %zu entries in a list",
                             MAX_COUNT);
        goto cleanup;
    }
    if ((env->nisa && !env->isa) || (env->ngpus && !env->gpus) || (env->nvars && !env->vars) ||
        (env->nlibs && !env->libs)) {
        rc = deja__error_set(DEJA_EINVAL, "environment has a count without its array");
        goto cleanup;
    }
    nkv = env->nvars + env->nlibs;
    need = ALIGN_UP(env->nisa * sizeof *isa) + ALIGN_UP(env->ngpus * sizeof *gpus) +
           ALIGN_UP(nkv * sizeof *kvs) + ALIGN_UP(nkv * sizeof *kptrs) + 1;
    arena = malloc(need);
    if (arena == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory encoding an environment");
        goto cleanup;
    }
    p = arena;
    isa = carve(&p, env->nisa, sizeof *isa);
    gpus = carve(&p, env->ngpus, sizeof *gpus);
    kvs = carve(&p, nkv, sizeof *kvs);
    kptrs = carve(&p, nkv, sizeof *kptrs);

    for (size_t i = 0; i < env->nisa; i++)
        isa[i] = pb_str(env->isa[i]);
    if (env->nisa > 1)
        qsort(isa, env->nisa, sizeof *isa, cmp_str);
    for (size_t i = 0; i < env->ngpus; i++)
        gpus[i] = pb_str(env->gpus[i]);
    for (size_t i = 0; i < nkv; i++) {
        const deja_kv *src = i < env->nvars ? &env->vars[i] : &env->libs[i - env->nvars];

        deja__pb__key_value__init(&kvs[i]);
        kvs[i].key = pb_str(src->key);
        kvs[i].value = pb_str(src->value);
        kptrs[i] = &kvs[i];
    }
    if (env->nvars > 1)
        qsort(kptrs, env->nvars, sizeof *kptrs, cmp_kv);
    if (env->nlibs > 1)
        qsort(kptrs + env->nvars, env->nlibs, sizeof *kptrs, cmp_kv);

    msg.arch = pb_str(env->arch);
    msg.cpu_vendor = pb_str(env->cpu_vendor);
    msg.cpu_model = pb_str(env->cpu_model);
    msg.n_isa = env->nisa;
    msg.isa = isa;
    msg.cores = env->cores;
    msg.memory_bytes = env->memory_bytes;
    msg.os = pb_str(env->os);
    msg.kernel = pb_str(env->kernel);
    msg.libc = pb_str(env->libc);
    msg.compiler = pb_str(env->compiler);
    msg.n_gpus = env->ngpus;
    msg.gpus = gpus;
    msg.threads = env->threads;
    msg.fp_rounding = pb_str(env->fp_rounding);
    msg.ftz = env->ftz != 0;
    msg.daz = env->daz != 0;
    msg.n_vars = env->nvars;
    msg.vars = kptrs;
    msg.n_libs = env->nlibs;
    msg.libs = kptrs + env->nvars;

    len = deja__pb__environment__get_packed_size(&msg);
    rc = deja__buf_reserve(out, len);
    if (rc != 0)
        goto cleanup;
    written = deja__pb__environment__pack(&msg, out->data);
    if (written != len) {
        rc = deja__error_set(DEJA_EINVAL, "environment packed to %zu bytes, expected %zu", written,
                             len);
        goto cleanup;
    }
    out->size = written;
cleanup:
    free(arena);
    return rc;
}

/* A decoded environment: the public struct first, the unpacked message its
 * strings point into, and the key-value arrays built for it. */
typedef struct env_impl {
    deja_env pub;
    Deja__Pb__Environment *msg;
    deja_kv *kvs; /* vars then libs */
} env_impl;

/* Decode `size` bytes at `data` as a deja.pb.Environment into a new
 * environment at `*out` that owns its memory, freed with deja_env_free().
 * Strings are never NULL. Returns 0, DEJA_ECORRUPT (with a message) or
 * DEJA_ENOMEM; `*out` is set only on success. */
int deja__env_decode(const void *data, size_t size, deja_env **out)
{
    Deja__Pb__Environment *msg = NULL;
    env_impl *impl = NULL;
    deja_env *e;
    size_t nkv;
    int rc = 0;

    if (out == NULL || (data == NULL && size > 0)) {
        rc = deja__error_set(DEJA_EINVAL, "no environment record to decode");
        goto cleanup;
    }
    if (size > DEJA__MAX_RECORD) {
        rc = deja__error_set(DEJA_ECORRUPT, "environment record of %zu bytes exceeds the %zu limit",
                             size, DEJA__MAX_RECORD);
        goto cleanup;
    }
    msg = deja__pb__environment__unpack(NULL, size, size ? data : empty_payload);
    if (msg == NULL) {
        rc = deja__error_set(DEJA_ECORRUPT,
                             "environment record (%zu bytes) is not a valid protobuf", size);
        goto cleanup;
    }
    impl = calloc(1, sizeof *impl);
    nkv = msg->n_vars + msg->n_libs;
    if (impl == NULL || (nkv > 0 && (impl->kvs = calloc(nkv, sizeof *impl->kvs)) == NULL)) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory decoding an environment");
        goto cleanup;
    }
    impl->msg = msg;
    for (size_t i = 0; i < nkv; i++) {
        const Deja__Pb__KeyValue *src = i < msg->n_vars ? msg->vars[i] : msg->libs[i - msg->n_vars];

        impl->kvs[i].key = src->key ? src->key : "";
        impl->kvs[i].value = src->value ? src->value : "";
    }
    e = &impl->pub;
    e->arch = msg->arch ? msg->arch : "";
    e->cpu_vendor = msg->cpu_vendor ? msg->cpu_vendor : "";
    e->cpu_model = msg->cpu_model ? msg->cpu_model : "";
    e->isa = (const char *const *)msg->isa;
    e->nisa = msg->n_isa;
    e->cores = msg->cores;
    e->memory_bytes = msg->memory_bytes;
    e->os = msg->os ? msg->os : "";
    e->kernel = msg->kernel ? msg->kernel : "";
    e->libc = msg->libc ? msg->libc : "";
    e->compiler = msg->compiler ? msg->compiler : "";
    e->gpus = (const char *const *)msg->gpus;
    e->ngpus = msg->n_gpus;
    e->threads = msg->threads;
    e->fp_rounding = msg->fp_rounding ? msg->fp_rounding : "";
    e->ftz = msg->ftz != 0;
    e->daz = msg->daz != 0;
    e->vars = impl->kvs;
    e->nvars = msg->n_vars;
    e->libs = impl->kvs ? impl->kvs + msg->n_vars : NULL;
    e->nlibs = msg->n_libs;

    *out = e;
    impl = NULL;
    msg = NULL;
cleanup:
    if (impl != NULL) {
        free(impl->kvs);
        free(impl);
    }
    if (msg != NULL)
        deja__pb__environment__free_unpacked(msg, NULL);
    return rc;
}

/* Free an environment made by deja__env_decode() (and so by
 * deja_store_env_get()). Accepts NULL. Never pass the cached environment of
 * deja_env_current(). */
void deja_env_free(deja_env *env)
{
    env_impl *impl = (env_impl *)env;

    if (env == NULL)
        return;
    deja__pb__environment__free_unpacked(impl->msg, NULL);
    free(impl->kvs);
    free(impl);
}

/* ------------------------------------------------------------------------
 * Bundle manifests
 * ---------------------------------------------------------------------- */

/* Longest weights digest a manifest may carry, as deja_span_model_digest. */
#define MAX_MODEL_DIGEST 64

/* Encode `info` as a deja.pb.BundleManifest into `out`, replacing its
 * content. The message points into `info` while it is packed. Returns 0,
 * DEJA_EINVAL or DEJA_ENOMEM. */
int deja__manifest_encode(const deja_bundle_info *info, deja__buf *out)
{
    Deja__Pb__BundleManifest msg = DEJA__PB__BUNDLE_MANIFEST__INIT;
    Deja__Pb__BundlePlugin plugin = DEJA__PB__BUNDLE_PLUGIN__INIT;
    Deja__Pb__Model pmodel = DEJA__PB__MODEL__INIT;
    Deja__Pb__BundleModel *models = NULL;
    Deja__Pb__BundleModel **mptrs = NULL;
    size_t len;
    size_t written;
    int rc = 0;

    if (info == NULL || out == NULL || (info->nmodels > 0 && info->models == NULL)) {
        rc = deja__error_set(DEJA_EINVAL, "no manifest to encode");
        goto cleanup;
    }
    out->size = 0;
    if (info->nmodels > MAX_COUNT) {
        rc = deja__error_set(DEJA_ENOMEM, "manifest has more than %zu models", MAX_COUNT);
        goto cleanup;
    }
    if (info->nmodels > 0) {
        models = calloc(info->nmodels, sizeof *models);
        mptrs = calloc(info->nmodels, sizeof *mptrs);
        if (models == NULL || mptrs == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory encoding a manifest");
            goto cleanup;
        }
    }
    for (size_t i = 0; i < info->nmodels; i++) {
        const deja_bundle_model *m = &info->models[i];

        deja__pb__bundle_model__init(&models[i]);
        models[i].name = pb_str(m->name);
        models[i].version = pb_str(m->version);
        models[i].digest.data = (uint8_t *)m->digest;
        models[i].digest.len = m->digest ? m->digest_size : 0;
        models[i].traces = m->traces;
        mptrs[i] = &models[i];
    }
    msg.format = info->format;
    msg.deja_version = pb_str(info->deja_version);
    msg.created_ns = info->created_ns;
    msg.traces = info->traces;
    msg.blobs = info->blobs;
    msg.envs = info->envs;
    msg.n_models = info->nmodels;
    msg.models = mptrs;
    if (info->plugin != NULL) {
        const deja_bundle_plugin *p = info->plugin;

        plugin.spec = pb_str(p->spec);
        plugin.file = pb_str(p->file);
        plugin.file_digest.data = (uint8_t *)p->file_digest.bytes;
        plugin.file_digest.len = sizeof p->file_digest.bytes;
        plugin.file_size = p->file_size;
        pmodel.name = pb_str(p->model_name);
        pmodel.version = pb_str(p->model_version);
        pmodel.digest.data = (uint8_t *)p->model_digest;
        pmodel.digest.len = p->model_digest ? p->model_digest_size : 0;
        plugin.model = &pmodel;
        plugin.data.data = (uint8_t *)p->data;
        plugin.data.len = p->data ? p->size : 0;
        msg.plugin = &plugin;
    }
    len = deja__pb__bundle_manifest__get_packed_size(&msg);
    rc = deja__buf_reserve(out, len);
    if (rc != 0)
        goto cleanup;
    written = deja__pb__bundle_manifest__pack(&msg, out->data);
    if (written != len) {
        rc = deja__error_set(DEJA_EINVAL, "manifest packed to %zu bytes, expected %zu", written,
                             len);
        goto cleanup;
    }
    out->size = written;
cleanup:
    free(mptrs);
    free(models);
    return rc;
}

/* A decoded manifest: the public struct first, the unpacked message its
 * strings point into, and the arrays built for it. */
typedef struct manifest_impl {
    deja_bundle_info pub;
    Deja__Pb__BundleManifest *msg;
    deja_bundle_model *models;
    deja_bundle_plugin plugin;
} manifest_impl;

/* Decode `size` bytes at `data` as a deja.pb.BundleManifest into a new
 * deja_bundle_info at `*out` that owns its memory, freed with
 * deja__manifest_free(). Strings are never NULL. Returns 0, DEJA_ECORRUPT
 * (with a message naming the field) or DEJA_ENOMEM; `*out` is set only on
 * success. */
int deja__manifest_decode(const void *data, size_t size, deja_bundle_info **out)
{
    Deja__Pb__BundleManifest *msg = NULL;
    manifest_impl *impl = NULL;
    deja_bundle_info *info;
    int rc = 0;

    if (out == NULL || (data == NULL && size > 0)) {
        rc = deja__error_set(DEJA_EINVAL, "no manifest to decode");
        goto cleanup;
    }
    if (size > DEJA__MAX_RECORD) {
        rc = deja__error_set(DEJA_ECORRUPT, "manifest of %zu bytes exceeds the %zu limit", size,
                             DEJA__MAX_RECORD);
        goto cleanup;
    }
    msg = deja__pb__bundle_manifest__unpack(NULL, size, size ? data : empty_payload);
    if (msg == NULL) {
        rc = deja__error_set(DEJA_ECORRUPT, "manifest (%zu bytes) is not a valid protobuf", size);
        goto cleanup;
    }
    impl = calloc(1, sizeof *impl);
    if (impl == NULL || (msg->n_models > 0 &&
                         (impl->models = calloc(msg->n_models, sizeof *impl->models)) == NULL)) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory decoding a manifest");
        goto cleanup;
    }
    impl->msg = msg;
    info = &impl->pub;
    for (size_t i = 0; i < msg->n_models; i++) {
        const Deja__Pb__BundleModel *src = msg->models[i];
        deja_bundle_model *m = &impl->models[i];

        if (src->digest.len > MAX_MODEL_DIGEST) {
            rc = deja__error_set(DEJA_ECORRUPT,
                                 "manifest: model %zu has a %zu-byte digest (at most %d)", i,
                                 src->digest.len, MAX_MODEL_DIGEST);
            goto cleanup;
        }
        m->name = src->name ? src->name : "";
        m->version = src->version ? src->version : "";
        m->digest = src->digest.len ? src->digest.data : empty_payload;
        m->digest_size = src->digest.len;
        m->traces = src->traces;
    }
    info->format = msg->format;
    info->deja_version = msg->deja_version ? msg->deja_version : "";
    info->created_ns = msg->created_ns;
    info->traces = msg->traces;
    info->blobs = msg->blobs;
    info->envs = msg->envs;
    info->models = impl->models;
    info->nmodels = msg->n_models;
    if (msg->plugin != NULL) {
        const Deja__Pb__BundlePlugin *src = msg->plugin;
        const Deja__Pb__Model *pm = src->model;
        deja_bundle_plugin *p = &impl->plugin;

        rc = check_len("manifest: plugin ", "file digest", src->file_digest.len, 16, 0);
        if (rc != 0)
            goto cleanup;
        if (pm != NULL && pm->digest.len > MAX_MODEL_DIGEST) {
            rc = deja__error_set(DEJA_ECORRUPT, "manifest: plugin model digest is %zu bytes "
                                 "(at most %d)", pm->digest.len, MAX_MODEL_DIGEST);
            goto cleanup;
        }
        if (src->data.len != 0 && src->data.len != src->file_size) {
            rc = deja__error_set(DEJA_ECORRUPT,
                                 "manifest: plugin file is %llu bytes but %zu are included",
                                 (unsigned long long)src->file_size, src->data.len);
            goto cleanup;
        }
        /* The included file must be the file recorded: every reader of a
         * bundle decodes its manifest here, so no one sees other bytes. */
        if (src->data.len != 0) {
            const deja_digest d = deja_digest_of(src->data.data, src->data.len);
            if (memcmp(d.bytes, src->file_digest.data, 16) != 0) {
                rc = deja__error_set(DEJA_ECORRUPT,
                                     "manifest: the included plugin file does not match its "
                                     "recorded XXH3-128 digest");
                goto cleanup;
            }
        }
        p->spec = src->spec ? src->spec : "";
        p->file = src->file ? src->file : "";
        memcpy(p->file_digest.bytes, src->file_digest.data, 16);
        p->file_size = src->file_size;
        p->model_name = pm != NULL && pm->name ? pm->name : "";
        p->model_version = pm != NULL && pm->version ? pm->version : "";
        p->model_digest = pm != NULL && pm->digest.len ? pm->digest.data : empty_payload;
        p->model_digest_size = pm != NULL ? pm->digest.len : 0;
        p->data = src->data.len ? src->data.data : NULL;
        p->size = src->data.len;
        info->plugin = p;
    }
    *out = info;
    impl = NULL;
    msg = NULL;
cleanup:
    if (impl != NULL) {
        free(impl->models);
        free(impl);
    }
    if (msg != NULL)
        deja__pb__bundle_manifest__free_unpacked(msg, NULL);
    return rc;
}

/* Free a manifest made by deja__manifest_decode(). Accepts NULL. */
void deja__manifest_free(deja_bundle_info *info)
{
    manifest_impl *impl = (manifest_impl *)info;

    if (info == NULL)
        return;
    deja__pb__bundle_manifest__free_unpacked(impl->msg, NULL);
    free(impl->models);
    free(impl);
}
