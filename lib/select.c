/* select.c: see select.h. */
#include "select.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int sel_scheme_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "code")) return SEL_CODE;
    if (!strcmp(s, "paper")) return SEL_PAPER;
    return -1;
}

const char *sel_scheme_name(sel_scheme s) { return s == SEL_PAPER ? "paper" : "code"; }

const char *sel_term_name(sel_scheme s, int k) {
    static const char *code[3] = {"H_weak/Z1", "[-dH]+/Z2", "[dH]+/Z3"};
    static const char *paper[3] = {"[-dH]+", "H_strong", "[dH]+"};
    if (k < 0 || k > 2) return "?";
    return s == SEL_PAPER ? paper[k] : code[k];
}

static double pos(double u) { return u > 0 ? u : 0; }

void sel_terms(const sel_params *prm, const double z[3], double hw, double hs, double t[3]) {
    double dh = hs - hw;
    if (prm->scheme == SEL_PAPER) {
        t[0] = prm->alpha * pos(-dh);
        t[1] = prm->beta * hs;
        t[2] = prm->gamma * pos(dh);
    } else {
        t[0] = prm->alpha * hw / z[0];
        t[1] = prm->beta * pos(-dh) / z[1];
        t[2] = prm->gamma * pos(dh) / z[2];
    }
}

/* Z1..Z3 of the code scheme and the means, over the scored examples. */
static void sums(size_t n, const double *hw, const double *hs, const unsigned char *ok,
                 sel_info *in) {
    double z1 = 0, z2 = 0, z3 = 0, shs = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ok[i]) continue;
        double dh = hs[i] - hw[i];
        z1 += hw[i];
        z2 += pos(-dh);
        z3 += pos(dh);
        shs += hs[i];
        m++;
    }
    in->n_scored = m;
    /* the reference code replaces only an exactly-zero normaliser */
    in->z[0] = z1 != 0 ? z1 : SEL_EPS;
    in->z[1] = z2 != 0 ? z2 : SEL_EPS;
    in->z[2] = z3 != 0 ? z3 : SEL_EPS;
    in->mean_hw = m ? z1 / (double)m : 0;
    in->mean_hs = m ? shs / (double)m : 0;
    in->mean_dh = m ? (shs - z1) / (double)m : 0;
}

int sel_weights(const sel_params *prm, size_t n, const double *hw, const double *hs,
                const unsigned char *ok, double *p, sel_info *info) {
    sel_info local;
    sel_info *in = info ? info : &local;
    memset(in, 0, sizeof *in);
    sums(n, hw, hs, ok, in);
    if (!isfinite(in->z[0]) || !isfinite(in->z[1]) || !isfinite(in->z[2]) || !isfinite(in->mean_hs) ||
        !isfinite(in->mean_dh)) {
        for (size_t i = 0; i < n; i++) p[i] = 0;
        return -2;
    }
    double mass[3] = {0, 0, 0}, total = 0;
    for (size_t i = 0; i < n; i++) {
        p[i] = 0;
        if (!ok[i]) continue;
        double t[3];
        sel_terms(prm, in->z, hw[i], hs[i], t);
        double w = t[0] + t[1] + t[2];
        if (!(w > 0)) {          /* clip (also catches a NaN from bad input) */
            if (w < 0) in->n_clipped++;
            continue;
        }
        p[i] = w;
        total += w;
        for (int k = 0; k < 3; k++) mass[k] += t[k];
        in->n_positive++;
    }
    in->total = total;
    if (!(total > 0) || !isfinite(total)) {
        for (size_t i = 0; i < n; i++) p[i] = 0;
        return -1;
    }
    for (size_t i = 0; i < n; i++) p[i] /= total;
    for (int k = 0; k < 3; k++) in->term_mass[k] = mass[k] / total;
    return 0;
}

int sel_sampler_init(sel_sampler *s, const double *p, size_t n) {
    s->cum = xmalloc((n ? n : 1) * sizeof(double));
    s->n = n;
    s->last = 0;
    double c = 0;
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] > 0) { c += p[i]; s->last = i; any = 1; }
        s->cum[i] = c;
    }
    return any ? 0 : -1;
}

size_t sel_sampler_draw(const sel_sampler *s, wdl_rng *r) {
    double u = rng_uniform(r) * s->cum[s->n - 1];
    /* first i with cum[i] > u: an index whose p is 0 has cum[i] == cum[i-1],
     * so it can never be the first to exceed u */
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->cum[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo > s->last ? s->last : lo;
}

void sel_sampler_free(sel_sampler *s) {
    free(s->cum);
    s->cum = NULL;
    s->n = 0;
}

int sel_draw(const double *p, size_t n, size_t m, uint64_t seed, size_t *out) {
    sel_sampler s;
    if (sel_sampler_init(&s, p, n) != 0) { sel_sampler_free(&s); return -1; }
    wdl_rng r;
    rng_seed(&r, seed);
    for (size_t j = 0; j < m; j++) out[j] = sel_sampler_draw(&s, &r);
    sel_sampler_free(&s);
    return 0;
}

static int by_key(const void *a, const void *b, void *key) {
    const double *sort_key = key;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    double x = sort_key[i], y = sort_key[j];
    if (x < y) return -1;
    if (x > y) return 1;
    return (i > j) - (i < j);   /* stable, so the result never depends on qsort */
}

void sel_buckets(size_t n, const double *h, const unsigned char *ok, int k, int *bucket) {
    size_t *idx = xmalloc((n ? n : 1) * sizeof(size_t)), m = 0;
    for (size_t i = 0; i < n; i++) {
        bucket[i] = -1;
        if (!ok || ok[i]) idx[m++] = i;
    }
    if (k < 1) k = 1;
    qsort_r(idx, m, sizeof(size_t), by_key, (void *)h);
    size_t rank = 0;
    for (size_t j = 0; j < m; j++) {
        if (j == 0 || h[idx[j]] != h[idx[j - 1]]) rank = j;   /* ties share the lowest rank */
        bucket[idx[j]] = (int)((uint64_t)k * rank / m);   /* exact; < k as rank < m */
    }
    free(idx);
}
