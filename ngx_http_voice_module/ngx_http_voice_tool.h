
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

/* rc: NGX_OK, NGX_ERROR, or NGX_DECLINED for a timeout */
typedef void (*ngx_http_voice_tool_done_pt)(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);


ngx_http_voice_tool_call_t *ngx_http_voice_tool_run(ngx_http_request_t *r,
    ngx_str_t *location, ngx_str_t *args, size_t max, ngx_msec_t timeout,
    ngx_http_voice_tool_done_pt done, void *data);
void ngx_http_voice_tool_cancel(ngx_http_voice_tool_call_t *call);

char *ngx_http_voice_tool_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_voice_tool_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_VOICE_TOOL_H_INCLUDED_ */
