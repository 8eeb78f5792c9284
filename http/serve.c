/*
 * http/serve.c -- `deja serve`: a deja model as an OpenAI-compatible
 * endpoint.
 *
 * Every request runs the model through a recording determinism context
 * over a span, so that the model sees the same ctx as under `deja run`:
 * with --record the span is kept (and replays on the plugin bit for bit),
 * without it the span is thrown away. The request's `seed` becomes the
 * ctx's base seed, so the same seed gives the same completion. A streamed
 * answer is the finished completion sent word by word: the model ABI has
 * no streaming.
 *
 * Tokens are counted as characters (the example model is character-level).
 */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "http/server_internal.h"
#include "core/core.h"

/* Mixed into the request's seed: seed 0 must not mean "from the OS". */
#define SEED_SALT 0x9e3779b97f4a7c15ULL

typedef struct serve {
    deja_server *server;
    deja_model *model;
    int serialize; /* the plugin is not thread-safe: one inference at a time */
    pthread_mutex_t lock;
    int lock_ok;
    deja_tracer *tracer;
    int record;
    char *scratch; /* the private store of a server that records nothing */
    char served_as[256];
    char fingerprint[32];
    size_t max_request;
} serve;

/* One request: its body as it arrives. */
typedef struct request {
    deja__buf body;
    int too_large;
} request;

/* A prepared stream: the SSE events, handed out one per read. */
typedef struct stream_body {
    deja__buf sse;
    size_t pos;
} stream_body;

/* Number of UTF-8 characters in `s`. */
static int64_t utf8_chars(const char *s, size_t n)
{
    int64_t count = 0;
    for (size_t i = 0; i < n; i++) {
        count += ((unsigned char)s[i] & 0xc0) != 0x80;
    }
    return count;
}

/* nftw callback: remove what it is given. */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void serve_destroy(deja_server *server)
{
    serve *s = server->impl;
    if (!s) {
        return;
    }
    if (s->tracer && !s->record) {
        deja_tracer_close(s->tracer);
    }
    if (s->scratch) {
        nftw(s->scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(s->scratch);
    }
    deja_model_free(s->model);
    if (s->lock_ok) {
        pthread_mutex_destroy(&s->lock);
    }
    free(s);
}

/* The prompt of a request: the completions prompt (its first string when an
 * array), or the chat messages' contents joined by newlines. */
static int prompt_of(json_t *req, deja__op op, deja__buf *out)
{
    int rc = 0;
    if (op == DEJA__OP_COMPLETION) {
        json_t *p = json_object_get(req, "prompt");
        if (json_is_array(p)) {
            p = json_array_get(p, 0);
        }
        if (!json_is_string(p)) {
            return DEJA_EINVAL;
        }
        return deja__buf_append(out, json_string_value(p), json_string_length(p));
    }
    json_t *msgs = json_object_get(req, "messages");
    size_t i;
    json_t *m;
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        return DEJA_EINVAL;
    }
    json_array_foreach(msgs, i, m)
    {
        json_t *content = json_object_get(m, "content");
        if (i > 0 && (rc = deja__buf_append(out, "\n", 1)) != 0) {
            return rc;
        }
        if (json_is_string(content)) {
            rc = deja__buf_append(out, json_string_value(content), json_string_length(content));
        } else if (json_is_array(content)) {
            size_t k;
            json_t *part;
            json_array_foreach(content, k, part)
            {
                json_t *t = json_object_get(part, "text");
                if (json_is_string(t) && rc == 0) {
                    rc = deja__buf_append(out, json_string_value(t), json_string_length(t));
                }
            }
        }
        if (rc != 0) {
            return rc;
        }
    }
    return deja__buf_append(out, "", 0);
}

/* Give the model the request's sampling params under their plain names. */
static int params_of(json_t *req, deja_span *span, const char **stop)
{
    static const char *const numeric[] = {"temperature", "top_p", "top_k", "max_tokens"};
    int rc = 0;
    for (size_t i = 0; i < sizeof numeric / sizeof numeric[0] && rc == 0; i++) {
        json_t *v = json_object_get(req, numeric[i]);
        if (json_is_number(v)) {
            rc = deja_span_param_num(span, numeric[i], json_number_value(v));
        }
    }
    json_t *mct = json_object_get(req, "max_completion_tokens");
    if (rc == 0 && !json_object_get(req, "max_tokens") && json_is_number(mct)) {
        rc = deja_span_param_num(span, "max_tokens", json_number_value(mct));
    }
    json_t *st = json_object_get(req, "stop");
    if (json_is_array(st)) {
        st = json_array_get(st, 0);
    }
    *stop = json_string_value(st);
    if (rc == 0 && *stop) {
        rc = deja_span_param_str(span, "stop", *stop);
    }
    return rc;
}

/* Why the model stopped: its own "finish_reason" output, else "stop" when
 * the completion ends with the stop string, else "length" when it reached
 * max_tokens, else "stop". */
static const char *finish_of(const deja_tensor *outs, size_t n, const char *text, size_t len,
                             const char *stop, json_t *req, char *buf, size_t cap)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(outs[i].name, "finish_reason") == 0 && outs[i].dtype == DEJA_UTF8) {
            snprintf(buf, cap, "%.*s", (int)outs[i].size, (const char *)outs[i].data);
            return buf;
        }
    }
    size_t sl = stop ? strlen(stop) : 0;
    if (sl > 0 && len >= sl && memcmp(text + len - sl, stop, sl) == 0) {
        return "stop";
    }
    json_t *mt = json_object_get(req, "max_tokens");
    if (!mt) {
        mt = json_object_get(req, "max_completion_tokens");
    }
    if (json_is_number(mt) && (double)utf8_chars(text, len) >= json_number_value(mt)) {
        return "length";
    }
    return "stop";
}

/* Append one SSE event holding `o` (consumed). */
static int sse_event(deja__buf *sse, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) {
        return deja__error_set(DEJA_ENOMEM, "serve: out of memory");
    }
    int rc = deja__buf_append(sse, "data: ", 6);
    if (rc == 0) {
        rc = deja__buf_append(sse, text, strlen(text));
    }
    if (rc == 0) {
        rc = deja__buf_append(sse, "\n\n", 2);
    }
    free(text);
    return rc;
}

/* One chunk of a stream: a piece of text (or the finish reason). */
static json_t *chunk_of(const serve *s, deja__op op, const char *id, json_int_t created,
                        const char *piece, size_t len, const char *finish, int first)
{
    json_t *choice;
    if (op == DEJA__OP_CHAT) {
        json_t *delta = json_object();
        if (first) {
            json_object_set_new(delta, "role", json_string("assistant"));
        }
        if (piece) {
            json_object_set_new(delta, "content", json_stringn(piece, len));
        }
        choice = json_pack("{s:i, s:o, s:o}", "index", 0, "delta", delta, "finish_reason",
                           finish ? json_string(finish) : json_null());
    } else {
        choice =
            json_pack("{s:i, s:s%, s:o}", "index", 0, "text", piece ? piece : "", piece ? len : 0,
                      "finish_reason", finish ? json_string(finish) : json_null());
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o]}", "id", id, "object",
                     op == DEJA__OP_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     created, "model", s->served_as, "system_fingerprint", s->fingerprint,
                     "choices", choice);
}

/* Build the SSE body of a streamed answer: the text word by word, then the
 * finish reason, usage when asked, and [DONE]. */
static int build_stream(const serve *s, deja__op op, const char *id, json_int_t created,
                        const char *text, size_t len, const char *finish, json_t *usage,
                        int with_usage, deja__buf *sse)
{
    int rc = 0;
    size_t p = 0;
    if (op == DEJA__OP_CHAT) {
        rc = sse_event(sse, chunk_of(s, op, id, created, "", 0, NULL, 1));
    }
    while (p < len && rc == 0) {
        size_t q = p;
        while (q < len && text[q] != ' ') {
            q++;
        }
        if (q < len) {
            q++; /* the space goes with its word */
        }
        rc = sse_event(sse, chunk_of(s, op, id, created, text + p, q - p, NULL, 0));
        p = q;
    }
    if (rc == 0) {
        rc = sse_event(sse, chunk_of(s, op, id, created, NULL, 0, finish, 0));
    }
    if (rc == 0 && with_usage) {
        rc = sse_event(sse,
                       json_pack("{s:s, s:s, s:I, s:s, s:s, s:[], s:O}", "id", id, "object",
                                 op == DEJA__OP_CHAT ? "chat.completion.chunk" : "text_completion",
                                 "created", created, "model", s->served_as, "system_fingerprint",
                                 s->fingerprint, "choices", "usage", usage));
    }
    if (rc == 0) {
        rc = deja__buf_append(sse, "data: [DONE]\n\n", 14);
    }
    return rc;
}

/* MHD content reader of a stream: one event per call. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_body *b = cls;
    (void)pos;
    if (b->pos >= b->sse.size) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    const char *start = deja__buf_chars(&b->sse) + b->pos;
    const char *end = memmem(start, b->sse.size - b->pos, "\n\n", 2);
    size_t n = end ? (size_t)(end - start) + 2 : b->sse.size - b->pos;
    if (n > max) {
        n = max;
    }
    memcpy(buf, start, n);
    b->pos += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream_body *b = cls;
    deja__buf_free(&b->sse);
    free(b);
}

/* Run the model on one parsed request and queue the answer. */
static enum MHD_Result infer(serve *s, struct MHD_Connection *c, deja__op op, json_t *req)
{
    enum MHD_Result ret = MHD_NO;
    deja__buf prompt = {0};
    deja_span *span = NULL;
    deja_ctx *ctx = NULL;
    char msg[1024], idtext[DEJA_ID_STRLEN + 1], id[64], finbuf[64];
    const char *stop = NULL;
    int rc;
    const char *model = json_string_value(json_object_get(req, "model"));
    if (json_object_get(req, "model") && !model) {
        return deja__server_error(c, 400, "invalid_request_error", NULL, "model must be a string");
    }
    if (model && strcmp(model, deja_model_name(s->model)) != 0 &&
        strcmp(model, s->served_as) != 0) {
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist (this server serves '%s')",
                 model, deja_model_name(s->model));
        return deja__server_error(c, 404, "invalid_request_error", "model_not_found", msg);
    }
    json_t *n = json_object_get(req, "n");
    if (n && !(json_is_integer(n) && json_integer_value(n) == 1)) {
        return deja__server_error(c, 400, "invalid_request_error", NULL,
                                  "deja serve answers n = 1 only");
    }
    rc = prompt_of(req, op, &prompt);
    if (rc == DEJA_EINVAL) {
        return deja__server_error(c, 400, "invalid_request_error", NULL,
                                  op == DEJA__OP_CHAT ? "messages must be a non-empty array"
                                                      : "prompt must be a string");
    }
    if (rc != 0) {
        goto cleanup;
    }
    json_t *seed = json_object_get(req, "seed");
    if (seed && !json_is_integer(seed)) {
        ret = deja__server_error(c, 400, "invalid_request_error", NULL, "seed must be an integer");
        goto cleanup;
    }
    uint64_t base = 0;
    if (seed) {
        base = (uint64_t)json_integer_value(seed) ^ SEED_SALT;
        base = base ? base : SEED_SALT;
    }
    size_t dsize = 0;
    const uint8_t *digest = deja_model_digest(s->model, &dsize);
    rc = deja_span_begin(&span, s->tracer, deja_model_name(s->model), deja_model_version(s->model));
    if (rc == 0) {
        rc = deja_span_model_digest(span, digest, dsize);
    }
    if (rc == 0) {
        rc = deja_span_add_text(span, DEJA_INPUT, "prompt", deja__buf_chars(&prompt), prompt.size);
    }
    if (rc == 0) {
        rc = params_of(req, span, &stop);
    }
    if (rc == 0 && seed) {
        rc = deja_span_param_num(span, "seed", (double)json_integer_value(seed));
    }
    if (rc == 0) {
        rc = deja_span_tag(span, "deja.served_by", "deja serve");
    }
    if (rc == 0) {
        rc = deja_ctx_record(&ctx, span, base);
    }
    if (rc != 0) {
        goto cleanup;
    }
    deja_id_format(deja_span_id(span), idtext);
    snprintf(id, sizeof id, "%s-%s", op == DEJA__OP_CHAT ? "chatcmpl" : "cmpl", idtext);
    if (s->serialize) {
        pthread_mutex_lock(&s->lock);
    }
    rc = deja_model_infer(s->model, ctx);
    if (s->serialize) {
        pthread_mutex_unlock(&s->lock);
    }
    if (rc != 0) {
        snprintf(msg, sizeof msg, "%s", deja_error_last());
        deja_ctx_free(ctx);
        ctx = NULL;
        if (s->record) {
            deja_span_end(span, DEJA_STATUS_ERROR, msg);
            atomic_fetch_add(&s->server->recorded, 1);
        } else {
            deja_span_abort(span);
        }
        span = NULL;
        atomic_fetch_add(&s->server->failed, 1);
        ret = deja__server_error(c, 500, "server_error", NULL, msg);
        goto cleanup;
    }
    size_t nouts = 0;
    const deja_tensor *outs = deja_ctx_outputs(ctx, &nouts);
    const char *text = "";
    size_t len = 0;
    for (size_t i = 0; i < nouts; i++) {
        if (outs[i].dtype == DEJA_UTF8 &&
            (strcmp(outs[i].name, "completion") == 0 || text[0] == '\0')) {
            text = outs[i].data ? (const char *)outs[i].data : "";
            len = outs[i].size;
        }
    }
    const char *finish = finish_of(outs, nouts, text, len, stop, req, finbuf, sizeof finbuf);
    json_int_t created = (json_int_t)time(NULL);
    json_t *usage = json_pack(
        "{s:I, s:I, s:I}", "prompt_tokens",
        (json_int_t)utf8_chars(deja__buf_chars(&prompt), prompt.size), "completion_tokens",
        (json_int_t)utf8_chars(text, len), "total_tokens",
        (json_int_t)(utf8_chars(deja__buf_chars(&prompt), prompt.size) + utf8_chars(text, len)));
    int streaming = json_is_true(json_object_get(req, "stream"));
    if (streaming) {
        json_t *so = json_object_get(req, "stream_options");
        stream_body *b = calloc(1, sizeof *b);
        struct MHD_Response *r = NULL;
        if (b && build_stream(s, op, id, created, text, len, finish, usage,
                              json_is_true(json_object_get(so, "include_usage")), &b->sse) == 0) {
            r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, b,
                                                  stream_free);
        }
        if (!r) {
            if (b) {
                stream_free(b);
            }
        } else {
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
            MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
            ret = MHD_queue_response(c, 200, r);
            MHD_destroy_response(r);
        }
    } else {
        json_t *choice =
            op == DEJA__OP_CHAT
                ? json_pack("{s:i, s:{s:s, s:s%}, s:s, s:n}", "index", 0, "message", "role",
                            "assistant", "content", text, len, "finish_reason", finish, "logprobs")
                : json_pack("{s:i, s:s%, s:s, s:n}", "index", 0, "text", text, len, "finish_reason",
                            finish, "logprobs");
        ret = deja__server_json(
            c, 200,
            json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o], s:O}", "id", id, "object",
                      op == DEJA__OP_CHAT ? "chat.completion" : "text_completion", "created",
                      created, "model", s->served_as, "system_fingerprint", s->fingerprint,
                      "choices", choice, "usage", usage));
    }
    json_decref(usage);
    deja_ctx_free(ctx);
    ctx = NULL;
    if (s->record) {
        deja_span_end(span, DEJA_STATUS_OK, NULL);
        atomic_fetch_add(&s->server->recorded, 1);
    } else {
        deja_span_abort(span);
    }
    span = NULL;
cleanup:
    deja_ctx_free(ctx);
    deja_span_abort(span);
    deja__buf_free(&prompt);
    return ret;
}

static enum MHD_Result serve_handler(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version, const char *upload,
                                     size_t *upload_size, void **con_cls)
{
    serve *s = cls;
    request *r = *con_cls;
    (void)version;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) {
            return MHD_NO;
        }
        *con_cls = r;
        atomic_fetch_add(&s->server->requests, 1);
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->max_request) {
            r->too_large = 1;
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        return deja__server_take_upload(&r->body, &r->too_large, s->max_request, upload,
                                        upload_size);
    }
    if (r->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body exceeds %zu bytes", s->max_request);
        atomic_fetch_add(&s->server->failed, 1);
        return deja__server_error(c, 413, "invalid_request_error", "request_too_large", msg);
    }
    deja__op op = deja__op_of_path(url);
    if (strcmp(method, "GET") == 0 && strcmp(url, "/v1/models") == 0) {
        return deja__server_json(c, 200,
                                 json_pack("{s:s, s:[{s:s, s:s, s:i, s:s}]}", "object", "list",
                                           "data", "id", deja_model_name(s->model), "object",
                                           "model", "created", 0, "owned_by", "deja"));
    }
    if (strcmp(method, "POST") != 0 || (op != DEJA__OP_CHAT && op != DEJA__OP_COMPLETION)) {
        atomic_fetch_add(&s->server->failed, 1);
        return deja__server_error(c, 404, "invalid_request_error", "not_found",
                                  "deja serve answers GET /v1/models, POST /v1/chat/completions "
                                  "and POST /v1/completions");
    }
    json_error_t jerr;
    json_t *req = json_loadb(deja__buf_chars(&r->body), r->body.size, 0, &jerr);
    if (!json_is_object(req)) {
        char msg[256];
        snprintf(msg, sizeof msg, "the body is not a JSON object: %s", jerr.text);
        json_decref(req);
        atomic_fetch_add(&s->server->failed, 1);
        return deja__server_error(c, 400, "invalid_request_error", NULL, msg);
    }
    enum MHD_Result ret = infer(s, c, op, req);
    json_decref(req);
    return ret;
}

static void serve_done(void *cls, struct MHD_Connection *c, void **con_cls,
                       enum MHD_RequestTerminationCode toe)
{
    request *r = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (r) {
        deja__buf_free(&r->body);
        free(r);
        *con_cls = NULL;
    }
}

/* Open the tracer of a server that records nothing: a private store in a
 * temporary directory, removed at stop, into which no span is ever ended. */
static int open_scratch(serve *s)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/deja-serve-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(path)) {
        return deja__error_set(DEJA_EIO, "serve: cannot create a scratch directory in %s",
                               tmp && *tmp ? tmp : "/tmp");
    }
    s->scratch = strdup(path);
    if (!s->scratch) {
        rmdir(path);
        return deja__error_set(DEJA_ENOMEM, "serve: out of memory");
    }
    return deja_tracer_open(&s->tracer, s->scratch, NULL);
}

int deja_serve_start(deja_server **out, const deja_serve_options *opts)
{
    int rc = 0;
    deja_server *server = NULL;
    serve *s = NULL;
    if (out) {
        *out = NULL;
    }
    if (!out || !opts || opts->version != DEJA_SERVE_OPTIONS_VERSION || !opts->model) {
        return deja__error_set(DEJA_EINVAL, "serve: options (version %u) and a model are needed",
                               DEJA_SERVE_OPTIONS_VERSION);
    }
    server = calloc(1, sizeof *server);
    s = calloc(1, sizeof *s);
    if (!server || !s) {
        free(server);
        free(s);
        return deja__error_set(DEJA_ENOMEM, "serve: out of memory");
    }
    server->impl = s;
    server->destroy = serve_destroy;
    s->server = server;
    s->max_request = opts->max_request ? opts->max_request : (size_t)16 << 20;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        rc = deja__error_set(DEJA_EIO, "serve: cannot create a lock");
        goto cleanup;
    }
    s->lock_ok = 1;
    rc = deja_model_load(&s->model, opts->model);
    if (rc != 0) {
        goto cleanup;
    }
    s->serialize = !deja_model_thread_safe(s->model);
    snprintf(s->served_as, sizeof s->served_as, "%s-v%s", deja_model_name(s->model),
             deja_model_version(s->model));
    {
        /* What answered: name, version and weights, as OpenAI's fingerprint. */
        size_t dsize = 0;
        const uint8_t *digest = deja_model_digest(s->model, &dsize);
        XXH3_state_t *st = XXH3_createState();
        if (!st) {
            rc = deja__error_set(DEJA_ENOMEM, "serve: out of memory");
            goto cleanup;
        }
        XXH3_64bits_reset(st);
        XXH3_64bits_update(st, deja_model_name(s->model), strlen(deja_model_name(s->model)) + 1);
        XXH3_64bits_update(st, deja_model_version(s->model),
                           strlen(deja_model_version(s->model)) + 1);
        XXH3_64bits_update(st, digest, dsize);
        snprintf(s->fingerprint, sizeof s->fingerprint, "fp_%012llx",
                 (unsigned long long)(XXH3_64bits_digest(st) >> 16));
        XXH3_freeState(st);
    }
    if (opts->record) {
        s->tracer = opts->record;
        s->record = 1;
    } else if ((rc = open_scratch(s)) != 0) {
        goto cleanup;
    }
    rc = deja__server_listen(server, opts->listen, opts->max_clients, serve_handler, serve_done, s);
    if (rc != 0) {
        goto cleanup;
    }
    *out = server;
    server = NULL;
cleanup:
    deja_server_stop(server);
    return rc;
}
