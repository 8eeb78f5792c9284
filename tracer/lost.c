/*
 * tracer/lost.c -- traces never recorded, counted per model version.
 *
 * A span sampled out or dropped on a full queue leaves no trace behind, so
 * `deja stats --by model|version` could only show these losses store-wide.
 * Here each loss is also counted against its model and version, in a small
 * table of the tracer (DEJA__LOST_SLOTS versions; beyond that, losses are
 * counted store-wide only). Counting is lock-free on the recording
 * threads (a hash, a probe, an atomic add); a version's first loss takes a
 * mutex to copy its names. The writer hands what changed since its last
 * commit to the store with each commit (deja__wtxn_group_count_add).
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "tracer/tracer_internal.h"

struct deja__lost {
    pthread_mutex_t lock; /* inserting a version */
    deja__lost_slot slots[DEJA__LOST_SLOTS];
};

/* The key of a model version: never 0 (0 marks an empty slot). */
static uint64_t key_of(const char *model, const char *version)
{
    const uint64_t h =
        XXH64(version, strlen(version) + 1, XXH64(model, strlen(model) + 1, 0x64656a61ULL));

    return h != 0 ? h : 1;
}

/* The table of `t`, created on the first loss; NULL when out of memory. */
static deja__lost *table_of(deja_tracer *t)
{
    deja__lost *l = atomic_load_explicit(&t->lost, memory_order_acquire), *none = NULL;

    if (l != NULL)
        return l;
    l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    pthread_mutex_init(&l->lock, NULL);
    if (!atomic_compare_exchange_strong(&t->lost, &none, l)) {
        pthread_mutex_destroy(&l->lock);
        free(l);
        l = none;
    }
    return l;
}

/* The slot of `key` from `start` on, or the first empty one (NULL when the
 * table is full). */
static deja__lost_slot *probe(deja__lost *l, uint64_t key, int *empty)
{
    for (size_t i = 0; i < DEJA__LOST_SLOTS; i++) {
        deja__lost_slot *s = &l->slots[(key + i) % DEJA__LOST_SLOTS];
        const uint64_t k = atomic_load_explicit(&s->key, memory_order_acquire);

        if (k == key || k == 0) {
            *empty = k == 0;
            return s;
        }
    }
    return NULL;
}

void deja__lost_count(deja_tracer *t, const char *model, const char *version, int which)
{
    const char *m = model ? model : "", *v = version ? version : "";
    const uint64_t key = key_of(m, v);
    deja__lost *l = table_of(t);
    deja__lost_slot *s;
    int empty = 0;

    if (l == NULL)
        return;
    s = probe(l, key, &empty);
    if (s != NULL && empty) {
        /* First loss of this version: claim a slot under the lock, names
         * first, key last, so that a reader that sees the key sees them. */
        pthread_mutex_lock(&l->lock);
        s = probe(l, key, &empty);
        if (s != NULL && empty) {
            s->model = strdup(m);
            s->version = strdup(v);
            if (s->model == NULL || s->version == NULL) {
                free(s->model);
                free(s->version);
                s->model = s->version = NULL;
                s = NULL;
            } else {
                atomic_store_explicit(&s->key, key, memory_order_release);
            }
        }
        pthread_mutex_unlock(&l->lock);
    }
    if (s != NULL)
        atomic_fetch_add_explicit(&s->n[which], 1, memory_order_relaxed);
}

size_t deja__lost_take(deja_tracer *t, deja__lost_delta *out, size_t cap)
{
    deja__lost *l = atomic_load_explicit(&t->lost, memory_order_acquire);
    size_t n = 0;

    for (size_t i = 0; l != NULL && i < DEJA__LOST_SLOTS && n < cap; i++) {
        deja__lost_slot *s = &l->slots[i];
        deja__lost_delta d;

        if (atomic_load_explicit(&s->key, memory_order_acquire) == 0)
            continue;
        d.slot = s;
        for (int w = 0; w < DEJA__LOST_KINDS; w++) {
            d.now[w] = atomic_load_explicit(&s->n[w], memory_order_relaxed);
            d.delta[w] = d.now[w] - s->reported[w];
        }
        if (d.delta[0] != 0 || d.delta[1] != 0)
            out[n++] = d;
    }
    return n;
}

void deja__lost_reported(const deja__lost_delta *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (int w = 0; w < DEJA__LOST_KINDS; w++)
            d[i].slot->reported[w] = d[i].now[w];
}

int deja__lost_put(deja__wtxn *w, const deja__lost_delta *d, size_t n)
{
    static const char *const names[DEJA__LOST_KINDS] = {"sampled_out", "dropped"};
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++)
        for (int k = 0; k < DEJA__LOST_KINDS && rc == 0; k++)
            rc = deja__wtxn_group_count_add(w, names[k], d[i].slot->model, d[i].slot->version,
                                            d[i].delta[k]);
    return rc;
}

void deja__lost_free(deja_tracer *t)
{
    deja__lost *l = atomic_load(&t->lost);

    if (l == NULL)
        return;
    for (size_t i = 0; i < DEJA__LOST_SLOTS; i++) {
        free(l->slots[i].model);
        free(l->slots[i].version);
    }
    pthread_mutex_destroy(&l->lock);
    free(l);
    atomic_store(&t->lost, NULL);
}
