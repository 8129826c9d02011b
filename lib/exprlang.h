/* exprlang.h: the two tiny languages the built-in tasks are answered in.
 *
 * 1. Programs ("prog" task): integer expressions over named inputs.
 *      expr := if expr then expr else expr | let NAME = expr in expr | or
 *      or/and/not, comparisons == != < <= > >= (1 or 0), + - * / % (floor
 *      division and modulo, as in Python), unary -, l[i], [a, b, ...],
 *      calls: abs(x) len(l) sum(l) max(l)|max(a,b) min(l)|min(a,b)
 *      range(n)|range(a,b) reverse(l) map(l, v => e) filter(l, v => e)
 *    Values are 64-bit integers or lists of them. Evaluation is bounded by a
 *    step limit and a list-size limit, and overflow is an error, so running
 *    an untrusted prediction never hangs or crashes.
 * 2. Equations ("equation" task, MAWPS style): "x = expr" (or just expr)
 *    with decimal numbers, + - * / ^ and parentheses, in doubles. */
#ifndef WDL_EXPRLANG_H
#define WDL_EXPRLANG_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define EXL_MAX_SRC 8192     /* longer programs are rejected */
#define EXL_MAX_LIST 100000  /* longest list a program may build */

typedef struct exl_prog exl_prog;
/* Parse a program; NULL on a syntax error (message in err). */
exl_prog *exl_parse(const char *src, char *err, size_t errlen);
void exl_free(exl_prog *p);

/* Run with inputs from a JSON object ({"x": 3, "l": [1, 2]}: integers or
 * arrays of integers). On success returns 1 and sets *out to a new JSON
 * integer or array; on any error (unbound name, overflow, division by
 * zero, step limit...) returns 0 with a message in err. */
int exl_run_json(const exl_prog *p, json_t *inputs, int64_t max_steps, json_t **out,
                 char *err, size_t errlen);

/* Evaluate "x = expr" / "expr" in doubles. Returns 1 and sets *out, or 0
 * (message in err) for a syntax error or a non-finite result. */
int eq_eval(const char *src, double *out, char *err, size_t errlen);
#endif
