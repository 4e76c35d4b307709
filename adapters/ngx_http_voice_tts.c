
/*
 * The speech of a reply: its text cut into phrases, the phrases spoken by
 * an engine, the audio converted to the client's rate and queued for
 * paced playout, and a record of where each word ends in that audio, so
 * that a barge-in knows what the user heard.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_session.h"
#include "ngx_http_voice_media.h"
#include "ngx_http_voice_tts.h"


/* audio is converted through a per-worker scratch buffer, in slices */
#define NGX_HTTP_VOICE_TTS_SLICE  2048       /* samples in */


static void ngx_http_voice_tts_overdue(ngx_event_t *ev);
static void ngx_http_voice_tts_cleanup(void *data);


static const ngx_http_voice_tts_engine_t  *ngx_http_voice_tts_engines[] = {
    [NGX_HTTP_VOICE_TTS_OFF] = NULL,
    [NGX_HTTP_VOICE_TTS_EMBEDDED] = &ngx_http_voice_tts_embedded,
    [NGX_HTTP_VOICE_TTS_CARTESIA] = &ngx_http_voice_tts_cartesia,
    [NGX_HTTP_VOICE_TTS_ELEVENLABS] = &ngx_http_voice_tts_elevenlabs,
    [NGX_HTTP_VOICE_TTS_OPENAI] = &ngx_http_voice_tts_openai,
};


static ngx_conf_enum_t  ngx_http_voice_tts_names[] = {
    { ngx_string("off"), NGX_HTTP_VOICE_TTS_OFF },
    { ngx_string("embedded"), NGX_HTTP_VOICE_TTS_EMBEDDED },
    { ngx_string("cartesia"), NGX_HTTP_VOICE_TTS_CARTESIA },
    { ngx_string("elevenlabs"), NGX_HTTP_VOICE_TTS_ELEVENLABS },
    { ngx_string("openai"), NGX_HTTP_VOICE_TTS_OPENAI },
    { ngx_null_string, 0 }
};




ngx_http_voice_tts_t *
ngx_http_voice_tts_open(ngx_http_voice_tts_conf_t *conf, void *session,
    ngx_http_request_t *r, ngx_uint_t out_rate)
{
    size_t                 size;
    ngx_pool_cleanup_t    *cln;
    ngx_http_voice_tts_t  *tts;

    tts = ngx_pcalloc(r->pool, sizeof(ngx_http_voice_tts_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    size = NGX_HTTP_VOICE_PHRASE_SIZE(conf->max_phrase);

    if (tts == NULL || cln == NULL) {
        return NULL;
    }

    tts->phrase_buf = ngx_palloc(r->pool, size);
    if (tts->phrase_buf == NULL) {
        return NULL;
    }

    (void) ngx_http_voice_phrase_init(&tts->phraser, tts->phrase_buf, size,
                                      conf->max_phrase);

    tts->engine = ngx_http_voice_tts_engines[conf->engine];
    tts->conf = conf;
    tts->session = session;
    tts->request = r;
    tts->pool = r->pool;
    tts->log = r->connection->log;
    tts->out_rate = out_rate;

    tts->timer.handler = ngx_http_voice_tts_overdue;
    tts->timer.data = tts;
    tts->timer.log = tts->log;
    tts->timer.cancelable = 1;

    if (tts->engine->open(tts) != NGX_OK) {
        return NULL;
    }

    if (ngx_http_voice_resampler_init(&tts->resampler, tts->rate, out_rate,
                                      NGX_HTTP_VOICE_RESAMPLE_FASTEST)
        != NGX_OK)
    {
        tts->engine->close(tts);
        return NULL;
    }

    cln->handler = ngx_http_voice_tts_cleanup;
    cln->data = tts;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice: tts %s open, %ui Hz to %ui Hz", tts->engine->name,
                   tts->rate, out_rate);

    return tts;
}


static void
ngx_http_voice_tts_overdue(ngx_event_t *ev)
{
}


static void
ngx_http_voice_tts_cleanup(void *data)
{
    ngx_http_voice_tts_t  *tts = data;

    tts->engine->close(tts);
}


/* ---- configuration ------------------------------------------------------ */

void
ngx_http_voice_tts_create_conf(ngx_http_voice_tts_conf_t *conf)
{
    conf->engine = NGX_CONF_UNSET_UINT;
    conf->auth = NGX_CONF_UNSET_UINT;
    conf->speed = NGX_CONF_UNSET_UINT;
    conf->max_phrase = NGX_CONF_UNSET_UINT;
    conf->timeout = NGX_CONF_UNSET_MSEC;
}


char *
ngx_http_voice_tts_merge_conf(ngx_conf_t *cf, ngx_http_voice_tts_conf_t *prev,
    ngx_http_voice_tts_conf_t *conf, ngx_uint_t agent, ngx_uint_t serves)
{
    char                               *rv;
    const ngx_http_voice_tts_engine_t  *engine;

    ngx_conf_merge_uint_value(conf->engine, prev->engine,
                              NGX_CONF_UNSET_UINT);
    ngx_conf_merge_str_value(conf->url, prev->url, "");
    ngx_conf_merge_str_value(conf->key, prev->key, "");
    ngx_conf_merge_str_value(conf->voice, prev->voice, "");
    ngx_conf_merge_str_value(conf->model, prev->model, "");
    ngx_conf_merge_str_value(conf->language, prev->language, "en");
    ngx_conf_merge_str_value(conf->version, prev->version, "2024-11-13");
    ngx_conf_merge_uint_value(conf->auth, prev->auth,
                              NGX_HTTP_VOICE_TTS_AUTH_BEARER);
    ngx_conf_merge_uint_value(conf->speed, prev->speed, 100);
    ngx_conf_merge_uint_value(conf->max_phrase, prev->max_phrase,
                              NGX_HTTP_VOICE_PHRASE_MAX_CHARS);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 5000);

    if (conf->max_phrase < 8 || conf->max_phrase > 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_tts_max_phrase\" must be from 8 to 1000");
        return NGX_CONF_ERROR;
    }

    if (conf->engine == NGX_CONF_UNSET_UINT) {
        if (!serves) {
            return NGX_CONF_OK;
        }

        conf->engine = NGX_HTTP_VOICE_TTS_OFF;
    }

    engine = ngx_http_voice_tts_engines[conf->engine];

    if (!serves || !agent || engine == NULL) {
        return NGX_CONF_OK;
    }

    rv = engine->init_conf(cf, conf);

    if (rv != NGX_CONF_OK && rv != NGX_CONF_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"voice_tts %s\": %s",
                           engine->name, rv);
        return NGX_CONF_ERROR;
    }

    return rv;
}


char *
ngx_http_voice_tts_engine_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_voice_tts_conf_t  *tts;

    tts = (ngx_http_voice_tts_conf_t *) (p + cmd->offset);

    if (tts->engine != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_voice_tts_names[i].name.len; i++) {
        if (ngx_strcmp(value[1].data, ngx_http_voice_tts_names[i].name.data)
            == 0)
        {
            tts->engine = ngx_http_voice_tts_names[i].value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\", it must be \"off\", "
                       "\"embedded\", \"cartesia\", \"elevenlabs\" or "
                       "\"openai\"", &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}


char *
ngx_http_voice_tts_key_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_http_voice_tts_conf_t  *tts;

    tts = (ngx_http_voice_tts_conf_t *) (p + cmd->offset);

    if (tts->key.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_voice_read_key(cf, &value[1], &tts->key);
}


/* 0.25 to 4, kept in hundredths */

char *
ngx_http_voice_tts_speed_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_int_t                   n;
    ngx_str_t                  *value;
    ngx_http_voice_tts_conf_t  *tts;

    tts = (ngx_http_voice_tts_conf_t *) (p + cmd->offset);

    if (tts->speed != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atofp(value[1].data, value[1].len, 2);

    if (n == NGX_ERROR || n < 25 || n > 400) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\", it must be a "
                           "number from 0.25 to 4", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    tts->speed = n;

    return NGX_CONF_OK;
}
