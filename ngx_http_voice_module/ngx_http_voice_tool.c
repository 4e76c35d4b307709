
/*
 * Tool calls as nginx subrequests.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_tool.h"


ngx_http_voice_tool_call_t *
ngx_http_voice_tool_run(ngx_http_request_t *r, ngx_str_t *location,
    ngx_str_t *args, size_t max, ngx_msec_t timeout,
    ngx_http_voice_tool_done_pt done, void *data)
{
    return NULL;
}


void
ngx_http_voice_tool_cancel(ngx_http_voice_tool_call_t *call)
{
}


char *
ngx_http_voice_tool_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return "is not available yet";
}


ngx_int_t
ngx_http_voice_tool_init(ngx_conf_t *cf)
{
    return NGX_OK;
}
