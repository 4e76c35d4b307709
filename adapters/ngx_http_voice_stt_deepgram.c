
/*
 * Deepgram live transcription, and any server that speaks its protocol.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_module.h"
#include "ngx_http_voice_stt.h"
