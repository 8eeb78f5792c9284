/*
 * bench/fleet.c -- the "fleet" pass: shipping to one JetStream node on
 * loopback against the limit (a plain asynchronous publish of as many
 * messages and bytes, in the same run, three rounds in turn, median), and
 * distributed replay with 1, 2 and 4 workers against a local replay of the
 * same traces (per-trace coordination overhead: three pairs in turn,
 * median). It starts nats-server itself and stops it.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "bench.h"

#ifndef DEJA_BENCH_BUILD_DIR
#define DEJA_BENCH_BUILD_DIR "."
#endif

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Start `argv` with stdout and stderr to /dev/null; the pid or -1. */
static pid_t spawn(char *const *argv)
{
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void stop(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
}

/* Record the workload's pool into `dir`/deja.store. */
static int build_store(const char *dir, const bench_workload *w)
{
    const bench_sink_ops *ops = &bench_sink_deja;
    bench_sink *s = NULL;
    bench_thread t;
    int rc = 0;

    if (bench_thread_init(&t, w, 7) != 0 || ops->open(&s, dir, w) != 0)
        return -1;
    for (size_t i = 0; rc == 0 && i < w->nrecs; i++) {
        t.pool_index = i;
        rc = ops->record(s, &t, &w->recs[i]);
    }
    if (ops->thread_end != NULL)
        ops->thread_end(s, &t);
    if (ops->finish(s) != 0)
        rc = -1;
    ops->close(s);
    bench_thread_free(&t);
    return rc;
}

/* Publish `msgs` messages of `bytes` bytes in all to a plain stream: no
 * message ids, no per-subject limit, acknowledged. Seconds, or -1. */
static double plain_publish(const char *url, uint64_t msgs, uint64_t bytes)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsPubOptions po;
    const char *subjects[] = {"bench.plain.>"};
    const size_t each = msgs ? (size_t)(bytes / msgs) : 0;
    char *payload = calloc(1, each + 1);
    char subject[64];
    double t0, t = -1;

    if (payload == NULL || natsConnection_ConnectTo(&nc, url) != NATS_OK)
        goto cleanup;
    for (size_t i = 0; i < each; i++)
        payload[i] = (char)('a' + i % 23);
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
        goto cleanup;
    jsStreamConfig_Init(&sc);
    sc.Name = "BENCH_PLAIN";
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    if (js_AddStream(&si, js, &sc, NULL, NULL) != NATS_OK)
        goto cleanup;
    t0 = bench_now();
    for (uint64_t i = 0; i < msgs; i++) {
        snprintf(subject, sizeof subject, "bench.plain.%llu", (unsigned long long)(i % 1024));
        if (js_PublishAsync(js, subject, payload, (int)each, NULL) != NATS_OK)
            goto cleanup;
    }
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    if (js_PublishAsyncComplete(js, &po) != NATS_OK)
        goto cleanup;
    t = bench_now() - t0;
    js_DeleteStream(js, "BENCH_PLAIN", NULL, NULL);

cleanup:
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    free(payload);
    return t;
}

static int dbl_cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Delete deja's trace and object streams, so that the next ship starts
 * from empty streams. */
static void delete_streams(const char *url)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;

    if (natsConnection_ConnectTo(&nc, url) == NATS_OK &&
        natsConnection_JetStream(&js, nc, NULL) == NATS_OK) {
        js_DeleteStream(js, "DEJA_TRACES", NULL, NULL);
        js_DeleteStream(js, "DEJA_OBJECTS", NULL, NULL);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

#define SHIP_ROUNDS 3

/* Ship one workload SHIP_ROUNDS times into empty streams, each round
 * followed by the plain publish of as many messages and bytes (the limit
 * at that moment: the machine's load changes between rounds); print each
 * round's figures and the median. Each round ships with a filter of its
 * own that selects everything (since 1970 + round ns), so that it starts
 * from no position. */
static void ship_pass(bench_report *rep, const bench_config *c, const char *url,
                      const bench_workload *w)
{
    char dir[4096], path[4200];
    deja_fleet_options fo = DEJA_FLEET_OPTIONS_INIT;
    deja_ship_stats st;
    deja_store *store = NULL;
    double ratio[SHIP_ROUNDS], tps[SHIP_ROUNDS], mbs[SHIP_ROUNDS];
    int rounds = 0;

    snprintf(dir, sizeof dir, "%s/fleet-%s", c->workdir, w->name);
    bench_mkdirs(dir);
    snprintf(path, sizeof path, "%s/deja.store", dir);
    fo.servers = url;
    if (build_store(dir, w) != 0 || deja_store_open(&store, path, DEJA_STORE_WRITE) != 0) {
        fprintf(stderr, "deja-bench: fleet %s: %s\n", w->name, deja_error_last());
        goto cleanup;
    }
    for (int r = 0; r < SHIP_ROUNDS; r++) {
        deja_ship_options so = DEJA_SHIP_OPTIONS_INIT;
        deja_filter flt;
        deja_fleet *f = NULL;
        double t0, ship_s, plain_s;

        memset(&flt, 0, sizeof flt);
        flt.since_ns = r + 1;
        so.filter = &flt;
        delete_streams(url);
        if (deja_fleet_connect(&f, &fo) != 0) {
            fprintf(stderr, "deja-bench: fleet %s: %s\n", w->name, deja_error_last());
            break;
        }
        t0 = bench_now();
        if (deja_fleet_ship(f, store, &so, &st) != 0) {
            fprintf(stderr, "deja-bench: ship %s: %s\n", w->name, deja_error_last());
            deja_fleet_close(f);
            break;
        }
        ship_s = bench_now() - t0;
        deja_fleet_close(f);
        plain_s = plain_publish(url, st.traces + st.objects, st.bytes);
        if (plain_s <= 0)
            break;
        tps[rounds] = (double)st.traces / ship_s;
        mbs[rounds] = (double)st.bytes / 1e6 / ship_s;
        ratio[rounds] = 100.0 * plain_s / ship_s;
        printf("fleet  ship %-6s %7llu traces %6llu objects %8.1f MB: %8.0f traces/s %7.1f MB/s; "
               "plain publish of as many messages and bytes %7.1f MB/s: ship at %.0f %% of it\n",
               w->name, (unsigned long long)st.traces, (unsigned long long)st.objects,
               (double)st.bytes / 1e6, tps[rounds], mbs[rounds],
               (double)st.bytes / 1e6 / plain_s, ratio[rounds]);
        rounds++;
    }
    if (rounds > 0) {
        double lo = ratio[0], hi = ratio[0];

        for (int r = 1; r < rounds; r++) {
            lo = ratio[r] < lo ? ratio[r] : lo;
            hi = ratio[r] > hi ? ratio[r] : hi;
        }
        qsort(ratio, (size_t)rounds, sizeof *ratio, dbl_cmp);
        qsort(tps, (size_t)rounds, sizeof *tps, dbl_cmp);
        qsort(mbs, (size_t)rounds, sizeof *mbs, dbl_cmp);
        printf("fleet  ship %-6s median of %d rounds: %.0f traces/s, %.1f MB/s, %.0f %% of the "
               "plain publish (rounds %.0f-%.0f %%; target >= 50 %%)\n",
               w->name, rounds, tps[rounds / 2], mbs[rounds / 2], ratio[rounds / 2], lo, hi);
        bench_report_note(rep,
                          "fleet ship %s: %.0f traces/s, %.1f MB/s, %.0f %% of a plain publish of "
                          "the same messages and bytes (median of %d rounds, %.0f-%.0f %%; "
                          "target >= 50 %%)",
                          w->name, tps[rounds / 2], mbs[rounds / 2], ratio[rounds / 2], rounds,
                          lo, hi);
    }

cleanup:
    deja_store_close(store);
}

/* Run the deja command with `args` (after "deja --store store"), output to
 * /dev/null; wall seconds, or -1 when it fails (exit 2 and up). */
static double timed_deja(const bench_config *c, const char *store, const char *const *args)
{
    char *argv[32];
    size_t n = 0;
    int status = 0;
    double t0 = bench_now();
    pid_t pid;

    argv[n++] = (char *)c->deja_bin;
    argv[n++] = (char *)"--store";
    argv[n++] = (char *)store;
    for (size_t i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    pid = spawn(argv);
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) > 1)
        return -1;
    return bench_now() - t0;
}

/* Distributed replay of `n` textgen traces with 1, 2 and 4 workers. */
static void replay_pass(bench_report *rep, const bench_config *c, const char *url, size_t n)
{
    char store[4096], req[4096], cache[4200];
    const char *run[] = {"run", "--model", "textgen-v1", "--requests", req, NULL};
    const char *local[] = {"replay", "--model", "textgen-v1", "--json", NULL};
    const char *via[] = {"replay", "--model", "textgen-v1", "--json", "--via", url, NULL};
    double t_local;
    FILE *fp;

    snprintf(store, sizeof store, "%s/fleet-replay.store", c->workdir);
    snprintf(req, sizeof req, "%s/fleet-replay.jsonl", c->workdir);
    fp = fopen(req, "w");
    if (fp == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        fprintf(fp, "{\"inputs\": {\"prompt\": \"Request %zu: the fox\"}, \"params\": "
                    "{\"max_tokens\": 8}}\n",
                i);
    fclose(fp);
    if (timed_deja(c, store, run) < 0 || (t_local = timed_deja(c, store, local)) < 0) {
        fprintf(stderr, "deja-bench: fleet replay: cannot record or replay locally\n");
        return;
    }
    /* The first --via run ships the selection; not timed. */
    {
        pid_t w;
        char *wargv[] = {(char *)c->deja_bin, "--store", cache, "worker", "--from", (char *)url,
                         NULL};

        snprintf(cache, sizeof cache, "%s/fleet-worker-warm.cache", c->workdir);
        w = spawn(wargv);
        timed_deja(c, store, via);
        stop(w);
    }
    /* One worker against a local replay, SHIP_ROUNDS pairs in turn (the
     * load changes between them): the overhead is each pair's difference. */
    {
        double over[SHIP_ROUNDS], lo = 0, hi = 0;
        int pairs = 0;

        for (int r = 0; r < SHIP_ROUNDS; r++) {
            pid_t pid;
            double t, tl = timed_deja(c, store, local);
            char *wargv[] = {(char *)c->deja_bin, "--store", cache, "worker", "--from",
                             (char *)url, "--prefetch", "16", NULL};

            snprintf(cache, sizeof cache, "%s/fleet-worker-1-%d.cache", c->workdir, r);
            pid = spawn(wargv);
            t = timed_deja(c, store, via);
            stop(pid);
            if (t < 0 || tl < 0) {
                fprintf(stderr, "deja-bench: fleet replay --via with 1 worker failed\n");
                continue;
            }
            over[pairs] = (t - tl) / (double)n * 1e6;
            lo = pairs == 0 || over[pairs] < lo ? over[pairs] : lo;
            hi = pairs == 0 || over[pairs] > hi ? over[pairs] : hi;
            printf("fleet  replay %zu traces locally %8.0f traces/s, --via 1 worker %8.0f "
                   "traces/s: coordination overhead %.0f us per trace\n",
                   n, (double)n / tl, (double)n / t, over[pairs]);
            pairs++;
        }
        if (pairs > 0) {
            qsort(over, (size_t)pairs, sizeof *over, dbl_cmp);
            printf("fleet  replay coordination overhead, median of %d pairs: %.0f us per trace "
                   "(pairs %.0f-%.0f; target <= 200)\n",
                   pairs, over[pairs / 2], lo, hi);
            bench_report_note(rep, "fleet replay coordination overhead: %.0f us per trace "
                                   "(median of %d pairs, %.0f-%.0f; target <= 200)",
                              over[pairs / 2], pairs, lo, hi);
        }
    }
    printf("fleet  replay %zu traces locally: %.0f traces/s\n", n, (double)n / t_local);
    for (int workers = 2; workers <= 4; workers *= 2) {
        pid_t pids[4];
        char caches[4][4200];
        double t;

        for (int i = 0; i < workers; i++) {
            char *wargv[] = {(char *)c->deja_bin, "--store", caches[i], "worker", "--from",
                             (char *)url, "--prefetch", "16", NULL};

            snprintf(caches[i], sizeof caches[i], "%s/fleet-worker-%d-%d.cache", c->workdir,
                     workers, i);
            pids[i] = spawn(wargv);
        }
        t = timed_deja(c, store, via);
        for (int i = 0; i < workers; i++)
            stop(pids[i]);
        if (t < 0) {
            fprintf(stderr, "deja-bench: fleet replay --via with %d workers failed\n", workers);
            continue;
        }
        printf("fleet  replay --via, %d workers: %8.0f traces/s\n", workers, (double)n / t);
        bench_report_note(rep, "fleet replay --via, %d workers: %.0f traces/s (local %.0f)",
                          workers, (double)n / t, (double)n / t_local);
    }
}

int bench_fleet(bench_report *rep, const bench_config *c, const bench_workload *small,
                const bench_workload *chat)
{
    char dir[4096], port[16], url[64];
    char *argv[] = {"nats-server", "-js", "-sd", dir, "-a", "127.0.0.1", "-p", port, NULL};
    pid_t server;
    int p = free_port();

    /* The deja command finds textgen next to the bench's build. */
    setenv("DEJA_PLUGIN_PATH", DEJA_BENCH_BUILD_DIR "/lib", 0);
    snprintf(dir, sizeof dir, "%s/nats", c->workdir);
    snprintf(port, sizeof port, "%d", p);
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", p);
    server = spawn(argv);
    if (server < 0)
        return -1;
    for (int i = 0; i < 100; i++) {
        natsConnection *nc = NULL;

        if (natsConnection_ConnectTo(&nc, url) == NATS_OK) {
            natsConnection_Destroy(nc);
            break;
        }
        usleep(50000);
    }
    if (small != NULL && small->nrecs)
        ship_pass(rep, c, url, small);
    if (chat != NULL && chat->nrecs)
        ship_pass(rep, c, url, chat);
    replay_pass(rep, c, url, c->quick ? 300 : 2000);
    stop(server);
    return 0;
}
