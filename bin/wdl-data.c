/* wdl-data: built-in task generation, importers for external sets, and a
 * record copier (plain/zstd/archive member in, plain/zstd out). */
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "importers.h"
#include "records.h"
#include "tasks.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: wdl-data gen --task arith|equation|prog|mix --n N --seed S\n"
        "                    --split train|dev|test [--difficulty 1..4] [-o FILE]\n"
        "       wdl-data import --format mawps|svamp|gsm8k|aqua|aime|amc|chat\n"
        "                    [--task NAME] [-o FILE] FILE...\n"
        "       wdl-data cat [-o FILE] [FILE...]\n"
        "\n"
        "gen     writes N records of a built-in task. Records are a deterministic\n"
        "        function of the seed; train/dev/test never share a prompt.\n"
        "import  converts a benchmark (JSON array or JSON Lines) or chat JSONL\n"
        "        to task records {idx, task, prompt, completion, answer, ...}.\n"
        "cat     copies records (checks them; converts to/from .zst).\n"
        "\n"
        "FILE may be '-' (stdin), *.zst, or ARCHIVE:member for a member of a\n"
        ".tar/.tar.gz/.tgz/.tar.zst/.zip. Output goes to stdout unless -o names\n"
        "a file (*.zst = compressed); a failed run leaves no output file.\n");
}

/* Shared option parsing: fills the fields named by the subcommand. */
typedef struct {
    const char *out, *task, *split, *format;
    long long n, seed, difficulty;
    const char **files;
    int nfiles;
} opts;

static void parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->n = -1;
    o->difficulty = 2;
    o->files = xcalloc((size_t)argc, sizeof(char *));
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->out = wdl_arg(argc, argv, &i);
        else if (!strcmp(a, "--task")) o->task = wdl_arg(argc, argv, &i);
        else if (!strcmp(a, "--split")) o->split = wdl_arg(argc, argv, &i);
        else if (!strcmp(a, "--format")) o->format = wdl_arg(argc, argv, &i);
        else if (!strcmp(a, "--n")) o->n = wdl_parse_int(a, wdl_arg(argc, argv, &i));
        else if (!strcmp(a, "--seed")) o->seed = wdl_parse_int(a, wdl_arg(argc, argv, &i));
        else if (!strcmp(a, "--difficulty")) o->difficulty = wdl_parse_int(a, wdl_arg(argc, argv, &i));
        else if (a[0] == '-' && a[1]) die("unknown option '%s' (see --help)", a);
        else o->files[o->nfiles++] = a;
    }
}

static int cmd_cat(opts *o) {
    rec_multi *m = rec_multi_open(o->files, o->nfiles);
    rec_writer *w = rec_create(o->out);
    json_t *v;
    while ((v = rec_multi_next(m))) {
        rec_write(w, v);
        json_decref(v);
    }
    rec_commit(w);
    rec_multi_close(m);
    return 0;
}

static int cmd_gen(opts *o) {
    if (!o->task) die("gen: --task is required (arith, equation, prog or mix)");
    if (o->n < 0) die("gen: --n is required");
    if (!o->split) die("gen: --split is required (train, dev or test)");
    if (o->nfiles) die("gen: unexpected argument '%s'", o->files[0]);
    int kind = task_kind(o->task), split = task_split(o->split);
    if (kind < 0) die("gen: unknown task '%s' (arith, equation, prog or mix)", o->task);
    if (split < 0) die("gen: unknown split '%s' (train, dev or test)", o->split);
    if (o->difficulty < 1 || o->difficulty > 4) die("--difficulty: must be 1..4, got %lld", o->difficulty);
    rec_writer *w = rec_create(o->out);
    task_gen gen;
    task_gen_init(&gen, kind, (uint64_t)o->seed, split, (int)o->difficulty);
    for (long long i = 0; i < o->n; i++) {
        json_t *v = task_gen_next(&gen);
        rec_write(w, v);
        json_decref(v);
    }
    rec_commit(w);
    task_gen_free(&gen);
    return 0;
}

static int cmd_import(opts *o) {
    if (!o->format) die("import: --format is required (mawps, svamp, gsm8k, aqua, aime, amc or chat)");
    int fmt = import_format(o->format);
    if (fmt < 0) die("import: unknown format '%s'", o->format);
    if (!o->nfiles) die("import: no input file (use - for stdin)");
    rec_writer *w = rec_create(o->out);
    import_files(fmt, o->task, o->files, o->nfiles, w);
    rec_commit(w);
    return 0;
}

int main(int argc, char **argv) {
    wdl_set_prog(argv[0]);
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) { usage(stdout); return 0; }
    if (!strcmp(cmd, "--version")) { printf("wdl-data %s\n", wdl_version); return 0; }
    opts o;
    parse(argc, argv, &o);
    int rc;
    if (!strcmp(cmd, "gen")) rc = cmd_gen(&o);
    else if (!strcmp(cmd, "import")) rc = cmd_import(&o);
    else if (!strcmp(cmd, "cat")) rc = cmd_cat(&o);
    else die("unknown command '%s' (gen, import or cat; see --help)", cmd);
    free(o.files);
    return rc;
}
