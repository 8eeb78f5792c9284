/*
 * store/guard.c -- guarded regions: store access that a damaged or truncated
 * data.mdb turns into an error instead of a crash, for library users.
 *
 * LMDB reads a store through a memory map and trusts its pages. Opening a
 * store checks that data.mdb holds the pages its meta page claims, and
 * verify and gc walk every page before LMDB is handed the file; but a read
 * (list, get, export) does not walk the whole file first, and a file cut
 * short after it was opened (by another process, a full disk, a copy in
 * progress) makes the next read of a page past the end raise SIGBUS. A
 * guarded region catches SIGBUS and SIGSEGV raised on the calling thread
 * while it runs and returns from it with DEJA_ECORRUPT, "store 'P' is
 * damaged (SIGBUS while reading it): run deja verify".
 *
 * The handlers are process-wide: they are installed (again, when the program
 * replaced them) on entry to each region, and a fault outside any region, or
 * on another thread, is handed to the handler that was there before, or
 * takes the default action (a core dump) as without deja. Calls core/ and
 * store_internal.h (for the store's path); nothing in the library calls it.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>

#include "core/core.h"
#include "store/store_internal.h"

#define NSIGS 2

static const int guarded[NSIGS] = {SIGBUS, SIGSEGV};

/* The actions found before ours, for faults outside any region. */
static struct sigaction previous[NSIGS];
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

/* The innermost region of this thread, or NULL; and the signal that ended
 * it. */
static _Thread_local sigjmp_buf *region;
static _Thread_local volatile sig_atomic_t region_signal;

static void on_fault(int sig, siginfo_t *info, void *uctx);

/* Hand a fault outside any region to the action that was there before ours:
 * a handler is called; else the default action is restored (a fault cannot
 * be ignored) and takes place. */
static void chain(int sig, siginfo_t *info, void *uctx)
{
    const struct sigaction *old = &previous[sig == SIGBUS ? 0 : 1];

    if ((old->sa_flags & SA_SIGINFO) != 0 && old->sa_sigaction != NULL) {
        old->sa_sigaction(sig, info, uctx);
        return;
    }
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN && old->sa_handler != NULL) {
        old->sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL);
    /* A fault re-raises itself when the handler returns; a signal sent by
     * kill() or raise() must be raised again. */
    if (info == NULL || info->si_code <= 0)
        raise(sig);
}

static void on_fault(int sig, siginfo_t *info, void *uctx)
{
    sigjmp_buf *jb = region;

    if (jb == NULL) {
        chain(sig, info, uctx);
        return;
    }
    region = NULL;
    region_signal = sig;
    siglongjmp(*jb, 1);
}

/* Make on_fault the action of SIGBUS and SIGSEGV, keeping what was there
 * (unless it was ours already) for faults outside regions. Returns 0 or
 * DEJA_EIO. */
static int install(void)
{
    int rc = 0;

    pthread_mutex_lock(&install_lock);
    for (int i = 0; i < NSIGS && rc == 0; i++) {
        struct sigaction now, ours;

        if (sigaction(guarded[i], NULL, &now) != 0) {
            rc = deja__error_set(DEJA_EIO, "store guard: cannot read the action of signal %d",
                                 guarded[i]);
            break;
        }
        if ((now.sa_flags & SA_SIGINFO) != 0 && now.sa_sigaction == on_fault)
            continue;
        memset(&ours, 0, sizeof ours);
        ours.sa_sigaction = on_fault;
        ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&ours.sa_mask);
        if (sigaction(guarded[i], &ours, NULL) != 0) {
            rc = deja__error_set(DEJA_EIO, "store guard: cannot handle signal %d", guarded[i]);
            break;
        }
        previous[i] = now;
    }
    pthread_mutex_unlock(&install_lock);
    return rc;
}

int deja_store_guard(deja_store *store, deja_guarded_fn fn, void *payload)
{
    sigjmp_buf jb;
    sigjmp_buf *volatile outer = region;
    volatile int rc = 0;

    if (fn == NULL)
        return deja__error_set(DEJA_EINVAL, "store guard: no function to run");
    rc = install();
    if (rc != 0)
        return rc;
    region_signal = 0;
    if (sigsetjmp(jb, 1) == 0) {
        region = &jb;
        rc = fn(store, payload);
        region = outer;
    } else {
        region = outer;
        rc = deja__error_set(DEJA_ECORRUPT,
                             "store '%s' is damaged (%s while reading it): run deja verify",
                             store != NULL ? store->path : "",
                             region_signal == SIGBUS ? "SIGBUS" : "SIGSEGV");
    }
    return rc;
}
