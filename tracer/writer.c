/*
 * tracer/writer.c -- the writer thread: pops ended spans in batches, applies
 * redaction, and commits each batch in one store write transaction together
 * with this process's environment (once) and the tracer's counters. The CPU
 * work of a batch (encoding and compressing each trace) is done before the
 * transaction, spread over the writer and a few helper threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tracer/tracer_internal.h"

/* What one store write puts: trace views, maybe the environment, and the
 * counter deltas. Read-only inside fill, so that fill can be rerun. */
typedef struct fill_args {
    const deja_trace *views;
    const deja__prepared *preps; /* one per view, or NULL: not prepared */
    size_t nviews;
    const deja_env *env; /* NULL: no trace to write */
    const deja_digest *env_digest;
    uint64_t dropped, sampled_out, redacted;
    uint64_t sample_counts[DEJA__SAMPLE_NCOUNTERS]; /* deltas of the sampling decisions */
    const deja__repeat *repeats; /* repeats counted by dedup */
    size_t nrepeats;
    const deja__lost_delta *lost; /* losses per model version */
    size_t nlost;
    deja_tracer *tracer; /* for map trims between traces (trim_between) */
    int statm_fd;
} fill_args;

static void map_trim_maybe(deja_tracer *t, int statm_fd, int in_txn);

/* The fill callback of deja__store_write(): puts every trace, the
 * environment and the counters. Repeatable; returns the first error. */
static int fill(deja__wtxn *w, void *payload)
{
    const fill_args *a = payload;
    int rc = 0;
    for (size_t i = 0; i < a->nviews; i++) {
        rc = a->preps != NULL ? deja__wtxn_put_prepared(w, &a->views[i], &a->preps[i], NULL)
                              : deja__wtxn_put_trace(w, &a->views[i], NULL);
        if (rc != 0)
            goto cleanup;
#if DEJA__TRIM_EVERY != 0
        if (a->tracer != NULL && (i + 1) % DEJA__TRIM_EVERY == 0)
            map_trim_maybe(a->tracer, a->statm_fd, 1);
#endif
    }
    /* Every write that holds traces makes sure their environment is there:
     * a gc between two batches may have deleted it while no committed trace
     * referred to it yet (a lookup per batch, the record only when absent). */
    if (a->env != NULL && (rc = deja__wtxn_ensure_env(w, a->env, a->env_digest)) != 0)
        goto cleanup;
    if (a->dropped != 0 || a->sampled_out != 0 || a->redacted != 0)
        rc = deja__wtxn_count(w, a->dropped, a->sampled_out, a->redacted);
    for (int i = 0; rc == 0 && i < DEJA__SAMPLE_NCOUNTERS; i++)
        rc = deja__wtxn_count_add(w, deja__sample_counter_name(i), a->sample_counts[i]);
    for (size_t i = 0; rc == 0 && i < a->nrepeats; i++)
        rc = deja__wtxn_repeats_add(w, &a->repeats[i].id, a->repeats[i].count);
    if (rc == 0)
        rc = deja__lost_put(w, a->lost, a->nlost);
cleanup:
    return rc;
}

/* A deja_trace view of an ended span: pointers into its arena. */
void deja__span_view(const deja_tracer *t, const deja_span *s, deja_trace *v)
{
    memset(v, 0, sizeof *v);
    v->id = s->id;
    v->start_ns = s->start_ns;
    v->duration_ns = s->duration_ns;
    v->model_name = s->model_name;
    v->model_version = s->model_version;
    v->model_digest = s->model_digest_size != 0 ? s->model_digest : NULL;
    v->model_digest_size = s->model_digest_size;
    v->inputs = s->inputs;
    v->ninputs = s->ninputs;
    v->outputs = s->outputs;
    v->noutputs = s->noutputs;
    v->params = s->params;
    v->nparams = s->nparams;
    v->seeds = s->seeds;
    v->nseeds = s->nseeds;
    v->rng = s->rng;
    v->nrng = s->nrng;
    v->clock_ns = s->clock_ns;
    v->nclock = s->nclock;
    v->has_env = 1;
    v->env = t->env_digest;
    v->status = s->status;
    v->error = s->error != NULL ? s->error : "";
    v->tags = s->tags;
    v->ntags = s->ntags;
    v->has_parent = s->has_parent;
    v->parent = s->parent;
    v->has_model_config = s->has_model_config;
    v->model_plugin = s->model_plugin;
    v->model_config = s->model_config;
    v->output_kinds = s->kinds;
    v->noutput_kinds = s->nkinds;
    v->checkpoints = s->ckpts;
    v->ncheckpoints = s->nckpts;
    v->checkpoint_select = t->ckpt_select != NULL ? t->ckpt_select : "";
}

/* Run the redaction callback over the tensors of one side, compacting
 * away dropped tensors. Returns -1 when the whole trace must go, else 0. */
static int redact_side(const deja_tracer *t, deja_side side, deja_tensor *arr, size_t *n)
{
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        deja_tensor tt = arr[i];
        size_t size = tt.size;
        int r = t->opts.redact(side, tt.name, tt.dtype, (uint8_t *)(uintptr_t)tt.data, &size,
                               t->opts.redact_payload);
        if (r < 0)
            return -1;
        if (r == 1)
            continue;
        if (size < tt.size) {
            /* The arena always holds at least one shape slot. */
            const size_t esize = deja_dtype_size(tt.dtype);
            uint64_t *shape = (uint64_t *)(uintptr_t)tt.shape;
            tt.size = size - size % esize;
            tt.ndim = 1;
            shape[0] = tt.size / esize;
        }
        arr[k++] = tt;
    }
    *n = k;
    return 0;
}

/* Remember a store failure of `count` traces for the next flush. */
static void note_failure(deja_tracer *t, const deja_trace *views, uint64_t count)
{
    atomic_fetch_add(&t->failed, count);
    pthread_mutex_lock(&t->lock);
    t->failed_unreported += count;
    if (t->failed_ids == NULL)
        t->failed_ids = malloc(DEJA__FAILED_IDS_MAX * sizeof *t->failed_ids);
    for (uint64_t i = 0; t->failed_ids != NULL && i < count; i++)
        if (t->nfailed_ids < DEJA__FAILED_IDS_MAX)
            t->failed_ids[t->nfailed_ids++] = views[i].id;
    snprintf(t->writer_error, sizeof t->writer_error, "%s", deja_error_last());
    pthread_mutex_unlock(&t->lock);
}

/* Helper threads at most (besides the writer) preparing traces. */
#define PREP_THREADS_MAX 3

/* The preparers: the writer hands a batch of views to the helper threads,
 * prepares traces itself too (each thread takes the next index), and waits
 * until every helper is done with the batch. Each thread has its own
 * compression context. */
typedef struct prep_pool {
    deja_store *store;
    pthread_mutex_t lock;
    pthread_cond_t go;   /* helpers wait here for a new batch */
    pthread_cond_t idle; /* the writer waits here for the helpers */
    uint64_t gen;        /* batches handed out so far */
    int quit;
    const deja_trace *views;
    deja__prepared *preps;
    size_t n;
    _Atomic size_t next; /* the next index to prepare */
    size_t busy;         /* helpers not done with batch `gen` */
    pthread_t threads[PREP_THREADS_MAX];
    size_t nthreads;
    void *cctx; /* the writer's */
} prep_pool;

/* Prepare traces of the current batch until none is left. Without a
 * compression context the traces are marked unprepared (put_trace then
 * does the work inside the transaction). */
static void prep_work(prep_pool *pp, void *cctx)
{
    size_t i;

    while ((i = atomic_fetch_add(&pp->next, 1)) < pp->n) {
        if (cctx != NULL)
            deja__store_prepare_trace(pp->store, cctx, &pp->views[i], &pp->preps[i]);
        else
            pp->preps[i].rc = DEJA_ENOMEM;
    }
}

/* A helper thread: prepares its share of every batch until told to quit. */
static void *prep_main(void *arg)
{
    prep_pool *pp = arg;
    void *cctx = deja__cctx_new();
    uint64_t seen = 0;

    pthread_mutex_lock(&pp->lock);
    for (;;) {
        while (!pp->quit && pp->gen == seen)
            pthread_cond_wait(&pp->go, &pp->lock);
        if (pp->quit)
            break;
        seen = pp->gen;
        pthread_mutex_unlock(&pp->lock);
        prep_work(pp, cctx);
        pthread_mutex_lock(&pp->lock);
        if (--pp->busy == 0)
            pthread_cond_signal(&pp->idle);
    }
    pthread_mutex_unlock(&pp->lock);
    deja__cctx_free(cctx);
    return NULL;
}

/* Set up the pool: one helper per core beyond the first (at most
 * PREP_THREADS_MAX); none on one core. Returns 0, or -1 when even the
 * writer's own context cannot be had (traces are then not prepared). */
static int prep_start(prep_pool *pp, deja_store *store)
{
    const long ncores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = ncores > 1 ? (size_t)(ncores - 1) : 0;

    memset(pp, 0, sizeof *pp);
    pp->store = store;
    pp->cctx = deja__cctx_new();
    if (pp->cctx == NULL)
        return -1;
    pthread_mutex_init(&pp->lock, NULL);
    pthread_cond_init(&pp->go, NULL);
    pthread_cond_init(&pp->idle, NULL);
    if (want > PREP_THREADS_MAX)
        want = PREP_THREADS_MAX;
    while (pp->nthreads < want &&
           pthread_create(&pp->threads[pp->nthreads], NULL, prep_main, pp) == 0)
        pp->nthreads++;
    return 0;
}

/* Stop and join the helpers; free the writer's context. */
static void prep_stop(prep_pool *pp)
{
    pthread_mutex_lock(&pp->lock);
    pp->quit = 1;
    pthread_cond_broadcast(&pp->go);
    pthread_mutex_unlock(&pp->lock);
    for (size_t i = 0; i < pp->nthreads; i++)
        pthread_join(pp->threads[i], NULL);
    pthread_cond_destroy(&pp->idle);
    pthread_cond_destroy(&pp->go);
    pthread_mutex_destroy(&pp->lock);
    deja__cctx_free(pp->cctx);
}

/* Start preparing the `n` traces `views` into `preps` on the helpers;
 * prep_finish completes the work on the calling thread and waits. */
static void prep_begin(prep_pool *pp, const deja_trace *views, deja__prepared *preps, size_t n)
{
    pthread_mutex_lock(&pp->lock);
    pp->views = views;
    pp->preps = preps;
    pp->n = n;
    atomic_store(&pp->next, 0);
    if (n > 1 && pp->nthreads != 0) {
        pp->busy = pp->nthreads;
        pp->gen++;
        pthread_cond_broadcast(&pp->go);
    }
    pthread_mutex_unlock(&pp->lock);
}

/* Prepare what is left of the batch given to prep_begin on the calling
 * thread, then wait for the helpers: every trace is then prepared (or
 * marked unprepared). */
static void prep_finish(prep_pool *pp)
{
    prep_work(pp, pp->cctx);
    pthread_mutex_lock(&pp->lock);
    while (pp->busy != 0)
        pthread_cond_wait(&pp->idle, &pp->lock);
    pthread_mutex_unlock(&pp->lock);
}

/* Reported counter values: what the store has been told so far. */
typedef struct reported {
    uint64_t dropped, sampled_out, redacted;
    uint64_t sample_counts[DEJA__SAMPLE_NCOUNTERS];
} reported;

/* The repeats dedup counted, taken by the writer before a commit. */
typedef struct repeat_list {
    deja__repeat *items;
    size_t n, cap;
} repeat_list;

/* deja__sampler_take_repeats callback: append to a repeat_list (a repeat
 * that finds no memory is lost, never the trace). */
static void take_repeat(const deja_id *id, uint64_t count, void *payload)
{
    repeat_list *l = payload;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        deja__repeat *grown = realloc(l->items, cap * sizeof *grown);

        if (grown == NULL)
            return;
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = (deja__repeat){*id, count};
}

/* Whether any of the `n` counters is not 0. */
static int any(const uint64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0)
            return 1;
    return 0;
}

/* One batch of spans on its way to the store: popped, then staged
 * (redacted, turned into views, prepared), then committed. */
typedef struct slot {
    deja_span **batch;
    deja_trace *views;
    deja_tag **checked; /* per view: its tags with deja.invalid added, or NULL */
    deja__prepared *preps; /* NULL: not prepared (put_trace does the work) */
    size_t n, nv;
    int last; /* popped on stop with the queue drained: the writer's last */
} slot;

/* Rules a trace may be tagged with at most. */
#define CHECK_MAX 16

/* Apply the record-time check to view `i` of a staged batch: each rule
 * it names becomes a tag deja.invalid=RULE, in a tag array of the slot's
 * (the span is left alone). Never fails the trace: without memory the
 * tags are left out. */
static void check_view(const deja_tracer *t, slot *sl, size_t i)
{
    const char *failed[CHECK_MAX];
    deja_trace *v = &sl->views[i];
    size_t n;
    deja_tag *tags;

    if (sl->checked == NULL)
        return;
    n = t->opts.check(v, failed, CHECK_MAX, t->opts.check_payload);
    if (n == 0)
        return;
    if (n > CHECK_MAX)
        n = CHECK_MAX;
    tags = malloc((v->ntags + n) * sizeof *tags);
    if (tags == NULL)
        return;
    if (v->ntags != 0)
        memcpy(tags, v->tags, v->ntags * sizeof *tags);
    for (size_t k = 0; k < n; k++) {
        tags[v->ntags + k].key = DEJA_INVALID_TAG;
        tags[v->ntags + k].value = failed[k];
    }
    v->tags = tags;
    v->ntags += n;
    sl->checked[i] = tags;
}

/* Redact the spans of a popped batch, make their views, and start
 * preparing them on the helpers. */
static void stage(deja_tracer *t, slot *sl, prep_pool *pp)
{
    sl->nv = 0;
    for (size_t i = 0; i < sl->n; i++) {
        deja_span *s = sl->batch[i];
        if (t->opts.redact != NULL &&
            (redact_side(t, DEJA_INPUT, s->inputs, &s->ninputs) != 0 ||
             redact_side(t, DEJA_OUTPUT, s->outputs, &s->noutputs) != 0)) {
            atomic_fetch_add(&t->redacted, 1);
            continue;
        }
        deja__span_view(t, s, &sl->views[sl->nv++]);
        if (t->opts.check != NULL)
            check_view(t, sl, sl->nv - 1);
    }
    if (sl->preps != NULL && sl->nv != 0)
        prep_begin(pp, sl->views, sl->preps, sl->nv);
}


/* Bytes of file-backed memory mapped in this process (RssFile + RssShmem:
 * the "shared" field of /proc/self/statm, read through `fd`, opened once:
 * ~3 us a read where opening it each time costs ~30), or -1 when unknown. */
static int64_t rss_file_bytes(int fd)
{
    char buf[128];
    long long size, resident, shared;
    if (fd < 0)
        return -1;
    const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (sscanf(buf, "%lld %lld %lld", &size, &resident, &shared) != 3 || shared < 0)
        return -1;
    return (int64_t)shared * sysconf(_SC_PAGESIZE);
}

/* Give the store's mapped pages back once the process's file-backed RSS
 * has grown by DEJA__TRIM_BYTES since the last trim, checked after every
 * commit: each commit reads through the map the pages the commit before
 * wrote (LMDB copies a page before changing it), and each page touched
 * maps its neighbours with it (the kernel's fault-around: 64 KB), so that
 * a trim every 50 ms let 10-30 MB pile up between trims. Growth that is
 * not the store's (the program's own file maps) costs one needless trim,
 * then counts from the new level. Without /proc, trims every
 * DEJA__TRIM_MS. */
static void map_trim_maybe(deja_tracer *t, int statm_fd, int in_txn)
{
    const int64_t now = rss_file_bytes(statm_fd);
    if (now >= 0) {
        if (now - t->trimmed_rss < DEJA__TRIM_BYTES)
            return;
        if (!in_txn)
            (void)deja__store_map_trim(t->store);
        else if (deja__store_map_trim_known(t->store) != 0)
            return; /* not known yet: the commit's own trim learns it */
        t->trimmed_rss = rss_file_bytes(statm_fd);
        return;
    }
    if (in_txn)
        return;
    const struct timespec ts = deja__clock_after(CLOCK_MONOTONIC, 0);
    const int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (ms - t->trimmed_ms >= DEJA__TRIM_MS) {
        (void)deja__store_map_trim(t->store);
        t->trimmed_ms = ms;
    }
}

/* Commit a staged (and fully prepared) batch, recycle its spans and
 * advance committed_seq, which flushers wait on. A failed batch is
 * retried trace by trace so that one bad trace loses only itself. */
static void commit(deja_tracer *t, slot *sl, reported *rep, int statm_fd)
{
    const size_t nv = sl->nv;
    fill_args a = {sl->views, sl->preps, nv, t->env, &t->env_digest, 0, 0, 0, {0}, NULL, 0,
                   NULL, 0, t, statm_fd};
    deja__lost_delta lost[DEJA__LOST_SLOTS];
    reported now = {atomic_load(&t->dropped), atomic_load(&t->sampled_out),
                    atomic_load(&t->redacted), {0}};
    repeat_list repeats = {NULL, 0, 0};
    a.dropped = now.dropped - rep->dropped;
    a.sampled_out = now.sampled_out - rep->sampled_out;
    a.redacted = now.redacted - rep->redacted;
    for (int i = 0; i < DEJA__SAMPLE_NCOUNTERS; i++) {
        now.sample_counts[i] = atomic_load(&t->sample_counts[i]);
        a.sample_counts[i] = now.sample_counts[i] - rep->sample_counts[i];
    }
    deja__sampler_take_repeats(atomic_load(&t->sampler), take_repeat, &repeats);
    a.repeats = repeats.items;
    a.nrepeats = repeats.n;
    a.nlost = deja__lost_take(t, lost, DEJA__LOST_SLOTS);
    a.lost = lost;
    if (nv == 0 && a.dropped == 0 && a.sampled_out == 0 && a.redacted == 0 &&
        !any(a.sample_counts, DEJA__SAMPLE_NCOUNTERS) && a.nrepeats == 0 && a.nlost == 0)
        goto cleanup;
    if (nv == 0)
        a.env = NULL;
    if (deja__store_write(t->store, fill, &a) == 0) {
        atomic_fetch_add(&t->written, nv);
        *rep = now;
        deja__lost_reported(lost, a.nlost);
        goto cleanup;
    }
    if (nv <= 1) {
        note_failure(t, sl->views, nv);
        goto cleanup;
    }
    /* One by one: the counters go with the first trace that commits. */
    for (size_t i = 0; i < nv; i++) {
        fill_args one = a;
        one.views = &sl->views[i];
        one.preps = sl->preps != NULL ? &sl->preps[i] : NULL;
        one.nviews = 1;
        if (deja__store_write(t->store, fill, &one) != 0) {
            note_failure(t, &sl->views[i], 1);
            continue;
        }
        atomic_fetch_add(&t->written, 1);
        a.dropped = a.sampled_out = a.redacted = 0;
        memset(a.sample_counts, 0, sizeof a.sample_counts);
        a.nrepeats = 0;
        *rep = now;
        deja__lost_reported(lost, a.nlost);
        a.nlost = 0;
    }
cleanup:
    for (size_t i = 0; sl->checked != NULL && i < nv; i++) {
        free(sl->checked[i]);
        sl->checked[i] = NULL;
    }
    free(repeats.items);
    /* Over the store's disk budget, the writer evicts before its flushers
     * wake, so that a flushed store is within budget. A failed eviction is
     * tried again at the next commit. */
    if (nv > 0)
        (void)deja__store_budget_enforce(t->store, &t->env_digest);
    /* The store's pages this process touched count in its RSS until they
     * are unmapped: give them back once they add up, so that recording's
     * memory does not grow with the store (they stay in the page cache). */
    if (nv > 0)
        map_trim_maybe(t, statm_fd, 0);
    uint64_t bytes = 0;
    for (size_t i = 0; i < sl->n; i++)
        bytes += sl->batch[i]->bytes;
    deja__span_recycle_many(sl->batch, sl->n);
    deja__tracer_release(t, 0, bytes);
    pthread_mutex_lock(&t->lock);
    t->committed_seq += sl->n;
    pthread_cond_broadcast(&t->done);
    pthread_mutex_unlock(&t->lock);
    sl->n = sl->nv = 0;
}

/* Allocate the arrays of a slot of `cap` spans; on failure fall back to
 * the one-span arrays `one_*` (cap 1). Returns the capacity. */
static size_t slot_init(slot *sl, size_t cap, int prepare, deja_span **one_span,
                        deja_trace *one_view, deja__prepared *one_prep)
{
    memset(sl, 0, sizeof *sl);
    sl->batch = malloc(cap * sizeof *sl->batch);
    sl->views = malloc(cap * sizeof *sl->views);
    sl->preps = prepare ? calloc(cap, sizeof *sl->preps) : NULL;
    if (sl->batch != NULL && sl->views != NULL && (!prepare || sl->preps != NULL)) {
        sl->checked = calloc(cap, sizeof *sl->checked); /* NULL: no tags from checks */
        return cap;
    }
    free(sl->batch);
    free(sl->views);
    free(sl->preps);
    sl->batch = one_span;
    sl->views = one_view;
    sl->preps = prepare ? one_prep : NULL;
    sl->checked = calloc(1, sizeof *sl->checked);
    return 1;
}

/* Free what slot_init allocated (`cap` prepared traces). */
static void slot_free(slot *sl, size_t cap, deja_span **one_span)
{
    free(sl->checked);
    if (sl->preps != NULL)
        for (size_t i = 0; i < cap; i++)
            deja__prepared_free(&sl->preps[i]);
    if (sl->batch != one_span) {
        free(sl->batch);
        free(sl->views);
        free(sl->preps);
    }
}


/* Spans in the queue: reserved by recorders and not yet popped. */
static size_t queued(deja_tracer *t)
{
    return (size_t)(atomic_load(&t->held) >> DEJA__HELD_BYTES_BITS);
}

/* Whether the writer, holding no batch, has work before its interval is
 * up: wake_at spans queued, or wake_bytes bytes (big spans fill the byte
 * bound with fewer), or a recorder waiting for room. */
static int ready(deja_tracer *t)
{
    const uint64_t h = atomic_load(&t->held);
    return (size_t)(h >> DEJA__HELD_BYTES_BITS) >= t->wake_at ||
           (h & DEJA__HELD_BYTES_MAX) >= t->wake_bytes || atomic_load(&t->blocked) != 0;
}

/* The writer thread. Waits (at most flush_interval_ms) for the queue to
 * reach wake_at spans, a flush or a stop; pops up to batch_max spans and
 * stages them (helpers prepare them) while it commits the batch popped
 * before; a staged batch is committed at once when the queue is empty.
 * Stops when asked and the queue is empty. */
void *deja__writer_main(void *arg)
{
    deja_tracer *t = arg;
    deja_span *one_span[2][1];
    deja_trace one_view[2][1];
    deja__prepared one_prep[2][1];
    slot slots[2];
    prep_pool pool;
    const int pooled = prep_start(&pool, t->store) == 0;
    size_t caps[2];
    memset(one_prep, 0, sizeof one_prep);
    for (int i = 0; i < 2; i++)
        caps[i] =
            slot_init(&slots[i], t->opts.batch_max, pooled, one_span[i], one_view[i], one_prep[i]);
    const size_t bmax = caps[0] < caps[1] ? caps[0] : caps[1];
    slot *cur = &slots[0], *prev = &slots[1];
    int pending = 0; /* prev is staged, not committed */
    reported rep = {0, 0, 0, {0}};
    const unsigned interval = t->opts.flush_interval_ms;
    const int statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

    for (;;) {
        if (pending && (queued(t) == 0 || prev->last)) {
            /* Nothing to overlap the commit with. */
            commit(t, prev, &rep, statm_fd);
            pending = 0;
            if (prev->last)
                break;
            continue;
        }
        pthread_mutex_lock(&t->lock);
        if (!pending && !t->stop && t->flush_target <= t->committed_seq) {
            const size_t q = queued(t);
            if (q == 0 || (interval != 0 && !ready(t))) {
                const struct timespec dl = deja__clock_after(CLOCK_MONOTONIC, interval != 0 ? interval : 1);
                /* Announced before the queue is looked at again, and a
                 * recorder looks at this after its reservation: one of
                 * the two sees the other (both sequentially consistent). */
                while (!t->stop && t->flush_target <= t->committed_seq && !ready(t)) {
                    atomic_store(&t->writer_sleeping, 1);
                    if (ready(t) ||
                        pthread_cond_timedwait(&t->not_empty, &t->lock, &dl) == ETIMEDOUT)
                        break;
                }
                atomic_store(&t->writer_sleeping, 0);
            }
        }
        const int stop = t->stop;
        pthread_mutex_unlock(&t->lock);

        size_t n = 0;
        deja_span *s;
        while (n < bmax && (s = deja__tracer_pop(t)) != NULL)
            cur->batch[n++] = s;
        deja__tracer_release(t, n, 0);
        cur->n = n;
        const size_t left = queued(t);
        cur->last = stop && left == 0;
        if (n == 0 && left != 0)
            sched_yield(); /* a recorder reserved a place and has not published yet */

        stage(t, cur, &pool);
        if (pending)
            commit(t, prev, &rep, statm_fd);
        if (cur->preps != NULL && cur->nv != 0)
            prep_finish(&pool);
        slot *tmp = prev;
        prev = cur;
        cur = tmp;
        pending = 1;
    }
    if (statm_fd >= 0)
        close(statm_fd);
    if (pooled)
        prep_stop(&pool);
    for (int i = 0; i < 2; i++)
        slot_free(&slots[i], caps[i], one_span[i]);
    return NULL;
}
