/* cli.h: the command line of every wdl program.
 * A program describes its own options in a table; cli_parse adds the
 * options every program shares and parses argv with getopt_long:
 *   -h, --help       the program's usage on stdout, exit 0
 *   --version        "wdl-<prog> <version>" on stdout, exit 0
 *   -o, --output F   the program's output (NULL when not given)
 *   --threads N      threads for OpenMP and OpenBLAS, per process (default:
 *                    all cores, shared out among the ranks mpirun started
 *                    on this machine)
 *   -q, --quiet      no progress or summary on stderr
 * A usage error (unknown option, missing or bad value) prints one line
 * "wdl-<prog>: ..." and exits 2; bad input later exits 1 (die). */
#ifndef WDL_CLI_H
#define WDL_CLI_H
#include "gemm.h"
#include <limits.h>
#include <stdarg.h>

typedef enum {
    CLI_FLAG,   /* no value: *(int *)dest = 1 */
    CLI_SET,    /* no value: *(int *)dest = value */
    CLI_STR,    /* *(const char **)dest = the value */
    CLI_INT,    /* *(long long *)dest = the value as a decimal integer */
    CLI_REAL,   /* *(double *)dest = the value as a finite number */
} cli_kind;

typedef struct {
    const char *name;   /* long name without "--"; NULL ends a table */
    char short_name;    /* 0 when none */
    cli_kind kind;
    void *dest;
    int value;          /* CLI_SET only */
} cli_opt;

typedef struct {
    const char *output;   /* -o/--output */
    long long threads;
    int quiet;
    const char **args;    /* non-option arguments in order (files, commands) */
    int nargs;
} cli_common;

/* Sets the program name, the thread waiting policy and the signal
 * handlers, parses argv (options and arguments may be mixed; "--" ends
 * options; "-" is an argument), then sets the thread counts. usage is the
 * help text. Free c->args with free(). */
void cli_parse(int argc, char **argv, const char *usage, const cli_opt *opts, cli_common *c);
/* The same for a program that runs as MPI ranks (wdl-train, wdl-score,
 * wdl-eval: it calls dist_init next); cli_parse refuses to run under an
 * mpirun of more than one rank. */
void cli_parse_mpi(int argc, char **argv, const char *usage, const cli_opt *opts, cli_common *c);

/* For a program that prints on stdout and takes at most max_args
 * arguments (the benchmarks): -o or another argument is a usage error. */
void cli_stdout_only(const cli_common *c, int max_args);

/* Outputs of one run that must be different files: paths[i] (NULL: not
 * given; "-": stdout, not compared) given by option names[i]. Two that
 * name the same file (as spelled, or through their directories' real
 * paths) are a usage error: each would be written under the same
 * temporary name. */
void cli_distinct_outputs(int n, const char *const *names, const char *const *paths);

/* An output directory the program will replace whole: when path is an
 * existing directory holding an entry that matches none of the patterns
 * (fnmatch; NULL-terminated), a usage error: replacing it would delete
 * files the program never wrote. */
void cli_replaceable_dir(const char *flag, const char *path, const char *const *patterns);
/* The entries of a model directory (wdl-init, wdl-train) and of a report
 * directory (wdl-report). */
extern const char *const cli_model_dir_files[], *const cli_report_dir_files[];

/* An integer option's value until it is given (so that no value a user
 * can type means "not given"). */
#define CLI_UNSET LLONG_MIN

/* A command-line value as a decimal integer or a finite number; a bad
 * one is a usage error naming flag. */
long long cli_int(const char *flag, const char *s);
double cli_real(const char *flag, const char *s);

/* A usage error: "wdl-<prog>: <message>" on one line, exit 2. */
_Noreturn void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The environment that libgomp and OpenBLAS read when they load, before
 * main, set by re-executing the program once when something is missing:
 *  - OMP_WAIT_POLICY=passive unless the user chose a policy: threads that
 *    spin while waiting collapse throughput when another process wants the
 *    same cores (measured 2x for training, up to 50x for decoding);
 *  - OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) when OpenBLAS
 *    did not recognise the CPU and chose its generic SSE3 "Prescott"
 *    kernels (Debian 12's 0.3.21 on Emerald Rapids: 12-18 GFLOP/s of sgemm
 *    against 90-100 with the SkylakeX kernels, one core), unless set.
 * Call first thing in main, before any OpenMP region (cli_parse does). */
void cli_startup_env(char **argv);

/* --precision NAME (NULL: the default, fp32) as a GEMM precision; another
 * name is a usage error. */
gemm_precision cli_precision(const char *name);

/* Threads for OpenMP loops and OpenBLAS (cli_parse calls it). */
void cli_set_threads(int n);
#endif
