/* step.h: one micro-batch of training or scoring on top of the model: the
 * forward pass(es), the fused chunked loss, the backward pass(es).
 * Plain SFT uses one model; WD-JT mixes the logits of a strong and a weak
 * model, z = lambda*z_strong + (1-lambda)*z_weak, and sends lambda*g and
 * (1-lambda)*g back into each. */
#ifndef WDL_STEP_H
#define WDL_STEP_H
#include <stdint.h>
#include "model.h"
#include "neftune.h"

typedef struct {
    wdl_model *strong;       /* the model being trained */
    wdl_model *weak;         /* NULL: plain SFT */
    double lambda;           /* mixing weight of the strong logits */
    int freeze_weak;         /* weak forward only, no weak gradient */
    int weak_constant;       /* control: weak logits replaced by 0 (SFT at T = 1/lambda) */
    const neftune_batch *noise;   /* NULL, or NEFTune noise on the strong model's
                                   * embeddings in step_train's forward (the
                                   * batch's layout and example keys) */
    void *scratch;           /* ce_chunked's scratch, ce_scratch_bytes for one or two sides */
    int64_t chunk;
} wd_step;

/* Chunk size that keeps the [chunk, V] logit block near 128 MB (at most
 * 1024 rows). Each chunk reads the head's weights once (Qwen3-0.6B's tied
 * head: 311 MB in bf16, 622 MB in fp32), so fewer, larger chunks pass over
 * them fewer times: 220 rows instead of 55 (a 32 MB block) took fp32
 * scoring of that shape from 9.0 to 7.2 s, bf16 from 3.25 to 3.16 s
 * (medians of three), for 97 MB more peak memory in bf16 and none in fp32
 * (loading sets its peak). Vocabularies up to 8,192 get 1024 rows either
 * way. */
int64_t step_chunk_for(int64_t vocab);
void step_init(wd_step *s, wdl_model *strong, wdl_model *weak, double lambda);
void step_free(wd_step *s);
/* ids/targets [B*T]; targets[n] < 0 = no loss; weights[n] scales each
 * position's NLL (use 1/total_tokens for a mean over the optimizer step).
 * Accumulates gradients of sum_n weights[n]*NLL_n; returns that sum.
 * Allocates nothing: every buffer it touches was sized by step_init and
 * model_alloc_acts. */
double step_train(wd_step *s, const int32_t *ids, const int32_t *targets, const float *weights,
                  int64_t B, int64_t T);
/* Forward only (model m): per-position NLL and entropy (0 where no target).
 * scratch: ce_scratch_bytes(1, chunk, hidden, vocab) bytes. */
double step_score(wdl_model *m, void *scratch, int64_t chunk, const int32_t *ids,
                  const int32_t *targets, int64_t B, int64_t T, double *nll, double *ent);
/* As step_score over nseq sequences packed back to back (model_forward_packed):
 * ids, targets, nll and ent hold sum(len) positions. */
double step_score_packed(wdl_model *m, void *scratch, int64_t chunk, const int32_t *ids,
                         const int32_t *targets, const int64_t *len, int64_t nseq, double *nll, double *ent);
#endif
