/* wdl-eval: check predictions and print an accuracy summary.
 * --score-only FILE checks records that already carry "prediction".
 * -m DIR generates a completion for every record's prompt by greedy
 * decoding (KV cache, batched) and checks it. Both modes feed one
 * eval_summary and one --preds writer. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "checker.h"
#include "cli.h"
#include "checkpoint.h"
#include "common.h"
#include "gemm.h"
#include "generate.h"
#include "model.h"
#include "progress.h"
#include "records.h"
#include "template.h"
#include "tokenizer.h"
#include "utf8.h"

static const char *usage =
        "usage: wdl-eval --score-only FILE... [--preds OUT]\n"
        "       wdl-eval -m DIR [--max-new N] [--preds OUT] [FILE...]\n"
        "\n"
        "Checks answers and prints a JSON summary on stdout:\n"
        "  {\"accuracy\": x, \"n\": n, \"correct\": c, \"tasks\": {TASK: {...}}}\n"
        "--score-only  records already carry \"prediction\"; no model needed\n"
        "              (FILE '-' or none = stdin; *.zst and ARCHIVE:member work)\n"
        "-m DIR        greedy generation with the model in DIR: the prompt is\n"
        "              rendered with the model's template; decoding stops at the\n"
        "              template's end token or after --max-new tokens (256)\n"
        "--batch B     sequences decoded together (16)   --threads N (all cores)\n"
        "--precision fp32|bf16  matrix products in fp32 (OpenBLAS, default) or\n"
        "              with bf16 inputs and fp32 accumulation (oneDNN)\n"
        "--preds OUT   also write each record plus \"correct\" and \"extracted\"\n"
        "-o FILE       write the summary to FILE (atomically) instead of stdout\n"
        "Checking dispatches on \"task\": equation runs the predicted equation,\n"
        "prog runs the predicted program on the hidden tests, aqua matches the\n"
        "option letter, others compare the final number (\\boxed{} first).\n";

typedef struct {
    int score_only;
    const char *model, *preds;
    long long max_new, batch;
    const char *precision;
    cli_common cli;   /* -o, -q, the input files */
} eval_opts;

static void parse(int argc, char **argv, eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_new = 256;
    o->batch = 16;
    const cli_opt table[] = {
        {"score-only", 0, CLI_FLAG, &o->score_only},
        {"model", 'm', CLI_STR, &o->model},
        {"preds", 0, CLI_STR, &o->preds},
        {"max-new", 0, CLI_INT, &o->max_new},
        {"batch", 0, CLI_INT, &o->batch},
        {"precision", 0, CLI_STR, &o->precision},
        {0}};
    cli_parse(argc, argv, usage, table, &o->cli);
    if (o->model && o->score_only) cli_usage_error("-m and --score-only exclude each other");
    if (!o->score_only && !o->model) cli_usage_error("give -m DIR or --score-only (see --help)");
    if (o->max_new < 1 || o->batch < 1) cli_usage_error("--max-new and --batch must be >= 1");
    cli_precision(o->precision);   /* checked here, set when the model runs */
}

/* Check one record's prediction; add to the summary and the preds file. */
static void score_record(json_t *rec, const char *pred, eval_summary *s, rec_writer *pw) {
    char *ex = NULL;
    int ok = check_record(rec, pred, &ex);
    evsum_add(s, json_string_value(json_object_get(rec, "task")), ok);
    if (pw) {
        json_object_set_new(rec, "correct", json_boolean(ok));
        json_object_set_new(rec, "extracted", ex ? json_string_nocheck(ex) : json_null());
        rec_write(pw, rec);
    }
    free(ex);
}

static void score_only(const eval_opts *o, eval_summary *s, rec_writer *pw) {
    rec_multi *m = rec_multi_open(o->cli.args, o->cli.nargs);
    json_t *rec;
    while ((rec = rec_multi_next(m))) {
        json_t *p = json_object_get(rec, "prediction");
        if (!json_is_string(p))
            die("%s:%lld: record has no \"prediction\" string", rec_multi_name(m), (long long)rec_multi_line(m));
        score_record(rec, json_string_value(p), s, pw);
        json_decref(rec);
    }
    rec_multi_close(m);
}


/* Generate for a chunk of records and score them in order. */
static int64_t generate_chunk(wdl_model *m, const wdl_tokenizer *tok, wdl_template tpl, const eval_opts *o,
                              json_t **recs, ivec *prompts, int64_t n, eval_summary *s, rec_writer *pw,
                              wdl_progress *bar, int64_t done) {
    int64_t maxp = 1;
    for (int64_t i = 0; i < n; i++) if ((int64_t)prompts[i].n > maxp) maxp = (int64_t)prompts[i].n;
    int64_t maxlen = maxp + o->max_new + 1;
    if (maxlen > m->cfg.max_pos) maxlen = m->cfg.max_pos;
    if (maxp >= maxlen) die("a prompt of %lld tokens does not fit the model's context (%lld)", (long long)maxp,
                            (long long)m->cfg.max_pos);
    gen_state g;
    gen_init(&g, m, o->batch < n ? o->batch : n, maxlen);
    g.progress = bar;
    g.progress_base = done;
    const int32_t **pp = xmalloc(sizeof(int32_t *) * (size_t)n);
    int64_t *pl = xmalloc(sizeof(int64_t) * (size_t)n);
    ivec *out = xcalloc((size_t)n, sizeof(ivec));
    for (int64_t i = 0; i < n; i++) { pp[i] = prompts[i].v; pl[i] = (int64_t)prompts[i].n; }
    int64_t made = gen_greedy(&g, pp, pl, n, tpl_end_id(tok, tpl), o->max_new, out);
    for (int64_t i = 0; i < n; i++) {
        size_t len, ulen;
        char *text = tok_decode(tok, out[i].v, out[i].n, &len);
        char *u = utf8_valid(text, len, &ulen);   /* a byte model can emit any bytes */
        json_object_set_new(recs[i], "prediction", json_stringn_nocheck(u, ulen));
        score_record(recs[i], u, s, pw);
        if (u != text) free(u);
        free(text);
        ivec_free(&out[i]);
    }
    gen_free(&g);
    free(pp); free(pl); free(out);
    return made;
}

static double generate_all(const eval_opts *o, eval_summary *s, rec_writer *pw) {
    gemm_set_precision(cli_precision(o->precision));
    wdl_tokenizer *tok;
    wdl_template tpl;
    wdl_model *m = model_dir_open(o->model, &tok, &tpl);
    rec_multi *in = rec_multi_open(o->cli.args, o->cli.nargs);
    enum { CHUNK = 256 };
    json_t *recs[CHUNK];
    ivec prompts[CHUNK];
    memset(prompts, 0, sizeof prompts);
    int64_t n = 0, made = 0, done = 0;
    double t0 = wdl_now();
    wdl_progress bar;
    progress_start(&bar, "records", 0, o->cli.quiet);
    json_t *rec;
    for (;;) {
        rec = rec_multi_next(in);
        if (rec) {
            const char *sys, *prompt;
            if (!rec_prompt_completion(rec, &sys, &prompt, NULL))
                die("%s:%lld: record has no prompt", rec_multi_name(in), (long long)rec_multi_line(in));
            prompts[n].n = 0;
            size_t np;
            tpl_encode(tok, tpl, sys, prompt, NULL, &prompts[n], &np);
            recs[n++] = rec;
        }
        if (n == CHUNK || (!rec && n > 0)) {
            made += generate_chunk(m, tok, tpl, o, recs, prompts, n, s, pw, &bar, done);
            for (int64_t i = 0; i < n; i++) json_decref(recs[i]);
            done += n;
            n = 0;
        }
        if (!rec) break;
    }
    progress_end(&bar, done, NULL);
    double dt = wdl_now() - t0;
    for (int i = 0; i < CHUNK; i++) ivec_free(&prompts[i]);
    rec_multi_close(in);
    tok_free(tok);
    model_free(m);
    return dt > 0 ? made / dt : 0;
}

static void write_summary(const eval_summary *s, const char *model, double tps, const char *out) {
    json_t *j = evsum_json(s);
    if (model) {
        json_object_set_new(j, "model", json_string(model));
        json_object_set_new(j, "tokens_per_s", json_real(tps));
    }
    rec_writer *w = rec_create(out);
    rec_write(w, j);
    rec_commit(w);
    json_decref(j);
}

int main(int argc, char **argv) {
    eval_opts o;
    parse(argc, argv, &o);
    eval_summary *s = evsum_new();
    rec_writer *pw = o.preds ? rec_create(o.preds) : NULL;
    double tps = 0;
    if (o.model) tps = generate_all(&o, s, pw);
    else score_only(&o, s, pw);
    if (pw) rec_commit(pw);
    write_summary(s, o.model, tps, o.cli.output);
    evsum_free(s);
    free(o.cli.args);
    return 0;
}
