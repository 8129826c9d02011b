/* kernels.c: compiles lib/kernels_impl.h twice: in float under the names it
 * is written with (GEMMs through the backend of lib/gemm.h), then in double
 * (cblas_dgemm, for the gradient checks) with every name below mapped to its
 * _f64 twin. A kernel added to kernels_impl.h needs its line in that table;
 * a missing one fails the build (the name is then defined twice). ATT_TILES
 * is 1 for the float pass only: attention's products may then run on
 * attn_tiles.h's tiles. */
#include "kernels.h"
#include "common.h"
#include "gemm.h"
#include "lanes.h"
#include "safetensors.h"
#include <cblas.h>
#include <omp.h>
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
        fwd += d.NH * attention_forward_area(T, d.HD);
        dp += d.KVH * attention_backward_area(T, d.HD);
    }
}

/* x rounded to bf16 and widened back: safetensors.h's conversions */
static inline float bf16_round(float x) { return st_bf16_to_f32(st_f32_to_bf16(x)); }

/* Rows 0..m-1 of src (n floats each, ld apart) rounded to bf16 into dst
 * (src itself allowed): bf16 attention's probabilities and dS on the
 * tiles (gemm_attention_tiles16_for) */
static const float *round16_rows(float *dst, const float *src, int64_t m, int64_t n, int64_t ld) {
    for (int64_t i = 0; i < m; i++) {
        const float *s = src + i * ld;
        float *d = dst + i * ld;
#pragma omp simd
        for (int64_t u = 0; u < n; u++) d[u] = bf16_round(s[u]);
    }
    return dst;
}

void attention_round16(float *x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) x[i] = bf16_round(x[i]);
}

#define R float
/* float products go through the backend (fp32 OpenBLAS or bf16 oneDNN) */
#define GEMM(order, ta, tb, ...) wdl_sgemm((ta) == CblasTrans, (tb) == CblasTrans, __VA_ARGS__)
#define EXP expf
#define GEMM_HOLD(on) gemm_hold_inputs(on)
#define ROW_MAX lanes_max_f32
#define ROW_SUM lanes_sum_f32
#define ATT_TILES 1   /* attention may take attn_tiles.h's tiles */
#define GEMM_N 1      /* products sharing an operand go to the backend together (gemm_run_n) */
#define CE_PAD_FEW 1  /* ce_chunked's few rows against a large head on CE_MIN_ROWS (kernels.h) */
_Static_assert(CE_MIN_ROWS == GEMM_FEW_ROWS + 1, "ce_chunked's rows for a few positions: one past gemm.h's few");
int64_t ce_head_rows(int64_t m, int64_t C, int64_t V) {
    return m < CE_MIN_ROWS && V * C >= GEMM_FEW_ROWS_MIN_NK ? CE_MIN_ROWS : m;
}
#include "kernels_impl.h"
#undef ATT_TILES
#undef GEMM_N
#undef CE_PAD_FEW
#undef R
#undef GEMM
#undef EXP
#undef GEMM_HOLD
#undef ROW_MAX
#undef ROW_SUM

#define R double
#define GEMM cblas_dgemm
#define EXP exp
#define GEMM_HOLD(on) ((void)0)
#define ROW_MAX lanes_max_f64
#define ROW_SUM lanes_sum_f64
#define ATT_TILES 0
#define GEMM_N 0
#define CE_PAD_FEW 0  /* cblas_dgemm: one route */
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
#define linear_back linear_back_f64
#define linear_forward_n linear_forward_n_f64
#define linear_backward_n linear_backward_n_f64
#define rmsnorm_forward rmsnorm_forward_f64
#define rms_row rms_row_f64
#define rmsnorm_backward rmsnorm_backward_f64
#define rmsnorm_backward_set rmsnorm_backward_set_f64
#define rms_back_row rms_back_row_f64
#define rms_back_dw rms_back_dw_f64
#define rms_block_part rms_block_part_f64
#define rms_back rms_back_f64
#define rope_table rope_table_f64
#define rope_row rope_row_f64
#define qknorm_rope_backward_set qknorm_rope_backward_set_f64
#define rope_forward rope_forward_f64
#define rope_backward rope_backward_f64
#define rope_backward_set rope_backward_set_f64
#define qknorm_rope_forward qknorm_rope_forward_f64
#define residual_rmsnorm_forward residual_rmsnorm_forward_f64
#define swiglu_backward_set swiglu_backward_set_f64
#define attention_forward attention_forward_f64
#define attention_backward attention_backward_f64
#define attention_backward_set attention_backward_set_f64
#define att_back att_back_f64
#define att_exp_row att_exp_row_f64
#define att_norm_row att_norm_row_f64
#define att_softmax_rows att_softmax_rows_f64
#define att_probs_rows att_probs_rows_f64
#define swiglu_forward swiglu_forward_f64
#define swiglu_backward swiglu_backward_f64
#define residual_forward residual_forward_f64
#define ce_chunked ce_chunked_f64
#include "kernels_impl.h"
