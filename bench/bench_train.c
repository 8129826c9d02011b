/* bench_train: training and forward throughput of the C engine, against the
 * machine's own measured GEMM rates on the same matrix shapes (fp32 on
 * OpenBLAS, bf16 and fp32 on oneDNN, and our own fp32 GEMM): see usage
 * below. Prints one JSON object per measurement on stdout. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include "cli.h"
#include "common.h"
#include "config.h"
#include "attn_tiles.h"
#include "gemm.h"
#include "model.h"
#include "sgemm.h"
#include "optim.h"
#include "step.h"

/* one product on g, or on sgemm_own (scratch `own`) when g is NULL */
static void product(gemm_ctx *g, sgemm_bufs *own, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (g) gemm_run(g, ta, tb, M, N, K, 1, A, lda, B, ldb, beta, C, ldc);
    else sgemm_own(ta, tb, M, N, K, 1, A, lda, B, ldb, beta, C, ldc, sgemm_bufs_get, own);
}

/* One training step as the bench runs it (step index s from 1 for AdamW),
 * the optimizer's calls timed into *opt where given */
static void bench_step(wdl_model *m, wd_step *st, const adamw_cfg *ac, const int32_t *ids, const int32_t *tg,
                       const float *wt, int64_t B, int64_t T, int s, double *opt) {
    double u = opt ? wdl_now() : 0;
    model_zero_grad(m);
    if (opt) *opt += wdl_now() - u;
    step_train(st, ids, tg, wt, B, T);
    if (opt) u = wdl_now();
    grad_clip(m, 1.0);
    adamw_step(m, ac, 1e-3, s);
    if (opt) *opt += wdl_now() - u;
}

/* GFLOP/s of one GEMM backend (NULL: sgemm_own) over the linear-layer
 * shapes of one training step (forward X W^T, input gradient dY W, weight
 * gradient dY^T X): one warm-up pass (oneDNN creates its primitives
 * there), then the best of 3. */
static double gemm_rate(gemm_ctx *g, sgemm_bufs *own, const wdl_config *c, int64_t N) {
    int64_t H = c->hidden, QD = c->heads * c->head_dim, KD = c->kv_heads * c->head_dim, FF = c->inter, V = c->vocab;
    int64_t shapes[][2] = {{H, QD}, {H, KD}, {H, KD}, {QD, H}, {H, FF}, {H, FF}, {FF, H}, {H, V}};
    size_t ns = sizeof shapes / sizeof shapes[0], mx = (size_t)(N * (FF > V ? FF : V) + FF * V + H * FF);
    float *a = xaligned(sizeof(float) * mx), *b = xaligned(sizeof(float) * mx), *o = xaligned(sizeof(float) * mx);
    for (size_t i = 0; i < mx; i++) { a[i] = 0.001f * (float)(i % 97); b[i] = 0.002f * (float)(i % 89); }
    double best = 0;
    for (int rep = 0; rep < 4; rep++) {
        double flops = 0, t0 = wdl_now();
        for (size_t s = 0; s < ns; s++) {
            int64_t C = shapes[s][0], OC = shapes[s][1];
            product(g, own, 0, 1, N, OC, C, a, C, b, C, 0, o, OC);
            product(g, own, 0, 0, N, C, OC, a, OC, b, C, 0, o, C);
            product(g, own, 1, 0, OC, C, N, a, OC, b, C, 1, o, C);
            flops += 3.0 * 2 * N * C * OC;
        }
        double r = flops / (wdl_now() - t0) / 1e9;
        if (rep > 0 && r > best) best = r;
    }
    free(a); free(b); free(o);
    return best;
}

static const char *usage =
    "usage: bench_train [--steps S] [--preset NAME] [--batch B] [--seq T]\n"
    "                   [--precision fp32|fp32-openblas|bf16] [--repeat R]\n"
    "Training and forward throughput of the C engine, against the machine's\n"
    "GEMM rates on the same shapes (OpenBLAS and oneDNN fp32, oneDNN bf16, our\n"
    "own fp32). One JSON object per measurement on stdout.\n"
    "  --steps S       timed steps, after two unmeasured ones (10)\n"
    "  --preset NAME   a model preset (default: the reference model, hidden\n"
    "                  256, 4 layers, 8/4 heads, head_dim 32, ffn 768, vocab 512)\n"
    "  --batch B       sequences per step (8)\n"
    "  --seq T         positions per sequence (256)\n"
    "  --precision P   the training's matrix products (fp32)\n"
    "  --repeat R      the best of R timed runs (1)\n"
    "  --breakdown     then S steps more, timed kernel by kernel: where a\n"
    "                  step's time goes (one more JSON object)\n";

int main(int argc, char **argv) {
    long long steps_in = 10, repeat_in = 1, B = 8, T = 256;
    int breakdown = 0;
    const char *preset = NULL, *pname = NULL;
    const cli_opt opts[] = {{"steps", 0, CLI_INT, &steps_in}, {"preset", 0, CLI_STR, &preset},
                            {"batch", 0, CLI_INT, &B},        {"seq", 0, CLI_INT, &T},
                            {"precision", 0, CLI_STR, &pname}, {"repeat", 0, CLI_INT, &repeat_in},
                            {"breakdown", 0, CLI_FLAG, &breakdown}, {0}};
    cli_common cli;
    cli_parse(argc, argv, usage, opts, &cli);
    cli_stdout_only(&cli, 0);
    free(cli.args);   /* it takes no arguments */
    if (steps_in < 1 || repeat_in < 1 || B < 1 || T < 2)
        cli_usage_error("--steps, --repeat and --batch must be at least 1 and --seq at least 2");
    const gemm_precision prec = cli_precision(pname);   /* the programs' default without it */
    const int threads = (int)cli.threads, steps = (int)steps_in, repeat = (int)repeat_in;
    gemm_set_precision(prec);
    wdl_config c = {.hidden = 256, .inter = 768, .layers = 4, .heads = 8, .kv_heads = 4, .head_dim = 32,
                    .vocab = 512, .max_pos = 1024, .eps = 1e-6, .theta = 10000, .tied = 0, .bos_id = -1, .eos_id = -1};
    if (preset) config_preset(preset, &c);
    const char *name = preset ? preset : "reference";
    wdl_model *m = model_new(&c);
    model_init_random(m, 1, 0.02);
    model_alloc_grads(m); model_alloc_moments(m);
    model_alloc_acts(m, B, T, 1, 0);
    int64_t N = B * T;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)N), *tg = xmalloc(sizeof(int32_t) * (size_t)N);
    float *wt = xmalloc(sizeof(float) * (size_t)N);
    wdl_rng r;
    rng_seed(&r, 7);
    for (int64_t i = 0; i < N; i++) { ids[i] = (int32_t)rng_below(&r, (uint64_t)c.vocab); wt[i] = 1.0f / (float)N; }
    for (int64_t i = 0; i < N; i++) tg[i] = (i % T == T - 1) ? -1 : ids[i + 1];
    wd_step st;
    step_init(&st, m, NULL, 1.0);
    adamw_cfg ac = {1e-3, 0.9, 0.95, 1e-8, 0.1, 1.0};

    double rate[4];
    for (int p = 0; p < 3; p++) {   /* fp32 OpenBLAS, bf16 oneDNN, fp32 oneDNN */
        gemm_ctx *g = gemm_ctx_new((gemm_precision)p);
        rate[p] = gemm_rate(g, NULL, &c, N);
        gemm_ctx_free(g);
    }
    /* and our own fp32 GEMM (sgemm.h), where the CPU has AVX2 and FMA */
    sgemm_bufs *own = xcalloc(1, sizeof *own);
    rate[3] = sgemm_own_cpu() ? gemm_rate(NULL, own, &c, N) : 0;
    sgemm_bufs_free(own);
    free(own);
    /* whether fp32's products run on it */
    gemm_ctx *gd = gemm_ctx_new(GEMM_FP32_AUTO);
    const int own_used = gemm_ctx_uses_own_sgemm(gd);
    gemm_ctx_free(gd);
    /* the rate of the GEMM the training's products run on; bf16 on fp32
     * FMAs (gemm.h's gemm_ctx_bf16_fma, where gemm_bf16_on_fma or oneDNN
     * has no bf16): sgemm.c's */
    const int bf16_fma = prec == GEMM_BF16 && own_used && (gemm_bf16_on_fma() || !gemm_bf16_native());
    double used = bf16_fma                               ? rate[3]
                  : prec == GEMM_BF16                    ? rate[1]
                  : prec == GEMM_FP32_DNNL               ? rate[2]
                  : prec == GEMM_FP32_AUTO && own_used ? rate[3]
                                                       : rate[0];
    double flop_tok = 3 * model_flops_per_token(&c, T);
    /* where attention's small products ran (kernels.h) */
    const char *attention = gemm_attention_amx()   ? "amx-tiles"
                            : gemm_attention_dot() ? "avx512bf16-dot"
                            : gemm_attention_tiles16_for(c.head_dim)
                                ? (ATTN_TILES_AVX512 ? "avx512-tiles-bf16-inputs" : "avx2-tiles-bf16-inputs")
                            : gemm_attention_tiles_for(c.head_dim)
                                ? (ATTN_TILES_AVX512 ? "avx512-tiles" : "avx2-tiles")
                                                     : "gemm-backend";
    /* training: two warm-up steps, then timed steps; best of `repeat` runs */
    double t0 = 0, dt = 1e30;
    for (int r = 0; r < repeat; r++) {
        for (int s = 0; s < steps + 2; s++) {
            if (s == 2) t0 = wdl_now();
            bench_step(m, &st, &ac, ids, tg, wt, B, T, s + 1, NULL);
        }
        double d = (wdl_now() - t0) / steps;
        if (d < dt) dt = d;
    }
    double tps = N / dt, gf = tps * flop_tok / 1e9;
    printf("{\"bench\":\"train\",\"model\":\"%s\",\"precision\":\"%s\",\"params\":%zu,\"threads\":%d,"
           "\"batch\":%lld,\"seq\":%lld,\"tokens_per_s\":%.0f,\"ms_per_step\":%.1f,\"gflops\":%.1f,"
           "\"sgemm_gflops\":%.1f,\"onednn_bf16_gflops\":%.1f,\"onednn_f32_gflops\":%.1f,\"own_f32_gflops\":%.1f,"
           "\"fp32_own\":%s,\"own_tile\":\"%s\",\"gemm_gflops\":%.1f,"
           "\"mfu_vs_gemm\":%.3f,\"mfu_vs_sgemm\":%.3f,\"onednn_isa\":\"%s\","
           "\"attention\":\"%s\",\"bf16_products\":\"%s\"}\n",
           name, gemm_precision_name(prec), m->nparams, threads, (long long)B, (long long)T, tps, dt * 1e3, gf,
           rate[0], rate[1], rate[2], rate[3], own_used ? "true" : "false", sgemm_own_tile(), used, gf / used, gf / rate[0],
           gemm_dnnl_isa(), attention,
           prec != GEMM_BF16 ? "none" : bf16_fma ? "fp32-fma" : "onednn");
    if (breakdown) {
        /* the same steps again, each kernel timed (model.h's model_times)
         * and the optimizer's three calls: not the steps measured above */
        model_times mt = {{0}};
        double opt = 0, t1 = wdl_now();
        m->times = &mt;
        for (int s = 0; s < steps; s++) bench_step(m, &st, &ac, ids, tg, wt, B, T, steps + 3 + s, &opt);
        m->times = NULL;
        const double step = (wdl_now() - t1) / steps;
        /* the linear layers' multiply-adds, forward and backward (the head's are the loss's) */
        const int64_t QD = c.heads * c.head_dim, KD = c.kv_heads * c.head_dim;
        const double lin = 6.0 * N * c.layers * (double)(c.hidden * (2 * QD + 2 * KD) + 3 * c.hidden * c.inter);
        double sum = opt;
        printf("{\"bench\":\"train_breakdown\",\"model\":\"%s\",\"precision\":\"%s\",\"threads\":%d,"
               "\"step_ms\":%.4f", name, gemm_precision_name(prec), threads, step * 1e3);
        for (int k = 0; k < MT_KINDS; k++) {
            printf(",\"%s_ms\":%.4f", model_time_names[k], mt.s[k] / steps * 1e3);
            sum += mt.s[k];
        }
        printf(",\"optimizer_ms\":%.4f,\"other_ms\":%.4f,\"products_gflops\":%.1f,\"products_vs_gemm\":%.3f}\n",
               opt / steps * 1e3, (step - sum / steps) * 1e3, lin / (mt.s[MT_PRODUCTS] / steps) / 1e9,
               lin / (mt.s[MT_PRODUCTS] / steps) / 1e9 / used);
    }
    /* forward only (scoring) */
    double *nll = xmalloc(sizeof(double) * (size_t)N), *ent = xmalloc(sizeof(double) * (size_t)N);
    for (int s = 0; s < steps + 2; s++) {
        if (s == 2) t0 = wdl_now();
        step_score(m, st.scratch, st.chunk, ids, tg, B, T, nll, ent);
    }
    dt = (wdl_now() - t0) / steps;
    printf("{\"bench\":\"forward\",\"model\":\"%s\",\"precision\":\"%s\",\"threads\":%d,\"tokens_per_s\":%.0f,"
           "\"gflops\":%.1f}\n", name, gemm_precision_name(prec), threads, N / dt, N / dt * flop_tok / 3 / 1e9);
    fflush(stdout);
    step_free(&st);
    model_free(m);
    free(ids); free(tg); free(wt); free(nll); free(ent);
    return 0;
}
