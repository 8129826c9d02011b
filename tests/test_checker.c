/* test_checker.c: answer extraction, numeric comparison, the per-task
 * checks, the summary, and the two expression languages they run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "checker.h"
#include "common.h"
#include "exprlang.h"

static void expect_extract(const char *pred, const char *want) {
    char *got = check_extract(pred);
    if (!want) {
        if (got) fail_msg("extract(%s) = '%s', want NULL", pred, got);
    } else {
        if (!got) fail_msg("extract(%s) = NULL, want '%s'", pred, want);
        if (strcmp(got, want)) fail_msg("extract(%s) = '%s', want '%s'", pred, got, want);
    }
    free(got);
}

static void test_extract(void **st) {
    expect_extract("so \\boxed{42}.", "42");
    expect_extract("\\boxed{1} then \\boxed{ 7 }", "7");
    expect_extract("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}");
    expect_extract("\\boxed {x^{2}} and more 99", "x^{2}");
    expect_extract("<think>a</think> <answer> 3 + 4 = 7. \\boxed{7} </answer>", "7");
    expect_extract("\\boxed{12 unbalanced. The answer is 13.", "13");
    expect_extract("blah. The answer is 576. Next sentence 9.", "576");
    expect_extract("THE ANSWER IS: $3.5$", "3.5");
    expect_extract("The answer is (D).", "(D)");
    expect_extract("work 1 2 3\n#### 1,234\n", "1,234");
    expect_extract("12 + 7 = 19. 19 * 3 = 57.", "57");
    expect_extract("values -3 and 4.25 and 7/8 then", "7/8");
    expect_extract("x-5", "5");
    expect_extract("no digits here", NULL);
    expect_extract("", NULL);
    assert_null(check_extract(NULL));
}

static void expect_num(const char *s, int ok, double v) {
    double got = -12345;
    int r = check_number(s, &got);
    if (r != ok) fail_msg("check_number(%s) = %d, want %d", s, r, ok);
    if (ok && !(got > v - 1e-9 && got < v + 1e-9)) fail_msg("check_number(%s) = %g, want %g", s, got, v);
}

static void test_numbers(void **st) {
    expect_num("42", 1, 42);
    expect_num("-3", 1, -3);
    expect_num("1,234,567", 1, 1234567);
    expect_num("3/4", 1, 0.75);
    expect_num("\\frac{3}{4}", 1, 0.75);
    expect_num("-\\dfrac{1}{8}", 1, -0.125);
    expect_num("45%", 1, 45);
    expect_num("45\\%", 1, 45);
    expect_num("$12.50", 1, 12.5);
    expect_num("\\$ 7", 1, 7);
    expect_num("12 apples", 1, 12);
    expect_num("x = 7", 1, 7);
    expect_num("336^\\circ", 1, 336);
    expect_num("\\text{5 cm}", 1, 5);
    expect_num("576.0", 1, 576);
    expect_num("2 + 3", 0, 0);
    expect_num("\\sqrt{2}", 0, 0);
    expect_num("1 1/2", 0, 0);
    expect_num("abc", 0, 0);
    expect_num("", 0, 0);
    expect_num("3/0", 0, 0);
}

static json_t *rec(const char *json) {
    json_error_t e;
    json_t *r = json_loads(json, 0, &e);
    if (!r) fail_msg("bad test json: %s", e.text);
    return r;
}

static int check(const char *json, const char *pred) {
    json_t *r = rec(json);
    char *ex = NULL;
    int ok = check_record(r, pred, &ex);
    free(ex);
    json_decref(r);
    return ok;
}

static void test_numeric_tasks(void **st) {
    const char *r = "{\"task\":\"gsm8k\",\"answer\":\"1234\"}";
    assert_true(check(r, "so \\boxed{1,234}"));
    assert_true(check(r, "The answer is $1,234."));
    assert_true(check(r, "#### 1234"));
    assert_true(check(r, "It is 1234 dollars"));
    assert_false(check(r, "\\boxed{1235}"));
    assert_false(check(r, "nothing"));
    assert_false(check(r, ""));
    /* relative tolerance 1e-4 */
    assert_true(check("{\"task\":\"arith\",\"answer\":\"100\"}", "\\boxed{100.005}"));
    assert_false(check("{\"task\":\"arith\",\"answer\":\"100\"}", "\\boxed{100.02}"));
    assert_true(check("{\"task\":\"amc\",\"answer\":\"0.75\"}", "\\boxed{\\frac{3}{4}}"));
    assert_true(check("{\"task\":\"aime\",\"answer\":\"336\"}", "\\boxed{336^\\circ}"));
    assert_true(check("{\"task\":\"gsm8k\",\"answer\":\"25\"}", "\\boxed{25\\%}"));
    assert_true(check("{\"task\":\"gsm8k\",\"answer\":576.0}", "\\boxed{576}"));
    /* non-numeric answers compare as normalised text */
    assert_true(check("{\"task\":\"math\",\"answer\":\"\\\\sqrt{2}\"}", "\\boxed{ \\sqrt{2} }"));
    assert_false(check("{\"task\":\"math\",\"answer\":\"\\\\sqrt{2}\"}", "\\boxed{\\sqrt{3}}"));
    /* no answer in the record: never correct */
    assert_false(check("{\"task\":\"gsm8k\"}", "\\boxed{1}"));
    assert_false(check("{\"task\":\"gsm8k\",\"answer\":\"1\"}", NULL));
}

static void test_equation_task(void **st) {
    const char *r = "{\"task\":\"equation\",\"answer\":\"2\"}";
    assert_true(check(r, "x=(22-14)/4"));
    assert_true(check(r, " X = 8 / 4 \nextra text"));
    assert_true(check(r, "2"));
    assert_true(check(r, "the result is \\boxed{2}"));
    assert_false(check(r, "x=22-14/4"));
    assert_false(check(r, "x=(("));
    assert_false(check(r, "x=1/0"));
    /* mawps/svamp accept an equation or a number */
    assert_true(check("{\"task\":\"mawps\",\"answer\":\"18\"}", "x=3*6"));
    assert_true(check("{\"task\":\"svamp\",\"answer\":\"18\"}", "\\boxed{18}"));
    assert_false(check("{\"task\":\"mawps\",\"answer\":\"18\"}", "x=3*7"));
    char *ex = NULL;
    json_t *j = rec(r);
    check_record(j, "x=(22-14)/4", &ex);
    assert_string_equal(ex, "2");
    free(ex);
    json_decref(j);
}

static const char *prog_rec =
    "{\"task\":\"prog\",\"answer\":\"x*3+2\",\"tests\":[{\"in\":{\"x\":1},\"out\":5},"
    "{\"in\":{\"x\":-4},\"out\":-10},{\"in\":{\"x\":0},\"out\":2}]}";

static void test_prog_task(void **st) {
    assert_true(check(prog_rec, "x*3+2"));
    assert_true(check(prog_rec, "2 + 3 * x"));
    assert_true(check(prog_rec, "```\nlet y = x*3 in y+2\n```"));
    assert_true(check(prog_rec, "x*3+2\nThis multiplies by three."));
    assert_false(check(prog_rec, "x*3+1"));
    assert_false(check(prog_rec, "y*3+2"));
    assert_false(check(prog_rec, "sum(range(0, 1000000000))"));
    assert_false(check(prog_rec, "sum(map(range(0,90000), v => sum(range(0,90000))))"));
    assert_false(check(prog_rec, ""));
    /* a record without tests is never passed */
    assert_false(check("{\"task\":\"prog\",\"answer\":\"x\"}", "x"));
    const char *lists = "{\"task\":\"prog\",\"tests\":[{\"in\":{\"l\":[1,2,3]},\"out\":[2,4,6]},"
                        "{\"in\":{\"l\":[]},\"out\":[]}]}";
    assert_true(check(lists, "map(l, v => v*2)"));
    assert_false(check(lists, "l"));
}

static void test_aqua_task(void **st) {
    const char *r = "{\"task\":\"aqua\",\"answer\":\"C\",\"choices\":{\"A\":\"60 m\",\"B\":\"61 m\","
                    "\"C\":\"62 m\",\"D\":\"63 m\",\"E\":\"64 m\"}}";
    assert_true(check(r, "So the perimeter is 62. The answer is (C)."));
    assert_true(check(r, "\\boxed{C}"));
    assert_true(check(r, "The answer is C"));
    assert_true(check(r, "The answer is 62 m."));
    assert_true(check(r, "thinking... (A) is wrong, (C) fits"));
    assert_true(check(r, "the perimeter is 62"));
    assert_false(check(r, "The answer is (D)."));
    assert_false(check(r, "\\boxed{61}"));
    assert_false(check(r, "Each answer is wrong"));
}

/* Garbage, huge and adversarial predictions: no crash, quick. */
static void test_garbage(void **st) {
    size_t n = 1 << 20;
    char *big = xmalloc(n + 1);
    const char *tasks[] = {"{\"task\":\"arith\",\"answer\":\"5\"}", "{\"task\":\"equation\",\"answer\":\"5\"}",
                           prog_rec, "{\"task\":\"aqua\",\"answer\":\"A\",\"choices\":{\"A\":\"5\"}}",
                           "{\"task\":\"mawps\",\"answer\":\"5\"}"};
    const char *fills[] = {"\\boxed{", "(((((", "answer is ", "1,23", "-", "\xff\xfe", "#### ", "x=", "}{"};
    wdl_rng r;
    rng_seed(&r, 5);
    double t0 = wdl_now();
    for (size_t f = 0; f < sizeof fills / sizeof fills[0] + 1; f++) {
        if (f < sizeof fills / sizeof fills[0]) {
            size_t k = strlen(fills[f]);
            for (size_t i = 0; i < n; i++) big[i] = fills[f][i % k];
        } else {
            for (size_t i = 0; i < n; i++) big[i] = (char)(1 + rng_below(&r, 255));
        }
        big[n] = 0;
        for (size_t t = 0; t < sizeof tasks / sizeof tasks[0]; t++) {
            char *ex = NULL;
            json_t *j = rec(tasks[t]);
            check_record(j, big, &ex);
            free(ex);
            json_decref(j);
        }
    }
    double dt = wdl_now() - t0;
    if (dt > 20) fail_msg("garbage predictions took %.1f s", dt);
    free(big);
}

static void test_summary(void **st) {
    eval_summary *s = evsum_new();
    evsum_add(s, "prog", 1);
    evsum_add(s, "arith", 0);
    evsum_add(s, "arith", 1);
    evsum_add(s, "arith", 1);
    evsum_add(s, NULL, 0);
    json_t *j = evsum_json(s);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 5);
    assert_int_equal(json_integer_value(json_object_get(j, "correct")), 3);
    assert_true(json_real_value(json_object_get(j, "accuracy")) == 0.6);
    json_t *t = json_object_get(j, "tasks");
    assert_int_equal(json_object_size(t), 3);
    json_t *a = json_object_get(t, "arith");
    assert_int_equal(json_integer_value(json_object_get(a, "n")), 3);
    assert_int_equal(json_integer_value(json_object_get(a, "correct")), 2);
    /* tasks are sorted by name */
    const char *first = json_object_iter_key(json_object_iter(t));
    assert_string_equal(first, "arith");
    json_decref(j);
    evsum_free(s);
    s = evsum_new();
    j = evsum_json(s);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 0);
    assert_true(json_real_value(json_object_get(j, "accuracy")) == 0.0);
    json_decref(j);
    evsum_free(s);
}

/* ---------- exprlang ---------- */
static json_t *run_prog(const char *src, const char *inputs, char *err) {
    exl_prog *p = exl_parse(src, err, 200);
    if (!p) return NULL;
    json_t *in = inputs ? rec(inputs) : NULL, *out = NULL;
    exl_run_json(p, in, 100000, &out, err, 200);
    json_decref(in);
    exl_free(p);
    return out;
}

static void expect_int(const char *src, const char *inputs, long long want) {
    char err[200] = "";
    json_t *out = run_prog(src, inputs, err);
    if (!out) fail_msg("%s: error %s", src, err);
    if (!json_is_integer(out) || json_integer_value(out) != want)
        fail_msg("%s = %s, want %lld", src, json_dumps(out, JSON_ENCODE_ANY), want);
    json_decref(out);
}

static void expect_error(const char *src, const char *inputs, const char *msg_part) {
    char err[200] = "";
    json_t *out = run_prog(src, inputs, err);
    if (out) fail_msg("%s: expected an error, got %s", src, json_dumps(out, JSON_ENCODE_ANY));
    if (!strstr(err, msg_part)) fail_msg("%s: error '%s' lacks '%s'", src, err, msg_part);
}

static void test_exprlang(void **st) {
    expect_int("1 + 2 * 3", NULL, 7);
    expect_int("(1 + 2) * 3", NULL, 9);
    expect_int("-7 / 2", NULL, -4);     /* floor division */
    expect_int("-7 % 3", NULL, 2);      /* modulo sign of the divisor */
    expect_int("7 % -3", NULL, -2);
    expect_int("2 - 3 - 4", NULL, -5);  /* left associative */
    expect_int("x * x + 1", "{\"x\":-5}", 26);
    expect_int("if a > b then a else b", "{\"a\":3,\"b\":9}", 9);
    expect_int("if x < 0 then -1 else if x > 0 then 1 else 0", "{\"x\":0}", 0);
    expect_int("let y = x + 1 in y * y", "{\"x\":2}", 9);
    expect_int("1 < 2 and not 3 == 4 or 0", NULL, 1);
    expect_int("sum(l) + len(l) + max(l) + min(l)", "{\"l\":[4,-2,7]}", 9 + 3 + 7 - 2);
    expect_int("l[0] + l[-1]", "{\"l\":[4,-2,7]}", 11);
    expect_int("max(3, 8) - min(3, 8) + abs(-4)", NULL, 9);
    expect_int("sum(range(1, 11))", NULL, 55);
    expect_int("len(filter(range(10), v => v % 2 == 0))", NULL, 5);
    expect_int("sum(map([1,2,3], v => v * v))", NULL, 14);
    expect_int("len(reverse([1,2]) + [3])", NULL, 3);
    expect_int("[1,2] == [1,2]", NULL, 1);
    expect_int("sum(map(range(3), v => sum(map(range(3), w => v * w))))", NULL, 9);
    char err[200];
    json_t *o = run_prog("map(l, v => v + 1)", "{\"l\":[1,2]}", err);
    assert_non_null(o);
    json_t *want = json_pack("[i,i]", 2, 3);
    assert_true(json_equal(o, want));
    json_decref(want);
    json_decref(o);

    expect_error("1 / 0", NULL, "division by zero");
    expect_error("x % 0", "{\"x\":1}", "modulo by zero");
    expect_error("9223372036854775807 + 1", NULL, "overflow");
    expect_error("y", "{\"x\":1}", "unknown name");
    expect_error("foo(1)", NULL, "unknown function");
    expect_error("l[5]", "{\"l\":[1]}", "out of range");
    expect_error("max(l)", "{\"l\":[]}", "empty");
    expect_error("sum(range(0, 1000000000))", NULL, "list longer");
    expect_error("sum(map(range(0, 50000), v => sum(range(0, 50000))))", NULL, "step limit");
    expect_error("x +", "{\"x\":1}", "unexpected end");
    expect_error("1 2", NULL, "after the expression");
    expect_error("if 1 then 2", NULL, "'else'");
    expect_error("x $ 2", NULL, "unexpected character");
    expect_error("99999999999999999999", NULL, "too large");
    expect_error("x + 1", "{\"x\":\"s\"}", "not an integer");

    /* deep nesting is rejected, not a stack overflow */
    size_t n = 100000;
    char *deep = xmalloc(2 * n + 2);
    memset(deep, '(', n);
    deep[n] = '1';
    memset(deep + n + 1, ')', n);
    deep[2 * n + 1] = 0;
    assert_null(exl_parse(deep, err, sizeof err));
    deep[EXL_MAX_SRC / 2] = 0;
    assert_null(exl_parse(deep, err, sizeof err));
    double v;
    assert_int_equal(eq_eval(deep, &v, err, sizeof err), 0);
    for (size_t i = 0; i < 4000; i++) { deep[2 * i] = '1'; deep[2 * i + 1] = '+'; }
    deep[7999] = 0;
    deep[7998] = '1';
    exl_prog *p = exl_parse(deep, err, sizeof err); /* a long flat chain is too deep as well */
    assert_null(p);
    free(deep);
}

static void test_equations(void **st) {
    double v;
    char err[100];
    assert_int_equal(eq_eval("x=(22-14)/4", &v, err, sizeof err), 1);
    assert_true(v == 2);
    assert_int_equal(eq_eval("X = 8100.0*15.0*0.01", &v, err, sizeof err), 1);
    assert_true(v > 1214.999 && v < 1215.001);
    assert_int_equal(eq_eval("2^3^2", &v, err, sizeof err), 1);
    assert_true(v == 512);
    assert_int_equal(eq_eval("-(3) * -2", &v, err, sizeof err), 1);
    assert_true(v == 6);
    assert_int_equal(eq_eval(".5+1.", &v, err, sizeof err), 1);
    assert_true(v == 1.5);
    assert_int_equal(eq_eval("x=1/0", &v, err, sizeof err), 0);
    assert_int_equal(eq_eval("x=0.32=0.21", &v, err, sizeof err), 0);
    assert_int_equal(eq_eval("x-2=6", &v, err, sizeof err), 0);
    assert_int_equal(eq_eval("0x10", &v, err, sizeof err), 0);
    assert_int_equal(eq_eval("inf", &v, err, sizeof err), 0);
    assert_int_equal(eq_eval("", &v, err, sizeof err), 0);
    assert_int_equal(eq_eval("x=", &v, err, sizeof err), 0);
}

int main(void) {
    wdl_set_prog("test_checker");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extract),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_numeric_tasks),
        cmocka_unit_test(test_equation_task),
        cmocka_unit_test(test_prog_task),
        cmocka_unit_test(test_aqua_task),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_exprlang),
        cmocka_unit_test(test_equations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
