/*
 * fleet/conn.c -- the connection to NATS JetStream: options and
 * credentials, errors that never show a password, deja's streams,
 * acknowledged asynchronous publishing and direct gets.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet_internal.h"

#define DEFAULT_TIMEOUT_MS 5000
#define MAX_SERVERS 32
#define DUPLICATE_WINDOW_NS ((int64_t)600 * 1000000000) /* 10 minutes */

/* libnats keeps library-wide state; the last fleet closed releases it. */
static atomic_int open_fleets;

/* Copy `servers` into `out` with any "user:password@" removed from each URL. */
static char *servers_shown(const char *servers)
{
    const size_t n = strlen(servers);
    char *out = malloc(n + 1);
    size_t o = 0;
    const char *p = servers;

    if (out == NULL)
        return NULL;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        const char *at, *scheme;
        size_t len;

        if (end == NULL)
            end = p + strlen(p);
        at = memchr(p, '@', (size_t)(end - p));
        scheme = strstr(p, "://");
        if (scheme != NULL && scheme < end) {
            len = (size_t)(scheme + 3 - p);
            memcpy(out + o, p, len);
            o += len;
        }
        p = at != NULL ? at + 1 : (scheme != NULL && scheme < end ? scheme + 3 : p);
        len = (size_t)(end - p);
        memcpy(out + o, p, len);
        o += len;
        if (*end == ',')
            out[o++] = ',';
        p = *end == ',' ? end + 1 : end;
    }
    out[o] = '\0';
    return out;
}

int deja__fleet_error(deja_fleet *f, natsStatus s, jsErrCode jerr, const char *what)
{
    const char *last = nats_GetLastError(NULL);
    const char *why = natsStatus_GetText(s);
    char detail[200] = "";

    if (s == NATS_NO_SERVER)
        why = "no server reachable";
    else if (s == NATS_NOT_PERMITTED || s == NATS_CONNECTION_AUTH_FAILED ||
             (last != NULL && strstr(last, "Authorization") != NULL))
        why = "authentication refused (check the user, password, token or creds file)";
    else if (s == NATS_TIMEOUT)
        why = "no answer in time";
    else if (s == NATS_NO_RESPONDERS)
        why = "no JetStream answers (is the server started with -js?)";
    else if (last != NULL && last[0] != '\0')
        snprintf(detail, sizeof detail, " (%s%s)", last, jerr != 0 ? "" : "");
    if (jerr != 0 && detail[0] == '\0')
        snprintf(detail, sizeof detail, " (JetStream error %d)", (int)jerr);
    return deja__error_set(DEJA_EIO, "fleet %s: %s: %s%s", f->shown ? f->shown : "?", what, why,
                           detail);
}

/* Split `servers` at commas into `urls` (pointers into `copy`), adding
 * "nats://" where no scheme is given. */
static int split_servers(char *copy, char **urls, int *n, char **owned)
{
    char *save = NULL;
    int k = 0;

    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (*tok == '\0')
            continue;
        if (k == MAX_SERVERS)
            return deja__error_set(DEJA_EINVAL, "fleet: more than %d servers", MAX_SERVERS);
        if (strstr(tok, "://") == NULL) {
            size_t len = strlen(tok) + 8;

            owned[k] = malloc(len);
            if (owned[k] == NULL)
                return deja__error_set(DEJA_ENOMEM, "out of memory");
            snprintf(owned[k], len, "nats://%s", tok);
            urls[k] = owned[k];
        } else {
            urls[k] = tok;
        }
        k++;
    }
    *n = k;
    return k > 0 ? 0 : deja__error_set(DEJA_EINVAL, "fleet: no server given");
}

/* Remember the acknowledgement of one asynchronous publish. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    deja_fleet *f = closure;
    const char *why = NULL;
    int outcome, permanent = 0;

    (void)js;
    pthread_mutex_lock(&f->lock);
    if (pa != NULL) {
        f->acked++;
        outcome = pa->Duplicate ? DEJA__ACK_PRESENT : DEJA__ACK_STORED;
        if (pa->Duplicate)
            f->present++;
    } else if (pae != NULL && pae->ErrText != NULL &&
               strstr(pae->ErrText, "maximum messages per subject") != NULL) {
        /* The one message of this subject is stored already. */
        f->acked++;
        f->present++;
        outcome = DEJA__ACK_PRESENT;
    } else {
        f->failed++;
        outcome = DEJA__ACK_REFUSED;
        permanent = pae != NULL && pae->ErrCode == JSStreamMessageExceedsMaximumErr;
        if (permanent)
            f->permanent = 1;
        why = pae != NULL && pae->ErrText != NULL ? pae->ErrText
              : pae != NULL                       ? natsStatus_GetText(pae->Err)
                                                  : "unknown failure";
        if (f->err[0] == '\0')
            snprintf(f->err, sizeof f->err, "%s", why);
    }
    if (f->ack_fn != NULL && msg != NULL)
        f->ack_fn(f->ack_payload, msg, outcome, permanent, why);
    pthread_mutex_unlock(&f->lock);
    natsMsg_Destroy(msg);
}

/* libnats reports asynchronous errors here; deja reports them itself. */
static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    (void)err;
    (void)closure;
}

/* How long creating a stream waits for a cluster to form: the timeout, at
 * least STREAM_CREATE_WAIT_MS. */
#define STREAM_CREATE_WAIT_MS 15000
static int64_t create_wait_ms(const deja_fleet *f)
{
    return f->timeout_ms > STREAM_CREATE_WAIT_MS ? f->timeout_ms : STREAM_CREATE_WAIT_MS;
}

int deja__fleet_stream(deja_fleet *f, const char *name, const char *subject, int kind)
{
    jsStreamInfo *si = NULL;
    jsStreamConfig c;
    jsErrCode jerr = 0;
    char subj[128];
    const char *subjects[1] = {subj};
    natsStatus s;

    /* A cluster that just started elects its JetStream leader first: wait
     * for it up to the timeout. */
    for (int64_t waited = 0;; waited += 250) {
        jerr = 0;
        s = js_GetStreamInfo(&si, f->js, name, NULL, &jerr);
        if (s == NATS_OK) {
            jsStreamInfo_Destroy(si);
            return 0;
        }
        if (s == NATS_NOT_FOUND || waited >= f->timeout_ms ||
            (s != NATS_TIMEOUT && s != NATS_NO_RESPONDERS && jerr != JSClusterNotAvailErr))
            break;
        nats_Sleep(250);
    }
    if (s != NATS_NOT_FOUND)
        return deja__fleet_error(f, s, jerr, "looking up the stream");
    snprintf(subj, sizeof subj, "%s.>", subject);
    jsStreamConfig_Init(&c);
    c.Name = name;
    c.Subjects = subjects;
    c.SubjectsLen = 1;
    c.Storage = js_FileStorage;
    c.Replicas = f->replicas;
    c.Duplicates = DUPLICATE_WINDOW_NS;
    if (kind == DEJA__STREAM_WORKQUEUE) {
        c.Retention = js_WorkQueuePolicy;
    } else if (kind == DEJA__STREAM_RECENT) {
        c.Retention = js_LimitsPolicy;
        c.MaxAge = (int64_t)3600 * 1000000000;
    } else {
        c.Retention = js_LimitsPolicy;
        c.MaxMsgsPerSubject = 1;
        c.Discard = js_DiscardNew;
        c.DiscardNewPerSubject = true;
        c.AllowDirect = true;
    }
    /* A cluster that is still forming has no room yet for the replicas
     * ("no suitable peers for placement" until its nodes have met): that,
     * like a leader being elected, is worth waiting for, a while longer
     * than one request's timeout. */
    for (int64_t waited = 0;; waited += 250) {
        jerr = 0;
        si = NULL;
        s = js_AddStream(&si, f->js, &c, NULL, &jerr);
        jsStreamInfo_Destroy(si);
        if (s == NATS_OK || jerr == JSStreamNameExistErr || waited >= create_wait_ms(f) ||
            (s != NATS_TIMEOUT && jerr != JSClusterNotAvailErr && jerr != JSInsufficientResourcesErr &&
             jerr != JSStreamCreateErr && jerr != JSClusterNoPeersErr))
            break;
        nats_Sleep(250);
    }
    if (s != NATS_OK && jerr != JSStreamNameExistErr)
        return deja__fleet_error(f, s, jerr, "creating the stream");
    return 0;
}

int deja_fleet_connect(deja_fleet **out, const deja_fleet_options *opts)
{
    deja_fleet *f = NULL;
    jsOptions jo;
    char *copy = NULL, *urls[MAX_SERVERS], *owned[MAX_SERVERS] = {0};
    const char *user, *password, *token, *creds;
    int n = 0, rc, counted = 0;
    natsStatus s;

    *out = NULL;
    if (opts == NULL || opts->version != DEJA_FLEET_OPTIONS_VERSION || opts->servers == NULL)
        return deja__error_set(DEJA_EINVAL, "fleet: bad options (no servers given?)");
    f = calloc(1, sizeof *f);
    copy = strdup(opts->servers);
    if (f == NULL || copy == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->acked_cond, NULL);
    f->shown = servers_shown(opts->servers);
    f->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    f->replicas = opts->replicas ? (int)opts->replicas : 1;
    if (f->shown == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    rc = split_servers(copy, urls, &n, owned);
    if (rc != 0)
        goto cleanup;
    atomic_fetch_add(&open_fleets, 1);
    counted = 1;
    user = opts->user ? opts->user : getenv("NATS_USER");
    password = opts->password ? opts->password : getenv("NATS_PASSWORD");
    token = opts->token ? opts->token : getenv("NATS_TOKEN");
    creds = opts->creds ? opts->creds : getenv("NATS_CREDS");
    s = natsOptions_Create(&f->opts);
    if (s == NATS_OK)
        s = natsOptions_SetServers(f->opts, (const char **)urls, n);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(f->opts, f->timeout_ms);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(f->opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(f->opts, 100);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(f->opts, on_async_error, NULL);
    if (s == NATS_OK && user != NULL && user[0] != '\0')
        s = natsOptions_SetUserInfo(f->opts, user, password ? password : "");
    if (s == NATS_OK && token != NULL && token[0] != '\0')
        s = natsOptions_SetToken(f->opts, token);
    if (s == NATS_OK && creds != NULL && creds[0] != '\0')
        s = natsOptions_SetUserCredentialsFromFiles(f->opts, creds, NULL);
    if (s != NATS_OK) {
        rc = deja__fleet_error(f, s, 0, "options");
        goto cleanup;
    }
    s = natsConnection_Connect(&f->nc, f->opts);
    if (s != NATS_OK) {
        rc = deja__fleet_error(f, s, 0, "connecting");
        goto cleanup;
    }
    f->max_payload = natsConnection_GetMaxPayload(f->nc);
    jsOptions_Init(&jo);
    jo.Wait = f->timeout_ms;
    jo.PublishAsync.MaxPending = 4096;
    /* A full window waits for room rather than failing at once. */
    jo.PublishAsync.StallWait = f->timeout_ms;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = f;
    s = natsConnection_JetStream(&f->js, f->nc, &jo);
    if (s != NATS_OK) {
        rc = deja__fleet_error(f, s, 0, "JetStream");
        goto cleanup;
    }
    rc = deja__fleet_stream(f, DEJA__FLEET_TRACES, DEJA__FLEET_TRACES_SUBJECT, DEJA__STREAM_ONCE);
    if (rc == 0)
        rc = deja__fleet_stream(f, DEJA__FLEET_OBJECTS, DEJA__FLEET_OBJECTS_SUBJECT,
                                DEJA__STREAM_ONCE);

cleanup:
    for (int i = 0; i < MAX_SERVERS; i++)
        free(owned[i]);
    free(copy);
    if (rc != 0) {
        if (f != NULL && !counted)
            atomic_fetch_add(&open_fleets, 1);
        deja_fleet_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void deja_fleet_close(deja_fleet *f)
{
    if (f == NULL)
        return;
    jsCtx_Destroy(f->js);
    natsConnection_Destroy(f->nc);
    natsOptions_Destroy(f->opts);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->acked_cond);
    free(f->shown);
    free(f);
    if (atomic_fetch_sub(&open_fleets, 1) == 1)
        nats_CloseAndWait(2000);
}

void deja__fleet_acks_reset(deja_fleet *f)
{
    pthread_mutex_lock(&f->lock);
    f->acked = f->present = f->failed = 0;
    f->permanent = 0;
    f->err[0] = '\0';
    pthread_mutex_unlock(&f->lock);
}

int deja__fleet_msg(deja_fleet *f, const char *subject, const char *msg_id, const void *data,
                    size_t size, natsMsg **msg)
{
    natsMsg *m = NULL;
    natsStatus s;

    *msg = NULL;
    if ((int64_t)size > f->max_payload)
        return deja__error_set(DEJA_EINVAL,
                               "fleet %s: a message of %zu bytes is beyond the server's "
                               "max_payload of %lld",
                               f->shown, size, (long long)f->max_payload);
    s = natsMsg_Create(&m, subject, NULL, data, (int)size);
    if (s == NATS_OK && msg_id != NULL)
        s = natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id);
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        return deja__error_set(DEJA_ENOMEM, "fleet: cannot make a message: %s",
                               natsStatus_GetText(s));
    }
    *msg = m;
    return 0;
}

int deja__fleet_send_msg(deja_fleet *f, natsMsg **msg)
{
    natsStatus s = js_PublishMsgAsync(f->js, msg, NULL);

    if (s != NATS_OK)
        return deja__error_set(DEJA_EIO, "fleet %s: publishing: %s", f->shown,
                               natsStatus_GetText(s));
    return 0;
}

int deja__fleet_send(deja_fleet *f, const char *subject, const char *msg_id, const void *data,
                     size_t size)
{
    natsMsg *m = NULL;
    int rc = deja__fleet_msg(f, subject, msg_id, data, size, &m);

    if (rc == 0)
        rc = deja__fleet_send_msg(f, &m);
    natsMsg_Destroy(m);
    return rc;
}

int deja__fleet_publish(deja_fleet *f, const char *subject, const char *msg_id, const void *data,
                        size_t size)
{
    int rc = deja__fleet_send(f, subject, msg_id, data, size);

    if (rc == DEJA_EIO) {
        pthread_mutex_lock(&f->lock);
        f->failed++;
        if (f->err[0] == '\0')
            snprintf(f->err, sizeof f->err, "%s", deja_error_last());
        pthread_mutex_unlock(&f->lock);
        return 0;
    }
    return rc;
}

void deja__fleet_acks_forget(deja_fleet *f)
{
    natsMsgList pending = {0};

    if (js_PublishAsyncGetPendingList(&pending, f->js) == NATS_OK)
        natsMsgList_Destroy(&pending);
}

int deja__fleet_acks_wait(deja_fleet *f, int *transient)
{
    jsPubOptions po;
    natsStatus s;
    char err[300];
    uint64_t failed;

    *transient = 0;
    jsPubOptions_Init(&po);
    po.MaxWait = f->timeout_ms;
    s = js_PublishAsyncComplete(f->js, &po);
    if (s != NATS_OK) {
        /* Take back what was never acknowledged: it is sent again. */
        deja__fleet_acks_forget(f);
        *transient = 1;
        return deja__fleet_error(f, s, 0, "waiting for acknowledgements");
    }
    pthread_mutex_lock(&f->lock);
    failed = f->failed;
    *transient = !f->permanent;
    snprintf(err, sizeof err, "%s", f->err);
    pthread_mutex_unlock(&f->lock);
    if (failed > 0)
        return deja__error_set(DEJA_EIO, "fleet %s: %llu messages refused: %s", f->shown,
                               (unsigned long long)failed, err);
    return 0;
}

int deja__fleet_get(deja_fleet *f, const char *stream, const char *subject, natsMsg **msg)
{
    jsDirectGetMsgOptions o;
    natsStatus s;

    *msg = NULL;
    jsDirectGetMsgOptions_Init(&o);
    o.LastBySubject = subject;
    s = js_DirectGetMsg(msg, f->js, stream, NULL, &o);
    if (s == NATS_NOT_FOUND)
        return DEJA_ENOTFOUND;
    if (s != NATS_OK)
        return deja__fleet_error(f, s, 0, subject);
    return 0;
}
