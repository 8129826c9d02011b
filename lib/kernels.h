/* kernels.h: the transformer's layer kernels, forward and backward.
 *
 * Conventions (after llm.c): outputs first, then saved statistics, then
 * inputs and weights, then sizes. Backward kernels ACCUMULATE (+=) into every
 * gradient they write, so callers zero gradient buffers once per step.
 * Matrices are row-major; a weight W of a linear layer is [out, in] as in
 * Hugging Face, so y = x W^T.
 *
 * Each kernel exists in float (the trainer) and in double (suffix _f64, used
 * by the finite-difference gradient checks); both are generated from one
 * source, lib/kernels_impl.h. */
#ifndef WDL_KERNELS_H
#define WDL_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Sizes of one attention call: B sequences of T positions; NH query heads,
 * KVH key/value heads (NH % KVH == 0), head dimension HD. */
typedef struct { int64_t B, T, NH, KVH, HD; } attn_dims;

/* One side of a (mixed) logit: final hidden states h [N,C] and head W [V,C],
 * coefficient `coef` in z = sum_s coef_s * h_s W_s^T. dh/dW may be NULL
 * (no gradient wanted for that side). */
#define CE_SIDES 2

/* RoPE's cos/sin of every (position, frequency) pair, owned by the caller
 * (the model): built on first use, rebuilt when theta or the head size
 * change or a larger position appears. Zero-initialise; free with
 * rope_cache_free. */
#define WDL_ROPE_CACHE(R, S)                                                        \
    typedef struct { R *cs, *sn; double theta; int64_t hd, np; } rope_cache##S;     \
    void rope_cache_free##S(rope_cache##S *t);
WDL_ROPE_CACHE(float, )
WDL_ROPE_CACHE(double, _f64)

#define WDL_KERNEL_DECLS(R, S)                                                      \
    void embedding_forward##S(R *out, const int32_t *ids, const R *emb, int64_t N, int64_t C); \
    void embedding_backward##S(R *demb, const R *dout, const int32_t *ids, int64_t N, int64_t C); \
    void linear_forward##S(R *out, const R *inp, const R *w, int64_t N, int64_t C, int64_t OC); \
    void linear_backward##S(R *dinp, R *dw, const R *dout, const R *inp, const R *w,   \
                            int64_t N, int64_t C, int64_t OC);                         \
    void linear_backward_set##S(R *dinp, R *dw, const R *dout, const R *inp, const R *w, \
                                int64_t N, int64_t C, int64_t OC);                     \
    void rmsnorm_forward##S(R *out, R *rstd, const R *inp, const R *w, int64_t N, int64_t C, double eps); \
    void rmsnorm_backward##S(R *dinp, R *dw, const R *dout, const R *inp, const R *w,  \
                             const R *rstd, int64_t N, int64_t C);                     \
    void rope_forward##S(R *out, rope_cache##S *tab, const R *inp, const int32_t *pos, \
                         int64_t N, int64_t H, int64_t HD, double theta);              \
    void rope_backward##S(R *dinp, rope_cache##S *tab, const R *dout, const int32_t *pos, \
                          int64_t N, int64_t H, int64_t HD, double theta);             \
    void attention_forward##S(R *out, R *att, const R *q, const R *k, const R *v, attn_dims d); \
    void attention_backward##S(R *dq, R *dk, R *dv, const R *dout, const R *att, const R *q, \
                               const R *k, const R *v, attn_dims d);                   \
    void swiglu_forward##S(R *out, const R *gate, const R *up, int64_t n);              \
    void swiglu_backward##S(R *dgate, R *dup, const R *dout, const R *gate, const R *up, int64_t n); \
    void residual_forward##S(R *out, const R *a, const R *b, int64_t n);                \
    double ce_chunked##S(int nsides, R *const *h, R *const *w, const double *coef,      \
                         R *const *dh, R *const *dw, const int32_t *targets,           \
                         const float *weights, int64_t N, int64_t C, int64_t V,        \
                         double *nll_out, double *ent_out, R *scratch, int64_t chunk);

WDL_KERNEL_DECLS(float, )
WDL_KERNEL_DECLS(double, _f64)

/* ce_chunked: fused linear head + softmax + cross-entropy over N positions.
 * z_n = sum_s coef[s] * h_s[n] W_s^T (a [V] row; nsides = 1 for plain CE,
 * 2 for the mixed-logit loss). Positions with targets[n] < 0 or weights[n] == 0
 * are skipped entirely. Returns sum_n weights[n] * NLL_n. With dh/dw non-NULL,
 * accumulates the gradient of that sum: dz_n = weights[n]*(softmax(z_n) - e_y),
 * side s gets coef[s]*dz. nll_out/ent_out (may be NULL) receive per-position
 * NLL and predictive entropy (unweighted; 0 for skipped positions).
 * scratch holds chunk*V*(nsides+1) reals; no [N,V] tensor is ever held. */

/* Bytes of scratch ce_chunked needs. */
static inline size_t ce_scratch_elems(int nsides, int64_t chunk, int64_t V) {
    return (size_t)chunk * (size_t)V * (size_t)(nsides + 1);
}
#endif
