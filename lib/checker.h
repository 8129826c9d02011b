/* checker.h: answer extraction and checking, and the accuracy summary.
 * Dispatch is on the record's "task": equation (run the predicted
 * equation), prog (run the predicted program on the hidden "tests"), aqua
 * (option letter), mawps/svamp (a predicted equation is run, else the
 * number), anything else numeric (fractions, commas, percent signs, units
 * and trailing text handled; two integers must be equal, otherwise
 * relative tolerance 1e-4) with a normalised string compare for
 * non-numeric answers. Nothing here crashes
 * or hangs on garbage, infinite loops or a megabyte of prediction. */
#ifndef WDL_CHECKER_H
#define WDL_CHECKER_H
#include <jansson.h>

/* Final answer of a prediction: the last \boxed{...} (nested braces),
 * else "The answer is X", else "#### X", else the last number.
 * malloc'd, or NULL when there is none. */
char *check_extract(const char *prediction);

/* Numeric value of an answer string ("1,234", "3/4", "\frac{3}{4}",
 * "45%", "$12.50", "x = 7", "12 apples", "336^\circ"). 1 if numeric. */
int check_number(const char *s, double *v);

/* Why rec cannot be checked (NULL when it can): a "task" that is not a
 * string; for prog, "tests" that are not a non-empty list of {"in",
 * "out"}; for the others, no "answer" that is a non-empty string or a
 * number. A record without one would only ever count as wrong. */
const char *check_gradable(const json_t *rec);

/* 1 if the prediction is correct for rec. *extracted (if not NULL) gets
 * the malloc'd extracted answer or NULL. */
int check_record(json_t *rec, const char *prediction, char **extracted);

/* Accuracy summary, overall and per task (tasks sorted by name). */
typedef struct eval_summary eval_summary;
eval_summary *evsum_new(void);
void evsum_add(eval_summary *s, const char *task, int correct);
/* n records of a task at once, `correct` of them correct (merging). */
void evsum_add_n(eval_summary *s, const char *task, long long n, long long correct);
/* {"accuracy": x, "n": n, "correct": c, "tasks": {"arith": {...}, ...}} */
json_t *evsum_json(const eval_summary *s);
void evsum_free(eval_summary *s);
#endif
