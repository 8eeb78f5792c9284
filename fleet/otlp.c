/*
 * fleet/otlp.c -- OTLP out: traces as OpenTelemetry spans (GenAI semantic
 * conventions where they apply), sent as OTLP/HTTP protobuf bodies with
 * libcurl, or written to a file. The messages are those of fleet/otlp.proto,
 * built in an arena that is dropped after each request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "fleet/otlp.pb-c.h"
#include "fleet/fleet_internal.h"

#define DEFAULT_INLINE_MAX 4096
#define DEFAULT_BATCH 512
#define DEFAULT_TIMEOUT_MS 10000
#define ANSWER_SHOWN 160

typedef Deja__Otlp__KeyValue kv_t;
typedef Deja__Otlp__AnyValue any_t;

/* ------------------------------------------------------------------------
 * An arena: every piece of a request, freed at once.
 * ---------------------------------------------------------------------- */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
} arena_block;

typedef struct arena {
    arena_block *head;
} arena;

static void *arena_alloc(arena *a, size_t size)
{
    const size_t align = sizeof(max_align_t);
    arena_block *b = a->head;
    void *p;

    size = (size + align - 1) / align * align;
    if (b == NULL || b->cap - b->used < size) {
        const size_t cap = size > 65536 ? size : 65536;

        b = malloc(sizeof *b + cap);
        if (b == NULL)
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    p = (uint8_t *)b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

static char *arena_strndup(arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);

    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void arena_free(arena *a)
{
    while (a->head != NULL) {
        arena_block *next = a->head->next;

        free(a->head);
        a->head = next;
    }
}

/* ------------------------------------------------------------------------
 * Attributes
 * ---------------------------------------------------------------------- */

typedef struct span_b {
    arena *a;
    kv_t **kvs;
    size_t n, cap;
    int oom;
} span_b;

static any_t *attr(span_b *b, const char *key)
{
    kv_t *kv;
    any_t *v;

    if (b->oom)
        return NULL;
    if (b->n == b->cap) {
        const size_t cap = b->cap ? b->cap * 2 : 32;
        kv_t **grown = arena_alloc(b->a, cap * sizeof *grown);

        if (grown == NULL) {
            b->oom = 1;
            return NULL;
        }
        if (b->n)
            memcpy(grown, b->kvs, b->n * sizeof *grown);
        b->kvs = grown;
        b->cap = cap;
    }
    kv = arena_alloc(b->a, sizeof *kv);
    v = arena_alloc(b->a, sizeof *v);
    if (kv == NULL || v == NULL || (key = arena_strndup(b->a, key, strlen(key))) == NULL) {
        b->oom = 1;
        return NULL;
    }
    *kv = (kv_t)DEJA__OTLP__KEY_VALUE__INIT;
    *v = (any_t)DEJA__OTLP__ANY_VALUE__INIT;
    kv->key = (char *)key;
    kv->value = v;
    b->kvs[b->n++] = kv;
    return v;
}

static void attr_str_n(span_b *b, const char *key, const char *s, size_t n)
{
    any_t *v = attr(b, key);
    char *copy;

    if (v == NULL)
        return;
    copy = arena_strndup(b->a, s ? s : "", s ? n : 0);
    if (copy == NULL) {
        b->oom = 1;
        return;
    }
    v->value_case = DEJA__OTLP__ANY_VALUE__VALUE_STRING_VALUE;
    v->string_value = copy;
}

static void attr_str(span_b *b, const char *key, const char *s)
{
    attr_str_n(b, key, s, s ? strlen(s) : 0);
}

static void attr_int(span_b *b, const char *key, int64_t x)
{
    any_t *v = attr(b, key);

    if (v != NULL) {
        v->value_case = DEJA__OTLP__ANY_VALUE__VALUE_INT_VALUE;
        v->int_value = x;
    }
}

static void attr_double(span_b *b, const char *key, double x)
{
    any_t *v = attr(b, key);

    if (v != NULL) {
        v->value_case = DEJA__OTLP__ANY_VALUE__VALUE_DOUBLE_VALUE;
        v->double_value = x;
    }
}

static void attr_bool(span_b *b, const char *key, int x)
{
    any_t *v = attr(b, key);

    if (v != NULL) {
        v->value_case = DEJA__OTLP__ANY_VALUE__VALUE_BOOL_VALUE;
        v->bool_value = x != 0;
    }
}

static void attr_bytes(span_b *b, const char *key, const void *data, size_t n)
{
    any_t *v = attr(b, key);
    uint8_t *copy;

    if (v == NULL)
        return;
    copy = arena_alloc(b->a, n ? n : 1);
    if (copy == NULL) {
        b->oom = 1;
        return;
    }
    memcpy(copy, data, n);
    v->value_case = DEJA__OTLP__ANY_VALUE__VALUE_BYTES_VALUE;
    v->bytes_value.data = copy;
    v->bytes_value.len = n;
}

/* Whether `s` (n bytes) is valid UTF-8. */
static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        const uint8_t c = s[i];
        size_t k;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        k = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 0;
        if (k == 0 || k > n - i - 1)
            return 0;
        cp = c & (0x3F >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* Append `s` (n bytes of valid UTF-8) as a JSON string. */
static int json_str(deja__buf *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = deja__buf_append(o, "\"", 1);

    for (size_t i = 0; rc == 0 && i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};

        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = deja__buf_append(o, e, 2);
        } else if (c == '\n') {
            rc = deja__buf_append(o, "\\n", 2);
        } else if (c < 0x20) {
            rc = deja__buf_append(o, esc, 6);
        } else {
            rc = deja__buf_append(o, &s[i], 1);
        }
    }
    return rc == 0 ? deja__buf_append(o, "\"", 1) : rc;
}

/* gen_ai.input.messages / gen_ai.output.messages: the text tensors of one
 * side as the GenAI conventions' message list, one message of text parts. */
static void attr_messages(span_b *b, const char *key, const char *role, const deja_tensor *ts,
                          size_t n)
{
    deja__buf o = {0};
    int rc, any = 0;

    rc = deja__buf_append(&o, "[{\"role\":", 9);
    if (rc == 0)
        rc = json_str(&o, role, strlen(role));
    if (rc == 0)
        rc = deja__buf_append(&o, ",\"parts\":[", 10);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (ts[i].dtype != DEJA_UTF8 || ts[i].data == NULL || !utf8_ok(ts[i].data, ts[i].size))
            continue;
        static const char part[] = ",{\"type\":\"text\",\"content\":";

        rc = any ? deja__buf_append(&o, part, sizeof part - 1)
                 : deja__buf_append(&o, part + 1, sizeof part - 2);
        if (rc == 0)
            rc = json_str(&o, ts[i].data, ts[i].size);
        if (rc == 0)
            rc = deja__buf_append(&o, "}", 1);
        any = 1;
    }
    if (rc == 0)
        rc = deja__buf_append(&o, "]}]", 3);
    if (rc != 0)
        b->oom = 1;
    else if (any)
        attr_str_n(b, key, (const char *)o.data, o.size);
    deja__buf_free(&o);
}

static void attr_tensors(span_b *b, const char *side, const deja_tensor *ts, size_t n,
                         size_t inline_max)
{
    char key[300], text[256], hex[33];

    for (size_t i = 0; i < n; i++) {
        const deja_tensor *t = &ts[i];
        size_t o = 0;
        deja_digest d;

        snprintf(key, sizeof key, "deja.%s.%.200s.dtype", side, t->name ? t->name : "");
        attr_str(b, key, deja_dtype_name(t->dtype) ? deja_dtype_name(t->dtype) : "?");
        text[o++] = '[';
        for (size_t k = 0; k < t->ndim && o + 24 < sizeof text; k++)
            o += (size_t)snprintf(text + o, sizeof text - o, "%s%llu", k ? "," : "",
                                  (unsigned long long)t->shape[k]);
        text[o++] = ']';
        text[o] = '\0';
        snprintf(key, sizeof key, "deja.%s.%.200s.shape", side, t->name ? t->name : "");
        attr_str(b, key, text);
        snprintf(key, sizeof key, "deja.%s.%.200s.size", side, t->name ? t->name : "");
        attr_int(b, key, (int64_t)t->size);
        if (t->data == NULL)
            continue;
        d = deja_digest_of(t->data, t->size);
        deja_digest_format(&d, hex);
        snprintf(key, sizeof key, "deja.%s.%.200s.digest", side, t->name ? t->name : "");
        attr_str(b, key, hex);
        if (t->size > inline_max)
            continue;
        snprintf(key, sizeof key, "deja.%s.%.200s.content", side, t->name ? t->name : "");
        if (t->dtype == DEJA_UTF8 && utf8_ok(t->data, t->size))
            attr_str_n(b, key, t->data, t->size);
        else
            attr_bytes(b, key, t->data, t->size);
    }
}

static const char *tag_of(const deja_trace *t, const char *key)
{
    for (size_t i = 0; i < t->ntags; i++)
        if (strcmp(t->tags[i].key, key) == 0)
            return t->tags[i].value;
    return NULL;
}

/* A param or tag that holds a token count, else -1. */
static int64_t count_of(const deja_trace *t, const char *k1, const char *k2)
{
    const char *v;

    for (size_t i = 0; i < t->nparams; i++)
        if (t->params[i].kind == DEJA_PARAM_NUM &&
            (strcmp(t->params[i].key, k1) == 0 || strcmp(t->params[i].key, k2) == 0))
            return (int64_t)t->params[i].num;
    if ((v = tag_of(t, k1)) != NULL || (v = tag_of(t, k2)) != NULL) {
        char *end;
        long long x = strtoll(v, &end, 10);
        if (*end == '\0' && end != v)
            return x;
    }
    return -1;
}

static int is_request_param(const char *k)
{
    static const char *const known[] = {"temperature", "max_tokens",        "top_p",
                                        "top_k",       "seed",              "frequency_penalty",
                                        "presence_penalty", "stop_sequences", NULL};

    for (size_t i = 0; known[i] != NULL; i++)
        if (strcmp(k, known[i]) == 0)
            return 1;
    return 0;
}

static int any_text(const deja_tensor *ts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ts[i].dtype == DEJA_UTF8)
            return 1;
    return 0;
}

/* One span for trace `t`, built in `a`. NULL when out of memory. */
static Deja__Otlp__Span *span_of(arena *a, const deja_trace *t, const deja_otlp_options *o)
{
    Deja__Otlp__Span *s = arena_alloc(a, sizeof *s);
    Deja__Otlp__Status *st = arena_alloc(a, sizeof *st);
    uint8_t *tid = arena_alloc(a, 16), *sid = arena_alloc(a, 8), *pid = arena_alloc(a, 8);
    span_b b = {a, NULL, 0, 0, 0};
    char key[300], idtext[DEJA_ID_STRLEN + 1], name[400], hex[33];
    const char *op = tag_of(t, "gen_ai.operation.name");
    const char *provider = tag_of(t, "gen_ai.provider.name");
    int64_t in_tokens, out_tokens;

    if (s == NULL || st == NULL || tid == NULL || sid == NULL || pid == NULL)
        return NULL;
    *s = (Deja__Otlp__Span)DEJA__OTLP__SPAN__INIT;
    *st = (Deja__Otlp__Status)DEJA__OTLP__STATUS__INIT;
    memcpy(tid, t->has_parent ? t->parent.bytes : t->id.bytes, 16);
    memcpy(sid, t->id.bytes + 8, 8);
    s->trace_id = (ProtobufCBinaryData){16, tid};
    s->span_id = (ProtobufCBinaryData){8, sid};
    if (t->has_parent) {
        memcpy(pid, t->parent.bytes + 8, 8);
        s->parent_span_id = (ProtobufCBinaryData){8, pid};
    }
    if (op == NULL)
        op = any_text(t->inputs, t->ninputs) && any_text(t->outputs, t->noutputs)
                 ? "text_completion"
                 : "inference";
    snprintf(name, sizeof name, "%s %.300s", op, t->model_name ? t->model_name : "");
    s->name = arena_strndup(a, name, strlen(name));
    s->kind = DEJA__OTLP__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;
    s->start_time_unix_nano = (uint64_t)t->start_ns;
    s->end_time_unix_nano = (uint64_t)(t->start_ns + (t->duration_ns > 0 ? t->duration_ns : 0));
    st->code = t->status == DEJA_STATUS_OK ? DEJA__OTLP__STATUS__STATUS_CODE__STATUS_CODE_OK
                                           : DEJA__OTLP__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
    if (t->status != DEJA_STATUS_OK && t->error != NULL)
        st->message = arena_strndup(a, t->error, strlen(t->error));
    s->status = st;
    if (s->name == NULL || st->message == NULL)
        return NULL;

    attr_str(&b, "gen_ai.operation.name", op);
    if (provider != NULL)
        attr_str(&b, "gen_ai.provider.name", provider);
    attr_str(&b, "gen_ai.request.model", t->model_name);
    for (size_t i = 0; i < t->nparams; i++) {
        const deja_param *p = &t->params[i];

        for (int pass = 0; pass < 2; pass++) {
            if (pass == 0 && !is_request_param(p->key))
                continue;
            snprintf(key, sizeof key, pass == 0 ? "gen_ai.request.%.200s" : "deja.param.%.200s",
                     p->key);
            if (p->kind == DEJA_PARAM_NUM)
                attr_double(&b, key, p->num);
            else if (p->kind == DEJA_PARAM_STR)
                attr_str(&b, key, p->str);
            else
                attr_bool(&b, key, p->flag);
        }
    }
    in_tokens = count_of(t, "input_tokens", "prompt_tokens");
    out_tokens = count_of(t, "output_tokens", "completion_tokens");
    if (in_tokens >= 0)
        attr_int(&b, "gen_ai.usage.input_tokens", in_tokens);
    if (out_tokens >= 0)
        attr_int(&b, "gen_ai.usage.output_tokens", out_tokens);
    if (o->messages) {
        attr_messages(&b, "gen_ai.input.messages", "user", t->inputs, t->ninputs);
        attr_messages(&b, "gen_ai.output.messages", "assistant", t->outputs, t->noutputs);
    }
    deja_id_format(&t->id, idtext);
    attr_str(&b, "deja.trace.id", idtext);
    attr_str(&b, "deja.model.version", t->model_version);
    for (size_t i = 0; i < t->ntags; i++) {
        snprintf(key, sizeof key, "deja.tag.%.200s", t->tags[i].key);
        attr_str(&b, key, t->tags[i].value);
    }
    for (size_t i = 0; i < t->nseeds; i++) {
        snprintf(key, sizeof key, "deja.seed.%.200s", t->seeds[i].name);
        attr_int(&b, key, (int64_t)t->seeds[i].value);
    }
    if (t->has_env) {
        deja_digest_format(&t->env, hex);
        attr_str(&b, "deja.env.digest", hex);
    }
    attr_tensors(&b, "input", t->inputs, t->ninputs, o->inline_max);
    attr_tensors(&b, "output", t->outputs, t->noutputs, o->inline_max);
    if (b.oom)
        return NULL;
    s->attributes = b.kvs;
    s->n_attributes = b.n;
    return s;
}

/* ------------------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------------- */

/* Pack the spans into one ExportTraceServiceRequest body in `out`. */
static int pack_request(arena *a, Deja__Otlp__Span **spans, size_t n, const char *service,
                        deja__buf *out)
{
    Deja__Otlp__ExportTraceServiceRequest req = DEJA__OTLP__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    Deja__Otlp__ResourceSpans rs = DEJA__OTLP__RESOURCE_SPANS__INIT, *rsp = &rs;
    Deja__Otlp__ScopeSpans ss = DEJA__OTLP__SCOPE_SPANS__INIT, *ssp = &ss;
    Deja__Otlp__Resource res = DEJA__OTLP__RESOURCE__INIT;
    Deja__Otlp__InstrumentationScope scope = DEJA__OTLP__INSTRUMENTATION_SCOPE__INIT;
    span_b b = {a, NULL, 0, 0, 0};
    size_t size;
    int rc;

    attr_str(&b, "service.name", service);
    attr_str(&b, "telemetry.sdk.name", "deja");
    attr_str(&b, "telemetry.sdk.version", DEJA_VERSION_STRING);
    if (b.oom)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    res.attributes = b.kvs;
    res.n_attributes = b.n;
    scope.name = (char *)"deja";
    scope.version = (char *)DEJA_VERSION_STRING;
    ss.scope = &scope;
    ss.spans = spans;
    ss.n_spans = n;
    rs.resource = &res;
    rs.scope_spans = &ssp;
    rs.n_scope_spans = 1;
    req.resource_spans = &rsp;
    req.n_resource_spans = 1;
    size = deja__otlp__export_trace_service_request__get_packed_size(&req);
    out->size = 0;
    rc = deja__buf_reserve(out, size);
    if (rc != 0)
        return rc;
    out->size = deja__otlp__export_trace_service_request__pack(&req, out->data);
    return 0;
}

typedef struct answer {
    char text[ANSWER_SHOWN + 1];
    size_t n;
} answer;

static size_t on_answer(char *data, size_t size, size_t nmemb, void *payload)
{
    answer *a = payload;
    const size_t n = size * nmemb;

    for (size_t i = 0; i < n && a->n < ANSWER_SHOWN; i++)
        a->text[a->n++] = data[i] >= 0x20 && data[i] < 0x7f ? data[i] : ' ';
    a->text[a->n] = '\0';
    return n;
}

/* POST one body. */
static int post(CURL *curl, const char *url, const deja__buf *body, unsigned timeout_ms)
{
    struct curl_slist *h = NULL;
    answer ans = {{0}, 0};
    long status = 0;
    CURLcode c;
    int rc = 0;

    h = curl_slist_append(h, "Content-Type: application/x-protobuf");
    if (h == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, (const char *)body->data);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->size);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &ans);
    c = curl_easy_perform(curl);
    if (c != CURLE_OK) {
        rc = deja__error_set(DEJA_EIO, "otlp %s: %s", url, curl_easy_strerror(c));
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status > 299)
            rc = deja__error_set(DEJA_EIO, "otlp %s: HTTP %ld%s%s", url, status,
                                 ans.n ? ": " : "", ans.text);
    }
    curl_slist_free_all(h);
    return rc;
}

/* Write `body` to `path` through a temporary file renamed over it. */
static int write_file(const char *path, const deja__buf *body)
{
    char tmp[4096];
    FILE *fp;
    int ok;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= sizeof tmp)
        return deja__error_set(DEJA_EINVAL, "otlp file '%s': path too long", path);
    fp = fopen(tmp, "wb");
    if (fp == NULL)
        return deja__error_set(DEJA_EIO, "otlp file '%s': %s", path, strerror(errno));
    ok = fwrite(body->data, 1, body->size, fp) == body->size;
    ok = fclose(fp) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return deja__error_set(DEJA_EIO, "otlp file '%s': %s", path, strerror(e));
    }
    return 0;
}

/* The endpoint: a URL with no path gets OTLP's /v1/traces. */
static char *endpoint(const char *url)
{
    const char *scheme = strstr(url, "://");
    const char *path = strchr(scheme ? scheme + 3 : url, '/');
    const size_t n = strlen(url);
    char *out = malloc(n + 16);

    if (out == NULL)
        return NULL;
    if (path == NULL || strcmp(path, "/") == 0)
        snprintf(out, n + 16, "%.*s/v1/traces", (int)(path ? n - 1 : n), url);
    else
        snprintf(out, n + 16, "%s", url);
    return out;
}

int deja_otlp_export(deja_store *store, const deja_id *ids, size_t n, const deja_otlp_options *opts,
                     deja_otlp_stats *out)
{
    deja_otlp_options o;
    deja_otlp_stats st = {0, 0, 0};
    Deja__Otlp__Span **spans = NULL;
    deja_trace **traces = NULL;
    deja__buf body = {0};
    CURL *curl = NULL;
    char *url = NULL;
    size_t per;
    int rc = 0;

    if (opts == NULL || opts->version != DEJA_OTLP_OPTIONS_VERSION ||
        (opts->url == NULL) == (opts->file == NULL))
        return deja__error_set(DEJA_EINVAL, "otlp: give exactly one of a URL and a file");
    o = *opts;
    if (o.inline_max == 0)
        o.inline_max = DEFAULT_INLINE_MAX;
    if (o.batch == 0)
        o.batch = DEFAULT_BATCH;
    if (o.timeout_ms == 0)
        o.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (o.service_name == NULL)
        o.service_name = "deja";
    /* A file holds one request: every span. */
    per = o.file != NULL ? (n ? n : 1) : o.batch;
    spans = calloc(per, sizeof *spans);
    traces = calloc(per, sizeof *traces);
    if (spans == NULL || traces == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    if (o.url != NULL) {
        url = endpoint(o.url);
        if (url == NULL || curl_global_init(CURL_GLOBAL_DEFAULT) != 0 ||
            (curl = curl_easy_init()) == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "otlp: cannot start libcurl");
            goto cleanup;
        }
    }
    for (size_t done = 0; done < n || (n == 0 && done == 0);) {
        const size_t k = n - done < per ? n - done : per;
        arena a = {NULL};

        for (size_t i = 0; rc == 0 && i < k; i++) {
            rc = deja_trace_get(store, &ids[done + i], &traces[i]);
            if (rc == 0 && (spans[i] = span_of(&a, traces[i], &o)) == NULL)
                rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        }
        if (rc == 0)
            rc = pack_request(&a, spans, k, o.service_name, &body);
        if (rc == 0)
            rc = o.file != NULL ? write_file(o.file, &body) : post(curl, url, &body, o.timeout_ms);
        for (size_t i = 0; i < k; i++) {
            deja_trace_free(traces[i]);
            traces[i] = NULL;
        }
        arena_free(&a);
        if (rc != 0)
            goto cleanup;
        st.spans += k;
        st.bytes += body.size;
        st.requests += o.url != NULL;
        done += k;
        if (n == 0)
            break;
    }

cleanup:
    if (curl != NULL) {
        curl_easy_cleanup(curl);
        curl_global_cleanup();
    }
    free(url);
    free(spans);
    free(traces);
    deja__buf_free(&body);
    if (out != NULL)
        *out = st;
    return rc;
}
