
/*
 * The client dialect voice.v1: text frames in, session events out, and the
 * JSON of the messages the server sends.
 */


#ifndef _NGX_HTTP_VOICE_PROTOCOL_H_INCLUDED_
#define _NGX_HTTP_VOICE_PROTOCOL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_voice_state.h"
#include "ngx_http_voice_audio.h"


#define NGX_HTTP_VOICE_MAX_SESSION_ID  64
#define NGX_HTTP_VOICE_MAX_JSON        1024


/* what one text frame says, decoded */
typedef struct {
    ngx_http_voice_event_e   event;
    ngx_http_voice_format_t  input;
    ngx_http_voice_format_t  output;
    size_t                   session_id_len;
    u_char                   session_id[NGX_HTTP_VOICE_MAX_SESSION_ID];
    char                     reason[128];  /* BAD_MESSAGE, BAD_FORMAT */
} ngx_http_voice_message_t;


/* always yields an event: malformed input becomes BAD_MESSAGE */
void ngx_http_voice_protocol_decode(const u_char *data, size_t len,
    ngx_http_voice_message_t *m);

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


#endif /* _NGX_HTTP_VOICE_PROTOCOL_H_INCLUDED_ */
