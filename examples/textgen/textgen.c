/*
 * textgen.c -- a character-level n-gram text generator, as a deja model
 * plugin. Built six times with -DTEXTGEN_VERSION=1..6 (textgen-v1.so ...):
 *
 *   v1  the baseline.
 *   v2  refactor: candidates are ordered with qsort instead of an insertion
 *       sort; the order is total (count, then byte), so outputs are identical.
 *   v3  adds an optional "stop" param (a string: generation stops after it
 *       is produced); absent, outputs are identical to v1.
 *   v4  "simplifies" the temperature: applies p^T instead of p^(1/T). At
 *       any temperature other than 1 the distribution changes, and so do
 *       most completions: the plausible bug that `deja bisect` should find.
 *   v5  as v4, with the output assembled in a buffer sized once up front.
 *   v6  as v5, and the prompt tail is validated before the params.
 *
 * open(ARG): ARG is the model file (see textgen_model.h); without ARG, the
 * file textgen.model next to this plugin. The weights digest is the
 * XXH3-128 of that file, so every version of the plugin reports the same
 * weights.
 *
 * infer: input "prompt" (utf8); params temperature (0.8), top_k (8),
 * max_tokens (80), and from v3 stop (string); output "completion" (utf8).
 * Each generated character takes one draw of the RNG stream "sampling".
 * Checkpoints (kept with `deja run --checkpoints`), per generated character:
 * "logits", f32 [256], the log-probability of each next byte as sampled
 * (-inf for bytes outside the top k), then "token", i32, the byte drawn. A
 * replay names the first token that differs and the logit that flipped it.
 *
 * The plugin links nothing of deja: it only includes deja_model.h.
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


#include "deja_model.h"
#include "textgen_model.h"

#ifndef TEXTGEN_VERSION
#define TEXTGEN_VERSION 1
#endif

#define STR2(x) #x
#define STR(x) STR2(x)

#define MAX_TOKENS_LIMIT 4096
#define MAX_STOP 256

typedef struct context {
    uint32_t key;
    uint32_t first;
    uint16_t n;
    uint8_t len;
} context;

typedef struct model {
    unsigned order;
    uint32_t nctx;
    uint32_t nent;
    context *ctx;
    uint8_t *ent_byte;
    uint32_t *ent_count;
    /* Contexts of length k are ctx[start[k] .. start[k + 1]). */
    uint32_t start[TEXTGEN_MAX_ORDER + 2];
} model;

typedef struct cand {
    uint8_t byte;
    uint32_t count;
} cand;

const deja_model_plugin *deja_model_entry(void) __attribute__((visibility("default")));

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void model_free(model *m)
{
    if (m) {
        free(m->ctx);
        free(m->ent_byte);
        free(m->ent_count);
        free(m);
    }
}

/* Read the file at `path` whole (at most TEXTGEN_MAX_FILE bytes) into a
 * malloc'd buffer. Returns 0, or -1 with a message in `err`. */
static int read_file(const char *path, uint8_t **out, size_t *size, char *err, size_t errcap)
{
    int rc = -1;
    struct stat st;
    uint8_t *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errcap, "textgen: model file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (size_t)st.st_size > TEXTGEN_MAX_FILE) {
        snprintf(err, errcap, "textgen: model file %s: not a file, or larger than %zu bytes", path,
                 TEXTGEN_MAX_FILE);
        goto cleanup;
    }
    *size = (size_t)st.st_size;
    buf = malloc(*size ? *size : 1);
    if (!buf) {
        snprintf(err, errcap, "textgen: out of memory");
        goto cleanup;
    }
    if (fread(buf, 1, *size, f) != *size) {
        snprintf(err, errcap, "textgen: model file %s: short read", path);
        goto cleanup;
    }
    *out = buf;
    buf = NULL;
    rc = 0;
cleanup:
    free(buf);
    fclose(f);
    return rc;
}

/* Decode and check a model file image. Returns the model, or NULL with a
 * message in `err`. */
static model *model_parse(const uint8_t *d, size_t size, const char *path, char *err, size_t errcap)
{
    model *m = NULL;
    if (size < TEXTGEN_HEADER_SIZE || memcmp(d, TEXTGEN_MAGIC, 8) != 0) {
        snprintf(err, errcap, "textgen: %s is not a textgen model (bad magic)", path);
        goto fail;
    }
    if (get_u32(d + 8) != TEXTGEN_FORMAT) {
        snprintf(err, errcap, "textgen: %s has model format %u, this plugin reads %u", path,
                 get_u32(d + 8), TEXTGEN_FORMAT);
        goto fail;
    }
    m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errcap, "textgen: out of memory");
        goto fail;
    }
    m->order = get_u32(d + 12);
    m->nctx = get_u32(d + 16);
    m->nent = get_u32(d + 20);
    if (m->order < 1 || m->order > TEXTGEN_MAX_ORDER || m->nctx < 1 ||
        m->nctx > TEXTGEN_MAX_CONTEXTS || m->nent > TEXTGEN_MAX_ENTRIES ||
        size != TEXTGEN_HEADER_SIZE + (size_t)m->nctx * TEXTGEN_CTX_SIZE +
                    (size_t)m->nent * TEXTGEN_ENTRY_SIZE) {
        snprintf(err, errcap, "textgen: %s: header does not match the file size %zu", path, size);
        goto fail;
    }
    m->ctx = malloc((size_t)m->nctx * sizeof *m->ctx);
    m->ent_byte = malloc(m->nent ? m->nent : 1);
    m->ent_count = malloc((size_t)(m->nent ? m->nent : 1) * sizeof *m->ent_count);
    if (!m->ctx || !m->ent_byte || !m->ent_count) {
        snprintf(err, errcap, "textgen: out of memory");
        goto fail;
    }
    const uint8_t *c = d + TEXTGEN_HEADER_SIZE;
    const uint8_t *e = c + (size_t)m->nctx * TEXTGEN_CTX_SIZE;
    for (uint32_t i = 0; i < m->nent; i++) {
        m->ent_byte[i] = e[i * TEXTGEN_ENTRY_SIZE];
        m->ent_count[i] = get_u32(e + i * TEXTGEN_ENTRY_SIZE + 1);
        if (m->ent_count[i] == 0) {
            snprintf(err, errcap, "textgen: %s: entry %u has a zero count", path, i);
            goto fail;
        }
    }
    unsigned len_seen = 0;
    for (uint32_t i = 0; i < m->nctx; i++) {
        const uint8_t *p = c + (size_t)i * TEXTGEN_CTX_SIZE;
        context *x = &m->ctx[i];
        x->key = get_u32(p);
        x->first = get_u32(p + 4);
        x->n = (uint16_t)(p[8] | p[9] << 8);
        x->len = p[10];
        int ordered = i == 0 || x->len > m->ctx[i - 1].len ||
                      (x->len == m->ctx[i - 1].len && x->key > m->ctx[i - 1].key);
        if (x->len > m->order || x->n == 0 || x->n > 256 || x->first > m->nent ||
            x->n > m->nent - x->first || !ordered || (x->len < 4 && x->key >> (8 * x->len) != 0)) {
            snprintf(err, errcap, "textgen: %s: context %u is malformed", path, i);
            goto fail;
        }
        while (len_seen <= x->len) {
            m->start[len_seen++] = i;
        }
    }
    while (len_seen <= m->order + 1) {
        m->start[len_seen++] = m->nctx;
    }
    if (m->ctx[0].len != 0) {
        snprintf(err, errcap, "textgen: %s: no empty context", path);
        goto fail;
    }
    return m;
fail:
    model_free(m);
    return NULL;
}

/* Find the directory of this plugin's file and the default model there. */
static int default_model_path(char *out, size_t cap)
{
    Dl_info info;
    if (!dladdr((void *)(uintptr_t)&deja_model_entry, &info) || !info.dli_fname) {
        return -1;
    }
    const char *slash = strrchr(info.dli_fname, '/');
    int n = slash ? snprintf(out, cap, "%.*s/textgen.model", (int)(slash - info.dli_fname),
                             info.dli_fname)
                  : snprintf(out, cap, "textgen.model");
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int tg_open(const char *arg, void **instance, deja_model_info *info, char *err,
                   size_t errcap)
{
    char path[4096];
    uint8_t *data = NULL;
    size_t size = 0;
    model *m = NULL;

    if (arg && arg[0]) {
        snprintf(path, sizeof path, "%s", arg);
    } else if (default_model_path(path, sizeof path) != 0) {
        snprintf(err, errcap, "textgen: cannot find textgen.model next to the plugin");
        return -1;
    }
    if (read_file(path, &data, &size, err, errcap) != 0) {
        return -1;
    }
    m = model_parse(data, size, path, err, errcap);
    if (m) {
        /* deja's own digest, through the host table: no xxHash to link. */
        info->host->digest(data, size, info->digest);
        info->digest_size = 16;
        *instance = m;
    }
    free(data);
    return m ? 0 : -1;
}

static void tg_close(void *instance)
{
    model_free(instance);
}

/* The longest context (at most `order` bytes) ending `hist` that the model
 * knows; the empty context always exists. */
static const context *lookup(const model *m, const uint8_t *hist, size_t hlen)
{
    unsigned k = hlen < m->order ? (unsigned)hlen : m->order;
    for (;; k--) {
        uint32_t key = 0;
        for (unsigned j = 0; j < k; j++) {
            key = key << 8 | hist[hlen - k + j];
        }
        uint32_t lo = m->start[k], hi = m->start[k + 1];
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (m->ctx[mid].key < key) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo < m->start[k + 1] && m->ctx[lo].key == key) {
            return &m->ctx[lo];
        }
        if (k == 0) {
            return &m->ctx[m->start[0]];
        }
    }
}

/* Candidates go most frequent first, ties by byte: a total order. */
static int cand_before(const cand *a, const cand *b)
{
    return a->count != b->count ? a->count > b->count : a->byte < b->byte;
}

#if TEXTGEN_VERSION >= 2
static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return cand_before(x, y) ? -1 : cand_before(y, x) ? 1 : 0;
}
#endif

static void sort_cands(cand *c, size_t n)
{
#if TEXTGEN_VERSION >= 2
    qsort(c, n, sizeof *c, cand_cmp);
#else
    for (size_t i = 1; i < n; i++) {
        cand v = c[i];
        size_t j = i;
        while (j > 0 && cand_before(&v, &c[j - 1])) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = v;
    }
#endif
}

/* Pick one of the `n` sorted candidates with the uniform draw `u`, and
 * write the log-probability the draw saw for every byte into logp[256]. */
static uint8_t sample(const cand *c, size_t n, double temperature, double u, float *logp)
{
    double w[256];
    double total = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        total += c[i].count;
    }
    for (size_t i = 0; i < n; i++) {
        double p = c[i].count / total;
#if TEXTGEN_VERSION >= 4
        w[i] = pow(p, temperature);
#else
        w[i] = pow(p, 1.0 / temperature);
#endif
        sum += w[i];
    }
    for (size_t b = 0; b < 256; b++) {
        logp[b] = -INFINITY;
    }
    for (size_t i = 0; i < n; i++) {
        logp[c[i].byte] = (float)log(w[i] / sum);
    }
    double target = u * sum, acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += w[i];
        if (target < acc) {
            return c[i].byte;
        }
    }
    return c[n - 1].byte;
}

/* Read and check the params; on a bad one, fail the ctx and return -1. */
static int read_params(deja_ctx *ctx, double *temperature, size_t *top_k, size_t *max_tokens)
{
    char msg[160];
    double t = deja_ctx_param_num(ctx, "temperature", 0.8);
    double k = deja_ctx_param_num(ctx, "top_k", 8);
    double mt = deja_ctx_param_num(ctx, "max_tokens", 80);
    if (!(t > 0) || !isfinite(t)) {
        snprintf(msg, sizeof msg, "textgen: temperature must be a number > 0, got %g", t);
        deja_ctx_fail(ctx, msg);
        return -1;
    }
    if (!(k >= 1) || k != floor(k) || !isfinite(k)) {
        snprintf(msg, sizeof msg, "textgen: top_k must be an integer >= 1, got %g", k);
        deja_ctx_fail(ctx, msg);
        return -1;
    }
    if (!(mt >= 0 && mt <= MAX_TOKENS_LIMIT) || mt != floor(mt)) {
        snprintf(msg, sizeof msg, "textgen: max_tokens must be an integer in 0..%d, got %g",
                 MAX_TOKENS_LIMIT, mt);
        deja_ctx_fail(ctx, msg);
        return -1;
    }
    *temperature = t;
    *top_k = k > 256 ? 256 : (size_t)k;
    *max_tokens = (size_t)mt;
    return 0;
}

static const deja_tensor *read_prompt(deja_ctx *ctx)
{
    const deja_tensor *prompt = deja_ctx_input(ctx, "prompt");
    if (!prompt || prompt->dtype != DEJA_UTF8 || (prompt->size > 0 && !prompt->data)) {
        deja_ctx_fail(ctx, "textgen: needs the input 'prompt' as utf8 text");
        return NULL;
    }
    return prompt;
}

static int tg_infer(void *instance, deja_ctx *ctx)
{
    const model *m = instance;
    int rc = -1;
    uint8_t *hist = NULL;
    double temperature;
    size_t top_k, max_tokens;
    const char *stop = NULL;
    size_t stop_len = 0;
    const deja_tensor *prompt;

#if TEXTGEN_VERSION >= 6
    if (!(prompt = read_prompt(ctx)) || read_params(ctx, &temperature, &top_k, &max_tokens)) {
        return -1;
    }
#else
    if (read_params(ctx, &temperature, &top_k, &max_tokens) || !(prompt = read_prompt(ctx))) {
        return -1;
    }
#endif
#if TEXTGEN_VERSION >= 3
    const deja_param *sp = deja_ctx_param(ctx, "stop");
    if (sp && sp->kind == DEJA_PARAM_STR && sp->str && sp->str[0]) {
        stop = sp->str;
        stop_len = strlen(stop);
        if (stop_len > MAX_STOP) {
            deja_ctx_fail(ctx, "textgen: stop is longer than 256 bytes");
            return -1;
        }
    }
#endif

    /* The history is the prompt's tail (all the context an n-gram needs)
     * followed by the completion. */
    size_t keep = prompt->size < m->order ? prompt->size : m->order;
    size_t cap = keep + max_tokens + 1;
#if TEXTGEN_VERSION >= 5
    hist = calloc(cap, 1);
#else
    hist = malloc(cap);
#endif
    if (!hist) {
        deja_ctx_fail(ctx, "textgen: out of memory");
        goto cleanup;
    }
    if (keep) {
        memcpy(hist, (const uint8_t *)prompt->data + prompt->size - keep, keep);
    }
    size_t hlen = keep;
    for (size_t i = 0; i < max_tokens; i++) {
        const context *c = lookup(m, hist, hlen);
        cand cands[256];
        size_t n = c->n;
        for (size_t j = 0; j < n; j++) {
            cands[j].byte = m->ent_byte[c->first + j];
            cands[j].count = m->ent_count[c->first + j];
        }
        sort_cands(cands, n);
        if (n > top_k) {
            n = top_k;
        }
        double u = deja_ctx_rng_f64(ctx, "sampling");
        float logp[256];
        hist[hlen++] = sample(cands, n, temperature, u, logp);
        /* Per step: what the sampler saw, then what it drew. Each call
         * returns at once unless the run keeps checkpoints. */
        uint64_t vocab[1] = {256};
        int32_t token = hist[hlen - 1];
        const deja_tensor lt = {"logits", DEJA_F32, 1, vocab, logp, sizeof logp};
        const deja_tensor tt = {"token", DEJA_I32, 0, NULL, &token, sizeof token};
        if (deja_ctx_checkpoint(ctx, &lt) == DEJA_CHECKPOINT_STOP ||
            deja_ctx_checkpoint(ctx, &tt) == DEJA_CHECKPOINT_STOP) {
            rc = 0;
            goto cleanup;
        }
        if (stop && hlen - keep >= stop_len &&
            memcmp(hist + hlen - stop_len, stop, stop_len) == 0) {
            break;
        }
    }
    if (deja_ctx_output_text(ctx, "completion", (const char *)hist + keep, hlen - keep) != 0) {
        deja_ctx_fail(ctx, "textgen: could not write the output 'completion'");
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(hist);
    return rc;
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION,
    "textgen",
    STR(TEXTGEN_VERSION),
    DEJA_MODEL_THREAD_SAFE,
    tg_open,
    tg_infer,
    tg_close,
};

/* The plugin's one export: its static description. */
const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
