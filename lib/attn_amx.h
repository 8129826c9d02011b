/* attn_amx.h: attention's small products in bf16 on AMX tiles.
 *
 * Under --precision bf16 attention's products (a block of at most 64 query
 * rows against one head) went to oneDNN's bf16 matmul one call at a time:
 * a conversion of both operands, a primitive lookup and, for alpha or a
 * beta of 1, a separate scaling pass, for products of a few hundred
 * thousand multiply-adds. Here each product converts its operands into
 * AMX's layouts in a work area (A row-major, B in pairs of rows, both
 * padded with zeros to whole tiles; an operand stored transposed, as the
 * keys are for the scores and P for P^T dY, is transposed in registers on
 * the way) and runs 16 x 16 tiles of TDPBF16PS: bf16 products accumulated
 * in fp32, as oneDNN's. alpha scales A's values before their rounding to
 * bf16 (oneDNN scales the fp32 sums instead), so that a whole tile goes
 * from C and back to C without a pass through the vector registers.
 *
 * The float attention kernels use these when gemm_attention_amx() (gemm.h)
 * says so: GEMM_BF16 where oneDNN runs AMX and the kernel lets this
 * process use AMX's tile registers. The causal skips are attn_tiles.h's,
 * at the tiles' granularity; each element of C is one fixed sequence of
 * tile operations, so results do not depend on the thread count. */
#ifndef WDL_ATTN_AMX_H
#define WDL_ATTN_AMX_H
#include <stdint.h>
#include "attn_tiles.h"

/* Whether this build has the AMX kernels: an AMX-BF16 target (the Makefile
 * builds for the machine it runs on) with the AVX-512 tiles' build. */
#if ATTN_TILES_BUILT && defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
#define ATTN_AMX_BUILT 1
#else
#define ATTN_AMX_BUILT 0
#endif

/* Floats of work area one product needs at most when its dimensions are
 * among {m <= 64 rows of a block, up to T keys, HD}: two operands of at
 * most rup32(max(64, HD)) x rup32(T) bf16. 0 in builds without AMX. */
static inline int64_t amx_work(int64_t T, int64_t HD) {
    const int64_t d = HD > 64 ? HD : 64;
    return ATTN_AMX_BUILT * ((d + 31) / 32 * 32) * ((T + 31) / 32 * 32);
}

/* Asks the kernel for the tile registers (Linux's arch_prctl
 * ARCH_REQ_XCOMP_PERM); 1 when this process may use them. */
int amx_permit(void);

/* C = (alpha A) B + beta * C, M x N over K, operands as tiles_mm's (but
 * either of an operand's strides may be 1); causal as tiles_mm's. work: at
 * least the floats of the two packed operands, rup16(M) x rup32(K) and
 * rup32(K) x rup16(N) bf16, which amx_work bounds for attention's
 * products. ATTN_AMX_BUILT only. */
void amx_mm(int64_t M, int64_t N, int64_t K, float alpha, tiles_opnd A, tiles_opnd B, float beta, float *C,
            int64_t ldc, int causal, int64_t off, float *work);

#endif
