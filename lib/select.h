/* select.h: WD-DS (weak-driven discrepancy selection) math.
 * Sampling weights from a weak and a strong entropy per example, seeded
 * draws with replacement, and difficulty buckets (quantiles of H_strong).
 * Kept apart from the program so the numbers can be unit-tested.
 *
 * dH = H_strong - H_weak, [u]+ = max(u, 0).
 *  code  (reference code / paper v1): p = a*H_weak/Z1 + b*[-dH]+/Z2 + g*[dH]+/Z3,
 *        Z1 = sum H_weak, Z2 = sum [-dH]+, Z3 = sum [dH]+ over the scored
 *        examples, a Z equal to 0 replaced by SEL_EPS; clip at 0, renormalise.
 *  paper (paper v2): p ∝ a*[-dH]+ + b*H_strong + g*[dH]+ (clipped at 0).
 * Unscored examples (ok[i] == 0) get p = 0 and take no part in any sum. */
#ifndef WDL_SELECT_H
#define WDL_SELECT_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"

#define SEL_EPS 1e-12

typedef enum { SEL_CODE = 0, SEL_PAPER = 1 } sel_scheme;

/* "code" or "paper" -> scheme; -1 when unknown. */
int sel_scheme_parse(const char *s);
const char *sel_scheme_name(sel_scheme s);
/* What the alpha/beta/gamma term (k = 0, 1, 2) measures in a scheme,
 * e.g. "H_weak/Z1" (for stats and help). */
const char *sel_term_name(sel_scheme s, int k);

typedef struct {
    sel_scheme scheme;
    double alpha, beta, gamma;
} sel_params;

typedef struct {
    size_t n_scored;      /* examples with ok[i] != 0 */
    size_t n_positive;    /* examples with p > 0 */
    size_t n_clipped;     /* examples whose raw weight was < 0 (set to 0) */
    double z[3];          /* code scheme: Z1, Z2, Z3 as used (after epsilon) */
    double term_mass[3];  /* share of the raw weight from each term (sums to 1) */
    double total;         /* sum of clipped raw weights (before normalising) */
    double mean_hw, mean_hs, mean_dh; /* over the scored examples */
} sel_info;

/* Fill p[0..n) with normalised weights (sum 1 over scored examples).
 * Returns 0, -1 when no example has a positive weight, or -2 when the
 * entropies are too large to sum as doubles (p all 0 then). info may be
 * NULL. */
int sel_weights(const sel_params *prm, size_t n, const double *hw, const double *hs,
                const unsigned char *ok, double *p, sel_info *info);

/* The three raw terms of one example (before clipping and normalising);
 * z is info->z for the code scheme (ignored by the paper scheme). */
void sel_terms(const sel_params *prm, const double z[3], double hw, double hs, double t[3]);

/* Draws with replacement: cumulative sums + binary search, so a draw costs
 * one uniform and O(log n); an example with p = 0 is never drawn. */
typedef struct {
    double *cum;   /* cum[i] = p[0] + ... + p[i] */
    size_t n;
    size_t last;   /* last index with p > 0 (guards the rounding at the top) */
} sel_sampler;
/* Returns 0, or -1 when no p is positive. */
int sel_sampler_init(sel_sampler *s, const double *p, size_t n);
size_t sel_sampler_draw(const sel_sampler *s, wdl_rng *r);
void sel_sampler_free(sel_sampler *s);
/* m draws from p seeded by seed into out[0..m); -1 when no p is positive. */
int sel_draw(const double *p, size_t n, size_t m, uint64_t seed, size_t *out);

/* Difficulty buckets 0..k-1 by quantiles of h over the ok examples:
 * bucket = floor(k * rank / n_ok), rank = how many ok values are strictly
 * smaller (ties share a bucket). 0 = lowest value (easiest). Examples with
 * ok[i] == 0 get -1. ok may be NULL (all ok). */
void sel_buckets(size_t n, const double *h, const unsigned char *ok, int k, int *bucket);
#endif
