/* kernels_impl.h: kernel bodies, included twice by kernels.c: with
 * R = float under the names written here, then with R = double and each name
 * mapped to its _f64 twin by kernels.c's table. GEMM(...) takes cblas_sgemm's
 * arguments and maps to the backend of lib/gemm.h (float) or to cblas_dgemm
 * (double); GEMM_HOLD(on) is gemm_hold_inputs (float) or nothing (double);
 * ROW_MAX and ROW_SUM are lanes.h's reductions for R.
 * Loops over rows run under OpenMP; a GEMM made inside an OpenMP
 * region runs single-threaded (OpenMP builds of OpenBLAS and oneDNN), so
 * the two never oversubscribe the cores. The accumulate-or-overwrite rule
 * and the scratch sizes are kernels.h's. */

/* below this many elements a loop runs on one thread: a parallel region
 * costs more than it saves (decoding works on one row per sequence) */
#ifndef PAR_MIN
#define PAR_MIN 32768
#endif
/* Parallel loops take chunks as threads come (common.h's par_chunk). In
 * simd loops the chunks are whole vectors (the simd modifier), so which
 * elements fall in the scalar tail does not depend on the thread count. */
#ifndef PAR_CHUNK
#define PAR_CHUNK(n) par_chunk((n), omp_get_max_threads())
#endif

void embedding_forward(R *out, const int32_t *ids, const R *emb, int64_t N, int64_t C) {
#pragma omp parallel for schedule(dynamic, PAR_CHUNK(N)) if (N * C > PAR_MIN)
    for (int64_t n = 0; n < N; n++)
        memcpy(out + n * C, emb + (int64_t)ids[n] * C, (size_t)C * sizeof(R));
}

/* Serial on purpose: two positions may hold the same token, and a fixed
 * summation order keeps results bit-identical across thread counts. */
void embedding_backward(R *demb, const R *dout, const int32_t *ids, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        R *d = demb + (int64_t)ids[n] * C;
        const R *g = dout + n * C;
        for (int64_t c = 0; c < C; c++) d[c] += g[c];
    }
}

void linear_forward(R *out, const R *inp, const R *w, int64_t N, int64_t C, int64_t OC) {
    GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1, inp, C, w, C, 0, out, OC);
}

/* Both products read dout: held, bf16 converts it once; in float, one
 * call of the backend for the two (gemm_run_n: one parallel region). */
static void linear_back(R *dinp, R *dw, const R *dout, const R *inp, const R *w, int64_t N, int64_t C, int64_t OC,
                        int set) {
    GEMM_HOLD(1);
#if GEMM_N
    gemm_prod p[2];
    int n = 0;
    if (dinp) p[n++] = (gemm_prod){0, 0, N, C, OC, 1, dout, OC, w, C, NULL, set ? 0 : 1, dinp, C};
    if (dw) p[n++] = (gemm_prod){1, 0, OC, C, N, 1, dout, OC, inp, C, NULL, 1, dw, C};
    wdl_sgemm_n(n, p);
#else
    if (dinp) GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1, dout, OC, w, C, set ? 0 : 1, dinp, C);
    if (dw) GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1, dout, OC, inp, C, 1, dw, C);
#endif
    GEMM_HOLD(0);
}
void linear_backward(R *dinp, R *dw, const R *dout, const R *inp, const R *w, int64_t N, int64_t C, int64_t OC) {
    linear_back(dinp, dw, dout, inp, w, N, C, OC, 0);
}

/* As linear_backward, but dinp is overwritten, not accumulated: saves
 * zeroing a scratch buffer that only this product fills. */
void linear_backward_set(R *dinp, R *dw, const R *dout, const R *inp, const R *w, int64_t N, int64_t C, int64_t OC) {
    linear_back(dinp, dw, dout, inp, w, N, C, OC, 1);
}

/* n linear layers reading one input (q, k and v; gate and up): out_i =
 * inp W_i^T [N, OC_i], the bytes of linear_forward on each; in float, one
 * call of the backend for all (gemm_run_n: one parallel region). */
void linear_forward_n(int n, R *const *out, const R *inp, const R *const *w, const int64_t *OC, int64_t N,
                      int64_t C) {
#if GEMM_N
    gemm_prod p[GEMM_N_MAX];
    if (n > GEMM_N_MAX) die("internal: linear_forward_n of %d layers", n);
    for (int i = 0; i < n; i++) p[i] = (gemm_prod){0, 1, N, OC[i], C, 1, inp, C, w[i], C, NULL, 0, out[i], OC[i]};
    wdl_sgemm_n(n, p);
#else
    for (int i = 0; i < n; i++) linear_forward(out[i], inp, w[i], N, C, OC[i]);
#endif
}

/* Their backward: dinp = (with set; else +=) dout_0 W_0 + dout_1 W_1 + ...
 * summed in that order, then every dw_i += dout_i^T inp; in float all 2n
 * products in one call of the backend (inp packed once, dinp's products
 * item by item in order): the bytes of linear_backward (or
 * linear_backward_set for i = 0, with set) on each in turn. */
void linear_backward_n(int n, R *dinp, R *const *dw, R *const *dout, const R *inp, const R *const *w,
                       const int64_t *OC, int64_t N, int64_t C, int set) {
    GEMM_HOLD(1);
#if GEMM_N
    gemm_prod p[GEMM_N_MAX];
    if (2 * n > GEMM_N_MAX) die("internal: linear_backward_n of %d layers", n);
    for (int i = 0; i < n; i++) {
        p[i] = (gemm_prod){0, 0, N, C, OC[i], 1, dout[i], OC[i], w[i], C, NULL, set && !i ? 0 : 1, dinp, C};
        p[n + i] = (gemm_prod){1, 0, OC[i], C, N, 1, dout[i], OC[i], inp, C, NULL, 1, dw[i], C};
    }
    wdl_sgemm_n(2 * n, p);
#else
    for (int i = 0; i < n; i++)
        GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC[i], 1, dout[i], OC[i], w[i], C, set && !i ? 0 : 1,
             dinp, C);
    for (int i = 0; i < n; i++)
        GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, OC[i], C, N, 1, dout[i], OC[i], inp, C, 1, dw[i], C);
#endif
    GEMM_HOLD(0);
}

/* out = w * x / sqrt(mean(x^2) + eps), row by row (HF Qwen3RMSNorm). */
/* One row: o = w * x / sqrt(mean(x^2) + eps), its 1/rms into *rstd (the
 * arithmetic of every RMSNorm here, fused or not). */
static inline void rms_row(R *o, R *rstd, const R *x, const R *w, int64_t C, double eps) {
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; c++) ss += (double)x[c] * x[c];
    R r = (R)(1.0 / sqrt(ss / C + eps));
    *rstd = r;
    for (int64_t c = 0; c < C; c++) o[c] = w[c] * (x[c] * r);
}

void rmsnorm_forward(R *out, R *rstd, const R *inp, const R *w, int64_t N, int64_t C, double eps) {
#pragma omp parallel for schedule(dynamic, PAR_CHUNK(N)) if (N * C > PAR_MIN)
    for (int64_t n = 0; n < N; n++) rms_row(out + n * C, rstd + n, inp + n * C, w, C, eps);
}

/* sum = a + b, then out = rmsnorm(sum) * w: residual_forward followed by
 * rmsnorm_forward in one pass over memory (the row is still in cache for
 * the norm), bit for bit the same results. */
void residual_rmsnorm_forward(R *sum, R *out, R *rstd, const R *a, const R *b, const R *w, int64_t N, int64_t C,
                              double eps) {
#pragma omp parallel for schedule(dynamic, PAR_CHUNK(N)) if (N * C > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        R *x = sum + n * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) x[c] = a[n * C + c] + b[n * C + c];
        rms_row(out + n * C, rstd + n, x, w, C, eps);
    }
}

/* One row of RMSNorm's backward, with xh = x*r: dx = r * (g - xh *
 * mean(g*xh)), g = d*w, into di (added; with `set` written as 0 + value,
 * the bits of adding into a zeroed row, -0 included), and the row's dw
 * terms d*xh into the block partial p (if not NULL). */
static inline void rms_back_row(R *di, double *p, const R *d, const R *x, const R *w, R r, int64_t C, int set) {
    if (di) {
        double dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < C; c++) dot += (double)d[c] * w[c] * (x[c] * r);
        const R m = (R)(dot / C);
        if (set)
            for (int64_t c = 0; c < C; c++) di[c] = (R)0 + r * (d[c] * w[c] - x[c] * r * m);
        else
            for (int64_t c = 0; c < C; c++) di[c] += r * (d[c] * w[c] - x[c] * r * m);
    }
    if (p)
        for (int64_t c = 0; c < C; c++) p[c] += (double)(d[c] * (x[c] * r));
}

/* Block b's partial of dw, zeroed (NULL without dw) */
static inline double *rms_block_part(double *part, const R *dw, int64_t b, int64_t C) {
    if (!dw) return NULL;
    double *p = part + b * C;
    for (int64_t c = 0; c < C; c++) p[c] = 0;
    return p;
}

/* dw += the block partials, in block order */
static void rms_back_dw(R *dw, const double *part, int64_t nb, int64_t C) {
    if (dw)
        for (int64_t b = 0; b < nb; b++)
            for (int64_t c = 0; c < C; c++) dw[c] += (R)part[b * C + c];
}

/* With xh = x*rstd: dx = rstd * (g - xh * mean(g*xh)), g = dout*w; dw += dout*xh.
 * One pass over fixed blocks of rows computes both (each row of dout and
 * inp read once); dw is reduced in a fixed order, a partial per block then
 * the blocks added in order (per-thread partials would make the sum depend
 * on the thread count). */
static void rms_back(R *dinp, R *dw, const R *dout, const R *inp, const R *w, const R *rstd, int64_t N, int64_t C,
                     double *part, int set) {
    const int64_t RB = RMSNORM_ROW_BLOCK, nb = (N + RB - 1) / RB;
#pragma omp parallel for schedule(dynamic, PAR_CHUNK(nb)) if (N * C > PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        double *p = rms_block_part(part, dw, b, C);
        const int64_t e = (b + 1) * RB < N ? (b + 1) * RB : N;
        for (int64_t n = b * RB; n < e; n++)
            rms_back_row(dinp ? dinp + n * C : NULL, p, dout + n * C, inp + n * C, w, rstd[n], C, set);
    }
    rms_back_dw(dw, part, nb, C);
}
void rmsnorm_backward(R *dinp, R *dw, const R *dout, const R *inp, const R *w, const R *rstd, int64_t N, int64_t C,
                      double *part) {
    rms_back(dinp, dw, dout, inp, w, rstd, N, C, part, 0);
}
/* As rmsnorm_backward, but dinp is overwritten (no zeroing pass before). */
void rmsnorm_backward_set(R *dinp, R *dw, const R *dout, const R *inp, const R *w, const R *rstd, int64_t N,
                          int64_t C, double *part) {
    rms_back(dinp, dw, dout, inp, w, rstd, N, C, part, 1);
}

/* Rotate-half RoPE (HF): for i < HD/2, angle = pos * theta^(-2i/HD),
 * (x_i, x_{i+HD/2}) -> (x_i cos - x_{i+h} sin, x_{i+h} cos + x_i sin).
 * Rows are [N, H, HD]; pos[n] is the position of row n. The inverse
 * frequency and angle are formed in the kernel's precision, as HF does. */
/* The table covers every position in pos: grown geometrically so that
 * decoding one position at a time rebuilds it O(log T) times. An entry
 * depends only on its position, so a table built larger (reserved) holds
 * the same values. */
static void rope_build(rope_cache *t, int64_t need, int64_t HD, double theta) {
    if (t->cs && t->theta == theta && t->hd == HD && need <= t->np) return;
    int64_t np = need > 2 * t->np ? need : 2 * t->np;
    if (t->theta != theta || t->hd != HD) np = need > 64 ? need : 64;
    int64_t half = HD / 2;
    free(t->cs); free(t->sn);
    t->cs = xmalloc(sizeof(R) * (size_t)(np * half));
    t->sn = xmalloc(sizeof(R) * (size_t)(np * half));
    for (int64_t i = 0; i < half; i++) {
        R inv = (R)(1.0 / pow(theta, (double)(2 * i) / (double)HD));
        for (int64_t p = 0; p < np; p++) {
            R a = (R)p * inv;
            t->cs[p * half + i] = (R)cos((double)a);
            t->sn[p * half + i] = (R)sin((double)a);
        }
    }
    t->theta = theta; t->hd = HD; t->np = np;
}

void rope_cache_reserve(rope_cache *t, int64_t np, int64_t HD, double theta) {
    rope_build(t, np, HD, theta);
}

void rope_cache_free(rope_cache *t) {
    free(t->cs); free(t->sn);
    memset(t, 0, sizeof *t);
}

/* The table for every position in pos[N] */
static void rope_table(rope_cache *tab, const int32_t *pos, int64_t N, int64_t HD, double theta) {
    int32_t mp = 0;
    for (int64_t n = 0; n < N; n++) if (pos[n] > mp) mp = pos[n];
    rope_build(tab, (int64_t)mp + 1, HD, theta);
}

/* One row of HD at one position (its cos c and sin s), rotated by sign
 * (-1: the inverse, for backward) into o, or added to it. */
static inline void rope_row(R *o, const R *x, const R *c, const R *s, int64_t half, int sign, int accumulate) {
    for (int64_t i = 0; i < half; i++) {
        R x1 = x[i], x2 = x[i + half], si = sign * s[i];
        R y1 = x1 * c[i] - x2 * si, y2 = x2 * c[i] + x1 * si;
        if (accumulate) { o[i] += y1; o[i + half] += y2; }
        else { o[i] = y1; o[i + half] = y2; }
    }
}

/* Rotates rows [N, H, HD] by their positions (sign -1: the inverse, for
 * backward), into out or added to it. With nw, each row is first
 * QK-normalised with weight nw (rmsnorm_forward's arithmetic, its rstd kept
 * in rstd[N*H]) in a row buffer: the fused QK-norm + RoPE. */
static void rope_apply(R *out, rope_cache *tab, const R *inp, const int32_t *pos, int64_t N, int64_t H, int64_t HD,
                       double theta, int sign, int accumulate, const R *nw, R *rstd, double eps) {
    int64_t half = HD / 2;
    rope_table(tab, pos, N, HD, theta);
    const R *cs = tab->cs, *sn = tab->sn;
#pragma omp parallel for schedule(dynamic, PAR_CHUNK(N)) if (N * H * HD > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const R *c = cs + (int64_t)pos[n] * half, *s = sn + (int64_t)pos[n] * half;
        R xn[nw ? HD : 1];
        for (int64_t h = 0; h < H; h++) {
            const R *x = inp + (n * H + h) * HD;
            if (nw) {
                rms_row(xn, rstd + n * H + h, x, nw, HD, eps);
                x = xn;
            }
            rope_row(out + (n * H + h) * HD, x, c, s, half, sign, accumulate);
        }
    }
}

void rope_forward(R *out, rope_cache *tab, const R *inp, const int32_t *pos, int64_t N, int64_t H,
                      int64_t HD, double theta) {
    rope_apply(out, tab, inp, pos, N, H, HD, theta, 1, 0, NULL, NULL, 0);
}

/* Qwen3's QK-norm then RoPE, row by row (a row is one head of one token):
 * the same results as rmsnorm_forward then rope_forward, without the
 * normalised tensor's trip through memory. rstd [N*H] as rmsnorm_forward's. */
void qknorm_rope_forward(R *out, R *rstd, rope_cache *tab, const R *inp, const R *w, const int32_t *pos, int64_t N,
                         int64_t H, int64_t HD, double eps, double theta) {
    rope_apply(out, tab, inp, pos, N, H, HD, theta, 1, 0, w, rstd, eps);
}

void rope_backward(R *dinp, rope_cache *tab, const R *dout, const int32_t *pos, int64_t N, int64_t H,
                       int64_t HD, double theta) {
    rope_apply(dinp, tab, dout, pos, N, H, HD, theta, -1, 1, NULL, NULL, 0);
}
/* As rope_backward, but dinp is overwritten (no zeroing pass before). */
void rope_backward_set(R *dinp, rope_cache *tab, const R *dout, const int32_t *pos, int64_t N, int64_t H,
                       int64_t HD, double theta) {
    rope_apply(dinp, tab, dout, pos, N, H, HD, theta, -1, 0, NULL, NULL, 0);
}

/* The backward of qknorm_rope_forward, fused: dinp overwritten with the
 * bits of rope_backward_set into a buffer, then rmsnorm_backward into a
 * zeroed dinp (the same row blocks of partials for dw, added into dw), with
 * the rotated gradient kept in a row buffer instead of a trip through
 * memory, and one parallel region instead of two. Rows [N, H, HD]. */
void qknorm_rope_backward_set(R *dinp, R *dw, rope_cache *tab, const R *dout, const R *inp, const R *w,
                              const R *rstd, const int32_t *pos, int64_t N, int64_t H, int64_t HD, double theta,
                              double *part) {
    const int64_t half = HD / 2, rows = N * H, RB = RMSNORM_ROW_BLOCK, nb = (rows + RB - 1) / RB;
    rope_table(tab, pos, N, HD, theta);
    const R *cs = tab->cs, *sn = tab->sn;
#pragma omp parallel for schedule(dynamic, PAR_CHUNK(nb)) if (rows * HD > PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        double *p = rms_block_part(part, dw, b, HD);
        const int64_t e = (b + 1) * RB < rows ? (b + 1) * RB : rows;
        R g[HD];
        for (int64_t row = b * RB; row < e; row++) {   /* head row % H of token row / H */
            const int64_t at = (int64_t)pos[row / H] * half;
            rope_row(g, dout + row * HD, cs + at, sn + at, half, -1, 0);
            rms_back_row(dinp + row * HD, p, g, inp + row * HD, w, rstd[row], HD, 1);
        }
    }
    rms_back_dw(dw, part, nb, HD);
}

/* exp(row[u] - mx) for keys u <= t, in place, and 0 after them up to the
 * next whole vector: tv is returned. Over whole vectors, to use the vector
 * exp (libmvec), whose lanes are computed each on its own. The tail takes
 * mx first and is zeroed after: an input of -inf (whose exp is 0) sends
 * libmvec's vector to a scalar expf per such lane, and with a tail in
 * nearly every row that cost attention's forward about 14% of its time
 * (the bench model's shape, probabilities kept, one thread). Not
 * inlined, so that the backward recomputes the forward's bits with the
 * very same code. */
__attribute__((noinline)) static int64_t att_exp_row(R *row, int64_t t, int64_t T, R mx) {
    int64_t tv = (t + 16) & ~(int64_t)15;
    if (tv > T) tv = T;
    for (int64_t u = t + 1; u < tv; u++) row[u] = mx;
#pragma omp simd
    for (int64_t u = 0; u < tv; u++) row[u] = EXP(row[u] - mx);
    for (int64_t u = t + 1; u < tv; u++) row[u] = 0;
    return tv;
}

/* Row t's exps times inv (keys 0..t), then zeros from tv (att_exp_row's
 * end) up to width: the one normalisation of the forward and of its
 * recomputation. */
static inline void att_norm_row(R *row, int64_t t, int64_t tv, int64_t width, R inv) {
    for (int64_t u = 0; u <= t; u++) row[u] *= inv;
    for (int64_t u = tv; u < width; u++) row[u] = 0;
}

/* The causal softmax of one block's rows r0..r1-1 (row t at P + (t - r0)
 * T, the scores of keys 0..t): probabilities, then zeros up to `width`;
 * with st, row t's max and 1/sum at st[t * sts], st[t * sts + 1]. */
static void att_softmax_rows(R *P, int64_t r0, int64_t r1, int64_t T, int64_t width, R *st, int64_t sts) {
    for (int64_t t = r0; t < r1; t++) {
        R *row = P + (t - r0) * T;
        R mx = ROW_MAX(row, t + 1);   /* lanes.h: a fixed order, no stall */
        int64_t tv = att_exp_row(row, t, T, mx);
        /* in a pass of its own: a double sum beside the float exp would make
         * the compiler give up the 16-lane exp */
        R inv = (R)(1.0 / ROW_SUM(row, NULL, t + 1));
        att_norm_row(row, t, tv, width, inv);
        if (st) {
            st[t * sts] = mx;
            st[t * sts + 1] = inv;
        }
    }
}

/* The forward's probabilities again, from the same scores and its saved
 * statistics: the same operations on the same values, so the same bits. */
static void att_probs_rows(R *P, int64_t r0, int64_t r1, int64_t T, const R *st, int64_t sts) {
    for (int64_t t = r0; t < r1; t++) {
        R *row = P + (t - r0) * T;
        int64_t tv = att_exp_row(row, t, T, st[t * sts]);
        att_norm_row(row, t, tv, r1, st[t * sts + 1]);
    }
}

/* Causal GQA attention. q [N, NH*HD], k/v [N, KVH*HD], out [N, NH*HD] with
 * N = B*T (or off[B] packed). For the backward the forward saves either
 * the probabilities, each sequence's [NH, Tb, Tb] in att (upper triangle
 * zero), or only each row's softmax statistics, its largest score and
 * 1/sum, in stats ([N, NH, 2]), from which the backward recomputes the
 * probabilities a block at a time: the same bits, in memory that grows
 * with T instead of T^2, for a QK^T product and an exp per score more. A
 * forward without att works in a [rows of one block, T] area of scratch
 * per (sequence, head); one with att may pass NULL scratch, and then runs
 * its products on the backend's GEMMs, not on attn_tiles.h's or
 * attn_amx.h's tiles (whose transposed keys or packed operands take room
 * in the areas: kernels.h).
 * Query head h reads KV head h / (NH/KVH) in place: no repeated K/V.
 * Rows go in blocks of ATT_ROW_BLOCK: a block of query rows only meets the
 * keys up to its last row, so the GEMMs skip most of the masked upper
 * triangle (the tiles skip the rest, tile by tile). */
void attention_forward(R *out, R *att, R *stats, const R *q, const R *k, const R *v, attn_dims d, R *scratch) {
    const int64_t HD = d.HD, ldq = d.NH * HD, ldk = d.KVH * HD, grp = d.NH / d.KVH;
    const R scale = (R)(1.0 / sqrt((double)HD));
    att_seq sq[d.B > 0 ? d.B : 1];
    att_seqs(sq, d);
#if ATT_TILES
    /* r16: bf16 on the fp32 tiles, q, k and v rounded by the caller, P here */
    const int r16 = scratch && gemm_attention_tiles16_for(d.HD),
              tiles = scratch && (r16 || gemm_attention_tiles_for(d.HD)), amx = scratch && gemm_attention_amx(),
              bf = amx || (scratch && gemm_attention_dot());
#endif
#pragma omp parallel for schedule(dynamic, 1) if (d.B * d.NH * d.T * d.T * d.HD > PAR_MIN)
    for (int64_t bh = 0; bh < d.B * d.NH; bh++) {
        const att_seq *s = &sq[bh / d.NH];
        int64_t h = bh % d.NH, kh = h / grp, T = s->T;
        const R *qh = q + s->row * ldq + h * HD;
        const R *kk = k + s->row * ldk + kh * HD, *vv = v + s->row * ldk + kh * HD;
        R *y = out + s->row * ldq + h * HD;
        R *st = stats ? stats + (s->row * d.NH + h) * 2 : NULL;
        /* this head's area of scratch (none with att and NULL scratch): room
         * for the tiles, then the block's rows */
        R *area = scratch ? scratch + s->fwd + h * attention_forward_area(T, HD) : NULL,
          *blk = area ? area + attention_tiles_room(T, HD) : NULL;
#if ATT_TILES
        float *Kt = area;   /* the keys transposed */
        if (tiles) tiles_transpose(Kt, kk, T, HD, ldk);
        /* bf16 (AMX or dot products): the keys (as K^T) and values packed once for all blocks,
         * then room for a block's A */
        uint32_t *Kp = NULL, *Vp = NULL;
        uint16_t *Ap = NULL;
        if (bf) {   /* (area is not NULL: bf needs scratch) */
            Kp = (uint32_t *)area;
            Vp = Kp + amx_b_size(HD, T);
            Ap = (uint16_t *)(Vp + amx_b_size(T, HD));
            amx_pack_b(Kp, (tiles_opnd){kk, 1, ldk}, HD, T);
            amx_pack_b(Vp, (tiles_opnd){vv, ldk, 1}, T, HD);
        }
#endif
        for (int64_t r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
            int64_t r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, m = r1 - r0;
            /* the block's rows: in att, or in this head's scratch area */
            R *P = att ? att + s->att + h * T * T + r0 * T : blk;
#if ATT_TILES
            if (bf) {
                amx_pack_a(Ap, (tiles_opnd){qh + r0 * ldq, ldq, 1}, m, HD, scale);
                bf16_mm_packed(amx, m, r1, HD, Ap, Kp, amx_up(T, 16), 0, P, T, TILES_COLS_TO, r0);
            } else if (tiles) {
                tiles_mm(m, r1, HD, scale, (tiles_opnd){qh + r0 * ldq, ldq, 1}, (tiles_opnd){Kt, T, 1}, 0, P, T,
                         TILES_COLS_TO, r0);
            } else
#endif
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, m, r1, HD, scale, qh + r0 * ldq, ldq, kk, ldk, 0, P, T);
            /* zeros past the row: to T in att (its upper triangle), to the
             * block's keys r1 in scratch (all that PV reads) */
            att_softmax_rows(P, r0, r1, T, att ? T : r1, st, 2 * d.NH);
#if ATT_TILES
            if (bf) {
                amx_pack_a(Ap, (tiles_opnd){P, T, 1}, m, r1, 1);
                bf16_mm_packed(amx, m, HD, r1, Ap, Vp, amx_up(HD, 16), 0, y + r0 * ldq, ldq, TILES_K_TO, r0);
            } else if (tiles) {
                /* r16: P rounded (in att it stays fp32 for the backward:
                 * rounded into the block rows, otherwise unused) */
                const R *Pv = r16 ? round16_rows(blk, P, m, r1, T) : P;
                tiles_mm(m, HD, r1, 1, (tiles_opnd){Pv, T, 1}, (tiles_opnd){vv, ldk, 1}, 0, y + r0 * ldq, ldq,
                         TILES_K_TO, r0);
            } else
#endif
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, HD, r1, 1, P, T, vv, ldk, 0, y + r0 * ldq, ldq);
        }
    }
}

/* O(T^2) softmax backward per head: dS = P o (dP - rowsum(P o dP)), in the
 * forward's causal row blocks, each block's P read from att or recomputed
 * first. Work is split by (sequence, KV head) so that the query heads
 * sharing one K/V head accumulate dK/dV in one thread, in a fixed order;
 * each such pair has its own P and dP rows in scratch, so the result does
 * not depend on which thread runs it. */
static void att_back(R *dq, R *dk, R *dv, const R *dout, const R *att, const R *stats, const R *q, const R *k,
                     const R *v, attn_dims d, R *scratch, int set) {
    const int64_t HD = d.HD, ldq = d.NH * HD, ldk = d.KVH * HD, grp = d.NH / d.KVH;
    const R scale = (R)(1.0 / sqrt((double)HD));
    att_seq sq[d.B > 0 ? d.B : 1];
    att_seqs(sq, d);
#if ATT_TILES
    const int r16 = gemm_attention_tiles16_for(d.HD), tiles = r16 || gemm_attention_tiles_for(d.HD),
              amx = gemm_attention_amx(), bf = amx || gemm_attention_dot();
#endif
#pragma omp parallel for schedule(dynamic, 1) if (d.B * d.KVH * d.T * d.T * d.HD > PAR_MIN)
    for (int64_t bk = 0; bk < d.B * d.KVH; bk++) {
        const att_seq *s = &sq[bk / d.KVH];
        int64_t kh = bk % d.KVH, T = s->T, rows = attention_scratch_rows(T);
        /* this pair's area: room for the tiles, then a block's P and dP */
        R *area = scratch + s->dp + kh * attention_backward_area(T, HD);
        R *Pr = area + 2 * attention_tiles_room(T, HD), *dP = Pr + rows * T;   /* [rows, T] each */
        const R *kk = k + s->row * ldk + kh * HD, *vv = v + s->row * ldk + kh * HD;
        R *dkk = dk + s->row * ldk + kh * HD, *dvv = dv + s->row * ldk + kh * HD;
        if (set)   /* this pair's own slices of dq, dk and dv, zeroed where they are summed */
            for (int64_t t = 0; t < T; t++) {
                memset(dkk + t * ldk, 0, sizeof(R) * (size_t)HD);
                memset(dvv + t * ldk, 0, sizeof(R) * (size_t)HD);
                memset(dq + (s->row + t) * ldq + kh * grp * HD, 0, sizeof(R) * (size_t)(grp * HD));
            }
#if ATT_TILES
        float *Kt = area, *Vt = Kt + HD * T;   /* keys and values transposed */
        if (tiles && !att) tiles_transpose(Kt, kk, T, HD, ldk);
        if (tiles) tiles_transpose(Vt, vv, T, HD, ldk);
        /* bf16: K^T, V^T and K packed once for all blocks and heads of the
         * group, then room for a block's A and B */
        uint32_t *KtP = NULL, *VtP = NULL, *KP = NULL, *Bp = NULL;
        uint16_t *Ap = NULL;
        if (bf) {
            KtP = (uint32_t *)area;
            VtP = KtP + amx_b_size(HD, T);
            KP = VtP + amx_b_size(HD, T);
            Ap = (uint16_t *)(KP + amx_b_size(T, HD));
            /* B after the largest A: P^T or dS^T (dV's, dK's), dS (dQ's) */
            const int64_t a_room = amx_a_size(T, rows) > amx_a_size(rows, T) ? amx_a_size(T, rows) : amx_a_size(rows, T);
            Bp = (uint32_t *)Ap + a_room;
            if (!att) amx_pack_b(KtP, (tiles_opnd){kk, 1, ldk}, HD, T);
            amx_pack_b(VtP, (tiles_opnd){vv, 1, ldk}, HD, T);
            amx_pack_b(KP, (tiles_opnd){kk, ldk, 1}, T, HD);
        }
#endif
        for (int64_t h = kh * grp; h < (kh + 1) * grp; h++) {
            const R *dy = dout + s->row * ldq + h * HD, *qh = q + s->row * ldq + h * HD;
            const R *st = att ? NULL : stats + (s->row * d.NH + h) * 2;
            R *dqh = dq + s->row * ldq + h * HD;
            for (int64_t r0 = 0; r0 < T; r0 += ATT_ROW_BLOCK) {
                int64_t r1 = r0 + ATT_ROW_BLOCK < T ? r0 + ATT_ROW_BLOCK : T, m = r1 - r0;
                const R *P = att ? att + s->att + h * T * T + r0 * T : Pr;
#if ATT_TILES
                const tiles_opnd qA = {qh + r0 * ldq, ldq, 1}, gA = {dy + r0 * ldq, ldq, 1};
#endif
                if (!att) {   /* the forward's scores, product for product, then its P */
#if ATT_TILES
                    if (bf) {
                        amx_pack_a(Ap, qA, m, HD, scale);
                        bf16_mm_packed(amx, m, r1, HD, Ap, KtP, amx_up(T, 16), 0, Pr, T, TILES_COLS_TO, r0);
                    } else if (tiles) tiles_mm(m, r1, HD, scale, qA, (tiles_opnd){Kt, T, 1}, 0, Pr, T, TILES_COLS_TO, r0);
                    else
#endif
                    GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, m, r1, HD, scale, qh + r0 * ldq, ldq, kk, ldk, 0,
                         Pr, T);
                    att_probs_rows(Pr, r0, r1, T, st, 2 * d.NH);
                }
#if ATT_TILES
                if (bf) {   /* the same products in bf16 */
                    amx_pack_a(Ap, gA, m, HD, 1);
                    bf16_mm_packed(amx, m, r1, HD, Ap, VtP, amx_up(T, 16), 0, dP, T, TILES_COLS_TO, r0);
                    amx_pack_a(Ap, (tiles_opnd){P, 1, T}, r1, m, 1);
                    amx_pack_b(Bp, gA, m, HD);
                    bf16_mm_packed(amx, r1, HD, m, Ap, Bp, amx_up(HD, 16), 1, dvv, ldk, TILES_K_FROM, r0);
                } else if (tiles) {   /* dP = dY V^T (dV's product comes after dS) */
                    tiles_mm(m, r1, HD, 1, gA, (tiles_opnd){Vt, T, 1}, 0, dP, T, TILES_COLS_TO, r0);
                } else
#endif
                {
                    GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, m, r1, HD, 1, dy + r0 * ldq, ldq, vv, ldk, 0, dP, T);
                    GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, r1, HD, m, 1, P, T, dy + r0 * ldq, ldq, 1, dvv, ldk);
                }
                for (int64_t t = r0; t < r1; t++) {
                    const R *p = P + (t - r0) * T;
                    R *g = dP + (t - r0) * T;
                    const R dot = (R)ROW_SUM(p, g, t + 1);
                    for (int64_t u = 0; u <= t; u++) g[u] = p[u] * (g[u] - dot);
                    for (int64_t u = t + 1; u < r1; u++) g[u] = 0;
                }
#if ATT_TILES
                if (bf) {
                    amx_pack_a(Ap, (tiles_opnd){dP, T, 1}, m, r1, scale);
                    bf16_mm_packed(amx, m, HD, r1, Ap, KP, amx_up(HD, 16), 1, dqh + r0 * ldq, ldq, TILES_K_TO, r0);
                    amx_pack_a(Ap, (tiles_opnd){dP, 1, T}, r1, m, scale);
                    amx_pack_b(Bp, qA, m, HD);
                    bf16_mm_packed(amx, r1, HD, m, Ap, Bp, amx_up(HD, 16), 1, dkk, ldk, TILES_K_FROM, r0);
                    continue;
                }
                if (tiles) {   /* dV += P^T dY, dQ += scale dS K, dK += scale dS^T Q */
                    /* r16: P rounded now that dS has read it (from att
                     * into the recomputation's rows, otherwise unused),
                     * and dS */
                    const R *Pv = r16 ? round16_rows(Pr, P, m, r1, T) : P;
                    if (r16) round16_rows(dP, dP, m, r1, T);
                    tiles_mm(r1, HD, m, 1, (tiles_opnd){Pv, 1, T}, gA, 1, dvv, ldk, TILES_K_FROM, r0);
                    tiles_mm(m, HD, r1, scale, (tiles_opnd){dP, T, 1}, (tiles_opnd){kk, ldk, 1}, 1, dqh + r0 * ldq,
                             ldq, TILES_K_TO, r0);
                    tiles_mm(r1, HD, m, scale, (tiles_opnd){dP, 1, T}, qA, 1, dkk, ldk, TILES_K_FROM, r0);
                    continue;
                }
#endif
                GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, HD, r1, scale, dP, T, kk, ldk, 1,
                     dqh + r0 * ldq, ldq);
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, r1, HD, m, scale, dP, T, qh + r0 * ldq, ldq, 1,
                     dkk, ldk);
            }
        }
    }
}
void attention_backward(R *dq, R *dk, R *dv, const R *dout, const R *att, const R *stats, const R *q,
                        const R *k, const R *v, attn_dims d, R *scratch) {
    att_back(dq, dk, dv, dout, att, stats, q, k, v, d, scratch, 0);
}
/* As attention_backward, but dq, dk and dv are overwritten: each task zeroes
 * the slices it sums into (in the parallel loop, not a serial pass before). */
void attention_backward_set(R *dq, R *dk, R *dv, const R *dout, const R *att, const R *stats, const R *q,
                            const R *k, const R *v, attn_dims d, R *scratch) {
    att_back(dq, dk, dv, dout, att, stats, q, k, v, d, scratch, 1);
}

/* The SwiGLU loops: `if (parallel: ...)`, not a bare `if`, which would
 * also turn off the simd of short calls (OpenMP 5.0 applies it to every
 * construct of the combined directive): their exps went scalar (glibc's
 * expf, not libmvec's), so a row's values depended on how many rows
 * shared the call (decoding's few rows against a prefill's many), and
 * 4 rows of Qwen3-0.6B's MLP took 64 us where the vector loop takes 11. */
void swiglu_forward(R *out, const R *gate, const R *up, int64_t n) {
#pragma omp parallel for simd schedule(simd : dynamic, PAR_CHUNK(n)) if (parallel : n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        R g = gate[i], s = 1 / (1 + EXP(-g));
        out[i] = g * s * up[i];
    }
}

void swiglu_backward(R *dgate, R *dup, const R *dout, const R *gate, const R *up, int64_t n) {
#pragma omp parallel for simd schedule(simd : dynamic, PAR_CHUNK(n)) if (parallel : n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        R g = gate[i], s = 1 / (1 + EXP(-g));
        dgate[i] += dout[i] * up[i] * s * (1 + g * (1 - s));
        dup[i] += dout[i] * g * s;
    }
}

/* As swiglu_backward, but dgate and dup are overwritten. */
void swiglu_backward_set(R *dgate, R *dup, const R *dout, const R *gate, const R *up, int64_t n) {
#pragma omp parallel for simd schedule(simd : dynamic, PAR_CHUNK(n)) if (parallel : n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        R g = gate[i], s = 1 / (1 + EXP(-g));
        dgate[i] = dout[i] * up[i] * s * (1 + g * (1 - s));
        dup[i] = dout[i] * g * s;
    }
}

void residual_forward(R *out, const R *a, const R *b, int64_t n) {
#pragma omp parallel for schedule(dynamic, PAR_CHUNK(n)) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* See kernels.h. Active positions are gathered into chunks so that masked
 * (prompt) positions cost nothing; z for a chunk is built by one GEMM per
 * side (beta = 1 mixes the sides), turned in place into dz, then pushed back
 * through each side's head by two more GEMMs. */
double ce_chunked(int nsides, R *const *h, R *const *w, const double *coef,
                  R *const *dh, R *const *dw, const int32_t *targets,
                  const float *weights, int64_t N, int64_t C, int64_t V,
                  double *nll_out, double *ent_out, void *scratch, int64_t chunk) {
    if (nll_out) memset(nll_out, 0, sizeof(double) * (size_t)N);
    if (ent_out) memset(ent_out, 0, sizeof(double) * (size_t)N);
    const ce_layout lay = ce_scratch_layout(nsides, chunk, C, V, sizeof(R));
    const int64_t rows = ce_rows(chunk);   /* hg's stride per side */
    char *base = scratch;
    R *z = (R *)(base + lay.z), *hg = (R *)(base + lay.hg), *dhg = (R *)(base + lay.dhg);
    int64_t *act = (int64_t *)(base + lay.act);
    double *rowloss = (double *)(base + lay.rowloss);
#define CE_EXP_BLOCK 256
#define CE_ACTIVE(n) (targets[n] >= 0 && (!weights || weights[n] != 0))
    for (int64_t n = 0; n < N; n++)   /* every target checked before any work */
        if (CE_ACTIVE(n) && targets[n] >= V)
            die("target id %d outside the vocabulary (%lld)", targets[n], (long long)V);
    double total = 0;
    int want_grad = 0;
    for (int s = 0; s < nsides; s++) want_grad |= dh[s] || dw[s];
    for (int64_t next = 0;;) {
        int64_t m = 0;   /* the chunk: the next (up to) `chunk` active positions */
        for (; next < N && m < chunk; next++) if (CE_ACTIVE(next)) act[m++] = next;
        if (!m) break;
        /* bf16: hg is read by two products per side and z (once it is dz)
         * by two; held, each is converted once (see gemm_hold_inputs) */
        GEMM_HOLD(1);
        const int64_t mz = CE_PAD_FEW ? ce_head_rows(m, C, V) : m;   /* the rows z is computed on */
        for (int s = 0; s < nsides; s++) {
            for (int64_t i = 0; i < mz; i++)
                memcpy(hg + (s * rows + i) * C, h[s] + act[i < m ? i : m - 1] * C, sizeof(R) * (size_t)C);
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, mz, V, C, (R)coef[s], hg + s * rows * C, C,
                 w[s], C, s ? 1 : 0, z, V);
        }
#pragma omp parallel for schedule(dynamic, PAR_CHUNK(m)) if (m * V > PAR_MIN)
        for (int64_t i = 0; i < m; i++) {
            int64_t n = act[i];
            R *zr = z + i * V;
            R mx = zr[0];
#pragma omp simd reduction(max : mx)
            for (int64_t v = 0; v < V; v++) mx = zr[v] > mx ? zr[v] : mx;
            /* one pass of vector exps (libmvec) with lane-wise double sums
             * (a fixed order); z becomes exp(z - max) in place */
            double se = 0, sz = 0, zt = (double)(zr[targets[n]] - mx);
            /* in blocks: float exps in one loop, double sums in the next (a
             * double sum beside the float exp would cost the 16-lane exp) */
            for (int64_t v0 = 0; v0 < V; v0 += CE_EXP_BLOCK) {
                int64_t nb = V - v0 < CE_EXP_BLOCK ? V - v0 : CE_EXP_BLOCK;
                R db[CE_EXP_BLOCK], *zb = zr + v0;
#pragma omp simd
                for (int64_t i = 0; i < nb; i++) {
                    db[i] = zb[i] - mx;
                    zb[i] = EXP(db[i]);
                }
#pragma omp simd reduction(+ : se, sz)
                for (int64_t i = 0; i < nb; i++) {
                    se += zb[i];
                    sz += (double)zb[i] * db[i];
                }
            }
            double lse = log(se);               /* relative to mx */
            double nll = lse - zt;
            double ent = lse - sz / se;
            if (nll_out) nll_out[n] = nll;
            if (ent_out) ent_out[n] = ent;
            double wt = weights ? weights[n] : 1.0;
            rowloss[i] = wt * nll;
            if (want_grad) {
                R scale = (R)(wt / se);
#pragma omp simd
                for (int64_t v = 0; v < V; v++) zr[v] *= scale;
                zr[targets[n]] -= (R)wt;
            }
        }
        for (int64_t i = 0; i < m; i++) total += rowloss[i];   /* fixed order */
        if (!want_grad) {
            GEMM_HOLD(0);
            continue;
        }
        for (int s = 0; s < nsides; s++) {
            if (dh[s]) {
                GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, C, V, (R)coef[s], z, V, w[s], C, 0, dhg, C);
                for (int64_t i = 0; i < m; i++) {
                    R *dst = dh[s] + act[i] * C;
                    const R *src = dhg + i * C;
                    for (int64_t c = 0; c < C; c++) dst[c] += src[c];
                }
            }
            if (dw[s])
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, m, (R)coef[s], z, V, hg + s * rows * C, C, 1, dw[s], C);
        }
        GEMM_HOLD(0);
    }
#undef CE_ACTIVE
    return total;
}
