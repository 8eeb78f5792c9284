/*
 * replay/checkpoint.c -- where did it go wrong: the checkpoints a replay
 * produces, compared in order with the recorded ones.
 *
 * The k-th occurrence of a name is paired with the k-th recorded one of
 * that name (a generation records "logits" and "token" once per step). A
 * pair recorded with bytes is bit-identical or diffed with the replay's
 * tolerances (deja_diff_tensor); one recorded digest-only is compared by
 * digest, and its summary says how it moved. The first pair that is not
 * bit-identical, in the order the replay produced them, is the first
 * divergence: everything produced before it was bit-identical. Recorded
 * checkpoints never produced are absent; produced ones the recording's
 * selection would have kept but that were not recorded are extra.
 *
 * For generation: the first "token" checkpoint (an integer scalar whose
 * name holds "token") that differs names the first divergent token, and
 * the "logits" checkpoint of the same step (a name holding "logit"), when
 * recorded with bytes, says which logit flipped the sampler.
 *
 * Room replay/: calls the public API (deja_diff_tensor, digests, stats).
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "deja_model.h"
#include "replay/checkpoint.h"

#define MAX_LIST 256 /* absent / extra lines kept at most */

/* A produced name and how often it has been produced. */
typedef struct name_count {
    char *name;
    size_t count;
} name_count;

struct deja__ckpt_cmp {
    const deja_trace *t;
    deja_diff_options dopt;
    int stop_at_first;
    size_t *order;       /* recorded indices sorted by (name, occurrence) */
    size_t *occ;         /* occurrence of each recorded checkpoint */
    unsigned char *used; /* per recorded: paired */
    name_count *names;   /* produced names (hash table, open addressing) */
    size_t cap_names, nnames;
    deja_tensor logits;  /* copy of the last produced logits */
    char *logits_name;
    size_t logits_occ;
    int stopped;
    int err;
    uint64_t before; /* checkpoints bit-identical before the first divergence */
    deja__ckpt_report *rep;
};

/* FNV-1a of a name. */
static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The count slot of `name`, created at 0; NULL when out of memory. */
static name_count *name_slot(deja__ckpt_cmp *c, const char *name)
{
    if (c->nnames * 2 >= c->cap_names) {
        const size_t ncap = c->cap_names ? c->cap_names * 2 : 64;
        name_count *nt = calloc(ncap, sizeof *nt);
        if (nt == NULL)
            return NULL;
        for (size_t i = 0; i < c->cap_names; i++) {
            if (c->names[i].name == NULL)
                continue;
            size_t k = hash_name(c->names[i].name) & (ncap - 1);
            while (nt[k].name != NULL)
                k = (k + 1) & (ncap - 1);
            nt[k] = c->names[i];
        }
        free(c->names);
        c->names = nt;
        c->cap_names = ncap;
    }
    size_t k = hash_name(name) & (c->cap_names - 1);
    while (c->names[k].name != NULL) {
        if (strcmp(c->names[k].name, name) == 0)
            return &c->names[k];
        k = (k + 1) & (c->cap_names - 1);
    }
    if ((c->names[k].name = strdup(name)) == NULL)
        return NULL;
    c->nnames++;
    return &c->names[k];
}

/* qsort_r order of recorded indices: by name, then occurrence. */
static int order_cmp(const void *pa, const void *pb, void *arg)
{
    const deja__ckpt_cmp *c = arg;
    const size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    const int r = strcmp(c->t->checkpoints[a].tensor.name, c->t->checkpoints[b].tensor.name);
    if (r != 0)
        return r;
    return c->occ[a] < c->occ[b] ? -1 : c->occ[a] > c->occ[b];
}

/* The recorded index of occurrence `occ` of `name`, or (size_t)-1. */
static size_t find_recorded(const deja__ckpt_cmp *c, const char *name, size_t occ)
{
    size_t lo = 0, hi = c->t->ncheckpoints;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const size_t idx = c->order[mid];
        int r = strcmp(c->t->checkpoints[idx].tensor.name, name);
        if (r == 0)
            r = c->occ[idx] < occ ? -1 : c->occ[idx] > occ;
        if (r == 0)
            return idx;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (size_t)-1;
}

int deja__ckpt_wanted(const deja_trace *t)
{
    return t != NULL && (t->ncheckpoints != 0 ||
                         (t->checkpoint_select != NULL && t->checkpoint_select[0] != '\0'));
}

deja__ckpt_report *deja__ckpt_report_new(void)
{
    return calloc(1, sizeof(deja__ckpt_report));
}

int deja__ckpt_report_add(deja__ckpt_report *r, int extra, const char *line)
{
    char ***v = extra ? &r->extra : &r->absent;
    size_t *n = extra ? &r->nextra : &r->nabsent;
    if (*n >= MAX_LIST)
        return 0;
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (nv == NULL)
        return deja__error_set(DEJA_ENOMEM, "checkpoints: out of memory");
    *v = nv;
    if ((nv[*n] = strdup(line)) == NULL)
        return deja__error_set(DEJA_ENOMEM, "checkpoints: out of memory");
    (*n)++;
    return 0;
}

const deja_checkpoint_diff *deja__ckpt_report_view(deja__ckpt_report *r)
{
    deja_checkpoint_diff *v = &r->view;
    memset(v, 0, sizeof *v);
    v->recorded = (size_t)r->recorded;
    v->compared = (size_t)r->compared;
    v->identical = (size_t)r->identical;
    v->first = r->has_first ? r->first : NULL;
    v->first_index = (size_t)r->first_index;
    v->first_occurrence = (size_t)r->first_occurrence;
    v->first_verdict = r->has_first ? (deja_verdict)r->first_verdict : DEJA_VERDICT_SAME;
    v->first_detail = r->has_first && r->first_detail ? r->first_detail : NULL;
    v->token = r->token;
    v->absent = (const char *const *)r->absent;
    v->nabsent = r->nabsent;
    v->extra = (const char *const *)r->extra;
    v->nextra = r->nextra;
    v->stopped = r->stopped != 0;
    v->summary = r->summary ? r->summary : "";
    return v;
}

void deja__ckpt_report_free(deja__ckpt_report *r)
{
    if (r == NULL)
        return;
    free(r->first);
    free(r->first_detail);
    free(r->token);
    free(r->summary);
    for (size_t i = 0; i < r->nabsent; i++)
        free(r->absent[i]);
    free(r->absent);
    for (size_t i = 0; i < r->nextra; i++)
        free(r->extra[i]);
    free(r->extra);
    free(r);
}

int deja__ckpt_cmp_new(deja__ckpt_cmp **out, const deja_trace *t, const deja_diff_options *dopt,
                       int stop_at_first)
{
    deja__ckpt_cmp *c = calloc(1, sizeof *c);
    const size_t n = t->ncheckpoints;
    if (c == NULL)
        return deja__error_set(DEJA_ENOMEM, "checkpoints: out of memory");
    c->t = t;
    c->dopt = *dopt;
    c->dopt.kinds = NULL;
    c->dopt.nkinds = 0;
    c->stop_at_first = stop_at_first;
    c->order = malloc((n ? n : 1) * sizeof *c->order);
    c->occ = malloc((n ? n : 1) * sizeof *c->occ);
    c->used = calloc(n ? n : 1, 1);
    c->rep = deja__ckpt_report_new();
    if (c->order == NULL || c->occ == NULL || c->used == NULL || c->rep == NULL) {
        deja__ckpt_cmp_free(c);
        return deja__error_set(DEJA_ENOMEM, "checkpoints: out of memory");
    }
    c->rep->recorded = n;
    for (size_t i = 0; i < n; i++) {
        name_count *nc = name_slot(c, t->checkpoints[i].tensor.name);
        if (nc == NULL) {
            deja__ckpt_cmp_free(c);
            return deja__error_set(DEJA_ENOMEM, "checkpoints: out of memory");
        }
        c->occ[i] = nc->count++;
        c->order[i] = i;
    }
    /* The same table counts the replay's names: start it afresh. */
    for (size_t i = 0; i < c->cap_names; i++) {
        free(c->names[i].name);
        c->names[i].name = NULL;
        c->names[i].count = 0;
    }
    c->nnames = 0;
    qsort_r(c->order, n, sizeof *c->order, order_cmp, c);
    *out = c;
    return 0;
}

/* Write "[i, j]" for flat element `flat` of a tensor of `shape`. */
static void format_index(char *out, size_t cap, const uint64_t *shape, size_t ndim, uint64_t flat)
{
    uint64_t idx[DEJA_MAX_DIMS];
    size_t used = 0;
    for (size_t d = ndim; d-- > 0;) {
        const uint64_t dim = shape[d] ? shape[d] : 1;
        idx[d] = flat % dim;
        flat /= dim;
    }
    used += (size_t)snprintf(out, cap, "[");
    for (size_t d = 0; d < ndim && used < cap; d++)
        used += (size_t)snprintf(out + used, cap - used, "%s%" PRIu64, d ? ", " : "", idx[d]);
    if (ndim == 0 && used < cap)
        used += (size_t)snprintf(out + used, cap - used, "%" PRIu64, flat);
    if (used < cap)
        snprintf(out + used, cap - used, "]");
}

/* Write a shape "[2,3]" into `out`. */
static void format_shape(char *out, size_t cap, const uint64_t *shape, size_t ndim)
{
    size_t used = (size_t)snprintf(out, cap, "[");
    for (size_t d = 0; d < ndim && used < cap; d++)
        used += (size_t)snprintf(out + used, cap - used, "%s%" PRIu64, d ? "," : "", shape[d]);
    if (used < cap)
        snprintf(out + used, cap - used, "]");
}

static int same_layout(const deja_tensor *a, const deja_tensor *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim || a->size != b->size)
        return 0;
    for (size_t d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

/* The value of element `i` of a numeric tensor as a double (0 when out of
 * range or not numeric). */
static double value_at(const deja_tensor *t, uint64_t i)
{
    deja_tensor_stats st;
    const size_t es = deja_dtype_size(t->dtype);
    if (es == 0 || t->dtype == DEJA_BYTES || t->dtype == DEJA_UTF8 || t->data == NULL ||
        (i + 1) * es > t->size)
        return 0.0;
    const deja_tensor one = {t->name, t->dtype, 0, NULL, (const uint8_t *)t->data + i * es, es};
    if (deja_tensor_stats_of(&one, &st) != 0 || st.nnan || st.ninf)
        return st.nnan ? (double)NAN : 0.0;
    return st.mean;
}

static int is_token(const deja_tensor *t)
{
    const int integer = t->dtype >= DEJA_I8 && t->dtype <= DEJA_U64;
    return integer && t->size == deja_dtype_size(t->dtype) && strstr(t->name, "token") != NULL;
}

static int is_logits(const deja_tensor *t)
{
    return strstr(t->name, "logit") != NULL &&
           (t->dtype == DEJA_F16 || t->dtype == DEJA_BF16 || t->dtype == DEJA_F32 ||
            t->dtype == DEJA_F64);
}

/* Keep a copy of the produced logits `t` (occurrence `occ`). */
static int keep_logits(deja__ckpt_cmp *c, const deja_tensor *t, size_t occ)
{
    void *data = malloc(t->size ? t->size : 1);
    uint64_t *shape = malloc((t->ndim ? t->ndim : 1) * sizeof *shape);
    char *name = strdup(t->name);
    if (data == NULL || shape == NULL || name == NULL) {
        free(data);
        free(shape);
        free(name);
        return deja__error_set(DEJA_ENOMEM, "checkpoints: out of memory");
    }
    memcpy(data, t->data, t->size);
    if (t->ndim)
        memcpy(shape, t->shape, t->ndim * sizeof *shape);
    free((void *)(uintptr_t)c->logits.data);
    free((void *)(uintptr_t)c->logits.shape);
    free(c->logits_name);
    c->logits = (deja_tensor){name, t->dtype, t->ndim, shape, data, t->size};
    c->logits_name = name;
    c->logits_occ = occ;
    return 0;
}

/* The line explaining the first divergent token: step `occ`, recorded
 * token `ta`, replayed `tb`, with the logits of that step when known. */
static char *token_line(deja__ckpt_cmp *c, size_t occ, double ta, double tb)
{
    char *s = NULL;
    char logits[400] = "";
    if (c->logits_name != NULL && c->logits_occ == occ) {
        const size_t ri = find_recorded(c, c->logits_name, occ);
        const deja_checkpoint *rl = ri != (size_t)-1 ? &c->t->checkpoints[ri] : NULL;
        if (rl == NULL) {
            snprintf(logits, sizeof logits, "; the logits of step %zu were not recorded", occ);
        } else if (rl->digest_only) {
            snprintf(logits, sizeof logits,
                     "; logits of step %zu %s (recorded digest-only: record them with bytes to "
                     "see which logit flipped the sampler)",
                     occ,
                     memcmp(deja_digest_of(c->logits.data, c->logits.size).bytes, rl->digest.bytes,
                            16) == 0
                         ? "bit-identical"
                         : "differ");
        } else if (same_layout(&rl->tensor, &c->logits) &&
                   memcmp(rl->tensor.data, c->logits.data, c->logits.size) == 0) {
            snprintf(logits, sizeof logits,
                     "; logits of step %zu bit-identical: the sampler's draw differed", occ);
        } else if (same_layout(&rl->tensor, &c->logits) && ta >= 0 && tb >= 0) {
            const uint64_t last = rl->tensor.ndim ? rl->tensor.shape[rl->tensor.ndim - 1] : 1;
            const uint64_t rows = last ? (rl->tensor.size / deja_dtype_size(rl->tensor.dtype)) / last : 0;
            const uint64_t base = rows > 0 ? (rows - 1) * last : 0; /* the last row: this step */
            const uint64_t a = (uint64_t)ta, b = (uint64_t)tb;
            if (a < last && b < last) {
                const double ra = value_at(&rl->tensor, base + a), rb = value_at(&rl->tensor, base + b);
                const double pa = value_at(&c->logits, base + a), pb = value_at(&c->logits, base + b);
                snprintf(logits, sizeof logits,
                         "; logits of step %zu: [%" PRIu64 "] %.9g -> %.9g, [%" PRIu64
                         "] %.9g -> %.9g (%s)",
                         occ, a, ra, pa, b, rb, pb,
                         (ra >= rb && pb > pa) ? "the replayed token overtook the recorded one"
                         : "their order held: the flip came from the sampler's draw over the "
                           "changed distribution");
            }
        }
    }
    if (asprintf(&s, "first divergent token: step %zu: recorded %.17g, replayed %.17g%s", occ, ta,
                 tb, logits) < 0)
        return NULL;
    return s;
}

/* Describe how a digest-only recorded checkpoint `r` differs from `p`. */
static char *digest_detail(const deja_checkpoint *r, const deja_tensor *p)
{
    char *s = NULL;
    char sa[128], sb[128];
    deja_tensor_stats ps;
    if (r->tensor.dtype != p->dtype) {
        if (asprintf(&s, "dtype %s -> %s", deja_dtype_name(r->tensor.dtype),
                     deja_dtype_name(p->dtype)) < 0)
            s = NULL;
        return s;
    }
    if (!same_layout(&r->tensor, &(deja_tensor){p->name, p->dtype, p->ndim, p->shape, NULL,
                                                 p->size})) {
        format_shape(sa, sizeof sa, r->tensor.shape, r->tensor.ndim);
        format_shape(sb, sizeof sb, p->shape, p->ndim);
        if (asprintf(&s, "shape %s -> %s", sa, sb) < 0)
            s = NULL;
        return s;
    }
    if (deja_tensor_stats_of(p, &ps) != 0 || !ps.numeric) {
        if (asprintf(&s, "digest differs (recorded digest-only)") < 0)
            s = NULL;
        return s;
    }
    if (asprintf(&s,
                 "digest differs (recorded digest-only): min %.6g -> %.6g, max %.6g -> %.6g, mean "
                 "%.9g -> %.9g, NaN %" PRIu64 " -> %" PRIu64 ", Inf %" PRIu64 " -> %" PRIu64,
                 r->stats.min, ps.min, r->stats.max, ps.max, r->stats.mean, ps.mean,
                 r->stats.nnan, ps.nnan, r->stats.ninf, ps.ninf) < 0)
        s = NULL;
    return s;
}

/* Compare the produced `p` with recorded `r`: 1 bit-identical, 0 not (with
 * `*verdict` and a malloc'd `*detail`), negative on error. */
static int compare(deja__ckpt_cmp *c, const deja_checkpoint *r, const deja_tensor *p,
                   deja_verdict *verdict, char **detail)
{
    *detail = NULL;
    if (r->digest_only) {
        const deja_digest d = deja_digest_of(p->data, p->size);
        if (same_layout(&r->tensor, &(deja_tensor){p->name, p->dtype, p->ndim, p->shape, NULL,
                                                   p->size}) &&
            memcmp(d.bytes, r->digest.bytes, sizeof d.bytes) == 0)
            return 1;
        *verdict = DEJA_VERDICT_DIVERGED;
        *detail = digest_detail(r, p);
        return *detail != NULL ? 0 : deja__error_set(DEJA_ENOMEM, "checkpoints: out of memory");
    }
    if (same_layout(&r->tensor, p) && (p->size == 0 || memcmp(r->tensor.data, p->data, p->size) == 0))
        return 1;
    deja_diff *d = NULL;
    int rc = deja_diff_tensor(&r->tensor, p, &c->dopt, &d);
    if (rc != 0)
        return rc;
    const deja_tensor_diff *td = d->ntensors ? &d->tensors[0] : NULL;
    *verdict = td && td->verdict != DEJA_VERDICT_SAME ? td->verdict : DEJA_VERDICT_CLOSE;
    int n;
    if (td && td->kind == DEJA_DIFF_VALUES && td->worst >= 0 &&
        (p->dtype == DEJA_F16 || p->dtype == DEJA_BF16 || p->dtype == DEJA_F32 ||
         p->dtype == DEJA_F64)) {
        char idx[128], label[128] = "";
        format_index(idx, sizeof idx, p->shape, p->ndim, (uint64_t)td->worst);
        if (td->rows_label > 0)
            snprintf(label, sizeof label, "; arg-max %" PRId64 " -> %" PRId64 " in row %" PRId64,
                     td->label_a, td->label_b, td->label_row);
        n = asprintf(detail, "max abs %.2g at %s (%" PRIu64 " of %" PRIu64 " elements differ, %s)%s",
                     td->max_abs, idx, td->ndiff, td->count,
                     *verdict == DEJA_VERDICT_CLOSE ? "within the tolerances"
                                                    : "beyond the tolerances",
                     label);
    } else {
        n = asprintf(detail, "%s", td ? td->detail : "differs");
    }
    if (n < 0)
        *detail = NULL;
    deja_diff_free(d);
    return *detail != NULL ? 0 : deja__error_set(DEJA_ENOMEM, "checkpoints: out of memory");
}

/* The comparator's deja_checkpoint_cb. */
int deja__ckpt_cmp_cb(const deja_tensor *p, void *payload)
{
    deja__ckpt_cmp *c = payload;
    deja__ckpt_report *rep = c->rep;
    if (c->stopped)
        return DEJA_CHECKPOINT_STOP;
    name_count *nc = name_slot(c, p->name);
    if (nc == NULL) {
        c->err = deja__error_set(DEJA_ENOMEM, "checkpoints: out of memory");
        return 0;
    }
    const size_t occ = nc->count++;
    if (is_logits(p) && keep_logits(c, p, occ) != 0)
        c->err = DEJA_ENOMEM;
    const size_t ri = find_recorded(c, p->name, occ);
    if (ri == (size_t)-1) {
        if (deja_checkpoint_select_match(c->t->checkpoint_select, p->name)) {
            char line[300];
            snprintf(line, sizeof line, "%.200s#%zu", p->name, occ);
            if (deja__ckpt_report_add(rep, 1, line) != 0)
                c->err = DEJA_ENOMEM;
        }
        return 0;
    }
    const deja_checkpoint *r = &c->t->checkpoints[ri];
    c->used[ri] = 1;
    rep->compared++;
    deja_verdict v = DEJA_VERDICT_SAME;
    char *detail = NULL;
    const int same = compare(c, r, p, &v, &detail);
    if (same < 0) {
        c->err = same;
        return 0;
    }
    if (same) {
        rep->identical++;
        return 0;
    }
    if (rep->token == NULL && is_token(p) && is_token(&r->tensor) && !r->digest_only)
        rep->token = token_line(c, occ, value_at(&r->tensor, 0), value_at(p, 0));
    if (rep->has_first) {
        free(detail);
        return 0;
    }
    rep->has_first = 1;
    c->before = rep->identical;
    rep->first = strdup(p->name);
    rep->first_detail = detail;
    rep->first_index = ri;
    rep->first_occurrence = occ;
    rep->first_verdict = (uint64_t)v;
    if (rep->first == NULL)
        c->err = DEJA_ENOMEM;
    if (c->stop_at_first) {
        c->stopped = 1;
        rep->stopped = 1;
        return DEJA_CHECKPOINT_STOP;
    }
    return 0;
}

int deja__ckpt_cmp_finish(deja__ckpt_cmp *c, deja__ckpt_report **out)
{
    deja__ckpt_report *rep = c->rep;
    int rc = c->err;
    *out = NULL;
    for (size_t i = 0; i < c->t->ncheckpoints && rc == 0 && !c->stopped; i++) {
        if (!c->used[i]) {
            char line[300];
            snprintf(line, sizeof line, "%.200s#%zu", c->t->checkpoints[i].tensor.name, c->occ[i]);
            rc = deja__ckpt_report_add(rep, 0, line);
        }
    }
    if (rc == 0) {
        char tail[160] = "";
        int n;
        if (rep->nabsent || rep->nextra)
            snprintf(tail, sizeof tail, "; %zu absent, %zu extra", rep->nabsent, rep->nextra);
        if (rep->has_first) {
            char occs[40] = "";
            if (c->occ != NULL && rep->first_occurrence > 0)
                snprintf(occs, sizeof occs, " (occurrence %" PRIu64 ")", rep->first_occurrence);
            char before[96];
            if (c->before == 0)
                snprintf(before, sizeof before, "it is the first checkpoint compared");
            else
                snprintf(before, sizeof before,
                         "everything before it bit-identical (%" PRIu64 " checkpoint%s)",
                         c->before, c->before == 1 ? "" : "s");
            n = asprintf(&rep->summary, "first divergence: %s%s, %s; %s%s%s", rep->first, occs,
                         rep->first_detail ? rep->first_detail : "differs", before,
                         rep->stopped ? "; stopped there (--stop-at-first)" : "", tail);
        } else {
            n = asprintf(&rep->summary, "%" PRIu64 " of %" PRIu64 " checkpoints bit-identical%s",
                         rep->identical, rep->recorded, tail);
        }
        if (n < 0) {
            rep->summary = NULL;
            rc = deja__error_set(DEJA_ENOMEM, "checkpoints: out of memory");
        }
    }
    if (rc != 0)
        return rc;
    *out = rep;
    c->rep = NULL;
    return 0;
}

void deja__ckpt_cmp_free(deja__ckpt_cmp *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->cap_names; i++)
        free(c->names[i].name);
    free(c->names);
    free(c->order);
    free(c->occ);
    free(c->used);
    free((void *)(uintptr_t)c->logits.data);
    free((void *)(uintptr_t)c->logits.shape);
    free(c->logits_name);
    deja__ckpt_report_free(c->rep);
    free(c);
}
