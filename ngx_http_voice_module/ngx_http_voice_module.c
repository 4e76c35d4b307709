
/*
 * ngx_http_voice_module: directives, configuration and the location
 * handler that checks the WebSocket upgrade and hands the connection to a
 * voice session.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include <jansson.h>

#include "ngx_http_voice_module.h"
#include "ngx_http_voice_session.h"
#include "ngx_http_voice_ws.h"
#include "ngx_http_voice_audio.h"
#include "ngx_http_voice_vad.h"
#include "ngx_http_voice_curl.h"
#include "ngx_http_voice_tool.h"


/* nginx 1.22 has no name for it */
#define NGX_HTTP_UPGRADE_REQUIRED  426


typedef struct {
    ngx_conf_post_handler_pt  post_handler;
    ngx_uint_t                low;
    ngx_uint_t                high;
    char                     *unit;
} ngx_http_voice_bounds_t;


static ngx_int_t ngx_http_voice_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_voice_check_upgrade(ngx_http_request_t *r,
    ngx_http_voice_loc_conf_t *vlcf, ngx_str_t *key, ngx_uint_t *protocol,
    const char **reason);
static ngx_int_t ngx_http_voice_accept(ngx_http_request_t *r, ngx_str_t *key,
    ngx_uint_t protocol);
static ngx_int_t ngx_http_voice_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *reason);
static ngx_table_elt_t *ngx_http_voice_header(ngx_http_request_t *r,
    const char *name, const char *token, ngx_uint_t *count);
static ngx_uint_t ngx_http_voice_has_token(ngx_str_t *value,
    const char *token);
static ngx_int_t ngx_http_voice_add_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);

static ngx_int_t ngx_http_voice_init_process(ngx_cycle_t *cycle);
static void ngx_http_voice_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_voice_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_voice_init_main_conf(ngx_conf_t *cf, void *conf);
static char *ngx_http_voice_merge_embedded(ngx_conf_t *cf);
static char *ngx_http_voice_merge_threads(ngx_conf_t *cf, ngx_uint_t *used);
static void *ngx_http_voice_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_voice_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_voice(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_voice_pipeline(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_voice_allow_origin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_voice_check_bounds(ngx_conf_t *cf, void *post,
    void *data);


static ngx_http_voice_bounds_t  ngx_http_voice_delay_bounds = {
    ngx_http_voice_check_bounds, 0, 60000, "ms"
};

static ngx_http_voice_bounds_t  ngx_http_voice_timeout_bounds = {
    ngx_http_voice_check_bounds, 1, 86400000, "ms"
};

static ngx_http_voice_bounds_t  ngx_http_voice_frame_bounds = {
    ngx_http_voice_check_bounds, 125, 16 * 1024 * 1024, "bytes"
};

static ngx_http_voice_bounds_t  ngx_http_voice_silence_bounds = {
    ngx_http_voice_check_bounds, NGX_HTTP_VOICE_VAD_SILENCE_MIN,
    NGX_HTTP_VOICE_VAD_SILENCE_MAX, "ms"
};

static ngx_http_voice_bounds_t  ngx_http_voice_speech_bounds = {
    ngx_http_voice_check_bounds, NGX_HTTP_VOICE_VAD_SPEECH_MIN,
    NGX_HTTP_VOICE_VAD_SPEECH_MAX, "ms"
};

static ngx_http_voice_bounds_t  ngx_http_voice_lead_bounds = {
    ngx_http_voice_check_bounds, 20, 1000, "ms"
};

static ngx_http_voice_bounds_t  ngx_http_voice_playout_bounds = {
    ngx_http_voice_check_bounds, 100, 600000, "ms"
};

static ngx_http_voice_bounds_t  ngx_http_voice_buffer_bounds = {
    ngx_http_voice_check_bounds, 1024, 64 * 1024 * 1024, "bytes"
};

static ngx_http_voice_bounds_t  ngx_http_voice_text_bounds = {
    ngx_http_voice_check_bounds, 256, 16 * 1024, "bytes"
};

static ngx_http_voice_bounds_t  ngx_http_voice_retries_bounds = {
    ngx_http_voice_check_bounds, 0, 100, "attempts"
};

static ngx_http_voice_bounds_t  ngx_http_voice_decoders_bounds = {
    ngx_http_voice_check_bounds, 1, 64, "decoders"
};

static ngx_http_voice_bounds_t  ngx_http_voice_history_bounds = {
    ngx_http_voice_check_bounds, 0, 1000, "turns"
};

static ngx_http_voice_bounds_t  ngx_http_voice_tokens_bounds = {
    ngx_http_voice_check_bounds, 1, 1000000, "tokens"
};

static ngx_http_voice_bounds_t  ngx_http_voice_rate_bounds = {
    ngx_http_voice_check_bounds, 1, 1000, "tokens per second"
};

static ngx_http_voice_bounds_t  ngx_http_voice_reply_bounds = {
    ngx_http_voice_check_bounds, 256, 32 * 1024, "bytes"
};

static ngx_http_voice_bounds_t  ngx_http_voice_interval_bounds = {
    ngx_http_voice_check_bounds, 50, 10000, "ms"
};


static ngx_conf_enum_t  ngx_http_voice_dialects[] = {
    { ngx_string("voice.v1"), NGX_HTTP_VOICE_DIALECT_VOICE },
    { ngx_string("twilio"), NGX_HTTP_VOICE_DIALECT_TWILIO },
    { ngx_string("vonage"), NGX_HTTP_VOICE_DIALECT_VONAGE },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_voice_qualities[] = {
    { ngx_string("best"), NGX_HTTP_VOICE_RESAMPLE_BEST },
    { ngx_string("medium"), NGX_HTTP_VOICE_RESAMPLE_MEDIUM },
    { ngx_string("fastest"), NGX_HTTP_VOICE_RESAMPLE_FASTEST },
    { ngx_string("zero_order_hold"), NGX_HTTP_VOICE_RESAMPLE_ZOH },
    { ngx_string("linear"), NGX_HTTP_VOICE_RESAMPLE_LINEAR },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_voice_tts_auths[] = {
    { ngx_string("bearer"), NGX_HTTP_VOICE_TTS_AUTH_BEARER },
    { ngx_string("x-api-key"), NGX_HTTP_VOICE_TTS_AUTH_HEADER },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_voice_commands[] = {

    { ngx_string("voice"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_voice,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("voice_pipeline"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_voice_pipeline,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("voice_echo_delay"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, echo_delay),
      &ngx_http_voice_delay_bounds },

    { ngx_string("voice_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, max_frame_size),
      &ngx_http_voice_frame_bounds },

    { ngx_string("voice_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, max_message_size),
      &ngx_http_voice_frame_bounds },

    { ngx_string("voice_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, idle_timeout),
      &ngx_http_voice_timeout_bounds },

    { ngx_string("voice_send_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, send_timeout),
      &ngx_http_voice_timeout_bounds },

    { ngx_string("voice_send_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, send_buffer),
      &ngx_http_voice_buffer_bounds },

    { ngx_string("voice_echo_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, echo_buffer),
      &ngx_http_voice_buffer_bounds },

    { ngx_string("voice_allow_origin"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_voice_allow_origin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("voice_protocol"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, dialect),
      &ngx_http_voice_dialects },

    { ngx_string("voice_resample_quality"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, resample_quality),
      &ngx_http_voice_qualities },

    { ngx_string("voice_playout_lead"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, playout_lead),
      &ngx_http_voice_lead_bounds },

    { ngx_string("voice_playout_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, playout_buffer),
      &ngx_http_voice_playout_bounds },

    { ngx_string("voice_vad_events"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, vad_events),
      NULL },

    { ngx_string("voice_vad_silence"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, vad_silence),
      &ngx_http_voice_silence_bounds },

    { ngx_string("voice_vad_min_speech"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, vad_min_speech),
      &ngx_http_voice_speech_bounds },

    { ngx_string("voice_max_utterance"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, max_utterance),
      &ngx_http_voice_timeout_bounds },

    { ngx_string("voice_max_utterance_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, max_utterance_size),
      &ngx_http_voice_buffer_bounds },

    { ngx_string("voice_stt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_voice_stt_engine_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, stt),
      NULL },

    { ngx_string("voice_stt_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, stt.url),
      NULL },

    { ngx_string("voice_stt_param"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_voice_stt_param_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, stt),
      NULL },

    { ngx_string("voice_stt_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_voice_stt_key_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, stt),
      NULL },

    { ngx_string("voice_stt_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, stt.buffer),
      &ngx_http_voice_buffer_bounds },

    { ngx_string("voice_stt_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, stt.timeout),
      &ngx_http_voice_timeout_bounds },

    { ngx_string("voice_stt_retries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, stt.retries),
      &ngx_http_voice_retries_bounds },

    { ngx_string("voice_stt_max_text"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, stt.max_text),
      &ngx_http_voice_text_bounds },

    { ngx_string("voice_stt_partial_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, stt.partial_interval),
      &ngx_http_voice_interval_bounds },

    { ngx_string("voice_upstream_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, upstream_connect_timeout),
      &ngx_http_voice_timeout_bounds },

    { ngx_string("voice_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, ssl_verify),
      NULL },

    { ngx_string("voice_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, ssl_trusted_certificate),
      NULL },

    { ngx_string("voice_llm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_voice_llm_engine_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm),
      NULL },

    { ngx_string("voice_llm_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.url),
      NULL },

    { ngx_string("voice_llm_model"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.model),
      NULL },

    { ngx_string("voice_llm_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_voice_llm_key_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm),
      NULL },

    { ngx_string("voice_llm_system"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.system),
      NULL },

    { ngx_string("voice_llm_history"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.history),
      &ngx_http_voice_history_bounds },

    { ngx_string("voice_llm_max_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.max_tokens),
      &ngx_http_voice_tokens_bounds },

    { ngx_string("voice_llm_temperature"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_voice_llm_temperature_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm),
      NULL },

    { ngx_string("voice_llm_first_token_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.first_token_timeout),
      &ngx_http_voice_timeout_bounds },

    { ngx_string("voice_llm_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.timeout),
      &ngx_http_voice_timeout_bounds },

    { ngx_string("voice_llm_retries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.retries),
      &ngx_http_voice_retries_bounds },

    { ngx_string("voice_llm_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.rate),
      &ngx_http_voice_rate_bounds },

    { ngx_string("voice_llm_max_text"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.max_text),
      &ngx_http_voice_reply_bounds },

    { ngx_string("voice_tool"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE3,
      ngx_http_voice_tool_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.tools),
      NULL },

    { ngx_string("voice_tool_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, llm.tool_timeout),
      &ngx_http_voice_timeout_bounds },

    { ngx_string("voice_tts"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_voice_tts_engine_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts),
      NULL },

    { ngx_string("voice_tts_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts.url),
      NULL },

    { ngx_string("voice_tts_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_voice_tts_key_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts),
      NULL },

    { ngx_string("voice_tts_voice"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts.voice),
      NULL },

    { ngx_string("voice_tts_model"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts.model),
      NULL },

    { ngx_string("voice_tts_language"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts.language),
      NULL },

    { ngx_string("voice_tts_version"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts.version),
      NULL },

    { ngx_string("voice_tts_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts.auth),
      &ngx_http_voice_tts_auths },

    { ngx_string("voice_tts_speed"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_voice_tts_speed_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts),
      NULL },

    { ngx_string("voice_tts_max_phrase"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts.max_phrase),
      NULL },

    { ngx_string("voice_tts_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, tts.timeout),
      &ngx_http_voice_timeout_bounds },

    { ngx_string("voice_barge_in"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, barge_in),
      NULL },

    { ngx_string("voice_barge_in_min_speech"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_loc_conf_t, barge_in_min_speech),
      NULL },

    { ngx_string("voice_stt_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_voice_main_conf_t, stt_model),
      NULL },

    { ngx_string("voice_stt_decoders"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_voice_main_conf_t, stt_decoders),
      &ngx_http_voice_decoders_bounds },

    { ngx_string("voice_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_voice_main_conf_t, thread_pool_name),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_voice_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_voice_tool_init,              /* postconfiguration */

    ngx_http_voice_create_main_conf,       /* create main configuration */
    ngx_http_voice_init_main_conf,         /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_voice_create_loc_conf,        /* create location configuration */
    ngx_http_voice_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_voice_module = {
    NGX_MODULE_V1,
    &ngx_http_voice_module_ctx,            /* module context */
    ngx_http_voice_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_voice_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_voice_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_voice_handler(ngx_http_request_t *r)
{
    ngx_str_t                   key;
    ngx_uint_t                  status, protocol;
    const char                 *reason;
    ngx_http_voice_loc_conf_t  *vlcf;

    if (r != r->main) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "voice: a voice location cannot serve a subrequest");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_voice_module);

    ngx_str_null(&key);
    protocol = 0;
    reason = NULL;

    status = ngx_http_voice_check_upgrade(r, vlcf, &key, &protocol, &reason);

    if (status) {
        return ngx_http_voice_refuse(r, status, reason);
    }

    return ngx_http_voice_accept(r, &key, protocol);
}


/* 0 for a valid upgrade, otherwise the status to refuse it with */

static ngx_uint_t
ngx_http_voice_check_upgrade(ngx_http_request_t *r,
    ngx_http_voice_loc_conf_t *vlcf, ngx_str_t *key, ngx_uint_t *protocol,
    const char **reason)
{
    u_char            decoded[32];
    ngx_str_t         raw, *origin;
    ngx_uint_t        i, n;
    ngx_table_elt_t  *h;

    if (r->http_version != NGX_HTTP_VERSION_11) {
        *reason = "WebSocket needs HTTP/1.1";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (r->method != NGX_HTTP_GET) {
        *reason = "WebSocket upgrade must be a GET";
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_http_voice_header(r, "Upgrade", "websocket", &n) == NULL) {
        *reason = "\"Upgrade: websocket\" expected";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_http_voice_header(r, "Connection", "upgrade", &n) == NULL) {
        *reason = "\"Connection: upgrade\" expected";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {
        *reason = "WebSocket upgrade with a body";
        return NGX_HTTP_BAD_REQUEST;
    }

    h = ngx_http_voice_header(r, "Sec-WebSocket-Version", NULL, &n);

    if (h == NULL || n != 1 || h->value.len != 2
        || ngx_strncmp(h->value.data, "13", 2) != 0)
    {
        *reason = "Sec-WebSocket-Version 13 expected";
        return NGX_HTTP_UPGRADE_REQUIRED;
    }

    h = ngx_http_voice_header(r, "Sec-WebSocket-Key", NULL, &n);

    if (h == NULL || n != 1 || h->value.len != 24) {
        *reason = "Sec-WebSocket-Key is not a 16-byte base64 value";
        return NGX_HTTP_BAD_REQUEST;
    }

    raw.data = decoded;

    if (ngx_decode_base64(&raw, &h->value) != NGX_OK || raw.len != 16) {
        *reason = "Sec-WebSocket-Key is not a 16-byte base64 value";
        return NGX_HTTP_BAD_REQUEST;
    }

    *key = h->value;

    /* the subprotocol may be offered in several headers */

    h = ngx_http_voice_header(r, "Sec-WebSocket-Protocol",
                              NGX_HTTP_VOICE_PROTOCOL, &n);

    *protocol = (h != NULL);

    if (n && h == NULL) {
        *reason = "subprotocol \"" NGX_HTTP_VOICE_PROTOCOL "\" not offered";
        return NGX_HTTP_BAD_REQUEST;
    }

    /* clients outside browsers send no Origin: the list binds browsers */

    if (vlcf->origins == NULL) {
        return 0;
    }

    h = ngx_http_voice_header(r, "Origin", NULL, &n);

    if (h) {
        origin = vlcf->origins->elts;

        for (i = 0; i < vlcf->origins->nelts; i++) {
            if (origin[i].len == h->value.len
                && ngx_strncasecmp(origin[i].data, h->value.data,
                                   h->value.len) == 0)
            {
                break;
            }
        }

        if (i == vlcf->origins->nelts) {
            *reason = "origin not allowed";
            return NGX_HTTP_FORBIDDEN;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_voice_accept(ngx_http_request_t *r, ngx_str_t *key,
    ngx_uint_t protocol)
{
    u_char      digest[20], *p;
    ngx_int_t   rc;
    ngx_str_t   value, sha1;
    ngx_sha1_t  ctx;

    ngx_sha1_init(&ctx);
    ngx_sha1_update(&ctx, key->data, key->len);
    ngx_sha1_update(&ctx, NGX_HTTP_VOICE_WS_GUID,
                    sizeof(NGX_HTTP_VOICE_WS_GUID) - 1);
    ngx_sha1_final(digest, &ctx);

    p = ngx_pnalloc(r->pool, ngx_base64_encoded_length(20));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sha1.data = digest;
    sha1.len = 20;
    value.data = p;
    ngx_encode_base64(&value, &sha1);

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;

    if (ngx_http_voice_add_header(r, "Sec-WebSocket-Accept", &value)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&value, "websocket");

    if (ngx_http_voice_add_header(r, "Upgrade", &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (protocol) {
        ngx_str_set(&value, NGX_HTTP_VOICE_PROTOCOL);

        if (ngx_http_voice_add_header(r, "Sec-WebSocket-Protocol", &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_voice_session_create(r);
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* the session owns the connection from now on */

    r->main->count++;

    ngx_http_voice_session_run(r);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_voice_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_str_t     value;
    ngx_chain_t   out;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "voice: upgrade refused: %s", reason);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (status == NGX_HTTP_UPGRADE_REQUIRED) {
        ngx_str_set(&value, "13");

        if (ngx_http_voice_add_header(r, "Sec-WebSocket-Version", &value)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");
    }

    if (status == NGX_HTTP_NOT_ALLOWED) {
        ngx_str_set(&value, "GET");

        if (ngx_http_voice_add_header(r, "Allow", &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    len = ngx_strlen(reason);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, reason, len);
    *b->last++ = LF;
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len + 1;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The first request header with this name that holds the token (any such
 * header when token is NULL); *count gets how many have the name.
 */

static ngx_table_elt_t *
ngx_http_voice_header(ngx_http_request_t *r, const char *name,
    const char *token, ngx_uint_t *count)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *found;

    len = ngx_strlen(name);
    found = NULL;
    *count = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != len
            || ngx_strncasecmp(h[i].key.data, (u_char *) name, len) != 0)
        {
            continue;
        }

        (*count)++;

        if (found == NULL
            && (token == NULL || ngx_http_voice_has_token(&h[i].value, token)))
        {
            found = &h[i];
        }
    }

    return found;
}


/* a comma separated list holds the token, compared case-insensitively */

static ngx_uint_t
ngx_http_voice_has_token(ngx_str_t *value, const char *token)
{
    size_t   len;
    u_char  *p, *last, *start;

    len = ngx_strlen(token);
    p = value->data;
    last = p + value->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_voice_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_init_process(ngx_cycle_t *cycle)
{
    ngx_http_voice_main_conf_t  *vmcf;

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_voice_module);

    if (vmcf == NULL) {
        /* no http block */
        return NGX_OK;
    }

    if (ngx_http_voice_curl_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (vmcf->embedded_stt
        && ngx_http_voice_stt_embedded_init_process(cycle, vmcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (vmcf->embedded_tts
        && ngx_http_voice_tts_embedded_init_process(cycle, vmcf->thread_pool)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_voice_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_voice_main_conf_t  *vmcf;

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_voice_module);

    if (vmcf == NULL) {
        return;
    }

    if (vmcf->embedded_stt) {
        ngx_http_voice_stt_embedded_exit_process(cycle);
    }

    if (vmcf->embedded_tts) {
        ngx_http_voice_tts_embedded_exit_process(cycle);
    }

    ngx_http_voice_curl_exit_process(cycle);
}


static void *
ngx_http_voice_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_voice_main_conf_t  *vmcf;

    vmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_voice_main_conf_t));
    if (vmcf == NULL) {
        return NULL;
    }

    vmcf->stt_decoders = NGX_CONF_UNSET_UINT;

    return vmcf;
}


static char *
ngx_http_voice_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_voice_main_conf_t *vmcf = conf;

    if (vmcf->stt_model.data == NULL) {
        ngx_str_set(&vmcf->stt_model, "/usr/share/pocketsphinx/model/en-us");
    }

    if (vmcf->thread_pool_name.data == NULL) {
        ngx_str_set(&vmcf->thread_pool_name, "default");
    }

    ngx_conf_init_uint_value(vmcf->stt_decoders, 2);

    return NGX_CONF_OK;
}


/* the first location with the embedded STT: the model and threads it needs */

static char *
ngx_http_voice_merge_embedded(ngx_conf_t *cf)
{
    ngx_http_voice_main_conf_t  *vmcf;

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_voice_module);

    if (vmcf->embedded_stt) {
        return NGX_CONF_OK;
    }

    if (ngx_http_voice_stt_embedded_check(cf, vmcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_voice_merge_threads(cf, &vmcf->embedded_stt);
}


/* an embedded engine is used: the worker needs the thread pool */

static char *
ngx_http_voice_merge_threads(ngx_conf_t *cf, ngx_uint_t *used)
{
    ngx_http_voice_main_conf_t  *vmcf;

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_voice_module);

    if (vmcf->thread_pool == NULL) {
        vmcf->thread_pool = ngx_thread_pool_add(cf, &vmcf->thread_pool_name);
        if (vmcf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    *used = 1;

    return NGX_CONF_OK;
}


static void *
ngx_http_voice_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_voice_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_voice_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->pipeline = NGX_CONF_UNSET_UINT;
    conf->echo_delay = NGX_CONF_UNSET_MSEC;
    conf->max_frame_size = NGX_CONF_UNSET_SIZE;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->send_timeout = NGX_CONF_UNSET_MSEC;
    conf->send_buffer = NGX_CONF_UNSET_SIZE;
    conf->echo_buffer = NGX_CONF_UNSET_SIZE;
    conf->origins = NGX_CONF_UNSET_PTR;
    conf->dialect = NGX_CONF_UNSET_UINT;
    conf->resample_quality = NGX_CONF_UNSET_UINT;
    conf->playout_lead = NGX_CONF_UNSET_MSEC;
    conf->playout_buffer = NGX_CONF_UNSET_MSEC;
    conf->vad_events = NGX_CONF_UNSET;
    conf->vad_silence = NGX_CONF_UNSET_MSEC;
    conf->vad_min_speech = NGX_CONF_UNSET_MSEC;
    conf->max_utterance = NGX_CONF_UNSET_MSEC;
    conf->max_utterance_size = NGX_CONF_UNSET_SIZE;
    conf->upstream_connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->ssl_verify = NGX_CONF_UNSET;

    ngx_http_voice_stt_create_conf(&conf->stt);
    ngx_http_voice_llm_create_conf(&conf->llm);
    ngx_http_voice_tts_create_conf(&conf->tts);
    conf->barge_in = NGX_CONF_UNSET;
    conf->barge_in_min_speech = NGX_CONF_UNSET_MSEC;

    return conf;
}


static char *
ngx_http_voice_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_voice_loc_conf_t *prev = parent;
    ngx_http_voice_loc_conf_t *conf = child;

    ngx_uint_t                   agent, serves;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_voice_main_conf_t  *vmcf;

    ngx_conf_merge_uint_value(conf->pipeline, prev->pipeline,
                              NGX_HTTP_VOICE_PIPELINE_ECHO);
    ngx_conf_merge_msec_value(conf->echo_delay, prev->echo_delay, 500);
    ngx_conf_merge_size_value(conf->max_frame_size, prev->max_frame_size,
                              64 * 1024);
    ngx_conf_merge_size_value(conf->max_message_size,
                              prev->max_message_size, 256 * 1024);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 60000);
    ngx_conf_merge_msec_value(conf->send_timeout, prev->send_timeout, 10000);
    ngx_conf_merge_size_value(conf->send_buffer, prev->send_buffer,
                              64 * 1024);
    ngx_conf_merge_size_value(conf->echo_buffer, prev->echo_buffer,
                              64 * 1024);
    ngx_conf_merge_ptr_value(conf->origins, prev->origins, NULL);
    ngx_conf_merge_uint_value(conf->dialect, prev->dialect,
                              NGX_HTTP_VOICE_DIALECT_VOICE);
    ngx_conf_merge_uint_value(conf->resample_quality, prev->resample_quality,
                              NGX_HTTP_VOICE_RESAMPLE_FASTEST);
    ngx_conf_merge_msec_value(conf->playout_lead, prev->playout_lead, 80);
    ngx_conf_merge_msec_value(conf->playout_buffer, prev->playout_buffer,
                              10000);
    ngx_conf_merge_value(conf->vad_events, prev->vad_events, 0);
    ngx_conf_merge_msec_value(conf->vad_silence, prev->vad_silence,
                              NGX_HTTP_VOICE_VAD_SILENCE);
    ngx_conf_merge_msec_value(conf->vad_min_speech, prev->vad_min_speech,
                              NGX_HTTP_VOICE_VAD_MIN_SPEECH);
    ngx_conf_merge_msec_value(conf->max_utterance, prev->max_utterance,
                              30000);
    ngx_conf_merge_size_value(conf->max_utterance_size,
                              prev->max_utterance_size, 4 * 1024 * 1024);

    ngx_conf_merge_msec_value(conf->upstream_connect_timeout,
                              prev->upstream_connect_timeout, 5000);
    ngx_conf_merge_value(conf->ssl_verify, prev->ssl_verify, 1);
    ngx_conf_merge_str_value(conf->ssl_trusted_certificate,
                             prev->ssl_trusted_certificate, "");

    if (conf->max_message_size < conf->max_frame_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_max_message_size\" %uz is smaller than "
                           "\"voice_max_frame_size\" %uz",
                           conf->max_message_size, conf->max_frame_size);
        return NGX_CONF_ERROR;
    }

    /* providers are set up where sessions are served, and only there */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    serves = (clcf->handler == ngx_http_voice_handler);
    agent = (conf->pipeline == NGX_HTTP_VOICE_PIPELINE_AGENT);

    conf->stt.upstream.connect_timeout = conf->upstream_connect_timeout;
    conf->stt.upstream.close_timeout = conf->upstream_connect_timeout;
    conf->stt.upstream.ssl_verify = conf->ssl_verify;

    if (ngx_http_voice_stt_merge_conf(cf, &prev->stt, &conf->stt, agent,
                                      serves, &conf->ssl_trusted_certificate)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    conf->llm.connect_timeout = conf->upstream_connect_timeout;
    conf->llm.ssl_verify = conf->ssl_verify;
    conf->llm.ssl_trusted_certificate = conf->ssl_trusted_certificate;

    if (ngx_http_voice_llm_merge_conf(cf, &prev->llm, &conf->llm, agent,
                                      serves)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    conf->tts.connect_timeout = conf->upstream_connect_timeout;
    conf->tts.ssl_verify = conf->ssl_verify;
    conf->tts.ssl_trusted_certificate = conf->ssl_trusted_certificate;

    if (ngx_http_voice_tts_merge_conf(cf, &prev->tts, &conf->tts, agent,
                                      serves)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_value(conf->barge_in, prev->barge_in, 1);
    ngx_conf_merge_msec_value(conf->barge_in_min_speech,
                              prev->barge_in_min_speech, 0);

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_voice_module);

    if (serves && agent && conf->tts.engine == NGX_HTTP_VOICE_TTS_EMBEDDED
        && ngx_http_voice_merge_threads(cf, &vmcf->embedded_tts)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (serves && agent && conf->stt.engine == NGX_HTTP_VOICE_STT_EMBEDDED) {
        return ngx_http_voice_merge_embedded(cf);
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_voice(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_voice_handler) {
        return "is duplicate";
    }

    if (clcf->handler) {
        return "conflicts with another content handler in this location";
    }

    clcf->handler = ngx_http_voice_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_voice_pipeline(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_voice_loc_conf_t *vlcf = conf;

    ngx_str_t  *value;

    if (vlcf->pipeline != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "echo") == 0) {
        vlcf->pipeline = NGX_HTTP_VOICE_PIPELINE_ECHO;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "agent") == 0) {
        vlcf->pipeline = NGX_HTTP_VOICE_PIPELINE_AGENT;
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\", "
                       "it must be \"echo\" or \"agent\"",
                       &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}


/* every argument is an origin; the directive may also repeat */

static char *
ngx_http_voice_allow_origin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_voice_loc_conf_t *vlcf = conf;

    ngx_str_t   *value, *origin;
    ngx_uint_t   i;

    if (vlcf->origins == NGX_CONF_UNSET_PTR) {
        vlcf->origins = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (vlcf->origins == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        origin = ngx_array_push(vlcf->origins);
        if (origin == NULL) {
            return NGX_CONF_ERROR;
        }

        *origin = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_voice_check_bounds(ngx_conf_t *cf, void *post, void *data)
{
    ngx_http_voice_bounds_t *b = post;
    ngx_uint_t              *v = data;

    if (*v < b->low || *v > b->high) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "value must be between %ui and %ui %s",
                           b->low, b->high, b->unit);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


size_t
ngx_http_voice_log_text(u_char *buf, size_t size, ngx_str_t *key,
    const u_char *text, size_t len, ngx_uint_t *more)
{
    u_char  *b;
    size_t   i;

    b = buf;

    for (i = 0; i < len && b < buf + size - 8; /* void */ ) {

        if (key->len && len - i >= key->len
            && ngx_memcmp(text + i, key->data, key->len) == 0)
        {
            b = ngx_cpymem(b, "[key]", 5);
            i += key->len;
            continue;
        }

        *b++ = (text[i] < 0x20 || text[i] == 0x7f) ? ' ' : text[i];
        i++;
    }

    *more = (i < len);

    return b - buf;
}


/*
 * What a provider's error body says: the "message" of its "error" object,
 * or "error" itself when it is a string; otherwise the body as it is.
 * Copied into buf, bounded by size.
 */

size_t
ngx_http_voice_error_message(const u_char *body, size_t len, u_char *buf,
    size_t size)
{
    json_t  *root, *error, *message;

    message = NULL;
    root = json_loadb((const char *) body, len, 0, NULL);
    error = json_object_get(root, "error");

    if (json_is_object(error)) {
        message = json_object_get(error, "message");

    } else if (json_is_string(error)) {
        message = error;
    }

    if (json_is_string(message)) {
        body = (const u_char *) json_string_value(message);
        len = json_string_length(message);
    }

    len = ngx_min(len, size);
    ngx_memcpy(buf, body, len);

    json_decref(root);

    return len;
}
