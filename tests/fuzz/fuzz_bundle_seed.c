/*
 * tests/fuzz/fuzz_bundle_seed.c -- make the seed corpus of fuzz_bundle from
 * a real bundle: `fuzz_bundle_seed BUNDLE DIR` writes DIR/file (mode byte 0
 * then the whole file) and DIR/body (mode byte 1 then the decompressed
 * records). Exit status 0, or 2 with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;

    if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET))
        goto fail;
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, fp) != (size_t)n)
        goto fail;
    fclose(fp);
    *size = (size_t)n;
    return buf;
fail:
    free(buf);
    if (fp != NULL)
        fclose(fp);
    return NULL;
}

static int spit(const char *dir, const char *name, unsigned char mode, const void *data,
                size_t size)
{
    char path[4096];
    FILE *fp;
    int ok;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    fp = fopen(path, "wb");
    if (fp == NULL)
        return -1;
    ok = fputc(mode, fp) != EOF && fwrite(data, 1, size, fp) == size;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    unsigned char *file, *body;
    unsigned long long dlen = 0;
    size_t size = 0, got;

    if (argc != 3) {
        fprintf(stderr, "usage: fuzz_bundle_seed BUNDLE DIR\n");
        return 2;
    }
    file = slurp(argv[1], &size);
    if (file == NULL || size < 48) {
        fprintf(stderr, "fuzz_bundle_seed: cannot read a bundle from '%s'\n", argv[1]);
        return 2;
    }
    for (int i = 7; i >= 0; i--)
        dlen = dlen << 8 | file[24 + i];
    if (dlen > ((unsigned long long)64 << 20) || (body = malloc((size_t)dlen + 1)) == NULL) {
        fprintf(stderr, "fuzz_bundle_seed: '%s' is too large for a seed\n", argv[1]);
        return 2;
    }
    got = ZSTD_decompress(body, (size_t)dlen, file + 48, size - 48);
    if (ZSTD_isError(got) || got != dlen) {
        fprintf(stderr, "fuzz_bundle_seed: '%s' does not decompress\n", argv[1]);
        return 2;
    }
    if (spit(argv[2], "file", 0, file, size) != 0 || spit(argv[2], "body", 1, body, got) != 0) {
        fprintf(stderr, "fuzz_bundle_seed: cannot write into '%s'\n", argv[2]);
        return 2;
    }
    free(body);
    free(file);
    return 0;
}
