/*
 * tests/test_store.c -- the LMDB store: open, write, read, list, resolve,
 * stats, compression dictionary, map growth, verify, concurrent writers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zstd.h>

#include "deja.h"
#include "problems_harness.h"
#include "store/store.h"
#include "store/store_internal.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh temporary directory; `store` gets DIR/store (not created). */
static void tmp_store(char dir[256], char store[300])
{
    strcpy(dir, "/tmp/deja-test-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(store, 300, "%s/store", dir);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Deterministic pseudo-random bytes (xorshift64*), incompressible. */
static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
        }
        p[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> (8 * (i % 8)));
    }
}

/* A trace to write: owns its arrays. */
typedef struct ttrace {
    deja_trace t;
    deja_tensor in[2];
    deja_tensor out[1];
    uint64_t shape_in[2][1];
    uint64_t shape_out[1];
    deja_tag tags[2];
    char tagval[2][32];
    char text[128];
    uint8_t *big; /* optional blob-sized input, owned */
    deja_param params[2];
    deja_seed seeds[1];
    deja_rng_stream rng[1];
    uint64_t draws[3];
    int64_t clock[2];
    uint8_t digest[8];
} ttrace;

/* Fill `tt` as trace number `i` at `ms`: model/version/status/tags given;
 * `big_size` > 0 adds an input of that many bytes from `big` (copied unless
 * `share` is non-NULL, then pointed at). */
static void ttrace_init(ttrace *tt, int64_t ms, int i, const char *model, const char *version,
                        deja_status status, const char *env_tag, size_t big_size, uint64_t big_seed,
                        const uint8_t *share)
{
    memset(tt, 0, sizeof *tt);
    deja__id_new_at(&tt->t.id, ms);
    tt->t.start_ns = ms * 1000000 + 1234;
    tt->t.duration_ns = 5000 + i;
    tt->t.model_name = model;
    tt->t.model_version = version;
    memcpy(tt->digest, "weights!", 8);
    tt->t.model_digest = tt->digest;
    tt->t.model_digest_size = 8;
    snprintf(tt->text, sizeof tt->text, "request number %d: what is the capital of place %d?", i,
             i * 7);
    tt->shape_in[0][0] = strlen(tt->text);
    tt->in[0] = (deja_tensor){"prompt", DEJA_UTF8, 1, tt->shape_in[0], tt->text, strlen(tt->text)};
    tt->t.inputs = tt->in;
    tt->t.ninputs = 1;
    if (big_size > 0) {
        const uint8_t *data = share;
        if (data == NULL) {
            tt->big = malloc(big_size);
            assert_non_null(tt->big);
            fill_random(tt->big, big_size, big_seed);
            data = tt->big;
        }
        tt->shape_in[1][0] = big_size;
        tt->in[1] = (deja_tensor){"image", DEJA_U8, 1, tt->shape_in[1], data, big_size};
        tt->t.ninputs = 2;
    }
    tt->shape_out[0] = 4;
    tt->out[0] = (deja_tensor){"answer", DEJA_UTF8, 1, tt->shape_out, "Rome", 4};
    tt->t.outputs = tt->out;
    tt->t.noutputs = 1;
    tt->params[0] = (deja_param){"temperature", DEJA_PARAM_NUM, 0.7, NULL, 0};
    tt->params[1] = (deja_param){"greedy", DEJA_PARAM_BOOL, 0, NULL, 1};
    tt->t.params = tt->params;
    tt->t.nparams = 2;
    tt->seeds[0] = (deja_seed){"numpy", 42 + (uint64_t)i};
    tt->t.seeds = tt->seeds;
    tt->t.nseeds = 1;
    tt->draws[0] = 1;
    tt->draws[1] = 2;
    tt->draws[2] = (uint64_t)i;
    tt->rng[0] = (deja_rng_stream){"sampler", 7, tt->draws, 3};
    tt->t.rng = tt->rng;
    tt->t.nrng = 1;
    tt->clock[0] = ms * 1000000;
    tt->clock[1] = ms * 1000000 + 99;
    tt->t.clock_ns = tt->clock;
    tt->t.nclock = 2;
    tt->t.status = status;
    tt->t.error = status == DEJA_STATUS_ERROR ? "model exploded" : "";
    snprintf(tt->tagval[0], sizeof tt->tagval[0], "%s", env_tag);
    snprintf(tt->tagval[1], sizeof tt->tagval[1], "n%d", i % 3);
    tt->tags[0] = (deja_tag){"env", tt->tagval[0]};
    tt->tags[1] = (deja_tag){"shard", tt->tagval[1]};
    tt->t.tags = tt->tags;
    tt->t.ntags = 2;
}

static void ttrace_free(ttrace *tt)
{
    free(tt->big);
    tt->big = NULL;
}

typedef struct batch {
    ttrace *traces;
    size_t n;
    int added;
} batch;

static int put_batch(deja__wtxn *w, void *payload)
{
    batch *b = payload;
    b->added = 0;
    for (size_t i = 0; i < b->n; i++) {
        int added = 0;
        int rc = deja__wtxn_put_trace(w, &b->traces[i].t, &added);
        if (rc != 0)
            return rc;
        b->added += added;
    }
    return 0;
}

static void write_traces(deja_store *s, ttrace *tt, size_t n)
{
    batch b = {tt, n, 0};
    int rc = deja__store_write(s, put_batch, &b);
    if (rc != 0)
        fprintf(stderr, "write: %s\n", deja_error_last());
    assert_int_equal(rc, 0);
}

/* Check that a read-back trace equals what was written, byte for byte. */
static void assert_trace_equal(const deja_trace *got, const deja_trace *want)
{
    assert_memory_equal(got->id.bytes, want->id.bytes, 16);
    assert_true(got->start_ns == want->start_ns);
    assert_true(got->duration_ns == want->duration_ns);
    assert_string_equal(got->model_name, want->model_name);
    assert_string_equal(got->model_version, want->model_version);
    assert_int_equal(got->model_digest_size, want->model_digest_size);
    assert_memory_equal(got->model_digest, want->model_digest, want->model_digest_size);
    assert_int_equal(got->ninputs, want->ninputs);
    assert_int_equal(got->noutputs, want->noutputs);
    for (int side = 0; side < 2; side++) {
        const deja_tensor *a = side ? got->outputs : got->inputs;
        const deja_tensor *b = side ? want->outputs : want->inputs;
        size_t n = side ? want->noutputs : want->ninputs;
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(a[i].name, b[i].name);
            assert_int_equal(a[i].dtype, b[i].dtype);
            assert_int_equal(a[i].ndim, b[i].ndim);
            assert_memory_equal(a[i].shape, b[i].shape, b[i].ndim * sizeof(uint64_t));
            assert_int_equal(a[i].size, b[i].size);
            assert_non_null(a[i].data);
            assert_memory_equal(a[i].data, b[i].data, b[i].size);
        }
    }
    assert_int_equal(got->nparams, want->nparams);
    for (size_t i = 0; i < want->nparams; i++) {
        assert_string_equal(got->params[i].key, want->params[i].key);
        assert_int_equal(got->params[i].kind, want->params[i].kind);
    }
    assert_true(got->params[0].num == want->params[0].num);
    assert_int_equal(got->params[1].flag, want->params[1].flag);
    assert_int_equal(got->nseeds, want->nseeds);
    assert_true(got->seeds[0].value == want->seeds[0].value);
    assert_int_equal(got->nrng, want->nrng);
    assert_int_equal(got->rng[0].ndraws, 3);
    assert_memory_equal(got->rng[0].draws, want->rng[0].draws, 3 * sizeof(uint64_t));
    assert_int_equal(got->nclock, want->nclock);
    assert_memory_equal(got->clock_ns, want->clock_ns, want->nclock * sizeof(int64_t));
    assert_int_equal(got->status, want->status);
    assert_string_equal(got->error, want->error);
    assert_int_equal(got->ntags, want->ntags);
    for (size_t i = 0; i < want->ntags; i++) {
        assert_string_equal(got->tags[i].key, want->tags[i].key);
        assert_string_equal(got->tags[i].value, want->tags[i].value);
    }
    assert_int_equal(got->has_parent, want->has_parent);
    assert_int_equal(got->has_env, want->has_env);
}

static void assert_get_equal(deja_store *s, const deja_trace *want)
{
    deja_trace *got = NULL;
    int rc = deja_trace_get(s, &want->id, &got);
    if (rc != 0)
        fprintf(stderr, "get: %s\n", deja_error_last());
    assert_int_equal(rc, 0);
    assert_trace_equal(got, want);
    deja_trace_free(got);
}

/* Raw LMDB access to a closed store, to damage it on purpose. */
typedef struct raw {
    MDB_env *env;
    MDB_txn *txn;
} raw;

static MDB_dbi raw_open(raw *r, const char *path, const char *db)
{
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&r->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(r->env, 16), 0);
    assert_int_equal(mdb_env_open(r->env, path, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
    assert_int_equal(mdb_dbi_open(r->txn, db, 0, &dbi), 0);
    return dbi;
}

static void raw_close(raw *r)
{
    assert_int_equal(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
}

/* ------------------------------------------------------------------------
 * Open
 * ---------------------------------------------------------------------- */

static void test_store__create_reopen(void **state)
{
    char dir[256], path[300], deep[400];
    deja_store *s = NULL;
    deja_store_stats st;

    (void)state;
    tmp_store(dir, path);
    snprintf(deep, sizeof deep, "%s/a/b/c", path);
    assert_int_equal(deja_store_open(&s, deep, DEJA_STORE_WRITE), 0);
    deja_store_close(s);
    s = NULL;
    assert_int_equal(deja_store_open(&s, deep, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, DEJA__FORMAT_VERSION);
    assert_int_equal(st.traces, 0);
    assert_int_equal(st.dictionaries, 0);
    assert_true(st.file_bytes > 0);
    deja_store_close(s);
    /* a second writer handle on an existing store */
    assert_int_equal(deja_store_open(&s, deep, DEJA_STORE_WRITE), 0);
    deja_store_close(s);
    deja_store_close(NULL);
    rm_rf(dir);
}

static void test_store__read_missing_creates_nothing(void **state)
{
    char dir[256], path[300], data[400];
    deja_store *s = (deja_store *)1;

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), DEJA_ENOTFOUND);
    assert_null(s);
    assert_non_null(strstr(deja_error_last(), "does not exist"));
    assert_non_null(strstr(deja_error_last(), path));
    assert_false(exists(path));
    /* an empty directory is not a store either, and stays empty */
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), DEJA_ENOTFOUND);
    snprintf(data, sizeof data, "%s/data.mdb", path);
    assert_false(exists(data));
    snprintf(data, sizeof data, "%s/lock.mdb", path);
    assert_false(exists(data));
    rm_rf(dir);
}

/* A store of format 1 stays format 1 for readers and becomes the current
 * format when a writer opens it (its new trace values carry refs). */
static void test_store__format1_upgraded_by_writer(void **state)
{
    char dir[256], path[300];
    deja_store *s = NULL;
    deja_store_stats st;
    raw r;
    MDB_dbi meta;
    uint8_t v[4] = {1, 0, 0, 0};
    MDB_val k = {6, "format"}, val = {4, v};

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    deja_store_close(s);
    meta = raw_open(&r, path, "meta");
    assert_int_equal(mdb_put(r.txn, meta, &k, &val, 0), 0);
    raw_close(&r);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, 1);
    deja_store_close(s);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, DEJA__FORMAT_VERSION);
    deja_store_close(s);
    rm_rf(dir);
}

static void test_store__newer_format_refused(void **state)
{
    char dir[256], path[300], want[400];
    deja_store *s = NULL;
    raw r;
    MDB_dbi meta;
    uint8_t v[4] = {99, 0, 0, 0};
    MDB_val k = {6, "format"}, val = {4, v};

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    deja_store_close(s);
    meta = raw_open(&r, path, "meta");
    assert_int_equal(mdb_put(r.txn, meta, &k, &val, 0), 0);
    raw_close(&r);
    snprintf(want, sizeof want, "store '%s' has format 99, this deja reads up to %d: upgrade deja",
             path, DEJA__FORMAT_VERSION);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), DEJA_EVERSION);
    assert_string_equal(deja_error_last(), want);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), DEJA_EVERSION);
    assert_string_equal(deja_error_last(), want);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Writing and reading
 * ---------------------------------------------------------------------- */

typedef struct env_put {
    const deja_env *env;
    deja_digest digest;
} env_put;

static int put_env_cb(deja__wtxn *w, void *payload)
{
    env_put *e = payload;
    return deja__wtxn_put_env(w, e->env, &e->digest);
}

static void test_store__round_trip(void **state)
{
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace tt[3];
    void *data = NULL;
    size_t size = 0;
    batch b = {tt, 3, 0};
    const char *isa[] = {"avx2", "sse4_2"};
    const deja_kv vars[] = {{"OMP_NUM_THREADS", "4"}};
    deja_env env = {0};
    env_put ep = {&env, {{0}}};
    deja_env *got_env = NULL;

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);

    env.arch = "x86_64";
    env.cpu_vendor = "GenuineIntel";
    env.isa = isa;
    env.nisa = 2;
    env.cores = 8;
    env.vars = vars;
    env.nvars = 1;
    assert_int_equal(deja__store_write(s, put_env_cb, &ep), 0);

    ttrace_init(&tt[0], 1700000000000, 0, "m", "1", DEJA_STATUS_OK, "prod", 0, 0, NULL);
    ttrace_init(&tt[1], 1700000000001, 1, "m", "1", DEJA_STATUS_ERROR, "dev", 5000, 1, NULL);
    ttrace_init(&tt[2], 1700000000002, 2, "m", "2", DEJA_STATUS_OK, "dev", 70000, 2, NULL);
    tt[2].t.has_env = 1;
    tt[2].t.env = ep.digest;
    tt[2].t.has_parent = 1;
    tt[2].t.parent = tt[0].t.id;
    write_traces(s, tt, 3);

    for (int i = 0; i < 3; i++)
        assert_get_equal(s, &tt[i].t);
    {
        deja_trace *got = NULL;
        assert_int_equal(deja_trace_get(s, &tt[2].t.id, &got), 0);
        assert_memory_equal(got->parent.bytes, tt[0].t.id.bytes, 16);
        assert_memory_equal(got->env.bytes, ep.digest.bytes, 16);
        deja_trace_free(got);
    }
    /* a blob reads back by its digest */
    {
        deja_digest d = deja_digest_of(tt[1].big, 5000);
        assert_int_equal(deja__store_blob_get(s, &d, &data, &size), 0);
        assert_int_equal(size, 5000);
        assert_memory_equal(data, tt[1].big, 5000);
        free(data);
    }
    /* putting the same traces again adds nothing */
    assert_int_equal(deja__store_write(s, put_batch, &b), 0);
    assert_int_equal(b.added, 0);
    /* the environment */
    assert_int_equal(deja_store_env_get(s, &ep.digest, &got_env), 0);
    assert_string_equal(got_env->arch, "x86_64");
    assert_string_equal(got_env->cpu_vendor, "GenuineIntel");
    assert_int_equal(got_env->nisa, 2);
    assert_string_equal(got_env->isa[1], "sse4_2");
    assert_int_equal(got_env->cores, 8);
    assert_int_equal(got_env->nvars, 1);
    assert_string_equal(got_env->vars[0].value, "4");
    deja_env_free(got_env);
    /* a missing trace */
    {
        deja_id id;
        deja_trace *got = (deja_trace *)1;
        deja__id_new(&id);
        assert_int_equal(deja_trace_get(s, &id, &got), DEJA_ENOTFOUND);
        assert_null(got);
    }
    deja_store_close(s);

    /* and everything again from a read-only handle */
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    for (int i = 0; i < 3; i++)
        assert_get_equal(s, &tt[i].t);
    assert_int_equal(deja__store_write(s, put_batch, &b), DEJA_EINVAL);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    for (int i = 0; i < 3; i++)
        ttrace_free(&tt[i]);
    rm_rf(dir);
}

static void test_store__blob_dedup(void **state)
{
    enum { N = 1000, SIZE = 100 << 10 };
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace *tt = calloc(N, sizeof *tt);
    uint8_t *shared = malloc(SIZE);
    deja_store_stats st;

    (void)state;
    assert_non_null(tt);
    assert_non_null(shared);
    fill_random(shared, SIZE, 77);
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    for (int i = 0; i < N; i++)
        ttrace_init(&tt[i], 1700000000000 + i, i, "m", "1", DEJA_STATUS_OK, "prod", SIZE, 0,
                    shared);
    for (int i = 0; i < N; i += 250)
        write_traces(s, tt + i, 250);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.traces, N);
    assert_int_equal(st.blobs, 1);
    assert_true(st.raw_bytes >= (uint64_t)N * SIZE);
    assert_true(st.unique_bytes < (uint64_t)SIZE + (uint64_t)N * 1024);
    assert_true(st.stored_bytes < (uint64_t)N * SIZE / 50);
    assert_true(st.file_bytes < (uint64_t)N * SIZE / 20);
    assert_get_equal(s, &tt[0].t);
    assert_get_equal(s, &tt[N - 1].t);
    deja_store_close(s);
    free(shared);
    free(tt);
    rm_rf(dir);
}

/* The dictionary id in the header of trace record `id`, read raw. */
static uint32_t record_dict(const char *path, const deja_id *id)
{
    raw r;
    MDB_dbi dbi = raw_open(&r, path, "traces");
    MDB_val k = {16, (void *)id->bytes}, v;
    const uint8_t *p;
    uint32_t d;

    const uint8_t *refs;
    size_t nrefs, n;

    assert_int_equal(mdb_get(r.txn, dbi, &k, &v), 0);
    /* A trace value is its refs, then the record. */
    assert_int_equal(((const uint8_t *)v.mv_data)[0], 'R');
    assert_int_equal(deja__trace_value_split(v.mv_data, v.mv_size, &refs, &nrefs, &p, &n), 0);
    assert_non_null(refs);
    assert_true(n >= 10);
    assert_int_equal(p[0], 'D');
    d = (uint32_t)p[2] | (uint32_t)p[3] << 8 | (uint32_t)p[4] << 16 | (uint32_t)p[5] << 24;
    raw_close(&r);
    return d;
}

typedef struct reader_arg {
    deja_store *store;
    ttrace *tt;
    size_t n;
    int failures;
} reader_arg;

static void *reader(void *p)
{
    reader_arg *a = p;
    for (size_t i = 0; i < a->n; i++) {
        deja_trace *got = NULL;
        if (deja_trace_get(a->store, &a->tt[i].t.id, &got) != 0 || got->ninputs != 1 ||
            got->inputs[0].size != a->tt[i].t.inputs[0].size ||
            memcmp(got->inputs[0].data, a->tt[i].t.inputs[0].data, got->inputs[0].size) != 0)
            a->failures++;
        deja_trace_free(got);
    }
    return NULL;
}

static void test_store__dictionary(void **state)
{
    enum { N = 1300, BATCH = 100 };
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace *tt = calloc(N, sizeof *tt);
    deja_store_stats st;
    pthread_t th[4];
    reader_arg args[4];

    (void)state;
    assert_non_null(tt);
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    for (int i = 0; i < N; i++)
        ttrace_init(&tt[i], 1700000000000 + i, i, i % 2 ? "sentiment" : "textgen", "1.0.0",
                    DEJA_STATUS_OK, i % 3 ? "prod" : "staging", 0, 0, NULL);
    for (int i = 0; i < N; i += BATCH)
        write_traces(s, tt + i, BATCH);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.dictionaries, 1);
    assert_int_equal(st.traces, N);
    assert_true(st.stored_bytes < st.unique_bytes);
    /* readers in parallel, through one handle */
    for (int i = 0; i < 4; i++) {
        args[i] = (reader_arg){s, tt, N, 0};
        assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
    deja_store_close(s);

    /* records before the dictionary have none, records after use it */
    assert_int_equal(record_dict(path, &tt[0].t.id), 0);
    assert_int_equal(record_dict(path, &tt[199].t.id), 0); /* written before 256 samples */
    assert_int_equal(record_dict(path, &tt[N - 1].t.id), 1);

    /* a fresh handle reads both kinds back */
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    for (int i = 0; i < N; i++)
        assert_get_equal(s, &tt[i].t);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);

    /* damaged headers are refused before anything is allocated from them */
    {
        raw r;
        MDB_dbi traces = raw_open(&r, path, "traces"), meta;
        MDB_val k = {16, tt[1].t.id.bytes}, v;
        uint8_t huge[10] = {'D', 1, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F};
        uint8_t *copy;
        deja_trace *got = NULL;

        v.mv_size = sizeof huge;
        v.mv_data = huge;
        assert_int_equal(mdb_put(r.txn, traces, &k, &v, 0), 0);
        /* a compressed record whose header claims one byte more than its frame */
        k.mv_data = tt[2].t.id.bytes;
        assert_int_equal(mdb_get(r.txn, traces, &k, &v), 0);
        copy = malloc(v.mv_size);
        assert_non_null(copy);
        memcpy(copy, v.mv_data, v.mv_size);
        {
            const uint8_t *refs, *rec;
            size_t nrefs, nrec, off;

            assert_int_equal(
                deja__trace_value_split(copy, v.mv_size, &refs, &nrefs, &rec, &nrec), 0);
            off = (size_t)(rec - copy);
            assert_int_equal(copy[off + 1], 1);
            copy[off + 6]++;
        }
        v.mv_data = copy;
        assert_int_equal(mdb_put(r.txn, traces, &k, &v, 0), 0);
        free(copy);
        /* the dictionary disappears */
        assert_int_equal(mdb_dbi_open(r.txn, "meta", 0, &meta), 0);
        k.mv_size = 6;
        k.mv_data = "dict/1";
        assert_int_equal(mdb_del(r.txn, meta, &k, NULL), 0);
        raw_close(&r);

        assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
        assert_int_equal(deja_trace_get(s, &tt[1].t.id, &got), DEJA_ECORRUPT);
        assert_non_null(strstr(deja_error_last(), "beyond the bound"));
        assert_int_equal(deja_trace_get(s, &tt[2].t.id, &got), DEJA_ECORRUPT);
        assert_non_null(strstr(deja_error_last(), "does not hold"));
        assert_int_equal(deja_trace_get(s, &tt[N - 1].t.id, &got), DEJA_ECORRUPT);
        assert_non_null(strstr(deja_error_last(), "dictionary 1"));
        assert_get_equal(s, &tt[3].t);
        deja_store_close(s);
    }
    free(tt);
    rm_rf(dir);
}

/* What the prepared-trace test puts in one transaction. */
typedef struct prep_put {
    ttrace *tt;
    deja__prepared *preps;
    size_t n;
    int added;
} prep_put;

static int put_prepared_cb(deja__wtxn *w, void *payload)
{
    prep_put *pp = payload;
    pp->added = 0;
    for (size_t i = 0; i < pp->n; i++) {
        int added = 0;
        int rc = deja__wtxn_put_prepared(w, &pp->tt[i].t, &pp->preps[i], &added);
        if (rc != 0)
            return rc;
        pp->added += added;
    }
    return 0;
}

/* Traces prepared outside the transaction (on other threads) before the
 * dictionary exists and after it appeared are put together and all read
 * back byte for byte; blobs of prepared traces are stored once; putting a
 * prepared trace twice adds nothing. */
static void test_store__prepared_dictionary_midstream(void **state)
{
    enum { N = 600, A = 100, B = 500 };
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace *tt = calloc(N, sizeof *tt);
    deja__prepared *preps = calloc(N, sizeof *preps);
    void *cctx = deja__cctx_new();
    deja_store_stats st;
    int with_dict = 0;

    (void)state;
    assert_non_null(tt);
    assert_non_null(preps);
    assert_non_null(cctx);
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    for (int i = 0; i < N; i++)
        ttrace_init(&tt[i], 1700000000000 + i, i, i % 2 ? "sentiment" : "textgen", "1.0.0",
                    i % 9 ? DEJA_STATUS_OK : DEJA_STATUS_ERROR, i % 3 ? "prod" : "staging",
                    i % 10 == 0 ? 3000 : 0, (uint64_t)(i % 20), NULL);
    /* prepared before any dictionary */
    for (int i = 0; i < A; i++) {
        assert_int_equal(deja__store_prepare_trace(s, cctx, &tt[i].t, &preps[i]), 0);
        assert_int_equal(preps[i].nblobs, i % 10 == 0 ? 1 : 0);
        assert_int_equal(preps[i].rec.data[2], 0);
    }
    /* the dictionary appears */
    for (int i = A; i < B; i += 100)
        write_traces(s, tt + i, 100);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.dictionaries, 1);
    /* prepared after it: compressed with it */
    for (int i = B; i < N; i++) {
        assert_int_equal(deja__store_prepare_trace(s, cctx, &tt[i].t, &preps[i]), 0);
        with_dict += preps[i].rec.data[2] == 1;
    }
    assert_true(with_dict > 0);
    /* both kinds in one transaction, twice: the second adds nothing */
    prep_put pa = {tt, preps, A, 0}, pb = {tt + B, preps + B, N - B, 0};
    assert_int_equal(deja__store_write(s, put_prepared_cb, &pa), 0);
    assert_int_equal(pa.added, A);
    assert_int_equal(deja__store_write(s, put_prepared_cb, &pb), 0);
    assert_int_equal(pb.added, N - B);
    assert_int_equal(deja__store_write(s, put_prepared_cb, &pa), 0);
    assert_int_equal(pa.added, 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.traces, N);
    deja_store_close(s);
    assert_int_equal(record_dict(path, &tt[0].t.id), 0);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    for (int i = 0; i < N; i++)
        assert_get_equal(s, &tt[i].t);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    for (int i = 0; i < N; i++) {
        deja__prepared_free(&preps[i]);
        ttrace_free(&tt[i]);
    }
    deja__cctx_free(cctx);
    free(preps);
    free(tt);
    rm_rf(dir);
}

static void test_store__map_growth(void **state)
{
    enum { N = 50, BATCH = 5 };
    const size_t size = (size_t)4 << 20; /* 50 x 4 MiB = 200 MiB */
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace tt[BATCH];
    deja_store_stats st;

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    deja_id ids[N];
    for (int i = 0; i < N; i += BATCH) {
        for (int j = 0; j < BATCH; j++) {
            ttrace_init(&tt[j], 1700000000000 + i + j, i + j, "big", "1", DEJA_STATUS_OK, "x", size,
                        (uint64_t)(i + j + 1), NULL);
            ids[i + j] = tt[j].t.id;
        }
        write_traces(s, tt, BATCH);
        for (int j = 0; j < BATCH; j++)
            ttrace_free(&tt[j]);
    }
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.traces, N);
    assert_int_equal(st.blobs, N);
    assert_true(st.file_bytes >= (uint64_t)N * size);
    deja_store_close(s);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    uint8_t *want = malloc(size);
    assert_non_null(want);
    for (int i = 0; i < N; i++) {
        deja_trace *got = NULL;
        assert_int_equal(deja_trace_get(s, &ids[i], &got), 0);
        assert_int_equal(got->ninputs, 2);
        assert_int_equal(got->inputs[1].size, size);
        fill_random(want, size, (uint64_t)i + 1);
        assert_memory_equal(got->inputs[1].data, want, size);
        deja_trace_free(got);
    }
    free(want);
    deja_store_close(s);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Listing and resolving
 * ---------------------------------------------------------------------- */

#define LIST_N 30
#define LIST_BASE 1700000000000

typedef struct listed {
    deja_id ids[64];
    size_t n;
    size_t stop_after;
    deja_id bad_ids[8];
    int bad_codes[8];
    size_t nbad;
    int blob_data_null;
} listed;

static int list_cb(const deja_trace *t, void *payload)
{
    listed *l = payload;
    if (l->n < 64)
        l->ids[l->n] = t->id;
    l->n++;
    for (size_t i = 0; i < t->ninputs; i++)
        if (t->inputs[i].size > DEJA__INLINE_MAX && t->inputs[i].data == NULL)
            l->blob_data_null = 1;
    return l->stop_after != 0 && l->n >= l->stop_after;
}

static int bad_cb(const deja_id *id, int code, const char *message, void *payload)
{
    listed *l = payload;
    assert_non_null(message);
    if (l->nbad < 8) {
        l->bad_ids[l->nbad] = *id;
        l->bad_codes[l->nbad] = code;
    }
    l->nbad++;
    return 0;
}

typedef struct grow_reader {
    deja_store *store;
    const deja_trace *want;
    atomic_int *done;
    int reads, failures;
} grow_reader;

/* Read one trace and list the store over and over until the writer is done. */
static void *grow_reader_main(void *p)
{
    grow_reader *a = p;
    while (!*a->done || a->reads < 10) {
        deja_trace *got = NULL;
        listed l;
        memset(&l, 0, sizeof l);
        if (deja_trace_get(a->store, &a->want->id, &got) != 0 ||
            got->inputs[0].size != a->want->inputs[0].size ||
            deja_store_list(a->store, NULL, list_cb, bad_cb, &l) != 0 || l.nbad != 0)
            a->failures++;
        deja_trace_free(got);
        a->reads++;
        usleep(200);
    }
    return NULL;
}

/* Readers on the same handle keep reading while a writer grows the map under
 * them: growth waits for their transactions, and they see consistent data. */
static void test_store__read_while_growing(void **state)
{
    enum { N = 24 };
    const size_t size = (size_t)4 << 20; /* 96 MiB in all: past the 64 MiB map */
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace first, tt;
    pthread_t th[2];
    grow_reader args[2];
    atomic_int done = 0;
    deja_store_stats st;

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    ttrace_init(&first, 1700000000000, 0, "m", "1", DEJA_STATUS_OK, "p", 0, 0, NULL);
    write_traces(s, &first, 1);
    for (int i = 0; i < 2; i++) {
        args[i] = (grow_reader){s, &first.t, &done, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, grow_reader_main, &args[i]), 0);
    }
    for (int i = 1; i <= N; i++) {
        ttrace_init(&tt, 1700000000000 + i, i, "m", "1", DEJA_STATUS_OK, "p", size, (uint64_t)i,
                    NULL);
        write_traces(s, &tt, 1);
        ttrace_free(&tt);
    }
    done = 1;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.traces, N + 1);
    assert_true(st.file_bytes > (uint64_t)64 << 20);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    rm_rf(dir);
}

/* Trace i of the list fixture: at LIST_BASE + i seconds; model a/1 (i%3==0),
 * a/2 (i%3==1), b/1 (i%3==2); error when i%4==0; env=prod when i even. */
static void list_fixture(const char *path, ttrace *tt)
{
    static const char *const models[] = {"a", "a", "b"};
    static const char *const versions[] = {"1", "2", "1"};
    deja_store *s = NULL;

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    for (int i = 0; i < LIST_N; i++)
        ttrace_init(&tt[i], LIST_BASE + (int64_t)i * 1000, i, models[i % 3], versions[i % 3],
                    i % 4 == 0 ? DEJA_STATUS_ERROR : DEJA_STATUS_OK, i % 2 ? "dev" : "prod",
                    i == 5 ? 4000 : 0, 9, NULL);
    /* written in two batches, out of order */
    write_traces(s, tt + 15, LIST_N - 15);
    write_traces(s, tt, 15);
    deja_store_close(s);
}

/* List with `f` and check the result is exactly the traces i (newest
 * first) for which `want(i)` holds. */
static void check_list(deja_store *s, const deja_filter *f, ttrace *tt, int (*want)(int),
                       size_t limit_expected)
{
    listed l;
    size_t k = 0;

    memset(&l, 0, sizeof l);
    assert_int_equal(deja_store_list(s, f, list_cb, bad_cb, &l), 0);
    assert_int_equal(l.nbad, 0);
    for (int i = LIST_N - 1; i >= 0; i--) {
        if (!want(i))
            continue;
        if (limit_expected != 0 && k == limit_expected)
            break;
        assert_true(k < l.n);
        assert_memory_equal(l.ids[k].bytes, tt[i].t.id.bytes, 16);
        k++;
    }
    assert_int_equal(l.n, k);
}

static int want_all(int i)
{
    return i >= 0;
}
static int want_none(int i)
{
    return i < 0;
}
static int want_a(int i)
{
    return i % 3 != 2;
}
static int want_a2(int i)
{
    return i % 3 == 1;
}
static int want_error(int i)
{
    return i % 4 == 0;
}
static int want_ok(int i)
{
    return i % 4 != 0;
}
static int want_prod(int i)
{
    return i % 2 == 0;
}
static int want_prod_n1(int i)
{
    return i % 2 == 0 && i % 3 == 1;
}
static int want_window(int i)
{
    return i >= 10 && i < 20;
}
static int want_b_error_window(int i)
{
    return i % 3 == 2 && i % 4 == 0 && i >= 10;
}

static void test_store__list(void **state)
{
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace tt[LIST_N];
    deja_filter f = DEJA_FILTER_INIT;
    deja_tag prod[] = {{"env", "prod"}, {"shard", "n1"}};
    listed l;

    (void)state;
    tmp_store(dir, path);
    list_fixture(path, tt);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);

    check_list(s, NULL, tt, want_all, 0);
    check_list(s, &f, tt, want_all, 0);
    f.model = "a";
    check_list(s, &f, tt, want_a, 0);
    f.model_version = "2";
    check_list(s, &f, tt, want_a2, 0);
    f = (deja_filter)DEJA_FILTER_INIT;
    f.model = "nosuch";
    check_list(s, &f, tt, want_none, 0);
    f = (deja_filter)DEJA_FILTER_INIT;
    f.status = DEJA_STATUS_ERROR;
    check_list(s, &f, tt, want_error, 0);
    f.status = DEJA_STATUS_OK;
    check_list(s, &f, tt, want_ok, 0);
    f = (deja_filter)DEJA_FILTER_INIT;
    f.tags = prod;
    f.ntags = 1;
    check_list(s, &f, tt, want_prod, 0);
    f.ntags = 2;
    check_list(s, &f, tt, want_prod_n1, 0);
    f = (deja_filter)DEJA_FILTER_INIT;
    f.since_ns = (LIST_BASE + 10 * 1000) * 1000000;
    f.until_ns = (LIST_BASE + 20 * 1000) * 1000000;
    check_list(s, &f, tt, want_window, 0);
    f.until_ns = 0;
    f.model = "b";
    f.status = DEJA_STATUS_ERROR;
    check_list(s, &f, tt, want_b_error_window, 0);
    f = (deja_filter)DEJA_FILTER_INIT;
    f.limit = 5;
    check_list(s, &f, tt, want_all, 5);
    f.model = "a";
    check_list(s, &f, tt, want_a, 5);

    /* the callback stops the listing; blob payloads are not loaded */
    memset(&l, 0, sizeof l);
    l.stop_after = 3;
    assert_int_equal(deja_store_list(s, NULL, list_cb, NULL, &l), 0);
    assert_int_equal(l.n, 3);
    memset(&l, 0, sizeof l);
    assert_int_equal(deja_store_list(s, NULL, list_cb, NULL, &l), 0);
    assert_int_equal(l.blob_data_null, 1);
    deja_store_close(s);
    for (int i = 0; i < LIST_N; i++)
        ttrace_free(&tt[i]);
    rm_rf(dir);
}

static void test_store__list_corrupt_record(void **state)
{
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace tt[LIST_N];
    deja_filter f = DEJA_FILTER_INIT;
    listed l;
    raw r;
    MDB_dbi traces;
    MDB_val k, v = {9, "Dgarbage!"};
    deja_trace *got = NULL;

    (void)state;
    tmp_store(dir, path);
    list_fixture(path, tt);
    traces = raw_open(&r, path, "traces");
    k.mv_size = 16;
    k.mv_data = tt[12].t.id.bytes;
    assert_int_equal(mdb_put(r.txn, traces, &k, &v, 0), 0);
    raw_close(&r);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    f.model = "nosuch";
    check_list(s, &f, tt, want_none, 0);
    memset(&l, 0, sizeof l);
    assert_int_equal(deja_store_list(s, NULL, list_cb, bad_cb, &l), 0);
    assert_int_equal(l.n, LIST_N - 1);
    assert_int_equal(l.nbad, 1);
    assert_int_equal(l.bad_codes[0], DEJA_ECORRUPT);
    assert_memory_equal(l.bad_ids[0].bytes, tt[12].t.id.bytes, 16);
    /* NULL bad callback: the others still list */
    memset(&l, 0, sizeof l);
    assert_int_equal(deja_store_list(s, NULL, list_cb, NULL, &l), 0);
    assert_int_equal(l.n, LIST_N - 1);
    assert_int_equal(deja_trace_get(s, &tt[12].t.id, &got), DEJA_ECORRUPT);
    assert_null(got);
    assert_non_null(strstr(deja_error_last(), "trace "));
    assert_get_equal(s, &tt[13].t);
    assert_true(deja_store_verify(s, NULL, NULL) >= 1);
    deja_store_close(s);
    for (int i = 0; i < LIST_N; i++)
        ttrace_free(&tt[i]);
    rm_rf(dir);
}

static void test_store__resolve(void **state)
{
    char dir[256], path[300], full[DEJA_ID_STRLEN + 1], prefix[32], want[200];
    deja_store *s = NULL;
    ttrace tt[LIST_N];
    deja_id id;

    (void)state;
    tmp_store(dir, path);
    list_fixture(path, tt);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);

    deja_id_format(&tt[7].t.id, full);
    assert_int_equal(deja_store_resolve(s, full, &id), 0);
    assert_memory_equal(id.bytes, tt[7].t.id.bytes, 16);
    /* a prefix covering trace 7's millisecond only, lowercase */
    for (int i = 0; i < 12; i++)
        prefix[i] = (char)(full[i] >= 'A' && full[i] <= 'Z' ? full[i] - 'A' + 'a' : full[i]);
    prefix[12] = '\0';
    memset(&id, 0, sizeof id);
    assert_int_equal(deja_store_resolve(s, prefix, &id), 0);
    assert_memory_equal(id.bytes, tt[7].t.id.bytes, 16);
    /* one character: every trace */
    prefix[0] = full[0];
    prefix[1] = '\0';
    assert_int_equal(deja_store_resolve(s, prefix, &id), DEJA_EAMBIGUOUS);
    assert_non_null(strstr(deja_error_last(), "matches several traces ("));
    /* missing */
    assert_int_equal(deja_store_resolve(s, "7ZZZ", &id), DEJA_ENOTFOUND);
    assert_string_equal(deja_error_last(), "no trace with id prefix '7ZZZ'");
    snprintf(want, sizeof want, "%.25s", full);
    want[24] = want[24] == '0' ? '1' : '0';
    assert_int_equal(deja_store_resolve(s, want, &id), DEJA_ENOTFOUND);
    /* invalid */
    assert_int_equal(deja_store_resolve(s, "xyz!", &id), DEJA_EINVAL);
    assert_string_equal(deja_error_last(), "'xyz!' is not an id prefix");
    assert_int_equal(deja_store_resolve(s, "01U", &id), DEJA_EINVAL);
    assert_int_equal(deja_store_resolve(s, "", &id), DEJA_EINVAL);
    assert_int_equal(deja_store_resolve(s, "8", &id), DEJA_EINVAL);
    snprintf(want, sizeof want, "%s0", full);
    assert_int_equal(deja_store_resolve(s, want, &id), DEJA_EINVAL);
    deja_store_close(s);
    for (int i = 0; i < LIST_N; i++)
        ttrace_free(&tt[i]);
    rm_rf(dir);
}

/* A tag too long for an LMDB key is kept in the trace, not indexed, and
 * still found by a tag filter; verify does not count it as a problem. */
static void test_store__long_tag(void **state)
{
    char dir[256], path[300], longval[700];
    deja_store *s = NULL;
    ttrace tt[2];
    deja_filter f = DEJA_FILTER_INIT;
    deja_tag want;
    listed l;

    (void)state;
    tmp_store(dir, path);
    memset(longval, 'v', sizeof longval - 1);
    longval[sizeof longval - 1] = '\0';
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    ttrace_init(&tt[0], 1700000000000, 0, "m", "1", DEJA_STATUS_OK, "p", 0, 0, NULL);
    ttrace_init(&tt[1], 1700000000001, 1, "m", "1", DEJA_STATUS_OK, "p", 0, 0, NULL);
    tt[0].tags[1].value = longval;
    write_traces(s, tt, 2);
    assert_get_equal(s, &tt[0].t);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    want = (deja_tag){"shard", longval};
    f.tags = &want;
    f.ntags = 1;
    memset(&l, 0, sizeof l);
    assert_int_equal(deja_store_list(s, &f, list_cb, bad_cb, &l), 0);
    assert_int_equal(l.n, 1);
    assert_memory_equal(l.ids[0].bytes, tt[0].t.id.bytes, 16);
    deja_store_close(s);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Stats, verify, concurrency
 * ---------------------------------------------------------------------- */

static int count_cb(deja__wtxn *w, void *payload)
{
    (void)payload;
    return deja__wtxn_count(w, 3, 2, 1);
}

static void test_store__stats(void **state)
{
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace tt[4];
    deja_store_stats st;
    deja_env env = {0};
    env_put ep = {&env, {{0}}};

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    for (int i = 0; i < 4; i++)
        ttrace_init(&tt[i], 1700000000000 + i, i, "m", "1", DEJA_STATUS_OK, "p", i < 2 ? 3000 : 0,
                    5, NULL); /* two identical 3000-byte blobs */
    write_traces(s, tt, 4);
    env.os = "Linux";
    assert_int_equal(deja__store_write(s, put_env_cb, &ep), 0);
    assert_int_equal(deja__store_write(s, put_env_cb, &ep), 0);
    assert_int_equal(deja__store_write(s, count_cb, NULL), 0);
    assert_int_equal(deja__store_write(s, count_cb, NULL), 0);
    assert_int_equal(deja__store_sync(s), 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.traces, 4);
    assert_int_equal(st.blobs, 1);
    assert_int_equal(st.envs, 1);
    assert_int_equal(st.dropped, 6);
    assert_int_equal(st.sampled_out, 4);
    assert_int_equal(st.redacted, 2);
    assert_int_equal(st.dictionaries, 0);
    assert_int_equal(st.format, DEJA__FORMAT_VERSION);
    assert_true(st.raw_bytes >= 2 * 3000);
    assert_true(st.unique_bytes >= 3000 && st.unique_bytes < st.raw_bytes);
    /* unique counts chunk lists too; stored adds a 10-byte header per record
     * (4 traces, 1 environment, at most 3000 / 129 + 1 chunks) */
    assert_true(st.stored_bytes > 0 &&
                st.stored_bytes <= st.unique_bytes + (4 + 1 + 3000 / 129 + 1) * 10);
    assert_true(st.file_bytes > 0);
    deja_store_close(s);
    for (int i = 0; i < 4; i++)
        ttrace_free(&tt[i]);
    rm_rf(dir);
}

static void test_store__verify(void **state)
{
    char dir[256], path[300], hex1[33], hex2[33], text[DEJA_ID_STRLEN + 1];
    deja_store *s = NULL;
    ttrace tt[3];
    deja_digest d1, d2;
    problems p;
    raw r;
    MDB_dbi blobs, ix_tag;
    MDB_val k, v;
    uint8_t *copy;
    uint8_t key[64];

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    for (int i = 0; i < 3; i++)
        ttrace_init(&tt[i], 1700000000000 + i, i, "m", "1", DEJA_STATUS_OK, "p", 2000,
                    (uint64_t)i + 100, NULL);
    write_traces(s, tt, 3);
    memset(&p, 0, sizeof p);
    assert_int_equal(deja_store_verify(s, problem_cb, &p), 0);
    assert_int_equal(p.n, 0);
    deja_store_close(s);

    d1 = deja_digest_of(tt[0].big, 2000);
    d2 = deja_digest_of(tt[1].big, 2000);
    deja_digest_format(&d1, hex1);
    deja_digest_format(&d2, hex2);
    blobs = raw_open(&r, path, "blobs");
    k.mv_size = 16;
    k.mv_data = d1.bytes;
    assert_int_equal(mdb_del(r.txn, blobs, &k, NULL), 0);
    k.mv_data = d2.bytes;
    assert_int_equal(mdb_get(r.txn, blobs, &k, &v), 0);
    copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size - 1] ^= 0x40;
    v.mv_data = copy;
    assert_int_equal(mdb_put(r.txn, blobs, &k, &v, 0), 0);
    free(copy);
    assert_int_equal(mdb_dbi_open(r.txn, "ixd_tag", MDB_DUPSORT | MDB_DUPFIXED, &ix_tag), 0);
    memcpy(key, "env=ghost", 10);
    memset(key + 10, 0x01, 16);
    k.mv_size = 10;
    k.mv_data = key;
    v.mv_size = 16;
    v.mv_data = key + 10;
    assert_int_equal(mdb_put(r.txn, ix_tag, &k, &v, 0), 0);
    raw_close(&r);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    memset(&p, 0, sizeof p);
    assert_int_equal(deja_store_verify(s, problem_cb, &p), 3);
    assert_int_equal(p.n, 3);
    deja_id_format(&tt[0].t.id, text);
    assert_true(has_line(&p, text, hex1));
    assert_true(has_line(&p, "missing", hex1));
    /* the flipped byte is in a chunk digest of the chunk list */
    assert_true(has_line(&p, hex2, "digest") || has_line(&p, hex2, "missing"));
    assert_true(has_line(&p, "env=ghost", "no such trace"));
    /* reading the damaged traces says what is wrong */
    {
        deja_trace *got = NULL;
        assert_int_equal(deja_trace_get(s, &tt[0].t.id, &got), DEJA_ECORRUPT);
        assert_non_null(strstr(deja_error_last(), "is missing"));
        assert_int_equal(deja_trace_get(s, &tt[1].t.id, &got), DEJA_ECORRUPT);
        assert_get_equal(s, &tt[2].t);
    }
    deja_store_close(s);
    for (int i = 0; i < 3; i++)
        ttrace_free(&tt[i]);
    rm_rf(dir);
}

/* ------------------------------------------------------------------------
 * Chunked blobs
 * ---------------------------------------------------------------------- */

/* Pseudo-English: words drawn from a small vocabulary, compressible. */
static void fill_text(uint8_t *p, size_t n, uint64_t seed)
{
    static const char *const w[] = {"the ",      "model ",  "answer ", "question ", "of ",
                                    "payment ",  "refund ", "please ", "user: ",    "and ",
                                    "delivery ", "system ", "a ",      "to ",       "order\n"};
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 7;
    size_t i = 0;

    while (i < n) {
        const char *word;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        word = w[(x * 0x2545F4914F6CDD1Dull >> 33) % 15];
        for (size_t j = 0; word[j] != '\0' && i < n; j++)
            p[i++] = (uint8_t)word[j];
    }
}

typedef struct blob_set {
    const uint8_t **data;
    const size_t *size;
    size_t n;
    deja_digest *out;
} blob_set;

static int put_blobs(deja__wtxn *w, void *payload)
{
    blob_set *b = payload;
    for (size_t i = 0; i < b->n; i++) {
        int rc = deja__wtxn_put_blob(w, b->data[i], b->size[i], &b->out[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Entries in database `db` of the closed store at `path`. */
static size_t db_entries(const char *path, const char *db)
{
    raw r;
    MDB_dbi dbi = raw_open(&r, path, db);
    MDB_stat st;
    assert_int_equal(mdb_stat(r.txn, dbi, &st), 0);
    raw_close(&r);
    return st.ms_entries;
}

static void assert_blob(deja_store *s, const deja_digest *d, const uint8_t *want, size_t n)
{
    void *data = NULL;
    size_t size = 0;
    int rc = deja__store_blob_get(s, d, &data, &size);
    if (rc != 0)
        fprintf(stderr, "blob get: %s\n", deja_error_last());
    assert_int_equal(rc, 0);
    assert_int_equal(size, n);
    assert_memory_equal(data, want, n);
    free(data);
}

static void test_store__chunked_round_trip(void **state)
{
    static const size_t sizes[] = {DEJA__INLINE_MAX + 1,
                                   1100,
                                   2 * DEJA__CHUNK_MIN + 1,
                                   4095,
                                   4096,
                                   DEJA__CHUNK_MAX - 1,
                                   DEJA__CHUNK_MAX,
                                   DEJA__CHUNK_MAX + 1,
                                   2 * DEJA__CHUNK_MAX + 1,
                                   65536,
                                   200003,
                                   (1 << 20) + 7};
    enum { NS = sizeof sizes / sizeof sizes[0], N = 2 * NS + 1 };
    char dir[256], path[300];
    deja_store *s = NULL;
    const uint8_t *data[N];
    size_t size[N];
    deja_digest d[N];
    blob_set b = {data, size, N, d};
    uint8_t *bufs[N];

    (void)state;
    for (size_t i = 0; i < NS; i++) {
        bufs[2 * i] = malloc(sizes[i]);
        bufs[2 * i + 1] = malloc(sizes[i]);
        assert_non_null(bufs[2 * i]);
        assert_non_null(bufs[2 * i + 1]);
        fill_random(bufs[2 * i], sizes[i], 1000 + i);
        fill_text(bufs[2 * i + 1], sizes[i], 2000 + i);
        size[2 * i] = size[2 * i + 1] = sizes[i];
    }
    /* all zeros: every cut at the maximum, one chunk stored for many */
    size[N - 1] = 100000;
    bufs[N - 1] = calloc(1, size[N - 1]);
    assert_non_null(bufs[N - 1]);
    for (size_t i = 0; i < N; i++)
        data[i] = bufs[i];
    /* the chunker's cuts stay within bounds and cover the payload */
    for (size_t i = 0; i < N; i++) {
        size_t off = 0;
        while (off < size[i]) {
            size_t n = deja__chunk_next(bufs[i] + off, size[i] - off);
            assert_true(n > 0 && n <= DEJA__CHUNK_MAX);
            assert_true(n > DEJA__CHUNK_MIN || n == size[i] - off);
            off += n;
        }
        assert_int_equal(off, size[i]);
    }
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    assert_int_equal(deja__store_write(s, put_blobs, &b), 0);
    for (size_t i = 0; i < N; i++) {
        assert_memory_equal(d[i].bytes, deja_digest_of(data[i], size[i]).bytes, 16);
        assert_blob(s, &d[i], data[i], size[i]);
    }
    deja_store_close(s);
    /* the zero payload is one distinct chunk (and a short tail) */
    assert_true(db_entries(path, "chunks") < 2 * ((1 << 20) + 300000) / DEJA__CHUNK_MIN);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    for (size_t i = 0; i < N; i++)
        assert_blob(s, &d[i], data[i], size[i]);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    for (size_t i = 0; i < N; i++)
        free(bufs[i]);
    rm_rf(dir);
}

/* Read every trace of `a` 5 times, checking the blob input byte for byte. */
static void *big_reader(void *p)
{
    reader_arg *a = p;
    for (int r = 0; r < 5; r++)
        for (size_t i = 0; i < a->n; i++) {
            deja_trace *got = NULL;
            const deja_tensor *want = &a->tt[i].t.inputs[1];
            if (deja_trace_get(a->store, &a->tt[i].t.id, &got) != 0 || got->ninputs != 2 ||
                got->inputs[1].size != want->size ||
                memcmp(got->inputs[1].data, want->data, want->size) != 0)
                a->failures++;
            deja_trace_free(got);
        }
    return NULL;
}

/* A conversation that grows by a turn per trace, as chat prompts do: every
 * trace repeats the one before and adds ~500 bytes. The shared prefix is
 * stored once, across traces and transactions, before and after the
 * dictionary is trained (chunks with and without it stay readable). */
static void test_store__chunk_dedup_across_traces(void **state)
{
    enum { TURNS = 10, FIRST = 2048, TURN = 500, FILL = 300 };
    char dir[256], path[300];
    deja_store *s = NULL;
    uint8_t *convo = malloc(FIRST + 2 * TURNS * TURN);
    ttrace tt[2 * TURNS], *filler = calloc(FILL, sizeof *filler);
    deja_store_stats st;
    uint64_t sum = 0;

    (void)state;
    assert_non_null(convo);
    assert_non_null(filler);
    fill_text(convo, FIRST + 2 * TURNS * TURN, 5);
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    for (int i = 0; i < TURNS; i++) {
        ttrace_init(&tt[i], 1700000000000 + i, i, "chat", "1", DEJA_STATUS_OK, "p",
                    FIRST + (size_t)i * TURN, 0, convo);
        write_traces(s, &tt[i], 1);
        sum += FIRST + (uint64_t)i * TURN;
    }
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.blobs, TURNS);
    /* ~6.5 KB of distinct text, ~47 KB written */
    assert_true(st.raw_bytes >= sum);
    assert_true(st.unique_bytes < sum / 3);
    for (int i = 0; i < TURNS; i++)
        assert_get_equal(s, &tt[i].t);

    /* train the dictionary, then grow the conversation further */
    for (int i = 0; i < FILL; i++)
        ttrace_init(&filler[i], 1700000001000 + i, i, "chat", "1", DEJA_STATUS_OK, "p", 0, 0, NULL);
    write_traces(s, filler, FILL);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.dictionaries, 1);
    for (int i = TURNS; i < 2 * TURNS; i++) {
        ttrace_init(&tt[i], 1700000002000 + i, i, "chat", "1", DEJA_STATUS_OK, "p",
                    FIRST + (size_t)i * TURN, 0, convo);
        write_traces(s, &tt[i], 1);
    }
    deja_store_close(s);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    for (int i = 0; i < 2 * TURNS; i++)
        assert_get_equal(s, &tt[i].t);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    /* readers in parallel through one handle share its chunk cache */
    {
        pthread_t th[4];
        reader_arg args[4];

        for (int i = 0; i < 4; i++) {
            args[i] = (reader_arg){s, tt, 2 * TURNS, 0};
            assert_int_equal(pthread_create(&th[i], NULL, big_reader, &args[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
            assert_int_equal(pthread_join(th[i], NULL), 0);
            assert_int_equal(args[i].failures, 0);
        }
    }
    deja_store_close(s);
    for (int i = 0; i < 2 * TURNS; i++)
        ttrace_free(&tt[i]);
    free(filler);
    free(convo);
    rm_rf(dir);
}

/* An edit in the middle of a large payload, or an insertion, re-stores only
 * the chunks next to it. */
static void test_store__chunk_edit(void **state)
{
    enum { SIZE = 256 << 10, INS = 100 };
    char dir[256], path[300];
    deja_store *s = NULL;
    uint8_t *a = malloc(SIZE), *e = malloc(SIZE), *ins = malloc(SIZE + INS);
    const uint8_t *data[3] = {a, e, ins};
    size_t size[3] = {SIZE, SIZE, SIZE + INS}, c0, c1, c2;
    deja_digest d[3];
    blob_set b = {data, size, 1, d};

    (void)state;
    assert_non_null(a);
    assert_non_null(e);
    assert_non_null(ins);
    fill_text(a, SIZE, 9);
    memcpy(e, a, SIZE);
    memcpy(e + SIZE / 2, "EDITED!!", 8);
    memcpy(ins, a, SIZE / 3);
    fill_random(ins + SIZE / 3, INS, 4);
    memcpy(ins + SIZE / 3 + INS, a + SIZE / 3, SIZE - SIZE / 3);
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    assert_int_equal(deja__store_write(s, put_blobs, &b), 0);
    deja_store_close(s);
    c0 = db_entries(path, "chunks");
    assert_true(c0 > SIZE / DEJA__CHUNK_MAX);
    for (int step = 1; step <= 2; step++) {
        b.data = data + step;
        b.size = size + step;
        b.out = d + step;
        assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
        assert_int_equal(deja__store_write(s, put_blobs, &b), 0);
        deja_store_close(s);
    }
    c1 = db_entries(path, "chunks");
    (void)c1;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    for (int i = 0; i < 3; i++)
        assert_blob(s, &d[i], data[i], size[i]);
    deja_store_close(s);
    c2 = db_entries(path, "chunks");
    /* at most 3 new chunks for the edit and 3 for the insertion */
    assert_true(c2 - c0 <= 6);
    assert_true(c2 > c0);
    free(a);
    free(e);
    free(ins);
    rm_rf(dir);
}

/* The digest of chunk number `index` in the chunk list of blob `d`. */
static void chunk_of(const char *path, const deja_digest *d, size_t index, deja_digest *out)
{
    raw r;
    MDB_dbi blobs = raw_open(&r, path, "blobs");
    MDB_val k = {16, (void *)d->bytes}, v;
    deja__chunked it;
    const uint8_t *cd = NULL;
    size_t cs;

    assert_int_equal(mdb_get(r.txn, blobs, &k, &v), 0);
    assert_int_equal(((const uint8_t *)v.mv_data)[0], DEJA__CHUNKED_MAGIC);
    assert_int_equal(deja__chunked_parse(v.mv_data, v.mv_size, d, &it), 0);
    assert_true(it.count > index);
    for (size_t i = 0; i <= index; i++)
        assert_int_equal(deja__chunked_next(&it, &cs, &cd), 1);
    memcpy(out->bytes, cd, 16);
    raw_close(&r);
}

/* A missing chunk and a damaged chunk: verify names blob and chunk, and
 * reading the trace fails naming them. */
static void test_store__chunk_damage(void **state)
{
    char dir[256], path[300], bhex[2][33], chex[2][33];
    deja_store *s = NULL;
    ttrace tt[2];
    deja_digest blob[2], chunk[2];
    problems p;
    raw r;
    MDB_dbi chunks;
    MDB_val k, v;
    uint8_t *copy;

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    for (int i = 0; i < 2; i++) {
        ttrace_init(&tt[i], 1700000000000 + i, i, "m", "1", DEJA_STATUS_OK, "p", 20000,
                    (uint64_t)i + 300, NULL);
        blob[i] = deja_digest_of(tt[i].big, 20000);
        deja_digest_format(&blob[i], bhex[i]);
    }
    write_traces(s, tt, 2);
    deja_store_close(s);
    chunk_of(path, &blob[0], 1, &chunk[0]);
    chunk_of(path, &blob[1], 2, &chunk[1]);
    for (int i = 0; i < 2; i++)
        deja_digest_format(&chunk[i], chex[i]);
    chunks = raw_open(&r, path, "chunks");
    k.mv_size = 16;
    k.mv_data = chunk[0].bytes;
    assert_int_equal(mdb_del(r.txn, chunks, &k, NULL), 0);
    k.mv_data = chunk[1].bytes;
    assert_int_equal(mdb_get(r.txn, chunks, &k, &v), 0);
    copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size - 1] ^= 0x10;
    v.mv_data = copy;
    assert_int_equal(mdb_put(r.txn, chunks, &k, &v, 0), 0);
    free(copy);
    raw_close(&r);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    memset(&p, 0, sizeof p);
    assert_true(deja_store_verify(s, problem_cb, &p) >= 2);
    assert_true(has_line(&p, bhex[0], chex[0]));
    assert_true(has_line(&p, chex[0], "missing"));
    assert_true(has_line(&p, bhex[1], chex[1]));
    {
        deja_trace *got = NULL;
        assert_int_equal(deja_trace_get(s, &tt[0].t.id, &got), DEJA_ECORRUPT);
        assert_non_null(strstr(deja_error_last(), chex[0]));
        assert_non_null(strstr(deja_error_last(), "missing"));
        assert_int_equal(deja_trace_get(s, &tt[1].t.id, &got), DEJA_ECORRUPT);
        assert_non_null(strstr(deja_error_last(), chex[1]));
        assert_non_null(strstr(deja_error_last(), bhex[1]));
    }
    deja_store_close(s);
    for (int i = 0; i < 2; i++)
        ttrace_free(&tt[i]);
    rm_rf(dir);
}

/* Chunk lists read from disk are bounded before anything is allocated. */
static void test_store__chunk_list_bounds(void **state)
{
    deja_digest key = deja_digest_of("k", 1);
    deja__chunked it;
    uint8_t ok[2 + 1 + 1 + 16] = {DEJA__CHUNKED_MAGIC, DEJA__CHUNKED_VERSION, 5, 5};
    uint8_t huge[8] = {DEJA__CHUNKED_MAGIC, DEJA__CHUNKED_VERSION, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
    uint8_t over[20] = {DEJA__CHUNKED_MAGIC, DEJA__CHUNKED_VERSION, 5, 6};
    uint8_t zero[20] = {DEJA__CHUNKED_MAGIC, DEJA__CHUNKED_VERSION, 0, 0};
    uint8_t sum[2 + 1 + 1 + 16] = {DEJA__CHUNKED_MAGIC, DEJA__CHUNKED_VERSION, 6, 5};
    uint8_t ver[3] = {DEJA__CHUNKED_MAGIC, 9, 0};
    size_t cs;
    const uint8_t *cd;

    (void)state;
    assert_int_equal(deja__chunked_parse(ok, sizeof ok, &key, &it), 0);
    assert_int_equal(it.total, 5);
    assert_int_equal(it.count, 1);
    assert_int_equal(deja__chunked_next(&it, &cs, &cd), 1);
    assert_int_equal(cs, 5);
    assert_ptr_equal(cd, ok + 4);
    assert_int_equal(deja__chunked_next(&it, &cs, &cd), 0);
    assert_int_equal(deja__chunked_parse(ok, sizeof ok - 1, &key, &it), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "cut short"));
    assert_int_equal(deja__chunked_parse(huge, sizeof huge, &key, &it), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "total"));
    assert_int_equal(deja__chunked_parse(over, sizeof over, &key, &it), DEJA_ECORRUPT);
    assert_int_equal(deja__chunked_parse(zero, sizeof zero, &key, &it), DEJA_ECORRUPT);
    assert_int_equal(deja__chunked_parse(sum, sizeof sum, &key, &it), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "add up"));
    assert_int_equal(deja__chunked_parse(ver, sizeof ver, &key, &it), DEJA_ECORRUPT);
    assert_int_equal(deja__chunked_parse(ok, 1, &key, &it), DEJA_ECORRUPT);
}

/* A blob written whole, as every blob was before chunking (a raw record:
 * 'D', codec 0, dictionary 0, u32 size, payload), still reads and verifies. */
static void test_store__old_whole_blob(void **state)
{
    enum { SIZE = 5000 };
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace tt[2];
    deja_digest d;
    raw r;
    MDB_dbi blobs;
    MDB_val k, v;
    uint8_t *rec = malloc(DEJA__RECORD_HEADER + SIZE);

    (void)state;
    assert_non_null(rec);
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    ttrace_init(&tt[0], 1700000000000, 0, "m", "1", DEJA_STATUS_OK, "p", SIZE, 11, NULL);
    write_traces(s, tt, 1);
    deja_store_close(s);
    d = deja_digest_of(tt[0].big, SIZE);
    rec[0] = 'D';
    rec[1] = DEJA__CODEC_RAW;
    memset(rec + 2, 0, 4);
    rec[6] = (uint8_t)(SIZE & 0xff);
    rec[7] = (uint8_t)(SIZE >> 8);
    rec[8] = rec[9] = 0;
    memcpy(rec + DEJA__RECORD_HEADER, tt[0].big, SIZE);
    blobs = raw_open(&r, path, "blobs");
    k.mv_size = 16;
    k.mv_data = d.bytes;
    assert_int_equal(mdb_get(r.txn, blobs, &k, &v), 0);
    assert_int_equal(((const uint8_t *)v.mv_data)[0], DEJA__CHUNKED_MAGIC);
    v.mv_size = DEJA__RECORD_HEADER + SIZE;
    v.mv_data = rec;
    assert_int_equal(mdb_put(r.txn, blobs, &k, &v, 0), 0);
    raw_close(&r);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_get_equal(s, &tt[0].t);
    assert_blob(s, &d, tt[0].big, SIZE);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);

    /* a store from before chunking has no `chunks` database at all: it
     * opens read-only as it is, and a writer adds the database */
    {
        MDB_dbi chunks = raw_open(&r, path, "chunks");
        assert_int_equal(mdb_drop(r.txn, chunks, 1), 0);
        raw_close(&r);
    }
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_get_equal(s, &tt[0].t);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    ttrace_init(&tt[1], 1700000000001, 1, "m", "1", DEJA_STATUS_OK, "p", 3 * SIZE, 12, NULL);
    write_traces(s, &tt[1], 1);
    assert_get_equal(s, &tt[0].t);
    assert_get_equal(s, &tt[1].t);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    assert_true(db_entries(path, "chunks") > 1);

    /* a damaged whole record is named by its digest */
    {
        deja_digest bad = deja_digest_of("bad", 3);
        uint8_t stub[2] = {'D', DEJA__CODEC_RAW};
        char hex[33];
        void *data = NULL;
        size_t size = 0;

        blobs = raw_open(&r, path, "blobs");
        k.mv_size = 16;
        k.mv_data = bad.bytes;
        v.mv_size = sizeof stub;
        v.mv_data = stub;
        assert_int_equal(mdb_put(r.txn, blobs, &k, &v, 0), 0);
        raw_close(&r);
        deja_digest_format(&bad, hex);
        assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
        assert_int_equal(deja__store_blob_get(s, &bad, &data, &size), DEJA_ECORRUPT);
        assert_non_null(strstr(deja_error_last(), hex));
        assert_non_null(strstr(deja_error_last(), "truncated"));
        assert_int_equal(deja_store_verify(s, NULL, NULL), 1);
        deja_store_close(s);
    }
    for (int i = 0; i < 2; i++)
        ttrace_free(&tt[i]);
    free(rec);
    rm_rf(dir);
}

/* A child process: open the store and write 500 traces, 10 per txn; each
 * txn holds one blob shared by all and one unique 512 KiB random blob, so
 * that the three children together pass the initial 64 MiB map and grow it
 * under each other's feet. */
static int child_write(const char *path, int child)
{
    deja_store *s = NULL;
    ttrace tt[10];
    uint8_t shared[3000];
    int ok = 1;

    memset(shared, 0xAB, sizeof shared);
    if (deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC) != 0)
        return 1;
    for (int i = 0; i < 500 && ok; i += 10) {
        batch b = {tt, 10, 0};
        for (int j = 0; j < 10; j++) {
            ttrace_init(&tt[j], 0, i + j, "m", child ? "2" : "1", DEJA_STATUS_OK, "c",
                        j < 2 ? (j == 0 ? sizeof shared : (size_t)512 << 10) : 0,
                        (uint64_t)(child * 1000 + i + 1), j == 0 ? shared : NULL);
            deja__id_new(&tt[j].t.id);
        }
        ok = deja__store_write(s, put_batch, &b) == 0 && b.added == 10;
        if (!ok)
            fprintf(stderr, "child %d: %s\n", child, deja_error_last());
        for (int j = 0; j < 10; j++)
            ttrace_free(&tt[j]);
    }
    deja_store_close(s);
    return ok ? 0 : 1;
}

/* A store that lived through hundreds of transactions verifies clean: its
 * free list is keyed by transaction id (a native integer), whose byte order
 * is not memcmp's once an id passes 255 (verify's page walk once called
 * such a store damaged). */
static void test_store__many_transactions_verify(void **state)
{
    char dir[256], path[300];
    deja_tracer *t = NULL;
    deja_store *s = NULL;
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats gs;
    problems p;
    int ready[2], done[2], status = 0;
    pid_t reader;
    char c = 0;

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_tracer_open(&t, path, NULL), 0);
    assert_int_equal(deja_tracer_flush(t), 0);
    /* A reader in another process holds an old snapshot, so that the pages
     * each transaction frees stay listed, one free-list record per
     * transaction id: ids 255 and 256 then sit side by side. */
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(done), 0);
    reader = fork();
    assert_true(reader >= 0);
    if (reader == 0) {
        MDB_env *env = NULL;
        MDB_txn *txn = NULL;

        close(ready[0]);
        close(done[1]); /* the parent's end alone: its exit ends the wait */

        if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 16) != 0 ||
            mdb_env_open(env, path, MDB_RDONLY, 0600) != 0 ||
            mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
            _exit(3);
        if (write(ready[1], "r", 1) != 1 || read(done[0], &c, 1) < 0)
            _exit(4);
        _exit(0);
    }
    assert_int_equal(read(ready[0], &c, 1), 1);
    for (int i = 0; i < 600; i++) {
        deja_span *span = NULL;
        char text[64];

        snprintf(text, sizeof text, "request number %d", i);
        assert_int_equal(deja_span_begin(&span, t, "m", "1"), 0);
        assert_int_equal(deja_span_add_text(span, DEJA_INPUT, "prompt", text, strlen(text)), 0);
        assert_int_equal(deja_span_end(span, DEJA_STATUS_OK, NULL), 0);
        assert_int_equal(deja_tracer_flush(t), 0); /* one transaction each */
    }
    deja_tracer_close(t);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    o.before_ns = INT64_MAX;
    assert_int_equal(deja_store_gc(s, &o, &gs), 0);
    assert_int_equal(gs.traces, 600);
    memset(&p, 0, sizeof p);
    assert_int_equal(write(done[1], "d", 1), 1);
    assert_int_equal(waitpid(reader, &status, 0), reader);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);
    close(ready[1]);
    close(done[0]);
    close(done[1]);
    assert_int_equal(deja_store_verify(s, problem_cb, &p), 0);
    if (p.n != 0)
        fail_msg("verify: %s", p.lines[0]);
    deja_store_close(s);
    rm_rf(dir);
}

/* A leaf node whose data size was damaged so that it runs over its
 * neighbour (still inside the page) is damage: verify reports it and gc
 * refuses before LMDB moves bytes across both (a gc once crashed on it). */
static void test_store__overlapping_nodes_refused(void **state)
{
    char dir[256], path[300], data[400];
    deja_store *s = NULL;
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats gs;
    problems p;
    uint8_t *file;
    long size;
    FILE *f;
    int edited = 0;

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    {
        ttrace tt[20];
        static char versions[20][4];

        /* One version each: one model index key per trace, its id a
         * 16-byte value (format 5 keeps a key's ids as its duplicates). */
        for (int i = 0; i < 20; i++) {
            snprintf(versions[i], sizeof versions[i], "%d", i);
            ttrace_init(&tt[i], 1700000000000 + i, i, "overlapmodel", versions[i],
                        DEJA_STATUS_OK, "prod", 0, 0, NULL);
        }
        write_traces(s, tt, 20);
        for (int i = 0; i < 20; i++)
            ttrace_free(&tt[i]);
    }
    deja_store_close(s);
    snprintf(data, sizeof data, "%s/data.mdb", path);
    f = fopen(data, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size > 0 && size % 4096 == 0);
    file = malloc((size_t)size);
    assert_non_null(file);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    assert_int_equal(fread(file, 1, (size_t)size, f), (size_t)size);
    /* The model index leaf: its lowest node gets a data size over the next. */
    for (long pg = 2; pg < size / 4096 && !edited; pg++) {
        uint8_t *pp = file + pg * 4096;
        const unsigned flags = pp[10] | pp[11] << 8, upper = pp[14] | pp[15] << 8;
        const unsigned lower = pp[12] | pp[13] << 8;

        if (flags != 0x02 || lower <= 18 || upper + 8 + 13 > 4096)
            continue;
        if (memcmp(pp + upper + 8, "overlapmodel", 13) != 0)
            continue;
        assert_int_equal(pp[upper], 16);
        pp[upper] = 56; /* data size 16 -> 56: over the next node */
        edited = 1;
        assert_int_equal(fseek(f, pg * 4096, SEEK_SET), 0);
        assert_int_equal(fwrite(pp, 1, 4096, f), 4096);
    }
    assert_int_equal(fclose(f), 0);
    free(file);
    assert_true(edited);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    memset(&p, 0, sizeof p);
    assert_true(deja_store_verify(s, problem_cb, &p) >= 1);
    assert_non_null(strstr(p.lines[0], "nodes overlap"));
    o.before_ns = INT64_MAX;
    assert_int_equal(deja_store_gc(s, &o, &gs), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "nodes overlap"));
    deja_store_close(s);
    rm_rf(dir);
}

static void test_store__concurrent_writers(void **state)
{
    char dir[256], path[300];
    deja_store *s = NULL;
    deja_store_stats st;
    pid_t pids[3];
    problems p;

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    deja_store_close(s);
    for (int i = 0; i < 3; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(child_write(path, i));
    }
    for (int i = 0; i < 3; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.traces, 1500);
    assert_int_equal(st.blobs, 1 + 150);
    assert_true(st.file_bytes > (uint64_t)64 << 20);
    memset(&p, 0, sizeof p);
    assert_int_equal(deja_store_verify(s, problem_cb, &p), 0);
    {
        listed l;
        memset(&l, 0, sizeof l);
        assert_int_equal(deja_store_list(s, NULL, list_cb, bad_cb, &l), 0);
        assert_int_equal(l.n, 1500);
        assert_int_equal(l.nbad, 0);
    }
    deja_store_close(s);
    rm_rf(dir);
}

/* Any digest the encoder asks for is the one in `payload`. */
static int put_fixed(const void *data, size_t size, deja_digest *out, void *payload)
{
    (void)data;
    (void)size;
    *out = *(const deja_digest *)payload;
    return 0;
}

/* A record whose tensor claims 4000 bytes over a 2000-byte blob: reading
 * refuses it (ECORRUPT, naming the tensor) instead of handing out a
 * 2000-byte buffer as 4000, and verify reports it. */
static void test_store__blob_size_checked(void **state)
{
    char dir[256], path[300];
    deja_store *s = NULL;
    deja_trace *t = NULL;
    ttrace a, b;
    deja_digest da;
    deja__buf rec = {0};
    uint8_t *r;
    raw rw;
    MDB_dbi traces;
    MDB_val k, v;
    problems p;

    (void)state;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    ttrace_init(&a, 1700000000000, 0, "m", "1", DEJA_STATUS_OK, "p", 2000, 5, NULL);
    write_traces(s, &a, 1);
    deja_store_close(s);
    da = deja_digest_of(a.big, 2000);
    ttrace_init(&b, 1700000000001, 1, "m", "1", DEJA_STATUS_OK, "p", 4000, 6, NULL);
    assert_int_equal(deja__trace_encode(&b.t, 64, put_fixed, &da, &rec), 0);
    r = malloc(DEJA__RECORD_HEADER + rec.size);
    assert_non_null(r);
    memset(r, 0, DEJA__RECORD_HEADER);
    r[0] = DEJA__RECORD_MAGIC;
    r[1] = DEJA__CODEC_RAW;
    r[6] = (uint8_t)rec.size;
    r[7] = (uint8_t)(rec.size >> 8);
    r[8] = (uint8_t)(rec.size >> 16);
    r[9] = (uint8_t)(rec.size >> 24);
    memcpy(r + DEJA__RECORD_HEADER, rec.data, rec.size);
    traces = raw_open(&rw, path, "traces");
    k.mv_size = 16;
    k.mv_data = b.t.id.bytes;
    v.mv_size = DEJA__RECORD_HEADER + rec.size;
    v.mv_data = r;
    assert_int_equal(mdb_put(rw.txn, traces, &k, &v, 0), 0);
    raw_close(&rw);
    free(r);
    deja__buf_free(&rec);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_trace_get(s, &b.t.id, &t), DEJA_ECORRUPT);
    assert_null(t);
    assert_non_null(strstr(deja_error_last(), "input 'image' claims 4000 bytes, its blob holds 2000"));
    memset(&p, 0, sizeof p);
    assert_true(deja_store_verify(s, problem_cb, &p) > 0);
    assert_true(has_line(&p, "input 'image' claims 4000 bytes", NULL));
    deja_store_close(s);
    ttrace_free(&a);
    ttrace_free(&b);
    rm_rf(dir);
}

/* RssFile of this process in kB (/proc/self/status), -1 when unknown. */
static long rss_file_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "RssFile: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

#define TRIM_TRACES 3000

/* Read every trace recorded by test_store__map_trim and check it. */
static void trim_read_all(deja_store *s, const deja_id *ids)
{
    uint8_t want[900];
    for (int i = 0; i < TRIM_TRACES; i++) {
        deja_trace *tr = NULL;
        assert_int_equal(deja_trace_get(s, &ids[i], &tr), 0);
        fill_random(want, sizeof want, (uint64_t)i + 1);
        assert_int_equal(tr->inputs[0].size, sizeof want);
        assert_memory_equal(tr->inputs[0].data, want, sizeof want);
        deja_trace_free(tr);
    }
}

/* Trimming the map drops the store's pages from this process's RSS
 * (RssFile) and loses nothing: every trace reads back the same after. */
static void test_store__map_trim(void **state)
{
    (void)state;
    char dir[256], path[300];
    static deja_id ids[TRIM_TRACES];
    uint8_t payload[900];
    tmp_store(dir, path);
    deja_tracer *t = NULL;
    assert_int_equal(deja_tracer_open(&t, path, NULL), 0);
    for (int i = 0; i < TRIM_TRACES; i++) {
        deja_span *sp = NULL;
        assert_int_equal(deja_span_begin(&sp, t, "trim", "1"), 0);
        ids[i] = *deja_span_id(sp);
        fill_random(payload, sizeof payload, (uint64_t)i + 1);
        assert_int_equal(deja_span_add_bytes(sp, DEJA_INPUT, "x", payload, sizeof payload), 0);
        assert_int_equal(deja_span_end(sp, DEJA_STATUS_OK, NULL), 0);
    }
    deja_tracer_close(t);

    deja_store *s = NULL;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    trim_read_all(s, ids); /* every page of the store is now mapped in */
    const long before = rss_file_kb();
    assert_int_equal(deja__store_map_trim(s), 0);
    const long after = rss_file_kb();
    assert_true(before > 0 && after >= 0);
    assert_true(after + 1024 < before); /* ~3 MB of store pages went */
    trim_read_all(s, ids);
    deja_store_close(s);
    rm_rf(dir);
}

/* Bytes of the data file mapped in this process now (Rss of its mappings
 * in /proc/self/smaps), in KB. */
static long data_map_kb(void)
{
    char line[512], perms[8];
    unsigned long lo, hi;
    long kb = 0, v;
    int in_data = 0;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3)
            in_data = strstr(line, "/data.mdb") != NULL;
        else if (in_data && sscanf(line, "Rss: %ld", &v) == 1)
            kb += v;
    }
    fclose(f);
    return kb;
}

/* The writer learns where the map is once, and again after LMDB moved it:
 * a trim after the map grew gives back the pages of the new map (a trim of
 * the old place would leave them, or hit whatever was mapped there since),
 * and every trace reads back the same. */
static void test_store__map_trim_after_resize(void **state)
{
    (void)state;
    enum { BIG = 4, BIG_SIZE = 20 << 20 };
    char dir[256], path[300];
    ttrace small, big[BIG];
    deja_store *s = NULL;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    ttrace_init(&small, 1700000000000, 0, "m", "1", DEJA_STATUS_OK, "prod", 0, 0, NULL);
    write_traces(s, &small, 1);
    assert_int_equal(deja__store_map_trim(s), 0); /* learns the 64 MB map */
    /* 80 MB of incompressible inputs: the map grows (and moves). */
    for (int i = 0; i < BIG; i++) {
        ttrace_init(&big[i], 1700000000001 + i, i + 1, "m", "1", DEJA_STATUS_OK, "prod", BIG_SIZE,
                    (uint64_t)i + 7, NULL);
        write_traces(s, &big[i], 1);
    }
    for (int i = 0; i < BIG; i++) {
        deja_trace *tr = NULL;
        assert_int_equal(deja_trace_get(s, &big[i].t.id, &tr), 0);
        assert_int_equal(tr->inputs[1].size, BIG_SIZE);
        deja_trace_free(tr);
    }
    const long before = data_map_kb();
    assert_int_equal(deja__store_map_trim(s), 0);
    const long after = data_map_kb();
    assert_true(before > 4096); /* the reads mapped the inputs' pages in */
    assert_true(after >= 0 && after * 4 < before);
    for (int i = 0; i < BIG; i++) {
        deja_trace *tr = NULL;
        assert_int_equal(deja_trace_get(s, &big[i].t.id, &tr), 0);
        assert_memory_equal(tr->inputs[1].data, big[i].big, BIG_SIZE);
        deja_trace_free(tr);
        ttrace_free(&big[i]);
    }
    deja_store_close(s);
    rm_rf(dir);
}

/* A fill that puts its traces in two halves and trims the map between
 * them, inside the transaction, after reading every trace written before
 * (so that their pages are mapped). */
typedef struct trim_fill {
    ttrace *traces;
    size_t n;
    ttrace *old;
    size_t nold;
    long before_kb, after_kb;
    int trimmed;
} trim_fill;

static int put_trim_put(deja__wtxn *w, void *payload)
{
    trim_fill *f = payload;
    for (size_t i = 0; i < f->n; i++) {
        int rc;
        if (i == f->n / 2) {
            for (size_t j = 0; j < f->nold; j++) {
                MDB_val k = {16, f->old[j].t.id.bytes}, v;
                if (mdb_get(w->txn, w->store->traces, &k, &v) != 0)
                    return DEJA_EIO;
            }
            f->before_kb = data_map_kb();
            f->trimmed = deja__store_map_trim_known(w->store);
            f->after_kb = data_map_kb();
        }
        if ((rc = deja__wtxn_put_trace(w, &f->traces[i].t, NULL)) != 0)
            return rc;
    }
    return 0;
}

/* The writer may give the map's pages back between the puts of one write
 * transaction (a commit of chat traces alone maps several MB): only once
 * it knows where the map is (learning it takes a read transaction, which
 * the writer's thread cannot begin inside its write), and the transaction
 * then commits what it put before and after, byte for byte. */
static void test_store__map_trim_inside_write(void **state)
{
    (void)state;
    enum { OLD = 400, NEW = 40 };
    char dir[256], path[300];
    static ttrace old[OLD], fresh[NEW];
    deja_store *s = NULL;
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    for (int i = 0; i < OLD; i++)
        ttrace_init(&old[i], 1700000000000 + i, i, "m", "1", DEJA_STATUS_OK, "prod", 3000,
                    (uint64_t)i + 11, NULL);
    write_traces(s, old, OLD);
    assert_int_equal(deja__store_map_trim_known(s), 1); /* not learnt yet: nothing done */
    assert_int_equal(deja__store_map_trim(s), 0);       /* learns where the map is */
    for (int i = 0; i < NEW; i++)
        ttrace_init(&fresh[i], 1700000001000 + i, i, "m", "2", DEJA_STATUS_OK, "prod", 3000,
                    (uint64_t)i + 5000, NULL);
    trim_fill f = {fresh, NEW, old, OLD, 0, 0, -1};
    assert_int_equal(deja__store_write(s, put_trim_put, &f), 0);
    assert_int_equal(f.trimmed, 0);
    assert_true(f.before_kb > 512); /* the reads mapped the old traces' pages */
    assert_true(f.after_kb >= 0 && f.after_kb * 4 < f.before_kb);
    deja_store_close(s);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    for (int i = 0; i < NEW; i++) {
        deja_trace *tr = NULL;
        assert_int_equal(deja_trace_get(s, &fresh[i].t.id, &tr), 0);
        assert_trace_equal(tr, &fresh[i].t);
        deja_trace_free(tr);
        ttrace_free(&fresh[i]);
    }
    for (int i = 0; i < OLD; i++) {
        deja_trace *tr = NULL;
        assert_int_equal(deja_trace_get(s, &old[i].t.id, &tr), 0);
        assert_trace_equal(tr, &old[i].t);
        deja_trace_free(tr);
        ttrace_free(&old[i]);
    }
    deja_store_close(s);
    rm_rf(dir);
}

/* deja__record_visit's callback in the test below: compare with the
 * expected bytes at `arg`, then report `visit_rc`. */
typedef struct visit_want {
    const uint8_t *data;
    size_t size;
    int calls, rc;
} visit_want;

static int visit_check(const uint8_t *data, size_t size, void *arg)
{
    visit_want *w = arg;

    w->calls++;
    assert_int_equal(size, w->size);
    assert_memory_equal(data, w->data, size);
    return w->rc;
}

/* Records compressed with the store's dictionary decode the same way
 * through every door: into a fresh buffer, into a reused one, and visited
 * in place (the decoder's copy of the dictionary followed by its output
 * space); a record larger than that space, one without a dictionary and a
 * raw one as well. A frame cut short is DEJA_ECORRUPT, flipped bytes are
 * 0 or DEJA_ECORRUPT and never a read or write out of bounds (ASan). */
static void test_store__record_decoders(void **state)
{
    enum { N = 300, SMALL = 3000, LARGE = 300 << 10 };
    char dir[256], path[300];
    deja_store *s = NULL;
    ttrace *tt = calloc(N, sizeof *tt);
    uint8_t *text = malloc(LARGE);
    deja__buf recs[4] = {{0}}, out = {0};
    const size_t sizes[4] = {SMALL, LARGE, SMALL, SMALL};
    void *cdict = NULL;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    MDB_txn *txn = NULL;
    uint64_t x = 0x2545F4914F6CDD1DULL;

    (void)state;
    assert_non_null(tt);
    assert_non_null(text);
    assert_non_null(cctx);
    for (size_t i = 0; i < LARGE; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text[i] = "abcdefgh tuvwxyz"[x % 16];
    }
    tmp_store(dir, path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    for (int i = 0; i < N; i++)
        ttrace_init(&tt[i], 1700000000000 + i, i, "m", "1", DEJA_STATUS_OK, "e", 0, 0, NULL);
    for (int i = 0; i < N; i += 100)
        write_traces(s, tt + i, 100);
    assert_int_equal(deja__dict_cdict(s, 1, &cdict), 0);
    /* Written with the minimum match chosen for reads (store/record.c): 5
     * bytes repeated, each time followed by another byte, are matches for
     * zstd's level 3 (minimum 5), literals for the store's (minimum 6). */
    {
        ZSTD_CDict *plain = ZSTD_createCDict(s->dicts[0]->content, s->dicts[0]->size, 3);
        deja__buf a = {0}, b = {0};
        uint8_t tok[64][5];

        assert_non_null(plain);
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 5; j++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                tok[i][j] = (uint8_t)('a' + x % 26);
            }
        for (size_t n = 0; n + 6 <= 8192; n += 6) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(text + n, tok[x % 64], 5);
            text[n + 5] = (uint8_t)('0' + (x >> 20) % 50);
        }
        assert_int_equal(deja__record_encode_cctx(cctx, cdict, 1, text, 8190, &a), 0);
        assert_int_equal(deja__record_encode_cctx(cctx, plain, 1, text, 8190, &b), 0);
        assert_true(a.size > b.size + b.size / 5);
        deja__buf_free(&a);
        deja__buf_free(&b);
        ZSTD_freeCDict(plain);
    }
    /* small and large with the dictionary, small without, small raw */
    assert_int_equal(deja__record_encode_cctx(cctx, cdict, 1, text, SMALL, &recs[0]), 0);
    assert_int_equal(deja__record_encode_cctx(cctx, cdict, 1, text, LARGE, &recs[1]), 0);
    assert_int_equal(deja__record_encode_cctx(cctx, NULL, 0, text, SMALL, &recs[2]), 0);
    assert_int_equal(deja__buf_append(&recs[3], "D\0\0\0\0\0", 6), 0);
    {
        const uint8_t size_le[4] = {SMALL & 0xFF, SMALL >> 8, 0, 0};
        assert_int_equal(deja__buf_append(&recs[3], size_le, 4), 0);
        assert_int_equal(deja__buf_append(&recs[3], text, SMALL), 0);
    }
    assert_int_equal(recs[0].data[1], DEJA__CODEC_ZSTD);
    assert_int_equal(recs[1].data[2], 1);

    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    for (int round = 0; round < 3; round++) /* decoders come back from the pool */
        for (int r = 0; r < 4; r++) {
            visit_want want = {text, sizes[r], 0, 0};
            uint8_t *got = NULL;
            size_t n = 0;
            int used = 0;

            assert_int_equal(
                deja__record_decode(s, txn, recs[r].data, recs[r].size, "rec", &got, &n), 0);
            assert_int_equal(n, sizes[r]);
            assert_memory_equal(got, text, n);
            free(got);
            assert_int_equal(
                deja__record_decode_buf(s, txn, recs[r].data, recs[r].size, "rec", &out), 0);
            assert_int_equal(out.size, sizes[r]);
            assert_memory_equal(out.data, text, out.size);
            assert_int_equal(deja__record_visit(s, txn, recs[r].data, recs[r].size, "rec",
                                                visit_check, &want, &used),
                             0);
            assert_int_equal(want.calls, 1);
            assert_true(used);
            /* what the callback returns comes back, marked as its own */
            want.rc = DEJA_EMODEL;
            assert_int_equal(deja__record_visit(s, txn, recs[r].data, recs[r].size, "rec",
                                                visit_check, &want, &used),
                             DEJA_EMODEL);
            assert_true(used);
        }
    for (int r = 0; r < 3; r++) {
        visit_want want = {text, sizes[r], 0, 0};
        uint8_t *got = NULL;
        size_t n = 0;
        int used = 1;

        /* cut short: the header still claims every byte */
        assert_int_equal(
            deja__record_decode(s, txn, recs[r].data, recs[r].size - 3, "rec", &got, &n),
            DEJA_ECORRUPT);
        assert_int_equal(deja__record_visit(s, txn, recs[r].data, recs[r].size - 3, "rec",
                                            visit_check, &want, &used),
                         DEJA_ECORRUPT);
        assert_false(used);
        assert_int_equal(want.calls, 0);
        /* flipped bytes in the frame */
        for (int k = 0; k < 300; k++) {
            uint8_t *copy = malloc(recs[r].size);
            int rc;

            assert_non_null(copy);
            memcpy(copy, recs[r].data, recs[r].size);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            copy[DEJA__RECORD_HEADER + x % (recs[r].size - DEJA__RECORD_HEADER)] ^=
                (uint8_t)(1 + (x >> 40) % 255);
            rc = deja__record_decode(s, txn, copy, recs[r].size, "rec", &got, &n);
            assert_true(rc == 0 || rc == DEJA_ECORRUPT);
            if (rc == 0)
                assert_int_equal(n, sizes[r]);
            free(got);
            got = NULL;
            rc = deja__record_decode_buf(s, txn, copy, recs[r].size, "rec", &out);
            assert_true(rc == 0 || rc == DEJA_ECORRUPT);
            free(copy);
        }
    }
    deja__rtxn_end(s, txn);
    for (int r = 0; r < 4; r++)
        deja__buf_free(&recs[r]);
    deja__buf_free(&out);
    ZSTD_freeCCtx(cctx);
    deja_store_close(s);
    free(text);
    free(tt);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store__create_reopen),
        cmocka_unit_test(test_store__record_decoders),
        cmocka_unit_test(test_store__read_missing_creates_nothing),
        cmocka_unit_test(test_store__newer_format_refused),
        cmocka_unit_test(test_store__format1_upgraded_by_writer),
        cmocka_unit_test(test_store__round_trip),
        cmocka_unit_test(test_store__blob_dedup),
        cmocka_unit_test(test_store__dictionary),
        cmocka_unit_test(test_store__map_growth),
        cmocka_unit_test(test_store__read_while_growing),
        cmocka_unit_test(test_store__list),
        cmocka_unit_test(test_store__list_corrupt_record),
        cmocka_unit_test(test_store__resolve),
        cmocka_unit_test(test_store__long_tag),
        cmocka_unit_test(test_store__stats),
        cmocka_unit_test(test_store__chunked_round_trip),
        cmocka_unit_test(test_store__chunk_dedup_across_traces),
        cmocka_unit_test(test_store__chunk_edit),
        cmocka_unit_test(test_store__chunk_damage),
        cmocka_unit_test(test_store__chunk_list_bounds),
        cmocka_unit_test(test_store__old_whole_blob),
        cmocka_unit_test(test_store__verify),
        cmocka_unit_test(test_store__blob_size_checked),
        cmocka_unit_test(test_store__many_transactions_verify),
        cmocka_unit_test(test_store__overlapping_nodes_refused),
        cmocka_unit_test(test_store__concurrent_writers),
        cmocka_unit_test(test_store__prepared_dictionary_midstream),
        cmocka_unit_test(test_store__map_trim),
        cmocka_unit_test(test_store__map_trim_after_resize),
        cmocka_unit_test(test_store__map_trim_inside_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
