/*
 * cli/cli_tree.h -- pipeline trees on the command line: drawing a tree of
 * traces (show, ls --tree), its JSON, and the pipeline forms of replay and
 * bisect (cli_tree.c, cli_pipeline.c).
 */
#ifndef DEJA_CLI_CLI_TREE_H
#define DEJA_CLI_CLI_TREE_H

#include "cli.h"

/* Print the tree under node `root` of `t`, one line per trace ("ID
 * model@version status duration", steps drawn below their parent), each
 * line starting with `indent`; the node `mark` (or DEJA_TREE_NONE) is
 * marked "<- this trace". */
void cli_tree_print(FILE *fp, const cli_global *g, const deja_tree *t, size_t root, size_t mark,
                    const char *indent);

/* The Markdown section of `show --md` for a trace of the run `t` (the
 * trace is node `mark`): the tree and the command that replays the run. */
void cli_tree_md(FILE *fp, const deja_tree *t, size_t mark);

/* One past the last node of the tree under node `root`. */
size_t cli_tree_end(const deja_tree *t, size_t root);

/* The tree under node `root` as a nested JSON object (new reference), or
 * NULL when out of memory. */
json_t *cli_tree_json(const deja_tree *t, size_t root);

/* Print the tree's notes (cycles cut) on stderr as warnings. */
void cli_tree_warn(const deja_tree *t);

/* The tree of the pipeline run trace `id` belongs to (from its top-most
 * recorded parent), with `*mark` its index: `*out` NULL when the trace is
 * no part of a pipeline. Returns 0, or CLI_EXIT_TROUBLE after a message. */
int cli_tree_of(deja_store *store, const deja_id *id, deja_tree **out, size_t *mark);

/* Add "pipeline": {"root", "tree"} to the trace object `obj` (nothing when
 * `t` is NULL). Returns 0, -1 when out of memory. */
int cli_tree_attach_json(json_t *obj, const deja_tree *t);

/* Whether a `deja replay` command line asks for a pipeline replay:
 * --isolated, --chained, or a --model STEP=SPEC. */
int cli_pipeline_wanted(int argc, char **argv);

/* Split "STEP=SPEC" when its left side is a step name (letters, digits,
 * '_', '-', '.'; no ':' or '/' before the '='): 1 with `*step` (allocated)
 * and `*spec` (pointing into `arg`), else 0; -1 when out of memory. */
int cli_step_spec(const char *arg, char **step, const char **spec);

/* `deja replay ROOT... --model STEP=SPEC...`: the pipeline replay, with the
 * replay command's `help`. Returns the exit status. */
int cli_pipeline_replay(const cli_global *g, int argc, char **argv, const char *help);

/* The steps named `step` (recorded model name) in the trees below the `n`
 * traces `ids`, in `*out` (freed by the caller). Returns 0, or
 * CLI_EXIT_TROUBLE after a message (none found: says so). */
int cli_pipeline_steps(deja_store *store, const deja_id *ids, size_t n, const char *step,
                       deja_id **out, size_t *nout);

/* Replace the `*n` traces `*ids` by every trace of the trees below them
 * (each selected trace, then its steps, nested; once each). Returns 0, or
 * CLI_EXIT_TROUBLE after a message. */
int cli_pipeline_expand(deja_store *store, deja_id **ids, size_t *n);

#endif /* DEJA_CLI_CLI_TREE_H */
