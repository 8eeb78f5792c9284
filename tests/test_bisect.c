/*
 * tests/test_bisect.c -- bisect finds a planted change at every position of
 * a list of 8 versions, in O(log n) replays: through the search alone with
 * a fake check, and end to end with the test-planted plugin (ARG "V/P":
 * version V of a list whose change appears at P), with --invert, and
 * through `deja bisect` on the demo's textgen and classifier versions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deja.h"
#include "deja_model.h"

#include <cmocka.h>

#define REPLAY_TEST_NAME "test_bisect"
#include "replay_harness.h"

#define NVERSIONS 8
#define NTRACES 4

/* A fake check: versions from `planted` on are bad. */
typedef struct fake {
    size_t planted;
    size_t calls;
    int checked[NVERSIONS];
} fake;

static int fake_check(size_t index, int *bad, void *payload)
{
    fake *f = payload;
    f->calls++;
    f->checked[index]++;
    *bad = index >= f->planted;
    return 0;
}

/* The same without the per-version record, for long lists. */
static int fake_check_any(size_t index, int *bad, void *payload)
{
    fake *f = payload;
    f->calls++;
    *bad = index >= f->planted;
    return 0;
}

static int failing_check(size_t index, int *bad, void *payload)
{
    (void)index;
    (void)bad;
    (void)payload;
    return DEJA_EIO;
}

static void test_bisect__search_finds_every_position(void **state)
{
    size_t p, first = 0, n;
    (void)state;
    for (p = 1; p < NVERSIONS; p++) {
        fake f;
        memset(&f, 0, sizeof(f));
        f.planted = p;
        assert_int_equal(deja_bisect_search(NVERSIONS, fake_check, &f, &first), 0);
        assert_int_equal(first, p);
        /* log2(7) rounded up: at most 3 checks, never the ends, none twice. */
        assert_true(f.calls <= 3);
        assert_int_equal(f.checked[0], 0);
        assert_int_equal(f.checked[NVERSIONS - 1], 0);
        for (n = 0; n < NVERSIONS; n++) {
            assert_true(f.checked[n] <= 1);
        }
    }
    /* Two versions: nothing to check. */
    {
        fake f;
        memset(&f, 0, sizeof(f));
        f.planted = 1;
        assert_int_equal(deja_bisect_search(2, fake_check, &f, &first), 0);
        assert_int_equal(first, 1);
        assert_int_equal(f.calls, 0);
    }
    /* A long list stays logarithmic. */
    for (n = 3; n < 200; n += 17) {
        for (p = 1; p < n; p += 5) {
            fake f;
            size_t bound = 0;
            memset(&f, 0, sizeof(f));
            f.planted = p;
            assert_int_equal(deja_bisect_search(n, fake_check_any, &f, &first), 0);
            assert_int_equal(first, p);
            while (((size_t)1 << bound) < n - 1) {
                bound++;
            }
            assert_true(f.calls <= bound);
        }
    }
    assert_int_equal(deja_bisect_search(1, fake_check, NULL, &first), DEJA_EINVAL);
    assert_int_equal(deja_bisect_search(5, failing_check, NULL, &first), DEJA_EIO);
}

/* Record NTRACES traces with the planted plugin playing `arg`. */
static void record_planted(const char *arg, deja_id *ids)
{
    static const float xs[NTRACES][4] = {{1, 2, 3, 4}, {4, 3, 2, 1}, {0, 1, 0, 1}, {2, 0, 2, 0}};
    char spec[64];
    deja_tracer *tracer = NULL;
    deja_model *model = NULL;
    size_t i;
    snprintf(spec, sizeof(spec), "test-planted:%s", arg);
    assert_int_equal(deja_model_load(&model, spec), 0);
    assert_int_equal(deja_tracer_open(&tracer, store_path, NULL), 0);
    for (i = 0; i < NTRACES; i++) {
        uint64_t shape[1] = {4};
        deja_tensor x = {"x", DEJA_F32, 1, shape, xs[i], sizeof(xs[i])};
        deja_span *span = NULL;
        deja_ctx *ctx = NULL;
        assert_int_equal(
            deja_span_begin(&span, tracer, deja_model_name(model), deja_model_version(model)), 0);
        ids[i] = *deja_span_id(span);
        assert_int_equal(deja_span_add(span, DEJA_INPUT, &x), 0);
        assert_int_equal(deja_ctx_record(&ctx, span, 40 + i), 0);
        assert_int_equal(deja_model_infer(model, ctx), 0);
        deja_ctx_free(ctx);
        assert_int_equal(deja_span_end(span, DEJA_STATUS_OK, NULL), 0);
    }
    deja_tracer_close(tracer);
    deja_model_free(model);
}

/* The specs "test-planted:V/P" for V = 0..NVERSIONS-1. */
static void make_specs(size_t planted, char buf[NVERSIONS][64], const char *specs[NVERSIONS])
{
    size_t v;
    for (v = 0; v < NVERSIONS; v++) {
        snprintf(buf[v], 64, "test-planted:%zu/%zu", v, planted);
        specs[v] = buf[v];
    }
}

static void test_bisect__planted_plugin_every_position(void **state)
{
    deja_id ids[NTRACES];
    char buf[NVERSIONS][64];
    const char *specs[NVERSIONS];
    deja_store *store = NULL;
    deja_bisect_options o = DEJA_BISECT_OPTIONS_INIT;
    deja_bisect_result *r = NULL;
    size_t p, i;
    (void)state;
    record_planted("0/1000", ids);
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    for (p = 1; p < NVERSIONS; p++) {
        make_specs(p, buf, specs);
        o.replay.jobs = (unsigned)(p % 3 + 1);
        assert_int_equal(deja_bisect(store, ids, NTRACES, specs, NVERSIONS, &o, &r), 0);
        assert_int_equal(r->first_bad, p);
        assert_int_equal(r->last_good, p - 1);
        assert_string_equal(r->first_bad_spec, specs[p]);
        /* Both ends, then at most ceil(log2(7)) = 3 more. */
        assert_true(r->nsteps >= 2 && r->nsteps <= 5);
        assert_int_equal(r->steps[0].index, 0);
        assert_false(r->steps[0].bad);
        assert_int_equal(r->steps[1].index, NVERSIONS - 1);
        assert_true(r->steps[1].bad);
        for (i = 2; i < r->nsteps; i++) {
            assert_int_equal(r->steps[i].bad, r->steps[i].index >= p);
        }
        /* The evidence: every trace, with its label change. */
        assert_int_equal(r->nevidence, NTRACES);
        for (i = 0; i < r->nevidence; i++) {
            assert_int_equal(r->evidence[i].verdict, DEJA_VERDICT_DIVERGED);
            assert_non_null(strstr(r->evidence[i].detail, "\u2192 3"));
        }
        deja_bisect_result_free(r);
        r = NULL;
    }
    /* The change at the first version, or nowhere: the ends agree. */
    make_specs(0, buf, specs);
    assert_int_equal(deja_bisect(store, ids, NTRACES, specs, NVERSIONS, &o, &r), DEJA_EINVAL);
    assert_null(r);
    assert_non_null(strstr(deja_error_last(), "both ends"));
    make_specs(NVERSIONS, buf, specs);
    assert_int_equal(deja_bisect(store, ids, NTRACES, specs, NVERSIONS, &o, &r), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "reproduce"));
    /* Fewer than two versions; a version that does not load. */
    assert_int_equal(deja_bisect(store, ids, NTRACES, specs, 1, &o, &r), DEJA_EINVAL);
    specs[NVERSIONS - 1] = "no-such-plugin";
    assert_int_equal(deja_bisect(store, ids, NTRACES, specs, NVERSIONS, &o, &r), DEJA_ENOTFOUND);
    assert_non_null(strstr(deja_error_last(), "no-such-plugin"));
    deja_store_close(store);
}

static void test_bisect__invert(void **state)
{
    deja_id ids[NTRACES];
    char buf[NVERSIONS][64];
    const char *specs[NVERSIONS];
    deja_store *store = NULL;
    deja_bisect_options o = DEJA_BISECT_OPTIONS_INIT;
    deja_bisect_result *r = NULL;
    (void)state;
    /* Recorded on the newest version, where the change is present: find
     * the first version that reproduces it. */
    record_planted("7/4", ids);
    assert_int_equal(deja_store_open(&store, store_path, DEJA_STORE_READONLY), 0);
    o.invert = 1;
    make_specs(4, buf, specs);
    assert_int_equal(deja_bisect(store, ids, NTRACES, specs, NVERSIONS, &o, &r), 0);
    assert_int_equal(r->first_bad, 4);
    assert_int_equal(r->nevidence, NTRACES);
    assert_int_equal(r->evidence[0].verdict, DEJA_VERDICT_SAME);
    deja_bisect_result_free(r);
    r = NULL;
    /* Without invert the same list runs the wrong way. */
    o.invert = 0;
    assert_int_equal(deja_bisect(store, ids, NTRACES, specs, NVERSIONS, &o, &r), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "--invert"));
    deja_store_close(store);
}

static void test_bisect__cli_names_the_demo_changes(void **state)
{
    static char out[65536];
    char cmd[512];
    FILE *req;
    int i, j;
    (void)state;
    snprintf(cmd, sizeof(cmd), "%s.req", store_path);
    req = fopen(cmd, "w");
    assert_non_null(req);
    fprintf(req, "{\"inputs\": {\"prompt\": \"Once upon a time\"}, \"seed\": 3}\n"
                 "{\"inputs\": {\"prompt\": \"The old man\"}, \"seed\": 4}\n");
    fclose(req);
    snprintf(cmd, sizeof(cmd), "run --model textgen-v1 --requests '%s.req'", store_path);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "%s", cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s.req", store_path);
    req = fopen(cmd, "w");
    assert_non_null(req);
    for (i = 0; i < 30; i++) {
        fprintf(req, "{\"inputs\": {\"features\": [");
        for (j = 0; j < 16; j++) {
            fprintf(req, "%s%.3f", j ? ", " : "", ((i * 37 + j * 11) % 23) / 11.5 - 1.0);
        }
        fprintf(req, "]}}\n");
    }
    fclose(req);
    snprintf(cmd, sizeof(cmd), "run --model classifier-v1 --requests '%s.req'", store_path);
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "%s", cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s.req", store_path);
    remove(cmd);

    assert_int_equal(
        replay_run_deja(out, sizeof(out), NULL, 0,
                        "bisect --model textgen textgen-v1 textgen-v2 textgen-v3 textgen-v4 "
                        "textgen-v5 textgen-v6"),
        0);
    assert_non_null(strstr(out, "first bad version: textgen-v4"));
    assert_non_null(strstr(out, "step 1: version 1/6 textgen-v1: good"));
    assert_int_equal(
        replay_run_deja(out, sizeof(out), NULL, 0,
                        "bisect --model classifier classifier-v1 classifier-v2 classifier-v3 "
                        "classifier-v4 classifier-v5 classifier-v6 --json"),
        0);
    if (!strstr(out, "\"first_bad\":{\"version\":5,\"spec\":\"classifier-v5\"}")) {
        print_message("%s\n", out);
    }
    assert_non_null(strstr(out, "\"first_bad\":{\"version\":5,\"spec\":\"classifier-v5\"}"));
    /* Both ends agree: trouble, one line. */
    assert_int_equal(
        replay_run_deja(out, sizeof(out), NULL, 0,
                        "bisect --model classifier classifier-v1 classifier-v2 --json"),
        2);
    assert_non_null(strstr(out, "both ends"));
    assert_int_equal(replay_run_deja(out, sizeof(out), NULL, 0, "bisect textgen-v1"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bisect__search_finds_every_position),
        cmocka_unit_test_setup_teardown(test_bisect__planted_plugin_every_position, replay_setup,
                                        replay_teardown),
        cmocka_unit_test_setup_teardown(test_bisect__invert, replay_setup, replay_teardown),
        cmocka_unit_test_setup_teardown(test_bisect__cli_names_the_demo_changes, replay_setup,
                                        replay_teardown),
    };
    setenv("DEJA_PLUGIN_PATH", DEJA_LIB_DIR, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
