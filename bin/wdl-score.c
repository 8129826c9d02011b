/* wdl-score: add each record's mean predictive entropy over its completion
 * tokens (and token count, mean NLL) under a model. Streaming: records are
 * read, scored and written a batch at a time, in input order. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common.h"
#include "gemm.h"
#include "kernels.h"
#include "model.h"
#include "records.h"
#include "step.h"
#include "template.h"
#include "tokenizer.h"

extern void openblas_set_num_threads(int);

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
    "  --precision fp32|bf16 (fp32): matrix products in fp32 (OpenBLAS) or with\n"
    "                 bf16 inputs and fp32 accumulation (oneDNN)\n";

typedef struct { json_t *rec; int32_t *ids; int64_t len, n_prompt; double ent, nll; int64_t cnt; } item;

/* One forward pass over a batch of items; their sums land in the items. */
static void score_batch(wdl_model *m, float *scratch, int64_t chunk, item **it, int64_t n, int64_t B,
                        int64_t Tcap, int32_t *ids, int32_t *tg, double *nll, double *ent) {
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
                  rec_writer *w, const char *field, int32_t *ids, int32_t *tg, double *nll, double *ent) {
    if (!n) return;
    item **ord = xmalloc(sizeof(item *) * (size_t)n);
    for (int64_t i = 0; i < n; i++) ord[i] = &it[i];
    qsort(ord, (size_t)n, sizeof(item *), by_len);
    for (int64_t i = 0; i < n; i += B)
        score_batch(m, scratch, chunk, ord + i, n - i < B ? n - i : B, B, Tcap, ids, tg, nll, ent);
    free(ord);
    size_t fl = strlen(field) + 16;
    char *fn = xmalloc(fl), *ft = xmalloc(fl);
    snprintf(fn, fl, "%s_nll", field);
    snprintf(ft, fl, "%s_tokens", field);
    for (int64_t i = 0; i < n; i++) {
        int64_t c = it[i].cnt;
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
    wdl_set_prog(argv[0]);
    const char *model = NULL, *field = NULL, *out = "-";
    int64_t B = 16, seq = 0, threads = sysconf(_SC_NPROCESSORS_ONLN);
    gemm_precision precision = GEMM_FP32;
    const char **files = xcalloc((size_t)argc, sizeof(char *));
    int nfiles = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define ARG() wdl_arg(argc, argv, &i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(usage, stdout); return 0; }
        else if (!strcmp(a, "-m")) model = ARG();
        else if (!strcmp(a, "--field")) field = ARG();
        else if (!strcmp(a, "-o")) out = ARG();
        else if (!strcmp(a, "--batch")) B = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--seq")) seq = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--threads")) threads = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--precision")) precision = gemm_parse_precision(a, ARG());
        else if (a[0] == '-' && a[1]) die("unknown option '%s' (see --help)", a);
        else files[nfiles++] = a;
#undef ARG
    }
    if (!model || !field || !*field) die("-m DIR and --field NAME are required (see --help)");
    if (B < 1 || threads < 1 || seq < 0) die("--batch and --threads must be >= 1");
    omp_set_num_threads((int)threads);
    openblas_set_num_threads((int)threads);
    gemm_set_precision(precision);
    wdl_model *m = model_load(model);
    wdl_tokenizer *tok = tok_load(model);
    wdl_template tpl = tpl_from_name(m->cfg.template_name);
    if (!seq) seq = m->cfg.max_pos;
    int64_t chunk = step_chunk_for(m->cfg.vocab);
    float *scratch = xaligned(ce_scratch_elems(1, chunk, m->cfg.vocab) * sizeof(float));
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)(B * seq)), *tg = xmalloc(sizeof(int32_t) * (size_t)(B * seq));
    double *nll = xmalloc(sizeof(double) * (size_t)(B * seq)), *ent = xmalloc(sizeof(double) * (size_t)(B * seq));
    const int64_t W = 16 * B;   /* read-ahead window, sorted by length */
    item *it = xcalloc((size_t)W, sizeof(item));
    rec_multi *in = rec_multi_open(files, nfiles);
    rec_writer *w = rec_create(out);
    json_t *rec;
    int64_t n = 0, total = 0, cut = 0;
    ivec v = {0};
    while ((rec = rec_multi_next(in))) {
        const char *sys, *prompt, *completion;
        if (!rec_prompt_completion(rec, &sys, &prompt, &completion))
            die("%s:%lld: record has no prompt", rec_multi_name(in), (long long)rec_multi_line(in));
        if (!completion)
            die("%s:%lld: record has no completion to score", rec_multi_name(in), (long long)rec_multi_line(in));
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
        if (++n == W) { flush(m, scratch, chunk, it, n, B, seq, w, field, ids, tg, nll, ent); total += n; n = 0; }
    }
    flush(m, scratch, chunk, it, n, B, seq, w, field, ids, tg, nll, ent);
    total += n;
    rec_multi_close(in);
    rec_commit(w);
    if (cut) wdl_warn("%lld records longer than %lld tokens were scored on their first %lld tokens", (long long)cut,
                      (long long)seq, (long long)seq);
    fprintf(stderr, "%s: scored %lld records\n", wdl_prog, (long long)total);
    ivec_free(&v);
    free(it); free(ids); free(tg); free(nll); free(ent); free(scratch); free(files);
    tok_free(tok);
    model_free(m);
    return 0;
}
