/* stats.h: the paired comparison of two arms that wdl-report's verdict
 * rests on. Both arms answered the same test problems; each (seed, problem)
 * gives a pair of 0/1 outcomes.
 *  - McNemar's exact test on the discordant pairs (per seed, and pooled);
 *  - a bootstrap over seeds and problems for the mean paired difference:
 *    each replicate draws S seeds with replacement and N problems with
 *    replacement (one draw shared by all seeds when they answered the same
 *    problems, a crossed design; one draw per seed otherwise, nested);
 *  - the 95% percentile interval, a two-sided bootstrap p-value and the
 *    minimum detectable effect at 80% power for the design that was run. */
#ifndef WDL_STATS_H
#define WDL_STATS_H
#include <stdint.h>

/* Two-sided exact McNemar p-value: b pairs where only the arm is right,
 * c where only the control is: 2 * P(X <= min(b,c)), X ~ Bin(b+c, 1/2),
 * capped at 1 (1 when b + c = 0). */
double stats_mcnemar_exact(int64_t b, int64_t c);

/* One seed's outcomes: arm[i], ctl[i] in {0, 1} for problem i < n. */
typedef struct { const uint8_t *arm, *ctl; int64_t n; } stats_seed;

typedef struct {
    double diff;            /* mean over seeds of (acc_arm - acc_ctl), points */
    double ci_lo, ci_hi;    /* 95% bootstrap percentile interval, points */
    double se;              /* bootstrap standard deviation of diff, points */
    double p;               /* two-sided bootstrap p: 2 * min(P*(d <= 0), P*(d >= 0)) */
    double mde;             /* (z_.975 + z_.80) * se: smallest |diff| detected 80% of the time */
    int64_t b, c;           /* pooled discordant counts (arm only right / control only right) */
    double p_mcnemar;       /* exact McNemar on the pooled counts */
    int crossed;            /* 1: problems shared by all seeds */
} stats_paired;

/* Compare over S seeds with `reps` bootstrap replicates drawn from a
 * generator seeded with seed (same inputs => same result). crossed: the
 * seeds answered the same problems in the same order (all n equal). */
void stats_paired_compare(const stats_seed *s, int S, int crossed, int64_t reps, uint64_t seed,
                          stats_paired *out);

/* (z_{1-alpha/2} + z_{power}) for alpha = 0.05, power = 0.8. */
#define STATS_MDE_FACTOR 2.8015852
#endif
