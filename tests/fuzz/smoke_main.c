/*
 * tests/fuzz/smoke_main.c -- runs a libFuzzer target without libFuzzer (and
 * without clang), for `./run test`: `smoke_fuzz_X CORPUS_DIR [MUTATIONS]`
 * feeds LLVMFuzzerTestOneInput every file of CORPUS_DIR, then MUTATIONS
 * (default 3000) deterministic mutations of them: bits flipped, bytes set,
 * inserted or deleted, runs duplicated, inputs cut or spliced together.
 * A crash, a sanitizer report or a leak fails the test; `./run fuzz` does
 * the real, coverage-guided fuzzing.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SMOKE_MAX_INPUT (1 << 20)
#define MAX_FILES 256

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

typedef struct input {
    uint8_t *data;
    size_t size;
} input;

static int read_file(const char *path, input *out)
{
    FILE *fp = fopen(path, "rb");
    size_t n;

    if (fp == NULL)
        return -1;
    out->data = malloc(SMOKE_MAX_INPUT);
    if (out->data == NULL) {
        fclose(fp);
        return -1;
    }
    n = fread(out->data, 1, SMOKE_MAX_INPUT, fp);
    fclose(fp);
    out->size = n;
    return 0;
}

/* Apply one random mutation to `buf` (`*n` bytes used of SMOKE_MAX_INPUT). */
static void mutate(uint8_t *buf, size_t *n, const input *other)
{
    const uint64_t r = next();
    const size_t at = *n > 0 ? (size_t)(next() % *n) : 0;

    switch (r % 8) {
    case 0: /* flip a bit */
        if (*n > 0)
            buf[at] ^= (uint8_t)(1u << (next() % 8));
        break;
    case 1: /* set a byte to an interesting value */
        if (*n > 0) {
            static const uint8_t vals[] = {0, 1, 0x7f, 0x80, 0xff, '"', '[', ']', '{', '}',
                                           ',', ':', '0', '9', '-', '\\'};
            buf[at] = vals[next() % sizeof vals];
        }
        break;
    case 2: /* insert a byte */
        if (*n < SMOKE_MAX_INPUT) {
            memmove(buf + at + 1, buf + at, *n - at);
            buf[at] = (uint8_t)next();
            (*n)++;
        }
        break;
    case 3: /* delete a run */
        if (*n > 0) {
            size_t len = 1 + (size_t)(next() % 16);
            if (len > *n - at)
                len = *n - at;
            memmove(buf + at, buf + at + len, *n - at - len);
            *n -= len;
        }
        break;
    case 4: /* duplicate a run */
        if (*n > 0) {
            size_t len = 1 + (size_t)(next() % 64);
            if (len > *n - at)
                len = *n - at;
            if (*n + len <= SMOKE_MAX_INPUT) {
                memmove(buf + at + len, buf + at, *n - at);
                (*n) += len;
            }
        }
        break;
    case 5: /* cut */
        *n = at;
        break;
    case 6: /* splice: the tail of another input from here */
        if (other->size > 0) {
            size_t from = (size_t)(next() % other->size);
            size_t len = other->size - from;
            if (at + len > SMOKE_MAX_INPUT)
                len = SMOKE_MAX_INPUT - at;
            memcpy(buf + at, other->data + from, len);
            *n = at + len;
        }
        break;
    default: /* a little-endian length field blown up */
        if (*n >= 4) {
            size_t p = at + 4 <= *n ? at : *n - 4;
            buf[p + (next() % 4)] = 0xff;
        }
        break;
    }
}

int main(int argc, char **argv)
{
    input files[MAX_FILES];
    size_t nfiles = 0;
    long mutations = argc > 2 ? strtol(argv[2], NULL, 10) : 3000;
    DIR *d;
    const struct dirent *e;
    uint8_t *buf;

    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [MUTATIONS]\n", argv[0]);
        return 2;
    }
    d = opendir(argv[1]);
    if (d == NULL) {
        fprintf(stderr, "%s: cannot open the corpus '%s'\n", argv[0], argv[1]);
        return 2;
    }
    while ((e = readdir(d)) != NULL && nfiles < MAX_FILES) {
        char path[4096];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        if (read_file(path, &files[nfiles]) == 0)
            nfiles++;
    }
    closedir(d);
    if (nfiles == 0) {
        fprintf(stderr, "%s: the corpus '%s' is empty\n", argv[0], argv[1]);
        return 2;
    }
    buf = malloc(SMOKE_MAX_INPUT);
    if (buf == NULL)
        return 2;
    for (size_t i = 0; i < nfiles; i++)
        LLVMFuzzerTestOneInput(files[i].data, files[i].size);
    for (long i = 0; i < mutations; i++) {
        const input *base = &files[(size_t)i % nfiles];
        size_t n = base->size;
        memcpy(buf, base->data, n);
        for (uint64_t k = 1 + next() % 4; k > 0; k--)
            mutate(buf, &n, &files[next() % nfiles]);
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("smoke: %zu corpus inputs and %ld mutations of them, no crash\n", nfiles, mutations);
    for (size_t i = 0; i < nfiles; i++)
        free(files[i].data);
    free(buf);
    return 0;
}
