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

#endif /* DEJA_CORE_LIMITS_H */
