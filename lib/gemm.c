/* gemm.c: the matrix-product backend (see gemm.h): OpenBLAS for fp32,
 * oneDNN matmul for bf16 (and for fp32 on request). */
#include "gemm.h"
#include "attn_amx.h"
#include "common.h"
#include "safetensors.h"
#include "sgemm.h"
#include <cblas.h>
#include <cpuid.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Threads that may call gemm_run over the life of the process (each gets a
 * scratch slot the first time it calls). */
#define GEMM_MAX_THREADS 256
/* Primitives kept per context. A training run sees a few hundred shapes
 * (the padded length varies by batch); past this bound a new shape gets a
 * primitive created for the call and destroyed after it, so memory stays
 * bounded while every shape still runs. */
#define GEMM_MAX_CACHED 4096
/* Row counts are split (see gemm_run) only for products with fewer
 * columns than this: a linear layer, not a head over the vocabulary. */
#define GEMM_SPLIT_MAX_N 32768

/* What a created primitive depends on. Zeroed before filling (it is hashed
 * and compared as bytes, padding included). alpha/beta are held as bits. */
typedef struct {
    int32_t prec, ta, tb;
    uint32_t alpha, beta;
    int64_t M, N, K, lda, ldb, ldc;
} gemm_key;

typedef struct gemm_entry {
    gemm_key key;
    struct gemm_entry *next;
    dnnl_primitive_t prim;      /* NULL: no oneDNN kernel, emulate on cblas_sgemm */
    dnnl_memory_desc_t md[4];   /* src (A), weights (B), dst (C), scratchpad */
    size_t pad_bytes;
    int own_scale;              /* the primitive computes A B into dense scratch; gemm_run applies alpha, beta */
} gemm_entry;

/* One calling thread's scratch: inputs converted to bf16 (or, emulating,
 * to bf16-rounded floats), oneDNN's scratchpad, and its stream. */
#define SLOT_MEMS 64
#define SLOT_HELD 4
#define SLOT_BUFS 6   /* 0-3 conversions and oneDNN's scratch, 4-5 sgemm_own's packing */
typedef struct {
    void *buf[SLOT_BUFS];
    size_t cap[SLOT_BUFS];
    dnnl_stream_t stream;
    /* oneDNN memory objects of recently run entries, kept so that a call
     * only points them at its buffers (creating and destroying four per
     * call cost a third of a small product's time) */
    struct { const gemm_entry *e; dnnl_memory_t mem[4]; } mems[SLOT_MEMS];
    /* gemm_hold_inputs: bf16 copies kept while the inputs are held */
    int hold, next_held;   /* hold: depth of nested gemm_hold_inputs scopes */
    struct { const float *src; int64_t rows, cols, ld; uint16_t *buf; size_t cap; } held[SLOT_HELD];
} gemm_slot;

struct gemm_ctx {
    gemm_precision prec;
    dnnl_engine_t eng;
    pthread_mutex_t lock;       /* guards the table and slot creation */
    gemm_entry **tab;
    size_t ntab, nent, max_cached;
    int64_t emulated, own_scaled;
    atomic_llong few_rows;      /* products run by the few-row kernels */
    atomic_llong few_groups;    /* gemm_run_n's groups of them, each in one parallel region */
    int few_mode;               /* gemm_ctx_few_rows: 0 off, 1 on, 2 the AVX2 kernel (tests) */
    int own_sgemm;              /* fixed-block products on sgemm_own instead of OpenBLAS (gemm_ctx_own_sgemm) */
    int native;                 /* gemm_bf16_native() */
    int bf16_fma;               /* GEMM_BF16's products on sgemm_own's fp32 FMAs, not oneDNN's bf16 kernels */
    int isa512;                 /* gemm_dnnl_avx512(): oneDNN runs AVX-512 here (no ONEDNN_MAX_CPU_ISA cap) */
    int views_few;              /* gemm_ctx_fp32_views_few_rows: fp32 views read by the few-row kernel */
    int amx;                    /* GEMM_BF16 with AMX granted to this process: attention on attn_amx.h */
    int dot;                    /* GEMM_BF16 on AMD's AVX512-BF16: attention on its dot products */
    int always_own_scale;       /* gemm_ctx_always_own_scale (tests) */
    int software_conversion;    /* gemm_ctx_software_conversion (tests) */
    gemm_slot *slot[GEMM_MAX_THREADS];
    /* gemm_ctx_set_readonly: floats that never change again, held in bf16
     * once so that products read them without converting on every call */
    struct { const float *base; size_t n, cap; uint16_t *bf16; } ro[GEMM_READONLY_RANGES];
    /* gemm_ctx_add_bf16_view: ranges held only in bf16, sorted by base (in
     * an fp32 context: fp32 set, the products widen them) */
    /* gemm_ctx_mirror: copies of floats that are also stored (mirror set) */
    struct gemm_view { const float *base; size_t n; const uint16_t *bf16; int mirror, fp32; } *views;
    size_t nviews, capviews;
    /* gemm_ctx_keep_packed: the range, and its matrices packed so far */
    struct {
        const float *base;
        size_t n, floats;
        struct gemm_packed { const float *b; int64_t N, K, ldb; float *bp; } *e;
        size_t ne, cap;
    } packed;
};

#define DNNL_CHECK(call, what)                                                   \
    do {                                                                         \
        dnnl_status_t st_ = (call);                                              \
        if (st_ != dnnl_success) die("oneDNN: %s failed (status %d)", what, (int)st_); \
    } while (0)

/* Whether the CPU is AMD's (CPUID leaf 0's vendor string): there
 * VDPBF16PS issues at twice the fp32 FMA rate (Zen 4), while on Intel's
 * AVX-512 cores it issues on one port against the FMAs' two and ran
 * attention slower than oneDNN's products (README, The engine). */
static int cpu_is_amd(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    return b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;   /* "Auth" "enti" "cAMD" */
}

gemm_ctx *gemm_ctx_new(gemm_precision p) {
    gemm_ctx *g = xcalloc(1, sizeof *g);
    g->prec = p;
    g->max_cached = GEMM_MAX_CACHED;
    g->few_mode = 1;
    gemm_ctx_own_sgemm(g, 1);
    g->isa512 = gemm_dnnl_avx512();
    g->native = gemm_bf16_native();
    /* oneDNN asks for the tile registers itself when it runs AMX; the
     * attention kernels ask too rather than count on it */
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    g->amx = ATTN_AMX_BUILT && p == GEMM_BF16 &&
             (isa & (unsigned)dnnl_cpu_isa_avx512_core_amx) == (unsigned)dnnl_cpu_isa_avx512_core_amx && amx_permit();
    g->dot = ATTN_BF16_BUILT && p == GEMM_BF16 && !g->amx && g->native && cpu_is_amd();
    gemm_ctx_bf16_fma(g, gemm_bf16_on_fma() || !g->native);
    pthread_mutex_init(&g->lock, NULL);
    /* fp32 contexts need oneDNN too, for their few-row products */
    DNNL_CHECK(dnnl_engine_create(&g->eng, dnnl_cpu, 0), "engine creation");
    g->ntab = 256;
    g->tab = xcalloc(g->ntab, sizeof *g->tab);
    return g;
}

void gemm_ctx_free(gemm_ctx *g) {
    if (!g) return;
    gemm_ctx_keep_packed(g, NULL, 0);
    free(g->packed.e);
    for (int i = 0; i < GEMM_READONLY_RANGES; i++) free(g->ro[i].bf16);
    free(g->views);
    for (size_t i = 0; i < g->ntab; i++)
        for (gemm_entry *e = g->tab[i], *nx; e; e = nx) {
            nx = e->next;
            if (e->prim) dnnl_primitive_destroy(e->prim);
            free(e);
        }
    free(g->tab);
    for (int t = 0; t < GEMM_MAX_THREADS; t++) {
        gemm_slot *s = g->slot[t];
        if (!s) continue;
        for (int i = 0; i < SLOT_BUFS; i++) free(s->buf[i]);
        for (int i = 0; i < SLOT_HELD; i++) free(s->held[i].buf);
        for (int j = 0; j < SLOT_MEMS; j++)
            for (int i = 0; i < 4; i++)
                if (s->mems[j].mem[i]) dnnl_memory_destroy(s->mems[j].mem[i]);
        if (s->stream) dnnl_stream_destroy(s->stream);
        free(s);
    }
    if (g->eng) dnnl_engine_destroy(g->eng);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

gemm_precision gemm_ctx_precision(const gemm_ctx *g) { return g->prec; }
int64_t gemm_ctx_few_row_products(gemm_ctx *g) { return (int64_t)atomic_load(&g->few_rows); }
int64_t gemm_ctx_few_row_groups(gemm_ctx *g) { return (int64_t)atomic_load(&g->few_groups); }
void gemm_ctx_few_rows(gemm_ctx *g, int mode) { g->few_mode = mode; }
void gemm_ctx_own_sgemm(gemm_ctx *g, int mode) {
    /* every CPU with AVX2 and FMA (AVX-512's wider tiles where it has
     * them), the large products too: none goes to oneDNN's fp32 */
    g->own_sgemm = mode != 0 && sgemm_own_cpu();
}
int gemm_ctx_uses_own_sgemm(const gemm_ctx *g) { return g->own_sgemm; }
void gemm_ctx_bf16_fma(gemm_ctx *g, int on) {
    const int v = on && g->prec == GEMM_BF16 && g->own_sgemm;
    if (v != g->bf16_fma && g->nent) die("internal: gemm_ctx_bf16_fma changed after the context's first product");
    g->bf16_fma = v;
}

void gemm_ctx_set_cache_limit(gemm_ctx *g, size_t n) { g->max_cached = n; }

void gemm_ctx_always_own_scale(gemm_ctx *g) { g->always_own_scale = 1; }
void gemm_ctx_software_conversion(gemm_ctx *g) { g->software_conversion = 1; }

void gemm_ctx_stats(gemm_ctx *g, int64_t *primitives, int64_t *emulated, int64_t *own_scaled) {
    pthread_mutex_lock(&g->lock);
    if (own_scaled) *own_scaled = g->own_scaled;
    if (primitives) *primitives = (int64_t)g->nent - g->emulated;
    if (emulated) *emulated = g->emulated;
    pthread_mutex_unlock(&g->lock);
}

static gemm_ctx *g_default;   /* the process-wide context (see the end of the file) */

/* ------------------------------------------------------------ the cache */
static uint64_t key_hash(const gemm_key *k) {
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* A primitive descriptor for the entry's shapes: with_attrs, alpha as an
 * output scale and beta as a sum post-op, into C as stored; without, A B
 * into a dense M x N scratch. The status is returned, not checked (the
 * caller knows which failures it can take). */
static dnnl_status_t make_pd(gemm_ctx *g, gemm_entry *e, int with_attrs, dnnl_primitive_desc_t *pd) {
    const gemm_key *k = &e->key;
    dnnl_data_type_t dt = k->prec == GEMM_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t da = {k->M, k->K}, db = {k->K, k->N}, dc = {k->M, k->N};
    dnnl_dims_t sa = {k->lda, 1}, sb = {k->ldb, 1}, sc = {with_attrs ? k->ldc : k->N, 1};
    if (k->ta) { sa[0] = 1; sa[1] = k->lda; }
    if (k->tb) { sb[0] = 1; sb[1] = k->ldb; }
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(&e->md[0], 2, da, dt, sa), "A descriptor");
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(&e->md[1], 2, db, dt, sb), "B descriptor");
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(&e->md[2], 2, dc, dnnl_f32, sc), "C descriptor");
    dnnl_matmul_desc_t d;
    DNNL_CHECK(dnnl_matmul_desc_init(&d, &e->md[0], &e->md[1], NULL, &e->md[2]), "matmul descriptor");
    dnnl_primitive_attr_t attr;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr), "attribute creation");
    DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad mode");
    float alpha, beta;
    memcpy(&alpha, &k->alpha, 4);
    memcpy(&beta, &k->beta, 4);
    /* dst = alpha * (A B) (output scale), then += beta * dst_old (sum post-op) */
    if (with_attrs && alpha != 1.0f)
        DNNL_CHECK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "output scale");
    if (with_attrs && beta != 0.0f) {
        dnnl_post_ops_t po;
        DNNL_CHECK(dnnl_post_ops_create(&po), "post-ops creation");
        DNNL_CHECK(dnnl_post_ops_append_sum(po, beta), "sum post-op");
        DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
        dnnl_post_ops_destroy(po);
    }
    dnnl_status_t st = dnnl_primitive_desc_create(pd, &d, attr, g->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

static const char *pd_impl(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    return impl ? impl : "?";
}
/* oneDNN's gemm-based matmul (`gemm:jit` and kin), not its brgemm kernels */
static int gemm_based(const_dnnl_primitive_desc_t pd) { return !strncmp(pd_impl(pd), "gemm:", 5); }

static void make_entry(gemm_ctx *g, gemm_entry *e) {
    const gemm_key *k = &e->key;
    double t0 = wdl_now();
    float alpha, beta;
    memcpy(&alpha, &k->alpha, 4);
    memcpy(&beta, &k->beta, 4);
    int attrs = alpha != 1.0f || beta != 0.0f;
    if (k->prec == GEMM_BF16 && g->bf16_fma) {   /* bf16-rounded inputs on fp32 FMAs: no kernel to make */
        e->prim = NULL;
        g->emulated++;
        return;
    }
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = make_pd(g, e, 1, &pd);
    if (st == dnnl_unimplemented && k->prec == GEMM_BF16) {
        e->prim = NULL;   /* no bf16 matmul for this CPU: emulate */
        g->emulated++;
        return;
    }
    if (st != dnnl_success) die("oneDNN: no matmul for %lldx%lldx%lld (status %d)", (long long)k->M,
                                (long long)k->N, (long long)k->K, (int)st);
    /* oneDNN's gemm-based matmul (chosen for small shapes, where the
     * brgemm kernels decline) applies an output scale or a sum post-op in a
     * scalar loop: measured 5-13x the cost of the product itself on the
     * attention's 64-row blocks. And 2.6's AMX brgemm kernels decline a C
     * with rows wider than N (attention's blocks of scores, written into
     * rows of T), leaving them to the gemm-based kernel, which took 1.3x
     * as long on those shapes. There the product runs without alpha and
     * beta into dense scratch, and gemm_run applies them in a vector loop
     * as it copies the result into C. */
    if ((attrs && g->always_own_scale) || ((attrs || k->ldc != k->N) && gemm_based(pd))) {
        dnnl_primitive_desc_destroy(pd);
        if (make_pd(g, e, 0, &pd) != dnnl_success)
            die("oneDNN: no matmul for %lldx%lldx%lld", (long long)k->M, (long long)k->N, (long long)k->K);
        if (!attrs && gemm_based(pd)) {   /* the same kernel: no gain from the copy */
            dnnl_primitive_desc_destroy(pd);
            DNNL_CHECK(make_pd(g, e, 1, &pd), "matmul descriptor");
        } else {
            e->own_scale = 1;
            g->own_scaled++;
        }
    }
    e->md[3] = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->pad_bytes = dnnl_memory_desc_get_size(&e->md[3]);
    DNNL_CHECK(dnnl_primitive_create(&e->prim, pd), "primitive creation");
    if (getenv("WDL_GEMM_VERBOSE"))
        fprintf(stderr, "gemm: %s %c%c M=%lld N=%lld K=%lld alpha=%g beta=%g: %.2f ms: %s%s\n",
                gemm_precision_name(k->prec), k->ta ? 'T' : 'N', k->tb ? 'T' : 'N', (long long)k->M,
                (long long)k->N, (long long)k->K, alpha, beta, 1e3 * (wdl_now() - t0), pd_impl(pd),
                e->own_scale ? " (alpha, beta applied by gemm_run)" : "");
    dnnl_primitive_desc_destroy(pd);
}

/* The entry for a key, created on first use. Entries are never removed
 * before gemm_ctx_free, so the pointer stays valid without the lock. With
 * the cache full, *transient is set and the caller frees the entry. */
static gemm_entry *lookup(gemm_ctx *g, const gemm_key *k, int *transient) {
    *transient = 0;
    uint64_t h = key_hash(k);
    pthread_mutex_lock(&g->lock);
    gemm_entry *e = g->tab[h & (g->ntab - 1)];
    while (e && memcmp(&e->key, k, sizeof *k)) e = e->next;
    if (!e && g->nent >= g->max_cached) {
        e = xcalloc(1, sizeof *e);
        e->key = *k;
        make_entry(g, e);
        if (!e->prim) g->emulated--;    /* not kept: not counted */
        pthread_mutex_unlock(&g->lock);
        *transient = 1;
        return e;
    }
    if (!e) {
        if (g->nent + 1 > g->ntab) {   /* keep chains short: double the table */
            size_t nn = g->ntab * 2;
            gemm_entry **nt = xcalloc(nn, sizeof *nt);
            for (size_t i = 0; i < g->ntab; i++)
                for (gemm_entry *x = g->tab[i], *nx; x; x = nx) {
                    nx = x->next;
                    size_t b = key_hash(&x->key) & (nn - 1);
                    x->next = nt[b];
                    nt[b] = x;
                }
            free(g->tab);
            g->tab = nt;
            g->ntab = nn;
        }
        e = xcalloc(1, sizeof *e);
        e->key = *k;
        make_entry(g, e);
        size_t b = h & (g->ntab - 1);
        e->next = g->tab[b];
        g->tab[b] = e;
        g->nent++;
    }
    pthread_mutex_unlock(&g->lock);
    return e;
}

/* ------------------------------------------------------------ scratch */
static int thread_index(void) {
    static atomic_int next;
    static _Thread_local int id = -1;
    if (id < 0) id = atomic_fetch_add(&next, 1);
    if (id >= GEMM_MAX_THREADS) die("gemm: more than %d calling threads", GEMM_MAX_THREADS);
    return id;
}

static gemm_slot *my_slot(gemm_ctx *g) {
    int t = thread_index();
    if (!g->slot[t]) {   /* only thread t ever writes slot[t] */
        gemm_slot *s = xcalloc(1, sizeof *s);
        pthread_mutex_lock(&g->lock);
        DNNL_CHECK(dnnl_stream_create(&s->stream, g->eng, dnnl_stream_default_flags), "stream creation");
        pthread_mutex_unlock(&g->lock);
        g->slot[t] = s;
    }
    return g->slot[t];
}

static void *slot_buf(gemm_slot *s, int i, size_t bytes) {
    if (bytes > s->cap[i]) {
        free(s->buf[i]);
        s->buf[i] = xaligned(bytes);
        s->cap[i] = bytes;
    }
    return s->buf[i];
}

/* One row of n floats to bf16. Where the CPU has AVX512-BF16 its
 * conversion instruction does it: round to nearest even and quiet NaNs as
 * st_f32_to_bf16 does, but fp32 denormals become (signed) zero. Products
 * barely notice: the bf16 dot products of AMX and AVX512-BF16 treat bf16
 * denormal inputs as zero anyway (test_gemm checks it), so the only inputs
 * that differ are those within half a bf16 ulp below the smallest normal,
 * |x| in [2^-126 (1 - 2^-9), 2^-126), which software rounds up to 2^-126.
 * CPUs without these instructions take the emulated path, which converts
 * in software. */
static void row_to_bf16_sw(uint16_t *y, const float *x, int64_t n) {
    for (int64_t c = 0; c < n; c++) y[c] = st_f32_to_bf16(x[c]);
}
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx512f,avx512bf16")))
static void row_to_bf16_hw(uint16_t *y, const float *x, int64_t n) {
    int64_t c = 0;
    for (; c + 32 <= n; c += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(x + c));
        _mm512_storeu_si512((void *)(y + c), (__m512i)v);
    }
    if (c < n) {   /* the tail, masked */
        __mmask16 lo = (__mmask16)(n - c >= 16 ? 0xffff : (1u << (n - c)) - 1);
        __mmask16 hi = (__mmask16)(n - c <= 16 ? 0 : (1u << (n - c - 16)) - 1);
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + c + 16), _mm512_maskz_loadu_ps(lo, x + c));
        _mm512_mask_storeu_epi16((void *)(y + c), (__mmask32)lo | ((__mmask32)hi << 16), (__m512i)v);
    }
}
static void (*row_to_bf16(void))(uint16_t *, const float *, int64_t) {
    static int hw = -1;
    if (hw < 0) {
        __builtin_cpu_init();
        hw = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    }
    return hw ? row_to_bf16_hw : row_to_bf16_sw;
}
#else
static void (*row_to_bf16(void))(uint16_t *, const float *, int64_t) { return row_to_bf16_sw; }
#endif

/* Conversions of a stored rows x cols matrix (leading dimension ld) into a
 * dense copy: one run when the rows are contiguous; parallel when large and
 * not already inside a parallel region (a small one stays out of OpenMP:
 * attention converts thousands of small blocks per step). */
#define CONVERT_PAR_MIN (1 << 16)
static void to_bf16(const gemm_ctx *g, uint16_t *dst, const float *src, int64_t rows, int64_t cols, int64_t ld) {
    void (*row)(uint16_t *, const float *, int64_t) = g->software_conversion ? row_to_bf16_sw : row_to_bf16();
    if (ld == cols) {   /* one run of rows * cols, cut into pieces for the threads */
        cols *= rows;
        rows = 1;
        if (cols > CONVERT_PAR_MIN && !omp_in_parallel()) {
            const int64_t piece = 1 << 14, np = (cols + piece - 1) / piece;
#pragma omp parallel for schedule(static)
            for (int64_t p = 0; p < np; p++)
                row(dst + p * piece, src + p * piece, p == np - 1 ? cols - p * piece : piece);
            return;
        }
    }
    if (rows * cols > CONVERT_PAR_MIN && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) row(dst + r * cols, src + r * ld, cols);
    } else
        for (int64_t r = 0; r < rows; r++) row(dst + r * cols, src + r * ld, cols);
}
static void to_bf16_rounded_f32(float *dst, const float *src, int64_t rows, int64_t cols, int64_t ld) {
#pragma omp parallel for schedule(static) if (rows * cols > CONVERT_PAR_MIN && !omp_in_parallel())
    for (int64_t r = 0; r < rows; r++) {
        const float *x = src + r * ld;
        float *y = dst + r * cols;
        for (int64_t c = 0; c < cols; c++) {
            uint32_t u = (uint32_t)st_f32_to_bf16(x[c]) << 16;
            memcpy(&y[c], &u, 4);
        }
    }
}

/* bf16 rows (stride ld) -> dense floats: exact. */
static void widen_bf16(float *dst, const uint16_t *src, int64_t rows, int64_t cols, int64_t ld) {
#pragma omp parallel for schedule(static) if (rows * cols > CONVERT_PAR_MIN && !omp_in_parallel())
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) dst[r * cols + c] = st_bf16_to_f32(src[r * ld + c]);
}

void gemm_ctx_set_readonly(gemm_ctx *g, int which, const float *base, size_t n) {
    if (which < 0 || which >= GEMM_READONLY_RANGES) die("internal: read-only range %d", which);
    g->ro[which].base = NULL;
    g->ro[which].n = 0;
    if (g->prec != GEMM_BF16 || !base || !n) return;
    if (n > g->ro[which].cap) {   /* the buffer is kept: a training step sets it again each time */
        free(g->ro[which].bf16);
        g->ro[which].bf16 = xaligned(n * sizeof(uint16_t));
        g->ro[which].cap = n;
    }
    to_bf16(g, g->ro[which].bf16, base, 1, (int64_t)n, (int64_t)n);   /* one run, in parallel pieces */
    g->ro[which].base = base;
    g->ro[which].n = n;
}

static void view_insert(gemm_ctx *g, const float *base, size_t n, const uint16_t *bf16, int mirror, int fp32) {
    if (g->nviews == g->capviews) {
        g->capviews = g->capviews ? 2 * g->capviews : 64;
        g->views = xrealloc(g->views, sizeof *g->views * g->capviews);
    }
    size_t i = g->nviews++;
    for (; i > 0 && g->views[i - 1].base > base; i--) g->views[i] = g->views[i - 1];
    g->views[i] = (struct gemm_view){base, n, bf16, mirror, fp32};
}
void gemm_ctx_add_bf16_view(gemm_ctx *g, const float *base, size_t n, const uint16_t *bf16) {
    if (g->prec != GEMM_BF16 && !gemm_ctx_fp32_views(g)) die("internal: a bf16 view needs bf16 products or sgemm_own");
    view_insert(g, base, n, bf16, 0, g->prec != GEMM_BF16);
}
int gemm_ctx_fp32_views(const gemm_ctx *g) { return g->prec == GEMM_FP32_AUTO && g->own_sgemm; }
void gemm_ctx_fp32_views_few_rows(gemm_ctx *g, int on) { g->views_few = on; }
/* An fp32 context's table holds shadows only: its products read the
 * floats, except the few-row kernel's, which reads the bf16 values. */
void gemm_ctx_add_bf16_shadow(gemm_ctx *g, const float *base, size_t n, const uint16_t *bf16) {
    if (!gemm_is_fp32(g->prec)) die("internal: a bf16 shadow is for fp32 products");
    view_insert(g, base, n, bf16, 0, 0);
}

static void drop_views(gemm_ctx *g, const float *base, size_t n, int mirrors_only) {
    if (!g) return;
    size_t j = 0;
    int fp32 = 0;
    for (size_t i = 0; i < g->nviews; i++)
        if (g->views[i].base < base || g->views[i].base >= base + n || (mirrors_only && !g->views[i].mirror)) {
            fp32 |= g->views[i].fp32;
            g->views[j++] = g->views[i];
        }
    g->nviews = j;
    if (!fp32) g->views_few = 0;   /* the decoding model's views are gone */
}
void gemm_ctx_drop_bf16_views(gemm_ctx *g, const float *base, size_t n) { drop_views(g, base, n, 0); }
void gemm_ctx_drop_mirrors(gemm_ctx *g, const float *base, size_t n) { drop_views(g, base, n, 1); }

void gemm_ctx_mirror(gemm_ctx *g, const float *src, size_t n, uint16_t *dst) {
    if (!g || g->prec != GEMM_BF16 || g->bf16_fma || !n) return;   /* (on FMAs the floats are read) */
    drop_views(g, src, n, 1);
    to_bf16(g, dst, src, 1, (int64_t)n, (int64_t)n);   /* one run, in parallel pieces */
    view_insert(g, src, n, dst, 1, 0);
}

/* The view holding X (by binary search), else NULL. */
static const struct gemm_view *view_of(const gemm_ctx *g, const float *X) {
    size_t lo = 0, hi = g->nviews;   /* the last view with base <= X is below hi */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->views[mid].base <= X) lo = mid + 1;
        else hi = mid;
    }
    if (!lo) return NULL;
    const struct gemm_view *v = &g->views[lo - 1];
    return X < v->base + v->n ? v : NULL;
}

/* Whether X lies in a view whose floats are not stored (a bf16 context's
 * view, not a mirror) */
static int bf16_only(const gemm_ctx *g, const float *X) {
    const struct gemm_view *v = g->nviews ? view_of(g, X) : NULL;
    return v && !v->mirror;
}

/* The bf16 values of a stored rows x cols operand (leading dimension ld)
 * when it lies in an fp32 context's view (its floats not stored), else
 * NULL. */
static const uint16_t *fp32_view_of(const gemm_ctx *g, const float *X, int64_t rows, int64_t cols, int64_t ld) {
    const struct gemm_view *v = g->nviews && rows > 0 && cols > 0 ? view_of(g, X) : NULL;
    if (!v || !v->fp32) return NULL;
    size_t off = (size_t)(X - v->base), extent = (size_t)((rows - 1) * ld + cols);
    if (off + extent > v->n) die("internal: a product reads past a bf16-only tensor");
    return v->bf16 + off;
}

/* The bf16 copy of a stored rows x cols operand (leading dimension ld) when
 * it lies wholly inside a view or a read-only range, else NULL. */
static const uint16_t *readonly_bf16(const gemm_ctx *g, const float *X, int64_t rows, int64_t cols, int64_t ld) {
    size_t extent = (size_t)((rows - 1) * ld + cols);
    const struct gemm_view *v = view_of(g, X);
    if (v) {
        size_t off = (size_t)(X - v->base);
        if (off + extent > v->n) die("internal: a product reads past a bf16-only tensor");
        return v->bf16 + off;
    }
    for (int i = 0; i < GEMM_READONLY_RANGES; i++) {
        if (!g->ro[i].n || X < g->ro[i].base || X >= g->ro[i].base + g->ro[i].n) continue;
        size_t off = (size_t)(X - g->ro[i].base);
        return off + extent <= g->ro[i].n ? g->ro[i].bf16 + off : NULL;
    }
    return NULL;
}

/* The bf16 copy of a stored operand: converted into the slot's scratch
 * buffer `which` (0 for A, 1 for B), or, while the thread holds its inputs,
 * looked up among (or added to) the copies kept since gemm_hold_inputs. */
static const uint16_t *converted(const gemm_ctx *g, gemm_slot *s, int which, const float *X, int64_t rows,
                                 int64_t cols, int64_t ld, const void *keep) {
    size_t bytes = sizeof(uint16_t) * (size_t)(rows * cols);
    if (!s->hold) {
        uint16_t *y = slot_buf(s, which, bytes);
        to_bf16(g, y, X, rows, cols, ld);
        return y;
    }
    for (int i = 0; i < SLOT_HELD; i++)
        if (s->held[i].src == X && s->held[i].rows == rows && s->held[i].cols == cols && s->held[i].ld == ld)
            return s->held[i].buf;
    /* round robin, passing over the copy this call's other operand uses
     * (keep), which may be the oldest */
    int i = s->next_held;
    if (keep && s->held[i].buf == keep) i = (i + 1) % SLOT_HELD;
    s->next_held = (i + 1) % SLOT_HELD;
    if (bytes > s->held[i].cap) {
        free(s->held[i].buf);
        s->held[i].buf = xaligned(bytes);
        s->held[i].cap = bytes;
    }
    s->held[i].src = X;
    s->held[i].rows = rows;
    s->held[i].cols = cols;
    s->held[i].ld = ld;
    to_bf16(g, s->held[i].buf, X, rows, cols, ld);
    return s->held[i].buf;
}

void gemm_ctx_hold_inputs(gemm_ctx *g, int on) {
    if (!g || g->prec != GEMM_BF16) return;
    gemm_slot *s = my_slot(g);
    /* scopes nest (a kernel holds its own two products inside a caller's
     * scope); the copies are forgotten when the outermost one opens or
     * closes */
    if (on) s->hold++;
    else if (s->hold > 0) s->hold--;
    if ((on && s->hold == 1) || (!on && s->hold == 0)) {
        s->next_held = 0;
        for (int i = 0; i < SLOT_HELD; i++) s->held[i].src = NULL;
    }
}

void gemm_hold_inputs(int on) { gemm_ctx_hold_inputs(g_default, on); }
void gemm_mirror(const float *src, size_t n, uint16_t *dst) { gemm_ctx_mirror(g_default, src, n, dst); }
void gemm_drop_mirrors(const float *base, size_t n) { gemm_ctx_drop_mirrors(g_default, base, n); }
int gemm_mirrors(void) { return g_default && g_default->prec == GEMM_BF16 && !g_default->bf16_fma; }
void gemm_default_bf16_fma(int on) {
    if (g_default) gemm_ctx_bf16_fma(g_default, on);
}

void gemm_set_readonly(int which, const float *base, size_t n) {
    if (g_default) gemm_ctx_set_readonly(g_default, which, base, n);
}

/* ------------------------------------------------------------ few rows against bf16 weights */
/* Decoding multiplies a few rows (one per sequence) by every weight matrix,
 * so it is bound by reading the weights. oneDNN's AMX kernels first copy
 * all of B into their tile layout, and read bf16 weights at about half the
 * bandwidth its fp32 kernels reach on twice the bytes; AVX512-BF16's dot
 * product, the obvious replacement, does half the multiply-adds per cycle
 * of two FMA ports and ran no faster. Here each row of B (a weight row:
 * A B^T is a linear layer's forward and the LM head) is read once from its
 * bf16 copy, widened to fp32 in registers (a bf16 is the top half of an
 * fp32) and multiplied into the fp32 rows of bf16-rounded A by FMAs. The
 * products are exact, so this is the AMX kernels' arithmetic (exact bf16
 * products, fp32 accumulation) in another order, except that bf16
 * denormal inputs count as themselves, not as zero. Each element of C is
 * one thread's fixed sequence, whatever the thread count. On CPUs with
 * AVX2 but not AVX-512 (Zen 3) the same is done by an AVX2 kernel: there
 * oneDNN's fp32 kernels read the fp32 weights at about 11 GB/s, where two
 * threads can read 20-22, and its bf16 is emulated. */
/* rows of B per pass, streaming side by side: of 1, 2 and 4, 4 decoded
 * fastest (4 prompts: bf16 49 against 45 tokens/s for 2, fp32 40 against 37) */
#define FEW_NB 4
/* rows of A per pass: 16 accumulators, 8 widened weights, a row's two
 * halves: 26 of 32 registers */
#define FEW_MB 4
/* Each row of B is prefetched this many elements (8 KB) ahead: the loads,
 * not the FMAs, were the wait. Greedy decoding of the Qwen3-0.6B shape
 * measured 2 KB ahead 20-30% slower than 8 KB; 16 and 64 KB no better. */
#define FEW_PF 4096
/* Which products take it: at most FEW_ROWS_BF16 rows of A in bf16 and
 * FEW_ROWS_FP32 in fp32, and widened A at most FEW_A_MAX floats (48 KB:
 * 4 rows of the 0.6B shape's 3072-wide input, read from L2 on every pass
 * over B's rows). Greedy decoding of the Qwen3-0.6B shape, tokens/s of
 * wdl-eval with and without the kernel: bf16 at 4 rows 37 vs 33, at 8 rows
 * 48-52 vs 52-62, at 16 rows 47-52 vs 81-85 (from 8 rows on the FMAs, not
 * the memory, set the pace, and AMX wins); fp32, where oneDNN reads twice
 * the bytes, at 8 rows 40-47 vs 31-34, at 16 rows 42-45 vs 42-45. */
#define FEW_ROWS_BF16 4
#define FEW_ROWS_FP32 8
#define FEW_A_MAX 12288
/* On the AVX2 kernel (CPUs without AVX-512, where oneDNN's fp32 reads the
 * fp32 weights and its bf16 is emulated) at most FEW_ROWS_WIDE rows and
 * FEW_A_MAX_WIDE floats of A (192 KB: 16 rows of the 0.6B shape's 3072),
 * in either precision. Measured on Zen 3 (2 threads; time per product
 * against 24 copies of the 0.6B shape's weights, 2 of its head), oneDNN's
 * fp32 over the kernel's: at 16 rows 1.40-1.49 for 3072 x 1024 and
 * 2048 x 1024, 1.63 for the head (151936 x 1024), 1.01 for 1024 x 3072;
 * at 12 rows 1.15-1.76; at 8 rows 1.47-2.57.
 * The AVX-512 kernel takes as many where the rows it leaves would run on
 * sgemm_own (few_rows_wide: fp32 there, or bf16 on fp32 FMAs), which packs
 * each weight into fp32 panels again for every product: on the Xeon
 * without AMX, wdl-eval of 16 prompts x 32 tokens of the 0.6B shape took
 * 8.8-9.8 s against 12.1-14.7 s in either precision (four alternating
 * rounds; packing had been 29% of a longer run's profile). */
#define FEW_ROWS_WIDE 16
#define FEW_A_MAX_WIDE 49152
/* The order of each element of C's sum, on either kernel below: 16 lanes,
 * lane p adding by FMA, block after block of 32 k, first the product of
 * the block's elements 8 (p / 4) + p % 4 and then that of element
 * 8 (p / 4) + 4 + p % 4 (the order in which widening a block of bf16
 * unpacks it); the tail of K is zero. Then lanes p and p + 8 are added,
 * p and p + 4 of those, p and p + 2, and the last two. The AVX-512 kernel
 * holds the 16 lanes in one register, the AVX2 kernel in two (lanes 0-7
 * from a block's first 16 elements, 8-15 from its last 16): the same
 * bytes on either CPU (tests/test_gemm.c checks both against a scalar
 * model of this order). A's rows are stored in the lanes' order
 * (few_permute_a, few_widen_a, or for the AVX2 kernel few_order_a), kp
 * floats each. */
/* A's rows, fp32 (af) or else bf16 (ab), stride lda, in the lanes' order */
static void few_order_a(float *ap, const float *af, const uint16_t *ab, int64_t lda, int64_t M, int64_t K,
                        int64_t kp) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < kp; k += 32)
            for (int64_t p = 0; p < 32; p++) {   /* lane p % 16, its first (p < 16) or second product */
                const int64_t i = k + 8 * (p % 16 / 4) + 4 * (p / 16) + p % 4;
                ap[m * kp + k + p] = i >= K ? 0.0f : af ? af[m * lda + i] : st_bf16_to_f32(ab[m * lda + i]);
            }
}

/* sum[m][j]: rows m < mb of a (widened, rows of kp) against the rows
 * b[j < nn] of B, one of these per kernel */
typedef void few_sums_fn(int mb, int64_t K, int64_t kp, const float *a, const uint16_t *const b[FEW_NB], int64_t nn,
                         float sum[FEW_MB][FEW_NB]);

#if defined(__x86_64__) && defined(__GNUC__)
/* lanes 0-7 and 8-15 summed in the order above (written out rather than
 * _mm512_reduce_add_ps, whose order is the compiler's) */
__attribute__((target("avx2"), always_inline))
static inline float few_sum16(__m256 l0, __m256 l8) {
    const __m256 t = _mm256_add_ps(l8, l0);
    const __m128 u = _mm_add_ps(_mm256_extractf128_ps(t, 1), _mm256_castps256_ps128(t));
    const __m128 v = _mm_add_ps(u, _mm_movehl_ps(u, u));
    return _mm_cvtss_f32(v) + _mm_cvtss_f32(_mm_shuffle_ps(v, v, 1));
}

/* A's rows (bf16, stride lda) widened into 32-float blocks in the lanes'
 * order: unpacking the low (high) four 16-bit words of each 128-bit lane
 * against zero gives fp32 lanes 4l + i = word 8l + i (8l + 4 + i). */
__attribute__((target("avx512f,avx512bw")))
static void few_widen_a(float *ap, const uint16_t *a, int64_t lda, int64_t M, int64_t K, int64_t kp) {
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < kp; k += 32) {
            __mmask32 t = K - k >= 32 ? ~(__mmask32)0 : (__mmask32)((1ull << (K - k)) - 1);
            __m512i x = _mm512_maskz_loadu_epi16(t, a + m * lda + k);
            _mm512_storeu_si512((void *)(ap + m * kp + k), _mm512_unpacklo_epi16(zero, x));
            _mm512_storeu_si512((void *)(ap + m * kp + k + 16), _mm512_unpackhi_epi16(zero, x));
        }
}

/* The same order from fp32 rows (stride lda), unrounded: the fp32 path. */
__attribute__((target("avx512f,avx512bw")))
static void few_permute_a(float *ap, const float *a, int64_t lda, int64_t M, int64_t K, int64_t kp) {
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < kp; k += 32) {
            int64_t r = K - k;   /* elements left in this block */
            __mmask16 t0 = r >= 16 ? 0xffff : (__mmask16)((1u << r) - 1);
            __mmask16 t1 = r >= 32 ? 0xffff : r <= 16 ? 0 : (__mmask16)((1u << (r - 16)) - 1);
            const float *x = a + m * lda + k;
            __m512 x0 = _mm512_maskz_loadu_ps(t0, x), x1 = _mm512_maskz_loadu_ps(t1, x + 16);
            _mm512_storeu_ps(ap + m * kp + k, _mm512_permutex2var_ps(x0, lo, x1));
            _mm512_storeu_ps(ap + m * kp + k + 16, _mm512_permutex2var_ps(x0, hi, x1));
        }
}

/* One row of A (x_lo, x_hi: its block's two halves) into its four
 * accumulators, against the block's widened rows of B */
#define FEW_ROW(r, xl, xh)                                   \
    do {                                                     \
        const __m512 x0_ = (xl), x1_ = (xh);                 \
        c##r##0 = _mm512_fmadd_ps(x0_, lo0, c##r##0);        \
        c##r##1 = _mm512_fmadd_ps(x0_, lo1, c##r##1);        \
        c##r##2 = _mm512_fmadd_ps(x0_, lo2, c##r##2);        \
        c##r##3 = _mm512_fmadd_ps(x0_, lo3, c##r##3);        \
        c##r##0 = _mm512_fmadd_ps(x1_, hi0, c##r##0);        \
        c##r##1 = _mm512_fmadd_ps(x1_, hi1, c##r##1);        \
        c##r##2 = _mm512_fmadd_ps(x1_, hi2, c##r##2);        \
        c##r##3 = _mm512_fmadd_ps(x1_, hi3, c##r##3);        \
    } while (0)
#define FEW_HSUM(v) \
    few_sum16(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))

/* The tile: mb rows of A (at a0..a3; mb is a constant where this is
 * inlined, so the rows past it are not computed) against FEW_NB = 4 rows
 * of B. Named accumulators, not an array: GCC kept an array's 16
 * registers in memory too, storing each of them on every pass of the loop
 * (16 stores per 32 FMAs), which held 16-row decoding's products at 100
 * GFLOP/s where B came from cache. */
__attribute__((target("avx512f,avx512bw"), always_inline))
static inline void few_tile(const int mb, int64_t K, int64_t kp, const float *ap, const uint16_t *const b[FEW_NB],
                            float sum[FEW_MB][FEW_NB]) {
    const __m512i zero = _mm512_setzero_si512();
    const float *a0 = ap, *a1 = ap + (mb > 1 ? 1 : 0) * kp, *a2 = ap + (mb > 2 ? 2 : mb - 1) * kp,
                *a3 = ap + (mb > 3 ? 3 : mb - 1) * kp;
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00,
           c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    const uint16_t *b0 = b[0], *b1 = b[1], *b2 = b[2], *b3 = b[3];
    for (int64_t k = 0; k < kp; k += 32) {
        /* past the end: harmless */
        _mm_prefetch((const char *)(b0 + k + FEW_PF), _MM_HINT_T0);
        _mm_prefetch((const char *)(b1 + k + FEW_PF), _MM_HINT_T0);
        _mm_prefetch((const char *)(b2 + k + FEW_PF), _MM_HINT_T0);
        _mm_prefetch((const char *)(b3 + k + FEW_PF), _MM_HINT_T0);
        __m512i w0, w1, w2, w3;
        if (K - k >= 32) {   /* plain loads: with masked ones throughout, 16 rows ran 3-8% slower */
            w0 = _mm512_loadu_si512(b0 + k); w1 = _mm512_loadu_si512(b1 + k);
            w2 = _mm512_loadu_si512(b2 + k); w3 = _mm512_loadu_si512(b3 + k);
        } else {
            const __mmask32 t = (__mmask32)((1ull << (K - k)) - 1);
            w0 = _mm512_maskz_loadu_epi16(t, b0 + k); w1 = _mm512_maskz_loadu_epi16(t, b1 + k);
            w2 = _mm512_maskz_loadu_epi16(t, b2 + k); w3 = _mm512_maskz_loadu_epi16(t, b3 + k);
        }
        const __m512 lo0 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, w0)),
                     hi0 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, w0)),
                     lo1 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, w1)),
                     hi1 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, w1)),
                     lo2 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, w2)),
                     hi2 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, w2)),
                     lo3 = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, w3)),
                     hi3 = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, w3));
        FEW_ROW(0, _mm512_loadu_ps(a0 + k), _mm512_loadu_ps(a0 + k + 16));
        if (mb > 1) FEW_ROW(1, _mm512_loadu_ps(a1 + k), _mm512_loadu_ps(a1 + k + 16));
        if (mb > 2) FEW_ROW(2, _mm512_loadu_ps(a2 + k), _mm512_loadu_ps(a2 + k + 16));
        if (mb > 3) FEW_ROW(3, _mm512_loadu_ps(a3 + k), _mm512_loadu_ps(a3 + k + 16));
    }
    const __m512 c[FEW_MB][FEW_NB] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                                      {c30, c31, c32, c33}};
    for (int m = 0; m < mb; m++)
        for (int j = 0; j < FEW_NB; j++) sum[m][j] = FEW_HSUM(c[m][j]);
}

__attribute__((target("avx512f,avx512bw")))
static void few_sums_avx512(int mb, int64_t K, int64_t kp, const float *a, const uint16_t *const b[FEW_NB],
                            int64_t nn, float sum[FEW_MB][FEW_NB]) {
    switch (mb) {   /* constant row counts: the accumulators stay in registers */
    case 1: few_tile(1, K, kp, a, b, sum); break;
    case 2: few_tile(2, K, kp, a, b, sum); break;
    case 3: few_tile(3, K, kp, a, b, sum); break;
    default: few_tile(4, K, kp, a, b, sum); break;
    }
}

/* The AVX2 kernel: 16 registers, so a tile is FEW_MB rows of A against
 * FEW2_NB rows of B, two accumulators each; a block of FEW_NB rows of B
 * (at most 24 KB of bf16 in the 0.6B shape) is read from memory by its
 * first tile and from cache by the others. 4 x 1 and 2 x 2 decoded alike
 * (Zen 3, 4 prompts of the 0.6B shape: 5.0-5.2 s against 5.1-7.7 s); per
 * product (16 rows against 24 copies of 3072 x 1024, alternating rounds)
 * 4 x 1 took 1.0-1.4 ms, 2 x 2 1.1-1.5 and 1 x 4 1.5-2.0. The
 * last block of K, when shorter than 32, is read through a zero-padded
 * copy (no 16-bit masked loads in AVX2). */
#define FEW2_NB 1   /* and FEW_MB rows of A */
__attribute__((target("avx2,fma"), always_inline))
static inline void few_tile_avx2(const int mb, int64_t K, int64_t kp, const float *ap, const uint16_t *const *b,
                                 float sum[FEW_MB][FEW_NB], int j0) {
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc[FEW_MB][FEW2_NB][2];
    uint16_t tail[FEW2_NB][32] __attribute__((aligned(32)));
    for (int m = 0; m < mb; m++)
        for (int j = 0; j < FEW2_NB; j++) acc[m][j][0] = acc[m][j][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kp; k += 32) {
        const uint16_t *bk[FEW2_NB];
        for (int j = 0; j < FEW2_NB; j++) {
            if (K - k >= 32) {
                bk[j] = b[j0 + j] + k;
                _mm_prefetch((const char *)(bk[j] + FEW_PF), _MM_HINT_T0);
            } else {
                memset(tail[j], 0, sizeof tail[j]);
                memcpy(tail[j], b[j0 + j] + k, sizeof(uint16_t) * (size_t)(K - k));
                bk[j] = tail[j];
            }
        }
        for (int h = 0; h < 2; h++) {   /* lanes 8h .. 8h + 7 */
            __m256 lo[FEW2_NB], hi[FEW2_NB];
            for (int j = 0; j < FEW2_NB; j++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(bk[j] + 16 * h));
                lo[j] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, w));
                hi[j] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, w));
            }
            for (int m = 0; m < mb; m++) {
                __m256 x = _mm256_loadu_ps(ap + m * kp + k + 8 * h);
                for (int j = 0; j < FEW2_NB; j++) acc[m][j][h] = _mm256_fmadd_ps(x, lo[j], acc[m][j][h]);
                x = _mm256_loadu_ps(ap + m * kp + k + 16 + 8 * h);
                for (int j = 0; j < FEW2_NB; j++) acc[m][j][h] = _mm256_fmadd_ps(x, hi[j], acc[m][j][h]);
            }
        }
    }
    for (int m = 0; m < mb; m++)
        for (int j = 0; j < FEW2_NB; j++) sum[m][j0 + j] = few_sum16(acc[m][j][0], acc[m][j][1]);
}

__attribute__((target("avx2,fma")))
static void few_sums_avx2(int mb, int64_t K, int64_t kp, const float *a, const uint16_t *const b[FEW_NB], int64_t nn,
                          float sum[FEW_MB][FEW_NB]) {
    for (int j0 = 0; j0 < nn; j0 += FEW2_NB)
        switch (mb) {
        case 1: few_tile_avx2(1, K, kp, a, b, sum, j0); break;
        case 2: few_tile_avx2(2, K, kp, a, b, sum, j0); break;
        case 3: few_tile_avx2(3, K, kp, a, b, sum, j0); break;
        default: few_tile_avx2(4, K, kp, a, b, sum, j0); break;
        }
}

/* 1: AVX-512 (F and BW), 2: AVX2 and FMA, 0: neither */
static int few_rows_hw(void) {
    static int hw = -1;
    if (hw < 0) {
        __builtin_cpu_init();
        hw = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") ? 1
             : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")    ? 2
                                                                                   : 0;
    }
    return hw;
}
#else
static void few_widen_a(float *ap, const uint16_t *a, int64_t lda, int64_t M, int64_t K, int64_t kp) {
    die("internal: no few-row bf16 kernel on this platform");
}
static void few_permute_a(float *ap, const float *a, int64_t lda, int64_t M, int64_t K, int64_t kp) {
    die("internal: no few-row bf16 kernel on this platform");
}
static void few_sums_avx512(int mb, int64_t K, int64_t kp, const float *a, const uint16_t *const b[FEW_NB],
                            int64_t nn, float sum[FEW_MB][FEW_NB]) {
    die("internal: no few-row bf16 kernel on this platform");
}
#define few_sums_avx2 few_sums_avx512   /* neither is built here */
static int few_rows_hw(void) { return 0; }
#endif

/* One product for the few-row kernel: C = alpha A B^T + beta C, B [N,K]
 * bf16 (ldb), A shared by the products run together. */
typedef struct { const uint16_t *B; int64_t N, ldb; float alpha, beta; float *C; int64_t ldc; } few_job;

/* n such products of A [M,K] widened (rows of kp) on the kernel `sums`, in
 * one parallel region: their blocks of FEW_NB rows of B one after another,
 * shared out over the team in chunks as threads come (par_chunk), each
 * element of C one thread's fixed sequence (so the bytes of running them
 * one by one, whichever thread runs it) */
static void few_rows_run(few_sums_fn *sums, int n, const few_job *jobs, int64_t M, int64_t K, int64_t kp,
                         const float *ap) {
    int64_t first[GEMM_N_MAX + 1];   /* product i's blocks: first[i] .. first[i + 1] - 1 */
    first[0] = 0;
    for (int i = 0; i < n; i++) first[i + 1] = first[i] + (jobs[i].N + FEW_NB - 1) / FEW_NB;
    const int64_t chunk = par_chunk(first[n], omp_get_max_threads());
#pragma omp parallel for schedule(dynamic, chunk) if (!omp_in_parallel())
    for (int64_t t = 0; t < first[n]; t++) {
        int i = 0;
        while (t >= first[i + 1]) i++;
        const few_job *q = &jobs[i];
        const int64_t n0 = (t - first[i]) * FEW_NB, nn = q->N - n0 < FEW_NB ? q->N - n0 : FEW_NB;
        const uint16_t *b[FEW_NB];   /* past N: the last row again, its sums unused */
        for (int j = 0; j < FEW_NB; j++) b[j] = q->B + (n0 + (j < nn ? j : nn - 1)) * q->ldb;
        for (int64_t m0 = 0; m0 < M; m0 += FEW_MB) {
            float sum[FEW_MB][FEW_NB];
            sums(M - m0 < FEW_MB ? (int)(M - m0) : FEW_MB, K, kp, ap + m0 * kp, b, nn, sum);
            /* beta tested outside the loop: as one expression, C was loaded
             * for beta = 0 too, a miss per row of the head's logits */
            for (int64_t m = 0; m < FEW_MB && m0 + m < M; m++) {
                float *c = &q->C[(m0 + m) * q->ldc + n0];
                if (q->beta == 0.0f)
                    for (int64_t j = 0; j < nn; j++) c[j] = q->alpha * sum[m][j];
                else
                    for (int64_t j = 0; j < nn; j++) c[j] = q->alpha * sum[m][j] + q->beta * c[j];
            }
        }
    }
}

/* the AVX-512 kernel (else AVX2's) */
static int few_rows_avx512(const gemm_ctx *g) { return few_rows_hw() == 1 && g->few_mode == 1; }
/* whether rows beyond FEW_ROWS_BF16 or FEW_ROWS_FP32 would run on sgemm_own */
static int few_rows_wide(const gemm_ctx *g) {
    return (g->prec == GEMM_FP32_AUTO && g->own_sgemm) || (g->prec == GEMM_BF16 && g->bf16_fma);
}
/* At most this many rows of A take the kernel, and M * kp floats at most
 * *amax (0 rows: none) */
static int64_t few_rows_limit(const gemm_ctx *g, int64_t *amax) {
    const int wide = !few_rows_avx512(g) || few_rows_wide(g);
    *amax = wide ? FEW_A_MAX_WIDE : FEW_A_MAX;
    if (!few_rows_hw() || g->few_mode == 0 || (g->prec != GEMM_BF16 && !gemm_is_fp32(g->prec))) return 0;
    return wide ? FEW_ROWS_WIDE : g->prec == GEMM_BF16 ? FEW_ROWS_BF16 : FEW_ROWS_FP32;
}
int64_t gemm_ctx_few_row_limit(const gemm_ctx *g) {
    int64_t amax;
    return few_rows_limit(g, &amax);
}

/* Whether the few-row kernel takes this product, A B^T of a few rows
 * (few_rows_limit) against large weights held in bf16 (bf16: a read-only
 * range or a view; fp32: a shadow): B's bf16 values if so, else NULL. */
static const uint16_t *few_rows_b16(gemm_ctx *g, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                                    const float *B, int64_t ldb) {
    const int64_t kp = (K + 31) / 32 * 32;
    int64_t amax;
    const int64_t rows = few_rows_limit(g, &amax);
    if (ta || !tb || M <= 0 || alpha == 0.0f || M > rows || M * kp > amax || N * K < GEMM_FEW_ROWS_MIN_NK)
        return NULL;
    /* in fp32 contexts, shadows (a weight of an fp32 view goes to sgemm_own,
     * as its floats would, unless the views are read as shadows) */
    if (!g->views_few && fp32_view_of(g, B, N, K, ldb)) return NULL;
    return readonly_bf16(g, B, N, K, ldb);
}

/* A's M rows (stride lda) in the kernel's order, kp floats each, in this
 * thread's slot: bf16's rounded (read where they are held in bf16, else
 * from a dense rounded copy), fp32's as they are */
static float *few_rows_a(gemm_ctx *g, const float *A, int64_t lda, int64_t M, int64_t K, int64_t kp, int avx512) {
    gemm_slot *s = my_slot(g);
    float *ap = slot_buf(s, 3, sizeof(float) * (size_t)(M * kp));
    if (g->prec != GEMM_BF16) {
        if (avx512) few_permute_a(ap, A, lda, M, K, kp);
        else few_order_a(ap, A, NULL, lda, M, K, kp);
    } else {
        const uint16_t *a16 = readonly_bf16(g, A, M, K, lda);   /* held in bf16: read in place, stride lda */
        if (!a16) {   /* a dense copy */
            a16 = converted(g, s, 0, A, M, K, lda, NULL);
            lda = K;
        }
        if (avx512) few_widen_a(ap, a16, lda, M, K, kp);
        else few_order_a(ap, NULL, a16, lda, M, K, kp);
    }
    return ap;
}

/* The few-row kernel, if this product is one for it (few_rows_b16).
 * Returns whether it ran. */
static int few_rows_try(gemm_ctx *g, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const uint16_t *b16 = few_rows_b16(g, ta, tb, M, N, K, alpha, B, ldb);
    if (!b16) return 0;
    const int64_t kp = (K + 31) / 32 * 32;
    const int avx512 = few_rows_avx512(g);
    const float *ap = few_rows_a(g, A, lda, M, K, kp, avx512);
    const few_job job = {b16, N, ldb, alpha, beta, C, ldc};
    few_rows_run(avx512 ? few_sums_avx512 : few_sums_avx2, 1, &job, M, K, kp, ap);
    atomic_fetch_add(&g->few_rows, 1);
    return 1;
}

/* ------------------------------------------------------------ the product */
/* OpenBLAS's sgemm gives other bytes at 1 and 2 threads: measured with
 * 0.3.21's Zen/Haswell kernels on every shape tried (training's, attention's,
 * 64 x 32 x 256 alike) and with its generic ones; a call made inside an
 * OpenMP team runs on one thread, and a product cut into parts gives other
 * bytes again. So the programs' products that go to OpenBLAS
 * (GEMM_FP32_AUTO's, and bf16's where it is emulated) run as a grid of
 * blocks of C whose cut depends on the shape alone, each block one
 * single-threaded call, the blocks shared out over the team: the same
 * bytes at any thread count, in or out of a team, one process or mpirun's
 * ranks. Products of at most 2^18 multiply-adds are one call, which
 * OpenBLAS runs on one thread anyway (its GEMM_MULTITHREAD_THRESHOLD of 4 x
 * 65,536). The grid: as many blocks as SGEMM_BLOCKS allows with sides of at
 * least SGEMM_MIN_SIDE (a multiple of 16), rows x columns powers of two,
 * and of those the cut that packs the least: each block packs its own
 * rows of A and columns of B, so r x c blocks pack r N K + c M K elements
 * (Zen 3, the Qwen3-0.6B's scoring products: 16 row or column blocks ran
 * at 131-156 GFLOP/s against one call's 152-174; the cheapest 16-block
 * grid 152-165). When it is one block, the call still runs inside a team
 * so that OpenBLAS keeps to one thread. GEMM_FP32 (fp32-openblas, the
 * exactness reference) stays one cblas_sgemm call. */
#define SGEMM_BLOCKS 16
#define SGEMM_MIN_SIDE 64
static void sgemm_fixed_blocks(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    if ((double)M * N * K <= GEMM_FP32_ONE_CALL_MAX) {
        cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int64_t bm = M, bn = N, best_n = 0;
    double best_cost = 0;
    for (int64_t r = 1; r <= SGEMM_BLOCKS; r *= 2)
        for (int64_t c = 1; r * c <= SGEMM_BLOCKS; c *= 2) {
            const int64_t sm = amx_up((M + r - 1) / r, 16), sn = amx_up((N + c - 1) / c, 16);
            if ((r > 1 && sm < SGEMM_MIN_SIDE) || (c > 1 && sn < SGEMM_MIN_SIDE)) continue;
            const int64_t n = ((M + sm - 1) / sm) * ((N + sn - 1) / sn);
            const double cost = (double)r * N + (double)c * M;
            if (n > best_n || (n == best_n && cost < best_cost)) best_n = n, best_cost = cost, bm = sm, bn = sn;
        }
    const int64_t nr = (M + bm - 1) / bm, nc = (N + bn - 1) / bn;
#pragma omp parallel for schedule(dynamic, 1) if (!omp_in_parallel())
    for (int64_t b = 0; b < nr * nc; b++) {
        const int64_t i = b / nc * bm, j = b % nc * bn, m = M - i < bm ? M - i : bm, n = N - j < bn ? N - j : bn;
        cblas_sgemm(CblasRowMajor, TA, TB, m, n, K, alpha, ta ? A + i : A + i * lda, lda, tb ? B + j * ldb : B + j,
                    ldb, beta, C + i * ldc + j, ldc);
    }
}

/* ------------------------------------------------------------ weights kept packed */
void gemm_ctx_keep_packed(gemm_ctx *g, const float *base, size_t n) {
    for (size_t i = 0; i < g->packed.ne; i++) free(g->packed.e[i].bp);
    g->packed.ne = 0;
    g->packed.floats = 0;
    g->packed.base = g->prec == GEMM_FP32_AUTO && g->own_sgemm && n ? base : NULL;
    g->packed.n = g->packed.base ? n : 0;
}
void gemm_ctx_drop_packed(gemm_ctx *g, const float *base, size_t n) {
    if (g->packed.base && g->packed.base < base + n && base < g->packed.base + g->packed.n)
        gemm_ctx_keep_packed(g, NULL, 0);
}
void gemm_keep_packed(const float *base, size_t n) {
    if (g_default) gemm_ctx_keep_packed(g_default, base, n);
}
void gemm_drop_packed(const float *base, size_t n) {
    if (g_default) gemm_ctx_drop_packed(g_default, base, n);
}

/* B^T's packed panels, if B [N, K] lies in the kept range and is small
 * enough: found, or packed now (under the lock: products may run on
 * several threads at once) */
static const float *packed_of(gemm_ctx *g, const float *B, int64_t N, int64_t K, int64_t ldb) {
    const float *base = g->packed.base;
    if (!base || N * K >= GEMM_FEW_ROWS_MIN_NK || B < base || B + (N - 1) * ldb + K > base + g->packed.n)
        return NULL;
    float *bp = NULL;
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->packed.ne && !bp; i++) {
        const struct gemm_packed *e = &g->packed.e[i];
        if (e->b == B && e->N == N && e->K == K && e->ldb == ldb) bp = e->bp;
    }
    const size_t need = sgemm_packed_floats(N, K);
    if (!bp && g->packed.floats + need <= GEMM_PACKED_MAX_FLOATS) {
        if (g->packed.ne == g->packed.cap) {
            g->packed.cap = g->packed.cap ? 2 * g->packed.cap : 64;
            g->packed.e = xrealloc(g->packed.e, sizeof *g->packed.e * g->packed.cap);
        }
        bp = xaligned(sizeof(float) * need);
        const uint16_t *b16 = fp32_view_of(g, B, N, K, ldb);
        if (b16) sgemm_pack_bt16(b16, ldb, N, K, bp);
        else sgemm_pack_bt(B, ldb, N, K, bp);
        g->packed.e[g->packed.ne++] = (struct gemm_packed){B, N, K, ldb, bp};
        g->packed.floats += need;
    }
    pthread_mutex_unlock(&g->lock);
    return bp;
}

static float *own_scratch(void *arg, int which, size_t floats) {
    return slot_buf(my_slot(arg), 4 + which, sizeof(float) * floats);
}

/* GEMM_FP32_AUTO's products that OpenBLAS would run (and emulated bf16's):
 * on a CPU with AVX2 and FMA, on sgemm_own (sgemm.h), whose bytes do not
 * depend on the threads either and which ran the nano and bench models'
 * training products 1.05-1.25x as fast as the fixed blocks (Zen 3, 2
 * threads, alone: 1760 x 384 x 128 at 167 against 137 GFLOP/s; README,
 * Precision, for AVX-512); else in OpenBLAS's fixed blocks. */
static void sgemm_fixed(gemm_ctx *g, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const float *bp = g->own_sgemm && tb ? packed_of(g, B, N, K, ldb) : NULL;
    if (bp) sgemm_own_packed(ta, M, N, K, alpha, A, lda, bp, beta, C, ldc, own_scratch, g);
    else if (g->own_sgemm) sgemm_own(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, own_scratch, g);
    else sgemm_fixed_blocks(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* A product of an fp32 context that reads a view (a checkpoint's BF16
 * weights, not widened into floats at loading: gemm_ctx_fp32_views): a
 * weight as a layer or the head reads it (B, transposed) goes to sgemm_own,
 * which widens it as it packs (exact: the bytes of the widened floats on
 * sgemm_own); any other operand of a view is widened into a dense copy
 * first. Returns whether the product read a view (and ran). */
/* Whether run_fp32_views offers this product (operands a16, b16: their
 * views, if any) to the few-row kernel: decoding's few rows (views read as
 * shadows) against a view's weight as B^T */
static int views_few_rows(const gemm_ctx *g, int tb, int64_t M, int64_t N, int64_t K, const uint16_t *a16,
                          const uint16_t *b16) {
    return M <= GEMM_FEW_ROWS && N * K >= GEMM_FEW_ROWS_MIN_NK && g->views_few && b16 && !a16 && tb;
}

static int run_fp32_views(gemm_ctx *g, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                          int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    const uint16_t *a16 = fp32_view_of(g, A, ar, ac, lda), *b16 = fp32_view_of(g, B, br, bc, ldb);
    if (!a16 && !b16) return 0;
    /* a few rows against a large weight would leave sgemm_own (for oneDNN):
     * a dense copy keeps them on the route the floats would take */
    const int few = M <= GEMM_FEW_ROWS && N * K >= GEMM_FEW_ROWS_MIN_NK;
    /* decoding (views read as shadows): the few-row kernel reads the bf16
     * weight as a shadow's; rows beyond it go to sgemm_own, which widens
     * the weight panel by panel, not into a dense copy per token */
    if (views_few_rows(g, tb, M, N, K, a16, b16)) {
        if (!few_rows_try(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
            sgemm_own_b16(ta, M, N, K, alpha, A, lda, b16, ldb, beta, C, ldc, own_scratch, g);
        return 1;
    }
    if (!a16 && tb && !few) {
        const float *bp = packed_of(g, B, N, K, ldb);
        if (bp) sgemm_own_packed(ta, M, N, K, alpha, A, lda, bp, beta, C, ldc, own_scratch, g);
        else sgemm_own_b16(ta, M, N, K, alpha, A, lda, b16, ldb, beta, C, ldc, own_scratch, g);
        return 1;
    }
    gemm_slot *s = my_slot(g);
    if (a16) {
        float *a = slot_buf(s, 0, sizeof(float) * (size_t)(ar * ac));
        widen_bf16(a, a16, ar, ac, lda);
        A = a;
        lda = ac;
    }
    if (b16) {
        float *b = slot_buf(s, 1, sizeof(float) * (size_t)(br * bc));
        widen_bf16(b, b16, br, bc, ldb);
        B = b;
        ldb = bc;
    }
    gemm_run(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return 1;
}

void gemm_run(gemm_ctx *g, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (g->nviews && g->prec == GEMM_FP32_AUTO &&
        run_fp32_views(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return;
    /* the precision this product runs in: fp32 products of a few rows
     * against a large operand, and GEMM_FP32_AUTO's large ones, go to
     * oneDNN (see gemm.h) */
    gemm_precision prec = g->prec;
    if (few_rows_try(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    if (prec == GEMM_FP32_AUTO) prec = GEMM_FP32;
    if (prec == GEMM_FP32) {
        if (!(M <= GEMM_FEW_ROWS && N * K >= GEMM_FEW_ROWS_MIN_NK)) {
            if (g->prec == GEMM_FP32_AUTO) sgemm_fixed(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            else cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                             K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
        prec = GEMM_FP32_DNNL;
    }
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {   /* C = beta * C, as BLAS defines it */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    /* stored shapes of A and B */
    int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    /* oneDNN 2.6's AMX matmul takes up to 15x as long for some row counts
     * that are not a multiple of 16: on the Qwen3-0.6B shapes (3072 x 1024
     * weights, 2 threads) 59, 61, 147, 153, 159 and 171 rows took 5-16 ms,
     * where 48, 64 or 160 rows take 1-2 ms; 250, 333 and 777 rows ran
     * 1.3-1.7x faster split; no count below 48 was slow. Products of 48
     * rows or more against a linear layer's weights (held in bf16, at
     * least GEMM_FEW_ROWS_MIN_NK of them) run their rows in two parts: the
     * largest multiple of 16, then the rest. Not the head (N the
     * vocabulary): a second pass over its B (311 MB in that shape) cost
     * more than it saved; nor decoding's few rows, bound by reading B. */
    const int split = prec == GEMM_BF16 && g->native && !g->bf16_fma && readonly_bf16(g, B, br, bc, ldb);
    if (split && M >= 48 && M % 16 && N < GEMM_SPLIT_MAX_N && N * K >= GEMM_FEW_ROWS_MIN_NK) {
        const int64_t m16 = M / 16 * 16;
        gemm_run(g, ta, tb, m16, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        gemm_run(g, ta, tb, M - m16, N, K, alpha, ta ? A + m16 : A + m16 * lda, lda, B, ldb, beta, C + m16 * ldc, ldc);
        return;
    }
    gemm_key k;
    memset(&k, 0, sizeof k);
    k.prec = prec;
    k.ta = !!ta;
    k.tb = !!tb;
    memcpy(&k.alpha, &alpha, 4);
    memcpy(&k.beta, &beta, 4);
    k.M = M; k.N = N; k.K = K; k.ldc = ldc;
    /* bf16 inputs are converted into dense copies, so their strides are the
     * stored widths, unless they are read-only and already held in bf16;
     * fp32 inputs are read in place */
    const uint16_t *ra = prec == GEMM_BF16 ? readonly_bf16(g, A, ar, ac, lda) : NULL;
    const uint16_t *rb = prec == GEMM_BF16 ? readonly_bf16(g, B, br, bc, ldb) : NULL;
    k.lda = prec == GEMM_BF16 && !ra ? ac : lda;
    k.ldb = prec == GEMM_BF16 && !rb ? bc : ldb;
    int transient;
    gemm_entry *e = lookup(g, &k, &transient);
    gemm_slot *s = my_slot(g);
    if (!e->prim) {   /* bf16 on fp32 FMAs (gemm_ctx_bf16_fma), or no bf16 kernel in oneDNN */
        if (g->bf16_fma && !bf16_only(g, A) && (tb || !bf16_only(g, B))) {
            /* the floats rounded as sgemm_own packs them, in its own region; B^T from a bf16 copy held (a
             * view, the read-only range, a mirror: the same values) widened as it is packed */
            const gemm_prod q = {ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc, tb ? rb : NULL, 1};
            sgemm_own_multi(1, &q, own_scratch, g);
            if (transient) free(e);
            return;
        }
        /* else (an operand whose floats are not stored, a context told to use oneDNN or without
         * sgemm_own): dense copies, rounded or widened from a bf16 copy held */
        float *a = slot_buf(s, 0, sizeof(float) * (size_t)(ar * ac));
        if (ra) widen_bf16(a, ra, ar, ac, lda);
        else to_bf16_rounded_f32(a, A, ar, ac, lda);
        if (rb && tb && g->own_sgemm) sgemm_own_b16(ta, M, N, K, alpha, a, ac, rb, ldb, beta, C, ldc, own_scratch, g);
        else {
            float *b = slot_buf(s, 1, sizeof(float) * (size_t)(br * bc));
            if (rb) widen_bf16(b, rb, br, bc, ldb);
            else to_bf16_rounded_f32(b, B, br, bc, ldb);
            sgemm_fixed(g, ta, tb, M, N, K, alpha, a, ac, b, bc, beta, C, ldc);
        }
        if (transient) free(e);
        return;
    }
    const void *pa = A, *pb = B;
    if (prec == GEMM_BF16) {
        if (ra) pa = ra;
        else pa = converted(g, s, 0, A, ar, ac, lda, NULL);
        if (rb) pb = rb;
        else pb = converted(g, s, 1, B, br, bc, ldb, pa);
    }
    float *dst = e->own_scale ? slot_buf(s, 3, sizeof(float) * (size_t)(M * N)) : C;
    const void *ptr[4] = {pa, pb, dst, e->pad_bytes ? slot_buf(s, 2, e->pad_bytes) : NULL};
    static const int argk[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_SCRATCHPAD};
    dnnl_exec_arg_t args[4];
    int nargs = e->pad_bytes ? 4 : 3;
    /* a transient entry's memory objects are not kept: its address may
     * come back for another entry */
    dnnl_memory_t own[4] = {NULL, NULL, NULL, NULL}, *mem = own;
    if (!transient) {
        size_t j = ((uintptr_t)e >> 4) % SLOT_MEMS;
        if (s->mems[j].e != e) {
            for (int i = 0; i < 4; i++)
                if (s->mems[j].mem[i]) dnnl_memory_destroy(s->mems[j].mem[i]);
            memset(&s->mems[j], 0, sizeof s->mems[j]);
            s->mems[j].e = e;
        }
        mem = s->mems[j].mem;
    }
    for (int i = 0; i < nargs; i++) {
        if (!mem[i]) DNNL_CHECK(dnnl_memory_create(&mem[i], &e->md[i], g->eng, (void *)ptr[i]), "memory creation");
        else DNNL_CHECK(dnnl_memory_set_data_handle_v2(mem[i], (void *)ptr[i], s->stream), "memory handle");
        args[i].arg = argk[i];
        args[i].memory = mem[i];
    }
    DNNL_CHECK(dnnl_primitive_execute(e->prim, s->stream, nargs, args), "matmul");
    DNNL_CHECK(dnnl_stream_wait(s->stream), "stream wait");
    if (transient)
        for (int i = 0; i < nargs; i++) dnnl_memory_destroy(own[i]);
    if (e->own_scale)
        for (int64_t i = 0; i < M; i++) {
            float *c = C + i * ldc;
            const float *p = dst + i * N;
            if (beta == 0.0f)
#pragma omp simd
                for (int64_t j = 0; j < N; j++) c[j] = alpha * p[j];
            else
#pragma omp simd
                for (int64_t j = 0; j < N; j++) c[j] = alpha * p[j] + beta * c[j];
        }
    if (transient) {
        dnnl_primitive_destroy(e->prim);
        free(e);
    }
}

/* ------------------------------------------------------------ process-wide */

void gemm_set_precision(gemm_precision p) {
    if (g_default && g_default->prec == p) return;
    /* a model loaded bf16-only would read the zeros its views stand for
     * (mirrors go with the context: their floats are stored) */
    for (size_t i = 0; g_default && i < g_default->nviews; i++)
        if (!g_default->views[i].mirror) die("internal: precision changed while bf16-only weights are loaded");
    gemm_ctx_free(g_default);
    g_default = gemm_ctx_new(p);
    if (p == GEMM_BF16 && g_default->native && g_default->bf16_fma)
        wdl_warn("bf16: this CPU's bf16 dot products (oneDNN ISA %s, no AMX) run slower than its fp32 FMAs: "
                 "bf16 matrix products run as fp32 FMAs on inputs rounded to bf16 (the same semantics)",
                 gemm_dnnl_isa());
    else if (p == GEMM_BF16 && !gemm_bf16_native())
        wdl_warn("bf16: this CPU has no AVX512-BF16 or AMX (oneDNN ISA %s): bf16 matrix products run %s on "
                 "inputs rounded to bf16 (the same semantics, no faster than fp32)", gemm_dnnl_isa(),
                 g_default->bf16_fma ? "as fp32 FMAs" : "in fp32");
}

/* Whether gemm_run gives this product to sgemm_own: GEMM_FP32_AUTO on a
 * CPU with AVX2 and FMA (own_sgemm), or GEMM_BF16 on fp32 FMAs, and more
 * rows than any few-row path takes (few_rows_try, GEMM_FEW_ROWS,
 * sgemm_own's own). */
#define FEW_ROWS_ANY 16
_Static_assert(FEW_ROWS_WIDE <= FEW_ROWS_ANY && FEW_ROWS_FP32 <= FEW_ROWS_ANY && FEW_ROWS_BF16 <= FEW_ROWS_ANY &&
                   GEMM_FEW_ROWS <= FEW_ROWS_ANY && SGEMM_FEW_ROWS <= FEW_ROWS_ANY,
               "gemm_run_n's test for the few-row paths");
static int goes_own(const gemm_ctx *g, const gemm_prod *p) {
    if (g->prec == GEMM_BF16)   /* on fp32 FMAs, reading stored floats (or B^T's bf16 copy) */
        return g->bf16_fma && p->M > FEW_ROWS_ANY && !bf16_only(g, p->A) && (p->tb || !bf16_only(g, p->B));
    return g->prec == GEMM_FP32_AUTO && g->own_sgemm && p->M > FEW_ROWS_ANY;
}

/* Whether gemm_run gives this product to the few-row kernel: B's bf16
 * values if so (for a few rows against an fp32 view read as a shadow,
 * run_fp32_views' route; else few_rows_try's), NULL if not */
static const uint16_t *few_route(gemm_ctx *g, const gemm_prod *p) {
    if (g->nviews && g->prec == GEMM_FP32_AUTO) {
        const int64_t ar = p->ta ? p->K : p->M, ac = p->ta ? p->M : p->K;
        const int64_t br = p->tb ? p->N : p->K, bc = p->tb ? p->K : p->N;
        const uint16_t *a16 = fp32_view_of(g, p->A, ar, ac, p->lda), *b16 = fp32_view_of(g, p->B, br, bc, p->ldb);
        if ((a16 || b16) && !views_few_rows(g, p->tb, p->M, p->N, p->K, a16, b16)) return NULL;
    }
    return few_rows_b16(g, p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->B, p->ldb);
}

/* Products of one A that would each run on the few-row kernel (decoding's
 * q, k and v; gate and up): A put in the kernel's order once, and all of
 * them in one parallel region, the bytes of running them one by one. Each
 * region wakes the sleeping threads (OMP_WAIT_POLICY=passive, cli.h), and
 * a decoding step of the Qwen3-0.6B shape opened 225 of them for products
 * of 0.1-0.3 ms each: wdl-eval ran 15-20% faster with the threads
 * spinning. Returns whether it ran them. */
static int few_rows_group(gemm_ctx *g, int n, const gemm_prod *p) {
    if (n < 2 || n > GEMM_N_MAX) return 0;
    few_job jobs[GEMM_N_MAX];
    for (int i = 0; i < n; i++) {
        if (p[i].A != p[0].A || p[i].lda != p[0].lda || p[i].M != p[0].M || p[i].K != p[0].K) return 0;
        const uint16_t *b16 = few_route(g, &p[i]);
        if (!b16) return 0;
        jobs[i] = (few_job){b16, p[i].N, p[i].ldb, p[i].alpha, p[i].beta, p[i].C, p[i].ldc};
    }
    const int64_t M = p[0].M, K = p[0].K, kp = (K + 31) / 32 * 32;
    const int avx512 = few_rows_avx512(g);
    const float *ap = few_rows_a(g, p[0].A, p[0].lda, M, K, kp, avx512);
    few_rows_run(avx512 ? few_sums_avx512 : few_sums_avx2, n, jobs, M, K, kp, ap);
    atomic_fetch_add(&g->few_rows, n);
    atomic_fetch_add(&g->few_groups, 1);
    return 1;
}

void gemm_run_n(gemm_ctx *g, int n, const gemm_prod *p) {
    int own = n <= GEMM_N_MAX;
    /* an fp32 view's weight as B^T is read in bf16 (run_fp32_views); one
     * elsewhere sends the set product by product */
    for (int i = 0; i < n && own; i++)
        own = goes_own(g, &p[i]) && !fp32_view_of(g, p[i].A, p[i].ta ? p[i].K : p[i].M, p[i].ta ? p[i].M : p[i].K,
                                                  p[i].lda) &&
              (p[i].tb || !fp32_view_of(g, p[i].B, p[i].K, p[i].N, p[i].ldb));
    if (!own) {
        if (few_rows_group(g, n, p)) return;
        for (int i = 0; i < n; i++)
            gemm_run(g, p[i].ta, p[i].tb, p[i].M, p[i].N, p[i].K, p[i].alpha, p[i].A, p[i].lda, p[i].B, p[i].ldb,
                     p[i].beta, p[i].C, p[i].ldc);
        return;
    }
    /* as sgemm_fixed: a weight kept packed is read packed; in bf16 the
     * inputs are rounded as they are packed, B^T read from a bf16 copy
     * where one is held (the same values), as gemm_run's */
    gemm_prod q[GEMM_N_MAX];
    for (int i = 0; i < n; i++) {
        q[i] = p[i];
        if (g->prec == GEMM_BF16) {
            q[i].packed = NULL;
            q[i].B16 = p[i].tb ? readonly_bf16(g, p[i].B, p[i].N, p[i].K, p[i].ldb) : NULL;
            q[i].round16 = 1;
            continue;
        }
        q[i].packed = p[i].tb ? packed_of(g, p[i].B, p[i].N, p[i].K, p[i].ldb) : NULL;
        q[i].B16 = p[i].tb && !q[i].packed ? fp32_view_of(g, p[i].B, p[i].N, p[i].K, p[i].ldb) : NULL;
    }
    sgemm_own_multi(n, q, own_scratch, g);
}

gemm_ctx *gemm_default(void) {
    if (!g_default) g_default = gemm_ctx_new(GEMM_FP32);
    return g_default;
}

void wdl_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_ctx *g = g_default;
    if (!g)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                    alpha, A, lda, B, ldb, beta, C, ldc);
    else
        gemm_run(g, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void wdl_sgemm_n(int n, const gemm_prod *p) {
    if (g_default) {
        gemm_run_n(g_default, n, p);
        return;
    }
    for (int i = 0; i < n; i++)
        wdl_sgemm(p[i].ta, p[i].tb, p[i].M, p[i].N, p[i].K, p[i].alpha, p[i].A, p[i].lda, p[i].B, p[i].ldb, p[i].beta,
                  p[i].C, p[i].ldc);
}

int gemm_precision_named(const char *s, gemm_precision *p) {
    if (!strcmp(s, "fp32")) *p = GEMM_FP32_AUTO;
    else if (!strcmp(s, "fp32-openblas")) *p = GEMM_FP32;
    else if (!strcmp(s, "bf16")) *p = GEMM_BF16;
    else return 0;
    return 1;
}

gemm_precision gemm_parse_precision(const char *flag, const char *s) {
    gemm_precision p;
    if (!gemm_precision_named(s, &p)) die("%s: expected %s, got '%s'", flag, GEMM_PRECISIONS, s);
    return p;
}

const char *gemm_precision_name(gemm_precision p) {
    switch (p) {
    case GEMM_BF16: return "bf16";
    case GEMM_FP32_DNNL: return "fp32-onednn";
    case GEMM_FP32_AUTO: return "fp32";
    default: return "fp32-openblas";
    }
}

int gemm_is_fp32(gemm_precision p) { return p == GEMM_FP32 || p == GEMM_FP32_AUTO; }

int gemm_dnnl_avx512(void) {
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();   /* bit flags: avx2_vnni is numerically larger */
    return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
}

/* An AVX-512 build runs them where oneDNN runs AVX-512 (not under an
 * ONEDNN_MAX_CPU_ISA cap), an AVX2 build always (up to ATTN_TILES_MAX_HD) */
static int tiles_here(void) { return ATTN_TILES_BUILT && g_default && (g_default->isa512 || !ATTN_TILES_AVX512); }

int gemm_attention_tiles(void) { return tiles_here() && g_default->prec == GEMM_FP32_AUTO; }

int gemm_attention_tiles_for(int64_t head_dim) { return gemm_attention_tiles() && head_dim <= ATTN_TILES_MAX_HD; }

/* GEMM_BF16 whose products run on fp32 FMAs */
int gemm_attention_tiles16_for(int64_t head_dim) {
    return tiles_here() && g_default->prec == GEMM_BF16 && g_default->bf16_fma && !g_default->amx &&
           !g_default->dot && head_dim <= ATTN_TILES_MAX_HD;
}

int gemm_attention_amx(void) { return ATTN_AMX_BUILT && g_default && g_default->prec == GEMM_BF16 && g_default->amx; }

int gemm_attention_dot(void) { return ATTN_BF16_BUILT && g_default && g_default->prec == GEMM_BF16 && g_default->dot; }

const char *gemm_dnnl_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

int gemm_bf16_on_fma(void) {
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(),
                   amx = (unsigned)dnnl_cpu_isa_avx512_core_amx;
    return gemm_bf16_native() && (isa & amx) != amx && !cpu_is_amd() && sgemm_own_cpu();
}

int gemm_bf16_native(void) {
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}
