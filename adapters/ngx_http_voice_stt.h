
/*
 * Streaming speech-to-text: one interface for every engine.
 *
 * The session hands an engine 16 kHz PCM16 mono audio as it arrives and
 * tells it when the user's turn ended; the engine reports what it heard
 * through the ngx_http_voice_stt_*() calls at the end of this file, which
 * turn results into transcript.partial and transcript.final events.  An
 * engine never touches the client socket.
 */


#ifndef _NGX_HTTP_VOICE_STT_H_INCLUDED_
#define _NGX_HTTP_VOICE_STT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_upstream.h"
#include "ngx_http_voice_transcript.h"


#define NGX_HTTP_VOICE_STT_OFF        0
#define NGX_HTTP_VOICE_STT_EMBEDDED   1
#define NGX_HTTP_VOICE_STT_DEEPGRAM   2


typedef struct ngx_http_voice_stt_s  ngx_http_voice_stt_t;


/*
 * A provider query parameter from voice_stt_param; its value may hold
 * variables, evaluated per session.  An empty value leaves it out.
 */
typedef struct {
    ngx_str_t                        name;
    ngx_http_complex_value_t         value;
} ngx_http_voice_stt_param_t;


/* per location, from the voice_stt* directives */
typedef struct {
    ngx_uint_t                       engine;       /* NGX_HTTP_VOICE_STT_* */
    size_t                           max_text;     /* transcript of a turn */

    /* Deepgram and servers that speak its protocol */
    ngx_http_voice_upstream_conf_t   upstream;     /* voice_stt_url */
    ngx_str_t                        url;
    ngx_array_t                     *params;       /* of ..._stt_param_t */
    ngx_str_t                        key;          /* secret, or empty */
    ngx_str_t                        auth;         /* header line: secret */
    size_t                           buffer;       /* audio kept to replay */
    ngx_msec_t                       timeout;      /* for an answer */
    ngx_uint_t                       retries;      /* reconnects in a row */

    /* the embedded engine */
    ngx_msec_t                       partial_interval;
} ngx_http_voice_stt_conf_t;


typedef struct {
    const char  *name;

    /* configuration time: checks and prepares conf; NGX_CONF_OK or why */
    char       *(*init_conf)(ngx_conf_t *cf, ngx_http_voice_stt_conf_t *conf);

    /* the session starts; NGX_OK or NGX_ERROR (the session fails) */
    ngx_int_t   (*open)(ngx_http_voice_stt_t *stt);

    /*
     * n samples of audio, in order, every frame the user sends while not
     * muted; stt->talking tells whether the local VAD hears speech.
     */
    ngx_int_t   (*audio)(ngx_http_voice_stt_t *stt, const int16_t *pcm,
                         size_t n);

    /* the turn ended here (silence or input.commit): make the final due */
    ngx_int_t   (*finalize)(ngx_http_voice_stt_t *stt);

    /* the session ends: no report may follow; frees what the engine took */
    void        (*close)(ngx_http_voice_stt_t *stt);
} ngx_http_voice_stt_engine_t;


struct ngx_http_voice_stt_s {
    const ngx_http_voice_stt_engine_t  *engine;
    ngx_http_voice_stt_conf_t          *conf;
    void                               *session;   /* the owner */
    ngx_http_request_t                 *request;   /* for variables */
    ngx_pool_t                         *pool;      /* the session's */
    ngx_log_t                          *log;
    void                               *ctx;       /* the engine's */

    ngx_http_voice_transcript_t         transcript;
    ngx_uint_t                          turn;      /* of the transcript; 0:
                                                      none has text yet */
    ngx_uint_t                          pending;   /* a turn that ended
                                                      before any text */
    ngx_uint_t                          last;      /* the last final's */
    uint64_t                            samples;   /* audio handed over */
    unsigned                            talking:1; /* the local VAD's view */
    unsigned                            closed:1;
};


extern const ngx_http_voice_stt_engine_t  ngx_http_voice_stt_deepgram;
extern const ngx_http_voice_stt_engine_t  ngx_http_voice_stt_embedded;


/*
 * Reports from engines.  Each returns NGX_OK, or NGX_ERROR once the
 * session is over: the engine then returns at once and touches nothing
 * but its own memory (close follows from the session's cleanup).
 */

/*
 * A result: an interim hypothesis (is_final 0) or a confirmed segment
 * (is_final 1); end when the provider says the utterance is over
 * (speech_final, or the answer to a finalize).
 */
ngx_int_t ngx_http_voice_stt_result(ngx_http_voice_stt_t *stt,
    const u_char *text, size_t len, ngx_uint_t is_final, ngx_uint_t end);

/* the provider says the utterance is over (Deepgram's UtteranceEnd) */
ngx_int_t ngx_http_voice_stt_utterance_end(ngx_http_voice_stt_t *stt);

/* the provider heard speech begin (Deepgram's SpeechStarted) */
ngx_int_t ngx_http_voice_stt_speech_started(ngx_http_voice_stt_t *stt);

/*
 * The engine failed.  recoverable: it goes on trying (the client gets
 * error STT_FAIL, recoverable); otherwise it has given up and the session
 * ends.  message goes to the client: never a secret.
 */
ngx_int_t ngx_http_voice_stt_failed(ngx_http_voice_stt_t *stt,
    ngx_uint_t recoverable, const char *message);


/*
 * The session's side.  open creates the STT of a session and starts its
 * engine (NULL on failure); the session's pool cleanup closes it.
 */
ngx_http_voice_stt_t *ngx_http_voice_stt_open(
    ngx_http_voice_stt_conf_t *conf, void *session, ngx_http_request_t *r);
ngx_int_t ngx_http_voice_stt_audio(ngx_http_voice_stt_t *stt,
    const int16_t *pcm, size_t n, ngx_uint_t talking);
ngx_int_t ngx_http_voice_stt_finalize(ngx_http_voice_stt_t *stt,
    ngx_uint_t turn);
void ngx_http_voice_stt_close(ngx_http_voice_stt_t *stt);

/* the transcript actions: transcript.partial or .final to the client */
ngx_int_t ngx_http_voice_stt_send(ngx_http_voice_stt_t *stt,
    ngx_uint_t final, u_char *data, size_t len);


/* configuration: the voice_stt* directives */
char *ngx_http_voice_stt_engine_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_voice_stt_param_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_voice_stt_key_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_voice_stt_create_conf(ngx_http_voice_stt_conf_t *conf);

/*
 * agent: the location runs the agent pipeline; serves: it has "voice" (the
 * engine is set up there only); trusted: voice_ssl_trusted_certificate.
 */
char *ngx_http_voice_stt_merge_conf(ngx_conf_t *cf,
    ngx_http_voice_stt_conf_t *prev, ngx_http_voice_stt_conf_t *conf,
    ngx_uint_t agent, ngx_uint_t serves, ngx_str_t *trusted);


#endif /* _NGX_HTTP_VOICE_STT_H_INCLUDED_ */
