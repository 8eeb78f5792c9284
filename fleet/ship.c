/*
 * fleet/ship.c -- `deja ship`: copy a store's traces to JetStream, in id
 * order from the last acknowledged position, with every blob, chunk and
 * environment they reference.
 *
 * A batch goes out in three acknowledged stages, so that the stream never
 * holds a trace whose objects are missing: (1) chunks, whole blobs and
 * environments, (2) the chunk lists of chunked blobs, (3) the traces. Then
 * the position (the batch's last id) is saved in the store's meta.
 *
 * Batches are pipelined: up to WINDOW of them are in flight at once, so the
 * next batch is read and its objects published while the acknowledgements
 * of the earlier ones are still coming (the server's queue never drains
 * between batches). Each message's acknowledgement is matched to its batch
 * by its subject (libnats hands the published message to the ack handler,
 * fleet/conn.c). The rules that keep the guarantee:
 *   - a batch leaves stage 1 only when its own objects are acknowledged
 *     and every earlier batch is in stage 3 or done (an object shared with
 *     an earlier batch is published by that batch only);
 *   - batches retire strictly in order: the position is saved for batch k
 *     only once it and every batch before it had every message
 *     acknowledged.
 * A ship killed anywhere therefore sends again at most the batches of its
 * window, which the streams refuse as already held (one message per
 * subject; a trace also carries its id as Nats-Msg-Id). An object needs
 * no message id: its subject names its content, and the stream keeps the
 * first message of a subject and refuses any other, so the server keeps
 * no de-duplication entry per object. A failure (a refused message, no acknowledgement
 * for the timeout) drops the whole window and starts again after the last
 * retired batch, for up to RETRY_FOR_NS.
 *
 * Traces commit in roughly, not exactly, id order (an id is stamped when a
 * span begins; a long span commits late), so each run, and each poll of
 * --follow, looks again `settle_ms` behind the position. Ids this call
 * shipped already are remembered and skipped without being read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet/fleet_internal.h"
#include "proto/codec.h"
#include "store/store.h"

#define DEFAULT_BATCH 256
#define DEFAULT_POLL_MS 200
#define DEFAULT_SETTLE_MS 60000
#define WINDOW 8 /* batches in flight */
#define RETRY_FOR_NS ((int64_t)30 * 1000000000)
#define SHIPPED_MAX ((size_t)1 << 20)
#define PRESENCE_CHECK_MIN ((size_t)256 << 10)
#define WAIT_SLICE_NS ((int64_t)50 * 1000000)

enum { STAGE_OBJECTS, STAGE_LISTS, STAGE_TRACES, STAGE_DONE };

typedef struct blob_ref {
    deja_digest d;
    uint8_t *data; /* read from the store, owned */
    size_t size;
} blob_ref;

typedef struct item {
    deja_id id;
    int64_t end_ns; /* start + duration, for the lag */
    natsMsg *msg;   /* the Trace message as stored, to publish (NULL once handed over) */
    size_t size;
    char subject[DEJA__FLEET_SUBJECT_MAX];
    char text[DEJA_ID_STRLEN + 1]; /* the id, the message id */
    int match;
} item;

/* One message of a stage. */
typedef struct outmsg {
    const char *subject; /* NULL: osubj */
    const char *msg_id;  /* NULL: none (an object) */
    const void *data;
    size_t size;
    item *item; /* a trace: its message made already */
    uint8_t acked; /* under f->lock */
    char osubj[64];
} outmsg;

/* A message's subject digest and index + 1 (0: an empty slot), to find
 * it by subject. */
typedef struct keyed {
    deja_digest key;
    uint32_t index1;
} keyed;

/* The messages of the stage a batch is in, and their acknowledgements
 * (the fields after `by_key` under f->lock). */
typedef struct stage_msgs {
    outmsg *m;
    size_t n, cap;
    size_t nslots;    /* of by_key: a power of two, at least 2n */
    keyed *by_key;    /* open addressing */
    size_t outstanding;
    uint64_t acked, present, failed;
    int permanent;
    char err[300];
} stage_msgs;

typedef struct batch {
    deja_id *ids;
    size_t nids;
    deja_id from; /* where its ids were collected after (have_from) */
    int have_from;
    size_t from_index; /* ship_ids: the first id's index */
    item *items;
    size_t nitems;
    blob_ref *blobs;
    size_t nblobs, cap_blobs;
    deja_digest *envs;
    size_t nenvs, cap_envs;
    deja__buf *bodies; /* owned message bodies: whole blobs, environments */
    size_t nbodies, cap_bodies;
    deja__buf *lists; /* stage 2: chunk lists, one per chunked blob */
    deja_digest *list_digests;
    size_t nlists;
    int stage;
    stage_msgs sm;
} batch;

typedef struct shipper {
    deja_fleet *f;
    deja_store *store;
    const deja_ship_options *o;
    deja_ship_stats *st;
    int keep_position;
    char key[512]; /* of the position in meta */
    size_t batch_size;
    /* Where the next batch comes from: the store after `cursor`, or the
     * array `given` from `next_index`. */
    const deja_id *given;
    size_t ngiven, next_index;
    deja_id cursor;
    int have_cursor;
    batch *collecting; /* collect_id's target */
    batch *win[WINDOW]; /* oldest first; the array under f->lock */
    size_t nwin;
    int64_t last_event_ns; /* the last acknowledgement or stage start (f->lock) */
    uint64_t events;       /* acknowledgements matched (f->lock) */
    deja__kset seen;    /* objects noted by the batches of the window */
    deja__kset known;   /* objects acknowledged in this call */
    deja__kset shipped; /* traces acknowledged in this call */
    deja__peek pk; /* the summary of the record being read */
    deja__cutmemo memo; /* the chunks of the blobs cut so far */
    deja__cuts cuts;    /* plan_chunked's */
} shipper;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* The meta key of the position: the servers and a digest of the filter, so
 * that another destination or selection starts from its own position. */
static void position_key(const deja_fleet *f, const deja_filter *flt, char *out, size_t cap)
{
    deja__buf sig = {0};
    char num[64], hex[33] = "all";

    if (flt != NULL) {
        snprintf(num, sizeof num, "%lld|%lld|%d|", (long long)flt->since_ns,
                 (long long)flt->until_ns, flt->status);
        deja__buf_append(&sig, flt->model ? flt->model : "\1", strlen(flt->model ? flt->model : "\1") + 1);
        deja__buf_append(&sig, flt->model_version ? flt->model_version : "\1",
                         strlen(flt->model_version ? flt->model_version : "\1") + 1);
        deja__buf_append(&sig, num, strlen(num));
        for (size_t i = 0; i < flt->ntags; i++) {
            deja__buf_append(&sig, flt->tags[i].key, strlen(flt->tags[i].key) + 1);
            deja__buf_append(&sig, flt->tags[i].value, strlen(flt->tags[i].value) + 1);
        }
        if (sig.data != NULL) {
            deja_digest d = deja_digest_of(sig.data, sig.size);
            deja_digest_format(&d, hex);
        }
        deja__buf_free(&sig);
    }
    snprintf(out, cap, "fleet.ship/%.380s/%s", f->shown, hex);
}

static void batch_free(batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->nitems; i++)
        natsMsg_Destroy(b->items[i].msg);
    for (size_t i = 0; i < b->nblobs; i++)
        free(b->blobs[i].data);
    for (size_t i = 0; i < b->nbodies; i++)
        deja__buf_free(&b->bodies[i]);
    for (size_t i = 0; i < b->nlists; i++)
        deja__buf_free(&b->lists[i]);
    free(b->ids);
    free(b->items);
    free(b->blobs);
    free(b->envs);
    free(b->bodies);
    free(b->lists);
    free(b->list_digests);
    free(b->sm.m);
    free(b->sm.by_key);
    free(b);
}

/* ------------------------------------------------------------------------
 * Acknowledgements, matched to the batches of the window.
 * ---------------------------------------------------------------------- */

static int key_cmp(const deja_digest *a, const deja_digest *b)
{
    return memcmp(a->bytes, b->bytes, 16);
}

/* The first slot to look for key `k` in (the key is a digest: its bytes
 * are as good as a hash). */
static size_t key_slot(const deja_digest *k, size_t nslots)
{
    uint64_t h;

    memcpy(&h, k->bytes, 8);
    return (size_t)h & (nslots - 1);
}

/* f->ack_fn, under f->lock: mark the message acknowledged in the oldest
 * batch of the window that waits for it. Any acknowledgement of a subject
 * proves it stored (one message per subject), whichever send it answers. */
static void on_ack(void *payload, natsMsg *msg, int outcome, int permanent, const char *why)
{
    shipper *s = payload;
    const char *subject = natsMsg_GetSubject(msg);
    const deja_digest k = deja_digest_of(subject, strlen(subject));

    for (size_t w = 0; w < s->nwin; w++) {
        stage_msgs *sm = &s->win[w]->sm;

        for (size_t i = sm->nslots ? key_slot(&k, sm->nslots) : 0;
             sm->nslots > 0 && sm->by_key[i].index1 != 0; i = (i + 1) & (sm->nslots - 1)) {
            outmsg *m = &sm->m[sm->by_key[i].index1 - 1];

            if (key_cmp(&sm->by_key[i].key, &k) != 0)
                continue;
            if (m->acked)
                continue;
            m->acked = 1;
            sm->outstanding--;
            if (outcome == DEJA__ACK_REFUSED) {
                sm->failed++;
                sm->permanent |= permanent;
                if (sm->err[0] == '\0')
                    snprintf(sm->err, sizeof sm->err, "%s", why ? why : "refused");
            } else {
                sm->acked++;
                if (outcome == DEJA__ACK_PRESENT)
                    sm->present++;
            }
            s->last_event_ns = deja__now_ns();
            /* The main thread needs waking only when a stage is over. */
            if (sm->outstanding == 0 || outcome == DEJA__ACK_REFUSED) {
                s->events++;
                pthread_cond_broadcast(&s->f->acked_cond);
            }
            return;
        }
    }
}

/* ------------------------------------------------------------------------
 * Reading a batch.
 * ---------------------------------------------------------------------- */

static int collect_id(const deja_id *id, void *payload)
{
    shipper *s = payload;
    batch *b = s->collecting;

    if (deja__kset_has(&s->shipped, id->bytes))
        return 0;
    b->ids[b->nids++] = *id;
    return b->nids == s->batch_size ? 1 : 0;
}

/* Note blob `d` of a trace of batch `b` for stage 1, read from the store
 * unless a batch of the window or an acknowledged one has it already. */
static int note_blob(shipper *s, batch *b, const deja_digest *d)
{
    void *data = NULL;
    size_t size = 0;
    int rc;

    if (deja__kset_has(&s->seen, d->bytes) || deja__kset_has(&s->known, d->bytes))
        return 0;
    rc = deja__kset_add(&s->seen, d->bytes);
    if (rc != 0)
        return rc;
    if (b->nblobs == b->cap_blobs) {
        size_t cap = b->cap_blobs ? b->cap_blobs * 2 : 64;
        blob_ref *r = realloc(b->blobs, cap * sizeof *r);

        if (r == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        b->blobs = r;
        b->cap_blobs = cap;
    }
    rc = deja__store_blob_get(s->store, d, &data, &size);
    if (rc != 0) {
        char hex[33];

        deja_digest_format(d, hex);
        return rc == DEJA_ENOTFOUND
                   ? deja__error_set(DEJA_ECORRUPT, "blob %s is missing", hex)
                   : rc;
    }
    b->blobs[b->nblobs++] = (blob_ref){*d, data, size};
    return 0;
}

static int note_env(shipper *s, batch *b, const deja_digest *d)
{
    int rc;

    if (deja__kset_has(&s->seen, d->bytes) || deja__kset_has(&s->known, d->bytes))
        return 0;
    rc = deja__kset_add(&s->seen, d->bytes);
    if (rc != 0)
        return rc;
    if (b->nenvs == b->cap_envs) {
        size_t cap = b->cap_envs ? b->cap_envs * 2 : 8;
        deja_digest *e = realloc(b->envs, cap * sizeof *e);

        if (e == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        b->envs = e;
        b->cap_envs = cap;
    }
    b->envs[b->nenvs++] = *d;
    return 0;
}

/* deja__store_traces_raw callback: keep the record of trace `i` as it is
 * (the message to publish), and note from its summary the subject, the
 * environment and the blobs it references. */
static int read_one(size_t i, const uint8_t *data, size_t size, void *payload)
{
    shipper *s = payload;
    batch *b = s->collecting;
    item *it = &b->items[i];
    const deja_trace *t = &s->pk.t;
    int rc = 0;

    it->id = b->ids[i];
    deja_id_format(&it->id, it->text);
    if (deja__trace_peek(data, size, &s->pk) != 0 || memcmp(t->id.bytes, it->id.bytes, 16) != 0)
        rc = deja__error_set(DEJA_ECORRUPT, "record is not a valid Trace of this id");
    if (rc == 0) {
        it->end_ns = t->start_ns + t->duration_ns;
        it->match = deja__fleet_match(t, s->o->filter);
        if (!it->match)
            return 0;
        rc = deja__fleet_trace_subject(t->model_name, t->model_version, &t->id, it->subject,
                                       sizeof it->subject);
    }
    /* The message is made here, from the bytes as read: no copy kept. */
    if (rc == 0)
        rc = deja__fleet_msg(s->f, it->subject, it->text, data, size, &it->msg);
    it->size = size;
    for (int side = 0; side < 2 && rc == 0; side++) {
        const size_t n = side == DEJA_INPUT ? t->ninputs : t->noutputs;

        for (size_t k = 0; k < n && rc == 0; k++) {
            const uint8_t *p = deja__peek_blob(&s->pk, (deja_side)side, k);
            deja_digest d;

            if (p == NULL)
                continue;
            memcpy(d.bytes, p, 16);
            rc = note_blob(s, b, &d);
        }
    }
    if (rc == 0 && t->has_env)
        rc = note_env(s, b, &t->env);
    if (rc != 0)
        return deja__error_wrap(rc, "trace %s: ", it->text);
    return 0;
}

/* Take the next batch's ids from the source into `b`: none when there are
 * no more. */
static int batch_collect(shipper *s, batch *b)
{
    int rc = 0;

    b->from = s->cursor;
    b->have_from = s->have_cursor;
    b->from_index = s->next_index;
    if (s->given != NULL) {
        b->nids = s->ngiven - s->next_index < s->batch_size ? s->ngiven - s->next_index
                                                            : s->batch_size;
        memcpy(b->ids, s->given + s->next_index, b->nids * sizeof *b->ids);
        s->next_index += b->nids;
        return 0;
    }
    s->collecting = b;
    rc = deja__store_ids_after(s->store, s->have_cursor ? &s->cursor : NULL, (size_t)-1,
                               collect_id, s);
    if (rc == 1)
        rc = 0;
    if (rc == 0 && b->nids > 0) {
        s->cursor = b->ids[b->nids - 1];
        s->have_cursor = 1;
    }
    return rc;
}

/* Read the batch's traces: their records as stored, with the blobs and
 * environments they reference. */
static int batch_read(shipper *s, batch *b)
{
    /* Not zeroed whole: an item holds a subject's worth of bytes, most of
     * them never written. read_one sets the rest. */
    b->items = malloc(b->nids * sizeof *b->items);
    if (b->items == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    for (size_t i = 0; i < b->nids; i++) {
        b->items[i].msg = NULL;
        b->items[i].match = 0;
        b->items[i].size = 0;
        b->items[i].subject[0] = '\0';
    }
    b->nitems = b->nids;
    s->collecting = b;
    return deja__store_traces_raw(s->store, b->ids, b->nids, read_one, s);
}

/* ------------------------------------------------------------------------
 * The messages of each stage.
 * ---------------------------------------------------------------------- */

static outmsg *add_msg(stage_msgs *sm)
{
    if (sm->n == sm->cap) {
        size_t cap = sm->cap ? sm->cap * 2 : 64;
        outmsg *m = realloc(sm->m, cap * sizeof *m);

        if (m == NULL)
            return NULL;
        sm->m = m;
        sm->cap = cap;
    }
    memset(&sm->m[sm->n], 0, sizeof sm->m[sm->n]);
    return &sm->m[sm->n++];
}

/* Add object `kind` `d` to the stage's messages. */
static int add_object(stage_msgs *sm, char kind, const deja_digest *d, const void *data,
                      size_t size)
{
    outmsg *m = add_msg(sm);

    if (m == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    deja__fleet_obj_subject(kind, d, m->osubj);
    m->data = data;
    m->size = size;
    return 0;
}

/* A new owned body of batch `b`. */
static deja__buf *add_body(batch *b)
{
    if (b->nbodies == b->cap_bodies) {
        size_t cap = b->cap_bodies ? b->cap_bodies * 2 : 16;
        deja__buf *p = realloc(b->bodies, cap * sizeof *p);

        if (p == NULL)
            return NULL;
        b->bodies = p;
        b->cap_bodies = cap;
    }
    memset(&b->bodies[b->nbodies], 0, sizeof b->bodies[b->nbodies]);
    return &b->bodies[b->nbodies++];
}

static void le(uint8_t *p, uint64_t x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

/* Stage 1 for one chunked blob: its chunks (unless the fleet holds the
 * blob already), and its chunk list kept for stage 2. Its chunks are in
 * s->cuts already, unless it is big enough to ask the fleet first. */
static int plan_chunked(shipper *s, batch *b, stage_msgs *sm, const blob_ref *r)
{
    char subject[64];
    natsMsg *m = NULL;
    deja__buf list = {0};
    uint8_t head[DEJA__BLOB_LIST_HEAD], entry[DEJA__BLOB_LIST_ENTRY];
    size_t off = 0;
    int rc;

    /* Asking costs a round trip: worth it only when the chunks to skip are
     * many; smaller blobs are sent and refused if held. */
    if (r->size >= PRESENCE_CHECK_MIN) {
        deja__fleet_obj_subject(DEJA__OBJ_BLOB, &r->d, subject);
        rc = deja__fleet_get(s->f, DEJA__FLEET_OBJECTS, subject, &m);
        natsMsg_Destroy(m);
        if (rc == 0) {
            s->st->objects_skipped++;
            return deja__kset_add(&s->known, r->d.bytes);
        }
        if (rc != DEJA_ENOTFOUND)
            return rc;
        rc = deja__cuts_of(&s->memo, r->data, r->size, &s->cuts);
        if (rc != 0)
            return rc;
    }
    rc = 0;
    head[0] = DEJA__BLOB_CHUNKS;
    le(head + 1, r->size, 8);
    le(head + 9, s->cuts.n, 4);
    if (rc == 0)
        rc = deja__buf_reserve(&list, sizeof head + s->cuts.n * sizeof entry);
    if (rc == 0)
        rc = deja__buf_append(&list, head, sizeof head);
    for (size_t i = 0; rc == 0 && i < s->cuts.n; i++) {
        const deja__cut *c = &s->cuts.c[i];

        le(entry, c->size, 4);
        memcpy(entry + 4, c->digest, 16);
        rc = deja__buf_append(&list, entry, sizeof entry);
        if (rc == 0 && !deja__kset_has(&s->seen, c->digest) &&
            !deja__kset_has(&s->known, c->digest)) {
            deja_digest d;

            memcpy(d.bytes, c->digest, 16);
            rc = deja__kset_add(&s->seen, c->digest);
            if (rc == 0)
                rc = add_object(sm, DEJA__OBJ_CHUNK, &d, r->data + off, c->size);
        }
        off += c->size;
    }
    if (rc == 0) {
        b->lists[b->nlists] = list;
        b->list_digests[b->nlists++] = r->d;
        return 0;
    }
    deja__buf_free(&list);
    return rc;
}

/* The messages of stage 1: chunks, whole blobs, environments. */
static int plan_objects(shipper *s, batch *b, stage_msgs *sm)
{
    deja_env *env = NULL;
    int rc = 0;

    b->lists = calloc(b->nblobs + 1, sizeof *b->lists);
    b->list_digests = calloc(b->nblobs + 1, sizeof *b->list_digests);
    if (b->lists == NULL || b->list_digests == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < b->nblobs; i++) {
        blob_ref *r = &b->blobs[i];
        deja__buf *body;

        /* A blob of PRESENCE_CHECK_MIN is beyond one chunk: chunked. */
        if (r->size < PRESENCE_CHECK_MIN) {
            rc = deja__cuts_of(&s->memo, r->data, r->size, &s->cuts);
            if (rc != 0)
                break;
        }
        if (r->size >= PRESENCE_CHECK_MIN || s->cuts.n > 1) {
            rc = plan_chunked(s, b, sm, r);
            continue;
        }
        body = add_body(b);
        if (body == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        rc = deja__buf_reserve(body, r->size + 1);
        if (rc == 0)
            rc = deja__buf_append(body, (const uint8_t[]){DEJA__BLOB_WHOLE}, 1);
        if (rc == 0)
            rc = deja__buf_append(body, r->data, r->size);
        /* The body holds the bytes now. */
        free(r->data);
        r->data = NULL;
        if (rc == 0)
            rc = add_object(sm, DEJA__OBJ_BLOB, &r->d, body->data, body->size);
    }
    for (size_t i = 0; rc == 0 && i < b->nenvs; i++) {
        deja__buf *body = add_body(b);
        deja_digest got;

        if (body == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        rc = deja_store_env_get(s->store, &b->envs[i], &env);
        if (rc == 0)
            rc = deja__env_encode(env, body);
        deja_env_free(env);
        env = NULL;
        if (rc != 0)
            break;
        got = deja_digest_of(body->data, body->size);
        if (memcmp(got.bytes, b->envs[i].bytes, 16) != 0) {
            char hex[33];

            deja_digest_format(&b->envs[i], hex);
            rc = deja__error_set(DEJA_ECORRUPT, "environment %s does not match its digest", hex);
            break;
        }
        rc = add_object(sm, DEJA__OBJ_ENV, &b->envs[i], body->data, body->size);
    }
    return rc;
}

static int plan_lists(batch *b, stage_msgs *sm)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < b->nlists; i++)
        rc = add_object(sm, DEJA__OBJ_BLOB, &b->list_digests[i], b->lists[i].data,
                        b->lists[i].size);
    return rc;
}

static int plan_traces(batch *b, stage_msgs *sm)
{
    for (size_t i = 0; i < b->nitems; i++) {
        item *it = &b->items[i];
        outmsg *m;

        if (!it->match)
            continue;
        m = add_msg(sm);
        if (m == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        m->subject = it->subject;
        m->msg_id = it->text;
        m->item = it;
        m->size = it->size;
    }
    return 0;
}

/* Start the stage `b` is now in: plan its messages, make them known to the
 * acknowledgement handler (which reads b->sm under f->lock, so the new
 * stage is built aside and swapped in), then publish them. */
static int stage_start(shipper *s, batch *b)
{
    stage_msgs next, old;
    int rc;

    memset(&next, 0, sizeof next);
    rc = b->stage == STAGE_OBJECTS ? plan_objects(s, b, &next)
         : b->stage == STAGE_LISTS ? plan_lists(b, &next)
                                   : plan_traces(b, &next);
    for (next.nslots = next.n > 0 ? 4 : 0; next.nslots > 0 && next.nslots < 2 * next.n;)
        next.nslots *= 2;
    if (rc == 0 && next.n > 0 &&
        (next.by_key = calloc(next.nslots, sizeof *next.by_key)) == NULL)
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
    if (rc != 0) {
        free(next.m);
        return rc;
    }
    /* In index order: an acknowledgement finds the first of a subject's
     * messages still waiting. */
    for (size_t i = 0; i < next.n; i++) {
        const outmsg *m = &next.m[i];
        const char *subj = m->subject ? m->subject : m->osubj;
        const deja_digest k = deja_digest_of(subj, strlen(subj));
        size_t at = key_slot(&k, next.nslots);

        while (next.by_key[at].index1 != 0)
            at = (at + 1) & (next.nslots - 1);
        next.by_key[at].key = k;
        next.by_key[at].index1 = (uint32_t)i + 1;
    }
    next.outstanding = next.n;
    pthread_mutex_lock(&s->f->lock);
    old = b->sm;
    b->sm = next;
    s->last_event_ns = deja__now_ns();
    pthread_mutex_unlock(&s->f->lock);
    free(old.m);
    free(old.by_key);
    for (size_t i = 0; i < next.n; i++) {
        stage_msgs *sm = &b->sm;
        outmsg *m = &sm->m[i];
        const char *subj = m->subject ? m->subject : m->osubj;

        s->st->bytes += m->size;
        rc = m->item != NULL ? deja__fleet_send_msg(s->f, &m->item->msg)
                             : deja__fleet_send(s->f, subj, m->msg_id, m->data, m->size);
        if (rc == DEJA_EIO) {
            /* Not handed over: no acknowledgement will come for it. */
            pthread_mutex_lock(&s->f->lock);
            if (!m->acked) {
                m->acked = 1;
                sm->outstanding--;
                sm->failed++;
                if (sm->err[0] == '\0')
                    snprintf(sm->err, sizeof sm->err, "%s", deja_error_last());
            }
            pthread_mutex_unlock(&s->f->lock);
            rc = 0;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Count the acknowledged stage `b` just finished. */
static void stage_count(shipper *s, const batch *b)
{
    if (b->stage == STAGE_TRACES) {
        s->st->traces += b->sm.acked;
        s->st->traces_present += b->sm.present;
    } else {
        s->st->objects += b->sm.acked;
        s->st->objects_present += b->sm.present;
    }
}

/* ------------------------------------------------------------------------
 * The window.
 * ---------------------------------------------------------------------- */

/* Retire the oldest batch, all acknowledged: objects known, ids shipped,
 * lag, position. */
static int batch_done(shipper *s, batch *b)
{
    const int64_t now = deja__now_ns();
    int64_t lag = 0;
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < b->nblobs; i++)
        rc = deja__kset_add(&s->known, b->blobs[i].d.bytes);
    for (size_t i = 0; rc == 0 && i < b->nenvs; i++)
        rc = deja__kset_add(&s->known, b->envs[i].bytes);
    if (s->known.n > SHIPPED_MAX)
        deja__kset_clear(&s->known);
    if (s->seen.n > SHIPPED_MAX)
        deja__kset_clear(&s->seen); /* at worst, sent again and refused as held */
    if (s->shipped.n + b->nitems > SHIPPED_MAX)
        deja__kset_clear(&s->shipped);
    for (size_t i = 0; rc == 0 && i < b->nitems; i++) {
        const item *it = &b->items[i];

        rc = deja__kset_add(&s->shipped, it->id.bytes);
        if (!it->match) {
            s->st->filtered++;
            continue;
        }
        if (now - it->end_ns > lag)
            lag = now - it->end_ns;
    }
    if (rc != 0)
        return rc;
    s->st->lag_ns = lag;
    s->st->rounds++;
    if (s->keep_position && memcmp(b->ids[b->nids - 1].bytes, s->st->position.bytes, 16) > 0) {
        s->st->position = b->ids[b->nids - 1];
        rc = deja__store_meta_put(s->store, s->key, s->st->position.bytes, 16);
    }
    return rc;
}

/* Drop every batch of the window (after a failure), and go back to where
 * the oldest was collected. */
static void window_drop(shipper *s)
{
    batch *gone[WINDOW];
    size_t n;

    pthread_mutex_lock(&s->f->lock);
    n = s->nwin;
    memcpy(gone, s->win, n * sizeof *gone);
    s->nwin = 0;
    pthread_mutex_unlock(&s->f->lock);
    if (n > 0) {
        s->cursor = gone[0]->from;
        s->have_cursor = gone[0]->have_from;
        s->next_index = gone[0]->from_index;
    }
    for (size_t i = 0; i < n; i++)
        batch_free(gone[i]);
    deja__kset_clear(&s->seen);
}

/* Read the next batch into the window and publish its objects: 0 with
 * `*added` 0 when the source has no more. */
static int window_fill(shipper *s, int *added)
{
    batch *b = calloc(1, sizeof *b);
    int rc;

    *added = 0;
    if (b == NULL || (b->ids = calloc(s->batch_size, sizeof *b->ids)) == NULL) {
        batch_free(b);
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    }
    rc = batch_collect(s, b);
    if (rc != 0 || b->nids == 0) {
        batch_free(b);
        return rc;
    }
    rc = batch_read(s, b);
    if (rc == 0) {
        b->stage = STAGE_OBJECTS;
        pthread_mutex_lock(&s->f->lock);
        s->win[s->nwin++] = b;
        pthread_mutex_unlock(&s->f->lock);
        *added = 1;
        rc = stage_start(s, b);
    } else {
        /* Not in the window: collected again after the retry. */
        s->cursor = b->from;
        s->have_cursor = b->have_from;
        s->next_index = b->from_index;
        batch_free(b);
    }
    return rc;
}

/* Move the batches of the window on as far as their acknowledgements
 * allow, and retire the finished ones in order. `*moved` says whether
 * anything happened; a failed stage returns DEJA_EIO with `*transient`. */
static int window_advance(shipper *s, int *moved, int *transient)
{
    int rc = 0;

    *moved = 0;
    for (size_t w = 0; rc == 0 && w < s->nwin; w++) {
        batch *b = s->win[w];

        for (;;) {
            size_t outstanding;
            uint64_t failed;

            pthread_mutex_lock(&s->f->lock);
            outstanding = b->sm.outstanding;
            failed = b->sm.failed;
            if (failed > 0) {
                *transient = !b->sm.permanent;
                rc = deja__error_set(DEJA_EIO, "fleet %s: %llu messages refused: %s",
                                     s->f->shown, (unsigned long long)failed, b->sm.err);
            }
            pthread_mutex_unlock(&s->f->lock);
            if (rc != 0 || outstanding > 0 || b->stage == STAGE_DONE)
                break;
            /* Objects a later batch depends on may be an earlier one's. */
            if (b->stage == STAGE_OBJECTS && w > 0 && s->win[w - 1]->stage < STAGE_TRACES)
                break;
            stage_count(s, b);
            b->stage++;
            *moved = 1;
            if (b->stage == STAGE_DONE)
                break;
            rc = stage_start(s, b);
            if (rc != 0) {
                *transient = rc == DEJA_EIO && !s->f->permanent;
                break;
            }
        }
    }
    while (rc == 0 && s->nwin > 0 && s->win[0]->stage == STAGE_DONE) {
        batch *b = s->win[0];

        pthread_mutex_lock(&s->f->lock);
        memmove(s->win, s->win + 1, (s->nwin - 1) * sizeof *s->win);
        s->nwin--;
        pthread_mutex_unlock(&s->f->lock);
        rc = batch_done(s, b);
        batch_free(b);
        *moved = 1;
        *transient = 0;
        if (rc == 0 && s->o->progress != NULL && s->o->progress(s->st, s->o->payload) != 0)
            rc = 1; /* told to stop */
    }
    return rc;
}

/* Wait a little for an acknowledgement, unless one came since `seen`.
 * DEJA_EIO when messages are outstanding and none was acknowledged for the
 * fleet's timeout. */
static int window_wait(shipper *s, uint64_t seen)
{
    struct timespec ts;
    int64_t now;
    int rc = 0;

    pthread_mutex_lock(&s->f->lock);
    if (s->events == seen) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)WAIT_SLICE_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->f->acked_cond, &s->f->lock, &ts);
    }
    now = deja__now_ns();
    if (s->events == seen && s->nwin > 0 &&
        now - s->last_event_ns > s->f->timeout_ms * (int64_t)1000000)
        rc = DEJA_EIO;
    pthread_mutex_unlock(&s->f->lock);
    if (rc != 0) {
        deja__fleet_acks_forget(s->f);
        return deja__fleet_error(s->f, NATS_TIMEOUT, 0, "waiting for acknowledgements");
    }
    return 0;
}

/* The rewind of `pos` by `settle_ms` (all zero when that is before 1970). */
static deja_id rewind_id(const deja_id *pos, unsigned settle_ms)
{
    deja_id r;
    int64_t ms = deja_id_time_ms(pos) - (int64_t)settle_ms;

    memset(&r, 0, sizeof r);
    if (ms < 0)
        ms = 0;
    for (int i = 0; i < 6; i++)
        r.bytes[i] = (uint8_t)((uint64_t)ms >> (8 * (5 - i)));
    return r;
}

/* Ship from the source until it has no more (or, with follow, until told
 * to stop), WINDOW batches in flight. */
static int pipeline(shipper *s)
{
    int64_t first_fail = 0;
    int rc = 0, exhausted = 0, stopping = 0;

    deja__fleet_acks_reset(s->f);
    pthread_mutex_lock(&s->f->lock);
    s->f->ack_fn = on_ack;
    s->f->ack_payload = s;
    pthread_mutex_unlock(&s->f->lock);
    for (;;) {
        uint64_t seen;
        int moved = 0, added = 0, transient = 0;

        pthread_mutex_lock(&s->f->lock);
        seen = s->events;
        pthread_mutex_unlock(&s->f->lock);
        rc = window_advance(s, &moved, &transient);
        if (rc == 1) {
            stopping = 1;
            rc = 0;
        }
        if (moved && rc == 0)
            first_fail = 0;
        if (rc == 0 && !stopping && !exhausted && s->nwin < WINDOW) {
            rc = window_fill(s, &added);
            if (rc != 0)
                transient = rc == DEJA_EIO && !s->f->permanent;
            else if (!added)
                exhausted = 1;
        }
        if (rc == 0 && s->nwin == 0 && (exhausted || stopping)) {
            if (stopping || !s->o->follow)
                break;
            s->st->lag_ns = 0;
            s->st->rounds++;
            if (s->o->progress != NULL && s->o->progress(s->st, s->o->payload) != 0)
                break;
            sleep_ms(s->o->poll_ms);
            s->cursor = rewind_id(&s->st->position, s->o->settle_ms);
            s->have_cursor = 1;
            exhausted = 0;
            continue;
        }
        if (rc == 0 && !moved && !added) {
            rc = window_wait(s, seen);
            transient = 1;
        }
        if (rc == 0)
            continue;
        /* A failure: a transient one is tried again from the oldest batch
         * of the window, for up to RETRY_FOR_NS. */
        if (!transient)
            break;
        if (first_fail == 0)
            first_fail = deja__now_ns();
        else if (deja__now_ns() - first_fail > RETRY_FOR_NS)
            break;
        window_drop(s);
        exhausted = 0;
        rc = 0;
        sleep_ms(250);
    }
    window_drop(s);
    pthread_mutex_lock(&s->f->lock);
    s->f->ack_fn = NULL;
    s->f->ack_payload = NULL;
    pthread_mutex_unlock(&s->f->lock);
    return rc;
}

static void shipper_free(shipper *s)
{
    deja__kset_free(&s->seen);
    deja__kset_free(&s->known);
    deja__kset_free(&s->shipped);
    deja__peek_free(&s->pk);
    deja__cutmemo_free(&s->memo);
    free(s->cuts.c);
}

int deja__fleet_ship_ids(deja_fleet *f, deja_store *store, const deja_id *ids, size_t n)
{
    static const deja_ship_options o = DEJA_SHIP_OPTIONS_INIT;
    deja_ship_stats st;
    shipper s;
    int rc;

    memset(&s, 0, sizeof s);
    memset(&st, 0, sizeof st);
    s.f = f;
    s.store = store;
    s.o = &o;
    s.st = &st;
    s.batch_size = DEFAULT_BATCH;
    s.given = ids;
    s.ngiven = n;
    rc = pipeline(&s);
    shipper_free(&s);
    return rc;
}

int deja_fleet_ship(deja_fleet *f, deja_store *store, const deja_ship_options *opts,
                    deja_ship_stats *out)
{
    static const deja_ship_options defaults = DEJA_SHIP_OPTIONS_INIT;
    deja_ship_options o = opts != NULL ? *opts : defaults;
    deja_ship_stats st;
    shipper s;
    deja__buf saved = {0};
    int found = 0, rc;

    memset(&s, 0, sizeof s);
    memset(&st, 0, sizeof st);
    if (o.version != DEJA_SHIP_OPTIONS_VERSION)
        return deja__error_set(DEJA_EINVAL, "ship: unknown options version %u", o.version);
    if (o.batch == 0)
        o.batch = DEFAULT_BATCH;
    if (o.poll_ms == 0)
        o.poll_ms = DEFAULT_POLL_MS;
    if (o.settle_ms == 0)
        o.settle_ms = DEFAULT_SETTLE_MS;
    s.f = f;
    s.store = store;
    s.o = &o;
    s.st = &st;
    s.keep_position = 1;
    s.batch_size = o.batch;
    position_key(f, o.filter, s.key, sizeof s.key);
    rc = deja__store_meta_get(store, s.key, &saved, &found);
    if (rc != 0)
        goto cleanup;
    if (found && saved.size == 16) {
        memcpy(st.position.bytes, saved.data, 16);
        s.cursor = rewind_id(&st.position, o.settle_ms);
        s.have_cursor = 1;
    }
    rc = pipeline(&s);

cleanup:
    shipper_free(&s);
    deja__buf_free(&saved);
    if (out != NULL)
        *out = st;
    return rc;
}
