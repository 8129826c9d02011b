/* exprlang.c: see exprlang.h. A lexer, a recursive-descent parser to a
 * flat node array, and a tree-walking evaluator with a step budget. Errors
 * inside evaluation longjmp out to exl_run_json, which frees everything the
 * run allocated, so bad programs cost nothing but their steps. */
#include "exprlang.h"
#include "common.h"
#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 200  /* parser recursion and AST nesting */

/* ---------- lexer ---------- */
enum { T_END, T_INT, T_ID, T_SYM };
enum { S_EQ = 256, S_NE, S_LE, S_GE, S_ARROW };

typedef struct { int type, sym; int64_t v; const char *s; size_t len; } token;

typedef struct {
    token *t;
    size_t n, cap, pos;
    char *err;
    size_t errlen;
    int failed, depth;
} lexer_parser;

static void perr(lexer_parser *p, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
}

static void push_tok(lexer_parser *p, token t) {
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->t = xrealloc(p->t, p->cap * sizeof(token));
    }
    p->t[p->n++] = t;
}

static int lex(lexer_parser *p, const char *s) {
    while (*s) {
        unsigned char c = (unsigned char)*s;
        token t = {0};
        t.s = s;
        if (isspace(c)) { s++; continue; }
        if (isdigit(c)) {
            int64_t v = 0;
            while (isdigit((unsigned char)*s)) {
                int d = *s++ - '0';
                if (v > (INT64_MAX - d) / 10) { perr(p, "integer too large"); return 0; }
                v = v * 10 + d;
            }
            t.type = T_INT;
            t.v = v;
        } else if (isalpha(c) || c == '_') {
            while (isalnum((unsigned char)*s) || *s == '_') s++;
            t.type = T_ID;
        } else {
            t.type = T_SYM;
            static const struct { const char *s; int sym; } two[] = {
                {"==", S_EQ}, {"!=", S_NE}, {"<=", S_LE}, {">=", S_GE}, {"=>", S_ARROW}, {NULL, 0}};
            for (int i = 0; two[i].s; i++)
                if (s[0] == two[i].s[0] && s[1] == two[i].s[1]) { t.sym = two[i].sym; s += 2; break; }
            if (!t.sym) {
                if (!strchr("+-*/%()[],<>=", c)) { perr(p, "unexpected character '%c'", c); return 0; }
                t.sym = c;
                s++;
            }
        }
        t.len = (size_t)(s - t.s);
        push_tok(p, t);
    }
    token end = {T_END, 0, 0, s, 0};
    push_tok(p, end);
    return 1;
}

/* ---------- AST ---------- */
enum { N_INT, N_VAR, N_BIN, N_NEG, N_NOT, N_AND, N_OR, N_IF, N_LET, N_INDEX, N_LIST, N_CALL, N_LAMBDA };

typedef struct {
    int kind, op, depth;
    int64_t v;
    const char *name; /* points into prog->src */
    size_t nlen;
    int kid[3];       /* -1 when absent */
    int next;         /* next item of a list literal or argument list */
} node;

struct exl_prog {
    char *src;
    node *nodes;
    size_t n, cap;
    int root;
};

static int new_node(exl_prog *g, lexer_parser *p, int kind, int a, int b, int c) {
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 64;
        g->nodes = xrealloc(g->nodes, g->cap * sizeof(node));
    }
    node *x = &g->nodes[g->n];
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->kid[0] = a; x->kid[1] = b; x->kid[2] = c;
    x->next = -1;
    int d = 0;
    for (int i = 0; i < 3; i++)
        if (x->kid[i] >= 0 && g->nodes[x->kid[i]].depth > d) d = g->nodes[x->kid[i]].depth;
    x->depth = d + 1;
    if (x->depth > MAX_DEPTH) perr(p, "expression nested too deeply");
    return (int)g->n++;
}

static token *cur(lexer_parser *p) { return &p->t[p->pos]; }
static int is_sym(lexer_parser *p, int sym) { return cur(p)->type == T_SYM && cur(p)->sym == sym; }
static int is_kw(lexer_parser *p, const char *kw) {
    token *t = cur(p);
    return t->type == T_ID && t->len == strlen(kw) && !memcmp(t->s, kw, t->len);
}
static int is_keyword(const token *t) {
    static const char *kws[] = {"if", "then", "else", "let", "in", "and", "or", "not", NULL};
    for (int i = 0; kws[i]; i++)
        if (t->len == strlen(kws[i]) && !memcmp(t->s, kws[i], t->len)) return 1;
    return 0;
}
static void expect_sym(lexer_parser *p, int sym, const char *what) {
    if (is_sym(p, sym)) p->pos++;
    else perr(p, "expected %s", what);
}
static void expect_kw(lexer_parser *p, const char *kw) {
    if (is_kw(p, kw)) p->pos++;
    else perr(p, "expected '%s'", kw);
}

static int parse_expr(exl_prog *g, lexer_parser *p);

/* Identifier token (not a keyword) into a node's name. */
static int take_name(lexer_parser *p, const char **name, size_t *nlen) {
    token *t = cur(p);
    if (t->type != T_ID || is_keyword(t)) { perr(p, "expected a name"); return 0; }
    *name = t->s;
    *nlen = t->len;
    p->pos++;
    return 1;
}

/* A list or call node is as deep as its deepest item. */
static void cover_items(exl_prog *g, lexer_parser *p, int n, int first) {
    for (int a = first; a >= 0 && !p->failed; a = g->nodes[a].next)
        if (g->nodes[a].depth + 1 > g->nodes[n].depth) g->nodes[n].depth = g->nodes[a].depth + 1;
    if (g->nodes[n].depth > MAX_DEPTH) perr(p, "expression nested too deeply");
}

/* Comma-separated items up to the closing symbol; returns the first. */
static int parse_items(exl_prog *g, lexer_parser *p, int close, int allow_lambda) {
    int first = -1, last = -1;
    if (is_sym(p, close)) { p->pos++; return -1; }
    for (;;) {
        int it;
        /* "v => body" is a lambda argument */
        if (allow_lambda && cur(p)->type == T_ID && p->t[p->pos + 1].type == T_SYM &&
            p->t[p->pos + 1].sym == S_ARROW) {
            const char *nm; size_t nl;
            take_name(p, &nm, &nl);
            p->pos++;
            int body = parse_expr(g, p);
            if (p->failed) return -1;
            it = new_node(g, p, N_LAMBDA, body, -1, -1);
            g->nodes[it].name = nm;
            g->nodes[it].nlen = nl;
        } else {
            it = parse_expr(g, p);
        }
        if (p->failed) return -1;
        if (last < 0) first = it;
        else g->nodes[last].next = it;
        last = it;
        if (is_sym(p, ',')) { p->pos++; continue; }
        expect_sym(p, close, close == ')' ? "')'" : "']'");
        return first;
    }
}

static int parse_primary(exl_prog *g, lexer_parser *p) {
    token *t = cur(p);
    if (t->type == T_INT) {
        p->pos++;
        int n = new_node(g, p, N_INT, -1, -1, -1);
        g->nodes[n].v = t->v;
        return n;
    }
    if (is_sym(p, '(')) {
        p->pos++;
        int e = parse_expr(g, p);
        expect_sym(p, ')', "')'");
        return e;
    }
    if (is_sym(p, '[')) {
        p->pos++;
        int first = parse_items(g, p, ']', 0);
        if (p->failed) return -1;
        int n = new_node(g, p, N_LIST, first, -1, -1);
        cover_items(g, p, n, first);
        return n;
    }
    if (t->type == T_ID && !is_keyword(t)) {
        p->pos++;
        if (is_sym(p, '(')) {
            p->pos++;
            int first = parse_items(g, p, ')', 1);
            if (p->failed) return -1;
            int n = new_node(g, p, N_CALL, first, -1, -1);
            cover_items(g, p, n, first);
            g->nodes[n].name = t->s;
            g->nodes[n].nlen = t->len;
            return n;
        }
        int n = new_node(g, p, N_VAR, -1, -1, -1);
        g->nodes[n].name = t->s;
        g->nodes[n].nlen = t->len;
        return n;
    }
    if (t->type == T_END) perr(p, "unexpected end of program");
    else perr(p, "unexpected '%.*s'", (int)(t->len > 20 ? 20 : t->len), t->s);
    return -1;
}

static int parse_postfix(exl_prog *g, lexer_parser *p) {
    int e = parse_primary(g, p);
    while (!p->failed && is_sym(p, '[')) {
        p->pos++;
        int i = parse_expr(g, p);
        expect_sym(p, ']', "']'");
        if (p->failed) return -1;
        e = new_node(g, p, N_INDEX, e, i, -1);
    }
    return e;
}

static int parse_unary(exl_prog *g, lexer_parser *p) {
    if (is_sym(p, '-')) {
        p->pos++;
        if (++p->depth > MAX_DEPTH) { perr(p, "expression nested too deeply"); return -1; }
        int e = parse_unary(g, p);
        p->depth--;
        if (p->failed) return -1;
        return new_node(g, p, N_NEG, e, -1, -1);
    }
    return parse_postfix(g, p);
}

static int parse_mul(exl_prog *g, lexer_parser *p) {
    int e = parse_unary(g, p);
    while (!p->failed && (is_sym(p, '*') || is_sym(p, '/') || is_sym(p, '%'))) {
        int op = cur(p)->sym;
        p->pos++;
        int r = parse_unary(g, p);
        if (p->failed) return -1;
        e = new_node(g, p, N_BIN, e, r, -1);
        g->nodes[e].op = op;
    }
    return e;
}

static int parse_add(exl_prog *g, lexer_parser *p) {
    int e = parse_mul(g, p);
    while (!p->failed && (is_sym(p, '+') || is_sym(p, '-'))) {
        int op = cur(p)->sym;
        p->pos++;
        int r = parse_mul(g, p);
        if (p->failed) return -1;
        e = new_node(g, p, N_BIN, e, r, -1);
        g->nodes[e].op = op;
    }
    return e;
}

static int parse_cmp(exl_prog *g, lexer_parser *p) {
    int e = parse_add(g, p);
    static const int ops[] = {S_EQ, S_NE, S_LE, S_GE, '<', '>', 0};
    for (int i = 0; ops[i] && !p->failed; i++)
        if (is_sym(p, ops[i])) {
            p->pos++;
            int r = parse_add(g, p);
            if (p->failed) return -1;
            e = new_node(g, p, N_BIN, e, r, -1);
            g->nodes[e].op = ops[i];
            break;
        }
    return e;
}

static int parse_not(exl_prog *g, lexer_parser *p) {
    if (is_kw(p, "not")) {
        p->pos++;
        if (++p->depth > MAX_DEPTH) { perr(p, "expression nested too deeply"); return -1; }
        int e = parse_not(g, p);
        p->depth--;
        if (p->failed) return -1;
        return new_node(g, p, N_NOT, e, -1, -1);
    }
    return parse_cmp(g, p);
}

static int parse_and(exl_prog *g, lexer_parser *p) {
    int e = parse_not(g, p);
    while (!p->failed && is_kw(p, "and")) {
        p->pos++;
        int r = parse_not(g, p);
        if (p->failed) return -1;
        e = new_node(g, p, N_AND, e, r, -1);
    }
    return e;
}

static int parse_or(exl_prog *g, lexer_parser *p) {
    int e = parse_and(g, p);
    while (!p->failed && is_kw(p, "or")) {
        p->pos++;
        int r = parse_and(g, p);
        if (p->failed) return -1;
        e = new_node(g, p, N_OR, e, r, -1);
    }
    return e;
}

static int parse_expr(exl_prog *g, lexer_parser *p) {
    if (p->failed) return -1;
    if (++p->depth > MAX_DEPTH) { perr(p, "expression nested too deeply"); return -1; }
    int e;
    if (is_kw(p, "if")) {
        p->pos++;
        int c = parse_expr(g, p);
        expect_kw(p, "then");
        int a = parse_expr(g, p);
        expect_kw(p, "else");
        int b = parse_expr(g, p);
        e = p->failed ? -1 : new_node(g, p, N_IF, c, a, b);
    } else if (is_kw(p, "let")) {
        p->pos++;
        const char *nm = NULL;
        size_t nl = 0;
        take_name(p, &nm, &nl);
        expect_sym(p, '=', "'='");
        int v = parse_expr(g, p);
        expect_kw(p, "in");
        int body = parse_expr(g, p);
        e = p->failed ? -1 : new_node(g, p, N_LET, v, body, -1);
        if (e >= 0) { g->nodes[e].name = nm; g->nodes[e].nlen = nl; }
    } else {
        e = parse_or(g, p);
    }
    p->depth--;
    return p->failed ? -1 : e;
}

exl_prog *exl_parse(const char *src, char *err, size_t errlen) {
    char dummy[8];
    if (!err) { err = dummy; errlen = sizeof dummy; }
    if (errlen) err[0] = 0;
    if (strlen(src) > EXL_MAX_SRC) {
        snprintf(err, errlen, "program longer than %d bytes", EXL_MAX_SRC);
        return NULL;
    }
    exl_prog *g = xcalloc(1, sizeof *g);
    g->src = xstrdup(src);
    lexer_parser p = {0};
    p.err = err;
    p.errlen = errlen;
    if (lex(&p, g->src)) {
        g->root = parse_expr(g, &p);
        if (!p.failed && cur(&p)->type != T_END)
            perr(&p, "unexpected '%.*s' after the expression",
                 (int)(cur(&p)->len > 20 ? 20 : cur(&p)->len), cur(&p)->s);
    }
    free(p.t);
    if (p.failed) { exl_free(g); return NULL; }
    return g;
}

void exl_free(exl_prog *g) {
    if (!g) return;
    free(g->src);
    free(g->nodes);
    free(g);
}

/* ---------- evaluator ---------- */
typedef struct { int is_list; int64_t v; int64_t *l; size_t n; } val;
typedef struct { const char *name; size_t nlen; val v; } binding;

typedef struct {
    const exl_prog *g;
    int64_t steps, max_steps;
    binding *env;
    size_t nenv, capenv;
    void **allocs;
    size_t nalloc, capalloc;
    jmp_buf jb;
    char *err;
    size_t errlen;
} run;

static _Noreturn void rfail(run *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    longjmp(r->jb, 1);
}

static void step(run *r, int64_t n) {
    r->steps += n;
    if (r->steps > r->max_steps) rfail(r, "step limit (%lld) exceeded", (long long)r->max_steps);
}

static int64_t *new_list(run *r, size_t n) {
    if (n > EXL_MAX_LIST) rfail(r, "list longer than %d", EXL_MAX_LIST);
    step(r, (int64_t)n);
    if (r->nalloc == r->capalloc) {
        r->capalloc = r->capalloc ? r->capalloc * 2 : 16;
        r->allocs = xrealloc(r->allocs, r->capalloc * sizeof(void *));
    }
    int64_t *l = xmalloc((n ? n : 1) * sizeof(int64_t));
    r->allocs[r->nalloc++] = l;
    return l;
}

static val vint(int64_t x) { val v = {0, x, NULL, 0}; return v; }
static val vlist(int64_t *l, size_t n) { val v = {1, 0, l, n}; return v; }

static int64_t need_int(run *r, val v, const char *what) {
    if (v.is_list) rfail(r, "%s: expected an integer, got a list", what);
    return v.v;
}
static val need_list(run *r, val v, const char *what) {
    if (!v.is_list) rfail(r, "%s: expected a list, got an integer", what);
    return v;
}

static void env_push(run *r, const char *name, size_t nlen, val v) {
    if (r->nenv == r->capenv) {
        r->capenv = r->capenv ? r->capenv * 2 : 16;
        r->env = xrealloc(r->env, r->capenv * sizeof(binding));
    }
    r->env[r->nenv].name = name;
    r->env[r->nenv].nlen = nlen;
    r->env[r->nenv].v = v;
    r->nenv++;
}

static val lookup(run *r, const node *x) {
    for (size_t i = r->nenv; i-- > 0;)
        if (r->env[i].nlen == x->nlen && !memcmp(r->env[i].name, x->name, x->nlen)) return r->env[i].v;
    rfail(r, "unknown name '%.*s'", (int)(x->nlen > 30 ? 30 : x->nlen), x->name);
}

static int64_t floordiv(run *r, int64_t a, int64_t b) {
    if (b == 0) rfail(r, "division by zero");
    if (a == INT64_MIN && b == -1) rfail(r, "integer overflow");
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}
static int64_t floormod(run *r, int64_t a, int64_t b) {
    if (b == 0) rfail(r, "modulo by zero");
    if (b == -1) return 0;
    int64_t m = a % b;
    if (m != 0 && ((m < 0) != (b < 0))) m += b;
    return m;
}

static val eval(run *r, int ni);

static int truthy(run *r, val v) { return v.is_list ? v.n > 0 : v.v != 0; }

static val list_eq(val a, val b, int ne) {
    int eq = a.n == b.n && (a.n == 0 || !memcmp(a.l, b.l, a.n * sizeof(int64_t)));
    return vint(ne ? !eq : eq);
}

static val eval_bin(run *r, const node *x) {
    val a = eval(r, x->kid[0]), b = eval(r, x->kid[1]);
    int op = x->op;
    if ((op == S_EQ || op == S_NE) && (a.is_list || b.is_list)) {
        if (a.is_list != b.is_list) return vint(op == S_NE);
        return list_eq(a, b, op == S_NE);
    }
    if (op == '+' && a.is_list && b.is_list) { /* concatenation */
        int64_t *l = new_list(r, a.n + b.n);
        if (a.n) memcpy(l, a.l, a.n * sizeof(int64_t));
        if (b.n) memcpy(l + a.n, b.l, b.n * sizeof(int64_t));
        return vlist(l, a.n + b.n);
    }
    int64_t p = need_int(r, a, "operator"), q = need_int(r, b, "operator"), z;
    switch (op) {
    case '+': if (__builtin_add_overflow(p, q, &z)) rfail(r, "integer overflow"); return vint(z);
    case '-': if (__builtin_sub_overflow(p, q, &z)) rfail(r, "integer overflow"); return vint(z);
    case '*': if (__builtin_mul_overflow(p, q, &z)) rfail(r, "integer overflow"); return vint(z);
    case '/': return vint(floordiv(r, p, q));
    case '%': return vint(floormod(r, p, q));
    case S_EQ: return vint(p == q);
    case S_NE: return vint(p != q);
    case '<': return vint(p < q);
    case '>': return vint(p > q);
    case S_LE: return vint(p <= q);
    case S_GE: return vint(p >= q);
    }
    rfail(r, "bad operator");
}

static int name_is(const node *x, const char *s) { return x->nlen == strlen(s) && !memcmp(x->name, s, x->nlen); }

/* map/filter: apply a lambda to each element. */
static val eval_each(run *r, val l, const node *lam, int filter) {
    int64_t *out = new_list(r, l.n);
    size_t k = 0;
    for (size_t i = 0; i < l.n; i++) {
        env_push(r, lam->name, lam->nlen, vint(l.l[i]));
        val v = eval(r, lam->kid[0]);
        r->nenv--;
        if (filter) {
            if (truthy(r, v)) out[k++] = l.l[i];
        } else {
            out[k++] = need_int(r, v, "map");
        }
    }
    return vlist(out, k);
}

static val eval_call(run *r, const node *x) {
    const node *N = r->g->nodes;
    int args[3], na = 0;
    for (int a = x->kid[0]; a >= 0; a = N[a].next) {
        if (na == 3) rfail(r, "too many arguments to '%.*s'", (int)x->nlen, x->name);
        args[na++] = a;
    }
    const node *lam = na == 2 && N[args[1]].kind == N_LAMBDA ? &N[args[1]] : NULL;
    for (int i = 0; i < na; i++)
        if (N[args[i]].kind == N_LAMBDA && &N[args[i]] != lam) rfail(r, "unexpected '=>'");
    if ((name_is(x, "map") || name_is(x, "filter"))) {
        if (!lam) rfail(r, "%.*s(list, v => expr) expected", (int)x->nlen, x->name);
        val l = need_list(r, eval(r, args[0]), "map/filter");
        return eval_each(r, l, lam, name_is(x, "filter"));
    }
    if (lam) rfail(r, "'%.*s' takes no function", (int)x->nlen, x->name);
    val v[3];
    for (int i = 0; i < na; i++) v[i] = eval(r, args[i]);
    if (name_is(x, "abs") && na == 1) {
        int64_t a = need_int(r, v[0], "abs");
        if (a == INT64_MIN) rfail(r, "integer overflow");
        return vint(a < 0 ? -a : a);
    }
    if (name_is(x, "len") && na == 1) return vint((int64_t)need_list(r, v[0], "len").n);
    if (name_is(x, "sum") && na == 1) {
        val l = need_list(r, v[0], "sum");
        int64_t s = 0;
        step(r, (int64_t)l.n);
        for (size_t i = 0; i < l.n; i++)
            if (__builtin_add_overflow(s, l.l[i], &s)) rfail(r, "integer overflow");
        return vint(s);
    }
    if ((name_is(x, "max") || name_is(x, "min")) && (na == 1 || na == 2)) {
        int mx = name_is(x, "max");
        if (na == 2) {
            int64_t a = need_int(r, v[0], "max/min"), b = need_int(r, v[1], "max/min");
            return vint(mx ? (a > b ? a : b) : (a < b ? a : b));
        }
        val l = need_list(r, v[0], "max/min");
        if (l.n == 0) rfail(r, "max/min of an empty list");
        step(r, (int64_t)l.n);
        int64_t m = l.l[0];
        for (size_t i = 1; i < l.n; i++)
            if (mx ? l.l[i] > m : l.l[i] < m) m = l.l[i];
        return vint(m);
    }
    if (name_is(x, "range") && (na == 1 || na == 2)) {
        int64_t a = na == 2 ? need_int(r, v[0], "range") : 0;
        int64_t b = need_int(r, v[na - 1], "range");
        if (b <= a) return vlist(new_list(r, 0), 0);
        if (b - a > EXL_MAX_LIST || b - a < 0) rfail(r, "list longer than %d", EXL_MAX_LIST);
        size_t n = (size_t)(b - a);
        int64_t *l = new_list(r, n);
        for (size_t i = 0; i < n; i++) l[i] = a + (int64_t)i;
        return vlist(l, n);
    }
    if (name_is(x, "reverse") && na == 1) {
        val l = need_list(r, v[0], "reverse");
        int64_t *o = new_list(r, l.n);
        for (size_t i = 0; i < l.n; i++) o[i] = l.l[l.n - 1 - i];
        return vlist(o, l.n);
    }
    rfail(r, "unknown function '%.*s' with %d argument(s)", (int)(x->nlen > 30 ? 30 : x->nlen), x->name, na);
}

static val eval(run *r, int ni) {
    step(r, 1);
    const node *x = &r->g->nodes[ni];
    switch (x->kind) {
    case N_INT: return vint(x->v);
    case N_VAR: return lookup(r, x);
    case N_BIN: return eval_bin(r, x);
    case N_NEG: {
        int64_t a = need_int(r, eval(r, x->kid[0]), "-");
        if (a == INT64_MIN) rfail(r, "integer overflow");
        return vint(-a);
    }
    case N_NOT: return vint(!truthy(r, eval(r, x->kid[0])));
    case N_AND: return vint(truthy(r, eval(r, x->kid[0])) && truthy(r, eval(r, x->kid[1])));
    case N_OR: return vint(truthy(r, eval(r, x->kid[0])) || truthy(r, eval(r, x->kid[1])));
    case N_IF: return truthy(r, eval(r, x->kid[0])) ? eval(r, x->kid[1]) : eval(r, x->kid[2]);
    case N_LET: {
        val v = eval(r, x->kid[0]);
        env_push(r, x->name, x->nlen, v);
        val b = eval(r, x->kid[1]);
        r->nenv--;
        return b;
    }
    case N_INDEX: {
        val l = need_list(r, eval(r, x->kid[0]), "index");
        int64_t i = need_int(r, eval(r, x->kid[1]), "index");
        if (i < 0) i += (int64_t)l.n; /* l[-1] is the last element */
        if (i < 0 || (size_t)i >= l.n) rfail(r, "index out of range");
        return vint(l.l[i]);
    }
    case N_LIST: {
        size_t n = 0;
        for (int a = x->kid[0]; a >= 0; a = r->g->nodes[a].next) n++;
        int64_t *l = new_list(r, n);
        size_t k = 0;
        for (int a = x->kid[0]; a >= 0; a = r->g->nodes[a].next) l[k++] = need_int(r, eval(r, a), "list item");
        return vlist(l, n);
    }
    case N_CALL: return eval_call(r, x);
    case N_LAMBDA: rfail(r, "unexpected '=>'");
    }
    rfail(r, "bad node");
}

static int bind_inputs(run *r, json_t *inputs) {
    const char *key;
    json_t *v;
    json_object_foreach(inputs, key, v) {
        if (json_is_integer(v)) {
            env_push(r, key, strlen(key), vint(json_integer_value(v)));
        } else if (json_is_array(v)) {
            size_t n = json_array_size(v);
            int64_t *l = new_list(r, n);
            for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(v, i);
                if (!json_is_integer(e)) rfail(r, "input '%s': list items must be integers", key);
                l[i] = json_integer_value(e);
            }
            env_push(r, key, strlen(key), vlist(l, n));
        } else {
            rfail(r, "input '%s': not an integer or a list", key);
        }
    }
    return 1;
}

int exl_run_json(const exl_prog *g, json_t *inputs, int64_t max_steps, json_t **out,
                 char *err, size_t errlen) {
    char dummy[8];
    run *r = xcalloc(1, sizeof *r);
    r->g = g;
    r->max_steps = max_steps;
    r->err = err ? err : dummy;
    r->errlen = err ? errlen : sizeof dummy;
    *out = NULL;
    int ok = 0;
    if (!setjmp(r->jb)) {
        if (inputs && !json_is_object(inputs)) rfail(r, "inputs must be an object");
        if (inputs) bind_inputs(r, inputs);
        val v = eval(r, g->root);
        if (v.is_list) {
            json_t *a = json_array();
            for (size_t i = 0; i < v.n; i++) json_array_append_new(a, json_integer(v.l[i]));
            *out = a;
        } else {
            *out = json_integer(v.v);
        }
        ok = 1;
    }
    for (size_t i = 0; i < r->nalloc; i++) free(r->allocs[i]);
    free(r->allocs);
    free(r->env);
    free(r);
    return ok;
}

/* ---------- equations (doubles) ---------- */
typedef struct { const char *s; int depth, failed; char *err; size_t errlen; } eqp;

static void eq_fail(eqp *p, const char *msg) {
    if (!p->failed) snprintf(p->err, p->errlen, "%s", msg);
    p->failed = 1;
}
static void eq_ws(eqp *p) { while (isspace((unsigned char)*p->s)) p->s++; }
static double eq_sum(eqp *p);

static double eq_atom(eqp *p) {
    eq_ws(p);
    if (*p->s == '(') {
        p->s++;
        double v = eq_sum(p);
        eq_ws(p);
        if (*p->s == ')') p->s++;
        else eq_fail(p, "expected ')'");
        return v;
    }
    if (isdigit((unsigned char)*p->s) || (*p->s == '.' && isdigit((unsigned char)p->s[1]))) {
        char *end;
        double v = strtod(p->s, &end);
        /* strtod would also take "inf", hex and the like: allow digits only */
        for (const char *c = p->s; c < end; c++)
            if (!isdigit((unsigned char)*c) && !strchr(".eE+-", *c)) { eq_fail(p, "bad number"); return 0; }
        p->s = end;
        return v;
    }
    eq_fail(p, *p->s ? "unexpected character" : "unexpected end");
    return 0;
}

static double eq_unary(eqp *p) {
    eq_ws(p);
    if (*p->s == '-' || *p->s == '+') {
        int neg = *p->s == '-';
        p->s++;
        if (++p->depth > MAX_DEPTH) { eq_fail(p, "nested too deeply"); return 0; }
        double v = eq_unary(p);
        p->depth--;
        return neg ? -v : v;
    }
    return eq_atom(p);
}

static double eq_pow(eqp *p) {
    if (++p->depth > MAX_DEPTH) { eq_fail(p, "nested too deeply"); return 0; }
    double b = eq_unary(p);
    eq_ws(p);
    if (!p->failed && (*p->s == '^' || (p->s[0] == '*' && p->s[1] == '*'))) {
        p->s += *p->s == '^' ? 1 : 2;
        b = pow(b, eq_pow(p));
    }
    p->depth--;
    return b;
}

static double eq_prod(eqp *p) {
    double v = eq_pow(p);
    for (;;) {
        eq_ws(p);
        if (p->failed) return 0;
        if (*p->s == '*' && p->s[1] != '*') { p->s++; v *= eq_pow(p); }
        else if (*p->s == '/') { p->s++; v /= eq_pow(p); }
        else return v;
    }
}

static double eq_sum(eqp *p) {
    if (++p->depth > MAX_DEPTH) { eq_fail(p, "nested too deeply"); return 0; }
    double v = eq_prod(p);
    for (;;) {
        eq_ws(p);
        if (p->failed) break;
        if (*p->s == '+') { p->s++; v += eq_prod(p); }
        else if (*p->s == '-') { p->s++; v -= eq_prod(p); }
        else break;
    }
    p->depth--;
    return v;
}

int eq_eval(const char *src, double *out, char *err, size_t errlen) {
    char dummy[8];
    eqp p = {src, 0, 0, err ? err : dummy, err ? errlen : sizeof dummy};
    eq_ws(&p);
    /* optional "x =" on the left */
    const char *s = p.s;
    if (isalpha((unsigned char)*s)) {
        while (isalnum((unsigned char)*s) || *s == '_') s++;
        while (isspace((unsigned char)*s)) s++;
        if (*s != '=') { eq_fail(&p, "expected 'x = ...'"); return 0; }
        p.s = s + 1;
    }
    double v = eq_sum(&p);
    eq_ws(&p);
    if (!p.failed && *p.s) eq_fail(&p, "unexpected text after the expression");
    if (!p.failed && !isfinite(v)) eq_fail(&p, "result is not finite");
    if (p.failed) return 0;
    *out = v;
    return 1;
}
