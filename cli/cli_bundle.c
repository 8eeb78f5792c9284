/*
 * cli/cli_bundle.c -- bundles on the command line: telling a bundle file
 * apart, opening it in place, and printing what it holds.
 */
#include "cli_bundle.h"
#include "cli_escape.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LIST_PREVIEW_CHARS 40
#define MD_PREVIEW_CHARS 500
#define MD_FULL_TRACES 10

/* Non-zero when `path` is a regular file starting with the bundle magic. */
int cli_is_bundle(const char *path)
{
    char magic[DEJA_BUNDLE_MAGIC_LEN];
    struct stat st;
    ssize_t got;
    int fd;

    if (path == NULL || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    got = read(fd, magic, sizeof magic);
    close(fd);
    return got == (ssize_t)sizeof magic && memcmp(magic, DEJA_BUNDLE_MAGIC, sizeof magic) == 0;
}

/* Open `arg` as a bundle when it is one. */
int cli_open_source(const char *arg, deja_store **store, deja_bundle **bundle)
{
    deja_bundle *b = NULL;
    int rc;

    if (!cli_is_bundle(arg))
        return 0;
    rc = deja_bundle_open(&b, arg);
    if (rc != 0) {
        const char *msg = deja_error_last();
        if (msg != NULL && msg[0] != '\0')
            cli_error("%s", msg);
        else
            cli_error("bundle '%s': %s", arg, deja_strerror(rc));
        return -1;
    }
    *bundle = b;
    *store = deja_bundle_store(b);
    return 1;
}

/* The plugin that replays traces of `name` at `version`; see cli_bundle.h. */
void cli_plugin_guess(const char *name, const char *version, char *out, size_t cap)
{
    const char *v = version ? version : "";

    if ((v[0] == 'v' || v[0] == 'V') && v[1] >= '0' && v[1] <= '9')
        snprintf(out, cap, "%s-%s", name ? name : "model", v);
    else
        snprintf(out, cap, "%s-v%s", name ? name : "model", v);
}

/* The plugin spec the reproduce commands use: the one recorded with
 * --with-model, else a guess from the first model. */
static void replay_plugin(const deja_bundle_info *info, char *out, size_t cap)
{
    if (info->plugin != NULL && info->plugin->spec[0] != '\0')
        snprintf(out, cap, "%s", info->plugin->spec);
    else if (info->nmodels > 0)
        cli_plugin_guess(info->models[0].name, info->models[0].version, out, cap);
    else
        snprintf(out, cap, "PLUGIN");
}

/* A JSON description of a bundle. New reference or NULL. */
static json_t *info_json(const char *path, const deja_bundle_info *info)
{
    json_t *obj = json_object();
    json_t *models = json_array();
    char created[64], sum[33];
    int bad = obj == NULL || models == NULL;

    cli_format_rfc3339(info->created_ns, created, sizeof created);
    deja_digest_format(&info->checksum, sum);
    for (size_t i = 0; !bad && i < info->nmodels; i++) {
        const deja_bundle_model *m = &info->models[i];
        char *hex = cli_hex(m->digest, m->digest_size);

        bad = hex == NULL || json_array_append_new(models, json_pack("{s:o,s:o,s:s,s:I}",
                                                                      "name", cli_json_text(m->name),
                                                                      "version",
                                                                      cli_json_text(m->version),
                                                                      "digest", hex,
                                                                      "traces",
                                                                      (json_int_t)m->traces)) != 0;
        free(hex);
    }
    if (!bad)
        bad = json_object_set_new(obj, "bundle", json_string(path)) != 0 ||
              json_object_set_new(obj, "format", json_integer(info->format)) != 0 ||
              json_object_set_new(obj, "deja_version", json_string(info->deja_version)) != 0 ||
              json_object_set_new(obj, "created", json_string(created)) != 0 ||
              json_object_set_new(obj, "created_ns", json_integer(info->created_ns)) != 0 ||
              json_object_set_new(obj, "traces", json_integer((json_int_t)info->traces)) != 0 ||
              json_object_set_new(obj, "blobs", json_integer((json_int_t)info->blobs)) != 0 ||
              json_object_set_new(obj, "environments", json_integer((json_int_t)info->envs)) != 0 ||
              json_object_set_new(obj, "file_bytes", json_integer((json_int_t)info->file_bytes)) !=
                  0 ||
              json_object_set_new(obj, "body_bytes", json_integer((json_int_t)info->body_bytes)) !=
                  0 ||
              json_object_set_new(obj, "checksum", json_string(sum)) != 0 ||
              json_object_set(obj, "models", models) != 0;
    if (!bad && info->plugin != NULL) {
        const deja_bundle_plugin *p = info->plugin;
        char fd[33];
        char *wd = cli_hex(p->model_digest, p->model_digest_size);

        deja_digest_format(&p->file_digest, fd);
        bad = wd == NULL ||
              json_object_set_new(
                  obj, "plugin",
                  json_pack("{s:o,s:o,s:s,s:I,s:o,s:o,s:s,s:b}", "spec", cli_json_text(p->spec),
                            "file", cli_json_text(p->file), "file_digest", fd, "file_size",
                            (json_int_t)p->file_size, "model_name", cli_json_text(p->model_name),
                            "model_version", cli_json_text(p->model_version),
                            "model_digest", wd, "included", p->data != NULL)) != 0;
        free(wd);
    } else if (!bad) {
        bad = json_object_set_new(obj, "plugin", json_null()) != 0;
    }
    json_decref(models);
    if (bad) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* Print on `fp` a line per model of `info` (name, version, weights digest or
 * "-", traces) and, when the bundle records its plugin, a line for it (spec,
 * file, size, digest, whether the file is included): as lines of the text
 * description when `md` is zero, else as rows of the Markdown report's
 * table. */
static void print_models_and_plugin(FILE *fp, const deja_bundle_info *info, int md)
{
    for (size_t i = 0; i < info->nmodels; i++) {
        const deja_bundle_model *m = &info->models[i];
        char *hex = cli_hex(m->digest, m->digest_size);

        if (md) {
            fputs("| model | ", fp);
            cli_put_md_code(fp, m->name, 1);
            fputs(" version ", fp);
            cli_put_md_code(fp, m->version, 1);
            fprintf(fp, ", weights digest `%s`, %llu traces |\n", hex && hex[0] ? hex : "-",
                    (unsigned long long)m->traces);
        } else {
            fputs("model     ", fp);
            cli_put_term(fp, m->name);
            fputc(' ', fp);
            cli_put_term(fp, m->version);
            fprintf(fp, ", digest %s, %llu traces\n", hex && hex[0] ? hex : "-",
                    (unsigned long long)m->traces);
        }
        free(hex);
    }
    if (info->plugin != NULL) {
        const deja_bundle_plugin *p = info->plugin;
        char fd[33], psize[32];

        deja_digest_format(&p->file_digest, fd);
        cli_format_bytes(p->file_size, psize, sizeof psize);
        if (md) {
            fputs("| plugin | ", fp);
            cli_put_md_code(fp, p->spec, 1);
            fputs(": file ", fp);
            cli_put_md_code(fp, p->file, 1);
            fprintf(fp, ", %s, XXH3-128 `%s`%s |\n", psize, fd,
                    p->data != NULL ? " (included)" : "");
        } else {
            fputs("plugin    ", fp);
            cli_put_term(fp, p->spec);
            fputs(" (", fp);
            cli_put_term(fp, p->file);
            fprintf(fp, ", %s, XXH3-128 %s; model ", psize, fd);
            cli_put_term(fp, p->model_name);
            fputc(' ', fp);
            cli_put_term(fp, p->model_version);
            fprintf(fp, ")%s\n", p->data != NULL ? ", file included (never run by deja)" : "");
        }
    }
}

/* The text header of a bundle's description. */
static void info_text(FILE *fp, const char *path, const deja_bundle_info *info)
{
    char created[64], size[32], body[32], sum[33];

    cli_format_utc(info->created_ns, created, sizeof created);
    cli_format_bytes(info->file_bytes, size, sizeof size);
    cli_format_bytes(info->body_bytes, body, sizeof body);
    deja_digest_format(&info->checksum, sum);
    fputs("bundle    ", fp);
    cli_put_term(fp, path);
    fprintf(fp, "\nformat    %u, written by deja ", info->format);
    cli_put_term(fp, info->deja_version);
    fprintf(fp, " at %s\n", created);
    fprintf(fp, "size      %s (%s of records), checksum %s\n", size, body, sum);
    fprintf(fp, "holds     %s, %s, %s\n", cli_count(info->traces, "trace"),
            cli_count(info->blobs, "blob"), cli_count(info->envs, "environment"));
    print_models_and_plugin(fp, info, 0);
}

typedef struct list_state {
    int json;
    int failed;
} list_state;

/* deja_store_list callback: one line per trace. */
static int list_cb(const deja_trace *t, void *payload)
{
    list_state *s = payload;
    char id[DEJA_ID_STRLEN + 1], when[64], dur[32];

    if (s->json) {
        if (cli_json_print(cli_trace_json(t, 0)) < 0) {
            s->failed = 1;
            return 1;
        }
        return 0;
    }
    deja_id_format(&t->id, id);
    cli_format_utc(t->start_ns, when, sizeof when);
    cli_format_duration(t->duration_ns, dur, sizeof dur);
    printf("%s  %s  ", id, when);
    cli_put_term(stdout, t->model_name);
    fputc('@', stdout);
    cli_put_term(stdout, t->model_version);
    printf("  %-5s  %7s", cli_status_name(t->status), dur);
    if (t->ninputs > 0) {
        fputs("  ", stdout);
        cli_print_preview(stdout, &t->inputs[0], LIST_PREVIEW_CHARS);
    }
    fputc('\n', stdout);
    return 0;
}

/* Print what a bundle holds. */
int cli_bundle_print(const char *path, deja_bundle *bundle, int json)
{
    const deja_bundle_info *info = deja_bundle_info_get(bundle);
    deja_filter all = DEJA_FILTER_INIT;
    list_state s = {json, 0};
    int rc;

    if (json) {
        if (cli_json_print(info_json(path, info)) < 0)
            return cli_error("out of memory printing the bundle");
    } else {
        info_text(stdout, path, info);
        fputs("\n", stdout);
    }
    rc = deja_store_list(deja_bundle_store(bundle), &all, list_cb, NULL, &s);
    if (rc < 0)
        return cli_lib_error(rc, "bundle '%s'", path);
    if (s.failed)
        return cli_error("out of memory printing the bundle");
    return CLI_EXIT_OK;
}

/* The fence of a block that shows a preview of `t`: longer than any run of
 * backticks in its bytes (at least four), so the preview cannot close it. */
static size_t fence_len(const deja_tensor *t)
{
    size_t run = 0, longest = 3;

    for (size_t i = 0; t->data != NULL && i < t->size; i++) {
        run = ((const uint8_t *)t->data)[i] == '`' ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    return longest + 1;
}

static void put_fence(FILE *fp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fputc('`', fp);
}

/* Markdown tensors: a list with a preview in a fenced block. */
static void md_tensors(FILE *fp, const deja_tensor *ts, size_t n)
{
    if (n == 0)
        fputs("(none)\n", fp);
    for (size_t i = 0; i < n; i++) {
        char shape[160];
        const size_t fence = fence_len(&ts[i]);

        cli_format_shape(&ts[i], shape, sizeof shape);
        fputs("- ", fp);
        cli_put_md_code(fp, ts[i].name, 0);
        fprintf(fp, " %s, %zu bytes\n\n  ", shape, ts[i].size);
        put_fence(fp, fence);
        fputs("\n  ", fp);
        cli_print_preview(fp, &ts[i], MD_PREVIEW_CHARS);
        fputs("\n  ", fp);
        put_fence(fp, fence);
        fputc('\n', fp);
    }
}

/* Print "key=value" (value in quotes when `quote`) as one code span. */
static void md_kv(FILE *fp, const char *key, const char *value, int quote, int in_table)
{
    const size_t kl = strlen(key != NULL ? key : ""), vl = strlen(value != NULL ? value : "");
    char *text = malloc(kl + vl + 4);

    if (text == NULL) {
        fputs("`?`", fp);
        return;
    }
    snprintf(text, kl + vl + 4, quote ? "%s=\"%s\"" : "%s=%s", key != NULL ? key : "",
             value != NULL ? value : "");
    cli_put_md_code(fp, text, in_table);
    free(text);
}

/* A key=value code span for a Markdown table; see bundle_util.h. */
void cli_md_kv(FILE *fp, const char *key, const char *value, int in_table)
{
    md_kv(fp, key, value, 0, in_table);
}

/* The params of a trace as code spans in a table cell; see bundle_util.h. */
void cli_md_params(FILE *fp, const deja_trace *t)
{
    for (size_t i = 0; i < t->nparams; i++) {
        const deja_param *p = &t->params[i];
        char num[40];

        fputc(' ', fp);
        if (p->kind == DEJA_PARAM_NUM) {
            cli_format_double(p->num, num, sizeof num);
            md_kv(fp, p->key, num, 0, 1);
        } else if (p->kind == DEJA_PARAM_STR) {
            md_kv(fp, p->key, p->str, 1, 1);
        } else {
            md_kv(fp, p->key, p->flag ? "true" : "false", 0, 1);
        }
    }
}

/* The environment variables of `env` a Markdown report may show; see
 * bundle_util.h. */
void cli_md_env_vars(FILE *fp, const deja_env *env)
{
    for (size_t i = 0; i < env->nvars; i++) {
        if (!deja_env_var_is_default(env->vars[i].key))
            continue;
        fputs("- ", fp);
        cli_md_kv(fp, env->vars[i].key, env->vars[i].value, 0);
        fputc('\n', fp);
    }
}

/* The inputs, outputs and recorded randomness of a trace in Markdown; see
 * cli_bundle.h. */
void cli_md_trace_data(FILE *fp, const deja_trace *t, const char *hashes)
{
    fprintf(fp, "\n%s Inputs\n\n", hashes);
    md_tensors(fp, t->inputs, t->ninputs);
    fprintf(fp, "\n%s Outputs\n\n", hashes);
    md_tensors(fp, t->outputs, t->noutputs);
    fprintf(fp, "\n%s Recorded randomness and time\n\n", hashes);
    for (size_t i = 0; i < t->nseeds; i++) {
        fputs("- seed ", fp);
        cli_put_md_code(fp, t->seeds[i].name, 0);
        fprintf(fp, " = %llu\n", (unsigned long long)t->seeds[i].value);
    }
    for (size_t i = 0; i < t->nrng; i++) {
        fputs("- RNG stream ", fp);
        cli_put_md_code(fp, t->rng[i].name, 0);
        fprintf(fp, ": seed %llu, %zu draws\n", (unsigned long long)t->rng[i].seed,
                t->rng[i].ndraws);
    }
    fprintf(fp, "- %zu clock reads\n", t->nclock);
}

/* One trace in Markdown, under a level-3 heading. */
static void md_trace(FILE *fp, const deja_trace *t, const deja_env *env, const char *file,
                     const char *plugin)
{
    char id[DEJA_ID_STRLEN + 1], utc[64], dur[32];
    char *digest = cli_hex(t->model_digest, t->model_digest_size);

    deja_id_format(&t->id, id);
    cli_format_utc(t->start_ns, utc, sizeof utc);
    cli_format_duration(t->duration_ns, dur, sizeof dur);
    fprintf(fp, "\n### Trace `%s`\n\n| field | value |\n|---|---|\n", id);
    fputs("| model | ", fp);
    cli_put_md_code(fp, t->model_name, 1);
    fputs(" |\n| version | ", fp);
    cli_put_md_code(fp, t->model_version, 1);
    fputs(" |\n", fp);
    fprintf(fp, "| weights digest | `%s` |\n", digest && digest[0] ? digest : "-");
    fprintf(fp, "| recorded | %s |\n| duration | %s |\n| status | %s |\n", utc, dur,
            cli_status_name(t->status));
    if (t->error && t->error[0]) {
        fputs("| error | ", fp);
        cli_put_md_text(fp, t->error);
        fputs(" |\n", fp);
    }
    if (t->nparams > 0) {
        fputs("| params |", fp);
        cli_md_params(fp, t);
        fputs(" |\n", fp);
    }
    if (t->ntags > 0) {
        fputs("| tags |", fp);
        for (size_t i = 0; i < t->ntags; i++) {
            fputc(' ', fp);
            cli_md_kv(fp, t->tags[i].key, t->tags[i].value, 1);
        }
        fputs(" |\n", fp);
    }
    fputs("\n#### Environment\n\n", fp);
    if (env != NULL) {
        char d[33], mem[32];

        deja_digest_format(&t->env, d);
        cli_format_bytes(env->memory_bytes, mem, sizeof mem);
        fprintf(fp, "- digest `%s`\n- ", d);
        cli_put_md_code(fp, env->arch, 0);
        fputc(' ', fp);
        cli_put_md_code(fp, env->cpu_model, 0);
        fprintf(fp, ", %u cores, %s memory, ", env->cores, mem);
        cli_put_md_code(fp, env->os, 0);
        fputc(' ', fp);
        cli_put_md_code(fp, env->kernel, 0);
        fputs(", ", fp);
        cli_put_md_code(fp, env->libc, 0);
        fputs(", ", fp);
        cli_put_md_code(fp, env->compiler, 0);
        fprintf(fp, ", %u threads, fp ", env->threads);
        cli_put_md_code(fp, env->fp_rounding, 0);
        fprintf(fp, "%s%s\n", env->ftz ? " ftz" : "", env->daz ? " daz" : "");
        for (size_t i = 0; i < env->ngpus; i++) {
            fputs("- gpu ", fp);
            cli_put_md_code(fp, env->gpus[i], 0);
            fputc('\n', fp);
        }
        cli_md_env_vars(fp, env);
    } else {
        fputs("(not recorded)\n", fp);
    }
    cli_md_trace_data(fp, t, "####");
    fputs("\n```sh\ndeja --store repro.store import ", fp);
    cli_put_shell(fp, file);
    fprintf(fp, "\ndeja --store repro.store replay %s --model ", id);
    cli_put_shell(fp, plugin);
    fputs("\n```\n", fp);
    free(digest);
}

/* Print the Markdown bug report of a bundle. */
int cli_bundle_md(FILE *fp, deja_store *store, const deja_id *ids, size_t n, const char *file,
                  const deja_bundle_info *info)
{
    char created[64], size[32], sum[33], plugin[PATH_MAX];
    const char *base = strrchr(file, '/');

    base = base ? base + 1 : file;
    cli_format_utc(info->created_ns, created, sizeof created);
    cli_format_bytes(info->file_bytes, size, sizeof size);
    deja_digest_format(&info->checksum, sum);
    replay_plugin(info, plugin, sizeof plugin);
    fputs("## deja bundle ", fp);
    cli_put_md_code(fp, base, 0);
    fputs("\n\n| field | value |\n|---|---|\n| file | ", fp);
    cli_put_md_code(fp, base, 1);
    fprintf(fp, ", %s, XXH3-128 `%s` |\n", size, sum);
    fprintf(fp, "| holds | %llu traces, %llu blobs, %llu environments |\n",
            (unsigned long long)info->traces, (unsigned long long)info->blobs,
            (unsigned long long)info->envs);
    print_models_and_plugin(fp, info, 1);
    fprintf(fp, "| created | %s by deja ", created);
    cli_put_md_code(fp, info->deja_version, 1);
    fprintf(fp, " (bundle format %u) |\n", info->format);
    fputs("\n### Reproduce\n\n```sh\n# what the bundle holds\ndeja show ", fp);
    cli_put_shell(fp, base);
    fputs("\n# replay every trace in place, without importing\ndeja replay ", fp);
    cli_put_shell(fp, base);
    fputs(" --model ", fp);
    cli_put_shell(fp, plugin);
    fputs("\n# or import it (trace ids are kept) and replay from a store\n"
          "deja --store repro.store import ", fp);
    cli_put_shell(fp, base);
    fputs("\ndeja --store repro.store replay --model ", fp);
    cli_put_shell(fp, plugin);
    fputs("\n```\n", fp);
    for (size_t i = 0; i < n && i < MD_FULL_TRACES; i++) {
        deja_trace *t = NULL;
        deja_env *env = NULL;
        char id[DEJA_ID_STRLEN + 1];
        int rc = deja_trace_get(store, &ids[i], &t);

        deja_id_format(&ids[i], id);
        if (rc < 0)
            return cli_lib_error(rc, "trace %s", id);
        if (t->has_env && (rc = deja_store_env_get(store, &t->env, &env)) < 0) {
            deja_trace_free(t);
            return cli_lib_error(rc, "trace %s: environment", id);
        }
        md_trace(fp, t, env, base, plugin);
        deja_env_free(env);
        deja_trace_free(t);
    }
    if (n > MD_FULL_TRACES) {
        fprintf(fp, "\n### %zu more traces\n\n", n - MD_FULL_TRACES);
        for (size_t i = MD_FULL_TRACES; i < n; i++) {
            char id[DEJA_ID_STRLEN + 1];

            deja_id_format(&ids[i], id);
            fprintf(fp, "- `%s`\n", id);
        }
    }
    return CLI_EXIT_OK;
}
