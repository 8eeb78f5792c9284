/*
 * proto/runner_msg.c -- encode and decode the runner protocol's messages
 * (see proto/runner_msg.h). The only code that touches the generated
 * Runner* types.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/deja.pb-c.h"
#include "proto/runner_msg.h"
#include "core/error.h"
#include "core/limits.h"

/* A decoded message: the public view first, then what it owns. */
typedef struct rmsg_impl {
    deja__rmsg m;
    Deja__Pb__RunnerMessage *pb;
    deja_tensor *tensors;
    deja_param *params;
    deja_kv *libs;
} rmsg_impl;

static const uint8_t empty_payload[1];

/* Return `s` as the non-const char * protobuf-c wants, "" for NULL. */
static char *pb_str(const char *s)
{
    return (char *)(s ? s : "");
}

const char *deja__rmsg_kind_name(deja__rmsg_kind kind)
{
    static const char *const names[] = {"none", "hello", "infer", "call", "reply", "result"};
    return (unsigned)kind < sizeof names / sizeof names[0] ? names[kind] : "unknown";
}

uint32_t deja__rmsg_prefix(const uint8_t prefix[DEJA__RUNNER_PREFIX])
{
    return (uint32_t)prefix[0] | (uint32_t)prefix[1] << 8 | (uint32_t)prefix[2] << 16 |
           (uint32_t)prefix[3] << 24;
}

/* Check that tensor `name` (called a `what`: "input", "output") agrees with
 * its dtype, shape and payload size. Returns 0 or `code` naming it. */
static int check_tensor(int code, const char *what, const char *name, deja_dtype dtype,
                        const uint64_t *shape, size_t ndim, uint64_t size)
{
    const char *dname = deja_dtype_name(dtype);
    uint64_t bytes = deja_dtype_size(dtype);

    if (name == NULL || name[0] == '\0')
        return deja__error_set(code, "%s without a name", what);
    if (strlen(name) > DEJA__MAX_NAME)
        return deja__error_set(code, "%s name longer than %d bytes", what, DEJA__MAX_NAME);
    if (dname == NULL)
        return deja__error_set(code, "%s '%s': unknown dtype %d", what, name, (int)dtype);
    if (ndim > DEJA_MAX_DIMS)
        return deja__error_set(code, "%s '%s': %zu dimensions (at most %d)", what, name, ndim,
                               DEJA_MAX_DIMS);
    if (dtype == DEJA_BYTES || dtype == DEJA_UTF8)
        return 0;
    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] != 0 && bytes > UINT64_MAX / shape[i])
            return deja__error_set(code, "%s '%s': its shape overflows", what, name);
        bytes *= shape[i];
    }
    if (bytes != size)
        return deja__error_set(code,
                               "%s '%s': its shape holds %llu bytes of %s but the payload is %llu",
                               what, name, (unsigned long long)bytes, dname,
                               (unsigned long long)size);
    return 0;
}

/* ------------------------------------------------------------------------
 * Encoding
 * ---------------------------------------------------------------------- */

/* Fill the `n` protobuf tensors `dst` (and pointers `ptrs`) from `src`. */
static int encode_tensors(const char *what, const deja_tensor *src, size_t n,
                          Deja__Pb__Tensor *dst, Deja__Pb__Tensor **ptrs)
{
    for (size_t i = 0; i < n; i++) {
        const deja_tensor *t = &src[i];
        int rc;
        if (t->ndim > 0 && t->shape == NULL)
            return deja__error_set(DEJA_EINVAL, "%s '%s': dimensions but no shape", what,
                                   t->name ? t->name : "");
        rc = check_tensor(DEJA_EINVAL, what, t->name, t->dtype, t->shape, t->ndim, t->size);
        if (rc != 0)
            return rc;
        if (t->size > 0 && t->data == NULL)
            return deja__error_set(DEJA_EINVAL, "%s '%s': %zu bytes but no data", what, t->name,
                                   t->size);
        deja__pb__tensor__init(&dst[i]);
        dst[i].name = pb_str(t->name);
        dst[i].dtype = (Deja__Pb__DType)t->dtype;
        dst[i].n_shape = t->ndim;
        dst[i].shape = (uint64_t *)(uintptr_t)t->shape;
        dst[i].data.data = (uint8_t *)(uintptr_t)t->data;
        dst[i].data.len = t->size;
        dst[i].size = t->size;
        ptrs[i] = &dst[i];
    }
    return 0;
}

/* Fill the `n` protobuf params `dst` (and pointers `ptrs`) from `src`. */
static int encode_params(const deja_param *src, size_t n, Deja__Pb__Param *dst,
                         Deja__Pb__Param **ptrs)
{
    for (size_t i = 0; i < n; i++) {
        deja__pb__param__init(&dst[i]);
        dst[i].key = pb_str(src[i].key);
        switch (src[i].kind) {
        case DEJA_PARAM_NUM:
            dst[i].value_case = DEJA__PB__PARAM__VALUE_NUM;
            dst[i].num = src[i].num;
            break;
        case DEJA_PARAM_STR:
            dst[i].value_case = DEJA__PB__PARAM__VALUE_STR;
            dst[i].str = pb_str(src[i].str);
            break;
        case DEJA_PARAM_BOOL:
            dst[i].value_case = DEJA__PB__PARAM__VALUE_FLAG;
            dst[i].flag = src[i].flag != 0;
            break;
        default:
            return deja__error_set(DEJA_EINVAL, "param '%s': unknown kind %d", dst[i].key,
                                   (int)src[i].kind);
        }
        ptrs[i] = &dst[i];
    }
    return 0;
}

/* Append the frame of `m` to `out`; see runner_msg.h. */
int deja__rmsg_encode(const deja__rmsg *m, deja__buf *out)
{
    Deja__Pb__RunnerMessage msg = DEJA__PB__RUNNER_MESSAGE__INIT;
    Deja__Pb__RunnerHello hello = DEJA__PB__RUNNER_HELLO__INIT;
    Deja__Pb__RunnerInfer infer = DEJA__PB__RUNNER_INFER__INIT;
    Deja__Pb__RunnerCall call = DEJA__PB__RUNNER_CALL__INIT;
    Deja__Pb__RunnerReply reply = DEJA__PB__RUNNER_REPLY__INIT;
    Deja__Pb__RunnerResult result = DEJA__PB__RUNNER_RESULT__INIT;
    Deja__Pb__Tensor *tensors = NULL, **tptrs = NULL;
    Deja__Pb__Param *params = NULL, **pptrs = NULL;
    Deja__Pb__KeyValue *libs = NULL, **lptrs = NULL;
    int rc = 0;

    if (m->ntensors > DEJA__RUNNER_MAX_ITEMS || m->nparams > DEJA__RUNNER_MAX_ITEMS ||
        m->nlibs > DEJA__RUNNER_MAX_ITEMS || m->nvalues > DEJA__RUNNER_MAX_DRAWS) {
        rc = deja__error_set(DEJA_EINVAL, "runner %s: too many items", deja__rmsg_kind_name(m->kind));
        goto cleanup;
    }
    tensors = calloc(m->ntensors + 1, sizeof *tensors);
    tptrs = calloc(m->ntensors + 1, sizeof *tptrs);
    params = calloc(m->nparams + 1, sizeof *params);
    pptrs = calloc(m->nparams + 1, sizeof *pptrs);
    libs = calloc(m->nlibs + 1, sizeof *libs);
    lptrs = calloc(m->nlibs + 1, sizeof *lptrs);
    if (!tensors || !tptrs || !params || !pptrs || !libs || !lptrs) {
        rc = deja__error_set(DEJA_ENOMEM, "runner %s: out of memory",
                             deja__rmsg_kind_name(m->kind));
        goto cleanup;
    }
    switch (m->kind) {
    case DEJA__RMSG_HELLO:
        if (m->digest_size > 64) {
            rc = deja__error_set(DEJA_EINVAL, "runner hello: digest of %zu bytes (at most 64)",
                                 m->digest_size);
            goto cleanup;
        }
        hello.protocol = m->protocol;
        hello.name = pb_str(m->name);
        hello.version = pb_str(m->version);
        hello.digest.data = (uint8_t *)(uintptr_t)m->digest;
        hello.digest.len = m->digest_size;
        hello.thread_safe = m->thread_safe != 0;
        for (size_t i = 0; i < m->nlibs; i++) {
            deja__pb__key_value__init(&libs[i]);
            libs[i].key = pb_str(m->libs[i].key);
            libs[i].value = pb_str(m->libs[i].value);
            lptrs[i] = &libs[i];
        }
        hello.n_libs = m->nlibs;
        hello.libs = lptrs;
        hello.error = pb_str(m->error);
        msg.body_case = DEJA__PB__RUNNER_MESSAGE__BODY_HELLO;
        msg.hello = &hello;
        break;
    case DEJA__RMSG_INFER:
        rc = encode_tensors("input", m->tensors, m->ntensors, tensors, tptrs);
        if (rc == 0)
            rc = encode_params(m->params, m->nparams, params, pptrs);
        if (rc != 0)
            goto cleanup;
        infer.seq = m->seq;
        infer.checkpoints = m->checkpoints != 0;
        infer.n_inputs = m->ntensors;
        infer.inputs = tptrs;
        infer.n_params = m->nparams;
        infer.params = pptrs;
        msg.body_case = DEJA__PB__RUNNER_MESSAGE__BODY_INFER;
        msg.infer = &infer;
        break;
    case DEJA__RMSG_CALL:
        call.kind = (Deja__Pb__RunnerCallKind)m->call;
        call.name = pb_str(m->call_name);
        call.count = m->count;
        if (m->call == DEJA__RCALL_CHECKPOINT) {
            if (m->ntensors != 1) {
                rc = deja__error_set(DEJA_EINVAL, "runner call: a checkpoint takes one tensor");
                goto cleanup;
            }
            if ((rc = encode_tensors("checkpoint", m->tensors, 1, tensors, tptrs)) != 0)
                goto cleanup;
            call.tensor = tptrs[0];
        }
        msg.body_case = DEJA__PB__RUNNER_MESSAGE__BODY_CALL;
        msg.call = &call;
        break;
    case DEJA__RMSG_REPLY:
        reply.n_values = m->nvalues;
        reply.values = (uint64_t *)(uintptr_t)m->values;
        reply.now_ns = m->now_ns;
        reply.stop = m->stop != 0;
        reply.error = pb_str(m->error);
        msg.body_case = DEJA__PB__RUNNER_MESSAGE__BODY_REPLY;
        msg.reply = &reply;
        break;
    case DEJA__RMSG_RESULT:
        rc = encode_tensors("output", m->tensors, m->ntensors, tensors, tptrs);
        if (rc != 0)
            goto cleanup;
        result.status = m->ok ? DEJA__PB__STATUS__STATUS_OK : DEJA__PB__STATUS__STATUS_ERROR;
        result.error = pb_str(m->error);
        result.n_outputs = m->ntensors;
        result.outputs = tptrs;
        msg.body_case = DEJA__PB__RUNNER_MESSAGE__BODY_RESULT;
        msg.result = &result;
        break;
    default:
        rc = deja__error_set(DEJA_EINVAL, "runner message: unknown kind %d", (int)m->kind);
        goto cleanup;
    }

    const size_t size = deja__pb__runner_message__get_packed_size(&msg);
    if (size > DEJA__RUNNER_MAX_FRAME) {
        rc = deja__error_set(DEJA_EINVAL, "runner %s: %zu bytes, beyond the protocol's %zu",
                             deja__rmsg_kind_name(m->kind), size, DEJA__RUNNER_MAX_FRAME);
        goto cleanup;
    }
    rc = deja__buf_reserve(out, DEJA__RUNNER_PREFIX + size);
    if (rc != 0)
        goto cleanup;
    uint8_t *p = out->data + out->size;
    p[0] = (uint8_t)size;
    p[1] = (uint8_t)(size >> 8);
    p[2] = (uint8_t)(size >> 16);
    p[3] = (uint8_t)(size >> 24);
    deja__pb__runner_message__pack(&msg, p + DEJA__RUNNER_PREFIX);
    out->size += DEJA__RUNNER_PREFIX + size;

cleanup:
    free(tensors);
    free(tptrs);
    free(params);
    free(pptrs);
    free(libs);
    free(lptrs);
    return rc;
}

/* ------------------------------------------------------------------------
 * Decoding
 * ---------------------------------------------------------------------- */

/* Check and view the `n` protobuf tensors `src` as `*dst` (allocated). */
static int decode_tensors(const char *what, Deja__Pb__Tensor *const *src, size_t n,
                          deja_tensor **dst)
{
    if (n > DEJA__RUNNER_MAX_ITEMS)
        return deja__error_set(DEJA_ECORRUPT, "%zu %ss (at most %u)", n, what,
                               DEJA__RUNNER_MAX_ITEMS);
    *dst = calloc(n + 1, sizeof **dst);
    if (*dst == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory for %zu %ss", n, what);
    for (size_t i = 0; i < n; i++) {
        const Deja__Pb__Tensor *t = src[i];
        const char *name = t->name ? t->name : "";
        if (t->blob.len != 0)
            return deja__error_set(DEJA_ECORRUPT, "%s '%s': a blob reference (payloads are inline)",
                                   what, name);
        if (t->size != 0 && t->size != t->data.len)
            return deja__error_set(DEJA_ECORRUPT, "%s '%s': size says %llu bytes but %zu are sent",
                                   what, name, (unsigned long long)t->size, t->data.len);
        int rc = check_tensor(DEJA_ECORRUPT, what, name, (deja_dtype)t->dtype, t->shape,
                              t->n_shape, t->data.len);
        if (rc != 0)
            return rc;
        (*dst)[i] = (deja_tensor){name,      (deja_dtype)t->dtype,
                                  t->n_shape, t->shape,
                                  t->data.len ? t->data.data : empty_payload,
                                  t->data.len};
    }
    return 0;
}

/* Decode one message; see runner_msg.h. */
int deja__rmsg_decode(const void *data, size_t size, deja__rmsg **out)
{
    rmsg_impl *impl = NULL;
    int rc = 0;

    *out = NULL;
    if (size > DEJA__RUNNER_MAX_FRAME)
        return deja__error_set(DEJA_ECORRUPT, "message of %zu bytes (at most %zu)", size,
                               DEJA__RUNNER_MAX_FRAME);
    impl = calloc(1, sizeof *impl);
    if (impl == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    impl->pb = deja__pb__runner_message__unpack(NULL, size, data);
    if (impl->pb == NULL) {
        rc = deja__error_set(DEJA_ECORRUPT, "not a RunnerMessage (protobuf does not decode)");
        goto cleanup;
    }
    deja__rmsg *m = &impl->m;
    const Deja__Pb__RunnerMessage *pb = impl->pb;
    switch (pb->body_case) {
    case DEJA__PB__RUNNER_MESSAGE__BODY_HELLO: {
        const Deja__Pb__RunnerHello *h = pb->hello;
        m->kind = DEJA__RMSG_HELLO;
        m->protocol = h->protocol;
        m->name = h->name;
        m->version = h->version;
        m->error = h->error;
        if (h->digest.len > 64) {
            rc = deja__error_set(DEJA_ECORRUPT, "hello: digest of %zu bytes (at most 64)",
                                 h->digest.len);
            goto cleanup;
        }
        if (strlen(h->name) > DEJA__MAX_NAME || strlen(h->version) > DEJA__MAX_NAME) {
            rc = deja__error_set(DEJA_ECORRUPT, "hello: name or version longer than %d bytes",
                                 DEJA__MAX_NAME);
            goto cleanup;
        }
        m->digest = h->digest.data;
        m->digest_size = h->digest.len;
        m->thread_safe = h->thread_safe;
        if (h->n_libs > DEJA__RUNNER_MAX_ITEMS) {
            rc = deja__error_set(DEJA_ECORRUPT, "hello: %zu libraries", h->n_libs);
            goto cleanup;
        }
        impl->libs = calloc(h->n_libs + 1, sizeof *impl->libs);
        if (impl->libs == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < h->n_libs; i++)
            impl->libs[i] = (deja_kv){h->libs[i]->key, h->libs[i]->value};
        m->libs = impl->libs;
        m->nlibs = h->n_libs;
        break;
    }
    case DEJA__PB__RUNNER_MESSAGE__BODY_INFER: {
        const Deja__Pb__RunnerInfer *in = pb->infer;
        m->kind = DEJA__RMSG_INFER;
        m->seq = in->seq;
        m->checkpoints = in->checkpoints;
        rc = decode_tensors("input", in->inputs, in->n_inputs, &impl->tensors);
        if (rc != 0)
            goto cleanup;
        m->tensors = impl->tensors;
        m->ntensors = in->n_inputs;
        if (in->n_params > DEJA__RUNNER_MAX_ITEMS) {
            rc = deja__error_set(DEJA_ECORRUPT, "infer: %zu params", in->n_params);
            goto cleanup;
        }
        impl->params = calloc(in->n_params + 1, sizeof *impl->params);
        if (impl->params == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < in->n_params; i++) {
            const Deja__Pb__Param *p = in->params[i];
            deja_param *d = &impl->params[i];
            d->key = p->key;
            switch (p->value_case) {
            case DEJA__PB__PARAM__VALUE_NUM:
                d->kind = DEJA_PARAM_NUM;
                d->num = p->num;
                break;
            case DEJA__PB__PARAM__VALUE_STR:
                d->kind = DEJA_PARAM_STR;
                d->str = p->str;
                break;
            case DEJA__PB__PARAM__VALUE_FLAG:
                d->kind = DEJA_PARAM_BOOL;
                d->flag = p->flag;
                break;
            default:
                rc = deja__error_set(DEJA_ECORRUPT, "infer: param '%s' has no value", p->key);
                goto cleanup;
            }
        }
        m->params = impl->params;
        m->nparams = in->n_params;
        break;
    }
    case DEJA__PB__RUNNER_MESSAGE__BODY_CALL: {
        const Deja__Pb__RunnerCall *c = pb->call;
        m->kind = DEJA__RMSG_CALL;
        m->call_name = c->name;
        m->count = c->count;
        if (strlen(c->name) > DEJA__MAX_NAME) {
            rc = deja__error_set(DEJA_ECORRUPT, "call: name longer than %d bytes", DEJA__MAX_NAME);
            goto cleanup;
        }
        switch (c->kind) {
        case DEJA__PB__RUNNER_CALL_KIND__RUNNER_CALL_SEED:
            m->call = DEJA__RCALL_SEED;
            break;
        case DEJA__PB__RUNNER_CALL_KIND__RUNNER_CALL_RNG:
            m->call = DEJA__RCALL_RNG;
            if (c->count < 1 || c->count > DEJA__RUNNER_MAX_DRAWS) {
                rc = deja__error_set(DEJA_ECORRUPT, "call: %u RNG draws (1 to %u at once)",
                                     (unsigned)c->count, DEJA__RUNNER_MAX_DRAWS);
                goto cleanup;
            }
            break;
        case DEJA__PB__RUNNER_CALL_KIND__RUNNER_CALL_NOW:
            m->call = DEJA__RCALL_NOW;
            break;
        case DEJA__PB__RUNNER_CALL_KIND__RUNNER_CALL_NOTE:
            m->call = DEJA__RCALL_NOTE;
            break;
        case DEJA__PB__RUNNER_CALL_KIND__RUNNER_CALL_CHECKPOINT:
            m->call = DEJA__RCALL_CHECKPOINT;
            if (c->tensor == NULL) {
                rc = deja__error_set(DEJA_ECORRUPT, "call: a checkpoint without its tensor");
                goto cleanup;
            }
            rc = decode_tensors("checkpoint", &c->tensor, 1, &impl->tensors);
            if (rc != 0)
                goto cleanup;
            m->tensors = impl->tensors;
            m->ntensors = 1;
            break;
        default:
            rc = deja__error_set(DEJA_ECORRUPT, "call: unknown kind %d", (int)c->kind);
            goto cleanup;
        }
        break;
    }
    case DEJA__PB__RUNNER_MESSAGE__BODY_REPLY: {
        const Deja__Pb__RunnerReply *r = pb->reply;
        m->kind = DEJA__RMSG_REPLY;
        if (r->n_values > DEJA__RUNNER_MAX_DRAWS) {
            rc = deja__error_set(DEJA_ECORRUPT, "reply: %zu values (at most %u)", r->n_values,
                                 DEJA__RUNNER_MAX_DRAWS);
            goto cleanup;
        }
        m->values = r->values;
        m->nvalues = r->n_values;
        m->now_ns = r->now_ns;
        m->stop = r->stop;
        m->error = r->error;
        break;
    }
    case DEJA__PB__RUNNER_MESSAGE__BODY_RESULT: {
        const Deja__Pb__RunnerResult *r = pb->result;
        m->kind = DEJA__RMSG_RESULT;
        m->ok = r->status == DEJA__PB__STATUS__STATUS_OK;
        if (r->status != DEJA__PB__STATUS__STATUS_OK &&
            r->status != DEJA__PB__STATUS__STATUS_ERROR) {
            rc = deja__error_set(DEJA_ECORRUPT, "result: unknown status %d", (int)r->status);
            goto cleanup;
        }
        m->error = r->error;
        rc = decode_tensors("output", r->outputs, r->n_outputs, &impl->tensors);
        if (rc != 0)
            goto cleanup;
        m->tensors = impl->tensors;
        m->ntensors = r->n_outputs;
        break;
    }
    default:
        rc = deja__error_set(DEJA_ECORRUPT, "a RunnerMessage with no body");
        goto cleanup;
    }
    if (m->error == NULL)
        m->error = "";
    *out = m;
    impl = NULL;

cleanup:
    deja__rmsg_free(impl ? &impl->m : NULL);
    return rc;
}

/* Free a decoded message. Accepts NULL. */
void deja__rmsg_free(deja__rmsg *m)
{
    rmsg_impl *impl = (rmsg_impl *)m;
    if (impl == NULL)
        return;
    if (impl->pb != NULL)
        deja__pb__runner_message__free_unpacked(impl->pb, NULL);
    free(impl->tensors);
    free(impl->params);
    free(impl->libs);
    free(impl);
}
