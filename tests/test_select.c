/* test_select.c: WD-DS selection math against hand-computed cases (both
 * schemes), the zero-normaliser epsilon, clipping, unscored records, the
 * sampler's distribution and determinism, and the bucket quantiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "select.h"

#define TOL 1e-12
static const sel_params CODE = {SEL_CODE, 0.1, 0.8, 0.1};
static const sel_params PAPER = {SEL_PAPER, 0.1, 0.8, 0.1};
static const unsigned char ALL[8] = {1, 1, 1, 1, 1, 1, 1, 1};

static void close_to(double got, double want) {
    if (fabs(got - want) > TOL * (1 + fabs(want)))
        fail_msg("got %.17g, want %.17g", got, want);
}

/* hw = {1, 2, 1}, hs = {0.5, 2.5, 1}: dH = {-0.5, 0.5, 0}.
 * code: Z1 = 4, Z2 = 0.5, Z3 = 0.5;
 *   p0 = .1*1/4 + .8*.5/.5 = .825, p1 = .1*2/4 + .1*.5/.5 = .15, p2 = .1/4 = .025 */
static const double HW3[3] = {1, 2, 1}, HS3[3] = {0.5, 2.5, 1};

static void test_code_scheme(void **st) {
    double p[3];
    sel_info in;
    assert_int_equal(sel_weights(&CODE, 3, HW3, HS3, ALL, p, &in), 0);
    close_to(p[0], 0.825);
    close_to(p[1], 0.15);
    close_to(p[2], 0.025);
    close_to(in.z[0], 4);
    close_to(in.z[1], 0.5);
    close_to(in.z[2], 0.5);
    /* in the code scheme the term masses are exactly alpha, beta, gamma */
    close_to(in.term_mass[0], 0.1);
    close_to(in.term_mass[1], 0.8);
    close_to(in.term_mass[2], 0.1);
    close_to(in.mean_hw, 4.0 / 3);
    close_to(in.mean_hs, 4.0 / 3);
    close_to(in.mean_dh, 0);
    assert_int_equal(in.n_scored, 3);
    assert_int_equal(in.n_positive, 3);
}

/* paper: raw = {.1*.5 + .8*.5, .8*2.5 + .1*.5, .8*1} = {.45, 2.05, .8}, total 3.3 */
static void test_paper_scheme(void **st) {
    double p[3];
    sel_info in;
    assert_int_equal(sel_weights(&PAPER, 3, HW3, HS3, ALL, p, &in), 0);
    close_to(p[0], 0.45 / 3.3);
    close_to(p[1], 2.05 / 3.3);
    close_to(p[2], 0.8 / 3.3);
    close_to(in.total, 3.3);
    close_to(in.term_mass[0], 0.05 / 3.3);
    close_to(in.term_mass[1], 3.2 / 3.3);
    close_to(in.term_mass[2], 0.05 / 3.3);
}

/* No example got worse (all dH <= 0): Z3 = 0 becomes the epsilon, the gamma
 * term is 0 everywhere, and the rest is renormalised:
 * hw = {1, 1}, hs = {.5, 1}: raw = {.05 + .8, .05}, total .9 */
static void test_zero_z_epsilon(void **st) {
    const double hw[2] = {1, 1}, hs[2] = {0.5, 1};
    double p[2];
    sel_info in;
    assert_int_equal(sel_weights(&CODE, 2, hw, hs, ALL, p, &in), 0);
    assert_true(in.z[2] == SEL_EPS);
    close_to(in.z[1], 0.5);
    close_to(p[0], 0.85 / 0.9);
    close_to(p[1], 0.05 / 0.9);
    close_to(in.term_mass[2], 0);
    /* nothing changed at all: Z2 = Z3 = epsilon, only the H_weak term is left */
    const double same[2] = {1, 3};
    assert_int_equal(sel_weights(&CODE, 2, same, same, ALL, p, &in), 0);
    assert_true(in.z[1] == SEL_EPS && in.z[2] == SEL_EPS);
    close_to(p[0], 0.25);
    close_to(p[1], 0.75);
    close_to(in.term_mass[0], 1);
}

/* Only an exactly-zero Z is replaced (as in the reference code): one tiny
 * positive dH still carries the whole gamma mass. */
static void test_tiny_z_not_replaced(void **st) {
    const double hw[2] = {1, 1}, hs[2] = {0.5, 1 + 1e-15};
    double p[2];
    sel_info in;
    assert_int_equal(sel_weights(&CODE, 2, hw, hs, ALL, p, &in), 0);
    assert_true(in.z[2] > 0 && in.z[2] < 1e-14);
    close_to(in.term_mass[2], 0.1);
    close_to(p[1], 0.05 + 0.1);
}

static void test_clipping(void **st) {
    /* code: a negative entropy makes the H_weak term negative -> clipped */
    const double hw[2] = {-0.5, 2}, hs[2] = {-0.5, 2};
    double p[2];
    sel_info in;
    assert_int_equal(sel_weights(&CODE, 2, hw, hs, ALL, p, &in), 0);
    assert_true(p[0] == 0);
    close_to(p[1], 1);
    assert_int_equal(in.n_clipped, 1);
    assert_int_equal(in.n_positive, 1);
    /* paper: .1*[1]+ + .8*(-1) < 0 -> clipped */
    const double hw2[2] = {0, 1}, hs2[2] = {-1, 1};
    assert_int_equal(sel_weights(&PAPER, 2, hw2, hs2, ALL, p, &in), 0);
    assert_true(p[0] == 0);
    close_to(p[1], 1);
    assert_int_equal(in.n_clipped, 1);
}

/* An unscored example gets 0 and changes no normaliser: the weights of the
 * others equal those computed without it. */
static void test_unscored(void **st) {
    const double hw[4] = {1, 99, 2, 1}, hs[4] = {0.5, -7, 2.5, 1};
    const unsigned char ok[4] = {1, 0, 1, 1};
    double p[4];
    sel_info in;
    for (int s = 0; s < 2; s++) {
        const sel_params *prm = s ? &PAPER : &CODE;
        double q[3];
        assert_int_equal(sel_weights(prm, 3, HW3, HS3, ALL, q, NULL), 0);
        assert_int_equal(sel_weights(prm, 4, hw, hs, ok, p, &in), 0);
        assert_true(p[1] == 0);
        close_to(p[0], q[0]);
        close_to(p[2], q[1]);
        close_to(p[3], q[2]);
        assert_int_equal(in.n_scored, 3);
    }
}

static void test_nothing_to_select(void **st) {
    const double z[3] = {0, 0, 0};
    const unsigned char none[3] = {0, 0, 0};
    double p[3] = {9, 9, 9};
    assert_int_equal(sel_weights(&CODE, 3, z, z, ALL, p, NULL), -1);
    assert_int_equal(sel_weights(&PAPER, 3, z, z, ALL, p, NULL), -1);
    assert_int_equal(sel_weights(&CODE, 3, HW3, HS3, none, p, NULL), -1);
    assert_true(p[0] == 0 && p[1] == 0 && p[2] == 0);
    /* alpha only, paper scheme: needs some dH < 0 */
    sel_params a = {SEL_PAPER, 1, 0, 0};
    const double up[2] = {1, 2};
    assert_int_equal(sel_weights(&a, 2, HW3, up, ALL, p, NULL), -1);
    size_t out[4];
    assert_int_equal(sel_draw(p, 3, 4, 1, out), -1);
}

/* Many draws: counts match p (chi-square, 3 degrees of freedom, threshold
 * at the 0.1% level), and a zero weight is never drawn. */
static void test_sampling_distribution(void **st) {
    const double p[5] = {0.5, 0, 0.3, 0.15, 0.05};
    const size_t m = 400000;
    size_t *out = xmalloc(m * sizeof(size_t));
    assert_int_equal(sel_draw(p, 5, m, 42, out), 0);
    double cnt[5] = {0};
    for (size_t j = 0; j < m; j++) { assert_true(out[j] < 5); cnt[out[j]]++; }
    assert_true(cnt[1] == 0);
    double chi2 = 0;
    for (int i = 0; i < 5; i++) {
        if (p[i] == 0) continue;
        double e = p[i] * m;
        chi2 += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    if (chi2 > 16.27) fail_msg("chi-square %.2f > 16.27 (df 3, 0.1%%)", chi2);
    /* and it is really sensitive: a wrong distribution is rejected */
    const double q[5] = {0.45, 0, 0.35, 0.15, 0.05};
    double chi2q = 0;
    for (int i = 0; i < 5; i++) {
        if (q[i] == 0) continue;
        double e = q[i] * m;
        chi2q += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    assert_true(chi2q > 100);
    free(out);
}

/* Zero weights at the ends never come out, even for u close to 1. */
static void test_sampler_edges(void **st) {
    const double p[4] = {0, 0.3, 0.7, 0};
    sel_sampler s;
    assert_int_equal(sel_sampler_init(&s, p, 4), 0);
    assert_int_equal(s.last, 2);
    wdl_rng r;
    rng_seed(&r, 7);
    for (int j = 0; j < 20000; j++) {
        size_t i = sel_sampler_draw(&s, &r);
        assert_true(i == 1 || i == 2);
    }
    sel_sampler_free(&s);
    const double one[3] = {0, 0, 1};
    size_t out[100];
    assert_int_equal(sel_draw(one, 3, 100, 3, out), 0);
    for (int j = 0; j < 100; j++) assert_int_equal(out[j], 2);
}

static void test_determinism(void **st) {
    double p[3];
    assert_int_equal(sel_weights(&CODE, 3, HW3, HS3, ALL, p, NULL), 0);
    size_t a[200], b[200], c[200];
    sel_draw(p, 3, 200, 11, a);
    sel_draw(p, 3, 200, 11, b);
    sel_draw(p, 3, 200, 12, c);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
}

static void test_buckets(void **st) {
    const double h[6] = {5, 1, 3, 2, 4, 6};
    int b[6];
    sel_buckets(6, h, NULL, 3, b);
    const int want[6] = {2, 0, 1, 0, 1, 2};
    assert_memory_equal(b, want, sizeof want);
    /* ties share a bucket (the lowest rank of the tie) */
    const double t[4] = {1, 1, 1, 2};
    sel_buckets(4, t, NULL, 2, b);
    const int want_t[4] = {0, 0, 0, 1};
    assert_memory_equal(b, want_t, sizeof want_t);
    /* unscored -> -1 and not counted in the ranks; 10 values, k = 3: 4/3/3 */
    const double u[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -100};
    unsigned char ok[11];
    memset(ok, 1, sizeof ok);
    ok[10] = 0;
    int bu[11];
    sel_buckets(11, u, ok, 3, bu);
    const int want_u[11] = {0, 0, 0, 0, 1, 1, 1, 2, 2, 2, -1};
    assert_memory_equal(bu, want_u, sizeof want_u);
    /* k = 1: everything in bucket 0; k > n: ranks spread, still < k */
    sel_buckets(6, h, NULL, 1, b);
    for (int i = 0; i < 6; i++) assert_int_equal(b[i], 0);
    const double two[2] = {2, 1};
    sel_buckets(2, two, NULL, 3, b);
    assert_int_equal(b[0], 1);
    assert_int_equal(b[1], 0);
}

static void test_names(void **st) {
    assert_int_equal(sel_scheme_parse("code"), SEL_CODE);
    assert_int_equal(sel_scheme_parse("paper"), SEL_PAPER);
    assert_int_equal(sel_scheme_parse("v2"), -1);
    assert_string_equal(sel_scheme_name(SEL_PAPER), "paper");
    assert_string_equal(sel_term_name(SEL_CODE, 0), "H_weak/Z1");
    assert_string_equal(sel_term_name(SEL_PAPER, 1), "H_strong");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_scheme),
        cmocka_unit_test(test_paper_scheme),
        cmocka_unit_test(test_zero_z_epsilon),
        cmocka_unit_test(test_tiny_z_not_replaced),
        cmocka_unit_test(test_clipping),
        cmocka_unit_test(test_unscored),
        cmocka_unit_test(test_nothing_to_select),
        cmocka_unit_test(test_sampling_distribution),
        cmocka_unit_test(test_sampler_edges),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
