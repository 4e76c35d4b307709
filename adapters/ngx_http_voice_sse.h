
/*
 * An incremental parser of Server-Sent Events (text/event-stream).
 *
 * Pieces of the stream may be split anywhere (inside a line ending, a
 * field name or a multi-byte character).  The parser keeps the event under
 * construction in a buffer the caller gives, so memory stays bounded: an
 * event whose data plus one raw line do not fit is an error.  It needs no
 * nginx runtime.
 */


#ifndef _NGX_HTTP_VOICE_SSE_H_INCLUDED_
#define _NGX_HTTP_VOICE_SSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* the longest event name kept; a longer "event:" value is an error */
#define NGX_HTTP_VOICE_SSE_NAME  64


typedef struct {
    u_char                      *buf;      /* the caller's */
    size_t                       size;
    size_t                       data;     /* event data kept in buf */
    size_t                       line;     /* raw line after the data */
    size_t                       name_len;
    u_char                       name[NGX_HTTP_VOICE_SSE_NAME];

    unsigned                     has_data:1;   /* a data field came */
    unsigned                     cr:1;         /* the last byte was CR */
    unsigned                     comment:1;    /* skipping a ":" line */
    unsigned                     dispatched:1; /* reset before going on */
    unsigned                     failed:1;
} ngx_http_voice_sse_t;


/* valid until the next call of ngx_http_voice_sse_parse() */
typedef struct {
    ngx_str_t                    name;     /* empty: no "event:" field */
    ngx_str_t                    data;     /* data lines joined with LF */
} ngx_http_voice_sse_event_t;


void ngx_http_voice_sse_init(ngx_http_voice_sse_t *sse, u_char *buf,
    size_t size);

/*
 * Consumes bytes from *pos up to last.  NGX_OK: an event is in *ev and
 * *pos points past the blank line that ended it; call again for the
 * rest.  NGX_AGAIN: everything was consumed.  NGX_ERROR: an event did
 * not fit (or a name was too long); every later call fails too.
 */
ngx_int_t ngx_http_voice_sse_parse(ngx_http_voice_sse_t *sse, u_char **pos,
    u_char *last, ngx_http_voice_sse_event_t *ev);


#endif /* _NGX_HTTP_VOICE_SSE_H_INCLUDED_ */
