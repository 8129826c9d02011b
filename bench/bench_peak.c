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
 * and per thread; and where the CPU has AVX512-BF16, the same for chains
 * of its bf16 dot product (else null). */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include "cli.h"
#include "common.h"

#define CHAINS 12
#define ITERS 40000000L   /* per run and thread: about 0.1 s at 3 GHz */
#define RUNS 10

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* NAME(iters, seed): CHAINS chains of V (L lanes) from distinct starting
 * values, `iters` steps each; returns lane 0 of their sum (so that nothing
 * is dead code). The empty asm statements (register constraint C) stop the
 * compiler from seeing through m, c and the chains; the loops over the
 * chains are unrolled so that each chain lives in a register (as an array
 * in memory, they ran at a quarter of the rate). */
#define CHAINS_FN(NAME, TARGET, V, L, C, SET1, FMA, ADD, STORE)                                       \
    __attribute__((target(TARGET))) static float NAME(long iters, float seed) {                       \
        V x[CHAINS], m = SET1(0.9999999f), c = SET1(1e-7f);                                           \
        _Pragma("GCC unroll 12") for (int i = 0; i < CHAINS; i++) x[i] = SET1(seed + (float)i * 1e-3f); \
        __asm__ volatile("" : "+" C(m), "+" C(c));                                                    \
        for (long it = 0; it < iters; it++) {                                                         \
            _Pragma("GCC unroll 12") for (int i = 0; i < CHAINS; i++) x[i] = FMA(x[i], m, c);         \
            __asm__ volatile("" : "+" C(x[0]));                                                       \
        }                                                                                             \
        _Pragma("GCC unroll 12") for (int i = 1; i < CHAINS; i++) x[0] = ADD(x[0], x[i]);             \
        float f[L];                                                                                   \
        STORE(f, x[0]);                                                                               \
        return f[0];                                                                                  \
    }
CHAINS_FN(chains_avx2, "avx2,fma", __m256, 8, "x", _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps)
CHAINS_FN(chains_avx512, "avx512f", __m512, 16, "v", _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
          _mm512_storeu_ps)

/* AVX512-BF16's dot product: x = x + a0 b0 + a1 b1 in each of 16 lanes, 4
 * flops a lane (twice an FMA's), CHAINS chains as above. Its rate against
 * the FMAs' is why bf16 runs on fp32 FMAs on Intel CPUs without AMX
 * (gemm.h's gemm_bf16_on_fma). */
__attribute__((target("avx512f,avx512bf16"))) static float dots_avx512bf16(long iters, float seed) {
    __m512 x[CHAINS];
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);   /* 1, 2^-24 */
    _Pragma("GCC unroll 12") for (int i = 0; i < CHAINS; i++) x[i] = _mm512_set1_ps(seed + (float)i * 1e-3f);
    __asm__ volatile("" : "+v"(a), "+v"(b));
    for (long it = 0; it < iters; it++) {
        _Pragma("GCC unroll 12") for (int i = 0; i < CHAINS; i++) x[i] = _mm512_dpbf16_ps(x[i], a, b);
        __asm__ volatile("" : "+v"(x[0]));
    }
    _Pragma("GCC unroll 12") for (int i = 1; i < CHAINS; i++) x[0] = _mm512_add_ps(x[0], x[i]);
    float f[16];
    _mm512_storeu_ps(f, x[0]);
    return f[0];
}
static int has_bf16_dot(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
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
static int has_bf16_dot(void) { return 0; }
static float dots_avx512bf16(long iters, float seed) { return 0; }
#endif

/* The best time of RUNS runs (after one unmeasured) of every thread's
 * chains at once: FMA chains of `lanes`, or (lanes 0) bf16 dot products */
static double best_time(int threads, int lanes) {
    double best = 1e30;
    volatile float sink = 0;
    float *part = xcalloc((size_t)threads, sizeof(float));
    for (int run = 0; run <= RUNS; run++) {   /* run 0 unmeasured */
        int team = 0;
        const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads)
        {
#pragma omp single nowait
            team = omp_get_num_threads();
            const float seed = 1.0f + (float)omp_get_thread_num() * 1e-2f;
            part[omp_get_thread_num()] = lanes ? chains(lanes, ITERS, seed) : dots_avx512bf16(ITERS, seed);
        }
        const double dt = omp_get_wtime() - t0;
        /* fewer threads than asked (OMP_THREAD_LIMIT, say) would overstate the rate */
        if (team != threads) die("--threads %d: OpenMP ran only %d", threads, team);
        for (int t = 0; t < threads; t++) sink += part[t];
        if (run > 0 && dt < best) best = dt;
    }
    free(part);
    (void)sink;
    return best;
}

static const char *usage =
    "usage: bench_peak [--threads N]\n"
    "The cores' fp32 multiply-add peak: twelve independent FMA chains per\n"
    "thread on registers (AVX-512 or AVX2), the best of 10 runs after one\n"
    "unmeasured; and AVX512-BF16's dot-product peak where the CPU has it.\n"
    "One JSON line on stdout.\n";

int main(int argc, char **argv) {
    cli_common cli;
    cli_parse(argc, argv, usage, NULL, &cli);
    cli_stdout_only(&cli, 0);
    free(cli.args);   /* it takes no arguments */
    const int threads = (int)cli.threads;
    const int lanes = peak_lanes();
    const char *isa = lanes == 16 ? "avx512f" : lanes == 8 ? "avx2-fma" : "none";
    if (!lanes) {
        printf("{\"bench\":\"fma_peak\",\"isa\":\"none\",\"threads\":%d,\"gflops\":null,\"bf16_dot_gflops\":null}\n",
               threads);
        return 0;
    }
    const double gf = (double)threads * ITERS * CHAINS * lanes * 2 / best_time(threads, lanes) / 1e9;
    printf("{\"bench\":\"fma_peak\",\"isa\":\"%s\",\"threads\":%d,\"chains\":%d,\"gflops\":%.1f,"
           "\"gflops_per_thread\":%.1f,\"bf16_dot_gflops\":",
           isa, threads, CHAINS, gf, gf / threads);
    if (has_bf16_dot()) printf("%.1f}\n", (double)threads * ITERS * CHAINS * 16 * 4 / best_time(threads, 0) / 1e9);
    else printf("null}\n");
    return 0;
}
