/*
 * proto/dtype.c -- names and element sizes of tensor dtypes.
 *
 * The public deja_dtype values equal the DType values of deja.proto by
 * design, so the codec converts between them with a cast.
 */
#include <math.h>
#include <string.h>

#include "deja.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [DEJA_DTYPE_INVALID] = {NULL, 0}, [DEJA_F16] = {"f16", 2},
    [DEJA_BF16] = {"bf16", 2},        [DEJA_F32] = {"f32", 4},
    [DEJA_F64] = {"f64", 8},          [DEJA_I8] = {"i8", 1},
    [DEJA_I16] = {"i16", 2},          [DEJA_I32] = {"i32", 4},
    [DEJA_I64] = {"i64", 8},          [DEJA_U8] = {"u8", 1},
    [DEJA_U16] = {"u16", 2},          [DEJA_U32] = {"u32", 4},
    [DEJA_U64] = {"u64", 8},          [DEJA_BOOL] = {"bool", 1},
    [DEJA_BYTES] = {"bytes", 1},      [DEJA_UTF8] = {"utf8", 1},
};

#define NDTYPES (sizeof(dtypes) / sizeof(dtypes[0]))

/* Return the short name of `dtype` ("f32", "utf8", ...), or NULL when
 * `dtype` is DEJA_DTYPE_INVALID or out of range. The string is static. */
const char *deja_dtype_name(deja_dtype dtype)
{
    if ((unsigned)dtype >= NDTYPES)
        return NULL;
    return dtypes[dtype].name;
}

/* Return the dtype whose name is exactly `name` (lowercase, as printed by
 * deja_dtype_name), or DEJA_DTYPE_INVALID for NULL or any other string. */
deja_dtype deja_dtype_parse(const char *name)
{
    deja_dtype found = DEJA_DTYPE_INVALID;

    if (name == NULL)
        goto cleanup;
    for (size_t i = 1; i < NDTYPES; i++) {
        if (strcmp(dtypes[i].name, name) == 0) {
            found = (deja_dtype)i;
            break;
        }
    }
cleanup:
    return found;
}

/* Return the size in bytes of one element of `dtype` (1 for bytes, utf8
 * and bool), or 0 when `dtype` is invalid. */
size_t deja_dtype_size(deja_dtype dtype)
{
    if ((unsigned)dtype >= NDTYPES)
        return 0;
    return dtypes[dtype].size;
}

/* The value of IEEE half-precision bits: subnormals, infinities and NaN
 * included. */
double deja_f16_value(uint16_t bits)
{
    const int exp = (bits >> 10) & 0x1f;
    const unsigned mant = bits & 0x3ff;
    double v;

    if (exp == 0)
        v = ldexp((double)mant, -24);
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexp((double)(mant | 0x400), exp - 25);
    return (bits >> 15) ? -v : v;
}

/* The value of bfloat16 bits: the top half of an IEEE single. */
double deja_bf16_value(uint16_t bits)
{
    const uint32_t w = (uint32_t)bits << 16;
    float f;

    memcpy(&f, &w, sizeof f);
    return f;
}
