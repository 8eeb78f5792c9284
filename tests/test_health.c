/*
 * tests/test_health.c -- health per group: the quantile sketch against
 * exact quantiles, deja_health_compute against counts made by hand, and
 * `deja stats --by` through the real binary.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "cli_harness.h"
#include "watch/watch_internal.h"
#include "watch_harness.h"

#define HOUR_NS 3600000000000LL
#define T0 1764000000000000000LL /* 2025-11-24T16:00:00Z, on the hour */

/* Exact quantile at rank floor(q * (n - 1)) of sorted values. */
static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Assert |got - want| <= 1% of |want| (the sketch's bound). */
static void assert_within_alpha(double got, double want)
{
    if (!(fabs(got - want) <= DEJA__SKETCH_ALPHA * fabs(want) + 1e-12)) {
        fprintf(stderr, "got %.9g, want %.9g\n", got, want);
        fail();
    }
}

static void test_health__sketch_quantiles_within_one_percent(void **state)
{
    enum { N = 20000 };
    static double v[N];
    deja__sketch s = {0}, a = {0}, b = {0};
    uint64_t seed = 42;
    const double qs[] = {0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999};

    (void)state;
    for (size_t i = 0; i < N; i++) {
        /* Log-uniform over 1 us .. 10 s, a few zeros and negatives. */
        const double u = (double)(deja__watch_rand(&seed) >> 11) / 9007199254740992.0;

        v[i] = i % 97 == 0 ? 0.0 : exp(log(1e3) + u * (log(1e10) - log(1e3)));
        if (i % 89 == 0)
            v[i] = -v[i];
        assert_int_equal(deja__sketch_add(&s, v[i]), 0);
        assert_int_equal(deja__sketch_add(i % 2 ? &a : &b, v[i]), 0);
    }
    assert_int_equal(deja__sketch_add(&s, NAN), 0); /* ignored */
    assert_int_equal(deja__sketch_merge(&a, &b), 0);
    qsort(v, N, sizeof v[0], cmp_double);
    assert_true(s.count == N && a.count == N);
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        const double want = v[(size_t)floor(qs[k] * (N - 1))];

        assert_within_alpha(deja__sketch_quantile(&s, qs[k]), want);
        assert_within_alpha(deja__sketch_quantile(&a, qs[k]), want);
    }
    assert_true(deja__sketch_quantile(&s, 0.0) == v[0]);
    assert_true(deja__sketch_quantile(&s, 1.0) == v[N - 1]);
    deja__sketch_free(&s);
    deja__sketch_free(&a);
    deja__sketch_free(&b);
    assert_true(isnan(deja__sketch_quantile(&s, 0.5)));
}

/* A store of: v1 x 200 over hours 0..1 (durations 1..200 ms, every 10th an
 * error, every 20th tagged invalid), v2 x 100 in hour 2 (durations 5 ms
 * but one of 500 ms); tag "user" u0/u1 alternating on v1. */
static const char *make_store(char *root)
{
    const char *path = cli_tmp_path(root, "health.store");
    deja_store *store = NULL;
    wtrace w;

    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    for (int i = 0; i < 200; i++) {
        wtrace_init(&w, "clf", "1", T0 + (int64_t)i * (HOUR_NS / 100), (int64_t)(i + 1) * 1000000);
        if (i % 10 == 9)
            wtrace_error(&w, "boom");
        wtrace_tag(&w, "user", i % 2 ? "u1" : "u0");
        if (i % 20 == 0)
            wtrace_tag(&w, DEJA_INVALID_TAG, "range");
        wtrace_text(&w, DEJA_INPUT, "prompt", "hello");
        wtrace_put(store, &w);
    }
    for (int i = 0; i < 100; i++) {
        wtrace_init(&w, "clf", "2", T0 + 2 * HOUR_NS + (int64_t)i * (HOUR_NS / 200),
                    i == 50 ? 500000000 : 5000000);
        wtrace_text(&w, DEJA_OUTPUT, "label", "cat");
        wtrace_put(store, &w);
    }
    deja_store_close(store);
    return path;
}

static void check_by_version(const char *path)
{
    deja_health_options o = DEJA_HEALTH_OPTIONS_INIT;
    deja_store *store = NULL;
    deja_health *h = NULL;
    uint64_t invalid = 0;

    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_health_compute(store, NULL, &o, &h), 0);
    assert_int_equal(h->nrows, 2);
    assert_int_equal(h->traces, 300);
    /* Newest group first. */
    assert_string_equal(h->rows[0].group, "clf@2");
    assert_string_equal(h->rows[1].group, "clf@1");
    assert_int_equal(h->rows[1].traces, 200);
    assert_int_equal(h->rows[1].errors, 20);
    assert_int_equal(h->rows[1].invalid, 10);
    assert_int_equal(h->rows[1].input_bytes, 200 * 5);
    assert_int_equal(h->rows[1].output_bytes, 0);
    /* Durations 1..200 ms: ranks floor(q * 199). */
    assert_within_alpha(h->rows[1].latency_p50_ns, 100e6);
    assert_within_alpha(h->rows[1].latency_p95_ns, 190e6);
    assert_within_alpha(h->rows[1].latency_p99_ns, 198e6);
    assert_true(h->rows[1].latency_max_ns == 200e6);
    assert_int_equal(h->rows[0].traces, 100);
    assert_int_equal(h->rows[0].errors, 0);
    assert_int_equal(h->rows[0].output_bytes, 300);
    assert_within_alpha(h->rows[0].latency_p99_ns, 5e6);
    assert_true(h->rows[0].latency_max_ns == 500e6);
    deja_health_free(h);

    /* By tag, hourly, with a filter. */
    o.by = DEJA_GROUP_TAG;
    o.tag_key = "user";
    o.every_ns = HOUR_NS;
    {
        deja_filter f = DEJA_FILTER_INIT;

        f.status = DEJA_STATUS_OK;
        assert_int_equal(deja_health_compute(store, &f, &o, &h), 0);
    }
    /* "-" (v2, hour 2), u1 and u0 in hours 0 and 1. */
    assert_int_equal(h->nrows, 5);
    assert_string_equal(h->rows[0].group, "-");
    assert_true(h->rows[0].bucket_ns == T0 + 2 * HOUR_NS);
    for (size_t i = 1; i < 5; i++) {
        assert_true(h->rows[i].bucket_ns == T0 + (int64_t)((i - 1) % 2) * HOUR_NS);
        assert_int_equal(h->rows[i].errors, 0);
    }
    /* u0 (even i, newest ok trace i = 198) before u1 (odd i: 199 is an
     * error); in hour 0, u1 has 50 odd i less 10 errors (i % 10 == 9). */
    assert_string_equal(h->rows[1].group, "u0");
    assert_int_equal(h->rows[1].traces, 50);
    assert_string_equal(h->rows[3].group, "u1");
    assert_int_equal(h->rows[3].traces, 40);
    deja_health_free(h);

    o.tag_key = NULL;
    assert_int_equal(deja_health_compute(store, NULL, &o, &h), DEJA_EINVAL);
    assert_null(h);
    assert_int_equal(deja_store_invalid_count(store, &invalid), 0);
    assert_int_equal(invalid, 10);
    deja_store_close(store);
}

static void test_health__groups_and_buckets(void **state)
{
    char root[] = "/tmp/deja-health-XXXXXX";
    const char *path;

    (void)state;
    assert_int_equal(cli_group_begin(root), 0);
    path = make_store(root);
    /* The same figures on one thread and on several (merged states). */
    setenv("DEJA_WATCH_THREADS", "1", 1);
    check_by_version(path);
    setenv("DEJA_WATCH_THREADS", "3", 1);
    check_by_version(path);
    unsetenv("DEJA_WATCH_THREADS");
    cli_rm_rf(root);
}

static void test_health__cli_stats_by(void **state)
{
    char root[] = "/tmp/deja-health-XXXXXX";
    const char *path;
    cli_run r;
    json_t *j;
    json_error_t err;

    (void)state;
    assert_int_equal(cli_group_begin(root), 0);
    path = make_store(root);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "stats", "--by", "version", NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "clf@1"));
    assert_non_null(strstr(r.out, "10.0%"));
    assert_non_null(strstr(r.out, "not recorded (whole store)"));
    assert_string_equal(r.err, "");
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "stats", "--by", "tag:user",
                              "--every", "1h", "--version", "1", "--json", NULL),
                     0);
    assert_int_equal(r.status, 0);
    j = json_loads(r.out, 0, &err);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "rows")), 4);
    assert_int_equal(json_integer_value(json_object_get(j, "traces")), 200);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "rows"), 0), "bucket")),
        "2025-11-24T16:00:00.000000000Z"); /* RFC 3339 with nanoseconds, as every JSON time */
    json_decref(j);
    cli_run_free(&r);

    /* The plain form is unchanged but for the invalid line. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "stats", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "invalid                10 traces tagged deja.invalid"));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "stats", "--by", "colour", NULL),
                     0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "deja: --by: expected model, version or tag:KEY"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "stats", "--by", "model", "--every",
                              "soon", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--every");
    cli_run_free(&r);
    cli_rm_rf(root);
}

/* The line of `text` that starts with `prefix`, or NULL. */
static const char *line_starting(const char *text, const char *prefix)
{
    for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, prefix, strlen(prefix)) == 0)
            return p;
    return NULL;
}

/* The table of `stats --by` is as wide as the group names it prints, which
 * are escaped for the terminal (a tab becomes \t, two columns) and may hold
 * UTF-8 (one column for two bytes): columns stay aligned, nothing is cut. */
static void test_health__cli_stats_by_escaped_width(void **state)
{
    char root[] = "/tmp/deja-health-XXXXXX";
    const char *path;
    deja_store *store = NULL;
    cli_run r;
    wtrace w;

    (void)state;
    assert_int_equal(cli_group_begin(root), 0);
    path = cli_tmp_path(root, "names.store");
    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    wtrace_init(&w, "a\tb", "1", T0, 1000000);
    wtrace_put(store, &w);
    for (int i = 0; i < 2; i++) {
        wtrace_init(&w, "\xc3\xa9", "2", T0 + HOUR_NS + i, 1000000);
        wtrace_put(store, &w);
    }
    deja_store_close(store);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "stats", "--by", "version", NULL),
                     0);
    assert_int_equal(r.status, 0);
    /* "a\tb@1" takes 6 columns: the group column is 6 wide. */
    assert_non_null(line_starting(r.out, "group    traces "));
    assert_non_null(line_starting(r.out, "a\\tb@1        1 "));
    assert_non_null(line_starting(r.out, "\xc3\xa9@2           2 "));
    cli_run_free(&r);
    cli_rm_rf(root);
}

/* Record `ok` ok spans and `err` failed ones of `model`@`version`. */
static void spans(deja_tracer *tr, const char *model, const char *version, int ok, int err)
{
    for (int i = 0; i < ok + err; i++) {
        deja_span *sp = NULL;

        assert_int_equal(deja_span_begin(&sp, tr, model, version), 0);
        assert_int_equal(deja_span_add_text(sp, DEJA_OUTPUT, "answer", "yes", 3), 0);
        assert_int_equal(deja_span_end(sp, i < ok ? DEJA_STATUS_OK : DEJA_STATUS_ERROR,
                                       i < ok ? NULL : "boom"),
                         0);
    }
}

/* What the tracers never recorded shows per model version: sampled out
 * by a policy's rate for one version, and by the flat sample rate. */
static void test_health__lost_per_group(void **state)
{
    char root[] = "/tmp/deja-health-XXXXXX";
    char path[4200];
    const deja_sample_rate rates[1] = {{"m", "2", 0.0}};
    deja_sampling policy = DEJA_SAMPLING_INIT;
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    deja_health_options ho = DEJA_HEALTH_OPTIONS_INIT;
    deja_tracer *tr = NULL;
    deja_store *store = NULL;
    deja_health *h = NULL;
    cli_run r;
    json_t *j;
    json_error_t err;

    (void)state;
    assert_int_equal(cli_group_begin(root), 0);
    snprintf(path, sizeof path, "%s/deja.store", root);
    /* m@1 kept, m@2 sampled out but for its errors. */
    policy.rates = rates;
    policy.nrates = 1;
    assert_int_equal(deja_tracer_open(&tr, path, NULL), 0);
    assert_int_equal(deja_tracer_sampling_set(tr, &policy), 0);
    spans(tr, "m", "1", 4, 0);
    spans(tr, "m", "2", 7, 1);
    assert_int_equal(deja_tracer_flush(tr), 0);
    deja_tracer_close(tr);
    /* n@1 under the flat rate 0: only its error is kept. */
    o.sample_rate = 0.0;
    assert_int_equal(deja_tracer_open(&tr, path, &o), 0);
    spans(tr, "n", "1", 5, 1);
    spans(tr, "m", "2", 2, 0);
    deja_tracer_close(tr);

    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_health_compute(store, NULL, &ho, &h), 0);
    assert_int_equal(h->sampled_out, 14);
    assert_int_equal(h->nrows, 3);
    for (size_t i = 0; i < h->nrows; i++) {
        const deja_health_row *row = &h->rows[i];
        const uint64_t want = strcmp(row->group, "m@1") == 0   ? 0
                              : strcmp(row->group, "m@2") == 0 ? 9
                                                               : 5;

        assert_int_equal(row->sampled_out, want);
        assert_int_equal(row->dropped, 0);
    }
    deja_health_free(h);
    ho.by = DEJA_GROUP_MODEL;
    assert_int_equal(deja_health_compute(store, NULL, &ho, &h), 0);
    assert_int_equal(h->nrows, 2);
    for (size_t i = 0; i < h->nrows; i++)
        assert_int_equal(h->rows[i].sampled_out, strcmp(h->rows[i].group, "m") == 0 ? 9 : 5);
    deja_health_free(h);
    deja_store_close(store);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "stats", "--by", "version",
                              "--model", "m", "--json", NULL),
                     0);
    assert_int_equal(r.status, 0);
    j = json_loads(r.out, 0, &err);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "rows")), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *row = json_array_get(json_object_get(j, "rows"), i);
        const char *g = json_string_value(json_object_get(row, "group"));

        assert_int_equal(json_integer_value(json_object_get(row, "sampled_out")),
                         strcmp(g, "m@2") == 0 ? 9 : 0);
        assert_int_equal(json_integer_value(json_object_get(row, "dropped")), 0);
    }
    json_decref(j);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "stats", "--by", "model", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "sampled  dropped"));
    cli_run_free(&r);
    cli_rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health__sketch_quantiles_within_one_percent),
        cmocka_unit_test(test_health__groups_and_buckets),
        cmocka_unit_test(test_health__cli_stats_by),
        cmocka_unit_test(test_health__cli_stats_by_escaped_width),
        cmocka_unit_test(test_health__lost_per_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
