
/*
 * Provider streams over raw sockets: TCP, TLS and the WebSocket client.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_voice_upstream.h"
#include "ngx_http_voice_ws.h"


char *
ngx_http_voice_upstream_parse_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_http_voice_upstream_conf_t *conf)
{
    return "is not available yet";
}


ngx_int_t
ngx_http_voice_upstream_ssl(ngx_conf_t *cf,
    ngx_http_voice_upstream_conf_t *conf, ngx_str_t *trusted)
{
    return NGX_OK;
}
