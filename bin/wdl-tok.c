/* wdl-tok: a JSON-Lines filter that tokenizes ("encode": text -> ids) or
 * detokenizes ("decode": ids -> text) records, passing other fields
 * through unchanged. */
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "records.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: wdl-tok -t TOKENIZER encode|decode [-o OUT] [FILE...]\n"
        "\n"
        "Reads JSON-Lines records (stdin when no FILE; '-' is stdin; *.zst is\n"
        "zstd) and writes them to stdout (or -o OUT, written atomically) with\n"
        "one field added:\n"
        "  encode   \"ids\": the token ids of the record's \"text\" (no BOS/EOS;\n"
        "           special tokens written in the text, e.g. <|im_end|>, become\n"
        "           their ids, as Hugging Face's encode does)\n"
        "  decode   \"text\": the text of the record's \"ids\" (bytes that are not\n"
        "           valid UTF-8 become U+FFFD)\n"
        "Options:\n"
        "  -t, --tokenizer T  a tokenizer.json, a model directory, or \"byte\"\n"
        "  -o, --output OUT   output file (default stdout)\n"
        "  --no-special       encode special-token text as plain text\n"
        "  --text-field NAME  field holding the text (default text)\n"
        "  --ids-field NAME   field holding the ids (default ids)\n"
        "  -h, --help         this help;  --version\n"
        "Example: echo '{\"text\":\"Hi\"}' | wdl-tok -t byte encode\n");
}

typedef struct {
    const char *tok, *cmd, *out, *text_field, *ids_field, **files;
    int nfiles, special;
} opts;

static void parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->text_field = "text";
    o->ids_field = "ids";
    o->special = 1;
    o->files = xcalloc((size_t)argc, sizeof(char *));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
        else if (!strcmp(a, "--version")) { printf("wdl-tok %s\n", wdl_version); exit(0); }
        else if (!strcmp(a, "-t") || !strcmp(a, "--tokenizer")) o->tok = wdl_arg(argc, argv, &i);
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->out = wdl_arg(argc, argv, &i);
        else if (!strcmp(a, "--no-special")) o->special = 0;
        else if (!strcmp(a, "--text-field")) o->text_field = wdl_arg(argc, argv, &i);
        else if (!strcmp(a, "--ids-field")) o->ids_field = wdl_arg(argc, argv, &i);
        else if (a[0] == '-' && a[1]) die("unknown option %s (see --help)", a);
        else if (!o->cmd) o->cmd = a;
        else o->files[o->nfiles++] = a;
    }
    if (!o->cmd) { usage(stderr); die("no command given (encode or decode)"); }
    if (strcmp(o->cmd, "encode") && strcmp(o->cmd, "decode"))
        die("unknown command '%s' (encode or decode)", o->cmd);
    if (!o->tok) die("no tokenizer given (-t tokenizer.json, a model directory, or byte)");
}

/* JSON strings must be UTF-8: invalid sequences become U+FFFD, as in HF's
 * lossy decode. Returns s itself when it is already valid. */
static char *utf8_lossy(char *s, size_t n, size_t *on) {
    size_t i = 0, m = 0;
    char *o = NULL;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t l = 0;
        if (c < 0x80) l = 1;
        else if (c >= 0xC2 && c <= 0xDF) l = 2;
        else if (c >= 0xE0 && c <= 0xEF) l = 3;
        else if (c >= 0xF0 && c <= 0xF4) l = 4;
        int ok = l > 0 && i + l <= n;
        for (size_t k = 1; ok && k < l; k++) ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (ok && l == 3) {
            unsigned char d = (unsigned char)s[i + 1];
            ok = !(c == 0xE0 && d < 0xA0) && !(c == 0xED && d > 0x9F);
        }
        if (ok && l == 4) {
            unsigned char d = (unsigned char)s[i + 1];
            ok = !(c == 0xF0 && d < 0x90) && !(c == 0xF4 && d > 0x8F);
        }
        if (!ok && !o) { o = xmalloc(3 * n + 1); memcpy(o, s, i); m = i; }
        if (ok) {
            if (o) memcpy(o + m, s + i, l);
            m += l; i += l;
        } else {
            memcpy(o + m, "\xEF\xBF\xBD", 3);
            m += 3; i++;
        }
    }
    *on = m;
    if (!o) return s;
    o[m] = 0;
    return o;
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
        char *u = utf8_lossy(s, n, &m);
        json_object_set_new(rec, o->text_field, json_stringn(u, m));
        if (u != s) free(u);
        free(s);
        rec_write(w, rec);
        json_decref(rec);
    }
    ivec_free(&ids);
}

int main(int argc, char **argv) {
    wdl_set_prog(argv[0]);
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
    free(o.files);
    return 0;
}
