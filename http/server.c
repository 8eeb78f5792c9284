/*
 * http/server.c -- what deja proxy and deja serve share as HTTP servers: a
 * libmicrohttpd daemon with a thread per connection (an exchange may block
 * on its upstream or its model without holding up the others), JSON error
 * answers in the OpenAI shape, counters, stop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/server_internal.h"
#include "core/core.h"

int deja__server_listen(deja_server *s, const char *listen, unsigned max_clients,
                        MHD_AccessHandlerCallback handler, MHD_RequestCompletedCallback done,
                        void *cls)
{
    struct sockaddr_storage addr;
    socklen_t len = 0;
    int rc = deja__listen_addr(listen ? listen : "127.0.0.1:8080", "--listen", &addr, &len);
    if (rc != 0) {
        return rc;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
                     MHD_USE_TURBO;
    if (addr.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handler, cls, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, done, cls,
                                 MHD_OPTION_CONNECTION_LIMIT, max_clients ? max_clients : 1024,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                                 MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
    if (!s->daemon) {
        return deja__error_set(DEJA_EIO, "cannot listen on %s (address in use, or not ours?)",
                               listen ? listen : "127.0.0.1:8080");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    return 0;
}

int deja__server_json(struct MHD_Connection *c, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        return MHD_NO;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

int deja__server_error(struct MHD_Connection *c, unsigned status, const char *type,
                       const char *code, const char *message)
{
    return deja__server_json(c, status,
                             json_pack("{s:{s:s, s:s, s:s?, s:n}}", "error", "message", message,
                                       "type", type, "code", code, "param"));
}

unsigned deja_server_port(const deja_server *server)
{
    return server ? server->port : 0;
}

void deja_server_stats_get(const deja_server *server, deja_server_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!server) {
        return;
    }
    out->requests = atomic_load(&server->requests);
    out->recorded = atomic_load(&server->recorded);
    out->truncated = atomic_load(&server->truncated);
    out->failed = atomic_load(&server->failed);
    out->unrecorded = atomic_load(&server->unrecorded);
    if (atomic_load_explicit(&server->why_set, memory_order_acquire)) {
        memcpy(out->unrecorded_why, server->why, sizeof out->unrecorded_why);
    }
}

void deja__server_unrecorded(deja_server *s, const char *reason)
{
    atomic_fetch_add(&s->unrecorded, 1);
    if (atomic_exchange(&s->why_claimed, 1) == 0) {
        snprintf(s->why, sizeof s->why, "%s", reason ? reason : "");
        atomic_store_explicit(&s->why_set, 1, memory_order_release);
    }
}

void deja_server_stop(deja_server *server)
{
    if (!server) {
        return;
    }
    atomic_store(&server->stopping, 1);
    if (server->daemon) {
        MHD_stop_daemon(server->daemon);
    }
    if (server->destroy) {
        server->destroy(server);
    }
    free(server);
}

int deja__server_take_upload(deja__buf *body, int *too_large, size_t max, const char *upload,
                             size_t *upload_size)
{
    if (!*too_large && body->size + *upload_size <= max) {
        if (deja__buf_append(body, upload, *upload_size) != 0)
            return MHD_NO;
    } else {
        *too_large = 1;
    }
    *upload_size = 0;
    return MHD_YES;
}
