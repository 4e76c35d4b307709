
/*
 * Audio formats: the client codecs (PCM, G.711 mu-law, Opus) and a
 * streaming resampler.  The pipeline works on one format, PCM16 mono at
 * 16 kHz; these convert between it and whatever the client speaks.
 *
 * No nginx runtime: memory comes from malloc (the owner frees it with the
 * matching _free call), so the code is unit-tested on its own.
 */


#ifndef _NGX_HTTP_VOICE_AUDIO_H_INCLUDED_
#define _NGX_HTTP_VOICE_AUDIO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_VOICE_RATE            16000   /* the pipeline's rate */

#define NGX_HTTP_VOICE_PCM_S16LE       1
#define NGX_HTTP_VOICE_MULAW           2
#define NGX_HTTP_VOICE_OPUS            3

/* resampler quality, as the voice_resample_quality directive names it */
#define NGX_HTTP_VOICE_RESAMPLE_BEST     0
#define NGX_HTTP_VOICE_RESAMPLE_MEDIUM   1
#define NGX_HTTP_VOICE_RESAMPLE_FASTEST  2
#define NGX_HTTP_VOICE_RESAMPLE_ZOH      3
#define NGX_HTTP_VOICE_RESAMPLE_LINEAR   4


typedef struct {
    ngx_uint_t          encoding;
    ngx_uint_t          sample_rate;
    ngx_uint_t          channels;
} ngx_http_voice_format_t;


/* one direction of one client format */
typedef struct {
    ngx_uint_t          encoding;
    ngx_uint_t          rate;        /* the PCM rate this codec works at */
    void               *opus;        /* OpusDecoder or OpusEncoder */
    u_char              carry;       /* PCM: an odd byte left over */
    unsigned            carried:1;
    unsigned            encoder:1;
} ngx_http_voice_codec_t;


typedef struct {
    void               *src;         /* SRC_STATE; NULL when rates match */
    ngx_uint_t          from;
    ngx_uint_t          to;
    float              *in;          /* conversion scratch */
    float              *out;
    size_t              size;        /* samples each scratch holds */
} ngx_http_voice_resampler_t;


ngx_int_t ngx_http_voice_codec_init(ngx_http_voice_codec_t *codec,
    ngx_http_voice_format_t *format, ngx_uint_t encoder);
void ngx_http_voice_codec_free(ngx_http_voice_codec_t *codec);

/*
 * Decodes one client frame into PCM16 at codec->rate.  Returns the number
 * of samples written (at most cap), or NGX_ERROR for an invalid frame.
 * A frame whose samples do not fit in cap is refused whole, nothing
 * consumed; len / 2 + 1 (PCM), len (mu-law) or codec->rate * 120 / 1000
 * (Opus) always suffices.  An empty frame gives 0.
 */
ssize_t ngx_http_voice_codec_decode(ngx_http_voice_codec_t *codec,
    const u_char *data, size_t len, int16_t *pcm, size_t cap);

/*
 * Encodes n samples of PCM16 at codec->rate (for Opus exactly one frame of
 * a size Opus allows) into out.  Returns bytes written or NGX_ERROR.
 * PCM and mu-law need the whole frame_size in cap; Opus fits its packet
 * into min(cap, frame_size).
 */
ssize_t ngx_http_voice_codec_encode(ngx_http_voice_codec_t *codec,
    const int16_t *pcm, size_t n, u_char *out, size_t cap);

/*
 * bytes one frame of n samples takes in this codec; Opus: the most that
 * codec_encode writes
 */
size_t ngx_http_voice_codec_frame_size(ngx_http_voice_codec_t *codec,
    size_t n);

ngx_int_t ngx_http_voice_resampler_init(ngx_http_voice_resampler_t *rs,
    ngx_uint_t from, ngx_uint_t to, ngx_uint_t quality);
void ngx_http_voice_resampler_free(ngx_http_voice_resampler_t *rs);

/* forgets the samples held back for the next call: a new stream begins */
void ngx_http_voice_resampler_reset(ngx_http_voice_resampler_t *rs);

/*
 * Converts n samples and keeps the filter state for the next call, so a
 * stream cut into frames of any size comes out without seams.  Returns
 * the samples written (at most cap) or NGX_ERROR.  A cap below
 * ngx_http_voice_resampler_cap(rs, n) (below n when the rates match) is
 * refused before anything is consumed.
 */
ssize_t ngx_http_voice_resampler_run(ngx_http_voice_resampler_t *rs,
    const int16_t *in, size_t n, int16_t *out, size_t cap);

/* a cap that always suffices for n input samples */
#define ngx_http_voice_resampler_cap(rs, n)                                   \
    ((n) * (rs)->to / (rs)->from + 64)

void ngx_http_voice_mulaw_encode(const int16_t *pcm, size_t n, u_char *out);
void ngx_http_voice_mulaw_decode(const u_char *in, size_t n, int16_t *pcm);


#endif /* _NGX_HTTP_VOICE_AUDIO_H_INCLUDED_ */
