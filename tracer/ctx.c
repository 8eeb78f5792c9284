/*
 * tracer/ctx.c -- the determinism context: the only door between a model
 * and the world. A recording ctx takes fresh seeds, RNG draws and clock
 * reads and writes each into its span; a replaying ctx feeds back the
 * recorded ones in order and notes every value it had to make up.
 *
 * Seeds: seed(name) = splitmix64(base_seed ^ fnv1a(name)). Streams: each
 * named stream is a xoshiro256** generator seeded with splitmix64(base_seed
 * ^ fnv1a(name) ^ STREAM_SALT); the trace keeps that seed and every draw,
 * so a replay that runs past the recorded draws continues the very same
 * generator.
 *
 * Threads: every vtable call holds the ctx's lock, so the threads of one
 * inference may share a ctx; each should draw from its own stream (the
 * order of draws between threads on one stream is not reproducible).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deja_model.h"
#include "tracer/tracer_internal.h"

#define STREAM_SALT 0x5f3759df9e3779b9ULL

/* Bounds on what a model may create through one ctx. */
#define MAX_STREAMS 65536
#define MAX_LINES 4096

/* The generator state of one named stream. */
typedef struct stream {
    char *name;
    deja__xoshiro g;
    int span_index;             /* record: the stream's index in the span */
    const deja_rng_stream *rec; /* replay: the recorded stream, or NULL */
    size_t cursor;              /* replay: draws given so far */
    int running;                /* replay: the generator is live */
} stream;

typedef struct ctx_impl {
    deja_ctx base; /* first: the model sees only this */
    pthread_mutex_t lock;
    int replay;
    uint64_t base_seed;
    deja_span *span;         /* record */
    const deja_trace *trace; /* replay */
    stream *streams;
    size_t nstreams, cap_streams;
    size_t clock_cursor;
    int clock_noted;
    deja_seed *extra_seeds; /* replay: made-up seeds, names owned */
    size_t nextra, cap_extra;
    deja_tensor *outs; /* replay: outputs, everything owned */
    size_t nouts, cap_outs;
    char **lines;
    size_t nlines, cap_lines;
    char **short_lines; /* replay: recorded values left unconsumed */
    size_t nshort, cap_short;
    deja_output_decl *kinds; /* replay: declared kinds, names owned */
    size_t nkinds, cap_kinds;
    unsigned char *seed_used; /* replay: per recorded seed, asked for */
    char *error;
    deja_checkpoint_cb on_checkpoint; /* replay: compares each checkpoint */
    void *checkpoint_payload;
    int stopped; /* replay: the callback asked to stop the inference */
} ctx_impl;

/* Grow a malloc'd array to hold one more element. Returns 0 or -1. */
static int grow(void **arr, size_t n, size_t *cap, size_t elem, size_t max)
{
    if (n < *cap)
        return 0;
    if (n >= max)
        return -1;
    size_t ncap = *cap != 0 ? *cap * 2 : 4;
    void *p = realloc(*arr, ncap * elem);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* Append one "unrecorded" line. Out of memory loses the line, not the
 * inference. */
__attribute__((format(printf, 2, 3))) static void note(ctx_impl *c, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (grow((void **)&c->lines, c->nlines, &c->cap_lines, sizeof *c->lines, MAX_LINES) != 0)
        return;
    char *line = strdup(buf);
    if (line != NULL)
        c->lines[c->nlines++] = line;
}

/* The tensor called `name` among `n`, or NULL. */
static const deja_tensor *tensors_find(const deja_tensor *t, size_t n, const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

/* The param called `key` among `n`, or NULL. */
static const deja_param *params_find(const deja_param *p, size_t n, const char *key)
{
    if (key == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].key, key) == 0)
            return &p[i];
    return NULL;
}

/* The seed called `name` among `n`, or NULL. */
static const deja_seed *seeds_find(const deja_seed *s, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0)
            return &s[i];
    return NULL;
}

/* The inputs the model sees: the trace's (replay) or the span's (record). */
static void inputs_of(ctx_impl *c, const deja_tensor **t, size_t *n)
{
    if (c->replay) {
        *t = c->trace->inputs;
        *n = c->trace->ninputs;
    } else {
        *t = c->span->inputs;
        *n = c->span->ninputs;
    }
}

/* vtable: the input called `name`, or NULL. */
static const deja_tensor *v_input(deja_ctx *ctx, const char *name)
{
    const deja_tensor *t;
    size_t n;
    inputs_of((ctx_impl *)ctx, &t, &n);
    return tensors_find(t, n, name);
}

/* vtable: input number `index`, or NULL past the end. */
static const deja_tensor *v_input_at(deja_ctx *ctx, size_t index)
{
    const deja_tensor *t;
    size_t n;
    inputs_of((ctx_impl *)ctx, &t, &n);
    return index < n ? &t[index] : NULL;
}

/* vtable: how many inputs there are. */
static size_t v_input_count(deja_ctx *ctx)
{
    const deja_tensor *t;
    size_t n;
    inputs_of((ctx_impl *)ctx, &t, &n);
    return n;
}

/* vtable: the param called `key`, or NULL. */
static const deja_param *v_param(deja_ctx *ctx, const char *key)
{
    ctx_impl *c = (ctx_impl *)ctx;
    if (c->replay)
        return params_find(c->trace->params, c->trace->nparams, key);
    return params_find(c->span->params, c->span->nparams, key);
}

/* vtable: the seed called `name`. Record: the one already in the span, else
 * derived from the base seed and recorded. Replay: the recorded one, else a
 * fresh one (kept for later asks, and noted). */
static uint64_t seed_locked(deja_ctx *ctx, const char *name)
{
    ctx_impl *c = (ctx_impl *)ctx;
    const deja_seed *s;
    if (name == NULL)
        name = "";
    if (!c->replay) {
        if ((s = seeds_find(c->span->seeds, c->span->nseeds, name)) != NULL)
            return s->value;
        const uint64_t v = deja__mix64(c->base_seed ^ deja__hash_name(name));
        deja_span_seed(c->span, name, v);
        return v;
    }
    if ((s = seeds_find(c->trace->seeds, c->trace->nseeds, name)) != NULL) {
        if (c->seed_used != NULL)
            c->seed_used[s - c->trace->seeds] = 1;
        return s->value;
    }
    if ((s = seeds_find(c->extra_seeds, c->nextra, name)) != NULL)
        return s->value;
    const uint64_t v = deja__os_random();
    note(c, "seed '%s' was not recorded", name);
    char *n = strdup(name);
    if (n != NULL && grow((void **)&c->extra_seeds, c->nextra, &c->cap_extra,
                          sizeof *c->extra_seeds, MAX_LINES) == 0)
        c->extra_seeds[c->nextra++] = (deja_seed){n, v};
    else
        free(n);
    return v;
}

/* The state of stream `name`, created on first use; NULL when out of
 * memory or beyond MAX_STREAMS. */
static stream *stream_get(ctx_impl *c, const char *name)
{
    for (size_t i = 0; i < c->nstreams; i++)
        if (strcmp(c->streams[i].name, name) == 0)
            return &c->streams[i];
    if (grow((void **)&c->streams, c->nstreams, &c->cap_streams, sizeof *c->streams, MAX_STREAMS) !=
        0)
        return NULL;
    stream *s = &c->streams[c->nstreams];
    memset(s, 0, sizeof *s);
    if ((s->name = strdup(name)) == NULL)
        return NULL;
    s->span_index = -1;
    if (!c->replay) {
        uint64_t seed = deja__mix64(c->base_seed ^ deja__hash_name(name) ^ STREAM_SALT);
        const int idx = deja__span_rng_stream(c->span, name, seed, 1);
        if (idx >= 0) {
            /* A stream already in the span (a second ctx over it) goes on
             * from where the first left off. */
            const deja_rng_stream *r = &c->span->rng[idx];
            seed = r->seed;
            deja__xoshiro_seed(&s->g, seed);
            for (size_t k = 0; k < r->ndraws; k++)
                deja__xoshiro_next(&s->g);
        } else {
            deja__xoshiro_seed(&s->g, seed);
        }
        s->span_index = idx;
    } else {
        for (size_t i = 0; i < c->trace->nrng; i++)
            if (strcmp(c->trace->rng[i].name, name) == 0) {
                s->rec = &c->trace->rng[i];
                break;
            }
    }
    c->nstreams++;
    return s;
}

/* vtable: the next draw of stream `name`. Record: from the stream's
 * generator, appended to the span. Replay: the recorded draws in order, then
 * the same generator continued (noted once per stream). */
static uint64_t rng_locked(deja_ctx *ctx, const char *name)
{
    ctx_impl *c = (ctx_impl *)ctx;
    if (name == NULL)
        name = "";
    stream *s = stream_get(c, name);
    if (s == NULL) {
        /* Out of memory: still random, just not recorded. */
        uint64_t st = deja__os_random();
        return deja__splitmix64(&st);
    }
    if (!c->replay) {
        const uint64_t v = deja__xoshiro_next(&s->g);
        if (s->span_index >= 0)
            deja__span_rng_append(c->span, (size_t)s->span_index, v);
        return v;
    }
    if (s->rec != NULL && s->cursor < s->rec->ndraws)
        return s->rec->draws[s->cursor++];
    if (!s->running) {
        if (s->rec != NULL) {
            deja__xoshiro_seed(&s->g, s->rec->seed);
            for (size_t k = 0; k < s->rec->ndraws; k++)
                deja__xoshiro_next(&s->g);
            note(c, "stream '%s': draw %zu past the %zu recorded", name, s->cursor + 1,
                 s->rec->ndraws);
        } else {
            deja__xoshiro_seed(&s->g, deja__os_random());
            note(c, "stream '%s' was not recorded", name);
        }
        s->running = 1;
    }
    s->cursor++;
    return deja__xoshiro_next(&s->g);
}

/* vtable: the clock. Record: the real clock, recorded. Replay: the recorded
 * reads in order, then the real clock (noted once). */
static int64_t now_locked(deja_ctx *ctx)
{
    ctx_impl *c = (ctx_impl *)ctx;
    if (!c->replay) {
        const int64_t v = deja__now_ns();
        deja_span_clock(c->span, v);
        return v;
    }
    if (c->clock_cursor < c->trace->nclock)
        return c->trace->clock_ns[c->clock_cursor++];
    c->clock_cursor++;
    if (!c->clock_noted) {
        note(c, "clock read %zu past the %zu recorded", c->clock_cursor, c->trace->nclock);
        c->clock_noted = 1;
    }
    return deja__now_ns();
}

/* Copy a tensor into the replaying ctx's outputs. */
static int replay_output(ctx_impl *c, const deja_tensor *t)
{
    int rc = 0;
    char *name = NULL;
    uint64_t *shape = NULL;
    void *data = NULL;
    /* Exactly what recording accepts, refused with the same message. */
    if ((rc = deja__tensor_check(t)) != 0)
        goto cleanup;
    name = strdup(t->name);
    shape = malloc((t->ndim != 0 ? t->ndim : 1) * sizeof *shape);
    data = malloc(t->size != 0 ? t->size : 1);
    if (name == NULL || shape == NULL || data == NULL ||
        grow((void **)&c->outs, c->nouts, &c->cap_outs, sizeof *c->outs, MAX_STREAMS) != 0) {
        rc = deja__error_set(DEJA_ENOMEM, "output '%s': out of memory (%zu bytes)", t->name,
                             t->size);
        goto cleanup;
    }
    if (t->ndim != 0)
        memcpy(shape, t->shape, t->ndim * sizeof *shape);
    if (t->size != 0)
        memcpy(data, t->data, t->size);
    c->outs[c->nouts++] = (deja_tensor){name, t->dtype, t->ndim, shape, data, t->size};
    name = NULL;
    shape = NULL;
    data = NULL;
cleanup:
    free(name);
    free(shape);
    free(data);
    return rc;
}

/* vtable: write an output (copied into the span, or into the ctx). */
static int output_locked(deja_ctx *ctx, const deja_tensor *t)
{
    ctx_impl *c = (ctx_impl *)ctx;
    if (t == NULL || t->name == NULL)
        return deja__error_set(DEJA_EINVAL, "ctx output: tensor and its name are required");
    if (!c->replay)
        return deja_span_add(c->span, DEJA_OUTPUT, t);
    return replay_output(c, t);
}

/* vtable: mark the inference failed with `message` (copied). */
static void v_fail(deja_ctx *ctx, const char *message)
{
    ctx_impl *c = (ctx_impl *)ctx;
    pthread_mutex_lock(&c->lock);
    free(c->error);
    c->error = strdup(message != NULL ? message : "model failed");
    pthread_mutex_unlock(&c->lock);
}

/* Declare the kind of output `name`: into the span (record) or the ctx's
 * list (replay). */
static int output_kind_locked(deja_ctx *ctx, const char *name, deja_output_kind kind)
{
    ctx_impl *c = (ctx_impl *)ctx;
    if (name == NULL || (unsigned)kind > DEJA_KIND_MAX)
        return deja__error_set(DEJA_EINVAL, "ctx output kind: a name and a known kind are required");
    if (!c->replay)
        return deja_span_output_kind(c->span, name, kind);
    for (size_t i = 0; i < c->nkinds; i++) {
        if (strcmp(c->kinds[i].name, name) == 0) {
            c->kinds[i].kind = kind;
            return 0;
        }
    }
    char *n = strdup(name);
    if (n == NULL ||
        grow((void **)&c->kinds, c->nkinds, &c->cap_kinds, sizeof *c->kinds, MAX_STREAMS) != 0) {
        free(n);
        return deja__error_set(DEJA_ENOMEM, "ctx output kind: out of memory");
    }
    c->kinds[c->nkinds++] = (deja_output_decl){n, kind};
    return 0;
}

/* The locked doors: one vtable call at a time per ctx. */
static uint64_t v_seed(deja_ctx *ctx, const char *name)
{
    ctx_impl *c = (ctx_impl *)ctx;
    pthread_mutex_lock(&c->lock);
    const uint64_t v = seed_locked(ctx, name);
    pthread_mutex_unlock(&c->lock);
    return v;
}

static uint64_t v_rng_u64(deja_ctx *ctx, const char *name)
{
    ctx_impl *c = (ctx_impl *)ctx;
    pthread_mutex_lock(&c->lock);
    const uint64_t v = rng_locked(ctx, name);
    pthread_mutex_unlock(&c->lock);
    return v;
}

static int64_t v_now_ns(deja_ctx *ctx)
{
    ctx_impl *c = (ctx_impl *)ctx;
    pthread_mutex_lock(&c->lock);
    const int64_t v = now_locked(ctx);
    pthread_mutex_unlock(&c->lock);
    return v;
}

static int v_output(deja_ctx *ctx, const deja_tensor *t)
{
    ctx_impl *c = (ctx_impl *)ctx;
    pthread_mutex_lock(&c->lock);
    const int rc = output_locked(ctx, t);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int v_output_kind(deja_ctx *ctx, const char *name, deja_output_kind kind)
{
    ctx_impl *c = (ctx_impl *)ctx;
    pthread_mutex_lock(&c->lock);
    const int rc = output_kind_locked(ctx, name, kind);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* vtable: a note from the model; kept with the replay's departures from
 * the recording, ignored when recording. */
static void v_note(deja_ctx *ctx, const char *message)
{
    ctx_impl *c = (ctx_impl *)ctx;
    pthread_mutex_lock(&c->lock);
    if (c->replay && message != NULL)
        note(c, "%s", message);
    pthread_mutex_unlock(&c->lock);
}

/* vtable: how many params there are. */
static size_t v_param_count(deja_ctx *ctx)
{
    ctx_impl *c = (ctx_impl *)ctx;
    return c->replay ? c->trace->nparams : c->span->nparams;
}

/* vtable: param number `index`, or NULL past the end. */
static const deja_param *v_param_at(deja_ctx *ctx, size_t index)
{
    ctx_impl *c = (ctx_impl *)ctx;
    if (index >= v_param_count(ctx))
        return NULL;
    return c->replay ? &c->trace->params[index] : &c->span->params[index];
}

/* vtable: `n` draws of stream `name` at once, exactly as `n` single draws. */
static void v_rng_fill(deja_ctx *ctx, const char *name, uint64_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = v_rng_u64(ctx, name);
}

/* vtable: a checkpoint. Record: into the span when the run keeps it (the
 * default keeps none: one test, no lock). Replay: handed to the checkpoint
 * callback, whose DEJA_CHECKPOINT_STOP sticks. */
static int v_checkpoint(deja_ctx *ctx, const deja_tensor *t)
{
    ctx_impl *c = (ctx_impl *)ctx;
    int rc;
    if (!c->replay) {
        if (c->span->tracer->ckpt_select == NULL)
            return 0;
        pthread_mutex_lock(&c->lock);
        rc = deja_span_checkpoint(c->span, t);
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    if (c->on_checkpoint == NULL)
        return 0;
    if (t == NULL || t->name == NULL)
        return deja__error_set(DEJA_EINVAL, "ctx checkpoint: tensor and its name are required");
    if ((rc = deja__tensor_check(t)) != 0)
        return rc;
    pthread_mutex_lock(&c->lock);
    if (c->stopped) {
        rc = DEJA_CHECKPOINT_STOP;
    } else {
        rc = c->on_checkpoint(t, c->checkpoint_payload);
        if (rc == DEJA_CHECKPOINT_STOP)
            c->stopped = 1;
        else if (rc > 0)
            rc = 0;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static const deja_ctx_vtable vtable = {
    sizeof(deja_ctx_vtable),
    v_input,
    v_input_at,
    v_input_count,
    v_param,
    v_seed,
    v_rng_u64,
    v_now_ns,
    v_output,
    v_fail,
    v_note,
    v_param_count,
    v_param_at,
    v_rng_fill,
    v_output_kind,
    v_checkpoint,
};

/* A new ctx with its lock, or NULL when out of memory. */
static ctx_impl *ctx_new(void)
{
    ctx_impl *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }
    c->base.vt = &vtable;
    return c;
}

/* A recording ctx over `span` (which must outlive it) from the base seed
 * `*base_seed`, or one from the OS when `base_seed` is NULL (every seed and
 * stream derived from it is recorded). The caller frees it with
 * deja_ctx_free(). */
int deja_ctx_record_v2(deja_ctx **out, deja_span *span, const uint64_t *base_seed)
{
    if (out == NULL || span == NULL)
        return deja__error_set(DEJA_EINVAL, "ctx record: out and span are required");
    ctx_impl *c = ctx_new();
    if (c == NULL)
        return deja__error_set(DEJA_ENOMEM, "ctx record: out of memory");
    c->span = span;
    c->base_seed = base_seed != NULL ? *base_seed : deja__os_random();
    *out = &c->base;
    return 0;
}

/* A recording ctx over `span`; base_seed 0 takes one from the OS (kept
 * for compatibility: deja_ctx_record_v2 takes seed 0 as seed 0). */
int deja_ctx_record(deja_ctx **out, deja_span *span, uint64_t base_seed)
{
    return deja_ctx_record_v2(out, span, base_seed != 0 ? &base_seed : NULL);
}

/* A replaying ctx over `trace` (which must outlive it). The caller frees it
 * with deja_ctx_free(). */
int deja_ctx_replay(deja_ctx **out, const deja_trace *trace)
{
    if (out == NULL || trace == NULL)
        return deja__error_set(DEJA_EINVAL, "ctx replay: out and trace are required");
    ctx_impl *c = ctx_new();
    if (c == NULL)
        return deja__error_set(DEJA_ENOMEM, "ctx replay: out of memory");
    c->replay = 1;
    c->trace = trace;
    if (trace->nseeds != 0 && (c->seed_used = calloc(trace->nseeds, 1)) == NULL) {
        deja_ctx_free(&c->base);
        return deja__error_set(DEJA_ENOMEM, "ctx replay: out of memory");
    }
    *out = &c->base;
    return 0;
}

/* Whether checkpoints produced through `ctx` are kept or compared; see
 * include/deja.h. */
int deja_ctx_checkpoints_active(const deja_ctx *ctx)
{
    const ctx_impl *c = (const ctx_impl *)ctx;
    if (c == NULL || ctx->vt != &vtable)
        return 0;
    return c->replay ? c->on_checkpoint != NULL : c->span->tracer->ckpt_select != NULL;
}

/* Give a replaying ctx its checkpoint callback; see include/deja.h. */
int deja_ctx_on_checkpoint(deja_ctx *ctx, deja_checkpoint_cb cb, void *payload)
{
    ctx_impl *c = (ctx_impl *)ctx;
    if (c == NULL || !c->replay)
        return deja__error_set(DEJA_EINVAL, "ctx checkpoint callback: a replaying ctx is required");
    pthread_mutex_lock(&c->lock);
    c->on_checkpoint = cb;
    c->checkpoint_payload = payload;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* The outputs written through the ctx: owned by the ctx (replay) or by the
 * span (record). */
const deja_tensor *deja_ctx_outputs(const deja_ctx *ctx, size_t *n)
{
    const ctx_impl *c = (const ctx_impl *)ctx;
    if (c == NULL) {
        if (n != NULL)
            *n = 0;
        return NULL;
    }
    if (n != NULL)
        *n = c->replay ? c->nouts : c->span->noutputs;
    return c->replay ? c->outs : c->span->outputs;
}

/* The lines describing values a replay had to make up; 0 when none. */
size_t deja_ctx_unrecorded(const deja_ctx *ctx, const char *const **lines)
{
    const ctx_impl *c = (const ctx_impl *)ctx;
    if (lines != NULL)
        *lines = c != NULL ? (const char *const *)c->lines : NULL;
    return c != NULL ? c->nlines : 0;
}

/* Append one "unconsumed" line; out of memory loses the line. */
__attribute__((format(printf, 2, 3))) static void note_short(ctx_impl *c, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (grow((void **)&c->short_lines, c->nshort, &c->cap_short, sizeof *c->short_lines,
             MAX_LINES) != 0)
        return;
    char *line = strdup(buf);
    if (line != NULL)
        c->short_lines[c->nshort++] = line;
}

/* After a replayed inference: the recorded values the model left
 * unconsumed (fewer draws of a stream, fewer clock reads, a seed never
 * asked for), one line each, owned by the ctx. Computed on the first call
 * (later calls return the same lines); 0 for a recording ctx. */
size_t deja_ctx_unconsumed(deja_ctx *ctx, const char *const **lines)
{
    ctx_impl *c = (ctx_impl *)ctx;
    if (lines != NULL)
        *lines = NULL;
    if (c == NULL || !c->replay)
        return 0;
    pthread_mutex_lock(&c->lock);
    if (c->short_lines == NULL) {
        const deja_trace *t = c->trace;
        for (size_t i = 0; i < t->nrng; i++) {
            size_t used = 0;
            for (size_t k = 0; k < c->nstreams; k++)
                if (c->streams[k].rec == &t->rng[i])
                    used = c->streams[k].cursor;
            if (used < t->rng[i].ndraws)
                note_short(c, "stream '%s': %zu of the %zu recorded draws consumed", t->rng[i].name,
                           used, t->rng[i].ndraws);
        }
        if (c->clock_cursor < t->nclock)
            note_short(c, "clock: %zu of the %zu recorded reads consumed", c->clock_cursor,
                       t->nclock);
        for (size_t i = 0; i < t->nseeds; i++)
            if (c->seed_used != NULL && !c->seed_used[i])
                note_short(c, "seed '%s' was recorded but not asked for", t->seeds[i].name);
        if (c->short_lines == NULL)
            c->short_lines = calloc(1, sizeof *c->short_lines); /* computed, none */
    }
    if (lines != NULL)
        *lines = (const char *const *)c->short_lines;
    const size_t n = c->nshort;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* The kinds the model declared on a replaying ctx (owned by the ctx). */
const deja_output_decl *deja_ctx_output_kinds(const deja_ctx *ctx, size_t *n)
{
    const ctx_impl *c = (const ctx_impl *)ctx;
    if (n != NULL)
        *n = c != NULL ? c->nkinds : 0;
    return c != NULL ? c->kinds : NULL;
}

/* The message of deja_ctx_fail(), or NULL. */
const char *deja_ctx_error(const deja_ctx *ctx)
{
    const ctx_impl *c = (const ctx_impl *)ctx;
    return c != NULL ? c->error : NULL;
}

/* Free a ctx and everything it owns. Accepts NULL. */
void deja_ctx_free(deja_ctx *ctx)
{
    ctx_impl *c = (ctx_impl *)ctx;
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nstreams; i++)
        free(c->streams[i].name);
    free(c->streams);
    for (size_t i = 0; i < c->nextra; i++)
        free((char *)(uintptr_t)c->extra_seeds[i].name);
    free(c->extra_seeds);
    for (size_t i = 0; i < c->nouts; i++) {
        free((char *)(uintptr_t)c->outs[i].name);
        free((void *)(uintptr_t)c->outs[i].shape);
        free((void *)(uintptr_t)c->outs[i].data);
    }
    free(c->outs);
    for (size_t i = 0; i < c->nlines; i++)
        free(c->lines[i]);
    free(c->lines);
    for (size_t i = 0; i < c->nshort; i++)
        free(c->short_lines[i]);
    free(c->short_lines);
    for (size_t i = 0; i < c->nkinds; i++)
        free((char *)(uintptr_t)c->kinds[i].name);
    free(c->kinds);
    free(c->seed_used);
    free(c->error);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
