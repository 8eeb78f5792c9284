/*
 * tracer/env.c -- the environment fingerprint of this process: CPU and ISA,
 * memory, OS, libraries, floating-point mode and the environment variables
 * that change numerical results. Captured once, cached, never freed.
 */
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
static deja_kv lib_list[8];

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

/* Whether environment variable `key` is one that changes numerics. */
static int var_selected(const char *key, size_t len)
{
    static const char *const prefixes[] = {"OMP_",     "MKL_", "OPENBLAS_", "TF_",
                                           "PYTORCH_", "KMP_", "GOMP_"};
    static const char *const exact[] = {"CUBLAS_WORKSPACE_CONFIG", "CUDA_VISIBLE_DEVICES",
                                        "XLA_FLAGS"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        const size_t pl = strlen(prefixes[i]);
        if (len > pl && strncmp(key, prefixes[i], pl) == 0)
            return 1;
    }
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (len == strlen(exact[i]) && strncmp(key, exact[i], len) == 0)
            return 1;
    return 0;
}

/* The selected environment variables, sorted by key (copied). */
static void vars_capture(deja_env *e)
{
    for (char **p = environ; p != NULL && *p != NULL && e->nvars < MAX_ITEMS; p++) {
        const char *eq = strchr(*p, '=');
        if (eq == NULL || !var_selected(*p, (size_t)(eq - *p)))
            continue;
        char *key = strndup(*p, (size_t)(eq - *p));
        if (key == NULL)
            continue;
        var_list[e->nvars++] = (deja_kv){key, dup_or_empty(eq + 1)};
    }
    qsort(var_list, e->nvars, sizeof var_list[0], cmp_kv);
    e->vars = var_list;
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
    vars_capture(e);
    libs_capture(e);

    deja__buf b = {0};
    if (deja__env_encode(e, &b) == 0)
        env_digest = deja_digest_of(b.data, b.size);
    deja__buf_free(&b);
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
