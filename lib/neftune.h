/* neftune.h: NEFTune (Jain et al. 2023, "NEFTune: Noisy Embeddings Improve
 * Instruction Finetuning"), the paper's SFT baseline with embedding noise.
 *
 * During training only, each element of an example's input embeddings gets
 * u * alpha / sqrt(L d), u uniform in [-1, 1), L the example's tokens (its
 * own length, padding not counted) and d the hidden size. The noise is
 * additive, so the backward pass is unchanged.
 *
 * Each element's u is a hash of (seed, the example's key, position,
 * channel), not a stream: the same example visited in the same epoch gets
 * the same noise wherever it sits in a batch, on any thread count, rank
 * split or after a resume. */
#ifndef WDL_NEFTUNE_H
#define WDL_NEFTUNE_H
#include <stdint.h>

typedef struct {
    double alpha;          /* > 0 */
    uint64_t seed;
    int64_t B, T;          /* the batch: B rows of T positions */
    const uint64_t *key;   /* [B] each row's example, e.g. epoch * n + index */
    const int64_t *len;    /* [B] each row's tokens (positions past it are padding) */
} neftune_batch;

/* The uniform in [-1, 1) of one element (24 bits: exact in float). */
float neftune_u(uint64_t seed, uint64_t key, int64_t pos, int64_t channel);
/* x [B*T, H] += the noise of nb's real positions (padding untouched). */
void neftune_add(float *x, int64_t H, const neftune_batch *nb);
/* An embed hook for wdl_model (ctx: a neftune_batch). */
void neftune_hook(void *ctx, float *x, int64_t N, int64_t H);
#endif
