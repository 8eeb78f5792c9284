/*
 * runner/serve.c -- the runner side of the `exec:` protocol: serve any
 * model plugin table over framed RunnerMessages (deja_runner_serve and
 * deja_runner_main, declared in include/deja_model.h).
 *
 * The model sees an ordinary deja_ctx. Inputs and params are the host's
 * request; seeds, RNG draws and clock reads become calls answered by the
 * host (which records or replays them); outputs are copied and sent with
 * the result. I/O is blocking: one request at a time, on the calling
 * thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deja.h"
#include "deja_model.h"
#include "proto/runner_msg.h"
#include "runner/runner.h"
#include "core/core.h"

#define ERR_CAP 512

/* The conversation with the host. */
typedef struct conn {
    int in_fd, out_fd;
    uint64_t offset; /* bytes read from the host so far */
    deja__buf wbuf;
    uint8_t *rbuf;
    size_t rcap;
    uint8_t rx[16384]; /* read-ahead from the host */
    size_t rx_pos, rx_len;
} conn;

/* The proxy ctx a model sees while serving one request. */
typedef struct serve_ctx {
    deja_ctx base; /* first: the model sees only this */
    conn *c;
    const deja__rmsg *req;
    deja_tensor *outs; /* owned copies */
    size_t nouts, cap_outs;
    char *error;       /* deja_ctx_fail's message */
    int io_rc;         /* the conversation broke during a call */
    char io_msg[ERR_CAP];
    int stopped;       /* the host asked to stop at a checkpoint */
} serve_ctx;

/* Write all `n` bytes of `p` to `fd` (a socket without SIGPIPE). */
static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == ENOTSOCK)
            w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return deja__error_set(DEJA_EIO, "runner: writing to the host: %s",
                                   w < 0 ? strerror(errno) : "nothing written");
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Encode and send one message. */
static int send_msg(conn *c, const deja__rmsg *m)
{
    c->wbuf.size = 0;
    int rc = deja__rmsg_encode(m, &c->wbuf);
    if (rc == 0)
        rc = write_all(c->out_fd, c->wbuf.data, c->wbuf.size);
    return rc;
}

/* Read exactly `n` bytes into `p`, through the read-ahead buffer (one
 * read usually brings a whole small message). Returns n on success, the
 * bytes read before end of stream otherwise, or -1 on an error (message
 * set). */
static ssize_t read_full(conn *c, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        if (c->rx_pos < c->rx_len) {
            size_t k = c->rx_len - c->rx_pos;
            if (k > n - got)
                k = n - got;
            memcpy(p + got, c->rx + c->rx_pos, k);
            c->rx_pos += k;
            got += k;
            c->offset += k;
            continue;
        }
        const int direct = n - got >= sizeof c->rx;
        ssize_t r = direct ? read(c->in_fd, p + got, n - got) : read(c->in_fd, c->rx, sizeof c->rx);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            deja__error_set(DEJA_EIO, "runner: reading from the host: %s", strerror(errno));
            return -1;
        }
        if (r == 0)
            break;
        if (direct) {
            got += (size_t)r;
            c->offset += (uint64_t)r;
        } else {
            c->rx_pos = 0;
            c->rx_len = (size_t)r;
        }
    }
    return (ssize_t)got;
}

/* Read one message into `*out`. Returns 0, 1 when the host closed the
 * stream at a message boundary, or a negative code. */
static int recv_msg(conn *c, deja__rmsg **out)
{
    uint8_t prefix[DEJA__RUNNER_PREFIX];
    const uint64_t at = c->offset;
    ssize_t r = read_full(c, prefix, sizeof prefix);
    if (r < 0)
        return DEJA_EIO;
    if (r == 0)
        return 1;
    if ((size_t)r < sizeof prefix)
        return deja__error_set(DEJA_ECORRUPT,
                               "runner: the host's message at byte offset %llu is cut short",
                               (unsigned long long)at);
    const uint32_t len = deja__rmsg_prefix(prefix);
    if (len > DEJA__RUNNER_MAX_FRAME)
        return deja__error_set(DEJA_ECORRUPT,
                               "runner: the host's message at byte offset %llu claims %u bytes "
                               "(at most %zu)",
                               (unsigned long long)at, (unsigned)len, DEJA__RUNNER_MAX_FRAME);
    if (len > c->rcap) {
        uint8_t *nb = realloc(c->rbuf, len);
        if (nb == NULL)
            return deja__error_set(DEJA_ENOMEM, "runner: out of memory (%u bytes)", (unsigned)len);
        c->rbuf = nb;
        c->rcap = len;
    }
    r = read_full(c, c->rbuf, len);
    if (r < 0)
        return DEJA_EIO;
    if ((size_t)r < len)
        return deja__error_set(DEJA_ECORRUPT,
                               "runner: the host's message at byte offset %llu is cut short",
                               (unsigned long long)at);
    int rc = deja__rmsg_decode(c->rbuf, len, out);
    if (rc != 0)
        return deja__error_wrap(rc, "runner: the host's message at byte offset %llu: ",
                                (unsigned long long)at);
    return 0;
}

/* Ask the host `call` and wait for its reply into `*reply`. Any failure
 * breaks the ctx (the model gets zeros; serving stops after infer). */
static int ask(serve_ctx *s, deja__rcall call, const char *name, uint32_t count,
               deja__rmsg **reply)
{
    deja__rmsg m;
    int rc;
    *reply = NULL;
    if (s->io_rc != 0)
        return s->io_rc;
    memset(&m, 0, sizeof m);
    m.kind = DEJA__RMSG_CALL;
    m.call = call;
    m.call_name = name ? name : "";
    m.count = count;
    rc = send_msg(s->c, &m);
    if (rc == 0) {
        rc = recv_msg(s->c, reply);
        if (rc == 1)
            rc = deja__error_set(DEJA_EIO, "runner: the host closed the stream during a call");
    }
    if (rc == 0 && (*reply)->kind != DEJA__RMSG_REPLY)
        rc = deja__error_set(DEJA_ECORRUPT, "runner: the host answered a call with a %s",
                             deja__rmsg_kind_name((*reply)->kind));
    if (rc == 0 && (*reply)->error[0] != '\0')
        rc = deja__error_set(DEJA_EINVAL, "runner: the host refused a call: %s", (*reply)->error);
    if (rc == 0 && (call == DEJA__RCALL_SEED || call == DEJA__RCALL_RNG) &&
        (*reply)->nvalues != count)
        rc = deja__error_set(DEJA_ECORRUPT, "runner: the host answered %zu values for %u",
                             (*reply)->nvalues, (unsigned)count);
    if (rc != 0) {
        s->io_rc = rc;
        snprintf(s->io_msg, sizeof s->io_msg, "%s", deja_error_last());
        deja__rmsg_free(*reply);
        *reply = NULL;
    }
    return rc;
}

static serve_ctx *sc(deja_ctx *ctx)
{
    return (serve_ctx *)ctx;
}

static const deja_tensor *v_input(deja_ctx *ctx, const char *name)
{
    const deja__rmsg *r = sc(ctx)->req;
    for (size_t i = 0; name != NULL && i < r->ntensors; i++)
        if (strcmp(r->tensors[i].name, name) == 0)
            return &r->tensors[i];
    return NULL;
}

static const deja_tensor *v_input_at(deja_ctx *ctx, size_t index)
{
    const deja__rmsg *r = sc(ctx)->req;
    return index < r->ntensors ? &r->tensors[index] : NULL;
}

static size_t v_input_count(deja_ctx *ctx)
{
    return sc(ctx)->req->ntensors;
}

static const deja_param *v_param(deja_ctx *ctx, const char *key)
{
    const deja__rmsg *r = sc(ctx)->req;
    for (size_t i = 0; key != NULL && i < r->nparams; i++)
        if (strcmp(r->params[i].key, key) == 0)
            return &r->params[i];
    return NULL;
}

static size_t v_param_count(deja_ctx *ctx)
{
    return sc(ctx)->req->nparams;
}

static const deja_param *v_param_at(deja_ctx *ctx, size_t index)
{
    const deja__rmsg *r = sc(ctx)->req;
    return index < r->nparams ? &r->params[index] : NULL;
}

static uint64_t v_seed(deja_ctx *ctx, const char *name)
{
    deja__rmsg *reply;
    uint64_t v = 0;
    if (ask(sc(ctx), DEJA__RCALL_SEED, name, 1, &reply) == 0)
        v = reply->values[0];
    deja__rmsg_free(reply);
    return v;
}

static void v_rng_fill(deja_ctx *ctx, const char *stream, uint64_t *out, size_t n)
{
    while (n > 0) {
        const uint32_t k = n > DEJA__RUNNER_MAX_DRAWS ? DEJA__RUNNER_MAX_DRAWS : (uint32_t)n;
        deja__rmsg *reply;
        if (ask(sc(ctx), DEJA__RCALL_RNG, stream, k, &reply) == 0)
            memcpy(out, reply->values, k * sizeof *out);
        else
            memset(out, 0, k * sizeof *out);
        deja__rmsg_free(reply);
        out += k;
        n -= k;
    }
}

static uint64_t v_rng_u64(deja_ctx *ctx, const char *stream)
{
    uint64_t v;
    v_rng_fill(ctx, stream, &v, 1);
    return v;
}

static int64_t v_now_ns(deja_ctx *ctx)
{
    deja__rmsg *reply;
    int64_t v = 0;
    if (ask(sc(ctx), DEJA__RCALL_NOW, NULL, 0, &reply) == 0)
        v = reply->now_ns;
    deja__rmsg_free(reply);
    return v;
}

/* Copy an output; the model's buffers may not outlive the call. */
static int v_output(deja_ctx *ctx, const deja_tensor *t)
{
    serve_ctx *s = sc(ctx);
    char *name = NULL;
    uint64_t *shape = NULL;
    void *data = NULL;
    int rc = 0;
    if (t == NULL || t->name == NULL || t->ndim > DEJA_MAX_DIMS ||
        (t->ndim != 0 && t->shape == NULL) || (t->size != 0 && t->data == NULL) ||
        deja_dtype_size(t->dtype) == 0)
        return deja__error_set(DEJA_EINVAL, "output '%s': bad name, dtype, shape or data",
                               t && t->name ? t->name : "");
    if (s->nouts == s->cap_outs) {
        size_t ncap = s->cap_outs ? s->cap_outs * 2 : 8;
        deja_tensor *nv = ncap <= DEJA__RUNNER_MAX_ITEMS ? realloc(s->outs, ncap * sizeof *nv)
                                                         : NULL;
        if (nv == NULL)
            return deja__error_set(DEJA_ENOMEM, "output '%s': too many outputs", t->name);
        s->outs = nv;
        s->cap_outs = ncap;
    }
    name = strdup(t->name);
    shape = malloc((t->ndim + 1) * sizeof *shape);
    data = malloc(t->size + 1);
    if (name == NULL || shape == NULL || data == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "output '%s': out of memory (%zu bytes)", t->name,
                             t->size);
        goto cleanup;
    }
    if (t->ndim)
        memcpy(shape, t->shape, t->ndim * sizeof *shape);
    if (t->size)
        memcpy(data, t->data, t->size);
    s->outs[s->nouts++] = (deja_tensor){name, t->dtype, t->ndim, shape, data, t->size};
    name = NULL;
    shape = NULL;
    data = NULL;
cleanup:
    free(name);
    free(shape);
    free(data);
    return rc;
}

static void v_fail(deja_ctx *ctx, const char *message)
{
    serve_ctx *s = sc(ctx);
    free(s->error);
    s->error = strdup(message != NULL ? message : "model failed");
}

/* A note goes to the host, which keeps it with the replay's causes. */
static void v_note(deja_ctx *ctx, const char *message)
{
    deja__rmsg *reply;
    if (ask(sc(ctx), DEJA__RCALL_NOTE, message, 0, &reply) == 0)
        deja__rmsg_free(reply);
}

/* A declared output kind (ABI 2) is accepted; the runner protocol does not
 * carry it (yet), so the host's diff falls back to the name heuristic. */
static int v_output_kind(deja_ctx *ctx, const char *name, deja_output_kind kind)
{
    (void)ctx;
    return name != NULL && (unsigned)kind <= DEJA_KIND_MAX
               ? 0
               : deja__error_set(DEJA_EINVAL, "output kind: a name and a known kind are required");
}

/* A checkpoint goes to the host with the CHECKPOINT call, which records it
 * or compares it; its answer may ask to stop the inference. */
static int v_checkpoint(deja_ctx *ctx, const deja_tensor *t)
{
    serve_ctx *s = sc(ctx);
    deja__rmsg m, *reply = NULL;
    int rc;
    if (t == NULL || t->name == NULL || t->ndim > DEJA_MAX_DIMS ||
        (t->ndim != 0 && t->shape == NULL) || (t->size != 0 && t->data == NULL) ||
        deja_dtype_size(t->dtype) == 0)
        return deja__error_set(DEJA_EINVAL, "checkpoint '%s': bad name, dtype, shape or data",
                               t && t->name ? t->name : "");
    if (!s->req->checkpoints) /* the host keeps none: no round trip */
        return 0;
    if (s->stopped)
        return DEJA_CHECKPOINT_STOP;
    if (s->io_rc != 0)
        return s->io_rc;
    memset(&m, 0, sizeof m);
    m.kind = DEJA__RMSG_CALL;
    m.call = DEJA__RCALL_CHECKPOINT;
    m.call_name = t->name;
    m.tensors = t;
    m.ntensors = 1;
    rc = send_msg(s->c, &m);
    if (rc == 0) {
        rc = recv_msg(s->c, &reply);
        if (rc == 1)
            rc = deja__error_set(DEJA_EIO, "runner: the host closed the stream during a call");
    }
    if (rc == 0 && reply->kind != DEJA__RMSG_REPLY)
        rc = deja__error_set(DEJA_ECORRUPT, "runner: the host answered a call with a %s",
                             deja__rmsg_kind_name(reply->kind));
    if (rc != 0) {
        s->io_rc = rc;
        snprintf(s->io_msg, sizeof s->io_msg, "%s", deja_error_last());
    } else if (reply->error[0] != '\0') {
        rc = deja__error_set(DEJA_EINVAL, "checkpoint '%s': %s", t->name, reply->error);
    } else if (reply->stop) {
        s->stopped = 1;
        rc = DEJA_CHECKPOINT_STOP;
    }
    deja__rmsg_free(reply);
    return rc;
}

static const deja_ctx_vtable serve_vtable = {
    sizeof(deja_ctx_vtable),
    v_input,
    v_input_at,
    v_input_count,
    v_param,
    v_seed,
    v_rng_u64,
    v_now_ns,
    v_output,
    v_fail,
    v_note,
    v_param_count,
    v_param_at,
    v_rng_fill,
    v_output_kind,
    v_checkpoint,
};

static void serve_ctx_clear(serve_ctx *s)
{
    for (size_t i = 0; i < s->nouts; i++) {
        free((void *)(uintptr_t)s->outs[i].name);
        free((void *)(uintptr_t)s->outs[i].shape);
        free((void *)(uintptr_t)s->outs[i].data);
    }
    free(s->outs);
    free(s->error);
}

/* Serve one infer request: run the model and send the result. Returns 0,
 * or the code that ends the service (the conversation broke). */
static int serve_one(const deja_model_plugin *plugin, void *instance, conn *c,
                     const deja__rmsg *req)
{
    serve_ctx s;
    deja__rmsg res;
    char msg[ERR_CAP];
    int rc;
    memset(&s, 0, sizeof s);
    s.base.vt = &serve_vtable;
    s.c = c;
    s.req = req;
    const int prc = plugin->infer(instance, &s.base);
    if (s.io_rc != 0) {
        rc = deja__error_set(s.io_rc, "%s", s.io_msg);
        goto cleanup;
    }
    memset(&res, 0, sizeof res);
    res.kind = DEJA__RMSG_RESULT;
    res.ok = prc == 0 && s.error == NULL;
    if (!res.ok) {
        if (s.error == NULL)
            snprintf(msg, sizeof msg, "model returned %d", prc);
        res.error = s.error ? s.error : msg;
    } else {
        res.tensors = s.outs;
        res.ntensors = s.nouts;
    }
    c->wbuf.size = 0;
    rc = deja__rmsg_encode(&res, &c->wbuf);
    if (rc == DEJA_EINVAL && res.ok) {
        /* Outputs the protocol cannot carry fail this inference only. */
        snprintf(msg, sizeof msg, "%s", deja_error_last());
        res.ok = 0;
        res.error = msg;
        res.tensors = NULL;
        res.ntensors = 0;
        c->wbuf.size = 0;
        rc = deja__rmsg_encode(&res, &c->wbuf);
    }
    if (rc == 0)
        rc = write_all(c->out_fd, c->wbuf.data, c->wbuf.size);
cleanup:
    serve_ctx_clear(&s);
    return rc;
}

/* Serve `plugin` on `in_fd`/`out_fd`; see deja_model.h. */
int deja_runner_serve(const deja_model_plugin *plugin, const char *arg, int in_fd, int out_fd,
                      const deja_runner_options *opts)
{
    conn c;
    deja_model_info info;
    deja__rmsg hello;
    deja__rmsg *req = NULL;
    void *instance = NULL;
    int opened = 0, rc = 0;
    char err[ERR_CAP];

    memset(&c, 0, sizeof c);
    c.in_fd = in_fd;
    c.out_fd = out_fd;
    if (plugin == NULL || plugin->abi_version < DEJA_MODEL_ABI_MIN ||
        plugin->abi_version > DEJA_MODEL_ABI_VERSION || plugin->name == NULL ||
        plugin->version == NULL || plugin->infer == NULL || plugin->name[0] == '\0')
        return deja__error_set(DEJA_EINVAL,
                               "runner: the plugin table is missing, of another ABI, or has no "
                               "name, version or infer");
    if (opts != NULL && opts->version != DEJA_RUNNER_OPTIONS_VERSION)
        return deja__error_set(DEJA_EVERSION, "runner: options version %u, expected %d",
                               opts->version, DEJA_RUNNER_OPTIONS_VERSION);

    memset(&info, 0, sizeof info);
    memset(&hello, 0, sizeof hello);
    hello.kind = DEJA__RMSG_HELLO;
    hello.protocol = DEJA_RUNNER_PROTOCOL;
    hello.name = plugin->name;
    hello.version = plugin->version;
    hello.thread_safe = (plugin->flags & DEJA_MODEL_THREAD_SAFE) != 0;
    if (opts != NULL) {
        hello.libs = opts->libs;
        hello.nlibs = opts->nlibs;
    }
    if (plugin->open != NULL) {
        err[0] = '\0';
        if (plugin->open(arg, &instance, &info, err, sizeof err) != 0) {
            err[sizeof err - 1] = '\0';
            hello.error = err[0] ? err : "open failed";
            send_msg(&c, &hello);
            rc = deja__error_set(DEJA_EMODEL, "runner %s: open failed: %s", plugin->name,
                                 hello.error);
            goto cleanup;
        }
        opened = 1;
    }
    if (info.digest_size <= sizeof info.digest) {
        hello.digest = info.digest;
        hello.digest_size = info.digest_size;
    }
    rc = send_msg(&c, &hello);
    while (rc == 0) {
        rc = recv_msg(&c, &req);
        if (rc == 1) {
            rc = 0; /* the host is done */
            break;
        }
        if (rc != 0)
            break;
        if (req->kind != DEJA__RMSG_INFER) {
            rc = deja__error_set(DEJA_ECORRUPT, "runner: expected an infer from the host, got a %s",
                                 deja__rmsg_kind_name(req->kind));
            break;
        }
        rc = serve_one(plugin, instance, &c, req);
        deja__rmsg_free(req);
        req = NULL;
    }

cleanup:
    deja__rmsg_free(req);
    if (opened && plugin->close != NULL)
        plugin->close(instance);
    deja__buf_free(&c.wbuf);
    free(c.rbuf);
    return rc;
}

/* A runner's whole main(); see deja_model.h. */
int deja_runner_main(const deja_model_plugin *plugin, int argc, char **argv)
{
    const char *me = argc > 0 && argv[0] ? argv[0] : "runner";
    int out = fcntl(1, F_DUPFD_CLOEXEC, 3);
    if (out < 0 || dup2(2, 1) < 0) {
        fprintf(stderr, "%s: cannot move stdout aside: %s\n", me, strerror(errno));
        return 2;
    }
    int rc = deja_runner_serve(plugin, argc > 1 ? argv[1] : NULL, 0, out, NULL);
    close(out);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", me, deja_error_last());
        return 2;
    }
    return 0;
}
