
/*
 * audio-bench: what the audio conversions cost per 20 ms frame, and the
 * memory each codec and resampler instance takes.
 *
 * Every path runs over one second of a speech-like signal (a gliding
 * harmonic voice with some breath noise) cut into 20 ms frames, exactly
 * as a session feeds it.  A sample is the time of a batch of frames
 * divided by its size; the median of many batches is printed.  Memory is
 * the heap an instance holds once it has converted a frame (mallinfo2).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#include <opus/opus.h>
#include <samplerate.h>

#include "ngx_http_voice_audio.h"


#define AB_BATCH         50          /* frames timed together: 1 s */
#define AB_BATCHES       201         /* at most, for the fast paths */
#define AB_BUDGET        4e8         /* ns spent on one path, about */
#define AB_MAX_FRAME     (48000 / 50)
#define AB_QUALITIES     5
#define AB_PKT           4000


typedef struct {
    ngx_uint_t          encoding;
    ngx_uint_t          rate;
} ab_format_t;


/* one second of input, as 50 frames of one format */

typedef struct {
    u_char             *data[AB_BATCH];
    size_t              len[AB_BATCH];
} ab_frames_t;


static const char  *ab_quality_names[AB_QUALITIES] = {
    "best", "medium", "fastest", "zoh", "linear"
};

static const ab_format_t  ab_formats[] = {
    { NGX_HTTP_VOICE_PCM_S16LE, 8000 },
    { NGX_HTTP_VOICE_PCM_S16LE, 16000 },
    { NGX_HTTP_VOICE_PCM_S16LE, 24000 },
    { NGX_HTTP_VOICE_PCM_S16LE, 48000 },
    { NGX_HTTP_VOICE_MULAW, 8000 },
    { NGX_HTTP_VOICE_OPUS, 48000 }
};

#define AB_FORMATS  (sizeof(ab_formats) / sizeof(ab_formats[0]))


static volatile ssize_t  ab_sink;


/* enough batches for a stable median, but no path takes ages */

static size_t
ab_batches(double first)
{
    double  n;

    n = AB_BUDGET / (first * AB_BATCH + 1);

    return n > AB_BATCHES ? AB_BATCHES : n < 11 ? 11 : (size_t) n | 1;
}


static double
ab_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec * 1e9 + ts.tv_nsec;
}


static int
ab_cmp(const void *a, const void *b)
{
    double  x, y;

    x = *(const double *) a;
    y = *(const double *) b;

    return (x > y) - (x < y);
}


static double
ab_median(double *v, size_t n)
{
    qsort(v, n, sizeof(double), ab_cmp);

    return v[n / 2];
}


static size_t
ab_heap(void)
{
    struct mallinfo2  mi;

    mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}


static const char *
ab_name(const ab_format_t *f)
{
    static char  buf[32];

    snprintf(buf, sizeof(buf), "%s %u",
             f->encoding == NGX_HTTP_VOICE_PCM_S16LE ? "pcm_s16le"
             : f->encoding == NGX_HTTP_VOICE_MULAW ? "mulaw" : "opus",
             (unsigned) f->rate);

    return buf;
}


/* a voice: 120-180 Hz glide, ten harmonics, and a little noise */

static void
ab_voice(int16_t *x, size_t n, ngx_uint_t rate)
{
    size_t    i, h;
    double    phase, f0, v, noise;
    uint32_t  seed;

    phase = 0;
    seed = 12345;

    for (i = 0; i < n; i++) {
        f0 = 150 + 30 * sin(2 * M_PI * 3 * i / rate);
        phase += 2 * M_PI * f0 / rate;

        v = 0;

        for (h = 1; h <= 10; h++) {
            if (h * f0 < rate / 2) {
                v += sin(h * phase) / h;
            }
        }

        seed = seed * 1664525 + 1013904223;
        noise = ((double) (seed >> 8) / (1 << 24) - 0.5) * 0.1;

        x[i] = (int16_t) lrint(5000 * (v + noise));
    }
}


static void
ab_client_frames(ab_frames_t *fr, const ab_format_t *f)
{
    int           err;
    size_t        i, j, fn;
    int16_t       x[AB_BATCH * AB_MAX_FRAME];
    OpusEncoder  *enc;

    fn = f->rate / 50;
    ab_voice(x, AB_BATCH * fn, f->rate);

    enc = NULL;

    if (f->encoding == NGX_HTTP_VOICE_OPUS) {
        enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
        if (enc == NULL) {
            exit(1);
        }

        opus_encoder_ctl(enc, OPUS_SET_BITRATE(32000));
    }

    for (i = 0; i < AB_BATCH; i++) {
        fr->data[i] = malloc(AB_PKT);
        if (fr->data[i] == NULL) {
            exit(1);
        }

        switch (f->encoding) {

        case NGX_HTTP_VOICE_PCM_S16LE:
            for (j = 0; j < fn; j++) {
                fr->data[i][2 * j] = (u_char) (x[i * fn + j] & 0xff);
                fr->data[i][2 * j + 1] = (u_char) ((uint16_t) x[i * fn + j]
                                                   >> 8);
            }

            fr->len[i] = 2 * fn;
            break;

        case NGX_HTTP_VOICE_MULAW:
            ngx_http_voice_mulaw_encode(x + i * fn, fn, fr->data[i]);
            fr->len[i] = fn;
            break;

        default:
            fr->len[i] = opus_encode(enc, x + i * fn, (int) fn, fr->data[i],
                                     AB_PKT);
        }
    }

    if (enc) {
        opus_encoder_destroy(enc);
    }
}


static void
ab_client_free(ab_frames_t *fr)
{
    size_t  i;

    for (i = 0; i < AB_BATCH; i++) {
        free(fr->data[i]);
    }
}


/*
 * client frames -> codec -> resampler -> 16 kHz; ns per frame.  With
 * resample 0, the codec alone.
 */

static double
ab_decode_path(const ab_format_t *f, ngx_uint_t quality, ngx_uint_t resample)
{
    size_t                       b, i, batches;
    ssize_t                      n;
    double                       t0, samples[AB_BATCHES];
    int16_t                      pcm[6 * AB_MAX_FRAME], out[4 * AB_MAX_FRAME];
    ab_frames_t                  fr;
    ngx_http_voice_codec_t       codec;
    ngx_http_voice_format_t      fmt;
    ngx_http_voice_resampler_t   rs;

    fmt.encoding = f->encoding;
    fmt.sample_rate = f->rate;
    fmt.channels = 1;

    if (ngx_http_voice_codec_init(&codec, &fmt, 0) != NGX_OK
        || ngx_http_voice_resampler_init(&rs, codec.rate, NGX_HTTP_VOICE_RATE,
                                         quality)
           != NGX_OK)
    {
        fprintf(stderr, "init failed\n");
        exit(1);
    }

    ab_client_frames(&fr, f);

    batches = AB_BATCHES;

    for (b = 0; b < batches; b++) {
        t0 = ab_now();

        for (i = 0; i < AB_BATCH; i++) {
            n = ngx_http_voice_codec_decode(&codec, fr.data[i], fr.len[i],
                                            pcm, 6 * AB_MAX_FRAME);
            if (n < 0) {
                exit(1);
            }

            if (resample) {
                n = ngx_http_voice_resampler_run(&rs, pcm, n, out,
                                                 4 * AB_MAX_FRAME);
                if (n < 0) {
                    exit(1);
                }
            }

            ab_sink += n;
        }

        samples[b] = (ab_now() - t0) / AB_BATCH;

        if (b == 0) {
            batches = ab_batches(samples[0]);
        }
    }

    ab_client_free(&fr);
    ngx_http_voice_resampler_free(&rs);
    ngx_http_voice_codec_free(&codec);

    return ab_median(samples, batches);
}


/*
 * Assistant audio at src rate -> resampler -> one 20 ms frame at
 * codec->rate -> codec_encode, as the pacer does it; ns per frame.
 */

static double
ab_encode_path(const ab_format_t *f, ngx_uint_t src, ngx_uint_t quality)
{
    size_t                       b, i, sn, fn, queued, pos, batches;
    ssize_t                      n;
    double                       t0, samples[AB_BATCHES];
    u_char                       pkt[AB_PKT];
    int16_t                      x[AB_BATCH * AB_MAX_FRAME];
    int16_t                      queue[4 * AB_MAX_FRAME];
    ngx_http_voice_codec_t       codec;
    ngx_http_voice_format_t      fmt;
    ngx_http_voice_resampler_t   rs;

    fmt.encoding = f->encoding;
    fmt.sample_rate = f->rate;
    fmt.channels = 1;

    if (ngx_http_voice_codec_init(&codec, &fmt, 1) != NGX_OK
        || ngx_http_voice_resampler_init(&rs, src, codec.rate, quality)
           != NGX_OK)
    {
        fprintf(stderr, "init failed\n");
        exit(1);
    }

    sn = src / 50;
    fn = codec.rate / 50;

    ab_voice(x, AB_BATCH * sn, src);

    queued = 0;
    batches = AB_BATCHES;

    for (b = 0; b < batches; b++) {
        t0 = ab_now();

        for (i = 0; i < AB_BATCH; i++) {
            n = ngx_http_voice_resampler_run(&rs, x + i * sn, sn,
                                             queue + queued,
                                             4 * AB_MAX_FRAME - queued);
            if (n < 0) {
                exit(1);
            }

            queued += n;

            for (pos = 0; queued - pos >= fn; pos += fn) {
                n = ngx_http_voice_codec_encode(&codec, queue + pos, fn, pkt,
                                                sizeof(pkt));
                if (n < 0) {
                    exit(1);
                }

                ab_sink += n;
            }

            memmove(queue, queue + pos, (queued - pos) * sizeof(int16_t));
            queued -= pos;
        }

        samples[b] = (ab_now() - t0) / AB_BATCH;

        if (b == 0) {
            batches = ab_batches(samples[0]);
        }
    }

    ngx_http_voice_resampler_free(&rs);
    ngx_http_voice_codec_free(&codec);

    return ab_median(samples, batches);
}


static void
ab_print_cost(double ns)
{
    if (ns < 10000) {
        printf("  %6.2f us", ns / 1000);

    } else {
        printf("  %6.1f us", ns / 1000);
    }
}


static void
ab_memory(void)
{
    size_t                       i, q, before, dec, enc, init, used;
    int16_t                      x[AB_MAX_FRAME], out[4 * AB_MAX_FRAME];
    ngx_http_voice_codec_t       codec;
    ngx_http_voice_format_t      fmt;
    ngx_http_voice_resampler_t   rs;

    static const ngx_uint_t  pairs[][2] = {
        { 48000, 16000 }, { 8000, 16000 }, { 24000, 16000 },
        { 22050, 16000 }, { 16000, 24000 }, { 24000, 8000 }
    };

    printf("\nmemory per instance (heap held, bytes)\n");

    for (i = 0; i < AB_FORMATS; i++) {
        fmt.encoding = ab_formats[i].encoding;
        fmt.sample_rate = ab_formats[i].rate;
        fmt.channels = 1;

        before = ab_heap();
        if (ngx_http_voice_codec_init(&codec, &fmt, 0) != NGX_OK) {
            exit(1);
        }
        dec = ab_heap() - before;
        ngx_http_voice_codec_free(&codec);

        before = ab_heap();
        if (ngx_http_voice_codec_init(&codec, &fmt, 1) != NGX_OK) {
            exit(1);
        }
        enc = ab_heap() - before;
        ngx_http_voice_codec_free(&codec);

        printf("  codec %-16s decoder %6zu  encoder %6zu\n",
               ab_name(&ab_formats[i]), dec, enc);
    }

    printf("  (the codec struct itself, %zu bytes, lives in the session)\n",
           sizeof(ngx_http_voice_codec_t));

    printf("\n  resampler            ");

    for (q = 0; q < AB_QUALITIES; q++) {
        printf("  %15s", ab_quality_names[q]);
    }

    printf("\n  %-21s", "");

    for (q = 0; q < AB_QUALITIES; q++) {
        printf("  %7s+%7s", "state", "scratch");
    }

    printf("\n");

    ab_voice(x, AB_MAX_FRAME, 48000);

    for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        printf("  %5u -> %-5u        ", (unsigned) pairs[i][0],
               (unsigned) pairs[i][1]);

        for (q = 0; q < AB_QUALITIES; q++) {
            before = ab_heap();
            if (ngx_http_voice_resampler_init(&rs, pairs[i][0], pairs[i][1],
                                              q)
                != NGX_OK)
            {
                exit(1);
            }

            init = ab_heap() - before;

            /* one 20 ms frame sizes the scratch */

            if (ngx_http_voice_resampler_run(&rs, x, pairs[i][0] / 50, out,
                                             4 * AB_MAX_FRAME)
                < 0)
            {
                exit(1);
            }

            used = ab_heap() - before;
            ngx_http_voice_resampler_free(&rs);

            printf("  %7zu+%7zu", init, used - init);
        }

        printf("\n");
    }

    printf("  equal rates: no state, no scratch (a plain copy)\n");
}


int
main(void)
{
    size_t             i, q, s;
    double             ns, codec_worst, linear_worst, opus_dec;
    ngx_uint_t         rate, plain;

    static const ngx_uint_t  sources[] = { 16000, 24000 };

    printf("audio-bench: cost per 20 ms frame (median of up to %d batches "
           "of %d frames)\n", AB_BATCHES, AB_BATCH);
    printf("%s, libsamplerate %s\n\n", opus_get_version_string(),
           src_get_version());

    codec_worst = 0;
    linear_worst = 0;
    opus_dec = 0;

    printf("codec alone, at its own rate       decode     encode\n");

    for (i = 0; i < AB_FORMATS; i++) {
        printf("  %-27s", ab_name(&ab_formats[i]));

        ns = ab_decode_path(&ab_formats[i], 0, 0);
        ab_print_cost(ns);

        if (ab_formats[i].encoding == NGX_HTTP_VOICE_OPUS) {
            opus_dec = ns;

        } else {
            codec_worst = ngx_max(codec_worst, ns);
        }

        rate = ab_formats[i].encoding == NGX_HTTP_VOICE_OPUS
               ? 24000 : ab_formats[i].rate;

        ns = ab_encode_path(&ab_formats[i], rate, 0);
        ab_print_cost(ns);

        if (ab_formats[i].encoding != NGX_HTTP_VOICE_OPUS) {
            codec_worst = ngx_max(codec_worst, ns);
        }

        printf("\n");
    }

    printf("\ndecode + resample to 16000   ");

    for (q = 0; q < AB_QUALITIES; q++) {
        printf("  %9s", ab_quality_names[q]);
    }

    printf("\n");

    for (i = 0; i < AB_FORMATS; i++) {
        if (ab_formats[i].encoding == NGX_HTTP_VOICE_OPUS
            || ab_formats[i].rate == NGX_HTTP_VOICE_RATE)
        {
            continue;
        }

        printf("  %-27s", ab_name(&ab_formats[i]));

        for (q = 0; q < AB_QUALITIES; q++) {
            ns = ab_decode_path(&ab_formats[i], q, 1);
            ab_print_cost(ns);

            if (q == NGX_HTTP_VOICE_RESAMPLE_LINEAR) {
                linear_worst = ngx_max(linear_worst, ns);
            }
        }

        printf("\n");
    }

    for (s = 0; s < 2; s++) {
        printf("\nresample from %5u + encode  ", (unsigned) sources[s]);

        for (q = 0; q < AB_QUALITIES; q++) {
            printf("  %9s", ab_quality_names[q]);
        }

        printf("\n");

        for (i = 0; i < AB_FORMATS; i++) {
            rate = ab_formats[i].encoding == NGX_HTTP_VOICE_OPUS
                   ? 24000 : ab_formats[i].rate;

            if (rate == sources[s]) {
                continue;
            }

            printf("  %-27s", ab_name(&ab_formats[i]));

            plain = ab_formats[i].encoding != NGX_HTTP_VOICE_OPUS;

            for (q = 0; q < AB_QUALITIES; q++) {
                ns = ab_encode_path(&ab_formats[i], sources[s], q);
                ab_print_cost(ns);

                if (plain && q == NGX_HTTP_VOICE_RESAMPLE_LINEAR) {
                    linear_worst = ngx_max(linear_worst, ns);
                }
            }

            printf("\n");
        }
    }

    printf("\n(paths without a rate change are the codec alone, above)\n");

    printf("\ngoals\n");
    printf("  PCM and mu-law codec work under 2 us per frame: %s "
           "(worst %.2f us)\n", codec_worst < 2000 ? "met" : "MISSED",
           codec_worst / 1000);
    printf("  PCM and mu-law with a rate change, cheapest resampler: %s "
           "(worst %.2f us)\n", linear_worst < 2000 ? "met" : "MISSED",
           linear_worst / 1000);
    printf("  Opus decode under 40 us per frame: %s (%.1f us)\n",
           opus_dec < 40000 ? "met" : "MISSED", opus_dec / 1000);

    ab_memory();

    return 0;
}
