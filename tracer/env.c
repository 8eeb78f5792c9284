/*
 * tracer/env.c -- the environment fingerprint of this process: CPU and ISA,
 * memory, OS, libraries, floating-point mode and the environment variables
 * that change numerical results. Captured once, cached, never freed.
 */
#include <ctype.h>
#include <fenv.h>
#include <glob.h>
#include <gnu/libc-version.h>
#include <lmdb.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zstd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define DEJA_X86 1
#endif

#include "proto/codec.h"
#include "tracer/tracer_internal.h"

extern char **environ;

/* Bounds on what is collected. */
#define MAX_ITEMS 128

static deja_env env_value;
static deja_digest env_digest;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static const char *isa_list[MAX_ITEMS];
static const char *gpu_list[MAX_ITEMS];
static deja_kv var_list[MAX_ITEMS];
/* deja's own libraries, then what the program declared before capture
 * (deja_env_lib_set). */
#define MAX_LIBS 40
static deja_kv lib_list[MAX_LIBS];
static deja_kv extra_libs[MAX_LIBS - 8];
static size_t nextra_libs;
static pthread_mutex_t extra_lock = PTHREAD_MUTEX_INITIALIZER;
static int env_captured;

/* strdup that never returns NULL (the environment is best effort). */
static const char *dup_or_empty(const char *s)
{
    char *d = strdup(s != NULL ? s : "");
    return d != NULL ? d : "";
}

/* Strip leading and trailing white space (and quotes when `quotes`) in
 * place; returns the trimmed start. */
static char *trim(char *s, int quotes)
{
    while (*s == ' ' || *s == '\t' || (quotes && *s == '"'))
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r' ||
                     (quotes && s[n - 1] == '"')))
        s[--n] = '\0';
    return s;
}

/* The value of the first line "key..: value" of a text file (key compared
 * up to its length, then optional spaces and `sep`), or NULL. Caller frees. */
static char *file_field(const char *path, const char *key, char sep)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    char *out = NULL;
    if (f == NULL)
        return NULL;
    const size_t klen = strlen(key);
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, klen) != 0)
            continue;
        char *p = line + klen;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != sep)
            continue;
        out = strdup(trim(p + 1, 1));
        break;
    }
    fclose(f);
    return out;
}

/* qsort order of C strings. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* qsort order of key-value pairs by key. */
static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const deja_kv *)a)->key, ((const deja_kv *)b)->key);
}

/* Add an ISA flag name (static or never freed), within MAX_ITEMS. */
static void isa_add(deja_env *e, const char *flag)
{
    if (e->nisa < MAX_ITEMS)
        isa_list[e->nisa++] = flag;
}

#ifdef DEJA_X86
/* Vendor, brand string and ISA flags from cpuid. */
static void cpu_capture(deja_env *e)
{
    unsigned a, b, c, d;
    char vendor[13] = {0};
    char brand[49] = {0};
    unsigned max = __get_cpuid_max(0, NULL);
    if (max == 0) {
        e->cpu_vendor = e->cpu_model = "";
        return;
    }
    __cpuid(0, a, b, c, d);
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    e->cpu_vendor = dup_or_empty(vendor);
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) {
            __cpuid(0x80000002u + i, a, b, c, d);
            memcpy(brand + 16 * i, &a, 4);
            memcpy(brand + 16 * i + 4, &b, 4);
            memcpy(brand + 16 * i + 8, &c, 4);
            memcpy(brand + 16 * i + 12, &d, 4);
        }
    }
    e->cpu_model = dup_or_empty(trim(brand, 0));

    static const struct {
        unsigned leaf, sub;
        int reg; /* 0 eax, 1 ebx, 2 ecx, 3 edx */
        int bit;
        const char *name;
    } flags[] = {
        {1, 0, 3, 25, "sse"},
        {1, 0, 3, 26, "sse2"},
        {1, 0, 2, 0, "sse3"},
        {1, 0, 2, 9, "ssse3"},
        {1, 0, 2, 12, "fma"},
        {1, 0, 2, 19, "sse4_1"},
        {1, 0, 2, 20, "sse4_2"},
        {1, 0, 2, 23, "popcnt"},
        {1, 0, 2, 25, "aes"},
        {1, 0, 2, 28, "avx"},
        {1, 0, 2, 29, "f16c"},
        {7, 0, 1, 3, "bmi1"},
        {7, 0, 1, 5, "avx2"},
        {7, 0, 1, 8, "bmi2"},
        {7, 0, 1, 16, "avx512f"},
        {7, 0, 1, 17, "avx512dq"},
        {7, 0, 1, 21, "avx512_ifma"},
        {7, 0, 1, 28, "avx512cd"},
        {7, 0, 1, 30, "avx512bw"},
        {7, 0, 1, 31, "avx512vl"},
        {7, 0, 2, 1, "avx512_vbmi"},
        {7, 0, 2, 11, "avx512_vnni"},
        {7, 0, 2, 14, "avx512_vpopcntdq"},
        {7, 0, 3, 22, "amx_bf16"},
        {7, 0, 3, 23, "avx512_fp16"},
        {7, 0, 3, 24, "amx_tile"},
        {7, 0, 3, 25, "amx_int8"},
        {7, 1, 0, 4, "avx_vnni"},
        {7, 1, 0, 5, "avx512_bf16"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        unsigned r[4];
        if (flags[i].leaf > max)
            continue;
        __cpuid_count(flags[i].leaf, flags[i].sub, r[0], r[1], r[2], r[3]);
        if (flags[i].leaf == 7 && flags[i].sub == 1) {
            unsigned subs[4];
            __cpuid_count(7, 0, subs[0], subs[1], subs[2], subs[3]);
            if (subs[0] < 1)
                continue;
        }
        if ((r[flags[i].reg] >> flags[i].bit) & 1u)
            isa_add(e, flags[i].name);
    }
}

/* Flush-to-zero and denormals-are-zero from the MXCSR. */
static void fp_flags(deja_env *e)
{
    const unsigned csr = _mm_getcsr();
    e->ftz = (csr >> 15) & 1u;
    e->daz = (csr >> 6) & 1u;
}
#else
/* Vendor, model and feature flags from /proc/cpuinfo. */
static void cpu_capture(deja_env *e)
{
    char *v = file_field("/proc/cpuinfo", "vendor_id", ':');
    if (v == NULL)
        v = file_field("/proc/cpuinfo", "CPU implementer", ':');
    char *m = file_field("/proc/cpuinfo", "model name", ':');
    if (m == NULL)
        m = file_field("/proc/cpuinfo", "Hardware", ':');
    e->cpu_vendor = dup_or_empty(v);
    e->cpu_model = dup_or_empty(m);
    free(v);
    free(m);
    char *f = file_field("/proc/cpuinfo", "Features", ':');
    if (f == NULL)
        f = file_field("/proc/cpuinfo", "flags", ':');
    if (f != NULL) {
        char *save = NULL;
        for (char *tok = strtok_r(f, " \t", &save); tok != NULL; tok = strtok_r(NULL, " \t", &save))
            isa_add(e, dup_or_empty(tok));
        free(f);
    }
}

/* No MXCSR off x86: FTZ and DAZ are reported off. */
static void fp_flags(deja_env *e)
{
    e->ftz = 0;
    e->daz = 0;
}
#endif

/* The variables recorded by default: exact names, then prefixes owned by
 * one numerical library each (no prefix catches another tool's variables,
 * as "TF_" would catch Terraform's TF_VAR_* and TF_TOKEN_*). The README's
 * "Crash safety" section lists the same names: keep the two in step. */
static const char *const default_exact[] = {
    "BLIS_NUM_THREADS",       "CUBLAS_WORKSPACE_CONFIG", "CUDA_LAUNCH_BLOCKING",
    "CUDA_VISIBLE_DEVICES",   "MKL_CBWR",                "MKL_DEBUG_CPU_TYPE",
    "MKL_DYNAMIC",            "MKL_ENABLE_INSTRUCTIONS", "MKL_INTERFACE_LAYER",
    "MKL_NUM_THREADS",        "MKL_THREADING_LAYER",     "NUMEXPR_NUM_THREADS",
    "NVIDIA_TF32_OVERRIDE",   "PYTHONHASHSEED",          "TF_CUDNN_DETERMINISTIC",
    "TF_DETERMINISTIC_OPS",   "TF_ENABLE_ONEDNN_OPTS",   "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS", "TF_XLA_FLAGS",            "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    "VECLIB_MAXIMUM_THREADS", "XLA_FLAGS",
};
static const char *const default_prefixes[] = {"DNNL_",     "GOMP_",    "KMP_",  "OMP_",
                                               "ONEDNN_",   "OPENBLAS_", "PYTORCH_"};

/* Words that make a variable's name look like it holds a secret. */
static const char *const secret_words[] = {"AUTH",    "COOKIE",  "CRED", "KEY",     "LICENSE",
                                           "PASS",    "PRIVATE", "PWD",  "SECRET",  "SESSION",
                                           "SIGNATURE", "TOKEN"};

/* Whether `name` (`len` bytes) contains `word` (upper case), ignoring case. */
static int contains_word(const char *name, size_t len, const char *word)
{
    const size_t wl = strlen(word);

    for (size_t i = 0; i + wl <= len; i++) {
        size_t k = 0;
        while (k < wl && toupper((unsigned char)name[i + k]) == word[k])
            k++;
        if (k == wl)
            return 1;
    }
    return 0;
}

static int is_secret(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof secret_words / sizeof secret_words[0]; i++)
        if (contains_word(name, len, secret_words[i]))
            return 1;
    return 0;
}

static int is_default(const char *key, size_t len)
{
    for (size_t i = 0; i < sizeof default_prefixes / sizeof default_prefixes[0]; i++) {
        const size_t pl = strlen(default_prefixes[i]);
        if (len > pl && strncmp(key, default_prefixes[i], pl) == 0)
            return 1;
    }
    for (size_t i = 0; i < sizeof default_exact / sizeof default_exact[0]; i++)
        if (len == strlen(default_exact[i]) && strncmp(key, default_exact[i], len) == 0)
            return 1;
    return 0;
}

/* Whether the name `name` looks like it holds a secret (it contains TOKEN,
 * KEY, SECRET, PASS, CRED, AUTH, ... in any case): such a variable is never
 * recorded, whatever the lists say. */
int deja_env_var_is_secret(const char *name)
{
    return name != NULL && is_secret(name, strlen(name));
}

/* Whether the variable `name` is recorded by default (before DEJA_ENV_VARS
 * and the tracer's env_vars) and does not look like a secret. */
int deja_env_var_is_default(const char *name)
{
    if (name == NULL)
        return 0;
    const size_t len = strlen(name);
    return is_default(name, len) && !is_secret(name, len);
}

/* The separators between the rules of a selection. */
static int is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n';
}

/* Walk the rules of `spec` ("NAME", "PREFIX*", "+..." adds, "-..." removes):
 * with `key` set, return whether the last rule that matches it selects it
 * (`selected` when none does); with `key` NULL, check the syntax and return
 * 0, or DEJA_EINVAL with a message naming `what` and the bad rule. */
static int spec_walk(const char *spec, const char *what, const char *key, size_t klen,
                     int selected)
{
    const char *p = spec;

    while (p != NULL && *p != '\0') {
        while (is_sep(*p))
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        int add = 1;
        if (*p == '+' || *p == '-')
            add = *p++ == '+';
        const char *name = p;
        while (*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
               (*p >= '0' && *p <= '9'))
            p++;
        const size_t nlen = (size_t)(p - name);
        const int prefix = *p == '*';
        if (prefix)
            p++;
        if (nlen == 0 || !(*p == '\0' || is_sep(*p))) {
            if (key != NULL)
                return selected; /* checked when the tracer opened */
            size_t bad = 0;
            while (start[bad] != '\0' && !is_sep(start[bad]) && bad < 40)
                bad++;
            return deja__error_set(DEJA_EINVAL,
                                   "%s: '%.*s' is not a variable name, NAME* prefix, or one of "
                                   "them after + or -",
                                   what, (int)bad, start);
        }
        if (key != NULL &&
            (prefix ? klen >= nlen && strncmp(key, name, nlen) == 0
                    : klen == nlen && strncmp(key, name, nlen) == 0))
            selected = add;
    }
    return key != NULL ? selected : 0;
}

/* Check the syntax of a selection of variables (see deja_tracer_options's
 * env_vars); `what` names it in the message. Returns 0 or DEJA_EINVAL. */
int deja__env_spec_check(const char *spec, const char *what)
{
    return spec_walk(spec, what, NULL, 0, 0);
}

/* Whether environment variable `key` (`len` bytes) is recorded: the default
 * list, then DEJA_ENV_VARS, then `spec` may select it, last rule winning;
 * a secret-looking name never is. */
static int var_selected(const char *key, size_t len, const char *spec)
{
    int sel = is_default(key, len);
    sel = spec_walk(getenv("DEJA_ENV_VARS"), NULL, key, len, sel);
    sel = spec_walk(spec, NULL, key, len, sel);
    return sel && !is_secret(key, len);
}

/* The selected environment variables, sorted by key, in `list` (at most
 * MAX_ITEMS); keys and values point into environ when `copy` is 0. */
static size_t vars_capture(const char *spec, deja_kv *list, int copy)
{
    size_t n = 0;

    for (char **p = environ; p != NULL && *p != NULL && n < MAX_ITEMS; p++) {
        const char *eq = strchr(*p, '=');
        if (eq == NULL || !var_selected(*p, (size_t)(eq - *p), spec))
            continue;
        char *key = strndup(*p, (size_t)(eq - *p));
        if (key == NULL)
            continue;
        list[n++] = (deja_kv){key, copy ? dup_or_empty(eq + 1) : eq + 1};
    }
    qsort(list, n, sizeof list[0], cmp_kv);
    return n;
}

/* NVIDIA GPU model names from the driver's /proc files, if any. */
static void gpus_capture(deja_env *e)
{
    glob_t g;
    if (glob("/proc/driver/nvidia/gpus/*/information", 0, NULL, &g) != 0)
        return;
    for (size_t i = 0; i < g.gl_pathc && e->ngpus < MAX_ITEMS; i++) {
        char *m = file_field(g.gl_pathv[i], "Model", ':');
        if (m != NULL)
            gpu_list[e->ngpus++] = m;
    }
    globfree(&g);
}

/* Versions of the libraries deja and its numerics depend on, sorted. */
static void libs_capture(deja_env *e)
{
    static char lmdb_v[32], pbc_v[32];
    int maj = 0, min = 0, pat = 0;
    mdb_version(&maj, &min, &pat);
    snprintf(lmdb_v, sizeof lmdb_v, "%d.%d.%d", maj, min, pat);
    snprintf(pbc_v, sizeof pbc_v, "%s", protobuf_c_version());
    lib_list[0] = (deja_kv){"deja", DEJA_VERSION_STRING};
    lib_list[1] = (deja_kv){"lmdb", lmdb_v};
    lib_list[2] = (deja_kv){"protobuf-c", pbc_v};
    lib_list[3] = (deja_kv){"zstd", ZSTD_versionString()};
    e->nlibs = 4;
    pthread_mutex_lock(&extra_lock);
    for (size_t i = 0; i < nextra_libs; i++) {
        size_t k = 0;
        while (k < e->nlibs && strcmp(lib_list[k].key, extra_libs[i].key) != 0)
            k++;
        lib_list[k] = extra_libs[i];
        if (k == e->nlibs)
            e->nlibs++;
    }
    env_captured = 1;
    pthread_mutex_unlock(&extra_lock);
    qsort(lib_list, e->nlibs, sizeof lib_list[0], cmp_kv);
    e->libs = lib_list;
}

/* The current FP rounding mode as the schema names it. */
static const char *rounding_name(void)
{
    switch (fegetround()) {
#ifdef FE_TONEAREST
    case FE_TONEAREST:
        return "nearest";
#endif
#ifdef FE_UPWARD
    case FE_UPWARD:
        return "upward";
#endif
#ifdef FE_DOWNWARD
    case FE_DOWNWARD:
        return "downward";
#endif
#ifdef FE_TOWARDZERO
    case FE_TOWARDZERO:
        return "toward-zero";
#endif
    default:
        return "unknown";
    }
}

/* Fill env_value and env_digest (run once through pthread_once). */
static void env_capture(void)
{
    deja_env *e = &env_value;
    struct utsname u;
    memset(&u, 0, sizeof u);
    if (uname(&u) == 0) {
        e->arch = dup_or_empty(u.machine);
        e->kernel = dup_or_empty(u.release);
    } else {
        e->arch = e->kernel = "";
    }
    cpu_capture(e);
    qsort(isa_list, e->nisa, sizeof isa_list[0], cmp_str);
    e->isa = isa_list;
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    e->cores = cores > 0 ? (uint32_t)cores : 1;
    const long pages = sysconf(_SC_PHYS_PAGES);
    const long psize = sysconf(_SC_PAGESIZE);
    e->memory_bytes = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
    char *os = file_field("/etc/os-release", "PRETTY_NAME", '=');
    e->os = dup_or_empty(os != NULL ? os : u.sysname);
    free(os);
    e->libc = dup_or_empty(gnu_get_libc_version());
#ifdef __VERSION__
    e->compiler = __VERSION__;
#else
    e->compiler = "";
#endif
    gpus_capture(e);
    e->gpus = gpu_list;
    const char *omp = getenv("OMP_NUM_THREADS");
    const long th = omp != NULL ? strtol(omp, NULL, 10) : 0;
    e->threads = th > 0 && th < 1000000 ? (uint32_t)th : e->cores;
    e->fp_rounding = rounding_name();
    fp_flags(e);
    e->nvars = vars_capture(NULL, var_list, 1);
    e->vars = var_list;
    libs_capture(e);

    deja__buf b = {0};
    if (deja__env_encode(e, &b) == 0)
        env_digest = deja_digest_of(b.data, b.size);
    deja__buf_free(&b);
}

/* Declare a library (or any numerics-relevant setting) and its version,
 * to be part of the environment when it is captured. Returns 0,
 * DEJA_EINVAL (empty name, or the environment was already captured with
 * another value), DEJA_ENOMEM (too many). */
int deja_env_lib_set(const char *name, const char *version)
{
    int rc = 0;
    if (name == NULL || name[0] == '\0' || version == NULL)
        return deja__error_set(DEJA_EINVAL, "env: a library needs a name and a version");
    pthread_mutex_lock(&extra_lock);
    size_t i = 0;
    while (i < nextra_libs && strcmp(extra_libs[i].key, name) != 0)
        i++;
    if (i < nextra_libs && strcmp(extra_libs[i].value, version) == 0)
        goto cleanup; /* already so */
    if (env_captured) {
        rc = deja__error_set(DEJA_EINVAL,
                             "env: library '%s' declared after the environment was captured "
                             "(declare it before the first tracer opens)",
                             name);
        goto cleanup;
    }
    if (i == nextra_libs && nextra_libs == sizeof extra_libs / sizeof extra_libs[0]) {
        rc = deja__error_set(DEJA_ENOMEM, "env: more than %zu declared libraries",
                             sizeof extra_libs / sizeof extra_libs[0]);
        goto cleanup;
    }
    char *v = strdup(version);
    char *k = i < nextra_libs ? (char *)(uintptr_t)extra_libs[i].key : strdup(name);
    if (v == NULL || k == NULL) {
        free(v);
        if (i == nextra_libs)
            free(k);
        rc = deja__error_set(DEJA_ENOMEM, "env: out of memory declaring '%s'", name);
        goto cleanup;
    }
    if (i < nextra_libs)
        free((char *)(uintptr_t)extra_libs[i].value); /* ours: strdup'd below */
    extra_libs[i] = (deja_kv){k, v};
    if (i == nextra_libs)
        nextra_libs++;
cleanup:
    pthread_mutex_unlock(&extra_lock);
    return rc;
}

/* The environment of this process, captured on the first call and cached
 * for the life of the process (never free it). Its digest, XXH3-128 of its
 * canonical encoding, goes to `digest` when not NULL. */
const deja_env *deja_env_current(deja_digest *digest)
{
    pthread_once(&env_once, env_capture);
    if (digest != NULL)
        *digest = env_digest;
    return &env_value;
}

/* The environment of this process with the variables `spec` selects on top
 * of the defaults and DEJA_ENV_VARS (see deja_tracer_options's env_vars):
 * a copy in `*out` that owns its memory (free with deja_env_free()), and its
 * digest in `*digest`. Returns 0, DEJA_EINVAL on a bad `spec` or
 * DEJA_ENOMEM. */
int deja__env_capture_with(const char *spec, deja_env **out, deja_digest *digest)
{
    deja_env e = *deja_env_current(NULL);
    deja_kv *vars = calloc(MAX_ITEMS, sizeof *vars);
    deja__buf b = {0};
    size_t n = 0;
    int rc;

    *out = NULL;
    if (vars == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "capturing the environment: out of memory");
        goto cleanup;
    }
    if ((rc = deja__env_spec_check(spec, "env_vars")) != 0)
        goto cleanup;
    n = vars_capture(spec, vars, 0);
    e.vars = vars;
    e.nvars = n;
    if ((rc = deja__env_encode(&e, &b)) != 0 || (rc = deja__env_decode(b.data, b.size, out)) != 0)
        goto cleanup;
    *digest = deja_digest_of(b.data, b.size);

cleanup:
    for (size_t i = 0; i < n; i++)
        free((char *)vars[i].key);
    free(vars);
    deja__buf_free(&b);
    return rc;
}
