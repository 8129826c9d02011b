/* libFuzzer target: the safetensors header parser and validator
 * (st_parse_buffer) and the shard index parser (st_index_parse, for inputs
 * that start with '{'). Every accepted file must be fully readable: each
 * float tensor is converted with its own shape, and lookups must agree with
 * iteration. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"
#include "safetensors.h"

static void check_model(const st_model *m, size_t len) {
    uint64_t total = 0;
    for (size_t i = 0; i < st_count(m); i++) {
        const st_info *t = st_at(m, i);
        if (st_find(m, t->name) != t || strcmp(st_name_at(m, i), t->name)) abort();
        total += t->nbytes;
        if (t->dtype == ST_OTHER) continue;
        float *dst = xmalloc((size_t)t->nelem * sizeof(float) + 1);
        st_read_f32(m, t->name, dst, t->ndim, t->shape);
        free(dst);
    }
    if (total > len) abort();  /* validated offsets never exceed the buffer */
    (void)st_metadata(m, "format");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    if (size > 0 && data[0] == '{') {
        size_t n = 0;
        char **names = NULL, **files = NULL;
        if (st_index_parse((const char *)data, size, "fuzz.index.json", &n, &names, &files, err, sizeof err) == 0) {
            for (size_t i = 1; i < n; i++)
                if (strcmp(names[i - 1], names[i]) >= 0) abort();  /* sorted, unique */
            for (size_t i = 0; i < n; i++) {
                free(names[i]);
                free(files[i]);
            }
            free(names);
            free(files);
        } else if (!strchr(err, ':')) {
            abort();
        }
        return 0;
    }
    /* a private copy so that reads past the end are caught by ASan */
    uint8_t *copy = xmalloc(size + 1);
    if (size) memcpy(copy, data, size);
    st_model *m = st_parse_buffer(copy, size, "fuzz.safetensors", err, sizeof err);
    if (m) {
        check_model(m, size);
        st_close(m);
    } else if (strncmp(err, "fuzz.safetensors: ", 18) || strchr(err, '\n')) {
        abort();  /* every error is one line naming the origin */
    }
    free(copy);
    return 0;
}
