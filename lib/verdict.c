/* verdict.c: see verdict.h. */
#include "verdict.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"

#define VD_REPS 10000        /* bootstrap replicates */
#define VD_SEED 20260214ULL  /* fixed: same runs => same report */

static int same_keys(const rpt_preds *a, const rpt_preds *b) {
    return a->n == b->n && !memcmp(a->key, b->key, sizeof(uint64_t) * (size_t)a->n);
}

static void compare(const rpt_run *runs, int nrun, const char *arm, const char *control, vd_cmp *out,
                    rpt_notes *notes) {
    memset(out, 0, sizeof *out);
    out->arm = xstrdup(arm);
    out->control = xstrdup(control);
    stats_seed *s = xcalloc((size_t)nrun, sizeof(stats_seed));
    const rpt_preds *first = NULL;
    int crossed = 1;
    out->nmin = INT64_MAX;
    out->nmax = 0;
    for (int r = 0; r < nrun; r++) {
        const rpt_preds *a = rpt_find_preds(&runs[r], arm), *b = rpt_find_preds(&runs[r], control);
        if (!a || !b) continue;
        if (!same_keys(a, b)) {
            rpt_note(notes, "%s: preds/%s and preds/%s hold different problems: not compared", runs[r].dir, arm, control);
            continue;
        }
        if (!a->n) continue;
        if (!first) first = b;
        else if (!same_keys(first, b)) crossed = 0;
        s[out->seeds++] = (stats_seed){a->correct, b->correct, a->n};
        if (a->n < out->nmin) out->nmin = a->n;
        if (a->n > out->nmax) out->nmax = a->n;
    }
    if (out->seeds) {
        stats_paired_compare(s, out->seeds, crossed, VD_REPS, VD_SEED, &out->st);
        out->seed_diff = xmalloc(sizeof(double) * (size_t)out->seeds);
        out->seed_p = xmalloc(sizeof(double) * (size_t)out->seeds);
        for (int k = 0; k < out->seeds; k++) {
            int64_t b = 0, c = 0, sum = 0;
            for (int64_t i = 0; i < s[k].n; i++) {
                b += s[k].arm[i] && !s[k].ctl[i];
                c += s[k].ctl[i] && !s[k].arm[i];
                sum += (s[k].arm[i] != 0) - (s[k].ctl[i] != 0);
            }
            out->seed_diff[k] = 100.0 * (double)sum / (double)s[k].n;
            out->seed_p[k] = stats_mcnemar_exact(b, c);
        }
    }
    free(s);
}

static int has_preds(const rpt_run *runs, int nrun, const char *arm) {
    for (int r = 0; r < nrun; r++)
        if (rpt_find_preds(&runs[r], arm)) return 1;
    return 0;
}

static void push(vd_cmps *out, const rpt_run *runs, int nrun, const char *arm, const char *control,
                 rpt_notes *notes) {
    vd_cmp c;
    compare(runs, nrun, arm, control, &c, notes);
    if (!c.seeds) { free(c.arm); free(c.control); return; }
    out->v = xrealloc(out->v, (out->n + 1) * sizeof(vd_cmp));
    out->v[out->n++] = c;
}

void vd_compare_all(const rpt_run *runs, int nrun, const char *control, vd_cmps *out, rpt_notes *notes) {
    memset(out, 0, sizeof *out);
    if (!has_preds(runs, nrun, control)) return;
    char **arms = NULL;
    size_t na = 0;
    for (int r = 0; r < nrun; r++)
        for (size_t i = 0; i < runs[r].npreds; i++) {
            const char *a = runs[r].preds[i].arm;
            int seen = !strcmp(a, control);
            for (size_t k = 0; k < na && !seen; k++) seen = !strcmp(arms[k], a);
            if (seen) continue;
            arms = xrealloc(arms, (na + 1) * sizeof(char *));
            arms[na++] = xstrdup(a);
        }
    if (na) qsort(arms, na, sizeof(char *), rpt_arm_cmp);
    /* wmss first: the headline */
    for (size_t k = 0; k < na; k++)
        if (!strcmp(arms[k], "wmss")) push(out, runs, nrun, arms[k], control, notes);
    for (size_t k = 0; k < na; k++)
        if (strcmp(arms[k], "wmss") && strcmp(arms[k], "m0") && strcmp(arms[k], "m1"))
            push(out, runs, nrun, arms[k], control, notes);
    if (has_preds(runs, nrun, "m1") && strcmp(control, "m1")) push(out, runs, nrun, control, "m1", notes);
    /* the headline against the paper's other baselines (wmss.mk's ARMS_BASE) */
    static const char *const baselines[] = {"neftune", NULL};
    for (int b = 0; baselines[b] && has_preds(runs, nrun, "wmss"); b++)
        if (strcmp(control, baselines[b]) && has_preds(runs, nrun, baselines[b]))
            push(out, runs, nrun, "wmss", baselines[b], notes);
    for (size_t k = 0; k < na; k++) free(arms[k]);
    free(arms);
}

void vd_free(vd_cmps *c) {
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].arm); free(c->v[i].control); free(c->v[i].seed_diff); free(c->v[i].seed_p);
    }
    free(c->v);
    memset(c, 0, sizeof *c);
}

static void fmt_p(char *buf, size_t len, double p) {
    if (p < 1e-4) snprintf(buf, len, "< 0.0001");
    else snprintf(buf, len, "%.4g", p);
}

static void fmt_n(char *buf, size_t len, const vd_cmp *c) {
    if (c->nmin == c->nmax) snprintf(buf, len, "%d seed%s x %lld problems", c->seeds, c->seeds == 1 ? "" : "s",
                                     (long long)c->nmax);
    else snprintf(buf, len, "%d seeds x %lld-%lld problems", c->seeds, (long long)c->nmin, (long long)c->nmax);
}

void vd_md_verdict(FILE *f, const vd_cmps *c, const char *control) {
    const vd_cmp *h = NULL;
    for (size_t i = 0; i < c->n && !h; i++)
        if (!strcmp(c->v[i].arm, "wmss") && !strcmp(c->v[i].control, control)) h = &c->v[i];
    if (!h) {
        fprintf(f, "**Verdict**: none: no run holds predictions of both `wmss` and `%s` "
                   "(preds/<arm>.jsonl.zst; `make phase3` builds both).\n\n", control);
        return;
    }
    char p[32], n[96];
    fmt_p(p, sizeof p, h->st.p);
    fmt_n(n, sizeof n, h);
    fprintf(f, "**Verdict**: `wmss − %s = %+.1f points, 95%% CI [%.1f, %.1f], p = %s, %s`\n\n", control, h->st.diff,
            h->st.ci_lo, h->st.ci_hi, p, n);
    if (h->st.ci_lo > 0)
        fprintf(f, "WMSS beats the equal-budget control `%s`: the interval lies above 0.\n\n", control);
    else if (h->st.ci_hi < 0)
        fprintf(f, "WMSS is worse than the equal-budget control `%s`: the interval lies below 0.\n\n", control);
    else
        fprintf(f, "No difference shown between WMSS and the equal-budget control `%s`: the interval holds 0. "
                   "This design detects a true difference of %.1f points with 80%% power.\n\n", control, h->st.mde);
    /* and against the paper's other baselines, where the runs have them */
    for (size_t i = 0; i < c->n; i++) {
        const vd_cmp *b = &c->v[i];
        if (b == h || strcmp(b->arm, "wmss") || !strcmp(b->control, "m1")) continue;
        fmt_p(p, sizeof p, b->st.p);
        fmt_n(n, sizeof n, b);
        fprintf(f, "Against `%s`: `wmss − %s = %+.1f points, 95%% CI [%.1f, %.1f], p = %s, %s`: %s.\n\n", b->control,
                b->control, b->st.diff, b->st.ci_lo, b->st.ci_hi, p, n,
                b->st.ci_lo > 0 ? "WMSS better" : b->st.ci_hi < 0 ? "WMSS worse" : "no difference shown");
    }
}

/* mean over runs of a number in a summary (dotted path "logits.mean") */
static int mean_of(const rpt_summary *(*get)(const rpt_run *, size_t *), const rpt_run *runs, int nrun,
                   const char *arm, const char *path, double *mean, double *sd) {
    double v[256];
    size_t k = 0;
    for (int r = 0; r < nrun && k < 256; r++) {
        size_t n;
        const rpt_summary *s = get(&runs[r], &n);
        json_t *j = rpt_find_summary(s, n, arm);
        char buf[64];
        snprintf(buf, sizeof buf, "%s", path);
        char *dot = strchr(buf, '.');
        if (dot) { *dot = 0; j = json_object_get(j, buf); j = json_object_get(j, dot + 1); }
        else j = json_object_get(j, buf);
        if (j && json_is_number(j)) v[k++] = json_number_value(j);
    }
    if (!k) return 0;
    rpt_stat st = rpt_stat_of(v, k);
    *mean = st.mean;
    if (sd) *sd = st.sd;
    return (int)k;
}
static const rpt_summary *get_sat(const rpt_run *r, size_t *n) { *n = r->nsat; return r->sat; }
static const rpt_summary *get_lgt(const rpt_run *r, size_t *n) { *n = r->nlgt; return r->lgt; }
static const rpt_summary *get_curve_sat(const rpt_run *r, size_t *n) {
    *n = r->curve ? r->curve->nsat : 0;
    return r->curve ? r->curve->sat : NULL;
}

static const char *const sat_keys[4] = {"p_target", "token_accuracy", "frac_p_target_gt_99", "nontarget_mass"};
static const char *const sat_labels[4] = {"mean p_target", "token accuracy", "p_target > 0.99", "non-target mass"};

/* the paper's Table 7 (weak init / strong pre / strong post, Qwen3-4B) and
 * its before/after figures for target, non-target and gap */
static const struct { const char *key, *label; double weak, pre, post; } logit_rows[] = {
    {"mean", "mean logit", 3.65, 2.87, 0.97},     {"std", "std", 3.06, 3.18, 3.16},
    {"centred_norm", "centred norm", 1191, 1240, 1230}, {"max", "max logit", 43.25, 48.75, 60.50},
    {"min", "min logit", -24.00, -26.63, -35.75}, {"l2_norm", "L2 norm", 1979, 1866, 1689},
    {"entropy", "entropy", 0.52, 0.44, 0.48},     {"p_max", "p_max", 0.83, 0.85, 0.83},
    {"target", "target logit", NAN, 35.88, 36.10}, {"nontarget", "non-target logit", NAN, 2.09, 0.90},
    {"gap", "target − non-target", NAN, 33.79, 35.20}};
#define N_LOGIT_ROWS (sizeof logit_rows / sizeof logit_rows[0])

static double acc_mean(const rpt_run *runs, int nrun, const char *arm, double *sd, int *k) {
    double v[256];
    size_t n = 0;
    for (int r = 0; r < nrun && n < 256; r++) {
        const rpt_eval *e = rpt_find_eval(&runs[r], arm);
        if (e) v[n++] = 100 * e->acc;
    }
    rpt_stat s = rpt_stat_of(v, n);
    *sd = s.sd;
    *k = (int)n;
    return s.mean;
}

static void md_regime(FILE *f, const rpt_run *runs, int nrun, const vd_cmps *c) {
    double pt, ta, acc, accsd;
    int ka;
    fprintf(f, "## Regime\n\nThe method's premise is a saturated M1. Checks on the means over seeds:\n\n");
    int ks = mean_of(get_sat, runs, nrun, "m1", "p_target", &pt, NULL) &&
             mean_of(get_sat, runs, nrun, "m1", "token_accuracy", &ta, NULL);
    if (ks) {
        fprintf(f, "- M1 mean p_target on D = %.3f (want >= 0.90): %s\n", pt, pt >= 0.90 ? "yes" : "NO");
        fprintf(f, "- M1 token accuracy on D = %.3f (want >= 0.97): %s\n", ta, ta >= 0.97 ? "yes" : "NO");
    } else fprintf(f, "- M1 saturation: not measured (saturation/m1.json missing)\n");
    acc = acc_mean(runs, nrun, "m1", &accsd, &ka);
    if (ka) fprintf(f, "- M1 test accuracy = %.1f%% (want 30-85%%): %s\n", acc, acc >= 30 && acc <= 85 ? "yes" : "NO");
    for (size_t i = 0; i < c->n; i++) {
        const vd_cmp *x = &c->v[i];
        if (strcmp(x->control, "m1")) continue;
        fprintf(f, "- SFT plateau: %s − m1 = %+.1f points, 95%% CI [%.1f, %.1f] (want a change within the seed "
                   "spread)\n", x->arm, x->st.diff, x->st.ci_lo, x->st.ci_hi);
    }
    fputc('\n', f);
}

static void md_saturation(FILE *f, const rpt_run *runs, int nrun) {
    static const char *const order[] = {"m0", "m1", "sft2", "wmss", NULL};
    int any = 0;
    double m, s;
    for (int i = 0; order[i]; i++) any |= mean_of(get_sat, runs, nrun, order[i], "p_target", &m, &s);
    if (!any) return;
    fprintf(f, "## Saturation on the training set D\n\nTeacher forcing over every completion token of D "
               "(`wdl-score --summary`); mean ± sd over seeds.\n\n| model |");
    for (int k = 0; k < 4; k++) fprintf(f, " %s |", sat_labels[k]);
    fprintf(f, "\n|---|---:|---:|---:|---:|\n");
    for (int i = 0; order[i]; i++) {
        if (!mean_of(get_sat, runs, nrun, order[i], "p_target", &m, &s)) continue;
        fprintf(f, "| %s |", order[i]);
        for (int k = 0; k < 4; k++) {
            int n = mean_of(get_sat, runs, nrun, order[i], sat_keys[k], &m, &s);
            if (!n) fprintf(f, " — |");
            else if (n == 1) fprintf(f, " %.4f |", m);
            else fprintf(f, " %.4f ± %.4f |", m, s);
        }
        fputc('\n', f);
    }
    fputc('\n', f);
}

static void md_logits(FILE *f, const rpt_run *runs, int nrun) {
    static const char *const cols[] = {"m0", "m1", "wmss", "sft2"};
    double m, s;
    int have[4], any = 0;
    for (int i = 0; i < 4; i++) any |= have[i] = mean_of(get_lgt, runs, nrun, cols[i], "logits.mean", &m, &s) > 0;
    if (!any) return;
    fprintf(f, "## Logit statistics (the paper's Table 7)\n\nThe strong model's logits at the completion tokens "
               "of the first 200 training examples, mean over positions (max/min: over all logits), mean over "
               "seeds. Columns: weak init (m0), strong before WD-JT (m1), after (wmss), and the SFT control (sft2). "
               "The paper's Qwen3-4B values (weak / pre → post) show the direction it reports.\n\n"
               "| statistic | m0 | m1 | wmss | sft2 | wmss vs m1 | paper: weak / pre → post |\n"
               "|---|---:|---:|---:|---:|---:|---|\n");
    for (size_t r = 0; r < N_LOGIT_ROWS; r++) {
        double v[4];
        int ok[4];
        fprintf(f, "| %s |", logit_rows[r].label);
        char path[64];
        snprintf(path, sizeof path, "logits.%s", logit_rows[r].key);
        for (int i = 0; i < 4; i++) {
            ok[i] = have[i] && mean_of(get_lgt, runs, nrun, cols[i], path, &v[i], NULL);
            if (ok[i]) fprintf(f, " %.4g |", v[i]);
            else fprintf(f, " — |");
        }
        if (ok[1] && ok[2] && v[1] != 0) fprintf(f, " %+.1f%% |", 100 * (v[2] - v[1]) / fabs(v[1]));
        else fprintf(f, " — |");
        double pre = logit_rows[r].pre, post = logit_rows[r].post;
        char w[32] = "—";
        if (!isnan(logit_rows[r].weak)) snprintf(w, sizeof w, "%.4g", logit_rows[r].weak);
        fprintf(f, " %s / %.4g → %.4g (%+.1f%%) |\n", w, pre, post, 100 * (post - pre) / fabs(pre));
    }
    fputc('\n', f);
}

/* epochs present in some run's curve, ascending ("eK" arms) */
static int curve_epochs(const rpt_run *runs, int nrun, int *ep, int max) {
    int n = 0;
    for (int r = 0; r < nrun; r++) {
        const rpt_run *c = runs[r].curve;
        for (size_t i = 0; c && i < c->neval; i++) {
            int k;
            if (sscanf(c->eval[i].arm, "e%d", &k) != 1) continue;
            int seen = 0;
            for (int j = 0; j < n; j++) seen |= ep[j] == k;
            if (!seen && n < max) ep[n++] = k;
        }
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && ep[j - 1] > ep[j]; j--) { int t = ep[j]; ep[j] = ep[j - 1]; ep[j - 1] = t; }
    return n;
}

static int curve_point(const rpt_run *runs, int nrun, int e, double *acc, double *pt, double *ta) {
    char arm[32];
    snprintf(arm, sizeof arm, "e%d", e);
    double a[256];
    size_t k = 0;
    for (int r = 0; r < nrun && k < 256; r++) {
        const rpt_eval *ev = runs[r].curve ? rpt_find_eval(runs[r].curve, arm) : NULL;
        if (ev) a[k++] = 100 * ev->acc;
    }
    *acc = k ? rpt_stat_of(a, k).mean : NAN;
    if (!mean_of(get_curve_sat, runs, nrun, arm, "p_target", pt, NULL)) *pt = NAN;
    if (!mean_of(get_curve_sat, runs, nrun, arm, "token_accuracy", ta, NULL)) *ta = NAN;
    return (int)k;
}

static void md_curve(FILE *f, const rpt_run *runs, int nrun) {
    int ep[256], n = curve_epochs(runs, nrun, ep, 256);
    if (!n) return;
    fprintf(f, "## Saturation curve of M1\n\nM1's SFT run after each epoch (one schedule over all epochs); "
               "test accuracy and teacher-forced figures on D, mean over seeds.\n\n"
               "| epoch | accuracy %% | mean p_target | token accuracy |\n|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        double acc, pt, ta;
        curve_point(runs, nrun, ep[i], &acc, &pt, &ta);
        fprintf(f, "| %d | %.1f | %.4f | %.4f |\n", ep[i], acc, pt, ta);
    }
    fputc('\n', f);
}

void vd_md_tables(FILE *f, const rpt_run *runs, int nrun, const vd_cmps *c) {
    if (c->n) {
        fprintf(f, "## Paired comparisons\n\nEach arm against its control on the same test problems. Δ = mean "
                   "over seeds of the per-seed accuracy difference, in points. CI: 95%% percentile interval of a "
                   "bootstrap (%d replicates) that resamples seeds and problems; p: two-sided bootstrap p-value; "
                   "McNemar: exact test on the discordant problems pooled over seeds (b = only the arm right, "
                   "c = only the control); MDE: the difference this design detects with 80%% power at α = 0.05 "
                   "(2.80 × the bootstrap SE).\n\n"
                   "| arm | control | Δ points | 95%% CI | p | McNemar p (b/c) | MDE | per-seed Δ | design |\n"
                   "|---|---|---:|---|---:|---:|---:|---|---|\n", VD_REPS);
        for (size_t i = 0; i < c->n; i++) {
            const vd_cmp *x = &c->v[i];
            char p[32], pm[32], n[96];
            fmt_p(p, sizeof p, x->st.p);
            fmt_p(pm, sizeof pm, x->st.p_mcnemar);
            fmt_n(n, sizeof n, x);
            fprintf(f, "| %s | %s | %+.2f | [%.2f, %.2f] | %s | %s (%lld/%lld) | %.2f | ", x->arm, x->control,
                    x->st.diff, x->st.ci_lo, x->st.ci_hi, p, pm, (long long)x->st.b, (long long)x->st.c, x->st.mde);
            for (int k = 0; k < x->seeds; k++) fprintf(f, "%s%+.1f", k ? ", " : "", x->seed_diff[k]);
            fprintf(f, " | %s, %s |\n", n, x->st.crossed ? "same problems in every seed" : "problems differ by seed");
        }
        fputc('\n', f);
    }
    md_regime(f, runs, nrun, c);
    md_saturation(f, runs, nrun);
    md_curve(f, runs, nrun);
    md_logits(f, runs, nrun);
}

static json_t *summary_means(const rpt_summary *(*get)(const rpt_run *, size_t *), const rpt_run *runs, int nrun,
                             const char *arm, const char *const *keys, size_t nk, const char *prefix) {
    json_t *o = json_object();
    for (size_t k = 0; k < nk; k++) {
        char path[64];
        double m;
        snprintf(path, sizeof path, "%s%s", prefix, keys[k]);
        if (mean_of(get, runs, nrun, arm, path, &m, NULL)) json_object_set_new(o, keys[k], json_real(m));
    }
    if (!json_object_size(o)) { json_decref(o); return NULL; }
    return o;
}

json_t *vd_json(const rpt_run *runs, int nrun, const vd_cmps *c, char *const *arms, size_t narm) {
    json_t *cmp = json_array();
    for (size_t i = 0; i < c->n; i++) {
        const vd_cmp *x = &c->v[i];
        json_t *ps = json_array();
        for (int k = 0; k < x->seeds; k++)
            json_array_append_new(ps, json_pack("{s:f,s:f}", "diff_points", x->seed_diff[k], "p_mcnemar", x->seed_p[k]));
        json_array_append_new(cmp, json_pack("{s:s,s:s,s:f,s:[f,f],s:f,s:i,s:I,s:f,s:f,s:f,s:[I,I],s:b,s:o}",
            "arm", x->arm, "control", x->control, "diff_points", x->st.diff, "ci95", x->st.ci_lo, x->st.ci_hi,
            "p", x->st.p, "seeds", x->seeds, "problems", (json_int_t)x->nmax, "se_points", x->st.se,
            "mde_points", x->st.mde, "p_mcnemar", x->st.p_mcnemar, "discordant", (json_int_t)x->st.b,
            (json_int_t)x->st.c, "same_problems", x->st.crossed, "per_seed", ps));
    }
    json_t *acc = json_object(), *sat = json_object(), *lgt = json_object();
    const char *lkeys[N_LOGIT_ROWS];
    for (size_t r = 0; r < N_LOGIT_ROWS; r++) lkeys[r] = logit_rows[r].key;
    for (size_t a = 0; a < narm; a++) {
        double sd;
        int k;
        double m = acc_mean(runs, nrun, arms[a], &sd, &k);
        if (k) json_object_set_new(acc, arms[a], json_pack("{s:f,s:f,s:i}", "mean", m, "sd", sd, "seeds", k));
        json_t *s = summary_means(get_sat, runs, nrun, arms[a], sat_keys, 4, "");
        if (s) json_object_set_new(sat, arms[a], s);
        json_t *l = summary_means(get_lgt, runs, nrun, arms[a], lkeys, N_LOGIT_ROWS, "logits.");
        if (l) json_object_set_new(lgt, arms[a], l);
    }
    json_t *curve = json_array();
    int ep[256], n = curve_epochs(runs, nrun, ep, 256);
    for (int i = 0; i < n; i++) {
        double a, pt, ta;
        curve_point(runs, nrun, ep[i], &a, &pt, &ta);
        json_t *o = json_pack("{s:i}", "epoch", ep[i]);
        if (!isnan(a)) json_object_set_new(o, "accuracy", json_real(a));
        if (!isnan(pt)) json_object_set_new(o, "p_target", json_real(pt));
        if (!isnan(ta)) json_object_set_new(o, "token_accuracy", json_real(ta));
        json_array_append_new(curve, o);
    }
    return json_pack("{s:o,s:o,s:o,s:o,s:o}", "comparisons", cmp, "accuracy", acc, "saturation", sat, "logits", lgt,
                     "curve", curve);
}
