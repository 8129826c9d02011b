/* stats.c: see stats.h. */
#include "stats.h"
#include "common.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

double stats_mcnemar_exact(int64_t b, int64_t c) {
    int64_t n = b + c, k = b < c ? b : c;
    if (n == 0) return 1.0;
    /* sum of C(n, j) / 2^n for j <= k, in logs so that large n cannot overflow */
    double lc = 0, acc = 0, l2 = (double)n * log(2.0);
    for (int64_t j = 0; j <= k; j++) {
        if (j > 0) lc += log((double)(n - j + 1)) - log((double)j);
        acc += exp(lc - l2);
    }
    double p = 2 * acc;
    return p > 1 ? 1 : p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* the value at quantile q of sorted v (linear interpolation) */
static double quantile(const double *v, int64_t n, double q) {
    double pos = q * (double)(n - 1);
    int64_t i = (int64_t)floor(pos);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

void stats_paired_compare(const stats_seed *s, int S, int crossed, int64_t reps, uint64_t seed,
                          stats_paired *out) {
    memset(out, 0, sizeof *out);
    out->crossed = crossed;
    if (S < 1 || reps < 1) die("paired comparison needs at least one seed and one replicate");
    int64_t nmax = 0;
    /* per-problem differences d in {-1, 0, 1} */
    int8_t **d = xmalloc(sizeof(int8_t *) * (size_t)S);
    double total = 0;
    for (int k = 0; k < S; k++) {
        if (s[k].n < 1) die("paired comparison: seed %d has no problems", k + 1);
        if (crossed && s[k].n != s[0].n) die("paired comparison: crossed design needs the same problems in every seed");
        if (s[k].n > nmax) nmax = s[k].n;
        d[k] = xmalloc((size_t)s[k].n);
        int64_t sum = 0;
        for (int64_t i = 0; i < s[k].n; i++) {
            int a = s[k].arm[i] != 0, c = s[k].ctl[i] != 0;
            d[k][i] = (int8_t)(a - c);
            sum += a - c;
            out->b += a && !c;
            out->c += c && !a;
        }
        total += (double)sum / (double)s[k].n;
    }
    out->diff = 100.0 * total / S;
    out->p_mcnemar = stats_mcnemar_exact(out->b, out->c);

    double *rep = xmalloc(sizeof(double) * (size_t)reps);
    int64_t *pick = xmalloc(sizeof(int64_t) * (size_t)nmax);
    wdl_rng r;
    rng_seed(&r, seed);
    double m1 = 0, m2 = 0;
    int64_t le = 0, ge = 0;
    for (int64_t t = 0; t < reps; t++) {
        double acc = 0;
        if (crossed)
            for (int64_t i = 0; i < s[0].n; i++) pick[i] = (int64_t)rng_below(&r, (uint64_t)s[0].n);
        for (int k = 0; k < S; k++) {
            int j = (int)rng_below(&r, (uint64_t)S);
            int64_t n = s[j].n, sum = 0;
            if (crossed)
                for (int64_t i = 0; i < n; i++) sum += d[j][pick[i]];
            else
                for (int64_t i = 0; i < n; i++) sum += d[j][rng_below(&r, (uint64_t)n)];
            acc += (double)sum / (double)n;
        }
        double v = 100.0 * acc / S;
        rep[t] = v;
        m1 += v; m2 += v * v;
        le += v <= 0;
        ge += v >= 0;
    }
    m1 /= (double)reps;
    double var = m2 / (double)reps - m1 * m1;
    out->se = var > 0 ? sqrt(var) : 0;
    out->mde = STATS_MDE_FACTOR * out->se;
    double tail = (double)(le < ge ? le : ge) / (double)reps;
    out->p = 2 * tail > 1 ? 1 : 2 * tail;
    qsort(rep, (size_t)reps, sizeof(double), cmp_double);
    out->ci_lo = quantile(rep, reps, 0.025);
    out->ci_hi = quantile(rep, reps, 0.975);
    for (int k = 0; k < S; k++) free(d[k]);
    free(d); free(rep); free(pick);
}
