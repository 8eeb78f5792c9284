/*
 * fleet/ship.c -- `deja ship`: copy a store's traces to JetStream, in id
 * order from the last acknowledged position, with every blob, chunk and
 * environment they reference.
 *
 * A batch goes out in three acknowledged phases, so that the stream never
 * holds a trace whose objects are missing: (1) chunks, whole blobs and
 * environments, (2) the chunk lists of chunked blobs, (3) the traces. Then
 * the position (the batch's last id) is saved in the store's meta. A ship
 * killed anywhere sends again at most the batch it was in, which the
 * streams refuse as already held (one message per subject).
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
#define RETRY_FOR_NS ((int64_t)30 * 1000000000)
#define SHIPPED_MAX ((size_t)1 << 20)
#define PRESENCE_CHECK_MIN ((size_t)256 << 10)

typedef struct blob_ref {
    deja_digest d;
    uint8_t *data; /* read from the store, owned */
    size_t size;
} blob_ref;

typedef struct item {
    deja_id id;
    int64_t end_ns; /* start + duration, for the lag */
    deja__buf enc;  /* the Trace message as stored */
    char subject[DEJA__FLEET_SUBJECT_MAX];
    int match;
} item;

typedef struct shipper {
    deja_fleet *f;
    deja_store *store;
    const deja_ship_options *o;
    deja_ship_stats *st;
    char key[512]; /* of the position in meta */
    deja_id *ids;
    size_t nids, cap_ids;
    item *items;
    size_t nitems;
    blob_ref *blobs;
    size_t nblobs, cap_blobs;
    deja_digest *envs;
    size_t nenvs, cap_envs;
    deja__buf *lists; /* phase 2: chunk lists, one per chunked blob */
    deja_digest *list_digests;
    size_t nlists;
    deja__kset seen;    /* objects of this batch */
    deja__kset known;   /* objects acknowledged in this call */
    deja__kset shipped; /* traces acknowledged in this call */
    deja__buf msg;
    deja__peek pk; /* the summary of the record being read */
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

static int collect_id(const deja_id *id, void *payload)
{
    shipper *s = payload;

    if (deja__kset_has(&s->shipped, id->bytes))
        return 0;
    s->ids[s->nids++] = *id;
    return s->nids == s->cap_ids ? 1 : 0;
}

/* Note blob `d` of a trace of the batch for phase 1, read from the store
 * unless this batch or an earlier one has it already. */
static int note_blob(shipper *s, const deja_digest *d)
{
    void *data = NULL;
    size_t size = 0;
    int rc;

    if (deja__kset_has(&s->seen, d->bytes) || deja__kset_has(&s->known, d->bytes))
        return 0;
    rc = deja__kset_add(&s->seen, d->bytes);
    if (rc != 0)
        return rc;
    if (s->nblobs == s->cap_blobs) {
        size_t cap = s->cap_blobs ? s->cap_blobs * 2 : 64;
        blob_ref *b = realloc(s->blobs, cap * sizeof *b);

        if (b == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        s->blobs = b;
        s->cap_blobs = cap;
    }
    rc = deja__store_blob_get(s->store, d, &data, &size);
    if (rc != 0) {
        char hex[33];

        deja_digest_format(d, hex);
        return rc == DEJA_ENOTFOUND
                   ? deja__error_set(DEJA_ECORRUPT, "blob %s is missing", hex)
                   : rc;
    }
    s->blobs[s->nblobs++] = (blob_ref){*d, data, size};
    return 0;
}

static int note_env(shipper *s, const deja_digest *d)
{
    int rc;

    if (deja__kset_has(&s->seen, d->bytes) || deja__kset_has(&s->known, d->bytes))
        return 0;
    rc = deja__kset_add(&s->seen, d->bytes);
    if (rc != 0)
        return rc;
    if (s->nenvs == s->cap_envs) {
        size_t cap = s->cap_envs ? s->cap_envs * 2 : 8;
        deja_digest *e = realloc(s->envs, cap * sizeof *e);

        if (e == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        s->envs = e;
        s->cap_envs = cap;
    }
    s->envs[s->nenvs++] = *d;
    return 0;
}

static void batch_free(shipper *s)
{
    for (size_t i = 0; i < s->nitems; i++)
        deja__buf_free(&s->items[i].enc);
    for (size_t i = 0; i < s->nblobs; i++)
        free(s->blobs[i].data);
    free(s->items);
    s->items = NULL;
    s->nitems = 0;
    for (size_t i = 0; i < s->nlists; i++)
        deja__buf_free(&s->lists[i]);
    free(s->lists);
    free(s->list_digests);
    s->lists = NULL;
    s->list_digests = NULL;
    s->nlists = 0;
    s->nblobs = s->nenvs = 0;
    deja__kset_clear(&s->seen);
}

/* deja__store_traces_raw callback: keep the record of trace `i` as it is
 * (the message to publish), and note from its summary the subject, the
 * environment and the blobs it references. */
static int read_one(size_t i, const uint8_t *data, size_t size, void *payload)
{
    shipper *s = payload;
    item *it = &s->items[i];
    const deja_trace *t = &s->pk.t;
    char text[DEJA_ID_STRLEN + 1];
    int rc = 0;

    it->id = s->ids[i];
    if (deja__trace_peek(data, size, &s->pk) != 0 || memcmp(t->id.bytes, it->id.bytes, 16) != 0)
        rc = deja__error_set(DEJA_ECORRUPT, "record is not a valid Trace of this id");
    if (rc == 0) {
        it->end_ns = t->start_ns + t->duration_ns;
        it->match = deja__fleet_match(t, s->o->filter);
        if (!it->match)
            return 0;
        rc = deja__buf_append(&it->enc, data, size);
    }
    for (int side = 0; side < 2 && rc == 0; side++) {
        const size_t n = side == DEJA_INPUT ? t->ninputs : t->noutputs;

        for (size_t k = 0; k < n && rc == 0; k++) {
            const uint8_t *b = deja__peek_blob(&s->pk, (deja_side)side, k);
            deja_digest d;

            if (b == NULL)
                continue;
            memcpy(d.bytes, b, 16);
            rc = note_blob(s, &d);
        }
    }
    if (rc == 0 && t->has_env)
        rc = note_env(s, &t->env);
    if (rc == 0)
        rc = deja__fleet_trace_subject(t->model_name, t->model_version, &t->id, it->subject,
                                       sizeof it->subject);
    if (rc != 0) {
        deja_id_format(&it->id, text);
        return deja__error_wrap(rc, "trace %s: ", text);
    }
    return 0;
}

/* Read the batch's traces: their records as stored, with the blobs and
 * environments they reference. */
static int batch_read(shipper *s)
{
    s->items = calloc(s->nids, sizeof *s->items);
    if (s->items == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    s->nitems = s->nids;
    return deja__store_traces_raw(s->store, s->ids, s->nids, read_one, s);
}

/* Publish one object of kind `kind` under digest `d`. */
static int put_object(shipper *s, char kind, const deja_digest *d, const void *data, size_t size)
{
    char subject[64];

    deja__fleet_obj_subject(kind, d, subject);
    s->st->bytes += size;
    return deja__fleet_publish(s->f, subject, subject + sizeof DEJA__FLEET_OBJECTS_SUBJECT, data,
                               size);
}

static void le(uint8_t *p, uint64_t x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

/* Phase 1 for one chunked blob: its chunks (unless the fleet holds the
 * blob already), and its chunk list kept for phase 2. */
static int put_chunked(shipper *s, const blob_ref *b)
{
    char subject[64];
    natsMsg *m = NULL;
    deja__buf list = {0};
    uint8_t head[DEJA__BLOB_LIST_HEAD], entry[DEJA__BLOB_LIST_ENTRY];
    size_t off = 0, count = 0;
    int rc;

    /* Asking costs a round trip: worth it only when the chunks to skip are
     * many; smaller blobs are sent and refused if held. */
    if (b->size >= PRESENCE_CHECK_MIN) {
        deja__fleet_obj_subject(DEJA__OBJ_BLOB, &b->d, subject);
        rc = deja__fleet_get(s->f, DEJA__FLEET_OBJECTS, subject, &m);
        natsMsg_Destroy(m);
        if (rc == 0) {
            s->st->objects_skipped++;
            return deja__kset_add(&s->known, b->d.bytes);
        }
        if (rc != DEJA_ENOTFOUND)
            return rc;
    }
    head[0] = DEJA__BLOB_CHUNKS;
    le(head + 1, b->size, 8);
    rc = deja__buf_append(&list, head, sizeof head);
    while (rc == 0 && off < b->size) {
        const size_t n = deja__store_cut(b->data + off, b->size - off);
        const deja_digest c = deja_digest_of(b->data + off, n);

        le(entry, n, 4);
        memcpy(entry + 4, c.bytes, 16);
        rc = deja__buf_append(&list, entry, sizeof entry);
        if (rc == 0 && !deja__kset_has(&s->seen, c.bytes) && !deja__kset_has(&s->known, c.bytes)) {
            rc = deja__kset_add(&s->seen, c.bytes);
            if (rc == 0)
                rc = put_object(s, DEJA__OBJ_CHUNK, &c, b->data + off, n);
        }
        off += n;
        count++;
    }
    if (rc == 0) {
        le(list.data + 9, count, 4);
        s->lists[s->nlists] = list;
        s->list_digests[s->nlists++] = b->d;
        return 0;
    }
    deja__buf_free(&list);
    return rc;
}

static int phase_objects(shipper *s)
{
    deja_env *env = NULL;
    deja__buf enc = {0};
    int rc = 0;

    s->lists = calloc(s->nblobs + 1, sizeof *s->lists);
    s->list_digests = calloc(s->nblobs + 1, sizeof *s->list_digests);
    if (s->lists == NULL || s->list_digests == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < s->nblobs; i++) {
        const blob_ref *b = &s->blobs[i];

        if (deja__store_cut(b->data, b->size) < b->size) {
            rc = put_chunked(s, b);
            continue;
        }
        s->msg.size = 0;
        rc = deja__buf_append(&s->msg, (const uint8_t[]){DEJA__BLOB_WHOLE}, 1);
        if (rc == 0)
            rc = deja__buf_append(&s->msg, b->data, b->size);
        if (rc == 0)
            rc = put_object(s, DEJA__OBJ_BLOB, &b->d, s->msg.data, s->msg.size);
    }
    for (size_t i = 0; rc == 0 && i < s->nenvs; i++) {
        deja_digest got;

        rc = deja_store_env_get(s->store, &s->envs[i], &env);
        if (rc == 0)
            rc = deja__env_encode(env, &enc);
        deja_env_free(env);
        env = NULL;
        if (rc != 0)
            break;
        got = deja_digest_of(enc.data, enc.size);
        if (memcmp(got.bytes, s->envs[i].bytes, 16) != 0) {
            char hex[33];

            deja_digest_format(&s->envs[i], hex);
            rc = deja__error_set(DEJA_ECORRUPT, "environment %s does not match its digest", hex);
            break;
        }
        rc = put_object(s, DEJA__OBJ_ENV, &s->envs[i], enc.data, enc.size);
    }
    deja__buf_free(&enc);
    return rc;
}

/* Wait for a phase's acknowledgements and count them as objects or traces. */
static int phase_wait(shipper *s, int traces, int *transient)
{
    int rc = deja__fleet_acks_wait(s->f, transient);

    if (rc == 0) {
        pthread_mutex_lock(&s->f->lock);
        if (traces) {
            s->st->traces += s->f->acked;
            s->st->traces_present += s->f->present;
        } else {
            s->st->objects += s->f->acked;
            s->st->objects_present += s->f->present;
        }
        pthread_mutex_unlock(&s->f->lock);
    }
    return rc;
}

/* Send the batch read into `s`: the three phases. */
static int batch_send(shipper *s, int *transient)
{
    char text[DEJA_ID_STRLEN + 1];
    int rc;

    *transient = 0;
    deja__fleet_acks_reset(s->f);
    rc = phase_objects(s);
    if (rc == 0)
        rc = phase_wait(s, 0, transient);
    if (rc != 0)
        return rc;
    deja__fleet_acks_reset(s->f);
    for (size_t i = 0; rc == 0 && i < s->nlists; i++)
        rc = put_object(s, DEJA__OBJ_BLOB, &s->list_digests[i], s->lists[i].data,
                        s->lists[i].size);
    if (rc == 0)
        rc = phase_wait(s, 0, transient);
    if (rc != 0)
        return rc;
    deja__fleet_acks_reset(s->f);
    for (size_t i = 0; rc == 0 && i < s->nitems; i++) {
        const item *it = &s->items[i];

        if (!it->match)
            continue;
        deja_id_format(&it->id, text);
        s->st->bytes += it->enc.size;
        rc = deja__fleet_publish(s->f, it->subject, text, it->enc.data, it->enc.size);
    }
    if (rc == 0)
        rc = phase_wait(s, 1, transient);
    return rc;
}

/* Mark the batch acknowledged: objects known, ids shipped, lag, position. */
static int batch_done(shipper *s, deja_id *pos)
{
    const int64_t now = deja__now_ns();
    int64_t lag = 0;
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < s->nblobs; i++)
        rc = deja__kset_add(&s->known, s->blobs[i].d.bytes);
    for (size_t i = 0; rc == 0 && i < s->nenvs; i++)
        rc = deja__kset_add(&s->known, s->envs[i].bytes);
    if (s->known.n > SHIPPED_MAX)
        deja__kset_clear(&s->known);
    if (s->shipped.n + s->nitems > SHIPPED_MAX)
        deja__kset_clear(&s->shipped);
    for (size_t i = 0; rc == 0 && i < s->nitems; i++) {
        const item *it = &s->items[i];

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
    if (memcmp(s->ids[s->nids - 1].bytes, pos->bytes, 16) > 0) {
        *pos = s->ids[s->nids - 1];
        rc = deja__store_meta_put(s->store, s->key, pos->bytes, 16);
    }
    s->st->position = *pos;
    return rc;
}

/* Read and send the batch of ids in `s`, again while it fails for a
 * transient reason (a node lost, a leader being elected), up to
 * RETRY_FOR_NS. */
static int batch_ship(shipper *s)
{
    int64_t first_try = 0;
    int rc, transient = 0;

    for (;;) {
        rc = batch_read(s);
        if (rc == 0)
            rc = batch_send(s, &transient);
        /* A lookup that got no answer (a direct get while a leader is being
         * elected) is as transient as a missing acknowledgement. */
        if (rc == DEJA_EIO && !s->f->permanent)
            transient = 1;
        if (rc == 0 || !transient)
            return rc;
        if (first_try == 0)
            first_try = deja__now_ns();
        else if (deja__now_ns() - first_try > RETRY_FOR_NS)
            return rc;
        batch_free(s);
        sleep_ms(250);
    }
}

int deja__fleet_ship_ids(deja_fleet *f, deja_store *store, const deja_id *ids, size_t n)
{
    static const deja_ship_options o = DEJA_SHIP_OPTIONS_INIT;
    deja_ship_stats st;
    shipper s;
    int rc = 0;

    memset(&s, 0, sizeof s);
    memset(&st, 0, sizeof st);
    s.f = f;
    s.store = store;
    s.o = &o;
    s.st = &st;
    s.cap_ids = DEFAULT_BATCH;
    s.ids = calloc(s.cap_ids, sizeof *s.ids);
    if (s.ids == NULL)
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
    for (size_t done = 0; rc == 0 && done < n; done += s.nids) {
        s.nids = n - done < s.cap_ids ? n - done : s.cap_ids;
        memcpy(s.ids, ids + done, s.nids * sizeof *ids);
        rc = batch_ship(&s);
        for (size_t i = 0; rc == 0 && i < s.nblobs; i++)
            rc = deja__kset_add(&s.known, s.blobs[i].d.bytes);
        for (size_t i = 0; rc == 0 && i < s.nenvs; i++)
            rc = deja__kset_add(&s.known, s.envs[i].bytes);
        batch_free(&s);
    }
    batch_free(&s);
    free(s.blobs);
    free(s.envs);
    free(s.ids);
    deja__kset_free(&s.seen);
    deja__kset_free(&s.known);
    deja__kset_free(&s.shipped);
    deja__buf_free(&s.msg);
    deja__peek_free(&s.pk);
    return rc;
}

/* The id `settle_ms` before `pos` (all zero when that is before 1970). */
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

int deja_fleet_ship(deja_fleet *f, deja_store *store, const deja_ship_options *opts,
                    deja_ship_stats *out)
{
    static const deja_ship_options defaults = DEJA_SHIP_OPTIONS_INIT;
    deja_ship_options o = opts != NULL ? *opts : defaults;
    deja_ship_stats st;
    shipper s;
    deja__buf saved = {0};
    deja_id pos, cursor;
    int found = 0, rc, have_cursor;

    memset(&s, 0, sizeof s);
    memset(&st, 0, sizeof st);
    memset(&pos, 0, sizeof pos);
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
    position_key(f, o.filter, s.key, sizeof s.key);
    s.cap_ids = o.batch;
    s.ids = calloc(o.batch, sizeof *s.ids);
    if (s.ids == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    rc = deja__store_meta_get(store, s.key, &saved, &found);
    if (rc != 0)
        goto cleanup;
    if (found && saved.size == 16)
        memcpy(pos.bytes, saved.data, 16);
    st.position = pos;
    have_cursor = found && saved.size == 16;
    cursor = rewind_id(&pos, o.settle_ms);
    for (;;) {
        s.nids = 0;
        rc = deja__store_ids_after(store, have_cursor ? &cursor : NULL, (size_t)-1, collect_id, &s);
        if (rc == 1)
            rc = 0;
        if (rc != 0)
            goto cleanup;
        if (s.nids == 0) {
            if (!o.follow)
                break;
            st.lag_ns = 0;
            st.rounds++;
            if (o.progress != NULL && o.progress(&st, o.payload) != 0)
                break;
            sleep_ms(o.poll_ms);
            cursor = rewind_id(&pos, o.settle_ms);
            have_cursor = 1;
            continue;
        }
        rc = batch_ship(&s);
        if (rc == 0)
            rc = batch_done(&s, &pos);
        cursor = s.ids[s.nids - 1];
        have_cursor = 1;
        batch_free(&s);
        if (rc != 0)
            goto cleanup;
        if (o.progress != NULL && o.progress(&st, o.payload) != 0)
            break;
    }
    rc = 0;

cleanup:
    batch_free(&s);
    free(s.blobs);
    free(s.envs);
    free(s.ids);
    deja__kset_free(&s.seen);
    deja__kset_free(&s.known);
    deja__kset_free(&s.shipped);
    deja__buf_free(&s.msg);
    deja__peek_free(&s.pk);
    deja__buf_free(&saved);
    if (out != NULL)
        *out = st;
    return rc;
}
