
/*
 * Unit tests of the audio conversions (ngx_http_voice_audio.[ch]).
 *
 * Signal paths are checked by sending a sine through them and measuring
 * what comes out: its frequency (zero crossings) and its SNR against the
 * best-aligned sine, which is the cross-correlation peak with an exact
 * reference sine worked out in closed form (it absorbs the resampler's and
 * the codec's delay, fractional part included).  The expected mu-law
 * values come from the G.711 tables (14-bit values, here times four).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <math.h>
#include <cmocka.h>

#include <opus/opus.h>

#include "ngx_http_voice_audio.h"


#define TEST_AUDIO_AMP       12000.0   /* about -8.7 dBFS: no clipping */
#define TEST_AUDIO_SECONDS   1
#define TEST_AUDIO_SKIP_MS   100       /* start-up transient left out */
#define TEST_AUDIO_MAX_RATE  48000
#define TEST_AUDIO_CANARY    0x5a5a


typedef struct {
    double              amp;
    double              snr;           /* dB */
    double              freq;          /* Hz, from zero crossings */
} test_audio_meas_t;


/* one client stream: what a client sends or receives */

typedef struct {
    u_char             *data;
    size_t              len;
    size_t             *frames;        /* frame lengths, in order */
    size_t              nframes;
} test_audio_stream_t;


static ngx_uint_t  test_audio_rates[] = { 8000, 16000, 22050, 24000,
                                          44100, 48000 };


static uint64_t
test_audio_rand(uint64_t *s)
{
    uint64_t  z;

    /* splitmix64: small and seedable */

    *s += 0x9e3779b97f4a7c15ULL;
    z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


static void
test_audio_sine(int16_t *x, size_t n, double rate, double freq, double amp)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        x[i] = (int16_t) lrint(amp * sin(2 * M_PI * freq * i / rate));
    }
}


/*
 * Least squares fit of a sin + b cos + c at the known frequency: the
 * maximum of the cross-correlation with a reference sine over every
 * (fractional) delay, plus the gain that matches it.  What is left is
 * noise and distortion.
 */

static void
test_audio_measure(const int16_t *y, size_t n, double rate, double freq,
    size_t skip, test_audio_meas_t *m)
{
    size_t  i, count;
    double  w, s, c, v, a[3][3], r[3], det, p, q, dc, fit, res, sig,
            prev, cur, t, first, last;

    memset(a, 0, sizeof(a));
    memset(r, 0, sizeof(r));

    w = 2 * M_PI * freq / rate;

    for (i = skip; i < n; i++) {
        s = sin(w * i);
        c = cos(w * i);
        v = y[i];

        a[0][0] += s * s;
        a[0][1] += s * c;
        a[0][2] += s;
        a[1][1] += c * c;
        a[1][2] += c;
        a[2][2] += 1;

        r[0] += s * v;
        r[1] += c * v;
        r[2] += v;
    }

    a[1][0] = a[0][1];
    a[2][0] = a[0][2];
    a[2][1] = a[1][2];

    det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
          - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
          + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);

    assert_true(fabs(det) > 0);

    p = (r[0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
         - a[0][1] * (r[1] * a[2][2] - a[1][2] * r[2])
         + a[0][2] * (r[1] * a[2][1] - a[1][1] * r[2])) / det;
    q = (a[0][0] * (r[1] * a[2][2] - a[1][2] * r[2])
         - r[0] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
         + a[0][2] * (a[1][0] * r[2] - r[1] * a[2][0])) / det;
    dc = (a[0][0] * (a[1][1] * r[2] - r[1] * a[2][1])
          - a[0][1] * (a[1][0] * r[2] - r[1] * a[2][0])
          + r[0] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])) / det;

    sig = 0;
    res = 0;

    for (i = skip; i < n; i++) {
        fit = p * sin(w * i) + q * cos(w * i);
        sig += fit * fit;
        res += (y[i] - dc - fit) * (y[i] - dc - fit);
    }

    m->amp = hypot(p, q);
    m->snr = res > 0 ? 10 * log10(sig / res) : 200;

    /* rising zero crossings, placed between samples by interpolation */

    count = 0;
    first = 0;
    last = 0;

    for (i = skip + 1; i < n; i++) {
        prev = y[i - 1] - dc;
        cur = y[i] - dc;

        if (prev < 0 && cur >= 0) {
            t = (i - 1) + (-prev) / (cur - prev);

            if (count++ == 0) {
                first = t;
            }

            last = t;
        }
    }

    m->freq = count > 1 ? (count - 1) * rate / (last - first) : 0;
}


static void
test_audio_check(const char *what, test_audio_meas_t *m, double freq,
    double min_snr, double amp)
{
    print_message("  %-34s f=%8.2f Hz  amp=%8.1f  snr=%6.1f dB\n",
                  what, m->freq, m->amp, m->snr);

    assert_true(fabs(m->freq - freq) < freq * 0.002);
    assert_true(m->snr > min_snr);

    /* within about 1 dB of what went in */

    if (amp > 0) {
        assert_true(m->amp > amp * 0.89 && m->amp < amp * 1.12);
    }
}


/* G.711 mu-law, written directly from the definition for comparison */

static int
test_audio_ulaw_ref_decode(u_char code)
{
    int  u, e, m, v;

    u = ~code & 0xff;
    e = (u >> 4) & 7;
    m = u & 15;

    /* the middle of interval m of segment e, biased by 132 */

    v = (16 + m) * (8 << e) + (4 << e) - 132;

    return (u & 0x80) ? -v : v;
}


static u_char
test_audio_ulaw_ref_encode(int x)
{
    int  mag, b, e, m;

    mag = x < 0 ? -x : x;

    if (mag > 32635) {
        mag = 32635;
    }

    b = mag + 132;

    for (e = 0; b >= (256 << e); e++) { /* void */ }

    m = b / (8 << e) - 16;

    return (u_char) ~((x < 0 ? 0x80 : 0) | (e << 4) | m);
}


static void
test_audio_put_le(u_char *p, const int16_t *x, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        p[2 * i] = (u_char) ((uint16_t) x[i] & 0xff);
        p[2 * i + 1] = (u_char) ((uint16_t) x[i] >> 8);
    }
}


static void
test_audio_format(ngx_http_voice_format_t *f, ngx_uint_t encoding,
    ngx_uint_t rate)
{
    f->encoding = encoding;
    f->sample_rate = rate;
    f->channels = 1;
}


static const char *
test_audio_name(ngx_uint_t encoding)
{
    return encoding == NGX_HTTP_VOICE_PCM_S16LE ? "pcm_s16le"
           : encoding == NGX_HTTP_VOICE_MULAW ? "mulaw" : "opus";
}


/*
 * What a client would send: a sine at rate, cut into 20 ms frames in the
 * encoding given (Opus through a stock libopus encoder at 48 kHz).
 */

static void
test_audio_client_stream(test_audio_stream_t *st, ngx_uint_t encoding,
    ngx_uint_t rate, double freq, size_t frame_ms)
{
    int           err, rc;
    size_t        n, fn, i, cap;
    int16_t      *x;
    OpusEncoder  *enc;

    n = rate * TEST_AUDIO_SECONDS;
    x = malloc(n * sizeof(int16_t));
    assert_non_null(x);

    test_audio_sine(x, n, rate, freq, TEST_AUDIO_AMP);

    fn = rate * frame_ms / 1000;
    cap = 2 * n + 4000 * (n / fn + 1);

    st->data = malloc(cap);
    st->frames = malloc((n / fn + 1) * sizeof(size_t));
    assert_non_null(st->data);
    assert_non_null(st->frames);

    st->len = 0;
    st->nframes = 0;

    enc = NULL;

    if (encoding == NGX_HTTP_VOICE_OPUS) {
        enc = opus_encoder_create(rate, 1, OPUS_APPLICATION_VOIP, &err);
        assert_non_null(enc);
        assert_int_equal(opus_encoder_ctl(enc, OPUS_SET_BITRATE(32000)),
                         OPUS_OK);
    }

    for (i = 0; i + fn <= n; i += fn) {

        switch (encoding) {

        case NGX_HTTP_VOICE_PCM_S16LE:
            test_audio_put_le(st->data + st->len, x + i, fn);
            st->frames[st->nframes++] = 2 * fn;
            st->len += 2 * fn;
            break;

        case NGX_HTTP_VOICE_MULAW:
            for (rc = 0; rc < (int) fn; rc++) {
                st->data[st->len + rc] = test_audio_ulaw_ref_encode(x[i + rc]);
            }

            st->frames[st->nframes++] = fn;
            st->len += fn;
            break;

        default:
            rc = opus_encode(enc, x + i, (int) fn, st->data + st->len, 4000);
            assert_true(rc > 0);
            st->frames[st->nframes++] = rc;
            st->len += rc;
        }
    }

    if (enc) {
        opus_encoder_destroy(enc);
    }

    free(x);
}


static void
test_audio_stream_free(test_audio_stream_t *st)
{
    free(st->data);
    free(st->frames);
}


/* client frames -> codec -> resampler -> 16 kHz; returns the samples */

static size_t
test_audio_decode_path(ngx_uint_t encoding, ngx_uint_t rate, double freq,
    ngx_uint_t quality, int16_t *out, size_t out_cap)
{
    size_t                       i, off, total, cap;
    ssize_t                      n, m;
    int16_t                     *pcm;
    test_audio_stream_t          st;
    ngx_http_voice_codec_t       codec;
    ngx_http_voice_format_t      f;
    ngx_http_voice_resampler_t   rs;

    test_audio_format(&f, encoding, rate);
    assert_int_equal(ngx_http_voice_codec_init(&codec, &f, 0), NGX_OK);

    assert_int_equal(ngx_http_voice_resampler_init(&rs, codec.rate,
                                                   NGX_HTTP_VOICE_RATE,
                                                   quality),
                     NGX_OK);

    test_audio_client_stream(&st, encoding, rate, freq, 20);

    cap = TEST_AUDIO_MAX_RATE / 50 * 6;
    pcm = malloc(cap * sizeof(int16_t));
    assert_non_null(pcm);

    total = 0;
    off = 0;

    for (i = 0; i < st.nframes; i++) {
        n = ngx_http_voice_codec_decode(&codec, st.data + off, st.frames[i],
                                        pcm, cap);
        assert_true(n > 0);
        off += st.frames[i];

        assert_true(out_cap - total >= ngx_http_voice_resampler_cap(&rs, n));

        m = ngx_http_voice_resampler_run(&rs, pcm, n, out + total,
                                         out_cap - total);
        assert_true(m >= 0);
        total += m;
    }

    free(pcm);
    test_audio_stream_free(&st);
    ngx_http_voice_resampler_free(&rs);
    ngx_http_voice_codec_free(&codec);

    return total;
}


/*
 * Assistant audio at src_rate -> resampler -> 20 ms frames at codec->rate
 * -> codec_encode, then decoded back as a client would (Opus by a stock
 * 48 kHz libopus decoder).  Returns the samples at *out_rate.
 */

static size_t
test_audio_encode_path(ngx_uint_t src_rate, ngx_uint_t encoding,
    ngx_uint_t rate, double freq, ngx_uint_t quality, int16_t *out,
    size_t out_cap, ngx_uint_t *out_rate)
{
    int                          err;
    size_t                       n, sn, fn, i, queued, total, j;
    ssize_t                      m, len;
    u_char                       pkt[4000];
    int16_t                     *x, *queue;
    OpusDecoder                 *dec;
    ngx_http_voice_codec_t       codec;
    ngx_http_voice_format_t      f;
    ngx_http_voice_resampler_t   rs;

    test_audio_format(&f, encoding, rate);
    assert_int_equal(ngx_http_voice_codec_init(&codec, &f, 1), NGX_OK);
    assert_int_equal(ngx_http_voice_resampler_init(&rs, src_rate, codec.rate,
                                                   quality),
                     NGX_OK);

    n = src_rate * TEST_AUDIO_SECONDS;
    x = malloc(n * sizeof(int16_t));
    queue = malloc((TEST_AUDIO_MAX_RATE * TEST_AUDIO_SECONDS + 1024)
                   * sizeof(int16_t));
    assert_non_null(x);
    assert_non_null(queue);

    test_audio_sine(x, n, src_rate, freq, TEST_AUDIO_AMP);

    /* the TTS side: chunks of 20 ms into the output queue */

    sn = src_rate / 50;
    queued = 0;

    for (i = 0; i < n; i += sn) {
        m = ngx_http_voice_resampler_run(&rs, x + i, ngx_min(sn, n - i),
                                         queue + queued,
                                         TEST_AUDIO_MAX_RATE + 1024 - queued);
        assert_true(m >= 0);
        queued += m;
    }

    dec = NULL;
    *out_rate = codec.rate;

    if (encoding == NGX_HTTP_VOICE_OPUS) {
        dec = opus_decoder_create(48000, 1, &err);
        assert_non_null(dec);
        *out_rate = 48000;
    }

    /* the pacer: one 20 ms frame at a time */

    fn = codec.rate / 50;
    total = 0;

    for (i = 0; i + fn <= queued; i += fn) {
        len = ngx_http_voice_codec_encode(&codec, queue + i, fn, pkt,
                                          sizeof(pkt));
        assert_true(len > 0);
        assert_true((size_t) len <= ngx_http_voice_codec_frame_size(&codec,
                                                                    fn));

        switch (encoding) {

        case NGX_HTTP_VOICE_PCM_S16LE:
            assert_int_equal(len, 2 * fn);

            for (j = 0; j < fn; j++) {
                out[total++] = (int16_t) (pkt[2 * j] | (pkt[2 * j + 1] << 8));
            }

            break;

        case NGX_HTTP_VOICE_MULAW:
            assert_int_equal(len, fn);

            for (j = 0; j < fn; j++) {
                out[total++] = (int16_t) test_audio_ulaw_ref_decode(pkt[j]);
            }

            break;

        default:
            assert_true(out_cap - total >= 960);
            m = opus_decode(dec, pkt, (opus_int32) len, out + total, 960, 0);
            assert_int_equal(m, 960);
            total += m;
        }
    }

    if (dec) {
        opus_decoder_destroy(dec);
    }

    free(x);
    free(queue);
    ngx_http_voice_resampler_free(&rs);
    ngx_http_voice_codec_free(&codec);

    return total;
}


/* ---- mu-law -------------------------------------------------------------- */


static void
test_audio_mulaw_reference(void **state)
{
    size_t   i;
    u_char   code;
    int16_t  v;

    /* G.711 decoder outputs (14-bit scale x 4): ends of each segment */

    static const struct {
        u_char   code;
        int      value;
    } ref[] = {
        { 0xff, 0 },      { 0x7f, 0 },      { 0x80, 32124 },
        { 0x00, -32124 }, { 0xfe, 8 },      { 0xf0, 120 },
        { 0xef, 132 },    { 0xe0, 372 },    { 0xdf, 396 },
        { 0xd0, 876 },    { 0xcf, 924 },    { 0xc0, 1884 },
        { 0xbf, 1980 },   { 0xb0, 3900 },   { 0xaf, 4092 },
        { 0xa0, 7932 },   { 0x9f, 8316 },   { 0x90, 15996 },
        { 0x8f, 16764 },  { 0x70, -120 },   { 0x6f, -132 },
        { 0x10, -15996 }, { 0x0f, -16764 }, { 0x7e, -8 }
    };

    /* G.711 decision values (x 4): first input of a segment or step */

    static const struct {
        int      x;
        u_char   code;
    } dec[] = {
        { 0, 0xff },      { 3, 0xff },      { 4, 0xfe },
        { 123, 0xf0 },    { 124, 0xef },    { 379, 0xe0 },
        { 380, 0xdf },    { 891, 0xd0 },    { 892, 0xcf },
        { 1915, 0xc0 },   { 1916, 0xbf },   { 3963, 0xb0 },
        { 3964, 0xaf },   { 8059, 0xa0 },   { 8060, 0x9f },
        { 16251, 0x90 },  { 16252, 0x8f },  { 32635, 0x80 },
        { 32767, 0x80 },  { -1, 0x7f },     { -4, 0x7e },
        { -124, 0x6f },   { -32768, 0x00 }, { -16252, 0x0f }
    };

    (void) state;

    for (i = 0; i < sizeof(ref) / sizeof(ref[0]); i++) {
        ngx_http_voice_mulaw_decode(&ref[i].code, 1, &v);
        assert_int_equal(v, ref[i].value);
    }

    for (i = 0; i < sizeof(dec) / sizeof(dec[0]); i++) {
        v = (int16_t) dec[i].x;
        ngx_http_voice_mulaw_encode(&v, 1, &code);
        assert_int_equal(code, dec[i].code);
    }
}


static void
test_audio_mulaw_codes(void **state)
{
    int      c;
    u_char   in[256], back[256];
    int16_t  pcm[256];

    (void) state;

    for (c = 0; c < 256; c++) {
        in[c] = (u_char) c;
    }

    ngx_http_voice_mulaw_decode(in, 256, pcm);
    ngx_http_voice_mulaw_encode(pcm, 256, back);

    for (c = 0; c < 256; c++) {
        assert_int_equal(pcm[c], test_audio_ulaw_ref_decode((u_char) c));

        /* every code but negative zero survives decode then encode */

        assert_int_equal(back[c], c == 0x7f ? 0xff : c);

        /* codes 0x80..0xff rise, 0x00..0x7f fall, in value */

        if (c != 0x00 && c != 0x80) {
            if (c & 0x80) {
                assert_true(pcm[c] < pcm[c - 1]);

            } else {
                assert_true(pcm[c] > pcm[c - 1]);
            }
        }
    }
}


static void
test_audio_mulaw_all_inputs(void **state)
{
    int       x, e, step;
    u_char   *code;
    int16_t  *pcm, *back;

    (void) state;

    pcm = malloc(65536 * sizeof(int16_t));
    back = malloc(65536 * sizeof(int16_t));
    code = malloc(65536);
    assert_non_null(pcm);
    assert_non_null(back);
    assert_non_null(code);

    for (x = -32768; x < 32768; x++) {
        pcm[x + 32768] = (int16_t) x;
    }

    ngx_http_voice_mulaw_encode(pcm, 65536, code);
    ngx_http_voice_mulaw_decode(code, 65536, back);

    for (x = -32768; x < 32768; x++) {
        assert_int_equal(code[x + 32768], test_audio_ulaw_ref_encode(x));

        /* the error stays within half the step of the segment */

        e = ((~code[x + 32768]) >> 4) & 7;
        step = 8 << e;

        if (abs(x) <= 32635) {
            assert_true(abs(back[x + 32768] - x) <= step / 2);

        } else {
            assert_int_equal(back[x + 32768], x < 0 ? -32124 : 32124);
        }
    }

    free(pcm);
    free(back);
    free(code);
}


/* ---- codec set-up -------------------------------------------------------- */


static void
test_audio_codec_init(void **state)
{
    size_t                   i;
    ngx_http_voice_codec_t   c;
    ngx_http_voice_format_t  f;

    static const struct {
        ngx_uint_t  encoding;
        ngx_uint_t  rate;
        ngx_uint_t  encoder;
        ngx_uint_t  expect;
    } ok[] = {
        { NGX_HTTP_VOICE_PCM_S16LE, 8000, 0, 8000 },
        { NGX_HTTP_VOICE_PCM_S16LE, 16000, 1, 16000 },
        { NGX_HTTP_VOICE_PCM_S16LE, 24000, 0, 24000 },
        { NGX_HTTP_VOICE_PCM_S16LE, 48000, 1, 48000 },
        { NGX_HTTP_VOICE_MULAW, 8000, 0, 8000 },
        { NGX_HTTP_VOICE_MULAW, 8000, 1, 8000 },
        { NGX_HTTP_VOICE_OPUS, 48000, 0, 16000 },
        { NGX_HTTP_VOICE_OPUS, 48000, 1, 24000 }
    };

    (void) state;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        test_audio_format(&f, ok[i].encoding, ok[i].rate);
        assert_int_equal(ngx_http_voice_codec_init(&c, &f, ok[i].encoder),
                         NGX_OK);
        assert_int_equal(c.rate, ok[i].expect);
        assert_int_equal(c.encoder, ok[i].encoder);
        assert_int_equal(c.opus != NULL,
                         ok[i].encoding == NGX_HTTP_VOICE_OPUS);

        /* exact sizes for PCM and mu-law */

        if (ok[i].encoding == NGX_HTTP_VOICE_PCM_S16LE) {
            assert_int_equal(ngx_http_voice_codec_frame_size(&c, 321), 642);

        } else if (ok[i].encoding == NGX_HTTP_VOICE_MULAW) {
            assert_int_equal(ngx_http_voice_codec_frame_size(&c, 321), 321);
        }

        ngx_http_voice_codec_free(&c);
        assert_null(c.opus);
        ngx_http_voice_codec_free(&c);
    }

    test_audio_format(&f, NGX_HTTP_VOICE_MULAW, 16000);
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_ERROR);

    test_audio_format(&f, NGX_HTTP_VOICE_PCM_S16LE, 0);
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_ERROR);

    test_audio_format(&f, NGX_HTTP_VOICE_OPUS, 44100);
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 1), NGX_ERROR);

    test_audio_format(&f, 0, 16000);
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_ERROR);

    test_audio_format(&f, 4, 16000);
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_ERROR);

    test_audio_format(&f, NGX_HTTP_VOICE_PCM_S16LE, 16000);
    f.channels = 2;
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_ERROR);

    test_audio_format(&f, NGX_HTTP_VOICE_OPUS, 48000);
    f.channels = 2;
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_ERROR);
    assert_null(c.opus);
}


/* ---- PCM bytes ----------------------------------------------------------- */


static void
test_audio_pcm_bytes(void **state)
{
    u_char                   out[8];
    int16_t                  pcm[4];
    ngx_http_voice_codec_t   c;
    ngx_http_voice_format_t  f;

    static const u_char  in[] = { 0x34, 0x12, 0xff, 0xff, 0x00, 0x80,
                                  0xff, 0x7f };
    static const int16_t  expect[] = { 0x1234, -1, -32768, 32767 };

    (void) state;

    test_audio_format(&f, NGX_HTTP_VOICE_PCM_S16LE, 16000);
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_OK);

    assert_int_equal(ngx_http_voice_codec_decode(&c, in, sizeof(in), pcm, 4),
                     4);
    assert_memory_equal(pcm, expect, sizeof(expect));

    assert_int_equal(ngx_http_voice_codec_encode(&c, expect, 4, out, 8), 8);
    assert_memory_equal(out, in, sizeof(in));

    /* an empty frame yields nothing and needs no buffer */

    assert_int_equal(ngx_http_voice_codec_decode(&c, NULL, 0, NULL, 0), 0);
    assert_int_equal(ngx_http_voice_codec_encode(&c, NULL, 0, NULL, 0), 0);

    ngx_http_voice_codec_free(&c);
}


static void
test_audio_pcm_split(void **state)
{
    size_t                   len, k, j, got, n, part;
    ssize_t                  r;
    u_char                  *bytes;
    int16_t                 *ref, *pcm;
    uint64_t                 seed;
    ngx_http_voice_codec_t   c;
    ngx_http_voice_format_t  f;

    (void) state;

    len = 1001;                    /* odd: one byte is always left over */
    bytes = malloc(len);
    ref = malloc(len / 2 * sizeof(int16_t));
    pcm = malloc((len / 2 + 8) * sizeof(int16_t));
    assert_non_null(bytes);
    assert_non_null(ref);
    assert_non_null(pcm);

    seed = 1;

    for (k = 0; k < len; k++) {
        bytes[k] = (u_char) test_audio_rand(&seed);
    }

    for (k = 0; k < len / 2; k++) {
        ref[k] = (int16_t) (bytes[2 * k] | (bytes[2 * k + 1] << 8));
    }

    test_audio_format(&f, NGX_HTTP_VOICE_PCM_S16LE, 16000);

    /* one cut at every position */

    for (k = 0; k <= len; k++) {
        assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_OK);

        r = ngx_http_voice_codec_decode(&c, bytes, k, pcm, k / 2);
        assert_int_equal(r, k / 2);
        got = r;

        r = ngx_http_voice_codec_decode(&c, bytes + k, len - k, pcm + got,
                                        len / 2 - got);
        assert_true(r >= 0);
        got += r;

        assert_int_equal(got, len / 2);
        assert_memory_equal(pcm, ref, got * sizeof(int16_t));
        assert_true(c.carried);
        assert_int_equal(c.carry, bytes[len - 1]);

        ngx_http_voice_codec_free(&c);
    }

    /* many cuts: frames of 0 to 4 bytes, odd ones included */

    for (j = 0; j < 200; j++) {
        assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_OK);

        got = 0;

        for (k = 0; k < len; k += part) {
            part = test_audio_rand(&seed) % 5;
            part = ngx_min(part, len - k);
            n = (part + c.carried) / 2;

            r = ngx_http_voice_codec_decode(&c, bytes + k, part, pcm + got,
                                            n);
            assert_int_equal(r, n);
            got += r;
        }

        assert_int_equal(got, len / 2);
        assert_memory_equal(pcm, ref, got * sizeof(int16_t));

        ngx_http_voice_codec_free(&c);
    }

    free(bytes);
    free(ref);
    free(pcm);
}


/* ---- caps ---------------------------------------------------------------- */


static void
test_audio_fill(int16_t *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        p[i] = (int16_t) TEST_AUDIO_CANARY;
    }
}


static void
test_audio_untouched(const int16_t *p, size_t from, size_t n)
{
    size_t  i;

    for (i = from; i < n; i++) {
        assert_int_equal(p[i], (int16_t) TEST_AUDIO_CANARY);
    }
}


static void
test_audio_caps(void **state)
{
    int                          err, rc;
    size_t                       i;
    ssize_t                      r;
    u_char                       bytes[2000], pkt[1500], tiny[4];
    int16_t                      pcm[4000], in[960];
    OpusEncoder                 *enc;
    ngx_http_voice_codec_t       c;
    ngx_http_voice_format_t      f;
    ngx_http_voice_resampler_t   rs;

    (void) state;

    for (i = 0; i < sizeof(bytes); i++) {
        bytes[i] = (u_char) i;
    }

    /* PCM: 100 bytes make 50 samples; 49 do not fit and nothing moves */

    test_audio_format(&f, NGX_HTTP_VOICE_PCM_S16LE, 16000);
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_OK);

    assert_int_equal(ngx_http_voice_codec_decode(&c, bytes, 1, pcm, 0), 0);
    assert_true(c.carried);

    test_audio_fill(pcm, 100);
    assert_int_equal(ngx_http_voice_codec_decode(&c, bytes + 1, 101, pcm, 50),
                     NGX_ERROR);
    test_audio_untouched(pcm, 0, 100);
    assert_true(c.carried);
    assert_int_equal(c.carry, bytes[0]);

    assert_int_equal(ngx_http_voice_codec_decode(&c, bytes + 1, 101, pcm, 51),
                     51);
    test_audio_untouched(pcm, 51, 100);
    assert_false(c.carried);

    /* a huge length with a small cap is refused before any read */

    assert_int_equal(ngx_http_voice_codec_decode(&c, bytes,
                                                 NGX_MAX_SIZE_T_VALUE / 2,
                                                 pcm, 16),
                     NGX_ERROR);

    /* encode: two bytes a sample, or nothing */

    memset(pkt, 0xa5, sizeof(pkt));
    assert_int_equal(ngx_http_voice_codec_encode(&c, pcm, 10, pkt, 19),
                     NGX_ERROR);
    assert_int_equal(pkt[0], 0xa5);
    assert_int_equal(ngx_http_voice_codec_encode(&c, pcm, 10, pkt, 20), 20);
    assert_int_equal(pkt[20], 0xa5);
    assert_int_equal(ngx_http_voice_codec_encode(&c, pcm,
                                                 NGX_MAX_SIZE_T_VALUE / 2,
                                                 pkt, 20),
                     NGX_ERROR);

    ngx_http_voice_codec_free(&c);

    /* mu-law: a sample a byte */

    test_audio_format(&f, NGX_HTTP_VOICE_MULAW, 8000);
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_OK);

    test_audio_fill(pcm, 200);
    assert_int_equal(ngx_http_voice_codec_decode(&c, bytes, 160, pcm, 159),
                     NGX_ERROR);
    test_audio_untouched(pcm, 0, 200);
    assert_int_equal(ngx_http_voice_codec_decode(&c, bytes, 160, pcm, 160),
                     160);
    test_audio_untouched(pcm, 160, 200);
    assert_int_equal(ngx_http_voice_codec_decode(&c, bytes,
                                                 NGX_MAX_SIZE_T_VALUE,
                                                 pcm, 160),
                     NGX_ERROR);

    memset(pkt, 0xa5, sizeof(pkt));
    assert_int_equal(ngx_http_voice_codec_encode(&c, pcm, 160, pkt, 159),
                     NGX_ERROR);
    assert_int_equal(pkt[0], 0xa5);
    assert_int_equal(ngx_http_voice_codec_encode(&c, pcm, 160, pkt, 160), 160);
    assert_int_equal(pkt[160], 0xa5);

    ngx_http_voice_codec_free(&c);

    /* Opus: a 20 ms packet is 320 samples at 16 kHz */

    enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
    assert_non_null(enc);
    test_audio_sine(in, 960, 48000, 440, TEST_AUDIO_AMP);
    rc = opus_encode(enc, in, 960, pkt, sizeof(pkt));
    assert_true(rc > 0);
    opus_encoder_destroy(enc);

    test_audio_format(&f, NGX_HTTP_VOICE_OPUS, 48000);
    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 0), NGX_OK);

    test_audio_fill(pcm, 400);
    assert_int_equal(ngx_http_voice_codec_decode(&c, pkt, rc, pcm, 319),
                     NGX_ERROR);
    test_audio_untouched(pcm, 0, 400);
    assert_int_equal(ngx_http_voice_codec_decode(&c, pkt, rc, pcm, 320), 320);
    test_audio_untouched(pcm, 320, 400);
    assert_int_equal(ngx_http_voice_codec_decode(&c, pkt, rc, pcm, 0),
                     NGX_ERROR);

    ngx_http_voice_codec_free(&c);

    /* the Opus encoder keeps to a tiny cap */

    assert_int_equal(ngx_http_voice_codec_init(&c, &f, 1), NGX_OK);

    memset(pkt, 0xa5, sizeof(pkt));
    r = ngx_http_voice_codec_encode(&c, in, 480, pkt, 3);
    assert_true(r == NGX_ERROR || (r > 0 && r <= 3));

    for (i = 3; i < sizeof(pkt); i++) {
        assert_int_equal(pkt[i], 0xa5);
    }

    r = ngx_http_voice_codec_encode(&c, in, 480, tiny, 0);
    assert_true(r == NGX_ERROR || r == 0);

    ngx_http_voice_codec_free(&c);

    /* resampler: below the documented cap nothing is written */

    assert_int_equal(ngx_http_voice_resampler_init(&rs, 8000, 48000,
                                       NGX_HTTP_VOICE_RESAMPLE_FASTEST),
                     NGX_OK);

    test_audio_fill(pcm, 4000);
    assert_int_equal(ngx_http_voice_resampler_run(&rs, in, 160, pcm,
                         ngx_http_voice_resampler_cap(&rs, 160) - 1),
                     NGX_ERROR);
    test_audio_untouched(pcm, 0, 4000);

    assert_int_equal(ngx_http_voice_resampler_run(&rs, in,
                                                  NGX_MAX_SIZE_T_VALUE / 2,
                                                  pcm, 4000),
                     NGX_ERROR);
    test_audio_untouched(pcm, 0, 4000);

    r = ngx_http_voice_resampler_run(&rs, in, 160, pcm,
                                     ngx_http_voice_resampler_cap(&rs, 160));
    assert_true(r >= 0);
    assert_true((size_t) r <= ngx_http_voice_resampler_cap(&rs, 160));
    test_audio_untouched(pcm, ngx_http_voice_resampler_cap(&rs, 160), 4000);

    ngx_http_voice_resampler_free(&rs);

    /* equal rates: a plain copy, bounded by cap alone */

    assert_int_equal(ngx_http_voice_resampler_init(&rs, 16000, 16000,
                                       NGX_HTTP_VOICE_RESAMPLE_BEST),
                     NGX_OK);
    assert_null(rs.src);

    test_audio_fill(pcm, 400);
    assert_int_equal(ngx_http_voice_resampler_run(&rs, in, 320, pcm, 319),
                     NGX_ERROR);
    test_audio_untouched(pcm, 0, 400);
    assert_int_equal(ngx_http_voice_resampler_run(&rs, in, 320, pcm, 320),
                     320);
    assert_memory_equal(pcm, in, 320 * sizeof(int16_t));
    test_audio_untouched(pcm, 320, 400);
    assert_null(rs.in);

    ngx_http_voice_resampler_free(&rs);
}


/* ---- Opus ---------------------------------------------------------------- */


static void
test_audio_opus_round_trip(void **state)
{
    size_t                   i, total;
    ssize_t                  len, n;
    u_char                   pkt[1500];
    int16_t                 *x, *y;
    test_audio_meas_t        m;
    ngx_http_voice_codec_t   enc, dec;
    ngx_http_voice_format_t  f;

    (void) state;

    test_audio_format(&f, NGX_HTTP_VOICE_OPUS, 48000);
    assert_int_equal(ngx_http_voice_codec_init(&enc, &f, 1), NGX_OK);
    assert_int_equal(ngx_http_voice_codec_init(&dec, &f, 0), NGX_OK);

    x = malloc(enc.rate * sizeof(int16_t));
    y = malloc(dec.rate * sizeof(int16_t));
    assert_non_null(x);
    assert_non_null(y);

    test_audio_sine(x, enc.rate, enc.rate, 1000, TEST_AUDIO_AMP);

    total = 0;

    for (i = 0; i + enc.rate / 50 <= enc.rate; i += enc.rate / 50) {
        len = ngx_http_voice_codec_encode(&enc, x + i, enc.rate / 50, pkt,
                                          sizeof(pkt));
        assert_true(len > 0);
        assert_true((size_t) len
                    <= ngx_http_voice_codec_frame_size(&enc, enc.rate / 50));

        n = ngx_http_voice_codec_decode(&dec, pkt, len, y + total,
                                        dec.rate - total);
        assert_int_equal(n, dec.rate / 50);
        total += n;
    }

    test_audio_measure(y, total, dec.rate, 1000,
                       dec.rate * TEST_AUDIO_SKIP_MS / 1000, &m);
    /* measured 37.3 dB */

    test_audio_check("opus 24k -> opus -> 16k, 1 kHz", &m, 1000, 30, 0);

    free(x);
    free(y);
    ngx_http_voice_codec_free(&enc);
    ngx_http_voice_codec_free(&dec);
}


/* every frame size Opus allows, single and multi-frame packets */

static void
test_audio_opus_frame_sizes(void **state)
{
    int                      err, rc, total;
    size_t                   i, k;
    ssize_t                  n;
    u_char                   pkt[48][1500], big[8000];
    int16_t                  x[5760], y[2000];
    OpusEncoder             *oe;
    OpusRepacketizer        *rp;
    ngx_http_voice_codec_t   enc, dec;
    ngx_http_voice_format_t  f;

    /* tenths of a millisecond */
    static const size_t  sizes[] = { 25, 50, 100, 200, 400, 600, 800, 1000,
                                     1200 };

    (void) state;

    test_audio_format(&f, NGX_HTTP_VOICE_OPUS, 48000);
    assert_int_equal(ngx_http_voice_codec_init(&dec, &f, 0), NGX_OK);
    assert_int_equal(ngx_http_voice_codec_init(&enc, &f, 1), NGX_OK);

    oe = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
    assert_non_null(oe);

    test_audio_sine(x, 5760, 48000, 440, TEST_AUDIO_AMP);

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {

        /* from a client's 48 kHz encoder */

        rc = opus_encode(oe, x, (int) (48 * sizes[i] / 10), pkt[0], 1500);
        assert_true(rc > 0);

        n = ngx_http_voice_codec_decode(&dec, pkt[0], rc, y, 2000);
        assert_int_equal(n, 16 * sizes[i] / 10);

        /* from ours, at 24 kHz */

        rc = ngx_http_voice_codec_encode(&enc, x, 24 * sizes[i] / 10,
                                         pkt[0], 1500);
        assert_true(rc > 0);
        assert_true((size_t) rc
                    <= ngx_http_voice_codec_frame_size(&enc,
                                                       24 * sizes[i] / 10));

        n = ngx_http_voice_codec_decode(&dec, pkt[0], rc, y, 2000);
        assert_int_equal(n, 16 * sizes[i] / 10);
    }

    /* sizes Opus does not allow */

    assert_int_equal(ngx_http_voice_codec_encode(&enc, x, 100, pkt[0], 1500),
                     NGX_ERROR);
    assert_int_equal(ngx_http_voice_codec_encode(&enc, x, 0, pkt[0], 1500),
                     NGX_ERROR);
    assert_int_equal(ngx_http_voice_codec_encode(&enc, x, 5760, pkt[0], 1500),
                     NGX_ERROR);

    /* 48 frames of 2.5 ms in one packet: the most Opus allows */

    assert_int_equal(opus_encoder_ctl(oe, OPUS_SET_BITRATE(64000)), OPUS_OK);

    rp = opus_repacketizer_create();
    assert_non_null(rp);

    total = 0;

    for (k = 0; k < 48; k++) {
        rc = opus_encode(oe, x + 120 * k, 120, pkt[k], 1500);
        assert_true(rc > 0);
        assert_int_equal(opus_repacketizer_cat(rp, pkt[k], rc), OPUS_OK);
        total += 120;
    }

    rc = opus_repacketizer_out(rp, big, sizeof(big));
    assert_true(rc > 0);
    assert_int_equal(opus_packet_get_nb_frames(big, rc), 48);

    n = ngx_http_voice_codec_decode(&dec, big, rc, y, 2000);
    assert_int_equal(n, total / 3);

    opus_repacketizer_destroy(rp);
    opus_encoder_destroy(oe);
    ngx_http_voice_codec_free(&enc);
    ngx_http_voice_codec_free(&dec);
}


static void
test_audio_opus_invalid(void **state)
{
    int                      err, rc;
    size_t                   i, len;
    ssize_t                  n;
    u_char                   pkt[1500], junk[300], *huge;
    int16_t                  x[960], y[2000];
    uint64_t                 seed;
    OpusEncoder             *oe;
    ngx_http_voice_codec_t   dec, enc;
    ngx_http_voice_format_t  f;

    static const struct {
        u_char  data[8];
        size_t  len;
    } bad[] = {
        { { 0x03 }, 1 },                       /* code 3 without count */
        { { 0x03, 0x00 }, 2 },                 /* code 3, zero frames */
        { { 0x01, 0xaa, 0xbb, 0xcc }, 4 },     /* code 1, odd payload */
        { { 0x02, 0xfb, 0x01 }, 3 },           /* code 2, length > data */
        { { 0xfb, 0x07, 0, 0, 0, 0, 0, 0 }, 8 },  /* 7 x 20 ms > 120 ms */
        { { 0x03, 0x02, 0xaa }, 3 }            /* CBR pair, odd payload */
    };

    (void) state;

    test_audio_format(&f, NGX_HTTP_VOICE_OPUS, 48000);
    assert_int_equal(ngx_http_voice_codec_init(&dec, &f, 0), NGX_OK);

    oe = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
    assert_non_null(oe);
    test_audio_sine(x, 960, 48000, 440, TEST_AUDIO_AMP);
    rc = opus_encode(oe, x, 960, pkt, sizeof(pkt));
    assert_true(rc > 0);
    opus_encoder_destroy(oe);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ngx_http_voice_codec_decode(&dec, bad[i].data,
                                                     bad[i].len, y, 2000),
                         NGX_ERROR);

        /* and the decoder still works */

        assert_int_equal(ngx_http_voice_codec_decode(&dec, pkt, rc, y, 2000),
                         320);
    }

    /* a single frame over 1275 bytes */

    huge = calloc(1, 1300);
    assert_non_null(huge);
    assert_int_equal(ngx_http_voice_codec_decode(&dec, huge, 1300, y, 2000),
                     NGX_ERROR);
    free(huge);

    /* random bytes: refused or decoded, never more than cap */

    seed = 7;

    for (i = 0; i < 20000; i++) {
        len = test_audio_rand(&seed) % sizeof(junk);

        for (rc = 0; rc < (int) len; rc++) {
            junk[rc] = (u_char) test_audio_rand(&seed);
        }

        n = ngx_http_voice_codec_decode(&dec, junk, len, y, 960);
        assert_true(n == NGX_ERROR || (n >= 0 && n <= 960));
    }

    /* the wrong direction */

    assert_int_equal(ngx_http_voice_codec_init(&enc, &f, 1), NGX_OK);
    assert_int_equal(ngx_http_voice_codec_decode(&enc, pkt, rc, y, 2000),
                     NGX_ERROR);
    assert_int_equal(ngx_http_voice_codec_encode(&dec, x, 320, pkt, 1500),
                     NGX_ERROR);

    ngx_http_voice_codec_free(&enc);
    ngx_http_voice_codec_free(&dec);
}


/* the packet bound holds for the loudest, least predictable input */

static void
test_audio_opus_bound(void **state)
{
    size_t                   i, k, fn, max;
    ssize_t                  len;
    u_char                   pkt[4000];
    int16_t                  x[2880];
    uint64_t                 seed;
    ngx_http_voice_codec_t   enc;
    ngx_http_voice_format_t  f;

    static const size_t  frames[] = { 60, 120, 240, 480, 960, 1440, 2880 };

    (void) state;

    test_audio_format(&f, NGX_HTTP_VOICE_OPUS, 48000);
    assert_int_equal(ngx_http_voice_codec_init(&enc, &f, 1), NGX_OK);

    seed = 3;

    for (k = 0; k < sizeof(frames) / sizeof(frames[0]); k++) {
        fn = frames[k];
        max = 0;

        for (i = 0; i < 50; i++) {
            for (len = 0; len < (ssize_t) fn; len++) {
                x[len] = (int16_t) test_audio_rand(&seed);
            }

            len = ngx_http_voice_codec_encode(&enc, x, fn, pkt, sizeof(pkt));
            assert_true(len > 0);
            assert_true((size_t) len
                        <= ngx_http_voice_codec_frame_size(&enc, fn));
            max = ngx_max(max, (size_t) len);
        }

        print_message("  opus noise, %4zu samples: largest packet %zu of "
                      "bound %zu\n", fn, max,
                      ngx_http_voice_codec_frame_size(&enc, fn));
    }

    ngx_http_voice_codec_free(&enc);
}


/* ---- paths --------------------------------------------------------------- */


static void
test_audio_decode_paths(void **state)
{
    char        what[64];
    size_t      i, k, n, cap;
    int16_t    *y;
    test_audio_meas_t  m;

    static const struct {
        ngx_uint_t  encoding;
        ngx_uint_t  rate;
        double      min_snr;
    } paths[] = {

        /* thresholds a few dB under what was measured (in brackets) */

        { NGX_HTTP_VOICE_PCM_S16LE, 8000, 84 },     /* 88.0, 93.9 */
        { NGX_HTTP_VOICE_PCM_S16LE, 16000, 84 },    /* 89.2, 89.7 */
        { NGX_HTTP_VOICE_PCM_S16LE, 24000, 84 },    /* 88.4, 93.9 */
        { NGX_HTTP_VOICE_PCM_S16LE, 48000, 84 },    /* 88.9, 89.7 */
        { NGX_HTTP_VOICE_MULAW, 8000, 35 },         /* 38.9, 44.6 */
        { NGX_HTTP_VOICE_OPUS, 48000, 25 }          /* 38.3, 30.4 */
    };

    static const double  freqs[] = { 440, 1000 };

    (void) state;

    cap = NGX_HTTP_VOICE_RATE * TEST_AUDIO_SECONDS + 4096;
    y = malloc(cap * sizeof(int16_t));
    assert_non_null(y);

    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        for (k = 0; k < 2; k++) {
            n = test_audio_decode_path(paths[i].encoding, paths[i].rate,
                                       freqs[k],
                                       NGX_HTTP_VOICE_RESAMPLE_MEDIUM, y,
                                       cap);

            /* all but the resampler's hold-back came out */

            assert_true(n > NGX_HTTP_VOICE_RATE * TEST_AUDIO_SECONDS * 9 / 10);

            test_audio_measure(y, n, NGX_HTTP_VOICE_RATE, freqs[k],
                               NGX_HTTP_VOICE_RATE * TEST_AUDIO_SKIP_MS / 1000,
                               &m);

            snprintf(what, sizeof(what), "in %s %u -> 16000, %.0f Hz",
                     test_audio_name(paths[i].encoding),
                     (unsigned) paths[i].rate, freqs[k]);

            test_audio_check(what, &m, freqs[k], paths[i].min_snr,
                             paths[i].encoding == NGX_HTTP_VOICE_OPUS
                             ? 0 : TEST_AUDIO_AMP);
        }
    }

    free(y);
}


static void
test_audio_encode_paths(void **state)
{
    char               what[64];
    size_t             i, k, s, n, cap;
    int16_t           *y;
    ngx_uint_t         rate;
    test_audio_meas_t  m;

    static const struct {
        ngx_uint_t  encoding;
        ngx_uint_t  rate;
        double      min_snr;
    } paths[] = {

        /* the worst of 440 and 1000 Hz from 16 and 24 kHz, in brackets */

        { NGX_HTTP_VOICE_PCM_S16LE, 8000, 84 },     /* 89.9 */
        { NGX_HTTP_VOICE_PCM_S16LE, 16000, 84 },    /* 88.4 */
        { NGX_HTTP_VOICE_PCM_S16LE, 24000, 84 },    /* 87.0 */
        { NGX_HTTP_VOICE_PCM_S16LE, 48000, 84 },    /* 87.0 */
        { NGX_HTTP_VOICE_MULAW, 8000, 35 },         /* 38.3 */
        { NGX_HTTP_VOICE_OPUS, 48000, 28 }          /* 33.1 */
    };

    static const double      freqs[] = { 440, 1000 };
    static const ngx_uint_t  sources[] = { 16000, 24000 };

    (void) state;

    cap = TEST_AUDIO_MAX_RATE * TEST_AUDIO_SECONDS + 4096;
    y = malloc(cap * sizeof(int16_t));
    assert_non_null(y);

    for (s = 0; s < 2; s++) {
        for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
            for (k = 0; k < 2; k++) {
                n = test_audio_encode_path(sources[s], paths[i].encoding,
                                           paths[i].rate, freqs[k],
                                           NGX_HTTP_VOICE_RESAMPLE_MEDIUM,
                                           y, cap, &rate);

                assert_true(n > rate * TEST_AUDIO_SECONDS * 8 / 10);

                test_audio_measure(y, n, rate, freqs[k],
                                   rate * TEST_AUDIO_SKIP_MS / 1000, &m);

                snprintf(what, sizeof(what), "out %u -> %s %u, %.0f Hz",
                         (unsigned) sources[s],
                         test_audio_name(paths[i].encoding),
                         (unsigned) paths[i].rate, freqs[k]);

                test_audio_check(what, &m, freqs[k], paths[i].min_snr,
                                 paths[i].encoding == NGX_HTTP_VOICE_OPUS
                                 ? 0 : TEST_AUDIO_AMP);
            }
        }
    }

    free(y);
}


/* ---- resampler ----------------------------------------------------------- */


/* every quality level and rate pair keeps a 1 kHz tone clean */

static void
test_audio_resampler_quality(void **state)
{
    char                         what[64];
    size_t                       q, a, b, n, i, total;
    ssize_t                      r;
    int16_t                     *x, *y;
    test_audio_meas_t            m;
    ngx_http_voice_resampler_t   rs;

    /* measured: 86.6, 86.6, 86.8, 12.8 and 28.0 dB at worst */
    static const double  min_snr[] = { 83, 83, 83, 10, 25 };
    static const char   *names[] = { "best", "medium", "fastest", "zoh",
                                     "linear" };

    (void) state;

    x = malloc(TEST_AUDIO_MAX_RATE * sizeof(int16_t));
    y = malloc((TEST_AUDIO_MAX_RATE + 4096) * sizeof(int16_t));
    assert_non_null(x);
    assert_non_null(y);

    for (q = 0; q < 5; q++) {
        for (a = 0; a < sizeof(test_audio_rates) / sizeof(ngx_uint_t); a++) {
            for (b = 0; b < sizeof(test_audio_rates) / sizeof(ngx_uint_t);
                 b++)
            {
                if (a == b) {
                    continue;
                }

                n = test_audio_rates[a];
                test_audio_sine(x, n, n, 1000, TEST_AUDIO_AMP);

                assert_int_equal(ngx_http_voice_resampler_init(&rs,
                                     test_audio_rates[a],
                                     test_audio_rates[b], q),
                                 NGX_OK);

                total = 0;

                for (i = 0; i < n; i += n / 50) {
                    r = ngx_http_voice_resampler_run(&rs, x + i,
                                                     ngx_min(n / 50, n - i),
                                                     y + total,
                                                     TEST_AUDIO_MAX_RATE
                                                     + 4096 - total);
                    assert_true(r >= 0);
                    total += r;
                }

                test_audio_measure(y, total, test_audio_rates[b], 1000,
                                   test_audio_rates[b] / 10, &m);

                snprintf(what, sizeof(what), "%s %u -> %u", names[q],
                         (unsigned) test_audio_rates[a],
                         (unsigned) test_audio_rates[b]);

                test_audio_check(what, &m, 1000, min_snr[q], TEST_AUDIO_AMP);

                ngx_http_voice_resampler_free(&rs);
            }
        }
    }

    free(x);
    free(y);
}


/*
 * One call or many frames of odd sizes: the same output, so there is no
 * seam at frame borders.  Frames of one sample also catch the linear
 * converter reading the sample before its input.
 */

static void
test_audio_resampler_continuity(void **state)
{
    size_t                       q, p, i, k, n, whole, parts, step, cap;
    ssize_t                      r;
    int16_t                     *x, *one, *many;
    ngx_int_t                    d, maxd;
    ngx_http_voice_resampler_t   rs;

    static const size_t  steps[] = { 1, 7, 160, 161, 333, 2, 997, 13 };

    static const ngx_uint_t  pairs[][2] = {
        { 24000, 16000 }, { 8000, 16000 }, { 22050, 16000 },
        { 16000, 48000 }, { 44100, 16000 }, { 16000, 24000 },
        { 48000, 8000 }
    };

    (void) state;

    x = malloc(TEST_AUDIO_MAX_RATE * sizeof(int16_t));
    one = malloc((6 * TEST_AUDIO_MAX_RATE + 4096) * sizeof(int16_t));
    many = malloc((6 * TEST_AUDIO_MAX_RATE + 4096) * sizeof(int16_t));
    assert_non_null(x);
    assert_non_null(one);
    assert_non_null(many);

    for (q = 0; q < 5; q++) {
        for (p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {

            /* two tones that do not share a period: every phase is seen */

            n = pairs[p][0] / 2;

            for (i = 0; i < n; i++) {
                x[i] = (int16_t) lrint(9000 * sin(2 * M_PI * 377 * i
                                                  / pairs[p][0])
                                       + 3000 * sin(2 * M_PI * 1231.5 * i
                                                    / pairs[p][0]));
            }

            assert_int_equal(ngx_http_voice_resampler_init(&rs, pairs[p][0],
                                                           pairs[p][1], q),
                             NGX_OK);
            cap = ngx_http_voice_resampler_cap(&rs, n);
            r = ngx_http_voice_resampler_run(&rs, x, n, one, cap);
            assert_true(r > 0);
            whole = r;
            ngx_http_voice_resampler_free(&rs);

            assert_int_equal(ngx_http_voice_resampler_init(&rs, pairs[p][0],
                                                           pairs[p][1], q),
                             NGX_OK);
            parts = 0;
            k = 0;

            for (i = 0; i < n; i += step) {
                step = steps[k++ % 8];
                step = ngx_min(step, n - i);
                cap = ngx_http_voice_resampler_cap(&rs, step);
                r = ngx_http_voice_resampler_run(&rs, x + i, step,
                                                 many + parts, cap);
                assert_true(r >= 0);
                assert_true((size_t) r <= cap);
                parts += r;
            }

            ngx_http_voice_resampler_free(&rs);

            assert_int_equal(parts, whole);

            maxd = 0;

            for (i = 0; i < whole; i++) {
                d = one[i] - many[i];
                maxd = ngx_max(maxd, (d < 0 ? -d : d));
            }

            assert_true(maxd <= 1);
        }
    }

    free(x);
    free(one);
    free(many);
}


/* a slow sine cut into odd frames moves by no more than its slope allows */

static void
test_audio_resampler_jumps(void **state)
{
    size_t                       q, i, k, n, total, step;
    ssize_t                      r;
    int16_t                     *x, *y;
    double                       slope;
    ngx_int_t                    d, maxd;
    ngx_http_voice_resampler_t   rs;

    static const size_t  steps[] = { 1, 7, 160, 161, 333 };

    (void) state;

    n = 24000;
    x = malloc(n * sizeof(int16_t));
    y = malloc((n + 4096) * sizeof(int16_t));
    assert_non_null(x);
    assert_non_null(y);

    test_audio_sine(x, n, 24000, 100, 16000);

    /* the steepest step a 100 Hz sine of this size takes at 16 kHz */

    slope = 2 * M_PI * 100 / 16000 * 16000;

    for (q = 0; q < 5; q++) {
        assert_int_equal(ngx_http_voice_resampler_init(&rs, 24000, 16000, q),
                         NGX_OK);

        total = 0;
        k = 0;

        for (i = 0; i < n; i += step) {
            step = steps[k++ % 5];
            step = ngx_min(step, n - i);
            r = ngx_http_voice_resampler_run(&rs, x + i, step, y + total,
                                             n + 4096 - total);
            assert_true(r >= 0);
            total += r;
        }

        /* the onset of the tone rings a little: only borders matter */

        maxd = 0;

        for (i = 16000 / 20; i < total; i++) {
            d = y[i] - y[i - 1];
            maxd = ngx_max(maxd, (d < 0 ? -d : d));
        }

        print_message("  quality %zu: largest step %d (slope %.0f)\n", q,
                      (int) maxd, slope);

        /* zero-order hold repeats or skips input samples: 1.5 x */

        assert_true(maxd <= slope * (q == NGX_HTTP_VOICE_RESAMPLE_ZOH
                                     ? 1.5 : 1.02) + 2);

        ngx_http_voice_resampler_free(&rs);
    }

    free(x);
    free(y);
}


/*
 * Latency: where a tone burst comes out (cross-correlation against the
 * burst placed exactly) and how much input the filter holds back.
 */

static void
test_audio_resampler_delay(void **state)
{
    size_t                       q, i, n, total;
    ssize_t                      r, lag, best;
    int16_t                     *x, *y;
    double                       t, env, c, bestc, *ref;
    ngx_http_voice_resampler_t   rs;

    (void) state;

    n = 24000;
    x = malloc(n * sizeof(int16_t));
    y = malloc((n + 4096) * sizeof(int16_t));
    ref = malloc(16000 * sizeof(double));
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(ref);

    /* a 1 kHz burst with a Gaussian envelope centred at 0.5 s */

    for (i = 0; i < n; i++) {
        t = (double) i / 24000 - 0.5;
        env = exp(-t * t / (2 * 0.004 * 0.004));
        x[i] = (int16_t) lrint(12000 * env * cos(2 * M_PI * 1000 * t));
    }

    for (i = 0; i < 16000; i++) {
        t = (double) i / 16000 - 0.5;
        env = exp(-t * t / (2 * 0.004 * 0.004));
        ref[i] = env * cos(2 * M_PI * 1000 * t);
    }

    for (q = 0; q < 5; q++) {
        assert_int_equal(ngx_http_voice_resampler_init(&rs, 24000, 16000, q),
                         NGX_OK);

        total = 0;

        for (i = 0; i < n; i += 480) {
            r = ngx_http_voice_resampler_run(&rs, x + i, 480, y + total,
                                             n + 4096 - total);
            assert_true(r >= 0);
            total += r;
        }

        best = 0;
        bestc = 0;

        for (lag = -64; lag <= 64; lag++) {
            c = 0;

            for (i = 6000; i < 10000; i++) {
                if ((ssize_t) i + lag >= 0 && (size_t) (i + lag) < total) {
                    c += ref[i] * y[i + lag];
                }
            }

            if (c > bestc) {
                bestc = c;
                best = lag;
            }
        }

        print_message("  quality %zu: burst at %+zd samples, %d of 16000 "
                      "held back\n", q, best, 16000 - (int) total);

        /* the burst is not delayed beyond a sample; little is held */

        assert_true(best >= -1 && best <= 1);
        assert_true(total <= 16000 + 2 && total + 16000 / 20 > 16000);

        ngx_http_voice_resampler_free(&rs);
    }

    free(x);
    free(y);
    free(ref);
}


static void
test_audio_resampler_init(void **state)
{
    ngx_http_voice_resampler_t  rs;

    (void) state;

    assert_int_equal(ngx_http_voice_resampler_init(&rs, 0, 16000, 0),
                     NGX_ERROR);
    ngx_http_voice_resampler_free(&rs);

    assert_int_equal(ngx_http_voice_resampler_init(&rs, 16000, 0, 0),
                     NGX_ERROR);
    ngx_http_voice_resampler_free(&rs);

    assert_int_equal(ngx_http_voice_resampler_init(&rs, 8000, 16000, 5),
                     NGX_ERROR);
    ngx_http_voice_resampler_free(&rs);

    assert_int_equal(ngx_http_voice_resampler_init(&rs, 8000, 16000, 4),
                     NGX_OK);
    assert_non_null(rs.src);

    /* zero samples: nothing to do, no buffer needed */

    assert_int_equal(ngx_http_voice_resampler_run(&rs, NULL, 0, NULL, 0), 0);
    assert_null(rs.in);

    ngx_http_voice_resampler_free(&rs);
    assert_null(rs.src);
    ngx_http_voice_resampler_free(&rs);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_audio_mulaw_reference),
        cmocka_unit_test(test_audio_mulaw_codes),
        cmocka_unit_test(test_audio_mulaw_all_inputs),
        cmocka_unit_test(test_audio_codec_init),
        cmocka_unit_test(test_audio_pcm_bytes),
        cmocka_unit_test(test_audio_pcm_split),
        cmocka_unit_test(test_audio_caps),
        cmocka_unit_test(test_audio_opus_round_trip),
        cmocka_unit_test(test_audio_opus_frame_sizes),
        cmocka_unit_test(test_audio_opus_invalid),
        cmocka_unit_test(test_audio_opus_bound),
        cmocka_unit_test(test_audio_decode_paths),
        cmocka_unit_test(test_audio_encode_paths),
        cmocka_unit_test(test_audio_resampler_init),
        cmocka_unit_test(test_audio_resampler_quality),
        cmocka_unit_test(test_audio_resampler_continuity),
        cmocka_unit_test(test_audio_resampler_jumps),
        cmocka_unit_test(test_audio_resampler_delay),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
