/* common.c: see common.h. */
#include "common.h"
#include "utf8.h"
#include <dirent.h>
#include <fcntl.h>
#include <omp.h>
#include <sys/syscall.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef WDL_VERSION
#define WDL_VERSION "0.1.0"
#endif
const char *wdl_version = WDL_VERSION;
const char *wdl_prog = "wdl";

/* Temporary outputs, in fixed buffers so that the signal handler can read
 * them without allocating: a slot is in use once its flag is set, after
 * its path is complete. */
#define MAX_TMP 64
#define TMP_PATH_MAX 4096
static char tmp_paths[MAX_TMP][TMP_PATH_MAX];
static volatile sig_atomic_t tmp_used[MAX_TMP];

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
        if (tmp_used[i]) { wdl_rmtree(tmp_paths[i]); tmp_used[i] = 0; }
}

/* Remove a file or directory tree at dirfd/name with system calls only
 * (no malloc, no stdio: async-signal-safe). Depth is bounded by the
 * stack; outputs are at most a few levels deep. */
static void rmtree_at(int dirfd, const char *name, int depth) {
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT || depth > 8) return;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) return;
    char buf[4096];
    long got;
    while ((got = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < got;) {
            struct linux_dirent64 {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *e = (void *)(buf + off);
            const char *nm = e->name;
            if (!(nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2])))) rmtree_at(fd, e->name, depth + 1);
            off += e->reclen;
        }
    }
    close(fd);
    unlinkat(dirfd, name, AT_REMOVEDIR);
}

/* Only async-signal-safe calls: remove the registered outputs, then die
 * of the same signal so the parent sees how the program ended. */
static void on_signal(int sig) {
    for (int i = 0; i < MAX_TMP; i++)
        if (tmp_used[i]) rmtree_at(AT_FDCWD, tmp_paths[i], 0);
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(128 + sig);
}

void wdl_set_prog(const char *argv0) {
    const char *s = strrchr(argv0, '/');
    wdl_prog = s ? s + 1 : argv0;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGPIPE, on_signal);
}

static char msg_prefix[32];
static void (*exit_hook)(int code);
void wdl_set_message_prefix(const char *prefix) { snprintf(msg_prefix, sizeof msg_prefix, "%s", prefix); }
void wdl_set_exit_hook(void (*hook)(int code)) { exit_hook = hook; }

/* Format a message, replace invalid UTF-8 (a message may quote input) and
 * write it as one line "wdl-prog: message". */
static void vmessage(const char *src, int line, const char *prefix, const char *fmt, va_list ap) {
    char buf[8192];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    size_t m;
    char *u = utf8_valid(buf, len, &m);
    fprintf(stderr, "%s: %s%.*s", wdl_prog, prefix, (int)m, u);
    if (src && getenv("WDL_DEBUG")) fprintf(stderr, " [%s:%d]", src, line);
    fputc('\n', stderr);
    if (u != buf) free(u);
}

void wdl_vexit(int code, const char *src, int line, const char *fmt, va_list ap) {
    fflush(stdout);
    vmessage(src, line, msg_prefix, fmt, ap);   /* errors say which rank failed */
    cleanup_tmp();
    if (exit_hook) exit_hook(code);
    exit(code);
}

void wdl_die_at(const char *src, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wdl_vexit(1, src, line, fmt, ap);
}

void wdl_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(NULL, 0, "", fmt, ap);
    va_end(ap);
}

/* Counted with an atomic: kernels' callers may allocate from OpenMP threads. */
static atomic_ullong alloc_count;
uint64_t wdl_alloc_count(void) { return atomic_load(&alloc_count); }

void *wdl_malloc_at(const char *src, int line, size_t n) {
    atomic_fetch_add(&alloc_count, 1);
    void *p = malloc(n ? n : 1);
    if (!p) wdl_die_at(src, line, "out of memory allocating %zu bytes", n);
    return p;
}
void *wdl_calloc_at(const char *src, int line, size_t n, size_t sz) {
    atomic_fetch_add(&alloc_count, 1);
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) wdl_die_at(src, line, "out of memory allocating %zu x %zu bytes", n, sz);
    return p;
}
void *wdl_realloc_at(const char *src, int line, void *p, size_t n) {
    atomic_fetch_add(&alloc_count, 1);
    void *q = realloc(p, n ? n : 1);
    if (!q) wdl_die_at(src, line, "out of memory reallocating %zu bytes", n);
    return q;
}
char *wdl_strdup_at(const char *src, int line, const char *s) {
    atomic_fetch_add(&alloc_count, 1);
    char *p = strdup(s);
    if (!p) wdl_die_at(src, line, "out of memory");
    return p;
}
/* Large buffers get the kernel's ordinary 4 KB pages, not transparent huge
 * pages: on a virtual machine that hands freed memory back to its host
 * (free page reporting works on free 2 MB blocks), a fresh huge page is
 * one the host must fault in again, and first touches measured 9-13 s
 * per GB against 0.8-1.7 s per GB for 4 KB pages, which come mostly from
 * memory the guest freed recently (docs/PERFORMANCE.md, "Fresh memory on
 * a virtual machine"). huge: ask for huge pages all the same (2 MB
 * aligned), for a buffer read so often that its TLB misses cost more. */
/* Zeroing is the first touch of every page: the kernel's page faults, not
 * the stores, are the cost. Large buffers (a real model's weights) are
 * zeroed by all threads, 1 MB at a time (by the caller alone when it is
 * itself in a parallel region). */
static void zero_by_all(char *c, size_t len) {
    const size_t piece = (size_t)1 << 20;
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (size_t i = 0; i < len; i += piece) memset(c + i, 0, len - i < piece ? len - i : piece);
}

static void *aligned_zeroed(const char *src, int line, size_t n, int huge) {
    atomic_fetch_add(&alloc_count, 1);
    void *p = NULL;
    size_t m = (n + 63) & ~(size_t)63;
    if (posix_memalign(&p, huge ? (size_t)2 << 20 : 64, m ? m : 64) != 0)
        wdl_die_at(src, line, "out of memory allocating %zu bytes", n);
    if (huge) madvise(p, m, MADV_HUGEPAGE);
    if (m >= (size_t)32 << 20 && !omp_in_parallel())
        zero_by_all(p, m);
    else
        memset(p, 0, m ? m : 64);
    return p;
}
void *wdl_aligned_at(const char *src, int line, size_t n) { return aligned_zeroed(src, line, n, 0); }

void *wdl_huge_if_cheap_at(const char *src, int line, size_t n, double max_s_per_gb) {
    /* Zeroed a chunk at a time, each timed: the first chunks can come from
     * memory another process freed a moment ago (cheap) and the rest from
     * memory the host took back, so a probe of the first chunk alone was
     * fooled; giving up at the first slow chunk wastes at most one. */
    const size_t chunk = (size_t)16 << 20;
    if (n <= chunk) return aligned_zeroed(src, line, n, 1);
    atomic_fetch_add(&alloc_count, 1);
    void *p = NULL;
    if (posix_memalign(&p, (size_t)2 << 20, n) != 0) wdl_die_at(src, line, "out of memory allocating %zu bytes", n);
    madvise(p, n, MADV_HUGEPAGE);
    for (size_t off = 0; off < n;) {
        /* the last chunk takes a short remainder, whose bound would be
         * below a parallel region's own cost */
        const size_t len = n - off < 2 * chunk ? n - off : chunk;
        const double t0 = wdl_now();
        zero_by_all((char *)p + off, len);
        if (wdl_now() - t0 > max_s_per_gb * (double)len / 1e9) {
            free(p);
            return NULL;
        }
        off += len;
    }
    return p;
}

void par_barrier(atomic_llong *arrived, long long k) {
    const long long target = k * omp_get_num_threads();
    atomic_fetch_add_explicit(arrived, 1, memory_order_acq_rel);
    for (unsigned i = 0; atomic_load_explicit(arrived, memory_order_acquire) < target; i++)
        if (i < 4096) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else
            sched_yield();
}

void wdl_tmp_register(const char *path) {
    if (strlen(path) >= TMP_PATH_MAX) die("%s: path too long", path);
    for (int i = 0; i < MAX_TMP; i++)
        if (!tmp_used[i]) {
            strcpy(tmp_paths[i], path);
            tmp_used[i] = 1;
            return;
        }
    die("too many temporary outputs");
}
void wdl_tmp_unregister(const char *path) {
    for (int i = 0; i < MAX_TMP; i++)
        if (tmp_used[i] && !strcmp(tmp_paths[i], path)) tmp_used[i] = 0;
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
        /* rename() cannot replace a non-empty directory. Linux swaps the
         * two in one step (RENAME_EXCHANGE): the final path holds the old
         * tree or the new one at every instant; the old one, now at tmp
         * (still registered, so deleted if we die here), goes after. */
#ifdef RENAME_EXCHANGE
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final_path, RENAME_EXCHANGE) == 0) {
            wdl_rmtree(tmp);
            wdl_tmp_unregister(tmp);
            return;
        }
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
            die("%s: cannot replace: %s", final_path, strerror(errno));
#endif
        /* a filesystem without the swap: move the old one aside first,
         * then rename, then delete it (a kill between the two renames
         * leaves the old tree hidden beside the final path) */
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
uint64_t rng_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t splitmix(uint64_t *x) {
    const uint64_t z = rng_mix64(*x);
    *x += 0x9e3779b97f4a7c15ULL;
    return z;
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
