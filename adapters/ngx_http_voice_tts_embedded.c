
/*
 * Placeholder for the embedded text-to-speech engine.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_tts.h"


static char *
ngx_http_voice_tts_embedded_init_conf(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf)
{
    return "is not available in this build";
}


const ngx_http_voice_tts_engine_t  ngx_http_voice_tts_embedded = {
    "embedded",
    ngx_http_voice_tts_embedded_init_conf,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL
};


ngx_int_t
ngx_http_voice_tts_embedded_init_process(ngx_cycle_t *cycle,
    ngx_thread_pool_t *pool)
{
    return NGX_OK;
}


void
ngx_http_voice_tts_embedded_exit_process(ngx_cycle_t *cycle)
{
}
