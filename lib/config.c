/* config.c: see config.h. Parsing is done by config_parse_err, which
 * returns an error message instead of dying so that the fuzzer can drive
 * it; config_parse wraps it with die(). Unknown fields are ignored (HF
 * configs carry many); a known field with a wrong type or an unsupported
 * value is an error naming the field. */
#include "config.h"
#include "common.h"
#include "presets.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int config_parse_err(const char *text, const char *origin, wdl_config *c, char *err, size_t errlen);

/* Caps that keep every tensor index below 2^31 and sizes sane. */
#define MAX_DIM (1LL << 20)
#define MAX_VOCAB (1LL << 24)
#define MAX_LAYERS 4096
#define MAX_HEADS 4096
#define MAX_POS (1LL << 24)
#define MAX_ELEMS 2147483647LL

typedef struct {
    const char *origin;
    const json_t *root;
    char *err;
    size_t errlen;
} ctx;

static int fail(ctx *x, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ctx *x, const char *field, const char *fmt, ...) {
    if (!x->err || !x->errlen) return -1;
    int k = snprintf(x->err, x->errlen, "%s: %s: ", x->origin, field);
    if (k >= 0 && (size_t)k < x->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(x->err + k, x->errlen - k, fmt, ap);
        va_end(ap);
    }
    for (char *p = x->err; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?';
    return -1;
}

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* A field's value; NULL when absent (JSON null counts as absent when
 * null_ok). */
static const json_t *field(ctx *x, const char *name, int null_ok) {
    const json_t *v = json_object_get(x->root, name);
    if (v && null_ok && json_is_null(v)) return NULL;
    return v;
}

/* Integer in [lo, hi]; *out untouched when absent and not required. */
static int get_int(ctx *x, const char *name, int required, int64_t lo, int64_t hi, int64_t *out) {
    const json_t *v = field(x, name, !required);
    if (!v) return required ? fail(x, name, "missing (required)") : 0;
    if (!json_is_integer(v)) return fail(x, name, "must be an integer, not %s", type_name(v));
    long long i = json_integer_value(v);
    if (i < lo && lo == 1) return fail(x, name, "must be positive, got %lld", i);
    if (i < lo) return fail(x, name, "must be at least %lld, got %lld", (long long)lo, i);
    if (i > hi) return fail(x, name, "%lld is above the limit of %lld", i, (long long)hi);
    *out = i;
    return 0;
}

static int get_real(ctx *x, const char *name, const json_t *v, double *out) {
    if (!v) return 0;
    if (!json_is_number(v)) return fail(x, name, "must be a number, not %s", type_name(v));
    double d = json_number_value(v);
    if (!(d > 0) || !isfinite(d)) return fail(x, name, "must be a positive number, got %g", d);
    *out = d;
    return 0;
}

static int get_bool(ctx *x, const char *name, int *out) {
    const json_t *v = field(x, name, 1);
    if (!v) return 0;
    if (!json_is_boolean(v)) return fail(x, name, "must be true or false, not %s", type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* A string field among `allowed` (NULL-terminated); *out untouched when absent. */
static int get_choice(ctx *x, const char *name, const char *const *allowed, const char *what,
                      char *out, size_t cap) {
    const json_t *v = field(x, name, 1);
    if (!v) return 0;
    if (!json_is_string(v)) return fail(x, name, "must be a string, not %s", type_name(v));
    const char *s = json_string_value(v);
    for (size_t i = 0; allowed[i]; i++)
        if (!strcmp(s, allowed[i])) { snprintf(out, cap, "%s", s); return 0; }
    char shown[64];
    snprintf(shown, sizeof shown, "%s", s);
    return fail(x, name, "'%s' is not supported (%s)", shown, what);
}

/* bos/eos: an integer, null, or (as HF allows) a list whose first entry is used. */
static int get_token(ctx *x, const char *name, int64_t vocab, int64_t *out) {
    const json_t *v = field(x, name, 1);
    *out = -1;
    if (!v) return 0;
    if (json_is_array(v)) {
        if (json_array_size(v) == 0) return fail(x, name, "empty list");
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_integer(e)) return fail(x, name, "list entry %zu must be an integer, not %s", i, type_name(e));
            if (json_integer_value(e) < 0 || json_integer_value(e) >= vocab)
                return fail(x, name, "token id %lld outside the vocabulary [0, %lld)",
                            (long long)json_integer_value(e), (long long)vocab);
        }
        v = json_array_get(v, 0);
    }
    if (!json_is_integer(v)) return fail(x, name, "must be an integer or null, not %s", type_name(v));
    long long id = json_integer_value(v);
    if (id < 0 || id >= vocab)
        return fail(x, name, "token id %lld outside the vocabulary [0, %lld)", id, (long long)vocab);
    *out = id;
    return 0;
}

/* Fields that select features we do not implement must keep their
 * default (or be absent). */
static int check_unsupported(ctx *x, const wdl_config *c) {
    const json_t *v;
    if ((v = field(x, "hidden_act", 1))) {
        if (!json_is_string(v)) return fail(x, "hidden_act", "must be a string, not %s", type_name(v));
        if (strcmp(json_string_value(v), "silu")) {
            char s[64];
            snprintf(s, sizeof s, "%s", json_string_value(v));
            return fail(x, "hidden_act", "'%s' is not supported (only silu)", s);
        }
    }
    int flag = 0;
    if (get_bool(x, "attention_bias", &flag)) return -1;
    if (flag) return fail(x, "attention_bias", "true is not supported (Qwen3 has no attention bias)");
    flag = 0;
    if (get_bool(x, "use_sliding_window", &flag)) return -1;
    if (flag) return fail(x, "use_sliding_window", "true is not supported (full attention only)");
    if ((v = field(x, "rope_scaling", 1))) return fail(x, "rope_scaling", "must be null (RoPE scaling is not supported)");
    if ((v = field(x, "attention_dropout", 1))) {
        if (!json_is_number(v)) return fail(x, "attention_dropout", "must be a number, not %s", type_name(v));
        if (json_number_value(v) != 0) return fail(x, "attention_dropout", "must be 0 (dropout is not supported)");
    }
    if ((v = field(x, "layer_types", 1))) {
        if (!json_is_array(v)) return fail(x, "layer_types", "must be an array, not %s", type_name(v));
        if ((int64_t)json_array_size(v) != c->layers)
            return fail(x, "layer_types", "has %zu entries for %lld layers", json_array_size(v), (long long)c->layers);
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_string(e) || strcmp(json_string_value(e), "full_attention"))
                return fail(x, "layer_types", "entry %zu is not \"full_attention\" (only full attention is supported)", i);
        }
    }
    return 0;
}

/* rope_theta, or the newer rope_parameters object that carries it. */
static int get_rope(ctx *x, wdl_config *c) {
    if (get_real(x, "rope_theta", field(x, "rope_theta", 1), &c->theta)) return -1;
    const json_t *rp = field(x, "rope_parameters", 1);
    if (!rp) return 0;
    if (!json_is_object(rp)) return fail(x, "rope_parameters", "must be an object, not %s", type_name(rp));
    const json_t *t = json_object_get(rp, "rope_type");
    if (t && !json_is_null(t) && (!json_is_string(t) || strcmp(json_string_value(t), "default")))
        return fail(x, "rope_parameters", "rope_type must be \"default\" (RoPE scaling is not supported)");
    return get_real(x, "rope_parameters.rope_theta", json_object_get(rp, "rope_theta"), &c->theta);
}

static int check_products(ctx *x, const wdl_config *c) {
    struct { const char *what; int64_t a, b; } p[] = {
        {"vocab_size x hidden_size", c->vocab, c->hidden},
        {"intermediate_size x hidden_size", c->inter, c->hidden},
        {"num_attention_heads x head_dim x hidden_size", c->heads * c->head_dim, c->hidden},
        {"num_key_value_heads x head_dim x hidden_size", c->kv_heads * c->head_dim, c->hidden},
    };
    for (size_t i = 0; i < sizeof p / sizeof *p; i++)
        if (p[i].a > MAX_ELEMS / p[i].b)
            return fail(x, p[i].what, "%lld x %lld elements in one tensor is above the limit of 2^31-1",
                        (long long)p[i].a, (long long)p[i].b);
    return 0;
}

static int parse_fields(ctx *x, wdl_config *c) {
    const json_t *mt = field(x, "model_type", 0);
    if (!mt) return fail(x, "model_type", "missing (required)");
    if (!json_is_string(mt)) return fail(x, "model_type", "must be a string, not %s", type_name(mt));
    if (strcmp(json_string_value(mt), "qwen3")) {
        char s[64];
        snprintf(s, sizeof s, "%s", json_string_value(mt));
        return fail(x, "model_type", "'%s' is not supported (only qwen3)", s);
    }
    if (get_int(x, "hidden_size", 1, 1, MAX_DIM, &c->hidden) ||
        get_int(x, "intermediate_size", 1, 1, MAX_DIM, &c->inter) ||
        get_int(x, "num_hidden_layers", 1, 1, MAX_LAYERS, &c->layers) ||
        get_int(x, "num_attention_heads", 1, 1, MAX_HEADS, &c->heads) ||
        get_int(x, "num_key_value_heads", 1, 1, MAX_HEADS, &c->kv_heads) ||
        get_int(x, "vocab_size", 1, 1, MAX_VOCAB, &c->vocab))
        return -1;
    if (c->heads % c->kv_heads)
        return fail(x, "num_key_value_heads", "%lld does not divide num_attention_heads (%lld)",
                    (long long)c->kv_heads, (long long)c->heads);
    c->head_dim = 0;
    if (get_int(x, "head_dim", 0, 1, MAX_DIM, &c->head_dim)) return -1;
    if (!c->head_dim) {
        if (c->hidden % c->heads)
            return fail(x, "head_dim", "missing, and hidden_size (%lld) is not a multiple of num_attention_heads (%lld)",
                        (long long)c->hidden, (long long)c->heads);
        c->head_dim = c->hidden / c->heads;
    }
    if (c->head_dim % 2) return fail(x, "head_dim", "must be even for RoPE, got %lld", (long long)c->head_dim);
    if (check_products(x, c)) return -1;
    c->max_pos = 32768;
    c->eps = 1e-6;
    c->theta = 10000.0;
    c->init_std = 0.02;
    c->tied = 0;
    if (get_int(x, "max_position_embeddings", 0, 1, MAX_POS, &c->max_pos) ||
        get_real(x, "rms_norm_eps", field(x, "rms_norm_eps", 1), &c->eps) || get_rope(x, c) ||
        get_real(x, "initializer_range", field(x, "initializer_range", 1), &c->init_std) ||
        get_bool(x, "tie_word_embeddings", &c->tied) || get_token(x, "bos_token_id", c->vocab, &c->bos_id) ||
        get_token(x, "eos_token_id", c->vocab, &c->eos_id) || check_unsupported(x, c))
        return -1;
    if (c->eps >= 1) return fail(x, "rms_norm_eps", "must be below 1, got %g", c->eps);
    static const char *const toks[] = {"byte", "hf", NULL}, *const tmpls[] = {"plain", "chatml", NULL};
    snprintf(c->tokenizer, sizeof c->tokenizer, "hf");
    if (get_choice(x, "wdl_tokenizer", toks, "byte or hf", c->tokenizer, sizeof c->tokenizer)) return -1;
    snprintf(c->template_name, sizeof c->template_name, "%s", strcmp(c->tokenizer, "byte") ? "chatml" : "plain");
    return get_choice(x, "wdl_template", tmpls, "plain or chatml", c->template_name, sizeof c->template_name);
}

int config_parse_err(const char *text, const char *origin, wdl_config *c, char *err, size_t errlen) {
    json_error_t je;
    ctx x = {origin, NULL, err, errlen};
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (err && errlen) {
            snprintf(err, errlen, "%s:%d: invalid JSON: %s", origin, je.line, je.text);
            for (char *p = err; *p; p++)  /* jansson quotes the input */
                if ((unsigned char)*p < 0x20) *p = '?';
        }
        return -1;
    }
    int rc;
    wdl_config tmp;
    memset(&tmp, 0, sizeof tmp);
    if (!json_is_object(root)) {
        if (err && errlen) snprintf(err, errlen, "%s: not a JSON object", origin);
        rc = -1;
    } else {
        x.root = root;
        rc = parse_fields(&x, &tmp);
    }
    json_decref(root);
    if (!rc) *c = tmp;
    return rc;
}

void config_parse(const char *text, const char *origin, wdl_config *c) {
    char err[512];
    if (config_parse_err(text, origin, c, err, sizeof err)) die("%s", err);
}

void config_load(const char *path, wdl_config *c) {
    char *file = wdl_is_dir(path) ? wdl_path_join(path, "config.json") : xstrdup(path);
    char *text = wdl_read_file(file, NULL);
    config_parse(text, file, c);
    free(text);
    free(file);
}

int config_preset_known(const char *name) {
    for (size_t i = 0; wdl_preset_names[i]; i++)
        if (!strcmp(wdl_preset_names[i], name)) return 1;
    return 0;
}

void config_preset(const char *name, wdl_config *c) {
    char known[256] = "";
    for (size_t i = 0; wdl_preset_names[i]; i++) {
        if (!strcmp(wdl_preset_names[i], name)) {
            char origin[96];
            snprintf(origin, sizeof origin, "preset %s", name);
            config_parse(wdl_preset_texts[i], origin, c);
            return;
        }
        size_t k = strlen(known);
        snprintf(known + k, sizeof known - k, "%s%s", k ? ", " : "", wdl_preset_names[i]);
    }
    die("unknown preset '%s' (known: %s)", name, known);
}

/* Shortest text that reads back as exactly v, always with a '.' or an
 * exponent so that Python reads a float. */
static void fmt_real(char *buf, size_t cap, double v) {
    if (v == floor(v) && fabs(v) < 1e15) { snprintf(buf, cap, "%.1f", v); return; }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".e")) snprintf(buf + strlen(buf), cap - strlen(buf), ".0");
}

static char *config_text(const wdl_config *c) {
    char eps[40], theta[40], std[40], bos[24], eos[24];
    fmt_real(eps, sizeof eps, c->eps);
    fmt_real(theta, sizeof theta, c->theta);
    fmt_real(std, sizeof std, c->init_std);
    if (c->bos_id >= 0) snprintf(bos, sizeof bos, "%lld", (long long)c->bos_id); else snprintf(bos, sizeof bos, "null");
    if (c->eos_id >= 0) snprintf(eos, sizeof eos, "%lld", (long long)c->eos_id); else snprintf(eos, sizeof eos, "null");
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) die("out of memory");
    fprintf(f,
            "{\n"
            "  \"architectures\": [\"Qwen3ForCausalLM\"],\n"
            "  \"model_type\": \"qwen3\",\n"
            "  \"hidden_size\": %lld,\n"
            "  \"intermediate_size\": %lld,\n"
            "  \"num_hidden_layers\": %lld,\n"
            "  \"num_attention_heads\": %lld,\n"
            "  \"num_key_value_heads\": %lld,\n"
            "  \"head_dim\": %lld,\n"
            "  \"vocab_size\": %lld,\n"
            "  \"max_position_embeddings\": %lld,\n"
            "  \"rms_norm_eps\": %s,\n"
            "  \"rope_theta\": %s,\n"
            "  \"rope_scaling\": null,\n"
            "  \"tie_word_embeddings\": %s,\n"
            "  \"hidden_act\": \"silu\",\n"
            "  \"attention_bias\": false,\n"
            "  \"attention_dropout\": 0.0,\n"
            "  \"use_sliding_window\": false,\n"
            "  \"initializer_range\": %s,\n"
            "  \"bos_token_id\": %s,\n"
            "  \"eos_token_id\": %s,\n"
            "  \"torch_dtype\": \"float32\",\n"
            "  \"use_cache\": true,\n"
            "  \"wdl_tokenizer\": \"%s\",\n"
            "  \"wdl_template\": \"%s\"\n"
            "}\n",
            (long long)c->hidden, (long long)c->inter, (long long)c->layers, (long long)c->heads,
            (long long)c->kv_heads, (long long)c->head_dim, (long long)c->vocab, (long long)c->max_pos, eps, theta,
            c->tied ? "true" : "false", std, bos, eos, c->tokenizer, c->template_name);
    fclose(f);
    return s;
}

void config_save(const char *dir, const wdl_config *c) {
    char *text = config_text(c), err[512];
    wdl_config back;
    /* never write a config we would refuse to read */
    if (config_parse_err(text, "config to save", &back, err, sizeof err)) die("%s", err);
    char *final = wdl_path_join(dir, "config.json"), *tmp = wdl_tmp_name(final);
    wdl_tmp_register(tmp);
    FILE *f = fopen(tmp, "w");
    if (!f) die("%s: cannot create: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    if (fwrite(text, 1, n, f) != n || fflush(f) != 0 || fsync(fileno(f)) != 0)
        die("%s: write error: %s", final, strerror(errno));
    if (fclose(f) != 0) die("%s: write error: %s", final, strerror(errno));
    wdl_commit(tmp, final);
    free(tmp);
    free(final);
    free(text);
}
