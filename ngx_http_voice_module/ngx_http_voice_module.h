
/*
 * ngx_http_voice_module: shared declarations.
 */


#ifndef _NGX_HTTP_VOICE_MODULE_H_INCLUDED_
#define _NGX_HTTP_VOICE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include "ngx_http_voice_stt.h"
#include "ngx_http_voice_llm.h"
#include "ngx_http_voice_tts.h"


#define NGX_HTTP_VOICE_PIPELINE_ECHO   1
#define NGX_HTTP_VOICE_PIPELINE_AGENT  2

#define NGX_HTTP_VOICE_PROTOCOL        "voice.v1"

#define NGX_HTTP_VOICE_DIALECT_VOICE   0
#define NGX_HTTP_VOICE_DIALECT_TWILIO  1
#define NGX_HTTP_VOICE_DIALECT_VONAGE  2


/* per http block: what workers share */
typedef struct {
    ngx_str_t           stt_model;          /* the embedded STT's model */
    ngx_uint_t          stt_decoders;       /* ... decoders per worker */
    ngx_str_t           thread_pool_name;
    ngx_thread_pool_t  *thread_pool;        /* for the embedded engines */
    ngx_uint_t          embedded_stt;       /* a location uses it */
    ngx_uint_t          embedded_tts;       /* ... and this one */
} ngx_http_voice_main_conf_t;


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

    /* providers */
    ngx_msec_t          upstream_connect_timeout;
    ngx_flag_t          ssl_verify;
    ngx_str_t           ssl_trusted_certificate;
    ngx_http_voice_stt_conf_t  stt;
    ngx_http_voice_llm_conf_t  llm;
    ngx_http_voice_tts_conf_t  tts;
    ngx_flag_t          barge_in;
    ngx_msec_t          barge_in_min_speech;
} ngx_http_voice_loc_conf_t;


extern ngx_module_t  ngx_http_voice_module;


/*
 * A provider's text made fit for the log: bounded, on one line, and the
 * key, should the provider quote it, replaced by "[key]".  Returns the
 * bytes written to buf; *more tells that text was cut.
 */
size_t ngx_http_voice_log_text(u_char *buf, size_t size, ngx_str_t *key,
    const u_char *text, size_t len, ngx_uint_t *more);

size_t ngx_http_voice_error_message(const u_char *body, size_t len,
    u_char *buf, size_t size);

/* a provider key from "env:NAME" or "file:PATH" */
char *ngx_http_voice_read_key(ngx_conf_t *cf, ngx_str_t *spec,
    ngx_str_t *key);


/*
 * The embedded STT's decoders are per worker, shared by its sessions:
 * created when the worker starts, freed when it exits.
 */
char *ngx_http_voice_stt_embedded_check(ngx_conf_t *cf,
    ngx_http_voice_main_conf_t *vmcf);
ngx_int_t ngx_http_voice_stt_embedded_init_process(ngx_cycle_t *cycle,
    ngx_http_voice_main_conf_t *vmcf);
void ngx_http_voice_stt_embedded_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_VOICE_MODULE_H_INCLUDED_ */
