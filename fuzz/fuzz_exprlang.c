/* libFuzzer target: the program and equation languages, and answer
 * extraction, on arbitrary text. Nothing may crash, hang or leak; a
 * program that parses must run (or fail cleanly) within its step limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "checker.h"
#include "common.h"
#include "exprlang.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = xmalloc(size + 1), err[256];
    if (size) memcpy(text, data, size);
    text[size] = 0;
    exl_prog *p = exl_parse(text, err, sizeof err);
    if (p) {
        json_t *in = json_pack("{s:i,s:i,s:i,s:[i,i,i]}", "x", 7, "a", -3, "b", 4, "l", 1, 2, 3), *out = NULL;
        if (exl_run_json(p, in, 20000, &out, err, sizeof err)) {
            if (!json_is_integer(out) && !json_is_array(out)) abort();
        } else if (out || !err[0]) {
            abort();
        }
        json_decref(out);
        json_decref(in);
        exl_free(p);
    } else if (!err[0]) {
        abort();
    }
    double v;
    if (eq_eval(text, &v, err, sizeof err) && (v != v)) abort();
    char *ex = check_extract(text);
    if (ex) check_number(ex, &v);
    free(ex);
    free(text);
    return 0;
}
