/* White-box test of the whole model against Hugging Face transformers'
 * Qwen3ForCausalLM (fixtures made by tests/gen_fixtures.py): logits, loss,
 * per-position NLL and entropy, every parameter gradient, five AdamW steps,
 * for an untied and a tied model; and the mixed-logit loss of a weak and a
 * strong model with its gradients and joint / frozen-weak AdamW steps.
 * And --precision bf16 against transformers with bf16 GEMMs (test_bf16),
 * and NEFTune's embedding noise (test_neftune).
 * Tolerances are per tensor and are printed with the measured error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "gemm.h"
#include "generate.h"
#include "kernels.h"
#include "model.h"
#include "optim.h"
#include "safetensors.h"
#include "step.h"
#include "testutil.h"

#define FIX "tests/fixtures/"
static const double U8 = 1.0 / 256;   /* bf16's unit roundoff, 2^-8 */
enum { B = 2, T = 12 };

typedef struct { int32_t ids[B * T], tg[B * T]; float wt[B * T]; int ntg; } batch;

static void load_batch(st_model *ref, batch *b) {
    float f[B * T];
    int64_t shape[2] = {B, T};
    st_read_f32(ref, "input_ids", f, 2, shape);
    for (int i = 0; i < B * T; i++) b->ids[i] = (int32_t)f[i];
    st_read_f32(ref, "targets", f, 2, shape);
    b->ntg = 0;
    for (int i = 0; i < B * T; i++) { b->tg[i] = f[i] < 0 ? -1 : (int32_t)f[i]; b->ntg += f[i] >= 0; }
    for (int i = 0; i < B * T; i++) b->wt[i] = 1.0f / (float)b->ntg;
}

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) fail_msg("%s: %s", path, e.text);
    return j;
}

/* max |a-b| / scale; scale = max(|ref|) for relative checks, 1 for absolute */
static double maxdiff(const float *a, const float *ref, size_t n, int relative) {
    double md = 0, sc = 0;
    for (size_t i = 0; i < n; i++) { md = fmax(md, fabs((double)a[i] - ref[i])); sc = fmax(sc, fabs(ref[i])); }
    return relative ? md / (sc > 0 ? sc : 1) : md;
}
static void expect(const char *what, double err, double tol) {
    print_message("# %-58s err %.2e (tol %.0e)\n", what, err, tol);
    if (!(err <= tol)) fail_msg("%s: error %.3g above tolerance %.1g", what, err, tol);
}

typedef struct { const wdl_model *m; st_model *ref; const char *prefix; const float *buf; double worst; char worst_name[300]; double tol; int relative; } cmp_ctx;
static void cmp_tensor(void *p, const char *name, int nd, const int64_t *shape, size_t off) {
    cmp_ctx *c = p;
    char key[256];
    snprintf(key, sizeof key, "%s%s", c->prefix, name);
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)shape[i];
    float *r = xmalloc(n * sizeof(float));
    st_read_f32(c->ref, key, r, nd, shape);
    double e = maxdiff(c->buf + off, r, n, c->relative);
    if (e > c->worst) { c->worst = e; snprintf(c->worst_name, sizeof c->worst_name, "%s", key); }
    if (!(e <= c->tol)) fail_msg("%s: error %.3g above tolerance %.1g", key, e, c->tol);
    free(r);
}
static void compare_all(const wdl_model *m, st_model *ref, const char *prefix, const float *buf,
                        double tol, int relative, const char *label) {
    cmp_ctx c = {m, ref, prefix, buf, 0, "", tol, relative};
    model_each_tensor(m, cmp_tensor, &c);
    char what[200];
    snprintf(what, sizeof what, "%s (worst: %s)", label, c.worst_name);
    expect(what, c.worst, tol);
}

static adamw_cfg fixture_adamw(void) {
    adamw_cfg o = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .clip = 1.0};
    return o;
}

static void check_single(const char *dir) {
    char path[256];
    snprintf(path, sizeof path, FIX "%s", dir);
    wdl_model *m = model_load(path);
    snprintf(path, sizeof path, FIX "%s/ref.safetensors", dir);
    st_model *ref = st_open(path);
    snprintf(path, sizeof path, FIX "%s/ref.json", dir);
    json_t *rj = load_json(path);
    batch b;
    load_batch(ref, &b);
    const int64_t V = m->cfg.vocab, H = m->cfg.hidden;
    model_alloc_grads(m);
    model_alloc_moments(m);
    model_alloc_acts(m, B, T, 1, 0);
    wd_step s;
    step_init(&s, m, NULL, 1.0);

    /* logits, NLL, entropy */
    double nll[B * T], ent[B * T];
    step_score(m, s.scratch, s.chunk, b.ids, b.tg, B, T, nll, ent);
    float *logits = xmalloc(sizeof(float) * B * T * V), *rl = xmalloc(sizeof(float) * B * T * V);
    linear_forward(logits, m->a.normf, model_head(m), B * T, H, V);
    int64_t ls[3] = {B, T, V}, ps[2] = {B, T};
    st_read_f32(ref, "logits", rl, 3, ls);
    char what[128];
    snprintf(what, sizeof what, "%s logits (abs)", dir);
    expect(what, maxdiff(logits, rl, (size_t)(B * T * V), 0), 2e-5);
    float rn[B * T], re[B * T], fn[B * T], fe[B * T];
    st_read_f32(ref, "nll", rn, 2, ps);
    st_read_f32(ref, "entropy", re, 2, ps);
    for (int i = 0; i < B * T; i++) { fn[i] = (float)nll[i]; fe[i] = b.tg[i] >= 0 ? (float)ent[i] : re[i]; }
    snprintf(what, sizeof what, "%s per-position NLL (abs)", dir);
    expect(what, maxdiff(fn, rn, B * T, 0), 2e-5);
    snprintf(what, sizeof what, "%s per-position entropy (abs)", dir);
    expect(what, maxdiff(fe, re, B * T, 0), 2e-5);

    /* loss and every gradient */
    model_zero_grad(m);
    double loss = step_train(&s, b.ids, b.tg, b.wt, B, T);
    snprintf(what, sizeof what, "%s loss (rel)", dir);
    expect(what, fabs(loss - json_real_value(json_object_get(rj, "loss_f64"))) / loss, 2e-6);
    snprintf(what, sizeof what, "%s gradients (rel to max |grad| per tensor)", dir);
    compare_all(m, ref, "grad.", m->grads, 1e-4, 1, what);

    /* five AdamW steps on the same batch */
    adamw_cfg o = fixture_adamw();
    json_t *losses = json_object_get(rj, "losses"), *norms = json_object_get(rj, "grad_norms");
    double worst_l = 0, worst_n = 0;
    for (int t = 0; t < 5; t++) {
        model_zero_grad(m);
        double l = step_train(&s, b.ids, b.tg, b.wt, B, T);
        double n = grad_clip(m, o.clip);
        adamw_step(m, &o, o.lr, t + 1);
        worst_l = fmax(worst_l, fabs(l - json_real_value(json_array_get(losses, t))));
        worst_n = fmax(worst_n, fabs(n - json_real_value(json_array_get(norms, t))) / n);
    }
    snprintf(what, sizeof what, "%s AdamW losses, 5 steps (abs)", dir);
    expect(what, worst_l, 2e-5);
    snprintf(what, sizeof what, "%s AdamW grad norms, 5 steps (rel)", dir);
    expect(what, worst_n, 1e-5);
    snprintf(what, sizeof what, "%s parameters after 5 steps (abs)", dir);
    compare_all(m, ref, "final.", m->params, 1e-4, 0, what);

    free(logits); free(rl);
    step_free(&s);
    json_decref(rj);
    st_close(ref);
    model_free(m);
}

static void test_untied(void **st) { check_single("untied"); }
static void test_tied(void **st) { check_single("tied"); }

static void test_mixed(void **st) {
    wdl_model *wk = model_load(FIX "mixed/weak"), *sg = model_load(FIX "mixed/strong");
    st_model *ref = st_open(FIX "mixed/ref.safetensors");
    json_t *rj = load_json(FIX "mixed/ref.json");
    batch b;
    load_batch(ref, &b);
    wdl_model *ms[2] = {wk, sg};
    for (int i = 0; i < 2; i++) { model_alloc_grads(ms[i]); model_alloc_moments(ms[i]); model_alloc_acts(ms[i], B, T, 1, 0); }
    double lambda = json_real_value(json_object_get(rj, "lambda"));
    wd_step s;
    step_init(&s, sg, wk, lambda);
    model_zero_grad(wk); model_zero_grad(sg);
    double loss = step_train(&s, b.ids, b.tg, b.wt, B, T);
    expect("mixed loss (rel)", fabs(loss - json_real_value(json_object_get(rj, "loss"))) / loss, 2e-6);
    compare_all(wk, ref, "grad.weak.", wk->grads, 1e-4, 1, "mixed weak gradients (rel)");
    compare_all(sg, ref, "grad.strong.", sg->grads, 1e-4, 1, "mixed strong gradients (rel)");

    step_free(&s);
    model_free(wk); model_free(sg);

    /* three joint AdamW steps from the saved start, gradients clipped as one
     * set (wdl-train's default, the reference's fused module) and, as the
     * --clip-mode separate option does, each model on its own */
    adamw_cfg o = fixture_adamw();
    float *joint_after = NULL;
    double rules_apart = 0;
    for (int mode = 0; mode < 2; mode++) {
        const char *tag = mode ? "separate" : "joint";
        wk = model_load(FIX "mixed/weak"); sg = model_load(FIX "mixed/strong");
        wdl_model *both[2] = {sg, wk};
        for (int i = 0; i < 2; i++) { model_alloc_grads(both[i]); model_alloc_moments(both[i]); model_alloc_acts(both[i], B, T, 1, 0); }
        step_init(&s, sg, wk, lambda);
        json_t *losses = json_object_get(rj, mode ? "separate_losses" : "losses");
        json_t *gn = json_object_get(rj, mode ? "separate_grad_norms" : "grad_norms");
        double worst = 0, worst_n = 0;
        for (int t = 0; t < 3; t++) {
            model_zero_grad(wk); model_zero_grad(sg);
            double l = step_train(&s, b.ids, b.tg, b.wt, B, T), norms[2];
            if (mode) { norms[0] = grad_clip(sg, o.clip); norms[1] = grad_clip(wk, o.clip); }
            else {
                double nj = grad_clip_joint(both, 2, o.clip, norms);
                double ref_nj = json_real_value(json_array_get(json_object_get(gn, "joint"), t));
                worst_n = fmax(worst_n, fabs(nj - ref_nj) / ref_nj);
            }
            for (int i = 0; i < 2; i++) {
                double r = json_real_value(json_array_get(json_object_get(gn, i ? "weak" : "strong"), t));
                worst_n = fmax(worst_n, fabs(norms[i] - r) / r);
                adamw_step(both[i], &o, o.lr, t + 1);
            }
            worst = fmax(worst, fabs(l - json_real_value(json_array_get(losses, t))));
        }
        char what[160], pre[64];
        snprintf(what, sizeof what, "mixed %s-clip AdamW losses, 3 steps (abs)", tag);
        expect(what, worst, 2e-5);
        snprintf(what, sizeof what, "mixed %s-clip gradient norms, 3 steps (rel)", tag);
        expect(what, worst_n, 1e-5);
        snprintf(pre, sizeof pre, "after_%s.strong.", tag);
        snprintf(what, sizeof what, "mixed %s-clip strong parameters after 3 steps (abs)", tag);
        compare_all(sg, ref, pre, sg->params, 1e-4, 0, what);
        snprintf(pre, sizeof pre, "after_%s.weak.", tag);
        snprintf(what, sizeof what, "mixed %s-clip weak parameters after 3 steps (abs)", tag);
        compare_all(wk, ref, pre, wk->params, 1e-4, 0, what);
        if (!mode) {
            joint_after = xmalloc(sg->nparams * sizeof(float));
            memcpy(joint_after, sg->params, sg->nparams * sizeof(float));
        } else rules_apart = maxdiff(sg->params, joint_after, sg->nparams, 0);
        step_free(&s);
        model_free(wk); model_free(sg);
    }
    /* the two rules move the parameters apart by several times the
     * tolerance (norms ~4 per model), so the checks above tell them apart */
    print_message("# joint vs separate clipping: strong parameters %.2e apart (want > 5e-04)\n", rules_apart);
    assert_true(rules_apart > 5e-4);
    free(joint_after);

    /* frozen weak: only the strong model moves */
    wk = model_load(FIX "mixed/weak"); sg = model_load(FIX "mixed/strong");
    model_alloc_acts(wk, B, T, 0, 0);
    model_alloc_grads(sg); model_alloc_moments(sg); model_alloc_acts(sg, B, T, 1, 0);
    step_init(&s, sg, wk, lambda);
    s.freeze_weak = 1;
    float *before = xmalloc(wk->nparams * sizeof(float));
    memcpy(before, wk->params, wk->nparams * sizeof(float));
    json_t *losses = json_object_get(rj, "frozen_weak_losses");
    double worst = 0;
    for (int t = 0; t < 3; t++) {
        model_zero_grad(sg);
        double l = step_train(&s, b.ids, b.tg, b.wt, B, T);
        grad_clip(sg, o.clip);
        adamw_step(sg, &o, o.lr, t + 1);
        worst = fmax(worst, fabs(l - json_real_value(json_array_get(losses, t))));
    }
    expect("frozen-weak AdamW losses, 3 steps (abs)", worst, 2e-5);
    assert_memory_equal(before, wk->params, wk->nparams * sizeof(float));
    free(before);
    step_free(&s);
    model_free(wk); model_free(sg);
    json_decref(rj);
    st_close(ref);
}


/* Incremental decoding with the KV cache gives the logits of the full
 * forward at every position (prompts of different lengths, one batch). */
static void test_generation_matches_forward(void **st) {
    wdl_model *m = model_load(FIX "untied");
    st_model *ref = st_open(FIX "untied/ref.safetensors");
    batch b;
    load_batch(ref, &b);
    const int64_t V = m->cfg.vocab, H = m->cfg.hidden;
    model_alloc_acts(m, B, T, 0, 0);
    model_forward(m, b.ids, B, T);
    float *full = xmalloc(sizeof(float) * B * T * V);
    linear_forward(full, m->a.normf, model_head(m), B * T, H, V);
    gen_state g;
    gen_init(&g, m, B, T);
    uint8_t active[B] = {1, 1};
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        int32_t tok[B];
        active[1] = t < 9;   /* the second sequence stops early */
        for (int64_t s = 0; s < B; s++) tok[s] = b.ids[s * T + t];
        gen_step(&g, tok, active);
        for (int64_t s = 0; s < B; s++)
            if (active[s]) worst = fmax(worst, maxdiff(g.logits + s * V, full + (s * T + t) * V, (size_t)V, 0));
    }
    expect("KV-cache decoding vs full forward, logits (abs)", worst, 1e-5);
    gen_free(&g);
    free(full);
    st_close(ref);
    model_free(m);
}

/* n values of g's key (v = 0) or value (v = 1) cache from offset o as
 * floats: in place (fp32), or widened into a static buffer (bf16) */
static float *cache_at(const gen_state *g, int v, size_t o, size_t n) {
    static float buf[4096];
    assert_true(n <= sizeof buf / sizeof *buf);
    if (!g->kc16) return (v ? g->vc : g->kc) + o;
    for (size_t i = 0; i < n; i++) buf[i] = st_bf16_to_f32((v ? g->vc16 : g->kc16)[o + i]);
    return buf;
}

/* Prompts prefilled together (gen_prefill_many: packed, one forward pass
 * filling the cache layer by layer) leave each slot the cache and
 * next-token logits its prompt gets when fed token by token through
 * gen_step (itself checked against the full forward above), up to the
 * GEMMs' rounding; so does gen_prefill of one prompt. In fp32 within
 * 1e-5; in bf16, on its bf16 cache, within U8/2 of the largest logit
 * (prefill and decoding each lie within U8/4 of it from the emulated bf16
 * GEMMs: test_bf16, test_generation_bf16; routes such as AMX's round
 * attention's operands at other points) and one bf16 step of the cache's
 * largest value (2^-7 of it: a key or value on the other side of a
 * rounding boundary). */
static void prefill_many_in(int bf16) {
    if (bf16) gemm_set_precision(GEMM_BF16);
    wdl_model *m = model_load(FIX "untied");
    const int64_t V = m->cfg.vocab, KD = m->cfg.kv_heads * m->cfg.head_dim, L = m->cfg.layers, ML = 16;
    enum { K = 3 };
    const int64_t plen[K] = {5, 1, 10}, slot[K] = {2, 0, 1};
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = (int32_t)((i * 13 + 7) % V);
    const int32_t *prompt[K] = {ids, ids + 5, ids + 6};
    gen_state one, many;
    gen_init(&one, m, K, ML);
    gen_init(&many, m, K, ML);
    float *next_logits = xmalloc(sizeof(float) * (size_t)(K * V));   /* by slot */
    for (int j = 0; j < K; j++) {   /* slot b alone active, its prompt one token a step */
        uint8_t active[K] = {0, 0, 0};
        int32_t tok[K] = {0, 0, 0};
        active[slot[j]] = 1;
        for (int64_t t = 0; t < plen[j]; t++) {
            tok[slot[j]] = prompt[j][t];
            gen_step(&one, tok, active);
        }
        /* (a step writes every row's logits: keep this slot's now) */
        memcpy(next_logits + slot[j] * V, one.logits + slot[j] * V, sizeof(float) * (size_t)V);
    }
    gen_prefill_many(&many, slot, prompt, plen, K);
    gen_state single;   /* gen_prefill: the same for one prompt */
    gen_init(&single, m, K, ML);
    gen_prefill(&single, 1, prompt[2], plen[2]);
    double zmax = 0;
    for (int64_t i = 0; i < K * V; i++) zmax = fmax(zmax, fabs(next_logits[i]));
    const double tol = bf16 ? U8 / 2 * zmax : 1e-5;
    const char *pr = bf16 ? "bf16" : "fp32";
    char what[120];
    snprintf(what, sizeof what, "%s prefill of one prompt vs token by token: logits (abs)", pr);
    expect(what, maxdiff(single.logits + V, next_logits + slot[2] * V, (size_t)V, 0), tol);
    gen_free(&single);
    double wl = 0, wk = 0;
    for (int j = 0; j < K; j++) {
        int64_t b = slot[j];
        assert_int_equal(many.pos[b], plen[j]);
        wl = fmax(wl, maxdiff(many.logits + b * V, next_logits + b * V, (size_t)V, 0));
        for (int64_t l = 0; l < L; l++) {
            size_t o = (size_t)((l * K + b) * ML * KD), n = (size_t)(plen[j] * KD);
            for (int v = 0; v < 2; v++) {
                float ref[4096];
                memcpy(ref, cache_at(&one, v, o, n), sizeof(float) * n);
                wk = fmax(wk, maxdiff(cache_at(&many, v, o, n), ref, n, bf16));
            }
        }
    }
    snprintf(what, sizeof what, "%s prefill together vs token by token: next-token logits (abs)", pr);
    expect(what, wl, tol);
    snprintf(what, sizeof what, "%s prefill together vs token by token: key/value cache (%s)", pr,
             bf16 ? "rel to max" : "abs");
    expect(what, wk, bf16 ? 2 * U8 : 1e-5);
    gen_free(&one);
    gen_free(&many);
    free(next_logits);
    model_free(m);
}
static void test_prefill_many(void **st) { prefill_many_in(0); }
static void test_prefill_many_bf16(void **st) { prefill_many_in(1); }

/* Forward-only with one layer's activations (ACTS_STREAM, what wdl-score
 * uses) gives the final hidden states of the full forward bit for bit, on
 * the fixture and on a 4-layer model (the residual stream alternates), in a
 * batch smaller than the capacity. */
static void stream_matches(wdl_model *m, int64_t Bc, int64_t Tc, int64_t Bn, int64_t Tn) {
    const int64_t H = m->cfg.hidden, N = Bn * Tn;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)((i * 7 + 3) % m->cfg.vocab);
    model_alloc_acts(m, Bc, Tc, ACTS_FORWARD, 0);
    model_forward(m, ids, Bn, Tn);
    float *full = xmalloc(sizeof(float) * (size_t)(N * H));
    memcpy(full, m->a.normf, sizeof(float) * (size_t)(N * H));
    size_t full_elems = m->act_elems;
    model_alloc_acts(m, Bc, Tc, ACTS_STREAM, 0);
    assert_true(m->act_elems < full_elems);
    model_forward(m, ids, Bn, Tn);
    assert_memory_equal(full, m->a.normf, sizeof(float) * (size_t)(N * H));
    free(full);
    free(ids);
}
static void test_stream_forward(void **st) {
    wdl_model *m = model_load(FIX "untied");
    stream_matches(m, B, T, B, T);
    model_free(m);
    wdl_config c;
    config_preset("nano", &c);
    m = model_new(&c);
    model_init_random(m, 3, 0.02);
    stream_matches(m, 3, 80, 2, 70);
    model_free(m);
}

/* The nano preset at random (seed) and a packed batch of ns sequences
 * (len[b] tokens each): its ids and targets (every third position
 * unscored); returns the positions. */
static wdl_model *nano_packed(uint64_t seed, const int64_t *len, int ns, int64_t *N, int32_t **ids, int32_t **tg) {
    wdl_config c;
    config_preset("nano", &c);
    wdl_model *m = model_new(&c);
    model_init_random(m, seed, 0.02);
    const int64_t V = c.vocab;
    *N = 0;
    for (int b = 0; b < ns; b++) *N += len[b];
    *ids = xmalloc(sizeof(int32_t) * (size_t)*N);
    *tg = xmalloc(sizeof(int32_t) * (size_t)*N);
    for (int64_t i = 0; i < *N; i++) {
        (*ids)[i] = (int32_t)((i * 11 + 5) % V);
        (*tg)[i] = i % 3 ? (int32_t)((i * 5 + 1) % V) : -1;
    }
    return m;
}

/* wdl-score's activations: a packed batch's positions only (fewer than
 * Bmax x Tmax), the layers' slots padded with room for the head's
 * scratch, which after the forward lies in them (model_spare_acts). The
 * same NLL and entropy, byte for byte, as at full capacity with scratch
 * of its own, in chunks smaller than the batch's scored positions and
 * with the scratch at the spare part's very end, so that each chunk's
 * hidden rows are read after the previous chunk's logits were written
 * next to them (a part reaching into the final norm's output would
 * change them). Only ACTS_STREAM activations have such a part. */
static void score_into(wdl_model *m, void *scratch, int64_t chunk, const int32_t *ids, const int32_t *tg,
                       const int64_t *len, int ns, int64_t N, double **r) {
    r[0] = xmalloc(sizeof(double) * (size_t)N);
    r[1] = xmalloc(sizeof(double) * (size_t)N);
    step_score_packed(m, scratch, chunk, ids, tg, len, ns, r[0], r[1]);
}
static void test_spare_acts_as_head_scratch(void **st) {
    enum { NS = 3 };
    const int64_t len[NS] = {60, 17, 33}, chunk = 16;
    int64_t N;
    int32_t *ids, *tg;
    wdl_model *m = nano_packed(9, len, NS, &N, &ids, &tg);
    const int64_t H = m->cfg.hidden, V = m->cfg.vocab;
    size_t spare;
    model_alloc_acts(m, NS, 64, ACTS_FORWARD, 0);
    assert_null(model_spare_acts(m, &spare));
    assert_int_equal(spare, 0);
    model_alloc_acts(m, NS, 64, ACTS_TRAIN, 0);
    assert_null(model_spare_acts(m, &spare));
    /* full capacity (3 x 64 positions), scratch of its own */
    model_alloc_acts(m, NS, 64, ACTS_STREAM, 0);
    const size_t bytes = ce_scratch_bytes(1, chunk, H, V), need = (bytes + sizeof(float) - 1) / sizeof(float);
    void *own = xmalloc(bytes);
    double *r0[2], *r1[2];
    score_into(m, own, chunk, ids, tg, len, NS, N, r0);
    /* the batch's 110 positions; then room for 5 x need floats more than
     * their slots take before normf */
    model_alloc_acts_packed(m, NS, 64, N, 0, ACTS_STREAM, 0);
    assert_int_equal(m->Ncap, N);
    assert_non_null(model_spare_acts(m, &spare));
    const size_t room = spare + 5 * need;
    model_alloc_acts_packed(m, NS, 64, N, room, ACTS_STREAM, 0);
    float *sp = model_spare_acts(m, &spare);
    assert_non_null(sp);
    assert_true(spare >= room);
    assert_true(sp + spare <= m->a.normf);
    float *at = sp + ((spare - need) & ~(size_t)15);   /* 64-byte aligned, the closest to normf */
    score_into(m, at, chunk, ids, tg, len, NS, N, r1);
    for (int k = 0; k < 2; k++) {
        assert_memory_equal(r0[k], r1[k], sizeof(double) * (size_t)N);
        free(r0[k]); free(r1[k]);
    }
    free(own); free(ids); free(tg);
    model_free(m);
}

/* Packed sequences (model_forward_packed, what wdl-score runs): each
 * sequence's final hidden states, NLL and entropy are those of the sequence
 * run alone, up to the GEMMs' rounding (products with a different row count
 * may round differently); streaming the packed batch gives the full
 * forward's bytes. Lengths straddle the attention's row block; one is 1. */
static void test_packed_forward(void **st) {
    enum { NS = 4 };
    const int64_t len[NS] = {70, 3, 1, 41};
    int64_t N;
    int32_t *ids, *tg;
    wdl_model *m = nano_packed(5, len, NS, &N, &ids, &tg);
    const int64_t H = m->cfg.hidden, V = m->cfg.vocab;
    float *full = xmalloc(sizeof(float) * (size_t)(N * H));
    double *nll = xmalloc(sizeof(double) * (size_t)N), *ent = xmalloc(sizeof(double) * (size_t)N);
    double *nll1 = xmalloc(sizeof(double) * (size_t)N), *ent1 = xmalloc(sizeof(double) * (size_t)N);
    int64_t chunk = 16;
    void *scratch = xmalloc(ce_scratch_layout(1, chunk, H, V, sizeof(float)).total);
    model_alloc_acts(m, NS, 80, ACTS_FORWARD, 0);   /* room for 4 sequences of up to 80 */
    step_score_packed(m, scratch, chunk, ids, tg, len, NS, nll, ent);
    memcpy(full, m->a.normf, sizeof(float) * (size_t)(N * H));
    double worst = 0, wl = 0, we = 0;
    for (int64_t b = 0, o = 0; b < NS; o += len[b], b++) {
        step_score(m, scratch, chunk, ids + o, tg + o, 1, len[b], nll1 + o, ent1 + o);
        worst = fmax(worst, maxdiff(full + o * H, m->a.normf, (size_t)(len[b] * H), 0));
    }
    for (int64_t i = 0; i < N; i++) { wl = fmax(wl, fabs(nll[i] - nll1[i])); we = fmax(we, fabs(ent[i] - ent1[i])); }
    expect("packed vs alone: final hidden states (abs)", worst, 1e-5);
    expect("packed vs alone: per-position NLL (abs)", wl, 1e-5);
    expect("packed vs alone: per-position entropy (abs)", we, 1e-5);
    model_alloc_acts(m, NS, 80, ACTS_STREAM, 0);
    model_forward_packed(m, ids, len, NS);
    assert_memory_equal(full, m->a.normf, sizeof(float) * (size_t)(N * H));
    free(scratch); free(full); free(nll); free(ent); free(nll1); free(ent1); free(ids); free(tg);
    model_free(m);
}

/* Checkpoint directories written by the programs themselves (committed in
 * tests/fixtures/c_written/: `wdl-init` in F32, then 3 `wdl-train` steps saved
 * with --bf16) load in transformers and give, there, the logits C computes
 * here; gen_fixtures.py --check-dir recorded transformers' side. */
static void check_written(const char *dir, const char *ref_json) {
    json_t *rj = load_json(ref_json);
    json_t *jids = json_object_get(rj, "ids"), *jl = json_object_get(rj, "logits");
    int64_t T2 = (int64_t)json_array_size(jids);
    wdl_model *m = model_load(dir);
    const int64_t V = m->cfg.vocab, H = m->cfg.hidden;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)T2);
    for (int64_t t = 0; t < T2; t++) ids[t] = (int32_t)json_integer_value(json_array_get(jids, t));
    model_alloc_acts(m, 1, T2, 0, 0);
    model_forward(m, ids, 1, T2);
    float *z = xmalloc(sizeof(float) * (size_t)(T2 * V)), *r = xmalloc(sizeof(float) * (size_t)(T2 * V));
    linear_forward(z, m->a.normf, model_head(m), T2, H, V);
    for (int64_t t = 0; t < T2; t++)
        for (int64_t v = 0; v < V; v++) r[t * V + v] = (float)json_real_value(json_array_get(json_array_get(jl, t), v));
    char what[160];
    snprintf(what, sizeof what, "%s: logits vs transformers (abs)", ref_json);
    expect(what, maxdiff(z, r, (size_t)(T2 * V), 0), 1e-5);
    free(ids); free(z); free(r);
    model_free(m);
    json_decref(rj);
}

static void test_written_checkpoints(void **st) {
    check_written(FIX "c_written/init", FIX "c_written/init.json");
    check_written(FIX "c_written/trained", FIX "c_written/trained.json");
}

/* Allocations made by 3 training steps (SFT, or WD-JT with joint clipping)
 * after `warm` uncounted ones. vary_T: step t has T - t positions (shorter
 * batches, all within the capacity). */
static uint64_t step_allocations(wdl_model *sg, wdl_model *wk, const batch *b, int mixed, int warm, int vary_T) {
    adamw_cfg o = fixture_adamw();
    wdl_model *both[2] = {sg, wk};
    wd_step s;
    step_init(&s, sg, mixed ? wk : NULL, 0.5);
    uint64_t before = wdl_alloc_count();
    for (int t = 0; t < warm + 3; t++) {
        if (t == warm) before = wdl_alloc_count();
        model_zero_grad(sg); model_zero_grad(wk);
        step_train(&s, b->ids, b->tg, b->wt, B, vary_T ? T - (t - warm > 0 ? t - warm : 0) : T);
        if (mixed) grad_clip_joint(both, 2, o.clip, NULL);
        else grad_clip(sg, o.clip);
        for (int i = 0; i <= mixed; i++) adamw_step(both[i], &o, o.lr, t + 1);
    }
    uint64_t n = wdl_alloc_count() - before;
    step_free(&s);
    return n;
}

static void load_mixed(wdl_model **sg, wdl_model **wk, st_model **ref, batch *b) {
    *wk = model_load(FIX "mixed/weak");
    *sg = model_load(FIX "mixed/strong");
    *ref = st_open(FIX "mixed/ref.safetensors");
    load_batch(*ref, b);
    wdl_model *both[2] = {*sg, *wk};
    for (int i = 0; i < 2; i++) { model_alloc_grads(both[i]); model_alloc_moments(both[i]); model_alloc_acts(both[i], B, T, ACTS_TRAIN, 0); }
}

/* A training step allocates nothing: forward, loss, backward, clipping and
 * AdamW, from the very first step, for SFT and for WD-JT (two models, joint
 * clipping); and a decoding step allocates nothing after gen_init. Counted
 * are the project's own allocations (wdl_alloc_count: every one goes through
 * common.h's wrappers); OpenBLAS's, libgomp's and libc's own are not. */
static void test_step_allocates_nothing(void **st) {
    wdl_model *sg, *wk;
    st_model *ref;
    batch b;
    load_mixed(&sg, &wk, &ref, &b);
    for (int mixed = 0; mixed < 2; mixed++) {
        uint64_t n = step_allocations(sg, wk, &b, mixed, 0, 1);
        print_message("# %s: %llu allocations in 3 training steps\n", mixed ? "WD-JT" : "SFT", (unsigned long long)n);
        assert_int_equal(n, 0);
    }
    sg->att_keep_max = 0;   /* recomputing attention's probabilities */
    model_alloc_acts(sg, B, T, ACTS_TRAIN, 0);
    uint64_t n = step_allocations(sg, wk, &b, 0, 0, 1);
    print_message("# SFT, probabilities recomputed: %llu allocations in 3 training steps\n", (unsigned long long)n);
    assert_int_equal(n, 0);
    gen_state g;
    gen_init(&g, sg, B, T);
    uint64_t before = wdl_alloc_count();
    uint8_t active[B] = {1, 1};
    for (int64_t t = 0; t < T; t++) gen_step(&g, b.ids + t, active);
    print_message("# decoding: %llu allocations in %d steps\n", (unsigned long long)(wdl_alloc_count() - before), T);
    assert_int_equal(wdl_alloc_count(), before);
    gen_free(&g);
    st_close(ref);
    model_free(wk); model_free(sg);
}

/* In bf16 the backend keeps per-thread scratch (converted operands, held
 * inputs, the weights' bf16 copies) that grows on first use, and a cached
 * primitive per product shape; after one step of each kind (training, and
 * decoding on its bf16 cache), further steps of the same shapes allocate
 * nothing. (A new padded length creates its
 * primitives once: the cache is bounded, see gemm.h.) */
static void test_bf16_steps_allocate_nothing_after_the_first(void **st) {
    wdl_model *sg, *wk;
    st_model *ref;
    batch b;
    load_mixed(&sg, &wk, &ref, &b);
    gemm_set_precision(GEMM_BF16);
    for (int mixed = 0; mixed < 2; mixed++) {
        uint64_t n = step_allocations(sg, wk, &b, mixed, 1, 0);
        print_message("# bf16 %s: %llu allocations in 3 training steps after the first\n", mixed ? "WD-JT" : "SFT",
                      (unsigned long long)n);
        assert_int_equal(n, 0);
    }
    /* decoding on the bf16 cache: every step after the first */
    gen_state g;
    gen_init(&g, sg, B, T);
    uint8_t active[B] = {1, 1};
    gen_step(&g, b.ids, active);
    uint64_t before = wdl_alloc_count();
    for (int64_t t = 1; t < T; t++) gen_step(&g, b.ids + t, active);
    print_message("# bf16 decoding: %llu allocations in %d steps after the first\n",
                  (unsigned long long)(wdl_alloc_count() - before), T - 1);
    assert_int_equal(wdl_alloc_count(), before);
    gen_free(&g);
    st_close(ref);
    model_free(wk); model_free(sg);
}

/* --precision bf16 against transformers (fixtures in tests/fixtures/bf16,
 * the untied model's first step).
 *
 * "emu" is transformers with wdl's bf16 GEMM semantics exactly: every
 * F.linear and torch.matmul (projections, q k^T, p v, lm_head, and the
 * backward products) takes both inputs rounded to bf16 and accumulates and
 * returns float32; all else float32. wdl-bf16 and emu then differ only by
 * float32 effects (accumulation order, exp, rsqrt: ~K u24 relative per
 * value, u24 = 2^-24) and by the bf16 roundings those effects flip: a value
 * within ~K u24 of a rounding midpoint rounds the other way, moving one GEMM
 * input by one bf16 ulp (2 u8 relative, u8 = 2^-8). Flips hit a fraction
 * ~K u24 / u8 = K 2^-16 of the inputs (K <= 80: about 1e-3; more in the
 * backward, where the softmax gradient p (dp - sum p dp) cancels and its
 * float32 error is large relative to it), and each moves one term of one
 * dot product by 2 u8 of that term. Tolerances: the logits and NLL u8 / 4
 * of max |z| (one flip of a term up to an eighth of the largest logit); the
 * loss, a mean of 14 NLLs: that NLL tolerance / sqrt(14), relative to the
 * loss (4.9), is u8 / 26, rounded down to u8 / 32; each gradient u8
 * relative to its largest element (one flip of a token's term worth half
 * the largest element: a weight gradient sums only 24 tokens, so one term
 * can be most of an element), which also covers the F16 storage of the
 * reference gradients (2^-12 relative to the largest). Measured: logits
 * 2e-7 (no flip in the forward), loss 1e-7, gradients 2.4e-4 (the F16
 * storage) to 1.4e-3 (layer 0 q_proj). The same tolerances must reject
 * wdl's fp32 path, which differs from emu by the bf16 rounding itself
 * (~0.6 u8 sqrt(K) per product): checked below by a factor 2 at least
 * (measured about 10x), so this test tells bf16 from fp32.
 *
 * "autocast" is transformers under torch.autocast("cpu", bfloat16), the
 * usual PyTorch mixed precision: the same input roundings, and each matmul's
 * output rounded to bf16 too (wdl keeps it in float32). The two are both
 * bf16-accurate and no closer to each other than to fp32, so this is a
 * band: each path carries about one rounding (u8) per GEMM on the way, 13
 * GEMMs deep for the logits (6 per layer, 2 layers, lm_head) and twice that
 * for autocast; their rms sum sqrt(3 * 13) u8 = 6.2 u8 gives the bound
 * 6 u8 * max|z| for the logits and 6 u8 relative for the loss. */
static float *grads_of(const wdl_model *m) {
    float *g = xmalloc(m->nparams * sizeof(float));
    memcpy(g, m->grads, m->nparams * sizeof(float));
    return g;
}
/* Training that keeps only attention's softmax statistics (att_keep_max 0)
 * and recomputes the probabilities in the backward gives the loss and the
 * gradients of training that keeps them, bit for bit, in fp32 and in bf16,
 * in less activation memory. */
static void test_recomputed_attention(void **st) {
    wdl_model *sg, *wk;
    st_model *ref;
    batch b;
    load_mixed(&sg, &wk, &ref, &b);
    for (int p = 0; p < 2; p++) {
        gemm_set_precision(p ? GEMM_BF16 : GEMM_FP32);
        float *g[2];
        double loss[2];
        size_t elems[2];
        for (int re = 0; re < 2; re++) {
            sg->att_keep_max = re ? 0 : MODEL_ATT_KEEP_MAX;
            model_alloc_acts(sg, B, T, ACTS_TRAIN, 0);
            assert_true(re ? !sg->a.att && sg->a.att_stats : sg->a.att && !sg->a.att_stats);
            elems[re] = sg->act_elems;
            wd_step s;
            step_init(&s, sg, NULL, 1.0);
            model_zero_grad(sg);
            loss[re] = step_train(&s, b.ids, b.tg, b.wt, B, T);
            g[re] = grads_of(sg);
            step_free(&s);
        }
        print_message("# %s: activations %zu floats keeping the probabilities, %zu recomputing them\n",
                      p ? "bf16" : "fp32", elems[0], elems[1]);
        assert_true(elems[1] < elems[0]);
        assert_true(loss[0] == loss[1]);
        assert_memory_equal(g[0], g[1], sg->nparams * sizeof(float));
        free(g[0]); free(g[1]);
    }
    st_close(ref);
    model_free(wk); model_free(sg);
}

/* bf16 training keeps the forward's bf16 copies of ln1, the attention
 * output, ln2 and the SwiGLU output for the backward's weight gradients
 * (gemm_mirror, model->act16): the loss and gradients of two steps are
 * those of a model allocated without them (whose products convert those
 * activations again), bit for bit. And the backward reads the copies:
 * floats of ln1 overwritten after the forward mirrored them (from the
 * kv_hook, which runs after the Q/K/V products) leave the gradients as
 * they were, where without mirrors (and in fp32) they change them. */
static void poison_ln1(void *ctx, int64_t layer, const float *kr, const float *v) {
    wdl_model *m = ctx;
    float *ln1 = m->a.ln1 + layer * m->Ncap * m->cfg.hidden;
    for (int64_t i = 0; i < m->N * m->cfg.hidden; i++) ln1[i] = 7.0f;
}
static float *two_steps(wdl_model *m, const batch *b, int poison, double *loss) {
    wd_step s;
    step_init(&s, m, NULL, 1.0);
    m->kv_hook = poison ? poison_ln1 : NULL;
    m->kv_ctx = m;
    for (int i = 0; i < 2; i++) {
        model_zero_grad(m);
        loss[i] = step_train(&s, b->ids, b->tg, b->wt, B, T);
    }
    m->kv_hook = NULL;
    step_free(&s);
    return grads_of(m);
}
static void test_bf16_mirrors(void **st) {
    wdl_model *sg, *wk;
    st_model *ref;
    batch b;
    load_mixed(&sg, &wk, &ref, &b);
    const size_t gb = sg->nparams * sizeof(float);
    double l[4][2];
    float *g[4];
    /* bf16 on fp32 FMAs (gemm_bf16_on_fma, or no bf16 in oneDNN) reads the
     * floats and mirrors nothing: the poison shows */
    gemm_set_precision(GEMM_BF16);
    gemm_default_bf16_fma(1);
    if (gemm_ctx_uses_own_sgemm(gemm_default())) {
        model_alloc_acts(sg, B, T, ACTS_TRAIN, 0);
        assert_null(sg->act16);
        float *f0 = two_steps(sg, &b, 0, l[0]), *f1 = two_steps(sg, &b, 1, l[1]);
        assert_true(memcmp(f0, f1, gb) != 0);
        free(f0); free(f1);
    }
    /* on oneDNN's kernels (or, where it has none, on copies of the rounded inputs) */
    for (int mir = 0; mir < 2; mir++) {   /* allocated under fp32: no mirrors; under bf16: mirrors */
        gemm_set_precision(mir ? GEMM_BF16 : GEMM_FP32);
        gemm_default_bf16_fma(0);
        model_alloc_acts(sg, B, T, ACTS_TRAIN, 0);
        assert_true(mir ? sg->act16 != NULL : sg->act16 == NULL);
        gemm_set_precision(GEMM_BF16);
        gemm_default_bf16_fma(0);
        g[2 * mir] = two_steps(sg, &b, 0, l[2 * mir]);
        g[2 * mir + 1] = two_steps(sg, &b, 1, l[2 * mir + 1]);
    }
    assert_true(l[0][0] == l[2][0] && l[0][1] == l[2][1]);
    assert_memory_equal(g[0], g[2], gb);                /* mirrors change no bit */
    assert_memory_equal(g[2], g[3], gb);                /* the backward read the mirrors */
    assert_true(memcmp(g[0], g[1], gb) != 0);           /* without them the poison shows */
    for (int i = 0; i < 4; i++) free(g[i]);
    gemm_set_precision(GEMM_FP32);
    model_alloc_acts(sg, B, T, ACTS_TRAIN, 0);
    assert_null(sg->act16);
    float *f0 = two_steps(sg, &b, 0, l[0]), *f1 = two_steps(sg, &b, 1, l[1]);
    assert_true(memcmp(f0, f1, gb) != 0);               /* fp32 reads the floats */
    free(f0); free(f1);
    st_close(ref);
    model_free(wk); model_free(sg);
}

typedef struct { float *logits, *grads; double loss, nll[B * T], ent[B * T]; } bf16_run;
static void bf16_pass(wdl_model *m, gemm_precision p, const batch *b, bf16_run *r) {
    gemm_set_precision(p);
    wd_step s;
    step_init(&s, m, NULL, 1.0);
    step_score(m, s.scratch, s.chunk, b->ids, b->tg, B, T, r->nll, r->ent);
    r->logits = xmalloc(sizeof(float) * B * T * m->cfg.vocab);
    linear_forward(r->logits, m->a.normf, model_head(m), B * T, m->cfg.hidden, m->cfg.vocab);
    model_zero_grad(m);
    r->loss = step_train(&s, b->ids, b->tg, b->wt, B, T);
    r->grads = grads_of(m);
    step_free(&s);
}
/* worst per-tensor max|a - ref| / max|ref| over every gradient */
static double grad_err(const wdl_model *m, st_model *ref, const float *g, char *worst) {
    cmp_ctx c = {m, ref, "emu.grad.", g, 0, "", INFINITY, 1};
    model_each_tensor(m, cmp_tensor, &c);
    if (worst) strcpy(worst, c.worst_name);
    return c.worst;
}

/* The untied model with the reference of fixture dir `sub` (ref.safetensors,
 * ref.json) and its batch. */
static wdl_model *untied_with(const char *sub, st_model **ref, json_t **rj, batch *b) {
    char path[256];
    snprintf(path, sizeof path, FIX "%s/ref.safetensors", sub);
    *ref = st_open(path);
    snprintf(path, sizeof path, FIX "%s/ref.json", sub);
    *rj = load_json(path);
    load_batch(*ref, b);
    return model_load(FIX "untied");
}

/* In bf16 the cache is held in bf16 (half the bytes) and decoding's
 * attention rounds its operands as the forward's bf16 products do: token
 * by token through the bf16 fixture's batch, every position's logits are
 * those of transformers with exactly emulated bf16 GEMMs (fixture "bf16"),
 * within test_bf16's own tolerance for the forward (U8/4 of the largest
 * logit), and the second sequence's early stop leaves the first's alone;
 * so with the first tokens prefilled in one forward pass. */
static void test_generation_bf16(void **st) {
    st_model *ref;
    json_t *rj;
    batch b;
    wdl_model *m = untied_with("bf16", &ref, &rj, &b);
    const int64_t V = m->cfg.vocab;
    float *zemu = xmalloc(sizeof(float) * (size_t)(B * T * V));
    st_read_f32(ref, "emu.logits", zemu, 3, (int64_t[]){B, T, V});
    const double zmax = json_real_value(json_object_get(json_object_get(rj, "emu"), "logits_max_abs"));
    gemm_set_precision(GEMM_BF16);
    gen_state g;
    gen_init(&g, m, B, T);
    assert_null(g.kc);
    assert_non_null(g.kc16);
    uint8_t active[B] = {1, 1};
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        int32_t tok[B];
        active[1] = t < 9;
        for (int64_t s = 0; s < B; s++) tok[s] = b.ids[s * T + t];
        gen_step(&g, tok, active);
        for (int64_t s = 0; s < B; s++)
            if (active[s]) worst = fmax(worst, maxdiff(g.logits + s * V, zemu + (s * T + t) * V, (size_t)V, 0));
    }
    expect("bf16 KV-cache decoding vs emulated bf16 GEMMs, logits (abs)", worst, U8 / 4 * zmax);
    gen_free(&g);
    /* the first sequence's first 6 tokens prefilled (the cache filled from
     * the forward's keys and values), then the rest token by token */
    enum { P0 = 6 };
    gen_init(&g, m, 1, T);
    gen_prefill(&g, 0, b.ids, P0);
    worst = maxdiff(g.logits, zemu + (P0 - 1) * V, (size_t)V, 0);
    for (int64_t t = P0; t < T; t++) {
        gen_step(&g, b.ids + t, (const uint8_t[]){1});
        worst = fmax(worst, maxdiff(g.logits, zemu + t * V, (size_t)V, 0));
    }
    expect("bf16 prefill then decoding vs emulated bf16 GEMMs, logits (abs)", worst, U8 / 4 * zmax);
    gen_free(&g);
    free(zemu);
    json_decref(rj);
    st_close(ref);
    model_free(m);
}

/* gen_argmax_row against the loop it replaces (best = 0; best = v where
 * z[v] > z[best]) on rows of every length up to 70 and the vocabulary's
 * 151,936: values from a few levels (ties everywhere), NaNs, infinities
 * and signed zeros mixed in, and the edge rows (a NaN first, nothing above
 * -inf, the maximum last) */
static int64_t argmax_loop(const float *z, int64_t n) {
    int64_t best = 0;
    for (int64_t v = 1; v < n; v++) if (z[v] > z[best]) best = v;
    return best;
}
static void test_argmax_row(void **st) {
    const float special[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f};
    const int64_t big = 151936;
    float *z = xmalloc(sizeof(float) * (size_t)big);
    wdl_rng r;
    rng_seed(&r, 11);
    int64_t rows = 0;
    for (int64_t n = 1; n <= big; n = n < 70 ? n + 1 : big + 1)
        for (int kind = 0; kind < 6; kind++, rows++) {
            const int64_t m = n <= 70 ? n : big;
            for (int64_t i = 0; i < m; i++) {
                const double u = rng_uniform(&r);
                z[i] = (float)(int)(8 * rng_uniform(&r)) - 4;   /* ties */
                if (kind >= 1 && u < 0.2) z[i] = special[(int)(5 * rng_uniform(&r)) % 5];
                if (kind == 2) z[i] = u < 0.5 ? -INFINITY : NAN;    /* nothing above -inf */
            }
            if (kind == 3) z[0] = NAN;
            if (kind == 4) z[m - 1] = 100;
            if (kind == 5) for (int64_t i = 0; i < m; i++) z[i] = 1;   /* all equal */
            assert_int_equal(gen_argmax_row(z, m), argmax_loop(z, m));
        }
    print_message("# argmax: %lld rows, the same index as the scalar loop\n", (long long)rows);
    free(z);
}

/* bf16 values over 13 binades, so that fp32 sums of their products round
 * and the order of a sum shows in its bytes */
static uint16_t rnd16(wdl_rng *r) {
    const double m = 2 * rng_uniform(r) - 1;
    return st_f32_to_bf16((float)ldexp(m, -(int)(13 * rng_uniform(r))));
}
/* gen_attend_bf16 on made-up operands (head sizes with and without the
 * vector kernels' multiple of 16, one to three query heads per KV head,
 * positions not a multiple of the score blocks): the scalar code and each
 * vector kernel the CPU has give the same bytes, the scores alone too
 * (gen_attend_scores_bf16); the scores are scale q.k up to fp32's
 * summation; the probabilities left in s are bf16 values, the softmax of
 * the scores within bf16's rounding; and out is sum P v up to fp32's
 * summation. */
static void test_attend_bf16(void **st) {
    const int64_t hds[] = {16, 20, 48, 128}, grps[] = {1, 2, 3}, ns[] = {1, 5, 67};
    const int best = gen_attend_bf16_route(-1);
    print_message("# routes compared with the scalar code: %s\n", best == 2 ? "AVX2, AVX-512" : best ? "AVX2" : "none");
    wdl_rng r;
    rng_seed(&r, 7);
    double wz = 0, wp = 0, wo = 0;
    for (size_t a = 0; a < sizeof hds / sizeof *hds; a++)
        for (size_t c = 0; c < sizeof grps / sizeof *grps; c++)
            for (size_t e = 0; e < sizeof ns / sizeof *ns; e++) {
                const int64_t HD = hds[a], grp = grps[c], n = ns[e], ld = 2 * HD + 3, lds = n + 5;
                const float scale = 1.0f / sqrtf((float)HD);
                uint16_t *k = xmalloc(sizeof(uint16_t) * (size_t)(n * ld)),
                         *v = xmalloc(sizeof(uint16_t) * (size_t)(n * ld));
                float *q = xmalloc(sizeof(float) * (size_t)(grp * HD)), *out[3], *s[3], *sc[3];
                for (int64_t i = 0; i < n * ld; i++) { k[i] = rnd16(&r); v[i] = rnd16(&r); }
                for (int64_t i = 0; i < grp * HD; i++) q[i] = 4 * st_bf16_to_f32(rnd16(&r));
                for (int route = 0; route <= best; route++) {
                    out[route] = xmalloc(sizeof(float) * (size_t)(grp * HD));
                    s[route] = xmalloc(sizeof(float) * (size_t)(grp * lds));
                    sc[route] = xmalloc(sizeof(float) * (size_t)(grp * lds));
                    gen_attend_bf16_route(route);
                    gen_attend_scores_bf16(sc[route], lds, q, k, ld, n, HD, grp, scale);
                    gen_attend_bf16(out[route], s[route], lds, q, k, v, ld, n, HD, grp, scale);
                    for (int64_t h = 0; h < grp; h++)
                        assert_memory_equal(sc[route] + h * lds, sc[0] + h * lds, sizeof(float) * (size_t)n);
                    assert_memory_equal(out[route], out[0], sizeof(float) * (size_t)(grp * HD));
                    for (int64_t h = 0; h < grp; h++)
                        assert_memory_equal(s[route] + h * lds, s[0] + h * lds, sizeof(float) * (size_t)n);
                }
                gen_attend_bf16_route(-1);
                for (int64_t h = 0; h < grp; h++) {
                    const float *P = s[0] + h * lds;
                    double z[67], mx = -INFINITY, sum = 0;
                    for (int64_t u = 0; u < n; u++) {
                        double d = 0, mag = 0;
                        for (int64_t i = 0; i < HD; i++) {
                            d += (double)q[h * HD + i] * st_bf16_to_f32(k[u * ld + i]);
                            mag += fabs((double)q[h * HD + i] * st_bf16_to_f32(k[u * ld + i]));
                        }
                        z[u] = scale * d;
                        mx = fmax(mx, z[u]);
                        wz = fmax(wz, fabs(sc[0][h * lds + u] - z[u]) / (scale * mag));
                    }
                    for (int64_t u = 0; u < n; u++) sum += exp(z[u] - mx);
                    for (int64_t u = 0; u < n; u++) {
                        const double p = exp(z[u] - mx) / sum;
                        assert_float_equal(P[u], st_bf16_to_f32(st_f32_to_bf16(P[u])), 0);
                        wp = fmax(wp, fabs(P[u] - p) / p);
                    }
                    for (int64_t i = 0; i < HD; i++) {
                        double o = 0, mag = 0;
                        for (int64_t u = 0; u < n; u++) {
                            o += (double)P[u] * st_bf16_to_f32(v[u * ld + i]);
                            mag += fabs((double)P[u] * st_bf16_to_f32(v[u * ld + i]));
                        }
                        wo = fmax(wo, fabs(out[0][h * HD + i] - o) / mag);
                    }
                }
                for (int route = 0; route <= best; route++) { free(out[route]); free(s[route]); free(sc[route]); }
                free(k); free(v); free(q);
            }
    /* 16 lanes of at most 8 FMAs, 4 halvings and the scale: about 13
     * roundings of 2^-24, relative to scale sum |q k| */
    expect("bf16 decoding attention: scores vs scale q.k (rel to scale sum |q k|)", wz, 14.0 / (1 << 24));
    /* bf16's unit roundoff (2^-8: half a step, relative to the smallest
     * value of a binade) plus the fp32 scores' and exps' error */
    expect("bf16 decoding attention: P vs the softmax of q.k (rel)", wp, U8 + 1e-5);
    /* 67 sequential fp32 FMAs: at most about 67 * 2^-24 of sum |P v| */
    expect("bf16 decoding attention: out vs sum P v (rel to sum |P v|)", wo, 67.0 / (1 << 24));
}

static void test_bf16(void **st) {
    st_model *ref;
    json_t *rj;
    batch b;
    wdl_model *m = untied_with("bf16", &ref, &rj, &b);
    const int64_t V = m->cfg.vocab;
    const size_t NZ = (size_t)(B * T * V);
    model_alloc_grads(m);
    model_alloc_acts(m, B, T, 1, 0);
    bf16_run r16, r32;
    bf16_pass(m, GEMM_BF16, &b, &r16);
    bf16_pass(m, GEMM_FP32, &b, &r32);
    int64_t ls[3] = {B, T, V}, ps[2] = {B, T};
    float *zemu = xmalloc(sizeof(float) * NZ), *zac = xmalloc(sizeof(float) * NZ), rn[B * T], fn[B * T];
    st_read_f32(ref, "emu.logits", zemu, 3, ls);
    st_read_f32(ref, "autocast.logits", zac, 3, ls);
    json_t *je = json_object_get(rj, "emu"), *ja = json_object_get(rj, "autocast");
    double zmax = json_real_value(json_object_get(je, "logits_max_abs"));
    double lemu = json_real_value(json_object_get(je, "loss")), lac = json_real_value(json_object_get(ja, "loss"));
    double tz = U8 / 4 * zmax, tl = U8 / 32, tg = U8;
    char worst[300], what[400];

    /* wdl bf16 against the exact emulation */
    expect("bf16 logits vs emulated bf16 GEMMs (abs)", maxdiff(r16.logits, zemu, NZ, 0), tz);
    st_read_f32(ref, "emu.nll", rn, 2, ps);
    for (int i = 0; i < B * T; i++) fn[i] = (float)r16.nll[i];
    expect("bf16 per-position NLL vs emulated (abs)", maxdiff(fn, rn, B * T, 0), tz);
    expect("bf16 loss vs emulated (rel)", fabs(r16.loss - lemu) / lemu, tl);
    double ge = grad_err(m, ref, r16.grads, worst);
    snprintf(what, sizeof what, "bf16 gradients vs emulated (rel to max; worst %s)", worst);
    expect(what, ge, tg);

    /* the fp32 path fails the same checks, by a margin */
    double e32z = maxdiff(r32.logits, zemu, NZ, 0), e32g = grad_err(m, ref, r32.grads, NULL);
    double e32l = fabs(r32.loss - lemu) / lemu;
    print_message("# fp32 path vs emulated bf16: logits %.2e (%.1fx tol), loss %.2e (%.1fx), grads %.2e (%.1fx)\n",
                  e32z, e32z / tz, e32l, e32l / tl, e32g, e32g / tg);
    assert_true(e32z > 2 * tz);
    assert_true(e32g > 2 * tg);

    /* the autocast band */
    expect("bf16 logits vs transformers autocast (abs)", maxdiff(r16.logits, zac, NZ, 0), 6 * U8 * zmax);
    expect("bf16 loss vs transformers autocast (rel)", fabs(r16.loss - lac) / lac, 6 * U8);

    free(r16.logits); free(r16.grads); free(r32.logits); free(r32.grads);
    free(zemu); free(zac);
    json_decref(rj);
    st_close(ref);
    model_free(m);
}
/* model_load_forward in bf16 on a checkpoint with BF16 matrices (what
 * wdl-train --bf16 writes) keeps them in the file: no fp32 copy is ever
 * written (the floats stay zero), and the forward, the head product and a
 * decoding step give the bytes of the fp32 load with its converted bf16
 * copy. An F32 checkpoint takes the converted copy; in fp32 it is
 * model_load. */
static void forward_pass(wdl_model *m, const int32_t *ids, int64_t n, float *h, float *z, float *dz) {
    const int64_t H = m->cfg.hidden, V = m->cfg.vocab;
    model_alloc_acts(m, 1, n, ACTS_FORWARD, 0);
    model_forward(m, ids, 1, n);
    memcpy(h, m->a.normf, sizeof(float) * (size_t)(n * H));
    linear_forward(z, m->a.normf, model_head(m), n, H, V);
    gen_state g;
    gen_init(&g, m, 1, n + 1);
    gen_prefill(&g, 0, ids, n);
    uint8_t on = 1;
    gen_step(&g, ids, &on);
    memcpy(dz, g.logits, sizeof(float) * (size_t)V);
    gen_free(&g);
}
static void test_forward_bf16_weights(void **st) {
    enum { n = 9 };
    int32_t ids[n];
    gemm_set_precision(GEMM_BF16);
    wdl_model *ref = model_load(FIX "c_written/trained");
    const int64_t H = ref->cfg.hidden, V = ref->cfg.vocab;
    for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 37 + 11) % V);
    float *h0 = xmalloc(sizeof(float) * n * H), *z0 = xmalloc(sizeof(float) * n * V), *d0 = xmalloc(sizeof(float) * V);
    float *h1 = xmalloc(sizeof(float) * n * H), *z1 = xmalloc(sizeof(float) * n * V), *d1 = xmalloc(sizeof(float) * V);
    gemm_ctx_set_readonly(gemm_default(), 0, ref->params, ref->nparams);
    forward_pass(ref, ids, n, h0, z0, d0);
    gemm_ctx_set_readonly(gemm_default(), 0, NULL, 0);
    wdl_model *m = model_load_forward(FIX "c_written/trained");
    assert_non_null(m->view_st);
    for (int k = 0; k < W_KINDS; k++) {   /* matrices unwritten, norm weights read */
        int64_t nk = (int64_t)m->layer_elems[k] * (m->layered[k] ? m->cfg.layers : 1), nz = 0;
        for (int64_t i = 0; i < nk; i++) nz += m->P[k][i] != 0;
        if (model_kind_decays(k)) assert_int_equal(nz, 0);
        else assert_memory_equal(m->P[k], ref->P[k], sizeof(float) * (size_t)nk);
    }
    forward_pass(m, ids, n, h1, z1, d1);
    assert_memory_equal(h0, h1, sizeof(float) * n * H);
    assert_memory_equal(z0, z1, sizeof(float) * n * V);
    assert_memory_equal(d0, d1, sizeof(float) * V);
    model_free(m);
    /* F32 on disk: loaded, its bf16 copy converted */
    m = model_load_forward(FIX "c_written/init");
    wdl_model *f32 = model_load(FIX "c_written/init");
    assert_null(m->view_st);
    assert_memory_equal(m->params, f32->params, sizeof(float) * m->nparams);
    model_free(m);
    model_free(f32);
    gemm_set_precision(GEMM_FP32);
    m = model_load_forward(FIX "c_written/trained");
    assert_null(m->view_st);
    assert_memory_equal(m->params, ref->params, sizeof(float) * m->nparams);
    model_free(m);
    model_free(ref);
    free(h0); free(z0); free(d0); free(h1); free(z1); free(d1);
}

/* model_load_decode: in fp32, a checkpoint with BF16 matrices keeps them
 * mapped as shadows of the fp32 weights, and decoding's few-row products
 * read them (the few-row kernel, where the CPU has AVX-512 or AVX2): the same fp32
 * weights bytes as model_load, and prefill plus decoding steps within
 * 1e-5 of its logits (the bound of decoding against the full forward),
 * for one sequence and three. F32 on disk: no shadows. In bf16 it is
 * model_load_forward. With copy, the BF16 matrices copied out of the file
 * give the same logits bytes, in fp32 and bf16. A model wide enough for
 * the kernel (products of at least 65,536 weights: hidden 256, ffn 512),
 * written BF16. */
enum { DEC_PROMPT = 7, DEC_STEPS = 5, DEC_MAX_SEQS = 16 };
/* nb prompts prefilled, then DEC_STEPS steps: their logits, [steps][nb][V] */
static float *decode_run(wdl_model *m, int64_t nb) {
    const int64_t V = m->cfg.vocab;
    float *out = xmalloc(sizeof(float) * (size_t)(DEC_STEPS * nb * V));
    gen_state g;
    gen_init(&g, m, nb, DEC_PROMPT + DEC_STEPS);
    int32_t ids[DEC_PROMPT], tok[DEC_MAX_SEQS];
    uint8_t on[DEC_MAX_SEQS];
    memset(on, 1, sizeof on);
    assert_true(nb <= DEC_MAX_SEQS);
    for (int64_t s = 0; s < nb; s++) {
        for (int i = 0; i < DEC_PROMPT; i++) ids[i] = (int32_t)((i * 37 + 11 * s + 5) % V);
        gen_prefill(&g, (int)s, ids, DEC_PROMPT);
    }
    for (int64_t t = 0; t < DEC_STEPS; t++) {
        for (int64_t s = 0; s < nb; s++) tok[s] = (int32_t)((t * 13 + s * 7 + 1) % V);
        gen_step(&g, tok, on);
        memcpy(out + t * nb * V, g.logits, sizeof(float) * (size_t)(nb * V));
    }
    gen_free(&g);
    return out;
}
/* A model wide enough for the few-row kernel (hidden 256, ffn 512; vocab
 * the nano preset's unless given) drawn with seed, written into dir (a
 * mkdtemp template) as d16 = BF16 and d32 = F32: its floats, or (rounded)
 * the BF16 values as floats. */
static wdl_config write_wide_model(uint64_t seed, int64_t vocab, int rounded, char *dir, char *d16, char *d32) {
    wdl_config c;
    config_preset("nano", &c);
    c.hidden = 256; c.inter = 512; c.heads = 4; c.kv_heads = 2; c.head_dim = 64; c.layers = 2;
    if (vocab) c.vocab = vocab;
    wdl_model *m = model_new(&c);
    model_init_random(m, seed, 0.05);
    assert_non_null(mkdtemp(dir));
    snprintf(d16, 64, "%s/bf16", dir);
    snprintf(d32, 64, "%s/f32", dir);
    wdl_mkdirs(d16);
    wdl_mkdirs(d32);
    model_write_dir(m, d16, 1);
    if (rounded) {
        model_free(m);
        m = model_load(d16);
    }
    model_write_dir(m, d32, 0);
    model_free(m);
    return c;
}
static void test_decode_fp32_shadows(void **st) {
    char dir[] = "/tmp/wdl-shadow-XXXXXX", d16[64], d32[64];
    const wdl_config c = write_wide_model(11, 0, 0, dir, d16, d32);
    assert_true(c.vocab * c.hidden >= GEMM_FEW_ROWS_MIN_NK);
    gemm_set_precision(GEMM_FP32);
    wdl_model *ref = model_load(d16), *dec = model_load_decode(d16, 0), *cp = model_load_decode(d16, 1);
    assert_null(ref->view_st);
    assert_non_null(dec->view_st);
    assert_null(dec->w16);
    assert_null(cp->view_st);   /* copied: the file is closed */
    assert_non_null(cp->w16);
    assert_memory_equal(ref->params, dec->params, sizeof(float) * ref->nparams);
    assert_memory_equal(ref->params, cp->params, sizeof(float) * ref->nparams);
    const int hw = few_rows_cpu() != 0;
    for (int64_t nb = 1; nb <= 3; nb += 2) {
        int64_t f0 = gemm_ctx_few_row_products(gemm_default());
        float *z0 = decode_run(ref, nb);
        int64_t f1 = gemm_ctx_few_row_products(gemm_default());
        float *z1 = decode_run(dec, nb);
        int64_t f2 = gemm_ctx_few_row_products(gemm_default());
        double worst = 0;
        for (int64_t i = 0; i < DEC_STEPS * nb * c.vocab; i++) worst = fmax(worst, fabs((double)z1[i] - z0[i]));
        print_message("# fp32 decoding of %lld sequence(s) with shadowed weights: %lld products on the few-row "
                      "kernel, logits within %.2e of model_load's\n", (long long)nb, (long long)(f2 - f1), worst);
        expect("fp32 decoding, shadowed weights vs model_load (abs)", worst, 1e-5);
        assert_int_equal(f1, f0);   /* no shadows, no kernel */
        /* per step and per prompt's prefill (7 rows): q, o, gate, up and
         * down in each layer, and the head (k and v, 128 x 256, are too small) */
        assert_int_equal(f2 - f1, hw ? (DEC_STEPS + nb) * (5 * c.layers + 1) : 0);
        float *z2 = decode_run(cp, nb);   /* the shadows copied: the same values, the same bytes */
        assert_memory_equal(z1, z2, sizeof(float) * (size_t)(DEC_STEPS * nb * c.vocab));
        free(z0); free(z1); free(z2);
    }
    model_free(dec);
    model_free(cp);
    dec = model_load_decode(d32, 1);   /* F32 on disk: no shadows, nothing copied */
    assert_null(dec->view_st);
    assert_null(dec->w16);
    model_free(dec);
    model_free(ref);
    gemm_set_precision(GEMM_BF16);   /* bf16: model_load_forward's views, in place or copied */
    dec = model_load_decode(d16, 0);
    cp = model_load_decode(d16, 1);
    assert_non_null(dec->view_st);
    assert_non_null(dec->embed16);
    assert_null(cp->view_st);
    assert_true(cp->embed16 >= cp->w16 && cp->embed16 < cp->w16 + cp->nparams);
    float *zb = decode_run(dec, 3), *zc = decode_run(cp, 3);
    assert_memory_equal(zb, zc, sizeof(float) * (size_t)(DEC_STEPS * 3 * c.vocab));
    free(zb); free(zc);
    model_free(dec);
    model_free(cp);
    gemm_set_precision(GEMM_FP32);
    wdl_rmtree(dir);
}

/* fp32 decoding where the products run on sgemm_own (GEMM_FP32_AUTO):
 * model_load_decode takes a BF16 checkpoint's matrices as views, never
 * widened into params, and the few-row kernel reads them as it reads
 * shadows. Up to the kernel's rows the logits are byte for byte those of
 * the same values loaded as floats with shadows beside them (what it
 * loaded before), and the kernel ran as often; beyond them (12 sequences
 * on an AVX-512 CPU, where the kernel takes 8) sgemm_own reads the bf16
 * values, within the fp32 bound of the floats' route. In place or copied
 * into the arena: the same bytes. */
/* A model loaded as views: its matrices never written into params (the
 * block's pages stay zero) */
static void assert_matrices_unwritten(const wdl_model *m) {
    for (int k = 0; k < W_KINDS; k++) {
        if (!model_kind_decays(k)) continue;
        int64_t nk = (int64_t)m->layer_elems[k] * (m->layered[k] ? m->cfg.layers : 1), nz = 0;
        for (int64_t i = 0; i < nk; i++) nz += m->P[k][i] != 0;
        assert_int_equal(nz, 0);
    }
}
typedef struct { wdl_model *m; uint16_t *all; } shadow_ctx;
static void add_shadow(void *p, const char *name, int nd, const int64_t *shape, size_t off) {
    shadow_ctx *x = p;
    if (nd != 2) return;
    const size_t n = (size_t)(shape[0] * shape[1]);
    for (size_t i = 0; i < n; i++) {   /* the floats are bf16 values: their top halves, exactly */
        uint32_t u;
        memcpy(&u, x->m->params + off + i, 4);
        x->all[off + i] = (uint16_t)(u >> 16);
    }
    gemm_ctx_add_bf16_shadow(gemm_default(), x->m->params + off, n, x->all + off);
}
static void test_decode_fp32_views(void **st) {
    char dir[] = "/tmp/wdl-dviews-XXXXXX", d16[64], d32[64];
    const wdl_config c = write_wide_model(11, 0, 1, dir, d16, d32);   /* F32: the BF16 values as floats */
    gemm_set_precision(GEMM_FP32_AUTO);
    if (!gemm_ctx_fp32_views(gemm_default())) {
        print_message("# no fp32 views on this CPU (its fp32 products are not on sgemm_own)\n");
        wdl_rmtree(dir);
        skip();
    }
    wdl_model *ref = model_load(d32), *dec = model_load_decode(d16, 0), *cp = model_load_decode(d16, 1);
    shadow_ctx sx = {ref, xaligned(sizeof(uint16_t) * ref->nparams)};
    model_each_tensor(ref, add_shadow, &sx);
    assert_non_null(dec->view_st);
    assert_non_null(cp->w16);
    assert_matrices_unwritten(dec);
    const int64_t kernel_rows = few_rows_cpu() == 1 ? 8 : 16;
    static const int64_t seqs[] = {1, 3, 12};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        const int64_t nb = seqs[i];
        int64_t f0 = gemm_ctx_few_row_products(gemm_default());
        float *z0 = decode_run(ref, nb);
        int64_t f1 = gemm_ctx_few_row_products(gemm_default());
        float *z1 = decode_run(dec, nb), *z2 = decode_run(cp, nb);
        int64_t f2 = gemm_ctx_few_row_products(gemm_default());
        const size_t bytes = sizeof(float) * (size_t)(DEC_STEPS * nb * c.vocab);
        double worst = 0;
        for (int64_t j = 0; j < DEC_STEPS * nb * c.vocab; j++) worst = fmax(worst, fabs((double)z1[j] - z0[j]));
        print_message("# fp32 decoding of %lld sequence(s) from views: %lld products on the few-row kernel "
                      "(%lld with floats and shadows), logits within %.2e\n", (long long)nb,
                      (long long)(f2 - f1) / 2, (long long)(f1 - f0), worst);
        assert_int_equal(f2 - f1, 2 * (f1 - f0));
        if (nb <= kernel_rows) assert_memory_equal(z0, z1, bytes);
        else expect("fp32 decoding, views beyond the kernel's rows vs floats (abs)", worst, 1e-5);
        assert_memory_equal(z1, z2, bytes);
        free(z0); free(z1); free(z2);
    }
    gemm_ctx_drop_bf16_views(gemm_default(), ref->params, ref->nparams);
    free(sx.all);
    model_free(ref);
    model_free(dec);
    model_free(cp);
    /* with the decoding models gone, a model loaded to score takes the
     * floats' route again: its few rows stay off the kernel */
    wdl_model *sc = model_load_forward(d16);
    assert_non_null(sc->view_st);
    const int64_t f0 = gemm_ctx_few_row_products(gemm_default());
    free(decode_run(sc, 1));
    const int64_t f1 = gemm_ctx_few_row_products(gemm_default());
    model_free(sc);   /* (before the check: a failing one leaves the test) */
    wdl_rmtree(dir);
    assert_int_equal(f1, f0);
}

/* The head's logits for a chunk of at most GEMM_FEW_ROWS positions come
 * from the products every other chunk's come from (ce_chunked computes
 * them on CE_MIN_ROWS rows): in fp32 on sgemm_own, per-position NLL and
 * entropy byte for byte the same in chunks of 5 as in one chunk of all
 * 40, with a head past GEMM_FEW_ROWS_MIN_NK weights (80 x 1,024), where a
 * product of a few rows would go to oneDNN. */
static void test_head_few_rows(void **st) {
    gemm_set_precision(GEMM_FP32_AUTO);
    if (!gemm_ctx_uses_own_sgemm(gemm_default())) {
        print_message("# fp32 products not on sgemm_own on this CPU: nothing to compare\n");
        gemm_set_precision(GEMM_FP32);
        return;
    }
    enum { N = 40, C = 1024, V = 80 };
    assert_true(V * C >= GEMM_FEW_ROWS_MIN_NK);
    wdl_rng r;
    rng_seed(&r, 11);
    float *h = xmalloc(sizeof(float) * N * C), *w = xmalloc(sizeof(float) * V * C);
    for (int64_t i = 0; i < N * C; i++) h[i] = (float)(rng_uniform(&r) - 0.5);
    for (int64_t i = 0; i < V * C; i++) w[i] = (float)(rng_uniform(&r) - 0.5) * 0.2f;
    int32_t tg[N];
    for (int i = 0; i < N; i++) tg[i] = (int32_t)((i * 37 + 3) % V);
    double *res[2][2];
    const int64_t chunks[2] = {5, N};
    for (int k = 0; k < 2; k++) {
        void *scratch = xmalloc(ce_scratch_bytes(1, chunks[k], C, V));
        float *hs[1] = {h}, *ws[1] = {w}, *nd[1] = {NULL};
        double coef[1] = {1.0};
        res[k][0] = xmalloc(sizeof(double) * N);
        res[k][1] = xmalloc(sizeof(double) * N);
        ce_chunked(1, hs, ws, coef, nd, nd, tg, NULL, N, C, V, res[k][0], res[k][1], scratch, chunks[k]);
        free(scratch);
    }
    gemm_set_precision(GEMM_FP32);
    for (int j = 0; j < 2; j++) assert_memory_equal(res[0][j], res[1][j], sizeof(double) * N);
    for (int k = 0; k < 2; k++) { free(res[k][0]); free(res[k][1]); }
    free(h); free(w);
}

/* fp32 scoring (GEMM_FP32_AUTO, where its products run on sgemm_own) of a
 * checkpoint with BF16 matrices reads them where they lie, widened as the
 * products pack them: per-position NLL and entropy byte for byte those of
 * the same values written F32 and loaded as floats, for packed batches of
 * many rows (sgemm_own, the head's wide order) and of few (a few rows
 * against a large weight, on the route the floats take), with the
 * matrices never written into params. The shadow test's model (products of
 * at least 65,536 weights) with a vocabulary of 4,200: a head of over 2^20
 * weights, which sgemm_own runs in its wide order (B's rows widened per
 * block). */
static void score_twice(wdl_model *a, wdl_model *b, const int64_t *len, int ns) {
    const int64_t H = a->cfg.hidden, V = a->cfg.vocab;
    int64_t N = 0;
    for (int i = 0; i < ns; i++) N += len[i];
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)N), *tg = xmalloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++) {
        ids[i] = (int32_t)((i * 13 + 7) % V);
        tg[i] = i % 4 ? (int32_t)((i * 7 + 3) % V) : -1;
    }
    double *r[2][2];
    const int64_t chunk = step_chunk_for(V);
    void *scratch = xmalloc(ce_scratch_layout(1, chunk, H, V, sizeof(float)).total);
    wdl_model *ms[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        r[k][0] = xmalloc(sizeof(double) * (size_t)N);
        r[k][1] = xmalloc(sizeof(double) * (size_t)N);
        model_alloc_acts(ms[k], ns, N, ACTS_STREAM, 0);
        step_score_packed(ms[k], scratch, chunk, ids, tg, len, ns, r[k][0], r[k][1]);
    }
    assert_memory_equal(r[0][0], r[1][0], sizeof(double) * (size_t)N);
    assert_memory_equal(r[0][1], r[1][1], sizeof(double) * (size_t)N);
    for (int k = 0; k < 2; k++) { free(r[k][0]); free(r[k][1]); }
    free(scratch); free(ids); free(tg);
}
static void test_score_fp32_bf16_in_place(void **st) {
    char dir[] = "/tmp/wdl-inplace-XXXXXX", d16[64], d32[64];
    write_wide_model(12, 4200, 1, dir, d16, d32);   /* F32: the BF16 values as floats */
    gemm_set_precision(GEMM_FP32_AUTO);
    const int views = gemm_ctx_fp32_views(gemm_default());
    wdl_model *a = model_load_forward(d16), *b = model_load_forward(d32);
    assert_null(b->view_st);
    if (views) {
        assert_non_null(a->view_st);
        assert_non_null(a->embed16);
        assert_matrices_unwritten(a);
    } else {
        print_message("# no fp32 views on this CPU (its fp32 products are not on sgemm_own): both loaded as floats\n");
        assert_null(a->view_st);
    }
    const int64_t many[4] = {70, 3, 1, 41}, few[2] = {5, 4}, one[1] = {9};
    score_twice(a, b, many, 4);   /* 115 rows */
    score_twice(a, b, few, 2);    /* 9 rows */
    score_twice(a, b, one, 1);
    model_free(a);
    model_free(b);
    wdl_rmtree(dir);
}

/* NEFTune (the paper's noisy-embedding SFT baseline) on the untied model:
 * the noise lib/neftune.c draws equals, bit for bit, the noise
 * tests/gen_fixtures.py computes from its definition, and the loss and
 * every gradient with it added to the embeddings match transformers run
 * on inputs_embeds = embed(ids) + noise; sequence 1 stops at 9 tokens
 * (its positions 9.. are padding, without noise or loss). */
static void test_neftune(void **st) {
    st_model *ref;
    json_t *rj;
    batch b;
    wdl_model *m = untied_with("neftune", &ref, &rj, &b);
    const int64_t H = m->cfg.hidden;
    uint64_t key[B];
    int64_t len[B];
    for (int i = 0; i < B; i++) {
        key[i] = (uint64_t)json_integer_value(json_array_get(json_object_get(rj, "keys"), i));
        len[i] = json_integer_value(json_array_get(json_object_get(rj, "lens"), i));
    }
    const neftune_batch nb = {json_real_value(json_object_get(rj, "alpha")),
                              (uint64_t)json_integer_value(json_object_get(rj, "seed")), B, T, key, len};
    assert_true(nb.alpha == 5.0 && len[1] == 9);

    float *noise = xaligned(sizeof(float) * (size_t)(B * T * H)) /* zeroed */, *rn = xmalloc(sizeof(float) * (size_t)(B * T * H));
    neftune_add(noise, H, &nb);
    int64_t ns[3] = {B, T, H};
    st_read_f32(ref, "noise", rn, 3, ns);
    expect("NEFTune noise against gen_fixtures.py's (abs, exact)", maxdiff(noise, rn, (size_t)(B * T * H), 0), 0);
    double bound = 0;
    for (int64_t t = 9; t < T; t++)
        for (int64_t c = 0; c < H; c++) bound = fmax(bound, fabsf(noise[(T + t) * H + c]));
    expect("NEFTune noise on padding (abs)", bound, 0);
    /* an example's noise is its own wherever it sits: the rows swapped
     * (with T = 9, as a batch holding only the shorter one would be) */
    {
        const uint64_t k2[2] = {key[1], key[0]};
        const int64_t l2[2] = {9, 9};
        const neftune_batch sw = {nb.alpha, nb.seed, 2, 9, k2, l2};
        float *x = xaligned(sizeof(float) * (size_t)(2 * 9 * H));   /* zeroed */
        neftune_add(x, H, &sw);
        expect("NEFTune noise of a row moved to another batch (abs)", maxdiff(x, noise + T * H, (size_t)(9 * H), 0), 0);
        free(x);
    }
    /* u is uniform on [-1, 1): mean 0, variance 1/3, bounds */
    double su = 0, su2 = 0, lo = 1, hi = -1;
    const int64_t nu = 200000;
    for (int64_t i = 0; i < nu; i++) {
        double u = neftune_u(9, (uint64_t)i / 64, i % 7, i % 64);
        su += u; su2 += u * u; lo = fmin(lo, u); hi = fmax(hi, u);
    }
    expect("NEFTune u: |mean| over 200k draws", fabs(su / nu), 5e-3);
    expect("NEFTune u: |variance - 1/3|", fabs(su2 / nu - su * su / ((double)nu * nu) - 1.0 / 3), 5e-3);
    assert_true(lo >= -1 && lo < -0.999 && hi < 1 && hi > 0.999);

    model_alloc_grads(m);
    model_alloc_moments(m);
    model_alloc_acts(m, B, T, 1, 0);
    wd_step s;
    step_init(&s, m, NULL, 1.0);
    s.noise = &nb;
    model_zero_grad(m);
    double loss = step_train(&s, b.ids, b.tg, b.wt, B, T);
    expect("NEFTune loss (rel)", fabs(loss - json_real_value(json_object_get(rj, "loss_f64"))) / loss, 2e-6);
    compare_all(m, ref, "grad.", m->grads, 1e-4, 1, "NEFTune gradients (rel to max |grad| per tensor)");
    assert_null(m->embed_hook);   /* the noise is the step's, not the model's */

    free(noise); free(rn);
    step_free(&s);
    json_decref(rj);
    st_close(ref);
    model_free(m);
}

static int precision_fp32(void **st) {   /* teardown: later tests run in fp32 even if this one failed */
    gemm_set_precision(GEMM_FP32);
    return 0;
}

int main(void) {
    wdl_set_prog("test_model");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_untied), cmocka_unit_test(test_tied), cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_neftune),
        cmocka_unit_test(test_generation_matches_forward),
        cmocka_unit_test_teardown(test_generation_bf16, precision_fp32),
        cmocka_unit_test(test_argmax_row),
        cmocka_unit_test(test_attend_bf16),
        cmocka_unit_test_teardown(test_decode_fp32_shadows, precision_fp32),
        cmocka_unit_test(test_prefill_many),
        cmocka_unit_test_teardown(test_prefill_many_bf16, precision_fp32),
        cmocka_unit_test(test_stream_forward),
        cmocka_unit_test(test_packed_forward),
        cmocka_unit_test(test_spare_acts_as_head_scratch),
        cmocka_unit_test(test_head_few_rows),
        cmocka_unit_test(test_written_checkpoints),
        cmocka_unit_test(test_step_allocates_nothing),
        cmocka_unit_test_teardown(test_recomputed_attention, precision_fp32),
        cmocka_unit_test_teardown(test_bf16_mirrors, precision_fp32),
        cmocka_unit_test_teardown(test_bf16, precision_fp32),
        cmocka_unit_test_teardown(test_forward_bf16_weights, precision_fp32),
        cmocka_unit_test_teardown(test_score_fp32_bf16_in_place, precision_fp32),
        cmocka_unit_test_teardown(test_decode_fp32_views, precision_fp32),
        cmocka_unit_test_teardown(test_bf16_steps_allocate_nothing_after_the_first, precision_fp32),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
