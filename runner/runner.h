/*
 * runner/runner.h -- the runner room's interface to the rest of libdeja.
 *
 * runner/ holds models outside the process. `exec:COMMAND ARGS...`
 * subprocess runners speak the framed protobuf protocol of
 * proto/deja.proto (RunnerMessage): exec.c is the host side (start the
 * process, converse, restart it after a crash), serve.c the runner side
 * (deja_runner_serve, public in deja_model.h), words.c the shell-like
 * splitting of the command line. `http://` endpoints are OpenAI-compatible
 * servers called as models: endpoint.c sends the recorded requests,
 * openai.c reads the answers (runner/openai.h, which http/'s proxy shares).
 * The room calls down into core/, proto/ (the messages), the public ctx
 * functions, libcurl and jansson; replay/model.c calls it through this
 * header, http/ through runner/openai.h.
 */
#ifndef DEJA_RUNNER_RUNNER_H
#define DEJA_RUNNER_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include "deja.h"
#include "deja_model.h"

/* The prefix of a model spec naming a subprocess runner. */
#define DEJA__EXEC_PREFIX "exec:"

/* Start the runner `command` (the spec after "exec:"), read its hello and
 * return a plugin table whose infer and close talk to it: `*plugin` and
 * `*instance` then behave exactly as a loaded C plugin's (close frees the
 * runner). The table's name and version are the hello's, its flags 0 (one
 * process serves one inference at a time). `info` receives the hello's
 * digest (digest_size 0 when it sent none) and `*path` a malloc'd copy of
 * the executable's path. `timeout_ms` bounds the start and each inference
 * (0: DEJA_MODEL_TIMEOUT_MS). Returns 0, DEJA_EINVAL (bad command line),
 * DEJA_ENOTFOUND (no such command), DEJA_EVERSION (another protocol),
 * DEJA_EMODEL (the runner failed to start or to load its model), with a
 * message naming the command. */
int deja__runner_open(const char *command, unsigned timeout_ms, const deja_model_plugin **plugin,
                      void **instance, deja_model_info *info, char **path);

/* The libraries and versions a runner's hello named (the host's view of
 * the runner's environment); owned by the runner `instance`. */
void deja__runner_libs(const void *instance, const deja_kv **libs, size_t *n);

/* Open the endpoint model of `spec`, "http://HOST:PORT/PATH[?model=NAME&
 * timeout=SECONDS]" (PATH: the base URL an OpenAI client takes, e.g. /v1).
 * Each request may take `timeout_ms` (deja_model_options; 0: the default,
 * DEJA_MODEL_TIMEOUT_MS) unless the spec's timeout= says otherwise.
 * Fills `*plugin` with a description owned by `*instance` (valid until the
 * plugin's close), and `info` with a digest of the spec. Without NAME the
 * server must list exactly one model at GET PATH/models. Returns 0,
 * DEJA_EINVAL (a bad spec) or DEJA_EMODEL (the server cannot be asked). */
int deja__endpoint_open(const char *spec, unsigned timeout_ms, const deja_model_plugin **plugin,
                        void **instance, deja_model_info *info);

/* Split `line` into words as a POSIX shell would, without expanding
 * anything: blanks separate words; '...' keeps everything literally;
 * "..." keeps everything but \" \\ \$ \` (and backslash-newline);
 * a backslash outside quotes keeps the next character. `*argv` receives a
 * NULL-terminated malloc'd array (free with deja__words_free), `*argc` the
 * count. Returns 0, DEJA_EINVAL (unclosed quote, trailing backslash, no
 * word at all) or DEJA_ENOMEM. */
int deja__words_split(const char *line, char ***argv, size_t *argc);
void deja__words_free(char **argv);

#endif /* DEJA_RUNNER_RUNNER_H */
