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
#include <fenv.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#endif

#include "deja.h"
#include "store/store.h"

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
    notes varying;
    deja_tensor *out; /* the first run's outputs, for the result */
    size_t nout;
} slot;

typedef struct engine {
    deja_store *store;
    const deja_id *ids;
    size_t n;
    deja_replay_options o;
    const deja_env *current;
    deja_model **models; /* one per worker, or one shared */
    size_t nmodels;
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
    notes_free(&s->varying);
    for (size_t i = 0; i < s->nout; i++) {
        free((void *)s->out[i].name);
        free((void *)s->out[i].shape);
        free((void *)s->out[i].data);
    }
    free(s->out);
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

/* Pin the calling thread's rounding mode and flush-to-zero and
 * denormals-are-zero flags to those of `env` (when known). */
static void fp_pin(const deja_env *env)
{
    const char *r;
    if (!env) {
        return;
    }
    r = env->fp_rounding ? env->fp_rounding : "";
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
 * runs copy it out of the ctx, isolated runs read it from the child. */
typedef struct outcome {
    int failed;
    char *why;       /* the full failure message, when failed */
    char *model_msg; /* the model's own message (deja_ctx_fail), or NULL */
    deja_tensor *out;
    size_t nout;
    notes unrecorded;
} outcome;

static void outcome_free(outcome *oc)
{
    size_t i;
    for (i = 0; i < oc->nout; i++) {
        free((void *)oc->out[i].name);
        free((void *)oc->out[i].shape);
        free((void *)oc->out[i].data);
    }
    free(oc->out);
    free(oc->why);
    free(oc->model_msg);
    notes_free(&oc->unrecorded);
    memset(oc, 0, sizeof(*oc));
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

/* Run the model once on trace `t` in this process, pinning the FP mode of
 * `env`, and fill `oc`. Returns 0 (a model failure is in oc->failed) or a
 * negative code when the run could not happen. */
static int run_inline(deja_model *model, const deja_trace *t, const deja_env *env, outcome *oc)
{
    fpstate saved;
    deja_ctx *ctx = NULL;
    const char *const *lines = NULL;
    const deja_tensor *outs;
    size_t n, i;
    int rc = deja_ctx_replay(&ctx, t);
    if (rc != 0) {
        return rc;
    }
    fp_save(&saved);
    fp_pin(env);
    rc = deja_model_infer(model, ctx);
    fp_restore(&saved);
    if (rc != 0) {
        const char *ce = deja_ctx_error(ctx);
        oc->failed = 1;
        oc->why = strdup(deja_error_last());
        oc->model_msg = ce ? strdup(ce) : NULL;
        rc = !oc->why || (ce && !oc->model_msg) ? DEJA_ENOMEM : 0;
    } else {
        outs = deja_ctx_outputs(ctx, &n);
        for (i = 0; i < n && rc == 0 && outs; i++) {
            rc = outcome_add(oc, outs[i].name, outs[i].dtype, outs[i].ndim, outs[i].shape,
                             outs[i].data, outs[i].size);
        }
    }
    n = deja_ctx_unrecorded(ctx, &lines);
    for (i = 0; i < n && rc == 0; i++) {
        rc = notes_add(&oc->unrecorded, lines[i]);
    }
    deja_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------------------
 * Isolation: the inference runs in a child process, so that a crashing
 * model fails its trace, not the run. The child writes the outcome to a
 * pipe: u32 failed, str why, str model_msg, u32 lines + strs, u32 outputs,
 * then per output: str name, u32 dtype, u32 ndim, u64 dims..., u64 size,
 * bytes. A str is a u64 length and its bytes. Host byte order: the child is
 * a fork of this process.
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

/* In the child: run and write the outcome to `fd`, then _exit. */
static void child_run(deja_model *model, const deja_trace *t, const deja_env *env, int fd)
{
    outcome oc;
    FILE *fp = fdopen(fd, "w");
    size_t i, k;
    int rc;
    memset(&oc, 0, sizeof(oc));
    if (!fp) {
        _exit(3);
    }
    /* Die by the signal, so the parent can name it: handlers inherited
     * from the host (a test framework's, a sanitizer's) would exit instead,
     * or run atexit work that a forked child of a threaded process must
     * not. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    signal(SIGILL, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    rc = run_inline(model, t, env, &oc);
    if (rc != 0) {
        _exit(4);
    }
    put_u64(fp, (uint64_t)oc.failed);
    put_str(fp, oc.why);
    put_str(fp, oc.model_msg);
    put_u64(fp, oc.unrecorded.n);
    for (i = 0; i < oc.unrecorded.n; i++) {
        put_str(fp, oc.unrecorded.v[i]);
    }
    put_u64(fp, oc.nout);
    for (i = 0; i < oc.nout; i++) {
        const deja_tensor *o = &oc.out[i];
        put_str(fp, o->name);
        put_u64(fp, (uint64_t)o->dtype);
        put_u64(fp, o->ndim);
        for (k = 0; k < o->ndim; k++) {
            put_u64(fp, o->shape[k]);
        }
        put_u64(fp, o->size);
        fwrite(o->data, 1, o->size, fp);
    }
    if (fflush(fp) != 0 || ferror(fp)) {
        _exit(5);
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

/* Parse the child's bytes into `oc`. Returns 0 or DEJA_ECORRUPT. */
static int parse_child(const uint8_t *data, size_t size, outcome *oc)
{
    cursor c = {data, size, 0};
    uint64_t n, i, k;
    oc->failed = (int)get_u64(&c);
    oc->why = get_str(&c);
    oc->model_msg = get_str(&c);
    n = get_u64(&c);
    for (i = 0; i < n && !c.bad; i++) {
        char *line = get_str(&c);
        if (line && notes_add(&oc->unrecorded, line) != 0) {
            c.bad = 1;
        }
        free(line);
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
    if (c.bad) {
        return deja__error_set(DEJA_ECORRUPT, "replay: the isolated model's answer is malformed");
    }
    return 0;
}

/* Run the model once in a child process and fill `oc`. A child killed by
 * a signal is a model failure naming the signal. */
static int run_isolated(deja_model *model, const deja_trace *t, const deja_env *env, outcome *oc)
{
    int fds[2], status = 0, rc = 0;
    uint8_t *buf = NULL;
    size_t used = 0, cap = 0;
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
        child_run(model, t, env, fds[1]);
    }
    close(fds[1]);
    for (;;) {
        ssize_t got;
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
    if (rc != 0) {
        kill(pid, SIGKILL);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (rc == 0 && WIFSIGNALED(status)) {
        oc->failed = 1;
        if (asprintf(&oc->why, "the model crashed (signal %d, %s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status))) < 0) {
            oc->why = NULL;
            rc = DEJA_ENOMEM;
        }
    } else if (rc == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
        /* Exited instead of answering: the model called exit(), or a
         * sanitizer caught its crash. */
        oc->failed = 1;
        if (asprintf(&oc->why, "the model's process exited with status %d instead of answering",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1) < 0) {
            oc->why = NULL;
            rc = DEJA_ENOMEM;
        }
    } else if (rc == 0) {
        rc = parse_child(buf, used, oc);
    }
    free(buf);
    return rc;
}

/* Run the model once, in this process or isolated. */
static int run_once(engine *e, deja_model *model, const deja_trace *t, const deja_env *env,
                    outcome *oc)
{
    memset(oc, 0, sizeof(*oc));
    return e->o.isolate ? run_isolated(model, t, env, oc) : run_inline(model, t, env, oc);
}

/* Non-zero when the recorded error text `rec` is the failure seen on
 * replay: the same full message, or the same message from the model
 * (`model_msg`, the ctx's) under another model version's prefix. */
static int error_matches(const char *rec, const char *full, const char *model_msg)
{
    size_t lr = strlen(rec), lm;
    if (full && strcmp(rec, full) == 0) {
        return 1;
    }
    if (!model_msg || !*model_msg) {
        return 0;
    }
    lm = strlen(model_msg);
    return lr >= lm && strcmp(rec + lr - lm, model_msg) == 0;
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
        return notes_add(&s->varying, "status");
    }
    if (a->failed) {
        return 0;
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

/* Replay trace `i` on `model` and fill its slot (never fails: every
 * problem becomes the slot's verdict). */
static void replay_one(engine *e, deja_model *model, size_t i)
{
    slot *s = &e->slots[i];
    outcome first, again;
    const deja_trace *t;
    size_t k;
    int rc;
    unsigned r;
    memset(&first, 0, sizeof(first));
    memset(&again, 0, sizeof(again));
    pthread_mutex_lock(&e->lock);
    rc = deja_trace_get(e->store, &e->ids[i], &s->trace);
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
    for (r = 0; r < e->o.repeat; r++) {
        outcome *oc = r == 0 ? &first : &again;
        rc = run_once(e, model, t, s->env->env, oc);
        if (rc != 0) {
            slot_fail(s, rc, 1, "cannot replay: %s", deja_error_last());
            goto cleanup;
        }
        for (k = 0; k < oc->unrecorded.n && rc == 0; k++) {
            rc = notes_add(&s->unrecorded, oc->unrecorded.v[k]);
        }
        if (rc == 0 && r > 0) {
            rc = note_varying(s, &first, &again);
        }
        if (r > 0) {
            outcome_free(&again);
        }
        if (rc != 0) {
            slot_fail(s, rc, 1, "%s", deja_error_last());
            goto cleanup;
        }
    }
    if (first.failed && t->status != DEJA_STATUS_ERROR && s->varying.n > 0) {
        s->verdict = DEJA_VERDICT_NONDETERMINISTIC;
        if (asprintf(&s->error, "the model failed in some repeats: %s", first.why) < 0) {
            s->error = NULL;
        }
    } else if (first.failed && t->status != DEJA_STATUS_ERROR) {
        slot_fail(s, DEJA_EMODEL, 0, "the model failed: %s", first.why);
    } else {
        rc =
            deja_diff_outputs(t->outputs, t->noutputs, first.out, first.nout, &e->o.diff, &s->diff);
        if (rc != 0) {
            slot_fail(s, rc, 1, "cannot diff the outputs: %s", deja_error_last());
            goto cleanup;
        }
        s->verdict = s->diff->verdict;
        if (!first.failed) { /* kept for the result (deja replay --rules) */
            s->out = first.out;
            s->nout = first.nout;
            first.out = NULL;
            first.nout = 0;
        }
        if (t->status == DEJA_STATUS_ERROR) {
            const char *rec = t->error ? t->error : "";
            if (!first.failed) {
                s->verdict = DEJA_VERDICT_DIVERGED;
                if (asprintf(&s->error, "recorded as failed ('%s'), the replay succeeded", rec) <
                    0) {
                    s->error = NULL;
                }
            } else if (!error_matches(rec, first.why, first.model_msg)) {
                s->verdict = DEJA_VERDICT_DIVERGED;
                if (asprintf(&s->error, "recorded failure '%s', replay failure '%s'", rec,
                             first.why) < 0) {
                    s->error = NULL;
                }
            }
        }
        if (s->varying.n > 0) {
            s->verdict = DEJA_VERDICT_NONDETERMINISTIC;
        }
    }
cleanup:
    outcome_free(&first);
    outcome_free(&again);
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
        replay_one(e, w->model, i);
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
    res.varying = (const char *const *)s->varying.v;
    res.nvarying = s->varying.n;
    res.outputs = s->out;
    res.noutputs = s->nout;
    sum->total++;
    switch (s->verdict) {
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
        if (opts->version != DEJA_REPLAY_OPTIONS_VERSION ||
            opts->diff.version != DEJA_DIFF_OPTIONS_VERSION) {
            return deja__error_set(DEJA_EVERSION, "replay: options version %u, expected %u",
                                   opts->version, DEJA_REPLAY_OPTIONS_VERSION);
        }
        *o = *opts;
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
    return 0;
}

/* Replay traces `ids` on the model `model_spec`; see include/deja.h. */
int deja_replay_run(deja_store *store, const deja_id *ids, size_t n, const char *model_spec,
                    const deja_replay_options *opts, deja_replay_cb cb, void *payload,
                    deja_replay_summary *summary)
{
    engine e;
    worker *workers = NULL;
    deja_replay_summary sum;
    size_t nworkers = 0, i, emitted = 0;
    int rc, lock_ok = 0, cond_ok = 0, stop = 0;
    memset(&e, 0, sizeof(e));
    memset(&sum, 0, sizeof(sum));
    if (summary) {
        memset(summary, 0, sizeof(*summary));
    }
    if (!store || (n && !ids) || !model_spec || n > MAX_IDS) {
        return deja__error_set(DEJA_EINVAL, "replay: a store, ids and a model are required");
    }
    rc = options_of(opts, &e.o);
    if (rc != 0) {
        return rc;
    }
    e.store = store;
    e.ids = ids;
    e.n = n;
    e.current = deja_env_current(NULL);
    if (deja_env_compare(NULL, e.current, &e.unknown.diff) != 0) {
        return DEJA_ENOMEM;
    }
    if (pthread_mutex_init(&e.lock, NULL) != 0) {
        rc = deja__error_set(DEJA_EIO, "replay: cannot create a lock");
        goto cleanup;
    }
    lock_ok = 1;
    if (pthread_cond_init(&e.ready, NULL) != 0) {
        rc = deja__error_set(DEJA_EIO, "replay: cannot create a condition variable");
        goto cleanup;
    }
    cond_ok = 1;
    nworkers = e.o.jobs < n ? e.o.jobs : (n ? n : 1);
    e.slots = calloc(n + 1, sizeof(*e.slots));
    e.models = calloc(nworkers, sizeof(*e.models));
    workers = calloc(nworkers, sizeof(*workers));
    if (!e.slots || !e.models || !workers) {
        rc = deja__error_set(DEJA_ENOMEM, "replay: out of memory for %zu traces", n);
        goto cleanup;
    }
    rc = deja_model_load(&e.models[0], model_spec);
    if (rc != 0) {
        goto cleanup;
    }
    e.nmodels = 1;
    if ((rc = env_with_model(&e, e.models[0])) != 0) {
        goto cleanup;
    }
    /* Isolated children must not inherit a lock another worker holds inside a
     * shared instance: isolation gives each worker its own. */
    if (nworkers > 1 && (!deja_model_thread_safe(e.models[0]) || e.o.isolate)) {
        for (i = 1; i < nworkers; i++) {
            rc = deja_model_load(&e.models[i], model_spec);
            if (rc != 0) {
                goto cleanup;
            }
            e.nmodels++;
        }
    }
    if (nworkers <= 1) {
        for (i = 0; i < n && !stop; i++) {
            replay_one(&e, e.models[0], i);
            finish(&e, i);
            stop = emit(&e, i, cb, payload, &sum, e.models[0]);
        }
        goto done;
    }
    for (i = 0; i < nworkers; i++) {
        workers[i].e = &e;
        workers[i].model = e.models[e.nmodels > 1 ? i : 0];
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            rc = deja__error_set(DEJA_EIO, "replay: cannot start worker thread %zu", i);
            pthread_mutex_lock(&e.lock);
            e.stop = 1;
            pthread_mutex_unlock(&e.lock);
            break;
        }
        workers[i].started = 1;
    }
    for (emitted = 0; emitted < n && rc == 0 && !stop; emitted++) {
        pthread_mutex_lock(&e.lock);
        while (!e.slots[emitted].ready) {
            pthread_cond_wait(&e.ready, &e.lock);
        }
        pthread_mutex_unlock(&e.lock);
        stop = emit(&e, emitted, cb, payload, &sum, e.models[0]);
    }
    pthread_mutex_lock(&e.lock);
    e.stop = 1;
    pthread_mutex_unlock(&e.lock);
done:
cleanup:
    for (i = 0; i < nworkers && workers; i++) {
        if (workers[i].started) {
            pthread_join(workers[i].thread, NULL);
        }
    }
    for (i = 0; e.slots && i < n; i++) {
        slot_clear(&e.slots[i]);
    }
    for (i = 0; e.models && i < e.nmodels; i++) {
        deja_model_free(e.models[i]);
    }
    while (e.envs) {
        env_entry *next = e.envs->next;
        deja_env_free(e.envs->env);
        deja_env_diff_free(e.envs->diff);
        free(e.envs);
        e.envs = next;
    }
    deja_env_diff_free(e.unknown.diff);
    free(e.libs);
    free(e.slots);
    free(e.models);
    free(workers);
    if (cond_ok) {
        pthread_cond_destroy(&e.ready);
    }
    if (lock_ok) {
        pthread_mutex_destroy(&e.lock);
    }
    if (summary) {
        *summary = sum;
    }
    return rc;
}
