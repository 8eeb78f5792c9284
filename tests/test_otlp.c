/*
 * tests/test_otlp.c -- `deja export --otlp URL` and `--otlp-file FILE`:
 * what is sent is decoded against the OTLP schema (fleet/otlp.proto, the
 * field numbers of opentelemetry-proto) and checked span by span: ids,
 * times, status, the GenAI attributes, payloads inline below the limit and
 * by digest above it, opt-in messages. A tiny HTTP receiver on loopback,
 * started and stopped by the test, takes the requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "cli_harness.h"
#include "deja.h"
#include "fleet/otlp.pb-c.h"

static char tmp_root[] = "/tmp/deja-test-otlp-XXXXXX";
static char store[600];

/* The receiver: answers `status` to each POST and keeps the last body. */
typedef struct receiver {
    int fd, port, status;
    pthread_t thread;
    uint8_t *body;
    size_t size;
    char path[256], type[128];
    int requests;
} receiver;

static void *serve(void *arg)
{
    receiver *r = arg;

    for (;;) {
        char head[8192], reply[128];
        size_t n = 0, len = 0;
        char *end, *cl, *ct;
        int c = accept(r->fd, NULL, NULL);

        if (c < 0)
            return NULL;
        while (n < sizeof head - 1) {
            ssize_t k = read(c, head + n, sizeof head - 1 - n);
            if (k <= 0)
                break;
            n += (size_t)k;
            head[n] = '\0';
            if (strstr(head, "\r\n\r\n") != NULL)
                break;
        }
        end = strstr(head, "\r\n\r\n");
        cl = strcasestr(head, "Content-Length:");
        ct = strcasestr(head, "Content-Type:");
        if (end == NULL || cl == NULL) {
            close(c);
            continue;
        }
        len = (size_t)strtoul(cl + 15, NULL, 10);
        sscanf(head, "POST %255s", r->path);
        if (ct != NULL)
            sscanf(ct + 13, " %127s", r->type);
        free(r->body);
        r->body = malloc(len + 1);
        r->size = n - (size_t)(end + 4 - head);
        memcpy(r->body, end + 4, r->size);
        while (r->size < len) {
            ssize_t k = read(c, r->body + r->size, len - r->size);
            if (k <= 0)
                break;
            r->size += (size_t)k;
        }
        r->requests++;
        snprintf(reply, sizeof reply, "HTTP/1.1 %d X\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope",
                 r->status);
        if (write(c, reply, strlen(reply)) < 0)
            fprintf(stderr, "receiver: write failed\n");
        close(c);
    }
}

static void receiver_start(receiver *r, int status)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;

    memset(r, 0, sizeof *r);
    r->status = status;
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(r->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(r->fd, 8), 0);
    getsockname(r->fd, (struct sockaddr *)&a, &len);
    r->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&r->thread, NULL, serve, r), 0);
}

static void receiver_stop(receiver *r)
{
    shutdown(r->fd, SHUT_RDWR);
    close(r->fd);
    pthread_join(r->thread, NULL);
    free(r->body);
}

static const char *tmp_path(const char *name)
{
    return cli_tmp_path(tmp_root, name);
}

static int group_setup(void **state)
{
    FILE *fp;
    cli_run r;
    (void)state;

    if (cli_group_begin(tmp_root) != 0)
        return -1;
    snprintf(store, sizeof store, "%s/s.store", tmp_root);
    fp = fopen(tmp_path("req.jsonl"), "w");
    if (fp == NULL)
        return -1;
    fputs("{\"inputs\": {\"prompt\": \"The fox\"}, \"params\": {\"max_tokens\": 40, "
          "\"temperature\": 0.5}, \"tags\": {\"user\": \"ann\"}}\n", fp);
    fputs("{\"inputs\": {\"prompt\": \"", fp);
    for (int i = 0; i < 300; i++)
        fputs("A long prompt. ", fp);
    fputs("\"}}\n", fp);
    fclose(fp);
    if (cli_exec(&r, NULL, NULL, "--store", store, "run", "--model", "textgen-v1", "--requests",
                 tmp_path("req.jsonl"), NULL) != 0 || r.status != 0)
        return -1;
    cli_run_free(&r);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    cli_rm_rf(tmp_root);
    return 0;
}

static const Deja__Otlp__AnyValue *attr(const Deja__Otlp__Span *s, const char *key)
{
    for (size_t i = 0; i < s->n_attributes; i++)
        if (strcmp(s->attributes[i]->key, key) == 0)
            return s->attributes[i]->value;
    return NULL;
}

static const char *attr_str(const Deja__Otlp__Span *s, const char *key)
{
    const Deja__Otlp__AnyValue *v = attr(s, key);

    if (v == NULL || v->value_case != DEJA__OTLP__ANY_VALUE__VALUE_STRING_VALUE)
        return NULL;
    return v->string_value;
}

/* Decode `body` and check every span against the store's trace. */
static void check_request(const uint8_t *body, size_t size, int messages)
{
    Deja__Otlp__ExportTraceServiceRequest *req =
        deja__otlp__export_trace_service_request__unpack(NULL, size, body);
    deja_store *st = NULL;
    Deja__Otlp__ScopeSpans *ss;
    int saw_blob = 0, saw_inline = 0;

    assert_non_null(req);
    assert_int_equal(req->n_resource_spans, 1);
    assert_int_equal(req->resource_spans[0]->n_scope_spans, 1);
    assert_string_equal(req->resource_spans[0]->resource->attributes[0]->key, "service.name");
    ss = req->resource_spans[0]->scope_spans[0];
    assert_string_equal(ss->scope->name, "deja");
    assert_int_equal(ss->n_spans, 2);
    assert_int_equal(deja_store_open(&st, store, DEJA_STORE_READONLY), 0);
    for (size_t i = 0; i < ss->n_spans; i++) {
        const Deja__Otlp__Span *s = ss->spans[i];
        const char *id_text = attr_str(s, "deja.trace.id");
        const char *content, *digest;
        deja_trace *t = NULL;
        deja_id id;
        char hex[33];
        deja_digest d;

        assert_non_null(id_text);
        assert_int_equal(deja_id_parse(&id, id_text), 0);
        assert_int_equal(deja_trace_get(st, &id, &t), 0);
        assert_int_equal(s->trace_id.len, 16);
        assert_memory_equal(s->trace_id.data, id.bytes, 16);
        assert_int_equal(s->span_id.len, 8);
        assert_memory_equal(s->span_id.data, id.bytes + 8, 8);
        assert_int_equal(s->kind, DEJA__OTLP__SPAN__SPAN_KIND__SPAN_KIND_CLIENT);
        assert_int_equal(s->start_time_unix_nano, (uint64_t)t->start_ns);
        assert_int_equal(s->end_time_unix_nano, (uint64_t)(t->start_ns + t->duration_ns));
        assert_int_equal(s->status->code, DEJA__OTLP__STATUS__STATUS_CODE__STATUS_CODE_OK);
        assert_string_equal(attr_str(s, "gen_ai.operation.name"), "text_completion");
        assert_string_equal(attr_str(s, "gen_ai.request.model"), t->model_name);
        assert_string_equal(attr_str(s, "deja.model.version"), t->model_version);
        assert_string_equal(s->name, "text_completion textgen");
        d = deja_digest_of(t->inputs[0].data, t->inputs[0].size);
        deja_digest_format(&d, hex);
        digest = attr_str(s, "deja.input.prompt.digest");
        assert_non_null(digest);
        assert_string_equal(digest, hex);
        assert_int_equal(attr(s, "deja.input.prompt.size")->int_value, (int64_t)t->inputs[0].size);
        content = attr_str(s, "deja.input.prompt.content");
        if (t->inputs[0].size > 4096) {
            assert_null(content);
            saw_blob = 1;
        } else {
            assert_non_null(content);
            assert_int_equal(strlen(content), t->inputs[0].size);
            assert_memory_equal(content, t->inputs[0].data, t->inputs[0].size);
            saw_inline = 1;
        }
        if (t->nparams > 0 && attr(s, "deja.param.max_tokens") != NULL) {
            assert_true(attr(s, "gen_ai.request.max_tokens")->double_value == 40.0);
            assert_true(attr(s, "gen_ai.request.temperature")->double_value == 0.5);
            assert_string_equal(attr_str(s, "deja.tag.user"), "ann");
        }
        if (messages) {
            json_t *j = json_loads(attr_str(s, "gen_ai.input.messages"), 0, NULL);
            json_t *part;

            assert_non_null(j);
            part = json_array_get(json_object_get(json_array_get(j, 0), "parts"), 0);
            assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "role")),
                                "user");
            assert_int_equal(json_string_length(json_object_get(part, "content")),
                             t->inputs[0].size);
            json_decref(j);
            assert_non_null(attr_str(s, "gen_ai.output.messages"));
        } else {
            assert_null(attr(s, "gen_ai.input.messages"));
        }
        deja_trace_free(t);
    }
    assert_true(saw_blob && saw_inline);
    deja_store_close(st);
    deja__otlp__export_trace_service_request__free_unpacked(req, NULL);
}

static void test_otlp__http_body_decodes_against_the_schema(void **state)
{
    receiver rcv;
    char url[64];
    cli_run r;
    (void)state;

    receiver_start(&rcv, 200);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", rcv.port);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", "--otlp", url,
                              "--otlp-messages", NULL),
                     0);
    if (r.status != 0)
        fail_msg("export: %s", r.err);
    assert_non_null(strstr(r.out, "exported 2 traces as OTLP spans"));
    cli_run_free(&r);
    assert_int_equal(rcv.requests, 1);
    assert_string_equal(rcv.path, "/v1/traces");
    assert_string_equal(rcv.type, "application/x-protobuf");
    check_request(rcv.body, rcv.size, 1);
    receiver_stop(&rcv);
}

static void test_otlp__file_is_the_same_request(void **state)
{
    const char *file = tmp_path("spans.otlp");
    receiver rcv;
    char url[80];
    size_t n = 0;
    char *data;
    cli_run r;
    (void)state;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", "--otlp-file", file,
                              NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    data = cli_slurp(file, &n);
    assert_non_null(data);
    check_request((const uint8_t *)data, n, 0);
    receiver_start(&rcv, 200);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/custom/path", rcv.port);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", "--otlp", url, NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_string_equal(rcv.path, "/custom/path");
    assert_int_equal(rcv.size, n);
    assert_memory_equal(rcv.body, data, n);
    receiver_stop(&rcv);
    free(data);
}

static void test_otlp__refused_and_unreachable(void **state)
{
    receiver rcv;
    char url[64];
    cli_run r;
    (void)state;

    receiver_start(&rcv, 500);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", rcv.port);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", "--otlp", url, NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "HTTP 500");
    cli_run_free(&r);
    receiver_stop(&rcv);
    /* The port is closed now. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", "--otlp", url, NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "otlp http://127.0.0.1:");
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", "--otlp", url,
                              "--otlp-file", "x", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_otlp__http_body_decodes_against_the_schema),
        cmocka_unit_test(test_otlp__file_is_the_same_request),
        cmocka_unit_test(test_otlp__refused_and_unreachable),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
