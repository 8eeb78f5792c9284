/*
 * cli/cmd_export.c -- `deja export`: write selected traces, with every blob
 * and environment they reference, into one bundle file.
 */
#include "cli_bundle.h"
#include "cli_tree.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: deja export [ID...] [filters] -o FILE.deja [--with-model PLUGIN[:ARG]]\n"
    "                   [--include-plugin] [--level N] [--steps] [--md | --json]\n"
    "\n"
    "Write the selected traces into one self-contained bundle file: the traces, every\n"
    "blob and environment they reference, the identities (name, version, weights\n"
    "digest) of the models that recorded them, and an XXH3-128 checksum, compressed\n"
    "with zstd. Attach it to a bug report; `deja import FILE` adds it to any store\n"
    "(ids are kept), and `deja replay FILE --model ...` replays it in place.\n"
    "Traces: ids or unique id prefixes and/or the filters of `ls`; with neither,\n"
    "every trace in the store.\n"
    "\n"
    "  -o, --output FILE  the bundle to write (replaced atomically if it exists)\n"
    "  --steps            also the steps of each selected trace, nested (a pipeline\n"
    "                     run whole: deja ls --tree), so the bundle replays it step by\n"
    "                     step (at most 10000 traces)\n"
    "  --with-model PLUGIN[:ARG]\n"
    "                     record which plugin file (name, size, XXH3-128) and model\n"
    "                     identity reproduce the traces; the plugin is loaded to learn\n"
    "                     them, and is not put in the bundle\n"
    "  --include-plugin   also put the plugin file itself in the bundle (deja never\n"
    "                     loads or runs a plugin from a bundle; whoever receives it\n"
    "                     decides)\n"
    "  --level N          zstd level 1..19 (default 3)\n"
    "  --md               print a Markdown bug report: the bundle's identity, the\n"
    "                     commands that reproduce it, and each trace in brief\n"
    "  --json             print what was written as one JSON object\n"
    "  --otlp URL         instead of a bundle, send the traces as OpenTelemetry spans\n"
    "                     (OTLP/HTTP protobuf; a URL without a path gets /v1/traces)\n"
    "  --otlp-file FILE   instead, write that OTLP request body to FILE\n"
    "  --otlp-messages    also send the text in and out as gen_ai.*.messages\n"
    "  --otlp-inline N    payloads up to N bytes inline as attributes (default 4096;\n"
    "                     larger ones by XXH3-128 digest and size)\n"
    "  --otlp-service S   the resource's service.name (default deja)\n" CLI_FILTER_HELP
    "\n"
    "Exit status: 0 written, 2 trouble (nothing is left under FILE then).\n";

enum {
    OPT_OUTPUT = 'o',
    OPT_WITH_MODEL = CLI_OPT_FIRST_FREE,
    OPT_INCLUDE_PLUGIN,
    OPT_LEVEL,
    OPT_MD,
    OPT_OTLP,
    OPT_OTLP_FILE,
    OPT_OTLP_MESSAGES,
    OPT_OTLP_INLINE,
    OPT_OTLP_SERVICE,
    OPT_STEPS,
};

/* `export --otlp` / `--otlp-file`: spans instead of a bundle. */
static int export_otlp(deja_store *store, const deja_id *ids, size_t n,
                       const deja_otlp_options *o, int json)
{
    deja_otlp_stats st;
    const int rc = deja_otlp_export(store, ids, n, o, &st);

    if (rc != 0)
        return cli_lib_error(rc, "export");
    if (json) {
        json_t *j = json_pack("{s:s,s:I,s:I,s:I}", o->url ? "url" : "file",
                              o->url ? o->url : o->file, "spans", (json_int_t)st.spans,
                              "requests", (json_int_t)st.requests, "bytes", (json_int_t)st.bytes);
        if (cli_json_print(j) < 0)
            return cli_error("out of memory printing the summary");
    } else {
        printf("exported %llu traces as OTLP spans to %s (%llu bytes)\n",
               (unsigned long long)st.spans, o->url ? o->url : o->file,
               (unsigned long long)st.bytes);
    }
    return CLI_EXIT_OK;
}

/* `deja export`. */
int cmd_export(const cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        CLI_LONGOPT_FILTER_MODEL,
        CLI_LONGOPTS_FILTER,
        {"output", required_argument, NULL, OPT_OUTPUT},
        {"with-model", required_argument, NULL, OPT_WITH_MODEL},
        {"include-plugin", no_argument, NULL, OPT_INCLUDE_PLUGIN},
        {"level", required_argument, NULL, OPT_LEVEL},
        {"md", no_argument, NULL, OPT_MD},
        {"otlp", required_argument, NULL, OPT_OTLP},
        {"otlp-file", required_argument, NULL, OPT_OTLP_FILE},
        {"otlp-messages", no_argument, NULL, OPT_OTLP_MESSAGES},
        {"otlp-inline", required_argument, NULL, OPT_OTLP_INLINE},
        {"otlp-service", required_argument, NULL, OPT_OTLP_SERVICE},
        {"steps", no_argument, NULL, OPT_STEPS},
        CLI_LONGOPT_END,
    };
    deja_bundle_options o = DEJA_BUNDLE_OPTIONS_INIT;
    deja_otlp_options otlp = DEJA_OTLP_OPTIONS_INIT;
    uint64_t inline_max;
    deja_bundle_info *info = NULL;
    deja_store *store = NULL;
    deja_id *ids = NULL;
    const char *out = NULL;
    const int64_t now = cli_now_ns();
    cli_filter f;
    size_t n = 0, bad = 0;
    uint64_t level;
    int json = 0, md = 0, steps = 0;
    int first = 1;
    int ret = CLI_EXIT_TROUBLE;
    int c, rc;

    cli_filter_init(&f);
    /* cli_getopt knows long options only: take -o as --output. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "-o") == 0)
            argv[i] = (char *)"--output";
    }
    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &json, &ret)) != -1) {
        rc = cli_filter_option(&f, c, optarg, now);
        if (rc < 0)
            goto cleanup;
        if (rc > 0)
            continue;
        if (c == OPT_OUTPUT) {
            out = optarg;
        } else if (c == OPT_WITH_MODEL) {
            o.with_model = optarg;
        } else if (c == OPT_INCLUDE_PLUGIN) {
            o.include_plugin = 1;
        } else if (c == OPT_LEVEL) {
            if (cli_parse_u64(optarg, 19, &level) != 0 || level == 0) {
                ret = cli_usage_error(help, "export: --level wants 1..19, not '%s'", optarg);
                goto cleanup;
            }
            o.level = (int)level;
        } else if (c == OPT_MD) {
            md = 1;
        } else if (c == OPT_STEPS) {
            steps = 1;
        } else if (c == OPT_OTLP) {
            otlp.url = optarg;
        } else if (c == OPT_OTLP_FILE) {
            otlp.file = optarg;
        } else if (c == OPT_OTLP_MESSAGES) {
            otlp.messages = 1;
        } else if (c == OPT_OTLP_SERVICE) {
            otlp.service_name = optarg;
        } else if (c == OPT_OTLP_INLINE) {
            if (cli_parse_u64(optarg, (uint64_t)1 << 24, &inline_max) != 0 || inline_max == 0) {
                ret = cli_usage_error(help, "export: --otlp-inline wants 1..16777216, not '%s'",
                                      optarg);
                goto cleanup;
            }
            otlp.inline_max = (size_t)inline_max;
        } else {
            goto cleanup;
        }
    }
    if ((otlp.url != NULL) + (otlp.file != NULL) + (out != NULL) > 1) {
        ret = cli_usage_error(help, "export: give one of -o, --otlp and --otlp-file");
        goto cleanup;
    }
    if (otlp.url != NULL || otlp.file != NULL) {
        if (cli_store_open_read(g, &store) != 0 ||
            cli_select(store, argv + optind, (size_t)(argc - optind), &f, &ids, &n, &bad) != 0)
            goto cleanup;
        if (bad > 0) {
            cli_error("export: %zu traces cannot be read; nothing sent", bad);
            goto cleanup;
        }
        ret = export_otlp(store, ids, n, &otlp, json);
        goto cleanup;
    }
    if (out == NULL || out[0] == '\0') {
        ret = cli_usage_error(help, "export: where to? give -o FILE.deja");
        goto cleanup;
    }
    if (json && md) {
        ret = cli_usage_error(help, "export: --json and --md exclude each other");
        goto cleanup;
    }
    if (o.include_plugin && o.with_model == NULL) {
        ret = cli_usage_error(help, "export: --include-plugin needs --with-model PLUGIN");
        goto cleanup;
    }
    if (cli_store_open_read(g, &store) != 0)
        goto cleanup;
    if (cli_select(store, argv + optind, (size_t)(argc - optind), &f, &ids, &n, &bad) != 0)
        goto cleanup;
    if (bad > 0) {
        cli_error("export: %zu traces cannot be read; nothing written", bad);
        goto cleanup;
    }
    if (n == 0) {
        cli_error("export: no trace matches the selection; nothing written");
        goto cleanup;
    }
    if (steps && cli_pipeline_expand(store, &ids, &n) != 0)
        goto cleanup;
    {
        cli_progress bar;
        cli_progress_begin(&bar, "traces exported");
        rc = deja_bundle_export(store, ids, n, &o, out);
        cli_progress_end(&bar);
    }
    if (rc != 0) {
        cli_lib_error(rc, "export '%s'", out);
        goto cleanup;
    }
    /* Read back what was written: the summary comes from the file itself. */
    rc = deja_bundle_verify(out, &info);
    if (rc != 0) {
        /* A bundle its own reader refuses (a name from a store written by
         * other means) would be refused by every import: not left behind. */
        cli_lib_error(rc, "export: checking '%s' (removed)", out);
        (void)remove(out);
        goto cleanup;
    }
    if (md) {
        ret = cli_bundle_md(stdout, store, ids, n, out, info);
        goto cleanup;
    }
    if (json) {
        json_t *j = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "bundle", out, "traces",
                              (json_int_t)info->traces, "blobs", (json_int_t)info->blobs,
                              "environments",
                              (json_int_t)info->envs, "file_bytes", (json_int_t)info->file_bytes,
                              "body_bytes", (json_int_t)info->body_bytes);
        if (cli_json_print(j) < 0) {
            cli_error("out of memory printing the summary");
            goto cleanup;
        }
    } else {
        char size[32];

        cli_format_bytes(info->file_bytes, size, sizeof size);
        printf("exported %s, %s, %s to %s (%s)\n", cli_count(info->traces, "trace"),
               cli_count(info->blobs, "blob"), cli_count(info->envs, "environment"), out, size);
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_bundle_info_free(info);
    free(ids);
    deja_store_close(store);
    cli_filter_free(&f);
    return ret;
}
