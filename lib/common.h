/* common.h: error reporting, checked allocation, atomic outputs.
 * Every program sets its name once (wdl_set_prog) so that errors read
 * "wdl-<prog>: <what>: <why>" on one line. A failing program removes every
 * temporary output it registered, so nothing half-written is left behind. */
#ifndef WDL_COMMON_H
#define WDL_COMMON_H
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

extern const char *wdl_prog;
void wdl_set_prog(const char *argv0);

/* Print "wdl-prog: message" and exit(1). With WDL_DEBUG set in the
 * environment the C source location is appended (for bug reports). */
_Noreturn void wdl_die_at(const char *src, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define die(...) wdl_die_at(__FILE__, __LINE__, __VA_ARGS__)
/* The message as die prints it, then exit(code) after removing temporary
 * outputs (cli_usage_error uses code 2). Messages are made valid UTF-8. */
_Noreturn void wdl_vexit(int code, const char *src, int line, const char *fmt, va_list ap);
/* Under MPI (lib/dist.c): a prefix after the program name in every
 * message ("rank 1: "), and a function that ends the process in place of
 * exit() once temporary outputs are gone (it ends the whole job). */
void wdl_set_message_prefix(const char *prefix);
void wdl_set_exit_hook(void (*hook)(int code));
/* Warning/info on stderr, prefixed by the program name. */
void wdl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void *wdl_malloc_at(const char *src, int line, size_t n);
void *wdl_calloc_at(const char *src, int line, size_t n, size_t sz);
void *wdl_realloc_at(const char *src, int line, void *p, size_t n);
char *wdl_strdup_at(const char *src, int line, const char *s);
/* 64-byte aligned, zeroed; free with free(). */
void *wdl_aligned_at(const char *src, int line, size_t n);
#define xmalloc(n) wdl_malloc_at(__FILE__, __LINE__, (n))
#define xcalloc(n, s) wdl_calloc_at(__FILE__, __LINE__, (n), (s))
#define xrealloc(p, n) wdl_realloc_at(__FILE__, __LINE__, (p), (n))
#define xstrdup(s) wdl_strdup_at(__FILE__, __LINE__, (s))
#define xaligned(n) wdl_aligned_at(__FILE__, __LINE__, (n))
/* n bytes as xaligned gives them but 2 MB aligned and in transparent huge
 * pages (where the kernel allows), only if fresh huge pages come cheaply:
 * NULL (nothing kept) as soon as faulting in a chunk of them (16 MB, the
 * last up to 32) takes longer than max_s_per_gb seconds per 1e9 bytes (see
 * common.c for when they cost more than they give). n of 16 MB or less:
 * always given. */
void *wdl_huge_if_cheap_at(const char *src, int line, size_t n, double max_s_per_gb);
#define xhuge_if_cheap(n, s) wdl_huge_if_cheap_at(__FILE__, __LINE__, (n), (s))
/* How many allocations the wrappers above have made so far (for the test
 * that a training step allocates nothing). It sees only the project's own
 * allocations, all of which go through these wrappers: OpenBLAS, oneDNN,
 * libgomp and libc allocate by themselves, out of its sight and our control. */
uint64_t wdl_alloc_count(void);

/* The chunk size of a parallel loop over n items on nt threads: about 8
 * chunks a thread, taken as threads come (schedule(dynamic)) rather than in
 * fixed shares. The programs' waiting threads sleep (cli.c), and a
 * sleeping thread wakes some 50 us after a region starts on a virtual
 * Xeon (longer than a whole RMSNorm of the nano model's batch, a fifth of
 * a 4-row decoding product): with fixed shares the running thread did its
 * share and then waited for the late one's. Loops that use it compute
 * each item the same whichever thread takes it, so the bytes do not
 * depend on the schedule. */
static inline int64_t par_chunk(int64_t n, int nt) { return n / (8 * (int64_t)(nt > 0 ? nt : 1)) + 1; }

/* A barrier inside one parallel region that waits awake: the k-th call of
 * each thread (k from 1) returns once all the team's threads have made
 * their k-th call, and what a thread wrote before its call is visible to
 * every thread after theirs. `arrived` is shared by the region's threads and
 * zero before it. An OpenMP barrier of the programs' sleeping threads costs
 * the woken thread's wake-up (88 us a barrier on a 2-core Zen 3 VM, the
 * default M1's products); this one spins for 4,096 pauses (110 us on
 * that Zen 3) and then yields the core at each look, so that a partner
 * descheduled by a competing process gets it. For the short waits inside one computation
 * (a shared packing, then its use), not for idle threads between regions. */
void par_barrier(atomic_llong *arrived, long long k);

/* Temporary outputs: a path registered here is deleted (file, or directory
 * tree) if the program dies or gets SIGINT/SIGTERM/SIGHUP before it is
 * unregistered. */
void wdl_tmp_register(const char *path);
void wdl_tmp_unregister(const char *path);
/* "<dir>/.<base>.tmp.<pid>" for a final path: same filesystem, so rename()
 * is atomic. Caller frees. */
char *wdl_tmp_name(const char *final_path);
/* Rename tmp to final (replacing a file, or a directory tree), unregister. */
void wdl_commit(const char *tmp, const char *final_path);
/* Remove a file or directory tree; ignores a missing path. */
void wdl_rmtree(const char *path);
/* mkdir -p */
void wdl_mkdirs(const char *path);

/* Whole-file read; dies with the path on failure. Adds a NUL after the data. */
char *wdl_read_file(const char *path, size_t *len);
/* Join a directory and a file name. Caller frees. */
char *wdl_path_join(const char *dir, const char *name);
int wdl_is_dir(const char *path);
int wdl_exists(const char *path);

/* Growable int32 vector (token ids and the like). */
typedef struct { int32_t *v; size_t n, cap; } ivec;
void ivec_push(ivec *a, int32_t x);
void ivec_free(ivec *a);

/* Seeded RNG (xoshiro256**): a tiny state that checkpoints can store. */
typedef struct { uint64_t s[4]; } wdl_rng;
void rng_seed(wdl_rng *r, uint64_t seed);
uint64_t rng_u64(wdl_rng *r);
double rng_uniform(wdl_rng *r);   /* [0,1) with 53 bits */
float rng_normal(wdl_rng *r);     /* standard normal (Box-Muller) */
uint64_t rng_below(wdl_rng *r, uint64_t n); /* unbiased in [0,n) */
/* splitmix64's step and output function on z: a bijective 64-bit mixer
 * (rng_seed's expansion; a counter-based hash where a stream would depend
 * on the order of draws, as NEFTune's noise). */
uint64_t rng_mix64(uint64_t z);

/* Wall clock in seconds (monotonic). */
double wdl_now(void);
/* The project version string (from the Makefile). */
extern const char *wdl_version;
#endif
