/* libFuzzer target: config.json parsing (config_parse_err). An accepted
 * config must satisfy every invariant the model code relies on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "config.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = xmalloc(size + 1), err[512];
    if (size) memcpy(text, data, size);
    text[size] = 0;
    wdl_config c;
    if (config_parse_err(text, "fuzz.json", &c, err, sizeof err) == 0) {
        if (c.hidden <= 0 || c.inter <= 0 || c.layers <= 0 || c.heads <= 0 || c.kv_heads <= 0 || c.vocab <= 0 ||
            c.max_pos <= 0 || c.head_dim <= 0 || c.head_dim % 2 || c.heads % c.kv_heads || !(c.eps > 0 && c.eps < 1) ||
            !(c.theta > 0) || c.bos_id < -1 || c.bos_id >= c.vocab || c.eos_id < -1 || c.eos_id >= c.vocab ||
            c.vocab * c.hidden > 2147483647LL || c.heads * c.head_dim * c.hidden > 2147483647LL)
            abort();
        if (strcmp(c.tokenizer, "byte") && strcmp(c.tokenizer, "hf")) abort();
        if (strcmp(c.template_name, "plain") && strcmp(c.template_name, "chatml")) abort();
    } else if (strncmp(err, "fuzz.json", 9) || strchr(err, '\n')) {
        abort();
    }
    free(text);
    return 0;
}
