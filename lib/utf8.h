/* utf8.h: every string a program writes is valid UTF-8. Invalid sequences
 * become U+FFFD, one per maximal ill-formed subpart (the Unicode
 * recommendation that Hugging Face decoding, Rust's from_utf8_lossy and
 * Python's errors="replace" follow): "\xE2\x82" is one U+FFFD, "\xFF" one,
 * "\xED\xA0\x80" (a surrogate) three. */
#ifndef WDL_UTF8_H
#define WDL_UTF8_H
#include <stddef.h>

/* s[0..n) made valid. Returns s itself when it is already valid (nothing
 * allocated), else a malloc'd NUL-terminated copy. *out_len = its length. */
char *utf8_valid(char *s, size_t n, size_t *out_len);
/* The same, NUL bytes becoming U+FFFD too: text a record can carry (the
 * record readers refuse \u0000, which C strings cannot hold). */
char *utf8_text(char *s, size_t n, size_t *out_len);
/* Length of the valid UTF-8 sequence starting at s[0..n), or 0 when the
 * bytes there are not one. */
size_t utf8_seq_len(const unsigned char *s, size_t n);
#endif
