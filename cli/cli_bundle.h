/*
 * cli/cli_bundle.h -- what the `deja` commands share about bundles: the
 * export and import commands, telling a bundle file from a trace id or a
 * store, opening one in place, and printing what it holds (text, JSON, or a
 * Markdown bug report); also the parts of a bug report that `show --md`
 * prints the same way.
 */
#ifndef DEJA_CLI_CLI_BUNDLE_H
#define DEJA_CLI_CLI_BUNDLE_H

#include <stdio.h>

#include "cli.h"


/* Non-zero when `path` names a regular file whose first bytes are
 * DEJA_BUNDLE_MAGIC. Never prints. */
int cli_is_bundle(const char *path);

/* Let a command take a bundle file wherever it takes the store's traces
 * (`deja show FILE`, `deja replay FILE --model ...`). When `arg` names a
 * bundle file (cli_is_bundle), verify it, load it into a private temporary
 * store (deja_bundle_open), set `*bundle` and `*store` (the bundle's
 * read-only store, owned by the bundle) and return 1; the caller reads
 * `*store` like any store and later calls deja_bundle_close(*bundle), never
 * deja_store_close(*store). When `arg` is not a bundle, set nothing and
 * return 0. When the bundle is damaged or hostile, print "deja: bundle
 * 'F': <what is wrong, where>" and return -1 (exit 2). */
int cli_open_source(const char *arg, deja_store **store, deja_bundle **bundle);

/* Print what the bundle `path` (opened as `bundle`) holds: with `json`, one
 * JSON object describing the bundle, then one per trace (the `ls --json`
 * form); else a header block (format, counts, models, plugin, checksum)
 * and one line per trace, newest first. Returns the exit code (0, or 2
 * after printing the problem). */
int cli_bundle_print(const char *path, deja_bundle *bundle, int json);

/* Print a Markdown bug report for the `n` traces `ids` of `store`, as held
 * in the bundle file `file` described by `info`: the bundle's identity
 * (file, size, checksum, models with version and digest, plugin), the
 * exact commands that reproduce it, and for each trace (the first few in
 * full) its model, environment, inputs and outputs previewed with sizes,
 * and recorded seeds. Returns the exit code. */
int cli_bundle_md(FILE *fp, deja_store *store, const deja_id *ids, size_t n, const char *file,
                  const deja_bundle_info *info);

/* Write into `out` the name of the plugin that replays traces of model
 * `name` (NULL: "model") at `version` (NULL: ""), as the reproduce commands
 * guess it: textgen 1 -> textgen-v1, textgen v3 -> textgen-v3. */
void cli_plugin_guess(const char *name, const char *version, char *out, size_t cap);

/* Print on `fp` the data sections of trace `t` in a Markdown bug report,
 * each under a heading made of `hashes` ("###" or "####"): "Inputs" and
 * "Outputs" (each tensor's name, dtype and shape, size, and a preview in a
 * fenced block; "(none)" when there is none), then "Recorded randomness and
 * time" (seeds, RNG streams with their draw counts, the number of clock
 * reads). */
void cli_md_trace_data(FILE *fp, const deja_trace *t, const char *hashes);

/* Print "key=value" as one Markdown code span (`|` escaped when
 * `in_table`): keys and values come from a trace and are escaped. */
void cli_md_kv(FILE *fp, const char *key, const char *value, int in_table);

/* Print each param of `t` as a space and a code span (key=number,
 * key="string", key=true), for a Markdown table cell. */
void cli_md_params(FILE *fp, const deja_trace *t);

/* Print "- `KEY=VALUE`" for each variable of `env` on the README's default
 * list (deja_env_var_is_default): a report meant for a public tracker shows
 * nothing else from the environment, whatever the recording selected. */
void cli_md_env_vars(FILE *fp, const deja_env *env);

#endif /* DEJA_CLI_CLI_BUNDLE_H */
