/*
 * tests/test_drift.c -- drift: each statistic against values computed
 * independently (scipy 1.10: ks_2samp for D, scipy.special.kolmogorov
 * for its asymptotic p-value, chi2_contingency(correction=False), and PSI
 * by its formula in numpy; the script is in the comments), deja_drift_compute on a store whose shifts are known,
 * and `deja drift` through the binary.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "cli_harness.h"
#include "watch/watch_internal.h"
#include "watch_harness.h"

#define T0 1764000000000000000LL
#define SEC 1000000000LL

/* |got - want| <= rel * |want|. */
static void assert_close(double got, double want, double rel)
{
    if (!(fabs(got - want) <= rel * fabs(want))) {
        fprintf(stderr, "got %.17g, want %.17g\n", got, want);
        fail();
    }
}

/* numpy:
 *   n = 1000; base = [(i + .5) / n ...]; cur = [((i + .5) / n) ** 2 ...]
 *   edges = base[floor(k (n - 1) / 10)], k = 1..9; bins (e[i-1], e[i]]
 *   psi = sum((q - p) log(q / p)) over shares (floor 1e-4)  -> 0.3791982730360824
 *   ks_2samp(base, cur) -> D 0.25; kolmogorov(sqrt(500) * 0.25) -> 1.4375563478121876e-27
 *   kolmogorov(1.0) -> 0.26999967167735456, kolmogorov(0.5) -> 0.9639452436648751
 *   chi2_contingency([[50,30,20],[30,30,40]], correction=False)
 *     -> 11.666666666666668, p 0.0029282996948181853 */
static void test_drift__statistics_known_values(void **state)
{
    enum { N = 1000 };
    static double base[N], cur[N];
    double edges[16];
    uint64_t bc[10] = {0}, cc[10] = {0};
    const uint64_t want_cc[10] = {315, 132, 100, 85, 75, 67, 62, 58, 54, 52};
    const double a[4] = {1, 2, 3, 4}, b[4] = {3, 4, 5, 6};
    const uint64_t l1[3] = {50, 30, 20}, l2[3] = {30, 30, 40};
    const double ties[8] = {1, 1, 1, 1, 2, 2, 3, 3};
    double p;
    size_t ne;

    (void)state;
    for (size_t i = 0; i < N; i++) {
        base[i] = (i + 0.5) / N;
        cur[i] = base[i] * base[i];
    }
    ne = deja__stats_edges(base, N, 10, edges);
    assert_int_equal(ne, 9);
    for (size_t i = 0; i < N; i++) {
        bc[deja__stats_bin(edges, ne, base[i])]++;
        cc[deja__stats_bin(edges, ne, cur[i])]++;
    }
    for (size_t i = 0; i < 10; i++) {
        assert_int_equal(bc[i], 100);
        assert_int_equal(cc[i], want_cc[i]);
    }
    assert_close(deja__stats_psi(bc, cc, 10), 0.3791982730360824, 1e-12);
    assert_true(deja__stats_psi(bc, bc, 10) == 0.0);
    assert_close(deja__stats_ks(base, N, cur, N), 0.25, 1e-12);
    assert_close(deja__stats_ks_p(0.25, N, N), 1.4375563478121876e-27, 1e-6);
    assert_close(deja__stats_ks_p(0.2, 50, 50), 0.26999967167735456, 1e-9);
    assert_close(deja__stats_ks_p(0.1, 50, 50), 0.9639452436648751, 1e-9);
    assert_close(deja__stats_ks(a, 4, b, 4), 0.5, 1e-12);
    assert_true(deja__stats_ks(a, 4, a, 4) == 0.0);
    assert_close(deja__stats_ks_p(0.0, 10, 10), 1.0, 1e-12);
    assert_close(deja__stats_chi2(l1, l2, 3, &p), 11.666666666666668, 1e-12);
    assert_close(p, 0.0029282996948181853, 1e-6);
    /* Repeated values give fewer, distinct edges. */
    ne = deja__stats_edges(ties, 8, 4, edges);
    assert_int_equal(ne, 2);
    assert_true(edges[0] == 1 && edges[1] == 2);
    assert_int_equal(deja__stats_bin(edges, ne, 1), 0);
    assert_int_equal(deja__stats_bin(edges, ne, 1.5), 1);
    assert_int_equal(deja__stats_bin(edges, ne, 9), 2);
    assert_true(isnan(deja__stats_psi(bc, (const uint64_t[10]){0}, 10)));
}

/* Scores with `label` highest. */
static void scores_for(float out[3], int label)
{
    out[0] = out[1] = out[2] = 0.1f;
    out[label] = 0.8f;
}

/* Model clf: phase=before, 200 traces, x = [g, g], labels 100/60/40;
 * phase=after, 200 traces, x = [g, g^2], labels 40/60/100, and 50 errors
 * with no tensors. g = (i + .5) / 200 as f32. Model lm: 100 texts from
 * a small vocabulary before, 100 after of which every other one uses new
 * words and every fifth is empty. */
static const char *make_store(char *root)
{
    static const char *const old_words[] = {"the cat sat on the mat", "a dog ran far",
                                            "the dog sat", "a cat ran on the mat"};
    const char *path = cli_tmp_path(root, "drift.store");
    deja_store *store = NULL;
    wtrace w;

    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    for (int side = 0; side < 2; side++) {
        for (int i = 0; i < 200; i++) {
            const float g = (float)((i + 0.5) / 200);
            const float x[2] = {g, side ? g * g : g};
            const int label = side == 0 ? (i < 100 ? 0 : i < 160 ? 1 : 2)
                                        : (i < 40 ? 0 : i < 100 ? 1 : 2);
            float s[3];

            wtrace_init(&w, "clf", "1", T0 + side * 1000 * SEC + i * SEC, 10000000);
            wtrace_tag(&w, "phase", side ? "after" : "before");
            wtrace_f32(&w, DEJA_INPUT, "x", x, 2, 0);
            scores_for(s, label);
            wtrace_f32(&w, DEJA_OUTPUT, "probs", s, 3, 0);
            wtrace_put(store, &w);
        }
    }
    for (int i = 0; i < 50; i++) {
        wtrace_init(&w, "clf", "1", T0 + 1500 * SEC + i * SEC, 10000000);
        wtrace_tag(&w, "phase", "after");
        wtrace_error(&w, "out of memory");
        wtrace_put(store, &w);
    }
    for (int side = 0; side < 2; side++) {
        for (int i = 0; i < 100; i++) {
            const char *text = old_words[i % 4];

            if (side == 1 && i % 5 == 0)
                text = "";
            else if (side == 1 && i % 2 == 1)
                text = "quantum flux capacitors hum loudly";
            wtrace_init(&w, "lm", "1", T0 + 3000 * SEC + side * 1000 * SEC + i * SEC, 5000000);
            wtrace_tag(&w, "phase", side ? "after" : "before");
            wtrace_text(&w, DEJA_INPUT, "prompt", "tell me");
            wtrace_text(&w, DEJA_OUTPUT, "completion", text);
            wtrace_put(store, &w);
        }
    }
    deja_store_close(store);
    return path;
}

static const deja_drift_field *find(const deja_drift *d, const char *name)
{
    for (size_t i = 0; i < d->nfields; i++)
        if (strcmp(d->fields[i].name, name) == 0)
            return &d->fields[i];
    fprintf(stderr, "no field %s\n", name);
    fail();
    return NULL;
}

static deja_drift *drift_of(deja_store *store, const char *model, const deja_drift_options *o)
{
    deja_tag before = {"phase", "before"}, after = {"phase", "after"};
    deja_filter b = DEJA_FILTER_INIT, c = DEJA_FILTER_INIT;
    deja_drift *d = NULL;

    b.model = c.model = model;
    b.tags = &before;
    c.tags = &after;
    b.ntags = c.ntags = 1;
    assert_int_equal(deja_drift_compute(store, &b, &c, o, &d), 0);
    return d;
}

/* The same PSI, KS, chi-square as scipy on the very values recorded:
 *   g = float32((i + .5) / 200); base = g; cur = float32(g * g)
 *   -> psi 0.37085426218409545, ks 0.25, kolmogorov(10 * 0.25) 7.453306344157342e-06
 *   labels [[100,60,40],[40,60,100]] -> chi2 51.42857142857143,
 *   p 6.798727087488285e-12, psi 0.549774439124493 */
static void check_classifier(deja_store *store)
{
    deja_drift_options o = DEJA_DRIFT_OPTIONS_INIT;
    deja_drift *d = drift_of(store, "clf", &o);
    const deja_drift_field *f;

    assert_int_equal(d->baseline_traces, 200);
    assert_int_equal(d->current_traces, 250);
    assert_int_equal(d->baseline_sampled, 200);
    f = find(d, "input.x[1]");
    assert_true(f->drifted);
    assert_int_equal(f->kind, DEJA_DRIFT_NUMERIC);
    assert_close(f->psi, 0.37085426218409545, 1e-12);
    assert_close(f->ks, 0.25, 1e-9);
    assert_close(f->ks_p, 7.453306344157342e-06, 1e-6);
    assert_int_equal(f->nbins, 10);
    assert_close(f->cur_share[0], 62.0 / 200, 1e-12);
    /* The first bin grew most: its newest current traces are examples. */
    assert_int_equal(f->nexamples, 3);
    assert_string_equal(f->region, "<= 0.0975");
    f = find(d, "input.x[0]");
    assert_false(f->drifted);
    assert_true(f->psi == 0.0);
    f = find(d, "output.probs (label)");
    assert_true(f->drifted);
    assert_int_equal(f->kind, DEJA_DRIFT_LABELS);
    assert_close(f->psi, 0.549774439124493, 1e-9);
    assert_close(f->chi2, 51.42857142857143, 1e-9);
    assert_close(f->chi2_p, 6.798727087488285e-12, 1e-6);
    assert_string_equal(f->region, "label 2");
    assert_int_equal(f->nbins, 3);
    assert_string_equal(f->labels[2], "2");
    f = find(d, "errors");
    assert_true(f->drifted);
    assert_close(f->current.rate, 0.2, 1e-12);
    assert_true(f->baseline.rate == 0.0);
    assert_int_equal(f->nexamples, 3);
    f = find(d, "latency (ms)");
    assert_false(f->drifted);
    /* Ranked: drifted first. */
    assert_int_equal(d->ndrifted, 3);
    for (size_t i = 0; i < d->nfields; i++)
        assert_int_equal(d->fields[i].drifted, i < 3);
    deja_drift_free(d);
}

static void test_drift__store_fields(void **state)
{
    char root[] = "/tmp/deja-drift-XXXXXX";
    deja_store *store = NULL;
    deja_drift_options o = DEJA_DRIFT_OPTIONS_INIT;
    deja_drift *d, *d2;
    const deja_drift_field *f;
    const char *path;

    (void)state;
    assert_int_equal(cli_group_begin(root), 0);
    path = make_store(root);
    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_READONLY), 0);
    setenv("DEJA_WATCH_THREADS", "1", 1);
    check_classifier(store);
    setenv("DEJA_WATCH_THREADS", "3", 1);
    check_classifier(store);

    /* Text. */
    d = drift_of(store, "lm", &o);
    f = find(d, "output.completion (new words)");
    assert_true(f->drifted);
    assert_true(f->baseline.rate == 0.0); /* four sentences, seen in both halves */
    /* 40 of 100 texts hold 5 new words; 40 old ones 3..6 words each. */
    assert_true(f->current.rate > 0.4 && f->current.rate < 0.6);
    assert_int_equal(f->nexamples, 3);
    f = find(d, "output.completion (empty)");
    assert_true(f->drifted);
    assert_close(f->current.rate, 0.2, 1e-12);
    f = find(d, "output.completion (length)");
    assert_true(f->drifted);
    f = find(d, "input.prompt (new words)");
    assert_false(f->drifted);
    deja_drift_free(d);

    /* The sample is the same whatever the threads, and the seed's. */
    o.sample = 50;
    o.seed = 7;
    setenv("DEJA_WATCH_THREADS", "1", 1);
    d = drift_of(store, "clf", &o);
    setenv("DEJA_WATCH_THREADS", "4", 1);
    d2 = drift_of(store, "clf", &o);
    assert_int_equal(d->baseline_sampled, 50);
    assert_true(find(d, "input.x[1]")->psi == find(d2, "input.x[1]")->psi);
    assert_true(find(d, "input.x[1]")->ks == find(d2, "input.x[1]")->ks);
    assert_memory_equal(find(d, "input.x[1]")->examples, find(d2, "input.x[1]")->examples,
                        3 * sizeof(deja_id));
    deja_drift_free(d2);
    o.seed = 8;
    d2 = drift_of(store, "clf", &o);
    assert_true(find(d, "input.x[0]")->baseline.mean != find(d2, "input.x[0]")->baseline.mean);
    deja_drift_free(d2);
    deja_drift_free(d);
    unsetenv("DEJA_WATCH_THREADS");

    /* An empty selection is trouble. */
    {
        deja_filter none = DEJA_FILTER_INIT;

        none.model = "nobody";
        assert_int_equal(deja_drift_compute(store, NULL, &none, NULL, &d), DEJA_EINVAL);
        assert_non_null(strstr(deja_error_last(), "current selection holds no trace"));
        o.bins = 1;
        assert_int_equal(deja_drift_compute(store, NULL, NULL, &o, &d), DEJA_EINVAL);
    }
    deja_store_close(store);
    cli_rm_rf(root);
}

static void test_drift__cli(void **state)
{
    char root[] = "/tmp/deja-drift-XXXXXX";
    const char *path;
    cli_run r;
    json_t *j, *fields;

    (void)state;
    assert_int_equal(cli_group_begin(root), 0);
    path = make_store(root);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "drift", "--baseline",
                              "model=clf tag.phase=before", "--current",
                              "model=clf tag.phase=after", NULL),
                     0);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "DRIFTED input.x[1]"));
    assert_non_null(strstr(r.out, "3 of "));
    cli_assert_one_error(&r, "drift: 3 of");
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "drift", "--baseline",
                              "model=clf tag.phase=before", "--current",
                              "tag.phase=before model=clf", NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "0 of "));
    assert_string_equal(r.err, "");
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "drift", "--baseline",
                              "model=clf tag.phase=before", "--current",
                              "model=clf tag.phase=after", "--psi", "0.5", "--json", NULL),
                     0);
    assert_int_equal(r.status, 1);
    j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    fields = json_object_get(j, "fields");
    /* With --psi 0.5 only the errors (0.2 for 0.05: 4x the threshold) and
     * the labels (0.55 for 0.5) drifted, in that order. */
    assert_int_equal(json_integer_value(json_object_get(j, "drifted")), 2);
    assert_true(json_array_size(fields) > 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(fields, 0), "field")),
                        "errors");
    assert_string_equal(json_string_value(json_object_get(json_array_get(fields, 1), "field")),
                        "output.probs (label)");
    assert_int_equal(json_array_size(json_object_get(json_array_get(fields, 1), "examples")), 3);
    assert_int_equal(json_array_size(json_object_get(json_array_get(fields, 1), "histogram")), 3);
    json_decref(j);
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "drift", "--baseline",
                              "colour=red", "--current", "model=clf", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--baseline: unknown key 'colour'");
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", path, "drift", "--current", "model=clf",
                              NULL),
                     0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--baseline and --current are required"));
    cli_run_free(&r);
    cli_rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drift__statistics_known_values),
        cmocka_unit_test(test_drift__store_fields),
        cmocka_unit_test(test_drift__cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
