/*
 * tests/test_diff.c -- the output diff on hand-made tensors: ULP edge
 * cases, NaN and -0.0, shape and dtype mismatches, different sets of
 * names, label changes of scores, integers, bytes and UTF-8 text; and the
 * environment comparison.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "deja.h"

#include <cmocka.h>

static const uint64_t SHAPE3[1] = {3};
static const uint64_t SHAPE1[1] = {1};

static deja_tensor f32(const char *name, const float *v, size_t n, const uint64_t *shape)
{
    deja_tensor t = {name, DEJA_F32, 1, shape, v, n * sizeof(float)};
    return t;
}

static deja_tensor text(const char *name, const char *s)
{
    deja_tensor t = {name, DEJA_UTF8, 0, NULL, s, strlen(s)};
    return t;
}

/* Diff a single pair with `o` (NULL: defaults) and return the diff. */
static deja_diff *diff1(const deja_tensor *a, const deja_tensor *b, const deja_diff_options *o)
{
    deja_diff *d = NULL;
    assert_int_equal(deja_diff_outputs(a, 1, b, 1, o, &d), 0);
    assert_non_null(d);
    assert_int_equal(d->ntensors, 1);
    return d;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_diff__identical_is_same(void **state)
{
    float a[3] = {1.0f, -2.5f, 3.25f};
    deja_tensor ta = f32("y", a, 3, SHAPE3), tb = f32("y", a, 3, SHAPE3);
    deja_diff *d = diff1(&ta, &tb, NULL);
    (void)state;
    assert_int_equal(d->verdict, DEJA_VERDICT_SAME);
    assert_int_equal(d->tensors[0].kind, DEJA_DIFF_EQUAL);
    assert_int_equal(d->tensors[0].ndiff, 0);
    assert_int_equal(d->tensors[0].first, -1);
    assert_string_equal(d->tensors[0].detail, "");
    assert_string_equal(d->summary, "1 output bit-identical");
    assert_string_equal(deja_verdict_name(d->verdict), "same");
    deja_diff_free(d);
}

static void test_diff__negative_zero_is_close(void **state)
{
    float a[1] = {0.0f}, b[1] = {-0.0f};
    deja_tensor ta = f32("y", a, 1, SHAPE1), tb = f32("y", b, 1, SHAPE1);
    deja_diff_options exact = DEJA_DIFF_OPTIONS_INIT;
    deja_diff *d;
    (void)state;
    exact.atol = 0;
    exact.rtol = 0;
    d = diff1(&ta, &tb, &exact);
    /* Not bit-identical, but equal as numbers: 0 ulps, 0 error. */
    assert_int_equal(d->verdict, DEJA_VERDICT_CLOSE);
    assert_int_equal(d->tensors[0].ndiff, 1);
    assert_int_equal(d->tensors[0].nbeyond, 0);
    assert_int_equal(d->tensors[0].max_ulps, 0);
    assert_true(d->tensors[0].max_abs == 0.0);
    deja_diff_free(d);
}

static void test_diff__ulps(void **state)
{
    float a[3] = {1.0f, 0.0f, 3.0f};
    float b[3] = {1.0f, 0.0f, 3.0f};
    deja_tensor ta = f32("y", a, 3, SHAPE3), tb = f32("y", b, 3, SHAPE3);
    deja_diff_options o = DEJA_DIFF_OPTIONS_INIT;
    deja_diff *d;
    (void)state;
    o.atol = 0;
    o.rtol = 0;
    /* Adjacent floats: one ulp apart. */
    b[0] = nextafterf(1.0f, 2.0f);
    d = diff1(&ta, &tb, &o);
    assert_int_equal(d->tensors[0].max_ulps, 1);
    assert_int_equal(d->tensors[0].first, 0);
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    deja_diff_free(d);
    o.ulps = 1;
    d = diff1(&ta, &tb, &o);
    assert_int_equal(d->verdict, DEJA_VERDICT_CLOSE);
    deja_diff_free(d);
    /* Across zero: the smallest denormals of each sign are 2 ulps apart. */
    b[0] = 1.0f;
    a[1] = from_bits(0x00000001u);
    b[1] = from_bits(0x80000001u);
    o.ulps = 0;
    d = diff1(&ta, &tb, &o);
    assert_int_equal(d->tensors[0].max_ulps, 2);
    assert_int_equal(d->tensors[0].first, 1);
    assert_int_equal(d->tensors[0].ndiff, 1);
    deja_diff_free(d);
    /* The largest float and infinity are 1 ulp apart, but an infinity
     * only matches itself. */
    a[1] = 0.0f;
    b[1] = 0.0f;
    a[2] = FLT_MAX;
    b[2] = INFINITY;
    o.ulps = 5;
    d = diff1(&ta, &tb, &o);
    assert_int_equal(d->tensors[0].max_ulps, 1);
    assert_int_equal(d->tensors[0].nnan, 1);
    assert_true(isinf(d->tensors[0].max_abs));
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    deja_diff_free(d);
}

static void test_diff__tolerances(void **state)
{
    float a[3] = {1.0f, 100.0f, 1e-3f};
    float b[3] = {1.0f + 1e-6f, 100.0f, 1e-3f};
    deja_tensor ta = f32("y", a, 3, SHAPE3), tb = f32("y", b, 3, SHAPE3);
    deja_diff_options o = DEJA_DIFF_OPTIONS_INIT;
    deja_diff *d;
    (void)state;
    d = diff1(&ta, &tb, NULL); /* atol 1e-5 and rtol 1.3e-6 by default for f32 */
    assert_int_equal(d->verdict, DEJA_VERDICT_CLOSE);
    assert_true(d->tensors[0].max_abs > 5e-7 && d->tensors[0].max_abs < 2e-6);
    assert_non_null(strstr(d->tensors[0].detail, "within tolerance"));
    deja_diff_free(d);
    o.rtol = 0;
    o.atol = 1e-7;
    d = diff1(&ta, &tb, &o);
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    assert_int_equal(d->tensors[0].nbeyond, 1);
    deja_diff_free(d);
    o.atol = 1e-5;
    d = diff1(&ta, &tb, &o);
    assert_int_equal(d->verdict, DEJA_VERDICT_CLOSE);
    deja_diff_free(d);
}

static void test_diff__nan(void **state)
{
    float a[3] = {NAN, 1.0f, 2.0f};
    float b[3] = {NAN, 1.0f, 2.0f};
    deja_tensor ta = f32("y", a, 3, SHAPE3), tb = f32("y", b, 3, SHAPE3);
    deja_diff *d;
    (void)state;
    d = diff1(&ta, &tb, NULL);
    assert_int_equal(d->verdict, DEJA_VERDICT_SAME);
    deja_diff_free(d);
    /* Another NaN payload: equal as values, not as bits. */
    b[0] = from_bits(0x7fc00123u);
    d = diff1(&ta, &tb, NULL);
    assert_int_equal(d->verdict, DEJA_VERDICT_CLOSE);
    assert_int_equal(d->tensors[0].nnan, 0);
    deja_diff_free(d);
    /* NaN against a number never matches, whatever the tolerance. */
    b[0] = NAN;
    b[1] = NAN;
    {
        deja_diff_options loose = DEJA_DIFF_OPTIONS_INIT;
        loose.atol = 1e30;
        loose.ulps = UINT64_MAX;
        d = diff1(&ta, &tb, &loose);
    }
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    assert_int_equal(d->tensors[0].nnan, 1);
    assert_int_equal(d->tensors[0].first, 1);
    assert_non_null(strstr(d->tensors[0].detail, "NaN/Inf"));
    deja_diff_free(d);
}

static void test_diff__shape_and_dtype_mismatch(void **state)
{
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint64_t s23[2] = {2, 3}, s32[2] = {3, 2};
    deja_tensor ta = {"y", DEJA_F32, 2, s23, a, sizeof(a)};
    deja_tensor tb = {"y", DEJA_F32, 2, s32, a, sizeof(a)};
    deja_tensor tc = {"y", DEJA_I32, 2, s23, a, sizeof(a)};
    deja_diff *d;
    (void)state;
    d = diff1(&ta, &tb, NULL);
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    assert_int_equal(d->tensors[0].kind, DEJA_DIFF_SHAPE);
    assert_non_null(strstr(d->tensors[0].detail, "f32[2,3] vs f32[3,2]"));
    deja_diff_free(d);
    d = diff1(&ta, &tc, NULL);
    assert_int_equal(d->tensors[0].kind, DEJA_DIFF_DTYPE);
    assert_int_equal(d->tensors[0].dtype_a, DEJA_F32);
    assert_int_equal(d->tensors[0].dtype_b, DEJA_I32);
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    deja_diff_free(d);
}

static void test_diff__different_names(void **state)
{
    float v[3] = {1, 2, 3};
    deja_tensor a[2] = {f32("logits", v, 3, SHAPE3), text("label", "cat")};
    deja_tensor b[2] = {text("label", "cat"), f32("scores", v, 3, SHAPE3)};
    deja_diff *d = NULL;
    (void)state;
    assert_int_equal(deja_diff_outputs(a, 2, b, 2, NULL, &d), 0);
    assert_int_equal(d->ntensors, 3);
    assert_string_equal(d->tensors[0].name, "logits");
    assert_int_equal(d->tensors[0].kind, DEJA_DIFF_ONLY_A);
    assert_string_equal(d->tensors[1].name, "label");
    assert_int_equal(d->tensors[1].kind, DEJA_DIFF_EQUAL);
    assert_string_equal(d->tensors[2].name, "scores");
    assert_int_equal(d->tensors[2].kind, DEJA_DIFF_ONLY_B);
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    assert_non_null(strstr(d->summary, "2 of 3 outputs differ"));
    deja_diff_free(d);
    /* No outputs on either side. */
    assert_int_equal(deja_diff_outputs(NULL, 0, NULL, 0, NULL, &d), 0);
    assert_int_equal(d->verdict, DEJA_VERDICT_SAME);
    deja_diff_free(d);
}

static void test_diff__label_change(void **state)
{
    float a[6] = {0.1f, 0.9f, 0.3f, 0.5f, 0.2f, 0.1f};
    float b[6] = {0.1f, 0.2f, 0.8f, 0.5f, 0.2f, 0.1f};
    uint64_t s23[2] = {2, 3};
    deja_tensor ta = {"logits", DEJA_F32, 2, s23, a, sizeof(a)};
    deja_tensor tb = {"logits", DEJA_F32, 2, s23, b, sizeof(b)};
    deja_diff *d;
    (void)state;
    d = diff1(&ta, &tb, NULL);
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    assert_true(d->tensors[0].is_scores);
    assert_int_equal(d->tensors[0].rows, 2);
    assert_int_equal(d->tensors[0].rows_label, 1);
    assert_int_equal(d->tensors[0].label_row, 0);
    assert_int_equal(d->tensors[0].label_a, 1);
    assert_int_equal(d->tensors[0].label_b, 2);
    assert_non_null(strstr(d->tensors[0].detail, "label 1 \u2192 2"));
    deja_diff_free(d);
    /* A tiny change that keeps the arg-max is close; the same change in a
     * tensor not named like scores has no label analysis. */
    memcpy(b, a, sizeof(a));
    b[0] = nextafterf(b[0], 1.0f);
    d = diff1(&ta, &tb, NULL);
    assert_int_equal(d->verdict, DEJA_VERDICT_CLOSE);
    assert_int_equal(d->tensors[0].rows_label, 0);
    deja_diff_free(d);
    ta.name = tb.name = "embedding";
    b[1] = 0.0f;
    b[2] = 5.0f;
    d = diff1(&ta, &tb, NULL);
    assert_false(d->tensors[0].is_scores);
    assert_null(strstr(d->tensors[0].detail, "label"));
    deja_diff_free(d);
}

static void test_diff__top_k(void **state)
{
    float a[4] = {0.9f, 0.5f, 0.4f, 0.1f};
    float b[4] = {0.9f, 0.4f, 0.5f, 0.1f};
    uint64_t s4[1] = {4};
    deja_tensor ta = {"probs", DEJA_F32, 1, s4, a, sizeof(a)};
    deja_tensor tb = {"probs", DEJA_F32, 1, s4, b, sizeof(b)};
    deja_diff *d = diff1(&ta, &tb, NULL);
    (void)state;
    assert_int_equal(d->tensors[0].rows_label, 0);
    assert_int_equal(d->tensors[0].rows_topk, 1);
    assert_non_null(strstr(d->tensors[0].detail, "top-5"));
    deja_diff_free(d);
}

static void test_diff__integers_and_bytes(void **state)
{
    int32_t a[5] = {1, 2, 3, 4, 5}, b[5] = {1, 2, -7, 4, 9};
    uint64_t s5[1] = {5};
    deja_tensor ta = {"ids", DEJA_I32, 1, s5, a, sizeof(a)};
    deja_tensor tb = {"ids", DEJA_I32, 1, s5, b, sizeof(b)};
    const uint8_t ba[4] = {1, 2, 3, 4}, bb[6] = {1, 2, 9, 4, 5, 6};
    deja_tensor xa = {"blob", DEJA_BYTES, 0, NULL, ba, sizeof(ba)};
    deja_tensor xb = {"blob", DEJA_BYTES, 0, NULL, bb, sizeof(bb)};
    deja_diff_options loose = DEJA_DIFF_OPTIONS_INIT;
    deja_diff *d;
    (void)state;
    loose.atol = 100; /* integers have no tolerance */
    d = diff1(&ta, &tb, &loose);
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    assert_int_equal(d->tensors[0].ndiff, 2);
    assert_int_equal(d->tensors[0].first, 2);
    assert_non_null(strstr(d->tensors[0].detail, "first at [2]: 3 vs -7"));
    deja_diff_free(d);
    d = diff1(&xa, &xb, NULL);
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    assert_int_equal(d->tensors[0].kind, DEJA_DIFF_VALUES);
    assert_int_equal(d->tensors[0].first, 2);
    assert_int_equal(d->tensors[0].ndiff, 3); /* offset 2, and 2 extra bytes */
    assert_non_null(strstr(d->tensors[0].detail, "offset 2"));
    deja_diff_free(d);
}

static void test_diff__utf8_text(void **state)
{
    deja_tensor a = text("completion", "Le café est très bon ce matin, dit-elle.");
    deja_tensor b = text("completion", "Le café est très mauvais ce matin, dit-elle.");
    deja_tensor c = text("completion", "Le cafè est très bon ce matin, dit-elle.");
    deja_diff *d;
    (void)state;
    d = diff1(&a, &b, NULL);
    assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
    /* "Le café est très " is 19 bytes and 17 characters. */
    assert_int_equal(d->tensors[0].first, 19);
    assert_non_null(strstr(d->tensors[0].detail, "byte 19 (character 17)"));
    assert_non_null(d->tensors[0].hunk);
    assert_string_equal(d->tensors[0].hunk,
                        "Le café est très [-bon-]{+mauvais+} ce matin, dit-elle.");
    deja_diff_free(d);
    /* The difference falls inside a two-byte character ("é" is C3 A9, "è"
     * C3 A8): it is reported at the character's start. */
    d = diff1(&a, &c, NULL);
    assert_int_equal(d->tensors[0].first, 6);
    assert_non_null(strstr(d->tensors[0].detail, "byte 6 (character 6)"));
    assert_string_equal(d->tensors[0].hunk, "Le [-café-]{+cafè+} est très bon ce ...");
    deja_diff_free(d);
    /* Invalid UTF-8 and control characters are escaped in the hunk. */
    a = text("t", "ok \xff\xfe end");
    b = text("t", "ok line\x01" "break end");
    d = diff1(&a, &b, NULL);
    assert_string_equal(d->tensors[0].hunk, "ok [-\\xff\\xfe-]{+line\\x01break+} end");
    deja_diff_free(d);
    /* A text that is a prefix of the other. */
    a = text("t", "one two");
    b = text("t", "one two three");
    d = diff1(&a, &b, NULL);
    assert_int_equal(d->tensors[0].first, 7);
    assert_string_equal(d->tensors[0].hunk, "one two {+three+}");
    deja_diff_free(d);
}

static void test_diff__text_hunk_resyncs(void **state)
{
    deja_tensor a = text("t", "a b c d e f g h i j k l m n o p");
    deja_tensor b = text("t", "a b c d e X Y g h i j k l m n Z p");
    deja_diff_options one = DEJA_DIFF_OPTIONS_INIT;
    deja_diff *d = diff1(&a, &b, NULL);
    (void)state;
    /* Every hunk (up to the default limit), the words between two close
     * ones in full. */
    assert_string_equal(d->tensors[0].hunk,
                        "... b c d e [-f-]{+X Y+} g h i j k l m n [-o-]{+Z+} p");
    deja_diff_free(d);
    /* max_hunks 1: the first hunk, and a word that more follow. */
    one.max_hunks = 1;
    d = diff1(&a, &b, &one);
    assert_string_equal(d->tensors[0].hunk,
                        "... b c d e [-f-]{+X Y+} g h i j ... (more differences after 1 hunk)");
    assert_non_null(strstr(d->tensors[0].detail, "(more differences after 1 hunk)"));
    deja_diff_free(d);
}

/* Hunks far apart are each shown with their context, the gap cut; past the
 * limit, the rest is announced, not described. */
static void test_diff__text_many_hunks(void **state)
{
    deja_tensor a =
        text("t", "w1 A w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 B x1 x2 x3 C y1 y2 y3 D z1 z2 z3 E w15");
    deja_tensor b =
        text("t", "w1 a w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 b x1 x2 x3 c y1 y2 y3 d z1 z2 z3 e w15");
    deja_diff_options o = DEJA_DIFF_OPTIONS_INIT;
    deja_diff *d = diff1(&a, &b, NULL);
    (void)state;
    /* The default limit, 3: the gap between hunks 1 and 2 is cut. */
    assert_string_equal(d->tensors[0].hunk,
                        "w1 [-A-]{+a+} w2 w3 w4 w5 ... w8 w9 w10 w11 [-B-]{+b+} x1 x2 x3 "
                        "[-C-]{+c+} y1 y2 y3 ... (more differences after 3 hunks)");
    deja_diff_free(d);
    o.max_hunks = 10;
    d = diff1(&a, &b, &o);
    assert_string_equal(d->tensors[0].hunk,
                        "w1 [-A-]{+a+} w2 w3 w4 w5 ... w8 w9 w10 w11 [-B-]{+b+} x1 x2 x3 "
                        "[-C-]{+c+} y1 y2 y3 [-D-]{+d+} z1 z2 z3 [-E-]{+e+} w15");
    deja_diff_free(d);
    o.max_hunks = DEJA_DIFF_MAX_HUNKS_LIMIT + 1;
    assert_int_equal(deja_diff_tensor(&a, &b, &o, &d), DEJA_EINVAL);
}

static void test_diff__env_compare(void **state)
{
    const char *isa_a[] = {"avx2", "avx512f", "fma", "sse2"};
    const char *isa_b[] = {"avx2", "fma", "sse2", "vaes"};
    deja_kv libs_a[] = {{"libm", "2.36"}, {"openblas", "0.3.21"}};
    deja_kv libs_b[] = {{"libm", "2.36"}, {"openblas", "0.3.26"}};
    deja_kv vars_a[] = {{"OMP_NUM_THREADS", "8"}};
    deja_env a, b;
    deja_env_diff *d = NULL;
    size_t i;
    int saw_isa = 0, saw_threads = 0, saw_lib = 0, saw_var = 0;
    (void)state;
    memset(&a, 0, sizeof(a));
    a.arch = "x86_64";
    a.cpu_vendor = "GenuineIntel";
    a.cpu_model = "Xeon";
    a.isa = isa_a;
    a.nisa = 4;
    a.threads = 8;
    a.cores = 8;
    a.fp_rounding = "nearest";
    a.libs = libs_a;
    a.nlibs = 2;
    a.vars = vars_a;
    a.nvars = 1;
    b = a;
    assert_int_equal(deja_env_compare(&a, &b, &d), 0);
    assert_int_equal(d->nlines, 0);
    deja_env_diff_free(d);
    b.isa = isa_b;
    b.threads = 2;
    b.libs = libs_b;
    b.vars = NULL;
    b.nvars = 0;
    b.kernel = "another kernel"; /* not numerics-relevant */
    assert_int_equal(deja_env_compare(&a, &b, &d), 0);
    for (i = 0; i < d->nlines; i++) {
        const char *l = d->lines[i];
        saw_isa += strstr(l, "avx512f") != NULL;
        saw_threads += strstr(l, "threads: 8 recorded, 2 now") != NULL;
        saw_lib += strstr(l, "openblas") != NULL;
        saw_var += strstr(l, "OMP_NUM_THREADS") != NULL;
        assert_null(strstr(l, "vaes"));
        assert_null(strstr(l, "kernel"));
    }
    assert_int_equal(saw_isa, 1);
    assert_int_equal(saw_threads, 1);
    assert_int_equal(saw_lib, 1);
    assert_int_equal(saw_var, 1);
    assert_int_equal(d->nlines, 4);
    deja_env_diff_free(d);
    assert_int_equal(deja_env_compare(NULL, &b, &d), 0);
    assert_int_equal(d->nlines, 1);
    deja_env_diff_free(d);
}

static void test_diff__f16_and_f64(void **state)
{
    uint16_t ha[2] = {0x3c00, 0x4000}, hb[2] = {0x3c01, 0x4000}; /* 1.0, 2.0 */
    double da[2] = {1.0, 2.0}, db[2] = {1.0, nextafter(2.0, 3.0)};
    uint64_t s2[1] = {2};
    deja_tensor a = {"h", DEJA_F16, 1, s2, ha, sizeof(ha)};
    deja_tensor b = {"h", DEJA_F16, 1, s2, hb, sizeof(hb)};
    deja_tensor c = {"d", DEJA_F64, 1, s2, da, sizeof(da)};
    deja_tensor e = {"d", DEJA_F64, 1, s2, db, sizeof(db)};
    deja_diff *d;
    (void)state;
    d = diff1(&a, &b, NULL); /* f16's default rtol is 1e-3 */
    assert_int_equal(d->tensors[0].max_ulps, 1);
    assert_true(fabs(d->tensors[0].max_abs - 1.0 / 1024) < 1e-12);
    assert_int_equal(d->verdict, DEJA_VERDICT_CLOSE);
    deja_diff_free(d);
    {
        deja_diff_options exact = DEJA_DIFF_OPTIONS_INIT;
        exact.atol = 0;
        exact.rtol = 0;
        d = diff1(&a, &b, &exact);
        assert_int_equal(d->verdict, DEJA_VERDICT_DIVERGED);
        deja_diff_free(d);
    }
    d = diff1(&c, &e, NULL);
    assert_int_equal(d->tensors[0].max_ulps, 1);
    assert_int_equal(d->tensors[0].first, 1);
    assert_int_equal(d->verdict, DEJA_VERDICT_CLOSE);
    deja_diff_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff__identical_is_same),
        cmocka_unit_test(test_diff__negative_zero_is_close),
        cmocka_unit_test(test_diff__ulps),
        cmocka_unit_test(test_diff__tolerances),
        cmocka_unit_test(test_diff__nan),
        cmocka_unit_test(test_diff__shape_and_dtype_mismatch),
        cmocka_unit_test(test_diff__different_names),
        cmocka_unit_test(test_diff__label_change),
        cmocka_unit_test(test_diff__top_k),
        cmocka_unit_test(test_diff__integers_and_bytes),
        cmocka_unit_test(test_diff__utf8_text),
        cmocka_unit_test(test_diff__text_hunk_resyncs),
        cmocka_unit_test(test_diff__text_many_hunks),
        cmocka_unit_test(test_diff__env_compare),
        cmocka_unit_test(test_diff__f16_and_f64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
