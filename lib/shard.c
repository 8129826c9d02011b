/* shard.c: see shard.h. Messages between rank 0 and a worker rank:
 *   to the worker: int64 {window index (-1: stop), payload bytes, records
 *   wanted back}, then the payload: per record "name\0line\0json\0";
 *   back to rank 0: int64 {record bytes, result bytes}, then the records
 *   (lines as rec_write makes them) and the results. */
#include "shard.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common.h"
#include "dist.h"

void shard_buf_add(shard_buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = b->cap ? 2 * b->cap : 4096;
        if (b->cap < b->n + n) b->cap = b->n + n;
        b->p = xrealloc(b->p, b->cap);
    }
    if (p && n) memcpy(b->p + b->n, p, n);   /* p NULL: room only */
    b->n += n;
}

/* "K/N" -> 1 and the numbers, else 0. */
static int parse_kn(const char *s, long long *k, long long *n) {
    if (!s) return 0;
    char *e;
    errno = 0;
    if (*s < '0' || *s > '9') return 0;
    *k = strtoll(s, &e, 10);
    if (errno || *e != '/' || e[1] < '0' || e[1] > '9') return 0;
    *n = strtoll(e + 1, &e, 10);
    return !errno && !*e && *n >= 1 && *k >= 0 && *k < *n;
}

shard_spec shard_parse(const char *s, const char *const *files, int nfiles) {
    shard_spec sp = {0, 0};
    if (!s) return sp;
    if (!parse_kn(s, &sp.k, &sp.n)) cli_usage_error("--shard: expected K/N with 0 <= K < N, got '%s'", s);
    if (!nfiles) cli_usage_error("--shard: needs input files (stdin cannot be counted before it is read)");
    for (int i = 0; i < nfiles; i++)
        if (!strcmp(files[i], "-"))
            cli_usage_error("--shard: needs input files (stdin cannot be counted before it is read)");
    return sp;
}

/* ---- reading windows (rank 0) ---- */

typedef struct {
    rec_multi *in;
    int64_t next;          /* the next window's index */
    int64_t first, end;    /* the share: windows [first, end) */
    int eof;
    char **names;          /* input names, each kept once */
    int nnames;
} reader;

static const char *intern(reader *r, const char *name) {
    if (!r->nnames || strcmp(r->names[r->nnames - 1], name)) {
        r->names = xrealloc(r->names, sizeof(char *) * (size_t)(r->nnames + 1));
        r->names[r->nnames++] = xstrdup(name);
    }
    return r->names[r->nnames - 1];
}

/* The next window of the share into w; 0 at its end. */
static int read_window(reader *r, shard_window *w, int64_t W) {
    while (!r->eof && r->next < r->end) {
        int64_t idx = r->next++, n = 0;
        json_t *rec;
        while (n < W && (rec = rec_multi_next(r->in))) {
            if (idx < r->first) { json_decref(rec); n++; continue; }
            w->rec[n] = rec;
            w->name[n] = intern(r, rec_multi_name(r->in));
            w->line[n++] = rec_multi_line(r->in);
        }
        if (n < W) r->eof = 1;
        if (!n) return 0;
        if (idx < r->first) continue;
        w->index = idx;
        w->n = n;
        return 1;
    }
    return 0;
}

static int64_t count_records(const char *const *files, int nfiles) {
    rec_multi *m = rec_multi_open(files, nfiles);
    int64_t n = 0;
    json_t *v;
    while ((v = rec_multi_next(m))) { json_decref(v); n++; }
    rec_multi_close(m);
    return n;
}

static void drop_records(shard_window *w) {
    for (int64_t i = 0; i < w->n; i++) json_decref(w->rec[i]);
    w->n = 0;
}

/* ---- a window on the wire ---- */

static void pack(const shard_window *w, shard_buf *b) {
    b->n = 0;
    for (int64_t i = 0; i < w->n; i++) {
        char line[32];
        size_t len;
        snprintf(line, sizeof line, "%lld", (long long)w->line[i]);
        shard_buf_add(b, w->name[i], strlen(w->name[i]) + 1);
        shard_buf_add(b, line, strlen(line) + 1);
        char *s = rec_dumps(w->rec[i], &len);
        shard_buf_add(b, s, len + 1);
        free(s);
    }
}

/* The records of a packed window; names point into p. */
static void unpack(char *p, size_t n, shard_window *w) {
    w->n = 0;
    for (size_t o = 0; o < n;) {
        const char *name = p + o;
        o += strlen(name) + 1;
        const char *line = p + o;
        o += strlen(line) + 1;
        const char *js = p + o;
        size_t len = strlen(js);
        o += len + 1;
        json_error_t err;
        json_t *v = json_loadb(js, len, 0, &err);
        if (!v) die("%s:%s: %s (record from rank 0)", name, line, err.text);
        w->name[w->n] = name;
        w->line[w->n] = strtoll(line, NULL, 10);
        w->rec[w->n++] = v;
    }
}

/* A worker rank: windows in, records and results out, until told to stop. */
static void serve(const shard_job *job, shard_window *w) {
    shard_buf msg = {0}, out = {0}, res = {0};
    for (;;) {
        int64_t h[3];
        dist_recv(h, sizeof h, 0);
        if (h[0] < 0) break;
        msg.n = 0;
        shard_buf_add(&msg, NULL, (size_t)h[1]);
        dist_recv(msg.p, (size_t)h[1], 0);
        unpack(msg.p, (size_t)h[1], w);
        w->index = h[0];
        res.n = out.n = 0;
        job->work(w, &res, job->ctx);
        for (int64_t i = 0; h[2] && i < w->n; i++) {
            size_t len;
            char *s = rec_dumps(w->rec[i], &len);
            shard_buf_add(&out, s, len);
            shard_buf_add(&out, "\n", 1);
            free(s);
        }
        drop_records(w);
        int64_t r[2] = {(int64_t)out.n, (int64_t)res.n};
        dist_send(r, sizeof r, 0);
        dist_send(out.p, out.n, 0);
        dist_send(res.p, res.n, 0);
    }
    free(msg.p); free(out.p); free(res.p);
}

static void window_alloc(shard_window *w, int64_t W) {
    memset(w, 0, sizeof *w);
    w->rec = xcalloc((size_t)W, sizeof(json_t *));
    w->name = xcalloc((size_t)W, sizeof(char *));
    w->line = xcalloc((size_t)W, sizeof(int64_t));
}

static void window_free(shard_window *w) {
    free(w->rec); free(w->name); free(w->line);
}

int64_t shard_run(const shard_job *job, const char *const *files, int nfiles, shard_spec sp) {
    const int64_t W = job->window;
    const int size = dist_size();
    shard_window w, tmp;
    window_alloc(&w, W);
    if (dist_rank() != 0) {
        serve(job, &w);
        window_free(&w);
        return 0;
    }
    window_alloc(&tmp, W);
    reader r = {.end = INT64_MAX};
    if (sp.n) {
        int64_t nw = (count_records(files, nfiles) + W - 1) / W;
        r.first = sp.k * nw / sp.n;
        r.end = (sp.k + 1) * nw / sp.n;
    }
    r.in = rec_multi_open(files, nfiles);
    shard_buf msg = {0}, res = {0};
    int64_t done = 0, *idx = xcalloc((size_t)size, sizeof(int64_t)), *cnt = xcalloc((size_t)size, sizeof(int64_t));
    /* a round: one window per rank, rank 0's own computed while the others
     * compute theirs, then all of them written in window order */
    while (read_window(&r, &w, W)) {
        int got = 1;
        for (; got < size && read_window(&r, &tmp, W); got++) {
            pack(&tmp, &msg);
            int64_t h[3] = {tmp.index, (int64_t)msg.n, job->out != NULL};
            dist_send(h, sizeof h, got);
            dist_send(msg.p, msg.n, got);
            idx[got] = tmp.index;
            cnt[got] = tmp.n;
            drop_records(&tmp);
        }
        res.n = 0;
        job->work(&w, &res, job->ctx);
        for (int64_t i = 0; job->out && i < w.n; i++) rec_write(job->out, w.rec[i]);
        job->fold(w.index, res.p, res.n, job->ctx);
        done += w.n;
        drop_records(&w);
        for (int k = 1; k < got; k++) {
            int64_t h[2];
            dist_recv(h, sizeof h, k);
            msg.n = 0;
            shard_buf_add(&msg, NULL, (size_t)(h[0] + h[1]));
            dist_recv(msg.p, (size_t)h[0], k);
            dist_recv(msg.p + h[0], (size_t)h[1], k);
            if (job->out) rec_write_text(job->out, msg.p, (size_t)h[0]);
            job->fold(idx[k], msg.p + h[0], (size_t)h[1], job->ctx);
            done += cnt[k];
        }
        if (job->bar) progress_update(job->bar, done, NULL);
    }
    for (int k = 1; k < size; k++) {
        int64_t h[3] = {-1, 0, 0};
        dist_send(h, sizeof h, k);
    }
    rec_multi_close(r.in);
    for (int i = 0; i < r.nnames; i++) free(r.names[i]);
    free(r.names); free(msg.p); free(res.p); free(idx); free(cnt);
    window_free(&w);
    window_free(&tmp);
    return done;
}

/* ---- partial summaries ---- */

void shard_tag(json_t *summary, shard_spec sp, int64_t window) {
    char s[64];
    snprintf(s, sizeof s, "%lld/%lld", sp.k, sp.n);
    json_object_set_new(summary, "shard", json_string(s));
    json_object_set_new(summary, "window", json_integer(window));
}

json_t **shard_parts(const char *const *files, int n, int *nparts) {
    json_t **part = NULL;
    const char **from = NULL;
    long long N = 0, W = 0;
    const char *first = NULL;
    for (int i = 0; i < n; i++) {
        rec_reader *r = rec_open(files[i]);
        json_t *v = rec_next(r);
        rec_close(r);
        long long k, nn;
        if (!v || !parse_kn(rec_str(v, "shard"), &k, &nn))
            die("%s: not a shard's summary (no \"shard\": \"K/N\"; made with --shard?)", files[i]);
        long long w = rec_int(v, "window", -1);
        if (!part) {
            N = nn; W = w; first = files[i];
            part = xcalloc((size_t)N, sizeof(json_t *));
            from = xcalloc((size_t)N, sizeof(char *));
        }
        if (nn != N) die("%s: shard %lld/%lld, but %s is of %lld shards", files[i], k, nn, first, N);
        if (w != W)
            die("%s: windows of %lld records, but %lld in %s (give every shard the same --batch)", files[i], w, W, first);
        if (part[k]) die("shard %lld/%lld given twice: %s and %s", k, N, from[k], files[i]);
        part[k] = v;
        from[k] = files[i];
    }
    for (long long k = 0; k < N; k++)
        if (!part[k]) {
            for (long long j = 0; j < N; j++) json_decref(part[j]);
            die("shard %lld/%lld is missing (give the summaries of all %lld shards)", k, N, N);
        }
    free(from);
    *nparts = (int)N;
    return part;
}

void shard_parts_free(json_t **parts, int n) {
    for (int i = 0; i < n; i++) json_decref(parts[i]);
    free(parts);
}
