/*
 * fleet/worker.c -- `deja worker`: take replay jobs from DEJA_JOBS, replay
 * each trace from a local cache store, publish the result, and acknowledge
 * the job once its result is acknowledged.
 *
 * Three things overlap: a fetcher thread takes the next group of jobs
 * (--prefetch of them) while the current one replays; the model stays
 * loaded across groups (a replay session per model and options,
 * replay/session.h); results are published asynchronously, each job
 * acknowledged when the stream acknowledges its result (matched by the
 * result's Nats-Msg-Id in the acknowledgement handler), so replaying the
 * next group never waits for a round trip. A result refused, or not
 * acknowledged within the fleet's timeout, leaves its job unacknowledged
 * (it is sent back at once): the job is done again, here or elsewhere, and
 * the coordinator keeps the first result of each trace.
 *
 * While the worker holds a job (fetched, replaying, or waiting for its
 * result's acknowledgement), a heartbeat tells the server it is still at
 * it, so only a worker that died (or was cut off) loses its jobs to
 * another, after the ack deadline.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet/fleet_internal.h"
#include "replay/session.h"

#define DEFAULT_ACK_WAIT_MS 10000
#define IDLE_FETCH_MS 500
#define DEFAULT_PREFETCH 16
#define QUEUE_MAX 2      /* groups fetched ahead */
#define INFLIGHT_GROUPS 4 /* groups whose results may wait for acknowledgement */
#define SESSIONS_MAX 4    /* models kept loaded */
#define WAIT_SLICE_MS 100
#define MSGID_MAX 160

/* ------------------------------------------------------------------------
 * The jobs held: what the heartbeat keeps alive.
 * ---------------------------------------------------------------------- */

typedef struct heartbeat {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    natsMsg **held;
    size_t nheld, cap;
    int quit;
    unsigned every_ms;
} heartbeat;

static void *beat(void *arg)
{
    heartbeat *h = arg;

    pthread_mutex_lock(&h->lock);
    while (!h->quit) {
        const struct timespec ts = deja__clock_after(CLOCK_REALTIME, h->every_ms);

        pthread_cond_timedwait(&h->cond, &h->lock, &ts);
        for (size_t i = 0; !h->quit && i < h->nheld; i++)
            natsMsg_InProgress(h->held[i], NULL);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static int hold(heartbeat *h, natsMsg *const *msgs, size_t n)
{
    int rc = 0;

    pthread_mutex_lock(&h->lock);
    if (h->nheld + n > h->cap) {
        size_t cap = (h->nheld + n) * 2;
        natsMsg **p = realloc(h->held, cap * sizeof *p);

        if (p == NULL)
            rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        else {
            h->held = p;
            h->cap = cap;
        }
    }
    if (rc == 0) {
        memcpy(h->held + h->nheld, msgs, n * sizeof *msgs);
        h->nheld += n;
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* Stop holding job `m` and free it (after its ack, nak or term). */
static void release(heartbeat *h, natsMsg *m)
{
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->nheld; i++) {
        if (h->held[i] == m) {
            h->held[i] = h->held[--h->nheld];
            break;
        }
    }
    pthread_mutex_unlock(&h->lock);
    natsMsg_Destroy(m);
}

/* ------------------------------------------------------------------------
 * The fetcher thread: groups of jobs, QUEUE_MAX ahead.
 * ---------------------------------------------------------------------- */

typedef struct group {
    natsMsg **msgs;
    size_t n;
} group;

typedef struct fetcher {
    natsSubscription *sub;
    deja_fleet *f;
    heartbeat *hb;
    unsigned prefetch;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a group queued, room made, or quit */
    group queue[QUEUE_MAX];
    size_t nqueue;
    int quit;
    int rc; /* the fetcher's failure, ends the worker */
    char err[400];
} fetcher;

static void *fetch_main(void *arg)
{
    fetcher *fe = arg;

    for (;;) {
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s;
        group g;

        pthread_mutex_lock(&fe->lock);
        while (!fe->quit && fe->nqueue == QUEUE_MAX)
            pthread_cond_wait(&fe->cond, &fe->lock);
        if (fe->quit) {
            pthread_mutex_unlock(&fe->lock);
            break;
        }
        pthread_mutex_unlock(&fe->lock);
        s = natsSubscription_Fetch(&list, fe->sub, (int)fe->prefetch, IDLE_FETCH_MS, &jerr);
        if (s == NATS_TIMEOUT)
            continue;
        if (s != NATS_OK) {
            pthread_mutex_lock(&fe->lock);
            if (!fe->quit) {
                fe->rc = deja__fleet_error(fe->f, s, jerr, "fetching jobs");
                snprintf(fe->err, sizeof fe->err, "%s", deja_error_last());
                fe->quit = 1;
            }
            pthread_cond_broadcast(&fe->cond);
            pthread_mutex_unlock(&fe->lock);
            break;
        }
        if (list.Count <= 0) {
            natsMsgList_Destroy(&list);
            continue;
        }
        g.n = (size_t)list.Count;
        g.msgs = malloc(g.n * sizeof *g.msgs);
        if (g.msgs == NULL || hold(fe->hb, list.Msgs, g.n) != 0) {
            /* Not taken: they come back after the ack deadline. */
            free(g.msgs);
            natsMsgList_Destroy(&list);
            continue;
        }
        memcpy(g.msgs, list.Msgs, g.n * sizeof *g.msgs);
        for (int i = 0; i < list.Count; i++)
            list.Msgs[i] = NULL; /* the group owns them now */
        natsMsgList_Destroy(&list);
        pthread_mutex_lock(&fe->lock);
        fe->queue[fe->nqueue++] = g;
        pthread_cond_broadcast(&fe->cond);
        pthread_mutex_unlock(&fe->lock);
    }
    return NULL;
}

/* Take the next fetched group, waiting up to WAIT_SLICE_MS: 1 and `*g`, 0
 * when none came, or the fetcher's error. */
static int next_group(fetcher *fe, group *g)
{
    const struct timespec ts = deja__clock_after(CLOCK_REALTIME, WAIT_SLICE_MS);
    int got = 0;

    pthread_mutex_lock(&fe->lock);
    if (fe->nqueue == 0 && !fe->quit)
        pthread_cond_timedwait(&fe->cond, &fe->lock, &ts);
    if (fe->nqueue > 0) {
        *g = fe->queue[0];
        memmove(fe->queue, fe->queue + 1, (fe->nqueue - 1) * sizeof *fe->queue);
        fe->nqueue--;
        got = 1;
        pthread_cond_broadcast(&fe->cond);
    } else if (fe->rc != 0) {
        got = deja__error_set(fe->rc, "%s", fe->err);
    }
    pthread_mutex_unlock(&fe->lock);
    return got;
}

/* ------------------------------------------------------------------------
 * Results in flight: published, waiting for their acknowledgement, each
 * with the job it answers. The table is under f->lock (the handler's).
 * ---------------------------------------------------------------------- */

typedef struct flight {
    char msgid[MSGID_MAX];
    natsMsg *job;
    int error; /* an ERROR verdict */
    int state; /* 0 waiting, 1 stored, -1 refused */
} flight;

typedef struct flights {
    deja_fleet *f;
    flight *v;
    size_t n, cap;
    size_t waiting;
    int64_t last_ack_ns;
} flights;

/* f->ack_fn: the result named by the message's Nats-Msg-Id is stored (or
 * refused); its job may be acknowledged (or sent back). */
static void on_result_ack(void *payload, natsMsg *msg, int outcome, int permanent,
                          const char *why)
{
    flights *fl = payload;
    const char *id = NULL;

    (void)permanent;
    (void)why;
    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) != NATS_OK || id == NULL)
        return;
    for (size_t i = 0; i < fl->n; i++) {
        flight *x = &fl->v[i];

        if (x->state == 0 && strcmp(x->msgid, id) == 0) {
            x->state = outcome == DEJA__ACK_REFUSED ? -1 : 1;
            fl->waiting--;
            fl->last_ack_ns = deja__now_ns();
            pthread_cond_broadcast(&fl->f->acked_cond);
            return;
        }
    }
}

/* Acknowledge the jobs whose results are stored and send back those whose
 * results were refused; with `give_up`, also those still waiting (their
 * acknowledgements are forgotten). */
static void flights_settle(flights *fl, heartbeat *hb, deja_worker_stats *st, int give_up)
{
    flight *done = NULL;
    size_t ndone = 0;

    pthread_mutex_lock(&fl->f->lock);
    if (fl->n > 0)
        done = malloc(fl->n * sizeof *done);
    for (size_t i = 0; done != NULL && i < fl->n;) {
        flight *x = &fl->v[i];

        if (x->state != 0 || give_up) {
            if (x->state == 0)
                fl->waiting--;
            done[ndone++] = *x;
            fl->v[i] = fl->v[--fl->n];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&fl->f->lock);
    for (size_t i = 0; i < ndone; i++) {
        if (done[i].state == 1) {
            natsMsg_Ack(done[i].job, NULL);
            st->jobs++;
            st->errors += done[i].error != 0;
        } else {
            natsMsg_Nak(done[i].job, NULL);
        }
        release(hb, done[i].job);
    }
    free(done);
}

/* Publish the result `data` of `job` (reply subject `reply`, message id
 * `msgid`) and remember it in flight. */
static int flights_publish(flights *fl, natsMsg *job, const char *reply, const char *msgid,
                           const deja__buf *result)
{
    flight *x;
    int rc;

    pthread_mutex_lock(&fl->f->lock);
    if (fl->n == fl->cap) {
        size_t cap = fl->cap ? fl->cap * 2 : 64;
        flight *v = realloc(fl->v, cap * sizeof *v);

        if (v == NULL) {
            pthread_mutex_unlock(&fl->f->lock);
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        }
        fl->v = v;
        fl->cap = cap;
    }
    x = &fl->v[fl->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->msgid, sizeof x->msgid, "%s", msgid);
    x->job = job;
    x->error = result->data[8] == DEJA_VERDICT_ERROR;
    if (fl->waiting++ == 0)
        fl->last_ack_ns = deja__now_ns();
    pthread_mutex_unlock(&fl->f->lock);
    rc = deja__fleet_send(fl->f, reply, msgid, result->data, result->size);
    if (rc == DEJA_EIO) {
        /* Not handed over: no acknowledgement will come; the job goes back. */
        pthread_mutex_lock(&fl->f->lock);
        for (size_t i = 0; i < fl->n; i++) {
            if (fl->v[i].job == job && fl->v[i].state == 0) {
                fl->v[i].state = -1;
                fl->waiting--;
            }
        }
        pthread_mutex_unlock(&fl->f->lock);
        rc = 0;
    }
    return rc;
}

/* Wait until at most `most` results are waiting, or `ms` pass: 0 when at
 * most `most` wait, 1 when more still do, 2 when none was acknowledged
 * for the fleet's timeout while some wait. */
enum { FLIGHTS_OK, FLIGHTS_OVER, FLIGHTS_STALLED };
static int flights_wait(flights *fl, size_t most, unsigned ms)
{
    const struct timespec ts = deja__clock_after(CLOCK_REALTIME, ms);
    int state;

    pthread_mutex_lock(&fl->f->lock);
    while (fl->waiting > most) {
        if (pthread_cond_timedwait(&fl->f->acked_cond, &fl->f->lock, &ts) != 0)
            break;
    }
    state = fl->waiting <= most ? FLIGHTS_OK : FLIGHTS_OVER;
    if (fl->waiting > 0 && deja__now_ns() - fl->last_ack_ns > fl->f->timeout_ms * (int64_t)1000000)
        state = FLIGHTS_STALLED;
    pthread_mutex_unlock(&fl->f->lock);
    return state;
}

/* ------------------------------------------------------------------------
 * Replaying a group of jobs.
 * ---------------------------------------------------------------------- */

/* A job of the group being done. */
typedef struct job_slot {
    natsMsg *msg;
    deja__job job;
    int unpacked;
    int ready; /* its trace is in `trace` */
    int gone;  /* its message is settled and released here, or in flight */
    deja_trace *trace; /* decoded, blobs attached (the replay takes it) */
    deja__buf result; /* index (u64le) then the packed result */
} job_slot;

typedef struct group_ctx {
    job_slot **order; /* the slots, in the order of the ids replayed */
    size_t n;
    int force;
    int rc;
} group_ctx;

/* A loaded model for jobs of one spec and one set of options. */
typedef struct session {
    char *spec;
    deja_replay_options opts;
    deja__replay_session *ss;
    uint64_t used;
} session;

typedef struct worker {
    deja_fleet *f;
    deja_store *cache;
    const deja_worker_options *o;
    heartbeat *hb;
    flights fl;
    session sessions[SESSIONS_MAX];
    uint64_t clock;
    deja_worker_stats *st;
} worker;

static void put_index(deja__buf *b, uint64_t index)
{
    uint8_t p[8];

    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(index >> (8 * i));
    b->size = 0;
    deja__buf_append(b, p, 8);
}

/* The one-trace summary counts a local replay would add for `r`. */
static void counts_of(const deja_replay_result *r, int force, deja_replay_summary *s)
{
    const int other_name = r->trace != NULL && r->model_name != NULL &&
                           strcmp(r->trace->model_name ? r->trace->model_name : "",
                                  r->model_name) != 0;

    memset(s, 0, sizeof *s);
    s->name_mismatch = other_name;
    s->trouble = r->verdict == DEJA_VERDICT_ERROR && (r->trace == NULL || (other_name && !force));
}

static int on_result(const deja_replay_result *r, void *payload)
{
    group_ctx *g = payload;
    deja_replay_summary s;
    deja__buf packed = {0};
    job_slot *slot;

    if (r->index >= g->n)
        return 0;
    slot = g->order[r->index];
    counts_of(r, g->force, &s);
    put_index(&slot->result, slot->job.index);
    if (deja__result_pack(r, &s, &packed) != 0 ||
        deja__buf_append(&slot->result, packed.data, packed.size) != 0)
        g->rc = DEJA_ENOMEM;
    deja__buf_free(&packed);
    return 0;
}

/* An ERROR result naming why the job could not be replayed. */
static int error_result(job_slot *slot, const char *spec, int code, const char *why)
{
    deja_replay_result r;
    deja_replay_summary s;
    deja__buf packed = {0};
    int rc;

    memset(&r, 0, sizeof r);
    memset(&s, 0, sizeof s);
    r.verdict = DEJA_VERDICT_ERROR;
    r.code = code;
    r.error = why;
    r.model_name = spec;
    r.model_version = "";
    s.trouble = 1;
    put_index(&slot->result, slot->job.index);
    rc = deja__result_pack(&r, &s, &packed);
    if (rc == 0)
        rc = deja__buf_append(&slot->result, packed.data, packed.size);
    deja__buf_free(&packed);
    return rc;
}

static int same_options(const deja_replay_options *a, const deja_replay_options *b)
{
    return a->repeat == b->repeat && a->diff.atol == b->diff.atol &&
           a->diff.rtol == b->diff.rtol && a->diff.ulps == b->diff.ulps &&
           a->diff.topk == b->diff.topk && a->force == b->force && a->isolate == b->isolate;
}

/* The loaded model for `spec` and `opts`, loading it (in place of the
 * least recently used one) when needed. */
static int session_for(worker *w, const char *spec, const deja_replay_options *opts,
                       deja__replay_session **out)
{
    session *lru = &w->sessions[0];
    char *copy;
    int rc;

    for (size_t i = 0; i < SESSIONS_MAX; i++) {
        session *x = &w->sessions[i];

        if (x->ss != NULL && strcmp(x->spec, spec) == 0 && same_options(&x->opts, opts)) {
            x->used = ++w->clock;
            *out = x->ss;
            return 0;
        }
        if (x->used < lru->used)
            lru = x;
    }
    deja__replay_session_close(lru->ss);
    free(lru->spec);
    memset(lru, 0, sizeof *lru);
    copy = strdup(spec);
    if (copy == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    rc = deja__replay_session_open(&lru->ss, w->cache, copy, opts, 1);
    if (rc != 0) {
        free(copy);
        return rc;
    }
    lru->spec = copy;
    lru->opts = *opts;
    lru->used = ++w->clock;
    *out = lru->ss;
    return 0;
}

/* Replay the ready jobs that share the spec and options of `first` with
 * their loaded model, filling their results. */
static int replay_group(worker *w, job_slot *slots, size_t n, size_t first, int *done)
{
    const char *spec = w->o->model_spec != NULL ? w->o->model_spec : slots[first].job.spec;
    job_slot **order = calloc(n, sizeof *order);
    deja_trace **traces = calloc(n, sizeof *traces);
    group_ctx g = {order, 0, slots[first].job.opts.force, 0};
    deja_replay_options opts = slots[first].job.opts;
    deja__replay_session *ss = NULL;
    int rc = 0;

    if (order == NULL || traces == NULL) {
        free(order);
        free(traces);
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    }
    for (size_t i = first; i < n; i++) {
        if (!slots[i].ready || done[i] ||
            strcmp(slots[i].job.spec, slots[first].job.spec) != 0 ||
            !same_options(&slots[i].job.opts, &opts))
            continue;
        order[g.n] = &slots[i];
        traces[g.n++] = slots[i].trace;
        slots[i].trace = NULL; /* the replay's now */
        done[i] = 1;
    }
    opts.jobs = 1;
    opts.progress = NULL;
    rc = session_for(w, spec, &opts, &ss);
    if (rc == 0)
        rc = deja__replay_session_run_traces(ss, traces, g.n, on_result, &g, NULL);
    for (size_t i = 0; i < g.n; i++)
        deja_trace_free(traces[i]); /* left when the session could not be had */
    if (rc == 0)
        rc = g.rc;
    for (size_t i = 0; i < g.n; i++) {
        if (order[i]->result.size == 0) {
            char why[400];

            snprintf(why, sizeof why, "worker: %s",
                     deja_error_last()[0] ? deja_error_last() : deja_strerror(rc ? rc : DEJA_EIO));
            error_result(order[i], spec, rc ? rc : DEJA_EIO, why);
        }
    }
    free(order);
    free(traces);
    return 0;
}

/* Do a group of jobs: bring their traces into the cache, replay them, and
 * publish their results (each job acknowledged when its result is).
 * Returns 0 (whatever the verdicts), or the fleet's error. */
static int do_group(worker *w, natsMsg **msgs, size_t n)
{
    job_slot *slots = calloc(n, sizeof *slots);
    int *done = calloc(n, sizeof *done);
    const char **subjects = NULL;
    const uint8_t **datas = NULL;
    size_t *sizes = NULL;
    deja_trace **traces = NULL;
    int *rcs = NULL;
    int rc = 0;

    if (slots == NULL || done == NULL) {
        free(slots);
        free(done);
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    }
    subjects = calloc(n, sizeof *subjects);
    datas = calloc(n, sizeof *datas);
    sizes = calloc(n, sizeof *sizes);
    traces = calloc(n, sizeof *traces);
    rcs = calloc(n, sizeof *rcs);
    for (size_t i = 0; i < n; i++)
        slots[i].msg = msgs[i];
    if (subjects == NULL || datas == NULL || sizes == NULL || traces == NULL || rcs == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        job_slot *sl = &slots[i];

        subjects[i] = "";
        if (deja__job_unpack(natsMsg_GetData(sl->msg), (size_t)natsMsg_GetDataLength(sl->msg),
                             &sl->job) != 0) {
            /* Nobody can do a malformed job: drop it for good. */
            natsMsg_Term(sl->msg, NULL);
            release(w->hb, sl->msg);
            sl->gone = 1;
            done[i] = 1;
            continue;
        }
        sl->unpacked = 1;
        subjects[i] = sl->job.trace_subject;
        datas[i] = sl->job.trace;
        sizes[i] = sl->job.trace_size;
    }
    rc = deja__fleet_pull_traces(w->f, w->cache, subjects, datas, sizes, n, traces, rcs);
    if (rc != 0)
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        job_slot *sl = &slots[i];

        if (done[i])
            continue;
        if (rcs[i] == DEJA_EIO) {
            /* The fleet, not the trace: let this or another worker try again. */
            natsMsg_NakWithDelay(sl->msg, 1000, NULL);
            release(w->hb, sl->msg);
            sl->gone = 1;
            done[i] = 1;
        } else if (rcs[i] != 0) {
            char why[400];

            snprintf(why, sizeof why, "worker: cannot fetch %s (%s)", sl->job.trace_subject,
                     deja_strerror(rcs[i]));
            error_result(sl, w->o->model_spec ? w->o->model_spec : sl->job.spec, rcs[i], why);
        } else {
            sl->trace = traces[i];
            traces[i] = NULL;
            sl->ready = 1;
        }
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (slots[i].ready && !done[i])
            rc = replay_group(w, slots, n, i, done);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char msgid[MSGID_MAX];

        if (slots[i].gone || slots[i].result.size == 0)
            continue;
        snprintf(msgid, sizeof msgid, "%.100s.%llu", slots[i].job.reply,
                 (unsigned long long)slots[i].job.index);
        rc = flights_publish(&w->fl, slots[i].msg, slots[i].job.reply, msgid, &slots[i].result);
        if (rc == 0)
            slots[i].gone = 1; /* in flight: settled with its result */
    }

cleanup:
    for (size_t i = 0; i < n; i++) {
        if (!slots[i].gone) {
            /* No result to wait for: back to the stream at once. */
            natsMsg_Nak(slots[i].msg, NULL);
            release(w->hb, slots[i].msg);
        }
        deja_trace_free(slots[i].trace);
        if (slots[i].unpacked)
            deja__job_free(&slots[i].job);
        deja__buf_free(&slots[i].result);
    }
    free(slots);
    free(done);
    free(subjects);
    free(datas);
    free(sizes);
    for (size_t i = 0; traces != NULL && i < n; i++)
        deja_trace_free(traces[i]);
    free(traces);
    free(rcs);
    return rc;
}

/* Give back the jobs of a group not started. */
static void give_back(heartbeat *hb, group *g, size_t from)
{
    for (size_t i = from; i < g->n; i++) {
        natsMsg_Nak(g->msgs[i], NULL);
        release(hb, g->msgs[i]);
    }
    free(g->msgs);
    g->msgs = NULL;
    g->n = 0;
}

/* Stop the fetcher `fe` running in `thread` and give back the jobs it
 * fetched that were not started. */
static void fetcher_stop(fetcher *fe, pthread_t thread)
{
    pthread_mutex_lock(&fe->lock);
    fe->quit = 1;
    pthread_cond_broadcast(&fe->cond);
    pthread_mutex_unlock(&fe->lock);
    pthread_join(thread, NULL);
    for (size_t i = 0; i < fe->nqueue; i++)
        give_back(fe->hb, &fe->queue[i], 0);
    fe->nqueue = 0;
}

int deja_fleet_work(deja_fleet *f, deja_store *cache, const deja_worker_options *opts,
                    deja_worker_stats *out)
{
    static const deja_worker_options defaults = DEJA_WORKER_OPTIONS_INIT;
    deja_worker_options o = opts != NULL ? *opts : defaults;
    deja_worker_stats st = {0, 0};
    natsSubscription *sub = NULL;
    heartbeat hb;
    fetcher fe;
    worker w;
    pthread_t beater, fetch_thread;
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsStatus s;
    uint64_t taken = 0;
    int rc, beating = 0, fetching = 0;

    if (o.version != DEJA_WORKER_OPTIONS_VERSION)
        return deja__error_set(DEJA_EINVAL, "worker: unknown options version %u", o.version);
    if (o.ack_wait_ms == 0)
        o.ack_wait_ms = DEFAULT_ACK_WAIT_MS;
    if (o.prefetch == 0)
        o.prefetch = DEFAULT_PREFETCH;
    memset(&hb, 0, sizeof hb);
    memset(&fe, 0, sizeof fe);
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&hb.lock, NULL);
    pthread_cond_init(&hb.cond, NULL);
    pthread_mutex_init(&fe.lock, NULL);
    pthread_cond_init(&fe.cond, NULL);
    hb.every_ms = o.ack_wait_ms / 3 ? o.ack_wait_ms / 3 : 1;
    w.f = f;
    w.cache = cache;
    w.o = &o;
    w.hb = &hb;
    w.st = &st;
    w.fl.f = f;
    rc = deja__fleet_stream(f, DEJA__FLEET_JOBS, DEJA__FLEET_JOBS_SUBJECT, DEJA__STREAM_WORKQUEUE);
    if (rc == 0)
        rc = deja__fleet_stream(f, DEJA__FLEET_RESULTS, DEJA__FLEET_RESULTS_SUBJECT,
                                DEJA__STREAM_RECENT);
    if (rc != 0)
        goto cleanup;
    jsSubOptions_Init(&so);
    so.Stream = DEJA__FLEET_JOBS;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = (int64_t)o.ack_wait_ms * 1000000;
    so.Config.MaxAckPending = 100000;
    s = js_PullSubscribe(&sub, f->js, DEJA__FLEET_JOBS_SUBJECT ".>", DEJA__FLEET_WORKERS, NULL, &so,
                         &jerr);
    if (s != NATS_OK) {
        rc = deja__fleet_error(f, s, jerr, "joining the workers");
        goto cleanup;
    }
    pthread_mutex_lock(&f->lock);
    f->ack_fn = on_result_ack;
    f->ack_payload = &w.fl;
    pthread_mutex_unlock(&f->lock);
    if (pthread_create(&beater, NULL, beat, &hb) != 0) {
        rc = deja__error_set(DEJA_EIO, "worker: cannot start the heartbeat thread");
        goto cleanup;
    }
    beating = 1;
    fe.sub = sub;
    fe.f = f;
    fe.hb = &hb;
    /* Not beyond max_jobs: never more fetched than are left to do. */
    fe.prefetch = o.max_jobs != 0 && o.max_jobs < o.prefetch ? (unsigned)o.max_jobs : o.prefetch;
    if (pthread_create(&fetch_thread, NULL, fetch_main, &fe) != 0) {
        rc = deja__error_set(DEJA_EIO, "worker: cannot start the fetching thread");
        goto cleanup;
    }
    fetching = 1;
    while (rc == 0 && !(o.stop != NULL && o.stop(o.payload)) &&
           !(o.max_jobs != 0 && taken >= o.max_jobs)) {
        group g = {NULL, 0};
        size_t take;
        int got;

        /* Results of at most INFLIGHT_GROUPS groups wait for their acks;
         * when none comes for the timeout, their jobs go back. */
        for (;;) {
            const int state = flights_wait(&w.fl, (size_t)o.prefetch * INFLIGHT_GROUPS,
                                           WAIT_SLICE_MS);

            if (state == FLIGHTS_STALLED)
                deja__fleet_acks_forget(f);
            flights_settle(&w.fl, &hb, &st, state == FLIGHTS_STALLED);
            if (state != FLIGHTS_OVER)
                break;
        }
        got = next_group(&fe, &g);
        if (got < 0) {
            rc = got;
            break;
        }
        if (got == 0)
            continue;
        take = g.n;
        if (o.max_jobs != 0 && taken + take > o.max_jobs)
            take = (size_t)(o.max_jobs - taken);
        taken += take;
        rc = do_group(&w, g.msgs, take);
        give_back(&hb, &g, take);
    }
    /* Wind down: no more fetching, jobs fetched and not started go back,
     * the results in flight get their acknowledgements (or their jobs go
     * back after the timeout). */
    if (fetching) {
        fetcher_stop(&fe, fetch_thread);
        fetching = 0;
    }
    for (;;) {
        const int state = flights_wait(&w.fl, 0, WAIT_SLICE_MS);

        if (state == FLIGHTS_STALLED)
            deja__fleet_acks_forget(f);
        flights_settle(&w.fl, &hb, &st, state == FLIGHTS_STALLED);
        if (w.fl.n == 0)
            break;
    }

cleanup:
    if (fetching)
        fetcher_stop(&fe, fetch_thread);
    pthread_mutex_lock(&f->lock);
    if (f->ack_payload == &w.fl) {
        f->ack_fn = NULL;
        f->ack_payload = NULL;
    }
    pthread_mutex_unlock(&f->lock);
    flights_settle(&w.fl, &hb, &st, 1);
    free(w.fl.v);
    if (beating) {
        pthread_mutex_lock(&hb.lock);
        hb.quit = 1;
        pthread_cond_signal(&hb.cond);
        pthread_mutex_unlock(&hb.lock);
        pthread_join(beater, NULL);
    }
    for (size_t i = 0; i < SESSIONS_MAX; i++) {
        deja__replay_session_close(w.sessions[i].ss);
        free(w.sessions[i].spec);
    }
    if (sub != NULL)
        natsSubscription_Destroy(sub);
    free(hb.held);
    pthread_mutex_destroy(&hb.lock);
    pthread_cond_destroy(&hb.cond);
    pthread_mutex_destroy(&fe.lock);
    pthread_cond_destroy(&fe.cond);
    if (out != NULL)
        *out = st;
    return rc;
}
