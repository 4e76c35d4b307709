
/*
 * The session's side of speech-to-text: engines report what they heard,
 * the transcript aggregator decides what is due, and the state machine
 * sends it.  Also the voice_stt* directives shared by every engine.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_session.h"
#include "ngx_http_voice_stt.h"


/* voice_stt_max_text is bounded so that one static buffer holds any
 * transcript message, escaped */
#define NGX_HTTP_VOICE_STT_MAX_TEXT  (16 * 1024)
#define NGX_HTTP_VOICE_STT_KEY_MAX   4096


static ngx_int_t ngx_http_voice_stt_due(ngx_http_voice_stt_t *stt,
    ngx_uint_t due, ngx_uint_t end);
static void ngx_http_voice_stt_assign_turn(ngx_http_voice_stt_t *stt);
static ngx_int_t ngx_http_voice_stt_event(ngx_http_voice_stt_t *stt,
    ngx_http_voice_event_e event, ngx_str_t *text);
static void ngx_http_voice_stt_cleanup(void *data);


static const ngx_http_voice_stt_engine_t  *ngx_http_voice_stt_engines[] = {
    [NGX_HTTP_VOICE_STT_OFF] = NULL,
    [NGX_HTTP_VOICE_STT_EMBEDDED] = &ngx_http_voice_stt_embedded,
    [NGX_HTTP_VOICE_STT_DEEPGRAM] = &ngx_http_voice_stt_deepgram,
};


static ngx_conf_enum_t  ngx_http_voice_stt_names[] = {
    { ngx_string("off"), NGX_HTTP_VOICE_STT_OFF },
    { ngx_string("embedded"), NGX_HTTP_VOICE_STT_EMBEDDED },
    { ngx_string("deepgram"), NGX_HTTP_VOICE_STT_DEEPGRAM },
    { ngx_null_string, 0 }
};


static u_char  ngx_http_voice_stt_json[6 * NGX_HTTP_VOICE_STT_MAX_TEXT + 256];


ngx_http_voice_stt_t *
ngx_http_voice_stt_open(ngx_http_voice_stt_conf_t *conf, void *session,
    ngx_http_request_t *r)
{
    u_char                *text;
    ngx_pool_cleanup_t    *cln;
    ngx_http_voice_stt_t  *stt;

    stt = ngx_pcalloc(r->pool, sizeof(ngx_http_voice_stt_t));
    text = ngx_pnalloc(r->pool, conf->max_text);
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (stt == NULL || text == NULL || cln == NULL) {
        return NULL;
    }

    stt->engine = ngx_http_voice_stt_engines[conf->engine];
    stt->conf = conf;
    stt->session = session;
    stt->request = r;
    stt->pool = r->pool;
    stt->log = r->connection->log;

    ngx_http_voice_transcript_init(&stt->transcript, text, conf->max_text);

    /* closed before the session's memory goes, whatever ends it */
    cln->handler = ngx_http_voice_stt_cleanup;
    cln->data = stt;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, stt->log, 0,
                   "voice: stt %s open", stt->engine->name);

    if (stt->engine->open(stt) != NGX_OK) {
        stt->closed = 1;
        return NULL;
    }

    return stt;
}


ngx_int_t
ngx_http_voice_stt_audio(ngx_http_voice_stt_t *stt, const int16_t *pcm,
    size_t n, ngx_uint_t talking)
{
    if (stt->closed) {
        return NGX_OK;
    }

    if (talking && !stt->talking && stt->turn == 0) {
        /* a new utterance: a turn that ended without words is forgotten */
        stt->pending = 0;
    }

    stt->talking = talking ? 1 : 0;
    stt->samples += n;

    return stt->engine->audio(stt, pcm, n);
}


ngx_int_t
ngx_http_voice_stt_finalize(ngx_http_voice_stt_t *stt, ngx_uint_t turn)
{
    if (stt->closed) {
        return NGX_OK;
    }

    /* its text may come after the next turn has begun: it keeps its number */

    if (stt->turn == 0) {
        stt->pending = turn;
    }

    stt->talking = 0;

    return stt->engine->finalize(stt);
}


void
ngx_http_voice_stt_close(ngx_http_voice_stt_t *stt)
{
    if (stt->closed) {
        return;
    }

    stt->closed = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, stt->log, 0,
                   "voice: stt %s close", stt->engine->name);

    stt->engine->close(stt);
}


static void
ngx_http_voice_stt_cleanup(void *data)
{
    ngx_http_voice_stt_close(data);
}


/* ---- reports from engines ----------------------------------------------- */

ngx_int_t
ngx_http_voice_stt_result(ngx_http_voice_stt_t *stt, const u_char *text,
    size_t len, ngx_uint_t is_final, ngx_uint_t end)
{
    ngx_uint_t  due;

    if (stt->closed) {
        return NGX_ERROR;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, stt->log, 0,
                   "voice: stt result \"%*s\" final:%ui end:%ui",
                   len, text, is_final, end);

    due = ngx_http_voice_transcript_result(&stt->transcript, text, len,
                                           is_final, end);

    return ngx_http_voice_stt_due(stt, due, end);
}


ngx_int_t
ngx_http_voice_stt_utterance_end(ngx_http_voice_stt_t *stt)
{
    if (stt->closed) {
        return NGX_ERROR;
    }

    return ngx_http_voice_stt_due(stt,
               ngx_http_voice_transcript_end(&stt->transcript), 1);
}


ngx_int_t
ngx_http_voice_stt_speech_started(ngx_http_voice_stt_t *stt)
{
    if (stt->closed) {
        return NGX_ERROR;
    }

    return ngx_http_voice_stt_event(stt, NGX_HTTP_VOICE_EV_STT_SPEECH, NULL);
}


ngx_int_t
ngx_http_voice_stt_failed(ngx_http_voice_stt_t *stt, ngx_uint_t recoverable,
    const char *message)
{
    ngx_str_t  text;

    if (stt->closed) {
        return NGX_ERROR;
    }

    text.data = (u_char *) message;
    text.len = ngx_strlen(message);

    return ngx_http_voice_stt_event(stt,
                                    recoverable ? NGX_HTTP_VOICE_EV_STT_ERROR
                                                : NGX_HTTP_VOICE_EV_STT_FAILED,
                                    &text);
}


static ngx_int_t
ngx_http_voice_stt_due(ngx_http_voice_stt_t *stt, ngx_uint_t due,
    ngx_uint_t end)
{
    ngx_str_t                     text;
    ngx_http_voice_transcript_t  *t;

    t = &stt->transcript;

    if (due & NGX_HTTP_VOICE_TRANSCRIPT_PARTIAL) {
        ngx_http_voice_transcript_partial(t, &text);

        if (text.len) {
            ngx_http_voice_stt_assign_turn(stt);

            if (ngx_http_voice_stt_event(stt,
                                         NGX_HTTP_VOICE_EV_TRANSCRIPT_PARTIAL,
                                         &text)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (due & NGX_HTTP_VOICE_TRANSCRIPT_FINAL) {
        ngx_http_voice_transcript_final(t, &text);
        ngx_http_voice_stt_assign_turn(stt);

        if (t->truncated) {
            ngx_log_error(NGX_LOG_INFO, stt->log, 0,
                          "voice: transcript of turn %ui cut at "
                          "voice_stt_max_text %uz", stt->turn,
                          stt->conf->max_text);
        }

        if (ngx_http_voice_stt_event(stt, NGX_HTTP_VOICE_EV_TRANSCRIPT_FINAL,
                                     &text)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        stt->last = stt->turn;
        stt->turn = 0;
        stt->pending = 0;
        ngx_http_voice_transcript_reset(t);

    } else if (end && t->len == 0) {
        /* the turn ended with no words: nothing to number */
        stt->turn = 0;
        stt->pending = 0;
    }

    return NGX_OK;
}


static void
ngx_http_voice_stt_assign_turn(ngx_http_voice_stt_t *stt)
{
    ngx_uint_t                 turn;
    ngx_http_voice_session_t  *s;

    if (stt->turn) {
        return;
    }

    s = stt->session;
    turn = stt->pending ? stt->pending : s->turn;

    stt->turn = (turn > stt->last) ? turn : stt->last + 1;
}


static ngx_int_t
ngx_http_voice_stt_event(ngx_http_voice_stt_t *stt,
    ngx_http_voice_event_e event, ngx_str_t *text)
{
    ngx_http_voice_input_t  in;

    in.data = text ? text->data : NULL;
    in.len = text ? text->len : 0;
    in.msg = NULL;

    return ngx_http_voice_session_raise(stt->session, event, &in);
}


/* the PARTIAL and FINAL actions */

ngx_int_t
ngx_http_voice_stt_send(ngx_http_voice_stt_t *stt, ngx_uint_t final,
    u_char *data, size_t len)
{
    size_t     n;
    ngx_str_t  text;

    text.data = data;
    text.len = len;

    n = ngx_http_voice_protocol_transcript(ngx_http_voice_stt_json,
                                           sizeof(ngx_http_voice_stt_json),
                                           final, stt->turn, &text);
    if (n == 0) {
        ngx_log_error(NGX_LOG_ALERT, stt->log, 0,
                      "voice: transcript message could not be written");
        return NGX_ERROR;
    }

    return ngx_http_voice_session_text(stt->session, ngx_http_voice_stt_json,
                                       n);
}


/* ---- configuration ------------------------------------------------------ */

void
ngx_http_voice_stt_create_conf(ngx_http_voice_stt_conf_t *conf)
{
    conf->engine = NGX_CONF_UNSET_UINT;
    conf->max_text = NGX_CONF_UNSET_SIZE;
    conf->params = NGX_CONF_UNSET_PTR;
    conf->buffer = NGX_CONF_UNSET_SIZE;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->retries = NGX_CONF_UNSET_UINT;
    conf->partial_interval = NGX_CONF_UNSET_MSEC;
}


char *
ngx_http_voice_stt_merge_conf(ngx_conf_t *cf, ngx_http_voice_stt_conf_t *prev,
    ngx_http_voice_stt_conf_t *conf, ngx_uint_t agent, ngx_uint_t serves,
    ngx_str_t *trusted)
{
    char                               *rv;
    const ngx_http_voice_stt_engine_t  *engine;

    ngx_conf_merge_uint_value(conf->engine, prev->engine,
                              NGX_CONF_UNSET_UINT);
    ngx_conf_merge_size_value(conf->max_text, prev->max_text, 4096);
    ngx_conf_merge_str_value(conf->url, prev->url,
                             "wss://api.deepgram.com/v1/listen");
    ngx_conf_merge_ptr_value(conf->params, prev->params, NULL);
    ngx_conf_merge_str_value(conf->key, prev->key, "");
    ngx_conf_merge_size_value(conf->buffer, prev->buffer, 128 * 1024);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 5000);
    ngx_conf_merge_uint_value(conf->retries, prev->retries, 6);
    ngx_conf_merge_msec_value(conf->partial_interval, prev->partial_interval,
                              300);

    if (conf->max_text > NGX_HTTP_VOICE_STT_MAX_TEXT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_stt_max_text\" must be at most %uz",
                           (size_t) NGX_HTTP_VOICE_STT_MAX_TEXT);
        return NGX_CONF_ERROR;
    }

    if (conf->engine == NGX_CONF_UNSET_UINT) {
        /* only at the level that serves sessions: the pipeline is known */
        if (!serves) {
            return NGX_CONF_OK;
        }

        conf->engine = agent ? NGX_HTTP_VOICE_STT_EMBEDDED
                             : NGX_HTTP_VOICE_STT_OFF;
    }

    engine = ngx_http_voice_stt_engines[conf->engine];

    if (!serves || !agent || engine == NULL) {
        return NGX_CONF_OK;
    }

    if (conf->engine == NGX_HTTP_VOICE_STT_DEEPGRAM) {
        rv = ngx_http_voice_upstream_parse_url(cf, &conf->url,
                                               &conf->upstream);
        if (rv != NGX_CONF_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"voice_stt_url\" %s",
                               rv);
            return NGX_CONF_ERROR;
        }

        conf->upstream.send_buffer = conf->buffer;
        conf->upstream.max_message = 1024 * 1024;

        if (ngx_http_voice_upstream_ssl(cf, &conf->upstream, trusted)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    rv = engine->init_conf(cf, conf);

    if (rv != NGX_CONF_OK && rv != NGX_CONF_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"voice_stt %s\": %s",
                           engine->name, rv);
        return NGX_CONF_ERROR;
    }

    return rv;
}


char *
ngx_http_voice_stt_engine_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_voice_stt_conf_t  *stt;

    stt = (ngx_http_voice_stt_conf_t *) (p + cmd->offset);

    if (stt->engine != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_voice_stt_names[i].name.len; i++) {
        if (ngx_strcmp(value[1].data, ngx_http_voice_stt_names[i].name.data)
            == 0)
        {
            stt->engine = ngx_http_voice_stt_names[i].value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\", it must be "
                       "\"off\", \"embedded\" or \"deepgram\"",
                       &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}


char *
ngx_http_voice_stt_param_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    u_char                            *c;
    ngx_str_t                         *value;
    ngx_http_voice_stt_conf_t         *stt;
    ngx_http_voice_stt_param_t        *param;
    ngx_http_compile_complex_value_t   ccv;

    stt = (ngx_http_voice_stt_conf_t *) (p + cmd->offset);
    value = cf->args->elts;

    if (value[1].len == 0) {
        return "needs a parameter name";
    }

    for (c = value[1].data; c < value[1].data + value[1].len; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')
              || *c == '_'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter name \"%V\" in \"%V\", "
                               "only a-z, 0-9 and \"_\" are allowed",
                               &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    if (stt->params == NGX_CONF_UNSET_PTR) {
        stt->params = ngx_array_create(cf->pool, 8,
                                       sizeof(ngx_http_voice_stt_param_t));
        if (stt->params == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    param = ngx_array_push(stt->params);
    if (param == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(param, sizeof(ngx_http_voice_stt_param_t));
    param->name = value[1];

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &param->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_voice_stt_key_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_http_voice_stt_conf_t  *stt;

    stt = (ngx_http_voice_stt_conf_t *) (p + cmd->offset);

    if (stt->key.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_voice_read_key(cf, &value[1], &stt->key);
}


/*
 * Keys come from the environment or a file, never from the configuration
 * itself, which is often shared and logged.  Both are read now, by the
 * master: nginx clears the workers' environment.
 */

char *
ngx_http_voice_read_key(ngx_conf_t *cf, ngx_str_t *spec, ngx_str_t *key)
{
    u_char           *env, *last, *c;
    ssize_t           n;
    ngx_str_t         name, value;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (spec->len > 4 && ngx_strncmp(spec->data, "env:", 4) == 0) {
        env = (u_char *) getenv((char *) spec->data + 4);

        if (env == NULL || *env == '\0') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "environment variable \"%s\" for the key "
                               "is not set", spec->data + 4);
            return NGX_CONF_ERROR;
        }

        value.data = env;
        value.len = ngx_strlen(env);

        if (value.len > NGX_HTTP_VOICE_STT_KEY_MAX) {
            return "gives a key that is too long";
        }

        key->len = value.len;
        key->data = ngx_pstrdup(cf->pool, &value);
        if (key->data == NULL) {
            return NGX_CONF_ERROR;
        }

        goto trim;
    }

    if (!(spec->len > 5 && ngx_strncmp(spec->data, "file:", 5) == 0)) {
        return "must be \"env:NAME\" or \"file:PATH\"; "
               "keys are not written in the configuration";
    }

    name.data = spec->data + 5;
    name.len = spec->len - 5;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = name;
    file.log = cf->log;

    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name.data);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_HTTP_VOICE_STT_KEY_MAX)
    {
        ngx_close_file(file.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%s\" is not a file of at most %d bytes",
                           name.data, NGX_HTTP_VOICE_STT_KEY_MAX);
        return NGX_CONF_ERROR;
    }

    key->data = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);
    if (key->data == NULL) {
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, key->data, ngx_file_size(&fi), 0);

    ngx_close_file(file.fd);

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    key->len = n;

trim:

    /* a trailing newline is the editor's, not the key's */

    last = key->data + key->len;

    while (last > key->data
           && (last[-1] == '\n' || last[-1] == '\r' || last[-1] == ' '
               || last[-1] == '\t'))
    {
        last--;
    }

    key->len = last - key->data;

    if (key->len == 0) {
        return "gives an empty key";
    }

    /* it goes into a request header: nothing may break the line */

    for (c = key->data; c < last; c++) {
        if (*c < 0x20 || *c == 0x7f) {
            return "gives a key with control characters";
        }
    }

    return NGX_CONF_OK;
}
