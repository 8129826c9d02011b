/* tasks.h: the built-in task generators (wdl-data gen).
 * Every record is a deterministic function of (task, seed, split,
 * difficulty). The split a prompt belongs to is a hash of its normalised
 * text, so train/dev/test never share a prompt whatever seeds are used. */
#ifndef WDL_TASKS_H
#define WDL_TASKS_H
#include <jansson.h>
#include <stdint.h>
#include "common.h"

enum { TASK_ARITH, TASK_EQUATION, TASK_PROG, TASK_MIX };
/* A list of kinds ("equation,prog"): TASK_LIST + a bit mask of the kinds;
 * records cycle through the listed kinds in the order arith, equation,
 * prog, as "mix" does through all three. */
enum { TASK_LIST = 16 };
enum { SPLIT_TRAIN, SPLIT_DEV, SPLIT_TEST };

int task_kind(const char *name);    /* TASK_*, TASK_LIST + mask, or -1 */
int task_split(const char *name);   /* SPLIT_* or -1 */
/* Split a prompt belongs to: hash of the lowercased, space-collapsed text
 * mod 10: 0-7 train, 8 dev, 9 test. */
int task_split_of(const char *prompt);

typedef struct {
    int kind, split, difficulty;
    int kinds[3], nkinds;   /* what a record can be, cycled through */
    wdl_rng rng;
    int64_t count;      /* records emitted so far (= next idx) */
    uint64_t *seen;     /* open-addressing set of prompt hashes */
    size_t seen_cap, seen_n;
} task_gen;

void task_gen_init(task_gen *g, int kind, uint64_t seed, int split, int difficulty);
/* Next record of the wanted split (new reference). Dies when the prompt
 * space of the difficulty is exhausted. */
json_t *task_gen_next(task_gen *g);
void task_gen_free(task_gen *g);

/* One candidate of a single kind, any split (for tests and fuzzing). */
json_t *task_make(int kind, wdl_rng *rng, int difficulty);
#endif
