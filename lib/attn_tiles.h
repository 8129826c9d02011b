/* attn_tiles.h: attention's small fp32 matrix products on register tiles.
 *
 * Attention multiplies one block of at most 64 query rows by one head's
 * keys and values: thousands of products per step of a few hundred
 * thousand multiply-adds each, with head_dim (32-128) as one side. Here
 * each product is one pass of 8 x 32 tiles of AVX-512 FMAs (6 x 16 of
 * AVX2 FMAs in an AVX2 build) reading its operands in place (the keys and
 * values transposed once per head where a product needs them so), and
 * the causal mask is used to skip the tiles
 * and the stretches of k that only meet the zeros above the diagonal.
 * On OpenBLAS the whole of attention's forward and backward took
 * 1.07-1.30x as long, for head sizes 32-128 and 77-1,000 positions
 * (README, The engine).
 *
 * The float attention kernels use them when gemm_attention_tiles()
 * (gemm.h) says so, which is GEMM_FP32_AUTO where oneDNN runs AVX-512,
 * or in an AVX2 build.
 * bf16 runs them on attn_amx.h's AMX tiles or AVX512-BF16 dot products
 * where it can, else on oneDNN's products (which ran as fast as these
 * tiles on bf16-rounded copies of the operands); fp32-openblas, builds
 * without AVX2 and the double kernels keep the backend's GEMMs.
 *
 * Each element of C is one fixed sequence of FMAs over k in order from
 * zero, then alpha * sum + beta * C, so a result depends neither on the
 * thread count nor on where a product sits in its tile. */
#ifndef WDL_ATTN_TILES_H
#define WDL_ATTN_TILES_H
#include <stdint.h>

/* Whether this build has the tiles: an AVX-512 or AVX2+FMA target (the
 * Makefile builds for the machine it runs on) and GCC's vector
 * extensions. Elsewhere the functions below die and
 * gemm_attention_tiles() is 0. */
#if defined(__AVX512F__) && defined(__GNUC__)
#define ATTN_TILES_BUILT 1
#define ATTN_TILES_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)
#define ATTN_TILES_BUILT 1
#define ATTN_TILES_AVX512 0
#else
#define ATTN_TILES_BUILT 0
#define ATTN_TILES_AVX512 0
#endif

#if ATTN_TILES_AVX512
#include <immintrin.h>
/* The first n of 16 lanes (none for n <= 0, all for n >= 16): the masks of
 * a row's last, partial vector (attn_tiles.c, attn_amx.c). */
static inline __mmask16 tiles_lanes(int64_t n) {
    return (__mmask16)(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1);
}
#endif

/* The largest head_dim whose attention takes the tiles: any on AVX-512;
 * on AVX2 64, where they ran attention's forward and backward faster than
 * OpenBLAS (Zen 3, 2 threads, 8 x 256 positions: head_dim 32 14-19 ms
 * against 18-19, 64 25-28 against 28-35) but not at 128 (49-60 against
 * 44-51). */
#define ATTN_TILES_MAX_HD (ATTN_TILES_AVX512 ? INT64_MAX : 64)

/* An operand: element (i, p) of A at p[i * rs + p * cs]; B must have
 * cs == 1 (rows of B are read as vectors). */
typedef struct { const float *p; int64_t rs, cs; } tiles_opnd;

/* What the causal mask lets a product skip (off: the block's first query
 * row r0), for row i of C:
 *   TILES_DENSE      nothing;
 *   TILES_COLS_TO    columns past off + i (C's rows are queries, its
 *                    columns keys: scores, dP), left unwritten;
 *   TILES_K_TO       k past off + i (A is zero there: P V, dS K);
 *   TILES_K_FROM     k below i - off (C's rows are keys, k the block's
 *                    queries, A zero there: P^T dY, dS^T Q).
 * A skipped stretch of k adds only products with zero, so the sums are
 * the dense ones. */
enum { TILES_DENSE, TILES_COLS_TO, TILES_K_TO, TILES_K_FROM };

/* C = alpha * A B + beta * C, M x N over K; beta 0: C is only written.
 * ATTN_TILES_BUILT only. */
void tiles_mm(int64_t M, int64_t N, int64_t K, float alpha, tiles_opnd A, tiles_opnd B, float beta, float *C,
              int64_t ldc, int causal, int64_t off);

/* dst [cols, rows] = the transpose of src (rows x cols, leading dimension
 * lds). */
void tiles_transpose(float *dst, const float *src, int64_t rows, int64_t cols, int64_t lds);

#endif
