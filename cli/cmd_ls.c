/*
 * cli/cmd_ls.c -- `deja ls`: list traces, newest first.
 */
#include "cli.h"
#include "cli_escape.h"
#include "cli_tree.h"

#include <stdlib.h>

#include <string.h>

static const char help[] =
    "usage: deja ls [--model M] [--version V] [--since T] [--until T] [--status ok|error] "
    "[--tag K=V]... [--limit N] [--root | --tree] [--json]\n"
    "\n"
    "List the traces in the store, newest first: id, start time (local), model@version,\n"
    "status, duration, tags and a preview of the first input.\n"
    "\n" CLI_FILTER_HELP "  --root             only top-level traces (no parent): pipeline runs and\n"
    "                     single inferences; --limit counts them\n"
    "  --tree             top-level traces, each with its steps drawn below it (a\n"
    "                     pipeline run: deja_span_parent); with --json, one nested\n"
    "                     tree object per top-level trace\n"
    "  --json             one JSON object per trace\n"
    "\n"
    "Exit status: 0, or 2 when the store cannot be read or some records are corrupt\n"
    "(those are named on stderr, the others still listed).\n";

#define PREVIEW_CHARS 40

typedef struct ls_state {
    const cli_global *g;
    int width; /* the terminal's, to fit lines to; 0 when not a terminal */
    int json;
    size_t listed;
    size_t bad;
    int failed; /* out of memory printing */
    int roots;  /* --root or --tree: only traces without a parent */
    int tree;   /* --tree: collect them in `ids`, draw their trees after */
    size_t limit;
    deja_id *ids;
    size_t nids, cap;
} ls_state;

/* Trees drawn per scan of the store (each scan reads every trace). */
#define TREES_PER_SCAN 1024

/* Print one trace in the human form: on a terminal, fitted to its width
 * (long tags and previews end in "…") and with the status coloured. */
static void print_line(const ls_state *s, const deja_trace *t)
{
    char id[DEJA_ID_STRLEN + 1];
    char when[64];
    char dur[32];
    char *line = NULL;
    size_t len = 0;
    FILE *mem = s->width > 0 ? open_memstream(&line, &len) : NULL;
    FILE *fp = mem != NULL ? mem : stdout;
    const char *status = cli_status_name(t->status);

    deja_id_format(&t->id, id);
    cli_format_local(t->start_ns, when, sizeof when);
    cli_format_duration(t->duration_ns, dur, sizeof dur);
    fprintf(fp, "%s  %s  ", id, when);
    cli_put_term(fp, t->model_name ? t->model_name : "?");
    fputc('@', fp);
    cli_put_term(fp, t->model_version ? t->model_version : "?");
    fprintf(fp, "  %s%-5s%s  %7s  ", cli_sgr(s->g, cli_verdict_sgr(status)), status,
            cli_sgr(s->g, CLI_SGR_RESET), dur);
    if (t->ntags == 0)
        fputc('-', fp);
    for (size_t i = 0; i < t->ntags; i++) {
        fputs(i ? "," : "", fp);
        cli_put_term(fp, t->tags[i].key);
        fputc('=', fp);
        cli_put_term(fp, t->tags[i].value);
    }
    if (t->ninputs > 0) {
        fputs("  ", fp);
        cli_print_preview(fp, &t->inputs[0], PREVIEW_CHARS);
    }
    if (mem != NULL) {
        fclose(mem);
        cli_put_fitted(stdout, line, len, s->width);
        free(line);
    }
    fputc('\n', stdout);
}

/* deja_store_list callback: print. */
static int list_cb(const deja_trace *t, void *payload)
{
    ls_state *s = payload;

    if (s->roots && t->has_parent)
        return 0;
    if (s->tree) {
        if (cli_ids_push(&s->ids, &s->nids, &s->cap, &t->id) != 0) {
            s->failed = 1;
            return 1;
        }
    } else if (s->json) {
        if (cli_json_print(cli_trace_json(t, 0)) < 0) {
            s->failed = 1;
            return 1;
        }
    } else {
        print_line(s, t);
    }
    s->listed++;
    return s->limit != 0 && s->listed >= s->limit;
}

/* deja_store_list callback: a record that cannot be read. */
static int bad_cb(const deja_id *id, int code, const char *message, void *payload)
{
    ls_state *s = payload;

    cli_bad_record(id, code, message);
    s->bad++;
    return 0;
}

/* Draw the trees of the collected top-level traces, a batch per scan. */
static int print_trees(ls_state *s, deja_store *store)
{
    size_t at, i;
    for (at = 0; at < s->nids; at += TREES_PER_SCAN) {
        size_t n = s->nids - at < TREES_PER_SCAN ? s->nids - at : TREES_PER_SCAN;
        deja_tree *t = NULL;
        int rc = deja_tree_get(store, s->ids + at, n, &t);
        if (rc != 0)
            return cli_lib_error(rc, "ls: pipeline trees");
        cli_tree_warn(t);
        for (i = 0; i < t->nnodes; i = cli_tree_end(t, i)) {
            if (s->json) {
                if (cli_json_print(cli_tree_json(t, i)) < 0) {
                    deja_tree_free(t);
                    return cli_error("out of memory printing trees");
                }
            } else {
                cli_tree_print(stdout, s->g, t, i, DEJA_TREE_NONE, "");
            }
        }
        deja_tree_free(t);
    }
    return 0;
}

/* `deja ls`. */
int cmd_ls(const cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,    CLI_LONGOPT_JSON, CLI_LONGOPT_FILTER_MODEL,
        CLI_LONGOPTS_FILTER, {"root", no_argument, NULL, CLI_OPT_FIRST_FREE},
        {"tree", no_argument, NULL, CLI_OPT_FIRST_FREE + 1}, CLI_LONGOPT_END,
    };
    ls_state s = {0};
    s.g = g;
    s.width = cli_term_width();
    cli_filter f;
    deja_store *store = NULL;
    int64_t now = cli_now_ns();
    int first = 1;
    int ret = CLI_EXIT_TROUBLE;
    int c, rc;

    cli_filter_init(&f);
    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &s.json, &ret)) != -1) {
        if (c == CLI_OPT_FIRST_FREE || c == CLI_OPT_FIRST_FREE + 1) {
            s.roots = 1;
            s.tree |= c == CLI_OPT_FIRST_FREE + 1;
        } else if (c == '?' || cli_filter_option(&f, c, optarg, now) != 1)
            goto cleanup;
    }
    if (cli_store_open_no_operands(g, argc, argv, help, &store) != 0)
        goto cleanup;
    if (s.roots) {
        /* The limit counts top-level traces, not the steps skipped. */
        s.limit = f.filter.limit;
        f.filter.limit = 0;
    }
    rc = deja_store_list(store, &f.filter, list_cb, bad_cb, &s);
    if (rc == 0 && s.tree && !s.failed && print_trees(&s, store) != 0)
        goto cleanup;
    fflush(stdout);
    if (rc < 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    if (s.failed) {
        cli_error("out of memory printing traces");
        goto cleanup;
    }
    if (s.bad > 0) {
        cli_error("%zu record%s could not be read", s.bad, s.bad == 1 ? "" : "s");
        goto cleanup;
    }
    ret = CLI_EXIT_OK;

cleanup:
    free(s.ids);
    deja_store_close(store);
    cli_filter_free(&f);
    return ret;
}
