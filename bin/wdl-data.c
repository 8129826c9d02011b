/* wdl-data: built-in task generation, importers for external sets, and a
 * record copier (plain/zstd/archive member in, plain/zstd out). */
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common.h"
#include "importers.h"
#include "progress.h"
#include "records.h"
#include "tasks.h"

static const char *usage =
    "usage: wdl-data gen --task arith|equation|prog|mix --n N --seed S\n"
    "                    --split train|dev|test [--difficulty 1..4] [-o FILE]\n"
    "       wdl-data import --format mawps|svamp|gsm8k|aqua|aime|amc|chat\n"
    "                    [--task NAME] [-o FILE] FILE...\n"
    "       wdl-data cat [-o FILE] [FILE...]\n"
    "       wdl-data take [--from A] [--to B] [-o FILE] [FILE...]\n"
    "       wdl-data split --head N -o FILE --rest FILE [FILE...]\n"
    "\n"
    "gen     writes N records of a built-in task. Records are a deterministic\n"
    "        function of the seed; train/dev/test never share a prompt.\n"
    "import  converts a benchmark (JSON array or JSON Lines) or chat JSONL\n"
    "        to task records {idx, task, prompt, completion, answer, ...}.\n"
    "cat     copies records (checks them; converts to/from .zst).\n"
    "take    copies records A (default 0) up to, not including, B (default:\n"
    "        the end), counting from 0 over all inputs.\n"
    "split   the first N records to -o, all others to --rest; both outputs\n"
    "        appear together or not at all.\n"
    "\n"
    "FILE may be '-' (stdin), *.zst, or ARCHIVE:member for a member of a\n"
    ".tar/.tar.gz/.tgz/.tar.zst/.zip. Output goes to stdout unless -o names\n"
    "a file (*.zst = compressed); a failed run leaves no output file.\n";

/* Shared option parsing: fills the fields named by the subcommand. */
typedef struct {
    const char *out, *task, *split, *format, *rest;
    long long n, seed, difficulty, from, to, head;
    int quiet;
    const char **files, **args;   /* files: the arguments after the command */
    int nfiles;
} opts;

/* The command (first argument) and the options of every command. */
static const char *parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->n = CLI_UNSET;
    o->difficulty = 2;
    o->to = CLI_UNSET;
    o->head = CLI_UNSET;
    const cli_opt table[] = {
        {"task", 0, CLI_STR, &o->task},
        {"split", 0, CLI_STR, &o->split},
        {"format", 0, CLI_STR, &o->format},
        {"n", 0, CLI_INT, &o->n},
        {"seed", 0, CLI_INT, &o->seed},
        {"difficulty", 0, CLI_INT, &o->difficulty},
        {"from", 0, CLI_INT, &o->from},
        {"to", 0, CLI_INT, &o->to},
        {"head", 0, CLI_INT, &o->head},
        {"rest", 0, CLI_STR, &o->rest},
        {0}};
    cli_common cli;
    cli_parse(argc, argv, usage, table, &cli);
    o->out = cli.output;
    o->quiet = cli.quiet;
    if (!cli.nargs) cli_usage_error("no command given (gen, import, cat, take or split; see --help)");
    o->args = cli.args;
    o->files = cli.args + 1;
    o->nfiles = cli.nargs - 1;
    return cli.args[0];
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
    if (!o->task) cli_usage_error("gen: --task is required (arith, equation, prog or mix)");
    if (o->n == CLI_UNSET) cli_usage_error("gen: --n N is required");
    if (o->n < 0) cli_usage_error("gen: --n must be >= 0, got %lld", o->n);
    if (!o->split) cli_usage_error("gen: --split is required (train, dev or test)");
    if (o->nfiles) cli_usage_error("gen: unexpected argument '%s'", o->files[0]);
    int kind = task_kind(o->task), split = task_split(o->split);
    if (kind < 0) cli_usage_error("gen: unknown task '%s' (arith, equation, prog, mix, or a list such as equation,prog)", o->task);
    if (split < 0) cli_usage_error("gen: unknown split '%s' (train, dev or test)", o->split);
    if (o->difficulty < 1 || o->difficulty > 4) cli_usage_error("--difficulty: must be 1..4, got %lld", o->difficulty);
    rec_writer *w = rec_create(o->out);
    task_gen gen;
    task_gen_init(&gen, kind, (uint64_t)o->seed, split, (int)o->difficulty);
    wdl_progress bar;
    progress_start(&bar, "records", o->n, o->quiet);
    for (long long i = 0; i < o->n; i++) {
        json_t *v = task_gen_next(&gen);
        rec_write(w, v);
        json_decref(v);
        progress_update(&bar, i + 1, NULL);
    }
    progress_end(&bar, o->n, NULL);
    rec_commit(w);
    task_gen_free(&gen);
    return 0;
}

static int cmd_import(opts *o) {
    if (!o->format) cli_usage_error("import: --format is required (mawps, svamp, gsm8k, aqua, aime, amc or chat)");
    int fmt = import_format(o->format);
    if (fmt < 0) cli_usage_error("import: unknown format '%s'", o->format);
    if (!o->nfiles) cli_usage_error("import: no input file (use - for stdin)");
    rec_writer *w = rec_create(o->out);
    import_files(fmt, o->task, o->files, o->nfiles, w, o->quiet);
    rec_commit(w);
    return 0;
}

/* Records [from, to) to one output; with a second writer, the records
 * from `to` on go there (split). */
static void copy_range(opts *o, long long from, long long to, rec_writer *w, rec_writer *rest) {
    rec_multi *m = rec_multi_open(o->files, o->nfiles);
    json_t *v;
    for (long long i = 0; (v = rec_multi_next(m)); i++) {
        if (i >= from && (to < 0 || i < to)) rec_write(w, v);
        else if (rest && i >= to) rec_write(rest, v);
        json_decref(v);
        if (!rest && to >= 0 && i + 1 >= to) break;
    }
    rec_multi_close(m);
}

static int cmd_take(opts *o) {
    if (o->from < 0) cli_usage_error("take: --from must be >= 0, got %lld", o->from);
    if (o->to != CLI_UNSET && o->to < 0) cli_usage_error("take: --to must be >= 0, got %lld", o->to);
    if (o->to != CLI_UNSET && o->to < o->from) cli_usage_error("take: --to (%lld) is before --from (%lld)", o->to, o->from);
    if (o->to == CLI_UNSET) o->to = -1;   /* copy_range: to the end */
    rec_writer *w = rec_create(o->out);
    copy_range(o, o->from, o->to, w, NULL);
    rec_commit(w);
    return 0;
}

static int cmd_split(opts *o) {
    if (o->head == CLI_UNSET) cli_usage_error("split: --head N is required");
    if (o->head < 0) cli_usage_error("split: --head must be >= 0, got %lld", o->head);
    if (!o->out || !o->rest) cli_usage_error("split: give both -o FILE and --rest FILE");
    if (!strcmp(o->out, "-") && !strcmp(o->rest, "-")) cli_usage_error("split: -o and --rest are both stdout");
    cli_distinct_outputs(2, (const char *const[]){"-o", "--rest"}, (const char *const[]){o->out, o->rest});
    rec_writer *w = rec_create(o->out), *r = rec_create(o->rest);
    copy_range(o, 0, o->head, w, r);
    rec_commit(w);
    rec_commit(r);
    return 0;
}

int main(int argc, char **argv) {
    opts o;
    const char *cmd = parse(argc, argv, &o);
    int rc;
    if (!strcmp(cmd, "help")) { fputs(usage, stdout); return 0; }
    if (!strcmp(cmd, "gen")) rc = cmd_gen(&o);
    else if (!strcmp(cmd, "import")) rc = cmd_import(&o);
    else if (!strcmp(cmd, "cat")) rc = cmd_cat(&o);
    else if (!strcmp(cmd, "take")) rc = cmd_take(&o);
    else if (!strcmp(cmd, "split")) rc = cmd_split(&o);
    else cli_usage_error("unknown command '%s' (gen, import, cat, take or split; see --help)", cmd);
    free(o.args);
    return rc;
}
