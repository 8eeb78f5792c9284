/*
 * http/proxy.c -- `deja proxy`: an OpenAI-compatible reverse proxy that
 * records every completion, chat completion and embedding exchange.
 *
 * Each client connection has its own thread (libmicrohttpd). Once a
 * request body is in, the upstream transfer starts (libcurl, one multi
 * handle per exchange, driven by the connection's thread), and only then
 * is the request parsed and recorded, so that recording overlaps the
 * upstream's work. An answer that is a server-sent event stream is handed
 * to the client as each piece arrives: the client's reads drive the
 * upstream transfer, nothing waits for the end. Any other answer is read
 * whole (bounded) and passed on. When the exchange ends, however it ends,
 * the request-completed callback parses the answer and ends the span:
 * exactly one trace per recorded exchange. A client that leaves mid-stream
 * ends the exchange too: the upstream transfer is dropped (its connection
 * closed) and the trace is an error marked deja.truncated=completion.
 */
#include <ctype.h>
#include <pthread.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <errno.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "http/server_internal.h"
#include "core/core.h"

#define MAX_RECORDED_HEADERS 64
#define MAX_HEADER_VALUE 4096
#define POLL_MS 50
/* Idle transfers kept with their open upstream connection, for reuse. */
#define POOL_MAX 256

/* Headers never recorded, whatever the options say. */
static const char *const secret_headers[] = {
    "authorization", "proxy-authorization", "api-key", "x-api-key", "cookie", "set-cookie"};

/* Hop-by-hop headers (and those the two sides recompute): never forwarded. */
static const char *const hop_headers[] = {"host",       "content-length",    "connection",
                                          "keep-alive", "transfer-encoding", "te",
                                          "trailer",    "upgrade",           "proxy-connection",
                                          "expect",     "accept-encoding",   "content-encoding"};

typedef struct proxy {
    deja_server *server;
    deja_tracer *tracer;
    char *upstream;
    deja_tag *tags;
    size_t ntags;
    char **redact;
    size_t nredact;
    size_t max_request;
    size_t max_response;
    unsigned timeout_ms;
    unsigned connect_timeout_ms;
    /* Multi handles whose connection cache holds a live upstream connection:
     * an exchange takes one, so a keep-alive upstream is not reconnected
     * (and its server does not start a thread) for every request. */
    pthread_mutex_t pool_lock;
    int pool_lock_ok;
    CURLM *pool[POOL_MAX];
    size_t npool;
} proxy;

/* One exchange: a client request, its upstream transfer, its trace. */
typedef struct exchange {
    proxy *p;
    int client_fd;   /* the client's socket, watched while streaming; -1 unknown */
    int client_gone; /* it closed while we waited for the upstream */
    int refs;        /* the connection and, while streaming, the response */
    deja__op op;
    int post;
    deja__buf body;
    int too_large;
    deja_span *span;
    int stream_asked;
    int64_t t0; /* request complete, ns */
    /* upstream */
    CURL *easy;
    CURLM *multi;
    struct curl_slist *req_headers;
    char *url;
    long status;
    int headers_done;
    int done;
    CURLcode result;
    char curl_error[CURL_ERROR_SIZE];
    deja__buf resp_headers; /* "Name: value\n" lines of the final header block */
    int sse;
    deja__buf answer; /* every byte of the answer (bounded) */
    size_t sent;      /* stream: bytes of `answer` handed to the client */
    int over_limit;
    size_t *arrival_end; /* stream: end offset of each piece as it arrived */
    int64_t *arrival_ns;
    size_t narrival, cap_arrival;
    int answered; /* a response was queued */
} exchange;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Non-zero when `name` (any case) is one of the `n` lowercase `names`. */
static int name_in(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(name, names[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static int is_secret(const proxy *p, const char *name)
{
    return name_in(name, secret_headers, sizeof secret_headers / sizeof secret_headers[0]) ||
           name_in(name, (const char *const *)p->redact, p->nredact);
}

/* A multi handle from the pool, or a new one; NULL when out of memory. */
static CURLM *multi_take(proxy *p)
{
    CURLM *m = NULL;
    pthread_mutex_lock(&p->pool_lock);
    if (p->npool > 0) {
        m = p->pool[--p->npool];
    }
    pthread_mutex_unlock(&p->pool_lock);
    return m ? m : curl_multi_init();
}

/* Put a multi handle (with no transfer in it) back into the pool. */
static void multi_give(proxy *p, CURLM *m)
{
    pthread_mutex_lock(&p->pool_lock);
    if (p->npool < POOL_MAX && !atomic_load(&p->server->stopping)) {
        p->pool[p->npool++] = m;
        m = NULL;
    }
    pthread_mutex_unlock(&p->pool_lock);
    if (m) {
        curl_multi_cleanup(m);
    }
}

/* Drop the upstream transfer of `x`. A transfer removed before its end
 * has its connection closed: the upstream sees the request cancelled. */
static void drop_transfer(exchange *x)
{
    if (x->multi && x->easy) {
        curl_multi_remove_handle(x->multi, x->easy);
    }
    if (x->easy) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
}

static void exchange_release(exchange *x)
{
    if (--x->refs > 0) {
        return;
    }
    drop_transfer(x);
    if (x->multi) {
        multi_give(x->p, x->multi);
    }
    curl_slist_free_all(x->req_headers);
    deja_span_abort(x->span);
    deja__buf_free(&x->body);
    deja__buf_free(&x->resp_headers);
    deja__buf_free(&x->answer);
    free(x->arrival_end);
    free(x->arrival_ns);
    free(x->url);
    free(x);
}

/* libcurl: one header line of the upstream's answer. A status line starts
 * a new block (after 1xx answers); the blank line ends it. */
static size_t on_header(char *data, size_t size, size_t n, void *cls)
{
    exchange *x = cls;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        x->resp_headers.size = 0;
        return len;
    }
    if (len <= 2 && (data[0] == '\r' || data[0] == '\n')) {
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200) {
            x->status = status;
            x->headers_done = 1;
            const char *ct = NULL;
            curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
            x->sse = ct && strncasecmp(ct, "text/event-stream", 17) == 0;
        }
        return len;
    }
    if (deja__buf_append(&x->resp_headers, data, len) != 0) {
        return 0;
    }
    return len;
}

/* libcurl: a piece of the upstream's answer. */
static size_t on_body(char *data, size_t size, size_t n, void *cls)
{
    exchange *x = cls;
    size_t len = size * n;
    if (x->answer.size + len > x->p->max_response) {
        x->over_limit = 1;
        return 0; /* aborts the transfer */
    }
    if (deja__buf_append(&x->answer, data, len) != 0) {
        return 0;
    }
    if (x->sse && x->op != DEJA__OP_NONE) {
        if (x->narrival == x->cap_arrival) {
            size_t cap = x->cap_arrival ? x->cap_arrival * 2 : 64;
            size_t *e = realloc(x->arrival_end, cap * sizeof *e);
            if (e) {
                x->arrival_end = e;
            }
            int64_t *t = e ? realloc(x->arrival_ns, cap * sizeof *t) : NULL;
            if (t) {
                x->arrival_ns = t;
                x->cap_arrival = cap;
            }
        }
        if (x->narrival < x->cap_arrival) {
            x->arrival_end[x->narrival] = x->answer.size;
            x->arrival_ns[x->narrival++] = now_ns();
        }
    }
    return len;
}

/* Non-zero when the client closed its end: its socket reads end-of-file.
 * (A readable socket with data, a pipelined request, is not watched
 * further.) */
static int client_closed(exchange *x)
{
    char byte;
    ssize_t n = recv(x->client_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        return 1;
    }
    if (n > 0) {
        x->client_fd = -1;
    }
    return 0;
}

/* Drive the upstream transfer until `until` holds: 0 the headers are in, 1
 * some answer bytes are waiting to be sent (or the end), 2 the end. A
 * client that leaves meanwhile stops the wait: client_gone. */
static void pump(exchange *x, int until)
{
    for (;;) {
        int running = 0, left = 0;
        CURLMsg *msg;
        if (!x->done) {
            curl_multi_perform(x->multi, &running);
            while ((msg = curl_multi_info_read(x->multi, &left)) != NULL) {
                if (msg->msg == CURLMSG_DONE) {
                    x->done = 1;
                    x->result = msg->data.result;
                }
            }
        }
        if (x->done || (until == 0 && x->headers_done) ||
            (until == 1 && x->answer.size > x->sent)) {
            return;
        }
        if (atomic_load(&x->p->server->stopping)) {
            x->done = 1;
            x->result = CURLE_ABORTED_BY_CALLBACK;
            snprintf(x->curl_error, sizeof x->curl_error, "the proxy is stopping");
            return;
        }
        struct curl_waitfd client = {x->client_fd, CURL_WAIT_POLLIN, 0};
        int watch = x->client_fd >= 0;
        curl_multi_poll(x->multi, watch ? &client : NULL, watch ? 1 : 0, POLL_MS, NULL);
        if (watch && (client.revents & CURL_WAIT_POLLIN) && client_closed(x)) {
            x->client_gone = 1;
            return;
        }
    }
}

/* MHD: the next piece of a streamed answer, waiting for the upstream. */
static ssize_t relay_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    exchange *x = cls;
    (void)pos;
    pump(x, 1);
    if (x->client_gone) {
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (x->answer.size > x->sent) {
        size_t n = x->answer.size - x->sent;
        if (n > max) {
            n = max;
        }
        memcpy(buf, x->answer.data + x->sent, n);
        x->sent += n;
        return (ssize_t)n;
    }
    /* The end: an upstream that failed mid-stream makes the client's stream
     * fail too (the connection closes without the last chunk). */
    return x->result == CURLE_OK ? MHD_CONTENT_READER_END_OF_STREAM
                                 : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void relay_free(void *cls)
{
    exchange_release(cls);
}

/* Copy the upstream's headers (but hop-by-hop ones) onto `r`. */
static void copy_headers(exchange *x, struct MHD_Response *r)
{
    if (deja__buf_append(&x->resp_headers, "", 1) != 0) {
        return; /* out of memory: the answer goes without its headers */
    }
    char *p = (char *)x->resp_headers.data;
    while (*p) {
        char *eol = strchr(p, '\n');
        char *next = eol ? eol + 1 : p + strlen(p);
        if (eol) {
            *eol = '\0';
            if (eol > p && eol[-1] == '\r') {
                eol[-1] = '\0';
            }
        }
        char *colon = strchr(p, ':');
        if (colon) {
            *colon = '\0';
            const char *v = colon + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            if (!name_in(p, hop_headers, sizeof hop_headers / sizeof hop_headers[0])) {
                MHD_add_response_header(r, p, v);
            }
        }
        p = next;
    }
}

/* Answer the client with an error of the proxy's own. */
static enum MHD_Result fail(exchange *x, struct MHD_Connection *c, unsigned status,
                            const char *code, const char *message)
{
    x->answered = 1;
    x->status = status;
    atomic_fetch_add(&x->p->server->failed, 1);
    return deja__server_error(c, status, "proxy_error", code, message);
}

/* MHD header iterator: forward a request header, record it unless secret. */
typedef struct header_walk {
    exchange *x;
    int recorded;
    int failed;
} header_walk;

static enum MHD_Result each_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    header_walk *w = cls;
    exchange *x = w->x;
    (void)kind;
    if (!key || name_in(key, hop_headers, sizeof hop_headers / sizeof hop_headers[0])) {
        return MHD_YES;
    }
    char *line = NULL;
    if (asprintf(&line, "%s: %s", key, value ? value : "") < 0) {
        w->failed = 1;
        return MHD_NO;
    }
    struct curl_slist *l = curl_slist_append(x->req_headers, line);
    free(line);
    if (!l) {
        w->failed = 1;
        return MHD_NO;
    }
    x->req_headers = l;
    return MHD_YES;
}

/* Record the request headers but the secret ones, as OpenTelemetry's
 * http.request.header.<name>. */
static enum MHD_Result record_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    header_walk *w = cls;
    exchange *x = w->x;
    char name[160];
    (void)kind;
    if (!key || is_secret(x->p, key) ||
        name_in(key, hop_headers, sizeof hop_headers / sizeof hop_headers[0]) ||
        w->recorded >= MAX_RECORDED_HEADERS || strlen(key) > 100 ||
        (value && strlen(value) > MAX_HEADER_VALUE)) {
        return MHD_YES;
    }
    size_t i, n = (size_t)snprintf(name, sizeof name, "http.request.header.%s", key);
    for (i = 0; i < n && i < sizeof name; i++) {
        name[i] = (char)tolower((unsigned char)name[i]);
    }
    if (deja_span_param_str(x->span, name, value ? value : "") == 0) {
        w->recorded++;
    }
    return MHD_YES;
}

/* The query string of the client's request, re-encoded ("" or "?a=b"). */
typedef struct query_walk {
    deja__buf q;
    CURL *easy;
} query_walk;

static enum MHD_Result each_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    query_walk *w = cls;
    (void)kind;
    char *k = curl_easy_escape(w->easy, key ? key : "", 0);
    char *v = value ? curl_easy_escape(w->easy, value, 0) : NULL;
    if (k) {
        deja__buf_append(&w->q, w->q.size ? "&" : "?", 1);
        deja__buf_append(&w->q, k, strlen(k));
        if (v) {
            deja__buf_append(&w->q, "=", 1);
            deja__buf_append(&w->q, v, strlen(v));
        }
    }
    curl_free(k);
    curl_free(v);
    return MHD_YES;
}

/* Set up and start the upstream transfer of `x`. */
static int start_upstream(exchange *x, struct MHD_Connection *c, const char *url,
                          const char *method)
{
    header_walk hw = {x, 0, 0};
    query_walk qw;
    memset(&qw, 0, sizeof qw);
    x->easy = curl_easy_init();
    x->multi = multi_take(x->p);
    if (!x->easy || !x->multi) {
        return deja__error_set(DEJA_ENOMEM, "proxy: cannot create a transfer");
    }
    qw.easy = x->easy;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, each_arg, &qw);
    if (asprintf(&x->url, "%s%s%.*s", x->p->upstream, url, (int)qw.q.size, deja__buf_chars(&qw.q)) <
        0) {
        x->url = NULL;
    }
    deja__buf_free(&qw.q);
    MHD_get_connection_values(c, MHD_HEADER_KIND, each_header, &hw);
    struct curl_slist *l = hw.failed ? NULL : curl_slist_append(x->req_headers, "Expect:");
    if (!x->url || !l) {
        return deja__error_set(DEJA_ENOMEM, "proxy: out of memory");
    }
    x->req_headers = l;
    curl_easy_setopt(x->easy, CURLOPT_URL, x->url);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->req_headers);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->curl_error);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)x->p->timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)x->p->connect_timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(x->easy, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, deja__buf_chars(&x->body));
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body.size);
        if (strcmp(method, "POST") != 0) {
            curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, method);
        }
    }
    if (curl_multi_add_handle(x->multi, x->easy) != CURLM_OK) {
        return deja__error_set(DEJA_ENOMEM, "proxy: cannot start the transfer");
    }
    int running = 0;
    curl_multi_perform(x->multi, &running);
    return 0;
}

/* Begin the trace of a recorded exchange and record its request. */
static void begin_trace(exchange *x, struct MHD_Connection *c, const char *url)
{
    header_walk hw = {x, 0, 0};
    proxy *p = x->p;
    int rc = deja__openai_begin(&x->span, p->tracer, x->op, deja__buf_chars(&x->body), x->body.size,
                                &x->stream_asked);
    if (rc != 0) {
        /* A model name the tracer refuses, or out of memory: forwarded, not
         * recorded, and counted so that the operator sees it. */
        deja__server_unrecorded(p->server, deja_error_last());
        return;
    }
    rc = deja_span_param_str(x->span, "url.path", url);
    if (rc == 0) {
        rc = deja_span_param_str(x->span, "server.address", p->upstream);
    }
    for (size_t i = 0; rc == 0 && i < p->ntags; i++) {
        rc = deja_span_tag(x->span, p->tags[i].key, p->tags[i].value);
    }
    if (rc == 0) {
        MHD_get_connection_values(c, MHD_HEADER_KIND, record_header, &hw);
    }
    if (rc != 0) {
        deja__server_unrecorded(p->server, deja_error_last());
        deja_span_abort(x->span);
        x->span = NULL;
    }
}

static enum MHD_Result proxy_handler(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version, const char *upload,
                                     size_t *upload_size, void **con_cls)
{
    proxy *p = cls;
    exchange *x = *con_cls;
    char msg[1024];
    (void)version;
    if (!x) {
        x = calloc(1, sizeof *x);
        if (!x) {
            return MHD_NO;
        }
        x->p = p;
        x->refs = 1;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        x->client_fd = ci ? ci->connect_fd : -1;
        x->post = strcmp(method, "POST") == 0;
        x->op = x->post ? deja__op_of_path(url) : DEJA__OP_NONE;
        *con_cls = x;
        atomic_fetch_add(&p->server->requests, 1);
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > p->max_request) {
            /* Refused before the body is read: a client that waits for
             * 100-continue never sends it; MHD closes the connection. */
            snprintf(msg, sizeof msg,
                     "deja proxy: the request body exceeds %zu bytes (--max-request)",
                     p->max_request);
            return fail(x, c, 413, "request_too_large", msg);
        }
        return MHD_YES;
    }
    if (x->answered) {
        *upload_size = 0; /* a refused body is read and dropped */
        return MHD_YES;
    }
    if (*upload_size > 0) {
        return deja__server_take_upload(&x->body, &x->too_large, p->max_request, upload,
                                        upload_size);
    }
    if (x->too_large) {
        snprintf(msg, sizeof msg, "deja proxy: the request body exceeds %zu bytes (--max-request)",
                 p->max_request);
        return fail(x, c, 413, "request_too_large", msg);
    }
    x->t0 = now_ns();
    if (start_upstream(x, c, url, method) != 0) {
        return fail(x, c, 500, "proxy_error", deja_error_last());
    }
    if (x->op != DEJA__OP_NONE) {
        begin_trace(x, c, url); /* while the upstream works */
    }
    pump(x, 0);
    if (x->client_gone) {
        return MHD_NO; /* nobody to answer; the upstream is dropped when the request ends */
    }
    if (!x->headers_done) {
        /* Refused, timed out, cut before answering, or the proxy stops. */
        int timeout = x->result == CURLE_OPERATION_TIMEDOUT;
        snprintf(msg, sizeof msg, "deja proxy: upstream %s: %s", x->p->upstream,
                 x->curl_error[0] ? x->curl_error : curl_easy_strerror(x->result));
        return fail(x, c, timeout ? 504 : 502, timeout ? "upstream_timeout" : "upstream_error",
                    msg);
    }
    struct MHD_Response *r;
    if (x->sse) {
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, relay_read, x, relay_free);
        if (!r) {
            return MHD_NO;
        }
        x->refs++;
    } else {
        pump(x, 2);
        if (x->client_gone) {
            return MHD_NO;
        }
        if (x->over_limit || x->result != CURLE_OK) {
            if (x->over_limit) {
                snprintf(msg, sizeof msg,
                         "deja proxy: the upstream's answer exceeds %zu bytes (--max-response)",
                         p->max_response);
            } else {
                snprintf(msg, sizeof msg, "deja proxy: upstream %s: %s", x->p->upstream,
                         x->curl_error[0] ? x->curl_error : curl_easy_strerror(x->result));
            }
            int timeout = x->result == CURLE_OPERATION_TIMEDOUT;
            return fail(x, c, timeout ? 504 : 502, timeout ? "upstream_timeout" : "upstream_error",
                        msg);
        }
        r = MHD_create_response_from_buffer(x->answer.size, (void *)deja__buf_chars(&x->answer),
                                            MHD_RESPMEM_PERSISTENT);
        if (!r) {
            return MHD_NO;
        }
    }
    copy_headers(x, r);
    x->answered = 1;
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)x->status, r);
    MHD_destroy_response(r);
    if (x->status >= 400) {
        atomic_fetch_add(&p->server->failed, 1);
    }
    return ok;
}

/* Non-zero when the `n` bytes at `s` are valid UTF-8 (no overlongs or
 * surrogates checked: the recorded text is shown, not interpreted). */
static int utf8_ok(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)s[i];
        size_t k = ch < 0x80           ? 0
                   : (ch >> 5) == 0x6  ? 1
                   : (ch >> 4) == 0xe  ? 2
                   : (ch >> 3) == 0x1e ? 3
                                       : 9;
        if (k == 9 || i + k >= n + (k == 0)) {
            return 0;
        }
        for (size_t j = 1; j <= k; j++) {
            if (((unsigned char)s[i + j] & 0xc0) != 0x80) {
                return 0;
            }
        }
        i += k + 1;
    }
    return 1;
}

/* deja__answer_outputs callback: add an output to the span. */
static int add_output(const deja_tensor *t, void *payload)
{
    return deja_span_add(payload, DEJA_OUTPUT, t);
}

/* When the piece holding byte `end` of the stream arrived (0 if unknown). */
static int64_t arrival_of(const exchange *x, size_t end)
{
    for (size_t i = 0; i < x->narrival; i++) {
        if (x->arrival_end[i] >= end) {
            return x->arrival_ns[i];
        }
    }
    return 0;
}

/* Why an exchange is an error trace, into `err` ("" when it is not one);
 * returns 1 when what the trace holds was cut short. */
static int failure_of(const exchange *x, const deja__answer *a, enum MHD_RequestTerminationCode toe,
                      char *err, size_t cap)
{
    const char *why = x->curl_error[0] ? x->curl_error : curl_easy_strerror(x->result);
    err[0] = '\0';
    if (x->client_gone || (x->sse && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !x->done)) {
        if (x->sse) {
            snprintf(err, cap,
                     "truncated: the client disconnected mid-stream after %zu bytes; the "
                     "upstream request was cancelled",
                     x->sent);
        } else {
            snprintf(err, cap,
                     "truncated: the client disconnected before the answer; the upstream "
                     "request was cancelled");
        }
        return 1;
    }
    if (x->over_limit) {
        snprintf(err, cap, "%sthe upstream's answer exceeds %zu bytes (--max-response)",
                 x->sse ? "truncated: " : "", x->p->max_response);
        return x->sse;
    }
    if (!x->headers_done) {
        snprintf(err, cap, "upstream %s: %s", x->p->upstream, why);
        return 0;
    }
    if (x->sse && (x->result != CURLE_OK || (!a->done && !a->error))) {
        snprintf(err, cap, "truncated: the upstream stream ended after %zu bytes: %s",
                 x->answer.size, x->result != CURLE_OK ? why : "no [DONE] event");
        return 1;
    }
    if (x->result != CURLE_OK) {
        snprintf(err, cap, "upstream %s: %s", x->p->upstream, why);
        return 0;
    }
    if (x->status >= 400 || a->error) {
        deja__http_error_text(err, cap, x->status, a);
    }
    return 0;
}

/* End the trace of a recorded exchange: the answer, its attributes and the
 * status, however the exchange ended. */
static void end_trace(exchange *x, enum MHD_RequestTerminationCode toe)
{
    proxy *p = x->p;
    deja_span *span = x->span;
    deja__answer a;
    char err[1200] = "";
    int truncated = 0;
    deja__answer_init(&a);
    x->span = NULL;
    if (x->answer.size > 0) {
        const char *answer = deja__buf_chars(&x->answer);
        deja__answer_parse(&a, x->op, answer, x->answer.size, x->sse);
        if (utf8_ok(answer, x->answer.size)) {
            deja_span_add_text(span, DEJA_INPUT, "http.response", answer, x->answer.size);
        } else {
            deja_span_add_bytes(span, DEJA_INPUT, "http.response", x->answer.data, x->answer.size);
        }
    }
    if (x->status > 0) {
        deja_span_param_num(span, "http.response.status_code", (double)x->status);
    }
    if (x->sse && a.first_token_end > 0) {
        int64_t t = arrival_of(x, a.first_token_end);
        if (t > 0) {
            deja_span_param_num(span, "gen_ai.server.time_to_first_token",
                                (double)(t - x->t0) / 1e9);
        }
    }
    deja__answer_record_params(&a, span);
    if (x->status >= 200 && x->status < 300 && !a.error) {
        deja__answer_outputs(&a, add_output, span);
    }
    truncated = failure_of(x, &a, toe, err, sizeof err);
    if (truncated) {
        deja_span_tag(span, "deja.truncated", "completion");
        atomic_fetch_add(&p->server->truncated, 1);
    }
    /* The server's name for what answered is the version of the model asked for. */
    if (a.model) {
        deja_span_model_version(span, a.model);
    }
    if (deja_span_end(span, err[0] ? DEJA_STATUS_ERROR : DEJA_STATUS_OK, err[0] ? err : NULL) ==
        0) {
        atomic_fetch_add(&p->server->recorded, 1);
    } else {
        deja__server_unrecorded(p->server, deja_error_last());
    }
    deja__answer_free(&a);
}

static void proxy_done(void *cls, struct MHD_Connection *c, void **con_cls,
                       enum MHD_RequestTerminationCode toe)
{
    exchange *x = *con_cls;
    (void)cls;
    (void)c;
    if (!x) {
        return;
    }
    *con_cls = NULL;
    if (x->span) {
        end_trace(x, toe);
    }
    /* Drop the upstream now, not when MHD frees the response: a client
     * that left must not keep the upstream generating. */
    drop_transfer(x);
    x->done = 1;
    exchange_release(x);
}

static void proxy_destroy(deja_server *server)
{
    proxy *p = server->impl;
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->ntags; i++) {
        free((char *)p->tags[i].key);
        free((char *)p->tags[i].value);
    }
    free(p->tags);
    for (size_t i = 0; i < p->nredact; i++) {
        free(p->redact[i]);
    }
    free(p->redact);
    free(p->upstream);
    for (size_t i = 0; i < p->npool; i++) {
        curl_multi_cleanup(p->pool[i]);
    }
    if (p->pool_lock_ok) {
        pthread_mutex_destroy(&p->pool_lock);
    }
    free(p);
}

int deja_proxy_start(deja_server **out, deja_tracer *tracer, const deja_proxy_options *opts)
{
    int rc = 0;
    deja_server *server = NULL;
    proxy *p = NULL;
    if (out) {
        *out = NULL;
    }
    if (!out || !tracer || !opts || opts->version != DEJA_PROXY_OPTIONS_VERSION) {
        return deja__error_set(DEJA_EINVAL, "proxy: a tracer and options (version %u) are needed",
                               DEJA_PROXY_OPTIONS_VERSION);
    }
    if (!opts->upstream || (strncmp(opts->upstream, "http://", 7) != 0 &&
                            strncmp(opts->upstream, "https://", 8) != 0)) {
        return deja__error_set(DEJA_EINVAL, "proxy: --upstream must be an http:// or https:// URL");
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return deja__error_set(DEJA_EIO, "proxy: cannot initialise libcurl");
    }
    server = calloc(1, sizeof *server);
    p = calloc(1, sizeof *p);
    if (!server || !p) {
        free(server);
        free(p);
        return deja__error_set(DEJA_ENOMEM, "proxy: out of memory");
    }
    server->impl = p;
    server->destroy = proxy_destroy;
    p->server = server;
    p->tracer = tracer;
    if (pthread_mutex_init(&p->pool_lock, NULL) != 0) {
        rc = deja__error_set(DEJA_EIO, "proxy: cannot create a lock");
        goto cleanup;
    }
    p->pool_lock_ok = 1;
    p->max_request = opts->max_request ? opts->max_request : (size_t)64 << 20;
    p->max_response = opts->max_response ? opts->max_response : (size_t)256 << 20;
    p->timeout_ms = opts->timeout_ms;
    p->connect_timeout_ms = opts->connect_timeout_ms;
    p->upstream = strdup(opts->upstream);
    p->tags = opts->ntags ? calloc(opts->ntags, sizeof *p->tags) : NULL;
    p->redact = opts->nredact_headers ? calloc(opts->nredact_headers, sizeof *p->redact) : NULL;
    if (!p->upstream || (opts->ntags && !p->tags) || (opts->nredact_headers && !p->redact)) {
        rc = deja__error_set(DEJA_ENOMEM, "proxy: out of memory");
        goto cleanup;
    }
    size_t ul = strlen(p->upstream);
    while (ul > 0 && p->upstream[ul - 1] == '/') {
        p->upstream[--ul] = '\0';
    }
    for (size_t i = 0; i < opts->ntags; i++) {
        p->tags[i].key = strdup(opts->tags[i].key);
        p->tags[i].value = strdup(opts->tags[i].value);
        p->ntags++;
        if (!p->tags[i].key || !p->tags[i].value) {
            rc = deja__error_set(DEJA_ENOMEM, "proxy: out of memory");
            goto cleanup;
        }
    }
    for (size_t i = 0; i < opts->nredact_headers; i++) {
        p->redact[i] = strdup(opts->redact_headers[i]);
        if (!p->redact[i]) {
            rc = deja__error_set(DEJA_ENOMEM, "proxy: out of memory");
            goto cleanup;
        }
        p->nredact++;
    }
    rc = deja__server_listen(server, opts->listen, opts->max_clients, proxy_handler, proxy_done, p);
    if (rc != 0) {
        goto cleanup;
    }
    *out = server;
    server = NULL;
cleanup:
    deja_server_stop(server);
    return rc;
}
