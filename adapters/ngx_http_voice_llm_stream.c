
/*
 * One reply of an HTTP language model: a POST through libcurl whose
 * answer is read as Server-Sent Events and handed to the engine.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_module.h"

#include "ngx_http_voice_llm_stream.h"
#include "ngx_http_voice_llm_wire.h"


/* the longest finish reason passed on as it came */
#define NGX_HTTP_VOICE_LLM_FINISH  32

/* how long a response may stay open after its end event */
#define NGX_HTTP_VOICE_LLM_LINGER  500

/* how much of a provider's error text goes to the log */
#define NGX_HTTP_VOICE_LLM_LOG_TEXT  512


static ngx_int_t ngx_http_voice_llm_stream_header(ngx_http_voice_curl_t *req,
    ngx_uint_t status);
static ngx_int_t ngx_http_voice_llm_stream_body(ngx_http_voice_curl_t *req,
    u_char *data, size_t len);
static void ngx_http_voice_llm_stream_finished(ngx_http_voice_curl_t *req,
    ngx_int_t rc);
static void ngx_http_voice_llm_stream_free(ngx_http_voice_llm_stream_t *st);
static void ngx_http_voice_llm_stream_linger(ngx_event_t *ev);
static void ngx_http_voice_llm_stream_end(ngx_http_voice_llm_stream_t *st);
static void ngx_http_voice_llm_stream_refused(ngx_http_voice_llm_stream_t *st);
static void ngx_http_voice_llm_stream_log(ngx_http_voice_llm_stream_t *st,
    const char *what, const u_char *text, size_t len);


static ngx_http_voice_curl_handler_t  ngx_http_voice_llm_stream_handler = {
    ngx_http_voice_llm_stream_header,
    ngx_http_voice_llm_stream_body,
    ngx_http_voice_llm_stream_finished
};


/* the finish reason outlives the stream until the report has read it */
static u_char  ngx_http_voice_llm_stream_finish[NGX_HTTP_VOICE_LLM_FINISH];


ngx_http_voice_llm_stream_t *
ngx_http_voice_llm_stream_create(ngx_http_voice_llm_t *llm, size_t size,
    ngx_http_voice_llm_stream_event_pt event)
{
    u_char                       *buf;
    size_t                        n;
    ngx_pool_t                   *pool;
    ngx_http_voice_llm_stream_t  *st;

    pool = ngx_create_pool(4096, llm->log);
    if (pool == NULL) {
        return NULL;
    }

    st = ngx_pcalloc(pool, sizeof(ngx_http_voice_llm_stream_t));
    if (st == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    st->data = ngx_pcalloc(pool, size);

    /*
     * One event holds at most a piece of the reply or of a tool call's
     * arguments, JSON-escaped, with its envelope.
     */
    n = 2 * llm->conf->max_text + 4096;
    buf = ngx_pnalloc(pool, n);

    if (st->data == NULL || buf == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    ngx_http_voice_sse_init(&st->sse, buf, n);

    st->llm = llm;
    st->pool = pool;
    st->event = event;

    st->linger.handler = ngx_http_voice_llm_stream_linger;
    st->linger.data = st;
    st->linger.log = llm->log;
    st->linger.cancelable = 1;

    llm->ctx = st;

    return st;
}


ngx_int_t
ngx_http_voice_llm_stream_start(ngx_http_voice_llm_stream_t *st,
    json_t *body, const char *key_header, const char *extra)
{
    u_char                         *p;
    char                           *text;
    size_t                          len;
    ngx_str_t                      *headers;
    ngx_uint_t                      n;
    ngx_http_voice_llm_conf_t      *conf;
    ngx_http_voice_curl_request_t   rq;

    conf = st->llm->conf;

    headers = ngx_palloc(st->pool, 4 * sizeof(ngx_str_t));
    text = body ? json_dumps(body, NGX_HTTP_VOICE_LLM_WIRE_DUMP) : NULL;

    if (headers == NULL || text == NULL) {
        free(text);
        ngx_http_voice_llm_stream_free(st);
        return NGX_ERROR;
    }

    n = 0;
    ngx_str_set(&headers[n], "Content-Type: application/json");
    n++;
    ngx_str_set(&headers[n], "Accept: text/event-stream");
    n++;

    if (extra) {
        headers[n].data = (u_char *) extra;
        headers[n].len = ngx_strlen(extra);
        n++;
    }

    if (conf->key.len) {
        len = ngx_strlen(key_header);

        p = ngx_pnalloc(st->pool, len + conf->key.len);
        if (p == NULL) {
            free(text);
            ngx_http_voice_llm_stream_free(st);
            return NGX_ERROR;
        }

        headers[n].data = p;
        p = ngx_cpymem(p, key_header, len);
        p = ngx_cpymem(p, conf->key.data, conf->key.len);
        headers[n].len = p - headers[n].data;
        n++;
    }

    ngx_memzero(&rq, sizeof(ngx_http_voice_curl_request_t));

    rq.url = conf->url;
    rq.headers = headers;
    rq.nheaders = n;
    rq.body.data = (u_char *) text;
    rq.body.len = ngx_strlen(text);
    rq.connect_timeout = conf->connect_timeout;
    rq.trusted = conf->ssl_trusted_certificate;
    rq.verify = (conf->ssl_verify != 0);

    /* the session's timers come first; this only bounds a lost request */
    rq.timeout = conf->timeout ? conf->timeout + 5000 : 0;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, st->llm->log, 0,
                   "voice: llm %s request to \"%V\", %uz bytes",
                   st->llm->engine->name, &conf->url, rq.body.len);

    st->req = ngx_http_voice_curl_start(&rq,
                                        &ngx_http_voice_llm_stream_handler,
                                        st, st->llm->log);

    /* curl copied the body */
    free(text);

    if (st->req == NULL) {
        ngx_http_voice_llm_stream_free(st);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_voice_llm_stream_cancel(ngx_http_voice_llm_t *llm)
{
    ngx_http_voice_llm_stream_t  *st;

    st = llm->ctx;

    if (st == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, llm->log, 0,
                   "voice: llm %s reply cancelled", llm->engine->name);

    ngx_http_voice_llm_stream_free(st);
}


static void
ngx_http_voice_llm_stream_free(ngx_http_voice_llm_stream_t *st)
{
    ngx_http_voice_curl_t  *req;

    if (st->req) {
        req = st->req;
        st->req = NULL;
        ngx_http_voice_curl_cancel(req);
    }

    if (st->linger.timer_set) {
        ngx_del_timer(&st->linger);
    }

    if (st->gone) {
        *st->gone = 1;
    }

    if (st->llm->ctx == st) {
        st->llm->ctx = NULL;
    }

    ngx_destroy_pool(st->pool);
}


/* ---- libcurl's side ----------------------------------------------------- */

static ngx_int_t
ngx_http_voice_llm_stream_header(ngx_http_voice_curl_t *req,
    ngx_uint_t status)
{
    ngx_http_voice_llm_stream_t  *st = req->data;

    st->status = status;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, st->llm->log, 0,
                   "voice: llm %s answered %ui", st->llm->engine->name,
                   status);

    if (status != 200) {
        st->error = ngx_pnalloc(st->pool, NGX_HTTP_VOICE_LLM_STREAM_ERROR);
        if (st->error == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_llm_stream_body(ngx_http_voice_curl_t *req, u_char *data,
    size_t len)
{
    ngx_http_voice_llm_stream_t  *st = req->data;

    size_t                       n;
    u_char                      *p, *last;
    ngx_int_t                    rc;
    ngx_http_voice_sse_event_t   ev;

    if (st->ended) {
        /* after the end event nothing counts */
        return NGX_OK;
    }

    if (st->status != 200) {
        /* a refusal: kept, bounded, for the log */
        n = ngx_min(len, NGX_HTTP_VOICE_LLM_STREAM_ERROR - st->error_len);
        ngx_memcpy(st->error + st->error_len, data, n);
        st->error_len += n;
        return NGX_OK;
    }

    p = data;
    last = data + len;

    for ( ;; ) {
        rc = ngx_http_voice_sse_parse(&st->sse, &p, last, &ev);

        if (rc == NGX_AGAIN) {
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                          "voice: llm %s sent an event larger than %uz bytes",
                          st->llm->engine->name, st->sse.size);
            (void) ngx_http_voice_llm_stream_fail(st, 0,
                                                  NGX_HTTP_VOICE_LLM_MALFORMED);
            return NGX_OK;
        }

        if (st->event(st, &ev) == NGX_DONE) {
            /* the stream is freed and the request cancelled */
            return NGX_OK;
        }
    }
}


static void
ngx_http_voice_llm_stream_finished(ngx_http_voice_curl_t *req, ngx_int_t rc)
{
    ngx_http_voice_llm_stream_t  *st = req->data;

    /* the request is over: freeing the stream must not cancel it */
    st->req = NULL;

    if (st->ended) {
        ngx_http_voice_llm_stream_end(st);
        return;
    }

    if (rc != NGX_OK) {
        /* no URL here: it may carry credentials */
        ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                      "voice: llm %s request failed: %s",
                      st->llm->engine->name,
                      req->error ? req->error : "aborted");

        (void) ngx_http_voice_llm_stream_fail(st, 1,
                   req->timedout ? "the LLM provider did not answer in time"
                                 : "the LLM provider could not be reached");
        return;
    }

    if (st->status != 200) {
        ngx_http_voice_llm_stream_refused(st);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                  "voice: llm %s stream ended before its end event",
                  st->llm->engine->name);

    (void) ngx_http_voice_llm_stream_fail(st, 1, "the LLM stream ended early");
}


/* an HTTP status other than 200: the provider's words go to the log only */

static void
ngx_http_voice_llm_stream_refused(ngx_http_voice_llm_stream_t *st)
{
    u_char       text[NGX_HTTP_VOICE_LLM_LOG_TEXT];
    size_t       n;
    ngx_uint_t   status, retryable;
    const char  *msg;

    status = st->status;

    n = ngx_http_voice_error_message(st->error, st->error_len, text,
                                     sizeof(text));
    ngx_http_voice_llm_stream_log(st, "refused", text, n);

    retryable = (status == 429 || status >= 500);

    if (status == 401 || status == 403) {
        msg = "the LLM provider refused the credentials";

    } else if (status == 429) {
        msg = "the LLM provider is limiting the request rate";

    } else if (status >= 500) {
        msg = "the LLM provider had an error";

    } else {
        msg = "the LLM provider refused the request";
    }

    (void) ngx_http_voice_llm_stream_fail(st, retryable, msg);
}


/* ---- reports ------------------------------------------------------------ */

ngx_int_t
ngx_http_voice_llm_stream_token(ngx_http_voice_llm_stream_t *st,
    const u_char *text, size_t len)
{
    ngx_int_t    rc;
    ngx_uint_t   gone, *prev;

    if (len == 0) {
        return NGX_OK;
    }

    gone = 0;
    prev = st->gone;
    st->gone = &gone;

    rc = ngx_http_voice_llm_token(st->llm, text, len);

    if (gone) {
        return NGX_DONE;
    }

    st->gone = prev;

    if (rc != NGX_OK) {
        ngx_http_voice_llm_stream_free(st);
        return NGX_DONE;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_voice_llm_stream_tool_call(ngx_http_voice_llm_stream_t *st,
    ngx_str_t *id, ngx_str_t *name, ngx_str_t *arguments)
{
    ngx_int_t    rc;
    ngx_uint_t   gone, *prev;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, st->llm->log, 0,
                   "voice: llm %s tool call \"%V\" id \"%V\"",
                   st->llm->engine->name, name, id);

    gone = 0;
    prev = st->gone;
    st->gone = &gone;

    rc = ngx_http_voice_llm_tool_call(st->llm, id, name, arguments);

    if (gone) {
        return NGX_DONE;
    }

    st->gone = prev;

    if (rc != NGX_OK) {
        ngx_http_voice_llm_stream_free(st);
        return NGX_DONE;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_voice_llm_stream_done(ngx_http_voice_llm_stream_t *st,
    ngx_str_t *finish)
{
    st->ended = 1;

    st->finish.len = ngx_min(finish->len, NGX_HTTP_VOICE_LLM_FINISH);
    st->finish.data = ngx_pnalloc(st->pool, st->finish.len + 1);

    if (st->finish.data == NULL) {
        ngx_str_set(&st->finish, "stop");

    } else {
        ngx_memcpy(st->finish.data, finish->data, st->finish.len);
    }

    if (st->req == NULL) {
        ngx_http_voice_llm_stream_end(st);
        return NGX_DONE;
    }

    ngx_add_timer(&st->linger, NGX_HTTP_VOICE_LLM_LINGER);

    return NGX_DONE;
}


static void
ngx_http_voice_llm_stream_linger(ngx_event_t *ev)
{
    ngx_http_voice_llm_stream_t  *st = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, st->llm->log, 0,
                   "voice: llm %s response still open after its end",
                   st->llm->engine->name);

    ngx_http_voice_llm_stream_end(st);
}


static void
ngx_http_voice_llm_stream_end(ngx_http_voice_llm_stream_t *st)
{
    ngx_str_t              f;
    ngx_http_voice_llm_t  *llm;

    llm = st->llm;

    f.len = st->finish.len;
    f.data = ngx_http_voice_llm_stream_finish;
    ngx_memcpy(f.data, st->finish.data, f.len);

    ngx_http_voice_llm_stream_free(st);

    (void) ngx_http_voice_llm_done(llm, &f);
}


ngx_int_t
ngx_http_voice_llm_stream_fail(ngx_http_voice_llm_stream_t *st,
    ngx_uint_t retryable, const char *message)
{
    ngx_http_voice_llm_t  *llm;

    llm = st->llm;

    ngx_http_voice_llm_stream_free(st);

    (void) ngx_http_voice_llm_failed(llm, retryable, message);

    return NGX_DONE;
}


ngx_int_t
ngx_http_voice_llm_stream_error(ngx_http_voice_llm_stream_t *st,
    json_t *error)
{
    json_t      *type, *message;
    ngx_str_t    t;
    ngx_uint_t   retryable;

    type = NULL;
    message = error;

    if (json_is_object(error)) {
        type = json_object_get(error, "type");
        message = json_object_get(error, "message");
    }

    ngx_str_null(&t);

    if (json_is_string(type)) {
        t.data = (u_char *) json_string_value(type);
        t.len = json_string_length(type);
    }

    if (json_is_string(message)) {
        ngx_http_voice_llm_stream_log(st, "reported an error",
                                      (u_char *) json_string_value(message),
                                      json_string_length(message));

    } else {
        ngx_http_voice_llm_stream_log(st, "reported an error", t.data, t.len);
    }

    /* the provider's own trouble may pass; a bad request will not */

    retryable = (t.len
                 && ((t.len == 12
                      && ngx_strncmp(t.data, "server_error", 12) == 0)
                     || (t.len == 10
                         && ngx_strncmp(t.data, "overloaded", 10) == 0)
                     || (t.len == 16
                         && ngx_strncmp(t.data, "overloaded_error", 16) == 0)
                     || (t.len == 9
                         && ngx_strncmp(t.data, "api_error", 9) == 0)
                     || (t.len == 16
                         && ngx_strncmp(t.data, "rate_limit_error", 16)
                            == 0)));

    return ngx_http_voice_llm_stream_fail(st, retryable,
                                          "the LLM provider reported an error");
}


/*
 * The provider's text, bounded, on one line, and never with the key:
 * some providers quote the key they refused.
 */

static void
ngx_http_voice_llm_stream_log(ngx_http_voice_llm_stream_t *st,
    const char *what, const u_char *text, size_t len)
{
    u_char      buf[NGX_HTTP_VOICE_LLM_LOG_TEXT];
    size_t      n;
    ngx_uint_t  more;

    n = ngx_http_voice_log_text(buf, sizeof(buf), &st->llm->conf->key, text,
                                len, &more);

    ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                  "voice: llm %s %s (status %ui): \"%*s\"%s",
                  st->llm->engine->name, what, st->status, n, buf,
                  more ? "..." : "");
}


/* ---- helpers ------------------------------------------------------------ */

/* NGX_DECLINED: it would pass max */

ngx_int_t
ngx_http_voice_llm_buf_add(ngx_pool_t *pool, ngx_http_voice_llm_buf_t *b,
    const char *data, size_t len, size_t max)
{
    u_char  *p;
    size_t   size;

    if (len > max - b->len) {
        return NGX_DECLINED;
    }

    if (len > b->size - b->len) {
        size = ngx_max(ngx_max(2 * b->size, b->len + len), 64);
        size = ngx_min(size, max);

        p = ngx_pnalloc(pool, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (b->len) {
            ngx_memcpy(p, b->data, b->len);
        }

        b->data = p;
        b->size = size;
    }

    ngx_memcpy(b->data + b->len, data, len);
    b->len += len;

    return NGX_OK;
}


ngx_int_t
ngx_http_voice_llm_json_str(json_t *obj, const char *key, ngx_str_t *s)
{
    json_t  *v;

    v = json_object_get(obj, key);

    if (!json_is_string(v)) {
        ngx_str_null(s);
        return NGX_DECLINED;
    }

    s->data = (u_char *) json_string_value(v);
    s->len = json_string_length(v);

    return NGX_OK;
}


/* ---- configuration ------------------------------------------------------ */

char *
ngx_http_voice_llm_stream_conf(ngx_conf_t *cf, ngx_http_voice_llm_conf_t *conf,
    const char *url, const char *model)
{
    if (conf->url.len == 0) {
        conf->url.data = (u_char *) url;
        conf->url.len = ngx_strlen(url);
    }

    if (conf->model.len == 0) {
        conf->model.data = (u_char *) model;
        conf->model.len = ngx_strlen(model);
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
