/* utf8.c: see utf8.h. */
#include "utf8.h"
#include <string.h>
#include "common.h"

/* Bytes in a maximal prefix of a well-formed sequence at s (>= 1 for any
 * byte); *complete when the prefix is a whole sequence. */
static size_t prefix_len(const unsigned char *s, size_t n, int *complete) {
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t l;
    *complete = 0;
    if (c < 0x80) { *complete = 1; return 1; }
    if (c >= 0xC2 && c <= 0xDF) l = 2;
    else if (c >= 0xE0 && c <= 0xEF) l = 3;
    else if (c >= 0xF0 && c <= 0xF4) l = 4;
    else return 1;
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
    else if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
    size_t k = 1;
    for (; k < l && k < n; k++) {
        unsigned char d = s[k];
        if (k == 1 ? (d < lo || d > hi) : (d & 0xC0) != 0x80) break;
    }
    *complete = k == l;
    return k;
}

size_t utf8_seq_len(const unsigned char *s, size_t n) {
    int complete;
    size_t k = n ? prefix_len(s, n, &complete) : 0;
    return n && complete ? k : 0;
}

static char *valid(char *s, size_t n, size_t *out_len, int nul) {
    const unsigned char *u = (const unsigned char *)s;
    char *o = NULL;
    size_t i = 0, m = 0;
    while (i < n) {
        int complete;
        size_t k = prefix_len(u + i, n - i, &complete);
        if (nul && !u[i]) complete = 0;
        if (complete) {
            if (o) memcpy(o + m, s + i, k);
        } else {
            if (!o) { o = xmalloc(3 * n + 1); memcpy(o, s, i); }
            memcpy(o + m, "\xEF\xBF\xBD", 3);
        }
        m += complete ? k : 3;
        i += k;
    }
    *out_len = m;
    if (!o) return s;
    o[m] = 0;
    return o;
}
char *utf8_valid(char *s, size_t n, size_t *out_len) { return valid(s, n, out_len, 0); }
char *utf8_text(char *s, size_t n, size_t *out_len) { return valid(s, n, out_len, 1); }
