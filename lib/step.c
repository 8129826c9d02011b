/* step.c: see step.h. */
#include "step.h"
#include "common.h"
#include "kernels.h"
#include "gemm.h"
#include <stdlib.h>
#include <string.h>

int64_t step_chunk_for(int64_t vocab) {
    int64_t c = (32 << 20) / (vocab > 0 ? vocab : 1);
    if (c < 16) c = 16;
    if (c > 1024) c = 1024;
    return c;
}

void step_init(wd_step *s, wdl_model *strong, wdl_model *weak, double lambda) {
    memset(s, 0, sizeof *s);
    s->strong = strong; s->weak = weak; s->lambda = lambda;
    s->chunk = step_chunk_for(strong->cfg.vocab);
    s->scratch = xaligned(ce_scratch_bytes(weak ? 2 : 1, s->chunk, strong->cfg.hidden, strong->cfg.vocab));
}
void step_free(wd_step *s) { free(s->scratch); s->scratch = NULL; }

double step_train(wd_step *s, const int32_t *ids, const int32_t *targets, const float *weights,
                  int64_t B, int64_t T) {
    wdl_model *st = s->strong, *wk = s->weak;
    const int64_t N = B * T, H = st->cfg.hidden, V = st->cfg.vocab;
    /* bf16: the weights do not change within a step; each is converted once
     * here instead of by every product that reads it (a no-op in fp32) */
    gemm_set_readonly(0, st->params, st->nparams);
    if (wk && !s->weak_constant) gemm_set_readonly(1, wk->params, wk->nparams);
    if (s->noise) { st->embed_hook = neftune_hook; st->embed_ctx = (void *)s->noise; }
    model_forward(st, ids, B, T);
    st->embed_hook = NULL; st->embed_ctx = NULL;
    memset(st->a.dnormf, 0, sizeof(float) * (size_t)(N * H));
    float *h[2] = {st->a.normf, NULL}, *w[2] = {model_head(st), NULL};
    float *dh[2] = {st->a.dnormf, NULL}, *dw[2] = {model_head_grad(st), NULL};
    double coef[2] = {1.0, 0.0};
    int nsides = 1;
    if (wk && !s->weak_constant) {
        if (wk->cfg.vocab != V) die("weak and strong models have different vocabularies (%lld vs %lld)",
                                    (long long)wk->cfg.vocab, (long long)V);
        model_forward(wk, ids, B, T);
        h[1] = wk->a.normf; w[1] = model_head(wk);
        if (!s->freeze_weak) {
            memset(wk->a.dnormf, 0, sizeof(float) * (size_t)(N * wk->cfg.hidden));
            dh[1] = wk->a.dnormf; dw[1] = model_head_grad(wk);
        }
        coef[0] = s->lambda; coef[1] = 1.0 - s->lambda;
        nsides = 2;
    } else if (s->weak_constant) {
        coef[0] = s->lambda;  /* a constant weak logit cancels in the softmax */
    }
    if (nsides == 2 && wk->cfg.hidden != H) {
        /* ce_chunked takes one hidden size; models of different widths
         * would need two calls per chunk. */
        die("weak and strong models must have the same hidden size (%lld vs %lld)",
            (long long)wk->cfg.hidden, (long long)H);
    }
    double loss = 0;
    MODEL_TIMED(st, MT_LOSS, loss = ce_chunked(nsides, h, w, coef, dh, dw, targets, weights, N, H, V, NULL, NULL,
                                               s->scratch, s->chunk));
    model_backward(st);
    if (nsides == 2 && !s->freeze_weak) model_backward(wk);
    gemm_set_readonly(0, NULL, 0);
    gemm_set_readonly(1, NULL, 0);
    return loss;
}

/* The loss of the last forward's m->N positions. */
static double score_head(wdl_model *m, void *scratch, int64_t chunk, const int32_t *targets, double *nll,
                         double *ent) {
    float *h[1] = {m->a.normf}, *w[1] = {model_head(m)}, *nd[1] = {NULL};
    double coef[1] = {1.0};
    double loss = 0;
    MODEL_TIMED(m, MT_LOSS, loss = ce_chunked(1, h, w, coef, nd, nd, targets, NULL, m->N, m->cfg.hidden,
                                              m->cfg.vocab, nll, ent, scratch, chunk));
    return loss;
}

double step_score(wdl_model *m, void *scratch, int64_t chunk, const int32_t *ids,
                  const int32_t *targets, int64_t B, int64_t T, double *nll, double *ent) {
    model_forward(m, ids, B, T);
    return score_head(m, scratch, chunk, targets, nll, ent);
}

double step_score_packed(wdl_model *m, void *scratch, int64_t chunk, const int32_t *ids,
                         const int32_t *targets, const int64_t *len, int64_t nseq, double *nll, double *ent) {
    model_forward_packed(m, ids, len, nseq);
    return score_head(m, scratch, chunk, targets, nll, ent);
}
