/* tasks.c: see tasks.h. Three small task families, sized for a byte-level
 * model of a few million parameters: prompts of roughly 60-150 bytes and
 * short completions. Difficulty (1-4) widens numbers, adds steps, and (for
 * equations) adds distractor sentences. Every answer is computed by the
 * same code the checker runs (eq_eval, exprlang), so records are
 * consistent by construction. */
#include "tasks.h"
#include "exprlang.h"
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---------- small helpers ---------- */
typedef struct { char s[1024]; size_t n; } tbuf;
static void tb_add(tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_add(tbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    if (k > 0) b->n += (size_t)k;
    if (b->n >= sizeof b->s) b->n = sizeof b->s - 1;
}

static int64_t rint_in(wdl_rng *r, int64_t lo, int64_t hi) {
    return hi <= lo ? lo : lo + (int64_t)rng_below(r, (uint64_t)(hi - lo + 1));
}
#define PICK(r, arr) (arr)[rng_below((r), sizeof(arr) / sizeof((arr)[0]))]

typedef struct { const char *name; int female; } person;
static const person people[] = {
    {"Ann", 1}, {"Ben", 0}, {"Mia", 1}, {"Tom", 0}, {"Lily", 1}, {"Sam", 0}, {"Emma", 1},
    {"Jack", 0}, {"Zoe", 1}, {"Leo", 0}, {"Nina", 1}, {"Omar", 0}, {"Ruth", 1}, {"Ivan", 0},
    {"Sara", 1}, {"Paul", 0}, {"Kate", 1}, {"Raj", 0}, {"Eva", 1}, {"Dan", 0}, {"Amy", 1},
    {"Max", 0}, {"Lucy", 1}, {"Hugo", 0}};
#define NPEOPLE (sizeof people / sizeof people[0])
static const char *objects[] = {"apples", "marbles", "stickers", "coins", "books", "pencils",
                                "cards", "shells", "stamps", "cookies", "beads", "candies",
                                "balloons", "buttons", "toy cars", "seeds"};

static const char *he(const person *p) { return p->female ? "she" : "he"; }
static const char *He(const person *p) { return p->female ? "She" : "He"; }
static const char *him(const person *p) { return p->female ? "her" : "him"; }

/* Two different people. */
static void two_people(wdl_rng *r, const person **a, const person **b) {
    size_t i = rng_below(r, NPEOPLE), j = rng_below(r, NPEOPLE - 1);
    if (j >= i) j++;
    *a = &people[i];
    *b = &people[j];
}

static const int64_t arith_max[4] = {10, 30, 100, 1000};
static const int64_t arith_mul[4] = {3, 5, 9, 12};

/* ---------- arith: a chain of operations on one quantity ---------- */
static json_t *make_arith(wdl_rng *r, int d) {
    const person *p, *q;
    two_people(r, &p, &q);
    const char *obj = PICK(r, objects);
    int64_t maxv = arith_max[d - 1], maxm = arith_mul[d - 1];
    static const int lo_ops[4] = {1, 1, 2, 3}, hi_ops[4] = {2, 3, 4, 4};
    int nops = (int)rint_in(r, lo_ops[d - 1], hi_ops[d - 1]);
    int64_t cur = rint_in(r, 2, maxv);
    tbuf pr = {0}, co = {0};
    static const char *starts[] = {"%s has %lld %s.", "%s starts with %lld %s.", "%s had %lld %s."};
    tb_add(&pr, PICK(r, starts), p->name, (long long)cur, obj);
    for (int i = 0; i < nops; i++) {
        int op = (int)rng_below(r, 4);
        int64_t k = 0, next = 0;
        char sym = '+';
        if (op == 3) { /* division needs an exact divisor */
            int64_t divs[16];
            int nd = 0;
            for (int64_t m = 2; m <= maxm && nd < 16; m++)
                if (cur % m == 0 && cur / m >= 1) divs[nd++] = m;
            if (nd == 0) op = 0;
            else k = divs[rng_below(r, (uint64_t)nd)];
        }
        if (op == 2 && cur * maxm > 1000000) op = 1;
        if (op == 1 && cur < 2) op = 0;
        switch (op) {
        case 0:
            k = rint_in(r, 1, maxv);
            next = cur + k;
            switch (rng_below(r, 4)) {
            case 0: tb_add(&pr, " %s buys %lld more.", He(p), (long long)k); break;
            case 1: tb_add(&pr, " %s finds %lld more.", He(p), (long long)k); break;
            case 2: tb_add(&pr, " %s gives %s %lld more.", q->name, him(p), (long long)k); break;
            default: tb_add(&pr, " Then %s gets %lld more.", he(p), (long long)k); break;
            }
            break;
        case 1:
            k = rint_in(r, 1, cur - 1 < maxv ? cur - 1 : maxv);
            next = cur - k;
            sym = '-';
            switch (rng_below(r, 4)) {
            case 0: tb_add(&pr, " %s gives %lld to %s.", He(p), (long long)k, q->name); break;
            case 1: tb_add(&pr, " %s loses %lld.", He(p), (long long)k); break;
            case 2: tb_add(&pr, " %s sells %lld of them.", He(p), (long long)k); break;
            default: tb_add(&pr, " Then %s uses %lld.", he(p), (long long)k); break;
            }
            break;
        case 2:
            k = rint_in(r, 2, maxm);
            next = cur * k;
            sym = '*';
            if (k == 2 && rng_below(r, 2)) tb_add(&pr, " Then %s doubles them.", he(p));
            else if (rng_below(r, 2)) tb_add(&pr, " Then %s has %lld times as many.", he(p), (long long)k);
            else tb_add(&pr, " %s ends up with %lld times that many.", He(p), (long long)k);
            break;
        default:
            next = cur / k;
            sym = '/';
            if (rng_below(r, 2))
                tb_add(&pr, " %s splits them into %lld equal groups and keeps one.", He(p), (long long)k);
            else
                tb_add(&pr, " %s shares them equally with %lld friends and keeps a share.", He(p),
                       (long long)(k - 1));
            break;
        }
        tb_add(&co, "%s%lld %c %lld = %lld.", i ? " " : "", (long long)cur, sym, (long long)k, (long long)next);
        cur = next;
    }
    static const char *asks[] = {"How many %s does %s have now?", "How many %s does %s have in the end?",
                                 "How many %s does %s have left?"};
    tb_add(&pr, " ");
    tb_add(&pr, PICK(r, asks), obj, p->name);
    tb_add(&co, " \\boxed{%lld}", (long long)cur);
    char ans[32];
    snprintf(ans, sizeof ans, "%lld", (long long)cur);
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:i}", "task", "arith", "prompt", pr.s, "completion", co.s,
                     "answer", ans, "difficulty", d, "steps", nops);
}

/* ---------- equation: MAWPS-style word problems ---------- */
#define NEQ 17
/* Templates usable at each difficulty: [first, last] into the switch. */
static const int eq_lo[4] = {0, 0, 6, 6}, eq_hi[4] = {5, 12, 16, 16};

static int eq_template(wdl_rng *r, int t, int64_t mx, tbuf *pr, tbuf *eq) {
    const person *p, *q;
    two_people(r, &p, &q);
    const char *o = PICK(r, objects);
    int64_t a = rint_in(r, 2, mx), b = rint_in(r, 2, mx), c = rint_in(r, 2, mx), dd = rint_in(r, 2, 9);
    int64_t e = rint_in(r, 2, 9);
    switch (t) {
    case 0:
        if (b >= a) { int64_t s = a; a = b + 1; b = s; }
        tb_add(pr, "%s had %lld %s. %s gave %lld of them to %s. How many %s does %s have left?", p->name,
               (long long)a, o, He(p), (long long)b, q->name, o, p->name);
        tb_add(eq, "x=%lld-%lld", (long long)a, (long long)b);
        return 1;
    case 1:
        tb_add(pr, "%s has %lld %s and %s has %lld %s. How many %s do they have in all?", p->name,
               (long long)a, o, q->name, (long long)b, o, o);
        tb_add(eq, "x=%lld+%lld", (long long)a, (long long)b);
        return 1;
    case 2:
        tb_add(pr, "There are %lld %s in each box. How many %s are in %lld boxes?", (long long)a, o, o,
               (long long)dd);
        tb_add(eq, "x=%lld*%lld", (long long)a, (long long)dd);
        return 1;
    case 3:
        tb_add(pr, "%s shared %lld %s equally among %lld friends. How many %s did each friend get?",
               p->name, (long long)(a * dd), o, (long long)dd, o);
        tb_add(eq, "x=%lld/%lld", (long long)(a * dd), (long long)dd);
        return 1;
    case 4:
        tb_add(pr, "%s had some %s. %s got %lld more and now has %lld. How many did %s have at first?",
               p->name, o, He(p), (long long)a, (long long)(a + b), he(p));
        tb_add(eq, "x=%lld-%lld", (long long)(a + b), (long long)a);
        return 1;
    case 5:
        tb_add(pr, "%s is %lld years old. %s is %lld years older. How old is %s?", p->name, (long long)a,
               q->name, (long long)b, q->name);
        tb_add(eq, "x=%lld+%lld", (long long)a, (long long)b);
        return 1;
    case 6:
        tb_add(pr, "A waiter had %lld customers. %lld of them left and the rest sat %lld to a table. "
               "How many tables were used?", (long long)(b + a * dd), (long long)b, (long long)dd);
        tb_add(eq, "x=(%lld-%lld)/%lld", (long long)(b + a * dd), (long long)b, (long long)dd);
        return 1;
    case 7:
        tb_add(pr, "%s has %lld %s and buys %lld packs with %lld %s in each. How many %s does %s have now?",
               p->name, (long long)a, o, (long long)dd, (long long)e, o, o, he(p));
        tb_add(eq, "x=%lld+%lld*%lld", (long long)a, (long long)dd, (long long)e);
        return 1;
    case 8:
        tb_add(pr, "A ticket costs %lld dollars. %s buys %lld tickets and pays with %lld dollars. "
               "How much change does %s get?", (long long)a, p->name, (long long)dd,
               (long long)(a * dd + b), he(p));
        tb_add(eq, "x=%lld-%lld*%lld", (long long)(a * dd + b), (long long)a, (long long)dd);
        return 1;
    case 9:
        if (c > a + b) c = a + b - 1;
        tb_add(pr, "There were %lld birds on a tree. %lld more came and then %lld flew away. "
               "How many birds are on the tree now?", (long long)a, (long long)b, (long long)c);
        tb_add(eq, "x=%lld+%lld-%lld", (long long)a, (long long)b, (long long)c);
        return 1;
    case 10:
        tb_add(pr, "%s read %lld pages on Monday and %lld on Tuesday. The book has %lld pages. "
               "How many pages are left?", p->name, (long long)a, (long long)b, (long long)(a + b + c));
        tb_add(eq, "x=%lld-(%lld+%lld)", (long long)(a + b + c), (long long)a, (long long)b);
        return 1;
    case 11:
        tb_add(pr, "%s has %lld %s. %s has %lld times as many. How many %s do they have together?",
               p->name, (long long)a, o, q->name, (long long)dd, o);
        tb_add(eq, "x=%lld+%lld*%lld", (long long)a, (long long)a, (long long)dd);
        return 1;
    case 12:
        tb_add(pr, "A farmer has %lld cows and %lld hens. How many legs do the animals have in all?",
               (long long)a, (long long)b);
        tb_add(eq, "x=%lld*4+%lld*2", (long long)a, (long long)b);
        return 1;
    case 13: {
        int64_t total = (a + 1) * dd;
        if ((total - 1) / e < 1) e = 2;
        int64_t per = rint_in(r, 1, (total - 1) / e);
        tb_add(pr, "%s earns %lld dollars a day for %lld days and spends %lld. %s puts the rest equally "
               "into %lld jars. How much is in each jar?", p->name, (long long)(a + 1), (long long)dd,
               (long long)(total - per * e), He(p), (long long)e);
        tb_add(eq, "x=(%lld*%lld-%lld)/%lld", (long long)(a + 1), (long long)dd,
               (long long)(total - per * e), (long long)e);
        return 1;
    }
    case 14:
        tb_add(pr, "%s buys %lld pens at %lld dollars each and %lld books at %lld dollars each. "
               "How much does %s spend?", p->name, (long long)dd, (long long)b, (long long)e,
               (long long)c, he(p));
        tb_add(eq, "x=%lld*%lld+%lld*%lld", (long long)dd, (long long)b, (long long)e, (long long)c);
        return 1;
    case 15:
        tb_add(pr, "A bus has %lld people. At the first stop %lld get off and %lld get on. At the next "
               "stop %lld get off. How many are on the bus now?", (long long)(a + b + c), (long long)b,
               (long long)dd, (long long)c);
        tb_add(eq, "x=%lld-%lld+%lld-%lld", (long long)(a + b + c), (long long)b, (long long)dd, (long long)c);
        return 1;
    default:
        tb_add(pr, "A shop had %lld %s. It sold %lld and then got %lld boxes of %lld. How many %s "
               "does it have now?", (long long)(a + b), o, (long long)b, (long long)dd, (long long)e, o);
        tb_add(eq, "x=%lld-%lld+%lld*%lld", (long long)(a + b), (long long)b, (long long)dd, (long long)e);
        return 1;
    }
}

/* An irrelevant sentence with a number, inserted before the question. */
static void add_distractor(wdl_rng *r, tbuf *pr) {
    const person *p = &people[rng_below(r, NPEOPLE)];
    static const char *fmts[] = {"%s also has %lld %s.", "%s is %lld years old.", "Last week %s had %lld %s."};
    int f = (int)rng_below(r, 3);
    int64_t z = rint_in(r, 2, 60);
    char extra[160];
    if (f == 1) snprintf(extra, sizeof extra, fmts[1], p->name, (long long)z);
    else snprintf(extra, sizeof extra, fmts[f], p->name, (long long)z, PICK(r, objects));
    /* insert before the last sentence (the question) */
    char *qs = strrchr(pr->s, '.');
    if (!qs) return;
    size_t at = (size_t)(qs - pr->s) + 2;
    if (at > pr->n) return;
    char tail[1024];
    snprintf(tail, sizeof tail, "%s", pr->s + at);
    pr->n = at;
    pr->s[at] = 0;
    tb_add(pr, "%s %s", extra, tail);
}

static void fmt_value(double v, char *buf, size_t n) {
    if (v == (double)(long long)v) snprintf(buf, n, "%lld", (long long)v);
    else snprintf(buf, n, "%.10g", v);
}

static json_t *make_equation(wdl_rng *r, int d) {
    static const int64_t mx[4] = {20, 50, 100, 500};
    tbuf pr = {0}, eq = {0};
    int t = (int)rint_in(r, eq_lo[d - 1], eq_hi[d - 1]);
    eq_template(r, t, mx[d - 1], &pr, &eq);
    if (d >= 3 && rng_below(r, 2)) add_distractor(r, &pr);
    double v;
    char err[128];
    if (!eq_eval(eq.s, &v, err, sizeof err)) die("internal: bad generated equation '%s': %s", eq.s, err);
    char ans[48];
    fmt_value(v, ans, sizeof ans);
    return json_pack("{s:s,s:s,s:s,s:s,s:i}", "task", "equation", "prompt", pr.s, "completion", eq.s,
                     "answer", ans, "difficulty", d);
}

/* ---------- prog: spec + examples -> program ---------- */
enum { IN_X, IN_AB, IN_L };

typedef struct {
    int inputs;
    int min_d;
    const char *spec[2]; /* two phrasings; printf with up to three %lld: A, B, C */
    const char *prog;    /* the same */
    int nonneg;          /* x must be >= 0 */
} prog_family;

static const prog_family families[] = {
    {IN_X, 1, {"return x times %lld plus %lld.", "multiply x by %lld, then add %lld."}, "x*%lld+%lld", 0},
    {IN_X, 1, {"return x minus %lld, times %lld.", "subtract %lld from x and multiply by %lld."}, "(x-%lld)*%lld", 0},
    {IN_AB, 1, {"return the larger of a and b.", "give the maximum of a and b."}, "if a>b then a else b", 0},
    {IN_AB, 1, {"return the smaller of a and b.", "give the minimum of a and b."}, "if a<b then a else b", 0},
    {IN_X, 1, {"return x squared plus %lld.", "add %lld to x*x."}, "x*x+%lld", 0},
    {IN_X, 1, {"return %lld if x is even, else %lld.", "give %lld for even x and %lld for odd x."},
     "if x%%2==0 then %lld else %lld", 0},
    {IN_X, 2, {"return x/2 if x is even, else 3*x+1.", "halve x when it is even, otherwise return 3*x+1."},
     "if x%%2==0 then x/2 else 3*x+1", 0},
    {IN_X, 2, {"return the distance between x and %lld.", "return how far x is from %lld."}, "abs(x-%lld)", 0},
    {IN_X, 2, {"return x clamped to the range %lld to %lld.", "limit x to at least %lld and at most %lld."},
     "if x<%lld then %lld else if x>%lld then %lld else x", 0},
    {IN_X, 2, {"return the last digit of x.", "return x modulo 10."}, "x%%10", 1},
    {IN_X, 2, {"return 1 if x is positive, -1 if negative, else 0.", "return the sign of x (1, 0 or -1)."},
     "if x>0 then 1 else if x<0 then -1 else 0", 0},
    {IN_X, 2, {"return 1 if x is divisible by %lld, else 0.", "return 1 when %lld divides x, otherwise 0."},
     "if x%%%lld==0 then 1 else 0", 0},
    {IN_AB, 2, {"return the sum of a and b, times %lld.", "add a and b, then multiply by %lld."}, "(a+b)*%lld", 0},
    {IN_L, 3, {"return the sum of the list l.", "add up all items of l."}, "sum(l)", 0},
    {IN_L, 3, {"return the largest item of l.", "return the maximum of the list l."}, "max(l)", 0},
    {IN_L, 3, {"return l with every item times %lld.", "multiply each item of l by %lld."}, "map(l, v => v*%lld)", 0},
    {IN_L, 3, {"return the items of l greater than %lld.", "keep only the items of l above %lld."},
     "filter(l, v => v>%lld)", 0},
    {IN_L, 3, {"return how many items of l are even.", "count the even numbers in l."},
     "len(filter(l, v => v%%2==0))", 0},
    {IN_X, 3, {"return the sum 1+2+...+x.", "add up all whole numbers from 1 to x."}, "sum(range(1,x+1))", 1},
    {IN_X, 4, {"return x times %lld if x is above %lld, else x plus %lld.",
               "if x > %2$lld multiply it by %1$lld, otherwise add %3$lld."},
     "if x>%lld then x*%lld else x+%lld", 0},
    {IN_L, 4, {"return the sum of the items of l below %lld.", "add up the items of l that are less than %lld."},
     "sum(filter(l, v => v<%lld))", 0},
    {IN_AB, 4, {"return a times b minus %lld, but at least 0.", "multiply a by b, subtract %lld, and floor at 0."},
     "max(a*b-%lld, 0)", 0},
};
#define NFAM (sizeof families / sizeof families[0])

static json_t *prog_input(wdl_rng *r, const prog_family *f, int d) {
    int64_t span = d <= 2 ? 20 : 50;
    int64_t lo = f->nonneg ? 0 : -span / 2;
    if (f->inputs == IN_X) return json_pack("{s:I}", "x", (json_int_t)rint_in(r, lo, span));
    if (f->inputs == IN_AB)
        return json_pack("{s:I,s:I}", "a", (json_int_t)rint_in(r, lo, span), "b", (json_int_t)rint_in(r, lo, span));
    json_t *l = json_array();
    int n = (int)rint_in(r, 1, 5);
    for (int i = 0; i < n; i++) json_array_append_new(l, json_integer(rint_in(r, 0, 20)));
    return json_pack("{s:o}", "l", l);
}

/* "f(3)", "f(3,7)", "f([1,2])" for a test input. */
static void call_text(tbuf *b, const prog_family *f, json_t *in) {
    if (f->inputs == IN_X) tb_add(b, "f(%lld)", (long long)json_integer_value(json_object_get(in, "x")));
    else if (f->inputs == IN_AB)
        tb_add(b, "f(%lld,%lld)", (long long)json_integer_value(json_object_get(in, "a")),
               (long long)json_integer_value(json_object_get(in, "b")));
    else {
        json_t *l = json_object_get(in, "l");
        tb_add(b, "f([");
        for (size_t i = 0; i < json_array_size(l); i++)
            tb_add(b, "%s%lld", i ? "," : "", (long long)json_integer_value(json_array_get(l, i)));
        tb_add(b, "])");
    }
}

static void value_text(tbuf *b, json_t *v) {
    if (json_is_integer(v)) { tb_add(b, "%lld", (long long)json_integer_value(v)); return; }
    tb_add(b, "[");
    for (size_t i = 0; i < json_array_size(v); i++)
        tb_add(b, "%s%lld", i ? "," : "", (long long)json_integer_value(json_array_get(v, i)));
    tb_add(b, "]");
}

static int has_input(json_t *tests, json_t *in) {
    for (size_t i = 0; i < json_array_size(tests); i++)
        if (json_equal(json_object_get(json_array_get(tests, i), "in"), in)) return 1;
    return 0;
}

static json_t *make_prog(wdl_rng *r, int d) {
    const prog_family *f;
    do f = &families[rng_below(r, NFAM)]; while (f->min_d > d);
    int64_t cmax = d <= 2 ? 9 : 20;
    int64_t A = rint_in(r, 2, cmax), B = rint_in(r, 2, cmax), C = rint_in(r, 2, cmax);
    if (strstr(f->spec[0], "clamped")) { B = A + rint_in(r, 3, 15); }
    tbuf spec = {0}, prog = {0};
    tb_add(&spec, f->spec[rng_below(r, 2)], (long long)A, (long long)B, (long long)C);
    /* program argument lists differ from the spec's for a few families */
    if (strstr(f->spec[0], "clamped"))
        tb_add(&prog, f->prog, (long long)A, (long long)A, (long long)B, (long long)B);
    else if (strstr(f->spec[0], "if x is above"))
        tb_add(&prog, f->prog, (long long)B, (long long)A, (long long)C);
    else
        tb_add(&prog, f->prog, (long long)A, (long long)B, (long long)C);
    char err[200];
    exl_prog *P = exl_parse(prog.s, err, sizeof err);
    if (!P) die("internal: bad generated program '%s': %s", prog.s, err);
    json_t *tests = json_array();
    tbuf pr = {0};
    tb_add(&pr, "Write %s: %s", f->inputs == IN_X ? "f(x)" : f->inputs == IN_AB ? "f(a,b)" : "f(l)", spec.s);
    int ntests = 8;
    for (int i = 0; i < ntests; i++) {
        json_t *in = prog_input(r, f, d), *out;
        for (int retry = 0; retry < 8 && has_input(tests, in); retry++) { /* distinct inputs */
            json_decref(in);
            in = prog_input(r, f, d);
        }
        if (!exl_run_json(P, in, 100000, &out, err, sizeof err))
            die("internal: generated program '%s' failed: %s", prog.s, err);
        if (i < 2) { /* the first two tests are shown */
            tb_add(&pr, " ");
            call_text(&pr, f, in);
            tb_add(&pr, "=");
            value_text(&pr, out);
            tb_add(&pr, i == 1 ? "." : ",");
        }
        json_array_append_new(tests, json_pack("{s:o,s:o}", "in", in, "out", out));
    }
    exl_free(P);
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:i}", "task", "prog", "prompt", pr.s, "completion", prog.s,
                     "answer", prog.s, "tests", tests, "difficulty", d);
}

/* ---------- dispatch, splits, dedup ---------- */
int task_kind(const char *name) {
    static const char *names[] = {"arith", "equation", "prog", "mix", NULL};
    for (int i = 0; names[i]; i++)
        if (!strcmp(name, names[i])) return i;
    if (!strchr(name, ',')) return -1;
    int mask = 0;
    for (const char *p = name; *p;) {
        size_t n = strcspn(p, ",");
        int k = -1;
        for (int i = 0; i < TASK_MIX; i++)
            if (strlen(names[i]) == n && !strncmp(p, names[i], n)) k = i;
        if (k < 0 || mask & (1 << k)) return -1;
        mask |= 1 << k;
        p += n;
        if (*p == ',' && *++p == 0) return -1;
    }
    return TASK_LIST + mask;
}
int task_split(const char *name) {
    static const char *names[] = {"train", "dev", "test", NULL};
    for (int i = 0; names[i]; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

static uint64_t prompt_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    int space = 0, started = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isspace(c)) { space = started; continue; }
        if (space) { h = (h ^ ' ') * 0x100000001b3ULL; space = 0; }
        h = (h ^ (unsigned char)tolower(c)) * 0x100000001b3ULL;
        started = 1;
    }
    h ^= h >> 33; h *= 0xff51afd7ed558ccdULL; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL; h ^= h >> 33;
    return h;
}

int task_split_of(const char *prompt) {
    int b = (int)(prompt_hash(prompt) % 10);
    return b < 8 ? SPLIT_TRAIN : b == 8 ? SPLIT_DEV : SPLIT_TEST;
}

json_t *task_make(int kind, wdl_rng *r, int d) {
    if (d < 1) d = 1;
    if (d > 4) d = 4;
    switch (kind) {
    case TASK_ARITH: return make_arith(r, d);
    case TASK_EQUATION: return make_equation(r, d);
    default: return make_prog(r, d);
    }
}

void task_gen_init(task_gen *g, int kind, uint64_t seed, int split, int difficulty) {
    memset(g, 0, sizeof *g);
    g->kind = kind;
    for (int k = 0; k < TASK_MIX; k++)
        if (kind == TASK_MIX || (kind >= TASK_LIST && ((kind - TASK_LIST) & (1 << k))) || kind == k)
            g->kinds[g->nkinds++] = k;
    g->split = split;
    g->difficulty = difficulty;
    rng_seed(&g->rng, seed * 0x9E3779B97F4A7C15ULL + (uint64_t)kind);
}

/* Insert h; 0 if it was already there. */
static int seen_add(task_gen *g, uint64_t h) {
    if (h == 0) h = 1;
    if (2 * (g->seen_n + 1) > g->seen_cap) {
        size_t nc = g->seen_cap ? g->seen_cap * 2 : 1024;
        uint64_t *old = g->seen, oc = g->seen_cap;
        g->seen = xcalloc(nc, sizeof(uint64_t));
        g->seen_cap = nc;
        for (size_t i = 0; i < oc; i++)
            if (old[i]) {
                size_t j = old[i] & (nc - 1);
                while (g->seen[j]) j = (j + 1) & (nc - 1);
                g->seen[j] = old[i];
            }
        free(old);
    }
    size_t j = h & (g->seen_cap - 1);
    while (g->seen[j]) {
        if (g->seen[j] == h) return 0;
        j = (j + 1) & (g->seen_cap - 1);
    }
    g->seen[j] = h;
    g->seen_n++;
    return 1;
}

json_t *task_gen_next(task_gen *g) {
    int kind = g->kinds[g->count % g->nkinds];
    for (int64_t tries = 0;; tries++) {
        if (tries > 1000000)
            die("gen: cannot find more distinct prompts for this task/split at difficulty %d "
                "(made %lld)", g->difficulty, (long long)g->count);
        json_t *v = task_make(kind, &g->rng, g->difficulty);
        const char *pr = json_string_value(json_object_get(v, "prompt"));
        uint64_t h = prompt_hash(pr);
        int b = (int)(h % 10), split = b < 8 ? SPLIT_TRAIN : b == 8 ? SPLIT_DEV : SPLIT_TEST;
        if (split != g->split || !seen_add(g, h)) { json_decref(v); continue; }
        /* idx first, so it leads the record */
        json_t *rec = json_pack("{s:I}", "idx", (json_int_t)g->count++);
        json_object_update(rec, v);
        json_decref(v);
        return rec;
    }
}

void task_gen_free(task_gen *g) {
    free(g->seen);
    g->seen = NULL;
}
