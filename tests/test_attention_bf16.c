/* Attention with bf16 products batched over heads (lib/attention_bf16.c)
 * against the double kernels on the same float inputs, element by element,
 * within bounds derived from where the path rounds.
 *
 * Notation: u8 = 2^-8 (bf16's unit roundoff, round to nearest even), u24 =
 * 2^-24 (fp32's); s = 1/sqrt(HD). The path rounds q, k, v, dout, the saved
 * probabilities P and dS to bf16, each a relative error of at most u8, and
 * accumulates every product in fp32 (at most (n + 2) u24 of the sum of
 * |terms| for n terms). First-order propagation, with each relative factor
 * taken as (1 + a)(1 + b) - 1 so that products of errors are kept:
 *  - logits: |dz_ij| <= s (2 u8 + u8^2 + (HD + 3) u24) sum_d |q_id k_jd|;
 *    with E_i = max_j |dz_ij|, the probabilities of row i move by a relative
 *    r_i = exp(2 E_i) - 1 + (T + 8) u24 (softmax: d log P_j = dz_j - sum P dz,
 *    plus exp, the sum and the division in fp32);
 *  - the saved statistics: the row max within E_i + u24 |max|, 1/sum within
 *    a relative r_i;
 *  - y_id = sum_j P_ij v_jd: sum_j P_ij |v_jd| ((1 + r_i)(1 + u8)^2 (1 + (T + 2) u24) - 1);
 *  - dv_jd = sum_i P_ij dy_id: the same form over i, summed over the query
 *    heads that share the KV head;
 *  - dP_ij = sum_d dy_id v_jd: e(dP_ij) = (2 u8 + u8^2 + (HD + 2) u24) sum_d |dy_id v_jd|;
 *    D_i = sum_j P_ij dP_ij: e(D_i) = sum_j P_ij (r_i |dP_ij| + e(dP_ij)(1 + r_i)) + u24 |D_i|;
 *    dS_ij = P_ij (dP_ij - D_i): e(dS_ij) = (1 + r_i) P_ij (e(dP_ij) + e(D_i))
 *    + r_i P_ij |dP_ij - D_i| + 3 u24 P_ij (|dP_ij| + |D_i|), then rounded to
 *    bf16: e'(dS_ij) = e(dS_ij) + u8 (|dS_ij| + e(dS_ij));
 *  - dq_id = s sum_j dS_ij k_jd: s sum_j (e'(dS_ij) (1 + u8) + u8 |dS_ij|) |k_jd|
 *    + (T + 4) u24 s sum_j |dS_ij k_jd|; dk_jd alike over i with q_id.
 * The test also reports the worst error / bound, and checks that the path
 * really ran in bf16 (its errors are far above fp32's), that every
 * statistic is written, that the backward (which recomputes P) adds into
 * its buffers, and that a second run gives the same bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "attention_bf16.h"
#include "common.h"
#include "gemm.h"
#include "kernels.h"
#include "testutil.h"

static const double U8 = 1.0 / 256, U24 = 1.0 / 16777216;
static wdl_rng rng;

typedef struct {
    attn_dims d;
    int64_t N, nq, nk, natt;
    int64_t *seq_row, *seq_T, *seq_att;   /* per sequence */
    float *q, *k, *v, *dy;                /* inputs */
    double *qd, *kd, *vd, *dyd;           /* the same values in double */
} problem;

static problem make(attn_dims d, const int64_t *len) {
    problem p = {d};
    p.seq_row = xmalloc(sizeof(int64_t) * (size_t)d.B);
    p.seq_T = xmalloc(sizeof(int64_t) * (size_t)d.B);
    p.seq_att = xmalloc(sizeof(int64_t) * (size_t)d.B);
    for (int64_t b = 0; b < d.B; b++) {
        p.seq_row[b] = p.N;
        p.seq_T[b] = len ? len[b] : d.T;
        p.seq_att[b] = p.natt;
        p.N += p.seq_T[b];
        p.natt += d.NH * p.seq_T[b] * p.seq_T[b];
    }
    p.nq = p.N * d.NH * d.HD;
    p.nk = p.N * d.KVH * d.HD;
    float **f[4] = {&p.q, &p.k, &p.v, &p.dy};
    double **g[4] = {&p.qd, &p.kd, &p.vd, &p.dyd};
    for (int i = 0; i < 4; i++) {
        int64_t n = i == 1 || i == 2 ? p.nk : p.nq;
        *f[i] = xmalloc(sizeof(float) * (size_t)n);
        *g[i] = xmalloc(sizeof(double) * (size_t)n);
        /* logits of a few units: peaked and flat rows both */
        double scale = i < 2 ? 1.5 : 1.0;
        for (int64_t j = 0; j < n; j++) {
            (*f[i])[j] = (float)(scale * rng_normal(&rng));
            (*g[i])[j] = (*f[i])[j];
        }
    }
    return p;
}
static void unmake(problem *p) {
    free(p->seq_row); free(p->seq_T); free(p->seq_att);
    free(p->q); free(p->k); free(p->v); free(p->dy); free(p->qd); free(p->kd); free(p->vd); free(p->dyd);
}

static float *fzeros(int64_t n) { return xcalloc((size_t)n, sizeof(float)); }
static double *dzeros(int64_t n) { return xcalloc((size_t)n, sizeof(double)); }

static double worst_ratio;   /* over the binary: max error / bound */
static double max_rel_err;   /* max |error| / max |reference| per tensor: shows bf16 really ran */
static void expect_within(const char *what, const float *got, const double *ref, const double *bound, int64_t n) {
    double worst = 0, emax = 0, rmax = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= bound[i])) fail_msg("%s[%lld] = %.9g, reference %.9g: error %.3g over bound %.3g", what,
                                       (long long)i, got[i], ref[i], e, bound[i]);
        worst = fmax(worst, e / (bound[i] + 1e-300));
        emax = fmax(emax, e);
        rmax = fmax(rmax, fabs(ref[i]));
    }
    worst_ratio = fmax(worst_ratio, worst);
    max_rel_err = fmax(max_rel_err, emax / rmax);
    print_message("# %s: worst error / bound %.3f, max error / max |ref| %.2e\n", what, worst, emax / rmax);
}

/* The bounds of the header, from the double reference's P. */
/* The reference probabilities, [NH, T, T] per sequence, in double. */
static void probs(const problem *p, double *att) {
    const attn_dims d = p->d;
    const int64_t HD = d.HD, ldq = d.NH * HD, ldk = d.KVH * HD, grp = d.NH / d.KVH;
    for (int64_t b = 0; b < d.B; b++) {
        const int64_t T = p->seq_T[b], row = p->seq_row[b];
        for (int64_t h = 0; h < d.NH; h++)
            for (int64_t i = 0; i < T; i++) {
                double *P = att + p->seq_att[b] + (h * T + i) * T, mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j <= i; j++) {
                    double z = 0;
                    for (int64_t c = 0; c < HD; c++)
                        z += p->qd[(row + i) * ldq + h * HD + c] * p->kd[(row + j) * ldk + h / grp * HD + c];
                    P[j] = z / sqrt((double)HD);
                    mx = fmax(mx, P[j]);
                }
                for (int64_t j = 0; j <= i; j++) sum += P[j] = exp(P[j] - mx);
                for (int64_t j = 0; j <= i; j++) P[j] /= sum;
            }
    }
}

/* bstat: the saved statistics' bounds, E_i + u24 |max| for the max and
 * (exp(2 E_i) - 1 + (T + 8) u24) 1/sum for the reciprocal of the sum. */
static void bounds(const problem *p, const double *att, const double *stat, double *by, double *bstat, double *bdq,
                   double *bdk, double *bdv) {
    const attn_dims d = p->d;
    const int64_t HD = d.HD, ldq = d.NH * HD, ldk = d.KVH * HD, grp = d.NH / d.KVH;
    const double s = 1.0 / sqrt((double)HD);
    for (int64_t b = 0; b < d.B; b++) {
        const int64_t T = p->seq_T[b], row = p->seq_row[b];
        double *dP = dzeros(T), *edP = dzeros(T), *dS = dzeros(T), *edS = dzeros(T);
        for (int64_t h = 0; h < d.NH; h++) {
            const int64_t kh = h / grp;
            for (int64_t i = 0; i < T; i++) {
                const double *P = att + p->seq_att[b] + (h * T + i) * T;
                const double *qi = p->qd + (row + i) * ldq + h * HD, *dyi = p->dyd + (row + i) * ldq + h * HD;
                double E = 0;
                for (int64_t j = 0; j <= i; j++) {
                    const double *kj = p->kd + (row + j) * ldk + kh * HD;
                    double a = 0;
                    for (int64_t c = 0; c < HD; c++) a += fabs(qi[c] * kj[c]);
                    E = fmax(E, s * (2 * U8 + U8 * U8 + (HD + 3) * U24) * a);
                }
                const double r = expm1(2 * E) + (T + 8) * U24;
                const double fy = (1 + r) * (1 + U8) * (1 + U8) * (1 + (T + 2) * U24) - 1;
                const int64_t si = ((row + i) * d.NH + h) * 2;
                bstat[si] = E + U24 * fabs(stat[si]);
                bstat[si + 1] = r * stat[si + 1];
                for (int64_t c = 0; c < HD; c++) {
                    double a = 0;
                    for (int64_t j = 0; j <= i; j++) a += P[j] * fabs(p->vd[(row + j) * ldk + kh * HD + c]);
                    by[(row + i) * ldq + h * HD + c] = fy * a;
                }
                /* dv: P_ij |dy_id| with the same factor */
                for (int64_t j = 0; j <= i; j++)
                    for (int64_t c = 0; c < HD; c++) bdv[(row + j) * ldk + kh * HD + c] += fy * P[j] * fabs(dyi[c]);
                /* dP, D, dS */
                double D = 0, eD = 0;
                for (int64_t j = 0; j <= i; j++) {
                    const double *vj = p->vd + (row + j) * ldk + kh * HD;
                    double x = 0, a = 0;
                    for (int64_t c = 0; c < HD; c++) { x += dyi[c] * vj[c]; a += fabs(dyi[c] * vj[c]); }
                    dP[j] = x;
                    edP[j] = (2 * U8 + U8 * U8 + (HD + 2) * U24) * a;
                    D += P[j] * x;
                    eD += P[j] * (r * fabs(x) + edP[j] * (1 + r));
                }
                eD += U24 * fabs(D);
                for (int64_t j = 0; j <= i; j++) {
                    dS[j] = P[j] * (dP[j] - D);
                    double e = (1 + r) * P[j] * (edP[j] + eD) + r * P[j] * fabs(dP[j] - D) +
                               3 * U24 * P[j] * (fabs(dP[j]) + fabs(D));
                    edS[j] = e + U8 * (fabs(dS[j]) + e);
                }
                for (int64_t c = 0; c < HD; c++) {
                    double a = 0, acc = 0;
                    for (int64_t j = 0; j <= i; j++) {
                        double kv = fabs(p->kd[(row + j) * ldk + kh * HD + c]);
                        a += (edS[j] * (1 + U8) + U8 * fabs(dS[j])) * kv;
                        acc += fabs(dS[j]) * kv;
                    }
                    bdq[(row + i) * ldq + h * HD + c] = s * a + (T + 4) * U24 * s * acc;
                }
                for (int64_t j = 0; j <= i; j++)
                    for (int64_t c = 0; c < HD; c++) {
                        double qv = fabs(qi[c]);
                        bdk[(row + j) * ldk + kh * HD + c] +=
                            s * (edS[j] * (1 + U8) + U8 * fabs(dS[j])) * qv + (T + 4) * U24 * s * fabs(dS[j]) * qv;
                    }
            }
        }
        free(dP); free(edP); free(dS); free(edS);
    }
}

/* Forward and backward through the float kernels (bf16 products batched)
 * against the double kernels. */
static void check(attn_dims d, const int64_t *len) {
    problem p = make(d, len);
    const int64_t ns = p.N * d.NH * 2;
    double *y = dzeros(p.nq), *att = dzeros(p.natt), *stat = dzeros(ns), *gq = dzeros(p.nq), *gk = dzeros(p.nk),
           *gv = dzeros(p.nk);
    attn_dims dd = d;
    int64_t *off = NULL;
    if (len) {
        off = xmalloc(sizeof(int64_t) * (size_t)(d.B + 1));
        for (int64_t b = 0; b <= d.B; b++) off[b] = b < d.B ? p.seq_row[b] : p.N;
        dd.off = off;
    }
    double *fs = dzeros(attention_forward_scratch(dd)), *scr = dzeros(attention_backward_scratch(dd));
    attention_forward_f64(y, stat, p.qd, p.kd, p.vd, dd, fs);
    attention_backward_f64(gq, gk, gv, p.dyd, stat, p.qd, p.kd, p.vd, dd, scr);
    probs(&p, att);
    free(fs); free(scr);

    float *yf = fzeros(p.nq), *statf = xmalloc(sizeof(float) * (size_t)ns);
    for (int64_t i = 0; i < ns; i++) statf[i] = NAN;   /* every element must be written */
    assert_int_equal(attention_bf16_forward(yf, statf, p.q, p.k, p.v, dd), 1);
    /* the float kernel dispatches to it: the same bytes */
    float *yf2 = fzeros(p.nq), *statf2 = fzeros(ns), *fsf = fzeros(attention_forward_scratch(dd));
    attention_forward(yf2, statf2, p.q, p.k, p.v, dd, fsf);
    assert_memory_equal(yf, yf2, sizeof(float) * (size_t)p.nq);
    assert_memory_equal(statf, statf2, sizeof(float) * (size_t)ns);

    double *by = dzeros(p.nq), *bstat = dzeros(ns), *bdq = dzeros(p.nq), *bdk = dzeros(p.nk), *bdv = dzeros(p.nk);
    bounds(&p, att, stat, by, bstat, bdq, bdk, bdv);
    expect_within("y", yf, y, by, p.nq);
    expect_within("softmax statistics", statf, stat, bstat, ns);

    /* backward into buffers that hold values: it adds */
    float *dqf = xmalloc(sizeof(float) * (size_t)p.nq), *dkf = xmalloc(sizeof(float) * (size_t)p.nk),
          *dvf = xmalloc(sizeof(float) * (size_t)p.nk);
    for (int64_t i = 0; i < p.nq; i++) dqf[i] = 0.5f;
    for (int64_t i = 0; i < p.nk; i++) { dkf[i] = -0.25f; dvf[i] = 2.0f; }
    assert_int_equal(attention_bf16_backward(dqf, dkf, dvf, p.dy, statf, p.q, p.k, p.v, dd), 1);
    for (int64_t i = 0; i < p.nq; i++) { gq[i] += 0.5; bdq[i] += U24 * (0.5 + fabs(gq[i])); }
    for (int64_t i = 0; i < p.nk; i++) {
        gk[i] += -0.25; bdk[i] += U24 * (0.25 + fabs(gk[i]));
        gv[i] += 2.0; bdv[i] += U24 * (2.0 + fabs(gv[i]));
    }
    expect_within("dq", dqf, gq, bdq, p.nq);
    expect_within("dk", dkf, gk, bdk, p.nk);
    expect_within("dv", dvf, gv, bdv, p.nk);

    /* a second run, through the float kernel: the same bytes */
    float *dq2 = xmalloc(sizeof(float) * (size_t)p.nq), *dk2 = xmalloc(sizeof(float) * (size_t)p.nk),
          *dv2 = xmalloc(sizeof(float) * (size_t)p.nk), *scrf = fzeros(attention_backward_scratch(dd));
    for (int64_t i = 0; i < p.nq; i++) dq2[i] = 0.5f;
    for (int64_t i = 0; i < p.nk; i++) { dk2[i] = -0.25f; dv2[i] = 2.0f; }
    attention_backward(dq2, dk2, dv2, p.dy, statf, p.q, p.k, p.v, dd, scrf);
    assert_memory_equal(dqf, dq2, sizeof(float) * (size_t)p.nq);
    assert_memory_equal(dkf, dk2, sizeof(float) * (size_t)p.nk);
    assert_memory_equal(dvf, dv2, sizeof(float) * (size_t)p.nk);

    free(y); free(att); free(stat); free(gq); free(gk); free(gv); free(yf); free(statf); free(yf2); free(statf2);
    free(fsf); free(by); free(bstat); free(bdq); free(bdk); free(bdv); free(dqf); free(dkf); free(dvf);
    free(dq2); free(dk2); free(dv2); free(scrf); free(off);
    unmake(&p);
}

/* GQA (two query heads per KV head), three sequences of 70 rows: two row
 * blocks, one batched product over all sequences and heads per block. */
static void test_uniform(void **st) { check((attn_dims){3, 70, 4, 2, 8, NULL}, NULL); }
/* one head per KV head, shorter than a block */
static void test_mha(void **st) { check((attn_dims){2, 9, 3, 3, 16, NULL}, NULL); }
/* packed: runs of equal lengths (the two 70s share their products), a
 * sequence of one row, lengths across the 64-row block */
static void test_packed(void **st) {
    static const int64_t len[] = {5, 1, 70, 70, 3, 65};
    check((attn_dims){6, 70, 4, 2, 8, NULL}, len);
}

/* Without bf16 instructions (oneDNN capped at AVX2) the batched products
 * run widened on cblas_sgemm: the same bounds hold. Runs in a child that has
 * not touched oneDNN, so it must stay the first test. */
static void emulated_child(void *arg) {
    (void)arg;
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    if (gemm_bf16_native()) _exit(3);
    gemm_set_precision(GEMM_BF16);
    static const int64_t len[] = {70, 70, 2};
    check((attn_dims){3, 70, 4, 2, 8, NULL}, len);
    int64_t prims, emul;
    gemm_ctx_stats(gemm_default(), &prims, &emul, NULL);
    if (prims != 0 || emul == 0) _exit(4);
}
static void test_emulated(void **st) {
    char buf[8192];
    int s = run_in_child(emulated_child, NULL, buf, sizeof buf);
    if (!WIFEXITED(s) || WEXITSTATUS(s) != 0) fail_msg("child status %d, output: %s", s, buf);
}

/* With fp32 products the path declines and the float kernel runs as
 * before. */
static void test_declines_in_fp32(void **st) {
    gemm_set_precision(GEMM_FP32);
    float x[8] = {0};
    attn_dims d = {1, 1, 1, 1, 8, NULL};
    assert_int_equal(attention_bf16_forward(x, x, x, x, x, d), 0);
    assert_int_equal(attention_bf16_backward(x, x, x, x, x, x, x, x, d), 0);
    gemm_set_precision(GEMM_BF16);
}

static void test_really_bf16(void **st) {
    /* fp32 products would leave errors near 1e-7 of the largest value */
    print_message("# worst error / bound over the binary %.3f; largest relative error %.2e\n", worst_ratio,
                  max_rel_err);
    assert_true(max_rel_err > U8 / 64);
}

int main(void) {
    wdl_set_prog("test_attention_bf16");
    rng_seed(&rng, 7);
    const struct CMUnitTest first[] = {cmocka_unit_test(test_emulated)};
    int fails = cmocka_run_group_tests_name("emulated", first, NULL, NULL);
    gemm_set_precision(GEMM_BF16);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform), cmocka_unit_test(test_mha), cmocka_unit_test(test_packed),
        cmocka_unit_test(test_declines_in_fp32), cmocka_unit_test(test_really_bf16),
    };
    return fails + cmocka_run_group_tests(tests, NULL, NULL);
}
