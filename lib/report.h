/* report.h: loading pipeline run directories for wdl-report, and the small
 * statistics over seeds (mean, sample sd) and over steps it needs.
 *
 * Run directory layout read here:
 *   RUN/eval/<arm>.json           wdl-eval summary {accuracy, n, correct, tasks{...}}
 *   RUN/logs/<arm>.jsonl[.zst]    training log, one object per step
 *   RUN/scored.jsonl[.zst] or RUN/selected.jsonl[.zst]  records with entropies
 * A missing piece is skipped with a note; unreadable JSON dies. */
#ifndef WDL_REPORT_H
#define WDL_REPORT_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define RPT_NDIAG 5
/* log keys of the saturation probe, and short labels for tables/plots */
extern const char *const rpt_diag_keys[RPT_NDIAG];
extern const char *const rpt_diag_labels[RPT_NDIAG];

typedef struct { char *name; double acc; int64_t n; } rpt_task;
typedef struct {
    char *arm;
    double acc;
    int64_t n;          /* -1 when the summary has no "n" */
    rpt_task *task;
    size_t ntask;
} rpt_eval;

enum { RPT_HAS_LOSS = 1, RPT_HAS_TPS = 2, RPT_HAS_ELAPSED = 4, RPT_HAS_DIAG0 = 8 };
typedef struct {
    double step, loss, tps, elapsed, diag[RPT_NDIAG];
    unsigned mask;      /* RPT_HAS_*; diagnostic k present: RPT_HAS_DIAG0 << k */
} rpt_row;
typedef struct { char *arm; rpt_row *row; size_t n; } rpt_log;

/* one arm's per-problem outcomes; key = hash of task + prompt, so that two
 * arms (or two seeds) can be checked to have answered the same problems */
typedef struct { char *arm; int64_t n; uint64_t *key; uint8_t *correct; } rpt_preds;
/* a JSON summary per arm (saturation, logit table) */
typedef struct { char *arm; json_t *j; } rpt_summary;

typedef struct rpt_run rpt_run;
struct rpt_run {
    char *dir;
    rpt_preds *preds; size_t npreds;      /* sorted by arm name */
    rpt_summary *sat; size_t nsat;        /* saturation/, sorted by arm */
    rpt_summary *lgt; size_t nlgt;        /* logits/, sorted by arm */
    rpt_run *curve;                       /* RUN/curve, or NULL */
    rpt_eval *eval; size_t neval;   /* sorted by arm name */
    rpt_log *log; size_t nlog;      /* sorted by arm name */
    double *hw, *hs; int *bucket;   /* entropy points (scatter) */
    size_t npts;
    char *pts_src;                  /* file the points came from, or NULL */
};

typedef struct { char **v; size_t n; } rpt_notes;
void rpt_note(rpt_notes *nt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rpt_notes_free(rpt_notes *nt);

/* Load RUN (dies when it is not a directory or holds unreadable JSON).
 * Entropy fields weak/strong; buckets are read from `bucket` (selected
 * records) or recomputed as H_strong quantiles with k buckets. */
void rpt_load_run(rpt_run *r, const char *dir, const char *weak, const char *strong, int k,
                  rpt_notes *notes);
void rpt_free_run(rpt_run *r);
const rpt_eval *rpt_find_eval(const rpt_run *r, const char *arm);
const rpt_log *rpt_find_log(const rpt_run *r, const char *arm);
const rpt_preds *rpt_find_preds(const rpt_run *r, const char *arm);
/* the summary of arm in v[0..n) (NULL when absent) */
json_t *rpt_find_summary(const rpt_summary *v, size_t n, const char *arm);
/* accuracy of a task in an eval (NULL task = overall); 0 when absent */
int rpt_eval_task(const rpt_eval *e, const char *task, double *acc, int64_t *n);

/* Mean and sample standard deviation (n-1; 0 when k < 2). */
typedef struct { double mean, sd; size_t k; } rpt_stat;
rpt_stat rpt_stat_of(const double *v, size_t k);

/* Arms in a fixed reading order: m0, m1, sft2, sft, wmss, ablations, then
 * the rest by name. A qsort comparator on (const char **). */
int rpt_arm_cmp(const void *a, const void *b);

/* Mean over several logs of the value selected by mask bit `want` (and for
 * diagnostics, index k), per step: fills steps/vals (caller frees), returns
 * the number of distinct steps. */
size_t rpt_series(const rpt_log *const *logs, size_t nlogs, unsigned want, int k,
                  double **steps, double **vals);
#endif
