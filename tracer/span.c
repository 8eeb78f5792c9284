/*
 * tracer/span.c -- the span API: the calling thread's side of recording.
 *
 * A span owns one arena (a chain of blocks that never move, each twice the
 * size of the last); everything added to the span is copied into it, and
 * the span's arrays of tensors, params, seeds, ... live there too. No
 * syscalls, hashing or compression happen here: begin takes a span from
 * the thread's cache and one clock read (the start time and the id's
 * millisecond), add copies (one arena allocation per call), end reads the
 * clock once, decides sampling and enqueues a pointer.
 *
 * Span memory circulates: the calling thread takes free spans from its
 * own cache, refilled a few at a time from the tracer's pool (a lock-free
 * queue, mpmc.c); the writer hands written spans back to the pool, trimmed
 * to their first block; a span dropped, sampled out or aborted goes back to
 * the thread's cache. No lock is taken on the common path. Recycled memory stays mapped; end prefetches (for writing) the
 * lines the thread's next span will fill, and while the writer lags far
 * behind (the memory then is cold) payloads are copied with streaming
 * stores instead of being read for ownership line by line.
 */
#include <stdlib.h>
#include <string.h>

#include "core/text.h"
#include "tracer/tracer_internal.h"

/* Spans a thread keeps for itself at most, and takes from a tracer's pool
 * at once (one pool operation per span, a few at a time). */
#define TCACHE_MAX 32
#define TCACHE_TAKE 8

/* A thread's cache of free spans. Spans are not tied to a tracer while
 * free (begin sets span->tracer), so one cache serves every tracer; it
 * holds at most TCACHE_MAX spans and is freed when the thread exits. */
typedef struct span_cache {
    deja_span *spans[TCACHE_MAX];
    size_t n;
    size_t backlog; /* queue length seen by the thread's last enqueue */
    int state;      /* 0: unregistered, 1: live, 2: gone (no caching) */
} span_cache;

static _Thread_local span_cache tcache;
static pthread_key_t tcache_key;
static pthread_once_t tcache_once = PTHREAD_ONCE_INIT;
static int tcache_key_ok;

static inline void span_fence(deja_span *span);

/* Offset of the first block in a span allocation. */
#define FIRST_OFFSET ((sizeof(deja_span) + 15) & ~(size_t)15)
/* Data bytes of the first block. */
#define FIRST_CAP (DEJA__SPAN_ALLOC - FIRST_OFFSET - sizeof(deja__block))

/* Allocate a new span with its first arena block (one allocation), or
 * NULL. */
static deja_span *span_new(void)
{
    _Static_assert(DEJA__SPAN_ALLOC > FIRST_OFFSET + sizeof(deja__block) + 1024,
                   "span allocation too small");
    deja_span *s = malloc(DEJA__SPAN_ALLOC);
    if (s == NULL)
        return NULL;
    memset(s, 0, sizeof *s);
    deja__block *b = (deja__block *)(void *)((char *)s + FIRST_OFFSET);
    b->next = NULL;
    b->cap = FIRST_CAP;
    b->used = 0;
    b->top = FIRST_CAP;
    s->first = b;
    s->head = b;
    s->bytes = DEJA__SPAN_ALLOC;
    return s;
}

/* Free every block but the first. */
static void span_trim(deja_span *s)
{
    deja__block *b = s->head;
    while (b != NULL && b != s->first) {
        deja__block *next = b->next;
        free(b);
        b = next;
    }
    s->first->next = NULL;
    s->head = s->first;
    s->bytes = DEJA__SPAN_ALLOC;
}

/* Prepare a recycled span for reuse, on the thread that will use it (the
 * writer leaves spans as they were). */
static void span_reset(deja_span *s)
{
    if (s->head != s->first)
        span_trim(s);
    s->first->used = 0;
    s->first->top = FIRST_CAP;
    /* Everything but the digest bytes (model_digest_size says how many
     * are valid): fewer lines to write. */
    memset(&s->tracer, 0, offsetof(deja_span, model_digest) - offsetof(deja_span, tracer));
}

/* Ask for the cache lines at `p` (`n` bytes) in a writable state, all at
 * once, without waiting: a recycled span was last read by the writer's
 * core or has left the caches, and taking its lines one store miss at a
 * time costs more than everything else begin does. */
static void prefetch_write(const void *p, size_t n)
{
    const char *c = (const char *)((uintptr_t)p & ~(uintptr_t)63);
    const char *end = (const char *)p + n;
    for (; c < end; c += 64) {
#if defined(__x86_64__) && defined(__GNUC__)
        __asm__ volatile("prefetchw %0" : : "m"(*c));
#else
        __builtin_prefetch(c, 1, 3);
#endif
    }
}

/* Free a span and its arena for good. Accepts NULL. */
void deja__span_destroy(deja_span *span)
{
    if (span == NULL)
        return;
    span_trim(span);
    free(span);
}

/* At thread exit: free the thread's cached spans. */
static void tcache_exit(void *arg)
{
    span_cache *c = arg;
    while (c->n != 0)
        deja__span_destroy(c->spans[--c->n]);
    c->state = 2;
}

/* Create the key whose destructor frees a thread's cache. */
static void tcache_key_init(void)
{
    tcache_key_ok = pthread_key_create(&tcache_key, tcache_exit) == 0;
}

/* The calling thread's span cache, registered for freeing at thread exit
 * on first use; NULL when the thread cannot cache (exiting, or no key). */
static span_cache *tcache_get(void)
{
    span_cache *c = &tcache;
    if (c->state == 0) {
        pthread_once(&tcache_once, tcache_key_init);
        c->state = tcache_key_ok && pthread_setspecific(tcache_key, c) == 0 ? 1 : 2;
    }
    return c->state == 1 ? c : NULL;
}

/* Put `n` spans on their tracer's pool, trimmed to their first block (so
 * that the pool holds 4 KB a span); free those beyond its limit. */
static void pool_put_many(deja_tracer *t, deja_span **spans, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (spans[i]->head != spans[i]->first)
            span_trim(spans[i]);
        if (deja__mpmc_push(&t->pool, spans[i]) != 0)
            deja__span_destroy(spans[i]);
    }
}

/* Give a span back for reuse: to the calling thread's cache (no lock),
 * else to its tracer's pool, else free it. Safe from any thread. */
void deja__span_recycle(deja_span *span)
{
    if (span == NULL)
        return;
    span_fence(span);
    span_cache *c = tcache_get();
    if (c != NULL && c->n < TCACHE_MAX) {
        if (span->head != span->first)
            span_trim(span);
        c->spans[c->n++] = span;
        return;
    }
    pool_put_many(span->tracer, &span, 1);
}

/* Recycle `n` spans of one tracer (the writer's batch); those beyond the
 * pool's limit are freed. Writes nothing into the spans but when trimming
 * blocks beyond the first. */
void deja__span_recycle_many(deja_span **spans, size_t n)
{
    if (n != 0)
        pool_put_many(spans[0]->tracer, spans, n);
}

/* A span for the calling thread: from its cache, refilled from the
 * tracer's pool a few at a time (no lock), or a new one. NULL when out of
 * memory. */
static deja_span *span_take(deja_tracer *t)
{
    span_cache *c = tcache_get();
    deja_span *s = NULL;
    if (c != NULL) {
        if (c->n == 0)
            while (c->n < TCACHE_TAKE && (s = deja__mpmc_pop(&t->pool)) != NULL)
                c->spans[c->n++] = s;
        s = c->n != 0 ? c->spans[--c->n] : NULL;
    } else {
        s = deja__mpmc_pop(&t->pool);
    }
    if (s == NULL)
        return span_new();
    return s;
}

/* Chain a new block of at least `size` bytes (twice the current one) on
 * the span, or NULL. */
static __attribute__((noinline)) deja__block *arena_block(deja_span *span, size_t size)
{
    size_t cap = span->head->cap * 2;
    if (size > ((size_t)1 << 40))
        return NULL;
    if (cap < size + 64)
        cap = (size + 64 + 15) & ~(size_t)15;
    deja__block *nb = malloc(sizeof *nb + cap);
    if (nb == NULL)
        return NULL;
    nb->next = span->head;
    nb->cap = cap;
    nb->used = 0;
    nb->top = cap;
    span->head = nb;
    span->bytes += sizeof *nb + cap;
    return nb;
}

/* Allocate `size` bytes aligned to `align` (a power of two, at most 16)
 * from the bottom of the span's arena, or NULL. Strings take align 1, so
 * that short keys pack into few cache lines. */
static inline void *arena_alloc(deja_span *span, size_t size, size_t align)
{
    deja__block *b = span->head;
    size_t at = (b->used + align - 1) & ~(align - 1);
    if (at > b->top || size > b->top - at) {
        if ((b = arena_block(span, size)) == NULL)
            return NULL;
        at = 0;
    }
    b->used = at + size;
    return b->data + at;
}

/* Allocate `size` payload bytes, 64-aligned, from the top of the span's
 * arena, or NULL. */
static void *arena_payload(deja_span *span, size_t size)
{
    deja__block *b = span->head;
    for (int tries = 0; tries < 2; tries++) {
        const uintptr_t lo = (uintptr_t)(b->data + b->used);
        const uintptr_t hi = (uintptr_t)(b->data + b->top);
        if (size <= hi - lo && ((hi - size) & ~(uintptr_t)63) >= lo) {
            const uintptr_t at = (hi - size) & ~(uintptr_t)63;
            b->top = (size_t)(at - (uintptr_t)b->data);
            return (void *)at;
        }
        if ((b = arena_block(span, size)) == NULL)
            return NULL;
    }
    return NULL;
}

#if defined(__x86_64__) && defined(__SSE2__)
#include <emmintrin.h>
/* Make the span's streaming stores visible to other threads (before it is
 * enqueued or pooled). A span belongs to the thread that began it (see
 * deja_span_begin); a caller that hands one to another thread anyway does
 * so through a lock, and a locked instruction drains the write-combining
 * buffers on x86 as a fence does. */
static inline void span_fence(deja_span *span)
{
    if (span->streamed) {
        _mm_sfence();
        span->streamed = 0;
    }
}

/* Copy `size` bytes to the 64-aligned `dst` of `span`. With `stream` set,
 * whole lines go with streaming stores, which do not read the destination
 * lines first (a deep queue has pushed them out to memory: reading them
 * costs a memory round trip per line). Streaming stores are weakly
 * ordered: the span is marked, and span_fence() makes them visible before
 * the span is handed to another thread (one fence per span, not one per
 * payload: a fence waits for the write-combining buffers to drain, ~120 ns
 * here). */
static void copy_payload(deja_span *span, void *dst, const void *src, size_t size, int stream)
{
    if (!stream || size < 256) {
        memcpy(dst, src, size);
        return;
    }
    __m128i *d = dst;
    const __m128i *s = src;
    const size_t lines = size / 64;
    for (size_t i = 0; i < lines; i++, d += 4, s += 4) {
        const __m128i a = _mm_loadu_si128(s);
        const __m128i b = _mm_loadu_si128(s + 1);
        const __m128i c = _mm_loadu_si128(s + 2);
        const __m128i e = _mm_loadu_si128(s + 3);
        _mm_stream_si128(d, a);
        _mm_stream_si128(d + 1, b);
        _mm_stream_si128(d + 2, c);
        _mm_stream_si128(d + 3, e);
    }
    memcpy(d, s, size % 64);
    span->streamed = 1;
}
#else
/* Nothing to make visible without streaming stores. */
static inline void span_fence(deja_span *span)
{
    (void)span;
}

/* Copy a payload (plain memcpy where streaming stores are unavailable). */
static void copy_payload(deja_span *span, void *dst, const void *src, size_t size, int stream)
{
    (void)span;
    (void)stream;
    memcpy(dst, src, size);
}
#endif

/* Allocate `size` bytes, 16-aligned, from the span's arena. Returns NULL
 * when out of memory or when `size` is beyond any sane bound. */
void *deja__span_alloc(deja_span *span, size_t size)
{
    return arena_alloc(span, size, 16);
}

/* Copy `size` payload bytes into the span's arena as deja_span_add does
 * (64-aligned from the top, streamed once the queue is deep); NULL when
 * out of memory. */
void *deja__span_payload_copy(deja_span *span, const void *src, size_t size)
{
    void *data = arena_payload(span, size != 0 ? size : 1);
    if (data != NULL && size != 0)
        copy_payload(span, data, src, size, tcache.backlog >= DEJA__STREAM_AT);
    return data;
}

/* Copy `len` bytes and a NUL into the arena; NULL on failure. */
static char *arena_strndup(deja_span *span, const char *s, size_t len)
{
    char *p = arena_alloc(span, len + 1, 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* Copy a NUL-terminated string into the arena; NULL on failure. */
static char *arena_strdup(deja_span *span, const char *s)
{
    return arena_strndup(span, s, strlen(s));
}

/* Make room for one more element in an arena array of `elem` bytes per
 * element, doubling its capacity (the old copy stays in the arena, which
 * bounds the waste to the array's final size). Returns 0 or DEJA_ENOMEM. */
static int grow_slow(deja_span *span, void **arr, size_t n, size_t *cap, size_t elem, size_t first)
{
    size_t ncap = *cap != 0 ? *cap * 2 : first;
    if (ncap > ((size_t)1 << 32))
        return deja__error_set(DEJA_ENOMEM, "span: too many entries (%zu)", n);
    void *p = arena_alloc(span, ncap * elem, 16);
    if (p == NULL)
        return deja__error_set(DEJA_ENOMEM, "span: out of memory growing an array to %zu", ncap);
    if (n != 0)
        memcpy(p, *arr, n * elem);
    *arr = p;
    *cap = ncap;
    return 0;
}

/* grow_slow() when the array is full; nothing otherwise. `first` is the
 * first capacity: small (two tensors, four params) so that a span's small
 * things share few cache lines. */
static inline int grow(deja_span *span, void **arr, size_t n, size_t *cap, size_t elem,
                       size_t first)
{
    return n < *cap ? 0 : grow_slow(span, arr, n, cap, elem, first);
}

/* Set and return DEJA_ENOMEM for a copy of `what`. */
static int oom(const char *what)
{
    return deja__error_set(DEJA_ENOMEM, "span: out of memory copying %s", what);
}

/* Refuse a name that breaks the rule of core/text.h (it could be neither
 * exported in a bundle nor printed safely): DEJA_EINVAL naming `what`. */
static int check_name(const char *what, const char *s)
{
    const char *why = deja__text_problem(s);

    if (why[0] == '\0')
        return 0;
    return deja__error_set(DEJA_EINVAL, "span: %s %s", what, why);
}

/* Begin a span of model `name` at `version` on `tracer`: take a recycled
 * span (from the thread's cache: no lock nearly always), one clock read
 * for both its start time and its id, and copy the names (one arena
 * allocation). The span belongs to the caller until deja_span_end() or
 * deja_span_abort(). */
int deja_span_begin(deja_span **out, deja_tracer *tracer, const char *name, const char *version)
{
    int rc = 0;
    deja_span *s = NULL;
    if (out == NULL || tracer == NULL || name == NULL) {
        rc = deja__error_set(DEJA_EINVAL, "span begin: tracer and model name are required");
        goto cleanup;
    }
    *out = NULL;
    if ((rc = check_name("the model name", name)) != 0 ||
        (rc = check_name("the model version", version)) != 0)
        goto cleanup;
    if ((s = span_take(tracer)) == NULL) {
        rc = oom("a new span");
        goto cleanup;
    }
    span_reset(s);
    s->tracer = tracer;
    if (version == NULL)
        version = "";
    const size_t nlen = strlen(name);
    const size_t vlen = strlen(version);
    char *names = arena_alloc(s, nlen + vlen + 2, 1);
    if (names == NULL) {
        rc = oom("the model name");
        goto cleanup;
    }
    memcpy(names, name, nlen + 1);
    memcpy(names + nlen + 1, version, vlen + 1);
    s->model_name = names;
    s->model_version = names + nlen + 1;
    s->start_ns = deja__now_ns();
    deja__id_new_ns(&s->id, s->start_ns);
    *out = s;
    s = NULL;
cleanup:
    if (s != NULL)
        deja__span_recycle(s);
    return rc;
}

/* Replace the model version (copied into the span's arena). */
int deja_span_model_version(deja_span *span, const char *version)
{
    if (span == NULL || version == NULL)
        return deja__error_set(DEJA_EINVAL, "span: a model version is required");
    if (check_name("the model version", version) != 0)
        return DEJA_EINVAL;
    const size_t vlen = strlen(version);
    char *copy = arena_alloc(span, vlen + 1, 1);
    if (copy == NULL)
        return oom("the model version");
    memcpy(copy, version, vlen + 1);
    span->model_version = copy;
    return 0;
}

/* The span's id, valid until it ends. */
const deja_id *deja_span_id(const deja_span *span)
{
    return span != NULL ? &span->id : NULL;
}

/* Set the model weights digest (at most 64 bytes). */
int deja_span_model_digest(deja_span *span, const void *digest, size_t size)
{
    if (span == NULL || (digest == NULL && size != 0) || size > sizeof span->model_digest)
        return deja__error_set(DEJA_EINVAL, "span: a model digest has at most 64 bytes (got %zu)",
                               size);
    if (size != 0)
        memcpy(span->model_digest, digest, size);
    span->model_digest_size = size;
    return 0;
}

/* Record how the model was loaded: the plugin as named and its ARG. */
int deja_span_model_config(deja_span *span, const char *plugin, const char *config)
{
    if (span == NULL)
        return deja__error_set(DEJA_EINVAL, "span model config: span is required");
    const char *p = arena_strdup(span, plugin != NULL ? plugin : "");
    const char *c = arena_strdup(span, config != NULL ? config : "");
    if (p == NULL || c == NULL)
        return oom("the model configuration");
    span->model_plugin = p;
    span->model_config = c;
    span->has_model_config = 1;
    return 0;
}

/* Declare the kind of output `name`; a second declaration replaces the
 * first. */
int deja_span_output_kind(deja_span *span, const char *name, deja_output_kind kind)
{
    if (span == NULL || name == NULL || (unsigned)kind > DEJA_KIND_MAX)
        return deja__error_set(DEJA_EINVAL, "span output kind: span, name and a known kind are "
                                            "required");
    for (size_t i = 0; i < span->nkinds; i++) {
        if (strcmp(span->kinds[i].name, name) == 0) {
            span->kinds[i].kind = kind;
            return 0;
        }
    }
    int rc = grow(span, (void **)&span->kinds, span->nkinds, &span->cap_kinds,
                  sizeof *span->kinds, 2);
    if (rc != 0)
        return rc;
    const char *n = arena_strdup(span, name);
    if (n == NULL)
        return oom(name);
    span->kinds[span->nkinds++] = (deja_output_decl){n, kind};
    return 0;
}

/* Record a truncation of tensor `name` as the tag deja.truncated=<name>. */
static int tag_truncated(deja_span *span, const char *name)
{
    return deja_span_tag(span, "deja.truncated", name);
}

/* Check that `tensor` is well formed: a known dtype, at most DEJA_MAX_DIMS
 * dimensions, and (but for utf8 and bytes) a size that its shape and dtype
 * explain. The one rule for what recording and replay accept. Returns 0 or
 * DEJA_EINVAL naming the tensor. */
int deja__tensor_check(const deja_tensor *tensor)
{
    const size_t esize = deja_dtype_size(tensor->dtype);
    if (esize == 0 || tensor->ndim > DEJA_MAX_DIMS || (tensor->ndim != 0 && !tensor->shape) ||
        (tensor->size != 0 && tensor->data == NULL))
        return deja__error_set(DEJA_EINVAL, "tensor '%s': bad dtype, shape or data", tensor->name);
    if (tensor->dtype == DEJA_UTF8 || tensor->dtype == DEJA_BYTES)
        return 0;
    uint64_t n = 1;
    for (size_t i = 0; i < tensor->ndim; i++) {
        if (tensor->shape[i] != 0 && n > UINT64_MAX / tensor->shape[i])
            return deja__error_set(DEJA_EINVAL, "tensor '%s': shape overflows", tensor->name);
        n *= tensor->shape[i];
    }
    if (n > SIZE_MAX / esize || n * esize != tensor->size)
        return deja__error_set(DEJA_EINVAL,
                               "tensor '%s': %zu bytes do not match its shape (%llu elements)",
                               tensor->name, tensor->size, (unsigned long long)n);
    return 0;
}

/* Copy a tensor into the span on `side`: its name, shape and payload. A
 * payload beyond max_payload is cut to it (whole elements) and tagged.
 * Returns 0, DEJA_EINVAL for an inconsistent tensor, DEJA_ENOMEM. */
int deja_span_add(deja_span *span, deja_side side, const deja_tensor *tensor)
{
    int rc = 0;
    if (span == NULL || tensor == NULL || tensor->name == NULL ||
        (side != DEJA_INPUT && side != DEJA_OUTPUT)) {
        rc = deja__error_set(DEJA_EINVAL, "span add: span, tensor and its name are required");
        goto cleanup;
    }
    if ((rc = check_name("a tensor name", tensor->name)) != 0 ||
        (rc = deja__tensor_check(tensor)) != 0)
        goto cleanup;
    const size_t esize = deja_dtype_size(tensor->dtype);
    deja_tensor **arr = side == DEJA_INPUT ? &span->inputs : &span->outputs;
    size_t *n = side == DEJA_INPUT ? &span->ninputs : &span->noutputs;
    size_t *cap = side == DEJA_INPUT ? &span->cap_inputs : &span->cap_outputs;
    if ((rc = grow(span, (void **)arr, *n, cap, sizeof **arr, 2)) != 0)
        goto cleanup;

    size_t size = tensor->size;
    size_t ndim = tensor->ndim;
    int truncated = 0;
    const size_t max = span->tracer->opts.max_payload;
    if (max != 0 && size > max) {
        size = max - max % esize;
        ndim = 1;
        truncated = 1;
    }
    /* The shape (at least one slot, which redaction may use) and the name
     * in one small allocation; the payload at the top of the arena. */
    const size_t nlen = strlen(tensor->name);
    const size_t nshape = ndim ? ndim : 1;
    if (nlen > ((size_t)1 << 40)) {
        rc = oom(tensor->name);
        goto cleanup;
    }
    uint8_t *mem = arena_alloc(span, nshape * sizeof(uint64_t) + nlen + 1, 8);
    void *data = size != 0 ? arena_payload(span, size) : NULL;
    if (mem == NULL || (size != 0 && data == NULL)) {
        rc = oom(tensor->name);
        goto cleanup;
    }
    uint64_t *shape = (uint64_t *)(void *)mem;
    char *name = (char *)mem + nshape * sizeof(uint64_t);
    memcpy(name, tensor->name, nlen + 1);
    if (truncated)
        shape[0] = size / esize;
    else if (ndim != 0)
        memcpy(shape, tensor->shape, ndim * sizeof *shape);
    if (size != 0)
        copy_payload(span, data, tensor->data, size, tcache.backlog >= DEJA__STREAM_AT);
    (*arr)[*n] = (deja_tensor){name, tensor->dtype, ndim, shape, data, size};
    (*n)++;
    if (truncated)
        rc = tag_truncated(span, tensor->name);
cleanup:
    return rc;
}

/* Add UTF-8 text as a DEJA_UTF8 tensor of shape [len]. */
int deja_span_add_text(deja_span *span, deja_side side, const char *name, const char *text,
                       size_t len)
{
    uint64_t shape[1] = {len};
    deja_tensor t = {name, DEJA_UTF8, 1, shape, text, len};
    return deja_span_add(span, side, &t);
}

/* Add opaque bytes as a DEJA_BYTES tensor of shape [size]. */
int deja_span_add_bytes(deja_span *span, deja_side side, const char *name, const void *data,
                        size_t size)
{
    uint64_t shape[1] = {size};
    deja_tensor t = {name, DEJA_BYTES, 1, shape, data, size};
    return deja_span_add(span, side, &t);
}

/* Append a param with a copied key; fills `*out` with the new entry. */
static int param_new(deja_span *span, const char *key, deja_param **out)
{
    int rc = 0;
    if (span == NULL || key == NULL) {
        rc = deja__error_set(DEJA_EINVAL, "span param: span and key are required");
        goto cleanup;
    }
    if ((rc = check_name("a param name", key)) != 0)
        goto cleanup;
    if ((rc = grow(span, (void **)&span->params, span->nparams, &span->cap_params,
                   sizeof *span->params, 4)) != 0)
        goto cleanup;
    const char *k = arena_strdup(span, key);
    if (k == NULL) {
        rc = oom(key);
        goto cleanup;
    }
    deja_param *p = &span->params[span->nparams++];
    *p = (deja_param){k, DEJA_PARAM_NUM, 0.0, NULL, 0};
    *out = p;
cleanup:
    return rc;
}

/* Record a numeric parameter. */
int deja_span_param_num(deja_span *span, const char *key, double value)
{
    deja_param *p = NULL;
    int rc = param_new(span, key, &p);
    if (rc == 0)
        p->num = value;
    return rc;
}

/* Record a string parameter (copied). */
int deja_span_param_str(deja_span *span, const char *key, const char *value)
{
    deja_param *p = NULL;
    if (value == NULL)
        return deja__error_set(DEJA_EINVAL, "span param '%s': value is NULL", key ? key : "");
    int rc = param_new(span, key, &p);
    if (rc != 0)
        return rc;
    p->kind = DEJA_PARAM_STR;
    p->str = arena_strdup(span, value);
    if (p->str == NULL) {
        span->nparams--;
        return oom(key);
    }
    return 0;
}

/* Record a boolean parameter. */
int deja_span_param_bool(deja_span *span, const char *key, int value)
{
    deja_param *p = NULL;
    int rc = param_new(span, key, &p);
    if (rc == 0) {
        p->kind = DEJA_PARAM_BOOL;
        p->flag = value != 0;
    }
    return rc;
}

/* Record a seed the caller's RNG used, under `name`. */
int deja_span_seed(deja_span *span, const char *name, uint64_t value)
{
    int rc = 0;
    if (span == NULL || name == NULL) {
        rc = deja__error_set(DEJA_EINVAL, "span seed: span and name are required");
        goto cleanup;
    }
    if ((rc = check_name("a seed name", name)) != 0)
        goto cleanup;
    if ((rc = grow(span, (void **)&span->seeds, span->nseeds, &span->cap_seeds, sizeof *span->seeds,
                   2)) != 0)
        goto cleanup;
    const char *n = arena_strdup(span, name);
    if (n == NULL) {
        rc = oom(name);
        goto cleanup;
    }
    span->seeds[span->nseeds++] = (deja_seed){n, value};
cleanup:
    return rc;
}

/* Record a clock read (Unix ns) the caller consumed. */
int deja_span_clock(deja_span *span, int64_t unix_ns)
{
    int rc = 0;
    if (span == NULL)
        return deja__error_set(DEJA_EINVAL, "span clock: span is NULL");
    if ((rc = grow(span, (void **)&span->clock_ns, span->nclock, &span->cap_clock,
                   sizeof *span->clock_ns, 4)) != 0)
        return rc;
    span->clock_ns[span->nclock++] = unix_ns;
    return 0;
}

/* Add a tag key=value (both copied). */
int deja_span_tag(deja_span *span, const char *key, const char *value)
{
    int rc = 0;
    if (span == NULL || key == NULL || value == NULL) {
        rc = deja__error_set(DEJA_EINVAL, "span tag: span, key and value are required");
        goto cleanup;
    }
    if ((rc = check_name("a tag key", key)) != 0 || (rc = check_name("a tag value", value)) != 0)
        goto cleanup;
    rc = grow(span, (void **)&span->tags, span->ntags, &span->cap_tags, sizeof *span->tags, 2);
    if (rc != 0)
        goto cleanup;
    const size_t klen = strlen(key);
    const size_t vlen = strlen(value);
    char *k = arena_alloc(span, klen + vlen + 2, 1);
    if (k == NULL) {
        rc = oom(key);
        goto cleanup;
    }
    memcpy(k, key, klen + 1);
    memcpy(k + klen + 1, value, vlen + 1);
    span->tags[span->ntags++] = (deja_tag){k, k + klen + 1};
cleanup:
    return rc;
}

/* Make the span a step of the run recorded as `parent`. */
int deja_span_parent(deja_span *span, const deja_id *parent)
{
    if (span == NULL || parent == NULL)
        return deja__error_set(DEJA_EINVAL, "span parent: span and parent are required");
    span->parent = *parent;
    span->has_parent = 1;
    return 0;
}

/* Find the rng stream `name` of the span, creating it with `seed` when
 * `create` is set. Returns its index, DEJA_ENOTFOUND, or DEJA_ENOMEM. */
int deja__span_rng_stream(deja_span *span, const char *name, uint64_t seed, int create)
{
    for (size_t i = 0; i < span->nrng; i++)
        if (strcmp(span->rng[i].name, name) == 0)
            return (int)i;
    if (!create)
        return DEJA_ENOTFOUND;
    if (span->nrng >= 65536)
        return deja__error_set(DEJA_ENOMEM, "span: too many rng streams");
    if (deja__text_problem(name)[0] != '\0') {
        span->bad_name = 1; /* the draws could not be recorded: refused at the end */
        return check_name("an RNG stream name", name);
    }
    if (span->nrng == span->cap_rng) {
        size_t cap = span->cap_rng;
        int rc = grow(span, (void **)&span->rng, span->nrng, &cap, sizeof *span->rng, 4);
        if (rc == 0) {
            cap = span->cap_rng;
            rc = grow(span, (void **)&span->rng_cap, span->nrng, &cap, sizeof *span->rng_cap, 4);
        }
        if (rc != 0)
            return rc;
        span->cap_rng = cap;
    }
    const char *n = arena_strdup(span, name);
    if (n == NULL)
        return oom(name);
    span->rng[span->nrng] = (deja_rng_stream){n, seed, NULL, 0};
    span->rng_cap[span->nrng] = 0;
    return (int)span->nrng++;
}

/* Append one draw to stream `index` of the span. */
int deja__span_rng_append(deja_span *span, size_t index, uint64_t draw)
{
    deja_rng_stream *r = &span->rng[index];
    void *draws = (void *)(uintptr_t)r->draws;
    if (span->ndraws >= DEJA__MAX_DRAWS) {
        span->too_many = 1;
        return deja__error_set(DEJA_EINVAL, "span: more than %zu rng draws", DEJA__MAX_DRAWS);
    }
    int rc = grow(span, &draws, r->ndraws, &span->rng_cap[index], sizeof(uint64_t), 4);
    if (rc != 0)
        return rc;
    ((uint64_t *)draws)[r->ndraws] = draw;
    r->draws = draws;
    r->ndraws++;
    span->ndraws++;
    return 0;
}

/* End the span: record status and error, decide sampling, and hand it to
 * the writer. The span is gone afterwards whatever the result. Returns 0,
 * DEJA_EFULL (dropped: queue full under DEJA_QUEUE_DROP), DEJA_EINVAL. */
int deja_span_end(deja_span *span, deja_status status, const char *error)
{
    if (span == NULL)
        return deja__error_set(DEJA_EINVAL, "span end: span is NULL");
    if (span->too_many) {
        /* What is recorded must be readable: a trace beyond the bound the
         * reader checks is refused here, not written. */
        deja__span_recycle(span);
        return deja__error_set(DEJA_EINVAL,
                               "span: the model drew more than %zu rng values: the trace "
                               "cannot be recorded",
                               DEJA__MAX_DRAWS);
    }
    if (span->bad_name) {
        deja__span_recycle(span);
        return deja__error_set(DEJA_EINVAL, "span: the model named an RNG stream with text that "
                                            "is not UTF-8 or holds control characters: the trace "
                                            "cannot be recorded");
    }
    deja_tracer *t = span->tracer;
    span_cache *c = &tcache;
    /* Ask now for the lines the thread's next span will fill (its struct
     * and as much of the bottom of its arena as this one used): they
     * arrive while the caller runs its next inference. */
    const size_t data = FIRST_OFFSET + sizeof(deja__block);
    const int one_block = span->head == span->first;
    const size_t small = data + (one_block ? span->first->used : FIRST_CAP);
    if (c->n != 0) {
        const char *next = (const char *)c->spans[c->n - 1];
        prefetch_write(next, small);
        /* Payloads too, unless they will be streamed (deep queue). */
        if (one_block && c->backlog < DEJA__STREAM_AT)
            prefetch_write(next + data + span->first->top, FIRST_CAP - span->first->top);
    }
    /* One clock read per end: the wall clock the start was taken from. A
     * clock stepped back during the inference gives 0, never a negative. */
    span->duration_ns = deja__now_ns() - span->start_ns;
    if (span->duration_ns < 0)
        span->duration_ns = 0;
    span->status = status == DEJA_STATUS_ERROR ? DEJA_STATUS_ERROR : DEJA_STATUS_OK;
    deja__sampler *const policy = atomic_load_explicit(&t->sampler, memory_order_acquire);
    if (span->status == DEJA_STATUS_OK) {
        span->error = "";
        if (policy == NULL && t->opts.sample_rate < 1.0 &&
            !(deja__fast_uniform() < t->opts.sample_rate)) {
            atomic_fetch_add_explicit(&t->sampled_out, 1, memory_order_relaxed);
            deja__lost_count(t, span->model_name, span->model_version, DEJA__LOST_SAMPLED_OUT);
            deja__span_recycle(span);
            return 0;
        }
    } else {
        span->error = arena_strdup(span, error != NULL ? error : "");
        if (span->error == NULL)
            span->error = "(out of memory copying the error text)";
    }
    if (policy != NULL && !deja__sampler_keep(t, policy, span)) {
        deja__span_recycle(span);
        return 0;
    }
    span_fence(span);
    return deja__tracer_enqueue(t, span, &c->backlog);
}

/* Throw the span away unrecorded. Accepts NULL. */
void deja_span_abort(deja_span *span)
{
    deja__span_recycle(span);
}
