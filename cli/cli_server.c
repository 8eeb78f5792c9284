/*
 * cli/cli_server.c -- what `deja proxy` and `deja serve` share: byte sizes
 * on the command line, waiting for SIGINT or SIGTERM, the printed address.
 */
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_bytes(const char *text, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (text == NULL || *text < '0' || *text > '9')
        return -1;
    unsigned long long v = strtoull(text, &end, 10);
    unsigned shift = 0;
    if (errno != 0)
        return -1;
    if (*end == 'k' || *end == 'K')
        shift = 10;
    else if (*end == 'm' || *end == 'M')
        shift = 20;
    else if (*end == 'g' || *end == 'G')
        shift = 30;
    if (shift != 0)
        end++;
    if (*end != '\0' || v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

void cli_signals_block(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

int cli_signals_wait(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0) {
    }
    return sig;
}

void cli_print_listening(const char *what, const char *listen, unsigned port, const char *extra)
{
    char host[256] = "127.0.0.1";
    const char *colon = listen != NULL ? strrchr(listen, ':') : NULL;
    if (colon != NULL && colon > listen && (size_t)(colon - listen) < sizeof host) {
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
    }
    printf("http://%s:%u/v1\n", host, port);
    fflush(stdout);
    fprintf(stderr, "deja %s: listening on http://%s:%u/v1%s (Ctrl-C stops)\n", what, host, port,
            extra != NULL ? extra : "");
}
