/*
 * tests/test_http.c -- deja proxy and deja serve, in process, on loopback:
 * a real libcurl client -> deja proxy -> deja serve (textgen-v1), and a
 * scripted upstream (fake_upstream below) for the faults a real server
 * would rarely show on demand: closing mid-stream, stalling, never
 * answering. Every server listens on 127.0.0.1 with an ephemeral port and
 * is stopped by the test that started it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Before cmocka.h, whose fail() macro would rewrite deja_model.h's. */
#include "http/http_internal.h"

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "cli_harness.h"
#include "deja.h"

/* A temporary directory for one case, removed by tmpdir_remove(). */
typedef struct tmpdir {
    char path[256];
} tmpdir;

static int tmpdir_make(tmpdir *d)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(d->path, sizeof d->path, "%s/deja-http-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(d->path) ? 0 : -1;
}

static void tmpdir_remove(tmpdir *d)
{
    cli_rm_rf(d->path);
}

/* ------------------------------------------------------------------------
 * A client
 * ---------------------------------------------------------------------- */

typedef struct reply {
    long status;
    char *body;
    size_t len;
    size_t cap;
    size_t stop_after; /* abort the transfer once this many bytes came (0: never) */
    long timeout_ms;   /* give up after this long (0: 60 s) */
    CURLcode result;
} reply;

static size_t reply_write(char *data, size_t size, size_t n, void *cls)
{
    reply *r = cls;
    size_t len = size * n;
    if (r->len + len + 1 > r->cap) {
        size_t cap = (r->len + len + 1) * 2;
        char *grown = realloc(r->body, cap);
        if (!grown)
            return 0;
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = '\0';
    if (r->stop_after && r->len >= r->stop_after)
        return 0; /* the client leaves */
    return len;
}

/* POST `body` (or GET when NULL) to `url` with extra `headers` (NULL-ended). */
static void http_call(reply *r, const char *url, const char *body, const char *const *headers)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    assert_non_null(c);
    h = curl_slist_append(h, "Content-Type: application/json");
    for (size_t i = 0; headers && headers[i]; i++)
        h = curl_slist_append(h, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms ? r->timeout_ms : 60000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, reply_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    r->result = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (!r->body) {
        r->body = calloc(1, 1);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void reply_free(reply *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* The completion text of a JSON answer (chat or completions), malloc'd. */
static char *completion_of(const char *body)
{
    json_error_t e;
    json_t *o = json_loads(body, 0, &e);
    json_t *c0 = json_array_get(json_object_get(o, "choices"), 0);
    json_t *t = json_object_get(json_object_get(c0, "message"), "content");
    if (!t)
        t = json_object_get(c0, "text");
    char *out = strdup(json_string_value(t) ? json_string_value(t) : "(none)");
    json_decref(o);
    return out;
}

/* The completion assembled from an SSE body, malloc'd. */
static char *completion_of_stream(const char *body, int *done)
{
    size_t cap = 1, len = 0;
    char *out = calloc(1, 1);
    const char *p = body;
    *done = 0;
    while ((p = strstr(p, "data: ")) != NULL) {
        p += 6;
        const char *end = strstr(p, "\n\n");
        if (!end)
            break;
        if (strncmp(p, "[DONE]", 6) == 0) {
            *done = 1;
            break;
        }
        json_error_t e;
        json_t *o = json_loadb(p, (size_t)(end - p), 0, &e);
        json_t *c0 = json_array_get(json_object_get(o, "choices"), 0);
        json_t *t = json_object_get(json_object_get(c0, "delta"), "content");
        if (!t)
            t = json_object_get(c0, "text");
        if (json_is_string(t)) {
            size_t n = json_string_length(t);
            if (len + n + 1 > cap) {
                cap = (len + n + 1) * 2;
                out = realloc(out, cap);
            }
            memcpy(out + len, json_string_value(t), n);
            len += n;
            out[len] = '\0';
        }
        json_decref(o);
        p = end;
    }
    return out;
}

/* ------------------------------------------------------------------------
 * The servers
 * ---------------------------------------------------------------------- */

typedef struct rig {
    tmpdir dir;
    char store[4096];
    deja_tracer *tracer;
    deja_server *serve;
    deja_server *proxy;
    char serve_url[128]; /* http://127.0.0.1:P */
    char proxy_url[128];
} rig;

/* Start deja serve (textgen-v1, unless `upstream` is given) and a proxy in
 * front of it (or of `upstream`), recording into a new store. */
static void rig_start(rig *g, const char *upstream, deja_proxy_options *po)
{
    deja_proxy_options dflt = DEJA_PROXY_OPTIONS_INIT;
    memset(g, 0, sizeof *g);
    assert_int_equal(tmpdir_make(&g->dir), 0);
    snprintf(g->store, sizeof g->store, "%s/s.store", g->dir.path);
    assert_int_equal(deja_tracer_open(&g->tracer, g->store, NULL), 0);
    if (!upstream) {
        deja_serve_options so = DEJA_SERVE_OPTIONS_INIT;
        so.listen = "127.0.0.1:0";
        so.model = "textgen-v1";
        assert_int_equal(deja_serve_start(&g->serve, &so), 0);
        snprintf(g->serve_url, sizeof g->serve_url, "http://127.0.0.1:%u",
                 deja_server_port(g->serve));
        upstream = g->serve_url;
    }
    if (!po)
        po = &dflt;
    po->listen = "127.0.0.1:0";
    po->upstream = upstream;
    assert_int_equal(deja_proxy_start(&g->proxy, g->tracer, po), 0);
    snprintf(g->proxy_url, sizeof g->proxy_url, "http://127.0.0.1:%u", deja_server_port(g->proxy));
}

/* Stop the servers and flush the traces (the store stays for reading). */
static void rig_stop_servers(rig *g)
{
    deja_server_stop(g->proxy);
    deja_server_stop(g->serve);
    g->proxy = g->serve = NULL;
    deja_tracer_close(g->tracer);
    g->tracer = NULL;
}

static void rig_free(rig *g)
{
    rig_stop_servers(g);
    tmpdir_remove(&g->dir);
}

/* Every trace of the store, payloads loaded, oldest first. */
typedef struct traces {
    deja_trace **v;
    size_t n;
    deja_store *store;
} traces;

static int collect(const deja_trace *t, void *payload)
{
    traces *ts = payload;
    deja_trace *full = NULL;
    assert_int_equal(deja_trace_get(ts->store, &t->id, &full), 0);
    ts->v = realloc(ts->v, (ts->n + 1) * sizeof *ts->v);
    memmove(ts->v + 1, ts->v, ts->n * sizeof *ts->v); /* listed newest first */
    ts->v[0] = full;
    ts->n++;
    return 0;
}

static void traces_load(traces *ts, const char *store)
{
    deja_filter f = DEJA_FILTER_INIT;
    memset(ts, 0, sizeof *ts);
    assert_int_equal(deja_store_open(&ts->store, store, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_list(ts->store, &f, collect, NULL, ts), 0);
}

static void traces_free(traces *ts)
{
    for (size_t i = 0; i < ts->n; i++)
        deja_trace_free(ts->v[i]);
    free(ts->v);
    deja_store_close(ts->store);
}

static const deja_param *param(const deja_trace *t, const char *key)
{
    for (size_t i = 0; i < t->nparams; i++)
        if (strcmp(t->params[i].key, key) == 0)
            return &t->params[i];
    return NULL;
}

static const deja_tensor *tensor(const deja_tensor *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

/* The trace whose string param `key` is `value` and, when `flag_key` is
 * not NULL, whose boolean param `flag_key` is `flag` (the store lists
 * traces of one millisecond in any order). */
static const deja_trace *find_trace(const traces *ts, const char *key, const char *value,
                                    const char *flag_key, int flag)
{
    for (size_t i = 0; i < ts->n; i++) {
        const deja_trace *t = ts->v[i];
        const deja_param *p = param(t, key);
        const deja_param *f = flag_key ? param(t, flag_key) : NULL;
        if (p && p->kind == DEJA_PARAM_STR && strcmp(p->str, value) == 0 &&
            (!flag_key || (f ? f->flag : 0) == flag))
            return t;
    }
    fail_msg("no trace with %s=%s", key, value);
    return NULL;
}

static int has_tag(const deja_trace *t, const char *key, const char *value)
{
    for (size_t i = 0; i < t->ntags; i++)
        if (strcmp(t->tags[i].key, key) == 0 && strcmp(t->tags[i].value, value) == 0)
            return 1;
    return 0;
}

/* Non-zero when `needle` occurs anywhere in the trace: params, tags,
 * tensors, error. */
static int trace_contains(const deja_trace *t, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i < t->nparams; i++)
        if (strstr(t->params[i].key, needle) ||
            (t->params[i].kind == DEJA_PARAM_STR && strstr(t->params[i].str, needle)))
            return 1;
    for (size_t i = 0; i < t->ntags; i++)
        if (strstr(t->tags[i].value, needle) || strstr(t->tags[i].key, needle))
            return 1;
    for (int side = 0; side < 2; side++) {
        const deja_tensor *v = side ? t->outputs : t->inputs;
        size_t nv = side ? t->noutputs : t->ninputs;
        for (size_t i = 0; i < nv; i++)
            if (v[i].size >= n && memmem(v[i].data, v[i].size, needle, n))
                return 1;
    }
    return t->error && strstr(t->error, needle) != NULL;
}

static int text_is(const deja_tensor *t, const char *text)
{
    return t && t->dtype == DEJA_UTF8 && t->size == strlen(text) &&
           memcmp(t->data, text, t->size) == 0;
}

static const char chat_body[] =
    "{\"model\":\"textgen\",\"messages\":[{\"role\":\"system\",\"content\":\"Tell a fable.\"},"
    "{\"role\":\"user\",\"content\":\"The fox\"}],\"seed\":7,\"max_tokens\":60,"
    "\"temperature\":0.7,\"top_k\":8,\"stop\":[\"zzz\"]%s}";

/* ------------------------------------------------------------------------
 * Recording
 * ---------------------------------------------------------------------- */

/* A chat completion through the proxy: the client gets serve's answer
 * unchanged, the trace holds the messages, params under the GenAI names,
 * completion, finish reason, usage, fingerprint, model version; no
 * secret header reaches the store. */
static void test_http__proxy_records_chat(void **state)
{
    (void)state;
    rig g;
    reply direct = {0}, via = {0};
    char url[256], body[1024];
    const char *redact[] = {"X-Tenant-Secret"};
    deja_proxy_options po = DEJA_PROXY_OPTIONS_INIT;
    po.redact_headers = redact;
    po.nredact_headers = 1;
    deja_tag tag = {"env", "test"};
    po.tags = &tag;
    po.ntags = 1;
    const char *secrets[] = {"Authorization: Bearer sk-SECRET-1",
                             "api-key: SECRET-2",
                             "Cookie: session=SECRET-3",
                             "X-Tenant-Secret: SECRET-4",
                             "X-Api-Key: SECRET-5",
                             "User-Agent: deja-test",
                             NULL};
    rig_start(&g, NULL, &po);
    snprintf(body, sizeof body, chat_body, "");
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.serve_url);
    http_call(&direct, url, body, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    http_call(&via, url, body, secrets);
    assert_int_equal(direct.status, 200);
    assert_int_equal(via.status, 200);
    char *want = completion_of(direct.body);
    char *got = completion_of(via.body);
    assert_string_equal(got, want); /* same seed, same completion */
    rig_stop_servers(&g);

    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    const deja_trace *t = ts.v[0];
    assert_int_equal(t->status, DEJA_STATUS_OK);
    assert_string_equal(t->model_name, "textgen");
    assert_string_equal(t->model_version, "textgen-v1");
    assert_true(text_is(tensor(t->outputs, t->noutputs, "completion"), want));
    assert_true(text_is(tensor(t->outputs, t->noutputs, "finish_reason"), "length"));
    assert_true(text_is(tensor(t->inputs, t->ninputs, "prompt"), "The fox"));
    assert_true(text_is(tensor(t->inputs, t->ninputs, "message.0.system"), "Tell a fable."));
    assert_true(text_is(tensor(t->inputs, t->ninputs, "http.request"), body));
    assert_non_null(tensor(t->inputs, t->ninputs, "http.response"));
    assert_string_equal(param(t, "gen_ai.request.model")->str, "textgen");
    assert_string_equal(param(t, "gen_ai.operation.name")->str, "chat");
    assert_true(param(t, "gen_ai.request.temperature")->num == 0.7);
    assert_true(param(t, "gen_ai.request.max_tokens")->num == 60);
    assert_true(param(t, "gen_ai.request.top_k")->num == 8);
    assert_true(param(t, "gen_ai.request.seed")->num == 7);
    assert_string_equal(param(t, "gen_ai.request.stop_sequences")->str, "[\"zzz\"]");
    assert_string_equal(param(t, "gen_ai.response.finish_reasons")->str, "[\"length\"]");
    assert_string_equal(param(t, "gen_ai.response.model")->str, "textgen-v1");
    assert_true(param(t, "gen_ai.usage.output_tokens")->num == 60);
    assert_true(param(t, "gen_ai.usage.input_tokens")->num > 0);
    assert_non_null(param(t, "gen_ai.openai.response.system_fingerprint"));
    assert_true(param(t, "http.response.status_code")->num == 200);
    assert_string_equal(param(t, "http.request.header.user-agent")->str, "deja-test");
    assert_int_equal(t->nseeds, 1);
    assert_int_equal(t->seeds[0].value, 7);
    assert_true(has_tag(t, "env", "test"));
    assert_false(trace_contains(t, "SECRET"));
    assert_false(trace_contains(t, "authorization"));
    assert_false(trace_contains(t, "cookie"));
    /* The bug report says how to replay it: against the endpoint. */
    char id[DEJA_ID_STRLEN + 1], want_cmd[256];
    deja_id_format(&t->id, id);
    snprintf(want_cmd, sizeof want_cmd, "deja replay %s --model %s/v1\n", id, g.serve_url);
    cli_run show;
    cli_exec(&show, NULL, NULL, "--store", g.store, "show", id, "--md", NULL);
    assert_int_equal(show.status, 0);
    assert_non_null(strstr(show.out, want_cmd));
    cli_run_free(&show);
    traces_free(&ts);
    free(want);
    free(got);
    reply_free(&direct);
    reply_free(&via);
    rig_free(&g);
}

/* A streamed chat completion: the client gets every event and [DONE], the
 * trace assembles the same completion as the non-streamed answer, with a
 * time to first token. A completions request and a passthrough GET too. */
static void test_http__proxy_records_stream(void **state)
{
    (void)state;
    rig g;
    reply plain = {0}, stream = {0}, models = {0}, comp = {0};
    char url[256], body[1024];
    int done = 0;
    rig_start(&g, NULL, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    snprintf(body, sizeof body, chat_body, "");
    http_call(&plain, url, body, NULL);
    snprintf(body, sizeof body, chat_body, ",\"stream\":true");
    http_call(&stream, url, body, NULL);
    assert_int_equal(stream.status, 200);
    char *want = completion_of(plain.body);
    char *got = completion_of_stream(stream.body, &done);
    assert_true(done);
    assert_string_equal(got, want);
    snprintf(url, sizeof url, "%s/v1/models", g.proxy_url);
    http_call(&models, url, NULL, NULL);
    assert_int_equal(models.status, 200);
    assert_non_null(strstr(models.body, "\"textgen\""));
    snprintf(url, sizeof url, "%s/v1/completions", g.proxy_url);
    http_call(&comp, url,
              "{\"model\":\"textgen\",\"prompt\":\"A crow\",\"seed\":1,\"max_tokens\":20}", NULL);
    assert_int_equal(comp.status, 200);
    char *comp_text = completion_of(comp.body);
    rig_stop_servers(&g);

    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 3); /* GET /v1/models is not recorded */
    const deja_trace *t =
        find_trace(&ts, "gen_ai.operation.name", "chat", "deja.request.stream", 1);
    assert_int_equal(t->status, DEJA_STATUS_OK);
    assert_true(param(t, "deja.request.stream")->flag);
    assert_true(text_is(tensor(t->outputs, t->noutputs, "completion"), want));
    assert_true(text_is(tensor(t->outputs, t->noutputs, "finish_reason"), "length"));
    assert_non_null(param(t, "gen_ai.server.time_to_first_token"));
    assert_true(param(t, "gen_ai.server.time_to_first_token")->num > 0);
    const deja_tensor *resp = tensor(t->inputs, t->ninputs, "http.response");
    assert_int_equal(resp->size, stream.len); /* the raw stream, whole */
    assert_memory_equal(resp->data, stream.body, stream.len);
    t = find_trace(&ts, "gen_ai.operation.name", "text_completion", NULL, 0);
    assert_true(text_is(tensor(t->inputs, t->ninputs, "prompt"), "A crow"));
    assert_true(text_is(tensor(t->outputs, t->noutputs, "completion"), comp_text));
    traces_free(&ts);
    free(want);
    free(got);
    free(comp_text);
    reply_free(&plain);
    reply_free(&stream);
    reply_free(&models);
    reply_free(&comp);
    rig_free(&g);
}

/* An HTTP error of the upstream passes through and is an error trace. */
static void test_http__proxy_records_http_error(void **state)
{
    (void)state;
    rig g;
    reply r = {0};
    char url[256];
    rig_start(&g, NULL, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    http_call(&r, url,
              "{\"model\":\"gpt-nope\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
              NULL);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "model_not_found"));
    rig_stop_servers(&g);
    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    assert_int_equal(ts.v[0]->status, DEJA_STATUS_ERROR);
    assert_non_null(strstr(ts.v[0]->error, "HTTP 404: The model 'gpt-nope' does not exist"));
    assert_true(param(ts.v[0], "http.response.status_code")->num == 404);
    assert_int_equal(ts.v[0]->noutputs, 0);
    traces_free(&ts);
    reply_free(&r);
    rig_free(&g);
}

/* A request whose model name breaks the name rule (a control character)
 * is forwarded and answered unchanged but cannot be recorded: the proxy
 * counts it and keeps the reason, and the next request is recorded. */
static void test_http__proxy_counts_unrecorded(void **state)
{
    (void)state;
    rig g;
    reply bad = {0}, good = {0};
    char url[256], body[1024];
    deja_server_stats st;
    rig_start(&g, NULL, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    http_call(&bad, url,
              "{\"model\":\"text\\u0007gen\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
              NULL);
    assert_int_equal(bad.status, 404); /* serve's answer, forwarded */
    snprintf(body, sizeof body, chat_body, "");
    http_call(&good, url, body, NULL);
    assert_int_equal(good.status, 200);
    /* An exchange is counted as recorded when it ends, just after the
     * client has its answer: wait for it (10 s at most). */
    for (int i = 0; i < 1000; i++) {
        deja_server_stats_get(g.proxy, &st);
        if (st.recorded + st.unrecorded >= 2) {
            break;
        }
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.recorded, 1);
    assert_int_equal(st.unrecorded, 1);
    assert_non_null(strstr(st.unrecorded_why, "model name"));
    rig_stop_servers(&g);
    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    assert_string_equal(ts.v[0]->model_name, "textgen");
    traces_free(&ts);
    reply_free(&bad);
    reply_free(&good);
    rig_free(&g);
}

/* A 5 MB request body is forwarded and recorded whole, not truncated. */
static void test_http__proxy_big_request(void **state)
{
    (void)state;
    rig g;
    reply r = {0};
    char url[256];
    size_t big = (size_t)5 << 20;
    char *content = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        content[i] = "the fox and the crow "[i % 21];
    content[big] = '\0';
    char *body = NULL;
    assert_true(
        asprintf(&body,
                 "{\"model\":\"textgen\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],"
                 "\"seed\":3,\"max_tokens\":10}",
                 content) > 0);
    rig_start(&g, NULL, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    http_call(&r, url, body, NULL);
    assert_int_equal(r.status, 200);
    rig_stop_servers(&g);
    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    assert_int_equal(ts.v[0]->status, DEJA_STATUS_OK);
    assert_true(text_is(tensor(ts.v[0]->inputs, ts.v[0]->ninputs, "prompt"), content));
    assert_true(text_is(tensor(ts.v[0]->inputs, ts.v[0]->ninputs, "http.request"), body));
    assert_false(has_tag(ts.v[0], "deja.truncated", "http.request"));
    traces_free(&ts);
    reply_free(&r);
    free(body);
    free(content);
    rig_free(&g);
}

/* Bodies beyond the bounds: 413 for a request (nothing recorded, the proxy
 * goes on serving), 502 for an answer (an error trace). */
static void test_http__proxy_bounds(void **state)
{
    (void)state;
    rig g;
    reply big = {0}, ok = {0}, large_answer = {0};
    char url[256], body[4096];
    deja_proxy_options po = DEJA_PROXY_OPTIONS_INIT;
    po.max_request = 1024;
    po.max_response = 300;
    rig_start(&g, NULL, &po);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    memset(body, 'a', sizeof body);
    memcpy(body, "{\"x\":\"", 6);
    memcpy(body + sizeof body - 3, "\"}", 3);
    http_call(&big, url, body, NULL);
    assert_int_equal(big.status, 413);
    assert_non_null(strstr(big.body, "exceeds 1024 bytes"));
    /* 2 MB: libcurl asks 100-continue first and is refused before sending. */
    reply huge = {0};
    char *two = malloc((size_t)2 << 20);
    memset(two, ' ', (size_t)2 << 20);
    two[((size_t)2 << 20) - 1] = '\0';
    two[0] = '{';
    two[((size_t)2 << 20) - 2] = '}';
    http_call(&huge, url, two, NULL);
    assert_int_equal(huge.status, 413);
    free(two);
    reply_free(&huge);
    snprintf(url, sizeof url, "%s/v1/models", g.proxy_url);
    http_call(&ok, url, NULL, NULL);
    assert_int_equal(ok.status, 200);
    snprintf(url, sizeof url, "%s/v1/completions", g.proxy_url);
    http_call(&large_answer, url, "{\"model\":\"textgen\",\"prompt\":\"A\",\"max_tokens\":400}",
              NULL);
    assert_int_equal(large_answer.status, 502);
    assert_non_null(strstr(large_answer.body, "exceeds 300 bytes"));
    rig_stop_servers(&g);
    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    assert_int_equal(ts.v[0]->status, DEJA_STATUS_ERROR);
    assert_non_null(strstr(ts.v[0]->error, "exceeds 300 bytes"));
    traces_free(&ts);
    reply_free(&big);
    reply_free(&ok);
    reply_free(&large_answer);
    rig_free(&g);
}

/* ------------------------------------------------------------------------
 * Faults, with a scripted upstream
 * ---------------------------------------------------------------------- */

typedef enum fake_mode {
    FAKE_CLOSE_MID_STREAM, /* two events, then close without [DONE] */
    FAKE_STALL_STREAM,     /* one event, then wait for the proxy to hang up */
    FAKE_SILENT,           /* read the request, never answer */
    FAKE_EMBEDDINGS,       /* a JSON answer: one vector as numbers, one as base64 */
} fake_mode;

typedef struct fake_upstream {
    int fd;
    unsigned port;
    fake_mode mode;
    pthread_t thread;
    int hung_up; /* the proxy closed the connection while we stalled */
} fake_upstream;

static const char sse_head[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
static const char sse_event1[] =
    "data: {\"id\":\"x1\",\"model\":\"fake-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\"Once \"},\"finish_reason\":null}]}\n\n";
static const char sse_event2[] =
    "data: {\"id\":\"x1\",\"model\":\"fake-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\"upon\"},\"finish_reason\":null}]}\n\n";

static void *fake_main(void *arg)
{
    fake_upstream *f = arg;
    int c = accept(f->fd, NULL, NULL);
    char buf[65536];
    size_t got = 0;
    if (c < 0)
        return NULL;
    struct timeval tv = {20, 0}; /* bounds every wait of the fake */
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* The request: headers, then Content-Length bytes. */
    for (;;) {
        ssize_t n = recv(c, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        char *cl = strcasestr(buf, "content-length:");
        if (end && (!cl || got >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10)))
            break;
    }
    if (f->mode == FAKE_CLOSE_MID_STREAM) {
        send(c, sse_head, strlen(sse_head), MSG_NOSIGNAL);
        send(c, sse_event1, strlen(sse_event1), MSG_NOSIGNAL);
        send(c, sse_event2, strlen(sse_event2), MSG_NOSIGNAL);
    } else if (f->mode == FAKE_STALL_STREAM) {
        send(c, sse_head, strlen(sse_head), MSG_NOSIGNAL);
        send(c, sse_event1, strlen(sse_event1), MSG_NOSIGNAL);
        if (recv(c, buf, sizeof buf, 0) == 0)
            f->hung_up = 1;
    } else if (f->mode == FAKE_EMBEDDINGS) {
        static const char body[] = "{\"object\":\"list\",\"model\":\"emb-1\",\"data\":["
                                   "{\"index\":0,\"embedding\":[0.5,-1.25,2]},"
                                   "{\"index\":1,\"embedding\":\"AACAPwAAAEAAAEBA\"}],"
                                   "\"usage\":{\"prompt_tokens\":4,\"total_tokens\":4}}";
        char head[256];
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         strlen(body));
        send(c, head, (size_t)n, MSG_NOSIGNAL);
        send(c, body, strlen(body), MSG_NOSIGNAL);
    } else {
        ssize_t n;
        while ((n = recv(c, buf, sizeof buf, 0)) > 0) {
        }
        if (n == 0)
            f->hung_up = 1;
    }
    close(c);
    return NULL;
}

static void fake_start(fake_upstream *f, fake_mode mode)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(f, 0, sizeof *f);
    f->mode = mode;
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->fd, 8), 0);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_join(fake_upstream *f)
{
    pthread_join(f->thread, NULL);
    close(f->fd);
}

static const char stream_req[] =
    "{\"model\":\"fake\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

/* The upstream closes mid-stream: the client's stream fails too, the trace
 * holds what came, marked truncated, and the proxy goes on serving. */
static void test_http__fault_upstream_closes_mid_stream(void **state)
{
    (void)state;
    rig g;
    fake_upstream f;
    reply r = {0};
    char url[256], up[128];
    fake_start(&f, FAKE_CLOSE_MID_STREAM);
    snprintf(up, sizeof up, "http://127.0.0.1:%u", f.port);
    rig_start(&g, up, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    http_call(&r, url, stream_req, NULL);
    fake_join(&f);
    assert_non_null(strstr(r.body, "\"upon\""));
    rig_stop_servers(&g);
    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    assert_int_equal(ts.v[0]->status, DEJA_STATUS_ERROR);
    assert_non_null(strstr(ts.v[0]->error, "truncated"));
    assert_true(has_tag(ts.v[0], "deja.truncated", "completion"));
    assert_true(text_is(tensor(ts.v[0]->outputs, ts.v[0]->noutputs, "completion"), "Once upon"));
    assert_string_equal(ts.v[0]->model_version, "fake-1");
    traces_free(&ts);
    reply_free(&r);
    rig_free(&g);
}

/* The client leaves mid-stream: the upstream request is cancelled (the
 * upstream sees its connection closed) and the trace is truncated. */
static void test_http__fault_client_leaves_mid_stream(void **state)
{
    (void)state;
    rig g;
    fake_upstream f;
    reply r = {0};
    char url[256], up[128];
    fake_start(&f, FAKE_STALL_STREAM);
    snprintf(up, sizeof up, "http://127.0.0.1:%u", f.port);
    rig_start(&g, up, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    r.stop_after = 1; /* leave as soon as the first bytes come */
    http_call(&r, url, stream_req, NULL);
    assert_int_equal(r.result, CURLE_WRITE_ERROR);
    fake_join(&f); /* returns when the proxy hangs up on the upstream */
    assert_true(f.hung_up);
    rig_stop_servers(&g);
    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    assert_int_equal(ts.v[0]->status, DEJA_STATUS_ERROR);
    assert_non_null(strstr(ts.v[0]->error, "client disconnected"));
    assert_true(has_tag(ts.v[0], "deja.truncated", "completion"));
    assert_true(text_is(tensor(ts.v[0]->outputs, ts.v[0]->noutputs, "completion"), "Once "));
    traces_free(&ts);
    reply_free(&r);
    rig_free(&g);
}

/* A client that gives up before a (non-streamed) answer: the upstream
 * request is cancelled at once, not left to finish, and the trace says so. */
static void test_http__fault_client_leaves_before_answer(void **state)
{
    (void)state;
    rig g;
    fake_upstream f;
    reply r = {0};
    char url[256], up[128];
    fake_start(&f, FAKE_SILENT);
    snprintf(up, sizeof up, "http://127.0.0.1:%u", f.port);
    rig_start(&g, up, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    r.timeout_ms = 300;
    http_call(&r, url, "{\"model\":\"fake\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
              NULL);
    assert_int_equal(r.result, CURLE_OPERATION_TIMEDOUT);
    fake_join(&f); /* returns when the proxy hangs up on the upstream */
    assert_true(f.hung_up);
    rig_stop_servers(&g);
    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    assert_int_equal(ts.v[0]->status, DEJA_STATUS_ERROR);
    assert_non_null(strstr(ts.v[0]->error, "client disconnected before the answer"));
    assert_true(has_tag(ts.v[0], "deja.truncated", "completion"));
    traces_free(&ts);
    reply_free(&r);
    rig_free(&g);
}

/* A dead upstream (nothing listens) gets 502; a silent one gets 504 after
 * the timeout. Both are error traces. */
static void test_http__fault_upstream_down_and_timeout(void **state)
{
    (void)state;
    rig g;
    fake_upstream f;
    reply down = {0}, slow = {0};
    char url[256], up[128];
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(s, (struct sockaddr *)&a, &len);
    close(s); /* a port nobody listens on */
    snprintf(up, sizeof up, "http://127.0.0.1:%u", ntohs(a.sin_port));
    rig_start(&g, up, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    http_call(&down, url, stream_req, NULL);
    assert_int_equal(down.status, 502);
    assert_non_null(strstr(down.body, "upstream"));
    rig_stop_servers(&g);
    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    assert_int_equal(ts.v[0]->status, DEJA_STATUS_ERROR);
    assert_non_null(strstr(ts.v[0]->error, "upstream http://127.0.0.1:"));
    traces_free(&ts);
    rig_free(&g);

    deja_proxy_options po = DEJA_PROXY_OPTIONS_INIT;
    po.timeout_ms = 300;
    fake_start(&f, FAKE_SILENT);
    snprintf(up, sizeof up, "http://127.0.0.1:%u", f.port);
    rig_start(&g, up, &po);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    http_call(&slow, url, stream_req, NULL);
    assert_int_equal(slow.status, 504);
    fake_join(&f);
    rig_stop_servers(&g);
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    assert_int_equal(ts.v[0]->status, DEJA_STATUS_ERROR);
    if (!strstr(ts.v[0]->error, "timed out"))
        fail_msg("error: %s", ts.v[0]->error);
    traces_free(&ts);
    reply_free(&down);
    reply_free(&slow);
    rig_free(&g);
}

/* Embeddings through the proxy: vectors as numbers and as base64 (the
 * OpenAI client's default) both become one f32 [n, dim] output. */
static void test_http__proxy_records_embeddings(void **state)
{
    (void)state;
    rig g;
    fake_upstream f;
    reply r = {0};
    char url[256], up[128];
    fake_start(&f, FAKE_EMBEDDINGS);
    snprintf(up, sizeof up, "http://127.0.0.1:%u", f.port);
    rig_start(&g, up, NULL);
    snprintf(url, sizeof url, "%s/v1/embeddings", g.proxy_url);
    http_call(&r, url, "{\"model\":\"emb-1\",\"input\":[\"a fox\",\"a crow\"]}", NULL);
    fake_join(&f);
    assert_int_equal(r.status, 200);
    rig_stop_servers(&g);
    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 1);
    const deja_trace *t = ts.v[0];
    assert_int_equal(t->status, DEJA_STATUS_OK);
    assert_string_equal(param(t, "gen_ai.operation.name")->str, "embeddings");
    assert_true(text_is(tensor(t->inputs, t->ninputs, "input"), "a fox"));
    assert_true(text_is(tensor(t->inputs, t->ninputs, "input.1"), "a crow"));
    assert_true(param(t, "gen_ai.usage.input_tokens")->num == 4);
    const deja_tensor *e = tensor(t->outputs, t->noutputs, "embedding");
    assert_non_null(e);
    assert_int_equal(e->dtype, DEJA_F32);
    assert_int_equal(e->ndim, 2);
    assert_int_equal(e->shape[0], 2);
    assert_int_equal(e->shape[1], 3);
    const float want[6] = {0.5f, -1.25f, 2.0f, 1.0f, 2.0f, 3.0f};
    assert_memory_equal(e->data, want, sizeof want);
    traces_free(&ts);
    reply_free(&r);
    rig_free(&g);
}

/* Answers are network input: truncated, mutated or garbage streams and
 * bodies parse without a crash or a leak (checked under ASan), and what
 * does not parse is flagged, never trusted. */
static int count_outputs(const deja_tensor *t, void *payload)
{
    (void)t;
    (*(size_t *)payload)++;
    return 0;
}

static void test_http__answer_parse_hostile(void **state)
{
    (void)state;
    static const char *const samples[] = {
        ("data: {\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Once \"}}]}\n\n"
         "data: {\"choices\":[{\"index\":3,\"delta\":{\"content\":\"upon\"},\"finish_reason\":"
         "\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"),
        ("{\"id\":\"x\",\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"content\":\"hi\","
         "\"tool_calls\":[{\"id\":\"t\"}]},\"finish_reason\":\"tool_calls\"}]}"),
        "{\"data\":[{\"embedding\":[1,2,3]},{\"embedding\":\"AACAPwAAAEAAAEBA\"}]}",
        "{\"error\":{\"message\":\"bad\"}}",
    };
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    size_t parsed = 0;
    for (size_t k = 0; k < sizeof samples / sizeof samples[0]; k++) {
        size_t len = strlen(samples[k]);
        char *buf = malloc(len + 1);
        for (int round = 0; round < 400; round++) {
            memcpy(buf, samples[k], len);
            size_t n = round == 0 ? len : (s = s * 6364136223846793005ULL + 1) % (len + 1);
            for (int flips = round % 5; flips > 0 && n > 0; flips--) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                buf[(s >> 33) % n] = (char)(s >> 17);
            }
            for (int sse = 0; sse < 2; sse++) {
                for (int op = DEJA__OP_CHAT; op <= DEJA__OP_EMBEDDINGS; op++) {
                    deja__answer a;
                    size_t outs = 0;
                    deja__answer_init(&a);
                    assert_int_equal(deja__answer_parse(&a, (deja__op)op, buf, n, sse), 0);
                    assert_int_equal(deja__answer_outputs(&a, count_outputs, &outs), 0);
                    assert_true(a.nchoices <= DEJA__HTTP_MAX_CHOICES);
                    parsed++;
                    deja__answer_free(&a);
                }
            }
        }
        free(buf);
    }
    assert_int_equal(parsed, 4 * 400 * 2 * 3);
    /* And the unmutated stream assembles what it says. */
    deja__answer a;
    deja__answer_init(&a);
    assert_int_equal(deja__answer_parse(&a, DEJA__OP_CHAT, samples[0], strlen(samples[0]), 1), 0);
    assert_int_equal(a.nchoices, 4);
    assert_int_equal(a.text[0].size, 5);
    assert_memory_equal(a.text[0].data, "Once ", 5);
    assert_int_equal(a.text[3].size, 4);
    assert_memory_equal(a.text[3].data, "upon", 4);
    assert_string_equal(a.finish[3], "stop");
    assert_true(a.done);
    assert_int_equal(a.output_tokens, 2);
    assert_false(a.malformed);
    deja__answer_free(&a);
}

/* Tool calls: streamed pieces are merged by index into what the
 * non-streamed answer says, the random call ids left out, so that a replay
 * compares the model's decision only. */
static void test_http__answer_tool_calls(void **state)
{
    (void)state;
    static const char stream[] =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{"
        "\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_"
        "weather\",\"arguments\":\"\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
        "{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
        "{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
        "data: [DONE]\n\n";
    static const char whole[] =
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
        "\"tool_calls\":[{\"id\":\"call_XYZ\",\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
        "\"finish_reason\":\"tool_calls\"}]}";
    static const char want[] = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                               "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]";
    deja__answer a, b;
    deja__answer_init(&a);
    deja__answer_init(&b);
    assert_int_equal(deja__answer_parse(&a, DEJA__OP_CHAT, stream, strlen(stream), 1), 0);
    assert_int_equal(deja__answer_parse(&b, DEJA__OP_CHAT, whole, strlen(whole), 0), 0);
    assert_non_null(a.tool_calls);
    assert_string_equal(a.tool_calls, want);
    assert_string_equal(b.tool_calls, want);
    assert_string_equal(a.finish[0], "tool_calls");
    assert_false(a.malformed);
    deja__answer_free(&a);
    deja__answer_free(&b);
}

/* 64 clients streaming at once: every one gets its whole completion, each
 * exchange is recorded once, none lost. */
#define NCLIENTS 64

typedef struct client_job {
    const char *url;
    int seed;
    reply r;
    pthread_t thread;
} client_job;

static void *client_main(void *arg)
{
    client_job *j = arg;
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"textgen\",\"stream\":true,\"seed\":%d,\"max_tokens\":40,"
             "\"messages\":[{\"role\":\"user\",\"content\":\"The lion\"}]}",
             j->seed);
    http_call(&j->r, j->url, body, NULL);
    return NULL;
}

static void test_http__concurrent_streams(void **state)
{
    (void)state;
    rig g;
    char url[256];
    client_job *jobs = calloc(NCLIENTS, sizeof *jobs);
    rig_start(&g, NULL, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    for (int i = 0; i < NCLIENTS; i++) {
        jobs[i].url = url;
        jobs[i].seed = i;
        assert_int_equal(pthread_create(&jobs[i].thread, NULL, client_main, &jobs[i]), 0);
    }
    for (int i = 0; i < NCLIENTS; i++)
        pthread_join(jobs[i].thread, NULL);
    deja_server_stats st;
    deja_server_stats_get(g.proxy, &st);
    assert_int_equal(st.requests, NCLIENTS);
    rig_stop_servers(&g);
    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, NCLIENTS);
    int seen[NCLIENTS] = {0};
    for (size_t i = 0; i < ts.n; i++) {
        const deja_trace *t = ts.v[i];
        assert_int_equal(t->status, DEJA_STATUS_OK);
        int seed = (int)param(t, "gen_ai.request.seed")->num;
        assert_true(seed >= 0 && seed < NCLIENTS);
        seen[seed]++;
        int done = 0;
        char *text = completion_of_stream(jobs[seed].r.body, &done);
        assert_true(done);
        assert_true(text_is(tensor(t->outputs, t->noutputs, "completion"), text));
        free(text);
    }
    for (int i = 0; i < NCLIENTS; i++) {
        assert_int_equal(seen[i], 1);
        reply_free(&jobs[i].r);
    }
    traces_free(&ts);
    free(jobs);
    rig_free(&g);
}

/* ------------------------------------------------------------------------
 * Replay and bisect against endpoints
 * ---------------------------------------------------------------------- */

typedef struct verdicts {
    size_t n;
    deja_verdict v[16];
    int noted_fingerprint[16];
} verdicts;

static int on_result(const deja_replay_result *r, void *payload)
{
    verdicts *vs = payload;
    if (vs->n < 16) {
        for (size_t i = 0; i < r->nunrecorded; i++)
            if (strstr(r->unrecorded[i], "system_fingerprint: recorded fp_"))
                vs->noted_fingerprint[vs->n] = 1;
        vs->v[vs->n++] = r->verdict;
    }
    return 0;
}

/* Traces recorded through the proxy in front of serve v1 replay `same` on
 * v1 and diverge on v6 (which says its fingerprint changed); an unseeded
 * request is nondeterministic with --repeat; bisect over six serve
 * instances finds v4. */
static void test_http__endpoint_replay_and_bisect(void **state)
{
    (void)state;
    deja_server *serves[6] = {NULL};
    char urls[6][128], url[256], body[512];
    const char *specs[6];
    rig g;
    for (int v = 0; v < 6; v++) {
        char model[32];
        deja_serve_options so = DEJA_SERVE_OPTIONS_INIT;
        snprintf(model, sizeof model, "textgen-v%d", v + 1);
        so.listen = "127.0.0.1:0";
        so.model = model;
        assert_int_equal(deja_serve_start(&serves[v], &so), 0);
        snprintf(urls[v], sizeof urls[v], "http://127.0.0.1:%u/v1", deja_server_port(serves[v]));
        specs[v] = urls[v];
    }
    char up[128];
    snprintf(up, sizeof up, "http://127.0.0.1:%u", deja_server_port(serves[0]));
    rig_start(&g, up, NULL);
    snprintf(url, sizeof url, "%s/v1/chat/completions", g.proxy_url);
    for (int i = 0; i < 3; i++) {
        reply r = {0};
        snprintf(body, sizeof body,
                 "{\"model\":\"textgen\",\"seed\":%d,\"max_tokens\":40,\"temperature\":0.7%s,"
                 "\"messages\":[{\"role\":\"user\",\"content\":\"The hare\"}]}",
                 i, i == 2 ? ",\"stream\":true" : "");
        http_call(&r, url, body, NULL);
        assert_int_equal(r.status, 200);
        reply_free(&r);
    }
    reply unseeded = {0};
    http_call(&unseeded, url,
              "{\"model\":\"textgen\",\"max_tokens\":40,\"temperature\":0.9,"
              "\"messages\":[{\"role\":\"user\",\"content\":\"The ox\"}]}",
              NULL);
    reply_free(&unseeded);
    rig_stop_servers(&g);

    traces ts;
    traces_load(&ts, g.store);
    assert_int_equal(ts.n, 4);
    deja_id ids[4]; /* the three seeded ones, then the unseeded one */
    size_t nseeded = 0;
    for (size_t i = 0; i < 4; i++) {
        if (param(ts.v[i], "gen_ai.request.seed"))
            ids[nseeded++] = ts.v[i]->id;
        else
            ids[3] = ts.v[i]->id;
    }
    assert_int_equal(nseeded, 3);
    verdicts vs;
    deja_replay_summary sum;
    deja_replay_options ro = DEJA_REPLAY_OPTIONS_INIT;

    memset(&vs, 0, sizeof vs);
    assert_int_equal(deja_replay_run(ts.store, ids, 3, specs[0], &ro, on_result, &vs, &sum), 0);
    assert_int_equal(sum.same, 3);

    memset(&vs, 0, sizeof vs);
    assert_int_equal(deja_replay_run(ts.store, ids, 3, specs[5], &ro, on_result, &vs, &sum), 0);
    assert_int_equal(sum.diverged, 3);
    assert_true(vs.noted_fingerprint[0]);

    memset(&vs, 0, sizeof vs);
    ro.repeat = 3;
    ro.jobs = 2;
    char named[200];
    snprintf(named, sizeof named, "%s?model=textgen&timeout=30", specs[0]);
    assert_int_equal(deja_replay_run(ts.store, &ids[3], 1, named, &ro, on_result, &vs, &sum), 0);
    assert_int_equal(sum.nondeterministic, 1);

    deja_bisect_options bo = DEJA_BISECT_OPTIONS_INIT;
    deja_bisect_result *br = NULL;
    assert_int_equal(deja_bisect(ts.store, ids, 3, specs, 6, &bo, &br), 0);
    assert_int_equal(br->first_bad, 3);
    assert_string_equal(br->first_bad_spec, specs[3]);
    deja_bisect_result_free(br);

    /* A server that never answers: the request gives up after the model
     * options' timeout, and the inference fails saying so. */
    fake_upstream f;
    fake_start(&f, FAKE_SILENT);
    char silent[160];
    snprintf(silent, sizeof silent, "http://127.0.0.1:%u/v1?model=textgen", f.port);
    deja_model_options mo = DEJA_MODEL_OPTIONS_INIT;
    mo.timeout_ms = 300;
    deja_model *m = NULL;
    deja_trace *tr = NULL;
    deja_ctx *ctx = NULL;
    assert_int_equal(deja_model_load_ext(&m, silent, &mo), 0);
    assert_int_equal(deja_trace_get(ts.store, &ids[0], &tr), 0);
    assert_int_equal(deja_ctx_replay(&ctx, tr), 0);
    assert_int_equal(deja_model_infer(m, ctx), DEJA_EMODEL);
    if (!strstr(deja_error_last(), "timed out"))
        fail_msg("error: %s", deja_error_last());
    deja_ctx_free(ctx);
    deja_trace_free(tr);
    deja_model_free(m);
    fake_join(&f);
    assert_true(f.hung_up);

    /* A server that cannot be reached is a load error naming it. */
    assert_int_equal(
        deja_replay_run(ts.store, ids, 1, "http://127.0.0.1:1/v1", NULL, NULL, NULL, NULL),
        DEJA_EMODEL);
    assert_non_null(strstr(deja_error_last(), "http://127.0.0.1:1/v1"));
    traces_free(&ts);
    for (int v = 0; v < 6; v++)
        deja_server_stop(serves[v]);
    rig_free(&g);
}

/* ------------------------------------------------------------------------
 * deja serve
 * ---------------------------------------------------------------------- */

/* Same seed, same completion; another seed, another one; a recorded
 * inference replays `same` on the plugin it was served by. */
static void test_http__serve_seed_and_record(void **state)
{
    (void)state;
    tmpdir dir;
    char store[4096], url[256];
    deja_tracer *tracer = NULL;
    deja_server *serve = NULL;
    reply a = {0}, b = {0}, c = {0};
    assert_int_equal(tmpdir_make(&dir), 0);
    snprintf(store, sizeof store, "%s/s.store", dir.path);
    assert_int_equal(deja_tracer_open(&tracer, store, NULL), 0);
    deja_serve_options so = DEJA_SERVE_OPTIONS_INIT;
    so.listen = "127.0.0.1:0";
    so.model = "textgen-v1";
    so.record = tracer;
    assert_int_equal(deja_serve_start(&serve, &so), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/completions", deja_server_port(serve));
    const char *req = "{\"prompt\":\"The wolf\",\"seed\":11,\"max_tokens\":50}";
    http_call(&a, url, req, NULL);
    http_call(&b, url, req, NULL);
    http_call(&c, url, "{\"prompt\":\"The wolf\",\"seed\":12,\"max_tokens\":50}", NULL);
    assert_int_equal(a.status, 200);
    char *ta = completion_of(a.body), *tb = completion_of(b.body), *tc = completion_of(c.body);
    assert_string_equal(ta, tb);
    assert_string_not_equal(ta, tc);
    assert_int_equal(strlen(ta), 50);
    deja_server_stop(serve);
    deja_tracer_close(tracer);

    cli_run r;
    cli_exec(&r, NULL, NULL, "--store", store, "replay", "--model", "textgen-v1", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "3 same"));
    cli_run_free(&r);
    free(ta);
    free(tb);
    free(tc);
    reply_free(&a);
    reply_free(&b);
    reply_free(&c);
    tmpdir_remove(&dir);
}

#ifdef DEJA_C_RUNNER
/* deja serve --model exec:...: a model in another process (the runner
 * protocol) served the same way; the request's seed reaches the runner's
 * determinism context (the seed it asks for is the same for the same
 * request seed, another for another), and --record keeps its draws. */
static void test_http__serve_exec_runner(void **state)
{
    (void)state;
    tmpdir dir;
    char store[4096], url[256], spec[1024];
    deja_tracer *tracer = NULL;
    deja_server *serve = NULL;
    assert_int_equal(tmpdir_make(&dir), 0);
    snprintf(store, sizeof store, "%s/s.store", dir.path);
    snprintf(spec, sizeof spec, "exec:%s echo", DEJA_C_RUNNER);
    assert_int_equal(deja_tracer_open(&tracer, store, NULL), 0);
    deja_serve_options so = DEJA_SERVE_OPTIONS_INIT;
    so.listen = "127.0.0.1:0";
    so.model = spec;
    so.record = tracer;
    assert_int_equal(deja_serve_start(&serve, &so), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/completions", deja_server_port(serve));
    const int seeds[3] = {5, 5, 6};
    for (int i = 0; i < 3; i++) {
        reply r = {0};
        char body[128];
        snprintf(body, sizeof body, "{\"prompt\":\"x\",\"seed\":%d}", seeds[i]);
        http_call(&r, url, body, NULL);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"model\":\"crunner-v1\""));
        reply_free(&r);
    }
    deja_server_stop(serve);
    deja_tracer_close(tracer);
    traces ts;
    traces_load(&ts, store);
    assert_int_equal(ts.n, 3);
    uint64_t s5 = 0, s6 = 0;
    for (size_t i = 0; i < ts.n; i++) {
        const deja_trace *t = ts.v[i];
        assert_string_equal(t->model_name, "crunner");
        assert_int_equal(t->nseeds, 1);
        assert_int_equal(t->nrng, 2); /* "noise" and "batch" */
        if (param(t, "seed")->num == 5) {
            assert_true(s5 == 0 || s5 == t->seeds[0].value);
            s5 = t->seeds[0].value;
        } else {
            s6 = t->seeds[0].value;
        }
    }
    assert_true(s5 != 0 && s6 != 0 && s5 != s6);
    traces_free(&ts);
    tmpdir_remove(&dir);
}
#endif

/* Bad requests to deja serve: clear 4xx answers, the server goes on. */
static void test_http__serve_bad_requests(void **state)
{
    (void)state;
    deja_server *serve = NULL;
    reply a = {0}, b = {0}, c = {0}, d = {0};
    char url[256];
    deja_serve_options so = DEJA_SERVE_OPTIONS_INIT;
    so.listen = "127.0.0.1:0";
    so.model = "textgen-v1";
    assert_int_equal(deja_serve_start(&serve, &so), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/chat/completions", deja_server_port(serve));
    http_call(&a, url, "not json", NULL);
    assert_int_equal(a.status, 400);
    http_call(&b, url, "{\"messages\":[]}", NULL);
    assert_int_equal(b.status, 400);
    http_call(&c, url, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":\"x\"}",
              NULL);
    assert_int_equal(c.status, 400);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v2/other", deja_server_port(serve));
    http_call(&d, url, "{}", NULL);
    assert_int_equal(d.status, 404);
    deja_server_stop(serve);
    reply_free(&a);
    reply_free(&b);
    reply_free(&c);
    reply_free(&d);
}

/* The CLI: bad options are one-line errors with exit 2, nothing listens. */
static void test_http__cli_errors(void **state)
{
    (void)state;
    cli_run r;
    cli_exec(&r, NULL, NULL, "proxy", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--upstream URL is required"));
    cli_run_free(&r);
    cli_exec(&r, NULL, NULL, "proxy", "--upstream", "ftp://x", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "http:// or https://"));
    cli_run_free(&r);
    cli_exec(&r, NULL, NULL, "serve", "--model", "no-such-model", "--listen", "127.0.0.1:0", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "no-such-model"));
    cli_run_free(&r);
    /* An address in use: exit 2 before any store is created. */
    int busy = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(busy, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(busy, 1), 0);
    assert_int_equal(getsockname(busy, (struct sockaddr *)&a, &alen), 0);
    char addr[64], store[512];
    tmpdir dir;
    assert_int_equal(tmpdir_make(&dir), 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(a.sin_port));
    snprintf(store, sizeof store, "%s/never.store", dir.path);
    cli_exec(&r, NULL, NULL, "--store", store, "proxy", "--upstream", "http://127.0.0.1:1",
             "--listen", addr, NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "cannot listen on"));
    assert_false(cli_exists(store));
    cli_run_free(&r);
    close(busy);
    tmpdir_remove(&dir);
    cli_exec(&r, NULL, NULL, "serve", "--model", "textgen-v1", "--listen", "nohost", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "HOST:PORT"));
    cli_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http__proxy_records_chat),
        cmocka_unit_test(test_http__proxy_records_stream),
        cmocka_unit_test(test_http__proxy_records_http_error),
        cmocka_unit_test(test_http__proxy_counts_unrecorded),
        cmocka_unit_test(test_http__proxy_big_request),
        cmocka_unit_test(test_http__proxy_bounds),
        cmocka_unit_test(test_http__fault_upstream_closes_mid_stream),
        cmocka_unit_test(test_http__fault_client_leaves_mid_stream),
        cmocka_unit_test(test_http__fault_client_leaves_before_answer),
        cmocka_unit_test(test_http__fault_upstream_down_and_timeout),
        cmocka_unit_test(test_http__proxy_records_embeddings),
        cmocka_unit_test(test_http__answer_parse_hostile),
        cmocka_unit_test(test_http__answer_tool_calls),
        cmocka_unit_test(test_http__concurrent_streams),
        cmocka_unit_test(test_http__endpoint_replay_and_bisect),
        cmocka_unit_test(test_http__serve_seed_and_record),
        cmocka_unit_test(test_http__serve_bad_requests),
#ifdef DEJA_C_RUNNER
        cmocka_unit_test(test_http__serve_exec_runner),
#endif
        cmocka_unit_test(test_http__cli_errors),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
