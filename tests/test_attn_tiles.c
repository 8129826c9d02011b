/* attn_tiles and attn_amx: the register-tiled fp32 products and the AMX
 * bf16 products against double references, the causal skips against the
 * dense products (bit for bit), and the attention kernels that run on them
 * (fp32 where oneDNN runs AVX-512, bf16 where it runs AMX) against the
 * double kernels, the backend's GEMMs, one thread, and the recomputing
 * backward. Skips where the build or the CPU has no tiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "attn_amx.h"
#include "attn_tiles.h"
#include "common.h"
#include "gemm.h"
#include "kernels.h"
#include "safetensors.h"

static wdl_rng rng;
static float *frnd(int64_t n) {
    float *a = xmalloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) a[i] = (float)rng_normal(&rng);
    return a;
}
static const double U24 = 1.0 / (1 << 24);   /* fp32's unit roundoff */

#if ATTN_TILES_BUILT
/* C = alpha A B + beta C against double sums: each element within
 * (K + 2) u (|alpha| sum_k |a b| + |beta C0|); the padding columns of C
 * (ldc > N) keep their bytes; beta 0 never reads C (NaN there). */
static void dense_case(int64_t M, int64_t N, int64_t K, int ta, float alpha, float beta) {
    const int64_t lda = (ta ? M : K) + 3, ldb = N + 5, ldc = N + 2;
    float *A = frnd((ta ? K : M) * lda), *B = frnd(K * ldb), *C = frnd(M * ldc), *C0 = xmalloc(sizeof(float) * (size_t)(M * ldc));
    if (beta == 0)
        for (int64_t i = 0; i < M * ldc; i++) C[i] = NAN;
    memcpy(C0, C, sizeof(float) * (size_t)(M * ldc));
    tiles_opnd a = ta ? (tiles_opnd){A, 1, lda} : (tiles_opnd){A, lda, 1};
    tiles_mm(M, N, K, alpha, a, (tiles_opnd){B, ldb, 1}, beta, C, ldc, TILES_DENSE, 0);
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double s = 0, sa = 0;
            for (int64_t p = 0; p < K; p++) {
                double t = (double)A[i * a.rs + p * a.cs] * B[p * ldb + j];
                s += t;
                sa += fabs(t);
            }
            double ref = alpha * s + (beta != 0 ? beta * (double)C0[i * ldc + j] : 0);
            double bound = (K + 2) * U24 * (fabs(alpha) * sa + (beta != 0 ? fabs(beta * C0[i * ldc + j]) : 0));
            if (!(fabs(C[i * ldc + j] - ref) <= bound + 1e-30))
                fail_msg("tiles_mm %lldx%lldx%lld ta %d alpha %g beta %g: C[%lld,%lld] = %.9g, reference %.9g (bound %.3g)",
                         (long long)M, (long long)N, (long long)K, ta, alpha, beta, (long long)i, (long long)j,
                         C[i * ldc + j], ref, bound);
        }
        for (int64_t j = N; j < ldc; j++) assert_memory_equal(&C[i * ldc + j], &C0[i * ldc + j], sizeof(float));
    }
    free(A); free(B); free(C); free(C0);
}
#endif

static void test_tiles_mm(void **st) {
#if ATTN_TILES_BUILT
    static const int64_t sizes[][3] = {{1, 1, 1},  {8, 32, 32},  {9, 33, 7},   {7, 15, 64},
                                       {64, 256, 32}, {64, 32, 256}, {256, 48, 64}, {3, 100, 1}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int ta = 0; ta < 2; ta++) {
            dense_case(sizes[s][0], sizes[s][1], sizes[s][2], ta, 1.0f, 0.0f);
            dense_case(sizes[s][0], sizes[s][1], sizes[s][2], ta, 0.37f, 1.0f);
            dense_case(sizes[s][0], sizes[s][1], sizes[s][2], ta, -1.5f, 0.25f);
        }
#else
    print_message("# skipped: not an AVX-512 build\n");
    skip();
#endif
}

/* The causal skips give the dense products' bytes wherever the dense
 * result is needed: A (or, for the scores, C's upper triangle) has the
 * zeros a causal block of rows r0.. has past its diagonal. */
static void test_tiles_causal(void **st) {
#if ATTN_TILES_BUILT
    static const int64_t r0s[] = {0, 64, 128}, ms[] = {64, 13};
    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 2; b++) {
            const int64_t r0 = r0s[a], m = ms[b], r1 = r0 + m, HD = 40, T = r1 + 7;
            float *Q = frnd(m * HD), *Kt = frnd(HD * T), *V = frnd(T * HD), *P = frnd(m * T), *G = frnd(m * HD);
            for (int64_t i = 0; i < m; i++)
                for (int64_t u = r0 + i + 1; u < T; u++) P[i * T + u] = 0;   /* zeros past the diagonal */
            /* scores: needed columns j <= r0 + i */
            float *S1 = frnd(m * T), *S2 = frnd(m * T);
            tiles_mm(m, r1, HD, 0.5f, (tiles_opnd){Q, HD, 1}, (tiles_opnd){Kt, T, 1}, 0, S1, T, TILES_DENSE, 0);
            tiles_mm(m, r1, HD, 0.5f, (tiles_opnd){Q, HD, 1}, (tiles_opnd){Kt, T, 1}, 0, S2, T, TILES_COLS_TO, r0);
            for (int64_t i = 0; i < m; i++) assert_memory_equal(S1 + i * T, S2 + i * T, sizeof(float) * (size_t)(r0 + i + 1));
            /* P V and its transpose's product, with beta 1 */
            for (int beta = 0; beta < 2; beta++) {
                float *Y1 = frnd(m * HD), *Y2 = xmalloc(sizeof(float) * (size_t)(m * HD));
                memcpy(Y2, Y1, sizeof(float) * (size_t)(m * HD));
                tiles_mm(m, HD, r1, 1, (tiles_opnd){P, T, 1}, (tiles_opnd){V, HD, 1}, (float)beta, Y1, HD, TILES_DENSE, 0);
                tiles_mm(m, HD, r1, 1, (tiles_opnd){P, T, 1}, (tiles_opnd){V, HD, 1}, (float)beta, Y2, HD, TILES_K_TO, r0);
                assert_memory_equal(Y1, Y2, sizeof(float) * (size_t)(m * HD));
                float *D1 = frnd(r1 * HD), *D2 = xmalloc(sizeof(float) * (size_t)(r1 * HD));
                memcpy(D2, D1, sizeof(float) * (size_t)(r1 * HD));
                tiles_mm(r1, HD, m, 0.7f, (tiles_opnd){P, 1, T}, (tiles_opnd){G, HD, 1}, (float)beta, D1, HD, TILES_DENSE, 0);
                tiles_mm(r1, HD, m, 0.7f, (tiles_opnd){P, 1, T}, (tiles_opnd){G, HD, 1}, (float)beta, D2, HD, TILES_K_FROM, r0);
                assert_memory_equal(D1, D2, sizeof(float) * (size_t)(r1 * HD));
                free(Y1); free(Y2); free(D1); free(D2);
            }
            free(Q); free(Kt); free(V); free(P); free(G); free(S1); free(S2);
        }
#else
    print_message("# skipped: not an AVX-512 build\n");
    skip();
#endif
}

static void test_tiles_transpose(void **st) {
#if ATTN_TILES_BUILT
    static const int64_t shapes[][2] = {{1, 1}, {16, 32}, {17, 3}, {100, 128}, {5, 48}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t r = shapes[s][0], c = shapes[s][1], lds = c + 9;
        float *x = frnd(r * lds), *y = frnd(c * r + 4), *y0 = xmalloc(sizeof(float) * (size_t)(c * r + 4));
        memcpy(y0, y, sizeof(float) * (size_t)(c * r + 4));
        tiles_transpose(y, x, r, c, lds);
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++) assert_memory_equal(&y[j * r + i], &x[i * lds + j], sizeof(float));
        assert_memory_equal(y + c * r, y0 + c * r, 4 * sizeof(float));   /* nothing past dst */
        free(x); free(y); free(y0);
    }
#else
    print_message("# skipped: not an AVX-512 build\n");
    skip();
#endif
}

#if ATTN_BF16_BUILT
/* The bf16 engines this build and process can run: VDPBF16PS (0) always
 * in an AVX512-BF16 build, AMX (1) where built and granted. */
static int bf16_engines(int eng[2]) {
    int n = 0;
    eng[n++] = 0;
    if (ATTN_AMX_BUILT && amx_permit()) eng[n++] = 1;
    return n;
}
static const char *engine_name(int amx) { return amx ? "AMX" : "VDPBF16PS"; }

/* x rounded to bf16, to nearest even (safetensors.h's conversions) */
static double bf16_of(float x) { return st_bf16_to_f32(st_f32_to_bf16(x)); }

/* amx_mm on either engine against double sums of the bf16-rounded operands, alpha applied
 * to A before its rounding (the products of two bf16 values are exact in
 * fp32): each element within (K + 2) u (sum_k |a b| + |beta C0|); whole
 * and partial tiles, beta 0, 1 and other; A and B each stored as used or
 * transposed; the padding columns of C keep their bytes, beta 0 never
 * reads C (NaN there), and the work area named in attn_amx.h suffices. */
static void amx_case(int amx, int64_t M, int64_t N, int64_t K, int ta, int tb, float alpha, float beta) {
    const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
    float *A = frnd((ta ? K : M) * lda), *B = frnd((tb ? N : K) * ldb), *C = frnd(M * ldc),
          *C0 = xmalloc(sizeof(float) * (size_t)(M * ldc));
    if (beta == 0)
        for (int64_t i = 0; i < M * ldc; i++) C[i] = NAN;
    memcpy(C0, C, sizeof(float) * (size_t)(M * ldc));
    const tiles_opnd a = ta ? (tiles_opnd){A, 1, lda} : (tiles_opnd){A, lda, 1};
    const tiles_opnd b = tb ? (tiles_opnd){B, 1, ldb} : (tiles_opnd){B, ldb, 1};
    const int64_t nw = amx_a_size(M, K) + amx_b_size(K, N);
    float *work = xmalloc(sizeof(float) * (size_t)(nw + 16));
    for (int i = 0; i < 16; i++) work[nw + i] = -7.0f;
    amx_mm(amx, M, N, K, alpha, a, b, beta, C, ldc, TILES_DENSE, 0, work);
    for (int i = 0; i < 16; i++) assert_true(work[nw + i] == -7.0f);
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double s = 0, sa = 0;
            for (int64_t p = 0; p < K; p++) {
                double t = bf16_of(alpha * A[i * a.rs + p * a.cs]) * bf16_of(B[p * b.rs + j * b.cs]);
                s += t;
                sa += fabs(t);
            }
            double ref = s + (beta != 0 ? beta * (double)C0[i * ldc + j] : 0);
            double bound = (K + 2) * U24 * (sa + (beta != 0 ? fabs(beta * C0[i * ldc + j]) : 0));
            if (!(fabs(C[i * ldc + j] - ref) <= bound + 1e-30))
                fail_msg("amx_mm on %s %lldx%lldx%lld ta %d tb %d alpha %g beta %g: C[%lld,%lld] = %.9g, reference "
                         "%.9g (bound %.3g)", engine_name(amx), (long long)M, (long long)N, (long long)K, ta, tb, alpha, beta, (long long)i,
                         (long long)j, C[i * ldc + j], ref, bound);
        }
        for (int64_t j = N; j < ldc; j++) assert_memory_equal(&C[i * ldc + j], &C0[i * ldc + j], sizeof(float));
    }
    free(A); free(B); free(C); free(C0); free(work);
}
#endif

static void test_amx_mm(void **st) {
#if ATTN_BF16_BUILT
    static const int64_t sizes[][3] = {{1, 1, 1},     {16, 16, 32},  {17, 33, 7},   {7, 15, 64},  {64, 256, 32},
                                       {64, 32, 256}, {256, 48, 64}, {3, 100, 1},   {50, 70, 45}, {16, 64, 33},
                                       {9, 40, 3},    {8, 48, 2}};
    int eng[2];
    const int ne = bf16_engines(eng);
    for (int e = 0; e < ne; e++) {
        print_message("# engine %s\n", engine_name(eng[e]));
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int t = 0; t < 4; t++) {
                amx_case(eng[e], sizes[s][0], sizes[s][1], sizes[s][2], t & 1, t >> 1, 1.0f, 0.0f);
                amx_case(eng[e], sizes[s][0], sizes[s][1], sizes[s][2], t & 1, t >> 1, 0.37f, 1.0f);
                amx_case(eng[e], sizes[s][0], sizes[s][1], sizes[s][2], t & 1, t >> 1, -1.5f, 0.25f);
            }
    }
#else
    print_message("# skipped: not an AVX512-BF16 build\n");
    skip();
#endif
}

/* The causal skips on either bf16 engine give the dense products' bytes
 * where the dense result is needed (as test_tiles_causal), the keys read
 * transposed in place as attention reads them. */
static void test_amx_causal(void **st) {
#if ATTN_BF16_BUILT
    static const int64_t r0s[] = {0, 64, 128, 40, 37}, ms[] = {64, 13}, hds[] = {40, 24};   /* k in two steps, one */
    int eng[2];
    const int ne = bf16_engines(eng);
    for (int c = 0; c < 20 * ne; c++) {   /* by engine, block start, then block size and head size */
            const int amx = eng[c / 20];
            const size_t a = (size_t)c / 4 % 5, b = (size_t)c % 4;
            const int64_t r0 = r0s[a], m = ms[b % 2], r1 = r0 + m, HD = hds[b / 2], T = r1 + 7;
            float *Q = frnd(m * HD), *Kr = frnd(T * HD), *V = frnd(T * HD), *P = frnd(m * T), *G = frnd(m * HD);
            float *work = xmalloc(sizeof(float) * (size_t)amx_work(T, HD));
            for (int64_t i = 0; i < m; i++)
                for (int64_t u = r0 + i + 1; u < T; u++) P[i * T + u] = 0;   /* zeros past the diagonal */
            float *S1 = frnd(m * T), *S2 = frnd(m * T);
            amx_mm(amx, m, r1, HD, 0.5f, (tiles_opnd){Q, HD, 1}, (tiles_opnd){Kr, 1, HD}, 0, S1, T, TILES_DENSE, 0, work);
            amx_mm(amx, m, r1, HD, 0.5f, (tiles_opnd){Q, HD, 1}, (tiles_opnd){Kr, 1, HD}, 0, S2, T, TILES_COLS_TO, r0, work);
            for (int64_t i = 0; i < m; i++) assert_memory_equal(S1 + i * T, S2 + i * T, sizeof(float) * (size_t)(r0 + i + 1));
            for (int beta = 0; beta < 2; beta++) {
                float *Y1 = frnd(m * HD), *Y2 = xmalloc(sizeof(float) * (size_t)(m * HD));
                memcpy(Y2, Y1, sizeof(float) * (size_t)(m * HD));
                amx_mm(amx, m, HD, r1, 1, (tiles_opnd){P, T, 1}, (tiles_opnd){V, HD, 1}, (float)beta, Y1, HD, TILES_DENSE, 0, work);
                amx_mm(amx, m, HD, r1, 1, (tiles_opnd){P, T, 1}, (tiles_opnd){V, HD, 1}, (float)beta, Y2, HD, TILES_K_TO, r0, work);
                assert_memory_equal(Y1, Y2, sizeof(float) * (size_t)(m * HD));
                float *D1 = frnd(r1 * HD), *D2 = xmalloc(sizeof(float) * (size_t)(r1 * HD));
                memcpy(D2, D1, sizeof(float) * (size_t)(r1 * HD));
                amx_mm(amx, r1, HD, m, 0.7f, (tiles_opnd){P, 1, T}, (tiles_opnd){G, HD, 1}, (float)beta, D1, HD, TILES_DENSE, 0, work);
                amx_mm(amx, r1, HD, m, 0.7f, (tiles_opnd){P, 1, T}, (tiles_opnd){G, HD, 1}, (float)beta, D2, HD, TILES_K_FROM, r0, work);
                assert_memory_equal(D1, D2, sizeof(float) * (size_t)(r1 * HD));
                free(Y1); free(Y2); free(D1); free(D2);
            }
            free(Q); free(Kr); free(V); free(P); free(G); free(S1); free(S2); free(work);
        }
#else
    print_message("# skipped: not an AVX512-BF16 build\n");
    skip();
#endif
}

/* ---- the attention kernels on the tiles ---- */

typedef struct { float *y, *att, *st, *dq, *dk, *dv, *y2, *dq2, *dk2, *dv2; } att_out;

/* forward saving P, its backward; forward saving statistics, the
 * recomputing backward; both in guarded scratch of the named sizes */
static att_out run_attention(attn_dims d, int64_t N, int64_t natt, const float *q, const float *k, const float *v,
                             const float *r) {
    const int64_t nq = N * d.NH * d.HD, nk = N * d.KVH * d.HD;
    att_out o;
    o.y = xcalloc(nq, 4); o.y2 = xcalloc(nq, 4); o.att = xcalloc(natt, 4);
    o.st = xcalloc(attention_stats(N, d.NH), 4);
    o.dq = xcalloc(nq, 4); o.dk = xcalloc(nk, 4); o.dv = xcalloc(nk, 4);
    o.dq2 = xcalloc(nq, 4); o.dk2 = xcalloc(nk, 4); o.dv2 = xcalloc(nk, 4);
    const size_t sf = 4 * (size_t)attention_forward_scratch(d), sb = 4 * (size_t)attention_backward_scratch(d);
    unsigned char *fs = xmalloc(sf + 64), *bs = xmalloc(sb + 64);
    memset(fs, 0xA5, sf + 64);
    memset(bs, 0xA5, sb + 64);
    attention_forward(o.y, o.att, NULL, q, k, v, d, (float *)fs);
    attention_backward(o.dq, o.dk, o.dv, r, o.att, NULL, q, k, v, d, (float *)bs);
    attention_forward(o.y2, NULL, o.st, q, k, v, d, (float *)fs);
    attention_backward(o.dq2, o.dk2, o.dv2, r, NULL, o.st, q, k, v, d, (float *)bs);
    for (int i = 0; i < 64; i++) assert_true(fs[sf + i] == 0xA5 && bs[sb + i] == 0xA5);   /* stayed inside */
    free(fs); free(bs);
    return o;
}
static void free_out(att_out *o) {
    free(o->y); free(o->att); free(o->st); free(o->dq); free(o->dk); free(o->dv);
    free(o->y2); free(o->dq2); free(o->dk2); free(o->dv2);
}
static void same_bytes(const att_out *a, const att_out *b, int64_t nq, int64_t nk) {
    assert_memory_equal(a->y, b->y, 4 * (size_t)nq);
    assert_memory_equal(a->dq, b->dq, 4 * (size_t)nq);
    assert_memory_equal(a->dk, b->dk, 4 * (size_t)nk);
    assert_memory_equal(a->dv, b->dv, 4 * (size_t)nk);
}
/* max |x - ref| / (1 + |ref|) */
static double worst_f(const float *x, const float *ref, int64_t n) {
    double w = 0;
    for (int64_t i = 0; i < n; i++) w = fmax(w, fabs((double)x[i] - ref[i]) / (1 + fabs((double)ref[i])));
    return w;
}
static double worst_d(const float *x, const double *ref, int64_t n) {
    double w = 0;
    for (int64_t i = 0; i < n; i++) w = fmax(w, fabs((double)x[i] - ref[i]) / (1 + fabs(ref[i])));
    return w;
}

/* the double kernels on the same inputs: the worst relative difference
 * of t's output and gradients from theirs */
static double against_double(const att_out *t, attn_dims d, int64_t N, int64_t natt, const float *q, const float *k,
                             const float *v, const float *r) {
    const int64_t nq = N * d.NH * d.HD, nk = N * d.KVH * d.HD;
    double *qd = xmalloc(8 * nq), *kd = xmalloc(8 * nk), *vd = xmalloc(8 * nk), *rd = xmalloc(8 * nq),
           *yd = xcalloc(nq, 8), *attd = xcalloc(natt, 8), *dqd = xcalloc(nq, 8), *dkd = xcalloc(nk, 8),
           *dvd = xcalloc(nk, 8), *sd = xmalloc(8 * (size_t)attention_backward_scratch(d));
    for (int64_t i = 0; i < nq; i++) { qd[i] = q[i]; rd[i] = r[i]; }
    for (int64_t i = 0; i < nk; i++) { kd[i] = k[i]; vd[i] = v[i]; }
    attention_forward_f64(yd, attd, NULL, qd, kd, vd, d, NULL);
    attention_backward_f64(dqd, dkd, dvd, rd, attd, NULL, qd, kd, vd, d, sd);
    double w = fmax(fmax(worst_d(t->y, yd, nq), worst_d(t->dq, dqd, nq)), fmax(worst_d(t->dk, dkd, nk), worst_d(t->dv, dvd, nk)));
    free(qd); free(kd); free(vd); free(rd); free(yd); free(attd); free(dqd); free(dkd); free(dvd); free(sd);
    return w;
}

/* Attention under precision p, on the tiles or on AMX (which says): the
 * recomputing backward's bytes are the stored path's, one thread's are
 * two's; returns the run (for the caller's comparisons). */
static att_out attention_checked(gemm_precision p, int (*on)(void), attn_dims d, int64_t N, int64_t natt,
                                 const float *q, const float *k, const float *v, const float *r) {
    const int64_t nq = N * d.NH * d.HD, nk = N * d.KVH * d.HD;
    gemm_set_precision(p);
    assert_true(on());
    att_out t = run_attention(d, N, natt, q, k, v, r);
    /* the recomputing backward gives the stored path's bytes */
    assert_memory_equal(t.y, t.y2, 4 * (size_t)nq);
    assert_memory_equal(t.dq, t.dq2, 4 * (size_t)nq);
    assert_memory_equal(t.dk, t.dk2, 4 * (size_t)nk);
    assert_memory_equal(t.dv, t.dv2, 4 * (size_t)nk);
    /* one thread: the same bytes */
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    att_out t1 = run_attention(d, N, natt, q, k, v, r);
    omp_set_num_threads(nt > 1 ? nt : 2);
    same_bytes(&t, &t1, nq, nk);
    free_out(&t1);
    return t;
}

static int64_t att_elems(attn_dims d) {
    int64_t natt = 0;
    for (int64_t b = 0; b < d.B; b++) {
        int64_t T = d.off ? d.off[b + 1] - d.off[b] : d.T;
        natt += d.NH * T * T;
    }
    return natt;
}

static void tiles_attention_case(attn_dims d, int64_t N) {
    const int64_t nq = N * d.NH * d.HD, nk = N * d.KVH * d.HD, natt = att_elems(d);
    float *q = frnd(nq), *k = frnd(nk), *v = frnd(nk), *r = frnd(nq);
    att_out t = attention_checked(GEMM_FP32_AUTO, gemm_attention_tiles, d, N, natt, q, k, v, r);
    /* the backend's GEMMs (fp32-openblas) and the double kernels: the same
     * function. Each value is an fp32 sum of at most T + HD terms (180
     * here) of inputs near 1, so its rounding error is below (T + HD) u
     * = 1.1e-5 relative; measured at most 1e-6, and a wrong or missing
     * term is off by far more. */
    gemm_set_precision(GEMM_FP32);
    assert_false(gemm_attention_tiles());
    att_out o = run_attention(d, N, natt, q, k, v, r);
    const double tol = 180 * U24;
    double w = fmax(fmax(worst_f(t.y, o.y, nq), worst_f(t.dq, o.dq, nq)), fmax(worst_f(t.dk, o.dk, nk), worst_f(t.dv, o.dv, nk)));
    if (!(w <= tol)) fail_msg("tiles against OpenBLAS: relative difference %.3g", w);
    w = against_double(&t, d, N, natt, q, k, v, r);
    if (!(w <= tol)) fail_msg("tiles against double: relative difference %.3g", w);
    print_message("attention B %lld T %lld NH %lld KVH %lld HD %lld%s: tiles against double %.2g\n", (long long)d.B,
                  (long long)d.T, (long long)d.NH, (long long)d.KVH, (long long)d.HD, d.off ? " packed" : "", w);
    free_out(&t); free_out(&o);
    free(q); free(k); free(v); free(r);
}

/* The attention shapes of both: head sizes 3 to 48, one row block and
 * several, GQA, packed sequences; with_hd128, also head_dim 128. */
static void each_shape(void (*fn)(attn_dims, int64_t), int with_hd128) {
    static const int64_t off[] = {0, 5, 6, 76, 79};
    fn((attn_dims){2, 5, 4, 2, 3}, 10);
    fn((attn_dims){2, 70, 4, 2, 8}, 140);
    fn((attn_dims){1, 130, 2, 1, 32}, 130);
    fn((attn_dims){1, 77, 2, 2, 48}, 77);
    if (with_hd128) fn((attn_dims){1, 200, 2, 1, 128}, 200);
    fn((attn_dims){4, 70, 4, 2, 16, off}, 79);
}

static void test_attention_on_tiles(void **st) {
    gemm_set_precision(GEMM_FP32_AUTO);
    if (!gemm_attention_tiles()) {
        print_message("# skipped: attention runs on the backend here (oneDNN ISA %s)\n", gemm_dnnl_isa());
        skip();
    }
    each_shape(tiles_attention_case, 0);
}

/* bf16 attention on AMX or VDPBF16PS: bytes as above; against the double
 * kernels each product's operands are rounded to bf16 (2^-9 relative
 * each, 2^-8 per term), and an output passes through at most three such
 * products in a row (scores, P V; dP, dS K or dS^T Q): with unit-scale
 * inputs the error stays below 4 * 3 * 2^-8 = 0.047 relative to
 * 1 + |value| (measured 0.004 to 0.012). A wrong or missing term is off by
 * far more. */
static void bf16_attention_case(int (*on)(void), const char *name, attn_dims d, int64_t N) {
    const int64_t nq = N * d.NH * d.HD, nk = N * d.KVH * d.HD, natt = att_elems(d);
    float *q = frnd(nq), *k = frnd(nk), *v = frnd(nk), *r = frnd(nq);
    att_out t = attention_checked(GEMM_BF16, on, d, N, natt, q, k, v, r);
    const double w = against_double(&t, d, N, natt, q, k, v, r), tol = 12.0 / 256;
    if (!(w <= tol)) fail_msg("%s against double: relative difference %.3g", name, w);
    print_message("attention B %lld T %lld NH %lld KVH %lld HD %lld%s: %s against double %.2g\n", (long long)d.B,
                  (long long)d.T, (long long)d.NH, (long long)d.KVH, (long long)d.HD, d.off ? " packed" : "", name, w);
    free_out(&t);
    free(q); free(k); free(v); free(r);
    gemm_set_precision(GEMM_FP32_AUTO);
}
static void amx_attention_case(attn_dims d, int64_t N) { bf16_attention_case(gemm_attention_amx, "AMX", d, N); }
static void dot_attention_case(attn_dims d, int64_t N) { bf16_attention_case(gemm_attention_dot, "VDPBF16PS", d, N); }

/* whether bf16 attention runs on this engine here (a skip if not) */
static int bf16_attention_on(int (*on)(void)) {
    gemm_set_precision(GEMM_BF16);
    const int yes = on();
    gemm_set_precision(GEMM_FP32_AUTO);
    if (!yes)
        print_message("# skipped: bf16 attention runs elsewhere here (oneDNN ISA %s, AVX512-BF16 build %d, AMX "
                      "build %d)\n", gemm_dnnl_isa(), ATTN_BF16_BUILT, ATTN_AMX_BUILT);
    return yes;
}

/* bf16 on the fp32 tiles (GEMM_BF16 with its products on fp32 FMAs, no
 * AMX, no AMD dot products): the caller rounds q, k, v and the output
 * gradient (model.c does, with attention_round16), the kernels each
 * block's P and dS. Bytes as above; against the double kernels on the
 * unrounded inputs within the bf16 bound above; and not the fp32 tiles'
 * bytes on the same rounded inputs (P and dS are rounded too), though
 * within that bound of them. */
static int tiles16_on(void) { return gemm_attention_tiles16_for(1); }
static float *rounded16(const float *x, int64_t n) {
    float *y = xmalloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    memcpy(y, x, sizeof(float) * (size_t)n);
    attention_round16(y, n);
    return y;
}
static void tiles16_attention_case(attn_dims d, int64_t N) {
    const int64_t nq = N * d.NH * d.HD, nk = N * d.KVH * d.HD, natt = att_elems(d);
    float *q = frnd(nq), *k = frnd(nk), *v = frnd(nk), *r = frnd(nq);
    float *q16 = rounded16(q, nq), *k16 = rounded16(k, nk), *v16 = rounded16(v, nk), *r16 = rounded16(r, nq);
    att_out t = attention_checked(GEMM_BF16, tiles16_on, d, N, natt, q16, k16, v16, r16);
    const double tol = 12.0 / 256, w = against_double(&t, d, N, natt, q, k, v, r);
    if (!(w <= tol)) fail_msg("bf16 tiles against double: relative difference %.3g", w);
    gemm_set_precision(GEMM_FP32_AUTO);
    att_out f = run_attention(d, N, natt, q16, k16, v16, r16);
    const double wf = fmax(fmax(worst_f(t.y, f.y, nq), worst_f(t.dq, f.dq, nq)),
                           fmax(worst_f(t.dk, f.dk, nk), worst_f(t.dv, f.dv, nk)));
    if (!(wf > 0 && wf <= tol)) fail_msg("bf16 tiles against fp32 tiles on the rounded inputs: %.3g", wf);
    print_message("attention B %lld T %lld NH %lld KVH %lld HD %lld%s: bf16 tiles against double %.2g, against fp32 "
                  "tiles %.2g\n", (long long)d.B, (long long)d.T, (long long)d.NH, (long long)d.KVH,
                  (long long)d.HD, d.off ? " packed" : "", w, wf);
    free_out(&t); free_out(&f);
    free(q); free(k); free(v); free(r); free(q16); free(k16); free(v16); free(r16);
}

static void test_attention_bf16_on_tiles(void **st) {
    if (!bf16_attention_on(tiles16_on)) skip();
    each_shape(tiles16_attention_case, ATTN_TILES_AVX512);
}

static void test_attention_on_amx(void **st) {
    if (!bf16_attention_on(gemm_attention_amx)) skip();
    each_shape(amx_attention_case, 1);
}

static void test_attention_on_dot(void **st) {
    if (!bf16_attention_on(gemm_attention_dot)) skip();
    each_shape(dot_attention_case, 1);
}

int main(void) {
    rng_seed(&rng, 99);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiles_mm),
        cmocka_unit_test(test_tiles_causal),
        cmocka_unit_test(test_tiles_transpose),
        cmocka_unit_test(test_attention_on_tiles),
        cmocka_unit_test(test_attention_bf16_on_tiles),
        cmocka_unit_test(test_amx_mm),
        cmocka_unit_test(test_amx_causal),
        cmocka_unit_test(test_attention_on_amx),
        cmocka_unit_test(test_attention_on_dot),
    };
    return cmocka_run_group_tests_name("attn_tiles", tests, NULL, NULL);
}
