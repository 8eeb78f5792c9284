/*
 * tests/test_delta.c -- chat history stored as a delta against its parent
 * trace (store/delta.c): read back byte for byte alone, after gc took the
 * parent, after compact, through a bundle; the chain bound; corrupt deltas
 * and missing parents refused cleanly; stores of format 2 still read.
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

#define TURNS 20
#define T0_MS ((int64_t)1600000000000)
#define STEP_MS 60000 /* a minute between turns */

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

static void tmp_dir(char dir[256])
{
    strcpy(dir, "/tmp/deja-test-delta-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

/* `n` bytes of pseudo-English from `*seed`. */
static void gen_text(char *p, size_t n, uint64_t *seed)
{
    static const char *const words[] = {"the",   "model", "said", "a",     "data", "of",
                                        "input", "that",  "when", "which", "to",   "answer"};
    size_t i = 0;

    while (i < n) {
        const char *w;
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        w = words[*seed % (sizeof words / sizeof words[0])];
        for (size_t j = 0; w[j] != '\0' && i < n; j++)
            p[i++] = w[j];
        if (i < n)
            p[i++] = ' ';
    }
}

/* A conversation: turn k's messages are the first len[k] bytes of `convo`
 * (the history, then the user message), its reply reply[k]. */
typedef struct chat {
    char system[1500];
    char convo[2048 + TURNS * 900 + 64];
    size_t len[TURNS];
    char reply[TURNS][400];
    size_t nreply[TURNS];
    deja_id ids[TURNS];
} chat;

static void chat_init_preamble(chat *c, uint64_t seed, size_t preamble)
{
    uint64_t shared = 5;
    size_t at = preamble;

    memset(c, 0, sizeof *c);
    gen_text(c->convo, preamble, &shared); /* the same in every conversation */
    gen_text(c->system, sizeof c->system, &seed);
    for (int k = 0; k < TURNS; k++) {
        const size_t ulen = 150 + seed % 200;

        memcpy(c->convo + at, "user: ", 6);
        gen_text(c->convo + at + 6, ulen, &seed);
        at += 6 + ulen;
        c->convo[at++] = '\n';
        c->len[k] = at;
        c->nreply[k] = 250 + seed % 100;
        gen_text(c->reply[k], c->nreply[k], &seed);
        memcpy(c->convo + at, "assistant: ", 11);
        memcpy(c->convo + at + 11, c->reply[k], c->nreply[k]);
        at += 11 + c->nreply[k];
        c->convo[at++] = '\n';
        deja__id_new_at(&c->ids[k], T0_MS + (int64_t)k * STEP_MS);
    }
}

static void chat_init(chat *c, uint64_t seed)
{
    chat_init_preamble(c, seed, 0);
}

/* Trace `k` of `c` in `t` (arrays in `in`, `out`, `shape`). */
static void chat_trace(const chat *c, int k, deja_trace *t, deja_tensor in[2], deja_tensor out[1],
                       uint64_t shape[3])
{
    memset(t, 0, sizeof *t);
    t->id = c->ids[k];
    t->start_ns = (T0_MS + (int64_t)k * STEP_MS) * 1000000;
    t->duration_ns = 1000;
    t->model_name = "chat";
    t->model_version = "1";
    shape[0] = sizeof c->system;
    shape[1] = c->len[k];
    shape[2] = c->nreply[k];
    in[0] = (deja_tensor){"system", DEJA_UTF8, 1, &shape[0], c->system, sizeof c->system};
    in[1] = (deja_tensor){"messages", DEJA_UTF8, 1, &shape[1], c->convo, c->len[k]};
    out[0] = (deja_tensor){"completion", DEJA_UTF8, 1, &shape[2], c->reply[k], c->nreply[k]};
    t->inputs = in;
    t->ninputs = 2;
    t->outputs = out;
    t->noutputs = 1;
    t->status = DEJA_STATUS_OK;
    t->error = "";
}

typedef struct put_one {
    const chat *c;
    int from, to; /* turns [from, to) */
} put_one;

static int put_turns(deja__wtxn *w, void *payload)
{
    const put_one *p = payload;
    int rc = 0;

    for (int k = p->from; rc == 0 && k < p->to; k++) {
        deja_trace t;
        deja_tensor in[2], out[1];
        uint64_t shape[3];

        chat_trace(p->c, k, &t, in, out, shape);
        rc = deja__wtxn_put_trace(w, &t, NULL);
    }
    return rc;
}

/* Write turns [from, to) of `c` into `path`, one transaction per turn,
 * through one handle (whose writer finds the parents). */
static void write_chat(const char *path, const chat *c, int from, int to)
{
    deja_store *s = NULL;

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    for (int k = from; k < to; k++) {
        put_one p = {c, k, k + 1};
        assert_int_equal(deja__store_write(s, put_turns, &p), 0);
    }
    deja_store_close(s);
}

/* Turn `k` of `c` reads back from `path` byte for byte, through a fresh
 * handle (no cache: alone, at random). */
static void check_turn(const char *path, const chat *c, int k)
{
    deja_store *s = NULL;
    deja_trace *t = NULL;

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_trace_get(s, &c->ids[k], &t), 0);
    assert_int_equal(t->ninputs, 2);
    assert_int_equal(t->inputs[1].size, c->len[k]);
    assert_memory_equal(t->inputs[1].data, c->convo, c->len[k]);
    assert_int_equal(t->inputs[0].size, sizeof c->system);
    assert_memory_equal(t->inputs[0].data, c->system, sizeof c->system);
    assert_int_equal(t->outputs[0].size, c->nreply[k]);
    assert_memory_equal(t->outputs[0].data, c->reply[k], c->nreply[k]);
    deja_trace_free(t);
    deja_store_close(s);
}

/* The first byte of the value of the messages blob of turn `k` and, for a
 * delta, its header in `x` (frame pointer not kept). 0 when absent. */
static int blob_kind(const char *path, const chat *c, int k, deja__delta *x)
{
    deja_store *s = NULL;
    const deja_digest d = deja_digest_of(c->convo, c->len[k]);
    MDB_txn *txn = NULL;
    MDB_val key = {16, (void *)d.bytes}, v;
    int kind = 0;

    memset(x, 0, sizeof *x);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    if (mdb_get(txn, s->blobs, &key, &v) == 0) {
        kind = ((const uint8_t *)v.mv_data)[0];
        if (kind == DEJA__DELTA_MAGIC)
            assert_int_equal(deja__delta_parse(v.mv_data, v.mv_size, &d, x), 0);
        x->frame = NULL;
    }
    deja__rtxn_end(s, txn);
    deja_store_close(s);
    return kind;
}

static void no_problem(const char *line, void *payload)
{
    (void)payload;
    fprintf(stderr, "verify: %s\n", line);
}

static int verify(const char *path)
{
    deja_store *s = NULL;
    int rc;

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    rc = deja_store_verify(s, no_problem, NULL);
    deja_store_close(s);
    return rc;
}

/* A conversation in `path`, each turn read back alone, and every history
 * past the first blob stored as a delta within the chain bound. */
static void test_delta__roundtrip_alone_and_bounded(void **state)
{
    char dir[256], path[300];
    chat *c = malloc(sizeof *c);
    int deltas = 0, full_after_first = 0;

    (void)state;
    assert_non_null(c);
    chat_init(c, 7);
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    write_chat(path, c, 0, TURNS);
    for (int k = TURNS - 1; k >= 0; k--)
        check_turn(path, c, k);
    for (int k = 0; k < TURNS; k++) {
        deja__delta x;
        const int kind = blob_kind(path, c, k, &x);

        if (c->len[k] <= DEJA__INLINE_MAX) {
            assert_int_equal(kind, 0); /* inline in its record */
            continue;
        }
        if (kind == DEJA__DELTA_MAGIC) {
            deltas++;
            assert_true(x.depth >= 1 && x.depth <= DEJA__DELTA_DEPTH_MAX);
            assert_memory_equal(x.parent.bytes, c->ids[k - 1].bytes, 16);
            assert_int_equal(x.input, 1);
        } else if (k > 0 && c->len[k - 1] > DEJA__INLINE_MAX) {
            full_after_first++; /* the full copy that bounds the chain */
        }
    }
    /* TURNS turns: most are deltas, and the chain was cut at least once. */
    assert_true(deltas >= TURNS - 4);
    assert_true(full_after_first >= 1);
    assert_int_equal(verify(path), 0);
    rm_rf(dir);
    free(c);
}

/* The chain bound, turn by turn: depth rises by one per turn and a turn
 * that would pass DEJA__DELTA_DEPTH_MAX is stored whole. */
static void test_delta__chain_bound(void **state)
{
    char dir[256], path[300];
    chat *c = malloc(sizeof *c);
    unsigned prev = 0;

    (void)state;
    assert_non_null(c);
    chat_init(c, 11);
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    write_chat(path, c, 0, TURNS);
    for (int k = 1; k < TURNS; k++) {
        deja__delta x;
        const int kind = blob_kind(path, c, k, &x);
        const unsigned depth = kind == DEJA__DELTA_MAGIC ? x.depth : 0;

        assert_true(depth <= DEJA__DELTA_DEPTH_MAX);
        if (depth > 0)
            assert_int_equal(depth, prev + 1);
        else
            assert_true(prev == DEJA__DELTA_DEPTH_MAX || c->len[k - 1] <= DEJA__INLINE_MAX ||
                        kind == 0);
        prev = depth;
    }
    rm_rf(dir);
    free(c);
}

/* gc takes the first turns (older than the cutoff): the later ones, whose
 * deltas named them, still read back byte for byte, and verify is clean. */
static void test_delta__parent_collected(void **state)
{
    char dir[256], path[300];
    chat *c = malloc(sizeof *c);
    deja_store *s = NULL;
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats st;
    deja_trace *t = NULL;

    (void)state;
    assert_non_null(c);
    chat_init(c, 13);
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    write_chat(path, c, 0, TURNS);
    /* Keep turns 6.. : 5 is the parent of 6's delta. */
    o.before_ns = (T0_MS + 6 * STEP_MS) * 1000000;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_store_gc(s, &o, &st), 0);
    assert_int_equal(st.traces, 6);
    assert_int_equal(deja_trace_get(s, &c->ids[5], &t), DEJA_ENOTFOUND);
    deja_store_close(s);
    for (int k = 6; k < TURNS; k++)
        check_turn(path, c, k);
    assert_int_equal(verify(path), 0);
    {
        deja__delta x;

        /* Turn 6's history no longer names a deleted trace. */
        const int kind = blob_kind(path, c, 6, &x);
        assert_true(kind != 0);
        assert_true(kind != DEJA__DELTA_MAGIC);
    }
    /* A second gc over what is left, then everything. */
    o.before_ns = (T0_MS + 12 * STEP_MS) * 1000000;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_store_gc(s, &o, &st), 0);
    deja_store_close(s);
    for (int k = 12; k < TURNS; k++)
        check_turn(path, c, k);
    assert_int_equal(verify(path), 0);
    o.before_ns = (T0_MS + 100 * STEP_MS) * 1000000;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_store_gc(s, &o, &st), 0);
    {
        deja_store_stats ss;
        assert_int_equal(deja_store_stats_get(s, &ss), 0);
        assert_int_equal(ss.traces, 0);
        assert_int_equal(ss.blobs, 0);
    }
    deja_store_close(s);
    rm_rf(dir);
    free(c);
}

/* The budget's eviction takes parents too: what stays reads back. */
static void test_delta__parent_evicted(void **state)
{
    char dir[256], path[300];
    chat *c = malloc(sizeof *c);
    deja_store *s = NULL;
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats st;
    deja_store_stats ss;
    uint64_t kept = 0;

    (void)state;
    assert_non_null(c);
    chat_init(c, 17);
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    write_chat(path, c, 0, TURNS);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    {
        uint64_t file = 0, free_bytes = 0;
        assert_int_equal(deja_store_space(s, &file, &free_bytes), 0);
        o.max_bytes = (file - free_bytes) / 2;
    }
    assert_int_equal(deja_store_gc(s, &o, &st), 0);
    assert_true(st.traces > 0);
    assert_int_equal(deja_store_stats_get(s, &ss), 0);
    kept = ss.traces;
    deja_store_close(s);
    assert_true(kept > 0 && kept < TURNS);
    for (int k = TURNS - (int)kept; k < TURNS; k++)
        check_turn(path, c, k);
    assert_int_equal(verify(path), 0);
    rm_rf(dir);
    free(c);
}

/* compact copies deltas and their parents as they are. */
static void test_delta__after_compact(void **state)
{
    char dir[256], path[300];
    chat *c = malloc(sizeof *c);
    uint64_t before = 0, after = 0;

    (void)state;
    assert_non_null(c);
    chat_init(c, 19);
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    write_chat(path, c, 0, TURNS);
    assert_int_equal(deja_store_compact(path, &before, &after), 0);
    for (int k = 0; k < TURNS; k++)
        check_turn(path, c, k);
    assert_int_equal(verify(path), 0);
    rm_rf(dir);
    free(c);
}

/* A bundle of the whole conversation, and one of its last turn alone (its
 * parents stay behind): both import and read back byte for byte. */
static void test_delta__bundle(void **state)
{
    char dir[256], path[300], other[300], lone[300], file[300], file1[300];
    chat *c = malloc(sizeof *c);
    deja_store *s = NULL, *o = NULL;

    (void)state;
    assert_non_null(c);
    chat_init(c, 23);
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    snprintf(lone, sizeof lone, "%s/lone", dir);
    snprintf(file, sizeof file, "%s/all.deja", dir);
    snprintf(file1, sizeof file1, "%s/last.deja", dir);
    write_chat(path, c, 0, TURNS);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_bundle_export(s, c->ids, TURNS, NULL, file), 0);
    assert_int_equal(deja_bundle_export(s, &c->ids[TURNS - 1], 1, NULL, file1), 0);
    deja_store_close(s);
    assert_int_equal(deja_bundle_verify(file, NULL), 0);
    assert_int_equal(deja_bundle_verify(file1, NULL), 0);
    assert_int_equal(deja_store_open(&o, other, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_bundle_import(o, file, NULL), 0);
    deja_store_close(o);
    for (int k = 0; k < TURNS; k++)
        check_turn(other, c, k);
    assert_int_equal(verify(other), 0);
    assert_int_equal(deja_store_open(&o, lone, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_bundle_import(o, file1, NULL), 0);
    deja_store_close(o);
    check_turn(lone, c, TURNS - 1);
    assert_int_equal(verify(lone), 0);
    rm_rf(dir);
    free(c);
}

/* Change the value of the messages blob of turn `k` with `edit`. */
static void edit_blob(const char *path, const chat *c, int k, void (*edit)(MDB_val *v))
{
    const deja_digest d = deja_digest_of(c->convo, c->len[k]);
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val key = {16, (void *)d.bytes}, v, nv;
    uint8_t *copy;

    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "blobs", 0, &dbi), 0);
    assert_int_equal(mdb_get(txn, dbi, &key, &v), 0);
    copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    nv.mv_size = v.mv_size;
    nv.mv_data = copy;
    edit(&nv);
    assert_int_equal(mdb_put(txn, dbi, &key, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
}

static void flip_frame(MDB_val *v)
{
    ((uint8_t *)v->mv_data)[v->mv_size - 3] ^= 0x5a;
}

static void deep_header(MDB_val *v)
{
    ((uint8_t *)v->mv_data)[2] = 200;
}

static void cut_short(MDB_val *v)
{
    v->mv_size = 10;
}

static void self_parent(MDB_val *v)
{
    /* depth 1, yet its parent's input (its own turn) is a delta too */
    ((uint8_t *)v->mv_data)[2] = 1;
}

/* A damaged delta is DEJA_ECORRUPT naming the blob, never a crash. */
static void test_delta__corrupt(void **state)
{
    void (*const edits[])(MDB_val *) = {flip_frame, deep_header, cut_short, self_parent};
    char dir[256], path[300];
    chat *c = malloc(sizeof *c);

    (void)state;
    assert_non_null(c);
    chat_init(c, 29);
    for (size_t e = 0; e < sizeof edits / sizeof edits[0]; e++) {
        deja_store *s = NULL;
        deja_trace *t = NULL;
        deja__delta x;
        int k = 5;

        tmp_dir(dir);
        snprintf(path, sizeof path, "%s/store", dir);
        write_chat(path, c, 0, 8);
        assert_int_equal(blob_kind(path, c, k, &x), DEJA__DELTA_MAGIC);
        assert_true(x.depth >= 2);
        edit_blob(path, c, k, edits[e]);
        assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
        assert_int_equal(deja_trace_get(s, &c->ids[k], &t), DEJA_ECORRUPT);
        assert_null(t);
        assert_non_null(strstr(deja_error_last(), "blob"));
        /* its child reads through it: refused the same way */
        assert_int_equal(deja_trace_get(s, &c->ids[k + 1], &t), DEJA_ECORRUPT);
        assert_true(deja_store_verify(s, NULL, NULL) > 0);
        deja_store_close(s);
        rm_rf(dir);
    }
    free(c);
}

/* A delta whose parent vanished (not through gc) is DEJA_ECORRUPT saying
 * so; verify reports it. */
static void test_delta__missing_parent(void **state)
{
    char dir[256], path[300];
    chat *c = malloc(sizeof *c);
    deja_store *s = NULL;
    deja_trace *t = NULL;
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    deja__delta x;

    (void)state;
    assert_non_null(c);
    chat_init(c, 31);
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    write_chat(path, c, 0, 6);
    assert_int_equal(blob_kind(path, c, 5, &x), DEJA__DELTA_MAGIC);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "traces", 0, &dbi), 0);
    {
        MDB_val key = {16, (void *)c->ids[4].bytes};
        assert_int_equal(mdb_del(txn, dbi, &key, NULL), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_trace_get(s, &c->ids[5], &t), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "parent trace"));
    assert_non_null(strstr(deja_error_last(), "is missing"));
    assert_true(deja_store_verify(s, NULL, NULL) > 0);
    deja_store_close(s);
    rm_rf(dir);
    free(c);
}

/* A store of format 2 (histories chunked, no deltas: each turn written by
 * its own handle, which knows no parent) reads back as it is, and a writer
 * makes it format 3: new turns are deltas against the old ones. */
static void test_delta__format2_store_reads(void **state)
{
    char dir[256], path[300];
    chat *c = malloc(sizeof *c);
    deja_store *s = NULL;
    deja_store_stats st;
    deja__delta x;

    (void)state;
    assert_non_null(c);
    chat_init(c, 37);
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    for (int k = 0; k < 10; k++)
        write_chat(path, c, k, k + 1);
    for (int k = 0; k < 10; k++)
        assert_int_not_equal(blob_kind(path, c, k, &x), DEJA__DELTA_MAGIC);
    {
        MDB_env *env = NULL;
        MDB_txn *txn = NULL;
        MDB_dbi meta;
        uint8_t v[4] = {2, 0, 0, 0};
        MDB_val k = {6, "format"}, val = {4, v};

        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
        assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
        assert_int_equal(mdb_put(txn, meta, &k, &val, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
    }
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, 2);
    deja_store_close(s);
    for (int k = 0; k < 10; k++)
        check_turn(path, c, k);
    /* One handle writes the rest: turn 10 finds no parent it wrote, 11 does. */
    write_chat(path, c, 10, TURNS);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, DEJA__FORMAT_VERSION);
    deja_store_close(s);
    assert_int_equal(blob_kind(path, c, 11, &x), DEJA__DELTA_MAGIC);
    for (int k = 0; k < TURNS; k++)
        check_turn(path, c, k);
    assert_int_equal(verify(path), 0);
    rm_rf(dir);
    free(c);
}

/* Through the tracer (records prepared on its helper threads, written by
 * its writer): a conversation of spans, one after the other, comes out as
 * deltas and reads back byte for byte. */
static void test_delta__through_tracer(void **state)
{
    char dir[256], path[300];
    chat *c = malloc(sizeof *c);
    deja_tracer *tr = NULL;
    int deltas = 0;

    (void)state;
    assert_non_null(c);
    chat_init(c, 41);
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    assert_int_equal(deja_tracer_open(&tr, path, NULL), 0);
    for (int k = 0; k < TURNS; k++) {
        deja_span *sp = NULL;

        assert_int_equal(deja_span_begin(&sp, tr, "chat", "1"), 0);
        c->ids[k] = *deja_span_id(sp);
        assert_int_equal(deja_span_add_text(sp, DEJA_INPUT, "system", c->system,
                                             sizeof c->system),
                         0);
        assert_int_equal(
            deja_span_add_text(sp, DEJA_INPUT, "messages", c->convo, c->len[k]), 0);
        assert_int_equal(
            deja_span_add_text(sp, DEJA_OUTPUT, "completion", c->reply[k], c->nreply[k]), 0);
        assert_int_equal(deja_span_end(sp, DEJA_STATUS_OK, NULL), 0);
        /* the next turn comes once the reply is out: its parent is written */
        assert_int_equal(deja_tracer_flush(tr), 0);
    }
    deja_tracer_close(tr);
    for (int k = 0; k < TURNS; k++) {
        deja__delta x;

        check_turn(path, c, k);
        deltas += blob_kind(path, c, k, &x) == DEJA__DELTA_MAGIC;
    }
    assert_true(deltas >= TURNS - 4);
    assert_int_equal(verify(path), 0);
    rm_rf(dir);
    free(c);
}

typedef struct put_filler {
    int n;
} put_filler;

/* `n` traces with distinct 8 KB text inputs: more bases than the map holds. */
static int put_filler_traces(deja__wtxn *w, void *payload)
{
    const put_filler *f = payload;
    static char text[8192];
    uint64_t seed = 99;
    int rc = 0;

    for (int i = 0; rc == 0 && i < f->n; i++) {
        deja_trace t;
        deja_tensor in[1];
        uint64_t shape[1] = {sizeof text};

        gen_text(text, sizeof text, &seed);
        memset(&t, 0, sizeof t);
        deja__id_new_at(&t.id, T0_MS - 1000000 + i);
        t.model_name = "filler";
        t.model_version = "1";
        in[0] = (deja_tensor){"doc", DEJA_UTF8, 1, shape, text, sizeof text};
        t.inputs = in;
        t.ninputs = 1;
        t.error = "";
        rc = deja__wtxn_put_trace(w, &t, NULL);
    }
    return rc;
}

/* A writer that saw more text than its map holds still finds the parents
 * of the conversations that follow (stale bases are forgotten): each of
 * several conversations, whichever slots their fingerprints fall on. */
static void test_delta__map_full_forgets_stale(void **state)
{
    enum { CHATS = 6 };
    char dir[256], path[300];
    chat *c = malloc(CHATS * sizeof *c);
    deja_store *s = NULL;
    put_filler f = {700}; /* 700 x 8 KB: above the 4 MiB of bases */

    (void)state;
    assert_non_null(c);
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja__store_write(s, put_filler_traces, &f), 0);
    for (int j = 0; j < CHATS; j++) {
        chat_init(&c[j], 43 + (uint64_t)j);
        for (int k = 0; k < TURNS; k++) {
            put_one p = {&c[j], k, k + 1};
            assert_int_equal(deja__store_write(s, put_turns, &p), 0);
        }
    }
    deja_store_close(s);
    for (int j = 0; j < CHATS; j++) {
        int deltas = 0;

        for (int k = 0; k < TURNS; k++) {
            deja__delta x;

            deltas += blob_kind(path, &c[j], k, &x) == DEJA__DELTA_MAGIC;
        }
        assert_true(deltas >= TURNS - 4);
        check_turn(path, &c[j], TURNS - 1);
    }
    rm_rf(dir);
    free(c);
}

/* Conversations that all begin alike (the system prompt inside the
 * messages, as OpenAI's format sends it), their turns interleaved: each
 * turn's delta names its own conversation's previous turn (but the first
 * ones, whose own text is all in their last chunk), and every turn reads
 * back whatever parent it took. */
static void test_delta__shared_preamble_interleaved(void **state)
{
    enum { CHATS = 3 };
    char dir[256], path[300];
    chat *c = malloc(CHATS * sizeof *c);
    deja_store *s = NULL;

    (void)state;
    assert_non_null(c);
    for (int j = 0; j < CHATS; j++) {
        /* the same first 1,500 bytes in every conversation */
        chat_init_preamble(&c[j], 51 + (uint64_t)j, 1500);
        for (int k = 0; k < TURNS; k++)
            deja__id_new_at(&c[j].ids[k], T0_MS + (int64_t)k * STEP_MS + j);
    }
    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/store", dir);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    for (int k = 0; k < TURNS; k++)
        for (int j = 0; j < CHATS; j++) {
            put_one p = {&c[j], k, k + 1};
            assert_int_equal(deja__store_write(s, put_turns, &p), 0);
        }
    deja_store_close(s);
    for (int j = 0; j < CHATS; j++) {
        int deltas = 0;

        for (int k = 1; k < TURNS; k++) {
            deja__delta x;

            if (blob_kind(path, &c[j], k, &x) != DEJA__DELTA_MAGIC)
                continue;
            deltas++;
            /* Once a conversation's own text fills a chunk before its end
             * (a turn or two after the preamble), its anchors are its own. */
            if (k >= 3)
                assert_memory_equal(x.parent.bytes, c[j].ids[k - 1].bytes, 16);
        }
        assert_true(deltas >= TURNS - 6);
        for (int k = 0; k < TURNS; k++)
            check_turn(path, &c[j], k);
    }
    assert_int_equal(verify(path), 0);
    rm_rf(dir);
    free(c);
}

/* The cache of reconstructed histories keeps two payloads whose digests
 * fall in the same place (a history read as a trace's blob, then another
 * one, must still be there when the next turn's delta needs it as its
 * base); a third one there pushes out the oldest. */
static void test_delta__cache_keeps_two_of_a_set(void **state)
{
    char dir[256], path[300];
    deja_store *s = NULL;
    uint8_t a[16], b[16], c[16], got[64];
    const uint8_t pa[40] = "history of conversation a", pb[40] = "history of conversation b",
                  pc[40] = "history of conversation c";
    (void)state;

    tmp_dir(dir);
    snprintf(path, sizeof path, "%s/s", dir);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    memset(a, 0xA1, 16);
    memset(b, 0xB2, 16);
    memset(c, 0xC3, 16);
    /* The same last two bytes: the same place in the cache. */
    a[14] = b[14] = c[14] = 7;
    a[15] = b[15] = c[15] = 1;
    deja__chunk_cache_put(s, a, pa, sizeof pa);
    deja__chunk_cache_put(s, b, pb, sizeof pb);
    assert_true(deja__chunk_cache_get(s, a, sizeof pa, got));
    assert_memory_equal(got, pa, sizeof pa);
    assert_true(deja__chunk_cache_get(s, b, sizeof pb, got));
    assert_memory_equal(got, pb, sizeof pb);
    /* Only the right size is a hit. */
    assert_false(deja__chunk_cache_get(s, a, sizeof pa - 1, got));
    deja__chunk_cache_put(s, c, pc, sizeof pc);
    assert_false(deja__chunk_cache_get(s, a, sizeof pa, got));
    assert_true(deja__chunk_cache_get(s, b, sizeof pb, got));
    assert_memory_equal(got, pb, sizeof pb);
    assert_true(deja__chunk_cache_get(s, c, sizeof pc, got));
    assert_memory_equal(got, pc, sizeof pc);
    /* Put again, a payload stays once. */
    deja__chunk_cache_put(s, c, pc, sizeof pc);
    assert_true(deja__chunk_cache_get(s, b, sizeof pb, got));
    deja_store_close(s);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delta__roundtrip_alone_and_bounded),
        cmocka_unit_test(test_delta__chain_bound),
        cmocka_unit_test(test_delta__parent_collected),
        cmocka_unit_test(test_delta__parent_evicted),
        cmocka_unit_test(test_delta__after_compact),
        cmocka_unit_test(test_delta__bundle),
        cmocka_unit_test(test_delta__corrupt),
        cmocka_unit_test(test_delta__missing_parent),
        cmocka_unit_test(test_delta__format2_store_reads),
        cmocka_unit_test(test_delta__through_tracer),
        cmocka_unit_test(test_delta__map_full_forgets_stale),
        cmocka_unit_test(test_delta__shared_preamble_interleaved),
        cmocka_unit_test(test_delta__cache_keeps_two_of_a_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
