/*
 * cli/cmd_check.c -- `deja check`: apply validation rules to recorded
 * traces and list the violations; exit 1 when there are any.
 */
#include "cli_escape.h"
#include "cli_watch.h"

static const char help[] =
    "usage: deja check --rules FILE [--model M] [--version V] [--since T] [--until T] "
    "[--status ok|error] [--tag K=V]... [--limit N] [--json]\n"
    "\n"
    "Apply the validation rules of FILE to the traces matching the filters (all when\n"
    "none), newest first, and list every violation: trace id, rule, tensor, detail.\n"
    "A rules file holds one rule per line, NAME: SIDE.TENSOR CHECK [ARGS]:\n"
    "\n"
    "  finite: output.logits finite            probs: output.probs sum 1 0.001\n"
    "  range: input.features range -5 5        label: output.label in cat,dog\n"
    "  size: output.completion length 1..2000  json: output.completion json\n"
    "  shape: output.completion matches ^[A-Z] answer: output.completion nonempty\n"
    "\n"
    "(see README, \"Validation rules\").\n"
    "\n" CLI_FILTER_HELP "  --rules FILE       the rules (required)\n"
    "  --json             one JSON object per violation\n"
    "\n"
    "Exit status: 0 when every trace is valid, 1 when some break a rule, 2 on trouble.\n";

typedef struct check_state {
    int json;
    int oom;
} check_state;

/* A violation: print it. */
static int on_violation(const deja_trace *t, const deja_violation *v, void *payload)
{
    check_state *s = payload;

    if (s->json) {
        if (cli_json_print(cli_violation_json(&t->id, v)) != 0) {
            s->oom = 1;
            return 1;
        }
    } else {
        char id[DEJA_ID_STRLEN + 1];

        deja_id_format(&t->id, id);
        printf("%s  %s@%s  %-16s %s.%s %s\n", id, t->model_name ? cli_term(t->model_name) : "?",
               t->model_version ? cli_term(t->model_version) : "?", cli_term(v->rule),
               v->side == DEJA_INPUT ? "input" : "output", cli_term(v->tensor),
               cli_term(v->detail));
    }
    return 0;
}

static int on_bad(const deja_id *id, int code, const char *message, void *payload)
{
    (void)payload;
    cli_bad_record(id, code, message);
    return 0;
}

int cmd_check(const cli_global *g, int argc, char **argv)
{
    enum { OPT_RULES = CLI_OPT_FIRST_FREE };
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,    CLI_LONGOPT_JSON, CLI_LONGOPT_FILTER_MODEL,
        CLI_LONGOPTS_FILTER, {"rules", required_argument, NULL, OPT_RULES},
        CLI_LONGOPT_END,
    };
    check_state s = {0, 0};
    deja_check_summary sum;
    deja_rules *rules = NULL;
    deja_store *store = NULL;
    const char *rules_path = NULL;
    cli_filter f;
    int64_t now = cli_now_ns();
    int first = 1;
    int ret = CLI_EXIT_TROUBLE;
    int c, rc;

    cli_filter_init(&f);
    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &s.json, &ret)) != -1) {
        if (c == OPT_RULES)
            rules_path = optarg;
        else if (c == '?' || cli_filter_option(&f, c, optarg, now) != 1)
            goto cleanup;
    }
    if (rules_path == NULL) {
        ret = cli_usage_error(help, "check: --rules FILE is required");
        goto cleanup;
    }
    if (cli_rules_load(rules_path, &rules) != 0 ||
        cli_store_open_no_operands(g, argc, argv, help, &store) != 0)
        goto cleanup;
    rc = deja_rules_check_store(store, rules, &f.filter, on_violation, on_bad, &s, &sum);
    fflush(stdout);
    if (rc < 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    if (s.oom) {
        cli_error("out of memory printing violations");
        goto cleanup;
    }
    if (!s.json)
        printf("checked %llu traces against %zu rules: %llu invalid (%llu violations)\n",
               (unsigned long long)sum.traces, deja_rules_count(rules),
               (unsigned long long)sum.invalid, (unsigned long long)sum.violations);
    fflush(stdout);
    if (sum.bad > 0) {
        cli_error("%llu record%s could not be read", (unsigned long long)sum.bad,
                  sum.bad == 1 ? "" : "s");
        goto cleanup;
    }
    if (sum.invalid > 0) {
        fprintf(stderr, "deja: check: %llu of %llu traces break a rule\n",
                (unsigned long long)sum.invalid, (unsigned long long)sum.traces);
        ret = CLI_EXIT_DIFF;
        goto cleanup;
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_rules_free(rules);
    deja_store_close(store);
    cli_filter_free(&f);
    return ret;
}
