/*
 * replay/model.c -- loading model plugins (include/deja_model.h) and
 * running them.
 *
 * A spec is "PATH[:ARG]", split at the FIRST ':'. So a plugin file whose
 * path contains ':' cannot be named directly; give its directory in
 * $DEJA_PLUGIN_PATH and load it by bare name instead, or use a symlink.
 * PATH is a file path when it contains '/' or ends in ".so"; otherwise it
 * is a bare name, looked up as "<name>.so" then "lib<name>.so" in each
 * directory of $DEJA_PLUGIN_PATH (colon-separated), then in the directory
 * holding libdeja (or the executable it is linked into) and its deja/, then
 * in the running executable's ../lib and ../lib/deja, then in the plugin
 * folder of the installation (DEJA_PLUGIN_DIR, PREFIX/lib/deja). The
 * relative places find an installed tree wherever it was moved to.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deja.h"
#include "deja_model.h"
#include "runner/runner.h"
#include "store/store.h"

/* Plugin files larger than this are not digested (nor believed). */
#define MAX_PLUGIN_FILE ((size_t)1 << 30)
/* Bound on the list of searched directories quoted in an error. */
#define MAX_LOOKED 2048
#define PLUGIN_ERR_CAP 512

/* Bound on the libraries a plugin may report. */
#define MAX_LIBS 64
#define MAX_LIB_TEXT 256

struct deja_model {
    void *handle;
    const deja_model_plugin *plugin;
    void *instance;
    int opened;
    char *spec;
    char *path;
    char *config; /* ARG, or NULL */
    char *named;  /* the plugin as the user named it */
    uint8_t digest[64];
    size_t digest_size;
    int exec; /* an exec: runner */
    deja_kv libs[MAX_LIBS]; /* strings owned, sorted by key once open returns */
    size_t nlibs;
};

/* Copy `n` bytes of `s` into a new NUL-terminated string, or NULL when out
 * of memory. The caller frees it. */
static char *dup_n(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

/* Non-zero when `path` names an existing regular file (after symlinks). */
static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Append "dir" to the comma-separated list `looked` (bounded, truncated
 * silently: it only decorates an error message). */
static void looked_add(char *looked, const char *dir)
{
    size_t used = strlen(looked);
    if (used + 1 >= MAX_LOOKED) {
        return;
    }
    int n = snprintf(looked + used, MAX_LOOKED - used, "%s%s", used ? ", " : "", dir);
    if (n < 0 || (size_t)n >= MAX_LOOKED - used) {
        looked[used] = '\0'; /* leave the list whole rather than cut a name */
    }
}

/* Try "<dir>/<name>.so" then "<dir>/lib<name>.so". On a hit, return 1 and
 * leave a malloc'd path in `*out`; return 0 on a miss and DEJA_ENOMEM when
 * out of memory. */
static int try_dir(const char *dir, size_t dirlen, const char *name, char **out)
{
    static const char *const prefixes[] = {"", "lib"};
    int rc = 0;
    size_t cap = dirlen + strlen(name) + 16;
    char *buf = malloc(cap);
    if (!buf) {
        return deja__error_set(DEJA_ENOMEM, "plugin '%s': out of memory", name);
    }
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        snprintf(buf, cap, "%.*s/%s%s.so", (int)dirlen, dir, prefixes[i], name);
        if (is_file(buf)) {
            *out = buf;
            buf = NULL;
            rc = 1;
            break;
        }
    }
    free(buf);
    return rc;
}

/* The directory holding the file at `file` (a new string), or NULL. */
static char *dir_of(const char *file)
{
    const char *slash = strrchr(file, '/');
    if (!slash) {
        return NULL;
    }
    return dup_n(file, slash == file ? 1 : (size_t)(slash - file));
}

/* try_dir() on the NUL-terminated `dir`, and on a miss add it to the
 * directories `looked` in. */
static int try_noted(const char *dir, const char *name, char **out, char *looked)
{
    const int rc = try_dir(dir, strlen(dir), name, out);
    if (rc == 0) {
        looked_add(looked, dir);
    }
    return rc;
}

/* try_noted() on "<dir>/<sub>", when that fits a path. */
static int try_sub(const char *dir, const char *sub, const char *name, char **out, char *looked)
{
    char tmp[PATH_MAX];
    const int len = snprintf(tmp, sizeof tmp, "%s/%s", dir, sub);
    if (len < 0 || (size_t)len >= sizeof tmp) {
        return 0;
    }
    return try_noted(tmp, name, out, looked);
}

/* Resolve the bare plugin name `name` to a file path (malloc'd into
 * `*out`). Returns 0, DEJA_ENOTFOUND with the searched directories in the
 * message, or DEJA_ENOMEM. */
static int find_bare(const char *name, char **out)
{
    int rc = 0;
    char looked[MAX_LOOKED] = "";
    char *libdir = NULL;
    char *exedir = NULL;
    char exe[PATH_MAX];
    const char *env = getenv("DEJA_PLUGIN_PATH");

    if (env) {
        const char *p = env;
        while (*p) {
            const char *end = strchr(p, ':');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            if (len > 0) {
                char tmp[PATH_MAX];
                rc = try_dir(p, len, name, out);
                if (rc != 0) {
                    goto cleanup;
                }
                if (len < sizeof tmp) {
                    memcpy(tmp, p, len);
                    tmp[len] = '\0';
                    looked_add(looked, tmp);
                }
            }
            p += len;
            if (*p == ':') {
                p++;
            }
        }
    }

    /* Next to libdeja: with the static library this is the executable. */
    Dl_info info;
    if (dladdr((void *)(uintptr_t)&deja_model_load, &info) && info.dli_fname &&
        strchr(info.dli_fname, '/')) {
        char real[PATH_MAX];
        libdir = dir_of(realpath(info.dli_fname, real) ? real : info.dli_fname);
        if (libdir) {
            rc = try_noted(libdir, name, out, looked);
            if (rc == 0) {
                rc = try_sub(libdir, "deja", name, out, looked);
            }
            if (rc != 0) {
                goto cleanup;
            }
        }
    }

    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        exedir = dir_of(exe);
        if (exedir) {
            rc = try_sub(exedir, "../lib", name, out, looked);
            if (rc == 0) {
                rc = try_sub(exedir, "../lib/deja", name, out, looked);
            }
            if (rc != 0) {
                goto cleanup;
            }
        }
    }

#ifdef DEJA_PLUGIN_DIR
    rc = try_noted(DEJA_PLUGIN_DIR, name, out, looked);
    if (rc != 0) {
        goto cleanup;
    }
#endif

    rc = deja__error_set(DEJA_ENOTFOUND, "plugin '%s': no such file (looked in %s)", name,
                         looked[0] ? looked : "no directory");

cleanup:
    free(libdir);
    free(exedir);
    return rc < 0 ? rc : 0;
}

/* Digest the whole file at `path` with XXH3-128 into `out`; `what` names
 * it in messages. */
static int digest_path(const char *path, const char *what, deja_digest *out)
{
    int rc = 0;
    FILE *f = NULL;
    uint8_t *buf = NULL;
    struct stat st;

    f = fopen(path, "rb");
    if (!f) {
        rc = deja__error_set(DEJA_EIO, "plugin '%s': %s", what, strerror(errno));
        goto cleanup;
    }
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (size_t)st.st_size > MAX_PLUGIN_FILE) {
        rc = deja__error_set(DEJA_EINVAL, "plugin '%s': cannot size the file, or it is too big",
                             what);
        goto cleanup;
    }
    size_t size = (size_t)st.st_size;
    buf = malloc(size ? size : 1);
    if (!buf) {
        rc = deja__error_set(DEJA_ENOMEM, "plugin '%s': out of memory (%zu bytes)", what, size);
        goto cleanup;
    }
    if (fread(buf, 1, size, f) != size) {
        rc = deja__error_set(DEJA_EIO, "plugin '%s': short read", what);
        goto cleanup;
    }
    *out = deja_digest_of(buf, size);

cleanup:
    free(buf);
    if (f) {
        fclose(f);
    }
    return rc;
}

/* An OpenAI-compatible endpoint as a model (runner/endpoint.c): its plugin
 * description lives in its instance, its digest is the spec's. */
static int load_endpoint(deja_model *m, const char *spec, unsigned timeout_ms)
{
    deja_model_info info;
    memset(&info, 0, sizeof info);
    int rc = deja__endpoint_open(spec, timeout_ms, &m->plugin, &m->instance, &info);
    if (rc != 0) {
        return rc;
    }
    m->opened = 1;
    memcpy(m->digest, info.digest, info.digest_size);
    m->digest_size = info.digest_size;
    m->path = dup_n(spec, strlen(spec));
    return m->path ? 0 : deja__error_set(DEJA_ENOMEM, "model: out of memory");
}

/* Digest the plugin file into `model`. */
static int digest_file(deja_model *model, const char *what)
{
    deja_digest d;
    int rc = digest_path(model->path, what, &d);
    if (rc == 0) {
        memcpy(model->digest, d.bytes, sizeof d.bytes);
        model->digest_size = sizeof d.bytes;
    }
    return rc;
}

/* The host table of open() (deja_model_host): digests, and libraries
 * reported into the model (info->host_state). */
static void host_digest(const void *data, size_t size, uint8_t out[16])
{
    deja_digest d = deja_digest_of(data, size);
    memcpy(out, d.bytes, sizeof d.bytes);
}

static int host_digest_file(const char *path, uint8_t out[16])
{
    deja_digest d;
    if (!path || digest_path(path, path, &d) != 0) {
        return -1;
    }
    memcpy(out, d.bytes, sizeof d.bytes);
    return 0;
}

static int host_library(deja_model_info *info, const char *name, const char *version)
{
    deja_model *m = info ? info->host_state : NULL;
    size_t i;
    if (!m || !name || !*name || !version || strlen(name) > MAX_LIB_TEXT ||
        strlen(version) > MAX_LIB_TEXT) {
        return -1;
    }
    for (i = 0; i < m->nlibs; i++) {
        if (strcmp(m->libs[i].key, name) == 0) {
            char *v = strdup(version);
            if (!v) {
                return -1;
            }
            free((char *)(uintptr_t)m->libs[i].value);
            m->libs[i].value = v;
            return 0;
        }
    }
    if (m->nlibs >= MAX_LIBS) {
        return -1;
    }
    char *k = strdup(name), *v = strdup(version);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    m->libs[m->nlibs].key = k;
    m->libs[m->nlibs].value = v;
    m->nlibs++;
    return 0;
}

static const deja_model_host host_table = {
    sizeof(deja_model_host),
    host_digest,
    host_digest_file,
    host_library,
};

static int lib_cmp(const void *a, const void *b)
{
    return strcmp(((const deja_kv *)a)->key, ((const deja_kv *)b)->key);
}

/* Load the plugin named by `spec` ("PATH[:ARG]"), check its ABI, open an
 * instance with ARG and fill `*out`; free it with deja_model_free().
 * Returns DEJA_ENOTFOUND, DEJA_EINVAL, DEJA_EVERSION or DEJA_EMODEL as
 * described in deja.h, with a message naming the plugin. */
int deja_model_load(deja_model **out, const char *spec)
{
    return deja_model_load_ext(out, spec, NULL);
}

/* deja_model_load() with options; "exec:COMMAND ARGS..." specs are models in
 * another process, started by runner/ behind the same plugin table. */
int deja_model_load_ext(deja_model **out, const char *spec, const deja_model_options *opts)
{
    int rc = 0;
    deja_model *m = NULL;
    char *pathpart = NULL;
    const char *arg = NULL;
    char err[PLUGIN_ERR_CAP];

    if (out) {
        *out = NULL;
    }
    if (!out || !spec || !spec[0]) {
        rc = deja__error_set(DEJA_EINVAL, "model: empty plugin spec");
        goto cleanup;
    }
    if (strlen(spec) > DEJA__MAX_NAME) {
        rc = deja__error_set(DEJA_EINVAL, "model: plugin spec is longer than %d bytes",
                             DEJA__MAX_NAME);
        goto cleanup;
    }
    const char *colon = strchr(spec, ':');
    pathpart = dup_n(spec, colon ? (size_t)(colon - spec) : strlen(spec));
    if (colon) {
        arg = colon + 1;
    }
    m = calloc(1, sizeof *m);
    if (!pathpart || !m || !(m->spec = dup_n(spec, strlen(spec))) ||
        (arg && !(m->config = dup_n(arg, strlen(arg))))) {
        rc = deja__error_set(DEJA_ENOMEM, "model: out of memory");
        goto cleanup;
    }
    if (opts && opts->version != DEJA_MODEL_OPTIONS_VERSION) {
        rc = deja__error_set(DEJA_EVERSION, "model: options version %u, expected %d",
                             opts->version, DEJA_MODEL_OPTIONS_VERSION);
        goto cleanup;
    }
    if (strncmp(spec, "http://", 7) == 0 || strncmp(spec, "https://", 8) == 0) {
        /* An endpoint is named by its whole URL; it has no ARG. */
        free(m->config);
        m->config = NULL;
        m->named = dup_n(spec, strlen(spec));
        rc = m->named ? load_endpoint(m, spec, opts ? opts->timeout_ms : 0)
                      : deja__error_set(DEJA_ENOMEM, "model: out of memory");
        if (rc == 0) {
            *out = m;
            m = NULL;
        }
        goto cleanup;
    }
    if (strncmp(spec, DEJA__EXEC_PREFIX, strlen(DEJA__EXEC_PREFIX)) == 0) {
        deja_model_info xinfo;
        /* A runner is named by its whole spec (its command); it has no ARG. */
        free(m->config);
        m->config = NULL;
        m->named = dup_n(spec, strlen(spec));
        if (!m->named) {
            rc = deja__error_set(DEJA_ENOMEM, "model: out of memory");
            goto cleanup;
        }
        rc = deja__runner_open(spec + strlen(DEJA__EXEC_PREFIX), opts ? opts->timeout_ms : 0,
                               &m->plugin, &m->instance, &xinfo, &m->path);
        if (rc < 0) {
            goto cleanup;
        }
        m->opened = 1;
        m->exec = 1;
        memcpy(m->digest, xinfo.digest, xinfo.digest_size);
        m->digest_size = xinfo.digest_size;
        *out = m;
        m = NULL;
        goto cleanup;
    }
    if (!pathpart[0]) {
        rc = deja__error_set(DEJA_EINVAL, "model '%s': no plugin path before ':'", spec);
        goto cleanup;
    }

    size_t plen = strlen(pathpart);
    if (strchr(pathpart, '/') || (plen > 3 && strcmp(pathpart + plen - 3, ".so") == 0)) {
        if (!is_file(pathpart)) {
            struct stat st;
            if (stat(pathpart, &st) == 0) {
                rc = deja__error_set(DEJA_EINVAL,
                                     "plugin '%s' is not a deja model plugin "
                                     "(not a regular file)",
                                     pathpart);
            } else {
                rc = deja__error_set(DEJA_ENOTFOUND, "plugin '%s': no such file", pathpart);
            }
            goto cleanup;
        }
        m->path = dup_n(pathpart, plen);
        /* Recorded by its absolute path, so that it can be named from any
         * directory later. */
        m->named = realpath(pathpart, NULL);
        if (!m->path || !m->named) {
            rc = deja__error_set(DEJA_ENOMEM, "model: out of memory");
            goto cleanup;
        }
    } else {
        rc = find_bare(pathpart, &m->path);
        if (rc < 0) {
            goto cleanup;
        }
        m->named = dup_n(pathpart, plen);
        if (!m->named) {
            rc = deja__error_set(DEJA_ENOMEM, "model: out of memory");
            goto cleanup;
        }
    }

    /* Make the path absolute, once: the file digested is then the file
     * dlopen loads ("x.so" without a '/' would make dlopen search the
     * library path instead of the directory it was found in). */
    if (m->path[0] != '/') {
        char cwd[PATH_MAX];
        const size_t n = strlen(m->path);
        char *abs = NULL;
        if (getcwd(cwd, sizeof cwd) == NULL) {
            rc = deja__error_set(DEJA_EIO, "plugin '%s': current directory: %s", m->path,
                                 strerror(errno));
            goto cleanup;
        }
        abs = malloc(strlen(cwd) + n + 2);
        if (abs == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "model: out of memory");
            goto cleanup;
        }
        snprintf(abs, strlen(cwd) + n + 2, "%s/%s", cwd, m->path);
        free(m->path);
        m->path = abs;
    }
    dlerror();
    m->handle = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
    if (!m->handle) {
        const char *why = dlerror();
        rc = deja__error_set(DEJA_EINVAL, "plugin '%s' is not a deja model plugin (%s)", pathpart,
                             why ? why : "dlopen failed");
        goto cleanup;
    }
    void *sym = dlsym(m->handle, DEJA_MODEL_ENTRY);
    if (!sym) {
        rc = deja__error_set(DEJA_EINVAL,
                             "plugin '%s' is not a deja model plugin (no " DEJA_MODEL_ENTRY ")",
                             pathpart);
        goto cleanup;
    }
    deja_model_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* object to function pointer, as POSIX allows */
    m->plugin = entry();
    if (!m->plugin) {
        rc = deja__error_set(DEJA_EINVAL, "plugin '%s': " DEJA_MODEL_ENTRY " returned NULL",
                             pathpart);
        goto cleanup;
    }
    if (m->plugin->abi_version < DEJA_MODEL_ABI_MIN ||
        m->plugin->abi_version > DEJA_MODEL_ABI_VERSION) {
        rc = deja__error_set(DEJA_EVERSION,
                             "plugin '%s' has model ABI %u, this deja speaks %d to %d", pathpart,
                             (unsigned)m->plugin->abi_version, DEJA_MODEL_ABI_MIN,
                             DEJA_MODEL_ABI_VERSION);
        goto cleanup;
    }
    if (!m->plugin->name || !m->plugin->version || !m->plugin->infer) {
        rc = deja__error_set(DEJA_EINVAL,
                             "plugin '%s' is not a deja model plugin "
                             "(its name, version or infer is NULL)",
                             pathpart);
        goto cleanup;
    }

    deja_model_info info;
    memset(&info, 0, sizeof info);
    info.host = &host_table;
    info.host_state = m;
    if (m->plugin->open) {
        err[0] = '\0';
        int prc = m->plugin->open(arg, &m->instance, &info, err, sizeof err);
        if (prc != 0) {
            err[sizeof err - 1] = '\0';
            rc = deja__error_set(DEJA_EMODEL, "plugin '%s': open failed: %s", pathpart,
                                 err[0] ? err : "(no message)");
            goto cleanup;
        }
        m->opened = 1;
    }
    qsort(m->libs, m->nlibs, sizeof m->libs[0], lib_cmp);
    if (info.digest_size > 0 && info.digest_size <= sizeof info.digest) {
        memcpy(m->digest, info.digest, info.digest_size);
        m->digest_size = info.digest_size;
    } else {
        rc = digest_file(m, pathpart);
        if (rc < 0) {
            goto cleanup;
        }
    }

    *out = m;
    m = NULL;

cleanup:
    deja_model_free(m);
    free(pathpart);
    return rc;
}

/* Close the instance, unload the plugin and free the model. Accepts NULL. */
void deja_model_free(deja_model *model)
{
    if (!model) {
        return;
    }
    if (model->opened && model->plugin && model->plugin->close) {
        model->plugin->close(model->instance);
    }
    if (model->handle) {
        dlclose(model->handle);
    }
    for (size_t i = 0; i < model->nlibs; i++) {
        free((char *)(uintptr_t)model->libs[i].key);
        free((char *)(uintptr_t)model->libs[i].value);
    }
    free(model->spec);
    free(model->path);
    free(model->config);
    free(model->named);
    free(model);
}

/* The libraries an exec runner named in its hello, or NULL and 0. */
const deja_kv *deja_model_libs(const deja_model *model, size_t *n)
{
    const deja_kv *libs = NULL;
    size_t count = 0;
    if (model != NULL && model->exec) {
        deja__runner_libs(model->instance, &libs, &count);
    } else if (model != NULL) {
        libs = model->libs; /* reported by the plugin's open */
        count = model->nlibs;
    }
    if (n != NULL)
        *n = count;
    return count > 0 ? libs : NULL;
}

/* The model's name as the plugin declares it; owned by the plugin. The
 * accessors below return NULL (or 0) for a NULL model. */
const char *deja_model_name(const deja_model *model)
{
    return model ? model->plugin->name : NULL;
}

/* The model's version as the plugin declares it; owned by the plugin. */
const char *deja_model_version(const deja_model *model)
{
    return model ? model->plugin->version : NULL;
}

/* The weights digest (the plugin's, else the plugin file's XXH3-128); its
 * length goes to `*size` when `size` is not NULL. Owned by the model. */
const uint8_t *deja_model_digest(const deja_model *model, size_t *size)
{
    if (size) {
        *size = model ? model->digest_size : 0;
    }
    return model ? model->digest : NULL;
}

/* The spec given to deja_model_load(); owned by the model. */
const char *deja_model_spec(const deja_model *model)
{
    return model ? model->spec : NULL;
}

/* The path of the plugin file that was loaded; owned by the model. */
const char *deja_model_path(const deja_model *model)
{
    return model ? model->path : NULL;
}

/* The ARG of the spec, or NULL when there was none. */
const char *deja_model_config(const deja_model *model)
{
    return model ? model->config : NULL;
}

/* The plugin as the user named it: a bare name, or the file's absolute
 * path. Owned by the model. */
const char *deja_model_plugin_name(const deja_model *model)
{
    return model ? model->named : NULL;
}

/* The libraries the plugin reported when it opened, sorted by name. */

/* Non-zero when the plugin declares DEJA_MODEL_THREAD_SAFE. */
int deja_model_thread_safe(const deja_model *model)
{
    return model && (model->plugin->flags & DEJA_MODEL_THREAD_SAFE) != 0;
}

/* Run one inference of `model` on `ctx`. A non-zero return from the
 * plugin, or a failure it reported through deja_ctx_fail(), becomes
 * DEJA_EMODEL with the plugin's message. */
int deja_model_infer(deja_model *model, deja_ctx *ctx)
{
    if (!model || !ctx) {
        return deja__error_set(DEJA_EINVAL, "model: infer needs a model and a ctx");
    }
    int prc = model->plugin->infer(model->instance, ctx);
    const char *why = deja_ctx_error(ctx);
    if (prc != 0 || why) {
        if (why) {
            return deja__error_set(DEJA_EMODEL, "model %s %s: %s", model->plugin->name,
                                   model->plugin->version, why);
        }
        return deja__error_set(DEJA_EMODEL, "model %s %s: model returned %d", model->plugin->name,
                               model->plugin->version, prc);
    }
    return 0;
}
