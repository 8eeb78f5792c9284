/*
 * watch/values.c -- reading tensors as numbers, and deciding which outputs
 * are scores over classes.
 */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "watch/watch_internal.h"

int deja__watch_is_float(deja_dtype d)
{
    return d == DEJA_F16 || d == DEJA_BF16 || d == DEJA_F32 || d == DEJA_F64;
}

int deja__watch_is_numeric(deja_dtype d)
{
    return d >= DEJA_F16 && d <= DEJA_BOOL;
}

size_t deja__watch_count(const deja_tensor *t)
{
    const size_t es = deja_dtype_size(t->dtype);

    return es == 0 || t->data == NULL ? 0 : t->size / es;
}

double deja__watch_value(const deja_tensor *t, size_t i)
{
    const uint8_t *p = (const uint8_t *)t->data + i * deja_dtype_size(t->dtype);

    switch (t->dtype) {
    case DEJA_F16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return deja_f16_value(v);
    }
    case DEJA_BF16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return deja_bf16_value(v);
    }
    case DEJA_F32: {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    case DEJA_F64: {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    case DEJA_I8:
        return (int8_t)p[0];
    case DEJA_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case DEJA_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case DEJA_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        return (double)v;
    }
    case DEJA_U8:
    case DEJA_BOOL:
        return p[0];
    case DEJA_U16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case DEJA_U32: {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case DEJA_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        return (double)v;
    }
    default:
        return NAN;
    }
}

deja_output_kind deja__watch_kind_of(const deja_trace *trace, const char *name)
{
    for (size_t i = 0; trace != NULL && name != NULL && i < trace->noutput_kinds; i++)
        if (trace->output_kinds[i].name != NULL && strcmp(trace->output_kinds[i].name, name) == 0)
            return trace->output_kinds[i].kind;
    return DEJA_KIND_AUTO;
}

/* The declared kind decides; the name only when nothing was declared (as
 * in the diff, replay/diff.c). */
int deja__watch_is_scores(const deja_tensor *t, deja_output_kind kind)
{
    static const char *const words[] = {"logit", "score", "prob", "class"};
    const char *name = t->name ? t->name : "";
    const size_t n = strlen(name);

    if (!deja__watch_is_float(t->dtype) || t->ndim == 0 || t->shape == NULL ||
        t->shape[t->ndim - 1] < 2)
        return 0;
    if (kind != DEJA_KIND_AUTO)
        return kind == DEJA_KIND_SCORES || kind == DEJA_KIND_PROBS;
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
        const size_t wl = strlen(words[w]);

        for (size_t j = 0; j + wl <= n; j++)
            if (strncasecmp(name + j, words[w], wl) == 0)
                return 1;
    }
    return 0;
}

size_t deja__watch_rows(const deja_tensor *t, size_t *classes)
{
    const size_t c = t->ndim ? (size_t)t->shape[t->ndim - 1] : 0;
    const size_t n = deja__watch_count(t);

    *classes = c;
    return c == 0 ? 0 : n / c;
}

size_t deja__watch_argmax(const deja_tensor *t, size_t r, size_t classes)
{
    size_t best = 0;
    double bv = -INFINITY;

    for (size_t c = 0; c < classes; c++) {
        double v = deja__watch_value(t, r * classes + c);

        if (isnan(v))
            v = -INFINITY;
        if (c == 0 || v > bv) {
            bv = v;
            best = c;
        }
    }
    return best;
}

size_t deja__watch_utf8_chars(const uint8_t *s, size_t size)
{
    size_t n = 0;

    for (size_t i = 0; i < size; i++)
        n += (s[i] & 0xC0) != 0x80;
    return n;
}

uint64_t deja__watch_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
