/* kernels.c: compiles lib/kernels_impl.h twice: in float under the names it
 * is written with (GEMMs through the backend of lib/gemm.h), then in double
 * (cblas_dgemm, for the gradient checks) with every name below mapped to its
 * _f64 twin. A kernel added to kernels_impl.h needs its line in that table;
 * a missing one fails the build (the name is then defined twice). */
#include "kernels.h"
#include "common.h"
#include "gemm.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* glibc's vector math library (libmvec, linked with -lmvec) has SIMD
 * versions of expf; declaring it so lets the loops marked `omp simd` call
 * them 8 or 16 lanes at a time instead of one scalar call per element. */
#pragma omp declare simd notinbranch
float expf(float);

/* Where sequence b of an attention call lives: its first row, its length,
 * and its areas in att and in the forward's and the backward's scratch. */
typedef struct { int64_t row, T, att, fwd, dp; } att_seq;
static void att_seqs(att_seq *s, attn_dims d) {
    int64_t att = 0, fwd = 0, dp = 0;
    for (int64_t b = 0; b < d.B; b++) {
        int64_t T = d.off ? d.off[b + 1] - d.off[b] : d.T;
        s[b] = (att_seq){d.off ? d.off[b] : b * d.T, T, att, fwd, dp};
        att += d.NH * T * T;
        fwd += d.NH * attention_scratch_rows(T) * T;
        dp += 2 * d.KVH * attention_scratch_rows(T) * T;
    }
}

/* Attention's float row reductions (see att_row_max and att_row_sum in
 * kernels_impl.h) in AVX-512 registers, where the compiler targets it: the
 * same 16 lanes combined in the same pairwise order, so the same bits as the
 * portable loops, which GCC compiles to a round trip through the stack. */
#if defined(__AVX512F__)
#include <immintrin.h>
#define ATT_AVX512 1
static inline float att_row_max_avx512(const float *x, int64_t n) {
    __m512 l = _mm512_set1_ps(x[0]);
    int64_t u = 0;
    for (; u + 16 <= n; u += 16) l = _mm512_max_ps(_mm512_loadu_ps(x + u), l);
    if (u < n) {
        __mmask16 m = (__mmask16)((1u << (n - u)) - 1);
        l = _mm512_mask_max_ps(l, m, _mm512_maskz_loadu_ps(m, x + u), l);
    }
    /* lanes j and j + w, w = 8, 4, 2, 1: max(a, b) is a > b ? a : b */
    __m256 a = _mm512_castps512_ps256(l), b = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(l), 1));
    __m256 c = _mm256_max_ps(b, a);
    __m128 d = _mm_max_ps(_mm256_extractf128_ps(c, 1), _mm256_castps256_ps128(c));
    __m128 e = _mm_max_ps(_mm_movehl_ps(d, d), d);
    return _mm_cvtss_f32(_mm_max_ss(_mm_shuffle_ps(e, e, 1), e));
}
static inline void widen16(__m512 v, __m512d *lo, __m512d *hi) {
    *lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    *hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
static inline double att_row_sum_avx512(const float *x, const float *y, int64_t n) {
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();   /* lanes 0-7, 8-15 */
    for (int64_t u = 0; u < n; u += 16) {
        __mmask16 m = n - u >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - u)) - 1);
        __m512d vl, vh, wl, wh;
        widen16(_mm512_maskz_loadu_ps(m, x + u), &vl, &vh);
        if (y) {   /* the products of two floats are exact in double */
            widen16(_mm512_maskz_loadu_ps(m, y + u), &wl, &wh);
            lo = _mm512_fmadd_pd(vl, wl, lo);
            hi = _mm512_fmadd_pd(vh, wh, hi);
        } else {
            lo = _mm512_add_pd(lo, vl);
            hi = _mm512_add_pd(hi, vh);
        }
    }
    __m512d s8 = _mm512_add_pd(lo, hi);
    __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}
#else
#define ATT_AVX512 0
#endif

#define R float
/* float products go through the backend (fp32 OpenBLAS or bf16 oneDNN) */
#define GEMM(order, ta, tb, ...) wdl_sgemm((ta) == CblasTrans, (tb) == CblasTrans, __VA_ARGS__)
#define EXP expf
#define GEMM_HOLD(on) gemm_hold_inputs(on)
#include "kernels_impl.h"
#undef R
#undef GEMM
#undef EXP
#undef GEMM_HOLD

#undef ATT_AVX512
#define ATT_AVX512 0
#define R double
#define GEMM cblas_dgemm
#define EXP exp
#define GEMM_HOLD(on) ((void)0)
/* the double twins: every name kernels_impl.h defines */
#define rope_cache rope_cache_f64
#define rope_build rope_build_f64
#define rope_cache_reserve rope_cache_reserve_f64
#define rope_cache_free rope_cache_free_f64
#define rope_apply rope_apply_f64
#define embedding_forward embedding_forward_f64
#define embedding_backward embedding_backward_f64
#define linear_forward linear_forward_f64
#define linear_backward linear_backward_f64
#define linear_backward_set linear_backward_set_f64
#define rmsnorm_forward rmsnorm_forward_f64
#define rms_row rms_row_f64
#define rmsnorm_backward rmsnorm_backward_f64
#define rope_forward rope_forward_f64
#define rope_backward rope_backward_f64
#define rope_backward_set rope_backward_set_f64
#define qknorm_rope_forward qknorm_rope_forward_f64
#define residual_rmsnorm_forward residual_rmsnorm_forward_f64
#define swiglu_backward_set swiglu_backward_set_f64
#define attention_forward attention_forward_f64
#define attention_backward attention_backward_f64
#define att_exp_row att_exp_row_f64
#define att_row_max att_row_max_f64
#define att_row_sum att_row_sum_f64
#define att_softmax_rows att_softmax_rows_f64
#define att_probs_rows att_probs_rows_f64
#define swiglu_forward swiglu_forward_f64
#define swiglu_backward swiglu_backward_f64
#define residual_forward residual_forward_f64
#define ce_chunked ce_chunked_f64
#include "kernels_impl.h"
