/*
 * cli/cli_escape.h -- printing text that came from a trace or a bundle (model
 * names, versions, tags, params, error text, environment values): escaped
 * for a terminal, quoted as one shell word, or escaped for Markdown. Such
 * text is untrusted: a bundle from a stranger may carry escape sequences,
 * shell syntax or Markdown that would change what the reader sees or runs.
 * Calls only libc.
 */
#ifndef DEJA_CLI_CLI_ESCAPE_H
#define DEJA_CLI_CLI_ESCAPE_H

#include <stdio.h>

/* Print `s` (NULL prints nothing) with every control character (C0, DEL,
 * the C1 range U+0080..U+009F) and every byte that is not valid UTF-8
 * written as an escape: \n, \t, \r, or \xNN. Printable UTF-8, including
 * backslashes, is printed as it is. */
void cli_put_term(FILE *fp, const char *s);

/* `s` as cli_put_term would print it, for a printf argument: `s` itself
 * when it needs no escape (NULL gives ""), else an escaped copy owned by
 * a ring of CLI_TERM_RING slots and valid until as many later calls have
 * reused its slot; "?" when out of memory. For the thread that prints
 * (not thread-safe). */
#define CLI_TERM_RING 16
const char *cli_term(const char *s);

/* Print `s` as one word a POSIX shell reads back as exactly `s`: as it is
 * when made only of [A-Za-z0-9_@%+=:,./-] (and not empty), else in single
 * quotes (a quote written '\''), or as a $'...' word with \xNN escapes when
 * it holds a control character or invalid UTF-8 (bash, zsh, ksh). */
void cli_put_shell(FILE *fp, const char *s);

/* Print `s` as a Markdown code span that shows `s` literally: the fence is
 * one backtick longer than the longest run of backticks inside, control
 * characters are escaped as by cli_put_term, and with `in_table` a `|` is
 * written `\|` so that it does not end a table cell. */
void cli_put_md_code(FILE *fp, const char *s, int in_table);

/* Print `s` as Markdown text that shows `s` literally: every ASCII
 * punctuation character is backslash-escaped (so no emphasis, link, HTML,
 * heading or table cell break can be formed) and control characters are
 * escaped as by cli_put_term. */
void cli_put_md_text(FILE *fp, const char *s);

#endif
