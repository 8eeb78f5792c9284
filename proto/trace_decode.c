/*
 * proto/trace_decode.c -- decode a Trace record into one allocation.
 *
 * The record's bytes are copied once into the block that also holds the
 * public deja_trace and every array it points to. Strings and inline
 * payloads are views into that copy: a string's NUL is written over the
 * first byte of whatever follows it (the next field's key, or one spare
 * byte after the record) once every field has been read. Numeric payloads
 * that would sit misaligned for their element type are copied, aligned,
 * into the same block. So a decoded trace costs one malloc, and
 * deja_trace_free() one free (plus the blob payloads attached later).
 *
 * The wire format (deja.proto, unchanged) is walked by hand, like
 * proto/peek.c, in two passes of the same code: the first counts the
 * elements of every list and checks every key, varint and length against
 * the bytes left, so that the block is sized before it is allocated; the
 * second fills the block and checks what each field means (shapes against
 * sizes, digests' lengths, ...). Unknown fields are skipped; a known field
 * with another wire type, a group, or any length running past its message
 * makes the record corrupt. A singular field given twice keeps its last
 * value, a nested message given twice (the model, a checkpoint's tensor) is
 * merged, repeated scalars may be packed or not: as protobuf says.
 */
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/limits.h"
#include "core/varint.h"
#include "proto/codec.h"

#define MAX_DRAWS ((uint64_t)DEJA__MAX_DRAWS)
#define ALIGN_UP(n) (((n) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1))

/* Longest tensor or checkpoint name an error message quotes. */
#define MSG_NAME 256

enum { W_VARINT = 0, W_I64 = 1, W_LEN = 2, W_I32 = 5 };

/* A decoded trace: the public struct first (a deja_trace * is a
 * trace_impl *), then, in the same block, the record's copy and the arrays
 * built for it. Only blob payloads handed over later live elsewhere. */
typedef struct trace_impl {
    deja_trace pub;
    size_t ntensors;        /* inputs then outputs */
    deja_tensor *tensors;
    deja_digest *digests;   /* blob digest per tensor */
    unsigned char *is_blob; /* per tensor */
    void **attached;        /* payloads handed over by deja__trace_attach */
} trace_impl;

/* Where the record's copy starts in the block. */
#define REC_AT ALIGN_UP(sizeof(trace_impl))

typedef struct span {
    const uint8_t *p, *end;
} span;

/* The lengths of every list: counted by the first pass, used so far by the
 * second. */
typedef struct tally {
    size_t nin, nout, nparams, nseeds, nrng, ntags, nkinds, ncks;
    size_t ndims;    /* shape values of every tensor and checkpoint */
    size_t ndraws;   /* stored and regenerated RNG draws */
    size_t nclock;
    size_t nstrings; /* strings to terminate */
    size_t ncopy;    /* bytes of payloads copied to be aligned */
} tally;

/* The singular fields of a Trace and its Model (last value wins). */
typedef struct top {
    span id, parent, env, error, select;
    int has_error, has_select;
    int64_t start_ns, duration_ns;
    int32_t status;
    int has_model;
    span m_name, m_version, m_digest, m_plugin, m_config;
    int has_m_name, has_m_version, has_m_plugin, has_m_config, m_has_config;
} top;

/* One pass over a record. */
typedef struct walk {
    int fill;            /* 0: count, 1: fill */
    const uint8_t *rec;  /* the record: the caller's bytes, then the copy */
    tally n;             /* counted (first pass) or used so far */
    tally total;         /* what the first pass counted */
    uint64_t draws_all;  /* stored + counted draws, saturating past MAX_DRAWS */
    top t;
    /* Filled by the second pass. */
    trace_impl *impl;
    deja_param *params;
    deja_seed *seeds;
    deja_rng_stream *rng;
    deja_tag *tags;
    deja_output_decl *kinds;
    deja_checkpoint *cks;
    uint64_t *dims;
    uint64_t *draws;
    int64_t *clock;
    uint8_t **ends;  /* where each string's NUL goes */
    uint8_t *copies; /* aligned copies of payloads */
} walk;

static const uint8_t empty_payload[1];

/* ------------------------------------------------------------------------
 * The wire
 * ---------------------------------------------------------------------- */

static uint64_t le64(const uint8_t *p)
{
    uint64_t x = 0;

    for (int i = 7; i >= 0; i--)
        x = x << 8 | p[i];
    return x;
}

/* Read the next field of `s`: its number and wire type, a varint's or a
 * fixed field's value in `*v`, a length-delimited field's bytes in `*sub`.
 * 0, or -1 for a malformed key, a group, or bytes cut short. */
static inline int get_varint(span *s, uint64_t *v)
{
    /* Keys, lengths and most values here fit in one byte. */
    if (s->p < s->end && *s->p < 0x80) {
        *v = *s->p++;
        return 0;
    }
    return deja__varint_get(&s->p, s->end, 10, v);
}

static inline int next_field(span *s, uint32_t *num, uint32_t *wire, uint64_t *v, span *sub)
{
    uint64_t key, len;

    if (get_varint(s, &key) != 0 || key >> 3 == 0 || key >> 3 > 0x1FFFFFFF)
        return -1;
    *num = (uint32_t)(key >> 3);
    *wire = (uint32_t)(key & 7);
    switch (*wire) {
    case W_VARINT:
        return get_varint(s, v);
    case W_I64:
        if (s->end - s->p < 8)
            return -1;
        *v = le64(s->p);
        s->p += 8;
        return 0;
    case W_LEN:
        if (get_varint(s, &len) != 0 || len > (uint64_t)(s->end - s->p))
            return -1;
        sub->p = s->p;
        sub->end = s->p + len;
        s->p += len;
        return 0;
    case W_I32:
        if (s->end - s->p < 4)
            return -1;
        *v = (uint64_t)s->p[0] | (uint64_t)s->p[1] << 8 | (uint64_t)s->p[2] << 16 |
             (uint64_t)s->p[3] << 24;
        s->p += 4;
        return 0;
    default:
        return -1;
    }
}

/* Append the values of a repeated varint field, packed (`wire` W_LEN, the
 * values in `sub`) or one unpacked value `v`, at `arr[*used]` (not written
 * when counting); `cap` bounds the second pass. 0 or -1. */
static int varints(const walk *w, uint32_t wire, uint64_t v, span sub, uint64_t *arr,
                   size_t *used, size_t cap)
{
    if (wire == W_VARINT) {
        if (w->fill) {
            if (*used >= cap)
                return -1;
            arr[*used] = v;
        }
        (*used)++;
        return 0;
    }
    if (wire != W_LEN)
        return -1;
    while (sub.p < sub.end) {
        uint64_t x;

        if (deja__varint_get(&sub.p, sub.end, 10, &x) != 0)
            return -1;
        if (w->fill) {
            if (*used >= cap)
                return -1;
            arr[*used] = x;
        }
        (*used)++;
    }
    return 0;
}

/* The string in `s`, a view into the record whose NUL is written after the
 * second pass; "" when `present` is 0. */
static const char *str(walk *w, span s, int present)
{
    if (!present)
        return "";
    if (w->fill) {
        if (w->n.nstrings >= w->total.nstrings)
            return NULL;
        w->ends[w->n.nstrings] = (uint8_t *)(uintptr_t)s.end;
    }
    w->n.nstrings++;
    return (const char *)s.p;
}

/* The bytes of `s` as a NUL-terminated string for a message, cut at
 * MSG_NAME - 1 bytes or at a NUL. */
static const char *msg_name(char *buf, span s)
{
    size_t n = (size_t)(s.end - s.p);

    if (n > MSG_NAME - 1)
        n = MSG_NAME - 1;
    if (n > 0)
        memcpy(buf, s.p, n);
    buf[n] = '\0';
    return buf;
}

/* Check a binary field that must be `want` bytes or (when `may_be_empty`)
 * empty. Returns 0 or DEJA_ECORRUPT naming `what`. */
static int check_len(const char *what, size_t len, size_t want, int may_be_empty)
{
    if (len == want || (may_be_empty && len == 0))
        return 0;
    return deja__error_set(DEJA_ECORRUPT, "%s is %zu bytes, not %s%zu", what, len,
                           may_be_empty ? "0 or " : "", want);
}

/* ------------------------------------------------------------------------
 * Tensors
 * ---------------------------------------------------------------------- */

/* A Tensor message as read: merged over every occurrence. */
typedef struct tview {
    span name, data, blob;
    int has_name;
    int32_t dtype;
    uint64_t size;
    size_t dims_at, ndim;
} tview;

static void tview_init(const walk *w, tview *tv)
{
    memset(tv, 0, sizeof *tv);
    tv->dims_at = w->n.ndims;
}

/* Read the fields of a Tensor message into `tv`. 0 or -1. */
static int tensor_walk(walk *w, span s, tview *tv)
{
    uint32_t num, wire;
    uint64_t v = 0;
    span sub = {NULL, NULL};

    while (s.p < s.end) {
        if (next_field(&s, &num, &wire, &v, &sub) != 0)
            return -1;
        switch (num) {
        case 1:
            if (wire != W_LEN)
                return -1;
            tv->name = sub;
            tv->has_name = 1;
            break;
        case 2:
            if (wire != W_VARINT)
                return -1;
            tv->dtype = (int32_t)(uint32_t)v;
            break;
        case 3: {
            const size_t before = w->n.ndims;

            /* A tensor's values are contiguous: nothing else takes shape
             * values while one tensor is read. */
            if (varints(w, wire, v, sub, w->dims, &w->n.ndims, w->total.ndims) != 0)
                return -1;
            tv->ndim += w->n.ndims - before;
            break;
        }
        case 4:
            if (wire != W_LEN)
                return -1;
            tv->data = sub;
            break;
        case 5:
            if (wire != W_LEN)
                return -1;
            tv->blob = sub;
            break;
        case 6:
            if (wire != W_VARINT)
                return -1;
            tv->size = v;
            break;
        default:
            break;
        }
    }
    return 0;
}

/* The inline payload of `tv`: a view into the record, or, for a numeric
 * dtype whose elements would sit misaligned there, an aligned copy in the
 * block (counted by the first pass). */
static const void *payload(walk *w, const tview *tv)
{
    const size_t len = (size_t)(tv->data.end - tv->data.p);
    const size_t esize = deja_dtype_size((deja_dtype)tv->dtype);
    void *copy;

    if (len == 0)
        return empty_payload;
    /* The block is malloc'd (max_align_t aligned) and the record sits at
     * REC_AT in it, so this offset gives the view's alignment in both
     * passes. */
    if (esize <= 1 || (REC_AT + (size_t)(tv->data.p - w->rec)) % esize == 0)
        return tv->data.p;
    if (w->fill) {
        if (w->n.ncopy + ALIGN_UP(len) > w->total.ncopy)
            return NULL;
        copy = w->copies + w->n.ncopy;
        memcpy(copy, tv->data.p, len);
    } else {
        copy = NULL;
    }
    w->n.ncopy += ALIGN_UP(len);
    return copy;
}

/* Make the public tensor `dst` of `tv`: the string and payload placed in
 * both passes; checked (shape against size and dtype, a blob's digest, the
 * inline bytes against the size) in the second. A blob's digest goes to
 * `dig` and `*is_blob` is set. Returns 0 or DEJA_ECORRUPT naming the
 * tensor; -1 on a broken second pass. */
static int tensor_finish(walk *w, const tview *tv, deja_tensor *dst, deja_digest *dig,
                         unsigned char *is_blob)
{
    const size_t nblob = (size_t)(tv->blob.end - tv->blob.p);
    const size_t ndata = (size_t)(tv->data.end - tv->data.p);
    const char *name = str(w, tv->name, tv->has_name);
    const void *data = NULL;
    char nm[MSG_NAME];
    int rc;

    if (nblob == 0 && (data = payload(w, tv)) == NULL && w->fill)
        return -1;
    if (!w->fill)
        return 0;
    if (name == NULL)
        return -1;
    if (tv->size > SIZE_MAX)
        return deja__error_set(DEJA_ECORRUPT, "tensor '%s': size %llu too large",
                               msg_name(nm, tv->name), (unsigned long long)tv->size);
    if (tv->ndim > DEJA_MAX_DIMS)
        return deja__error_set(DEJA_ECORRUPT, "tensor '%s': %zu dimensions (at most %d)",
                               msg_name(nm, tv->name), tv->ndim, DEJA_MAX_DIMS);
    rc = deja__tensor_shape_check(DEJA_ECORRUPT, "", tv->has_name ? msg_name(nm, tv->name) : "",
                            (deja_dtype)tv->dtype, w->dims + tv->dims_at, tv->ndim, tv->size);
    if (rc != 0)
        return rc;
    if (nblob != 0) {
        if (nblob != sizeof dig->bytes)
            return deja__error_set(DEJA_ECORRUPT, "tensor '%s': blob digest is %zu bytes, not 16",
                                   msg_name(nm, tv->name), nblob);
        if (ndata != 0)
            return deja__error_set(DEJA_ECORRUPT,
                                   "tensor '%s': has both a blob and %zu inline bytes",
                                   msg_name(nm, tv->name), ndata);
        memcpy(dig->bytes, tv->blob.p, sizeof dig->bytes);
        *is_blob = 1;
    } else {
        if (ndata != tv->size)
            return deja__error_set(DEJA_ECORRUPT,
                                   "tensor '%s': size says %llu bytes but %zu are inline",
                                   msg_name(nm, tv->name), (unsigned long long)tv->size, ndata);
        *is_blob = 0;
    }
    dst->name = name;
    dst->dtype = (deja_dtype)tv->dtype;
    dst->ndim = tv->ndim;
    dst->shape = tv->ndim ? w->dims + tv->dims_at : NULL;
    dst->data = data;
    dst->size = (size_t)tv->size;
    return 0;
}

/* An input (`output` 0) or output tensor of the trace. */
static int io_tensor(walk *w, span s, int output)
{
    const size_t slot = output ? w->total.nin + w->n.nout : w->n.nin;
    trace_impl *impl = w->impl;
    tview tv;
    int rc;

    tview_init(w, &tv);
    if (tensor_walk(w, s, &tv) != 0)
        return -1;
    if (w->fill && slot >= impl->ntensors)
        return -1;
    rc = tensor_finish(w, &tv, w->fill ? &impl->tensors[slot] : NULL,
                       w->fill ? &impl->digests[slot] : NULL,
                       w->fill ? &impl->is_blob[slot] : NULL);
    if (output)
        w->n.nout++;
    else
        w->n.nin++;
    return rc;
}

/* ------------------------------------------------------------------------
 * Checkpoints
 * ---------------------------------------------------------------------- */

/* A Checkpoint message: its payload is inline only; a digest-only one has
 * no bytes, a 16-byte digest and its summary; a full one gets its digest
 * and summary computed here. */
static int checkpoint(walk *w, span s)
{
    const size_t index = w->n.ncks++;
    uint32_t num, wire;
    uint64_t v = 0, nan = 0, inf = 0;
    uint64_t minb = 0, maxb = 0, meanb = 0;
    span sub = {NULL, NULL}, digest = {NULL, NULL};
    int has_tensor = 0, digest_only = 0, rc;
    char nm[MSG_NAME];
    deja_checkpoint *dst;
    tview tv;

    tview_init(w, &tv);
    while (s.p < s.end) {
        if (next_field(&s, &num, &wire, &v, &sub) != 0)
            return -1;
        switch (num) {
        case 1:
            if (wire != W_LEN || tensor_walk(w, sub, &tv) != 0)
                return -1;
            has_tensor = 1;
            break;
        case 2:
            if (wire != W_VARINT)
                return -1;
            digest_only = v != 0;
            break;
        case 3:
            if (wire != W_LEN)
                return -1;
            digest = sub;
            break;
        case 4:
        case 5:
            if (wire != W_VARINT)
                return -1;
            *(num == 4 ? &nan : &inf) = v;
            break;
        case 6:
        case 7:
        case 8:
            if (wire != W_I64)
                return -1;
            *(num == 6 ? &minb : num == 7 ? &maxb : &meanb) = v;
            break;
        default:
            break;
        }
    }
    if (!w->fill) {
        /* Place what the second pass will: the name, and a full
         * checkpoint's payload. */
        if (has_tensor) {
            str(w, tv.name, tv.has_name);
            if (!digest_only && tv.blob.end == tv.blob.p)
                payload(w, &tv);
        }
        return 0;
    }
    if (index >= w->total.ncks)
        return -1;
    dst = &w->cks[index];
    if (!has_tensor)
        return deja__error_set(DEJA_ECORRUPT, "checkpoint %zu has no tensor or name", index);
    if (tv.blob.end != tv.blob.p)
        return deja__error_set(DEJA_ECORRUPT, "checkpoint '%s' refers to a blob",
                               msg_name(nm, tv.name));
    if (!digest_only) {
        unsigned char is_blob = 0;
        deja_digest unused;

        if ((rc = tensor_finish(w, &tv, &dst->tensor, &unused, &is_blob)) != 0)
            return rc;
        dst->digest = deja_digest_of(dst->tensor.data, dst->tensor.size);
        if (deja_tensor_stats_of(&dst->tensor, &dst->stats) != 0)
            return deja__error_set(DEJA_ECORRUPT, "checkpoint '%s' cannot be summarised",
                                   dst->tensor.name);
        return 0;
    }
    {
        const char *name = str(w, tv.name, tv.has_name);
        const size_t ndata = (size_t)(tv.data.end - tv.data.p);
        const size_t ndigest = (size_t)(digest.end - digest.p);
        double d;

        if (name == NULL)
            return -1;
        if (ndata != 0 || ndigest != sizeof dst->digest.bytes)
            return deja__error_set(DEJA_ECORRUPT,
                                   "checkpoint '%s': digest-only with %zu bytes of data and a "
                                   "%zu-byte digest",
                                   msg_name(nm, tv.name), ndata, ndigest);
        if (tv.size > SIZE_MAX || tv.ndim > DEJA_MAX_DIMS)
            return deja__error_set(DEJA_ECORRUPT, "checkpoint '%s': bad size or shape",
                                   msg_name(nm, tv.name));
        rc = deja__tensor_shape_check(DEJA_ECORRUPT, "", msg_name(nm, tv.name), (deja_dtype)tv.dtype,
                                w->dims + tv.dims_at, tv.ndim, tv.size);
        if (rc != 0)
            return rc;
        dst->tensor = (deja_tensor){name, (deja_dtype)tv.dtype, tv.ndim,
                                    tv.ndim ? w->dims + tv.dims_at : NULL, NULL,
                                    (size_t)tv.size};
        dst->digest_only = 1;
        memcpy(dst->digest.bytes, digest.p, sizeof dst->digest.bytes);
        dst->stats.numeric = tv.dtype != DEJA_BYTES && tv.dtype != DEJA_UTF8;
        dst->stats.count = dst->stats.numeric
                               ? (size_t)tv.size / deja_dtype_size((deja_dtype)tv.dtype)
                               : (size_t)tv.size;
        dst->stats.nnan = nan;
        dst->stats.ninf = inf;
        memcpy(&d, &minb, sizeof d);
        dst->stats.min = d;
        memcpy(&d, &maxb, sizeof d);
        dst->stats.max = d;
        memcpy(&d, &meanb, sizeof d);
        dst->stats.mean = d;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Small messages
 * ---------------------------------------------------------------------- */

/* A Param: key, then one of num (a double), str or flag, the last given. */
static int param(walk *w, span s)
{
    const size_t index = w->n.nparams++;
    uint32_t num, wire;
    uint64_t v = 0, numv = 0;
    span sub = {NULL, NULL}, key = {NULL, NULL}, sv = {NULL, NULL};
    int has_key = 0, which = 0, flag = 0;
    deja_param *dst;
    char nm[MSG_NAME];

    while (s.p < s.end) {
        if (next_field(&s, &num, &wire, &v, &sub) != 0)
            return -1;
        if (num == 1) {
            if (wire != W_LEN)
                return -1;
            key = sub;
            has_key = 1;
        } else if (num == 2) {
            if (wire != W_I64)
                return -1;
            numv = v;
            which = 2;
        } else if (num == 3) {
            if (wire != W_LEN)
                return -1;
            sv = sub;
            which = 3;
        } else if (num == 4) {
            if (wire != W_VARINT)
                return -1;
            flag = v != 0;
            which = 4;
        }
    }
    if (!w->fill) {
        str(w, key, has_key);
        str(w, sv, which == 3);
        return 0;
    }
    if (index >= w->total.nparams)
        return -1;
    dst = &w->params[index];
    dst->key = str(w, key, has_key);
    dst->str = str(w, sv, which == 3);
    if (dst->key == NULL || dst->str == NULL)
        return -1;
    switch (which) {
    case 2:
        dst->kind = DEJA_PARAM_NUM;
        memcpy(&dst->num, &numv, sizeof dst->num);
        break;
    case 3:
        dst->kind = DEJA_PARAM_STR;
        break;
    case 4:
        dst->kind = DEJA_PARAM_BOOL;
        dst->flag = flag;
        break;
    default:
        return deja__error_set(DEJA_ECORRUPT, "param '%s' has no value",
                               has_key ? msg_name(nm, key) : "");
    }
    return 0;
}

/* A message of a string (field 1) and a string or varint (field 2): Seed,
 * Tag, OutputKind. `second_is_string` says which. */
static int pair(walk *w, span s, int second_is_string, const char **a, const char **b,
                uint64_t *n2)
{
    uint32_t num, wire;
    uint64_t v = 0;
    span sub = {NULL, NULL}, sa = {NULL, NULL}, sb = {NULL, NULL};
    int has_a = 0, has_b = 0;

    *n2 = 0;
    while (s.p < s.end) {
        if (next_field(&s, &num, &wire, &v, &sub) != 0)
            return -1;
        if (num == 1) {
            if (wire != W_LEN)
                return -1;
            sa = sub;
            has_a = 1;
        } else if (num == 2 && second_is_string) {
            if (wire != W_LEN)
                return -1;
            sb = sub;
            has_b = 1;
        } else if (num == 2) {
            if (wire != W_VARINT)
                return -1;
            *n2 = v;
        }
    }
    *a = str(w, sa, has_a);
    if (second_is_string)
        *b = str(w, sb, has_b);
    return w->fill && (*a == NULL || (second_is_string && *b == NULL)) ? -1 : 0;
}

static int seed(walk *w, span s)
{
    const size_t index = w->n.nseeds++;
    const char *name;
    uint64_t value;

    if (pair(w, s, 0, &name, NULL, &value) != 0)
        return -1;
    if (w->fill) {
        if (index >= w->total.nseeds)
            return -1;
        w->seeds[index] = (deja_seed){name, value};
    }
    return 0;
}

static int tag(walk *w, span s)
{
    const size_t index = w->n.ntags++;
    const char *key, *value;
    uint64_t unused;

    if (pair(w, s, 1, &key, &value, &unused) != 0)
        return -1;
    if (w->fill) {
        if (index >= w->total.ntags)
            return -1;
        w->tags[index] = (deja_tag){key, value};
    }
    return 0;
}

static int output_kind(walk *w, span s)
{
    const size_t index = w->n.nkinds++;
    const char *name;
    uint64_t kind;

    if (pair(w, s, 0, &name, NULL, &kind) != 0)
        return -1;
    if (w->fill) {
        const uint32_t k = (uint32_t)kind;

        if (index >= w->total.nkinds)
            return -1;
        /* A kind this version does not know compares as undeclared. */
        w->kinds[index] = (deja_output_decl){
            name, k <= DEJA_KIND_MAX ? (deja_output_kind)k : DEJA_KIND_AUTO};
    }
    return 0;
}

/* An RngStream: its stored draws, or a count of draws regenerated from the
 * seed, never both. The first pass adds both to the bound on draws. */
static int rng_stream(walk *w, span s)
{
    const size_t index = w->n.nrng++;
    const size_t at = w->n.ndraws;
    uint32_t num, wire;
    uint64_t v = 0, seedv = 0, count = 0;
    span sub = {NULL, NULL}, name = {NULL, NULL};
    int has_name = 0;
    size_t stored;
    char nm[MSG_NAME];
    const char *cname;

    while (s.p < s.end) {
        if (next_field(&s, &num, &wire, &v, &sub) != 0)
            return -1;
        switch (num) {
        case 1:
            if (wire != W_LEN)
                return -1;
            name = sub;
            has_name = 1;
            break;
        case 2:
            if (wire != W_VARINT)
                return -1;
            seedv = v;
            break;
        case 3:
            if (varints(w, wire, v, sub, w->draws, &w->n.ndraws, w->total.ndraws) != 0)
                return -1;
            break;
        case 4:
            if (wire != W_VARINT)
                return -1;
            count = v;
            break;
        default:
            break;
        }
    }
    stored = w->n.ndraws - at;
    cname = str(w, name, has_name);
    if (!w->fill) {
        /* Saturating: the bound is checked before anything is allocated. */
        if (count > MAX_DRAWS || w->draws_all + count + stored > MAX_DRAWS)
            w->draws_all = MAX_DRAWS + 1;
        else
            w->draws_all += count + stored;
        w->n.ndraws += (size_t)(count > MAX_DRAWS ? 0 : count);
        return 0;
    }
    if (index >= w->total.nrng || cname == NULL)
        return -1;
    if (count != 0 && stored != 0)
        return deja__error_set(DEJA_ECORRUPT, "rng stream '%s' has both draws and a count",
                               has_name ? msg_name(nm, name) : "");
    if (count != 0) {
        if (count > w->total.ndraws - at)
            return -1;
        deja__rng_generate(seedv, w->draws + at, (size_t)count);
        w->n.ndraws += (size_t)count;
        stored = (size_t)count;
    }
    w->rng[index] = (deja_rng_stream){cname, seedv, stored ? w->draws + at : NULL, stored};
    return 0;
}

/* The fields of a Model, merged into `t` over every occurrence. */
static int model(walk *w, span s)
{
    top *t = &w->t;
    uint32_t num, wire;
    uint64_t v = 0;
    span sub = {NULL, NULL};

    t->has_model = 1;
    while (s.p < s.end) {
        if (next_field(&s, &num, &wire, &v, &sub) != 0)
            return -1;
        if (num == 4) {
            if (wire != W_VARINT)
                return -1;
            t->m_has_config = v != 0;
            continue;
        }
        if (num < 1 || num > 6)
            continue;
        if (wire != W_LEN)
            return -1;
        switch (num) {
        case 1: t->m_name = sub; t->has_m_name = 1; break;
        case 2: t->m_version = sub; t->has_m_version = 1; break;
        case 3: t->m_digest = sub; break;
        case 5: t->m_plugin = sub; t->has_m_plugin = 1; break;
        default: t->m_config = sub; t->has_m_config = 1; break;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * The Trace
 * ---------------------------------------------------------------------- */

/* One pass over the Trace message in `s`. 0; -1 for malformed bytes (the
 * first pass finds them all); DEJA_ECORRUPT with a message for a field
 * whose meaning is wrong (second pass). */
static int trace_walk(walk *w, span s)
{
    top *t = &w->t;
    uint32_t num, wire;
    uint64_t v = 0;
    span sub = {NULL, NULL};
    int rc = 0;

    while (s.p < s.end && rc == 0) {
        if (next_field(&s, &num, &wire, &v, &sub) != 0)
            return -1;
        switch (num) {
        case 2:
        case 3:
        case 12:
            if (wire != W_VARINT)
                return -1;
            if (num == 2)
                t->start_ns = (int64_t)v;
            else if (num == 3)
                t->duration_ns = (int64_t)v;
            else
                t->status = (int32_t)(uint32_t)v;
            break;
        case 10:
            rc = varints(w, wire, v, sub, (uint64_t *)w->clock, &w->n.nclock, w->total.nclock);
            break;
        case 1:
        case 4:
        case 5:
        case 6:
        case 7:
        case 8:
        case 9:
        case 11:
        case 13:
        case 14:
        case 15:
        case 16:
        case 17:
        case 18:
            if (wire != W_LEN)
                return -1;
            switch (num) {
            case 1: t->id = sub; break;
            case 4: rc = model(w, sub); break;
            case 5: rc = io_tensor(w, sub, 0); break;
            case 6: rc = io_tensor(w, sub, 1); break;
            case 7: rc = param(w, sub); break;
            case 8: rc = seed(w, sub); break;
            case 9: rc = rng_stream(w, sub); break;
            case 11: t->env = sub; break;
            case 13: t->error = sub; t->has_error = 1; break;
            case 14: rc = tag(w, sub); break;
            case 15: t->parent = sub; break;
            case 16: rc = output_kind(w, sub); break;
            case 17: rc = checkpoint(w, sub); break;
            default: t->select = sub; t->has_select = 1; break;
            }
            break;
        default:
            break;
        }
    }
    return rc;
}

/* The strings of the singular fields, placed after every list's. */
static int top_strings(walk *w, deja_trace *out)
{
    const top *t = &w->t;
    const char *s[6];

    s[0] = str(w, t->error, t->has_error);
    s[1] = str(w, t->select, t->has_select);
    s[2] = str(w, t->m_name, t->has_m_name);
    s[3] = str(w, t->m_version, t->has_m_version);
    s[4] = str(w, t->m_plugin, t->has_m_plugin);
    s[5] = str(w, t->m_config, t->has_m_config);
    if (out == NULL)
        return 0;
    for (int i = 0; i < 6; i++)
        if (s[i] == NULL)
            return -1;
    out->error = s[0];
    out->checkpoint_select = s[1];
    out->model_name = s[2];
    out->model_version = s[3];
    out->model_plugin = s[4];
    out->model_config = s[5];
    return 0;
}

/* Take `n` elements of `size` bytes from the block cursor `*p`. */
static void *carve(uint8_t **p, size_t n, size_t size)
{
    void *r = *p;

    *p += ALIGN_UP(n * size);
    return r;
}

/* Decode `size` bytes at `data` as a deja.pb.Trace into a new trace at
 * `*out`, freed with deja_trace_free(). Strings are never NULL. Tensors
 * stored as blobs have data NULL until deja__trace_attach(). Returns 0,
 * DEJA_ECORRUPT with a message naming the field for malformed input, or
 * DEJA_ENOMEM. `*out` is set only on success. */
int deja__trace_decode(const void *data, size_t size, deja_trace **out)
{
    const span all = {data, (const uint8_t *)data + size};
    walk w;
    uint8_t *block = NULL, *p;
    trace_impl *impl;
    deja_trace *t;
    char idtext[DEJA_ID_STRLEN + 1];
    deja_id id;
    int named = 0;
    size_t nt, need;
    int rc = 0;

    if (out == NULL || (data == NULL && size > 0))
        return deja__error_set(DEJA_EINVAL, "no trace record to decode");
    if (size > DEJA__MAX_RECORD)
        return deja__error_set(DEJA_ECORRUPT, "trace record of %zu bytes exceeds the %zu limit",
                               size, DEJA__MAX_RECORD);
    memset(&w, 0, sizeof w);
    w.rec = data;
    if (trace_walk(&w, all) != 0 || top_strings(&w, NULL) != 0)
        return deja__error_set(DEJA_ECORRUPT, "trace record (%zu bytes) is not a valid protobuf",
                               size);
    rc = check_len("trace id", (size_t)(w.t.id.end - w.t.id.p), 16, 0);
    if (rc != 0)
        return rc;
    memcpy(id.bytes, w.t.id.p, sizeof id.bytes);
    /* Messages name the trace; the id is formatted only if one is needed
     * (see cleanup), not on every decode. */
    named = 1;
    if ((rc = check_len("parent id", (size_t)(w.t.parent.end - w.t.parent.p), 16, 1)) != 0 ||
        (rc = check_len("environment digest", (size_t)(w.t.env.end - w.t.env.p), 16, 1)) != 0)
        goto cleanup;
    if (w.t.status != DEJA_STATUS_OK && w.t.status != DEJA_STATUS_ERROR) {
        rc = deja__error_set(DEJA_ECORRUPT, "unknown status %d", (int)w.t.status);
        goto cleanup;
    }
    if (w.draws_all > MAX_DRAWS) {
        rc = deja__error_set(DEJA_ECORRUPT, "rng streams claim more than %llu draws",
                             (unsigned long long)MAX_DRAWS);
        goto cleanup;
    }

    /* Every count is bounded by the record's size (each element takes at
     * least one byte of it) or by MAX_DRAWS, so these sums cannot
     * overflow. */
    w.total = w.n;
    nt = w.total.nin + w.total.nout;
    need = REC_AT + ALIGN_UP(size + 1) + ALIGN_UP(nt * sizeof(deja_tensor)) +
           ALIGN_UP(nt * sizeof(deja_digest)) + ALIGN_UP(nt) + ALIGN_UP(nt * sizeof(void *)) +
           ALIGN_UP(w.total.nparams * sizeof(deja_param)) +
           ALIGN_UP(w.total.nseeds * sizeof(deja_seed)) +
           ALIGN_UP(w.total.nrng * sizeof(deja_rng_stream)) +
           ALIGN_UP(w.total.ntags * sizeof(deja_tag)) +
           ALIGN_UP(w.total.nkinds * sizeof(deja_output_decl)) +
           ALIGN_UP(w.total.ncks * sizeof(deja_checkpoint)) +
           ALIGN_UP(w.total.ndims * sizeof(uint64_t)) +
           ALIGN_UP(w.total.ndraws * sizeof(uint64_t)) +
           ALIGN_UP(w.total.nclock * sizeof(int64_t)) +
           ALIGN_UP(w.total.nstrings * sizeof(uint8_t *)) + w.total.ncopy;
    block = malloc(need);
    if (block == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory (%zu bytes)", need);
        goto cleanup;
    }
    p = block;
    impl = carve(&p, 1, sizeof *impl);
    memset(impl, 0, sizeof *impl);
    w.rec = carve(&p, size + 1, 1);
    if (size > 0)
        memcpy((uint8_t *)(uintptr_t)w.rec, data, size);
    ((uint8_t *)(uintptr_t)w.rec)[size] = '\0';
    impl->ntensors = nt;
    impl->tensors = carve(&p, nt, sizeof(deja_tensor));
    impl->digests = carve(&p, nt, sizeof(deja_digest));
    impl->is_blob = carve(&p, nt, 1);
    impl->attached = carve(&p, nt, sizeof(void *));
    memset(impl->attached, 0, nt * sizeof(void *));
    w.params = carve(&p, w.total.nparams, sizeof(deja_param));
    w.seeds = carve(&p, w.total.nseeds, sizeof(deja_seed));
    w.rng = carve(&p, w.total.nrng, sizeof(deja_rng_stream));
    w.tags = carve(&p, w.total.ntags, sizeof(deja_tag));
    w.kinds = carve(&p, w.total.nkinds, sizeof(deja_output_decl));
    w.cks = carve(&p, w.total.ncks, sizeof(deja_checkpoint));
    memset(w.cks, 0, w.total.ncks * sizeof(deja_checkpoint));
    w.dims = carve(&p, w.total.ndims, sizeof(uint64_t));
    w.draws = carve(&p, w.total.ndraws, sizeof(uint64_t));
    w.clock = carve(&p, w.total.nclock, sizeof(int64_t));
    w.ends = carve(&p, w.total.nstrings, sizeof(uint8_t *));
    w.copies = p;
    w.impl = impl;

    /* The second pass, over the copy. */
    w.fill = 1;
    memset(&w.n, 0, sizeof w.n);
    memset(&w.t, 0, sizeof w.t);
    t = &impl->pub;
    rc = trace_walk(&w, (span){w.rec, w.rec + size});
    if (rc == 0)
        rc = top_strings(&w, t);
    if (rc == -1 || (rc == 0 && memcmp(&w.n, &w.total, sizeof w.n) != 0)) {
        /* The passes read the same bytes with the same code: never. */
        rc = deja__error_set(DEJA_ECORRUPT, "record decoded differently twice");
        goto cleanup;
    }
    if (rc != 0)
        goto cleanup;

    memcpy(t->id.bytes, w.t.id.p, sizeof t->id.bytes);
    t->start_ns = w.t.start_ns;
    t->duration_ns = w.t.duration_ns;
    t->model_digest = w.t.m_digest.end != w.t.m_digest.p ? w.t.m_digest.p : NULL;
    t->model_digest_size = (size_t)(w.t.m_digest.end - w.t.m_digest.p);
    t->has_model_config = w.t.m_has_config;
    t->inputs = impl->tensors;
    t->ninputs = w.total.nin;
    t->outputs = impl->tensors + w.total.nin;
    t->noutputs = w.total.nout;
    t->params = w.params;
    t->nparams = w.total.nparams;
    t->seeds = w.seeds;
    t->nseeds = w.total.nseeds;
    t->rng = w.rng;
    t->nrng = w.total.nrng;
    t->clock_ns = w.total.nclock ? w.clock : NULL;
    t->nclock = w.total.nclock;
    t->has_env = w.t.env.end - w.t.env.p == 16;
    if (t->has_env)
        memcpy(t->env.bytes, w.t.env.p, 16);
    t->status = w.t.status == DEJA_STATUS_ERROR ? DEJA_STATUS_ERROR : DEJA_STATUS_OK;
    t->tags = w.tags;
    t->ntags = w.total.ntags;
    t->has_parent = w.t.parent.end - w.t.parent.p == 16;
    if (t->has_parent)
        memcpy(t->parent.bytes, w.t.parent.p, 16);
    t->output_kinds = w.kinds;
    t->noutput_kinds = w.total.nkinds;
    t->checkpoints = w.cks;
    t->ncheckpoints = w.total.ncks;
    /* Every field is read: the strings can end now. */
    for (size_t i = 0; i < w.total.nstrings; i++)
        *w.ends[i] = '\0';
    *out = t;
    block = NULL;
cleanup:
    if (rc != 0 && named) {
        deja_id_format(&id, idtext);
        deja__error_wrap(rc, "trace %s: ", idtext);
    }
    free(block);
    return rc;
}

/* Return the index into impl->tensors of tensor `index` on `side`, or
 * (size_t)-1 when out of range. */
static size_t tensor_slot(const trace_impl *impl, deja_side side, size_t index)
{
    const size_t n = side == DEJA_INPUT ? impl->pub.ninputs : impl->pub.noutputs;

    if (index >= n)
        return (size_t)-1;
    return side == DEJA_INPUT ? index : impl->pub.ninputs + index;
}

/* Return the blob digest of tensor `index` on `side` of a trace made by
 * deja__trace_decode(), or NULL when that tensor is inline or out of
 * range. */
const deja_digest *deja__trace_blob(const deja_trace *trace, deja_side side, size_t index)
{
    const trace_impl *impl = (const trace_impl *)trace;
    size_t slot;

    if (trace == NULL)
        return NULL;
    slot = tensor_slot(impl, side, index);
    if (slot == (size_t)-1 || !impl->is_blob[slot])
        return NULL;
    return &impl->digests[slot];
}

/* Give the malloc'd payload `data` (`size` bytes) to tensor `index` on
 * `side` of a trace made by deja__trace_decode(): the trace owns it from
 * now on (freeing any payload attached before) and shows it as the
 * tensor's data. A payload whose size is not the tensor's is refused
 * (DEJA_ECORRUPT, naming the tensor) and freed, so that no reader ever
 * walks past the end of a blob; so is an index out of range (DEJA_EINVAL). */
int deja__trace_attach(deja_trace *trace, deja_side side, size_t index, void *data, size_t size)
{
    trace_impl *impl = (trace_impl *)trace;
    size_t slot;

    if (trace == NULL) {
        free(data);
        return deja__error_set(DEJA_EINVAL, "attach: no trace");
    }
    slot = tensor_slot(impl, side, index);
    if (slot == (size_t)-1) {
        free(data);
        return deja__error_set(DEJA_EINVAL, "attach: no %s %zu",
                               side == DEJA_INPUT ? "input" : "output", index);
    }
    if (size != impl->tensors[slot].size) {
        free(data);
        return deja__error_set(DEJA_ECORRUPT, "%s '%s' claims %zu bytes, its blob holds %zu",
                               side == DEJA_INPUT ? "input" : "output", impl->tensors[slot].name,
                               impl->tensors[slot].size, size);
    }
    free(impl->attached[slot]);
    impl->attached[slot] = data;
    impl->tensors[slot].data = data;
    return 0;
}

/* Free a trace made by deja__trace_decode() (and so by deja_trace_get()):
 * its block and every attached payload. Accepts NULL. */
void deja_trace_free(deja_trace *trace)
{
    trace_impl *impl = (trace_impl *)trace;

    if (trace == NULL)
        return;
    for (size_t i = 0; i < impl->ntensors; i++)
        free(impl->attached[i]);
    free(impl);
}
