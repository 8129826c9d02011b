/* Finite-difference gradient checks, in double precision, for every kernel.
 * For a kernel y = f(x, w) and a fixed random projection r, the scalar
 * L = <r, y> has dL/dx = backward(dout = r); each analytic gradient entry is
 * compared with the central difference (L(x+h) - L(x-h)) / 2h. The float
 * kernels are then checked against the double ones on the same inputs.
 * Each backward is also run a second time into gradient buffers that already
 * hold values (kernels.h's rule: it adds, or overwrites where named _set),
 * and each kernel that takes scratch gets exactly the size its function
 * names, followed by a guard it must not touch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "gemm.h"
#include "kernels.h"
#include "lanes.h"

static wdl_rng rng;
static double *rnd(int64_t n, double scale) {
    double *a = xmalloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) a[i] = scale * rng_normal(&rng);
    return a;
}
static double *zeros(int64_t n) { return xcalloc((size_t)n, sizeof(double)); }
static double *copy(const double *a, int64_t n) {
    double *b = xmalloc(sizeof(double) * (size_t)n);
    memcpy(b, a, sizeof(double) * (size_t)n);
    return b;
}

/* got must be start + g, g being the gradient the kernel gave into zeros:
 * the kernel added into its buffer. Frees got and start. */
static void expect_added(const char *what, double *got, double *start, const double *g, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(got[i] - (start[i] + g[i])) / fmax(1, fabs(g[i])));
    if (!(worst <= 1e-12)) fail_msg("%s: not added into the buffer's values (max diff %.3g)", what, worst);
    free(got); free(start);
}

/* Scratch of `bytes` then a guard, all filled with one byte pattern. */
enum { GUARD = 256, FILL = 0xA5 };
static void *guarded(size_t bytes) {
    unsigned char *p = xmalloc(bytes + GUARD);
    memset(p, FILL, bytes + GUARD);
    return p;
}
/* The kernel stayed inside its scratch and, with last > 0, wrote the last
 * `last` bytes of it (so the size is exact, not just enough). Frees it. */
static void expect_scratch(const char *what, void *scratch, size_t bytes, size_t last) {
    const unsigned char *p = scratch;
    for (size_t i = bytes; i < bytes + GUARD; i++)
        if (p[i] != FILL) fail_msg("%s: wrote past its scratch size (%zu bytes)", what, bytes);
    int used = !last;
    for (size_t i = bytes - last; i < bytes; i++) used |= p[i] != FILL;
    if (!used) fail_msg("%s: the end of its scratch (%zu bytes) stayed unused", what, bytes);
    free(scratch);
}
static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* A forward closure: computes L = <r, f(params)> given the current params. */
typedef double (*loss_fn)(void *ctx);
/* Compare analytic gradient g of L with respect to x[0..n) against central
 * differences; relative error measured against the gradient's scale. */
static void fd_check(const char *what, loss_fn L, void *ctx, double *x, const double *g, int64_t n) {
    const double h = 1e-6;
    double maxerr = 0, scale = 1e-12;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(g[i]));
    for (int64_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + h; double lp = L(ctx);
        x[i] = x0 - h; double lm = L(ctx);
        x[i] = x0;
        double num = (lp - lm) / (2 * h);
        maxerr = fmax(maxerr, fabs(num - g[i]) / scale);
    }
    if (maxerr > 1e-6) fail_msg("%s: finite-difference mismatch, max rel err %.3g", what, maxerr);
    print_message("# %s: max rel err %.2e over %lld entries\n", what, maxerr, (long long)n);
}

/* ---- linear ---- */
typedef struct { int64_t N, C, OC; double *x, *w, *r, *y; } lin_ctx;
static double lin_loss(void *p) {
    lin_ctx *c = p;
    linear_forward_f64(c->y, c->x, c->w, c->N, c->C, c->OC);
    return dot(c->y, c->r, c->N * c->OC);
}
static void test_linear(void **st) {
    lin_ctx c = {5, 7, 3};
    c.x = rnd(c.N * c.C, 1); c.w = rnd(c.OC * c.C, 1); c.r = rnd(c.N * c.OC, 1); c.y = zeros(c.N * c.OC);
    double *dx = zeros(c.N * c.C), *dw = zeros(c.OC * c.C);
    linear_backward_f64(dx, dw, c.r, c.x, c.w, c.N, c.C, c.OC);
    fd_check("linear dx", lin_loss, &c, c.x, dx, c.N * c.C);
    double *sx = rnd(c.N * c.C, 1), *sw = rnd(c.OC * c.C, 1), *ax = copy(sx, c.N * c.C), *aw = copy(sw, c.OC * c.C);
    linear_backward_f64(ax, aw, c.r, c.x, c.w, c.N, c.C, c.OC);
    expect_added("linear dx", ax, sx, dx, c.N * c.C);
    expect_added("linear dw", aw, sw, dw, c.OC * c.C);
    /* the _set variant gives the same input gradient whatever dinp held,
     * and still adds into dw */
    double *dx2 = rnd(c.N * c.C, 5);
    sw = rnd(c.OC * c.C, 1); aw = copy(sw, c.OC * c.C);
    linear_backward_set_f64(dx2, aw, c.r, c.x, c.w, c.N, c.C, c.OC);
    for (int64_t i = 0; i < c.N * c.C; i++) assert_true(fabs(dx2[i] - dx[i]) < 1e-12);
    expect_added("linear_set dw", aw, sw, dw, c.OC * c.C);
    free(dx2);
    fd_check("linear dw", lin_loss, &c, c.w, dw, c.OC * c.C);
    free(c.x); free(c.w); free(c.r); free(c.y); free(dx); free(dw);
}

/* ---- rmsnorm (also the per-head QK-norm: rows of head_dim) ---- */
typedef struct { int64_t N, C; double *x, *w, *r, *y, *rs; } rms_ctx;
static double rms_loss(void *p) {
    rms_ctx *c = p;
    rmsnorm_forward_f64(c->y, c->rs, c->x, c->w, c->N, c->C, 1e-6);
    return dot(c->y, c->r, c->N * c->C);
}
static void check_rms(int64_t N, int64_t C, const char *name) {
    rms_ctx c = {N, C};
    c.x = rnd(N * C, 1); c.w = rnd(C, 1); c.r = rnd(N * C, 1); c.y = zeros(N * C); c.rs = zeros(N);
    rms_loss(&c);
    double *dx = zeros(N * C), *dw = zeros(C);
    size_t pb = sizeof(double) * (size_t)rmsnorm_backward_scratch(N, C);
    double *part = guarded(pb);
    rmsnorm_backward_f64(dx, dw, c.r, c.x, c.w, c.rs, N, C, part);
    char buf[64];
    snprintf(buf, sizeof buf, "%s partials", name); expect_scratch(buf, part, pb, sizeof(double));
    double *sx = rnd(N * C, 1), *sw = rnd(C, 1), *ax = copy(sx, N * C), *aw = copy(sw, C);
    part = xmalloc(pb);
    rmsnorm_backward_f64(ax, aw, c.r, c.x, c.w, c.rs, N, C, part);
    free(part);
    snprintf(buf, sizeof buf, "%s dx", name); expect_added(buf, ax, sx, dx, N * C);
    snprintf(buf, sizeof buf, "%s dw", name); expect_added(buf, aw, sw, dw, C);
    /* the _set variant: dx's bytes over whatever dinp held, dw still added */
    double *dset = rnd(N * C, 3);
    sw = rnd(C, 1); aw = copy(sw, C); part = xmalloc(pb);
    rmsnorm_backward_set_f64(dset, aw, c.r, c.x, c.w, c.rs, N, C, part);
    free(part);
    assert_memory_equal(dset, dx, sizeof(double) * (size_t)(N * C));
    snprintf(buf, sizeof buf, "%s_set dw", name); expect_added(buf, aw, sw, dw, C);
    free(dset);
    snprintf(buf, sizeof buf, "%s dx", name); fd_check(buf, rms_loss, &c, c.x, dx, N * C);
    snprintf(buf, sizeof buf, "%s dw", name); fd_check(buf, rms_loss, &c, c.w, dw, C);
    free(c.x); free(c.w); free(c.r); free(c.y); free(c.rs); free(dx); free(dw);
}
/* 130 rows: three row blocks of partials, the last one short */
static void test_rmsnorm(void **st) { check_rms(6, 10, "rmsnorm"); check_rms(130, 3, "rmsnorm, blocks"); }
/* QK-norm: [tokens * heads] rows of head_dim, one weight vector per head_dim. */
static void test_qknorm(void **st) { check_rms(4 * 3, 8, "qk-norm"); }

/* ---- rope ---- */
typedef struct { int64_t N, H, HD; int32_t *pos; double *x, *r, *y; rope_cache_f64 tab; } rope_ctx;
static double rope_loss(void *p) {
    rope_ctx *c = p;
    rope_forward_f64(c->y, &c->tab, c->x, c->pos, c->N, c->H, c->HD, 10000.0);
    return dot(c->y, c->r, c->N * c->H * c->HD);
}
static void test_rope(void **st) {
    rope_ctx c = {5, 3, 8};
    int32_t pos[5] = {0, 1, 2, 7, 30};
    c.pos = pos;
    int64_t n = c.N * c.H * c.HD;
    c.x = rnd(n, 1); c.r = rnd(n, 1); c.y = zeros(n);
    double *dx = zeros(n);
    rope_backward_f64(dx, &c.tab, c.r, c.pos, c.N, c.H, c.HD, 10000.0);
    fd_check("rope dx", rope_loss, &c, c.x, dx, n);
    double *sx = rnd(n, 1), *ax = copy(sx, n);
    rope_backward_f64(ax, &c.tab, c.r, c.pos, c.N, c.H, c.HD, 10000.0);
    expect_added("rope dx", ax, sx, dx, n);
    /* the _set variant overwrites whatever dinp held with the same gradient */
    double *dset = rnd(n, 3);
    rope_backward_set_f64(dset, &c.tab, c.r, c.pos, c.N, c.H, c.HD, 10000.0);
    assert_memory_equal(dset, dx, sizeof(double) * (size_t)n);
    fd_check("rope_set dx", rope_loss, &c, c.x, dset, n);
    free(dset);
    /* position 0 is the identity; rotate-half pairs i with i + HD/2 */
    rope_loss(&c);
    for (int64_t i = 0; i < c.H * c.HD; i++) assert_true(fabs(c.y[i] - c.x[i]) < 1e-15);
    double x2[8] = {1, 0, 0, 0, 0, 0, 0, 0}, y2[8];
    int32_t p1 = 1;
    rope_forward_f64(y2, &c.tab, x2, &p1, 1, 1, 8, 10000.0);
    assert_true(fabs(y2[0] - cos(1.0)) < 1e-12 && fabs(y2[4] - sin(1.0)) < 1e-12);
    free(c.x); free(c.r); free(c.y); free(dx);
    rope_cache_free_f64(&c.tab);
}

/* ---- attention with GQA ---- */
typedef struct { attn_dims d; int64_t rows; double *q, *k, *v, *r, *y, *att; } att_ctx;
static double att_loss(void *p) {
    att_ctx *c = p;
    attention_forward_f64(c->y, c->att, NULL, c->q, c->k, c->v, c->d, NULL);
    return dot(c->y, c->r, c->rows * c->d.NH * c->d.HD);
}
static void check_attention(attn_dims dims);
static void test_attention(void **st) { check_attention((attn_dims){2, 5, 4, 2, 3}); }
/* longer than one causal row block (64): the blocked GEMMs and their seams */
static void test_attention_blocks(void **st) { check_attention((attn_dims){1, 70, 2, 1, 2}); }
static void check_attention(attn_dims dims) {
    att_ctx c = {dims, dims.B * dims.T};
    int64_t nq = c.d.B * c.d.T * c.d.NH * c.d.HD, nk = c.d.B * c.d.T * c.d.KVH * c.d.HD;
    c.q = rnd(nq, 1); c.k = rnd(nk, 1); c.v = rnd(nk, 1); c.r = rnd(nq, 1);
    c.y = zeros(nq); c.att = zeros(c.d.B * c.d.NH * c.d.T * c.d.T);
    att_loss(&c);
    double *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    /* past one row block, rows of the last block's dP stay unwritten */
    size_t sb = sizeof(double) * (size_t)attention_backward_scratch(c.d);
    double *scratch = guarded(sb);
    attention_backward_f64(dq, dk, dv, c.r, c.att, NULL, c.q, c.k, c.v, c.d, scratch);
    expect_scratch("attention dP", scratch, sb, c.d.T <= ATT_ROW_BLOCK ? sizeof(double) : 0);
    double *sq = rnd(nq, 1), *sk = rnd(nk, 1), *sv = rnd(nk, 1), *aq = copy(sq, nq), *ak = copy(sk, nk),
           *av = copy(sv, nk);
    scratch = xmalloc(sb);
    attention_backward_f64(aq, ak, av, c.r, c.att, NULL, c.q, c.k, c.v, c.d, scratch);
    free(scratch);
    expect_added("attention dq", aq, sq, dq, nq);
    expect_added("attention dk", ak, sk, dk, nk);
    expect_added("attention dv", av, sv, dv, nk);
    fd_check("attention dq", att_loss, &c, c.q, dq, nq);
    fd_check("attention dk", att_loss, &c, c.k, dk, nk);
    fd_check("attention dv", att_loss, &c, c.v, dv, nk);
    /* causality: the output at t does not depend on keys after t */
    att_loss(&c);
    double y0 = c.y[0];
    c.k[c.d.KVH * c.d.HD * 3] += 1.0;
    att_loss(&c);
    assert_true(c.y[0] == y0);
    free(c.q); free(c.k); free(c.v); free(c.r); free(c.y); free(c.att); free(dq); free(dk); free(dv);
}

/* Packed sequences (no padding): each one's outputs, probabilities and
 * gradients are exactly those of the sequence alone; the backward stays in
 * the scratch the packed lengths need; finite differences through the
 * packed layout. Lengths straddle the 64-row block and include a 1. */
static void test_attention_packed(void **st) {
    enum { NS = 4, NH = 4, KVH = 2, HD = 3 };
    const int64_t len[NS] = {5, 1, 70, 3}, off[NS + 1] = {0, 5, 6, 76, 79}, N = off[NS];
    int64_t natt = 0, nscr = 0;
    for (int b = 0; b < NS; b++) {
        natt += NH * len[b] * len[b];
        nscr += KVH * attention_backward_area(len[b], HD);
    }
    att_ctx c = {{NS, 70, NH, KVH, HD, off}, N};
    const int64_t ldq = NH * HD, ldk = KVH * HD, nq = N * ldq, nk = N * ldk;
    c.q = rnd(nq, 1); c.k = rnd(nk, 1); c.v = rnd(nk, 1); c.r = rnd(nq, 1);
    c.y = zeros(nq); c.att = zeros(natt);
    att_loss(&c);
    double *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
    size_t sb = sizeof(double) * (size_t)nscr;
    double *scratch = guarded(sb);
    attention_backward_f64(dq, dk, dv, c.r, c.att, NULL, c.q, c.k, c.v, c.d, scratch);
    expect_scratch("packed attention dP", scratch, sb, 0);
    int64_t ao = 0;
    for (int b = 0; b < NS; b++) {
        const int64_t T = len[b], o = off[b];
        attn_dims one = {1, T, NH, KVH, HD, NULL};
        double *y = zeros(T * ldq), *att = zeros(NH * T * T), *gq = zeros(T * ldq), *gk = zeros(T * ldk),
               *gv = zeros(T * ldk), *scr = zeros(attention_backward_scratch(one));
        attention_forward_f64(y, att, NULL, c.q + o * ldq, c.k + o * ldk, c.v + o * ldk, one, NULL);
        attention_backward_f64(gq, gk, gv, c.r + o * ldq, att, NULL, c.q + o * ldq, c.k + o * ldk, c.v + o * ldk, one,
                               scr);
        assert_memory_equal(y, c.y + o * ldq, sizeof(double) * (size_t)(T * ldq));
        assert_memory_equal(att, c.att + ao, sizeof(double) * (size_t)(NH * T * T));
        assert_memory_equal(gq, dq + o * ldq, sizeof(double) * (size_t)(T * ldq));
        assert_memory_equal(gk, dk + o * ldk, sizeof(double) * (size_t)(T * ldk));
        assert_memory_equal(gv, dv + o * ldk, sizeof(double) * (size_t)(T * ldk));
        ao += NH * T * T;
        free(y); free(att); free(gq); free(gk); free(gv); free(scr);
    }
    fd_check("packed attention dq", att_loss, &c, c.q, dq, nq);
    fd_check("packed attention dk", att_loss, &c, c.k, dk, nk);
    fd_check("packed attention dv", att_loss, &c, c.v, dv, nk);
    free(c.q); free(c.k); free(c.v); free(c.r); free(c.y); free(c.att); free(dq); free(dk); free(dv);
}

/* Forward only (att NULL): the outputs are the bytes of the forward that
 * saves the probabilities, in float and in double, padded and packed, and
 * the block rows stay inside the scratch the function names (its last
 * element used when the last sequence fits one block). */
static void forward_only_case(attn_dims d, int64_t N, size_t last) {
    const int64_t nq = N * d.NH * d.HD, nk = N * d.KVH * d.HD;
    int64_t natt = 0;
    for (int64_t b = 0; b < d.B; b++) {
        int64_t T = d.off ? d.off[b + 1] - d.off[b] : d.T;
        natt += d.NH * T * T;
    }
    double *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *y = zeros(nq), *y2 = zeros(nq), *att = zeros(natt);
    size_t sb = sizeof(double) * (size_t)attention_forward_scratch(d);
    attention_forward_f64(y, att, NULL, q, k, v, d, NULL);
    double *scr = guarded(sb);
    attention_forward_f64(y2, NULL, NULL, q, k, v, d, scr);
    expect_scratch("forward-only attention (double)", scr, sb, last ? sizeof(double) : 0);
    assert_memory_equal(y, y2, sizeof(double) * (size_t)nq);
    float *qf = xmalloc(4 * nq), *kf = xmalloc(4 * nk), *vf = xmalloc(4 * nk), *yf = xmalloc(4 * nq),
          *yf2 = xmalloc(4 * nq), *attf = xmalloc(4 * natt);
    for (int64_t i = 0; i < nq; i++) qf[i] = (float)q[i];
    for (int64_t i = 0; i < nk; i++) { kf[i] = (float)k[i]; vf[i] = (float)v[i]; }
    attention_forward(yf, attf, NULL, qf, kf, vf, d, NULL);
    size_t sf = sizeof(float) * (size_t)attention_forward_scratch(d);
    float *scf = guarded(sf);
    attention_forward(yf2, NULL, NULL, qf, kf, vf, d, scf);
    expect_scratch("forward-only attention (float)", scf, sf, last ? sizeof(float) : 0);
    assert_memory_equal(yf, yf2, sizeof(float) * (size_t)nq);
    free(q); free(k); free(v); free(y); free(y2); free(att); free(qf); free(kf); free(vf); free(yf); free(yf2);
    free(attf);
}
static void test_attention_forward_only(void **st) {
    forward_only_case((attn_dims){2, 5, 4, 2, 3}, 10, 1);
    forward_only_case((attn_dims){2, 70, 4, 2, 3}, 140, 0);
    /* packed: scratch for the padded batch, the areas of the packed lengths */
    static const int64_t off[] = {0, 5, 6, 76, 79};
    forward_only_case((attn_dims){4, 70, 4, 2, 3, off}, 79, 0);
}

/* Recomputing the probabilities (stats instead of att): the forward's
 * outputs and the backward's gradients are the bytes of the stored path, in
 * double and in float, padded and packed; the recomputing backward stays in
 * its scratch and uses its end. */
#define RECOMPUTE_CASE(NAME, R, FWD, BWD, FILL_RND)                                                             \
    static void NAME(attn_dims d, int64_t N, int64_t natt) {                                                 \
        const int64_t nq = N * d.NH * d.HD, nk = N * d.KVH * d.HD;                                           \
        R *q = xmalloc(sizeof(R) * nq), *k = xmalloc(sizeof(R) * nk), *v = xmalloc(sizeof(R) * nk),          \
          *r = xmalloc(sizeof(R) * nq);                                                                      \
        FILL_RND(q, nq); FILL_RND(k, nk); FILL_RND(v, nk); FILL_RND(r, nq);                                  \
        R *y = xcalloc(nq, sizeof(R)), *y2 = xcalloc(nq, sizeof(R)), *att = xcalloc(natt, sizeof(R)),        \
          *stats = xcalloc(attention_stats(N, d.NH), sizeof(R));                                             \
        R *g[2][3];                                                                                          \
        for (int i = 0; i < 2; i++) {                                                                        \
            g[i][0] = xcalloc(nq, sizeof(R)); g[i][1] = xcalloc(nk, sizeof(R)); g[i][2] = xcalloc(nk, sizeof(R)); \
        }                                                                                                    \
        size_t sf = sizeof(R) * (size_t)attention_forward_scratch(d),                                        \
               sb = sizeof(R) * (size_t)attention_backward_scratch(d);                                       \
        R *fs = xmalloc(sf), *bs = xmalloc(sb);                                                              \
        FWD(y, att, NULL, q, k, v, d, NULL);                                                                 \
        BWD(g[0][0], g[0][1], g[0][2], r, att, NULL, q, k, v, d, bs);                                        \
        FWD(y2, NULL, stats, q, k, v, d, fs);                                                                \
        assert_memory_equal(y, y2, sizeof(R) * (size_t)nq);                                                  \
        R *gs = guarded(sb);                                                                                 \
        BWD(g[1][0], g[1][1], g[1][2], r, NULL, stats, q, k, v, d, gs);                                      \
        expect_scratch(#R " recomputing attention backward", gs, sb, d.T <= ATT_ROW_BLOCK ? sizeof(R) : 0);  \
        assert_memory_equal(g[0][0], g[1][0], sizeof(R) * (size_t)nq);                                       \
        assert_memory_equal(g[0][1], g[1][1], sizeof(R) * (size_t)nk);                                       \
        assert_memory_equal(g[0][2], g[1][2], sizeof(R) * (size_t)nk);                                       \
        for (int i = 0; i < 2; i++) { free(g[i][0]); free(g[i][1]); free(g[i][2]); }                         \
        free(q); free(k); free(v); free(r); free(y); free(y2); free(att); free(stats); free(fs); free(bs);    \
    }
static void fill_rnd_d(double *x, int64_t n) {
    double *t = rnd(n, 1);
    memcpy(x, t, sizeof(double) * (size_t)n);
    free(t);
}
static void fill_rnd_f(float *x, int64_t n) {
    double *t = rnd(n, 1);
    for (int64_t i = 0; i < n; i++) x[i] = (float)t[i];
    free(t);
}
RECOMPUTE_CASE(recompute_case_d, double, attention_forward_f64, attention_backward_f64, fill_rnd_d)
RECOMPUTE_CASE(recompute_case_f, float, attention_forward, attention_backward, fill_rnd_f)
static void test_attention_recompute(void **st) {
    static const int64_t off[] = {0, 5, 6, 76, 79};
    const struct { attn_dims d; int64_t N, natt; } cases[] = {
        {{2, 5, 4, 2, 3}, 10, 2 * 4 * 25},
        {{2, 70, 4, 2, 3}, 140, 2 * 4 * 4900},
        {{4, 70, 4, 2, 3, off}, 79, 4 * (25 + 1 + 4900 + 9)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        recompute_case_d(cases[i].d, cases[i].N, cases[i].natt);
        recompute_case_f(cases[i].d, cases[i].N, cases[i].natt);
    }
}

/* lanes.h: the AVX-512 reductions (where built) give the portable ones'
 * bits for every length across the 16 lanes and the tail, with and without
 * a second row; the max is the exact max, the sums within a few ulps of a
 * long double sum. */
static void test_lanes(void **st) {
    enum { NMAX = 300 };
    float x[NMAX], y[NMAX];
    for (int i = 0; i < NMAX; i++) {
        x[i] = (float)((rng_normal(&rng) * 3.0) * (i % 7 == 0 ? 100.0 : 1.0));
        y[i] = (float)rng_normal(&rng);
    }
    print_message("# lanes: %s\n", LANES_AVX512 ? "AVX-512, checked against the portable loops"
                                   : LANES_AVX2  ? "AVX2, checked against the portable loops"
                                                 : "portable only");
    for (int64_t n = 1; n <= NMAX; n++) {
        float mp = lanes_max_portable_f32(x, n), mf = lanes_max_f32(x, n), m = x[0];
        for (int64_t u = 1; u < n; u++) m = x[u] > m ? x[u] : m;
        assert_true(mp == m && mf == m);
        for (int with_y = 0; with_y < 2; with_y++) {
            const float *yy = with_y ? y : NULL;
            double sp = lanes_sum_portable_f32(x, yy, n), sf = lanes_sum_f32(x, yy, n);
            assert_memory_equal(&sp, &sf, sizeof sp);
            long double ref = 0, mag = 0;
            for (int64_t u = 0; u < n; u++) {
                long double t = with_y ? (long double)x[u] * y[u] : (long double)x[u];
                ref += t;
                mag += fabsl(t);
            }
            assert_true(fabsl((long double)sp - ref) <= 1e-15L * mag);
        }
    }
    /* doubles: the same order */
    double xd[40];
    for (int i = 0; i < 40; i++) xd[i] = rng_normal(&rng);
    double s = 0;
    for (int i = 0; i < 40; i++) s += xd[i];
    assert_true(fabs(lanes_sum_f64(xd, NULL, 40) - s) < 1e-13);
    assert_true(lanes_max_f64(xd, 40) >= xd[39]);
}

/* ---- swiglu ---- */
typedef struct { int64_t n; double *g, *u, *r, *y; } sw_ctx;
static double sw_loss(void *p) {
    sw_ctx *c = p;
    swiglu_forward_f64(c->y, c->g, c->u, c->n);
    return dot(c->y, c->r, c->n);
}
static void test_swiglu(void **st) {
    sw_ctx c = {17};
    c.g = rnd(c.n, 2); c.u = rnd(c.n, 1); c.r = rnd(c.n, 1); c.y = zeros(c.n);
    double *dg = zeros(c.n), *du = zeros(c.n);
    swiglu_backward_f64(dg, du, c.r, c.g, c.u, c.n);
    double *sg = rnd(c.n, 1), *su = rnd(c.n, 1), *ag = copy(sg, c.n), *au = copy(su, c.n);
    swiglu_backward_f64(ag, au, c.r, c.g, c.u, c.n);
    expect_added("swiglu dgate", ag, sg, dg, c.n);
    expect_added("swiglu dup", au, su, du, c.n);
    double *gs = rnd(c.n, 3), *us = rnd(c.n, 3);   /* _set: overwritten, not added */
    swiglu_backward_set_f64(gs, us, c.r, c.g, c.u, c.n);
    assert_memory_equal(gs, dg, sizeof(double) * (size_t)c.n);
    assert_memory_equal(us, du, sizeof(double) * (size_t)c.n);
    fd_check("swiglu_set dgate", sw_loss, &c, c.g, gs, c.n);
    fd_check("swiglu_set dup", sw_loss, &c, c.u, us, c.n);
    free(gs); free(us);
    fd_check("swiglu dgate", sw_loss, &c, c.g, dg, c.n);
    fd_check("swiglu dup", sw_loss, &c, c.u, du, c.n);
    free(c.g); free(c.u); free(c.r); free(c.y); free(dg); free(du);
}

/* A row's SwiGLU is the same bytes whether its call holds a few values
 * (one thread) or many (the threads, in chunks): both run the vector loop.
 * (Values in the loop's last partial vector take the scalar exp; a call of
 * whole rows of a width that is a multiple of 16, as every model here has,
 * has none.) */
static void test_swiglu_rows_alone(void **st) {
    const int64_t small = 3 * 32, big = 70000;   /* below and above kernels_impl.h's PAR_MIN */
    float *g = malloc(sizeof(float) * big), *u = malloc(sizeof(float) * big), *r = malloc(sizeof(float) * big);
    float *ya = malloc(sizeof(float) * small), *ga = malloc(sizeof(float) * small), *ua = malloc(sizeof(float) * small);
    float *yb = malloc(sizeof(float) * big), *gb = malloc(sizeof(float) * big), *ub = malloc(sizeof(float) * big);
    wdl_rng rng;
    rng_seed(&rng, 5);
    for (int64_t i = 0; i < big; i++) {
        g[i] = (float)(4 * rng_normal(&rng));
        u[i] = (float)rng_normal(&rng);
        r[i] = (float)rng_normal(&rng);
    }
    swiglu_forward(ya, g, u, small);
    swiglu_forward(yb, g, u, big);
    assert_memory_equal(ya, yb, sizeof(float) * (size_t)small);
    swiglu_backward_set(ga, ua, r, g, u, small);
    swiglu_backward_set(gb, ub, r, g, u, big);
    assert_memory_equal(ga, gb, sizeof(float) * (size_t)small);
    assert_memory_equal(ua, ub, sizeof(float) * (size_t)small);
    free(g); free(u); free(r); free(ya); free(yb); free(ga); free(ua); free(gb); free(ub);
}

/* ---- embedding (and the tied head shares this table) ---- */
typedef struct { int64_t N, C; int32_t *ids; double *e, *r, *y; } emb_ctx;
static double emb_loss(void *p) {
    emb_ctx *c = p;
    embedding_forward_f64(c->y, c->ids, c->e, c->N, c->C);
    return dot(c->y, c->r, c->N * c->C);
}
static void test_embedding(void **st) {
    int32_t ids[6] = {3, 1, 3, 0, 4, 3};
    emb_ctx c = {6, 4, ids};
    c.e = rnd(5 * 4, 1); c.r = rnd(6 * 4, 1); c.y = zeros(6 * 4);
    double *de = zeros(5 * 4);
    embedding_backward_f64(de, c.r, ids, 6, 4);
    double *se = rnd(5 * 4, 1), *ae = copy(se, 5 * 4);
    embedding_backward_f64(ae, c.r, ids, 6, 4);
    expect_added("embedding", ae, se, de, 5 * 4);
    fd_check("embedding", emb_loss, &c, c.e, de, 5 * 4);
    free(c.e); free(c.r); free(c.y); free(de);
}

/* ---- fused CE, plain, mixed-logit and tied ---- */
typedef struct {
    int nsides; int64_t N, C, V; double coef[2]; double *h[2], *w[2]; int32_t *tg; float *wt;
    void *scratch; int64_t chunk;
} ce_ctx;
static double ce_loss(void *p) {
    ce_ctx *c = p;
    double *nd[2] = {NULL, NULL};
    return ce_chunked_f64(c->nsides, c->h, c->w, c->coef, nd, nd, c->tg, c->wt, c->N, c->C, c->V,
                          NULL, NULL, c->scratch, c->chunk);
}
/* Reference loss with a materialised [N,V] logit matrix. */
static double ce_naive(ce_ctx *c, double *ent) {
    double tot = 0;
    for (int64_t n = 0; n < c->N; n++) {
        if (c->tg[n] < 0 || (c->wt && c->wt[n] == 0)) { if (ent) ent[n] = 0; continue; }
        double z[64], mx = -1e300, se = 0, pz = 0;
        for (int64_t v = 0; v < c->V; v++) {
            z[v] = 0;
            for (int s = 0; s < c->nsides; s++)
                z[v] += c->coef[s] * dot(c->h[s] + n * c->C, c->w[s] + v * c->C, c->C);
            mx = fmax(mx, z[v]);
        }
        for (int64_t v = 0; v < c->V; v++) se += exp(z[v] - mx);
        for (int64_t v = 0; v < c->V; v++) pz += exp(z[v] - mx) / se * z[v];
        double lse = mx + log(se);
        if (ent) ent[n] = lse - pz;
        tot += (c->wt ? c->wt[n] : 1) * (lse - z[c->tg[n]]);
    }
    return tot;
}
static void check_ce(int nsides, int tied, const char *name) {
    ce_ctx c = {nsides, 7, 5, 11, {0.42, 0.58}};
    int32_t tg[7] = {3, -100, 0, 10, 10, 2, 5};
    float wt[7] = {1, 1, 0.5f, 1, 0, 2, 1};
    c.tg = tg; c.wt = wt; c.chunk = 3;
    size_t sb = ce_scratch_bytes_f64(nsides, c.chunk, c.C, c.V);
    c.scratch = guarded(sb);
    if (nsides == 1) c.coef[0] = 1;
    double *dh[2] = {0}, *dw[2] = {0};
    for (int s = 0; s < nsides; s++) {
        c.h[s] = rnd(c.N * c.C, 1); c.w[s] = rnd(c.V * c.C, 1);
        dh[s] = zeros(c.N * c.C); dw[s] = zeros(c.V * c.C);
    }
    if (tied) { /* tied head: h rows are embedding rows of the same table */
        embedding_forward_f64(c.h[0], (int32_t[7]){1, 2, 3, 4, 5, 6, 0}, c.w[0], c.N, c.C);
    }
    double ent[7], ent_ref[7], nll[7];
    double l = ce_chunked_f64(nsides, c.h, c.w, c.coef, dh, dw, tg, wt, c.N, c.C, c.V, nll, ent, c.scratch, c.chunk);
    char buf[64];
    snprintf(buf, sizeof buf, "%s scratch", name);
    expect_scratch(buf, c.scratch, sb, sizeof(double));   /* the first chunk is full */
    c.scratch = xmalloc(sb);
    assert_true(fabs(l - ce_naive(&c, ent_ref)) < 1e-10);
    for (int n = 0; n < 7; n++) assert_true(fabs(ent[n] - ent_ref[n]) < 1e-10);
    double *start[4], *acc[4], *grads[4] = {dh[0], dw[0], dh[1], dw[1]};
    int64_t len[4] = {c.N * c.C, c.V * c.C, c.N * c.C, c.V * c.C};
    for (int i = 0; i < 2 * nsides; i++) { start[i] = rnd(len[i], 1); acc[i] = copy(start[i], len[i]); }
    double *ah[2] = {acc[0], nsides > 1 ? acc[2] : NULL}, *aw[2] = {acc[1], nsides > 1 ? acc[3] : NULL};
    ce_chunked_f64(nsides, c.h, c.w, c.coef, ah, aw, tg, wt, c.N, c.C, c.V, NULL, NULL, c.scratch, c.chunk);
    for (int i = 0; i < 2 * nsides; i++) {
        snprintf(buf, sizeof buf, "%s %s[%d]", name, i % 2 ? "dW" : "dh", i / 2);
        expect_added(buf, acc[i], start[i], grads[i], len[i]);
    }
    for (int s = 0; s < nsides; s++) {
        snprintf(buf, sizeof buf, "%s dh[%d]", name, s); fd_check(buf, ce_loss, &c, c.h[s], dh[s], c.N * c.C);
        snprintf(buf, sizeof buf, "%s dW[%d]", name, s); fd_check(buf, ce_loss, &c, c.w[s], dw[s], c.V * c.C);
    }
    for (int s = 0; s < nsides; s++) { free(c.h[s]); free(c.w[s]); free(dh[s]); free(dw[s]); }
    free(c.scratch);
}
static void test_ce(void **st) { check_ce(1, 0, "fused CE"); }
static void test_ce_mixed(void **st) { check_ce(2, 0, "mixed-logit CE"); }

/* Tied head: the table W serves as embedding and head; its gradient is the
 * sum of both paths. L(W) = CE(embed(ids; W) W^T). */
typedef struct { int32_t ids[6], tg[6]; double *w, *h; void *scratch; } tied_ctx;
static double tied_loss(void *p) {
    tied_ctx *c = p;
    embedding_forward_f64(c->h, c->ids, c->w, 6, 4);
    double *hs[1] = {c->h}, *ws[1] = {c->w}, *nd[1] = {NULL}, coef[1] = {1};
    return ce_chunked_f64(1, hs, ws, coef, nd, nd, c->tg, NULL, 6, 4, 9, NULL, NULL, c->scratch, 4);
}
static void test_tied(void **st) {
    tied_ctx c = {{1, 2, 3, 4, 5, 6}, {2, 3, 4, 5, 6, 7}};
    c.w = rnd(9 * 4, 1); c.h = zeros(6 * 4); c.scratch = xcalloc(1, ce_scratch_bytes_f64(1, 4, 4, 9));
    tied_loss(&c);
    double *dh = zeros(6 * 4), *dw = zeros(9 * 4), coef[1] = {1};
    double *hs[1] = {c.h}, *ws[1] = {c.w}, *dhs[1] = {dh}, *dws[1] = {dw};
    ce_chunked_f64(1, hs, ws, coef, dhs, dws, c.tg, NULL, 6, 4, 9, NULL, NULL, c.scratch, 4);
    embedding_backward_f64(dw, dh, c.ids, 6, 4);
    fd_check("tied embedding/head", tied_loss, &c, c.w, dw, 9 * 4);
    free(c.w); free(c.h); free(c.scratch); free(dh); free(dw);
}

/* The fused forward kernels give the bytes of the kernels they fuse, in
 * float and in double; their gradients are those kernels' (checked above),
 * so the finite differences are checked through the fused forward too. */
typedef struct { int64_t N, C; double *a, *b, *w, *r, *sum, *y, *rs; } resnorm_ctx;
static double resnorm_loss(void *p) {
    resnorm_ctx *c = p;
    residual_rmsnorm_forward_f64(c->sum, c->y, c->rs, c->a, c->b, c->w, c->N, c->C, 1e-6);
    return dot(c->y, c->r, c->N * c->C);
}
static void test_fused_forwards(void **st) {
    /* residual + rmsnorm: 130 rows of 37, both precisions */
    resnorm_ctx c = {130, 37};
    int64_t n = c.N * c.C;
    c.a = rnd(n, 1); c.b = rnd(n, 1); c.w = rnd(c.C, 1); c.r = rnd(n, 1);
    c.sum = zeros(n); c.y = zeros(n); c.rs = zeros(c.N);
    double *s2 = zeros(n), *y2 = zeros(n), *rs2 = zeros(c.N);
    resnorm_loss(&c);
    residual_forward_f64(s2, c.a, c.b, n);
    rmsnorm_forward_f64(y2, rs2, s2, c.w, c.N, c.C, 1e-6);
    assert_memory_equal(c.sum, s2, sizeof(double) * (size_t)n);
    assert_memory_equal(c.y, y2, sizeof(double) * (size_t)n);
    assert_memory_equal(c.rs, rs2, sizeof(double) * (size_t)c.N);
    /* d/da of <r, rmsnorm(a + b)> is rmsnorm_backward's dinp */
    double *da = zeros(n), *dw = zeros(c.C), *part = xmalloc(sizeof(double) * (size_t)rmsnorm_backward_scratch(c.N, c.C));
    rmsnorm_backward_f64(da, dw, c.r, c.sum, c.w, c.rs, c.N, c.C, part);
    fd_check("residual+rmsnorm da", resnorm_loss, &c, c.a, da, n);
    fd_check("residual+rmsnorm dw", resnorm_loss, &c, c.w, dw, c.C);
    float *f[7];
    int64_t fl[7] = {n, n, c.C, n, n, c.N, n};
    for (int i = 0; i < 7; i++) f[i] = xmalloc(sizeof(float) * (size_t)fl[i]);
    for (int64_t i = 0; i < n; i++) { f[0][i] = (float)c.a[i]; f[1][i] = (float)c.b[i]; }
    for (int64_t i = 0; i < c.C; i++) f[2][i] = (float)c.w[i];
    float *fs = f[3], *fy = f[4], *frs = f[5], *fs2 = f[6], *fy2 = xmalloc(sizeof(float) * (size_t)n),
          *frs2 = xmalloc(sizeof(float) * (size_t)c.N);
    residual_rmsnorm_forward(fs, fy, frs, f[0], f[1], f[2], c.N, c.C, 1e-6);
    residual_forward(fs2, f[0], f[1], n);
    rmsnorm_forward(fy2, frs2, fs2, f[2], c.N, c.C, 1e-6);
    assert_memory_equal(fs, fs2, sizeof(float) * (size_t)n);
    assert_memory_equal(fy, fy2, sizeof(float) * (size_t)n);
    assert_memory_equal(frs, frs2, sizeof(float) * (size_t)c.N);
    /* QK-norm + RoPE: 6 tokens x 3 heads of 16 at scattered positions */
    const int64_t N = 6, H = 3, HD = 16, m = N * H * HD;
    int32_t pos[6] = {0, 1, 2, 9, 40, 3};
    rope_cache_f64 tab = {0}, tab2 = {0};
    double *x = rnd(m, 1), *qw = rnd(HD, 1), *o = zeros(m), *rs = zeros(N * H), *tmp = zeros(m), *o2 = zeros(m),
           *rsb = zeros(N * H);
    qknorm_rope_forward_f64(o, rs, &tab, x, qw, pos, N, H, HD, 1e-6, 1e6);
    rmsnorm_forward_f64(tmp, rsb, x, qw, N * H, HD, 1e-6);
    rope_forward_f64(o2, &tab2, tmp, pos, N, H, HD, 1e6);
    assert_memory_equal(o, o2, sizeof(double) * (size_t)m);
    assert_memory_equal(rs, rsb, sizeof(double) * (size_t)(N * H));
    rope_cache ft = {0}, ft2 = {0};
    float *fx = xmalloc(sizeof(float) * m), *fw = xmalloc(sizeof(float) * HD), *fo = xmalloc(sizeof(float) * m),
          *fo2 = xmalloc(sizeof(float) * m), *ftmp = xmalloc(sizeof(float) * m), *fr = xmalloc(sizeof(float) * N * H),
          *fr2 = xmalloc(sizeof(float) * N * H);
    for (int64_t i = 0; i < m; i++) fx[i] = (float)x[i];
    for (int64_t i = 0; i < HD; i++) fw[i] = (float)qw[i];
    qknorm_rope_forward(fo, fr, &ft, fx, fw, pos, N, H, HD, 1e-6, 1e6);
    rmsnorm_forward(ftmp, fr2, fx, fw, N * H, HD, 1e-6);
    rope_forward(fo2, &ft2, ftmp, pos, N, H, HD, 1e6);
    assert_memory_equal(fo, fo2, sizeof(float) * (size_t)m);
    assert_memory_equal(fr, fr2, sizeof(float) * (size_t)(N * H));
    rope_cache_free_f64(&tab); rope_cache_free_f64(&tab2); rope_cache_free(&ft); rope_cache_free(&ft2);
    free(x); free(qw); free(o); free(rs); free(tmp); free(o2); free(rsb);
    free(fx); free(fw); free(fo); free(fo2); free(ftmp); free(fr); free(fr2);
    for (int i = 0; i < 7; i++) free(f[i]);
    free(fy2); free(frs2); free(da); free(dw); free(part);
    free(c.a); free(c.b); free(c.w); free(c.r); free(c.sum); free(c.y); free(c.rs); free(s2); free(y2); free(rs2);
}

/* The float kernels compute the same function as the double ones. */
/* ---- QK-norm + RoPE backward, fused ---- */
typedef struct { int64_t N, H, HD; const int32_t *pos; double *x, *w, *r, *y, *rs; rope_cache_f64 tab; } qkr_ctx;
static double qkr_loss(void *p) {
    qkr_ctx *c = p;
    qknorm_rope_forward_f64(c->y, c->rs, &c->tab, c->x, c->w, c->pos, c->N, c->H, c->HD, 1e-6, 1e4);
    return dot(c->y, c->r, c->N * c->H * c->HD);
}
static float *to_float(const double *a, int64_t n) {
    float *f = xmalloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) f[i] = (float)a[i];
    return f;
}
/* The fused kernel gives the bytes of rope_backward_set into a buffer then
 * rmsnorm_backward into zeros, dinp and dw, in double and in float (N H
 * rows: with many, several row blocks of partials on several threads),
 * whatever dinp held before. */
static void qkr_bytes(int64_t N, int64_t H, int64_t HD) {
    const int64_t m = N * H * HD, rows = N * H;
    int32_t *pos = xmalloc(sizeof(int32_t) * (size_t)N);
    for (int64_t n = 0; n < N; n++) pos[n] = (int32_t)((n * 7) % (N + 3));
    double *x = rnd(m, 1), *w = rnd(HD, 1), *g = rnd(m, 1), *y = zeros(m), *rs = zeros(rows), *tmp = zeros(m),
           *da = zeros(m), *dwa = zeros(HD), *db = rnd(m, 2), *dwb = zeros(HD),
           *part = xmalloc(sizeof(double) * (size_t)rmsnorm_backward_scratch(rows, HD));
    rope_cache_f64 t = {0};
    qknorm_rope_forward_f64(y, rs, &t, x, w, pos, N, H, HD, 1e-6, 1e4);
    rope_backward_set_f64(tmp, &t, g, pos, N, H, HD, 1e4);
    rmsnorm_backward_f64(da, dwa, tmp, x, w, rs, rows, HD, part);
    qknorm_rope_backward_set_f64(db, dwb, &t, g, x, w, rs, pos, N, H, HD, 1e4, part);
    assert_memory_equal(da, db, sizeof(double) * (size_t)m);
    assert_memory_equal(dwa, dwb, sizeof(double) * (size_t)HD);
    float *fx = to_float(x, m), *fw = to_float(w, HD), *fg = to_float(g, m), *fy = to_float(y, m),
          *frs = to_float(rs, rows), *ftmp = to_float(tmp, m),
          *fda = xcalloc((size_t)m, sizeof(float)), *fdb = to_float(db, m), *fwa = xcalloc((size_t)HD, sizeof(float)),
          *fwb = xcalloc((size_t)HD, sizeof(float));
    rope_cache ft = {0};
    qknorm_rope_forward(fy, frs, &ft, fx, fw, pos, N, H, HD, 1e-6, 1e4);
    rope_backward_set(ftmp, &ft, fg, pos, N, H, HD, 1e4);
    rmsnorm_backward(fda, fwa, ftmp, fx, fw, frs, rows, HD, part);
    qknorm_rope_backward_set(fdb, fwb, &ft, fg, fx, fw, frs, pos, N, H, HD, 1e4, part);
    assert_memory_equal(fda, fdb, sizeof(float) * (size_t)m);
    assert_memory_equal(fwa, fwb, sizeof(float) * (size_t)HD);
    rope_cache_free_f64(&t); rope_cache_free(&ft);
    free(pos); free(x); free(w); free(g); free(y); free(rs); free(tmp); free(da); free(dwa); free(db); free(dwb);
    free(part); free(fx); free(fw); free(fg); free(fy); free(frs); free(ftmp); free(fda); free(fdb);
    free(fwa); free(fwb);
}
static void test_qknorm_rope_backward(void **st) {
    qkr_bytes(6, 3, 16);
    qkr_bytes(300, 4, 32);   /* 1,200 rows, 38,400 elements: parallel, 19 blocks */
    /* finite differences through the fused forward; dw added */
    const int32_t pos[6] = {0, 1, 2, 9, 40, 3};
    qkr_ctx c = {6, 3, 16, pos};
    const int64_t m = c.N * c.H * c.HD, rows = c.N * c.H;
    c.x = rnd(m, 1); c.w = rnd(c.HD, 1); c.r = rnd(m, 1); c.y = zeros(m); c.rs = zeros(rows);
    qkr_loss(&c);
    size_t pb = sizeof(double) * (size_t)rmsnorm_backward_scratch(rows, c.HD);
    double *dx = rnd(m, 3), *dw = zeros(c.HD), *part = guarded(pb);
    qknorm_rope_backward_set_f64(dx, dw, &c.tab, c.r, c.x, c.w, c.rs, c.pos, c.N, c.H, c.HD, 1e4, part);
    expect_scratch("qk-norm+rope partials", part, pb, sizeof(double));
    double *sw = rnd(c.HD, 1), *aw = copy(sw, c.HD), *dx2 = rnd(m, 4);
    part = xmalloc(pb);
    qknorm_rope_backward_set_f64(dx2, aw, &c.tab, c.r, c.x, c.w, c.rs, c.pos, c.N, c.H, c.HD, 1e4, part);
    assert_memory_equal(dx2, dx, sizeof(double) * (size_t)m);
    expect_added("qk-norm+rope dw", aw, sw, dw, c.HD);
    fd_check("qk-norm+rope dx", qkr_loss, &c, c.x, dx, m);
    fd_check("qk-norm+rope dw", qkr_loss, &c, c.w, dw, c.HD);
    rope_cache_free_f64(&c.tab);
    free(part); free(dx); free(dx2); free(dw); free(c.x); free(c.w); free(c.r); free(c.y); free(c.rs);
}

/* ---- attention_backward_set: the bytes of attention_backward into zeros,
 * over whatever dq, dk and dv held; in float (probabilities recomputed
 * from the saved statistics, on the tiles where built) and in double ---- */
static void att_set_case(attn_dims d, int64_t N) {
    const int64_t nq = N * d.NH * d.HD, nk = N * d.KVH * d.HD;
    double *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *r = rnd(nq, 1), *y = zeros(nq),
           *st = zeros(attention_stats(N, d.NH)), *scr = zeros(attention_backward_scratch(d)),
           *fscr = zeros(attention_forward_scratch(d));
    double *g[3] = {zeros(nq), zeros(nk), zeros(nk)}, *h[3] = {rnd(nq, 2), rnd(nk, 2), rnd(nk, 2)};
    attention_forward_f64(y, NULL, st, q, k, v, d, fscr);
    attention_backward_f64(g[0], g[1], g[2], r, NULL, st, q, k, v, d, scr);
    attention_backward_set_f64(h[0], h[1], h[2], r, NULL, st, q, k, v, d, scr);
    const int64_t n[3] = {nq, nk, nk};
    for (int i = 0; i < 3; i++) assert_memory_equal(g[i], h[i], sizeof(double) * (size_t)n[i]);
    float *fq = to_float(q, nq), *fk = to_float(k, nk), *fv = to_float(v, nk), *fr = to_float(r, nq),
          *fy = to_float(y, nq), *fst = to_float(st, attention_stats(N, d.NH)),
          *fs = xmalloc(sizeof(float) * (size_t)attention_backward_scratch(d)),
          *ff = xmalloc(sizeof(float) * (size_t)attention_forward_scratch(d));
    float *fg[3] = {xcalloc((size_t)nq, 4), xcalloc((size_t)nk, 4), xcalloc((size_t)nk, 4)},
          *fh[3] = {to_float(h[0], nq), to_float(h[1], nk), to_float(h[2], nk)};
    for (int i = 0; i < 3; i++) for (int64_t j = 0; j < n[i]; j++) fh[i][j] += 1.0f;   /* not the answer */
    attention_forward(fy, NULL, fst, fq, fk, fv, d, ff);
    attention_backward(fg[0], fg[1], fg[2], fr, NULL, fst, fq, fk, fv, d, fs);
    attention_backward_set(fh[0], fh[1], fh[2], fr, NULL, fst, fq, fk, fv, d, fs);
    for (int i = 0; i < 3; i++) assert_memory_equal(fg[i], fh[i], sizeof(float) * (size_t)n[i]);
    for (int i = 0; i < 3; i++) { free(g[i]); free(h[i]); free(fg[i]); free(fh[i]); }
    free(q); free(k); free(v); free(r); free(y); free(st); free(scr); free(fscr);
    free(fq); free(fk); free(fv); free(fr); free(fy); free(fst); free(fs); free(ff);
}
static void test_attention_set(void **st) {
    att_set_case((attn_dims){2, 5, 4, 2, 3}, 10);
    att_set_case((attn_dims){3, 100, 4, 2, 16}, 300);   /* several row blocks and tasks, on the tiles */
    const int64_t off[4] = {0, 5, 75, 76};   /* packed sequences, one of 70 rows and one of 1 */
    att_set_case((attn_dims){3, 70, 4, 2, 8, off}, 76);
}

static void test_float_matches_double(void **st) {
    attn_dims d = {2, 6, 4, 2, 4};
    int64_t nq = d.B * d.T * d.NH * d.HD, nk = d.B * d.T * d.KVH * d.HD;
    double *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *y = zeros(nq), *att = zeros(d.B * d.NH * d.T * d.T);
    float *qf = xmalloc(4 * nq), *kf = xmalloc(4 * nk), *vf = xmalloc(4 * nk), *yf = xmalloc(4 * nq),
          *attf = xmalloc(4 * d.B * d.NH * d.T * d.T);
    for (int64_t i = 0; i < nq; i++) qf[i] = (float)q[i];
    for (int64_t i = 0; i < nk; i++) { kf[i] = (float)k[i]; vf[i] = (float)v[i]; q[i % nq] = q[i % nq]; }
    for (int64_t i = 0; i < nk; i++) { k[i] = kf[i]; v[i] = vf[i]; }
    for (int64_t i = 0; i < nq; i++) q[i] = qf[i];
    attention_forward_f64(y, att, NULL, q, k, v, d, NULL);
    attention_forward(yf, attf, NULL, qf, kf, vf, d, NULL);
    for (int64_t i = 0; i < nq; i++) assert_true(fabs(y[i] - yf[i]) < 1e-5);
    free(q); free(k); free(v); free(y); free(att); free(qf); free(kf); free(vf); free(yf); free(attf);
}

/* ---- linear layers sharing an input: linear_forward_n and
 * linear_backward_n give the bytes of the single-layer kernels on each in
 * turn, in double and in float, there under the programs' fp32 (on a CPU
 * without AVX-512 the whole group is one call of sgemm_own_multi). Last:
 * it sets the process's precision. ---- */
static void linear_n_case(int dbl, int64_t N, int64_t C, int n, const int64_t *OC, int set) {
    const size_t z = dbl ? sizeof(double) : sizeof(float);
    void *x = xmalloc(z * (size_t)(N * C)), *w[3], *g[3], *y[3], *y2[3], *dw[3], *dw2[3];
    void *dx = xmalloc(z * (size_t)(N * C)), *dx2 = xmalloc(z * (size_t)(N * C));
#define FILL(p, cnt)                                                                   \
    do {                                                                               \
        double *t_ = rnd(cnt, 1);                                                      \
        for (int64_t j_ = 0; j_ < (cnt); j_++)                                         \
            if (dbl) ((double *)(p))[j_] = t_[j_]; else ((float *)(p))[j_] = (float)t_[j_]; \
        free(t_);                                                                      \
    } while (0)
    FILL(x, N * C);
    FILL(dx, N * C);
    memcpy(dx2, dx, z * (size_t)(N * C));
    for (int i = 0; i < n; i++) {
        w[i] = xmalloc(z * (size_t)(OC[i] * C)); g[i] = xmalloc(z * (size_t)(N * OC[i]));
        y[i] = xmalloc(z * (size_t)(N * OC[i])); y2[i] = xmalloc(z * (size_t)(N * OC[i]));
        dw[i] = xmalloc(z * (size_t)(OC[i] * C)); dw2[i] = xmalloc(z * (size_t)(OC[i] * C));
        FILL(w[i], OC[i] * C); FILL(g[i], N * OC[i]); FILL(dw[i], OC[i] * C);
        memcpy(dw2[i], dw[i], z * (size_t)(OC[i] * C));
    }
#undef FILL
    if (dbl) {
        linear_forward_n_f64(n, (double *const *)y, x, (const double *const *)w, OC, N, C);
        linear_backward_n_f64(n, dx, (double *const *)dw, (double *const *)g, x, (const double *const *)w, OC, N, C, set);
        for (int i = 0; i < n; i++) {
            linear_forward_f64(y2[i], x, w[i], N, C, OC[i]);
            if (set && !i) linear_backward_set_f64(dx2, dw2[i], g[i], x, w[i], N, C, OC[i]);
            else linear_backward_f64(dx2, dw2[i], g[i], x, w[i], N, C, OC[i]);
        }
    } else {
        linear_forward_n(n, (float *const *)y, x, (const float *const *)w, OC, N, C);
        linear_backward_n(n, dx, (float *const *)dw, (float *const *)g, x, (const float *const *)w, OC, N, C, set);
        for (int i = 0; i < n; i++) {
            linear_forward(y2[i], x, w[i], N, C, OC[i]);
            if (set && !i) linear_backward_set(dx2, dw2[i], g[i], x, w[i], N, C, OC[i]);
            else linear_backward(dx2, dw2[i], g[i], x, w[i], N, C, OC[i]);
        }
    }
    assert_memory_equal(dx, dx2, z * (size_t)(N * C));
    for (int i = 0; i < n; i++) {
        assert_memory_equal(y[i], y2[i], z * (size_t)(N * OC[i]));
        assert_memory_equal(dw[i], dw2[i], z * (size_t)(OC[i] * C));
        free(w[i]); free(g[i]); free(y[i]); free(y2[i]); free(dw[i]); free(dw2[i]);
    }
    free(x); free(dx); free(dx2);
}
static void test_linear_n(void **st) {
    const int64_t qkv[3] = {128, 64, 70}, mlp[2] = {384, 384};
    linear_n_case(1, 9, 5, 3, (const int64_t[]){4, 3, 3}, 1);
    linear_n_case(1, 9, 5, 2, (const int64_t[]){4, 6}, 0);
    gemm_set_precision(GEMM_FP32_AUTO);
    for (int set = 0; set < 2; set++) {
        linear_n_case(0, 1000, 128, 3, qkv, set);   /* training's shapes: one region each way */
        linear_n_case(0, 1000, 128, 2, mlp, set);
        linear_n_case(0, 5, 128, 3, qkv, set);      /* decoding's few rows: layer by layer */
    }
}

int main(void) {
    rng_seed(&rng, 1234);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),    cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_qknorm),    cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention), cmocka_unit_test(test_attention_blocks),
        cmocka_unit_test(test_attention_packed), cmocka_unit_test(test_attention_forward_only),
        cmocka_unit_test(test_attention_recompute), cmocka_unit_test(test_lanes), cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_swiglu_rows_alone),
        cmocka_unit_test(test_fused_forwards), cmocka_unit_test(test_qknorm_rope_backward),
        cmocka_unit_test(test_attention_set),
        cmocka_unit_test(test_embedding), cmocka_unit_test(test_ce),
        cmocka_unit_test(test_ce_mixed),  cmocka_unit_test(test_tied),
        cmocka_unit_test(test_float_matches_double),
        cmocka_unit_test(test_linear_n),   /* last: it sets the process's precision */
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
