/* bench_tok: encoding speed of the Qwen3 tokenizer on the GSM8K test set
 * (every instruction, input and output text, encoded one by one with
 * special-token matching, one thread). Prints one line; compare with
 * bench/tok_hf.py (Hugging Face tokenizers on the same texts).
 * Shared data is found under $WDL_SHARED or ../shared; when it is absent
 * the benchmark says so and exits 0. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common.h"
#include "tokenizer.h"

static char *shared_path(const char *rel) {
    const char *root = getenv("WDL_SHARED");
    return wdl_path_join(root && *root ? root : "../shared", rel);
}

static const char *usage =
    "usage: bench_tok [tokenizer.json [test.json [seconds]]]\n"
    "Qwen3 tokenizer encoding speed on the GSM8K test set (default: both\n"
    "files under $WDL_SHARED or ../shared; skipped when absent), for at least\n"
    "`seconds` (2) and three passes. One line on stdout.\n";

int main(int argc, char **argv) {
    cli_common cli;
    cli_parse(argc, argv, usage, NULL, &cli);
    cli_stdout_only(&cli, 3);
    char *tj = cli.nargs > 0 ? xstrdup(cli.args[0]) : shared_path("data/qwen3-tokenizer/tokenizer.json");
    char *gj = cli.nargs > 1 ? xstrdup(cli.args[1]) : shared_path("data/benchmarks/gsm8k/test.json");
    double secs = cli.nargs > 2 ? cli_real("seconds", cli.args[2]) : 2.0;
    free(cli.args);
    if (!wdl_exists(tj) || !wdl_exists(gj)) {
        printf("tokenizer: skipped (%s or %s is absent)\n", tj, gj);
        free(tj); free(gj);
        return 0;
    }
    double t0 = wdl_now();
    wdl_tokenizer *t = tok_load(tj);
    double load = wdl_now() - t0;

    json_error_t je;
    json_t *root = json_load_file(gj, 0, &je);
    if (!json_is_array(root)) die("%s:%d: %s", gj, je.line, root ? "not a JSON array" : je.text);
    size_t n = 0, bytes = 0, cap = 3 * json_array_size(root) + 1;
    const char **txt = xmalloc(cap * sizeof *txt);
    size_t *len = xmalloc(cap * sizeof *len);
    static const char *const fields[] = {"instruction", "input", "output"};
    for (size_t i = 0; i < json_array_size(root); i++)
        for (int f = 0; f < 3; f++) {
            json_t *s = json_object_get(json_array_get(root, i), fields[f]);
            if (!json_is_string(s) || json_string_length(s) == 0) continue;
            txt[n] = json_string_value(s);
            len[n] = json_string_length(s);
            bytes += len[n++];
        }

    ivec ids = {0};
    size_t tokens = 0;
    for (size_t i = 0; i < n; i++) { ids.n = 0; tok_encode(t, txt[i], len[i], 1, &ids); tokens += ids.n; }
    /* timed passes: at least 3 and at least `secs` seconds */
    int passes = 0;
    t0 = wdl_now();
    double el;
    do {
        for (size_t i = 0; i < n; i++) { ids.n = 0; tok_encode(t, txt[i], len[i], 1, &ids); }
        passes++;
        el = wdl_now() - t0;
    } while (passes < 3 || el < secs);
    printf("tokenizer: qwen3 encode %.1f MB/s (%zu texts, %zu bytes, %zu tokens; load %.3f s)\n",
           (double)bytes * passes / el / 1e6, n, bytes, tokens, load);
    ivec_free(&ids);
    free(txt); free(len);
    json_decref(root);
    tok_free(t);
    free(tj); free(gj);
    return 0;
}
