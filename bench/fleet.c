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
#include <sys/resource.h>
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

/* The messages a ship published, as the streams hold them. */
typedef struct captured {
    char **subjects, **ids; /* ids[i] NULL: no Nats-Msg-Id */
    char **data;
    int *sizes;
    size_t n, cap;
} captured;

static void captured_free(captured *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->subjects[i]);
        free(c->ids[i]);
        free(c->data[i]);
    }
    free(c->subjects);
    free(c->ids);
    free(c->data);
    free(c->sizes);
    memset(c, 0, sizeof *c);
}

static int capture_one(captured *c, natsMsg *m)
{
    const char *id = NULL;
    const int size = natsMsg_GetDataLength(m);

    if (c->n == c->cap) {
        const size_t cap = c->cap ? c->cap * 2 : 4096;
        char **s = realloc(c->subjects, cap * sizeof *s), **i, **d;
        int *z;

        if (s == NULL)
            return -1;
        c->subjects = s;
        if ((i = realloc(c->ids, cap * sizeof *i)) == NULL)
            return -1;
        c->ids = i;
        if ((d = realloc(c->data, cap * sizeof *d)) == NULL)
            return -1;
        c->data = d;
        if ((z = realloc(c->sizes, cap * sizeof *z)) == NULL)
            return -1;
        c->sizes = z;
        c->cap = cap;
    }
    natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
    c->subjects[c->n] = strdup(natsMsg_GetSubject(m));
    c->ids[c->n] = id != NULL ? strdup(id) : NULL;
    c->data[c->n] = malloc((size_t)size + 1);
    c->sizes[c->n] = size;
    if (c->subjects[c->n] == NULL || c->data[c->n] == NULL) {
        free(c->subjects[c->n]);
        free(c->ids[c->n]);
        free(c->data[c->n]);
        return -1;
    }
    memcpy(c->data[c->n], natsMsg_GetData(m), (size_t)size);
    c->n++;
    return 0;
}

/* Append every message of `stream` (in stream order) to `c`. */
static int capture_stream(captured *c, jsCtx *js, const char *stream, const char *filter)
{
    jsStreamInfo *si = NULL;
    jsSubOptions so;
    natsSubscription *sub = NULL;
    uint64_t want, got = 0;
    int rc = -1;

    if (js_GetStreamInfo(&si, js, stream, NULL, NULL) != NATS_OK)
        return -1;
    want = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Config.AckPolicy = js_AckNone;
    so.Config.DeliverPolicy = js_DeliverAll;
    if (js_PullSubscribe(&sub, js, filter, NULL, NULL, &so, NULL) != NATS_OK)
        return -1;
    while (got < want) {
        natsMsgList list = {0};

        if (natsSubscription_Fetch(&list, sub, 1024, 5000, NULL) != NATS_OK)
            goto cleanup;
        for (int i = 0; i < list.Count; i++)
            if (capture_one(c, list.Msgs[i]) != 0) {
                natsMsgList_Destroy(&list);
                goto cleanup;
            }
        got += (uint64_t)list.Count;
        natsMsgList_Destroy(&list);
    }
    rc = 0;

cleanup:
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return rc;
}

/* The messages of deja's streams: objects (chunks, blobs, environments and
 * chunk lists, in the order they were stored), then traces. */
static int capture(const char *url, captured *c)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    int rc = -1;

    if (natsConnection_ConnectTo(&nc, url) == NATS_OK &&
        natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
        capture_stream(c, js, "DEJA_OBJECTS", "deja.obj.>") == 0 &&
        capture_stream(c, js, "DEJA_TRACES", "deja.traces.>") == 0)
        rc = 0;
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}

/* Publish the captured messages as they are (subjects, Nats-Msg-Id,
 * payloads) into empty streams made the way deja makes them: the limit of
 * the server for the very messages the ship sends, without any of the
 * ship's work. Seconds, or -1. */
static double same_publish(const char *url, const captured *c)
{
    deja_fleet_options fo = DEJA_FLEET_OPTIONS_INIT;
    deja_fleet *f = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    jsPubOptions po;
    double t0, t = -1;

    delete_streams(url);
    fo.servers = url;
    if (deja_fleet_connect(&f, &fo) != 0) /* makes deja's streams */
        return -1;
    deja_fleet_close(f);
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
        goto cleanup;
    t0 = bench_now();
    for (size_t i = 0; i < c->n; i++) {
        natsMsg *m = NULL;

        if (natsMsg_Create(&m, c->subjects[i], NULL, c->data[i], c->sizes[i]) != NATS_OK ||
            (c->ids[i] != NULL && natsMsgHeader_Set(m, "Nats-Msg-Id", c->ids[i]) != NATS_OK) ||
            js_PublishMsgAsync(js, &m, NULL) != NATS_OK) {
            natsMsg_Destroy(m);
            goto cleanup;
        }
    }
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    if (js_PublishAsyncComplete(js, &po) != NATS_OK)
        goto cleanup;
    t = bench_now() - t0;

cleanup:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return t;
}

/* CPU seconds used so far by this process (all its threads) and by
 * process `pid` (from /proc; 0 when unreadable). */
static double self_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static double pid_cpu(pid_t pid)
{
    char path[64];
    unsigned long ut = 0, st = 0;
    FILE *fp;
    int ok;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    fp = fopen(path, "r");
    if (fp == NULL)
        return 0;
    /* After "pid (comm) state", utime and stime are fields 14 and 15. */
    ok = fscanf(fp, "%*d (%*[^)]) %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                &st) == 2;
    fclose(fp);
    return ok ? (double)(ut + st) / (double)sysconf(_SC_CLK_TCK) : 0;
}

static int dbl_cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

#define SHIP_ROUNDS 3

/* The figures of one round. */
typedef struct ship_round {
    double ratio, same_ratio, tps, mbs;
    double ship_cpu, ship_srv, plain_srv, same_srv; /* CPU seconds */
} ship_round;

static int round_cmp_ratio(const void *a, const void *b)
{
    return dbl_cmp(&((const ship_round *)a)->ratio, &((const ship_round *)b)->ratio);
}

/* Ship one workload SHIP_ROUNDS times into empty streams, each round
 * followed by two publishes without deja's work (the limit at that moment:
 * the machine's load changes between rounds): a plain publish of as many
 * messages and bytes (one payload repeated, 1024 subjects, no message ids,
 * a stream without limits), and the very messages the ship sent (captured
 * from the streams after the first round: subjects, Nats-Msg-Id, payloads)
 * into streams made as deja makes them. Print each round's figures, the
 * CPU each side used (the bench's own process, which ships, and the
 * server's), and the median. Each round ships with a filter of its own
 * that selects everything (since 1970 + round ns), so that it starts from
 * no position. */
static void ship_pass(bench_report *rep, const bench_config *c, const char *url, pid_t server,
                      const bench_workload *w)
{
    char dir[4096], path[4200];
    deja_fleet_options fo = DEJA_FLEET_OPTIONS_INIT;
    deja_ship_stats st;
    deja_store *store = NULL;
    ship_round rr[SHIP_ROUNDS];
    captured cap = {0};
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
        ship_round *x = &rr[rounds];
        double t0, c0, s0, ship_s, plain_s, same_s;

        memset(&flt, 0, sizeof flt);
        flt.since_ns = r + 1;
        so.filter = &flt;
        delete_streams(url);
        if (deja_fleet_connect(&f, &fo) != 0) {
            fprintf(stderr, "deja-bench: fleet %s: %s\n", w->name, deja_error_last());
            break;
        }
        c0 = self_cpu();
        s0 = pid_cpu(server);
        t0 = bench_now();
        if (deja_fleet_ship(f, store, &so, &st) != 0) {
            fprintf(stderr, "deja-bench: ship %s: %s\n", w->name, deja_error_last());
            deja_fleet_close(f);
            break;
        }
        ship_s = bench_now() - t0;
        x->ship_cpu = self_cpu() - c0;
        x->ship_srv = pid_cpu(server) - s0;
        deja_fleet_close(f);
        if (cap.n == 0 && capture(url, &cap) != 0) {
            fprintf(stderr, "deja-bench: fleet %s: cannot read back the shipped messages\n",
                    w->name);
            break;
        }
        s0 = pid_cpu(server);
        plain_s = plain_publish(url, st.traces + st.objects, st.bytes);
        x->plain_srv = pid_cpu(server) - s0;
        s0 = pid_cpu(server);
        same_s = same_publish(url, &cap);
        x->same_srv = pid_cpu(server) - s0;
        if (plain_s <= 0 || same_s <= 0) {
            fprintf(stderr, "deja-bench: fleet %s: the %s publish failed: %s\n", w->name,
                    plain_s <= 0 ? "plain" : "same messages'", nats_GetLastError(NULL));
            break;
        }
        x->tps = (double)st.traces / ship_s;
        x->mbs = (double)st.bytes / 1e6 / ship_s;
        x->ratio = 100.0 * plain_s / ship_s;
        x->same_ratio = 100.0 * same_s / ship_s;
        printf("fleet  ship %-6s %7llu traces %6llu objects %8.1f MB: %8.0f traces/s %7.1f MB/s; "
               "plain publish of as many messages and bytes %7.1f MB/s: ship at %.0f %% of it; "
               "the same %zu messages published alone %7.1f MB/s: ship at %.0f %% of it\n",
               w->name, (unsigned long long)st.traces, (unsigned long long)st.objects,
               (double)st.bytes / 1e6, x->tps, x->mbs, (double)st.bytes / 1e6 / plain_s,
               x->ratio, cap.n, (double)st.bytes / 1e6 / same_s, x->same_ratio);
        printf("fleet  ship %-6s CPU: ship %.2f s in the shipping process, %.2f s in the server; "
               "the server's for the plain publish %.2f s, for the same messages %.2f s\n",
               w->name, x->ship_cpu, x->ship_srv, x->plain_srv, x->same_srv);
        rounds++;
    }
    if (rounds > 0) {
        double lo = rr[0].ratio, hi = rr[0].ratio, slo = rr[0].same_ratio, shi = rr[0].same_ratio;
        double same[SHIP_ROUNDS], tps[SHIP_ROUNDS], mbs[SHIP_ROUNDS];
        const ship_round *mid;

        for (int r = 0; r < rounds; r++) {
            lo = rr[r].ratio < lo ? rr[r].ratio : lo;
            hi = rr[r].ratio > hi ? rr[r].ratio : hi;
            slo = rr[r].same_ratio < slo ? rr[r].same_ratio : slo;
            shi = rr[r].same_ratio > shi ? rr[r].same_ratio : shi;
            same[r] = rr[r].same_ratio;
            tps[r] = rr[r].tps;
            mbs[r] = rr[r].mbs;
        }
        qsort(rr, (size_t)rounds, sizeof *rr, round_cmp_ratio);
        qsort(same, (size_t)rounds, sizeof *same, dbl_cmp);
        qsort(tps, (size_t)rounds, sizeof *tps, dbl_cmp);
        qsort(mbs, (size_t)rounds, sizeof *mbs, dbl_cmp);
        mid = &rr[rounds / 2];
        printf("fleet  ship %-6s median of %d rounds: %.0f traces/s, %.1f MB/s, %.0f %% of the "
               "plain publish (rounds %.0f-%.0f %%; target >= 50 %%), %.0f %% of the same "
               "messages published alone (rounds %.0f-%.0f %%)\n",
               w->name, rounds, tps[rounds / 2], mbs[rounds / 2], mid->ratio, lo, hi,
               same[rounds / 2], slo, shi);
        bench_report_note(rep,
                          "fleet ship %s: %.0f traces/s, %.1f MB/s, %.0f %% of a plain publish of "
                          "as many messages and bytes (median of %d rounds, %.0f-%.0f %%; "
                          "target >= 50 %%), %.0f %% of the same messages published alone "
                          "(%.0f-%.0f %%); CPU of the median round: ship %.2f s, server %.2f s "
                          "(plain publish: server %.2f s, same messages: server %.2f s)",
                          w->name, tps[rounds / 2], mbs[rounds / 2], mid->ratio, rounds, lo, hi,
                          same[rounds / 2], slo, shi, mid->ship_cpu, mid->ship_srv,
                          mid->plain_srv, mid->same_srv);
    }

cleanup:
    captured_free(&cap);
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
        ship_pass(rep, c, url, server, small);
    if (chat != NULL && chat->nrecs)
        ship_pass(rep, c, url, server, chat);
    replay_pass(rep, c, url, c->quick ? 300 : 2000);
    stop(server);
    return 0;
}
