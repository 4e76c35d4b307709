
/*
 * The anthropic LLM engine.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_llm.h"


static char *
ngx_http_voice_llm_anthropic_init_conf(ngx_conf_t *cf,
    ngx_http_voice_llm_conf_t *conf)
{
    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_voice_llm_anthropic_start(ngx_http_voice_llm_t *llm)
{
    return NGX_ERROR;
}


static void
ngx_http_voice_llm_anthropic_cancel(ngx_http_voice_llm_t *llm)
{
}


const ngx_http_voice_llm_engine_t  ngx_http_voice_llm_anthropic = {
    "anthropic",
    ngx_http_voice_llm_anthropic_init_conf,
    ngx_http_voice_llm_anthropic_start,
    ngx_http_voice_llm_anthropic_cancel
};
