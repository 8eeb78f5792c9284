/*
 * cli/cli_signals.c -- what the deja command does on a fatal signal. LMDB
 * trusts the pages of a store; a damaged store can make it fault where no
 * check reaches (the pages of `ls` or `show`, which do not walk the whole
 * file first). Such a fault becomes one line on stderr, "deja: store 'P'
 * is damaged or unreadable (SIGSEGV while using it): run deja verify", and
 * exit status 2, not a core dump. Calls only async-signal-safe functions
 * in the handlers. SIGINT, SIGTERM, SIGHUP and SIGPIPE (`deja show FILE |
 * head`) first remove the temporary stores of bundles opened in place,
 * then take their default action.
 */
#include "cli_signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "deja.h"

static char store_path[1024];

/* Append `s` to `buf` (of `cap` bytes, `*n` used), cutting it to fit. */
static void append(char *buf, size_t cap, size_t *n, const char *s)
{
    while (*s != '\0' && *n + 1 < cap)
        buf[(*n)++] = *s++;
}

static void on_fault(int sig)
{
    char msg[1400];
    size_t n = 0;

    append(msg, sizeof msg, &n, "deja: store '");
    append(msg, sizeof msg, &n, store_path);
    append(msg, sizeof msg, &n, "' is damaged or unreadable (");
    append(msg, sizeof msg, &n, sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
    append(msg, sizeof msg, &n, " while using it): run deja verify\n");
    if (write(STDERR_FILENO, msg, n) < 0) {
        /* nothing more can be said */
    }
    _exit(2);
}

static void on_stop(int sig)
{
    deja_bundle_remove_temp();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Commands that run model code in this process: a fault there is the
 * model's, not the store's, and keeps its default action. */
static int runs_models(const char *command)
{
    static const char *const names[] = {"run", "replay", "bisect", "serve", "worker"};

    for (size_t i = 0; command != NULL && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(command, names[i]) == 0)
            return 1;
    return 0;
}

/* Install the handlers; see cli_signals.h. */
void cli_signals_install(const char *store, const char *command)
{
    static const int stops[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    struct sigaction sa;
    size_t n = store != NULL ? strlen(store) : 0;

    if (n >= sizeof store_path)
        n = sizeof store_path - 1;
    memcpy(store_path, store != NULL ? store : "", n);
    store_path[n] = '\0';
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (!runs_models(command)) {
        sa.sa_handler = on_fault;
        sigaction(SIGSEGV, &sa, NULL);
        sigaction(SIGBUS, &sa, NULL);
    }
    sa.sa_handler = on_stop;
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        struct sigaction old;
        /* A signal ignored by whoever started deja stays ignored. */
        if (sigaction(stops[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(stops[i], &sa, NULL);
    }
}
