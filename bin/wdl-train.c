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
#include "checkpoint.h"
#include "cli.h"
#include "common.h"
#include "dataset.h"
#include "dist.h"
#include "gemm.h"
#include "model.h"
#include "optim.h"
#include "probe.h"
#include "progress.h"
#include "records.h"
#include "step.h"

static const char *usage =
    "usage: wdl-train -m DIR -o OUT [options] [FILE...]\n"
    "Fine-tune the model in DIR on JSON-Lines records (FILE... or stdin; .zst and\n"
    "ARCHIVE:member accepted) and write the result to the model directory OUT.\n"
    "Loss on completion tokens only (the prompt is masked), mean over the tokens of\n"
    "each optimizer step. WD-JT: with --weak, each batch runs both models, trains on\n"
    "softmax(lambda*z_strong + (1-lambda)*z_weak) and updates both.\n"
    "  --weak DIR       weak model for WD-JT        --lambda X  strong weight (0.5)\n"
    "  --freeze-weak    keep the weak model fixed   --weak-out DIR  save trained weak\n"
    "  --weak-constant  control arm: weak logits 0 (SFT at temperature 1/lambda)\n"
    "  --epochs E (1)   --steps N (overrides epochs)  --batch B (8)   --accum A (1)\n"
    "  --seq T (512)    max tokens per example (longer ones are cut at the end)\n"
    "  --lr X (1e-4)    --warmup W (0.1: fraction of steps if < 1, else steps)\n"
    "  --schedule cosine|linear|constant (cosine)  --min-lr F (0.1: final lr F*lr)\n"
    "  --wd X (0.1)  --beta1 (0.9)  --beta2 (0.95)  --eps (1e-8)  --clip X (1; 0 off)\n"
    "  --clip-mode joint|separate (joint): WD-JT clips both models as one set, or\n"
    "                   each; --order shuffle|buckets|file (shuffle): epoch order,\n"
    "                   buckets = easy to hard\n"
    "  --group G (16)   shuffle: batches from length-sorted windows of G batches,\n"
    "                   shuffled in blocks of one step's micro-batches; 1 = plain\n"
    "  --lm             loss on every token (pretraining on full text)\n"
    "  --neftune A (0)  NEFTune baseline: training adds U(-1,1) A/sqrt(L d) to the\n"
    "                   embeddings (L the example's tokens, d hidden size; paper: 5)\n"
    "  --seed S (0)     --threads N (usable CPUs)   --bf16  write weights as BF16\n"
    "  --precision P (fp32): fp32, fp32-openblas (the reference) or bf16 (bf16 in,\n"
    "                   fp32 out); see README, Precision\n"
    "  --log FILE       JSONL log, one object per step (+ probe diagnostics)\n"
    "  --probe-every N (10): diagnostics on a fixed probe batch (0 = off)\n"
    "  --save-every N   checkpoint to OUT.ckpt every N steps; --resume continues it\n"
    "  --save-epochs    also write OUT.epochK after each epoch K but the last\n"
    "Under mpirun -np N: data parallel; --batch is per rank, a step is N x batch x\n"
    "accum sequences; rank 0 reads the data and writes the log, checkpoints and OUT.\n";

typedef struct {
    const char *model, *out, *weak, *weak_out, *log, *order, *schedule;
    double lambda, lr, warmup, min_lr, wd, beta1, beta2, eps, clip, neftune;
    const char *clip_mode, *precision;
    int freeze_weak, weak_constant, lm, bf16, resume, quiet, save_epochs;
    long long epochs, steps, batch, accum, seq, seed, threads, probe_every, save_every, group;
    const char **files;
    int nfiles;
} opts;

static void parse(int argc, char **argv, opts *o) {
    *o = (opts){.lambda = 0.5, .lr = 1e-4, .warmup = 0.1, .min_lr = 0.1, .wd = 0.1, .beta1 = 0.9,
                .beta2 = 0.95, .eps = 1e-8, .clip = 1.0, .epochs = 1, .batch = 8, .accum = 1, .seq = 512,
                .probe_every = 10, .group = 16, .clip_mode = "joint", .order = "shuffle", .schedule = "cosine"};
    const cli_opt table[] = {
        {"model", 'm', CLI_STR, &o->model},
        {"weak", 0, CLI_STR, &o->weak},
        {"weak-out", 0, CLI_STR, &o->weak_out},
        {"log", 0, CLI_STR, &o->log},
        {"order", 0, CLI_STR, &o->order},
        {"schedule", 0, CLI_STR, &o->schedule},
        {"lambda", 0, CLI_REAL, &o->lambda},
        {"lr", 0, CLI_REAL, &o->lr},
        {"warmup", 0, CLI_REAL, &o->warmup},
        {"min-lr", 0, CLI_REAL, &o->min_lr},
        {"wd", 0, CLI_REAL, &o->wd},
        {"beta1", 0, CLI_REAL, &o->beta1},
        {"beta2", 0, CLI_REAL, &o->beta2},
        {"eps", 0, CLI_REAL, &o->eps},
        {"clip", 0, CLI_REAL, &o->clip},
        {"neftune", 0, CLI_REAL, &o->neftune},
        {"clip-mode", 0, CLI_STR, &o->clip_mode},
        {"precision", 0, CLI_STR, &o->precision},
        {"save-epochs", 0, CLI_FLAG, &o->save_epochs},
        {"epochs", 0, CLI_INT, &o->epochs},
        {"steps", 0, CLI_INT, &o->steps},
        {"batch", 0, CLI_INT, &o->batch},
        {"accum", 0, CLI_INT, &o->accum},
        {"seq", 0, CLI_INT, &o->seq},
        {"seed", 0, CLI_INT, &o->seed},
        {"probe-every", 0, CLI_INT, &o->probe_every},
        {"save-every", 0, CLI_INT, &o->save_every},
        {"group", 0, CLI_INT, &o->group},
        {"freeze-weak", 0, CLI_FLAG, &o->freeze_weak},
        {"weak-constant", 0, CLI_FLAG, &o->weak_constant},
        {"lm", 0, CLI_FLAG, &o->lm},
        {"bf16", 0, CLI_FLAG, &o->bf16},
        {"resume", 0, CLI_FLAG, &o->resume},
        {0}};
    cli_common cli;
    cli_parse_mpi(argc, argv, usage, table, &cli);
    o->out = cli.output;
    o->threads = cli.threads;
    o->quiet = cli.quiet;
    o->files = cli.args;
    o->nfiles = cli.nargs;
    if (!o->model) cli_usage_error("-m DIR is required (see --help)");
    if (!o->out) cli_usage_error("-o OUT is required (see --help)");
    cli_distinct_outputs(3, (const char *const[]){"-o", "--weak-out", "--log"},
                         (const char *const[]){o->out, o->weak_out, o->log});
    cli_replaceable_dir("-o", o->out, cli_model_dir_files);
    if (o->weak_out) cli_replaceable_dir("--weak-out", o->weak_out, cli_model_dir_files);
    if (o->batch < 1 || o->accum < 1 || o->seq < 2 || o->epochs < 1 || o->steps < 0 || o->threads < 1 || o->group < 1)
        cli_usage_error("--batch, --accum, --epochs, --threads, --group must be >= 1, --seq >= 2, --steps >= 0");
    if (!(o->lambda > 0 && o->lambda <= 1)) cli_usage_error("--lambda must be in (0, 1]");
    if (!(o->lr > 0) || o->warmup < 0 || o->min_lr < 0 || o->min_lr > 1 || o->wd < 0 || o->clip < 0 ||
        !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0))
        cli_usage_error("bad optimizer setting (--lr > 0, --warmup >= 0, 0 <= --min-lr <= 1, --wd/--clip >= 0, betas in [0,1))");
    if ((o->freeze_weak || o->weak_out) && !o->weak) cli_usage_error("--freeze-weak/--weak-out need --weak");
    if (o->weak_constant && o->weak) cli_usage_error("--weak-constant replaces --weak; give one of them");
    if (!(o->neftune >= 0 && isfinite(o->neftune))) cli_usage_error("--neftune must be >= 0 (0: off)");
    if (o->neftune > 0 && (o->weak || o->weak_constant))
        cli_usage_error("--neftune is the SFT baseline; it does not combine with --weak or --weak-constant");
    if (strcmp(o->order, "shuffle") && strcmp(o->order, "buckets") && strcmp(o->order, "file"))
        cli_usage_error("--order: unknown order '%s' (shuffle, buckets, file)", o->order);
    if (strcmp(o->clip_mode, "joint") && strcmp(o->clip_mode, "separate"))
        cli_usage_error("--clip-mode: unknown mode '%s' (joint, separate)", o->clip_mode);
    if (lr_schedule_from_name(o->schedule) < 0)
        cli_usage_error("--schedule: unknown schedule '%s' (cosine, linear, constant)", o->schedule);
    if (o->probe_every < 0 || o->save_every < 0) cli_usage_error("--probe-every and --save-every must be >= 0");
}

/* ---- epoch order ---- */
static int cmp_bucket(const void *a, const void *b, void *key) {
    const int64_t *bucket_key = key;
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    if (bucket_key[x] != bucket_key[y]) return bucket_key[x] < bucket_key[y] ? -1 : 1;
    return 0;
}
/* by length, ties by example index: a total order, so qsort is deterministic */
static int cmp_len(const void *a, const void *b, void *data) {
    const dataset *len_key = data;
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    int64_t lx = len_key->ex[x].len, ly = len_key->ex[y].len;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}
/* G: micro-batches per optimizer step (ranks x accum) */
static void epoch_order(const opts *o, const dataset *d, int64_t epoch, int64_t G, int64_t *ord) {
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
         * batch pads little, then shuffle the order of blocks of G batches:
         * the micro-batches of one step (one per rank under MPI) are then
         * of similar length, so no rank waits long for another */
        int64_t B = o->batch, W = o->group * B, nb = (d->n + B - 1) / B, nblk = (nb + G - 1) / G;
        for (int64_t w0 = 0; w0 < d->n; w0 += W)
            qsort_r(ord + w0, (size_t)(d->n - w0 < W ? d->n - w0 : W), sizeof(int64_t), cmp_len, (void *)d);
        int64_t *bo = xmalloc(sizeof(int64_t) * (size_t)nblk), *tmp = xmalloc(sizeof(int64_t) * (size_t)d->n), k = 0;
        /* the last (possibly short) block stays last so batch boundaries hold */
        for (int64_t i = 0; i < nblk; i++) bo[i] = i;
        for (int64_t i = nblk - 2; i > 0; i--) {
            int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1), t = bo[i];
            bo[i] = bo[j]; bo[j] = t;
        }
        for (int64_t i = 0; i < nblk; i++)
            for (int64_t e = bo[i] * G * B; e < (bo[i] + 1) * G * B && e < d->n; e++) tmp[k++] = ord[e];
        memcpy(ord, tmp, sizeof(int64_t) * (size_t)d->n);
        free(bo); free(tmp);
    }
    if (!strcmp(o->order, "buckets")) {
        /* easy to hard: stable merge of the shuffled order by bucket */
        int64_t *rank = xmalloc(sizeof(int64_t) * (size_t)d->n);
        int64_t *bucket_key = xmalloc(sizeof(int64_t) * (size_t)d->n);
        for (int64_t i = 0; i < d->n; i++) rank[ord[i]] = i;
        for (int64_t i = 0; i < d->n; i++) bucket_key[i] = d->ex[i].bucket * d->n + rank[i];
        qsort_r(ord, (size_t)d->n, sizeof(int64_t), cmp_bucket, bucket_key);
        free(rank); free(bucket_key);
    }
}

static void log_probe(FILE *lf, json_t *rec, wdl_model *m, const int32_t *ids, const int32_t *tg,
                      int64_t B, int64_t T) {
    probe_stats p;
    struct model_times *t = m->times;
    m->times = NULL;   /* (the time line is the steps') */
    probe_run(m, ids, tg, B, T, &p);
    m->times = t;
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

/* OUT.epochK: the strong model as it stands at the end of epoch K */
static void save_epoch(const opts *o, const wdl_model *s, int64_t k) {
    size_t len = strlen(o->out) + 32;
    char *dir = xmalloc(len);
    snprintf(dir, len, "%s.epoch%lld", o->out, (long long)k);
    char *tmp = wdl_tmp_name(dir);
    wdl_rmtree(tmp);
    wdl_tmp_register(tmp);
    ckpt_write_model(s, o->model, tmp, o->bf16);
    wdl_commit(tmp, dir);
    free(tmp); free(dir);
}

int main(int argc, char **argv) {
    opts o;
    parse(argc, argv, &o);
    gemm_set_precision(cli_precision(o.precision));
    dist_init();
    const int rank = dist_rank(), ranks = dist_size(), lead = rank == 0;
    if (!lead) o.quiet = 1;

    wdl_tokenizer *tok;
    wdl_template tpl;
    wdl_model *s = model_dir_open(o.model, &tok, &tpl), *w = NULL;
    if (o.seq > s->cfg.max_pos && !o.quiet)   /* allowed, as transformers allows it: RoPE extends */
        wdl_warn("--seq %lld is past the model's max_position_embeddings (%lld): positions beyond it are "
                 "extrapolated", (long long)o.seq, (long long)s->cfg.max_pos);
    if (o.weak) {
        w = model_load(o.weak);
        if (w->cfg.vocab != s->cfg.vocab || strcmp(w->cfg.tokenizer, s->cfg.tokenizer) ||
            strcmp(w->cfg.template_name, s->cfg.template_name))
            die("%s: weak model's vocabulary/tokenizer/template differ from %s", o.weak, o.model);
    }
    /* rank 0 reads the data (stdin reaches only rank 0 under mpirun) */
    dataset d = {0};
    if (lead) {
        dataset_load(&d, o.files, o.nfiles, tok, tpl, o.seq, o.lm);
        if (d.n == 0) {   /* say why, when records were there and all were skipped */
            char why[160] = "";
            if (d.unlabeled || d.dropped)
                snprintf(why, sizeof why, " (%lld records without a completion, %lld with no loss token within --seq)",
                         (long long)d.unlabeled, (long long)d.dropped);
            die("%s: no training examples%s", o.nfiles ? o.files[0] : "<stdin>", why);
        }
    }
    dataset_bcast(&d);
    if (d.truncated && !o.quiet) wdl_warn("%lld examples longer than --seq %lld were cut", (long long)d.truncated, (long long)o.seq);
    if (d.unlabeled && lead) wdl_warn("%lld records without a completion were skipped", (long long)d.unlabeled);
    if (d.dropped && !o.quiet) wdl_warn("%lld examples had no loss token within --seq and were skipped", (long long)d.dropped);

    /* a step takes G micro-batches in data order: rank r runs the r-th
     * run of `accum` of them, as one process with --accum G would. The
     * order runs on across epochs (a step may hold the end of one and the
     * start of the next), so E epochs take ceil(E M / G) steps, the last
     * perhaps short: no step without data. */
    const int64_t B = o.batch, G = ranks * o.accum, micro_per_epoch = (d.n + B - 1) / B;
    if (!o.steps && micro_per_epoch > 0 && o.epochs > (INT64_MAX - G) / micro_per_epoch)
        cli_usage_error("--epochs %lld: %lld micro-batches an epoch make too many steps", o.epochs,
                        (long long)micro_per_epoch);
    const int64_t micro_total = o.epochs * micro_per_epoch;   /* with --steps: unused */
    const int64_t total = o.steps ? o.steps : (micro_total + G - 1) / G;
    const int64_t warmup = o.warmup < 1 ? (int64_t)llround(o.warmup * total) : (int64_t)o.warmup;
    const int64_t Tmax = dataset_max_len(&d);
    lr_schedule sched = (lr_schedule)lr_schedule_from_name(o.schedule);
    adamw_cfg ac = {o.lr, o.beta1, o.beta2, o.eps, o.wd, o.clip};

    model_alloc_grads(s); model_alloc_moments(s);
    model_alloc_acts(s, B, Tmax, 1, !o.quiet);
    if (w) {
        int train_weak = !o.freeze_weak;
        if (train_weak) { model_alloc_grads(w); model_alloc_moments(w); }
        model_alloc_acts(w, B, Tmax, train_weak ? ACTS_TRAIN : ACTS_STREAM, !o.quiet);
    }
    const int nt = omp_get_max_threads();
    if (!o.quiet)
        fprintf(stderr, "%s: %lld examples, %lld steps (%.4g per epoch) of %lld x %lld sequences%s, warm-up %lld, %s%s, %d thread%s%s\n",
                wdl_prog, (long long)d.n, (long long)total, (double)micro_per_epoch / (double)G, (long long)G,
                (long long)B, ranks > 1 ? " over ranks" : "", (long long)warmup, w ? "WD-JT" : (o.weak_constant ? "constant-weak control" : o.neftune > 0 ? "SFT with NEFTune" : "SFT"),
                w && o.freeze_weak ? " (weak frozen)" : "", nt, nt > 1 ? "s" : "",
                ranks > 1 ? " per rank" : "");

    size_t ckl = strlen(o.out) + 8;
    char *ckpt = xmalloc(ckl);
    snprintf(ckpt, ckl, "%s.ckpt", o.out);
    int64_t start = 0, global_batch = G * B;
    const ckpt_run run = {total, o.seed, global_batch, o.neftune};
    wdl_model *trained_weak = w && !o.freeze_weak ? w : NULL;
    if (o.resume && lead && wdl_is_dir(ckpt)) {
        start = ckpt_load(ckpt, s, trained_weak, &run, &d);
        if (!o.quiet) fprintf(stderr, "%s: resuming from %s at step %lld\n", wdl_prog, ckpt, (long long)start);
    }
    if (o.resume) {   /* the other ranks take rank 0's state */
        dist_bcast(&start, sizeof start, 0);
        if (start > 0) {
            wdl_model *ms[2] = {s, trained_weak};
            for (int i = 0; i < 2 && ms[i]; i++) {
                size_t bytes = ms[i]->nparams * sizeof(float);
                dist_bcast(ms[i]->params, bytes, 0);
                dist_bcast(ms[i]->m, bytes, 0);
                dist_bcast(ms[i]->v, bytes, 0);
            }
        }
    }
    /* gradient sums over ranks go in pieces of 4M floats */
    const int64_t piece = (int64_t)1 << 22;
    float *sum_scratch = ranks > 1 ? xaligned(dist_scratch_elems(piece) * sizeof(float)) : NULL;

    FILE *lf = NULL;
    if (o.log && lead) {
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
    /* NEFTune: each row's example (the epoch's visit of it) and length */
    uint64_t *nkey = xmalloc(sizeof(uint64_t) * (size_t)(o.accum * B));
    int64_t *nlen = xmalloc(sizeof(int64_t) * (size_t)(o.accum * B));

    /* probe batch: the first B examples in file order, fixed for the run */
    int64_t pB = B < d.n ? B : d.n, *pidx = xmalloc(sizeof(int64_t) * (size_t)pB), pl, pr;
    for (int64_t i = 0; i < pB; i++) pidx[i] = i;
    int32_t *pids = xmalloc(sizeof(int32_t) * (size_t)(pB * Tmax)), *ptg = xmalloc(sizeof(int32_t) * (size_t)(pB * Tmax));
    int64_t pT = dataset_batch(&d, pidx, pB, 0, pids, ptg, &pl, &pr);
    if (o.probe_every > 0 && start == 0 && lf) {   /* lf: rank 0 only */
        json_t *r = json_pack("{s:I}", "step", (json_int_t)0);
        log_probe(lf, r, s, pids, ptg, pB, pT);
        log_write(lf, r);
        json_decref(r);
    }

    int32_t pad = s->cfg.eos_id >= 0 && s->cfg.eos_id < s->cfg.vocab ? (int32_t)s->cfg.eos_id : 0;
    /* where the steps' time goes, said at the end (two clock reads a kernel) */
    model_times times = {{0}};
    s->times = &times;
    if (w) w->times = &times;
    double t0 = wdl_now(), pad_pos = 0, all_pos = 0, last_loss = 0;
    wdl_progress bar;
    progress_start(&bar, "steps", total, o.quiet);
    bar.first = start;
    for (int64_t step = start; step < total; step++) {
        double ts = wdl_now();
        /* gather this step's micro-batches */
        int64_t nm = 0, cnt[4] = {0, 0, 0, 0};   /* loss tokens, real tokens, padded, all positions */
        for (int64_t j = 0; j < o.accum; j++) {
            int64_t g = step * G + rank * o.accum + j, epoch = g / micro_per_epoch, pos = g % micro_per_epoch;
            if (!o.steps && epoch >= o.epochs) break;
            if (epoch != cur_epoch) { epoch_order(&o, &d, epoch, G, ord); cur_epoch = epoch; }
            int64_t b0 = pos * B, nb = d.n - b0 < B ? d.n - b0 : B, nl, nr;
            mT[nm] = dataset_batch(&d, ord + b0, nb, pad, ids + nm * B * Tmax, tg + nm * B * Tmax, &nl, &nr);
            mB[nm] = nb;
            for (int64_t i = 0; i < nb; i++) {
                nkey[nm * B + i] = (uint64_t)epoch * (uint64_t)d.n + (uint64_t)ord[b0 + i];
                nlen[nm * B + i] = d.ex[ord[b0 + i]].len;
            }
            cnt[0] += nl; cnt[1] += nr; cnt[2] += nb * mT[nm] - nr; cnt[3] += nb * mT[nm];
            nm++;
        }
        dist_sum_i64(cnt, 4);   /* the loss is a mean over the whole step's tokens */
        int64_t nloss = cnt[0] ? cnt[0] : 1, nreal = cnt[1];
        pad_pos += (double)cnt[2]; all_pos += (double)cnt[3];
        double lr = lr_at(sched, o.lr, step, total, warmup, o.min_lr);
        model_zero_grad(s);
        if (w && !o.freeze_weak) model_zero_grad(w);
        double loss = 0;
        for (int64_t j = 0; j < nm; j++) {
            int64_t n = mB[j] * mT[j];
            for (int64_t i = 0; i < n; i++) wt[i] = 1.0f / (float)nloss;
            const neftune_batch nb = {o.neftune, (uint64_t)o.seed, mB[j], mT[j], nkey + j * B, nlen + j * B};
            st.noise = o.neftune > 0 ? &nb : NULL;
            loss += step_train(&st, ids + j * B * Tmax, tg + j * B * Tmax, wt, mB[j], mT[j]);
            st.noise = NULL;
        }
        /* every rank learns every rank's loss: the first that diverged says so */
        dist_wait_for_others();   /* unequal batches: time the wait apart */
        double rank_loss[ranks];
        dist_gather_f64(loss, rank_loss);
        for (int r = 0; r < ranks; r++) {
            if (isfinite(rank_loss[r])) continue;
            if (r != rank) dist_wait_for_abort();
            die("loss is %f at step %lld: training diverged (try a lower --lr)", loss, (long long)step + 1);
        }
        if (ranks > 1) {   /* sums over ranks in rank order: same bytes every run */
            loss = 0;
            for (int r = 0; r < ranks; r++) loss += rank_loss[r];
            dist_sum_f32(s->grads, (int64_t)s->nparams, sum_scratch, piece);
            if (trained_weak) dist_sum_f32(w->grads, (int64_t)w->nparams, sum_scratch, piece);
        }
        /* WD-JT clips both models' gradients as one set by default (the
         * reference trains them as one module under one optimizer) */
        double gn, wgn = 0, norms[2];
        if (w && !o.freeze_weak) {
            if (!strcmp(o.clip_mode, "joint")) {
                wdl_model *both[2] = {s, w};
                grad_clip_joint(both, 2, o.clip, norms);
                gn = norms[0]; wgn = norms[1];
            } else {
                gn = grad_clip(s, o.clip); wgn = grad_clip(w, o.clip);
            }
            adamw_step(s, &ac, lr, step + 1);
            adamw_step(w, &ac, lr, step + 1);
        } else {
            gn = grad_clip(s, o.clip);
            adamw_step(s, &ac, lr, step + 1);
        }
        double now = wdl_now(), tps = nreal / (now - ts);
        last_loss = loss;
        if (!lead) continue;   /* rank 0 logs and writes */
        /* micro-batches done (the last step's may be fewer than G) */
        const int64_t done = o.steps || (step + 1) * G < micro_total ? (step + 1) * G : micro_total;
        json_t *r = json_pack("{s:I,s:f,s:f,s:f,s:f,s:I,s:f,s:f}", "step", (json_int_t)(step + 1), "epoch",
                              (double)done / (double)micro_per_epoch, "loss", loss, "lr", lr,
                              "grad_norm", gn, "tokens", (json_int_t)nloss, "tokens_per_s", tps, "elapsed_s", now - t0);
        if (w && !o.freeze_weak) json_object_set_new(r, "weak_grad_norm", json_real(wgn));
        if (o.probe_every > 0 && ((step + 1) % o.probe_every == 0 || step + 1 == total))
            log_probe(lf, r, s, pids, ptg, pB, pT);
        log_write(lf, r);
        json_decref(r);
        char info[64];
        snprintf(info, sizeof info, "loss %.4f %.0f tok/s", loss, tps);
        if (step + 1 == total) progress_end(&bar, step + 1, info);
        else progress_update(&bar, step + 1, info);
        int64_t ep_done = done / micro_per_epoch;
        if (o.save_epochs && ep_done > step * G / micro_per_epoch && ep_done >= 1 && step + 1 < total)
            save_epoch(&o, s, ep_done);
        if (o.save_every > 0 && (step + 1) % o.save_every == 0 && step + 1 < total)
            ckpt_save(ckpt, s, o.model, trained_weak, o.weak, step + 1, &run, &d);
    }
    if (lf) fclose(lf);
    char *tmp = NULL, *wtmp = NULL;
    if (!lead) goto done;

    /* outputs appear only when complete */
    tmp = wdl_tmp_name(o.out);
    wdl_rmtree(tmp);
    wdl_tmp_register(tmp);
    ckpt_write_model(s, o.model, tmp, o.bf16);
    if (o.weak_out) {
        wtmp = wdl_tmp_name(o.weak_out);
        wdl_rmtree(wtmp);
        wdl_tmp_register(wtmp);
        ckpt_write_model(w, o.weak, wtmp, o.bf16);
    }
    wdl_commit(tmp, o.out);
    if (wtmp) wdl_commit(wtmp, o.weak_out);
    wdl_rmtree(ckpt);
    if (!o.quiet)
        fprintf(stderr, "%s: wrote %s: %lld steps in %.1fs, final loss %.4f, padding %.1f%% of positions\n", wdl_prog,
                o.out, (long long)(total - start), wdl_now() - t0, last_loss, all_pos > 0 ? 100 * pad_pos / all_pos : 0.0);
    if (!o.quiet && ranks > 1)
        fprintf(stderr, "%s: %d ranks: %.2fs of rank 0's %.1fs in communication, %.2fs waiting for other ranks\n",
                wdl_prog, ranks, dist_comm_seconds(), wdl_now() - t0, dist_wait_seconds());
    if (!o.quiet) {
        char shares[256];
        model_times_shares(&times, wdl_now() - t0, shares, sizeof shares);
        fprintf(stderr, "%s: time: %s (the optimizer, data, logging, probes, the output%s)\n", wdl_prog, shares,
                ranks > 1 ? ", communication" : "");
    }
done:
    step_free(&st);
    dataset_free(&d);
    model_free(s); model_free(w);
    tok_free(tok);
    free(ids); free(tg); free(wt); free(ord); free(nkey); free(nlen); free(ckpt); free(tmp); free(wtmp);
    free(pidx); free(pids); free(ptg); free(sum_scratch);
    free(o.files);
    dist_finish();
    return 0;
}
