/* tokenizer.c: see tokenizer.h.
 *
 * Layout: a small in-place JSON parser (the 11 MB tokenizer.json parses in
 * a few tens of milliseconds, several times faster than jansson), the loader that
 * turns it into hash tables, then the encoder pipeline
 *   added tokens -> normalizer -> normalized added tokens -> pre-tokenizer
 *   steps (regex splits) -> byte-level BPE per piece,
 * and the decoder (a per-id byte table built at load). */
#include "tokenizer.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <utf8proc.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define MAX_STEPS 8
#define MAX_NORM 8
#define MAX_ID (1 << 24) /* ids must fit merge keys and stay sane */
#define NO_RANK UINT32_MAX
#define UNKNOWN UINT32_MAX

enum { ST_SPLIT, ST_PREFIX };
enum { B_ISOLATED, B_REMOVED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };

typedef struct { int kind, behavior, invert; pcre2_code *re; } pstep;
typedef struct {
    char *content; size_t len; int32_t id;
    char *match; size_t mlen; /* what is matched: content, normalized for normalized tokens */
    uint8_t single_word, lstrip, rstrip, normalized, special;
} added_tok;
typedef struct { uint64_t key; uint32_t rank; int32_t nw; } merge_slot;

struct wdl_tokenizer {
    int is_byte;
    int64_t vocab_size;
    /* decoding: per id, bytes at dec_buf + dec_off[id], dec_len UNKNOWN if none */
    uint32_t *dec_off, *dec_len;
    char *dec_buf;
    /* vocabulary entries (byte-level strings): records in ent_buf (see
     * vrec), ent[] indexes them, vmap hashes them */
    size_t n_ent;
    char *ent_buf;
    struct { uint32_t off, len; int32_t id; } *ent; /* off: the bytes */
    uint64_t *vmap;       /* (hash32 << 32) | (record offset / 4 + 1); 0 = empty */
    size_t vmask;
    /* per entry: does BPE of the entry's bytes give exactly that entry?
     * 0 unknown, 1 yes, 2 no. Filled lazily (idempotent, so relaxed atomics
     * make it safe from several threads). */
    _Atomic uint8_t *selfok;
    /* merges: (left, right) -> (rank, merged id) */
    merge_slot *mmap;
    size_t mmask;
    int mshift;
    int32_t byte_id[256];
    int32_t unk_id;
    int fuse_unk, ignore_merges;
    /* byte -> its byte-level character (UTF-8) */
    char bl[256][2];
    uint8_t bl_len[256];
    int16_t bl_rev[324];
    int norm[MAX_NORM], n_norm;  /* utf8proc option sets applied in order */
    pstep steps[MAX_STEPS];
    int n_steps;
    added_tok *added;
    size_t n_added;
    /* added tokens by group (0: matched on raw text, 1: on normalized
     * text), bucketed by first byte, longest first */
    uint32_t gidx[2][257];
    uint32_t *gord[2];
};

/* ---------------------------------------------------------------- utils */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        h = (h ^ x) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        s += 8; n -= 8;
    }
    uint64_t x = 0;
    memcpy(&x, s, n);
    h = (h ^ x) * 0x94d049bb133111ebull;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

/* Zeroed memory for the big hash tables: 2 MB aligned and marked for
 * transparent huge pages where the kernel allows, since random lookups in
 * them are dominated by TLB misses. Free with free(). */
static void *big_calloc(size_t n) {
    size_t al = (size_t)2 << 20;
    if (n < al) return xcalloc(1, n);
    size_t m = (n + al - 1) & ~(al - 1);
    void *p = aligned_alloc(al, m);
    if (!p) die("out of memory allocating %zu bytes", m);
#ifdef MADV_HUGEPAGE
    madvise(p, m, MADV_HUGEPAGE);
#endif
    memset(p, 0, m);
    return p;
}

static size_t pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* Length of the valid UTF-8 character at s (strict: no overlongs,
 * surrogates or code points past U+10FFFF), 0 if invalid. */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) { if (cp) *cp = c; return 1; }
    size_t len; uint32_t v; unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3; v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4; v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    v = (v << 6) | (s[1] & 0x3F);
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (cp) *cp = v;
    return len;
}

static size_t put_utf8(char *o, uint32_t u) {
    if (u < 0x80) { o[0] = (char)u; return 1; }
    if (u < 0x800) { o[0] = (char)(0xC0 | (u >> 6)); o[1] = (char)(0x80 | (u & 0x3F)); return 2; }
    if (u < 0x10000) {
        o[0] = (char)(0xE0 | (u >> 12)); o[1] = (char)(0x80 | ((u >> 6) & 0x3F));
        o[2] = (char)(0x80 | (u & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (u >> 18)); o[1] = (char)(0x80 | ((u >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((u >> 6) & 0x3F)); o[3] = (char)(0x80 | (u & 0x3F));
    return 4;
}

/* Rust's char::is_whitespace (Unicode White_Space), used by lstrip/rstrip. */
static int is_white(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}
static int is_alnum_cp(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}
/* The last character before s+n (0 when invalid or none). */
static size_t last_char(const char *s, size_t n, uint32_t *cp) {
    for (size_t k = 1; k <= 4 && k <= n; k++)
        if (((unsigned char)s[n - k] & 0xC0) != 0x80)
            return utf8_char((const unsigned char *)s + n - k, k, cp) == k ? k : 0;
    return 0;
}

/* GPT-2's byte <-> character table: printable bytes map to themselves,
 * the other 68 to U+0100.. in order. The inverse covers code points below
 * 324 (-1 where none). */
static void init_bytelevel(wdl_tokenizer *t) {
    int k = 0;
    for (int i = 0; i < 324; i++) t->bl_rev[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        uint32_t cp = keep ? (uint32_t)b : (uint32_t)(256 + k++);
        t->bl_len[b] = (uint8_t)put_utf8(t->bl[b], cp);
        t->bl_rev[cp] = (int16_t)b;
    }
}

/* HF's ByteLevel decoder: a token whose characters all belong to the
 * table becomes those bytes; any other token stays as its UTF-8 text. */
static size_t bytelevel_decode(const wdl_tokenizer *t, const char *s, size_t n, char *o) {
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_char((const unsigned char *)s + i, n - i, &cp);
        if (!l || cp >= 324 || t->bl_rev[cp] < 0) { memcpy(o, s, n); return n; }
        o[m++] = (char)t->bl_rev[cp];
        i += l;
    }
    return m;
}

/* --------------------------------------------------------- JSON parser */

enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };
/* Pre-order layout: a container's first child is the next node; siblings
 * are chained by next (0 = none; node 0 is the root). Objects alternate key
 * and value nodes; len counts members (objects), elements (arrays) or bytes
 * (strings, numbers). Strings are unescaped in place and NUL-terminated. */
typedef struct { uint32_t off, len, next; uint8_t type; } jnode;

typedef struct {
    jmp_buf jb;
    char *err; size_t errlen;
    const char *name;
    char *p, *end; long line;
    jnode *nd; size_t nn, ncap;
    char *buf;
    char *scratch; /* freed by the caller, also after a failure */
    wdl_tokenizer *t;
} lctx;

__attribute__((format(printf, 2, 3)))
static _Noreturn void jfail(lctx *c, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s:%ld: %s", c->name, c->line, msg);
    longjmp(c->jb, 1);
}
__attribute__((format(printf, 2, 3)))
static _Noreturn void lfail(lctx *c, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s", c->name, msg);
    longjmp(c->jb, 1);
}

static uint32_t jadd(lctx *c, uint8_t type, char *s, size_t len) {
    if (c->nn == c->ncap) {
        c->ncap = c->ncap ? c->ncap * 2 : 4096;
        c->nd = xrealloc(c->nd, c->ncap * sizeof *c->nd);
    }
    if (c->nn >= UINT32_MAX - 1 || len >= UINT32_MAX) jfail(c, "JSON too large");
    c->nd[c->nn] = (jnode){s ? (uint32_t)(s - c->buf) : 0, (uint32_t)len, 0, type};
    return (uint32_t)c->nn++;
}

static void jws(lctx *c) {
    for (char *p = c->p; p < c->end; p++) {
        if (*p == '\n') c->line++;
        else if (*p != ' ' && *p != '\t' && *p != '\r') { c->p = p; return; }
    }
    c->p = c->end;
}

static uint32_t hex4(lctx *c, const char *p) {
    uint32_t v = 0;
    if (c->end - p < 4) jfail(c, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= (uint32_t)(h - '0');
        else if ((h | 32) >= 'a' && (h | 32) <= 'f') v |= (uint32_t)((h | 32) - 'a' + 10);
        else jfail(c, "bad \\u escape");
    }
    return v;
}

static uint32_t jstring(lctx *c) {
    char *p = c->p + 1, *s = p, *o = p;
    for (;;) {
        if (p >= c->end) jfail(c, "unterminated string");
        unsigned char ch = (unsigned char)*p;
        if (ch == '"') break;
        if (ch < 0x20) jfail(c, "control character in a string");
        if (ch != '\\') { *o++ = *p++; continue; }
        if (p + 1 >= c->end) jfail(c, "unterminated string");
        char e = p[1];
        p += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t u = hex4(c, p);
            p += 4;
            if (u >= 0xD800 && u < 0xDC00) {
                if (c->end - p < 6 || p[0] != '\\' || p[1] != 'u') jfail(c, "lone surrogate in \\u escape");
                uint32_t l = hex4(c, p + 2);
                if (l < 0xDC00 || l > 0xDFFF) jfail(c, "lone surrogate in \\u escape");
                u = 0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00);
                p += 6;
            } else if (u >= 0xDC00 && u < 0xE000) {
                jfail(c, "lone surrogate in \\u escape");
            }
            o += put_utf8(o, u); /* never longer than the escape */
            break;
        }
        default: jfail(c, "bad escape in a string");
        }
    }
    size_t n = (size_t)(o - s);
    *o = 0; /* o <= p: at worst overwrites the closing quote */
    c->p = p + 1;
    return jadd(c, J_STR, s, n);
}

static int isdig(char ch) { return ch >= '0' && ch <= '9'; }

static uint32_t jnumber(lctx *c) {
    char *s = c->p, *p = s, *e = c->end;
    if (p < e && *p == '-') p++;
    if (p >= e || !isdig(*p)) jfail(c, "bad value");
    while (p < e && isdig(*p)) p++;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !isdig(*p)) jfail(c, "bad number");
        while (p < e && isdig(*p)) p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || !isdig(*p)) jfail(c, "bad number");
        while (p < e && isdig(*p)) p++;
    }
    c->p = p;
    return jadd(c, J_NUM, s, (size_t)(p - s));
}

static uint32_t jvalue(lctx *c, int depth) {
    jws(c);
    if (c->p >= c->end) jfail(c, "unexpected end of input");
    if (depth > 256) jfail(c, "JSON nested too deeply");
    char ch = *c->p;
    if (ch == '{' || ch == '[') {
        int obj = ch == '{';
        char close = obj ? '}' : ']';
        uint32_t me = jadd(c, obj ? J_OBJ : J_ARR, c->p, 0), prev = 0, cnt = 0;
        c->p++;
        jws(c);
        if (c->p < c->end && *c->p == close) { c->p++; return me; }
        for (;;) {
            uint32_t first;
            if (obj) {
                jws(c);
                if (c->p >= c->end || *c->p != '"') jfail(c, "expected a string key");
                first = jstring(c);
                jws(c);
                if (c->p >= c->end || *c->p != ':') jfail(c, "expected ':' after a key");
                c->p++;
                uint32_t v = jvalue(c, depth + 1);
                c->nd[first].next = v;
            } else {
                first = jvalue(c, depth + 1);
            }
            if (prev) c->nd[prev].next = first;
            prev = obj ? c->nd[first].next : first;
            cnt++;
            jws(c);
            if (c->p < c->end && *c->p == ',') { c->p++; continue; }
            if (c->p < c->end && *c->p == close) { c->p++; break; }
            jfail(c, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
        c->nd[me].len = cnt;
        return me;
    }
    if (ch == '"') return jstring(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && !memcmp(c->p, "null", 4)) { c->p += 4; return jadd(c, J_NULL, NULL, 0); }
    if (left >= 4 && !memcmp(c->p, "true", 4)) { c->p += 4; return jadd(c, J_TRUE, NULL, 0); }
    if (left >= 5 && !memcmp(c->p, "false", 5)) { c->p += 5; return jadd(c, J_FALSE, NULL, 0); }
    return jnumber(c);
}

#define JS(c, n) ((c)->buf + (c)->nd[n].off)
/* Value node of key in object node obj, or -1. */
static int64_t jget(lctx *c, int64_t obj, const char *key) {
    if (obj < 0 || c->nd[obj].type != J_OBJ) return -1;
    size_t kl = strlen(key);
    uint32_t k = (uint32_t)obj + 1;
    for (uint32_t i = 0; i < c->nd[obj].len; i++) {
        uint32_t v = c->nd[k].next;
        if (c->nd[k].len == kl && !memcmp(JS(c, k), key, kl)) return v;
        k = c->nd[v].next;
    }
    return -1;
}
static int jis(lctx *c, int64_t n, int type) { return n >= 0 && c->nd[n].type == type; }
static int jabsent(lctx *c, int64_t n) { return n < 0 || c->nd[n].type == J_NULL; }

static int jbool(lctx *c, int64_t obj, const char *key, int def, const char *where) {
    int64_t n = jget(c, obj, key);
    if (jabsent(c, n)) return def;
    if (c->nd[n].type == J_TRUE) return 1;
    if (c->nd[n].type == J_FALSE) return 0;
    lfail(c, "%s.%s must be true or false", where, key);
}
/* A string member (NUL-terminated), NULL when absent or null. */
static const char *jstr(lctx *c, int64_t obj, const char *key, const char *where) {
    int64_t n = jget(c, obj, key);
    if (jabsent(c, n)) return NULL;
    if (c->nd[n].type != J_STR) lfail(c, "%s.%s must be a string", where, key);
    return JS(c, n);
}
static int64_t jint(lctx *c, int64_t n, const char *what) {
    if (!jis(c, n, J_NUM) || c->nd[n].len >= 40) lfail(c, "%s: expected an integer", what);
    const char *s = JS(c, n);
    if (c->nd[n].len <= 9 && isdig(s[0])) { /* the usual case, without strtod */
        int64_t v = 0;
        uint32_t i = 0;
        for (; i < c->nd[n].len && isdig(s[i]); i++) v = 10 * v + (s[i] - '0');
        if (i == c->nd[n].len) return v;
    }
    char tmp[48], *e;
    memcpy(tmp, JS(c, n), c->nd[n].len);
    tmp[c->nd[n].len] = 0;
    double d = strtod(tmp, &e);
    if (*e || d != floor(d) || fabs(d) > 9e15) lfail(c, "%s: expected an integer", what);
    return (int64_t)d;
}

/* ------------------------------------------------------------- loader */

/* A vocabulary record in ent_buf: header then the bytes, padded to 4, so
 * that a lookup touches the slot and one record. */
typedef struct { int32_t id; uint32_t len, e; } vrec;
#define VREC(t, sl) ((const vrec *)((t)->ent_buf + 4 * (size_t)((uint32_t)(sl) - 1)))

static const vrec *vlookup(const wdl_tokenizer *t, const char *s, size_t n) {
    if (!t->vmap) return NULL;
    uint64_t h = hash_bytes(s, n);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = h & t->vmask;; i = (i + 1) & t->vmask) {
        uint64_t sl = t->vmap[i];
        if (!sl) return NULL;
        if ((uint32_t)(sl >> 32) == tag) {
            const vrec *r = VREC(t, sl);
            if (r->len == n && !memcmp(r + 1, s, n)) return r;
        }
    }
}
static int64_t vfind(const wdl_tokenizer *t, const char *s, size_t n) {
    const vrec *r = vlookup(t, s, n);
    return r ? (int64_t)r->e : -1;
}

static void vinsert(wdl_tokenizer *t, size_t e) {
    const char *s = t->ent_buf + t->ent[e].off;
    size_t n = t->ent[e].len;
    uint64_t h = hash_bytes(s, n);
    uint64_t val = (h & 0xFFFFFFFF00000000ull) | ((t->ent[e].off - sizeof(vrec)) / 4 + 1);
    for (size_t i = h & t->vmask;; i = (i + 1) & t->vmask) {
        uint64_t sl = t->vmap[i];
        if (sl && (sl >> 32) == (h >> 32)) {
            const vrec *r = VREC(t, sl);
            if (r->len == n && !memcmp(r + 1, s, n)) { t->vmap[i] = val; return; } /* a repeated key: last wins */
        }
        if (!sl) { t->vmap[i] = val; return; }
    }
}

static inline size_t mslot(const wdl_tokenizer *t, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> t->mshift);
}
static inline uint64_t mkey(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)b;
}
static inline uint32_t mlook(const wdl_tokenizer *t, int32_t a, int32_t b, int32_t *nw) {
    uint64_t key = mkey(a, b);
    for (size_t i = mslot(t, key);; i = (i + 1) & t->mmask) {
        const merge_slot *s = &t->mmap[i];
        if (s->key == key) { *nw = s->nw; return s->rank; }
        if (!s->key) return NO_RANK;
    }
}
static void minsert(wdl_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t nw) {
    uint64_t key = mkey(a, b);
    for (size_t i = mslot(t, key);; i = (i + 1) & t->mmask) {
        merge_slot *s = &t->mmap[i];
        if (!s->key || s->key == key) { /* a repeated merge: last wins, as in HF */
            s->key = key; s->rank = rank; s->nw = nw;
            return;
        }
    }
}

static void parse_normalizer(lctx *c, int64_t n, int depth) {
    wdl_tokenizer *t = c->t;
    if (jabsent(c, n)) return;
    if (!jis(c, n, J_OBJ) || depth > 8) lfail(c, "normalizer must be an object");
    const char *ty = jstr(c, n, "type", "normalizer");
    if (!ty) lfail(c, "normalizer has no type");
    int opt;
    if (!strcmp(ty, "Sequence")) {
        int64_t a = jget(c, n, "normalizers");
        if (!jis(c, a, J_ARR)) lfail(c, "normalizer Sequence needs a normalizers array");
        uint32_t e = (uint32_t)a + 1;
        for (uint32_t i = 0; i < c->nd[a].len; i++, e = c->nd[e].next) parse_normalizer(c, e, depth + 1);
        return;
    } else if (!strcmp(ty, "NFC")) opt = UTF8PROC_COMPOSE;
    else if (!strcmp(ty, "NFD")) opt = UTF8PROC_DECOMPOSE;
    else if (!strcmp(ty, "NFKC")) opt = UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(ty, "NFKD")) opt = UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    else lfail(c, "normalizer type \"%s\" is not supported (NFC, NFD, NFKC, NFKD, Sequence)", ty);
    if (t->n_norm == MAX_NORM) lfail(c, "too many normalizers");
    t->norm[t->n_norm++] = opt | UTF8PROC_STABLE;
}

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static void add_split(lctx *c, const char *pat, size_t len, int literal, int behavior, int invert) {
    wdl_tokenizer *t = c->t;
    if (t->n_steps == MAX_STEPS) lfail(c, "pre_tokenizer has too many steps");
    int ec;
    PCRE2_SIZE off;
    /* PCRE2_LITERAL allows no UCP (nor needs it) */
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        lfail(c, "pre_tokenizer Split pattern: %s (at offset %zu)", (char *)msg, (size_t)off);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    t->steps[t->n_steps++] = (pstep){ST_SPLIT, behavior, invert, re};
}

/* Flattens Sequences; returns 1 once a ByteLevel step was seen. */
static int parse_pretok(lctx *c, int64_t n, int seen_bl, int depth) {
    wdl_tokenizer *t = c->t;
    if (jabsent(c, n)) return seen_bl;
    if (!jis(c, n, J_OBJ) || depth > 8) lfail(c, "pre_tokenizer must be an object");
    const char *ty = jstr(c, n, "type", "pre_tokenizer");
    if (!ty) lfail(c, "pre_tokenizer has no type");
    if (!strcmp(ty, "Sequence")) {
        int64_t a = jget(c, n, "pretokenizers");
        if (!jis(c, a, J_ARR)) lfail(c, "pre_tokenizer Sequence needs a pretokenizers array");
        uint32_t e = (uint32_t)a + 1;
        for (uint32_t i = 0; i < c->nd[a].len; i++, e = c->nd[e].next) seen_bl = parse_pretok(c, e, seen_bl, depth + 1);
        return seen_bl;
    }
    if (seen_bl) lfail(c, "pre_tokenizer: steps after ByteLevel are not supported");
    if (!strcmp(ty, "Split")) {
        int64_t p = jget(c, n, "pattern");
        int64_t rx = jget(c, p, "Regex"), st = jget(c, p, "String");
        int literal = jis(c, st, J_STR);
        int64_t pat = literal ? st : rx;
        if (!jis(c, pat, J_STR)) lfail(c, "pre_tokenizer Split needs a pattern {\"Regex\": ...} or {\"String\": ...}");
        const char *b = jstr(c, n, "behavior", "pre_tokenizer Split");
        int beh;
        if (!b) lfail(c, "pre_tokenizer Split has no behavior");
        if (!strcmp(b, "Isolated")) beh = B_ISOLATED;
        else if (!strcmp(b, "Removed")) beh = B_REMOVED;
        else if (!strcmp(b, "MergedWithPrevious")) beh = B_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) beh = B_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) beh = B_CONTIGUOUS;
        else lfail(c, "pre_tokenizer Split behavior \"%s\" is not known", b);
        add_split(c, JS(c, pat), c->nd[pat].len, literal, beh,
                  jbool(c, n, "invert", 0, "pre_tokenizer Split"));
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) {
        if (jbool(c, n, "add_prefix_space", 0, "pre_tokenizer ByteLevel")) {
            if (t->n_steps == MAX_STEPS) lfail(c, "pre_tokenizer has too many steps");
            t->steps[t->n_steps++] = (pstep){ST_PREFIX, 0, 0, NULL};
        }
        if (jbool(c, n, "use_regex", 1, "pre_tokenizer ByteLevel"))
            add_split(c, GPT2_REGEX, sizeof GPT2_REGEX - 1, 0, B_ISOLATED, 0);
        return 1;
    }
    lfail(c, "pre_tokenizer type \"%s\" is not supported (Sequence, Split, ByteLevel)", ty);
}

static char *normalize(const wdl_tokenizer *t, const char *s, size_t n, size_t *on);

/* Bucket added tokens by group and first byte, longest first. Tokens of
 * the normalized group are matched by their normalized content, as HF
 * does. */
static void build_added_index(wdl_tokenizer *t) {
    for (size_t i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        free(a->match);
        size_t m;
        char *nm = a->normalized ? normalize(t, a->content, a->len, &m) : NULL;
        if (!nm) { nm = xmalloc(a->len + 1); memcpy(nm, a->content, a->len); m = a->len; }
        nm[m] = 0;
        a->match = nm;
        a->mlen = m;
    }
    for (int g = 0; g < 2; g++) {
        uint32_t cnt[257] = {0};
        for (size_t i = 0; i < t->n_added; i++)
            if (t->added[i].normalized == g && t->added[i].mlen) cnt[(unsigned char)t->added[i].match[0] + 1]++;
        t->gidx[g][0] = 0;
        for (int b = 0; b < 256; b++) t->gidx[g][b + 1] = t->gidx[g][b] + cnt[b + 1];
        free(t->gord[g]);
        t->gord[g] = xmalloc((t->gidx[g][256] + 1) * sizeof(uint32_t));
        uint32_t fill[256];
        memcpy(fill, t->gidx[g], sizeof fill);
        for (size_t i = 0; i < t->n_added; i++) {
            const added_tok *a = &t->added[i];
            if (a->normalized != g || !a->mlen) continue;
            unsigned b = (unsigned char)a->match[0];
            uint32_t j = fill[b]++;
            /* insertion keeps each bucket sorted by length, longest first */
            while (j > t->gidx[g][b] && t->added[t->gord[g][j - 1]].mlen < a->mlen) {
                t->gord[g][j] = t->gord[g][j - 1];
                j--;
            }
            t->gord[g][j] = (uint32_t)i;
        }
    }
}

static void parse_added(lctx *c, int64_t arr) {
    wdl_tokenizer *t = c->t;
    if (jabsent(c, arr)) return;
    if (!jis(c, arr, J_ARR)) lfail(c, "added_tokens must be an array");
    size_t n = c->nd[arr].len;
    t->added = xcalloc(n ? n : 1, sizeof *t->added);
    uint32_t e = (uint32_t)arr + 1;
    for (size_t i = 0; i < n; i++, e = c->nd[e].next) {
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!jis(c, e, J_OBJ)) lfail(c, "%s must be an object", where);
        int64_t id = jint(c, jget(c, e, "id"), where);
        int64_t cn = jget(c, e, "content");
        if (!jis(c, cn, J_STR) || c->nd[cn].len == 0) lfail(c, "%s.content must be a non-empty string", where);
        if (id < 0 || id >= MAX_ID) lfail(c, "%s: id %lld is out of range", where, (long long)id);
        added_tok *a = &t->added[t->n_added++];
        a->len = c->nd[cn].len;
        a->content = xmalloc(a->len + 1);
        memcpy(a->content, JS(c, cn), a->len + 1);
        a->id = (int32_t)id;
        a->special = (uint8_t)jbool(c, e, "special", 0, where);
        a->single_word = (uint8_t)jbool(c, e, "single_word", 0, where);
        a->lstrip = (uint8_t)jbool(c, e, "lstrip", 0, where);
        a->rstrip = (uint8_t)jbool(c, e, "rstrip", 0, where);
        a->normalized = (uint8_t)jbool(c, e, "normalized", !a->special, where);
    }
}

static void parse_vocab(lctx *c, int64_t voc) {
    wdl_tokenizer *t = c->t;
    size_t n = c->nd[voc].len, bytes = 0;
    uint32_t k = (uint32_t)voc + 1;
    for (size_t i = 0; i < n; i++, k = c->nd[c->nd[k].next].next) bytes += sizeof(vrec) + ((c->nd[k].len + 3) & ~3u);
    t->n_ent = n;
    t->ent_buf = xcalloc(1, bytes + 4);
    t->ent = xmalloc((n + 1) * sizeof *t->ent);
    if (bytes >= UINT32_MAX) lfail(c, "model.vocab is too large");
    size_t off = 0;
    k = (uint32_t)voc + 1;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = c->nd[k].next;
        const jnode *key = &c->nd[k];
        if (!jis(c, v, J_NUM)) lfail(c, "model.vocab[\"%.40s\"] must be an integer id", c->buf + key->off);
        int64_t id = jint(c, v, "model.vocab");
        if (id < 0 || id >= MAX_ID) lfail(c, "model.vocab[\"%.40s\"]: id %lld is out of range", c->buf + key->off, (long long)id);
        vrec r = {(int32_t)id, key->len, (uint32_t)i};
        memcpy(t->ent_buf + off, &r, sizeof r);
        memcpy(t->ent_buf + off + sizeof r, c->buf + key->off, key->len);
        t->ent[i].off = (uint32_t)(off + sizeof r);
        t->ent[i].len = key->len;
        t->ent[i].id = (int32_t)id;
        if (id >= t->vocab_size) t->vocab_size = id + 1;
        off += sizeof r + ((key->len + 3) & ~3u);
        k = c->nd[v].next;
    }
    size_t cap = pow2_at_least(2 * n + 2);
    t->vmap = big_calloc(cap * sizeof(uint64_t));
    t->vmask = cap - 1;
    for (size_t i = 0; i < n; i++) vinsert(t, i);
    t->selfok = xcalloc(n + 1, 1);
}

static void parse_merges(lctx *c, int64_t mer) {
    wdl_tokenizer *t = c->t;
    size_t n = jabsent(c, mer) ? 0 : c->nd[mer].len;
    if (!jabsent(c, mer) && !jis(c, mer, J_ARR)) lfail(c, "model.merges must be an array");
    if (n >= NO_RANK) lfail(c, "model.merges is too large");
    size_t cap = pow2_at_least(2 * n + 2);
    int bits = 0;
    while (((size_t)1 << bits) < cap) bits++;
    t->mmap = big_calloc(cap * sizeof *t->mmap);
    t->mmask = cap - 1;
    t->mshift = 64 - bits;
    size_t scap = 256;
    char *cat = c->scratch = xmalloc(scap);
    uint32_t e = n ? (uint32_t)mer + 1 : 0;
    for (size_t i = 0; i < n; i++, e = c->nd[e].next) {
        const char *a, *b;
        size_t al, bl;
        const jnode *x = &c->nd[e];
        const char *xs = c->buf + x->off;
        if (x->type == J_STR) {
            const char *sp = memchr(xs, ' ', x->len);
            if (!sp || memchr(sp + 1, ' ', x->len - (size_t)(sp + 1 - xs)))
                lfail(c, "model.merges[%zu]: \"%.40s\" is not two tokens separated by one space", i, xs);
            a = xs; al = (size_t)(sp - xs);
            b = sp + 1; bl = x->len - al - 1;
        } else if (x->type == J_ARR && x->len == 2 && c->nd[e + 1].type == J_STR &&
                   c->nd[c->nd[e + 1].next].type == J_STR) {
            const jnode *y = &c->nd[e + 1], *z = &c->nd[y->next];
            a = c->buf + y->off; al = y->len; b = c->buf + z->off; bl = z->len;
        } else {
            lfail(c, "model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]", i);
        }
        int64_t ia = vfind(t, a, al), ib = vfind(t, b, bl);
        if (ia < 0) { lfail(c, "model.merges[%zu]: \"%.*s\" is not in the vocabulary", i, (int)(al > 40 ? 40 : al), a); }
        if (ib < 0) { lfail(c, "model.merges[%zu]: \"%.*s\" is not in the vocabulary", i, (int)(bl > 40 ? 40 : bl), b); }
        if (al + bl > scap) { scap = 2 * (al + bl); cat = c->scratch = xrealloc(cat, scap); }
        memcpy(cat, a, al);
        memcpy(cat + al, b, bl);
        int64_t iab = vfind(t, cat, al + bl);
        if (iab < 0) {
            lfail(c, "model.merges[%zu]: the merged token \"%.*s%.*s\" is not in the vocabulary", i,
                  (int)(al > 40 ? 40 : al), a, (int)(bl > 40 ? 40 : bl), b);
        }
        minsert(t, t->ent[ia].id, t->ent[ib].id, (uint32_t)i, t->ent[iab].id);
    }
}

/* Per-id decoded bytes; added tokens take precedence over the vocabulary
 * (as HF's id_to_token does). */
static void build_decode(wdl_tokenizer *t) {
    size_t V = (size_t)t->vocab_size, bytes = 0;
    t->dec_off = xmalloc((V + 1) * sizeof(uint32_t));
    t->dec_len = xmalloc((V + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < V; i++) t->dec_len[i] = UNKNOWN;
    for (size_t i = 0; i < t->n_ent; i++) bytes += t->ent[i].len;
    for (size_t i = 0; i < t->n_added; i++) bytes += t->added[i].mlen;
    t->dec_buf = xmalloc(bytes + 1);
    size_t off = 0;
    for (size_t i = 0; i < t->n_added; i++) {
        const added_tok *a = &t->added[i];
        if (t->dec_len[a->id] != UNKNOWN) continue;
        /* HF decodes a normalized added token as its normalized content */
        size_t m = bytelevel_decode(t, a->match, a->mlen, t->dec_buf + off);
        t->dec_off[a->id] = (uint32_t)off;
        t->dec_len[a->id] = (uint32_t)m;
        off += m;
    }
    for (size_t i = 0; i < t->n_ent; i++) {
        int32_t id = t->ent[i].id;
        if (t->dec_len[id] != UNKNOWN) continue;
        size_t m = bytelevel_decode(t, t->ent_buf + t->ent[i].off, t->ent[i].len, t->dec_buf + off);
        t->dec_off[id] = (uint32_t)off;
        t->dec_len[id] = (uint32_t)m;
        off += m;
    }
}

static void load_model(lctx *c) {
    wdl_tokenizer *t = c->t;
    int64_t m = jget(c, 0, "model");
    if (!jis(c, m, J_OBJ)) lfail(c, "no \"model\" object");
    const char *ty = jstr(c, m, "type", "model");
    if (ty && strcmp(ty, "BPE")) lfail(c, "model type \"%s\" is not supported (only BPE)", ty);
    int64_t voc = jget(c, m, "vocab");
    if (!jis(c, voc, J_OBJ)) lfail(c, "model.vocab must be an object");
    const char *pre = jstr(c, m, "continuing_subword_prefix", "model");
    const char *suf = jstr(c, m, "end_of_word_suffix", "model");
    if ((pre && *pre) || (suf && *suf))
        lfail(c, "model: continuing_subword_prefix/end_of_word_suffix are not supported");
    int64_t dr = jget(c, m, "dropout");
    if (!jabsent(c, dr)) {
        if (!jis(c, dr, J_NUM)) lfail(c, "model.dropout must be a number");
        if (strtod(JS(c, dr), NULL) > 0) lfail(c, "model.dropout is not supported");
    }
    t->ignore_merges = jbool(c, m, "ignore_merges", 0, "model");
    t->fuse_unk = jbool(c, m, "fuse_unk", 0, "model");
    parse_vocab(c, voc);
    parse_merges(c, jget(c, m, "merges"));
    const char *unk = jstr(c, m, "unk_token", "model");
    t->unk_id = -1;
    if (unk) {
        int64_t e = vfind(t, unk, strlen(unk));
        if (e >= 0) t->unk_id = t->ent[e].id;
    }
    for (int b = 0; b < 256; b++) {
        int64_t e = vfind(t, t->bl[b], t->bl_len[b]);
        t->byte_id[b] = e >= 0 ? t->ent[e].id : -1;
    }
}

static void load_all(lctx *c) {
    c->line = 1;
    jvalue(c, 0);
    jws(c);
    if (c->p != c->end) jfail(c, "trailing characters after the JSON value");
    if (c->nd[0].type != J_OBJ) lfail(c, "not a JSON object");
    wdl_tokenizer *t = c->t = xcalloc(1, sizeof *t);
    init_bytelevel(t);
    parse_normalizer(c, jget(c, 0, "normalizer"), 0);
    if (!parse_pretok(c, jget(c, 0, "pre_tokenizer"), 0, 0))
        lfail(c, "pre_tokenizer has no ByteLevel step (only byte-level BPE is supported)");
    load_model(c);
    parse_added(c, jget(c, 0, "added_tokens"));
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id >= t->vocab_size) t->vocab_size = t->added[i].id + 1;
    if (t->vocab_size == 0) lfail(c, "the vocabulary is empty");
    build_added_index(t);
    build_decode(t);
}

/* Parses buf in place (it must be writable, with a NUL at buf[len]). */
static wdl_tokenizer *load_buf(char *buf, size_t len, const char *name, char *err, size_t errlen) {
    lctx *c = xcalloc(1, sizeof *c);
    char dummy[8];
    c->err = err ? err : dummy;
    c->errlen = err ? errlen : sizeof dummy;
    c->name = name ? name : "tokenizer.json";
    c->buf = buf;
    if (len >= UINT32_MAX) {
        snprintf(c->err, c->errlen, "%s: too large for a tokenizer file", c->name);
        free(c);
        return NULL;
    }
    c->p = c->buf;
    c->end = c->buf + len;
    /* about one value per 12 bytes in tokenizer files: one allocation */
    c->ncap = len / 12 + 1024;
    c->nd = xmalloc(c->ncap * sizeof *c->nd);
    wdl_tokenizer *t = NULL;
    if (setjmp(c->jb) == 0) {
        load_all(c);
        t = c->t;
    } else {
        tok_free(c->t);
    }
    free(c->nd);
    free(c->scratch);
    free(c);
    return t;
}

wdl_tokenizer *tok_load_json(const char *json, size_t len, const char *name, char *err, size_t errlen) {
    char *buf = xmalloc(len + 1);
    memcpy(buf, json, len);
    buf[len] = 0;
    wdl_tokenizer *t = load_buf(buf, len, name, err, errlen);
    free(buf);
    return t;
}

static wdl_tokenizer *load_file(const char *path) {
    size_t n;
    char *buf = wdl_read_file(path, &n);
    char err[512];
    wdl_tokenizer *t = load_buf(buf, n, path, err, sizeof err);
    free(buf);
    if (!t) die("%s", err);
    return t;
}

wdl_tokenizer *tok_load(const char *path) {
    if (!path || !*path) die("no tokenizer given");
    if (!strcmp(path, "byte")) return tok_byte();
    if (!wdl_is_dir(path)) {
        if (!wdl_exists(path)) die("%s: cannot open: %s", path, strerror(ENOENT));
        return load_file(path);
    }
    char *tj = wdl_path_join(path, "tokenizer.json");
    if (wdl_exists(tj)) {
        wdl_tokenizer *t = load_file(tj);
        free(tj);
        return t;
    }
    free(tj);
    char *cj = wdl_path_join(path, "config.json");
    if (!wdl_exists(cj)) die("%s: no tokenizer.json and no config.json in this directory", path);
    json_error_t je;
    json_t *cfg = json_load_file(cj, 0, &je);
    if (!cfg) die("%s:%d: %s", cj, je.line, je.text);
    json_t *w = json_object_get(cfg, "wdl_tokenizer");
    int byte = json_is_string(w) && !strcmp(json_string_value(w), "byte");
    json_decref(cfg);
    if (!byte) die("%s: no tokenizer.json beside it and no \"wdl_tokenizer\": \"byte\"", cj);
    free(cj);
    return tok_byte();
}

static const char *const BYTE_SPECIALS[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"};

wdl_tokenizer *tok_byte(void) {
    wdl_tokenizer *t = xcalloc(1, sizeof *t);
    t->is_byte = 1;
    t->vocab_size = 272;
    t->unk_id = -1;
    t->n_added = 5;
    t->added = xcalloc(5, sizeof *t->added);
    size_t bytes = 256;
    for (int i = 0; i < 5; i++) {
        added_tok *a = &t->added[i];
        a->content = xstrdup(BYTE_SPECIALS[i]);
        a->len = strlen(a->content);
        a->id = 256 + i;
        a->special = 1;
        bytes += a->len;
    }
    t->dec_off = xmalloc(272 * sizeof(uint32_t));
    t->dec_len = xmalloc(272 * sizeof(uint32_t));
    t->dec_buf = xmalloc(bytes);
    for (int i = 0; i < 256; i++) { t->dec_buf[i] = (char)i; t->dec_off[i] = (uint32_t)i; t->dec_len[i] = 1; }
    size_t off = 256;
    for (int i = 0; i < 5; i++) {
        memcpy(t->dec_buf + off, t->added[i].content, t->added[i].len);
        t->dec_off[256 + i] = (uint32_t)off;
        t->dec_len[256 + i] = (uint32_t)t->added[i].len;
        off += t->added[i].len;
    }
    for (int i = 261; i < 272; i++) t->dec_len[i] = UNKNOWN;
    build_added_index(t);
    return t;
}

void tok_free(wdl_tokenizer *t) {
    if (!t) return;
    free(t->dec_off); free(t->dec_len); free(t->dec_buf);
    free(t->ent_buf); free(t->ent);
    free(t->vmap); free((void *)t->selfok); free(t->mmap);
    for (int i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].re);
    for (size_t i = 0; i < t->n_added; i++) { free(t->added[i].content); free(t->added[i].match); }
    free(t->added);
    free(t->gord[0]); free(t->gord[1]);
    free(t);
}

int64_t tok_vocab_size(const wdl_tokenizer *t) { return t->vocab_size; }
int tok_is_byte(const wdl_tokenizer *t) { return t->is_byte; }

int32_t tok_special(const wdl_tokenizer *t, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, name, n)) return t->added[i].id;
    if (t->is_byte || n == 0) return -1;
    char *key = xmalloc(2 * n);
    size_t kl = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)name[i];
        memcpy(key + kl, t->bl[b], t->bl_len[b]);
        kl += t->bl_len[b];
    }
    int64_t e = vfind(t, key, kl);
    free(key);
    return e >= 0 ? t->ent[e].id : -1;
}

int tok_id_bytes(const wdl_tokenizer *t, int32_t id, const char **bytes, size_t *len) {
    if (id < 0 || id >= t->vocab_size || t->dec_len[id] == UNKNOWN) return 0;
    if (bytes) *bytes = t->dec_buf + t->dec_off[id];
    if (len) *len = t->dec_len[id];
    return 1;
}

char *tok_decode(const wdl_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->vocab_size || t->dec_len[id] == UNKNOWN)
            die("cannot decode token id %ld: not in the vocabulary (size %lld)", (long)id, (long long)t->vocab_size);
        total += t->dec_len[id];
    }
    char *o = xmalloc(total + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(o + m, t->dec_buf + t->dec_off[ids[i]], t->dec_len[ids[i]]);
        m += t->dec_len[ids[i]];
    }
    o[m] = 0;
    if (len) *len = m;
    return o;
}

/* ------------------------------------------------------------ encoder */

typedef struct { size_t s, e; int m; } span;
typedef struct { span *v; size_t n, cap; } spanvec;

typedef struct {
    const wdl_tokenizer *t;
    ivec *out;
    int special;
    pcre2_match_data *md;
    spanvec raw[MAX_STEPS], cooked[MAX_STEPS];
    char *pfx[MAX_STEPS];
    size_t pfxcap[MAX_STEPS];
    char *key;
    size_t keycap;
    int32_t *sym, *nw, *prv, *nxt;
    uint32_t *rk;
    size_t symcap;
    uint64_t *heap;
    size_t hcap;
} ectx;

static void span_push(spanvec *v, size_t s, size_t e, int m) {
    if (v->n == v->cap) { v->cap = v->cap ? 2 * v->cap : 64; v->v = xrealloc(v->v, v->cap * sizeof(span)); }
    v->v[v->n++] = (span){s, e, m};
}

static void warn_regex(int rc) {
    static atomic_int warned;
    if (atomic_exchange(&warned, 1)) return;
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    wdl_warn("tokenizer: pre-tokenizer regex failed (%s); the rest of the piece is kept whole", (char *)msg);
}

/* Output symbols of BPE: merge the lowest-ranked adjacent pair (leftmost on
 * ties) until none is in the merge table. Short pieces scan a rank array;
 * long ones use a heap over (rank, position) with lazy deletion. */
static void bpe_merge(ectx *x, const unsigned char *s, size_t n) {
    const wdl_tokenizer *t = x->t;
    if (n > x->symcap) {
        x->symcap = n + 64;
        x->sym = xrealloc(x->sym, x->symcap * sizeof(int32_t));
        x->nw = xrealloc(x->nw, x->symcap * sizeof(int32_t));
        x->prv = xrealloc(x->prv, x->symcap * sizeof(int32_t));
        x->nxt = xrealloc(x->nxt, x->symcap * sizeof(int32_t));
        x->rk = xrealloc(x->rk, x->symcap * sizeof(uint32_t));
    }
    int32_t *sym = x->sym, *nw = x->nw;
    uint32_t *rk = x->rk;
    size_t m = 0;
    int last_unk = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[s[i]];
        if (id >= 0) { sym[m++] = id; last_unk = 0; continue; }
        /* a byte missing from the vocabulary: unk (fused if asked), or
         * dropped when there is no unk token, as HF does */
        if (t->unk_id < 0) continue;
        if (!(t->fuse_unk && last_unk)) sym[m++] = t->unk_id;
        last_unk = 1;
    }
    if (m >= 2 && m <= 48) {
        for (size_t i = 0; i + 1 < m; i++) rk[i] = mlook(t, sym[i], sym[i + 1], &nw[i]);
        for (;;) {
            uint32_t best = NO_RANK;
            size_t bi = 0;
            for (size_t i = 0; i + 1 < m; i++)
                if (rk[i] < best) { best = rk[i]; bi = i; }
            if (best == NO_RANK) break;
            /* symbol bi+1 and pair bi+1 disappear; the rest shift left */
            sym[bi] = nw[bi];
            memmove(sym + bi + 1, sym + bi + 2, (m - bi - 2) * sizeof(int32_t));
            if (bi + 3 <= m) {
                memmove(rk + bi + 1, rk + bi + 2, (m - bi - 3) * sizeof(uint32_t));
                memmove(nw + bi + 1, nw + bi + 2, (m - bi - 3) * sizeof(int32_t));
            }
            m--;
            if (bi + 1 < m) rk[bi] = mlook(t, sym[bi], sym[bi + 1], &nw[bi]);
            if (bi > 0) rk[bi - 1] = mlook(t, sym[bi - 1], sym[bi], &nw[bi - 1]);
        }
        for (size_t i = 0; i < m; i++) ivec_push(x->out, sym[i]);
        return;
    }
    if (m < 2) {
        for (size_t i = 0; i < m; i++) ivec_push(x->out, sym[i]);
        return;
    }
    int32_t *prv = x->prv, *nxt = x->nxt;
    if (3 * m > x->hcap) { x->hcap = 3 * m + 64; /* initial pairs + 2 per merge */ x->heap = xrealloc(x->heap, x->hcap * sizeof(uint64_t)); }
    uint64_t *h = x->heap;
    size_t hn = 0;
#define HPUSH(v)                                                            \
    do {                                                                    \
        size_t j_ = hn++;                                                   \
        uint64_t v_ = (v);                                                  \
        while (j_ > 0 && h[(j_ - 1) / 2] > v_) { h[j_] = h[(j_ - 1) / 2]; j_ = (j_ - 1) / 2; } \
        h[j_] = v_;                                                         \
    } while (0)
    for (size_t i = 0; i < m; i++) { prv[i] = (int32_t)i - 1; nxt[i] = i + 1 < m ? (int32_t)i + 1 : -1; }
    for (size_t i = 0; i + 1 < m; i++) {
        int32_t d;
        uint32_t r = mlook(t, sym[i], sym[i + 1], &d);
        if (r != NO_RANK) HPUSH(((uint64_t)r << 32) | i);
    }
    while (hn) {
        uint64_t top = h[0], last = h[--hn];
        /* sift the last element down from the root */
        size_t j = 0;
        for (;;) {
            size_t l = 2 * j + 1;
            if (l >= hn) break;
            if (l + 1 < hn && h[l + 1] < h[l]) l++;
            if (h[l] >= last) break;
            h[j] = h[l];
            j = l;
        }
        if (hn) h[j] = last;
        uint32_t r = (uint32_t)(top >> 32);
        size_t i = (uint32_t)top;
        if (sym[i] < 0 || nxt[i] < 0) continue;
        size_t k = (size_t)nxt[i];
        int32_t merged = 0;
        if (mlook(t, sym[i], sym[k], &merged) != r) continue; /* stale: ranks name one pair */
        sym[i] = merged;
        sym[k] = -1;
        nxt[i] = nxt[k];
        if (nxt[k] >= 0) prv[nxt[k]] = (int32_t)i;
        int32_t d;
        if (prv[i] >= 0) {
            uint32_t r2 = mlook(t, sym[prv[i]], sym[i], &d);
            if (r2 != NO_RANK) HPUSH(((uint64_t)r2 << 32) | (uint32_t)prv[i]);
        }
        if (nxt[i] >= 0) {
            uint32_t r2 = mlook(t, sym[i], sym[nxt[i]], &d);
            if (r2 != NO_RANK) HPUSH(((uint64_t)r2 << 32) | i);
        }
    }
#undef HPUSH
    for (int32_t i = 0; i >= 0; i = nxt[i]) ivec_push(x->out, sym[i]);
}

/* One pre-tokenized piece: a whole-vocabulary hit is taken directly once
 * BPE has been seen to give that same token (or always with
 * ignore_merges); anything else runs BPE. */
static void bpe_piece(ectx *x, const char *s, size_t n) {
    const wdl_tokenizer *t = x->t;
    if (2 * n > x->keycap) { x->keycap = 2 * n + 64; x->key = xrealloc(x->key, x->keycap); }
    size_t kl = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        x->key[kl] = t->bl[b][0];
        x->key[kl + 1] = t->bl[b][1];
        kl += t->bl_len[b];
    }
    const vrec *r = vlookup(t, x->key, kl);
    if (!r) { bpe_merge(x, (const unsigned char *)s, n); return; }
    int32_t id = r->id;
    size_t e = r->e;
    if (t->ignore_merges) { ivec_push(x->out, id); return; }
    uint8_t f = atomic_load_explicit(&t->selfok[e], memory_order_relaxed);
    if (f == 1) { ivec_push(x->out, id); return; }
    size_t before = x->out->n;
    bpe_merge(x, (const unsigned char *)s, n);
    if (f == 0) {
        uint8_t nf = (x->out->n == before + 1 && x->out->v[before] == id) ? 1 : 2;
        atomic_store_explicit(&t->selfok[e], nf, memory_order_relaxed);
    }
}

static void pretok(ectx *x, int k, const char *s, size_t n);

/* Split by a regex into matches and gaps, then group them as the Split
 * behavior says (same rules as HF's SplitDelimiterBehavior). */
static void split_step(ectx *x, int k, const char *s, size_t n) {
    const pstep *st = &x->t->steps[k];
    spanvec *raw = &x->raw[k], *out = &x->cooked[k];
    raw->n = 0;
    size_t pos = 0, prev = 0;
    while (pos < n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, pos, 0, x->md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_JIT, x->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) { warn_regex(rc); break; }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->md);
        size_t ms = ov[0], me = ov[1];
        if (ms < prev) ms = prev;
        if (me <= ms) { /* empty match: step over one character */
            size_t l = utf8_char((const unsigned char *)s + ms, n - ms, NULL);
            pos = ms + (l ? l : 1);
            continue;
        }
        if (ms > prev) span_push(raw, prev, ms, 0);
        span_push(raw, ms, me, 1);
        prev = pos = me;
    }
    if (prev < n) span_push(raw, prev, n, 0);
    if (st->invert)
        for (size_t i = 0; i < raw->n; i++) raw->v[i].m = !raw->v[i].m;
    spanvec *use = raw;
    if (st->behavior != B_ISOLATED) {
        out->n = 0;
        int pm = 0;
        if (st->behavior == B_REMOVED) {
            for (size_t i = 0; i < raw->n; i++)
                if (!raw->v[i].m) span_push(out, raw->v[i].s, raw->v[i].e, 0);
        } else if (st->behavior == B_MERGED_PREV) {
            for (size_t i = 0; i < raw->n; i++) {
                span r = raw->v[i];
                if (r.m && !pm && out->n) out->v[out->n - 1].e = r.e;
                else span_push(out, r.s, r.e, r.m);
                pm = r.m;
            }
        } else if (st->behavior == B_MERGED_NEXT) {
            for (size_t i = raw->n; i-- > 0;) {
                span r = raw->v[i];
                if (r.m && !pm && out->n) out->v[out->n - 1].s = r.s;
                else span_push(out, r.s, r.e, r.m);
                pm = r.m;
            }
            for (size_t i = 0, j = out->n; i + 1 < j; i++, j--) {
                span tmp = out->v[i]; out->v[i] = out->v[j - 1]; out->v[j - 1] = tmp;
            }
        } else { /* contiguous */
            for (size_t i = 0; i < raw->n; i++) {
                span r = raw->v[i];
                if (r.m == pm && out->n) out->v[out->n - 1].e = r.e;
                else span_push(out, r.s, r.e, r.m);
                pm = r.m;
            }
        }
        use = out;
    }
    for (size_t i = 0; i < use->n; i++)
        pretok(x, k + 1, s + use->v[i].s, use->v[i].e - use->v[i].s);
}

static void pretok(ectx *x, int k, const char *s, size_t n) {
    if (n == 0) return;
    if (k == x->t->n_steps) { bpe_piece(x, s, n); return; }
    if (x->t->steps[k].kind == ST_SPLIT) { split_step(x, k, s, n); return; }
    /* ByteLevel add_prefix_space */
    if (s[0] == ' ') { pretok(x, k + 1, s, n); return; }
    if (n + 1 > x->pfxcap[k]) { x->pfxcap[k] = n + 64; x->pfx[k] = xrealloc(x->pfx[k], x->pfxcap[k]); }
    x->pfx[k][0] = ' ';
    memcpy(x->pfx[k] + 1, s, n);
    pretok(x, k + 1, x->pfx[k], n + 1);
}

/* Apply the normalizers to every valid UTF-8 stretch; invalid bytes pass
 * through. Returns NULL when the text is unchanged (ASCII is). */
static char *normalize(const wdl_tokenizer *t, const char *s, size_t n, size_t *on) {
    if (!t->n_norm) return NULL;
    size_t i = 0;
    while (i < n && !((unsigned char)s[i] & 0x80)) i++;
    if (i == n) return NULL;
    size_t cap = 2 * n + 16, m = 0;
    char *o = xmalloc(cap);
    i = 0;
    while (i < n) {
        size_t j = i, l;
        while (j < n && (l = utf8_char((const unsigned char *)s + j, n - j, NULL))) j += l;
        if (j > i) {
            utf8proc_uint8_t *cur = NULL;
            utf8proc_ssize_t cl = (utf8proc_ssize_t)(j - i);
            const utf8proc_uint8_t *src = (const utf8proc_uint8_t *)s + i;
            for (int k = 0; k < t->n_norm; k++) {
                utf8proc_uint8_t *dst = NULL;
                utf8proc_ssize_t r = utf8proc_map(src, cl, &dst, (utf8proc_option_t)t->norm[k]);
                if (r < 0) die("tokenizer: normalization failed: %s", utf8proc_errmsg(r));
                free(cur);
                cur = dst; src = dst; cl = r;
            }
            if (m + (size_t)cl + 1 > cap) { cap = 2 * (m + (size_t)cl + 1); o = xrealloc(o, cap); }
            memcpy(o + m, cur, (size_t)cl);
            m += (size_t)cl;
            free(cur);
            i = j;
        }
        if (i < n) { /* one invalid byte */
            if (m + 2 > cap) { cap = 2 * (m + 2); o = xrealloc(o, cap); }
            o[m++] = s[i++];
        }
    }
    *on = m;
    return o;
}

static void segment(ectx *x, int stage, const char *s, size_t n);

/* Split text on the added tokens of one group (leftmost, then longest),
 * applying single_word/lstrip/rstrip as HF does; the text between goes on
 * to the next stage. */
static void split_added(ectx *x, int g, const char *s, size_t n) {
    const wdl_tokenizer *t = x->t;
    if (!x->special || t->gidx[g][256] == 0) { segment(x, g + 1, s, n); return; }
    const unsigned char *u = (const unsigned char *)s;
    size_t cur = 0, p = 0;
    while (p < n) {
        const added_tok *a = NULL;
        size_t ms = p;
        for (; ms < n; ms++) {
            uint32_t lo = t->gidx[g][u[ms]], hi = t->gidx[g][u[ms] + 1];
            for (uint32_t k = lo; k < hi; k++) {
                const added_tok *c = &t->added[t->gord[g][k]];
                if (c->mlen <= n - ms && !memcmp(s + ms, c->match, c->mlen)) { a = c; break; }
            }
            if (a) break;
        }
        if (!a) break;
        size_t me = ms + a->mlen;
        p = me;
        if (a->single_word) {
            uint32_t cp;
            int word_before = ms > 0 && last_char(s, ms, &cp) && is_alnum_cp(cp);
            int word_after = me < n && utf8_char(u + me, n - me, &cp) && is_alnum_cp(cp);
            if (word_before || word_after) continue;
        }
        size_t ts = ms, te = me;
        if (a->lstrip) {
            uint32_t cp;
            size_t l;
            while (ts > cur && (l = last_char(s, ts, &cp)) && is_white(cp)) ts -= l;
        }
        if (a->rstrip) {
            uint32_t cp;
            size_t l;
            while (te < n && (l = utf8_char(u + te, n - te, &cp)) && is_white(cp)) te += l;
            if (p < te) p = te;
        }
        if (ts > cur) segment(x, g + 1, s + cur, ts - cur);
        ivec_push(x->out, a->id);
        cur = te;
    }
    if (cur < n) segment(x, g + 1, s + cur, n - cur);
}

/* stage 1: text between raw added tokens (normalize, then match the
 * normalized added tokens); stage 2: pre-tokenize and BPE. */
static void segment(ectx *x, int stage, const char *s, size_t n) {
    if (n == 0) return;
    if (x->t->is_byte) {
        for (size_t i = 0; i < n; i++) ivec_push(x->out, (unsigned char)s[i]);
        return;
    }
    if (stage == 1) {
        size_t m;
        char *norm = normalize(x->t, s, n, &m);
        if (norm) { split_added(x, 1, norm, m); free(norm); }
        else split_added(x, 1, s, n);
        return;
    }
    pretok(x, 0, s, n);
}

void tok_encode(const wdl_tokenizer *t, const char *text, size_t len, int allow_special, ivec *out) {
    ectx x;
    memset(&x, 0, sizeof x);
    x.t = t;
    x.out = out;
    x.special = allow_special != 0;
    if (!t->is_byte) {
        x.md = pcre2_match_data_create(1, NULL);
        if (!x.md) die("out of memory");
    }
    split_added(&x, 0, text, len);
    if (x.md) pcre2_match_data_free(x.md);
    for (int k = 0; k < MAX_STEPS; k++) { free(x.raw[k].v); free(x.cooked[k].v); free(x.pfx[k]); }
    free(x.key); free(x.sym); free(x.nw); free(x.prv); free(x.nxt); free(x.rk); free(x.heap);
}
