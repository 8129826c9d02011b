/* verdict.h: the experiment's answer, from run directories that are seeds
 * of one setup (report.h loads them): paired comparisons of each arm with
 * the control on the same test problems (stats.h), the saturation figures
 * that say which regime a run was in, the paper's logit table, and the
 * saturation curve of M1. wdl-report renders these as Markdown and JSON. */
#ifndef WDL_VERDICT_H
#define WDL_VERDICT_H
#include <stdio.h>
#include <jansson.h>
#include "report.h"
#include "stats.h"

typedef struct {
    char *arm, *control;
    int seeds;                  /* runs holding both arms' predictions */
    int64_t nmin, nmax;         /* problems per seed */
    stats_paired st;
    double *seed_diff, *seed_p; /* per seed: points, exact McNemar p */
} vd_cmp;

typedef struct {
    vd_cmp *v;
    size_t n;
} vd_cmps;

/* Every arm with predictions against `control`, control against m1
 * (does SFT still move?), and wmss against the paper's other baselines
 * present (neftune). The first row is wmss when present. */
void vd_compare_all(const rpt_run *runs, int nrun, const char *control, vd_cmps *out, rpt_notes *notes);
void vd_free(vd_cmps *c);

/* Markdown: the verdict line(s) that open the report. */
void vd_md_verdict(FILE *f, const vd_cmps *c, const char *control);
/* Markdown: comparisons, regime and saturation, logit table, curve. */
void vd_md_tables(FILE *f, const rpt_run *runs, int nrun, const vd_cmps *c);
/* JSON: {"comparisons": [...], "accuracy": {...}, "saturation": {...},
 * "logits": {...}, "curve": [...]} */
json_t *vd_json(const rpt_run *runs, int nrun, const vd_cmps *c, char *const *arms, size_t narm);
#endif
