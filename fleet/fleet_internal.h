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
    pthread_cond_t acked_cond; /* for ack_fn to wake a waiting thread */
    uint64_t acked, present, failed;
    int permanent;  /* a failure that sending again cannot fix */
    char err[300]; /* the first failure's text */
    /* Optional: told of each acknowledgement, under `lock`, with the message
     * published (ship's window, the worker's results in flight). */
    void (*ack_fn)(void *payload, natsMsg *msg, int outcome, int permanent, const char *why);
    void *ack_payload;
};

/* The outcomes given to deja_fleet.ack_fn. */
enum { DEJA__ACK_STORED, DEJA__ACK_PRESENT, DEJA__ACK_REFUSED };

/* Build "deja.traces.<model>.<version>.<ID>" into `out` (`cap` bytes). */
int deja__fleet_trace_subject(const char *model, const char *version, const deja_id *id,
                              char *out, size_t cap);

/* Escape a model name or version as one subject token: [A-Za-z0-9_-] kept,
 * every other byte %XX, the empty string "%". Returns 0, or DEJA_EINVAL
 * when it does not fit in `cap`. */
int deja__fleet_token(const char *name, char *out, size_t cap);

/* The subject of object `kind` with digest `d`. */
void deja__fleet_obj_subject(char kind, const deja_digest *d, char out[64]);

/* Create a stream if it does not exist, with subjects `subject`.> and of
 * one kind: one message per subject (a second is refused, so a message is
 * stored once), a work queue (a message goes when acknowledged), or recent
 * messages (kept an hour). */
enum { DEJA__STREAM_ONCE, DEJA__STREAM_WORKQUEUE, DEJA__STREAM_RECENT };
int deja__fleet_stream(deja_fleet *f, const char *name, const char *subject, int kind);

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

/* Publish one message asynchronously without counting it: 0, or the
 * error (DEJA_EINVAL beyond max_payload, DEJA_EIO) when it could not be
 * handed to libnats (then no acknowledgement will come for it). Its
 * acknowledgement goes to the counters and to f->ack_fn. */
int deja__fleet_send(deja_fleet *f, const char *subject, const char *msg_id, const void *data,
                     size_t size);

/* The same in two steps: make the message (0, DEJA_EINVAL beyond
 * max_payload, DEJA_ENOMEM), then publish it (taking it: *msg becomes NULL
 * once handed over). */
int deja__fleet_msg(deja_fleet *f, const char *subject, const char *msg_id, const void *data,
                    size_t size, natsMsg **msg);
int deja__fleet_send_msg(deja_fleet *f, natsMsg **msg);

/* Give up waiting for the acknowledgements still outstanding (after a
 * timeout): libnats forgets them, so they no longer hold back publishing. */
void deja__fleet_acks_forget(deja_fleet *f);

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

/* The chunks of a payload (fleet/cuts.c): each one's size and digest, in
 * order. Zero-initialise; free(c). */
typedef struct deja__cut {
    uint32_t size;
    uint8_t digest[16];
} deja__cut;

typedef struct deja__cuts {
    deja__cut *c;
    size_t n, cap;
} deja__cuts;

/* What deja__cuts_of remembers of the payloads it cut (bounded).
 * Zero-initialise; free with deja__cutmemo_free. */
typedef struct deja__cutmemo {
    void *slots;
    size_t held;     /* chunks remembered in all */
    uint64_t reused; /* chunks taken from a remembered payload, not cut */
} deja__cutmemo;

/* Cut the `size` bytes at `data` the way the store does into `out`
 * (replaced), reusing the cuts of a remembered payload that holds the same
 * bytes up to them, and remember these: the result is the one a full cut
 * gives (one chunk: the payload stays whole). 0 or DEJA_ENOMEM. */
int deja__cuts_of(deja__cutmemo *m, const uint8_t *data, size_t size, deja__cuts *out);
void deja__cutmemo_clear(deja__cutmemo *m);
void deja__cutmemo_free(deja__cutmemo *m);

/* Whether a decoded trace passes `f` (limit not applied). */
int deja__fleet_match(const deja_trace *t, const deja_filter *f);

/* Distributed replay (fleet/replay.c, fleet/worker.c, fleet/wire.c). */
#define DEJA__FLEET_JOBS "DEJA_JOBS"
#define DEJA__FLEET_JOBS_SUBJECT "deja.jobs"
#define DEJA__FLEET_RESULTS "DEJA_RESULTS"
#define DEJA__FLEET_RESULTS_SUBJECT "deja.results"
#define DEJA__FLEET_WORKERS "deja-workers" /* the workers' shared durable consumer */

/* One replay job: trace `index` of a run, to be read from `trace_subject`
 * of DEJA_TRACES, replayed on `spec` with `opts`, its result published to
 * `reply`. Unpacked strings are owned by the job (deja__job_free). */
typedef struct deja__job {
    uint64_t index;
    const char *spec;
    const char *trace_subject;
    const char *reply;
    deja_replay_options opts;
    /* The trace's record (the Trace message as shipped), so that a worker
     * needs no round trip to fetch it; absent (NULL, 0) in jobs of older
     * coordinators. Unpacked, it points into the job's message. */
    const uint8_t *trace;
    size_t trace_size;
    char **owned;
    size_t nowned;
} deja__job;

int deja__job_pack(const deja__job *j, deja__buf *out);
int deja__job_unpack(const void *data, size_t size, deja__job *j);
void deja__job_free(deja__job *j);

/* A replay result as it travels: everything of deja_replay_result but the
 * recorded trace, index and env_first (the coordinator knows those), and
 * the one-trace summary's trouble and name_mismatch counts. */
typedef struct deja__wire_result {
    deja_replay_result result;
    deja_diff diff;
    size_t trouble, name_mismatch;
    deja_tensor_diff *tensors;
    char **owned;
    size_t nowned;
} deja__wire_result;

int deja__result_pack(const deja_replay_result *r, const deja_replay_summary *s, deja__buf *out);
int deja__result_unpack(const void *data, size_t size, deja__wire_result *w);
void deja__wire_result_free(deja__wire_result *w);

/* Ship the `n` traces `ids` of `store` (no position kept): what replay
 * --via does before enqueuing their jobs. */
int deja__fleet_ship_ids(deja_fleet *f, deja_store *store, const deja_id *ids, size_t n);

/* For a worker, which replays traces from memory: take the traces stored
 * under the `n` `subjects` of DEJA_TRACES, each decoded, checked and with
 * its blobs attached, into `traces[i]` (the caller's, deja_trace_free; not
 * stored), and its outcome into `rcs[i]` (0, or the code, DEJA_EIO being
 * the fleet's trouble; `traces[i]` is NULL then). A trace whose message
 * came with its job (`datas[i]`, `sizes[i]`; `datas` may be NULL) is taken
 * from there, checked like a fetched one, instead of being fetched. The
 * blobs and environments the traces reference that `store` (the worker's
 * cache) lacks are fetched into it, in one transaction. Returns 0 or
 * DEJA_ENOMEM. */
int deja__fleet_pull_traces(deja_fleet *f, deja_store *store, const char *const *subjects,
                            const uint8_t *const *datas, const size_t *sizes, size_t n,
                            deja_trace **traces, int *rcs);

#endif /* DEJA_FLEET_FLEET_INTERNAL_H */
