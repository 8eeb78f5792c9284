/*
 * store/id.c -- trace ids (ULID layout), digests and the clock.
 *
 * An id is 48 bits of Unix milliseconds then 80 random bits, big-endian, so
 * that byte order is time order. Its text form is the standard ULID one:
 * 26 characters of Crockford base32, the first holding the top 3 bits.
 * Within one process, ids are strictly increasing: an id made in the same
 * millisecond as the previous one is the previous one plus one.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "deja.h"
#include "store/store.h"

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#define TIME_MAX_MS ((int64_t)0xFFFFFFFFFFFF)

/* Return the 5-bit group `i` (0..25) of `id`, where the id is read as a
 * 130-bit number whose two top bits are zero. */
static unsigned get5(const uint8_t *b, unsigned i)
{
    const int start = (int)i * 5 - 2; /* first bit, counted from the top of the 128 */
    unsigned v = 0;

    for (int k = 0; k < 5; k++) {
        const int bit = start + k;
        v <<= 1;
        if (bit >= 0)
            v |= (b[bit / 8] >> (7 - bit % 8)) & 1u;
    }
    return v;
}

/* Write the 26 characters of `id` and a NUL into `out`. */
void deja_id_format(const deja_id *id, char out[DEJA_ID_STRLEN + 1])
{
    for (unsigned i = 0; i < DEJA_ID_STRLEN; i++)
        out[i] = crockford[get5(id->bytes, i)];
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

/* Add one to the 80-bit random part of `id`. Returns non-zero when it
 * wrapped around to zero. */
static int increment_random(deja_id *id)
{
    for (int i = 15; i >= 6; i--) {
        if (++id->bytes[i] != 0)
            return 0;
    }
    return 1;
}

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static deja_id id_last;
static int64_t id_last_ms = -1;

/* Make a new id for now into `out`. Ids are strictly increasing within the
 * process across threads: in the millisecond of the previous id (or if the
 * clock stepped back) the previous id plus one is used, and when its random
 * part is exhausted the next millisecond begins. Thread-safe. */
void deja__id_new(deja_id *out)
{
    int64_t now_ms = deja__now_ns() / 1000000;
    deja_id id;

    pthread_mutex_lock(&id_lock);
    if (id_last_ms >= 0 && now_ms <= id_last_ms) {
        id = id_last;
        if (increment_random(&id)) {
            id_last_ms++;
            put_time(&id, id_last_ms);
            random_bytes(id.bytes + 6, 10);
        }
    } else {
        id_last_ms = now_ms;
        put_time(&id, now_ms);
        random_bytes(id.bytes + 6, 10);
        /* Leave room to count up in this millisecond without wrapping. */
        id.bytes[6] &= 0x7F;
    }
    id_last = id;
    pthread_mutex_unlock(&id_lock);
    *out = id;
}

/* Make an id for the time `unix_ms` (clamped to 0..2^48-1) with fresh
 * random bits into `out`. Not ordered against other ids of the same
 * millisecond. */
void deja__id_new_at(deja_id *out, int64_t unix_ms)
{
    put_time(out, unix_ms);
    random_bytes(out->bytes + 6, 10);
}

/* Return the XXH3-128 digest of `size` bytes at `data`, in the canonical
 * big-endian byte order. `data` may be NULL when `size` is 0. */
deja_digest deja_digest_of(const void *data, size_t size)
{
    static const uint8_t empty[1];
    deja_digest d;
    XXH128_canonical_t c;

    XXH128_canonicalFromHash(&c, XXH3_128bits(size ? data : empty, size));
    memcpy(d.bytes, c.digest, sizeof d.bytes);
    return d;
}

/* Write the 32 lowercase hex characters of `d` and a NUL into `out`. */
void deja_digest_format(const deja_digest *d, char out[33])
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[d->bytes[i] >> 4];
        out[2 * i + 1] = hex[d->bytes[i] & 0xF];
    }
    out[32] = '\0';
}
