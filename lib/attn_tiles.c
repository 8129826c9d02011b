/* attn_tiles.c: attention's small products on AVX-512 or AVX2 register
 * tiles (see attn_tiles.h). */
#include "attn_tiles.h"
#include "common.h"

#if ATTN_TILES_BUILT
#include "lanes.h"
#include "transpose8.h"
#include <immintrin.h>

#if ATTN_TILES_AVX512
/* A tile is TM rows by TN = two vectors of columns: 16 accumulators, two
 * loads of B and one broadcast of A live at a time (19 of 32 registers);
 * per step along k, 16 FMAs against 10 loads. */
#define TM 8
#define VL 16
typedef __mmask16 lanes_t;
static inline lanes_t col_lanes(int64_t n) { return tiles_lanes(n); }
typedef __m512 vec_t;
#define VZERO _mm512_setzero_ps
#define VSET1 _mm512_set1_ps
#define VMUL _mm512_mul_ps
#define VFMA _mm512_fmadd_ps
/* masked loads and stores cost nothing extra here: every tile uses them */
#define VLOAD(full, k, p) _mm512_maskz_loadu_ps(k, p)
#define VSTORE(full, k, p, x) _mm512_mask_storeu_ps(p, k, x)
#else
/* AVX2: 16 registers, so TM = 6 rows by two vectors of 8: 12
 * accumulators, two loads of B and one broadcast (15 of 16); 12 FMAs
 * against 8 loads per step. The same FMAs in the same order as the
 * AVX-512 tiles, so the same bytes. Masked loads and stores only on a
 * row's last columns (full: none). */
#define TM 6
#define VL 8
typedef __m256i lanes_t;
static inline lanes_t col_lanes(int64_t n) { return lanes_mask8(n); }
typedef __m256 vec_t;
#define VZERO _mm256_setzero_ps
#define VSET1 _mm256_set1_ps
#define VMUL _mm256_mul_ps
#define VFMA _mm256_fmadd_ps
#define VLOAD(full, k, p) ((full) ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, k))
#define VSTORE(full, k, p, x) ((full) ? _mm256_storeu_ps(p, x) : _mm256_maskstore_ps(p, k, x))
#endif
#define TN (2 * VL)

/* One tile of mr rows (a constant where it is inlined, so that the row
 * loops unroll and the accumulators stay in registers); k0, k1 mask its
 * two column vectors, unless full. */
static inline __attribute__((always_inline)) void tile(const int mr, const int full, int64_t K, const float *A,
                                                       int64_t rsa, int64_t csa, const float *B, int64_t ldb,
                                                       lanes_t k0, lanes_t k1, float alpha, float beta, float *C,
                                                       int64_t ldc) {
    vec_t c0[TM], c1[TM];
    for (int i = 0; i < mr; i++) c0[i] = c1[i] = VZERO();
    for (int64_t p = 0; p < K; p++) {
        const vec_t b0 = VLOAD(full, k0, B + p * ldb), b1 = VLOAD(full, k1, B + p * ldb + VL);
        const float *a = A + p * csa;
        for (int i = 0; i < mr; i++) {
            const vec_t ai = VSET1(a[i * rsa]);
            c0[i] = VFMA(ai, b0, c0[i]);
            c1[i] = VFMA(ai, b1, c1[i]);
        }
    }
    const vec_t va = VSET1(alpha), vb = VSET1(beta);
    for (int i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        vec_t r0 = VMUL(va, c0[i]), r1 = VMUL(va, c1[i]);
        if (beta != 0.0f) {
            r0 = VFMA(vb, VLOAD(full, k0, c), r0);
            r1 = VFMA(vb, VLOAD(full, k1, c + VL), r1);
        }
        VSTORE(full, k0, c, r0);
        VSTORE(full, k1, c + VL, r1);
    }
}

void tiles_mm(int64_t M, int64_t N, int64_t K, float alpha, tiles_opnd A, tiles_opnd B, float beta, float *C,
              int64_t ldc, int causal, int64_t off) {
    for (int64_t j = 0; j < N; j += TN) {
        const lanes_t k0 = col_lanes(N - j), k1 = col_lanes(N - j - VL);
        const int full = N - j >= TN;
        for (int64_t i = 0; i < M; i += TM) {
            const int mr = M - i < TM ? (int)(M - i) : TM;
            int64_t p0 = 0, p1 = K;   /* the stretch of k this tile needs */
            if (causal == TILES_COLS_TO && j > off + i + mr - 1) continue;
            if (causal == TILES_K_TO && p1 > off + i + mr) p1 = off + i + mr;
            if (causal == TILES_K_FROM && i - off > 0) p0 = i - off < K ? i - off : K;
            const float *a = A.p + i * A.rs + p0 * A.cs, *b = B.p + p0 * B.rs + j;
            float *c = C + i * ldc + j;
#define TILE(r) (full ? tile(r, 1, p1 - p0, a, A.rs, A.cs, b, B.rs, k0, k1, alpha, beta, c, ldc) \
                      : tile(r, 0, p1 - p0, a, A.rs, A.cs, b, B.rs, k0, k1, alpha, beta, c, ldc))
            switch (mr) {
#if TM == 8
            case 8: TILE(8); break;
            case 7: TILE(7); break;
#endif
            case 6: TILE(6); break;
            case 5: TILE(5); break;
            case 4: TILE(4); break;
            case 3: TILE(3); break;
            case 2: TILE(2); break;
            default: TILE(1); break;
            }
#undef TILE
        }
    }
}

#if ATTN_TILES_AVX512
/* 16 rows at a time, one column gathered per store */
void tiles_transpose(float *dst, const float *src, int64_t rows, int64_t cols, int64_t lds) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)lds));
    for (int64_t n = 0; n < rows; n += 16) {
        const __mmask16 k = tiles_lanes(rows - n);
        for (int64_t c = 0; c < cols; c++)
            _mm512_mask_storeu_ps(dst + c * rows + n, k,
                                  _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, idx, src + n * lds + c, 4));
    }
}
#else
/* blocks of 8 x 8 through registers, the edges one float at a time (the
 * scalar loop took a tenth of the nano model's attention) */
void tiles_transpose(float *dst, const float *src, int64_t rows, int64_t cols, int64_t lds) {
    transpose_strided(dst, rows, src, lds, rows, cols);
}
#endif

#else   /* neither AVX-512 nor AVX2: gemm_attention_tiles() is 0 and nothing calls these */

void tiles_mm(int64_t M, int64_t N, int64_t K, float alpha, tiles_opnd A, tiles_opnd B, float beta, float *C,
              int64_t ldc, int causal, int64_t off) {
    die("internal: attention tiles need an AVX-512 or AVX2 build");
}
void tiles_transpose(float *dst, const float *src, int64_t rows, int64_t cols, int64_t lds) {
    die("internal: attention tiles need an AVX-512 or AVX2 build");
}
#endif
