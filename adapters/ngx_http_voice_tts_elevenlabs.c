
/*
 * ElevenLabs stream-input: text goes up a WebSocket as it is written and
 * PCM comes back as base64 in JSON messages, with the time of each
 * character.
 *
 * A stream speaks one reply: once its input is closed with {"text":""}
 * it sends the rest of the audio, {"isFinal":true}, and closes.  So the
 * engine keeps a spare stream connected ahead (at open, and as soon as a
 * reply's input ends or a reply is dropped), and a reply takes the spare
 * when it begins: it never waits for a connect unless the spare was lost.
 * The spare is kept alive with {"text":" "} before the provider's
 * inactivity timeout.  Cancelling a reply closes its stream.
 *
 * voice_tts_url: a URL whose path is empty or "/" gets the provider's path
 * /v1/text-to-speech/{voice}/stream-input; any other path is used as it
 * is.  Its query is kept (inactivity_timeout there sets the keep-alive
 * pace); the engine adds model_id and output_format.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_voice_tts.h"
#include "ngx_http_voice_ws.h"


#define NGX_HTTP_VOICE_EL_HOST       "wss://api.elevenlabs.io"
#define NGX_HTTP_VOICE_EL_PATH       "/v1/text-to-speech/"
#define NGX_HTTP_VOICE_EL_PATH_END   "/stream-input"
#define NGX_HTTP_VOICE_EL_MODEL      "eleven_flash_v2_5"

#define NGX_HTTP_VOICE_EL_RATE       16000
#define NGX_HTTP_VOICE_EL_IDLE       20     /* s: the provider's default */
#define NGX_HTTP_VOICE_EL_FLUSH      20     /* ms: retry a full queue */
#define NGX_HTTP_VOICE_EL_BOUNDS     64     /* phrase ends in flight */
#define NGX_HTTP_VOICE_EL_SEND       (64 * 1024)
#define NGX_HTTP_VOICE_EL_MESSAGE    (1024 * 1024)

/* a stream's states */
#define NGX_HTTP_VOICE_EL_FREE       0
#define NGX_HTTP_VOICE_EL_CONNECTING 1
#define NGX_HTTP_VOICE_EL_OPEN       2

#define NGX_HTTP_VOICE_EL_ERR_KEY    "the speech provider refused the key"
#define NGX_HTTP_VOICE_EL_ERR_FAIL   "the speech provider failed"
#define NGX_HTTP_VOICE_EL_ERR_DOWN   "the speech provider is unavailable"
#define NGX_HTTP_VOICE_EL_ERR_BAD    "the speech provider sent a malformed " \
                                     "message"


typedef struct ngx_http_voice_el_ctx_s  ngx_http_voice_el_ctx_t;


typedef struct {
    ngx_http_voice_el_ctx_t      *ctx;
    ngx_http_voice_upstream_t    *u;
    ngx_uint_t                    state;       /* NGX_HTTP_VOICE_EL_* */
    ngx_uint_t                    id;          /* for the log */

    /* messages not yet sent, each followed by '\n' */
    u_char                       *queue;
    size_t                        queued;
    size_t                        size;

    ngx_event_t                   keepalive;
    ngx_event_t                   flush;

    unsigned                      ended:1;     /* {"text":""} queued */
    unsigned                      audio:1;     /* audio came */
} ngx_http_voice_el_stream_t;


/* where a phrase ends, in what the provider will align */
typedef struct {
    size_t                        chars;       /* non-blank, in the reply */
    ngx_uint_t                    words;       /* the reply's, at its end */
} ngx_http_voice_el_bound_t;


struct ngx_http_voice_el_ctx_s {
    ngx_http_voice_tts_t         *tts;
    ngx_str_t                     target;      /* path?query */
    ngx_str_t                     headers;     /* xi-api-key: a secret */
    ngx_msec_t                    keepalive;   /* pace of {"text":" "} */

    ngx_http_voice_el_stream_t    streams[2];
    ngx_http_voice_el_stream_t   *reply;       /* speaking the reply */
    ngx_http_voice_el_stream_t   *spare;       /* ready for the next */
    ngx_uint_t                    connections;

    /* handshakes refused in a row, and what is owed to the next reply */
    ngx_uint_t                    refusals;
    ngx_msec_t                    refused_at;
    const char                   *owed;
    const char                   *last_error;

    /* the reply under way */
    uint64_t                      bytes;       /* audio reported */
    size_t                        chars_sent;
    size_t                        chars_seen;
    ngx_uint_t                    words_sent;
    ngx_uint_t                    words_seen;
    ngx_uint_t                    words_told;
    uint64_t                      word_end;    /* sample */
    ngx_http_voice_el_bound_t     bounds[NGX_HTTP_VOICE_EL_BOUNDS];
    ngx_uint_t                    bound_first;
    ngx_uint_t                    nbounds;

    ngx_event_t                   retry;       /* connect the spare again */
    ngx_event_t                   report;      /* posted failure */
    const char                   *report_msg;

    unsigned                      active:1;    /* a reply has begun */
    unsigned                      ended:1;     /* its end() came */
    unsigned                      in_word:1;
    unsigned                      closed:1;
};


static char *ngx_http_voice_el_init_conf(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf);
static ngx_int_t ngx_http_voice_el_query_arg(ngx_str_t *uri,
    const char *name, ngx_str_t *value);
static ngx_uint_t ngx_http_voice_el_token(ngx_str_t *s);
static ngx_int_t ngx_http_voice_el_open(ngx_http_voice_tts_t *tts);
static ngx_int_t ngx_http_voice_el_speak(ngx_http_voice_tts_t *tts,
    ngx_http_voice_tts_phrase_t *phrase);
static ngx_int_t ngx_http_voice_el_end(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_el_pause(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_el_resume(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_el_cancel(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_el_close(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_el_cleanup(void *data);

static void ngx_http_voice_el_begin(ngx_http_voice_el_ctx_t *ctx);
static void ngx_http_voice_el_forget(ngx_http_voice_el_ctx_t *ctx);
static void ngx_http_voice_el_post(ngx_http_voice_el_ctx_t *ctx,
    const char *msg);
static void ngx_http_voice_el_ahead(ngx_http_voice_el_ctx_t *ctx);
static ngx_http_voice_el_stream_t *ngx_http_voice_el_connect(
    ngx_http_voice_el_ctx_t *ctx);
static void ngx_http_voice_el_drop(ngx_http_voice_el_stream_t *s);
static ngx_int_t ngx_http_voice_el_queue(ngx_http_voice_el_stream_t *s,
    u_char *msg, size_t len);
static void ngx_http_voice_el_pump(ngx_http_voice_el_stream_t *s);
static ngx_int_t ngx_http_voice_el_first(ngx_http_voice_el_stream_t *s);
static ngx_uint_t ngx_http_voice_el_blank(u_char c);

static void ngx_http_voice_el_on_open(ngx_http_voice_upstream_t *u);
static void ngx_http_voice_el_on_message(ngx_http_voice_upstream_t *u,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_voice_el_on_closed(ngx_http_voice_upstream_t *u,
    ngx_http_voice_upstream_end_t *end);
static ngx_int_t ngx_http_voice_el_audio(ngx_http_voice_el_ctx_t *ctx,
    json_t *audio, json_t *alignment);
static ngx_int_t ngx_http_voice_el_align(ngx_http_voice_el_ctx_t *ctx,
    json_t *alignment, uint64_t start);
static ngx_int_t ngx_http_voice_el_fail(ngx_http_voice_el_ctx_t *ctx,
    const char *msg, ngx_uint_t ahead);
static ngx_int_t ngx_http_voice_el_finish(ngx_http_voice_el_ctx_t *ctx);

static void ngx_http_voice_el_keepalive_handler(ngx_event_t *ev);
static void ngx_http_voice_el_flush_handler(ngx_event_t *ev);
static void ngx_http_voice_el_retry_handler(ngx_event_t *ev);
static void ngx_http_voice_el_report_handler(ngx_event_t *ev);


const ngx_http_voice_tts_engine_t  ngx_http_voice_tts_elevenlabs = {
    "elevenlabs",
    ngx_http_voice_el_init_conf,
    ngx_http_voice_el_open,
    ngx_http_voice_el_speak,
    ngx_http_voice_el_end,
    ngx_http_voice_el_pause,
    ngx_http_voice_el_resume,
    ngx_http_voice_el_cancel,
    ngx_http_voice_el_close
};


static ngx_http_voice_upstream_handler_t  ngx_http_voice_el_handler = {
    ngx_http_voice_el_on_open,
    ngx_http_voice_el_on_message,
    ngx_http_voice_el_on_closed
};


/* the PCM rates the provider offers that a client may use */
static ngx_uint_t  ngx_http_voice_el_rates[] = {
    16000, 22050, 24000, 44100, 0
};


/* ---- configuration ------------------------------------------------------ */


static char *
ngx_http_voice_el_init_conf(ngx_conf_t *cf, ngx_http_voice_tts_conf_t *conf)
{
    u_char     *p, *q;
    char       *rv;
    ngx_int_t   n;
    ngx_str_t   path, value;

    if (conf->voice.len == 0) {
        return "needs voice_tts_voice";
    }

    if (!ngx_http_voice_el_token(&conf->voice)) {
        return "voice_tts_voice must be letters, digits, \"-\", \"_\" "
               "or \".\"";
    }

    if (conf->model.len == 0) {
        ngx_str_set(&conf->model, NGX_HTTP_VOICE_EL_MODEL);

    } else if (!ngx_http_voice_el_token(&conf->model)) {
        return "voice_tts_model must be letters, digits, \"-\", \"_\" "
               "or \".\"";
    }

    if (conf->speed < 70 || conf->speed > 120) {
        return "voice_tts_speed must be from 0.7 to 1.2";
    }

    if (conf->url.len == 0) {
        ngx_str_set(&conf->url, NGX_HTTP_VOICE_EL_HOST);
    }

    rv = ngx_http_voice_tts_upstream(cf, conf, NGX_HTTP_VOICE_EL_SEND,
                                     NGX_HTTP_VOICE_EL_MESSAGE);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    /* an empty path stands for the provider's, with the voice in it */

    q = ngx_strlchr(conf->upstream.uri.data,
                    conf->upstream.uri.data + conf->upstream.uri.len, '?');

    path.data = conf->upstream.uri.data;
    path.len = q ? (size_t) (q - path.data) : conf->upstream.uri.len;

    if (path.len <= 1) {
        n = conf->upstream.uri.len - path.len;

        p = ngx_pnalloc(cf->pool, sizeof(NGX_HTTP_VOICE_EL_PATH) - 1
                                  + conf->voice.len
                                  + sizeof(NGX_HTTP_VOICE_EL_PATH_END) - 1
                                  + n);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->upstream.uri.data = p;

        p = ngx_cpymem(p, NGX_HTTP_VOICE_EL_PATH,
                       sizeof(NGX_HTTP_VOICE_EL_PATH) - 1);
        p = ngx_cpymem(p, conf->voice.data, conf->voice.len);
        p = ngx_cpymem(p, NGX_HTTP_VOICE_EL_PATH_END,
                       sizeof(NGX_HTTP_VOICE_EL_PATH_END) - 1);

        if (q) {
            p = ngx_cpymem(p, q, n);
        }

        conf->upstream.uri.len = p - conf->upstream.uri.data;
    }

    if (ngx_http_voice_el_query_arg(&conf->upstream.uri, "model_id", &value)
        == NGX_OK
        || ngx_http_voice_el_query_arg(&conf->upstream.uri, "output_format",
                                       &value)
           == NGX_OK)
    {
        return "voice_tts_url must not set model_id or output_format: "
               "they come from voice_tts_model and the client's rate";
    }

    if (ngx_http_voice_el_query_arg(&conf->upstream.uri,
                                    "inactivity_timeout", &value)
        == NGX_OK)
    {
        n = ngx_atoi(value.data, value.len);

        if (n < 1 || n > 180) {
            return "voice_tts_url: inactivity_timeout must be 1 to 180 "
                   "seconds";
        }
    }

    return NGX_CONF_OK;
}


/* the value of a query argument of uri, as it is there */
static ngx_int_t
ngx_http_voice_el_query_arg(ngx_str_t *uri, const char *name,
    ngx_str_t *value)
{
    size_t   len;
    u_char  *p, *last, *amp;

    len = ngx_strlen(name);
    last = uri->data + uri->len;

    p = ngx_strlchr(uri->data, last, '?');
    if (p == NULL) {
        return NGX_DECLINED;
    }

    for (p++; p < last; p = amp + 1) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        if ((size_t) (amp - p) > len
            && p[len] == '='
            && ngx_strncmp(p, name, len) == 0)
        {
            value->data = p + len + 1;
            value->len = amp - value->data;
            return NGX_OK;
        }

        if ((size_t) (amp - p) == len && ngx_strncmp(p, name, len) == 0) {
            value->data = amp;
            value->len = 0;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* an identifier safe in a path and a query: letters, digits, -_. */
static ngx_uint_t
ngx_http_voice_el_token(ngx_str_t *s)
{
    size_t  i;
    u_char  c;

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')
        {
            continue;
        }

        return 0;
    }

    return s->len > 0;
}


/* ---- the session ------------------------------------------------------- */


static ngx_int_t
ngx_http_voice_el_open(ngx_http_voice_tts_t *tts)
{
    u_char                      *p;
    size_t                       len;
    ngx_int_t                    n;
    ngx_str_t                   *uri, value;
    ngx_uint_t                   i;
    ngx_pool_cleanup_t          *cln;
    ngx_http_voice_el_ctx_t     *ctx;
    ngx_http_voice_tts_conf_t   *conf;
    ngx_http_voice_el_stream_t  *s;

    conf = tts->conf;
    uri = &conf->upstream.uri;

    ctx = ngx_pcalloc(tts->pool, sizeof(ngx_http_voice_el_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->tts = tts;

    tts->rate = NGX_HTTP_VOICE_EL_RATE;

    for (i = 0; ngx_http_voice_el_rates[i]; i++) {
        if (ngx_http_voice_el_rates[i] == tts->out_rate) {
            tts->rate = tts->out_rate;
        }
    }

    /* the target: the configured one, then the model and the format */

    len = uri->len + sizeof("?model_id=&output_format=pcm_") - 1
          + conf->model.len + NGX_INT_T_LEN;

    p = ngx_pnalloc(tts->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->target.data = p;
    p = ngx_cpymem(p, uri->data, uri->len);
    *p++ = ngx_strlchr(uri->data, uri->data + uri->len, '?') ? '&' : '?';
    p = ngx_sprintf(p, "model_id=%V&output_format=pcm_%ui", &conf->model,
                    tts->rate);
    ctx->target.len = p - ctx->target.data;

    if (conf->key.len) {
        ctx->headers.len = sizeof("xi-api-key: " CRLF) - 1 + conf->key.len;
        ctx->headers.data = ngx_pnalloc(tts->pool, ctx->headers.len);
        if (ctx->headers.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(ctx->headers.data, "xi-api-key: ",
                       sizeof("xi-api-key: ") - 1);
        p = ngx_cpymem(p, conf->key.data, conf->key.len);
        *p++ = CR; *p = LF;
    }

    /* keep-alives at half the provider's inactivity timeout */

    n = NGX_HTTP_VOICE_EL_IDLE;

    if (ngx_http_voice_el_query_arg(uri, "inactivity_timeout", &value)
        == NGX_OK)
    {
        n = ngx_atoi(value.data, value.len);

        if (n < 1) {
            n = NGX_HTTP_VOICE_EL_IDLE;
        }
    }

    ctx->keepalive = (ngx_msec_t) n * 500;

    cln = ngx_pool_cleanup_add(tts->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    /* the streams must be closed however the session ends */
    cln->handler = ngx_http_voice_el_cleanup;
    cln->data = ctx;

    for (i = 0; i < 2; i++) {
        s = &ctx->streams[i];

        s->ctx = ctx;

        s->keepalive.handler = ngx_http_voice_el_keepalive_handler;
        s->keepalive.data = s;
        s->keepalive.log = tts->log;
        s->keepalive.cancelable = 1;

        s->flush.handler = ngx_http_voice_el_flush_handler;
        s->flush.data = s;
        s->flush.log = tts->log;
        s->flush.cancelable = 1;
    }

    ctx->retry.handler = ngx_http_voice_el_retry_handler;
    ctx->retry.data = ctx;
    ctx->retry.log = tts->log;
    ctx->retry.cancelable = 1;

    ctx->report.handler = ngx_http_voice_el_report_handler;
    ctx->report.data = ctx;
    ctx->report.log = tts->log;

    tts->ctx = ctx;

    ngx_http_voice_el_ahead(ctx);

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_el_speak(ngx_http_voice_tts_t *tts,
    ngx_http_voice_tts_phrase_t *phrase)
{
    u_char                      *p, *last, *text;
    char                        *msg;
    size_t                       len, chars;
    json_t                      *obj, *str;
    ngx_int_t                    rc;
    ngx_uint_t                   words, blank, k;
    ngx_http_voice_el_ctx_t     *ctx;
    ngx_http_voice_el_stream_t  *s;

    ctx = tts->ctx;

    if (ctx == NULL || ctx->closed) {
        return NGX_ERROR;
    }

    if (phrase->index == 0) {
        ngx_http_voice_el_begin(ctx);
    }

    s = ctx->reply;

    if (s == NULL || s->ended) {
        /* the reply has failed: its report is on its way */
        return NGX_OK;
    }

    /* the chunk: the phrase without its blanks around, and one space */

    p = phrase->text.data;
    last = p + phrase->text.len;

    while (p < last && ngx_http_voice_el_blank(*p)) {
        p++;
    }

    while (last > p && ngx_http_voice_el_blank(last[-1])) {
        last--;
    }

    if (p == last) {
        return NGX_OK;
    }

    /* what the provider's alignment will count: characters and words */

    chars = 0;
    words = 0;
    blank = 1;

    for (text = p; text < last; text++) {
        if (ngx_http_voice_el_blank(*text)) {
            blank = 1;
            continue;
        }

        if (blank) {
            words++;
            blank = 0;
        }

        if ((*text & 0xc0) != 0x80) {
            chars++;
        }
    }

    len = last - p;

    text = ngx_alloc(len + 1, tts->log);
    if (text == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(text, p, len);
    text[len] = ' ';

    str = json_stringn((const char *) text, len + 1);
    ngx_free(text);

    if (str == NULL) {
        ngx_log_error(NGX_LOG_WARN, tts->log, 0,
                      "voice tts elevenlabs: a phrase that is not UTF-8");
        return NGX_ERROR;
    }

    obj = json_object();

    if (obj == NULL
        || json_object_set_new(obj, "text", str) != 0
        || json_object_set_new(obj, "flush", json_true()) != 0)
    {
        if (obj) {
            json_decref(obj);

        } else {
            json_decref(str);
        }

        return NGX_ERROR;
    }

    msg = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);

    if (msg == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_voice_el_queue(s, (u_char *) msg, ngx_strlen(msg));
    free(msg);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->chars_sent += chars;
    ctx->words_sent = phrase->words + words;

    if (ctx->nbounds < NGX_HTTP_VOICE_EL_BOUNDS) {
        k = (ctx->bound_first + ctx->nbounds) % NGX_HTTP_VOICE_EL_BOUNDS;
        ctx->bounds[k].chars = ctx->chars_sent;
        ctx->bounds[k].words = ctx->words_sent;
        ctx->nbounds++;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice tts elevenlabs: #%ui phrase %ui, %uz bytes",
                   s->id, phrase->index, len);

    ngx_http_voice_el_pump(s);

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_el_end(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_el_ctx_t     *ctx;
    ngx_http_voice_el_stream_t  *s;

    static u_char  last[] = "{\"text\":\"\"}";

    ctx = tts->ctx;

    if (ctx == NULL || ctx->closed) {
        return NGX_ERROR;
    }

    if (!ctx->active) {
        /* the reply has failed already */
        return NGX_OK;
    }

    ctx->ended = 1;
    s = ctx->reply;

    if (s == NULL || s->ended) {
        /* its failure is on its way */
        return NGX_OK;
    }

    if (ngx_http_voice_el_queue(s, last, sizeof(last) - 1) != NGX_OK) {
        return NGX_ERROR;
    }

    /* nothing may follow the end of input, keep-alives included */
    s->ended = 1;

    if (s->keepalive.timer_set) {
        ngx_del_timer(&s->keepalive);
    }

    ngx_http_voice_el_pump(s);

    /* this stream is spent: the next reply gets a fresh one */
    ngx_http_voice_el_ahead(ctx);

    return NGX_OK;
}


static void
ngx_http_voice_el_pause(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_el_ctx_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL || ctx->closed) {
        return;
    }

    if (ctx->reply && ctx->reply->u) {
        ngx_http_voice_upstream_pause(ctx->reply->u, 1);
    }
}


static void
ngx_http_voice_el_resume(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_el_ctx_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL || ctx->closed) {
        return;
    }

    if (ctx->reply && ctx->reply->u) {
        ngx_http_voice_upstream_pause(ctx->reply->u, 0);
    }
}


static void
ngx_http_voice_el_cancel(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_el_ctx_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL || ctx->closed) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice tts elevenlabs: cancel, stream #%ui",
                   ctx->reply ? ctx->reply->id : 0);

    /* closing the stream is how the provider learns it at once */
    if (ctx->reply) {
        ngx_http_voice_el_drop(ctx->reply);
        ctx->reply = NULL;
    }

    ngx_http_voice_el_forget(ctx);
    ngx_http_voice_el_ahead(ctx);
}


static void
ngx_http_voice_el_close(ngx_http_voice_tts_t *tts)
{
    if (tts->ctx) {
        ngx_http_voice_el_cleanup(tts->ctx);
    }
}


/* from close, or from the pool's cleanup when the session goes first */
static void
ngx_http_voice_el_cleanup(void *data)
{
    ngx_http_voice_el_ctx_t  *ctx = data;

    ngx_uint_t  i;

    if (ctx->closed) {
        return;
    }

    ctx->closed = 1;

    for (i = 0; i < 2; i++) {
        ngx_http_voice_el_drop(&ctx->streams[i]);
    }

    ctx->reply = NULL;
    ctx->spare = NULL;

    if (ctx->retry.timer_set) {
        ngx_del_timer(&ctx->retry);
    }

    if (ctx->report.posted) {
        ngx_delete_posted_event(&ctx->report);
    }

    if (ctx->headers.len) {
        ngx_explicit_memzero(ctx->headers.data, ctx->headers.len);
    }
}


/* ---- replies ------------------------------------------------------------ */


/* a reply's first phrase: it takes the spare stream, or connects one */
static void
ngx_http_voice_el_begin(ngx_http_voice_el_ctx_t *ctx)
{
    ngx_msec_t                   wait;
    ngx_http_voice_el_stream_t  *s;

    if (ctx->reply) {
        /* the glue moved on without a cancel: the old stream goes */
        ngx_http_voice_el_drop(ctx->reply);
        ctx->reply = NULL;
    }

    ngx_http_voice_el_forget(ctx);

    ctx->active = 1;

    if (ctx->spare) {
        ctx->reply = ctx->spare;
        ctx->spare = NULL;
        return;
    }

    /* no spare: a refusal seen ahead is this reply's, without a retry */

    if (ctx->owed) {
        ngx_http_voice_el_post(ctx, ctx->owed);
        ctx->owed = NULL;
        return;
    }

    /* refused again and again: wait the backoff out before asking again */

    if (ctx->refusals >= 3) {
        wait = ngx_http_voice_upstream_backoff(ctx->refusals - 3);

        if (ngx_current_msec - ctx->refused_at < wait) {
            ngx_http_voice_el_post(ctx, ctx->last_error);
            return;
        }
    }

    if (ctx->retry.timer_set) {
        ngx_del_timer(&ctx->retry);
    }

    s = ngx_http_voice_el_connect(ctx);

    if (s == NULL) {
        ngx_http_voice_el_post(ctx, NGX_HTTP_VOICE_EL_ERR_DOWN);
        return;
    }

    ctx->reply = s;
}


/* the reply is over, one way or another: none of it is kept */
static void
ngx_http_voice_el_forget(ngx_http_voice_el_ctx_t *ctx)
{
    if (ctx->report.posted) {
        ngx_delete_posted_event(&ctx->report);
    }

    ctx->active = 0;
    ctx->ended = 0;
    ctx->in_word = 0;
    ctx->bytes = 0;
    ctx->chars_sent = 0;
    ctx->chars_seen = 0;
    ctx->words_sent = 0;
    ctx->words_seen = 0;
    ctx->words_told = 0;
    ctx->word_end = 0;
    ctx->bound_first = 0;
    ctx->nbounds = 0;
}


/* a failure found inside the glue's call is reported from the loop */
static void
ngx_http_voice_el_post(ngx_http_voice_el_ctx_t *ctx, const char *msg)
{
    ctx->report_msg = msg;

    ngx_post_event(&ctx->report, &ngx_posted_events);
}


static void
ngx_http_voice_el_report_handler(ngx_event_t *ev)
{
    ngx_http_voice_el_ctx_t  *ctx = ev->data;

    const char  *msg;

    if (ctx->closed) {
        return;
    }

    msg = ctx->report_msg;

    ngx_http_voice_el_forget(ctx);

    (void) ngx_http_voice_tts_failed(ctx->tts, msg);
}


/* a spare stream for the next reply, unless refusals made us wait */
static void
ngx_http_voice_el_ahead(ngx_http_voice_el_ctx_t *ctx)
{
    if (ctx->closed || ctx->spare || ctx->refusals
        || ctx->retry.timer_set)
    {
        return;
    }

    ctx->spare = ngx_http_voice_el_connect(ctx);

    if (ctx->spare == NULL) {
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts elevenlabs: could not start connecting");
    }
}


static ngx_http_voice_el_stream_t *
ngx_http_voice_el_connect(ngx_http_voice_el_ctx_t *ctx)
{
    ngx_uint_t                   i;
    ngx_http_voice_el_stream_t  *s;

    for (i = 0; i < 2; i++) {
        if (ctx->streams[i].state == NGX_HTTP_VOICE_EL_FREE) {
            break;
        }
    }

    if (i == 2) {
        return NULL;
    }

    s = &ctx->streams[i];

    s->id = ++ctx->connections;
    s->queued = 0;
    s->ended = 0;
    s->audio = 0;
    s->state = NGX_HTTP_VOICE_EL_CONNECTING;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                   "voice tts elevenlabs: connecting #%ui \"%V\"",
                   s->id, &ctx->target);

    s->u = ngx_http_voice_upstream_connect(&ctx->tts->conf->upstream,
                                           &ctx->target,
                                           ctx->headers.len ? &ctx->headers
                                                            : NULL,
                                           &ngx_http_voice_el_handler, s,
                                           ctx->tts->log);
    if (s->u == NULL) {
        s->state = NGX_HTTP_VOICE_EL_FREE;
        return NULL;
    }

    return s;
}


/* closes a stream now; nothing of it is heard again */
static void
ngx_http_voice_el_drop(ngx_http_voice_el_stream_t *s)
{
    if (s->u) {
        ngx_http_voice_upstream_close(s->u, NGX_HTTP_VOICE_WS_NORMAL);
        s->u = NULL;
    }

    s->state = NGX_HTTP_VOICE_EL_FREE;

    if (s->keepalive.timer_set) {
        ngx_del_timer(&s->keepalive);
    }

    if (s->flush.timer_set) {
        ngx_del_timer(&s->flush);
    }

    if (s->queue) {
        ngx_free(s->queue);
        s->queue = NULL;
    }

    s->queued = 0;
    s->size = 0;

    if (s->ctx->spare == s) {
        s->ctx->spare = NULL;
    }
}


/* ---- sending ----------------------------------------------------------- */


static ngx_int_t
ngx_http_voice_el_queue(ngx_http_voice_el_stream_t *s, u_char *msg,
    size_t len)
{
    u_char  *q;
    size_t   size;

    if (s->queued + len + 1 > s->size) {
        size = ngx_max(2 * s->size, s->queued + len + 1);
        size = ngx_max(size, 1024);

        q = ngx_alloc(size, s->ctx->tts->log);
        if (q == NULL) {
            return NGX_ERROR;
        }

        if (s->queue) {
            ngx_memcpy(q, s->queue, s->queued);
            ngx_free(s->queue);
        }

        s->queue = q;
        s->size = size;
    }

    ngx_memcpy(s->queue + s->queued, msg, len);
    s->queue[s->queued + len] = '\n';
    s->queued += len + 1;

    return NGX_OK;
}


/* sends what waits, in order, as far as the upstream takes it */
static void
ngx_http_voice_el_pump(ngx_http_voice_el_stream_t *s)
{
    u_char     *nl;
    size_t      len;
    ngx_int_t   rc;

    if (s->state != NGX_HTTP_VOICE_EL_OPEN) {
        return;
    }

    while (s->queued) {
        nl = ngx_strlchr(s->queue, s->queue + s->queued, '\n');
        len = nl - s->queue;

        rc = ngx_http_voice_upstream_send(s->u, NGX_HTTP_VOICE_WS_TEXT,
                                          s->queue, len);

        if (rc == NGX_DECLINED) {
            if (!s->flush.timer_set) {
                ngx_add_timer(&s->flush, NGX_HTTP_VOICE_EL_FLUSH);
            }

            return;
        }

        if (rc != NGX_OK) {
            /* closed follows from the event loop */
            return;
        }

        s->queued -= len + 1;
        ngx_memmove(s->queue, nl + 1, s->queued);

        if (!s->ended) {
            ngx_add_timer(&s->keepalive, s->ctx->keepalive);
        }
    }
}


/* the stream's opening message: the voice's settings */
static ngx_int_t
ngx_http_voice_el_first(ngx_http_voice_el_stream_t *s)
{
    u_char      *p;
    ngx_uint_t   speed;
    u_char       buf[128];

    speed = s->ctx->tts->conf->speed;

    p = ngx_snprintf(buf, sizeof(buf),
                     "{\"text\":\" \",\"voice_settings\":{"
                     "\"stability\":0.5,\"similarity_boost\":0.75,"
                     "\"speed\":%ui.%02ui}}", speed / 100, speed % 100);

    return ngx_http_voice_upstream_send(s->u, NGX_HTTP_VOICE_WS_TEXT, buf,
                                        p - buf);
}


static ngx_uint_t
ngx_http_voice_el_blank(u_char c)
{
    return c == ' ' || c == '\t' || c == CR || c == LF || c == '\f'
           || c == '\v';
}


/* ---- the upstream's events --------------------------------------------- */


static void
ngx_http_voice_el_on_open(ngx_http_voice_upstream_t *u)
{
    ngx_http_voice_el_stream_t  *s = u->data;

    ngx_http_voice_el_ctx_t  *ctx;

    ctx = s->ctx;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                   "voice tts elevenlabs: #%ui open", s->id);

    s->state = NGX_HTTP_VOICE_EL_OPEN;

    ctx->refusals = 0;
    ctx->owed = NULL;

    if (ngx_http_voice_el_first(s) != NGX_OK) {
        /* closed follows */
        return;
    }

    ngx_add_timer(&s->keepalive, ctx->keepalive);

    ngx_http_voice_el_pump(s);
}


static void
ngx_http_voice_el_on_message(ngx_http_voice_upstream_t *u, ngx_uint_t opcode,
    u_char *data, size_t len)
{
    ngx_http_voice_el_stream_t  *s = u->data;

    json_t                   *msg, *audio, *alignment, *error;
    ngx_int_t                 rc;
    const char               *what, *text;
    json_error_t              err;
    ngx_http_voice_el_ctx_t  *ctx;

    ctx = s->ctx;

    if (s != ctx->reply) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                       "voice tts elevenlabs: #%ui spoke out of turn", s->id);
        return;
    }

    if (opcode != NGX_HTTP_VOICE_WS_TEXT) {
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts elevenlabs: the provider sent a binary "
                      "frame");
        (void) ngx_http_voice_el_fail(ctx, NGX_HTTP_VOICE_EL_ERR_BAD, 1);
        return;
    }

    msg = json_loadb((const char *) data, len, 0, &err);

    if (msg == NULL || !json_is_object(msg)) {
        if (msg) {
            json_decref(msg);
        }

        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts elevenlabs: the provider sent a message "
                      "that is not a JSON object");
        (void) ngx_http_voice_el_fail(ctx, NGX_HTTP_VOICE_EL_ERR_BAD, 1);
        return;
    }

    audio = json_object_get(msg, "audio");
    alignment = json_object_get(msg, "alignment");
    error = json_object_get(msg, "error");

    if (error && !json_is_null(error)) {
        what = json_string_value(error);
        text = json_string_value(json_object_get(msg, "message"));

        /* their words go to the log only */
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts elevenlabs: provider error \"%s\": \"%s\"",
                      what ? what : "", text ? text : "");
        json_decref(msg);
        (void) ngx_http_voice_el_fail(ctx, NGX_HTTP_VOICE_EL_ERR_FAIL, 1);
        return;
    }

    if (json_is_string(audio) && json_string_length(audio)) {
        rc = ngx_http_voice_el_audio(ctx, audio, alignment);

        if (rc == NGX_ERROR) {
            /* the session or the reply is over: nothing of it is ours */
            json_decref(msg);
            return;
        }

        if (ctx->reply != s) {
            /* the chunk was bad: the reply has failed */
            json_decref(msg);
            return;
        }
    }

    if (json_is_true(json_object_get(msg, "isFinal"))) {
        json_decref(msg);

        if (!ctx->ended) {
            ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                          "voice tts elevenlabs: the provider ended the "
                          "stream before its input");
            (void) ngx_http_voice_el_fail(ctx, NGX_HTTP_VOICE_EL_ERR_FAIL,
                                          1);
            return;
        }

        (void) ngx_http_voice_el_finish(ctx);
        return;
    }

    json_decref(msg);
}


/* a chunk of audio, and where its words end */
static ngx_int_t
ngx_http_voice_el_audio(ngx_http_voice_el_ctx_t *ctx, json_t *audio,
    json_t *alignment)
{
    uint64_t    start;
    ngx_int_t   rc;
    ngx_str_t   src, dst;

    src.data = (u_char *) json_string_value(audio);
    src.len = json_string_length(audio);

    /* the glue copies what it takes: the buffer lives for this call */
    dst.data = ngx_alloc(ngx_base64_decoded_length(src.len), ctx->tts->log);
    if (dst.data == NULL) {
        return ngx_http_voice_el_fail(ctx, NGX_HTTP_VOICE_EL_ERR_FAIL, 1);
    }

    if (ngx_decode_base64(&dst, &src) != NGX_OK) {
        ngx_free(dst.data);
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts elevenlabs: audio that is not base64");
        return ngx_http_voice_el_fail(ctx, NGX_HTTP_VOICE_EL_ERR_BAD, 1);
    }

    ctx->reply->audio = 1;

    /* the chunk's alignment counts from its first sample */
    start = ctx->bytes / 2;
    ctx->bytes += dst.len;

    rc = ngx_http_voice_tts_audio(ctx->tts, dst.data, dst.len);

    ngx_free(dst.data);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (alignment && json_is_object(alignment)) {
        return ngx_http_voice_el_align(ctx, alignment, start);
    }

    return NGX_OK;
}


/*
 * Word ends from the characters' times.  A word ends at a blank, and at
 * the end of each phrase, found by counting the non-blank characters
 * sent: the provider may leave the closing space out of its alignment.
 * The count of words is set again at each phrase end from what was sent,
 * so that it follows the glue's count even where they would differ.
 */
static ngx_int_t
ngx_http_voice_el_align(ngx_http_voice_el_ctx_t *ctx, json_t *alignment,
    uint64_t start)
{
    size_t                      i, n;
    double                      ms;
    json_t                     *chars, *starts, *durations, *c;
    uint64_t                    sample;
    ngx_int_t                   rc;
    ngx_uint_t                  words, told, rate;
    const char                 *ch;
    ngx_http_voice_el_bound_t  *b;

    chars = json_object_get(alignment, "chars");
    starts = json_object_get(alignment, "charStartTimesMs");
    durations = json_object_get(alignment, "charDurationsMs");

    if (!json_is_array(chars) || !json_is_array(starts)
        || !json_is_array(durations))
    {
        return NGX_OK;
    }

    n = json_array_size(chars);

    if (json_array_size(starts) < n || json_array_size(durations) < n) {
        return NGX_OK;
    }

    rate = ctx->tts->rate;
    told = ctx->words_told;

    for (i = 0; i < n; i++) {
        c = json_array_get(chars, i);
        ch = json_string_value(c);

        if (ch == NULL) {
            continue;
        }

        if (ch[0] == '\0' || ngx_http_voice_el_blank((u_char) ch[0])) {
            if (ctx->in_word) {
                ctx->in_word = 0;
                ctx->words_seen++;
            }

            continue;
        }

        ms = json_number_value(json_array_get(starts, i))
             + json_number_value(json_array_get(durations, i));

        if (ms < 0) {
            ms = 0;
        }

        /* it may lie ahead of the audio so far: a phrase aligned whole */
        sample = start + (uint64_t) (ms * rate / 1000);

        ctx->in_word = 1;
        ctx->word_end = sample;
        ctx->chars_seen++;

        /* phrase ends reached: the word there is over */

        while (ctx->nbounds) {
            b = &ctx->bounds[ctx->bound_first];

            if (b->chars > ctx->chars_seen) {
                break;
            }

            if (b->chars == ctx->chars_seen) {
                ctx->in_word = 0;
                ctx->words_seen = b->words;
            }

            ctx->bound_first = (ctx->bound_first + 1)
                               % NGX_HTTP_VOICE_EL_BOUNDS;
            ctx->nbounds--;
        }

        if (ctx->in_word) {
            continue;
        }

        words = ngx_min(ctx->words_seen, ctx->words_sent);

        if (words > told) {
            told = words;
            ctx->words_told = words;

            rc = ngx_http_voice_tts_word(ctx->tts, words, ctx->word_end);

            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }
        }
    }

    /* a blank run closed words after the last report */

    words = ngx_min(ctx->words_seen, ctx->words_sent);

    if (words > told) {
        ctx->words_told = words;
        return ngx_http_voice_tts_word(ctx->tts, words, ctx->word_end);
    }

    return NGX_OK;
}


static void
ngx_http_voice_el_on_closed(ngx_http_voice_upstream_t *u,
    ngx_http_voice_upstream_end_t *end)
{
    ngx_http_voice_el_stream_t  *s = u->data;

    const char               *msg;
    ngx_uint_t                auth;
    ngx_http_voice_el_ctx_t  *ctx;

    ctx = s->ctx;
    s->u = NULL;

    auth = (end->status == NGX_HTTP_UNAUTHORIZED
            || end->status == NGX_HTTP_FORBIDDEN);
    msg = auth ? NGX_HTTP_VOICE_EL_ERR_KEY
               : end->opened ? NGX_HTTP_VOICE_EL_ERR_FAIL
                             : NGX_HTTP_VOICE_EL_ERR_DOWN;

    if (s == ctx->reply && end->opened && ctx->ended
        && end->code == NGX_HTTP_VOICE_WS_NORMAL)
    {
        /* a normal end without isFinal: all the audio came */
        ngx_http_voice_el_drop(s);
        (void) ngx_http_voice_el_finish(ctx);
        return;
    }

    if (end->opened) {
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts elevenlabs: stream #%ui lost (code %ui, "
                      "\"%V\")", s->id, end->code, &end->reason);

    } else {
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts elevenlabs: connect #%ui failed (status %ui, "
                      "\"%V\")", s->id, end->status, &end->reason);

        ctx->refusals++;
        ctx->refused_at = ngx_current_msec;
        ctx->last_error = msg;
    }

    if (s == ctx->reply) {
        if (end->opened && !s->audio) {
            /* a stream that takes text and says nothing: no haste */
            ctx->refusals++;
            ctx->refused_at = ngx_current_msec;
            ctx->last_error = msg;
        }

        (void) ngx_http_voice_el_fail(ctx, msg, end->opened);
        return;
    }

    if (s == ctx->spare) {
        ngx_http_voice_el_drop(s);

        if (end->opened) {
            /* reconnected lazily, by the next reply */
            return;
        }

        if (!auth && ctx->refusals < 2) {
            ngx_add_timer(&ctx->retry,
                          ngx_http_voice_upstream_backoff(ctx->refusals - 1));
            return;
        }

        /* the next reply learns it without asking again */
        ctx->owed = msg;
        return;
    }

    ngx_http_voice_el_drop(s);
}


/*
 * The reply's speech failed: its stream is closed and the glue told.
 * ahead: the stream had worked, so a spare may be connected at once.
 */
static ngx_int_t
ngx_http_voice_el_fail(ngx_http_voice_el_ctx_t *ctx, const char *msg,
    ngx_uint_t ahead)
{
    if (ctx->reply) {
        ngx_http_voice_el_drop(ctx->reply);
        ctx->reply = NULL;
    }

    ngx_http_voice_el_forget(ctx);

    if (ahead) {
        ngx_http_voice_el_ahead(ctx);
    }

    return ngx_http_voice_tts_failed(ctx->tts, msg);
}


/* isFinal: all the audio of the reply has come */
static ngx_int_t
ngx_http_voice_el_finish(ngx_http_voice_el_ctx_t *ctx)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                   "voice tts elevenlabs: #%ui final, %uL bytes",
                   ctx->reply ? ctx->reply->id : 0, ctx->bytes);

    if (ctx->reply) {
        ngx_http_voice_el_drop(ctx->reply);
        ctx->reply = NULL;
    }

    ngx_http_voice_el_forget(ctx);
    ngx_http_voice_el_ahead(ctx);

    return ngx_http_voice_tts_done(ctx->tts);
}


/* ---- timers ------------------------------------------------------------ */


static void
ngx_http_voice_el_keepalive_handler(ngx_event_t *ev)
{
    ngx_http_voice_el_stream_t  *s = ev->data;

    static u_char  blank[] = "{\"text\":\" \"}";

    if (s->state != NGX_HTTP_VOICE_EL_OPEN || s->ended) {
        return;
    }

    if (s->queued == 0) {
        if (ngx_http_voice_el_queue(s, blank, sizeof(blank) - 1) != NGX_OK) {
            return;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "voice tts elevenlabs: #%ui keep-alive", s->id);
    }

    ngx_http_voice_el_pump(s);

    if (!s->keepalive.timer_set) {
        ngx_add_timer(&s->keepalive, s->ctx->keepalive);
    }
}


static void
ngx_http_voice_el_flush_handler(ngx_event_t *ev)
{
    ngx_http_voice_el_stream_t  *s = ev->data;

    ngx_http_voice_el_pump(s);
}


static void
ngx_http_voice_el_retry_handler(ngx_event_t *ev)
{
    ngx_http_voice_el_ctx_t  *ctx = ev->data;

    if (ctx->closed || ctx->spare || ctx->active) {
        return;
    }

    ctx->spare = ngx_http_voice_el_connect(ctx);

    if (ctx->spare == NULL) {
        ctx->owed = NGX_HTTP_VOICE_EL_ERR_DOWN;
    }
}
