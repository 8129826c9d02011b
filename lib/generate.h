/* generate.h: greedy decoding with a key/value cache. A batch of sequences
 * advances one token per step each; a sequence still reading its prompt is
 * fed the next prompt token (teacher forcing), one that has finished its
 * prompt gets its own argmax. So prompts of different lengths share steps
 * without padding, and each step is one [B, H] matrix product per layer. */
#ifndef WDL_GENERATE_H
#define WDL_GENERATE_H
#include <stdint.h>
#include "common.h"
#include "model.h"
#include "progress.h"

typedef struct {
    wdl_model *m;
    int64_t B, maxlen;
    float *kc, *vc;           /* [L, B, maxlen, KVH*HD] */
    float *x, *xn, *q, *k, *v, *aty, *tmp, *gate, *up, *att, *logits;
    float *rstd;              /* [B * max(heads, 1)]: RMSNorm's rstd, written, never read */
    int32_t *pos;             /* [B] current position (tokens already cached) */
    int32_t *ids;             /* [B] the step's token ids (0 for inactive rows) */
    int32_t *pack;            /* [B * maxlen] prompts packed for one prefill */
    float *plogits;           /* [B, V] their last positions' logits */
    wdl_progress *progress;   /* optional: gen_greedy reports finished sequences */
    int64_t progress_base;    /* ... counted from here */
} gen_state;

/* Allocates everything decoding needs (and m's RoPE table for maxlen
 * positions), so that gen_step allocates nothing. */
void gen_init(gen_state *g, wdl_model *m, int64_t B, int64_t maxlen);
void gen_free(gen_state *g);
/* Reset sequence b to empty. */
void gen_reset(gen_state *g, int64_t b);
/* Feed one token per active sequence (active[b] != 0): appends tok[b] at
 * pos[b] and leaves logits [B, V] for the next token. */
void gen_step(gen_state *g, const int32_t *tok, const uint8_t *active);
/* Run prompt through a full forward pass, fill sequence b's cache and
 * leave the logits of its last position in row b (uses m's activations). */
void gen_prefill(gen_state *g, int64_t b, const int32_t *prompt, int64_t plen);
/* The same for k <= B prompts at once, prompt[j] into slot[j], packed into
 * one forward pass without padding that holds one layer's activations (the
 * cache is filled layer by layer through model_forward's kv_hook). */
void gen_prefill_many(gen_state *g, const int64_t *slot, const int32_t *const *prompt, const int64_t *plen,
                      int64_t k);
/* argmax of row b of the last logits (lowest id on ties). */
int32_t gen_argmax(const gen_state *g, int64_t b);

/* Greedy completion of n prompts (ids + lengths), batch of g->B at a time.
 * Stops at stop_id or after max_new tokens (or when maxlen is reached).
 * out[i] receives the generated ids (without the stop token). Returns the
 * total number of generated tokens. */
int64_t gen_greedy(gen_state *g, const int32_t *const *prompts, const int64_t *plen, int64_t n,
                   int32_t stop_id, int64_t max_new, ivec *out);
#endif
