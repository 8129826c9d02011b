/* Tests of lib/safetensors: conversions (against exact oracles), F32/BF16
 * round trips, hand-built F16/F64 files, sharded indexes, header layout,
 * and every validation error (in memory through st_parse_buffer, and in a
 * forked child for the dying API, checking status and the one-line
 * message). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"
#include "testutil.h"
#include "safetensors.h"


static char *tpath(const char *name) { return wdl_path_join(tmpdir, name); }
static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A file image: 8-byte length, header, then `data` (ndata bytes). */
static uint8_t *image(const char *header, const void *data, size_t ndata, size_t *len) {
    size_t h = strlen(header);
    uint8_t *b = xmalloc(8 + h + ndata + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    if (ndata) {
        if (data) memcpy(b + 8 + h, data, ndata);
        else memset(b + 8 + h, 0, ndata);
    }
    *len = 8 + h + ndata;
    return b;
}


/* ---------------------------------------------------------- conversions */

/* value of a bf16 pattern as double, with the pattern after the largest
 * finite one standing for 2^128 (IEEE rounding with unbounded exponent) */
static double bf16_val(uint16_t h) {
    if ((h & 0x7fff) == 0x7f80) return (h & 0x8000) ? -ldexp(1, 128) : ldexp(1, 128);
    return st_bf16_to_f32(h);
}

static void test_bf16_cases(void **s) {
    (void)s;
    struct { uint32_t in; uint16_t out; } c[] = {
        {0x3f800000, 0x3f80},  /* 1.0 */
        {0x3f808000, 0x3f80},  /* tie, even stays */
        {0x3f818000, 0x3f82},  /* tie, odd rounds up */
        {0x3f808001, 0x3f81},  /* above tie */
        {0x3f807fff, 0x3f80},  /* below tie */
        {0xbf818000, 0xbf82},  /* negative tie */
        {0x7f800000, 0x7f80}, {0xff800000, 0xff80},  /* inf */
        {0x7f7fffff, 0x7f80},  /* FLT_MAX rounds to inf */
        {0x7f7f7fff, 0x7f7f},  /* largest that stays finite */
        {0x00000001, 0x0000}, {0x00008000, 0x0000}, {0x00018000, 0x0002}, {0x00008001, 0x0001},
        {0x80000000, 0x8000},  /* -0 */
        {0x007fffff, 0x0080},  /* largest subnormal rounds to the smallest normal */
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        uint16_t got = st_f32_to_bf16(u2f(c[i].in));
        if (got != c[i].out) fail_msg("bf16(0x%08x) = 0x%04x, want 0x%04x", c[i].in, got, c[i].out);
    }
    /* NaN stays NaN (even a signalling NaN whose payload is in the low bits) */
    uint32_t nans[] = {0x7fc00000, 0x7f800001, 0xff800001, 0x7fffffff};
    for (size_t i = 0; i < 4; i++) {
        uint16_t h = st_f32_to_bf16(u2f(nans[i]));
        assert_true(isnan(st_bf16_to_f32(h)));
        assert_int_equal(h >> 15, nans[i] >> 31);
    }
    assert_true(st_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(st_bf16_to_f32(0xc000) == -2.0f);
}

/* Random floats: the result is the nearest bf16, ties to even. */
static void test_bf16_nearest(void **s) {
    (void)s;
    wdl_rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rng_u64(&r);
        if (i & 1) u = (u & 0xffff0000u) | 0x8000u;  /* half of them exact ties */
        float f = u2f(u);
        if (isnan(f)) continue;
        uint16_t h = st_f32_to_bf16(f), lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
        double dlo = fabs((double)f - bf16_val(lo)), dhi = fabs(bf16_val(hi) - (double)f);
        uint16_t want = dlo < dhi ? lo : dhi < dlo ? hi : ((lo & 1) ? hi : lo);
        if (h != want) fail_msg("bf16(0x%08x) = 0x%04x, want 0x%04x", u, h, want);
    }
}

static void test_f16_cases(void **s) {
    (void)s;
    assert_true(st_f16_to_f32(0x3c00) == 1.0f);
    assert_true(st_f16_to_f32(0xc000) == -2.0f);
    assert_true(st_f16_to_f32(0x0001) == ldexpf(1, -24));
    assert_true(st_f16_to_f32(0x03ff) == 1023 * ldexpf(1, -24));
    assert_true(st_f16_to_f32(0x0400) == ldexpf(1, -14));
    assert_true(st_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(isinf(st_f16_to_f32(0x7c00)) && st_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(st_f16_to_f32(0xfc00)) && st_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(st_f16_to_f32(0x7e00)) && isnan(st_f16_to_f32(0x7c01)));
    assert_int_equal(f2u(st_f16_to_f32(0x8000)), 0x80000000u);
    struct { float in; uint16_t out; } c[] = {
        {65520.0f, 0x7c00},                  /* tie between 65504 and inf: to inf (even) */
        {65519.0f, 0x7bff},
        {ldexpf(1, -25), 0x0000},            /* tie between 0 and 2^-24: to 0 */
        {u2f(0x33000001), 0x0001},
        {3 * ldexpf(1, -25), 0x0002},        /* tie between 1 and 2 units: to 2 */
        {1 + ldexpf(1, -11), 0x3c00},        /* tie: even */
        {1 + 3 * ldexpf(1, -11), 0x3c02},    /* tie: odd rounds up */
        {ldexpf(1, -14) - ldexpf(1, -26), 0x0400},  /* subnormal rounding up to the smallest normal */
        {-1.0f, 0xbc00}, {-0.0f, 0x8000}, {1e-10f, 0x0000}, {1e10f, 0x7c00},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        uint16_t got = st_f32_to_f16(c[i].in);
        if (got != c[i].out) fail_msg("f16(%a) = 0x%04x, want 0x%04x", c[i].in, got, c[i].out);
    }
    /* every half: half -> float is exact, and back gives the same bits */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_f16_to_f32((uint16_t)h);
        if (isnan(f)) { assert_true(isnan(st_f16_to_f32(st_f32_to_f16(f)))); continue; }
        if (st_f32_to_f16(f) != h) fail_msg("f16 round trip of 0x%04x gave 0x%04x", h, st_f32_to_f16(f));
    }
#ifdef __FLT16_MAX__
    /* and the compiler's own conversion agrees on random floats */
    wdl_rng r;
    rng_seed(&r, 11);
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rng_u64(&r);
        if (i & 1) u = (u & 0x80000000u) | (0x33000000u + (u & 0x14ffffffu));  /* near the half range */
        float f = u2f(u);
        if (isnan(f)) continue;
        _Float16 want = (_Float16)f;
        uint16_t wb;
        memcpy(&wb, &want, 2);
        if (st_f32_to_f16(f) != wb) fail_msg("f16(0x%08x) = 0x%04x, compiler says 0x%04x", u, st_f32_to_f16(f), wb);
    }
#endif
}

/* ------------------------------------------------------------ round trips */

static float *ramp(size_t n, uint64_t seed) {
    wdl_rng r;
    rng_seed(&r, seed);
    float *x = xmalloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(&r) * 3;
    return x;
}

/* special values at the start of a tensor */
static void specials(float *x) {
    float v[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, FLT_MIN / 4, -FLT_MIN / 3, FLT_MAX, 1 + ldexpf(1, -8),
                 1 + 3 * ldexpf(1, -8)};
    memcpy(x, v, sizeof v);
}

static void roundtrip(st_dtype dt) {
    float *a = ramp(6 * 7, 1), *b = ramp(5, 2), *c = ramp(2 * 3 * 4, 3), scalar = 3.25f;
    specials(a);
    st_tensor t[] = {
        {.name = "model.layers.0.w", .ndim = 2, .shape = {6, 7}, .data = a},
        {.name = "a.bias", .ndim = 1, .shape = {5}, .data = b},
        {.name = "scalar", .ndim = 0, .data = &scalar},
        {.name = "empty", .ndim = 2, .shape = {0, 3}, .data = NULL},
        {.name = "cube", .ndim = 3, .shape = {2, 3, 4}, .data = c},
    };
    char *path = tpath(dt == ST_F32 ? "rt32.safetensors" : "rt16.safetensors");
    st_write(path, t, 5, dt);
    st_model *m = st_open(path);
    assert_int_equal(st_count(m), 5);
    /* iteration follows the data offsets, which follow the given order */
    for (size_t i = 0; i < 5; i++) assert_string_equal(st_name_at(m, i), t[i].name);
    assert_null(st_name_at(m, 5));
    assert_string_equal(st_metadata(m, "format"), "pt");
    assert_null(st_metadata(m, "nope"));
    assert_false(st_has(m, "missing"));
    for (size_t i = 0; i < 5; i++) {
        const st_info *in = st_find(m, t[i].name);
        assert_non_null(in);
        assert_int_equal(in->dtype, dt);
        assert_string_equal(in->dtype_name, dt == ST_F32 ? "F32" : "BF16");
        assert_int_equal(in->ndim, t[i].ndim);
        uint64_t n = 1;
        for (int d = 0; d < t[i].ndim; d++) { assert_int_equal(in->shape[d], t[i].shape[d]); n *= t[i].shape[d]; }
        assert_int_equal(in->nelem, n);
        assert_int_equal(in->nbytes, n * (dt == ST_F32 ? 4 : 2));
        float *got = xmalloc(n * sizeof(float) + 1);
        st_read_f32(m, t[i].name, got, t[i].ndim, t[i].shape);
        for (uint64_t k = 0; k < n; k++) {
            float want = dt == ST_F32 ? t[i].data[k] : st_bf16_to_f32(st_f32_to_bf16(t[i].data[k]));
            if (isnan(want)) assert_true(isnan(got[k]));
            else if (f2u(got[k]) != f2u(want)) fail_msg("%s[%llu]: %a != %a", t[i].name, (unsigned long long)k, got[k], want);
            if (dt == ST_BF16) {  /* the stored bits are the RNE conversion */
                uint16_t raw;
                memcpy(&raw, (const uint8_t *)st_raw(m, in) + 2 * k, 2);
                assert_int_equal(raw, st_f32_to_bf16(t[i].data[k]));
            }
        }
        free(got);
    }
    st_close(m);
    free(path); free(a); free(b); free(c);
}
static void test_roundtrip_f32(void **s) { (void)s; roundtrip(ST_F32); }
static void test_roundtrip_bf16(void **s) { (void)s; roundtrip(ST_BF16); }

static void test_f16_write(void **s) {
    (void)s;
    float x[] = {1.0f, -2.0f, 65520.0f, 1 + ldexpf(1, -11), NAN};
    st_tensor t = {.name = "h", .ndim = 1, .shape = {5}, .data = x};
    char *path = tpath("w16.safetensors");
    st_write(path, &t, 1, ST_F16);
    st_model *m = st_open(path);
    float y[5];
    st_read_f32(m, "h", y, 1, t.shape);
    assert_true(y[0] == 1.0f && y[1] == -2.0f && isinf(y[2]) && y[3] == 1.0f && isnan(y[4]));
    assert_string_equal(st_find(m, "h")->dtype_name, "F16");
    st_close(m);
    free(path);
}

/* The header: length-prefixed, compact JSON with __metadata__ first, padded
 * with spaces so the data starts 64-byte aligned, extra metadata kept. */
static void test_header_layout(void **s) {
    (void)s;
    float x[3] = {1, 2, 3};
    for (int len = 1; len < 70; len++) {  /* names of every length hit every padding */
        char name[80];
        memset(name, 'n', (size_t)len);
        name[len] = 0;
        st_tensor t = {.name = name, .ndim = 1, .shape = {3}, .data = x};
        const char *meta[] = {"step", "12"};
        char *path = tpath("layout.safetensors");
        st_write_meta(path, &t, 1, ST_F32, meta, 1);
        size_t n;
        uint8_t *b = (uint8_t *)wdl_read_file(path, &n);
        uint64_t h = 0;
        for (int i = 7; i >= 0; i--) h = (h << 8) | b[i];
        assert_int_equal((8 + h) % 64, 0);
        assert_int_equal(n, 8 + h + 12);
        const char *start = "{\"__metadata__\":{\"format\":\"pt\",\"step\":\"12\"},";
        assert_memory_equal(b + 8, start, strlen(start));
        size_t j = 8 + h;
        while (b[j - 1] == ' ') j--;
        assert_int_equal(b[j - 1], '}');
        assert_memory_equal(b + 8 + h, x, 12);
        free(b);
        st_model *m = st_open(path);
        assert_string_equal(st_metadata(m, "step"), "12");
        st_close(m);
        free(path);
    }
    /* nothing temporary is left behind */
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while ((e = readdir(d))) assert_null(strstr(e->d_name, ".tmp."));
    closedir(d);
}

/* ---------------------------------------------- hand-built files (F16, F64) */

static void test_f16_f64_read(void **s) {
    (void)s;
    /* no padding: the data is deliberately misaligned */
    const char *hdr = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                      "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[12,28]},"
                      "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[28,36]}}";
    uint8_t data[36] = {0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0xff, 0x7b, 0x00, 0x7c, 0x00, 0x80};
    double d[2] = {0.1, -1e300};
    memcpy(data + 12, d, 16);
    data[28] = 5;
    size_t len;
    uint8_t *img = image(hdr, data, sizeof data, &len);
    char *path = tpath("hand.safetensors");
    write_bytes(path, img, len);
    st_model *m = st_open(path);
    assert_int_equal(st_count(m), 3);
    float y[6];
    int64_t sh[2] = {2, 3};
    st_read_f32(m, "h", y, 2, sh);
    assert_true(y[0] == 1.0f && y[1] == -2.0f && y[2] == ldexpf(1, -24) && y[3] == 65504.0f);
    assert_true(isinf(y[4]) && y[4] > 0);
    assert_int_equal(f2u(y[5]), 0x80000000u);
    int64_t sd = 2;
    st_read_f32(m, "d", y, 1, &sd);
    assert_true(y[0] == 0.1f && isinf(y[1]) && y[1] < 0);
    assert_int_equal(st_find(m, "i")->dtype, ST_OTHER);
    assert_int_equal(*(const uint8_t *)st_raw(m, st_find(m, "i")), 5);
    st_close(m);
    free(img); free(path);
}

/* -------------------------------------------------- validation (in memory) */

typedef struct { const char *header; size_t ndata; const char *needle; } bad_case;

static void test_validation(void **s) {
    (void)s;
    static const bad_case bad[] = {
        {"[]", 0, "does not start with '{'"},
        {" {}", 0, "does not start with '{'"},
        {"{\"a\":", 0, "not valid JSON"},
        {"{} x", 0, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate"},
        {"{\"__metadata__\":{\"format\":1}}", 0, "__metadata__: value of 'format' is not a string"},
        {"{\"__metadata__\":[]}", 0, "__metadata__ is not an object"},
        {"{\"t\":[]}", 0, "tensor t: description is not an object"},
        {"{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor t: no dtype"},
        {"{\"t\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is not a string"},
        {"{\"t\":{\"dtype\":\"F31\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'F31'"},
        {"{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "no shape"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,4]}}", 4, "shape is not an array"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0] is not a non-negative integer"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "shape[0] is not a non-negative integer"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296]," "\"data_offsets\":[0,4]}}", 4, "shape overflows"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1073741824,1073741824,4]," "\"data_offsets\":[0,4]}}", 4, "shape overflows"},
        {"{\"t\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "do not fill whole bytes"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "no data_offsets"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "not a pair"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "not a pair"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, "not a pair"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "end before they begin"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
         "tensor t: data_offsets [0, 20] (20 bytes) do not match F32 shape [2, 3] (24 bytes)"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "a hole before it"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlaps"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "tensor b: data_offsets begin at 8, expected 4"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "truncated: the tensors need 8 data bytes but the file has 4"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6, "2 bytes after the last tensor"},
        {"{}", 1, "1 bytes after the last tensor"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}", 4, "not valid JSON"},
        {"{\"\xff\":{}}", 0, "not valid JSON"},  /* not UTF-8 */
    };
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t len;
        uint8_t *img = image(bad[i].header, NULL, bad[i].ndata, &len);
        st_model *m = st_parse_buffer(img, len, "f.safetensors", err, sizeof err);
        if (m) fail_msg("case %zu accepted: %s", i, bad[i].header);
        if (!strstr(err, bad[i].needle) || strncmp(err, "f.safetensors: ", 15) || strchr(err, '\n'))
            fail_msg("case %zu: message '%s' lacks '%s'", i, err, bad[i].needle);
        free(img);
    }
    /* the length prefix itself */
    uint8_t small[7] = {0};
    assert_null(st_parse_buffer(small, 7, "f", err, sizeof err));
    assert_non_null(strstr(err, "truncated: 7 bytes"));
    uint8_t big[16] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0};  /* 100000001 */
    assert_null(st_parse_buffer(big, 16, "f", err, sizeof err));
    assert_non_null(strstr(err, "header length 100000001 exceeds the limit"));
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_null(st_parse_buffer(huge, 16, "f", err, sizeof err));
    assert_non_null(strstr(err, "exceeds the limit"));
    uint8_t shortb[12] = {10, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    assert_null(st_parse_buffer(shortb, 12, "f", err, sizeof err));
    assert_non_null(strstr(err, "truncated: header length 10 but only 4 bytes follow"));
    uint8_t zero[8] = {0};
    assert_null(st_parse_buffer(zero, 8, "f", err, sizeof err));
    assert_non_null(strstr(err, "does not start with '{'"));
    /* a control character in a name does not break the one-line message */
    size_t len;
    uint8_t *img = image("{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", NULL, 8, &len);
    assert_null(st_parse_buffer(img, len, "f", err, sizeof err));
    assert_null(strchr(err, '\n'));
    free(img);
}

/* Valid corner cases of the spec are accepted. */
static void test_valid_corners(void **s) {
    (void)s;
    static const struct { const char *header; size_t ndata; size_t count; } ok[] = {
        {"{}", 0, 0},
        {"{}      ", 0, 0},  /* space padding */
        {"{\"__metadata__\":null}", 0, 0},
        {"{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, 1},  /* rank 0 */
        {"{\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
         "\"f\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, 2},  /* empty tensors */
        /* any order in the header; unknown keys in a description are ignored */
        {"{\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[4,7],\"x\":1},"
         "\"a\":{\"dtype\":\"F4\",\"shape\":[8],\"data_offsets\":[0,4]}}", 7, 2},
        {"{\"\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 1},  /* empty name */
    };
    char err[512];
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        size_t len;
        uint8_t *img = image(ok[i].header, NULL, ok[i].ndata, &len);
        st_model *m = st_parse_buffer(img, len, "f", err, sizeof err);
        if (!m) fail_msg("case %zu rejected: %s", i, err);
        assert_int_equal(st_count(m), ok[i].count);
        st_close(m);
        free(img);
    }
    /* iteration is by offset: a (F4 at 0) before b */
    size_t len;
    uint8_t *img = image(ok[5].header, NULL, ok[5].ndata, &len);
    st_model *m = st_parse_buffer(img, len, "f", err, sizeof err);
    assert_string_equal(st_name_at(m, 0), "a");
    assert_string_equal(st_name_at(m, 1), "b");
    st_close(m);
    free(img);
}

/* ------------------------------------------------- the dying API (forked) */

static void open_path(void *p) { st_open(p); }
static char *g_path;
static void read_wrong_shape(void *p) {
    st_model *m = st_open(g_path);
    int64_t sh[2] = {7, 6};
    float y[42];
    st_read_f32(m, p, y, 2, sh);
}
static void read_int(void *p) {
    st_model *m = st_open(p);
    int64_t sh = 1;
    float y[1];
    st_read_f32(m, "i", y, 1, &sh);
}
static void write_dup(void *p) {
    float x[1] = {0};
    st_tensor t[2] = {{.name = "a", .ndim = 1, .shape = {1}, .data = x}, {.name = "a", .ndim = 1, .shape = {1}, .data = x}};
    st_write(p, t, 2, ST_F32);
}
static void write_neg(void *p) {
    float x[1] = {0};
    st_tensor t = {.name = "a", .ndim = 2, .shape = {1, -1}, .data = x};
    st_write(p, &t, 1, ST_BF16);
}

static void test_die_messages(void **s) {
    (void)s;
    char *rt = tpath("rt32.safetensors");
    float x[42] = {0};
    st_tensor t = {.name = "model.layers.0.w", .ndim = 2, .shape = {6, 7}, .data = x};
    st_write(rt, &t, 1, ST_F32);
    g_path = rt;
    expect_die(read_wrong_shape, "model.layers.0.w", "tensor model.layers.0.w: shape [6, 7] but expected [7, 6]", rt);
    expect_die(read_wrong_shape, "model.norm.weight", "no tensor 'model.norm.weight'", NULL);
    char *hand = tpath("hand.safetensors");  /* written by test_f16_f64_read */
    expect_die(read_int, hand, "tensor i: dtype I64 cannot be read as float", NULL);
    char *missing = tpath("nope.safetensors");
    expect_die(open_path, missing, "nope.safetensors: cannot open", NULL);
    expect_die(open_path, tmpdir, "no model.safetensors or model.safetensors.index.json", NULL);
    /* a truncated file names the file and the problem */
    size_t n;
    char *b = wdl_read_file(rt, &n);
    char *trunc = tpath("trunc.safetensors");
    write_bytes(trunc, b, n - 1);
    expect_die(open_path, trunc, "trunc.safetensors: truncated: the tensors need 168 data bytes but the file has 167", NULL);
    write_bytes(trunc, b, 5);
    expect_die(open_path, trunc, "truncated: 5 bytes", NULL);
    write_bytes(trunc, "", 0);
    expect_die(open_path, trunc, "truncated: 0 bytes", NULL);
    free(b);
    /* bad writes die and leave neither the output nor a temporary */
    char *out = tpath("bad.safetensors");
    expect_die(write_dup, out, "duplicate tensor name a", NULL);
    expect_die(write_neg, out, "tensor a: negative dimension", NULL);
    assert_false(wdl_exists(out));
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while ((e = readdir(d))) assert_null(strstr(e->d_name, ".tmp."));
    closedir(d);
    free(rt); free(hand); free(missing); free(trunc); free(out);
}

static void write_nodir(void *p) {
    float x[1] = {0};
    st_tensor t = {.name = "a", .ndim = 1, .shape = {1}, .data = x};
    st_write(p, &t, 1, ST_F32);
}
static void test_write_error(void **s) {
    (void)s;
    char *nodir = tpath("no/such/dir/x.safetensors");
    expect_die(write_nodir, nodir, "cannot create", NULL);
    free(nodir);
}

/* ---------------------------------------------------------------- shards */

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

static char *make_sharded(const char *name) {
    char *dir = tpath(name);
    wdl_mkdirs(dir);
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {7, 8}, c[3] = {9, 10, 11};
    st_tensor s1[] = {{.name = "w.a", .ndim = 2, .shape = {2, 3}, .data = a}, {.name = "w.b", .ndim = 1, .shape = {2}, .data = b}};
    st_tensor s2[] = {{.name = "w.c", .ndim = 1, .shape = {3}, .data = c}};
    char *p1 = wdl_path_join(dir, "model-00001-of-00002.safetensors"), *p2 = wdl_path_join(dir, "model-00002-of-00002.safetensors");
    st_write(p1, s1, 2, ST_BF16);
    st_write(p2, s2, 1, ST_F32);
    free(p1); free(p2);
    return dir;
}

static void write_index(const char *dir, const char *wm) {
    char *p = wdl_path_join(dir, "model.safetensors.index.json"), text[1024];
    snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 36}, \"weight_map\": {%s}}", wm);
    write_text(p, text);
    free(p);
}

#define S1 "\"model-00001-of-00002.safetensors\""
#define S2 "\"model-00002-of-00002.safetensors\""

static void test_sharded(void **s) {
    (void)s;
    char *dir = make_sharded("sharded");
    write_index(dir, "\"w.c\": " S2 ", \"w.a\": " S1 ", \"w.b\": " S1);
    char *idx = wdl_path_join(dir, "model.safetensors.index.json");
    for (int k = 0; k < 2; k++) {
        st_model *m = st_open(k ? idx : dir);
        assert_int_equal(st_count(m), 3);
        assert_string_equal(st_name_at(m, 0), "w.a");  /* shard order, then offsets */
        assert_string_equal(st_name_at(m, 2), "w.c");
        float y[6];
        int64_t sa[2] = {2, 3}, sb = 2, sc = 3;
        st_read_f32(m, "w.a", y, 2, sa);
        for (int i = 0; i < 6; i++) assert_true(y[i] == i + 1);
        st_read_f32(m, "w.b", y, 1, &sb);
        assert_true(y[0] == 7 && y[1] == 8);
        st_read_f32(m, "w.c", y, 1, &sc);
        assert_true(y[0] == 9 && y[2] == 11);
        assert_int_equal(st_find(m, "w.a")->dtype, ST_BF16);
        assert_int_equal(st_find(m, "w.c")->dtype, ST_F32);
        assert_non_null(strstr(st_find(m, "w.c")->file, "model-00002-of-00002.safetensors"));
        assert_string_equal(st_metadata(m, "format"), "pt");
        st_close(m);
    }
    /* a model.safetensors beside the index wins */
    float z[1] = {42};
    st_tensor t = {.name = "single", .ndim = 1, .shape = {1}, .data = z};
    char *single = wdl_path_join(dir, "model.safetensors");
    st_write(single, &t, 1, ST_F32);
    st_model *m = st_open(dir);
    assert_int_equal(st_count(m), 1);
    assert_true(st_has(m, "single"));
    st_close(m);
    free(single); free(idx); free(dir);
}

static void test_sharded_errors(void **s) {
    (void)s;
    static const struct { const char *wm; const char *needle; } bad[] = {
        {"\"w.c\": " S1 ", \"w.a\": " S1 ", \"w.b\": " S1, "weight_map: w.c: not found in model-00001-of-00002.safetensors"},
        {"\"w.a\": " S1 ", \"w.c\": " S2, "tensor w.b is not listed in"},
        {"\"w.a\": " S2 ", \"w.b\": " S1 ", \"w.c\": " S2, "weight_map: w.a: listed in model-00002-of-00002.safetensors but found in model-00001-of-00002.safetensors"},
        {"\"w.a\": " S1 ", \"w.b\": " S1 ", \"w.c\": " S2 ", \"w.d\": " S2, "weight_map: w.d: not found in model-00002-of-00002.safetensors"},
        {"\"w.a\": " S1 ", \"w.b\": " S1 ", \"w.c\": \"../x.safetensors\"", "bad shard file name '../x.safetensors'"},
        {"\"w.a\": " S1 ", \"w.b\": " S1 ", \"w.c\": \"/etc/passwd\"", "bad shard file name"},
        {"\"w.a\": " S1 ", \"w.b\": " S1 ", \"w.c\": 3", "weight_map: w.c: not a string"},
        {"\"w.a\": " S1 ", \"w.b\": " S1 ", \"w.c\": \"absent.safetensors\"", "absent.safetensors: cannot open"},
        {"", "weight_map is empty"},
        {"\"w.a\": " S1 ", \"w.a\": " S1, "duplicate"},
    };
    char *dir = make_sharded("sharded_bad");
    char *idx = wdl_path_join(dir, "model.safetensors.index.json");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_index(dir, bad[i].wm);
        expect_die(open_path, dir, bad[i].needle, NULL);
    }
    write_text(idx, "{\"weight_map\": []}");
    expect_die(open_path, idx, "weight_map is not an object", NULL);
    write_text(idx, "{\"metadata\": {}}");
    expect_die(open_path, idx, "no weight_map", NULL);
    write_text(idx, "{\"weight_map\": \n{");
    expect_die(open_path, idx, "model.safetensors.index.json: 2: invalid JSON", NULL);
    /* the same tensor in two shards */
    float a[1] = {0};
    st_tensor t = {.name = "w.a", .ndim = 1, .shape = {1}, .data = a};
    char *p3 = wdl_path_join(dir, "extra.safetensors");
    st_write(p3, &t, 1, ST_F32);
    write_index(dir, "\"w.a\": " S1 ", \"w.b\": " S1 ", \"w.c\": " S2 ", \"x\": \"extra.safetensors\"");
    expect_die(open_path, dir, "tensor w.a is in both", NULL);
    free(p3); free(idx); free(dir);
}

int main(int argc, char **argv) {
    (void)argc;
    wdl_set_prog(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_cases),    cmocka_unit_test(test_bf16_nearest),
        cmocka_unit_test(test_f16_cases),     cmocka_unit_test(test_roundtrip_f32),
        cmocka_unit_test(test_roundtrip_bf16), cmocka_unit_test(test_f16_write),
        cmocka_unit_test(test_header_layout), cmocka_unit_test(test_f16_f64_read),
        cmocka_unit_test(test_validation),    cmocka_unit_test(test_valid_corners),
        cmocka_unit_test(test_die_messages),  cmocka_unit_test(test_write_error),
        cmocka_unit_test(test_sharded),       cmocka_unit_test(test_sharded_errors),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
