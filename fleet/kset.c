/*
 * fleet/kset.c -- a set of 16-byte keys (digests, ids): open addressing,
 * the key's own bytes, mixed, as its hash (ids of one millisecond differ by a counter).
 */
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet_internal.h"

/* Whether the 16 bytes at `a` and `b` are equal, and all zero (two words:
 * these run for every object and trace a ship sees). */
static int same(const uint8_t *a, const uint8_t *b)
{
    uint64_t x[2], y[2];

    memcpy(x, a, 16);
    memcpy(y, b, 16);
    return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
}

static int empty(const uint8_t *a)
{
    uint64_t x[2];

    memcpy(x, a, 16);
    return (x[0] | x[1]) == 0;
}

static size_t slot_of(const uint8_t key[16], size_t cap)
{
    uint64_t h, l;

    /* Ids of one millisecond differ by a counter: mix, or they cluster. */
    memcpy(&h, key + 8, 8);
    memcpy(&l, key, 8);
    h = (h ^ l) * 0x9E3779B97F4A7C15u;
    return (size_t)(h ^ (h >> 32)) & (cap - 1);
}

int deja__kset_has(const deja__kset *s, const uint8_t key[16])
{
    if (empty(key))
        return s->has_zero;
    if (s->cap == 0)
        return 0;
    for (size_t i = slot_of(key, s->cap);; i = (i + 1) & (s->cap - 1)) {
        const uint8_t *k = s->keys + i * 16;

        if (same(k, key))
            return 1;
        if (empty(k))
            return 0;
    }
}

static void insert(uint8_t *keys, size_t cap, const uint8_t key[16])
{
    size_t i = slot_of(key, cap);

    while (!empty(keys + i * 16))
        i = (i + 1) & (cap - 1);
    memcpy(keys + i * 16, key, 16);
}

int deja__kset_add(deja__kset *s, const uint8_t key[16])
{
    if (empty(key)) {
        s->has_zero = 1;
        return 0;
    }
    if (deja__kset_has(s, key))
        return 0;
    if ((s->n + 1) * 2 > s->cap) {
        const size_t cap = s->cap ? s->cap * 2 : 1024;
        uint8_t *keys = calloc(cap, 16);

        if (keys == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        for (size_t i = 0; i < s->cap; i++)
            if (!empty(s->keys + i * 16))
                insert(keys, cap, s->keys + i * 16);
        free(s->keys);
        s->keys = keys;
        s->cap = cap;
    }
    insert(s->keys, s->cap, key);
    s->n++;
    return 0;
}

void deja__kset_clear(deja__kset *s)
{
    if (s->keys != NULL)
        memset(s->keys, 0, s->cap * 16);
    s->n = 0;
    s->has_zero = 0;
}

void deja__kset_free(deja__kset *s)
{
    free(s->keys);
    memset(s, 0, sizeof *s);
}
