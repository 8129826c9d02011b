/* probe.h: saturation diagnostics on a fixed probe batch (METHOD.md): how
 * the target logit stands against the background of non-target logits, and
 * how much gradient the non-target logits still receive. */
#ifndef WDL_PROBE_H
#define WDL_PROBE_H
#include <stdint.h>
#include "model.h"

typedef struct {
    double target_logit;       /* mean z_y */
    double nontarget_logit;    /* mean over positions of mean_{v != y} z_v */
    double margin;             /* mean of z_y - mean_{v != y} z_v */
    double nontarget_mass;     /* mean of 1 - p_y */
    double nontarget_grad_norm;/* mean of ||p_{v != y}||_2: CE's gradient on non-target logits */
    int64_t positions;
} probe_stats;

/* Forward m on the batch and average the statistics over loss positions. */
void probe_run(wdl_model *m, const int32_t *ids, const int32_t *targets, int64_t B, int64_t T,
               probe_stats *out);
#endif
