/*
 * store/extent.c -- what long scans over a store need from it: the time
 * range its traces cover (to split a scan across threads), and giving back
 * the pages of the memory map a scan has read (so that its resident size
 * stays bounded: a read-only LMDB map counts every page it touched).
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "store/store_internal.h"

/* Milliseconds held in the first six bytes of an id key. */
static int64_t key_ms(const MDB_val *k)
{
    const uint8_t *p = k->mv_data;
    int64_t ms = 0;

    for (int i = 0; i < 6; i++)
        ms = (ms << 8) | p[i];
    return ms;
}

int deja_store_time_range(deja_store *store, int64_t *oldest_ns, int64_t *newest_ns)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc;

    *oldest_ns = *newest_ns = 0;
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_open(txn, store->traces, &cur);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    if (rc == 0 && k.mv_size == 16) {
        *oldest_ns = key_ms(&k) * 1000000;
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        if (rc == 0 && k.mv_size == 16)
            *newest_ns = key_ms(&k) * 1000000 + 999999;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc != 0)
        rc = deja__mdb_error(rc, "reading the time range of the store");
    if (cur != NULL)
        mdb_cursor_close(cur);
    deja__rtxn_end(store, txn);
    return rc;
}

/* LMDB tells the map's address only for MDB_FIXEDMAP: find the shared
 * mapping of the data file (by device and inode) in /proc/self/maps. */
void deja__store_trim(deja_store *store)
{
    struct stat st;
    mdb_filehandle_t fd;
    char line[512];
    FILE *fp;

    /* Only a read-only handle: its map is never written through. */
    if (store->writable || mdb_env_get_fd(store->env, &fd) != 0 || fstat(fd, &st) != 0)
        return;
    fp = fopen("/proc/self/maps", "r");
    if (fp == NULL)
        return;
    while (fgets(line, sizeof line, fp) != NULL) {
        unsigned long lo, hi, off, inode;
        unsigned maj, min;
        char perms[8];

        if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perms, &off, &maj, &min,
                   &inode) != 7)
            continue;
        if (inode == (unsigned long)st.st_ino && makedev(maj, min) == st.st_dev &&
            perms[3] == 's') {
            madvise((void *)lo, hi - lo, MADV_DONTNEED);
        }
    }
    fclose(fp);
}
