/*
 * cli/cli_signals.h -- the deja command's handling of fatal signals; see
 * cli_signals.c.
 */
#ifndef DEJA_CLI_CLI_SIGNALS_H
#define DEJA_CLI_CLI_SIGNALS_H

/* Turn SIGSEGV and SIGBUS into "deja: store 'STORE' is damaged or
 * unreadable (...): run deja verify" and exit status 2, unless `command`
 * runs model code in the process (run, replay, bisect, serve, worker);
 * make SIGINT, SIGTERM, SIGHUP and SIGPIPE remove the temporary stores of
 * open bundles first. Call once, after the store path is known. */
void cli_signals_install(const char *store, const char *command);

#endif
