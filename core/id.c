/*
 * core/id.c -- trace ids (ULID layout) and the clock.
 *
 * An id is 48 bits of Unix milliseconds then 80 random bits, big-endian, so
 * that byte order is time order. Its text form is the standard ULID one:
 * 26 characters of Crockford base32, the first holding the top 3 bits.
 * Ids of one thread are strictly increasing: an id made in the same
 * millisecond as the thread's previous one is the previous one plus one.
 * Ids of different threads are unique (fresh random bits per thread and
 * millisecond) and ordered by millisecond, not within one.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "core/error.h"
#include "core/id.h"
#include "deja.h"

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#define TIME_MAX_MS ((int64_t)0xFFFFFFFFFFFF)

/* Write the 26 characters of `id` and a NUL into `out`: group i is the
 * 5 bits whose lowest is bit 125 - 5i of the 128 (ids are formatted for
 * every trace a command touches, so this works on two words, not bits). */
void deja_id_format(const deja_id *id, char out[DEJA_ID_STRLEN + 1])
{
    uint64_t hi = 0, lo = 0;

    for (unsigned i = 0; i < 8; i++) {
        hi = hi << 8 | id->bytes[i];
        lo = lo << 8 | id->bytes[8 + i];
    }
    for (unsigned i = 0; i < DEJA_ID_STRLEN; i++) {
        const unsigned s = 125 - 5 * i;
        const uint64_t v = s >= 64 ? hi >> (s - 64) : s == 0 ? lo : hi << (64 - s) | lo >> s;

        out[i] = crockford[v & 31];
    }
    out[DEJA_ID_STRLEN] = '\0';
}

/* Return the value (0..31) of Crockford character `c`, accepting lowercase
 * and the aliases I/L -> 1 and O -> 0, or -1 for anything else (U too). */
static int crockford_value(char c)
{
    if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
    if (c == 'I' || c == 'L')
        return 1;
    if (c == 'O')
        return 0;
    for (int v = 0; v < 32; v++) {
        if (crockford[v] == c)
            return v;
    }
    return -1;
}

/* Parse the 26-character text of an id into `out`. Returns 0, or
 * DEJA_EINVAL (with a message) for NULL, a wrong length, a character outside
 * Crockford base32, or a value beyond 128 bits. `out` is written only on
 * success. */
int deja_id_parse(deja_id *out, const char *text)
{
    deja_id id;
    size_t len;
    int rc = 0;

    memset(&id, 0, sizeof id);
    if (text == NULL) {
        rc = deja__error_set(DEJA_EINVAL, "no trace id given");
        goto cleanup;
    }
    len = strnlen(text, DEJA_ID_STRLEN + 1);
    if (len != DEJA_ID_STRLEN) {
        rc = deja__error_set(DEJA_EINVAL, "'%.40s' is not a trace id: it must be %d characters",
                             text, DEJA_ID_STRLEN);
        goto cleanup;
    }
    for (unsigned i = 0; i < DEJA_ID_STRLEN; i++) {
        const int v = crockford_value(text[i]);
        if (v < 0) {
            rc = deja__error_set(DEJA_EINVAL, "'%s' is not a trace id: bad character '%c'", text,
                                 text[i]);
            goto cleanup;
        }
        if (i == 0 && v > 7) {
            rc =
                deja__error_set(DEJA_EINVAL, "'%s' is not a trace id: it overflows 128 bits", text);
            goto cleanup;
        }
        for (int k = 0; k < 5; k++) {
            const int bit = (int)i * 5 - 2 + k;
            if (bit >= 0 && ((v >> (4 - k)) & 1))
                id.bytes[bit / 8] |= (uint8_t)(0x80u >> (bit % 8));
        }
    }
    *out = id;
cleanup:
    return rc;
}

/* Return the milliseconds since the Unix epoch held in the top 48 bits of
 * `id`. */
int64_t deja_id_time_ms(const deja_id *id)
{
    uint64_t ms = 0;

    for (int i = 0; i < 6; i++)
        ms = (ms << 8) | id->bytes[i];
    return (int64_t)ms;
}

/* Return the current Unix time in nanoseconds (CLOCK_REALTIME). */
int64_t deja__now_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timespec deja__clock_after(clockid_t clock, unsigned ms)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Fill `buf` with `size` random bytes from getrandom(); if the kernel
 * refuses, fall back to hashing the time, the pid and a counter, which is
 * still unique enough within a host. */
static void random_bytes(uint8_t *buf, size_t size)
{
    static _Thread_local uint64_t fallback_counter;
    size_t got = 0;

    while (got < size) {
        const ssize_t n = getrandom(buf + got, size - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)n;
    }
    while (got < size) {
        const uint64_t seed[3] = {(uint64_t)deja__now_ns(), (uint64_t)getpid(), ++fallback_counter};
        const XXH128_hash_t h = XXH3_128bits(seed, sizeof seed);
        XXH128_canonical_t c;
        size_t n = size - got < sizeof c.digest ? size - got : sizeof c.digest;

        XXH128_canonicalFromHash(&c, h);
        memcpy(buf + got, c.digest, n);
        got += n;
    }
}

/* Write the 48-bit `ms` big-endian into the first 6 bytes of `id`. */
static void put_time(deja_id *id, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    if (ms > TIME_MAX_MS)
        ms = TIME_MAX_MS;
    for (int i = 5; i >= 0; i--) {
        id->bytes[i] = (uint8_t)(ms & 0xFF);
        ms >>= 8;
    }
}

/* Per-thread id state. Ids are made without any lock: each thread keeps
 * the last id it made and a private generator (splitmix64 over a 64-bit
 * counter, seeded once per thread with 128 bits from getrandom()).
 *
 * Guarantees: ids of one thread are strictly increasing; ids of different
 * threads of the same millisecond are not ordered among themselves but are
 * unique: every thread draws 79 fresh random bits per millisecond (the top
 * bit of the 80 is left clear, so counting up inside a millisecond never
 * wraps), so two threads collide only if their draws for the same
 * millisecond land within a few counts of each other in a 2^79 space: for
 * a million threads each making a million ids in one millisecond, under
 * 2^-39. Across processes and hosts the same argument holds. A forked
 * child reseeds (see id_fork_child), so parent and child never share a
 * generator. */
typedef struct id_state {
    uint64_t fork_gen; /* id_fork_gen when seeded; 0: not seeded */
    uint64_t ctr;      /* splitmix64 counter */
    uint64_t salt;     /* second seed word, mixed into the high bits */
    int64_t last_ms;   /* time part of `last` */
    uint64_t hi;       /* 16 high bits of the random part of `last` */
    uint64_t lo;       /* 64 low bits of the random part of `last` */
} id_state;

static _Thread_local id_state id_tls;
static _Atomic uint64_t id_fork_gen = 1;
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

/* In a forked child: make every thread state stale (only the forking
 * thread survives, and it reseeds on its next id). */
static void id_fork_child(void)
{
    atomic_fetch_add(&id_fork_gen, 1);
}

/* Register the fork handler, once per process. */
static void id_once_init(void)
{
    pthread_atfork(NULL, NULL, id_fork_child);
}

/* One splitmix64 output from the thread's counter. */
static uint64_t id_next(id_state *st)
{
    uint64_t z = (st->ctr += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Seed the calling thread's generator from the kernel (rarely: once per
 * thread and per fork). */
static void id_seed(id_state *st, uint64_t gen)
{
    uint64_t seed[2];
    pthread_once(&id_once, id_once_init);
    random_bytes((uint8_t *)seed, sizeof seed);
    st->ctr = seed[0];
    st->salt = seed[1];
    st->last_ms = -1;
    st->fork_gen = gen;
}

/* Make a new id for the time `unix_ns` (Unix nanoseconds, as read by
 * deja__now_ns()) into `out`, lock-free. Strictly increasing per thread:
 * in the millisecond of the thread's previous id, or if the clock stepped
 * back, the previous id plus one is used (its millisecond is kept); ids of
 * other threads are unique but not ordered within a millisecond. */
void deja__id_new_ns(deja_id *out, int64_t unix_ns)
{
    id_state *st = &id_tls;
    const uint64_t gen = atomic_load_explicit(&id_fork_gen, memory_order_relaxed);
    int64_t ms = unix_ns / 1000000;

    if (st->fork_gen != gen)
        id_seed(st, gen);
    if (ms < 0)
        ms = 0;
    if (ms > TIME_MAX_MS)
        ms = TIME_MAX_MS;
    if (st->last_ms >= 0 && ms <= st->last_ms) {
        ms = st->last_ms;
        if (++st->lo == 0 && ++st->hi > 0xFFFF) {
            /* 2^80 ids in one millisecond: borrow the next one. */
            ms = ++st->last_ms;
            st->hi = (id_next(st) ^ st->salt) & 0x7FFF;
            st->lo = id_next(st);
        }
    } else {
        st->last_ms = ms;
        /* 79 bits: the top bit stays clear to count up without wrapping. */
        st->hi = (id_next(st) ^ st->salt) & 0x7FFF;
        st->lo = id_next(st);
    }
    put_time(out, ms);
    out->bytes[6] = (uint8_t)(st->hi >> 8);
    out->bytes[7] = (uint8_t)st->hi;
    for (int i = 0; i < 8; i++)
        out->bytes[8 + i] = (uint8_t)(st->lo >> (56 - 8 * i));
}

/* Make a new id for now into `out`: see deja__id_new_ns(). Thread-safe and
 * lock-free; strictly increasing per thread, unique across threads. */
void deja__id_new(deja_id *out)
{
    deja__id_new_ns(out, deja__now_ns());
}

/* Make an id for the time `unix_ms` (clamped to 0..2^48-1) with fresh
 * random bits into `out`. Not ordered against other ids of the same
 * millisecond. */
void deja__id_new_at(deja_id *out, int64_t unix_ms)
{
    put_time(out, unix_ms);
    random_bytes(out->bytes + 6, 10);
}
