
/*
 * The audio of a session: decoding, listening, the echo delay line, and
 * paced playout back to the client.
 */


#ifndef _NGX_HTTP_VOICE_MEDIA_H_INCLUDED_
#define _NGX_HTTP_VOICE_MEDIA_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_voice_session.h"


/* when the session is created, and once its formats are known */
void ngx_http_voice_media_create(ngx_http_voice_session_t *s);
ngx_int_t ngx_http_voice_media_init(ngx_http_voice_session_t *s);

/* actions of the state machine */
ngx_int_t ngx_http_voice_media_audio(ngx_http_voice_session_t *s,
    u_char *data, size_t len);
ngx_int_t ngx_http_voice_media_speech(ngx_http_voice_session_t *s,
    ngx_http_voice_event_e event);
void ngx_http_voice_media_end_turn(ngx_http_voice_session_t *s);
ngx_int_t ngx_http_voice_media_mark(ngx_http_voice_session_t *s,
    ngx_http_voice_message_t *msg);
ngx_int_t ngx_http_voice_media_drop(ngx_http_voice_session_t *s);
ngx_int_t ngx_http_voice_media_barge_in(ngx_http_voice_session_t *s,
    ngx_http_voice_event_e event);

/* the assistant's speech: PCM16 at the client's rate, paced out */
ngx_int_t ngx_http_voice_media_speak(ngx_http_voice_session_t *s,
    int16_t *pcm, size_t n);
ngx_int_t ngx_http_voice_media_pad(ngx_http_voice_session_t *s);
uint64_t ngx_http_voice_media_position(ngx_http_voice_session_t *s);
uint64_t ngx_http_voice_media_now(void);
#define ngx_http_voice_media_queued(s)  ((s)->playout.used / sizeof(int16_t))

ngx_int_t ngx_http_voice_media_flush(ngx_http_voice_session_t *s);
void ngx_http_voice_media_stop(ngx_http_voice_session_t *s);
void ngx_http_voice_media_cleanup(ngx_http_voice_session_t *s);


#endif /* _NGX_HTTP_VOICE_MEDIA_H_INCLUDED_ */
