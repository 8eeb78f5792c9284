/*
 * test_model.c -- loading model plugins: every error a user can meet, the
 * bare-name lookup, the reported identity and digest, and infer failures.
 * The plugins are built by examples/ into DEJA_LIB_DIR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "deja.h"

#define LIB DEJA_LIB_DIR "/"

/* Assert that `text` contains `needle`, showing both when it does not. */
static void assert_has(const char *text, const char *needle)
{
    if (!strstr(text, needle)) {
        fail_msg("expected \"%s\" in \"%s\"", needle, text);
    }
}

/* Read a whole file into a malloc'd buffer (tests only: aborts on error). */
static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void test_model__missing_file(void **state)
{
    deja_model *m = (deja_model *)0x1;
    assert_int_equal(deja_model_load(&m, LIB "no-such-plugin.so"), DEJA_ENOTFOUND);
    assert_null(m);
    assert_has(deja_error_last(), "no such file");
    assert_has(deja_error_last(), "no-such-plugin.so");
}

static void test_model__missing_bare_name_lists_dirs(void **state)
{
    deja_model *m = NULL;
    assert_int_equal(setenv("DEJA_PLUGIN_PATH", "/nonexistent-deja-dir:" DEJA_LIB_DIR, 1), 0);
    assert_int_equal(deja_model_load(&m, "no-such-model"), DEJA_ENOTFOUND);
    assert_null(m);
    assert_has(deja_error_last(), "plugin 'no-such-model': no such file (looked in ");
    assert_has(deja_error_last(), "/nonexistent-deja-dir");
    assert_has(deja_error_last(), DEJA_LIB_DIR);
}

static void test_model__not_a_shared_object(void **state)
{
    deja_model *m = NULL;
    /* A text file with a plugin's name. */
    char dir[] = "/tmp/deja-test-model-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/fake.so", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    assert_int_equal(deja_model_load(&m, path), DEJA_EINVAL);
    assert_null(m);
    assert_has(deja_error_last(), "is not a deja model plugin");
    /* A directory is not a plugin either. */
    assert_int_equal(deja_model_load(&m, dir), DEJA_EINVAL);
    unlink(path);
    rmdir(dir);
}

static void test_model__no_entry_point(void **state)
{
    deja_model *m = NULL;
    assert_int_equal(deja_model_load(&m, LIB "test-noentry.so"), DEJA_EINVAL);
    assert_null(m);
    assert_has(deja_error_last(), "is not a deja model plugin (no deja_model_entry)");
}

static void test_model__other_abi(void **state)
{
    deja_model *m = NULL;
    assert_int_equal(deja_model_load(&m, LIB "test-badabi.so"), DEJA_EVERSION);
    assert_null(m);
    assert_has(deja_error_last(), "has model ABI 7, this deja speaks 1");
}

static void test_model__null_name(void **state)
{
    deja_model *m = NULL;
    assert_int_equal(deja_model_load(&m, LIB "test-nullname.so"), DEJA_EINVAL);
    assert_null(m);
}

static void test_model__open_fails_with_plugin_message(void **state)
{
    deja_model *m = NULL;
    assert_int_equal(deja_model_load(&m, LIB "test-openfail.so:w.bin"), DEJA_EMODEL);
    assert_null(m);
    assert_has(deja_error_last(), "weights file w.bin is missing");

    /* textgen with a model file that does not exist. */
    assert_int_equal(deja_model_load(&m, LIB "textgen-v1.so:/nonexistent/x.model"), DEJA_EMODEL);
    assert_has(deja_error_last(), "/nonexistent/x.model");
    /* ... or that is not a textgen model. */
    assert_int_equal(deja_model_load(&m, LIB "textgen-v1.so:" LIB "test-noentry.so"), DEJA_EMODEL);
    assert_has(deja_error_last(), "not a textgen model");

    /* ... or that is cut short. */
    size_t size = 0;
    uint8_t *bytes = slurp(LIB "textgen.model", &size);
    char dir[] = "/tmp/deja-test-model-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], spec[512];
    snprintf(path, sizeof path, "%s/cut.model", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, size / 2, f), size / 2);
    fclose(f);
    free(bytes);
    snprintf(spec, sizeof spec, "%s:%s", LIB "textgen-v2.so", path);
    assert_int_equal(deja_model_load(&m, spec), DEJA_EMODEL);
    assert_has(deja_error_last(), "header does not match the file size");
    unlink(path);
    rmdir(dir);
}

static void test_model__bare_name_lookup(void **state)
{
    deja_model *m = NULL;
    assert_int_equal(setenv("DEJA_PLUGIN_PATH", "/nonexistent-deja-dir::" DEJA_LIB_DIR, 1), 0);
    assert_int_equal(deja_model_load(&m, "textgen-v3"), 0);
    assert_string_equal(deja_model_name(m), "textgen");
    assert_string_equal(deja_model_version(m), "3");
    assert_string_equal(deja_model_spec(m), "textgen-v3");
    assert_string_equal(deja_model_path(m), LIB "textgen-v3.so");
    assert_true(deja_model_thread_safe(m));
    deja_model_free(m);

    /* "lib<name>.so" is found too. */
    char dir[] = "/tmp/deja-test-model-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char link[256];
    snprintf(link, sizeof link, "%s/libbadinfer.so", dir);
    assert_int_equal(symlink(LIB "test-inferfail.so", link), 0);
    assert_int_equal(setenv("DEJA_PLUGIN_PATH", dir, 1), 0);
    assert_int_equal(deja_model_load(&m, "badinfer"), 0);
    assert_string_equal(deja_model_name(m), "bad");
    assert_string_equal(deja_model_path(m), link);
    assert_false(deja_model_thread_safe(m));
    deja_model_free(m);
    unlink(link);
    rmdir(dir);

    /* Without DEJA_PLUGIN_PATH, a test binary in build/bin finds build/lib. */
    assert_int_equal(unsetenv("DEJA_PLUGIN_PATH"), 0);
    assert_int_equal(deja_model_load(&m, "classifier-v2"), 0);
    assert_string_equal(deja_model_version(m), "2");
    deja_model_free(m);
    deja_model_free(NULL);
}

static void test_model__digest_stable(void **state)
{
    deja_model *a = NULL, *b = NULL, *c = NULL;
    size_t na = 0, nb = 0, nc = 0;
    assert_int_equal(deja_model_load(&a, LIB "textgen-v1.so"), 0);
    assert_int_equal(deja_model_load(&b, LIB "textgen-v4.so:" LIB "textgen.model"), 0);
    const uint8_t *da = deja_model_digest(a, &na);
    const uint8_t *db = deja_model_digest(b, &nb);
    /* The weights digest is the model file's XXH3-128, whatever the version. */
    size_t size = 0;
    uint8_t *bytes = slurp(LIB "textgen.model", &size);
    deja_digest want = deja_digest_of(bytes, size);
    free(bytes);
    assert_int_equal(na, 16);
    assert_int_equal(nb, 16);
    assert_memory_equal(da, want.bytes, 16);
    assert_memory_equal(db, want.bytes, 16);
    assert_string_equal(deja_model_spec(b), LIB "textgen-v4.so:" LIB "textgen.model");
    deja_model_free(b);
    b = NULL;

    /* Loading again gives the same digest. */
    assert_int_equal(deja_model_load(&b, LIB "textgen-v1.so"), 0);
    assert_memory_equal(deja_model_digest(b, NULL), want.bytes, 16);

    /* classifier v5 changed a weight: its digest changed; v1..v4 share one. */
    assert_int_equal(deja_model_load(&c, LIB "classifier-v1.so"), 0);
    uint8_t c1[16];
    memcpy(c1, deja_model_digest(c, &nc), 16);
    deja_model_free(c);
    assert_int_equal(deja_model_load(&c, LIB "classifier-v4.so"), 0);
    assert_memory_equal(deja_model_digest(c, NULL), c1, 16);
    deja_model_free(c);
    assert_int_equal(deja_model_load(&c, LIB "classifier-v5.so"), 0);
    assert_memory_not_equal(deja_model_digest(c, NULL), c1, 16);
    deja_model_free(c);

    /* A plugin that reports no digest gets its file's. */
    assert_int_equal(deja_model_load(&c, LIB "test-inferfail.so"), 0);
    bytes = slurp(LIB "test-inferfail.so", &size);
    want = deja_digest_of(bytes, size);
    free(bytes);
    assert_memory_equal(deja_model_digest(c, &nc), want.bytes, 16);
    assert_int_equal(nc, 16);
    deja_model_free(c);
    deja_model_free(a);
    deja_model_free(b);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Remove the store directory `dir` and everything in it. */
static void remove_store(const char *dir)
{
    nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void test_model__infer_failures(void **state)
{
    deja_model *m = NULL;
    deja_tracer *t = NULL;
    deja_span *s = NULL;
    deja_ctx *ctx = NULL;
    char dir[] = "/tmp/deja-test-model-XXXXXX";
    assert_non_null(mkdtemp(dir));

    assert_int_equal(deja_model_load(&m, LIB "test-inferfail.so"), 0);
    assert_int_equal(deja_tracer_open(&t, dir, NULL), 0);

    /* A plugin that returns non-zero without a message. */
    assert_int_equal(deja_span_begin(&s, t, "bad", "1"), 0);
    assert_int_equal(deja_ctx_record(&ctx, s, 1), 0);
    assert_int_equal(deja_model_infer(m, ctx), DEJA_EMODEL);
    assert_has(deja_error_last(), "model returned 3");
    deja_ctx_free(ctx);
    deja_span_abort(s);

    /* A plugin that fails through the ctx: its message is the error. */
    assert_int_equal(deja_span_begin(&s, t, "bad", "1"), 0);
    assert_int_equal(deja_span_param_bool(s, "fail", 1), 0);
    assert_int_equal(deja_ctx_record(&ctx, s, 1), 0);
    assert_int_equal(deja_model_infer(m, ctx), DEJA_EMODEL);
    assert_has(deja_error_last(), "asked to fail");
    deja_ctx_free(ctx);
    deja_span_abort(s);

    /* textgen refuses bad params with a clear message. */
    deja_model_free(m);
    assert_int_equal(deja_model_load(&m, LIB "textgen-v1.so"), 0);
    static const struct {
        const char *key;
        double value;
        const char *why;
    } bad[] = {
        {"temperature", 0, "temperature must be"},
        {"temperature", -1, "temperature must be"},
        {"top_k", 0, "top_k must be"},
        {"max_tokens", 5000, "max_tokens must be"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(deja_span_begin(&s, t, "textgen", "1"), 0);
        assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", "The fox", 7), 0);
        assert_int_equal(deja_span_param_num(s, bad[i].key, bad[i].value), 0);
        assert_int_equal(deja_ctx_record(&ctx, s, 1), 0);
        assert_int_equal(deja_model_infer(m, ctx), DEJA_EMODEL);
        assert_has(deja_error_last(), bad[i].why);
        deja_ctx_free(ctx);
        deja_span_abort(s);
    }
    /* ... and a missing prompt. */
    assert_int_equal(deja_span_begin(&s, t, "textgen", "1"), 0);
    assert_int_equal(deja_ctx_record(&ctx, s, 1), 0);
    assert_int_equal(deja_model_infer(m, ctx), DEJA_EMODEL);
    assert_has(deja_error_last(), "'prompt'");
    deja_ctx_free(ctx);
    deja_span_abort(s);

    deja_tracer_close(t);
    deja_model_free(m);
    remove_store(dir);
}

static void test_model__bad_specs(void **state)
{
    deja_model *m = NULL;
    assert_int_equal(deja_model_load(&m, ""), DEJA_EINVAL);
    assert_int_equal(deja_model_load(&m, NULL), DEJA_EINVAL);
    assert_int_equal(deja_model_load(&m, ":arg"), DEJA_EINVAL);
    assert_null(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model__missing_file),
        cmocka_unit_test(test_model__missing_bare_name_lists_dirs),
        cmocka_unit_test(test_model__not_a_shared_object),
        cmocka_unit_test(test_model__no_entry_point),
        cmocka_unit_test(test_model__other_abi),
        cmocka_unit_test(test_model__null_name),
        cmocka_unit_test(test_model__open_fails_with_plugin_message),
        cmocka_unit_test(test_model__bare_name_lookup),
        cmocka_unit_test(test_model__digest_stable),
        cmocka_unit_test(test_model__infer_failures),
        cmocka_unit_test(test_model__bad_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
