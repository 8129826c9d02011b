/* progress.c: see progress.h. */
#include "progress.h"
#include <stdio.h>
#include <unistd.h>
#include "common.h"

void progress_start(wdl_progress *p, const char *unit, int64_t total, int quiet) {
    p->on = !quiet && isatty(2);
    p->unit = unit;
    p->total = total > 0 ? total : 0;
    p->first = 0;
    p->t0 = wdl_now();
    p->drawn = 0;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, n, "%.0fs", s);
}

static void draw(wdl_progress *p, int64_t done, const char *extra, double now) {
    double el = now - p->t0, rate = el > 0 ? (done - p->first) / el : 0;
    char t[32], line[256];
    int k = 0;
    if (p->total) {
        enum { W = 24 };
        int f = (int)(W * (done < p->total ? done : p->total) / p->total);
        fmt_time(t, sizeof t, rate > 0 ? (p->total - done) / rate : 0);
        k = snprintf(line, sizeof line, "[%.*s%*s] %lld/%lld %s %.1f/s ETA %s", f, "########################",
                     W - f, "", (long long)done, (long long)p->total, p->unit, rate, t);
    } else {
        fmt_time(t, sizeof t, el);
        k = snprintf(line, sizeof line, "%lld %s %.1f/s %s", (long long)done, p->unit, rate, t);
    }
    if (extra && k > 0 && (size_t)k < sizeof line) snprintf(line + k, sizeof line - (size_t)k, " %s", extra);
    /* \r, the line, clear to the end of the terminal line */
    fprintf(stderr, "\r%s: %s\033[K", wdl_prog, line);
    fflush(stderr);
    p->drawn = now;
}

void progress_update(wdl_progress *p, int64_t done, const char *extra) {
    if (!p->on) return;
    double now = wdl_now();
    if (now - p->drawn < 0.1) return;
    draw(p, done, extra, now);
}

void progress_end(wdl_progress *p, int64_t done, const char *extra) {
    if (!p->on) return;
    draw(p, done, extra, wdl_now());
    fputc('\n', stderr);
    p->on = 0;
}
