/* test_tokenizer.c: the BPE tokenizer (against the Qwen3 golden encodings
 * and a reference BPE on synthetic tokenizers), added-token flags,
 * normalization, the byte tokenizer, loading errors and the prompt
 * templates. Dying paths (bad files given to programs) are in tok.bats.
 * Tests that need ../shared (or $WDL_SHARED) skip when it is absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>
#include "common.h"
#include "template.h"
#include "tokenizer.h"

static const char QWEN_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static char *shared_path(const char *rel) {
    const char *root = getenv("WDL_SHARED");
    return wdl_path_join(root && *root ? root : "../shared", rel);
}

static wdl_tokenizer *qwen;  /* loaded once; NULL when shared data is absent */

static int setup(void **st) {
    char *p = shared_path("data/qwen3-tokenizer/tokenizer.json");
    if (wdl_exists(p)) qwen = tok_load(p);
    free(p);
    return 0;
}
static int teardown(void **st) {
    tok_free(qwen);
    return 0;
}
#define NEED_QWEN() do { if (!qwen) skip(); } while (0)

static void assert_ids(const ivec *v, const int32_t *want, size_t n) {
    if (v->n != n) {
        for (size_t i = 0; i < v->n; i++) fprintf(stderr, "%d ", v->v[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(v->n, n);
    for (size_t i = 0; i < n; i++) assert_int_equal(v->v[i], want[i]);
}

static char *nfc(const char *s) { return (char *)utf8proc_NFC((const utf8proc_uint8_t *)s); }

/* ------------------------------------------------------ Qwen3 (shared) */

static void test_golden(void **st) {
    NEED_QWEN();
    char *p = shared_path("data/qwen3-tokenizer/golden_ids.jsonl");
    if (!wdl_exists(p)) { free(p); skip(); }
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0, n = 0, bad = 0;
    ivec ids = {0};
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *r = json_loads(line, 0, &je);
        assert_non_null(r);
        json_t *tx = json_object_get(r, "text"), *want = json_object_get(r, "ids");
        assert_true(json_is_string(tx) && json_is_array(want));
        ids.n = 0;
        tok_encode(qwen, json_string_value(tx), json_string_length(tx), 1, &ids);
        int same = ids.n == json_array_size(want);
        for (size_t i = 0; same && i < ids.n; i++) same = ids.v[i] == json_integer_value(json_array_get(want, i));
        if (!same && bad++ < 3) fprintf(stderr, "# golden line %zu differs: %.60s\n", n + 1, json_string_value(tx));
        /* decode(encode(x)) == NFC(x) */
        size_t len;
        char *back = tok_decode(qwen, ids.v, ids.n, &len);
        char *norm = nfc(json_string_value(tx));
        assert_int_equal(len, strlen(norm));
        assert_memory_equal(back, norm, len);
        free(back); free(norm);
        json_decref(r);
        n++;
    }
    free(line);
    fclose(f);
    free(p);
    ivec_free(&ids);
    fprintf(stderr, "# golden: %zu of %zu encodings reproduced\n", n - bad, n);
    assert_true(n >= 1000);
    assert_int_equal(bad, 0);
}

static void test_qwen_specials(void **st) {
    NEED_QWEN();
    assert_int_equal(tok_vocab_size(qwen), 151669);
    assert_false(tok_is_byte(qwen));
    assert_int_equal(tok_special(qwen, "<|endoftext|>"), 151643);
    assert_int_equal(tok_special(qwen, "<|im_start|>"), 151644);
    assert_int_equal(tok_special(qwen, "<|im_end|>"), 151645);
    assert_int_equal(tok_special(qwen, "<think>"), 151667);
    assert_int_equal(tok_special(qwen, "</think>"), 151668);
    assert_int_equal(tok_special(qwen, "<|no_such_token|>"), -1);
    const char *s = "<|im_start|>user\nhi<|im_end|>";
    ivec v = {0};
    tok_encode(qwen, s, strlen(s), 1, &v);
    int32_t want[] = {151644, 872, 198, 6023, 151645};
    assert_ids(&v, want, 5);
    /* as plain text the markers are ordinary tokens and decode back */
    v.n = 0;
    tok_encode(qwen, s, strlen(s), 0, &v);
    assert_true(v.n > 5);
    for (size_t i = 0; i < v.n; i++) assert_true(v.v[i] < 151643);
    size_t len;
    char *d = tok_decode(qwen, v.v, v.n, &len);
    assert_string_equal(d, s);
    free(d);
    const char *b;
    size_t bl;
    assert_true(tok_id_bytes(qwen, 151645, &b, &bl));
    assert_int_equal(bl, 10);
    assert_memory_equal(b, "<|im_end|>", 10);
    assert_false(tok_id_bytes(qwen, 151669, &b, &bl));
    assert_false(tok_id_bytes(qwen, -1, &b, &bl));
    ivec_free(&v);
}

/* Normalization, invalid UTF-8 and long pieces on the real file. */
static void test_qwen_edges(void **st) {
    NEED_QWEN();
    ivec v = {0};
    const char *dec = "e\xCC\x81", *pre = "\xC3\xA9"; /* e + combining acute == é after NFC */
    tok_encode(qwen, dec, strlen(dec), 1, &v);
    ivec w = {0};
    tok_encode(qwen, pre, strlen(pre), 1, &w);
    assert_ids(&v, w.v, w.n);
    /* invalid UTF-8 is kept byte for byte */
    const char bad[] = "ab\xFF\xC3(x\xED\xA0\x80 \xF4\x90\x80\x80!";
    v.n = 0;
    tok_encode(qwen, bad, sizeof bad - 1, 1, &v);
    size_t len;
    char *d = tok_decode(qwen, v.v, v.n, &len);
    assert_int_equal(len, sizeof bad - 1);
    assert_memory_equal(d, bad, len);
    free(d);
    /* long runs go through the heap merge; they must still round-trip */
    size_t n = 20000;
    char *big = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++) big[i] = i % 1000 == 999 ? 'x' : (i % 3 ? ' ' : 'a');
    big[n] = 0;
    v.n = 0;
    tok_encode(qwen, big, n, 1, &v);
    d = tok_decode(qwen, v.v, v.n, &len);
    assert_int_equal(len, n);
    assert_memory_equal(d, big, n);
    free(d);
    memset(big, ' ', n);
    v.n = 0;
    tok_encode(qwen, big, n, 1, &v);
    assert_true(v.n < n / 8); /* spaces merge into long space tokens */
    free(big);
    ivec_free(&v);
    ivec_free(&w);
}

/* Several threads share one tokenizer (the lazy self-check flags). */
static void test_threads(void **st) {
    NEED_QWEN();
    const char *texts[] = {"Paul needs 63 cupcakes for a birthday party.", "The answer is 15.",
                           "Natalia sold clips to 48 of her friends in April", "cupcakes cupcakes cupcakes"};
    ivec serial[4] = {{0}};
    for (int i = 0; i < 4; i++) tok_encode(qwen, texts[i], strlen(texts[i]), 1, &serial[i]);
    int bad = 0;
#pragma omp parallel for num_threads(2) reduction(+ : bad)
    for (int k = 0; k < 400; k++) {
        ivec v = {0};
        tok_encode(qwen, texts[k % 4], strlen(texts[k % 4]), 1, &v);
        if (v.n != serial[k % 4].n || memcmp(v.v, serial[k % 4].v, v.n * sizeof(int32_t))) bad++;
        ivec_free(&v);
    }
    assert_int_equal(bad, 0);
    for (int i = 0; i < 4; i++) ivec_free(&serial[i]);
}

/* ------------------------------------------- synthetic tokenizer files */

/* GPT-2's byte -> character map, written independently of the library. */
static void bytechar(int b, char out[3]) {
    int k = 0, cp = -1;
    for (int x = 0; x < 256; x++) {
        int keep = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174;
        int c = keep ? x : 256 + k++;
        if (x == b) cp = c;
    }
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); out[2] = 0; }
}

/* A tokenizer.json: the 256 byte characters as ids 0..255, then one id per
 * merge ("a b", byte-level strings) in order; Qwen's normalizer and
 * pre-tokenizer unless changed by the caller. */
static json_t *synth(const char *const *merges, size_t n) {
    json_t *vocab = json_object(), *ml = json_array();
    for (int b = 0; b < 256; b++) {
        char c[3];
        bytechar(b, c);
        json_object_set_new(vocab, c, json_integer(b));
    }
    for (size_t i = 0; i < n; i++) {
        char buf[128];
        const char *sp = strchr(merges[i], ' ');
        snprintf(buf, sizeof buf, "%.*s%s", (int)(sp - merges[i]), merges[i], sp + 1);
        if (!json_object_get(vocab, buf)) json_object_set_new(vocab, buf, json_integer(json_object_size(vocab)));
        json_array_append_new(ml, json_string(merges[i]));
    }
    return json_pack("{s:s, s:n, s:[], s:{s:s}, s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]},"
                     " s:n, s:{s:s}, s:{s:s, s:n, s:n, s:s, s:s, s:b, s:b, s:b, s:o, s:o}}",
                     "version", "1.0", "truncation", "added_tokens", "normalizer", "type", "NFC",
                     "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex",
                     QWEN_REGEX, "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0,
                     "trim_offsets", 0, "use_regex", 0, "post_processor", "decoder", "type", "ByteLevel",
                     "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "",
                     "end_of_word_suffix", "", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab",
                     vocab, "merges", ml);
}

static wdl_tokenizer *load_synth(json_t *j) {
    char *s = json_dumps(j, 0);
    char err[512] = "";
    wdl_tokenizer *t = tok_load_json(s, strlen(s), "synth.json", err, sizeof err);
    if (!t) fprintf(stderr, "# %s\n", err);
    assert_non_null(t);
    free(s);
    return t;
}

static void add_token(json_t *j, int id, const char *content, int single, int l, int r, int norm, int special) {
    json_array_append_new(json_object_get(j, "added_tokens"),
                          json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content,
                                    "single_word", single, "lstrip", l, "rstrip", r, "normalized", norm,
                                    "special", special));
}

/* Ids of a text that the pre-tokenizer keeps whole, per the vocabulary. */
static int32_t vid(json_t *j, const char *tok) {
    json_t *v = json_object_get(json_object_get(json_object_get(j, "model"), "vocab"), tok);
    assert_non_null(v);
    return (int32_t)json_integer_value(v);
}

static void test_merge_ranks(void **st) {
    /* "b c" outranks "a b": abc -> a + bc, then nothing joins a and bc */
    const char *m[] = {"b c", "a b", "ab c", "a bc"};
    json_t *j = synth(m, 4);
    wdl_tokenizer *t = load_synth(j);
    ivec v = {0};
    tok_encode(t, "abc", 3, 1, &v);
    int32_t w1[] = {vid(j, "abc")}; /* via "a bc" (rank 3) */
    assert_ids(&v, w1, 1);
    v.n = 0;
    tok_encode(t, "ab", 2, 1, &v);
    int32_t w2[] = {vid(j, "ab")};
    assert_ids(&v, w2, 1);
    v.n = 0;
    tok_encode(t, "bcab", 4, 1, &v);
    int32_t w3[] = {vid(j, "bc"), vid(j, "ab")};
    assert_ids(&v, w3, 2);
    assert_int_equal(tok_vocab_size(t), 256 + 3); /* bc, ab, abc */
    ivec_free(&v);
    tok_free(t);
    json_decref(j);
}

/* A whole piece that is in the vocabulary but not reachable by merges is
 * not taken as one token unless ignore_merges is set. */
static void test_ignore_merges(void **st) {
    const char *m[] = {"a b", "c d", "ab cd", "b c"};
    json_t *j = synth(m, 4);
    json_object_set_new(json_object_get(json_object_get(j, "model"), "vocab"), "abc", json_integer(300));
    wdl_tokenizer *t = load_synth(j);
    ivec v = {0};
    tok_encode(t, "abc", 3, 1, &v);
    int32_t w1[] = {vid(j, "ab"), 'c'};
    assert_ids(&v, w1, 2);
    tok_free(t);
    json_object_set_new(json_object_get(j, "model"), "ignore_merges", json_true());
    t = load_synth(j);
    v.n = 0;
    tok_encode(t, "abc", 3, 1, &v);
    int32_t w2[] = {300};
    assert_ids(&v, w2, 1);
    v.n = 0;
    tok_encode(t, "abcd", 4, 1, &v); /* not in the vocabulary: merges as usual */
    int32_t w3[] = {vid(j, "abcd")};
    assert_ids(&v, w3, 1);
    ivec_free(&v);
    tok_free(t);
    json_decref(j);
}

/* Reference BPE on strings: merge the best-ranked adjacent pair, leftmost
 * first, until no pair has a rank. */
static void ref_bpe(const char *const *merges, size_t nm, const char *s, size_t n, ivec *out, json_t *j) {
    char **sym = xcalloc(n, sizeof(char *));
    size_t m = n;
    for (size_t i = 0; i < n; i++) { sym[i] = xmalloc(3); bytechar((unsigned char)s[i], sym[i]); }
    for (;;) {
        size_t best = nm, bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            for (size_t r = 0; r < best; r++) {
                const char *sp = strchr(merges[r], ' ');
                if (strlen(sym[i]) == (size_t)(sp - merges[r]) && !strncmp(sym[i], merges[r], sp - merges[r]) &&
                    !strcmp(sym[i + 1], sp + 1)) { best = r; bi = i; break; }
            }
        if (best == nm) break;
        char *c = xmalloc(strlen(sym[bi]) + strlen(sym[bi + 1]) + 1);
        strcpy(c, sym[bi]);
        strcat(c, sym[bi + 1]);
        free(sym[bi]); free(sym[bi + 1]);
        sym[bi] = c;
        memmove(sym + bi + 1, sym + bi + 2, (m - bi - 2) * sizeof(char *));
        m--;
    }
    for (size_t i = 0; i < m; i++) { ivec_push(out, vid(j, sym[i])); free(sym[i]); }
    free(sym);
}

/* Random merges over a tiny alphabet, words short (rank scan) and long
 * (heap), against the reference. */
static void test_bpe_reference(void **st) {
    wdl_rng r;
    rng_seed(&r, 7);
    const char *alpha = "abc";
    enum { NM = 40 };
    char *mbuf[NM];
    const char *merges[NM];
    /* grow merges from existing tokens so every merge is well formed */
    char *toks[NM + 3] = {"a", "b", "c"};
    size_t nt = 3;
    for (int i = 0; i < NM; i++) {
        const char *x, *y;
        int again;
        do { /* distinct merges: a repeated pair would have two ranks */
            x = toks[rng_below(&r, nt)];
            y = toks[rng_below(&r, nt)];
            again = 0;
            for (int k = 0; k < i; k++) {
                const char *sp = strchr(merges[k], ' ');
                again |= strlen(x) == (size_t)(sp - merges[k]) && !strncmp(merges[k], x, strlen(x)) && !strcmp(sp + 1, y);
            }
        } while (again);
        mbuf[i] = xmalloc(strlen(x) + strlen(y) + 2);
        sprintf(mbuf[i], "%s %s", x, y);
        merges[i] = mbuf[i];
        char *cat = xmalloc(strlen(x) + strlen(y) + 1);
        sprintf(cat, "%s%s", x, y);
        int dup = 0;
        for (size_t k = 0; k < nt; k++) dup |= !strcmp(toks[k], cat);
        if (!dup && strlen(cat) < 12) toks[nt++] = cat;
        else free(cat);
    }
    json_t *j = synth(merges, NM);
    wdl_tokenizer *t = load_synth(j);
    for (int trial = 0; trial < 300; trial++) {
        size_t n = trial < 250 ? 1 + rng_below(&r, 40) : 50 + rng_below(&r, 400);
        char *s = xmalloc(n + 1);
        for (size_t i = 0; i < n; i++) s[i] = alpha[rng_below(&r, 3)];
        s[n] = 0;
        ivec a = {0}, b = {0};
        tok_encode(t, s, n, 1, &a);
        ref_bpe(merges, NM, s, n, &b, j);
        assert_ids(&a, b.v, b.n);
        /* the same again: now the whole-piece shortcut may answer */
        a.n = 0;
        tok_encode(t, s, n, 1, &a);
        assert_ids(&a, b.v, b.n);
        ivec_free(&a); ivec_free(&b);
        free(s);
    }
    tok_free(t);
    json_decref(j);
    for (int i = 0; i < NM; i++) free(mbuf[i]);
    for (size_t k = 3; k < nt; k++) free(toks[k]);
}

static void test_added_flags(void **st) {
    const char *m[] = {"a b"};
    json_t *j = synth(m, 1);
    add_token(j, 300, "<x>", 0, 1, 0, 0, 1);   /* lstrip */
    add_token(j, 301, "<y>", 0, 0, 1, 0, 1);   /* rstrip */
    add_token(j, 302, "cat", 1, 0, 0, 0, 0);   /* single word */
    add_token(j, 303, "<xx>", 0, 0, 0, 0, 1);  /* longer than <x> at the same place */
    add_token(j, 304, "\xEF\xAC\x81", 0, 0, 0, 1, 0); /* "ﬁ", normalized: matched as NFKC "fi" */
    json_object_set_new(j, "normalizer", json_pack("{s:s}", "type", "NFKC"));
    wdl_tokenizer *t = load_synth(j);
    ivec v = {0};
    const char *s1 = "q  <x>  q";
    tok_encode(t, s1, strlen(s1), 1, &v);
    /* lstrip eats the spaces before <x>: q, <x>, then "  q" */
    assert_int_equal(v.v[0], 'q');
    assert_int_equal(v.v[1], 300);
    v.n = 0;
    const char *s2 = "q<y>  q";
    tok_encode(t, s2, strlen(s2), 1, &v);
    int32_t w2[] = {'q', 301, 'q'};
    assert_ids(&v, w2, 3);
    v.n = 0;
    const char *s3 = "cat cats cat.";
    tok_encode(t, s3, strlen(s3), 1, &v);
    /* "cat" alone and before '.' is the token; inside "cats" it is not */
    assert_int_equal(v.v[0], 302);
    assert_int_equal(v.v[v.n - 2], 302);
    for (size_t i = 1; i + 2 < v.n; i++) assert_int_not_equal(v.v[i], 302);
    v.n = 0;
    tok_encode(t, "<xx>", 4, 1, &v);
    int32_t w4[] = {303};
    assert_ids(&v, w4, 1);
    v.n = 0;
    tok_encode(t, "fi", 2, 1, &v); /* plain "fi" also matches after normalization */
    int32_t w5[] = {304};
    assert_ids(&v, w5, 1);
    v.n = 0;
    tok_encode(t, "<xx>", 4, 0, &v); /* allow_special = 0: plain text */
    assert_int_equal(v.n, 4);
    assert_int_equal(tok_special(t, "cat"), 302);
    assert_int_equal(tok_vocab_size(t), 305);
    ivec_free(&v);
    tok_free(t);
    json_decref(j);
}

/* Other pre-tokenizer shapes: GPT-2 style ByteLevel with its own regex and
 * a prefix space, and Split behaviors. */
static void test_pretokenizers(void **st) {
    const char *m[] = {"\xC4\xA0 a", "\xC4\xA0" "a b"};
    json_t *j = synth(m, 2);
    json_object_set_new(j, "pre_tokenizer", json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                                      "add_prefix_space", 1, "trim_offsets", 0, "use_regex", 1));
    json_object_set_new(j, "normalizer", json_null());
    wdl_tokenizer *t = load_synth(j);
    ivec v = {0};
    tok_encode(t, "ab", 2, 1, &v);
    int32_t w1[] = {vid(j, "\xC4\xA0" "ab")}; /* " ab" after the prefix space */
    assert_ids(&v, w1, 1);
    tok_free(t);
    /* Removed: the matches (spaces) disappear */
    json_object_set_new(j, "pre_tokenizer",
                        json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence",
                                  "pretokenizers", "type", "Split", "pattern", "String", " ", "behavior", "Removed",
                                  "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0,
                                  "use_regex", 0));
    t = load_synth(j);
    v.n = 0;
    tok_encode(t, "a b  c", 6, 1, &v);
    int32_t w2[] = {'a', 'b', 'c'};
    assert_ids(&v, w2, 3);
    tok_free(t);
    /* MergedWithNext: a space joins the piece after it */
    json_object_set_new(json_array_get(json_object_get(json_object_get(j, "pre_tokenizer"), "pretokenizers"), 0),
                        "behavior", json_string("MergedWithNext"));
    t = load_synth(j);
    v.n = 0;
    tok_encode(t, "b ab", 4, 1, &v);
    int32_t w3[] = {'b', vid(j, "\xC4\xA0" "ab")};
    assert_ids(&v, w3, 2);
    ivec_free(&v);
    tok_free(t);
    json_decref(j);
}

static void expect_load_error(json_t *j, const char *needle) {
    char *s = json_dumps(j, 0);
    char err[512] = "";
    wdl_tokenizer *t = tok_load_json(s, strlen(s), "bad.json", err, sizeof err);
    if (t || !strstr(err, needle)) fprintf(stderr, "# got: '%s', want '%s'\n", err, needle);
    assert_null(t);
    assert_non_null(strstr(err, needle));
    assert_true(!strncmp(err, "bad.json", 8));
    free(s);
}

static void test_load_errors(void **st) {
    char err[512];
    const char *bad[][2] = {
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}}", "bad.json:1: expected ',' or '}'"},
        {"{\n\"a\": [1, 2,\n]}", "bad.json:3:"},
        {"[1]", "not a JSON object"},
        {"{\"a\": \"\\ud800\"}", "lone surrogate"},
        {"{\"a\": tru}", "bad value"},
        {"", "unexpected end of input"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wdl_tokenizer *t = tok_load_json(bad[i][0], strlen(bad[i][0]), "bad.json", err, sizeof err);
        if (t || !strstr(err, bad[i][1])) fprintf(stderr, "# case %zu: got '%s'\n", i, err);
        assert_null(t);
        assert_non_null(strstr(err, bad[i][1]));
    }
    const char *m[] = {"a b"};
    json_t *j = synth(m, 1);
    json_t *model = json_object_get(j, "model");
    json_array_append_new(json_object_get(model, "merges"), json_string("a zz"));
    expect_load_error(j, "model.merges[1]: \"zz\" is not in the vocabulary");
    json_array_remove(json_object_get(model, "merges"), 1);
    json_object_set_new(model, "type", json_string("WordPiece"));
    expect_load_error(j, "model type \"WordPiece\" is not supported");
    json_object_set_new(model, "type", json_string("BPE"));
    json_object_set_new(json_object_get(j, "normalizer"), "type", json_string("Lowercase"));
    expect_load_error(j, "normalizer type \"Lowercase\" is not supported");
    json_object_set_new(json_object_get(j, "normalizer"), "type", json_string("NFC"));
    json_t *split = json_array_get(json_object_get(json_object_get(j, "pre_tokenizer"), "pretokenizers"), 0);
    json_object_set_new(json_object_get(split, "pattern"), "Regex", json_string("(unclosed"));
    expect_load_error(j, "pre_tokenizer Split pattern:");
    json_object_set_new(json_object_get(split, "pattern"), "Regex", json_string(" "));
    json_object_set_new(json_object_get(model, "vocab"), "q", json_integer(-4));
    expect_load_error(j, "out of range");
    json_object_del(json_object_get(model, "vocab"), "q");
    json_object_set_new(j, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace"));
    expect_load_error(j, "pre_tokenizer type \"Whitespace\" is not supported");
    json_object_set_new(j, "pre_tokenizer", json_null());
    expect_load_error(j, "no ByteLevel step");
    json_decref(j);
}

/* ------------------------------------------------------ byte tokenizer */

static void test_byte(void **st) {
    wdl_tokenizer *t = tok_byte();
    assert_true(tok_is_byte(t));
    assert_int_equal(tok_vocab_size(t), 272);
    assert_int_equal(tok_special(t, "<|endoftext|>"), 256);
    assert_int_equal(tok_special(t, "<|im_start|>"), 257);
    assert_int_equal(tok_special(t, "<|im_end|>"), 258);
    assert_int_equal(tok_special(t, "<think>"), 259);
    assert_int_equal(tok_special(t, "</think>"), 260);
    assert_int_equal(tok_special(t, "a"), -1);
    ivec v = {0};
    const char *s = "a<|im_end|>\xC3\xA9<think>";
    tok_encode(t, s, strlen(s), 1, &v);
    int32_t w1[] = {'a', 258, 0xC3, 0xA9, 259};
    assert_ids(&v, w1, 5);
    v.n = 0;
    tok_encode(t, s, strlen(s), 0, &v);
    assert_int_equal(v.n, strlen(s));
    size_t len;
    char *d = tok_decode(t, v.v, v.n, &len);
    assert_int_equal(len, strlen(s));
    assert_memory_equal(d, s, len);
    free(d);
    int32_t all[261];
    for (int i = 0; i < 261; i++) all[i] = i;
    d = tok_decode(t, all, 261, &len);
    assert_int_equal(len, 256 + 13 + 12 + 10 + 7 + 8);
    for (int i = 0; i < 256; i++) assert_int_equal((unsigned char)d[i], i);
    free(d);
    assert_false(tok_id_bytes(t, 261, NULL, NULL));
    assert_false(tok_id_bytes(t, 271, NULL, NULL));
    assert_false(tok_id_bytes(t, 272, NULL, NULL));
    ivec_free(&v);
    tok_free(t);
}

static void test_load_paths(void **st) {
    char dir[] = "/tmp/wdl-test-tok.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *cfg = wdl_path_join(dir, "config.json");
    FILE *f = fopen(cfg, "w");
    fputs("{\"model_type\": \"qwen3\", \"wdl_tokenizer\": \"byte\"}\n", f);
    fclose(f);
    wdl_tokenizer *t = tok_load(dir);
    assert_true(tok_is_byte(t));
    tok_free(t);
    t = tok_load("byte");
    assert_true(tok_is_byte(t));
    tok_free(t);
    /* a tokenizer.json beside it wins */
    const char *m[] = {"a b"};
    json_t *j = synth(m, 1);
    char *tj = wdl_path_join(dir, "tokenizer.json");
    assert_int_equal(json_dump_file(j, tj, 0), 0);
    t = tok_load(dir);
    assert_false(tok_is_byte(t));
    assert_int_equal(tok_vocab_size(t), 257);
    tok_free(t);
    t = tok_load(tj);
    assert_int_equal(tok_vocab_size(t), 257);
    tok_free(t);
    json_decref(j);
    wdl_rmtree(dir);
    free(cfg); free(tj);
}

/* ---------------------------------------------------------- templates */

static void check_template(const wdl_tokenizer *t, wdl_template tpl, const char *sys, const char *prompt,
                           const char *comp) {
    char full[4096], pre[2048];
    if (tpl == TPL_CHATML) {
        char s[512] = "";
        if (sys) snprintf(s, sizeof s, "<|im_start|>system\n%s<|im_end|>\n", sys);
        snprintf(pre, sizeof pre, "%s<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", s, prompt);
        snprintf(full, sizeof full, "%s%s<|im_end|>", pre, comp);
    } else {
        snprintf(pre, sizeof pre, "%s%sQuestion: %s\nAnswer: ", sys ? sys : "", sys ? "\n\n" : "", prompt);
        snprintf(full, sizeof full, "%s%s<|endoftext|>", pre, comp);
    }
    ivec ids = {0}, ref = {0};
    size_t np;
    tpl_encode(t, tpl, sys, prompt, comp, &ids, &np);
    tok_encode(t, full, strlen(full), 1, &ref);
    assert_ids(&ids, ref.v, ref.n);
    assert_int_equal(ids.v[ids.n - 1], tpl_end_id(t, tpl));
    /* the prompt tokens decode to a prefix of the prompt rendering; the
     * first completion token reaches into the completion */
    size_t len;
    char *d = tok_decode(t, ids.v, np, &len);
    char *npre = tok_is_byte(t) ? xstrdup(pre) : nfc(pre); /* bytes are not normalized */
    assert_true(len <= strlen(npre));
    assert_memory_equal(d, npre, len);
    free(d);
    d = tok_decode(t, ids.v, np + 1, &len);
    assert_true(len > strlen(npre) || np + 1 == ids.n);
    free(d);
    /* generation prompt: the rendering up to where the model writes */
    ivec gen = {0}, gref = {0};
    size_t ng;
    tpl_encode(t, tpl, sys, prompt, NULL, &gen, &ng);
    tok_encode(t, pre, strlen(pre), 1, &gref);
    assert_ids(&gen, gref.v, gref.n);
    assert_int_equal(ng, gen.n);
    /* with a completion that starts with a letter the two agree */
    if ((tpl == TPL_CHATML || tok_is_byte(t)) && comp[0] != ' ' && comp[0] != '\n') {
        assert_int_equal(np, gen.n);
        assert_memory_equal(ids.v, gen.v, np * sizeof(int32_t));
    }
    free(npre);
    ivec_free(&ids); ivec_free(&ref); ivec_free(&gen); ivec_free(&gref);
}

static const char *const PROMPTS[][3] = {
    {NULL, "What is 2+3?", "2+3 = 5. The answer is 5."},
    {"You are a helpful assistant.", "Paul needs 63 cupcakes.\nHow many?", "He needs 63.\n\nAnswer: 63"},
    {NULL, "caf\xC3\xA9 or cafe\xCC\x81?", "  Both are caf\xC3\xA9."},
    {"Be brief.", "x", "\n\nstarts with newlines"},
    {NULL, "", "empty prompt"},
};

static void test_template_chatml(void **st) {
    NEED_QWEN();
    for (size_t i = 0; i < sizeof PROMPTS / sizeof PROMPTS[0]; i++)
        check_template(qwen, TPL_CHATML, PROMPTS[i][0], PROMPTS[i][1], PROMPTS[i][2]);
    /* the user cannot inject markers */
    ivec ids = {0};
    size_t np;
    tpl_encode(qwen, TPL_CHATML, NULL, "hi<|im_end|>", "ok", &ids, &np);
    int markers = 0;
    for (size_t i = 0; i < ids.n; i++) markers += ids.v[i] == 151645;
    assert_int_equal(markers, 2);
    assert_int_equal(tpl_end_id(qwen, TPL_CHATML), 151645);
    assert_int_equal(tpl_end_id(qwen, TPL_PLAIN), 151643);
    ivec_free(&ids);
}

static void test_template_byte(void **st) {
    wdl_tokenizer *t = tok_byte();
    for (size_t i = 0; i < sizeof PROMPTS / sizeof PROMPTS[0]; i++) {
        check_template(t, TPL_PLAIN, PROMPTS[i][0], PROMPTS[i][1], PROMPTS[i][2]);
        check_template(t, TPL_CHATML, PROMPTS[i][0], PROMPTS[i][1], PROMPTS[i][2]);
    }
    ivec ids = {0};
    size_t np;
    tpl_encode(t, TPL_PLAIN, NULL, "2+2", "4", &ids, &np);
    const char *p = "Question: 2+2\nAnswer: ";
    assert_int_equal(np, strlen(p));
    assert_int_equal(ids.n, strlen(p) + 2);
    for (size_t i = 0; i < np; i++) assert_int_equal(ids.v[i], (unsigned char)p[i]);
    assert_int_equal(ids.v[np], '4');
    assert_int_equal(ids.v[np + 1], 256);
    assert_int_equal(tpl_end_id(t, TPL_PLAIN), 256);
    assert_int_equal(tpl_end_id(t, TPL_CHATML), 258);
    /* user text with a marker stays bytes */
    tpl_encode(t, TPL_PLAIN, NULL, "<|endoftext|>", "4", &ids, &np);
    assert_int_equal(np, strlen("Question: \nAnswer: ") + 13);
    for (size_t i = 0; i < np; i++) assert_true(ids.v[i] < 256);
    assert_int_equal(tpl_from_name("plain"), TPL_PLAIN);
    assert_int_equal(tpl_from_name("chatml"), TPL_CHATML);
    assert_string_equal(tpl_name(TPL_CHATML), "chatml");
    assert_string_equal(tpl_name(TPL_PLAIN), "plain");
    ivec_free(&ids);
    tok_free(t);
}

/* chatml on a synthetic tokenizer, so it runs without shared data */
static void test_template_synth(void **st) {
    const char *m[] = {"a n", "an s", "w e", "we r", "i s", "\xC4\xA0 i"};
    json_t *j = synth(m, 6);
    add_token(j, 400, "<|im_start|>", 0, 0, 0, 0, 1);
    add_token(j, 401, "<|im_end|>", 0, 0, 0, 0, 1);
    add_token(j, 402, "<|endoftext|>", 0, 0, 0, 0, 1);
    wdl_tokenizer *t = load_synth(j);
    check_template(t, TPL_CHATML, "sys", "what is 1+1?", "answer is 2");
    check_template(t, TPL_CHATML, NULL, "q", " is a straddle");
    check_template(t, TPL_PLAIN, NULL, "what is 1+1?", "answer is 2");
    tok_free(t);
    json_decref(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_qwen_specials),
        cmocka_unit_test(test_qwen_edges),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_merge_ranks),
        cmocka_unit_test(test_ignore_merges),
        cmocka_unit_test(test_bpe_reference),
        cmocka_unit_test(test_added_flags),
        cmocka_unit_test(test_pretokenizers),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_byte),
        cmocka_unit_test(test_load_paths),
        cmocka_unit_test(test_template_chatml),
        cmocka_unit_test(test_template_byte),
        cmocka_unit_test(test_template_synth),
    };
    return cmocka_run_group_tests_name("tokenizer", tests, setup, teardown);
}
