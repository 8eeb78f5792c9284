/*
 * replay/bisect.c -- find the first model version that stops reproducing
 * the recorded outputs.
 *
 * Versions are given oldest first. Both ends are replayed first (they must
 * disagree), then a binary search over the versions between them: with n
 * versions, at most 2 + ceil(log2(n - 1)) replays of the selection. Every
 * version tested is a step; the first bad version's step keeps the
 * evidence: the traces that made it bad and their diffs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deja.h"
#include "store/store.h"

#define MAX_VERSIONS 65536
#define MAX_EVIDENCE 10000

/* Evidence collected while replaying one version. */
typedef struct evlist {
    deja_bisect_evidence *v;
    size_t n;
    size_t cap;
    int invert;
    int rc;        /* first failure while collecting */
    char *trouble; /* first trouble message, owned */
    char **envset; /* every environment line seen by this version, owned */
    size_t nenvset;
} evlist;

/* One step under construction, with the evidence it gathered. */
typedef struct bstep {
    deja_bisect_step pub;
    evlist ev;
} bstep;

/* The result as allocated: public part first. */
typedef struct bisect_impl {
    deja_bisect_result pub;
    deja_bisect_step *steps;
    evlist ev;
} bisect_impl;

/* Free what one evidence entry owns. */
static void evidence_clear(deja_bisect_evidence *e)
{
    size_t i;
    free((void *)e->detail);
    free((void *)e->cause);
    for (i = 0; i < e->nenv; i++) {
        free((void *)e->env[i]);
    }
    free((void *)e->env);
}

static void evlist_free(evlist *l)
{
    size_t i;
    for (i = 0; i < l->n; i++) {
        evidence_clear(&l->v[i]);
    }
    free(l->v);
    free(l->trouble);
    for (i = 0; i < l->nenvset; i++) {
        free(l->envset[i]);
    }
    free(l->envset);
    memset(l, 0, sizeof(*l));
}

/* Copy `n` strings into a new array (owned, with owned strings) at `*out`.
 * Returns 0 or DEJA_ENOMEM. */
static int copy_lines(const char *const *src, size_t n, const char *const **out)
{
    char **v = NULL;
    size_t i;
    *out = NULL;
    if (n == 0) {
        return 0;
    }
    v = calloc(n, sizeof(*v));
    if (!v) {
        return deja__error_set(DEJA_ENOMEM, "bisect: out of memory");
    }
    for (i = 0; i < n; i++) {
        v[i] = strdup(src[i]);
        if (!v[i]) {
            while (i-- > 0) {
                free(v[i]);
            }
            free(v);
            return deja__error_set(DEJA_ENOMEM, "bisect: out of memory");
        }
    }
    *out = (const char *const *)v;
    return 0;
}

/* Non-zero when `line` is in the version's set of environment lines. */
static int envset_has(const evlist *l, const char *line)
{
    size_t i;
    for (i = 0; i < l->nenvset; i++) {
        if (strcmp(l->envset[i], line) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Add the environment lines of one result to the version's set. */
static int envset_add(evlist *l, const char *const *lines, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        char **nv, *copy;
        if (envset_has(l, lines[i]) || l->nenvset >= MAX_EVIDENCE) {
            continue;
        }
        copy = strdup(lines[i]);
        nv = copy ? realloc(l->envset, (l->nenvset + 1) * sizeof(*nv)) : NULL;
        if (!nv) {
            free(copy);
            return DEJA_ENOMEM;
        }
        l->envset = nv;
        l->envset[l->nenvset++] = copy;
    }
    return 0;
}

/* Replay callback: keep the results that count against the version (or,
 * inverted, that reproduce), and remember the first trouble. */
static int collect(const deja_replay_result *r, void *payload)
{
    evlist *l = payload;
    deja_bisect_evidence *e;
    int against = r->verdict == DEJA_VERDICT_DIVERGED || r->verdict == DEJA_VERDICT_ERROR;
    int keep =
        l->invert ? (r->verdict == DEJA_VERDICT_SAME || r->verdict == DEJA_VERDICT_CLOSE) : against;
    char idtext[DEJA_ID_STRLEN + 1];
    if (r->verdict == DEJA_VERDICT_ERROR && r->code != DEJA_EMODEL && !l->trouble) {
        deja_id_format(&r->id, idtext);
        if (asprintf(&l->trouble, "trace %s: %s", idtext, r->error) < 0) {
            l->trouble = NULL;
            l->rc = DEJA_ENOMEM;
        }
        return 1;
    }
    if (envset_add(l, r->env, r->nenv) != 0) {
        l->rc = DEJA_ENOMEM;
        return 1;
    }
    if (!keep || l->n >= MAX_EVIDENCE || l->rc != 0) {
        return 0;
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        deja_bisect_evidence *nv = realloc(l->v, ncap * sizeof(*nv));
        if (!nv) {
            l->rc = DEJA_ENOMEM;
            return 1;
        }
        l->v = nv;
        l->cap = ncap;
    }
    e = &l->v[l->n];
    memset(e, 0, sizeof(*e));
    e->id = r->id;
    e->verdict = r->verdict;
    if (r->diff) {
        size_t k;
        for (k = 0; k < r->diff->ntensors; k++) {
            e->label_changed |= r->diff->tensors[k].rows_label > 0;
        }
    }
    if (r->verdict == DEJA_VERDICT_ERROR || (r->error && *r->error)) {
        e->detail = strdup(r->error ? r->error : "");
    } else {
        e->detail = strdup(r->diff ? r->diff->summary : "");
    }
    if (!e->detail) {
        l->rc = DEJA_ENOMEM;
        return 1;
    }
    if (against && copy_lines(r->env, r->nenv, &e->env) != 0) {
        free((void *)e->detail);
        l->rc = DEJA_ENOMEM;
        return 1;
    }
    e->nenv = against ? r->nenv : 0;
    l->n++;
    return 0;
}

/* Name the likely cause of each piece of evidence of the first bad version
 * `bad`, given what the last good version `good` saw: an environment
 * difference that the last good version showed too cannot be what changed
 * (both ran in the same environment), so it is dropped; when none is
 * left, the cause is the model change between the two versions. */
static int blame(evlist *bad, const evlist *good, const char *good_spec, const char *bad_spec)
{
    size_t i, k, kept;
    for (i = 0; i < bad->n; i++) {
        deja_bisect_evidence *e = &bad->v[i];
        char **env = (char **)(uintptr_t)e->env;
        for (k = 0, kept = 0; k < e->nenv; k++) {
            if (envset_has(good, env[k])) {
                free(env[k]);
            } else {
                env[kept++] = env[k];
            }
        }
        e->nenv = kept;
        if (kept == 0) {
            char *cause = NULL;
            if (asprintf(&cause,
                         "the model changed between %s and %s (the environment is the same for "
                         "both)",
                         good_spec, bad_spec) < 0) {
                return deja__error_set(DEJA_ENOMEM, "bisect: out of memory");
            }
            e->cause = cause;
        }
    }
    return 0;
}

/* What deja_bisect's search needs to test a version. */
typedef struct bisect_ctx {
    deja_store *store;
    const deja_id *ids;
    size_t n;
    const char *const *specs;
    deja_bisect_options o;
    bstep *steps;
    size_t nsteps;
} bisect_ctx;

/* Replay version `index` over the selection and record the step. */
static int test_version(bisect_ctx *b, size_t index, int *bad)
{
    bstep *st = &b->steps[b->nsteps];
    int rc;
    memset(st, 0, sizeof(*st));
    st->ev.invert = b->o.invert;
    rc = deja_replay_run(b->store, b->ids, b->n, b->specs[index], &b->o.replay, collect, &st->ev,
                         &st->pub.summary);
    if (rc != 0) {
        rc = deja__error_wrap(rc, "version %zu (%s): ", index + 1, b->specs[index]);
        evlist_free(&st->ev);
        return rc;
    }
    if (st->ev.rc != 0) {
        evlist_free(&st->ev);
        return deja__error_set(DEJA_ENOMEM, "bisect: out of memory");
    }
    if (st->ev.trouble) {
        rc = deja__error_set(DEJA_EINVAL, "version %zu (%s): %s", index + 1, b->specs[index],
                             st->ev.trouble);
        evlist_free(&st->ev);
        return rc;
    }
    {
        const deja_replay_summary *s = &st->pub.summary;
        size_t against = s->diverged + s->error;
        *bad = b->o.invert ? (against == 0 && s->same + s->close > 0) : against > 0;
    }
    st->pub.index = index;
    st->pub.spec = b->specs[index];
    st->pub.bad = *bad;
    b->nsteps++;
    if (b->o.on_step) {
        b->o.on_step(&st->pub, b->o.payload);
    }
    return 0;
}

static int check_version(size_t index, int *bad, void *payload)
{
    return test_version(payload, index, bad);
}

/* Binary search between a good index 0 and a bad index n-1; see
 * include/deja.h. */
int deja_bisect_search(size_t n, deja_bisect_check_fn check, void *payload, size_t *first_bad)
{
    size_t lo = 0, hi;
    int rc = 0;
    if (n < 2 || !check || !first_bad) {
        return deja__error_set(DEJA_EINVAL, "bisect: at least two versions are needed");
    }
    hi = n - 1;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        int bad = 0;
        rc = check(mid, &bad, payload);
        if (rc != 0) {
            return rc;
        }
        if (bad) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    *first_bad = hi;
    return 0;
}

/* Free a bisection result. Accepts NULL. */
void deja_bisect_result_free(deja_bisect_result *result)
{
    bisect_impl *r = (bisect_impl *)result;
    size_t i;
    if (!r) {
        return;
    }
    for (i = 0; i < r->pub.nsteps; i++) {
        free((void *)r->steps[i].spec);
    }
    free(r->steps);
    evlist_free(&r->ev);
    free(r);
}

/* Bisect `specs` over traces `ids`; see include/deja.h. */
int deja_bisect(deja_store *store, const deja_id *ids, size_t n, const char *const *specs,
                size_t nspecs, const deja_bisect_options *opts, deja_bisect_result **out)
{
    static const deja_bisect_options dflt = DEJA_BISECT_OPTIONS_INIT;
    bisect_ctx b;
    bisect_impl *r = NULL;
    size_t first_bad = 0, i, maxsteps;
    int rc = 0, bad_first = 0, bad_last = 0;
    memset(&b, 0, sizeof(b));
    if (!out) {
        return deja__error_set(DEJA_EINVAL, "bisect: out is NULL");
    }
    *out = NULL;
    if (!store || !specs || (n && !ids)) {
        return deja__error_set(DEJA_EINVAL, "bisect: a store, traces and versions are required");
    }
    if (nspecs < 2 || nspecs > MAX_VERSIONS) {
        return deja__error_set(DEJA_EINVAL, "bisect: give between 2 and %d versions (got %zu)",
                               MAX_VERSIONS, nspecs);
    }
    if (n == 0) {
        return deja__error_set(DEJA_EINVAL, "bisect: no traces selected");
    }
    if (opts && opts->version != DEJA_BISECT_OPTIONS_VERSION) {
        return deja__error_set(DEJA_EVERSION, "bisect: options version %u, expected %u",
                               opts->version, DEJA_BISECT_OPTIONS_VERSION);
    }
    b.o = opts ? *opts : dflt;
    b.store = store;
    b.ids = ids;
    b.n = n;
    b.specs = specs;
    maxsteps = nspecs + 1;
    b.steps = calloc(maxsteps, sizeof(*b.steps));
    if (!b.steps) {
        rc = deja__error_set(DEJA_ENOMEM, "bisect: out of memory");
        goto cleanup;
    }
    rc = test_version(&b, 0, &bad_first);
    if (rc == 0) {
        rc = test_version(&b, nspecs - 1, &bad_last);
    }
    if (rc != 0) {
        goto cleanup;
    }
    if (bad_first == bad_last) {
        const char *how = b.o.invert ? (bad_first ? "reproduce" : "diverge from")
                                     : (bad_first ? "diverge from" : "reproduce");
        rc = deja__error_set(DEJA_EINVAL,
                             "both ends %s the recorded outputs (%s and %s are both %s): nothing "
                             "to bisect",
                             how, specs[0], specs[nspecs - 1], bad_first ? "bad" : "good");
        goto cleanup;
    }
    if (bad_first) {
        rc = deja__error_set(DEJA_EINVAL,
                             "the oldest version %s is bad and the newest %s good: give versions "
                             "oldest first (or use --invert)",
                             specs[0], specs[nspecs - 1]);
        goto cleanup;
    }
    rc = deja_bisect_search(nspecs, check_version, &b, &first_bad);
    if (rc != 0) {
        goto cleanup;
    }
    r = calloc(1, sizeof(*r));
    if (!r || !(r->steps = calloc(b.nsteps, sizeof(*r->steps)))) {
        rc = deja__error_set(DEJA_ENOMEM, "bisect: out of memory");
        goto cleanup;
    }
    for (i = 0; i < b.nsteps; i++) {
        r->steps[i] = b.steps[i].pub;
        r->steps[i].spec = strdup(b.steps[i].pub.spec);
        if (!r->steps[i].spec) {
            r->pub.nsteps = i;
            rc = deja__error_set(DEJA_ENOMEM, "bisect: out of memory");
            goto cleanup;
        }
        r->pub.nsteps = i + 1;
        if (b.steps[i].pub.index == first_bad) {
            evlist_free(&r->ev);
            r->ev = b.steps[i].ev;
            memset(&b.steps[i].ev, 0, sizeof(b.steps[i].ev));
        }
    }
    r->pub.steps = r->steps;
    r->pub.first_bad = first_bad;
    r->pub.first_bad_spec = specs[first_bad];
    for (i = 0; i < r->pub.nsteps; i++) {
        if (r->steps[i].index == first_bad) {
            r->pub.first_bad_spec = r->steps[i].spec;
        }
    }
    r->pub.last_good = first_bad - 1;
    for (i = 0; i < b.nsteps; i++) {
        if (b.steps[i].pub.index == first_bad - 1) {
            rc = blame(&r->ev, &b.steps[i].ev, specs[first_bad - 1], specs[first_bad]);
            if (rc != 0) {
                goto cleanup;
            }
        }
    }
    r->pub.evidence = r->ev.v;
    r->pub.nevidence = r->ev.n;
    *out = &r->pub;
    r = NULL;
cleanup:
    for (i = 0; b.steps && i < b.nsteps; i++) {
        evlist_free(&b.steps[i].ev);
    }
    free(b.steps);
    deja_bisect_result_free(r ? &r->pub : NULL);
    return rc;
}
