/*
 * tests/fuzz/fuzz_import.c -- libFuzzer target for importing a bundle into
 * a store and printing what was imported, as `deja import` then
 * `deja show ID --json` and `deja export --md` do. The first byte of an
 * input picks what the rest is, as in fuzz_bundle.c: even, a whole bundle
 * file; odd, a decompressed body wrapped here with a correct header and
 * checksum. Whatever is accepted is then printed in every form (to
 * /dev/null): nothing may crash, leak or run away.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle/bundle_internal.h"
#include "cli/cli.h"
#include "cli/cli_bundle.h"
#include "proto/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char file[64];
static FILE *sink;

static void cleanup(void)
{
    if (file[0] != '\0')
        unlink(file);
    if (sink != NULL)
        fclose(sink);
}

/* Print every trace of `store` (ids `ids`) as JSON and Markdown. */
static void print_all(deja_store *store, const deja_id *ids, size_t n, const deja_bundle_info *info)
{
    for (size_t i = 0; i < n; i++) {
        deja_trace *t = NULL;
        deja_env *env = NULL;
        if (deja_trace_get(store, &ids[i], &t) != 0)
            continue;
        json_t *j = cli_trace_json(t, 1);
        if (j != NULL) {
            if (t->has_env && deja_store_env_get(store, &t->env, &env) == 0) {
                json_t *e = cli_env_json(env);
                if (e != NULL)
                    json_object_set_new(j, "env", e);
                deja_env_free(env);
            }
            char *text = json_dumps(j, JSON_COMPACT);
            if (text != NULL)
                fputs(text, sink);
            free(text);
            json_decref(j);
        }
        deja_trace_free(t);
    }
    cli_bundle_md(sink, store, ids, n, "fuzz.deja", info);
}

/* cli_select's error messages go to stderr: quiet while fuzzing. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    deja__buf wrapped = {0};
    deja_bundle *b = NULL;
    const uint8_t *bytes = data + 1;
    size_t n = size - 1;
    FILE *fp;

    if (size == 0)
        return 0;
    if (file[0] == '\0') {
        int fd;
        snprintf(file, sizeof file, "/tmp/deja-fuzz-import-XXXXXX");
        fd = mkstemp(file);
        sink = fopen("/dev/null", "w");
        if (fd < 0 || sink == NULL)
            abort();
        close(fd);
        atexit(cleanup);
    }
    if ((data[0] & 1) != 0) {
        if (deja__bundle_wrap(data + 1, size - 1, &wrapped) != 0)
            return 0;
        bytes = wrapped.data;
        n = wrapped.size;
    }
    fp = fopen(file, "wb");
    if (fp == NULL || fwrite(bytes, 1, n, fp) != n || fclose(fp) != 0)
        abort();
    deja__buf_free(&wrapped);
    if (deja_bundle_open(&b, file) == 0) {
        deja_store *store = deja_bundle_store(b);
        cli_filter all;
        deja_id *ids = NULL;
        size_t nids = 0;
        cli_filter_init(&all);
        if (cli_select(store, NULL, 0, &all, &ids, &nids, NULL) == 0)
            print_all(store, ids, nids, deja_bundle_info_get(b));
        free(ids);
        cli_filter_free(&all);
        deja_bundle_close(b);
    }
    return 0;
}
