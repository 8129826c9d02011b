/* generate.c: see generate.h. The layer math is the same as model_forward's,
 * written for one new position per sequence with attention over the cache. */
#include "generate.h"
#include "common.h"
#include "kernels.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void gen_init(gen_state *g, wdl_model *m, int64_t B, int64_t maxlen) {
    const wdl_config *c = &m->cfg;
    memset(g, 0, sizeof *g);
    g->m = m; g->B = B; g->maxlen = maxlen;
    int64_t H = c->hidden, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim, FF = c->inter;
    size_t cache = (size_t)(c->layers * B * maxlen * KD);
    g->kc = xaligned(cache * sizeof(float));
    g->vc = xaligned(cache * sizeof(float));
    int64_t W = H > QD ? H : QD;
    g->x = xaligned(sizeof(float) * (size_t)(B * H));
    g->xn = xaligned(sizeof(float) * (size_t)(B * H));
    g->q = xaligned(sizeof(float) * (size_t)(B * QD));
    g->k = xaligned(sizeof(float) * (size_t)(B * KD));
    g->v = xaligned(sizeof(float) * (size_t)(B * KD));
    g->aty = xaligned(sizeof(float) * (size_t)(B * QD));
    g->tmp = xaligned(sizeof(float) * (size_t)(B * W));
    g->gate = xaligned(sizeof(float) * (size_t)(B * FF));
    g->up = xaligned(sizeof(float) * (size_t)(B * FF));
    g->att = xaligned(sizeof(float) * (size_t)(B * c->heads * maxlen));
    g->logits = xaligned(sizeof(float) * (size_t)(B * c->vocab));
    g->rstd = xaligned(sizeof(float) * (size_t)(B * (c->heads > 1 ? c->heads : 1)));
    g->pos = xcalloc((size_t)B, sizeof(int32_t));
    g->ids = xcalloc((size_t)B, sizeof(int32_t));
    g->pack = xcalloc((size_t)(B * maxlen), sizeof(int32_t));
    g->plogits = xaligned(sizeof(float) * (size_t)(B * c->vocab));
    rope_cache_reserve(&m->rope, maxlen, c->head_dim, c->theta);   /* gen_step allocates nothing */
}

void gen_free(gen_state *g) {
    free(g->kc); free(g->vc); free(g->x); free(g->xn); free(g->q); free(g->k); free(g->v); free(g->aty);
    free(g->tmp); free(g->gate); free(g->up); free(g->att); free(g->logits); free(g->rstd); free(g->pos); free(g->ids);
    free(g->pack); free(g->plogits);
    memset(g, 0, sizeof *g);
}

void gen_reset(gen_state *g, int64_t b) { g->pos[b] = 0; }

void gen_step(gen_state *g, const int32_t *tok, const uint8_t *active) {
    wdl_model *m = g->m;
    const wdl_config *c = &m->cfg;
    const int64_t B = g->B, H = c->hidden, HD = c->head_dim, NH = c->heads, KV = c->kv_heads,
                  QD = NH * HD, KD = KV * HD, FF = c->inter, grp = NH / KV, ML = g->maxlen;
    for (int64_t b = 0; b < B; b++)
        if (active[b] && g->pos[b] >= ML) die("internal: generation past the cache length %lld", (long long)ML);
    for (int64_t b = 0; b < B; b++) g->ids[b] = active[b] ? tok[b] : 0;
    model_embed(m, g->x, g->ids, B);
    const float scale = 1.0f / sqrtf((float)HD);
    for (int64_t l = 0; l < c->layers; l++) {
        rmsnorm_forward(g->xn, g->rstd, g->x, m->P[W_LN1] + l * H, B, H, c->eps);
        /* as one set (one parallel region on the few-row kernel: gemm.h's gemm_run_n) */
        linear_forward_n(3, (float *[]){g->q, g->k, g->v}, g->xn,
                         (const float *[]){m->P[W_Q] + l * QD * H, m->P[W_K] + l * KD * H, m->P[W_V] + l * KD * H},
                         (const int64_t[]){QD, KD, KD}, B, H);
        float *qn = g->tmp;   /* QK-norm's rstd goes to g->rstd: decoding never reads it back */
        rmsnorm_forward(qn, g->rstd, g->q, m->P[W_QNORM] + l * HD, B * NH, HD, c->eps);
        rope_forward(g->q, &m->rope, qn, g->pos, B, NH, HD, c->theta);
        rmsnorm_forward(qn, g->rstd, g->k, m->P[W_KNORM] + l * HD, B * KV, HD, c->eps);
        float *kc = g->kc + l * B * ML * KD, *vc = g->vc + l * B * ML * KD;
        /* write the new position's key (after RoPE) and value into the cache */
        for (int64_t b = 0; b < B; b++) {
            if (!active[b]) continue;
            rope_forward(kc + (b * ML + g->pos[b]) * KD, &m->rope, qn + b * KD, g->pos + b, 1, KV, HD, c->theta);
            memcpy(vc + (b * ML + g->pos[b]) * KD, g->v + b * KD, sizeof(float) * (size_t)KD);
        }
#pragma omp parallel for schedule(dynamic, 1) if (B * NH * ML * HD > 32768)
        for (int64_t bh = 0; bh < B * NH; bh++) {
            int64_t b = bh / NH, h = bh % NH, kh = h / grp, n = g->pos[b] + 1;
            float *out = g->aty + b * QD + h * HD;
            if (!active[b]) { memset(out, 0, sizeof(float) * (size_t)HD); continue; }
            float *s = g->att + bh * ML;
            const float *qh = g->q + b * QD + h * HD;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, HD, scale, kc + b * ML * KD + kh * HD, KD, qh, 1, 0, s, 1);
            float mx = s[0];
            for (int64_t u = 1; u < n; u++) if (s[u] > mx) mx = s[u];
            double sum = 0;
            for (int64_t u = 0; u < n; u++) { s[u] = expf(s[u] - mx); sum += s[u]; }
            float inv = (float)(1.0 / sum);
            for (int64_t u = 0; u < n; u++) s[u] *= inv;
            cblas_sgemv(CblasRowMajor, CblasTrans, n, HD, 1, vc + b * ML * KD + kh * HD, KD, s, 1, 0, out, 1);
        }
        linear_forward(g->tmp, g->aty, m->P[W_O] + l * H * QD, B, QD, H);
        for (int64_t i = 0; i < B * H; i++) g->x[i] += g->tmp[i];
        rmsnorm_forward(g->xn, g->rstd, g->x, m->P[W_LN2] + l * H, B, H, c->eps);
        linear_forward_n(2, (float *[]){g->gate, g->up}, g->xn,
                         (const float *[]){m->P[W_GATE] + l * FF * H, m->P[W_UP] + l * FF * H},
                         (const int64_t[]){FF, FF}, B, H);
        swiglu_forward(g->gate, g->gate, g->up, B * FF);
        linear_forward(g->tmp, g->gate, m->P[W_DOWN] + l * H * FF, B, FF, H);
        for (int64_t i = 0; i < B * H; i++) g->x[i] += g->tmp[i];
    }
    rmsnorm_forward(g->xn, g->rstd, g->x, m->P[W_NORM], B, H, c->eps);
    linear_forward(g->logits, g->xn, model_head(m), B, H, c->vocab);
    for (int64_t b = 0; b < B; b++) if (active[b]) g->pos[b]++;
}

int32_t gen_argmax(const gen_state *g, int64_t b) {
    const int64_t V = g->m->cfg.vocab;
    const float *z = g->logits + b * V;
    int32_t best = 0;
    for (int64_t v = 1; v < V; v++) if (z[v] > z[best]) best = (int32_t)v;
    return best;
}

/* model_forward's per-layer hook during a prefill: each packed prompt's
 * keys (after RoPE) and values go to its slot's cache as the layer makes
 * them, so the forward needs only one layer's activations. */
typedef struct { gen_state *g; const int64_t *slot, *plen; int64_t k; } prefill_sink;
static void prefill_kv(void *ctx, int64_t l, const float *kr, const float *v) {
    const prefill_sink *p = ctx;
    const gen_state *g = p->g;
    const int64_t KD = g->m->cfg.kv_heads * g->m->cfg.head_dim, ML = g->maxlen;
    for (int64_t j = 0, o = 0; j < p->k; o += p->plen[j], j++) {
        size_t at = (size_t)((l * g->B + p->slot[j]) * ML * KD), n = sizeof(float) * (size_t)(p->plen[j] * KD);
        memcpy(g->kc + at, kr + o * KD, n);
        memcpy(g->vc + at, v + o * KD, n);
    }
}

void gen_prefill_many(gen_state *g, const int64_t *slot, const int32_t *const *prompt, const int64_t *plen,
                      int64_t k) {
    wdl_model *m = g->m;
    const wdl_config *c = &m->cfg;
    const int64_t H = c->hidden, V = c->vocab, ML = g->maxlen;
    int64_t N = 0;
    if (k < 1 || k > g->B) die("internal: prefill of %lld prompts (batch %lld)", (long long)k, (long long)g->B);
    for (int64_t j = 0; j < k; j++) {
        if (plen[j] < 1 || plen[j] >= ML)
            die("prompt of %lld tokens does not fit the context (%lld)", (long long)plen[j], (long long)ML);
        memcpy(g->pack + N, prompt[j], sizeof(int32_t) * (size_t)plen[j]);
        N += plen[j];
    }
    /* one layer's activations for B prompts of up to ML tokens: room for
     * any k <= B of them */
    if (!m->act_mem || m->Tmax < ML || m->Bmax * m->Tmax < g->B * ML)
        model_alloc_acts(m, g->B, ML, ACTS_STREAM, 0);
    prefill_sink sink = {g, slot, plen, k};
    m->kv_hook = prefill_kv;
    m->kv_ctx = &sink;
    model_forward_packed(m, g->pack, plen, k);
    m->kv_hook = NULL;
    m->kv_ctx = NULL;
    for (int64_t j = 0, o = 0; j < k; o += plen[j], j++) {
        memcpy(g->xn + j * H, m->a.normf + (o + plen[j] - 1) * H, sizeof(float) * (size_t)H);
        g->pos[slot[j]] = (int32_t)plen[j];
    }
    /* the last positions' logits in one product, then to their slots */
    linear_forward(g->plogits, g->xn, model_head(m), k, H, V);
    for (int64_t j = 0; j < k; j++) memcpy(g->logits + slot[j] * V, g->plogits + j * V, sizeof(float) * (size_t)V);
}

void gen_prefill(gen_state *g, int64_t b, const int32_t *prompt, int64_t plen) {
    gen_prefill_many(g, &b, &prompt, &plen, 1);
}

int64_t gen_greedy(gen_state *g, const int32_t *const *prompts, const int64_t *plen, int64_t n,
                   int32_t stop_id, int64_t max_new, ivec *out) {
    const int64_t B = g->B;
    int64_t *slot = xmalloc(sizeof(int64_t) * (size_t)B), next = 0, generated = 0, running = 0;
    int32_t *tok = xcalloc((size_t)B, sizeof(int32_t));
    uint8_t *active = xcalloc((size_t)B, 1);
    for (int64_t b = 0; b < B; b++) slot[b] = -1;
    int64_t *fill = xmalloc(sizeof(int64_t) * (size_t)B);   /* the slots a round fills */
    for (;;) {
        /* fill free slots: their prompts are prefilled together, packed into
         * one forward pass (the weights are read once for all of them), and
         * each takes its first token; a sequence may end right there,
         * freeing its slot for the next round */
        for (;;) {
            /* prompts first.. go to the free slots in order */
            int64_t k = 0, first = next;
            for (int64_t b = 0; b < B && first + k < n; b++)
                if (slot[b] < 0) fill[k++] = b;
            if (!k) break;
            next += k;
            gen_prefill_many(g, fill, prompts + first, plen + first, k);
            for (int64_t j = 0; j < k; j++) {
                const int64_t b = fill[j], i = first + j;
                out[i].n = 0;
                int32_t t = gen_argmax(g, b);
                if (t == stop_id || max_new < 1) continue;
                ivec_push(&out[i], t);
                generated++;
                if ((int64_t)out[i].n >= max_new || g->pos[b] + 1 >= g->maxlen) continue;
                slot[b] = i;
            }
        }
        for (int64_t b = 0; b < B; b++) {
            active[b] = slot[b] >= 0;
            if (active[b]) tok[b] = out[slot[b]].v[out[slot[b]].n - 1];
        }
        running = 0;
        for (int64_t b = 0; b < B; b++) running += active[b];
        if (g->progress) progress_update(g->progress, g->progress_base + next - running, NULL);
        if (!running) break;
        gen_step(g, tok, active);
        for (int64_t b = 0; b < B; b++) {
            if (!active[b]) continue;
            int64_t i = slot[b];
            int32_t t = gen_argmax(g, b);
            if (t == stop_id) { slot[b] = -1; continue; }
            ivec_push(&out[i], t);
            generated++;
            if ((int64_t)out[i].n >= max_new || g->pos[b] + 1 >= g->maxlen) slot[b] = -1;
        }
    }
    free(slot); free(tok); free(active); free(fill);
    return generated;
}
