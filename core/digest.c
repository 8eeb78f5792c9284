/*
 * core/digest.c -- content digests: XXH3-128 in canonical byte order, the
 * key of every blob, chunk and environment.
 */
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

#include "deja.h"

/* Return the XXH3-128 digest of `size` bytes at `data`, in the canonical
 * big-endian byte order. `data` may be NULL when `size` is 0. */
deja_digest deja_digest_of(const void *data, size_t size)
{
    static const uint8_t empty[1];
    deja_digest d;
    XXH128_canonical_t c;

    XXH128_canonicalFromHash(&c, XXH3_128bits(size ? data : empty, size));
    memcpy(d.bytes, c.digest, sizeof d.bytes);
    return d;
}

/* Write the 32 lowercase hex characters of `d` and a NUL into `out`. */
void deja_digest_format(const deja_digest *d, char out[33])
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[d->bytes[i] >> 4];
        out[2 * i + 1] = hex[d->bytes[i] & 0xF];
    }
    out[32] = '\0';
}
