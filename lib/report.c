/* report.c: see report.h. */
#include "report.h"
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "records.h"
#include "select.h"

const char *const rpt_diag_keys[RPT_NDIAG] = {
    "probe_target_logit", "probe_nontarget_logit", "probe_margin",
    "probe_nontarget_mass", "probe_nontarget_grad_norm"};
const char *const rpt_diag_labels[RPT_NDIAG] = {
    "target logit", "non-target logit", "margin", "non-target mass", "non-target grad norm"};

void rpt_note(rpt_notes *nt, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) die("out of memory");
    va_end(ap);
    nt->v = xrealloc(nt->v, (nt->n + 1) * sizeof(char *));
    nt->v[nt->n++] = s;
}

void rpt_notes_free(rpt_notes *nt) {
    for (size_t i = 0; i < nt->n; i++) free(nt->v[i]);
    free(nt->v);
    nt->v = NULL;
    nt->n = 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n > m && !strcmp(s + n - m, suf);
}

/* Names in dir ending in suf (not hidden), sorted bytewise so that the
 * report never depends on the filesystem's order. NULL when no dir. */
static char **list_dir(const char *dir, const char *const *sufs, size_t *n) {
    DIR *d = opendir(dir);
    *n = 0;
    if (!d) return NULL;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        for (const char *const *s = sufs; *s; s++)
            if (ends_with(e->d_name, *s)) {
                v = xrealloc(v, (*n + 1) * sizeof(char *));
                v[(*n)++] = xstrdup(e->d_name);
                break;
            }
    }
    closedir(d);
    if (!v) v = xmalloc(sizeof(char *));
    qsort(v, *n, sizeof(char *), cmp_str);
    return v;
}

static char *stem(const char *name, const char *suf) {
    char *s = xstrdup(name);
    s[strlen(s) - strlen(suf)] = 0;
    return s;
}

static int num(json_t *o, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v || !json_is_number(v)) return 0;
    double x = json_number_value(v);
    if (!isfinite(x)) return 0;
    *out = x;
    return 1;
}

static void load_eval(rpt_eval *e, const char *path, const char *arm) {
    char *text = rec_slurp(path, NULL);
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    free(text);
    if (!j) die("%s:%d: %s", path, err.line, err.text);
    if (!json_is_object(j)) die("%s:1: expected a JSON object (a wdl-eval summary)", path);
    memset(e, 0, sizeof *e);
    e->arm = xstrdup(arm);
    if (!num(j, "accuracy", &e->acc)) die("%s: no numeric \"accuracy\" (not a wdl-eval summary?)", path);
    if (e->acc < 0 || e->acc > 1) die("%s: \"accuracy\" %g is not a fraction (not a wdl-eval summary?)", path, e->acc);
    json_t *n = json_object_get(j, "n");
    if (n && !(json_is_integer(n) && json_integer_value(n) >= 0))
        die("%s: \"n\" is not a count (not a wdl-eval summary?)", path);
    e->n = n ? (int64_t)json_integer_value(n) : -1;
    json_t *tasks = json_object_get(j, "tasks");
    if (tasks && !json_is_object(tasks)) die("%s: \"tasks\" is not an object", path);
    const char *key;
    json_t *tv;
    json_object_foreach(tasks, key, tv) {
        rpt_task t = {xstrdup(key), 0, -1};
        if (!json_is_object(tv) || !num(tv, "accuracy", &t.acc))
            die("%s: task \"%s\" has no numeric \"accuracy\"", path, key);
        if (t.acc < 0 || t.acc > 1) die("%s: task \"%s\": \"accuracy\" %g is not a fraction", path, key, t.acc);
        json_t *tn = json_object_get(tv, "n");
        if (tn && !(json_is_integer(tn) && json_integer_value(tn) >= 0))
            die("%s: task \"%s\": \"n\" is not a count", path, key);
        if (tn) t.n = (int64_t)json_integer_value(tn);
        e->task = xrealloc(e->task, (e->ntask + 1) * sizeof(rpt_task));
        e->task[e->ntask++] = t;
    }
    json_decref(j);
}

static void load_log(rpt_log *lg, const char *path, const char *arm) {
    memset(lg, 0, sizeof *lg);
    lg->arm = xstrdup(arm);
    rec_reader *r = rec_open(path);
    size_t cap = 0;
    json_t *v;
    while ((v = rec_next(r))) {
        rpt_row row;
        memset(&row, 0, sizeof row);
        if (num(v, "step", &row.step)) {   /* lines without a step are not steps */
            if (num(v, "loss", &row.loss)) row.mask |= RPT_HAS_LOSS;
            if (num(v, "tokens_per_s", &row.tps)) row.mask |= RPT_HAS_TPS;
            if (num(v, "elapsed_s", &row.elapsed)) row.mask |= RPT_HAS_ELAPSED;
            for (int k = 0; k < RPT_NDIAG; k++)
                if (num(v, rpt_diag_keys[k], &row.diag[k])) row.mask |= RPT_HAS_DIAG0 << k;
            if (lg->n == cap) { cap = cap ? 2 * cap : 256; lg->row = xrealloc(lg->row, cap * sizeof(rpt_row)); }
            lg->row[lg->n++] = row;
        }
        json_decref(v);
    }
    rec_close(r);
}

static void load_points(rpt_run *r, const char *path, int selected, const char *weak,
                        const char *strong, int k) {
    rec_reader *rd = rec_open(path);
    size_t cap = 0, nb = 0;
    json_t *v;
    while ((v = rec_next(rd))) {
        double hw, hs;
        if (num(v, weak, &hw) && num(v, strong, &hs)) {
            if (r->npts == cap) {
                cap = cap ? 2 * cap : 1024;
                r->hw = xrealloc(r->hw, cap * sizeof(double));
                r->hs = xrealloc(r->hs, cap * sizeof(double));
                r->bucket = xrealloc(r->bucket, cap * sizeof(int));
            }
            json_t *b = json_object_get(v, "bucket");
            r->bucket[r->npts] = -1;
            if (selected && json_is_integer(b) && json_integer_value(b) >= 0 && json_integer_value(b) < 1000) {
                r->bucket[r->npts] = (int)json_integer_value(b);
                nb++;
            }
            r->hw[r->npts] = hw;
            r->hs[r->npts] = hs;
            r->npts++;
        }
        json_decref(v);
    }
    rec_close(rd);
    r->pts_src = xstrdup(path);
    /* all points need a bucket from the same rule: recompute unless every
     * selected record carried one */
    if (r->npts && nb != r->npts) sel_buckets(r->npts, r->hs, NULL, k, r->bucket);
}

static uint64_t fnv1a(uint64_t h, const char *s) {
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 0x100000001b3ULL; }
    return h ^ 0xff;   /* field separator */
}

static void load_preds(rpt_preds *p, const char *path, const char *arm) {
    memset(p, 0, sizeof *p);
    p->arm = xstrdup(arm);
    rec_reader *r = rec_open(path);
    size_t cap = 0;
    json_t *v;
    while ((v = rec_next(r))) {
        json_t *c = json_object_get(v, "correct");
        if (!json_is_boolean(c)) die("%s:%lld: record has no boolean \"correct\" (not wdl-eval --preds output?)",
                                      path, (long long)p->n + 1);
        const char *task = json_string_value(json_object_get(v, "task"));
        const char *prompt = json_string_value(json_object_get(v, "prompt"));
        if ((size_t)p->n == cap) {
            cap = cap ? 2 * cap : 1024;
            p->key = xrealloc(p->key, cap * sizeof(uint64_t));
            p->correct = xrealloc(p->correct, cap);
        }
        p->key[p->n] = fnv1a(fnv1a(0xcbf29ce484222325ULL, task ? task : ""), prompt ? prompt : "");
        p->correct[p->n++] = json_is_true(c);
        json_decref(v);
    }
    rec_close(r);
}

/* Every NAME.json in dir as a summary (one JSON object each). */
static rpt_summary *load_summaries(const char *dir, size_t *n) {
    static const char *const json_suf[] = {".json", NULL};
    char **names = list_dir(dir, json_suf, n);
    rpt_summary *v = xcalloc(*n ? *n : 1, sizeof(rpt_summary));
    for (size_t i = 0; names && i < *n; i++) {
        char *p = wdl_path_join(dir, names[i]), *text = rec_slurp(p, NULL);
        json_error_t err;
        json_t *j = json_loads(text, 0, &err);
        if (!j) die("%s:%d: %s", p, err.line, err.text);
        if (!json_is_object(j)) die("%s:1: expected a JSON object (a wdl-score --summary)", p);
        v[i].arm = stem(names[i], ".json");
        v[i].j = j;
        free(text); free(p); free(names[i]);
    }
    free(names);
    return v;
}

json_t *rpt_find_summary(const rpt_summary *v, size_t n, const char *arm) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].arm, arm)) return v[i].j;
    return NULL;
}

const rpt_preds *rpt_find_preds(const rpt_run *r, const char *arm) {
    for (size_t i = 0; i < r->npreds; i++)
        if (!strcmp(r->preds[i].arm, arm)) return &r->preds[i];
    return NULL;
}

static void load_extras(rpt_run *r, const char *dir) {
    static const char *const pred_suf[] = {".jsonl", ".jsonl.zst", NULL};
    char *pd = wdl_path_join(dir, "preds"), *sd = wdl_path_join(dir, "saturation"), *gd = wdl_path_join(dir, "logits");
    size_t n;
    char **names = list_dir(pd, pred_suf, &n);
    r->preds = xcalloc(n ? n : 1, sizeof(rpt_preds));
    for (size_t i = 0; names && i < n; i++) {
        const char *suf = ends_with(names[i], ".zst") ? ".jsonl.zst" : ".jsonl";
        char *p = wdl_path_join(pd, names[i]), *arm = stem(names[i], suf);
        if (!rpt_find_preds(r, arm)) load_preds(&r->preds[r->npreds++], p, arm);
        free(p); free(arm); free(names[i]);
    }
    free(names);
    r->sat = load_summaries(sd, &r->nsat);
    r->lgt = load_summaries(gd, &r->nlgt);
    free(pd); free(sd); free(gd);
}

void rpt_load_run(rpt_run *r, const char *dir, const char *weak, const char *strong, int k,
                  rpt_notes *notes) {
    memset(r, 0, sizeof *r);
    if (!wdl_is_dir(dir)) die("%s: not a run directory", dir);
    r->dir = xstrdup(dir);

    static const char *const json_suf[] = {".json", NULL};
    static const char *const log_suf[] = {".jsonl", ".jsonl.zst", NULL};
    char *ed = wdl_path_join(dir, "eval"), *ld = wdl_path_join(dir, "logs");
    size_t n;
    char **names = list_dir(ed, json_suf, &n);
    if (!names) rpt_note(notes, "%s: no eval/ directory", dir);
    else if (!n) rpt_note(notes, "%s: eval/ holds no .json summary", dir);
    r->eval = xcalloc(n ? n : 1, sizeof(rpt_eval));
    for (size_t i = 0; i < n; i++) {
        char *p = wdl_path_join(ed, names[i]), *arm = stem(names[i], ".json");
        load_eval(&r->eval[r->neval++], p, arm);
        free(p); free(arm); free(names[i]);
    }
    free(names);

    names = list_dir(ld, log_suf, &n);
    if (!names) rpt_note(notes, "%s: no logs/ directory", dir);
    r->log = xcalloc(n ? n : 1, sizeof(rpt_log));
    for (size_t i = 0; i < n; i++) {
        const char *suf = ends_with(names[i], ".zst") ? ".jsonl.zst" : ".jsonl";
        char *p = wdl_path_join(ld, names[i]), *arm = stem(names[i], suf);
        if (rpt_find_log(r, arm)) rpt_note(notes, "%s: two logs for arm %s: %s ignored", dir, arm, p);
        else load_log(&r->log[r->nlog++], p, arm);
        free(p); free(arm); free(names[i]);
    }
    free(names);
    free(ed); free(ld);

    /* scored records hold every point; selected ones are the fallback */
    static const char *const cand[] = {"scored.jsonl.zst", "scored.jsonl", "selected.jsonl.zst",
                                       "selected.jsonl"};
    for (int c = 0; c < 4; c++) {
        char *p = wdl_path_join(dir, cand[c]);
        if (wdl_exists(p)) {
            load_points(r, p, c >= 2, weak, strong, k);
            if (!r->npts) rpt_note(notes, "%s: no record with numeric %s and %s", p, weak, strong);
            free(p);
            break;
        }
        free(p);
    }
    if (!r->pts_src) rpt_note(notes, "%s: no scored.jsonl[.zst] or selected.jsonl[.zst]", dir);
    load_extras(r, dir);
    char *cd = wdl_path_join(dir, "curve");
    if (wdl_is_dir(cd)) {
        r->curve = xcalloc(1, sizeof(rpt_run));
        r->curve->dir = xstrdup(cd);
        char *ced = wdl_path_join(cd, "eval");
        size_t ne;
        char **names = list_dir(ced, json_suf, &ne);
        r->curve->eval = xcalloc(ne ? ne : 1, sizeof(rpt_eval));
        for (size_t i = 0; names && i < ne; i++) {
            char *p = wdl_path_join(ced, names[i]), *arm = stem(names[i], ".json");
            load_eval(&r->curve->eval[r->curve->neval++], p, arm);
            free(p); free(arm); free(names[i]);
        }
        free(names); free(ced);
        load_extras(r->curve, cd);
    }
    free(cd);
}

void rpt_free_run(rpt_run *r) {
    for (size_t i = 0; i < r->neval; i++) {
        for (size_t t = 0; t < r->eval[i].ntask; t++) free(r->eval[i].task[t].name);
        free(r->eval[i].task);
        free(r->eval[i].arm);
    }
    for (size_t i = 0; i < r->nlog; i++) { free(r->log[i].row); free(r->log[i].arm); }
    free(r->eval); free(r->log); free(r->hw); free(r->hs); free(r->bucket);
    for (size_t i = 0; i < r->npreds; i++) { free(r->preds[i].arm); free(r->preds[i].key); free(r->preds[i].correct); }
    for (size_t i = 0; i < r->nsat; i++) { free(r->sat[i].arm); json_decref(r->sat[i].j); }
    for (size_t i = 0; i < r->nlgt; i++) { free(r->lgt[i].arm); json_decref(r->lgt[i].j); }
    free(r->preds); free(r->sat); free(r->lgt);
    if (r->curve) { rpt_free_run(r->curve); free(r->curve); }
    free(r->pts_src); free(r->dir);
    memset(r, 0, sizeof *r);
}

const rpt_eval *rpt_find_eval(const rpt_run *r, const char *arm) {
    for (size_t i = 0; i < r->neval; i++)
        if (!strcmp(r->eval[i].arm, arm)) return &r->eval[i];
    return NULL;
}

const rpt_log *rpt_find_log(const rpt_run *r, const char *arm) {
    for (size_t i = 0; i < r->nlog; i++)
        if (!strcmp(r->log[i].arm, arm)) return &r->log[i];
    return NULL;
}

int rpt_eval_task(const rpt_eval *e, const char *task, double *acc, int64_t *n) {
    if (!e) return 0;
    if (!task) { *acc = e->acc; *n = e->n; return 1; }
    for (size_t t = 0; t < e->ntask; t++)
        if (!strcmp(e->task[t].name, task)) { *acc = e->task[t].acc; *n = e->task[t].n; return 1; }
    return 0;
}

rpt_stat rpt_stat_of(const double *v, size_t k) {
    rpt_stat s = {0, 0, k};
    if (!k) return s;
    for (size_t i = 0; i < k; i++) s.mean += v[i];
    s.mean /= (double)k;
    if (k < 2) return s;
    double ss = 0;
    for (size_t i = 0; i < k; i++) ss += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = sqrt(ss / (double)(k - 1));
    return s;
}

static int arm_rank(const char *a) {
    static const char *const order[] = {"m0", "m1", "sft2", "sft", "wmss", "wdds_only", "wdjt_only",
                                        "frozen_weak", "const_weak", NULL};
    for (int i = 0; order[i]; i++)
        if (!strcmp(a, order[i])) return i;
    return 100;
}

int rpt_arm_cmp(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int rx = arm_rank(x), ry = arm_rank(y);
    if (rx != ry) return rx < ry ? -1 : 1;
    return strcmp(x, y);
}

static int cmp_pair(const void *a, const void *b) {
    const double *x = a, *y = b;   /* by step, then value: the sums never depend on qsort */
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

size_t rpt_series(const rpt_log *const *logs, size_t nlogs, unsigned want, int k,
                  double **steps, double **vals) {
    size_t total = 0, m = 0;
    for (size_t l = 0; l < nlogs; l++) total += logs[l]->n;
    double *pairs = xmalloc((total ? total : 1) * 2 * sizeof(double));
    for (size_t l = 0; l < nlogs; l++)
        for (size_t i = 0; i < logs[l]->n; i++) {
            const rpt_row *r = &logs[l]->row[i];
            if (!(r->mask & want)) continue;
            double v = want == RPT_HAS_LOSS ? r->loss : want == RPT_HAS_TPS ? r->tps
                     : want == RPT_HAS_ELAPSED ? r->elapsed : r->diag[k];
            pairs[2 * m] = r->step;
            pairs[2 * m + 1] = v;
            m++;
        }
    qsort(pairs, m, 2 * sizeof(double), cmp_pair);
    *steps = xmalloc((m ? m : 1) * sizeof(double));
    *vals = xmalloc((m ? m : 1) * sizeof(double));
    size_t n = 0;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        double s = 0;
        while (j < m && pairs[2 * j] == pairs[2 * i]) s += pairs[2 * j++ + 1];
        (*steps)[n] = pairs[2 * i];
        (*vals)[n++] = s / (double)(j - i);
        i = j;
    }
    free(pairs);
    return n;
}
