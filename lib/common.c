/* common.c: see common.h. */
#include "common.h"
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef WDL_VERSION
#define WDL_VERSION "0.1.0"
#endif
const char *wdl_version = WDL_VERSION;
const char *wdl_prog = "wdl";

#define MAX_TMP 64
static char *tmp_paths[MAX_TMP];

void wdl_rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char *p = wdl_path_join(path, e->d_name);
                wdl_rmtree(p);
                free(p);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void cleanup_tmp(void) {
    for (int i = 0; i < MAX_TMP; i++)
        if (tmp_paths[i]) { wdl_rmtree(tmp_paths[i]); free(tmp_paths[i]); tmp_paths[i] = NULL; }
}

static void on_signal(int sig) {
    cleanup_tmp();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* OpenMP threads that spin while waiting collapse throughput as soon as
 * another process wants the same cores (two programs in a pipe, a build):
 * measured 2x slower under one competing process, up to 50x for decoding.
 * libgomp reads its wait policy from the environment when it loads, before
 * main, so when the user has not chosen one the program re-executes itself
 * once with OMP_WAIT_POLICY=passive (about 7% slower on an idle machine;
 * set OMP_WAIT_POLICY=active to get that back).
 *
 * The same goes for OpenBLAS's choice of kernels: Debian 12's OpenBLAS
 * (0.3.21) does not know newer Xeons (e.g. Emerald Rapids, family 6 model
 * 207) and falls back to its generic "Prescott" (SSE3) kernels: measured on
 * one core of such a machine (shared, noisy) 12-18 GFLOP/s of sgemm on the
 * bench model's shapes, against 90-100 with its SkylakeX kernels. When it
 * did so on a
 * CPU with AVX-512 (or AVX2) and the user has not set OPENBLAS_CORETYPE, it
 * is set to SkylakeX (or Haswell) for the re-executed program. */
char *openblas_get_corename(void);
static int wdl_fix_openblas_core(void) {
    if (getenv("OPENBLAS_CORETYPE") || strcmp(openblas_get_corename(), "Prescott")) return 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    else
        return 0;
    return 1;
}
__attribute__((constructor)) static void wdl_wait_policy(void) {
    int again = wdl_fix_openblas_core();
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        again = 1;
    }
    if (!again) return;
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f) return;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int complete = feof(f);
    fclose(f);
    if (!complete || n == 0) return;
    buf[n] = 0;
    char *argv[1024];
    int argc = 0;
    for (size_t i = 0; i < n && argc < 1023; i += strlen(buf + i) + 1) argv[argc++] = buf + i;
    argv[argc] = NULL;
    execv("/proc/self/exe", argv);   /* on failure: carry on as we are */
}

void wdl_set_prog(const char *argv0) {
    const char *s = strrchr(argv0, '/');
    wdl_prog = s ? s + 1 : argv0;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGPIPE, on_signal);
}

void wdl_die_at(const char *src, int line, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: ", wdl_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (getenv("WDL_DEBUG")) fprintf(stderr, " [%s:%d]", src, line);
    fputc('\n', stderr);
    cleanup_tmp();
    exit(1);
}

void wdl_warn(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", wdl_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void *wdl_malloc_at(const char *src, int line, size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) wdl_die_at(src, line, "out of memory allocating %zu bytes", n);
    return p;
}
void *wdl_calloc_at(const char *src, int line, size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) wdl_die_at(src, line, "out of memory allocating %zu x %zu bytes", n, sz);
    return p;
}
void *wdl_realloc_at(const char *src, int line, void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) wdl_die_at(src, line, "out of memory reallocating %zu bytes", n);
    return q;
}
char *wdl_strdup_at(const char *src, int line, const char *s) {
    char *p = strdup(s);
    if (!p) wdl_die_at(src, line, "out of memory");
    return p;
}
void *wdl_aligned_at(const char *src, int line, size_t n) {
    void *p = NULL;
    size_t m = (n + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, m ? m : 64) != 0)
        wdl_die_at(src, line, "out of memory allocating %zu bytes", n);
    memset(p, 0, m ? m : 64);
    return p;
}

void wdl_tmp_register(const char *path) {
    for (int i = 0; i < MAX_TMP; i++)
        if (!tmp_paths[i]) { tmp_paths[i] = xstrdup(path); return; }
    die("too many temporary outputs");
}
void wdl_tmp_unregister(const char *path) {
    for (int i = 0; i < MAX_TMP; i++)
        if (tmp_paths[i] && !strcmp(tmp_paths[i], path)) { free(tmp_paths[i]); tmp_paths[i] = NULL; }
}

char *wdl_tmp_name(const char *final_path) {
    char *a = xstrdup(final_path), *b = xstrdup(final_path);
    /* strip trailing slashes for basename/dirname */
    for (size_t n = strlen(a); n > 1 && a[n - 1] == '/'; n--) { a[n - 1] = 0; b[n - 1] = 0; }
    const char *d = dirname(a), *f = basename(b);
    size_t n = strlen(d) + strlen(f) + 64;
    char *t = xmalloc(n);
    snprintf(t, n, "%s/.%s.tmp.%ld", d, f, (long)getpid());
    free(a); free(b);
    return t;
}

void wdl_commit(const char *tmp, const char *final_path) {
    struct stat st;
    if (stat(tmp, &st) == 0 && S_ISDIR(st.st_mode) && wdl_is_dir(final_path)) {
        /* rename() cannot replace a non-empty directory: move the old one
         * aside first, then swap, then delete it. */
        char *old = wdl_tmp_name(final_path);
        size_t n = strlen(old) + 5;
        char *old2 = xmalloc(n);
        snprintf(old2, n, "%s.old", old);
        if (rename(final_path, old2) != 0) die("%s: cannot replace: %s", final_path, strerror(errno));
        if (rename(tmp, final_path) != 0) die("%s: cannot rename into place: %s", final_path, strerror(errno));
        wdl_rmtree(old2);
        free(old); free(old2);
    } else if (rename(tmp, final_path) != 0) {
        die("%s: cannot rename into place: %s", final_path, strerror(errno));
    }
    wdl_tmp_unregister(tmp);
}

void wdl_mkdirs(const char *path) {
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) die("%s: cannot create directory: %s", p, strerror(errno));
            *s = '/';
        }
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) die("%s: cannot create directory: %s", p, strerror(errno));
    free(p);
}

char *wdl_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) { cap *= 2; buf = xrealloc(buf, cap); }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) die("%s: read error", path);
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

char *wdl_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s%s%s", dir, (*dir && dir[strlen(dir) - 1] == '/') ? "" : "/", name);
    return p;
}
int wdl_is_dir(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISDIR(st.st_mode); }
int wdl_exists(const char *path) { struct stat st; return stat(path, &st) == 0; }

void ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) { a->cap = a->cap ? a->cap * 2 : 64; a->v = xrealloc(a->v, a->cap * sizeof(int32_t)); }
    a->v[a->n++] = x;
}
void ivec_free(ivec *a) { free(a->v); a->v = NULL; a->n = a->cap = 0; }

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
void rng_seed(wdl_rng *r, uint64_t seed) { for (int i = 0; i < 4; i++) r->s[i] = splitmix(&seed); }
uint64_t rng_u64(wdl_rng *r) {
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return res;
}
double rng_uniform(wdl_rng *r) { return (rng_u64(r) >> 11) * 0x1.0p-53; }
float rng_normal(wdl_rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
uint64_t rng_below(wdl_rng *r, uint64_t n) {
    if (n == 0) return 0;
    uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
    do x = rng_u64(r); while (x >= lim);
    return x % n;
}

double wdl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
long long wdl_parse_int(const char *flag, const char *s) {
    char *end;
    errno = 0;
    if (!s) die("%s needs a value", flag);
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) die("%s: not an integer: '%s'", flag, s);
    return v;
}
double wdl_parse_double(const char *flag, const char *s) {
    char *end;
    errno = 0;
    if (!s) die("%s needs a value", flag);
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) die("%s: not a number: '%s'", flag, s);
    return v;
}

const char *wdl_arg(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) die("%s needs a value", argv[*i]);
    return argv[++*i];
}
