/* attn_tiles.c: attention's small products on AVX-512 register tiles (see
 * attn_tiles.h). */
#include "attn_tiles.h"
#include "common.h"

#if ATTN_TILES_BUILT
#include <immintrin.h>

/* A tile is TM rows by TN = two vectors of columns: 16 accumulators, two
 * loads of B and one broadcast of A live at a time (19 of 32 registers);
 * per step along k, 16 FMAs against 10 loads. */
#define TM 8
#define TN 32


/* One tile of mr rows (a constant where it is inlined, so that the row
 * loops unroll and the accumulators stay in registers); k0, k1 mask its
 * two column vectors. */
static inline __attribute__((always_inline)) void tile(const int mr, int64_t K, const float *A, int64_t rsa,
                                                       int64_t csa, const float *B, int64_t ldb, __mmask16 k0,
                                                       __mmask16 k1, float alpha, float beta, float *C,
                                                       int64_t ldc) {
    __m512 c0[TM], c1[TM];
    for (int i = 0; i < mr; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t p = 0; p < K; p++) {
        const __m512 b0 = _mm512_maskz_loadu_ps(k0, B + p * ldb), b1 = _mm512_maskz_loadu_ps(k1, B + p * ldb + 16);
        const float *a = A + p * csa;
        for (int i = 0; i < mr; i++) {
            const __m512 ai = _mm512_set1_ps(a[i * rsa]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, c), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, c + 16), r1);
        }
        _mm512_mask_storeu_ps(c, k0, r0);
        _mm512_mask_storeu_ps(c + 16, k1, r1);
    }
}

void tiles_mm(int64_t M, int64_t N, int64_t K, float alpha, tiles_opnd A, tiles_opnd B, float beta, float *C,
              int64_t ldc, int causal, int64_t off) {
    for (int64_t j = 0; j < N; j += TN) {
        const __mmask16 k0 = tiles_lanes(N - j), k1 = tiles_lanes(N - j - 16);
        for (int64_t i = 0; i < M; i += TM) {
            const int mr = M - i < TM ? (int)(M - i) : TM;
            int64_t p0 = 0, p1 = K;   /* the stretch of k this tile needs */
            if (causal == TILES_COLS_TO && j > off + i + mr - 1) continue;
            if (causal == TILES_K_TO && p1 > off + i + mr) p1 = off + i + mr;
            if (causal == TILES_K_FROM && i - off > 0) p0 = i - off < K ? i - off : K;
            const float *a = A.p + i * A.rs + p0 * A.cs, *b = B.p + p0 * B.rs + j;
            float *c = C + i * ldc + j;
#define TILE(r) tile(r, p1 - p0, a, A.rs, A.cs, b, B.rs, k0, k1, alpha, beta, c, ldc)
            switch (mr) {
            case 8: TILE(8); break;
            case 7: TILE(7); break;
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

#else   /* no AVX-512: gemm_attention_tiles() is 0 and nothing calls these */

void tiles_mm(int64_t M, int64_t N, int64_t K, float alpha, tiles_opnd A, tiles_opnd B, float beta, float *C,
              int64_t ldc, int causal, int64_t off) {
    die("internal: attention tiles need an AVX-512 build");
}
void tiles_transpose(float *dst, const float *src, int64_t rows, int64_t cols, int64_t lds) {
    die("internal: attention tiles need an AVX-512 build");
}
#endif
