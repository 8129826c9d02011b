/* attention_bf16.c: causal GQA attention with bf16 products batched over
 * heads and sequences (see attention_bf16.h). */
#include "attention_bf16.h"
#include "common.h"
#include "gemm.h"
#include <math.h>
#include <string.h>

/* Loops over fewer rows than this stay on one thread. */
#define PAR_ROWS 256
/* Workspace one run of sequences may use; a longer run is cut (never below
 * one sequence). */
#define RUN_BYTES ((size_t)128 << 20)

/* the workspace slots (gemm_ctx_workspace) */
enum { WS_K, WS_V, WS_Q, WS_DY, WS_S, WS_P, WS_DS, WS_O, WS_DP };

/* One run: nb sequences of T rows from row row0; every product covers
 * Bp = nb * NH matrices, one per (sequence, query head), in that order. */
typedef struct {
    gemm_ctx *g;
    int64_t NH, grp, HD, ldq, ldk;
    int64_t row0, nb, T, Bp;
    uint16_t *Kc, *Vc, *Qc, *dYc, *Pc, *dSc;   /* bf16 [Bp, rows, cols], dense */
    float *S, *dP, *O;                         /* fp32 product outputs [Bp, rows, cols] */
} att_run;

static size_t run_bytes(int64_t NH, int64_t T, int64_t HD) {
    int64_t m = T < ATT_ROW_BLOCK ? T : ATT_ROW_BLOCK;
    /* K, V and the output blocks [T, HD]; Q and dY blocks [m, HD]; S, dP
     * [m, T] in fp32 and P, dS [m, T] in bf16 */
    return (size_t)NH * (2 * 2 * T * HD + 4 * T * HD + 2 * 2 * m * HD + 2 * 4 * m * T + 2 * 2 * m * T);
}

/* Cuts the sequences into runs of one length and calls fn on each. */
static void for_each_run(attn_dims d, gemm_ctx *g, int backward, void (*fn)(att_run *, void *), void *arg) {
    int64_t b = 0;
    while (b < d.B) {
        int64_t row = d.off ? d.off[b] : b * d.T, T = d.off ? d.off[b + 1] - d.off[b] : d.T;
        int64_t cap = (int64_t)(RUN_BYTES / run_bytes(d.NH, T, d.HD));
        int64_t nb = 1;
        while (b + nb < d.B && nb < cap && (!d.off || d.off[b + nb + 1] - d.off[b + nb] == T)) nb++;
        att_run r = {.g = g, .NH = d.NH, .grp = d.NH / d.KVH, .HD = d.HD, .ldq = d.NH * d.HD, .ldk = d.KVH * d.HD,
                     .row0 = row, .nb = nb, .T = T, .Bp = nb * d.NH};
        int64_t n = r.Bp * T * d.HD, m = T < ATT_ROW_BLOCK ? T : ATT_ROW_BLOCK;
        r.Kc = gemm_ctx_workspace(g, WS_K, sizeof(uint16_t) * (size_t)n);
        r.Vc = gemm_ctx_workspace(g, WS_V, sizeof(uint16_t) * (size_t)n);
        r.Qc = gemm_ctx_workspace(g, WS_Q, sizeof(uint16_t) * (size_t)(r.Bp * m * d.HD));
        r.S = gemm_ctx_workspace(g, WS_S, sizeof(float) * (size_t)(r.Bp * m * T));
        r.Pc = gemm_ctx_workspace(g, WS_P, sizeof(uint16_t) * (size_t)(r.Bp * m * T));
        r.O = gemm_ctx_workspace(g, WS_O, sizeof(float) * (size_t)n);
        if (backward) {
            r.dYc = gemm_ctx_workspace(g, WS_DY, sizeof(uint16_t) * (size_t)(r.Bp * m * d.HD));
            r.dSc = gemm_ctx_workspace(g, WS_DS, sizeof(uint16_t) * (size_t)(r.Bp * m * T));
            r.dP = gemm_ctx_workspace(g, WS_DP, sizeof(float) * (size_t)(r.Bp * m * T));
        }
        fn(&r, arg);
        b += nb;
    }
}

/* dst[bh][i] = bf16 of row first + i of matrix bh's head in src (a KV head
 * when kv: query head h reads KV head h / grp), for i < rows. */
static void gather(const att_run *r, uint16_t *dst, const float *src, int kv, int64_t first, int64_t rows) {
    const int64_t ld = kv ? r->ldk : r->ldq;
#pragma omp for schedule(static) nowait
    for (int64_t x = 0; x < r->Bp * rows; x++) {
        int64_t bh = x / rows, i = x % rows, b = bh / r->NH, h = bh % r->NH;
        const float *s = src + (r->row0 + b * r->T + first + i) * ld + (kv ? h / r->grp : h) * r->HD;
        gemm_ctx_to_bf16(r->g, dst + x * r->HD, s, r->HD);
    }
}

/* The softmax statistics of matrix bh's query row t. */
static inline float *stat_of(const att_run *r, float *stat, int64_t bh, int64_t t) {
    return stat + ((r->row0 + (bh / r->NH) * r->T + t) * r->NH + bh % r->NH) * 2;
}

/* The block's scores (rows r0.., keys 0..r1 in S) scaled and turned into
 * probabilities by the float kernels' own row arithmetic, saving or (with
 * recompute) reading the statistics; each row also into Pc in bf16. */
static void softmax_block(const att_run *r, float *stat, int64_t r0, int64_t m, int64_t r1, int recompute) {
    const float scale = (float)(1.0 / sqrt((double)r->HD));
#pragma omp parallel for schedule(static) if (r->Bp * m >= PAR_ROWS)
    for (int64_t x = 0; x < r->Bp * m; x++) {
        int64_t t = r0 + x % m;
        float *row = r->S + x * r1;
#pragma omp simd
        for (int64_t u = 0; u <= t; u++) row[u] *= scale;
        attention_softmax_row(row, stat_of(r, stat, x / m, t), t, r1, recompute);
        gemm_ctx_to_bf16(r->g, r->Pc + x * r1, row, r1);
    }
}

/* O's rows [Bp, rows, HD] into dst's rows first.. (a query-shaped tensor):
 * overwritten, or added times alpha. */
static void scatter_q(const att_run *r, float *dst, const float *O, int64_t first, int64_t rows, int add,
                      float alpha) {
    const int64_t HD = r->HD;
#pragma omp parallel for schedule(static) if (r->Bp * rows >= PAR_ROWS)
    for (int64_t x = 0; x < r->Bp * rows; x++) {
        int64_t bh = x / rows, i = x % rows, b = bh / r->NH, h = bh % r->NH;
        float *y = dst + (r->row0 + b * r->T + first + i) * r->ldq + h * HD;
        const float *o = O + x * HD;
        if (add)
#pragma omp simd
            for (int64_t c = 0; c < HD; c++) y[c] += alpha * o[c];
        else
            memcpy(y, o, sizeof(float) * (size_t)HD);
    }
}

/* A KV gradient: O's rows [Bp, rows, HD] times alpha added into dst's rows
 * 0..rows, the grp query heads of each KV head in order. */
static void scatter_kv(const att_run *r, float *dst, const float *O, int64_t rows, float alpha) {
    const int64_t HD = r->HD, KVH = r->NH / r->grp;
#pragma omp parallel for schedule(static) if (r->nb * KVH * rows >= PAR_ROWS)
    for (int64_t x = 0; x < r->nb * KVH * rows; x++) {
        int64_t b = x / (KVH * rows), kh = x / rows % KVH, u = x % rows;
        float *y = dst + (r->row0 + b * r->T + u) * r->ldk + kh * HD;
        for (int64_t g = 0; g < r->grp; g++) {
            const float *o = O + ((b * r->NH + kh * r->grp + g) * rows + u) * HD;
#pragma omp simd
            for (int64_t c = 0; c < HD; c++) y[c] += alpha * o[c];
        }
    }
}

typedef struct { float *out, *stat; const float *q, *k, *v; } fwd_args;

/* Keys and values 0..r1 and queries r0..r1 of the block, in bf16. */
static void gather_block(const att_run *r, const float *q, const float *k, const float *v, const float *dout,
                         int64_t r0, int64_t r1) {
#pragma omp parallel if (r->Bp * r1 >= PAR_ROWS)
    {
        gather(r, r->Kc, k, 1, 0, r1);
        gather(r, r->Vc, v, 1, 0, r1);
        gather(r, r->Qc, q, 0, r0, r1 - r0);
        if (dout) gather(r, r->dYc, dout, 0, r0, r1 - r0);
    }
}

static void forward_run(att_run *r, void *arg) {
    fwd_args *a = arg;
    const int64_t T = r->T, HD = r->HD;
    for (int64_t r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
        int64_t r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, m = r1 - r0;
        gather_block(r, a->q, a->k, a->v, NULL, r0, r1);
        gemm_run_bf16_batch(r->g, r->Bp, 0, 1, m, r1, HD, r->Qc, r->Kc, r->S);
        softmax_block(r, a->stat, r0, m, r1, 0);
        gemm_run_bf16_batch(r->g, r->Bp, 0, 0, m, HD, r1, r->Pc, r->Vc, r->O);
        scatter_q(r, a->out, r->O, r0, m, 0, 1.0f);
    }
}

int attention_bf16_forward(float *out, float *stat, const float *q, const float *k, const float *v, attn_dims d) {
    gemm_ctx *g = gemm_current();
    if (!g || gemm_ctx_precision(g) != GEMM_BF16) return 0;
    fwd_args a = {out, stat, q, k, v};
    for_each_run(d, g, 0, forward_run, &a);
    return 1;
}

typedef struct { float *dq, *dk, *dv, *stat; const float *dout, *q, *k, *v; } bwd_args;

static void backward_run(att_run *r, void *arg) {
    bwd_args *a = arg;
    const int64_t T = r->T, HD = r->HD;
    const float scale = (float)(1.0 / sqrt((double)HD));
    for (int64_t r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
        int64_t r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, m = r1 - r0;
        gather_block(r, a->q, a->k, a->v, a->dout, r0, r1);
        /* the forward's probabilities again: its product and its loops */
        gemm_run_bf16_batch(r->g, r->Bp, 0, 1, m, r1, HD, r->Qc, r->Kc, r->S);
        softmax_block(r, a->stat, r0, m, r1, 1);
        /* dV += P^T dY */
        gemm_run_bf16_batch(r->g, r->Bp, 1, 0, r1, HD, m, r->Pc, r->dYc, r->O);
        scatter_kv(r, a->dv, r->O, r1, 1.0f);
        /* dP = dY V^T, then dS = P o (dP - rowsum(P o dP)) */
        gemm_run_bf16_batch(r->g, r->Bp, 0, 1, m, r1, HD, r->dYc, r->Vc, r->dP);
#pragma omp parallel for schedule(static) if (r->Bp * m >= PAR_ROWS)
        for (int64_t x = 0; x < r->Bp * m; x++) {
            int64_t t = r0 + x % m;
            const float *p = r->S + x * r1;
            float *gr = r->dP + x * r1;
            double dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int64_t u = 0; u <= t; u++) dot += (double)p[u] * gr[u];
#pragma omp simd
            for (int64_t u = 0; u <= t; u++) gr[u] = p[u] * (gr[u] - (float)dot);
            for (int64_t u = t + 1; u < r1; u++) gr[u] = 0;
            gemm_ctx_to_bf16(r->g, r->dSc + x * r1, gr, r1);
        }
        /* dQ += scale dS K, dK += scale dS^T Q */
        gemm_run_bf16_batch(r->g, r->Bp, 0, 0, m, HD, r1, r->dSc, r->Kc, r->O);
        scatter_q(r, a->dq, r->O, r0, m, 1, scale);
        gemm_run_bf16_batch(r->g, r->Bp, 1, 0, r1, HD, m, r->dSc, r->Qc, r->O);
        scatter_kv(r, a->dk, r->O, r1, scale);
    }
}

int attention_bf16_backward(float *dq, float *dk, float *dv, const float *dout, const float *stat, const float *q,
                            const float *k, const float *v, attn_dims d) {
    gemm_ctx *g = gemm_current();
    if (!g || gemm_ctx_precision(g) != GEMM_BF16) return 0;
    bwd_args a = {dq, dk, dv, (float *)stat, dout, q, k, v};
    for_each_run(d, g, 1, backward_run, &a);
    return 1;
}
