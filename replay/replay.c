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
 */
#include <fenv.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
} engine;

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

/* Record the unrecorded-value lines of `ctx` into the slot. */
static int collect_unrecorded(slot *s, const deja_ctx *ctx)
{
    const char *const *lines = NULL;
    size_t n = deja_ctx_unrecorded(ctx, &lines), i;
    int rc = 0;
    for (i = 0; i < n && rc == 0; i++) {
        rc = notes_add(&s->unrecorded, lines[i]);
    }
    return rc;
}

/* Run the model once on the trace through a fresh replaying ctx. On
 * success `*ctxp` holds the ctx (the caller frees it) and `*failed` says
 * whether the model reported a failure, whose message goes to `*why`
 * (owned by the ctx or the thread's error buffer, copy it at once). */
static int run_once(deja_model *model, const deja_trace *t, const deja_env *env, deja_ctx **ctxp,
                    int *failed, const char **why)
{
    fpstate saved;
    deja_ctx *ctx = NULL;
    int rc = deja_ctx_replay(&ctx, t);
    *ctxp = NULL;
    *failed = 0;
    *why = "";
    if (rc != 0) {
        return rc;
    }
    fp_save(&saved);
    fp_pin(env);
    rc = deja_model_infer(model, ctx);
    fp_restore(&saved);
    if (rc != 0) {
        *failed = 1;
        *why = deja_error_last();
    }
    *ctxp = ctx;
    return 0;
}

/* Non-zero when the recorded error text `rec` is the failure seen on
 * replay: the same full message, or the same message from the model
 * (`model_msg`, the ctx's) under another model version's prefix. */
static int error_matches(const char *rec, const char *full, const char *model_msg)
{
    size_t lr = strlen(rec), lm;
    if (strcmp(rec, full) == 0) {
        return 1;
    }
    if (!model_msg || !*model_msg) {
        return 0;
    }
    lm = strlen(model_msg);
    return lr >= lm && strcmp(rec + lr - lm, model_msg) == 0;
}

/* Replay trace `i` on `model` and fill its slot (never fails: every
 * problem becomes the slot's verdict). */
static void replay_one(engine *e, deja_model *model, size_t i)
{
    slot *s = &e->slots[i];
    deja_ctx *first = NULL, *again = NULL;
    const deja_trace *t;
    char idtext[DEJA_ID_STRLEN + 1];
    const char *why = "";
    char *first_why = NULL;
    int rc, failed = 0, first_failed = 0;
    unsigned r;
    deja_id_format(&e->ids[i], idtext);
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
        deja_ctx **slotctx = r == 0 ? &first : &again;
        rc = run_once(model, t, s->env->env, slotctx, &failed, &why);
        if (rc != 0) {
            slot_fail(s, rc, 1, "cannot replay: %s", deja_error_last());
            goto cleanup;
        }
        if (collect_unrecorded(s, *slotctx) != 0) {
            slot_fail(s, DEJA_ENOMEM, 1, "out of memory");
            goto cleanup;
        }
        if (r == 0) {
            first_failed = failed;
            first_why = strdup(why);
            if (!first_why) {
                slot_fail(s, DEJA_ENOMEM, 1, "out of memory");
                goto cleanup;
            }
            continue;
        }
        if (failed != first_failed || (failed && strcmp(why, first_why) != 0)) {
            rc = notes_add(&s->varying, "status");
        } else if (!failed) {
            size_t na, nb, k;
            const deja_tensor *ta = deja_ctx_outputs(first, &na);
            const deja_tensor *tb = deja_ctx_outputs(again, &nb);
            deja_diff *vd = NULL;
            deja_diff_options exact = DEJA_DIFF_OPTIONS_INIT;
            exact.atol = 0;
            exact.rtol = 0;
            rc = deja_diff_outputs(ta, na, tb, nb, &exact, &vd);
            for (k = 0; rc == 0 && k < vd->ntensors; k++) {
                if (vd->tensors[k].kind != DEJA_DIFF_EQUAL) {
                    rc = notes_add(&s->varying, vd->tensors[k].name);
                }
            }
            deja_diff_free(vd);
        }
        deja_ctx_free(again);
        again = NULL;
        if (rc != 0) {
            slot_fail(s, rc, 1, "%s", deja_error_last());
            goto cleanup;
        }
    }
    if (first_failed && t->status != DEJA_STATUS_ERROR && s->varying.n > 0) {
        s->verdict = DEJA_VERDICT_NONDETERMINISTIC;
        if (asprintf(&s->error, "the model failed in some repeats: %s", first_why) < 0) {
            s->error = NULL;
        }
    } else if (first_failed && t->status != DEJA_STATUS_ERROR) {
        slot_fail(s, DEJA_EMODEL, 0, "the model failed: %s", first_why);
    } else {
        size_t nb;
        const deja_tensor *tb = deja_ctx_outputs(first, &nb);
        rc = deja_diff_outputs(t->outputs, t->noutputs, tb, nb, &e->o.diff, &s->diff);
        if (rc != 0) {
            slot_fail(s, rc, 1, "cannot diff the outputs: %s", deja_error_last());
            goto cleanup;
        }
        s->verdict = s->diff->verdict;
        if (t->status == DEJA_STATUS_ERROR) {
            const char *rec = t->error ? t->error : "";
            if (!first_failed) {
                s->verdict = DEJA_VERDICT_DIVERGED;
                if (asprintf(&s->error, "recorded as failed ('%s'), the replay succeeded",
                             rec) < 0) {
                    s->error = NULL;
                }
            } else if (!error_matches(rec, first_why, deja_ctx_error(first))) {
                s->verdict = DEJA_VERDICT_DIVERGED;
                if (asprintf(&s->error, "recorded failure '%s', replay failure '%s'", rec,
                             first_why) < 0) {
                    s->error = NULL;
                }
            }
        }
        if (s->varying.n > 0) {
            s->verdict = DEJA_VERDICT_NONDETERMINISTIC;
        }
    }
cleanup:
    free(first_why);
    deja_ctx_free(first);
    deja_ctx_free(again);
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
    if (!(o->diff.atol >= 0) || !(o->diff.rtol >= 0)) {
        return deja__error_set(DEJA_EINVAL, "replay: tolerances must be non-negative numbers");
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
    if (nworkers > 1 && !deja_model_thread_safe(e.models[0])) {
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
