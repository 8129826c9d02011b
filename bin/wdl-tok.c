/* wdl-tok: a JSON-Lines filter that tokenizes ("encode": text -> ids) or
 * detokenizes ("decode": ids -> text) records, passing other fields
 * through unchanged. */
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common.h"
#include "records.h"
#include "tokenizer.h"
#include "utf8.h"

static const char *usage =
        "usage: wdl-tok -t TOKENIZER encode|decode [-o OUT] [FILE...]\n"
        "\n"
        "Reads JSON-Lines records (stdin when no FILE; '-' is stdin; *.zst is\n"
        "zstd) and writes them to stdout (or -o OUT, written atomically) with\n"
        "one field added:\n"
        "  encode   \"ids\": the token ids of the record's \"text\" (no BOS/EOS;\n"
        "           special tokens written in the text, e.g. <|im_end|>, become\n"
        "           their ids, as Hugging Face's encode does)\n"
        "  decode   \"text\": the text of the record's \"ids\" (NUL bytes and bytes\n"
        "           that are not valid UTF-8 become U+FFFD)\n"
        "Options:\n"
        "  -t, --tokenizer T  a tokenizer.json, a model directory, or \"byte\"\n"
        "  -o, --output OUT   output file (default stdout)\n"
        "  --no-special       encode special-token text as plain text\n"
        "  --text-field NAME  field holding the text (default text)\n"
        "  --ids-field NAME   field holding the ids (default ids)\n"
        "  -h, --help         this help;  --version\n"
        "Example: echo '{\"text\":\"Hi\"}' | wdl-tok -t byte encode\n";

typedef struct {
    const char *tok, *cmd, *out, *text_field, *ids_field, **files, **args;
    int nfiles, special;
} opts;

static void parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->text_field = "text";
    o->ids_field = "ids";
    o->special = 1;
    int no_special = 0;
    const cli_opt table[] = {
        {"tokenizer", 't', CLI_STR, &o->tok},
        {"no-special", 0, CLI_FLAG, &no_special},
        {"text-field", 0, CLI_STR, &o->text_field},
        {"ids-field", 0, CLI_STR, &o->ids_field},
        {0}};
    cli_common cli;
    cli_parse(argc, argv, usage, table, &cli);
    o->out = cli.output;
    o->special = !no_special;
    o->args = cli.args;
    if (cli.nargs) o->cmd = cli.args[0];
    o->files = cli.args + (cli.nargs > 0);
    o->nfiles = cli.nargs > 0 ? cli.nargs - 1 : 0;
    if (!o->cmd) cli_usage_error("no command given (encode or decode; see --help)");
    if (strcmp(o->cmd, "encode") && strcmp(o->cmd, "decode"))
        cli_usage_error("unknown command '%s' (encode or decode)", o->cmd);
    if (!o->tok) cli_usage_error("no tokenizer given (-t tokenizer.json, a model directory, or byte)");
}

static void encode(const opts *o, const wdl_tokenizer *t, rec_multi *in, rec_writer *w) {
    json_t *rec;
    ivec ids = {0};
    while ((rec = rec_multi_next(in))) {
        json_t *tx = json_object_get(rec, o->text_field);
        if (!json_is_string(tx))
            die("%s:%lld: record has no \"%s\" string", rec_multi_name(in), (long long)rec_multi_line(in),
                o->text_field);
        ids.n = 0;
        tok_encode(t, json_string_value(tx), json_string_length(tx), o->special, &ids);
        json_t *a = json_array();
        for (size_t i = 0; i < ids.n; i++) json_array_append_new(a, json_integer(ids.v[i]));
        json_object_set_new(rec, o->ids_field, a);
        rec_write(w, rec);
        json_decref(rec);
    }
    ivec_free(&ids);
}

static void decode(const opts *o, const wdl_tokenizer *t, rec_multi *in, rec_writer *w) {
    json_t *rec;
    ivec ids = {0};
    while ((rec = rec_multi_next(in))) {
        const char *name = rec_multi_name(in);
        long long line = (long long)rec_multi_line(in);
        json_t *a = json_object_get(rec, o->ids_field);
        if (!json_is_array(a)) die("%s:%lld: record has no \"%s\" array", name, line, o->ids_field);
        ids.n = 0;
        for (size_t i = 0; i < json_array_size(a); i++) {
            json_t *v = json_array_get(a, i);
            long long id = json_is_integer(v) ? json_integer_value(v) : -1;
            if (!json_is_integer(v) || id < 0 || id > INT32_MAX || !tok_id_bytes(t, (int32_t)id, NULL, NULL))
                die("%s:%lld: %s[%zu] is not a token id of this tokenizer (vocabulary size %lld)", name, line,
                    o->ids_field, i, (long long)tok_vocab_size(t));
            ivec_push(&ids, (int32_t)id);
        }
        size_t n, m;
        char *s = tok_decode(t, ids.v, ids.n, &n);
        char *u = utf8_text(s, n, &m);
        json_object_set_new(rec, o->text_field, json_stringn(u, m));
        if (u != s) free(u);
        free(s);
        rec_write(w, rec);
        json_decref(rec);
    }
    ivec_free(&ids);
}

int main(int argc, char **argv) {
    opts o;
    parse(argc, argv, &o);
    wdl_tokenizer *t = tok_load(o.tok);
    rec_multi *in = rec_multi_open(o.files, o.nfiles);
    rec_writer *w = rec_create(o.out);
    if (!strcmp(o.cmd, "encode")) encode(&o, t, in, w);
    else decode(&o, t, in, w);
    rec_commit(w);
    rec_multi_close(in);
    tok_free(t);
    free(o.args);
    return 0;
}
