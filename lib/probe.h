/* probe.h: what the logits say about saturation (METHOD.md). Two users:
 *  - the training log's probe on a fixed batch (probe_run), and
 *  - wdl-score --summary over a whole dataset: the saturation figures (mean
 *    p_target, token accuracy, share of tokens with p_target > 0.99) and
 *    the paper's logit table (its Table 7: mean, std, centred and L2 norm of
 *    the logit vector, global max/min, entropy, p_max, target and
 *    non-target logits and their gap).
 * Sums are kept in double, in position order, so results do not depend on
 * the thread count. */
#ifndef WDL_PROBE_H
#define WDL_PROBE_H
#include <stdint.h>
#include <jansson.h>
#include "model.h"

/* Running sums over loss positions; per-position quantities are summed,
 * max/min are global. Start from logit_stats_init. */
typedef struct {
    int64_t positions, correct, p99;  /* argmax == target; p_target > 0.99 */
    double p_target, entropy, p_max;
    double mean, std, cnorm, l2;      /* over the V logits of a position */
    double target, nontarget, gap;    /* z_y, mean_{v != y} z_v, z_y minus that */
    double nontarget_grad_norm;       /* ||p_{v != y}||_2: CE's gradient on non-targets */
    double max, min;                  /* over every logit seen */
} logit_stats;

void logit_stats_init(logit_stats *s);
/* Add m positions: z is [m, V] logits (row i), y[i] the target of row i. */
void logit_stats_add(logit_stats *s, const float *z, const int32_t *y, int64_t m, int64_t V);
/* Add the loss positions (targets >= 0) of a batch whose forward pass has
 * already run (m->a.normf holds the final hidden states). */
void logit_stats_after_forward(logit_stats *s, wdl_model *m, const int32_t *targets, int64_t N);
/* s += t: sums added, max/min kept (wdl-score folds windows in order). */
void logit_stats_merge(logit_stats *s, const logit_stats *t);
/* The sums themselves as JSON (reals read back to the same doubles), and
 * back: a shard's partial summary. 0 when j is not such an object. */
json_t *logit_stats_raw_json(const logit_stats *s);
int logit_stats_from_raw(logit_stats *s, const json_t *j);
/* The means as a JSON object (positions, p_target, token_accuracy,
 * frac_p_target_gt_99, nontarget_mass, and the logit table). */
json_t *logit_stats_json(const logit_stats *s);

/* The training log's probe: a few of the means above on a fixed batch. */
typedef struct {
    double target_logit;       /* mean z_y */
    double nontarget_logit;    /* mean over positions of mean_{v != y} z_v */
    double margin;             /* mean of z_y - mean_{v != y} z_v */
    double nontarget_mass;     /* mean of 1 - p_y */
    double nontarget_grad_norm;/* mean of ||p_{v != y}||_2 */
    int64_t positions;
} probe_stats;

/* Forward m on the batch and average the statistics over loss positions. */
void probe_run(wdl_model *m, const int32_t *ids, const int32_t *targets, int64_t B, int64_t T,
               probe_stats *out);
#endif
