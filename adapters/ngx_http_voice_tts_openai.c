
/*
 * OpenAI speech over HTTP: one POST per phrase, answered with raw PCM16
 * mono at 24 kHz as a chunked body cut anywhere.
 *
 * Phrases of a reply are asked for in order, with one request ahead:
 * while phrase n streams to the client, phrase n+1 is already asked for
 * and its body is kept, up to a bound, then held back by pausing its
 * transfer.  When n is complete, what was kept of n+1 goes out at once
 * and its transfer resumes.  So the provider's time to first audio (a
 * few hundred milliseconds) is hidden behind phrase n, and a short phrase
 * does not leave a gap in the speech, while a provider faster than real
 * time cannot make us keep more than the bound per session.
 *
 * Audio is only reported from curl's callbacks and from a posted event
 * of our own, never from inside a call of the glue.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_voice_module.h"
#include "ngx_http_voice_tts.h"
#include "ngx_http_voice_curl.h"


#define NGX_HTTP_VOICE_OAI_TTS_URL    "https://api.openai.com/v1/audio/speech"
#define NGX_HTTP_VOICE_OAI_TTS_MODEL  "gpt-4o-mini-tts"
#define NGX_HTTP_VOICE_OAI_TTS_VOICE  "alloy"
#define NGX_HTTP_VOICE_OAI_TTS_RATE   24000

/* the body kept of the phrase ahead before its transfer is paused:
   about 1.3 s of audio, more than a round trip to resume it */
#define NGX_HTTP_VOICE_OAI_TTS_AHEAD  65536

/* what curl may still hand over after a pause is bounded by curl's
   buffer; past this the phrase is failed rather than kept */
#define NGX_HTTP_VOICE_OAI_TTS_HARD   (4 * NGX_HTTP_VOICE_OAI_TTS_AHEAD)

/* an error body is kept up to this for the log */
#define NGX_HTTP_VOICE_OAI_TTS_ERROR  1024
#define NGX_HTTP_VOICE_OAI_TTS_LOG    512

#define NGX_HTTP_VOICE_OAI_TTS_NHEADERS  2


typedef struct ngx_http_voice_oai_tts_s  ngx_http_voice_oai_tts_t;


/* a phrase: waiting, asked for, or complete and not yet all reported */
typedef struct {
    ngx_queue_t                   queue;
    ngx_http_voice_oai_tts_t     *ctx;
    ngx_http_voice_curl_t        *req;        /* NULL: not asked or over */
    ngx_uint_t                    index;
    ngx_str_t                     text;
    ngx_uint_t                    status;

    u_char                       *buf;        /* audio kept, or the error
                                                 body of a refusal */
    size_t                        len;
    size_t                        size;

    unsigned                      started:1;
    unsigned                      complete:1;
    unsigned                      held:1;     /* its transfer is paused */
} ngx_http_voice_oai_tts_job_t;


struct ngx_http_voice_oai_tts_s {
    ngx_http_voice_tts_t         *tts;
    ngx_str_t                     headers[NGX_HTTP_VOICE_OAI_TTS_NHEADERS];
    ngx_uint_t                    nheaders;
    ngx_queue_t                   jobs;       /* in phrase order */
    ngx_uint_t                    asked;      /* jobs started, not over */
    ngx_uint_t                    gen;        /* replies dropped */
    ngx_event_t                   run;        /* reports, outside the
                                                 glue's calls */
    unsigned                      ended:1;
    unsigned                      paused:1;   /* the glue's pause */
    unsigned                      active:1;   /* a reply is under way */
};


static char *ngx_http_voice_oai_tts_init_conf(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf);
static ngx_int_t ngx_http_voice_oai_tts_open(ngx_http_voice_tts_t *tts);
static ngx_int_t ngx_http_voice_oai_tts_speak(ngx_http_voice_tts_t *tts,
    ngx_http_voice_tts_phrase_t *phrase);
static ngx_int_t ngx_http_voice_oai_tts_end(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_oai_tts_pause(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_oai_tts_resume(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_oai_tts_cancel(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_oai_tts_close(ngx_http_voice_tts_t *tts);

static ngx_int_t ngx_http_voice_oai_tts_ask(ngx_http_voice_oai_tts_t *ctx);
static ngx_int_t ngx_http_voice_oai_tts_start(ngx_http_voice_oai_tts_t *ctx,
    ngx_http_voice_oai_tts_job_t *job);
static void ngx_http_voice_oai_tts_report(ngx_http_voice_oai_tts_t *ctx);
static void ngx_http_voice_oai_tts_run_handler(ngx_event_t *ev);
static void ngx_http_voice_oai_tts_post(ngx_http_voice_oai_tts_t *ctx);
static void ngx_http_voice_oai_tts_flow(ngx_http_voice_oai_tts_t *ctx,
    ngx_http_voice_oai_tts_job_t *job);
static ngx_http_voice_oai_tts_job_t *ngx_http_voice_oai_tts_head(
    ngx_http_voice_oai_tts_t *ctx);
static ngx_int_t ngx_http_voice_oai_tts_keep(
    ngx_http_voice_oai_tts_job_t *job, u_char *data, size_t len,
    size_t max);
static void ngx_http_voice_oai_tts_drop(ngx_http_voice_oai_tts_t *ctx);
static void ngx_http_voice_oai_tts_free(ngx_http_voice_oai_tts_job_t *job);
static void ngx_http_voice_oai_tts_fail(ngx_http_voice_oai_tts_t *ctx,
    const char *message);
static void ngx_http_voice_oai_tts_refused(ngx_http_voice_oai_tts_t *ctx,
    ngx_http_voice_oai_tts_job_t *job);
static void ngx_http_voice_oai_tts_log(ngx_http_voice_oai_tts_t *ctx,
    ngx_uint_t status, const u_char *text, size_t len);

static ngx_int_t ngx_http_voice_oai_tts_header(ngx_http_voice_curl_t *req,
    ngx_uint_t status);
static ngx_int_t ngx_http_voice_oai_tts_body(ngx_http_voice_curl_t *req,
    u_char *data, size_t len);
static void ngx_http_voice_oai_tts_done(ngx_http_voice_curl_t *req,
    ngx_int_t rc);


const ngx_http_voice_tts_engine_t  ngx_http_voice_tts_openai = {
    "openai",
    ngx_http_voice_oai_tts_init_conf,
    ngx_http_voice_oai_tts_open,
    ngx_http_voice_oai_tts_speak,
    ngx_http_voice_oai_tts_end,
    ngx_http_voice_oai_tts_pause,
    ngx_http_voice_oai_tts_resume,
    ngx_http_voice_oai_tts_cancel,
    ngx_http_voice_oai_tts_close
};


static ngx_http_voice_curl_handler_t  ngx_http_voice_oai_tts_handler = {
    ngx_http_voice_oai_tts_header,
    ngx_http_voice_oai_tts_body,
    ngx_http_voice_oai_tts_done
};


#define ngx_http_voice_oai_tts_ok(status)  ((status) >= 200 && (status) < 300)


static char *
ngx_http_voice_oai_tts_init_conf(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf)
{
    if (conf->url.len == 0) {
        ngx_str_set(&conf->url, NGX_HTTP_VOICE_OAI_TTS_URL);
    }

    if (conf->model.len == 0) {
        ngx_str_set(&conf->model, NGX_HTTP_VOICE_OAI_TTS_MODEL);
    }

    if (conf->voice.len == 0) {
        ngx_str_set(&conf->voice, NGX_HTTP_VOICE_OAI_TTS_VOICE);
    }

    if (!(conf->url.len > 7
          && ngx_strncasecmp(conf->url.data, (u_char *) "http://", 7) == 0)
        && !(conf->url.len > 8
             && ngx_strncasecmp(conf->url.data, (u_char *) "https://", 8)
                == 0))
    {
        return "the URL must start with http:// or https://";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_voice_oai_tts_open(ngx_http_voice_tts_t *tts)
{
    u_char                    *p;
    ngx_http_voice_oai_tts_t  *ctx;

    ctx = ngx_pcalloc(tts->pool, sizeof(ngx_http_voice_oai_tts_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->tts = tts;
    ngx_queue_init(&ctx->jobs);

    ngx_str_set(&ctx->headers[0], "Content-Type: application/json");
    ctx->nheaders = 1;

    if (tts->conf->key.len) {
        p = ngx_pnalloc(tts->pool, sizeof("Authorization: Bearer ") - 1
                                   + tts->conf->key.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->headers[1].data = p;
        p = ngx_cpymem(p, "Authorization: Bearer ",
                       sizeof("Authorization: Bearer ") - 1);
        p = ngx_cpymem(p, tts->conf->key.data, tts->conf->key.len);
        ctx->headers[1].len = p - ctx->headers[1].data;
        ctx->nheaders = 2;
    }

    ctx->run.handler = ngx_http_voice_oai_tts_run_handler;
    ctx->run.data = ctx;
    ctx->run.log = tts->log;

    tts->ctx = ctx;

    /* the provider has one format: the glue converts to the client's */
    tts->rate = NGX_HTTP_VOICE_OAI_TTS_RATE;

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_oai_tts_speak(ngx_http_voice_tts_t *tts,
    ngx_http_voice_tts_phrase_t *phrase)
{
    ngx_http_voice_oai_tts_t      *ctx;
    ngx_http_voice_oai_tts_job_t  *job;

    ctx = tts->ctx;

    if (phrase->index == 0 && ctx->active) {
        /* a new reply while one runs: the old one is dropped */
        ngx_http_voice_oai_tts_drop(ctx);
    }

    ctx->active = 1;

    job = ngx_alloc(sizeof(ngx_http_voice_oai_tts_job_t) + phrase->text.len,
                    tts->log);
    if (job == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(job, sizeof(ngx_http_voice_oai_tts_job_t));

    job->ctx = ctx;
    job->index = phrase->index;
    job->text.data = (u_char *) job + sizeof(ngx_http_voice_oai_tts_job_t);
    job->text.len = phrase->text.len;
    ngx_memcpy(job->text.data, phrase->text.data, phrase->text.len);

    ngx_queue_insert_tail(&ctx->jobs, &job->queue);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice: tts openai phrase %ui, %uz bytes",
                   phrase->index, phrase->text.len);

    if (ngx_http_voice_oai_tts_ask(ctx) != NGX_OK) {
        ngx_http_voice_oai_tts_drop(ctx);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_oai_tts_end(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_oai_tts_t  *ctx;

    ctx = tts->ctx;

    ctx->ended = 1;
    ctx->active = 1;

    /* everything may have been reported already: done comes from run */
    ngx_http_voice_oai_tts_post(ctx);

    return NGX_OK;
}


static void
ngx_http_voice_oai_tts_pause(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_oai_tts_t      *ctx;
    ngx_http_voice_oai_tts_job_t  *job;

    ctx = tts->ctx;

    ctx->paused = 1;

    job = ngx_http_voice_oai_tts_head(ctx);

    if (job) {
        ngx_http_voice_oai_tts_flow(ctx, job);
    }
}


static void
ngx_http_voice_oai_tts_resume(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_oai_tts_t  *ctx;

    ctx = tts->ctx;

    if (!ctx->paused) {
        return;
    }

    ctx->paused = 0;

    /* kept audio goes out from our own event, not from inside the glue */
    ngx_http_voice_oai_tts_post(ctx);
}


static void
ngx_http_voice_oai_tts_cancel(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_oai_tts_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice: tts openai reply dropped, %ui requests running",
                   ctx->asked);

    ngx_http_voice_oai_tts_drop(ctx);
}


static void
ngx_http_voice_oai_tts_close(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_oai_tts_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL) {
        return;
    }

    ngx_http_voice_oai_tts_drop(ctx);

    tts->ctx = NULL;
}


/* ---- the phrases -------------------------------------------------------- */

/* starts requests so that the head and one phrase after it are asked for */

static ngx_int_t
ngx_http_voice_oai_tts_ask(ngx_http_voice_oai_tts_t *ctx)
{
    ngx_uint_t                     n;
    ngx_queue_t                   *q;
    ngx_http_voice_oai_tts_job_t  *job;

    n = 0;

    for (q = ngx_queue_head(&ctx->jobs);
         q != ngx_queue_sentinel(&ctx->jobs) && n < 2;
         q = ngx_queue_next(q), n++)
    {
        job = ngx_queue_data(q, ngx_http_voice_oai_tts_job_t, queue);

        if (job->started) {
            continue;
        }

        if (ngx_http_voice_oai_tts_start(ctx, job) != NGX_OK) {
            return NGX_ERROR;
        }

        if (job->complete && n == 0) {
            /* nothing to say in it: its end is reported from run */
            ngx_http_voice_oai_tts_post(ctx);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_oai_tts_start(ngx_http_voice_oai_tts_t *ctx,
    ngx_http_voice_oai_tts_job_t *job)
{
    char                           *text;
    u_char                         *p, *last;
    json_t                         *body;
    ngx_http_voice_tts_conf_t      *conf;
    ngx_http_voice_curl_request_t   rq;

    conf = ctx->tts->conf;

    job->started = 1;

    /* the provider refuses empty input: a blank phrase has no audio */

    last = job->text.data + job->text.len;

    for (p = job->text.data; p < last; p++) {
        if (*p != ' ' && *p != '\t' && *p != CR && *p != LF) {
            break;
        }
    }

    if (p == last) {
        job->complete = 1;
        return NGX_OK;
    }

    body = json_pack("{s:s%, s:s%, s:s%, s:s, s:f}",
                     "model", conf->model.data, conf->model.len,
                     "input", job->text.data, job->text.len,
                     "voice", conf->voice.data, conf->voice.len,
                     "response_format", "pcm",
                     "speed", (double) conf->speed / 100);
    if (body == NULL) {
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice: tts openai could not build a request "
                      "(text not UTF-8?)");
        return NGX_ERROR;
    }

    text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(4));

    json_decref(body);

    if (text == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&rq, sizeof(ngx_http_voice_curl_request_t));

    rq.url = conf->url;
    rq.headers = ctx->headers;
    rq.nheaders = ctx->nheaders;
    rq.body.data = (u_char *) text;
    rq.body.len = ngx_strlen(text);
    rq.connect_timeout = conf->connect_timeout;
    rq.trusted = conf->ssl_trusted_certificate;
    rq.verify = (conf->ssl_verify != 0);

    /*
     * No whole-request timeout: a transfer held back for the client can
     * last as long as the client takes; the glue times overdue audio.
     */

    job->req = ngx_http_voice_curl_start(&rq, &ngx_http_voice_oai_tts_handler,
                                         job, ctx->tts->log);

    /* curl copied the body */
    free(text);

    if (job->req == NULL) {
        return NGX_ERROR;
    }

    ctx->asked++;

    return NGX_OK;
}


static ngx_http_voice_oai_tts_job_t *
ngx_http_voice_oai_tts_head(ngx_http_voice_oai_tts_t *ctx)
{
    if (ngx_queue_empty(&ctx->jobs)) {
        return NULL;
    }

    return ngx_queue_data(ngx_queue_head(&ctx->jobs),
                          ngx_http_voice_oai_tts_job_t, queue);
}


/*
 * Whether a transfer should be held: the head while the glue cannot take
 * audio, a phrase ahead once it has kept its bound.
 */

static void
ngx_http_voice_oai_tts_flow(ngx_http_voice_oai_tts_t *ctx,
    ngx_http_voice_oai_tts_job_t *job)
{
    ngx_uint_t  hold;

    if (job->req == NULL) {
        return;
    }

    if (job == ngx_http_voice_oai_tts_head(ctx)) {
        hold = ctx->paused || job->len;

    } else {
        hold = (job->len >= NGX_HTTP_VOICE_OAI_TTS_AHEAD);
    }

    if (hold != job->held) {
        job->held = hold;
        ngx_http_voice_curl_pause(job->req, hold);
    }
}


static void
ngx_http_voice_oai_tts_post(ngx_http_voice_oai_tts_t *ctx)
{
    if (!ctx->run.posted) {
        ngx_post_event(&ctx->run, &ngx_posted_events);
    }
}


static void
ngx_http_voice_oai_tts_run_handler(ngx_event_t *ev)
{
    ngx_http_voice_oai_tts_report(ev->data);
}


/*
 * Reports what can be reported: kept audio of the head (not while the
 * glue has paused us), the end of each complete phrase in order, the end
 * of the reply.  Every report may end the reply (NGX_ERROR): then
 * nothing of ctx is touched again.
 */

static void
ngx_http_voice_oai_tts_report(ngx_http_voice_oai_tts_t *ctx)
{
    size_t                         len;
    u_char                        *buf;
    ngx_int_t                      rc;
    ngx_uint_t                     index, gen;
    ngx_http_voice_tts_t          *tts;
    ngx_http_voice_oai_tts_job_t  *job;

    tts = ctx->tts;

    for ( ;; ) {

        job = ngx_http_voice_oai_tts_head(ctx);

        if (job == NULL) {
            if (ctx->ended && ctx->active) {
                ctx->active = 0;
                ctx->ended = 0;

                (void) ngx_http_voice_tts_done(tts);
            }

            return;
        }

        if (job->len) {
            if (ctx->paused) {
                /* resume posts us again */
                return;
            }

            buf = job->buf;
            len = job->len;

            job->buf = NULL;
            job->len = 0;
            job->size = 0;

            gen = ctx->gen;

            rc = ngx_http_voice_tts_audio(tts, buf, len);

            ngx_free(buf);

            if (rc == NGX_ERROR || ctx->gen != gen) {
                /* the reply is gone, and the job with it */
                return;
            }

            if (rc == NGX_AGAIN) {
                /* the glue has paused us */
                return;
            }
        }

        if (!job->complete) {
            /* the rest comes straight from the transfer */
            ngx_http_voice_oai_tts_flow(ctx, job);
            return;
        }

        index = job->index;

        ngx_queue_remove(&job->queue);
        ngx_http_voice_oai_tts_free(job);

        /* the next phrase, and the one after it, are asked for first */

        if (ngx_http_voice_oai_tts_ask(ctx) != NGX_OK) {
            ngx_http_voice_oai_tts_fail(ctx, "the speech provider failed");
            return;
        }

        gen = ctx->gen;

        if (ngx_http_voice_tts_phrase_done(tts, index) == NGX_ERROR
            || ctx->gen != gen)
        {
            return;
        }
    }
}


/* the reply is over for the engine: every request goes, no report */

static void
ngx_http_voice_oai_tts_drop(ngx_http_voice_oai_tts_t *ctx)
{
    ngx_queue_t                   *q;
    ngx_http_voice_oai_tts_job_t  *job;

    while (!ngx_queue_empty(&ctx->jobs)) {
        q = ngx_queue_head(&ctx->jobs);
        job = ngx_queue_data(q, ngx_http_voice_oai_tts_job_t, queue);

        ngx_queue_remove(q);
        ngx_http_voice_oai_tts_free(job);
    }

    if (ctx->run.posted) {
        ngx_delete_posted_event(&ctx->run);
    }

    ctx->gen++;
    ctx->ended = 0;
    ctx->active = 0;
    ctx->paused = 0;
}


static void
ngx_http_voice_oai_tts_free(ngx_http_voice_oai_tts_job_t *job)
{
    ngx_http_voice_curl_t  *req;

    if (job->req) {
        req = job->req;
        job->req = NULL;
        job->ctx->asked--;

        /* safe from inside its own callbacks: none follows */
        ngx_http_voice_curl_cancel(req);
    }

    if (job->buf) {
        ngx_free(job->buf);
    }

    ngx_free(job);
}


static void
ngx_http_voice_oai_tts_fail(ngx_http_voice_oai_tts_t *ctx,
    const char *message)
{
    ngx_http_voice_tts_t  *tts;

    tts = ctx->tts;

    ngx_http_voice_oai_tts_drop(ctx);

    (void) ngx_http_voice_tts_failed(tts, message);
}


static ngx_int_t
ngx_http_voice_oai_tts_keep(ngx_http_voice_oai_tts_job_t *job, u_char *data,
    size_t len, size_t max)
{
    u_char  *p;
    size_t   size;

    if (len > max - job->len) {
        return NGX_DECLINED;
    }

    if (len > job->size - job->len) {
        size = ngx_max(ngx_max(2 * job->size, job->len + len), 4096);
        size = ngx_min(size, max);

        p = ngx_alloc(size, job->ctx->tts->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (job->len) {
            ngx_memcpy(p, job->buf, job->len);
        }

        if (job->buf) {
            ngx_free(job->buf);
        }

        job->buf = p;
        job->size = size;
    }

    ngx_memcpy(job->buf + job->len, data, len);
    job->len += len;

    return NGX_OK;
}


/* ---- libcurl's side ----------------------------------------------------- */

static ngx_int_t
ngx_http_voice_oai_tts_header(ngx_http_voice_curl_t *req, ngx_uint_t status)
{
    ngx_http_voice_oai_tts_job_t  *job = req->data;

    job->status = status;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, job->ctx->tts->log, 0,
                   "voice: tts openai phrase %ui answered %ui",
                   job->index, status);

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_oai_tts_body(ngx_http_voice_curl_t *req, u_char *data,
    size_t len)
{
    ngx_http_voice_oai_tts_job_t  *job = req->data;

    size_t                     n;
    ngx_int_t                  rc;
    ngx_http_voice_oai_tts_t  *ctx;

    ctx = job->ctx;

    if (!ngx_http_voice_oai_tts_ok(job->status)) {
        /* a refusal: kept, bounded, for the log */
        n = ngx_min(len, NGX_HTTP_VOICE_OAI_TTS_ERROR - job->len);

        if (n && ngx_http_voice_oai_tts_keep(job, data, n,
                                             NGX_HTTP_VOICE_OAI_TTS_ERROR)
                 == NGX_ERROR)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (job == ngx_http_voice_oai_tts_head(ctx) && !ctx->paused
        && job->len == 0)
    {
        /*
         * Straight through; an odd byte is the glue's to carry.  After
         * NGX_ERROR the reply is gone, this request with it; after
         * NGX_AGAIN the glue has paused us, and so this transfer.
         * Either way nothing more is done here.
         */

        (void) ngx_http_voice_tts_audio(ctx->tts, data, len);

        return NGX_OK;
    }

    rc = ngx_http_voice_oai_tts_keep(job, data, len,
                                     NGX_HTTP_VOICE_OAI_TTS_HARD);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice: tts openai could not keep the audio of "
                      "phrase %ui", job->index);
        ngx_http_voice_oai_tts_fail(ctx, "the speech provider failed");
        return NGX_OK;
    }

    ngx_http_voice_oai_tts_flow(ctx, job);

    return NGX_OK;
}


static void
ngx_http_voice_oai_tts_done(ngx_http_voice_curl_t *req, ngx_int_t rc)
{
    ngx_http_voice_oai_tts_job_t  *job = req->data;

    ngx_http_voice_oai_tts_t  *ctx;

    ctx = job->ctx;

    /* the request is over: freeing the job must not cancel it */
    job->req = NULL;
    job->held = 0;
    ctx->asked--;

    if (rc != NGX_OK) {
        /* no URL here: it may carry credentials */
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice: tts openai request for phrase %ui failed: %s",
                      job->index, req->error ? req->error : "aborted");

        ngx_http_voice_oai_tts_fail(ctx,
                   req->timedout ? "the speech provider did not answer "
                                   "in time"
                   : (req->status ? "the speech provider failed"
                                  : "the speech provider could not be "
                                    "reached"));
        return;
    }

    if (!ngx_http_voice_oai_tts_ok(job->status)) {
        ngx_http_voice_oai_tts_refused(ctx, job);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                   "voice: tts openai phrase %ui complete", job->index);

    job->complete = 1;

    if (job == ngx_http_voice_oai_tts_head(ctx)) {
        ngx_http_voice_oai_tts_report(ctx);
    }
}


/* an HTTP status other than 2xx: the provider's words go to the log only */

static void
ngx_http_voice_oai_tts_refused(ngx_http_voice_oai_tts_t *ctx,
    ngx_http_voice_oai_tts_job_t *job)
{
    u_char       text[NGX_HTTP_VOICE_OAI_TTS_LOG];
    size_t       n;
    ngx_uint_t   status;
    const char  *msg;

    status = job->status;

    n = ngx_http_voice_error_message(job->buf, job->len, text, sizeof(text));
    ngx_http_voice_oai_tts_log(ctx, status, text, n);

    if (status == 401 || status == 403) {
        msg = "the speech provider refused the key";

    } else if (status == 429) {
        msg = "the speech provider is limiting the request rate";

    } else if (status >= 500) {
        msg = "the speech provider failed";

    } else {
        msg = "the speech provider refused the request";
    }

    ngx_http_voice_oai_tts_fail(ctx, msg);
}


/*
 * The provider's text, bounded, on one line, and never with the key:
 * a provider may quote the key it refused.
 */

static void
ngx_http_voice_oai_tts_log(ngx_http_voice_oai_tts_t *ctx, ngx_uint_t status,
    const u_char *text, size_t len)
{
    u_char      buf[NGX_HTTP_VOICE_OAI_TTS_LOG];
    size_t      n;
    ngx_uint_t  more;

    n = ngx_http_voice_log_text(buf, sizeof(buf), &ctx->tts->conf->key, text,
                                len, &more);

    ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                  "voice: tts openai refused (status %ui): \"%*s\"%s",
                  status, n, buf, more ? "..." : "");
}
