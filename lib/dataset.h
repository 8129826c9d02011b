/* dataset.h: training/scoring examples in memory: records rendered through
 * the model's prompt template and tokenized, with the number of leading
 * (prompt) tokens that carry no loss. Batches pad each row to the longest
 * example of the batch. */
#ifndef WDL_DATASET_H
#define WDL_DATASET_H
#include <stdint.h>
#include <stddef.h>
#include <jansson.h>
#include "common.h"
#include "template.h"
#include "tokenizer.h"

typedef struct {
    int32_t *ids;      /* tokens */
    int64_t len;       /* number of tokens */
    int64_t n_prompt;  /* leading tokens without loss (0 with lm_loss) */
    int64_t bucket;    /* the record's "bucket" field, or -1 */
} example;

typedef struct {
    example *ex;
    int64_t n, cap;
    int64_t truncated, dropped;   /* over --seq: cut at the end / nothing left to learn */
    int64_t unlabeled;            /* records without a completion, skipped */
    uint64_t hash;                /* fingerprint of every token (resume checks it) */
} dataset;

/* One record rendered and tokenized, as dataset_load and wdl-score do it:
 * ids cut to max_len (*cut = 1 when they were), n_prompt = the prompt's
 * tokens (0 with lm_loss), bucket from the record. Returns 0, leaving e
 * untouched, for a record without a completion. Dies "where:line: record
 * has no prompt". buf is the caller's scratch (reused across calls); the
 * ids are malloc'd (free e->ids). */
int example_encode(example *e, json_t *rec, const wdl_tokenizer *tok, wdl_template tpl, int64_t max_len,
                   int lm_loss, ivec *buf, int *cut, const char *where, int64_t line);
/* The generation prompt of a record (wdl-eval) into ids (cleared first);
 * dies like example_encode on a record without a prompt. */
void example_prompt(ivec *ids, json_t *rec, const wdl_tokenizer *tok, wdl_template tpl, const char *where,
                    int64_t line);

/* Read every record of the files (NULL/"-" = stdin), render and tokenize.
 * lm_loss: loss on every token but the first (pretraining on full text).
 * Dies on a record without a prompt, naming file and line; records without
 * a completion (e.g. an imported problem whose solution could not be
 * derived) are skipped and counted in `unlabeled`. */
void dataset_load(dataset *d, const char *const *paths, int npaths, const wdl_tokenizer *tok,
                  wdl_template tpl, int64_t max_len, int lm_loss);
void dataset_free(dataset *d);
int64_t dataset_max_len(const dataset *d);

/* Build a padded batch from examples idx[0..B): ids [B*T], targets [B*T]
 * (targets[b*T+t] = next token when it is a loss token, else -1), where
 * T = longest example. Returns T and the number of loss tokens; *real
 * receives the number of non-pad positions. pad = the id written in pads. */
int64_t dataset_batch(const dataset *d, const int64_t *idx, int64_t B, int32_t pad,
                      int32_t *ids, int32_t *targets, int64_t *n_loss, int64_t *real);
/* The same from examples ex[0..B) anywhere in memory (wdl-score). */
int64_t example_batch(const example *const *ex, int64_t B, int32_t pad, int32_t *ids, int32_t *targets,
                      int64_t *n_loss, int64_t *real);
/* The same examples packed back to back, without padding (for
 * model_forward_packed): ids/targets [sum len], len[b] = ex[b]->len.
 * Returns the positions written. */
int64_t example_pack(const example *const *ex, int64_t B, int32_t *ids, int32_t *targets, int64_t *len);
/* Under MPI: rank 0 loaded d; afterwards every rank holds the same
 * examples (only rank 0 needs to read the input). No-op on one process. */
void dataset_bcast(dataset *d);
#endif
