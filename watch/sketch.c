/*
 * watch/sketch.c -- a quantile sketch with a bounded relative error, for
 * latencies and sizes streamed over millions of traces.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "watch/watch_internal.h"

/* log((1 + a) / (1 - a)) for a = DEJA__SKETCH_ALPHA = 0.01. */
#define LOG_GAMMA 0.020000666706669435

/* Bucket index of a magnitude above DEJA__SKETCH_MIN. */
static int32_t bucket_of(double m)
{
    return (int32_t)ceil(log(m) / LOG_GAMMA);
}

/* The value a bucket stands for: the point of least relative error. */
static double bucket_value(int32_t i)
{
    const double gamma = (1.0 + DEJA__SKETCH_ALPHA) / (1.0 - DEJA__SKETCH_ALPHA);

    return 2.0 * pow(gamma, (double)i) / (gamma + 1.0);
}

/* Count one value in bucket `i` of a side, growing its counters to cover
 * it. Returns 0 or DEJA_ENOMEM. */
static int side_add(deja__sketch_side *s, int32_t i)
{
    if (s->n == 0) {
        s->counts = calloc(64, sizeof *s->counts);
        if (s->counts == NULL)
            return deja__error_set(DEJA_ENOMEM, "sketch: out of memory");
        s->n = 64;
        s->lo = i - 32;
    }
    if (i < s->lo || (size_t)(i - s->lo) >= s->n) {
        const int32_t lo = i < s->lo ? i - 64 : s->lo;
        const int32_t hi = i < s->lo ? s->lo + (int32_t)s->n : i + 64;
        const size_t n = (size_t)(hi - lo);
        uint64_t *grown = calloc(n, sizeof *grown);

        if (grown == NULL)
            return deja__error_set(DEJA_ENOMEM, "sketch: out of memory");
        memcpy(grown + (s->lo - lo), s->counts, s->n * sizeof *grown);
        free(s->counts);
        s->counts = grown;
        s->lo = lo;
        s->n = n;
    }
    s->counts[i - s->lo]++;
    return 0;
}

/* Add one value; NaN is ignored, infinities count at the extremes. */
int deja__sketch_add(deja__sketch *s, double v)
{
    double m;
    int rc = 0;

    if (isnan(v))
        return 0;
    m = fabs(v);
    if (isinf(m))
        m = 1e300;
    if (m <= DEJA__SKETCH_MIN)
        s->zero++;
    else
        rc = side_add(v > 0 ? &s->pos : &s->neg, bucket_of(m));
    if (rc != 0)
        return rc;
    if (s->count == 0 || v < s->min)
        s->min = v;
    if (s->count == 0 || v > s->max)
        s->max = v;
    s->count++;
    s->sum += v;
    return 0;
}

/* Add `n` to bucket `i` of a side. */
static int side_add_n(deja__sketch_side *s, int32_t i, uint64_t n)
{
    int rc = side_add(s, i);

    if (rc == 0)
        s->counts[i - s->lo] += n - 1;
    return rc;
}

/* Merge `src` into `dst`: the result is the sketch of both samples. */
int deja__sketch_merge(deja__sketch *dst, const deja__sketch *src)
{
    int rc = 0;

    if (src->count == 0)
        return 0;
    for (size_t k = 0; k < src->pos.n && rc == 0; k++)
        if (src->pos.counts[k] != 0)
            rc = side_add_n(&dst->pos, src->pos.lo + (int32_t)k, src->pos.counts[k]);
    for (size_t k = 0; k < src->neg.n && rc == 0; k++)
        if (src->neg.counts[k] != 0)
            rc = side_add_n(&dst->neg, src->neg.lo + (int32_t)k, src->neg.counts[k]);
    if (rc != 0)
        return rc;
    dst->zero += src->zero;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->count == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    return 0;
}

/* The value at quantile `q` (0..1) of what was added, within the sketch's
 * relative error, clamped to the exact minimum and maximum. */
double deja__sketch_quantile(const deja__sketch *s, double q)
{
    uint64_t rank, seen = 0;
    double v = NAN;

    if (s->count == 0)
        return NAN;
    if (q <= 0.0)
        return s->min;
    if (q >= 1.0)
        return s->max;
    rank = (uint64_t)floor(q * (double)(s->count - 1));
    for (size_t k = s->neg.n; k-- > 0;) {
        seen += s->neg.counts[k];
        if (seen > rank) {
            v = -bucket_value(s->neg.lo + (int32_t)k);
            goto clamp;
        }
    }
    seen += s->zero;
    if (seen > rank) {
        v = 0.0;
        goto clamp;
    }
    for (size_t k = 0; k < s->pos.n; k++) {
        seen += s->pos.counts[k];
        if (seen > rank) {
            v = bucket_value(s->pos.lo + (int32_t)k);
            goto clamp;
        }
    }
    v = s->max;
clamp:
    if (v < s->min)
        v = s->min;
    if (v > s->max)
        v = s->max;
    return v;
}

/* Free the counters; the sketch is empty again. */
void deja__sketch_free(deja__sketch *s)
{
    free(s->pos.counts);
    free(s->neg.counts);
    memset(s, 0, sizeof *s);
}
