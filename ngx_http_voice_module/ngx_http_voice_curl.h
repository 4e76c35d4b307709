
/*
 * HTTP streams through libcurl's multi interface, driven by the worker's
 * event loop: curl's sockets become nginx connections watched by the
 * event module, curl's timer an nginx timer.  One multi handle per
 * worker, so connections to a provider are reused across sessions.
 */


#ifndef _NGX_HTTP_VOICE_CURL_H_INCLUDED_
#define _NGX_HTTP_VOICE_CURL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


typedef struct ngx_http_voice_curl_s  ngx_http_voice_curl_t;


/* one request, described by its owner; copied at start */
typedef struct {
    ngx_str_t                    url;
    ngx_str_t                    method;        /* empty: POST with body,
                                                   else GET */
    ngx_str_t                   *headers;       /* "Name: value", secrets
                                                   allowed: never logged */
    ngx_uint_t                   nheaders;
    ngx_str_t                    body;
    ngx_msec_t                   connect_timeout;
    ngx_msec_t                   timeout;       /* whole request; 0: none */
    ngx_str_t                    trusted;       /* CA file; empty: system */
    ngx_flag_t                   verify;        /* peer and host name */
    size_t                       max_body;      /* bound of the response
                                                   body; 0: none */
} ngx_http_voice_curl_request_t;


/*
 * What the owner hears, each from the event loop.  header and body
 * return NGX_OK to go on, NGX_ERROR to abort (done follows with
 * NGX_ABORT).  done is the last call; the request is freed after it.
 */
typedef struct {
    ngx_int_t  (*header)(ngx_http_voice_curl_t *req, ngx_uint_t status);
    ngx_int_t  (*body)(ngx_http_voice_curl_t *req, u_char *data,
                       size_t len);
    void       (*done)(ngx_http_voice_curl_t *req, ngx_int_t rc);
} ngx_http_voice_curl_handler_t;


struct ngx_http_voice_curl_s {
    void                                *data;     /* the owner's */
    ngx_log_t                           *log;
    ngx_http_voice_curl_handler_t       *handler;
    ngx_uint_t                           status;   /* HTTP status, once
                                                      known */
    const char                          *error;    /* why done had
                                                      NGX_ERROR */
    unsigned                             timedout:1;
    void                                *ctx;      /* private */
};


/* per worker: the multi handle; called from the module's init_process */
ngx_int_t ngx_http_voice_curl_init_process(ngx_cycle_t *cycle);
void ngx_http_voice_curl_exit_process(ngx_cycle_t *cycle);

/*
 * Starts a request.  NULL when it could not start (no callback follows).
 * done's rc: NGX_OK (complete, any HTTP status), NGX_ERROR (transport
 * failure or timeout; req->error says which), NGX_ABORT (an owner
 * callback asked to stop).
 */
ngx_http_voice_curl_t *ngx_http_voice_curl_start(
    ngx_http_voice_curl_request_t *rq, ngx_http_voice_curl_handler_t *h,
    void *data, ngx_log_t *log);

/*
 * Stops taking the response body (pause 1) until resumed (pause 0); body
 * already received may still be delivered.  Safe from inside body.
 */
void ngx_http_voice_curl_pause(ngx_http_voice_curl_t *req, ngx_uint_t pause);

/*
 * Tears the transfer down now, in this event-loop turn: the socket is
 * closed unless curl keeps it for reuse after a complete response.  No
 * callback follows.  Safe from inside header and body.
 */
void ngx_http_voice_curl_cancel(ngx_http_voice_curl_t *req);


#endif /* _NGX_HTTP_VOICE_CURL_H_INCLUDED_ */
