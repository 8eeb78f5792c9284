/*
 * bench/workloads.c -- the three workloads, generated deterministically.
 *
 * small:  1 KB text in, 1 KB text out, 3 params, 1 seed, one tag.
 * chat:   sessions of 10 turns; every prompt repeats a 2 KB system prompt
 *         and the whole conversation so far (the way chat APIs are called:
 *         a `system` field and the `messages` so far); output ~300 B.
 *         Sessions overlap: `live` of them are in flight at once and their
 *         turns interleave, as on a server with many users.
 * tensor: a 64 KB f32 input drawn from a few distinct images (the same
 *         image re-scored), a 4 KB f32 output.
 * Text is pseudo-English drawn from a Zipf-like vocabulary, so that it
 * compresses about as well as prose.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const char *const words[] = {
    "the",      "of",       "and",     "to",       "a",        "in",        "is",
    "that",     "for",      "it",      "as",       "was",      "with",      "be",
    "by",       "on",       "not",     "he",       "this",     "are",       "or",
    "his",      "from",     "at",      "which",    "but",      "have",      "an",
    "had",      "they",     "you",     "were",     "their",    "one",       "all",
    "we",       "can",      "her",     "has",      "there",    "been",      "if",
    "more",     "when",     "will",    "would",    "who",      "so",        "no",
    "model",    "data",     "output",  "input",    "request",  "answer",    "question",
    "time",     "system",   "user",    "value",    "number",   "result",    "order",
    "account",  "payment",  "refund",  "customer", "support",  "product",   "service",
    "delivery", "address",  "invoice", "problem",  "error",    "update",    "version",
    "please",   "thanks",   "help",    "need",     "want",     "should",    "could",
    "because",  "however",  "therefore", "example", "document", "report",   "summary",
    "important", "different", "following", "between", "another", "without", "through",
    "information", "available", "possible", "together", "question", "several", "children",
    "government", "development", "experience", "environment", "performance", "understand",
    "particular", "especially", "interesting", "relationship", "temperature", "probability",
};

#define NWORDS (sizeof(words) / sizeof(words[0]))

/* splitmix64: small, fast, deterministic. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1). */
static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* A word index skewed towards the start of the list (frequent words). */
static size_t zipf_word(uint64_t *s)
{
    const double u = rng_unit(s);
    size_t i = (size_t)((double)NWORDS * u * u * u);
    return i < NWORDS ? i : NWORDS - 1;
}

/* Fill exactly `len` bytes of `dst` with sentences. */
static void gen_text(char *dst, size_t len, uint64_t *s)
{
    size_t pos = 0;
    int cap = 1;
    unsigned in_sentence = 0;
    while (pos < len) {
        const char *w = words[zipf_word(s)];
        char tmp[32];
        size_t n = strlen(w);
        memcpy(tmp, w, n);
        if (cap) {
            tmp[0] = (char)(tmp[0] - 'a' + 'A');
            cap = 0;
        }
        in_sentence++;
        if (in_sentence > 6 && rng_next(s) % 8 == 0) {
            tmp[n++] = rng_next(s) % 5 == 0 ? '?' : '.';
            cap = 1;
            in_sentence = 0;
        } else if (rng_next(s) % 14 == 0) {
            tmp[n++] = ',';
        }
        tmp[n++] = ' ';
        if (n > len - pos) {
            n = len - pos;
        }
        memcpy(dst + pos, tmp, n);
        pos += n;
    }
}

/* The arena: every payload of a workload, freed together. */
typedef struct arena {
    void **p;
    size_t n;
    size_t cap;
} arena;

/* Allocate `size` bytes owned by the workload; NULL when out of memory. */
static void *arena_alloc(bench_workload *w, size_t size)
{
    arena *a = w->arena;
    void *mem = NULL;
    if (a->n == a->cap) {
        void **p = bench_array_grow(a->p, &a->cap, 1024, sizeof(*p));
        if (p == NULL) {
            return NULL;
        }
        a->p = p;
    }
    mem = malloc(size ? size : 1);
    if (mem != NULL) {
        a->p[a->n++] = mem;
    }
    return mem;
}

/* Exactly `len` bytes of generated text owned by the workload. */
static char *arena_text(bench_workload *w, size_t len, uint64_t *s)
{
    char *t = arena_alloc(w, len);
    if (t != NULL) {
        gen_text(t, len, s);
    }
    return t;
}

/* A copy of `prefix` followed by `v` in `width` zero-padded digits. */
static char *arena_strf(bench_workload *w, const char *prefix, int width, unsigned long v)
{
    char tmp[64];
    const int n = snprintf(tmp, sizeof(tmp), "%.32s%0*lu", prefix, width, v);
    char *out = arena_alloc(w, (size_t)n + 1);
    if (out != NULL) {
        memcpy(out, tmp, (size_t)n + 1);
    }
    return out;
}

/* Allocate the pool and the arena of a workload. */
static int workload_init(bench_workload *w, const char *name, size_t n)
{
    memset(w, 0, sizeof(*w));
    w->name = name;
    w->arena = calloc(1, sizeof(arena));
    w->recs = calloc(n ? n : 1, sizeof(*w->recs));
    w->nrecs = n;
    if (w->arena == NULL || w->recs == NULL) {
        bench_workload_free(w);
        return -1;
    }
    return 0;
}

/* Describe a one-dimensional tensor over `data`. */
static void tensor_set(bench_tensor *t, const char *name, deja_dtype dtype, const void *data,
                       size_t size)
{
    t->name = name;
    t->dtype = dtype;
    t->data = data;
    t->size = size;
    t->shape[0] = dtype == DEJA_F32 ? size / 4 : size;
}

/* Sum the payload bytes of the pool and find its largest stamped tensor. */
static void record_sizes(bench_workload *w)
{
    size_t i, j;
    for (i = 0; i < w->nrecs; i++) {
        const bench_record *r = &w->recs[i];
        const bench_tensor *st =
            r->stamp_side == DEJA_INPUT ? &r->in[r->stamp_index] : &r->out[r->stamp_index];
        for (j = 0; j < r->nin; j++) {
            w->raw_bytes += r->in[j].size;
        }
        for (j = 0; j < r->nout; j++) {
            w->raw_bytes += r->out[j].size;
        }
        if (st->size > w->stamp_max) {
            w->stamp_max = st->size;
        }
    }
}

/* A fixed 16-byte weights digest derived from `v`. */
static void digest_fill(uint8_t d[16], uint64_t v)
{
    uint64_t s = v;
    uint64_t a = rng_next(&s), b = rng_next(&s);
    memcpy(d, &a, 8);
    memcpy(d + 8, &b, 8);
}

/* Generate `n` small records. Returns 0 or -1 (out of memory). */
int bench_workload_small(bench_workload *out, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    size_t i;
    if (workload_init(out, "small", n) != 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        bench_record *r = &out->recs[i];
        static const double temps[] = {0.0, 0.2, 0.7, 1.0};
        char *prompt = arena_text(out, 1024, &s);
        char *completion = arena_text(out, 1024, &s);
        char *user = arena_strf(out, "u", 3, (unsigned long)(i % 1000));
        if (prompt == NULL || completion == NULL || user == NULL) {
            bench_workload_free(out);
            return -1;
        }
        r->model = "small-lm";
        r->version = "1.4.2";
        digest_fill(r->digest, 1);
        tensor_set(&r->in[0], "prompt", DEJA_UTF8, prompt, 1024);
        r->nin = 1;
        tensor_set(&r->out[0], "completion", DEJA_UTF8, completion, 1024);
        r->nout = 1;
        r->params[0] = (bench_param){"temperature", DEJA_PARAM_NUM, temps[i % 4], NULL};
        r->params[1] = (bench_param){"top_p", DEJA_PARAM_NUM, 0.9, NULL};
        r->params[2] = (bench_param){"max_tokens", DEJA_PARAM_NUM, 256, NULL};
        r->nparams = 3;
        r->seed = rng_next(&s) >> 1; /* JSON readers choke on u64 above 2^63 */
        r->tags[0] = (deja_tag){"user", user};
        r->ntags = 1;
        r->stamp_side = DEJA_INPUT;
        r->stamp_index = 0;
    }
    record_sizes(out);
    return 0;
}

#define CHAT_TURNS 10

/* Generate `sessions` chat sessions of 10 turns, `live` sessions at a time
 * with their turns interleaved. Returns 0 or -1. */
int bench_workload_chat(bench_workload *out, size_t sessions, size_t live, uint64_t seed)
{
    uint64_t s = seed;
    size_t wave, k = 0;
    char *system = NULL;
    char *convo = NULL;
    size_t *convo_len = NULL;
    const size_t convo_cap = CHAT_TURNS * 600 + 64;
    int rc = -1;
    if (live == 0) {
        live = 1;
    }
    if (workload_init(out, "chat", sessions * CHAT_TURNS) != 0) {
        return -1;
    }
    system = arena_text(out, 2048, &s);
    convo = malloc(live * convo_cap);
    convo_len = calloc(live, sizeof(*convo_len));
    if (system == NULL || convo == NULL || convo_len == NULL) {
        goto cleanup;
    }
    for (wave = 0; wave < sessions; wave += live) {
        const size_t nlive = sessions - wave < live ? sessions - wave : live;
        size_t turn, j;
        memset(convo_len, 0, live * sizeof(*convo_len));
        for (turn = 0; turn < CHAT_TURNS; turn++) {
            for (j = 0; j < nlive; j++) {
                bench_record *r = &out->recs[k++];
                char *c = convo + j * convo_cap;
                const size_t ulen = 120 + rng_next(&s) % 130;
                const size_t alen = 280 + rng_next(&s) % 41;
                char *messages, *answer, *sess;
                memcpy(c + convo_len[j], "user: ", 6);
                gen_text(c + convo_len[j] + 6, ulen, &s);
                c[convo_len[j] + 6 + ulen] = '\n';
                convo_len[j] += 7 + ulen;
                messages = arena_alloc(out, convo_len[j]);
                answer = arena_text(out, alen, &s);
                sess = arena_strf(out, "c", 5, (unsigned long)(wave + j));
                if (messages == NULL || answer == NULL || sess == NULL) {
                    goto cleanup;
                }
                memcpy(messages, c, convo_len[j]);
                r->model = "chat-lm";
                r->version = "2.0.1";
                digest_fill(r->digest, 2);
                tensor_set(&r->in[0], "system", DEJA_UTF8, system, 2048);
                tensor_set(&r->in[1], "messages", DEJA_UTF8, messages, convo_len[j]);
                r->nin = 2;
                tensor_set(&r->out[0], "completion", DEJA_UTF8, answer, alen);
                r->nout = 1;
                r->params[0] = (bench_param){"temperature", DEJA_PARAM_NUM, 0.7, NULL};
                r->params[1] = (bench_param){"top_p", DEJA_PARAM_NUM, 0.95, NULL};
                r->params[2] = (bench_param){"max_tokens", DEJA_PARAM_NUM, 512, NULL};
                r->nparams = 3;
                r->seed = rng_next(&s) >> 1; /* JSON readers choke on u64 above 2^63 */
                r->tags[0] = (deja_tag){"session", sess};
                r->ntags = 1;
                r->stamp_side = DEJA_INPUT;
                r->stamp_index = 1;
                r->stamp_tail = 1;
                /* The reply joins the conversation for the next turn. */
                memcpy(c + convo_len[j], "assistant: ", 11);
                memcpy(c + convo_len[j] + 11, answer, alen);
                c[convo_len[j] + 11 + alen] = '\n';
                convo_len[j] += 12 + alen;
            }
        }
    }
    record_sizes(out);
    rc = 0;
cleanup:
    free(convo);
    free(convo_len);
    if (rc != 0) {
        bench_workload_free(out);
    }
    return rc;
}

#define IMAGE_FLOATS (64 * 1024 / 4)
#define LOGITS 1024

/* An image-like input: a smooth pattern quantized to 8 bits and scaled to
 * [0, 1], as a normalized picture is. */
static void gen_image(float *px, uint64_t *s)
{
    const double fx = 0.02 + 0.1 * rng_unit(s), fy = 0.02 + 0.1 * rng_unit(s);
    const double phase = 6.28 * rng_unit(s);
    size_t i;
    for (i = 0; i < IMAGE_FLOATS; i++) {
        const double x = (double)(i % 128), y = (double)(i / 128);
        double v = 0.5 + 0.45 * sin(x * fx + y * fy + phase) + 0.05 * (rng_unit(s) - 0.5);
        long q = lround(v * 255.0);
        q = q < 0 ? 0 : q > 255 ? 255 : q;
        px[i] = (float)q / 255.0f;
    }
}

/* Generate `n` tensor records over `images` distinct inputs. Returns 0 or
 * -1. */
int bench_workload_tensor(bench_workload *out, size_t n, size_t images, uint64_t seed)
{
    uint64_t s = seed;
    float **img = NULL;
    size_t i, j;
    int rc = -1;
    if (images == 0) {
        images = 1;
    }
    if (workload_init(out, "tensor", n) != 0) {
        return -1;
    }
    img = calloc(images, sizeof(*img));
    if (img == NULL) {
        goto cleanup;
    }
    for (i = 0; i < images; i++) {
        img[i] = arena_alloc(out, IMAGE_FLOATS * 4);
        if (img[i] == NULL) {
            goto cleanup;
        }
        gen_image(img[i], &s);
    }
    for (i = 0; i < n; i++) {
        bench_record *r = &out->recs[i];
        float *logits = arena_alloc(out, LOGITS * 4);
        char *cam = arena_strf(out, "cam", 2, (unsigned long)(i % 16));
        if (logits == NULL || cam == NULL) {
            goto cleanup;
        }
        for (j = 0; j < LOGITS; j++) {
            logits[j] = (float)(8.0 * (rng_unit(&s) - 0.5));
        }
        r->model = "vision-net";
        r->version = "3.2.0";
        digest_fill(r->digest, 3);
        /* Skewed reuse: a few images are re-scored much more often. */
        {
            const double u = rng_unit(&s);
            tensor_set(&r->in[0], "image", DEJA_F32, img[(size_t)((double)images * u * u)],
                       IMAGE_FLOATS * 4);
        }
        r->nin = 1;
        tensor_set(&r->out[0], "logits", DEJA_F32, logits, LOGITS * 4);
        r->nout = 1;
        r->params[0] = (bench_param){"threshold", DEJA_PARAM_NUM, 0.5, NULL};
        r->params[1] = (bench_param){"top_k", DEJA_PARAM_NUM, 5, NULL};
        r->params[2] = (bench_param){"resize", DEJA_PARAM_STR, 0, "bilinear"};
        r->nparams = 3;
        r->seed = rng_next(&s) >> 1; /* JSON readers choke on u64 above 2^63 */
        r->tags[0] = (deja_tag){"camera", cam};
        r->ntags = 1;
        r->stamp_side = DEJA_OUTPUT;
        r->stamp_index = 0;
    }
    record_sizes(out);
    rc = 0;
cleanup:
    free(img);
    if (rc != 0) {
        bench_workload_free(out);
    }
    return rc;
}

/* Free a workload's pool and payloads. Accepts a zeroed workload. */
void bench_workload_free(bench_workload *w)
{
    arena *a = w->arena;
    size_t i;
    if (a != NULL) {
        for (i = 0; i < a->n; i++) {
            free(a->p[i]);
        }
        free(a->p);
        free(a);
    }
    free(w->recs);
    memset(w, 0, sizeof(*w));
}

/* Copy the record, its stamped tensor into `scratch`, and write `seq` in
 * hex (text) or as raw bits (other dtypes) at its start or tail. */
void bench_record_stamp(bench_record *out, const bench_record *in, uint8_t *scratch,
                        uint64_t seq)
{
    bench_tensor *t;
    *out = *in;
    t = out->stamp_side == DEJA_INPUT ? &out->in[out->stamp_index]
                                      : &out->out[out->stamp_index];
    memcpy(scratch, t->data, t->size);
    if (t->size >= 16) {
        uint8_t *at = out->stamp_tail ? scratch + t->size - 16 : scratch;
        if (t->dtype == DEJA_UTF8) {
            static const char hex[] = "0123456789abcdef";
            int i;
            for (i = 0; i < 16; i++) {
                at[i] = (uint8_t)hex[(seq >> (60 - 4 * i)) & 15];
            }
        } else {
            memcpy(at, &seq, 8);
        }
    }
    t->data = scratch;
}
