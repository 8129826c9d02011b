/* kernels.h: the transformer's layer kernels, forward and backward.
 *
 * Conventions (after llm.c): outputs first, then saved statistics, then
 * inputs and weights, then sizes, then caller-owned scratch. Matrices are
 * row-major; a weight W of a linear layer is [out, in] as in Hugging Face,
 * so y = x W^T.
 *
 * THE RULE, for every kernel below: a forward kernel overwrites its outputs
 * (activations and saved statistics alike); a backward kernel adds (+=) into
 * every gradient it writes, so a caller zeroes a gradient buffer once before
 * the first kernel that adds to it. The one exception carries it in its
 * name: a *_set kernel overwrites its input gradient dinp (its weight
 * gradient dw still adds). ce_chunked is forward and backward at once: it
 * overwrites nll_out/ent_out and adds into dh/dw. tests/test_kernels.c
 * checks the rule kernel by kernel.
 *
 * Kernels never allocate: a kernel that needs working memory takes it as a
 * scratch argument from the caller, and the function named beside it gives
 * the size the kernel uses, exactly.
 *
 * Each kernel exists in float (the trainer) and in double (suffix _f64, used
 * by the finite-difference gradient checks). Both come from one source,
 * lib/kernels_impl.h, whose definitions carry the float names: kernels.c
 * compiles it twice, the second time with R = double and every name
 * #defined to its _f64 twin. */
#ifndef WDL_KERNELS_H
#define WDL_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include "attn_amx.h"

/* Sizes of one attention call: B sequences of T positions; NH query heads,
 * KVH key/value heads (NH % KVH == 0), head dimension HD. With off (B + 1
 * row offsets) the sequences are packed instead: sequence b is rows
 * off[b]..off[b+1] (1 to T of them, no padding), and its probabilities are
 * [NH, Tb, Tb] right after the previous sequence's. */
typedef struct { int64_t B, T, NH, KVH, HD; const int64_t *off; } attn_dims;

/* RoPE's cos/sin of every (position, frequency) pair, owned by the caller
 * (the model): built on first use, rebuilt when theta or the head size
 * change or a larger position appears. Zero-initialise; free with
 * rope_cache_free. rope_cache_reserve builds it for positions < np ahead of
 * time, so that later calls below np never allocate. */
typedef struct { float *cs, *sn; double theta; int64_t hd, np; } rope_cache;
typedef struct { double *cs, *sn; double theta; int64_t hd, np; } rope_cache_f64;
void rope_cache_reserve(rope_cache *t, int64_t np, int64_t HD, double theta);
void rope_cache_reserve_f64(rope_cache_f64 *t, int64_t np, int64_t HD, double theta);
void rope_cache_free(rope_cache *t);
void rope_cache_free_f64(rope_cache_f64 *t);

/* ---- scratch sizes (shared by the kernels, so a size cannot drift from
 * what its kernel uses) ---- */

/* rmsnorm_backward sums dw over fixed blocks of rows, one partial per block
 * and column, then adds the blocks in order: the result does not depend on
 * the thread count. Scratch: this many doubles (needed only when dw). */
#define RMSNORM_ROW_BLOCK 64
static inline int64_t rmsnorm_backward_scratch(int64_t N, int64_t C) {
    return (N + RMSNORM_ROW_BLOCK - 1) / RMSNORM_ROW_BLOCK * C;
}

/* attention runs over causal blocks of query rows. Scratch, in reals of the
 * kernel's precision (packed sequences need at most as much as B padded
 * ones): attention_forward without att, a [rows of one block, T] area per
 * (sequence, query head) for the block's scores and probabilities;
 * attention_backward, two per (sequence, KV head), for a block's dP and,
 * without att, its recomputed P. */
#define ATT_ROW_BLOCK 64
static inline int64_t attention_scratch_rows(int64_t T) { return T < ATT_ROW_BLOCK ? T : ATT_ROW_BLOCK; }
/* In an AVX-512 build the float kernels may run their products on
 * attn_tiles.h's tiles, which read the keys transposed [HD, T] (forward)
 * and the keys and values transposed (backward), or in an AMX build on
 * attn_amx.h's, which keep the packed keys and values and a block's
 * packed operands in amx_work(T, HD) floats: that room comes first in each
 * area, the block rows after it. */
static inline int64_t attention_tiles_room(int64_t T, int64_t HD) {
    const int64_t amx = amx_work(T, HD);
    return ATTN_TILES_BUILT * (HD * T > amx ? HD * T : amx);
}
static inline int64_t attention_forward_area(int64_t T, int64_t HD) {
    return attention_tiles_room(T, HD) + attention_scratch_rows(T) * T;
}
static inline int64_t attention_backward_area(int64_t T, int64_t HD) {
    return 2 * (attention_tiles_room(T, HD) + attention_scratch_rows(T) * T);
}
static inline int64_t attention_backward_scratch(attn_dims d) {
    return d.B * d.KVH * attention_backward_area(d.T, d.HD);
}
static inline int64_t attention_forward_scratch(attn_dims d) {
    return d.B * d.NH * attention_forward_area(d.T, d.HD);
}
/* attention_forward's saved statistics: two reals per (position, query
 * head). */
static inline int64_t attention_stats(int64_t N, int64_t NH) { return 2 * N * NH; }

/* Rows of ce_chunked's logits and gathered hidden rows for a chunk of
 * `chunk` positions: at least CE_MIN_ROWS (gemm.h's GEMM_FEW_ROWS + 1),
 * on which a chunk of fewer positions computes its logits (ce_chunked,
 * below). */
#define CE_MIN_ROWS 17
static inline int64_t ce_rows(int64_t chunk) { return chunk > CE_MIN_ROWS ? chunk : CE_MIN_ROWS; }
/* The rows m positions' logits against a [V, C] head are computed on:
 * CE_MIN_ROWS where m is that few and the head that large (ce_chunked,
 * below), else m. */
int64_t ce_head_rows(int64_t m, int64_t C, int64_t V);
/* ce_chunked's scratch, byte offsets of its parts: the logits z [rows, V]
 * and the gathered hidden rows of each side [nsides, rows, C] (rows:
 * ce_rows(chunk)), the gradient rows [chunk, C] (reals of `real` bytes),
 * then the chunk's positions (int64) and losses (double). */
typedef struct { size_t z, hg, dhg, act, rowloss, total; } ce_layout;
static inline ce_layout ce_scratch_layout(int nsides, int64_t chunk, int64_t C, int64_t V, size_t real) {
    ce_layout l;
    size_t ch = (size_t)chunk, rows = (size_t)ce_rows(chunk);
    l.z = 0;
    l.hg = l.z + real * rows * (size_t)V;
    l.dhg = l.hg + real * rows * (size_t)C * (size_t)nsides;
    l.act = (l.dhg + real * ch * (size_t)C + 7) & ~(size_t)7;   /* 8-byte aligned */
    l.rowloss = l.act + sizeof(int64_t) * ch;
    l.total = l.rowloss + sizeof(double) * ch;
    return l;
}
/* Bytes of scratch ce_chunked (float) / ce_chunked_f64 uses. */
static inline size_t ce_scratch_bytes(int nsides, int64_t chunk, int64_t C, int64_t V) {
    return ce_scratch_layout(nsides, chunk, C, V, sizeof(float)).total;
}
static inline size_t ce_scratch_bytes_f64(int nsides, int64_t chunk, int64_t C, int64_t V) {
    return ce_scratch_layout(nsides, chunk, C, V, sizeof(double)).total;
}

/* ---- the kernels, float then double ---- */

/* out[n] = emb[ids[n]]; demb[ids[n]] += dout[n]. */
void embedding_forward(float *out, const int32_t *ids, const float *emb, int64_t N, int64_t C);
void embedding_forward_f64(double *out, const int32_t *ids, const double *emb, int64_t N, int64_t C);
void embedding_backward(float *demb, const float *dout, const int32_t *ids, int64_t N, int64_t C);
void embedding_backward_f64(double *demb, const double *dout, const int32_t *ids, int64_t N, int64_t C);

/* out = inp w^T, inp [N,C], w [OC,C]. Backward: dinp += dout w and
 * dw += dout^T inp (either may be NULL); the _set variant overwrites dinp
 * (never NULL there): it saves zeroing a buffer that only this product fills. */
void linear_forward(float *out, const float *inp, const float *w, int64_t N, int64_t C, int64_t OC);
void linear_forward_f64(double *out, const double *inp, const double *w, int64_t N, int64_t C, int64_t OC);
void linear_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                     int64_t N, int64_t C, int64_t OC);
void linear_backward_f64(double *dinp, double *dw, const double *dout, const double *inp, const double *w,
                         int64_t N, int64_t C, int64_t OC);
void linear_backward_set(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                         int64_t N, int64_t C, int64_t OC);
void linear_backward_set_f64(double *dinp, double *dw, const double *dout, const double *inp, const double *w,
                             int64_t N, int64_t C, int64_t OC);

/* n linear layers reading one input (n <= GEMM_N_MAX of gemm.h): out_i =
 * inp W_i^T [N, OC_i], the bytes of linear_forward on each. Their backward:
 * dinp = (set) or += sum of dout_i W_i in order i, then dw_i += dout_i^T
 * inp, the bytes of linear_backward (linear_backward_set first, with set)
 * on each in turn. Float runs each group in one call of the backend. */
void linear_forward_n(int n, float *const *out, const float *inp, const float *const *w, const int64_t *OC,
                      int64_t N, int64_t C);
void linear_forward_n_f64(int n, double *const *out, const double *inp, const double *const *w, const int64_t *OC,
                          int64_t N, int64_t C);
void linear_backward_n(int n, float *dinp, float *const *dw, float *const *dout, const float *inp,
                       const float *const *w, const int64_t *OC, int64_t N, int64_t C, int set);
void linear_backward_n_f64(int n, double *dinp, double *const *dw, double *const *dout, const double *inp,
                           const double *const *w, const int64_t *OC, int64_t N, int64_t C, int set);

/* RMSNorm over rows of C (HF Qwen3RMSNorm); rstd [N] is saved for backward.
 * dinp or dw may be NULL; part: rmsnorm_backward_scratch(N, C) doubles when
 * dw is wanted (else may be NULL). */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int64_t N, int64_t C, double eps);
void rmsnorm_forward_f64(double *out, double *rstd, const double *inp, const double *w, int64_t N, int64_t C,
                         double eps);
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int64_t N, int64_t C, double *part);
void rmsnorm_backward_f64(double *dinp, double *dw, const double *dout, const double *inp, const double *w,
                          const double *rstd, int64_t N, int64_t C, double *part);
void rmsnorm_backward_set(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                          const float *rstd, int64_t N, int64_t C, double *part);
void rmsnorm_backward_set_f64(double *dinp, double *dw, const double *dout, const double *inp, const double *w,
                              const double *rstd, int64_t N, int64_t C, double *part);
/* sum = a + b, out = rmsnorm(sum) * w (residual_forward then rmsnorm_forward,
 * fused: the same bytes, one pass over memory). */
void residual_rmsnorm_forward(float *sum, float *out, float *rstd, const float *a, const float *b, const float *w,
                              int64_t N, int64_t C, double eps);
void residual_rmsnorm_forward_f64(double *sum, double *out, double *rstd, const double *a, const double *b,
                                  const double *w, int64_t N, int64_t C, double eps);

/* Rotate-half RoPE on rows [N, H, HD] at positions pos[N]. */
void rope_forward(float *out, rope_cache *tab, const float *inp, const int32_t *pos,
                  int64_t N, int64_t H, int64_t HD, double theta);
void rope_forward_f64(double *out, rope_cache_f64 *tab, const double *inp, const int32_t *pos,
                      int64_t N, int64_t H, int64_t HD, double theta);
void rope_backward(float *dinp, rope_cache *tab, const float *dout, const int32_t *pos,
                   int64_t N, int64_t H, int64_t HD, double theta);
void rope_backward_f64(double *dinp, rope_cache_f64 *tab, const double *dout, const int32_t *pos,
                       int64_t N, int64_t H, int64_t HD, double theta);
void rope_backward_set(float *dinp, rope_cache *tab, const float *dout, const int32_t *pos,
                       int64_t N, int64_t H, int64_t HD, double theta);
void rope_backward_set_f64(double *dinp, rope_cache_f64 *tab, const double *dout, const int32_t *pos,
                           int64_t N, int64_t H, int64_t HD, double theta);
/* QK-norm (rmsnorm over rows of HD, weight w [HD], rstd [N*H]) then RoPE,
 * fused: the same bytes as rmsnorm_forward then rope_forward. */
void qknorm_rope_forward(float *out, float *rstd, rope_cache *tab, const float *inp, const float *w,
                         const int32_t *pos, int64_t N, int64_t H, int64_t HD, double eps, double theta);
void qknorm_rope_forward_f64(double *out, double *rstd, rope_cache_f64 *tab, const double *inp, const double *w,
                             const int32_t *pos, int64_t N, int64_t H, int64_t HD, double eps, double theta);
/* Its backward, fused and _set: dinp overwritten with the bytes of
 * rope_backward_set into a buffer then rmsnorm_backward into a zeroed dinp
 * (inp and rstd as the forward had them, part as rmsnorm_backward's for N*H
 * rows of HD; dw added), in one pass over the rows. */
void qknorm_rope_backward_set(float *dinp, float *dw, rope_cache *tab, const float *dout, const float *inp,
                              const float *w, const float *rstd, const int32_t *pos, int64_t N, int64_t H,
                              int64_t HD, double theta, double *part);
void qknorm_rope_backward_set_f64(double *dinp, double *dw, rope_cache_f64 *tab, const double *dout,
                                  const double *inp, const double *w, const double *rstd, const int32_t *pos,
                                  int64_t N, int64_t H, int64_t HD, double theta, double *part);

/* Causal GQA attention. For a backward the forward saves either the
 * probabilities, att [B, NH, T, T] (packed: each sequence's [NH, Tb, Tb]),
 * or, in stats (attention_stats(N, NH) reals), each row's softmax
 * statistics, from which the backward recomputes them a block at a time
 * (the same bits, memory linear in T); a forward-only call passes neither.
 * The backward takes whichever the forward saved (att if not NULL).
 * Scratch: attention_forward_scratch(d) reals for a forward without att
 * (else it may be NULL), attention_backward_scratch(d) for the backward. */
void attention_forward(float *out, float *att, float *stats, const float *q, const float *k, const float *v,
                       attn_dims d, float *scratch);
void attention_forward_f64(double *out, double *att, double *stats, const double *q, const double *k,
                           const double *v, attn_dims d, double *scratch);
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *stats,
                        const float *q, const float *k, const float *v, attn_dims d, float *scratch);
void attention_backward_f64(double *dq, double *dk, double *dv, const double *dout, const double *att,
                            const double *stats, const double *q, const double *k, const double *v, attn_dims d,
                            double *scratch);
/* attention_backward overwriting dq, dk and dv instead (the bytes of adding
 * into zeroed buffers; each parallel task zeroes the slices it sums). */
void attention_backward_set(float *dq, float *dk, float *dv, const float *dout, const float *att,
                            const float *stats, const float *q, const float *k, const float *v, attn_dims d,
                            float *scratch);
void attention_backward_set_f64(double *dq, double *dk, double *dv, const double *dout, const double *att,
                                const double *stats, const double *q, const double *k, const double *v,
                                attn_dims d, double *scratch);

/* x rounded to bf16 in place (to nearest even, a NaN kept quiet; floats
 * that hold bf16 values): attention's q, k, v and the backward's output
 * gradient where bf16 attention runs on the fp32 tiles (gemm.h's
 * gemm_attention_tiles16_for), whose every product reads them rounded. */
void attention_round16(float *x, int64_t n);

/* out = silu(gate) * up, elementwise over n. */
void swiglu_forward(float *out, const float *gate, const float *up, int64_t n);
void swiglu_forward_f64(double *out, const double *gate, const double *up, int64_t n);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);
void swiglu_backward_f64(double *dgate, double *dup, const double *dout, const double *gate, const double *up,
                         int64_t n);
void swiglu_backward_set(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);
void swiglu_backward_set_f64(double *dgate, double *dup, const double *dout, const double *gate, const double *up,
                             int64_t n);

/* out = a + b; its backward is the identity, so it has no kernel. */
void residual_forward(float *out, const float *a, const float *b, int64_t n);
void residual_forward_f64(double *out, const double *a, const double *b, int64_t n);

/* ce_chunked: fused linear head + softmax + cross-entropy over N positions.
 * One side s is final hidden states h[s] [N,C] and a head w[s] [V,C], with
 * coefficient coef[s]: z_n = sum_s coef[s] * h_s[n] W_s^T (a [V] row;
 * nsides = 1 for plain CE, 2 for the mixed-logit loss). Positions
 * with targets[n] < 0 or weights[n] == 0 are skipped entirely. Returns
 * sum_n weights[n] * NLL_n. With dh[s]/dw[s] non-NULL, adds the gradient of
 * that sum: dz_n = weights[n]*(softmax(z_n) - e_y), side s gets coef[s]*dz.
 * nll_out/ent_out (may be NULL) receive per-position NLL and predictive
 * entropy (unweighted; 0 for skipped positions). Positions go `chunk` at a
 * time, so no [N,V] tensor is ever held; scratch: ce_scratch_bytes(nsides,
 * chunk, C, V) bytes (_f64: ce_scratch_bytes_f64), 8-byte aligned. In
 * float, a chunk of GEMM_FEW_ROWS positions or fewer against a head of
 * GEMM_FEW_ROWS_MIN_NK weights or more computes its logits on
 * CE_MIN_ROWS rows, its last repeated: such a product of a few rows would
 * leave the route of the others (in fp32 for oneDNN, and with a BF16
 * checkpoint read in place through a dense fp32 copy of the head, 622 MB
 * for Qwen3-0.6B), so each position's logits are the same products'
 * whatever else its chunk holds. */
double ce_chunked(int nsides, float *const *h, float *const *w, const double *coef,
                  float *const *dh, float *const *dw, const int32_t *targets,
                  const float *weights, int64_t N, int64_t C, int64_t V,
                  double *nll_out, double *ent_out, void *scratch, int64_t chunk);
double ce_chunked_f64(int nsides, double *const *h, double *const *w, const double *coef,
                      double *const *dh, double *const *dw, const int32_t *targets,
                      const float *weights, int64_t N, int64_t C, int64_t V,
                      double *nll_out, double *ent_out, void *scratch, int64_t chunk);
#endif
