/* wdl-init: a freshly initialised Qwen3 model directory from a preset or a
 * config.json, with its tokenizer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common.h"
#include "config.h"
#include "model.h"
#include "presets.h"
#include "tokenizer.h"

static const char *usage =
    "usage: wdl-init (--preset NAME | --config config.json) -o DIR [options]\n"
    "Write a new model directory DIR (config.json, model.safetensors, tokenizer)\n"
    "with weights drawn as Hugging Face initialises Qwen3: every matrix from\n"
    "N(0, std^2) (std = --std, else the config's initializer_range, else 0.02),\n"
    "every norm weight 1.\n"
    "  --preset NAME      a built-in config (see --list)\n"
    "  --config FILE      a Hugging Face Qwen3 config.json (or its directory)\n"
    "  --tokenizer T      'byte' (256 bytes + specials) or a tokenizer.json / model\n"
    "                     directory to copy (default: what the config names)\n"
    "  --template NAME    prompt template: plain or chatml (default: from the config)\n"
    "  --seed S           initialisation seed (0)\n"
    "  --std X            initialisation standard deviation (see above)\n"
    "  --bf16             store weights as BF16\n"
    "  --list             list the presets and exit\n";

int main(int argc, char **argv) {
    const char *preset = NULL, *config = NULL, *tokp = NULL, *tplname = NULL;
    long long seed = 0;
    double std = NAN;   /* not given: the config's initializer_range */
    int bf16 = 0, list = 0;
    const cli_opt opts[] = {
        {"preset", 0, CLI_STR, &preset},
        {"config", 0, CLI_STR, &config},
        {"tokenizer", 0, CLI_STR, &tokp},
        {"template", 0, CLI_STR, &tplname},
        {"seed", 0, CLI_INT, &seed},
        {"std", 0, CLI_REAL, &std},
        {"bf16", 0, CLI_FLAG, &bf16},
        {"list", 0, CLI_FLAG, &list},
        {0}};
    cli_common cli;
    cli_parse(argc, argv, usage, opts, &cli);
    const char *out = cli.output;
    if (list) {
        for (int k = 0; wdl_preset_names[k]; k++) {
            wdl_config c;
            config_preset(wdl_preset_names[k], &c);
            wdl_model *m = model_new(&c);
            printf("%-8s %5.1fM parameters: hidden %lld, %lld layers, %lld/%lld heads, head_dim %lld, vocab %lld\n",
                   wdl_preset_names[k], m->nparams / 1e6, (long long)c.hidden, (long long)c.layers,
                   (long long)c.heads, (long long)c.kv_heads, (long long)c.head_dim, (long long)c.vocab);
            model_free(m);
        }
        return 0;
    }
    if (cli.nargs) cli_usage_error("unexpected argument '%s' (see --help)", cli.args[0]);
    if (!!preset == !!config) cli_usage_error("give exactly one of --preset or --config (see --help)");
    if (!out) cli_usage_error("-o DIR is required (see --help)");
    cli_replaceable_dir("-o", out, cli_model_dir_files);
    if (!isnan(std) && !(std > 0)) cli_usage_error("--std must be > 0");
    if (tplname && strcmp(tplname, "plain") && strcmp(tplname, "chatml"))
        cli_usage_error("--template: unknown template '%s' (plain, chatml)", tplname);
    if (preset && !config_preset_known(preset)) cli_usage_error("--preset: unknown preset '%s' (see --list)", preset);
    wdl_config c;
    if (preset) config_preset(preset, &c);
    else config_load(config, &c);
    wdl_tokenizer *tok = NULL;
    if (tokp && !strcmp(tokp, "byte")) {
        snprintf(c.tokenizer, sizeof c.tokenizer, "byte");
        if (!tplname) snprintf(c.template_name, sizeof c.template_name, "plain");
    } else if (tokp) {
        snprintf(c.tokenizer, sizeof c.tokenizer, "hf");
        if (!tplname) snprintf(c.template_name, sizeof c.template_name, "chatml");
    }
    if (tplname) snprintf(c.template_name, sizeof c.template_name, "%s", tplname);
    if (!strcmp(c.tokenizer, "byte")) tok = tok_byte();
    else if (tokp) tok = tok_load(tokp);
    else die("the config names an HF tokenizer: give --tokenizer tokenizer.json (or 'byte')");
    if (tok_vocab_size(tok) > c.vocab)
        die("tokenizer has %lld ids but vocab_size is %lld", (long long)tok_vocab_size(tok), (long long)c.vocab);

    wdl_model *m = model_new(&c);
    model_init_random(m, (uint64_t)seed, isnan(std) ? c.init_std : std);
    char *tmp = wdl_tmp_name(out);
    wdl_rmtree(tmp);
    wdl_tmp_register(tmp);
    wdl_mkdirs(tmp);
    model_write_dir(m, tmp, bf16);
    if (!strcmp(c.tokenizer, "hf")) {
        /* tokp is a tokenizer.json or a directory holding one */
        char *dst = wdl_path_join(tmp, "tokenizer.json");
        const char *src = tokp;
        char *srcdir_json = wdl_is_dir(tokp) ? wdl_path_join(tokp, "tokenizer.json") : NULL;
        if (srcdir_json) src = srcdir_json;
        size_t len;
        char *data = wdl_read_file(src, &len);
        FILE *f = fopen(dst, "wb");
        if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) die("%s: cannot write", dst);
        free(data); free(dst); free(srcdir_json);
    }
    wdl_commit(tmp, out);
    if (!cli.quiet) fprintf(stderr, "%s: wrote %s: %.2fM parameters (%s tokenizer, %s template, seed %lld)\n", wdl_prog, out,
            m->nparams / 1e6, c.tokenizer, c.template_name, (long long)seed);
    free(tmp);
    model_free(m);
    tok_free(tok);
    free(cli.args);
    return 0;
}
