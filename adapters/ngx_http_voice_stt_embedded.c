
/*
 * The embedded offline STT: pocketsphinx decoders in nginx's thread pool.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_module.h"
#include "ngx_http_voice_stt.h"
static char *
ngx_http_voice_stt_embedded_init_conf(ngx_conf_t *cf,
    ngx_http_voice_stt_conf_t *conf)
{
    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_voice_stt_embedded_open(ngx_http_voice_stt_t *stt)
{
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_voice_stt_embedded_audio(ngx_http_voice_stt_t *stt,
    const int16_t *pcm, size_t n)
{
    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_stt_embedded_finalize(ngx_http_voice_stt_t *stt)
{
    return NGX_OK;
}


static void
ngx_http_voice_stt_embedded_close(ngx_http_voice_stt_t *stt)
{
}


const ngx_http_voice_stt_engine_t  ngx_http_voice_stt_embedded = {
    "embedded",
    ngx_http_voice_stt_embedded_init_conf,
    ngx_http_voice_stt_embedded_open,
    ngx_http_voice_stt_embedded_audio,
    ngx_http_voice_stt_embedded_finalize,
    ngx_http_voice_stt_embedded_close
};


char *
ngx_http_voice_stt_embedded_check(ngx_conf_t *cf,
    ngx_http_voice_main_conf_t *vmcf)
{
    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_voice_stt_embedded_init_process(ngx_cycle_t *cycle,
    ngx_http_voice_main_conf_t *vmcf)
{
    return NGX_OK;
}


void
ngx_http_voice_stt_embedded_exit_process(ngx_cycle_t *cycle)
{
}
