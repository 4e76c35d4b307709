
/*
 * Client dialects: voice.v1, Twilio Media Streams and the Vonage
 * WebSocket.  Text frames in, session events out, and the JSON of the
 * messages the server sends.
 */


#ifndef _NGX_HTTP_VOICE_PROTOCOL_H_INCLUDED_
#define _NGX_HTTP_VOICE_PROTOCOL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_voice_state.h"
#include "ngx_http_voice_audio.h"
#include "ngx_http_voice_module.h"


#define NGX_HTTP_VOICE_MAX_SESSION_ID  64
#define NGX_HTTP_VOICE_MAX_JSON        1024
#define NGX_HTTP_VOICE_MAX_MARK        32


/* what one text frame says, decoded */
typedef struct {
    ngx_http_voice_event_e   event;
    ngx_http_voice_format_t  input;
    ngx_http_voice_format_t  output;
    size_t                   session_id_len;
    u_char                   session_id[NGX_HTTP_VOICE_MAX_SESSION_ID];
    u_char                  *audio;        /* AUDIO in a text frame */
    size_t                   audio_len;
    size_t                   mark_len;     /* MARK */
    u_char                   mark[NGX_HTTP_VOICE_MAX_MARK];
    u_char                   digit;        /* DTMF */
    u_char                  *text;         /* TEXT_INPUT */
    size_t                   text_len;
    char                     reason[128];  /* BAD_MESSAGE, BAD_FORMAT */
} ngx_http_voice_message_t;


/*
 * Always yields an event: malformed input becomes BAD_MESSAGE.  Audio
 * carried in text (Twilio media) is decoded into audio, of audio_cap bytes.
 */
void ngx_http_voice_protocol_decode(ngx_uint_t dialect, const u_char *data,
    size_t len, ngx_http_voice_message_t *m, u_char *audio,
    size_t audio_cap);

const char *ngx_http_voice_encoding_name(ngx_uint_t encoding);

/*
 * Server messages, written as compact JSON into buf; each returns the
 * length, or 0 when the message did not fit or could not be built.
 */
size_t ngx_http_voice_protocol_started(u_char *buf, size_t size,
    ngx_str_t *session_id, ngx_http_voice_format_t *in,
    ngx_http_voice_format_t *out);
size_t ngx_http_voice_protocol_state(u_char *buf, size_t size,
    const char *state);
size_t ngx_http_voice_protocol_error(u_char *buf, size_t size,
    const char *code, const char *message, ngx_uint_t recoverable);
size_t ngx_http_voice_protocol_info(u_char *buf, size_t size,
    const char *code, const char *message);
size_t ngx_http_voice_protocol_speech(u_char *buf, size_t size,
    ngx_uint_t started, ngx_uint_t turn, uint64_t audio_ms);
size_t ngx_http_voice_protocol_transcript(u_char *buf, size_t size,
    ngx_uint_t final, ngx_uint_t turn, ngx_str_t *text);
size_t ngx_http_voice_protocol_delta(u_char *buf, size_t size,
    ngx_uint_t turn, ngx_str_t *text);
size_t ngx_http_voice_protocol_reply(u_char *buf, size_t size,
    ngx_uint_t turn, ngx_str_t *text);
size_t ngx_http_voice_protocol_metrics(u_char *buf, size_t size,
    ngx_uint_t turn, double *ms);
size_t ngx_http_voice_protocol_audio_done(u_char *buf, size_t size,
    ngx_uint_t turn);
size_t ngx_http_voice_protocol_interrupted(u_char *buf, size_t size,
    ngx_uint_t turn, const char *reason, ngx_str_t *spoken);
size_t ngx_http_voice_protocol_tool(u_char *buf, size_t size,
    ngx_uint_t result, ngx_uint_t turn, ngx_str_t *id, ngx_str_t *name,
    ngx_str_t *value);

/* Twilio's outbound messages; stream is the streamSid */
size_t ngx_http_voice_protocol_twilio_media(u_char *buf, size_t size,
    ngx_str_t *stream, const u_char *audio, size_t len);
size_t ngx_http_voice_protocol_twilio_mark(u_char *buf, size_t size,
    ngx_str_t *stream, ngx_uint_t mark);

/* a gateway's "drop what you have buffered" (Twilio or Vonage) */
size_t ngx_http_voice_protocol_clear(ngx_uint_t dialect, u_char *buf,
    size_t size, ngx_str_t *stream);

/* base64 of len bytes inside a Twilio media message */
#define ngx_http_voice_protocol_twilio_size(len)                              \
    (ngx_base64_encoded_length(len) + NGX_HTTP_VOICE_MAX_SESSION_ID + 64)


#endif /* _NGX_HTTP_VOICE_PROTOCOL_H_INCLUDED_ */
