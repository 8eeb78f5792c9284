/*
 * tracer/rng.c -- the random numbers of the tracer: splitmix64 and
 * xoshiro256** for the determinism context (reproducible from a seed), a
 * cheap thread-local generator for sampling, and OS entropy for base seeds.
 */
#include <string.h>
#include <sys/random.h>

#include "tracer/tracer_internal.h"

/* The splitmix64 output for state `x`: a good 64-bit mixer. */
uint64_t deja__mix64(uint64_t x)
{
    return deja__splitmix64(&x);
}

/* FNV-1a of a NUL-terminated name, identical on every platform (so seeds
 * derived from names replay anywhere). NULL hashes as "". */
uint64_t deja__hash_name(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    if (name != NULL) {
        for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
            h ^= *p;
            h *= 0x100000001b3ULL;
        }
    }
    return h;
}

static _Thread_local uint64_t fast_state;

/* A double in [0, 1) from a per-thread xorshift generator seeded lazily from
 * the clock and the thread's address: no syscall, no lock. Good enough for
 * sampling decisions; never used for anything replayed. */
double deja__fast_uniform(void)
{
    uint64_t x = fast_state;
    if (x == 0) {
        uint64_t s = (uint64_t)deja__now_ns() ^ (uint64_t)(uintptr_t)&fast_state;
        x = deja__splitmix64(&s) | 1u;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    fast_state = x;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* 64 bits of OS entropy; falls back on the clock if getrandom fails. The
 * result is never 0, so that it can stand for "no seed given". */
uint64_t deja__os_random(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
        uint64_t s = (uint64_t)deja__now_ns() ^ (uint64_t)(uintptr_t)&v;
        v = deja__splitmix64(&s);
    }
    return v != 0 ? v : 0x9e3779b97f4a7c15ULL;
}
