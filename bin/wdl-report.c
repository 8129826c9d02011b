/* wdl-report: Markdown tables and gnuplot plots of pipeline runs.
 * Several RUN directories are read as seeds of one configuration: every
 * number is a mean over runs with its standard deviation. The output
 * directory is built under a temporary name and renamed into place. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli.h"
#include "common.h"
#include "report.h"
#include "verdict.h"

#define MAX_SCATTER 20000   /* points drawn in the entropy scatter */
#define STR(x) #x
#define XSTR(x) STR(x)
#define MAX_BAR_TASKS 8     /* task columns drawn in the accuracy chart */

static const char *usage =
        "usage: wdl-report [--out DIR] [--title T] [--baseline ARM] [--buckets K]\n"
        "                  [--weak-field A] [--strong-field B] [--no-plots] [--json]\n"
        "                  RUN_DIR...\n"
        "\n"
        "Reads pipeline run directories (RUN/eval/<arm>.json, RUN/logs/<arm>.jsonl,\n"
        "RUN/scored.jsonl.zst or RUN/selected.jsonl.zst); several RUNs are seeds of\n"
        "one setup. Writes DIR/report.md (also printed on stdout) with accuracy per\n"
        "arm and task (%, mean ± sd over runs, n = examples per run, Δ vs the\n"
        "baseline arm, default sft2), training and saturation-probe tables, and\n"
        "plots rendered by gnuplot (PNG and SVG, with their data and plots.gp):\n"
        "accuracy.*, loss.*, diagnostics.*, entropy.* (H_weak vs H_strong of the\n"
        "first run with scores, coloured by bucket: the `bucket` field of selected\n"
        "records, else H_strong quantiles, K default 3; at most " XSTR(MAX_SCATTER) " points).\n"
        "DIR defaults to RUN/report for one run, and to report/ beside the runs\n"
        "(the first RUN's parent, e.g. runs/report) for several; a RUN that is\n"
        "DIR itself is skipped. Missing pieces are noted and skipped; unreadable\n"
        "JSON is an error. Without gnuplot (or with --no-plots) only report.md\n"
        "is written; WDL_GNUPLOT names the gnuplot program. Same inputs => same\n"
        "report.md. It opens with the verdict: arms vs the baseline on the same\n"
        "problems (preds/): paired Δ, bootstrap 95% CI over seeds and problems, p,\n"
        "McNemar, MDE; DIR/report.json holds it as JSON (--json: print that).\n";

typedef struct {
    const char *out, *title, *weak, *strong, *baseline;
    long long buckets;
    int plots, json, quiet, baseline_given;
    const char **runs;
    int nruns;
} opts;

static void parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->title = "WMSS report";
    o->weak = "h_weak";
    o->strong = "h_strong";
    o->baseline = "sft2";
    o->buckets = 3;
    o->plots = 1;
    int no_plots = 0;
    const cli_opt table[] = {
        {"out", 0, CLI_STR, &o->out},   /* the old spelling of -o/--output */
        {"title", 0, CLI_STR, &o->title},
        {"baseline", 0, CLI_STR, &o->baseline},
        {"weak-field", 0, CLI_STR, &o->weak},
        {"strong-field", 0, CLI_STR, &o->strong},
        {"buckets", 0, CLI_INT, &o->buckets},
        {"no-plots", 0, CLI_FLAG, &no_plots},
        {"json", 0, CLI_FLAG, &o->json},
        {0}};
    cli_common cli;
    cli_parse(argc, argv, usage, table, &cli);
    if (cli.output) o->out = cli.output;
    o->plots = !no_plots;
    o->quiet = cli.quiet;
    o->baseline_given = strcmp(o->baseline, "sft2") != 0;
    o->runs = cli.args;
    o->nruns = cli.nargs;
    if (!o->nruns) cli_usage_error("no run directory given (see --help)");
    if (o->buckets < 1 || o->buckets > 1000) cli_usage_error("--buckets: must be 1..1000, got %lld", o->buckets);
}

/* path without trailing slashes; its parent ("." when none) */
static char *trim_slashes(const char *p) {
    char *s = xstrdup(p);
    for (size_t n = strlen(s); n > 1 && s[n - 1] == '/'; n--) s[n - 1] = 0;
    return s;
}
static char *parent_of(const char *p) {
    char *s = trim_slashes(p), *slash = strrchr(s, '/');
    if (!slash) { free(s); return xstrdup("."); }
    if (slash == s) slash[1] = 0;
    else *slash = 0;
    return s;
}

static char *default_out(const opts *o) {
    if (o->nruns == 1) {
        char *r = trim_slashes(o->runs[0]), *p = wdl_path_join(r, "report");
        free(r);
        return p;
    }
    char *par = parent_of(o->runs[0]), *p = wdl_path_join(par, "report");
    free(par);
    return p;
}

/* ---------- what the runs hold, gathered across runs ---------- */

typedef struct {
    const opts *o;
    rpt_run *run;
    int nrun;
    char **arm; size_t narm;     /* union of eval and log arms, reading order */
    char **task; size_t ntask;   /* union of task names, sorted */
    rpt_notes notes;
    int have_png[4];             /* accuracy, loss, diagnostics, entropy rendered */
    const rpt_run *pts_run;      /* run whose entropy points are drawn */
    vd_cmps cmp;                 /* paired comparisons with the baseline */
} ctx;

static void add_unique(char ***v, size_t *n, const char *s) {
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*v)[i], s)) return;
    *v = xrealloc(*v, (*n + 1) * sizeof(char *));
    (*v)[(*n)++] = xstrdup(s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void gather(ctx *c) {
    for (int r = 0; r < c->nrun; r++) {
        const rpt_run *run = &c->run[r];
        for (size_t i = 0; i < run->neval; i++) {
            add_unique(&c->arm, &c->narm, run->eval[i].arm);
            for (size_t t = 0; t < run->eval[i].ntask; t++)
                add_unique(&c->task, &c->ntask, run->eval[i].task[t].name);
        }
        for (size_t i = 0; i < run->nlog; i++) add_unique(&c->arm, &c->narm, run->log[i].arm);
        if (!c->pts_run && run->npts) c->pts_run = run;
    }
    if (c->arm) qsort(c->arm, c->narm, sizeof(char *), rpt_arm_cmp);
    if (c->task) qsort(c->task, c->ntask, sizeof(char *), cmp_str);
}

/* accuracy (%) of arm/task (NULL = overall) over the runs */
typedef struct { rpt_stat s; int64_t nmin, nmax; } acc_cell;
static acc_cell acc_of(const ctx *c, const char *arm, const char *task) {
    double *v = xmalloc((size_t)c->nrun * sizeof(double));
    acc_cell a = {{0, 0, 0}, INT64_MAX, -1};
    size_t k = 0;
    for (int r = 0; r < c->nrun; r++) {
        double acc;
        int64_t n;
        if (!rpt_eval_task(rpt_find_eval(&c->run[r], arm), task, &acc, &n)) continue;
        v[k++] = 100 * acc;
        if (n >= 0 && n < a.nmin) a.nmin = n;
        if (n > a.nmax) a.nmax = n;
    }
    a.s = rpt_stat_of(v, k);
    free(v);
    return a;
}

static void fmt_acc(char *buf, size_t len, acc_cell a) {
    char n[64];
    if (a.nmax < 0) snprintf(n, sizeof n, "n=?");
    else if (a.nmin == a.nmax) snprintf(n, sizeof n, "n=%lld", (long long)a.nmax);
    else snprintf(n, sizeof n, "n=%lld-%lld", (long long)a.nmin, (long long)a.nmax);
    if (a.s.k == 0) snprintf(buf, len, "—");
    else if (a.s.k == 1) snprintf(buf, len, "%.1f (%s)", a.s.mean, n);
    else snprintf(buf, len, "%.1f ± %.1f (%s)", a.s.mean, a.s.sd, n);
}

static int seeds_of(const ctx *c, const char *arm) {
    int k = 0;
    for (int r = 0; r < c->nrun; r++) k += rpt_find_eval(&c->run[r], arm) != NULL;
    return k;
}

/* per-run summaries of one arm's training log */
typedef struct {
    double final_loss, steps, tps, elapsed, first[RPT_NDIAG], last[RPT_NDIAG];
    int has_loss, has_tps, has_elapsed, has_diag[RPT_NDIAG];
} log_sum;

static log_sum summarise(const rpt_log *lg) {
    log_sum s;
    memset(&s, 0, sizeof s);
    size_t nl = 0, nt = 0;
    for (size_t i = 0; i < lg->n; i++) {
        const rpt_row *r = &lg->row[i];
        if (r->step > s.steps) s.steps = r->step;
        if (r->mask & RPT_HAS_LOSS) nl++;
        if (r->mask & RPT_HAS_TPS) { s.tps += r->tps; nt++; }
        if ((r->mask & RPT_HAS_ELAPSED) && r->elapsed > s.elapsed) { s.elapsed = r->elapsed; s.has_elapsed = 1; }
        for (int k = 0; k < RPT_NDIAG; k++) {
            if (!(r->mask & (RPT_HAS_DIAG0 << k))) continue;
            if (!s.has_diag[k]) s.first[k] = r->diag[k];
            s.last[k] = r->diag[k];
            s.has_diag[k] = 1;
        }
    }
    if (nt) { s.tps /= (double)nt; s.has_tps = 1; }
    /* final loss: mean of the last 10 logged losses (one step is noisy) */
    size_t want = nl < 10 ? nl : 10, got = 0;
    for (size_t i = lg->n; i-- > 0 && got < want;)
        if (lg->row[i].mask & RPT_HAS_LOSS) { s.final_loss += lg->row[i].loss; got++; }
    if (got) { s.final_loss /= (double)got; s.has_loss = 1; }
    return s;
}

/* mean over runs of one summary value (selected by off/flag offsets) */
typedef struct { rpt_stat s; double lo, hi; } run_stat;
static run_stat over_runs(const ctx *c, const char *arm, double (*get)(const log_sum *, int, int *), int k) {
    double *v = xmalloc((size_t)c->nrun * sizeof(double));
    size_t n = 0;
    run_stat out = {{0, 0, 0}, INFINITY, -INFINITY};
    for (int r = 0; r < c->nrun; r++) {
        const rpt_log *lg = rpt_find_log(&c->run[r], arm);
        if (!lg) continue;
        log_sum s = summarise(lg);
        int ok = 0;
        double x = get(&s, k, &ok);
        if (!ok) continue;
        v[n++] = x;
        if (x < out.lo) out.lo = x;
        if (x > out.hi) out.hi = x;
    }
    out.s = rpt_stat_of(v, n);
    free(v);
    return out;
}
static double g_loss(const log_sum *s, int k, int *ok) { *ok = s->has_loss; return s->final_loss; }
static double g_steps(const log_sum *s, int k, int *ok) { *ok = 1; return s->steps; }
static double g_tps(const log_sum *s, int k, int *ok) { *ok = s->has_tps; return s->tps; }
static double g_elapsed(const log_sum *s, int k, int *ok) { *ok = s->has_elapsed; return s->elapsed; }
static double g_first(const log_sum *s, int k, int *ok) { *ok = s->has_diag[k]; return s->first[k]; }
static double g_last(const log_sum *s, int k, int *ok) { *ok = s->has_diag[k]; return s->last[k]; }

static int nlogs_of(const ctx *c, const char *arm) {
    int k = 0;
    for (int r = 0; r < c->nrun; r++) k += rpt_find_log(&c->run[r], arm) != NULL;
    return k;
}

/* ---------- Markdown ---------- */

/* a name inside a table cell: a '|' would end the cell */
static void md_name(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

static void md_accuracy(FILE *f, const ctx *c) {
    fprintf(f, "## Accuracy\n\n");
    size_t narm = 0;
    for (size_t a = 0; a < c->narm; a++) narm += seeds_of(c, c->arm[a]) > 0;
    if (!narm) { fprintf(f, "No evaluation summaries (eval/<arm>.json) found.\n\n"); return; }
    int base = seeds_of(c, c->o->baseline) > 0;
    fprintf(f, "Accuracy in %%, mean ± sd over seeds (runs); n = examples per run.");
    if (base) fprintf(f, " Δ = difference of the overall means to `%s`, in points.", c->o->baseline);
    fprintf(f, "\n\n| arm | seeds |");
    for (size_t t = 0; t < c->ntask; t++) { fputc(' ', f); md_name(f, c->task[t]); fprintf(f, " |"); }
    fprintf(f, " overall |%s\n|---|---:|", base ? " Δ |" : "");
    for (size_t t = 0; t <= c->ntask; t++) fprintf(f, "---:|");
    fprintf(f, "%s\n", base ? "---:|" : "");
    acc_cell b = base ? acc_of(c, c->o->baseline, NULL) : (acc_cell){{0, 0, 0}, 0, 0};
    char buf[128];
    for (size_t a = 0; a < c->narm; a++) {
        int k = seeds_of(c, c->arm[a]);
        if (!k) continue;
        fprintf(f, "| ");
        md_name(f, c->arm[a]);
        fprintf(f, " | %d |", k);
        for (size_t t = 0; t < c->ntask; t++) {
            fmt_acc(buf, sizeof buf, acc_of(c, c->arm[a], c->task[t]));
            fprintf(f, " %s |", buf);
        }
        acc_cell all = acc_of(c, c->arm[a], NULL);
        fmt_acc(buf, sizeof buf, all);
        fprintf(f, " %s |", buf);
        if (base) {
            if (!strcmp(c->arm[a], c->o->baseline)) fprintf(f, " — |");
            else fprintf(f, " %+.1f |", all.s.mean - b.s.mean);
        }
        fputc('\n', f);
    }
    fputc('\n', f);
    if (c->have_png[0]) fprintf(f, "![accuracy per arm](accuracy.png)\n\n");
}

static void fmt_stat(char *buf, size_t len, run_stat s, const char *fmt) {
    char a[48], b[48];
    if (!s.s.k) { snprintf(buf, len, "—"); return; }
    snprintf(a, sizeof a, fmt, s.s.mean);
    if (s.s.k < 2) { snprintf(buf, len, "%s", a); return; }
    snprintf(b, sizeof b, fmt, s.s.sd);
    snprintf(buf, len, "%s ± %s", a, b);
}

static void md_training(FILE *f, const ctx *c) {
    fprintf(f, "## Training\n\n");
    int any = 0;
    for (size_t a = 0; a < c->narm; a++) any |= nlogs_of(c, c->arm[a]) > 0;
    if (!any) { fprintf(f, "No training logs (logs/<arm>.jsonl) found.\n\n"); return; }
    fprintf(f, "Final loss = mean of the last 10 logged steps; mean ± sd over runs.\n\n"
               "| arm | logs | steps | final loss | tokens/s | elapsed s |\n|---|---:|---:|---:|---:|---:|\n");
    char l[128], t[128], e[128], st[128];
    for (size_t a = 0; a < c->narm; a++) {
        int k = nlogs_of(c, c->arm[a]);
        if (!k) continue;
        run_stat steps = over_runs(c, c->arm[a], g_steps, 0);
        if (steps.lo == steps.hi) snprintf(st, sizeof st, "%.0f", steps.hi);
        else snprintf(st, sizeof st, "%.0f-%.0f", steps.lo, steps.hi);
        fmt_stat(l, sizeof l, over_runs(c, c->arm[a], g_loss, 0), "%.4f");
        fmt_stat(t, sizeof t, over_runs(c, c->arm[a], g_tps, 0), "%.0f");
        fmt_stat(e, sizeof e, over_runs(c, c->arm[a], g_elapsed, 0), "%.1f");
        fprintf(f, "| ");
        md_name(f, c->arm[a]);
        fprintf(f, " | %d | %s | %s | %s | %s |\n", k, st, l, t, e);
    }
    fputc('\n', f);
    if (c->have_png[1]) fprintf(f, "![training loss](loss.png)\n\n");
}

static int has_diag(const ctx *c, const char *arm) {
    for (int k = 0; k < RPT_NDIAG; k++)
        if (over_runs(c, arm, g_last, k).s.k) return 1;
    return 0;
}

static void md_diagnostics(FILE *f, const ctx *c) {
    fprintf(f, "## Saturation diagnostics\n\n");
    int any = 0;
    for (size_t a = 0; a < c->narm; a++) any |= has_diag(c, c->arm[a]);
    if (!any) { fprintf(f, "No probe diagnostics in the training logs.\n\n"); return; }
    fprintf(f, "Probe batch, first → last logged value (mean over runs).\n\n| arm |");
    for (int k = 0; k < RPT_NDIAG; k++) fprintf(f, " %s |", rpt_diag_labels[k]);
    fprintf(f, "\n|---|");
    for (int k = 0; k < RPT_NDIAG; k++) fprintf(f, "---:|");
    fputc('\n', f);
    for (size_t a = 0; a < c->narm; a++) {
        if (!has_diag(c, c->arm[a])) continue;
        fprintf(f, "| ");
        md_name(f, c->arm[a]);
        fprintf(f, " |");
        for (int k = 0; k < RPT_NDIAG; k++) {
            run_stat s0 = over_runs(c, c->arm[a], g_first, k), s1 = over_runs(c, c->arm[a], g_last, k);
            if (!s1.s.k) fprintf(f, " — |");
            else fprintf(f, " %.4g → %.4g |", s0.s.mean, s1.s.mean);
        }
        fputc('\n', f);
    }
    fputc('\n', f);
    /* the paper's claim: the non-target logit falls, the target one stays */
    const char *b = c->o->baseline;
    if (has_diag(c, b)) {
        int rows = 0;
        for (size_t a = 0; a < c->narm; a++) {
            if (!strcmp(c->arm[a], b) || !has_diag(c, c->arm[a])) continue;
            if (!rows++)
                fprintf(f, "Last value relative to `%s` (%%; (arm - %s) / |%s|):\n\n"
                           "| arm | target logit | non-target logit | margin | non-target mass |\n"
                           "|---|---:|---:|---:|---:|\n", b, b, b);
            fprintf(f, "| ");
            md_name(f, c->arm[a]);
            fprintf(f, " |");
            for (int k = 0; k < 4; k++) {
                run_stat x = over_runs(c, c->arm[a], g_last, k), y = over_runs(c, b, g_last, k);
                if (!x.s.k || !y.s.k || y.s.mean == 0) fprintf(f, " — |");
                else fprintf(f, " %+.1f |", 100 * (x.s.mean - y.s.mean) / fabs(y.s.mean));
            }
            fputc('\n', f);
        }
        if (rows) fputc('\n', f);
    }
    if (c->have_png[2]) fprintf(f, "![saturation diagnostics](diagnostics.png)\n\n");
}

static void md_selection(FILE *f, const ctx *c) {
    fprintf(f, "## Selection (WD-DS)\n\n");
    if (!c->pts_run) { fprintf(f, "No scored or selected records found.\n\n"); return; }
    fprintf(f, "Entropies per record (%s, %s); buckets: H_strong quantiles, 0 = easiest.\n\n"
               "| run | source | records | mean H_weak | mean H_strong | dH < 0 | records per bucket |\n"
               "|---|---|---:|---:|---:|---:|---|\n", c->o->weak, c->o->strong);
    for (int r = 0; r < c->nrun; r++) {
        const rpt_run *run = &c->run[r];
        if (!run->npts) continue;
        double sw = 0, ss = 0;
        size_t neg = 0;
        int kmax = 0;
        for (size_t i = 0; i < run->npts; i++) {
            sw += run->hw[i];
            ss += run->hs[i];
            neg += run->hs[i] < run->hw[i];
            if (run->bucket[i] + 1 > kmax) kmax = run->bucket[i] + 1;
        }
        size_t *cnt = xcalloc((size_t)kmax + 1, sizeof(size_t));
        for (size_t i = 0; i < run->npts; i++) cnt[run->bucket[i]]++;
        const char *src = strrchr(run->pts_src, '/');
        double n = (double)run->npts;
        fprintf(f, "| %s | %s | %zu | %.4g | %.4g | %.1f%% | ", run->dir, src ? src + 1 : run->pts_src,
                run->npts, sw / n, ss / n, 100.0 * (double)neg / n);
        for (int b = 0; b < kmax; b++) fprintf(f, "%s%zu", b ? " / " : "", cnt[b]);
        fprintf(f, " |\n");
        free(cnt);
    }
    fputc('\n', f);
    if (c->have_png[3])
        fprintf(f, "![H_weak vs H_strong](entropy.png)\n\nScatter: %s (%zu records%s).\n\n", c->pts_run->dir,
                c->pts_run->npts, c->pts_run->npts > MAX_SCATTER ? ", every k-th drawn" : "");
}

static void write_md(FILE *f, const ctx *c) {
    fprintf(f, "# %s\n\n%d run%s:", c->o->title, c->nrun, c->nrun == 1 ? "" : "s (seeds)");
    for (int r = 0; r < c->nrun; r++) fprintf(f, "%s `%s`", r ? "," : "", c->run[r].dir);
    fprintf(f, ".\n\n");
    vd_md_verdict(f, &c->cmp, c->o->baseline);
    md_accuracy(f, c);
    vd_md_tables(f, c->run, c->nrun, &c->cmp);
    md_training(f, c);
    md_diagnostics(f, c);
    md_selection(f, c);
    if (c->notes.n) {
        fprintf(f, "## Notes\n\n");
        for (size_t i = 0; i < c->notes.n; i++) fprintf(f, "- %s\n", c->notes.v[i]);
        fputc('\n', f);
    }
    if (c->have_png[0] || c->have_png[1] || c->have_png[2] || c->have_png[3])
        fprintf(f, "Plots: PNG and SVG beside this file; `gnuplot plots.gp` redraws them from the .dat files.\n");
}

/* ---------- gnuplot ---------- */

static FILE *open_in(const char *dir, const char *name) {
    char *p = wdl_path_join(dir, name);
    FILE *f = fopen(p, "w");
    if (!f) die("%s: cannot create: %s", p, strerror(errno));
    free(p);
    return f;
}
static void close_file(FILE *f, const char *name) {
    if (ferror(f) | fclose(f)) die("%s: write error", name);
}

/* a gnuplot single-quoted string: only ' needs escaping (doubled) */
static void gp_str(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}
/* a data-file label: double-quoted, with no " or newline inside */
static void dat_label(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) fputc(*s == '"' || *s == '\n' ? '\'' : *s, f);
    fputc('"', f);
}

/* Each plot writes its data file(s) and returns 0 when it has nothing to
 * draw; body() emits the gnuplot commands (called once per terminal). */
static int data_accuracy(const ctx *c, const char *dir, size_t *ntask) {
    size_t nt = c->ntask < MAX_BAR_TASKS ? c->ntask : MAX_BAR_TASKS, rows = 0;
    FILE *f = open_in(dir, "accuracy.dat");
    fprintf(f, "# arm overall_mean overall_sd");
    for (size_t t = 0; t < nt; t++) fprintf(f, " %s_mean %s_sd", c->task[t], c->task[t]);
    fputc('\n', f);
    for (size_t a = 0; a < c->narm; a++) {
        if (!seeds_of(c, c->arm[a])) continue;
        dat_label(f, c->arm[a]);
        for (size_t t = 0; t <= nt; t++) {
            acc_cell x = acc_of(c, c->arm[a], t ? c->task[t - 1] : NULL);
            if (x.s.k) fprintf(f, " %.6g %.6g", x.s.mean, x.s.sd);
            else fprintf(f, " ? ?");
        }
        fputc('\n', f);
        rows++;
    }
    close_file(f, "accuracy.dat");
    *ntask = nt;
    return rows > 0;
}

static void body_accuracy(FILE *g, const ctx *c, size_t nt) {
    fprintf(g, "set title 'Accuracy per arm (mean ± sd over runs)'\nset ylabel 'accuracy (%%)'\n"
               "set yrange [0:*]\nset style data histogram\nset style histogram errorbars gap 2 lw 1\n"
               "set style fill solid 0.7 border -1\nset boxwidth 0.9\nset xtics rotate by -30\n"
               "set key outside right top\nset grid ytics\n"
               "plot 'accuracy.dat' using 2:3:xtic(1) title 'overall'");
    for (size_t t = 0; t < nt; t++) {
        fprintf(g, ", '' using %zu:%zu title ", 4 + 2 * t, 5 + 2 * t);
        gp_str(g, c->task[t]);
    }
    fputc('\n', g);
}

/* series files: one block per arm (two blank lines between), arms listed */
static size_t data_series(const ctx *c, const char *dir, const char *name, unsigned want, int k,
                          const char **arms) {
    FILE *f = open_in(dir, name);
    size_t na = 0;
    const rpt_log **logs = xmalloc((size_t)c->nrun * sizeof(rpt_log *));
    for (size_t a = 0; a < c->narm; a++) {
        size_t nl = 0;
        for (int r = 0; r < c->nrun; r++) {
            const rpt_log *lg = rpt_find_log(&c->run[r], c->arm[a]);
            if (lg) logs[nl++] = lg;
        }
        double *st, *v;
        size_t n = rpt_series(logs, nl, want, k, &st, &v);
        if (n) {
            fprintf(f, "%s# %s\n", na ? "\n\n" : "", c->arm[a]);
            for (size_t i = 0; i < n; i++) fprintf(f, "%.10g %.8g\n", st[i], v[i]);
            arms[na++] = c->arm[a];
        }
        free(st);
        free(v);
    }
    free(logs);
    close_file(f, name);
    return na;
}

static void plot_series(FILE *g, const char *file, const char **arms, size_t na, const char *style) {
    fprintf(g, "plot ");
    for (size_t i = 0; i < na; i++) {
        fprintf(g, "%s'%s' index %zu with %s title ", i ? ", " : "", i ? "" : file, i, style);
        gp_str(g, arms[i]);
    }
    fputc('\n', g);
}

static size_t data_entropy(const ctx *c, const char *dir, int *bk) {
    const rpt_run *r = c->pts_run;
    FILE *f = open_in(dir, "entropy.dat");
    size_t stride = (r->npts + MAX_SCATTER - 1) / MAX_SCATTER, nb = 0;
    int kmax = 0;
    for (size_t i = 0; i < r->npts; i++)
        if (r->bucket[i] + 1 > kmax) kmax = r->bucket[i] + 1;
    for (int b = 0; b < kmax; b++) {
        int any = 0;
        for (size_t i = 0; i < r->npts; i += stride) {
            if (r->bucket[i] != b) continue;
            if (!any) fprintf(f, "%s# bucket %d\n", nb ? "\n\n" : "", b);
            fprintf(f, "%.8g %.8g\n", r->hw[i], r->hs[i]);
            any = 1;
        }
        if (any) bk[nb++] = b;
    }
    close_file(f, "entropy.dat");
    return nb;
}

typedef struct {
    size_t nt;                       /* accuracy: task columns */
    const char **loss_arms; size_t nloss;
    const char **diag_arms[RPT_NDIAG]; size_t ndiag[RPT_NDIAG];
    int *bk; size_t nbk;             /* entropy: buckets with points */
} plot_data;

static void emit_plots(FILE *g, const ctx *c, const plot_data *d, const int *want, const char *ext) {
    if (want[0]) {
        fprintf(g, "reset\nset output 'accuracy.%s'\n", ext);
        body_accuracy(g, c, d->nt);
    }
    if (want[1]) {
        fprintf(g, "reset\nset output 'loss.%s'\nset title 'Training loss'\nset xlabel 'step'\n"
                   "set ylabel 'loss'\nset key outside right top\nset grid\n", ext);
        plot_series(g, "loss.dat", d->loss_arms, d->nloss, "lines");
    }
    if (want[2]) {
        fprintf(g, "reset\nset output 'diagnostics.%s'\nset multiplot layout 2,3 title "
                   "'Saturation diagnostics on the probe batch'\nset grid\nset xlabel 'step'\n", ext);
        for (int k = 0; k < RPT_NDIAG; k++) {
            if (!d->ndiag[k]) continue;   /* an empty panel would stop gnuplot */
            fprintf(g, "set title ");
            gp_str(g, rpt_diag_labels[k]);
            fputc('\n', g);
            char file[32];
            snprintf(file, sizeof file, "diag%d.dat", k);
            plot_series(g, file, d->diag_arms[k], d->ndiag[k], "linespoints pointsize 0.5");
        }
        fprintf(g, "unset multiplot\n");
    }
    if (want[3]) {
        fprintf(g, "reset\nset output 'entropy.%s'\nset title 'Weak vs strong entropy per record'\n"
                   "set xlabel 'H weak'\nset ylabel 'H strong'\nset key inside left top box opaque\nset grid\n"
                   "set size ratio -1\nplot ", ext);
        for (size_t i = 0; i < d->nbk; i++)
            fprintf(g, "%s'%s' index %zu with points pointtype 7 pointsize 0.4 title 'bucket %d%s'", i ? ", " : "",
                    i ? "" : "entropy.dat", i, d->bk[i],
                    d->bk[i] == 0 ? " (easiest)" : (i + 1 == d->nbk && d->nbk > 1 ? " (hardest)" : ""));
        fprintf(g, ", x with lines dashtype 2 linecolor 'gray' title 'H strong = H weak'\n");
    }
    fprintf(g, "unset output\n");
}

static const char *gnuplot_prog(void) {
    const char *g = getenv("WDL_GNUPLOT");
    return g && *g ? g : "gnuplot";
}

/* Run gnuplot in dir on script (stdin/stdout closed, stderr to log);
 * returns its exit status, 127 when it cannot be started. */
static int run_gnuplot(const char *dir, const char *script, const char *log) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 127;
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(127);
        FILE *lf = freopen(log, "w", stderr);
        if (!lf) _exit(127);
        if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout)) _exit(127);
        execlp(gnuplot_prog(), gnuplot_prog(), script, (char *)NULL);
        fprintf(stderr, "cannot run %s: %s\n", gnuplot_prog(), strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return 127;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int file_nonempty(const char *dir, const char *name) {
    char *p = wdl_path_join(dir, name);
    struct stat st;
    int ok = stat(p, &st) == 0 && st.st_size > 0;
    free(p);
    return ok;
}

static void make_plots(ctx *c, const char *dir) {
    /* is gnuplot there, and does it have pngcairo? (probe script, no shell) */
    FILE *pf = open_in(dir, ".probe.gp");
    fprintf(pf, "set terminal pngcairo\n");
    close_file(pf, ".probe.gp");
    int probe = run_gnuplot(dir, ".probe.gp", ".probe.log");
    char *pp = wdl_path_join(dir, ".probe.gp"), *pl = wdl_path_join(dir, ".probe.log");
    unlink(pp);
    unlink(pl);
    free(pp); free(pl);
    if (probe == 127) {
        rpt_note(&c->notes, "gnuplot not found (%s): no plots", gnuplot_prog());
        return;
    }
    const char *png = probe == 0 ? "pngcairo size 1000,620 noenhanced font 'sans,10'" : "png size 1000,620 noenhanced";

    plot_data d;
    memset(&d, 0, sizeof d);
    int want[4] = {0, 0, 0, 0};
    want[0] = data_accuracy(c, dir, &d.nt);
    d.loss_arms = xcalloc(c->narm + 1, sizeof(char *));
    d.nloss = data_series(c, dir, "loss.dat", RPT_HAS_LOSS, 0, d.loss_arms);
    want[1] = d.nloss > 0;
    size_t nd = 0;
    for (int k = 0; k < RPT_NDIAG; k++) {
        char file[32];
        snprintf(file, sizeof file, "diag%d.dat", k);
        d.diag_arms[k] = xcalloc(c->narm + 1, sizeof(char *));
        d.ndiag[k] = data_series(c, dir, file, RPT_HAS_DIAG0 << k, k, d.diag_arms[k]);
        nd += d.ndiag[k];
    }
    want[2] = nd > 0;
    if (c->pts_run) {
        d.bk = xcalloc((size_t)c->o->buckets + 1000, sizeof(int));
        d.nbk = data_entropy(c, dir, d.bk);
        want[3] = d.nbk > 0;
    }

    FILE *g = open_in(dir, "plots.gp");
    fprintf(g, "# written by wdl-report; redraw with: gnuplot plots.gp\nset encoding utf8\n"
               "set datafile missing '?'\n");
    fprintf(g, "set terminal %s\n", png);
    emit_plots(g, c, &d, want, "png");
    fprintf(g, "set terminal svg size 1000,620 noenhanced font 'sans,10'\n");
    emit_plots(g, c, &d, want, "svg");
    close_file(g, "plots.gp");

    int rc = run_gnuplot(dir, "plots.gp", "plots.log");
    static const char *const names[4] = {"accuracy", "loss", "diagnostics", "entropy"};
    for (int i = 0; i < 4; i++) {
        char png_name[64], svg_name[64];
        snprintf(png_name, sizeof png_name, "%s.png", names[i]);
        snprintf(svg_name, sizeof svg_name, "%s.svg", names[i]);
        c->have_png[i] = want[i] && file_nonempty(dir, png_name) && file_nonempty(dir, svg_name);
    }
    if (rc != 0) {
        wdl_warn("gnuplot failed (status %d): see plots.log in the report directory", rc);
        rpt_note(&c->notes, "gnuplot failed (status %d): see plots.log", rc);
    } else {
        char *lp = wdl_path_join(dir, "plots.log");
        size_t len = 0;
        free(wdl_read_file(lp, &len));
        if (!len) unlink(lp);   /* keep the log only when gnuplot had something to say */
        free(lp);
    }
    free(d.loss_arms);
    for (int k = 0; k < RPT_NDIAG; k++) free(d.diag_arms[k]);
    free(d.bk);
}

int main(int argc, char **argv) {
    opts o;
    parse(argc, argv, &o);
    ctx c;
    memset(&c, 0, sizeof c);
    c.o = &o;
    char *out = o.out ? trim_slashes(o.out) : default_out(&o);
    cli_replaceable_dir("-o", out, cli_report_dir_files);
    /* a glob over runs/ also names runs/report: skip the output directory */
    char *out_real = realpath(out, NULL);
    c.run = xcalloc((size_t)o.nruns, sizeof(rpt_run));
    c.nrun = 0;
    char **reals = xcalloc((size_t)o.nruns, sizeof(char *));
    for (int r = 0; r < o.nruns; r++) {
        char *dir = trim_slashes(o.runs[r]), *real = realpath(dir, NULL);
        /* one run given twice would count as two seeds and narrow the interval */
        for (int q = 0; q < r && real; q++)
            if (reals[q] && !strcmp(reals[q], real)) cli_usage_error("%s: the same run given twice", dir);
        reals[r] = real;
        if (out_real && real && !strcmp(real, out_real))
            rpt_note(&c.notes, "%s: skipped, it is the output directory", dir);
        else
            rpt_load_run(&c.run[c.nrun++], dir, o.weak, o.strong, (int)o.buckets, &c.notes);
        free(dir);
    }
    for (int r = 0; r < o.nruns; r++) free(reals[r]);
    free(reals);
    free(out_real);
    gather(&c);
    if (o.baseline_given && !seeds_of(&c, o.baseline))
        cli_usage_error("--baseline %s: no run has that arm (eval/%s.json)", o.baseline, o.baseline);
    vd_compare_all(c.run, c.nrun, o.baseline, &c.cmp, &c.notes);
    if (!c.narm && !c.pts_run && !c.cmp.n) die("nothing to report: no eval/, logs/ or scored records in the given runs");

    char *par = parent_of(out);
    wdl_mkdirs(par);
    char *tmp = wdl_tmp_name(out);
    wdl_rmtree(tmp);
    wdl_tmp_register(tmp);
    wdl_mkdirs(tmp);
    if (o.plots) make_plots(&c, tmp);
    else rpt_note(&c.notes, "plots not drawn (--no-plots)");

    char *md = NULL;
    size_t mdlen = 0;
    FILE *mf = open_memstream(&md, &mdlen);
    if (!mf) die("out of memory");
    write_md(mf, &c);
    fclose(mf);
    FILE *f = open_in(tmp, "report.md");
    fwrite(md, 1, mdlen, f);
    close_file(f, "report.md");
    json_t *js = vd_json(c.run, c.nrun, &c.cmp, c.arm, c.narm);
    char *jtext = json_dumps(js, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!jtext) die("out of memory");
    json_decref(js);
    f = open_in(tmp, "report.json");
    fprintf(f, "%s\n", jtext);
    close_file(f, "report.json");
    wdl_commit(tmp, out);
    if (o.json) printf("%s\n", jtext);
    else fwrite(md, 1, mdlen, stdout);
    free(jtext);
    vd_free(&c.cmp);
    if (fflush(stdout) != 0) die("<stdout>: write error");
    if (!o.quiet) wdl_warn("report written to %s/", out);

    free(md); free(tmp); free(par); free(out);
    for (int r = 0; r < c.nrun; r++) rpt_free_run(&c.run[r]);
    for (size_t i = 0; i < c.narm; i++) free(c.arm[i]);
    for (size_t i = 0; i < c.ntask; i++) free(c.task[i]);
    free(c.arm); free(c.task); free(c.run); free(o.runs);
    rpt_notes_free(&c.notes);
    return 0;
}
