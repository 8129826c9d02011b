/* checkpoint.c: see checkpoint.h. */
#include "checkpoint.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"

static wdl_model *dir_open(wdl_model *m, const char *dir, wdl_tokenizer **tok, wdl_template *tpl);

wdl_model *model_dir_open(const char *dir, wdl_tokenizer **tok, wdl_template *tpl) {
    return dir_open(model_load(dir), dir, tok, tpl);
}

wdl_model *model_dir_open_forward(const char *dir, wdl_tokenizer **tok, wdl_template *tpl) {
    return dir_open(model_load_forward(dir), dir, tok, tpl);
}

wdl_model *model_dir_open_decode(const char *dir, wdl_tokenizer **tok, wdl_template *tpl, int copy) {
    return dir_open(model_load_decode(dir, copy), dir, tok, tpl);
}

static wdl_model *dir_open(wdl_model *m, const char *dir, wdl_tokenizer **tok, wdl_template *tpl) {
    *tok = tok_load(dir);
    if (tok_vocab_size(*tok) > m->cfg.vocab)
        die("%s: tokenizer has %lld ids but vocab_size is %lld", dir, (long long)tok_vocab_size(*tok),
            (long long)m->cfg.vocab);
    *tpl = tpl_from_name(m->cfg.template_name);
    return m;
}

void ckpt_write_model(const wdl_model *m, const char *src_dir, const char *dir, int bf16) {
    wdl_mkdirs(dir);
    model_write_dir(m, dir, bf16);
    model_copy_tokenizer(src_dir, dir);
}

static void save_side(const wdl_model *m, const char *src, const char *dir) {
    ckpt_write_model(m, src, dir, 0);
    char *p = wdl_path_join(dir, "optimizer.safetensors");
    model_write_role(m, m->m, p, "m.");
    char *q = wdl_path_join(dir, "optimizer_v.safetensors");
    model_write_role(m, m->v, q, "v.");
    free(p); free(q);
}

void ckpt_save(const char *ckpt, const wdl_model *s, const char *s_src, const wdl_model *w, const char *w_src,
               int64_t step, const ckpt_run *run, const dataset *d) {
    char *tmp = wdl_tmp_name(ckpt);
    wdl_rmtree(tmp);
    wdl_tmp_register(tmp);
    save_side(s, s_src, tmp);
    if (w) {
        char *wd = wdl_path_join(tmp, "weak");
        save_side(w, w_src, wd);
        free(wd);
    }
    json_t *j = json_pack("{s:I,s:I,s:I,s:I,s:s,s:I}", "step", (json_int_t)step, "total_steps",
                          (json_int_t)run->total, "seed", (json_int_t)run->seed, "global_batch",
                          (json_int_t)run->global_batch, "data_hash", "", "examples", (json_int_t)d->n);
    if (run->neftune > 0) json_object_set_new(j, "neftune_alpha", json_real(run->neftune));
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)d->hash);
    json_object_set_new(j, "data_hash", json_string(hash));
    char *tj = wdl_path_join(tmp, "trainer.json");
    if (json_dump_file(j, tj, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) die("%s: cannot write", tj);
    json_decref(j);
    free(tj);
    wdl_commit(tmp, ckpt);
    free(tmp);
}

static void load_side(wdl_model *m, const char *dir) {
    wdl_model *c = model_load(dir);
    if (c->nparams != m->nparams) die("%s: checkpoint does not match the model's config", dir);
    memcpy(m->params, c->params, m->nparams * sizeof(float));
    model_free(c);
    char *p = wdl_path_join(dir, "optimizer.safetensors"), *q = wdl_path_join(dir, "optimizer_v.safetensors");
    model_read_role(m, m->m, p, "m.");
    model_read_role(m, m->v, q, "v.");
    free(p); free(q);
}

/* trainer.json's integer `key`: a missing or mistyped one is a damaged
 * checkpoint, not step 0 (json_integer_value's answer for it) */
static int64_t need_int(const json_t *j, const char *key, const char *tj) {
    const json_t *v = json_object_get(j, key);
    if (!json_is_integer(v)) die("%s: \"%s\" is missing or not an integer (a damaged checkpoint)", tj, key);
    return json_integer_value(v);
}

int64_t ckpt_load(const char *ckpt, wdl_model *s, wdl_model *w, const ckpt_run *run, const dataset *d) {
    const int64_t total = run->total, seed = run->seed, global_batch = run->global_batch;
    char *tj = wdl_path_join(ckpt, "trainer.json");
    json_error_t e;
    json_t *j = json_load_file(tj, 0, &e);
    if (!j) die("%s:%d: %s", tj, e.line, e.text);
    if (!json_is_object(j)) die("%s: not a JSON object (a damaged checkpoint)", tj);
    int64_t step = need_int(j, "step", tj);
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)d->hash);
    const char *h = json_string_value(json_object_get(j, "data_hash"));
    if (!h || strcmp(h, hash)) die("%s: checkpoint was made on different training data", tj);
    if (need_int(j, "total_steps", tj) != total || need_int(j, "seed", tj) != seed)
        die("%s: checkpoint was made with a different --seed or number of steps", tj);
    /* ranks x --batch x --accum may be split differently, not changed */
    json_t *gb = json_object_get(j, "global_batch");
    if (gb && need_int(j, "global_batch", tj) != global_batch)
        die("%s: checkpoint was made with %lld sequences per step, this run has %lld (ranks x --batch x --accum)",
            tj, (long long)json_integer_value(gb), (long long)global_batch);
    /* a checkpoint from before NEFTune, or without it: alpha 0 */
    const json_t *na = json_object_get(j, "neftune_alpha");
    if (na && !json_is_number(na)) die("%s: \"neftune_alpha\" is not a number (a damaged checkpoint)", tj);
    const double alpha = na ? json_number_value(na) : 0;
    if (alpha != run->neftune)
        die("%s: checkpoint was made with --neftune %g, this run has %g", tj, alpha, run->neftune);
    if (step < 0 || step > total) die("%s: bad step %lld", tj, (long long)step);
    json_decref(j);
    free(tj);
    load_side(s, ckpt);
    if (w) {
        char *wd = wdl_path_join(ckpt, "weak");
        load_side(w, wd);
        free(wd);
    }
    return step;
}
