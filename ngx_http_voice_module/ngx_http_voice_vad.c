
/*
 * Voice activity detection: a statistical band classifier and an
 * endpointer on top of it.
 *
 * Each 10 ms frame is analysed over a 16 ms Hann window: a 256-point real
 * FFT gives the power of sixteen bands between 125 Hz and 7.5 kHz.  Each
 * band keeps a noise floor, learnt from frames judged to be noise and
 * held within bounds of the minimum of its smoothed power over the last
 * second: that corrects a floor learnt during speech and follows noise
 * that grows while everything looks like speech.  The frame score is the
 * band SNR in dB averaged over the bands, so speech, which lifts many
 * bands at once, stands out of any stationary noise whatever its colour;
 * hysteresis and a short hangover turn it into a yes or no.
 *
 * The endpointer counts frames: SPEECH_STARTED after min_speech of speech
 * frames (short gaps allowed), SPEECH_ENDED once `silence' has passed
 * since the last speech.  Positions are in samples from the first one fed,
 * so the events do not depend on how the audio was cut into chunks.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <math.h>
#include "ngx_http_voice_vad.h"


#define NGX_HTTP_VOICE_VAD_FRAME_MS   10
#define NGX_HTTP_VOICE_VAD_HALF       (NGX_HTTP_VOICE_VAD_WINDOW / 2)
#define NGX_HTTP_VOICE_VAD_BINS       (NGX_HTTP_VOICE_VAD_HALF + 1)
#define NGX_HTTP_VOICE_VAD_OVERLAP                                           \
    (NGX_HTTP_VOICE_VAD_WINDOW - NGX_HTTP_VOICE_VAD_FRAME)

/*
 * The knobs, tuned on the labelled set that t/vad/gen.py builds.  Scores
 * are the mean over the bands of the band SNR in dB (0 where the band is
 * at or below its floor).
 */
#define NGX_HTTP_VOICE_VAD_ON         3.0f     /* score that starts speech */
#define NGX_HTTP_VOICE_VAD_OFF        1.2f     /* score that keeps it */
#define NGX_HTTP_VOICE_VAD_HANGOVER   10       /* frames kept after it */

/* per-bin power of the quietest input that counts: about -78 dBFS */
#define NGX_HTTP_VOICE_VAD_FLOOR      1536.0f

#define NGX_HTTP_VOICE_VAD_LEARN      0.05f    /* noise follows noise */
#define NGX_HTTP_VOICE_VAD_FALL       0.1f     /* ... faster downwards */
#define NGX_HTTP_VOICE_VAD_UP         2.0f     /* mean over minimum */
#define NGX_HTTP_VOICE_VAD_DOWN       3.0f     /* most the floor may sit
                                                  above the minimum */
#define NGX_HTTP_VOICE_VAD_SPAN       12       /* frames per minimum span,
                                                  with the history: 1 s */

#define NGX_HTTP_VOICE_VAD_MAX_GAP    10       /* non-speech frames in a row
                                                  a start run may contain */
#define NGX_HTTP_VOICE_VAD_BURST      2        /* speech frames in a row
                                                  that postpone the end */


typedef struct {
    float               re;
    float               im;
} ngx_http_voice_vad_complex_t;


static void ngx_http_voice_vad_tables(void);
static void ngx_http_voice_vad_fft(ngx_http_voice_vad_complex_t *z);
static void ngx_http_voice_vad_frame(ngx_http_voice_vad_t *vad,
    const int16_t *pcm);
static ngx_uint_t ngx_http_voice_vad_endpoint(ngx_http_voice_vad_t *vad,
    ngx_http_voice_vad_event_t *ev);


/* band edges in FFT bins of 62.5 Hz, closer together where speech is */
static const ngx_uint_t  ngx_http_voice_vad_edges[NGX_HTTP_VOICE_VAD_BANDS
                                                  + 1] =
{
    2, 4, 6, 8, 10, 12, 15, 18, 22, 27, 33, 40, 49, 60, 74, 92, 120
};


/*
 * Tables shared by every instance, filled once by the first init; nginx
 * calls init from the worker's own thread.
 */
static ngx_uint_t                    ngx_http_voice_vad_ready;
static float                         ngx_http_voice_vad_hann[
                                         NGX_HTTP_VOICE_VAD_WINDOW];
static ngx_http_voice_vad_complex_t  ngx_http_voice_vad_twiddle[
                                         NGX_HTTP_VOICE_VAD_HALF / 2];
static ngx_http_voice_vad_complex_t  ngx_http_voice_vad_split[
                                         NGX_HTTP_VOICE_VAD_BINS];
static u_char                        ngx_http_voice_vad_rev[
                                         NGX_HTTP_VOICE_VAD_HALF];


ngx_int_t
ngx_http_voice_vad_init(ngx_http_voice_vad_t *vad, ngx_msec_t silence,
    ngx_msec_t min_speech)
{
    if (silence == 0) {
        silence = NGX_HTTP_VOICE_VAD_SILENCE;
    }

    if (min_speech == 0) {
        min_speech = NGX_HTTP_VOICE_VAD_MIN_SPEECH;
    }

    if (silence < NGX_HTTP_VOICE_VAD_SILENCE_MIN
        || silence > NGX_HTTP_VOICE_VAD_SILENCE_MAX
        || min_speech < NGX_HTTP_VOICE_VAD_SPEECH_MIN
        || min_speech > NGX_HTTP_VOICE_VAD_SPEECH_MAX)
    {
        return NGX_ERROR;
    }

    if (!ngx_http_voice_vad_ready) {
        ngx_http_voice_vad_tables();
        ngx_http_voice_vad_ready = 1;
    }

    ngx_memzero(vad, sizeof(ngx_http_voice_vad_t));

    /* a setting that is not a whole number of frames rounds up */

    vad->silence = (silence + NGX_HTTP_VOICE_VAD_FRAME_MS - 1)
                   / NGX_HTTP_VOICE_VAD_FRAME_MS;
    vad->min_speech = (min_speech + NGX_HTTP_VOICE_VAD_FRAME_MS - 1)
                      / NGX_HTTP_VOICE_VAD_FRAME_MS;

    return NGX_OK;
}


void
ngx_http_voice_vad_reset(ngx_http_voice_vad_t *vad)
{
    vad->talking = 0;
    vad->run = 0;
    vad->gap = 0;
    vad->spanned = 0;
    vad->burst = 0;
}


void
ngx_http_voice_vad_free(ngx_http_voice_vad_t *vad)
{
    vad->talking = 0;
}


ngx_uint_t
ngx_http_voice_vad_feed(ngx_http_voice_vad_t *vad, const int16_t *pcm,
    size_t n, ngx_http_voice_vad_event_t *events, ngx_uint_t max)
{
    size_t                       take;
    ngx_uint_t                   count;
    ngx_http_voice_vad_event_t   ev;

    count = 0;

    while (n) {

        if (vad->npending == 0 && n >= NGX_HTTP_VOICE_VAD_FRAME) {

            /* the common case: a whole frame straight from the caller */

            ngx_http_voice_vad_frame(vad, pcm);
            pcm += NGX_HTTP_VOICE_VAD_FRAME;
            n -= NGX_HTTP_VOICE_VAD_FRAME;

        } else {
            take = ngx_min(n, NGX_HTTP_VOICE_VAD_FRAME - vad->npending);

            ngx_memcpy(&vad->pending[vad->npending], pcm,
                       take * sizeof(int16_t));

            vad->npending += take;
            pcm += take;
            n -= take;

            if (vad->npending < NGX_HTTP_VOICE_VAD_FRAME) {
                break;
            }

            vad->npending = 0;
            ngx_http_voice_vad_frame(vad, vad->pending);
        }

        if (ngx_http_voice_vad_endpoint(vad, &ev)) {
            if (count < max) {
                events[count] = ev;
            }

            count++;
        }
    }

    return count;
}


/* classifies one frame: the verdict goes to vad->speech and vad->voiced */

static void
ngx_http_voice_vad_frame(ngx_http_voice_vad_t *vad, const int16_t *pcm)
{
    float                          x, y, p, g, m, score;
    ngx_uint_t                     i, b, k, lo, hi, first, speech;
    ngx_http_voice_vad_complex_t   z[NGX_HTTP_VOICE_VAD_HALF], a, c, w;
    float                          s[NGX_HTTP_VOICE_VAD_WINDOW];
    float                          bin[NGX_HTTP_VOICE_VAD_BINS];
    float                          power[NGX_HTTP_VOICE_VAD_BANDS];

    /* the window: the previous frame's tail, then this frame, DC removed */

    ngx_memcpy(s, vad->tail, sizeof(vad->tail));

    x = vad->dc_in;
    y = vad->dc;

    for (i = 0; i < NGX_HTTP_VOICE_VAD_FRAME; i++) {
        y = (float) pcm[i] - x + 0.99f * y;
        x = (float) pcm[i];
        s[NGX_HTTP_VOICE_VAD_OVERLAP + i] = y;
    }

    vad->dc_in = x;
    vad->dc = y;

    ngx_memcpy(vad->tail, &s[NGX_HTTP_VOICE_VAD_FRAME], sizeof(vad->tail));

    /* real FFT of 256 points as a complex FFT of 128, bit-reversed input */

    for (i = 0; i < NGX_HTTP_VOICE_VAD_HALF; i++) {
        k = ngx_http_voice_vad_rev[i];
        z[k].re = s[2 * i] * ngx_http_voice_vad_hann[2 * i];
        z[k].im = s[2 * i + 1] * ngx_http_voice_vad_hann[2 * i + 1];
    }

    ngx_http_voice_vad_fft(z);

    for (k = 0; k <= NGX_HTTP_VOICE_VAD_HALF; k++) {
        a = z[k % NGX_HTTP_VOICE_VAD_HALF];
        c = z[(NGX_HTTP_VOICE_VAD_HALF - k) % NGX_HTTP_VOICE_VAD_HALF];

        /* even part (a + conj c) / 2, odd part (a - conj c) / 2i */

        x = 0.5f * (a.re + c.re);
        y = 0.5f * (a.im - c.im);
        p = 0.5f * (a.im + c.im);
        g = -0.5f * (a.re - c.re);

        w = ngx_http_voice_vad_split[k];

        a.re = x + w.re * p - w.im * g;
        a.im = y + w.re * g + w.im * p;

        bin[k] = a.re * a.re + a.im * a.im;
    }

    /* band powers and their noise floors */

    first = (vad->frames == 0);
    score = 0.0f;

    for (b = 0; b < NGX_HTTP_VOICE_VAD_BANDS; b++) {
        lo = ngx_http_voice_vad_edges[b];
        hi = ngx_http_voice_vad_edges[b + 1];

        p = 0.0f;
        for (k = lo; k < hi; k++) {
            p += bin[k];
        }

        p = p / (float) (hi - lo) + NGX_HTTP_VOICE_VAD_FLOOR;
        power[b] = p;

        if (first) {
            vad->noise[b] = p;
            vad->smooth[b] = p;
            vad->low[b] = p;
        }

        vad->smooth[b] = 0.7f * vad->smooth[b] + 0.3f * p;

        if (vad->smooth[b] < vad->low[b]) {
            vad->low[b] = vad->smooth[b];
        }

        m = vad->low[b];
        for (i = 0; i < vad->nspans; i++) {
            m = ngx_min(m, vad->lows[i][b]);
        }

        /*
         * The floor never sits far above the recent minimum (it was learnt
         * during speech) and never below what the minimum says the noise
         * is now (the noise grew while the classifier called it speech).
         */

        if (vad->noise[b] > m * NGX_HTTP_VOICE_VAD_DOWN) {
            vad->noise[b] = m * NGX_HTTP_VOICE_VAD_DOWN;
        }

        if (vad->noise[b] < m * NGX_HTTP_VOICE_VAD_UP) {
            vad->noise[b] = m * NGX_HTTP_VOICE_VAD_UP;
        }

        if (p > vad->noise[b]) {
            score += 10.0f * log10f(p / vad->noise[b]);
        }
    }

    score /= NGX_HTTP_VOICE_VAD_BANDS;
    vad->score = score;

    /* decision with hysteresis and hangover */

    if (score > NGX_HTTP_VOICE_VAD_ON
        || (vad->voiced && score > NGX_HTTP_VOICE_VAD_OFF))
    {
        speech = 1;
        vad->voiced = 1;
        vad->hang = NGX_HTTP_VOICE_VAD_HANGOVER;

    } else if (vad->hang) {
        speech = 1;
        vad->voiced = 0;
        vad->hang--;

    } else {
        speech = 0;
        vad->voiced = 0;
    }

    vad->speech = speech;

    /* learn the noise from frames that are not speech */

    if (!speech || first) {
        for (b = 0; b < NGX_HTTP_VOICE_VAD_BANDS; b++) {
            p = power[b];
            g = (p < vad->noise[b]) ? NGX_HTTP_VOICE_VAD_FALL
                                     : NGX_HTTP_VOICE_VAD_LEARN;
            vad->noise[b] += g * (p - vad->noise[b]);
        }
    }

    /* close the current minimum span, forget the oldest */

    if (++vad->span == NGX_HTTP_VOICE_VAD_SPAN) {
        vad->span = 0;

        if (vad->nspans < NGX_HTTP_VOICE_VAD_HISTORY) {
            vad->nspans++;
        }

        ngx_memmove(&vad->lows[1], &vad->lows[0],
                    (NGX_HTTP_VOICE_VAD_HISTORY - 1)
                    * sizeof(vad->lows[0]));
        ngx_memcpy(&vad->lows[0], vad->low, sizeof(vad->low));
        ngx_memcpy(vad->low, vad->smooth, sizeof(vad->low));
    }

    vad->frames++;
}


/* the endpointer, after each frame: returns 1 and fills ev on an event */

static ngx_uint_t
ngx_http_voice_vad_endpoint(ngx_http_voice_vad_t *vad,
    ngx_http_voice_vad_event_t *ev)
{
    uint64_t  end;

    end = vad->frames * NGX_HTTP_VOICE_VAD_FRAME;

    if (!vad->talking) {

        /*
         * A start run counts speech frames; it survives short gaps (the
         * closure before a "k") but not a gap longer than MAX_GAP nor a
         * run that is more gap than speech (typing, clicks in a row).
         */

        if (vad->voiced) {
            if (vad->run == 0) {
                vad->onset = end - NGX_HTTP_VOICE_VAD_FRAME;
                vad->spanned = 0;
            }

            vad->run++;
            vad->gap = 0;
            vad->spanned++;

        } else if (vad->run) {
            vad->gap++;
            vad->spanned++;

            if (vad->gap > NGX_HTTP_VOICE_VAD_MAX_GAP
                || 2 * vad->run < vad->spanned)
            {
                vad->run = 0;
                vad->gap = 0;
            }
        }

        if (vad->run < vad->min_speech) {
            return 0;
        }

        vad->talking = 1;
        vad->run = 0;
        vad->gap = 0;
        vad->burst = 0;
        vad->last = end;

        ev->type = NGX_HTTP_VOICE_VAD_SPEECH_STARTED;
        ev->pos = end;
        ev->speech = vad->onset;

        return 1;
    }

    /*
     * While talking, a lone speech frame in the silence (a click, a noise
     * peak) does not restart the silence count; a few in a row do.
     */

    if (vad->voiced) {
        if (++vad->burst >= NGX_HTTP_VOICE_VAD_BURST) {
            vad->last = end;
        }

    } else {
        vad->burst = 0;
    }

    if (end - vad->last < vad->silence * NGX_HTTP_VOICE_VAD_FRAME) {
        return 0;
    }

    vad->talking = 0;

    ev->type = NGX_HTTP_VOICE_VAD_SPEECH_ENDED;
    ev->pos = end;
    ev->speech = vad->last;

    return 1;
}


static void
ngx_http_voice_vad_tables(void)
{
    double      a;
    ngx_uint_t  i, j, r;

    for (i = 0; i < NGX_HTTP_VOICE_VAD_WINDOW; i++) {
        a = 2.0 * M_PI * (i + 0.5) / NGX_HTTP_VOICE_VAD_WINDOW;
        ngx_http_voice_vad_hann[i] = (float) (0.5 - 0.5 * cos(a));
    }

    for (i = 0; i < NGX_HTTP_VOICE_VAD_HALF / 2; i++) {
        a = -2.0 * M_PI * i / NGX_HTTP_VOICE_VAD_HALF;
        ngx_http_voice_vad_twiddle[i].re = (float) cos(a);
        ngx_http_voice_vad_twiddle[i].im = (float) sin(a);
    }

    for (i = 0; i < NGX_HTTP_VOICE_VAD_BINS; i++) {
        a = -2.0 * M_PI * i / NGX_HTTP_VOICE_VAD_WINDOW;
        ngx_http_voice_vad_split[i].re = (float) cos(a);
        ngx_http_voice_vad_split[i].im = (float) sin(a);
    }

    for (i = 0; i < NGX_HTTP_VOICE_VAD_HALF; i++) {
        r = 0;
        for (j = 1; j < NGX_HTTP_VOICE_VAD_HALF; j <<= 1) {
            r <<= 1;
            r |= (i & j) ? 1 : 0;
        }

        ngx_http_voice_vad_rev[i] = (u_char) r;
    }
}


/* in-place radix-2 FFT of 128 points whose input is in bit-reversed order */

static void
ngx_http_voice_vad_fft(ngx_http_voice_vad_complex_t *z)
{
    float                          re, im;
    ngx_uint_t                     len, half, step, i, j;
    ngx_http_voice_vad_complex_t  *u, *v, w;

    for (len = 2; len <= NGX_HTTP_VOICE_VAD_HALF; len <<= 1) {
        half = len / 2;
        step = NGX_HTTP_VOICE_VAD_HALF / len;

        for (i = 0; i < NGX_HTTP_VOICE_VAD_HALF; i += len) {
            for (j = 0; j < half; j++) {
                w = ngx_http_voice_vad_twiddle[j * step];
                u = &z[i + j];
                v = &z[i + j + half];

                re = v->re * w.re - v->im * w.im;
                im = v->re * w.im + v->im * w.re;

                v->re = u->re - re;
                v->im = u->im - im;
                u->re += re;
                u->im += im;
            }
        }
    }
}
