/* sgemm.c: see sgemm.h. */
#include "sgemm.h"
#include "common.h"
#include "gemm.h"
#include "safetensors.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

float *sgemm_bufs_get(void *arg, int which, size_t floats) {
    sgemm_bufs *b = arg;
    const int t = omp_get_thread_num();
    if (t >= SGEMM_BUF_THREADS) die("sgemm: more than %d threads", SGEMM_BUF_THREADS);
    if (floats > b->cap[t][which]) {
        free(b->buf[t][which]);
        b->buf[t][which] = xaligned(sizeof(float) * floats);
        b->cap[t][which] = floats;
    }
    return b->buf[t][which];
}
void sgemm_bufs_free(sgemm_bufs *b) {
    for (int t = 0; t < SGEMM_BUF_THREADS; t++) {
        free(b->buf[t][0]);
        free(b->buf[t][1]);
        b->buf[t][0] = b->buf[t][1] = NULL;
        b->cap[t][0] = b->cap[t][1] = 0;
    }
}
#if !(defined(__x86_64__) && defined(__GNUC__))
int sgemm_own_cpu(void) { return 0; }
const char *sgemm_own_tile(void) { return "none"; }
void sgemm_own(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc, sgemm_scratch_fn scratch,
               void *arg) {
    die("internal: sgemm_own needs x86-64 (AVX2 and FMA)");
}
size_t sgemm_packed_floats(int64_t N, int64_t K) { return (size_t)(N * K); }
void sgemm_pack_bt(const float *B, int64_t ldb, int64_t N, int64_t K, float *dst) {
    die("internal: sgemm_pack_bt needs x86-64 (AVX2 and FMA)");
}
void sgemm_own_packed(int ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *packed, float beta, float *C, int64_t ldc, sgemm_scratch_fn scratch, void *arg) {
    die("internal: sgemm_own_packed needs x86-64 (AVX2 and FMA)");
}
void sgemm_own_multi(int n, const gemm_prod *p, sgemm_scratch_fn scratch, void *arg) {
    die("internal: sgemm_own_multi needs x86-64 (AVX2 and FMA)");
}
void sgemm_pack_bt16(const uint16_t *B, int64_t ldb, int64_t N, int64_t K, float *dst) {
    die("internal: sgemm_pack_bt16 needs x86-64 (AVX2 and FMA)");
}
void sgemm_own_b16(int ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                   const uint16_t *B16, int64_t ldb, float beta, float *C, int64_t ldc, sgemm_scratch_fn scratch,
                   void *arg) {
    die("internal: sgemm_own_b16 needs x86-64 (AVX2 and FMA)");
}
#else
#include "transpose8.h"
#include <immintrin.h>

#define MR 6        /* rows of the register tile */
#define NR 16       /* columns: two 8-lane vectors */
#define KC SGEMM_KC /* the only block size the bytes depend on */
#define SGEMM_PACK_FLOATS (1 << 20)   /* B packed at a time: 4 MB, whole columns */
#define SGEMM_L2_FLOATS (1 << 16)   /* 256 KB: half a Zen 3 core's L2 */
#define MC 96       /* rows of A per block where A is stored transposed (packed: 96 KB at KC) */
/* rows of A per block where A is read along its rows (packed, at most 192
 * KB at KC): each row block reads all of B's panels, so fewer, taller
 * blocks read B fewer times (Qwen3-0.6B's layer products over 600-2,400
 * rows ran 3-5% faster than at 96, 2 threads, on a Xeon with AVX-512; the
 * weight gradients, A transposed, gained nothing) */
#define MC_ROWS 192

int sgemm_own_cpu(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* One k of a 6-row tile, for both vector widths: row r's value of A at k
 * (a_r[o]) times B's two vectors b0 and b1 into its accumulators c_r0
 * and c_r1 (SET1 and FMA: the width's broadcast and fused multiply-add) */
#define TILE_ROW(SET1, FMA, ar, lo, hi)  \
    do {                                 \
        const __typeof__(lo) x_ = SET1(ar[o]); \
        lo = FMA(x_, b0, lo);            \
        hi = FMA(x_, b1, hi);            \
    } while (0)
#define TILE_ROWS(SET1, FMA)                    \
    do {                                        \
        TILE_ROW(SET1, FMA, a0, c00, c01);      \
        TILE_ROW(SET1, FMA, a1, c10, c11);      \
        TILE_ROW(SET1, FMA, a2, c20, c21);      \
        TILE_ROW(SET1, FMA, a3, c30, c31);      \
        TILE_ROW(SET1, FMA, a4, c40, c41);      \
        TILE_ROW(SET1, FMA, a5, c50, c51);      \
    } while (0)

/* A tile at C's edge: its sums t (rows ldt floats apart), mr x nr of them
 * into C one by one, with the rounding of the whole tile's vector store
 * (one fused alpha s + beta C, or alpha s + C after the first K block) */
static inline void store_edge(const float *t, int ldt, float *C, int64_t ldc, float alpha, float beta, int first,
                              int mr, int nr) {
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            float *c = C + r * ldc + j;
            const float x = t[r * ldt + j];
            if (!first) *c = fmaf(alpha, x, *c);
            else if (beta == 0.0f) *c = alpha * x;
            else *c = fmaf(alpha, x, beta * *c);
        }
}

/* One 6 x 16 tile of C from 6 rows of op(A), element (r, k) at a[r][k *
 * ks] (A's own rows with ks = 1, or a packed panel: a[r] = ap + r, ks =
 * 6), and a packed panel of B (kc x 16, k major). `first`: the first K
 * block, where beta applies. A tile at C's edge (mr < 6 or nr < 16) is
 * summed the same way and stored element by element with the same fused
 * rounding (fmaf); its rows past mr repeat a valid row, unstored. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
tile_6x16(int64_t kc, const float *const a[MR], int64_t ks, const float *bp, float *C, int64_t ldc, float alpha,
          float beta, int first, int mr, int nr) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    /* unrolled: fewer loop instructions between the FMAs (the training
     * products 5-6% faster in place, alternating per call on Zen 3; the
     * same FMAs in the same order) */
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++, bp += NR) {
        const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
        const int64_t o = k * ks;
        TILE_ROWS(_mm256_set1_ps, _mm256_fmadd_ps);
    }
    const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (mr == MR && nr == NR) {
        const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
        for (int r = 0; r < MR; r++)
            for (int h = 0; h < 2; h++) {
                float *c = C + r * ldc + 8 * h;
                __m256 v;
                if (!first) v = _mm256_fmadd_ps(va, acc[r][h], _mm256_loadu_ps(c));
                else if (beta == 0.0f) v = _mm256_mul_ps(va, acc[r][h]);
                else v = _mm256_fmadd_ps(va, acc[r][h], _mm256_mul_ps(vb, _mm256_loadu_ps(c)));
                _mm256_storeu_ps(c, v);
            }
        return;
    }
    float t[MR][NR] __attribute__((aligned(32)));
    for (int r = 0; r < MR; r++) {
        _mm256_store_ps(t[r], acc[r][0]);
        _mm256_store_ps(t[r] + 8, acc[r][1]);
    }
    store_edge(&t[0][0], NR, C, ldc, alpha, beta, first, mr, nr);
}
/* the two instances: A read in place along its rows, or packed */
__attribute__((target("avx2,fma"))) static void tile_rows(int64_t kc, const float *const a[MR], const float *bp,
                                                          float *C, int64_t ldc, float alpha, float beta, int first,
                                                          int mr, int nr) {
    tile_6x16(kc, a, 1, bp, C, ldc, alpha, beta, first, mr, nr);
}
__attribute__((target("avx2,fma"))) static void tile_packed(int64_t kc, const float *const a[MR], const float *bp,
                                                            float *C, int64_t ldc, float alpha, float beta,
                                                            int first, int mr, int nr) {
    tile_6x16(kc, a, MR, bp, C, ldc, alpha, beta, first, mr, nr);
}

/* Where the CPU has AVX-512 (own_wide_tiles): two neighbouring panels
 * at once, a 6 x 32 tile of 12 zmm accumulators, each 16-lane vector
 * holding one panel's row k. Each element's sum is the same FMA chain in
 * the same k order as tile_6x16's, and the same alpha/beta steps, so the
 * bytes are those of two tile_6x16 calls; it only issues half as many
 * instructions. nr counts both panels' columns (17..32). nf lines of 64
 * bytes from f on (a slice of the next panel) are fetched into L2 spread
 * over the K loop, one or two every 16 k: issued together before it they
 * queued behind each other and stalled the tile (a 1,189 x 3,072 x 1,024
 * product ran at 149 GFLOP/s against 151 spread, one thread, on a Xeon
 * with AVX-512). */
__attribute__((target("avx512f"), always_inline)) static inline void
tile_6x32(int64_t kc, const float *const a[MR], int64_t ks, const float *bp0, const float *bp1, float *C,
          int64_t ldc, float alpha, float beta, int first, int mr, int nr, const char *f, int64_t nf) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    int64_t k = 0;
    while (k + 16 <= kc) {
        for (int l = 0; l < 2 && nf > 0; l++, f += 64, nf--) __builtin_prefetch(f, 0, 2);
#pragma GCC unroll 4
        for (const int64_t end = k + 16; k < end; k++) {
            const __m512 b0 = _mm512_load_ps(bp0 + k * NR), b1 = _mm512_load_ps(bp1 + k * NR);
            const int64_t o = k * ks;
            TILE_ROWS(_mm512_set1_ps, _mm512_fmadd_ps);
        }
    }
    for (; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(bp0 + k * NR), b1 = _mm512_load_ps(bp1 + k * NR);
        const int64_t o = k * ks;
        TILE_ROWS(_mm512_set1_ps, _mm512_fmadd_ps);
    }
    for (; nf > 0; f += 64, nf--) __builtin_prefetch(f, 0, 2);
    const __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (mr == MR && nr == 2 * NR) {
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
        for (int r = 0; r < MR; r++)
            for (int h = 0; h < 2; h++) {
                float *c = C + r * ldc + NR * h;
                __m512 v;
                if (!first) v = _mm512_fmadd_ps(va, acc[r][h], _mm512_loadu_ps(c));
                else if (beta == 0.0f) v = _mm512_mul_ps(va, acc[r][h]);
                else v = _mm512_fmadd_ps(va, acc[r][h], _mm512_mul_ps(vb, _mm512_loadu_ps(c)));
                _mm512_storeu_ps(c, v);
            }
        return;
    }
    float t[MR][2 * NR] __attribute__((aligned(64)));
    for (int r = 0; r < MR; r++) {
        _mm512_store_ps(t[r], acc[r][0]);
        _mm512_store_ps(t[r] + NR, acc[r][1]);
    }
    store_edge(&t[0][0], 2 * NR, C, ldc, alpha, beta, first, mr, nr);
}
__attribute__((target("avx512f"))) static void tile2_rows(int64_t kc, const float *const a[MR], const float *bp0,
                                                          const float *bp1, float *C, int64_t ldc, float alpha,
                                                          float beta, int first, int mr, int nr, const char *f,
                                                          int64_t nf) {
    tile_6x32(kc, a, 1, bp0, bp1, C, ldc, alpha, beta, first, mr, nr, f, nf);
}
__attribute__((target("avx512f"))) static void tile2_packed(int64_t kc, const float *const a[MR], const float *bp0,
                                                            const float *bp1, float *C, int64_t ldc, float alpha,
                                                            float beta, int first, int mr, int nr, const char *f,
                                                            int64_t nf) {
    tile_6x32(kc, a, MR, bp0, bp1, C, ldc, alpha, beta, first, mr, nr, f, nf);
}
/* Whether the tiles may take two panels at once: the CPU has AVX-512F */
static int own_wide_tiles(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

const char *sgemm_own_tile(void) { return !sgemm_own_cpu() ? "none" : own_wide_tiles() ? "avx512-6x32" : "avx2-6x16"; }

/* Rounding to bf16 as a product's operands are packed (gemm_prod's
 * round16): to nearest even, a NaN kept quiet, the values
 * st_f32_to_bf16 gives, widened back (exact); 8, 4 or 1 at a time. */
#define R16_NAN_EXP 0x7f800000
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 round8(__m256 v) {
    const __m256i u = _mm256_castps_si256(v), hi = _mm256_set1_epi32((int)0xffff0000u);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), hi);
    const __m256i nan =
        _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(R16_NAN_EXP));
    const __m256i q = _mm256_or_si256(_mm256_and_si256(u, hi), _mm256_set1_epi32(0x00400000));
    return _mm256_castsi256_ps(_mm256_blendv_epi8(r, q, nan));
}
/* (4 lanes through the 8-lane rounding: the upper ones are discarded) */
__attribute__((target("avx2,fma"), always_inline)) static inline __m128 round4(__m128 v) {
    return _mm256_castps256_ps128(round8(_mm256_castps128_ps256(v)));
}
static inline float round1(float x) {
    const uint32_t u = (uint32_t)st_f32_to_bf16(x) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
#define R8(rnd, v) ((rnd) ? round8(v) : (v))
#define R4(rnd, v) ((rnd) ? round4(v) : (v))
#define R1(rnd, x) ((rnd) ? round1(x) : (x))

/* op(B) = B stored [K, N]: its rows k0..k1, columns j0..j0+nc, into the
 * panels of 16 columns (panel p's row k at bp + (p K + k) 16), zeros past
 * nc. Row by row, so that B is read in order. */
__attribute__((target("avx2,fma"))) static void pack_b_rows(const float *B, int64_t ldb, int64_t K, int64_t k0,
                                                            int64_t k1, int64_t j0, int64_t nc, float *bp, int rnd) {
    const int64_t full = nc / NR, np = (nc + NR - 1) / NR;
    for (int64_t k = k0; k < k1; k++) {
        const float *s = B + k * ldb + j0;
        for (int64_t p = 0; p < full; p++) {
            float *d = bp + (p * K + k) * NR;
            _mm256_store_ps(d, R8(rnd, _mm256_loadu_ps(s + p * NR)));
            _mm256_store_ps(d + 8, R8(rnd, _mm256_loadu_ps(s + p * NR + 8)));
        }
        if (full < np) {
            float *d = bp + (full * K + k) * NR;
            for (int64_t j = 0; j < NR; j++) d[j] = full * NR + j < nc ? R1(rnd, s[full * NR + j]) : 0.0f;
        }
    }
}

/* bf16 to fp32, exactly: a bf16 is the top half of an fp32 */
static inline float bf16f(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
/* 8 floats of B at o: stored (Bf; rounded to bf16 with rnd), or widened
 * from bf16 (Bh) */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 load8(const float *Bf, const uint16_t *Bh,
                                                                             int64_t o, int rnd) {
    if (!Bh) return R8(rnd, _mm256_loadu_ps(Bf + o));
    const __m128i w = _mm_loadu_si128((const __m128i *)(Bh + o));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(w), 16));
}

/* op(B) = B^T, B stored [N, K]: columns j0..j0+n (n <= 16) of op(B), its
 * rows k0..k0+kc, as one panel (16 floats per k, zeros past n); whole
 * panels through 8 x 8 transposes. Packing is a copy, but at a float or
 * two a cycle it cost a third of a product's time. B as floats (Bf) or as
 * its values in bf16 (Bh: the same floats in the same places, widening
 * being exact, from half the bytes). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
pack_cols(const float *Bf, const uint16_t *Bh, int64_t ldb, int64_t k0, int64_t kc, int64_t j0, int64_t n,
          float *dst, int rnd) {
    int64_t k = 0;
    if (n == NR)
        for (; k + 8 <= kc; k += 8)
            for (int h = 0; h < 2; h++) {
                __m256 r[8];
                for (int j = 0; j < 8; j++) r[j] = load8(Bf, Bh, (j0 + 8 * h + j) * ldb + k0 + k, rnd);
                transpose8(r);
                for (int i = 0; i < 8; i++) _mm256_store_ps(dst + (k + i) * NR + 8 * h, r[i]);
            }
    for (int64_t j = 0; j < NR; j++) {
        const int64_t o = (j0 + j) * ldb + k0;
        for (int64_t kk = k; kk < kc; kk++)
            dst[kk * NR + j] = j >= n ? 0.0f : Bh ? bf16f(Bh[o + kk]) : R1(rnd, Bf[o + kk]);
    }
}
__attribute__((target("avx2,fma"))) static void pack_b_cols(const float *B, int64_t ldb, int64_t k0, int64_t kc,
                                                            int64_t j0, int64_t n, float *dst, int rnd) {
    pack_cols(B, NULL, ldb, k0, kc, j0, n, dst, rnd);
}
__attribute__((target("avx2,fma"))) static void pack_b_cols16(const uint16_t *B, int64_t ldb, int64_t k0, int64_t kc,
                                                              int64_t j0, int64_t n, float *dst) {
    pack_cols(NULL, B, ldb, k0, kc, j0, n, dst, 0);
}

/* op(B) = B^T: columns j0..j0+n (n <= 16) of op(B) whole along K, as one
 * panel per K block (pack_b_cols), at dst; from B (rounded to bf16 with
 * rnd), or from its bf16 values B16 */
__attribute__((target("avx2,fma"))) static void pack_panel(const float *B, const uint16_t *B16, int64_t ldb,
                                                           int64_t K, int64_t j0, int64_t n, float *dst, int rnd) {
    for (int64_t pc = 0; pc < K; pc += KC) {
        if (B16) pack_b_cols16(B16, ldb, pc, min64(K - pc, KC), j0, n, dst + pc * NR);
        else pack_b_cols(B, ldb, pc, min64(K - pc, KC), j0, n, dst + pc * NR, rnd);
    }
}

/* op(A) = A^T, A stored [K, M]: rows i0..i0+m of op(A), columns k0..k0+kc,
 * as panels of 6 rows (panel q's column k at ap + (q kc + k) 6), zeros
 * past m; A read in order, row by row. (Untransposed, A's rows are read in
 * place instead: packing them is a scatter of single floats.) */
__attribute__((target("avx2,fma"))) static void pack_a_cols(const float *A, int64_t lda, int64_t i0, int64_t m,
                                                            int64_t k0, int64_t kc, float *ap, int rnd) {
    const int64_t full = m / MR, mp = (m + MR - 1) / MR;
    for (int64_t k = 0; k < kc; k++) {
        const float *s = A + (k0 + k) * lda + i0;
        /* rows 1 KB or more apart, four or fewer to a page: the hardware
         * prefetchers lose them, so fetch the rows 8 ahead (a weight
         * gradient of the nano model's MLP, 384 x 128 over the batch's
         * rows, ran 10-11% faster in place) */
        if (lda >= 256 && k + 8 < kc)
            for (int64_t x = 0; x < m; x += 16) __builtin_prefetch(s + 8 * lda + x, 0, 3);
        for (int64_t q = 0; q < full; q++) {
            float *d = ap + (q * kc + k) * MR;
            _mm_storeu_ps(d, R4(rnd, _mm_loadu_ps(s + q * MR)));
            _mm_storel_pi((__m64 *)(d + 4), R4(rnd, _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)(s + q * MR + 4))));
        }
        if (full < mp) {
            float *d = ap + (full * kc + k) * MR;
            for (int64_t r = 0; r < MR; r++) d[r] = full * MR + r < m ? R1(rnd, s[full * MR + r]) : 0.0f;
        }
    }
}

/* Rows i0..i0+m of a matrix stored [rows, K] (Af as floats, rounded to
 * bf16 with rnd, or Ah as bf16, widened), columns k0..k0+kc, as dense rows
 * of kc floats (row r at ap + r kc), which the tiles read as they read A's
 * own rows (tile_rows_at). In place, a real model's rows lie 4 KB or more
 * apart and a tile's 6 share L1 sets, evicting the panel of B; rows of kc
 * <= KC floats do not. Each row's next K block is fetched into L2 as the
 * row is copied, to arrive while the tiles run: the weights a prefill
 * packs this way come from memory. (Packed as panels of 6 rows, k major,
 * through 8 x 8 transposes, the copy was bound by the shuffles and took
 * about 15% of the prefill products' time: prefill-shaped products, 190
 * rows, ran 3-7% slower than this.) */
__attribute__((target("avx2,fma"))) static void pack_rows(const float *Af, const uint16_t *Ah, int64_t ld, int64_t i0,
                                                          int64_t m, int64_t k0, int64_t kc, int64_t K, float *ap,
                                                          int rnd) {
    const int64_t next = min64(K - k0 - kc, kc);
    for (int64_t r = 0; r < m; r++) {
        const int64_t o = (i0 + r) * ld + k0;
        float *d = ap + r * kc;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) _mm256_storeu_ps(d + k, load8(Af, Ah, o + k, rnd));
        for (; k < kc; k++) d[k] = Ah ? bf16f(Ah[o + k]) : R1(rnd, Af[o + k]);
        if (Ah)
            for (int64_t e = 0; e < next; e += 32) __builtin_prefetch(Ah + o + kc + e, 0, 2);
        else
            for (int64_t e = 0; e < next; e += 16) __builtin_prefetch(Af + o + kc + e, 0, 2);
    }
}

/* One tile of C at c (mr x nr) over the K block pc..pc+kc, from the
 * packed panel b (and b1, the next, for a 6 x 32 tile), op(A)'s rows at
 * a[r] (`panel`: k major, 6 floats apart, else along a row); nf lines
 * from f fetched into L2 on the way (the 6 x 32 tile spreads them over
 * its K loop; before a 6 x 16 tile, as measured on Zen 3, they go at
 * once). */
__attribute__((target("avx2,fma"))) static inline void tile_go(int panel, const float *const a[MR], int mr,
                                                               int64_t pc, int64_t kc, const float *b,
                                                               const float *b1, float *c, int64_t ldc, float alpha,
                                                               float beta, int nr, const char *f, int64_t nf) {
    if (!b1)
        for (int64_t l = 0; l < nf; l++) __builtin_prefetch(f + 64 * l, 0, 2);
    /* C's rows are touched only after the K loop, and missed there:
     * fetched now, they arrive during it (nano training steps a median 6%
     * faster on Zen 3) */
    for (int r = 0; r < mr; r++) {
        __builtin_prefetch(c + r * ldc, 1, 3);
        __builtin_prefetch(c + r * ldc + nr - 1, 1, 3);
    }
    if (panel) {
        if (b1) tile2_packed(kc, a, b, b1, c, ldc, alpha, beta, pc == 0, mr, nr, f, nf);
        else tile_packed(kc, a, b, c, ldc, alpha, beta, pc == 0, mr, nr);
    } else {
        if (b1) tile2_rows(kc, a, b, b1, c, ldc, alpha, beta, pc == 0, mr, nr, f, nf);
        else tile_rows(kc, a, b, c, ldc, alpha, beta, pc == 0, mr, nr);
    }
}
/* op(A)'s rows from ap (`ta`: a packed panel of A^T) or from A's rows
 * i.. as stored; rows past mr repeat the last (summed, not stored) */
__attribute__((target("avx2,fma"))) static inline void tile_at(int ta, const float *A, int64_t lda, const float *ap,
                                                               int64_t i, int mr, int64_t pc, int64_t kc,
                                                               const float *b, const float *b1, float *c,
                                                               int64_t ldc, float alpha, float beta, int nr,
                                                               const char *f, int64_t nf) {
    const float *a[MR];
    for (int r = 0; r < MR; r++) a[r] = ta ? ap + r : A + (i + (r < mr ? r : mr - 1)) * lda + pc;
    tile_go(ta, a, mr, pc, kc, b, b1, c, ldc, alpha, beta, nr, f, nf);
}
/* from rows that pack_rows packed, the tile's first at row i of ap */
__attribute__((target("avx2,fma"))) static inline void tile_rows_at(const float *ap, int64_t i, int mr, int64_t pc,
                                                                    int64_t kc, const float *b, const float *b1,
                                                                    float *c, int64_t ldc, float alpha, float beta,
                                                                    int nr, const char *f, int64_t nf) {
    const float *a[MR];
    for (int r = 0; r < MR; r++) a[r] = ap + (i + (r < mr ? r : mr - 1)) * kc;
    tile_go(0, a, mr, pc, kc, b, b1, c, ldc, alpha, beta, nr, f, nf);
}

/* A few rows of A as stored (decoding's products): the threads share out
 * the panels of 16 columns, and each packs its own panel before using it,
 * so no barrier waits for a shared packing of B, which at a few rows costs
 * as much as the product. The sums are sgemm_own's, in its order. */
static void few_rows(int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, const uint16_t *B16, int64_t ldb, const float *packed, float beta, float *C,
                     int64_t ldc, sgemm_scratch_fn scratch, void *arg, int nt, int rnd) {
    const int64_t np = (N + NR - 1) / NR, mp = (M + MR - 1) / MR;
#pragma omp parallel num_threads(nt)
    {
        float *bp = packed ? NULL : scratch(arg, 1, (size_t)(K * NR));
#pragma omp for schedule(static)
        for (int64_t p = 0; p < np; p++) {
            const int64_t j0 = p * NR, nr = min64(N - j0, NR);
            if (packed)
                bp = (float *)packed + p * K * NR;
            else if (tb)
                pack_panel(B, B16, ldb, K, j0, nr, bp, rnd);
            else
                pack_b_rows(B, ldb, K, 0, K, j0, nr, bp, rnd);
            for (int64_t pc = 0; pc < K; pc += KC)
                for (int64_t q = 0; q < mp; q++)
                    tile_at(0, A, lda, NULL, q * MR, (int)min64(M - q * MR, MR), pc, min64(K - pc, KC), bp + pc * NR,
                            NULL, C + q * MR * ldc + j0, ldc, alpha, beta, (int)nr, NULL, 0);
        }
    }
}

size_t sgemm_packed_floats(int64_t N, int64_t K) { return (size_t)((N + NR - 1) / NR * NR * K); }

/* every panel of B^T (or of its bf16 values B16) */
static void pack_all(const float *B, const uint16_t *B16, int64_t ldb, int64_t N, int64_t K, float *dst) {
    for (int64_t p = 0; p < (N + NR - 1) / NR; p++)
        pack_panel(B, B16, ldb, K, p * NR, min64(N - p * NR, NR), dst + p * K * NR, 0);
}
void sgemm_pack_bt(const float *B, int64_t ldb, int64_t N, int64_t K, float *dst) { pack_all(B, NULL, ldb, N, K, dst); }
void sgemm_pack_bt16(const uint16_t *B, int64_t ldb, int64_t N, int64_t K, float *dst) {
    pack_all(NULL, B, ldb, N, K, dst);
}

/* Slice q (of `per` rows) of the kc rows of the panel at next, for L2: a
 * 64-byte line (one k) a row, its first at *f, *nf of them */
static inline void fetch_slice(const float *next, int64_t q, int64_t per, int64_t kc, const char **f, int64_t *nf) {
    const int64_t k0 = min64(q * per, kc);
    *f = (const char *)(next + k0 * NR);
    *nf = min64((q + 1) * per, kc) - k0;
}

/* A's rows (stored untransposed) are packed (pack_rows) where they lie 4
 * KB or more apart, a real-size model's activations (hidden 1024 and up),
 * and only for items of PACK_ROWS_PANELS panels or more, which repay the
 * copy. On Zen 3, 2 threads, Qwen3-0.6B's layer products over 1,189 rows
 * ran 0-7% faster (medians, alternating in one process). The training
 * presets' products (rows of 128-768 floats) moved within the noise
 * either way and are left as they were. */
#define PACK_ROWS_PANELS 16
static int own_packs_rows(const gemm_prod *p) { return !p->ta && (p->lda >= 1024 || p->round16); }

/* One item of own_run's block of columns jc..jc+nc: row block ib (rows of
 * at most mc) by the column panels p0..p1, over every K block in order. */
__attribute__((target("avx2,fma"))) static void own_item(int ta, int64_t ib, int64_t p0, int64_t p1, int64_t mc,
                                                         int64_t M, int64_t K, int64_t jc, int64_t nc, float alpha,
                                                         const float *A, int64_t lda, float *ap, const float *bp,
                                                         float beta, float *C, int64_t ldc, int rnd) {
    const int64_t i0 = ib * mc, m = min64(M - i0, mc), mp = (m + MR - 1) / MR;
    const int fetch = K > KC && (p1 - p0) * K * NR > SGEMM_L2_FLOATS, wide = own_wide_tiles();
    /* A's rows packed too where the caller gave room (own_packs_rows) and
     * enough panels of B read them to repay the copy, or where they are
     * rounded to bf16 (rnd) */
    const int packed = ta || (ap && (rnd || p1 - p0 >= PACK_ROWS_PANELS));
    for (int64_t pc = 0; pc < K; pc += KC) {   /* C's K blocks in order */
        const int64_t kc = min64(K - pc, KC), per = (kc + mp - 1) / mp;
        if (ta) pack_a_cols(A, lda, i0, m, pc, kc, ap, rnd);
        else if (packed) pack_rows(A, NULL, lda, i0, m, pc, kc, K, ap, rnd);
        for (int64_t p = p0, w; p < p1; p += w) {
            w = wide && p + 1 < p1 ? 2 : 1;   /* panels in this tile */
            /* the next panel's part of this K block (or the first panel's
             * of the next), a slice of it per tile, into L2: past one K
             * block a panel's parts lie K * 16 floats apart, a jump the
             * hardware prefetchers do not follow. Only where the panels
             * outgrow L2: on Zen 3, alternating in one process, scoring's
             * layer products at K = 1024 ran 2-13% faster and weight
             * gradients over 6,144 rows 0-10%; panels held in L2 gained
             * nothing. */
            const float *next = p + w < p1      ? bp + ((p + w) * K + pc) * NR
                                : pc + KC < K ? bp + (p0 * K + pc + KC) * NR
                                              : NULL;
            const float *b = bp + (p * K + pc) * NR, *b1 = w == 2 ? bp + ((p + 1) * K + pc) * NR : NULL;
            for (int64_t q = 0; q < mp; q++) {
                const char *f = NULL;
                int64_t nf = 0;
                if (fetch && next) fetch_slice(next, q, per, kc, &f, &nf);
                const int mr = (int)min64(m - q * MR, MR), nr = (int)min64(nc - p * NR, w * NR);
                float *c = C + (i0 + q * MR) * ldc + jc + p * NR;
                if (packed && !ta) tile_rows_at(ap, q * MR, mr, pc, kc, b, b1, c, ldc, alpha, beta, nr, f, nf);
                else tile_at(ta, A, lda, ta ? ap + q * MR * kc : NULL, i0 + q * MR, mr, pc, kc, b, b1, c, ldc, alpha,
                             beta, nr, f, nf);
            }
        }
    }
}

/* the team: small products stay on the calling thread (as OpenBLAS
 * keeps products of up to 4 x 65,536 multiply-adds on one) */
static int own_team(int64_t M, int64_t N, int64_t K) {
    return omp_in_parallel() || (double)M * N * K <= (double)GEMM_FP32_ONE_CALL_MAX ? 1 : omp_get_max_threads();
}

/* Panels per step of a block of columns or an item's chunk of them: two
 * where the tiles take two at once, so that no tile but C's last is a
 * lone panel on the narrower tile (at K = 3,072, blocks of 21 panels held
 * Qwen3-0.6B's down projection over 1,189 rows at 130-136 GFLOP/s against
 * 142-147, one thread). */
static int64_t panel_step(void) { return own_wide_tiles() ? 2 : 1; }

/* How a product is shared out: rows in nbm blocks of at most mc (MC or,
 * for A along its rows, MC_ROWS; the count a multiple of the team's size
 * so that every thread gets as many);
 * B packed whole along K (one barrier per block of columns, not one per K
 * block: with threads that sleep, barriers cost 10-50 us each), in blocks
 * of ncol columns (at most SGEMM_PACK_FLOATS packed, whole steps of
 * panels). */
typedef struct { int64_t mc, nbm, ncol; } own_split;
static own_split own_split_of(int nt, int ta, int64_t M, int64_t K) {
    own_split o;
    const int64_t rows = ta ? MC : MC_ROWS;
    int64_t nbm = (M + rows - 1) / rows;
    nbm = (nbm + nt - 1) / nt * nt;
    o.mc = ((M + nbm - 1) / nbm + MR - 1) / MR * MR;
    o.nbm = (M + o.mc - 1) / o.mc;
    const int64_t step = panel_step() * NR;
    o.ncol = SGEMM_PACK_FLOATS / K / step * step;
    if (o.ncol < step) o.ncol = step;
    return o;
}

/* Columns jc..jc+nc of op(B) into the panels at bp, shared out over the
 * team in chunks as threads come (par_chunk: a thread that wakes late
 * packs less); no barrier (the caller's, before the panels are read). */
static void own_pack(const gemm_prod *p, int64_t jc, int64_t nc, float *bp) {
    const int64_t np = (nc + NR - 1) / NR, K = p->K;
    if (p->tb) {
#pragma omp for schedule(dynamic, par_chunk(np, omp_get_num_threads())) nowait
        for (int64_t q = 0; q < np; q++)
            pack_panel(p->B, p->B16, p->ldb, K, jc + q * NR, min64(nc - q * NR, NR), bp + q * K * NR, p->round16);
    } else {
#pragma omp for schedule(dynamic, par_chunk((K + 63) / 64, omp_get_num_threads())) nowait
        for (int64_t k0 = 0; k0 < K; k0 += 64)
            pack_b_rows(p->B, p->ldb, K, k0, min64(K, k0 + 64), jc, nc, bp, p->round16);
    }
}

/* Row blocks by column chunks: how the items of a block of np panels are
 * cut (too few row blocks to share: columns cut into chunks too). */
static void own_chunks(own_split o, int nt, int64_t np, int64_t *nbn, int64_t *chunk) {
    int64_t b = 1;
    if (nt > 1 && o.nbm < 2 * nt) b = min64(np, (2 * nt + o.nbm - 1) / o.nbm);
    const int64_t step = panel_step();
    *chunk = ((np + b - 1) / b + step - 1) / step * step;
    *nbn = (np + *chunk - 1) / *chunk;
}
/* item `item` of such a block: row block item / nbn by its chunk of panels
 * (the room for packing A only to a product that packs it: a group's
 * region gives all its products the room one of them needs) */
#define OWN_ITEM(p, o, item)                                                                                  \
    own_item((p)->ta, item / nbn, item % nbn * chunk, min64(np, item % nbn * chunk + chunk), (o).mc, (p)->M, \
             (p)->K, jc, nc, (p)->alpha, (p)->A, (p)->lda, (p)->ta || own_packs_rows(p) ? ap : NULL, bp,     \
             (p)->beta, (p)->C, (p)->ldc, (p)->round16)

/* The items of the block of columns jc..jc+nc (panels at bp), dynamic,
 * without the loop's barrier (the caller's par_barrier where the panels
 * are packed again, else the region's own: a barrier of sleeping threads
 * costs a wake-up, and skipping the loop's made the training products 1-2%
 * faster). */
static void own_items(const gemm_prod *p, own_split o, int nt, int64_t jc, int64_t nc, float *ap, const float *bp) {
    const int64_t np = (nc + NR - 1) / NR;
    int64_t nbn, chunk;
    own_chunks(o, nt, np, &nbn, &chunk);
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t item = 0; item < o.nbm * nbn; item++) OWN_ITEM(p, o, item);
}

/* Wide products: op(B) = B^T, few rows, and B past one block of packing (a
 * language model's head over a chunk of positions: 220 x 151,936 x 1024
 * for Qwen3-0.6B in wdl-score). Packing B, a copy of the whole weight
 * matrix for every chunk, held that product at 128-144 GFLOP/s on Zen 3
 * against 146-154 this way (2 threads). Instead C^T = B op(A)^T: A is
 * packed once as sgemm_pack_bt packs a B^T (M x K, small), and each item,
 * MC rows of B, packs its rows a K block at a time (pack_rows) and sums
 * its block of C^T in a buffer of the thread's, which then goes into C
 * transposed (and, for beta != 0, came from it first).
 * Every element gets the same fmaf chain per K block, the operands of each
 * multiply swapped (fmaf is exact either way), and the same alpha and beta
 * steps: the same bytes as the usual order. */
#define WIDE_M_MAX 512
static int own_wide(const gemm_prod *p) {
    return !p->ta && p->tb && !p->packed && p->M > SGEMM_FEW_ROWS && p->M <= WIDE_M_MAX &&
           p->N * p->K > SGEMM_PACK_FLOATS;
}
static void own_wide_run(const gemm_prod *p, sgemm_scratch_fn scratch, void *arg) {
    const int64_t M = p->M, N = p->N, K = p->K, np = (M + NR - 1) / NR, ldt = np * NR, nb = (N + MC - 1) / MC;
    const int nt = own_team(M, N, K), wide = own_wide_tiles();
    float *const ap = scratch(arg, 0, (size_t)(np * NR * K));   /* A's panels, as sgemm_pack_bt's */
    atomic_llong arrived = 0;
#pragma omp parallel num_threads(nt)
    {
        /* this item's C^T, [rows of B, M], then its rows of B packed */
        float *t = scratch(arg, 1, (size_t)(MC * ldt + MC * min64(K, KC))), *bq = t + MC * ldt;
#pragma omp for schedule(dynamic, par_chunk(np, omp_get_num_threads())) nowait
        for (int64_t q = 0; q < np; q++)
            pack_panel(p->A, NULL, p->lda, K, q * NR, min64(M - q * NR, NR), ap + q * K * NR, p->round16);
        par_barrier(&arrived, 1);
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t b = 0; b < nb; b++) {
            const int64_t j0 = b * MC, m = min64(N - j0, MC), mp = (m + MR - 1) / MR;
            if (p->beta != 0.0f) transpose_strided(t, ldt, p->C + j0, p->ldc, M, m);
            for (int64_t pc = 0; pc < K; pc += KC) {   /* C's K blocks in order */
                const int64_t kc = min64(K - pc, KC);
                /* B's rows as dense rows (widened from bf16: exact, the
                 * same floats), a K block at a time, just before they are
                 * read */
                pack_rows(p->B, p->B16, p->ldb, j0, m, pc, kc, K, bq, p->round16);
                for (int64_t q = 0, w; q < np; q += w) {
                    w = wide && q + 1 < np ? 2 : 1;   /* A's panels in this tile */
                    for (int64_t r = 0; r < mp; r++)
                        tile_rows_at(bq, r * MR, (int)min64(m - r * MR, MR), pc, kc, ap + (q * K + pc) * NR,
                                     w == 2 ? ap + ((q + 1) * K + pc) * NR : NULL, t + r * MR * ldt + q * NR, ldt,
                                     p->alpha, p->beta, (int)min64(M - q * NR, w * NR), NULL, 0);
                }
            }
            transpose_strided(p->C + j0, p->ldc, t, ldt, m, M);
        }
    }
}

/* sgemm_own, or with p->packed (op(B) = B^T packed whole by sgemm_pack_bt)
 * the same product without packing */
static void own_run(const gemm_prod *p, sgemm_scratch_fn scratch, void *arg) {
    const int64_t M = p->M, N = p->N, K = p->K;
    if (p->B16 && !p->tb) die("internal: bf16 values of B are for op(B) = B^T");
    if (p->round16 && p->packed) die("internal: B packed beforehand is not rounded to bf16");
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || p->alpha == 0.0f) {   /* C = beta C, as BLAS defines it */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                p->C[i * p->ldc + j] = p->beta == 0.0f ? 0.0f : p->beta * p->C[i * p->ldc + j];
        return;
    }
    const int nt = own_team(M, N, K);
    if (!p->ta && M <= SGEMM_FEW_ROWS && nt > 1) {
        const float *A = p->A;
        int64_t lda = p->lda;
        if (p->round16) {   /* the few rows read in place: rounded beforehand, on this thread */
            float *a = scratch(arg, 0, (size_t)(M * K));
            for (int64_t i = 0; i < M; i++)
                for (int64_t k = 0; k < K; k++) a[i * K + k] = round1(A[i * lda + k]);
            A = a;
            lda = K;
        }
        few_rows(p->tb, M, N, K, p->alpha, A, lda, p->B, p->B16, p->ldb, p->packed, p->beta, p->C, p->ldc, scratch,
                 arg, nt, p->round16);
        return;
    }
    if (own_wide(p)) {
        own_wide_run(p, scratch, arg);
        return;
    }
    const own_split o = own_split_of(nt, p->ta, M, K);
    const int64_t ncmax = min64(N, o.ncol), kcmax = min64(K, KC);
    float *const packing = p->packed ? NULL : scratch(arg, 0, (size_t)(K * ((ncmax + NR - 1) / NR * NR)));
    atomic_llong arrived = 0;
#pragma omp parallel num_threads(nt)
    {
        float *ap = p->ta || own_packs_rows(p) ? scratch(arg, 1, (size_t)(kcmax * o.mc)) : NULL;
        long long nb = 0;   /* this thread's par_barrier calls */
        for (int64_t jc = 0; jc < N; jc += o.ncol) {
            const int64_t nc = min64(N - jc, o.ncol);
            /* this block's panels: packed now, or where the whole packing has them */
            float *const bp = p->packed ? (float *)p->packed + jc * K : packing;
            if (!p->packed) {
                own_pack(p, jc, nc, bp);
                par_barrier(&arrived, ++nb);
            }
            own_items(p, o, nt, jc, nc, ap, bp);
            /* the next block is packed over these panels once every item
             * has read them; the last block ends at the region's barrier */
            if (!p->packed && jc + o.ncol < N) par_barrier(&arrived, ++nb);
        }
    }
}

/* Products that read the same B, by the stored operand's identity */
static int same_b(const gemm_prod *a, const gemm_prod *b) {
    return a->B == b->B && a->tb == b->tb && a->ldb == b->ldb && a->N == b->N && a->K == b->K;
}

void sgemm_own_multi(int n, const gemm_prod *ps, sgemm_scratch_fn scratch, void *arg) {
    int one = n >= 1 && n <= GEMM_N_MAX, head[GEMM_N_MAX];
    for (int i = 0; i < n && one; i++) {
        const gemm_prod *p = &ps[i];
        one = p->M > SGEMM_FEW_ROWS && p->N > 0 && p->K > 0 && p->alpha != 0.0f && own_team(p->M, p->N, p->K) > 1 &&
              p->N <= own_split_of(1, p->ta, p->M, p->K).ncol;
        /* products into the same C (its shape and A's orientation too,
         * which set how its rows are cut) chain behind the first */
        head[i] = i;
        for (int j = 0; j < i && head[i] == i; j++)
            if (ps[j].C == p->C) {
                head[i] = head[j];
                one = one && ps[j].M == p->M && ps[j].N == p->N && ps[j].ldc == p->ldc && ps[j].ta == p->ta;
            }
    }
    if (!one) {
        for (int i = 0; i < n; i++) own_run(&ps[i], scratch, arg);
        return;
    }
    const int nt = omp_get_max_threads();
    own_split o[GEMM_N_MAX];
    const float *bps[GEMM_N_MAX];
    /* the product whose packing this one reads: itself, an earlier one
     * with the same B, or none (-1: given packed) */
    int from[GEMM_N_MAX];
    size_t total = 0, off[GEMM_N_MAX], apf = 0;
    for (int i = 0; i < n; i++) {
        const gemm_prod *p = &ps[i];
        o[i] = own_split_of(nt, p->ta, p->M, p->K);
        const size_t a = p->ta || own_packs_rows(p) ? (size_t)(min64(p->K, KC) * o[i].mc) : 0;
        if (a > apf) apf = a;
        from[i] = p->packed ? -1 : i;
        for (int j = 0; j < i && from[i] == i; j++)
            if (from[j] == j && same_b(&ps[j], p)) from[i] = j;
        off[i] = total;
        if (from[i] == i) total += (size_t)(p->K * ((p->N + NR - 1) / NR * NR));
    }
    float *const packing = total ? scratch(arg, 0, total) : NULL;
    for (int i = 0; i < n; i++) bps[i] = from[i] < 0 ? ps[i].packed : packing + off[from[i]];
    atomic_llong arrived = 0;
#pragma omp parallel num_threads(nt)
    {
        float *ap = apf ? scratch(arg, 1, apf) : NULL;
        for (int i = 0; i < n; i++)
            if (from[i] == i) own_pack(&ps[i], 0, ps[i].N, (float *)bps[i]);
        par_barrier(&arrived, 1);
        /* each chain's items: item by item, its products in order (a C's
         * rows and columns are cut alike for them all: the same M and N) */
        for (int h = 0; h < n; h++) {
            if (head[h] != h) continue;
            const int64_t jc = 0, nc = ps[h].N, np = (nc + NR - 1) / NR;
            int64_t nbn, chunk;
            own_chunks(o[h], nt, np, &nbn, &chunk);
#pragma omp for schedule(dynamic, 1) nowait
            for (int64_t item = 0; item < o[h].nbm * nbn; item++)
                for (int i = h; i < n; i++)
                    if (head[i] == h) {
                        const float *bp = bps[i];
                        OWN_ITEM(&ps[i], o[i], item);
                    }
        }
    }
}
#undef OWN_ITEM

void sgemm_own(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc, sgemm_scratch_fn scratch,
               void *arg) {
    const gemm_prod p = {ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc};
    own_run(&p, scratch, arg);
}
void sgemm_own_packed(int ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *packed, float beta, float *C, int64_t ldc, sgemm_scratch_fn scratch, void *arg) {
    const gemm_prod p = {ta, 1, M, N, K, alpha, A, lda, NULL, K, packed, beta, C, ldc};
    own_run(&p, scratch, arg);
}
void sgemm_own_b16(int ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                   const uint16_t *B16, int64_t ldb, float beta, float *C, int64_t ldc, sgemm_scratch_fn scratch,
                   void *arg) {
    const gemm_prod p = {ta, 1, M, N, K, alpha, A, lda, NULL, ldb, NULL, beta, C, ldc, B16};
    own_run(&p, scratch, arg);
}
#endif
