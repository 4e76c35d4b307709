
/*
 * What the HTTP language model engines share: one reply is one POST
 * whose answer is an event stream.  The stream owns a pool for the
 * reply, the libcurl request, the SSE parser and the error body; the
 * engine only interprets events.
 *
 * Every way a reply ends (done, failed, a report saying stop, cancel)
 * frees the stream first and reports last, so nothing of it is touched
 * after a report that may have ended the session.
 */


#ifndef _NGX_HTTP_VOICE_LLM_STREAM_H_INCLUDED_
#define _NGX_HTTP_VOICE_LLM_STREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_voice_llm.h"
#include "ngx_http_voice_curl.h"
#include "ngx_http_voice_sse.h"


/* an error body is kept up to this for the log */
#define NGX_HTTP_VOICE_LLM_STREAM_ERROR  1024

#define NGX_HTTP_VOICE_LLM_MALFORMED  \
    "the LLM provider sent a malformed stream"


typedef struct ngx_http_voice_llm_stream_s  ngx_http_voice_llm_stream_t;

/* NGX_OK: go on; NGX_DONE: the stream is over and freed */
typedef ngx_int_t (*ngx_http_voice_llm_stream_event_pt)(
    ngx_http_voice_llm_stream_t *st, ngx_http_voice_sse_event_t *ev);


struct ngx_http_voice_llm_stream_s {
    ngx_http_voice_llm_t                *llm;
    ngx_pool_t                          *pool;
    ngx_http_voice_curl_t               *req;
    ngx_http_voice_llm_stream_event_pt   event;
    void                                *data;     /* the engine's */
    ngx_uint_t                          *gone;     /* set when freed */
    ngx_http_voice_sse_t                 sse;
    ngx_uint_t                           status;
    u_char                              *error;    /* body of a refusal */
    size_t                               error_len;

    /* the end event came: done waits for the response to complete */
    ngx_event_t                          linger;
    ngx_str_t                            finish;
    unsigned                             ended:1;
};


/*
 * Configuration time, for both engines: fills what is unset (url and
 * model from the engine's defaults), checks the URL and parses the tools'
 * schemas.  NGX_CONF_OK or why not.
 */
char *ngx_http_voice_llm_stream_conf(ngx_conf_t *cf,
    ngx_http_voice_llm_conf_t *conf, const char *url, const char *model);

/* a stream for llm's next reply, with size bytes of engine data */
ngx_http_voice_llm_stream_t *ngx_http_voice_llm_stream_create(
    ngx_http_voice_llm_t *llm, size_t size,
    ngx_http_voice_llm_stream_event_pt event);

/*
 * POSTs body (a copy goes out; NULL: it could not be built) with the key
 * after key_header ("Authorization: Bearer ") and, when not NULL, one more
 * header line; NGX_ERROR frees the stream
 */
ngx_int_t ngx_http_voice_llm_stream_start(ngx_http_voice_llm_stream_t *st,
    json_t *body, const char *key_header, const char *extra);

/* the engines' cancel */
void ngx_http_voice_llm_stream_cancel(ngx_http_voice_llm_t *llm);

/* reports: NGX_OK to go on, NGX_DONE when the stream is over and freed */
ngx_int_t ngx_http_voice_llm_stream_token(ngx_http_voice_llm_stream_t *st,
    const u_char *text, size_t len);
ngx_int_t ngx_http_voice_llm_stream_tool_call(
    ngx_http_voice_llm_stream_t *st, ngx_str_t *id, ngx_str_t *name,
    ngx_str_t *arguments);

/*
 * These end the stream: always NGX_DONE.  done is reported once the
 * response is complete (so the connection can be reused), or after a
 * short wait if the provider keeps it open after its end event.
 */
ngx_int_t ngx_http_voice_llm_stream_done(ngx_http_voice_llm_stream_t *st,
    ngx_str_t *finish);
ngx_int_t ngx_http_voice_llm_stream_fail(ngx_http_voice_llm_stream_t *st,
    ngx_uint_t retryable, const char *message);

/* an "error" object of the provider: logs it, fails the stream */
ngx_int_t ngx_http_voice_llm_stream_error(ngx_http_voice_llm_stream_t *st,
    json_t *error);

/* pieces of text kept in the stream's pool, bounded */
typedef struct {
    u_char                              *data;
    size_t                               len;
    size_t                               size;
} ngx_http_voice_llm_buf_t;

ngx_int_t ngx_http_voice_llm_buf_add(ngx_pool_t *pool,
    ngx_http_voice_llm_buf_t *b, const char *data, size_t len, size_t max);

/* a JSON string member as ngx_str_t (valid while the object lives) */
ngx_int_t ngx_http_voice_llm_json_str(json_t *obj, const char *key,
    ngx_str_t *s);


#endif /* _NGX_HTTP_VOICE_LLM_STREAM_H_INCLUDED_ */
