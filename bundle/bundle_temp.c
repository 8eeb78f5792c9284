/*
 * bundle/bundle_temp.c -- the temporary stores of bundles opened in place
 * (`deja show FILE.deja`, `deja replay FILE.deja`): made in $TMPDIR (else
 * /tmp) as "deja-bundle-PID-XXXXXX", registered while open so that a
 * signal handler can remove them (deja_bundle_remove_temp), and, when a
 * process died without removing its own (SIGKILL), removed by the next
 * process that opens a bundle.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle/bundle_internal.h"
#include "core/error.h"

#define TEMP_PREFIX "deja-bundle-"
#define MAX_OPEN 16

/* The open temporary stores: a slot is in use when its path is not empty.
 * Written outside signal handlers only; read by deja_bundle_remove_temp. */
static char open_dirs[MAX_OPEN][PATH_MAX];
static volatile sig_atomic_t open_used[MAX_OPEN];

/* The directory for temporary files: $TMPDIR when set, else /tmp. */
static const char *temp_dir(void)
{
    const char *d = getenv("TMPDIR");

    return d != NULL && d[0] != '\0' ? d : "/tmp";
}

/* Remove the directory `dir` holding only files (a store). */
static void remove_store_dir(const char *dir)
{
    DIR *d = opendir(dir);

    if (d != NULL) {
        const struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(dir);
}

/* Remove the temporary stores of processes that are gone: named
 * deja-bundle-PID-XXXXXX, owned by this user, PID not running. */
static void sweep_stale(const char *tmp)
{
    DIR *d = opendir(tmp);
    const struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[PATH_MAX], *end;
        struct stat st;
        long pid;

        if (strncmp(e->d_name, TEMP_PREFIX, strlen(TEMP_PREFIX)) != 0)
            continue;
        pid = strtol(e->d_name + strlen(TEMP_PREFIX), &end, 10);
        if (pid <= 0 || *end != '-' || strlen(end + 1) != 6 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* alive, or not ours to ask about */
        if ((size_t)snprintf(path, sizeof path, "%s/%s", tmp, e->d_name) >= sizeof path ||
            lstat(path, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
            continue;
        remove_store_dir(path);
    }
    closedir(d);
}

/* Make a new temporary store directory for a bundle in `out` (`cap`
 * bytes), after removing stale ones, and register it. Returns 0 or a
 * negative code with the message set. */
int deja__bundle_temp_make(char *out, size_t cap)
{
    const char *tmp = temp_dir();
    int slot = -1;

    sweep_stale(tmp);
    for (int i = 0; i < MAX_OPEN && slot < 0; i++)
        if (!open_used[i])
            slot = i;
    if ((size_t)snprintf(out, cap, "%s/" TEMP_PREFIX "%ld-XXXXXX", tmp, (long)getpid()) >= cap)
        return deja__error_set(DEJA_EIO, "temporary directory '%s': path too long", tmp);
    if (mkdtemp(out) == NULL)
        return deja__error_set(DEJA_EIO, "cannot create a temporary directory in '%s': %s", tmp,
                               strerror(errno));
    if (slot >= 0 && strlen(out) < sizeof open_dirs[0]) {
        memcpy(open_dirs[slot], out, strlen(out) + 1);
        open_used[slot] = 1;
    }
    return 0;
}

/* Remove the temporary store `dir` made by deja__bundle_temp_make and
 * forget it. */
void deja__bundle_temp_remove(const char *dir)
{
    for (int i = 0; i < MAX_OPEN; i++)
        if (open_used[i] && strcmp(open_dirs[i], dir) == 0)
            open_used[i] = 0;
    remove_store_dir(dir);
}

/* Append `s` to `buf` (`cap` bytes, `*n` used); 0, or -1 when it does not
 * fit. Async-signal-safe. */
static int append(char *buf, size_t cap, size_t *n, const char *s)
{
    while (*s != '\0') {
        if (*n + 1 >= cap)
            return -1;
        buf[(*n)++] = *s++;
    }
    buf[*n] = '\0';
    return 0;
}

/* Remove the temporary stores of the bundles this process holds open; see
 * deja.h. Only async-signal-safe calls (unlink, rmdir). */
void deja_bundle_remove_temp(void)
{
    static const char *const files[] = {"data.mdb", "lock.mdb"};

    for (int i = 0; i < MAX_OPEN; i++) {
        if (!open_used[i])
            continue;
        for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
            char path[PATH_MAX + 16];
            size_t n = 0;
            if (append(path, sizeof path, &n, open_dirs[i]) == 0 &&
                append(path, sizeof path, &n, "/") == 0 &&
                append(path, sizeof path, &n, files[f]) == 0)
                unlink(path);
        }
        rmdir(open_dirs[i]);
        open_used[i] = 0;
    }
}
