/*
 * proto/rng.c -- deja's stream generator: xoshiro256** seeded through
 * splitmix64. It is part of the record format: a recorded RNG stream whose
 * draws are this generator's output from its seed is stored as the seed and
 * a count (see RngStream in deja.proto), and decoding regenerates the draws.
 * Changing it would change what old records mean: never do.
 */
#include "proto/codec.h"

/* Advance a splitmix64 state and return its next output. */
uint64_t deja__splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Seed a xoshiro256** generator from one 64-bit seed through splitmix64,
 * as its authors recommend. */
void deja__xoshiro_seed(deja__xoshiro *g, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < 4; i++)
        g->s[i] = deja__splitmix64(&s);
}

/* Rotate left by k (0 < k < 64). */
static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* The next output of a xoshiro256** generator. */
uint64_t deja__xoshiro_next(deja__xoshiro *g)
{
    uint64_t *s = g->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Non-zero when `draws` are the first `n` outputs of the generator seeded
 * with `seed`. */
int deja__rng_is_generated(uint64_t seed, const uint64_t *draws, size_t n)
{
    deja__xoshiro g;
    deja__xoshiro_seed(&g, seed);
    for (size_t i = 0; i < n; i++)
        if (deja__xoshiro_next(&g) != draws[i])
            return 0;
    return 1;
}

/* Write the first `n` outputs of the generator seeded with `seed`. */
void deja__rng_generate(uint64_t seed, uint64_t *out, size_t n)
{
    deja__xoshiro g;
    deja__xoshiro_seed(&g, seed);
    for (size_t i = 0; i < n; i++)
        out[i] = deja__xoshiro_next(&g);
}
