/* wdl-train: supervised fine-tuning, or WD-JT (mixed-logit joint training
 * of a strong and a weak model) with --weak. See --help. */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common.h"
#include "dataset.h"
#include "gemm.h"
#include "model.h"
#include "optim.h"
#include "probe.h"
#include "records.h"
#include "step.h"

extern void openblas_set_num_threads(int);

static const char *usage =
    "usage: wdl-train -m DIR -o OUT [options] [FILE...]\n"
    "Fine-tune the model in DIR on JSON-Lines records (FILE... or stdin; .zst and\n"
    "ARCHIVE:member accepted) and write the result to the model directory OUT.\n"
    "Loss on completion tokens only (the prompt is masked), mean over the tokens of\n"
    "each optimizer step. WD-JT: with --weak, each batch runs both models, trains on\n"
    "softmax(lambda*z_strong + (1-lambda)*z_weak) and updates both.\n"
    "  --weak DIR         weak model for WD-JT          --lambda X   strong weight (0.5)\n"
    "  --freeze-weak      do not update the weak model  --weak-out DIR  save trained weak\n"
    "  --weak-constant    control arm: weak logits = constant (SFT at temperature 1/lambda)\n"
    "  --epochs E (1)     --steps N (overrides epochs)  --batch B (8)   --accum A (1)\n"
    "  --seq T (512)      max tokens per example (longer ones are cut at the end)\n"
    "  --lr X (1e-4)      --warmup W (0.1: fraction of steps if < 1, else steps)\n"
    "  --schedule cosine|linear|constant (cosine)      --min-lr F (0.1: final lr = F*lr)\n"
    "  --wd X (0.1)       --beta1 (0.9) --beta2 (0.95) --eps (1e-8)   --clip X (1.0; 0 = off)\n"
    "  --order shuffle|buckets|file (shuffle): per-epoch order; buckets = easy to hard\n"
    "  --group G (16)     shuffle: batches drawn from windows of G batches sorted by\n"
    "                     length (less padding); 1 = plain shuffle\n"
    "  --lm               loss on every token (pretraining on full text)\n"
    "  --seed S (0)       --threads N (all cores)       --bf16  write weights as BF16\n"
    "  --precision fp32|bf16 (fp32): matrix products in fp32 (OpenBLAS) or with bf16\n"
    "                     inputs and fp32 accumulation (oneDNN); weights, gradients,\n"
    "                     optimizer state, norms and loss stay fp32\n"
    "  --log FILE         JSONL log, one object per step (+ probe diagnostics)\n"
    "  --probe-every N (10): diagnostics on a fixed probe batch every N steps (0 = off)\n"
    "  --save-every N     checkpoint to OUT.ckpt every N steps   --resume  continue from it\n"
    "  -q                 quiet\n";

typedef struct {
    const char *model, *out, *weak, *weak_out, *log, *order, *schedule;
    double lambda, lr, warmup, min_lr, wd, beta1, beta2, eps, clip;
    int freeze_weak, weak_constant, lm, bf16, resume, quiet;
    gemm_precision precision;
    int64_t epochs, steps, batch, accum, seq, seed, threads, probe_every, save_every, group;
    const char **files;
    int nfiles;
} opts;

static void parse(int argc, char **argv, opts *o) {
    *o = (opts){.lambda = 0.5, .lr = 1e-4, .warmup = 0.1, .min_lr = 0.1, .wd = 0.1, .beta1 = 0.9,
                .beta2 = 0.95, .eps = 1e-8, .clip = 1.0, .epochs = 1, .batch = 8, .accum = 1, .seq = 512,
                .probe_every = 10, .group = 16, .order = "shuffle", .schedule = "cosine"};
    o->threads = sysconf(_SC_NPROCESSORS_ONLN);
    o->files = xcalloc((size_t)argc, sizeof(char *));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define ARG() wdl_arg(argc, argv, &i)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(usage, stdout); exit(0); }
        else if (!strcmp(a, "-m")) o->model = ARG();
        else if (!strcmp(a, "-o")) o->out = ARG();
        else if (!strcmp(a, "--weak")) o->weak = ARG();
        else if (!strcmp(a, "--weak-out")) o->weak_out = ARG();
        else if (!strcmp(a, "--log")) o->log = ARG();
        else if (!strcmp(a, "--order")) o->order = ARG();
        else if (!strcmp(a, "--schedule")) o->schedule = ARG();
        else if (!strcmp(a, "--lambda")) o->lambda = wdl_parse_double(a, ARG());
        else if (!strcmp(a, "--lr")) o->lr = wdl_parse_double(a, ARG());
        else if (!strcmp(a, "--warmup")) o->warmup = wdl_parse_double(a, ARG());
        else if (!strcmp(a, "--min-lr")) o->min_lr = wdl_parse_double(a, ARG());
        else if (!strcmp(a, "--wd")) o->wd = wdl_parse_double(a, ARG());
        else if (!strcmp(a, "--beta1")) o->beta1 = wdl_parse_double(a, ARG());
        else if (!strcmp(a, "--beta2")) o->beta2 = wdl_parse_double(a, ARG());
        else if (!strcmp(a, "--eps")) o->eps = wdl_parse_double(a, ARG());
        else if (!strcmp(a, "--clip")) o->clip = wdl_parse_double(a, ARG());
        else if (!strcmp(a, "--epochs")) o->epochs = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--steps")) o->steps = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--batch")) o->batch = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--accum")) o->accum = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--seq")) o->seq = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--seed")) o->seed = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--threads")) o->threads = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--precision")) o->precision = gemm_parse_precision(a, ARG());
        else if (!strcmp(a, "--probe-every")) o->probe_every = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--save-every")) o->save_every = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--group")) o->group = wdl_parse_int(a, ARG());
        else if (!strcmp(a, "--freeze-weak")) o->freeze_weak = 1;
        else if (!strcmp(a, "--weak-constant")) o->weak_constant = 1;
        else if (!strcmp(a, "--lm")) o->lm = 1;
        else if (!strcmp(a, "--bf16")) o->bf16 = 1;
        else if (!strcmp(a, "--resume")) o->resume = 1;
        else if (!strcmp(a, "-q")) o->quiet = 1;
        else if (a[0] == '-' && a[1]) die("unknown option '%s' (see --help)", a);
        else o->files[o->nfiles++] = a;
#undef ARG
    }
    if (!o->model) die("-m DIR is required (see --help)");
    if (!o->out) die("-o OUT is required (see --help)");
    if (o->batch < 1 || o->accum < 1 || o->seq < 2 || o->epochs < 1 || o->steps < 0 || o->threads < 1 || o->group < 1)
        die("--batch, --accum, --epochs, --threads, --group must be >= 1, --seq >= 2, --steps >= 0");
    if (!(o->lambda > 0 && o->lambda <= 1)) die("--lambda must be in (0, 1]");
    if (!(o->lr > 0) || o->warmup < 0 || o->min_lr < 0 || o->min_lr > 1 || o->wd < 0 || o->clip < 0 ||
        !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0))
        die("bad optimizer setting (--lr > 0, --warmup >= 0, 0 <= --min-lr <= 1, --wd/--clip >= 0, betas in [0,1))");
    if ((o->freeze_weak || o->weak_out) && !o->weak) die("--freeze-weak/--weak-out need --weak");
    if (o->weak_constant && o->weak) die("--weak-constant replaces --weak; give one of them");
    if (strcmp(o->order, "shuffle") && strcmp(o->order, "buckets") && strcmp(o->order, "file"))
        die("--order: unknown order '%s' (shuffle, buckets, file)", o->order);
    lr_schedule_from_name(o->schedule);
}

/* ---- epoch order ---- */
static int64_t *bucket_key;
static int cmp_bucket(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    if (bucket_key[x] != bucket_key[y]) return bucket_key[x] < bucket_key[y] ? -1 : 1;
    return 0;
}
static const dataset *len_key;
/* by length, ties by example index: a total order, so qsort is deterministic */
static int cmp_len(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    int64_t lx = len_key->ex[x].len, ly = len_key->ex[y].len;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}
static void epoch_order(const opts *o, const dataset *d, int64_t epoch, int64_t *ord) {
    for (int64_t i = 0; i < d->n; i++) ord[i] = i;
    if (!strcmp(o->order, "file")) return;
    wdl_rng r;
    rng_seed(&r, (uint64_t)o->seed * 0x100000001b3ULL + (uint64_t)epoch + 1);
    for (int64_t i = d->n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1), t = ord[i];
        ord[i] = ord[j]; ord[j] = t;
    }
    if (!strcmp(o->order, "shuffle") && o->group > 1) {
        /* length grouping: sort windows of `group` batches by length so a
         * batch pads little, then shuffle the order of the batches */
        int64_t B = o->batch, W = o->group * B, nb = (d->n + B - 1) / B;
        len_key = d;
        for (int64_t w0 = 0; w0 < d->n; w0 += W)
            qsort(ord + w0, (size_t)(d->n - w0 < W ? d->n - w0 : W), sizeof(int64_t), cmp_len);
        int64_t *bo = xmalloc(sizeof(int64_t) * (size_t)nb), *tmp = xmalloc(sizeof(int64_t) * (size_t)d->n), k = 0;
        /* the last (possibly short) batch stays last so batch boundaries hold */
        for (int64_t i = 0; i < nb; i++) bo[i] = i;
        for (int64_t i = nb - 2; i > 0; i--) {
            int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1), t = bo[i];
            bo[i] = bo[j]; bo[j] = t;
        }
        for (int64_t i = 0; i < nb; i++)
            for (int64_t e = bo[i] * B; e < (bo[i] + 1) * B && e < d->n; e++) tmp[k++] = ord[e];
        memcpy(ord, tmp, sizeof(int64_t) * (size_t)d->n);
        free(bo); free(tmp);
    }
    if (!strcmp(o->order, "buckets")) {
        /* easy to hard: stable merge of the shuffled order by bucket */
        int64_t *rank = xmalloc(sizeof(int64_t) * (size_t)d->n);
        bucket_key = xmalloc(sizeof(int64_t) * (size_t)d->n);
        for (int64_t i = 0; i < d->n; i++) rank[ord[i]] = i;
        for (int64_t i = 0; i < d->n; i++) bucket_key[i] = d->ex[i].bucket * d->n + rank[i];
        qsort(ord, (size_t)d->n, sizeof(int64_t), cmp_bucket);
        free(rank); free(bucket_key);
    }
}

/* ---- checkpoints: OUT.ckpt = model + optimizer moments + trainer.json ---- */
static void write_model_dir(const wdl_model *m, const char *src_dir, const char *dir, int bf16) {
    wdl_mkdirs(dir);
    model_write_dir(m, dir, bf16);
    model_copy_tokenizer(src_dir, dir);
}

static void save_side(const wdl_model *m, const char *src, const char *dir) {
    write_model_dir(m, src, dir, 0);
    char *p = wdl_path_join(dir, "optimizer.safetensors");
    model_write_role(m, m->m, p, "m.");
    char *q = wdl_path_join(dir, "optimizer_v.safetensors");
    model_write_role(m, m->v, q, "v.");
    free(p); free(q);
}

static void save_ckpt(const opts *o, const char *ckpt, wdl_model *s, wdl_model *w, int64_t step,
                      int64_t total, const dataset *d) {
    char *tmp = wdl_tmp_name(ckpt);
    wdl_rmtree(tmp);
    wdl_tmp_register(tmp);
    save_side(s, o->model, tmp);
    if (w && !o->freeze_weak) {
        char *wd = wdl_path_join(tmp, "weak");
        save_side(w, o->weak, wd);
        free(wd);
    }
    json_t *j = json_pack("{s:I,s:I,s:I,s:s,s:I}", "step", (json_int_t)step, "total_steps", (json_int_t)total,
                          "seed", (json_int_t)o->seed, "data_hash", "", "examples", (json_int_t)d->n);
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)d->hash);
    json_object_set_new(j, "data_hash", json_string(hash));
    char *tj = wdl_path_join(tmp, "trainer.json");
    if (json_dump_file(j, tj, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) die("%s: cannot write", tj);
    json_decref(j);
    free(tj);
    wdl_commit(tmp, ckpt);
    free(tmp);
}

static void load_side(wdl_model *m, const char *dir) {
    wdl_model *c = model_load(dir);
    if (c->nparams != m->nparams) die("%s: checkpoint does not match the model's config", dir);
    memcpy(m->params, c->params, m->nparams * sizeof(float));
    model_free(c);
    char *p = wdl_path_join(dir, "optimizer.safetensors"), *q = wdl_path_join(dir, "optimizer_v.safetensors");
    model_read_role(m, m->m, p, "m.");
    model_read_role(m, m->v, q, "v.");
    free(p); free(q);
}

static int64_t load_ckpt(const opts *o, const char *ckpt, wdl_model *s, wdl_model *w, int64_t total,
                         const dataset *d) {
    char *tj = wdl_path_join(ckpt, "trainer.json");
    json_error_t e;
    json_t *j = json_load_file(tj, 0, &e);
    if (!j) die("%s:%d: %s", tj, e.line, e.text);
    int64_t step = json_integer_value(json_object_get(j, "step"));
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)d->hash);
    const char *h = json_string_value(json_object_get(j, "data_hash"));
    if (!h || strcmp(h, hash)) die("%s: checkpoint was made on different training data", tj);
    if (json_integer_value(json_object_get(j, "total_steps")) != total ||
        json_integer_value(json_object_get(j, "seed")) != o->seed)
        die("%s: checkpoint was made with a different --seed or number of steps", tj);
    if (step < 0 || step > total) die("%s: bad step %lld", tj, (long long)step);
    json_decref(j);
    free(tj);
    load_side(s, ckpt);
    if (w && !o->freeze_weak) {
        char *wd = wdl_path_join(ckpt, "weak");
        load_side(w, wd);
        free(wd);
    }
    return step;
}

static void progress(int64_t step, int64_t total, double loss, double tps, double elapsed) {
    if (!isatty(2)) return;
    double eta = step > 0 ? elapsed / step * (total - step) : 0;
    int w = 30, f = (int)(w * step / (total ? total : 1));
    fprintf(stderr, "\r[%.*s%*s] %lld/%lld loss %.4f %.0f tok/s ETA %.0fs ", f,
            "##############################", w - f, "", (long long)step, (long long)total, loss, tps, eta);
    if (step == total) fputc('\n', stderr);
}

static void log_probe(FILE *lf, json_t *rec, wdl_model *m, const int32_t *ids, const int32_t *tg,
                      int64_t B, int64_t T) {
    probe_stats p;
    probe_run(m, ids, tg, B, T, &p);
    json_object_set_new(rec, "probe_target_logit", json_real(p.target_logit));
    json_object_set_new(rec, "probe_nontarget_logit", json_real(p.nontarget_logit));
    json_object_set_new(rec, "probe_margin", json_real(p.margin));
    json_object_set_new(rec, "probe_nontarget_mass", json_real(p.nontarget_mass));
    json_object_set_new(rec, "probe_nontarget_grad_norm", json_real(p.nontarget_grad_norm));
    (void)lf;
}

static void log_write(FILE *lf, json_t *rec) {
    if (!lf) return;
    char *s = rec_dumps(rec, NULL);
    fprintf(lf, "%s\n", s);
    fflush(lf);
    free(s);
}

int main(int argc, char **argv) {
    wdl_set_prog(argv[0]);
    opts o;
    parse(argc, argv, &o);
    omp_set_num_threads((int)o.threads);
    openblas_set_num_threads((int)o.threads);
    gemm_set_precision(o.precision);

    wdl_model *s = model_load(o.model), *w = NULL;
    wdl_tokenizer *tok = tok_load(o.model);
    if (tok_vocab_size(tok) > s->cfg.vocab)
        die("%s: tokenizer has %lld ids but vocab_size is %lld", o.model, (long long)tok_vocab_size(tok),
            (long long)s->cfg.vocab);
    wdl_template tpl = tpl_from_name(s->cfg.template_name);
    if (o.weak) {
        w = model_load(o.weak);
        if (w->cfg.vocab != s->cfg.vocab || strcmp(w->cfg.tokenizer, s->cfg.tokenizer) ||
            strcmp(w->cfg.template_name, s->cfg.template_name))
            die("%s: weak model's vocabulary/tokenizer/template differ from %s", o.weak, o.model);
    }
    dataset d;
    dataset_load(&d, o.files, o.nfiles, tok, tpl, o.seq, o.lm);
    if (d.n == 0) die("%s: no training examples", o.nfiles ? o.files[0] : "<stdin>");
    if (d.truncated && !o.quiet) wdl_warn("%lld examples longer than --seq %lld were cut", (long long)d.truncated, (long long)o.seq);
    if (d.dropped && !o.quiet) wdl_warn("%lld examples had no loss token within --seq and were skipped", (long long)d.dropped);

    const int64_t B = o.batch, micro_per_epoch = (d.n + B - 1) / B;
    const int64_t steps_per_epoch = (micro_per_epoch + o.accum - 1) / o.accum;
    const int64_t total = o.steps ? o.steps : o.epochs * steps_per_epoch;
    const int64_t warmup = o.warmup < 1 ? (int64_t)llround(o.warmup * total) : (int64_t)o.warmup;
    const int64_t Tmax = dataset_max_len(&d);
    lr_schedule sched = lr_schedule_from_name(o.schedule);
    adamw_cfg ac = {o.lr, o.beta1, o.beta2, o.eps, o.wd, o.clip};

    model_alloc_grads(s); model_alloc_moments(s);
    model_alloc_acts(s, B, Tmax, 1, !o.quiet);
    if (w) {
        int train_weak = !o.freeze_weak;
        if (train_weak) { model_alloc_grads(w); model_alloc_moments(w); }
        model_alloc_acts(w, B, Tmax, train_weak ? ACTS_TRAIN : ACTS_STREAM, !o.quiet);
    }
    if (!o.quiet)
        fprintf(stderr, "%s: %lld examples, %lld steps (%lld per epoch) of %lld x %lld sequences, warm-up %lld, %s%s\n",
                wdl_prog, (long long)d.n, (long long)total, (long long)steps_per_epoch, (long long)o.accum,
                (long long)B, (long long)warmup, w ? "WD-JT" : (o.weak_constant ? "constant-weak control" : "SFT"),
                w && o.freeze_weak ? " (weak frozen)" : "");

    size_t ckl = strlen(o.out) + 8;
    char *ckpt = xmalloc(ckl);
    snprintf(ckpt, ckl, "%s.ckpt", o.out);
    int64_t start = 0;
    if (o.resume && wdl_is_dir(ckpt)) {
        start = load_ckpt(&o, ckpt, s, w, total, &d);
        if (!o.quiet) fprintf(stderr, "%s: resuming from %s at step %lld\n", wdl_prog, ckpt, (long long)start);
    }

    FILE *lf = NULL;
    if (o.log) {
        /* keep the log lines of the steps a resumed run already made */
        if (start > 0 && wdl_exists(o.log)) {
            size_t len;
            char *old = wdl_read_file(o.log, &len), *line = old, *nl;
            lf = fopen(o.log, "w");
            if (!lf) die("%s: cannot write log", o.log);
            while ((nl = strchr(line, '\n'))) {
                *nl = 0;
                json_t *r = json_loads(line, 0, NULL);
                if (r && json_integer_value(json_object_get(r, "step")) <= start) fprintf(lf, "%s\n", line);
                json_decref(r);
                line = nl + 1;
            }
            free(old);
        } else if (!(lf = fopen(o.log, "w"))) die("%s: cannot write log", o.log);
    }

    wd_step st;
    step_init(&st, s, w, o.lambda);
    st.freeze_weak = o.freeze_weak;
    st.weak_constant = o.weak_constant;
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)(o.accum * B * Tmax));
    int32_t *tg = xmalloc(sizeof(int32_t) * (size_t)(o.accum * B * Tmax));
    float *wt = xmalloc(sizeof(float) * (size_t)(B * Tmax));
    int64_t *ord = xmalloc(sizeof(int64_t) * (size_t)d.n), cur_epoch = -1;
    int64_t mT[64 > o.accum ? 64 : o.accum], mB[64 > o.accum ? 64 : o.accum];

    /* probe batch: the first B examples in file order, fixed for the run */
    int64_t pB = B < d.n ? B : d.n, *pidx = xmalloc(sizeof(int64_t) * (size_t)pB), pl, pr;
    for (int64_t i = 0; i < pB; i++) pidx[i] = i;
    int32_t *pids = xmalloc(sizeof(int32_t) * (size_t)(pB * Tmax)), *ptg = xmalloc(sizeof(int32_t) * (size_t)(pB * Tmax));
    int64_t pT = dataset_batch(&d, pidx, pB, 0, pids, ptg, &pl, &pr);
    if (o.probe_every > 0 && start == 0 && lf) {
        json_t *r = json_pack("{s:I}", "step", (json_int_t)0);
        log_probe(lf, r, s, pids, ptg, pB, pT);
        log_write(lf, r);
        json_decref(r);
    }

    int32_t pad = s->cfg.eos_id >= 0 && s->cfg.eos_id < s->cfg.vocab ? (int32_t)s->cfg.eos_id : 0;
    double t0 = wdl_now(), pad_pos = 0, all_pos = 0, last_loss = 0;
    for (int64_t step = start; step < total; step++) {
        double ts = wdl_now();
        /* gather this step's micro-batches */
        int64_t nm = 0, nloss = 0, nreal = 0;
        for (int64_t j = 0; j < o.accum; j++) {
            int64_t g = step * o.accum + j, epoch = g / micro_per_epoch, pos = g % micro_per_epoch;
            if (!o.steps && epoch >= o.epochs) break;
            if (epoch != cur_epoch) { epoch_order(&o, &d, epoch, ord); cur_epoch = epoch; }
            int64_t b0 = pos * B, nb = d.n - b0 < B ? d.n - b0 : B, nl, nr;
            mT[nm] = dataset_batch(&d, ord + b0, nb, pad, ids + nm * B * Tmax, tg + nm * B * Tmax, &nl, &nr);
            mB[nm] = nb;
            nloss += nl; nreal += nr;
            pad_pos += (double)(nb * mT[nm] - nr); all_pos += (double)(nb * mT[nm]);
            nm++;
        }
        if (nloss == 0) nloss = 1;
        double lr = lr_at(sched, o.lr, step, total, warmup, o.min_lr);
        model_zero_grad(s);
        if (w && !o.freeze_weak) model_zero_grad(w);
        double loss = 0;
        for (int64_t j = 0; j < nm; j++) {
            int64_t n = mB[j] * mT[j];
            for (int64_t i = 0; i < n; i++) wt[i] = 1.0f / (float)nloss;
            loss += step_train(&st, ids + j * B * Tmax, tg + j * B * Tmax, wt, mB[j], mT[j]);
        }
        if (!isfinite(loss)) die("loss is %f at step %lld: training diverged (try a lower --lr)", loss, (long long)step + 1);
        double gn = grad_clip(s, o.clip), wgn = 0;
        adamw_step(s, &ac, lr, step + 1);
        if (w && !o.freeze_weak) { wgn = grad_clip(w, o.clip); adamw_step(w, &ac, lr, step + 1); }
        double now = wdl_now(), tps = nreal / (now - ts);
        last_loss = loss;
        json_t *r = json_pack("{s:I,s:f,s:f,s:f,s:f,s:I,s:f,s:f}", "step", (json_int_t)(step + 1), "epoch",
                              (double)((step + 1) * o.accum) / (double)micro_per_epoch, "loss", loss, "lr", lr,
                              "grad_norm", gn, "tokens", (json_int_t)nloss, "tokens_per_s", tps, "elapsed_s", now - t0);
        if (w && !o.freeze_weak) json_object_set_new(r, "weak_grad_norm", json_real(wgn));
        if (o.probe_every > 0 && ((step + 1) % o.probe_every == 0 || step + 1 == total))
            log_probe(lf, r, s, pids, ptg, pB, pT);
        log_write(lf, r);
        json_decref(r);
        progress(step + 1, total, loss, tps, now - t0);
        if (o.save_every > 0 && (step + 1) % o.save_every == 0 && step + 1 < total)
            save_ckpt(&o, ckpt, s, w, step + 1, total, &d);
    }
    if (lf) fclose(lf);

    /* outputs appear only when complete */
    char *tmp = wdl_tmp_name(o.out);
    wdl_rmtree(tmp);
    wdl_tmp_register(tmp);
    write_model_dir(s, o.model, tmp, o.bf16);
    char *wtmp = NULL;
    if (o.weak_out) {
        wtmp = wdl_tmp_name(o.weak_out);
        wdl_rmtree(wtmp);
        wdl_tmp_register(wtmp);
        write_model_dir(w, o.weak, wtmp, o.bf16);
    }
    wdl_commit(tmp, o.out);
    if (wtmp) wdl_commit(wtmp, o.weak_out);
    wdl_rmtree(ckpt);
    if (!o.quiet)
        fprintf(stderr, "%s: wrote %s: %lld steps in %.1fs, final loss %.4f, padding %.1f%% of positions\n", wdl_prog,
                o.out, (long long)(total - start), wdl_now() - t0, last_loss, all_pos > 0 ? 100 * pad_pos / all_pos : 0.0);
    step_free(&st);
    dataset_free(&d);
    model_free(s); model_free(w);
    tok_free(tok);
    free(ids); free(tg); free(wt); free(ord); free(ckpt); free(tmp); free(wtmp);
    free(pidx); free(pids); free(ptg);
    free(o.files);
    return 0;
}
