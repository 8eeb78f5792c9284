/*
 * runner/words.c -- split an `exec:` command line into words the way a
 * POSIX shell would, with no shell: no expansion, no globbing, no
 * redirection; only quoting and backslashes are understood.
 */
#include <stdlib.h>
#include <string.h>

#include "runner/runner.h"
#include "core/core.h"

#define MAX_WORDS 4096

void deja__words_free(char **argv)
{
    if (argv == NULL)
        return;
    for (char **p = argv; *p != NULL; p++)
        free(*p);
    free(argv);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n';
}

/* Split `line`; see runner.h. */
int deja__words_split(const char *line, char ***argv, size_t *argc)
{
    const size_t len = strlen(line);
    char **words = NULL;
    char *word = NULL;
    size_t n = 0, wlen = 0;
    int rc = 0;

    *argv = NULL;
    *argc = 0;
    /* No word is longer than the line, nor are there more words than half
     * its bytes plus one. */
    words = calloc(len / 2 + 2, sizeof *words);
    if (words == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "exec: out of memory");
        goto cleanup;
    }
    const char *p = line;
    for (;;) {
        while (is_blank(*p))
            p++;
        if (*p == '\0')
            break;
        word = malloc(len + 1);
        if (word == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "exec: out of memory");
            goto cleanup;
        }
        wlen = 0;
        while (*p != '\0' && !is_blank(*p)) {
            if (*p == '\'') {
                const char *end = strchr(p + 1, '\'');
                if (end == NULL) {
                    rc = deja__error_set(DEJA_EINVAL, "exec: unclosed ' in '%s'", line);
                    goto cleanup;
                }
                memcpy(word + wlen, p + 1, (size_t)(end - p - 1));
                wlen += (size_t)(end - p - 1);
                p = end + 1;
            } else if (*p == '"') {
                p++;
                while (*p != '"') {
                    if (*p == '\0') {
                        rc = deja__error_set(DEJA_EINVAL, "exec: unclosed \" in '%s'", line);
                        goto cleanup;
                    }
                    if (*p == '\\' && p[1] == '\n') {
                        p += 2;
                        continue;
                    }
                    if (*p == '\\' && p[1] != '\0' && strchr("\"\\$`", p[1]) != NULL)
                        p++;
                    word[wlen++] = *p++;
                }
                p++;
            } else if (*p == '\\') {
                if (p[1] == '\0') {
                    rc = deja__error_set(DEJA_EINVAL, "exec: trailing backslash in '%s'", line);
                    goto cleanup;
                }
                if (p[1] != '\n')
                    word[wlen++] = p[1];
                p += 2;
            } else {
                word[wlen++] = *p++;
            }
        }
        word[wlen] = '\0';
        if (n >= MAX_WORDS) {
            rc = deja__error_set(DEJA_EINVAL, "exec: more than %d words", MAX_WORDS);
            goto cleanup;
        }
        words[n++] = word;
        word = NULL;
    }
    if (n == 0) {
        rc = deja__error_set(DEJA_EINVAL, "exec: no command after 'exec:'");
        goto cleanup;
    }
    *argv = words;
    *argc = n;
    words = NULL;

cleanup:
    free(word);
    deja__words_free(words);
    return rc;
}
