/* testutil.h: helpers shared by the cmocka tests (include after cmocka.h). */
#ifndef WDL_TESTUTIL_H
#define WDL_TESTUTIL_H
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

/* Which of gemm.c's few-row kernels this CPU runs: 1 the AVX-512 one (F
 * and BW), 2 the AVX2 one (AVX2 and FMA), 0 neither (test_gemm,
 * test_model). */
static inline int few_rows_cpu(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return 1;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 2 : 0;
}

/* Run fn(arg) in a child process (which then exits 0); its stderr lands in
 * buf (NUL-terminated, at most cap - 1 bytes). Returns the wait status. */
static inline int run_in_child(void (*fn)(void *), void *arg, char *buf, size_t cap) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        fn(arg);
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t k;
    while (n < cap - 1 && (k = read(p[0], buf + n, cap - 1 - n)) > 0) n += (size_t)k;
    buf[n] = 0;
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

/* Run fn(arg) in a child process and expect what die() does: exit status 1
 * and exactly one stderr line "<wdl_prog>: ..." containing needle and, if not
 * NULL, needle2. */
static inline void expect_die(void (*fn)(void *), void *arg, const char *needle, const char *needle2) {
    char buf[4096];
    int st = run_in_child(fn, arg, buf, sizeof buf);
    size_t n = strlen(buf);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 1 || !strstr(buf, needle) || (needle2 && !strstr(buf, needle2)))
        fail_msg("expected exit 1 with '%s'%s%s, got status %d, stderr: %s", needle, needle2 ? " and " : "",
                 needle2 ? needle2 : "", st, buf);
    assert_true(n > 0 && buf[n - 1] == '\n');
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);  /* exactly one line */
    size_t pl = strlen(wdl_prog);
    assert_true(strncmp(buf, wdl_prog, pl) == 0 && buf[pl] == ':');
}

/* A fresh temporary directory per test group (cmocka group setup and
 * teardown), removed with everything in it afterwards. */
static char tmpdir[64];
static inline int tmpdir_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/wdl-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}
static inline int tmpdir_teardown(void **state) {
    (void)state;
    wdl_rmtree(tmpdir);
    return 0;
}
#endif
