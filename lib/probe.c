/* probe.c: see probe.h. Logits are formed a chunk of positions at a time,
 * as in the loss, so a large vocabulary never needs an [N, V] tensor. */
#include "probe.h"
#include "common.h"
#include "kernels.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void logit_stats_init(logit_stats *s) {
    memset(s, 0, sizeof *s);
    s->max = -DBL_MAX;
    s->min = DBL_MAX;
}

void logit_stats_add(logit_stats *s, const float *z, const int32_t *y, int64_t m, int64_t V) {
    for (int64_t i = 0; i < m; i++) {
        const float *zr = z + i * V;
        int32_t t = y[i];
        double mx = zr[0], mn = zr[0], sum = 0, sq = 0;
        int64_t arg = 0;
        for (int64_t v = 0; v < V; v++) {
            if (zr[v] > mx) { mx = zr[v]; arg = v; }
            if (zr[v] < mn) mn = zr[v];
            sum += zr[v];
            sq += (double)zr[v] * zr[v];
        }
        double se = 0, sz = 0, pq = 0;
        for (int64_t v = 0; v < V; v++) { double e = exp(zr[v] - mx); se += e; sz += e * (zr[v] - mx); }
        for (int64_t v = 0; v < V; v++)
            if (v != t) { double p = exp(zr[v] - mx) / se; pq += p * p; }
        double mean = sum / (double)V, var = sq / (double)V - mean * mean;
        if (var < 0) var = 0;
        double bg = V > 1 ? (sum - zr[t]) / (double)(V - 1) : 0, py = exp(zr[t] - mx) / se;
        s->positions++;
        s->correct += arg == t;
        s->p99 += py > 0.99;
        s->p_target += py;
        s->entropy += log(se) - sz / se;
        s->p_max += 1.0 / se;
        s->mean += mean;
        s->std += sqrt(var);
        s->cnorm += sqrt(var * (double)V);
        s->l2 += sqrt(sq);
        s->target += zr[t];
        s->nontarget += bg;
        s->gap += zr[t] - bg;
        s->nontarget_grad_norm += sqrt(pq);
        if (mx > s->max) s->max = mx;
        if (mn < s->min) s->min = mn;
    }
}

void logit_stats_after_forward(logit_stats *s, wdl_model *m, const int32_t *targets, int64_t N) {
    const int64_t H = m->cfg.hidden, V = m->cfg.vocab, chunk = 64;
    float *z = xmalloc(sizeof(float) * (size_t)(chunk * V));
    float *hg = xmalloc(sizeof(float) * (size_t)(chunk * H));
    int32_t *y = xmalloc(sizeof(int32_t) * (size_t)chunk);
    int64_t *act = xmalloc(sizeof(int64_t) * (size_t)(N ? N : 1)), na = 0;
    for (int64_t n = 0; n < N; n++) if (targets[n] >= 0) act[na++] = n;
    for (int64_t a0 = 0; a0 < na; a0 += chunk) {
        int64_t c = na - a0 < chunk ? na - a0 : chunk;
        /* as ce_chunked: a few rows on CE_MIN_ROWS, the last repeated */
        const int64_t cz = ce_head_rows(c, H, V);
        for (int64_t i = 0; i < cz; i++)
            memcpy(hg + i * H, m->a.normf + act[a0 + (i < c ? i : c - 1)] * H, sizeof(float) * (size_t)H);
        for (int64_t i = 0; i < c; i++) y[i] = targets[act[a0 + i]];
        linear_forward(z, hg, model_head(m), cz, H, V);
        logit_stats_add(s, z, y, c, V);
    }
    free(z); free(hg); free(y); free(act);
}

void logit_stats_merge(logit_stats *s, const logit_stats *t) {
    s->positions += t->positions;
    s->correct += t->correct;
    s->p99 += t->p99;
    s->p_target += t->p_target;
    s->entropy += t->entropy;
    s->p_max += t->p_max;
    s->mean += t->mean;
    s->std += t->std;
    s->cnorm += t->cnorm;
    s->l2 += t->l2;
    s->target += t->target;
    s->nontarget += t->nontarget;
    s->gap += t->gap;
    s->nontarget_grad_norm += t->nontarget_grad_norm;
    if (t->max > s->max) s->max = t->max;
    if (t->min < s->min) s->min = t->min;
}

/* The fields of logit_stats by name: counts, then sums. */
#define LS_COUNTS(X) X(positions) X(correct) X(p99)
#define LS_SUMS(X) X(p_target) X(entropy) X(p_max) X(mean) X(std) X(cnorm) X(l2) X(target) X(nontarget) \
    X(gap) X(nontarget_grad_norm) X(max) X(min)

json_t *logit_stats_raw_json(const logit_stats *s) {
    json_t *j = json_object();
#define SET_I(f) json_object_set_new(j, #f, json_integer(s->f));
#define SET_R(f) json_object_set_new(j, #f, json_real(s->f));
    LS_COUNTS(SET_I)
    LS_SUMS(SET_R)
    return j;
}

int logit_stats_from_raw(logit_stats *s, const json_t *j) {
    logit_stats_init(s);
    json_t *v;
#define GET_I(f) if (!json_is_integer(v = json_object_get(j, #f))) return 0; s->f = json_integer_value(v);
#define GET_R(f) if (!json_is_real(v = json_object_get(j, #f))) return 0; s->f = json_real_value(v);
    LS_COUNTS(GET_I)
    LS_SUMS(GET_R)
    return 1;
}

json_t *logit_stats_json(const logit_stats *s) {
    double n = s->positions ? (double)s->positions : 1;
    json_t *lg = json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}",
                           "mean", s->mean / n, "std", s->std / n, "centred_norm", s->cnorm / n, "l2_norm", s->l2 / n,
                           "max", s->positions ? s->max : 0.0, "min", s->positions ? s->min : 0.0,
                           "entropy", s->entropy / n, "p_max", s->p_max / n, "target", s->target / n,
                           "nontarget", s->nontarget / n, "gap", s->gap / n);
    json_t *j = lg ? json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:o}", "positions", (json_int_t)s->positions,
                               "p_target", s->p_target / n, "token_accuracy", (double)s->correct / n,
                               "frac_p_target_gt_99", (double)s->p99 / n, "nontarget_mass", 1.0 - s->p_target / n,
                               "nontarget_grad_norm", s->nontarget_grad_norm / n, "logits", lg)
                   : NULL;
    /* json_pack refuses NaN and infinities (JSON has neither) */
    if (!j) die("the logit statistics are not finite (the model's logits overflow or are NaN)");
    return j;
}

void probe_run(wdl_model *m, const int32_t *ids, const int32_t *targets, int64_t B, int64_t T,
               probe_stats *out) {
    model_forward(m, ids, B, T);
    logit_stats s;
    logit_stats_init(&s);
    logit_stats_after_forward(&s, m, targets, B * T);
    double n = s.positions ? (double)s.positions : 1;
    *out = (probe_stats){.target_logit = s.target / n, .nontarget_logit = s.nontarget / n, .margin = s.gap / n,
                         .nontarget_mass = s.positions ? 1.0 - s.p_target / n : 0,
                         .nontarget_grad_norm = s.nontarget_grad_norm / n, .positions = s.positions};
}
