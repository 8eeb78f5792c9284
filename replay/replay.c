/*
 * replay/replay.c -- the replay engine: re-run recorded traces on a model
 * and diff the outputs against the recorded ones.
 *
 * Each trace is read, checked against the model's name, and run through a
 * replaying deja_ctx (tracer/ctx.c), which feeds back the recorded inputs,
 * params, seeds, RNG draws and clock reads, with the floating-point mode
 * pinned to the recorded one. With `repeat` > 1 it runs several times and
 * any disagreement between the runs makes it nondeterministic. With
 * `jobs` > 1, workers claim traces from a shared counter and leave their
 * results in per-trace slots; the calling thread hands them to the result
 * callback strictly in selection order, so output stays deterministic.
 *
 * Store reads are serialised under the engine's lock: the inference, not the
 * read, is what takes time.
 *
 * Room replay/: model loading, replay, diff and bisect. It calls core/,
 * proto/ and store/ (through store/store.h), and the tracer's determinism
 * context through the public API; bundle/ and cli/ call it through
 * include/deja.h.
 */
#include <errno.h>
#include <limits.h>
#include <fenv.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#endif

#include "deja.h"
#include "store/store.h"
#include "replay/checkpoint.h"
#include "replay/session.h"
#include "replay/summary.h"

#define MAX_JOBS 256
#define MAX_REPEAT 100000
#define MAX_IDS ((size_t)1 << 28)
#define MAX_NOTES 256

/* A recorded environment seen during this replay and its differences from
 * the current one. */
typedef struct env_entry {
    deja_digest digest;
    deja_env *env;       /* NULL when unreadable */
    deja_env_diff *diff; /* owned */
    int emitted;         /* a result carrying it reached the callback */
    struct env_entry *next;
} env_entry;

/* A list of owned strings without duplicates. */
typedef struct notes {
    char **v;
    size_t n;
} notes;

/* The outcome of one trace, kept until the calling thread emits it. */
typedef struct slot {
    int ready;
    deja_trace *trace;
    deja_diff *diff;
    deja_verdict verdict;
    int code;
    char *error;
    int trouble;
    int mismatch;
    env_entry *env; /* NULL when the trace names no environment */
    notes unrecorded;
    notes unconsumed;
    notes varying;
    deja_tensor *out; /* the first run's outputs, for the result */
    size_t nout;
    notes changes;   /* how the replaying model differs from the recorded one */
    notes cmp_notes; /* notes on the comparison (truncated outputs) */
    notes noise;     /* outputs whose difference the baseline shows too */
    deja__ckpt_report *ckpt; /* the first run's checkpoints against the recorded ones */
} slot;

typedef struct engine {
    deja_store *store;
    const deja_id *ids;
    deja_trace **given; /* the traces themselves, taken by replay_one (or NULL) */
    size_t n;
    deja_replay_options o;
    const deja_env *current;
    deja_env *current_owned; /* current with the model's libraries */
    deja_model **models; /* one per worker, or one shared */
    size_t nmodels;
    const char *spec;
    deja_model **bmodels; /* the baseline's, one per worker (NULL: none) */
    struct runner **runners; /* per worker: its inference thread, or NULL */
    /* Instances a timed-out inference still runs in: never freed. */
    deja_model *abandoned[MAX_JOBS];
    size_t nabandoned;
    slot *slots;
    pthread_mutex_t lock; /* guards next, done, stop, slots' ready, envs, store reads */
    pthread_cond_t ready;
    size_t next;
    size_t done;
    int stop;
    env_entry *envs;
    env_entry unknown; /* for traces recorded without an environment */
    deja_env with_model; /* current, plus an exec runner's libraries */
    deja_kv *libs;       /* with_model's libraries, when merged */
} engine;

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const deja_kv *)a)->key, ((const deja_kv *)b)->key);
}

/* A model in another process runs in its own environment: the libraries
 * its runner named (torch, its thread count, BLAS, ...) join this
 * process's, replacing any of the same name, in the environment recorded
 * ones are compared with. Returns 0 or DEJA_ENOMEM. */
static int env_with_model(engine *e, const deja_model *m)
{
    size_t nm = 0, n;
    const deja_kv *ml = deja_model_libs(m, &nm);
    if (ml == NULL)
        return 0;
    const deja_env *cur = e->current;
    e->libs = calloc(cur->nlibs + nm, sizeof(*e->libs));
    if (!e->libs)
        return deja__error_set(DEJA_ENOMEM, "replay: out of memory");
    if (cur->nlibs > 0)
        memcpy(e->libs, cur->libs, cur->nlibs * sizeof(*e->libs));
    n = cur->nlibs;
    for (size_t i = 0; i < nm; i++) {
        size_t k = 0;
        while (k < n && strcmp(e->libs[k].key, ml[i].key) != 0)
            k++;
        e->libs[k] = ml[i];
        if (k == n)
            n++;
    }
    qsort(e->libs, n, sizeof(*e->libs), kv_cmp);
    e->with_model = *cur;
    e->with_model.libs = e->libs;
    e->with_model.nlibs = n;
    e->current = &e->with_model;
    deja_env_diff_free(e->unknown.diff);
    e->unknown.diff = NULL;
    if (deja_env_compare(NULL, e->current, &e->unknown.diff) != 0)
        return DEJA_ENOMEM;
    return 0;
}

/* Add a copy of `s` to `l` unless already there. Returns 0 or
 * DEJA_ENOMEM. */
static int notes_add(notes *l, const char *s)
{
    size_t i;
    char **nv, *copy;
    for (i = 0; i < l->n; i++) {
        if (strcmp(l->v[i], s) == 0) {
            return 0;
        }
    }
    if (l->n >= MAX_NOTES) {
        return 0;
    }
    copy = strdup(s);
    nv = copy ? realloc(l->v, (l->n + 1) * sizeof(*nv)) : NULL;
    if (!nv) {
        free(copy);
        return deja__error_set(DEJA_ENOMEM, "replay: out of memory");
    }
    l->v = nv;
    l->v[l->n++] = copy;
    return 0;
}

static void notes_free(notes *l)
{
    size_t i;
    for (i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Release what a slot owns and reset it. */
static void slot_clear(slot *s)
{
    deja_trace_free(s->trace);
    deja_diff_free(s->diff);
    free(s->error);
    notes_free(&s->unrecorded);
    notes_free(&s->unconsumed);
    notes_free(&s->varying);
    for (size_t i = 0; i < s->nout; i++) {
        free((void *)s->out[i].name);
        free((void *)s->out[i].shape);
        free((void *)s->out[i].data);
    }
    free(s->out);
    notes_free(&s->changes);
    notes_free(&s->cmp_notes);
    notes_free(&s->noise);
    deja__ckpt_report_free(s->ckpt);
    memset(s, 0, sizeof(*s));
}

/* Make `s` an ERROR result with `code` and a formatted message. */
static void slot_fail(slot *s, int code, int trouble, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void slot_fail(slot *s, int code, int trouble, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) {
        msg = NULL;
    }
    va_end(ap);
    deja_diff_free(s->diff);
    s->diff = NULL;
    free(s->error);
    s->error = msg;
    s->verdict = DEJA_VERDICT_ERROR;
    s->code = code;
    s->trouble = trouble;
}

/* The environment entry for digest `d`, reading and comparing it on first
 * sight. Called with the engine lock held. NULL only when out of memory. */
static env_entry *env_lookup(engine *e, const deja_digest *d)
{
    env_entry *en;
    int rc;
    for (en = e->envs; en; en = en->next) {
        if (memcmp(en->digest.bytes, d->bytes, sizeof(d->bytes)) == 0) {
            return en;
        }
    }
    en = calloc(1, sizeof(*en));
    if (!en) {
        return NULL;
    }
    en->digest = *d;
    rc = deja_store_env_get(e->store, d, &en->env);
    if (rc != 0) {
        en->env = NULL;
    }
    if (deja_env_compare(en->env, e->current, &en->diff) != 0) {
        deja_env_free(en->env);
        free(en);
        return NULL;
    }
    en->next = e->envs;
    e->envs = en;
    return en;
}

/* The floating-point state of the calling thread. */
typedef struct fpstate {
    int round;
    unsigned csr;
} fpstate;

static void fp_save(fpstate *s)
{
    s->round = fegetround();
#ifdef HAVE_MXCSR
    s->csr = _mm_getcsr();
#else
    s->csr = 0;
#endif
}

static void fp_restore(const fpstate *s)
{
    fesetround(s->round);
#ifdef HAVE_MXCSR
    _mm_setcsr(s->csr);
#endif
}

/* The floating-point mode a trace was recorded with, copied out of its
 * environment (so that an inference left running past its timeout never
 * reads an environment the engine has freed). */
typedef struct fpmode {
    int known;
    char rounding[16];
    int ftz;
    int daz;
    /* Not the FP mode but travels with it to every run: how checkpoints
     * are compared (ck_compare 0: not at all, as for the baseline). */
    int ck_compare;
    int ck_stop;
    deja_diff_options ck_diff;
} fpmode;

static void fp_of(const deja_env *env, fpmode *m)
{
    memset(m, 0, sizeof(*m));
    if (env) {
        m->known = 1;
        snprintf(m->rounding, sizeof(m->rounding), "%s", env->fp_rounding ? env->fp_rounding : "");
        m->ftz = env->ftz;
        m->daz = env->daz;
    }
}

/* Pin the calling thread's rounding mode and flush-to-zero and
 * denormals-are-zero flags to those of `env` (when known). */
static void fp_pin(const fpmode *env)
{
    const char *r;
    if (!env->known) {
        return;
    }
    r = env->rounding;
#ifdef FE_TONEAREST
    if (strcmp(r, "nearest") == 0) {
        fesetround(FE_TONEAREST);
    }
#endif
#ifdef FE_UPWARD
    if (strcmp(r, "upward") == 0) {
        fesetround(FE_UPWARD);
    }
#endif
#ifdef FE_DOWNWARD
    if (strcmp(r, "downward") == 0) {
        fesetround(FE_DOWNWARD);
    }
#endif
#ifdef FE_TOWARDZERO
    if (strcmp(r, "toward-zero") == 0) {
        fesetround(FE_TOWARDZERO);
    }
#endif
#ifdef HAVE_MXCSR
    {
        unsigned csr = _mm_getcsr() & ~((1u << 15) | (1u << 6));
        csr |= (env->ftz ? 1u << 15 : 0) | (env->daz ? 1u << 6 : 0);
        _mm_setcsr(csr);
    }
#endif
}

/* The outcome of one inference, owning copies of everything: in-process
 * runs copy it out of the ctx, isolated runs read it from the child. The
 * outputs are kept even when the model failed: a failure that is recorded
 * is reproduced only with the same outputs written before it. */
typedef struct outcome {
    int failed;
    char *why;       /* the full failure message, when failed */
    char *model_msg; /* the model's own message (deja_ctx_fail), or NULL */
    deja_tensor *out;
    size_t nout;
    notes unrecorded;
    notes unconsumed;
    deja_output_decl *kinds; /* declared on replay; names owned */
    size_t nkinds;
    deja__ckpt_report *ckpt; /* checkpoints compared, or NULL */
} outcome;

static void outcome_free(outcome *oc)
{
    size_t i;
    for (i = 0; i < oc->nout; i++) {
        free((void *)oc->out[i].name);
        free((void *)oc->out[i].shape);
        free((void *)oc->out[i].data);
    }
    for (i = 0; i < oc->nkinds; i++) {
        free((void *)oc->kinds[i].name);
    }
    free(oc->kinds);
    free(oc->out);
    free(oc->why);
    free(oc->model_msg);
    notes_free(&oc->unrecorded);
    notes_free(&oc->unconsumed);
    deja__ckpt_report_free(oc->ckpt);
    memset(oc, 0, sizeof(*oc));
}

/* Append a declared kind to `oc`. Returns 0 or DEJA_ENOMEM. */
static int outcome_kind(outcome *oc, const char *name, uint64_t kind)
{
    deja_output_decl *nv;
    char *nm;
    if (oc->nkinds >= MAX_NOTES) {
        return 0;
    }
    nv = realloc(oc->kinds, (oc->nkinds + 1) * sizeof(*nv));
    if (!nv) {
        return deja__error_set(DEJA_ENOMEM, "replay: out of memory");
    }
    oc->kinds = nv;
    nm = strdup(name ? name : "");
    if (!nm) {
        return deja__error_set(DEJA_ENOMEM, "replay: out of memory");
    }
    oc->kinds[oc->nkinds].name = nm;
    oc->kinds[oc->nkinds].kind =
        kind <= DEJA_KIND_MAX ? (deja_output_kind)kind : DEJA_KIND_AUTO;
    oc->nkinds++;
    return 0;
}

/* Append a copy of tensor `t` (name, shape and data) to `oc`. Returns 0 or
 * DEJA_ENOMEM. */
static int outcome_add(outcome *oc, const char *name, deja_dtype dtype, size_t ndim,
                       const uint64_t *shape, const void *data, size_t size)
{
    deja_tensor *nv, *t;
    uint64_t *sh = NULL;
    char *nm = NULL;
    void *dt = NULL;
    if (ndim > DEJA_MAX_DIMS) {
        return deja__error_set(DEJA_EINVAL, "replay: output '%s' has %zu dimensions", name, ndim);
    }
    nv = realloc(oc->out, (oc->nout + 1) * sizeof(*nv));
    if (!nv) {
        return deja__error_set(DEJA_ENOMEM, "replay: out of memory");
    }
    oc->out = nv;
    nm = strdup(name ? name : "");
    sh = malloc((ndim + 1) * sizeof(*sh));
    dt = malloc(size + 1);
    if (!nm || !sh || !dt) {
        free(nm);
        free(sh);
        free(dt);
        return deja__error_set(DEJA_ENOMEM, "replay: out of memory copying output '%s'", name);
    }
    if (ndim) {
        memcpy(sh, shape, ndim * sizeof(*sh));
    }
    if (size) {
        memcpy(dt, data, size);
    }
    t = &oc->out[oc->nout++];
    t->name = nm;
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape = sh;
    t->data = dt;
    t->size = size;
    return 0;
}

/* The trace whose inference runs on this thread, for a crash message
 * (deja_replay_current_trace). */
static _Thread_local int current_set;
static _Thread_local deja_id current_id;

/* The trace whose inference the calling thread is running; see deja.h. */
int deja_replay_current_trace(deja_id *out)
{
    if (!current_set) {
        return 0;
    }
    if (out) {
        *out = current_id;
    }
    return 1;
}

/* Run the model once on trace `t` in this process, pinning the FP mode
 * `env`, and fill `oc`. Returns 0 (a model failure is in oc->failed) or a
 * negative code when the run could not happen. */
static int run_inline(deja_model *model, const deja_trace *t, const fpmode *env, outcome *oc)
{
    fpstate saved;
    deja_ctx *ctx = NULL;
    const char *const *lines = NULL;
    const deja_tensor *outs;
    const deja_output_decl *kinds;
    size_t n, i;
    deja__ckpt_cmp *cmp = NULL;
    int rc = deja_ctx_replay(&ctx, t);
    if (rc != 0) {
        return rc;
    }
    if (env->ck_compare && deja__ckpt_wanted(t)) {
        rc = deja__ckpt_cmp_new(&cmp, t, &env->ck_diff, env->ck_stop);
        if (rc == 0) {
            rc = deja_ctx_on_checkpoint(ctx, deja__ckpt_cmp_cb, cmp);
        }
        if (rc != 0) {
            deja__ckpt_cmp_free(cmp);
            deja_ctx_free(ctx);
            return rc;
        }
    }
    fp_save(&saved);
    fp_pin(env);
    current_id = t->id;
    current_set = 1;
    rc = deja_model_infer(model, ctx);
    current_set = 0;
    fp_restore(&saved);
    if (rc != 0) {
        const char *ce = deja_ctx_error(ctx);
        oc->failed = 1;
        oc->why = strdup(deja_error_last());
        oc->model_msg = ce ? strdup(ce) : NULL;
        rc = !oc->why || (ce && !oc->model_msg) ? DEJA_ENOMEM : 0;
    }
    outs = deja_ctx_outputs(ctx, &n);
    for (i = 0; i < n && rc == 0 && outs; i++) {
        rc = outcome_add(oc, outs[i].name, outs[i].dtype, outs[i].ndim, outs[i].shape,
                         outs[i].data, outs[i].size);
    }
    kinds = deja_ctx_output_kinds(ctx, &n);
    for (i = 0; i < n && rc == 0; i++) {
        rc = outcome_kind(oc, kinds[i].name, (uint64_t)kinds[i].kind);
    }
    n = deja_ctx_unrecorded(ctx, &lines);
    for (i = 0; i < n && rc == 0; i++) {
        rc = notes_add(&oc->unrecorded, lines[i]);
    }
    n = deja_ctx_unconsumed(ctx, &lines);
    for (i = 0; i < n && rc == 0; i++) {
        rc = notes_add(&oc->unconsumed, lines[i]);
    }
    if (cmp && rc == 0) {
        rc = deja__ckpt_cmp_finish(cmp, &oc->ckpt);
    }
    deja__ckpt_cmp_free(cmp);
    deja_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------------------
 * Isolation: the inferences of one trace (every repeat, one after the
 * other, so that state hidden in the model's memory evolves as it would in
 * one process) run in a child process, so that a crashing or hanging model
 * fails its trace, not the run. The child writes one record per repeat to
 * a pipe: u64 length, then u64 failed, str why, str model_msg, u64 lines +
 * strs (unrecorded), u64 lines + strs (unconsumed), u64 kinds + (str, u64),
 * u64 outputs, then per output: str name, u64 dtype, u64 ndim, u64 dims...,
 * u64 size, bytes. A str is a u64 length and its bytes. Host byte order:
 * the child is a fork of this process.
 * ---------------------------------------------------------------------- */

#define MAX_CHILD_OUTPUT ((size_t)1 << 31)

static void put_u64(FILE *fp, uint64_t v)
{
    fwrite(&v, sizeof(v), 1, fp);
}

static void put_str(FILE *fp, const char *str)
{
    size_t n = str ? strlen(str) : 0;
    put_u64(fp, n);
    fwrite(str ? str : "", 1, n, fp);
}

static void put_notes(FILE *fp, const notes *l)
{
    size_t i;
    put_u64(fp, l->n);
    for (i = 0; i < l->n; i++) {
        put_str(fp, l->v[i]);
    }
}

/* Write one outcome as a length-prefixed record to `fp`. Returns 0 or -1. */
static int put_outcome(FILE *fp, const outcome *oc)
{
    char *rec = NULL;
    size_t len = 0, i, k;
    FILE *m = open_memstream(&rec, &len);
    if (!m) {
        return -1;
    }
    put_u64(m, (uint64_t)oc->failed);
    put_str(m, oc->why);
    put_str(m, oc->model_msg);
    put_notes(m, &oc->unrecorded);
    put_notes(m, &oc->unconsumed);
    put_u64(m, oc->nkinds);
    for (i = 0; i < oc->nkinds; i++) {
        put_str(m, oc->kinds[i].name);
        put_u64(m, (uint64_t)oc->kinds[i].kind);
    }
    put_u64(m, oc->nout);
    for (i = 0; i < oc->nout; i++) {
        const deja_tensor *o = &oc->out[i];
        put_str(m, o->name);
        put_u64(m, (uint64_t)o->dtype);
        put_u64(m, o->ndim);
        for (k = 0; k < o->ndim; k++) {
            put_u64(m, o->shape[k]);
        }
        put_u64(m, o->size);
        fwrite(o->data, 1, o->size, m);
    }
    put_u64(m, oc->ckpt != NULL);
    if (oc->ckpt) {
        const deja__ckpt_report *c = oc->ckpt;
        put_u64(m, c->recorded);
        put_u64(m, c->compared);
        put_u64(m, c->identical);
        put_u64(m, c->has_first);
        put_u64(m, c->first_index);
        put_u64(m, c->first_occurrence);
        put_u64(m, c->first_verdict);
        put_u64(m, c->stopped);
        put_str(m, c->first);
        put_str(m, c->first_detail);
        put_u64(m, c->token != NULL);
        put_str(m, c->token);
        put_str(m, c->summary);
        put_u64(m, c->nabsent);
        for (i = 0; i < c->nabsent; i++) {
            put_str(m, c->absent[i]);
        }
        put_u64(m, c->nextra);
        for (i = 0; i < c->nextra; i++) {
            put_str(m, c->extra[i]);
        }
    }
    if (fclose(m) != 0) {
        free(rec);
        return -1;
    }
    put_u64(fp, len);
    fwrite(rec, 1, len, fp);
    free(rec);
    return fflush(fp) != 0 || ferror(fp) ? -1 : 0;
}

/* In the child: run every repeat and write each outcome to `fd` as it
 * comes, then _exit. */
static void child_run(deja_model *model, const deja_trace *t, const fpmode *env, unsigned n,
                      int fd)
{
    FILE *fp = fdopen(fd, "w");
    unsigned r;
    if (!fp) {
        _exit(3);
    }
    /* Die by the signal, so the parent can name it: handlers inherited
     * from the host (a test framework's, a sanitizer's, deja's crash
     * message) would exit instead, or run atexit work that a forked child
     * of a threaded process must not. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    signal(SIGILL, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    for (r = 0; r < n; r++) {
        outcome oc;
        memset(&oc, 0, sizeof(oc));
        if (run_inline(model, t, env, &oc) != 0) {
            _exit(4);
        }
        if (put_outcome(fp, &oc) != 0) {
            _exit(5);
        }
        outcome_free(&oc);
    }
    _exit(0);
}

/* A cursor over the child's bytes. */
typedef struct cursor {
    const uint8_t *p;
    size_t left;
    int bad;
} cursor;

static uint64_t get_u64(cursor *c)
{
    uint64_t v = 0;
    if (c->left < sizeof(v)) {
        c->bad = 1;
        return 0;
    }
    memcpy(&v, c->p, sizeof(v));
    c->p += sizeof(v);
    c->left -= sizeof(v);
    return v;
}

/* A malloc'd copy of the next string, or NULL (c->bad set when malformed,
 * not when out of memory: the caller checks). */
static char *get_str(cursor *c)
{
    uint64_t n = get_u64(c);
    char *s;
    if (c->bad || n > c->left) {
        c->bad = 1;
        return NULL;
    }
    s = malloc((size_t)n + 1);
    if (!s) {
        c->bad = 1;
        return NULL;
    }
    memcpy(s, c->p, (size_t)n);
    s[n] = '\0';
    c->p += n;
    c->left -= (size_t)n;
    return s;
}

static void get_notes(cursor *c, notes *l)
{
    uint64_t n = get_u64(c), i;
    for (i = 0; i < n && !c->bad; i++) {
        char *line = get_str(c);
        if (line && notes_add(l, line) != 0) {
            c->bad = 1;
        }
        free(line);
    }
}

/* Parse one record of the child (without its length) into `oc`. Returns 0
 * or DEJA_ECORRUPT. */
static int parse_child(const uint8_t *data, size_t size, outcome *oc)
{
    cursor c = {data, size, 0};
    uint64_t n, i, k;
    oc->failed = (int)get_u64(&c);
    oc->why = get_str(&c);
    oc->model_msg = get_str(&c);
    get_notes(&c, &oc->unrecorded);
    get_notes(&c, &oc->unconsumed);
    n = get_u64(&c);
    for (i = 0; i < n && !c.bad; i++) {
        char *name = get_str(&c);
        uint64_t kind = get_u64(&c);
        if (c.bad || outcome_kind(oc, name, kind) != 0) {
            c.bad = 1;
        }
        free(name);
    }
    n = get_u64(&c);
    for (i = 0; i < n && !c.bad; i++) {
        uint64_t shape[DEJA_MAX_DIMS], ndim, dtype, bytes;
        char *name = get_str(&c);
        dtype = get_u64(&c);
        ndim = get_u64(&c);
        if (ndim > DEJA_MAX_DIMS) {
            c.bad = 1;
        }
        for (k = 0; k < ndim && !c.bad; k++) {
            shape[k] = get_u64(&c);
        }
        bytes = get_u64(&c);
        if (c.bad || bytes > c.left ||
            outcome_add(oc, name, (deja_dtype)dtype, (size_t)ndim, shape, c.p, (size_t)bytes)) {
            c.bad = 1;
        } else {
            c.p += bytes;
            c.left -= (size_t)bytes;
        }
        free(name);
    }
    if (!c.bad && get_u64(&c) != 0 && !c.bad) {
        deja__ckpt_report *r = deja__ckpt_report_new();
        if (!r) {
            return deja__error_set(DEJA_ENOMEM, "replay: out of memory");
        }
        oc->ckpt = r;
        r->recorded = get_u64(&c);
        r->compared = get_u64(&c);
        r->identical = get_u64(&c);
        r->has_first = get_u64(&c);
        r->first_index = get_u64(&c);
        r->first_occurrence = get_u64(&c);
        r->first_verdict = get_u64(&c);
        r->stopped = get_u64(&c);
        r->first = get_str(&c);
        r->first_detail = get_str(&c);
        k = get_u64(&c);
        r->token = get_str(&c);
        if (!k) {
            free(r->token);
            r->token = NULL;
        }
        r->summary = get_str(&c);
        if (r->first_verdict > DEJA_VERDICT_ERROR) {
            c.bad = 1;
        }
        for (int extra = 0; extra < 2 && !c.bad; extra++) {
            n = get_u64(&c);
            for (i = 0; i < n && !c.bad; i++) {
                char *line = get_str(&c);
                if (!line || deja__ckpt_report_add(r, extra, line) != 0) {
                    c.bad = 1;
                }
                free(line);
            }
        }
    }
    if (c.bad) {
        return deja__error_set(DEJA_ECORRUPT, "replay: the isolated model's answer is malformed");
    }
    return 0;
}

/* Milliseconds left until `deadline_ns` on the monotonic clock (-1: no
 * deadline, 0: passed). */
static int ms_left(int64_t deadline_ns)
{
    struct timespec ts;
    int64_t now, left;
    if (deadline_ns <= 0) {
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    left = deadline_ns - now;
    if (left <= 0) {
        return 0;
    }
    return left / 1000000 > INT32_MAX ? INT32_MAX : (int)(left / 1000000) + 1;
}

/* The monotonic time `seconds` from now, in ns; 0 for no limit. */
static int64_t deadline_after(double seconds)
{
    struct timespec ts;
    if (!(seconds > 0)) {
        return 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + (int64_t)(seconds * 1e9);
}

/* Run the `n` repeats of trace `t` in one child process and fill `ocs`.
 * A child killed by a signal, or exiting early, fails the repeats it did
 * not answer; a child still running at the deadline is killed and
 * `*timed_out` set. */
static int run_isolated(engine *e, deja_model *model, const deja_trace *t, const fpmode *env,
                        outcome *ocs, unsigned n, int *timed_out)
{
    int fds[2], status = 0, rc = 0;
    uint8_t *buf = NULL;
    size_t used = 0, cap = 0, off = 0;
    int64_t deadline = deadline_after(e->o.timeout);
    unsigned r, got_n = 0;
    char *death = NULL;
    pid_t pid;
    if (pipe(fds) != 0) {
        return deja__error_set(DEJA_EIO, "replay: pipe: %s", strerror(errno));
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return deja__error_set(DEJA_EIO, "replay: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        child_run(model, t, env, n, fds[1]);
    }
    close(fds[1]);
    for (;;) {
        ssize_t got;
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int wait_ms = ms_left(deadline);
        if (wait_ms == 0) {
            *timed_out = 1;
            break;
        }
        if (poll(&pfd, 1, wait_ms) < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = deja__error_set(DEJA_EIO, "replay: poll: %s", strerror(errno));
            break;
        }
        if (pfd.revents == 0) {
            continue;
        }
        if (used == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            uint8_t *nb = ncap <= MAX_CHILD_OUTPUT ? realloc(buf, ncap) : NULL;
            if (!nb) {
                rc = deja__error_set(DEJA_ENOMEM,
                                     "replay: the isolated model's outputs exceed "
                                     "memory or %zu bytes",
                                     MAX_CHILD_OUTPUT);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        got = read(fds[0], buf + used, cap - used);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            break;
        }
        used += (size_t)got;
    }
    close(fds[0]);
    if (rc != 0 || *timed_out) {
        kill(pid, SIGKILL);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (rc != 0) {
        goto cleanup;
    }
    /* The complete records first, in repeat order. */
    for (r = 0; r < n && rc == 0; r++) {
        uint64_t len;
        if (used - off < sizeof(len)) {
            break;
        }
        memcpy(&len, buf + off, sizeof(len));
        if (len > used - off - sizeof(len)) {
            break;
        }
        rc = parse_child(buf + off + sizeof(len), (size_t)len, &ocs[r]);
        off += sizeof(len) + (size_t)len;
        got_n++;
    }
    if (rc != 0 || got_n == n || *timed_out) {
        goto cleanup;
    }
    if (WIFSIGNALED(status)) {
        if (asprintf(&death, "the model crashed (signal %d, %s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status))) < 0) {
            death = NULL;
        }
    } else {
        /* Exited instead of answering: the model called exit(), or a
         * sanitizer caught its crash. */
        if (asprintf(&death, "the model's process exited with status %d instead of answering",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1) < 0) {
            death = NULL;
        }
    }
    if (!death) {
        rc = deja__error_set(DEJA_ENOMEM, "replay: out of memory");
        goto cleanup;
    }
    for (r = got_n; r < n && rc == 0; r++) {
        ocs[r].failed = 1;
        ocs[r].why = strdup(death);
        if (!ocs[r].why) {
            rc = deja__error_set(DEJA_ENOMEM, "replay: out of memory");
        }
    }
cleanup:
    free(death);
    free(buf);
    return rc;
}

/* The inferences of one trace on a thread of their own, so that a model
 * that hangs can be left behind at the timeout. When it is, the job owns
 * the trace and the outcomes and frees them if the inference ever ends;
 * the model instance is never freed (the thread may still be inside it). */
typedef struct job {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int abandoned;
    int rc;
    deja_model *model;
    deja_trace *trace;
    fpmode fp;
    outcome *ocs;
    unsigned n;
} job;

static void job_free(job *j)
{
    unsigned r;
    for (r = 0; j->ocs && r < j->n; r++) {
        outcome_free(&j->ocs[r]);
    }
    free(j->ocs);
    deja_trace_free(j->trace);
    pthread_cond_destroy(&j->cond);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

/* Run a job's inferences and mark it done. Returns non-zero when the job
 * had been abandoned (it was freed here, and so must the runner be). */
static int job_run(job *j)
{
    unsigned r;
    int rc = 0, abandoned;
    for (r = 0; r < j->n && rc == 0; r++) {
        rc = run_inline(j->model, j->trace, &j->fp, &j->ocs[r]);
    }
    pthread_mutex_lock(&j->lock);
    j->rc = rc;
    j->done = 1;
    abandoned = j->abandoned;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
    if (abandoned) {
        job_free(j);
    }
    return abandoned;
}

/* A worker's inference thread, kept from trace to trace (models that keep
 * per-thread state, such as an OpenMP team, see one thread), replaced
 * only when a job is abandoned inside it. */
typedef struct runner {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    job *pending;
    int quit;
} runner;

static void *runner_main(void *arg)
{
    runner *rn = arg;
    for (;;) {
        job *j;
        pthread_mutex_lock(&rn->lock);
        while (!rn->pending && !rn->quit) {
            pthread_cond_wait(&rn->cond, &rn->lock);
        }
        j = rn->pending;
        rn->pending = NULL;
        pthread_mutex_unlock(&rn->lock);
        if (!j) {
            break; /* quit */
        }
        if (job_run(j)) {
            /* Left behind: nobody waits for this runner any more. */
            pthread_cond_destroy(&rn->cond);
            pthread_mutex_destroy(&rn->lock);
            free(rn);
            break;
        }
    }
    return NULL;
}

/* Start a runner, or NULL. */
static runner *runner_new(void)
{
    runner *rn = calloc(1, sizeof(*rn));
    if (!rn) {
        return NULL;
    }
    pthread_mutex_init(&rn->lock, NULL);
    pthread_cond_init(&rn->cond, NULL);
    if (pthread_create(&rn->thread, NULL, runner_main, rn) != 0) {
        pthread_cond_destroy(&rn->cond);
        pthread_mutex_destroy(&rn->lock);
        free(rn);
        return NULL;
    }
    return rn;
}

/* Stop and free an idle runner. Accepts NULL. */
static void runner_stop(runner *rn)
{
    if (!rn) {
        return;
    }
    pthread_mutex_lock(&rn->lock);
    rn->quit = 1;
    pthread_cond_signal(&rn->cond);
    pthread_mutex_unlock(&rn->lock);
    pthread_join(rn->thread, NULL);
    pthread_cond_destroy(&rn->cond);
    pthread_mutex_destroy(&rn->lock);
    free(rn);
}

/* Load `spec` for this replay. A model in another process (exec:) is given
 * the replay's timeout, so that a runner that hangs is killed at the
 * timeout rather than left running; 0 (no limit) is as good as none. */
static int load_model(const engine *e, deja_model **out, const char *spec)
{
    deja_model_options mo = DEJA_MODEL_OPTIONS_INIT;
    const double ms = e->o.timeout * 1000.0;
    mo.timeout_ms = e->o.timeout > 0 && ms < (double)UINT_MAX ? (unsigned)(ms + 0.5) : UINT_MAX;
    if (mo.timeout_ms == 0)
        mo.timeout_ms = 1;
    return deja_model_load_ext(out, spec, &mo);
}

/* Remember `old` as an instance a timed-out inference still runs in
 * (never freed) and give the caller a fresh one in `*modelp` (NULL when it
 * cannot be loaded: the slot says why). */
static void replace_model(engine *e, deja_model **modelp, deja_model *old)
{
    deja_model *fresh = NULL;
    size_t k;
    if (load_model(e, &fresh, e->spec) != 0) {
        fresh = NULL;
    }
    pthread_mutex_lock(&e->lock);
    for (k = 0; k < e->nmodels; k++) {
        if (e->models[k] == old) {
            e->models[k] = fresh;
        }
    }
    if (e->nabandoned < MAX_JOBS) {
        e->abandoned[e->nabandoned++] = old;
    }
    pthread_mutex_unlock(&e->lock);
    *modelp = fresh;
}

/* Run the `n` repeats of trace `s->trace` in this process on a thread of
 * their own, waiting at most the timeout. On a timeout the trace moves to
 * the abandoned job (s->trace becomes NULL) and the worker gets a fresh
 * model instance. */
static int run_timed(engine *e, size_t wi, deja_model **modelp, slot *s, const fpmode *fp,
                     outcome *ocs, unsigned n, int *timed_out)
{
    pthread_condattr_t ca;
    struct timespec until;
    runner *rn = e->runners[wi];
    job *j;
    int rc = 0, wrc = 0;
    if (!rn && !(rn = e->runners[wi] = runner_new())) {
        return deja__error_set(DEJA_EIO, "replay: cannot start an inference thread");
    }
    j = calloc(1, sizeof(*j));
    if (!j || !(j->ocs = calloc(n, sizeof(*j->ocs)))) {
        free(j);
        return deja__error_set(DEJA_ENOMEM, "replay: out of memory");
    }
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->cond, &ca);
    pthread_condattr_destroy(&ca);
    j->model = *modelp;
    j->trace = s->trace;
    j->fp = *fp;
    j->n = n;
    clock_gettime(CLOCK_MONOTONIC, &until);
    {
        double secs = e->o.timeout;
        time_t whole = (time_t)secs;
        long ns = (long)((secs - (double)whole) * 1e9);
        until.tv_sec += whole;
        until.tv_nsec += ns;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&rn->lock);
    rn->pending = j;
    pthread_cond_signal(&rn->cond);
    pthread_mutex_unlock(&rn->lock);
    pthread_mutex_lock(&j->lock);
    while (!j->done && wrc != ETIMEDOUT) {
        wrc = pthread_cond_timedwait(&j->cond, &j->lock, &until);
    }
    if (!j->done) {
        /* Left behind: the job keeps the trace and frees it, and its
         * runner, if it ends; this worker gets a new runner. */
        j->abandoned = 1;
        s->trace = NULL;
        pthread_mutex_unlock(&j->lock);
        pthread_detach(rn->thread);
        e->runners[wi] = NULL;
        *timed_out = 1;
        replace_model(e, modelp, j->model);
        return 0;
    }
    pthread_mutex_unlock(&j->lock);
    rc = j->rc;
    memcpy(ocs, j->ocs, n * sizeof(*ocs));
    free(j->ocs);
    j->ocs = NULL;
    j->trace = NULL;
    job_free(j);
    return rc;
}

/* Run the `n` repeats of the slot's trace, in this process (on a thread of
 * their own when there is a timeout) or isolated. */
static int run_all(engine *e, size_t wi, deja_model **modelp, slot *s, const fpmode *fp,
                   outcome *ocs, unsigned n, int *timed_out)
{
    unsigned r;
    int rc = 0;
    *timed_out = 0;
    if (e->o.isolate) {
        return run_isolated(e, *modelp, s->trace, fp, ocs, n, timed_out);
    }
    if (e->o.timeout > 0) {
        return run_timed(e, wi, modelp, s, fp, ocs, n, timed_out);
    }
    for (r = 0; r < n && rc == 0; r++) {
        rc = run_inline(*modelp, s->trace, fp, &ocs[r]);
    }
    return rc;
}

/* The failure text of `full` without the "model NAME VERSION: " prefix
 * that deja_model_infer() puts before the model's own message: what the
 * model said, the same for every version that fails the same way. */
static const char *failure_text(const char *full, const char *name, const char *version)
{
    size_t ln, lv;
    if (!full) {
        return "";
    }
    name = name ? name : "";
    version = version ? version : "";
    ln = strlen(name);
    lv = strlen(version);
    if (strncmp(full, "model ", 6) == 0 && strncmp(full + 6, name, ln) == 0 &&
        full[6 + ln] == ' ' && strncmp(full + 7 + ln, version, lv) == 0 &&
        strncmp(full + 7 + ln + lv, ": ", 2) == 0) {
        return full + 9 + ln + lv;
    }
    return full;
}

/* Non-zero when the recorded failure of `t` is the failure seen on replay
 * on `model`: the same text, exactly, once each side's "model NAME
 * VERSION: " prefix is taken off. */
static int error_matches(const deja_trace *t, const outcome *oc, const deja_model *model)
{
    const char *rec = failure_text(t->error, t->model_name, t->model_version);
    const char *now = failure_text(oc->why, deja_model_name(model), deja_model_version(model));
    return strcmp(rec, now) == 0;
}

/* Note in the slot which outputs (or the status) of `b` differ from `a`. */
static int note_varying(slot *s, const outcome *a, const outcome *b)
{
    deja_diff *vd = NULL;
    deja_diff_options exact = DEJA_DIFF_OPTIONS_INIT;
    size_t k;
    int rc = 0;
    if (a->failed != b->failed ||
        (a->failed && strcmp(a->why ? a->why : "", b->why ? b->why : "") != 0)) {
        rc = notes_add(&s->varying, "status");
        if (rc != 0 || !a->failed || !b->failed) {
            return rc;
        }
    }
    exact.atol = 0;
    exact.rtol = 0;
    rc = deja_diff_outputs(a->out, a->nout, b->out, b->nout, &exact, &vd);
    for (k = 0; rc == 0 && k < vd->ntensors; k++) {
        if (vd->tensors[k].kind != DEJA_DIFF_EQUAL) {
            rc = notes_add(&s->varying, vd->tensors[k].name);
        }
    }
    deja_diff_free(vd);
    return rc;
}

/* Non-zero when `name` is among the slot's varying outputs. */
static int is_varying(const slot *s, const char *name)
{
    size_t i;
    for (i = 0; i < s->varying.n; i++) {
        if (strcmp(s->varying.v[i], name ? name : "") == 0) {
            return 1;
        }
    }
    return 0;
}

/* Hex of at most 8 bytes of `d`, into `out` (17 bytes). */
static void short_hex(const uint8_t *d, size_t n, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n && i < 8; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * i] = '\0';
}

/* Note how `model` differs from the model that recorded `t`: version (or
 * name), configuration (ARG) and weights digest. */
static int note_model_changes(slot *s, const deja_trace *t, const deja_model *model)
{
    char line[1024], ha[17], hb[17];
    const char *name = deja_model_name(model), *version = deja_model_version(model);
    const char *cfg = deja_model_config(model);
    size_t dsize = 0;
    const uint8_t *digest = deja_model_digest(model, &dsize);
    int rc = 0;
    if (strcmp(t->model_name, name) != 0 || strcmp(t->model_version, version) != 0) {
        snprintf(line, sizeof(line), "the model changed: recorded by %s %s, replayed on %s %s",
                 t->model_name, t->model_version, name, version);
        rc = notes_add(&s->changes, line);
    }
    if (rc == 0 && t->has_model_config && strcmp(t->model_config, cfg ? cfg : "") != 0) {
        snprintf(line, sizeof(line), "configuration differs (ARG %s%.300s%s vs %s%.300s%s)",
                 *t->model_config ? "'" : "", *t->model_config ? t->model_config : "none",
                 *t->model_config ? "'" : "", cfg && *cfg ? "'" : "", cfg && *cfg ? cfg : "none",
                 cfg && *cfg ? "'" : "");
        rc = notes_add(&s->changes, line);
    }
    if (rc == 0 && t->model_digest_size > 0 &&
        (t->model_digest_size != dsize || memcmp(t->model_digest, digest, dsize) != 0)) {
        short_hex(t->model_digest, t->model_digest_size, ha);
        short_hex(digest, dsize, hb);
        snprintf(line, sizeof(line), "weights differ (digest %s vs %s)", ha, hb);
        rc = notes_add(&s->changes, line);
    }
    return rc;
}

/* Non-zero when output `name` of `t` was truncated when recorded. */
static int was_truncated(const deja_trace *t, const char *name)
{
    size_t i;
    for (i = 0; i < t->ntags; i++) {
        if (strcmp(t->tags[i].key, "deja.truncated") == 0 && strcmp(t->tags[i].value, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The replayed outputs as the diff should see them: an output truncated
 * when recorded is cut to the recorded prefix (and the slot says so).
 * `view` has oc->nout entries; `shapes` one dimension per entry. */
static int cut_truncated(slot *s, const deja_trace *t, const outcome *oc, deja_tensor *view,
                         uint64_t *shapes)
{
    size_t i, k;
    char line[512];
    int rc = 0;
    for (i = 0; i < oc->nout; i++) {
        view[i] = oc->out[i];
    }
    for (k = 0; k < t->noutputs && rc == 0; k++) {
        const deja_tensor *a = &t->outputs[k];
        size_t es = deja_dtype_size(a->dtype);
        if (!was_truncated(t, a->name)) {
            continue;
        }
        for (i = 0; i < oc->nout; i++) {
            if (strcmp(view[i].name, a->name) != 0 || view[i].dtype != a->dtype || es == 0) {
                continue;
            }
            if (view[i].size >= a->size) {
                snprintf(line, sizeof(line),
                         "output '%.200s' was truncated when recorded: compared on its first %zu "
                         "of %zu bytes",
                         a->name, a->size, view[i].size);
                shapes[i] = a->size / es;
                view[i].ndim = 1;
                view[i].shape = &shapes[i];
                view[i].size = a->size;
            } else {
                snprintf(line, sizeof(line),
                         "output '%.200s' was truncated when recorded at %zu bytes; the replay "
                         "wrote only %zu",
                         a->name, a->size, view[i].size);
            }
            rc = notes_add(&s->cmp_notes, line);
            break;
        }
    }
    return rc;
}

/* The kinds to compare with: the recorded declarations first, then the
 * replaying model's (an array of `*n` borrowed entries, or NULL). */
static deja_output_decl *merged_kinds(const deja_trace *t, const outcome *oc, size_t *n)
{
    deja_output_decl *k;
    *n = t->noutput_kinds + oc->nkinds;
    if (*n == 0) {
        return NULL;
    }
    k = calloc(*n, sizeof(*k));
    if (!k) {
        return NULL;
    }
    if (t->noutput_kinds) {
        memcpy(k, t->output_kinds, t->noutput_kinds * sizeof(*k));
    }
    if (oc->nkinds) {
        memcpy(k + t->noutput_kinds, oc->kinds, oc->nkinds * sizeof(*k));
    }
    return k;
}

/* The tensor diff of output `name` in `d`, or NULL. */
static const deja_tensor_diff *tensor_named(const deja_diff *d, const char *name)
{
    size_t k;
    for (k = 0; k < d->ntensors; k++) {
        if (strcmp(d->tensors[k].name, name) == 0) {
            return &d->tensors[k];
        }
    }
    return NULL;
}

/* Replay the slot's trace once on the baseline `bm` and diff its outputs
 * against the recording with the same options, into `*out`. A baseline
 * that fails or times out gives no diff (nothing counts as noise).
 * Returns 0 or a negative code when the baseline could not run. */
static int baseline_diff(engine *e, deja_model *bm, slot *s, const fpmode *fp,
                         const deja_diff_options *dopt, deja_diff **out)
{
    outcome oc;
    int timed_out = 0, rc;
    deja_model *m = bm;
    *out = NULL;
    memset(&oc, 0, sizeof(oc));
    if (!bm) {
        return deja__error_set(DEJA_EMODEL, "no instance");
    }
    fpmode bfp = *fp;
    bfp.ck_compare = 0; /* the baseline runs to the end, uncompared */
    rc = e->o.isolate ? run_isolated(e, m, s->trace, &bfp, &oc, 1, &timed_out)
                      : run_inline(m, s->trace, &bfp, &oc);
    if (rc == 0 && !timed_out && oc.failed == (s->trace->status == DEJA_STATUS_ERROR)) {
        rc = deja_diff_outputs(s->trace->outputs, s->trace->noutputs, oc.out, oc.nout, dopt, out);
    }
    outcome_free(&oc);
    return rc;
}

/* Replay trace `i` on `model` and fill its slot (never fails: every
 * problem becomes the slot's verdict). */
static void replay_one(engine *e, deja_model **modelp, size_t wi, size_t i)
{
    slot *s = &e->slots[i];
    deja_model *model = *modelp;
    deja_diff *bdiff = NULL;
    fpmode fp;
    outcome *ocs = NULL, *first;
    const deja_trace *t;
    deja_tensor *view = NULL;
    uint64_t *shapes = NULL;
    deja_output_decl *kinds = NULL;
    deja_diff_options dopt;
    size_t k, nkinds = 0;
    int rc, timed_out = 0, status_varies;
    unsigned r;
    pthread_mutex_lock(&e->lock);
    if (e->given != NULL) {
        s->trace = e->given[i];
        e->given[i] = NULL;
        rc = s->trace != NULL ? 0 : deja__error_set(DEJA_EINVAL, "replay: no trace given");
    } else {
        rc = deja_trace_get(e->store, &e->ids[i], &s->trace);
    }
    if (rc == 0 && s->trace->has_env) {
        s->env = env_lookup(e, &s->trace->env);
    } else if (rc == 0) {
        s->env = &e->unknown;
    }
    pthread_mutex_unlock(&e->lock);
    if (rc != 0) {
        s->trace = NULL;
        slot_fail(s, rc, 1, "%s", deja_error_last());
        goto cleanup;
    }
    if (!s->env) {
        slot_fail(s, DEJA_ENOMEM, 1, "out of memory comparing environments");
        goto cleanup;
    }
    if (!model) {
        slot_fail(s, DEJA_EMODEL, 1,
                  "no model instance: a replacement for one that timed out could not be loaded");
        goto cleanup;
    }
    t = s->trace;
    if (strcmp(t->model_name ? t->model_name : "", deja_model_name(model)) != 0) {
        s->mismatch = 1;
        if (!e->o.force) {
            slot_fail(s, DEJA_EINVAL, 1,
                      "recorded by model '%s', but the plugin is model '%s' (--force replays "
                      "it anyway)",
                      t->model_name ? t->model_name : "", deja_model_name(model));
            goto cleanup;
        }
    }
    if (note_model_changes(s, t, model) != 0) {
        slot_fail(s, DEJA_ENOMEM, 1, "%s", deja_error_last());
        goto cleanup;
    }
    ocs = calloc(e->o.repeat, sizeof(*ocs));
    if (!ocs) {
        slot_fail(s, DEJA_ENOMEM, 1, "out of memory for %u repeats", e->o.repeat);
        goto cleanup;
    }
    fp_of(s->env->env, &fp);
    fp.ck_compare = 1;
    fp.ck_stop = e->o.stop_at_first;
    fp.ck_diff = e->o.diff;
    rc = run_all(e, wi, modelp, s, &fp, ocs, e->o.repeat, &timed_out);
    if (rc != 0) {
        slot_fail(s, rc, 1, "cannot replay: %s", deja_error_last());
        goto cleanup;
    }
    if (timed_out) {
        slot_fail(s, DEJA_EMODEL, 0, "timed out after %g s%s", e->o.timeout,
                  e->o.isolate ? " (the worker was killed)" : "");
        goto cleanup;
    }
    first = &ocs[0];
    s->ckpt = first->ckpt; /* the first run's, whatever the verdict */
    first->ckpt = NULL;
    for (r = 0; r < e->o.repeat && rc == 0; r++) {
        for (k = 0; k < ocs[r].unrecorded.n && rc == 0; k++) {
            rc = notes_add(&s->unrecorded, ocs[r].unrecorded.v[k]);
        }
        if (rc == 0 && r > 0) {
            rc = note_varying(s, first, &ocs[r]);
        }
    }
    for (k = 0; k < first->unconsumed.n && rc == 0; k++) {
        rc = notes_add(&s->unconsumed, first->unconsumed.v[k]);
    }
    if (rc != 0) {
        slot_fail(s, rc, 1, "%s", deja_error_last());
        goto cleanup;
    }
    status_varies = is_varying(s, "status");
    if (first->failed && t->status != DEJA_STATUS_ERROR && !(s->ckpt && s->ckpt->stopped)) {
        if (status_varies) {
            s->verdict = DEJA_VERDICT_NONDETERMINISTIC;
            if (asprintf(&s->error, "the model failed in some repeats: %s", first->why) < 0) {
                s->error = NULL;
            }
        } else {
            slot_fail(s, DEJA_EMODEL, 0, "the model failed: %s", first->why);
        }
        goto cleanup;
    }
    view = calloc(first->nout + 1, sizeof(*view));
    shapes = calloc(first->nout + 1, sizeof(*shapes));
    kinds = merged_kinds(t, first, &nkinds);
    if (!view || !shapes || (nkinds && !kinds) || cut_truncated(s, t, first, view, shapes) != 0) {
        slot_fail(s, DEJA_ENOMEM, 1, "out of memory comparing outputs");
        goto cleanup;
    }
    dopt = e->o.diff;
    dopt.kinds = kinds;
    dopt.nkinds = nkinds;
    rc = deja_diff_outputs(t->outputs, t->noutputs, view, first->nout, &dopt, &s->diff);
    if (rc != 0) {
        slot_fail(s, rc, 1, "cannot diff the outputs: %s", deja_error_last());
        goto cleanup;
    }
    if (e->bmodels && baseline_diff(e, e->bmodels[wi], s, &fp, &dopt, &bdiff) != 0) {
        slot_fail(s, DEJA_EMODEL, 1, "the baseline %s: %s", e->o.baseline, deja_error_last());
        goto cleanup;
    }
    /* The verdict is earned per output: one that differs the same way on
     * every repeat is a divergence, whatever the others do; one the
     * baseline replays at least as differently is noise. */
    s->verdict = DEJA_VERDICT_SAME;
    for (k = 0; k < s->diff->ntensors; k++) {
        const deja_tensor_diff *td = &s->diff->tensors[k];
        const deja_tensor_diff *bd = bdiff ? tensor_named(bdiff, td->name) : NULL;
        if (is_varying(s, td->name)) {
            continue;
        }
        if (bd && td->verdict != DEJA_VERDICT_SAME && bd->verdict >= td->verdict) {
            char line[600];
            snprintf(line, sizeof(line), "%.100s: %.480s", td->name, td->detail);
            if (notes_add(&s->noise, line) != 0) {
                slot_fail(s, DEJA_ENOMEM, 1, "out of memory");
                goto cleanup;
            }
            continue;
        }
        if (td->verdict > s->verdict) {
            s->verdict = td->verdict;
        }
    }
    if (!first->failed) { /* kept for the result (deja replay --rules) */
        s->out = first->out;
        s->nout = first->nout;
        first->out = NULL;
        first->nout = 0;
    }
    if (t->status == DEJA_STATUS_ERROR && !status_varies) {
        const char *rec = t->error ? t->error : "";
        if (!first->failed) {
            s->verdict = DEJA_VERDICT_DIVERGED;
            if (asprintf(&s->error, "recorded as failed ('%s'), the replay succeeded", rec) < 0) {
                s->error = NULL;
            }
        } else if (!error_matches(t, first, model)) {
            s->verdict = DEJA_VERDICT_DIVERGED;
            if (asprintf(&s->error, "recorded failure '%s', replay failure '%s'", rec,
                         first->why) < 0) {
                s->error = NULL;
            }
        }
    }
    if (s->varying.n > 0 && s->verdict != DEJA_VERDICT_DIVERGED) {
        s->verdict = DEJA_VERDICT_NONDETERMINISTIC;
    }
    if (s->ckpt && s->ckpt->stopped) {
        /* Stopped at the first divergent checkpoint: the outputs were never
         * written, the verdict is that checkpoint's. */
        s->verdict = (deja_verdict)s->ckpt->first_verdict;
    }
cleanup:
    deja_diff_free(bdiff);
    for (r = 0; ocs && r < e->o.repeat; r++) {
        outcome_free(&ocs[r]);
    }
    free(ocs);
    free(view);
    free(shapes);
    free(kinds);
}

/* Mark slot `i` done, tell the progress callback, wake the emitter. */
static void finish(engine *e, size_t i)
{
    pthread_mutex_lock(&e->lock);
    e->slots[i].ready = 1;
    e->done++;
    if (e->o.progress) {
        e->o.progress(e->done, e->n, e->o.progress_payload);
    }
    pthread_cond_broadcast(&e->ready);
    pthread_mutex_unlock(&e->lock);
}

/* Argument of a worker thread. */
typedef struct worker {
    engine *e;
    deja_model *model;
    size_t index;
    pthread_t thread;
    int started;
} worker;

/* Claim and replay traces until none are left or the run stops. */
static void *worker_main(void *arg)
{
    worker *w = arg;
    engine *e = w->e;
    for (;;) {
        size_t i;
        pthread_mutex_lock(&e->lock);
        if (e->stop || e->next >= e->n) {
            pthread_mutex_unlock(&e->lock);
            break;
        }
        i = e->next++;
        pthread_mutex_unlock(&e->lock);
        replay_one(e, &w->model, w->index, i);
        finish(e, i);
    }
    return NULL;
}

/* Hand slot `i` to the callback and the summary, then clear it. Returns the
 * callback's value. */
static int emit(engine *e, size_t i, deja_replay_cb cb, void *payload, deja_replay_summary *sum,
                deja_model *model)
{
    slot *s = &e->slots[i];
    deja_replay_result res;
    int stop = 0;
    memset(&res, 0, sizeof(res));
    res.id = e->ids[i];
    res.index = i;
    res.verdict = s->verdict;
    res.code = s->verdict == DEJA_VERDICT_ERROR ? (s->code ? s->code : DEJA_EMODEL) : 0;
    res.error = s->error ? s->error : "";
    res.trace = s->trace;
    res.diff = s->verdict == DEJA_VERDICT_ERROR ? NULL : s->diff;
    res.model_name = deja_model_name(model);
    res.model_version = deja_model_version(model);
    if (s->env && s->env->diff) {
        res.env = s->env->diff->lines;
        res.nenv = s->env->diff->nlines;
        pthread_mutex_lock(&e->lock);
        res.env_first = !s->env->emitted;
        s->env->emitted = 1;
        pthread_mutex_unlock(&e->lock);
    }
    res.unrecorded = (const char *const *)s->unrecorded.v;
    res.nunrecorded = s->unrecorded.n;
    res.unconsumed = (const char *const *)s->unconsumed.v;
    res.nunconsumed = s->unconsumed.n;
    res.varying = (const char *const *)s->varying.v;
    res.nvarying = s->varying.n;
    res.outputs = s->out;
    res.noutputs = s->nout;
    res.model_changes = (const char *const *)s->changes.v;
    res.nmodel_changes = s->changes.n;
    res.notes = (const char *const *)s->cmp_notes.v;
    res.nnotes = s->cmp_notes.n;
    res.noise = (const char *const *)s->noise.v;
    res.nnoise = s->noise.n;
    res.checkpoints = s->ckpt ? deja__ckpt_report_view(s->ckpt) : NULL;
    sum->noisy += s->noise.n > 0;
    deja__summary_add(sum, s->verdict);
    sum->trouble += s->trouble;
    sum->name_mismatch += s->mismatch;
    if (cb) {
        stop = cb(&res, payload);
    }
    slot_clear(s);
    return stop;
}

/* Check and complete the options. */
static int options_of(const deja_replay_options *opts, deja_replay_options *o)
{
    static const deja_replay_options dflt = DEJA_REPLAY_OPTIONS_INIT;
    *o = dflt;
    if (opts) {
        if (opts->version < 1 || opts->version > DEJA_REPLAY_OPTIONS_VERSION ||
            opts->diff.version != DEJA_DIFF_OPTIONS_VERSION) {
            return deja__error_set(DEJA_EVERSION, "replay: options version %u, expected 1..%u",
                                   opts->version, DEJA_REPLAY_OPTIONS_VERSION);
        }
        if (opts->version == 1) { /* version 1 ended before stop_at_first */
            memcpy(o, opts, offsetof(deja_replay_options, stop_at_first));
        } else {
            *o = *opts;
        }
    }
    if (o->jobs == 0) {
        o->jobs = 1;
    }
    if (o->repeat == 0) {
        o->repeat = 1;
    }
    if (o->jobs > MAX_JOBS || o->repeat > MAX_REPEAT) {
        return deja__error_set(DEJA_EINVAL, "replay: at most %d jobs and %d repeats", MAX_JOBS,
                               MAX_REPEAT);
    }
    if (o->diff.atol != o->diff.atol || o->diff.rtol != o->diff.rtol) {
        return deja__error_set(DEJA_EINVAL, "replay: tolerances must be numbers");
    }
    if (!(o->timeout >= 0) || o->timeout > 1e9) {
        return deja__error_set(DEJA_EINVAL, "replay: the timeout must be 0 (none) or seconds");
    }
    return 0;
}

/* A replay engine with its model(s) loaded, for any number of runs. */
struct deja__replay_session {
    engine e;
    size_t nworkers;
    deja_model *first_model; /* names the results; alive until the end */
    int lock_ok, cond_ok;
};

void deja__replay_session_close(deja__replay_session *ss)
{
    engine *e;
    size_t i;

    if (ss == NULL) {
        return;
    }
    e = &ss->e;
    for (i = 0; e->runners && i < ss->nworkers; i++) {
        runner_stop(e->runners[i]);
    }
    free(e->runners);
    for (i = 0; e->models && i < e->nmodels; i++) {
        deja_model_free(e->models[i]);
    }
    for (i = 0; e->bmodels && i < ss->nworkers; i++) {
        deja_model_free(e->bmodels[i]);
    }
    free(e->bmodels);
    while (e->envs) {
        env_entry *next = e->envs->next;
        deja_env_free(e->envs->env);
        deja_env_diff_free(e->envs->diff);
        free(e->envs);
        e->envs = next;
    }
    deja_env_diff_free(e->unknown.diff);
    free(e->libs);
    deja_env_free(e->current_owned);
    free(e->models);
    if (ss->cond_ok) {
        pthread_cond_destroy(&e->ready);
    }
    if (ss->lock_ok) {
        pthread_mutex_destroy(&e->lock);
    }
    free(ss);
}

int deja__replay_session_open(deja__replay_session **out, deja_store *store,
                              const char *model_spec, const deja_replay_options *opts,
                              size_t n_hint)
{
    deja__replay_session *ss;
    engine *e;
    size_t i;
    int rc;

    *out = NULL;
    if (!store || !model_spec || n_hint > MAX_IDS) {
        return deja__error_set(DEJA_EINVAL, "replay: a store, ids and a model are required");
    }
    ss = calloc(1, sizeof(*ss));
    if (!ss) {
        return deja__error_set(DEJA_ENOMEM, "replay: out of memory");
    }
    e = &ss->e;
    rc = options_of(opts, &e->o);
    if (rc != 0) {
        free(ss);
        return rc;
    }
    e->store = store;
    e->current = deja_env_current(NULL);
    if (deja_env_compare(NULL, e->current, &e->unknown.diff) != 0) {
        free(ss);
        return DEJA_ENOMEM;
    }
    if (pthread_mutex_init(&e->lock, NULL) != 0) {
        rc = deja__error_set(DEJA_EIO, "replay: cannot create a lock");
        goto cleanup;
    }
    ss->lock_ok = 1;
    if (pthread_cond_init(&e->ready, NULL) != 0) {
        rc = deja__error_set(DEJA_EIO, "replay: cannot create a condition variable");
        goto cleanup;
    }
    ss->cond_ok = 1;
    ss->nworkers = e->o.jobs < n_hint ? e->o.jobs : (n_hint ? n_hint : 1);
    e->models = calloc(ss->nworkers, sizeof(*e->models));
    e->runners = calloc(ss->nworkers, sizeof(*e->runners));
    if (!e->models || !e->runners) {
        rc = deja__error_set(DEJA_ENOMEM, "replay: out of memory");
        goto cleanup;
    }
    rc = load_model(e, &e->models[0], model_spec);
    if (rc != 0) {
        goto cleanup;
    }
    e->nmodels = 1;
    ss->first_model = e->models[0];
    e->spec = model_spec;
    if ((rc = env_with_model(e, e->models[0])) != 0) {
        goto cleanup;
    }
    /* Isolated children must not inherit a lock another worker holds inside a
     * shared instance: isolation gives each worker its own. */
    if (ss->nworkers > 1 && (!deja_model_thread_safe(e->models[0]) || e->o.isolate)) {
        for (i = 1; i < ss->nworkers; i++) {
            rc = load_model(e, &e->models[i], model_spec);
            if (rc != 0) {
                goto cleanup;
            }
            e->nmodels++;
        }
    }
    if (e->o.baseline) {
        /* One baseline instance per worker (plugins are not assumed
         * thread-safe). */
        e->bmodels = calloc(ss->nworkers, sizeof(*e->bmodels));
        if (!e->bmodels) {
            rc = deja__error_set(DEJA_ENOMEM, "replay: out of memory");
            goto cleanup;
        }
        for (i = 0; i < ss->nworkers; i++) {
            rc = load_model(e, &e->bmodels[i], e->o.baseline);
            if (rc != 0) {
                rc = deja__error_wrap(rc, "baseline: ");
                goto cleanup;
            }
        }
    }
cleanup:
    if (rc != 0) {
        deja__replay_session_close(ss);
        return rc;
    }
    *out = ss;
    return 0;
}

int deja__replay_session_run(deja__replay_session *ss, const deja_id *ids, size_t n,
                             deja_replay_cb cb, void *payload, deja_replay_summary *summary)
{
    engine *e = &ss->e;
    worker *workers = NULL;
    deja_replay_summary sum;
    size_t nworkers = ss->nworkers < n ? ss->nworkers : (n ? n : 1), i, emitted = 0;
    int rc = 0, stop = 0;

    memset(&sum, 0, sizeof(sum));
    if (summary) {
        memset(summary, 0, sizeof(*summary));
    }
    if ((n && !ids) || n > MAX_IDS) {
        return deja__error_set(DEJA_EINVAL, "replay: a store, ids and a model are required");
    }
    e->ids = ids;
    e->n = n;
    e->next = 0;
    e->done = 0;
    e->stop = 0;
    e->slots = calloc(n + 1, sizeof(*e->slots));
    workers = calloc(nworkers, sizeof(*workers));
    if (!e->slots || !workers) {
        rc = deja__error_set(DEJA_ENOMEM, "replay: out of memory for %zu traces", n);
        goto cleanup;
    }
    if (nworkers <= 1) {
        for (i = 0; i < n && !stop; i++) {
            deja_model *m = e->models[0];
            replay_one(e, &m, 0, i);
            finish(e, i);
            stop = emit(e, i, cb, payload, &sum, m ? m : ss->first_model);
        }
        goto cleanup;
    }
    for (i = 0; i < nworkers; i++) {
        workers[i].e = e;
        workers[i].index = i;
        workers[i].model = e->models[e->nmodels > 1 ? i : 0];
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            rc = deja__error_set(DEJA_EIO, "replay: cannot start worker thread %zu", i);
            pthread_mutex_lock(&e->lock);
            e->stop = 1;
            pthread_mutex_unlock(&e->lock);
            break;
        }
        workers[i].started = 1;
    }
    for (emitted = 0; emitted < n && rc == 0 && !stop; emitted++) {
        pthread_mutex_lock(&e->lock);
        while (!e->slots[emitted].ready) {
            pthread_cond_wait(&e->ready, &e->lock);
        }
        pthread_mutex_unlock(&e->lock);
        stop = emit(e, emitted, cb, payload, &sum, ss->first_model);
    }
    pthread_mutex_lock(&e->lock);
    e->stop = 1;
    pthread_mutex_unlock(&e->lock);
cleanup:
    for (i = 0; i < nworkers && workers; i++) {
        if (workers[i].started) {
            pthread_join(workers[i].thread, NULL);
        }
    }
    for (i = 0; e->slots && i < n; i++) {
        slot_clear(&e->slots[i]);
    }
    free(e->slots);
    e->slots = NULL;
    for (i = 0; e->given && i < n; i++) {
        deja_trace_free(e->given[i]);
        e->given[i] = NULL;
    }
    e->given = NULL;
    e->ids = NULL;
    e->n = 0;
    free(workers);
    if (summary) {
        *summary = sum;
    }
    return rc;
}

int deja__replay_session_run_traces(deja__replay_session *ss, deja_trace **traces, size_t n,
                                    deja_replay_cb cb, void *payload,
                                    deja_replay_summary *summary)
{
    deja_id *ids = calloc(n + 1, sizeof(*ids));
    int rc;

    if (!ids || (n && !traces)) {
        for (size_t i = 0; traces && i < n; i++) {
            deja_trace_free(traces[i]);
            traces[i] = NULL;
        }
        free(ids);
        return ids ? deja__error_set(DEJA_EINVAL, "replay: no traces given")
                   : deja__error_set(DEJA_ENOMEM, "replay: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (traces[i] != NULL) {
            ids[i] = traces[i]->id;
        }
    }
    ss->e.given = traces;
    rc = deja__replay_session_run(ss, ids, n, cb, payload, summary);
    /* Any the run did not reach (it stopped early) are freed by it. */
    ss->e.given = NULL;
    free(ids);
    return rc;
}

/* Replay traces `ids` on the model `model_spec`; see include/deja.h. */
int deja_replay_run(deja_store *store, const deja_id *ids, size_t n, const char *model_spec,
                    const deja_replay_options *opts, deja_replay_cb cb, void *payload,
                    deja_replay_summary *summary)
{
    deja__replay_session *ss = NULL;
    int rc;

    if (summary) {
        memset(summary, 0, sizeof(*summary));
    }
    if (!store || (n && !ids) || !model_spec || n > MAX_IDS) {
        return deja__error_set(DEJA_EINVAL, "replay: a store, ids and a model are required");
    }
    rc = deja__replay_session_open(&ss, store, model_spec, opts, n);
    if (rc == 0) {
        rc = deja__replay_session_run(ss, ids, n, cb, payload, summary);
    }
    deja__replay_session_close(ss);
    return rc;
}

void deja__summary_add(deja_replay_summary *sum, deja_verdict verdict)
{
    sum->total++;
    switch (verdict) {
    case DEJA_VERDICT_SAME:
        sum->same++;
        break;
    case DEJA_VERDICT_CLOSE:
        sum->close++;
        break;
    case DEJA_VERDICT_NONDETERMINISTIC:
        sum->nondeterministic++;
        break;
    case DEJA_VERDICT_DIVERGED:
        sum->diverged++;
        break;
    default:
        sum->error++;
        break;
    }
}
