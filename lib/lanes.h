/* lanes.h: row reductions in 16 fixed lanes. Lane j takes the elements j,
 * j + 16, j + 32, ... in order; the lanes are then combined pairwise (j with
 * j + 8, then j + 4, j + 2, j + 1). The order is fixed by this definition,
 * not by a compiler's vectorisation, so every build gives the same bits,
 * and no row ends in a chain of 16 dependent adds (or, for a max, the
 * store-forwarding stall) that a vectorised `omp simd` reduction leaves.
 * Portable versions for float and double; for float, AVX-512 or AVX2
 * versions of the same order where the build targets them (test_kernels
 * checks them against the portable ones bit for bit), chosen by
 * lanes_max_f32 and lanes_sum_f32. Attention's softmax uses them
 * (kernels_impl.h). */
#ifndef WDL_LANES_H
#define WDL_LANES_H
#include <stdint.h>

#define LANES 16

/* max of x[0..n) (n >= 1; x > m ? x : m, so a NaN is passed over unless
 * first), and the sum of x[u] (y NULL) or of x[u] y[u] in double */
#define LANES_PORTABLE(SUFFIX, R)                                                            \
    static inline R lanes_max_##SUFFIX(const R *x, int64_t n) {                              \
        R l[LANES];                                                                          \
        for (int j = 0; j < LANES; j++) l[j] = x[0];                                         \
        int64_t u = 0;                                                                       \
        for (; u + LANES <= n; u += LANES)                                                   \
            for (int j = 0; j < LANES; j++) l[j] = x[u + j] > l[j] ? x[u + j] : l[j];        \
        for (int j = 0; u + j < n; j++) l[j] = x[u + j] > l[j] ? x[u + j] : l[j];            \
        for (int w = LANES / 2; w; w /= 2)                                                   \
            for (int j = 0; j < w; j++) l[j] = l[j + w] > l[j] ? l[j + w] : l[j];            \
        return l[0];                                                                         \
    }                                                                                        \
    static inline double lanes_sum_##SUFFIX(const R *x, const R *y, int64_t n) {             \
        double l[LANES] = {0};                                                               \
        int64_t u = 0;                                                                       \
        if (y) {                                                                             \
            for (; u + LANES <= n; u += LANES)                                               \
                for (int j = 0; j < LANES; j++) l[j] += (double)x[u + j] * y[u + j];         \
            for (int j = 0; u + j < n; j++) l[j] += (double)x[u + j] * y[u + j];             \
        } else {                                                                             \
            for (; u + LANES <= n; u += LANES)                                               \
                for (int j = 0; j < LANES; j++) l[j] += x[u + j];                            \
            for (int j = 0; u + j < n; j++) l[j] += x[u + j];                                \
        }                                                                                    \
        for (int w = LANES / 2; w; w /= 2)                                                   \
            for (int j = 0; j < w; j++) l[j] += l[j + w];                                    \
        return l[0];                                                                         \
    }
LANES_PORTABLE(portable_f32, float)
LANES_PORTABLE(f64, double)
#undef LANES_PORTABLE

#if defined(__AVX512F__)
#include <immintrin.h>
#define LANES_AVX512 1
#define LANES_AVX2 0
static inline float lanes_max_avx512_f32(const float *x, int64_t n) {
    __m512 l = _mm512_set1_ps(x[0]);
    int64_t u = 0;
    for (; u + 16 <= n; u += 16) l = _mm512_max_ps(_mm512_loadu_ps(x + u), l);
    if (u < n) {
        __mmask16 m = (__mmask16)((1u << (n - u)) - 1);
        l = _mm512_mask_max_ps(l, m, _mm512_maskz_loadu_ps(m, x + u), l);
    }
    /* _mm*_max_*(a, b) is a > b ? a : b, the portable comparison */
    __m256 a = _mm512_castps512_ps256(l), b = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(l), 1));
    __m256 c = _mm256_max_ps(b, a);
    __m128 d = _mm_max_ps(_mm256_extractf128_ps(c, 1), _mm256_castps256_ps128(c));
    __m128 e = _mm_max_ps(_mm_movehl_ps(d, d), d);
    return _mm_cvtss_f32(_mm_max_ss(_mm_shuffle_ps(e, e, 1), e));
}
/* the 16 floats of v as doubles: lanes 0-7, 8-15 */
static inline void lanes_widen16(__m512 v, __m512d *lo, __m512d *hi) {
    *lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    *hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
static inline double lanes_sum_avx512_f32(const float *x, const float *y, int64_t n) {
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (int64_t u = 0; u < n; u += 16) {   /* a masked tail adds zeros, as the portable loop adds nothing */
        __mmask16 m = n - u >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - u)) - 1);
        __m512d vl, vh, wl, wh;
        lanes_widen16(_mm512_maskz_loadu_ps(m, x + u), &vl, &vh);
        if (y) {   /* a product of two floats is exact in double, so the FMA rounds once, as the add does */
            lanes_widen16(_mm512_maskz_loadu_ps(m, y + u), &wl, &wh);
            lo = _mm512_fmadd_pd(vl, wl, lo);
            hi = _mm512_fmadd_pd(vh, wh, hi);
        } else {
            lo = _mm512_add_pd(lo, vl);
            hi = _mm512_add_pd(hi, vh);
        }
    }
    __m512d s8 = _mm512_add_pd(lo, hi);
    __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}
static inline float lanes_max_f32(const float *x, int64_t n) { return lanes_max_avx512_f32(x, n); }
static inline double lanes_sum_f32(const float *x, const float *y, int64_t n) {
    return lanes_sum_avx512_f32(x, y, n);
}
#elif defined(__AVX2__)
#include <immintrin.h>
#define LANES_AVX512 0
#define LANES_AVX2 1
/* The same order in two 8-lane vectors (lanes 0-7, 8-15) of floats, or
 * four 4-lane vectors of doubles. The portable loops, compiled for AVX2,
 * kept their 16 lanes in memory: a third of the nano model's attention
 * forward went to them. */
/* the first `valid` of 8 lanes (none for valid <= 0, all for valid >= 8):
 * the tails here, and the AVX2 attention tiles' partial columns */
static inline __m256i lanes_mask8(int64_t valid) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(valid > 8 ? 8 : valid < 0 ? 0 : valid)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline float lanes_max_avx2_f32(const float *x, int64_t n) {
    __m256 l0 = _mm256_set1_ps(x[0]), l1 = l0;
    int64_t u = 0;
    for (; u + 16 <= n; u += 16) {
        l0 = _mm256_max_ps(_mm256_loadu_ps(x + u), l0);
        l1 = _mm256_max_ps(_mm256_loadu_ps(x + u + 8), l1);
    }
    if (u < n) {   /* the tail's lanes only: the others keep their value */
        const __m256i m0 = lanes_mask8(n - u), m1 = lanes_mask8(n - u - 8);
        l0 = _mm256_blendv_ps(l0, _mm256_max_ps(_mm256_maskload_ps(x + u, m0), l0), _mm256_castsi256_ps(m0));
        l1 = _mm256_blendv_ps(l1, _mm256_max_ps(_mm256_maskload_ps(x + u + 8, m1), l1), _mm256_castsi256_ps(m1));
    }
    /* _mm*_max_*(a, b) is a > b ? a : b, the portable comparison */
    __m256 c = _mm256_max_ps(l1, l0);
    __m128 d = _mm_max_ps(_mm256_extractf128_ps(c, 1), _mm256_castps256_ps128(c));
    __m128 e = _mm_max_ps(_mm_movehl_ps(d, d), d);
    return _mm_cvtss_f32(_mm_max_ss(_mm_shuffle_ps(e, e, 1), e));
}
static inline double lanes_sum_avx2_f32(const float *x, const float *y, int64_t n) {
    __m256d l[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (int64_t u = 0; u < n; u += 16) {   /* a masked tail adds zeros, as the portable loop adds nothing */
        __m256 v[2], w[2];
        for (int h = 0; h < 2; h++) {
            const __m256i m = lanes_mask8(n - u - 8 * h);
            v[h] = _mm256_maskload_ps(x + u + 8 * h, m);
            if (y) w[h] = _mm256_maskload_ps(y + u + 8 * h, m);
        }
        for (int q = 0; q < 4; q++) {   /* lanes 4q .. 4q + 3 */
            const __m128 vq = q & 1 ? _mm256_extractf128_ps(v[q >> 1], 1) : _mm256_castps256_ps128(v[q >> 1]);
            if (y) {   /* a product of two floats is exact in double: one rounding, as the add's */
                const __m128 wq = q & 1 ? _mm256_extractf128_ps(w[q >> 1], 1) : _mm256_castps256_ps128(w[q >> 1]);
                l[q] = _mm256_fmadd_pd(_mm256_cvtps_pd(vq), _mm256_cvtps_pd(wq), l[q]);
            } else
                l[q] = _mm256_add_pd(l[q], _mm256_cvtps_pd(vq));
        }
    }
    __m256d s8a = _mm256_add_pd(l[0], l[2]), s8b = _mm256_add_pd(l[1], l[3]);   /* j + 8 */
    __m256d s4 = _mm256_add_pd(s8a, s8b);                                        /* j + 4 */
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}
static inline float lanes_max_f32(const float *x, int64_t n) { return lanes_max_avx2_f32(x, n); }
static inline double lanes_sum_f32(const float *x, const float *y, int64_t n) {
    return lanes_sum_avx2_f32(x, y, n);
}
#else
#define LANES_AVX512 0
#define LANES_AVX2 0
static inline float lanes_max_f32(const float *x, int64_t n) { return lanes_max_portable_f32(x, n); }
static inline double lanes_sum_f32(const float *x, const float *y, int64_t n) {
    return lanes_sum_portable_f32(x, y, n);
}
#endif
#endif
