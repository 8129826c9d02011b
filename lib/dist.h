/* dist.h: running as one of N processes (ranks) over MPI.
 * A program that mpirun started is rank 0..N-1 of N; started any other way
 * it is rank 0 of 1 and MPI is never initialised, so nothing needs an MPI
 * launcher or runtime unless a user asks for one.
 *
 * Every collective here is deterministic: sums are taken in rank order
 * (rank 0's value first), whatever algorithm the MPI library would pick,
 * so the same inputs on the same number of ranks give the same bytes. */
#ifndef WDL_DIST_H
#define WDL_DIST_H
#include <stddef.h>
#include <stdint.h>

/* Join the job when mpirun (or another PMIx/PMI launcher) started this
 * process; otherwise do nothing. Call once, after cli_parse. From then on
 * die() on any rank prints "wdl-prog: rank R: message" and ends the whole
 * job (MPI_Abort) instead of leaving the other ranks waiting. */
void dist_init(void);
/* Leave the job (MPI_Finalize); a no-op for a single process. */
void dist_finish(void);
int dist_rank(void);
int dist_size(void);
/* What the launcher told this process before any MPI call (its
 * environment; 0/1/1 without a launcher): whether one started it, its rank,
 * the number of ranks, and how many of them share this machine. The
 * command-line layer reads these before dist_init (usage errors said once,
 * threads per rank, programs that do not run as ranks). */
int dist_launched(void);
int dist_launched_rank(void);
int dist_launched_size(void);
int dist_launched_local_size(void);

/* buf[0..n) becomes the sum over ranks, in rank order, on every rank.
 * Data moves as a reduce-scatter and an all-gather (2(N-1)/N of buf per
 * rank, as a ring allreduce), in pieces of at most `piece` floats;
 * scratch holds dist_scratch_elems(piece) floats, owned by the caller. */
void dist_sum_f32(float *buf, int64_t n, float *scratch, int64_t piece);
size_t dist_scratch_elems(int64_t piece);
/* Every rank's v, in rank order, into all[0..size). */
void dist_gather_f64(double v, double *all);
/* For a rank that found another rank failing: wait for that rank's die()
 * to end the job, so that exactly one rank reports. */
_Noreturn void dist_wait_for_abort(void);
/* Sum of small integer arrays (token counts), exact, on every rank. */
void dist_sum_i64(int64_t *v, int n);
/* Copy root's bytes to every rank (any size). */
void dist_bcast(void *buf, size_t bytes, int root);
/* Wait for every rank. */
void dist_barrier(void);
/* The same, timed apart from communication (dist_wait_seconds): called
 * where ranks finish unequal work, so that the collectives after it time
 * the data movement alone. */
void dist_wait_for_others(void);
/* Point to point: bytes to or from one rank (any size). */
void dist_send(const void *buf, size_t bytes, int to);
void dist_recv(void *buf, size_t bytes, int from);
/* Seconds spent inside the collectives above since dist_init (the
 * communication share that wdl-train reports), and, apart from those,
 * seconds spent in dist_wait_for_others. */
double dist_comm_seconds(void);
double dist_wait_seconds(void);
#endif
