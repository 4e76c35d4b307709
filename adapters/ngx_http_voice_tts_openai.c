
/*
 * Placeholder for the openai text-to-speech engine.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_tts.h"


static char *
ngx_http_voice_tts_openai_init_conf(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf)
{
    return "is not available in this build";
}


const ngx_http_voice_tts_engine_t  ngx_http_voice_tts_openai = {
    "openai",
    ngx_http_voice_tts_openai_init_conf,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL
};
