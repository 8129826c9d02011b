/* dist.c: the MPI layer of dist.h. */
#include "dist.h"
#include <mpi.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include "common.h"

/* The job this process belongs to; MPI's own world is process-wide, so
 * its description is too. */
static struct {
    int on;        /* MPI_Init was called */
    int rank, size;
    double comm_s, wait_s;
} world = {0, 0, 1, 0, 0};

/* the first of the launchers' variables that is set, else fallback */
static int env_int(const char *const *names, int fallback) {
    for (; *names; names++) {
        const char *v = getenv(*names);
        if (v && *v) return atoi(v);
    }
    return fallback;
}
static const char *const RANK_VARS[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", NULL};
static const char *const SIZE_VARS[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL};
static const char *const LOCAL_VARS[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", NULL};

int dist_launched(void) { return env_int(RANK_VARS, -1) >= 0; }
int dist_launched_rank(void) { return env_int(RANK_VARS, 0); }
int dist_launched_size(void) { return env_int(SIZE_VARS, 1); }
int dist_launched_local_size(void) { return env_int(LOCAL_VARS, 1); }

/* die() on one rank ends the job: the message names the rank, then
 * MPI_Abort stops the others (they would otherwise wait forever in the
 * next collective). Temporary outputs were removed before this runs. */
static void abort_job(int code) {
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    _exit(code ? code : 1);
}

void dist_init(void) {
    if (world.on || !dist_launched()) return;
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        die("MPI_Init failed");
    world.on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
    if (world.size > 1) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "rank %d: ", world.rank);
        wdl_set_message_prefix(prefix);
        wdl_set_exit_hook(abort_job);
    }
}

void dist_finish(void) {
    if (!world.on) return;
    MPI_Finalize();
    world.on = 0;
}

int dist_rank(void) { return world.rank; }
int dist_size(void) { return world.size; }
double dist_comm_seconds(void) { return world.comm_s; }
double dist_wait_seconds(void) { return world.wait_s; }

size_t dist_scratch_elems(int64_t piece) {
    /* one segment from every rank */
    int64_t seg = (piece + world.size - 1) / world.size;
    return (size_t)(seg * world.size);
}

/* MPI counts are int: move large buffers in slices below 1 GiB. */
#define SLICE ((size_t)1 << 30)

void dist_sum_f32(float *buf, int64_t n, float *scratch, int64_t piece) {
    if (world.size == 1 || n == 0) return;
    double t0 = wdl_now();
    const int N = world.size, me = world.rank;
    int cnt[N], off[N], rcnt[N], roff[N];
    for (int64_t p0 = 0; p0 < n; p0 += piece) {
        int64_t L = n - p0 < piece ? n - p0 : piece, seg = (L + N - 1) / N;
        float *b = buf + p0;
        for (int r = 0; r < N; r++) {
            int64_t a = r * seg < L ? r * seg : L, e = (r + 1) * seg < L ? (r + 1) * seg : L;
            off[r] = (int)a;
            cnt[r] = (int)(e - a);
        }
        /* reduce-scatter: rank r gathers segment r of every rank ... */
        for (int r = 0; r < N; r++) { rcnt[r] = cnt[me]; roff[r] = (int)(r * seg); }
        MPI_Alltoallv(b, cnt, off, MPI_FLOAT, scratch, rcnt, roff, MPI_FLOAT, MPI_COMM_WORLD);
        /* ... and sums it in rank order */
        float *mine = b + off[me];
        for (int64_t i = 0; i < cnt[me]; i++) {
            float s = scratch[i];
            for (int r = 1; r < N; r++) s += scratch[r * seg + i];
            mine[i] = s;
        }
        /* all-gather the summed segments */
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b, cnt, off, MPI_FLOAT, MPI_COMM_WORLD);
    }
    world.comm_s += wdl_now() - t0;
}

void dist_gather_f64(double v, double *all) {
    if (world.size == 1) { all[0] = v; return; }
    double t0 = wdl_now();
    MPI_Allgather(&v, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, MPI_COMM_WORLD);
    world.comm_s += wdl_now() - t0;
}

void dist_wait_for_abort(void) {
    for (;;) pause();   /* MPI_Abort's SIGTERM ends this (common.c's handler) */
}

void dist_sum_i64(int64_t *v, int n) {
    if (world.size == 1 || n == 0) return;
    double t0 = wdl_now();
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);   /* exact */
    world.comm_s += wdl_now() - t0;
}

void dist_bcast(void *buf, size_t bytes, int root) {
    if (world.size == 1) return;
    double t0 = wdl_now();
    for (size_t o = 0; o < bytes; o += SLICE)
        MPI_Bcast((char *)buf + o, (int)(bytes - o < SLICE ? bytes - o : SLICE), MPI_BYTE, root, MPI_COMM_WORLD);
    world.comm_s += wdl_now() - t0;
}

void dist_barrier(void) {
    if (world.size > 1) MPI_Barrier(MPI_COMM_WORLD);
}

void dist_wait_for_others(void) {
    if (world.size == 1) return;
    double t0 = wdl_now();
    MPI_Barrier(MPI_COMM_WORLD);
    world.wait_s += wdl_now() - t0;
}

void dist_send(const void *buf, size_t bytes, int to) {
    for (size_t o = 0; o < bytes || o == 0; o += SLICE) {
        MPI_Send((const char *)buf + o, (int)(bytes - o < SLICE ? bytes - o : SLICE), MPI_BYTE, to, 0, MPI_COMM_WORLD);
        if (bytes == 0) break;
    }
}

void dist_recv(void *buf, size_t bytes, int from) {
    for (size_t o = 0; o < bytes || o == 0; o += SLICE) {
        MPI_Recv((char *)buf + o, (int)(bytes - o < SLICE ? bytes - o : SLICE), MPI_BYTE, from, 0, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        if (bytes == 0) break;
    }
}
