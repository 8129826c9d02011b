/* template.c: see template.h. */
#include "template.h"
#include <stdlib.h>
#include <string.h>

wdl_template tpl_from_name(const char *name) {
    if (name && !strcmp(name, "plain")) return TPL_PLAIN;
    if (name && !strcmp(name, "chatml")) return TPL_CHATML;
    die("unknown template '%s' (plain or chatml)", name ? name : "");
}

const char *tpl_name(wdl_template t) { return t == TPL_CHATML ? "chatml" : "plain"; }

static int32_t need(const wdl_tokenizer *t, const char *name, wdl_template tpl) {
    int32_t id = tok_special(t, name);
    if (id < 0) die("the tokenizer has no %s token (the %s template needs it)", name, tpl_name(tpl));
    return id;
}

int32_t tpl_end_id(const wdl_tokenizer *t, wdl_template tpl) {
    return need(t, tpl == TPL_CHATML ? "<|im_end|>" : "<|endoftext|>", tpl);
}

typedef struct { char *s; size_t n, cap; } sbuf;
static void sb_add(sbuf *b, const char *s) {
    size_t l = strlen(s);
    if (b->n + l + 1 > b->cap) { b->cap = 2 * (b->n + l + 1); b->s = xrealloc(b->s, b->cap); }
    memcpy(b->s + b->n, s, l + 1);
    b->n += l;
}

/* Text between two markers, encoded as one piece (as HF does for the text
 * between added tokens). */
static void enc_text(const wdl_tokenizer *t, const char *a, const char *b, ivec *ids) {
    sbuf s = {0};
    sb_add(&s, a);
    sb_add(&s, b ? b : "");
    tok_encode(t, s.s, s.n, 0, ids);
    free(s.s);
}

/* The last piece holds the end of the prompt (its first plen bytes) and the
 * completion. It is encoded whole, so a token may straddle the boundary;
 * the prompt part is the leading tokens whose bytes all come before it
 * (measured after normalization, by encoding the prompt part alone). */
static size_t enc_boundary(const wdl_tokenizer *t, const char *text, size_t plen, size_t len, ivec *ids) {
    ivec p = {0};
    tok_encode(t, text, plen, 0, &p);
    size_t pbytes = 0, l;
    for (size_t i = 0; i < p.n; i++)
        if (tok_id_bytes(t, p.v[i], NULL, &l)) pbytes += l;
    ivec_free(&p);
    size_t k = ids->n, cum = 0;
    tok_encode(t, text, len, 0, ids);
    for (; k < ids->n; k++) {
        if (!tok_id_bytes(t, ids->v[k], NULL, &l) || cum + l > pbytes) break;
        cum += l;
    }
    return k;
}

void tpl_encode(const wdl_tokenizer *t, wdl_template tpl, const char *system, const char *prompt,
                const char *completion, ivec *ids, size_t *n_prompt) {
    sbuf last = {0};
    ids->n = 0;
    if (!prompt) prompt = "";
    if (tpl == TPL_CHATML) {
        int32_t st = need(t, "<|im_start|>", tpl), en = need(t, "<|im_end|>", tpl);
        if (system) {
            ivec_push(ids, st);
            enc_text(t, "system\n", system, ids);
            ivec_push(ids, en);
            enc_text(t, "\n", NULL, ids);
        }
        ivec_push(ids, st);
        enc_text(t, "user\n", prompt, ids);
        ivec_push(ids, en);
        enc_text(t, "\n", NULL, ids);
        ivec_push(ids, st);
        sb_add(&last, "assistant\n");
    } else {
        if (system) { sb_add(&last, system); sb_add(&last, "\n\n"); }
        sb_add(&last, "Question: ");
        sb_add(&last, prompt);
        sb_add(&last, "\nAnswer: ");
    }
    if (!completion) {
        tok_encode(t, last.s, last.n, 0, ids);
        *n_prompt = ids->n;
    } else {
        size_t plen = last.n;
        int32_t end = tpl_end_id(t, tpl);
        sb_add(&last, completion);
        *n_prompt = enc_boundary(t, last.s, plen, last.n, ids);
        ivec_push(ids, end);
    }
    free(last.s);
}
