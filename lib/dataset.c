/* dataset.c: see dataset.h. */
#include "dataset.h"
#include "common.h"
#include "dist.h"
#include "records.h"
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t h, uint64_t x) {
    h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

/* The record's parts; dies naming the record when it has no prompt, or a
 * text field of another type (a number is not a missing completion). */
static void parts(json_t *rec, const char **sys, const char **prompt, const char **completion, const char *where,
                  int64_t line) {
    static const char *const text[] = {"prompt", "completion", "system", NULL};
    for (int k = 0; text[k]; k++) {
        const json_t *v = json_object_get(rec, text[k]);
        if (v && !json_is_string(v) && !json_is_null(v))
            die("%s:%lld: record's \"%s\" is not a string", where, (long long)line, text[k]);
    }
    *sys = *prompt = NULL;
    if (completion) *completion = NULL;
    if (!rec_prompt_completion(rec, sys, prompt, completion))
        die("%s:%lld: record has no prompt", where, (long long)line);
}

int example_encode(example *e, json_t *rec, const wdl_tokenizer *tok, wdl_template tpl, int64_t max_len,
                   int lm_loss, ivec *buf, int *cut, const char *where, int64_t line) {
    const char *sys, *prompt, *completion;
    parts(rec, &sys, &prompt, &completion, where, line);
    if (!completion) return 0;
    buf->n = 0;
    size_t n_prompt = 0;
    tpl_encode(tok, tpl, sys, prompt, completion, buf, &n_prompt);
    if (lm_loss) n_prompt = 0;
    int64_t len = (int64_t)buf->n;
    *cut = len > max_len;
    if (*cut) len = max_len;
    e->ids = xmalloc((size_t)len * sizeof(int32_t));
    memcpy(e->ids, buf->v, (size_t)len * sizeof(int32_t));
    e->len = len;
    e->n_prompt = (int64_t)n_prompt;
    json_t *b = json_object_get(rec, "bucket");
    e->bucket = json_is_integer(b) ? json_integer_value(b) : -1;
    return 1;
}

void example_prompt(ivec *ids, json_t *rec, const wdl_tokenizer *tok, wdl_template tpl, const char *where,
                    int64_t line) {
    const char *sys, *prompt;
    parts(rec, &sys, &prompt, NULL, where, line);
    ids->n = 0;
    size_t np;
    tpl_encode(tok, tpl, sys, prompt, NULL, ids, &np);
}

void dataset_load(dataset *d, const char *const *paths, int npaths, const wdl_tokenizer *tok,
                  wdl_template tpl, int64_t max_len, int lm_loss) {
    memset(d, 0, sizeof *d);
    d->hash = 1469598103934665603ULL;
    rec_multi *in = rec_multi_open(paths, npaths);
    json_t *rec;
    ivec ids = {0};
    while ((rec = rec_multi_next(in))) {
        if (d->n == d->cap) { d->cap = d->cap ? 2 * d->cap : 1024; d->ex = xrealloc(d->ex, (size_t)d->cap * sizeof(example)); }
        example *e = &d->ex[d->n];
        int cut = 0;
        if (!example_encode(e, rec, tok, tpl, max_len, lm_loss, &ids, &cut, rec_multi_name(in), rec_multi_line(in))) {
            d->unlabeled++;   /* nothing to learn */
            json_decref(rec);
            continue;
        }
        json_decref(rec);
        d->truncated += cut;
        if (e->n_prompt >= e->len - 1 && !(lm_loss && e->len >= 2)) { d->dropped++; free(e->ids); continue; }
        d->n++;
        d->hash = mix(d->hash, (uint64_t)e->len);
        d->hash = mix(d->hash, (uint64_t)e->n_prompt);
        for (int64_t i = 0; i < e->len; i++) d->hash = mix(d->hash, (uint64_t)(uint32_t)e->ids[i]);
    }
    rec_multi_close(in);
    ivec_free(&ids);
}

void dataset_free(dataset *d) {
    for (int64_t i = 0; i < d->n; i++) free(d->ex[i].ids);
    free(d->ex);
    memset(d, 0, sizeof *d);
}

int64_t dataset_max_len(const dataset *d) {
    int64_t m = 0;
    for (int64_t i = 0; i < d->n; i++) if (d->ex[i].len > m) m = d->ex[i].len;
    return m;
}

/* One example into ids/targets [width] (pad after its tokens); returns its
 * loss tokens. Position t predicts token t+1 and counts when t+1 is a loss
 * token. */
static int64_t example_row(const example *e, int64_t width, int32_t pad, int32_t *ids, int32_t *targets) {
    int64_t nl = 0;
    for (int64_t t = 0; t < width; t++) {
        ids[t] = t < e->len ? e->ids[t] : pad;
        int loss = t + 1 < e->len && t + 1 >= e->n_prompt;
        targets[t] = loss ? e->ids[t + 1] : -1;
        nl += loss;
    }
    return nl;
}

int64_t example_batch(const example *const *ex, int64_t B, int32_t pad, int32_t *ids, int32_t *targets,
                      int64_t *n_loss, int64_t *real) {
    int64_t T = 1, nl = 0, nr = 0;
    for (int64_t b = 0; b < B; b++) if (ex[b]->len > T) T = ex[b]->len;
    for (int64_t b = 0; b < B; b++) {
        nl += example_row(ex[b], T, pad, ids + b * T, targets + b * T);
        nr += ex[b]->len;
    }
    if (n_loss) *n_loss = nl;
    if (real) *real = nr;
    return T;
}

int64_t example_pack(const example *const *ex, int64_t B, int32_t *ids, int32_t *targets, int64_t *len) {
    int64_t N = 0;
    for (int64_t b = 0; b < B; b++) {
        len[b] = ex[b]->len;
        example_row(ex[b], len[b], 0, ids + N, targets + N);
        N += len[b];
    }
    return N;
}

int64_t dataset_batch(const dataset *d, const int64_t *idx, int64_t B, int32_t pad,
                      int32_t *ids, int32_t *targets, int64_t *n_loss, int64_t *real) {
    const example *ex[B > 0 ? B : 1];   /* on the stack: no allocation in a training step */
    for (int64_t b = 0; b < B; b++) ex[b] = &d->ex[idx[b]];
    return example_batch(ex, B, pad, ids, targets, n_loss, real);
}

/* Rank 0's dataset to every rank: the counts, then per example its sizes,
 * then all tokens in one message. */
void dataset_bcast(dataset *d) {
    if (dist_size() == 1) return;
    int64_t head[5] = {d->n, d->truncated, d->dropped, d->unlabeled, (int64_t)d->hash};
    dist_bcast(head, sizeof head, 0);
    int64_t n = head[0];
    if (dist_rank() != 0) {
        dataset_free(d);
        d->n = d->cap = n;
        d->truncated = head[1]; d->dropped = head[2]; d->unlabeled = head[3]; d->hash = (uint64_t)head[4];
        d->ex = xcalloc((size_t)(n ? n : 1), sizeof(example));
    }
    int64_t *sz = xmalloc(sizeof(int64_t) * (size_t)(3 * n + 1)), total = 0;
    for (int64_t i = 0; i < n && dist_rank() == 0; i++) {
        sz[3 * i] = d->ex[i].len; sz[3 * i + 1] = d->ex[i].n_prompt; sz[3 * i + 2] = d->ex[i].bucket;
    }
    dist_bcast(sz, sizeof(int64_t) * (size_t)(3 * n), 0);
    for (int64_t i = 0; i < n; i++) total += sz[3 * i];
    int32_t *all = xmalloc(sizeof(int32_t) * (size_t)(total ? total : 1));
    if (dist_rank() == 0)
        for (int64_t i = 0, o = 0; i < n; o += d->ex[i].len, i++) memcpy(all + o, d->ex[i].ids, sizeof(int32_t) * (size_t)d->ex[i].len);
    dist_bcast(all, sizeof(int32_t) * (size_t)total, 0);
    if (dist_rank() != 0)
        for (int64_t i = 0, o = 0; i < n; o += sz[3 * i], i++) {
            example *e = &d->ex[i];
            e->len = sz[3 * i]; e->n_prompt = sz[3 * i + 1]; e->bucket = sz[3 * i + 2];
            e->ids = xmalloc(sizeof(int32_t) * (size_t)e->len);
            memcpy(e->ids, all + o, sizeof(int32_t) * (size_t)e->len);
        }
    free(sz); free(all);
}
