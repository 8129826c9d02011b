/* The GEMM backend (lib/gemm.h) against a double-precision reference.
 *
 * Tolerances (derived, per element of C; u8 = 2^-8 is the unit roundoff of
 * bf16's 8-bit significand under round-to-nearest-even, u24 = 2^-24 that of
 * fp32; S_ij = sum_k |op(A)_ik| |op(B)_kj|):
 *  - bf16 against the exact product of the fp32 inputs: each input carries a
 *    relative error of at most u8, so each product at most 2 u8 + u8^2; the
 *    fp32 accumulation of K terms (any order), the alpha scale and the beta
 *    sum add at most (K + 2) u24. Bound:
 *      |C - C_ref| <= |alpha| (2 u8 + u8^2 + (K + 2) u24) S_ij + 2 u24 |beta C0_ij|.
 *    This is a worst case; with independent rounding errors the typical
 *    error is about 0.6 u8 sqrt(sum_k (a b)^2) (a sqrt(K) growth), which
 *    the test prints and checks loosely (rms ratio below 3 u8).
 *  - bf16 against the exact product of the RNE-rounded inputs (this checks
 *    the rounding itself): bf16 x bf16 is exact in fp32, so only the
 *    accumulation remains: |alpha| (K + 2) u24 S~_ij + 2 u24 |beta C0_ij|.
 *  - fp32 through oneDNN: the same accumulation bound on the fp32 inputs.
 *  - fp32 through OpenBLAS: bit-identical to a direct cblas_sgemm call
 *    (products of a few rows against a large B: oneDNN's, bit for bit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"
#include "gemm.h"
#include "safetensors.h"
#include "sgemm.h"
#include "testutil.h"

static const double U8 = 1.0 / 256, U24 = 1.0 / 16777216;

static wdl_rng rng;
static float *rnd(int64_t n) {
    float *a = xmalloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) a[i] = rng_normal(&rng);
    return a;
}
static float bf16_round(float x) {
    uint32_t u = (uint32_t)st_f32_to_bf16(x) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct {
    int ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    float *A, *B, *C0;   /* C0: C before the call */
} problem;

/* Operands with leading dimensions padded past the stored width (strided). */
static problem make(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
    problem p = {ta, tb, M, N, K, 0, 0, 0, alpha, beta, NULL, NULL, NULL};
    p.lda = (ta ? M : K) + 3;
    p.ldb = (tb ? K : N) + 5;
    p.ldc = N + 2;
    p.A = rnd((ta ? K : M) * p.lda);
    p.B = rnd((tb ? N : K) * p.ldb);
    p.C0 = rnd(M * p.ldc);
    if (beta == 0)   /* beta = 0 must not read C: NaN there must not leak */
        for (int64_t i = 0; i < M * p.ldc; i++) p.C0[i] = NAN;
    return p;
}
static void unmake(problem *p) { free(p->A); free(p->B); free(p->C0); }
/* A problem's A and B rounded to bf16 (fresh copies; unmake frees them). */
static problem rounded_copy(const problem *p) {
    problem r = *p;
    const size_t na = (size_t)((p->ta ? p->K : p->M) * p->lda), nb = (size_t)((p->tb ? p->N : p->K) * p->ldb);
    r.A = xmalloc(sizeof(float) * (na ? na : 1));
    r.B = xmalloc(sizeof(float) * (nb ? nb : 1));
    r.C0 = xmalloc(sizeof(float) * (size_t)(p->M * p->ldc + 1));
    for (size_t i = 0; i < na; i++) r.A[i] = bf16_round(p->A[i]);
    for (size_t i = 0; i < nb; i++) r.B[i] = bf16_round(p->B[i]);
    memcpy(r.C0, p->C0, sizeof(float) * (size_t)(p->M * p->ldc));
    return r;
}
static float a_at(const problem *p, const float *A, int64_t i, int64_t k) {
    return p->ta ? A[k * p->lda + i] : A[i * p->lda + k];
}
static float b_at(const problem *p, const float *B, int64_t k, int64_t j) {
    return p->tb ? B[j * p->ldb + k] : B[k * p->ldb + j];
}

static float *run(gemm_ctx *g, const problem *p) {
    float *C = xmalloc(sizeof(float) * (size_t)(p->M * p->ldc));
    memcpy(C, p->C0, sizeof(float) * (size_t)(p->M * p->ldc));
    gemm_run(g, p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta, C, p->ldc);
    return C;
}

/* The product run at 1 thread and at 2 (or the current count, if more)
 * gives C's bytes. */
static void same_at_1_and_2_threads(gemm_ctx *g, const problem *p, const float *C) {
    const size_t n = sizeof(float) * (size_t)(p->M * p->ldc);
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    float *C1 = run(g, p);
    omp_set_num_threads(nt > 1 ? nt : 2);
    float *C2 = run(g, p);
    omp_set_num_threads(nt);
    assert_memory_equal(C, C1, n);
    assert_memory_equal(C, C2, n);
    free(C1);
    free(C2);
}

/* max over elements of |C - ref| / bound, where ref and the bound are built
 * in double from the inputs (rounded to bf16 first when `round`) with
 * bound = |alpha| rel S_ij + 2 u24 |beta C0_ij|. Also returns the rms error
 * relative to the rms of |alpha| sqrt(sum_k (a b)^2) in *rms_ratio. Padding
 * columns of C must be untouched. */
static double check(const problem *p, const float *C, int round, double rel, double *rms_ratio) {
    double worst = 0, se = 0, sp = 0;
    for (int64_t i = 0; i < p->M; i++) {
        for (int64_t j = 0; j < p->N; j++) {
            double ref = 0, S = 0, S2 = 0;
            for (int64_t k = 0; k < p->K; k++) {
                double a = a_at(p, p->A, i, k), b = b_at(p, p->B, k, j);
                if (round) { a = bf16_round((float)a); b = bf16_round((float)b); }
                ref += a * b;
                S += fabs(a * b);
                S2 += a * b * a * b;
            }
            double c0 = p->beta == 0 ? 0 : p->C0[i * p->ldc + j];
            ref = p->alpha * ref + p->beta * c0;
            double bound = fabs(p->alpha) * rel * S + 2 * U24 * fabs(p->beta * c0) + 1e-30;
            double err = fabs((double)C[i * p->ldc + j] - ref);
            if (!(err <= bound))
                fail_msg("C[%lld,%lld] = %.9g, reference %.9g: error %.3g over bound %.3g (%s%s M=%lld N=%lld K=%lld)",
                         (long long)i, (long long)j, C[i * p->ldc + j], ref, err, bound, p->ta ? "T" : "N",
                         p->tb ? "T" : "N", (long long)p->M, (long long)p->N, (long long)p->K);
            worst = fmax(worst, err / bound);
            se += err * err;
            sp += p->alpha * p->alpha * S2;
        }
        for (int64_t j = p->N; j < p->ldc; j++)
            if (memcmp(&C[i * p->ldc + j], &p->C0[i * p->ldc + j], 4)) fail_msg("padding of C written");
    }
    if (rms_ratio) *rms_ratio = sp > 0 ? sqrt(se / sp) : 0;
    return worst;
}

static const int64_t SHAPES[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 17, 65}, {64, 100, 257}, {130, 3, 1000}, {5, 300, 64}};
static const float ALPHAS[] = {1.0f, 0.37f, -2.0f};
static const float BETAS[] = {0.0f, 1.0f, 0.5f};
#define NSHAPES (sizeof SHAPES / sizeof SHAPES[0])

/* Every transpose combination, shape, alpha and beta, on oneDNN's bf16
 * kernels where it has them (fma 0) or on fp32 FMAs (fma 1, the route of
 * gemm_bf16_on_fma; every CPU with AVX2 and FMA takes it when told): with
 * own_scale, alpha and beta applied by gemm_run for every product of
 * oneDNN's (the route its gemm-based matmul takes), which therefore runs on
 * any CPU. On FMAs each product must be byte for byte an fp32 context's on
 * the inputs rounded to bf16 beforehand. */
static void bf16_all_cases(int own_scale, int fma) {
    gemm_ctx *g = gemm_ctx_new(GEMM_BF16), *f = gemm_ctx_new(GEMM_FP32_AUTO);
    gemm_ctx_bf16_fma(g, fma);
    if (own_scale) gemm_ctx_always_own_scale(g);
    double worst_in = 0, worst_rounded = 0, worst_rms = 0, min_rms = 1e30;
    for (int t = 0; t < 4; t++)
        for (size_t s = 0; s < NSHAPES; s++)
            for (int ai = 0; ai < 3; ai++)
                for (int bi = 0; bi < 3; bi++) {
                    problem p = make(t & 1, t >> 1, SHAPES[s][0], SHAPES[s][1], SHAPES[s][2], ALPHAS[ai], BETAS[bi]);
                    float *C = run(g, &p);
                    if (fma && gemm_ctx_uses_own_sgemm(g)) {
                        problem r = rounded_copy(&p);
                        float *R = run(f, &r);
                        assert_memory_equal(C, R, sizeof(float) * (size_t)(p.M * p.ldc));
                        free(R);
                        unmake(&r);
                    }
                    double K = (double)p.K, rms;
                    worst_in = fmax(worst_in, check(&p, C, 0, 2 * U8 + U8 * U8 + (K + 2) * U24, &rms));
                    worst_rounded = fmax(worst_rounded, check(&p, C, 1, (K + 2) * U24, NULL));
                    /* typical error: each product's error is the sum of
                     * two independent roundings, each uniform over half an
                     * ulp (rms about 0.42 u8 relative, averaged over the
                     * mantissa range), so about 0.6 u8 per unit of rms
                     * product; allow 3 u8 (small K gives few samples) */
                    worst_rms = fmax(worst_rms, rms);
                    if (p.K >= 64) min_rms = fmin(min_rms, rms);
                    free(C);
                    unmake(&p);
                }
    int64_t prims, emul, own;
    gemm_ctx_stats(g, &prims, &emul, &own);
    print_message("bf16 (%s, %lld primitives, %lld emulated, %lld scaled by gemm_run): worst error / bound %.3f "
                  "against the fp32 inputs, %.3f against the rounded inputs; rms error / rms product %.2e .. %.2e "
                  "(u8 = %.2e)\n", gemm_dnnl_isa(), (long long)prims, (long long)emul, (long long)own, worst_in,
                  worst_rounded, min_rms, worst_rms, U8);
    /* 4 transposes x shapes x (8 of 9 alpha, beta pairs are not 1, 0), and
     * those of the ninth whose C rows are wider than N where oneDNN's
     * gemm-based kernel would run them (see test_bf16_strided_c) */
    if (own_scale) assert_true(prims ? own >= 4 * (int64_t)NSHAPES * 8 && own <= prims : own == 0);
    assert_true(worst_rms < 3 * U8);
    /* the inputs really were rounded: an fp32 product would be ~1e-7 */
    assert_true(min_rms > U8 / 16);
    assert_int_equal(prims + emul, 4 * NSHAPES * 9);
    if (fma && gemm_ctx_uses_own_sgemm(g)) assert_int_equal(prims, 0);
    if (!fma && gemm_bf16_native()) assert_int_equal(emul, 0);
    gemm_ctx_free(g);
    gemm_ctx_free(f);
}
static void test_bf16_all_cases(void **state) { (void)state; bf16_all_cases(0, 0); }
static void test_bf16_all_cases_own_scale(void **state) { (void)state; bf16_all_cases(1, 0); }
static void test_bf16_all_cases_on_fma(void **state) { (void)state; bf16_all_cases(0, 1); }

/* A C with rows wider than N (attention's blocks of scores in rows of T):
 * oneDNN 2.6 leaves such a product to its gemm-based kernel, so gemm_run
 * runs it into dense scratch and copies it (where the dense product gets
 * another kernel): the bytes of the product into a dense C, at its
 * stride. */
static void test_bf16_strided_c(void **state) {
    (void)state;
    gemm_ctx *g = gemm_ctx_new(GEMM_BF16);
    gemm_ctx_bf16_fma(g, 0);   /* oneDNN's kernels: what this test is about */
    const int64_t M = 64, N = 64, K = 32, ld = 256;
    float *a = xmalloc(sizeof(float) * M * K), *b = xmalloc(sizeof(float) * N * K),
          *dense = xmalloc(sizeof(float) * M * N), *wide = xmalloc(sizeof(float) * M * ld);
    for (int64_t i = 0; i < M * K; i++) a[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    for (int64_t i = 0; i < N * K; i++) b[i] = (float)((i * 53) % 97) / 48.0f - 1.0f;
    for (int64_t i = 0; i < M * ld; i++) wide[i] = 7.0f;
    gemm_run(g, 0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, dense, N);
    int64_t own0, own1;
    gemm_ctx_stats(g, NULL, NULL, &own0);
    gemm_run(g, 0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, wide, ld);
    gemm_ctx_stats(g, NULL, NULL, &own1);
    print_message("# %s: %lld product(s) copied from dense scratch\n", gemm_dnnl_isa(), (long long)(own1 - own0));
    if (!strcmp(gemm_dnnl_isa(), "avx512_core_amx")) assert_int_equal(own1 - own0, 1);
    for (int64_t i = 0; i < M; i++) {
        assert_memory_equal(wide + i * ld, dense + i * N, sizeof(float) * N);
        for (int64_t j = N; j < ld; j++) assert_true(wide[i * ld + j] == 7.0f);   /* past N: untouched */
    }
    free(a); free(b); free(dense); free(wide);
    gemm_ctx_free(g);
}

/* A second call with a cached primitive gives the same bytes, and a call
 * with the same shape but other data is right too. */
static void test_bf16_cache_reuse(void **state) {
    (void)state;
    gemm_ctx *g = gemm_ctx_new(GEMM_BF16);
    problem p = make(0, 1, 48, 40, 96, 1.0f, 1.0f);
    float *C1 = run(g, &p), *C2 = run(g, &p);
    assert_memory_equal(C1, C2, sizeof(float) * (size_t)(p.M * p.ldc));
    problem q = make(0, 1, 48, 40, 96, 1.0f, 1.0f);
    float *C3 = run(g, &q);
    check(&q, C3, 1, (q.K + 2) * U24, NULL);
    int64_t prims, emul;
    gemm_ctx_stats(g, &prims, &emul, NULL);
    assert_int_equal(prims + emul, 1);
    free(C1); free(C2); free(C3);
    unmake(&p); unmake(&q);
    gemm_ctx_free(g);
}

/* Past the cache bound, new shapes still run right and are not kept. */
static void test_bf16_cache_limit(void **state) {
    (void)state;
    gemm_ctx *g = gemm_ctx_new(GEMM_BF16);
    gemm_ctx_set_cache_limit(g, 2);
    for (int64_t n = 1; n <= 5; n++) {
        problem p = make(n & 1, 0, 9, 4 * n, 33, 0.5f, 1.0f);
        float *C = run(g, &p);
        check(&p, C, 1, (p.K + 2) * U24, NULL);
        free(C);
        unmake(&p);
    }
    int64_t prims, emul;
    gemm_ctx_stats(g, &prims, &emul, NULL);
    assert_int_equal(prims + emul, 2);
    gemm_ctx_free(g);
}

/* Calls from the threads of an OpenMP team at once (as attention does):
 * each result is right and equals the same call made alone, whether its
 * primitive was created outside the team (g) or inside it (g2). */
static void test_bf16_in_parallel_region(void **state) {
    (void)state;
    gemm_ctx *g = gemm_ctx_new(GEMM_BF16), *g2 = gemm_ctx_new(GEMM_BF16);
    enum { NP = 16 };
    problem p[NP];
    float *alone[NP], *together[NP];
    for (int i = 0; i < NP; i++) {
        int big = i % 8 >= 4;   /* big enough for oneDNN to split the work over threads */
        p[i] = make(i & 1, (i >> 1) & 1, big ? 512 : 64, big ? 384 : 32 + 8 * (i % 3), 256, i % 2 ? 0.25f : 1.0f,
                    (float)(i % 2));
        alone[i] = run(g, &p[i]);
    }
    float *fresh[NP];
#pragma omp parallel for schedule(dynamic, 1) num_threads(2)
    for (int i = 0; i < NP; i++) {
        together[i] = run(g, &p[i]);
        fresh[i] = run(g2, &p[i]);
    }
    for (int i = 0; i < NP; i++) {
        check(&p[i], together[i], 1, (p[i].K + 2) * U24, NULL);
        check(&p[i], fresh[i], 1, (p[i].K + 2) * U24, NULL);
        assert_memory_equal(alone[i], together[i], sizeof(float) * (size_t)(p[i].M * p[i].ldc));
        /* a primitive made inside the team, then run outside it */
        float *again = run(g2, &p[i]);
        check(&p[i], again, 1, (p[i].K + 2) * U24, NULL);
        free(alone[i]); free(together[i]); free(fresh[i]); free(again);
        unmake(&p[i]);
    }
    gemm_ctx_free(g);
    gemm_ctx_free(g2);
}

/* fp32 (the default, and an explicit fp32 context) is cblas_sgemm, bit for bit. */
/* Read-only operands held in bf16 once (gemm_ctx_set_readonly): the same
 * products as converting them on every call; a sub-block with its own
 * leading dimension inside the range too (within the accumulation bound:
 * oneDNN may pick another kernel for other strides); an operand outside
 * the range, or after the range is forgotten, is converted as before. */
static void test_bf16_readonly(void **state) {
    const int64_t M = 37, N = 96, K = 80, LDW = 128;
    float *A = rnd(M * K), *W = rnd(N * LDW), *C1 = xmalloc(sizeof(float) * M * N), *C2 = xmalloc(sizeof(float) * M * N);
    gemm_ctx *g = gemm_ctx_new(GEMM_BF16);
    /* C = A W^T with W dense [N, K] at the start of the buffer, and with W a
     * [N, K] window of rows of width LDW */
    for (int strided = 0; strided < 2; strided++) {
        int64_t ld = strided ? LDW : K;
        const float *Wp = strided ? W + 5 : W;
        gemm_ctx_set_readonly(g, 0, NULL, 0);
        gemm_run(g, 0, 1, M, N, K, 1.0f, A, K, Wp, ld, 0.0f, C1, N);
        gemm_ctx_set_readonly(g, 0, W, (size_t)(N * LDW));
        gemm_run(g, 0, 1, M, N, K, 1.0f, A, K, Wp, ld, 0.0f, C2, N);
        if (!strided) assert_memory_equal(C1, C2, sizeof(float) * M * N);
        for (int64_t i = 0; i < M * N; i++) {
            double S = 0;
            for (int64_t k = 0; k < K; k++) S += fabs((double)A[i / N * K + k] * Wp[(i % N) * ld + k]);
            assert_true(fabs((double)C1[i] - C2[i]) <= 2 * (K + 2) * U24 * S + 1e-30);
        }
    }
    /* the range must hold the whole operand: W shifted past its end is converted */
    gemm_ctx_set_readonly(g, 0, W, (size_t)(N * K - 1));
    gemm_run(g, 0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, C2, N);
    gemm_ctx_set_readonly(g, 0, NULL, 0);
    gemm_run(g, 0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, C1, N);
    assert_memory_equal(C1, C2, sizeof(float) * M * N);
    /* two ranges at once (both operands read-only), and set again over a
     * changed W: the copy follows (the buffer is reused) */
    gemm_ctx_set_readonly(g, 0, A, (size_t)(M * K));
    gemm_ctx_set_readonly(g, 1, W, (size_t)(N * K));
    gemm_run(g, 0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, C2, N);
    assert_memory_equal(C1, C2, sizeof(float) * M * N);
    for (int64_t i = 0; i < N * K; i++) W[i] = -W[i];
    gemm_ctx_set_readonly(g, 1, W, (size_t)(N * K));
    gemm_run(g, 0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, C2, N);
    for (int64_t i = 0; i < M * N; i++) assert_true(C2[i] == -C1[i]);
    gemm_ctx_free(g);
    free(A); free(W); free(C1); free(C2);
}

/* bf16-only views (gemm_ctx_add_bf16_view): products read the bf16 values
 * in place of floats that are never stored; the same bytes as a read-only
 * range over those floats (on a CPU without bf16 the emulated path widens
 * the view); several views, found by address, as operand A or B, one
 * nested in a larger buffer; dropping them by range. */
static void test_bf16_views(void **state) {
    (void)state;
    const int64_t M = 37, N = 96, K = 80;
    float *A = rnd(M * K), *W = rnd(N * K), *C1 = xmalloc(sizeof(float) * M * N), *C2 = xmalloc(sizeof(float) * M * N);
    for (int64_t i = 0; i < N * K; i++) W[i] = st_bf16_to_f32(st_f32_to_bf16(W[i]));   /* bf16 values */
    for (int64_t i = 0; i < M * K; i++) A[i] = st_bf16_to_f32(st_f32_to_bf16(A[i]));
    uint16_t *W16 = xmalloc(sizeof(uint16_t) * N * K), *A16 = xmalloc(sizeof(uint16_t) * M * K);
    for (int64_t i = 0; i < N * K; i++) W16[i] = st_f32_to_bf16(W[i]);
    for (int64_t i = 0; i < M * K; i++) A16[i] = st_f32_to_bf16(A[i]);
    /* the floats the views stand for: zeros, inside one buffer */
    float *blank = xcalloc((size_t)(M * K + N * K + 64), sizeof(float)), *Av = blank + 16, *Wv = Av + M * K + 16;
    gemm_ctx *g = gemm_ctx_new(GEMM_BF16);
    gemm_ctx_set_readonly(g, 0, W, (size_t)(N * K));
    gemm_run(g, 0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, C1, N);
    gemm_ctx_set_readonly(g, 0, NULL, 0);
    gemm_ctx_add_bf16_view(g, Wv, (size_t)(N * K), W16);
    gemm_ctx_add_bf16_view(g, Av, (size_t)(M * K), A16);
    gemm_run(g, 0, 1, M, N, K, 1.0f, Av, K, Wv, K, 0.0f, C2, N);
    assert_memory_equal(C1, C2, sizeof(float) * M * N);
    /* B's rows 10.. as a window of the view (offset into it) */
    gemm_run(g, 0, 1, M, N - 10, K, 1.0f, A, K, W + 10 * K, K, 0.0f, C1, N);
    gemm_run(g, 0, 1, M, N - 10, K, 1.0f, A, K, Wv + 10 * K, K, 0.0f, C2, N);
    for (int64_t i = 0; i < M; i++) assert_memory_equal(C1 + i * N, C2 + i * N, sizeof(float) * (size_t)(N - 10));
    /* dropped: the floats (zeros) are read again */
    gemm_ctx_drop_bf16_views(g, blank, (size_t)(M * K + N * K + 64));
    gemm_run(g, 0, 1, M, N, K, 1.0f, A, K, Wv, K, 0.0f, C2, N);
    for (int64_t i = 0; i < M * N; i++) assert_true(C2[i] == 0.0f);
    gemm_ctx_free(g);
    free(A); free(W); free(C1); free(C2); free(W16); free(A16); free(blank);
}

/* Held inputs (gemm_ctx_hold_inputs): products that read one stored matrix
 * as A, as B, transposed or with another partner give the bytes they give
 * without holding (one copy serves them all, more than SLOT_HELD operands
 * included); once released, a changed input is converted afresh. */
static void test_bf16_hold_inputs(void **state) {
    (void)state;
    const int64_t N = 300, C = 64, O1 = 48, O2 = 80;
    float *X = rnd(N * C), *W1 = rnd(O1 * C), *W2 = rnd(O2 * C), *D = rnd(N * O1);
    float *ref[6], *got[6];
    gemm_ctx *g = gemm_ctx_new(GEMM_BF16);
    for (int held = 0; held < 2; held++) {
        float **out = held ? got : ref;
        for (int i = 0; i < 6; i++) out[i] = xcalloc((size_t)(N * O2), sizeof(float));
        if (held) gemm_ctx_hold_inputs(g, 1);
        gemm_run(g, 0, 1, N, O1, C, 1.0f, X, C, W1, C, 0.0f, out[0], O1);    /* X W1^T */
        gemm_run(g, 0, 1, N, O2, C, 1.0f, X, C, W2, C, 0.0f, out[1], O2);    /* X W2^T: X again */
        gemm_run(g, 1, 0, O1, C, N, 1.0f, D, O1, X, C, 0.0f, out[2], C);     /* D^T X: X as B */
        gemm_run(g, 0, 0, N, C, O1, 0.5f, D, O1, W1, C, 1.0f, out[3], C);    /* D W1: D, W1 again */
        /* the same address, rows and columns, another leading dimension:
         * the first N/2 rows of X, then every other row */
        gemm_run(g, 0, 1, N / 2, O1, C, 1.0f, X, C, W1, C, 0.0f, out[4], O1);
        gemm_run(g, 0, 1, N / 2, O1, C, 1.0f, X, 2 * C, W1, C, 0.0f, out[5], O1);
        if (held) gemm_ctx_hold_inputs(g, 0);
    }
    for (int i = 0; i < 6; i++) assert_memory_equal(ref[i], got[i], sizeof(float) * (size_t)(N * O2));
    /* A held copy found for A must survive B's insertion: two products of
     * four new matrices fill the four slots (the next to go holds F[0]),
     * then a product reads F[0] as A and a new matrix as B */
    {
        float *F[2], *G[2], *Bn = rnd(C * O1), *c1 = xcalloc((size_t)(N * O1), sizeof(float)),
              *c2 = xcalloc((size_t)(N * O1), sizeof(float));
        for (int i = 0; i < 2; i++) { F[i] = rnd(N * C); G[i] = rnd(C * O1); }
        gemm_run(g, 0, 0, N, O1, C, 1.0f, F[0], C, Bn, O1, 0.0f, c1, O1);   /* unheld reference */
        gemm_ctx_hold_inputs(g, 1);
        for (int i = 0; i < 2; i++) gemm_run(g, 0, 0, N, O1, C, 1.0f, F[i], C, G[i], O1, 0.0f, c2, O1);
        gemm_run(g, 0, 0, N, O1, C, 1.0f, F[0], C, Bn, O1, 0.0f, c2, O1);
        gemm_ctx_hold_inputs(g, 0);
        assert_memory_equal(c1, c2, sizeof(float) * (size_t)(N * O1));
        for (int i = 0; i < 2; i++) { free(F[i]); free(G[i]); }
        free(Bn); free(c1); free(c2);
    }
    /* released: X changes, and the next held product sees the new values */
    for (int64_t i = 0; i < N * C; i++) X[i] = -X[i];
    gemm_ctx_hold_inputs(g, 1);
    gemm_run(g, 0, 1, N, O1, C, 1.0f, X, C, W1, C, 0.0f, got[0], O1);
    gemm_ctx_hold_inputs(g, 0);
    for (int64_t i = 0; i < N * O1; i++) assert_true(got[0][i] == -ref[0][i]);
    gemm_ctx_free(g);
    for (int i = 0; i < 6; i++) { free(ref[i]); free(got[i]); }
    free(X); free(W1); free(W2); free(D);
}

/* Native bf16 products (AMX, AVX512-BF16) treat bf16 denormal inputs as
 * zero, so converting with AVX512-BF16's instruction (which flushes fp32
 * denormals) gives the same bytes as the software conversion (which keeps
 * them): checked with denormals scaled by 2^100 into view. */
static void test_bf16_denormals(void **state) {
    (void)state;
    if (!gemm_bf16_native()) { print_message("# skipped: no native bf16 (oneDNN ISA %s)\n", gemm_dnnl_isa()); skip(); }
    const int64_t M = 40, N = 48, K = 64;
    float *A = rnd(M * K), *Bm = rnd(K * N), *C1 = xmalloc(sizeof(float) * M * N), *C2 = xmalloc(sizeof(float) * M * N);
    /* every other A entry normal, in [2^-126, 2^-125), the others denormal
     * and of the same order, below 2^-127: kept, they would move the
     * results visibly. (Not in the band within half a bf16 ulp below
     * 2^-126, which the software conversion rounds up to the smallest
     * normal and the instruction flushes: there the two differ.) */
    for (int64_t i = 0; i < M * K; i++)
        A[i] = i % 2 ? fmodf(A[i], 1.0f) * 0x1p-127f : copysignf(1.0f + fabsf(A[i]) / 2, A[i]) * 0x1p-126f;
    for (int64_t i = 0; i < K * N; i++) Bm[i] *= 0x1p100f;
    int denormals = 0;
    double dmax = 0, cmax = 0;   /* largest denormal-only contribution, largest product */
    for (int64_t i = 0; i < M * K; i++) denormals += A[i] != 0 && fabsf(A[i]) < 0x1p-126f;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double d = 0, c = 0;
            for (int64_t k = 0; k < K; k++) {
                double t = (double)A[i * K + k] * Bm[k * N + j];
                c += t;
                if (fabsf(A[i * K + k]) < 0x1p-126f) d += t;
            }
            dmax = fmax(dmax, fabs(d));
            cmax = fmax(cmax, fabs(c));
        }
    print_message("# %d denormal inputs; their share of the largest product %.3f\n", denormals, dmax / cmax);
    assert_true(denormals > M * K / 4);
    assert_true(dmax > 0.02 * cmax);
    gemm_ctx *hw = gemm_ctx_new(GEMM_BF16), *sw = gemm_ctx_new(GEMM_BF16);
    gemm_ctx_bf16_fma(hw, 0);   /* oneDNN's kernels, which zero denormals */
    gemm_ctx_bf16_fma(sw, 0);
    gemm_ctx_software_conversion(sw);
    gemm_run(hw, 0, 0, M, N, K, 1.0f, A, K, Bm, N, 0.0f, C1, N);
    gemm_run(sw, 0, 0, M, N, K, 1.0f, A, K, Bm, N, 0.0f, C2, N);
    assert_memory_equal(C1, C2, sizeof(float) * M * N);
    gemm_ctx_free(hw); gemm_ctx_free(sw);
    free(A); free(Bm); free(C1); free(C2);
}

/* bf16 A B^T of a few rows against large weights held in bf16 (decoding)
 * runs on gemm.c's own kernels where the CPU has AVX-512 (F and BW) or
 * AVX2 and FMA: the bytes of a scalar model of their order of summation,
 * on both kernels (the AVX2 one forced where AVX-512's would run); within
 * the bounds of every bf16 product, against the fp32 and the rounded
 * inputs; within the accumulation bound of oneDNN's result for the same
 * call (two fp32 sums of the same exact products); the same bytes with 1
 * and 2 threads, inside a parallel region, and with B a read-only range or
 * a bf16-only view. Which products take it: at most 4 rows, M K <= 12288
 * (K rounded up to 32) on AVX-512, at most 16 rows and M K <= 49152 on
 * AVX2; N K at least GEMM_FEW_ROWS_MIN_NK, A B^T only, B held in bf16 (a
 * B converted on the call goes to oneDNN). The shapes cover K and N tails
 * (K = 300, N = 227) and strided A and B (make pads both). */
/* A case's `few`: bit 0 taken on the AVX-512 kernel, bit 1 on AVX2's
 * (whose limits are wider). Whether it is taken here: */
static int few_taken_here(int hw, int few) { return hw ? few >> (hw - 1) & 1 : 0; }

/* The few-row kernels' order of summation (gemm.c), in scalar code: for
 * each element of C, 16 lanes; lane q takes, block after block of 32 k,
 * the products of elements 8 (q / 4) + q % 4 and 8 (q / 4) + 4 + q % 4 by
 * FMA; then lanes q and q + 8 are added, q and q + 4, q and q + 2, and the
 * last two. Both kernels (AVX-512, AVX2) must give these bytes. B is read
 * as bf16; A too when round_a (the bf16 path). */
static float *few_order(const problem *p, int round_a) {
    float *C = xmalloc(sizeof(float) * (size_t)(p->M * p->ldc));
    memcpy(C, p->C0, sizeof(float) * (size_t)(p->M * p->ldc));
    for (int64_t i = 0; i < p->M; i++)
        for (int64_t j = 0; j < p->N; j++) {
            float lane[16] = {0}, t[8], u[4];
            for (int64_t k0 = 0; k0 < p->K; k0 += 32)
                for (int q = 0; q < 16; q++)
                    for (int half = 0; half < 2; half++) {
                        const int64_t k = k0 + 8 * (q / 4) + 4 * half + q % 4;
                        if (k >= p->K) continue;   /* the kernels add 0 x 0 */
                        float a = a_at(p, p->A, i, k);
                        if (round_a) a = bf16_round(a);
                        lane[q] = fmaf(a, bf16_round(b_at(p, p->B, k, j)), lane[q]);
                    }
            for (int q = 0; q < 8; q++) t[q] = lane[q + 8] + lane[q];
            for (int q = 0; q < 4; q++) u[q] = t[q + 4] + t[q];
            const float s = (u[0] + u[2]) + (u[1] + u[3]);
            float *c = &C[i * p->ldc + j];
            *c = p->beta == 0.0f ? p->alpha * s : p->alpha * s + p->beta * *c;
        }
    return C;
}
/* The product on the AVX2 kernel (where the CPU has AVX-512 too) and in
 * the scalar order: C's bytes (or, C NULL, the AVX2 kernel's bytes are the
 * scalar order's: a product only it takes). */
static void few_same_bytes(gemm_precision prec, const problem *p, int round_a, const float *C) {
    const size_t n = sizeof(float) * (size_t)(p->M * p->ldc), nb = (size_t)((p->tb ? p->N : p->K) * p->ldb);
    float *O = few_order(p, round_a);
    if (C) assert_memory_equal(C, O, n);
    gemm_ctx *g2 = gemm_ctx_new(prec);
    gemm_ctx_few_rows(g2, 2);
    uint16_t *b16 = NULL;
    if (prec == GEMM_BF16)
        gemm_ctx_set_readonly(g2, 0, p->B, nb);
    else {   /* B's floats are bf16 values */
        b16 = xmalloc(sizeof(uint16_t) * nb);
        for (size_t i = 0; i < nb; i++) b16[i] = st_f32_to_bf16(p->B[i]);
        gemm_ctx_add_bf16_shadow(g2, p->B, nb, b16);
    }
    float *C2 = run(g2, p);
    assert_int_equal(gemm_ctx_few_row_products(g2), 1);
    assert_memory_equal(C2, O, n);
    gemm_ctx_free(g2);
    free(C2); free(b16); free(O);
}
/* test_bf16_few_rows's cases on the bf16 context g (d: the same without
 * the kernel); kind: which of a case's `few` bits says whether the kernel
 * takes it (few_taken_here) */
static void bf16_few_cases(gemm_ctx *g, gemm_ctx *d, int hw, int kind, double *worst_p, double *worst_vs_dnnl_p) {
    /* M, N, K, transposes (ta + 2 tb), taken by the kernels (few_taken_here) */
    static const struct { int64_t M, N, K; int t, few; } cases[] = {
        {1, 256, 256, 2, 3},   {3, 256, 256, 2, 3},   {4, 256, 256, 2, 3},  {5, 256, 256, 2, 2},
        {16, 256, 256, 2, 2},  {32, 256, 256, 2, 0},  {1, 227, 300, 2, 3},  {4, 227, 300, 2, 3},
        {4, 127, 256, 2, 0},   {4, 256, 256, 0, 0},   {4, 256, 256, 3, 0},  {2, 1024, 2048, 2, 3},
        {4, 300, 3072, 2, 3},  {4, 300, 3100, 2, 2},  {1, 3000, 4096, 2, 3}, {16, 300, 3072, 2, 2},
        {16, 300, 3100, 2, 0}, {3, 227, 3072, 2, 3},
    };
    static const float ab[][2] = {{1.0f, 0.0f}, {0.37f, 0.5f}, {-2.0f, 1.0f}};
    double worst = *worst_p, worst_vs_dnnl = *worst_vs_dnnl_p;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int v = 0; v < 3; v++) {
            problem p = make(cases[c].t & 1, cases[c].t >> 1, cases[c].M, cases[c].N, cases[c].K, ab[v][0], ab[v][1]);
            const size_t nb = (size_t)((p.tb ? p.N : p.K) * p.ldb);
            int64_t before = gemm_ctx_few_row_products(g);
            float *E = run(g, &p);   /* B converted on the call: oneDNN */
            assert_int_equal(gemm_ctx_few_row_products(g), before);
            gemm_ctx_set_readonly(g, 0, p.B, nb);
            gemm_ctx_set_readonly(d, 0, p.B, nb);
            float *C = run(g, &p), *D = run(d, &p);
            int64_t taken = gemm_ctx_few_row_products(g) - before;
            check(&p, E, 1, (p.K + 2) * U24, NULL);
            free(E);
            if (taken != few_taken_here(kind, cases[c].few))
                fail_msg("M=%lld N=%lld K=%lld: few-row kernel taken %lld times", (long long)p.M, (long long)p.N,
                         (long long)p.K, (long long)taken);
            const double K = (double)p.K;
            check(&p, C, 0, 2 * U8 + U8 * U8 + (K + 2) * U24, NULL);
            worst = fmax(worst, check(&p, C, 1, (K + 2) * U24, NULL));
            /* against oneDNN: both within (K + 2) u24 S~ of the exact product of the rounded inputs */
            for (int64_t i = 0; i < p.M; i++)
                for (int64_t j = 0; j < p.N; j++) {
                    double S = 0;
                    for (int64_t k = 0; k < p.K; k++)
                        S += fabs((double)bf16_round(a_at(&p, p.A, i, k)) * bf16_round(b_at(&p, p.B, k, j)));
                    double c0 = p.beta == 0 ? 0 : p.C0[i * p.ldc + j];
                    double bound = 2 * (fabs(p.alpha) * (K + 2) * U24 * S + 2 * U24 * fabs(p.beta * c0)) + 1e-30;
                    double e = fabs((double)C[i * p.ldc + j] - D[i * p.ldc + j]);
                    assert_true(e <= bound);
                    worst_vs_dnnl = fmax(worst_vs_dnnl, e / bound);
                }
            if (hw == 1 && cases[c].few == 2) few_same_bytes(GEMM_BF16, &p, 1, NULL);
            if (taken) {
                few_same_bytes(GEMM_BF16, &p, 1, C);
                /* thread count, a parallel region: the same bytes */
                int nt = omp_get_max_threads();
                omp_set_num_threads(1);
                float *C1 = run(g, &p);
                omp_set_num_threads(nt > 1 ? nt : 2);
                float *C2 = run(g, &p), *C3 = NULL;
#pragma omp parallel num_threads(2)
#pragma omp single
                C3 = run(g, &p);
                omp_set_num_threads(nt);
                assert_memory_equal(C, C1, sizeof(float) * (size_t)(p.M * p.ldc));
                assert_memory_equal(C, C2, sizeof(float) * (size_t)(p.M * p.ldc));
                assert_memory_equal(C, C3, sizeof(float) * (size_t)(p.M * p.ldc));
                free(C1); free(C2); free(C3);
            }
            gemm_ctx_set_readonly(g, 0, NULL, 0);
            gemm_ctx_set_readonly(d, 0, NULL, 0);
            free(C); free(D);
            unmake(&p);
        }
    *worst_p = worst;
    *worst_vs_dnnl_p = worst_vs_dnnl;
}

static void test_bf16_few_rows(void **state) {
    (void)state;
    const int hw = few_rows_cpu();
    if (!hw) print_message("# neither AVX-512 nor AVX2 here: every product below must go to oneDNN\n");
    gemm_ctx *g = NULL, *d = gemm_ctx_new(GEMM_BF16);
    gemm_ctx_few_rows(d, 0);
    double worst = 0, worst_vs_dnnl = 0;
    /* bf16 on oneDNN's kernels, then on fp32 FMAs (sgemm_own), where the
     * AVX-512 kernel takes as many rows as the AVX2 one: the rows it leaves
     * would be packed into fp32 panels for every product there */
    for (int fma = 0; fma < 2; fma++) {
        if (g) gemm_ctx_free(g);
        g = gemm_ctx_new(GEMM_BF16);
        gemm_ctx_bf16_fma(g, fma);
        const int64_t lim = gemm_ctx_few_row_limit(g);
        if (hw == 1) assert_int_equal(lim, fma && sgemm_own_cpu() ? 16 : 4);
        else assert_int_equal(lim, hw ? 16 : 0);
        bf16_few_cases(g, d, hw, hw == 1 && lim == 16 ? 2 : hw, &worst, &worst_vs_dnnl);
    }
    /* B a bf16-only view: the same bytes as a read-only range over the
     * same values */
    const int64_t M = 3, N = 300, K = 520;
    float *A = rnd(M * K), *W = rnd(N * K), *C1 = xmalloc(sizeof(float) * M * N), *C2 = xmalloc(sizeof(float) * M * N);
    for (int64_t i = 0; i < N * K; i++) W[i] = bf16_round(W[i]);
    uint16_t *W16 = xmalloc(sizeof(uint16_t) * N * K);
    for (int64_t i = 0; i < N * K; i++) W16[i] = st_f32_to_bf16(W[i]);
    gemm_ctx_set_readonly(g, 0, W, (size_t)(N * K));
    gemm_run(g, 0, 1, M, N, K, 1.0f, A, K, W, K, 0.0f, C1, N);
    gemm_ctx_set_readonly(g, 0, NULL, 0);
    float *V = xmalloc(sizeof(float) * N * K);   /* stands for floats never stored */
    for (int64_t i = 0; i < N * K; i++) V[i] = NAN;
    gemm_ctx_add_bf16_view(g, V, (size_t)(N * K), W16);
    gemm_run(g, 0, 1, M, N, K, 1.0f, A, K, V, K, 0.0f, C2, N);
    assert_memory_equal(C1, C2, sizeof(float) * M * N);
    gemm_ctx_drop_bf16_views(g, V, (size_t)(N * K));
    print_message("few rows (%s): %lld products on the kernel; worst error / bound %.3f against the rounded "
                  "inputs, %.3f against oneDNN's result\n", hw == 1 ? "AVX-512" : hw ? "AVX2" : "not this CPU",
                  (long long)gemm_ctx_few_row_products(g), worst, worst_vs_dnnl);
    gemm_ctx_free(g);
    gemm_ctx_free(d);
    free(A); free(W); free(W16); free(V); free(C1); free(C2);
}

/* fp32 A B^T of a few rows against B with a bf16 shadow (B's floats are
 * bf16 values): the few-row kernel reads the shadow, within the fp32
 * accumulation bound of the exact product of A (unrounded) and B; the same
 * bytes with 1 and 2 threads. Which products take it: at most 8 rows,
 * M K <= 12288 on AVX-512; 16 rows, M K <= 49152 on AVX2. Without the
 * shadow, or with more rows, it is the fp32 path as before (oneDNN's,
 * then OpenBLAS's bytes). */
static void test_fp32_few_rows_shadow(void **state) {
    (void)state;
    const int hw = few_rows_cpu();
    gemm_ctx *g = gemm_ctx_new(GEMM_FP32), *d = gemm_ctx_new(GEMM_FP32_DNNL);
    static const struct { int64_t M, N, K; int few; } cases[] = {   /* few: as in test_bf16_few_rows */
        {1, 256, 256, 3}, {4, 227, 300, 3},   {8, 256, 256, 3},   {9, 256, 256, 2},   {17, 256, 256, 0},
        {2, 1024, 2048, 3}, {4, 300, 3072, 3}, {8, 256, 2048, 2}, {16, 300, 3072, 2}, {16, 300, 3100, 0},
        {5, 227, 3072, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        problem p = make(0, 1, cases[c].M, cases[c].N, cases[c].K, 0.37f, 0.5f);
        const size_t nb = (size_t)(p.N * p.ldb);
        uint16_t *b16 = xmalloc(sizeof(uint16_t) * nb);
        for (size_t i = 0; i < nb; i++) {
            b16[i] = st_f32_to_bf16(p.B[i]);
            p.B[i] = st_bf16_to_f32(b16[i]);
        }
        float *E = run(g, &p);   /* no shadow yet */
        int64_t before = gemm_ctx_few_row_products(g);
        gemm_ctx_add_bf16_shadow(g, p.B, nb, b16);
        float *C = run(g, &p);
        int64_t taken = gemm_ctx_few_row_products(g) - before;
        assert_int_equal(taken, few_taken_here(hw, cases[c].few));
        check(&p, C, 0, (p.K + 2) * U24, NULL);
        float *D = run(d, &p);
        if (taken) {
            assert_memory_equal(E, D, sizeof(float) * (size_t)(p.M * p.ldc));   /* before: oneDNN's bytes */
            same_at_1_and_2_threads(g, &p, C);
            few_same_bytes(GEMM_FP32, &p, 0, C);
        } else
            assert_memory_equal(C, E, sizeof(float) * (size_t)(p.M * p.ldc));
        if (hw == 1 && cases[c].few == 2) few_same_bytes(GEMM_FP32, &p, 0, NULL);
        gemm_ctx_drop_bf16_views(g, p.B, nb);
        free(C); free(D); free(E); free(b16);
        unmake(&p);
    }
    gemm_ctx_free(g);
    gemm_ctx_free(d);
}

/* bf16 products against weights held in bf16 with 48 rows or more, not
 * a multiple of 16, run as two products (gemm.c: oneDNN is up to
 * 15x slower on some such counts): a 59-row product makes the primitives
 * of 48 and 11 rows and gives their bytes, within the bound; with N at
 * the split limit (a head), weights converted on the call or fewer than
 * GEMM_FEW_ROWS_MIN_NK of them, it is one product as before. */
static void test_bf16_row_split(void **state) {
    (void)state;
    if (!gemm_bf16_native()) { print_message("# skipped: no native bf16 (oneDNN ISA %s)\n", gemm_dnnl_isa()); skip(); }
    const int64_t M = 59;
    for (int c = 0; c < 4; c++) {   /* linear layer, head, weights not held, small weights */
        gemm_ctx *g = gemm_ctx_new(GEMM_BF16);
        gemm_ctx_bf16_fma(g, 0);   /* the split is for oneDNN's kernels */
        gemm_ctx_few_rows(g, 0);   /* the 11 rows to oneDNN too */
        /* at least GEMM_FEW_ROWS_MIN_NK weights except in case 3; the head's N is gemm.c's limit */
        const int64_t N = c == 1 ? 32768 : 72, K = c == 1 ? 2 : c == 3 ? 96 : 1024;
        problem p = make(0, 1, M, N, K, 1.0f, 0.0f);
        const size_t nb = (size_t)(p.N * p.ldb);
        if (c < 2) gemm_ctx_set_readonly(g, 0, p.B, nb);
        float *C = run(g, &p), *D = xmalloc(sizeof(float) * (size_t)(M * p.ldc));
        int64_t prims, emul;
        gemm_ctx_stats(g, &prims, &emul, NULL);
        assert_int_equal(prims, c == 0 ? 2 : 1);
        memcpy(D, p.C0, sizeof(float) * (size_t)(M * p.ldc));
        gemm_run(g, 0, 1, 48, N, K, 1.0f, p.A, p.lda, p.B, p.ldb, 0.0f, D, p.ldc);
        gemm_run(g, 0, 1, 11, N, K, 1.0f, p.A + 48 * p.lda, p.lda, p.B, p.ldb, 0.0f, D + 48 * p.ldc, p.ldc);
        check(&p, C, 1, (K + 2) * U24, NULL);
        if (c == 0) assert_memory_equal(C, D, sizeof(float) * (size_t)(M * p.ldc));
        free(C); free(D);
        unmake(&p);
        gemm_ctx_free(g);
    }
}

static void test_fp32_is_openblas(void **state) {
    (void)state;
    gemm_ctx *g = gemm_ctx_new(GEMM_FP32);
    for (int t = 0; t < 4; t++)
        for (size_t s = 0; s < NSHAPES; s++) {
            problem p = make(t & 1, t >> 1, SHAPES[s][0], SHAPES[s][1], SHAPES[s][2], 0.37f, 0.5f);
            float *C = run(g, &p), *D = run(g, &p);
            memcpy(D, p.C0, sizeof(float) * (size_t)(p.M * p.ldc));
            cblas_sgemm(CblasRowMajor, p.ta ? CblasTrans : CblasNoTrans, p.tb ? CblasTrans : CblasNoTrans, p.M, p.N,
                        p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, D, p.ldc);
            assert_memory_equal(C, D, sizeof(float) * (size_t)(p.M * p.ldc));
            memcpy(C, p.C0, sizeof(float) * (size_t)(p.M * p.ldc));
            wdl_sgemm(p.ta, p.tb, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, C, p.ldc);
            assert_memory_equal(C, D, sizeof(float) * (size_t)(p.M * p.ldc));
            free(C); free(D);
            unmake(&p);
        }
    assert_int_equal(gemm_ctx_precision(gemm_default()), GEMM_FP32);
    gemm_ctx_free(g);
}

/* fp32 products of a few rows against a large B go to oneDNN (gemm.h):
 * bit for bit what an fp32-oneDNN context computes, within the fp32 bound;
 * one row more, or a small B, and they are cblas_sgemm's again. */
static void test_fp32_few_rows(void **state) {
    (void)state;
    gemm_ctx *g = gemm_ctx_new(GEMM_FP32), *d = gemm_ctx_new(GEMM_FP32_DNNL);
    const int64_t K = 256, N = GEMM_FEW_ROWS_MIN_NK / K;
    const int64_t rows[] = {1, 4, GEMM_FEW_ROWS, GEMM_FEW_ROWS + 1};
    for (int t = 0; t < 4; t++)
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
            for (int small_b = 0; small_b < 2; small_b++) {
                int64_t M = rows[r], n = small_b ? N / 2 : N;
                problem p = make(t & 1, t >> 1, M, n, K, 0.37f, 0.5f);
                float *C = run(g, &p), *D;
                if (M <= GEMM_FEW_ROWS && !small_b) {
                    D = run(d, &p);
                    check(&p, C, 0, (p.K + 2) * U24, NULL);
                } else {
                    D = run(d, &p);
                    memcpy(D, p.C0, sizeof(float) * (size_t)(p.M * p.ldc));
                    cblas_sgemm(CblasRowMajor, p.ta ? CblasTrans : CblasNoTrans, p.tb ? CblasTrans : CblasNoTrans,
                                p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, D, p.ldc);
                }
                assert_memory_equal(C, D, sizeof(float) * (size_t)(p.M * p.ldc));
                free(C); free(D);
                unmake(&p);
            }
    gemm_ctx_free(g);
    gemm_ctx_free(d);
}

/* gemm_run_n's products of one A that would each take the few-row
 * kernel (decoding's q, k and v; gate and up) run together in one parallel
 * region: the bytes of gemm_run on each, at 1 and 2 threads and inside a
 * team, counted as one group of n products. The routes: bf16 with the
 * weights a read-only range, fp32 with bf16 shadows, fp32 views read as
 * shadows (a BF16 checkpoint decoded in fp32). A set with one product the
 * kernel would not take (B too small), or another A, runs product by
 * product, as gemm_run would. */
static void few_group_case(gemm_ctx *g, int64_t M, const float *W, int64_t K, int64_t ldw, const int64_t *N, int n,
                           int other_a, int expect_group) {
    const int64_t lda = K + 3, ldc_pad = 2;
    float *A = rnd(M * lda), *A2 = rnd(M * lda);
    static const float ab[][2] = {{1.0f, 0.0f}, {0.37f, 0.5f}, {-2.0f, 1.0f}};
    gemm_prod p[GEMM_N_MAX];
    float *C0[GEMM_N_MAX], *G[GEMM_N_MAX], *R[GEMM_N_MAX];
    int64_t row = 0;
    for (int i = 0; i < n; i++) {
        const int64_t ldc = N[i] + ldc_pad;
        C0[i] = rnd(M * ldc);
        if (ab[(i + M) % 3][1] == 0.0f)
            for (int64_t j = 0; j < M * ldc; j++) C0[i][j] = NAN;   /* beta 0 never reads C */
        G[i] = xmalloc(sizeof(float) * (size_t)(M * ldc));
        R[i] = xmalloc(sizeof(float) * (size_t)(M * ldc));
        const float *a = other_a && i == n - 1 ? A2 : A;
        p[i] = (gemm_prod){0, 1, M, N[i], K, ab[(i + M) % 3][0], a, lda, W + row * ldw, ldw, NULL, ab[(i + M) % 3][1],
                           G[i], ldc};
        row += N[i];
    }
    for (int i = 0; i < n; i++) {   /* one by one */
        memcpy(R[i], C0[i], sizeof(float) * (size_t)(M * p[i].ldc));
        gemm_run(g, 0, 1, M, N[i], K, p[i].alpha, p[i].A, lda, p[i].B, ldw, p[i].beta, R[i], p[i].ldc);
    }
    const int nt = omp_get_max_threads();
    for (int way = 0; way < 3; way++) {   /* the set: at the team's size, at 1 thread, inside a team */
        for (int i = 0; i < n; i++) memcpy(G[i], C0[i], sizeof(float) * (size_t)(M * p[i].ldc));
        const int64_t prods = gemm_ctx_few_row_products(g), groups = gemm_ctx_few_row_groups(g);
        if (way == 0) omp_set_num_threads(nt > 1 ? nt : 2);
        if (way == 1) omp_set_num_threads(1);
        if (way == 2) {
#pragma omp parallel num_threads(2)
#pragma omp single
            gemm_run_n(g, n, p);
        } else
            gemm_run_n(g, n, p);
        omp_set_num_threads(nt);
        for (int i = 0; i < n; i++) assert_memory_equal(G[i], R[i], sizeof(float) * (size_t)(M * p[i].ldc));
        if (gemm_ctx_few_row_groups(g) - groups != expect_group)
            fail_msg("M=%lld K=%lld, %d products: %lld groups, expected %d", (long long)M, (long long)K, n,
                     (long long)(gemm_ctx_few_row_groups(g) - groups), expect_group);
        if (expect_group) assert_int_equal(gemm_ctx_few_row_products(g) - prods, n);
    }
    for (int i = 0; i < n; i++) {
        free(C0[i]); free(G[i]); free(R[i]);
    }
    free(A);
    free(A2);
}

static void test_few_rows_group(void **state) {
    (void)state;
    const int hw = few_rows_cpu();
    const int64_t K = 300, ldw = K + 5, big = GEMM_FEW_ROWS_MIN_NK / K + 1;
    const int64_t qkv[] = {2 * big, big, big}, gu[] = {big + 13, big + 13}, small[] = {big, 8, big};
    const int64_t nw = (2 * big + big + big) * ldw;   /* the largest set's rows */
    float *W = rnd(nw);
    uint16_t *W16 = xmalloc(sizeof(uint16_t) * (size_t)nw);
    for (int64_t i = 0; i < nw; i++) {
        W[i] = bf16_round(W[i]);   /* the floats a BF16 checkpoint's values widen to */
        W16[i] = st_f32_to_bf16(W[i]);
    }
    for (int route = 0; route < 3; route++) {
        gemm_ctx *g = gemm_ctx_new(route == 0 ? GEMM_BF16 : GEMM_FP32_AUTO);
        if (route == 0) gemm_ctx_set_readonly(g, 0, W, (size_t)nw);
        if (route == 1) gemm_ctx_add_bf16_shadow(g, W, (size_t)nw, W16);
        if (route == 2) {
            if (!gemm_ctx_fp32_views(g)) {   /* (no sgemm_own: no fp32 views) */
                gemm_ctx_free(g);
                continue;
            }
            gemm_ctx_fp32_views_few_rows(g, 1);
            gemm_ctx_add_bf16_view(g, W, (size_t)nw, W16);
        }
        const int64_t rows[] = {1, 3, 4};
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            const int64_t M = rows[r];
            few_group_case(g, M, W, K, ldw, qkv, 3, 0, hw != 0);
            few_group_case(g, M, W, K, ldw, gu, 2, 0, hw != 0);
            few_group_case(g, M, W, K, ldw, small, 3, 0, 0);   /* 8 x 300: not the kernel's */
            few_group_case(g, M, W, K, ldw, qkv, 3, 1, 0);     /* another A */
        }
        gemm_ctx_free(g);
    }
    free(W);
    free(W16);
}

/* oneDNN's fp32 matmul: within the fp32 accumulation bound. */
static void test_fp32_onednn(void **state) {
    (void)state;
    gemm_ctx *g = gemm_ctx_new(GEMM_FP32_DNNL);
    for (int t = 0; t < 4; t++)
        for (size_t s = 0; s < NSHAPES; s++) {
            problem p = make(t & 1, t >> 1, SHAPES[s][0], SHAPES[s][1], SHAPES[s][2], -2.0f, 1.0f);
            float *C = run(g, &p);
            check(&p, C, 0, (p.K + 2) * U24, NULL);
            free(C);
            unmake(&p);
        }
    gemm_ctx_free(g);
}

/* The product run by each thread of a team of 2 at once gives C's bytes
 * (OpenBLAS runs a call made inside a team on one thread). */
static void same_in_a_team(gemm_ctx *g, const problem *p, const float *C) {
    const size_t n = sizeof(float) * (size_t)(p->M * p->ldc);
    float *T[2];
#pragma omp parallel num_threads(2)
    T[omp_get_thread_num()] = run(g, p);
    for (int i = 0; i < 2; i++) {
        assert_memory_equal(C, T[i], n);
        free(T[i]);
    }
}

/* The programs' fp32 (GEMM_FP32_AUTO): on a CPU with AVX2 and FMA,
 * sgemm_own (within the fp32 bound; test_own_sgemm checks its order byte
 * for byte); elsewhere OpenBLAS: one call's bytes up to 2^18
 * multiply-adds, above it fixed blocks (within the fp32 bound); a few rows
 * against a large B as fp32-openblas runs them. Shapes as training meets
 * them (forward, input gradient, weight gradient with K = the tokens),
 * wide and narrow ones, row counts that are not a multiple of 16, a
 * few rows. No product's bytes may depend
 * on the thread count or on being called inside a team: scoring and
 * decoding promise one process's output under mpirun, whose ranks run
 * fewer threads. (OpenBLAS's one call does not keep that: its Zen/Haswell
 * and generic kernels gave other bytes at 1 and 2 threads.) */
static void test_fp32_auto(void **state) {
    (void)state;
    gemm_ctx *a = gemm_ctx_new(GEMM_FP32_AUTO), *o = gemm_ctx_new(GEMM_FP32);
    const int own = gemm_ctx_uses_own_sgemm(a);
    print_message("oneDNN ISA %s: large fp32 products on %s\n", gemm_dnnl_isa(), own ? sgemm_own_tile() : "OpenBLAS");
    static const struct { int ta, tb; int64_t M, N, K; } cases[] = {
        {0, 1, 512, 768, 256}, {0, 0, 512, 256, 768}, {1, 0, 256, 768, 512}, {1, 0, 64, 96, 4096},
        {0, 1, 128, 256, 128}, {0, 1, 127, 256, 128}, {0, 1, 2, 2048, 1024}, {0, 1, 100, 512, 256},
        {1, 0, 75, 300, 400}, {0, 0, 64, 3072, 64}, {1, 0, 64, 2049, 64}, {0, 0, 64, 2048, 64},
        {1, 0, 8193, 2048, 1}, {0, 1, 8193, 2048, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int b = 0; b < 2; b++) {
            problem p = make(cases[c].ta, cases[c].tb, cases[c].M, cases[c].N, cases[c].K, 0.37f, b ? 1.0f : 0.0f);
            const size_t n = sizeof(float) * (size_t)(p.M * p.ldc);
            /* OpenBLAS's products above 2^18 multiply-adds run as fixed
             * blocks (gemm.c), and all of them on sgemm_own where it is
             * used: not one call, so other bytes than fp32-openblas */
            const int few = p.M <= GEMM_FEW_ROWS && p.N * p.K >= GEMM_FEW_ROWS_MIN_NK;   /* oneDNN's, as fp32's */
            const int blocked = !few && (own || (double)p.M * p.N * p.K > (double)GEMM_FP32_ONE_CALL_MAX);
            float *C = run(a, &p), *R = run(o, &p);
            if (!blocked) assert_memory_equal(C, R, n);
            check(&p, C, 0, (p.K + 2) * U24, NULL);
            same_at_1_and_2_threads(a, &p, C);
            same_in_a_team(a, &p, C);
            free(C); free(R);
            unmake(&p);
        }
    gemm_ctx_free(a);
    gemm_ctx_free(o);
}

/* xhuge_if_cheap: nothing kept when a chunk is over its bound (a bound
 * of 0 s per GB always is), and otherwise a whole zeroed, 2 MB aligned
 * buffer, every chunk (three of 16 MB, then 22 MB with an odd tail) alike;
 * a buffer no larger than one chunk is always given. */
static void test_huge_if_cheap(void **state) {
    (void)state;
    const size_t n = ((size_t)70 << 20) + 12345;
    assert_null(xhuge_if_cheap(n, 0.0));
    unsigned char *p = xhuge_if_cheap(n, 1e9);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % ((size_t)2 << 20), 0);
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++) nonzero += p[i] != 0;
    assert_int_equal(nonzero, 0);
    memset(p, 7, n);   /* all of it writable */
    free(p);
    p = xhuge_if_cheap((size_t)1 << 20, 0.0);
    assert_non_null(p);
    assert_int_equal(p[(1 << 20) - 1], 0);
    free(p);
}

/* sgemm_own (sgemm.h) against a scalar model of the order it promises:
 * per element of C, each block of SGEMM_KC values of k in turn, one fmaf
 * chain from zero, then alpha s + beta C (fused; alpha s alone when beta
 * is 0) after the first block and alpha s + C after the next ones. Byte
 * for byte, so any other order, a lost tail or a stray store fails. */
static void own_order(const problem *p, float *C) {
    for (int64_t i = 0; i < p->M; i++)
        for (int64_t j = 0; j < p->N; j++) {
            float c = p->C0[i * p->ldc + j];
            if (p->K == 0 || p->alpha == 0) c = p->beta == 0 ? 0.0f : p->beta * c;
            for (int64_t k0 = 0; k0 < p->K && p->alpha != 0; k0 += SGEMM_KC) {
                float s = 0;
                for (int64_t k = k0; k < p->K && k < k0 + SGEMM_KC; k++)
                    s = fmaf(a_at(p, p->A, i, k), b_at(p, p->B, k, j), s);
                if (k0 > 0) c = fmaf(p->alpha, s, c);
                else c = p->beta == 0 ? p->alpha * s : fmaf(p->alpha, s, p->beta * c);
            }
            C[i * p->ldc + j] = c;
        }
}
static float *own_run(const problem *p, sgemm_bufs *b) {
    float *C = xmalloc(sizeof(float) * (size_t)(p->M * p->ldc));
    memcpy(C, p->C0, sizeof(float) * (size_t)(p->M * p->ldc));
    sgemm_own(p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta, C, p->ldc, sgemm_bufs_get, b);
    return C;
}
/* With round16 (gemm_prod: A's and B's values rounded to bf16 as they are
 * packed, GEMM_BF16's products on fp32 FMAs), sgemm_own gives byte for
 * byte its order on copies rounded beforehand. */
static void own_round16(const problem *p, sgemm_bufs *bufs) {
    const size_t n = sizeof(float) * (size_t)(p->M * p->ldc);
    problem r = rounded_copy(p);
    float *R = xmalloc(n), *C = xmalloc(n);
    memcpy(R, p->C0, n);
    own_order(&r, R);
    memcpy(C, p->C0, n);
    gemm_prod q = {p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, NULL, p->beta, C, p->ldc};
    q.round16 = 1;
    sgemm_own_multi(1, &q, sgemm_bufs_get, bufs);
    if (memcmp(C, R, n))
        fail_msg("sgemm_own with round16 differs from its order on rounded inputs (%s%s M=%lld N=%lld K=%lld, %d "
                 "threads)", p->ta ? "T" : "N", p->tb ? "T" : "N", (long long)p->M, (long long)p->N, (long long)p->K,
                 omp_get_max_threads());
    free(R); free(C);
    unmake(&r);
}
/* An fp32 context that runs its products on sgemm_own (a skip on a CPU
 * without AVX2 and FMA). */
static gemm_ctx *own_sgemm_ctx(void) {
    if (!sgemm_own_cpu()) {
        print_message("no AVX2 and FMA: sgemm_own not run here\n");
        skip();
    }
    gemm_ctx *g = gemm_ctx_new(GEMM_FP32_AUTO);
    gemm_ctx_own_sgemm(g, 2);
    assert_true(gemm_ctx_uses_own_sgemm(g));
    return g;
}
/* par_barrier (common.h), which sgemm_own's packing waits at: over many
 * rounds every thread writes its slot, waits, and then must see every
 * other thread's write of that round, and waits again before the next
 * round's writes; one thread sometimes arrives 2 ms late, so that the
 * others pass from spinning to yielding. On teams of 1 to 4 threads
 * (on a 2-core machine, more threads than cores: partners descheduled).
 * A missing or early release shows up as a stale slot. */
static void test_par_barrier(void **state) {
    (void)state;
    for (int nt = 1; nt <= 4; nt++) {
        enum { ROUNDS = 300 };
        long long slot[4] = {0};
        int stale = 0, team = 0;
        atomic_llong arrived = 0;
#pragma omp parallel num_threads(nt) reduction(+ : stale)
        {
            const int me = omp_get_thread_num(), n = omp_get_num_threads();
#pragma omp single
            team = n;
            long long k = 0;
            for (int r = 1; r <= ROUNDS; r++) {
                if (r % 50 == 0 && me == r / 50 % n) usleep(2000);
                __atomic_store_n(&slot[me], (long long)r * 10 + me, __ATOMIC_RELAXED);
                par_barrier(&arrived, ++k);
                for (int u = 0; u < n; u++)
                    if (__atomic_load_n(&slot[u], __ATOMIC_RELAXED) != (long long)r * 10 + u) stale++;
                par_barrier(&arrived, ++k);
            }
        }
        if (stale) fail_msg("par_barrier: %d stale slots on a team of %d", stale, team);
        assert_int_equal(atomic_load(&arrived), 2LL * ROUNDS * team);
    }
}

static void test_own_sgemm(void **state) {
    (void)state;
    gemm_ctx *g = own_sgemm_ctx();
    sgemm_bufs *bufs = xcalloc(1, sizeof *bufs);
    /* edges of the 6 x 16 tile, K blocks (256 + 1, three), fewer than 8
     * values of k (the transposes' tail), products on a team of threads
     * (training's shapes, a weight gradient's long K), B packed in two
     * blocks of columns (N K over 2^20; with op(B) = B^T and 17 to 512
     * rows, the wide order instead: C^T summed from B's rows in place,
     * here with edges of the tile and of its 8 x 8 transposes on both
     * sides, and K blocks), a few rows on a team (decoding's: each
     * thread packs its own panels), and rows 4 KB or more apart read by
     * many panels of B (A's rows packed too, as the layer products of a
     * real-size model: edges of the tile and of the transposes) */
    static const int64_t shapes[][3] = {{1, 1, 1},       {7, 17, 5},      {6, 16, 256},   {13, 33, 257},
                                        {100, 50, 600},  {97, 130, 8},    {1760, 64, 128}, {64, 128, 1760},
                                        {20, 4000, 300}, {16, 300, 600},  {1, 272, 1100},  {11, 384, 128},
                                        {37, 2101, 520}, {17, 70001, 16}, {45, 700, 1036}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int v = 0; v < 3; v++) {
                const float alpha = v == 1 ? 0.37f : 1.0f, beta = v == 0 ? 0.0f : v == 1 ? 1.0f : -0.5f;
                problem p = make(t & 1, t >> 1, shapes[s][0], shapes[s][1], shapes[s][2], alpha, beta);
                const size_t n = sizeof(float) * (size_t)(p.M * p.ldc);
                /* at the machine's count of threads and at 2, whatever that is */
                const int saved = omp_get_max_threads();
                float *R = xmalloc(n), *C = NULL;
                memcpy(R, p.C0, n);
                own_order(&p, R);
                for (int th = 0; th < 2; th++) {
                    omp_set_num_threads(th ? 2 : saved);
                    free(C);
                    C = own_run(&p, bufs);
                    if (memcmp(C, R, n))
                        fail_msg("sgemm_own differs from its order (%s%s M=%lld N=%lld K=%lld, %d threads)",
                                 p.ta ? "T" : "N", p.tb ? "T" : "N", (long long)p.M, (long long)p.N, (long long)p.K,
                                 omp_get_max_threads());
                    own_round16(&p, bufs);
                    if (p.tb) {   /* B^T packed beforehand: the same order */
                        float *bp = xaligned(sizeof(float) * sgemm_packed_floats(p.N, p.K)), *P = xmalloc(n);
                        sgemm_pack_bt(p.B, p.ldb, p.N, p.K, bp);
                        memcpy(P, p.C0, n);
                        sgemm_own_packed(p.ta, p.M, p.N, p.K, p.alpha, p.A, p.lda, bp, p.beta, P, p.ldc, sgemm_bufs_get,
                                         bufs);
                        if (memcmp(P, R, n))
                            fail_msg("sgemm_own_packed differs from its order (%sT M=%lld N=%lld K=%lld, %d threads)",
                                     p.ta ? "T" : "N", (long long)p.M, (long long)p.N, (long long)p.K,
                                     omp_get_max_threads());
                        free(bp);
                        free(P);
                    }
                }
                omp_set_num_threads(saved);
                check(&p, C, 0, (p.K + 2) * U24, NULL);
                /* the backend sends the programs' fp32 products here (all
                 * but the few-row kernel's) */
                if (p.M > GEMM_FEW_ROWS) {
                    float *G = run(g, &p);
                    assert_memory_equal(C, G, n);
                    free(G);
                    same_at_1_and_2_threads(g, &p, C);
                    same_in_a_team(g, &p, C);
                }
                free(C);
                free(R);
                unmake(&p);
            }
    /* K = 0 and alpha = 0: beta C, as BLAS says */
    problem p = make(0, 1, 9, 20, 0, 1.0f, 0.5f);
    float *C = own_run(&p, bufs);
    for (int64_t i = 0; i < p.M; i++)
        for (int64_t j = 0; j < p.N; j++) assert_true(C[i * p.ldc + j] == 0.5f * p.C0[i * p.ldc + j]);
    free(C);
    unmake(&p);
    sgemm_bufs_free(bufs);
    free(bufs);
    gemm_ctx_free(g);
}

/* sgemm_own_multi (several products in one region, a shared B packed
 * once): each C byte for byte the order sgemm_own promises, at the
 * machine's thread count and at 2; and gemm_run_n on a context that runs
 * its fp32 products on sgemm_own: the bytes of gemm_run on each. */
static void multi_case(gemm_ctx *g, sgemm_bufs *bufs, int n, const problem *ps, const float *const *packed) {
    float *R[GEMM_N_MAX], *C[GEMM_N_MAX];
    gemm_prod q[GEMM_N_MAX];
    size_t bytes[GEMM_N_MAX];
    for (int i = 0; i < n; i++) {
        bytes[i] = sizeof(float) * (size_t)(ps[i].M * ps[i].ldc);
        R[i] = xmalloc(bytes[i]);
        memcpy(R[i], ps[i].C0, bytes[i]);
        own_order(&ps[i], R[i]);
    }
    const int saved = omp_get_max_threads();
    for (int th = 0; th < 3; th++) {
        if (th < 2) omp_set_num_threads(th ? 2 : saved);
        for (int i = 0; i < n; i++) {
            const problem *p = &ps[i];
            C[i] = xmalloc(bytes[i]);
            memcpy(C[i], p->C0, bytes[i]);
            q[i] = (gemm_prod){p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb,
                               th < 2 && packed ? packed[i] : NULL, p->beta, C[i], p->ldc};
        }
        if (th < 2) sgemm_own_multi(n, q, sgemm_bufs_get, bufs);
        else gemm_run_n(g, n, q);   /* (the context packs no B ahead) */
        for (int i = 0; i < n; i++) {
            if (th == 2) {   /* gemm_run's bytes (its few-row kernel included) */
                free(R[i]);
                R[i] = run(g, &ps[i]);
            }
            if (memcmp(C[i], R[i], bytes[i]))
                fail_msg("%s: product %d of %d differs from its order (%s%s M=%lld N=%lld K=%lld, %d threads)",
                         th < 2 ? "sgemm_own_multi" : "gemm_run_n", i, n, ps[i].ta ? "T" : "N", ps[i].tb ? "T" : "N",
                         (long long)ps[i].M, (long long)ps[i].N, (long long)ps[i].K, omp_get_max_threads());
            free(C[i]);
        }
    }
    omp_set_num_threads(saved);
    for (int i = 0; i < n; i++) free(R[i]);
}
/* Products into one C (an input gradient summed over layers), with two
 * weight gradients sharing a B in the same call: the C gets each
 * product's order in turn, as by sgemm_own (or gemm_run) one after the
 * other. */
static void chain_case(gemm_ctx *g, sgemm_bufs *bufs) {
    const int64_t M = 1760, N = 128, Ks[3] = {128, 70, 64};
    problem c[3], w[2] = {make(1, 0, 128, 128, 1760, 1, 1), make(1, 0, 70, 128, 1760, 1, 1)};
    float *wb = w[1].B;
    w[1].B = w[0].B;
    for (int i = 0; i < 3; i++) c[i] = make(0, 0, M, N, Ks[i], i == 1 ? 0.37f : 1, i ? 1 : 0);
    const size_t cb = sizeof(float) * (size_t)(M * c[0].ldc);
    /* the references: the chain product by product, each from the last's C */
    float *R = xmalloc(cb), *before = xmalloc(cb), *RW[2];
    memcpy(before, c[0].C0, cb);
    for (int i = 0; i < 3; i++) {
        problem q = c[i];
        q.C0 = before;
        memcpy(R, before, cb);   /* (the padding past N stays as it was) */
        own_order(&q, R);
        memcpy(before, R, cb);
    }
    for (int i = 0; i < 2; i++) {
        RW[i] = xmalloc(sizeof(float) * (size_t)(w[i].M * w[i].ldc));
        memcpy(RW[i], w[i].C0, sizeof(float) * (size_t)(w[i].M * w[i].ldc));
        own_order(&w[i], RW[i]);
    }
    const int saved = omp_get_max_threads();
    for (int th = 0; th < 3; th++) {
        if (th < 2) omp_set_num_threads(th ? 2 : saved);
        float *C = xmalloc(cb), *W[2];
        memcpy(C, c[0].C0, cb);
        gemm_prod q[5];
        for (int i = 0; i < 3; i++)
            q[i] = (gemm_prod){0, 0, M, N, Ks[i], c[i].alpha, c[i].A, c[i].lda, c[i].B, c[i].ldb, NULL, c[i].beta, C,
                               c[i].ldc};
        for (int i = 0; i < 2; i++) {
            const size_t wbytes = sizeof(float) * (size_t)(w[i].M * w[i].ldc);
            W[i] = xmalloc(wbytes);
            memcpy(W[i], w[i].C0, wbytes);
            q[3 + i] = (gemm_prod){1, 0, w[i].M, w[i].N, w[i].K, 1, w[i].A, w[i].lda, w[i].B, w[i].ldb, NULL, 1, W[i],
                                   w[i].ldc};
        }
        if (th < 2) sgemm_own_multi(5, q, sgemm_bufs_get, bufs);
        else gemm_run_n(g, 5, q);
        if (memcmp(C, R, cb)) fail_msg("products into one C: not each in turn (%d threads)", omp_get_max_threads());
        for (int i = 0; i < 2; i++) {
            if (memcmp(W[i], RW[i], sizeof(float) * (size_t)(w[i].M * w[i].ldc)))
                fail_msg("a weight gradient beside a chain differs (%d threads)", omp_get_max_threads());
            free(W[i]);
        }
        free(C);
    }
    omp_set_num_threads(saved);
    free(R); free(before); free(RW[0]); free(RW[1]);
    w[1].B = wb;
    for (int i = 0; i < 3; i++) unmake(&c[i]);
    for (int i = 0; i < 2; i++) unmake(&w[i]);
}
static void test_own_multi(void **state) {
    (void)state;
    gemm_ctx *g = own_sgemm_ctx();
    sgemm_bufs *bufs = xcalloc(1, sizeof *bufs);
    /* q, k and v: one A, three B's (two of them one tile wide and a bit) */
    problem f[3] = {make(0, 1, 1760, 128, 128, 1, 0), make(0, 1, 1760, 70, 128, 1, 0), make(0, 1, 1760, 64, 128, 1, 0)};
    float *fa[3] = {f[0].A, f[1].A, f[2].A};
    f[1].A = f[2].A = f[0].A;
    multi_case(g, bufs, 3, f, NULL);
    /* the same with the second B packed beforehand */
    float *bp = xaligned(sizeof(float) * sgemm_packed_floats(f[1].N, f[1].K));
    sgemm_pack_bt(f[1].B, f[1].ldb, f[1].N, f[1].K, bp);
    multi_case(g, bufs, 3, f, (const float *[]){NULL, bp, NULL});
    free(bp);
    /* their weight gradients: three A's stored transposed, one B (packed
     * once), accumulating; a fourth product with a B of its own */
    problem w[4] = {make(1, 0, 128, 128, 1760, 1, 1), make(1, 0, 70, 128, 1760, 1, 1), make(1, 0, 64, 128, 1760, 1, 1),
                    make(1, 0, 97, 128, 1760, 1, 1)};
    float *wb[2] = {w[1].B, w[2].B};
    w[1].B = w[2].B = w[0].B;
    multi_case(g, bufs, 4, w, NULL);
    /* tile edges, K blocks (257), alpha and beta, mixed transposes */
    problem e[3] = {make(0, 0, 97, 130, 257, 0.37f, -0.5f), make(1, 1, 100, 50, 600, 1, 1), make(0, 0, 97, 33, 257, 1, 0)};
    multi_case(g, bufs, 3, e, NULL);
    /* sets that run product by product: few rows on a team, a product for
     * one thread, one too wide to pack whole (N K over 2^20) */
    problem o[3] = {make(0, 1, 100, 50, 600, 1, 0), make(0, 1, 3, 272, 1100, 1, 0), make(0, 0, 7, 17, 5, 1, 1)};
    multi_case(g, bufs, 3, o, NULL);
    problem wide[2] = {make(0, 1, 100, 50, 600, 1, 0), make(0, 1, 20, 4000, 300, 1, 1)};
    multi_case(g, bufs, 2, wide, NULL);
    chain_case(g, bufs);
    for (int i = 0; i < 3; i++) { f[i].A = fa[i]; unmake(&f[i]); unmake(&e[i]); unmake(&o[i]); }
    w[1].B = wb[0]; w[2].B = wb[1];
    for (int i = 0; i < 4; i++) unmake(&w[i]);
    for (int i = 0; i < 2; i++) unmake(&wide[i]);
    sgemm_bufs_free(bufs);
    free(bufs);
    gemm_ctx_free(g);
}

/* gemm_ctx_keep_packed: a linear layer's weights inside the kept range
 * are packed by their first product and read from there by the next ones
 * (decoding's few rows, a forward's many): the same bytes as packing each
 * time. Changing the weights behind the context's back (which the caller
 * promises not to do) shows that the kept copy is what is read; dropping
 * the range, or weights outside it, read the floats again. */
static void test_keep_packed(void **state) {
    (void)state;
    if (!sgemm_own_cpu()) {
        print_message("no AVX2 and FMA: sgemm_own not run here\n");
        skip();
    }
    gemm_ctx *g = gemm_ctx_new(GEMM_FP32_AUTO), *plain_ctx = gemm_ctx_new(GEMM_FP32_AUTO);
    gemm_ctx_own_sgemm(g, 2);
    gemm_ctx_own_sgemm(plain_ctx, 2);
    static const int64_t rows[] = {16, 3, 100};   /* few rows on a team, on one thread, the blocked path */
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        problem p = make(0, 1, rows[r], 300, 150, 1.0f, 0.0f), q = make(0, 1, rows[r], 300, 150, 1.0f, 0.0f);
        const size_t n = sizeof(float) * (size_t)(p.M * p.ldc), nb = (size_t)(p.N * p.ldb);
        float *plain = run(g, &p);
        gemm_ctx_keep_packed(g, p.B - 7, nb + 20);   /* the weights inside a larger range */
        float *first = run(g, &p), *again = run(g, &p);
        assert_memory_equal(plain, first, n);
        assert_memory_equal(plain, again, n);
        /* the kept copy is what the product reads */
        float *saved = xmalloc(sizeof(float) * nb);
        memcpy(saved, p.B, sizeof(float) * nb);
        memcpy(p.B, q.B, sizeof(float) * nb);
        float *stale = run(g, &p), *fresh = run(plain_ctx, &p);
        assert_memory_equal(plain, stale, n);
        /* dropping memory inside the range forgets it: the new weights count */
        gemm_ctx_drop_packed(g, p.B + 10, 1);
        float *after = run(g, &p);
        assert_memory_equal(fresh, after, n);
        assert_true(memcmp(plain, after, n) != 0);
        /* weights outside the kept range are packed per product */
        gemm_ctx_keep_packed(g, q.A, 1);
        memcpy(p.B, saved, sizeof(float) * nb);
        float *outside = run(g, &p);
        assert_memory_equal(plain, outside, n);
        gemm_ctx_keep_packed(g, NULL, 0);
        free(plain); free(first); free(again); free(stale); free(fresh); free(after); free(outside); free(saved);
        unmake(&p);
        unmake(&q);
    }
    gemm_ctx_free(g);
    gemm_ctx_free(plain_ctx);
}

/* K = 0 and alpha = 0 leave beta * C; M = 0 or N = 0 touch nothing. */
static void test_degenerate(void **state) {
    (void)state;
    gemm_ctx *g = gemm_ctx_new(GEMM_BF16);
    float A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8}, C[4] = {1, 2, 3, 4};
    gemm_run(g, 0, 0, 2, 2, 0, 1.0f, A, 2, B, 2, 0.5f, C, 2);
    assert_true(C[0] == 0.5f && C[3] == 2.0f);
    gemm_run(g, 0, 0, 2, 2, 2, 0.0f, A, 2, B, 2, 0.0f, C, 2);
    assert_true(C[0] == 0.0f && C[3] == 0.0f);
    C[0] = 9;
    gemm_run(g, 0, 0, 0, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    assert_true(C[0] == 9.0f);
    gemm_ctx_free(g);
}

static void parse_bad(void *arg) { gemm_parse_precision("--precision", (const char *)arg); }
static void test_parse(void **state) {
    (void)state;
    assert_int_equal(gemm_parse_precision("--precision", "fp32"), GEMM_FP32_AUTO);
    assert_int_equal(gemm_parse_precision("--precision", "fp32-openblas"), GEMM_FP32);
    assert_int_equal(gemm_parse_precision("--precision", "bf16"), GEMM_BF16);
    static const gemm_precision all[] = {GEMM_FP32, GEMM_BF16, GEMM_FP32_AUTO};
    for (size_t i = 0; i < 3; i++)   /* names and parsing agree */
        assert_int_equal(gemm_parse_precision("--precision", gemm_precision_name(all[i])), all[i]);
    expect_die(parse_bad, "fp16", "--precision", "fp16");
}

/* Without bf16 instructions (oneDNN capped at AVX2 through its documented
 * ONEDNN_MAX_CPU_ISA), bf16 still gives bf16-rounded-input products and
 * says so once on stderr. Runs in a child that has not touched oneDNN (the
 * cap is read on first use), so it must stay the first test. */
static void no_bf16_child(void *arg) {
    (void)arg;
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    if (gemm_bf16_native()) _exit(3);
    gemm_set_precision(GEMM_BF16);
    problem p = make(1, 0, 37, 21, 130, 0.37f, 0.5f);
    float *C = xmalloc(sizeof(float) * (size_t)(p.M * p.ldc));
    memcpy(C, p.C0, sizeof(float) * (size_t)(p.M * p.ldc));
    wdl_sgemm(p.ta, p.tb, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, C, p.ldc);
    check(&p, C, 1, (p.K + 2) * U24, NULL);   /* a failure here exits non-zero */
}
static void test_bf16_without_bf16_isa(void **state) {
    (void)state;
    char buf[4096];
    int st = run_in_child(no_bf16_child, NULL, buf, sizeof buf);
    size_t n = strlen(buf);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("child status %d, stderr: %s", st, buf);
    if (!strstr(buf, "no AVX512-BF16 or AMX") || n == 0 || strchr(buf, '\n') != buf + n - 1)
        fail_msg("expected one line about the missing bf16 instructions, got: %s", buf);
    print_message("%s", buf);
}

int main(void) {
    wdl_set_prog("test_gemm");
    rng_seed(&rng, 42);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_without_bf16_isa),
        cmocka_unit_test(test_bf16_all_cases),
        cmocka_unit_test(test_bf16_all_cases_own_scale),
        cmocka_unit_test(test_bf16_all_cases_on_fma),
        cmocka_unit_test(test_bf16_strided_c),
        cmocka_unit_test(test_bf16_cache_reuse),
        cmocka_unit_test(test_bf16_cache_limit),
        cmocka_unit_test(test_bf16_in_parallel_region),
        cmocka_unit_test(test_bf16_readonly),
        cmocka_unit_test(test_bf16_views),
        cmocka_unit_test(test_bf16_hold_inputs),
        cmocka_unit_test(test_bf16_denormals),
        cmocka_unit_test(test_bf16_few_rows),
        cmocka_unit_test(test_bf16_row_split),
        cmocka_unit_test(test_fp32_is_openblas),
        cmocka_unit_test(test_fp32_onednn),
        cmocka_unit_test(test_fp32_auto),
        cmocka_unit_test(test_par_barrier), cmocka_unit_test(test_huge_if_cheap),
        cmocka_unit_test(test_own_sgemm), cmocka_unit_test(test_own_multi),
        cmocka_unit_test(test_keep_packed),
        cmocka_unit_test(test_fp32_few_rows),
        cmocka_unit_test(test_few_rows_group),
        cmocka_unit_test(test_fp32_few_rows_shadow),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
