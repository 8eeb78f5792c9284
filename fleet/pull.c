/*
 * fleet/pull.c -- `deja pull`: bring a selection of the fleet's traces, with
 * every blob and environment they reference, into a local store.
 *
 * An ephemeral consumer reads DEJA_TRACES (narrowed by subject to a model
 * and version when the filter names them); each message is decoded as an
 * untrusted Trace, checked against its subject's id and the filter, and
 * what the store lacks is fetched from DEJA_OBJECTS and checked against its
 * digest. Batches of traces are then written one transaction each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet_internal.h"
#include "proto/codec.h"
#include "store/store.h"

#define FETCH_BATCH 128
#define RETRY_FOR_MS 30000

typedef struct got_blob {
    deja_digest d;
    void *data;
    size_t size;
} got_blob;

typedef struct puller {
    deja_fleet *f;
    deja_store *store;
    deja_pull_stats *st;
    deja_trace **traces;
    size_t ntraces;
    deja_env **envs; /* environments new to the store */
    deja_digest *env_digests;
    size_t nenvs;
    got_blob *blobs; /* fetched in this batch, new to the store */
    size_t nblobs, cap_blobs;
    uint64_t added, envs_added;
    int keep; /* the traces are handed back, not stored: their new blobs are */
} puller;

static void batch_clear(puller *p)
{
    for (size_t i = 0; i < p->ntraces; i++)
        deja_trace_free(p->traces[i]);
    for (size_t i = 0; i < p->nenvs; i++)
        deja_env_free(p->envs[i]);
    for (size_t i = 0; i < p->nblobs; i++)
        free(p->blobs[i].data);
    p->ntraces = p->nenvs = p->nblobs = 0;
}

/* A copy of the payload of blob `d`: from this batch, from the store, or
 * from the fleet (then counted as added). */
static int blob_for(puller *p, const deja_digest *d, void **data, size_t *size)
{
    void *buf;
    int rc;

    for (size_t i = 0; i < p->nblobs; i++) {
        if (memcmp(p->blobs[i].d.bytes, d->bytes, 16) == 0) {
            *size = p->blobs[i].size;
            *data = malloc(*size ? *size : 1);
            if (*data == NULL)
                return deja__error_set(DEJA_ENOMEM, "out of memory");
            memcpy(*data, p->blobs[i].data, *size);
            return 0;
        }
    }
    rc = deja__store_has(p->store, DEJA__KIND_BLOB, d->bytes);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return deja__store_blob_get(p->store, d, data, size);
    rc = deja__fleet_blob_fetch(p->f, d, data, size, &p->st->bytes);
    if (rc != 0)
        return rc;
    if (p->nblobs == p->cap_blobs) {
        size_t cap = p->cap_blobs ? p->cap_blobs * 2 : 32;
        got_blob *b = realloc(p->blobs, cap * sizeof *b);

        if (b == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        p->blobs = b;
        p->cap_blobs = cap;
    }
    buf = malloc(*size ? *size : 1);
    if (buf == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    memcpy(buf, *data, *size);
    p->blobs[p->nblobs++] = (got_blob){*d, buf, *size};
    p->st->blobs_added++;
    return 0;
}

/* Fetch environment `d` when neither the store nor this batch has it. */
static int env_for(puller *p, const deja_digest *d)
{
    char subject[64], hex[33];
    natsMsg *m = NULL;
    deja_env *env = NULL;
    deja_digest got;
    int rc;

    for (size_t i = 0; i < p->nenvs; i++)
        if (memcmp(p->env_digests[i].bytes, d->bytes, 16) == 0)
            return 0;
    rc = deja__store_has(p->store, DEJA__KIND_ENV, d->bytes);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    deja_digest_format(d, hex);
    deja__fleet_obj_subject(DEJA__OBJ_ENV, d, subject);
    rc = deja__fleet_get(p->f, DEJA__FLEET_OBJECTS, subject, &m);
    if (rc == DEJA_ENOTFOUND)
        return deja__error_set(DEJA_ENOTFOUND, "fleet environment %s is missing", hex);
    if (rc != 0)
        return rc;
    p->st->bytes += (uint64_t)natsMsg_GetDataLength(m);
    got = deja_digest_of(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
    if (memcmp(got.bytes, d->bytes, 16) != 0)
        rc = deja__error_set(DEJA_ECORRUPT, "fleet environment %s does not match its digest", hex);
    else
        rc = deja__env_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &env);
    natsMsg_Destroy(m);
    if (rc != 0)
        return rc;
    p->envs[p->nenvs] = env;
    p->env_digests[p->nenvs++] = *d;
    return 0;
}

/* Attach every blob payload the trace refers to. */
static int attach_all(puller *p, deja_trace *t)
{
    for (int side = 0; side < 2; side++) {
        const size_t n = side == DEJA_INPUT ? t->ninputs : t->noutputs;

        for (size_t i = 0; i < n; i++) {
            const deja_digest *d = deja__trace_blob(t, (deja_side)side, i);
            void *data = NULL;
            size_t size = 0;
            int rc;

            if (d == NULL)
                continue;
            rc = blob_for(p, d, &data, &size);
            if (rc != 0)
                return rc;
            /* The size is checked against the tensor's by the attach. */
            rc = deja__trace_attach(t, (deja_side)side, i, data, size);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int pull_fill(deja__wtxn *w, void *payload)
{
    puller *p = payload;
    deja_digest d;
    int rc = 0, added;

    p->added = p->envs_added = 0;
    for (size_t i = 0; rc == 0 && i < p->nenvs; i++) {
        rc = deja__wtxn_put_env(w, p->envs[i], &d);
        if (rc == 0 && memcmp(d.bytes, p->env_digests[i].bytes, 16) != 0)
            rc = deja__error_set(DEJA_ECORRUPT, "an environment changed digest when stored");
        p->envs_added++;
    }
    for (size_t i = 0; rc == 0 && !p->keep && i < p->ntraces; i++) {
        rc = deja__wtxn_put_trace(w, p->traces[i], &added);
        p->added += (uint64_t)added;
    }
    for (size_t i = 0; rc == 0 && p->keep && i < p->nblobs; i++) {
        rc = deja__wtxn_put_blob(w, p->blobs[i].data, p->blobs[i].size, &d);
        if (rc == 0 && memcmp(d.bytes, p->blobs[i].d.bytes, 16) != 0)
            rc = deja__error_set(DEJA_ECORRUPT, "a blob changed digest when stored");
    }
    return rc;
}

static int flush_batch(puller *p)
{
    int rc = 0;

    p->added = p->envs_added = 0;
    if ((!p->keep && p->ntraces > 0) || p->nenvs > 0 || (p->keep && p->nblobs > 0))
        rc = deja__store_write(p->store, pull_fill, p);
    if (rc == 0) {
        p->st->traces_added += p->added;
        p->st->envs_added += p->envs_added;
    }
    batch_clear(p);
    return rc;
}

static int id_selected(const deja_id *id, const char *const *ids, size_t nids)
{
    char text[DEJA_ID_STRLEN + 1];

    if (nids == 0)
        return 1;
    deja_id_format(id, text);
    for (size_t i = 0; i < nids; i++)
        if (strncasecmp(text, ids[i], strlen(ids[i])) == 0)
            return 1;
    return 0;
}

/* Take one message of DEJA_TRACES: decode, check, select, fetch what the
 * store lacks. `*taken` says whether it joined the batch. */
static int take_bytes(puller *p, const char *subject, const void *data, size_t size,
                      const deja_filter *flt, const char *const *ids, size_t nids, int *taken)
{
    const char *last = strrchr(subject, '.');
    deja_trace *t = NULL;
    char text[DEJA_ID_STRLEN + 1];
    int rc;

    *taken = 0;
    p->st->bytes += (uint64_t)size;
    rc = deja__trace_decode(data, size, &t);
    if (rc != 0)
        return deja__error_wrap(rc, "fleet message %s: ", subject);
    deja_id_format(&t->id, text);
    if (last == NULL || strcmp(last + 1, text) != 0) {
        deja_trace_free(t);
        return deja__error_set(DEJA_ECORRUPT, "fleet message %s holds trace %s", subject, text);
    }
    if (!deja__fleet_match(t, flt) || !id_selected(&t->id, ids, nids)) {
        deja_trace_free(t);
        return 0;
    }
    *taken = 1;
    p->st->traces++;
    rc = p->keep ? 0 : deja__store_has(p->store, DEJA__KIND_TRACE, t->id.bytes);
    if (rc != 0) {
        deja_trace_free(t);
        return rc < 0 ? rc : 0;
    }
    rc = attach_all(p, t);
    if (rc == 0 && t->has_env)
        rc = env_for(p, &t->env);
    if (rc != 0) {
        deja_trace_free(t);
        return deja__error_wrap(rc, "trace %s: ", text);
    }
    p->traces[p->ntraces++] = t;
    return 0;
}

/* take_bytes on a message of DEJA_TRACES. */
static int take(puller *p, natsMsg *m, const deja_filter *flt, const char *const *ids,
                size_t nids, int *taken)
{
    return take_bytes(p, natsMsg_GetSubject(m), natsMsg_GetData(m),
                      (size_t)natsMsg_GetDataLength(m), flt, ids, nids, taken);
}

int deja_fleet_pull(deja_fleet *f, deja_store *store, const deja_filter *flt,
                    const char *const *ids, size_t nids, deja_pull_stats *out)
{
    char subject[DEJA__FLEET_SUBJECT_MAX], m[DEJA__FLEET_TOKEN_MAX], v[DEJA__FLEET_TOKEN_MAX];
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    deja_pull_stats st;
    puller p;
    natsStatus s;
    size_t limit = flt != NULL ? flt->limit : 0;
    int rc = 0, done = 0;

    memset(&st, 0, sizeof st);
    memset(&p, 0, sizeof p);
    p.f = f;
    p.store = store;
    p.st = &st;
    p.traces = calloc(FETCH_BATCH, sizeof *p.traces);
    p.envs = calloc(FETCH_BATCH, sizeof *p.envs);
    p.env_digests = calloc(FETCH_BATCH, sizeof *p.env_digests);
    if (p.traces == NULL || p.envs == NULL || p.env_digests == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    snprintf(m, sizeof m, "*");
    snprintf(v, sizeof v, "*");
    if (flt != NULL && flt->model != NULL)
        rc = deja__fleet_token(flt->model, m, sizeof m);
    if (rc == 0 && flt != NULL && flt->model_version != NULL)
        rc = deja__fleet_token(flt->model_version, v, sizeof v);
    if (rc != 0)
        goto cleanup;
    snprintf(subject, sizeof subject, "%s.%s.%s.*", DEJA__FLEET_TRACES_SUBJECT, m, v);
    jsSubOptions_Init(&so);
    so.Stream = DEJA__FLEET_TRACES;
    so.Config.AckPolicy = js_AckNone;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.InactiveThreshold = (int64_t)60 * 1000000000;
    /* Right after a node is lost the cluster may elect leaders for a few
     * seconds: try again for up to RETRY_FOR_MS. */
    for (int64_t waited = 0;; waited += 500) {
        jerr = 0;
        s = js_PullSubscribe(&sub, f->js, subject, NULL, NULL, &so, &jerr);
        if (s == NATS_OK || waited >= RETRY_FOR_MS ||
            (s != NATS_TIMEOUT && s != NATS_NO_RESPONDERS && jerr != JSClusterNotAvailErr))
            break;
        nats_Sleep(500);
    }
    if (s != NATS_OK) {
        rc = deja__fleet_error(f, s, jerr, "reading the traces");
        goto cleanup;
    }
    while (!done) {
        natsMsgList list = {0};
        jsFetchRequest req;
        int more = 0;

        jsFetchRequest_Init(&req);
        req.Batch = FETCH_BATCH;
        req.NoWait = true;
        req.Expires = f->timeout_ms * 1000000;
        s = natsSubscription_FetchRequest(&list, sub, &req);
        if (s == NATS_TIMEOUT || s == NATS_NOT_FOUND || (s == NATS_OK && list.Count == 0))
            break;
        if (s != NATS_OK) {
            rc = deja__fleet_error(f, s, 0, "reading the traces");
            goto cleanup;
        }
        for (int i = 0; i < list.Count && rc == 0 && !done; i++) {
            jsMsgMetaData *meta = NULL;
            int taken = 0;

            rc = take(&p, list.Msgs[i], flt, ids, nids, &taken);
            if (rc == 0 && taken && limit != 0 && st.traces >= limit)
                done = 1;
            if (natsMsg_GetMetaData(&meta, list.Msgs[i]) == NATS_OK) {
                more = meta->NumPending > 0;
                jsMsgMetaData_Destroy(meta);
            }
        }
        natsMsgList_Destroy(&list);
        if (rc == 0)
            rc = flush_batch(&p);
        if (rc != 0)
            goto cleanup;
        if (!more)
            break;
    }
    rc = flush_batch(&p);

cleanup:
    batch_clear(&p);
    free(p.traces);
    free(p.envs);
    free(p.env_digests);
    free(p.blobs);
    if (sub != NULL) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    if (out != NULL)
        *out = st;
    return rc;
}

int deja__fleet_pull_traces(deja_fleet *f, deja_store *store, const char *const *subjects,
                            const uint8_t *const *datas, const size_t *sizes, size_t n,
                            deja_trace **traces, int *rcs)
{
    deja_pull_stats st;
    puller p;
    int rc = 0;

    memset(&st, 0, sizeof st);
    memset(&p, 0, sizeof p);
    p.f = f;
    p.store = store;
    p.st = &st;
    p.keep = 1;
    p.traces = calloc(n ? n : 1, sizeof *p.traces);
    p.envs = calloc(n ? n : 1, sizeof *p.envs);
    p.env_digests = calloc(n ? n : 1, sizeof *p.env_digests);
    if (p.traces == NULL || p.envs == NULL || p.env_digests == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        natsMsg *m = NULL;
        const size_t before = p.ntraces;
        int taken = 0;

        traces[i] = NULL;
        if (strncmp(subjects[i], DEJA__FLEET_TRACES_SUBJECT ".",
                    sizeof DEJA__FLEET_TRACES_SUBJECT) != 0) {
            rcs[i] = deja__error_set(DEJA_ECORRUPT, "'%s' is not a trace subject", subjects[i]);
            continue;
        }
        if (datas != NULL && datas[i] != NULL) {
            /* Brought by the job: checked as a fetched message is. */
            rcs[i] = take_bytes(&p, subjects[i], datas[i], sizes[i], NULL, NULL, 0, &taken);
        } else {
            rcs[i] = deja__fleet_get(f, DEJA__FLEET_TRACES, subjects[i], &m);
            if (rcs[i] == DEJA_ENOTFOUND)
                rcs[i] = deja__error_set(DEJA_ENOTFOUND, "fleet %s: no trace %s", f->shown,
                                         subjects[i]);
            /* The subject came from the network too: the message must hold
             * the trace it names (take() checks). */
            if (rcs[i] == 0)
                rcs[i] = take(&p, m, NULL, NULL, 0, &taken);
            natsMsg_Destroy(m);
        }
        if (rcs[i] == 0 && p.ntraces > before) {
            traces[i] = p.traces[before];
            p.traces[before] = NULL;
        }
    }
    /* The traces are the caller's; the blobs and environments fetched go
     * to the store, in one transaction. */
    for (size_t i = 0; i < p.ntraces; i++)
        deja_trace_free(p.traces[i]);
    p.ntraces = 0;
    rc = flush_batch(&p);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++) {
            if (rcs[i] == 0)
                rcs[i] = rc;
            deja_trace_free(traces[i]);
            traces[i] = NULL;
        }
    }
    rc = 0;

cleanup:
    batch_clear(&p);
    free(p.traces);
    free(p.envs);
    free(p.env_digests);
    free(p.blobs);
    return rc;
}
