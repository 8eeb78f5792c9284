/*
 * proto/tensor_stats.c -- the summary of a tensor's values (count, NaN and
 * Inf counts, min, max and mean of the finite elements): what a checkpoint
 * recorded digest-only keeps instead of its bytes, and what `deja show`
 * prints for one. Part of the record format, so it lives beside the codec.
 */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "deja.h"

/* The value of element `i` of `t` as a double (the dtype is numeric). */
static double element(const deja_tensor *t, size_t i)
{
    const unsigned char *p = (const unsigned char *)t->data + i * deja_dtype_size(t->dtype);
    union {
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f32;
        double f64;
    } v;
    memcpy(&v, p, deja_dtype_size(t->dtype));
    switch (t->dtype) {
    case DEJA_F16:
        return deja_f16_value(v.u16);
    case DEJA_BF16:
        return deja_bf16_value(v.u16);
    case DEJA_F32:
        return (double)v.f32;
    case DEJA_F64:
        return v.f64;
    case DEJA_I8:
        return (double)(int8_t)p[0];
    case DEJA_U8:
    case DEJA_BOOL:
        return (double)p[0];
    case DEJA_I16:
        return (double)v.i16;
    case DEJA_U16:
        return (double)v.u16;
    case DEJA_I32:
        return (double)v.i32;
    case DEJA_U32:
        return (double)v.u32;
    case DEJA_I64:
        return (double)v.i64;
    case DEJA_U64:
        return (double)v.u64;
    default:
        return 0.0;
    }
}

/* The summary of `n` f32 (`f64` 0) or f64 values at `p`, without a call
 * per element: checkpoints of activations are mostly these, and digesting
 * one on the recording thread must stay cheap. */
#define SUMMARY_LOOP(T, BITS_T, EXP_MASK)                                                        \
    do {                                                                                         \
        for (size_t i = 0; i < n; i++) {                                                         \
            T x;                                                                                 \
            BITS_T bits;                                                                         \
            memcpy(&x, (const unsigned char *)p + i * sizeof x, sizeof x);                       \
            memcpy(&bits, &x, sizeof bits);                                                      \
            if ((bits & (EXP_MASK)) == (EXP_MASK)) {                                             \
                if (x != x)                                                                      \
                    out->nnan++;                                                                 \
                else                                                                             \
                    out->ninf++;                                                                 \
                continue;                                                                        \
            }                                                                                    \
            const double d = (double)x;                                                          \
            lo = d < lo ? d : lo;                                                                \
            hi = d > hi ? d : hi;                                                                \
            sum += d;                                                                            \
        }                                                                                        \
    } while (0)

static void summary_float(const void *p, size_t n, int f32, deja_tensor_stats *out)
{
    double lo = INFINITY, hi = -INFINITY, sum = 0.0;
    if (f32)
        SUMMARY_LOOP(float, uint32_t, 0x7f800000u);
    else
        SUMMARY_LOOP(double, uint64_t, 0x7ff0000000000000ull);
    const uint64_t finite = n - out->nnan - out->ninf;
    out->min = finite != 0 ? lo : 0.0;
    out->max = finite != 0 ? hi : 0.0;
    out->mean = finite != 0 ? sum / (double)finite : 0.0;
}

/* Summarise `tensor` into `out`; see include/deja.h. */
int deja_tensor_stats_of(const deja_tensor *tensor, deja_tensor_stats *out)
{
    if (tensor == NULL || out == NULL || deja_dtype_size(tensor->dtype) == 0 ||
        (tensor->size != 0 && tensor->data == NULL))
        return deja__error_set(DEJA_EINVAL, "tensor stats: a well-formed tensor is required");
    memset(out, 0, sizeof *out);
    if (tensor->dtype == DEJA_BYTES || tensor->dtype == DEJA_UTF8) {
        out->count = tensor->size;
        return 0;
    }
    out->numeric = 1;
    out->count = tensor->size / deja_dtype_size(tensor->dtype);
    if (tensor->dtype == DEJA_F32 || tensor->dtype == DEJA_F64) {
        summary_float(tensor->data, (size_t)out->count, tensor->dtype == DEJA_F32, out);
        return 0;
    }
    double sum = 0.0;
    uint64_t finite = 0;
    for (size_t i = 0; i < out->count; i++) {
        const double x = element(tensor, i);
        if (isnan(x)) {
            out->nnan++;
            continue;
        }
        if (isinf(x)) {
            out->ninf++;
            continue;
        }
        if (finite == 0 || x < out->min)
            out->min = x;
        if (finite == 0 || x > out->max)
            out->max = x;
        sum += x;
        finite++;
    }
    out->mean = finite != 0 ? sum / (double)finite : 0.0;
    return 0;
}
