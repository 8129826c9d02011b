/* generate.c: see generate.h. The layer math is the same as model_forward's,
 * written for one new position per sequence with attention over the cache. */
#include "generate.h"
#include "common.h"
#include "gemm.h"
#include "kernels.h"
#include "safetensors.h"
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
    if (gemm_ctx_precision(gemm_default()) == GEMM_BF16) {
        g->kc16 = xaligned(cache * sizeof(uint16_t));
        g->vc16 = xaligned(cache * sizeof(uint16_t));
    } else {
        g->kc = xaligned(cache * sizeof(float));
        g->vc = xaligned(cache * sizeof(float));
    }
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
    free(g->kc); free(g->vc); free(g->kc16); free(g->vc16);
    free(g->x); free(g->xn); free(g->q); free(g->k); free(g->v); free(g->aty);
    free(g->tmp); free(g->gate); free(g->up); free(g->att); free(g->logits); free(g->rstd); free(g->pos); free(g->ids);
    free(g->pack); free(g->plogits);
    memset(g, 0, sizeof *g);
}

void gen_reset(gen_state *g, int64_t b) { g->pos[b] = 0; }

/* an fp32 to its bf16 value, rounded to nearest even */
static inline float round16(float x) { return st_bf16_to_f32(st_f32_to_bf16(x)); }
static void rows_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = st_f32_to_bf16(src[i]);
}

/* Decoding's attention on the bf16 cache. Every score is q . k summed in
 * 16 lanes (lane j takes d = j, j + 16, ...; an FMA each), the lanes then
 * halved pairwise (8, 4, 2, 1), times scale; every output element is the
 * FMA chain of P[u] v[u][d] over u in order. The scalar code and the
 * vector kernels (where HD is a multiple of 16) do exactly this, so they
 * give the same bytes. */
static void scores_scalar(float *s, int64_t lds, const float *q, const uint16_t *k, int64_t ldkv, int64_t n,
                          int64_t HD, int64_t grp, float scale) {
    for (int64_t u = 0; u < n; u++)
        for (int64_t h = 0; h < grp; h++) {
            float acc[16] = {0};
            for (int64_t d = 0; d < HD; d++) acc[d % 16] = fmaf(q[h * HD + d], st_bf16_to_f32(k[u * ldkv + d]), acc[d % 16]);
            for (int w = 8; w; w >>= 1)
                for (int j = 0; j < w; j++) acc[j] += acc[j + w];
            s[h * lds + u] = scale * acc[0];
        }
}
static void pv_scalar(float *out, const float *s, int64_t lds, const uint16_t *v, int64_t ldkv, int64_t n,
                      int64_t HD, int64_t grp) {
    for (int64_t h = 0; h < grp; h++)
        for (int64_t d = 0; d < HD; d++) {
            float o = 0;
            for (int64_t u = 0; u < n; u++) o = fmaf(s[h * lds + u], st_bf16_to_f32(v[u * ldkv + d]), o);
            out[h * HD + d] = o;
        }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ATT_U 4   /* positions per block of scores: independent FMA chains */
/* A head's cached rows lie a whole position (all KV heads) apart, 2 KB in
 * the 0.6B shape, a stride the hardware prefetchers did not follow: the
 * kernels waited on the loads of K and V. So rows u..u+c-1 (those before
 * n) are fetched ATT_PF positions ahead, every line of their first HD
 * values (the scores: the whole head; PV: its chunk of outputs). */
#define ATT_PF 8
static inline void att_fetch(const uint16_t *x, int64_t ld, int64_t u, int64_t c, int64_t n, int64_t HD) {
    for (int64_t i = u; i < u + c && i < n; i++)
        for (int64_t d = 0; d < HD; d += 32) __builtin_prefetch(x + i * ld + d, 0, 3);
}
/* the 16 lanes as one zmm (AVX-512F) or two ymm (AVX2 and FMA) */
__attribute__((target("avx512f"), always_inline)) static inline __m512 w16_512(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
__attribute__((target("avx512f"), always_inline)) static inline float hsum_512(__m512 a) {
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    const __m256 t = _mm256_add_ps(_mm512_castps512_ps256(a), hi);
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)));
}
__attribute__((target("avx512f"))) static void scores_avx512(float *s, int64_t lds, const float *q,
                                                             const uint16_t *k, int64_t ldkv, int64_t n, int64_t HD,
                                                             int64_t grp, float scale) {
    int64_t u = 0;
    for (; u + ATT_U <= n; u += ATT_U) {
        att_fetch(k, ldkv, u + ATT_PF, ATT_U, n, HD);
        for (int64_t h = 0; h < grp; h++) {
            __m512 acc[ATT_U];
            for (int i = 0; i < ATT_U; i++) acc[i] = _mm512_setzero_ps();
            for (int64_t d = 0; d < HD; d += 16) {
                const __m512 qv = _mm512_loadu_ps(q + h * HD + d);
                for (int i = 0; i < ATT_U; i++) acc[i] = _mm512_fmadd_ps(qv, w16_512(k + (u + i) * ldkv + d), acc[i]);
            }
            for (int i = 0; i < ATT_U; i++) s[h * lds + u + i] = scale * hsum_512(acc[i]);
        }
    }
    if (u < n) scores_scalar(s + u, lds, q, k + u * ldkv, ldkv, n - u, HD, grp, scale);
}
/* AVX2: lanes 0-7 in lo, 8-15 in hi */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 w8_256(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
__attribute__((target("avx2,fma"))) static void scores_avx2(float *s, int64_t lds, const float *q, const uint16_t *k,
                                                            int64_t ldkv, int64_t n, int64_t HD, int64_t grp,
                                                            float scale) {
    int64_t u = 0;
    for (; u + ATT_U <= n; u += ATT_U) {
        att_fetch(k, ldkv, u + ATT_PF, ATT_U, n, HD);
        for (int64_t h = 0; h < grp; h++) {
            __m256 lo[ATT_U], hi[ATT_U];
            for (int i = 0; i < ATT_U; i++) lo[i] = hi[i] = _mm256_setzero_ps();
            for (int64_t d = 0; d < HD; d += 16) {
                const __m256 ql = _mm256_loadu_ps(q + h * HD + d), qh = _mm256_loadu_ps(q + h * HD + d + 8);
                for (int i = 0; i < ATT_U; i++) {
                    const uint16_t *kr = k + (u + i) * ldkv + d;
                    lo[i] = _mm256_fmadd_ps(ql, w8_256(kr), lo[i]);
                    hi[i] = _mm256_fmadd_ps(qh, w8_256(kr + 8), hi[i]);
                }
            }
            for (int i = 0; i < ATT_U; i++) {
                const __m256 t = _mm256_add_ps(lo[i], hi[i]);
                __m128 x = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
                x = _mm_add_ps(x, _mm_movehl_ps(x, x));
                s[h * lds + u + i] = scale * _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)));
            }
        }
    }
    if (u < n) scores_scalar(s + u, lds, q, k + u * ldkv, ldkv, n - u, HD, grp, scale);
}
/* The PV product on vectors of L lanes: output chunks four vectors at a
 * time (four FMA chains), then one at a time; named accumulators, which
 * GCC keeps in registers (a variable-length array of them it also stored
 * on every pass) */
#define PV_KERNEL(NAME, TARGET, VEC, L, ZERO, SET1, FMA, WIDEN, STORE)                                            \
    __attribute__((target(TARGET))) static void NAME(float *out, const float *s, int64_t lds, const uint16_t *v, \
                                                     int64_t ldkv, int64_t n, int64_t HD, int64_t grp) {         \
        for (int64_t h = 0; h < grp; h++) {                                                                      \
            const float *p = s + h * lds;                                                                        \
            float *o = out + h * HD;                                                                             \
            int64_t d = 0;                                                                                       \
            for (; d + 4 * (L) <= HD; d += 4 * (L)) {                                                            \
                VEC o0 = ZERO(), o1 = o0, o2 = o0, o3 = o0;                                                      \
                for (int64_t u = 0; u < n; u++) {                                                                \
                    att_fetch(v + d, ldkv, u + ATT_PF, 1, n, 4 * (L));                                           \
                    const VEC x = SET1(p[u]);                                                                    \
                    const uint16_t *r = v + u * ldkv + d;                                                        \
                    o0 = FMA(x, WIDEN(r), o0);                                                                   \
                    o1 = FMA(x, WIDEN(r + (L)), o1);                                                             \
                    o2 = FMA(x, WIDEN(r + 2 * (L)), o2);                                                         \
                    o3 = FMA(x, WIDEN(r + 3 * (L)), o3);                                                         \
                }                                                                                                \
                STORE(o + d, o0);                                                                                \
                STORE(o + d + (L), o1);                                                                          \
                STORE(o + d + 2 * (L), o2);                                                                      \
                STORE(o + d + 3 * (L), o3);                                                                      \
            }                                                                                                    \
            for (; d < HD; d += (L)) {                                                                           \
                VEC o0 = ZERO();                                                                                 \
                for (int64_t u = 0; u < n; u++) o0 = FMA(SET1(p[u]), WIDEN(v + u * ldkv + d), o0);               \
                STORE(o + d, o0);                                                                                \
            }                                                                                                    \
        }                                                                                                        \
    }
PV_KERNEL(pv_avx512, "avx512f", __m512, 16, _mm512_setzero_ps, _mm512_set1_ps, _mm512_fmadd_ps, w16_512,
          _mm512_storeu_ps)
PV_KERNEL(pv_avx2, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_set1_ps, _mm256_fmadd_ps, w8_256,
          _mm256_storeu_ps)
#undef PV_KERNEL
/* 2: AVX-512F, 1: AVX2 and FMA, 0: neither */
static int attend_isa(void) {
    static int isa = -1;
    if (isa < 0) {
        __builtin_cpu_init();
        isa = __builtin_cpu_supports("avx512f")                                      ? 2
              : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1
                                                                                     : 0;
    }
    return isa;
}
#else
static int attend_isa(void) { return 0; }
#endif

/* which of gen_attend_bf16's routes runs (a test switch): -1 the CPU's
 * best, else that route (at most the best) */
static int attend_route = -1;
int gen_attend_bf16_route(int r) {
    const int best = attend_isa();
    attend_route = r < 0 || r > best ? -1 : r;
    return best;
}

/* the route for head size HD: the vector kernels take multiples of 16 */
static int route_for(int64_t HD) { return HD % 16 ? 0 : attend_route >= 0 ? attend_route : attend_isa(); }

void gen_attend_scores_bf16(float *s, int64_t lds, const float *q, const uint16_t *k, int64_t ldkv, int64_t n,
                            int64_t HD, int64_t grp, float scale) {
#if defined(__x86_64__) && defined(__GNUC__)
    const int isa = route_for(HD);
    if (isa == 2) scores_avx512(s, lds, q, k, ldkv, n, HD, grp, scale);
    else if (isa == 1) scores_avx2(s, lds, q, k, ldkv, n, HD, grp, scale);
    else
#endif
        scores_scalar(s, lds, q, k, ldkv, n, HD, grp, scale);
}
static void attend_pv(float *out, const float *s, int64_t lds, const uint16_t *v, int64_t ldkv, int64_t n,
                      int64_t HD, int64_t grp) {
#if defined(__x86_64__) && defined(__GNUC__)
    const int isa = route_for(HD);
    if (isa == 2) pv_avx512(out, s, lds, v, ldkv, n, HD, grp);
    else if (isa == 1) pv_avx2(out, s, lds, v, ldkv, n, HD, grp);
    else
#endif
        pv_scalar(out, s, lds, v, ldkv, n, HD, grp);
}

/* The scores' exps (after their largest, in place) and 1/sum: the
 * softmax of both caches' attention but its last multiply */
static float softmax_exps(float *s, int64_t n) {
    float mx = s[0];
    for (int64_t u = 1; u < n; u++) if (s[u] > mx) mx = s[u];
    double sum = 0;
    for (int64_t u = 0; u < n; u++) { s[u] = expf(s[u] - mx); sum += s[u]; }
    return (float)(1.0 / sum);
}

/* Each cached row is read once for all grp heads (the fp32 path's sgemv
 * calls read it once per head); the softmax is the fp32 path's. */
void gen_attend_bf16(float *out, float *s, int64_t lds, const float *q, const uint16_t *k, const uint16_t *v,
                     int64_t ldkv, int64_t n, int64_t HD, int64_t grp, float scale) {
    gen_attend_scores_bf16(s, lds, q, k, ldkv, n, HD, grp, scale);
    for (int64_t h = 0; h < grp; h++) {
        float *sh = s + h * lds;
        const float inv = softmax_exps(sh, n);
        for (int64_t u = 0; u < n; u++) sh[u] = round16(sh[u] * inv);   /* P, as the PV product takes it */
    }
    attend_pv(out, s, lds, v, ldkv, n, HD, grp);
}

/* The step's new keys (after RoPE: qn holds them QK-normed, and g->k's
 * own values are spent) and values into layer l's cache, fp32 or bf16 */
static void cache_append(gen_state *g, int64_t l, const uint8_t *active, const float *qn) {
    const wdl_config *c = &g->m->cfg;
    const int64_t B = g->B, HD = c->head_dim, KV = c->kv_heads, KD = KV * HD, ML = g->maxlen;
    for (int64_t b = 0; b < B; b++) {
        if (!active[b]) continue;
        const size_t at = (size_t)(((l * B + b) * ML + g->pos[b]) * KD);
        float *k = g->k + b * KD;
        rope_forward(k, &g->m->rope, qn + b * KD, g->pos + b, 1, KV, HD, c->theta);
        if (g->kc16) {
            rows_to_bf16(g->kc16 + at, k, KD);
            rows_to_bf16(g->vc16 + at, g->v + b * KD, KD);
        } else {
            memcpy(g->kc + at, k, sizeof(float) * (size_t)KD);
            memcpy(g->vc + at, g->v + b * KD, sizeof(float) * (size_t)KD);
        }
    }
}

/* One layer's attention in a decoding step (after cache_append), on the
 * fp32 cache: q in g->q (after RoPE); out g->aty */
static void attend_fp32(gen_state *g, int64_t l, const uint8_t *active, float scale) {
    const wdl_config *c = &g->m->cfg;
    const int64_t B = g->B, HD = c->head_dim, NH = c->heads, QD = NH * HD, KD = c->kv_heads * HD,
                  grp = NH / c->kv_heads, ML = g->maxlen;
    const float *kc = g->kc + l * B * ML * KD, *vc = g->vc + l * B * ML * KD;
#pragma omp parallel for schedule(dynamic, 1) if (B * NH * ML * HD > 32768)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH, kh = h / grp, n = g->pos[b] + 1;
        float *out = g->aty + b * QD + h * HD;
        if (!active[b]) { memset(out, 0, sizeof(float) * (size_t)HD); continue; }
        float *s = g->att + bh * ML;
        const float *qh = g->q + b * QD + h * HD;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, HD, scale, kc + b * ML * KD + kh * HD, KD, qh, 1, 0, s, 1);
        const float inv = softmax_exps(s, n);
        for (int64_t u = 0; u < n; u++) s[u] *= inv;
        cblas_sgemv(CblasRowMajor, CblasTrans, n, HD, 1, vc + b * ML * KD + kh * HD, KD, s, 1, 0, out, 1);
    }
}

/* The same on the bf16 cache (gen_attend_bf16), a work item per (sequence,
 * KV head); the queries rounded to bf16 first, as the products round them */
static void attend_bf16(gen_state *g, int64_t l, const uint8_t *active, float scale) {
    const wdl_config *c = &g->m->cfg;
    const int64_t B = g->B, HD = c->head_dim, NH = c->heads, KV = c->kv_heads, QD = NH * HD, KD = KV * HD,
                  grp = NH / KV, ML = g->maxlen;
    const uint16_t *kc = g->kc16 + l * B * ML * KD, *vc = g->vc16 + l * B * ML * KD;
    for (int64_t i = 0; i < B * QD; i++) g->q[i] = round16(g->q[i]);
#pragma omp parallel for schedule(dynamic, 1) if (B * NH * ML * HD > 32768)
    for (int64_t bk = 0; bk < B * KV; bk++) {
        const int64_t b = bk / KV, kh = bk % KV, o = b * QD + kh * grp * HD;
        if (!active[b]) {
            memset(g->aty + o, 0, sizeof(float) * (size_t)(grp * HD));
            continue;
        }
        gen_attend_bf16(g->aty + o, g->att + (b * NH + kh * grp) * ML, ML, g->q + o, kc + b * ML * KD + kh * HD,
                        vc + b * ML * KD + kh * HD, KD, g->pos[b] + 1, HD, grp, scale);
    }
}

void gen_step(gen_state *g, const int32_t *tok, const uint8_t *active) {
    wdl_model *m = g->m;
    const wdl_config *c = &m->cfg;
    const int64_t B = g->B, H = c->hidden, HD = c->head_dim, NH = c->heads, KV = c->kv_heads,
                  QD = NH * HD, KD = KV * HD, FF = c->inter, ML = g->maxlen;
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
        /* the new position's key (after RoPE) and value into the cache,
         * then every active sequence's attention over its cache */
        cache_append(g, l, active, qn);
        if (g->kc16) attend_bf16(g, l, active, scale);
        else attend_fp32(g, l, active, scale);
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

/* z's first greatest value, NaNs passed over, as the scalar loop `if
 * (z[v] > z[best]) best = v` from best = 0 finds it: in 16 lanes, each
 * keeping its first greatest (strictly greater moves it), then the lanes'
 * greatest with the lowest index, then the tail. With z[0] a NaN, or no
 * value above -inf, that loop keeps 0. Indices in 32-bit lanes: rows of
 * fewer than 2^31. (Scalar, the loop took about 2 ns a logit on an
 * AVX-512 Xeon: 1.8% of the samples of a 4-prompt decode of the
 * Qwen3-0.6B shape, one thread working while the other slept.) */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static int64_t argmax_avx512(const float *z, int64_t n) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    __m512i at = _mm512_set1_epi32(-1), cur = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32(16);
    int64_t v = 0;
    for (; v + 16 <= n; v += 16) {
        const __m512 x = _mm512_loadu_ps(z + v);
        const __mmask16 gt = _mm512_cmp_ps_mask(x, mx, _CMP_GT_OQ);   /* false for a NaN */
        mx = _mm512_mask_mov_ps(mx, gt, x);
        at = _mm512_mask_mov_epi32(at, gt, cur);
        cur = _mm512_add_epi32(cur, step);
    }
    float lv[16];
    int32_t li[16];
    _mm512_storeu_ps(lv, mx);
    _mm512_storeu_si512((void *)li, at);
    int64_t best = -1;
    for (int j = 0; j < 16; j++)
        if (li[j] >= 0 && (best < 0 || lv[j] > z[best] || (lv[j] == z[best] && li[j] < best))) best = li[j];
    for (; v < n; v++)
        if (best < 0 ? z[v] > -INFINITY : z[v] > z[best]) best = v;
    return best < 0 ? 0 : best;
}
#endif

int64_t gen_argmax_row(const float *z, int64_t n) {
    if (n < 1 || isnan(z[0])) return 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (attend_isa() == 2 && n <= INT32_MAX) return argmax_avx512(z, n);
#endif
    int64_t best = 0;
    for (int64_t v = 1; v < n; v++) if (z[v] > z[best]) best = v;
    return best;
}

int32_t gen_argmax(const gen_state *g, int64_t b) {
    const int64_t V = g->m->cfg.vocab;
    return (int32_t)gen_argmax_row(g->logits + b * V, V);
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
        size_t at = (size_t)((l * g->B + p->slot[j]) * ML * KD), n = (size_t)(p->plen[j] * KD);
        if (g->kc16) {
            rows_to_bf16(g->kc16 + at, kr + o * KD, (int64_t)n);
            rows_to_bf16(g->vc16 + at, v + o * KD, (int64_t)n);
        } else {
            memcpy(g->kc + at, kr + o * KD, sizeof(float) * n);
            memcpy(g->vc + at, v + o * KD, sizeof(float) * n);
        }
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
    if (!m->act_mem || m->Tmax < ML || m->Bmax < g->B || m->Ncap < g->B * ML)
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
