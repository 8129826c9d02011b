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
#include "dataset.h"
#include "dist.h"
#include "gemm.h"
#include "generate.h"
#include "model.h"
#include "progress.h"
#include "records.h"
#include "shard.h"
#include "template.h"
#include "tokenizer.h"
#include "utf8.h"

static const char *usage =
        "usage: wdl-eval --score-only FILE... [--preds OUT]\n"
        "       wdl-eval -m DIR [--max-new N] [--preds OUT] [FILE...]\n"
        "       wdl-eval --merge-summaries [-o OUT] PART...\n"
        "\n"
        "Checks answers and prints a JSON summary on stdout:\n"
        "  {\"accuracy\": x, \"n\": n, \"correct\": c, \"tasks\": {TASK: {...}}}\n"
        "--score-only  records already carry \"prediction\"; no model needed\n"
        "              (FILE '-' or none = stdin; *.zst and ARCHIVE:member work)\n"
        "-m DIR        greedy generation with the model in DIR: the prompt is\n"
        "              rendered with the model's template; decoding stops at the\n"
        "              template's end token or after --max-new tokens (256)\n"
        "--batch B     sequences decoded together (16)   --threads N (usable CPUs)\n"
        "--precision P fp32 (default; our own GEMM where the CPU has AVX2\n"
        "              and FMA), fp32-openblas (OpenBLAS throughout: the reference)\n"
        "              or bf16 (bf16 inputs, fp32 accumulation, oneDNN)\n"
        "--preds OUT   also write each record plus \"correct\" and \"extracted\"\n"
        "-o FILE       write the summary to FILE (atomically) instead of stdout\n"
        "--shard K/N   only part K (0..N-1) of N of the input files, cut at\n"
        "              windows of 256 records: the N --preds files concatenated\n"
        "              in order are those of one run; the summary is a partial\n"
        "--merge-summaries  the summaries of all N shards -> the summary\n"
        "Under mpirun -np N the ranks share the windows (--threads is per rank):\n"
        "same predictions and counts as one process.\n"
        "Checking dispatches on \"task\": equation runs the predicted equation,\n"
        "prog runs the predicted program on the hidden tests, aqua matches the\n"
        "option letter, others compare the final number (\\boxed{} first).\n";

/* Records are generated for and checked a window at a time. */
enum { WINDOW = 256 };
/* --max-new from which the model's BF16 matrices are copied into huge
 * pages: the copy's load time is won back after about a hundred steps */
enum { DECODE_COPY_MIN = 128 };

typedef struct {
    int score_only, merge;
    shard_spec sp;
    const char *model, *preds;
    long long max_new, batch;
    const char *precision;
    cli_common cli;   /* -o, -q, the input files */
} eval_opts;

static void parse(int argc, char **argv, eval_opts *o) {
    memset(o, 0, sizeof *o);
    const char *shard = NULL;
    o->max_new = 256;
    o->batch = 16;
    const cli_opt table[] = {
        {"score-only", 0, CLI_FLAG, &o->score_only},
        {"model", 'm', CLI_STR, &o->model},
        {"preds", 0, CLI_STR, &o->preds},
        {"max-new", 0, CLI_INT, &o->max_new},
        {"batch", 0, CLI_INT, &o->batch},
        {"precision", 0, CLI_STR, &o->precision},
        {"shard", 0, CLI_STR, &shard},
        {"merge-summaries", 0, CLI_FLAG, &o->merge},
        {0}};
    cli_parse_mpi(argc, argv, usage, table, &o->cli);
    if (o->merge) {
        if (o->model || o->score_only || o->preds || shard)
            cli_usage_error("--merge-summaries takes only -o OUT and the summaries");
        if (dist_launched()) cli_usage_error("--merge-summaries: run it once, without mpirun");
        return;
    }
    if (o->model && o->score_only) cli_usage_error("-m and --score-only exclude each other");
    cli_distinct_outputs(2, (const char *const[]){"-o", "--preds"}, (const char *const[]){o->cli.output, o->preds});
    if (o->preds && !strcmp(o->preds, "-") && (!o->cli.output || !strcmp(o->cli.output, "-")))
        cli_usage_error("--preds -: stdout carries the summary; give it -o FILE");
    if (!o->score_only && !o->model) cli_usage_error("give -m DIR or --score-only (see --help)");
    if (o->max_new < 1 || o->batch < 1) cli_usage_error("--max-new and --batch must be >= 1");
    cli_precision(o->precision);   /* checked here, set when the model runs */
    o->sp = shard_parse(shard, o->cli.args, o->cli.nargs);
}

/* A window's results on their way to rank 0: the tokens generated, then
 * per record its correctness (one byte) and task (NUL-terminated). */
static void check_into(json_t *rec, const char *pred, shard_buf *res) {
    char *ex = NULL;
    char ok = (char)check_record(rec, pred, &ex);
    json_object_set_new(rec, "correct", json_boolean(ok));
    json_object_set_new(rec, "extracted", ex ? json_string_nocheck(ex) : json_null());
    const char *task = json_string_value(json_object_get(rec, "task"));
    if (!task) task = "unknown";
    shard_buf_add(res, &ok, 1);
    shard_buf_add(res, task, strlen(task) + 1);
    free(ex);
}

typedef struct {
    const eval_opts *o;
    wdl_model *m;
    wdl_tokenizer *tok;
    wdl_template tpl;
    ivec prompts[WINDOW];
    /* rank 0: the run so far */
    eval_summary *s;
    int64_t made, done;
    wdl_progress *bar;
} evaluator;

/* A record that could only count as wrong stops the run, naming it. */
static void gradable(const shard_window *w, int64_t i) {
    const char *why = check_gradable(w->rec[i]);
    if (why) die("%s:%lld: record %s", w->name[i], (long long)w->line[i], why);
}

/* --score-only: the records carry their prediction. */
static void work_check(shard_window *w, shard_buf *res, void *ctx) {
    int64_t made = 0;
    shard_buf_add(res, &made, sizeof made);
    for (int64_t i = 0; i < w->n; i++) {
        json_t *p = json_object_get(w->rec[i], "prediction");
        if (!json_is_string(p))
            die("%s:%lld: record has no \"prediction\" string", w->name[i], (long long)w->line[i]);
        gradable(w, i);
        check_into(w->rec[i], json_string_value(p), res);
    }
}

/* -m: greedy generation for the window's prompts (batches of --batch in
 * input order), then the check. */
static void work_generate(shard_window *w, shard_buf *res, void *ctx) {
    evaluator *c = ctx;
    const int64_t n = w->n;
    wdl_model *m = c->m;
    int64_t maxp = 1, longest = 0;
    for (int64_t i = 0; i < n; i++) {
        gradable(w, i);   /* before any generation */
        example_prompt(&c->prompts[i], w->rec[i], c->tok, c->tpl, w->name[i], w->line[i]);
        if ((int64_t)c->prompts[i].n > maxp) { maxp = (int64_t)c->prompts[i].n; longest = i; }
    }
    int64_t maxlen = maxp + c->o->max_new + 1;
    if (maxlen > m->cfg.max_pos) maxlen = m->cfg.max_pos;
    if (maxp >= maxlen)
        die("%s:%lld: a prompt of %lld tokens does not fit the model's context (%lld)", w->name[longest],
            (long long)w->line[longest], (long long)maxp, (long long)m->cfg.max_pos);
    gen_state g;
    gen_init(&g, m, c->o->batch < n ? c->o->batch : n, maxlen);
    g.progress = c->bar;
    g.progress_base = c->done;
    const int32_t **pp = xmalloc(sizeof(int32_t *) * (size_t)n);
    int64_t *pl = xmalloc(sizeof(int64_t) * (size_t)n);
    ivec *out = xcalloc((size_t)n, sizeof(ivec));
    for (int64_t i = 0; i < n; i++) { pp[i] = c->prompts[i].v; pl[i] = (int64_t)c->prompts[i].n; }
    int64_t made = gen_greedy(&g, pp, pl, n, tpl_end_id(c->tok, c->tpl), c->o->max_new, out);
    shard_buf_add(res, &made, sizeof made);
    for (int64_t i = 0; i < n; i++) {
        size_t len, ulen;
        char *text = tok_decode(c->tok, out[i].v, out[i].n, &len);
        char *u = utf8_text(text, len, &ulen);   /* a byte model can emit any bytes, NUL too */
        json_object_set_new(w->rec[i], "prediction", json_stringn_nocheck(u, ulen));
        check_into(w->rec[i], u, res);
        if (u != text) free(u);
        free(text);
        ivec_free(&out[i]);
    }
    gen_free(&g);
    free(pp); free(pl); free(out);
}

static void fold(int64_t index, const char *res, size_t n, void *ctx) {
    evaluator *c = ctx;
    int64_t made;
    memcpy(&made, res, sizeof made);
    c->made += made;
    for (size_t o = sizeof made; o < n;) {
        int ok = res[o++];
        evsum_add(c->s, res + o, ok);
        o += strlen(res + o) + 1;
        c->done++;
    }
}

/* The summary: accuracy overall and per task, with -m the model and its
 * decoding rate; a shard's adds what --merge-summaries needs. */
static json_t *summary_json(const eval_summary *s, const char *model, int64_t made, double dt, shard_spec sp) {
    json_t *j = evsum_json(s);
    if (model) {
        json_object_set_new(j, "model", json_string(model));
        json_object_set_new(j, "tokens_per_s", json_real(dt > 0 ? made / dt : 0));
    }
    if (sp.n) {
        shard_tag(j, sp, WINDOW);
        json_object_set_new(j, "tokens", json_integer(made));
        json_object_set_new(j, "seconds", json_real(dt));
    }
    return j;
}

static void write_json(json_t *j, const char *out) {
    rec_writer *w = rec_create(out);
    rec_write(w, j);
    rec_commit(w);
    json_decref(j);
}

/* A shard summary's count: a non-negative integer, or the part is not one
 * wdl-eval wrote. */
static int64_t part_count(const json_t *obj, const char *key, int k, int np, const char *where) {
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        die("shard %d/%d: %s\"%s\" is not a count (not a wdl-eval summary?)", k, np, where, key);
    return json_integer_value(v);
}

/* --merge-summaries: counts add up exactly; the rate is the shards'
 * tokens over their summed seconds (one process's rate). */
static void merge_summaries(const char *const *files, int n, const char *out) {
    if (!n) cli_usage_error("--merge-summaries: give the summaries of every shard");
    int np;
    json_t **part = shard_parts(files, n, &np);
    eval_summary *s = evsum_new();
    const char *model = rec_str(part[0], "model");
    int64_t made = 0;
    double dt = 0;
    for (int k = 0; k < np; k++) {
        json_t *tasks = json_object_get(part[k], "tasks"), *v;
        const char *task;
        if (!json_is_object(tasks)) die("shard %d/%d: no \"tasks\" (not a wdl-eval summary?)", k, np);
        json_object_foreach(tasks, task, v) {
            char where[160];
            snprintf(where, sizeof where, "task %.100s: ", task);
            const int64_t tn = part_count(v, "n", k, np, where), tc = part_count(v, "correct", k, np, where);
            if (tc > tn) die("shard %d/%d: task %s: %lld correct of %lld", k, np, task, (long long)tc, (long long)tn);
            evsum_add_n(s, task, tn, tc);
        }
        const char *mk = rec_str(part[k], "model");
        if ((mk == NULL) != (model == NULL) || (mk && strcmp(mk, model)))
            die("shard %d/%d: model %s, but shard 0/%d: %s", k, np, mk ? mk : "none", np, model ? model : "none");
        if (json_object_get(part[k], "tokens")) made += part_count(part[k], "tokens", k, np, "");
        json_t *sec = json_object_get(part[k], "seconds");
        if (sec && !(json_is_number(sec) && json_number_value(sec) >= 0))
            die("shard %d/%d: \"seconds\" is not a duration (not a wdl-eval summary?)", k, np);
        dt += sec ? json_number_value(sec) : 0;
    }
    write_json(summary_json(s, model, made, dt, (shard_spec){0, 0}), out);
    evsum_free(s);
    shard_parts_free(part, np);
}

int main(int argc, char **argv) {
    eval_opts o;
    parse(argc, argv, &o);
    if (o.merge) {
        merge_summaries(o.cli.args, o.cli.nargs, o.cli.output);
        free(o.cli.args);
        return 0;
    }
    dist_init();
    const int root = dist_rank() == 0;
    evaluator *c = xcalloc(1, sizeof *c);
    c->o = &o;
    c->s = evsum_new();
    if (o.model) {
        gemm_set_precision(cli_precision(o.precision));
        /* bf16: weights held once in bf16; for a long run (128 new tokens
         * or more per batch), in huge pages (see model_load_decode), but
         * not under mpirun, where the ranks share the mapped file's pages
         * and copies would hold one per rank */
        c->m = model_dir_open_decode(o.model, &c->tok, &c->tpl, o.max_new >= DECODE_COPY_MIN && dist_size() == 1);
    }
    rec_writer *pw = root && o.preds ? rec_create(o.preds) : NULL;
    wdl_progress bar;
    progress_start(&bar, "records", 0, o.cli.quiet || !root || !o.model);
    c->bar = root && o.model ? &bar : NULL;
    shard_job job = {.work = o.model ? work_generate : work_check, .fold = fold, .ctx = c, .window = WINDOW,
                     .out = pw, .bar = c->bar};
    double t0 = wdl_now();
    shard_run(&job, o.cli.args, o.cli.nargs, o.sp);
    double dt = wdl_now() - t0;
    if (root) {
        if (o.model) progress_end(&bar, c->done, NULL);
        if (pw) rec_commit(pw);
        write_json(summary_json(c->s, o.model, c->made, dt, o.sp), o.cli.output);
    }
    dist_finish();
    for (int i = 0; i < WINDOW; i++) ivec_free(&c->prompts[i]);
    if (c->m) { tok_free(c->tok); model_free(c->m); }
    evsum_free(c->s);
    free(c);
    free(o.cli.args);
    return 0;
}
