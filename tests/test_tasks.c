/* test_tasks.c: built-in task generators: determinism, disjoint splits,
 * record shape and size, answers that the checker accepts, difficulty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "checker.h"
#include "common.h"
#include "records.h"
#include "tasks.h"

/* Generate n records as one string (their serialized lines). */
static char *gen_text(int kind, uint64_t seed, int split, int d, int n) {
    task_gen g;
    task_gen_init(&g, kind, seed, split, d);
    size_t cap = 1 << 16, len = 0;
    char *out = xmalloc(cap);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        json_t *v = task_gen_next(&g);
        size_t k;
        char *s = rec_dumps(v, &k);
        while (len + k + 2 > cap) { cap *= 2; out = xrealloc(out, cap); }
        memcpy(out + len, s, k);
        len += k;
        out[len++] = '\n';
        out[len] = 0;
        free(s);
        json_decref(v);
    }
    task_gen_free(&g);
    return out;
}

static void test_names(void **st) {
    assert_int_equal(task_kind("arith"), TASK_ARITH);
    assert_int_equal(task_kind("equation"), TASK_EQUATION);
    assert_int_equal(task_kind("prog"), TASK_PROG);
    assert_int_equal(task_kind("mix"), TASK_MIX);
    assert_int_equal(task_kind("nope"), -1);
    assert_int_equal(task_split("train"), SPLIT_TRAIN);
    assert_int_equal(task_split("dev"), SPLIT_DEV);
    assert_int_equal(task_split("test"), SPLIT_TEST);
    assert_int_equal(task_split("valid"), -1);
    /* the split ignores case and spacing */
    assert_int_equal(task_split_of("Ann has 3  apples."), task_split_of("  ann HAS 3 apples. "));
}

static void test_deterministic(void **st) {
    for (int k = 0; k <= TASK_MIX; k++) {
        char *a = gen_text(k, 42, SPLIT_TRAIN, 2, 100), *b = gen_text(k, 42, SPLIT_TRAIN, 2, 100);
        char *c = gen_text(k, 43, SPLIT_TRAIN, 2, 100);
        assert_string_equal(a, b);
        assert_true(strcmp(a, c) != 0);
        free(a); free(b); free(c);
    }
}

/* Every record: shape, sizes, split, unique prompt, checker accepts its
 * own completion and answer, rejects a wrong answer. */
static void test_records_valid(void **st) {
    for (int d = 1; d <= 4; d++)
        for (int split = 0; split < 3; split++) {
            task_gen g;
            task_gen_init(&g, TASK_MIX, 1000 + (uint64_t)d, split, d);
            int per_task[3] = {0};
            for (int i = 0; i < 300; i++) {
                json_t *v = task_gen_next(&g);
                assert_int_equal(json_integer_value(json_object_get(v, "idx")), i);
                /* idx leads the record */
                assert_string_equal(json_object_iter_key(json_object_iter(v)), "idx");
                const char *task = rec_str(v, "task"), *pr = rec_str(v, "prompt");
                const char *co = rec_str(v, "completion"), *ans = rec_str(v, "answer");
                assert_non_null(task); assert_non_null(pr); assert_non_null(co); assert_non_null(ans);
                int k = task_kind(task);
                assert_true(k >= 0 && k < 3);
                per_task[k]++;
                size_t lp = strlen(pr), lc = strlen(co);
                if (lp < 40 || lp > 260) fail_msg("prompt length %zu: %s", lp, pr);
                if (lc < 3 || lc > 150) fail_msg("completion length %zu: %s", lc, co);
                assert_int_equal(task_split_of(pr), split);
                char *ex = NULL;
                if (!check_record(v, co, &ex)) fail_msg("own completion rejected: %s / %s", pr, co);
                free(ex);
                if (k != TASK_PROG) {
                    if (!check_record(v, ans, NULL)) fail_msg("own answer rejected: %s", ans);
                    char wrong[64];
                    snprintf(wrong, sizeof wrong, "\\boxed{%lld}", atoll(ans) + 1);
                    if (check_record(v, wrong, NULL)) fail_msg("wrong answer %s accepted for %s", wrong, rec_str(v, "answer"));
                } else {
                    assert_false(check_record(v, "0", NULL) && check_record(v, "1", NULL));
                }
                json_decref(v);
            }
            /* mix is even */
            assert_int_equal(per_task[0], 100);
            assert_int_equal(per_task[1], 100);
            assert_int_equal(per_task[2], 100);
            task_gen_free(&g);
        }
}

/* Prompt set of a generated file, lowercased. */
static int collect(int kind, uint64_t seed, int split, int n, char ***out) {
    task_gen g;
    task_gen_init(&g, kind, seed, split, 1);
    char **p = xcalloc((size_t)n, sizeof(char *));
    for (int i = 0; i < n; i++) {
        json_t *v = task_gen_next(&g);
        p[i] = xstrdup(rec_str(v, "prompt"));
        for (char *c = p[i]; *c; c++) *c = (char)tolower((unsigned char)*c);
        json_decref(v);
    }
    task_gen_free(&g);
    *out = p;
    return n;
}
static int cmpstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_splits_disjoint(void **st) {
    /* difficulty 1 has the smallest prompt space: the hardest case */
    char **tr, **dv, **te;
    int n = 1500;
    collect(TASK_MIX, 1, SPLIT_TRAIN, n, &tr);
    collect(TASK_MIX, 2, SPLIT_DEV, n / 5, &dv);
    collect(TASK_MIX, 1, SPLIT_TEST, n / 5, &te);
    qsort(tr, (size_t)n, sizeof(char *), cmpstr);
    for (int i = 1; i < n; i++) assert_true(strcmp(tr[i - 1], tr[i]) != 0); /* no duplicates */
    for (int i = 0; i < n / 5; i++) {
        assert_null(bsearch(&dv[i], tr, (size_t)n, sizeof(char *), cmpstr));
        assert_null(bsearch(&te[i], tr, (size_t)n, sizeof(char *), cmpstr));
        for (int j = 0; j < n / 5; j++) assert_true(strcmp(dv[i], te[j]) != 0);
    }
    for (int i = 0; i < n; i++) free(tr[i]);
    for (int i = 0; i < n / 5; i++) { free(dv[i]); free(te[i]); }
    free(tr); free(dv); free(te);
}

/* Harder levels: bigger numbers and more steps in arith. */
static void test_difficulty(void **st) {
    double mean_ans[5] = {0}, mean_steps[5] = {0};
    for (int d = 1; d <= 4; d++) {
        task_gen g;
        task_gen_init(&g, TASK_ARITH, 9, SPLIT_TRAIN, d);
        for (int i = 0; i < 400; i++) {
            json_t *v = task_gen_next(&g);
            mean_ans[d] += atof(rec_str(v, "answer")) / 400;
            mean_steps[d] += (double)rec_int(v, "steps", 0) / 400;
            json_decref(v);
        }
        task_gen_free(&g);
    }
    for (int d = 2; d <= 4; d++) {
        assert_true(mean_ans[d] > mean_ans[d - 1]);
        assert_true(mean_steps[d] >= mean_steps[d - 1]);
    }
}

/* A task_make candidate for every kind never breaks the checker. */
static void test_make_many(void **st) {
    wdl_rng r;
    rng_seed(&r, 77);
    for (int i = 0; i < 3000; i++) {
        int kind = i % 3, d = 1 + (i / 3) % 4;
        json_t *v = task_make(kind, &r, d);
        assert_true(check_record(v, rec_str(v, "completion"), NULL));
        json_decref(v);
    }
}

int main(void) {
    wdl_set_prog("test_tasks");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_records_valid),
        cmocka_unit_test(test_splits_disjoint),
        cmocka_unit_test(test_difficulty),
        cmocka_unit_test(test_make_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
