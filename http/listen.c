/*
 * http/listen.c -- the listening address of deja proxy and deja serve.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_internal.h"
#include "core/core.h"

/* Parse "HOST:PORT", "[V6]:PORT" or ":PORT" (loopback) into `addr`. A
 * missing host is 127.0.0.1: deja never listens beyond the machine unless
 * told to. */
int deja__listen_addr(const char *text, const char *what, struct sockaddr_storage *addr,
                      socklen_t *len)
{
    char host[256];
    const char *port, *colon;
    struct addrinfo hints, *res = NULL;
    int rc = 0, grc;
    if (!text || !*text) {
        return deja__error_set(DEJA_EINVAL, "%s: empty address", what);
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof host) {
            return deja__error_set(DEJA_EINVAL, "%s '%s': expected [ADDRESS]:PORT", what, text);
        }
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        port = close + 2;
    } else {
        colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof host) {
            return deja__error_set(DEJA_EINVAL, "%s '%s': expected HOST:PORT", what, text);
        }
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port = colon + 1;
    }
    if (!host[0]) {
        snprintf(host, sizeof host, "127.0.0.1");
    }
    char *end = NULL;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 0 || p > 65535) {
        return deja__error_set(DEJA_EINVAL, "%s '%s': the port must be 0..65535", what, text);
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    grc = getaddrinfo(host, port, &hints, &res);
    if (grc != 0 || !res || res->ai_addrlen > sizeof *addr) {
        rc = deja__error_set(DEJA_EINVAL, "%s '%s': %s", what, text,
                             grc ? gai_strerror(grc) : "no address");
        goto cleanup;
    }
    memset(addr, 0, sizeof *addr);
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
cleanup:
    if (res) {
        freeaddrinfo(res);
    }
    return rc;
}
