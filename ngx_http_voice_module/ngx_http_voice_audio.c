
/*
 * Audio formats: PCM s16le, G.711 mu-law and Opus, plus a streaming
 * resampler built on libsamplerate.  Plain C over malloc: no nginx
 * runtime, so it is tested on its own.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <opus/opus.h>
#include <samplerate.h>

#include "ngx_http_voice_audio.h"


/*
 * Opus.  Decoding straight to the pipeline rate costs nothing extra:
 * libopus synthesises at 16 kHz itself.  The encoder takes 24 kHz, the
 * rate most TTS voices come at, so that audio is encoded as it is (no
 * resampling at all) and keeps its 8-12 kHz band; 48 kHz would only add
 * resampling work for a band TTS does not produce.
 */
#define NGX_HTTP_VOICE_OPUS_DECODE_RATE  16000
#define NGX_HTTP_VOICE_OPUS_ENCODE_RATE  24000
#define NGX_HTTP_VOICE_OPUS_BITRATE      24000
#define NGX_HTTP_VOICE_OPUS_COMPLEXITY   5
#define NGX_HTTP_VOICE_OPUS_MAX_MS       120

/*
 * A packet may take at most this many times its share of the bitrate:
 * room for VBR peaks, and a bound codec_frame_size can promise.
 */
#define NGX_HTTP_VOICE_OPUS_PEAK         3

/* input samples converted per src_process call: bounds the scratch */
#define NGX_HTTP_VOICE_RESAMPLE_CHUNK    512
#define NGX_HTTP_VOICE_RESAMPLE_SLACK    64


/*
 * G.711 mu-law, as compile-time tables.  A code is the one's complement
 * of sign(1) exponent(3) mantissa(4); its value on the 16-bit scale is
 * ((mantissa << 3) + 132) << exponent, less the bias 132: the middle of
 * the interval the encoder maps to that code.
 */

#define ngx_http_voice_ulaw_mag(u)                                            \
    ((((((u) & 0x0f) << 3) + 0x84) << (((u) >> 4) & 0x07)) - 0x84)

#define ngx_http_voice_ulaw(c)                                                \
    (int16_t) ((c) & 0x80 ? ngx_http_voice_ulaw_mag(~(c) & 0xff)              \
                          : -ngx_http_voice_ulaw_mag(~(c) & 0xff))

#define ngx_http_voice_ulaw4(c)                                               \
    ngx_http_voice_ulaw(c), ngx_http_voice_ulaw(c + 1),                       \
    ngx_http_voice_ulaw(c + 2), ngx_http_voice_ulaw(c + 3)
#define ngx_http_voice_ulaw16(c)                                              \
    ngx_http_voice_ulaw4(c), ngx_http_voice_ulaw4(c + 4),                     \
    ngx_http_voice_ulaw4(c + 8), ngx_http_voice_ulaw4(c + 12)
#define ngx_http_voice_ulaw64(c)                                              \
    ngx_http_voice_ulaw16(c), ngx_http_voice_ulaw16(c + 16),                  \
    ngx_http_voice_ulaw16(c + 32), ngx_http_voice_ulaw16(c + 48)

static const int16_t  ngx_http_voice_ulaw_decode[256] = {
    ngx_http_voice_ulaw64(0), ngx_http_voice_ulaw64(64),
    ngx_http_voice_ulaw64(128), ngx_http_voice_ulaw64(192)
};


/* the exponent of a biased magnitude m (132..32767), indexed by m >> 7 */

#define ngx_http_voice_ulaw_exp(i)                                            \
    ((i) >= 128 ? 7 : (i) >= 64 ? 6 : (i) >= 32 ? 5 : (i) >= 16 ? 4          \
     : (i) >= 8 ? 3 : (i) >= 4 ? 2 : (i) >= 2 ? 1 : 0)

#define ngx_http_voice_ulaw_exp4(i)                                           \
    ngx_http_voice_ulaw_exp(i), ngx_http_voice_ulaw_exp(i + 1),               \
    ngx_http_voice_ulaw_exp(i + 2), ngx_http_voice_ulaw_exp(i + 3)
#define ngx_http_voice_ulaw_exp16(i)                                          \
    ngx_http_voice_ulaw_exp4(i), ngx_http_voice_ulaw_exp4(i + 4),             \
    ngx_http_voice_ulaw_exp4(i + 8), ngx_http_voice_ulaw_exp4(i + 12)
#define ngx_http_voice_ulaw_exp64(i)                                          \
    ngx_http_voice_ulaw_exp16(i), ngx_http_voice_ulaw_exp16(i + 16),          \
    ngx_http_voice_ulaw_exp16(i + 32), ngx_http_voice_ulaw_exp16(i + 48)

static const u_char  ngx_http_voice_ulaw_exponent[256] = {
    ngx_http_voice_ulaw_exp64(0), ngx_http_voice_ulaw_exp64(64),
    ngx_http_voice_ulaw_exp64(128), ngx_http_voice_ulaw_exp64(192)
};

/* beyond this the biased magnitude would leave the top segment */
#define NGX_HTTP_VOICE_ULAW_CLIP  32635
#define NGX_HTTP_VOICE_ULAW_BIAS  0x84


static const int  ngx_http_voice_src_types[] = {
    SRC_SINC_BEST_QUALITY,     /* NGX_HTTP_VOICE_RESAMPLE_BEST */
    SRC_SINC_MEDIUM_QUALITY,   /* NGX_HTTP_VOICE_RESAMPLE_MEDIUM */
    SRC_SINC_FASTEST,          /* NGX_HTTP_VOICE_RESAMPLE_FASTEST */
    SRC_ZERO_ORDER_HOLD,       /* NGX_HTTP_VOICE_RESAMPLE_ZOH */
    SRC_LINEAR                 /* NGX_HTTP_VOICE_RESAMPLE_LINEAR */
};


static ngx_int_t ngx_http_voice_opus_init(ngx_http_voice_codec_t *codec);
static ssize_t ngx_http_voice_pcm_decode(ngx_http_voice_codec_t *codec,
    const u_char *data, size_t len, int16_t *pcm, size_t cap);
static ssize_t ngx_http_voice_opus_decode(ngx_http_voice_codec_t *codec,
    const u_char *data, size_t len, int16_t *pcm, size_t cap);
static ssize_t ngx_http_voice_opus_encode(ngx_http_voice_codec_t *codec,
    const int16_t *pcm, size_t n, u_char *out, size_t cap);
static ngx_int_t ngx_http_voice_resampler_grow(ngx_http_voice_resampler_t *rs,
    size_t size, int16_t first);


ngx_int_t
ngx_http_voice_codec_init(ngx_http_voice_codec_t *codec,
    ngx_http_voice_format_t *format, ngx_uint_t encoder)
{
    ngx_memzero(codec, sizeof(ngx_http_voice_codec_t));

    codec->encoding = format->encoding;
    codec->encoder = encoder ? 1 : 0;

    if (format->channels != 1) {
        return NGX_ERROR;
    }

    switch (format->encoding) {

    case NGX_HTTP_VOICE_PCM_S16LE:
        if (format->sample_rate == 0 || format->sample_rate > 192000) {
            return NGX_ERROR;
        }

        codec->rate = format->sample_rate;
        return NGX_OK;

    case NGX_HTTP_VOICE_MULAW:
        if (format->sample_rate != 8000) {
            return NGX_ERROR;
        }

        codec->rate = 8000;
        return NGX_OK;

    case NGX_HTTP_VOICE_OPUS:

        /* the packets are the same whatever rate the client names */

        switch (format->sample_rate) {
        case 8000:
        case 12000:
        case 16000:
        case 24000:
        case 48000:
            break;
        default:
            return NGX_ERROR;
        }

        return ngx_http_voice_opus_init(codec);

    default:
        return NGX_ERROR;
    }
}


static ngx_int_t
ngx_http_voice_opus_init(ngx_http_voice_codec_t *codec)
{
    int           err;
    OpusEncoder  *enc;

    if (!codec->encoder) {
        codec->rate = NGX_HTTP_VOICE_OPUS_DECODE_RATE;
        codec->opus = opus_decoder_create(NGX_HTTP_VOICE_OPUS_DECODE_RATE, 1,
                                          &err);

        return (codec->opus && err == OPUS_OK) ? NGX_OK : NGX_ERROR;
    }

    codec->rate = NGX_HTTP_VOICE_OPUS_ENCODE_RATE;

    /*
     * VOIP rather than AUDIO: the signal is speech, and VOIP favours
     * intelligibility (SILK and hybrid modes, speech high-pass) at low
     * bitrates.  DTX stays off: the pacer sends every frame anyway and
     * players handle a continuous stream best.  No in-band FEC either: a
     * WebSocket runs over TCP and loses nothing.
     */

    enc = opus_encoder_create(NGX_HTTP_VOICE_OPUS_ENCODE_RATE, 1,
                              OPUS_APPLICATION_VOIP, &err);
    if (enc == NULL || err != OPUS_OK) {
        return NGX_ERROR;
    }

    codec->opus = enc;

    if (opus_encoder_ctl(enc, OPUS_SET_BITRATE(NGX_HTTP_VOICE_OPUS_BITRATE))
        != OPUS_OK
        || opus_encoder_ctl(enc,
                       OPUS_SET_COMPLEXITY(NGX_HTTP_VOICE_OPUS_COMPLEXITY))
           != OPUS_OK
        || opus_encoder_ctl(enc, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE))
           != OPUS_OK
        || opus_encoder_ctl(enc, OPUS_SET_VBR(1)) != OPUS_OK
        || opus_encoder_ctl(enc, OPUS_SET_VBR_CONSTRAINT(1)) != OPUS_OK
        || opus_encoder_ctl(enc, OPUS_SET_DTX(0)) != OPUS_OK
        || opus_encoder_ctl(enc, OPUS_SET_INBAND_FEC(0)) != OPUS_OK)
    {
        ngx_http_voice_codec_free(codec);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_voice_codec_free(ngx_http_voice_codec_t *codec)
{
    if (codec->opus) {
        if (codec->encoder) {
            opus_encoder_destroy(codec->opus);

        } else {
            opus_decoder_destroy(codec->opus);
        }

        codec->opus = NULL;
    }

    codec->carried = 0;
}


ssize_t
ngx_http_voice_codec_decode(ngx_http_voice_codec_t *codec,
    const u_char *data, size_t len, int16_t *pcm, size_t cap)
{
    switch (codec->encoding) {

    case NGX_HTTP_VOICE_PCM_S16LE:
        return ngx_http_voice_pcm_decode(codec, data, len, pcm, cap);

    case NGX_HTTP_VOICE_MULAW:
        if (len > cap || len > (size_t) NGX_MAX_SIZE_T_VALUE) {
            return NGX_ERROR;
        }

        ngx_http_voice_mulaw_decode(data, len, pcm);
        return len;

    case NGX_HTTP_VOICE_OPUS:
        return ngx_http_voice_opus_decode(codec, data, len, pcm, cap);

    default:
        return NGX_ERROR;
    }
}


static ssize_t
ngx_http_voice_pcm_decode(ngx_http_voice_codec_t *codec, const u_char *data,
    size_t len, int16_t *pcm, size_t cap)
{
    size_t         n, i;
    ngx_int_t      v;
    const u_char  *p, *end;

    /* refuse before touching anything, so the odd byte stays in place */

    n = len / 2 + ((len & 1) && codec->carried);

    if (n > cap || n > (size_t) NGX_MAX_SIZE_T_VALUE / 2) {
        return NGX_ERROR;
    }

    p = data;
    end = data + len;
    i = 0;

    if (codec->carried && p < end) {
        v = codec->carry | (*p++ << 8);
        pcm[i++] = (int16_t) (v - ((v & 0x8000) << 1));
        codec->carried = 0;
    }

    /* bytes to value by arithmetic: right on hosts of either endianness */

    while (end - p >= 2) {
        v = p[0] | (p[1] << 8);
        pcm[i++] = (int16_t) (v - ((v & 0x8000) << 1));
        p += 2;
    }

    if (p < end) {
        codec->carry = *p;
        codec->carried = 1;
    }

    return i;
}


static ssize_t
ngx_http_voice_opus_decode(ngx_http_voice_codec_t *codec, const u_char *data,
    size_t len, int16_t *pcm, size_t cap)
{
    int  n;

    if (codec->opus == NULL || codec->encoder) {
        return NGX_ERROR;
    }

    /* an empty frame carries no packet; concealment is not wanted here */

    if (len == 0) {
        return 0;
    }

    if (len > 0x7fffffff) {
        return NGX_ERROR;
    }

    /* the TOC tells the length, so a packet too long for cap is refused */

    n = opus_packet_get_nb_samples(data, (opus_int32) len,
                                   (opus_int32) codec->rate);

    if (n <= 0 || (size_t) n > cap) {
        return NGX_ERROR;
    }

    n = opus_decode(codec->opus, data, (opus_int32) len, pcm, n, 0);

    return n < 0 ? NGX_ERROR : n;
}


ssize_t
ngx_http_voice_codec_encode(ngx_http_voice_codec_t *codec,
    const int16_t *pcm, size_t n, u_char *out, size_t cap)
{
    size_t   i;
    int16_t  s;

    switch (codec->encoding) {

    case NGX_HTTP_VOICE_PCM_S16LE:
        if (n > cap / 2 || n > (size_t) NGX_MAX_SIZE_T_VALUE / 2) {
            return NGX_ERROR;
        }

        for (i = 0; i < n; i++) {
            s = pcm[i];
            out[2 * i] = (u_char) ((uint16_t) s & 0xff);
            out[2 * i + 1] = (u_char) ((uint16_t) s >> 8);
        }

        return 2 * n;

    case NGX_HTTP_VOICE_MULAW:
        if (n > cap || n > (size_t) NGX_MAX_SIZE_T_VALUE) {
            return NGX_ERROR;
        }

        ngx_http_voice_mulaw_encode(pcm, n, out);
        return n;

    case NGX_HTTP_VOICE_OPUS:
        return ngx_http_voice_opus_encode(codec, pcm, n, out, cap);

    default:
        return NGX_ERROR;
    }
}


static ssize_t
ngx_http_voice_opus_encode(ngx_http_voice_codec_t *codec, const int16_t *pcm,
    size_t n, u_char *out, size_t cap)
{
    size_t      max;
    opus_int32  rc;

    if (codec->opus == NULL || !codec->encoder) {
        return NGX_ERROR;
    }

    if (n == 0 || n > codec->rate * NGX_HTTP_VOICE_OPUS_MAX_MS / 1000) {
        return NGX_ERROR;
    }

    /* the encoder keeps to max_data_bytes by lowering quality */

    max = ngx_min(cap, ngx_http_voice_codec_frame_size(codec, n));

    /* libopus itself refuses a frame size it does not allow */

    rc = opus_encode(codec->opus, pcm, (int) n, out, (opus_int32) max);

    return rc < 0 ? NGX_ERROR : rc;
}


size_t
ngx_http_voice_codec_frame_size(ngx_http_voice_codec_t *codec, size_t n)
{
    size_t  frames;

    switch (codec->encoding) {

    case NGX_HTTP_VOICE_PCM_S16LE:
        return n > NGX_MAX_SIZE_T_VALUE / 2 ? NGX_MAX_SIZE_T_VALUE : 2 * n;

    case NGX_HTTP_VOICE_MULAW:
        return n;

    case NGX_HTTP_VOICE_OPUS:

        /*
         * What codec_encode lets one packet reach: a few times the
         * nominal bitrate plus framing (TOC, frame count and lengths)
         * for each 20 ms frame of a long packet.
         */

        if (codec->rate == 0) {
            return 0;
        }

        n = ngx_min(n, codec->rate * NGX_HTTP_VOICE_OPUS_MAX_MS / 1000);
        frames = (n * 50 + codec->rate - 1) / codec->rate;

        return n * (NGX_HTTP_VOICE_OPUS_BITRATE / 8)
               * NGX_HTTP_VOICE_OPUS_PEAK / codec->rate
               + 8 * ngx_max(frames, 1);

    default:
        return 0;
    }
}


ngx_int_t
ngx_http_voice_resampler_init(ngx_http_voice_resampler_t *rs,
    ngx_uint_t from, ngx_uint_t to, ngx_uint_t quality)
{
    int  err;

    ngx_memzero(rs, sizeof(ngx_http_voice_resampler_t));

    rs->from = from;
    rs->to = to;

    if (from == 0 || to == 0 || from > 384000 || to > 384000
        || quality >= sizeof(ngx_http_voice_src_types) / sizeof(int))
    {
        return NGX_ERROR;
    }

    if (from == to) {
        return NGX_OK;
    }

    if (!src_is_valid_ratio((double) to / from)) {
        return NGX_ERROR;
    }

    rs->src = src_new(ngx_http_voice_src_types[quality], 1, &err);

    return rs->src ? NGX_OK : NGX_ERROR;
}


void
ngx_http_voice_resampler_reset(ngx_http_voice_resampler_t *rs)
{
    if (rs->src) {
        (void) src_reset(rs->src);
    }
}


void
ngx_http_voice_resampler_free(ngx_http_voice_resampler_t *rs)
{
    if (rs->src) {
        src_delete(rs->src);
        rs->src = NULL;
    }

    free(rs->in);
    free(rs->out);

    rs->in = NULL;
    rs->out = NULL;
    rs->size = 0;
}


ssize_t
ngx_http_voice_resampler_run(ngx_http_voice_resampler_t *rs,
    const int16_t *in, size_t n, int16_t *out, size_t cap)
{
    size_t    chunk, m, done, used, written;
    SRC_DATA  data;

    if (n == 0) {
        return 0;
    }

    if (rs->src == NULL) {
        if (rs->from != rs->to || n > cap) {
            return NGX_ERROR;
        }

        ngx_memcpy(out, in, n * sizeof(int16_t));
        return n;
    }

    /*
     * Each call consumes all its input, so a cap below the documented
     * bound is refused up front rather than losing samples midway.
     */

    if (n > NGX_MAX_SIZE_T_VALUE / 4 / rs->to
        || cap < ngx_http_voice_resampler_cap(rs, n))
    {
        return NGX_ERROR;
    }

    /* chunks small enough that the output of one fits the scratch too */

    chunk = NGX_HTTP_VOICE_RESAMPLE_CHUNK;

    if (rs->to > rs->from) {
        chunk = ngx_max(chunk * rs->from / rs->to, 1);
    }

    m = ngx_min(n, chunk);

    if (ngx_http_voice_resampler_grow(rs, ngx_max(m, m * rs->to / rs->from
                                      + NGX_HTTP_VOICE_RESAMPLE_SLACK),
                                      in[0])
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memzero(&data, sizeof(SRC_DATA));
    data.src_ratio = (double) rs->to / rs->from;
    data.end_of_input = 0;
    data.data_out = rs->out;

    written = 0;

    for (done = 0; done < n; done += m) {
        m = ngx_min(n - done, chunk);

        /*
         * rs->in[0] holds the sample before this chunk: libsamplerate's
         * linear converter reads data_in[-1] when given a single sample
         * (0.2.2), so that read must land on the right value.
         */

        src_short_to_float_array(in + done, rs->in + 1, (int) m);

        for (used = 0; used < m; used += data.input_frames_used) {
            data.data_in = rs->in + 1 + used;
            data.input_frames = m - used;
            data.output_frames = ngx_min(rs->size, cap - written);

            if (src_process(rs->src, &data) != 0) {
                return NGX_ERROR;
            }

            if (data.input_frames_used == 0 && data.output_frames_gen == 0) {
                /* no progress: cap is full */
                return NGX_ERROR;
            }

            src_float_to_short_array(rs->out, out + written,
                                     (int) data.output_frames_gen);
            written += data.output_frames_gen;
        }

        rs->in[0] = rs->in[m];
    }

    return written;
}


static ngx_int_t
ngx_http_voice_resampler_grow(ngx_http_voice_resampler_t *rs, size_t size,
    int16_t first)
{
    float  *in, *out, last;

    if (size <= rs->size) {
        return NGX_OK;
    }

    /* before any input, the sample before the stream is its first one */

    last = rs->in ? rs->in[0] : (float) first / 32768;

    in = malloc((size + 1) * sizeof(float));
    out = malloc(size * sizeof(float));

    if (in == NULL || out == NULL) {
        free(in);
        free(out);
        return NGX_ERROR;
    }

    free(rs->in);
    free(rs->out);

    rs->in = in;
    rs->out = out;
    rs->size = size;
    rs->in[0] = last;

    return NGX_OK;
}


void
ngx_http_voice_mulaw_encode(const int16_t *pcm, size_t n, u_char *out)
{
    size_t      i;
    ngx_int_t   x, mag, e;
    ngx_uint_t  sign;

    for (i = 0; i < n; i++) {
        x = pcm[i];

        if (x < 0) {
            mag = -x;
            sign = 0x80;

        } else {
            mag = x;
            sign = 0;
        }

        /* clip, then bias so every segment starts at a power of two */

        if (mag > NGX_HTTP_VOICE_ULAW_CLIP) {
            mag = NGX_HTTP_VOICE_ULAW_CLIP;
        }

        mag += NGX_HTTP_VOICE_ULAW_BIAS;

        e = ngx_http_voice_ulaw_exponent[mag >> 7];

        out[i] = (u_char) ~(sign | (e << 4) | ((mag >> (e + 3)) & 0x0f));
    }
}


void
ngx_http_voice_mulaw_decode(const u_char *in, size_t n, int16_t *pcm)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        pcm[i] = ngx_http_voice_ulaw_decode[in[i]];
    }
}
