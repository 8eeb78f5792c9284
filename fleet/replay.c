/*
 * fleet/replay.c -- `deja replay --via`: the coordinator of a distributed
 * replay. It ships the selection, enqueues one job per trace on DEJA_JOBS,
 * and hands the workers' results to the caller's callback in selection
 * order, each trace once, with the summary a local replay would give.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet_internal.h"
#include "proto/codec.h"
#include "replay/summary.h"
#include "store/store.h"

#define RESULT_BATCH 64
#define FETCH_WAIT_MS 500

typedef struct coord {
    deja_fleet *f;
    deja_store *store;
    const deja_id *ids;
    size_t n;
    deja__wire_result **slots; /* arrived, not yet emitted */
    size_t received, emitted;
    char **env_seen; /* environment line sets already shown (env_first) */
    size_t nenv_seen;
} coord;

/* Whether this set of environment lines is new: the first result to carry
 * it shows it in full. */
static int env_first(coord *c, const deja_replay_result *r)
{
    deja__buf key = {0};
    int first = 1;

    if (r->nenv == 0)
        return 0;
    for (size_t i = 0; i < r->nenv; i++)
        if (deja__buf_append(&key, r->env[i], strlen(r->env[i]) + 1) != 0)
            break;
    if (deja__buf_append(&key, "", 1) != 0) {
        deja__buf_free(&key);
        return 1;
    }
    for (size_t i = 0; i < c->nenv_seen; i++)
        if (strcmp(c->env_seen[i], (const char *)key.data) == 0 &&
            memcmp(c->env_seen[i], key.data, key.size) == 0)
            first = 0;
    if (first) {
        char **grown = realloc(c->env_seen, (c->nenv_seen + 1) * sizeof *grown);

        if (grown != NULL) {
            c->env_seen = grown;
            c->env_seen[c->nenv_seen++] = (char *)key.data;
            return 1;
        }
    }
    deja__buf_free(&key);
    return first;
}

/* Hand the contiguous arrived results to `cb`. Returns non-zero when the
 * callback asked to stop. */
static int emit_ready(coord *c, deja_replay_cb cb, void *payload, deja_replay_summary *sum)
{
    int stop = 0;

    while (!stop && c->emitted < c->n && c->slots[c->emitted] != NULL) {
        deja__wire_result *w = c->slots[c->emitted];
        deja_replay_result r = w->result;
        deja_trace *t = NULL;

        r.id = c->ids[c->emitted];
        r.index = c->emitted;
        if (deja_trace_get(c->store, &r.id, &t) == 0)
            r.trace = t;
        r.env_first = env_first(c, &r);
        deja__summary_add(sum, r.verdict);
        sum->trouble += w->trouble;
        sum->name_mismatch += w->name_mismatch;
        if (cb != NULL)
            stop = cb(&r, payload) != 0;
        deja_trace_free(t);
        deja__wire_result_free(w);
        free(w);
        c->slots[c->emitted++] = NULL;
    }
    return stop;
}

/* Take one result message: its index first, then the result. Duplicates
 * (a job done twice after a redelivery) and strangers are dropped. */
static void take_result(coord *c, natsMsg *m)
{
    const uint8_t *p = (const uint8_t *)natsMsg_GetData(m);
    const size_t size = (size_t)natsMsg_GetDataLength(m);
    deja__wire_result *w;
    uint64_t index = 0;

    if (size < 8)
        return;
    for (int i = 7; i >= 0; i--)
        index = index << 8 | p[i];
    if (index >= c->n || index < c->emitted || c->slots[index] != NULL)
        return;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        return;
    if (deja__result_unpack(p + 8, size - 8, w) != 0) {
        free(w);
        return;
    }
    c->slots[index] = w;
    c->received++;
}

/* What enqueue hands each raw record to. */
typedef struct enqueuer {
    coord *c;
    const char *subject, *reply, *run, *spec;
    const deja_replay_options *o;
    deja__peek pk;
    deja__buf body;
} enqueuer;

/* deja__store_traces_raw callback: publish the job of trace `i`, carrying
 * the trace's record (as shipped) so that the worker need not fetch it;
 * without it when the job would be too large for one message. */
static int enqueue_one(size_t i, const uint8_t *data, size_t size, void *payload)
{
    enqueuer *e = payload;
    char trace_subject[DEJA__FLEET_SUBJECT_MAX], msgid[96], text[DEJA_ID_STRLEN + 1];
    deja__job j;
    int rc;

    rc = deja__trace_peek(data, size, &e->pk);
    if (rc == 0 && memcmp(e->pk.t.id.bytes, e->c->ids[i].bytes, 16) != 0)
        rc = deja__error_set(DEJA_ECORRUPT, "record holds another id");
    if (rc == 0)
        rc = deja__fleet_trace_subject(e->pk.t.model_name, e->pk.t.model_version,
                                       &e->pk.t.id, trace_subject, sizeof trace_subject);
    if (rc != 0) {
        deja_id_format(&e->c->ids[i], text);
        return deja__error_wrap(rc, "trace %s: ", text);
    }
    memset(&j, 0, sizeof j);
    j.index = i;
    j.spec = e->spec;
    j.trace_subject = trace_subject;
    j.reply = e->reply;
    j.opts = *e->o;
    j.trace = data;
    j.trace_size = size;
    if ((int64_t)size + 4096 > e->c->f->max_payload) {
        j.trace = NULL;
        j.trace_size = 0;
    }
    rc = deja__job_pack(&j, &e->body);
    snprintf(msgid, sizeof msgid, "%s.%zu", e->run, i);
    if (rc == 0)
        rc = deja__fleet_publish(e->c->f, e->subject, msgid, e->body.data, e->body.size);
    return rc;
}

/* Publish the run's jobs, acknowledged. */
static int enqueue(coord *c, const char *run, const char *spec, const deja_replay_options *o)
{
    char subject[96], reply[96];
    enqueuer e;
    int rc, transient;

    memset(&e, 0, sizeof e);
    snprintf(subject, sizeof subject, "%s.%s", DEJA__FLEET_JOBS_SUBJECT, run);
    snprintf(reply, sizeof reply, "%s.%s", DEJA__FLEET_RESULTS_SUBJECT, run);
    e.c = c;
    e.subject = subject;
    e.reply = reply;
    e.run = run;
    e.spec = spec;
    e.o = o;
    deja__fleet_acks_reset(c->f);
    rc = deja__store_traces_raw(c->store, c->ids, c->n, enqueue_one, &e);
    if (rc == 0)
        rc = deja__fleet_acks_wait(c->f, &transient);
    deja__peek_free(&e.pk);
    deja__buf_free(&e.body);
    return rc;
}

int deja_fleet_replay(deja_fleet *f, deja_store *store, const deja_id *ids, size_t n,
                      const char *model_spec, const deja_replay_options *opts, deja_replay_cb cb,
                      void *payload, deja_replay_summary *summary)
{
    static const deja_replay_options defaults = DEJA_REPLAY_OPTIONS_INIT;
    deja_replay_options o = opts != NULL ? *opts : defaults;
    deja_replay_summary sum;
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    coord c;
    deja_id run_id;
    char run[DEJA_ID_STRLEN + 1], results[96];
    natsStatus s;
    int rc;

    memset(&sum, 0, sizeof sum);
    memset(&c, 0, sizeof c);
    if (model_spec == NULL || model_spec[0] == '\0' || o.version != DEJA_REPLAY_OPTIONS_VERSION ||
        (n > 0 && ids == NULL)) {
        rc = deja__error_set(DEJA_EINVAL, "replay --via: bad arguments");
        goto cleanup;
    }
    if (o.repeat == 0)
        o.repeat = 1;
    c.f = f;
    c.store = store;
    c.ids = ids;
    c.n = n;
    c.slots = calloc(n ? n : 1, sizeof *c.slots);
    if (c.slots == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    rc = deja__fleet_stream(f, DEJA__FLEET_JOBS, DEJA__FLEET_JOBS_SUBJECT, DEJA__STREAM_WORKQUEUE);
    if (rc == 0)
        rc = deja__fleet_stream(f, DEJA__FLEET_RESULTS, DEJA__FLEET_RESULTS_SUBJECT,
                                DEJA__STREAM_RECENT);
    if (rc == 0)
        rc = deja__fleet_ship_ids(f, store, ids, n);
    if (rc != 0)
        goto cleanup;
    deja__id_new(&run_id);
    deja_id_format(&run_id, run);
    /* Listen before the first job goes out. */
    snprintf(results, sizeof results, "%s.%s", DEJA__FLEET_RESULTS_SUBJECT, run);
    jsSubOptions_Init(&so);
    so.Stream = DEJA__FLEET_RESULTS;
    so.Config.AckPolicy = js_AckNone;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.InactiveThreshold = (int64_t)600 * 1000000000;
    s = js_PullSubscribe(&sub, f->js, results, NULL, NULL, &so, &jerr);
    if (s != NATS_OK) {
        rc = deja__fleet_error(f, s, jerr, "listening for results");
        goto cleanup;
    }
    rc = enqueue(&c, run, model_spec, &o);
    if (rc != 0)
        goto cleanup;
    while (c.emitted < c.n) {
        natsMsgList list = {0};

        /* Returns what is there at once, else waits for the next. */
        s = natsSubscription_Fetch(&list, sub, RESULT_BATCH, FETCH_WAIT_MS, &jerr);
        if (s != NATS_OK && s != NATS_TIMEOUT) {
            rc = deja__fleet_error(f, s, 0, "reading results");
            goto cleanup;
        }
        for (int i = 0; i < list.Count; i++)
            take_result(&c, list.Msgs[i]);
        natsMsgList_Destroy(&list);
        if (emit_ready(&c, cb, payload, &sum))
            break;
        if (o.progress != NULL)
            o.progress(c.emitted, c.n, o.progress_payload);
    }
    rc = 0;

cleanup:
    if (sub != NULL) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    for (size_t i = 0; c.slots != NULL && i < c.n; i++) {
        if (c.slots[i] != NULL) {
            deja__wire_result_free(c.slots[i]);
            free(c.slots[i]);
        }
    }
    free(c.slots);
    for (size_t i = 0; i < c.nenv_seen; i++)
        free(c.env_seen[i]);
    free(c.env_seen);
    if (summary != NULL)
        *summary = sum;
    return rc;
}
