/* test_stats: the paired statistics behind wdl-report's verdict, against
 * values computed independently (exact rationals in Python for McNemar,
 * closed-form variances for the bootstrap) and against the logit-table
 * statistics computed by hand on tiny logit rows. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "testutil.h"
#include "probe.h"
#include "stats.h"

/* exact values from fractions.Fraction(sum(comb(b+c, j) for j <= min(b,c)), 2**(b+c)) * 2 */
static void test_mcnemar(void **st) {
    (void)st;
    struct { int64_t b, c; double p; } t[] = {
        {8, 2, 0.109375}, {2, 8, 0.109375}, {10, 0, 0.001953125}, {5, 5, 1.0}, {0, 0, 1.0}, {1, 0, 1.0},
        {65, 57, 0.5264163099662331}, {60, 40, 0.05688793364098079}, {400, 330, 0.010605994778707738}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        double p = stats_mcnemar_exact(t[i].b, t[i].c);
        if (fabs(p - t[i].p) > 1e-12 * fmax(1, t[i].p)) fail_msg("mcnemar(%lld,%lld) = %.17g, want %.17g",
                                                                 (long long)t[i].b, (long long)t[i].c, p, t[i].p);
    }
}

static uint8_t *fill(int64_t n, int64_t ones_from, int64_t ones_to) {
    uint8_t *v = calloc((size_t)n, 1);
    for (int64_t i = ones_from; i < ones_to && i < n; i++) v[i] = 1;
    return v;
}

/* no disagreement: difference 0, interval [0, 0], p = 1; all one way: 100 points */
static void test_degenerate(void **st) {
    (void)st;
    uint8_t *a = fill(50, 0, 30), *z = fill(50, 0, 0), *one = fill(50, 0, 50);
    stats_seed s[2] = {{a, a, 50}, {a, a, 50}};
    stats_paired r;
    stats_paired_compare(s, 2, 1, 500, 7, &r);
    assert_true(r.diff == 0 && r.ci_lo == 0 && r.ci_hi == 0 && r.p == 1 && r.se == 0 && r.b == 0 && r.c == 0);
    stats_seed u[1] = {{one, z, 50}};
    stats_paired_compare(u, 1, 1, 500, 7, &r);
    assert_true(r.diff == 100 && r.ci_lo == 100 && r.ci_hi == 100 && r.b == 50 && r.c == 0);
    assert_true(r.p < 0.001 && fabs(r.p_mcnemar - 2.0 / pow(2, 50)) < 1e-20);
    free(a); free(z); free(one);
}

/* one seed: the bootstrap SD of a mean of N values in {-1,0,1} must be
 * sqrt((p+ + p- - (p+ - p-)^2) / N); the interval sits at diff +- 1.96 SE */
static void test_problem_variance(void **st) {
    (void)st;
    int64_t N = 2000;
    uint8_t *arm = fill(N, 0, 300), *ctl = fill(N, 300, 500);   /* 300 arm-only, 200 control-only */
    stats_seed s[1] = {{arm, ctl, N}};
    stats_paired r;
    stats_paired_compare(s, 1, 1, 4000, 11, &r);
    double pp = 0.15, pm = 0.10, se = 100 * sqrt((pp + pm - (pp - pm) * (pp - pm)) / N);
    assert_true(fabs(r.diff - 5.0) < 1e-12);
    if (fabs(r.se / se - 1) > 0.05) fail_msg("bootstrap SE %.4f vs closed form %.4f", r.se, se);
    if (fabs(r.ci_lo - (5 - 1.96 * se)) > 0.15 * se || fabs(r.ci_hi - (5 + 1.96 * se)) > 0.15 * se)
        fail_msg("interval [%.3f, %.3f], expected about 5 -+ %.3f", r.ci_lo, r.ci_hi, 1.96 * se);
    assert_true(fabs(r.mde - STATS_MDE_FACTOR * r.se) < 1e-12);
    assert_true(r.b == 300 && r.c == 200);
    /* z = 5 / 1.11 = 4.5: no replicate reaches 0 */
    assert_true(r.p < 0.001);
    /* same inputs and generator seed: the same numbers */
    stats_paired r2;
    stats_paired_compare(s, 1, 1, 4000, 11, &r2);
    assert_memory_equal(&r, &r2, sizeof r);
    free(arm); free(ctl);
}

/* five seeds whose differences are 0..40 points on 4,000 problems each:
 * the seed term dominates, SE ~ sd_pop(seed means) / sqrt(S) */
static void test_seed_variance(void **st) {
    (void)st;
    int64_t N = 4000;
    int S = 5;
    uint8_t *ctl = fill(N, 0, 0), *arm[5];
    stats_seed s[5];
    double m[5], mean = 0, var = 0;
    for (int k = 0; k < S; k++) {
        arm[k] = fill(N, 0, N * k / 10);
        s[k] = (stats_seed){arm[k], ctl, N};
        m[k] = 100.0 * k / 10;
        mean += m[k] / S;
    }
    for (int k = 0; k < S; k++) var += (m[k] - mean) * (m[k] - mean) / S;
    for (int crossed = 0; crossed < 2; crossed++) {
        stats_paired r;
        stats_paired_compare(s, S, crossed, 4000, 3, &r);
        assert_true(fabs(r.diff - 20.0) < 1e-9);
        double se = sqrt(var / S);
        if (fabs(r.se / se - 1) > 0.06) fail_msg("crossed=%d: SE %.3f vs %.3f", crossed, r.se, se);
        assert_true(r.ci_lo > 0 && r.ci_lo < 20 && r.ci_hi > 20 && r.ci_hi <= 40);
    }
    for (int k = 0; k < S; k++) free(arm[k]);
    free(ctl);
}

static void bad_crossed(void *arg) {
    (void)arg;
    uint8_t a[3] = {1, 0, 1};
    stats_seed s[2] = {{a, a, 3}, {a, a, 2}};
    stats_paired r;
    stats_paired_compare(s, 2, 1, 10, 1, &r);
}
static void test_bad_input(void **st) {
    (void)st;
    expect_die(bad_crossed, NULL, "same problems", NULL);
}

/* the logit table on rows small enough to do by hand */
static void test_logit_stats(void **st) {
    (void)st;
    /* V = 4; row 0: target 2 is the argmax; row 1: target 0 is not */
    float z[8] = {0, 0, 2 * logf(3), 0,   1, 3, 1, -1};
    int32_t y[2] = {2, 0};
    logit_stats s;
    logit_stats_init(&s);
    logit_stats_add(&s, z, y, 2, 4);
    assert_int_equal(s.positions, 2);
    assert_int_equal(s.correct, 1);
    /* row 0: p = (1,1,9,1)/12 */
    double e1 = exp(1), e3 = exp(3), em1 = exp(-1), z1 = 2 * e1 + e3 + em1;
    double p0 = 9.0 / 12, p1 = e1 / z1;
    assert_true(fabs(s.p_target - (p0 + p1)) < 1e-6);
    assert_true(fabs(s.p_max - (p0 + e3 / z1)) < 1e-6);
    double t0 = 2 * log(3), mean0 = t0 / 4, mean1 = 1.0;
    assert_true(fabs(s.mean - (mean0 + mean1)) < 1e-6);
    assert_true(fabs(s.target - (t0 + 1)) < 1e-6);
    assert_true(fabs(s.nontarget - (0 + (3 + 1 - 1) / 3.0)) < 1e-6);
    assert_true(fabs(s.gap - (t0 + (1 - 1))) < 1e-6);
    assert_true(fabs(s.max - 3) < 1e-6 && fabs(s.min + 1) < 1e-6);
    double l2_1 = sqrt(1 + 9 + 1 + 1), std1 = sqrt(12.0 / 4 - 1);
    assert_true(fabs(s.l2 - (t0 + l2_1)) < 1e-6);
    double std0 = sqrt(t0 * t0 / 4 - mean0 * mean0);
    assert_true(fabs(s.std - (std0 + std1)) < 1e-6);
    assert_true(fabs(s.cnorm - 2 * (std0 + std1)) < 1e-6);
    double h0 = -(3 * (1.0 / 12) * log(1.0 / 12) + p0 * log(p0));
    double q[4] = {e1 / z1, e3 / z1, e1 / z1, em1 / z1}, h1 = 0;
    for (int v = 0; v < 4; v++) h1 -= q[v] * log(q[v]);
    assert_true(fabs(s.entropy - (h0 + h1)) < 1e-6);
    json_t *j = logit_stats_json(&s);
    assert_true(fabs(json_real_value(json_object_get(j, "token_accuracy")) - 0.5) < 1e-12);
    assert_true(fabs(json_real_value(json_object_get(j, "nontarget_mass")) - (1 - (p0 + p1) / 2)) < 1e-6);
    json_decref(j);
}

int main(int argc, char **argv) {
    (void)argc;
    wdl_set_prog(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mcnemar),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_problem_variance),
        cmocka_unit_test(test_seed_variance),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_logit_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
