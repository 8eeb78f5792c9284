/*
 * tests/test_ctx.c -- the determinism context: a model recorded through a
 * recording ctx, stored, read back and replayed through a replaying ctx sees
 * exactly the same seeds, draws and clock reads and writes the same outputs;
 * whatever a replay needs beyond the recording is reported.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Before cmocka.h, whose fail() macro would clash with the vtable's fail. */
#include "deja.h"
#include "deja_model.h"

#include <cmocka.h>

#define DRAWS 80
#define NVALUES (2 + DRAWS + 1 + 3 + 2)

/* A fake model that consumes everything the ctx offers and writes all it
 * saw as a u64 output, plus a text output. `extra` asks for values beyond
 * the recorded ones: one more draw, an unknown seed, one more clock read. */
static int fake_model(deja_ctx *ctx, int extra, uint64_t *values)
{
    size_t k = 0;
    const deja_tensor *in = deja_ctx_input(ctx, "prompt");
    if (in == NULL || deja_ctx_input_count(ctx) != 1 || deja_ctx_input_at(ctx, 0) != in ||
        deja_ctx_input_at(ctx, 1) != NULL) {
        deja_ctx_fail(ctx, "no prompt");
        return 1;
    }
    const double temp = deja_ctx_param_num(ctx, "temperature", -1.0);
    const deja_param *mode = deja_ctx_param(ctx, "mode");
    values[k++] = deja_ctx_seed(ctx, "init");
    values[k++] = deja_ctx_seed(ctx, "init"); /* same name: same value */
    for (int i = 0; i < DRAWS; i++)
        values[k++] = deja_ctx_rng_u64(ctx, "sampling");
    double f = deja_ctx_rng_f64(ctx, "dropout");
    memcpy(&values[k++], &f, sizeof f);
    for (int i = 0; i < 3; i++)
        values[k++] = (uint64_t)deja_ctx_now(ctx);
    memcpy(&values[k++], &temp, sizeof temp);
    values[k++] = mode != NULL && mode->kind == DEJA_PARAM_STR && strcmp(mode->str, "beam") == 0;
    uint64_t shape[1] = {NVALUES};
    deja_tensor out = {"values", DEJA_U64, 1, shape, values, NVALUES * sizeof *values};
    if (deja_ctx_output(ctx, &out) != 0)
        return 1;
    char text[256];
    int len = snprintf(text, sizeof text, "%.*s -> %016llx", (int)in->size, (const char *)in->data,
                       (unsigned long long)values[2]);
    if (deja_ctx_output_text(ctx, "completion", text, (size_t)len) != 0)
        return 1;
    if (extra) {
        values[0] = deja_ctx_rng_u64(ctx, "sampling"); /* draw 81 */
        values[1] = deja_ctx_rng_u64(ctx, "sampling"); /* draw 82 */
        (void)deja_ctx_seed(ctx, "other");
        (void)deja_ctx_now(ctx);
        (void)deja_ctx_now(ctx);
        (void)deja_ctx_rng_u64(ctx, "never");
    }
    return 0;
}

static char store_dir[256];
static char store_path[300];

static int setup(void **state)
{
    (void)state;
    snprintf(store_dir, sizeof store_dir, "/tmp/deja_test_ctx_XXXXXX");
    if (mkdtemp(store_dir) == NULL)
        return -1;
    snprintf(store_path, sizeof store_path, "%s/s.store", store_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", store_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Record the fake model into a new span with `base_seed`; returns its id and
 * the values the model saw. With `extra`, the model consumes the extra values
 * while recording (as a reference for what replay must continue with). */
static deja_id record(deja_tracer *t, uint64_t base_seed, int extra, uint64_t *values)
{
    deja_span *s = NULL;
    deja_ctx *ctx = NULL;
    assert_int_equal(deja_span_begin(&s, t, "fake", "1"), 0);
    deja_id id = *deja_span_id(s);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", "hello", 5), 0);
    assert_int_equal(deja_span_param_num(s, "temperature", 0.7), 0);
    assert_int_equal(deja_span_param_str(s, "mode", "beam"), 0);
    assert_int_equal(deja_ctx_record(&ctx, s, base_seed), 0);
    assert_int_equal(fake_model(ctx, extra, values), 0);
    size_t n = 0;
    const deja_tensor *outs = deja_ctx_outputs(ctx, &n);
    assert_int_equal(n, 2);
    assert_string_equal(outs[0].name, "values");
    assert_null(deja_ctx_error(ctx));
    assert_int_equal(deja_ctx_unrecorded(ctx, NULL), 0);
    deja_ctx_free(ctx);
    assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
    return id;
}

static int has_line(deja_ctx *ctx, const char *want)
{
    const char *const *lines = NULL;
    size_t n = deja_ctx_unrecorded(ctx, &lines);
    for (size_t i = 0; i < n; i++)
        if (strcmp(lines[i], want) == 0)
            return 1;
    return 0;
}

static void test_ctx__record_replay_identical(void **state)
{
    (void)state;
    deja_tracer *t = NULL;
    uint64_t rec[NVALUES], rec2[NVALUES], rec_extra[NVALUES], rep[NVALUES];
    assert_int_equal(deja_tracer_open(&t, store_path, NULL), 0);
    deja_id id = record(t, 42, 0, rec);
    record(t, 42, 0, rec2);
    record(t, 42, 1, rec_extra);
    deja_tracer_close(t);

    /* The same base seed gives the same seeds and draws (not clocks). */
    assert_memory_equal(rec, rec2, (2 + DRAWS + 1) * sizeof *rec);
    assert_true(rec[0] == rec[1]);
    assert_true(rec[2] != rec[3]);

    deja_store *s = NULL;
    deja_trace *tr = NULL;
    deja_ctx *ctx = NULL;
    assert_int_equal(deja_store_open(&s, store_path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_trace_get(s, &id, &tr), 0);
    assert_int_equal(tr->nseeds, 1);
    assert_int_equal(tr->nrng, 2);
    assert_string_equal(tr->rng[0].name, "sampling");
    assert_int_equal(tr->rng[0].ndraws, DRAWS);
    assert_int_equal(tr->nclock, 3);

    assert_int_equal(deja_ctx_replay(&ctx, tr), 0);
    assert_int_equal(fake_model(ctx, 0, rep), 0);
    assert_memory_equal(rec, rep, sizeof rec);
    assert_int_equal(deja_ctx_unrecorded(ctx, NULL), 0);
    size_t n = 0;
    const deja_tensor *outs = deja_ctx_outputs(ctx, &n);
    assert_int_equal(n, tr->noutputs);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(outs[i].name, tr->outputs[i].name);
        assert_int_equal(outs[i].dtype, tr->outputs[i].dtype);
        assert_int_equal(outs[i].size, tr->outputs[i].size);
        assert_memory_equal(outs[i].data, tr->outputs[i].data, outs[i].size);
    }
    deja_ctx_free(ctx);

    /* Past the recording: continues the same generator, and says so. */
    assert_int_equal(deja_ctx_replay(&ctx, tr), 0);
    assert_int_equal(fake_model(ctx, 1, rep), 0);
    assert_memory_equal(rec + 2, rep + 2, (NVALUES - 2) * sizeof *rec);
    assert_true(rep[0] == rec_extra[0]); /* draw 81 as the generator gives it */
    assert_true(rep[1] == rec_extra[1]);
    assert_true(has_line(ctx, "stream 'sampling': draw 81 past the 80 recorded"));
    assert_true(has_line(ctx, "seed 'other' was not recorded"));
    assert_true(has_line(ctx, "clock read 4 past the 3 recorded"));
    assert_true(has_line(ctx, "stream 'never' was not recorded"));
    assert_int_equal(deja_ctx_unrecorded(ctx, NULL), 4);
    deja_ctx_free(ctx);
    deja_trace_free(tr);
    deja_store_close(s);
}

static void test_ctx__fail_and_missing_input(void **state)
{
    (void)state;
    deja_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.error = "";
    deja_ctx *ctx = NULL;
    uint64_t values[NVALUES];
    assert_int_equal(deja_ctx_replay(&ctx, &tr), 0);
    assert_int_equal(fake_model(ctx, 0, values), 1);
    assert_string_equal(deja_ctx_error(ctx), "no prompt");
    size_t n = 7;
    deja_ctx_outputs(ctx, &n);
    assert_int_equal(n, 0);
    deja_ctx_free(ctx);
    deja_ctx_free(NULL);
    assert_int_equal(deja_ctx_replay(NULL, &tr), DEJA_EINVAL);
}

static void test_ctx__os_seed_when_zero(void **state)
{
    (void)state;
    deja_tracer *t = NULL;
    uint64_t a[NVALUES], b[NVALUES];
    assert_int_equal(deja_tracer_open(&t, store_path, NULL), 0);
    record(t, 0, 0, a);
    record(t, 0, 0, b);
    deja_tracer_close(t);
    assert_true(a[0] != b[0]); /* fresh base seeds from the OS */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ctx__record_replay_identical, setup, teardown),
        cmocka_unit_test(test_ctx__fail_and_missing_input),
        cmocka_unit_test_setup_teardown(test_ctx__os_seed_when_zero, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
