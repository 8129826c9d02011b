/* safetensors.h: read and write Hugging Face .safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON header
 * ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}), then the raw little-endian tensor bytes.
 *
 * Reading validates the header as strictly as the reference implementation
 * (contiguous offsets from 0, sizes that match dtype x shape, no overflow,
 * the data ending exactly at the end of the file) and dies with one line
 * "<file>: <problem>" on any violation. A model is one file, or every shard
 * listed in a model.safetensors.index.json. Files are mapped with mmap. */
#ifndef WDL_SAFETENSORS_H
#define WDL_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Element types that convert to float32. Every other dtype of the spec
 * (I64, U8, F8_E4M3, ...) is accepted when validating a file but cannot be
 * read as float; ST_OTHER marks them. */
typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_OTHER } st_dtype;

typedef struct st_model st_model;

/* One tensor of an open model (pointers stay valid until st_close). */
typedef struct {
    const char *name;
    const char *dtype_name;  /* as in the header: "F32", "BF16", "I64", ... */
    st_dtype dtype;
    int ndim;
    const int64_t *shape;    /* ndim entries */
    uint64_t nelem;          /* product of shape (1 for rank 0) */
    uint64_t nbytes;
    const char *file;        /* the file (shard) holding it */
} st_info;

/* Open a .safetensors file, a model.safetensors.index.json, or a model
 * directory holding model.safetensors (preferred) or the index. Dies with
 * "<file>: <problem>" on any error. */
st_model *st_open(const char *path);
void st_close(st_model *m);

/* Lookup; NULL / 0 when absent. */
const st_info *st_find(const st_model *m, const char *name);
int st_has(const st_model *m, const char *name);

/* Iterate: shards in file-name order, tensors in data-offset order. */
size_t st_count(const st_model *m);
const st_info *st_at(const st_model *m, size_t i);
const char *st_name_at(const st_model *m, size_t i);

/* __metadata__ value of a key (of the first shard holding it), or NULL. */
const char *st_metadata(const st_model *m, const char *key);

/* Copy a tensor into dst as float32, converting F32/F16/BF16/F64 exactly
 * (F64 rounds to nearest). Dies if the tensor is absent, of a dtype that is
 * not a float, or if its shape is not exactly `shape` (ndim entries); the
 * message names the file, the tensor, the shape found and the one expected. */
void st_read_f32(const st_model *m, const char *name, float *dst, int ndim, const int64_t *shape);
/* The tensor named, after the same presence and shape checks (any dtype). */
const st_info *st_expect(const st_model *m, const char *name, int ndim, const int64_t *shape);
/* The raw little-endian bytes of a tensor (mapped read-only), info->nbytes long. */
const void *st_raw(const st_model *m, const st_info *info);

/* ---- writing ---- */
#define ST_MAX_DIMS 8
typedef struct {
    const char *name;
    int ndim;                      /* 0..ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];
    const float *data;             /* product(shape) values */
} st_tensor;

/* Write one .safetensors file atomically (temporary name, then rename),
 * tensors in the given order, every tensor stored as `dtype` (ST_F32,
 * ST_BF16 or ST_F16; rounding to nearest-even, NaN stays NaN), header
 * metadata {"format": "pt"} plus the optional key/value string pairs
 * `meta` (nmeta pairs: meta[2i] key, meta[2i+1] value), header padded with
 * spaces so the tensor data starts 64-byte aligned. Dies on a bad tensor
 * list (empty or duplicate name, bad rank or shape) or a write error. */
void st_write(const char *path, const st_tensor *t, size_t n, st_dtype dtype);
void st_write_meta(const char *path, const st_tensor *t, size_t n, st_dtype dtype,
                   const char *const *meta, size_t nmeta);

/* ---- conversions (exposed for tests and kernels) ---- */
/* Exact: a bf16 is the top half of an fp32. Inline, for the kernels'
 * scalar loops. */
static inline float st_bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* Round to nearest even, NaN kept (sign kept, quiet bit forced). Inline and
 * branch-free so that loops converting whole matrices vectorize (the bf16
 * GEMM backend converts its inputs with it). */
static inline uint16_t st_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t nan = (u >> 16) | 0x0040u, rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);    /* round to nearest even, NaN kept */

/* ---- non-dying entry points (fuzzers, tests, tools that recover) ----
 * Parse a whole safetensors file held in memory (not copied: buf must
 * outlive the model). Returns NULL and writes "<origin>: <problem>" into
 * err on failure. */
st_model *st_parse_buffer(const void *buf, size_t len, const char *origin, char *err, size_t errlen);
/* Validate model.safetensors.index.json text: returns 0, or nonzero with
 * "<origin>: <problem>" in err. On success *names and *files (if not NULL)
 * receive malloc'd arrays (free each string and the arrays) of the n
 * weight_map entries, sorted by tensor name. */
int st_index_parse(const char *text, size_t len, const char *origin, size_t *n,
                   char ***names, char ***files, char *err, size_t errlen);
#endif
