/*
 * core/id.h -- trace ids (ULID layout) and the clock they are made from.
 * The public side (formatting, parsing, digests) is in include/deja.h.
 */
#ifndef DEJA_CORE_ID_H
#define DEJA_CORE_ID_H

#include <stdint.h>
#include <time.h>

#include "deja.h"

/* A new trace id: the current time in ms and 80 random bits; strictly
 * increasing within a process, unique across processes and hosts. */
void deja__id_new(deja_id *out);

/* A new id for the Unix time `unix_ns` (as read by deja__now_ns()),
 * lock-free: strictly increasing per thread, unique across threads and
 * processes (80 random bits per millisecond, counted up within one). */
void deja__id_new_ns(deja_id *out, int64_t unix_ns);

/* A new id for the time `unix_ms` (used by tests and imports). */
void deja__id_new_at(deja_id *out, int64_t unix_ms);

/* The current Unix time in nanoseconds. */
int64_t deja__now_ns(void);

/* The time `ms` milliseconds from now on `clock`: a deadline for
 * pthread_cond_timedwait (CLOCK_REALTIME, or the clock the condition
 * variable was made with). */
struct timespec deja__clock_after(clockid_t clock, unsigned ms);

#endif /* DEJA_CORE_ID_H */
