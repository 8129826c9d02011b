/* bench_peak: the cores' fp32 multiply-add peak, measured. Each thread runs
 * CHAINS independent chains x = x * m + c on registers, as wide as the CPU
 * allows (AVX-512: 16 floats; AVX2 with FMA: 8). Twelve chains are more
 * than the FMA units need in flight (two pipes of 4-cycle latency need 8).
 * The chains start from distinct values and pass through an empty asm, so
 * that the compiler cannot fold them into one: a loop of identical chains
 * is folded, and then reports a "peak" above what the hardware does.
 *   bench_peak [--threads N]
 * Prints one JSON line on stdout: the ISA, threads, chains, GFLOP/s over all
 * threads (best of RUNS runs after one unmeasured, so that a clock that
 * ramps up or a busy moment of a shared machine does not set the figure)
 * and per thread. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "common.h"

#define CHAINS 12
#define ITERS 40000000L   /* per run and thread: about 0.1 s at 3 GHz */
#define RUNS 10

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* one step of every chain; KEEP stops the compiler from seeing through x */
#define STEP12(FMA) \
    FMA(x0); FMA(x1); FMA(x2); FMA(x3); FMA(x4); FMA(x5); FMA(x6); FMA(x7); FMA(x8); FMA(x9); FMA(x10); FMA(x11)

__attribute__((target("avx2,fma"))) static float chains_avx2(long iters, float seed) {
#define KEEP(x) __asm__ volatile("" : "+x"(x))
#define INIT(i) _mm256_set1_ps(seed + (float)(i) * 1e-3f)
    __m256 x0 = INIT(0), x1 = INIT(1), x2 = INIT(2), x3 = INIT(3), x4 = INIT(4), x5 = INIT(5), x6 = INIT(6),
           x7 = INIT(7), x8 = INIT(8), x9 = INIT(9), x10 = INIT(10), x11 = INIT(11);
    __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    KEEP(m);
    KEEP(c);
#define F8(x) x = _mm256_fmadd_ps(x, m, c)
    for (long i = 0; i < iters; i++) {
        STEP12(F8);
        KEEP(x0);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                             _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(x10, x11)));
    float f[8];
    _mm256_storeu_ps(f, s);
    return f[0];
#undef F8
#undef INIT
#undef KEEP
}

__attribute__((target("avx512f"))) static float chains_avx512(long iters, float seed) {
#define KEEP(x) __asm__ volatile("" : "+v"(x))
#define INIT(i) _mm512_set1_ps(seed + (float)(i) * 1e-3f)
    __m512 x0 = INIT(0), x1 = INIT(1), x2 = INIT(2), x3 = INIT(3), x4 = INIT(4), x5 = INIT(5), x6 = INIT(6),
           x7 = INIT(7), x8 = INIT(8), x9 = INIT(9), x10 = INIT(10), x11 = INIT(11);
    __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    KEEP(m);
    KEEP(c);
#define F16(x) x = _mm512_fmadd_ps(x, m, c)
    for (long i = 0; i < iters; i++) {
        STEP12(F16);
        KEEP(x0);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x0, x1), _mm512_add_ps(x2, x3)),
                             _mm512_add_ps(_mm512_add_ps(x4, x5), _mm512_add_ps(x6, x7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(x8, x9), _mm512_add_ps(x10, x11)));
    return _mm512_reduce_add_ps(s);
#undef F16
#undef INIT
#undef KEEP
}

/* the widest the CPU runs: lanes per FMA (0: neither) */
static int peak_lanes(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 16;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 8;
    return 0;
}
static float chains(int lanes, long iters, float seed) {
    return lanes == 16 ? chains_avx512(iters, seed) : chains_avx2(iters, seed);
}
#else
static int peak_lanes(void) { return 0; }
static float chains(int lanes, long iters, float seed) { return 0; }
#endif

int main(int argc, char **argv) {
    wdl_set_prog(argv[0]);
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = (int)cli_int("--threads", argv[++i]);
        else die("usage: bench_peak [--threads N]");
    }
    if (threads < 1) die("--threads: must be at least 1");
    const int lanes = peak_lanes();
    const char *isa = lanes == 16 ? "avx512f" : lanes == 8 ? "avx2-fma" : "none";
    if (!lanes) {
        printf("{\"bench\":\"fma_peak\",\"isa\":\"none\",\"threads\":%d,\"gflops\":null}\n", threads);
        return 0;
    }
    double best = 1e30;
    volatile float sink = 0;
    for (int run = 0; run <= RUNS; run++) {   /* run 0 unmeasured */
        float part[threads];
        const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads)
        part[omp_get_thread_num()] = chains(lanes, ITERS, 1.0f + (float)omp_get_thread_num() * 1e-2f);
        const double dt = omp_get_wtime() - t0;
        for (int t = 0; t < threads; t++) sink += part[t];
        if (run > 0 && dt < best) best = dt;
    }
    (void)sink;
    const double gf = (double)threads * ITERS * CHAINS * lanes * 2 / best / 1e9;
    printf("{\"bench\":\"fma_peak\",\"isa\":\"%s\",\"threads\":%d,\"chains\":%d,\"gflops\":%.1f,"
           "\"gflops_per_thread\":%.1f}\n",
           isa, threads, CHAINS, gf, gf / threads);
    return 0;
}
