/*
 * tests/cli_harness.h -- run the real `deja` binary from a cmocka test.
 *
 *   cli_run r;
 *   cli_exec(&r, NULL, NULL, "--store", store, "ls", "--json", NULL);
 *   assert_int_equal(r.status, 0);
 *   ... r.out, r.err (NUL-terminated) ...
 *   cli_run_free(&r);
 *
 * The binary is DEJA_BIN; it runs in directory `cwd` (NULL: the test's), with
 * stdin from the file `input` (NULL: /dev/null), inheriting the environment.
 * Also: a temporary directory that removes itself, the setup every CLI test
 * group shares, an assertion on the one-line error message, and small file
 * helpers.
 */
#ifndef DEJA_TESTS_CLI_HARNESS_H
#define DEJA_TESTS_CLI_HARNESS_H

#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define CLI_MAX_ARGS 64

typedef struct cli_run {
    int status; /* exit code; 128 + signal when killed */
    char *out;  /* stdout, NUL-terminated */
    size_t out_len;
    char *err; /* stderr, NUL-terminated */
    size_t err_len;
} cli_run;

/* Read a whole file into a malloc'd NUL-terminated buffer, or NULL. */
static inline char *cli_slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (fp == NULL)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *grown;
            cap = cap ? cap * 2 : 8192;
            grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
        if (got == 0)
            break;
    }
    fclose(fp);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

/* Write `text` into a file; 0 or -1. */
static inline int cli_write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    int rc;

    if (fp == NULL)
        return -1;
    rc = fputs(text, fp) < 0 ? -1 : 0;
    if (fclose(fp) != 0)
        rc = -1;
    return rc;
}

/* Release a run's buffers. */
static inline void cli_run_free(cli_run *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

/* Run DEJA_BIN with the given arguments (argv[0] excluded, NULL-terminated
 * array); 0, or -1 if it could not be run. */
static inline int cli_execv(cli_run *r, const char *cwd, const char *input, const char *const *args)
{
    char out_path[] = "/tmp/deja-cli-out-XXXXXX";
    char err_path[] = "/tmp/deja-cli-err-XXXXXX";
    const char *argv[CLI_MAX_ARGS + 2];
    int out_fd = mkstemp(out_path);
    int err_fd = mkstemp(err_path);
    int status = 0;
    size_t n = 0;
    pid_t pid;

    memset(r, 0, sizeof *r);
    if (out_fd < 0 || err_fd < 0)
        return -1;
    argv[n++] = DEJA_BIN;
    while (args[n - 1] != NULL && n <= CLI_MAX_ARGS) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int in_fd = open(input ? input : "/dev/null", O_RDONLY);
        if (in_fd < 0 || dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
            _exit(126);
        if (cwd != NULL && chdir(cwd) != 0)
            _exit(126);
        execv(DEJA_BIN, (char *const *)argv);
        _exit(127);
    }
    close(out_fd);
    close(err_fd);
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r->out = cli_slurp(out_path, &r->out_len);
    r->err = cli_slurp(err_path, &r->err_len);
    unlink(out_path);
    unlink(err_path);
    return r->out != NULL && r->err != NULL ? 0 : -1;
}

/* Run DEJA_BIN with arguments given as a NULL-terminated list. */
static inline int cli_exec(cli_run *r, const char *cwd, const char *input, ...)
{
    const char *args[CLI_MAX_ARGS + 1];
    size_t n = 0;
    va_list ap;

    va_start(ap, input);
    while (n < CLI_MAX_ARGS && (args[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    args[n] = NULL;
    return cli_execv(r, cwd, input, args);
}

/* Number of '\n'-terminated lines in `text`. */
static inline size_t cli_count_lines(const char *text)
{
    size_t n = 0;

    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/* A malloc'd copy of line `index` (0-based, without '\n'), or NULL. */
static inline char *cli_line(const char *text, size_t index)
{
    const char *end;

    for (size_t i = 0; i < index; i++) {
        text = strchr(text, '\n');
        if (text == NULL)
            return NULL;
        text++;
    }
    if (*text == '\0')
        return NULL;
    end = strchr(text, '\n');
    return strndup(text, end ? (size_t)(end - text) : strlen(text));
}

/* nftw callback removing everything. */
static inline int cli_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Remove a directory tree; missing is fine. */
static inline void cli_rm_rf(const char *path)
{
    nftw(path, cli_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Non-zero when `path` exists. */
static inline int cli_exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

/* The path `name` under the directory `root`, in one of 8 static buffers
 * used in turn (so that a case may hold a few at once), cut at 511
 * characters. */
static inline const char *cli_tmp_path(const char *root, const char *name)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];

    snprintf(b, sizeof bufs[0], "%s/%s", root, name);
    return b;
}

/* The setup every CLI test group starts with: make the group's temporary
 * directory from the mkdtemp(3) template `root` (rewritten in place), let
 * the binary find the example plugins (DEJA_PLUGIN_PATH, unless already
 * set), forget any DEJA_STORE, and read and print times in UTC. Returns 0,
 * or -1 when the directory cannot be made. */
static inline int cli_group_begin(char *root)
{
    if (mkdtemp(root) == NULL)
        return -1;
    setenv("DEJA_PLUGIN_PATH", DEJA_LIB_DIR, 0);
    unsetenv("DEJA_STORE");
    setenv("TZ", "UTC", 1);
    tzset();
    return 0;
}

/* Assert that the run's stderr is exactly one line starting with "deja: "
 * and containing `needle`. */
static inline void cli_assert_one_error(const cli_run *r, const char *needle)
{
    if (strncmp(r->err, "deja: ", 6) != 0 || strstr(r->err, needle) == NULL)
        fail_msg("stderr '%s' lacks 'deja: ...%s'", r->err, needle);
    assert_int_equal(cli_count_lines(r->err), 1);
}

#endif /* DEJA_TESTS_CLI_HARNESS_H */
