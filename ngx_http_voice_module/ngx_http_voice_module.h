
/*
 * ngx_http_voice_module: shared declarations.
 */


#ifndef _NGX_HTTP_VOICE_MODULE_H_INCLUDED_
#define _NGX_HTTP_VOICE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_VOICE_PIPELINE_ECHO   1

#define NGX_HTTP_VOICE_PROTOCOL        "voice.v1"

#define NGX_HTTP_VOICE_DIALECT_VOICE   0
#define NGX_HTTP_VOICE_DIALECT_TWILIO  1
#define NGX_HTTP_VOICE_DIALECT_VONAGE  2


typedef struct {
    ngx_uint_t          pipeline;
    ngx_msec_t          echo_delay;
    size_t              max_frame_size;
    size_t              max_message_size;
    ngx_msec_t          idle_timeout;
    ngx_msec_t          send_timeout;
    size_t              send_buffer;
    size_t              echo_buffer;
    ngx_array_t        *origins;            /* of ngx_str_t; NULL: any */

    ngx_uint_t          dialect;
    ngx_uint_t          resample_quality;
    ngx_msec_t          playout_lead;
    ngx_msec_t          playout_buffer;
    ngx_flag_t          vad_events;
    ngx_msec_t          vad_silence;
    ngx_msec_t          vad_min_speech;
    ngx_msec_t          max_utterance;
    size_t              max_utterance_size;
} ngx_http_voice_loc_conf_t;


extern ngx_module_t  ngx_http_voice_module;


#endif /* _NGX_HTTP_VOICE_MODULE_H_INCLUDED_ */
