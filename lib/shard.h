/* shard.h: a record stream worked on a window at a time, split over shards
 * (--shard K/N) and over the ranks of an mpirun job.
 *
 * wdl-score and wdl-eval compute W consecutive input records at a time (a
 * window: batch shapes, hence the numbers, depend only on its records), so
 * any split of the input at window boundaries gives the same bytes:
 *  - --shard K/N takes windows [K*nw/N, (K+1)*nw/N) of the nw windows of
 *    the input files (counted in a first pass: stdin cannot be sharded);
 *    the outputs of shards 0..N-1, concatenated in that order, are the
 *    output of one process over the whole input;
 *  - under mpirun, rank 0 reads the input (files or stdin), sends window j
 *    of its share to rank j % size, gets each window's records and results
 *    back, and writes them in input order; other ranks only compute.
 * Per-window results (summary sums, counts) are folded on rank 0 in window
 * order, whatever the split: a summary is the same bytes too. */
#ifndef WDL_SHARD_H
#define WDL_SHARD_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "progress.h"
#include "records.h"

typedef struct { long long k, n; } shard_spec;   /* n == 0: the whole input */

/* --shard "K/N" with 0 <= K < N (NULL: none); refuses stdin (nfiles == 0
 * or a "-" file). Problems are usage errors (one line, exit 2). */
shard_spec shard_parse(const char *s, const char *const *files, int nfiles);

/* A growable byte buffer: a window's results on their way to rank 0.
 * shard_buf_add(b, NULL, n) makes room for n more bytes, uninitialised. */
typedef struct { char *p; size_t n, cap; } shard_buf;
void shard_buf_add(shard_buf *b, const void *p, size_t n);

typedef struct {
    int64_t index;       /* the window's number in the input, from 0 */
    int64_t n;           /* records */
    json_t **rec;
    const char **name;   /* each record's input and line (for messages) */
    int64_t *line;
} shard_window;

typedef struct {
    /* Any rank: compute the window, change its records in place (they are
     * written afterwards, in order) and append results for fold to out. */
    void (*work)(shard_window *w, shard_buf *out, void *ctx);
    /* Rank 0, in window order: the results work appended. */
    void (*fold)(int64_t index, const char *res, size_t n, void *ctx);
    void *ctx;
    int64_t window;       /* W: records per window */
    rec_writer *out;      /* rank 0: where records go (NULL: nowhere) */
    wdl_progress *bar;    /* rank 0: records done (NULL: none) */
} shard_job;

/* Run the job over the input on every rank (a single process is rank 0 of
 * 1); returns, on rank 0, the number of records in this shard. */
int64_t shard_run(const shard_job *job, const char *const *files, int nfiles, shard_spec sp);

/* Partial summaries: shard_tag marks one as shard K/N of windows of W
 * records; shard_parts reads the files of shards 0..N-1 (any order) and
 * returns them in shard order (*nparts = N), dying unless each shard appears once with
 * the same N and W. Free with shard_parts_free. */
void shard_tag(json_t *summary, shard_spec sp, int64_t window);
json_t **shard_parts(const char *const *files, int n, int *nparts);
void shard_parts_free(json_t **parts, int n);
#endif
