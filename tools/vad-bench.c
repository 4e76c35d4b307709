
/*
 * vad-bench: what voice activity detection costs.
 *
 *     vad-bench [file.raw] [iterations]
 *
 * Feeds 20 ms chunks (320 samples of PCM16 mono 16 kHz) to one detector
 * and times every call: the median is the cost per frame a session pays.
 * The audio is the given raw file (for instance one of build/vad/), else
 * a synthetic vowel that comes and goes over a faint noise, so that the
 * classifier and the endpointer both work.  Also prints the memory one
 * detector takes.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ngx_http_voice_vad.h"


#define VAD_BENCH_CHUNK   320
#define VAD_BENCH_ITERS   200000


static int16_t *vad_bench_load(const char *path, size_t *n);
static int16_t *vad_bench_synth(size_t *n);
static int vad_bench_cmp(const void *a, const void *b);


static uint64_t
vad_bench_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


int
main(int argc, char **argv)
{
    size_t                       n, at, iters, i, events;
    int16_t                     *pcm;
    uint64_t                     t0, t1, *cost, total;
    ngx_http_voice_vad_t         vad;
    ngx_http_voice_vad_event_t   ev[4];

    pcm = (argc > 1) ? vad_bench_load(argv[1], &n) : vad_bench_synth(&n);
    if (pcm == NULL) {
        return 1;
    }

    iters = (argc > 2) ? (size_t) atol(argv[2]) : VAD_BENCH_ITERS;
    if (iters == 0 || n < VAD_BENCH_CHUNK) {
        fprintf(stderr, "vad-bench: nothing to do\n");
        return 1;
    }

    cost = malloc(iters * sizeof(uint64_t));
    if (cost == NULL) {
        return 1;
    }

    if (ngx_http_voice_vad_init(&vad, 0, 0) != NGX_OK) {
        return 1;
    }

    at = 0;
    events = 0;
    total = 0;

    for (i = 0; i < iters; i++) {

        if (at + VAD_BENCH_CHUNK > n) {
            at = 0;
        }

        t0 = vad_bench_ns();
        events += ngx_http_voice_vad_feed(&vad, pcm + at, VAD_BENCH_CHUNK,
                                          ev, 4);
        t1 = vad_bench_ns();

        cost[i] = t1 - t0;
        total += cost[i];
        at += VAD_BENCH_CHUNK;
    }

    qsort(cost, iters, sizeof(uint64_t), vad_bench_cmp);

    printf("audio: %s, %.1f s, looped\n", (argc > 1) ? argv[1] : "synthetic",
           (double) n / NGX_HTTP_VOICE_VAD_RATE);
    printf("20 ms frames: %zu, events: %zu\n", iters, events);
    printf("cost per 20 ms frame: median %.2f us, p99 %.2f us, "
           "mean %.2f us (%.3f%% of one core in real time)\n",
           cost[iters / 2] / 1000.0, cost[iters * 99 / 100] / 1000.0,
           (double) total / iters / 1000.0,
           100.0 * cost[iters / 2] / 20e6);
    /* the shared tables: window, twiddles, split factors, bit reversal */

    printf("memory per instance: %zu bytes (plus %zu bytes of tables "
           "shared by all)\n", sizeof(ngx_http_voice_vad_t),
           (size_t) (NGX_HTTP_VOICE_VAD_WINDOW * sizeof(float)
                     + (NGX_HTTP_VOICE_VAD_WINDOW / 4
                        + NGX_HTTP_VOICE_VAD_WINDOW / 2 + 1)
                       * 2 * sizeof(float)
                     + NGX_HTTP_VOICE_VAD_WINDOW / 2));

    ngx_http_voice_vad_free(&vad);
    free(cost);
    free(pcm);

    return 0;
}


static int16_t *
vad_bench_load(const char *path, size_t *n)
{
    long      len;
    FILE     *fp;
    int16_t  *pcm;

    fp = fopen(path, "rb");
    if (fp == NULL) {
        perror(path);
        return NULL;
    }

    if (fseek(fp, 0, SEEK_END) != 0 || (len = ftell(fp)) < 2
        || fseek(fp, 0, SEEK_SET) != 0)
    {
        fprintf(stderr, "vad-bench: %s is empty\n", path);
        fclose(fp);
        return NULL;
    }

    *n = len / 2;
    pcm = malloc(*n * sizeof(int16_t));

    if (pcm == NULL || fread(pcm, 2, *n, fp) != *n) {
        fprintf(stderr, "vad-bench: cannot read %s\n", path);
        fclose(fp);
        free(pcm);
        return NULL;
    }

    fclose(fp);

    return pcm;
}


/* 10 s: one second of a 150 Hz buzz, one of noise alone, and so on */

static int16_t *
vad_bench_synth(size_t *n)
{
    int       h;
    double    v, t;
    size_t    i;
    int16_t  *pcm;
    uint32_t  s;

    *n = 10 * NGX_HTTP_VOICE_VAD_RATE;

    pcm = malloc(*n * sizeof(int16_t));
    if (pcm == NULL) {
        return NULL;
    }

    s = 1;

    for (i = 0; i < *n; i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;

        v = ((double) (s & 0xffff) / 65536.0 - 0.5) * 300.0;
        t = (double) i / NGX_HTTP_VOICE_VAD_RATE;

        if ((i / NGX_HTTP_VOICE_VAD_RATE) % 2 == 0) {
            for (h = 1; h <= 20; h++) {
                v += 2000.0 / h * sin(2.0 * M_PI * 150.0 * h * t);
            }
        }

        pcm[i] = (int16_t) v;
    }

    return pcm;
}


static int
vad_bench_cmp(const void *a, const void *b)
{
    uint64_t  x, y;

    x = *(const uint64_t *) a;
    y = *(const uint64_t *) b;

    return (x > y) - (x < y);
}
