/* test_dist: data-parallel wdl-train under `mpirun -np 2` against one
 * process with the same global batch (--accum 2), and against itself.
 *
 * What must hold:
 *  - two runs on 2 ranks with the same seed and threads: identical bytes;
 *  - 2 ranks x --accum 1 vs 1 process x --accum 2: the same micro-batches
 *    and the same update, apart from float summation order (rank 0's
 *    gradient plus rank 1's, against one buffer accumulated in place).
 *    Measured on this setup: losses agree to ~2e-8 relative, parameters
 *    to 2e-7..4e-6 absolute after 8 AdamW steps at lr 3e-3 (it varies with
 *    the kernels' summation order from commit to commit). The bounds below
 *    (losses 1e-6 relative, parameters 1e-4 absolute) leave headroom for
 *    other BLAS kernels, and are far below what a different data split
 *    gives (checked: 2 ranks x --accum 2 is outside them);
 *  - the same with NEFTune's noise (keyed by example, not by rank);
 *  - a checkpoint written on 2 ranks resumes on 2 ranks to the same bytes
 *    as an uninterrupted run, and on 1 process (--accum 2) within the bounds.
 * Skips when mpirun is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include "model.h"
#include "testutil.h"

#define LOSS_RTOL 1e-6
#define PARAM_ATOL 1e-4

static int have_mpi;

static int sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static char *path(const char *name) { return wdl_path_join(tmpdir, name); }

static int group_setup(void **state) {
    if (tmpdir_setup(state)) return -1;
    have_mpi = sh("command -v mpirun >/dev/null 2>&1") == 0;
    /* Open MPI refuses root unless told; CI runs as root */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    /* containers often forbid the cross-process reads of Open MPI's
     * shared-memory transport: copy through shared buffers instead */
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    return sh("cd %s && wdl-data gen --task arith,equation --n 96 --seed 3 --split train > train.jsonl && "
              "wdl-init --preset nano --seed 1 -o m0 2>/dev/null && wdl-init --preset nano --seed 2 -o w0 2>/dev/null",
              tmpdir);
}

/* wdl-train on the shared data; np = 0: no launcher */
static void train(int np, const char *args) {
    int rc = sh("cd %s && %s wdl-train -m m0 --batch 4 --seq 128 --lr 3e-3 --threads 1 --seed 5 -q %s train.jsonl",
                tmpdir, np ? "mpirun --oversubscribe -np 2" : "", args);
    assert_int_equal(rc, 0);
}

static float *params(const char *dir, size_t *n) {
    char *p = path(dir);
    wdl_model *m = model_load(p);
    free(p);
    *n = m->nparams;
    float *v = xmalloc(*n * sizeof(float));
    memcpy(v, m->params, *n * sizeof(float));
    model_free(m);
    return v;
}

static double max_abs_diff(const char *a, const char *b) {
    size_t na, nb;
    float *x = params(a, &na), *y = params(b, &nb);
    assert_int_equal(na, nb);
    double d = 0;
    for (size_t i = 0; i < na; i++) d = fmax(d, fabs((double)x[i] - y[i]));
    free(x); free(y);
    return d;
}

static int same_bytes(const char *a, const char *b) {
    return sh("cmp -s %s/%s/model.safetensors %s/%s/model.safetensors", tmpdir, a, tmpdir, b) == 0;
}

/* largest relative difference of the per-step losses of two logs */
static double loss_diff(const char *a, const char *b) {
    char *pa = path(a), *pb = path(b);
    FILE *fa = fopen(pa, "r"), *fb = fopen(pb, "r");
    assert_non_null(fa); assert_non_null(fb);
    char la[8192], lb[8192];
    double d = 0;
    int steps = 0;
    while (fgets(la, sizeof la, fa)) {
        assert_non_null(fgets(lb, sizeof lb, fb));
        json_t *ja = json_loads(la, 0, NULL), *jb = json_loads(lb, 0, NULL);
        json_t *xa = json_object_get(ja, "loss"), *xb = json_object_get(jb, "loss");
        assert_int_equal(!xa, !xb);
        if (xa) {
            double u = json_real_value(xa), v = json_real_value(xb);
            d = fmax(d, fabs(u - v) / fmax(fabs(u), 1e-12));
            steps++;
        }
        json_decref(ja); json_decref(jb);
    }
    assert_null(fgets(lb, sizeof lb, fb));
    assert_true(steps > 0);
    fclose(fa); fclose(fb);
    free(pa); free(pb);
    return d;
}

static void sft_two_ranks_equal_accum(void **state) {
    if (!have_mpi) skip();
    train(2, "--steps 8 -o r2a --log r2a.log");
    train(2, "--steps 8 -o r2b --log r2b.log");
    assert_true(same_bytes("r2a", "r2b"));
    train(0, "--steps 8 --accum 2 -o r1 --log r1.log");
    double dl = loss_diff("r1.log", "r2a.log"), dp = max_abs_diff("r1", "r2a");
    print_message("# SFT 2 ranks vs --accum 2: loss rel diff %.2e, param max abs diff %.2e\n", dl, dp);
    assert_true(dl < LOSS_RTOL);
    assert_true(dp < PARAM_ATOL);
    /* the bounds tell a different global batch apart */
    train(2, "--steps 8 --accum 2 -o r2x");
    assert_true(max_abs_diff("r1", "r2x") > 10 * PARAM_ATOL);
}

static void wdjt_two_ranks_equal_accum(void **state) {
    if (!have_mpi) skip();
    const char *wd = "--weak w0 --steps 6";
    char args[256];
    snprintf(args, sizeof args, "%s -o j2a --weak-out j2a.weak", wd);
    train(2, args);
    snprintf(args, sizeof args, "%s -o j2b --weak-out j2b.weak", wd);
    train(2, args);
    assert_true(same_bytes("j2a", "j2b") && same_bytes("j2a.weak", "j2b.weak"));
    snprintf(args, sizeof args, "%s --accum 2 -o j1 --weak-out j1.weak", wd);
    train(0, args);
    double ds = max_abs_diff("j1", "j2a"), dw = max_abs_diff("j1.weak", "j2a.weak");
    print_message("# WD-JT 2 ranks vs --accum 2: strong %.2e, weak %.2e max abs diff\n", ds, dw);
    assert_true(ds < PARAM_ATOL && dw < PARAM_ATOL);
}

/* NEFTune's noise follows the example, not the rank that runs it */
static void neftune_two_ranks_equal_accum(void **state) {
    if (!have_mpi) skip();
    train(2, "--steps 8 --neftune 5 -o n2");
    train(0, "--steps 8 --neftune 5 --accum 2 -o n1");
    double d = max_abs_diff("n1", "n2");
    print_message("# NEFTune 2 ranks vs --accum 2: param max abs diff %.2e\n", d);
    assert_true(d < PARAM_ATOL);
    /* the noise itself moves the parameters far outside the bound */
    train(0, "--steps 8 --accum 2 -o n0");
    assert_true(max_abs_diff("n1", "n0") > 10 * PARAM_ATOL);
}

/* Stop a 2-rank run once it has written a checkpoint. The first one may
 * take a while on a loaded machine: up to 60 s (12 s failed once in CI,
 * not reproduced); on failure the directory's listing goes to stderr. */
static void interrupted_run(const char *out) {
    int rc = sh("cd %s && { mpirun --oversubscribe -np 2 wdl-train -m m0 --batch 4 --seq 128 --lr 3e-3 --threads 1 "
                "--seed 5 -q --steps 40 --save-every 5 -o %s train.jsonl >/dev/null 2>&1 & pid=$!; "
                "for i in $(seq 1 3000); do [ -f %s.ckpt/trainer.json ] && break; sleep 0.02; done; "
                "kill -TERM $pid; wait $pid; [ -f %s.ckpt/trainer.json ] && [ ! -e %s ] || "
                "{ echo \"interrupted run %s: after $i polls\" >&2; ls -la >&2; exit 1; }; }",
                tmpdir, out, out, out, out, out);
    assert_int_equal(rc, 0);
}

static void resume_across_rank_counts(void **state) {
    if (!have_mpi) skip();
    train(2, "--steps 40 -o full2");
    interrupted_run("res2");
    train(2, "--steps 40 --save-every 5 --resume -o res2");
    assert_true(same_bytes("full2", "res2"));
    interrupted_run("res1");
    train(0, "--steps 40 --accum 2 --save-every 5 --resume -o res1");
    double d = max_abs_diff("full2", "res1");
    print_message("# resumed on 1 process from a 2-rank checkpoint: param max abs diff %.2e\n", d);
    assert_true(d < PARAM_ATOL);
    /* another global batch is refused, naming the cause */
    interrupted_run("res3");
    assert_int_not_equal(sh("cd %s && wdl-train -m m0 --batch 4 --seq 128 --threads 1 --seed 5 -q --steps 40 "
                            "--resume -o res3 train.jsonl 2>err.txt", tmpdir), 0);
    assert_int_equal(sh("grep -q 'sequences per step' %s/err.txt", tmpdir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sft_two_ranks_equal_accum),
        cmocka_unit_test(wdjt_two_ranks_equal_accum),
        cmocka_unit_test(neftune_two_ranks_equal_accum),
        cmocka_unit_test(resume_across_rank_counts),
    };
    return cmocka_run_group_tests(tests, group_setup, tmpdir_teardown);
}
