/*
 * store/store_files.c -- the files of a store directory, checked before
 * LMDB opens them: data.mdb and lock.mdb must be regular files (a symlink
 * planted in the directory would make even a reader write through it),
 * data.mdb must hold every page its meta page claims (LMDB maps it and
 * would fault past the end), a new store needs room on its file system,
 * and a new store is private (directory 0700, files 0600) unless
 * DEJA_STORE_SHARED or $DEJA_STORE_SHARED asks for the umask's modes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store/store_internal.h"

/* Room a new store needs at least: the lock file, two meta pages and the
 * first pages of each database, with a margin. */
#define NEW_STORE_MIN_FREE ((uint64_t)1 << 20)
/* The lock file is allocated up front, so that LMDB's mapping of it never
 * faults on a full disk (LMDB sizes it for 126 readers: under 9 KiB). */
#define LOCK_FILE_BYTES 16384

/* Whether a new store should be shared: the flag, or $DEJA_STORE_SHARED
 * set to anything but "" or "0". */
int deja__store_shared(int flags)
{
    const char *e = getenv("DEJA_STORE_SHARED");

    return (flags & DEJA_STORE_SHARED) != 0 || (e != NULL && e[0] != '\0' && strcmp(e, "0") != 0);
}

/* Refuse `name` in the store directory `dir` when it exists and is not a
 * regular file (a symlink included). `*exists` (may be NULL) says whether
 * it exists, `*size` (may be NULL) its size. */
static int check_file(const char *dir, const char *name, int *exists, uint64_t *size)
{
    char path[PATH_MAX];
    struct stat st;

    if (exists != NULL)
        *exists = 0;
    if (size != NULL)
        *size = 0;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return deja__error_set(DEJA_EINVAL, "store path '%s' is too long", dir);
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return deja__error_set(DEJA_EIO, "store '%s': %s: %s", dir, name, strerror(errno));
    }
    if (S_ISLNK(st.st_mode))
        return deja__error_set(DEJA_EINVAL,
                               "store '%s': %s is a symbolic link: refusing to open it", dir, name);
    if (!S_ISREG(st.st_mode))
        return deja__error_set(DEJA_EINVAL, "store '%s': %s is not a regular file", dir, name);
    if (exists != NULL)
        *exists = 1;
    if (size != NULL)
        *size = (uint64_t)st.st_size;
    return 0;
}

/* Check the files of the store directory `dir` before LMDB opens them; see
 * store_internal.h. */
int deja__store_files_check(const char *dir, int writable, int *data_exists)
{
    char path[PATH_MAX], msg[256];
    uint64_t size = 0;
    int rc;

    rc = check_file(dir, "lock.mdb", NULL, NULL);
    if (rc == 0)
        rc = check_file(dir, "data.mdb", data_exists, &size);
    if (rc != 0 || !*data_exists)
        return rc;
    if (size == 0) {
        if (writable)
            return 0; /* LMDB starts a new store in an empty file */
        return deja__error_set(DEJA_ECORRUPT,
                               "store '%s' is damaged: data.mdb is empty (0 bytes): run deja verify",
                               dir);
    }
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    rc = deja__store_check_meta(path, msg, sizeof msg);
    if (rc < 0)
        return rc;
    if (rc > 0)
        return deja__error_set(DEJA_ECORRUPT, "store '%s' is damaged: %s: run deja verify", dir,
                               msg);
    return 0;
}

/* Make ready the directory `dir` (existing) for a store about to be
 * created: enough free space, and lock.mdb created without following a
 * link and allocated, with the mode of the store's files. */
int deja__store_files_prepare(const char *dir, int shared)
{
    char path[PATH_MAX];
    struct statvfs vfs;
    int fd, rc = 0;

    if (statvfs(dir, &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize < NEW_STORE_MIN_FREE)
        return deja__error_set(DEJA_EIO,
                               "store '%s': no space left on device (%llu KiB free, a new store "
                               "needs %llu)",
                               dir,
                               (unsigned long long)((uint64_t)vfs.f_bavail * vfs.f_frsize / 1024),
                               (unsigned long long)(NEW_STORE_MIN_FREE / 1024));
    if ((size_t)snprintf(path, sizeof path, "%s/lock.mdb", dir) >= sizeof path)
        return deja__error_set(DEJA_EINVAL, "store path '%s' is too long", dir);
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, shared ? 0666 : 0600);
    if (fd < 0)
        return errno == EEXIST ? 0 : deja__error_set(DEJA_EIO, "store '%s': lock.mdb: %s", dir,
                                                     strerror(errno));
    rc = posix_fallocate(fd, 0, LOCK_FILE_BYTES);
    close(fd);
    if (rc != 0) {
        unlink(path);
        return deja__error_set(DEJA_EIO, "store '%s': lock.mdb: %s", dir,
                               rc == ENOSPC ? "no space left on device" : strerror(rc));
    }
    return 0;
}

/* After LMDB opened the store in `dir`: the data file it holds open must
 * still be the regular file the checks saw (no link swapped in since). */
int deja__store_files_recheck(const char *dir, int data_fd)
{
    char path[PATH_MAX];
    struct stat a, b;

    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (fstat(data_fd, &a) != 0 || lstat(path, &b) != 0 || !S_ISREG(b.st_mode) ||
        a.st_dev != b.st_dev || a.st_ino != b.st_ino)
        return deja__error_set(DEJA_EINVAL,
                               "store '%s': data.mdb changed while it was opened: refusing it", dir);
    return 0;
}
