/*
 * core/progress.h -- reporting progress to the calling thread's handler
 * (deja_progress_handler in include/deja.h); see progress.c.
 */
#ifndef DEJA_CORE_PROGRESS_H
#define DEJA_CORE_PROGRESS_H

#include <stdint.h>

#include "deja.h"

/* Tell the calling thread's handler, if any, that `done` of `total` units
 * of the running operation are done (done is capped at total). Cheap when
 * no handler is set: call it once per unit. */
void deja__progress(uint64_t done, uint64_t total);

/* The calling thread's handler and its payload (NULL when none), for an
 * operation that reports from a loop of its own on the same thread. */
void deja__progress_get(deja_progress_cb *cb, void **payload);

#endif /* DEJA_CORE_PROGRESS_H */
