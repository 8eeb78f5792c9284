/*
 * cli/cli_terminal.c -- output meant for a terminal: its width, lines fitted
 * to it, and colours (decided once in main: --color, NO_COLOR, isatty).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* The width of the terminal on stdout; see cli.h. */
int cli_term_width(void)
{
    struct winsize ws;
    const char *columns = getenv("COLUMNS");

    if (!isatty(STDOUT_FILENO))
        return 0;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    if (columns != NULL && atoi(columns) > 0)
        return atoi(columns);
    return 80;
}

/* The length of the SGR escape "\033[...m" at `p`, or 0. */
static size_t escape_len(const char *p, const char *end)
{
    const char *q = p + 2;

    if (end - p < 3 || p[0] != '\033' || p[1] != '[')
        return 0;
    while (q < end && (*q == ';' || (*q >= '0' && *q <= '9')))
        q++;
    return q < end && *q == 'm' ? (size_t)(q - p) + 1 : 0;
}

/* Write `line` fitted to `width` columns; see cli.h. */
void cli_put_fitted(FILE *fp, const char *line, size_t len, int width)
{
    const char *p = line, *end = line + len, *cut = NULL;
    int cols = 0, escapes = 0;

    if (width <= 0) {
        fwrite(line, 1, len, fp);
        return;
    }
    while (p < end) {
        const size_t e = escape_len(p, end);
        if (e > 0) {
            escapes = 1;
            p += e;
            continue;
        }
        if (((unsigned char)*p & 0xC0) != 0x80) { /* a character starts here */
            if (cols == width - 1)
                cut = p;
            if (++cols > width)
                break;
        }
        p++;
    }
    if (cols <= width) {
        fwrite(line, 1, len, fp);
        return;
    }
    fwrite(line, 1, (size_t)(cut - line), fp);
    fputs("\xe2\x80\xa6", fp); /* … */
    if (escapes)
        fputs(CLI_SGR_RESET, fp);
}

/* `sgr` when colouring, else ""; see cli.h. */
const char *cli_sgr(const cli_global *g, const char *sgr)
{
    return g != NULL && g->color ? sgr : "";
}

/* The colour of a verdict or status; see cli.h. */
const char *cli_verdict_sgr(const char *name)
{
    if (strcmp(name, "same") == 0 || strcmp(name, "ok") == 0)
        return CLI_SGR_GREEN;
    if (strcmp(name, "close") == 0 || strcmp(name, "nondeterministic") == 0)
        return CLI_SGR_YELLOW;
    return CLI_SGR_RED; /* diverged, error */
}

/* Start a progress bar; see cli.h. */
void cli_progress_init(cli_progress *p, FILE *fp, const char *label, int64_t after_ns)
{
    memset(p, 0, sizeof *p);
    p->fp = fp;
    p->tty = isatty(fileno(fp));
    p->label = label;
    p->after_ns = after_ns;
    {
        const char *ms = getenv("DEJA_PROGRESS_DELAY_MS");
        char *end = NULL;
        const long long v = ms != NULL ? strtoll(ms, &end, 10) : -1;
        if (ms != NULL && end != ms && *end == '\0' && v >= 0 && v < 86400000)
            p->after_ns = (int64_t)v * 1000000;
    }
    p->start_ns = cli_now_ns();
    pthread_mutex_init(&p->lock, NULL);
}

/* Draw "[#####.....] 12/40 label"; see cli.h. */
void cli_progress_draw(cli_progress *p, size_t done, size_t total, const char *what)
{
    char bar[CLI_PROGRESS_WIDTH + 1];
    size_t fill;
    int64_t now;

    if (!p->tty || total == 0)
        return;
    now = cli_now_ns();
    if (now - p->start_ns < p->after_ns ||
        (done < total && p->drawn && now - p->drawn_ns < 100000000))
        return;
    fill = done >= total ? CLI_PROGRESS_WIDTH : done * CLI_PROGRESS_WIDTH / total;
    for (size_t i = 0; i < CLI_PROGRESS_WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[CLI_PROGRESS_WIDTH] = '\0';
    pthread_mutex_lock(&p->lock);
    fprintf(p->fp, "\r\033[K[%s] %zu/%zu %s%s%s", bar, done, total, p->label,
            what != NULL ? " " : "", what != NULL ? what : "");
    fflush(p->fp);
    p->drawn = 1;
    p->drawn_ns = now;
    pthread_mutex_unlock(&p->lock);
}

/* Erase the bar if drawn; see cli.h. */
void cli_progress_clear(cli_progress *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->drawn) {
        fputs("\r\033[K", p->fp);
        fflush(p->fp);
        p->drawn = 0;
    }
    pthread_mutex_unlock(&p->lock);
}

/* deja_progress_handler callback: draw the bar. */
static void on_lib_progress(size_t done, size_t total, void *payload)
{
    cli_progress_draw(payload, done, total, NULL);
}

/* Start a bar fed by the library; see cli.h. */
void cli_progress_begin(cli_progress *p, const char *label)
{
    cli_progress_init(p, stderr, label, CLI_PROGRESS_AFTER_NS);
    deja_progress_handler(on_lib_progress, p);
}

/* Stop the library's bar; see cli.h. */
void cli_progress_end(cli_progress *p)
{
    deja_progress_handler(NULL, NULL);
    cli_progress_free(p);
}

/* Erase the bar and release it; see cli.h. */
void cli_progress_free(cli_progress *p)
{
    cli_progress_clear(p);
    pthread_mutex_destroy(&p->lock);
}
