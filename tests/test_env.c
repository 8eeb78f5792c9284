/*
 * tests/test_env.c -- the environment fingerprint of this process: its
 * fields are plausible, it is cached, and its digest is the digest of its
 * canonical encoding, which changes when any selected variable changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "deja.h"
#include "proto/codec.h"
#include "tracer/tracer_internal.h"

static deja_digest digest_of_env(const deja_env *env)
{
    deja__buf b = {0};
    assert_int_equal(deja__env_encode(env, &b), 0);
    deja_digest d = deja_digest_of(b.data, b.size);
    deja__buf_free(&b);
    return d;
}

static void test_env__fields_plausible(void **state)
{
    (void)state;
    deja_digest d;
    const deja_env *e = deja_env_current(&d);
    assert_non_null(e);
    assert_true(e->cores > 0);
    assert_true(e->memory_bytes > 0);
    assert_true(e->threads > 0);
    assert_non_null(e->kernel);
    assert_true(strlen(e->kernel) > 0);
    assert_true(strlen(e->arch) > 0);
    assert_true(strlen(e->os) > 0);
    assert_true(strlen(e->libc) > 0);
    assert_true(strlen(e->compiler) > 0);
    assert_non_null(e->cpu_vendor);
    assert_non_null(e->cpu_model);
    for (size_t i = 1; i < e->nisa; i++)
        assert_true(strcmp(e->isa[i - 1], e->isa[i]) < 0);
#if defined(__x86_64__)
    assert_true(strlen(e->cpu_vendor) > 0);
    int sse2 = 0;
    for (size_t i = 0; i < e->nisa; i++)
        sse2 |= strcmp(e->isa[i], "sse2") == 0;
    assert_true(sse2); /* every x86-64 has it */
#endif
    assert_true(strcmp(e->fp_rounding, "nearest") == 0);
    assert_true(e->ftz == 0 || e->ftz == 1);
    assert_true(e->daz == 0 || e->daz == 1);
    for (size_t i = 1; i < e->nvars; i++)
        assert_true(strcmp(e->vars[i - 1].key, e->vars[i].key) < 0);
    int has_deja = 0, has_zstd = 0;
    for (size_t i = 0; i < e->nlibs; i++) {
        if (i > 0)
            assert_true(strcmp(e->libs[i - 1].key, e->libs[i].key) < 0);
        if (strcmp(e->libs[i].key, "deja") == 0) {
            has_deja = 1;
            assert_string_equal(e->libs[i].value, DEJA_VERSION_STRING);
        }
        has_zstd |= strcmp(e->libs[i].key, "zstd") == 0;
    }
    assert_true(has_deja && has_zstd);
    for (size_t i = 0; i < e->ngpus; i++)
        assert_true(strlen(e->gpus[i]) > 0);
}

static void test_env__cached_and_stable(void **state)
{
    (void)state;
    deja_digest a, b;
    const deja_env *e1 = deja_env_current(&a);
    const deja_env *e2 = deja_env_current(&b);
    assert_ptr_equal(e1, e2);
    assert_memory_equal(&a, &b, sizeof a);
    deja_digest c = digest_of_env(e1);
    assert_memory_equal(&a, &c, sizeof a);
    static const deja_digest zero;
    assert_memory_not_equal(&a, &zero, sizeof a);
}

static void test_env__digest_follows_vars(void **state)
{
    (void)state;
    deja_digest base;
    const deja_env *e = deja_env_current(&base);
    deja_env copy = *e;
    /* A copy with OMP_NUM_THREADS set to another value (or added). */
    deja_kv *vars = calloc(e->nvars + 1, sizeof *vars);
    assert_non_null(vars);
    size_t n = 0, k = 0;
    int placed = 0;
    for (; k < e->nvars; k++) {
        int c = strcmp(e->vars[k].key, "OMP_NUM_THREADS");
        if (!placed && c >= 0) {
            vars[n++] = (deja_kv){"OMP_NUM_THREADS", "12345"};
            placed = 1;
            if (c == 0)
                continue;
        }
        vars[n++] = e->vars[k];
    }
    if (!placed)
        vars[n++] = (deja_kv){"OMP_NUM_THREADS", "12345"};
    copy.vars = vars;
    copy.nvars = n;
    deja_digest changed = digest_of_env(&copy);
    assert_memory_not_equal(&base, &changed, sizeof base);
    /* The same change again gives the same digest. */
    deja_digest again = digest_of_env(&copy);
    assert_memory_equal(&changed, &again, sizeof changed);
    copy.vars = e->vars;
    copy.nvars = e->nvars;
    copy.threads = e->threads + 1;
    deja_digest threads = digest_of_env(&copy);
    assert_memory_not_equal(&base, &threads, sizeof base);
    free(vars);
}

/* Selected variables (set in main before the first capture) are in the
 * fingerprint; others are not. */
static void test_env__vars_selected(void **state)
{
    (void)state;
    const deja_env *e = deja_env_current(NULL);
    int mkl = 0, other = 0;
    for (size_t i = 0; i < e->nvars; i++) {
        mkl |= strcmp(e->vars[i].key, "MKL_CBWR") == 0 && strcmp(e->vars[i].value, "AVX2") == 0;
        other |= strcmp(e->vars[i].key, "DEJA_TEST_UNSELECTED") == 0;
    }
    assert_true(mkl);
    assert_false(other);
}

static const char *var_of(const deja_env *e, const char *key)
{
    for (size_t i = 0; i < e->nvars; i++)
        if (strcmp(e->vars[i].key, key) == 0)
            return e->vars[i].value;
    return NULL;
}

/* Other tools' variables that share a library's first letters, and any
 * name that looks like a secret, are never recorded by default. */
static void test_env__no_secrets_by_default(void **state)
{
    (void)state;
    const deja_env *e = deja_env_current(NULL);
    assert_null(var_of(e, "TF_VAR_db_password"));
    assert_null(var_of(e, "TF_TOKEN_app_terraform_io"));
    assert_null(var_of(e, "MKL_LICENSE_KEY"));
    assert_null(var_of(e, "OMP_AUTH_TOKEN"));
    assert_null(var_of(e, "DEJA_TEST_ADDED"));
    assert_string_equal(var_of(e, "TF_DETERMINISTIC_OPS"), "1");
    assert_string_equal(var_of(e, "OMP_NUM_THREADS"), "3");
    for (size_t i = 0; i < e->nvars; i++) {
        assert_false(deja_env_var_is_secret(e->vars[i].key));
        if (strcmp(e->vars[i].key, "DEJA_TEST_FROM_ENV") != 0)
            assert_true(deja_env_var_is_default(e->vars[i].key));
    }
    assert_true(deja_env_var_is_secret("MKL_LICENSE_KEY"));
    assert_true(deja_env_var_is_secret("github_token"));
    assert_true(deja_env_var_is_secret("AWS_SECRET_ACCESS_KEY"));
    assert_true(deja_env_var_is_secret("DB_PASSWORD"));
    assert_true(deja_env_var_is_secret("GOOGLE_APPLICATION_CREDENTIALS"));
    assert_false(deja_env_var_is_secret("OMP_NUM_THREADS"));
    assert_false(deja_env_var_is_default("TF_VAR_region"));
    assert_false(deja_env_var_is_default("MKL_LICENSE_KEY"));
    assert_true(deja_env_var_is_default("MKL_NUM_THREADS"));
}

/* The tracer's env_vars adds and removes names and prefixes, after
 * DEJA_ENV_VARS; a secret stays out even when asked for; a bad rule is
 * refused when the tracer opens. */
static void test_env__user_selection(void **state)
{
    (void)state;
    deja_env *e = NULL;
    deja_digest d, base;
    deja_env_current(&base);
    assert_int_equal(deja__env_capture_with("DEJA_TEST_ADDED, -OMP_* MKL_LICENSE_KEY +MY_*", &e,
                                            &d),
                     0);
    assert_string_equal(var_of(e, "DEJA_TEST_ADDED"), "yes");
    assert_string_equal(var_of(e, "MY_SEED_MODE"), "fixed");
    assert_null(var_of(e, "OMP_NUM_THREADS"));
    assert_null(var_of(e, "MKL_LICENSE_KEY"));
    assert_null(var_of(e, "MY_API_KEY"));
    assert_string_equal(var_of(e, "MKL_CBWR"), "AVX2");
    assert_memory_not_equal(&d, &base, sizeof d);
    deja_digest again = digest_of_env(e);
    assert_memory_equal(&d, &again, sizeof d);
    deja_env_free(e);
    /* Removing what DEJA_ENV_VARS added ("DEJA_TEST_FROM_ENV" is added in
     * main through it). */
    assert_string_equal(var_of(deja_env_current(NULL), "DEJA_TEST_FROM_ENV"), "1");
    assert_int_equal(deja__env_capture_with("-DEJA_TEST_FROM_ENV", &e, &d), 0);
    assert_null(var_of(e, "DEJA_TEST_FROM_ENV"));
    deja_env_free(e);
    assert_int_equal(deja__env_capture_with("GOOD, bad=rule", &e, &d), DEJA_EINVAL);
    assert_null(e);
    assert_non_null(strstr(deja_error_last(), "'bad=rule'"));
    deja_tracer *t = NULL;
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.env_vars = "*";
    assert_int_equal(deja_tracer_open(&t, "/tmp/deja_never_created", &o), DEJA_EINVAL);
    assert_null(t);
}

/* Libraries declared before the capture (in main) are among the libs,
 * sorted with deja's own; after it, a new value is refused and the same
 * one accepted. */
static void test_env__lib_set(void **state)
{
    (void)state;
    const deja_env *e = deja_env_current(NULL);
    int torch = 0, threads = 0;
    for (size_t i = 0; i < e->nlibs; i++) {
        torch |= strcmp(e->libs[i].key, "torch") == 0 && strcmp(e->libs[i].value, "1.13.1") == 0;
        threads |= strcmp(e->libs[i].key, "torch.threads") == 0 &&
                   strcmp(e->libs[i].value, "2") == 0;
        if (i > 0)
            assert_true(strcmp(e->libs[i - 1].key, e->libs[i].key) < 0);
    }
    assert_true(torch);
    assert_true(threads);
    assert_int_equal(deja_env_lib_set("torch", "1.13.1"), 0);
    assert_int_equal(deja_env_lib_set("torch", "2.0"), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "after the environment was captured"));
    assert_int_equal(deja_env_lib_set("", "1"), DEJA_EINVAL);
}

int main(void)
{
    setenv("TF_VAR_db_password", "hunter2", 1);
    setenv("TF_TOKEN_app_terraform_io", "tok", 1);
    setenv("MKL_LICENSE_KEY", "lic", 1);
    setenv("OMP_AUTH_TOKEN", "tok", 1);
    setenv("MY_API_KEY", "k", 1);
    setenv("MY_SEED_MODE", "fixed", 1);
    setenv("TF_DETERMINISTIC_OPS", "1", 1);
    setenv("OMP_NUM_THREADS", "3", 1);
    setenv("DEJA_TEST_ADDED", "yes", 1);
    setenv("DEJA_TEST_FROM_ENV", "1", 1);
    setenv("DEJA_ENV_VARS", "DEJA_TEST_FROM_ENV", 1);
    assert_int_equal(deja_env_lib_set("torch", "1.0"), 0);
    assert_int_equal(deja_env_lib_set("torch", "1.13.1"), 0); /* replaces */
    assert_int_equal(deja_env_lib_set("torch.threads", "2"), 0);
    setenv("MKL_CBWR", "AVX2", 1);
    setenv("DEJA_TEST_UNSELECTED", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env__fields_plausible),
        cmocka_unit_test(test_env__cached_and_stable),
        cmocka_unit_test(test_env__digest_follows_vars),
        cmocka_unit_test(test_env__vars_selected),
        cmocka_unit_test(test_env__no_secrets_by_default),
        cmocka_unit_test(test_env__user_selection),
        cmocka_unit_test(test_env__lib_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
