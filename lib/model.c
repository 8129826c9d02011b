/* model.c: Qwen3 parameters, activations, forward and backward.
 * HF semantics: per layer x += o(attn(rope(qnorm(q(ln1 x))), rope(knorm(k(ln1 x))), v(ln1 x)))
 * then x += down(silu(gate(ln2 x)) * up(ln2 x)); final RMSNorm; LM head. */
#include "model.h"
#include "gemm.h"
#include "common.h"
#include "kernels.h"
#include "safetensors.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *const model_time_names[MT_KINDS] = {"products", "attention", "norms", "swiglu", "embedding", "loss"};

void model_times_shares(const model_times *t, double total, char *buf, size_t n) {
    double sum = 0;
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < MT_KINDS && len < n; k++) {
        sum += t->s[k];
        len += (size_t)snprintf(buf + len, n - len, "%s %.1f%%, ", model_time_names[k],
                                total > 0 ? 100 * t->s[k] / total : 0.0);
    }
    if (len < n) snprintf(buf + len, n - len, "the rest %.1f%%", total > 0 ? 100 * (total - sum) / total : 0.0);
}

static const char *const kind_names[W_KINDS] = {
    "model.embed_tokens.weight", "input_layernorm.weight", "self_attn.q_proj.weight",
    "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.q_norm.weight",
    "self_attn.k_norm.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
    "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
    "model.norm.weight", "lm_head.weight"};

/* HF shape of one tensor of a kind (per layer for layered kinds). */
static int kind_shape(const wdl_config *c, int k, int64_t *shape) {
    int64_t H = c->hidden, I = c->inter, V = c->vocab, QD = c->heads * c->head_dim,
            KD = c->kv_heads * c->head_dim;
    switch (k) {
    case W_EMBED: case W_HEAD: shape[0] = V; shape[1] = H; return 2;
    case W_LN1: case W_LN2: case W_NORM: shape[0] = H; return 1;
    case W_Q: shape[0] = QD; shape[1] = H; return 2;
    case W_K: case W_V: shape[0] = KD; shape[1] = H; return 2;
    case W_QNORM: case W_KNORM: shape[0] = c->head_dim; return 1;
    case W_O: shape[0] = H; shape[1] = QD; return 2;
    case W_GATE: case W_UP: shape[0] = I; shape[1] = H; return 2;
    case W_DOWN: shape[0] = H; shape[1] = I; return 2;
    }
    return 0;
}

int model_kind_decays(int k) {
    int64_t s[2];
    wdl_config c = {.hidden = 1, .inter = 1, .vocab = 1, .heads = 1, .kv_heads = 1, .head_dim = 1};
    return kind_shape(&c, k, s) == 2;
}

static void point_views(wdl_model *m) {
    for (int k = 0; k < W_KINDS; k++) {
        m->P[k] = m->params + m->off[k];
        m->G[k] = m->grads ? m->grads + m->off[k] : NULL;
    }
    if (m->cfg.tied) { m->P[W_HEAD] = m->P[W_EMBED]; m->G[W_HEAD] = m->G[W_EMBED]; }
}

/* lazy: parameters in fresh anonymous pages, zero until written and costing
 * nothing until then (bf16-only weights never write theirs) */
static wdl_model *model_alloc(const wdl_config *cfg, int lazy) {
    wdl_model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->att_keep_max = MODEL_ATT_KEEP_MAX;
    size_t off = 0;
    for (int k = 0; k < W_KINDS; k++) {
        int64_t s[2] = {1, 1};
        int nd = kind_shape(cfg, k, s);
        size_t n = (size_t)s[0] * (size_t)(nd == 2 ? s[1] : 1);
        m->layered[k] = !(k == W_EMBED || k == W_NORM || k == W_HEAD);
        if (k == W_HEAD && cfg->tied) n = 0;
        m->layer_elems[k] = n;
        m->off[k] = off;
        off += n * (m->layered[k] ? (size_t)cfg->layers : 1);
        off = (off + 15) & ~(size_t)15;   /* keep every view 64-byte aligned */
    }
    m->nparams = off;
    if (lazy) {
        size_t bytes = off ? off * sizeof(float) : 1;
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) die("out of memory reserving %zu bytes of parameters", bytes);
        m->params = p;
        m->params_mapped = bytes;
    } else
        m->params = xaligned(off * sizeof(float));
    point_views(m);
    return m;
}

wdl_model *model_new(const wdl_config *cfg) { return model_alloc(cfg, 0); }

void model_free(wdl_model *m) {
    if (!m) return;
    if (m->view_st || m->w16) gemm_ctx_drop_bf16_views(gemm_default(), m->params, m->nparams);
    gemm_drop_packed(m->params, m->nparams);
    if (m->view_st) st_close(m->view_st);
    free(m->w16);
    if (m->params_mapped) munmap(m->params, m->params_mapped);
    else free(m->params);
    if (m->act_mem) gemm_drop_mirrors(m->act_mem, m->act_elems);
    free(m->grads); free(m->m); free(m->v); free(m->act_mem); free(m->act16);
    free(m->ids); free(m->pos); free(m->seq_off);
    rope_cache_free(&m->rope);
    free(m);
}

void model_init_random(wdl_model *m, uint64_t seed, double std) {
    wdl_rng r;
    rng_seed(&r, seed);
    for (int k = 0; k < W_KINDS; k++) {
        size_t n = m->layer_elems[k] * (m->layered[k] ? (size_t)m->cfg.layers : 1);
        float *p = m->params + m->off[k];
        if (model_kind_decays(k)) for (size_t i = 0; i < n; i++) p[i] = (float)(std * rng_normal(&r));
        else for (size_t i = 0; i < n; i++) p[i] = 1.0f;
    }
}

void model_alloc_grads(wdl_model *m) {
    if (!m->grads) { m->grads = xaligned(m->nparams * sizeof(float)); point_views(m); }
}
void model_alloc_moments(wdl_model *m) {
    if (!m->m) m->m = xaligned(m->nparams * sizeof(float));
    if (!m->v) m->v = xaligned(m->nparams * sizeof(float));
}
/* In pieces over the team: one thread's memset of the bench model's 13.6
 * MB took about 1.4 ms of every step, the other thread asleep. */
void model_zero_grad(wdl_model *m) {
    const size_t n = m->nparams, piece = (size_t)1 << 18;
#pragma omp parallel for schedule(static) if (n > piece)
    for (size_t i = 0; i < n; i += piece) memset(m->grads + i, 0, sizeof(float) * (n - i < piece ? n - i : piece));
}

float *model_head(wdl_model *m) { return m->P[W_HEAD]; }
float *model_head_grad(wdl_model *m) { return m->G[W_HEAD]; }

/* Training runs attention's forward and backward in one scratch area. */
static int64_t att_train_scratch(attn_dims d) {
    int64_t f = attention_forward_scratch(d), b = attention_backward_scratch(d);
    return f > b ? f : b;
}

void model_alloc_acts(wdl_model *m, int64_t Bmax, int64_t Tmax, int mode, int verbose) {
    model_alloc_acts_packed(m, Bmax, Tmax, Bmax * Tmax, 0, mode, verbose);
}

void model_alloc_acts_packed(wdl_model *m, int64_t Bmax, int64_t Tmax, int64_t Npos, size_t spare, int mode,
                             int verbose) {
    if (Npos < 1 || Npos > Bmax * Tmax)
        die("internal: %lld positions for activations of %lld x %lld", (long long)Npos, (long long)Bmax,
            (long long)Tmax);
    const wdl_config *c = &m->cfg;
    const int train = mode == ACTS_TRAIN;
    int64_t N = Npos, L = mode == ACTS_STREAM ? 1 : c->layers, H = c->hidden, I = c->inter,
            QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim,
            NH = c->heads, KV = c->kv_heads, HD = c->head_dim;
    /* the kernels' backward scratch: rmsnorm_backward runs on rows of H
     * (the layer norms) and of HD (QK-norm over NH or KV heads) */
    int64_t rms = rmsnorm_backward_scratch(N, H), rq = rmsnorm_backward_scratch(N * NH, HD),
            rk = rmsnorm_backward_scratch(N * KV, HD);
    if (rq > rms) rms = rq;
    if (rk > rms) rms = rk;
    float *rms_part = NULL, *pad = NULL;
    const int keep_att = (double)L * Bmax * NH * Tmax * Tmax * sizeof(float) <= (double)m->att_keep_max;
    /* the table: name, elements; carved from one block in this order */
    struct { float **p; int64_t n; int bwd; } t[] = {
        {&m->a.resid, (L + 1) * N * H, 0}, {&m->a.ln1, L * N * H, 0}, {&m->a.ln1_rstd, L * N, 0},
        {&m->a.q, L * N * QD, 0}, {&m->a.q_rstd, L * N * NH, 0}, {&m->a.qr, L * N * QD, 0},
        {&m->a.k, L * N * KD, 0}, {&m->a.k_rstd, L * N * KV, 0}, {&m->a.kr, L * N * KD, 0},
        {&m->a.v, L * N * KD, 0},
        /* for a backward, attention's probabilities, or their statistics
         * when the probabilities would take more than att_keep_max */
        {&m->a.att, keep_att ? L * Bmax * NH * Tmax * Tmax : 0, 1},
        {&m->a.att_stats, keep_att ? 0 : L * attention_stats(N, NH), 1},
        {&m->a.atty, L * N * QD, 0}, {&m->a.r1, L * N * H, 0}, {&m->a.ln2, L * N * H, 0},
        {&m->a.ln2_rstd, L * N, 0}, {&m->a.gate, L * N * I, 0}, {&m->a.up, L * N * I, 0},
        {&m->a.act, L * N * I, 0},
        {&pad, 0, 0},   /* ACTS_STREAM: up to `spare` floats before normf */
        {&m->a.normf, N * H, 0}, {&m->a.normf_rstd, N, 0},
        {&m->a.tmp, N * H, 0},
        {&m->a.dres, N * H, 1}, {&m->a.dln, N * H, 1}, {&m->a.dqr, N * QD, 1}, {&m->a.dq, N * QD, 1},
        {&m->a.dkr, N * KD, 1}, {&m->a.dk, N * KD, 1}, {&m->a.dv, N * KD, 1}, {&m->a.datty, N * QD, 1},
        {&m->a.dgate, N * I, 1}, {&m->a.dup, N * I, 1}, {&m->a.dact, N * I, 1}, {&m->a.dnormf, N * H, 1},
        {&m->a.att_scratch, train ? att_train_scratch((attn_dims){Bmax, Tmax, NH, KV, HD})
                                  : attention_forward_scratch((attn_dims){Bmax, Tmax, NH, KV, HD}), 0},
        {&rms_part, 2 * rms, 1},   /* doubles, two floats each (areas start 64-byte aligned) */
    };
    size_t nt = sizeof t / sizeof t[0], total = 0;
    for (size_t i = 0; i < nt; i++) {
        if (t[i].p == &pad && mode == ACTS_STREAM && spare > total) t[i].n = (int64_t)(spare - total);
        if (train || !t[i].bwd) total += ((size_t)t[i].n + 15) & ~(size_t)15;
    }
    /* bf16 training keeps the forward's bf16 copies of the activations
     * both passes multiply (gemm_mirror) */
    const size_t n16 = train && gemm_mirrors() ? (size_t)(L * N * (2 * H + QD + I)) : 0;
    if (verbose) {
        size_t pb = m->nparams * sizeof(float);
        fprintf(stderr, "%s: memory: parameters %.1f MB, gradients %.1f MB, AdamW moments %.1f MB, "
                "activations %.1f MB (batch %lld x %lld%s)\n", wdl_prog, pb / 1e6, train ? pb / 1e6 : 0.0,
                train ? 2 * pb / 1e6 : 0.0, (total * 4 + n16 * 2) / 1e6, (long long)Bmax, (long long)Tmax,
                train && !keep_att ? "; attention's probabilities recomputed in the backward" : "");
    }
    if (m->act_mem) gemm_drop_mirrors(m->act_mem, m->act_elems);
    free(m->act_mem); free(m->act16); free(m->ids); free(m->pos); free(m->seq_off);
    m->act16 = n16 ? xaligned(n16 * sizeof(uint16_t)) : NULL;
    m->act_mem = xaligned(total * sizeof(float));
    m->act_elems = total;
    size_t off = 0;
    for (size_t i = 0; i < nt; i++) {
        if ((!train && t[i].bwd) || !t[i].n) { *t[i].p = NULL; continue; }
        *t[i].p = m->act_mem + off;
        off += ((size_t)t[i].n + 15) & ~(size_t)15;
    }
    m->a.rms_part = (double *)rms_part;
    m->Bmax = Bmax; m->Tmax = Tmax; m->Ncap = N;
    m->act_layers = L;
    m->act_mode = mode;
    m->ids = xcalloc((size_t)N, sizeof(int32_t));
    m->pos = xcalloc((size_t)N, sizeof(int32_t));
    m->seq_off = xcalloc((size_t)N + 1, sizeof(int64_t));
    rope_cache_reserve(&m->rope, Tmax, HD, c->theta);
}

float *model_spare_acts(const wdl_model *m, size_t *floats) {
    /* the table above carves every layer slot before normf */
    const int ok = m->act_mem && m->act_mode == ACTS_STREAM && m->a.normf;
    *floats = ok ? (size_t)(m->a.normf - m->act_mem) : 0;
    return ok ? m->act_mem : NULL;
}

#define LAYER(ptr, l, per) ((ptr) + (size_t)(l) * (size_t)(per))

/* The residual-stream slot holding the input of layer l (l = layers: the
 * final output). With one layer's slots the stream alternates between two. */
static float *resid_slot(const wdl_model *m, int64_t l) {
    int64_t s = m->act_layers == m->cfg.layers ? l : l % 2;
    return LAYER(m->a.resid, s, m->Ncap * m->cfg.hidden);
}

/* Layer l's slots in the activation buffer: each layer's slot holds the
 * capacity Ncap positions, and a smaller batch uses its head. */
typedef struct {
    float *x, *xo, *ln1, *ln1r, *q, *qrs, *qr, *k, *krs, *kr, *v, *att, *att_st, *aty, *r1, *ln2, *ln2r, *gate, *up,
        *act;
    uint16_t *ln1_16, *aty16, *ln2_16, *act16;   /* their mirrors (m->act16), or NULL */
} layer_acts;

static void layer_views(const wdl_model *m, int64_t l, layer_acts *v) {
    const wdl_config *c = &m->cfg;
    const wdl_acts *a = &m->a;
    const int64_t Nc = m->Ncap, H = c->hidden, I = c->inter, NH = c->heads, KV = c->kv_heads,
                  QD = NH * c->head_dim, KD = KV * c->head_dim;
    v->x = resid_slot(m, l); v->xo = resid_slot(m, l + 1);
    if (m->act_layers != c->layers) l = 0;   /* one slot, reused by every layer */
    v->ln1 = LAYER(a->ln1, l, Nc * H); v->ln1r = LAYER(a->ln1_rstd, l, Nc);
    v->q = LAYER(a->q, l, Nc * QD); v->qrs = LAYER(a->q_rstd, l, Nc * NH); v->qr = LAYER(a->qr, l, Nc * QD);
    v->k = LAYER(a->k, l, Nc * KD); v->krs = LAYER(a->k_rstd, l, Nc * KV); v->kr = LAYER(a->kr, l, Nc * KD);
    v->v = LAYER(a->v, l, Nc * KD);
    v->att = a->att ? LAYER(a->att, l, m->Bmax * NH * m->Tmax * m->Tmax) : NULL;
    v->att_st = a->att_stats ? LAYER(a->att_stats, l, attention_stats(Nc, NH)) : NULL;
    v->aty = LAYER(a->atty, l, Nc * QD); v->r1 = LAYER(a->r1, l, Nc * H);
    v->ln2 = LAYER(a->ln2, l, Nc * H); v->ln2r = LAYER(a->ln2_rstd, l, Nc);
    v->gate = LAYER(a->gate, l, Nc * I); v->up = LAYER(a->up, l, Nc * I); v->act = LAYER(a->act, l, Nc * I);
    uint16_t *w = m->act16 ? LAYER(m->act16, l, Nc * (2 * H + QD + I)) : NULL;
    v->ln1_16 = w; v->aty16 = w ? w + Nc * H : NULL;
    v->ln2_16 = w ? w + Nc * (H + QD) : NULL; v->act16 = w ? w + Nc * (2 * H + QD) : NULL;
}

static void forward_layers(wdl_model *m);

/* The batch's layout (m->seq_off set) -> positions and checked ids. */
static void forward_inputs(wdl_model *m, const int32_t *ids) {
    const int64_t V = m->cfg.vocab;
    for (int64_t b = 0; b < m->nseq; b++)
        for (int64_t n = m->seq_off[b]; n < m->seq_off[b + 1]; n++) {
            if (ids[n] < 0 || ids[n] >= V) die("token id %d outside the vocabulary (%lld)", ids[n], (long long)V);
            m->ids[n] = ids[n];
            m->pos[n] = (int32_t)(n - m->seq_off[b]);
        }
}

void model_forward(wdl_model *m, const int32_t *ids, int64_t B, int64_t T) {
    if (!m->act_mem || B > m->Bmax || T > m->Tmax || B * T > m->Ncap)
        die("internal: batch %lldx%lld exceeds activation capacity", (long long)B, (long long)T);
    m->nseq = B; m->N = B * T; m->Tlong = T;
    for (int64_t b = 0; b <= B; b++) m->seq_off[b] = b * T;
    forward_inputs(m, ids);
    forward_layers(m);
}

void model_forward_packed(wdl_model *m, const int32_t *ids, const int64_t *len, int64_t nseq) {
    int64_t N = 0, Tl = 0;
    for (int64_t b = 0; b < nseq; b++) {
        if (len[b] < 1 || len[b] > m->Tmax)
            die("internal: packed sequence of %lld tokens (capacity %lld)", (long long)len[b], (long long)m->Tmax);
        N += len[b];
        if (len[b] > Tl) Tl = len[b];
    }
    /* (attention's scratch holds Bmax sequences of up to Tmax: more
     * sequences, even shorter, can need more, its AVX-512 tiles rounding
     * each one's room up) */
    if (!m->act_mem || N > m->Ncap || nseq > m->Bmax)
        die("internal: %lld packed positions in %lld sequences exceed activation capacity (%lld x %lld, "
            "%lld positions)", (long long)N, (long long)nseq, (long long)m->Bmax, (long long)m->Tmax,
            (long long)m->Ncap);
    m->nseq = nseq; m->N = N; m->Tlong = Tl;
    m->seq_off[0] = 0;
    for (int64_t b = 0; b < nseq; b++) m->seq_off[b + 1] = m->seq_off[b] + len[b];
    forward_inputs(m, ids);
    forward_layers(m);
}

static void forward_layers(wdl_model *m) {
    const wdl_config *c = &m->cfg;
    const int64_t N = m->N, H = c->hidden, I = c->inter, HD = c->head_dim,
                  NH = c->heads, KV = c->kv_heads, QD = NH * HD, KD = KV * HD;
    wdl_acts *a = &m->a;
    attn_dims d = {m->nseq, m->Tlong, NH, KV, HD, m->seq_off};
    const int r16 = gemm_attention_tiles16_for(HD);
    MODEL_TIMED(m, MT_EMBED, model_embed(m, a->resid, m->ids, N));
    if (m->embed_hook) m->embed_hook(m->embed_ctx, a->resid, N, H);
    /* this forward rewrites the activations: forget the last one's mirrors */
    if (m->act16) gemm_drop_mirrors(m->act_mem, m->act_elems);
#define MIRROR(x, x16, n) do { if (x16) gemm_mirror((x), (size_t)(n), (x16)); } while (0)
    for (int64_t l = 0; l < c->layers; l++) {
        layer_acts L_;
        layer_views(m, l, &L_);
        float *x = L_.x, *xo = L_.xo, *ln1 = L_.ln1, *ln1r = L_.ln1r, *q = L_.q, *qrs = L_.qrs, *qr = L_.qr,
              *k = L_.k, *krs = L_.krs, *kr = L_.kr, *v = L_.v, *att = L_.att, *att_st = L_.att_st,
              *aty = L_.aty, *r1 = L_.r1, *ln2 = L_.ln2, *ln2r = L_.ln2r, *gate = L_.gate, *up = L_.up, *act = L_.act;
        /* ln1 of layers after the first was made by the previous layer's
         * last residual (fused with this norm) */
        if (l == 0) MODEL_TIMED(m, MT_NORMS, rmsnorm_forward(ln1, ln1r, x, LAYER(m->P[W_LN1], l, H), N, H, c->eps));
        MIRROR(ln1, L_.ln1_16, N * H);
        gemm_hold_inputs(1);   /* one bf16 copy of ln1 for the three */
        MODEL_TIMED(m, MT_PRODUCTS,
                    linear_forward_n(3, (float *[]){q, k, v}, ln1,
                                     (const float *[]){LAYER(m->P[W_Q], l, QD * H), LAYER(m->P[W_K], l, KD * H),
                                                       LAYER(m->P[W_V], l, KD * H)},
                                     (const int64_t[]){QD, KD, KD}, N, H));
        gemm_hold_inputs(0);
        /* QK-norm per head, before RoPE */
        MODEL_TIMED(m, MT_NORMS,
                    qknorm_rope_forward(qr, qrs, &m->rope, q, LAYER(m->P[W_QNORM], l, HD), m->pos, N, NH, HD, c->eps,
                                        c->theta));
        MODEL_TIMED(m, MT_NORMS,
                    qknorm_rope_forward(kr, krs, &m->rope, k, LAYER(m->P[W_KNORM], l, HD), m->pos, N, KV, HD, c->eps,
                                        c->theta));
        if (r16)   /* bf16 attention on the fp32 tiles: its inputs as bf16 values (every product rounds them) */
            MODEL_TIMED(m, MT_ATTENTION, attention_round16(qr, N * QD); attention_round16(kr, N * KD);
                        attention_round16(v, N * KD));
        if (m->kv_hook) m->kv_hook(m->kv_ctx, l, kr, v);
        MODEL_TIMED(m, MT_ATTENTION, attention_forward(aty, att, att_st, qr, kr, v, d, a->att_scratch));
        MIRROR(aty, L_.aty16, N * QD);
        MODEL_TIMED(m, MT_PRODUCTS, linear_forward(a->tmp, aty, LAYER(m->P[W_O], l, H * QD), N, QD, H));
        MODEL_TIMED(m, MT_NORMS,
                    residual_rmsnorm_forward(r1, ln2, ln2r, x, a->tmp, LAYER(m->P[W_LN2], l, H), N, H, c->eps));
        MIRROR(ln2, L_.ln2_16, N * H);
        gemm_hold_inputs(1);
        MODEL_TIMED(m, MT_PRODUCTS,
                    linear_forward_n(2, (float *[]){gate, up}, ln2,
                                     (const float *[]){LAYER(m->P[W_GATE], l, I * H), LAYER(m->P[W_UP], l, I * H)},
                                     (const int64_t[]){I, I}, N, H));
        gemm_hold_inputs(0);
        MODEL_TIMED(m, MT_SWIGLU, swiglu_forward(act, gate, up, N * I));
        MIRROR(act, L_.act16, N * I);
        MODEL_TIMED(m, MT_PRODUCTS, linear_forward(a->tmp, act, LAYER(m->P[W_DOWN], l, H * I), N, I, H));
        /* the residual, fused with the next norm: the next layer's ln1, or
         * after the last layer the final norm */
        if (l + 1 < c->layers) {
            layer_acts Ln;
            layer_views(m, l + 1, &Ln);
            MODEL_TIMED(
                m, MT_NORMS,
                residual_rmsnorm_forward(xo, Ln.ln1, Ln.ln1r, r1, a->tmp, LAYER(m->P[W_LN1], l + 1, H), N, H, c->eps));
        } else
            MODEL_TIMED(m, MT_NORMS,
                        residual_rmsnorm_forward(xo, a->normf, a->normf_rstd, r1, a->tmp, m->P[W_NORM], N, H, c->eps));
    }
#undef MIRROR
}

void model_backward(wdl_model *m) {
    const wdl_config *c = &m->cfg;
    const int64_t N = m->N, H = c->hidden, I = c->inter,
                  HD = c->head_dim, NH = c->heads, KV = c->kv_heads, QD = NH * HD, KD = KV * HD;
    wdl_acts *a = &m->a;
    if (!m->grads || !a->dres) die("internal: backward without gradient buffers");
    attn_dims d = {m->nseq, m->Tlong, NH, KV, HD, m->seq_off};
    const int r16 = gemm_attention_tiles16_for(HD);
    MODEL_TIMED(m, MT_NORMS,
                rmsnorm_backward_set(a->dres, m->G[W_NORM], a->dnormf, resid_slot(m, c->layers), m->P[W_NORM],
                                     a->normf_rstd, N, H, a->rms_part));
    for (int64_t l = c->layers - 1; l >= 0; l--) {
        layer_acts L_;
        layer_views(m, l, &L_);
        float *x = L_.x, *ln1 = L_.ln1, *ln1r = L_.ln1r, *q = L_.q, *qrs = L_.qrs, *qr = L_.qr,
              *k = L_.k, *krs = L_.krs, *kr = L_.kr, *v = L_.v, *att = L_.att, *att_st = L_.att_st,
              *aty = L_.aty, *r1 = L_.r1, *ln2 = L_.ln2, *ln2r = L_.ln2r, *gate = L_.gate, *up = L_.up, *act = L_.act;
        /* MLP: xo = r1 + down(swiglu(gate(ln2), up(ln2))) */
        MODEL_TIMED(m, MT_PRODUCTS,
                    linear_backward_set(a->dact, LAYER(m->G[W_DOWN], l, H * I), a->dres, act,
                                        LAYER(m->P[W_DOWN], l, H * I), N, I, H));
        MODEL_TIMED(m, MT_SWIGLU, swiglu_backward_set(a->dgate, a->dup, a->dact, gate, up, N * I));
        gemm_hold_inputs(1);   /* ln2 for both weight gradients */
        MODEL_TIMED(
            m, MT_PRODUCTS,
            linear_backward_n(2, a->dln, (float *[]){LAYER(m->G[W_GATE], l, I * H), LAYER(m->G[W_UP], l, I * H)},
                              (float *[]){a->dgate, a->dup}, ln2,
                              (const float *[]){LAYER(m->P[W_GATE], l, I * H), LAYER(m->P[W_UP], l, I * H)},
                              (const int64_t[]){I, I}, N, H, 1));
        gemm_hold_inputs(0);
        MODEL_TIMED(m, MT_NORMS,
                    rmsnorm_backward(a->dres, LAYER(m->G[W_LN2], l, H), a->dln, r1, LAYER(m->P[W_LN2], l, H), ln2r, N,
                                     H, a->rms_part));
        /* attention: r1 = x + o(attn(...)) */
        MODEL_TIMED(m, MT_PRODUCTS,
                    linear_backward_set(a->datty, LAYER(m->G[W_O], l, H * QD), a->dres, aty,
                                        LAYER(m->P[W_O], l, H * QD), N, QD, H));
        if (r16) MODEL_TIMED(m, MT_ATTENTION, attention_round16(a->datty, N * QD));   /* (as the forward's inputs) */
        MODEL_TIMED(m, MT_ATTENTION,
                    attention_backward_set(a->dqr, a->dkr, a->dv, a->datty, att, att_st, qr, kr, v, d, a->att_scratch));
        /* RoPE backward, then QK-norm backward, fused */
        MODEL_TIMED(
            m, MT_NORMS,
            qknorm_rope_backward_set(a->dq, LAYER(m->G[W_QNORM], l, HD), &m->rope, a->dqr, q,
                                     LAYER(m->P[W_QNORM], l, HD), qrs, m->pos, N, NH, HD, c->theta, a->rms_part));
        MODEL_TIMED(
            m, MT_NORMS,
            qknorm_rope_backward_set(a->dk, LAYER(m->G[W_KNORM], l, HD), &m->rope, a->dkr, k,
                                     LAYER(m->P[W_KNORM], l, HD), krs, m->pos, N, KV, HD, c->theta, a->rms_part));
        gemm_hold_inputs(1);
        MODEL_TIMED(m, MT_PRODUCTS,
                    linear_backward_n(3, a->dln,
                                      (float *[]){LAYER(m->G[W_Q], l, QD * H), LAYER(m->G[W_K], l, KD * H),
                                                  LAYER(m->G[W_V], l, KD * H)},
                                      (float *[]){a->dq, a->dk, a->dv}, ln1,
                                      (const float *[]){LAYER(m->P[W_Q], l, QD * H), LAYER(m->P[W_K], l, KD * H),
                                                        LAYER(m->P[W_V], l, KD * H)},
                                      (const int64_t[]){QD, KD, KD}, N, H, 1));
        gemm_hold_inputs(0);
        MODEL_TIMED(m, MT_NORMS,
                    rmsnorm_backward(a->dres, LAYER(m->G[W_LN1], l, H), a->dln, x, LAYER(m->P[W_LN1], l, H), ln1r, N, H,
                                     a->rms_part));
    }
    MODEL_TIMED(m, MT_EMBED, embedding_backward(m->G[W_EMBED], a->dres, m->ids, N, H));
}

void model_each_tensor(const wdl_model *m, model_tensor_fn fn, void *ctx) {
    const wdl_config *c = &m->cfg;
    char name[256];
    int64_t s[2];
    int nd = kind_shape(c, W_EMBED, s);
    fn(ctx, kind_names[W_EMBED], nd, s, m->off[W_EMBED]);
    for (int64_t l = 0; l < c->layers; l++)
        for (int k = W_LN1; k <= W_DOWN; k++) {
            nd = kind_shape(c, k, s);
            snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, kind_names[k]);
            fn(ctx, name, nd, s, m->off[k] + (size_t)l * m->layer_elems[k]);
        }
    nd = kind_shape(c, W_NORM, s);
    fn(ctx, kind_names[W_NORM], nd, s, m->off[W_NORM]);
    if (!c->tied) {
        nd = kind_shape(c, W_HEAD, s);
        fn(ctx, kind_names[W_HEAD], nd, s, m->off[W_HEAD]);
    }
}

void model_embed(const wdl_model *m, float *out, const int32_t *ids, int64_t N) {
    const int64_t H = m->cfg.hidden;
    if (!m->embed16) {
        embedding_forward(out, ids, m->P[W_EMBED], N, H);
        return;
    }
#pragma omp parallel for schedule(static) if (N * H > (1 << 16))
    for (int64_t n = 0; n < N; n++) {
        const uint16_t *e = m->embed16 + (int64_t)ids[n] * H;
        for (int64_t i = 0; i < H; i++) out[n * H + i] = st_bf16_to_f32(e[i]);
    }
}

/* ---- directories ---- */
typedef struct {
    const wdl_model *m;
    st_model *st;
    st_tensor *list;
    size_t n;
    char **names;
    int all_bf16;
    uint16_t *arena;      /* decoding: where the BF16 matrices are copied (NULL: read in place) */
    size_t arena_used;    /* elements */
    const uint16_t *embed16;
} io_ctx;

static void load_one(void *p, const char *name, int nd, const int64_t *shape, size_t off) {
    io_ctx *x = p;
    st_read_f32(x->st, name, x->m->params + off, nd, shape);
    x->n++;
}

/* bf16-only loading: are all matrices BF16 on disk (and 2-byte aligned
 * there, so that they can be read as bf16 arrays in place)? */
static void check_bf16(void *p, const char *name, int nd, const int64_t *shape, size_t off) {
    io_ctx *x = p;
    if (nd != 2) return;
    const st_info *t = st_expect(x->st, name, nd, shape);
    if (t->dtype != ST_BF16 || (uintptr_t)st_raw(x->st, t) % sizeof(uint16_t)) x->all_bf16 = 0;
}

/* Elements of the model's matrices (the arena's size). */
static void count_matrix(void *p, const char *name, int nd, const int64_t *shape, size_t off) {
    io_ctx *x = p;
    if (nd == 2) x->arena_used += (size_t)(shape[0] * shape[1]);
}

/* A matrix's BF16 values where the products will read them: in place in
 * the mapped file, or, with an arena, copied into it, and the file's pages
 * let go (they are clean: the kernel reads them back if ever touched). */
static const uint16_t *matrix_bf16(io_ctx *x, const st_info *t) {
    const uint16_t *w = st_raw(x->st, t);
    if (!x->arena) return w;
    uint16_t *dst = x->arena + x->arena_used;
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)w & ~(uintptr_t)(pg - 1), hi = (uintptr_t)(w + t->nelem);
#ifdef MADV_POPULATE_READ
    /* the file's pages mapped in one call rather than one fault each (Linux
     * 5.14; elsewhere an error, ignored): it took up to 0.4 s off the
     * copy's load on the Qwen3-0.6B shape */
    madvise((void *)lo, hi - lo, MADV_POPULATE_READ);
#endif
    memcpy(dst, w, sizeof(uint16_t) * (size_t)t->nelem);
    x->arena_used += (size_t)t->nelem;
    uintptr_t a = ((uintptr_t)w + pg - 1) & ~(uintptr_t)(pg - 1), b = hi & ~(uintptr_t)(pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
    return dst;
}

/* Matrices stay in bf16 (where matrix_bf16 puts them), products read them
 * through the gemm views; vectors (norm weights) are read as usual. */
static void view_one(void *p, const char *name, int nd, const int64_t *shape, size_t off) {
    io_ctx *x = p;
    if (nd != 2) {
        load_one(p, name, nd, shape, off);
        return;
    }
    const st_info *t = st_expect(x->st, name, nd, shape);
    const uint16_t *w = matrix_bf16(x, t);
    if (!strcmp(name, kind_names[W_EMBED])) x->embed16 = w;
    gemm_ctx_add_bf16_view(gemm_default(), x->m->params + off, (size_t)t->nelem, w);
    x->n++;
}

/* Matrices read into params as usual and kept in bf16 as their shadows. */
static void shadow_one(void *p, const char *name, int nd, const int64_t *shape, size_t off) {
    io_ctx *x = p;
    load_one(p, name, nd, shape, off);
    if (nd != 2) return;
    const st_info *t = st_expect(x->st, name, nd, shape);
    gemm_ctx_add_bf16_shadow(gemm_default(), x->m->params + off, (size_t)t->nelem, matrix_bf16(x, t));
}

/* The copy into huge pages saved about 10% of a bf16 decoding step of the
 * Qwen3-0.6B shape on an Intel Xeon, for its 1.2 GB of fresh memory: worth
 * it where those pages come at 1 s per GB or better (0.5 s of load there
 * when measured), a loss where they come at 10 s per GB. */
#define DECODE_COPY_MAX_S_PER_GB 1.0

/* how: LOAD_PLAIN, LOAD_BF16_ONLY (views where all matrices are BF16) or
 * LOAD_SHADOWED (fp32 params, and shadows where all matrices are BF16).
 * copy: the BF16 matrices go into one buffer of transparent huge pages
 * instead of being read in place from the mapped file (see
 * model_load_decode), where such pages come cheaply. */
enum { LOAD_PLAIN, LOAD_BF16_ONLY, LOAD_SHADOWED };
static wdl_model *load_as(const char *dir, int how, int copy) {
    wdl_config cfg;
    config_load(dir, &cfg);
    wdl_model *m = model_alloc(&cfg, how == LOAD_BF16_ONLY);
    st_model *st = st_open(dir);
    io_ctx x = {m, st, .all_bf16 = 1};
    if (how != LOAD_PLAIN) model_each_tensor(m, check_bf16, &x);
    if (how != LOAD_PLAIN && x.all_bf16 && copy) {
        model_each_tensor(m, count_matrix, &x);
        /* where fresh huge pages are slow to come (a virtual machine that
         * gave the memory back to its host: 9-13 s per GB on Zen 3), the
         * copy would cost far more than it saves: read in place instead */
        m->w16 = x.arena = xhuge_if_cheap(sizeof(uint16_t) * x.arena_used, DECODE_COPY_MAX_S_PER_GB);
        x.arena_used = 0;
    }
    if (how == LOAD_BF16_ONLY && x.all_bf16) {
        model_each_tensor(m, view_one, &x);
        m->view_st = st;
        m->embed16 = x.embed16;
    } else if (how == LOAD_SHADOWED && x.all_bf16) {
        model_each_tensor(m, shadow_one, &x);
        m->view_st = st;
    } else
        model_each_tensor(m, load_one, &x);
    /* every tensor in the file must be one we read (a tied model may carry a
     * redundant lm_head.weight, as some HF exports do) */
    for (size_t i = 0; i < st_count(st); i++) {
        const char *nm = st_name_at(st, i);
        if (cfg.tied && !strcmp(nm, "lm_head.weight")) continue;
        int known = 0;
        if (!strcmp(nm, kind_names[W_EMBED]) || !strcmp(nm, kind_names[W_NORM]) ||
            (!cfg.tied && !strcmp(nm, kind_names[W_HEAD])))
            known = 1;
        long long l;
        int used = 0;
        if (!known && sscanf(nm, "model.layers.%lld.%n", &l, &used) == 1 && used > 0 && l >= 0 && l < cfg.layers)
            for (int k = W_LN1; k <= W_DOWN; k++) if (!strcmp(nm + used, kind_names[k])) known = 1;
        if (!known) die("%s: unexpected tensor '%s' for a %lld-layer Qwen3 config", dir, nm, (long long)cfg.layers);
    }
    if (m->w16) m->view_st = NULL;   /* every matrix copied: the file is no longer needed */
    if (!m->view_st) st_close(st);
    return m;
}

wdl_model *model_load(const char *dir) { return load_as(dir, LOAD_PLAIN, 0); }

/* fp32 scoring and decoding: the weights stay as loaded, so the small
 * matrices stay packed for sgemm_own (gemm_keep_packed) */
static wdl_model *keep_packed(wdl_model *m) {
    gemm_keep_packed(m->params, m->nparams);
    return m;
}

static wdl_model *load_forward(const char *dir, int copy) {
    gemm_ctx *g = gemm_default();
    /* fp32 on sgemm_own: a BF16 checkpoint's matrices are read where they
     * lie and widened as the products pack them, not widened at loading
     * into 4 bytes each (2.3 GB of fresh pages for Qwen3-0.6B: their
     * zeroing alone took 0.3 to 3 s of wdl-score's load on Zen 3) */
    if (gemm_ctx_fp32_views(g)) return keep_packed(load_as(dir, LOAD_BF16_ONLY, copy));
    if (gemm_ctx_precision(g) != GEMM_BF16) return keep_packed(model_load(dir));
    wdl_model *m = load_as(dir, LOAD_BF16_ONLY, copy);
    if (!m->view_st && !m->w16) gemm_ctx_set_readonly(g, 0, m->params, m->nparams);
    return m;
}

wdl_model *model_load_forward(const char *dir) { return load_forward(dir, 0); }

wdl_model *model_load_decode(const char *dir, int copy) {
    gemm_ctx *g = gemm_default();
    if (!gemm_is_fp32(gemm_ctx_precision(g))) return load_forward(dir, copy);
    /* fp32 on sgemm_own: views, read by the few-row kernel as shadows are,
     * not floats beside shadows (the floats' fresh pages were half of a
     * short Qwen3-0.6B decode's time on an AVX-512 Xeon) */
    if (gemm_ctx_fp32_views(g)) {
        gemm_ctx_fp32_views_few_rows(g, 1);
        return load_forward(dir, copy);
    }
    return keep_packed(load_as(dir, LOAD_SHADOWED, copy));
}

static void save_one(void *p, const char *name, int nd, const int64_t *shape, size_t off) {
    io_ctx *x = p;
    st_tensor *t = &x->list[x->n];
    x->names[x->n] = xstrdup(name);
    t->name = x->names[x->n];
    t->ndim = nd;
    for (int i = 0; i < nd; i++) t->shape[i] = shape[i];
    t->data = x->m->params + off;
    x->n++;
}

/* Refuses weights that are not finite (a diverged run, an initialisation
 * too wide): no program could use them, and scoring would emit no scores. */
static void check_finite(const st_tensor *t, size_t n) {
    long long bad = 0, total = 0;
    const char *first = NULL;
    for (size_t i = 0; i < n; i++) {
        int64_t e = 1;
        for (int d = 0; d < t[i].ndim; d++) e *= t[i].shape[d];
        long long b = 0;
        const float *v = t[i].data;
#pragma omp parallel for reduction(+ : b) schedule(static) if (e > 1 << 16)
        for (int64_t k = 0; k < e; k++) b += !isfinite(v[k]);
        if (b && !first) first = t[i].name;
        bad += b;
        total += e;
    }
    if (bad) die("%lld of the model's %lld weights are not finite (the first in %s): not written", bad, total, first);
}

void model_write_dir(const wdl_model *m, const char *dir, int bf16) {
    size_t cap = 4 + 11 * (size_t)m->cfg.layers;
    io_ctx x = {m, NULL, xcalloc(cap, sizeof(st_tensor)), 0, xcalloc(cap, sizeof(char *))};
    model_each_tensor(m, save_one, &x);
    check_finite(x.list, x.n);
    config_save(dir, &m->cfg);
    char *path = wdl_path_join(dir, "model.safetensors");
    st_write(path, x.list, x.n, bf16 ? ST_BF16 : ST_F32);
    free(path);
    for (size_t i = 0; i < x.n; i++) free(x.names[i]);
    free(x.names); free(x.list);
}

double model_flops_per_token(const wdl_config *c, int64_t T) {
    double H = c->hidden, I = c->inter, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim;
    /* attention: QK^T and PV over the causal context, (T+1)/2 keys on average */
    double per_layer = 2 * (H * QD + 2 * H * KD + QD * H + 3 * H * I) + 2 * 2 * ((double)T + 1) / 2 * QD;
    return c->layers * per_layer + 2 * H * c->vocab;
}

/* ---- role buffers and extras ---- */
typedef struct { const float *buf; float *wbuf; const char *prefix; st_tensor *list; char **names; size_t n; st_model *st; } role_ctx;

static void role_add(void *p, const char *name, int nd, const int64_t *shape, size_t off) {
    role_ctx *x = p;
    size_t k = strlen(x->prefix) + strlen(name) + 1;
    x->names[x->n] = xmalloc(k);
    snprintf(x->names[x->n], k, "%s%s", x->prefix, name);
    st_tensor *t = &x->list[x->n];
    t->name = x->names[x->n];
    t->ndim = nd;
    for (int i = 0; i < nd; i++) t->shape[i] = shape[i];
    t->data = x->buf + off;
    x->n++;
}

void model_write_role(const wdl_model *m, const float *buf, const char *path, const char *prefix) {
    size_t cap = 4 + 11 * (size_t)m->cfg.layers;
    role_ctx x = {buf, NULL, prefix, xcalloc(cap, sizeof(st_tensor)), xcalloc(cap, sizeof(char *)), 0, NULL};
    model_each_tensor(m, role_add, &x);
    st_write(path, x.list, x.n, ST_F32);
    for (size_t i = 0; i < x.n; i++) free(x.names[i]);
    free(x.names); free(x.list);
}

static void role_read(void *p, const char *name, int nd, const int64_t *shape, size_t off) {
    role_ctx *x = p;
    char key[512];
    snprintf(key, sizeof key, "%s%s", x->prefix, name);
    st_read_f32(x->st, key, x->wbuf + off, nd, shape);
}

void model_read_role(const wdl_model *m, float *buf, const char *path, const char *prefix) {
    role_ctx x = {NULL, buf, prefix, NULL, NULL, 0, st_open(path)};
    model_each_tensor(m, role_read, &x);
    st_close(x.st);
}

void model_copy_tokenizer(const char *src_dir, const char *dst_dir) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *src = wdl_path_join(src_dir, files[i]);
        if (wdl_exists(src)) {
            size_t len;
            char *data = wdl_read_file(src, &len);
            char *dst = wdl_path_join(dst_dir, files[i]);
            FILE *f = fopen(dst, "wb");
            if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) die("%s: cannot write", dst);
            free(dst);
            free(data);
        }
        free(src);
    }
}
