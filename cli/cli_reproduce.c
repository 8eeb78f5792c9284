/*
 * cli/cli_reproduce.c -- the command that replays a trace, as `show --md`
 * prints it for a bug report: the plugin named the way the user recorded
 * it (a bare name that resolves through $DEJA_PLUGIN_PATH, or the plugin
 * file's path relative to the current directory), with the recorded ARG,
 * and no store path of the machine it ran on.
 */
#include "cli.h"
#include "cli_escape.h"
#include "cli_bundle.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Write `path` (absolute) relative to the current directory into `out`;
 * the absolute path when the current directory is unknown. */
static void relative_path(const char *path, char *out, size_t cap)
{
    char cwd[PATH_MAX];
    size_t common = 0, i;
    const char *rest;
    if (path[0] != '/' || !getcwd(cwd, sizeof cwd)) {
        snprintf(out, cap, "%s", path);
        return;
    }
    /* The longest common prefix that ends at a directory boundary. */
    for (i = 0; cwd[i] && path[i] && cwd[i] == path[i]; i++) {
        if (path[i] == '/')
            common = i;
    }
    if (cwd[i] == '\0' && path[i] == '/')
        common = i;
    rest = path + common + 1;
    out[0] = '\0';
    if (strcmp(cwd, "/") == 0) {
        snprintf(out, cap, "%s", path + 1);
        return;
    }
    for (i = common; cwd[i]; i++) {
        if (cwd[i] == '/' && strlen(out) + 4 < cap)
            strcat(out, "../");
    }
    if (strlen(out) == 0 && strlen(rest) + 3 < cap)
        strcat(out, "./");
    if (strlen(out) + strlen(rest) + 1 < cap)
        strcat(out, rest);
}

/* Non-zero when plugin `name` resolves as `--model NAME` would: NAME.so or
 * libNAME.so in a directory of $DEJA_PLUGIN_PATH or in the lib/ directory
 * next to this executable. */
static int plugin_exists(const char *name)
{
    char dirs[8192], path[PATH_MAX], exe[PATH_MAX];
    const char *env = getenv("DEJA_PLUGIN_PATH");
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *dir, *save = NULL;
    snprintf(dirs, sizeof dirs, "%s", env ? env : "");
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            strncat(dirs, ":", sizeof dirs - strlen(dirs) - 1);
            strncat(dirs, exe, sizeof dirs - strlen(dirs) - 1);
            strncat(dirs, "/../lib", sizeof dirs - strlen(dirs) - 1);
        }
    }
    for (dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof path, "%s/%s.so", dir, name);
        if (access(path, R_OK) == 0)
            return 1;
        snprintf(path, sizeof path, "%s/lib%s.so", dir, name);
        if (access(path, R_OK) == 0)
            return 1;
    }
    return 0;
}

/* Print the reproduce section of `show --md` for trace `t`. */
void cli_md_reproduce(FILE *fp, const deja_trace *t, const char *endpoint)
{
    char id[DEJA_ID_STRLEN + 1], plugin[PATH_MAX + 8], spec[PATH_MAX + 1024];
    deja_id_format(&t->id, id);
    fputs("\n### Reproduce\n\n", fp);
    if (!t->has_model_config && endpoint != NULL) {
        /* Recorded by the proxy: the endpoint it forwarded to. */
        fputs("Replay it on the endpoint the proxy recorded it from:\n\n", fp);
        fprintf(fp, "```sh\ndeja replay %s --model ", id);
        cli_put_shell(fp, endpoint);
        fputs("\n```\n", fp);
        return;
    }
    if (!t->has_model_config) {
        /* Recorded before traces kept their plugin: a plugin named after the
         * model and version is offered only when it exists here. */
        char guess[512];
        cli_plugin_guess(t->model_name, t->model_version, guess, sizeof guess);
        if (strchr(guess, '/') == NULL && plugin_exists(guess)) {
            fputs("The trace does not record its plugin; ", fp);
            cli_put_md_code(fp, guess, 0);
            fputs(" (named after its model and version) is found on `$DEJA_PLUGIN_PATH`:\n\n",
                  fp);
            fprintf(fp, "```sh\ndeja replay %s --model ", id);
            cli_put_shell(fp, guess);
            fputs("\n```\n", fp);
            return;
        }
    }
    if (!t->has_model_config || t->model_plugin[0] == '\0') {
        fputs("This trace was recorded by an application (model ", fp);
        cli_put_md_code(fp, t->model_name, 0);
        fputs(", version ", fp);
        cli_put_md_code(fp, t->model_version, 0);
        fputs("), not by `deja run`: no plugin is known. Give `--model` the plugin that "
              "implements this model at this version (a `.so` path or a name found on "
              "`$DEJA_PLUGIN_PATH`, with `:ARG` if it takes one):\n\n",
              fp);
        fprintf(fp, "```sh\ndeja replay %s --model PLUGIN[:ARG]\n```\n", id);
        return;
    }
    if (t->model_plugin[0] == '/')
        relative_path(t->model_plugin, plugin, sizeof plugin);
    else
        snprintf(plugin, sizeof plugin, "%s", t->model_plugin);
    if (t->model_config[0] != '\0')
        snprintf(spec, sizeof spec, "%s:%s", plugin, t->model_config);
    else
        snprintf(spec, sizeof spec, "%s", plugin);
    fprintf(fp, "Run it where the store is (or with `DEJA_STORE` set)%s:\n\n",
            t->model_plugin[0] == '/' ? "" : ", with the plugin on `$DEJA_PLUGIN_PATH`");
    fprintf(fp, "```sh\ndeja replay %s --model ", id);
    cli_put_shell(fp, spec);
    fprintf(fp,
            "\n# elsewhere: export it there, import the bundle here\n"
            "deja export %s -o case.deja\n"
            "deja --store repro.store import case.deja\n"
            "deja --store repro.store replay %s --model ",
            id, id);
    cli_put_shell(fp, spec);
    fputs("\n```\n", fp);
}
