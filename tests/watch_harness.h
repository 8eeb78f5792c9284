/*
 * tests/watch_harness.h -- building stores with exactly the traces a watch
 * test needs (model, version, start, duration, status, tags, one input
 * and one output tensor), written straight through the store's write side
 * so that durations and start times are the test's, not a clock's.
 *
 *   wtrace t = wtrace_init("clf", "1", start_ns, duration_ns);
 *   wtrace_f32(&t, DEJA_INPUT, "features", values, 4);
 *   wtrace_put(store, &t);   (store opened DEJA_STORE_WRITE)
 */
#ifndef DEJA_TESTS_WATCH_HARNESS_H
#define DEJA_TESTS_WATCH_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "deja.h"
#include "store/store.h"

#define WT_MAX_FLOATS 64
#define WT_MAX_TEXT 256

/* One trace under construction: owns the storage its views point to. */
typedef struct wtrace {
    deja_trace t;
    deja_tensor in, out;
    uint64_t in_shape[2], out_shape[2];
    float in_f[WT_MAX_FLOATS], out_f[WT_MAX_FLOATS];
    char in_text[WT_MAX_TEXT], out_text[WT_MAX_TEXT];
    deja_tag tags[2];
} wtrace;

/* A trace of `model`@`version` started at `start_ns`, lasting
 * `duration_ns`, status ok, no tensors or tags yet. */
static inline void wtrace_init(wtrace *w, const char *model, const char *version, int64_t start_ns,
                               int64_t duration_ns)
{
    memset(w, 0, sizeof *w);
    deja__id_new_at(&w->t.id, start_ns / 1000000);
    w->t.start_ns = start_ns;
    w->t.duration_ns = duration_ns;
    w->t.model_name = model;
    w->t.model_version = version;
    w->t.error = "";
}

/* Mark the trace failed. */
static inline void wtrace_error(wtrace *w, const char *why)
{
    w->t.status = DEJA_STATUS_ERROR;
    w->t.error = why;
}

/* Add a tag (at most two; strings must outlive the put). */
static inline void wtrace_tag(wtrace *w, const char *key, const char *value)
{
    w->tags[w->t.ntags].key = key;
    w->tags[w->t.ntags].value = value;
    w->t.ntags++;
    w->t.tags = w->tags;
}

/* Set the input or output to `n` floats of shape [rows, n / rows]
 * (rows 0: shape [n]). */
static inline void wtrace_f32(wtrace *w, deja_side side, const char *name, const float *v, size_t n,
                              size_t rows)
{
    deja_tensor *t = side == DEJA_INPUT ? &w->in : &w->out;
    uint64_t *shape = side == DEJA_INPUT ? w->in_shape : w->out_shape;
    float *data = side == DEJA_INPUT ? w->in_f : w->out_f;

    memcpy(data, v, n * sizeof *v);
    t->name = name;
    t->dtype = DEJA_F32;
    if (rows == 0) {
        t->ndim = 1;
        shape[0] = n;
    } else {
        t->ndim = 2;
        shape[0] = rows;
        shape[1] = n / rows;
    }
    t->shape = shape;
    t->data = data;
    t->size = n * sizeof *v;
    if (side == DEJA_INPUT) {
        w->t.inputs = t;
        w->t.ninputs = 1;
    } else {
        w->t.outputs = t;
        w->t.noutputs = 1;
    }
}

/* Set the input or output to UTF-8 text. */
static inline void wtrace_text(wtrace *w, deja_side side, const char *name, const char *text)
{
    deja_tensor *t = side == DEJA_INPUT ? &w->in : &w->out;
    uint64_t *shape = side == DEJA_INPUT ? w->in_shape : w->out_shape;
    char *data = side == DEJA_INPUT ? w->in_text : w->out_text;
    const size_t n = strlen(text);

    memcpy(data, text, n + 1);
    t->name = name;
    t->dtype = DEJA_UTF8;
    t->ndim = 1;
    shape[0] = n;
    t->shape = shape;
    t->data = data;
    t->size = n;
    if (side == DEJA_INPUT) {
        w->t.inputs = t;
        w->t.ninputs = 1;
    } else {
        w->t.outputs = t;
        w->t.noutputs = 1;
    }
}

static inline int wtrace_fill(deja__wtxn *w, void *payload)
{
    return deja__wtxn_put_trace(w, &((wtrace *)payload)->t, NULL);
}

/* Write the trace into `store`. */
static inline void wtrace_put(deja_store *store, wtrace *w)
{
    int rc = deja__store_write(store, wtrace_fill, w);

    if (rc != 0)
        fprintf(stderr, "write: %s\n", deja_error_last());
    assert_int_equal(rc, 0);
}

#endif /* DEJA_TESTS_WATCH_HARNESS_H */
