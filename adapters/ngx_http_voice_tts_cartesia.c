
/*
 * Cartesia's streaming text-to-speech WebSocket.
 *
 * One socket per session, opened when the session starts so that the
 * first reply does not wait for a handshake.  Each reply is one Cartesia
 * context: its phrases go out as requests with "continue": true, the end
 * of the reply is an empty transcript with "continue": false, and the
 * provider answers with base64 PCM chunks, word timestamps and "done",
 * all labelled with the context.  A reply that is dropped gets a cancel
 * request, and whatever still comes for its context is ignored.
 *
 * A socket that breaks fails the reply under way (if any); the next reply
 * connects again, no sooner than the backoff allows.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_voice_tts.h"
#include "ngx_http_voice_ws.h"


#define NGX_HTTP_VOICE_CARTESIA_URL      "wss://api.cartesia.ai/tts/websocket"
#define NGX_HTTP_VOICE_CARTESIA_MODEL    "sonic-2"
#define NGX_HTTP_VOICE_CARTESIA_RATE     16000
#define NGX_HTTP_VOICE_CARTESIA_SEND     (64 * 1024)
#define NGX_HTTP_VOICE_CARTESIA_MESSAGE  (1024 * 1024)
#define NGX_HTTP_VOICE_CARTESIA_FLUSH    20
#define NGX_HTTP_VOICE_CARTESIA_ID_LEN   64


/* the states of a session's socket */
#define NGX_HTTP_VOICE_CARTESIA_IDLE        0  /* none: connect when needed */
#define NGX_HTTP_VOICE_CARTESIA_CONNECTING  1
#define NGX_HTTP_VOICE_CARTESIA_OPEN        2
#define NGX_HTTP_VOICE_CARTESIA_CLOSED      3  /* the session is over */


/* a request waiting for the socket */
typedef struct {
    ngx_queue_t                    queue;
    size_t                         len;
    u_char                        *data;
} ngx_http_voice_cartesia_msg_t;


typedef struct {
    ngx_http_voice_tts_t          *tts;
    ngx_http_voice_upstream_t     *u;
    ngx_str_t                      headers;    /* key and version */
    ngx_uint_t                     state;

    ngx_queue_t                    out;        /* requests not yet sent */

    u_char                        *pcm;        /* a decoded chunk */
    size_t                         pcm_size;

    ngx_event_t                    retry;      /* connect again */
    ngx_event_t                    flush;      /* sends backed up */
    ngx_event_t                    notify;     /* a report from the loop */

    ngx_uint_t                     attempt;    /* connects failed in a row */
    ngx_msec_t                     next_connect;  /* not before */
    ngx_msec_t                     last_rx;    /* the provider's last word */
    ngx_msec_t                     began;      /* the context's first send */

    /* the reply under way: one context */
    ngx_uint_t                     replies;    /* contexts so far */
    ngx_uint_t                     turn;
    u_char                         context[NGX_HTTP_VOICE_CARTESIA_ID_LEN];
    size_t                         context_len;
    ngx_uint_t                     words;      /* word ends reported */

    /* what the notify event reports, for reply notify_reply */
    ngx_uint_t                     notify_reply;
    const char                    *notify_failure;  /* NULL: done */

    unsigned                       active:1;   /* the context goes on */
    unsigned                       ended:1;    /* its end is asked */
    unsigned                       early_done:1;  /* done before the end */
    unsigned                       refused:1;  /* the key was refused */
    unsigned                       paused:1;
} ngx_http_voice_cartesia_ctx_t;


static char *ngx_http_voice_cartesia_init_conf(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf);
static ngx_int_t ngx_http_voice_cartesia_open(ngx_http_voice_tts_t *tts);
static ngx_int_t ngx_http_voice_cartesia_speak(ngx_http_voice_tts_t *tts,
    ngx_http_voice_tts_phrase_t *phrase);
static ngx_int_t ngx_http_voice_cartesia_end(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_cartesia_pause(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_cartesia_resume(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_cartesia_cancel(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_cartesia_close(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_cartesia_cleanup(void *data);
static void ngx_http_voice_cartesia_teardown(
    ngx_http_voice_cartesia_ctx_t *ctx);

static ngx_uint_t ngx_http_voice_cartesia_rate(ngx_uint_t want);
static ngx_int_t ngx_http_voice_cartesia_headers(ngx_http_voice_tts_t *tts,
    ngx_http_voice_cartesia_ctx_t *ctx);
static json_t *ngx_http_voice_cartesia_request(
    ngx_http_voice_cartesia_ctx_t *ctx, u_char *text, size_t len,
    ngx_uint_t more);
static ngx_int_t ngx_http_voice_cartesia_queue(
    ngx_http_voice_cartesia_ctx_t *ctx, json_t *msg);
static void ngx_http_voice_cartesia_drop_queue(
    ngx_http_voice_cartesia_ctx_t *ctx);
static void ngx_http_voice_cartesia_pump(ngx_http_voice_cartesia_ctx_t *ctx);
static void ngx_http_voice_cartesia_need(ngx_http_voice_cartesia_ctx_t *ctx);
static void ngx_http_voice_cartesia_connect(
    ngx_http_voice_cartesia_ctx_t *ctx);
static void ngx_http_voice_cartesia_later(ngx_http_voice_cartesia_ctx_t *ctx,
    const char *failure);
static void ngx_http_voice_cartesia_connect_failed(
    ngx_http_voice_cartesia_ctx_t *ctx, ngx_uint_t status);

static void ngx_http_voice_cartesia_on_open(ngx_http_voice_upstream_t *u);
static void ngx_http_voice_cartesia_on_message(ngx_http_voice_upstream_t *u,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_voice_cartesia_on_closed(ngx_http_voice_upstream_t *u,
    ngx_http_voice_upstream_end_t *end);
static void ngx_http_voice_cartesia_chunk(ngx_http_voice_cartesia_ctx_t *ctx,
    json_t *msg);
static void ngx_http_voice_cartesia_timestamps(
    ngx_http_voice_cartesia_ctx_t *ctx, json_t *msg);
static void ngx_http_voice_cartesia_error(ngx_http_voice_cartesia_ctx_t *ctx,
    json_t *msg);
static ngx_int_t ngx_http_voice_cartesia_fail(
    ngx_http_voice_cartesia_ctx_t *ctx, const char *message);

static void ngx_http_voice_cartesia_retry_handler(ngx_event_t *ev);
static void ngx_http_voice_cartesia_flush_handler(ngx_event_t *ev);
static void ngx_http_voice_cartesia_notify_handler(ngx_event_t *ev);


const ngx_http_voice_tts_engine_t  ngx_http_voice_tts_cartesia = {
    "cartesia",
    ngx_http_voice_cartesia_init_conf,
    ngx_http_voice_cartesia_open,
    ngx_http_voice_cartesia_speak,
    ngx_http_voice_cartesia_end,
    ngx_http_voice_cartesia_pause,
    ngx_http_voice_cartesia_resume,
    ngx_http_voice_cartesia_cancel,
    ngx_http_voice_cartesia_close
};


static ngx_http_voice_upstream_handler_t  ngx_http_voice_cartesia_handler = {
    ngx_http_voice_cartesia_on_open,
    ngx_http_voice_cartesia_on_message,
    ngx_http_voice_cartesia_on_closed
};


/* the raw PCM rates Cartesia offers */
static ngx_uint_t  ngx_http_voice_cartesia_rates[] = {
    8000, 16000, 22050, 24000, 44100, 0
};


/* ---- configuration ------------------------------------------------------ */


/* a header value: printable, no line breaks */
static ngx_uint_t
ngx_http_voice_cartesia_header_safe(ngx_str_t *v)
{
    size_t  i;

    for (i = 0; i < v->len; i++) {
        if (v->data[i] < 0x20 || v->data[i] == 0x7f) {
            return 0;
        }
    }

    return 1;
}


static char *
ngx_http_voice_cartesia_init_conf(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf)
{
    if (conf->url.len == 0) {
        ngx_str_set(&conf->url, NGX_HTTP_VOICE_CARTESIA_URL);
    }

    if (conf->model.len == 0) {
        ngx_str_set(&conf->model, NGX_HTTP_VOICE_CARTESIA_MODEL);
    }

    if (conf->voice.len == 0) {
        return "needs voice_tts_voice";
    }

    if (conf->version.len == 0
        || !ngx_http_voice_cartesia_header_safe(&conf->version))
    {
        return "needs a valid voice_tts_version";
    }

    if (!ngx_http_voice_cartesia_header_safe(&conf->key)) {
        return "cannot send a key with control characters";
    }

    return ngx_http_voice_tts_upstream(cf, conf, NGX_HTTP_VOICE_CARTESIA_SEND,
                                       NGX_HTTP_VOICE_CARTESIA_MESSAGE);
}


/* ---- the session -------------------------------------------------------- */


static ngx_int_t
ngx_http_voice_cartesia_open(ngx_http_voice_tts_t *tts)
{
    ngx_pool_cleanup_t             *cln;
    ngx_http_voice_cartesia_ctx_t  *ctx;

    ctx = ngx_pcalloc(tts->pool, sizeof(ngx_http_voice_cartesia_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->tts = tts;
    ngx_queue_init(&ctx->out);

    if (ngx_http_voice_cartesia_headers(tts, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(tts->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    /* the queue and the PCM buffer are outside the pool */
    cln->handler = ngx_http_voice_cartesia_cleanup;
    cln->data = ctx;

    ctx->retry.handler = ngx_http_voice_cartesia_retry_handler;
    ctx->flush.handler = ngx_http_voice_cartesia_flush_handler;
    ctx->notify.handler = ngx_http_voice_cartesia_notify_handler;

    ctx->retry.data = ctx;
    ctx->flush.data = ctx;
    ctx->notify.data = ctx;

    ctx->retry.log = tts->log;
    ctx->flush.log = tts->log;
    ctx->notify.log = tts->log;

    ctx->retry.cancelable = 1;
    ctx->flush.cancelable = 1;
    ctx->notify.cancelable = 1;

    ctx->next_connect = ngx_current_msec;

    tts->rate = ngx_http_voice_cartesia_rate(tts->out_rate);
    tts->ctx = ctx;

    /* ahead of the first reply */
    ngx_http_voice_cartesia_connect(ctx);

    return NGX_OK;
}


static ngx_uint_t
ngx_http_voice_cartesia_rate(ngx_uint_t want)
{
    ngx_uint_t  *r;

    for (r = ngx_http_voice_cartesia_rates; *r; r++) {
        if (*r == want) {
            return want;
        }
    }

    return NGX_HTTP_VOICE_CARTESIA_RATE;
}


/* the key the way the location asks, and the API version */
static ngx_int_t
ngx_http_voice_cartesia_headers(ngx_http_voice_tts_t *tts,
    ngx_http_voice_cartesia_ctx_t *ctx)
{
    size_t                      len;
    u_char                     *p;
    ngx_http_voice_tts_conf_t  *conf;

    conf = tts->conf;

    len = sizeof("Cartesia-Version: " CRLF) - 1 + conf->version.len;

    if (conf->key.len) {
        len += (conf->auth == NGX_HTTP_VOICE_TTS_AUTH_HEADER)
               ? sizeof("X-API-Key: " CRLF) - 1
               : sizeof("Authorization: Bearer " CRLF) - 1;
        len += conf->key.len;
    }

    p = ngx_pnalloc(tts->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->headers.data = p;

    if (conf->key.len) {
        if (conf->auth == NGX_HTTP_VOICE_TTS_AUTH_HEADER) {
            p = ngx_cpymem(p, "X-API-Key: ", sizeof("X-API-Key: ") - 1);

        } else {
            p = ngx_cpymem(p, "Authorization: Bearer ",
                           sizeof("Authorization: Bearer ") - 1);
        }

        p = ngx_cpymem(p, conf->key.data, conf->key.len);
        *p++ = CR; *p++ = LF;
    }

    p = ngx_cpymem(p, "Cartesia-Version: ", sizeof("Cartesia-Version: ") - 1);
    p = ngx_cpymem(p, conf->version.data, conf->version.len);
    *p++ = CR; *p++ = LF;

    ctx->headers.len = p - ctx->headers.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_cartesia_speak(ngx_http_voice_tts_t *tts,
    ngx_http_voice_tts_phrase_t *phrase)
{
    json_t                         *msg;
    ngx_http_voice_cartesia_ctx_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL || ctx->state == NGX_HTTP_VOICE_CARTESIA_CLOSED) {
        return NGX_ERROR;
    }

    if (phrase->index == 0 || ctx->turn != tts->turn) {

        /* a new reply: a new context */

        if (ctx->active) {
            ngx_http_voice_cartesia_cancel(tts);
        }

        ctx->replies++;
        ctx->turn = tts->turn;
        ctx->context_len = ngx_snprintf(ctx->context,
                                        NGX_HTTP_VOICE_CARTESIA_ID_LEN,
                                        "turn%ui-%ui", tts->turn,
                                        ctx->replies)
                           - ctx->context;
        ctx->words = 0;
        ctx->ended = 0;
        ctx->early_done = 0;
        ctx->active = 1;
        ctx->began = ngx_current_msec;

        if (ctx->refused) {
            /* the key was refused a moment ago: no handshake to repeat */
            ctx->refused = 0;
            ngx_http_voice_cartesia_later(ctx, "the speech provider "
                                               "refused the key");
            return NGX_OK;
        }

    } else if (!ctx->active) {
        /* the reply was dropped: its phrases go nowhere */
        return NGX_OK;
    }

    msg = ngx_http_voice_cartesia_request(ctx, phrase->text.data,
                                          phrase->text.len, 1);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice tts cartesia: context %*s phrase %ui \"%V\"",
                   ctx->context_len, ctx->context, phrase->index,
                   &phrase->text);

    return ngx_http_voice_cartesia_queue(ctx, msg);
}


static ngx_int_t
ngx_http_voice_cartesia_end(ngx_http_voice_tts_t *tts)
{
    json_t                         *msg;
    ngx_http_voice_cartesia_ctx_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL || ctx->state == NGX_HTTP_VOICE_CARTESIA_CLOSED) {
        return NGX_ERROR;
    }

    if (!ctx->active || ctx->turn != tts->turn || ctx->ended) {
        return NGX_OK;
    }

    ctx->ended = 1;

    if (ctx->early_done) {
        /* the provider had finished already: report it from the loop */
        ctx->active = 0;
        ctx->notify_reply = ctx->replies;
        ctx->notify_failure = NULL;
        ngx_post_event(&ctx->notify, &ngx_posted_events);
        return NGX_OK;
    }

    msg = ngx_http_voice_cartesia_request(ctx, (u_char *) "", 0, 0);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_voice_cartesia_queue(ctx, msg);
}


static void
ngx_http_voice_cartesia_pause(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_cartesia_ctx_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL) {
        return;
    }

    ctx->paused = 1;

    if (ctx->u) {
        ngx_http_voice_upstream_pause(ctx->u, 1);
    }
}


static void
ngx_http_voice_cartesia_resume(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_cartesia_ctx_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL) {
        return;
    }

    ctx->paused = 0;

    if (ctx->u) {
        ngx_http_voice_upstream_pause(ctx->u, 0);
    }
}


static void
ngx_http_voice_cartesia_cancel(ngx_http_voice_tts_t *tts)
{
    u_char                          buf[NGX_HTTP_VOICE_CARTESIA_ID_LEN + 64];
    u_char                         *p;
    ngx_msec_t                      since, quiet;
    ngx_int_t                       rc;
    ngx_http_voice_cartesia_ctx_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL || ctx->state == NGX_HTTP_VOICE_CARTESIA_CLOSED) {
        return;
    }

    if (ctx->notify.posted) {
        ngx_delete_posted_event(&ctx->notify);
    }

    if (!ctx->active) {
        return;
    }

    ctx->active = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice tts cartesia: cancel context %*s",
                   ctx->context_len, ctx->context);

    /* its requests not yet sent are never sent */
    ngx_http_voice_cartesia_drop_queue(ctx);

    if (ctx->state != NGX_HTTP_VOICE_CARTESIA_OPEN) {
        /* nothing of it reached the provider */
        return;
    }

    /*
     * A provider that has said nothing for a good while since the reply
     * began is likely stuck: the next reply gets a fresh socket.
     */

    since = ngx_max(ctx->last_rx, ctx->began);
    quiet = ngx_current_msec - since;

    if (quiet >= tts->conf->timeout / 2) {
        ngx_log_error(NGX_LOG_WARN, tts->log, 0,
                      "voice tts cartesia: nothing from the provider for "
                      "%M ms, closing the stream", quiet);

        ngx_http_voice_upstream_close(ctx->u, NGX_HTTP_VOICE_WS_GOING_AWAY);
        ctx->u = NULL;
        ctx->state = NGX_HTTP_VOICE_CARTESIA_IDLE;

        if (ctx->flush.timer_set) {
            ngx_del_timer(&ctx->flush);
        }

        return;
    }

    p = ngx_snprintf(buf, sizeof(buf), "{\"context_id\":\"%*s\","
                     "\"cancel\":true}", ctx->context_len, ctx->context);

    rc = ngx_http_voice_upstream_send(ctx->u, NGX_HTTP_VOICE_WS_TEXT, buf,
                                      p - buf);

    if (rc == NGX_DECLINED) {
        /* the provider does not read: it will not be missed */
        ngx_log_error(NGX_LOG_WARN, tts->log, 0,
                      "voice tts cartesia: no room for a cancel, "
                      "closing the stream");

        ngx_http_voice_upstream_close(ctx->u, NGX_HTTP_VOICE_WS_GOING_AWAY);
        ctx->u = NULL;
        ctx->state = NGX_HTTP_VOICE_CARTESIA_IDLE;
    }
}


static void
ngx_http_voice_cartesia_close(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_cartesia_ctx_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL) {
        return;
    }

    ngx_http_voice_cartesia_teardown(ctx);
}


static void
ngx_http_voice_cartesia_cleanup(void *data)
{
    ngx_http_voice_cartesia_ctx_t  *ctx = data;

    ngx_http_voice_cartesia_teardown(ctx);
}


/* from close, or from the pool's cleanup when the session goes first */
static void
ngx_http_voice_cartesia_teardown(ngx_http_voice_cartesia_ctx_t *ctx)
{
    if (ctx->state == NGX_HTTP_VOICE_CARTESIA_CLOSED) {
        return;
    }

    ctx->state = NGX_HTTP_VOICE_CARTESIA_CLOSED;
    ctx->active = 0;

    if (ctx->u) {
        ngx_http_voice_upstream_close(ctx->u, NGX_HTTP_VOICE_WS_NORMAL);
        ctx->u = NULL;
    }

    if (ctx->retry.timer_set) {
        ngx_del_timer(&ctx->retry);
    }

    if (ctx->flush.timer_set) {
        ngx_del_timer(&ctx->flush);
    }

    if (ctx->notify.posted) {
        ngx_delete_posted_event(&ctx->notify);
    }

    ngx_http_voice_cartesia_drop_queue(ctx);

    if (ctx->pcm) {
        ngx_free(ctx->pcm);
        ctx->pcm = NULL;
    }
}


/* ---- requests ----------------------------------------------------------- */


/*
 * One request of the current context.  The end of a context repeats the
 * context's settings: they must not change within it.
 */
static json_t *
ngx_http_voice_cartesia_request(ngx_http_voice_cartesia_ctx_t *ctx,
    u_char *text, size_t len, ngx_uint_t more)
{
    u_char                     *p;
    json_t                     *msg, *transcript, *gen;
    ngx_http_voice_tts_t       *tts;
    ngx_http_voice_tts_conf_t  *conf;

    tts = ctx->tts;
    conf = tts->conf;

    /*
     * The provider joins a context's transcripts as they come: a phrase
     * that does not end in white space would run into the next one.
     */

    if (more && len && text[len - 1] != ' ' && text[len - 1] != '\n') {
        p = ngx_alloc(len + 1, tts->log);
        if (p == NULL) {
            return NULL;
        }

        ngx_memcpy(p, text, len);
        p[len] = ' ';

        transcript = json_stringn((const char *) p, len + 1);
        ngx_free(p);

    } else {
        transcript = json_stringn((const char *) text, len);
    }

    if (transcript == NULL) {
        ngx_log_error(NGX_LOG_WARN, tts->log, 0,
                      "voice tts cartesia: a phrase that is not UTF-8");
        return NULL;
    }

    msg = json_pack("{s:s%, s:o, s:{s:s, s:s%}, s:{s:s, s:s, s:I},"
                    " s:s%, s:b, s:b, s:s%, s:i}",
                    "model_id", conf->model.data, conf->model.len,
                    "transcript", transcript,
                    "voice", "mode", "id",
                             "id", conf->voice.data, conf->voice.len,
                    "output_format", "container", "raw",
                                     "encoding", "pcm_s16le",
                                     "sample_rate", (json_int_t) tts->rate,
                    "context_id", (const char *) ctx->context,
                                  ctx->context_len,
                    "continue", (int) more,
                    "add_timestamps", 1,
                    "language", conf->language.data, conf->language.len,
                    "max_buffer_delay_ms", 0);

    if (msg == NULL) {
        return NULL;
    }

    if (conf->speed != 100) {
        gen = json_pack("{s:f}", "speed", conf->speed / 100.0);

        if (gen == NULL || json_object_set_new(msg, "generation_config", gen)
                           != 0)
        {
            json_decref(msg);
            return NULL;
        }
    }

    return msg;
}


/* takes msg; sends it now when the socket is open, else on opening */
static ngx_int_t
ngx_http_voice_cartesia_queue(ngx_http_voice_cartesia_ctx_t *ctx,
    json_t *msg)
{
    char                           *text;
    size_t                          len;
    ngx_http_voice_cartesia_msg_t  *m;

    text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);

    if (text == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(text);

    m = ngx_alloc(sizeof(ngx_http_voice_cartesia_msg_t) + len, ctx->tts->log);
    if (m == NULL) {
        free(text);
        return NGX_ERROR;
    }

    m->data = (u_char *) (m + 1);
    m->len = len;
    ngx_memcpy(m->data, text, len);
    free(text);

    ngx_queue_insert_tail(&ctx->out, &m->queue);

    if (ctx->state == NGX_HTTP_VOICE_CARTESIA_OPEN) {
        ngx_http_voice_cartesia_pump(ctx);

    } else {
        ngx_http_voice_cartesia_need(ctx);
    }

    return NGX_OK;
}


static void
ngx_http_voice_cartesia_drop_queue(ngx_http_voice_cartesia_ctx_t *ctx)
{
    ngx_queue_t                    *q;
    ngx_http_voice_cartesia_msg_t  *m;

    while (!ngx_queue_empty(&ctx->out)) {
        q = ngx_queue_head(&ctx->out);
        ngx_queue_remove(q);
        m = ngx_queue_data(q, ngx_http_voice_cartesia_msg_t, queue);
        ngx_free(m);
    }

    if (ctx->flush.timer_set) {
        ngx_del_timer(&ctx->flush);
    }
}


static void
ngx_http_voice_cartesia_pump(ngx_http_voice_cartesia_ctx_t *ctx)
{
    ngx_int_t                       rc;
    ngx_queue_t                    *q;
    ngx_http_voice_cartesia_msg_t  *m;

    while (ctx->state == NGX_HTTP_VOICE_CARTESIA_OPEN
           && !ngx_queue_empty(&ctx->out))
    {
        q = ngx_queue_head(&ctx->out);
        m = ngx_queue_data(q, ngx_http_voice_cartesia_msg_t, queue);

        rc = ngx_http_voice_upstream_send(ctx->u, NGX_HTTP_VOICE_WS_TEXT,
                                          m->data, m->len);

        if (rc == NGX_DECLINED) {
            if (!ctx->flush.timer_set) {
                ngx_add_timer(&ctx->flush, NGX_HTTP_VOICE_CARTESIA_FLUSH);
            }

            return;
        }

        if (rc != NGX_OK) {
            /* closed follows from the event loop */
            return;
        }

        ngx_queue_remove(q);
        ngx_free(m);
    }
}


/* ---- the socket --------------------------------------------------------- */


/* a request waits: connect, now or once the backoff allows */
static void
ngx_http_voice_cartesia_need(ngx_http_voice_cartesia_ctx_t *ctx)
{
    ngx_msec_int_t  wait;

    if (ctx->state != NGX_HTTP_VOICE_CARTESIA_IDLE || ctx->retry.timer_set) {
        return;
    }

    wait = (ngx_msec_int_t) (ctx->next_connect - ngx_current_msec);

    if (wait > 0) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                       "voice tts cartesia: connecting in %M ms",
                       (ngx_msec_t) wait);

        ngx_add_timer(&ctx->retry, (ngx_msec_t) wait);
        return;
    }

    ngx_http_voice_cartesia_connect(ctx);
}


static void
ngx_http_voice_cartesia_connect(ngx_http_voice_cartesia_ctx_t *ctx)
{
    ngx_http_voice_tts_conf_t  *conf;

    conf = ctx->tts->conf;

    ctx->state = NGX_HTTP_VOICE_CARTESIA_CONNECTING;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                   "voice tts cartesia: connecting");

    ctx->u = ngx_http_voice_upstream_connect(&conf->upstream, NULL,
                                             &ctx->headers,
                                             &ngx_http_voice_cartesia_handler,
                                             ctx, ctx->tts->log);
    if (ctx->u == NULL) {
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts cartesia: could not start connecting");

        ngx_http_voice_cartesia_connect_failed(ctx, 0);

        if (ctx->active) {
            ctx->active = 0;
            ngx_http_voice_cartesia_drop_queue(ctx);
            ngx_http_voice_cartesia_later(ctx, "the speech provider is "
                                               "unreachable");
        }

        return;
    }

    if (ctx->paused) {
        ngx_http_voice_upstream_pause(ctx->u, 1);
    }
}


/* a failure of the current reply, reported from the event loop */
static void
ngx_http_voice_cartesia_later(ngx_http_voice_cartesia_ctx_t *ctx,
    const char *failure)
{
    ctx->active = 0;
    ctx->notify_reply = ctx->replies;
    ctx->notify_failure = failure;

    ngx_post_event(&ctx->notify, &ngx_posted_events);
}


static void
ngx_http_voice_cartesia_connect_failed(ngx_http_voice_cartesia_ctx_t *ctx,
    ngx_uint_t status)
{
    ctx->u = NULL;
    ctx->state = NGX_HTTP_VOICE_CARTESIA_IDLE;

    ctx->attempt++;
    ctx->next_connect = ngx_current_msec
                        + ngx_http_voice_upstream_backoff(ctx->attempt - 1);

    if (status == NGX_HTTP_UNAUTHORIZED || status == NGX_HTTP_FORBIDDEN) {
        ctx->refused = 1;
    }
}


static void
ngx_http_voice_cartesia_on_open(ngx_http_voice_upstream_t *u)
{
    ngx_http_voice_cartesia_ctx_t  *ctx = u->data;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                   "voice tts cartesia: open");

    ctx->state = NGX_HTTP_VOICE_CARTESIA_OPEN;
    ctx->attempt = 0;
    ctx->refused = 0;
    ctx->last_rx = ngx_current_msec;

    ngx_http_voice_cartesia_pump(ctx);
}


static void
ngx_http_voice_cartesia_on_closed(ngx_http_voice_upstream_t *u,
    ngx_http_voice_upstream_end_t *end)
{
    ngx_uint_t                      level;
    const char                     *failure;
    ngx_http_voice_cartesia_ctx_t  *ctx = u->data;

    if (ctx->flush.timer_set) {
        ngx_del_timer(&ctx->flush);
    }

    if (end->opened) {
        level = ctx->active ? NGX_LOG_WARN : NGX_LOG_INFO;

        ngx_log_error(level, ctx->tts->log, 0,
                      "voice tts cartesia: stream lost (code %ui, \"%V\")",
                      end->code, &end->reason);

        /* the next reply connects at once */
        ctx->u = NULL;
        ctx->state = NGX_HTTP_VOICE_CARTESIA_IDLE;
        ctx->next_connect = ngx_current_msec;

        failure = "the speech provider closed the stream";

    } else {
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts cartesia: connect failed (status %ui, "
                      "\"%V\")", end->status, &end->reason);

        ngx_http_voice_cartesia_connect_failed(ctx, end->status);

        if (end->status == NGX_HTTP_UNAUTHORIZED
            || end->status == NGX_HTTP_FORBIDDEN)
        {
            failure = "the speech provider refused the key";

        } else if (end->status) {
            failure = "the speech provider refused the connection";

        } else {
            failure = "the speech provider is unreachable";
        }
    }

    if (!ctx->active) {
        /* between replies: the next one connects again */
        ngx_http_voice_cartesia_drop_queue(ctx);
        return;
    }

    /* the refusal is told now: the next reply tries again */
    ctx->refused = 0;

    (void) ngx_http_voice_cartesia_fail(ctx, failure);
}


/* drops the reply and tells the glue; NGX_ERROR: touch nothing after */
static ngx_int_t
ngx_http_voice_cartesia_fail(ngx_http_voice_cartesia_ctx_t *ctx,
    const char *message)
{
    ctx->active = 0;

    ngx_http_voice_cartesia_drop_queue(ctx);

    return ngx_http_voice_tts_failed(ctx->tts, message);
}


static void
ngx_http_voice_cartesia_on_message(ngx_http_voice_upstream_t *u,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    json_t                         *msg;
    const char                     *type, *cid;
    json_error_t                    err;
    ngx_http_voice_cartesia_ctx_t  *ctx = u->data;

    if (ctx->state != NGX_HTTP_VOICE_CARTESIA_OPEN) {
        return;
    }

    ctx->last_rx = ngx_current_msec;

    if (opcode != NGX_HTTP_VOICE_WS_TEXT) {
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts cartesia: the provider sent a binary frame");
        return;
    }

    msg = json_loadb((const char *) data, len, 0, &err);

    if (msg == NULL || !json_is_object(msg)) {
        if (msg) {
            json_decref(msg);
        }

        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts cartesia: the provider sent a message "
                      "that is not a JSON object");

        if (ctx->active) {
            (void) ngx_http_voice_cartesia_fail(ctx,
                                        "the speech provider sent a "
                                        "malformed message");
        }

        return;
    }

    type = json_string_value(json_object_get(msg, "type"));
    cid = json_string_value(json_object_get(msg, "context_id"));

    if (type == NULL) {
        type = "";
    }

    /* only the reply under way counts: a cancelled one may still talk */

    if (!ctx->active
        || (cid != NULL
            && (ngx_strlen(cid) != ctx->context_len
                || ngx_strncmp(cid, ctx->context, ctx->context_len) != 0))
        || (cid == NULL && ngx_strcmp(type, "error") != 0))
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                       "voice tts cartesia: ignored \"%s\" of context %s",
                       type, cid ? cid : "(none)");

        if (ngx_strcmp(type, "error") == 0) {
            ngx_log_error(NGX_LOG_INFO, ctx->tts->log, 0,
                          "voice tts cartesia: provider error for an "
                          "earlier context: %s",
                          json_string_value(json_object_get(msg, "message")));
        }

        json_decref(msg);
        return;
    }

    if (ngx_strcmp(type, "chunk") == 0) {
        ngx_http_voice_cartesia_chunk(ctx, msg);
        return;
    }

    if (ngx_strcmp(type, "timestamps") == 0) {
        ngx_http_voice_cartesia_timestamps(ctx, msg);
        return;
    }

    if (ngx_strcmp(type, "error") == 0) {
        ngx_http_voice_cartesia_error(ctx, msg);
        return;
    }

    if (ngx_strcmp(type, "done") == 0) {
        json_decref(msg);

        if (!ctx->ended) {
            /* cannot be before the end was asked; kept for end() */
            ctx->early_done = 1;
            return;
        }

        ctx->active = 0;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                       "voice tts cartesia: context %*s done",
                       ctx->context_len, ctx->context);

        (void) ngx_http_voice_tts_done(ctx->tts);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                   "voice tts cartesia: ignored a \"%s\" message", type);

    json_decref(msg);
}


static void
ngx_http_voice_cartesia_chunk(ngx_http_voice_cartesia_ctx_t *ctx,
    json_t *msg)
{
    size_t      need;
    u_char     *p;
    json_t     *data;
    ngx_str_t   src, dst;

    data = json_object_get(msg, "data");

    if (!json_is_string(data)) {
        json_decref(msg);

        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts cartesia: a chunk without data");

        (void) ngx_http_voice_cartesia_fail(ctx, "the speech provider sent "
                                                 "a malformed message");
        return;
    }

    src.data = (u_char *) json_string_value(data);
    src.len = json_string_length(data);

    need = ngx_base64_decoded_length(src.len);

    if (need > ctx->pcm_size) {
        p = ngx_alloc(need, ctx->tts->log);
        if (p == NULL) {
            json_decref(msg);
            (void) ngx_http_voice_cartesia_fail(ctx, "the speech provider "
                                                     "failed");
            return;
        }

        if (ctx->pcm) {
            ngx_free(ctx->pcm);
        }

        ctx->pcm = p;
        ctx->pcm_size = need;
    }

    dst.data = ctx->pcm;

    if (ngx_decode_base64(&dst, &src) != NGX_OK) {
        json_decref(msg);

        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice tts cartesia: a chunk that is not base64");

        (void) ngx_http_voice_cartesia_fail(ctx, "the speech provider sent "
                                                 "a malformed message");
        return;
    }

    json_decref(msg);

    if (dst.len == 0) {
        return;
    }

    /* NGX_AGAIN: taken, and pause has been called */
    (void) ngx_http_voice_tts_audio(ctx->tts, dst.data, dst.len);
}


/* word ends, in seconds from the context's first audio */
static void
ngx_http_voice_cartesia_timestamps(ngx_http_voice_cartesia_ctx_t *ctx,
    json_t *msg)
{
    size_t                 i, n;
    double                 end;
    json_t                *ends;
    uint64_t               sample;
    ngx_http_voice_tts_t  *tts;

    tts = ctx->tts;

    ends = json_object_get(json_object_get(msg, "word_timestamps"), "end");
    n = json_array_size(ends);

    for (i = 0; i < n; i++) {
        end = json_number_value(json_array_get(ends, i));

        if (end < 0) {
            end = 0;
        }

        /* never more words than the reply was given */
        if (ctx->words >= tts->words) {
            break;
        }

        ctx->words++;
        sample = (uint64_t) (end * tts->rate + 0.5);

        if (ngx_http_voice_tts_word(tts, ctx->words, sample) != NGX_OK) {
            json_decref(msg);
            return;
        }

        if (!ctx->active) {
            break;
        }
    }

    json_decref(msg);
}


static void
ngx_http_voice_cartesia_error(ngx_http_voice_cartesia_ctx_t *ctx,
    json_t *msg)
{
    json_int_t   status;
    const char  *title, *text, *failure;

    status = json_integer_value(json_object_get(msg, "status_code"));
    title = json_string_value(json_object_get(msg, "title"));
    text = json_string_value(json_object_get(msg, "message"));

    /* the provider's words are for the log, never for the client */

    ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                  "voice tts cartesia: provider error %L \"%s\": %s",
                  (int64_t) status, title ? title : "",
                  text ? text : "(no message)");

    json_decref(msg);

    if (status == NGX_HTTP_UNAUTHORIZED || status == NGX_HTTP_FORBIDDEN) {
        failure = "the speech provider refused the key";

    } else {
        failure = "the speech provider failed";
    }

    (void) ngx_http_voice_cartesia_fail(ctx, failure);
}


/* ---- timers ------------------------------------------------------------- */


static void
ngx_http_voice_cartesia_retry_handler(ngx_event_t *ev)
{
    ngx_http_voice_cartesia_ctx_t  *ctx = ev->data;

    if (ctx->state != NGX_HTTP_VOICE_CARTESIA_IDLE) {
        return;
    }

    if (!ctx->active && ngx_queue_empty(&ctx->out)) {
        /* the reply that wanted it is gone: connect with the next */
        return;
    }

    ngx_http_voice_cartesia_connect(ctx);
}


static void
ngx_http_voice_cartesia_flush_handler(ngx_event_t *ev)
{
    ngx_http_voice_cartesia_ctx_t  *ctx = ev->data;

    ngx_http_voice_cartesia_pump(ctx);
}


static void
ngx_http_voice_cartesia_notify_handler(ngx_event_t *ev)
{
    ngx_http_voice_cartesia_ctx_t  *ctx = ev->data;

    ngx_http_voice_tts_t  *tts;

    tts = ctx->tts;

    if (ctx->state == NGX_HTTP_VOICE_CARTESIA_CLOSED
        || ctx->notify_reply != ctx->replies)
    {
        return;
    }

    if (ctx->notify_failure) {
        (void) ngx_http_voice_tts_failed(tts, ctx->notify_failure);

    } else {
        (void) ngx_http_voice_tts_done(tts);
    }
}
