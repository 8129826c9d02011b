/* safetensors.c: see safetensors.h. The parser never dies: it returns an
 * error string, so the fuzzer can drive it; the public st_open wraps it
 * with die(). */
#include "safetensors.h"
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define ST_MAX_HEADER 100000000ULL  /* the reference implementation's cap */

/* ---------------------------------------------------------------- dtypes */
typedef struct { const char *name; int bits; st_dtype kind; } dtype_def;
/* Every dtype of the spec; sub-byte ones count bits. */
static const dtype_def DTYPES[] = {
    {"F32", 32, ST_F32}, {"F16", 16, ST_F16}, {"BF16", 16, ST_BF16}, {"F64", 64, ST_F64},
    {"BOOL", 8, ST_OTHER}, {"U8", 8, ST_OTHER}, {"I8", 8, ST_OTHER},
    {"F8_E5M2", 8, ST_OTHER}, {"F8_E4M3", 8, ST_OTHER}, {"F8_E8M0", 8, ST_OTHER},
    {"I16", 16, ST_OTHER}, {"U16", 16, ST_OTHER}, {"I32", 32, ST_OTHER}, {"U32", 32, ST_OTHER},
    {"I64", 64, ST_OTHER}, {"U64", 64, ST_OTHER}, {"C64", 64, ST_OTHER},
    {"F4", 4, ST_OTHER}, {"F6_E2M3", 6, ST_OTHER}, {"F6_E3M2", 6, ST_OTHER},
};
static const dtype_def *dtype_lookup(const char *s) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof *DTYPES; i++)
        if (!strcmp(DTYPES[i].name, s)) return &DTYPES[i];
    return NULL;
}

/* ----------------------------------------------------------- conversions */
static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }


float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return u2f(sign | 0x7f800000u | (man << 13));
    if (exp != 0) return u2f(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return u2f(sign);
    uint32_t e = 113;  /* subnormal: normalise */
    while (!(man & 0x400u)) { man <<= 1; e--; }
    return u2f(sign | (e << 23) | ((man & 0x3ffu) << 13));
}

uint16_t st_f32_to_f16(float f) {
    uint32_t u = f2u(f), a = u & 0x7fffffffu;
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x1ffu);
    if (a >= 0x477ff000u) return sign | 0x7c00u;  /* >= 65520 rounds to inf */
    if (a >= 0x38800000u) {                       /* normal half */
        uint32_t h = (a >> 13) - (112u << 10), r = a & 0x1fffu;
        if (r > 0x1000u || (r == 0x1000u && (h & 1u))) h++;
        return sign | (uint16_t)h;
    }
    if (a <= 0x33000000u) return sign;            /* <= 2^-25 rounds to 0 */
    uint32_t m = (a & 0x7fffffu) | 0x800000u, shift = 126u - (a >> 23);
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

/* ------------------------------------------------------------ the model */
typedef struct {
    char *path;
    const uint8_t *base;  /* the whole file */
    size_t len;
    int mapped;
    char **meta;          /* key, value, key, value ... */
    size_t nmeta;
} st_file;

typedef struct {
    st_info info;
    uint64_t begin, end;
    size_t file;
    const uint8_t *data;
} st_entry;

struct st_model {
    char *path;           /* what the user opened, for messages */
    st_file *files;
    size_t nfiles;
    st_entry *t;          /* iteration order */
    size_t n;
    size_t *by_name;      /* indices of t sorted by name */
};

static void model_free(st_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->nfiles; i++) {
        st_file *f = &m->files[i];
        if (f->mapped && f->len) munmap((void *)f->base, f->len);
        for (size_t k = 0; k < 2 * f->nmeta; k++) free(f->meta[k]);
        free(f->meta);
        free(f->path);
    }
    for (size_t i = 0; i < m->n; i++) {
        free((char *)m->t[i].info.name);
        free((int64_t *)m->t[i].info.shape);
    }
    free(m->files); free(m->t); free(m->by_name); free(m->path);
    free(m);
}
void st_close(st_model *m) { model_free(m); }

/* "origin: message" into err; always returns -1. Control characters from
 * the file (tensor names) are replaced so the message stays one line. */
static int fail(char *err, size_t errlen, const char *origin, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, const char *origin, const char *fmt, ...) {
    if (!err || !errlen) return -1;
    int k = snprintf(err, errlen, "%s: ", origin);
    if (k >= 0 && (size_t)k < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + k, errlen - k, fmt, ap);
        va_end(ap);
    }
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?';
    return -1;
}

/* A short printable copy of a name for messages. */
static const char *shown(const char *s, char buf[80]) {
    size_t n = strlen(s);
    if (n < 72) return s;
    snprintf(buf, 80, "%.60s...", s);
    return buf;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* A JSON integer >= 0, as uint64. */
static int get_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int entry_cmp_offset(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Parse __metadata__: null or an object of strings. */
static int parse_meta(st_file *f, const json_t *v, char *err, size_t errlen) {
    if (json_is_null(v)) return 0;
    if (!json_is_object(v)) return fail(err, errlen, f->path, "__metadata__ is not an object");
    f->meta = xcalloc(2 * json_object_size(v) + 1, sizeof(char *));
    const char *k;
    json_t *s;
    json_object_foreach((json_t *)v, k, s) {
        char b[80];
        if (!json_is_string(s))
            return fail(err, errlen, f->path, "__metadata__: value of '%s' is not a string", shown(k, b));
        f->meta[2 * f->nmeta] = xstrdup(k);
        f->meta[2 * f->nmeta + 1] = xstrdup(json_string_value(s));
        f->nmeta++;
    }
    return 0;
}

/* Parse one tensor description into e (name and shape are allocated into e
 * as soon as known, so the caller frees them on error too). */
static int parse_tensor(const char *path, const char *name, const json_t *v, st_entry *e,
                        char *err, size_t errlen) {
    char b[80];
    const char *nm = shown(name, b);
    e->info.name = xstrdup(name);
    if (!json_is_object(v)) return fail(err, errlen, path, "tensor %s: description is not an object", nm);
    const json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
                 *jo = json_object_get(v, "data_offsets");
    if (!jd) return fail(err, errlen, path, "tensor %s: no dtype", nm);
    if (!json_is_string(jd)) return fail(err, errlen, path, "tensor %s: dtype is not a string", nm);
    const dtype_def *dt = dtype_lookup(json_string_value(jd));
    if (!dt) {
        char b2[80];
        return fail(err, errlen, path, "tensor %s: unknown dtype '%s'", nm, shown(json_string_value(jd), b2));
    }
    e->info.dtype_name = dt->name;
    e->info.dtype = dt->kind;
    if (!js) return fail(err, errlen, path, "tensor %s: no shape", nm);
    if (!json_is_array(js)) return fail(err, errlen, path, "tensor %s: shape is not an array", nm);
    size_t nd = json_array_size(js);
    if (nd > 64) return fail(err, errlen, path, "tensor %s: rank %zu is too large", nm, nd);
    int64_t *shape = xcalloc(nd + 1, sizeof(int64_t));
    e->info.shape = shape;
    e->info.ndim = (int)nd;
    uint64_t nelem = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (get_u64(json_array_get(js, i), &d))
            return fail(err, errlen, path, "tensor %s: shape[%zu] is not a non-negative integer", nm, i);
        shape[i] = (int64_t)d;
        if (d && nelem > UINT64_MAX / d)
            return fail(err, errlen, path, "tensor %s: shape overflows", nm);
        nelem *= d;
    }
    if (nelem > UINT64_MAX / (uint64_t)dt->bits)
        return fail(err, errlen, path, "tensor %s: shape overflows", nm);
    uint64_t nbits = nelem * (uint64_t)dt->bits;
    if (nbits % 8)
        return fail(err, errlen, path, "tensor %s: %llu elements of %s do not fill whole bytes",
                    nm, (unsigned long long)nelem, dt->name);
    e->info.nelem = nelem;
    e->info.nbytes = nbits / 8;
    if (!jo) return fail(err, errlen, path, "tensor %s: no data_offsets", nm);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || get_u64(json_array_get(jo, 0), &e->begin) ||
        get_u64(json_array_get(jo, 1), &e->end))
        return fail(err, errlen, path, "tensor %s: data_offsets is not a pair of non-negative integers", nm);
    if (e->end < e->begin)
        return fail(err, errlen, path, "tensor %s: data_offsets [%llu, %llu] end before they begin", nm,
                    (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin != e->info.nbytes) {
        char sb[200];
        shape_str(sb, sizeof sb, e->info.ndim, shape);
        return fail(err, errlen, path,
                    "tensor %s: data_offsets [%llu, %llu] (%llu bytes) do not match %s shape %s (%llu bytes)",
                    nm, (unsigned long long)e->begin, (unsigned long long)e->end,
                    (unsigned long long)(e->end - e->begin), dt->name, sb,
                    (unsigned long long)e->info.nbytes);
    }
    return 0;
}

/* Validate the file f (already in memory) and append its tensors to m. */
static int parse_file(st_model *m, size_t fi, char *err, size_t errlen) {
    st_file *f = &m->files[fi];
    const char *path = f->path;
    if (f->len < 8)
        return fail(err, errlen, path, "truncated: %zu bytes, too short for the 8-byte header length", f->len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->base[i];
    if (n > ST_MAX_HEADER)
        return fail(err, errlen, path, "header length %llu exceeds the limit of %llu bytes",
                    (unsigned long long)n, ST_MAX_HEADER);
    if (n > f->len - 8)
        return fail(err, errlen, path, "truncated: header length %llu but only %zu bytes follow",
                    (unsigned long long)n, f->len - 8);
    if (n == 0 || f->base[8] != '{') return fail(err, errlen, path, "header does not start with '{'");
    json_error_t je;
    json_t *root = json_loadb((const char *)f->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(err, errlen, path, "header is not valid JSON: %s (at byte %d)", je.text, 8 + je.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(err, errlen, path, "header is not a JSON object");
    }
    size_t first = m->n, cap = json_object_size(root);
    m->t = xrealloc(m->t, (m->n + cap + 1) * sizeof(st_entry));
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if ((rc = parse_meta(f, v, err, errlen))) break;
            continue;
        }
        st_entry *e = &m->t[m->n++];
        memset(e, 0, sizeof *e);
        e->file = fi;
        e->info.file = f->path;
        if ((rc = parse_tensor(path, key, v, e, err, errlen))) break;
    }
    json_decref(root);
    if (rc) return rc;
    /* offsets must tile [0, data size) exactly, in some order */
    qsort(m->t + first, m->n - first, sizeof(st_entry), entry_cmp_offset);
    uint64_t at = 0, have = f->len - 8 - n;
    for (size_t i = first; i < m->n; i++) {
        st_entry *e = &m->t[i];
        char b[80];
        if (e->begin != at)
            return fail(err, errlen, path, "tensor %s: data_offsets begin at %llu, expected %llu (%s)",
                        shown(e->info.name, b), (unsigned long long)e->begin, (unsigned long long)at,
                        e->begin > at ? "a hole before it" : "it overlaps the previous tensor");
        at = e->end;
    }
    if (at > have)
        return fail(err, errlen, path, "truncated: the tensors need %llu data bytes but the file has %llu",
                    (unsigned long long)at, (unsigned long long)have);
    if (at < have)
        return fail(err, errlen, path, "%llu bytes after the last tensor (data is %llu bytes, tensors cover %llu)",
                    (unsigned long long)(have - at), (unsigned long long)have, (unsigned long long)at);
    const uint8_t *data = f->base + 8 + n;
    for (size_t i = first; i < m->n; i++) m->t[i].data = data + m->t[i].begin;
    return 0;
}

/* by_name index; the caller has guaranteed unique names per file, so a
 * duplicate here means two shards hold the same tensor. */
static int by_name_cmp(const void *a, const void *b, void *ctx) {
    const st_model *m = ctx;
    return strcmp(m->t[*(const size_t *)a].info.name, m->t[*(const size_t *)b].info.name);
}
static int build_index(st_model *m, char *err, size_t errlen) {
    m->by_name = xmalloc((m->n + 1) * sizeof(size_t));
    for (size_t i = 0; i < m->n; i++) m->by_name[i] = i;
    qsort_r(m->by_name, m->n, sizeof(size_t), by_name_cmp, m);
    for (size_t i = 1; i < m->n; i++) {
        const st_entry *a = &m->t[m->by_name[i - 1]], *b = &m->t[m->by_name[i]];
        char nb[80];
        if (!strcmp(a->info.name, b->info.name))
            return fail(err, errlen, m->path, "tensor %s is in both %s and %s", shown(a->info.name, nb),
                        a->info.file, b->info.file);
    }
    return 0;
}

st_model *st_parse_buffer(const void *buf, size_t len, const char *origin, char *err, size_t errlen) {
    st_model *m = xcalloc(1, sizeof *m);
    m->path = xstrdup(origin);
    m->files = xcalloc(1, sizeof(st_file));
    m->nfiles = 1;
    m->files[0].path = xstrdup(origin);
    m->files[0].base = buf;
    m->files[0].len = len;
    if (parse_file(m, 0, err, errlen) || build_index(m, err, errlen)) { model_free(m); return NULL; }
    return m;
}

/* Map a file read-only into f. */
static int map_file(st_file *f, char *err, size_t errlen) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(err, errlen, f->path, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return fail(err, errlen, f->path, "not a regular file");
    }
    f->len = (size_t)sb.st_size;
    if (f->len == 0) { close(fd); f->base = (const uint8_t *)""; return 0; }
    void *p = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) { f->len = 0; return fail(err, errlen, f->path, "cannot map: %s", strerror(e)); }
    f->base = p;
    f->mapped = 1;
    return 0;
}

/* ------------------------------------------------------------- the index */
static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A shard name must stay inside the model directory. */
static int bad_shard_name(const char *s) {
    if (!*s || *s == '/') return 1;
    for (const char *p = s; *p;) {
        const char *q = strchr(p, '/');
        size_t k = q ? (size_t)(q - p) : strlen(p);
        if (k == 0 || (k == 2 && !strncmp(p, "..", 2)) || (k == 1 && *p == '.')) return 1;
        p += k + (q ? 1 : 0);
        if (q && !*p) return 1;
    }
    return 0;
}

int st_index_parse(const char *text, size_t len, const char *origin, size_t *n_out,
                   char ***names_out, char ***files_out, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return fail(err, errlen, origin, "%d: invalid JSON: %s", je.line, je.text);
    int rc = 0;
    const json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    const json_t *md = json_is_object(root) ? json_object_get(root, "metadata") : NULL;
    if (!json_is_object(root)) rc = fail(err, errlen, origin, "not a JSON object");
    else if (!wm) rc = fail(err, errlen, origin, "no weight_map");
    else if (!json_is_object(wm)) rc = fail(err, errlen, origin, "weight_map is not an object");
    else if (json_object_size(wm) == 0) rc = fail(err, errlen, origin, "weight_map is empty");
    else if (md && !json_is_object(md) && !json_is_null(md)) rc = fail(err, errlen, origin, "metadata is not an object");
    size_t n = 0;
    char **names = NULL, **files = NULL;
    if (!rc) {
        names = xcalloc(json_object_size(wm) + 1, sizeof(char *));
        files = xcalloc(json_object_size(wm) + 1, sizeof(char *));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)wm, k, v) {
            char b[80];
            if (!json_is_string(v)) { rc = fail(err, errlen, origin, "weight_map: %s: not a string", shown(k, b)); break; }
            if (bad_shard_name(json_string_value(v))) {
                char b2[80];
                rc = fail(err, errlen, origin, "weight_map: %s: bad shard file name '%s'", shown(k, b),
                          shown(json_string_value(v), b2));
                break;
            }
            names[n] = xstrdup(k);
            files[n] = xstrdup(json_string_value(v));
            n++;
        }
    }
    json_decref(root);
    if (rc || !names_out || !files_out) {
        for (size_t i = 0; i < n; i++) { free(names[i]); free(files[i]); }
        free(names); free(files);
        if (!rc && n_out) *n_out = n;
        return rc;
    }
    /* sort both arrays by name (names are unique: duplicates were rejected) */
    char **pairs = xmalloc((2 * n + 1) * sizeof(char *));
    size_t *ord = xmalloc((n + 1) * sizeof(size_t));
    for (size_t i = 0; i < n; i++) pairs[i] = names[i];
    qsort(pairs, n, sizeof(char *), str_cmp);
    for (size_t i = 0; i < n; i++)  /* recover the file for each sorted name */
        for (size_t j = 0; j < n; j++)
            if (names[j] == pairs[i]) { ord[i] = j; break; }
    char **sf = xmalloc((n + 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++) sf[i] = files[ord[i]];
    memcpy(names, pairs, n * sizeof(char *));
    free(files); free(pairs); free(ord);
    *n_out = n;
    *names_out = names;
    *files_out = sf;
    return 0;
}

static int open_index(st_model *m, const char *path, char *err, size_t errlen) {
    size_t len, n;
    char *text = wdl_read_file(path, &len), **names, **files;
    int rc = st_index_parse(text, len, path, &n, &names, &files, err, errlen);
    free(text);
    if (rc) return rc;
    /* distinct shard files, sorted */
    char **shards = xmalloc((n + 1) * sizeof(char *));
    memcpy(shards, files, n * sizeof(char *));
    qsort(shards, n, sizeof(char *), str_cmp);
    size_t ns = 0;
    for (size_t i = 0; i < n; i++)
        if (!ns || strcmp(shards[ns - 1], shards[i])) shards[ns++] = shards[i];
    char *dcopy = xstrdup(path);
    const char *dir = dirname(dcopy);
    m->files = xcalloc(ns, sizeof(st_file));
    for (size_t s = 0; s < ns && !rc; s++) {
        st_file *f = &m->files[m->nfiles++];
        f->path = wdl_path_join(dir, shards[s]);
        rc = map_file(f, err, errlen);
        if (!rc) rc = parse_file(m, s, err, errlen);
    }
    if (!rc) rc = build_index(m, err, errlen);
    /* every listed tensor is in its shard, and every shard tensor is listed */
    for (size_t i = 0; i < n && !rc; i++) {
        const st_info *t = st_find(m, names[i]);
        char b[80];
        if (!t)
            rc = fail(err, errlen, path, "weight_map: %s: not found in %s", shown(names[i], b), files[i]);
        else if (strcmp(shards[((const st_entry *)t)->file], files[i]))
            rc = fail(err, errlen, path, "weight_map: %s: listed in %s but found in %s", shown(names[i], b),
                      files[i], shards[((const st_entry *)t)->file]);
    }
    if (!rc && m->n != n) {
        for (size_t i = 0; i < m->n; i++) {
            const char **hit = bsearch(&m->t[i].info.name, names, n, sizeof(char *), str_cmp);
            char b[80];
            if (!hit) { rc = fail(err, errlen, m->t[i].info.file, "tensor %s is not listed in %s",
                                  shown(m->t[i].info.name, b), path); break; }
        }
    }
    for (size_t i = 0; i < n; i++) { free(names[i]); free(files[i]); }
    free(names); free(files); free(shards); free(dcopy);
    return rc;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

st_model *st_open(const char *path) {
    char err[1024];
    st_model *m = xcalloc(1, sizeof *m);
    char *target = NULL;
    int index = 0;
    if (wdl_is_dir(path)) {
        target = wdl_path_join(path, "model.safetensors");
        if (!wdl_exists(target)) {
            free(target);
            target = wdl_path_join(path, "model.safetensors.index.json");
            index = 1;
            if (!wdl_exists(target))
                die("%s: no model.safetensors or model.safetensors.index.json in this directory", path);
        }
    } else {
        target = xstrdup(path);
        index = ends_with(path, ".json");
    }
    m->path = target;
    int rc;
    if (index) {
        rc = open_index(m, target, err, sizeof err);
    } else {
        m->files = xcalloc(1, sizeof(st_file));
        m->nfiles = 1;
        m->files[0].path = xstrdup(target);
        rc = map_file(&m->files[0], err, sizeof err);
        if (!rc) rc = parse_file(m, 0, err, sizeof err);
        if (!rc) rc = build_index(m, err, sizeof err);
    }
    if (rc) { model_free(m); die("%s", err); }
    return m;
}

/* ---------------------------------------------------------------- lookup */
const st_info *st_find(const st_model *m, const char *name) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->t[m->by_name[mid]].info.name, name);
        if (c == 0) return &m->t[m->by_name[mid]].info;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}
int st_has(const st_model *m, const char *name) { return st_find(m, name) != NULL; }
size_t st_count(const st_model *m) { return m->n; }
const st_info *st_at(const st_model *m, size_t i) { return i < m->n ? &m->t[i].info : NULL; }
const char *st_name_at(const st_model *m, size_t i) { return i < m->n ? m->t[i].info.name : NULL; }

const char *st_metadata(const st_model *m, const char *key) {
    for (size_t i = 0; i < m->nfiles; i++)
        for (size_t k = 0; k < m->files[i].nmeta; k++)
            if (!strcmp(m->files[i].meta[2 * k], key)) return m->files[i].meta[2 * k + 1];
    return NULL;
}

/* st_info is the first member of st_entry */
const void *st_raw(const st_model *m, const st_info *info) { return ((const st_entry *)info)->data; }

const st_info *st_expect(const st_model *m, const char *name, int ndim, const int64_t *shape) {
    const st_info *t = st_find(m, name);
    if (!t) die("%s: no tensor '%s'", m->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char a[256], b[256];
        shape_str(a, sizeof a, t->ndim, t->shape);
        shape_str(b, sizeof b, ndim, shape);
        die("%s: tensor %s: shape %s but expected %s", t->file, name, a, b);
    }
    return t;
}

void st_read_f32(const st_model *m, const char *name, float *dst, int ndim, const int64_t *shape) {
    const st_info *t = st_expect(m, name, ndim, shape);
    if (t->dtype == ST_OTHER)
        die("%s: tensor %s: dtype %s cannot be read as float (F32, F16, BF16, F64 can)", t->file, name,
            t->dtype_name);
    const uint8_t *src = st_raw(m, t);
    int64_t n = (int64_t)t->nelem;
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(dst, src, (size_t)n * 4);
        break;
    case ST_BF16:
#pragma omp parallel for if (n > (1 << 20)) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = st_bf16_to_f32(h);
        }
        break;
    case ST_F16:
#pragma omp parallel for if (n > (1 << 20)) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = st_f16_to_f32(h);
        }
        break;
    case ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    default:
        break;
    }
}

/* --------------------------------------------------------------- writing */
static void check_tensors(const char *path, const st_tensor *t, size_t n, uint64_t *nelem) {
    for (size_t i = 0; i < n; i++) {
        if (!t[i].name || !*t[i].name) die("%s: tensor %zu has no name", path, i);
        if (!strcmp(t[i].name, "__metadata__")) die("%s: '__metadata__' is not a tensor name", path);
        if (t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS) die("%s: tensor %s: rank %d out of range", path, t[i].name, t[i].ndim);
        uint64_t e = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            if (t[i].shape[d] < 0) die("%s: tensor %s: negative dimension", path, t[i].name);
            uint64_t s = (uint64_t)t[i].shape[d];
            if (s && e > (UINT64_MAX / 8) / s) die("%s: tensor %s: shape overflows", path, t[i].name);
            e *= s;
        }
        if (e && !t[i].data) die("%s: tensor %s: no data", path, t[i].name);
        nelem[i] = e;
    }
    const char **names = xmalloc((n + 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++) names[i] = t[i].name;
    qsort(names, n, sizeof(char *), str_cmp);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) die("%s: duplicate tensor name %s", path, names[i]);
    free(names);
}

/* The header JSON, unpadded. */
static char *build_header(const char *path, const st_tensor *t, size_t n, const uint64_t *nelem, st_dtype dtype,
                          const char *const *meta, size_t nmeta) {
    const char *dname = dtype == ST_F32 ? "F32" : dtype == ST_BF16 ? "BF16" : "F16";
    size_t esz = dtype == ST_F32 ? 4 : 2;
    json_t *root = json_object(), *md = json_object();
    json_object_set_new(md, "format", json_string("pt"));
    for (size_t i = 0; i < nmeta; i++) {
        if (!meta[2 * i] || !meta[2 * i + 1]) die("%s: metadata pair %zu is incomplete", path, i);
        if (!strcmp(meta[2 * i], "format")) die("%s: metadata key 'format' is reserved", path);
        json_t *s = json_string(meta[2 * i + 1]);
        if (!s || json_object_set_new(md, meta[2 * i], s))
            die("%s: metadata %s: not valid UTF-8", path, meta[2 * i]);
    }
    json_object_set_new(root, "__metadata__", md);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *shape = json_array(), *d = json_object();
        for (int k = 0; k < t[i].ndim; k++) json_array_append_new(shape, json_integer(t[i].shape[k]));
        uint64_t bytes = nelem[i] * esz;
        json_object_set_new(d, "dtype", json_string(dname));
        json_object_set_new(d, "shape", shape);
        json_object_set_new(d, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes)));
        if (json_object_set_new(root, t[i].name, d)) die("%s: tensor name %s is not valid UTF-8", path, t[i].name);
        off += bytes;
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!s) die("%s: cannot build the header", path);
    return s;
}

static void write_all(FILE *f, const void *p, size_t n, const char *path) {
    if (n && fwrite(p, 1, n, f) != n) die("%s: write error: %s", path, strerror(errno));
}

void st_write_meta(const char *path, const st_tensor *t, size_t n, st_dtype dtype,
                   const char *const *meta, size_t nmeta) {
    if (dtype != ST_F32 && dtype != ST_BF16 && dtype != ST_F16)
        die("%s: can only write F32, BF16 or F16", path);
    uint64_t *nelem = xmalloc((n + 1) * sizeof(uint64_t));
    check_tensors(path, t, n, nelem);
    char *hdr = build_header(path, t, n, nelem, dtype, meta, nmeta);
    size_t hlen = strlen(hdr), padded = (8 + hlen + 63) / 64 * 64 - 8;
    char *tmp = wdl_tmp_name(path);
    wdl_tmp_register(tmp);
    FILE *f = fopen(tmp, "wb");
    if (!f) die("%s: cannot create: %s", tmp, strerror(errno));
    char *iobuf = xmalloc(1 << 20);
    setvbuf(f, iobuf, _IOFBF, 1 << 20);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    write_all(f, len8, 8, path);
    write_all(f, hdr, hlen, path);
    for (size_t i = hlen; i < padded; i++) putc(' ', f);
    free(hdr);
    enum { CHUNK = 1 << 16 };
    uint16_t *buf = dtype == ST_F32 ? NULL : xmalloc(CHUNK * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) {
        const float *x = t[i].data;
        if (dtype == ST_F32) { write_all(f, x, nelem[i] * 4, path); continue; }
        for (uint64_t at = 0; at < nelem[i]; at += CHUNK) {
            size_t k = nelem[i] - at < CHUNK ? (size_t)(nelem[i] - at) : CHUNK;
            for (size_t j = 0; j < k; j++)
                buf[j] = dtype == ST_BF16 ? st_f32_to_bf16(x[at + j]) : st_f32_to_f16(x[at + j]);
            write_all(f, buf, k * 2, path);
        }
    }
    free(buf);
    free(nelem);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) die("%s: write error: %s", path, strerror(errno));
    if (fclose(f) != 0) die("%s: write error: %s", path, strerror(errno));
    free(iobuf);
    wdl_commit(tmp, path);
    free(tmp);
}

void st_write(const char *path, const st_tensor *t, size_t n, st_dtype dtype) {
    st_write_meta(path, t, n, dtype, NULL, 0);
}
