/*
 * instrumented.c -- a program with its own model, its own inference loop
 * and its own RNG, recording every inference through deja's span API.
 *
 *   instrumented [STORE] [REQUESTS]
 *
 * STORE defaults to $DEJA_STORE; REQUESTS (default 5) is how many requests
 * to serve. The model is a tiny word-level Markov chain over a fixed table;
 * each request seeds a xorshift64 generator from the request number and a
 * base seed, walks the chain, and records the prompt, the params, the seed
 * it used (deja_span_seed "xorshift") and the generated text. Prints the
 * id of each recorded trace, one per line; exits 2 with one line on stderr
 * on trouble.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deja.h"

#define NWORDS 12
#define MAX_WORDS 24

static const char *const words[NWORDS] = {"the",  "fox",  "crow",   "sang", "ran",  "cheese",
                                          "fell", "away", "slowly", "and",  "tree", "."};

/* next[w] lists, for word w, the words that may follow it, with weights. */
static const uint8_t next_w[NWORDS][NWORDS] = {
    /* the    */ {0, 4, 4, 0, 0, 3, 0, 0, 0, 0, 3, 0},
    /* fox    */ {0, 0, 0, 1, 4, 0, 0, 1, 1, 2, 0, 1},
    /* crow   */ {0, 0, 0, 4, 0, 0, 1, 1, 0, 2, 0, 1},
    /* sang   */ {1, 0, 0, 0, 0, 0, 0, 2, 2, 3, 0, 3},
    /* ran    */ {0, 0, 0, 0, 0, 0, 0, 4, 2, 2, 0, 2},
    /* cheese */ {0, 0, 0, 0, 0, 0, 5, 0, 0, 2, 0, 2},
    /* fell   */ {2, 0, 0, 0, 0, 0, 0, 1, 3, 1, 0, 3},
    /* away   */ {0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0, 4},
    /* slowly */ {0, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 4},
    /* and    */ {6, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0},
    /* tree   */ {0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 4},
    /* .      */ {5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
};

static const char *const prompts[] = {"the fox", "the crow", "the cheese", "the tree"};

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static int word_index(const char *w, size_t len)
{
    for (int i = 0; i < NWORDS; i++) {
        if (strlen(words[i]) == len && memcmp(words[i], w, len) == 0) {
            return i;
        }
    }
    return 0;
}

/* Generate up to `max_words` words after `prompt` into `out` (cap bytes),
 * drawing from the xorshift64 state `seed`. Returns the length written. */
static size_t generate(const char *prompt, unsigned max_words, uint64_t seed, char *out, size_t cap)
{
    const char *last = strrchr(prompt, ' ');
    last = last ? last + 1 : prompt;
    int w = word_index(last, strlen(last));
    uint64_t s = seed ? seed : 1;
    size_t len = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < max_words; i++) {
        unsigned total = 0;
        for (int j = 0; j < NWORDS; j++) {
            total += next_w[w][j];
        }
        unsigned r = (unsigned)(xorshift64(&s) % total);
        int j = 0;
        while (r >= next_w[w][j]) {
            r -= next_w[w][j];
            j++;
        }
        w = j;
        int n = snprintf(out + len, cap - len, " %s", words[w]);
        if (n < 0 || (size_t)n >= cap - len) {
            break;
        }
        len += (size_t)n;
    }
    return len;
}

int main(int argc, char **argv)
{
    int rc = 2;
    deja_tracer *tracer = NULL;
    const char *store = argc > 1 ? argv[1] : getenv("DEJA_STORE");
    long requests = argc > 2 ? strtol(argv[2], NULL, 10) : 5;
    uint64_t base_seed = 0x1ce5eed5ull;

    if (argc > 3 || !store || !store[0]) {
        fprintf(stderr, "deja: instrumented: usage: instrumented [STORE] [REQUESTS] "
                        "(STORE defaults to $DEJA_STORE)\n");
        return 2;
    }
    if (requests < 0 || requests > 100000) {
        fprintf(stderr, "deja: instrumented: REQUESTS must be 0..100000\n");
        return 2;
    }
    deja_tracer_options opts = DEJA_TRACER_OPTIONS_INIT;
    if (deja_tracer_open(&tracer, store, &opts) != 0) {
        fprintf(stderr, "deja: instrumented: %s\n", deja_error_last());
        return 2;
    }
    for (long i = 0; i < requests; i++) {
        deja_span *span = NULL;
        char out[MAX_WORDS * 8 + 1];
        char id[DEJA_ID_STRLEN + 1];
        const char *prompt = prompts[i % (long)(sizeof prompts / sizeof prompts[0])];
        unsigned max_words = 8 + (unsigned)(i % 5);
        uint64_t seed = base_seed ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull);

        if (deja_span_begin(&span, tracer, "markov", "1.0") != 0 ||
            deja_span_add_text(span, DEJA_INPUT, "prompt", prompt, strlen(prompt)) != 0 ||
            deja_span_param_num(span, "max_words", max_words) != 0 ||
            deja_span_seed(span, "xorshift", seed) != 0) {
            fprintf(stderr, "deja: instrumented: %s\n", deja_error_last());
            deja_span_abort(span);
            goto cleanup;
        }
        size_t len = generate(prompt, max_words, seed, out, sizeof out);
        deja_id_format(deja_span_id(span), id);
        if (deja_span_add_text(span, DEJA_OUTPUT, "completion", out, len) != 0) {
            fprintf(stderr, "deja: instrumented: %s\n", deja_error_last());
            deja_span_abort(span);
            goto cleanup;
        }
        if (deja_span_end(span, DEJA_STATUS_OK, NULL) != 0) {
            fprintf(stderr, "deja: instrumented: %s\n", deja_error_last());
            goto cleanup;
        }
        printf("%s\n", id);
    }
    if (deja_tracer_flush(tracer) != 0) {
        fprintf(stderr, "deja: instrumented: %s\n", deja_error_last());
        goto cleanup;
    }
    rc = 0;
cleanup:
    deja_tracer_close(tracer);
    return rc;
}
