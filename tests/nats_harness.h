/*
 * tests/nats_harness.h -- a NATS JetStream server started by a test, on
 * 127.0.0.1 and a free port, with its store in a temporary directory, and
 * always stopped by the test (and at exit, should an assertion end it).
 *
 *   nats_server s;
 *   nats_start(&s, dir, NULL);          (or with extra arguments)
 *   ... s.url is "nats://127.0.0.1:PORT" ...
 *   nats_stop(&s);
 *
 * Also: how many messages a stream holds, read with libnats.
 */
#ifndef DEJA_TESTS_NATS_HARNESS_H
#define DEJA_TESTS_NATS_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#define NATS_MAX_SERVERS 8

typedef struct nats_server {
    pid_t pid;
    int port, cluster_port;
    char url[64];
    char dir[512];
} nats_server;

static pid_t nats_pids[NATS_MAX_SERVERS];

/* Stop every server still running: at exit, after a failed assertion. */
static void nats_stop_all(void)
{
    for (int i = 0; i < NATS_MAX_SERVERS; i++) {
        if (nats_pids[i] > 0) {
            kill(nats_pids[i], SIGKILL);
            waitpid(nats_pids[i], NULL, 0);
            nats_pids[i] = 0;
        }
    }
}

/* A TCP port on 127.0.0.1 that was free a moment ago. */
static int nats_free_port(void)
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

/* Whether something accepts connections on 127.0.0.1:port. */
static int nats_port_open(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void nats_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Start nats-server -js with its store under `dir` (created) on a free port
 * (s->port, when already set, is kept: a restart), with `extra` arguments
 * (NULL-terminated, may be NULL). Waits until it accepts connections.
 * Returns 0 or -1. */
static int nats_start(nats_server *s, const char *dir, const char *const *extra)
{
    const char *argv[48];
    char port[16], sd[600];
    size_t n = 0;
    int slot = -1;

    for (int i = 0; i < NATS_MAX_SERVERS; i++)
        if (nats_pids[i] == 0 && slot < 0)
            slot = i;
    if (slot < 0)
        return -1;
    atexit(nats_stop_all);
    if (s->port == 0)
        s->port = nats_free_port();
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", s->port);
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(sd, sizeof sd, "%s/js", dir);
    mkdir(dir, 0700);
    argv[n++] = "nats-server";
    argv[n++] = "-js";
    argv[n++] = "-sd";
    argv[n++] = sd;
    argv[n++] = "-a";
    argv[n++] = "127.0.0.1";
    argv[n++] = "-p";
    argv[n++] = port;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 46; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(NULL);
    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0) {
        char log[600];
        int fd;

        snprintf(log, sizeof log, "%s/server.log", dir);
        fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp("nats-server", (char *const *)argv);
        _exit(127);
    }
    nats_pids[slot] = s->pid;
    for (int i = 0; i < 200; i++) {
        int status;

        if (nats_port_open(s->port))
            return 0;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            nats_pids[slot] = 0;
            s->pid = 0;
            return -1;
        }
        nats_sleep_ms(50);
    }
    return -1;
}

/* Stop the server with SIGTERM (or SIGKILL when `hard`) and reap it. */
static void nats_stop_sig(nats_server *s, int hard)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, hard ? SIGKILL : SIGTERM);
    waitpid(s->pid, NULL, 0);
    for (int i = 0; i < NATS_MAX_SERVERS; i++)
        if (nats_pids[i] == s->pid)
            nats_pids[i] = 0;
    s->pid = 0;
}

static void nats_stop(nats_server *s)
{
    nats_stop_sig(s, 0);
}

/* The number of messages in `stream` at `url` (also with subject filter
 * `subject` when not NULL: the last message's presence), or -1. */
static long long nats_stream_msgs(const char *url, const char *stream)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    long long n = -1;

    if (natsConnection_ConnectTo(&nc, url) == NATS_OK && natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
        js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK)
        n = (long long)si->State.Msgs;
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return n;
}

/* The acknowledgements `consumer` of `stream` waits for, and how many
 * deliveries it made in all (redeliveries included); 0, or -1 when it
 * cannot be read. */
static int nats_consumer_counts(const char *url, const char *stream, const char *consumer,
                                long long *ack_pending, long long *delivered)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsConsumerInfo *ci = NULL;
    int rc = -1;

    if (natsConnection_ConnectTo(&nc, url) == NATS_OK && natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
        js_GetConsumerInfo(&ci, js, stream, consumer, NULL, NULL) == NATS_OK) {
        *ack_pending = (long long)ci->NumAckPending;
        *delivered = (long long)ci->Delivered.Consumer;
        rc = 0;
    }
    jsConsumerInfo_Destroy(ci);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}

#endif /* DEJA_TESTS_NATS_HARNESS_H */
