/*
 * fleet/fleet_internal.h -- what the files of fleet/ share: the connection
 * to NATS JetStream, acknowledged publishing, content-addressed objects,
 * subjects, and a set of digests.
 *
 * Room fleet/: shipping to and pulling from NATS JetStream (libnats). It
 * calls core/, proto/ (proto/codec.h), store/ (store/store.h) and the
 * public API; cli/ calls it through include/deja.h.
 */
#ifndef DEJA_FLEET_FLEET_INTERNAL_H
#define DEJA_FLEET_FLEET_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "core/core.h"
#include "deja.h"

/* The streams deja uses and their subjects. */
#define DEJA__FLEET_TRACES "DEJA_TRACES"
#define DEJA__FLEET_TRACES_SUBJECT "deja.traces"
#define DEJA__FLEET_OBJECTS "DEJA_OBJECTS"
#define DEJA__FLEET_OBJECTS_SUBJECT "deja.obj"

/* Object kinds, the token after deja.obj. */
#define DEJA__OBJ_BLOB 'b'
#define DEJA__OBJ_CHUNK 'c'
#define DEJA__OBJ_ENV 'e'

/* The first byte of a blob object: the whole payload follows, or its chunk
 * list (u64le total size, u32le count, then count x (u32le size, digest)). */
#define DEJA__BLOB_WHOLE 'P'
#define DEJA__BLOB_CHUNKS 'C'
#define DEJA__BLOB_LIST_HEAD 13
#define DEJA__BLOB_LIST_ENTRY 20

/* The longest escaped model name or version token, and subject. */
#define DEJA__FLEET_TOKEN_MAX 768
#define DEJA__FLEET_SUBJECT_MAX 1700

struct deja_fleet {
    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
    char *shown; /* the servers as given, without user information */
    int64_t timeout_ms;
    int64_t max_payload;
    int replicas;

    /* Acknowledgements of asynchronous publishes (from libnats' thread). */
    pthread_mutex_t lock;
    uint64_t acked, present, failed;
    int permanent;  /* a failure that sending again cannot fix */
    char err[300]; /* the first failure's text */
};

/* Build "deja.traces.<model>.<version>.<ID>" into `out` (`cap` bytes). */
int deja__fleet_trace_subject(const char *model, const char *version, const deja_id *id,
                              char *out, size_t cap);

/* Escape a model name or version as one subject token: [A-Za-z0-9_-] kept,
 * every other byte %XX, the empty string "%". Returns 0, or DEJA_EINVAL
 * when it does not fit in `cap`. */
int deja__fleet_token(const char *name, char *out, size_t cap);

/* The subject of object `kind` with digest `d`. */
void deja__fleet_obj_subject(char kind, const deja_digest *d, char out[64]);

/* Create a stream if it does not exist: subjects `subject`.>, one message
 * per subject (a second is refused, so a message is stored once), or, with
 * `workqueue`, a work-queue stream. */
int deja__fleet_stream(deja_fleet *f, const char *name, const char *subject, int workqueue);

/* Map a libnats failure to DEJA_EIO with a message "fleet SERVERS: what:
 * why", the server's text when there is one. */
int deja__fleet_error(deja_fleet *f, natsStatus s, jsErrCode jerr, const char *what);

/* Acknowledged publishing. Reset the counters, publish any number of
 * messages asynchronously (deja__fleet_publish takes `msg`), then wait for
 * every acknowledgement: 0 when all were stored (or already held), else
 * DEJA_EIO with the first failure; `*transient` says whether sending again
 * may succeed. */
void deja__fleet_acks_reset(deja_fleet *f);
int deja__fleet_publish(deja_fleet *f, const char *subject, const char *msg_id, const void *data,
                        size_t size);
int deja__fleet_acks_wait(deja_fleet *f, int *transient);

/* Fetch the last message on `subject` of `stream` (a direct get): 0 and
 * `*msg` (destroy with natsMsg_Destroy), DEJA_ENOTFOUND when there is none,
 * or DEJA_EIO. */
int deja__fleet_get(deja_fleet *f, const char *stream, const char *subject, natsMsg **msg);

/* Fetch, check and return the payload of blob `d` (malloc'd, free() it),
 * reassembled from its chunks when it has them. DEJA_ENOTFOUND when the
 * fleet lacks it, DEJA_ECORRUPT when what is stored fails its digest. */
int deja__fleet_blob_fetch(deja_fleet *f, const deja_digest *d, void **data, size_t *size,
                           uint64_t *bytes);

/* A set of 16-byte keys (digests or ids). Zero-initialise; free with
 * deja__kset_free. */
typedef struct deja__kset {
    uint8_t *keys; /* cap x 16, all zero for an empty slot */
    size_t n, cap;
    int has_zero;
} deja__kset;

int deja__kset_has(const deja__kset *s, const uint8_t key[16]);
int deja__kset_add(deja__kset *s, const uint8_t key[16]);
void deja__kset_clear(deja__kset *s);
void deja__kset_free(deja__kset *s);

/* Whether a decoded trace passes `f` (limit not applied). */
int deja__fleet_match(const deja_trace *t, const deja_filter *f);

#endif /* DEJA_FLEET_FLEET_INTERNAL_H */
