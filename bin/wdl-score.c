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
#include "gemm.h"
#include "kernels.h"
#include "model.h"
#include "probe.h"
#include "progress.h"
#include "records.h"
#include "step.h"
#include "template.h"
#include "tokenizer.h"

static const char *usage =
    "usage: wdl-score -m DIR --field NAME [options] [FILE...]\n"
    "Filter JSON-Lines records (FILE... or stdin; .zst and ARCHIVE:member accepted)\n"
    "to stdout (or -o OUT), adding per record, with teacher forcing and no gradients:\n"
    "  NAME         mean predictive entropy (nats) over the completion tokens,\n"
    "               H = -(1/|T|) sum_t sum_v p(v|ctx_t) log p(v|ctx_t)\n"
    "  NAME_nll     mean negative log-likelihood of the completion tokens\n"
    "  NAME_tokens  number of completion tokens scored (end token included)\n"
    "Prompt and completion are rendered with the model's template, exactly as in\n"
    "training. Other fields pass through unchanged; output is in input order\n"
    "(records are scored in windows of 16 batches sorted by length).\n"
    "  -m DIR         model directory            --field NAME  output field (required)\n"
    "  --batch B (16) records per forward pass   --seq T  max tokens (config max)\n"
    "  --threads N    threads (all cores)        -o OUT   output file (.zst ok)\n"
    "  --summary FILE also write one JSON object over all scored tokens: the\n"
    "               saturation figures (mean p_target, token_accuracy, share of\n"
    "               tokens with p_target > 0.99, non-target mass) and the logit\n"
    "               table (mean, std, norms, max/min, entropy, p_max, target vs\n"
    "               non-target logit and gap)\n"
    "  --precision fp32|bf16 (fp32): matrix products in fp32 (OpenBLAS) or with\n"
    "                 bf16 inputs and fp32 accumulation (oneDNN)\n";

typedef struct { json_t *rec; int32_t *ids; int64_t len, n_prompt; double ent, nll; int64_t cnt; } item;

/* One forward pass over a batch of items; their sums land in the items. */
static void score_batch(wdl_model *m, float *scratch, int64_t chunk, item **it, int64_t n, int64_t B,
                        int64_t Tcap, int32_t *ids, int32_t *tg, double *nll, double *ent, logit_stats *st) {
    int64_t T = 1;
    for (int64_t i = 0; i < n; i++) if (it[i]->len > T) T = it[i]->len;
    /* activations grow with the longest batch seen, not the context size */
    if (!m->act_mem || T > m->Tmax) {
        int64_t nt = m->act_mem && 2 * m->Tmax > T ? 2 * m->Tmax : T;
        model_alloc_acts(m, B, nt < Tcap ? nt : Tcap, ACTS_STREAM, 0);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t t = 0; t < T; t++) {
            ids[i * T + t] = t < it[i]->len ? it[i]->ids[t] : 0;
            tg[i * T + t] = (t + 1 < it[i]->len && t + 1 >= it[i]->n_prompt) ? it[i]->ids[t + 1] : -1;
        }
    step_score(m, scratch, chunk, ids, tg, n, T, nll, ent);
    if (st) logit_stats_after_forward(st, m, tg, n * T);
    for (int64_t i = 0; i < n; i++) {
        it[i]->ent = it[i]->nll = 0;
        it[i]->cnt = 0;
        for (int64_t t = 0; t < T; t++)
            if (tg[i * T + t] >= 0) { it[i]->ent += ent[i * T + t]; it[i]->nll += nll[i * T + t]; it[i]->cnt++; }
    }
}

static int by_len(const void *a, const void *b) {
    const item *x = *(item *const *)a, *y = *(item *const *)b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x < y ? -1 : x > y;   /* input order among equals */
}

/* Score a window of records in batches of similar length (little padding),
 * then write them in input order. */
static void flush(wdl_model *m, float *scratch, int64_t chunk, item *it, int64_t n, int64_t B, int64_t Tcap,
                  rec_writer *w, const char *field, int32_t *ids, int32_t *tg, double *nll, double *ent,
                  logit_stats *st) {
    if (!n) return;
    item **ord = xmalloc(sizeof(item *) * (size_t)n);
    int64_t ns = 0;
    for (int64_t i = 0; i < n; i++)
        if (it[i].ids) ord[ns++] = &it[i];
    qsort(ord, (size_t)ns, sizeof(item *), by_len);
    for (int64_t i = 0; i < ns; i += B)
        score_batch(m, scratch, chunk, ord + i, ns - i < B ? ns - i : B, B, Tcap, ids, tg, nll, ent, st);
    free(ord);
    size_t fl = strlen(field) + 16;
    char *fn = xmalloc(fl), *ft = xmalloc(fl);
    snprintf(fn, fl, "%s_nll", field);
    snprintf(ft, fl, "%s_tokens", field);
    for (int64_t i = 0; i < n; i++) {
        int64_t c = it[i].cnt;
        if (!it[i].ids) { rec_write(w, it[i].rec); json_decref(it[i].rec); continue; }
        json_object_set_new(it[i].rec, field, json_real(c ? it[i].ent / c : 0.0));
        json_object_set_new(it[i].rec, fn, json_real(c ? it[i].nll / c : 0.0));
        json_object_set_new(it[i].rec, ft, json_integer(c));
        rec_write(w, it[i].rec);
        json_decref(it[i].rec);
        free(it[i].ids);
    }
    free(fn); free(ft);
}

int main(int argc, char **argv) {
    const char *model = NULL, *field = NULL, *summary = NULL, *precision = NULL;
    long long B = 16, seq = 0;
    const cli_opt opts[] = {
        {"model", 'm', CLI_STR, &model},
        {"field", 0, CLI_STR, &field},
        {"batch", 0, CLI_INT, &B},
        {"seq", 0, CLI_INT, &seq},
        {"summary", 0, CLI_STR, &summary},
        {"precision", 0, CLI_STR, &precision},
        {0}};
    cli_common cli;
    cli_parse(argc, argv, usage, opts, &cli);
    const char *out = cli.output;
    const char **files = cli.args;
    int nfiles = cli.nargs;
    if (!model || !field || !*field) cli_usage_error("-m DIR and --field NAME are required (see --help)");
    if (B < 1 || seq < 0) cli_usage_error("--batch must be >= 1 and --seq >= 0");
    if (summary && !strcmp(summary, "-")) cli_usage_error("--summary: needs a file name (stdout carries the records)");
    gemm_set_precision(cli_precision(precision));
    wdl_tokenizer *tok;
    wdl_template tpl;
    wdl_model *m = model_dir_open(model, &tok, &tpl);
    if (!seq) seq = m->cfg.max_pos;
    int64_t chunk = step_chunk_for(m->cfg.vocab);
    float *scratch = xaligned(ce_scratch_bytes(1, chunk, m->cfg.hidden, m->cfg.vocab));
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)(B * seq)), *tg = xmalloc(sizeof(int32_t) * (size_t)(B * seq));
    double *nll = xmalloc(sizeof(double) * (size_t)(B * seq)), *ent = xmalloc(sizeof(double) * (size_t)(B * seq));
    const int64_t W = 16 * B;   /* read-ahead window, sorted by length */
    item *it = xcalloc((size_t)W, sizeof(item));
    rec_multi *in = rec_multi_open(files, nfiles);
    rec_writer *w = rec_create(out), *sw = summary ? rec_create(summary) : NULL;
    logit_stats st;
    logit_stats_init(&st);
    logit_stats *stp = summary ? &st : NULL;
    json_t *rec;
    int64_t n = 0, total = 0, cut = 0, unlabeled = 0;
    wdl_progress bar;
    progress_start(&bar, "records", 0, cli.quiet);
    ivec v = {0};
    while ((rec = rec_multi_next(in))) {
        const char *sys, *prompt, *completion;
        if (!rec_prompt_completion(rec, &sys, &prompt, &completion))
            die("%s:%lld: record has no prompt", rec_multi_name(in), (long long)rec_multi_line(in));
        if (!completion) {   /* passes through unscored: wdl-select gives it weight 0 */
            it[n] = (item){.rec = rec};
            unlabeled++;
            if (++n == W) { flush(m, scratch, chunk, it, n, B, seq, w, field, ids, tg, nll, ent, stp); total += n; n = 0; }
            continue;
        }
        v.n = 0;
        size_t np;
        tpl_encode(tok, tpl, sys, prompt, completion, &v, &np);
        int64_t len = (int64_t)v.n;
        if (len > seq) { len = seq; cut++; }
        it[n].rec = rec;
        it[n].ids = xmalloc(sizeof(int32_t) * (size_t)len);
        memcpy(it[n].ids, v.v, sizeof(int32_t) * (size_t)len);
        it[n].len = len;
        it[n].n_prompt = (int64_t)np;
        if (++n == W) {
            flush(m, scratch, chunk, it, n, B, seq, w, field, ids, tg, nll, ent, stp);
            total += n;
            n = 0;
            progress_update(&bar, total, NULL);
        }
    }
    flush(m, scratch, chunk, it, n, B, seq, w, field, ids, tg, nll, ent, stp);
    total += n;
    progress_end(&bar, total, NULL);
    rec_multi_close(in);
    if (sw) {
        json_t *j = logit_stats_json(&st);
        json_object_set_new(j, "records", json_integer(total));
        rec_write(sw, j);
        json_decref(j);
        rec_commit(sw);
    }
    rec_commit(w);
    if (unlabeled) wdl_warn("%lld records without a completion passed through unscored", (long long)unlabeled);
    if (cut) wdl_warn("%lld records longer than %lld tokens were scored on their first %lld tokens", (long long)cut,
                      (long long)seq, (long long)seq);
    if (!cli.quiet) fprintf(stderr, "%s: scored %lld records\n", wdl_prog, (long long)total);
    ivec_free(&v);
    free(it); free(ids); free(tg); free(nll); free(ent); free(scratch); free(files);
    tok_free(tok);
    model_free(m);
    return 0;
}
