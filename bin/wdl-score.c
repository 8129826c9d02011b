/* wdl-score: add each record's mean predictive entropy over its completion
 * tokens (and token count, mean NLL) under a model. Streaming: records are
 * read, scored and written a batch at a time, in input order. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "checkpoint.h"
#include "common.h"
#include "dataset.h"
#include "dist.h"
#include "gemm.h"
#include "kernels.h"
#include "model.h"
#include "probe.h"
#include "progress.h"
#include "records.h"
#include "shard.h"
#include "step.h"
#include "template.h"
#include "tokenizer.h"

static const char *usage =
    "usage: wdl-score -m DIR --field NAME [options] [FILE...]\n"
    "       wdl-score --merge-summaries [-o OUT] PART...\n"
    "Filter JSON-Lines records (FILE... or stdin; .zst and ARCHIVE:member accepted)\n"
    "to stdout (or -o OUT), adding per record, with teacher forcing and no gradients:\n"
    "  NAME         mean predictive entropy (nats) over the completion tokens,\n"
    "               H = -(1/|T|) sum_t sum_v p(v|ctx_t) log p(v|ctx_t)\n"
    "  NAME_nll     mean negative log-likelihood of the completion tokens\n"
    "  NAME_tokens  number of completion tokens scored (end token included)\n"
    "Prompt and completion are rendered with the model's template, exactly as in\n"
    "training. Other fields pass through unchanged; output is in input order\n"
    "(records are scored in windows of 16 batches sorted by length).\n"
    "  -m DIR         model directory            --field NAME  output field (needed)\n"
    "  --batch B (16) records per forward pass   --seq T  max tokens (config max)\n"
    "  --threads N    threads (usable CPUs; per rank) -o OUT  output file (.zst ok)\n"
    "  --summary FILE also write one JSON object over all scored tokens: the\n"
    "               saturation figures (mean p_target, token_accuracy, share of\n"
    "               tokens with p_target > 0.99, non-target mass) and the logit\n"
    "               table (mean, std, norms, max/min, entropy, p_max, target vs\n"
    "               non-target logit and gap)\n"
    "  --precision P (fp32): fp32 (our own GEMM where the CPU has AVX2\n"
    "                 and FMA), fp32-openblas (OpenBLAS throughout: the reference)\n"
    "                 or bf16 (bf16 inputs, fp32 accumulation, oneDNN)\n"
    "  --shard K/N    score only part K (0..N-1) of N of the input files, cut at\n"
    "               window boundaries: the N outputs concatenated in order\n"
    "               (cat, or wdl-data cat) are the output of one run; --summary\n"
    "               then writes a partial that --merge-summaries combines\n"
    "  --merge-summaries  the partial summaries of all N shards -> the summary\n"
    "Under mpirun -np N the ranks share the windows: same bytes as one process.\n";

/* One forward pass over examples ex[0..n) (n <= B), packed without
 * padding; each one's entropy and NLL sums and token count land in
 * ent/nll/cnt[i]. The head's logits, chunk positions at a time, lie in
 * the activations' spare part (model_spare_acts), sized to hold them:
 * the layers' slots and the logits share their pages (Qwen3-0.6B's 134
 * MB of logits took about 0.23 s to touch first). */
static void score_batch(wdl_model *m, int64_t chunk, const example *const *ex, int64_t n, int64_t B, int64_t Tcap,
                        int32_t *ids, int32_t *tg, double *nll, double *ent, double *sent, double *snll,
                        int64_t *cnt, logit_stats *st) {
    const size_t need = ce_scratch_bytes(1, chunk, m->cfg.hidden, m->cfg.vocab);   /* the head's scratch */
    int64_t len[n > 0 ? n : 1], T = 1, P = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ex[i]->len > T) T = ex[i]->len;
        P += ex[i]->len;
    }
    /* activations grow with the longest batch seen, not the context size,
     * and hold its positions packed, not B times its longest */
    if (!m->act_mem || T > m->Tmax || P > m->Ncap) {
        int64_t nt = m->act_mem && 2 * m->Tmax > T ? 2 * m->Tmax : T;
        if (nt > Tcap) nt = Tcap;
        int64_t np = m->act_mem && 2 * m->Ncap > P ? 2 * m->Ncap : P;
        if (np > B * nt) np = B * nt;
        model_alloc_acts_packed(m, B, nt, np, (need + sizeof(float) - 1) / sizeof(float), ACTS_STREAM, 0);
    }
    size_t spare;
    float *scratch = model_spare_acts(m, &spare);
    if (spare * sizeof(float) < need)
        die("internal: the activations' spare part holds no chunk of logits");
    int64_t N = example_pack(ex, n, ids, tg, len);
    step_score_packed(m, scratch, chunk, ids, tg, len, n, nll, ent);
    if (st) logit_stats_after_forward(st, m, tg, N);
    for (int64_t i = 0, o = 0; i < n; o += len[i], i++) {
        sent[i] = snll[i] = 0;
        cnt[i] = 0;
        for (int64_t t = o; t < o + len[i]; t++)
            if (tg[t] >= 0) { sent[i] += ent[t]; snll[i] += nll[t]; cnt[i]++; }
    }
}

static int by_len(const void *a, const void *b) {
    const example *x = *(const example *const *)a, *y = *(const example *const *)b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x < y ? -1 : x > y;   /* input order among equals */
}

/* What one window adds to the run: counts for the warnings and, with
 * --summary, its logit statistics (windows are folded in input order). */
typedef struct { int64_t unlabeled, cut, beyond; logit_stats st; } window_result;

typedef struct {
    wdl_model *m;
    wdl_tokenizer *tok;
    wdl_template tpl;
    const char *field;
    char *fnll, *ftok;       /* NAME_nll, NAME_tokens */
    int summary;
    int64_t B, seq, chunk;
    int32_t *ids, *tg;
    double *nll, *ent;
    example *ex;             /* a window's examples (ids NULL: unscored) */
    ivec buf;
    /* rank 0: the run so far */
    window_result total;
    json_t *windows;         /* --shard --summary: every window's sums */
} scorer;

/* Score a window in batches of similar length (little padding) and add
 * the fields to its records, which are then written in input order. */
static void work(shard_window *w, shard_buf *out, void *ctx) {
    scorer *c = ctx;
    window_result r = {0};
    logit_stats_init(&r.st);
    example **ord = xmalloc(sizeof(example *) * (size_t)w->n);
    int64_t ns = 0;
    for (int64_t i = 0; i < w->n; i++) {
        int cut = 0;
        c->ex[i].ids = NULL;
        if (!example_encode(&c->ex[i], w->rec[i], c->tok, c->tpl, c->seq, 0, &c->buf, &cut, w->name[i], w->line[i]))
            r.unlabeled++;   /* passes through unscored: wdl-select gives it weight 0 */
        else
            ord[ns++] = &c->ex[i];
        r.cut += cut;
    }
    qsort(ord, (size_t)ns, sizeof(example *), by_len);
    double *sent = xmalloc(sizeof(double) * (size_t)w->n), *snll = xmalloc(sizeof(double) * (size_t)w->n);
    int64_t *cnt = xmalloc(sizeof(int64_t) * (size_t)w->n);
    for (int64_t i = 0; i < ns; i += c->B) {
        int64_t nb = ns - i < c->B ? ns - i : c->B;
        score_batch(c->m, c->chunk, (const example *const *)ord + i, nb, c->B, c->seq, c->ids, c->tg,
                    c->nll, c->ent, sent + i, snll + i, cnt + i, c->summary ? &r.st : NULL);
    }
    for (int64_t i = 0; i < ns; i++) {   /* ord[i] is record ord[i] - ex */
        const int64_t k = ord[i] - c->ex;
        json_t *rec = w->rec[k];
        int64_t n = cnt[i];
        /* JSON has no NaN: a record must not leave without its scores */
        if (!isfinite(sent[i]) || !isfinite(snll[i]))
            die("%s:%lld: the model's scores are not finite (its logits overflow or are NaN)", w->name[k],
                (long long)w->line[k]);
        free(ord[i]->ids);
        if (!n) {   /* its completion lies past --seq: unscored, not an entropy of 0 */
            json_object_del(rec, c->field);
            json_object_del(rec, c->fnll);
            json_object_del(rec, c->ftok);
            r.beyond++;
            continue;
        }
        json_object_set_new(rec, c->field, json_real(sent[i] / n));
        json_object_set_new(rec, c->fnll, json_real(snll[i] / n));
        json_object_set_new(rec, c->ftok, json_integer(n));
    }
    free(ord); free(sent); free(snll); free(cnt);
    shard_buf_add(out, &r, sizeof r);
}

static void fold(int64_t index, const char *res, size_t n, void *ctx) {
    scorer *c = ctx;
    window_result r;
    memcpy(&r, res, sizeof r);
    c->total.unlabeled += r.unlabeled;
    c->total.cut += r.cut;
    c->total.beyond += r.beyond;
    logit_stats_merge(&c->total.st, &r.st);
    if (c->windows) json_array_append_new(c->windows, logit_stats_raw_json(&r.st));
}

/* --merge-summaries: the shards' partial summaries -> the summary. */
static void merge_summaries(const char *const *files, int n, const char *out) {
    if (!n) cli_usage_error("--merge-summaries: give the partial summaries of every shard");
    int np;
    json_t **part = shard_parts(files, n, &np);
    logit_stats st;
    logit_stats_init(&st);
    int64_t records = 0;
    for (int k = 0; k < np; k++) {
        json_t *ws = json_object_get(part[k], "windows"), *v;
        size_t i;
        if (!json_is_array(ws)) die("shard %d/%d: no \"windows\" (not a wdl-score summary?)", k, np);
        json_array_foreach(ws, i, v) {
            logit_stats t;
            if (!logit_stats_from_raw(&t, v)) die("shard %d/%d: window %zu: bad sums", k, np, i);
            logit_stats_merge(&st, &t);
        }
        records += rec_int(part[k], "records", 0);
    }
    shard_parts_free(part, np);
    json_t *j = logit_stats_json(&st);
    json_object_set_new(j, "records", json_integer(records));
    rec_writer *w = rec_create(out);
    rec_write(w, j);
    rec_commit(w);
    json_decref(j);
}

int main(int argc, char **argv) {
    const char *model = NULL, *field = NULL, *summary = NULL, *precision = NULL, *shard = NULL;
    long long B = 16, seq = 0;
    int merge = 0;
    const cli_opt opts[] = {
        {"model", 'm', CLI_STR, &model},
        {"field", 0, CLI_STR, &field},
        {"batch", 0, CLI_INT, &B},
        {"seq", 0, CLI_INT, &seq},
        {"summary", 0, CLI_STR, &summary},
        {"precision", 0, CLI_STR, &precision},
        {"shard", 0, CLI_STR, &shard},
        {"merge-summaries", 0, CLI_FLAG, &merge},
        {0}};
    cli_common cli;
    cli_parse_mpi(argc, argv, usage, opts, &cli);
    const char **files = cli.args;
    int nfiles = cli.nargs;
    if (merge) {
        if (model || field || summary || shard) cli_usage_error("--merge-summaries takes only -o OUT and the summaries");
        if (dist_launched()) cli_usage_error("--merge-summaries: run it once, without mpirun");
        merge_summaries(files, nfiles, cli.output);
        free(files);
        return 0;
    }
    if (!model || !field || !*field) cli_usage_error("-m DIR and --field NAME are required (see --help)");
    if (B < 1 || seq < 0) cli_usage_error("--batch must be >= 1 and --seq >= 0");
    if (summary && !strcmp(summary, "-")) cli_usage_error("--summary: needs a file name (stdout carries the records)");
    /* the scores would replace what a record is made of */
    static const char *const own[] = {"idx", "task", "prompt", "completion", "answer", "messages", NULL};
    for (int k = 0; own[k]; k++)
        if (!strcmp(field, own[k])) cli_usage_error("--field %s: a record's own field, not a place for scores", field);
    cli_distinct_outputs(2, (const char *const[]){"-o", "--summary"}, (const char *const[]){cli.output, summary});
    shard_spec sp = shard_parse(shard, files, nfiles);
    gemm_set_precision(cli_precision(precision));
    dist_init();
    const int root = dist_rank() == 0;
    scorer c = {.field = field, .summary = summary != NULL, .B = B};
    const double t0 = wdl_now();
    c.m = model_dir_open_forward(model, &c.tok, &c.tpl);   /* bf16: weights held once in bf16 */
    const double t_open = wdl_now() - t0;
    model_times times = {{0}};   /* rank 0's kernels, for the last line */
    c.m->times = &times;
    c.seq = seq ? seq : c.m->cfg.max_pos;
    if (c.seq > c.m->cfg.max_pos && root && !cli.quiet)   /* allowed, as transformers allows it: RoPE extends */
        wdl_warn("--seq %lld is past the model's max_position_embeddings (%lld): positions beyond it are "
                 "extrapolated", (long long)c.seq, (long long)c.m->cfg.max_pos);
    c.chunk = step_chunk_for(c.m->cfg.vocab);
    c.ids = xmalloc(sizeof(int32_t) * (size_t)(B * c.seq));
    c.tg = xmalloc(sizeof(int32_t) * (size_t)(B * c.seq));
    c.nll = xmalloc(sizeof(double) * (size_t)(B * c.seq));
    c.ent = xmalloc(sizeof(double) * (size_t)(B * c.seq));
    size_t fl = strlen(field) + 16;
    c.fnll = xmalloc(fl);
    c.ftok = xmalloc(fl);
    snprintf(c.fnll, fl, "%s_nll", field);
    snprintf(c.ftok, fl, "%s_tokens", field);
    const int64_t W = 16 * B;   /* a window: read ahead, sorted by length */
    c.ex = xcalloc((size_t)W, sizeof(example));
    logit_stats_init(&c.total.st);
    if (sp.n && summary) c.windows = json_array();
    rec_writer *w = root ? rec_create(cli.output) : NULL, *sw = root && summary ? rec_create(summary) : NULL;
    wdl_progress bar;
    progress_start(&bar, "records", 0, cli.quiet || !root);
    shard_job job = {.work = work, .fold = fold, .ctx = &c, .window = W, .out = w, .bar = &bar};
    int64_t total = shard_run(&job, files, nfiles, sp);
    if (root) {
        progress_end(&bar, total, NULL);
        if (sw) {
            json_t *j;
            if (sp.n) {   /* a partial summary: --merge-summaries folds the windows of all shards */
                j = json_object();
                shard_tag(j, sp, W);
                json_object_set_new(j, "records", json_integer(total));
                json_object_set_new(j, "windows", c.windows);
            } else {
                j = logit_stats_json(&c.total.st);
                json_object_set_new(j, "records", json_integer(total));
            }
            rec_write(sw, j);
            json_decref(j);
            rec_commit(sw);
        }
        rec_commit(w);
        if (c.total.unlabeled)
            wdl_warn("%lld records without a completion passed through unscored", (long long)c.total.unlabeled);
        if (c.total.cut)
            wdl_warn("%lld records longer than %lld tokens were scored on their first %lld tokens",
                     (long long)c.total.cut, (long long)c.seq, (long long)c.seq);
        if (c.total.beyond)
            wdl_warn("%lld records with no completion token in their first %lld passed through unscored",
                     (long long)c.total.beyond, (long long)c.seq);
        if (!cli.quiet) {
            const double wall = wdl_now() - t0;   /* the shares are of the time printed */
            fprintf(stderr, "%s: scored %lld records in %.1fs\n", wdl_prog, (long long)total, wall);
            /* as wdl-train's last line: where the time went, kernel by kernel */
            char sh[256];
            model_times_shares(&times, wall, sh, sizeof sh);
            fprintf(stderr, "%s: time: %s (opening the model %.2fs, reading and writing records%s)\n", wdl_prog, sh,
                    t_open, dist_size() > 1 ? ", waiting for the other ranks" : "");
        }
    }
    dist_finish();
    ivec_free(&c.buf);
    free(c.ex); free(c.ids); free(c.tg); free(c.nll); free(c.ent); free(c.fnll); free(c.ftok);
    free(files);
    tok_free(c.tok);
    model_free(c.m);
    return 0;
}
