/*
 * core/buf.c -- growable byte buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/error.h"
#include "deja.h"

/* Make room for `extra` more bytes after b->size, growing geometrically.
 * Returns 0, or DEJA_ENOMEM when the size overflows or malloc fails (the
 * buffer is then unchanged). */
int deja__buf_reserve(deja__buf *b, size_t extra)
{
    size_t want;
    size_t cap;
    uint8_t *p;

    if (extra > SIZE_MAX - b->size)
        return deja__error_set(DEJA_ENOMEM, "buffer of %zu bytes cannot grow by %zu", b->size,
                               extra);
    want = b->size + extra;
    if (want <= b->cap && b->data != NULL)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap = cap > SIZE_MAX / 2 ? want : cap * 2;
    p = realloc(b->data, cap);
    if (p == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Append `size` bytes at `data` to `b`. Returns 0 or DEJA_ENOMEM. */
int deja__buf_append(deja__buf *b, const void *data, size_t size)
{
    int rc = deja__buf_reserve(b, size);

    if (rc == 0 && size > 0) {
        memcpy(b->data + b->size, data, size);
        b->size += size;
    }
    return rc;
}

/* Release the memory of `b` and leave it empty and reusable. */
void deja__buf_free(deja__buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->size = 0;
    b->cap = 0;
}
