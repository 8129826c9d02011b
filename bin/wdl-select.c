/* wdl-select: WD-DS, the weak-driven discrepancy selection (phase 2).
 * Reads scored records, weighs each by its weak/strong entropies, draws a
 * seeded resample and writes it with `weight`, `bucket` and `draws`.
 * All records are held (as compact text) until the weights are known,
 * because the normalisers are sums over the whole input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common.h"
#include "records.h"
#include "select.h"

static const char *usage =
        "usage: wdl-select [--weak-field A] [--strong-field B] [--scheme code|paper]\n"
        "                  [--alpha 0.1 --beta 0.8 --gamma 0.1] [--seed S] [--n N]\n"
        "                  [--dedup|--keep-dups] [--buckets K] [--stats FILE]\n"
        "                  [--order draw|input|bucket] [-q] [-o OUT] [FILE...]\n"
        "\n"
        "Weighs each record by its weak (A, default h_weak) and strong (B, default\n"
        "h_strong) entropy, dH = B - A, [u]+ = max(u,0), and draws N (default: the\n"
        "number of input records) indices with replacement, seeded (default 0).\n"
        "  --scheme code   (default; reference code, paper v1)\n"
        "      p = a*A/Z1 + b*[-dH]+/Z2 + g*[dH]+/Z3, Z = sums over the scored\n"
        "      records (a zero Z becomes 1e-12); clip at 0, renormalise.\n"
        "  --scheme paper  (paper v2)  p ∝ a*[-dH]+ + b*B + g*[dH]+\n"
        "  --keep-dups     every draw is output (default with code)\n"
        "  --dedup         each drawn record once (default with paper)\n"
        "Output: the input records plus `weight` (normalised p), `bucket` (0..K-1,\n"
        "quantiles of B over the scored input, 0 = lowest entropy = easiest,\n"
        "K default 3) and `draws` (times drawn in total). Order: draw order (first\n"
        "draw with --dedup); --order input keeps input order, bucket sorts by\n"
        "bucket (easy to hard), ties in draw order. Records without numeric A and\n"
        "B get weight 0 and are never drawn. A summary goes to stderr (-q: none);\n"
        "--stats FILE writes it as one JSON object. Same input + seed = same bytes.\n";

typedef struct {
    const char *weak, *strong, *stats;
    int dedup, order; /* dedup: -1 = the scheme's default */
    cli_common cli;   /* -o, -q, the input files */
    sel_params prm;
    long long seed, n, buckets;
} opts;

enum { ORDER_DRAW, ORDER_INPUT, ORDER_BUCKET };

static void parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->weak = "h_weak";
    o->strong = "h_strong";
    o->prm = (sel_params){SEL_CODE, 0.1, 0.8, 0.1};
    o->dedup = -1;
    o->n = CLI_UNSET;   /* the input's size */
    o->buckets = 3;
    const char *scheme = NULL, *order = NULL;
    const cli_opt table[] = {
        {"weak-field", 0, CLI_STR, &o->weak},
        {"strong-field", 0, CLI_STR, &o->strong},
        {"scheme", 0, CLI_STR, &scheme},
        {"alpha", 0, CLI_REAL, &o->prm.alpha},
        {"beta", 0, CLI_REAL, &o->prm.beta},
        {"gamma", 0, CLI_REAL, &o->prm.gamma},
        {"seed", 0, CLI_INT, &o->seed},
        {"n", 0, CLI_INT, &o->n},
        {"buckets", 0, CLI_INT, &o->buckets},
        {"dedup", 0, CLI_SET, &o->dedup, 1},
        {"keep-dups", 0, CLI_SET, &o->dedup, 0},
        {"stats", 0, CLI_STR, &o->stats},
        {"order", 0, CLI_STR, &order},
        {0}};
    cli_parse(argc, argv, usage, table, &o->cli);
    if (scheme) {
        int sc = sel_scheme_parse(scheme);
        if (sc < 0) cli_usage_error("--scheme: unknown scheme '%s' (code or paper)", scheme);
        o->prm.scheme = (sel_scheme)sc;
    }
    if (!order || !strcmp(order, "draw")) o->order = ORDER_DRAW;
    else if (!strcmp(order, "input")) o->order = ORDER_INPUT;
    else if (!strcmp(order, "bucket")) o->order = ORDER_BUCKET;
    else cli_usage_error("--order: unknown order '%s' (draw, input or bucket)", order);
    if (o->prm.alpha < 0 || o->prm.beta < 0 || o->prm.gamma < 0)
        cli_usage_error("--alpha, --beta, --gamma: must be >= 0");
    if (o->prm.alpha + o->prm.beta + o->prm.gamma <= 0)
        cli_usage_error("--alpha, --beta, --gamma: at least one must be positive");
    if (o->n != CLI_UNSET && (o->n < 1 || o->n > 2000000000LL))
        cli_usage_error("--n: must be 1..2000000000, got %lld", o->n);
    if (o->buckets < 1 || o->buckets > 1000) cli_usage_error("--buckets: must be 1..1000, got %lld", o->buckets);
    if (o->stats && !strcmp(o->stats, "-")) cli_usage_error("--stats: needs a file name (stdout carries the records)");
    cli_distinct_outputs(2, (const char *const[]){"-o", "--stats"}, (const char *const[]){o->cli.output, o->stats});
    if (o->dedup < 0) o->dedup = o->prm.scheme == SEL_PAPER;
    if (!*o->weak || !*o->strong) cli_usage_error("--weak-field/--strong-field: empty field name");
}

/* The input, kept as compact text plus the two scores. */
typedef struct {
    char **text;
    double *hw, *hs;
    unsigned char *ok;
    size_t n, cap, n_unscored;
    char *first_unscored;   /* "file:line" of the first record without scores */
} corpus;

static int score_of(json_t *rec, const char *field, double *out) {
    json_t *v = json_object_get(rec, field);
    if (!v || !json_is_number(v)) return 0;
    double x = json_number_value(v);
    if (!isfinite(x)) return 0;
    *out = x;
    return 1;
}

static void read_all(const opts *o, corpus *c) {
    memset(c, 0, sizeof *c);
    rec_multi *m = rec_multi_open(o->cli.args, o->cli.nargs);
    json_t *v;
    while ((v = rec_multi_next(m))) {
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 1024;
            c->text = xrealloc(c->text, c->cap * sizeof(char *));
            c->hw = xrealloc(c->hw, c->cap * sizeof(double));
            c->hs = xrealloc(c->hs, c->cap * sizeof(double));
            c->ok = xrealloc(c->ok, c->cap);
        }
        size_t i = c->n++;
        c->hw[i] = c->hs[i] = 0;
        c->ok[i] = score_of(v, o->weak, &c->hw[i]) && score_of(v, o->strong, &c->hs[i]);
        if (!c->ok[i] && c->n_unscored++ == 0) {
            size_t len = strlen(rec_multi_name(m)) + 32;
            c->first_unscored = xmalloc(len);
            snprintf(c->first_unscored, len, "%s:%lld", rec_multi_name(m), (long long)rec_multi_line(m));
        }
        c->text[i] = rec_dumps(v, NULL);
        json_decref(v);
    }
    rec_multi_close(m);
}

/* The output: positions into the corpus, in the chosen order. */
typedef struct {
    size_t *idx, n;
} picks;

static int by_bucket(const void *a, const void *b, void *bucket) {
    const int *order_bucket = bucket;
    const size_t *x = a, *y = b;   /* pairs (input index, draw position) */
    int bx = order_bucket[x[0]], by = order_bucket[y[0]];
    if (bx != by) return bx < by ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}
static int by_input(const void *a, const void *b, void *unused) {
    const size_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

static picks make_picks(const opts *o, const size_t *draw, size_t m, size_t n,
                        const int *bucket) {
    picks pk = {xmalloc(m * sizeof(size_t)), 0};
    unsigned char *seen = xcalloc(n, 1);
    for (size_t j = 0; j < m; j++) {
        if (o->dedup) {
            if (seen[draw[j]]) continue;
            seen[draw[j]] = 1;
        }
        pk.idx[pk.n++] = draw[j];
    }
    free(seen);
    if (o->order != ORDER_DRAW) {
        size_t *pairs = xmalloc(2 * pk.n * sizeof(size_t));
        for (size_t j = 0; j < pk.n; j++) { pairs[2 * j] = pk.idx[j]; pairs[2 * j + 1] = j; }
        qsort_r(pairs, pk.n, 2 * sizeof(size_t), o->order == ORDER_BUCKET ? by_bucket : by_input, (void *)bucket);
        for (size_t j = 0; j < pk.n; j++) pk.idx[j] = pairs[2 * j];
        free(pairs);
    }
    return pk;
}

static void write_out(const opts *o, const corpus *c, const picks *pk, const double *p,
                      const int *bucket, const int64_t *count) {
    rec_writer *w = rec_create(o->cli.output);
    for (size_t j = 0; j < pk->n; j++) {
        size_t i = pk->idx[j];
        json_error_t err;
        json_t *v = json_loads(c->text[i], 0, &err);
        if (!v) die("internal: cannot re-read record %zu: %s", i, err.text);
        json_object_set_new(v, "weight", json_real(p[i]));
        json_object_set_new(v, "bucket", json_integer(bucket[i]));
        json_object_set_new(v, "draws", json_integer(count[i]));
        rec_write(w, v);
        json_decref(v);
    }
    rec_commit(w);
}

static json_t *num_array(const int64_t *v, int k) {
    json_t *a = json_array();
    for (int i = 0; i < k; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *make_stats(const opts *o, const corpus *c, const sel_info *in, size_t m,
                          const picks *pk, size_t n_unique, const int *bucket) {
    int k = (int)o->buckets;
    int64_t *bin = xcalloc((size_t)k, sizeof(int64_t)), *bout = xcalloc((size_t)k, sizeof(int64_t));
    double shw = 0, shs = 0;
    for (size_t i = 0; i < c->n; i++)
        if (bucket[i] >= 0) bin[bucket[i]]++;
    for (size_t j = 0; j < pk->n; j++) {
        size_t i = pk->idx[j];
        bout[bucket[i]]++;
        shw += c->hw[i];
        shs += c->hs[i];
    }
    double nout = pk->n ? (double)pk->n : 1;
    json_t *s = json_object(), *tm = json_object(), *tn = json_object(), *sel = json_object();
    json_object_set_new(s, "scheme", json_string(sel_scheme_name(o->prm.scheme)));
    json_object_set_new(s, "alpha", json_real(o->prm.alpha));
    json_object_set_new(s, "beta", json_real(o->prm.beta));
    json_object_set_new(s, "gamma", json_real(o->prm.gamma));
    json_object_set_new(s, "seed", json_integer(o->seed));
    json_object_set_new(s, "dedup", json_boolean(o->dedup));
    json_object_set_new(s, "weak_field", json_string(o->weak));
    json_object_set_new(s, "strong_field", json_string(o->strong));
    json_object_set_new(s, "n_in", json_integer((json_int_t)c->n));
    json_object_set_new(s, "n_scored", json_integer((json_int_t)in->n_scored));
    json_object_set_new(s, "n_unscored", json_integer((json_int_t)c->n_unscored));
    json_object_set_new(s, "n_positive", json_integer((json_int_t)in->n_positive));
    json_object_set_new(s, "n_clipped", json_integer((json_int_t)in->n_clipped));
    json_object_set_new(s, "n_draws", json_integer((json_int_t)m));
    json_object_set_new(s, "n_out", json_integer((json_int_t)pk->n));
    json_object_set_new(s, "n_unique", json_integer((json_int_t)n_unique));
    json_object_set_new(s, "unique_fraction", json_real((double)n_unique / (double)m));
    json_object_set_new(s, "buckets", json_integer(k));
    json_object_set_new(s, "bucket_counts_in", num_array(bin, k));
    json_object_set_new(s, "bucket_counts_out", num_array(bout, k));
    const char *names[3] = {"alpha", "beta", "gamma"};
    for (int t = 0; t < 3; t++) {
        json_object_set_new(tm, names[t], json_real(in->term_mass[t]));
        json_object_set_new(tn, names[t], json_string(sel_term_name(o->prm.scheme, t)));
    }
    json_object_set_new(s, "term_mass", tm);
    json_object_set_new(s, "terms", tn);
    json_object_set_new(s, "mean_h_weak", json_real(in->mean_hw));
    json_object_set_new(s, "mean_h_strong", json_real(in->mean_hs));
    json_object_set_new(s, "mean_dh", json_real(in->mean_dh));
    json_object_set_new(sel, "mean_h_weak", json_real(shw / nout));
    json_object_set_new(sel, "mean_h_strong", json_real(shs / nout));
    json_object_set_new(sel, "mean_dh", json_real((shs - shw) / nout));
    json_object_set_new(s, "selected", sel);
    free(bin); free(bout);
    return s;
}

static void print_summary(json_t *s) {
    json_t *tm = json_object_get(s, "term_mass"), *bo = json_object_get(s, "bucket_counts_out");
    fprintf(stderr, "%s: %lld records, %lld scored, %lld unscored; scheme %s (%s), %lld draws -> %lld records, %lld unique (%.1f%%)\n",
            wdl_prog, json_integer_value(json_object_get(s, "n_in")),
            json_integer_value(json_object_get(s, "n_scored")),
            json_integer_value(json_object_get(s, "n_unscored")),
            json_string_value(json_object_get(s, "scheme")),
            json_is_true(json_object_get(s, "dedup")) ? "dedup" : "keep-dups",
            json_integer_value(json_object_get(s, "n_draws")),
            json_integer_value(json_object_get(s, "n_out")),
            json_integer_value(json_object_get(s, "n_unique")),
            100 * json_real_value(json_object_get(s, "unique_fraction")));
    fprintf(stderr, "%s: term mass alpha %.3f beta %.3f gamma %.3f; mean H_weak %.4g H_strong %.4g dH %.4g; buckets out",
            wdl_prog, json_real_value(json_object_get(tm, "alpha")),
            json_real_value(json_object_get(tm, "beta")), json_real_value(json_object_get(tm, "gamma")),
            json_real_value(json_object_get(s, "mean_h_weak")),
            json_real_value(json_object_get(s, "mean_h_strong")),
            json_real_value(json_object_get(s, "mean_dh")));
    for (size_t b = 0; b < json_array_size(bo); b++)
        fprintf(stderr, "%s%lld", b ? "/" : " ", json_integer_value(json_array_get(bo, b)));
    fputc('\n', stderr);
}

int main(int argc, char **argv) {
    opts o;
    parse(argc, argv, &o);
    corpus c;
    read_all(&o, &c);
    if (c.n == 0) die("nothing to select: no input records");
    if (c.n_unscored == c.n)
        die("nothing to select: no record has numeric '%s' and '%s' (first at %s)", o.weak, o.strong,
            c.first_unscored);
    if (c.n_unscored)
        wdl_warn("%zu of %zu records lack a numeric '%s' or '%s' (first at %s): weight 0, never drawn",
                 c.n_unscored, c.n, o.weak, o.strong, c.first_unscored);

    double *p = xmalloc(c.n * sizeof(double));
    sel_info in;
    int rc = sel_weights(&o.prm, c.n, c.hw, c.hs, c.ok, p, &in);
    if (rc == -2) die("the entropies are too large to sum (their totals overflow): not entropies in nats?");
    if (rc != 0)
        die("nothing to select: every sampling weight is zero (scheme %s, %zu scored records)",
            sel_scheme_name(o.prm.scheme), in.n_scored);
    if (in.n_clipped) wdl_warn("%zu records had a negative weight (negative entropy?): clipped to 0", in.n_clipped);
    int *bucket = xmalloc(c.n * sizeof(int));
    sel_buckets(c.n, c.hs, c.ok, (int)o.buckets, bucket);

    size_t m = o.n != CLI_UNSET ? (size_t)o.n : c.n;
    size_t *draw = xmalloc(m * sizeof(size_t));
    sel_draw(p, c.n, m, (uint64_t)o.seed, draw);
    int64_t *count = xcalloc(c.n, sizeof(int64_t));
    size_t n_unique = 0;
    for (size_t j = 0; j < m; j++)
        if (count[draw[j]]++ == 0) n_unique++;
    picks pk = make_picks(&o, draw, m, c.n, bucket);

    json_t *stats = make_stats(&o, &c, &in, m, &pk, n_unique, bucket);
    rec_writer *sw = o.stats ? rec_create(o.stats) : NULL;
    if (sw) rec_write(sw, stats);
    write_out(&o, &c, &pk, p, bucket, count);
    if (sw) rec_commit(sw);
    if (!o.cli.quiet) print_summary(stats);

    json_decref(stats);
    for (size_t i = 0; i < c.n; i++) free(c.text[i]);
    free(c.text); free(c.hw); free(c.hs); free(c.ok); free(c.first_unscored);
    free(p); free(bucket); free(draw); free(count); free(pk.idx); free(o.cli.args);
    return 0;
}
