/*
 * http/server_internal.h -- the server half of the http/ room (proxy.c,
 * serve.c, server.c): the deja_server handle and the libmicrohttpd helpers.
 */
#ifndef DEJA_HTTP_SERVER_INTERNAL_H
#define DEJA_HTTP_SERVER_INTERNAL_H

#include <stdatomic.h>

#include <jansson.h>
#include <microhttpd.h>

#include "http/http_internal.h"

struct deja_server {
    struct MHD_Daemon *daemon;
    unsigned port;
    atomic_int stopping; /* exchanges in flight give up */
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t recorded;
    atomic_uint_fast64_t truncated;
    atomic_uint_fast64_t failed;
    atomic_uint_fast64_t unrecorded; /* recordable exchanges the tracer refused */
    atomic_int why_claimed;          /* the first refusal's writer owns `why` */
    atomic_int why_set;              /* `why` is complete */
    char why[DEJA_SERVER_WHY_MAX];
    void (*destroy)(deja_server *server); /* frees `impl`, after the daemon stopped */
    void *impl;
};

/* Count an exchange the server could not record because of `reason`
 * (deja_error_last() of the refusal); the first reason is kept for the
 * stats. Thread-safe. */
void deja__server_unrecorded(deja_server *s, const char *reason);

/* Start the daemon of `s` on `listen` with `handler` and `done` (the
 * request-completed callback), both called with `cls`; sets s->port.
 * Returns 0, DEJA_EINVAL (address) or DEJA_EIO (cannot listen). */
int deja__server_listen(deja_server *s, const char *listen, unsigned max_clients,
                        MHD_AccessHandlerCallback handler, MHD_RequestCompletedCallback done,
                        void *cls);

/* Queue `body` (consumed) as a JSON answer with `status`. */
int deja__server_json(struct MHD_Connection *c, unsigned status, json_t *body);

/* Queue an OpenAI-shaped error {"error": {"message", "type", "code"}}. */
int deja__server_error(struct MHD_Connection *c, unsigned status, const char *type,
                       const char *code, const char *message);

/* Take the piece `upload` (*upload_size bytes, set to 0: consumed) of a
 * request's body into `body`, up to `max` bytes in all; past that the rest
 * is read and dropped and *too_large is set, for the handler to answer 413
 * once the body has ended. MHD_NO when out of memory. */
int deja__server_take_upload(deja__buf *body, int *too_large, size_t max, const char *upload,
                             size_t *upload_size);

#endif /* DEJA_HTTP_SERVER_INTERNAL_H */
