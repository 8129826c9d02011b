/* gemm.h: the matrix-product backend. Every float GEMM of the engine goes
 * through here; the double instantiation of the kernels (gradient checks)
 * calls cblas_dgemm directly and never comes here.
 *
 * Semantics are cblas_sgemm's, row-major only:
 *   C[M,N] = alpha * op(A) op(B) + beta * C,  op(X) = X or X^T,
 * A stored [M,K] (lda) or, transposed, [K,M]; B [K,N] (ldb) or [N,K];
 * beta == 0 overwrites C (its old contents are never read).
 *
 * Precisions:
 *   GEMM_FP32_AUTO  fp32, each product where it ran fastest (the programs'
 *                   --precision fp32): on a CPU with AVX2 and FMA, every
 *                   product but a few rows against BF16 weights (the
 *                   few-row kernel) on sgemm_own (sgemm.h: AVX-512 tiles
 *                   where the CPU has them). Elsewhere (and in a context
 *                   set to gemm_ctx_own_sgemm(g, 0)) on OpenBLAS, those
 *                   above 2^18 multiply-adds as fixed blocks of C, one
 *                   single-threaded call each (gemm.c: OpenBLAS's own
 *                   threading gives other bytes at other thread counts).
 *                   Other summation orders than one cblas_sgemm call, so
 *                   other bits; the same bits for the same inputs and
 *                   shapes, at any thread count (mpirun's ranks run fewer).
 *                   (Until e0d5e31 large products went to oneDNN's fp32
 *                   matmul where it runs AVX-512 and no sgemm_own was
 *                   used; no context took that route any more.)
 *   GEMM_FP32       OpenBLAS cblas_sgemm, bit for bit, except a product of
 *                   at most GEMM_FEW_ROWS rows of A against at least
 *                   GEMM_FEW_ROWS_MIN_NK elements of B, which runs on the
 *                   few-row kernel (below) where it qualifies, else as
 *                   GEMM_FP32_DNNL: OpenBLAS copies (packs) all of B on
 *                   every call, which for the few rows of decoding costs
 *                   more than the product (measured: greedy decoding of
 *                   the Qwen3-0.6B shape spent 46% of its time packing).
 *                   Without any context (no gemm_set_precision: the test
 *                   binaries) every product is cblas_sgemm.
 *   GEMM_BF16       A and B rounded to bf16 (round to nearest even) into
 *                   per-thread scratch, products accumulated and written in
 *                   fp32 by oneDNN's matmul (AMX or AVX512-BF16 kernels where
 *                   the CPU has them). Where those would run slower than
 *                   fp32 FMAs (gemm_bf16_on_fma: an Intel CPU with
 *                   AVX512-BF16 and no AMX), and where oneDNN has no bf16
 *                   matmul for this CPU, the same bf16-rounded inputs go
 *                   where GEMM_FP32_AUTO runs its products (sgemm_own, or
 *                   fixed blocks): the products of two bf16 values are
 *                   exact in fp32, so the semantics are the same, summed
 *                   in sgemm_own's order.
 *   The few-row kernel: A B^T of at most 4 rows of A in bf16, 8 in fp32,
 *                   with M K <= 12288 (K rounded up to 32; on the AVX2
 *                   kernel 16 rows and 49152 in both), against at least
 *                   GEMM_FEW_ROWS_MIN_NK elements of B held in bf16 (in
 *                   bf16 a read-only range or a view, in fp32 a shadow):
 *                   decoding's linear layers and LM head. On any CPU with
 *                   AVX-512 (F and BW), or AVX2 and FMA, these run on
 *                   gemm.c's own kernels (the same bytes on either), which
 *                   read B once at close to the memory bandwidth:
 *                   exact products of the same values, accumulated in fp32
 *                   in another order (in bf16, denormal inputs are kept,
 *                   not zeroed as AMX does).
 *                   The exactness reference (--precision fp32-openblas).
 *   GEMM_FP32_DNNL  oneDNN's fp32 matmul on the inputs as given (for the
 *                   bench and tests; not offered on the command line).
 *
 * A gemm_ctx holds the precision, the oneDNN engine, a cache of created
 * matmul primitives keyed by (shape, transposes, strides, alpha, beta)
 * (creating one costs far more than running it on this model's shapes; the
 * cache is bounded, see gemm_ctx_set_cache_limit) and per-thread scratch
 * (converted inputs, oneDNN's scratchpad in user mode, a stream). gemm_run
 * may be called concurrently from several threads, e.g. an OpenMP team; a
 * call inside a parallel region runs single-threaded, as OpenBLAS does.
 *
 * The engine's kernels take no context: they call wdl_sgemm, which uses the
 * process-wide context chosen once at program start by gemm_set_precision
 * (before any GEMM runs and before any other thread exists; the default,
 * without a call, is GEMM_FP32). This is the one piece of process-wide
 * backend configuration; tests that compare precisions in one process build
 * their own contexts with gemm_ctx_new. */
#ifndef WDL_GEMM_H
#define WDL_GEMM_H
#include <stddef.h>
#include <stdint.h>

typedef enum { GEMM_FP32 = 0, GEMM_BF16 = 1, GEMM_FP32_DNNL = 2, GEMM_FP32_AUTO = 3 } gemm_precision;
#define GEMM_FEW_ROWS 16
#define GEMM_FEW_ROWS_MIN_NK (1 << 16)
/* GEMM_FP32_AUTO's OpenBLAS products (and emulated bf16's) of at most this
 * many multiply-adds are one cblas_sgemm call; larger ones run as fixed
 * blocks (gemm.c) */
#define GEMM_FP32_ONE_CALL_MAX (1 << 18)

typedef struct gemm_ctx gemm_ctx;

gemm_ctx *gemm_ctx_new(gemm_precision p);
void gemm_ctx_free(gemm_ctx *g);
gemm_precision gemm_ctx_precision(const gemm_ctx *g);
/* ta/tb nonzero: that operand is transposed. */
void gemm_run(gemm_ctx *g, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* One product of gemm_run_n: gemm_run's arguments (packed: see sgemm.h's
 * sgemm_own_multi; callers leave it NULL). */
typedef struct {
    int ta, tb;
    int64_t M, N, K;
    float alpha;
    const float *A;
    int64_t lda;
    const float *B;
    int64_t ldb;
    const float *packed;
    float beta;
    float *C;
    int64_t ldc;
    /* B^T's values in bf16, B itself not stored (gemm.c sets it for a
     * bf16-only weight of an fp32 context; callers leave it NULL) */
    const uint16_t *B16;
    /* nonzero: A's and B's floats are rounded to bf16 as sgemm_own packs
     * them (gemm.c sets it for GEMM_BF16's products on fp32 FMAs; B16's
     * values are bf16 already); callers leave it 0 */
    int round16;
} gemm_prod;
/* n products (at most GEMM_N_MAX) as if by gemm_run on each in turn, the
 * same bytes; where every one would run on sgemm_own (GEMM_FP32_AUTO on a
 * CPU with AVX2 and FMA, or GEMM_BF16 on fp32 FMAs), all in one parallel
 * region (sgemm.h's sgemm_own_multi), those reading the same B packed
 * once: a linear layer's two backward products, and the layers that share
 * an input (q, k, v; gate, up) with their backward. Where every one reads
 * the same A and would run on the few-row kernel (decoding's q, k and v;
 * gate and up), all in one parallel region too. A C may be another
 * product's C only as a whole (the same pointer, shape and ldc: the
 * products then add into it in their order); it may not overlap another C
 * otherwise, nor any input. */
#define GEMM_N_MAX 8
void gemm_run_n(gemm_ctx *g, int n, const gemm_prod *p);
/* Number of oneDNN primitives created so far, of those that fell back to
 * bf16-rounded inputs on cblas_sgemm, and of those that gemm_run runs into
 * dense scratch, applying alpha and beta itself as it copies the result
 * into C (for tests and the bench; see gemm.c's make_entry). */
void gemm_ctx_stats(gemm_ctx *g, int64_t *primitives, int64_t *emulated, int64_t *own_scaled);
/* Number of products run by the few-row kernel so far, and a switch: 1 (the
 * default) runs them on the CPU's kernel, 0 sends them to oneDNN instead,
 * 2 runs them on the AVX2 kernel even where AVX-512's is there (tests
 * compare them). */
int64_t gemm_ctx_few_row_products(gemm_ctx *g);
/* The most rows of A a product may have to take the few-row kernel here
 * (0: none): 16 on AVX2 CPUs, and on AVX-512 ones where more rows would
 * run on sgemm_own (fp32, or bf16 on fp32 FMAs); else 4 in bf16 and 8 in
 * fp32 (oneDNN's kernels run more rows faster there). */
int64_t gemm_ctx_few_row_limit(const gemm_ctx *g);
/* Number of gemm_run_n's sets of products that shared A and ran on the
 * few-row kernel together, each in one parallel region (tests). */
int64_t gemm_ctx_few_row_groups(gemm_ctx *g);
void gemm_ctx_few_rows(gemm_ctx *g, int mode);
/* Where GEMM_FP32_AUTO's products (and bf16's on fp32 FMAs) run: 1 (the
 * default) or 2 on sgemm_own (sgemm.h) where the CPU has AVX2 and FMA,
 * every product but the few-row kernel's; 0 (tests) as on other CPUs: on
 * OpenBLAS in fixed blocks. */
void gemm_ctx_own_sgemm(gemm_ctx *g, int mode);
int gemm_ctx_uses_own_sgemm(const gemm_ctx *g);
/* GEMM_BF16's products on fp32 FMAs (1: sgemm_own rounding its inputs
 * to bf16 as it packs them, in one region, several products at once as
 * gemm_run_n's fp32 ones; the default where gemm_bf16_on_fma() or where
 * oneDNN has no bf16 kernels) or on oneDNN's bf16 kernels (0; where it
 * has none, on copies of the rounded inputs: tests); a no-op in other
 * precisions or without sgemm_own. On FMAs nothing is mirrored
 * (gemm_ctx_mirror): the floats are read. A change only before the
 * context's first product. */
void gemm_ctx_bf16_fma(gemm_ctx *g, int on);
/* oneDNN's gemm-based matmul (small shapes) scales and accumulates in a
 * scalar loop; products it would run get alpha and beta applied by
 * gemm_run in a vector loop instead. This makes every product with alpha
 * != 1 or beta != 0 take that route (tests, on any CPU). */
void gemm_ctx_always_own_scale(gemm_ctx *g);
/* Converts to bf16 in software (st_f32_to_bf16) even where the CPU has
 * AVX512-BF16's instruction, which turns fp32 denormals into zero (tests:
 * the two give the same products). */
void gemm_ctx_software_conversion(gemm_ctx *g);
/* With GEMM_BF16: the n floats at base will not change until this range is
 * set again (a model's weights while scoring or decoding, or during one
 * training step); they are converted to bf16 here, once (2n bytes held,
 * kept for the next call), and products whose operand lies inside read that
 * copy instead of converting it on every call. Same values, so the same
 * results up to oneDNN's choice of kernel for the strides. `which` (0 or 1)
 * names one of two ranges (two models in WD-JT). A no-op in fp32; NULL
 * forgets the range. */
#define GEMM_READONLY_RANGES 2
void gemm_ctx_set_readonly(gemm_ctx *g, int which, const float *base, size_t n);
/* With GEMM_BF16: the n floats at base are never stored; bf16[0..n) holds
 * their values (a BF16 checkpoint's tensor, read in place), and products
 * whose operand lies inside read it (the emulated path widens it). The
 * caller keeps bf16 valid until gemm_ctx_drop_bf16_views. Views come
 * before the read-only ranges when both cover an operand. In fp32 only
 * where gemm_ctx_fp32_views says so. */
void gemm_ctx_add_bf16_view(gemm_ctx *g, const float *base, size_t n, const uint16_t *bf16);
/* Whether g takes views though its products are fp32 (GEMM_FP32_AUTO on
 * sgemm_own): its products read a view's bf16 values widened to fp32,
 * exactly, so a BF16 checkpoint need not be widened into floats at
 * loading; the bytes are those of the widened floats. */
int gemm_ctx_fp32_views(const gemm_ctx *g);
/* Decoding (on, 1): an fp32 view's weight met by a few rows goes to the
 * few-row kernel, which reads its bf16 values as it reads a shadow's
 * (gemm_ctx_add_bf16_shadow), so a model loaded as views decodes with the
 * bytes of one loaded as floats with shadows, without the floats; rows
 * beyond the kernel's go to sgemm_own, reading the bf16 values. Off (0,
 * the default): they take the route an F32 checkpoint's floats would
 * (scoring's bytes are an F32 load's). It goes off again when the last
 * fp32 view is dropped (the decoding model freed). */
void gemm_ctx_fp32_views_few_rows(gemm_ctx *g, int on);
/* With GEMM_FP32: the n floats at base hold exactly the values bf16[0..n)
 * (a model read from a BF16 checkpoint for decoding) and neither changes
 * until the range is dropped (gemm_ctx_drop_bf16_views). Products of the
 * few-row kernel (see GEMM_BF16) whose B lies inside read the bf16 values
 * instead of the floats, half the bytes: fp32 A (not rounded), the same
 * weights exactly, fp32 FMAs, so the fp32 product in another order. */
void gemm_ctx_add_bf16_shadow(gemm_ctx *g, const float *base, size_t n, const uint16_t *bf16);
/* Forget the views (or shadows, or mirrors) of floats inside [base, base + n). */
void gemm_ctx_drop_bf16_views(gemm_ctx *g, const float *base, size_t n);
/* With GEMM_BF16 (a no-op otherwise): an activation the forward writes once
 * and products read in both passes. Converts the n floats at src into dst
 * (the caller's n bf16) now and registers dst as their mirror: products
 * whose operand lies inside read it instead of converting the floats
 * again (the same values, so the same results). The floats stay stored
 * and must not change while mirrored: gemm_ctx_drop_mirrors forgets the
 * mirrors inside a range, and must come before whoever writes, frees or
 * reuses that memory; mirroring a range again replaces its mirror. */
void gemm_ctx_mirror(gemm_ctx *g, const float *src, size_t n, uint16_t *dst);
void gemm_ctx_drop_mirrors(gemm_ctx *g, const float *base, size_t n);
/* Holding inputs (bf16; a no-op in fp32): between gemm_ctx_hold_inputs(g, 1)
 * and gemm_ctx_hold_inputs(g, 0) the calling thread promises that a matrix,
 * once read by one of its products, does not change before the release
 * (an output may become an input later if it is not written after that).
 * Meanwhile operands converted to bf16 are kept (the last four, per
 * thread), and a later product reading the same stored matrix (address,
 * rows, columns, leading dimension) uses the copy instead of converting
 * again: the Q, K and V projections read one input, and a linear
 * backward reads its output gradient twice. Same values, so the same
 * results. Scopes nest; the copies live until the outermost one closes. */
void gemm_ctx_hold_inputs(gemm_ctx *g, int on);
/* With GEMM_FP32_AUTO on sgemm_own (a no-op otherwise): the n floats at
 * base (the weights of a model that scores or decodes) do not change
 * until gemm_ctx_keep_packed is called again (NULL forgets them) or
 * gemm_ctx_drop_packed names memory inside them (model_free does). A
 * matrix inside that a product reads as B^T (a linear layer's forward, the
 * tied head), of fewer than GEMM_FEW_ROWS_MIN_NK elements, is packed by
 * its first product into memory kept here, at most GEMM_PACKED_MAX_FLOATS
 * in all; later products read those panels (sgemm_own_packed): the same
 * sums without packing, which for decoding's few rows cost as much as the
 * product. */
#define GEMM_PACKED_MAX_FLOATS ((size_t)1 << 24)
void gemm_ctx_keep_packed(gemm_ctx *g, const float *base, size_t n);
void gemm_ctx_drop_packed(gemm_ctx *g, const float *base, size_t n);
/* At most n primitives are kept (default 4096); a shape met after that gets
 * one made for the call and destroyed after it (slower, bounded memory). */
void gemm_ctx_set_cache_limit(gemm_ctx *g, size_t n);

/* The process-wide context (see above). gemm_set_precision replaces it;
 * for GEMM_BF16 on a CPU without AVX512-BF16 or AMX it prints one line on
 * stderr saying that bf16 runs on a slow path. */
void gemm_set_precision(gemm_precision p);
gemm_ctx *gemm_default(void);
/* gemm_ctx_hold_inputs and gemm_ctx_set_readonly on the process-wide
 * context (no-ops without one: they never create it). */
void gemm_hold_inputs(int on);
void gemm_set_readonly(int which, const float *base, size_t n);
/* gemm_ctx_keep_packed and gemm_ctx_drop_packed on the process-wide
 * context (no-ops without one). */
void gemm_keep_packed(const float *base, size_t n);
void gemm_drop_packed(const float *base, size_t n);
/* gemm_ctx_mirror and gemm_ctx_drop_mirrors on the process-wide context
 * (no-ops without one), and whether it mirrors: GEMM_BF16 on oneDNN's
 * kernels (not on fp32 FMAs). */
void gemm_mirror(const float *src, size_t n, uint16_t *dst);
void gemm_drop_mirrors(const float *base, size_t n);
int gemm_mirrors(void);
/* gemm_ctx_bf16_fma on the process-wide context (tests; a no-op without
 * one), before its first product. */
void gemm_default_bf16_fma(int on);
void wdl_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void wdl_sgemm_n(int n, const gemm_prod *p);

/* "fp32" (GEMM_FP32_AUTO), "fp32-openblas" (GEMM_FP32) or "bf16": the
 * command line's --precision; dies naming the flag on anything else.
 * gemm_precision_name is the inverse ("fp32-onednn" for GEMM_FP32_DNNL). */
gemm_precision gemm_parse_precision(const char *flag, const char *s);
/* The same without dying: 0 for an unknown name. */
int gemm_precision_named(const char *s, gemm_precision *p);
#define GEMM_PRECISIONS "fp32, fp32-openblas or bf16"
const char *gemm_precision_name(gemm_precision p);
/* The programs' fp32 precisions: GEMM_FP32 and GEMM_FP32_AUTO. */
int gemm_is_fp32(gemm_precision p);
/* Whether oneDNN runs at AVX-512 or newer here (not capped by
 * ONEDNN_MAX_CPU_ISA): where AVX-512 builds run attention's tiles. */
int gemm_dnnl_avx512(void);
/* Whether attention's small products run on attn_tiles.h's tiles under
 * the process-wide context (for head sizes up to ATTN_TILES_MAX_HD):
 * GEMM_FP32_AUTO where gemm_dnnl_avx512() in an AVX-512 build, or in an
 * AVX2 build; else (and without a context) the backend's GEMMs. */
int gemm_attention_tiles(void);
/* Whether attention with this head_dim takes them: gemm_attention_tiles()
 * and head_dim <= ATTN_TILES_MAX_HD (the one place the kernels and the
 * bench ask). */
int gemm_attention_tiles_for(int64_t head_dim);
/* Whether bf16 attention with this head_dim runs on those fp32 tiles, its
 * products' operands holding bf16 values: GEMM_BF16 where its products
 * run on fp32 FMAs (gemm_ctx_bf16_fma: no AMX, no AMD dot products) and
 * the tiles would run fp32's. The callers round q, k, v and the
 * backward's output gradient to bf16 first (attention_round16, kernels.h);
 * the kernels round each block's probabilities and dS as they go. */
int gemm_attention_tiles16_for(int64_t head_dim);
/* Whether they run in bf16 on attn_amx.h's AMX tiles: GEMM_BF16 where
 * oneDNN runs AMX and the kernel grants this process the tile registers,
 * in an AMX-BF16 build. */
int gemm_attention_amx(void);
/* Whether they run in bf16 on attn_amx.h's AVX512-BF16 dot products:
 * GEMM_BF16 on an AMD CPU where oneDNN runs AVX512-BF16 (Zen 4 and
 * later), in an AVX512-BF16 build; Intel CPUs without AMX keep the
 * backend's products (fp32 FMAs there). */
int gemm_attention_dot(void);
/* oneDNN's effective CPU ISA, e.g. "avx512_core_amx", and whether it has
 * native bf16 arithmetic (AVX512-BF16 or AMX). */
const char *gemm_dnnl_isa(void);
int gemm_bf16_native(void);
/* Whether GEMM_BF16 runs its products on fp32 FMAs though oneDNN has bf16
 * kernels here: AVX512-BF16 without AMX on an Intel CPU (with AVX2 and
 * FMA), where the bf16 dot-product instruction retired at a quarter of
 * the FMAs' rate, half their arithmetic, and oneDNN's bf16 matmul ran
 * at half its fp32 rate (README, Precision). AMD's (Zen 4) runs it at
 * twice the FMAs' arithmetic and keeps oneDNN's kernels, as does AMX. */
int gemm_bf16_on_fma(void);
#endif
