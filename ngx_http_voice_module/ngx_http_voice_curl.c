
/*
 * libcurl's multi interface on the worker's event loop.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <curl/curl.h>

#include "ngx_http_voice_curl.h"
