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
#include "common.h"
#include "gemm.h"
#include "generate.h"
#include "model.h"
#include "records.h"
#include "template.h"
#include "tokenizer.h"

extern void openblas_set_num_threads(int);

static void usage(FILE *f) {
    fprintf(f,
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
        "Checking dispatches on \"task\": equation runs the predicted equation,\n"
        "prog runs the predicted program on the hidden tests, aqua matches the\n"
        "option letter, others compare the final number (\\boxed{} first).\n");
}

typedef struct {
    int score_only;
    const char *model, *preds;
    long long max_new, batch, threads;
    gemm_precision precision;
    const char **files;
    int nfiles;
} eval_opts;

static void parse(int argc, char **argv, eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_new = 256;
    o->batch = 16;
    o->threads = sysconf(_SC_NPROCESSORS_ONLN);
    o->files = xcalloc((size_t)argc, sizeof(char *));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
        else if (!strcmp(a, "--version")) { printf("wdl-eval %s\n", wdl_version); exit(0); }
        else if (!strcmp(a, "--score-only")) o->score_only = 1;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!val) die("%s needs a value", a); o->model = val; i++; }
        else if (!strcmp(a, "--preds")) { if (!val) die("%s needs a value", a); o->preds = val; i++; }
        else if (!strcmp(a, "--max-new")) { o->max_new = wdl_parse_int(a, val); i++; }
        else if (!strcmp(a, "--batch")) { o->batch = wdl_parse_int(a, val); i++; }
        else if (!strcmp(a, "--threads")) { o->threads = wdl_parse_int(a, val); i++; }
        else if (!strcmp(a, "--precision")) { if (!val) die("%s needs a value", a); o->precision = gemm_parse_precision(a, val); i++; }
        else if (a[0] == '-' && a[1]) die("unknown option '%s' (see --help)", a);
        else o->files[o->nfiles++] = a;
    }
}

/* Check one record's prediction; add to the summary and the preds file. */
static void score_record(json_t *rec, const char *pred, eval_summary *s, rec_writer *pw) {
    char *ex = NULL;
    int ok = check_record(rec, pred, &ex);
    evsum_add(s, json_string_value(json_object_get(rec, "task")), ok);
    if (pw) {
        json_object_set_new(rec, "correct", json_boolean(ok));
        json_object_set_new(rec, "extracted", ex ? json_string(ex) : json_null());
        rec_write(pw, rec);
    }
    free(ex);
}

static void score_only(const eval_opts *o, eval_summary *s, rec_writer *pw) {
    rec_multi *m = rec_multi_open(o->files, o->nfiles);
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
                              json_t **recs, ivec *prompts, int64_t n, eval_summary *s, rec_writer *pw) {
    int64_t maxp = 1;
    for (int64_t i = 0; i < n; i++) if ((int64_t)prompts[i].n > maxp) maxp = (int64_t)prompts[i].n;
    int64_t maxlen = maxp + o->max_new + 1;
    if (maxlen > m->cfg.max_pos) maxlen = m->cfg.max_pos;
    if (maxp >= maxlen) die("a prompt of %lld tokens does not fit the model's context (%lld)", (long long)maxp,
                            (long long)m->cfg.max_pos);
    gen_state g;
    gen_init(&g, m, o->batch < n ? o->batch : n, maxlen);
    const int32_t **pp = xmalloc(sizeof(int32_t *) * (size_t)n);
    int64_t *pl = xmalloc(sizeof(int64_t) * (size_t)n);
    ivec *out = xcalloc((size_t)n, sizeof(ivec));
    for (int64_t i = 0; i < n; i++) { pp[i] = prompts[i].v; pl[i] = (int64_t)prompts[i].n; }
    int64_t made = gen_greedy(&g, pp, pl, n, tpl_end_id(tok, tpl), o->max_new, out);
    for (int64_t i = 0; i < n; i++) {
        size_t len;
        char *text = tok_decode(tok, out[i].v, out[i].n, &len);
        json_object_set_new(recs[i], "prediction", json_stringn_nocheck(text, len));
        score_record(recs[i], text, s, pw);
        free(text);
        ivec_free(&out[i]);
    }
    gen_free(&g);
    free(pp); free(pl); free(out);
    return made;
}

static double generate_all(const eval_opts *o, eval_summary *s, rec_writer *pw) {
    omp_set_num_threads((int)o->threads);
    openblas_set_num_threads((int)o->threads);
    gemm_set_precision(o->precision);
    wdl_model *m = model_load(o->model);
    wdl_tokenizer *tok = tok_load(o->model);
    wdl_template tpl = tpl_from_name(m->cfg.template_name);
    rec_multi *in = rec_multi_open(o->files, o->nfiles);
    enum { CHUNK = 256 };
    json_t *recs[CHUNK];
    ivec prompts[CHUNK];
    memset(prompts, 0, sizeof prompts);
    int64_t n = 0, made = 0;
    double t0 = wdl_now();
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
            made += generate_chunk(m, tok, tpl, o, recs, prompts, n, s, pw);
            for (int64_t i = 0; i < n; i++) json_decref(recs[i]);
            n = 0;
        }
        if (!rec) break;
    }
    double dt = wdl_now() - t0;
    for (int i = 0; i < CHUNK; i++) ivec_free(&prompts[i]);
    rec_multi_close(in);
    tok_free(tok);
    model_free(m);
    return dt > 0 ? made / dt : 0;
}

static void print_summary(const eval_summary *s, const char *model, double tps) {
    json_t *j = evsum_json(s);
    if (model) {
        json_object_set_new(j, "model", json_string(model));
        json_object_set_new(j, "tokens_per_s", json_real(tps));
    }
    char *txt = rec_dumps(j, NULL);
    printf("%s\n", txt);
    if (fflush(stdout) != 0) die("<stdout>: write error");
    free(txt);
    json_decref(j);
}

int main(int argc, char **argv) {
    wdl_set_prog(argv[0]);
    eval_opts o;
    parse(argc, argv, &o);
    if (o.model && o.score_only) die("-m and --score-only exclude each other");
    if (!o.score_only && !o.model) { usage(stderr); return 2; }
    if (o.max_new < 1 || o.batch < 1 || o.threads < 1) die("--max-new, --batch and --threads must be >= 1");
    eval_summary *s = evsum_new();
    rec_writer *pw = o.preds ? rec_create(o.preds) : NULL;
    double tps = 0;
    if (o.model) tps = generate_all(&o, s, pw);
    else score_only(&o, s, pw);
    if (pw) rec_commit(pw);
    print_summary(s, o.model, tps);
    evsum_free(s);
    free(o.files);
    return 0;
}
