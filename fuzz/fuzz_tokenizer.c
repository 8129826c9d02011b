/* fuzz_tokenizer: libFuzzer target for tokenizer.json parsing, encoding
 * arbitrary bytes, decoding and the templates. The first input byte picks
 * the mode (the rest is the payload):
 *   'J' parse the payload as a tokenizer.json (must fail cleanly or load),
 *       then encode sample texts with it
 *   'S' encode with a small built-in BPE tokenizer; decode must give the
 *       NFC form of the text (invalid bytes kept)
 *   'Q' the same with the Qwen3 tokenizer from ../shared (or $WDL_SHARED;
 *       the built-in one when absent), special tokens matched
 *   'B' the byte tokenizer: decode(encode(x)) == x exactly
 *   'T' templates: prompt = payload up to the first NUL, completion = rest
 * Any other first byte picks one of these by its value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "common.h"
#include "template.h"
#include "tokenizer.h"

static wdl_tokenizer *byte_tok, *small_tok, *qwen_tok;

/* 256 byte characters, a few merges, added tokens with every flag, NFC. */
static char *small_json(void) {
    size_t cap = 1 << 16, n = 0;
    char *s = xmalloc(cap);
    n += (size_t)snprintf(s + n, cap - n,
        "{\"added_tokens\":["
        "{\"id\":300,\"content\":\"<|im_start|>\",\"special\":true,\"normalized\":false},"
        "{\"id\":301,\"content\":\"<|im_end|>\",\"special\":true,\"normalized\":false},"
        "{\"id\":302,\"content\":\"<|endoftext|>\",\"special\":true,\"normalized\":false},"
        "{\"id\":303,\"content\":\"<l>\",\"lstrip\":true,\"normalized\":false},"
        "{\"id\":304,\"content\":\"<r>\",\"rstrip\":true,\"normalized\":false},"
        "{\"id\":305,\"content\":\"word\",\"single_word\":true,\"normalized\":true},"
        "{\"id\":306,\"content\":\"\\u00e9t\\u00e9\",\"normalized\":true}],"
        "\"normalizer\":{\"type\":\"NFC\"},"
        "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
        "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|"
        "\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
        "\"behavior\":\"Isolated\",\"invert\":false},"
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{");
    int k = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        int cp = keep ? b : 256 + k++;
        if (cp == '"' || cp == '\\') n += (size_t)snprintf(s + n, cap - n, "\"\\%c\":%d,", cp, b);
        else n += (size_t)snprintf(s + n, cap - n, "\"\\u%04x\":%d,", cp, b);
    }
    n += (size_t)snprintf(s + n, cap - n,
        "\"\\u0120t\":256,\"he\":257,\"\\u0120the\":258,\"in\":259,\"\\u0120\\u0120\":260,\"\\u0120\\u0120\\u0120\\u0120\":261,"
        "\"\\u0120th\":262,\"er\":263},"
        "\"merges\":[\"\\u0120 t\",\"h e\",\"\\u0120t he\",\"i n\",\"\\u0120 \\u0120\",\"\\u0120\\u0120 \\u0120\\u0120\","
        "[\"\\u0120t\",\"h\"],\"e r\"]}}");
    return s;
}

static void init(void) {
    wdl_set_prog("fuzz_tokenizer");
    byte_tok = tok_byte();
    char err[512];
    char *js = small_json();
    small_tok = tok_load_json(js, strlen(js), "small", err, sizeof err);
    if (!small_tok) { fprintf(stderr, "%s\n", err); abort(); }
    free(js);
    const char *root = getenv("WDL_SHARED");
    char *p = wdl_path_join(root && *root ? root : "../shared", "data/qwen3-tokenizer/tokenizer.json");
    if (wdl_exists(p)) qwen_tok = tok_load(p);
    free(p);
}

/* NFC of every valid UTF-8 stretch; other bytes kept (what the tokenizer
 * promises to give back). */
static char *nfc_runs(const uint8_t *s, size_t n, size_t *on) {
    char *o = xmalloc(4 * n + 16);
    size_t m = 0, i = 0;
    while (i < n) {
        size_t j = i;
        for (;;) {
            utf8proc_int32_t cp;
            if (j >= n) break;
            utf8proc_ssize_t l = utf8proc_iterate(s + j, (utf8proc_ssize_t)(n - j), &cp);
            if (l <= 0) break;
            j += (size_t)l;
        }
        if (j > i) {
            utf8proc_uint8_t *d = NULL;
            utf8proc_ssize_t r = utf8proc_map(s + i, (utf8proc_ssize_t)(j - i), &d, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (r < 0) abort();
            o = xrealloc(o, m + (size_t)r + 4 * n + 16);
            memcpy(o + m, d, (size_t)r);
            m += (size_t)r;
            free(d);
            i = j;
        }
        if (i < n) o[m++] = (char)s[i++];
    }
    *on = m;
    return o;
}

/* exact: decode(encode(x)) == x; else == NFC runs of x, or with
 * specials (the text between them is normalized piece by piece, as in HF)
 * equal once normalized again. */
static void roundtrip(const wdl_tokenizer *t, const uint8_t *d, size_t n, int special, int exact) {
    ivec v = {0};
    tok_encode(t, (const char *)d, n, special, &v);
    for (size_t i = 0; i < v.n; i++)
        if (v.v[i] < 0 || v.v[i] >= tok_vocab_size(t)) abort();
    size_t len, wl;
    char *back = tok_decode(t, v.v, v.n, &len);
    if (exact) {
        if (len != n || memcmp(back, d, n)) abort();
    } else {
        char *want = nfc_runs(d, n, &wl);
        if (special) {
            char *b2 = nfc_runs((const uint8_t *)back, len, &len);
            free(back);
            back = b2;
        }
        if (len != wl || memcmp(back, want, wl)) abort();
        free(want);
    }
    free(back);
    ivec_free(&v);
}

static void samples(const wdl_tokenizer *t, const uint8_t *d, size_t n) {
    static const char *const texts[] = {"Hello world, it's 42!\n\n  x", "caf\xC3\xA9 e\xCC\x81 \xFF\xFE <|im_end|>", ""};
    ivec v = {0};
    for (int i = 0; i < 3; i++)
        for (int sp = 0; sp < 2; sp++) {
            v.n = 0;
            tok_encode(t, texts[i], strlen(texts[i]), sp, &v);
            size_t len;
            free(tok_decode(t, v.v, v.n, &len));
        }
    v.n = 0;
    tok_encode(t, (const char *)d, n < 256 ? n : 256, 1, &v);
    free(tok_decode(t, v.v, v.n, NULL));
    (void)tok_special(t, "<|im_end|>");
    ivec_free(&v);
}

static void templates(const wdl_tokenizer *t, const uint8_t *d, size_t n) {
    char *buf = xmalloc(n + 2);
    memcpy(buf, d, n);
    buf[n] = 0;
    buf[n + 1] = 0;
    const char *prompt = buf, *comp = buf + strlen(buf) + 1;
    ivec ids = {0};
    size_t np;
    for (int k = 0; k < 2; k++) {
        wdl_template tpl = k ? TPL_CHATML : TPL_PLAIN;
        tpl_encode(t, tpl, k ? "sys" : NULL, prompt, comp, &ids, &np);
        if (np >= ids.n || ids.v[ids.n - 1] != tpl_end_id(t, tpl)) abort();
        tpl_encode(t, tpl, NULL, prompt, NULL, &ids, &np);
        if (np != ids.n) abort();
    }
    ivec_free(&ids);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) { init(); ready = 1; }
    if (size == 0) return 0;
    int mode = data[0];
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    if (!strchr("JSQBT", mode) || !mode) mode = "JSQBT"[data[0] % 5];
    const wdl_tokenizer *q = qwen_tok ? qwen_tok : small_tok;
    switch (mode) {
    case 'J': {
        char err[512];
        wdl_tokenizer *t = tok_load_json((const char *)d, n, "fuzz.json", err, sizeof err);
        if (t) { samples(t, d, n); tok_free(t); }
        else if (strncmp(err, "fuzz.json", 9)) abort();
        break;
    }
    case 'S': roundtrip(small_tok, d, n, 0, 0); samples(small_tok, d, n); break;
    case 'Q':
        if (qwen_tok) roundtrip(qwen_tok, d, n, 1, 0);
        roundtrip(q, d, n, 0, 0);
        break;
    case 'B': roundtrip(byte_tok, d, n, 1, 1); roundtrip(byte_tok, d, n, 0, 1); break;
    case 'T': templates(q, d, n); templates(byte_tok, d, n); break;
    }
    return 0;
}
