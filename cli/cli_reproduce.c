/*
 * cli/cli_reproduce.c -- the command that replays a trace, as `show --md`
 * prints it for a bug report: the plugin named the way the user recorded
 * it (a bare name that resolves through $DEJA_PLUGIN_PATH, or the plugin
 * file's path relative to the current directory), with the recorded ARG,
 * and no store path of the machine it ran on.
 */
#include "cli.h"
#include "cli_escape.h"

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

/* Print the reproduce section of `show --md` for trace `t`. */
void cli_md_reproduce(FILE *fp, const deja_trace *t, const char *endpoint)
{
    char id[DEJA_ID_STRLEN + 1], plugin[PATH_MAX + 8], spec[PATH_MAX + 1024];
    deja_id_format(&t->id, id);
    fputs("\n### Reproduce\n\n", fp);
    if (!t->has_model_config && endpoint != NULL) {
        /* Recorded by the proxy: the endpoint it forwarded to. */
        fputs("Replay it on the endpoint the proxy recorded it from:\n\n", fp);
        fprintf(fp, "```sh\ndeja replay %s --model %s\n```\n", id, endpoint);
        return;
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
