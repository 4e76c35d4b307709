
/*
 * libcurl's multi interface on the worker's event loop.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <curl/curl.h>

#include "ngx_http_voice_curl.h"


ngx_int_t
ngx_http_voice_curl_init_process(ngx_cycle_t *cycle)
{
    return NGX_OK;
}


void
ngx_http_voice_curl_exit_process(ngx_cycle_t *cycle)
{
}
