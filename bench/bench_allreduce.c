/* bench_allreduce: the rate of wdl-train's gradient sum (dist_sum_f32:
 * rank-order reduce-scatter + all-gather) on this machine's transport.
 * Run under mpirun -np N; prints one JSON line per size from rank 0:
 * seconds per sum, the buffer rate (bytes / time) and the bus rate
 * (2(N-1)/N bytes moved per rank / time, comparable to a link's speed). */
#include <stdio.h>
#include <stdlib.h>
#include "cli.h"
#include "common.h"
#include "dist.h"

static const char *usage =
    "usage: mpirun -np N bench_allreduce [--reps R]\n"
    "Time the rank-order gradient sum of wdl-train on 1M, 4M, 16M and 64M floats.\n";

int main(int argc, char **argv) {
    long long reps = 10;
    const cli_opt opts[] = {{"reps", 0, CLI_INT, &reps}, {0}};
    cli_common cli;
    cli_parse_mpi(argc, argv, usage, opts, &cli);
    cli_stdout_only(&cli, 0);
    free(cli.args);   /* it takes no arguments */
    if (reps < 1) cli_usage_error("--reps: must be at least 1, got %lld", reps);
    dist_init();
    int N = dist_size();
    if (N < 2) {
        fprintf(stderr, "%s: one process: nothing to measure (run under mpirun -np 2)\n", wdl_prog);
        return 0;
    }
    const int64_t piece = (int64_t)1 << 22;
    float *scratch = xaligned(dist_scratch_elems(piece) * sizeof(float));
    for (int64_t n = (int64_t)1 << 20; n <= (int64_t)1 << 26; n <<= 2) {
        float *buf = xaligned((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) buf[i] = 1e-3f * (float)(i % 1000);
        dist_sum_f32(buf, n, scratch, piece);   /* warm-up: pages, connections */
        dist_barrier();
        double t0 = wdl_now();
        for (long long r = 0; r < reps; r++) dist_sum_f32(buf, n, scratch, piece);
        dist_barrier();
        double dt = (wdl_now() - t0) / (double)reps, bytes = (double)n * 4;
        if (dist_rank() == 0)
            printf("{\"bench\":\"allreduce\",\"ranks\":%d,\"floats\":%lld,\"seconds\":%.6f,\"buffer_gbps\":%.2f,"
                   "\"bus_gbps\":%.2f}\n", N, (long long)n, dt, bytes / dt / 1e9, 2.0 * (N - 1) / N * bytes / dt / 1e9);
        free(buf);
    }
    free(scratch);
    dist_finish();
    return 0;
}
