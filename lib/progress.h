/* progress.h: one line of progress on stderr for long steps (training,
 * scoring, evaluation, generation): a bar when the total is known, the
 * count, the rate and the time left. Shown only when stderr is a terminal
 * and the program is not quiet; redrawn at most 10 times a second. */
#ifndef WDL_PROGRESS_H
#define WDL_PROGRESS_H
#include <stdint.h>

typedef struct {
    int on;
    const char *unit;   /* "steps", "records", ... */
    int64_t total;      /* 0 = unknown */
    int64_t first;      /* done when started (a resumed run): not in the rate */
    double t0, drawn;
} wdl_progress;

void progress_start(wdl_progress *p, const char *unit, int64_t total, int quiet);
/* done so far; extra (may be NULL) is appended, e.g. "loss 1.234". */
void progress_update(wdl_progress *p, int64_t done, const char *extra);
/* Draw the final state and end the line. */
void progress_end(wdl_progress *p, int64_t done, const char *extra);
#endif
