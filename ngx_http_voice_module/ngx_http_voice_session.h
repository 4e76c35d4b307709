
/*
 * A voice session: one upgraded connection, its reads, writes, timers and
 * the state machine that decides what every event does.
 */


#ifndef _NGX_HTTP_VOICE_SESSION_H_INCLUDED_
#define _NGX_HTTP_VOICE_SESSION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_module.h"
#include "ngx_http_voice_ws.h"
#include "ngx_http_voice_ring.h"
#include "ngx_http_voice_protocol.h"
#include "ngx_http_voice_state.h"
#include "ngx_http_voice_audio.h"
#include "ngx_http_voice_vad.h"
#include "ngx_http_voice_playout.h"


#define NGX_HTTP_VOICE_MARKS  16


/* a Twilio mark sent after the sample it stands for */
typedef struct {
    ngx_uint_t                   id;
    uint64_t                     position;
} ngx_http_voice_mark_t;


/* when each stage of a turn's reply happened, in microseconds */
typedef struct {
    uint64_t                     heard;      /* the user's turn ended */
    uint64_t                     final;      /* its transcript.final */
    uint64_t                     think;      /* the reply began */
    uint64_t                     token;      /* its first token */
    uint64_t                     phrase;     /* its first phrase asked */
    uint64_t                     audio;      /* its first audio queued */
    ngx_uint_t                   turn;
    unsigned                     voice:1;    /* a spoken turn */
    unsigned                     sent:1;
} ngx_http_voice_metrics_t;


typedef struct {
    ngx_http_request_t          *request;
    ngx_connection_t            *connection;
    ngx_http_voice_loc_conf_t   *conf;
    ngx_event_handler_pt         request_handler;  /* nginx's, for c->read */
    ngx_event_t                  close_event;      /* deferred finalizing */
    ngx_int_t                    rc;

    ngx_http_voice_state_e       state;
    ngx_http_voice_ws_parser_t   parser;

    ngx_http_voice_ring_t        message;    /* a message spanning reads */
    ngx_http_voice_ring_t        out;        /* frames queued to the client */
    ngx_http_voice_ring_t        echo;       /* the echo delay line */
    ngx_event_t                  echo_timer;

    /* audio in: client format -> PCM16 16 kHz -> VAD, pipeline */
    ngx_http_voice_codec_t       decoder;
    ngx_http_voice_resampler_t   in_rate;
    ngx_http_voice_vad_t        *vad;        /* NULL: not listening */
    uint64_t                     speech_pos; /* of the last VAD event */
    uint64_t                     utterance;  /* samples since it started */
    uint64_t                     voiced;     /* ... that were speech */
    size_t                       utterance_size;   /* client bytes */
    ngx_uint_t                   turn;
    ngx_http_voice_stt_t        *stt;        /* NULL: nobody transcribes */
    ngx_http_voice_llm_t        *llm;        /* NULL: nobody answers */
    ngx_http_voice_tts_t        *tts;        /* NULL: replies are text */
    ngx_http_voice_event_e       follow;     /* raised once the event
                                                under way is done */
    ngx_uint_t                   depth;      /* events under way */
    const char                  *reason;     /* of an interruption */
    ngx_http_voice_metrics_t     metrics;    /* of the turn under way */
    ngx_http_voice_metrics_t     reply;      /* ... and of the reply */

    /* audio out: PCM16 16 kHz -> client rate -> paced frames */
    ngx_http_voice_resampler_t   out_rate;
    ngx_http_voice_codec_t       encoder;
    ngx_http_voice_ring_t        playout;    /* PCM16 at encoder.rate */
    ngx_http_voice_playout_t     pacer;
    ngx_event_t                  playout_timer;
    ngx_uint_t                   frame;      /* samples per 20 ms */
    ngx_uint_t                   marks_sent;
    ngx_uint_t                   nmarks;
    ngx_http_voice_mark_t        marks[NGX_HTTP_VOICE_MARKS];

    ngx_http_voice_format_t      input;
    ngx_http_voice_format_t      output;
    ngx_str_t                    id;
    u_char                       id_data[NGX_HTTP_VOICE_MAX_SESSION_ID];

    ngx_uint_t                   peer_code;  /* the client's close code */
    ngx_uint_t                   frames_in;
    ngx_uint_t                   frames_out;
    ngx_uint_t                   dropped;    /* audio frames, both ways */
    ngx_msec_t                   last_drop;

    unsigned                     muted:1;
    unsigned                     raw_echo:1;     /* frames back unchanged */
    unsigned                     wrote:1;        /* progress since timer */
    unsigned                     overflow:1;     /* echo line was full */
    unsigned                     ending:1;       /* session.end: flushing */
    unsigned                     close_queued:1; /* no more frames after */
    unsigned                     peer_closed:1;  /* their close frame came */
    unsigned                     fail:1;         /* close TCP after ours */
    unsigned                     shutdown:1;
    unsigned                     done:1;         /* finalized */
} ngx_http_voice_session_t;


/* what came with an event: audio bytes or a decoded text message */
typedef struct {
    u_char                      *data;
    size_t                       len;
    ngx_http_voice_message_t    *msg;
} ngx_http_voice_input_t;


ngx_int_t ngx_http_voice_session_create(ngx_http_request_t *r);
void ngx_http_voice_session_run(ngx_http_request_t *r);

/*
 * For the parts of a session in other files.  Each returns NGX_OK, or
 * NGX_ERROR once the session is over (queue: NGX_DECLINED when audio was
 * dropped).
 */
ngx_int_t ngx_http_voice_session_event(ngx_http_voice_session_t *s,
    ngx_http_voice_event_e event, ngx_http_voice_input_t *in);
ngx_int_t ngx_http_voice_session_raise(ngx_http_voice_session_t *s,
    ngx_http_voice_event_e event, ngx_http_voice_input_t *in);
ngx_int_t ngx_http_voice_session_follow(ngx_http_voice_session_t *s,
    ngx_http_voice_event_e event);
ngx_int_t ngx_http_voice_session_error(ngx_http_voice_session_t *s,
    const char *code, const char *message, ngx_uint_t recoverable);
ngx_int_t ngx_http_voice_session_info(ngx_http_voice_session_t *s,
    const char *code, const char *message);
ngx_int_t ngx_http_voice_session_text(ngx_http_voice_session_t *s,
    u_char *buf, size_t n);
ngx_int_t ngx_http_voice_session_queue(ngx_http_voice_session_t *s,
    ngx_uint_t opcode, u_char *data, size_t len, ngx_http_voice_ring_t *src,
    ngx_uint_t audio);
ngx_int_t ngx_http_voice_session_close(ngx_http_voice_session_t *s,
    ngx_uint_t code, const char *reason);
ngx_int_t ngx_http_voice_session_send(ngx_http_voice_session_t *s);
ngx_int_t ngx_http_voice_session_end(ngx_http_voice_session_t *s);


#endif /* _NGX_HTTP_VOICE_SESSION_H_INCLUDED_ */
