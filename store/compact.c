/*
 * store/compact.c -- the writers' lock and `deja compact`.
 *
 * Every handle that opens a store for writing holds a shared flock(2) on
 * STORE/writer.lock for its lifetime. Compaction takes it exclusively without
 * waiting, so it is refused while any writer is open and, while it runs,
 * writers that open the store wait. It copies the live pages with
 * mdb_env_copy2(MDB_CP_COMPACT) into a sibling directory, checks the copy,
 * then exchanges the two directories in one renameat2(RENAME_EXCHANGE): a
 * process opening the store gets the old one or the new one, whole, with
 * the LMDB lock file that belongs to it. Readers already open keep their
 * (unlinked) old files until they close them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store_internal.h"

#define WRITER_LOCK "writer.lock"

/* The mode of the store's files, for writer.lock: lock.mdb's (0600 for a
 * private store, 0666 less the umask for a shared one), 0600 without it. */
static mode_t files_mode(const char *path)
{
    char file[PATH_MAX];
    struct stat st;

    if ((size_t)snprintf(file, sizeof file, "%s/lock.mdb", path) < sizeof file &&
        lstat(file, &st) == 0 && S_ISREG(st.st_mode))
        return st.st_mode & 0666;
    return 0600;
}

/* Open STORE/writer.lock and flock it with `op` (LOCK_SH or LOCK_EX, maybe
 * with LOCK_NB). Retries when the file it locked was replaced meanwhile (a
 * compaction exchanged the directory). Returns the descriptor, or -1 with
 * errno set. */
static int lock_writers(const char *path, int op)
{
    char file[PATH_MAX];

    if ((size_t)snprintf(file, sizeof file, "%s/" WRITER_LOCK, path) >= sizeof file) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (;;) {
        struct stat held, now;
        const int fd = open(file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, files_mode(path));
        if (fd < 0)
            return -1;
        if (flock(fd, op) != 0) {
            const int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
        if (fstat(fd, &held) == 0 && stat(file, &now) == 0 && held.st_ino == now.st_ino &&
            held.st_dev == now.st_dev)
            return fd;
        close(fd); /* locked a file no longer in place: lock the new one */
    }
}

/* Take the writers' lock, shared, for a store opened for writing. */
int deja__store_writer_lock(const char *path, int *fd)
{
    *fd = lock_writers(path, LOCK_SH);
    if (*fd < 0)
        return deja__error_set(DEJA_EIO, "store '%s': cannot lock %s: %s", path, WRITER_LOCK,
                               strerror(errno));
    return 0;
}

/* The file size and the free bytes inside it; see deja.h. */
int deja_store_space(deja_store *store, uint64_t *file_bytes, uint64_t *free_bytes)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_envinfo info;
    MDB_stat st;
    MDB_val k, v;
    uint64_t freelist = 0;
    struct stat fs;
    char path[PATH_MAX];
    int rc;

    *file_bytes = 0;
    *free_bytes = 0;
    snprintf(path, sizeof path, "%s/data.mdb", store->path);
    if (stat(path, &fs) == 0)
        *file_bytes = (uint64_t)fs.st_size;
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    /* Pages on LMDB's free list (database 0): each value is a page list
     * whose first word is its length. */
    rc = mdb_cursor_open(txn, 0, &cur);
    for (MDB_cursor_op op = MDB_FIRST; rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        size_t n = 0;
        if (v.mv_size >= sizeof(size_t))
            memcpy(&n, v.mv_data, sizeof n);
        freelist += n;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    mdb_cursor_close(cur);
    if (rc == 0)
        rc = mdb_env_info(store->env, &info);
    if (rc == 0)
        rc = mdb_env_stat(store->env, &st);
    deja__rtxn_end(store, txn);
    if (rc != 0)
        return deja__mdb_error(rc, "reading the store's free space");
    {
        /* The pages in use end at me_last_pgno; the file may be longer. */
        const uint64_t used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
        const uint64_t tail = *file_bytes > used ? *file_bytes - used : 0;
        *free_bytes = freelist * st.ms_psize + tail;
    }
    return 0;
}

/* rm of a store directory deja made: its files, then itself. */
static void remove_store_dir(const char *dir)
{
    static const char *const files[] = {"data.mdb", "lock.mdb", WRITER_LOCK};
    char p[PATH_MAX];

    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, files[i]) < sizeof p)
            unlink(p);
    }
    rmdir(dir);
}

/* fsync the file or directory at `path`; 0 or -1. */
static int sync_path(const char *path, int flags)
{
    const int fd = open(path, flags | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* The compacting copy, run on a thread of its own while the caller's
 * thread reports progress. */
typedef struct copy_job {
    MDB_env *env;
    const char *dir;
    int rc;
    atomic_int finished;
} copy_job;

static void *copy_thread(void *arg)
{
    copy_job *j = arg;

    j->rc = mdb_env_copy2(j->env, j->dir, MDB_CP_COMPACT);
    atomic_store(&j->finished, 1);
    return NULL;
}

/* mdb_env_copy2(MDB_CP_COMPACT) of `store` into `dir`. With a progress
 * handler on the calling thread, the copy runs on another thread and the
 * caller reports the bytes written of the live data (the file less its
 * free space) every 50 ms. Returns LMDB's code. */
static int copy_compact(deja_store *store, const char *dir, const char *data)
{
    copy_job j = {store->env, dir, 0, 0};
    uint64_t file = 0, unused = 0, live;
    deja_progress_cb cb;
    void *payload;
    pthread_t th;

    deja__progress_get(&cb, &payload);
    if (cb == NULL || deja_store_space(store, &file, &unused) != 0 ||
        pthread_create(&th, NULL, copy_thread, &j) != 0)
        return mdb_env_copy2(store->env, dir, MDB_CP_COMPACT);
    live = file > unused ? file - unused : 1;
    while (!atomic_load(&j.finished)) {
        const struct timespec tick = {0, 50 * 1000 * 1000};
        struct stat st;

        if (stat(data, &st) == 0)
            deja__progress((uint64_t)st.st_size, live);
        nanosleep(&tick, NULL);
    }
    pthread_join(th, NULL);
    if (j.rc == 0)
        deja__progress(live, live);
    return j.rc;
}

/* Compact the store at `path`; see deja.h. */
int deja_store_compact(const char *path, uint64_t *before, uint64_t *after)
{
    char tmp[PATH_MAX - 16], data[PATH_MAX], parent[PATH_MAX];
    deja_store *store = NULL, *copy = NULL;
    deja_store_stats a, b;
    struct stat dir_st, data_st;
    int lock = -1, rc = 0, made = 0;
    const char *slash;

    if (before != NULL)
        *before = 0;
    if (after != NULL)
        *after = 0;
    rc = deja_store_open(&store, path, DEJA_STORE_READONLY);
    if (rc != 0)
        goto cleanup;
    lock = lock_writers(path, LOCK_EX | LOCK_NB);
    if (lock < 0) {
        rc = errno == EWOULDBLOCK
                 ? deja__error_set(DEJA_EBUSY,
                                   "store '%s' is open for writing by another process; compact "
                                   "it when no tracer, run, import or gc holds it",
                                   path)
                 : deja__error_set(DEJA_EIO, "store '%s': cannot lock %s: %s", path, WRITER_LOCK,
                                   strerror(errno));
        goto cleanup;
    }
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.compact-%ld", path, (long)getpid()) >= sizeof tmp) {
        rc = deja__error_set(DEJA_EINVAL, "store path '%s' is too long", path);
        goto cleanup;
    }
    remove_store_dir(tmp); /* a leftover of a compaction that died */
    /* The copy keeps the store's modes: a private store stays private. */
    if ((size_t)snprintf(data, sizeof data, "%s/data.mdb", path) >= sizeof data ||
        stat(path, &dir_st) != 0 || stat(data, &data_st) != 0) {
        rc = deja__error_set(DEJA_EIO, "store '%s': cannot read its modes: %s", path,
                             strerror(errno));
        goto cleanup;
    }
    made = mkdir(tmp, 0700) == 0;
    if (!made || chmod(tmp, dir_st.st_mode & 07777) != 0) {
        rc = deja__error_set(DEJA_EIO, "store '%s': cannot create '%s': %s", path, tmp,
                             strerror(errno));
        goto cleanup;
    }
    if ((size_t)snprintf(data, sizeof data, "%s/data.mdb", tmp) >= sizeof data) {
        rc = deja__error_set(DEJA_EINVAL, "store path '%s' is too long", path);
        goto cleanup;
    }
    rc = copy_compact(store, tmp, data);
    if (rc != 0) {
        rc = deja__error_set(DEJA_EIO, "store '%s': compacting into '%s': %s", path, tmp,
                             mdb_strerror(rc));
        goto cleanup;
    }
    if (chmod(data, data_st.st_mode & 0666) != 0) {
        rc = deja__error_set(DEJA_EIO, "store '%s': the compacted copy's mode: %s", path,
                             strerror(errno));
        goto cleanup;
    }
    if (sync_path(data, O_RDONLY) != 0 || sync_path(tmp, O_RDONLY | O_DIRECTORY) != 0) {
        rc = deja__error_set(DEJA_EIO, "store '%s': syncing the compacted copy: %s", path,
                             strerror(errno));
        goto cleanup;
    }
    /* The copy holds what the store holds, or nothing is replaced. */
    rc = deja_store_open(&copy, tmp, DEJA_STORE_READONLY);
    if (rc == 0)
        rc = deja_store_stats_get(store, &a);
    if (rc == 0)
        rc = deja_store_stats_get(copy, &b);
    if (rc != 0)
        goto cleanup;
    if (a.traces != b.traces || a.blobs != b.blobs || a.envs != b.envs ||
        a.stored_bytes != b.stored_bytes) {
        rc = deja__error_set(DEJA_ECORRUPT, "store '%s': the compacted copy differs; the store "
                                            "is left as it was",
                             path);
        goto cleanup;
    }
    deja_store_close(copy);
    copy = NULL;
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) != 0) {
        rc = deja__error_set(DEJA_EIO, "store '%s': cannot put the compacted copy in place: %s",
                             path, strerror(errno));
        goto cleanup;
    }
    slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(parent, sizeof parent, ".");
    else
        snprintf(parent, sizeof parent, "%.*s", (int)(slash == path ? 1 : slash - path), path);
    sync_path(parent, O_RDONLY | O_DIRECTORY);
    if (before != NULL)
        *before = a.file_bytes;
    if (after != NULL)
        *after = b.file_bytes;

cleanup:
    deja_store_close(copy);
    deja_store_close(store);
    if (made)
        remove_store_dir(tmp); /* the old store after the exchange, else the copy */
    if (lock >= 0)
        close(lock);
    return rc;
}
