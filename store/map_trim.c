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

/* Drop the store map's pages from this process's page tables: madvise
 * MADV_DONTNEED over every mapping of the store's data file found in
 * /proc/self/maps (by device and inode). The data stays in the page cache
 * and on disk. Takes the resize lock shared, so that the map does not move
 * meanwhile. Returns 0, or DEJA_EIO when the maps cannot be read. */
int deja__store_map_trim(deja_store *store)
{
    struct stat st;
    mdb_filehandle_t fd;
    FILE *maps = NULL;
    char line[4352];
    int rc = 0;
    pthread_rwlock_rdlock(&store->resize);
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
            hi > lo)
            (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
cleanup:
    if (maps != NULL)
        fclose(maps);
    pthread_rwlock_unlock(&store->resize);
    return rc;
}
