/* importers.c: see importers.h. One small converter per source layout;
 * the driver handles JSON arrays vs JSON Lines, idx assignment and
 * duplicate detection. */
#include "importers.h"
#include "checker.h"
#include "common.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *fmt_names[] = {"mawps", "svamp", "gsm8k", "aqua", "aime", "amc", "chat", NULL};

int import_format(const char *name) {
    for (int i = 0; fmt_names[i]; i++)
        if (!strcmp(name, fmt_names[i])) return i;
    return -1;
}
const char *import_format_name(int fmt) { return fmt >= 0 && fmt <= IMP_CHAT ? fmt_names[fmt] : "?"; }

/* ---------- text helpers ---------- */
static const char *first_str(json_t *o, const char *const *keys) {
    for (int i = 0; keys[i]; i++) {
        const char *s = json_string_value(json_object_get(o, keys[i]));
        if (s && *s) return s;
    }
    return NULL;
}

/* Copy without surrounding whitespace. */
static char *strip(const char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *r = xmalloc(n + 1);
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

/* MAWPS text is tokenised ("section . If"): drop spaces before punctuation. */
static char *detokenise(const char *s) {
    char *t = strip(s), *w = t;
    for (const char *p = t; *p; p++) {
        if (*p == ' ' && p[1] && strchr(".,?!;:", p[1]) && (!p[2] || p[2] == ' ')) continue;
        if (*p == ' ' && w > t && w[-1] == ' ') continue;
        *w++ = *p;
    }
    *w = 0;
    return t;
}

/* "X=((22.0-14.0)/4.0)" -> "x=(22-14)/4": no spaces, no ".0", lower-case
 * unknown, one pair of outer parentheses dropped. */
static char *norm_equation(const char *eq, int add_lhs) {
    size_t n = strlen(eq);
    char *t = xmalloc(n + 3), *w = t;
    if (add_lhs) { *w++ = 'x'; *w++ = '='; }
    for (const char *p = eq; *p; p++) {
        if (isspace((unsigned char)*p)) continue;
        if (*p == '.' && p[1] == '0' && !isdigit((unsigned char)p[2]) && w > t && isdigit((unsigned char)w[-1])) {
            p++;
            continue;
        }
        *w++ = (p == eq && (*p == 'X' || *p == 'x')) ? 'x' : *p;
    }
    *w = 0;
    char *rhs = strchr(t, '=');
    if (rhs && rhs[1] == '(' && t[strlen(t) - 1] == ')') {
        /* drop the outer pair only if it wraps the whole right side */
        int depth = 0, wraps = 1;
        size_t m = strlen(rhs + 1);
        for (size_t i = 0; i < m; i++) {
            depth += rhs[1 + i] == '(' ? 1 : rhs[1 + i] == ')' ? -1 : 0;
            if (depth == 0 && i + 1 < m) { wraps = 0; break; }
        }
        if (wraps) {
            memmove(rhs + 1, rhs + 2, m - 2);
            rhs[m - 1] = 0;
        }
    }
    return t;
}

/* Numeric answers print as "%.10g" ("576.0" -> "576"); others stay text. */
static char *norm_answer(json_t *a) {
    char buf[64];
    double v;
    if (json_is_integer(a) || json_is_real(a)) {
        v = json_number_value(a);
        snprintf(buf, sizeof buf, "%.10g", v);
        return xstrdup(buf);
    }
    const char *s = json_string_value(a);
    if (!s) return NULL;
    if (check_number(s, &v)) {
        snprintf(buf, sizeof buf, "%.10g", v);
        return xstrdup(buf);
    }
    return strip(s);
}

/* idx from the source's id ("idx", "id", "ID", "problem_id", "iIndex"; an integer, or a string's
 * trailing digits as in SVAMP "chal-12"), else the position. */
static int64_t source_idx(json_t *src, int64_t pos, json_t **source_id) {
    static const char *keys[] = {"idx", "id", "ID", "problem_id", "iIndex", NULL};
    *source_id = NULL;
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(src, keys[i]);
        if (json_is_integer(v)) return json_integer_value(v);
        const char *s = json_string_value(v);
        if (s && *s) {
            *source_id = v;
            size_t n = strlen(s), k = n;
            while (k > 0 && isdigit((unsigned char)s[k - 1])) k--;
            if (k < n && n - k < 18) return strtoll(s + k, NULL, 10);
            return pos;
        }
    }
    return pos;
}

static json_t *base_record(int64_t idx, const char *task, const char *prompt, const char *completion,
                           const char *answer) {
    json_t *r = json_object();
    json_object_set_new(r, "idx", json_integer(idx));
    json_object_set_new(r, "task", json_string(task));
    json_object_set_new(r, "prompt", json_string(prompt));
    if (completion) json_object_set_new(r, "completion", json_string(completion));
    if (answer) json_object_set_new(r, "answer", json_string(answer));
    return r;
}

/* ---------- converters ---------- */

/* Keep an equation as the completion only if the checker accepts it for
 * the record's answer (some source equations are implicit or rounded). */
static void keep_if_correct(json_t *r, const char *eq) {
    if (eq && !check_record(r, eq, NULL)) json_object_del(r, "completion");
}
/* A field under its capitalised or lower-case name ("Body" or "body"). */
static json_t *field_ci(json_t *s, const char *name) {
    json_t *v = json_object_get(s, name);
    if (v) return v;
    char low[32];
    snprintf(low, sizeof low, "%s", name);
    low[0] = (char)tolower((unsigned char)low[0]);
    return json_object_get(s, low);
}

/* The layout of the MAWPS repository (AllArith, ALG514, ...), in which
 * MAWPS and SVAMP are also distributed: sQuestion, lEquations
 * ["X=(3.0+2.0)"], lSolutions [5.0]. Equations come only for one unknown. */
static int alg_layout(json_t *s, const char **text, const char **eq, json_t **ans) {
    *text = json_string_value(json_object_get(s, "sQuestion"));
    if (!*text) return 0;
    json_t *e = json_object_get(s, "lEquations"), *a = json_object_get(s, "lSolutions");
    *eq = json_is_array(e) ? (json_array_size(e) == 1 ? json_string_value(json_array_get(e, 0)) : NULL)
                           : json_string_value(e);
    *ans = json_is_array(a) ? (json_array_size(a) == 1 ? json_array_get(a, 0) : NULL) : a;
    return 1;
}

/* A math word problem record: the equation (with or without "x=") is the
 * completion when the checker accepts it for the answer. */
static json_t *mwp_record(const char *task, int64_t idx, const char *prompt, const char *eq, const char *ans) {
    char *neq = eq ? norm_equation(eq, !strchr(eq, '=')) : NULL;
    json_t *r = base_record(idx, task, prompt, neq, ans);
    keep_if_correct(r, neq);
    if (eq) json_object_set_new(r, "equation", json_string(eq));
    free(neq);
    return r;
}

static json_t *conv_mawps(const char *task, json_t *s, int64_t idx, const char **why, const char **layout) {
    static const char *tk[] = {"original_text", "segmented_text", "question", "text", NULL};
    const char *text = first_str(s, tk), *eq = json_string_value(json_object_get(s, "equation"));
    json_t *a = json_object_get(s, "ans");
    *layout = "original_text/equation/ans";
    if (!text && alg_layout(s, &text, &eq, &a)) *layout = "sQuestion/lEquations/lSolutions";
    char *ans = norm_answer(a);
    if (!text || !ans) { free(ans); *why = "needs original_text and ans (or sQuestion and lSolutions)"; return NULL; }
    char *prompt = detokenise(text);
    json_t *r = mwp_record(task, idx, prompt, eq, ans);
    free(prompt); free(ans);
    return r;
}

/* SVAMP as published (Body, Question, Equation "( 3.0 + 2.0 )", Answer,
 * Type), with lower-case keys, with the body already in Question, or in
 * the MAWPS repository layout. */
static json_t *conv_svamp(const char *task, json_t *s, int64_t idx, const char **why, const char **layout) {
    const char *body = json_string_value(field_ci(s, "Body"));
    const char *q = json_string_value(field_ci(s, "Question"));
    const char *eq = json_string_value(field_ci(s, "Equation"));
    json_t *a = field_ci(s, "Answer");
    *layout = body ? "Body+Question/Answer" : "Question/Answer";
    if (!q && alg_layout(s, &q, &eq, &a)) { body = NULL; *layout = "sQuestion/lSolutions"; }
    char *ans = norm_answer(a);
    if (!q || !ans) {
        free(ans);
        *why = "needs Body+Question and Answer, Question and Answer, or sQuestion and lSolutions";
        return NULL;
    }
    char *b = strip(body ? body : ""), *qq = strip(q);
    size_t n = strlen(b) + strlen(qq) + 3;
    char *prompt = xmalloc(n);
    snprintf(prompt, n, "%s%s%s", b, *b ? " " : "", qq);
    json_t *r = mwp_record(task, idx, prompt, eq, ans);
    const char *type = json_string_value(field_ci(s, "Type"));
    if (type) json_object_set_new(r, "type", json_string(type));
    free(b); free(qq); free(prompt); free(ans);
    return r;
}

/* Instruction (+ input) of the instruction/output/answer layout. */
static char *instruction_prompt(json_t *s) {
    static const char *pk[] = {"instruction", "question", "problem", "prompt", NULL};
    const char *ins = first_str(s, pk);
    if (!ins) return NULL;
    const char *in = json_string_value(json_object_get(s, "input"));
    char *a = strip(ins);
    if (in && *in) {
        char *b = strip(in);
        size_t n = strlen(a) + strlen(b) + 2;
        char *c = xmalloc(n);
        snprintf(c, n, "%s\n%s", a, b);
        free(a); free(b);
        a = c;
    }
    return a;
}

static char *clean_output(const char *out) {
    char *o = strip(out);
    if (!strncmp(o, "A:", 2)) {
        char *t = strip(o + 2);
        free(o);
        o = t;
    }
    return o;
}

static json_t *conv_gsm8k(const char *task, json_t *s, int64_t idx, const char **why, const char **layout) {
    char *prompt = instruction_prompt(s);
    const char *out = json_string_value(json_object_get(s, "output"));
    json_t *a = json_object_get(s, "answer");
    const char *as = json_string_value(a), *hash = as ? strstr(as, "####") : NULL;
    char *completion = NULL, *ans = NULL;
    *layout = hash ? "question/answer (#### N)" : "instruction/output/answer";
    if (hash) { /* original layout: answer = "<solution> #### 72" */
        completion = strip(as);
        ans = strip(hash + 4);
        char *n = NULL;
        json_t *t = json_string(ans);
        n = norm_answer(t);
        json_decref(t);
        free(ans);
        ans = n;
    } else {
        ans = norm_answer(a);
        if (out) completion = clean_output(out);
    }
    if (!prompt || !ans) {
        free(prompt); free(completion); free(ans);
        *why = "needs instruction (or question) and answer";
        return NULL;
    }
    double num;
    if (!check_number(ans, &num)) {   /* GSM8K's answers are numbers: a solution without "#### N" is not one */
        free(prompt); free(completion); free(ans);
        *why = "has an answer that is not a number (and no \"#### N\" after a solution)";
        return NULL;
    }
    json_t *r = base_record(idx, task, prompt, completion, ans);
    free(prompt); free(completion); free(ans);
    return r;
}

/* "Answer Choices: (A) 23.65 (B) 1000 ..." -> {"A": "23.65", ...} */
static json_t *parse_choices(const char *text) {
    const char *p = strstr(text, "Answer Choices:");
    if (!p) p = text;
    json_t *ch = json_object();
    for (;;) {
        const char *o = p;
        while ((o = strchr(o, '(')) && !(o[1] >= 'A' && o[1] <= 'E' && o[2] == ')')) o++;
        if (!o) break;
        const char *start = o + 3, *e = start;
        while (*e && !(*e == '(' && e[1] >= 'A' && e[1] <= 'E' && e[2] == ')')) e++;
        size_t n = (size_t)(e - start);
        char *v = xmalloc(n + 1), key[2] = {o[1], 0};
        memcpy(v, start, n);
        v[n] = 0;
        char *t = strip(v);
        json_object_set_new(ch, key, json_string(t));
        free(v); free(t);
        p = e;
    }
    return ch;
}

static json_t *conv_aqua(const char *task, json_t *s, int64_t idx, const char **why, const char **layout) {
    char *prompt = instruction_prompt(s);
    json_t *opts = json_object_get(s, "options");
    static const char *ak[] = {"answer", "correct", NULL}, *ok[] = {"output", "rationale", NULL};
    const char *ans = first_str(s, ak), *out = first_str(s, ok);
    if (!prompt || !ans) { free(prompt); *why = "needs instruction (or question) and answer"; return NULL; }
    if (opts && !json_is_array(opts)) { free(prompt); *why = "has \"options\" that are not an array"; return NULL; }
    *layout = json_is_array(opts) ? "question/options/correct" : "instruction/output/answer";
    if (json_is_array(opts)) { /* original layout: options ["A)21", ...] */
        size_t n = strlen(prompt) + 32;
        for (size_t i = 0; i < json_array_size(opts); i++)
            n += strlen(json_string_value(json_array_get(opts, i)) ?: "") + 4;
        char *p2 = xmalloc(n);
        char *w = p2 + sprintf(p2, "%s Answer Choices:", prompt);
        for (size_t i = 0; i < json_array_size(opts); i++) {
            const char *o = json_string_value(json_array_get(opts, i));
            if (o && o[0] && o[1] == ')') w += sprintf(w, " (%c) %s", o[0], o + 2);
        }
        free(prompt);
        prompt = p2;
    }
    char *a = strip(ans), letter[2] = {(char)toupper((unsigned char)a[0]), 0};
    free(a);
    json_t *choices = parse_choices(prompt);
    if (!json_object_get(choices, letter)) {   /* nothing could check it */
        json_decref(choices);
        free(prompt);
        *why = "has an answer that is not the letter of one of its choices";
        return NULL;
    }
    char *completion = out ? clean_output(out) : NULL;
    json_t *r = base_record(idx, task, prompt, completion, letter);
    json_object_set_new(r, "choices", choices);
    free(prompt); free(completion);
    return r;
}

static json_t *conv_competition(const char *task, json_t *s, int64_t idx, const char **why, const char **layout) {
    char *prompt = instruction_prompt(s);
    char *ans = norm_answer(json_object_get(s, "answer"));
    static const char *ck[] = {"solution", "output", NULL};
    const char *sol = first_str(s, ck);
    if (!prompt || !ans) { free(prompt); free(ans); *why = "needs question (or instruction) and answer"; return NULL; }
    char *completion = sol ? strip(sol) : NULL;
    json_t *r = base_record(idx, task, prompt, completion, ans);
    free(prompt); free(ans); free(completion);
    return r;
}

/* Chat: keep the record, put idx and task first, add the boxed answer. */
static json_t *conv_chat(const char *task, json_t *s, int64_t idx, const char **why, const char **layout) {
    const char *co = NULL;
    if (!json_is_array(json_object_get(s, "messages"))) { *why = "needs a messages array"; return NULL; }
    if (!rec_prompt_completion(s, NULL, NULL, &co)) { *why = "has no user message"; return NULL; }
    json_t *r = json_object();
    json_object_set_new(r, "idx", json_integer(idx));
    const char *own = json_string_value(json_object_get(s, "task"));
    json_object_set_new(r, "task", json_string(task ? task : own ? own : "chat"));
    json_object_update_missing(r, s);
    if (!json_object_get(r, "answer") && co) {
        char *a = check_extract(co);
        if (a) json_object_set_new(r, "answer", json_string(a));
        free(a);
    }
    return r;
}

json_t *import_convert(int fmt, const char *task, json_t *src, int64_t pos, const char **why,
                       const char **layout) {
    const char *why_, *layout_;
    if (!why) why = &why_;
    if (!layout) layout = &layout_;
    *why = "not an object";
    *layout = NULL;
    if (!json_is_object(src)) return NULL;
    json_t *sid;
    int64_t idx = source_idx(src, pos, &sid);
    const char *t = task ? task : fmt_names[fmt];
    json_t *r = NULL;
    switch (fmt) {
    case IMP_MAWPS: r = conv_mawps(t, src, idx, why, layout); break;
    case IMP_SVAMP: r = conv_svamp(t, src, idx, why, layout); break;
    case IMP_GSM8K: r = conv_gsm8k(t, src, idx, why, layout); break;
    case IMP_AQUA: r = conv_aqua(t, src, idx, why, layout); break;
    case IMP_AIME: case IMP_AMC: r = conv_competition(t, src, idx, why, layout); break;
    case IMP_CHAT: return conv_chat(task, src, idx, why, layout);
    }
    if (r && sid) json_object_set(r, "source_id", sid);
    return r;
}

/* ---------- driver ---------- */
typedef struct {
    int fmt;
    const char *task;
    rec_writer *w;
    int64_t pos, no_completion;
    const char *layout[8];    /* the source layouts met, with their counts */
    int64_t layout_n[8];
    int nlayout;
    int64_t *seen;
    size_t seen_n, seen_cap;
} import_ctx;

/* Open-addressing set of idx values; 0 if already present. */
static int idx_add(import_ctx *c, int64_t idx) {
    if (2 * (c->seen_n + 1) > c->seen_cap) {
        size_t nc = c->seen_cap ? c->seen_cap * 2 : 1024;
        int64_t *old = c->seen;
        size_t oc = c->seen_cap;
        c->seen = xmalloc(nc * sizeof(int64_t));
        for (size_t i = 0; i < nc; i++) c->seen[i] = INT64_MIN;
        c->seen_cap = nc;
        c->seen_n = 0;
        for (size_t i = 0; i < oc; i++)
            if (old[i] != INT64_MIN) idx_add(c, old[i]);
        free(old);
    }
    size_t j = ((uint64_t)idx * 0x9E3779B97F4A7C15ULL) & (c->seen_cap - 1);
    while (c->seen[j] != INT64_MIN) {
        if (c->seen[j] == idx) return 0;
        j = (j + 1) & (c->seen_cap - 1);
    }
    c->seen[j] = idx;
    c->seen_n++;
    return 1;
}

static void emit(import_ctx *c, json_t *src, const char *file, int64_t line, int64_t item) {
    const char *why = NULL, *layout = NULL;
    json_t *r = import_convert(c->fmt, c->task, src, c->pos++, &why, &layout);
    char where[64];
    if (line > 0) snprintf(where, sizeof where, "%lld", (long long)line);
    else snprintf(where, sizeof where, "item %lld", (long long)item);
    if (!r) die("%s:%s: %s record %s", file, where, import_format_name(c->fmt), why);
    int64_t idx = json_integer_value(json_object_get(r, "idx"));
    if (!idx_add(c, idx)) die("%s:%s: duplicate idx %lld", file, where, (long long)idx);
    if ((c->fmt == IMP_MAWPS || c->fmt == IMP_SVAMP) && !json_object_get(r, "completion")) c->no_completion++;
    int k = 0;
    while (layout && k < c->nlayout && strcmp(c->layout[k], layout)) k++;
    if (layout && k == c->nlayout && k < 8) c->layout[c->nlayout++] = layout;
    if (layout && k < 8) c->layout_n[k]++;
    rec_write(c->w, r);
    json_decref(r);
}

/* JSON Lines already in memory (a benchmark read whole). */
static void import_lines(import_ctx *c, const char *name, char *text, size_t n) {
    int64_t line = 0;
    for (char *p = text, *end = text + n; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        const char *q = p;
        while (q < p + len && isspace((unsigned char)*q)) q++;
        if (q < p + len) {
            json_error_t err;
            json_t *v = json_loadb(p, len, 0, &err);
            if (!v) die("%s:%lld: %s", name, (long long)line, err.text);
            if (!json_is_object(v)) die("%s:%lld: expected a JSON object", name, (long long)line);
            emit(c, v, name, line, 0);
            json_decref(v);
        }
        p += len + 1;
    }
}

static void import_one(import_ctx *c, const char *file) {
    const char *name = !file || !strcmp(file, "-") ? "<stdin>" : file;
    if (c->fmt == IMP_CHAT) { /* chat sets can be large: stream them */
        rec_reader *r = rec_open(file);
        json_t *v;
        while ((v = rec_next(r))) {
            emit(c, v, rec_name(r), rec_line(r), 0);
            json_decref(v);
        }
        rec_close(r);
        return;
    }
    /* benchmarks are small: a JSON array or JSON Lines, read whole */
    size_t n;
    char *text = rec_slurp(file, &n);
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '[') {
        json_error_t err;
        json_t *arr = json_loadb(text, n, 0, &err);
        if (!arr) die("%s:%d: %s", name, err.line, err.text);
        for (size_t i = 0; i < json_array_size(arr); i++) emit(c, json_array_get(arr, i), name, 0, (int64_t)i);
        json_decref(arr);
    } else {
        import_lines(c, name, text, n);
    }
    free(text);
}

void import_files(int fmt, const char *task, const char *const *files, int n, rec_writer *w, int quiet) {
    import_ctx c = {0};
    c.fmt = fmt;
    c.task = task;
    c.w = w;
    for (int i = 0; i < n; i++) import_one(&c, files[i]);
    for (int k = 0; k < c.nlayout && !quiet; k++)
        wdl_warn("read %lld %s record(s) in the %s layout", (long long)c.layout_n[k], import_format_name(fmt),
                 c.layout[k]);
    if (c.no_completion)
        wdl_warn("%lld of %lld %s record(s) have no completion (their equation does not give the answer)",
                 (long long)c.no_completion, (long long)c.pos, import_format_name(fmt));
    free(c.seen);
}
