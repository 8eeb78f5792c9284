/*
 * cli/cli_server.c -- what `deja proxy` and `deja serve` share: waiting for
 * SIGINT or SIGTERM, the printed address.
 */
#include "cli.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

int cli_listen_check(const char *listen)
{
    char host[256];
    const char *colon = listen != NULL ? strrchr(listen, ':') : NULL;
    struct addrinfo hints, *res = NULL;
    int ok = -1;
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host) {
        cli_error("--listen '%s': expected HOST:PORT", listen != NULL ? listen : "");
        return -1;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host[0] ? host : "127.0.0.1", colon + 1, &hints, &res) != 0 || res == NULL) {
        cli_error("--listen '%s': expected HOST:PORT with a known host and a port 0..65535",
                  listen);
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    int one = 1;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        bind(fd, res->ai_addr, res->ai_addrlen) == 0)
        ok = 0;
    else
        cli_error("cannot listen on %s: %s", listen, strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return ok;
}
