/*
 * cli/cli_error.c -- errors: one-line messages on stderr, usage errors, --help.
 */
#include "cli.h"
#include "cli_escape.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>


/* Print "deja: <message>" on stderr, the message made by `fmt` and `ap`,
 * then ": <cause>" when `cause` is not NULL, then a newline. A cause that
 * already starts with the message (the library names the trace too) is
 * printed alone, so that nothing reads twice. */
__attribute__((format(printf, 2, 0))) static void print_error_line(const char *cause,
                                                                   const char *fmt, va_list ap)
{
    char what[1024];
    const int n = vsnprintf(what, sizeof what, fmt, ap);
    const size_t len = n < 0 ? 0 : (size_t)n < sizeof what ? (size_t)n : sizeof what - 1;

    /* The message may quote a trace, a bundle or a library message: escaped,
     * it stays one line and cannot drive the terminal. */
    fputs("deja: ", stderr);
    if (cause == NULL) {
        cli_put_term(stderr, what);
    } else if (len > 0 && strncmp(cause, what, len) == 0) {
        cli_put_term(stderr, cause);
    } else {
        cli_put_term(stderr, what);
        fputs(": ", stderr);
        cli_put_term(stderr, cause);
    }
    fputc('\n', stderr);
}

/* print_error_line with variadic arguments. */
__attribute__((format(printf, 2, 3))) static void print_cause(const char *cause,
                                                              const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    print_error_line(cause, fmt, ap);
    va_end(ap);
}

/* Print "deja: <message>" on stderr and return CLI_EXIT_TROUBLE. */
int cli_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    print_error_line(NULL, fmt, ap);
    va_end(ap);
    return CLI_EXIT_TROUBLE;
}

/* Print "deja: <what>: <library message>" and return CLI_EXIT_TROUBLE. */
int cli_lib_error(int code, const char *fmt, ...)
{
    va_list ap;
    const char *msg = deja_error_last();

    if (msg == NULL || msg[0] == '\0')
        msg = deja_strerror(code);
    va_start(ap, fmt);
    print_error_line(msg, fmt, ap);
    va_end(ap);
    return CLI_EXIT_TROUBLE;
}

/* Print "deja: trace ID: <why>" for a record that cannot be read, as a
 * deja_bad_cb reports it (stdout is flushed first, so that the line lands
 * among the listed ones). */
void cli_bad_record(const deja_id *id, int code, const char *message)
{
    char text[DEJA_ID_STRLEN + 1];

    deja_id_format(id, text);
    fflush(stdout);
    print_cause(message != NULL && message[0] != '\0' ? message : deja_strerror(code),
                "trace %s", text);
}

/* Print the first line of `help` (the usage line) on stderr. */
static void print_usage_line(const char *help)
{
    const char *nl = strchr(help, '\n');
    int len = nl ? (int)(nl - help) : (int)strlen(help);

    fprintf(stderr, "%.*s\n", len, help);
}

/* Print "deja: <message>" and the usage line; return CLI_EXIT_TROUBLE. */
int cli_usage_error(const char *help, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    print_error_line(NULL, fmt, ap);
    va_end(ap);
    print_usage_line(help);
    return CLI_EXIT_TROUBLE;
}

/* Print `help` on stdout; return CLI_EXIT_OK. */
int cli_help(const char *help)
{
    fputs(help, stdout);
    return CLI_EXIT_OK;
}
