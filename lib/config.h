/* config.h: a Qwen3 model configuration, read from and written to a
 * Hugging Face config.json (plus two wdl fields: wdl_tokenizer, wdl_template). */
#ifndef WDL_CONFIG_H
#define WDL_CONFIG_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t hidden;      /* hidden_size */
    int64_t inter;       /* intermediate_size */
    int64_t layers;      /* num_hidden_layers */
    int64_t heads;       /* num_attention_heads */
    int64_t kv_heads;    /* num_key_value_heads (divides heads) */
    int64_t head_dim;    /* head_dim (independent of hidden/heads) */
    int64_t vocab;       /* vocab_size */
    int64_t max_pos;     /* max_position_embeddings */
    double eps;          /* rms_norm_eps */
    double theta;        /* rope_theta */
    double init_std;     /* initializer_range: wdl-init's default std */
    int tied;            /* tie_word_embeddings */
    int64_t bos_id, eos_id;  /* -1 when absent */
    char tokenizer[16];  /* "byte" or "hf" (tokenizer.json beside config) */
    char template_name[16]; /* "plain" or "chatml" */
} wdl_config;

/* Parse config.json text; `origin` names it in errors. Dies on a missing
 * required field, a wrong type, an unsupported value (model_type other than
 * qwen3, hidden_act other than silu, attention_bias true, rope_scaling set,
 * heads not a multiple of kv_heads, non-positive sizes). */
void config_parse(const char *text, const char *origin, wdl_config *c);
/* The same without dying: returns nonzero with "<origin>: <field>: <why>"
 * in err (fuzzers, tools that recover); c is untouched on failure. */
int config_parse_err(const char *text, const char *origin, wdl_config *c, char *err, size_t errlen);
/* Load from a config.json path or a model directory holding one. */
void config_load(const char *path, wdl_config *c);
/* Preset by name (data/presets, compiled in); dies listing the names. */
void config_preset(const char *name, wdl_config *c);
/* Whether a built-in preset has this name. */
int config_preset_known(const char *name);
/* Write config.json (HF fields + wdl fields) to an open directory path. */
void config_save(const char *dir, const wdl_config *c);
#endif
