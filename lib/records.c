/* records.c: see records.h.
 * Reading is layered: a raw byte source (FILE or libarchive member), an
 * optional zstd stream decoder, then a line splitter that hands each line
 * to jansson. Writing uses our own serializer so that numbers print in a
 * short round-trip form and output bytes never depend on library defaults. */
#include "records.h"
#include "utf8.h"
#include "common.h"
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* ---------- growable byte buffer ---------- */
typedef struct { char *p; size_t n, cap; } sbuf;
static void sb_reserve(sbuf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return;
    size_t c = b->cap ? b->cap : 256;
    while (c < b->n + extra + 1) c *= 2;
    b->p = xrealloc(b->p, c);
    b->cap = c;
}
static void sb_add(sbuf *b, const char *s, size_t n) {
    sb_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_addc(sbuf *b, char c) { sb_add(b, &c, 1); }
static void sb_adds(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* ---------- reader ---------- */
#define RAW_CHUNK (1 << 16)

struct rec_reader {
    char *name;
    FILE *f;            /* plain file or stdin */
    int own_f;
    struct archive *ar; /* archive member source */
    /* zstd layer */
    ZSTD_DStream *zd;
    char *zin;
    ZSTD_inBuffer zib;
    size_t zlast;       /* last ZSTD_decompressStream result: 0 = frame end */
    int raw_eof;
    /* bytes peeked while sniffing the zstd magic */
    unsigned char peek[4];
    size_t npeek, peek_pos;
    /* decoded data awaiting line splitting */
    char *buf;
    size_t cap, start, end, scan;
    int eof;
    int64_t line, next_line;
    /* soft errors (rec_try_*): longjmp here instead of dying */
    jmp_buf *catch_jb;
    char *err;
    size_t errlen;
    int broken;
    char *arch, *member; /* for ARCHIVE:member inputs */
};

/* Report a read error: die, or hand it to rec_try_next/rec_try_open. */
static _Noreturn void rfail(rec_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static _Noreturn void rfail(rec_reader *r, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* library messages (libarchive) may carry newlines: keep it one line */
    size_t n = strlen(msg);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)msg[i] < 0x20) msg[i] = ' ';
    while (n && msg[n - 1] == ' ') msg[--n] = 0;
    if (r->catch_jb) {
        snprintf(r->err, r->errlen, "%s", msg);
        r->broken = 1;
        longjmp(*r->catch_jb, 1);
    }
    die("%s", msg);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static ssize_t raw_read(rec_reader *r, void *dst, size_t n) {
    if (r->ar) {
        la_ssize_t got = archive_read_data(r->ar, dst, n);
        if (got < 0) rfail(r, "%s: %s", r->name, archive_error_string(r->ar));
        return got;
    }
    size_t got = fread(dst, 1, n, r->f);
    if (got == 0 && ferror(r->f)) rfail(r, "%s: read error: %s", r->name, strerror(errno));
    return (ssize_t)got;
}

/* Raw bytes, first the sniffed ones. */
static ssize_t src_read(rec_reader *r, void *dst, size_t n) {
    if (r->peek_pos < r->npeek) {
        size_t k = r->npeek - r->peek_pos;
        if (k > n) k = n;
        memcpy(dst, r->peek + r->peek_pos, k);
        r->peek_pos += k;
        return (ssize_t)k;
    }
    return raw_read(r, dst, n);
}

/* Decoded bytes into dst; 0 only at end of input. */
static size_t dec_read(rec_reader *r, char *dst, size_t n) {
    if (!r->zd) return (size_t)src_read(r, dst, n);
    ZSTD_outBuffer ob = {dst, n, 0};
    while (ob.pos == 0) {
        if (r->zib.pos == r->zib.size && !r->raw_eof) {
            ssize_t got = src_read(r, r->zin, ZSTD_DStreamInSize());
            if (got == 0) r->raw_eof = 1;
            r->zib.src = r->zin;
            r->zib.size = (size_t)got;
            r->zib.pos = 0;
        }
        int drained = r->zib.pos == r->zib.size && r->raw_eof;
        if (drained && r->zlast == 0) return 0;
        size_t ret = ZSTD_decompressStream(r->zd, &ob, &r->zib);
        if (ZSTD_isError(ret)) rfail(r, "%s: zstd: %s", r->name, ZSTD_getErrorName(ret));
        r->zlast = ret;
        if (drained && ret != 0 && ob.pos == 0) rfail(r, "%s: truncated zstd stream", r->name);
    }
    return ob.pos;
}

/* Peek the first bytes; switch on zstd when the magic is there. */
static void sniff(rec_reader *r, int want_zstd) {
    while (r->npeek < 4) {
        ssize_t got = raw_read(r, r->peek + r->npeek, 4 - r->npeek);
        if (got <= 0) break;
        r->npeek += (size_t)got;
    }
    static const unsigned char magic[4] = {0x28, 0xB5, 0x2F, 0xFD};
    int is_z = r->npeek == 4 && !memcmp(r->peek, magic, 4);
    if (is_z || (want_zstd && r->npeek > 0)) {
        r->zd = ZSTD_createDStream();
        if (!r->zd) die("out of memory (zstd)");
        ZSTD_initDStream(r->zd);
        r->zin = xmalloc(ZSTD_DStreamInSize());
        r->zlast = 1;
    }
}

/* Split "ARCHIVE:member" where ARCHIVE names an archive file. */
static int split_archive(const char *path, char **arch, char **member) {
    static const char *exts[] = {".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz",
                                 ".tar.bz2", ".zip", NULL};
    for (const char *c = strchr(path, ':'); c; c = strchr(c + 1, ':')) {
        size_t n = (size_t)(c - path);
        char *a = xmalloc(n + 1);
        memcpy(a, path, n);
        a[n] = 0;
        for (int i = 0; exts[i]; i++)
            if (ends_with(a, exts[i]) && c[1]) {
                *arch = a;
                *member = xstrdup(c + 1);
                return 1;
            }
        free(a);
    }
    return 0;
}

static const char *strip_dot_slash(const char *s) {
    while (s[0] == '.' && s[1] == '/') s += 2;
    return s;
}

static void open_member(rec_reader *r, const char *arch, const char *member) {
    r->ar = archive_read_new();
    archive_read_support_filter_all(r->ar);
    archive_read_support_format_tar(r->ar);
    archive_read_support_format_gnutar(r->ar);
    archive_read_support_format_zip(r->ar);
    if (archive_read_open_filename(r->ar, arch, RAW_CHUNK) != ARCHIVE_OK)
        rfail(r, "%s: cannot open: %s", r->name, archive_error_string(r->ar));
    struct archive_entry *e;
    const char *want = strip_dot_slash(member);
    for (;;) {
        int rc = archive_read_next_header(r->ar, &e);
        if (rc == ARCHIVE_EOF) rfail(r, "%s: cannot open: no member '%s' in %s", r->name, member, arch);
        if (rc < ARCHIVE_WARN) rfail(r, "%s: cannot open: %s", r->name, archive_error_string(r->ar));
        const char *p = archive_entry_pathname(e);
        if (p && !strcmp(strip_dot_slash(p), want) && archive_entry_filetype(e) == AE_IFREG) return;
    }
}

static void open_steps(rec_reader *r, const char *path) {
    if (!path || !strcmp(path, "-")) {
        r->name = xstrdup("<stdin>");
        r->f = stdin;
    } else if (!wdl_exists(path) && split_archive(path, &r->arch, &r->member)) {
        r->name = xstrdup(path);
        open_member(r, r->arch, r->member);
    } else {
        r->name = xstrdup(path);
        r->f = fopen(path, "rb");
        if (!r->f) rfail(r, "%s: cannot open: %s", path, strerror(errno));
        r->own_f = 1;
    }
    sniff(r, ends_with(r->member ? r->member : r->name, ".zst"));
}

static rec_reader *new_reader(void) {
    rec_reader *r = xcalloc(1, sizeof *r);
    r->cap = RAW_CHUNK;
    r->buf = xmalloc(r->cap);
    return r;
}

rec_reader *rec_open(const char *path) {
    rec_reader *r = new_reader();
    open_steps(r, path);
    return r;
}

rec_reader *rec_try_open(const char *path, char *err, size_t errlen) {
    rec_reader *volatile r = new_reader();
    jmp_buf jb;
    r->catch_jb = &jb;
    r->err = err;
    r->errlen = errlen;
    if (setjmp(jb)) {
        rec_close(r);
        return NULL;
    }
    open_steps(r, path);
    r->catch_jb = NULL;
    return r;
}

int rec_try_next(rec_reader *r, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (r->broken) {
        snprintf(err, errlen, "%s: unreadable after an earlier error", r->name);
        return -1;
    }
    jmp_buf jb;
    r->catch_jb = &jb;
    r->err = err;
    r->errlen = errlen;
    if (setjmp(jb)) {
        r->catch_jb = NULL;
        return -1;
    }
    *out = rec_next(r);
    r->catch_jb = NULL;
    return *out ? 1 : 0;
}

const char *rec_name(const rec_reader *r) { return r->name; }
int64_t rec_line(const rec_reader *r) { return r->line; }

/* Next raw line (without '\n') or NULL at end; *len gets its length. */
static char *next_line(rec_reader *r, size_t *len) {
    for (;;) {
        char *nl = memchr(r->buf + r->scan, '\n', r->end - r->scan);
        if (nl) {
            char *s = r->buf + r->start;
            *len = (size_t)(nl - s);
            r->start = r->scan = (size_t)(nl - r->buf) + 1;
            return s;
        }
        r->scan = r->end;
        if (r->eof) {
            if (r->start == r->end) return NULL;
            char *s = r->buf + r->start;
            *len = r->end - r->start;
            r->start = r->scan = r->end;
            return s;
        }
        /* make room: slide the partial line down, grow if it fills the buffer */
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->scan -= r->start;
            r->start = 0;
        }
        if (r->cap - r->end < RAW_CHUNK / 2) {
            r->cap *= 2;
            r->buf = xrealloc(r->buf, r->cap);
        }
        size_t got = dec_read(r, r->buf + r->end, r->cap - r->end);
        if (got == 0) r->eof = 1;
        r->end += got;
    }
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

json_t *rec_next(rec_reader *r) {
    size_t n;
    char *s;
    for (;;) {
        s = next_line(r, &n);
        if (!s) return NULL;
        r->next_line++;
        if (r->next_line == 1 && n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) { s += 3; n -= 3; }
        if (!blank(s, n)) break;
    }
    r->line = r->next_line;
    json_error_t err;
    json_t *v = json_loadb(s, n, 0, &err);
    if (!v && json_error_code(&err) == json_error_null_character)
        rfail(r, "%s:%lld: a string holds \\u0000 (NUL), which records may not carry", r->name, (long long)r->line);
    if (!v) rfail(r, "%s:%lld: %s", r->name, (long long)r->line, err.text);
    if (!json_is_object(v)) {
        json_decref(v);
        rfail(r, "%s:%lld: expected a JSON object, got an array", r->name, (long long)r->line);
    }
    return v;
}

void rec_close(rec_reader *r) {
    if (!r) return;
    if (r->own_f && r->f) fclose(r->f);
    if (r->ar) archive_read_free(r->ar);
    if (r->zd) ZSTD_freeDStream(r->zd);
    free(r->zin);
    free(r->buf);
    free(r->name);
    free(r->arch);
    free(r->member);
    free(r);
}

char *rec_slurp(const char *path, size_t *len) {
    rec_reader *r = rec_open(path);
    sbuf b = {0};
    sb_reserve(&b, RAW_CHUNK);
    for (;;) {
        sb_reserve(&b, RAW_CHUNK);
        size_t got = dec_read(r, b.p + b.n, b.cap - b.n - 1);
        if (got == 0) break;
        b.n += got;
    }
    b.p[b.n] = 0;
    rec_close(r);
    if (len) *len = b.n;
    return b.p;
}

/* ---------- several inputs ---------- */
struct rec_multi {
    char **paths;
    int n, i;
    rec_reader *cur;
};

rec_multi *rec_multi_open(const char *const *paths, int n) {
    rec_multi *m = xcalloc(1, sizeof *m);
    m->n = n > 0 ? n : 1;
    m->paths = xcalloc((size_t)m->n, sizeof(char *));
    for (int i = 0; i < m->n; i++) m->paths[i] = xstrdup(n > 0 ? paths[i] : "-");
    m->cur = rec_open(m->paths[0]);
    return m;
}

json_t *rec_multi_next(rec_multi *m) {
    for (;;) {
        json_t *v = rec_next(m->cur);
        if (v || m->i + 1 >= m->n) return v;
        rec_close(m->cur);
        m->cur = rec_open(m->paths[++m->i]);
    }
}
const char *rec_multi_name(const rec_multi *m) { return rec_name(m->cur); }
int64_t rec_multi_line(const rec_multi *m) { return rec_line(m->cur); }
void rec_multi_close(rec_multi *m) {
    if (!m) return;
    rec_close(m->cur);
    for (int i = 0; i < m->n; i++) free(m->paths[i]);
    free(m->paths);
    free(m);
}

/* ---------- serializer ---------- */
/* Strings are written as valid UTF-8 whatever they hold (a string made
 * with json_stringn_nocheck may not be), and without NUL (U+FFFD instead),
 * so that every record written can be read back. */
static void dump_string(sbuf *b, const char *str, size_t len) {
    static const char hex[] = "0123456789abcdef";
    size_t n;
    char *s = utf8_text((char *)str, len, &n);
    sb_reserve(b, n + 2);
    sb_addc(b, '"');
    size_t run = 0; /* copy unescaped stretches in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        sb_add(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': sb_adds(b, "\\\""); break;
        case '\\': sb_adds(b, "\\\\"); break;
        case '\n': sb_adds(b, "\\n"); break;
        case '\t': sb_adds(b, "\\t"); break;
        case '\r': sb_adds(b, "\\r"); break;
        case '\b': sb_adds(b, "\\b"); break;
        case '\f': sb_adds(b, "\\f"); break;
        default: {
            char u[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
            sb_adds(b, u);
        }
        }
    }
    sb_add(b, s + run, n - run);
    sb_addc(b, '"');
    if (s != str) free(s);
}

/* Shortest of %.15g/%.16g/%.17g that reads back exactly; keep it a real. */
static void dump_real(sbuf *b, double x) {
    char t[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(t, sizeof t, "%.*g", prec, x);
        if (strtod(t, NULL) == x) break;
    }
    sb_adds(b, t);
    if (!strpbrk(t, ".eEn")) sb_adds(b, ".0");
}

static void dump_value(sbuf *b, const json_t *v) {
    char t[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        sb_addc(b, '{');
        int first = 1;
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first) sb_addc(b, ',');
            first = 0;
            dump_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
            sb_addc(b, ':');
            dump_value(b, json_object_iter_value(it));
        }
        sb_addc(b, '}');
        break;
    }
    case JSON_ARRAY: {
        sb_addc(b, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) sb_addc(b, ',');
            dump_value(b, json_array_get(v, i));
        }
        sb_addc(b, ']');
        break;
    }
    case JSON_STRING: dump_string(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER:
        snprintf(t, sizeof t, "%lld", (long long)json_integer_value(v));
        sb_adds(b, t);
        break;
    case JSON_REAL: dump_real(b, json_real_value(v)); break;
    case JSON_TRUE: sb_adds(b, "true"); break;
    case JSON_FALSE: sb_adds(b, "false"); break;
    case JSON_NULL: sb_adds(b, "null"); break;
    }
}

char *rec_dumps(const json_t *v, size_t *len) {
    sbuf b = {0};
    sb_reserve(&b, 64);
    if (v) dump_value(&b, v);
    else sb_adds(&b, "null");
    if (len) *len = b.n;
    return b.p;
}

/* ---------- writer ---------- */
struct rec_writer {
    FILE *f;
    char *path, *tmp; /* NULL for stdout or a device */
    int dev;          /* an existing device or pipe, written in place */
    char *dev_path;   /* its path, for messages */
    ZSTD_CStream *zc;
    char *zout;
    size_t zoutcap;
    sbuf line;
};

rec_writer *rec_create(const char *path) {
    rec_writer *w = xcalloc(1, sizeof *w);
    struct stat sb;
    if (!path || !strcmp(path, "-")) {
        w->f = stdout;
    } else if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode)) {
        /* a device or pipe (/dev/null, a FIFO): written in place; renaming a
         * temporary file over it would replace the device */
        if (ends_with(path, ".zst")) die("%s: compressed output to a device is not supported", path);
        w->f = fopen(path, "wb");
        if (!w->f) die("%s: cannot open: %s", path, strerror(errno));
        w->dev = 1;
        w->dev_path = xstrdup(path);
    } else {
        w->path = xstrdup(path);
        w->tmp = wdl_tmp_name(path);
        wdl_tmp_register(w->tmp);
        w->f = fopen(w->tmp, "wb");
        if (!w->f) die("%s: cannot create: %s", path, strerror(errno));
        if (ends_with(path, ".zst")) {
            w->zc = ZSTD_createCStream();
            if (!w->zc) die("out of memory (zstd)");
            ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, 3);
            ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1);
            w->zoutcap = ZSTD_CStreamOutSize();
            w->zout = xmalloc(w->zoutcap);
        }
    }
    return w;
}

static const char *wname(const rec_writer *w) { return w->path ? w->path : w->dev_path ? w->dev_path : "<stdout>"; }

static void w_raw(rec_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) die("%s: write error: %s", wname(w), strerror(errno));
}

static void w_zstd(rec_writer *w, const char *p, size_t n, ZSTD_EndDirective mode) {
    ZSTD_inBuffer in = {p, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->zout, w->zoutcap, 0};
        size_t left = ZSTD_compressStream2(w->zc, &out, &in, mode);
        if (ZSTD_isError(left)) die("%s: zstd: %s", wname(w), ZSTD_getErrorName(left));
        w_raw(w, w->zout, out.pos);
        if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) break;
    }
}

void rec_write(rec_writer *w, json_t *rec) {
    w->line.n = 0;
    sb_reserve(&w->line, 256);
    dump_value(&w->line, rec);
    sb_addc(&w->line, '\n');
    if (w->zc) w_zstd(w, w->line.p, w->line.n, ZSTD_e_continue);
    else w_raw(w, w->line.p, w->line.n);
}

void rec_write_text(rec_writer *w, const char *text, size_t n) {
    if (!w->zc) { w_raw(w, text, n); return; }
    /* a line at a time, as rec_write feeds the compressor */
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(text + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (text + i)) + 1 : n - i;
        w_zstd(w, text + i, len, ZSTD_e_continue);
        i += len;
    }
}

void rec_commit(rec_writer *w) {
    if (w->zc) w_zstd(w, NULL, 0, ZSTD_e_end);
    if (fflush(w->f) != 0) die("%s: write error: %s", wname(w), strerror(errno));
    if (w->dev && fclose(w->f) != 0) die("%s: write error: %s", wname(w), strerror(errno));
    if (w->path) {
        if (fsync(fileno(w->f)) != 0 && errno != EINVAL)
            die("%s: fsync: %s", w->path, strerror(errno));
        if (fclose(w->f) != 0) die("%s: write error: %s", w->path, strerror(errno));
        wdl_commit(w->tmp, w->path);
    }
    if (w->zc) ZSTD_freeCStream(w->zc);
    free(w->zout);
    free(w->line.p);
    free(w->path);
    free(w->dev_path);
    free(w->tmp);
    free(w);
}

/* ---------- field helpers ---------- */
const char *rec_str(const json_t *rec, const char *key) {
    return json_string_value(json_object_get(rec, key));
}
int64_t rec_int(const json_t *rec, const char *key, int64_t def) {
    json_t *v = json_object_get(rec, key);
    if (json_is_integer(v)) return json_integer_value(v);
    if (json_is_real(v)) return (int64_t)json_real_value(v);
    return def;
}

static const char *msg_field(json_t *m, const char *key) {
    return json_string_value(json_object_get(m, key));
}

int rec_prompt_completion(json_t *rec, const char **system, const char **prompt,
                          const char **completion) {
    const char *sy = NULL, *pr = NULL, *co = NULL;
    json_t *msgs = json_object_get(rec, "messages");
    if (json_is_array(msgs) && !json_object_get(rec, "prompt")) {
        size_t n = json_array_size(msgs), end = n;
        if (n > 0) {
            json_t *last = json_array_get(msgs, n - 1);
            const char *role = msg_field(last, "role");
            if (role && !strcmp(role, "assistant")) {
                co = msg_field(last, "content");
                end = n - 1;
            }
        }
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(msgs, i);
            const char *role = msg_field(m, "role");
            if (!role) continue;
            if (!sy && !strcmp(role, "system")) sy = msg_field(m, "content");
            if (i < end && !strcmp(role, "user") && msg_field(m, "content")) pr = msg_field(m, "content");
        }
    } else {
        sy = rec_str(rec, "system");
        pr = rec_str(rec, "prompt");
        co = rec_str(rec, "completion");
    }
    if (system) *system = sy;
    if (prompt) *prompt = pr;
    if (completion) *completion = co;
    return pr != NULL;
}
