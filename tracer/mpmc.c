/*
 * tracer/mpmc.c -- a bounded multi-producer multi-consumer queue of
 * pointers without locks (Dmitry Vyukov's design: each cell carries a
 * sequence number that says whose turn it is), for the tracer's pool of
 * recycled spans: recording threads take from it, the writer and the
 * recording threads give back, and none of them ever waits on another.
 */
#include <stdlib.h>

#include "tracer/tracer_internal.h"

/* Set up `q` for at least `cap` items (rounded up to a power of two).
 * Returns 0 or DEJA_ENOMEM. */
int deja__mpmc_init(deja__mpmc *q, size_t cap)
{
    size_t n = 2;

    while (n < cap && n < ((size_t)1 << 30))
        n <<= 1;
    q->cells = malloc(n * sizeof *q->cells);
    if (q->cells == NULL)
        return deja__error_set(DEJA_ENOMEM, "tracer: out of memory for a pool of %zu", n);
    for (size_t i = 0; i < n; i++) {
        atomic_init(&q->cells[i].seq, i);
        q->cells[i].item = NULL;
    }
    q->mask = n - 1;
    atomic_init(&q->enq, 0);
    atomic_init(&q->deq, 0);
    return 0;
}

/* Free the cells (not the items). Accepts a zeroed queue. */
void deja__mpmc_free(deja__mpmc *q)
{
    free(q->cells);
    q->cells = NULL;
}

/* Add `item`: claim the cell at `enq` whose sequence says it is free (a
 * CAS on `enq`), fill it, then publish it with a release store of its
 * sequence. Returns 0, or -1 when the queue is full. */
int deja__mpmc_push(deja__mpmc *q, void *item)
{
    size_t pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
    deja__mpmc_cell *c;

    for (;;) {
        c = &q->cells[pos & q->mask];
        const size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        const intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->enq, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return -1;
        } else {
            pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
        }
    }
    c->item = item;
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    return 0;
}

/* Take an item: claim the cell at `deq` once its producer published it,
 * then hand the cell back for the lap after. NULL when empty. */
void *deja__mpmc_pop(deja__mpmc *q)
{
    size_t pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
    deja__mpmc_cell *c;

    if (q->cells == NULL)
        return NULL;
    for (;;) {
        c = &q->cells[pos & q->mask];
        const size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        const intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->deq, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return NULL;
        } else {
            pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
        }
    }
    void *item = c->item;
    atomic_store_explicit(&c->seq, pos + q->mask + 1, memory_order_release);
    return item;
}
