/*
 * tests/test_id.c -- trace ids, digests and error messages.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "deja.h"
#include "store/store.h"

static void test_id__known_vector(void **state)
{
    const char *text = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    char back[DEJA_ID_STRLEN + 1];
    deja_id id;

    (void)state;
    assert_int_equal(deja_id_parse(&id, text), 0);
    deja_id_format(&id, back);
    assert_string_equal(back, text);
    /* 01ARZ3NDEK is 1469922850259 ms (0x1563e3ab5d3). */
    assert_int_equal(deja_id_time_ms(&id), 1469922850259LL);
    assert_int_equal(id.bytes[0], 0x01);
    assert_int_equal(id.bytes[1], 0x56);
    assert_int_equal(id.bytes[5], 0xd3);
    /* The ULID spec's example: ulid(1469918176385) starts with 01ARYZ6S41. */
    deja__id_new_at(&id, 1469918176385LL);
    deja_id_format(&id, back);
    assert_memory_equal(back, "01ARYZ6S41", 10);
}

static void test_id__round_trip(void **state)
{
    char text[DEJA_ID_STRLEN + 1];
    deja_id a;
    deja_id b;

    (void)state;
    for (int i = 0; i < 1000; i++) {
        deja__id_new_at(&a, (int64_t)i * 7919 * 1000003);
        deja_id_format(&a, text);
        assert_int_equal(strlen(text), DEJA_ID_STRLEN);
        assert_int_equal(deja_id_parse(&b, text), 0);
        assert_memory_equal(a.bytes, b.bytes, 16);
        assert_int_equal(deja_id_time_ms(&b), (int64_t)i * 7919 * 1000003);
    }
    /* Each bit alone: one character, at the place its 5-bit group says. */
    for (int bit = 0; bit < 128; bit++) {
        const int pos = 25 - bit / 5;

        memset(a.bytes, 0, 16);
        a.bytes[15 - bit / 8] = (uint8_t)(1u << (bit % 8));
        deja_id_format(&a, text);
        assert_int_equal(deja_id_parse(&b, text), 0);
        assert_memory_equal(a.bytes, b.bytes, 16);
        for (int i = 0; i < DEJA_ID_STRLEN; i++)
            assert_int_equal(text[i] != '0', i == pos);
    }
    memset(a.bytes, 0xFF, 16);
    deja_id_format(&a, text);
    assert_string_equal(text, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    memset(a.bytes, 0, 16);
    deja_id_format(&a, text);
    assert_string_equal(text, "00000000000000000000000000");
}

static void test_id__aliases_and_case(void **state)
{
    deja_id a;
    deja_id b;

    (void)state;
    assert_int_equal(deja_id_parse(&a, "01ARZ3NDEKTSV4RRFFQ69G5FAV"), 0);
    assert_int_equal(deja_id_parse(&b, "01arz3ndektsv4rrffq69g5fav"), 0);
    assert_memory_equal(a.bytes, b.bytes, 16);
    assert_int_equal(deja_id_parse(&b, "OiARZ3NDEKTSV4RRFFQ69G5FAV"), 0);
    assert_memory_equal(a.bytes, b.bytes, 16);
    assert_int_equal(deja_id_parse(&b, "oLARZ3NDEKTSV4RRFFQ69G5FAV"), 0);
    assert_memory_equal(a.bytes, b.bytes, 16);
}

static void test_id__bad_strings(void **state)
{
    static const char *bad[] = {
        "",
        "01ARZ3NDEKTSV4RRFFQ69G5FA",   /* 25 */
        "01ARZ3NDEKTSV4RRFFQ69G5FAVX", /* 27 */
        "01ARZ3NDEKTSV4RRFFQ69G5FAU",  /* U is not Crockford */
        "01ARZ3NDEKTSV4RRFFQ69G5FA-",
        "01ARZ3NDEKTSV4RRFFQ69G5FA ",
        "80000000000000000000000000", /* overflows 128 bits */
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
    };
    deja_id id;
    deja_id keep;

    (void)state;
    memset(keep.bytes, 0xAB, 16);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        id = keep;
        deja__error_clear();
        assert_int_equal(deja_id_parse(&id, bad[i]), DEJA_EINVAL);
        assert_true(strlen(deja_error_last()) > 0);
        assert_memory_equal(id.bytes, keep.bytes, 16);
    }
    assert_int_equal(deja_id_parse(&id, NULL), DEJA_EINVAL);
    assert_int_equal(deja_id_parse(&id, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"), 0);
}

static int cmp_sign(int c)
{
    return (c > 0) - (c < 0);
}

static void test_id__text_sorts_like_bytes(void **state)
{
    char ta[DEJA_ID_STRLEN + 1];
    char tb[DEJA_ID_STRLEN + 1];
    deja_id a;
    deja_id b;

    (void)state;
    for (int i = 0; i < 2000; i++) {
        deja__id_new_at(&a, 1700000000000LL + (i % 3));
        deja__id_new_at(&b, 1700000000000LL + (i % 5));
        if (i % 7 == 0)
            memcpy(b.bytes, a.bytes, 10); /* share a long prefix */
        deja_id_format(&a, ta);
        deja_id_format(&b, tb);
        assert_int_equal(cmp_sign(memcmp(a.bytes, b.bytes, 16)), cmp_sign(strcmp(ta, tb)));
    }
}

static void test_id__new_increases(void **state)
{
    deja_id prev;
    deja_id next;
    const int64_t before = deja__now_ns() / 1000000;

    (void)state;
    deja__id_new(&prev);
    for (int i = 0; i < 10000; i++) {
        deja__id_new(&next);
        assert_true(memcmp(prev.bytes, next.bytes, 16) < 0);
        prev = next;
    }
    /* The id carries the time it was made at (loosely: not a timing test). */
    assert_true(deja_id_time_ms(&prev) >= before);
    assert_true(deja_id_time_ms(&prev) < before + 3600 * 1000);
}

#define NTHREADS 4
#define PER_THREAD 20000

static void *make_ids(void *arg)
{
    deja_id *ids = arg;

    for (int i = 0; i < PER_THREAD; i++)
        deja__id_new(&ids[i]);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* Run `maker` on NTHREADS threads at once, each filling its own PER_THREAD
 * ids, and assert that each thread's ids strictly increase and that no id
 * appears twice across all threads. Fails the test on any error. */
static void check_unique_across_threads(void *(*maker)(void *))
{
    pthread_t th[NTHREADS];
    deja_id *ids = calloc((size_t)NTHREADS * PER_THREAD, sizeof *ids);

    assert_non_null(ids);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, maker, ids + (size_t)t * PER_THREAD), 0);
    for (int t = 0; t < NTHREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < NTHREADS; t++) {
        const deja_id *mine = ids + (size_t)t * PER_THREAD;
        for (int i = 1; i < PER_THREAD; i++)
            assert_true(memcmp(mine[i - 1].bytes, mine[i].bytes, 16) < 0);
    }
    qsort(ids, (size_t)NTHREADS * PER_THREAD, sizeof *ids, cmp_id);
    for (size_t i = 1; i < (size_t)NTHREADS * PER_THREAD; i++)
        assert_true(memcmp(ids[i - 1].bytes, ids[i].bytes, 16) < 0);
    free(ids);
}

static void test_id__new_unique_across_threads(void **state)
{
    (void)state;
    check_unique_across_threads(make_ids);
}

/* The id carries the millisecond of the clock read it is given, and stays
 * strictly increasing on one thread even when the clock steps back. */
static void test_id__new_ns_time_and_step_back(void **state)
{
    const int64_t ns = 1900000000123456789LL; /* after any earlier id of this thread */
    deja_id a, b, c;

    (void)state;
    deja__id_new_ns(&a, ns);
    assert_int_equal(deja_id_time_ms(&a), ns / 1000000);
    deja__id_new_ns(&b, ns - 5000000000LL); /* the clock went back 5 s */
    assert_true(memcmp(a.bytes, b.bytes, 16) < 0);
    assert_int_equal(deja_id_time_ms(&b), ns / 1000000);
    deja__id_new_ns(&c, ns + 2000000); /* 2 ms later: a new millisecond */
    assert_true(memcmp(b.bytes, c.bytes, 16) < 0);
    assert_int_equal(deja_id_time_ms(&c), ns / 1000000 + 2);
}

/* Threads making ids for the very same millisecond (the worst case for
 * the lock-free generator) never collide, and each thread's ids increase. */
static void *make_ids_same_ms(void *arg)
{
    deja_id *ids = arg;

    for (int i = 0; i < PER_THREAD; i++)
        deja__id_new_ns(&ids[i], 1760000000000000000LL);
    return NULL;
}

static void test_id__same_ms_unique_across_threads(void **state)
{
    (void)state;
    check_unique_across_threads(make_ids_same_ms);
}

/* A forked child does not repeat its parent's ids: both make ids for the
 * same millisecond after the fork, and they differ. */
static void test_id__fork_does_not_repeat(void **state)
{
    const int64_t ns = 1950000000000000000LL;
    int fd[2];
    deja_id parent_ids[64], child_ids[64];

    (void)state;
    deja__id_new_ns(&parent_ids[0], ns); /* the parent's generator is seeded */
    assert_int_equal(pipe(fd), 0);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        deja_id mine[64];
        for (int i = 0; i < 64; i++)
            deja__id_new_ns(&mine[i], ns + 1000000);
        _exit(write(fd[1], mine, sizeof mine) == (ssize_t)sizeof mine ? 0 : 1);
    }
    close(fd[1]);
    for (int i = 0; i < 64; i++)
        deja__id_new_ns(&parent_ids[i], ns + 1000000);
    size_t got = 0;
    while (got < sizeof child_ids) {
        const ssize_t n = read(fd[0], (char *)child_ids + got, sizeof child_ids - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(fd[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++)
            assert_true(memcmp(parent_ids[i].bytes, child_ids[j].bytes, 16) != 0);
}

static void test_id__digest(void **state)
{
    XXH128_canonical_t c;
    deja_digest d;
    char hex[33];

    (void)state;
    d = deja_digest_of("", 0);
    XXH128_canonicalFromHash(&c, XXH3_128bits("", 0));
    assert_memory_equal(d.bytes, c.digest, 16);
    deja_digest_format(&d, hex);
    assert_string_equal(hex, "99aa06d3014798d86001c324468d497f");
    d = deja_digest_of(NULL, 0);
    assert_memory_equal(d.bytes, c.digest, 16);

    d = deja_digest_of("abc", 3);
    XXH128_canonicalFromHash(&c, XXH3_128bits("abc", 3));
    assert_memory_equal(d.bytes, c.digest, 16);
    deja_digest_format(&d, hex);
    assert_int_equal(strlen(hex), 32);
    for (int i = 0; i < 32; i++)
        assert_non_null(strchr("0123456789abcdef", hex[i]));
}

static void *read_error(void *arg)
{
    char *out = arg;

    snprintf(out, 64, "%s", deja_error_last());
    return NULL;
}

static void test_id__error_messages(void **state)
{
    char other[64];
    pthread_t th;
    char longer[2000];

    (void)state;
    deja__error_clear();
    assert_string_equal(deja_error_last(), "");
    assert_int_equal(deja__error_set(DEJA_ECORRUPT, "record is truncated at byte %d", 412),
                     DEJA_ECORRUPT);
    assert_string_equal(deja_error_last(), "record is truncated at byte 412");
    assert_int_equal(deja__error_wrap(DEJA_ECORRUPT, "trace %s: ", "01J8"), DEJA_ECORRUPT);
    assert_string_equal(deja_error_last(), "trace 01J8: record is truncated at byte 412");

    /* The message is per thread. */
    assert_int_equal(pthread_create(&th, NULL, read_error, other), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_string_equal(other, "");

    /* Formatting from the current message is safe. */
    deja__error_set(DEJA_EIO, "inner");
    deja__error_set(DEJA_EIO, "outer (%s)", deja_error_last());
    assert_string_equal(deja_error_last(), "outer (inner)");

    /* Long messages are truncated, never overflowed. */
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    deja__error_set(DEJA_EIO, "%s", longer);
    assert_true(strlen(deja_error_last()) < sizeof longer - 1);
    deja__error_wrap(DEJA_EIO, "%s: ", longer);
    assert_true(strlen(deja_error_last()) < sizeof longer - 1);

    deja__error_clear();
    deja__error_wrap(DEJA_EIO, "store %s: ", "x");
    assert_string_equal(deja_error_last(), "store x");

    assert_string_equal(deja_strerror(DEJA_ENOTFOUND), "not found");
    assert_string_equal(deja_strerror(DEJA_ECORRUPT), "corrupt");
    assert_non_null(deja_strerror(12345));
    for (int code = 0; code >= DEJA_EMODEL; code--)
        assert_true(strlen(deja_strerror(code)) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id__known_vector),
        cmocka_unit_test(test_id__round_trip),
        cmocka_unit_test(test_id__aliases_and_case),
        cmocka_unit_test(test_id__bad_strings),
        cmocka_unit_test(test_id__text_sorts_like_bytes),
        cmocka_unit_test(test_id__new_increases),
        cmocka_unit_test(test_id__new_unique_across_threads),
        cmocka_unit_test(test_id__new_ns_time_and_step_back),
        cmocka_unit_test(test_id__same_ms_unique_across_threads),
        cmocka_unit_test(test_id__fork_does_not_repeat),
        cmocka_unit_test(test_id__digest),
        cmocka_unit_test(test_id__error_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
