/*
 * core/varint.h -- LEB128 varints (protobuf's), written into a growable
 * buffer and read back with a bound on their length: the one reader and
 * writer for chunk manifests, trace references and the record peek.
 */
#ifndef DEJA_CORE_VARINT_H
#define DEJA_CORE_VARINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Append `x` as a varint to `out`. Returns 0 or DEJA_ENOMEM. */
static inline int deja__varint_put(deja__buf *out, uint64_t x)
{
    uint8_t b[10];
    size_t n = 0;

    do {
        b[n] = (uint8_t)(x & 0x7f);
        x >>= 7;
        if (x != 0)
            b[n] |= 0x80;
        n++;
    } while (x != 0);
    return deja__buf_append(out, b, n);
}

/* Read a varint of at most `max_bytes` bytes (1..10) at `*p` before `end`,
 * advancing `*p`. 0, or -1 when it is cut short or longer. */
static inline int deja__varint_get(const uint8_t **p, const uint8_t *end, unsigned max_bytes,
                                   uint64_t *out)
{
    uint64_t x = 0;

    for (unsigned i = 0; i < max_bytes; i++) {
        if (*p >= end)
            return -1;
        const uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *out = x;
            return 0;
        }
    }
    return -1;
}

#endif /* DEJA_CORE_VARINT_H */
