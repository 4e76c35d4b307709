
/*
 * Provider streams over raw sockets: TCP, TLS and the WebSocket client.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_voice_upstream.h"
#include "ngx_http_voice_ws.h"
