/* test_utf8.c: utf8_valid against the cases of the Unicode recommendation
 * (one U+FFFD per maximal ill-formed subpart, what Python's
 * errors="replace" and Rust's from_utf8_lossy produce), every single byte,
 * every two-byte string checked by utf8proc, and error messages that
 * quote invalid bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "common.h"
#include "testutil.h"
#include "utf8.h"

#define R "\xEF\xBF\xBD"

static void expect(const char *in, size_t n, const char *want) {
    char *buf = xmalloc(n + 1);
    memcpy(buf, in, n);
    size_t m;
    char *out = utf8_valid(buf, n, &m);
    if (m != strlen(want) || memcmp(out, want, m)) fail_msg("case %zu bytes: got '%.*s', want '%s'", n, (int)m, out, want);
    if (!strcmp(in, want) && strlen(in) == n) assert_ptr_equal(out, buf);   /* valid: no copy */
    if (out != buf) { assert_int_equal(out[m], 0); free(out); }
    free(buf);
}
#define EXPECT(in, want) expect(in, sizeof in - 1, want)

static void test_cases(void **st) {
    (void)st;
    EXPECT("", "");
    EXPECT("plain ascii", "plain ascii");
    EXPECT("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
    EXPECT("x=38*4+3\xC3x/2", "x=38*4+3" R "x/2");        /* the lone lead byte of the issue */
    EXPECT("h\xFFi\xE2\x82", "h" R "i" R);                  /* a cut-off sequence is one U+FFFD */
    EXPECT("\xF0\x9F\x98", R);
    EXPECT("\xF0\x9F\x98 ok", R " ok");
    EXPECT("\xED\xA0\x80", R R R);                           /* surrogate: E D is not a prefix */
    EXPECT("\xF4\x90\x80\x80", R R R R);                     /* above U+10FFFF */
    EXPECT("\xE0\x80\xAF", R R R);                           /* overlong */
    EXPECT("\xC0\xAF", R R);
    EXPECT("\x80\xBF", R R);                                 /* lone continuation bytes */
    EXPECT("\xF8\x88\x80\x80\x80", R R R R R);
}

/* Every 1- and 2-byte string: the output is valid (utf8proc agrees) and
 * valid input comes back unchanged. */
static void test_exhaustive(void **st) {
    (void)st;
    unsigned char b[2];
    for (int len = 1; len <= 2; len++)
        for (int x = 0; x < (len == 1 ? 256 : 65536); x++) {
            if (len == 1) b[0] = (unsigned char)x;
            else { b[0] = (unsigned char)(x >> 8); b[1] = (unsigned char)x; }
            size_t m;
            char *out = utf8_valid((char *)b, (size_t)len, &m);
            utf8proc_int32_t cp;
            for (size_t i = 0; i < m;) {
                utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)out + i, (utf8proc_ssize_t)(m - i), &cp);
                if (k <= 0) fail_msg("invalid output for %d bytes %04x", len, x);
                i += (size_t)k;
            }
            int valid = 1;
            for (size_t i = 0; i < (size_t)len && valid;) {
                utf8proc_ssize_t k = utf8proc_iterate(b + i, (utf8proc_ssize_t)(len - i), &cp);
                if (k <= 0) valid = 0;
                else i += (size_t)k;
            }
            assert_int_equal(valid, out == (char *)b);
            assert_int_equal(utf8_seq_len(b, (size_t)len) == (size_t)len, valid && (len == 1 || b[0] >= 0xC2));
            if (out != (char *)b) free(out);
        }
}

static void die_quoting(void *arg) { die("%s:1: bad value '%s'", "f.jsonl", (const char *)arg); }

/* Messages that quote input bytes are written as valid UTF-8. */
static void test_messages(void **st) {
    (void)st;
    wdl_set_prog("test_utf8");
    expect_die(die_quoting, "ab\xC3", "f.jsonl:1: bad value 'ab" R "'", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_exhaustive),
        cmocka_unit_test(test_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
