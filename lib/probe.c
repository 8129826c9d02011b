/* probe.c: see probe.h. Logits are formed a chunk of positions at a time,
 * as in the loss, so a large vocabulary never needs an [N, V] tensor. */
#include "probe.h"
#include "common.h"
#include "kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void probe_run(wdl_model *m, const int32_t *ids, const int32_t *targets, int64_t B, int64_t T,
               probe_stats *out) {
    memset(out, 0, sizeof *out);
    model_forward(m, ids, B, T);
    const int64_t N = B * T, H = m->cfg.hidden, V = m->cfg.vocab, chunk = 64;
    float *z = xmalloc(sizeof(float) * (size_t)(chunk * V));
    float *hg = xmalloc(sizeof(float) * (size_t)(chunk * H));
    int64_t *act = xmalloc(sizeof(int64_t) * (size_t)N), na = 0;
    for (int64_t n = 0; n < N; n++) if (targets[n] >= 0) act[na++] = n;
    for (int64_t a0 = 0; a0 < na; a0 += chunk) {
        int64_t c = na - a0 < chunk ? na - a0 : chunk;
        for (int64_t i = 0; i < c; i++) memcpy(hg + i * H, m->a.normf + act[a0 + i] * H, sizeof(float) * (size_t)H);
        linear_forward(z, hg, model_head(m), c, H, V);
        for (int64_t i = 0; i < c; i++) {
            const float *zr = z + i * V;
            int32_t y = targets[act[a0 + i]];
            double mx = zr[0], se = 0, sum = 0, sq = 0;
            for (int64_t v = 1; v < V; v++) if (zr[v] > mx) mx = zr[v];
            for (int64_t v = 0; v < V; v++) { se += exp(zr[v] - mx); sum += zr[v]; }
            for (int64_t v = 0; v < V; v++) if (v != y) { double p = exp(zr[v] - mx) / se; sq += p * p; }
            double bg = (sum - zr[y]) / (double)(V - 1), py = exp(zr[y] - mx) / se;
            out->target_logit += zr[y];
            out->nontarget_logit += bg;
            out->margin += zr[y] - bg;
            out->nontarget_mass += 1 - py;
            out->nontarget_grad_norm += sqrt(sq);
        }
    }
    if (na) {
        out->target_logit /= na; out->nontarget_logit /= na; out->margin /= na;
        out->nontarget_mass /= na; out->nontarget_grad_norm /= na;
    }
    out->positions = na;
    free(z); free(hg); free(act);
}
