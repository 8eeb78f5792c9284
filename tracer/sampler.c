/*
 * tracer/sampler.c -- sampling that keeps what matters.
 *
 * With no policy set, deja_span_end keeps the flat sample_rate of the
 * tracer's options (errors always kept). With a policy (deja_sampling), an
 * ended span is kept, in this order, when it failed, when it broke a
 * validation rule (tag deja.invalid, or the tracer's record-time check,
 * asked before a span is left out), when it was slower than a threshold,
 * when it is among the first N of its model version, or by the rate of the
 * first rule matching its model and version (else the policy's rate). With
 * dedup, a kept ok span identical to one kept before (same model, version,
 * inputs, params and seeds) is left out and counted as a repeat of that
 * one; the writer stores the repeat counts beside the first trace. Every
 * decision is counted (deja__sample_counter) and ends up in the store's
 * counters, shown by `deja stats`.
 */
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "tracer/tracer_internal.h"

#define FIRST_SLOTS 256   /* model versions tracked for keep_first */
#define DEDUP_SLOTS 16384 /* requests remembered for dedup (a power of two) */

typedef struct rate_rule {
    char *model;   /* NULL: any */
    char *version; /* NULL: any */
    double rate;
} rate_rule;

typedef struct first_slot {
    uint64_t key; /* hash of model and version; 0: empty */
    uint64_t seen;
} first_slot;

typedef struct dedup_slot {
    uint64_t lo, hi;  /* the request's XXH3-128; both 0: empty */
    deja_id id;       /* the trace kept for it */
    uint64_t pending; /* repeats not yet handed to the writer */
} dedup_slot;

struct deja__sampler {
    double rate;
    rate_rule *rules;
    size_t nrules;
    int64_t keep_slower_ns;
    unsigned keep_first;
    int dedup;
    pthread_mutex_t lock; /* first and dedup tables */
    first_slot first[FIRST_SLOTS];
    dedup_slot *table; /* DEDUP_SLOTS, when dedup */
};

/* Free a sampler. Accepts NULL. */
void deja__sampler_free(deja__sampler *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nrules; i++) {
        free(s->rules[i].model);
        free(s->rules[i].version);
    }
    free(s->rules);
    free(s->table);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* A copy of `s`, or NULL when `s` is. */
static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* Set the tracer's sampling policy; see deja.h. */
int deja_tracer_sampling_set(deja_tracer *tracer, const deja_sampling *policy)
{
    deja__sampler *s = NULL;
    int rc = 0;

    if (tracer == NULL || policy == NULL)
        return deja__error_set(DEJA_EINVAL, "sampling: no tracer or no policy");
    if (policy->version != DEJA_SAMPLING_VERSION)
        return deja__error_set(DEJA_EVERSION, "sampling: version %u, this deja knows %d",
                               policy->version, DEJA_SAMPLING_VERSION);
    if (!(policy->rate >= 0.0 && policy->rate <= 1.0))
        return deja__error_set(DEJA_EINVAL, "sampling: rate must be in 0..1");
    if (policy->nrates > 0 && policy->rates == NULL)
        return deja__error_set(DEJA_EINVAL, "sampling: %zu rates but no array", policy->nrates);
    if (policy->keep_slower_ns < 0)
        return deja__error_set(DEJA_EINVAL, "sampling: a negative latency threshold");
    for (size_t i = 0; i < policy->nrates; i++)
        if (!(policy->rates[i].rate >= 0.0 && policy->rates[i].rate <= 1.0))
            return deja__error_set(DEJA_EINVAL, "sampling: rate %zu must be in 0..1", i + 1);
    if (atomic_load(&tracer->sampler) != NULL || atomic_load(&tracer->tail) != 0)
        return deja__error_set(DEJA_EINVAL,
                               "sampling: set the policy once, before the first span ends");
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return deja__error_set(DEJA_ENOMEM, "sampling: out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->rate = policy->rate;
    s->keep_slower_ns = policy->keep_slower_ns;
    s->keep_first = policy->keep_first;
    s->dedup = policy->dedup;
    if (policy->nrates > 0 && (s->rules = calloc(policy->nrates, sizeof *s->rules)) == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "sampling: out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < policy->nrates; i++) {
        const deja_sample_rate *r = &policy->rates[i];

        s->rules[i].model = dup_or_null(r->model);
        s->rules[i].version = dup_or_null(r->version);
        s->rules[i].rate = r->rate;
        s->nrules++;
        if ((r->model && !s->rules[i].model) || (r->version && !s->rules[i].version)) {
            rc = deja__error_set(DEJA_ENOMEM, "sampling: out of memory");
            goto cleanup;
        }
    }
    if (s->dedup && (s->table = calloc(DEDUP_SLOTS, sizeof *s->table)) == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "sampling: out of memory for the dedup table");
        goto cleanup;
    }
    atomic_store(&tracer->sampler, s);
    s = NULL;
cleanup:
    deja__sampler_free(s);
    return rc;
}

/* Whether `text` matches a rule's `want` (NULL: anything). */
static int matches(const char *want, const char *text)
{
    return want == NULL || strcmp(want, text ? text : "") == 0;
}

/* The rate for a span of `model` at `version`. */
static double rate_for(const deja__sampler *s, const char *model, const char *version)
{
    for (size_t i = 0; i < s->nrules; i++)
        if (matches(s->rules[i].model, model) && matches(s->rules[i].version, version))
            return s->rules[i].rate;
    return s->rate;
}

/* Feed a string and its terminator to a hash state. */
static void hash_str(XXH3_state_t *st, const char *s)
{
    s = s ? s : "";
    XXH3_128bits_update(st, s, strlen(s) + 1);
}

/* Whether the span is among the first keep_first of its model version. */
static int first_of_version(deja__sampler *s, const deja_span *span)
{
    XXH3_state_t st;
    uint64_t key;
    int keep = 0;

    XXH3_64bits_reset(&st);
    hash_str(&st, span->model_name);
    hash_str(&st, span->model_version);
    key = XXH3_64bits_digest(&st) | 1;
    pthread_mutex_lock(&s->lock);
    for (size_t i = key % FIRST_SLOTS, n = 0; n < FIRST_SLOTS; i = (i + 1) % FIRST_SLOTS, n++) {
        if (s->first[i].key == 0)
            s->first[i].key = key;
        if (s->first[i].key == key) {
            keep = s->first[i].seen < s->keep_first;
            s->first[i].seen++;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return keep;
}

/* The request's digest: model, version, inputs, params and seeds. */
static XXH128_hash_t request_digest(const deja_span *span)
{
    XXH3_state_t st;

    XXH3_128bits_reset(&st);
    hash_str(&st, span->model_name);
    hash_str(&st, span->model_version);
    for (size_t i = 0; i < span->ninputs; i++) {
        const deja_tensor *t = &span->inputs[i];
        const uint32_t dtype = (uint32_t)t->dtype;

        hash_str(&st, t->name);
        XXH3_128bits_update(&st, &dtype, sizeof dtype);
        XXH3_128bits_update(&st, &t->ndim, sizeof t->ndim);
        if (t->ndim > 0)
            XXH3_128bits_update(&st, t->shape, t->ndim * sizeof *t->shape);
        XXH3_128bits_update(&st, &t->size, sizeof t->size);
        if (t->size > 0)
            XXH3_128bits_update(&st, t->data, t->size);
    }
    for (size_t i = 0; i < span->nparams; i++) {
        const deja_param *p = &span->params[i];
        const uint32_t kind = (uint32_t)p->kind;

        hash_str(&st, p->key);
        XXH3_128bits_update(&st, &kind, sizeof kind);
        XXH3_128bits_update(&st, &p->num, sizeof p->num);
        hash_str(&st, p->str);
        XXH3_128bits_update(&st, &p->flag, sizeof p->flag);
    }
    for (size_t i = 0; i < span->nseeds; i++) {
        hash_str(&st, span->seeds[i].name);
        XXH3_128bits_update(&st, &span->seeds[i].value, sizeof span->seeds[i].value);
    }
    return XXH3_128bits_digest(&st);
}

/* Whether the span repeats a request kept before: then count the repeat
 * against the trace kept for it. Otherwise remember it (a slot holding
 * repeats the writer has not taken yet is not replaced). */
static int is_repeat(deja__sampler *s, const deja_span *span)
{
    XXH128_hash_t h = request_digest(span);
    dedup_slot *slot;
    int repeat = 0;

    if (h.low64 == 0 && h.high64 == 0)
        h.low64 = 1;
    pthread_mutex_lock(&s->lock);
    slot = &s->table[h.low64 & (DEDUP_SLOTS - 1)];
    if (slot->lo == h.low64 && slot->hi == h.high64) {
        slot->pending++;
        repeat = 1;
    } else if (slot->pending == 0) {
        slot->lo = h.low64;
        slot->hi = h.high64;
        slot->id = span->id;
    }
    pthread_mutex_unlock(&s->lock);
    return repeat;
}

/* Whether the span carries a tag with key `key`. */
static int has_tag(const deja_span *span, const char *key)
{
    for (size_t i = 0; i < span->ntags; i++)
        if (span->tags[i].key != NULL && strcmp(span->tags[i].key, key) == 0)
            return 1;
    return 0;
}

/* Whether the tracer's record-time check (a rules file) fails the span.
 * Asked only of a span about to be left out, so that sampling never loses
 * a rule violation; the writer checks what is kept and tags it. */
static int breaks_a_rule(const deja_tracer *t, const deja_span *span)
{
    const char *failed[1];
    deja_trace v;

    if (t->opts.check == NULL)
        return 0;
    deja__span_view(t, span, &v);
    return t->opts.check(&v, failed, 1, t->opts.check_payload) > 0;
}

/* Count decision `which`. */
static void count(deja_tracer *t, int which)
{
    atomic_fetch_add_explicit(&t->sample_counts[which], 1, memory_order_relaxed);
}

/* Decide whether to keep an ended span under the tracer's policy. */
int deja__sampler_keep(deja_tracer *t, deja__sampler *s, const deja_span *span)
{
    int keep;

    if (span->status == DEJA_STATUS_ERROR) {
        count(t, DEJA__KEPT_ERROR);
        return 1;
    }
    if (has_tag(span, "deja.invalid")) {
        count(t, DEJA__KEPT_INVALID);
        return 1;
    }
    if (s->keep_slower_ns > 0 && span->duration_ns > s->keep_slower_ns) {
        keep = DEJA__KEPT_SLOW;
    } else if (s->keep_first > 0 && first_of_version(s, span)) {
        keep = DEJA__KEPT_FIRST;
    } else {
        const double rate = rate_for(s, span->model_name, span->model_version);

        if (!(rate >= 1.0 || deja__fast_uniform() < rate)) {
            if (breaks_a_rule(t, span)) {
                count(t, DEJA__KEPT_INVALID);
                return 1;
            }
            atomic_fetch_add_explicit(&t->sampled_out, 1, memory_order_relaxed);
            deja__lost_count(t, span->model_name, span->model_version, DEJA__LOST_SAMPLED_OUT);
            return 0;
        }
        keep = DEJA__KEPT_RATE;
    }
    if (s->dedup && !breaks_a_rule(t, span) && is_repeat(s, span)) {
        /* Left out like a sampled-out span (so that every ended span is
         * accounted for), and counted as a repeat besides. */
        atomic_fetch_add_explicit(&t->sampled_out, 1, memory_order_relaxed);
        deja__lost_count(t, span->model_name, span->model_version, DEJA__LOST_SAMPLED_OUT);
        count(t, DEJA__DEDUPED);
        return 0;
    }
    count(t, keep);
    return 1;
}

/* Hand the repeats counted since the last call to `cb` (trace id, count),
 * zeroing them. For the writer, before each commit. */
void deja__sampler_take_repeats(deja__sampler *s, void (*cb)(const deja_id *, uint64_t, void *),
                                void *payload)
{
    if (s == NULL || !s->dedup)
        return;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < DEDUP_SLOTS; i++) {
        if (s->table[i].pending > 0) {
            cb(&s->table[i].id, s->table[i].pending, payload);
            s->table[i].pending = 0;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* The store counter name of decision `which`. */
const char *deja__sample_counter_name(int which)
{
    static const char *const names[DEJA__SAMPLE_NCOUNTERS] = {
        "sample.kept_error", "sample.kept_invalid", "sample.kept_slow",
        "sample.kept_first", "sample.kept_rate",    "sample.deduplicated"};

    return which >= 0 && which < DEJA__SAMPLE_NCOUNTERS ? names[which] : "sample.unknown";
}
