
/*
 * Deepgram live transcription, and any server that speaks its protocol.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_module.h"
#include "ngx_http_voice_stt.h"


static char *
ngx_http_voice_stt_deepgram_init_conf(ngx_conf_t *cf,
    ngx_http_voice_stt_conf_t *conf)
{
    return "is not available yet";
}


static ngx_int_t
ngx_http_voice_stt_deepgram_open(ngx_http_voice_stt_t *stt)
{
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_voice_stt_deepgram_audio(ngx_http_voice_stt_t *stt,
    const int16_t *pcm, size_t n)
{
    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_stt_deepgram_finalize(ngx_http_voice_stt_t *stt)
{
    return NGX_OK;
}


static void
ngx_http_voice_stt_deepgram_close(ngx_http_voice_stt_t *stt)
{
}


const ngx_http_voice_stt_engine_t  ngx_http_voice_stt_deepgram = {
    "deepgram",
    ngx_http_voice_stt_deepgram_init_conf,
    ngx_http_voice_stt_deepgram_open,
    ngx_http_voice_stt_deepgram_audio,
    ngx_http_voice_stt_deepgram_finalize,
    ngx_http_voice_stt_deepgram_close
};
