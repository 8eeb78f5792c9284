/*
 * cli/cmd_diff.c -- `deja diff ID_A ID_B`: the replay diff applied to the
 * outputs of two recorded traces.
 */
#include "cli.h"
#include "cli_escape.h"

#include <stdlib.h>
#include <string.h>

/* Until cli/cli.h declares it. */

static const char help[] =
    "usage: deja diff ID_A ID_B [--atol X] [--rtol Y] [--ulps N] [--max-hunks N] [--json]\n"
    "\n"
    "Diff the outputs of two recorded traces (ids or unique id prefixes) as replay\n"
    "does: per output, floats by error, ULP distance and label changes, integers and\n"
    "bytes by first differing offset, text by first differing position and the word\n"
    "hunks around each difference ([-removed-]{+added+}).\n"
    "\n"
    "  --atol X           absolute tolerance for floats (default by dtype: 1e-5,\n"
    "                     1e-7 for f64)\n"
    "  --rtol Y           relative tolerance for floats (default by dtype: 1.3e-6\n"
    "                     for f32, 1e-7 f64, 1e-3 f16, 1.6e-2 bf16)\n"
    "  --ulps N           floats at most N units in the last place apart are close\n"
    "  --max-hunks N      describe up to N differing hunks of a text (default 3)\n"
    "  --json             the diff as one JSON object\n"
    "\n"
    "Exit status: 0 when the outputs are the same or close, 1 when they differ,\n"
    "2 on trouble.\n";

/* Same codes as cmd_replay.c, for cli_replay_option. */

/* `deja diff`. */
int cmd_diff(const cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        {"atol", required_argument, NULL, OPT_ATOL},
        {"rtol", required_argument, NULL, OPT_RTOL},
        {"ulps", required_argument, NULL, OPT_ULPS},
        {"max-hunks", required_argument, NULL, OPT_MAX_HUNKS},
        CLI_LONGOPT_END,
    };
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    deja_store *store = NULL;
    deja_trace *ta = NULL, *tb = NULL;
    deja_diff *d = NULL;
    deja_id ia, ib;
    char sa[DEJA_ID_STRLEN + 1], sb[DEJA_ID_STRLEN + 1];
    int first = 1, json = 0, ret = CLI_EXIT_TROUBLE, c, rc;

    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &json, &ret)) != -1) {
        if (c == '?' || cli_replay_option(&o, c, optarg) != 1)
            goto cleanup;
    }
    if (argc - optind != 2) {
        ret = cli_usage_error(help, "diff: expected two trace ids, got %d", argc - optind);
        goto cleanup;
    }
    if (cli_store_open_read(g, &store) != 0 || cli_resolve(store, argv[optind], &ia) != 0 ||
        cli_resolve(store, argv[optind + 1], &ib) != 0) {
        goto cleanup;
    }
    deja_id_format(&ia, sa);
    deja_id_format(&ib, sb);
    rc = deja_trace_get(store, &ia, &ta);
    if (rc != 0) {
        cli_lib_error(rc, "trace %s", sa);
        goto cleanup;
    }
    rc = deja_trace_get(store, &ib, &tb);
    if (rc != 0) {
        cli_lib_error(rc, "trace %s", sb);
        goto cleanup;
    }
    /* What the outputs are, as the first trace (else the second) declared. */
    o.diff.kinds = ta->noutput_kinds ? ta->output_kinds : tb->output_kinds;
    o.diff.nkinds = ta->noutput_kinds ? ta->noutput_kinds : tb->noutput_kinds;
    rc = deja_diff_outputs(ta->outputs, ta->noutputs, tb->outputs, tb->noutputs, &o.diff, &d);
    if (rc != 0) {
        cli_lib_error(rc, "diff %s %s", sa, sb);
        goto cleanup;
    }
    if (json) {
        json_t *j = cli_diff_json(d);
        if (j) {
            json_object_set_new(j, "a", json_string(sa));
            json_object_set_new(j, "b", json_string(sb));
        }
        if (cli_json_print(j) != 0) {
            cli_error("diff: out of memory printing the diff");
            goto cleanup;
        }
    } else {
        printf("a: %s  %s@%s\nb: %s  %s@%s\n", sa, cli_term(ta->model_name),
               cli_term(ta->model_version), sb, cli_term(tb->model_name),
               cli_term(tb->model_version));
        size_t i, k = 0;
        for (i = 0; i < d->ntensors; i++) {
            k += d->tensors[i].kind != DEJA_DIFF_EQUAL;
        }
        if (k == 0) {
            printf("%s  %s\n", deja_verdict_name(d->verdict), cli_term(d->summary));
        } else {
            printf("%s  %zu of %zu output%s differ%s\n", deja_verdict_name(d->verdict), k,
                   d->ntensors, d->ntensors == 1 ? "" : "s", k == 1 ? "s" : "");
        }
        cli_diff_print(stdout, d, "    ", "a", "b");
    }
    fflush(stdout);
    if (ta->status != tb->status) {
        fprintf(stderr, "deja: diff: status differs: a %s, b %s\n", cli_status_name(ta->status),
                cli_status_name(tb->status));
        ret = CLI_EXIT_DIFF;
        goto cleanup;
    }
    ret = d->verdict == DEJA_VERDICT_SAME || d->verdict == DEJA_VERDICT_CLOSE ? CLI_EXIT_OK
                                                                              : CLI_EXIT_DIFF;
cleanup:
    deja_diff_free(d);
    deja_trace_free(ta);
    deja_trace_free(tb);
    deja_store_close(store);
    return ret;
}
