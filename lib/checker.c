/* checker.c: see checker.h. */
#include "checker.h"
#include "common.h"
#include "exprlang.h"
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROG_STEPS 100000  /* per hidden test */
#define REL_TOL 1e-4

static char *dupn(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* Trim spaces (and a trailing '.') in place; returns the start. */
static char *trim(char *s, int drop_dot) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && (isspace((unsigned char)s[n - 1]) || (drop_dot && s[n - 1] == '.'))) s[--n] = 0;
    return s;
}
static char *trimmed_dup(const char *s, size_t n, int drop_dot) {
    char *d = dupn(s, n), *t = trim(d, drop_dot);
    char *r = *t ? xstrdup(t) : NULL;
    free(d);
    return r;
}

/* ---------- extraction ---------- */

/* Is the '{' at s[i] the opening brace of \boxed or \fbox? */
static int boxed_brace(const char *s, size_t i) {
    while (i > 0 && s[i - 1] == ' ') i--;
    return (i >= 6 && !strncmp(s + i - 6, "\\boxed", 6)) || (i >= 5 && !strncmp(s + i - 5, "\\fbox", 5));
}

/* Content of the balanced \boxed{...} that starts last. One pass with a
 * brace stack, so unbalanced garbage costs linear time. */
static char *last_boxed(const char *s) {
    size_t *stack = NULL, ns = 0, cap = 0, best_o = 0, best_c = 0;
    int found = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '{') {
            if (ns == cap) { cap = cap ? cap * 2 : 64; stack = xrealloc(stack, cap * sizeof(size_t)); }
            /* the low bit marks a boxed brace */
            stack[ns++] = (i << 1) | (size_t)boxed_brace(s, i);
        } else if (s[i] == '}' && ns > 0) {
            size_t top = stack[--ns];
            if ((top & 1) && (!found || (top >> 1) > best_o)) { best_o = top >> 1; best_c = i; found = 1; }
        }
    }
    free(stack);
    return found ? trimmed_dup(s + best_o + 1, best_c - best_o - 1, 0) : NULL;
}

/* Last case-insensitive occurrence of pat. */
static const char *last_ci(const char *s, const char *pat) {
    size_t m = strlen(pat);
    const char *last = NULL;
    for (const char *p = s; *p; p++)
        if (tolower((unsigned char)*p) == pat[0] && !strncasecmp(p, pat, m)) last = p;
    return last;
}

/* "The answer is X" / "answer: X": X up to the end of its sentence. */
static char *answer_is(const char *s) {
    const char *a = last_ci(s, "answer is"), *b = last_ci(s, "answer:");
    const char *p = a > b ? a + 9 : b ? b + 7 : NULL;
    if (!p) return NULL;
    while (*p == ' ' || *p == ':' || *p == '\t') p++;
    const char *e = p;
    while (*e && *e != '\n' && !(*e == '.' && (e[1] == ' ' || e[1] == '\n' || !e[1]))) e++;
    char *r = trimmed_dup(p, (size_t)(e - p), 1);
    if (r && r[0] == '$' && strlen(r) > 1 && r[strlen(r) - 1] == '$') { /* $X$ */
        char *t = trimmed_dup(r + 1, strlen(r) - 2, 1);
        free(r);
        r = t;
    }
    return r;
}

static char *after_hashes(const char *s) {
    const char *p = NULL;
    for (const char *q = s; *q; q++) /* by hand: linear even on "########..." */
        if (q[0] == '#' && q[1] == '#' && q[2] == '#' && q[3] == '#') { p = q; q += 3; }
    if (!p) return NULL;
    p += 4;
    while (*p == '#') p++;
    const char *e = strchr(p, '\n');
    return trimmed_dup(p, e ? (size_t)(e - p) : strlen(p), 1);
}

/* Length of a number at p ("-1,234.5", "3/4"), 0 if none. Commas only
 * between groups of three digits. */
static size_t number_at(const char *p) {
    const char *q = p;
    if (*q == '-') q++;
    if (!isdigit((unsigned char)*q)) return 0;
    while (isdigit((unsigned char)*q) ||
           (*q == ',' && isdigit((unsigned char)q[1]) && isdigit((unsigned char)q[2]) &&
            isdigit((unsigned char)q[3]) && !isdigit((unsigned char)q[4])))
        q += *q == ',' ? 4 : 1;
    if (*q == '.' && isdigit((unsigned char)q[1])) {
        q++;
        while (isdigit((unsigned char)*q)) q++;
    }
    if (*q == '/' && isdigit((unsigned char)q[1])) {
        q++;
        while (isdigit((unsigned char)*q)) q++;
    }
    return (size_t)(q - p);
}

/* Is the '-' at p a sign (not a minus between operands)? */
static int sign_at(const char *s, const char *p) {
    if (p == s) return 1;
    unsigned char c = (unsigned char)p[-1];
    return !(isalnum(c) || c == ')' || c == '.' || c == '}');
}

/* Is p the start of a number (not in the middle of one or of a word)? */
static int number_start(const char *s, const char *p) {
    if (*p == '-') return sign_at(s, p);
    if (p == s) return 1;
    unsigned char c = (unsigned char)p[-1];
    if (c == '-') return !sign_at(s, p - 1);
    return !isdigit(c) && c != '.' && !isalpha(c);
}

static char *last_number(const char *s) {
    const char *best = NULL;
    size_t bn = 0;
    for (const char *p = s; *p;) {
        size_t n = (*p == '-' || isdigit((unsigned char)*p)) && number_start(s, p) ? number_at(p) : 0;
        if (n) { best = p; bn = n; p += n; }
        else p++;
    }
    return best ? dupn(best, bn) : NULL;
}

char *check_extract(const char *pred) {
    if (!pred) return NULL;
    char *r = last_boxed(pred);
    if (!r) r = answer_is(pred);
    if (!r) r = after_hashes(pred);
    if (!r) r = last_number(pred);
    return r;
}

/* ---------- numbers ---------- */

/* One pass removing LaTeX/format noise; "\dfrac" -> "\frac". */
static char *clean_answer(const char *s) {
    static const struct { const char *from, *to; } rep[] = {
        {"\\left", ""}, {"\\right", ""}, {"\\!", ""}, {"\\,", ""}, {"\\;", ""}, {"\\ ", ""},
        {"\\$", ""}, {"$", ""}, {"^\\circ", ""}, {"^{\\circ}", ""}, {"\\circ", ""}, {"\\%", ""},
        {"%", ""}, {"\\text", ""}, {"\\mathrm", ""}, {"\\textbf", ""}, {"\\mbox", ""},
        {"\\dfrac", "\\frac"}, {"\\tfrac", "\\frac"}, {NULL, NULL}};
    size_t n = strlen(s);
    char *o = xmalloc(n + 1), *w = o;
    for (const char *p = s; *p;) {
        int hit = 0;
        if (*p == '\\' || *p == '$' || *p == '^' || *p == '%')
            for (int i = 0; rep[i].from; i++) {
                size_t k = strlen(rep[i].from);
                if (!strncmp(p, rep[i].from, k)) {
                    w = stpcpy(w, rep[i].to);
                    p += k;
                    hit = 1;
                    break;
                }
            }
        if (!hit) *w++ = *p++;
    }
    *w = 0;
    return o;
}

static double parse_plain(const char *p, size_t n) {
    char buf[64];
    size_t k = 0;
    double num = 0;
    const char *e = p + n, *slash = memchr(p, '/', n);
    for (const char *q = p; q < (slash ? slash : e) && k < sizeof buf - 1; q++)
        if (*q != ',') buf[k++] = *q;
    buf[k] = 0;
    num = strtod(buf, NULL);
    if (slash) {
        double den = strtod(slash + 1, NULL);
        num = den != 0 ? num / den : NAN;
    }
    return num;
}

/* \frac{a}{b} with plain numbers a and b. */
static int parse_frac(const char *s, double *v) {
    const char *f = strstr(s, "\\frac");
    if (!f) return 0;
    for (const char *q = s; q < f; q++)
        if (isdigit((unsigned char)*q)) return 0;
    int neg = 0;
    for (const char *q = s; q < f; q++)
        if (*q == '-') neg = !neg;
    const char *p = f + 5;
    double part[2];
    for (int i = 0; i < 2; i++) {
        while (*p == ' ') p++;
        if (*p != '{') return 0;
        p++;
        while (*p == ' ') p++;
        size_t n = number_at(p);
        if (!n || memchr(p, '/', n)) return 0;
        part[i] = parse_plain(p, n);
        p += n;
        while (*p == ' ') p++;
        if (*p++ != '}') return 0;
    }
    for (const char *q = p; *q; q++)
        if (isdigit((unsigned char)*q)) return 0;
    if (part[1] == 0) return 0;
    *v = (neg ? -1 : 1) * part[0] / part[1];
    return 1;
}

int check_number(const char *s, double *v) {
    if (!s) return 0;
    char *c = clean_answer(s);
    const char *t = c, *eq = strrchr(c, '=');
    if (eq) t = eq + 1;
    int ok = parse_frac(t, v);
    /* roots, powers, constants: not a plain number */
    if (!ok && (strpbrk(t, "\\^_") || strstr(t, "sqrt") || strstr(t, "\xe2\x88\x9a"))) {
        free(c);
        return 0;
    }
    if (!ok) {
        /* exactly one number; other text is allowed only without digits */
        const char *num = NULL;
        size_t nn = 0;
        int count = 0;
        for (const char *p = t; *p;) {
            size_t n = (*p == '-' || isdigit((unsigned char)*p)) && number_start(t, p) ? number_at(p) : 0;
            if (n) { num = p; nn = n; count++; p += n; }
            else if (isdigit((unsigned char)*p)) { count = 99; break; }
            else p++;
        }
        if (count == 1) {
            *v = parse_plain(num, nn);
            ok = isfinite(*v);
        }
    }
    free(c);
    return ok;
}

/* Two integers must be equal (a tolerance would accept 35604 for 35603);
 * otherwise relative tolerance. */
static int close_enough(double a, double b) {
    if (a == floor(a) && b == floor(b) && fabs(a) < 1e15 && fabs(b) < 1e15) return a == b;
    double d = fabs(a - b), m = fmax(fabs(a), fabs(b));
    return d <= REL_TOL * m || d < 1e-9;
}

/* Normalised text for non-numeric answers. */
static char *norm_text(const char *s) {
    char *c = clean_answer(s), *w = c;
    for (const char *p = c; *p; p++)
        if (!isspace((unsigned char)*p) && *p != '{' && *p != '}') *w++ = (char)tolower((unsigned char)*p);
    *w = 0;
    while (w > c && w[-1] == '.') *--w = 0;
    return c;
}

static int answers_match(const char *pred, const char *gold) {
    if (!pred || !gold) return 0;
    double a, b;
    int na = check_number(pred, &a), nb = check_number(gold, &b);
    if (na && nb) return close_enough(a, b);
    if (na != nb) return 0;
    char *x = norm_text(pred), *y = norm_text(gold);
    int eq = *x && !strcmp(x, y);
    free(x);
    free(y);
    return eq;
}

/* ---------- per-task checks ---------- */

/* The gold answer as text (a number field is formatted). */
static char *gold_answer(json_t *rec) {
    json_t *a = json_object_get(rec, "answer");
    if (json_is_string(a)) return xstrdup(json_string_value(a));
    if (json_is_integer(a) || json_is_real(a)) {
        char b[40];
        snprintf(b, sizeof b, "%.17g", json_number_value(a));
        return xstrdup(b);
    }
    return NULL;
}

/* First non-empty line, without code fences and surrounding spaces. */
static char *first_line(const char *s) {
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
        if (!strncmp(s, "```", 3)) { /* skip a fence line */
            const char *e = strchr(s, '\n');
            if (!e) return NULL;
            s = e + 1;
            continue;
        }
        break;
    }
    const char *e = strchr(s, '\n');
    return trimmed_dup(s, e ? (size_t)(e - s) : strlen(s), 0);
}

static char *fmt_num(double v) {
    char b[40];
    snprintf(b, sizeof b, "%.10g", v);
    return xstrdup(b);
}

/* Equation program: run it; otherwise fall back to a numeric answer. */
static int check_equation(json_t *rec, const char *pred, char **ex) {
    char *gold = gold_answer(rec), *line = first_line(pred);
    double v, g;
    int ok = 0;
    if (line && strlen(line) < 4096 && eq_eval(line, &v, NULL, 0)) {
        *ex = fmt_num(v);
        ok = gold && check_number(gold, &g) && close_enough(v, g);
    } else {
        *ex = check_extract(pred);
        ok = answers_match(*ex, gold);
    }
    free(line);
    free(gold);
    return ok;
}

/* Does the text start like "x = ..." (an equation)? */
static int looks_like_equation(const char *s) {
    while (isspace((unsigned char)*s)) s++;
    if (!isalpha((unsigned char)*s)) return 0;
    while (isalnum((unsigned char)*s) || *s == '_') s++;
    while (*s == ' ') s++;
    return *s == '=';
}

static int run_tests(const exl_prog *p, json_t *tests) {
    if (!json_is_array(tests) || json_array_size(tests) == 0) return 0;
    for (size_t i = 0; i < json_array_size(tests); i++) {
        json_t *t = json_array_get(tests, i), *out = NULL;
        int ok = exl_run_json(p, json_object_get(t, "in"), PROG_STEPS, &out, NULL, 0) &&
                 json_equal(out, json_object_get(t, "out"));
        json_decref(out);
        if (!ok) return 0;
    }
    return 1;
}

static int check_prog(json_t *rec, const char *pred, char **ex) {
    /* the whole answer, else its first line (a model may add text after) */
    char *whole = trimmed_dup(pred, strlen(pred), 0), *line = NULL;
    exl_prog *p = NULL;
    if (whole && strncmp(whole, "```", 3) && strlen(whole) <= EXL_MAX_SRC) p = exl_parse(whole, NULL, 0);
    if (p) {
        *ex = whole;
        whole = NULL;
    } else if ((line = first_line(pred))) {
        p = exl_parse(line, NULL, 0);
        *ex = line;
        line = NULL;
    }
    int ok = p && run_tests(p, json_object_get(rec, "tests"));
    exl_free(p);
    free(whole);
    free(line);
    return ok;
}

/* AQuA: a letter A-E; a number or text is matched against the options. */
static char letter_of(const char *s) {
    if (!s) return 0;
    while (*s == ' ' || *s == '(' || *s == '[') s++;
    if (!strncasecmp(s, "option", 6)) { s += 6; while (*s == ' ') s++; }
    char c = (char)toupper((unsigned char)*s);
    if (c < 'A' || c > 'E') return 0;
    s++;
    while (*s == ' ') s++;
    return (!*s || *s == ')' || *s == '.' || *s == ':' || *s == ']') ? c : 0;
}

static char option_matching(json_t *rec, const char *ans) {
    json_t *ch = json_object_get(rec, "choices");
    const char *k;
    json_t *v;
    if (!json_is_object(ch) || !ans) return 0;
    json_object_foreach(ch, k, v) {
        if (json_is_string(v) && answers_match(ans, json_string_value(v)) && strlen(k) == 1) return k[0];
    }
    return 0;
}

static int check_aqua(json_t *rec, const char *pred, char **ex) {
    char *gold = gold_answer(rec);
    char *a = last_boxed(pred);
    if (!a) a = answer_is(pred);
    if (!a) a = after_hashes(pred);
    char c = letter_of(a);
    if (!c && a) {
        /* "(C) 62 m" or a value */
        const char *par = strchr(a, '(');
        if (par) c = letter_of(par);
        if (!c) c = option_matching(rec, a);
    }
    if (!c && !a) { /* last "(X)" anywhere */
        for (const char *p = pred; *p; p++)
            if (p[0] == '(' && p[1] >= 'A' && p[1] <= 'E' && p[2] == ')') c = p[1];
        if (!c) {
            a = last_number(pred);
            c = option_matching(rec, a);
        }
    }
    if (c) {
        char b[2] = {c, 0};
        free(a);
        a = xstrdup(b);
    }
    *ex = a;
    int ok = c && gold && toupper((unsigned char)gold[0]) == c;
    free(gold);
    return ok;
}

const char *check_gradable(const json_t *rec) {
    const json_t *task = json_object_get(rec, "task");
    if (task && !json_is_string(task)) return "its \"task\" is not a string";
    if (task && !strcmp(json_string_value(task), "prog")) {
        const json_t *tests = json_object_get(rec, "tests"), *t;
        size_t i;
        if (!json_is_array(tests) || !json_array_size(tests)) return "has no \"tests\" list to run a program on";
        json_array_foreach(tests, i, t)
            if (!json_object_get(t, "in") || !json_object_get(t, "out")) return "has a test without \"in\" and \"out\"";
        return NULL;
    }
    const json_t *a = json_object_get(rec, "answer");
    if ((json_is_string(a) && json_string_length(a) > 0) || json_is_number(a)) return NULL;
    return "has no \"answer\" to check against (a non-empty string or a number)";
}

int check_record(json_t *rec, const char *pred, char **extracted) {
    char *ex = NULL;
    int ok = 0;
    const char *task = json_string_value(json_object_get(rec, "task"));
    if (!task) task = "";
    if (pred) {
        if (!strcmp(task, "equation")) ok = check_equation(rec, pred, &ex);
        else if (!strcmp(task, "prog")) ok = check_prog(rec, pred, &ex);
        else if (!strcmp(task, "aqua")) ok = check_aqua(rec, pred, &ex);
        else if ((!strcmp(task, "mawps") || !strcmp(task, "svamp")) && looks_like_equation(pred))
            ok = check_equation(rec, pred, &ex);
        else {
            char *gold = gold_answer(rec);
            ex = check_extract(pred);
            ok = answers_match(ex, gold);
            free(gold);
        }
    }
    if (extracted) *extracted = ex;
    else free(ex);
    return ok;
}

/* ---------- summary ---------- */
typedef struct { char *task; long long n, correct; } task_count;
struct eval_summary {
    task_count *t;
    size_t nt;
    long long n, correct;
};

eval_summary *evsum_new(void) { return xcalloc(1, sizeof(eval_summary)); }

void evsum_add(eval_summary *s, const char *task, int correct) { evsum_add_n(s, task, 1, correct != 0); }

void evsum_add_n(eval_summary *s, const char *task, long long n, long long correct) {
    if (!task) task = "unknown";
    size_t i = 0;
    while (i < s->nt && strcmp(s->t[i].task, task) < 0) i++;
    if (i == s->nt || strcmp(s->t[i].task, task)) { /* insert sorted */
        s->t = xrealloc(s->t, (s->nt + 1) * sizeof(task_count));
        memmove(s->t + i + 1, s->t + i, (s->nt - i) * sizeof(task_count));
        s->t[i].task = xstrdup(task);
        s->t[i].n = s->t[i].correct = 0;
        s->nt++;
    }
    s->t[i].n += n;
    s->n += n;
    s->t[i].correct += correct;
    s->correct += correct;
}

static json_t *counts(long long n, long long c) {
    return json_pack("{s:f,s:I,s:I}", "accuracy", n ? (double)c / n : 0.0, "n", (json_int_t)n,
                     "correct", (json_int_t)c);
}

json_t *evsum_json(const eval_summary *s) {
    json_t *o = counts(s->n, s->correct), *t = json_object();
    for (size_t i = 0; i < s->nt; i++) json_object_set_new(t, s->t[i].task, counts(s->t[i].n, s->t[i].correct));
    json_object_set_new(o, "tasks", t);
    return o;
}

void evsum_free(eval_summary *s) {
    if (!s) return;
    for (size_t i = 0; i < s->nt; i++) free(s->t[i].task);
    free(s->t);
    free(s);
}
