
/*
 * Voice activity detection and endpointing on the pipeline audio (PCM16
 * mono 16 kHz).
 *
 * A classifier marks each 10 ms frame as speech or not by comparing the
 * energy of sixteen frequency bands with a noise floor it keeps learning;
 * an endpointer turns those marks into two events: SPEECH_STARTED once
 * min_speech of speech has been heard, and SPEECH_ENDED after `silence'
 * without speech.
 *
 * Pure code: no nginx runtime, no allocation, no I/O.  An instance is a
 * plain structure that the owner embeds or allocates wherever it likes.
 */


#ifndef _NGX_HTTP_VOICE_VAD_H_INCLUDED_
#define _NGX_HTTP_VOICE_VAD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_VOICE_VAD_RATE          16000
#define NGX_HTTP_VOICE_VAD_FRAME         160      /* 10 ms */
#define NGX_HTTP_VOICE_VAD_WINDOW        256      /* analysis window */
#define NGX_HTTP_VOICE_VAD_BANDS         16
#define NGX_HTTP_VOICE_VAD_HISTORY       8        /* noise minimum spans */

#define NGX_HTTP_VOICE_VAD_SILENCE_MIN   300      /* ms */
#define NGX_HTTP_VOICE_VAD_SILENCE_MAX   2000
#define NGX_HTTP_VOICE_VAD_SILENCE       700      /* the default */
#define NGX_HTTP_VOICE_VAD_SPEECH_MIN    20
#define NGX_HTTP_VOICE_VAD_SPEECH_MAX    1000
#define NGX_HTTP_VOICE_VAD_MIN_SPEECH    150      /* the default */

#define NGX_HTTP_VOICE_VAD_SPEECH_STARTED  1
#define NGX_HTTP_VOICE_VAD_SPEECH_ENDED    2


/*
 * The most events one call can report for n samples: a STARTED and an
 * ENDED are at least the minimum silence apart, so two per 300 ms and two
 * more for the frames at the edges of the chunk.
 */
#define ngx_http_voice_vad_max_events(n)                                     \
    (2 * ((n) / (NGX_HTTP_VOICE_VAD_SILENCE_MIN                              \
                 * (NGX_HTTP_VOICE_VAD_RATE / 1000))) + 2)


typedef struct {
    ngx_uint_t          type;
    uint64_t            pos;        /* sample where it was decided */
    uint64_t            speech;     /* where speech began (STARTED) or
                                       ended (ENDED) by the classifier */
} ngx_http_voice_vad_event_t;


typedef struct {
    /* settings, in frames */
    ngx_uint_t          silence;
    ngx_uint_t          min_speech;

    /* a partial frame waiting for the next call */
    int16_t             pending[NGX_HTTP_VOICE_VAD_FRAME];
    ngx_uint_t          npending;

    /* the window overlaps the previous frame by this many samples */
    float               tail[NGX_HTTP_VOICE_VAD_WINDOW
                             - NGX_HTTP_VOICE_VAD_FRAME];
    float               dc;         /* DC blocker state */
    float               dc_in;

    uint64_t            frames;     /* frames classified so far */

    /* noise model, per band */
    float               noise[NGX_HTTP_VOICE_VAD_BANDS];
    float               smooth[NGX_HTTP_VOICE_VAD_BANDS];
    float               low[NGX_HTTP_VOICE_VAD_BANDS];
    float               lows[NGX_HTTP_VOICE_VAD_HISTORY]
                            [NGX_HTTP_VOICE_VAD_BANDS];
    ngx_uint_t          span;       /* frames into the current span */
    ngx_uint_t          nspans;

    /* classifier output */
    float               score;
    ngx_uint_t          hang;
    unsigned            speech:1;   /* with the hangover */
    unsigned            voiced:1;   /* without */

    /* endpointer */
    unsigned            talking:1;
    ngx_uint_t          run;        /* speech frames towards a start */
    ngx_uint_t          gap;        /* non-speech frames inside it */
    ngx_uint_t          spanned;    /* frames since the run began */
    ngx_uint_t          burst;      /* consecutive speech frames */
    uint64_t            onset;      /* sample where the run began */
    uint64_t            last;       /* end of the last real speech */
} ngx_http_voice_vad_t;


/*
 * silence and min_speech in milliseconds (0 takes the default); NGX_ERROR
 * when one is out of its range.
 */
ngx_int_t ngx_http_voice_vad_init(ngx_http_voice_vad_t *vad,
    ngx_msec_t silence, ngx_msec_t min_speech);

/*
 * Runs n samples through the detector.  Returns how many events happened
 * in them; the first `max' are stored in events, in order.  An array of
 * ngx_http_voice_vad_max_events(n) entries never misses one.
 */
ngx_uint_t ngx_http_voice_vad_feed(ngx_http_voice_vad_t *vad,
    const int16_t *pcm, size_t n, ngx_http_voice_vad_event_t *events,
    ngx_uint_t max);

/*
 * A new turn: forgets any speech in progress without an event.  The noise
 * model and the stream position stay.
 */
void ngx_http_voice_vad_reset(ngx_http_voice_vad_t *vad);

/* nothing is allocated; kept so that owners need not know it */
void ngx_http_voice_vad_free(ngx_http_voice_vad_t *vad);

/* samples fed so far */
#define ngx_http_voice_vad_position(vad)                                     \
    ((vad)->frames * NGX_HTTP_VOICE_VAD_FRAME + (vad)->npending)

/* the classifier's verdict on the last whole frame */
#define ngx_http_voice_vad_speech(vad)  ((vad)->speech)

/* an utterance is in progress (SPEECH_STARTED without SPEECH_ENDED yet) */
#define ngx_http_voice_vad_talking(vad)  ((vad)->talking)


#endif /* _NGX_HTTP_VOICE_VAD_H_INCLUDED_ */
