/*
 * tests/test_gc.c -- deja_store_gc: retention by age, with the blobs,
 * chunks and environments only the deleted traces referenced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "deja.h"
#include "store/store.h"
#include "store/store_internal.h"

#define OLD_MS ((int64_t)1600000000000) /* 2020-09-13 */
#define NEW_MS ((int64_t)1700000000000) /* 2023-11-14 */
#define CUTOFF_NS ((int64_t)1650000000000 * 1000000)
#define BIG 20000 /* a chunked blob */

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

/* Deterministic incompressible bytes. */
static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

    for (size_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
}

/* A trace to write, owning its arrays. */
typedef struct ttrace {
    deja_trace t;
    deja_tensor in[2];
    deja_tensor out[1];
    uint64_t shape_in[2];
    uint64_t shape_out;
    deja_tag tags[1];
    char text[96];
    char tagval[16];
    const char *model;
} ttrace;

/* Trace `i` at `ms` of model `model`, tagged gen=`gen`, with the blob-sized
 * input `big` (may be NULL) and the environment `env` (may be NULL). */
static void ttrace_init(ttrace *tt, int64_t ms, int i, const char *model, const char *gen,
                        deja_status status, const uint8_t *big, const deja_digest *env)
{
    memset(tt, 0, sizeof *tt);
    deja__id_new_at(&tt->t.id, ms);
    tt->t.start_ns = ms * 1000000;
    tt->t.duration_ns = 1000 + i;
    tt->t.model_name = model;
    tt->t.model_version = "1.0";
    snprintf(tt->text, sizeof tt->text, "request %d", i);
    tt->shape_in[0] = strlen(tt->text);
    tt->in[0] = (deja_tensor){"prompt", DEJA_UTF8, 1, &tt->shape_in[0], tt->text, strlen(tt->text)};
    tt->t.inputs = tt->in;
    tt->t.ninputs = 1;
    if (big != NULL) {
        tt->shape_in[1] = BIG;
        tt->in[1] = (deja_tensor){"image", DEJA_U8, 1, &tt->shape_in[1], big, BIG};
        tt->t.ninputs = 2;
    }
    tt->shape_out = 2;
    tt->out[0] = (deja_tensor){"answer", DEJA_UTF8, 1, &tt->shape_out, "ok", 2};
    tt->t.outputs = tt->out;
    tt->t.noutputs = 1;
    tt->t.status = status;
    tt->t.error = status == DEJA_STATUS_ERROR ? "boom" : "";
    snprintf(tt->tagval, sizeof tt->tagval, "%s", gen);
    tt->tags[0] = (deja_tag){"gen", tt->tagval};
    tt->t.tags = tt->tags;
    tt->t.ntags = 1;
    if (env != NULL) {
        tt->t.has_env = 1;
        tt->t.env = *env;
    }
}

typedef struct batch {
    ttrace *traces;
    size_t n;
    const deja_env *env; /* stored first when not NULL */
    deja_digest env_digest;
} batch;

static int put_batch(deja__wtxn *w, void *payload)
{
    batch *b = payload;
    int rc = 0;

    if (b->env != NULL)
        rc = deja__wtxn_put_env(w, b->env, &b->env_digest);
    for (size_t i = 0; rc == 0 && i < b->n; i++)
        rc = deja__wtxn_put_trace(w, &b->traces[i].t, NULL);
    return rc;
}

/* A fixture: 3 old traces (model "old", gen=old) sharing a blob with a new
 * one, and a blob (chunked) used only by old ones; 3 new traces (model
 * "new", gen=new); old and new have different environments, plus one
 * environment shared by an old and a new trace. */
typedef struct fixture {
    char dir[256], path[300];
    deja_store *store;
    uint8_t shared[BIG], only_old[BIG];
    deja_env env_old, env_new;
    deja_digest d_env_old, d_env_new, d_shared, d_only_old;
    ttrace old[3], fresh[3];
} fixture;

static void fixture_make(fixture *f, deja_status old1_status)
{
    batch b = {0};

    memset(f, 0, sizeof *f);
    strcpy(f->dir, "/tmp/deja-test-gc-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/store", f->dir);
    assert_int_equal(deja_store_open(&f->store, f->path, DEJA_STORE_WRITE), 0);
    fill_random(f->shared, BIG, 1);
    fill_random(f->only_old, BIG, 2);
    f->d_shared = deja_digest_of(f->shared, BIG);
    f->d_only_old = deja_digest_of(f->only_old, BIG);
    f->env_old.arch = "old-arch";
    f->env_new.arch = "new-arch";

    b.env = &f->env_old;
    assert_int_equal(deja__store_write(f->store, put_batch, &b), 0);
    f->d_env_old = b.env_digest;
    b.env = &f->env_new;
    assert_int_equal(deja__store_write(f->store, put_batch, &b), 0);
    f->d_env_new = b.env_digest;

    ttrace_init(&f->old[0], OLD_MS, 0, "old", "old", DEJA_STATUS_OK, f->shared, &f->d_env_old);
    ttrace_init(&f->old[1], OLD_MS + 1, 1, "old", "old", old1_status, f->only_old, &f->d_env_old);
    ttrace_init(&f->old[2], OLD_MS + 2, 2, "old", "old", DEJA_STATUS_OK, f->only_old,
                &f->d_env_new);
    ttrace_init(&f->fresh[0], NEW_MS, 3, "new", "new", DEJA_STATUS_OK, f->shared, &f->d_env_new);
    ttrace_init(&f->fresh[1], NEW_MS + 1, 4, "new", "new", DEJA_STATUS_ERROR, NULL, NULL);
    ttrace_init(&f->fresh[2], NEW_MS + 2, 5, "new", "new", DEJA_STATUS_OK, NULL, &f->d_env_new);
    b.env = NULL;
    b.traces = f->old;
    b.n = 3;
    assert_int_equal(deja__store_write(f->store, put_batch, &b), 0);
    b.traces = f->fresh;
    assert_int_equal(deja__store_write(f->store, put_batch, &b), 0);
    assert_int_equal(deja_store_verify(f->store, NULL, NULL), 0);
}

static void fixture_free(fixture *f)
{
    deja_store_close(f->store);
    rm_rf(f->dir);
}

/* Whether `key` is in database `db` of the store. */
static int has_key(deja_store *s, MDB_dbi dbi, const void *key)
{
    MDB_txn *txn = NULL;
    MDB_val k = {16, (void *)key}, v;
    int rc;

    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    rc = mdb_get(txn, dbi, &k, &v);
    deja__rtxn_end(s, txn);
    assert_true(rc == 0 || rc == MDB_NOTFOUND);
    return rc == 0;
}

/* The number of records of `dbi`. */
static size_t count_of(deja_store *s, MDB_dbi dbi)
{
    MDB_txn *txn = NULL;
    MDB_stat st;

    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    deja__rtxn_end(s, txn);
    return st.ms_entries;
}

/* The chunk digests of the chunked blob `d`, into `out` (at most `max`). */
static size_t chunks_of(deja_store *s, const deja_digest *d, uint8_t (*out)[16], size_t max)
{
    MDB_txn *txn = NULL;
    MDB_val k = {16, (void *)d->bytes}, v;
    deja__chunked it;
    const uint8_t *cd;
    size_t cs, n = 0;

    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    assert_int_equal(mdb_get(txn, s->blobs, &k, &v), 0);
    assert_int_equal(((const uint8_t *)v.mv_data)[0], DEJA__CHUNKED_MAGIC);
    assert_int_equal(deja__chunked_parse(v.mv_data, v.mv_size, d, &it), 0);
    while (deja__chunked_next(&it, &cs, &cd) && n < max)
        memcpy(out[n++], cd, 16);
    deja__rtxn_end(s, txn);
    return n;
}

typedef struct listed {
    size_t n;
    int old_seen;
} listed;

static int list_cb(const deja_trace *t, void *payload)
{
    listed *l = payload;

    l->n++;
    if (strcmp(t->model_name, "old") == 0)
        l->old_seen = 1;
    return 0;
}

/* The number of traces listed by tag gen=`gen` / by model `model`. */
static size_t list_count(deja_store *s, const char *gen, const char *model, const char *version)
{
    deja_filter f = DEJA_FILTER_INIT;
    deja_tag tag = {"gen", gen};
    listed l = {0, 0};

    if (gen != NULL) {
        f.tags = &tag;
        f.ntags = 1;
    }
    f.model = model;
    f.model_version = version;
    assert_int_equal(deja_store_list(s, &f, list_cb, NULL, &l), 0);
    return l.n;
}

/* Check that trace `tt` reads back byte for byte. */
static void assert_readable(deja_store *s, const ttrace *tt)
{
    deja_trace *got = NULL;

    assert_int_equal(deja_trace_get(s, &tt->t.id, &got), 0);
    assert_int_equal(got->ninputs, tt->t.ninputs);
    for (size_t i = 0; i < tt->t.ninputs; i++) {
        assert_int_equal(got->inputs[i].size, tt->t.inputs[i].size);
        assert_memory_equal(got->inputs[i].data, tt->t.inputs[i].data, tt->t.inputs[i].size);
    }
    assert_memory_equal(got->outputs[0].data, "ok", 2);
    assert_int_equal(got->has_env, tt->t.has_env);
    deja_trace_free(got);
}

/* Old traces, their exclusive blob and its chunks, and the environment
 * only they used go; the new traces, the shared blob and the environment
 * still referenced stay; the indexes hold no dangling entry. */
static void test_gc__deletes_old_and_unreferenced(void **state)
{
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats st;
    deja_store_stats before, after;
    uint8_t old_chunks[64][16], shared_chunks[64][16];
    size_t nold, nshared;
    fixture *f = calloc(1, sizeof *f);

    (void)state;
    assert_non_null(f);
    fixture_make(f, DEJA_STATUS_OK);
    nold = chunks_of(f->store, &f->d_only_old, old_chunks, 64);
    nshared = chunks_of(f->store, &f->d_shared, shared_chunks, 64);
    assert_true(nold > 1 && nshared > 1);
    assert_int_equal(deja_store_stats_get(f->store, &before), 0);
    assert_int_equal(before.traces, 6);

    o.before_ns = CUTOFF_NS;
    assert_int_equal(deja_store_gc(f->store, &o, &st), 0);
    assert_int_equal(st.traces, 3);
    assert_int_equal(st.blobs, 1);
    assert_int_equal(st.chunks, nold);
    assert_int_equal(st.envs, 1);
    assert_true(st.bytes > BIG / 2); /* the chunks were incompressible */

    for (int i = 0; i < 3; i++) {
        deja_trace *t = NULL;

        assert_int_equal(deja_trace_get(f->store, &f->old[i].t.id, &t), DEJA_ENOTFOUND);
        assert_readable(f->store, &f->fresh[i]);
    }
    assert_true(has_key(f->store, f->store->blobs, f->d_shared.bytes));
    assert_false(has_key(f->store, f->store->blobs, f->d_only_old.bytes));
    for (size_t i = 0; i < nold; i++)
        assert_false(has_key(f->store, f->store->chunks, old_chunks[i]));
    for (size_t i = 0; i < nshared; i++)
        assert_true(has_key(f->store, f->store->chunks, shared_chunks[i]));
    assert_true(has_key(f->store, f->store->envs, f->d_env_new.bytes));
    assert_false(has_key(f->store, f->store->envs, f->d_env_old.bytes));

    assert_int_equal(deja_store_verify(f->store, NULL, NULL), 0);
    assert_int_equal(count_of(f->store, deja__ix_dbi(f->store, DEJA__IX_STATUS)), 3);
    assert_int_equal(count_of(f->store, deja__ix_dbi(f->store, DEJA__IX_MODEL)), 3);
    assert_int_equal(count_of(f->store, deja__ix_dbi(f->store, DEJA__IX_TAG)), 3);
    assert_int_equal(list_count(f->store, "old", NULL, NULL), 0);
    assert_int_equal(list_count(f->store, "new", NULL, NULL), 3);
    assert_int_equal(list_count(f->store, NULL, "old", NULL), 0);
    assert_int_equal(list_count(f->store, NULL, "old", "1.0"), 0);
    assert_int_equal(list_count(f->store, NULL, "new", "1.0"), 3);
    assert_int_equal(list_count(f->store, NULL, NULL, NULL), 3);

    assert_int_equal(deja_store_stats_get(f->store, &after), 0);
    assert_int_equal(after.traces, 3);
    assert_int_equal(after.blobs, 1);
    assert_int_equal(after.envs, 1);
    assert_true(after.stored_bytes == before.stored_bytes - st.bytes);
    assert_true(after.unique_bytes < before.unique_bytes);
    assert_true(after.raw_bytes < before.raw_bytes);

    /* A second run finds nothing. */
    assert_int_equal(deja_store_gc(f->store, &o, &st), 0);
    assert_int_equal(st.traces + st.blobs + st.chunks + st.envs + st.bytes, 0);
    assert_int_equal(deja_store_stats_get(f->store, &before), 0);
    assert_memory_equal(&before, &after, sizeof before);
    fixture_free(f);
    free(f);
}

/* keep_errors keeps an old error trace and what it references. */
/* Rewrite the value of trace `id` raw: `how` 0 drops its refs (a value of
 * format 1, as older deja wrote), 1 damages its compressed record, keeping
 * the refs, 2 changes the status its refs give. */
static void rewrite_value(deja_store *s, const deja_id *id, int how)
{
    MDB_txn *txn = NULL;
    MDB_val k = {16, (void *)id->bytes}, v;
    const uint8_t *refs, *rec;
    size_t nrefs, nrec;
    uint8_t *copy;

    assert_int_equal(mdb_txn_begin(s->env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_get(txn, s->traces, &k, &v), 0);
    copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    assert_int_equal(deja__trace_value_split(copy, v.mv_size, &refs, &nrefs, &rec, &nrec), 0);
    assert_non_null(refs);
    if (how == 0) {
        v.mv_data = (void *)rec;
        v.mv_size = nrec;
    } else if (how == 1) {
        assert_true(nrec > 20);
        memset((uint8_t *)rec + 12, 0xA5, nrec - 12);
        v.mv_data = copy;
    } else {
        size_t at = 0;

        while (refs[at] & 0x80) /* past raw_bytes */
            at++;
        copy[(size_t)(refs - copy) + at + 1] ^= 1;
        v.mv_data = copy;
    }
    assert_int_equal(mdb_put(txn, s->traces, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    free(copy);
}

/* Traces stored as format 1 (no refs) are collected as before, by decoding
 * them; format 2 traces are collected from their refs alone, so that even
 * one whose record no longer decodes is deleted with its index entries. */
static void test_gc__refs_and_format1(void **state)
{
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats st;
    deja_trace *t = NULL;
    fixture *f = calloc(1, sizeof *f);

    (void)state;
    assert_non_null(f);
    fixture_make(f, DEJA_STATUS_OK);
    rewrite_value(f->store, &f->old[0].t.id, 0);
    rewrite_value(f->store, &f->fresh[0].t.id, 0);
    rewrite_value(f->store, &f->old[1].t.id, 1);
    assert_int_equal(deja_trace_get(f->store, &f->old[1].t.id, &t), DEJA_ECORRUPT);
    assert_readable(f->store, &f->old[0]);
    assert_readable(f->store, &f->fresh[0]);

    o.before_ns = CUTOFF_NS;
    assert_int_equal(deja_store_gc(f->store, &o, &st), 0);
    assert_int_equal(st.traces, 3);
    assert_int_equal(st.blobs, 1);
    assert_int_equal(st.envs, 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(deja_trace_get(f->store, &f->old[i].t.id, &t), DEJA_ENOTFOUND);
        assert_readable(f->store, &f->fresh[i]);
    }
    /* The shared blob stays for the format-1 trace that uses it. */
    assert_true(has_key(f->store, f->store->blobs, f->d_shared.bytes));
    assert_false(has_key(f->store, f->store->blobs, f->d_only_old.bytes));
    assert_int_equal(deja_store_verify(f->store, NULL, NULL), 0);
    assert_int_equal(count_of(f->store, deja__ix_dbi(f->store, DEJA__IX_STATUS)), 3);
    assert_int_equal(count_of(f->store, deja__ix_dbi(f->store, DEJA__IX_MODEL)), 3);
    assert_int_equal(count_of(f->store, deja__ix_dbi(f->store, DEJA__IX_TAG)), 3);
    fixture_free(f);
    free(f);
}

typedef struct problems {
    int n;
    char first[512];
} problems;

static void note_problem(const char *line, void *payload)
{
    problems *p = payload;

    if (p->n++ == 0)
        snprintf(p->first, sizeof p->first, "%s", line);
}

/* verify compares a trace's refs with its record. */
static void test_gc__verify_checks_refs(void **state)
{
    problems p = {0, ""};
    fixture *f = calloc(1, sizeof *f);

    (void)state;
    assert_non_null(f);
    fixture_make(f, DEJA_STATUS_OK);
    rewrite_value(f->store, &f->fresh[2].t.id, 2);
    assert_true(deja_store_verify(f->store, note_problem, &p) > 0);
    assert_int_equal(p.n, 1);
    assert_non_null(strstr(p.first, "its references give another model or status"));
    fixture_free(f);
    free(f);
}

static void test_gc__keep_errors(void **state)
{
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats st;
    fixture *f = calloc(1, sizeof *f);

    (void)state;
    assert_non_null(f);
    fixture_make(f, DEJA_STATUS_ERROR);
    o.before_ns = CUTOFF_NS;
    o.keep_errors = 1;
    assert_int_equal(deja_store_gc(f->store, &o, &st), 0);
    assert_int_equal(st.traces, 2);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st.envs, 0);
    assert_readable(f->store, &f->old[1]);
    assert_true(has_key(f->store, f->store->blobs, f->d_only_old.bytes));
    assert_true(has_key(f->store, f->store->envs, f->d_env_old.bytes));
    assert_int_equal(deja_store_verify(f->store, NULL, NULL), 0);
    assert_int_equal(list_count(f->store, "old", NULL, NULL), 1);
    assert_int_equal(list_count(f->store, NULL, NULL, NULL), 4);

    /* Without keep_errors it goes, and what only it used goes with it. */
    o.keep_errors = 0;
    assert_int_equal(deja_store_gc(f->store, &o, &st), 0);
    assert_int_equal(st.traces, 1);
    assert_int_equal(st.blobs, 1);
    assert_int_equal(st.envs, 1);
    assert_int_equal(deja_store_verify(f->store, NULL, NULL), 0);
    fixture_free(f);
    free(f);
}

/* A dry run counts what a real run deletes and changes nothing. */
static void test_gc__dry_run(void **state)
{
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats dry, real;
    deja_store_stats before, after;
    fixture *f = calloc(1, sizeof *f);

    (void)state;
    assert_non_null(f);
    fixture_make(f, DEJA_STATUS_OK);
    assert_int_equal(deja_store_stats_get(f->store, &before), 0);
    o.before_ns = CUTOFF_NS;
    o.dry_run = 1;
    assert_int_equal(deja_store_gc(f->store, &o, &dry), 0);
    assert_int_equal(dry.traces, 3);
    assert_int_equal(dry.blobs, 1);
    assert_int_equal(dry.envs, 1);
    assert_int_equal(deja_store_stats_get(f->store, &after), 0);
    after.file_bytes = before.file_bytes; /* the file may grow by a page, never matters */
    assert_memory_equal(&before, &after, sizeof before);
    for (int i = 0; i < 3; i++)
        assert_readable(f->store, &f->old[i]);
    assert_int_equal(list_count(f->store, NULL, NULL, NULL), 6);
    assert_int_equal(deja_store_verify(f->store, NULL, NULL), 0);
    /* A dry run only reads: it runs on a store opened read-only, and the
     * counts are the same. */
    {
        deja_store *ro = NULL;
        deja_gc_stats ro_dry;
        assert_int_equal(deja_store_open(&ro, f->path, DEJA_STORE_READONLY), 0);
        assert_int_equal(deja_store_gc(ro, &o, &ro_dry), 0);
        assert_memory_equal(&dry, &ro_dry, sizeof dry);
        deja_store_close(ro);
    }

    o.dry_run = 0;
    assert_int_equal(deja_store_gc(f->store, &o, &real), 0);
    assert_memory_equal(&dry, &real, sizeof dry);
    fixture_free(f);
    free(f);
}

/* Bad calls: a read-only handle, an unknown options version. Nothing
 * older than the oldest trace: nothing deleted. */
/* A gc that empties the store leaves no content bytes in the figures, and
 * the bytes before dedup are never fewer than after. */
static void test_gc__stats_after_emptying(void **state)
{
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats g;
    deja_store_stats st;
    fixture *f = calloc(1, sizeof *f);

    (void)state;
    assert_non_null(f);
    fixture_make(f, DEJA_STATUS_OK);
    o.before_ns = CUTOFF_NS;
    assert_int_equal(deja_store_gc(f->store, &o, &g), 0);
    assert_int_equal(deja_store_stats_get(f->store, &st), 0);
    assert_true(st.unique_bytes <= st.raw_bytes);
    o.before_ns = INT64_MAX;
    assert_int_equal(deja_store_gc(f->store, &o, &g), 0);
    assert_int_equal(deja_store_stats_get(f->store, &st), 0);
    assert_int_equal(st.traces, 0);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(st.envs, 0);
    assert_int_equal(st.raw_bytes, 0);
    assert_int_equal(st.unique_bytes, 0);
    assert_int_equal(st.stored_bytes, 0);
    fixture_free(f);
    free(f);
}

static void test_gc__refusals(void **state)
{
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats st;
    deja_store *ro = NULL;
    fixture *f = calloc(1, sizeof *f);

    (void)state;
    assert_non_null(f);
    fixture_make(f, DEJA_STATUS_OK);
    o.before_ns = OLD_MS * 1000000;
    assert_int_equal(deja_store_gc(f->store, &o, &st), 0);
    assert_int_equal(st.traces + st.blobs + st.chunks + st.envs, 0);
    assert_int_equal(deja_store_open(&ro, f->path, DEJA_STORE_READONLY), 0);
    o.before_ns = CUTOFF_NS;
    assert_int_equal(deja_store_gc(ro, &o, &st), DEJA_EINVAL);
    deja_store_close(ro);
    o.version = 99;
    assert_int_equal(deja_store_gc(f->store, &o, &st), DEJA_EVERSION);
    assert_int_equal(list_count(f->store, NULL, NULL, NULL), 6);
    fixture_free(f);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gc__deletes_old_and_unreferenced),
        cmocka_unit_test(test_gc__keep_errors),
        cmocka_unit_test(test_gc__refs_and_format1),
        cmocka_unit_test(test_gc__verify_checks_refs),
        cmocka_unit_test(test_gc__dry_run),
        cmocka_unit_test(test_gc__refusals),
        cmocka_unit_test(test_gc__stats_after_emptying),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
