/*
 * fleet/wire.c -- replay jobs and their results on the wire, for
 * distributed replay: a small tagged-free binary form (little-endian
 * integers, length-prefixed strings), every length bounded by the message
 * it is read from (results come from the network: untrusted).
 */
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet_internal.h"

#define MAX_LINES 4096
#define MAX_TENSORS 65536

static int w_u64(deja__buf *b, uint64_t x, size_t n)
{
    uint8_t p[8];

    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(x >> (8 * i));
    return deja__buf_append(b, p, n);
}

static int w_f64(deja__buf *b, double d)
{
    uint64_t x;

    memcpy(&x, &d, 8);
    return w_u64(b, x, 8);
}

static int w_str(deja__buf *b, const char *s)
{
    const size_t n = s ? strlen(s) : 0;
    int rc = w_u64(b, s ? n + 1 : 0, 4);

    return rc == 0 && n > 0 ? deja__buf_append(b, s, n) : rc;
}

static int w_lines(deja__buf *b, const char *const *v, size_t n)
{
    int rc = w_u64(b, n, 4);

    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = w_str(b, v[i]);
    return rc;
}

/* A reader over untrusted bytes; `bad` is set at the first overrun. */
typedef struct rd {
    const uint8_t *p, *end;
    int bad;
    char **owned; /* strings handed out, freed with the result */
    size_t nowned, cap;
} rd;

static uint64_t r_u64(rd *r, size_t n)
{
    uint64_t x = 0;

    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return 0;
    }
    for (size_t i = n; i > 0; i--)
        x = x << 8 | r->p[i - 1];
    r->p += n;
    return x;
}

static double r_f64(rd *r)
{
    const uint64_t x = r_u64(r, 8);
    double d;

    memcpy(&d, &x, 8);
    return d;
}

/* A string (NULL when absent), owned by the reader's list. */
static char *r_str(rd *r)
{
    const uint64_t len = r_u64(r, 4);
    char *s;

    if (r->bad || len == 0)
        return NULL;
    if (len - 1 > (uint64_t)(r->end - r->p)) {
        r->bad = 1;
        return NULL;
    }
    if (r->nowned == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        char **o = realloc(r->owned, cap * sizeof *o);

        if (o == NULL) {
            r->bad = 1;
            return NULL;
        }
        r->owned = o;
        r->cap = cap;
    }
    s = malloc((size_t)len);
    if (s == NULL) {
        r->bad = 1;
        return NULL;
    }
    memcpy(s, r->p, (size_t)len - 1);
    s[len - 1] = '\0';
    r->p += len - 1;
    r->owned[r->nowned++] = s;
    return s;
}

static const char *const *r_lines(rd *r, size_t *n)
{
    const uint64_t k = r_u64(r, 4);
    const char **v;

    *n = 0;
    if (r->bad || k > MAX_LINES || k * 4 > (uint64_t)(r->end - r->p)) {
        r->bad = r->bad || k > 0;
        return NULL;
    }
    if (k == 0)
        return NULL;
    v = calloc((size_t)k, sizeof *v);
    if (v == NULL) {
        r->bad = 1;
        return NULL;
    }
    for (size_t i = 0; i < k; i++) {
        v[i] = r_str(r);
        if (v[i] == NULL)
            v[i] = "";
    }
    /* The array itself is owned too. */
    if (r->nowned == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        char **o = realloc(r->owned, cap * sizeof *o);

        if (o == NULL) {
            free(v);
            r->bad = 1;
            return NULL;
        }
        r->owned = o;
        r->cap = cap;
    }
    r->owned[r->nowned++] = (char *)v;
    *n = (size_t)k;
    return v;
}

int deja__job_pack(const deja__job *j, deja__buf *out)
{
    int rc;

    out->size = 0;
    rc = w_u64(out, j->index, 8);
    if (rc == 0)
        rc = w_str(out, j->spec);
    if (rc == 0)
        rc = w_str(out, j->trace_subject);
    if (rc == 0)
        rc = w_str(out, j->reply);
    if (rc == 0)
        rc = w_u64(out, j->opts.repeat, 4);
    if (rc == 0)
        rc = w_f64(out, j->opts.diff.atol);
    if (rc == 0)
        rc = w_f64(out, j->opts.diff.rtol);
    if (rc == 0)
        rc = w_u64(out, j->opts.diff.ulps, 8);
    if (rc == 0)
        rc = w_u64(out, j->opts.diff.topk, 4);
    if (rc == 0)
        rc = w_u64(out, (uint64_t)(j->opts.force != 0) | (uint64_t)(j->opts.isolate != 0) << 1, 1);
    /* Last, and optional: an older worker stops reading before it. */
    if (rc == 0 && j->trace_size > 0)
        rc = w_u64(out, j->trace_size, 4);
    if (rc == 0 && j->trace_size > 0)
        rc = deja__buf_append(out, j->trace, j->trace_size);
    return rc;
}

int deja__job_unpack(const void *data, size_t size, deja__job *j)
{
    static const deja_replay_options defaults = DEJA_REPLAY_OPTIONS_INIT;
    rd r = {data, (const uint8_t *)data + size, 0, NULL, 0, 0};
    uint64_t flags;

    memset(j, 0, sizeof *j);
    j->opts = defaults;
    j->index = r_u64(&r, 8);
    j->spec = r_str(&r);
    j->trace_subject = r_str(&r);
    j->reply = r_str(&r);
    j->opts.repeat = (unsigned)r_u64(&r, 4);
    j->opts.diff.atol = r_f64(&r);
    j->opts.diff.rtol = r_f64(&r);
    j->opts.diff.ulps = r_u64(&r, 8);
    j->opts.diff.topk = (unsigned)r_u64(&r, 4);
    flags = r_u64(&r, 1);
    j->opts.force = (int)(flags & 1);
    j->opts.isolate = (int)(flags >> 1 & 1);
    if (!r.bad && r.p < r.end) {
        const uint64_t n = r_u64(&r, 4);

        if (r.bad || n == 0 || n > (uint64_t)(r.end - r.p)) {
            r.bad = 1;
        } else {
            j->trace = r.p;
            j->trace_size = (size_t)n;
            r.p += n;
        }
    }
    j->owned = r.owned;
    j->nowned = r.nowned;
    if (r.bad || j->spec == NULL || j->trace_subject == NULL || j->reply == NULL ||
        j->opts.repeat == 0 || j->opts.repeat > 1000) {
        deja__job_free(j);
        return deja__error_set(DEJA_ECORRUPT, "a malformed replay job");
    }
    return 0;
}

void deja__job_free(deja__job *j)
{
    for (size_t i = 0; i < j->nowned; i++)
        free(j->owned[i]);
    free(j->owned);
    j->owned = NULL;
    j->nowned = 0;
}

int deja__result_pack(const deja_replay_result *r, const deja_replay_summary *s, deja__buf *out)
{
    int rc;

    out->size = 0;
    rc = w_u64(out, r->verdict, 1);
    if (rc == 0)
        rc = w_u64(out, (uint64_t)(int64_t)r->code, 8);
    if (rc == 0)
        rc = w_u64(out, s->trouble, 4);
    if (rc == 0)
        rc = w_u64(out, s->name_mismatch, 4);
    if (rc == 0)
        rc = w_str(out, r->error);
    if (rc == 0)
        rc = w_str(out, r->model_name);
    if (rc == 0)
        rc = w_str(out, r->model_version);
    if (rc == 0)
        rc = w_lines(out, r->env, r->nenv);
    if (rc == 0)
        rc = w_lines(out, r->unrecorded, r->nunrecorded);
    if (rc == 0)
        rc = w_lines(out, r->varying, r->nvarying);
    /* What replay says beside the verdict (issue 9): the same on every
     * worker as locally. */
    if (rc == 0)
        rc = w_lines(out, r->unconsumed, r->nunconsumed);
    if (rc == 0)
        rc = w_lines(out, r->model_changes, r->nmodel_changes);
    if (rc == 0)
        rc = w_lines(out, r->notes, r->nnotes);
    if (rc == 0)
        rc = w_lines(out, r->noise, r->nnoise);
    if (rc == 0)
        rc = w_u64(out, r->diff != NULL, 1);
    if (rc != 0 || r->diff == NULL)
        return rc;
    rc = w_u64(out, r->diff->verdict, 1);
    if (rc == 0)
        rc = w_str(out, r->diff->summary);
    if (rc == 0)
        rc = w_u64(out, r->diff->ntensors, 4);
    for (size_t i = 0; rc == 0 && i < r->diff->ntensors; i++) {
        const deja_tensor_diff *t = &r->diff->tensors[i];

        rc = w_str(out, t->name);
        if (rc == 0)
            rc = w_u64(out, t->kind, 1);
        if (rc == 0)
            rc = w_u64(out, t->verdict, 1);
        if (rc == 0)
            rc = w_u64(out, t->dtype_a, 1);
        if (rc == 0)
            rc = w_u64(out, t->dtype_b, 1);
        if (rc == 0)
            rc = w_u64(out, t->count, 8);
        if (rc == 0)
            rc = w_u64(out, t->ndiff, 8);
        if (rc == 0)
            rc = w_u64(out, t->nbeyond, 8);
        if (rc == 0)
            rc = w_u64(out, (uint64_t)t->first, 8);
        if (rc == 0)
            rc = w_f64(out, t->max_abs);
        if (rc == 0)
            rc = w_u64(out, (uint64_t)t->worst, 8);
        if (rc == 0)
            rc = w_f64(out, t->max_rel);
        if (rc == 0)
            rc = w_u64(out, t->max_ulps, 8);
        if (rc == 0)
            rc = w_u64(out, t->nnan, 8);
        if (rc == 0)
            rc = w_u64(out, (uint64_t)t->is_scores, 1);
        if (rc == 0)
            rc = w_u64(out, t->rows, 8);
        if (rc == 0)
            rc = w_u64(out, t->rows_label, 8);
        if (rc == 0)
            rc = w_u64(out, t->rows_topk, 8);
        if (rc == 0)
            rc = w_u64(out, (uint64_t)t->label_row, 8);
        if (rc == 0)
            rc = w_u64(out, (uint64_t)t->label_a, 8);
        if (rc == 0)
            rc = w_u64(out, (uint64_t)t->label_b, 8);
        if (rc == 0)
            rc = w_str(out, t->hunk);
        if (rc == 0)
            rc = w_str(out, t->detail);
    }
    return rc;
}

int deja__result_unpack(const void *data, size_t size, deja__wire_result *w)
{
    rd r = {data, (const uint8_t *)data + size, 0, NULL, 0, 0};
    deja_replay_result *res = &w->result;
    deja_tensor_diff *td = NULL;
    uint64_t nt;

    memset(w, 0, sizeof *w);
    res->verdict = (deja_verdict)r_u64(&r, 1);
    res->code = (int)(int64_t)r_u64(&r, 8);
    w->trouble = (size_t)r_u64(&r, 4);
    w->name_mismatch = (size_t)r_u64(&r, 4);
    res->error = r_str(&r);
    res->model_name = r_str(&r);
    res->model_version = r_str(&r);
    res->env = r_lines(&r, &res->nenv);
    res->unrecorded = r_lines(&r, &res->nunrecorded);
    res->varying = r_lines(&r, &res->nvarying);
    res->unconsumed = r_lines(&r, &res->nunconsumed);
    res->model_changes = r_lines(&r, &res->nmodel_changes);
    res->notes = r_lines(&r, &res->nnotes);
    res->noise = r_lines(&r, &res->nnoise);
    if (res->error == NULL)
        res->error = "";
    if (res->model_name == NULL)
        res->model_name = "";
    if (res->model_version == NULL)
        res->model_version = "";
    if (r_u64(&r, 1) == 1 && !r.bad) {
        w->diff.verdict = (deja_verdict)r_u64(&r, 1);
        w->diff.summary = r_str(&r);
        if (w->diff.summary == NULL)
            w->diff.summary = "";
        nt = r_u64(&r, 4);
        if (nt > MAX_TENSORS || nt * 30 > (uint64_t)(r.end - r.p))
            r.bad = 1;
        if (!r.bad && nt > 0 && (td = calloc((size_t)nt, sizeof *td)) == NULL)
            r.bad = 1;
        for (size_t i = 0; !r.bad && i < nt; i++) {
            deja_tensor_diff *t = &td[i];

            t->name = r_str(&r);
            t->kind = (deja_diff_kind)r_u64(&r, 1);
            t->verdict = (deja_verdict)r_u64(&r, 1);
            t->dtype_a = (deja_dtype)r_u64(&r, 1);
            t->dtype_b = (deja_dtype)r_u64(&r, 1);
            t->count = r_u64(&r, 8);
            t->ndiff = r_u64(&r, 8);
            t->nbeyond = r_u64(&r, 8);
            t->first = (int64_t)r_u64(&r, 8);
            t->max_abs = r_f64(&r);
            t->worst = (int64_t)r_u64(&r, 8);
            t->max_rel = r_f64(&r);
            t->max_ulps = r_u64(&r, 8);
            t->nnan = r_u64(&r, 8);
            t->is_scores = (int)r_u64(&r, 1);
            t->rows = r_u64(&r, 8);
            t->rows_label = r_u64(&r, 8);
            t->rows_topk = r_u64(&r, 8);
            t->label_row = (int64_t)r_u64(&r, 8);
            t->label_a = (int64_t)r_u64(&r, 8);
            t->label_b = (int64_t)r_u64(&r, 8);
            t->hunk = r_str(&r);
            t->detail = r_str(&r);
            if (t->name == NULL)
                t->name = "";
            if (t->detail == NULL)
                t->detail = "";
        }
        w->diff.tensors = td;
        w->diff.ntensors = (size_t)nt;
        res->diff = &w->diff;
    }
    w->owned = r.owned;
    w->nowned = r.nowned;
    w->tensors = td;
    if (r.bad || res->verdict > DEJA_VERDICT_ERROR ||
        (res->diff == NULL && res->verdict != DEJA_VERDICT_ERROR)) {
        deja__wire_result_free(w);
        return deja__error_set(DEJA_ECORRUPT, "a malformed replay result");
    }
    return 0;
}

void deja__wire_result_free(deja__wire_result *w)
{
    for (size_t i = 0; i < w->nowned; i++)
        free(w->owned[i]);
    free(w->owned);
    free(w->tensors);
    memset(w, 0, sizeof *w);
}
