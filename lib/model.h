/* model.h: a Qwen3 decoder in one contiguous buffer per role.
 *
 * Parameters, gradients and the two AdamW moments are each one 64-byte
 * aligned block with the same layout; P[kind] / G[kind] are named views into
 * them (layered kinds hold all layers back to back). Activations for a
 * batch capacity of Ncap positions (at most Bmax x Tmax) are one more
 * block, allocated on first use, with the memory needed printed before
 * allocation. */
#ifndef WDL_MODEL_H
#define WDL_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "config.h"
#include "kernels.h"

enum {
    W_EMBED, W_LN1, W_Q, W_K, W_V, W_QNORM, W_KNORM, W_O, W_LN2,
    W_GATE, W_UP, W_DOWN, W_NORM, W_HEAD, W_KINDS
};

typedef struct {
    /* forward state saved for backward, all [N, ...] with N the positions
     * of the batch (B*T, or the packed sequences' total) */
    float *resid;      /* [L+1, N, H]: input of each layer, then final */
    float *ln1, *ln1_rstd, *q, *q_rstd, *qr, *k, *k_rstd, *kr, *v;
    float *att;        /* [L, ...] each sequence's [NH, Tb, Tb] softmax probabilities (ACTS_TRAIN, kept), */
    float *att_stats;  /* or [L, N, NH, 2] their statistics, to recompute them (see att_keep_max) */
    float *atty, *r1, *ln2, *ln2_rstd, *gate, *up, *act;
    float *normf, *normf_rstd;
    /* backward scratch, reused layer after layer */
    float *dres, *dln, *dqr, *dq, *dkr, *dk, *dv, *datty, *dgate, *dup, *dact, *dnormf;
    float *att_scratch;   /* attention's block rows (forward without att: probabilities; backward: dP and P) */
    double *rms_part;     /* rmsnorm_backward's dw partials (largest of its calls) */
    float *tmp;        /* [N, H] forward scratch: o_proj and down outputs */
} wdl_acts;

typedef struct {
    wdl_config cfg;
    size_t nparams;                 /* floats in each role buffer */
    size_t off[W_KINDS];            /* offset of each kind in the buffer */
    size_t layer_elems[W_KINDS];    /* per layer (or whole, for unlayered) */
    int layered[W_KINDS];
    float *params, *grads, *m, *v;  /* grads/m/v allocated on demand */
    size_t params_mapped;           /* bytes, when params are lazily mapped pages (model_load_forward) */
    void *view_st;                  /* the open checkpoint whose BF16 matrices stand in for params
                                     * (bf16 views) or shadow them (fp32 decoding) */
    const uint16_t *embed16;        /* with bf16 views: the embedding rows in bf16 */
    uint16_t *w16;                  /* model_load_decode: the BF16 matrices copied (huge pages), or NULL */
    float *P[W_KINDS], *G[W_KINDS];
    /* activations */
    int64_t Bmax, Tmax;             /* capacity: Bmax sequences of <= Tmax positions, */
    int64_t Ncap;                   /* ... Ncap <= Bmax*Tmax positions in all */
    int64_t nseq, N, Tlong;         /* the last forward: sequences, positions, longest */
    int64_t *seq_off;               /* [nseq + 1] its sequences' first rows */
    int64_t act_layers;             /* layers with their own activation slots: all, or 1 (ACTS_STREAM) */
    int act_mode;                   /* model_alloc_acts's mode */
    float *act_mem;
    size_t act_elems;
    /* bf16 training: each layer's ln1, attention output, ln2 and SwiGLU
     * output in bf16, made by the forward for its products and kept for the
     * backward's (gemm_mirror), [L][Ncap*(2H + QD + I)]; else NULL */
    uint16_t *act16;
    wdl_acts a;
    int32_t *ids, *pos;             /* [Ncap] inputs of the last forward */
    /* training keeps attention's probabilities for the backward while they
     * take at most this many bytes (MODEL_ATT_KEEP_MAX unless changed
     * before model_alloc_acts); beyond, only their statistics, and the
     * backward recomputes them: the same bits, memory linear in the
     * sequence length, a little slower (a QK^T product and an exp more) */
    size_t att_keep_max;
    rope_cache rope;                /* RoPE cos/sin, grown with the positions seen */
    /* optional: called by the forward once per layer with that layer's keys
     * after RoPE and values [N, KVH*HD] (decoding's prefill fills its cache) */
    void (*kv_hook)(void *ctx, int64_t layer, const float *kr, const float *v);
    void *kv_ctx;
    /* optional: called by the forward after the embedding lookup with the
     * input rows [N, H], before the first layer reads them (training's
     * NEFTune noise; the backward needs nothing from it) */
    void (*embed_hook)(void *ctx, float *x, int64_t N, int64_t H);
    void *embed_ctx;
    /* optional: where the forwards' and backwards' time goes (NULL: not
     * measured) */
    struct model_times *times;
} wdl_model;

/* Wall seconds per kind of work, added up over forwards and backwards
 * (and over step.c's loss) while a model's `times` points here. Each
 * kernel is one parallel region entered from the calling thread, so its
 * wall time is the whole team's. MT_PRODUCTS: the linear layers' matrix
 * products; MT_ATTENTION: attention's kernels (with bf16 on the fp32
 * tiles, the rounding of their inputs too); MT_NORMS: RMSNorm, the
 * residuals fused with it, QK-norm with RoPE; MT_LOSS: the head's products
 * with the fused softmax and cross-entropy. bench_train reports them per
 * step. */
enum { MT_PRODUCTS, MT_ATTENTION, MT_NORMS, MT_SWIGLU, MT_EMBED, MT_LOSS, MT_KINDS };
typedef struct model_times { double s[MT_KINDS]; } model_times;
extern const char *const model_time_names[MT_KINDS];
/* "products 71.2%, attention 14.0%, ..., the rest 2.1%": each kind's share
 * of `total` seconds, into buf (n bytes) */
void model_times_shares(const model_times *t, double total, char *buf, size_t n);
/* call, its wall time added to m->times's kind k where m measures */
#define MODEL_TIMED(m, k, ...)                                \
    do {                                                      \
        model_times *const mt_ = (m)->times;                  \
        const double mt0_ = mt_ ? wdl_now() : 0.0;            \
        __VA_ARGS__;                                          \
        if (mt_) mt_->s[k] += wdl_now() - mt0_;               \
    } while (0)

#define MODEL_ATT_KEEP_MAX ((size_t)1 << 30)

/* Allocate parameters for cfg (zeroed). */
wdl_model *model_new(const wdl_config *cfg);
void model_free(wdl_model *m);
/* HF Qwen3 initialisation: matrices ~ N(0, std^2), norm weights 1. */
void model_init_random(wdl_model *m, uint64_t seed, double std);
/* Gradient and AdamW buffers (zeroed). */
void model_alloc_grads(wdl_model *m);
void model_alloc_moments(wdl_model *m);
void model_zero_grad(wdl_model *m);
/* Activation buffers for batches up to Bmax x Tmax. mode: ACTS_TRAIN (every
 * layer's activations plus backward scratch, the kernels' included, so that
 * forward and backward allocate nothing), ACTS_FORWARD (every layer's,
 * no backward: what KV-cache prefill reads back), ACTS_STREAM (forward
 * only, one layer's activations reused by every layer and two residual
 * slots: memory independent of depth, same results bit for bit; after
 * model_forward only m->a.normf is meaningful). Also builds the RoPE table
 * for Tmax positions. Prints the bytes needed on stderr when verbose. */
enum { ACTS_FORWARD = 0, ACTS_TRAIN = 1, ACTS_STREAM = 2 };
void model_alloc_acts(wdl_model *m, int64_t Bmax, int64_t Tmax, int mode, int verbose);
/* The same for packed batches of at most Npos positions in all (1..Bmax
 * x Tmax: what the sequences take, not Bmax x Tmax), with ACTS_STREAM
 * at least `spare` floats in model_spare_acts's part (the layers' slots
 * padded: room that a scorer's head needs anyway, shared with them). */
void model_alloc_acts_packed(wdl_model *m, int64_t Bmax, int64_t Tmax, int64_t Npos, size_t spare, int mode,
                             int verbose);
/* With ACTS_STREAM activations: the part of their block that lies before
 * m->a.normf, every slot the layers use and none that the head reads,
 * which after a forward is free as scratch until the next one (a
 * scorer's logits: no memory of their own); its size in floats in
 * *floats. NULL (and 0) in the other modes. */
float *model_spare_acts(const wdl_model *m, size_t *floats);

/* Forward over ids [B*T] (row b holds a sequence; positions 0..T-1).
 * Leaves the final normed hidden states in m->a.normf [B*T, H]. */
void model_forward(wdl_model *m, const int32_t *ids, int64_t B, int64_t T);
/* Forward over nseq <= Bmax sequences packed back to back in ids (sequence b is
 * len[b] tokens, 1..Tmax, positions from 0; at most Ncap in all): no
 * padding computed. Each sequence's results are those it would get alone,
 * up to the GEMMs' rounding. normf is [sum len, H] in the same order. */
void model_forward_packed(wdl_model *m, const int32_t *ids, const int64_t *len, int64_t nseq);
/* Backward from dL/d(normf) in m->a.dnormf, accumulating into m->grads. */
void model_backward(wdl_model *m);
/* LM-head weight [V,H] and its gradient (the embedding when tied). */
float *model_head(wdl_model *m);
float *model_head_grad(wdl_model *m);

/* Does this kind get weight decay (matrices yes, norm vectors no)? */
int model_kind_decays(int kind);
/* Visit every HF tensor: name, shape, pointer into a role buffer. */
typedef void (*model_tensor_fn)(void *ctx, const char *name, int ndim, const int64_t *shape, size_t offset);
void model_each_tensor(const wdl_model *m, model_tensor_fn fn, void *ctx);

/* Model directories: config.json + model.safetensors (HF names). Load
 * validates every tensor's shape against the config and rejects tensors
 * it does not know. Save writes to a temporary directory and renames it. */
wdl_model *model_load(const char *dir);
/* For forward-only use (scoring, decoding) in the process-wide gemm
 * precision. fp32: model_load, the small matrices kept packed for
 * sgemm_own (gemm_keep_packed, until model_free). bf16: the weights are
 * held once in bf16, either as the checkpoint's own BF16 matrices read in
 * place (every matrix BF16 on disk: no fp32 copy of them is ever made;
 * their floats in params stay unwritten zeros that only the gemm views
 * and model_embed stand for) or converted once from the fp32 load
 * (gemm_ctx_set_readonly). Same values either way. Such a model must not
 * be trained or written. */
wdl_model *model_load_forward(const char *dir);
/* For greedy decoding: model_load_forward, and in fp32, when every matrix
 * is BF16 on disk, each matrix's floats also get its BF16 values as a gemm
 * shadow (gemm_ctx_add_bf16_shadow): decoding's few-row products then read
 * half the bytes, same values. Not for scoring, whose products have many
 * rows: the shadows would only add to the resident memory. Where fp32
 * takes views (gemm_ctx_fp32_views), model_load_forward's views instead,
 * which the few-row kernel reads as shadows (gemm_ctx_fp32_views_few_rows,
 * set on the default context): the same bytes, no floats.
 * copy: the BF16 matrices (views or shadows) are copied into one buffer of
 * transparent huge pages (w16) and the file is closed, instead of being
 * read where the file maps them. Decoding reads every matrix once per
 * step, and each 4 KB page of the mapping costs a TLB miss and stops the
 * hardware prefetchers: about 10% of a bf16 step of the Qwen3-0.6B shape.
 * The copy costs about 0.5 s of load there, so it pays for runs of about
 * a hundred steps or more, where fresh huge pages come at 1 s per GB or
 * better: it is given up (the file read in place) at the first 16 MB of
 * them that come slower, as on a virtual machine that returned its free
 * memory to the host (9-13 s per GB on a Zen 3 one). The same values either way. */
wdl_model *model_load_decode(const char *dir, int copy);
/* Embedding rows of ids into out [N, H] (from the bf16 rows when held so). */
void model_embed(const wdl_model *m, float *out, const int32_t *ids, int64_t N);
/* Write config.json + model.safetensors into an existing directory. bf16:
 * store weights as BF16 (round to nearest even) instead of F32. */
void model_write_dir(const wdl_model *m, const char *dir, int bf16);
/* Full forward + loss FLOPs per token (matmuls only; 3x for training). */
double model_flops_per_token(const wdl_config *c, int64_t T);


/* A role buffer (params, m or v) as its own safetensors file, tensors named
 * prefix + HF name (optimizer state beside a checkpoint). */
void model_write_role(const wdl_model *m, const float *buf, const char *path, const char *prefix);
void model_read_role(const wdl_model *m, float *buf, const char *path, const char *prefix);
/* Copy tokenizer files (tokenizer.json, tokenizer_config.json) if present. */
void model_copy_tokenizer(const char *src_dir, const char *dst_dir);
#endif
