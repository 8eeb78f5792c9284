/*
 * tests/test_sampler.c -- sampling that keeps what matters: errors, rule
 * violations, slow traces, the first traces of each version, a rate per
 * model, and dedup with repeat counts; every decision counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "deja.h"

static char root[] = "/tmp/deja-test-sampler-XXXXXX";

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static const char *fresh(const char *name)
{
    static char path[256];

    snprintf(path, sizeof path, "%s/%s", root, name);
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return path;
}

/* What one span carries. */
typedef struct req {
    const char *model, *version;
    const char *prompt;
    uint64_t seed;
    deja_status status;
    const char *tag; /* a tag key, or NULL */
    int slow;        /* sleep ~3 ms inside the span */
} req;

static void span(deja_tracer *t, const req *r, deja_id *id)
{
    const struct timespec nap = {0, 3 * 1000 * 1000};
    deja_span *s = NULL;

    assert_int_equal(deja_span_begin(&s, t, r->model, r->version), 0);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", r->prompt, strlen(r->prompt)), 0);
    deja_span_param_num(s, "temperature", 0.5);
    deja_span_seed(s, "main", r->seed);
    if (r->tag != NULL)
        deja_span_tag(s, r->tag, "x");
    if (r->slow)
        nanosleep(&nap, NULL);
    if (id != NULL)
        *id = *deja_span_id(s);
    assert_int_equal(deja_span_end(s, r->status, r->status ? "failed" : NULL), 0);
}

typedef struct counters {
    const char *names[16];
    uint64_t values[16];
    size_t n;
} counters;

static int counter_cb(const char *name, uint64_t value, void *payload)
{
    counters *c = payload;

    if (c->n < 16) {
        c->names[c->n] = strdup(name);
        c->values[c->n++] = value;
    }
    return 0;
}

/* The store counter `name` (0 when absent). */
static uint64_t counter(deja_store *s, const char *name)
{
    counters c = {{0}, {0}, 0};
    uint64_t v = 0;

    assert_int_equal(deja_store_counters(s, counter_cb, &c), 0);
    for (size_t i = 0; i < c.n; i++) {
        if (strcmp(c.names[i], name) == 0)
            v = c.values[i];
        free((char *)c.names[i]);
    }
    return v;
}

static int count_cb(const deja_trace *t, void *payload)
{
    (void)t;
    (*(size_t *)payload)++;
    return 0;
}

static size_t count_model(deja_store *s, const char *model)
{
    deja_filter f = DEJA_FILTER_INIT;
    size_t n = 0;

    f.model = model;
    assert_int_equal(deja_store_list(s, &f, count_cb, NULL, &n), 0);
    return n;
}

/* Rate 0 for the busy model, 1 for the rare one: errors, rule violations,
 * slow traces and the first 5 of each version are kept all the same; the
 * counters add up to every span ended. */
static void test_sampler__keeps_what_matters(void **state)
{
    const char *path = fresh("keeps");
    const deja_sample_rate rates[] = {{"rare", NULL, 1.0}, {"busy", "2", 0.0}};
    deja_sampling p = DEJA_SAMPLING_INIT;
    deja_tracer *t = NULL;
    deja_store *s = NULL;
    char prompt[64];
    size_t busy1 = 0;

    (void)state;
    p.rate = 0.0;
    p.rates = rates;
    p.nrates = 2;
    p.keep_slower_ns = 2 * 1000 * 1000;
    p.keep_first = 5;
    assert_int_equal(deja_tracer_open(&t, path, NULL), 0);
    assert_int_equal(deja_tracer_sampling_set(t, &p), 0);
    assert_int_equal(deja_tracer_sampling_set(t, &p), DEJA_EINVAL); /* once */
    for (int i = 0; i < 100; i++) {
        req r = {"busy", i < 50 ? "1" : "2", prompt, (uint64_t)i, DEJA_STATUS_OK, NULL, 0};

        snprintf(prompt, sizeof prompt, "busy %d", i);
        if (i % 10 == 3)
            r.status = DEJA_STATUS_ERROR;
        if (i % 10 == 5)
            r.tag = "deja.invalid";
        if (i == 77)
            r.slow = 1;
        span(t, &r, NULL);
    }
    for (int i = 0; i < 7; i++) {
        req r = {"rare", "1", prompt, (uint64_t)i, DEJA_STATUS_OK, NULL, 0};

        snprintf(prompt, sizeof prompt, "rare %d", i);
        span(t, &r, NULL);
    }
    deja_tracer_close(t);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    /* busy: 10 errors + 10 invalid + 1 slow + the first 5 of each version
     * (none of them an error or invalid: i = 0,1,2,4,6 and 50,51,52,54,56). */
    busy1 = count_model(s, "busy");
    assert_int_equal(busy1, 10 + 10 + 1 + 5 + 5);
    assert_int_equal(count_model(s, "rare"), 7);
    assert_int_equal(counter(s, "sample.kept_error"), 10);
    assert_int_equal(counter(s, "sample.kept_invalid"), 10);
    assert_int_equal(counter(s, "sample.kept_slow"), 1);
    assert_int_equal(counter(s, "sample.kept_first"), 10 + 5);
    assert_int_equal(counter(s, "sample.kept_rate"), 2);
    assert_int_equal(counter(s, "sampled_out"), 100 - busy1);
    deja_store_close(s);
}

/* Dedup: identical requests are recorded once, with a repeat count; a
 * different seed or prompt is another request. */
static void test_sampler__dedup(void **state)
{
    const char *path = fresh("dedup");
    deja_sampling p = DEJA_SAMPLING_INIT;
    deja_tracer *t = NULL;
    deja_store *s = NULL;
    deja_id first, other;
    uint64_t repeats = 0;

    (void)state;
    p.dedup = 1;
    assert_int_equal(deja_tracer_open(&t, path, NULL), 0);
    assert_int_equal(deja_tracer_sampling_set(t, &p), 0);
    {
        const req same = {"m", "1", "the same question", 7, DEJA_STATUS_OK, NULL, 0};
        const req seed = {"m", "1", "the same question", 8, DEJA_STATUS_OK, NULL, 0};
        const req failed = {"m", "1", "the same question", 7, DEJA_STATUS_ERROR, NULL, 0};

        span(t, &same, &first);
        for (int i = 0; i < 9; i++)
            span(t, &same, NULL);
        span(t, &seed, &other);
        span(t, &failed, NULL); /* errors are always recorded */
    }
    deja_tracer_close(t);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(count_model(s, "m"), 3);
    assert_int_equal(deja_trace_repeats(s, &first, &repeats), 0);
    assert_int_equal(repeats, 9);
    assert_int_equal(deja_trace_repeats(s, &other, &repeats), 0);
    assert_int_equal(repeats, 0);
    assert_int_equal(counter(s, "sample.deduplicated"), 9);
    deja_store_close(s);
}

/* Bad policies are refused. */
static void test_sampler__refusals(void **state)
{
    const char *path = fresh("refuse");
    const deja_sample_rate bad[] = {{"m", NULL, 1.5}};
    deja_sampling p = DEJA_SAMPLING_INIT;
    deja_tracer *t = NULL;

    (void)state;
    assert_int_equal(deja_tracer_open(&t, path, NULL), 0);
    p.rate = -0.1;
    assert_int_equal(deja_tracer_sampling_set(t, &p), DEJA_EINVAL);
    p.rate = 1.0;
    p.rates = bad;
    p.nrates = 1;
    assert_int_equal(deja_tracer_sampling_set(t, &p), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "rate 1"));
    p.nrates = 0;
    p.version = 99;
    assert_int_equal(deja_tracer_sampling_set(t, &p), DEJA_EVERSION);
    assert_int_equal(deja_tracer_sampling_set(NULL, &p), DEJA_EINVAL);
    deja_tracer_close(t);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(root) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sampler__keeps_what_matters),
        cmocka_unit_test(test_sampler__dedup),
        cmocka_unit_test(test_sampler__refusals),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
