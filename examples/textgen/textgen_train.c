/*
 * textgen_train.c -- `textgen-train CORPUS OUT [ORDER]`: count the
 * character contexts of CORPUS and write the textgen model file OUT (see
 * textgen_model.h). Run by CMake at build time; deterministic: the same
 * corpus always gives the same bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "textgen_model.h"

#define MAX_CORPUS ((size_t)16 << 20)

/* Read the whole file at `path` into a malloc'd buffer. Returns NULL (after
 * printing why) on failure. */
static uint8_t *read_all(const char *path, size_t *size)
{
    uint8_t *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    buf = malloc(MAX_CORPUS);
    if (!buf) {
        fprintf(stderr, "textgen-train: out of memory\n");
        goto cleanup;
    }
    *size = fread(buf, 1, MAX_CORPUS, f);
    if (ferror(f) || !feof(f)) {
        fprintf(stderr, "textgen-train: %s: read error or larger than %zu bytes\n", path,
                MAX_CORPUS);
        free(buf);
        buf = NULL;
    }
cleanup:
    fclose(f);
    return buf;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

int main(int argc, char **argv)
{
    int rc = 1;
    uint8_t *corpus = NULL;
    uint64_t *pairs = NULL;
    uint8_t *ctxs = NULL;
    uint8_t *ents = NULL;
    FILE *out = NULL;
    size_t size = 0;
    unsigned order = 4;

    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: textgen-train CORPUS OUT [ORDER]\n");
        return 2;
    }
    if (argc == 4) {
        order = (unsigned)strtoul(argv[3], NULL, 10);
        if (order < 1 || order > TEXTGEN_MAX_ORDER) {
            fprintf(stderr, "textgen-train: ORDER must be 1..%u\n", TEXTGEN_MAX_ORDER);
            return 2;
        }
    }
    corpus = read_all(argv[1], &size);
    if (!corpus) {
        goto cleanup;
    }
    if (size == 0) {
        fprintf(stderr, "textgen-train: %s is empty\n", argv[1]);
        goto cleanup;
    }

    /* One sorted pass per context length: (len, key, next) packed in a u64
     * sorts exactly as the file wants contexts and entries. */
    size_t npairs = size * (order + 1);
    pairs = malloc(npairs * sizeof *pairs);
    ctxs = malloc(npairs * TEXTGEN_CTX_SIZE);
    ents = malloc(npairs * TEXTGEN_ENTRY_SIZE);
    if (!pairs || !ctxs || !ents) {
        fprintf(stderr, "textgen-train: out of memory\n");
        goto cleanup;
    }
    size_t n = 0;
    for (unsigned len = 0; len <= order; len++) {
        for (size_t i = len; i < size; i++) {
            uint64_t key = 0;
            for (unsigned j = 0; j < len; j++) {
                key = (key << 8) | corpus[i - len + j];
            }
            pairs[n++] = ((uint64_t)len << 48) | (key << 8) | corpus[i];
        }
    }
    qsort(pairs, n, sizeof *pairs, cmp_u64);

    size_t nctx = 0, nent = 0;
    for (size_t i = 0; i < n;) {
        uint64_t ctx = pairs[i] >> 8;
        uint8_t *c = ctxs + nctx * TEXTGEN_CTX_SIZE;
        uint32_t first = (uint32_t)nent;
        while (i < n && (pairs[i] >> 8) == ctx) {
            size_t j = i;
            while (j < n && pairs[j] == pairs[i]) {
                j++;
            }
            uint8_t *e = ents + nent * TEXTGEN_ENTRY_SIZE;
            e[0] = (uint8_t)pairs[i];
            put_u32(e + 1, (uint32_t)(j - i));
            nent++;
            i = j;
        }
        put_u32(c, (uint32_t)(ctx & 0xffffffffu));
        put_u32(c + 4, first);
        put_u16(c + 8, (uint16_t)(nent - first));
        c[10] = (uint8_t)(ctx >> 40);
        c[11] = 0;
        nctx++;
    }
    if (nctx > TEXTGEN_MAX_CONTEXTS || nent > TEXTGEN_MAX_ENTRIES) {
        fprintf(stderr, "textgen-train: model too large (%zu contexts, %zu entries)\n", nctx, nent);
        goto cleanup;
    }

    uint8_t header[TEXTGEN_HEADER_SIZE] = {0};
    memcpy(header, TEXTGEN_MAGIC, 8);
    put_u32(header + 8, TEXTGEN_FORMAT);
    put_u32(header + 12, order);
    put_u32(header + 16, (uint32_t)nctx);
    put_u32(header + 20, (uint32_t)nent);
    put_u32(header + 24, (uint32_t)size);
    put_u32(header + 28, (uint32_t)((uint64_t)size >> 32));

    out = fopen(argv[2], "wb");
    if (!out) {
        perror(argv[2]);
        goto cleanup;
    }
    if (fwrite(header, 1, sizeof header, out) != sizeof header ||
        fwrite(ctxs, TEXTGEN_CTX_SIZE, nctx, out) != nctx ||
        fwrite(ents, TEXTGEN_ENTRY_SIZE, nent, out) != nent) {
        perror(argv[2]);
        goto cleanup;
    }
    if (fclose(out) != 0) {
        out = NULL;
        perror(argv[2]);
        goto cleanup;
    }
    out = NULL;
    printf("textgen-train: %zu bytes of corpus, order %u: %zu contexts, %zu entries\n", size, order,
           nctx, nent);
    rc = 0;

cleanup:
    if (out) {
        fclose(out);
    }
    free(ents);
    free(ctxs);
    free(pairs);
    free(corpus);
    return rc;
}
