/*
 * core/core.h -- the bottom room, in one include.
 *
 * Room core/: what every room shares -- the per-thread last error
 * (error.h), growable buffers (buf.h), ids and the clock (id.h), content
 * digests (digest.c, declared in include/deja.h), the bounds of deja's
 * formats (limits.h), the rule for names (text.h), varints (varint.h)
 * and the calling thread's progress handler (progress.h). It calls
 * nothing of deja but the public headers' types; every other room may
 * call it, and it calls none of them.
 */
#ifndef DEJA_CORE_CORE_H
#define DEJA_CORE_CORE_H

#include "core/buf.h"
#include "core/error.h"
#include "core/id.h"
#include "core/limits.h"
#include "core/progress.h"
#include "core/text.h"
#include "core/varint.h"

#endif /* DEJA_CORE_CORE_H */
