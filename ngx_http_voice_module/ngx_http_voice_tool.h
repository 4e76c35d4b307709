
/*
 * Tool calls as nginx subrequests: the model's arguments are POSTed to a
 * location, whose answer is captured in memory and never reaches the
 * client's socket.
 */


#ifndef _NGX_HTTP_VOICE_TOOL_H_INCLUDED_
#define _NGX_HTTP_VOICE_TOOL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct ngx_http_voice_tool_call_s  ngx_http_voice_tool_call_t;

/*
 * rc: NGX_OK, NGX_ERROR, or NGX_DECLINED for a timeout.  NGX_OK means the
 * location answered, whatever its status (nginx's own answers included:
 * 404 for no such location, 502 for an unreachable upstream), with the
 * whole body.  NGX_ERROR: no complete answer (a broken upstream, a body
 * over max).  status is 0 when there was none.  body is valid only
 * during the call.
 */
typedef void (*ngx_http_voice_tool_done_pt)(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);


/*
 * POSTs args (JSON text, Content-Type: application/json) to location (a
 * URI, optionally with "?args") as a subrequest of r, the session's
 * upgraded request.  done is called exactly once, from the event loop,
 * never from inside this call.  Returns a handle for cancel, or NULL when
 * nothing started (then no callback).
 */
ngx_http_voice_tool_call_t *ngx_http_voice_tool_run(ngx_http_request_t *r,
    ngx_str_t *location, ngx_str_t *args, size_t max, ngx_msec_t timeout,
    ngx_http_voice_tool_done_pt done, void *data);

/* no callback after it; safe after done and in pool cleanups */
void ngx_http_voice_tool_cancel(ngx_http_voice_tool_call_t *call);

/* voice_tool name location schema: conf offset -> ngx_array_t * of
   ngx_http_voice_llm_tool_t */
char *ngx_http_voice_tool_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* postconfiguration: installs the capture header and body filters */
ngx_int_t ngx_http_voice_tool_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_VOICE_TOOL_H_INCLUDED_ */
