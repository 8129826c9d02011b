/* optim.h: AdamW (decoupled weight decay on matrices only), global
 * gradient-norm clipping and the learning-rate schedule. */
#ifndef WDL_OPTIM_H
#define WDL_OPTIM_H
#include <stdint.h>
#include "model.h"

typedef struct {
    double lr, beta1, beta2, eps, weight_decay, clip;
} adamw_cfg;

typedef enum { SCHED_COSINE, SCHED_LINEAR, SCHED_CONSTANT } lr_schedule;

/* L2 norm of all gradients, summed in fixed blocks so that the result does
 * not depend on the thread count. */
double grad_norm(const wdl_model *m);
/* Multiply every gradient by s. */
void grad_scale(wdl_model *m, float s);
/* Clip to c->clip (if > 0) the way torch.nn.utils.clip_grad_norm_ does;
 * returns the norm before clipping. */
double grad_clip(wdl_model *m, double clip);
/* Clip the gradients of n models as one parameter set (the reference code's
 * fused module under one optimizer): the norm is that of all n gradients
 * together, and one coefficient scales them all. norms (may be NULL)
 * receives each model's own norm; returns the joint norm before clipping. */
double grad_clip_joint(wdl_model *const *ms, int n, double clip, double *norms);
/* One AdamW update at step t (1-based) with learning rate lr, exactly as
 * torch.optim.AdamW: p *= 1 - lr*wd (matrices only), then the bias-corrected
 * Adam step. */
void adamw_step(wdl_model *m, const adamw_cfg *c, double lr, int64_t t);
/* Learning rate at step (0-based) of total: linear warm-up over `warmup`
 * steps from lr/warmup to lr, then decay to lr*min_frac (cosine or linear)
 * or constant. */
double lr_at(lr_schedule s, double lr, int64_t step, int64_t total, int64_t warmup, double min_frac);
/* The schedule named cosine, linear or constant; -1 for another name. */
int lr_schedule_from_name(const char *name);
#endif
