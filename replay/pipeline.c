/*
 * replay/pipeline.c -- replay a pipeline run: every step of a tree of
 * traces on its model, isolated (each fed its recorded inputs) or chained
 * (each fed what the steps before it produced on replay), and name the
 * first step that goes wrong and, chained, the steps downstream that
 * changed because of it.
 *
 * Chaining needs no declaration from the application: an input of a step
 * whose recorded bytes and dtype equal a recorded output of a step earlier
 * in the tree's order (an ancestor, or a step of an earlier branch; the
 * latest such step wins) is taken to be that output, and replaced by its
 * replayed value. A step fed a changed value is also replayed on its
 * recorded inputs, so that "it changed because of upstream" and "it
 * changed on its own too" are told apart.
 *
 * Room replay/: it calls the store and the model API through the public
 * header and core/ for errors.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "deja.h"

/* A model loaded for some steps (one per distinct spec). */
typedef struct loaded {
    char *spec;
    deja_model *model;
    int rc;       /* 0, or why it could not be loaded */
    char *error;  /* that message */
} loaded;

/* What a step keeps while the later ones replay. */
typedef struct step_state {
    deja_trace *trace;  /* recorded, with payloads; NULL when skipped or unreadable */
    deja_tensor *outs;  /* replayed outputs (owned: names, shapes, data) */
    size_t nouts;
    int ran;            /* outs hold a successful replay */
    size_t origin;      /* the own-divergent step its changed outputs come from */
} step_state;

/* The differences of one recorded environment from this one. */
typedef struct env_entry {
    deja_digest digest;
    deja_env_diff *diff;
} env_entry;

typedef struct pipeline_impl {
    deja_pipeline_result pub;
    deja_tree *tree;
    deja_step_result *steps;
    size_t nsteps;
    env_entry *envs; /* one per distinct recorded environment of a differing step */
    size_t nenvs;
} pipeline_impl;

/* The environment differences of trace `t`, computed once per recorded
 * environment. NULL with 0 when it has none recorded, or it cannot be read
 * (then the step goes without them). Returns 0 or DEJA_ENOMEM. */
static int env_lines(pipeline_impl *p, deja_store *store, const deja_trace *t,
                     deja_env_diff **out)
{
    deja_env *env = NULL;
    env_entry *nv;
    size_t i;
    int rc;
    *out = NULL;
    if (!t->has_env)
        return 0;
    for (i = 0; i < p->nenvs; i++) {
        if (memcmp(&p->envs[i].digest, &t->env, sizeof t->env) == 0) {
            *out = p->envs[i].diff;
            return 0;
        }
    }
    if (p->nenvs >= 64 || deja_store_env_get(store, &t->env, &env) != 0)
        return 0;
    nv = realloc(p->envs, (p->nenvs + 1) * sizeof *nv);
    if (nv == NULL) {
        deja_env_free(env);
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    }
    p->envs = nv;
    rc = deja_env_compare(env, deja_env_current(NULL), &nv[p->nenvs].diff);
    deja_env_free(env);
    if (rc != 0)
        return rc;
    nv[p->nenvs].digest = t->env;
    *out = nv[p->nenvs++].diff;
    return 0;
}

static void tensors_free(deja_tensor *ts, size_t n)
{
    size_t i;
    for (i = 0; ts != NULL && i < n; i++) {
        free((void *)ts[i].name);
        free((void *)ts[i].shape);
        free((void *)ts[i].data);
    }
    free(ts);
}

/* Deep copies of `n` tensors `src` into `*out`. */
static int tensors_copy(const deja_tensor *src, size_t n, deja_tensor **out)
{
    deja_tensor *v = calloc(n ? n : 1, sizeof *v);
    size_t i;
    *out = NULL;
    if (v == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        uint64_t *shape = malloc((src[i].ndim ? src[i].ndim : 1) * sizeof *shape);
        void *data = malloc(src[i].size ? src[i].size : 1);
        v[i].name = strdup(src[i].name ? src[i].name : "");
        v[i].shape = shape;
        v[i].data = data;
        if (!shape || !data || !v[i].name) {
            tensors_free(v, i + 1);
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        }
        if (src[i].ndim)
            memcpy(shape, src[i].shape, src[i].ndim * sizeof *shape);
        if (src[i].size)
            memcpy(data, src[i].data, src[i].size);
        v[i].ndim = src[i].ndim;
        v[i].dtype = src[i].dtype;
        v[i].size = src[i].size;
    }
    *out = v;
    return 0;
}

static int same_bytes(const deja_tensor *a, const deja_tensor *b)
{
    return a->dtype == b->dtype && a->size == b->size &&
           (a->size == 0 || memcmp(a->data, b->data, a->size) == 0);
}

static int same_tensor(const deja_tensor *a, const deja_tensor *b)
{
    return same_bytes(a, b) && a->ndim == b->ndim &&
           (a->ndim == 0 || memcmp(a->shape, b->shape, a->ndim * sizeof *a->shape) == 0);
}

static const deja_tensor *named(const deja_tensor *ts, size_t n, const char *name)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (strcmp(ts[i].name, name) == 0)
            return &ts[i];
    }
    return NULL;
}

/* The spec a step recorded: "PLUGIN" or "PLUGIN:ARG", or NULL when unknown.
 * The caller frees it. */
static char *recorded_spec(const deja_tree_node *n)
{
    size_t len;
    char *s;
    if (!n->has_model_config || n->model_plugin[0] == '\0')
        return NULL;
    len = strlen(n->model_plugin) + strlen(n->model_config) + 2;
    s = malloc(len);
    if (s != NULL)
        snprintf(s, len, "%s%s%s", n->model_plugin, n->model_config[0] ? ":" : "",
                 n->model_config);
    return s;
}

/* The loaded model for `spec`, loading it on first use. NULL only when out
 * of memory; a load failure is kept in the entry. */
static loaded *model_for(loaded **cache, size_t *n, const char *spec)
{
    loaded *nv, *l;
    size_t i;
    for (i = 0; i < *n; i++) {
        if (strcmp((*cache)[i].spec, spec) == 0)
            return &(*cache)[i];
    }
    nv = realloc(*cache, (*n + 1) * sizeof *nv);
    if (nv == NULL)
        return NULL;
    *cache = nv;
    l = &nv[*n];
    memset(l, 0, sizeof *l);
    l->spec = strdup(spec);
    if (l->spec == NULL)
        return NULL;
    (*n)++;
    l->rc = deja_model_load(&l->model, spec);
    if (l->rc != 0) {
        l->error = strdup(deja_error_last());
        if (l->error == NULL)
            return NULL;
    }
    return l;
}

static void cache_free(loaded *cache, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        free(cache[i].spec);
        free(cache[i].error);
        deja_model_free(cache[i].model);
    }
    free(cache);
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A string formatted as printf does, or NULL when out of memory. */
static char *dup_printf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int len;
    va_start(ap, fmt);
    len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    s = malloc((size_t)len + 1);
    if (s == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Run `model` once on `view` (a recorded trace, maybe with other inputs)
 * and judge it against the recorded outputs. Fills the verdict, the detail
 * (owned) and the diff (owned, NULL for an error); with `outs`, the
 * replayed outputs (owned). Returns 0, or a negative code when the run
 * could not happen at all (out of memory). */
static int run_once(deja_model *model, const deja_trace *view, const deja_diff_options *dopt,
                    deja_verdict *verdict, char **detail, deja_diff **diff, deja_tensor **outs,
                    size_t *nouts)
{
    deja_ctx *ctx = NULL;
    deja_output_decl *kinds = NULL;
    deja_diff_options o = *dopt;
    const deja_tensor *got;
    const deja_output_decl *declared;
    size_t n = 0, nk = 0;
    int rc = deja_ctx_replay(&ctx, view);
    *verdict = DEJA_VERDICT_ERROR;
    *detail = NULL;
    *diff = NULL;
    if (outs != NULL) {
        *outs = NULL;
        *nouts = 0;
    }
    if (rc != 0) {
        *detail = dup_printf("cannot replay: %s", deja_error_last());
        rc = *detail ? 0 : DEJA_ENOMEM;
        goto cleanup;
    }
    if (deja_model_infer(model, ctx) != 0) {
        const char *why = deja_ctx_error(ctx) ? deja_ctx_error(ctx) : deja_error_last();
        if (view->status == DEJA_STATUS_ERROR) {
            *verdict = DEJA_VERDICT_SAME;
            *detail = dup_printf("failed as recorded: %s", why);
        } else
            *detail = dup_printf("the model failed: %s", why);
        rc = *detail ? 0 : DEJA_ENOMEM;
        goto cleanup;
    }
    got = deja_ctx_outputs(ctx, &n);
    if (got == NULL)
        n = 0;
    if (view->status == DEJA_STATUS_ERROR) {
        *verdict = DEJA_VERDICT_DIVERGED;
        *detail = dup_printf("recorded an error (%s); the replay succeeded", view->error);
        rc = *detail ? 0 : DEJA_ENOMEM;
    } else {
        /* Compare with the kinds recorded, then those declared on replay. */
        declared = deja_ctx_output_kinds(ctx, &nk);
        kinds = calloc(view->noutput_kinds + nk + 1, sizeof *kinds);
        if (kinds == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory");
            goto cleanup;
        }
        if (view->noutput_kinds)
            memcpy(kinds, view->output_kinds, view->noutput_kinds * sizeof *kinds);
        if (nk)
            memcpy(kinds + view->noutput_kinds, declared, nk * sizeof *kinds);
        o.kinds = kinds;
        o.nkinds = view->noutput_kinds + nk;
        rc = deja_diff_outputs(view->outputs, view->noutputs, got, n, &o, diff);
        if (rc != 0)
            goto cleanup;
        *verdict = (*diff)->verdict;
        *detail = strdup((*diff)->summary);
        rc = *detail ? 0 : DEJA_ENOMEM;
    }
    if (rc == 0 && outs != NULL)
        rc = tensors_copy(got, n, outs);
    if (rc == 0 && outs != NULL)
        *nouts = n;

cleanup:
    free(kinds);
    deja_ctx_free(ctx);
    return rc;
}

/* Chained: the inputs of step `i`, each recorded input that an earlier
 * step produced replaced by its replayed value. Fills `*inputs` (the
 * array is owned, the tensors point into the states), the count replaced,
 * whether any differs from its recording, and the origin of the first
 * changed one. */
static int chain_inputs(const step_state *st, size_t i, const deja_trace *t,
                        deja_tensor **inputs, size_t *nfed, int *changed, size_t *origin)
{
    deja_tensor *in = malloc((t->ninputs ? t->ninputs : 1) * sizeof *in);
    size_t k;
    *inputs = in;
    *nfed = 0;
    *changed = 0;
    *origin = DEJA_TREE_NONE;
    if (in == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    if (t->ninputs)
        memcpy(in, t->inputs, t->ninputs * sizeof *in);
    for (k = 0; k < t->ninputs; k++) {
        size_t j = i;
        int done = 0;
        while (j-- > 0 && !done) {
            const step_state *p = &st[j];
            size_t o;
            if (!p->ran || p->trace == NULL)
                continue;
            for (o = 0; o < p->trace->noutputs && !done; o++) {
                const deja_tensor *rec = &p->trace->outputs[o], *now;
                if (!same_bytes(rec, &t->inputs[k]))
                    continue;
                now = named(p->outs, p->nouts, rec->name);
                if (now == NULL)
                    continue;
                in[k].dtype = now->dtype;
                in[k].ndim = now->ndim;
                in[k].shape = now->shape;
                in[k].data = now->data;
                in[k].size = now->size;
                (*nfed)++;
                if (!same_tensor(rec, now)) {
                    if (!*changed)
                        *origin = p->origin;
                    *changed = 1;
                }
                done = 1;
            }
        }
    }
    return 0;
}

void deja_pipeline_result_free(deja_pipeline_result *result)
{
    pipeline_impl *p = (pipeline_impl *)result;
    size_t i;
    if (p == NULL)
        return;
    for (i = 0; i < p->nsteps; i++) {
        free((void *)p->steps[i].spec);
        free((void *)p->steps[i].model_version);
        free((void *)p->steps[i].detail);
        deja_diff_free((deja_diff *)p->steps[i].diff);
    }
    free(p->steps);
    for (i = 0; i < p->nenvs; i++)
        deja_env_diff_free(p->envs[i].diff);
    free(p->envs);
    deja_tree_free(p->tree);
    free(p);
}

/* Check the models given against the tree: every named step exists, every
 * unnamed model matches a step by its name. */
static int check_models(const deja_tree *tree, const deja_pipeline_options *o, loaded **cache,
                        size_t *ncache, const char **names)
{
    size_t m, i, k;
    for (m = 0; m < o->nmodels; m++) {
        const char *step = o->models[m].step;
        int found = 0;
        if (o->models[m].spec == NULL || (step != NULL && step[0] == '\0'))
            return deja__error_set(DEJA_EINVAL, "a model without a step name or spec");
        if (step == NULL) {
            loaded *l = model_for(cache, ncache, o->models[m].spec);
            if (l == NULL)
                return deja__error_set(DEJA_ENOMEM, "out of memory");
            if (l->rc != 0)
                return deja__error_set(l->rc, "%s", l->error ? l->error : "cannot load");
            step = deja_model_name(l->model);
        }
        names[m] = step;
        for (k = 0; k < m; k++) {
            if (strcmp(names[k], step) == 0)
                return deja__error_set(DEJA_EINVAL, "two models for step '%s'", step);
        }
        for (i = 0; i < tree->nnodes && !found; i++)
            found = strcmp(tree->nodes[i].model_name, step) == 0;
        if (!found) {
            char id[DEJA_ID_STRLEN + 1], list[512] = "";
            size_t len = 0;
            deja_id_format(&tree->nodes[0].id, id);
            for (i = 0; i < tree->nnodes; i++) {
                const char *nm = tree->nodes[i].model_name;
                size_t prev;
                int dup = 0;
                for (prev = 0; prev < i && !dup; prev++)
                    dup = strcmp(tree->nodes[prev].model_name, nm) == 0;
                if (!dup && len + strlen(nm) + 3 < sizeof list)
                    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s",
                                            len ? ", " : "", nm);
            }
            if (o->models[m].step != NULL)
                return deja__error_set(DEJA_EINVAL,
                                       "pipeline %s has no step named '%s' (its steps: %s)", id,
                                       step, list);
            return deja__error_set(DEJA_EINVAL,
                                   "model '%s' (%s) is no step of pipeline %s (its steps: %s); "
                                   "give it as STEP=SPEC",
                                   step, o->models[m].spec, id, list);
        }
    }
    return 0;
}

/* Refuse a root that is a step of a run in the store, naming the root. */
static int check_root(deja_store *store, const deja_id *root)
{
    deja_trace *t = NULL, *p = NULL;
    char id[DEJA_ID_STRLEN + 1], top[DEJA_ID_STRLEN + 1];
    deja_id r;
    int rc = deja_trace_get(store, root, &t);
    if (rc != 0)
        goto cleanup;
    if (!t->has_parent)
        goto cleanup;
    rc = deja_trace_get(store, &t->parent, &p);
    if (rc == DEJA_ENOTFOUND) {
        rc = 0; /* its run is elsewhere: this part is what we have */
        goto cleanup;
    }
    if (rc != 0)
        goto cleanup;
    deja_id_format(root, id);
    rc = deja_tree_root(store, root, &r);
    if (rc != 0)
        goto cleanup;
    deja_id_format(&r, top);
    rc = deja__error_set(DEJA_EINVAL, "trace %s is a step of pipeline %s, not its root", id, top);

cleanup:
    deja_trace_free(t);
    deja_trace_free(p);
    return rc;
}

int deja_pipeline_replay(deja_store *store, const deja_id *root,
                         const deja_pipeline_options *opts, deja_pipeline_result **out)
{
    deja_pipeline_options o = DEJA_PIPELINE_OPTIONS_INIT;
    pipeline_impl *p = NULL;
    step_state *st = NULL;
    loaded *cache = NULL;
    const char **names = NULL;
    deja_tensor *fed = NULL;
    size_t ncache = 0, i, n = 0;
    int rc;
    if (out != NULL)
        *out = NULL;
    if (opts != NULL)
        o = *opts;
    if (store == NULL || root == NULL || out == NULL || (o.nmodels && o.models == NULL) ||
        o.nmodels > 1024 ||
        (o.mode != DEJA_PIPELINE_ISOLATED && o.mode != DEJA_PIPELINE_CHAINED)) {
        rc = deja__error_set(DEJA_EINVAL, "deja_pipeline_replay: bad arguments");
        goto cleanup;
    }
    rc = check_root(store, root);
    if (rc != 0)
        goto cleanup;
    p = calloc(1, sizeof *p);
    names = calloc(o.nmodels + 1, sizeof *names);
    if (p == NULL || names == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    rc = deja_tree_get(store, root, 1, &p->tree);
    if (rc != 0)
        goto cleanup;
    rc = check_models(p->tree, &o, &cache, &ncache, names);
    if (rc != 0)
        goto cleanup;
    n = p->tree->nnodes;
    p->steps = calloc(n, sizeof *p->steps);
    st = calloc(n, sizeof *st);
    if (p->steps == NULL || st == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    p->nsteps = n;
    p->pub.tree = p->tree;
    p->pub.steps = p->steps;
    p->pub.mode = o.mode;
    p->pub.first = DEJA_TREE_NONE;
    for (i = 0; i < n; i++) {
        const deja_tree_node *node = &p->tree->nodes[i];
        deja_step_result *r = &p->steps[i];
        step_state *s = &st[i];
        const char *spec = NULL;
        char *own_spec = NULL;
        loaded *l;
        deja_trace view;
        deja_diff *d = NULL;
        char *detail = NULL;
        size_t m;
        int changed = 0;
        r->cause = DEJA_TREE_NONE;
        r->alone = DEJA_VERDICT_SAME;
        s->origin = DEJA_TREE_NONE;
        for (m = 0; m < o.nmodels && spec == NULL; m++) {
            if (strcmp(names[m], node->model_name) == 0)
                spec = o.models[m].spec;
        }
        if (spec == NULL)
            spec = own_spec = recorded_spec(node);
        if (spec == NULL) {
            r->skip = node->nsteps ? DEJA_STEP_RUN : DEJA_STEP_NO_MODEL;
            r->detail = strdup(r->skip == DEJA_STEP_RUN
                                   ? "the run itself: no model given or recorded"
                                   : "no model given for this step and none recorded");
            r->verdict = DEJA_VERDICT_SAME;
            if (r->detail == NULL) {
                rc = deja__error_set(DEJA_ENOMEM, "out of memory");
                goto cleanup;
            }
            if (r->skip == DEJA_STEP_NO_MODEL)
                p->pub.skipped++;
            continue;
        }
        r->spec = strdup(spec);
        free(own_spec);
        spec = r->spec;
        l = r->spec ? model_for(&cache, &ncache, r->spec) : NULL;
        if (l == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory");
            goto cleanup;
        }
        p->pub.replayed++;
        if (l->rc != 0) {
            r->verdict = DEJA_VERDICT_ERROR;
            r->detail = dup_printf("cannot load %s: %s", spec, l->error ? l->error : "");
        } else if ((rc = deja_trace_get(store, &node->id, &s->trace)) != 0) {
            r->verdict = DEJA_VERDICT_ERROR;
            r->detail = dup_printf("cannot read the trace: %s", deja_error_last());
            rc = 0;
        } else {
            r->model_version = strdup(deja_model_version(l->model));
            view = *s->trace;
            if (o.mode == DEJA_PIPELINE_CHAINED) {
                rc = chain_inputs(st, i, s->trace, &fed, &r->nfed, &changed, &r->cause);
                if (rc != 0)
                    goto cleanup;
                view.inputs = fed;
                r->fed_changed = changed;
            }
            rc = run_once(l->model, &view, &o.diff, &r->verdict, &detail, &d, &s->outs,
                          &s->nouts);
            free(fed);
            fed = NULL;
            if (rc != 0)
                goto cleanup;
            r->detail = detail;
            r->diff = d;
            s->ran = r->verdict != DEJA_VERDICT_ERROR;
            if (changed) {
                deja_diff *d2 = NULL;
                char *detail2 = NULL;
                rc = run_once(l->model, s->trace, &o.diff, &r->alone, &detail2, &d2, NULL, NULL);
                free(detail2);
                deja_diff_free(d2);
                if (rc != 0)
                    goto cleanup;
            }
        }
        if (r->detail == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory");
            goto cleanup;
        }
        if (s->trace != NULL && r->verdict != DEJA_VERDICT_SAME) {
            deja_env_diff *ed = NULL;
            rc = env_lines(p, store, s->trace, &ed);
            if (rc != 0)
                goto cleanup;
            r->env = ed ? ed->lines : NULL;
            r->nenv = ed ? ed->nlines : 0;
        }
        r->own = (changed ? r->alone : r->verdict) >= DEJA_VERDICT_DIVERGED;
        r->affected = changed && !r->own && r->verdict >= DEJA_VERDICT_DIVERGED;
        /* Where this step's changed outputs come from: itself when it
         * diverges on its own or changed alone within tolerance, else the
         * step upstream whose change it was fed. */
        if (r->own || (!changed && r->verdict != DEJA_VERDICT_SAME))
            s->origin = i;
        else if (changed && r->verdict != DEJA_VERDICT_SAME)
            s->origin = r->cause;
        if (!r->affected)
            r->cause = DEJA_TREE_NONE;
        if (r->own && p->pub.first == DEJA_TREE_NONE)
            p->pub.first = i;
        p->pub.affected += (size_t)r->affected;
        /* Isolated, no later step reads this one: release its payloads
         * now, so that memory does not grow with the run. */
        if (o.mode == DEJA_PIPELINE_ISOLATED) {
            deja_trace_free(s->trace);
            s->trace = NULL;
            tensors_free(s->outs, s->nouts);
            s->outs = NULL;
            s->nouts = 0;
        }
        switch (r->verdict) {
        case DEJA_VERDICT_SAME: p->pub.same++; break;
        case DEJA_VERDICT_CLOSE: p->pub.close++; break;
        case DEJA_VERDICT_ERROR: p->pub.error++; break;
        default: p->pub.diverged++; break;
        }
    }
    *out = &p->pub;
    p = NULL;
    rc = 0;

cleanup:
    for (i = 0; st != NULL && i < n; i++) {
        deja_trace_free(st[i].trace);
        tensors_free(st[i].outs, st[i].nouts);
    }
    free(st);
    free(fed);
    free(names);
    cache_free(cache, ncache);
    deja_pipeline_result_free(p ? &p->pub : NULL);
    return rc;
}
