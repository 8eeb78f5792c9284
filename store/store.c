/*
 * store/store.c -- opening the LMDB store, transactions, map growth and the
 * write side (traces, blobs, environments, counters, indexes).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <zstd.h>

#include "store/store_internal.h"

#define INITIAL_MAP ((size_t)64 << 20)
#define MAX_DBS 24

/* Map the LMDB code `rc` to a deja code, set the message "WHAT: lmdb says"
 * and return the code. */
int deja__mdb_error(int rc, const char *what)
{
    int code = DEJA_EIO;

    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID)
        code = DEJA_ECORRUPT;
    else if (rc == MDB_VERSION_MISMATCH)
        code = DEJA_EVERSION;
    else if (rc == ENOMEM)
        code = DEJA_ENOMEM;
    return deja__error_set(code, "%s: %s", what, mdb_strerror(rc));
}

/* The error of a failed commit: a full file system is named as such
 * (LMDB may report it as EIO, from a write or an fsync). */
static int commit_error(const deja_store *store, int rc)
{
    struct statvfs vfs;

    if (rc == ENOSPC || ((rc == EIO || rc == EDQUOT) && statvfs(store->path, &vfs) == 0 &&
                         (uint64_t)vfs.f_bavail * vfs.f_frsize < ((uint64_t)1 << 20)))
        return deja__error_set(DEJA_EIO, "committing: no space left on device (store '%s')",
                               store->path);
    return deja__mdb_error(rc, "committing");
}

/* Take the resize lock exclusively and let LMDB adopt the size another
 * process gave the map (`size` 0) or grow it to `size`. Caller holds no
 * transaction of this handle. */
static int resize_map(deja_store *store, size_t size)
{
    int rc;

    if (pthread_rwlock_wrlock(&store->resize) != 0)
        return deja__error_set(DEJA_EIO, "store '%s': cannot lock for resize", store->path);
    rc = mdb_env_set_mapsize(store->env, size);
    store->map_gen++; /* the map may have moved, even on failure */
    pthread_rwlock_unlock(&store->resize);
    if (rc != 0)
        return deja__mdb_error(rc, "resizing the store map");
    return 0;
}

/* Begin a transaction (read-only when `flags` is MDB_RDONLY) holding the
 * resize lock shared; adopts a map grown by another process. On success the
 * caller ends it with txn_end(). */
static int txn_begin(deja_store *store, unsigned flags, MDB_txn **out)
{
    int rc;

    for (;;) {
        if (pthread_rwlock_rdlock(&store->resize) != 0)
            return deja__error_set(DEJA_EIO, "store '%s': cannot lock", store->path);
        rc = mdb_txn_begin(store->env, NULL, flags, out);
        if (rc == 0)
            return 0;
        pthread_rwlock_unlock(&store->resize);
        if (rc != MDB_MAP_RESIZED)
            return deja__mdb_error(rc, "beginning a transaction");
        rc = resize_map(store, 0);
        if (rc != 0)
            return rc;
    }
}

/* Begin a read transaction: renew one reset by deja__rtxn_end when the
 * handle keeps one (no allocation, and the reader slot is kept, so the lock
 * file's mutex is not taken), else begin a new one. */
int deja__rtxn_begin(deja_store *store, MDB_txn **out)
{
    MDB_txn *txn = NULL;
    int rc;

    if (pthread_rwlock_rdlock(&store->resize) != 0)
        return deja__error_set(DEJA_EIO, "store '%s': cannot lock", store->path);
    pthread_mutex_lock(&store->lock);
    if (store->nrtxn_pool > 0)
        txn = store->rtxn_pool[--store->nrtxn_pool];
    pthread_mutex_unlock(&store->lock);
    if (txn != NULL) {
        if (mdb_txn_renew(txn) == 0) {
            *out = txn;
            goto indexes;
        }
        mdb_txn_abort(txn); /* e.g. the map grew: begin anew below */
    }
    pthread_rwlock_unlock(&store->resize);
    rc = txn_begin(store, MDB_RDONLY, out);
    if (rc != 0)
        return rc;
indexes:
    /* A handle reading flat indexes learns of a writer's conversion. */
    if (!deja__ix_is_dup(store)) {
        deja__ix_refresh(store, out);
        if (*out == NULL) {
            pthread_rwlock_unlock(&store->resize);
            return deja__error_set(DEJA_EIO, "store '%s': cannot renew a read", store->path);
        }
    }
    return 0;
}

/* End a read transaction begun by deja__rtxn_begin and release the lock:
 * it is reset and kept for the next read when the pool has room, aborted
 * otherwise. Accepts NULL. */
void deja__rtxn_end(deja_store *store, MDB_txn *txn)
{
    if (txn == NULL)
        return;
    mdb_txn_reset(txn);
    pthread_mutex_lock(&store->lock);
    if (store->nrtxn_pool < DEJA__RTXN_POOL_MAX) {
        store->rtxn_pool[store->nrtxn_pool++] = txn;
        txn = NULL;
    }
    pthread_mutex_unlock(&store->lock);
    if (txn != NULL)
        mdb_txn_abort(txn);
    pthread_rwlock_unlock(&store->resize);
}

/* Abort the reset read transactions kept by the handle. */
static void rtxn_pool_free(deja_store *store)
{
    while (store->nrtxn_pool > 0)
        mdb_txn_abort(store->rtxn_pool[--store->nrtxn_pool]);
}

/* Read a little-endian u32 under `key` in meta. `*found` (may be NULL) says
 * whether it exists; `*out` is 0 when it does not. */
int deja__meta_u32(deja_store *store, MDB_txn *txn, const char *key, uint32_t *out, int *found)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    const uint8_t *p;
    int rc = mdb_get(txn, store->meta, &k, &v);

    *out = 0;
    if (found != NULL)
        *found = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return deja__mdb_error(rc, key);
    if (v.mv_size != 4)
        return deja__error_set(DEJA_ECORRUPT, "store '%s': meta '%s' has %zu bytes, not 4",
                               store->path, key, v.mv_size);
    p = v.mv_data;
    *out = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    if (found != NULL)
        *found = 1;
    return 0;
}

/* The little-endian u64 under `key` in meta, 0 when absent or malformed. */
uint64_t deja__meta_u64(deja_store *store, MDB_txn *txn, const char *key)
{
    MDB_val k = {strlen(key), (void *)key}, v;

    if (mdb_get(txn, store->meta, &k, &v) != 0 || v.mv_size != 8)
        return 0;
    return deja__le64_get(v.mv_data);
}

/* The little-endian u64 at `p`. */
uint64_t deja__le64_get(const void *p)
{
    const uint8_t *b = p;
    uint64_t x = 0;

    for (int i = 7; i >= 0; i--)
        x = x << 8 | b[i];
    return x;
}


static void put_le(uint8_t *p, uint64_t x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

/* Write `x` little-endian into the 8 bytes at `p`. */
void deja__le64_put(uint8_t *p, uint64_t x)
{
    put_le(p, x, 8);
}

/* Write `size` bytes under the key `key` of `dbi`, noting a full map. */
int deja__wtxn_put(deja__wtxn *w, MDB_dbi dbi, const void *key, size_t ksize, const void *data,
                   size_t size, unsigned flags, const char *what)
{
    MDB_val k = {ksize, (void *)key}, v = {size, (void *)data};
    int rc = mdb_put(w->txn, dbi, &k, &v, flags);

    if (rc == MDB_KEYEXIST && (flags & MDB_NOOVERWRITE))
        return 0;
    if (rc == MDB_MAP_FULL)
        w->map_full = 1;
    if (rc != 0)
        return deja__mdb_error(rc, what);
    return 0;
}

/* Write the u64 `value` under meta `key` in `w`. */
int deja__wtxn_meta_put_u64(deja__wtxn *w, const char *key, uint64_t value)
{
    uint8_t v[8];

    put_le(v, value, 8);
    return deja__wtxn_put(w, w->store->meta, key, strlen(key), v, 8, 0, "updating meta");
}

/* Add `delta` to the u64 counter meta "count/<name>" in `w`. */
int deja__wtxn_count_add(deja__wtxn *w, const char *name, uint64_t delta)
{
    char key[64];
    uint64_t x;

    if (delta == 0)
        return 0;
    snprintf(key, sizeof key, "count/%s", name);
    x = deja__meta_u64(w->store, w->txn, key) + delta;
    return deja__wtxn_meta_put_u64(w, key, x);
}

/* Open (creating when `create`) the named databases of the store in `txn`. */
static int open_dbs(deja_store *store, MDB_txn *txn, int create)
{
    static const char *const names[] = {"meta", "traces", "blobs", "envs"};
    MDB_dbi *dbis[] = {&store->meta, &store->traces, &store->blobs, &store->envs};
    int rc;

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        rc = mdb_dbi_open(txn, names[i], create ? MDB_CREATE : 0, dbis[i]);
        if (rc == MDB_NOTFOUND)
            return deja__error_set(DEJA_ECORRUPT,
                                   "store '%s' is not a deja store (database '%s' is missing)",
                                   store->path, names[i]);
        if (rc != 0)
            return deja__mdb_error(rc, names[i]);
    }
    rc = deja__ix_open(store, txn, create);
    if (rc != 0)
        return rc;
    /* A store written before chunking has no `chunks`: readable as it is. */
    rc = mdb_dbi_open(txn, "chunks", create ? MDB_CREATE : 0, &store->chunks);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return deja__mdb_error(rc, "chunks");
    store->has_chunks = rc == 0;
    /* Nor pins, before pinning: none is pinned then. */
    rc = mdb_dbi_open(txn, "pins", create ? MDB_CREATE : 0, &store->pins);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return deja__mdb_error(rc, "pins");
    store->has_pins = rc == 0;
    rc = mdb_dbi_open(txn, "repeats", create ? MDB_CREATE : 0, &store->repeats);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return deja__mdb_error(rc, "repeats");
    store->has_repeats = rc == 0;
    /* Empty but inside gc, which keeps there the traces deltas need. */
    rc = mdb_dbi_open(txn, "dead", create ? MDB_CREATE : 0, &store->dead);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return deja__mdb_error(rc, "dead");
    store->has_dead = rc == 0;
    return 0;
}

/* mkdir -p `path`, the last directory with `mode` (before the umask);
 * `*created` says whether this call created that last one. */
static int make_dirs(const char *path, mode_t mode, int *created)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof buf)
        return deja__error_set(DEJA_EINVAL, "store path '%s' is empty or too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, i == n ? mode : 0777) == 0)
            *created = i == n;
        else if (errno != EEXIST)
            return deja__error_set(DEJA_EIO, "store '%s': cannot create '%s': %s", path, buf,
                                   strerror(errno));
        buf[i] = i == n ? '\0' : '/';
    }
    return 0;
}

/* Check (and for a new writable store, write) the format version. */
static int check_format(deja_store *store, MDB_txn *txn)
{
    uint32_t format;
    int found, rc;
    uint8_t v[4];

    rc = deja__meta_u32(store, txn, "format", &format, &found);
    if (rc != 0)
        return rc;
    if (found && format > DEJA__FORMAT_VERSION)
        return deja__error_set(DEJA_EVERSION,
                               "store '%s' has format %u, this deja reads up to %d: upgrade deja",
                               store->path, format, DEJA__FORMAT_VERSION);
    /* An older store that a writer opens takes this format: its new trace
     * values carry refs (format 2) with a summary (format 4) and its chat
     * histories may be deltas (format 3), which older deja does not read;
     * its older values stay as they are, read too. Its indexes take the
     * dup layout (format 5, store/ix.h), converted in one transaction. */
    if (found && (format == DEJA__FORMAT_VERSION || !store->writable))
        return 0;
    /* Flat indexes holding entries: the conversion writes the format. */
    if (found && store->ix_upgrade)
        return 0;
    if (!found && !store->writable)
        return deja__error_set(DEJA_ECORRUPT, "store '%s' has no format version", store->path);
    put_le(v, DEJA__FORMAT_VERSION, 4);
    {
        MDB_val k = {6, "format"}, val = {4, v};

        rc = mdb_put(txn, store->meta, &k, &val, 0);
    }
    if (rc != 0)
        return deja__mdb_error(rc, "writing the format version");
    return 0;
}

/* Open the store at `path`: READONLY never creates anything and fails with
 * DEJA_ENOTFOUND when the store is missing; WRITE creates the directory and
 * databases. DEJA__STORE_NOSYNC leaves syncing to deja__store_sync. */
int deja_store_open(deja_store **out, const char *path, int flags)
{
    deja_store *store = NULL;
    MDB_txn *txn = NULL;
    MDB_envinfo info;
    char data_path[PATH_MAX];
    struct stat st;
    unsigned mflags = MDB_NOTLS;
    const int shared = deja__store_shared(flags);
    int rc = 0, locks = 0, dead, exists = 0, fd = -1;

    *out = NULL;
    if (path == NULL || *path == '\0')
        return deja__error_set(DEJA_EINVAL, "store path is empty");
    if ((size_t)snprintf(data_path, sizeof data_path, "%s/data.mdb", path) >= sizeof data_path)
        return deja__error_set(DEJA_EINVAL, "store path '%s' is too long", path);
    if (!(flags & DEJA_STORE_WRITE)) {
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || lstat(data_path, &st) != 0)
            return deja__error_set(DEJA_ENOTFOUND, "store '%s' does not exist", path);
        mflags |= MDB_RDONLY;
        rc = deja__store_files_check(path, 0, &exists);
        if (rc != 0)
            return rc;
    } else {
        int created = 0;
        rc = make_dirs(path, shared ? 0777 : 0700, &created);
        if (rc == 0)
            rc = deja__store_files_check(path, 1, &exists);
        if (rc == 0 && !exists)
            rc = deja__store_files_prepare(path, shared);
        if (rc != 0) {
            /* A store that could not be created leaves nothing behind (a
             * full disk): the directory made here goes again if empty. */
            if (created)
                rmdir(path);
            return rc;
        }
    }
    if (flags & DEJA__STORE_NOSYNC)
        mflags |= MDB_NOSYNC;

    store = calloc(1, sizeof *store);
    if (store != NULL)
        store->writer_lock = -1;
    if (store == NULL || (store->path = strdup(path)) == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "store '%s': out of memory", path);
        goto cleanup;
    }
    store->writable = (flags & DEJA_STORE_WRITE) != 0;
    if (store->writable && (rc = deja__store_writer_lock(path, &store->writer_lock)) != 0)
        goto cleanup;
    if (pthread_rwlock_init(&store->resize, NULL) != 0) {
        rc = deja__error_set(DEJA_EIO, "store '%s': cannot create a lock", path);
        goto cleanup;
    }
    locks = 1;
    if (pthread_mutex_init(&store->lock, NULL) != 0) {
        rc = deja__error_set(DEJA_EIO, "store '%s': cannot create a lock", path);
        goto cleanup;
    }
    locks = 2;
    if (pthread_mutex_init(&store->wlock, NULL) != 0) {
        rc = deja__error_set(DEJA_EIO, "store '%s': cannot create a lock", path);
        goto cleanup;
    }
    locks = 3;
    rc = mdb_env_create(&store->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(store->env, MAX_DBS);
    if (rc != 0) {
        rc = deja__mdb_error(rc, "creating the LMDB environment");
        goto cleanup;
    }
    rc = mdb_env_open(store->env, path, mflags, shared ? 0666 : 0600);
    if (rc == EACCES || rc == EROFS || rc == EPERM) {
        if (!(mflags & MDB_RDONLY)) {
            rc = deja__error_set(DEJA_EIO, "store '%s': %s (no write access)", path,
                                 mdb_strerror(rc));
            goto cleanup;
        }
        /* A reader without write access to lock.mdb (another user's store, a
         * read-only copy): read without LMDB's locks. */
        mdb_env_close(store->env);
        store->env = NULL;
        rc = mdb_env_create(&store->env);
        if (rc == 0)
            rc = mdb_env_set_maxdbs(store->env, MAX_DBS);
        if (rc == 0)
            rc = mdb_env_open(store->env, path, mflags | MDB_NOLOCK, 0600);
        if (rc == 0)
            store->nolock = 1;
    }
    if (rc != 0) {
        rc = deja__error_set(rc == ENOENT ? DEJA_ENOTFOUND : rc == ENOSPC ? DEJA_EIO : DEJA_EIO,
                             "store '%s': %s", path,
                             rc == ENOSPC ? "no space left on device" : mdb_strerror(rc));
        goto cleanup;
    }
    if (mdb_env_get_fd(store->env, &fd) == 0 && (rc = deja__store_files_recheck(path, fd)) != 0)
        goto cleanup;
    mdb_reader_check(store->env, &dead);
    if (store->writable) {
        rc = mdb_env_info(store->env, &info);
        if (rc == 0 && info.me_mapsize < INITIAL_MAP)
            rc = mdb_env_set_mapsize(store->env, INITIAL_MAP);
        store->map_gen++;
        if (rc != 0) {
            rc = deja__mdb_error(rc, "setting the map size");
            goto cleanup;
        }
        store->cctx = ZSTD_createCCtx();
        if (store->cctx == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "store '%s': out of memory", path);
            goto cleanup;
        }
    }
    rc = txn_begin(store, store->writable ? 0 : MDB_RDONLY, &txn);
    if (rc != 0)
        goto cleanup;
    rc = open_dbs(store, txn, store->writable);
    if (rc == 0)
        rc = check_format(store, txn);
    if (rc != 0) {
        mdb_txn_abort(txn);
    } else {
        rc = mdb_txn_commit(txn);
        if (rc != 0)
            rc = deja__mdb_error(rc, "opening the store");
    }
    pthread_rwlock_unlock(&store->resize);
    /* Flat indexes holding entries, found by a writer: converted now, in
     * one transaction (see store/ix.h), which also writes the format. */
    if (rc == 0 && store->ix_upgrade)
        rc = deja__ix_upgrade(store);
    if (rc != 0)
        goto cleanup;
    *out = store;
    store = NULL;

cleanup:
    if (store != NULL) {
        if (store->env != NULL)
            mdb_env_close(store->env);
        ZSTD_freeCCtx(store->cctx);
        if (locks >= 3)
            pthread_mutex_destroy(&store->wlock);
        if (locks >= 2)
            pthread_mutex_destroy(&store->lock);
        if (locks >= 1)
            pthread_rwlock_destroy(&store->resize);
        if (store->writer_lock >= 0)
            close(store->writer_lock);
        free(store->path);
        free(store);
    }
    return rc;
}

/* Whether `store` reads without LMDB's locks; see deja.h. */
int deja_store_unlocked(const deja_store *store)
{
    return store != NULL && store->nolock;
}

/* Close the store and free its caches. Accepts NULL. */
void deja_store_close(deja_store *store)
{
    if (store == NULL)
        return;
    deja__record_cleanup(store);
    deja__chunk_cache_free(store);
    deja__delta_free(store);
    rtxn_pool_free(store);
    mdb_env_close(store->env);
    ZSTD_freeCCtx(store->cctx);
    deja__buf_free(&store->samples);
    free(store->sample_sizes);
    pthread_mutex_destroy(&store->wlock);
    pthread_mutex_destroy(&store->lock);
    pthread_rwlock_destroy(&store->resize);
    if (store->writer_lock >= 0)
        close(store->writer_lock);
    free(store->path);
    free(store);
}

/* Flush LMDB's buffers of a store opened with DEJA__STORE_NOSYNC. */
int deja__store_sync(deja_store *store)
{
    int rc = mdb_env_sync(store->env, 1);

    if (rc != 0)
        return deja__mdb_error(rc, "syncing the store");
    return 0;
}

/* Write the byte counters gathered by `w` into meta. */
static int flush_counters(deja__wtxn *w)
{
    int rc = deja__wtxn_count_add(w, "raw_bytes", w->raw_bytes);

    if (rc == 0)
        rc = deja__wtxn_count_add(w, "unique_bytes", w->unique_bytes);
    if (rc == 0)
        rc = deja__wtxn_count_add(w, "stored_bytes", w->stored_bytes);
    return rc;
}

/* Run `fill` inside one write transaction and commit it. On a full map the
 * transaction is aborted, the map doubled and `fill` run again. If `fill`
 * fails nothing is written and its code is returned. */
int deja__store_write(deja_store *store, deja__fill_fn fill, void *payload)
{
    deja__wtxn w;
    MDB_envinfo info;
    size_t nsamples, samples_size;
    int rc;

    if (!store->writable)
        return deja__error_set(DEJA_EINVAL, "store '%s' is open read-only", store->path);
    pthread_mutex_lock(&store->wlock);
    nsamples = store->nsamples;
    samples_size = store->samples.size;
    memset(&w, 0, sizeof w);
    for (;;) {
        deja__buf_free(&w.scratch);
        memset(&w, 0, sizeof w);
        w.store = store;
        rc = txn_begin(store, 0, &w.txn);
        if (rc != 0)
            break;
        rc = fill(&w, payload);
        if (rc == 0)
            rc = deja__dict_maybe_train(&w);
        if (rc == 0)
            rc = flush_counters(&w);
        if (rc == 0) {
            int mrc = mdb_txn_commit(w.txn);

            if (mrc == MDB_MAP_FULL)
                w.map_full = 1;
            if (mrc != 0)
                rc = commit_error(store, mrc);
        } else {
            mdb_txn_abort(w.txn);
        }
        pthread_rwlock_unlock(&store->resize);
        if (rc == 0 && w.trained_id != 0)
            atomic_store(&store->dict_hint, w.trained_id);
        else if (rc == 0 && w.dict_loaded)
            atomic_store(&store->dict_hint, w.dict_id);
        if (rc == 0 && w.drop_samples)
            deja__dict_samples_drop(store);
        if (rc == 0 || !w.map_full)
            break;
        /* Forget the samples of the aborted attempt; fill runs again. */
        store->nsamples = nsamples;
        store->samples.size = samples_size;
        rc = mdb_env_info(store->env, &info);
        if (rc != 0) {
            rc = deja__mdb_error(rc, "reading the map size");
            break;
        }
        if (info.me_mapsize > SIZE_MAX / 2) {
            rc = deja__error_set(DEJA_ENOMEM, "store '%s': map cannot grow", store->path);
            break;
        }
        rc = resize_map(store, info.me_mapsize * 2);
        if (rc != 0)
            break;
    }
    if (rc != 0 && store->nsamples > nsamples) {
        store->nsamples = nsamples;
        store->samples.size = samples_size;
    }
    deja__buf_free(&w.scratch);
    pthread_mutex_unlock(&store->wlock);
    return rc;
}

/* The current dictionary of this transaction, read once per transaction so
 * that one trained by another process is seen. */
static int wtxn_dict(deja__wtxn *w)
{
    int rc;

    if (w->dict_loaded)
        return 0;
    rc = deja__meta_u32(w->store, w->txn, "dict.current", &w->dict_id, NULL);
    if (rc == 0)
        w->dict_loaded = 1;
    return rc;
}

/* Store `data` as the record under `key` in `dbi` (NOOVERWRITE), compressed
 * with `dict_id`, counting unique and stored bytes. */
static int put_record(deja__wtxn *w, MDB_dbi dbi, const void *key, size_t ksize, const void *data,
                      size_t size, uint32_t dict_id, const char *what)
{
    int rc = deja__record_encode(w, data, size, dict_id, &w->scratch);

    if (rc == 0)
        rc = deja__wtxn_put(w, dbi, key, ksize, w->scratch.data, w->scratch.size, MDB_NOOVERWRITE, what);
    if (rc == 0) {
        w->unique_bytes += size;
        w->stored_bytes += w->scratch.size;
    }
    return rc;
}

/* Whether `key` is in `dbi` within the write transaction: 1 present, 0
 * absent, or a negative code naming `what` ("reading a blob"). */
static int present(deja__wtxn *w, MDB_dbi dbi, const void *key, size_t len, const char *what)
{
    MDB_val k = {len, (void *)key}, v;
    const int rc = mdb_get(w->txn, dbi, &k, &v);

    if (rc == 0)
        return 1;
    return rc == MDB_NOTFOUND ? 0 : deja__mdb_error(rc, what);
}

/* Store the payload `data` of `size` bytes as chunks (each stored once,
 * with the current dictionary) and its chunk list under `key` in blobs. */
static int put_chunked(deja__wtxn *w, const uint8_t *data, size_t size, const deja_digest *key)
{
    deja__buf list = {0};
    deja_digest d;
    size_t off = 0, n;
    int rc = deja__chunked_begin(&list, size);

    while (rc == 0 && off < size) {
        n = deja__chunk_next(data + off, size - off);
        d = deja_digest_of(data + off, n);
        rc = present(w, w->store->chunks, d.bytes, 16, "reading a chunk");
        if (rc == 0)
            rc = put_record(w, w->store->chunks, d.bytes, 16, data + off, n, w->dict_id,
                            "writing a chunk");
        else if (rc == 1)
            rc = 0;
        if (rc == 0)
            rc = deja__chunked_add(&list, n, &d);
        off += n;
    }
    if (rc == 0)
        rc = deja__wtxn_put(w, w->store->blobs, key->bytes, 16, list.data, list.size, MDB_NOOVERWRITE,
                  "writing a blob");
    if (rc == 0) {
        w->unique_bytes += list.size;
        w->stored_bytes += list.size;
    }
    deja__buf_free(&list);
    return rc;
}

static int put_blob_digest(deja__wtxn *w, const void *data, size_t size, const deja_digest *out,
                           const deja_trace *trace);

/* Store a payload once under its digest: cut into content-defined chunks
 * when it holds more than one, else whole; with the current dictionary. */
int deja__wtxn_put_blob(deja__wtxn *w, const void *data, size_t size, deja_digest *out)
{
    *out = deja_digest_of(data, size);
    return put_blob_digest(w, data, size, out, NULL);
}

/* Store `data` whole under `out` (absent from the blobs). */
static int put_blob_whole(deja__wtxn *w, const void *data, size_t size, const deja_digest *out)
{
    int rc = wtxn_dict(w);

    if (rc != 0)
        return rc;
    if (size > DEJA__MAX_RECORD)
        return deja__error_set(DEJA_ENOMEM, "a blob of %zu bytes is beyond the bound of %zu", size,
                               DEJA__MAX_RECORD);
    if (deja__chunk_next(data, size) < size)
        return put_chunked(w, data, size, out);
    return put_record(w, w->store->blobs, out->bytes, sizeof out->bytes, data, size, w->dict_id,
                      "writing a blob");
}

/* Store a payload once under `out`, its digest computed already; an input
 * of `trace` (may be NULL) as a delta against its parent when it has one
 * (store/delta.c). */
static int put_blob_digest(deja__wtxn *w, const void *data, size_t size, const deja_digest *out,
                           const deja_trace *trace)
{
    int rc;

    w->raw_bytes += size;
    rc = present(w, w->store->blobs, out->bytes, sizeof out->bytes, "reading a blob");
    if (rc != 0)
        return rc < 0 ? rc : 0;
    if (trace != NULL) {
        rc = deja__delta_put(w, trace, data, size, out);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    return put_blob_whole(w, data, size, out);
}

/* Replace a blob's value with its payload stored whole (gc, for a delta
 * whose parent it deletes). */
int deja__wtxn_blob_rewrite(deja__wtxn *w, const void *data, size_t size,
                            const deja_digest *digest)
{
    MDB_val k = {16, (void *)digest->bytes};
    int rc = mdb_del(w->txn, w->store->blobs, &k, NULL);

    if (rc == MDB_MAP_FULL)
        w->map_full = 1;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return deja__mdb_error(rc, "rewriting a blob");
    return put_blob_whole(w, data, size, digest);
}

/* Store an environment once under the digest of its canonical encoding. */
int deja__wtxn_put_env(deja__wtxn *w, const deja_env *env, deja_digest *out)
{
    deja__buf enc = {0};
    int rc;

    rc = deja__env_encode(env, &enc);
    if (rc != 0)
        goto cleanup;
    *out = deja_digest_of(enc.data, enc.size);
    w->raw_bytes += enc.size;
    rc = present(w, w->store->envs, out->bytes, sizeof out->bytes, "reading an environment");
    if (rc != 0) {
        rc = rc < 0 ? rc : 0;
        goto cleanup;
    }
    rc = wtxn_dict(w);
    if (rc == 0)
        rc = put_record(w, w->store->envs, out->bytes, sizeof out->bytes, enc.data, enc.size,
                        w->dict_id, "writing an environment");

cleanup:
    deja__buf_free(&enc);
    return rc;
}

/* Store the environment `env` whose digest is `digest` unless it is already
 * there: a lookup, and the encoding only when it is absent. */
int deja__wtxn_ensure_env(deja__wtxn *w, const deja_env *env, const deja_digest *digest)
{
    deja_digest d;
    int rc = present(w, w->store->envs, digest->bytes, sizeof digest->bytes,
                     "reading an environment");

    if (rc != 0)
        return rc < 0 ? rc : 0;
    return deja__wtxn_put_env(w, env, &d);
}

/* What the encoder's blob callback of deja__wtxn_put_trace keeps: the
 * digests of the payloads it stored, for the trace's refs. */
typedef struct blob_put_state {
    deja__wtxn *w;
    const deja_trace *trace;
    deja__buf digests;
    uint64_t bytes;
} blob_put_state;

/* Blob callback of the trace encoder: store the payload in the same
 * transaction and note its digest. */
static int blob_put_cb(const void *data, size_t size, deja_digest *out, void *payload)
{
    blob_put_state *b = payload;
    int rc;

    *out = deja_digest_of(data, size);
    rc = put_blob_digest(b->w, data, size, out, b->trace);
    if (rc == 0 && deja__buf_append(&b->digests, out->bytes, 16) != 0)
        rc = deja__error_set(DEJA_ENOMEM, "out of memory noting a blob");
    b->bytes += size;
    return rc;
}

/* Put the trace value refs + record (`refs`, `nrefs`; `rec`, `nrec`) under
 * the id of `trace`, NOOVERWRITE, written in place. */
static int put_trace_value(deja__wtxn *w, const deja_trace *trace, const void *refs, size_t nrefs,
                           const void *rec, size_t nrec)
{
    MDB_val k = {16, (void *)trace->id.bytes}, v = {nrefs + nrec, NULL};
    /* Ids are time-ordered, so a new trace nearly always goes last: with
     * MDB_APPEND, LMDB leaves the full page full and starts a new one
     * instead of splitting it in halves that sequential keys never fill
     * again. A key that is not past the last one is refused with
     * MDB_KEYEXIST, and is then put in its place. */
    int rc = mdb_put(w->txn, w->store->traces, &k, &v, MDB_APPEND | MDB_RESERVE);

    if (rc == MDB_KEYEXIST) {
        v.mv_size = nrefs + nrec;
        rc = mdb_put(w->txn, w->store->traces, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
    }
    if (rc == MDB_KEYEXIST)
        return 0;
    if (rc == MDB_MAP_FULL)
        w->map_full = 1;
    if (rc != 0)
        return deja__mdb_error(rc, "writing a trace");
    memcpy(v.mv_data, refs, nrefs);
    memcpy((uint8_t *)v.mv_data + nrefs, rec, nrec);
    w->stored_bytes += nrefs + nrec;
    return 0;
}

/* What put_index_entry writes with: the transaction and the trace's id. */
typedef struct ix_put {
    deja__wtxn *w;
    const deja_id *id;
} ix_put;

/* deja__ix_each callback of put_indexes: write one entry. */
static int put_index_entry(deja__ix_kind kind, const uint8_t *key, size_t n, const char *what,
                           void *payload)
{
    const ix_put *p = payload;

    (void)what;
    return deja__ix_put(p->w, kind, key, n, p->id);
}

/* Add the index entries of `trace`. */
static int put_indexes(deja__wtxn *w, const deja_trace *trace)
{
    ix_put p = {w, &trace->id};

    return deja__ix_each(w->store, trace, put_index_entry, &p);
}

/* Store one trace (blobs, record, indexes) unless its id is present. */
int deja__wtxn_put_trace(deja__wtxn *w, const deja_trace *trace, int *added)
{
    deja__buf enc = {0}, refs = {0};
    blob_put_state b = {w, trace, {0}, 0};
    char idtext[DEJA_ID_STRLEN + 1];
    int rc;

    if (added != NULL)
        *added = 0;
    rc = present(w, w->store->traces, trace->id.bytes, 16, "reading a trace");
    if (rc != 0)
        return rc < 0 ? rc : 0;
    rc = wtxn_dict(w);
    if (rc != 0)
        goto cleanup;
    rc = deja__trace_encode(trace, DEJA__INLINE_MAX, blob_put_cb, &b, &enc);
    if (rc != 0)
        goto cleanup;
    w->raw_bytes += enc.size;
    if (w->dict_id == 0)
        deja__dict_sample(w, enc.data, enc.size);
    rc = deja__refs_encode(trace, b.digests.data, b.digests.size / 16, enc.size + b.bytes, &refs);
    if (rc == 0)
        rc = deja__record_encode(w, enc.data, enc.size, w->dict_id, &w->scratch);
    if (rc == 0)
        rc = put_trace_value(w, trace, refs.data, refs.size, w->scratch.data, w->scratch.size);
    if (rc == 0) {
        w->unique_bytes += enc.size;
        rc = put_indexes(w, trace);
    }
    if (rc == 0)
        deja__delta_note(w, trace);
    if (rc == 0 && added != NULL)
        *added = 1;

cleanup:
    if (rc != 0) {
        deja_id_format(&trace->id, idtext);
        deja__error_wrap(rc, "trace %s: ", idtext);
    }
    deja__buf_free(&enc);
    deja__buf_free(&refs);
    deja__buf_free(&b.digests);
    return rc;
}

/* Add to the store-wide tracer counters. */
int deja__wtxn_count(deja__wtxn *w, uint64_t dropped, uint64_t sampled_out, uint64_t redacted)
{
    int rc = deja__wtxn_count_add(w, "dropped", dropped);

    if (rc == 0)
        rc = deja__wtxn_count_add(w, "sampled_out", sampled_out);
    if (rc == 0)
        rc = deja__wtxn_count_add(w, "redacted", redacted);
    return rc;
}

/* Free the buffers of a prepared trace. Accepts NULL. */
void deja__prepared_free(deja__prepared *p)
{
    if (p == NULL)
        return;
    deja__buf_free(&p->enc);
    deja__buf_free(&p->rec);
    deja__buf_free(&p->refs);
    deja__buf_free(&p->digests);
    free(p->blobs);
    memset(p, 0, sizeof *p);
}

/* A compression context for preparing traces. */
void *deja__cctx_new(void)
{
    return ZSTD_createCCtx();
}

void deja__cctx_free(void *cctx)
{
    ZSTD_freeCCtx(cctx);
}

/* Blob callback of the trace encoder when preparing: digest the payload and
 * remember it for deja__wtxn_put_prepared. */
static int blob_note_cb(const void *data, size_t size, deja_digest *out, void *payload)
{
    deja__prepared *p = payload;

    if (p->nblobs == p->cap_blobs) {
        size_t cap = p->cap_blobs != 0 ? p->cap_blobs * 2 : 8;
        deja__prep_blob *grown =
            cap < SIZE_MAX / sizeof *grown ? realloc(p->blobs, cap * sizeof *grown) : NULL;

        if (grown == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory for %zu blobs", cap);
        p->blobs = grown;
        p->cap_blobs = cap;
    }
    *out = deja_digest_of(data, size);
    p->blobs[p->nblobs++] = (deja__prep_blob){data, size, *out};
    return 0;
}

/* Encode and compress a trace outside any transaction. */
int deja__store_prepare_trace(deja_store *store, void *cctx, const deja_trace *trace,
                              deja__prepared *p)
{
    const uint32_t dict_id = atomic_load(&store->dict_hint);
    void *cdict = NULL;
    char idtext[DEJA_ID_STRLEN + 1];
    int rc;

    p->nblobs = 0;
    p->rec.size = 0;
    rc = deja__trace_encode(trace, DEJA__INLINE_MAX, blob_note_cb, p, &p->enc);
    if (rc == 0 && dict_id != 0)
        rc = deja__dict_cdict(store, dict_id, &cdict);
    if (rc == 0)
        rc = deja__record_encode_cctx(cctx, cdict, dict_id, p->enc.data, p->enc.size, &p->rec);
    if (rc == 0) {
        uint64_t raw = p->enc.size;

        p->refs.size = p->digests.size = 0;
        for (size_t i = 0; rc == 0 && i < p->nblobs; i++) {
            raw += p->blobs[i].size;
            if (deja__buf_append(&p->digests, p->blobs[i].digest.bytes, 16) != 0)
                rc = deja__error_set(DEJA_ENOMEM, "out of memory noting a blob");
        }
        if (rc == 0)
            rc = deja__refs_encode(trace, p->digests.data, p->nblobs, raw, &p->refs);
    }
    if (rc != 0) {
        deja_id_format(&trace->id, idtext);
        deja__error_wrap(rc, "trace %s: ", idtext);
    }
    p->rc = rc;
    return rc;
}

/* Store a prepared trace (blobs, record, indexes) unless its id is present. */
int deja__wtxn_put_prepared(deja__wtxn *w, const deja_trace *trace, const deja__prepared *p,
                            int *added)
{
    char idtext[DEJA_ID_STRLEN + 1];
    int rc;

    if (added != NULL)
        *added = 0;
    if (p->rc != 0)
        return deja__wtxn_put_trace(w, trace, added);
    rc = present(w, w->store->traces, trace->id.bytes, 16, "reading a trace");
    if (rc != 0)
        return rc < 0 ? rc : 0;
    rc = wtxn_dict(w);
    for (size_t i = 0; rc == 0 && i < p->nblobs; i++)
        rc = put_blob_digest(w, p->blobs[i].data, p->blobs[i].size, &p->blobs[i].digest, trace);
    if (rc != 0)
        goto cleanup;
    w->raw_bytes += p->enc.size;
    if (w->dict_id == 0)
        deja__dict_sample(w, p->enc.data, p->enc.size);
    rc = put_trace_value(w, trace, p->refs.data, p->refs.size, p->rec.data, p->rec.size);
    if (rc == 0) {
        w->unique_bytes += p->enc.size;
        rc = put_indexes(w, trace);
    }
    if (rc == 0)
        deja__delta_note(w, trace);
    if (rc == 0 && added != NULL)
        *added = 1;

cleanup:
    if (rc != 0) {
        deja_id_format(&trace->id, idtext);
        deja__error_wrap(rc, "trace %s: ", idtext);
    }
    return rc;
}
