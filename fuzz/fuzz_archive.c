/* libFuzzer target: reading a member of an archive. The input is written
 * as a .tar, .tar.gz, .tar.zst or .zip (picked by the first byte) and the
 * member "data/a.jsonl" is read through the record reader. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common.h"
#include "records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    static const char *ext[] = {".tar", ".tar.gz", ".tar.zst", ".zip"};
    const char *e = ext[data[0] % 4];
    char path[96], spec[128];
    snprintf(path, sizeof path, "/tmp/fuzz_archive.%ld%s", (long)getpid(), e);
    snprintf(spec, sizeof spec, "%s:data/a.jsonl", path);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size > 1 && fwrite(data + 1, 1, size - 1, f) != size - 1) abort();
    fclose(f);
    char err[1200];
    rec_reader *r = rec_try_open(spec, err, sizeof err);
    if (r) {
        json_t *v;
        int rc, n = 0;
        while ((rc = rec_try_next(r, &v, err, sizeof err)) == 1 && n++ < 1000) json_decref(v);
        if (rc == 1) json_decref(v);
        rec_close(r);
    } else if (strncmp(err, spec, strlen(spec)) || strchr(err, '\n')) {
        abort();
    }
    unlink(path);
    return 0;
}
