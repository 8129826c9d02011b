/* cli.c: see cli.h. */
#include "cli.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common.h"
#include "dist.h"

extern void openblas_set_num_threads(int);

void cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    /* under mpirun every rank parses the same command line: one says it */
    if (dist_launched_rank() != 0) exit(2);
    wdl_vexit(2, NULL, 0, fmt, ap);
}

char *openblas_get_corename(void);
static int fix_openblas_core(void) {
    if (getenv("OPENBLAS_CORETYPE") || strcmp(openblas_get_corename(), "Prescott")) return 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    else
        return 0;
    return 1;
}

/* With OMP_PROC_BIND set, libgomp binds the initial thread to the first
 * place before main, and a program executed again would inherit that one
 * CPU as all it may use (measured: a nano epoch twice as long, both
 * threads on one core). Its CPUs go back to those of every place, which
 * libgomp took from the affinity the program started with (or from the
 * user's OMP_PLACES). */
static void unbind_before_exec(void) {
    const int np = omp_get_num_places();
    if (np <= 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int p = 0; p < np; p++) {
        const int n = omp_get_place_num_procs(p);
        if (n <= 0) continue;
        int ids[n];
        omp_get_place_proc_ids(p, ids);
        for (int i = 0; i < n; i++)
            if (ids[i] >= 0 && ids[i] < CPU_SETSIZE) CPU_SET(ids[i], &set);
    }
    if (CPU_COUNT(&set) > 0) sched_setaffinity(0, sizeof set, &set);
}

void cli_startup_env(char **argv) {
    int again = fix_openblas_core();
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        again = 1;
    }
    if (!again) return;
    unbind_before_exec();
    /* exec the binary by its own path, not /proc/self/exe, so that ps,
     * pgrep and top keep showing the program's name */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || n >= (ssize_t)sizeof self - 1) return;
    self[n] = 0;
    execv(self, argv);   /* on failure: carry on as we are */
}

gemm_precision cli_precision(const char *name) {
    gemm_precision p = GEMM_FP32_AUTO;
    if (name && !gemm_precision_named(name, &p))
        cli_usage_error("--precision: expected %s, got '%s'", GEMM_PRECISIONS, name);
    return p;
}

void cli_set_threads(int n) {
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

void cli_stdout_only(const cli_common *c, int max_args) {
    if (c->output) cli_usage_error("-o: this program prints on stdout");
    if (c->nargs > max_args) cli_usage_error("unexpected argument '%s' (see --help)", c->args[max_args]);
}

/* path's directory as a real path, then its last component; NULL where
 * the directory does not resolve (the write will say why) */
static char *real_output(const char *path) {
    char *a = xstrdup(path), *b = xstrdup(path);
    for (size_t n = strlen(a); n > 1 && a[n - 1] == '/'; n--) a[n - 1] = b[n - 1] = 0;
    char *dir = realpath(dirname(a), NULL), *r = NULL;
    if (dir) {
        const char *f = basename(b);
        r = xmalloc(strlen(dir) + strlen(f) + 2);
        sprintf(r, "%s/%s", dir, f);
    }
    free(dir); free(a); free(b);
    return r;
}
void cli_distinct_outputs(int n, const char *const *names, const char *const *paths) {
    for (int i = 0; i < n; i++) {
        if (!paths[i] || !strcmp(paths[i], "-")) continue;
        char *ri = real_output(paths[i]);
        for (int j = i + 1; j < n; j++) {
            if (!paths[j] || !strcmp(paths[j], "-")) continue;
            char *rj = real_output(paths[j]);
            int same = !strcmp(paths[i], paths[j]) || (ri && rj && !strcmp(ri, rj));
            free(rj);
            if (same) cli_usage_error("%s and %s name the same file '%s'", names[i], names[j], paths[j]);
        }
        free(ri);
    }
}

const char *const cli_model_dir_files[] = {"config.json", "model.safetensors", "tokenizer.json", "trainer.json",
                                          "optimizer.safetensors", "optimizer_v.safetensors", "weak", NULL};
const char *const cli_report_dir_files[] = {"report.md", "report.json", "plots.gp", "plots.log", "*.dat", "*.png",
                                           "*.svg", NULL};
void cli_replaceable_dir(const char *flag, const char *path, const char *const *patterns) {
    DIR *d = opendir(path);
    if (!d) return;   /* absent (or not a directory: the write says so) */
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        int k = 0;
        while (patterns[k] && fnmatch(patterns[k], e->d_name, 0)) k++;
        if (!patterns[k]) {
            char name[256];
            snprintf(name, sizeof name, "%s", e->d_name);
            closedir(d);
            cli_usage_error("%s %s: the directory holds '%s', which this program does not write; not replacing it",
                            flag, path, name);
        }
    }
    closedir(d);
}

long long cli_int(const char *flag, const char *s) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE) cli_usage_error("%s: out of range: '%s'", flag, s);
    if (errno || end == s || *end || isspace((unsigned char)*s)) cli_usage_error("%s: not an integer: '%s'", flag, s);
    return v;
}
double cli_real(const char *flag, const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) cli_usage_error("%s: not a number: '%s'", flag, s);
    return v;
}

enum { OPT_VERSION = 1000, OPT_THREADS, OPT_TABLE = 2000 };

static const char *common_help =
    "Common options: -h/--help, --version, -o/--output FILE, --threads N, -q/--quiet\n";

static void parse_argv(int argc, char **argv, const char *usage, const cli_opt *opts, cli_common *c);

void cli_parse(int argc, char **argv, const char *usage, const cli_opt *opts, cli_common *c) {
    /* N copies of a program that knows nothing of ranks would each write
     * the same output */
    if (dist_launched_size() > 1) {
        wdl_set_prog(argv[0]);
        cli_usage_error("does not run as several MPI ranks (mpirun -np 1, or no mpirun)");
    }
    parse_argv(argc, argv, usage, opts, c);
}

void cli_parse_mpi(int argc, char **argv, const char *usage, const cli_opt *opts, cli_common *c) {
    parse_argv(argc, argv, usage, opts, c);
}

static void parse_argv(int argc, char **argv, const char *usage, const cli_opt *opts, cli_common *c) {
    cli_startup_env(argv);
    wdl_set_prog(argv[0]);
    memset(c, 0, sizeof *c);
    /* the CPUs this process may use (taskset, a container's cpuset, a
     * launcher's binding), as libgomp counted them at start: not every
     * online CPU, whose threads would share the allowed ones */
    const long online = sysconf(_SC_NPROCESSORS_ONLN), usable = omp_get_num_procs();
    c->threads = usable > 0 ? usable : online > 0 ? online : 1;
    /* mpirun started several ranks on this machine without giving each its
     * own CPUs: they share them */
    int local = dist_launched_local_size();
    if (local > 1 && c->threads >= online) c->threads = c->threads / local > 0 ? c->threads / local : 1;
    /* the OpenMP convention: a count in OMP_NUM_THREADS (its first, for a
     * nested list) is the default, per process */
    const char *env = getenv("OMP_NUM_THREADS");
    if (env) {
        char *end;
        errno = 0;
        const long v = strtol(env, &end, 10);
        if (!errno && end != env && (*end == 0 || *end == ',') && v >= 1) c->threads = v;
    }
    c->args = xcalloc((size_t)argc + 1, sizeof(char *));
    int n = 0;
    while (opts && opts[n].name) n++;
    struct option *lo = xcalloc((size_t)n + 6, sizeof *lo);
    char *shorts = xmalloc(3 * (size_t)n + 16);
    int k = 0;
    lo[k++] = (struct option){"help", no_argument, NULL, 'h'};
    lo[k++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    lo[k++] = (struct option){"output", required_argument, NULL, 'o'};
    lo[k++] = (struct option){"threads", required_argument, NULL, OPT_THREADS};
    lo[k++] = (struct option){"quiet", no_argument, NULL, 'q'};
    /* leading '-': arguments come back in order as option 1; ':' reports a
     * missing value apart from an unknown option */
    strcpy(shorts, "-:ho:q");
    for (int i = 0; i < n; i++) {
        int has = opts[i].kind == CLI_FLAG || opts[i].kind == CLI_SET ? no_argument : required_argument;
        lo[k++] = (struct option){opts[i].name, has, NULL, OPT_TABLE + i};
        if (opts[i].short_name) {
            size_t l = strlen(shorts);
            shorts[l++] = opts[i].short_name;
            if (has == required_argument) shorts[l++] = ':';
            shorts[l] = 0;
        }
    }
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        const char *flag = argv[optind - 1];
        int i = ch >= OPT_TABLE ? ch - OPT_TABLE : -1;
        for (int j = 0; i < 0 && ch > 1 && ch < 256 && j < n; j++)
            if (opts[j].short_name == ch) i = j;
        if (i >= 0) {
            char name[128];
            snprintf(name, sizeof name, "--%s", opts[i].name);
            void *d = opts[i].dest;
            switch (opts[i].kind) {
            case CLI_FLAG: *(int *)d = 1; break;
            case CLI_SET: *(int *)d = opts[i].value; break;
            case CLI_STR: *(const char **)d = optarg; break;
            case CLI_INT: *(long long *)d = cli_int(name, optarg); break;
            case CLI_REAL: *(double *)d = cli_real(name, optarg); break;
            }
            continue;
        }
        switch (ch) {
        case 1: c->args[c->nargs++] = optarg; break;
        case 'h': fputs(usage, stdout); fputs(common_help, stdout); exit(0);
        case OPT_VERSION: printf("%s %s\n", wdl_prog, wdl_version); exit(0);
        case 'o': c->output = optarg; break;
        case 'q': c->quiet = 1; break;
        case OPT_THREADS:
            c->threads = cli_int("--threads", optarg);
            if (c->threads < 1) cli_usage_error("--threads: must be >= 1, got %lld", c->threads);
            break;
        case ':':
            if (strncmp(flag, "--", 2) && optopt > 0 && optopt < 256)
                cli_usage_error("-%c needs a value (see --help)", optopt);
            cli_usage_error("%s needs a value (see --help)", flag);
        default:
            if (strncmp(flag, "--", 2) && optopt > 0 && optopt < 256)
                cli_usage_error("unknown option '-%c' (see --help)", optopt);
            cli_usage_error("unknown option '%s' (see --help)", flag);
        }
    }
    for (int i = optind; i < argc; i++) c->args[c->nargs++] = argv[i];
    free(lo);
    free(shorts);
    cli_set_threads((int)c->threads);
}
