/*
 * bench/proxy.c -- what deja proxy adds in front of an LLM server: the
 * latency of a request and the time to the first streamed token, direct to
 * `deja serve` (textgen-v1, in process) and through the recording proxy,
 * interleaved so that drift hits both alike; and the throughput of 64
 * clients streaming at once. Loopback only; the client keeps its
 * connections alive (as OpenAI clients do).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "bench.h"
#include "deja.h"

#define NCLIENTS 64

static const char request[] =
    "{\"model\":\"textgen\",\"prompt\":\"The fox\",\"seed\":7,\"max_tokens\":16,"
    "\"temperature\":0.8}";
static const char request_stream[] =
    "{\"model\":\"textgen\",\"prompt\":\"The fox\",\"seed\":7,\"max_tokens\":16,"
    "\"temperature\":0.8,\"stream\":true}";

typedef struct call {
    CURL *easy;
    struct curl_slist *headers;
    double t0;
    double first; /* time of the first body bytes */
    size_t bytes;
} call;

static size_t on_data(char *data, size_t size, size_t n, void *cls)
{
    call *c = cls;
    (void)data;
    if (c->bytes == 0) {
        c->first = bench_now();
    }
    c->bytes += size * n;
    return size * n;
}

static int call_init(call *c, const char *url)
{
    memset(c, 0, sizeof(*c));
    c->easy = curl_easy_init();
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (c->easy == NULL || c->headers == NULL) {
        return -1;
    }
    curl_easy_setopt(c->easy, CURLOPT_URL, url);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    return 0;
}

/* One request; the latency and time to first bytes in microseconds.
 * Returns 0 on a 200 answer. */
static int call_once(call *c, const char *body, double *total_us, double *first_us)
{
    long status = 0;
    c->bytes = 0;
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
    c->t0 = bench_now();
    CURLcode rc = curl_easy_perform(c->easy);
    double t1 = bench_now();
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
        return -1;
    }
    *total_us = (t1 - c->t0) * 1e6;
    *first_us = (c->first - c->t0) * 1e6;
    return 0;
}

static void call_free(call *c)
{
    curl_slist_free_all(c->headers);
    curl_easy_cleanup(c->easy);
}

typedef struct client {
    const char *url;
    size_t n;
    int failed;
    pthread_t thread;
} client;

static void *client_main(void *arg)
{
    client *cl = arg;
    call c;
    double a, b;
    if (call_init(&c, cl->url) != 0) {
        cl->failed = 1;
        return NULL;
    }
    for (size_t i = 0; i < cl->n; i++) {
        if (call_once(&c, request_stream, &a, &b) != 0) {
            cl->failed = 1;
        }
    }
    call_free(&c);
    return NULL;
}

/* Streamed requests per second of NCLIENTS clients at once, `per` each. */
static double throughput(const char *url, size_t per)
{
    client cl[NCLIENTS];
    double t0 = bench_now();
    int failed = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        cl[i].url = url;
        cl[i].n = per;
        cl[i].failed = 0;
        pthread_create(&cl[i].thread, NULL, client_main, &cl[i]);
    }
    for (int i = 0; i < NCLIENTS; i++) {
        pthread_join(cl[i].thread, NULL);
        failed |= cl[i].failed;
    }
    return failed ? NAN : (double)(NCLIENTS * per) / (bench_now() - t0);
}

int bench_proxy(bench_report *rep, const bench_config *c)
{
    char store[1024], up[128], direct_url[160], proxy_url[160];
    deja_tracer *tracer = NULL;
    deja_server *serve = NULL, *proxy = NULL;
    call d, p;
    const size_t repeats = c->quick ? 2 : 5, pairs = c->quick ? 200 : 1000;
    double *dl = calloc(pairs, sizeof(double)), *pl = calloc(pairs, sizeof(double));
    double *df = calloc(pairs, sizeof(double)), *pf = calloc(pairs, sizeof(double));
    bench_figure *f50 = bench_report_add(rep, "proxy_added_p50", "llm", 1, "us", 0);
    bench_figure *f99 = bench_report_add(rep, "proxy_added_p99", "llm", 1, "us", 0);
    bench_figure *t50 = bench_report_add(rep, "proxy_ttft_added_p50", "llm", 1, "us", 0);
    bench_figure *t99 = bench_report_add(rep, "proxy_ttft_added_p99", "llm", 1, "us", 0);
    bench_figure *tp = bench_report_add(rep, "proxy_64_clients", "llm", NCLIENTS, "req/s", 1);
    int rc = -1;
    memset(&d, 0, sizeof(d));
    memset(&p, 0, sizeof(p));
    if (!dl || !pl || !df || !pf || !f50 || !f99 || !t50 || !t99 || !tp) {
        goto cleanup;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(store, sizeof(store), "%s/proxy.store", c->workdir);
    deja_serve_options so = DEJA_SERVE_OPTIONS_INIT;
    so.listen = "127.0.0.1:0";
    so.model = "textgen-v1";
    if (deja_tracer_open(&tracer, store, NULL) != 0 || deja_serve_start(&serve, &so) != 0) {
        fprintf(stderr, "deja-bench: proxy: %s\n", deja_error_last());
        goto cleanup;
    }
    snprintf(up, sizeof(up), "http://127.0.0.1:%u", deja_server_port(serve));
    deja_proxy_options po = DEJA_PROXY_OPTIONS_INIT;
    po.listen = "127.0.0.1:0";
    po.upstream = up;
    if (deja_proxy_start(&proxy, tracer, &po) != 0) {
        fprintf(stderr, "deja-bench: proxy: %s\n", deja_error_last());
        goto cleanup;
    }
    snprintf(direct_url, sizeof(direct_url), "%s/v1/completions", up);
    snprintf(proxy_url, sizeof(proxy_url), "http://127.0.0.1:%u/v1/completions",
             deja_server_port(proxy));
    if (call_init(&d, direct_url) != 0 || call_init(&p, proxy_url) != 0) {
        goto cleanup;
    }
    const char *spread = c->quick ? "2 repeats x 200 pairs" : "5 repeats x 1000 pairs";
    snprintf(f50->spread, sizeof(f50->spread), "%s", spread);
    snprintf(f99->spread, sizeof(f99->spread), "%s", spread);
    snprintf(t50->spread, sizeof(t50->spread), "%s", spread);
    snprintf(t99->spread, sizeof(t99->spread), "%s", spread);
    snprintf(f50->note, sizeof(f50->note),
             "p50 through deja proxy minus p50 direct to deja serve (textgen-v1, 16 tokens), "
             "non-streaming, keep-alive");
    snprintf(t50->note, sizeof(t50->note),
             "time to the first streamed bytes, through the proxy minus direct");
    bench_figure_target(f50, 1, SYS_DEJA, 100, "<= 100 us");
    bench_figure_target(f99, 1, SYS_DEJA, 1000, "<= 1 ms");
    for (size_t r = 0; r < repeats; r++) {
        double x, y;
        for (size_t i = 0; i < pairs; i++) {
            /* Alternate which goes first, so neither always finds a warm cache. */
            call *first = (i & 1) ? &p : &d, *second = (i & 1) ? &d : &p;
            double *l1 = (i & 1) ? pl : dl, *l2 = (i & 1) ? dl : pl;
            if (call_once(first, request, &l1[i], &x) != 0 ||
                call_once(second, request, &l2[i], &y) != 0) {
                fprintf(stderr, "deja-bench: proxy: a request failed\n");
                goto cleanup;
            }
        }
        for (size_t i = 0; i < pairs; i++) {
            call *first = (i & 1) ? &p : &d, *second = (i & 1) ? &d : &p;
            double *f1 = (i & 1) ? pf : df, *f2 = (i & 1) ? df : pf;
            if (call_once(first, request_stream, &x, &f1[i]) != 0 ||
                call_once(second, request_stream, &y, &f2[i]) != 0) {
                fprintf(stderr, "deja-bench: proxy: a streamed request failed\n");
                goto cleanup;
            }
        }
        f50->v[SYS_DEJA][r] = bench_quantile(pl, pairs, 0.5) - bench_quantile(dl, pairs, 0.5);
        f99->v[SYS_DEJA][r] = bench_quantile(pl, pairs, 0.99) - bench_quantile(dl, pairs, 0.99);
        t50->v[SYS_DEJA][r] = bench_quantile(pf, pairs, 0.5) - bench_quantile(df, pairs, 0.5);
        t99->v[SYS_DEJA][r] = bench_quantile(pf, pairs, 0.99) - bench_quantile(df, pairs, 0.99);
        f50->n[SYS_DEJA] = f99->n[SYS_DEJA] = t50->n[SYS_DEJA] = t99->n[SYS_DEJA] = r + 1;
        fprintf(stderr,
                "deja-bench: proxy repeat %zu: direct p50 %.0f us p99 %.0f us; via proxy p50 "
                "%.0f us p99 %.0f us\n",
                r + 1, bench_quantile(dl, pairs, 0.5), bench_quantile(dl, pairs, 0.99),
                bench_quantile(pl, pairs, 0.5), bench_quantile(pl, pairs, 0.99));
    }
    double direct_tp = throughput(direct_url, c->quick ? 10 : 40);
    double proxy_tp = throughput(proxy_url, c->quick ? 10 : 40);
    tp->v[SYS_DEJA][0] = proxy_tp;
    tp->n[SYS_DEJA] = 1;
    snprintf(tp->spread, sizeof(tp->spread), "1 run");
    snprintf(tp->note, sizeof(tp->note),
             "64 clients streaming at once through the proxy; direct to deja serve: %.0f req/s",
             direct_tp);
    rc = 0;
cleanup:
    call_free(&d);
    call_free(&p);
    deja_server_stop(proxy);
    deja_server_stop(serve);
    deja_tracer_close(tracer);
    free(dl);
    free(pl);
    free(df);
    free(pf);
    return rc;
}
