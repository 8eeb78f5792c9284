/*
 * runner/endpoint.c -- the endpoint model: replay traces recorded by deja
 * proxy against a live OpenAI-compatible server.
 *
 * A spec "http://HOST:PORT/v1[?model=NAME&timeout=SECONDS]" is the base URL
 * an OpenAI client takes. Each inference re-sends the trace's recorded
 * request body (input "http.request") to the operation it was recorded on
 * (param gen_ai.operation.name), with the recorded params and seed as they
 * are in the body, and `model` replaced when the spec names one. The
 * answer, streamed or not as recorded, gives the same outputs the proxy
 * records (completion, finish_reason, ...), so the replay engine diffs
 * them as it diffs any model's. A server whose system_fingerprint or model
 * differs from the recorded one says so through deja_ctx_note(): the
 * likely cause printed with a divergence.
 *
 * The model's name is NAME, else the one model GET /models lists; its
 * version is the base URL. One instance serves any number of threads: each
 * inference has its own transfer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "core/core.h"
#include "runner/openai.h"
#include "runner/runner.h"

#define MAX_ANSWER ((size_t)256 << 20)

typedef struct endpoint {
    deja_model_plugin plugin; /* name and version point below */
    char name[512];
    char base[2048];
    char model[512]; /* ?model=, "" when not given */
    long timeout_ms;
} endpoint;

typedef struct transfer {
    deja__buf body;
    int too_big;
} transfer;

static size_t on_body(char *data, size_t size, size_t n, void *cls)
{
    transfer *t = cls;
    size_t len = size * n;
    if (t->body.size + len > MAX_ANSWER) {
        t->too_big = 1;
        return 0;
    }
    return deja__buf_append(&t->body, data, len) == 0 ? len : 0;
}

/* One HTTP exchange with the server: GET when `body` is NULL, else POST of
 * JSON. Fills `t`, `*status` and `*sse` (the answer is an event stream).
 * Returns 0, or DEJA_EMODEL with the transfer's error in `err`. */
static int exchange(const endpoint *e, const char *url, const char *body, transfer *t, long *status,
                    int *sse, char *err, size_t cap)
{
    char cerr[CURL_ERROR_SIZE] = "";
    struct curl_slist *h = NULL;
    int rc = 0;
    CURL *c = curl_easy_init();
    if (!c || !(h = curl_slist_append(NULL, "Content-Type: application/json")) ||
        !curl_slist_append(h, "Expect:")) {
        snprintf(err, cap, "out of memory");
        rc = DEJA_EMODEL;
        goto cleanup;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, e->timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    CURLcode cr = curl_easy_perform(c);
    if (cr != CURLE_OK) {
        snprintf(err, cap, "%s: %s", url,
                 t->too_big ? "the answer exceeds 256 MiB"
                            : (cerr[0] ? cerr : curl_easy_strerror(cr)));
        rc = DEJA_EMODEL;
        goto cleanup;
    }
    const char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    *sse = ct && strncasecmp(ct, "text/event-stream", 17) == 0;
cleanup:
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

/* deja__answer_outputs callback: an output of the replay. */
static int to_ctx(const deja_tensor *t, void *payload)
{
    return deja_ctx_output(payload, t);
}

/* The recorded string param `key`, or NULL. */
static const char *param_str(deja_ctx *ctx, const char *key)
{
    const deja_param *p = deja_ctx_param(ctx, key);
    return p && p->kind == DEJA_PARAM_STR ? p->str : NULL;
}

/* Note a recorded attribute the server now answers differently. */
static void note_change(deja_ctx *ctx, const char *what, const char *recorded, const char *now)
{
    char msg[1200];
    if (recorded && now && strcmp(recorded, now) != 0) {
        snprintf(msg, sizeof msg, "%s: recorded %.500s, the server now answers %.500s", what,
                 recorded, now);
        deja_ctx_note(ctx, msg);
    }
}

static int endpoint_infer(void *instance, deja_ctx *ctx)
{
    endpoint *e = instance;
    transfer t;
    deja__answer a;
    json_error_t jerr;
    json_t *req = NULL;
    char *body = NULL, *url = NULL;
    char err[1400];
    long status = 0;
    int sse = 0, rc = 1;
    memset(&t, 0, sizeof t);
    deja__answer_init(&a);
    const deja_tensor *in = deja_ctx_input(ctx, "http.request");
    deja__op op = deja__op_of_name(param_str(ctx, "gen_ai.operation.name"));
    if (!in || op == DEJA__OP_NONE) {
        deja_ctx_fail(ctx, "the trace holds no recorded HTTP request (input http.request and "
                           "param gen_ai.operation.name): record it with deja proxy");
        goto cleanup;
    }
    req = json_loadb(in->data, in->size, 0, &jerr);
    if (!json_is_object(req)) {
        deja_ctx_fail(ctx, "the recorded request is not a JSON object");
        goto cleanup;
    }
    if (e->model[0]) {
        json_object_set_new(req, "model", json_string(e->model));
    }
    body = json_dumps(req, JSON_COMPACT);
    if (!body || asprintf(&url, "%s%s", e->base, deja__op_path(op)) < 0) {
        url = NULL;
        deja_ctx_fail(ctx, "out of memory");
        goto cleanup;
    }
    if (exchange(e, url, body, &t, &status, &sse, err, sizeof err) != 0) {
        deja_ctx_fail(ctx, err);
        goto cleanup;
    }
    if (deja__answer_parse(&a, op, (const char *)t.body.data, t.body.size, sse) != 0) {
        deja_ctx_fail(ctx, "out of memory reading the answer");
        goto cleanup;
    }
    note_change(ctx, "system_fingerprint",
                param_str(ctx, "gen_ai.openai.response.system_fingerprint"), a.fingerprint);
    note_change(ctx, "model", param_str(ctx, "gen_ai.response.model"), a.model);
    if (status >= 400 || a.error) {
        deja__http_error_text(err, sizeof err, status, &a);
        deja_ctx_fail(ctx, err);
        goto cleanup;
    }
    if (deja__answer_outputs(&a, to_ctx, ctx) != 0) {
        deja_ctx_fail(ctx, "out of memory writing the outputs");
        goto cleanup;
    }
    rc = 0;
cleanup:
    deja__answer_free(&a);
    deja__buf_free(&t.body);
    json_decref(req);
    free(body);
    free(url);
    return rc;
}

static void endpoint_close(void *instance)
{
    free(instance);
}

/* The one model the server lists at GET /models, into e->name. */
static int list_model(endpoint *e)
{
    transfer t;
    json_error_t jerr;
    char err[1400], url[2100];
    long status = 0;
    int sse = 0, rc;
    memset(&t, 0, sizeof t);
    snprintf(url, sizeof url, "%s/models", e->base);
    rc = exchange(e, url, NULL, &t, &status, &sse, err, sizeof err);
    if (rc != 0) {
        rc = deja__error_set(DEJA_EMODEL, "endpoint %s: cannot list its models: %s", e->base, err);
        goto cleanup;
    }
    json_t *o = json_loadb((const char *)t.body.data, t.body.size, 0, &jerr);
    json_t *data = json_object_get(o, "data");
    const char *id = json_string_value(json_object_get(json_array_get(data, 0), "id"));
    if (status != 200 || !json_is_array(data) || json_array_size(data) != 1 || !id) {
        rc = deja__error_set(DEJA_EMODEL,
                             "endpoint %s: GET /models answered %ld with %zu models; name the "
                             "model with %s?model=NAME",
                             e->base, status, json_is_array(data) ? json_array_size(data) : 0,
                             e->base);
    } else {
        snprintf(e->name, sizeof e->name, "%s", id);
    }
    json_decref(o);
cleanup:
    deja__buf_free(&t.body);
    return rc;
}

/* Read the query of a spec: model=NAME and timeout=SECONDS. */
static int read_query(endpoint *e, const char *query)
{
    int rc = 0;
    char *copy = strdup(query), *save = NULL;
    if (!copy) {
        return deja__error_set(DEJA_ENOMEM, "endpoint: out of memory");
    }
    for (char *kv = strtok_r(copy, "&", &save); kv && rc == 0; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            rc = deja__error_set(DEJA_EINVAL, "endpoint: '%s' in the query is not KEY=VALUE", kv);
            break;
        }
        *eq = '\0';
        int n = 0;
        char *value = curl_easy_unescape(NULL, eq + 1, 0, &n);
        if (!value) {
            rc = deja__error_set(DEJA_ENOMEM, "endpoint: out of memory");
        } else if (strcmp(kv, "model") == 0 && n > 0 && (size_t)n < sizeof e->model) {
            snprintf(e->model, sizeof e->model, "%s", value);
        } else if (strcmp(kv, "timeout") == 0) {
            char *end = NULL;
            double s = strtod(value, &end);
            if (end == value || *end || !(s > 0 && s <= 86400)) {
                rc = deja__error_set(DEJA_EINVAL, "endpoint: timeout=%s is not 0..86400 seconds",
                                     value);
            }
            e->timeout_ms = (long)(s * 1000);
        } else {
            rc = deja__error_set(
                DEJA_EINVAL, "endpoint: unknown query key '%s' (expected model=, timeout=)", kv);
        }
        curl_free(value);
    }
    free(copy);
    return rc;
}

int deja__endpoint_open(const char *spec, unsigned timeout_ms, const deja_model_plugin **plugin,
                        void **instance, deja_model_info *info)
{
    int rc = 0;
    endpoint *e = calloc(1, sizeof *e);
    if (!e) {
        return deja__error_set(DEJA_ENOMEM, "endpoint: out of memory");
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = deja__error_set(DEJA_EMODEL, "endpoint: cannot initialise libcurl");
        goto cleanup;
    }
    const char *q = strchr(spec, '?');
    size_t blen = q ? (size_t)(q - spec) : strlen(spec);
    if (blen >= sizeof e->base) {
        rc = deja__error_set(DEJA_EINVAL, "endpoint: the URL is too long");
        goto cleanup;
    }
    memcpy(e->base, spec, blen);
    while (blen > 0 && e->base[blen - 1] == '/') {
        blen--;
    }
    e->base[blen] = '\0';
    e->timeout_ms = timeout_ms ? (long)timeout_ms : (long)DEJA_MODEL_TIMEOUT_MS;
    if (q && (rc = read_query(e, q + 1)) != 0) {
        goto cleanup;
    }
    if (e->model[0]) {
        snprintf(e->name, sizeof e->name, "%s", e->model);
    } else if ((rc = list_model(e)) != 0) {
        goto cleanup;
    }
    e->plugin.abi_version = DEJA_MODEL_ABI_VERSION;
    e->plugin.name = e->name;
    e->plugin.version = e->base;
    e->plugin.flags = DEJA_MODEL_THREAD_SAFE;
    e->plugin.infer = endpoint_infer;
    e->plugin.close = endpoint_close;
    deja_digest d = deja_digest_of(spec, strlen(spec));
    memcpy(info->digest, d.bytes, sizeof d.bytes);
    info->digest_size = sizeof d.bytes;
    *plugin = &e->plugin;
    *instance = e;
    e = NULL;
cleanup:
    free(e);
    return rc;
}
