/*
 * fleet/worker.c -- `deja worker`: take replay jobs from DEJA_JOBS, replay
 * each trace from a local cache store, publish the result, then
 * acknowledge the job. The jobs fetched together are replayed together,
 * one deja_replay_run (one model load) per group of alike jobs. While a job runs, a heartbeat tells the server the
 * worker is still at it (so only a worker that died loses its jobs to
 * another, after the ack deadline).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet/fleet_internal.h"

#define DEFAULT_ACK_WAIT_MS 10000
#define IDLE_FETCH_MS 500
#define DEFAULT_PREFETCH 16

typedef struct heartbeat {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    natsMsg **current; /* the jobs being worked on */
    size_t ncurrent;
    int quit;
    unsigned every_ms;
} heartbeat;

static void *beat(void *arg)
{
    heartbeat *h = arg;

    pthread_mutex_lock(&h->lock);
    while (!h->quit) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += h->every_ms / 1000;
        ts.tv_nsec += (long)(h->every_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->cond, &h->lock, &ts);
        for (size_t i = 0; !h->quit && i < h->ncurrent; i++)
            natsMsg_InProgress(h->current[i], NULL);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* A job of the batch being done. */
typedef struct job_slot {
    natsMsg *msg;
    deja__job job;
    int unpacked;
    int ready; /* its trace is in the cache */
    deja_id id;
    deja__buf result; /* index (u64le) then the packed result */
} job_slot;

typedef struct group_ctx {
    job_slot *slots;     /* the group's slots, in the order of the ids replayed */
    job_slot **order;
    size_t n;
    int force;
    int rc;
} group_ctx;

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

/* Replay the ready jobs that share the spec and options of `first` in one
 * deja_replay_run (the model is loaded once), filling their results. */
static int replay_group(deja_store *cache, const deja_worker_options *o, job_slot *slots,
                        size_t n, size_t first, int *done)
{
    const char *spec = o->model_spec != NULL ? o->model_spec : slots[first].job.spec;
    job_slot **order = calloc(n, sizeof *order);
    deja_id *ids = calloc(n, sizeof *ids);
    group_ctx g = {slots, order, 0, slots[first].job.opts.force, 0};
    deja_replay_options opts = slots[first].job.opts;
    int rc = 0;

    if (order == NULL || ids == NULL) {
        free(order);
        free(ids);
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    }
    for (size_t i = first; i < n; i++) {
        if (!slots[i].ready || done[i] ||
            strcmp(slots[i].job.spec, slots[first].job.spec) != 0 ||
            !same_options(&slots[i].job.opts, &opts))
            continue;
        order[g.n] = &slots[i];
        ids[g.n++] = slots[i].id;
        done[i] = 1;
    }
    opts.jobs = 1;
    opts.progress = NULL;
    rc = deja_replay_run(cache, ids, g.n, spec, &opts, on_result, &g, NULL);
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
    free(ids);
    return 0;
}

/* Do a batch of jobs: fetch their traces, replay them (one model load per
 * group of alike jobs), publish the results, then acknowledge the jobs.
 * Returns 0 (whatever the verdicts), or the fleet's error. */
static int do_batch(deja_fleet *f, deja_store *cache, const deja_worker_options *o,
                    natsMsg **msgs, size_t n, deja_worker_stats *st)
{
    job_slot *slots = calloc(n, sizeof *slots);
    int *done = calloc(n, sizeof *done);
    const char **subjects = NULL;
    const uint8_t **datas = NULL;
    size_t *sizes = NULL;
    deja_id *ids = NULL;
    int *rcs = NULL;
    int rc = 0, transient;

    if (slots == NULL || done == NULL) {
        free(slots);
        free(done);
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    }
    subjects = calloc(n, sizeof *subjects);
    datas = calloc(n, sizeof *datas);
    sizes = calloc(n, sizeof *sizes);
    ids = calloc(n, sizeof *ids);
    rcs = calloc(n, sizeof *rcs);
    if (subjects == NULL || datas == NULL || sizes == NULL || ids == NULL || rcs == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        job_slot *sl = &slots[i];

        sl->msg = msgs[i];
        subjects[i] = "";
        if (deja__job_unpack(natsMsg_GetData(sl->msg), (size_t)natsMsg_GetDataLength(sl->msg),
                             &sl->job) != 0) {
            /* Nobody can do a malformed job: drop it for good. */
            natsMsg_Term(sl->msg, NULL);
            done[i] = 1;
            continue;
        }
        sl->unpacked = 1;
        subjects[i] = sl->job.trace_subject;
        datas[i] = sl->job.trace;
        sizes[i] = sl->job.trace_size;
    }
    rc = deja__fleet_pull_many(f, cache, subjects, datas, sizes, n, ids, rcs);
    if (rc != 0)
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        job_slot *sl = &slots[i];

        if (done[i])
            continue;
        if (rcs[i] == DEJA_EIO) {
            /* The fleet, not the trace: let this or another worker try again. */
            natsMsg_NakWithDelay(sl->msg, 1000, NULL);
            done[i] = 1;
        } else if (rcs[i] != 0) {
            char why[400];

            snprintf(why, sizeof why, "worker: cannot fetch %s (%s)", sl->job.trace_subject,
                     deja_strerror(rcs[i]));
            error_result(sl, o->model_spec ? o->model_spec : sl->job.spec, rcs[i], why);
        } else {
            sl->id = ids[i];
            sl->ready = 1;
        }
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (slots[i].ready && !done[i])
            rc = replay_group(cache, o, slots, n, i, done);
    /* Results first, acknowledged; then the jobs. */
    deja__fleet_acks_reset(f);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char msgid[160];

        if (slots[i].result.size == 0)
            continue;
        snprintf(msgid, sizeof msgid, "%.100s.%llu", slots[i].job.reply,
                 (unsigned long long)slots[i].job.index);
        rc = deja__fleet_publish(f, slots[i].job.reply, msgid, slots[i].result.data,
                                 slots[i].result.size);
    }
    if (rc == 0)
        rc = deja__fleet_acks_wait(f, &transient);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (slots[i].result.size == 0)
            continue;
        if (natsMsg_Ack(slots[i].msg, NULL) != NATS_OK)
            rc = deja__fleet_error(f, NATS_ERR, 0, "acknowledging a job");
        st->jobs++;
        if (slots[i].result.data[8] == DEJA_VERDICT_ERROR)
            st->errors++;
    }

cleanup:
    for (size_t i = 0; i < n; i++) {
        if (slots[i].unpacked)
            deja__job_free(&slots[i].job);
        deja__buf_free(&slots[i].result);
    }
    free(slots);
    free(done);
    free(subjects);
    free(datas);
    free(sizes);
    free(ids);
    free(rcs);
    return rc;
}

int deja_fleet_work(deja_fleet *f, deja_store *cache, const deja_worker_options *opts,
                    deja_worker_stats *out)
{
    static const deja_worker_options defaults = DEJA_WORKER_OPTIONS_INIT;
    deja_worker_options o = opts != NULL ? *opts : defaults;
    deja_worker_stats st = {0, 0};
    natsSubscription *sub = NULL;
    heartbeat hb;
    pthread_t beater;
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsStatus s;
    int rc, started = 0;

    if (o.version != DEJA_WORKER_OPTIONS_VERSION)
        return deja__error_set(DEJA_EINVAL, "worker: unknown options version %u", o.version);
    if (o.ack_wait_ms == 0)
        o.ack_wait_ms = DEFAULT_ACK_WAIT_MS;
    if (o.prefetch == 0)
        o.prefetch = DEFAULT_PREFETCH;
    memset(&hb, 0, sizeof hb);
    pthread_mutex_init(&hb.lock, NULL);
    pthread_cond_init(&hb.cond, NULL);
    hb.every_ms = o.ack_wait_ms / 3 ? o.ack_wait_ms / 3 : 1;
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
    if (pthread_create(&beater, NULL, beat, &hb) != 0) {
        rc = deja__error_set(DEJA_EIO, "worker: cannot start the heartbeat thread");
        goto cleanup;
    }
    started = 1;
    while (rc == 0 && !(o.stop != NULL && o.stop(o.payload)) &&
           !(o.max_jobs != 0 && st.jobs >= o.max_jobs)) {
        natsMsgList list = {0};

        s = natsSubscription_Fetch(&list, sub, (int)o.prefetch, IDLE_FETCH_MS, &jerr);
        if (s == NATS_TIMEOUT)
            continue;
        if (s != NATS_OK) {
            rc = deja__fleet_error(f, s, jerr, "fetching jobs");
            break;
        }
        if (list.Count > 0) {
            size_t take = (size_t)list.Count;

            /* Not beyond max_jobs: what is beyond goes back at once. */
            if (o.max_jobs != 0 && st.jobs + take > o.max_jobs)
                take = (size_t)(o.max_jobs - st.jobs);
            for (size_t i = take; i < (size_t)list.Count; i++)
                natsMsg_Nak(list.Msgs[i], NULL);
            pthread_mutex_lock(&hb.lock);
            hb.current = list.Msgs;
            hb.ncurrent = take;
            pthread_mutex_unlock(&hb.lock);
            rc = do_batch(f, cache, &o, list.Msgs, take, &st);
            pthread_mutex_lock(&hb.lock);
            hb.current = NULL;
            hb.ncurrent = 0;
            pthread_mutex_unlock(&hb.lock);
        }
        natsMsgList_Destroy(&list);
    }

cleanup:
    if (started) {
        pthread_mutex_lock(&hb.lock);
        hb.quit = 1;
        pthread_cond_signal(&hb.cond);
        pthread_mutex_unlock(&hb.lock);
        pthread_join(beater, NULL);
    }
    if (sub != NULL)
        natsSubscription_Destroy(sub);
    pthread_mutex_destroy(&hb.lock);
    pthread_cond_destroy(&hb.cond);
    if (out != NULL)
        *out = st;
    return rc;
}
