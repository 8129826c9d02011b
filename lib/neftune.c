/* neftune.c: see neftune.h. */
#include "neftune.h"
#include "common.h"
#include <math.h>

/* one hash per (seed, key, position), then one per channel from it */
static uint64_t row_hash(uint64_t seed, uint64_t key, int64_t pos) {
    return rng_mix64(rng_mix64(rng_mix64(seed) ^ key) ^ (uint64_t)pos);
}
static float u_of(uint64_t h, int64_t channel) {
    return (float)(int32_t)(rng_mix64(h ^ (uint64_t)channel) >> 40) * 0x1.0p-23f - 1.0f;
}

float neftune_u(uint64_t seed, uint64_t key, int64_t pos, int64_t channel) {
    return u_of(row_hash(seed, key, pos), channel);
}

void neftune_add(float *x, int64_t H, const neftune_batch *nb) {
    if (!(nb->alpha > 0)) return;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb->B; b++) {
        const int64_t L = nb->len[b] < nb->T ? nb->len[b] : nb->T;
        if (L < 1) continue;
        const float mag = (float)(nb->alpha / sqrt((double)L * (double)H));
        for (int64_t t = 0; t < L; t++) {
            const uint64_t h = row_hash(nb->seed, nb->key[b], t);
            float *row = x + (b * nb->T + t) * H;
            for (int64_t c = 0; c < H; c++) row[c] += mag * u_of(h, c);
        }
    }
}

void neftune_hook(void *ctx, float *x, int64_t N, int64_t H) {
    const neftune_batch *nb = ctx;
    if (N != nb->B * nb->T) die("internal: NEFTune batch of %lld x %lld rows for a forward of %lld",
                                (long long)nb->B, (long long)nb->T, (long long)N);
    neftune_add(x, H, nb);
}
