/*
 * tests/test_ix.c -- the indexes as LMDB duplicates (format 5, store/ix.c)
 * read back through every reader: listing by model, version, tag and
 * status with limits and time bounds, the iterator both ways, counting,
 * gc deleting exactly a trace's entries, verify finding a missing, extra
 * or malformed entry; and a store of format 4 (flat entries, built here
 * by writing that layout directly) listed, verified and counted as it is
 * read-only, then converted by a writer and holding old and new traces
 * readable through every reader.
 */
#include <lmdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_harness.h"
#include "problems_harness.h"
#include "store/store_internal.h"
#include "watch_harness.h"

#define T0 1764000000000000000LL /* 2025-11-24T16:00:00Z */
#define MS 1000000LL
#define N 90

/* What the test knows of each trace it wrote. */
typedef struct known {
    deja_id id;
    int64_t start_ns;
    const char *model, *version, *user, *invalid;
    int error;
} known;

static const char *const users[] = {"u0", "u1", "u2", "u3"};
static const char *const versions[] = {"1", "2", "3"};

/* The `i`-th trace of the set: models clf (three versions) and gen, a
 * user tag each, every 9th tagged invalid (two rules), every 7th an error,
 * a second apart with some jitter. */
static void known_init(known *k, int i)
{
    wtrace w;

    memset(k, 0, sizeof *k);
    k->start_ns = T0 + (int64_t)i * 1000 * MS + (i * 37 % 500) * MS;
    k->model = i % 5 == 4 ? "gen" : "clf";
    k->version = i % 5 == 4 ? "1" : versions[i % 3];
    k->user = users[i % 4];
    k->invalid = i % 9 == 0 ? (i % 2 ? "range" : "empty") : NULL;
    k->error = i % 7 == 3;
    wtrace_init(&w, k->model, k->version, k->start_ns, MS);
    k->id = w.t.id;
}

/* Write trace `k` into `s`. */
static void put_known(deja_store *s, const known *k)
{
    wtrace w;

    wtrace_init(&w, k->model, k->version, k->start_ns, MS);
    w.t.id = k->id;
    wtrace_text(&w, DEJA_INPUT, "prompt", "hello");
    wtrace_text(&w, DEJA_OUTPUT, "answer", "hi");
    wtrace_tag(&w, "user", k->user);
    if (k->invalid != NULL)
        wtrace_tag(&w, DEJA_INVALID_TAG, k->invalid);
    if (k->error)
        wtrace_error(&w, "boom");
    wtrace_put(s, &w);
}

/* Write traces [from, to) of `ks`, out of order in places (a writer's
 * batches interleave): the odd ones of each ten first, then the even. */
static void put_range(deja_store *s, const known *ks, int from, int to)
{
    for (int base = from; base < to; base += 10) {
        for (int i = base + 1; i < to && i < base + 10; i += 2)
            put_known(s, &ks[i]);
        for (int i = base; i < to && i < base + 10; i += 2)
            put_known(s, &ks[i]);
    }
}

static void tmp_root(char *root)
{
    snprintf(root, 64, "/tmp/deja-ix-XXXXXX");
    assert_non_null(mkdtemp(root));
}

/* Whether known trace `k` passes `f` (the rule of deja_store_list). */
static int known_matches(const known *k, const deja_filter *f)
{
    if (f->model != NULL && strcmp(f->model, k->model) != 0)
        return 0;
    if (f->model_version != NULL && strcmp(f->model_version, k->version) != 0)
        return 0;
    if (f->since_ns != 0 && k->start_ns < f->since_ns)
        return 0;
    if (f->until_ns != 0 && k->start_ns >= f->until_ns)
        return 0;
    if (f->status >= 0 && f->status != (k->error ? DEJA_STATUS_ERROR : DEJA_STATUS_OK))
        return 0;
    for (size_t i = 0; i < f->ntags; i++) {
        const char *key = f->tags[i].key, *value = f->tags[i].value;

        if (strcmp(key, "user") == 0 && strcmp(value, k->user) != 0)
            return 0;
        if (strcmp(key, DEJA_INVALID_TAG) == 0 &&
            (k->invalid == NULL || strcmp(value, k->invalid) != 0))
            return 0;
    }
    return 1;
}

typedef struct id_list {
    deja_id ids[N];
    size_t n;
} id_list;

static int collect(const deja_trace *t, void *payload)
{
    id_list *l = payload;

    assert_true(l->n < N);
    l->ids[l->n++] = t->id;
    return 0;
}

/* The ids of `ks[0..n)` that `f` selects, newest first, up to its limit. */
static void expected(const known *ks, size_t n, const deja_filter *f, id_list *out)
{
    int used[N] = {0};

    out->n = 0;
    for (;;) {
        int best = -1;

        for (size_t i = 0; i < n; i++)
            if (!used[i] && known_matches(&ks[i], f) &&
                (best < 0 || memcmp(ks[i].id.bytes, ks[best].id.bytes, 16) > 0))
                best = (int)i;
        if (best < 0 || (f->limit != 0 && out->n == f->limit))
            break;
        used[best] = 1;
        out->ids[out->n++] = ks[best].id;
    }
}

/* deja_store_list gives exactly what the known traces `ks[0..n)` say for
 * every kind of filter: the index each walks, bounds and limits. */
static void check_lists(deja_store *s, const known *ks, size_t n)
{
    static const deja_tag u1 = {"user", "u1"}, u2 = {"user", "u2"}, range = {DEJA_INVALID_TAG,
                                                                                "range"};
    deja_filter fs[14];
    size_t nf = 0;

    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        fs[i] = (deja_filter)DEJA_FILTER_INIT;
    fs[nf].model = "clf";
    fs[nf++].model_version = "2";
    fs[nf++].model = "clf"; /* three versions merged */
    fs[nf++].model = "gen";
    fs[nf].model = "clf";
    fs[nf++].limit = 5;
    fs[nf].tags = &u1;
    fs[nf++].ntags = 1;
    fs[nf].tags = &u2;
    fs[nf].ntags = 1;
    fs[nf].since_ns = T0 + 20 * 1000 * MS;
    fs[nf++].until_ns = T0 + 60 * 1000 * MS;
    fs[nf].tags = &range;
    fs[nf++].ntags = 1;
    fs[nf++].status = DEJA_STATUS_ERROR;
    fs[nf].status = DEJA_STATUS_OK;
    fs[nf].since_ns = T0 + 10 * 1000 * MS;
    fs[nf].until_ns = T0 + 40 * 1000 * MS;
    fs[nf++].limit = 3;
    fs[nf].model = "clf";
    fs[nf].model_version = "3";
    fs[nf].status = DEJA_STATUS_ERROR;
    fs[nf++].until_ns = T0 + 70 * 1000 * MS;
    fs[nf++].limit = 10;
    fs[nf++].model = "nosuch";
    fs[nf].model = "clf";
    fs[nf++].model_version = "9";
    fs[nf].model = "gen";
    fs[nf++].since_ns = T0 + 50 * 1000 * MS;
    for (size_t i = 0; i < nf; i++) {
        id_list got = {.n = 0}, want;

        expected(ks, n, &fs[i], &want);
        assert_int_equal(deja_store_list(s, &fs[i], collect, NULL, &got), 0);
        if (got.n != want.n)
            fprintf(stderr, "filter %zu: %zu listed, %zu expected\n", i, got.n, want.n);
        assert_int_equal(got.n, want.n);
        for (size_t j = 0; j < got.n; j++)
            assert_memory_equal(got.ids[j].bytes, want.ids[j].bytes, 16);
        if (fs[i].limit == 0 && fs[i].model != NULL && strcmp(fs[i].model, "nosuch") != 0 &&
            fs[i].model_version == NULL)
            assert_true(got.n > 0);
    }
}

/* The distinct invalid traces among `ks[0..n)`. */
static uint64_t invalid_of(const known *ks, size_t n)
{
    uint64_t x = 0;

    for (size_t i = 0; i < n; i++)
        x += ks[i].invalid != NULL;
    return x;
}

/* Every reader agrees with the known traces `ks[0..n)`: listings, the
 * invalid count, counting by prefix, verify. */
static void check_readers(deja_store *s, const known *ks, size_t n)
{
    MDB_txn *txn = NULL;
    uint64_t count = 0, want = 0;

    check_lists(s, ks, n);
    assert_int_equal(deja_store_invalid_count(s, &count), 0);
    assert_int_equal(count, invalid_of(ks, n));
    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    assert_int_equal(deja__ix_count(s, txn, DEJA__IX_TAG, "user=", 5, &count), 0);
    assert_int_equal(count, n);
    assert_int_equal(deja__ix_count(s, txn, DEJA__IX_MODEL, "clf", 4, &count), 0);
    for (size_t i = 0; i < n; i++)
        want += strcmp(ks[i].model, "clf") == 0;
    assert_int_equal(count, want);
    want = 0;
    for (size_t i = 0; i < n; i++)
        want += ks[i].error;
    {
        const uint8_t err = DEJA_STATUS_ERROR;
        assert_int_equal(deja__ix_count(s, txn, DEJA__IX_STATUS, &err, 1, &count), 0);
    }
    assert_int_equal(count, want);
    deja__rtxn_end(s, txn);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
}

/* The number of entries of every index, walked. */
static int count_entry(const uint8_t *key, size_t n, const uint8_t *id, void *payload)
{
    (void)key;
    (void)n;
    assert_non_null(id);
    (*(uint64_t *)payload)++;
    return 0;
}

static uint64_t all_entries(deja_store *s)
{
    MDB_txn *txn = NULL;
    uint64_t n = 0;

    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    for (int k = 0; k < DEJA__IX_KINDS; k++)
        assert_int_equal(deja__ix_scan(s, txn, (deja__ix_kind)k, "", 0, count_entry, &n), 0);
    deja__rtxn_end(s, txn);
    return n;
}

/* The entries trace `k` has: model, user tag, invalid tag, status. */
static uint64_t entries_of(const known *k)
{
    return 3 + (k->invalid != NULL);
}

/* Rewrite the store at `path` (closed) as deja of format 4 left it: each
 * index entry a flat key, prefix + id, the dup databases gone. */
static void to_format4(const char *path)
{
    static const char *const dup[] = {"ixd_model", "ixd_tag", "ixd_status"};
    static const char *const flat[] = {"ix_model", "ix_tag", "ix_status"};
    uint8_t buf[600], v4[4] = {4, 0, 0, 0};
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi d, f, meta;
    MDB_cursor *cur = NULL;
    MDB_val k, v, e = {0, ""}, fk = {6, "format"}, fv = {4, v4};
    int rc;

    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mdb_dbi_open(txn, dup[i], MDB_DUPSORT | MDB_DUPFIXED, &d), 0);
        assert_int_equal(mdb_dbi_open(txn, flat[i], 0, &f), 0);
        assert_int_equal(mdb_cursor_open(txn, d, &cur), 0);
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            MDB_val key = {k.mv_size + 16, buf};

            assert_int_equal(v.mv_size, 16);
            memcpy(buf, k.mv_data, k.mv_size);
            memcpy(buf + k.mv_size, v.mv_data, 16);
            assert_int_equal(mdb_put(txn, f, &key, &e, 0), 0);
        }
        assert_int_equal(rc, MDB_NOTFOUND);
        mdb_cursor_close(cur);
        assert_int_equal(mdb_drop(txn, d, 1), 0);
    }
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    assert_int_equal(mdb_put(txn, meta, &fk, &fv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* The number of entries in the named database of `s`. */
static size_t db_entries(deja_store *s, const char *name)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_stat st;

    assert_int_equal(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, name, 0, &dbi), 0);
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    return st.ms_entries;
}

static void known_all(known *ks)
{
    for (int i = 0; i < N; i++)
        known_init(&ks[i], i);
}

/* A new store in a new directory `root` (its path in `path`), open for
 * writing, holding traces [0, n) of the set, which `ks` receives. */
static deja_store *written_store(char root[64], char path[128], known *ks, int n)
{
    deja_store *s = NULL;

    tmp_root(root);
    snprintf(path, 128, "%s/store", root);
    known_all(ks);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    put_range(s, ks, 0, n);
    return s;
}

/* Written in the dup layout, read back through every reader. */
static void test_ix__readers(void **state)
{
    char root[64], path[128];
    known ks[N];
    deja_store *s = NULL;
    deja_store_stats st;
    uint64_t want = 0;

    (void)state;
    tmp_root(root);
    snprintf(path, sizeof path, "%s/store", root);
    known_all(ks);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    assert_true(deja__ix_is_dup(s));
    put_range(s, ks, 0, N);
    put_known(s, &ks[5]); /* written again: still one entry each */
    check_readers(s, ks, N);
    for (int i = 0; i < N; i++)
        want += entries_of(&ks[i]);
    assert_int_equal(all_entries(s), want);
    assert_int_equal(db_entries(s, "ix_model") + db_entries(s, "ix_tag") +
                         db_entries(s, "ix_status"),
                     0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, 5);
    deja_store_close(s);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    check_readers(s, ks, N);
    deja_store_close(s);
    cli_rm_rf(root);
}

/* Add `step` (1 or -1) to `id` read as one 128-bit big-endian number:
 * a bound just past an id whatever its last byte (a byte-wise ++ wraps
 * 0xff to 0x00 and lands before it). */
static void id_step(deja_id *id, int step)
{
    for (int i = 15; i >= 0; i--) {
        uint8_t before = id->bytes[i];

        id->bytes[i] = (uint8_t)(before + step);
        if ((step > 0 && before != 0xff) || (step < 0 && before != 0x00))
            return;
    }
}

/* The iterator over one key's ids, newest first and oldest first, with
 * bounds on and between ids, in both layouts. */
static void iterate(deja_store *s, const known *ks, int nks)
{
    static const uint8_t key[] = "clf\0" "2";
    MDB_txn *txn = NULL;
    deja__ix_iter it;
    deja_id sorted[N], lo, hi;
    size_t n = 0, got;

    for (int i = 0; i < nks; i++) {
        size_t j;

        if (strcmp(ks[i].model, "clf") != 0 || strcmp(ks[i].version, "2") != 0)
            continue;
        for (j = n; j > 0 && memcmp(sorted[j - 1].bytes, ks[i].id.bytes, 16) > 0; j--)
            sorted[j] = sorted[j - 1];
        sorted[j] = ks[i].id;
        n++;
    }
    assert_true(n > 10);
    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    for (int bounds = 0; bounds < 3; bounds++) {
        /* 0: everything; 1: exactly ids 3..n-4; 2: just past them */
        size_t from = bounds ? 3 : 0, to = bounds ? n - 4 : n - 1;

        memset(lo.bytes, 0, 16);
        memset(hi.bytes, 0xff, 16);
        if (bounds == 1) {
            lo = sorted[from];
            hi = sorted[to];
        } else if (bounds == 2) {
            lo = sorted[from - 1];
            id_step(&lo, 1);
            hi = sorted[to + 1];
            id_step(&hi, -1);
        }
        assert_int_equal(deja__ix_iter_open_kind(&it, s, txn, DEJA__IX_MODEL, key, 6), 0);
        got = 0;
        for (assert_int_equal(deja__ix_iter_last(&it, &lo, &hi), 0); it.valid;
             assert_int_equal(deja__ix_iter_prev(&it), 0)) {
            assert_memory_equal(it.id.bytes, sorted[to - got].bytes, 16);
            got++;
        }
        assert_int_equal(got, to - from + 1);
        got = 0;
        for (assert_int_equal(deja__ix_iter_first(&it, &lo, &hi), 0); it.valid;
             assert_int_equal(deja__ix_iter_next(&it), 0)) {
            assert_memory_equal(it.id.bytes, sorted[from + got].bytes, 16);
            got++;
        }
        assert_int_equal(got, to - from + 1);
        deja__ix_iter_close(&it);
    }
    /* A key without entries, and one that is a prefix of a real one. */
    memset(lo.bytes, 0, 16);
    memset(hi.bytes, 0xff, 16);
    assert_int_equal(deja__ix_iter_open_kind(&it, s, txn, DEJA__IX_MODEL, "clf", 4), 0);
    assert_int_equal(deja__ix_iter_last(&it, &lo, &hi), 0);
    assert_false(it.valid);
    assert_int_equal(deja__ix_iter_first(&it, &lo, &hi), 0);
    assert_false(it.valid);
    deja__ix_iter_close(&it);
    deja__rtxn_end(s, txn);
}

static void test_ix__iterator(void **state)
{
    char root[64], path[128];
    known ks[N];
    deja_store *s = NULL;

    (void)state;
    s = written_store(root, path, ks, N);
    iterate(s, ks, N);
    deja_store_close(s);
    to_format4(path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_false(deja__ix_is_dup(s));
    iterate(s, ks, N);
    deja_store_close(s);
    cli_rm_rf(root);
}

/* gc deletes exactly the entries of the traces it deletes. */
static void gc_exactly(deja_store *s, const known *ks, size_t n, int64_t before_ns)
{
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats gs;
    known kept[N];
    size_t nkept = 0;
    uint64_t want = 0;

    for (size_t i = 0; i < n; i++)
        if ((int64_t)deja_id_time_ms(&ks[i].id) * MS >= before_ns)
            kept[nkept++] = ks[i];
    assert_true(nkept > 0 && nkept < n);
    o.before_ns = before_ns;
    assert_int_equal(deja_store_gc(s, &o, &gs), 0);
    assert_int_equal(gs.traces, n - nkept);
    for (size_t i = 0; i < nkept; i++)
        want += entries_of(&kept[i]);
    assert_int_equal(all_entries(s), want);
    check_readers(s, kept, nkept);
}

static void test_ix__gc_removes_exactly(void **state)
{
    char root[64], path[128];
    known ks[N];
    deja_store *s = NULL;

    (void)state;
    s = written_store(root, path, ks, N);
    gc_exactly(s, ks, N, T0 + 30 * 1000 * MS);
    deja_store_close(s);
    cli_rm_rf(root);
}

/* verify finds a missing, an extra, a misdirected and malformed entries
 * in the dup layout. */
static void test_ix__verify_finds_damage(void **state)
{
    char root[64], path[128], text[DEJA_ID_STRLEN + 1];
    known ks[N];
    deja_store *s = NULL;
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi model, tag, status;
    uint8_t ghost[16], eight[8];
    problems p;

    (void)state;
    s = written_store(root, path, ks, 20);
    deja_store_close(s);

    memset(ghost, 0x01, sizeof ghost);
    memset(eight, 0x02, sizeof eight);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "ixd_model", MDB_DUPSORT | MDB_DUPFIXED, &model), 0);
    assert_int_equal(mdb_dbi_open(txn, "ixd_tag", MDB_DUPSORT | MDB_DUPFIXED, &tag), 0);
    assert_int_equal(mdb_dbi_open(txn, "ixd_status", MDB_DUPSORT | MDB_DUPFIXED, &status), 0);
    {
        /* missing: trace 0's model entry */
        MDB_val k = {6, "clf\0" "1"}, v = {16, ks[0].id.bytes};
        assert_int_equal(mdb_del(txn, model, &k, &v), 0);
    }
    {
        /* extra: a user entry naming no trace */
        MDB_val k = {8, "user=u1"}, v = {16, ghost};
        assert_int_equal(mdb_put(txn, tag, &k, &v, 0), 0);
    }
    {
        /* misdirected: trace 1 (clf) under gen's key */
        MDB_val k = {6, "gen\0" "1"}, v = {16, ks[1].id.bytes};
        assert_int_equal(mdb_put(txn, model, &k, &v, 0), 0);
    }
    {
        /* malformed: a model key without its NULs, a status id of 8 bytes */
        MDB_val k = {3, "bad"}, v = {16, ks[2].id.bytes};
        MDB_val ks2 = {1, "\x09"}, v2 = {8, eight};
        assert_int_equal(mdb_put(txn, model, &k, &v, 0), 0);
        assert_int_equal(mdb_put(txn, status, &ks2, &v2, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    memset(&p, 0, sizeof p);
    assert_int_equal(deja_store_verify(s, problem_cb, &p), 5);
    deja_id_format(&ks[0].id, text);
    assert_true(has_line(&p, text, "model index entry is missing"));
    assert_true(has_line(&p, "user=u1", "no such trace"));
    deja_id_format(&ks[1].id, text);
    assert_true(has_line(&p, "ix_model entry 'gen/1' -> trace", "the trace is model 'clf'"));
    assert_true(has_line(&p, "ix_model entry 'bad' is malformed", NULL));
    assert_true(has_line(&p, "ix_status", "malformed"));
    deja_store_close(s);
    cli_rm_rf(root);
}

/* A store of format 4 (flat entries) lists, counts and verifies read-only;
 * gc on it converts it and deletes exactly what it should; a writer then
 * adds traces, and old and new read back through every reader. */
static void test_ix__format4_store(void **state)
{
    char root[64], path[128];
    known ks[N];
    deja_store *s = NULL;
    deja_store_stats st;
    problems p;

    (void)state;
    s = written_store(root, path, ks, 60);
    deja_store_close(s);
    to_format4(path);

    /* Read-only: the flat layout, read as it is. */
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_false(deja__ix_is_dup(s));
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, 4);
    check_readers(s, ks, 60);
    iterate(s, ks, 60);
    deja_store_close(s);

    /* A flat entry naming no trace is found too. */
    {
        MDB_env *env = NULL;
        MDB_txn *txn = NULL;
        MDB_dbi tag;
        uint8_t key[24];
        MDB_val k = {24, key}, e = {0, ""};

        memcpy(key, "user=u3", 8);
        memset(key + 8, 0x01, 16);
        assert_int_equal(mdb_env_create(&env), 0);
        assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
        assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, "ix_tag", 0, &tag), 0);
        assert_int_equal(mdb_put(txn, tag, &k, &e, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
        memset(&p, 0, sizeof p);
        assert_int_equal(deja_store_verify(s, problem_cb, &p), 1);
        assert_true(has_line(&p, "ix_tag entry 'user=u3/' -> trace", "no such trace"));
        deja_store_close(s);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_del(txn, tag, &k, NULL), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
    }

    /* A writer converts it: format 5, the flat databases empty, every
     * reader the same; gc deletes exactly the old traces' entries. */
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    assert_true(deja__ix_is_dup(s));
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, 5);
    assert_int_equal(db_entries(s, "ix_model") + db_entries(s, "ix_tag") +
                         db_entries(s, "ix_status"),
                     0);
    check_readers(s, ks, 60);
    put_range(s, ks, 60, N);
    check_readers(s, ks, N);
    deja_store_close(s);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    check_readers(s, ks, N);
    iterate(s, ks, N);
    deja_store_close(s);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    gc_exactly(s, ks, N, T0 + 30 * 1000 * MS);
    deja_store_close(s);
    cli_rm_rf(root);
}

/* gc on a format-4 store converts it first, then deletes exactly. */
static void test_ix__format4_gc(void **state)
{
    char root[64], path[128];
    known ks[N];
    deja_store *s = NULL;

    (void)state;
    s = written_store(root, path, ks, N);
    deja_store_close(s);
    to_format4(path);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    gc_exactly(s, ks, N, T0 + 45 * 1000 * MS);
    deja_store_close(s);
    cli_rm_rf(root);
}

/* A read-only handle open on a format-4 store while another process's
 * writer converts it and adds traces: its next reads use the converted
 * indexes and see old and new traces. */
static void test_ix__reader_sees_conversion(void **state)
{
    char root[64], path[128];
    known ks[N];
    deja_store *s = NULL, *r = NULL;
    pid_t pid;
    int status = 0;

    (void)state;
    s = written_store(root, path, ks, 60);
    deja_store_close(s);
    to_format4(path);
    assert_int_equal(deja_store_open(&r, path, DEJA_STORE_READONLY), 0);
    assert_false(deja__ix_is_dup(r));
    check_readers(r, ks, 60);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int rc = deja_store_open(&s, path, DEJA_STORE_WRITE);

        if (rc == 0)
            put_range(s, ks, 60, N);
        deja_store_close(s);
        _exit(rc == 0 ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    check_readers(r, ks, N);
    assert_true(deja__ix_is_dup(r));
    deja_store_close(r);
    cli_rm_rf(root);
}

/* The traces of put_many: written in one transaction. */
typedef struct many {
    const int64_t *starts;
    size_t n;
} many;

static int many_fill(deja__wtxn *w, void *payload)
{
    const many *m = payload;

    for (size_t i = 0; i < m->n; i++) {
        wtrace t;
        int rc;

        wtrace_init(&t, "big", "1", m->starts[i], MS);
        wtrace_tag(&t, "user", "same");
        rc = deja__wtxn_put_trace(w, &t.t, NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Enough ids under one key that they leave its node for a tree of their
 * own (pages of packed ids, a branch above them): written, listed, checked
 * by verify's page walk; two ids swapped in one of those pages are damage
 * it reports. */
static void test_ix__ids_in_their_own_pages(void **state)
{
    enum { BIG = 1500 };
    char root[64], path[128], data[160];
    static int64_t starts[BIG];
    deja_store *s = NULL;
    deja_filter f = DEJA_FILTER_INIT;
    many m = {starts, BIG};
    MDB_txn *txn = NULL;
    uint64_t count = 0;
    problems p;
    uint8_t *file;
    long size;
    FILE *fp;
    int edited = 0;

    (void)state;
    tmp_root(root);
    snprintf(path, sizeof path, "%s/store", root);
    for (int i = 0; i < BIG; i++) /* every third out of order */
        starts[i] = T0 + (int64_t)(i % 3 == 2 ? BIG + i : i) * MS;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja__store_write(s, many_fill, &m), 0);
    f.model = "big";
    f.limit = 7;
    {
        id_list got = {.n = 0};
        assert_int_equal(deja_store_list(s, &f, collect, NULL, &got), 0);
        assert_int_equal(got.n, 7);
        assert_int_equal(deja_id_time_ms(&got.ids[0]), (T0 + (int64_t)(2 * BIG - 1) * MS) / MS);
    }
    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    assert_int_equal(deja__ix_count(s, txn, DEJA__IX_TAG, "user=same", 10, &count), 0);
    deja__rtxn_end(s, txn);
    assert_int_equal(count, BIG);
    memset(&p, 0, sizeof p);
    assert_int_equal(deja_store_verify(s, problem_cb, &p), 0);
    deja_store_close(s);

    /* Swap the first two ids of a page of packed ids (P_LEAF | P_LEAF2). */
    snprintf(data, sizeof data, "%s/data.mdb", path);
    fp = fopen(data, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    size = ftell(fp);
    file = malloc((size_t)size);
    assert_non_null(file);
    assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
    assert_int_equal(fread(file, 1, (size_t)size, fp), (size_t)size);
    for (long pg = 2; pg < size / 4096 && !edited; pg++) {
        uint8_t *pp = file + pg * 4096, tmp[16];
        const unsigned flags = pp[10] | pp[11] << 8, lower = pp[12] | pp[13] << 8;

        if ((flags & 0x7f) != 0x22 || lower < 20)
            continue;
        memcpy(tmp, pp + 16, 16);
        memcpy(pp + 16, pp + 32, 16);
        memcpy(pp + 32, tmp, 16);
        assert_int_equal(fseek(fp, pg * 4096, SEEK_SET), 0);
        assert_int_equal(fwrite(pp, 1, 4096, fp), 4096);
        edited = 1;
    }
    assert_int_equal(fclose(fp), 0);
    free(file);
    assert_true(edited);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    memset(&p, 0, sizeof p);
    assert_true(deja_store_verify(s, problem_cb, &p) >= 1);
    assert_true(has_line(&p, "store damaged at page", "keys out of order"));
    deja_store_close(s);
    cli_rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ix__readers),
        cmocka_unit_test(test_ix__iterator),
        cmocka_unit_test(test_ix__gc_removes_exactly),
        cmocka_unit_test(test_ix__verify_finds_damage),
        cmocka_unit_test(test_ix__format4_store),
        cmocka_unit_test(test_ix__format4_gc),
        cmocka_unit_test(test_ix__reader_sees_conversion),
        cmocka_unit_test(test_ix__ids_in_their_own_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
