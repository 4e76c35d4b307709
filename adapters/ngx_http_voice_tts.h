
/*
 * Streaming text-to-speech: one interface for every engine.
 *
 * The reply's text is cut into phrases as the language model writes it;
 * each phrase goes to the engine as soon as it is complete, and the
 * engine streams PCM16 mono back through the ngx_http_voice_tts_*()
 * reports at the end of this file.  The session converts the audio to the
 * client's format and paces it out; it owns timeouts, flow control,
 * barge-in and what the user heard.  An engine only speaks its provider's
 * wire format.
 */


#ifndef _NGX_HTTP_VOICE_TTS_H_INCLUDED_
#define _NGX_HTTP_VOICE_TTS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_upstream.h"
#include "ngx_http_voice_phrase.h"
#include "ngx_http_voice_audio.h"


#define NGX_HTTP_VOICE_TTS_OFF          0
#define NGX_HTTP_VOICE_TTS_EMBEDDED     1
#define NGX_HTTP_VOICE_TTS_CARTESIA     2
#define NGX_HTTP_VOICE_TTS_ELEVENLABS   3
#define NGX_HTTP_VOICE_TTS_OPENAI       4

/* Cartesia's two ways of passing the key */
#define NGX_HTTP_VOICE_TTS_AUTH_BEARER  0      /* Authorization: Bearer */
#define NGX_HTTP_VOICE_TTS_AUTH_HEADER  1      /* X-API-Key */


typedef struct ngx_http_voice_tts_s  ngx_http_voice_tts_t;


/* per location, from the voice_tts* directives */
typedef struct {
    ngx_uint_t                       engine;       /* NGX_HTTP_VOICE_TTS_* */
    ngx_str_t                        url;          /* the provider endpoint */
    ngx_str_t                        key;          /* secret, or empty */
    ngx_str_t                        voice;        /* provider's voice id,
                                                      or espeak-ng's name */
    ngx_str_t                        model;
    ngx_str_t                        language;     /* "en" */
    ngx_str_t                        version;      /* Cartesia-Version */
    ngx_uint_t                       auth;         /* ..._TTS_AUTH_* */
    ngx_uint_t                       speed;        /* hundredths: 25..400 */
    ngx_uint_t                       max_phrase;   /* characters */
    ngx_msec_t                       timeout;      /* for audio, once asked */

    /* WebSocket engines: prepared by init_conf */
    ngx_http_voice_upstream_conf_t   upstream;

    /* set by the glue from the location */
    ngx_msec_t                       connect_timeout;
    ngx_flag_t                       ssl_verify;
    ngx_str_t                        ssl_trusted_certificate;
} ngx_http_voice_tts_conf_t;


/* a phrase of the reply under way */
typedef struct {
    ngx_str_t                        text;         /* valid during the call:
                                                      copy what is kept */
    ngx_uint_t                       index;        /* 0: the reply's first */
    size_t                           offset;       /* reply bytes before */
    ngx_uint_t                       words;        /* reply words before */
    unsigned                         last:1;       /* end follows at once */
} ngx_http_voice_tts_phrase_t;


typedef struct {
    const char  *name;

    /*
     * Configuration time: fills the engine's defaults (URL, model, voice)
     * where the directives left them unset (empty), checks and prepares
     * conf.  NGX_CONF_OK or why not, for nginx -t.
     */
    char       *(*init_conf)(ngx_conf_t *cf, ngx_http_voice_tts_conf_t *conf);

    /*
     * The session starts; the engine sets tts->rate, the rate of the PCM
     * it will report (tts->out_rate, the client's, is the best choice
     * where the provider offers it), and may connect ahead of the first
     * reply.  NGX_OK or NGX_ERROR (the session fails).
     */
    ngx_int_t   (*open)(ngx_http_voice_tts_t *tts);

    /*
     * A phrase of the reply tts->turn, in order; index 0 begins a reply.
     * NGX_OK: its audio will be reported, or failed.  NGX_ERROR: the
     * engine could not take it (the glue reports the failure).
     */
    ngx_int_t   (*speak)(ngx_http_voice_tts_t *tts,
                         ngx_http_voice_tts_phrase_t *phrase);

    /* the reply has no more phrases: done follows its last audio */
    ngx_int_t   (*end)(ngx_http_voice_tts_t *tts);

    /*
     * The glue cannot take more audio for now (the client's queue is
     * full): read nothing more from the provider until resume.  Audio
     * already read may still be reported.
     */
    void        (*pause)(ngx_http_voice_tts_t *tts);
    void        (*resume)(ngx_http_voice_tts_t *tts);

    /*
     * Drops the reply now, in this event-loop turn (a Cartesia cancel, a
     * closed stream, an aborted request); no report for it follows, and
     * the engine is ready for the next reply.
     */
    void        (*cancel)(ngx_http_voice_tts_t *tts);

    /* the session ends: no report may follow; frees what the engine took */
    void        (*close)(ngx_http_voice_tts_t *tts);
} ngx_http_voice_tts_engine_t;


/* a point of the reply's audio where a word ends */
typedef struct {
    uint64_t                         sample;       /* at the client's rate,
                                                      from the reply's first */
    size_t                           offset;       /* reply bytes spoken */
} ngx_http_voice_tts_anchor_t;


#define NGX_HTTP_VOICE_TTS_ANCHORS  64
#define NGX_HTTP_VOICE_TTS_PENDING  16     /* phrase ends remembered */


struct ngx_http_voice_tts_s {
    const ngx_http_voice_tts_engine_t  *engine;
    ngx_http_voice_tts_conf_t          *conf;
    void                               *session;   /* the owner */
    ngx_http_request_t                 *request;
    ngx_pool_t                         *pool;      /* the session's */
    ngx_log_t                          *log;
    void                               *ctx;       /* the engine's */

    ngx_uint_t                          rate;      /* of reported audio */
    ngx_uint_t                          out_rate;  /* the client's */

    /* the reply being spoken, for engines to read */
    ngx_uint_t                          turn;      /* 0: none */
    ngx_uint_t                          phrases;   /* given to the engine */
    uint64_t                            samples;   /* reported, at rate */

    /* the glue's own */
    ngx_str_t                          *reply;     /* the reply's text */
    ngx_http_voice_phrase_t             phraser;
    u_char                             *phrase_buf;
    size_t                              fed;       /* reply bytes phrased */
    ngx_uint_t                          words;     /* in phrases given */
    size_t                              ends[NGX_HTTP_VOICE_TTS_PENDING];
    ngx_http_voice_resampler_t          resampler; /* rate -> out_rate */
    size_t                              high;      /* samples queued that
                                                      pause the engine */
    uint64_t                            start;     /* the reply's first
                                                      sample, in the
                                                      client's stream */
    ngx_http_voice_tts_anchor_t         anchors[NGX_HTTP_VOICE_TTS_ANCHORS];
    ngx_uint_t                          nanchors;
    ngx_uint_t                          scan_words;    /* word_end's */
    size_t                              scan_offset;
    size_t                              spoken;    /* reply bytes heard */
    ngx_event_t                         timer;     /* audio overdue */
    u_char                              odd;       /* a half sample */
    unsigned                            carried:1; /* odd holds one */
    unsigned                            speaking:1;    /* audio queued */
    unsigned                            ended:1;       /* end() called */
    unsigned                            done:1;        /* all reported */
    unsigned                            failed:1;      /* this reply */
    unsigned                            heard:1;       /* played out */
    unsigned                            paused:1;
    unsigned                            silenced:1;    /* barge-in */
    unsigned                            closed:1;
};


extern const ngx_http_voice_tts_engine_t  ngx_http_voice_tts_embedded;
extern const ngx_http_voice_tts_engine_t  ngx_http_voice_tts_cartesia;
extern const ngx_http_voice_tts_engine_t  ngx_http_voice_tts_elevenlabs;
extern const ngx_http_voice_tts_engine_t  ngx_http_voice_tts_openai;


/*
 * Reports from engines, for the reply tts->turn.  Each returns NGX_OK,
 * or NGX_ERROR once the reply or the session is over: the engine then
 * returns at once (its cancel has been called, or close follows).
 */

/*
 * Audio: PCM16 little-endian mono at tts->rate, in order, split anywhere
 * (an odd byte is carried to the next call).  NGX_AGAIN: taken, but the
 * client's queue is full; pause has been called.
 */
ngx_int_t ngx_http_voice_tts_audio(ngx_http_voice_tts_t *tts,
    const u_char *data, size_t len);

/*
 * Where a word ends: the first `words' words of the reply (counted over
 * the phrases given, as whitespace-separated runs) have been spoken by
 * audio sample `sample' (at tts->rate, from the reply's first).  Word
 * timestamps of the provider, when it sends them; optional.
 */
ngx_int_t ngx_http_voice_tts_word(ngx_http_voice_tts_t *tts,
    ngx_uint_t words, uint64_t sample);

/* all audio of phrase `index' has been reported (optional) */
ngx_int_t ngx_http_voice_tts_phrase_done(ngx_http_voice_tts_t *tts,
    ngx_uint_t index);

/* all audio of the reply has been reported, after end() */
ngx_int_t ngx_http_voice_tts_done(ngx_http_voice_tts_t *tts);

/*
 * The reply's speech failed and the engine has dropped it (as cancel
 * would).  The client gets error TTS_FAIL, recoverable; the text reply
 * goes on, and the next reply is spoken again.  message goes to the
 * client: never a secret.
 */
ngx_int_t ngx_http_voice_tts_failed(ngx_http_voice_tts_t *tts,
    const char *message);


/* the session's side */
ngx_http_voice_tts_t *ngx_http_voice_tts_open(
    ngx_http_voice_tts_conf_t *conf, void *session, ngx_http_request_t *r,
    ngx_uint_t out_rate, ngx_uint_t quality);
ngx_int_t ngx_http_voice_tts_begin(ngx_http_voice_tts_t *tts,
    ngx_uint_t turn, ngx_str_t *reply);
ngx_int_t ngx_http_voice_tts_text(ngx_http_voice_tts_t *tts);
ngx_int_t ngx_http_voice_tts_end(ngx_http_voice_tts_t *tts);
ngx_int_t ngx_http_voice_tts_drained(ngx_http_voice_tts_t *tts,
    size_t queued);
size_t ngx_http_voice_tts_silence(ngx_http_voice_tts_t *tts,
    uint64_t played);
void ngx_http_voice_tts_cancel(ngx_http_voice_tts_t *tts);
void ngx_http_voice_tts_close(ngx_http_voice_tts_t *tts);


/* configuration */
void ngx_http_voice_tts_create_conf(ngx_http_voice_tts_conf_t *conf);
char *ngx_http_voice_tts_merge_conf(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *prev, ngx_http_voice_tts_conf_t *conf,
    ngx_uint_t agent, ngx_uint_t serves);
char *ngx_http_voice_tts_upstream(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf, size_t send_buffer, size_t max_message);
char *ngx_http_voice_tts_engine_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_voice_tts_key_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_voice_tts_speed_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


/* the embedded engine's worker state: espeak-ng in a thread pool */
ngx_int_t ngx_http_voice_tts_embedded_init_process(ngx_cycle_t *cycle,
    ngx_thread_pool_t *pool);
void ngx_http_voice_tts_embedded_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_VOICE_TTS_H_INCLUDED_ */
