/*
 * watch/map.c -- a small string-keyed hash map for grouping traces (by
 * version, tag value, field name) while streaming over a store.
 */
#include <stdlib.h>
#include <string.h>

#include "watch/watch_internal.h"

/* FNV-1a over the key. */
static size_t hash_key(const char *key, size_t klen)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < klen; i++) {
        h ^= (uint8_t)key[i];
        h *= 1099511628211ULL;
    }
    return (size_t)(h ^ (h >> 29));
}

/* Start an empty map whose values are `width` bytes each. */
void deja__map_init(deja__map *m, size_t width)
{
    memset(m, 0, sizeof *m);
    m->width = width;
}

/* The slot holding `key`, or the empty slot where it would go. */
static size_t slot_of(const deja__map *m, const char *key, size_t klen)
{
    size_t i = hash_key(key, klen) & (m->nslots - 1);

    while (m->slots[i] != 0) {
        const char *k = m->keys[m->slots[i] - 1];

        if (strlen(k) == klen && memcmp(k, key, klen) == 0)
            break;
        i = (i + 1) & (m->nslots - 1);
    }
    return i;
}

/* Double the slot table (or create it) and rehash. */
static int rehash(deja__map *m)
{
    const size_t nslots = m->nslots ? m->nslots * 2 : 64;
    size_t *slots = calloc(nslots, sizeof *slots);
    size_t *old = m->slots;

    if (slots == NULL)
        return -1;
    m->slots = slots;
    m->nslots = nslots;
    for (size_t i = 0; i < m->n; i++)
        m->slots[slot_of(m, m->keys[i], strlen(m->keys[i]))] = i + 1;
    free(old);
    return 0;
}

/* Find the value of `key`, or NULL. */
void *deja__map_find(const deja__map *m, const char *key, size_t klen)
{
    size_t i;

    if (m->nslots == 0)
        return NULL;
    i = slot_of(m, key, klen);
    return m->slots[i] ? m->values[m->slots[i] - 1] : NULL;
}

/* Find or create the value of `key`. */
void *deja__map_get(deja__map *m, const char *key, size_t klen, int *created)
{
    size_t i;
    char *k;
    void *v;

    if (created != NULL)
        *created = 0;
    if ((m->n + 1) * 2 > m->nslots && rehash(m) != 0)
        return NULL;
    i = slot_of(m, key, klen);
    if (m->slots[i] != 0)
        return m->values[m->slots[i] - 1];
    if (m->n == m->cap) {
        const size_t cap = m->cap ? m->cap * 2 : 16;
        char **keys = realloc(m->keys, cap * sizeof *keys);

        if (keys == NULL)
            return NULL;
        m->keys = keys;
        void **values = realloc(m->values, cap * sizeof *values);
        if (values == NULL)
            return NULL;
        m->values = values;
        m->cap = cap;
    }
    k = malloc(klen + 1);
    v = calloc(1, m->width ? m->width : 1);
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        return NULL;
    }
    memcpy(k, key, klen);
    k[klen] = '\0';
    m->keys[m->n] = k;
    m->values[m->n] = v;
    m->n++;
    m->slots[i] = m->n;
    if (created != NULL)
        *created = 1;
    return v;
}

/* Free keys, value blocks and tables (not what the values point to). */
void deja__map_free(deja__map *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    free(m->slots);
    memset(m, 0, sizeof *m);
}
