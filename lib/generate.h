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
    float *kc, *vc;           /* [L, B, maxlen, KVH*HD]; NULL in bf16 */
    /* bf16 precision: the cache in bf16 instead, [L, B, maxlen, KVH*HD]
     * (keys after RoPE and values rounded as the forward's attention
     * products round them: half the bytes to hold and to read each step) */
    uint16_t *kc16, *vc16;
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
 * positions), so that gen_step allocates nothing. The cache is fp32, or
 * bf16 where the default GEMM context's precision is GEMM_BF16 (the
 * precision must not change while g is in use). */
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
/* The same on z[0..n): the lowest index of the greatest value, NaNs passed
 * over; 0 where z[0] is a NaN or nothing exceeds -inf. */
int64_t gen_argmax_row(const float *z, int64_t n);

/* One step's attention for the grp query heads that share a KV head, on a
 * bf16 cache: the semantics of the bf16 forward's attention products (its
 * GEMMs round their inputs to bf16 and sum in fp32). q [grp, HD] holds the
 * heads' queries already rounded to bf16 values; k and v point at the KV
 * head's n cached positions (rows ldkv apart). Scores scale (q.k) go to s
 * (rows lds apart, n used), then the softmax (fp32 exps, a double sum), the
 * probabilities rounded to bf16, and out [grp, HD] = P V. */
void gen_attend_bf16(float *out, float *s, int64_t lds, const float *q, const uint16_t *k, const uint16_t *v,
                     int64_t ldkv, int64_t n, int64_t HD, int64_t grp, float scale);
/* Its first stage alone: the scores scale (q . k) into s (tests: the
 * probabilities' rounding to bf16 would hide how the scores were summed) */
void gen_attend_scores_bf16(float *s, int64_t lds, const float *q, const uint16_t *k, int64_t ldkv, int64_t n,
                            int64_t HD, int64_t grp, float scale);
/* Tests: gen_attend_bf16's route, where HD is a multiple of 16: 0 its
 * scalar code, 1 AVX2 and FMA, 2 AVX-512F (the same bytes), -1 or past the
 * CPU's best: the best (the default). Returns the CPU's best. */
int gen_attend_bf16_route(int r);

/* Greedy completion of n prompts (ids + lengths), batch of g->B at a time.
 * Stops at stop_id or after max_new tokens (or when maxlen is reached).
 * out[i] receives the generated ids (without the stop token). Returns the
 * total number of generated tokens. */
int64_t gen_greedy(gen_state *g, const int32_t *const *prompts, const int64_t *plen, int64_t n,
                   int32_t stop_id, int64_t max_new, ivec *out);
#endif
