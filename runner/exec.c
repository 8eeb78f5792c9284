/*
 * runner/exec.c -- the host side of `exec:` models: start the runner
 * process, read its hello, and serve each inference by conversation
 * (infer, then calls answered through the caller's ctx, then a result).
 *
 * The runner's stdin and stdout are one end of a socket pair (written with
 * MSG_NOSIGNAL, so a dead runner is an error, never a SIGPIPE); its stderr
 * is a pipe, drained whenever deja waits for the runner and passed to our
 * stderr line by line, each line prefixed "[NAME] ". Every wait has a
 * deadline. A runner that exits, crashes, times out or sends something
 * malformed is killed and reaped, the inference it was serving fails with
 * a message saying which, and the next inference starts a fresh process.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deja.h"
#include "deja_model.h"
#include "proto/runner_msg.h"
#include "runner/runner.h"
#include "core/core.h"

/* How long a closed runner may take to exit before it is killed. */
#define EXIT_GRACE_MS 2000
/* Longest stderr line passed through in one piece. */
#define ERR_LINE_MAX 2048
#define MSG_CAP 1024

typedef struct deja__runner {
    deja_model_plugin table; /* first: what model.c sees */
    char *command;           /* the spec after "exec:", for messages */
    char **argv;
    size_t argc;
    char *exe;               /* argv[0] resolved on $PATH */
    const char *base;        /* basename of argv[0] */
    unsigned timeout_ms;
    /* The identity of the first hello; later processes must match it. */
    char *name;
    char *version;
    uint8_t digest[64];
    size_t digest_size;
    deja_kv *libs; /* the first hello's libraries, all owned */
    size_t nlibs;
    /* The current process; pid 0 when there is none. */
    pid_t pid;
    pid_t owner; /* the process that started it (its parent) */
    int sock;
    int err_fd;
    uint64_t offset; /* bytes read from its stdout */
    uint64_t seq;
    char errline[ERR_LINE_MAX];
    size_t errlen;
    deja__buf wbuf;
    uint8_t *rbuf;
    size_t rcap;
    uint8_t rx[16384]; /* read-ahead from its stdout */
    size_t rx_pos, rx_len;
    uint64_t *vals;
    size_t vcap;
} deja__runner;

/* The runner processes alive in this process, killed when it exits: an
 * inference its caller abandoned (a replay's timeout leaves it behind) must
 * not leave a hung runner running after deja. */
#define MAX_LIVE 4096
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t live_once = PTHREAD_ONCE_INIT;
static pid_t live[MAX_LIVE];
static pid_t live_owner[MAX_LIVE]; /* the process that started each (a fork's copy is not its owner) */
static size_t nlive;

static void live_kill_all(void)
{
    /* At exit another thread may hold the lock forever: go on without it. */
    const int locked = pthread_mutex_trylock(&live_lock) == 0;
    const pid_t me = getpid();
    for (size_t i = 0; i < nlive; i++)
        if (live[i] > 0 && live_owner[i] == me)
            kill(live[i], SIGKILL);
    nlive = 0;
    if (locked)
        pthread_mutex_unlock(&live_lock);
}

static void live_init(void)
{
    atexit(live_kill_all);
}

static void live_add(pid_t pid)
{
    pthread_once(&live_once, live_init);
    pthread_mutex_lock(&live_lock);
    if (nlive < MAX_LIVE) {
        live[nlive] = pid;
        live_owner[nlive++] = getpid();
    }
    pthread_mutex_unlock(&live_lock);
}

static void live_remove(pid_t pid)
{
    pthread_mutex_lock(&live_lock);
    for (size_t i = 0; i < nlive; i++)
        if (live[i] == pid) {
            --nlive;
            live[i] = live[nlive];
            live_owner[i] = live_owner[nlive];
            break;
        }
    pthread_mutex_unlock(&live_lock);
}

/* Why a conversation broke. */
typedef enum breach { BRK_NONE, BRK_EXIT, BRK_TIMEOUT, BRK_GARBAGE, BRK_IO } breach;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Write one prefixed line of the runner's stderr to ours. */
static void err_emit(deja__runner *r, const char *line, size_t len)
{
    char out[ERR_LINE_MAX + 256];
    int n = snprintf(out, sizeof out, "[%s] %.*s\n", r->name ? r->name : r->base, (int)len, line);
    if (n > 0) {
        size_t left = (size_t)n < sizeof out ? (size_t)n : sizeof out - 1;
        const char *p = out;
        while (left > 0) {
            ssize_t w = write(2, p, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            p += w;
            left -= (size_t)w;
        }
    }
}

/* Read what the runner wrote to stderr so far and pass complete lines on;
 * at end of stream, the rest too, and the pipe is closed. */
static void err_pump(deja__runner *r)
{
    char buf[4096];
    while (r->err_fd >= 0) {
        ssize_t n = read(r->err_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return; /* EAGAIN: nothing more now */
        if (n == 0) {
            if (r->errlen > 0)
                err_emit(r, r->errline, r->errlen);
            r->errlen = 0;
            close(r->err_fd);
            r->err_fd = -1;
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || r->errlen == sizeof r->errline) {
                err_emit(r, r->errline, r->errlen);
                r->errlen = 0;
                if (buf[i] == '\n')
                    continue;
            }
            r->errline[r->errlen++] = buf[i];
        }
    }
}

/* Wait until the socket is ready for `events`, draining stderr meanwhile.
 * Returns 0, or BRK_TIMEOUT past `deadline` (a monotonic ms time). */
static breach wait_sock(deja__runner *r, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd fds[2] = {{r->sock, events, 0}, {r->err_fd, POLLIN, 0}};
        const int64_t left = deadline - now_ms();
        if (left <= 0)
            return BRK_TIMEOUT;
        int n = poll(fds, r->err_fd >= 0 ? 2 : 1, left > 1000 ? 1000 : (int)left);
        if (n < 0 && errno != EINTR)
            return BRK_IO;
        if (n <= 0)
            continue;
        if (fds[1].revents != 0)
            err_pump(r);
        if (fds[0].revents != 0)
            return BRK_NONE;
    }
}

/* Describe how process `pid` ended from its wait status. */
static void describe_status(int status, char *out, size_t cap)
{
    if (WIFSIGNALED(status))
        snprintf(out, cap, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else if (WIFEXITED(status))
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
    else
        snprintf(out, cap, "ended");
}

/* End the current process: close its stdin, give it `grace_ms` to exit
 * (then SIGKILL), reap it and drain its stderr. Writes how it ended into
 * `how` (when not NULL). */
static void stop_process(deja__runner *r, int grace_ms, char *how, size_t howcap)
{
    int status = 0, reaped = 0;
    if (how != NULL && howcap > 0)
        how[0] = '\0';
    if (r->sock >= 0) {
        close(r->sock);
        r->sock = -1;
    }
    if (r->pid > 0) {
        const int64_t deadline = now_ms() + grace_ms;
        while (!reaped) {
            pid_t w = waitpid(r->pid, &status, WNOHANG);
            if (w == r->pid || (w < 0 && errno != EINTR)) {
                reaped = w == r->pid;
                break;
            }
            if (now_ms() >= deadline) {
                kill(r->pid, SIGKILL);
                while ((w = waitpid(r->pid, &status, 0)) < 0 && errno == EINTR) {
                }
                reaped = w == r->pid;
                break;
            }
            if (r->err_fd >= 0) {
                struct pollfd pfd = {r->err_fd, POLLIN, 0};
                if (poll(&pfd, 1, 5) > 0)
                    err_pump(r);
            } else {
                struct timespec ts = {0, 2 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
        if (reaped && how != NULL)
            describe_status(status, how, howcap);
        live_remove(r->pid);
        r->pid = 0;
    }
    if (r->err_fd >= 0) {
        err_pump(r);
        if (r->err_fd >= 0) {
            close(r->err_fd);
            r->err_fd = -1;
        }
    }
    r->errlen = 0;
}

/* Kill the current process at once and reap it; `how` as stop_process. */
static void kill_process(deja__runner *r, char *how, size_t howcap)
{
    if (r->pid > 0)
        kill(r->pid, SIGKILL);
    stop_process(r, EXIT_GRACE_MS, how, howcap);
}

/* Report a broken conversation: end the process as the breach asks and set
 * the error (DEJA_EMODEL) with `detail`. */
static int broken(deja__runner *r, breach why, const char *detail)
{
    char how[256];
    switch (why) {
    case BRK_TIMEOUT:
        kill_process(r, NULL, 0);
        return deja__error_set(DEJA_EMODEL, "runner '%s' timed out after %.3g s %s (killed)",
                               r->command, r->timeout_ms / 1000.0, detail);
    case BRK_GARBAGE:
        kill_process(r, NULL, 0);
        return deja__error_set(DEJA_EMODEL, "runner '%s' sent a malformed message: %s", r->command,
                               detail);
    case BRK_EXIT:
        stop_process(r, EXIT_GRACE_MS, how, sizeof how);
        return deja__error_set(DEJA_EMODEL, "runner '%s' %s %s", r->command,
                               how[0] ? how : "closed its stdout", detail);
    default:
        kill_process(r, NULL, 0);
        return deja__error_set(DEJA_EMODEL, "runner '%s': %s", r->command, detail);
    }
}

/* Send the frame in r->wbuf: at once when the socket has room (the usual
 * case), else after waiting for it. Returns BRK_NONE or why it failed. */
static breach send_frame(deja__runner *r, int64_t deadline)
{
    const uint8_t *p = r->wbuf.data;
    size_t left = r->wbuf.size;
    while (left > 0) {
        ssize_t w = send(r->sock, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            breach b = wait_sock(r, POLLOUT, deadline);
            if (b != BRK_NONE)
                return b;
            continue;
        }
        if (w < 0)
            return (errno == EPIPE || errno == ECONNRESET) ? BRK_EXIT : BRK_IO;
        p += w;
        left -= (size_t)w;
    }
    return BRK_NONE;
}

/* Read exactly `n` bytes, through the read-ahead buffer (one recv usually
 * brings a whole small message); r->offset counts the bytes handed out.
 * Returns BRK_NONE, BRK_EXIT at end of stream (`*got` then says how many
 * came), BRK_TIMEOUT or BRK_IO. */
static breach read_exact(deja__runner *r, uint8_t *p, size_t n, size_t *got, int64_t deadline)
{
    *got = 0;
    while (*got < n) {
        if (r->rx_pos < r->rx_len) {
            size_t k = r->rx_len - r->rx_pos;
            if (k > n - *got)
                k = n - *got;
            memcpy(p + *got, r->rx + r->rx_pos, k);
            r->rx_pos += k;
            *got += k;
            r->offset += k;
            continue;
        }
        /* Nothing buffered: the runner is still working, wait for it. */
        breach b = wait_sock(r, POLLIN, deadline);
        if (b != BRK_NONE)
            return b;
        /* Large remainders go straight to `p`; small ones through rx. */
        const int direct = n - *got >= sizeof r->rx;
        ssize_t k = direct ? recv(r->sock, p + *got, n - *got, MSG_DONTWAIT)
                           : recv(r->sock, r->rx, sizeof r->rx, MSG_DONTWAIT);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (k < 0)
            return errno == ECONNRESET ? BRK_EXIT : BRK_IO;
        if (k == 0)
            return BRK_EXIT;
        if (direct) {
            *got += (size_t)k;
            r->offset += (uint64_t)k;
        } else {
            r->rx_pos = 0;
            r->rx_len = (size_t)k;
        }
    }
    return BRK_NONE;
}

/* Receive one message into `*out`. On failure the process is ended and the
 * error set (DEJA_EMODEL); `doing` completes the message ("while
 * starting"). */
static int recv_msg(deja__runner *r, deja__rmsg **out, int64_t deadline, const char *doing)
{
    uint8_t prefix[DEJA__RUNNER_PREFIX];
    char detail[MSG_CAP];
    const uint64_t at = r->offset;
    size_t got;
    *out = NULL;
    breach b = read_exact(r, prefix, sizeof prefix, &got, deadline);
    if (b == BRK_EXIT && got > 0) {
        snprintf(detail, sizeof detail, "%s (its stdout ended inside the message at byte offset %llu)",
                 doing, (unsigned long long)at);
        return broken(r, b, detail);
    }
    if (b != BRK_NONE) {
        snprintf(detail, sizeof detail, "%s", doing);
        return broken(r, b, b == BRK_IO ? strerror(errno) : detail);
    }
    const uint32_t len = deja__rmsg_prefix(prefix);
    if (len > DEJA__RUNNER_MAX_FRAME) {
        snprintf(detail, sizeof detail,
                 "at byte offset %llu the length prefix (%02x %02x %02x %02x) says %u bytes, more "
                 "than the protocol's %zu; is the runner printing to stdout?",
                 (unsigned long long)at, prefix[0], prefix[1], prefix[2], prefix[3], (unsigned)len,
                 DEJA__RUNNER_MAX_FRAME);
        return broken(r, BRK_GARBAGE, detail);
    }
    if (len > r->rcap) {
        uint8_t *nb = realloc(r->rbuf, len);
        if (nb == NULL) {
            kill_process(r, NULL, 0);
            return deja__error_set(DEJA_ENOMEM, "runner '%s': out of memory (%u bytes)",
                                   r->command, (unsigned)len);
        }
        r->rbuf = nb;
        r->rcap = len;
    }
    b = read_exact(r, r->rbuf, len, &got, deadline);
    if (b == BRK_EXIT) {
        snprintf(detail, sizeof detail,
                 "%s (its stdout ended inside the message at byte offset %llu: %zu of %u bytes)",
                 doing, (unsigned long long)at, got, (unsigned)len);
        return broken(r, b, detail);
    }
    if (b != BRK_NONE)
        return broken(r, b, b == BRK_IO ? strerror(errno) : doing);
    int rc = deja__rmsg_decode(r->rbuf, len, out);
    if (rc == DEJA_ENOMEM) {
        kill_process(r, NULL, 0);
        return deja__error_wrap(rc, "runner '%s': ", r->command);
    }
    if (rc != 0) {
        snprintf(detail, sizeof detail, "at byte offset %llu (a message of %u bytes): %s",
                 (unsigned long long)at, (unsigned)len, deja_error_last());
        return broken(r, BRK_GARBAGE, detail);
    }
    return 0;
}

/* Encode `m` and send it; on failure the process is ended, error set. */
static int send_msg(deja__runner *r, const deja__rmsg *m, int64_t deadline, const char *doing)
{
    r->wbuf.size = 0;
    int rc = deja__rmsg_encode(m, &r->wbuf);
    if (rc != 0)
        return deja__error_wrap(rc, "runner '%s': ", r->command);
    breach b = send_frame(r, deadline);
    if (b != BRK_NONE)
        return broken(r, b, b == BRK_IO ? strerror(errno) : doing);
    return 0;
}

/* Find `word` on $PATH (or take it as a path when it holds '/'); a
 * malloc'd path in `*out`. */
static int resolve(const char *word, char **out)
{
    *out = NULL;
    if (strchr(word, '/') != NULL) {
        if (access(word, X_OK) != 0)
            return deja__error_set(errno == ENOENT ? DEJA_ENOTFOUND : DEJA_EINVAL,
                                   "exec: cannot run '%s': %s", word, strerror(errno));
        *out = strdup(word);
        return *out ? 0 : deja__error_set(DEJA_ENOMEM, "exec: out of memory");
    }
    const char *path = getenv("PATH");
    if (path == NULL || path[0] == '\0')
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        char *cand = NULL;
        if (asprintf(&cand, "%.*s/%s", (int)len, len ? path : ".", word) < 0)
            return deja__error_set(DEJA_ENOMEM, "exec: out of memory");
        struct stat st;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
            *out = cand;
            return 0;
        }
        free(cand);
        path += len;
        if (*path == ':')
            path++;
    }
    return deja__error_set(DEJA_ENOTFOUND, "exec: command '%s' not found on $PATH", word);
}

/* Start a runner process and read its hello (checked against the first
 * one's identity after a restart). Returns 0 or an error naming the
 * command. */
static int start(deja__runner *r)
{
    int sv[2] = {-1, -1}, errp[2] = {-1, -1}, execp[2] = {-1, -1};
    deja__rmsg *hello = NULL;
    int rc = 0;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
        pipe2(errp, O_CLOEXEC) != 0 || pipe2(execp, O_CLOEXEC) != 0) {
        rc = deja__error_set(DEJA_EIO, "runner '%s': cannot make pipes: %s", r->command,
                             strerror(errno));
        goto cleanup;
    }
    pid_t pid = fork();
    if (pid < 0) {
        rc = deja__error_set(DEJA_EIO, "runner '%s': fork: %s", r->command, strerror(errno));
        goto cleanup;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls from here to exec. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(sv[1], 0) < 0 || dup2(sv[1], 1) < 0 || dup2(errp[1], 2) < 0) {
            int e = errno;
            (void)!write(execp[1], &e, sizeof e);
            _exit(127);
        }
        execv(r->exe, r->argv);
        int e = errno;
        (void)!write(execp[1], &e, sizeof e);
        _exit(127);
    }
    close(sv[1]);
    sv[1] = -1;
    close(errp[1]);
    errp[1] = -1;
    close(execp[1]);
    execp[1] = -1;
    r->pid = pid;
    r->owner = getpid();
    live_add(pid);
    r->sock = sv[0];
    sv[0] = -1;
    r->err_fd = errp[0];
    errp[0] = -1;
    r->offset = 0;
    r->rx_pos = r->rx_len = 0;
    r->seq = 0;
    r->errlen = 0;
    fcntl(r->err_fd, F_SETFL, fcntl(r->err_fd, F_GETFL) | O_NONBLOCK);

    int child_errno = 0;
    ssize_t n;
    while ((n = read(execp[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR) {
    }
    if (n == (ssize_t)sizeof child_errno) {
        stop_process(r, EXIT_GRACE_MS, NULL, 0);
        rc = deja__error_set(DEJA_EMODEL, "runner '%s': cannot run '%s': %s", r->command, r->exe,
                             strerror(child_errno));
        goto cleanup;
    }

    const int64_t deadline = now_ms() + r->timeout_ms;
    rc = recv_msg(r, &hello, deadline, "before its hello");
    if (rc != 0)
        goto cleanup;
    if (hello->kind != DEJA__RMSG_HELLO) {
        char detail[256];
        snprintf(detail, sizeof detail, "at byte offset 0: expected a hello, got a %s",
                 deja__rmsg_kind_name(hello->kind));
        rc = broken(r, BRK_GARBAGE, detail);
        goto cleanup;
    }
    if (hello->error[0] != '\0') {
        stop_process(r, EXIT_GRACE_MS, NULL, 0);
        rc = deja__error_set(DEJA_EMODEL, "runner '%s': the model failed to load: %s", r->command,
                             hello->error);
        goto cleanup;
    }
    if (hello->protocol != DEJA_RUNNER_PROTOCOL) {
        stop_process(r, 0, NULL, 0);
        rc = deja__error_set(DEJA_EVERSION,
                             "runner '%s' speaks runner protocol %u, this deja speaks %d",
                             r->command, (unsigned)hello->protocol, DEJA_RUNNER_PROTOCOL);
        goto cleanup;
    }
    if (hello->name[0] == '\0') {
        rc = broken(r, BRK_GARBAGE, "at byte offset 0: a hello without a model name");
        goto cleanup;
    }
    if (r->name == NULL) {
        r->name = strdup(hello->name);
        r->version = strdup(hello->version);
        if (r->name == NULL || r->version == NULL) {
            kill_process(r, NULL, 0);
            rc = deja__error_set(DEJA_ENOMEM, "runner '%s': out of memory", r->command);
            goto cleanup;
        }
        memcpy(r->digest, hello->digest, hello->digest_size);
        r->digest_size = hello->digest_size;
        if (hello->nlibs > 0 && (r->libs = calloc(hello->nlibs, sizeof *r->libs)) != NULL) {
            for (size_t i = 0; i < hello->nlibs; i++) {
                char *k = strdup(hello->libs[i].key), *v = strdup(hello->libs[i].value);
                if (k == NULL || v == NULL) {
                    free(k);
                    free(v);
                    break; /* best effort, as the environment is */
                }
                r->libs[r->nlibs++] = (deja_kv){k, v};
            }
        }
    } else if (strcmp(r->name, hello->name) != 0 || strcmp(r->version, hello->version) != 0 ||
               r->digest_size != hello->digest_size ||
               memcmp(r->digest, hello->digest, hello->digest_size) != 0) {
        kill_process(r, NULL, 0);
        rc = deja__error_set(DEJA_EMODEL,
                             "runner '%s' restarted as model %s %s (another model, version or "
                             "digest than the %s %s it started as)",
                             r->command, hello->name, hello->version, r->name, r->version);
        goto cleanup;
    }

cleanup:
    deja__rmsg_free(hello);
    for (int i = 0; i < 2; i++) {
        if (sv[i] >= 0)
            close(sv[i]);
        if (errp[i] >= 0)
            close(errp[i]);
        if (execp[i] >= 0)
            close(execp[i]);
    }
    return rc;
}

/* Answer one call of the runner through `ctx`. */
static int answer(deja__runner *r, deja_ctx *ctx, const deja__rmsg *call, int64_t deadline)
{
    deja__rmsg reply;
    memset(&reply, 0, sizeof reply);
    reply.kind = DEJA__RMSG_REPLY;
    switch (call->call) {
    case DEJA__RCALL_SEED:
        if (r->vcap < 1) {
            r->vals = malloc(sizeof *r->vals);
            if (r->vals == NULL)
                return deja__error_set(DEJA_ENOMEM, "runner '%s': out of memory", r->command);
            r->vcap = 1;
        }
        r->vals[0] = deja_ctx_seed(ctx, call->call_name);
        reply.values = r->vals;
        reply.nvalues = 1;
        break;
    case DEJA__RCALL_RNG:
        if (call->count > r->vcap) {
            uint64_t *nv = realloc(r->vals, call->count * sizeof *nv);
            if (nv == NULL)
                return deja__error_set(DEJA_ENOMEM, "runner '%s': out of memory", r->command);
            r->vals = nv;
            r->vcap = call->count;
        }
        deja_ctx_rng_fill(ctx, call->call_name, r->vals, call->count);
        reply.values = r->vals;
        reply.nvalues = call->count;
        break;
    case DEJA__RCALL_NOW:
        reply.now_ns = deja_ctx_now(ctx);
        break;
    case DEJA__RCALL_NOTE:
        deja_ctx_note(ctx, call->call_name);
        break;
    case DEJA__RCALL_CHECKPOINT: {
        const int rc = deja_ctx_checkpoint(ctx, &call->tensors[0]);
        if (rc < 0)
            reply.error = deja_error_last();
        reply.stop = rc == DEJA_CHECKPOINT_STOP;
        break;
    }
    }
    return send_msg(r, &reply, deadline, "while deja answered a call");
}

/* The plugin table's infer: one inference through the runner. */
static int runner_infer(void *instance, deja_ctx *ctx)
{
    deja__runner *r = instance;
    deja__rmsg req;
    deja__rmsg *msg = NULL;
    deja_tensor *ins = NULL;
    deja_param *params = NULL;
    int rc = 0, failed = 0;
    char detail[256];

    if (r->pid > 0 && r->owner != getpid()) {
        /* This is a fork of the process that started the runner (replay
         * --isolate): its runner is not ours to use, nor to wait for. Leave
         * it to its owner and start one of our own, whose end we can see. */
        close(r->sock);
        r->sock = -1;
        if (r->err_fd >= 0)
            close(r->err_fd);
        r->err_fd = -1;
        r->pid = 0;
    }
    if (r->pid > 0) {
        /* A runner that died while idle costs no trace: start a new one.
         * (Its socket says so; cheaper than asking the kernel with wait4.) */
        struct pollfd pfd = {r->sock, POLLIN, 0};
        if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR)) != 0)
            stop_process(r, EXIT_GRACE_MS, NULL, 0);
    }
    if (r->pid <= 0) {
        rc = start(r);
        if (rc != 0)
            goto cleanup;
    }
    const size_t nin = deja_ctx_input_count(ctx);
    const size_t npar = deja_ctx_param_count(ctx);
    ins = calloc(nin + 1, sizeof *ins);
    params = calloc(npar + 1, sizeof *params);
    if (ins == NULL || params == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "runner '%s': out of memory", r->command);
        goto cleanup;
    }
    for (size_t i = 0; i < nin; i++)
        ins[i] = *deja_ctx_input_at(ctx, i);
    for (size_t i = 0; i < npar; i++)
        params[i] = *deja_ctx_param_at(ctx, i);
    memset(&req, 0, sizeof req);
    req.kind = DEJA__RMSG_INFER;
    req.seq = ++r->seq;
    req.tensors = ins;
    req.ntensors = nin;
    req.params = params;
    req.nparams = npar;
    req.checkpoints = deja_ctx_checkpoints_active(ctx);

    const int64_t deadline = now_ms() + r->timeout_ms;
    rc = send_msg(r, &req, deadline, "while deja sent the inference");
    while (rc == 0) {
        const uint64_t at = r->offset;
        rc = recv_msg(r, &msg, deadline, "while serving the inference");
        if (rc != 0)
            break;
        if (msg->kind == DEJA__RMSG_CALL) {
            rc = answer(r, ctx, msg, deadline);
        } else if (msg->kind == DEJA__RMSG_RESULT) {
            if (!msg->ok) {
                deja_ctx_fail(ctx, msg->error[0] ? msg->error : "the runner failed (no message)");
                failed = 1;
            }
            for (size_t i = 0; !failed && i < msg->ntensors; i++) {
                if (deja_ctx_output(ctx, &msg->tensors[i]) != 0) {
                    deja_ctx_fail(ctx, deja_error_last());
                    failed = 1;
                }
            }
            break;
        } else {
            snprintf(detail, sizeof detail,
                     "at byte offset %llu: expected a call or a result, got a %s",
                     (unsigned long long)at, deja__rmsg_kind_name(msg->kind));
            rc = broken(r, BRK_GARBAGE, detail);
        }
        deja__rmsg_free(msg);
        msg = NULL;
    }

cleanup:
    deja__rmsg_free(msg);
    free(ins);
    free(params);
    if (rc != 0) {
        deja_ctx_fail(ctx, deja_error_last());
        return 1;
    }
    return failed;
}

/* The plugin table's close: stop the process and free the runner. */
static void runner_close(void *instance)
{
    deja__runner *r = instance;
    if (r == NULL)
        return;
    stop_process(r, EXIT_GRACE_MS, NULL, 0);
    deja__words_free(r->argv);
    free(r->command);
    free(r->exe);
    free(r->name);
    free(r->version);
    for (size_t i = 0; i < r->nlibs; i++) {
        free((char *)(uintptr_t)r->libs[i].key);
        free((char *)(uintptr_t)r->libs[i].value);
    }
    free(r->libs);
    deja__buf_free(&r->wbuf);
    free(r->rbuf);
    free(r->vals);
    free(r);
}

/* Start the runner `command`; see runner.h. */
int deja__runner_open(const char *command, unsigned timeout_ms, const deja_model_plugin **plugin,
                      void **instance, deja_model_info *info, char **path)
{
    deja__runner *r = NULL;
    int rc = 0;

    *plugin = NULL;
    *instance = NULL;
    *path = NULL;
    r = calloc(1, sizeof *r);
    if (r == NULL || (r->command = strdup(command)) == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "exec: out of memory");
        goto cleanup;
    }
    r->sock = -1;
    r->err_fd = -1;
    r->timeout_ms = timeout_ms ? timeout_ms : DEJA_MODEL_TIMEOUT_MS;
    rc = deja__words_split(command, &r->argv, &r->argc);
    if (rc == 0)
        rc = resolve(r->argv[0], &r->exe);
    if (rc != 0)
        goto cleanup;
    const char *slash = strrchr(r->argv[0], '/');
    r->base = slash ? slash + 1 : r->argv[0];
    rc = start(r);
    if (rc != 0)
        goto cleanup;
    *path = strdup(r->exe);
    if (*path == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "exec: out of memory");
        goto cleanup;
    }
    r->table.abi_version = DEJA_MODEL_ABI_VERSION;
    r->table.name = r->name;
    r->table.version = r->version;
    r->table.flags = 0;
    r->table.open = NULL;
    r->table.infer = runner_infer;
    r->table.close = runner_close;
    memset(info, 0, sizeof *info);
    memcpy(info->digest, r->digest, r->digest_size);
    info->digest_size = r->digest_size;
    *plugin = &r->table;
    *instance = r;
    r = NULL;

cleanup:
    if (r != NULL)
        runner_close(r);
    if (rc != 0 && *path != NULL) {
        free(*path);
        *path = NULL;
    }
    return rc;
}

/* The libraries the runner's first hello named (torch and its threads,
 * numpy, ...), owned by the runner. */
void deja__runner_libs(const void *instance, const deja_kv **libs, size_t *n)
{
    const deja__runner *r = instance;
    *libs = r->libs;
    *n = r->nlibs;
}
