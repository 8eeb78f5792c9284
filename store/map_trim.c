/*
 * store/map_trim.c -- giving back the pages of the store's map that this
 * process has touched. LMDB reads the store through a shared read-only
 * mapping of its file; every page a lookup touches stays in the process's
 * page tables and counts in its RSS (as RssFile) until unmapped, so that a
 * long-running recorder's RSS grows with the store. The pages themselves
 * are the kernel's page cache, clean and shared: dropping them from this
 * process's page tables loses nothing, and the next access maps them
 * again from the cache (a minor fault).
 */
#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "store/store_internal.h"

/* Find the shared mapping of the store's data file (by device and inode)
 * in /proc/self/maps that holds `inside`, an address in this handle's map
 * (LMDB tells the map's address only under MDB_FIXEDMAP; another handle
 * of the process may map the same file elsewhere). Fills `*lo`, `*hi` and
 * returns 0, 1 when there is none, or DEJA_EIO. */
static int map_find(deja_store *store, uintptr_t inside, uintptr_t *lo_out, uintptr_t *hi_out)
{
    struct stat st;
    mdb_filehandle_t fd;
    FILE *maps = NULL;
    char line[4352];
    int rc = 1;
    if (mdb_env_get_fd(store->env, &fd) != 0 || fstat(fd, &st) != 0 ||
        (maps = fopen("/proc/self/maps", "r")) == NULL) {
        rc = deja__error_set(DEJA_EIO, "store %s: cannot find its map", store->path);
        goto cleanup;
    }
    while (fgets(line, sizeof line, maps) != NULL) {
        uintptr_t lo, hi;
        unsigned maj, min;
        uint64_t ino;
        char perms[8];
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %*s %x:%x %" SCNu64, &lo, &hi, perms, &maj,
                   &min, &ino) != 6)
            continue;
        /* Shared mappings only: dropping a private one would lose its
         * copied-on-write pages (LMDB maps shared; nothing maps it privately). */
        if (perms[3] == 's' && ino == (uint64_t)st.st_ino && makedev(maj, min) == st.st_dev &&
            lo <= inside && inside < hi) {
            *lo_out = lo;
            *hi_out = hi;
            rc = 0;
            break;
        }
    }
cleanup:
    if (maps != NULL)
        fclose(maps);
    return rc;
}

/* Learn where this handle's map is: the address of a record read through
 * it, then its mapping. Caches it with the map_gen it is valid for.
 * Returns 0 (cached, or nothing to cache) or a DEJA_E* code. */
static int map_learn(deja_store *store)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uintptr_t lo = 0, hi = 0;
    int rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        goto cleanup;
    /* The meta records live in the map (a read transaction's values point
     * into it), and a store always has its format's. */
    if (mdb_cursor_open(txn, store->meta, &cur) != 0 ||
        mdb_cursor_get(cur, &k, &v, MDB_FIRST) != 0 || v.mv_size == 0)
        goto cleanup;
    rc = map_find(store, (uintptr_t)v.mv_data, &lo, &hi);
    if (rc == 0) {
        store->trim_lo = lo;
        store->trim_hi = hi;
        store->trim_gen = store->map_gen; /* the map cannot move while txn lives */
        store->trim_known = 1;
    } else if (rc == 1) {
        rc = 0;
    }
cleanup:
    if (cur != NULL)
        mdb_cursor_close(cur);
    if (txn != NULL)
        deja__rtxn_end(store, txn);
    return rc;
}

/* Drop the store map's pages from this process's page tables with madvise
 * MADV_DONTNEED. The data stays in the page cache and on disk. The map is
 * looked up in /proc/self/maps once per map LMDB makes (a resize may move
 * it: store->map_gen counts them), not per trim: the lookup costs ~0.5 ms,
 * several times the madvise. The resize lock is held shared around the
 * madvise, so that the map does not move meanwhile. One thread at a time
 * per handle (the writer). Returns 0, or DEJA_EIO when the maps cannot be
 * read. */
int deja__store_map_trim(deja_store *store)
{
    int rc = 0;
    pthread_rwlock_rdlock(&store->resize);
    int known = store->trim_known && store->trim_gen == store->map_gen;
    pthread_rwlock_unlock(&store->resize);
    if (!known && (rc = map_learn(store)) != 0)
        return rc;
    (void)deja__store_map_trim_known(store);
    return rc;
}

/* The same inside a write transaction of this handle (which holds the
 * resize lock shared, so that the map cannot move): only when the map's
 * place is known already, since learning it takes a read transaction. The
 * pages the transaction has copied are its own (LMDB's dirty pages are
 * heap, not the map), and a page of the map it still points to is mapped
 * again from the page cache at its next access. Returns 0, or 1 when the
 * place is not known (nothing done). */
int deja__store_map_trim_known(deja_store *store)
{
    int rc = 1;
    pthread_rwlock_rdlock(&store->resize);
    if (store->trim_known && store->trim_gen == store->map_gen) {
        (void)madvise((void *)store->trim_lo, store->trim_hi - store->trim_lo, MADV_DONTNEED);
        rc = 0;
    }
    pthread_rwlock_unlock(&store->resize);
    return rc;
}
