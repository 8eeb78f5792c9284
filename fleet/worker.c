/*
 * fleet/worker.c -- `deja worker`: take replay jobs from DEJA_JOBS, replay
 * each trace from a local cache store, publish the result, then
 * acknowledge the job. While a job runs, a heartbeat tells the server the
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

typedef struct heartbeat {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    natsMsg *current; /* the job being worked on, or NULL */
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
        if (!h->quit && h->current != NULL)
            natsMsg_InProgress(h->current, NULL);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

typedef struct one_result {
    deja__buf body; /* index (u64le) then the packed result */
    int got, rc;
    deja_verdict verdict;
} one_result;

static int on_result(const deja_replay_result *r, void *payload)
{
    one_result *o = payload;
    deja_replay_summary none;

    memset(&none, 0, sizeof none);
    o->got = 1;
    o->verdict = r->verdict;
    /* The summary's trouble counts are added once the run returns. */
    o->rc = deja__result_pack(r, &none, &o->body);
    return 0;
}

/* An ERROR result naming why the job could not be replayed. */
static int error_result(deja__buf *out, const char *spec, int code, const char *why)
{
    deja_replay_result r;
    deja_replay_summary s;

    memset(&r, 0, sizeof r);
    memset(&s, 0, sizeof s);
    r.verdict = DEJA_VERDICT_ERROR;
    r.code = code;
    r.error = why;
    r.model_name = spec;
    r.model_version = "";
    s.trouble = 1;
    return deja__result_pack(&r, &s, out);
}

/* Patch the trouble and name-mismatch counts of a packed result: they sit
 * right after verdict (1 byte) and code (8 bytes). */
static void set_counts(deja__buf *packed, size_t trouble, size_t mismatch)
{
    uint8_t *p = packed->data + 9;

    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(trouble >> (8 * i));
        p[4 + i] = (uint8_t)(mismatch >> (8 * i));
    }
}

/* Do one job: fetch, replay, publish the result. Returns 0 when the job is
 * done (whatever its verdict), else the fleet's error. */
static int do_job(deja_fleet *f, deja_store *cache, const deja_worker_options *o, natsMsg *m,
                  deja_worker_stats *st)
{
    deja__job j;
    one_result res;
    deja__buf out = {0};
    deja_replay_summary sum;
    char msgid[128];
    deja_id id;
    const char *spec;
    uint8_t idx[8];
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus s;
    int rc;

    memset(&res, 0, sizeof res);
    memset(&sum, 0, sizeof sum);
    rc = deja__job_unpack(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &j);
    if (rc != 0) {
        /* Nobody can do a malformed job: drop it for good. */
        natsMsg_Term(m, NULL);
        return 0;
    }
    spec = o->model_spec != NULL ? o->model_spec : j.spec;
    rc = deja__fleet_pull_one(f, cache, j.trace_subject, &id);
    if (rc == DEJA_EIO) {
        /* The fleet, not the trace: let this or another worker try again. */
        natsMsg_NakWithDelay(m, 1000, NULL);
        rc = 0;
        goto cleanup;
    }
    if (rc == 0)
        rc = deja_replay_run(cache, &id, 1, spec, &j.opts, on_result, &res, &sum);
    if (rc == 0 && res.got && res.rc == 0) {
        set_counts(&res.body, sum.trouble, sum.name_mismatch);
        if (res.verdict == DEJA_VERDICT_ERROR)
            st->errors++;
    } else {
        char why[400];

        snprintf(why, sizeof why, "worker: %s",
                 deja_error_last()[0] ? deja_error_last() : deja_strerror(rc ? rc : res.rc));
        rc = error_result(&res.body, spec, rc ? rc : DEJA_EIO, why);
        st->errors++;
    }
    for (int i = 0; i < 8; i++)
        idx[i] = (uint8_t)(j.index >> (8 * i));
    if (rc == 0)
        rc = deja__buf_append(&out, idx, 8);
    if (rc == 0)
        rc = deja__buf_append(&out, res.body.data, res.body.size);
    if (rc != 0)
        goto cleanup;
    snprintf(msgid, sizeof msgid, "%.100s.%llu", j.reply, (unsigned long long)j.index);
    {
        natsMsg *rm = NULL;

        s = natsMsg_Create(&rm, j.reply, NULL, (const char *)out.data, (int)out.size);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(rm, "Nats-Msg-Id", msgid);
        if (s == NATS_OK)
            s = js_PublishMsg(&pa, f->js, rm, NULL, &jerr);
        natsMsg_Destroy(rm);
    }
    jsPubAck_Destroy(pa);
    if (s != NATS_OK) {
        rc = deja__fleet_error(f, s, jerr, "publishing a result");
        goto cleanup;
    }
    s = natsMsg_AckSync(m, NULL, &jerr);
    if (s != NATS_OK) {
        rc = deja__fleet_error(f, s, jerr, "acknowledging a job");
        goto cleanup;
    }
    st->jobs++;

cleanup:
    deja__buf_free(&out);
    deja__buf_free(&res.body);
    deja__job_free(&j);
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
        o.prefetch = 1;
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
        for (int i = 0; i < list.Count && rc == 0; i++) {
            if ((o.stop != NULL && o.stop(o.payload)) || (o.max_jobs != 0 && st.jobs >= o.max_jobs)) {
                /* Give back what was taken and not started. */
                natsMsg_Nak(list.Msgs[i], NULL);
                continue;
            }
            pthread_mutex_lock(&hb.lock);
            hb.current = list.Msgs[i];
            pthread_mutex_unlock(&hb.lock);
            natsMsg_InProgress(list.Msgs[i], NULL);
            rc = do_job(f, cache, &o, list.Msgs[i], &st);
            pthread_mutex_lock(&hb.lock);
            hb.current = NULL;
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
