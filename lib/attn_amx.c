/* attn_amx.c: attention's small products in bf16, on AMX tiles or
 * AVX512-BF16 dot products (see attn_amx.h). */
#include "attn_amx.h"
#include "common.h"

#if ATTN_BF16_BUILT
#include <immintrin.h>
#include <string.h>

/* to bf16, rounding to nearest even, as oneDNN's conversions do */
static inline __m256i bf16(__m512 v) { return (__m256i)_mm512_cvtneps_pbh(v); }

/* a 16 x 16 matrix of 32-bit elements, one row per register, transposed
 * in place: pairs of rows, then of pairs, then 128-bit lanes twice */
static inline void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* u[4g + c], 128-bit lane l: column 4l + c of rows 4g..4g+3 */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(u[i], u[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(u[i], u[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(u[i + 8], u[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(u[i + 8], u[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

/* 16 bf16 pairs: x's values in the low halves, y's in the high ones */
static inline __m512i pairs(__m512 x, __m512 y) {
    return _mm512_or_si512(_mm512_cvtepu16_epi32(bf16(x)), _mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16(y)), 16));
}

/* dst [Rp, Kp] bf16 row-major = alpha * src (R x K, element (r, k) at
 * p[r * rs + k * cs], cs or rs 1), zeros outside it. With rs == 1 (src
 * stored transposed: P^T, dS^T) 32 values of k for 16 rows are converted
 * as pairs and transposed in registers. */
static void pack_rows(uint16_t *dst, int64_t Rp, int64_t Kp, tiles_opnd s, int64_t R, int64_t K, float alpha) {
    const __m512 va = _mm512_set1_ps(alpha);
    if (s.rs == 1 && s.cs != 1) {
        for (int64_t r = 0; r < Rp; r += 16) {
            const __mmask16 mr = tiles_lanes(R - r);
            for (int64_t k = 0; k < Kp; k += 32) {
                __m512i v[16];
                for (int q = 0; q < 16; q++) {
                    const int64_t k0 = k + 2 * q, k1 = k0 + 1;
                    const __m512 x = mr && k0 < K ? _mm512_maskz_loadu_ps(mr, s.p + r + k0 * s.cs) : _mm512_setzero_ps();
                    const __m512 y = mr && k1 < K ? _mm512_maskz_loadu_ps(mr, s.p + r + k1 * s.cs) : _mm512_setzero_ps();
                    v[q] = pairs(_mm512_mul_ps(va, x), _mm512_mul_ps(va, y));
                }
                transpose16(v);
                for (int q = 0; q < 16; q++) _mm512_storeu_si512(dst + (r + q) * Kp + k, v[q]);
            }
        }
        return;
    }
    for (int64_t r = 0; r < Rp; r++) {
        uint16_t *d = dst + r * Kp;
        if (r >= R) {
            memset(d, 0, sizeof(uint16_t) * (size_t)Kp);
            continue;
        }
        for (int64_t k = 0; k < Kp; k += 16) {
            const __mmask16 m = tiles_lanes(K - k);
            const __m512 v = m ? _mm512_maskz_loadu_ps(m, s.p + r * s.rs + k) : _mm512_setzero_ps();
            _mm256_storeu_si256((__m256i *)(d + k), bf16(_mm512_mul_ps(va, v)));
        }
    }
}

/* dst [Kp/2, Np] of bf16 pairs (row k/2, column n holds src(k, n) in its
 * low half, src(k + 1, n) in its high half: TDPBF16PS's B), zeros outside
 * src (K x N; cs or rs 1). With rs == 1 (the pairs adjacent in memory: keys or values
 * read as K^T, V^T) 16 columns of 32 values of k are converted and
 * transposed in registers. */
static void pack_pairs(uint32_t *dst, int64_t Kp, int64_t Np, tiles_opnd s, int64_t K, int64_t N) {
    if (s.rs == 1 && s.cs != 1) {
        for (int64_t n = 0; n < Np; n += 16)
            for (int64_t k = 0; k < Kp; k += 32) {
                const __mmask16 m0 = tiles_lanes(K - k), m1 = tiles_lanes(K - k - 16);
                __m512i v[16];
                for (int q = 0; q < 16; q++) {
                    const float *c = s.p + (n + q) * s.cs + k;
                    const int in = n + q < N;
                    const __m512 x = in && m0 ? _mm512_maskz_loadu_ps(m0, c) : _mm512_setzero_ps();
                    const __m512 y = in && m1 ? _mm512_maskz_loadu_ps(m1, c + 16) : _mm512_setzero_ps();
                    v[q] = (__m512i)_mm512_cvtne2ps_pbh(y, x);
                }
                transpose16(v);
                for (int q = 0; q < 16; q++) _mm512_storeu_si512(dst + (k / 2 + q) * Np + n, v[q]);
            }
        return;
    }
    for (int64_t k = 0; k < Kp; k += 2) {
        uint32_t *d = dst + k / 2 * Np;
        for (int64_t n = 0; n < Np; n += 16) {
            const __mmask16 m = tiles_lanes(N - n);
            const __m512 a = m && k < K ? _mm512_maskz_loadu_ps(m, s.p + k * s.rs + n) : _mm512_setzero_ps();
            const __m512 b = m && k + 1 < K ? _mm512_maskz_loadu_ps(m, s.p + (k + 1) * s.rs + n) : _mm512_setzero_ps();
            _mm512_storeu_si512(d + n, pairs(a, b));
        }
    }
}

void amx_pack_a(uint16_t *dst, tiles_opnd A, int64_t M, int64_t K, float alpha) {
    if (A.cs != 1 && A.rs != 1) die("internal: an AMX operand needs one stride of 1");
    pack_rows(dst, amx_up(M, 16), amx_up(K > 0 ? K : 1, 32), A, M, K, alpha);
}

void amx_pack_b(uint32_t *dst, tiles_opnd B, int64_t K, int64_t N) {
    if (B.cs != 1 && B.rs != 1) die("internal: an AMX operand needs one stride of 1");
    pack_pairs(dst, amx_up(K > 0 ? K : 1, 32), amx_up(N, 16), B, K, N);
}

/* ---- the products on VDPBF16PS ---- */

/* Rows [i, i + 8) of C (mr of them real: packed A has zero rows up to a
 * multiple of 16), nv (1 or 2, a constant where inlined) vectors of 16
 * columns from c, over the pairs of k [p0, p1): per pair, B's vectors as
 * they are packed and each row's A pair broadcast as one 32-bit word, 16
 * sums in registers. A beta of 1 starts the sums from C, 0 from zero, any
 * other from zero and adds beta C at the end; lanes past N (last) and rows
 * past mr are neither read nor written. */
static inline __attribute__((always_inline)) void dot_block(const int nv, const uint16_t *a, int64_t Kp,
                                                            const uint32_t *b, int64_t Np, int64_t p0, int64_t p1,
                                                            float *c, int64_t ldc, int64_t mr, __mmask16 last,
                                                            float beta) {
    const __mmask16 m0 = nv == 1 ? last : 0xffff, m1 = last;
    __m512 s0[8], s1[8];
    for (int r = 0; r < 8; r++) {
        const int on = beta == 1.0f && r < mr;
        s0[r] = on ? _mm512_maskz_loadu_ps(m0, c + r * ldc) : _mm512_setzero_ps();
        s1[r] = on && nv > 1 ? _mm512_maskz_loadu_ps(m1, c + r * ldc + 16) : _mm512_setzero_ps();
    }
    const uint32_t *aw = (const uint32_t *)a;   /* A's pairs as 32-bit words: row r, pair p at aw[r Kp/2 + p] */
    const int64_t kw = Kp / 2;
    for (int64_t p = p0; p < p1; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * Np);
        const __m512bh b1 = nv > 1 ? (__m512bh)_mm512_loadu_si512(b + p * Np + 16) : b0;
        for (int r = 0; r < 8; r++) {
            const __m512bh x = (__m512bh)_mm512_set1_epi32((int)aw[r * kw + p]);
            s0[r] = _mm512_dpbf16_ps(s0[r], x, b0);
            if (nv > 1) s1[r] = _mm512_dpbf16_ps(s1[r], x, b1);
        }
    }
    const __m512 vb = _mm512_set1_ps(beta);
    for (int r = 0; r < 8 && r < mr; r++) {
        float *cr = c + r * ldc;
        if (beta != 0.0f && beta != 1.0f) {
            s0[r] = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), s0[r]);
            if (nv > 1) s1[r] = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), s1[r]);
        }
        _mm512_mask_storeu_ps(cr, m0, s0[r]);
        if (nv > 1) _mm512_mask_storeu_ps(cr + 16, m1, s1[r]);
    }
}

void dot_mm_packed(int64_t M, int64_t N, int64_t K, const uint16_t *ap, const uint32_t *bp, int64_t Np, float beta,
                   float *C, int64_t ldc, int causal, int64_t off) {
    if (M <= 0 || N <= 0) return;
    const int64_t Kp = amx_up(K > 0 ? K : 1, 32);
    for (int64_t i = 0; i < M; i += 8) {
        const int64_t mr = M - i < 8 ? M - i : 8;
        int64_t k0 = 0, k1 = K;   /* the stretch of k with nonzero terms for these rows */
        if (causal == TILES_K_TO && k1 > off + i + mr) k1 = off + i + mr;
        if (causal == TILES_K_FROM && i - off > 0) k0 = i - off < K ? i - off : K;
        const int64_t p0 = k0 / 2, p1 = (k1 + 1) / 2;
        const uint16_t *a = ap + i * Kp;
        for (int64_t j = 0; j < N; j += 32) {
            /* the scores past the block's last diagonal are left unwritten */
            if (causal == TILES_COLS_TO && j > off + i + mr - 1) break;
            float *c = C + i * ldc + j;
            if (N - j > 16 && !(causal == TILES_COLS_TO && j + 16 > off + i + mr - 1))
                dot_block(2, a, Kp, bp + j, Np, p0, p1, c, ldc, mr, tiles_lanes(N - j - 16), beta);
            else
                dot_block(1, a, Kp, bp + j, Np, p0, p1, c, ldc, mr, tiles_lanes(N - j), beta);
        }
    }
}

void amx_mm(int amx, int64_t M, int64_t N, int64_t K, float alpha, tiles_opnd A, tiles_opnd B, float beta, float *C,
            int64_t ldc, int causal, int64_t off, float *work) {
    if (amx && !ATTN_AMX_BUILT) die("internal: AMX attention needs an AMX-BF16 build");
    if (M <= 0 || N <= 0) return;
    uint16_t *ap = (uint16_t *)work;
    uint32_t *bp = (uint32_t *)(ap + amx_up(M, 16) * amx_up(K > 0 ? K : 1, 32));
    amx_pack_a(ap, A, M, K, alpha);
    amx_pack_b(bp, B, K, N);
    bf16_mm_packed(amx, M, N, K, ap, bp, amx_up(N, 16), beta, C, ldc, causal, off);
}

#else   /* no AVX512-BF16: gemm_attention_amx() and gemm_attention_dot() are 0 */

void amx_pack_a(uint16_t *dst, tiles_opnd A, int64_t M, int64_t K, float alpha) {
    die("internal: bf16 attention needs an AVX512-BF16 build");
}
void amx_pack_b(uint32_t *dst, tiles_opnd B, int64_t K, int64_t N) {
    die("internal: bf16 attention needs an AVX512-BF16 build");
}
void amx_mm(int amx, int64_t M, int64_t N, int64_t K, float alpha, tiles_opnd A, tiles_opnd B, float beta, float *C,
            int64_t ldc, int causal, int64_t off, float *work) {
    die("internal: bf16 attention needs an AVX512-BF16 build");
}
void dot_mm_packed(int64_t M, int64_t N, int64_t K, const uint16_t *ap, const uint32_t *bp, int64_t Np, float beta,
                   float *C, int64_t ldc, int causal, int64_t off) {
    die("internal: bf16 attention needs an AVX512-BF16 build");
}
#endif

#if ATTN_AMX_BUILT
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023   /* Linux's arch_prctl request and */
#define XFEATURE_XTILEDATA 18        /* the state component of the tiles */

int amx_permit(void) { return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0; }


/* the tile configuration: all eight tiles 16 rows of 64 bytes, which is
 * 16 x 16 floats of C, 16 x 32 bf16 of A or 16 x 16 pairs of B (which
 * tile holds what: tiles(), short_row(), block22()) */
typedef struct __attribute__((aligned(64))) {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Where tile q of a group is whole (16 x 16 inside C), it starts from C
 * itself (beta 1) or from zero (beta 0) and is stored back into C; any
 * other tile starts from zero and goes to t (256 floats per tile) for a
 * masked write-back. */
enum { TO_T, FROM_ZERO, FROM_C };
typedef struct { int how[4]; float *c[4]; int64_t ldc; } group_dst;

#define TILE_START(q)                                                                                     \
    do {                                                                                                  \
        if (g->how[q] == FROM_C) _tile_loadd(q, g->c[q], g->ldc * 4);                                     \
        else _tile_zero(q);                                                                               \
    } while (0)
#define TILE_STORE(q)                                                                                     \
    do {                                                                                                  \
        if (g->how[q] == TO_T) _tile_stored(q, t + 256 * (q), 64);                                        \
        else if (g->c[q]) _tile_stored(q, g->c[q], g->ldc * 4);                                           \
    } while (0)

/* nt (1-4, a constant where inlined) tiles of C side by side (tmm0-3)
 * over the k steps [k0, k1) of 32, A in tmm4, B in tmm5 and tmm6 */
static inline __attribute__((always_inline)) void tiles(const int nt, const uint16_t *a, int64_t lda,
                                                        const uint32_t *b, int64_t ldb, int64_t k0, int64_t k1,
                                                        const group_dst *g, float *t) {
    TILE_START(0);
    if (nt > 1) TILE_START(1);
    if (nt > 2) TILE_START(2);
    if (nt > 3) TILE_START(3);
    for (int64_t k = k0; k < k1; k += 32) {
        const uint32_t *bk = b + k / 2 * ldb;
        _tile_loadd(4, a + k, lda * 2);
        _tile_loadd(5, bk, ldb * 4);
        _tile_dpbf16ps(0, 4, 5);
        if (nt > 1) {
            _tile_loadd(6, bk + 16, ldb * 4);
            _tile_dpbf16ps(1, 4, 6);
        }
        if (nt > 2) {
            _tile_loadd(5, bk + 32, ldb * 4);
            _tile_dpbf16ps(2, 4, 5);
        }
        if (nt > 3) {
            _tile_loadd(6, bk + 48, ldb * 4);
            _tile_dpbf16ps(3, 4, 6);
        }
    }
    TILE_STORE(0);
    if (nt > 1) TILE_STORE(1);
    if (nt > 2) TILE_STORE(2);
    if (nt > 3) TILE_STORE(3);
}

/* The tiles hold no renamed copies: a tile register is reused only when
 * the operations on its last contents are done. So the two paths for
 * whole tiles below keep several tiles in flight. */
#define START(q, c) \
    do { if (from_c) _tile_loadd(q, c, ldc * 4); else _tile_zero(q); } while (0)

/* One step of k (K <= 32: the scores and dP): row tile a in tmm4, the
 * whole column tiles [j, j1) of C's row block c in turn on three (C, B)
 * pairs (tmm0-2, tmm5-7). */
static void short_row(const uint16_t *a, const uint32_t *b, int64_t ldb, float *c, int64_t ldc, int64_t j,
                      int64_t j1, int from_c) {
    _tile_loadd(4, a, 64);
    for (; j + 48 <= j1; j += 48) {
        START(0, c + j);
        _tile_loadd(5, b + j, ldb * 4);
        _tile_dpbf16ps(0, 4, 5);
        START(1, c + j + 16);
        _tile_loadd(6, b + j + 16, ldb * 4);
        _tile_dpbf16ps(1, 4, 6);
        START(2, c + j + 32);
        _tile_loadd(7, b + j + 32, ldb * 4);
        _tile_dpbf16ps(2, 4, 7);
        _tile_stored(0, c + j, ldc * 4);
        _tile_stored(1, c + j + 16, ldc * 4);
        _tile_stored(2, c + j + 32, ldc * 4);
    }
    if (j + 16 <= j1) {
        START(0, c + j);
        _tile_loadd(5, b + j, ldb * 4);
        _tile_dpbf16ps(0, 4, 5);
    }
    if (j + 32 <= j1) {
        START(1, c + j + 16);
        _tile_loadd(6, b + j + 16, ldb * 4);
        _tile_dpbf16ps(1, 4, 6);
        _tile_stored(1, c + j + 16, ldc * 4);
    }
    if (j + 16 <= j1) _tile_stored(0, c + j, ldc * 4);
}

/* Longer k: a 32 x 32 block of C (tiles tmm0-3) from two row tiles of A
 * (tmm4, tmm5) and two column tiles of B (tmm6, tmm7) per step, four sums
 * in flight; put[q] says which tiles go back to C. */
static void block22(const uint16_t *a, int64_t lda, const uint32_t *b, int64_t ldb, int64_t k0, int64_t k1,
                    float *c, int64_t ldc, int from_c, const int put[4]) {
    START(0, c);
    START(1, c + 16);
    START(2, c + 16 * ldc);
    START(3, c + 16 * ldc + 16);
    for (int64_t k = k0; k < k1; k += 32) {
        const uint32_t *bk = b + k / 2 * ldb;
        _tile_loadd(4, a + k, lda * 2);
        _tile_loadd(6, bk, ldb * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, bk + 16, ldb * 4);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a + 16 * lda + k, lda * 2);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    if (put[0]) _tile_stored(0, c, ldc * 4);
    if (put[1]) _tile_stored(1, c + 16, ldc * 4);
    if (put[2]) _tile_stored(2, c + 16 * ldc, ldc * 4);
    if (put[3]) _tile_stored(3, c + 16 * ldc + 16, ldc * 4);
}
#undef START

/* Any row tile i of C from column j on, in groups of up to four tiles
 * (tiles()), partial tiles through t. */
static void any_row(int64_t i, int64_t j, int64_t M, int64_t N, int64_t K, const uint16_t *ap, int64_t Kp,
                    const uint32_t *bp, int64_t Np, float beta, float *C, int64_t ldc, int causal, int64_t off,
                    float *t) {
    const int64_t mi = M - i < 16 ? M - i : 16;
    const __m512 vb = _mm512_set1_ps(beta);
    for (; j < N; j += 64) {
        const int nt = N - j >= 64 ? 4 : (int)((N - j + 15) / 16);
        if (causal == TILES_COLS_TO && j > off + i + mi - 1) return;
        int64_t p0 = 0, p1 = K;   /* the stretch of k with nonzero terms */
        if (causal == TILES_K_TO && p1 > off + i + mi) p1 = off + i + mi;
        if (causal == TILES_K_FROM && i - off > 0) p0 = i - off < K ? i - off : K;
        group_dst g = {.ldc = ldc};
        for (int q = 0; q < nt; q++) {
            const int64_t jq = j + 16 * q;
            const int whole = mi == 16 && N - jq >= 16 && (beta == 0.0f || beta == 1.0f);
            g.how[q] = !whole ? TO_T : beta == 0.0f ? FROM_ZERO : FROM_C;
            /* a tile past the diagonal of the scores is left unwritten */
            g.c[q] = causal == TILES_COLS_TO && jq > off + i + mi - 1 ? NULL : C + i * ldc + jq;
        }
        const uint16_t *at = ap + i * Kp;
        const uint32_t *bt = bp + j;
        switch (nt) {
        case 4: tiles(4, at, Kp, bt, Np, p0 / 32 * 32, p1, &g, t); break;
        case 3: tiles(3, at, Kp, bt, Np, p0 / 32 * 32, p1, &g, t); break;
        case 2: tiles(2, at, Kp, bt, Np, p0 / 32 * 32, p1, &g, t); break;
        default: tiles(1, at, Kp, bt, Np, p0 / 32 * 32, p1, &g, t); break;
        }
        for (int q = 0; q < nt; q++) {
            if (g.how[q] != TO_T || !g.c[q]) continue;
            const __mmask16 k = tiles_lanes(N - j - 16 * q);
            for (int64_t r = 0; r < mi; r++) {
                float *c = g.c[q] + r * ldc;
                __m512 v = _mm512_load_ps(t + 256 * q + 16 * r);
                if (beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k, c), v);
                _mm512_mask_storeu_ps(c, k, v);
            }
        }
    }
}

void amx_mm_packed(int64_t M, int64_t N, int64_t K, const uint16_t *ap, const uint32_t *bp, int64_t Np, float beta,
                   float *C, int64_t ldc, int causal, int64_t off) {
    if (M <= 0 || N <= 0) return;
    const int64_t Kp = amx_up(K > 0 ? K : 1, 32);

    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int q = 0; q < 8; q++) {
        cfg.colsb[q] = 64;
        cfg.rows[q] = 16;
    }
    _tile_loadconfig(&cfg);
    float t[4 * 256] __attribute__((aligned(64)));
    /* whole tiles start from C (beta 1) or zero (beta 0) and go straight
     * back; other betas, and the partial tiles at the edges, take any_row */
    const int direct = beta == 0.0f || beta == 1.0f, from_c = beta == 1.0f;
    for (int64_t i = 0; i < M;) {
        if (Kp == 32 && M - i >= 16 && direct) {
            /* one step of k: dense (a causal skip of k would only skip
             * zeros), whole column tiles up to the diagonal's */
            int64_t j1 = N / 16 * 16;
            if (causal == TILES_COLS_TO && j1 > ((off + i + 15) / 16 + 1) * 16) j1 = ((off + i + 15) / 16 + 1) * 16;
            short_row(ap + i * Kp, bp, Np, C + i * ldc, ldc, 0, j1, from_c);
            any_row(i, j1, M, N, K, ap, Kp, bp, Np, beta, C, ldc, causal, off, t);
            i += 16;
        } else if (Kp > 32 && M - i >= 32 && direct) {
            int64_t p0 = 0, p1 = K;   /* the stretch of k with nonzero terms for these 32 rows */
            if (causal == TILES_K_TO && p1 > off + i + 32) p1 = off + i + 32;
            if (causal == TILES_K_FROM && i - off > 0) p0 = i - off < K ? i - off : K;
            int64_t j = 0;
            for (; j + 32 <= N; j += 32) {
                if (causal == TILES_COLS_TO && j > off + i + 31) break;   /* past both rows' diagonal */
                const int past = causal == TILES_COLS_TO;
                const int put[4] = {!past || j <= off + i + 15, !past || j + 16 <= off + i + 15, 1,
                                    !past || j + 16 <= off + i + 31};
                block22(ap + i * Kp, Kp, bp + j, Np, p0 / 32 * 32, p1, C + i * ldc + j, ldc, from_c, put);
            }
            any_row(i, j, M, N, K, ap, Kp, bp, Np, beta, C, ldc, causal, off, t);
            any_row(i + 16, j, M, N, K, ap, Kp, bp, Np, beta, C, ldc, causal, off, t);
            i += 32;
        } else {
            any_row(i, 0, M, N, K, ap, Kp, bp, Np, beta, C, ldc, causal, off, t);
            i += 16;
        }
    }
    _tile_release();
}

#else   /* no AMX: gemm_attention_amx() is 0 */

int amx_permit(void) { return 0; }
void amx_mm_packed(int64_t M, int64_t N, int64_t K, const uint16_t *ap, const uint32_t *bp, int64_t Np, float beta,
                   float *C, int64_t ldc, int causal, int64_t off) {
    die("internal: AMX attention needs an AMX-BF16 build");
}
#endif
