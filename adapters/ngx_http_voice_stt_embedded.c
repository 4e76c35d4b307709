
/*
 * The embedded offline STT: pocketsphinx decoders in nginx's thread pool.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_module.h"
#include "ngx_http_voice_stt.h"
