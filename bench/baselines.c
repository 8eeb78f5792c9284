/*
 * bench/baselines.c -- what a user would otherwise reach for, each done the
 * way a careful user would do it, on the calling thread:
 *
 *   jsonl.zst  one JSON object per trace, newline-terminated, appended to
 *              one zstd stream (level 3, the zstd default) in one file;
 *              threads serialize on their own and share the stream under a
 *              mutex; durable after the frame is ended and fsync'd.
 *   sqlite     a table traces(id TEXT PRIMARY KEY, body TEXT) holding one
 *              JSON row per trace, WAL mode, synchronous=NORMAL, prepared
 *              insert, 1,000 rows per transaction, one shared connection;
 *              durable after COMMIT and a TRUNCATE checkpoint.
 *   lmdb-raw   the raw limit: already-serialized values (JSON header plus
 *              raw payload bytes, about the size of the record before any
 *              compression) put into LMDB, 1,024 per transaction, MDB_NOSYNC
 *              then one sync: no serialization, no compression, no index.
 */
#include <lmdb.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "bench.h"

/* The wall clock in Unix nanoseconds. */
static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Serialize `r` as a JSON trace with a fresh id into t->json. */
static int to_json(bench_thread *t, const bench_record *r, char id_text[27])
{
    uint8_t id[16];
    const int64_t start = realtime_ns();
    bench_id_new(id, t->salt, &t->counter);
    bench_id_format(id, id_text);
    return bench_json_record(&t->json, r, id_text, start, realtime_ns() - start);
}

/* ------------------------------------------------------------------------
 * jsonl.zst
 * ---------------------------------------------------------------------- */

typedef struct jsonl_sink {
    pthread_mutex_t mu;
    FILE *f;
    ZSTD_CCtx *cc;
    uint8_t *out;
    size_t out_cap;
    atomic_uint_fast64_t committed;
} jsonl_sink;

/* Create <dir>/traces.jsonl.zst and a level-3 stream. Returns 0 or -1. */
static int jsonl_open(bench_sink **out, const char *dir, const bench_workload *w)
{
    jsonl_sink *s = calloc(1, sizeof(*s));
    char path[4096];
    (void)w;
    if (s == NULL) {
        return -1;
    }
    snprintf(path, sizeof(path), "%s/traces.jsonl.zst", dir);
    pthread_mutex_init(&s->mu, NULL);
    s->f = fopen(path, "wb");
    s->cc = ZSTD_createCCtx();
    s->out_cap = ZSTD_CStreamOutSize();
    s->out = malloc(s->out_cap);
    if (s->f == NULL || s->cc == NULL || s->out == NULL ||
        ZSTD_isError(ZSTD_CCtx_setParameter(s->cc, ZSTD_c_compressionLevel, 3))) {
        if (s->f != NULL) {
            fclose(s->f);
        }
        ZSTD_freeCCtx(s->cc);
        free(s->out);
        free(s);
        return -1;
    }
    *out = (bench_sink *)s;
    return 0;
}

/* Feed `in` to the stream with `mode`, writing out whatever comes out. */
static int jsonl_feed(jsonl_sink *s, const void *data, size_t size, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {data, size, 0};
    for (;;) {
        ZSTD_outBuffer o = {s->out, s->out_cap, 0};
        const size_t left = ZSTD_compressStream2(s->cc, &o, &in, mode);
        if (ZSTD_isError(left)) {
            return -1;
        }
        if (o.pos > 0 && fwrite(s->out, 1, o.pos, s->f) != o.pos) {
            return -1;
        }
        if (mode == ZSTD_e_continue ? in.pos == in.size : left == 0) {
            return 0;
        }
    }
}

/* Serialize on the calling thread, then append to the stream under the lock. */
static int jsonl_record(bench_sink *sink, bench_thread *t, const bench_record *r)
{
    jsonl_sink *s = (jsonl_sink *)sink;
    char id[27];
    int rc;
    if (to_json(t, r, id) != 0 || bench_buf_reserve(&t->json, 1) != 0) {
        return -1;
    }
    t->json.data[t->json.size++] = '\n';
    pthread_mutex_lock(&s->mu);
    rc = jsonl_feed(s, t->json.data, t->json.size, ZSTD_e_continue);
    pthread_mutex_unlock(&s->mu);
    if (rc == 0) {
        atomic_fetch_add(&s->committed, 1);
    }
    return rc;
}

/* End the zstd frame, flush and fsync: everything so far is durable. */
static int jsonl_finish(bench_sink *sink)
{
    jsonl_sink *s = (jsonl_sink *)sink;
    int rc;
    pthread_mutex_lock(&s->mu);
    rc = jsonl_feed(s, NULL, 0, ZSTD_e_end);
    if (rc == 0 && (fflush(s->f) != 0 || fsync(fileno(s->f)) != 0)) {
        rc = -1;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Traces appended so far. */
static uint64_t jsonl_committed(bench_sink *sink)
{
    return atomic_load(&((jsonl_sink *)sink)->committed);
}

/* The baselines never drop a trace. */
static uint64_t no_loss(bench_sink *sink)
{
    (void)sink;
    return 0;
}

/* Close the file and free the stream. Accepts NULL. */
static void jsonl_close(bench_sink *sink)
{
    jsonl_sink *s = (jsonl_sink *)sink;
    if (s != NULL) {
        fclose(s->f);
        ZSTD_freeCCtx(s->cc);
        free(s->out);
        pthread_mutex_destroy(&s->mu);
        free(s);
    }
}

/* Decompress the stream and parse every line. */
static int64_t jsonl_read_all(const char *dir, const deja_id *ids, size_t nids, double *seconds)
{
    char path[4096];
    FILE *f;
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    const size_t in_cap = ZSTD_DStreamInSize();
    uint8_t *inb = malloc(in_cap);
    bench_buf line = {0}, scratch = {0};
    int64_t n = 0;
    double t0;
    size_t got;
    (void)ids;
    (void)nids;
    snprintf(path, sizeof(path), "%s/traces.jsonl.zst", dir);
    f = fopen(path, "rb");
    if (f == NULL || dc == NULL || inb == NULL || bench_buf_reserve(&line, 1 << 20) != 0) {
        n = -1;
        goto cleanup;
    }
    t0 = bench_now();
    while (n >= 0 && (got = fread(inb, 1, in_cap, f)) > 0) {
        ZSTD_inBuffer in = {inb, got, 0};
        while (in.pos < in.size) {
            ZSTD_outBuffer o;
            size_t start = 0, i;
            if (bench_buf_reserve(&line, 1 << 17) != 0) {
                n = -1;
                break;
            }
            o = (ZSTD_outBuffer){line.data + line.size, line.cap - line.size, 0};
            if (ZSTD_isError(ZSTD_decompressStream(dc, &o, &in))) {
                n = -1;
                break;
            }
            for (i = line.size; i < line.size + o.pos; i++) {
                if (line.data[i] == '\n') {
                    if (bench_json_decode(line.data + start, i - start, &scratch) != 0) {
                        n = -1;
                        break;
                    }
                    n++;
                    start = i + 1;
                }
            }
            if (n < 0) {
                break;
            }
            line.size += o.pos;
            memmove(line.data, line.data + start, line.size - start);
            line.size -= start;
        }
    }
    *seconds = bench_now() - t0;
cleanup:
    if (f != NULL) {
        fclose(f);
    }
    ZSTD_freeDCtx(dc);
    free(inb);
    bench_buf_free(&line);
    bench_buf_free(&scratch);
    return n;
}

const bench_sink_ops bench_sink_jsonl = {
    .name = "jsonl.zst",
    .open = jsonl_open,
    .record = jsonl_record,
    .finish = jsonl_finish,
    .committed = jsonl_committed,
    .lost = no_loss,
    .close = jsonl_close,
    .disk_bytes = bench_du,
    .read_all = jsonl_read_all,
};

/* ------------------------------------------------------------------------
 * sqlite
 * ---------------------------------------------------------------------- */

#define SQLITE_BATCH 1000

typedef struct sqlite_sink {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *ins;
    int in_txn;
    unsigned batch;
    atomic_uint_fast64_t committed;
} sqlite_sink;

/* Run one SQL statement; print SQLite's message and return -1 on failure. */
static int exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "deja-bench: sqlite: %s: %s\n", sql, err ? err : "?");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

/* Create <dir>/traces.db in WAL mode with the traces table. Returns 0 or -1. */
static int sqlite_open(bench_sink **out, const char *dir, const bench_workload *w)
{
    sqlite_sink *s = calloc(1, sizeof(*s));
    char path[4096];
    (void)w;
    if (s == NULL) {
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    snprintf(path, sizeof(path), "%s/traces.db", dir);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK ||
        exec(s->db, "PRAGMA journal_mode=WAL") != 0 ||
        exec(s->db, "PRAGMA synchronous=NORMAL") != 0 ||
        exec(s->db, "CREATE TABLE traces(id TEXT PRIMARY KEY, body TEXT NOT NULL)") != 0 ||
        sqlite3_prepare_v2(s->db, "INSERT INTO traces(id, body) VALUES (?1, ?2)", -1, &s->ins,
                           NULL) != SQLITE_OK) {
        sqlite3_close(s->db);
        free(s);
        return -1;
    }
    *out = (bench_sink *)s;
    return 0;
}

/* Serialize on the calling thread, then insert under the lock; every
 * SQLITE_BATCH rows the transaction is committed. */
static int sqlite_record(bench_sink *sink, bench_thread *t, const bench_record *r)
{
    sqlite_sink *s = (sqlite_sink *)sink;
    char id[27];
    int rc = 0;
    if (to_json(t, r, id) != 0) {
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    if (!s->in_txn) {
        rc = exec(s->db, "BEGIN");
        s->in_txn = rc == 0;
    }
    if (rc == 0) {
        sqlite3_bind_text(s->ins, 1, id, 26, SQLITE_STATIC);
        sqlite3_bind_text(s->ins, 2, t->json.data, (int)t->json.size, SQLITE_STATIC);
        rc = sqlite3_step(s->ins) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(s->ins);
    }
    if (rc == 0 && ++s->batch == SQLITE_BATCH) {
        rc = exec(s->db, "COMMIT");
        s->in_txn = 0;
        s->batch = 0;
    }
    pthread_mutex_unlock(&s->mu);
    if (rc == 0) {
        atomic_fetch_add(&s->committed, 1);
    }
    return rc;
}

/* Commit the open transaction and checkpoint the WAL into the database. */
static int sqlite_finish(bench_sink *sink)
{
    sqlite_sink *s = (sqlite_sink *)sink;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (s->in_txn) {
        rc = exec(s->db, "COMMIT");
        s->in_txn = 0;
        s->batch = 0;
    }
    if (rc == 0) {
        rc = exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)");
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Rows inserted so far. */
static uint64_t sqlite_committed(bench_sink *sink)
{
    return atomic_load(&((sqlite_sink *)sink)->committed);
}

/* Finalize and close. Accepts NULL. */
static void sqlite_close(bench_sink *sink)
{
    sqlite_sink *s = (sqlite_sink *)sink;
    if (s != NULL) {
        sqlite3_finalize(s->ins);
        sqlite3_close(s->db);
        pthread_mutex_destroy(&s->mu);
        free(s);
    }
}

/* Select every trace by id (the ids listed first, untimed), parse it. */
static int64_t sqlite_read_all(const char *dir, const deja_id *ids, size_t nids,
                               double *seconds)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *list = NULL, *get = NULL;
    char path[4096];
    char *keys = NULL;
    size_t nkeys = 0, cap = 0, i;
    bench_buf scratch = {0};
    int64_t n = -1;
    double t0;
    (void)ids;
    (void)nids;
    snprintf(path, sizeof(path), "%s/traces.db", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT id FROM traces ORDER BY id", -1, &list, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT body FROM traces WHERE id = ?1", -1, &get, NULL) !=
            SQLITE_OK) {
        goto cleanup;
    }
    while (sqlite3_step(list) == SQLITE_ROW) {
        if (nkeys == cap) {
            char *k = bench_array_grow(keys, &cap, 4096, 27);
            if (k == NULL) {
                goto cleanup;
            }
            keys = k;
        }
        snprintf(keys + nkeys * 27, 27, "%s", (const char *)sqlite3_column_text(list, 0));
        nkeys++;
    }
    n = 0;
    t0 = bench_now();
    for (i = 0; i < nkeys; i++) {
        sqlite3_bind_text(get, 1, keys + i * 27, 26, SQLITE_STATIC);
        if (sqlite3_step(get) != SQLITE_ROW ||
            bench_json_decode((const char *)sqlite3_column_text(get, 0),
                              (size_t)sqlite3_column_bytes(get, 0), &scratch) != 0) {
            n = -1;
            break;
        }
        sqlite3_reset(get);
        n++;
    }
    *seconds = bench_now() - t0;
cleanup:
    sqlite3_finalize(list);
    sqlite3_finalize(get);
    sqlite3_close(db);
    free(keys);
    bench_buf_free(&scratch);
    return n;
}

const bench_sink_ops bench_sink_sqlite = {
    .name = "sqlite",
    .open = sqlite_open,
    .record = sqlite_record,
    .finish = sqlite_finish,
    .committed = sqlite_committed,
    .lost = no_loss,
    .close = sqlite_close,
    .disk_bytes = bench_du,
    .read_all = sqlite_read_all,
};

/* ------------------------------------------------------------------------
 * lmdb-raw: the raw limit
 * ---------------------------------------------------------------------- */

#define LMDB_BATCH 1024

typedef struct lmdb_sink {
    MDB_env *env;
    MDB_dbi dbi;
    bench_buf *vals; /* one pre-serialized value per pool record */
    size_t nvals;
    atomic_uint_fast64_t committed;
} lmdb_sink;

/* Free the pre-serialized values and close the environment. */
static void lmdb_free(lmdb_sink *s)
{
    size_t i;
    for (i = 0; i < s->nvals; i++) {
        bench_buf_free(&s->vals[i]);
    }
    free(s->vals);
    if (s->env != NULL) {
        mdb_env_close(s->env);
    }
    free(s);
}

/* Pre-serialize one value per pool record (untimed), then create the
 * environment in `dir` with MDB_NOSYNC. Returns 0 or -1. */
static int lmdb_open(bench_sink **out, const char *dir, const bench_workload *w)
{
    lmdb_sink *s = calloc(1, sizeof(*s));
    MDB_txn *txn = NULL;
    size_t i;
    if (s == NULL) {
        return -1;
    }
    s->vals = calloc(w->nrecs ? w->nrecs : 1, sizeof(*s->vals));
    if (s->vals == NULL) {
        lmdb_free(s);
        return -1;
    }
    for (i = 0; i < w->nrecs; i++) {
        s->nvals++;
        if (bench_raw_record(&s->vals[i], &w->recs[i], "00000000000000000000000000") != 0) {
            lmdb_free(s);
            return -1;
        }
    }
    if (mdb_env_create(&s->env) != 0 || mdb_env_set_mapsize(s->env, (size_t)256 << 30) != 0 ||
        mdb_env_open(s->env, dir, MDB_NOSYNC, 0644) != 0 ||
        mdb_txn_begin(s->env, NULL, 0, &txn) != 0 || mdb_dbi_open(txn, NULL, 0, &s->dbi) != 0 ||
        mdb_txn_commit(txn) != 0) {
        lmdb_free(s);
        return -1;
    }
    *out = (bench_sink *)s;
    return 0;
}

/* Put the pool record's pre-serialized value under a fresh key into the
 * thread's own write transaction, committed every LMDB_BATCH puts. */
static int lmdb_record(bench_sink *sink, bench_thread *t, const bench_record *r)
{
    lmdb_sink *s = (lmdb_sink *)sink;
    uint8_t id[16];
    const bench_buf *v = &s->vals[t->pool_index % s->nvals];
    MDB_val key = {16, id}, val = {v->size, v->data};
    (void)r;
    bench_id_new(id, t->salt, &t->counter);
    if (t->txn == NULL && mdb_txn_begin(s->env, NULL, 0, (MDB_txn **)&t->txn) != 0) {
        t->txn = NULL;
        return -1;
    }
    if (mdb_put(t->txn, s->dbi, &key, &val, 0) != 0) {
        mdb_txn_abort(t->txn);
        t->txn = NULL;
        t->batch = 0;
        return -1;
    }
    if (++t->batch == LMDB_BATCH) {
        const int rc = mdb_txn_commit(t->txn);
        t->txn = NULL;
        t->batch = 0;
        if (rc != 0) {
            return -1;
        }
        atomic_fetch_add(&s->committed, LMDB_BATCH);
    }
    return 0;
}

/* Commit what the thread has in its open transaction. */
static int lmdb_thread_end(bench_sink *sink, bench_thread *t)
{
    lmdb_sink *s = (lmdb_sink *)sink;
    const unsigned batch = t->batch;
    int rc;
    if (t->txn == NULL) {
        return 0;
    }
    rc = mdb_txn_commit(t->txn);
    t->txn = NULL;
    t->batch = 0;
    if (rc == 0) {
        atomic_fetch_add(&s->committed, batch);
    }
    return rc == 0 ? 0 : -1;
}

/* Sync the environment to disk. */
static int lmdb_finish(bench_sink *sink)
{
    return mdb_env_sync(((lmdb_sink *)sink)->env, 1) == 0 ? 0 : -1;
}

/* Values committed so far. */
static uint64_t lmdb_committed(bench_sink *sink)
{
    return atomic_load(&((lmdb_sink *)sink)->committed);
}

/* Free the values and close. Accepts NULL. */
static void lmdb_close(bench_sink *sink)
{
    if (sink != NULL) {
        lmdb_free((lmdb_sink *)sink);
    }
}

/* Get every value by key (keys listed first, untimed) and copy it out. */
static int64_t lmdb_read_all(const char *dir, const deja_id *ids, size_t nids, double *seconds)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_dbi dbi;
    MDB_val k, v;
    uint8_t *keys = NULL;
    size_t nkeys = 0, cap = 0, i;
    bench_buf copy = {0};
    int64_t n = -1;
    double t0;
    (void)ids;
    (void)nids;
    if (mdb_env_create(&env) != 0 || mdb_env_set_mapsize(env, (size_t)256 << 30) != 0 ||
        mdb_env_open(env, dir, MDB_RDONLY, 0644) != 0 ||
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0 || mdb_dbi_open(txn, NULL, 0, &dbi) != 0 ||
        mdb_cursor_open(txn, dbi, &cur) != 0) {
        goto cleanup;
    }
    while (mdb_cursor_get(cur, &k, &v, nkeys == 0 ? MDB_FIRST : MDB_NEXT) == 0) {
        if (nkeys == cap) {
            uint8_t *p = bench_array_grow(keys, &cap, 4096, 16);
            if (p == NULL) {
                goto cleanup;
            }
            keys = p;
        }
        memcpy(keys + nkeys * 16, k.mv_data, 16);
        nkeys++;
    }
    n = 0;
    t0 = bench_now();
    for (i = 0; i < nkeys; i++) {
        k = (MDB_val){16, keys + i * 16};
        copy.size = 0;
        if (mdb_get(txn, dbi, &k, &v) != 0 || bench_buf_reserve(&copy, v.mv_size) != 0) {
            n = -1;
            break;
        }
        memcpy(copy.data, v.mv_data, v.mv_size);
        n++;
    }
    *seconds = bench_now() - t0;
cleanup:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (env != NULL) {
        mdb_env_close(env);
    }
    free(keys);
    bench_buf_free(&copy);
    return n;
}

const bench_sink_ops bench_sink_lmdb = {
    .name = "lmdb-raw",
    .open = lmdb_open,
    .record = lmdb_record,
    .thread_end = lmdb_thread_end,
    .finish = lmdb_finish,
    .committed = lmdb_committed,
    .lost = no_loss,
    .close = lmdb_close,
    .disk_bytes = bench_du,
    .read_all = lmdb_read_all,
};

/* The four systems, indexed by SYS_*. */
const bench_sink_ops *bench_sink_get(int sys)
{
    static const bench_sink_ops *const all[SYS_COUNT] = {&bench_sink_deja, &bench_sink_jsonl,
                                                          &bench_sink_sqlite, &bench_sink_lmdb};
    return sys >= 0 && sys < SYS_COUNT ? all[sys] : NULL;
}
