/* Tests of lib/config: presets, a real Qwen3-0.6B config.json, HF
 * defaults, every rejected value (each message must name the field), the
 * dying API (forked), and config_save -> config_load round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"
#include "testutil.h"
#include "config.h"
#include "presets.h"

/* non-dying parser (lib/config.c) */


static const char *QWEN3_06B =
    "{\n"
    "  \"architectures\": [\"Qwen3ForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 151643,\n"
    "  \"eos_token_id\": 151645,\n"
    "  \"head_dim\": 128,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 1024,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 3072,\n"
    "  \"max_position_embeddings\": 40960,\n"
    "  \"max_window_layers\": 28,\n"
    "  \"model_type\": \"qwen3\",\n"
    "  \"num_attention_heads\": 16,\n"
    "  \"num_hidden_layers\": 28,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_scaling\": null,\n"
    "  \"rope_theta\": 1000000,\n"
    "  \"sliding_window\": null,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.51.0\",\n"
    "  \"use_cache\": true,\n"
    "  \"use_sliding_window\": false,\n"
    "  \"vocab_size\": 151936\n"
    "}\n";

static void same_config(const wdl_config *a, const wdl_config *b) {
    assert_int_equal(a->hidden, b->hidden);
    assert_int_equal(a->inter, b->inter);
    assert_int_equal(a->layers, b->layers);
    assert_int_equal(a->heads, b->heads);
    assert_int_equal(a->kv_heads, b->kv_heads);
    assert_int_equal(a->head_dim, b->head_dim);
    assert_int_equal(a->vocab, b->vocab);
    assert_int_equal(a->max_pos, b->max_pos);
    assert_true(a->eps == b->eps);
    assert_true(a->theta == b->theta);
    assert_true(a->init_std == b->init_std);
    assert_int_equal(a->tied, b->tied);
    assert_int_equal(a->bos_id, b->bos_id);
    assert_int_equal(a->eos_id, b->eos_id);
    assert_string_equal(a->tokenizer, b->tokenizer);
    assert_string_equal(a->template_name, b->template_name);
}

static void test_qwen3_06b(void **s) {
    (void)s;
    wdl_config c;
    config_parse(QWEN3_06B, "Qwen3-0.6B/config.json", &c);
    assert_int_equal(c.hidden, 1024);
    assert_int_equal(c.inter, 3072);
    assert_int_equal(c.layers, 28);
    assert_int_equal(c.heads, 16);
    assert_int_equal(c.kv_heads, 8);
    assert_int_equal(c.head_dim, 128);  /* not hidden/heads = 64 */
    assert_int_equal(c.vocab, 151936);
    assert_int_equal(c.max_pos, 40960);
    assert_true(c.eps == 1e-6);
    assert_true(c.theta == 1000000.0);
    assert_int_equal(c.tied, 1);
    assert_int_equal(c.bos_id, 151643);
    assert_int_equal(c.eos_id, 151645);
    assert_string_equal(c.tokenizer, "hf");
    assert_string_equal(c.template_name, "chatml");
}

static void test_presets(void **s) {
    (void)s;
    int n = 0;
    for (size_t i = 0; wdl_preset_names[i]; i++, n++) {
        wdl_config c;
        config_preset(wdl_preset_names[i], &c);
        assert_true(c.hidden > 0 && c.layers > 0 && c.heads % c.kv_heads == 0 && c.head_dim % 2 == 0);
        assert_string_equal(c.tokenizer, "byte");
        assert_string_equal(c.template_name, "plain");
    }
    assert_true(n >= 3);
    wdl_config c;
    config_preset("nano", &c);
    assert_int_equal(c.hidden, 128);
    assert_int_equal(c.inter, 384);
    assert_int_equal(c.layers, 4);
    assert_int_equal(c.heads, 4);
    assert_int_equal(c.kv_heads, 2);
    assert_int_equal(c.head_dim, 32);
    assert_int_equal(c.vocab, 272);
    assert_int_equal(c.max_pos, 512);
    assert_int_equal(c.tied, 1);
    assert_int_equal(c.bos_id, 256);
    config_preset("small", &c);
    assert_int_equal(c.hidden, 512);
    assert_int_equal(c.tied, 0);
    config_preset("tiny", &c);
    assert_int_equal(c.hidden, 256);
}

#define REQ "\"model_type\": \"qwen3\", \"hidden_size\": 64, \"intermediate_size\": 96, " \
            "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 300"

static void test_defaults(void **s) {
    (void)s;
    wdl_config c;
    config_parse("{" REQ "}", "min.json", &c);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.max_pos, 32768);
    assert_true(c.eps == 1e-6);
    assert_true(c.theta == 10000.0);
    assert_true(c.init_std == 0.02);
    assert_int_equal(c.tied, 0);
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.eos_id, -1);
    assert_string_equal(c.tokenizer, "hf");
    assert_string_equal(c.template_name, "chatml");
    config_parse("{" REQ ", \"wdl_tokenizer\": \"byte\", \"head_dim\": null, \"bos_token_id\": null,"
                 " \"eos_token_id\": [7, 9], \"unknown_field\": {\"x\": [1]}}", "min.json", &c);
    assert_string_equal(c.tokenizer, "byte");
    assert_string_equal(c.template_name, "plain");
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.eos_id, 7);
    config_parse("{" REQ ", \"wdl_tokenizer\": \"byte\", \"wdl_template\": \"chatml\"}", "min.json", &c);
    assert_string_equal(c.template_name, "chatml");
    /* transformers v5 moves rope_theta into rope_parameters */
    config_parse("{" REQ ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 5e5}}", "min.json", &c);
    assert_true(c.theta == 5e5);
}

static void test_bad_values(void **s) {
    (void)s;
    static const struct { const char *text; const char *field; const char *what; } bad[] = {
        {"{\"model_type\": \"llama\", \"hidden_size\": 64}", "model_type", "'llama' is not supported"},
        {"{\"hidden_size\": 64}", "model_type", "missing"},
        {"{\"model_type\": 3}", "model_type", "must be a string"},
        {"{\"model_type\": \"qwen3\", \"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 2,"
         " \"num_attention_heads\": 4, \"num_key_value_heads\": 2}", "vocab_size", "missing (required)"},
        {"{\"model_type\": \"qwen3\", \"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 2,"
         " \"num_attention_heads\": 16, \"num_key_value_heads\": 5, \"vocab_size\": 9}", "num_key_value_heads", "does not divide"},
        {"{\"model_type\": \"qwen3\", \"hidden_size\": -64}", "hidden_size", "must be positive, got -64"},
        {"{\"model_type\": \"qwen3\", \"hidden_size\": 0}", "hidden_size", "must be positive"},
        {"{\"model_type\": \"qwen3\", \"hidden_size\": \"1024\"}", "hidden_size", "must be an integer, not a string"},
        {"{\"model_type\": \"qwen3\", \"hidden_size\": 1024.5}", "hidden_size", "must be an integer, not a real number"},
        {"{\"model_type\": \"qwen3\", \"hidden_size\": null}", "hidden_size", "must be an integer, not null"},
        {"{\"model_type\": \"qwen3\", \"hidden_size\": 99999999999}", "hidden_size", "above the limit"},
        {"{" REQ ", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}}", "rope_scaling", "must be null"},
        {"{" REQ ", \"rope_parameters\": {\"rope_type\": \"yarn\"}}", "rope_parameters", "rope_type must be \"default\""},
        {"{" REQ ", \"rope_parameters\": {\"rope_theta\": \"big\"}}", "rope_parameters.rope_theta", "must be a number"},
        {"{" REQ ", \"hidden_act\": \"gelu\"}", "hidden_act", "'gelu' is not supported"},
        {"{" REQ ", \"attention_bias\": true}", "attention_bias", "true is not supported"},
        {"{" REQ ", \"attention_bias\": 0}", "attention_bias", "must be true or false"},
        {"{" REQ ", \"use_sliding_window\": true}", "use_sliding_window", "not supported"},
        {"{" REQ ", \"attention_dropout\": 0.1}", "attention_dropout", "must be 0"},
        {"{" REQ ", \"layer_types\": [\"full_attention\", \"sliding_attention\"]}", "layer_types", "entry 1"},
        {"{" REQ ", \"layer_types\": [\"full_attention\"]}", "layer_types", "1 entries for 2 layers"},
        {"{" REQ ", \"tie_word_embeddings\": \"yes\"}", "tie_word_embeddings", "must be true or false, not a string"},
        {"{" REQ ", \"rms_norm_eps\": \"x\"}", "rms_norm_eps", "must be a number"},
        {"{" REQ ", \"rms_norm_eps\": 0}", "rms_norm_eps", "must be a positive number"},
        {"{" REQ ", \"rms_norm_eps\": 2.0}", "rms_norm_eps", "must be below 1"},
        {"{" REQ ", \"rope_theta\": -1}", "rope_theta", "must be a positive number"},
        {"{" REQ ", \"initializer_range\": 0}", "initializer_range", "must be a positive number"},
        {"{" REQ ", \"initializer_range\": \"0.02\"}", "initializer_range", "must be a number, not a string"},
        {"{" REQ ", \"head_dim\": 63}", "head_dim", "must be even"},
        {"{" REQ ", \"head_dim\": 0}", "head_dim", "must be positive"},
        {"{\"model_type\": \"qwen3\", \"hidden_size\": 60, \"intermediate_size\": 96, \"num_hidden_layers\": 2,"
         " \"num_attention_heads\": 8, \"num_key_value_heads\": 2, \"vocab_size\": 9}", "head_dim", "not a multiple"},
        {"{" REQ ", \"max_position_embeddings\": -5}", "max_position_embeddings", "must be positive"},
        {"{" REQ ", \"eos_token_id\": 300}", "eos_token_id", "outside the vocabulary"},
        {"{" REQ ", \"bos_token_id\": \"<s>\"}", "bos_token_id", "must be an integer or null"},
        {"{" REQ ", \"eos_token_id\": []}", "eos_token_id", "empty list"},
        {"{" REQ ", \"eos_token_id\": [1, 1000]}", "eos_token_id", "outside the vocabulary"},
        {"{" REQ ", \"wdl_tokenizer\": \"sentencepiece\"}", "wdl_tokenizer", "'sentencepiece' is not supported (byte or hf)"},
        {"{" REQ ", \"wdl_template\": \"llama2\"}", "wdl_template", "not supported (plain or chatml)"},
        {"{" REQ ", \"wdl_template\": 1}", "wdl_template", "must be a string"},
        {"{\"model_type\": \"qwen3\", \"hidden_size\": 65536, \"intermediate_size\": 96, \"num_hidden_layers\": 2,"
         " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 151936}", "vocab_size x hidden_size",
         "above the limit of 2^31-1"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        wdl_config c;
        memset(&c, 0x5a, sizeof c);
        wdl_config before = c;
        if (!config_parse_err(bad[i].text, "m/config.json", &c, err, sizeof err))
            fail_msg("case %zu accepted: %s", i, bad[i].text);
        char want[128];
        snprintf(want, sizeof want, "m/config.json: %s", bad[i].field);
        if (strncmp(err, want, strlen(want)) || !strstr(err, bad[i].what))
            fail_msg("case %zu: got '%s', want '%s: ...%s'", i, err, want, bad[i].what);
        assert_memory_equal(&c, &before, sizeof c);  /* untouched on error */
    }
    /* syntax errors carry the line; non-objects are refused */
    wdl_config c;
    assert_int_not_equal(config_parse_err("{\n\"a\": 1,\n}", "x.json", &c, err, sizeof err), 0);
    assert_non_null(strstr(err, "x.json:3: invalid JSON"));
    assert_int_not_equal(config_parse_err("{" REQ ", \"num_key_value_heads\": 3}", "x.json", &c, err, sizeof err), 0);
    assert_non_null(strstr(err, "x.json:1: invalid JSON: duplicate object key"));
    assert_int_not_equal(config_parse_err("[1]", "x.json", &c, err, sizeof err), 0);
    assert_string_equal(err, "x.json: not a JSON object");
    assert_int_not_equal(config_parse_err("", "x.json", &c, err, sizeof err), 0);
}

static void parse_llama(void *p) {
    wdl_config c;
    config_parse("{\"model_type\": \"llama\"}", p, &c);
}
static void load_path(void *p) {
    wdl_config c;
    config_load(p, &c);
}
static void preset(void *p) {
    wdl_config c;
    config_preset(p, &c);
}
static void save_bad(void *p) {
    wdl_config c;
    config_preset("nano", &c);
    c.kv_heads = 3;
    config_save(p, &c);
}

static void test_die(void **s) {
    (void)s;
    expect_die(parse_llama, "Llama/config.json", "test_config: Llama/config.json: model_type: 'llama' is not supported", NULL);
    expect_die(load_path, "/nonexistent/config.json", "/nonexistent/config.json: cannot open", NULL);
    expect_die(preset, "huge", "unknown preset 'huge' (known: nano, small, tiny)", NULL);
    char *p = wdl_path_join(tmpdir, "bad.json");
    FILE *f = fopen(p, "w");
    fputs("{\"model_type\": \"qwen3\", \"hidden_size\": true}", f);
    fclose(f);
    expect_die(load_path, p, "bad.json: hidden_size: must be an integer, not a boolean", NULL);
    /* an invalid config is not written */
    char *d = wdl_path_join(tmpdir, "savebad");
    wdl_mkdirs(d);
    expect_die(save_bad, d, "num_key_value_heads", NULL);
    char *cj = wdl_path_join(d, "config.json");
    assert_false(wdl_exists(cj));
    free(cj); free(d); free(p);
}

static void test_save_load(void **s) {
    (void)s;
    wdl_config cs[5];
    config_parse(QWEN3_06B, "q", &cs[0]);
    config_preset("nano", &cs[1]);
    config_preset("small", &cs[2]);
    config_parse("{" REQ ", \"rms_norm_eps\": 1.2345678901234567e-5, \"rope_theta\": 12345.678, "
                 "\"initializer_range\": 0.0375}", "odd", &cs[3]);
    assert_true(cs[3].init_std == 0.0375);
    config_parse("{" REQ ", \"wdl_tokenizer\": \"byte\"}", "min", &cs[4]);
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "model%d", i);
        char *dir = wdl_path_join(tmpdir, name);
        wdl_mkdirs(dir);
        config_save(dir, &cs[i]);
        config_save(dir, &cs[i]);  /* replacing works */
        wdl_config back;
        config_load(dir, &back);  /* a directory */
        same_config(&cs[i], &back);
        char *file = wdl_path_join(dir, "config.json");
        config_load(file, &back);  /* or the file */
        same_config(&cs[i], &back);
        char *text = wdl_read_file(file, NULL);
        assert_non_null(strstr(text, "\"architectures\": [\"Qwen3ForCausalLM\"]"));
        assert_non_null(strstr(text, "\"torch_dtype\": \"float32\""));
        assert_non_null(strstr(text, "\"hidden_act\": \"silu\""));
        if (i == 0) {
            assert_non_null(strstr(text, "\"rms_norm_eps\": 1e-06,"));
            assert_non_null(strstr(text, "\"rope_theta\": 1000000.0,"));
            assert_non_null(strstr(text, "\"initializer_range\": 0.02,"));
        }
        if (i == 4) assert_non_null(strstr(text, "\"bos_token_id\": null"));
        DIR *dd = opendir(dir);
        struct dirent *e;
        int files = 0;
        while ((e = readdir(dd)))
            if (e->d_name[0] != '.') files++;
            else assert_null(strstr(e->d_name, ".tmp."));
        closedir(dd);
        assert_int_equal(files, 1);
        free(text); free(file); free(dir);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    wdl_set_prog(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_06b), cmocka_unit_test(test_presets),  cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_values), cmocka_unit_test(test_die),     cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
