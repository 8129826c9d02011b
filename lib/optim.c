/* optim.c: see optim.h. */
#include "optim.h"
#include "common.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 65536
/* blocks per parallel pass: their partial sums fit on the stack, so the
 * norm allocates nothing inside a training step */
#define GROUP 256

double grad_norm(const wdl_model *m) {
    size_t n = m->nparams, nb = (n + BLOCK - 1) / BLOCK;
    const float *g = m->grads;
    double s = 0, part[GROUP];
    for (size_t b0 = 0; b0 < nb; b0 += GROUP) {
        size_t b1 = b0 + GROUP < nb ? b0 + GROUP : nb;
#pragma omp parallel for schedule(static)
        for (size_t b = b0; b < b1; b++) {
            size_t e = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
            double sb = 0;
            for (size_t i = b * BLOCK; i < e; i++) sb += (double)g[i] * g[i];
            part[b - b0] = sb;
        }
        for (size_t b = b0; b < b1; b++) s += part[b - b0];   /* block order, as one pass would */
    }
    return sqrt(s);
}

void grad_scale(wdl_model *m, float s) {
    float *g = m->grads;
    size_t n = m->nparams;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) g[i] *= s;
}

static void scale_to_clip(wdl_model *const *ms, int n, double norm, double clip) {
    if (clip <= 0) return;
    double coef = clip / (norm + 1e-6);
    if (coef < 1.0)
        for (int i = 0; i < n; i++) grad_scale(ms[i], (float)coef);
}

double grad_clip(wdl_model *m, double clip) {
    double norm = grad_norm(m);
    scale_to_clip(&m, 1, norm, clip);
    return norm;
}

double grad_clip_joint(wdl_model *const *ms, int n, double clip, double *norms) {
    double sq = 0;
    for (int i = 0; i < n; i++) {
        double g = grad_norm(ms[i]);
        if (norms) norms[i] = g;
        sq += g * g;
    }
    double norm = sqrt(sq);
    scale_to_clip(ms, n, norm, clip);
    return norm;
}

void adamw_step(wdl_model *m, const adamw_cfg *c, double lr, int64_t t) {
    float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    float step = (float)(lr / bc1), sbc2 = (float)sqrt(bc2);
    /* one parallel region for every kind (each element is on its own, so
     * no thread waits between kinds): one wake-up of sleeping threads per
     * step, not one per kind */
#pragma omp parallel
    for (int k = 0; k < W_KINDS; k++) {
        size_t n = m->layer_elems[k] * (m->layered[k] ? (size_t)m->cfg.layers : 1), off = m->off[k];
        float decay = model_kind_decays(k) ? (float)(1.0 - lr * c->weight_decay) : 1.0f;
        float *p = m->params + off, *g = m->grads + off, *mm = m->m + off, *vv = m->v + off;
#pragma omp for schedule(static) nowait
        for (size_t i = 0; i < n; i++) {
            p[i] *= decay;
            mm[i] = b1 * mm[i] + (1 - b1) * g[i];
            vv[i] = b2 * vv[i] + (1 - b2) * g[i] * g[i];
            p[i] -= step * mm[i] / (sqrtf(vv[i]) / sbc2 + eps);
        }
    }
}

double lr_at(lr_schedule s, double lr, int64_t step, int64_t total, int64_t warmup, double min_frac) {
    if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
    if (s == SCHED_CONSTANT || total <= warmup) return lr;
    double p = (double)(step - warmup) / (double)(total - warmup);
    if (p > 1) p = 1;
    double f = s == SCHED_COSINE ? 0.5 * (1 + cos(M_PI * p)) : 1 - p;
    return lr * (min_frac + (1 - min_frac) * f);
}

int lr_schedule_from_name(const char *name) {
    if (!strcmp(name, "cosine")) return SCHED_COSINE;
    if (!strcmp(name, "linear")) return SCHED_LINEAR;
    if (!strcmp(name, "constant")) return SCHED_CONSTANT;
    return -1;
}
