/* test_records.c: record streams (plain, zstd, stdin, archive members),
 * long lines, byte-exact pass-through, prompt/completion access.
 * Error paths (which die) are covered by tests/data.bats. Also
 * wdl_commit replacing a directory: never missing in between. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common.h"
#include "records.h"

static char tmpdir[256];

static int setup(void **st) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/wdl-test-records.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}
static int teardown(void **st) {
    wdl_rmtree(tmpdir);
    return 0;
}
static char *tpath(const char *name) { return wdl_path_join(tmpdir, name); }

static void write_bytes(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(s, 1, n, f), n);
    fclose(f);
}

/* Canonical lines: what rec_write must reproduce byte for byte. */
static const char *canon[] = {
    "{\"idx\":1,\"task\":\"arith\",\"prompt\":\"2+2?\",\"completion\":\"\\\\boxed{4}\",\"answer\":\"4\"}",
    "{\"zz\":{\"b\":[1,2.5,\"x\\n\\\"\xC3\xA9\\\\\\u0001\"],\"a\":null},\"w\":1.0,\"t\":true,\"f\":false,"
    "\"neg\":-9007199254740993,\"r\":0.1,\"e\":1e+300,\"s\":-2.5e-07,\"third\":0.3333333333333333,\"idx\":2}",
    "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"},"
    "{\"role\":\"assistant\",\"content\":\"hello\"}],\"idx\":3,\"empty\":{},\"ea\":[]}",
};
#define NCANON (sizeof canon / sizeof canon[0])

static void write_canon(const char *path) {
    rec_writer *w = rec_create(path);
    for (size_t i = 0; i < NCANON; i++) {
        json_error_t e;
        json_t *v = json_loads(canon[i], 0, &e);
        assert_non_null(v);
        rec_write(w, v);
        json_decref(v);
    }
    rec_commit(w);
}

static void check_canon(const char *path) {
    rec_reader *r = rec_open(path);
    json_t *v;
    size_t i = 0;
    while ((v = rec_next(r))) {
        assert_true(i < NCANON);
        char *s = rec_dumps(v, NULL);
        assert_string_equal(s, canon[i]);
        assert_int_equal(rec_line(r), (int64_t)i + 1);
        free(s);
        json_decref(v);
        i++;
    }
    assert_int_equal(i, NCANON);
    rec_close(r);
}

static void test_plain_roundtrip(void **st) {
    char *p = tpath("a.jsonl");
    write_canon(p);
    size_t n;
    char *bytes = wdl_read_file(p, &n);
    /* the file is exactly the canonical lines */
    size_t off = 0;
    for (size_t i = 0; i < NCANON; i++) {
        size_t k = strlen(canon[i]);
        assert_true(off + k + 1 <= n);
        assert_memory_equal(bytes + off, canon[i], k);
        assert_int_equal(bytes[off + k], '\n');
        off += k + 1;
    }
    assert_int_equal(off, n);
    check_canon(p);
    free(bytes);
    free(p);
}

static void test_no_temp_left(void **st) {
    char *p = tpath("t.jsonl");
    write_canon(p);
    char *t = wdl_tmp_name(p);
    assert_false(wdl_exists(t));
    assert_true(wdl_exists(p));
    free(t);
    free(p);
}

/* wdl_commit replacing a directory (a checkpoint written over the last
 * one): the final path holds a whole tree, the old or the new, at every
 * instant, so a process killed mid-commit leaves one of them, never
 * none. A second thread looks at the path without pause while the main
 * one commits new trees over it many times; each commit's tree is whole
 * (its file says which) and nothing is left beside it. */
typedef struct { const char *file; atomic_int stop; long looks, missing; } watcher;
static void *watch(void *arg) {
    watcher *w = arg;
    while (!atomic_load(&w->stop)) {
        w->looks++;
        if (access(w->file, F_OK) != 0) w->missing++;
    }
    return NULL;
}
static void test_commit_dir_never_missing(void **st) {
    char *dir = tpath("ckpt"), *file = tpath("ckpt/step"), *other = tpath("other");
    wdl_mkdirs(dir);
    wdl_mkdirs(other);
    if (renameat2(AT_FDCWD, other, AT_FDCWD, dir, RENAME_EXCHANGE) != 0) {   /* the filesystem cannot swap */
        print_message("# skipped: no RENAME_EXCHANGE on %s's filesystem (%s)\n", tmpdir, strerror(errno));
        wdl_rmtree(dir); wdl_rmtree(other);
        free(dir); free(file); free(other);
        skip();
    }
    wdl_rmtree(other);
    free(other);
    write_bytes(file, "0", 1);
    watcher w = {file, 0, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, watch, &w), 0);
    enum { COMMITS = 3000 };
    for (int i = 1; i <= COMMITS; i++) {
        char *t = wdl_tmp_name(dir), *tf = wdl_path_join(t, "step"), num[16];
        wdl_tmp_register(t);
        wdl_mkdirs(t);
        snprintf(num, sizeof num, "%d", i);
        write_bytes(tf, num, strlen(num));
        wdl_commit(t, dir);
        assert_false(wdl_exists(t));
        free(t); free(tf);
    }
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    size_t n;
    char *got = wdl_read_file(file, &n);
    assert_string_equal(got, "3000");
    print_message("# %ld looks at the committed tree during %d commits, %ld found it missing\n", w.looks, COMMITS,
                  w.missing);
    assert_int_equal(w.missing, 0);
    wdl_rmtree(dir);
    free(got); free(dir); free(file);
}

static void test_zst_roundtrip(void **st) {
    char *p = tpath("a.jsonl.zst"), *q = tpath("b.jsonl.zst");
    write_canon(p);
    write_canon(q);
    size_t n1, n2;
    char *a = wdl_read_file(p, &n1), *b = wdl_read_file(q, &n2);
    assert_true(n1 > 4);
    assert_memory_equal(a, "\x28\xB5\x2F\xFD", 4);
    assert_int_equal(n1, n2); /* deterministic */
    assert_memory_equal(a, b, n1);
    check_canon(p);
    /* zstd input is recognised by its magic even without the suffix */
    char *c = tpath("noext.jsonl");
    write_bytes(c, a, n1);
    check_canon(c);
    free(a); free(b); free(p); free(q); free(c);
}

static void test_stdin(void **st) {
    char *p = tpath("in.jsonl");
    write_canon(p);
    assert_non_null(freopen(p, "rb", stdin));
    rec_reader *r = rec_open("-");
    assert_string_equal(rec_name(r), "<stdin>");
    int n = 0;
    json_t *v;
    while ((v = rec_next(r))) { n++; json_decref(v); }
    assert_int_equal(n, (int)NCANON);
    rec_close(r);
    free(p);
}

static void test_blank_crlf_bom(void **st) {
    char *p = tpath("crlf.jsonl");
    const char *s = "\xEF\xBB\xBF{\"a\":1}\r\n\r\n   \n{\"a\":2}\r\n\n{\"a\":3}";
    write_bytes(p, s, strlen(s));
    rec_reader *r = rec_open(p);
    int64_t want_line[] = {1, 4, 6};
    for (int i = 0; i < 3; i++) {
        json_t *v = rec_next(r);
        assert_non_null(v);
        assert_int_equal(rec_int(v, "a", 0), i + 1);
        assert_int_equal(rec_line(r), want_line[i]);
        json_decref(v);
    }
    assert_null(rec_next(r));
    assert_null(rec_next(r)); /* stays at EOF */
    rec_close(r);
    free(p);
}

static void test_megabyte_field(void **st) {
    size_t big = (1 << 20) + 123;
    char *text = xmalloc(big + 1);
    for (size_t i = 0; i < big; i++) text[i] = (char)('a' + i % 26);
    text[big] = 0;
    for (int z = 0; z < 2; z++) {
        char *p = tpath(z ? "big.jsonl.zst" : "big.jsonl");
        rec_writer *w = rec_create(p);
        for (int i = 0; i < 3; i++) {
            json_t *v = json_pack("{s:i,s:s}", "idx", i, "text", text);
            rec_write(w, v);
            json_decref(v);
        }
        rec_commit(w);
        rec_reader *r = rec_open(p);
        for (int i = 0; i < 3; i++) {
            json_t *v = rec_next(r);
            assert_non_null(v);
            assert_int_equal(rec_int(v, "idx", -1), i);
            assert_int_equal(strlen(rec_str(v, "text")), big);
            assert_true(strcmp(rec_str(v, "text"), text) == 0);
            json_decref(v);
        }
        assert_null(rec_next(r));
        rec_close(r);
        free(p);
    }
    free(text);
}

/* Build an archive with libarchive: members data/a.jsonl (canonical lines)
 * and data/b.jsonl.zst (the same, compressed). */
static void make_archive(const char *path, int format, int filter) {
    char *zp = tpath("member.zst");
    write_canon(zp);
    size_t zn;
    char *zbytes = wdl_read_file(zp, &zn);
    size_t pn = 0;
    for (size_t i = 0; i < NCANON; i++) pn += strlen(canon[i]) + 1;
    char *plain = xmalloc(pn + 1), *q = plain;
    for (size_t i = 0; i < NCANON; i++) { q = stpcpy(q, canon[i]); *q++ = '\n'; }

    struct archive *a = archive_write_new();
    assert_int_equal(archive_write_set_format(a, format), ARCHIVE_OK);
    if (filter >= 0) assert_int_equal(archive_write_add_filter(a, filter), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    const char *names[] = {"data/readme.txt", "data/a.jsonl", "./data/b.jsonl.zst"};
    const char *bodies[] = {"not json\n", plain, zbytes};
    size_t lens[] = {9, pn, zn};
    for (int i = 0; i < 3; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, names[i]);
        archive_entry_set_size(e, (la_int64_t)lens[i]);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        assert_int_equal(archive_write_data(a, bodies[i], lens[i]), (la_ssize_t)lens[i]);
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    free(zbytes); free(plain); free(zp);
}

static void test_archives(void **st) {
    struct { const char *name; int format, filter; } kinds[] = {
        {"x.tar", ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, -1},
        {"x.tar.gz", ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_GZIP},
        {"x.tgz", ARCHIVE_FORMAT_TAR_USTAR, ARCHIVE_FILTER_GZIP},
        {"x.tar.zst", ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_ZSTD},
        {"x.zip", ARCHIVE_FORMAT_ZIP, -1},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        char *ap = tpath(kinds[k].name);
        make_archive(ap, kinds[k].format, kinds[k].filter);
        const char *members[] = {"data/a.jsonl", "data/b.jsonl.zst", "./data/a.jsonl"};
        for (int m = 0; m < 3; m++) {
            char spec[512];
            snprintf(spec, sizeof spec, "%s:%s", ap, members[m]);
            rec_reader *r = rec_open(spec);
            assert_string_equal(rec_name(r), spec);
            rec_close(r);
            check_canon(spec);
        }
        free(ap);
    }
}

static void test_multi(void **st) {
    char *p = tpath("m1.jsonl"), *q = tpath("m2.jsonl.zst");
    write_canon(p);
    write_canon(q);
    const char *paths[] = {p, q};
    rec_multi *m = rec_multi_open(paths, 2);
    int n = 0;
    json_t *v;
    while ((v = rec_multi_next(m))) {
        n++;
        assert_string_equal(rec_multi_name(m), n <= (int)NCANON ? p : q);
        assert_int_equal(rec_multi_line(m), (n - 1) % NCANON + 1);
        json_decref(v);
    }
    assert_int_equal(n, 2 * (int)NCANON);
    rec_multi_close(m);
    free(p); free(q);
}

static void test_prompt_completion(void **st) {
    const char *sy, *pr, *co;
    json_t *t = json_loads("{\"prompt\":\"P\",\"completion\":\"C\",\"system\":\"S\"}", 0, NULL);
    assert_int_equal(rec_prompt_completion(t, &sy, &pr, &co), 1);
    assert_string_equal(sy, "S"); assert_string_equal(pr, "P"); assert_string_equal(co, "C");
    json_decref(t);
    t = json_loads("{\"prompt\":\"P\"}", 0, NULL);
    assert_int_equal(rec_prompt_completion(t, &sy, &pr, &co), 1);
    assert_null(sy); assert_null(co);
    json_decref(t);
    t = json_loads("{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"u1\"},"
                   "{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\",\"content\":\"u2\"},"
                   "{\"role\":\"assistant\",\"content\":\"a2\"}]}", 0, NULL);
    assert_int_equal(rec_prompt_completion(t, &sy, &pr, &co), 1);
    assert_string_equal(sy, "S"); assert_string_equal(pr, "u2"); assert_string_equal(co, "a2");
    json_decref(t);
    t = json_loads("{\"messages\":[{\"role\":\"user\",\"content\":\"u1\"}]}", 0, NULL);
    assert_int_equal(rec_prompt_completion(t, NULL, &pr, &co), 1);
    assert_string_equal(pr, "u1"); assert_null(co);
    json_decref(t);
    t = json_loads("{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}],\"x\":1}", 0, NULL);
    assert_int_equal(rec_prompt_completion(t, &sy, &pr, &co), 0);
    json_decref(t);
    t = json_loads("{\"text\":\"no prompt\"}", 0, NULL);
    assert_int_equal(rec_prompt_completion(t, &sy, &pr, &co), 0);
    json_decref(t);
}

static void test_real_format(void **st) {
    double xs[] = {0.1, 1.0, -0.0, 1e21, 123456789012345678.0, 5e-324, 1.7976931348623157e308, 2.0 / 3};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        json_t *v = json_real(xs[i]);
        char *s = rec_dumps(v, NULL);
        json_t *back = json_loads(s, JSON_DECODE_ANY, NULL);
        assert_non_null(back);
        assert_true(json_is_real(back));
        assert_true(json_real_value(back) == xs[i]);
        free(s);
        json_decref(v);
        json_decref(back);
    }
    json_t *v = json_real(0.1);
    char *s = rec_dumps(v, NULL);
    assert_string_equal(s, "0.1");
    free(s);
    json_decref(v);
}

int main(void) {
    wdl_set_prog("test_records");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_roundtrip),
        cmocka_unit_test(test_no_temp_left),
        cmocka_unit_test(test_commit_dir_never_missing),
        cmocka_unit_test(test_zst_roundtrip),
        cmocka_unit_test(test_stdin),
        cmocka_unit_test(test_blank_crlf_bom),
        cmocka_unit_test(test_megabyte_field),
        cmocka_unit_test(test_archives),
        cmocka_unit_test(test_multi),
        cmocka_unit_test(test_prompt_completion),
        cmocka_unit_test(test_real_format),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
