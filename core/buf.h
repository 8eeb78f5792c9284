/*
 * core/buf.h -- a growable byte buffer, the one every room uses to build
 * records, bundles and messages.
 */
#ifndef DEJA_CORE_BUF_H
#define DEJA_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer; zero-initialise, release with deja__buf_free(). */
typedef struct deja__buf {
    uint8_t *data;
    size_t size;
    size_t cap;
} deja__buf;

/* Make room for `extra` more bytes after b->size. Returns 0 or DEJA_ENOMEM
 * (the buffer is then unchanged). */
int deja__buf_reserve(deja__buf *b, size_t extra);

/* Append `size` bytes at `data`. Returns 0 or DEJA_ENOMEM. */
int deja__buf_append(deja__buf *b, const void *data, size_t size);

/* Release the memory of `b` and leave it empty and reusable; accepts NULL. */
void deja__buf_free(deja__buf *b);

#endif /* DEJA_CORE_BUF_H */
