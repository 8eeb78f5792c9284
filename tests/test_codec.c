/*
 * tests/test_codec.c -- encoding and decoding of traces and environments.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "deja.h"
#include "core/limits.h"
#include "proto/codec.h"
#include "store/store.h"

/* ------------------------------------------------------------------------
 * A fake blob store for the `put` callback.
 * ---------------------------------------------------------------------- */

#define FAKE_MAX 64

typedef struct fake_store {
    deja_digest keys[FAKE_MAX];
    void *data[FAKE_MAX];
    size_t size[FAKE_MAX];
    size_t n;
    size_t calls;
    int fail;
} fake_store;

static int fake_put(const void *data, size_t size, deja_digest *out, void *payload)
{
    fake_store *fs = payload;

    fs->calls++;
    if (fs->fail)
        return deja__error_set(DEJA_EIO, "disk on fire");
    *out = deja_digest_of(data, size);
    for (size_t i = 0; i < fs->n; i++) {
        if (memcmp(fs->keys[i].bytes, out->bytes, 16) == 0)
            return 0;
    }
    assert_true(fs->n < FAKE_MAX);
    fs->keys[fs->n] = *out;
    fs->data[fs->n] = malloc(size);
    assert_non_null(fs->data[fs->n]);
    memcpy(fs->data[fs->n], data, size);
    fs->size[fs->n] = size;
    fs->n++;
    return 0;
}

static const void *fake_get(const fake_store *fs, const deja_digest *d, size_t *size)
{
    for (size_t i = 0; i < fs->n; i++) {
        if (memcmp(fs->keys[i].bytes, d->bytes, 16) == 0) {
            *size = fs->size[i];
            return fs->data[i];
        }
    }
    return NULL;
}

static void fake_free(fake_store *fs)
{
    for (size_t i = 0; i < fs->n; i++)
        free(fs->data[i]);
    fs->n = 0;
}

/* ------------------------------------------------------------------------
 * A full trace
 * ---------------------------------------------------------------------- */

#define NDT 15
#define BIG 5000

typedef struct sample {
    deja_trace t;
    deja_tensor in[NDT];
    uint64_t shapes[NDT][2];
    uint8_t payload[NDT][64];
    deja_tensor out[2];
    uint64_t out_shape[2][1];
    float big[BIG / 4];
    char text[BIG];
    deja_param params[4];
    deja_seed seeds[2];
    uint64_t draws[3];
    deja_rng_stream rng[2];
    int64_t clocks[3];
    deja_tag tags[2];
    uint8_t digest[20];
} sample;

static void make_sample(sample *s)
{
    memset(s, 0, sizeof *s);
    deja__id_new_at(&s->t.id, 1700000000123LL);
    s->t.start_ns = 1700000000123456789LL;
    s->t.duration_ns = 4242;
    s->t.model_name = "sentiment";
    s->t.model_version = "2.1.0";
    for (int i = 0; i < 20; i++)
        s->digest[i] = (uint8_t)(i * 13);
    s->t.model_digest = s->digest;
    s->t.model_digest_size = 20;

    /* One inline input per dtype, shape [2, k] filling the payload. */
    static const char *names[NDT] = {"a", "b", "c", "d", "e", "f", "g",     "h",
                                     "i", "j", "k", "l", "m", "n", "prompt"};
    for (int d = 1; d <= NDT; d++) {
        const size_t es = deja_dtype_size((deja_dtype)d);
        const size_t k = 3;
        deja_tensor *t = &s->in[d - 1];

        for (size_t b = 0; b < sizeof s->payload[0]; b++)
            s->payload[d - 1][b] = (uint8_t)(b * 7 + (size_t)d);
        t->name = names[d - 1];
        t->dtype = (deja_dtype)d;
        s->shapes[d - 1][0] = 2;
        s->shapes[d - 1][1] = k;
        t->ndim = 2;
        t->shape = s->shapes[d - 1];
        t->data = s->payload[d - 1];
        t->size = 2 * k * es;
    }
    /* utf8 text as shape [bytes] */
    s->in[NDT - 1].ndim = 1;
    s->shapes[NDT - 1][0] = 5;
    memcpy(s->payload[NDT - 1], "hello", 5);
    s->in[NDT - 1].size = 5;
    s->t.inputs = s->in;
    s->t.ninputs = NDT;

    /* Two outputs larger than the inline limit. */
    for (int i = 0; i < BIG / 4; i++)
        s->big[i] = (float)i * 0.5f;
    s->out_shape[0][0] = BIG / 4;
    s->out[0] = (deja_tensor){"logits", DEJA_F32, 1, s->out_shape[0], s->big, BIG};
    memset(s->text, 'z', sizeof s->text);
    s->out_shape[1][0] = BIG;
    s->out[1] = (deja_tensor){"completion", DEJA_UTF8, 1, s->out_shape[1], s->text, BIG};
    s->t.outputs = s->out;
    s->t.noutputs = 2;

    s->params[0] = (deja_param){"temperature", DEJA_PARAM_NUM, 0.7, NULL, 0};
    s->params[1] = (deja_param){"stop", DEJA_PARAM_STR, 0, "\n\n", 0};
    s->params[2] = (deja_param){"greedy", DEJA_PARAM_BOOL, 0, NULL, 1};
    s->params[3] = (deja_param){"zero", DEJA_PARAM_NUM, 0.0, NULL, 0};
    s->t.params = s->params;
    s->t.nparams = 4;
    s->seeds[0] = (deja_seed){"numpy", 42};
    s->seeds[1] = (deja_seed){"torch", UINT64_MAX};
    s->t.seeds = s->seeds;
    s->t.nseeds = 2;
    s->draws[0] = 1;
    s->draws[1] = UINT64_MAX;
    s->draws[2] = 0;
    s->rng[0] = (deja_rng_stream){"sampler", 7, s->draws, 3};
    s->rng[1] = (deja_rng_stream){"dropout", 9, NULL, 0};
    s->t.rng = s->rng;
    s->t.nrng = 2;
    s->clocks[0] = 1;
    s->clocks[1] = -5;
    s->clocks[2] = INT64_MAX;
    s->t.clock_ns = s->clocks;
    s->t.nclock = 3;
    s->t.has_env = 1;
    s->t.env = deja_digest_of("env", 3);
    s->t.status = DEJA_STATUS_ERROR;
    s->t.error = "model exploded";
    s->tags[0] = (deja_tag){"user", "alice"};
    s->tags[1] = (deja_tag){"empty", ""};
    s->t.tags = s->tags;
    s->t.ntags = 2;
    s->t.has_parent = 1;
    deja__id_new_at(&s->t.parent, 1700000000000LL);
}

static void assert_tensor_meta(const deja_tensor *a, const deja_tensor *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->ndim, b->ndim);
    for (size_t i = 0; i < a->ndim; i++)
        assert_int_equal(a->shape[i], b->shape[i]);
    assert_int_equal(a->size, b->size);
}

static void test_codec__round_trip_full(void **state)
{
    static sample s;
    fake_store fs = {0};
    deja__buf buf = {0};
    deja_trace *t = NULL;

    (void)state;
    make_sample(&s);
    assert_int_equal(deja__trace_encode(&s.t, DEJA__INLINE_MAX, fake_put, &fs, &buf), 0);
    assert_int_equal(fs.calls, 2);
    assert_true(buf.size < 2000); /* big payloads are not inline */
    assert_int_equal(deja__trace_decode(buf.data, buf.size, &t), 0);

    assert_memory_equal(t->id.bytes, s.t.id.bytes, 16);
    assert_int_equal(t->start_ns, s.t.start_ns);
    assert_int_equal(t->duration_ns, 4242);
    assert_string_equal(t->model_name, "sentiment");
    assert_string_equal(t->model_version, "2.1.0");
    assert_int_equal(t->model_digest_size, 20);
    assert_memory_equal(t->model_digest, s.digest, 20);

    assert_int_equal(t->ninputs, NDT);
    for (size_t i = 0; i < NDT; i++) {
        assert_tensor_meta(&t->inputs[i], &s.in[i]);
        assert_memory_equal(t->inputs[i].data, s.in[i].data, s.in[i].size);
        assert_null(deja__trace_blob(t, DEJA_INPUT, i));
    }
    assert_int_equal(t->noutputs, 2);
    for (size_t i = 0; i < 2; i++) {
        const deja_digest *d = deja__trace_blob(t, DEJA_OUTPUT, i);
        const void *stored;
        size_t size = 0;
        void *copy;

        assert_tensor_meta(&t->outputs[i], &s.out[i]);
        assert_null(t->outputs[i].data);
        assert_non_null(d);
        stored = fake_get(&fs, d, &size);
        assert_non_null(stored);
        assert_int_equal(size, s.out[i].size);
        copy = malloc(size);
        assert_non_null(copy);
        memcpy(copy, stored, size);
        assert_int_equal(deja__trace_attach(t, DEJA_OUTPUT, i, copy, size), 0);
        assert_ptr_equal(t->outputs[i].data, copy);
        assert_memory_equal(t->outputs[i].data, s.out[i].data, size);
    }
    assert_null(deja__trace_blob(t, DEJA_OUTPUT, 2));
    assert_null(deja__trace_blob(t, DEJA_INPUT, NDT));

    assert_int_equal(t->nparams, 4);
    assert_string_equal(t->params[0].key, "temperature");
    assert_int_equal(t->params[0].kind, DEJA_PARAM_NUM);
    assert_true(t->params[0].num == 0.7);
    assert_int_equal(t->params[1].kind, DEJA_PARAM_STR);
    assert_string_equal(t->params[1].str, "\n\n");
    assert_int_equal(t->params[2].kind, DEJA_PARAM_BOOL);
    assert_int_equal(t->params[2].flag, 1);
    assert_string_equal(t->params[2].str, "");
    assert_int_equal(t->params[3].kind, DEJA_PARAM_NUM); /* a zero keeps its kind */
    assert_true(t->params[3].num == 0.0);

    assert_int_equal(t->nseeds, 2);
    assert_string_equal(t->seeds[1].name, "torch");
    assert_true(t->seeds[1].value == UINT64_MAX);
    assert_int_equal(t->nrng, 2);
    assert_string_equal(t->rng[0].name, "sampler");
    assert_int_equal(t->rng[0].seed, 7);
    assert_int_equal(t->rng[0].ndraws, 3);
    assert_memory_equal(t->rng[0].draws, s.draws, sizeof s.draws);
    assert_int_equal(t->rng[1].ndraws, 0);
    assert_int_equal(t->nclock, 3);
    assert_memory_equal(t->clock_ns, s.clocks, sizeof s.clocks);
    assert_true(t->has_env);
    assert_memory_equal(t->env.bytes, s.t.env.bytes, 16);
    assert_int_equal(t->status, DEJA_STATUS_ERROR);
    assert_string_equal(t->error, "model exploded");
    assert_int_equal(t->ntags, 2);
    assert_string_equal(t->tags[0].key, "user");
    assert_string_equal(t->tags[0].value, "alice");
    assert_string_equal(t->tags[1].value, "");
    assert_true(t->has_parent);
    assert_memory_equal(t->parent.bytes, s.t.parent.bytes, 16);

    /* A decoded trace with its blobs attached encodes to the same bytes. */
    {
        deja__buf again = {0};
        fake_store fs2 = {0};
        assert_int_equal(deja__trace_encode(t, DEJA__INLINE_MAX, fake_put, &fs2, &again), 0);
        assert_int_equal(again.size, buf.size);
        assert_memory_equal(again.data, buf.data, buf.size);
        deja__buf_free(&again);
        fake_free(&fs2);
    }
    deja_trace_free(t);
    deja__buf_free(&buf);
    fake_free(&fs);
}

static void test_codec__minimal_trace(void **state)
{
    deja_trace in;
    deja__buf buf = {0};
    deja_trace *t = NULL;

    (void)state;
    memset(&in, 0, sizeof in);
    deja__id_new(&in.id);
    assert_int_equal(deja__trace_encode(&in, DEJA__INLINE_MAX, NULL, NULL, &buf), 0);
    assert_int_equal(deja__trace_decode(buf.data, buf.size, &t), 0);
    assert_memory_equal(t->id.bytes, in.id.bytes, 16);
    assert_string_equal(t->model_name, "");
    assert_string_equal(t->model_version, "");
    assert_string_equal(t->error, "");
    assert_int_equal(t->status, DEJA_STATUS_OK);
    assert_false(t->has_env);
    assert_false(t->has_parent);
    assert_int_equal(
        t->ninputs + t->noutputs + t->nparams + t->nseeds + t->nrng + t->ntags + t->nclock, 0);
    deja_trace_free(t);
    deja_trace_free(NULL);
    deja__buf_free(&buf);
}

/* Draws that the stream generator makes from the seed are stored as a
 * count and regenerated on decode, byte for byte; any other draws are
 * stored as they are. */
static void test_codec__rng_draws_by_count(void **state)
{
    enum { N = 500 };
    static uint64_t gen[N], odd[N];
    deja_rng_stream streams[2] = {{"sampling", 77, gen, N}, {"other", 5, odd, N}};
    deja_trace in;
    deja__buf buf = {0};
    deja_trace *t = NULL;

    (void)state;
    deja__rng_generate(77, gen, N);
    deja__rng_generate(6, odd, N); /* not the output of seed 5 */
    memset(&in, 0, sizeof in);
    deja__id_new(&in.id);
    in.rng = streams;
    in.nrng = 1;
    assert_int_equal(deja__trace_encode(&in, DEJA__INLINE_MAX, NULL, NULL, &buf), 0);
    assert_true(buf.size < 100); /* not 500 x 8 bytes */
    assert_int_equal(deja__trace_decode(buf.data, buf.size, &t), 0);
    assert_int_equal(t->nrng, 1);
    assert_int_equal(t->rng[0].ndraws, N);
    assert_memory_equal(t->rng[0].draws, gen, sizeof gen);
    deja_trace_free(t);

    in.nrng = 2;
    assert_int_equal(deja__trace_encode(&in, DEJA__INLINE_MAX, NULL, NULL, &buf), 0);
    assert_true(buf.size > N * 8);
    assert_int_equal(deja__trace_decode(buf.data, buf.size, &t), 0);
    assert_int_equal(t->rng[1].ndraws, N);
    assert_int_equal(t->rng[1].seed, 5);
    assert_memory_equal(t->rng[1].draws, odd, sizeof odd);
    assert_memory_equal(t->rng[0].draws, gen, sizeof gen);
    deja_trace_free(t);
    deja__buf_free(&buf);
}

static void test_codec__no_put_keeps_inline(void **state)
{
    static sample s;
    deja__buf buf = {0};
    deja_trace *t = NULL;

    (void)state;
    make_sample(&s);
    assert_int_equal(deja__trace_encode(&s.t, DEJA__INLINE_MAX, NULL, NULL, &buf), 0);
    assert_true(buf.size > 2 * BIG);
    assert_int_equal(deja__trace_decode(buf.data, buf.size, &t), 0);
    assert_null(deja__trace_blob(t, DEJA_OUTPUT, 0));
    assert_memory_equal(t->outputs[0].data, s.big, BIG);
    assert_memory_equal(t->outputs[1].data, s.text, BIG);
    deja_trace_free(t);
    deja__buf_free(&buf);
}

static void test_codec__encode_rejects(void **state)
{
    static sample s;
    fake_store fs = {0};
    deja__buf buf = {0};
    uint64_t bad_shape[2] = {3, 4};

    (void)state;
    make_sample(&s);
    fs.fail = 1;
    assert_int_equal(deja__trace_encode(&s.t, DEJA__INLINE_MAX, fake_put, &fs, &buf), DEJA_EIO);
    assert_non_null(strstr(deja_error_last(), "logits"));
    assert_non_null(strstr(deja_error_last(), "disk on fire"));

    make_sample(&s);
    s.in[2].shape = bad_shape; /* f32 [3,4] is 48 bytes, the payload 24 */
    assert_int_equal(deja__trace_encode(&s.t, DEJA__INLINE_MAX, NULL, NULL, &buf), DEJA_EINVAL);
    assert_non_null(strstr(deja_error_last(), "shape [3,4] holds 48 bytes of f32"));

    make_sample(&s);
    s.in[0].dtype = (deja_dtype)77;
    assert_int_equal(deja__trace_encode(&s.t, DEJA__INLINE_MAX, NULL, NULL, &buf), DEJA_EINVAL);

    make_sample(&s);
    s.in[0].ndim = DEJA_MAX_DIMS + 1;
    assert_int_equal(deja__trace_encode(&s.t, DEJA__INLINE_MAX, NULL, NULL, &buf), DEJA_EINVAL);
    deja__buf_free(&buf);
}

/* ------------------------------------------------------------------------
 * Hand-written protobuf, to build records the encoder would refuse.
 * ---------------------------------------------------------------------- */

static void pb_varint(deja__buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;

    do {
        tmp[n] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    assert_int_equal(deja__buf_append(b, tmp, n), 0);
}

static void pb_uint(deja__buf *b, unsigned field, uint64_t v)
{
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, v);
}

static void pb_bytes(deja__buf *b, unsigned field, const void *data, size_t len)
{
    pb_varint(b, ((uint64_t)field << 3) | 2);
    pb_varint(b, len);
    assert_int_equal(deja__buf_append(b, data, len), 0);
}

static void pb_str(deja__buf *b, unsigned field, const char *s)
{
    pb_bytes(b, field, s, strlen(s));
}

/* A tensor message: name, dtype, shape, inline data or blob, size. */
static void pb_tensor(deja__buf *trace, unsigned field, const char *name, unsigned dtype,
                      const uint64_t *shape, size_t ndim, size_t data_len, size_t blob_len,
                      uint64_t size)
{
    deja__buf t = {0};
    uint8_t zeros[64] = {0};

    pb_str(&t, 1, name);
    pb_uint(&t, 2, dtype);
    for (size_t i = 0; i < ndim; i++)
        pb_uint(&t, 3, shape[i]);
    if (data_len)
        pb_bytes(&t, 4, zeros, data_len);
    if (blob_len)
        pb_bytes(&t, 5, zeros, blob_len);
    pb_uint(&t, 6, size);
    pb_bytes(trace, field, t.data, t.size);
    deja__buf_free(&t);
}

static const uint8_t id16[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void expect_corrupt(const deja__buf *b, const char *needle)
{
    deja_trace *t = NULL;

    deja__error_clear();
    assert_int_equal(deja__trace_decode(b->data, b->size, &t), DEJA_ECORRUPT);
    assert_null(t);
    if (strstr(deja_error_last(), needle) == NULL)
        fail_msg("message '%s' lacks '%s'", deja_error_last(), needle);
}

static void test_codec__decode_violations(void **state)
{
    const uint64_t s34[2] = {3, 4};
    const uint64_t s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const uint64_t huge[2] = {(uint64_t)1 << 40, (uint64_t)1 << 40};
    deja__buf b = {0};
    deja__buf p = {0};
    deja_trace *t = NULL;

    (void)state;
    /* A hand-made valid record decodes: the helpers are right. */
    pb_bytes(&b, 1, id16, 16);
    pb_tensor(&b, 5, "prompt", DEJA_F32, s34, 2, 48, 0, 48);
    assert_int_equal(deja__trace_decode(b.data, b.size, &t), 0);
    assert_int_equal(t->inputs[0].size, 48);
    deja_trace_free(t);

    b.size = 0;
    pb_bytes(&b, 1, id16, 15);
    expect_corrupt(&b, "trace id is 15 bytes");

    b.size = 0;
    expect_corrupt(&b, "trace id is 0 bytes");

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_bytes(&b, 15, id16, 5);
    expect_corrupt(&b, "parent id is 5 bytes");

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_bytes(&b, 11, id16, 3);
    expect_corrupt(&b, "environment digest is 3 bytes");

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_tensor(&b, 5, "prompt", DEJA_F32, s34, 2, 40, 0, 40);
    expect_corrupt(&b, "tensor 'prompt': shape [3,4] holds 48 bytes of f32 but the payload is 40");
    /* ...and the message names the trace. */
    assert_non_null(strstr(deja_error_last(), "trace 0"));

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_tensor(&b, 6, "out", DEJA_U8, s34, 2, 12, 16, 12);
    expect_corrupt(&b, "tensor 'out': has both a blob and 12 inline bytes");

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_tensor(&b, 6, "out", DEJA_U8, s34, 2, 0, 10, 12);
    expect_corrupt(&b, "tensor 'out': blob digest is 10 bytes");

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_tensor(&b, 6, "txt", DEJA_UTF8, s34, 1, 2, 0, 3);
    expect_corrupt(&b, "tensor 'txt': size says 3 bytes but 2 are inline");

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_tensor(&b, 5, "deep", DEJA_U8, s9, 9, 1, 0, 1);
    expect_corrupt(&b, "tensor 'deep': 9 dimensions");

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_tensor(&b, 5, "odd", 99, s34, 0, 1, 0, 1);
    expect_corrupt(&b, "tensor 'odd': unknown dtype 99");

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_tensor(&b, 5, "vast", DEJA_F64, huge, 2, 0, 16, 8);
    expect_corrupt(&b, "tensor 'vast': shape [1099511627776,1099511627776] of f64 overflows");

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_uint(&b, 12, 7);
    expect_corrupt(&b, "unknown status 7");

    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_str(&p, 1, "temperature");
    pb_bytes(&b, 7, p.data, p.size);
    expect_corrupt(&b, "param 'temperature' has no value");

    deja__buf_free(&p);
    deja__buf_free(&b);
}

static void test_codec__decode_garbage(void **state)
{
    static sample s;
    fake_store fs = {0};
    deja__buf buf = {0};
    uint8_t junk[512];
    uint64_t x = 88172645463325252ULL;
    size_t failed = 0;

    (void)state;
    make_sample(&s);
    assert_int_equal(deja__trace_encode(&s.t, DEJA__INLINE_MAX, fake_put, &fs, &buf), 0);
    /* Every truncation is either a valid shorter record or corrupt, never a
     * crash; almost all are corrupt. */
    for (size_t len = 0; len < buf.size; len++) {
        deja_trace *t = NULL;
        int rc;

        deja__error_clear();
        rc = deja__trace_decode(buf.data, len, &t);
        if (rc == 0) {
            deja_trace_free(t);
            continue;
        }
        assert_int_equal(rc, DEJA_ECORRUPT);
        assert_true(strlen(deja_error_last()) > 0);
        failed++;
    }
    assert_true(failed > buf.size * 9 / 10);

    /* Flipped bytes and random bytes. */
    for (int round = 0; round < 2000; round++) {
        deja_trace *t = NULL;
        uint8_t *copy = malloc(buf.size);
        int rc;

        assert_non_null(copy);
        memcpy(copy, buf.data, buf.size);
        for (int k = 0; k < 3; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            copy[x % buf.size] = (uint8_t)(x >> 32);
        }
        rc = deja__trace_decode(copy, buf.size, &t);
        assert_true(rc == 0 || rc == DEJA_ECORRUPT);
        deja_trace_free(t);
        free(copy);

        for (size_t i = 0; i < sizeof junk; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk[i] = (uint8_t)x;
        }
        t = NULL;
        rc = deja__trace_decode(junk, (size_t)(x % sizeof junk), &t);
        assert_true(rc == 0 || rc == DEJA_ECORRUPT);
        deja_trace_free(t);
    }
    deja__buf_free(&buf);
    fake_free(&fs);
}

/* The summary read off the bytes (proto/peek.c) agrees with the full
 * decoding on every field it shows, and survives garbage like the decoder. */
static void check_peek(const deja_trace *t, const deja__peek *pk)
{
    const deja_trace *p = &pk->t;

    assert_memory_equal(p->id.bytes, t->id.bytes, 16);
    assert_int_equal(p->start_ns, t->start_ns);
    assert_int_equal(p->duration_ns, t->duration_ns);
    assert_string_equal(p->model_name, t->model_name);
    assert_string_equal(p->model_version, t->model_version);
    assert_int_equal(p->status, t->status);
    assert_int_equal(p->ntags, t->ntags);
    for (size_t i = 0; i < t->ntags; i++) {
        assert_string_equal(p->tags[i].key, t->tags[i].key);
        assert_string_equal(p->tags[i].value, t->tags[i].value);
    }
    assert_int_equal(p->ninputs, t->ninputs);
    assert_int_equal(p->noutputs, t->noutputs);
    for (size_t i = 0; i < t->ninputs + t->noutputs; i++) {
        const deja_tensor *a = i < t->ninputs ? &t->inputs[i] : &t->outputs[i - t->ninputs];
        const deja_tensor *b = i < t->ninputs ? &p->inputs[i] : &p->outputs[i - t->ninputs];

        assert_string_equal(b->name, a->name);
        assert_int_equal(b->dtype, a->dtype);
        assert_int_equal(b->size, a->size);
        assert_null(b->data);
        {
            const deja_side side = i < t->ninputs ? DEJA_INPUT : DEJA_OUTPUT;
            const size_t k = i < t->ninputs ? i : i - t->ninputs;
            const deja_digest *want = deja__trace_blob(t, side, k);
            const uint8_t *got = deja__peek_blob(pk, side, k);

            if (want == NULL)
                assert_null(got);
            else
                assert_memory_equal(got, want->bytes, 16);
        }
    }
    assert_int_equal(p->has_env, t->has_env);
    if (t->has_env)
        assert_memory_equal(p->env.bytes, t->env.bytes, 16);
    assert_int_equal(p->noutput_kinds, t->noutput_kinds);
    for (size_t i = 0; i < t->noutput_kinds; i++) {
        assert_string_equal(p->output_kinds[i].name, t->output_kinds[i].name);
        assert_int_equal(p->output_kinds[i].kind, t->output_kinds[i].kind);
    }
}

static void test_codec__peek_summary(void **state)
{
    static sample s;
    static const deja_output_decl kinds[2] = {{"probs", DEJA_KIND_PROBS}, {"text", DEJA_KIND_TEXT}};
    fake_store fs = {0};
    deja__buf buf = {0};
    deja__peek pk;
    deja_trace *t = NULL;
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    size_t failed = 0;

    (void)state;
    memset(&pk, 0, sizeof pk);
    make_sample(&s);
    s.t.output_kinds = kinds;
    s.t.noutput_kinds = 2;
    assert_int_equal(deja__trace_encode(&s.t, DEJA__INLINE_MAX, fake_put, &fs, &buf), 0);
    assert_int_equal(deja__trace_decode(buf.data, buf.size, &t), 0);
    assert_int_equal(deja__trace_peek(buf.data, buf.size, &pk), 0);
    check_peek(t, &pk);
    assert_true(pk.t.ntags > 0 && pk.t.ninputs > 0 && pk.t.noutputs > 0);
    assert_int_equal(pk.t.status, DEJA_STATUS_ERROR);
    deja_trace_free(t);
    t = NULL;
    /* A minimal trace after a full one: nothing left over from the last. */
    {
        deja_trace m;
        deja__buf mb = {0};

        memset(&m, 0, sizeof m);
        m.id = s.t.id;
        m.model_name = "m";
        m.model_version = "";
        m.error = "";
        assert_int_equal(deja__trace_encode(&m, DEJA__INLINE_MAX, NULL, NULL, &mb), 0);
        assert_int_equal(deja__trace_peek(mb.data, mb.size, &pk), 0);
        assert_int_equal(pk.t.ninputs + pk.t.noutputs + pk.t.ntags + pk.t.noutput_kinds, 0);
        assert_string_equal(pk.t.model_name, "m");
        assert_int_equal(pk.t.status, DEJA_STATUS_OK);
        deja__buf_free(&mb);
    }
    /* Truncations and flipped bytes: 0 or DEJA_ECORRUPT, never a crash;
     * whenever the full decoder accepts the bytes, the summary agrees. */
    for (size_t len = 0; len < buf.size; len++) {
        const int rc = deja__trace_peek(buf.data, len, &pk);

        assert_true(rc == 0 || rc == DEJA_ECORRUPT);
        failed += rc != 0;
    }
    assert_true(failed > buf.size / 2);
    for (int round = 0; round < 2000; round++) {
        uint8_t *copy = malloc(buf.size);
        int rc;

        assert_non_null(copy);
        memcpy(copy, buf.data, buf.size);
        for (int k = 0; k < 3; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            copy[x % buf.size] = (uint8_t)(x >> 32);
        }
        rc = deja__trace_peek(copy, buf.size, &pk);
        assert_true(rc == 0 || rc == DEJA_ECORRUPT);
        if (rc == 0 && deja__trace_decode(copy, buf.size, &t) == 0) {
            check_peek(t, &pk);
            deja_trace_free(t);
            t = NULL;
        }
        free(copy);
    }
    deja__peek_free(&pk);
    deja__buf_free(&buf);
    fake_free(&fs);
}

/* ------------------------------------------------------------------------
 * Environments
 * ---------------------------------------------------------------------- */

static void test_codec__env_canonical(void **state)
{
    const char *isa_a[] = {"sse4_2", "avx2", "fma"};
    const char *isa_b[] = {"fma", "sse4_2", "avx2"};
    const char *gpus[] = {"NVIDIA A100", "NVIDIA T4"};
    deja_kv vars_a[] = {{"OMP_NUM_THREADS", "4"}, {"MKL_CBWR", "AUTO"}, {"CUBLAS_X", "1"}};
    deja_kv vars_b[] = {{"CUBLAS_X", "1"}, {"OMP_NUM_THREADS", "4"}, {"MKL_CBWR", "AUTO"}};
    deja_kv libs_a[] = {{"zstd", "1.5.5"}, {"libc", "2.36"}};
    deja_kv libs_b[] = {{"libc", "2.36"}, {"zstd", "1.5.5"}};
    deja_env a = {"x86_64", "GenuineIntel", "Xeon",   isa_a,  3, 16, 1ULL << 36, "Linux",
                  "6.1.0",  "glibc 2.36",   "gcc 12", gpus,   2, 8,  "nearest",  1,
                  0,        vars_a,         3,        libs_a, 2};
    deja_env b = a;
    deja__buf ea = {0};
    deja__buf eb = {0};
    deja_env *d = NULL;

    (void)state;
    b.isa = isa_b;
    b.vars = vars_b;
    b.libs = libs_b;
    assert_int_equal(deja__env_encode(&a, &ea), 0);
    assert_int_equal(deja__env_encode(&b, &eb), 0);
    assert_int_equal(ea.size, eb.size);
    assert_memory_equal(ea.data, eb.data, ea.size);
    /* The inputs were not reordered. */
    assert_string_equal(vars_b[0].key, "CUBLAS_X");
    assert_string_equal(vars_a[0].key, "OMP_NUM_THREADS");
    assert_string_equal(isa_b[0], "fma");

    /* A different value gives different bytes. */
    vars_b[0].value = "0";
    assert_int_equal(deja__env_encode(&b, &eb), 0);
    assert_true(ea.size != eb.size || memcmp(ea.data, eb.data, ea.size) != 0);

    assert_int_equal(deja__env_decode(ea.data, ea.size, &d), 0);
    assert_string_equal(d->arch, "x86_64");
    assert_string_equal(d->cpu_vendor, "GenuineIntel");
    assert_string_equal(d->cpu_model, "Xeon");
    assert_int_equal(d->nisa, 3);
    assert_string_equal(d->isa[0], "avx2");
    assert_string_equal(d->isa[1], "fma");
    assert_string_equal(d->isa[2], "sse4_2");
    assert_int_equal(d->cores, 16);
    assert_true(d->memory_bytes == 1ULL << 36);
    assert_string_equal(d->os, "Linux");
    assert_string_equal(d->kernel, "6.1.0");
    assert_string_equal(d->libc, "glibc 2.36");
    assert_string_equal(d->compiler, "gcc 12");
    assert_int_equal(d->ngpus, 2);
    assert_string_equal(d->gpus[0], "NVIDIA A100"); /* device order kept */
    assert_int_equal(d->threads, 8);
    assert_string_equal(d->fp_rounding, "nearest");
    assert_int_equal(d->ftz, 1);
    assert_int_equal(d->daz, 0);
    assert_int_equal(d->nvars, 3);
    assert_string_equal(d->vars[0].key, "CUBLAS_X");
    assert_string_equal(d->vars[1].key, "MKL_CBWR");
    assert_string_equal(d->vars[2].key, "OMP_NUM_THREADS");
    assert_string_equal(d->vars[2].value, "4");
    assert_int_equal(d->nlibs, 2);
    assert_string_equal(d->libs[0].key, "libc");
    assert_string_equal(d->libs[1].value, "1.5.5");

    /* Decoded and re-encoded: the same bytes, so the same key. */
    assert_int_equal(deja__env_encode(d, &eb), 0);
    assert_int_equal(ea.size, eb.size);
    assert_memory_equal(ea.data, eb.data, ea.size);

    deja_env_free(d);
    deja_env_free(NULL);
    deja__buf_free(&ea);
    deja__buf_free(&eb);
}

static void test_codec__env_empty_and_garbage(void **state)
{
    deja_env e;
    deja__buf b = {0};
    deja_env *d = NULL;
    const uint8_t junk[] = {0xFF, 0xFF, 0xFF, 0xFF, 0x0F};

    (void)state;
    memset(&e, 0, sizeof e);
    assert_int_equal(deja__env_encode(&e, &b), 0);
    assert_int_equal(deja__env_decode(b.data, b.size, &d), 0);
    assert_string_equal(d->arch, "");
    assert_string_equal(d->fp_rounding, "");
    assert_int_equal(d->nvars + d->nlibs + d->nisa + d->ngpus, 0);
    deja_env_free(d);
    d = NULL;
    assert_int_equal(deja__env_decode(junk, sizeof junk, &d), DEJA_ECORRUPT);
    assert_null(d);
    assert_true(strlen(deja_error_last()) > 0);
    deja__buf_free(&b);
}

/* ------------------------------------------------------------------------
 * Dtypes and buffers
 * ---------------------------------------------------------------------- */

static void test_codec__dtypes(void **state)
{
    static const struct {
        deja_dtype d;
        const char *name;
        size_t size;
    } want[] = {
        {DEJA_F16, "f16", 2},   {DEJA_BF16, "bf16", 2},   {DEJA_F32, "f32", 4},
        {DEJA_F64, "f64", 8},   {DEJA_I8, "i8", 1},       {DEJA_I16, "i16", 2},
        {DEJA_I32, "i32", 4},   {DEJA_I64, "i64", 8},     {DEJA_U8, "u8", 1},
        {DEJA_U16, "u16", 2},   {DEJA_U32, "u32", 4},     {DEJA_U64, "u64", 8},
        {DEJA_BOOL, "bool", 1}, {DEJA_BYTES, "bytes", 1}, {DEJA_UTF8, "utf8", 1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_string_equal(deja_dtype_name(want[i].d), want[i].name);
        assert_int_equal(deja_dtype_parse(want[i].name), want[i].d);
        assert_int_equal(deja_dtype_size(want[i].d), want[i].size);
    }
    assert_null(deja_dtype_name(DEJA_DTYPE_INVALID));
    assert_null(deja_dtype_name((deja_dtype)16));
    assert_null(deja_dtype_name((deja_dtype)-1));
    assert_int_equal(deja_dtype_size((deja_dtype)16), 0);
    assert_int_equal(deja_dtype_parse("F32"), DEJA_DTYPE_INVALID);
    assert_int_equal(deja_dtype_parse("float"), DEJA_DTYPE_INVALID);
    assert_int_equal(deja_dtype_parse(NULL), DEJA_DTYPE_INVALID);
}

/* Half-precision values: normal, subnormal, infinite, NaN, and bfloat16. */
static void test_codec__half_values(void **state)
{
    (void)state;
    assert_true(deja_f16_value(0x3c00) == 1.0);
    assert_true(deja_f16_value(0xc000) == -2.0);
    assert_true(deja_f16_value(0x0001) == ldexp(1.0, -24));
    assert_true(deja_f16_value(0x7bff) == 65504.0);
    assert_true(isinf(deja_f16_value(0x7c00)) && deja_f16_value(0x7c00) > 0);
    assert_true(isnan(deja_f16_value(0x7e00)));
    assert_true(deja_f16_value(0x8000) == 0.0 && signbit(deja_f16_value(0x8000)));
    assert_true(deja_bf16_value(0x3f80) == 1.0);
    assert_true(deja_bf16_value(0xc040) == -3.0);
    assert_true(isnan(deja_bf16_value(0x7fc0)));
}

static void test_codec__buf(void **state)
{
    deja__buf b = {0};
    char chunk[300];

    (void)state;
    memset(chunk, 'q', sizeof chunk);
    for (int i = 0; i < 100; i++)
        assert_int_equal(deja__buf_append(&b, chunk, sizeof chunk), 0);
    assert_int_equal(b.size, 100 * sizeof chunk);
    assert_true(b.cap >= b.size);
    assert_int_equal(b.data[b.size - 1], 'q');
    assert_int_equal(deja__buf_reserve(&b, SIZE_MAX), DEJA_ENOMEM);
    assert_int_equal(b.size, 100 * sizeof chunk);
    assert_int_equal(deja__buf_append(&b, NULL, 0), 0);
    deja__buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.size, 0);
    deja__buf_free(&b);
}

/* Append a varint to `p`; returns the new end. */
static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Decode a hand-made Trace holding one RNG stream stored as `count`
 * draws; returns the decoder's code. */
static int decode_count(uint64_t count)
{
    uint8_t rec[64], stream[16], *p = rec, *q = stream;
    deja_trace *t = NULL;
    int rc;
    *q++ = 0x0a; /* RngStream.name = "n" */
    *q++ = 1;
    *q++ = 'n';
    *q++ = 0x20; /* RngStream.count */
    q = put_varint(q, count);
    *p++ = 0x0a; /* Trace.id: 16 bytes */
    *p++ = 16;
    memset(p, 7, 16);
    p += 16;
    *p++ = 0x4a; /* Trace.rng */
    *p++ = (uint8_t)(q - stream);
    memcpy(p, stream, (size_t)(q - stream));
    p += q - stream;
    rc = deja__trace_decode(rec, (size_t)(p - rec), &t);
    if (rc == 0) {
        assert_int_equal(t->rng[0].ndraws, count);
        deja_trace_free(t);
    }
    return rc;
}

/* The bound on RNG draws is one constant on both sides: a trace at the
 * bound encodes and decodes, one draw past it is refused by both. */
static void test_codec__draw_bound_both_sides(void **state)
{
    deja_trace t;
    deja_rng_stream r;
    deja__buf b = {0};
    uint64_t *draws = malloc((DEJA__MAX_DRAWS + 1) * sizeof *draws);
    (void)state;
    assert_non_null(draws);
    deja__rng_generate(9, draws, DEJA__MAX_DRAWS + 1);
    memset(&t, 0, sizeof t);
    memset(t.id.bytes, 3, 16);
    t.model_name = "m";
    t.model_version = "1";
    t.error = "";
    r = (deja_rng_stream){"s", 9, draws, DEJA__MAX_DRAWS};
    t.rng = &r;
    t.nrng = 1;
    assert_int_equal(deja__trace_encode(&t, 1024, NULL, NULL, &b), 0);
    r.ndraws = DEJA__MAX_DRAWS + 1;
    assert_int_equal(deja__trace_encode(&t, 1024, NULL, NULL, &b), DEJA_EINVAL);
    deja__buf_free(&b);
    free(draws);
    assert_int_equal(decode_count(DEJA__MAX_DRAWS), 0);
    assert_int_equal(decode_count(DEJA__MAX_DRAWS + 1), DEJA_ECORRUPT);
}

/* ------------------------------------------------------------------------
 * The decoder's one block (proto/trace_decode.c)
 * ---------------------------------------------------------------------- */

/* Every field kind of a Trace, inline: the sample, a model loaded by a
 * plugin, declared output kinds, a full and a digest-only checkpoint. */
typedef struct full_sample {
    sample s;
    deja_output_decl kinds[2];
    deja_checkpoint cks[2];
    float ck_data[3];
    uint64_t ck_shape[1], ck2_shape[2];
} full_sample;

static void make_full(full_sample *f)
{
    make_sample(&f->s);
    f->s.t.has_model_config = 1;
    f->s.t.model_plugin = "./libsentiment.so";
    f->s.t.model_config = "weights=/srv/w.bin";
    f->kinds[0] = (deja_output_decl){"logits", DEJA_KIND_SCORES};
    f->kinds[1] = (deja_output_decl){"completion", DEJA_KIND_TEXT};
    f->s.t.output_kinds = f->kinds;
    f->s.t.noutput_kinds = 2;
    f->ck_data[0] = 1.5f;
    f->ck_data[1] = -2.0f;
    f->ck_data[2] = 4.0f;
    f->ck_shape[0] = 3;
    memset(&f->cks, 0, sizeof f->cks);
    f->cks[0].tensor = (deja_tensor){"layer1", DEJA_F32, 1, f->ck_shape, f->ck_data, 12};
    f->ck2_shape[0] = 2;
    f->ck2_shape[1] = 8;
    f->cks[1].tensor = (deja_tensor){"layer2", DEJA_F64, 2, f->ck2_shape, NULL, 128};
    f->cks[1].digest_only = 1;
    f->cks[1].digest = deja_digest_of("layer2", 6);
    f->cks[1].stats = (deja_tensor_stats){1, 16, 1, 2, -3.0, 9.5, 0.25};
    f->s.t.checkpoints = f->cks;
    f->s.t.ncheckpoints = 2;
    f->s.t.checkpoint_select = "layer1,layer2";
}

/* The decoded trace owns a copy of the record: the caller's bytes can be
 * scribbled over and freed at once. Every field kind comes back, numeric
 * payloads aligned for their element type, and the trace encodes to the
 * same bytes again (the encoder is protobuf-c's). */
static void test_codec__decode_one_block(void **state)
{
    static full_sample f;
    deja__buf buf = {0}, again = {0};
    deja_trace *t = NULL;
    uint8_t *copy;

    (void)state;
    make_full(&f);
    assert_int_equal(deja__trace_encode(&f.s.t, DEJA__INLINE_MAX, NULL, NULL, &buf), 0);
    copy = malloc(buf.size);
    assert_non_null(copy);
    memcpy(copy, buf.data, buf.size);
    assert_int_equal(deja__trace_decode(copy, buf.size, &t), 0);
    memset(copy, 0xAA, buf.size);
    free(copy);

    assert_string_equal(t->model_name, "sentiment");
    assert_string_equal(t->model_version, "2.1.0");
    assert_memory_equal(t->model_digest, f.s.digest, 20);
    assert_true(t->has_model_config);
    assert_string_equal(t->model_plugin, "./libsentiment.so");
    assert_string_equal(t->model_config, "weights=/srv/w.bin");
    assert_int_equal(t->ninputs, NDT);
    for (size_t i = 0; i < NDT; i++) {
        const size_t es = deja_dtype_size(t->inputs[i].dtype);

        assert_tensor_meta(&t->inputs[i], &f.s.in[i]);
        assert_memory_equal(t->inputs[i].data, f.s.in[i].data, f.s.in[i].size);
        if (es > 1 && (uintptr_t)t->inputs[i].data % es != 0)
            fail_msg("input '%s' (%zu-byte elements) is misaligned", t->inputs[i].name, es);
    }
    assert_int_equal((uintptr_t)t->outputs[0].data % 4, 0);
    assert_memory_equal(t->outputs[0].data, f.s.big, BIG);
    assert_memory_equal(t->outputs[1].data, f.s.text, BIG);
    assert_string_equal(t->params[1].str, "\n\n");
    assert_string_equal(t->seeds[0].name, "numpy");
    assert_memory_equal(t->rng[0].draws, f.s.draws, sizeof f.s.draws);
    assert_memory_equal(t->clock_ns, f.s.clocks, sizeof f.s.clocks);
    assert_string_equal(t->error, "model exploded");
    assert_string_equal(t->tags[0].value, "alice");
    assert_int_equal(t->noutput_kinds, 2);
    assert_string_equal(t->output_kinds[1].name, "completion");
    assert_int_equal(t->output_kinds[1].kind, DEJA_KIND_TEXT);
    assert_int_equal(t->ncheckpoints, 2);
    assert_string_equal(t->checkpoints[0].tensor.name, "layer1");
    assert_memory_equal(t->checkpoints[0].tensor.data, f.ck_data, 12);
    assert_int_equal((uintptr_t)t->checkpoints[0].tensor.data % 4, 0);
    assert_memory_equal(t->checkpoints[0].digest.bytes, deja_digest_of(f.ck_data, 12).bytes, 16);
    assert_true(t->checkpoints[0].stats.max == 4.0 && t->checkpoints[0].stats.count == 3);
    assert_true(t->checkpoints[1].digest_only);
    assert_null(t->checkpoints[1].tensor.data);
    assert_int_equal(t->checkpoints[1].tensor.ndim, 2);
    assert_int_equal(t->checkpoints[1].tensor.shape[1], 8);
    assert_memory_equal(t->checkpoints[1].digest.bytes, f.cks[1].digest.bytes, 16);
    assert_true(t->checkpoints[1].stats.min == -3.0 && t->checkpoints[1].stats.mean == 0.25);
    assert_int_equal(t->checkpoints[1].stats.nnan, 1);
    assert_string_equal(t->checkpoint_select, "layer1,layer2");

    assert_int_equal(deja__trace_encode(t, DEJA__INLINE_MAX, NULL, NULL, &again), 0);
    assert_int_equal(again.size, buf.size);
    assert_memory_equal(again.data, buf.data, buf.size);
    deja_trace_free(t);

    /* Every truncation of this record: 0 or DEJA_ECORRUPT, never a read
     * past its end (ASan); a single byte less drops a string's last byte
     * or breaks a field, and the strings stay terminated. */
    for (size_t len = 0; len < buf.size; len++) {
        uint8_t *cut = malloc(len + 1);
        int rc;

        assert_non_null(cut);
        memcpy(cut, buf.data, len);
        t = NULL;
        rc = deja__trace_decode(cut, len, &t);
        free(cut);
        assert_true(rc == 0 || rc == DEJA_ECORRUPT);
        if (rc == 0)
            assert_true(strlen(t->checkpoint_select) <= 13 && strlen(t->error) <= 14);
        deja_trace_free(t);
    }
    deja__buf_free(&again);
    deja__buf_free(&buf);
}

static void pb_fixed64(deja__buf *b, unsigned field, uint64_t v)
{
    uint8_t le[8];

    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    pb_varint(b, ((uint64_t)field << 3) | 1);
    assert_int_equal(deja__buf_append(b, le, 8), 0);
}

/* What protobuf allows besides what deja's encoder writes: packed and
 * unpacked repeated values, unknown fields of every wire type, a singular
 * field given twice (the last wins), a nested message given twice
 * (merged). And what it does not: another wire type for a known field, a
 * group, a varint cut short. */
static void test_codec__decode_wire_forms(void **state)
{
    const uint64_t s34[2] = {3, 4};
    deja__buf b = {0}, sub = {0}, packed = {0};
    deja_trace *t = NULL;
    double d = 0.5;
    uint64_t dbits;

    (void)state;
    memcpy(&dbits, &d, sizeof dbits);
    /* shape packed (as protobuf-c writes it) and unpacked give one shape */
    pb_bytes(&b, 1, id16, 16);
    pb_tensor(&b, 5, "unpacked", DEJA_U8, s34, 2, 12, 0, 12);
    pb_str(&sub, 1, "packed");
    pb_uint(&sub, 2, DEJA_U8);
    pb_varint(&packed, 3);
    pb_varint(&packed, 4);
    pb_bytes(&sub, 3, packed.data, packed.size);
    pb_bytes(&sub, 4, "abcdefghijkl", 12);
    pb_uint(&sub, 6, 12);
    pb_uint(&sub, 99, 5);               /* unknown varint */
    pb_bytes(&b, 6, sub.data, sub.size);
    /* unknown fields of every wire type at the top */
    pb_uint(&b, 90, 1);
    pb_fixed64(&b, 91, 7);
    pb_bytes(&b, 92, "xyz", 3);
    pb_varint(&b, (93 << 3) | 5);
    assert_int_equal(deja__buf_append(&b, "\1\2\3\4", 4), 0);
    /* singular fields twice: the last wins */
    pb_uint(&b, 2, 111);
    pb_uint(&b, 2, 222);
    pb_str(&b, 13, "first");
    pb_str(&b, 13, "second");
    /* the model twice: merged */
    sub.size = 0;
    pb_str(&sub, 1, "name-only");
    pb_bytes(&b, 4, sub.data, sub.size);
    sub.size = 0;
    pb_str(&sub, 2, "v9");
    pb_bytes(&b, 4, sub.data, sub.size);
    /* a param's oneof: the last value given */
    sub.size = 0;
    pb_str(&sub, 1, "k");
    pb_str(&sub, 3, "text");
    pb_fixed64(&sub, 2, dbits);
    pb_bytes(&b, 7, sub.data, sub.size);
    /* clock reads: one packed run, then one unpacked value */
    packed.size = 0;
    pb_varint(&packed, 10);
    pb_varint(&packed, 20);
    pb_bytes(&b, 10, packed.data, packed.size);
    pb_uint(&b, 10, 30);
    /* a string that ends the record */
    pb_str(&b, 18, "tail");
    assert_int_equal(deja__trace_decode(b.data, b.size, &t), 0);
    assert_int_equal(t->ninputs, 1);
    assert_int_equal(t->noutputs, 1);
    assert_string_equal(t->inputs[0].name, "unpacked");
    assert_string_equal(t->outputs[0].name, "packed");
    assert_int_equal(t->outputs[0].ndim, 2);
    assert_int_equal(t->outputs[0].shape[0], 3);
    assert_int_equal(t->outputs[0].shape[1], 4);
    assert_memory_equal(t->outputs[0].data, "abcdefghijkl", 12);
    assert_int_equal(t->start_ns, 222);
    assert_string_equal(t->error, "second");
    assert_string_equal(t->model_name, "name-only");
    assert_string_equal(t->model_version, "v9");
    assert_int_equal(t->params[0].kind, DEJA_PARAM_NUM);
    assert_true(t->params[0].num == 0.5);
    assert_string_equal(t->params[0].str, "");
    assert_int_equal(t->nclock, 3);
    assert_int_equal(t->clock_ns[2], 30);
    assert_string_equal(t->checkpoint_select, "tail");
    deja_trace_free(t);

    /* a known field with another wire type */
    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_bytes(&b, 2, "12", 2);
    expect_corrupt(&b, "not a valid protobuf");
    /* a group */
    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_varint(&b, (20 << 3) | 3);
    expect_corrupt(&b, "not a valid protobuf");
    /* a packed run whose last varint is cut short */
    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_bytes(&b, 10, "\x05\x80", 2);
    expect_corrupt(&b, "not a valid protobuf");
    /* a length past the end of its message */
    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_varint(&b, (5 << 3) | 2);
    pb_varint(&b, 3);
    pb_varint(&b, (1 << 3) | 2);
    pb_varint(&b, 9);
    assert_int_equal(deja__buf_append(&b, "ab", 2), 0);
    expect_corrupt(&b, "not a valid protobuf");
    /* field number 0 */
    b.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_varint(&b, 0);
    pb_varint(&b, 0);
    expect_corrupt(&b, "not a valid protobuf");
    /* a checkpoint without its tensor, with a blob */
    b.size = 0;
    sub.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_uint(&sub, 2, 1);
    pb_bytes(&b, 17, sub.data, sub.size);
    expect_corrupt(&b, "checkpoint 0 has no tensor");
    b.size = 0;
    sub.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_tensor(&sub, 1, "ck", DEJA_U8, s34, 1, 0, 16, 3);
    pb_bytes(&b, 17, sub.data, sub.size);
    expect_corrupt(&b, "checkpoint 'ck' refers to a blob");
    /* stored draws and a count in one stream */
    b.size = 0;
    sub.size = 0;
    pb_bytes(&b, 1, id16, 16);
    pb_str(&sub, 1, "r");
    pb_uint(&sub, 3, 5);
    pb_uint(&sub, 4, 2);
    pb_bytes(&b, 9, sub.data, sub.size);
    expect_corrupt(&b, "rng stream 'r' has both draws and a count");
    deja__buf_free(&packed);
    deja__buf_free(&sub);
    deja__buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec__round_trip_full),
        cmocka_unit_test(test_codec__draw_bound_both_sides),
        cmocka_unit_test(test_codec__minimal_trace),
        cmocka_unit_test(test_codec__rng_draws_by_count),
        cmocka_unit_test(test_codec__no_put_keeps_inline),
        cmocka_unit_test(test_codec__encode_rejects),
        cmocka_unit_test(test_codec__decode_violations),
        cmocka_unit_test(test_codec__decode_garbage),
        cmocka_unit_test(test_codec__peek_summary),
        cmocka_unit_test(test_codec__env_canonical),
        cmocka_unit_test(test_codec__env_empty_and_garbage),
        cmocka_unit_test(test_codec__dtypes),
        cmocka_unit_test(test_codec__buf),
        cmocka_unit_test(test_codec__half_values),
        cmocka_unit_test(test_codec__decode_one_block),
        cmocka_unit_test(test_codec__decode_wire_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
