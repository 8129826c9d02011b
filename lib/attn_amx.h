/* attn_amx.h: attention's small products in bf16, on AMX tiles or, on
 * CPUs with AVX512-BF16 but no AMX (AMD Zen 4 and later), on its dot
 * products.
 *
 * Under --precision bf16 attention's products (a block of at most 64 query
 * rows against one head) went to oneDNN's bf16 matmul one call at a time:
 * a conversion of both operands, a primitive lookup and, for alpha or a
 * beta of 1, a separate scaling pass, for products of a few hundred
 * thousand multiply-adds. Here each product converts its operands into
 * AMX's layouts in a work area (A row-major, B in pairs of rows, both
 * padded with zeros to whole tiles; an operand stored transposed, as the
 * keys are for the scores and P for P^T dY, is transposed in registers on
 * the way) and runs either 16 x 16 tiles of TDPBF16PS or 8 x 32 blocks of
 * VDPBF16PS, which reads B's pairs as they are and A's as one broadcast
 * 32-bit word: bf16 products accumulated in fp32, as oneDNN's. alpha
 * scales A's values before their rounding to bf16 (oneDNN scales the fp32
 * sums instead), so that a whole tile goes from C and back to C without a
 * pass through the vector registers.
 *
 * The float attention kernels use these when gemm_attention_amx() or
 * gemm_attention_dot() (gemm.h) says so: GEMM_BF16 where oneDNN runs AMX
 * and the kernel lets this process use AMX's tile registers, else on an
 * AMD CPU where oneDNN runs AVX512-BF16. The causal skips are
 * attn_tiles.h's, at the tiles' granularity; each element of C is one
 * fixed sequence of operations, so results do not depend on the thread
 * count. The two engines round their sums at different points, so their
 * bytes differ from each other. */
#ifndef WDL_ATTN_AMX_H
#define WDL_ATTN_AMX_H
#include <stdint.h>
#include "attn_tiles.h"

/* Whether this build has the packing and the dot-product kernel (an
 * AVX512-BF16 target: the Makefile builds for the machine it runs on,
 * with the AVX-512 tiles' build), and the AMX kernel (AMX-BF16 too). */
#if ATTN_TILES_BUILT && defined(__AVX512BF16__)
#define ATTN_BF16_BUILT 1
#else
#define ATTN_BF16_BUILT 0
#endif
#if ATTN_BF16_BUILT && defined(__AMX_TILE__) && defined(__AMX_BF16__)
#define ATTN_AMX_BUILT 1
#else
#define ATTN_AMX_BUILT 0
#endif

/* The packed layouts: A row-major, rup16(M) rows of rup32(K) bf16; B in
 * pairs of rows, rup32(K)/2 rows of ldb >= rup16(N) 32-bit words. Sizes
 * in floats (4 bytes). */
static inline int64_t amx_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }
static inline int64_t amx_a_size(int64_t M, int64_t K) { return amx_up(M, 16) * amx_up(K > 0 ? K : 1, 32) / 2; }
static inline int64_t amx_b_size(int64_t K, int64_t N) { return amx_up(K > 0 ? K : 1, 32) / 2 * amx_up(N, 16); }

/* Floats of room the attention kernels' AMX path takes in each scratch
 * area (kernels.h: the forward's once, the backward's twice): with
 * D = rup32(max(64, HD)) and Tk = rup32(T), the packed keys and values a
 * head's blocks share (the forward's two, D Tk / 2 each; the backward's
 * three) and one block's A and B operands (A at most 64 x Tk bf16, B at
 * most 64 x D), so 1.5 D Tk. 0 in builds without AVX512-BF16. */
static inline int64_t amx_work(int64_t T, int64_t HD) {
    const int64_t d = amx_up(HD > 64 ? HD : 64, 32);
    return ATTN_BF16_BUILT * 3 * d * amx_up(T, 32) / 2;
}

/* Asks the kernel for the tile registers (Linux's arch_prctl
 * ARCH_REQ_XCOMP_PERM); 1 when this process may use them. */
int amx_permit(void);

/* C = (alpha A) B + beta * C, M x N over K, operands as tiles_mm's (but
 * B too may have rs 1 instead of cs 1); causal as tiles_mm's; on AMX
 * (amx 1, ATTN_AMX_BUILT only) or VDPBF16PS (amx 0). work:
 * amx_a_size(M, K) + amx_b_size(K, N) floats for the packed operands.
 * ATTN_BF16_BUILT only, as the four below. */
void amx_mm(int amx, int64_t M, int64_t N, int64_t K, float alpha, tiles_opnd A, tiles_opnd B, float beta, float *C,
            int64_t ldc, int causal, int64_t off, float *work);

/* The same in parts, so that products can share a packed operand: A
 * (M x K) times alpha into the A layout, B (K x N) into the B layout with
 * ldb rup16(N), and the product of packed operands. A packed B may hold
 * more rows and columns than a product uses (a head's keys for a block
 * that meets only the first r1 of them): columns past N are not written,
 * and rows past K meet A's zero padding. */
void amx_pack_a(uint16_t *dst, tiles_opnd A, int64_t M, int64_t K, float alpha);
void amx_pack_b(uint32_t *dst, tiles_opnd B, int64_t K, int64_t N);
void amx_mm_packed(int64_t M, int64_t N, int64_t K, const uint16_t *ap, const uint32_t *bp, int64_t ldb, float beta,
                   float *C, int64_t ldc, int causal, int64_t off);
/* The product of packed operands on VDPBF16PS: C as amx_mm_packed's; a
 * beta of 1 starts every sum from C, as AMX's whole tiles do. */
void dot_mm_packed(int64_t M, int64_t N, int64_t K, const uint16_t *ap, const uint32_t *bp, int64_t ldb, float beta,
                   float *C, int64_t ldc, int causal, int64_t off);
/* either, by amx */
static inline void bf16_mm_packed(int amx, int64_t M, int64_t N, int64_t K, const uint16_t *ap, const uint32_t *bp,
                                  int64_t ldb, float beta, float *C, int64_t ldc, int causal, int64_t off) {
    if (amx) amx_mm_packed(M, N, K, ap, bp, ldb, beta, C, ldc, causal, off);
    else dot_mm_packed(M, N, K, ap, bp, ldb, beta, C, ldc, causal, off);
}

#endif
