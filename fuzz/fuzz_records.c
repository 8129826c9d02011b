/* libFuzzer target: record streams. The first byte picks how the rest is
 * presented: as a plain .jsonl file, or zstd-compressed first (so the
 * decoder sees valid frames with hostile content), or as raw bytes under a
 * .zst name. Every record read must serialize and read back equal, and the
 * prompt/completion accessor and the checker must cope with it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>
#include "checker.h"
#include "common.h"
#include "records.h"

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    int mode = data[0] % 3;
    data++;
    size--;
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_records.%ld.jsonl%s", (long)getpid(), mode ? ".zst" : "");
    if (mode == 1) {
        size_t cap = ZSTD_compressBound(size);
        void *z = xmalloc(cap);
        size_t zn = ZSTD_compress(z, cap, data, size, 1);
        if (ZSTD_isError(zn)) abort();
        write_file(path, z, zn);
        free(z);
    } else {
        write_file(path, data, size);
    }
    char err[1200];
    rec_reader *r = rec_try_open(path, err, sizeof err);
    if (!r) abort(); /* the file exists */
    json_t *v;
    int rc;
    while ((rc = rec_try_next(r, &v, err, sizeof err)) == 1) {
        if (!json_is_object(v)) abort();
        size_t n;
        char *s = rec_dumps(v, &n);
        if (strlen(s) != n || memchr(s, '\n', n)) abort(); /* one line */
        json_error_t je;
        json_t *back = json_loadb(s, n, 0, &je);
        if (!back || !json_equal(back, v)) abort();
        char *s2 = rec_dumps(back, NULL); /* the canonical form is a fixed point */
        if (strcmp(s, s2)) abort();
        const char *sy, *pr, *co;
        rec_prompt_completion(v, &sy, &pr, &co);
        char *ex = NULL;
        check_record(v, pr ? pr : s, &ex);
        free(ex);
        free(s);
        free(s2);
        json_decref(back);
        json_decref(v);
    }
    if (rc < 0 && (strncmp(err, path, strlen(path)) || strchr(err, '\n'))) abort();
    rec_close(r);
    unlink(path);
    return 0;
}
