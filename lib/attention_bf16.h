/* attention_bf16.h: causal GQA attention for bf16 precision, its products
 * batched over heads and sequences.
 *
 * attention_forward and attention_backward (lib/kernels.h) run every
 * (sequence, head, block of 64 query rows) as its own pair of small
 * products: at head_dim 32 a step of the bench model makes about 8,000 of
 * them, and oneDNN spends more time per call than per multiply-add there.
 * With bf16 products the float kernels hand the whole call to the functions
 * below instead: per block of query rows, one call per product covers every
 * head of a run of equal-length sequences, on dense bf16 copies made here
 * (queries, and keys and values repeated for the query heads that share
 * them). Softmax and its backward stay in fp32, with the float kernels'
 * own row arithmetic (attention_softmax_row): the backward recomputes the
 * probabilities from the saved statistics and the same batched product,
 * and the products read them rounded to bf16 as gemm_run would.
 *
 * Same semantics and arguments as attention_forward/attention_backward
 * without their scratch (the blocks live in the gemm context's per-thread
 * workspace, gemm_ctx_workspace). Each returns 0
 * without doing anything unless the process-wide gemm context computes in
 * bf16. Results are the same bytes for the same thread count. */
#ifndef WDL_ATTENTION_BF16_H
#define WDL_ATTENTION_BF16_H
#include "kernels.h"

int attention_bf16_forward(float *out, float *stat, const float *q, const float *k, const float *v, attn_dims d);
int attention_bf16_backward(float *dq, float *dk, float *dv, const float *dout, const float *stat, const float *q,
                            const float *k, const float *v, attn_dims d);
#endif
