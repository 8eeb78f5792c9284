/*
 * core/limits.h -- the bounds of deja's formats, one constant each, used by
 * the side that writes and the side that reads alike, so that whatever is
 * recorded can be read back.
 */
#ifndef DEJA_CORE_LIMITS_H
#define DEJA_CORE_LIMITS_H

#include <stddef.h>

/* Bounds on anything read back from disk or a bundle. */
#define DEJA__MAX_RECORD ((size_t)1 << 30)
#define DEJA__MAX_NAME 4096
/* RNG draws one trace may hold, over all its streams: recording refuses a
 * trace beyond it, reading refuses a record claiming more (32 MiB). */
#define DEJA__MAX_DRAWS ((size_t)1 << 22)

/* A pin's note, and the tag key that protects traces from eviction. */
#define DEJA__PIN_NOTE_MAX 4096
#define DEJA__PROTECT_TAG_MAX 255

#endif /* DEJA_CORE_LIMITS_H */
