/* sgemm.h: an fp32 matrix product of our own for CPUs with AVX2 and FMA
 * (gemm.c runs GEMM_FP32_AUTO's and emulated bf16's products on it, those
 * of a few rows against BF16 weights excepted).
 *
 * cblas_sgemm's semantics, row-major: C[M,N] = alpha op(A) op(B) + beta C,
 * beta == 0 never reading C. The product is cut the usual way (Goto's
 * layout): B packed once per product (in blocks of columns, whole along
 * K) into panels of 16 columns that the whole team shares; A read in place
 * along its rows, or packed per thread into panels of 6 rows (stored
 * transposed, or with rows 4 KB or more apart that many panels read); K in
 * blocks of SGEMM_KC; a 6 x 16 register tile of 12 AVX2
 * accumulators, or where the CPU has AVX-512 a 6 x 32 tile of 12 zmm
 * accumulators over two panels at once (the same sums, fewer
 * instructions), which prefetches its rows of C before its K loop (and,
 * where the panels outgrow L2, a slice of the next panel, spread over the
 * K loop); blocks of columns and items hold whole pairs of panels there.
 * Row blocks of A read along its rows are twice as tall as those of A
 * stored transposed. A few
 * rows (decoding's) share out the panels instead, each thread packing its
 * own, without a barrier. A wide product (op(B) = B^T past one block of
 * packing, at most 512 rows: a language model's head over a chunk of
 * positions) runs as C^T = B op(A)^T, B's rows packed a K block at a
 * time and A packed, each block of C^T summed in a thread's buffer and
 * written back transposed.
 *
 * Every element of C is summed in one order fixed by K alone: over each
 * K block in turn, k ascending, one FMA chain from zero; then C = alpha *
 * sum + beta * C (one fused rounding) for the first block, C = alpha * sum
 * + C for the next ones. How rows and columns are shared out among threads
 * changes no byte, so the result is the same at any thread count, in or
 * out of an OpenMP team (where it runs on the calling thread alone).
 * Against OpenBLAS in fixed blocks it saves the zeroing pass over C that
 * OpenBLAS makes for beta == 0, and packs B once per product instead of
 * once per block.
 *
 * A product with round16 (gemm_prod; through sgemm_own_multi) rounds A's
 * and B's floats to bf16 as it packs them (A's rows are then always
 * packed; a few rows on a team are rounded into a copy first), so its
 * bytes are those of the same product on inputs rounded beforehand:
 * GEMM_BF16's products where they run on fp32 FMAs (gemm.h). */
#ifndef WDL_SGEMM_H
#define WDL_SGEMM_H
#include <stddef.h>
#include <stdint.h>
#include "gemm.h"

#define SGEMM_KC 256
/* At most this many rows of A as stored, on a team: each thread packs its
 * own panels of B (decoding's products), the same sums. */
#define SGEMM_FEW_ROWS 16
/* The CPU has AVX2 and FMA. */
int sgemm_own_cpu(void);
/* The register tile the products run on here: "avx512-6x32" (two panels
 * at once, where the CPU has AVX-512F), "avx2-6x16", or "none". */
const char *sgemm_own_tile(void);
/* Scratch for one thread of the team: at least `floats` floats, 64-byte
 * aligned, kept by the caller between calls. */
typedef float *(*sgemm_scratch_fn)(void *arg, int which, size_t floats);
/* The product on the CPU's AVX2 and FMA (the caller checks sgemm_own_cpu).
 * Scratch: which 0 holds B's packed block (asked for by the calling thread
 * and shared), which 1 each thread's packed A, or, for SGEMM_FEW_ROWS rows
 * of A as stored on a team, each thread's own panel of B. */
void sgemm_own(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc, sgemm_scratch_fn scratch,
               void *arg);
/* op(B) = B^T (B stored [N, K]: a linear layer's weights) packed whole,
 * as sgemm_own packs it for every product: sgemm_packed_floats(N, K)
 * floats at dst, 64-byte aligned. sgemm_own_packed is then sgemm_own(ta,
 * 1, ...) reading those panels instead of packing B again: the same sums,
 * so the same bytes. (Decoding multiplies a few rows by each matrix per
 * token, and packing cost as much as the product: gemm.h's
 * gemm_ctx_keep_packed.) */
size_t sgemm_packed_floats(int64_t N, int64_t K);
void sgemm_pack_bt(const float *B, int64_t ldb, int64_t N, int64_t K, float *dst);
void sgemm_own_packed(int ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *packed, float beta, float *C, int64_t ldc, sgemm_scratch_fn scratch, void *arg);
/* The same two from B's values in bf16 (B16, stride ldb; B itself not
 * stored: a checkpoint's BF16 weights read where they lie): widened to
 * fp32 as they are packed, which is exact, so the panels and the sums are
 * those of the widened floats, byte for byte. sgemm_own_b16 is
 * sgemm_own(ta, 1, ...) on them. */
void sgemm_pack_bt16(const uint16_t *B, int64_t ldb, int64_t N, int64_t K, float *dst);
void sgemm_own_b16(int ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                   const uint16_t *B16, int64_t ldb, float beta, float *C, int64_t ldc, sgemm_scratch_fn scratch,
                   void *arg);
/* Several products (gemm.h's gemm_prod, at most GEMM_N_MAX; `packed` as
 * sgemm_own_packed's, or NULL) in one parallel region: their B's packed,
 * one barrier, then all their items, each product's shared out as
 * sgemm_own shares it: the bytes of sgemm_own on each in turn. Products
 * reading the same B (pointer, tb, ldb, N and K) pack it once; products
 * writing the same C (the same pointer, M, N and ldc: an input gradient
 * summed over layers) run item by item in their order. A set that cannot
 * share a region (a product of SGEMM_FEW_ROWS rows or fewer, one small
 * enough for one thread, one too wide to pack whole, products into one C
 * of other shapes, a call inside a team) runs product by product. */
void sgemm_own_multi(int n, const gemm_prod *p, sgemm_scratch_fn scratch, void *arg);
/* Scratch for callers without a gemm_ctx (tests, benches): pass
 * sgemm_bufs_get as `scratch` and a zeroed sgemm_bufs as `arg`; buffers
 * grow as needed, one pair per thread of the team (at most
 * SGEMM_BUF_THREADS), until sgemm_bufs_free. */
#define SGEMM_BUF_THREADS 64
typedef struct { float *buf[SGEMM_BUF_THREADS][2]; size_t cap[SGEMM_BUF_THREADS][2]; } sgemm_bufs;
float *sgemm_bufs_get(void *arg, int which, size_t floats);
void sgemm_bufs_free(sgemm_bufs *b);
#endif
