
/*
 * Test-only module: a location that relays an HTTP request through
 * ngx_http_voice_curl.c and streams the answer to its client piece by
 * piece, so the layer can be tested from outside.
 *
 *   voice_curl_test <url>;   the upstream URL (variables allowed); the
 *                            client's body, if any, is POSTed, else GET
 *
 * The upstream status is passed through.  How the request ended is the
 * X-Curl-Result trailer (or header, with status 502, when it ended
 * before any response): "ok <status>", "error <timedout> <text>",
 * "abort" or "cancelled".  Query arguments: cancel_after=N cancels the
 * request from inside the body callback once N bytes arrived;
 * abort_after=N makes the body callback return NGX_ERROR instead.
 *
 * Pausing: pause_every=N pauses the transfer from inside the body
 * callback each time N more bytes arrived, and a timer resumes it
 * pause_ms later (default 1); flap_ms=N pauses and resumes it from a
 * timer, outside curl, every N ms.  Then the trailer X-Curl-Pauses is
 * "<pauses> <bytes delivered while paused>".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_curl.h"


typedef struct {
    ngx_http_complex_value_t  *url;
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 timeout;
    size_t                     max_body;
    ngx_array_t               *headers;
    ngx_str_t                  trusted;
    ngx_flag_t                 verify;
} ngx_http_voice_curl_test_loc_conf_t;


typedef struct {
    ngx_http_request_t        *request;
    ngx_http_voice_curl_t     *curl;
    size_t                     received;
    size_t                     cancel_after;
    size_t                     abort_after;
    size_t                     pause_every;
    size_t                     next_pause;
    ngx_msec_t                 pause_ms;
    ngx_msec_t                 flap_ms;
    ngx_uint_t                 pauses;
    size_t                     late;
    ngx_event_t                timer;
    unsigned                   header_sent:1;
    unsigned                   paused:1;
} ngx_http_voice_curl_test_ctx_t;


static ngx_int_t ngx_http_voice_curl_test_handler(ngx_http_request_t *r);
static void ngx_http_voice_curl_test_start(ngx_http_request_t *r);
static ngx_int_t ngx_http_voice_curl_test_header(ngx_http_voice_curl_t *req,
    ngx_uint_t status);
static ngx_int_t ngx_http_voice_curl_test_body(ngx_http_voice_curl_t *req,
    u_char *data, size_t len);
static void ngx_http_voice_curl_test_done(ngx_http_voice_curl_t *req,
    ngx_int_t rc);
static void ngx_http_voice_curl_test_finish(ngx_http_request_t *r,
    ngx_http_voice_curl_test_ctx_t *ctx, ngx_str_t *result);
static void ngx_http_voice_curl_test_writer(ngx_http_request_t *r);
static void ngx_http_voice_curl_test_timer(ngx_event_t *ev);
static void ngx_http_voice_curl_test_cleanup(void *data);
static size_t ngx_http_voice_curl_test_arg(ngx_http_request_t *r,
    char *name);
static char *ngx_http_voice_curl_test(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_voice_curl_test_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_voice_curl_test_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_voice_curl_test_init_process(ngx_cycle_t *cycle);
static void ngx_http_voice_curl_test_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_voice_curl_test_commands[] = {

    { ngx_string("voice_curl_test"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_voice_curl_test,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_curl_test_loc_conf_t, url),
      NULL },

    { ngx_string("voice_curl_test_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_curl_test_loc_conf_t, connect_timeout),
      NULL },

    { ngx_string("voice_curl_test_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_curl_test_loc_conf_t, timeout),
      NULL },

    { ngx_string("voice_curl_test_max_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_curl_test_loc_conf_t, max_body),
      NULL },

    { ngx_string("voice_curl_test_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_curl_test_loc_conf_t, headers),
      NULL },

    { ngx_string("voice_curl_test_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_curl_test_loc_conf_t, trusted),
      NULL },

    { ngx_string("voice_curl_test_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_voice_curl_test_loc_conf_t, verify),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_voice_curl_test_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_voice_curl_test_create_loc_conf,
    ngx_http_voice_curl_test_merge_loc_conf
};


ngx_module_t  ngx_http_voice_curl_test_module = {
    NGX_MODULE_V1,
    &ngx_http_voice_curl_test_module_ctx,  /* module context */
    ngx_http_voice_curl_test_commands,     /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_voice_curl_test_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_voice_curl_test_exit_process, /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_voice_curl_handler_t  ngx_http_voice_curl_test_callbacks = {
    ngx_http_voice_curl_test_header,
    ngx_http_voice_curl_test_body,
    ngx_http_voice_curl_test_done
};


static ngx_int_t
ngx_http_voice_curl_test_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_http_voice_curl_test_ctx_t  *ctx;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_voice_curl_test_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->cancel_after = ngx_http_voice_curl_test_arg(r, "cancel_after");
    ctx->abort_after = ngx_http_voice_curl_test_arg(r, "abort_after");
    ctx->pause_every = ngx_http_voice_curl_test_arg(r, "pause_every");
    ctx->next_pause = ctx->pause_every;
    ctx->pause_ms = ngx_http_voice_curl_test_arg(r, "pause_ms");
    ctx->flap_ms = ngx_http_voice_curl_test_arg(r, "flap_ms");

    if (ctx->pause_ms == 0) {
        ctx->pause_ms = 1;
    }

    ctx->timer.handler = ngx_http_voice_curl_test_timer;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;
    ctx->timer.cancelable = 1;

    ngx_http_set_ctx(r, ctx, ngx_http_voice_curl_test_module);

    if (r->method == NGX_HTTP_POST) {
        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r,
                                            ngx_http_voice_curl_test_start);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    r->main->count++;
    ngx_http_voice_curl_test_start(r);

    return NGX_DONE;
}


static void
ngx_http_voice_curl_test_start(ngx_http_request_t *r)
{
    size_t                                size;
    u_char                               *p;
    ngx_buf_t                            *b;
    ngx_chain_t                          *cl;
    ngx_http_cleanup_t                   *cln;
    ngx_http_voice_curl_request_t         rq;
    ngx_http_voice_curl_test_ctx_t       *ctx;
    ngx_http_voice_curl_test_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_voice_curl_test_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_voice_curl_test_module);

    ngx_memzero(&rq, sizeof(ngx_http_voice_curl_request_t));

    if (ngx_http_complex_value(r, lcf->url, &rq.url) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (r->request_body && r->request_body->bufs) {
        size = 0;

        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            if (cl->buf->in_file) {
                ngx_http_finalize_request(r,
                                      NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
                return;
            }

            size += cl->buf->last - cl->buf->pos;
        }

        p = ngx_pnalloc(r->pool, size);
        if (p == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        rq.body.data = p;
        rq.body.len = size;

        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    if (lcf->headers) {
        rq.headers = lcf->headers->elts;
        rq.nheaders = lcf->headers->nelts;
    }

    rq.connect_timeout = lcf->connect_timeout;
    rq.timeout = lcf->timeout;
    rq.trusted = lcf->trusted;
    rq.verify = lcf->verify;
    rq.max_body = lcf->max_body;

    /* the request cleanup cancels the transfer when the client goes */

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln->handler = ngx_http_voice_curl_test_cleanup;
    cln->data = ctx;

    ctx->curl = ngx_http_voice_curl_start(&rq,
                                          &ngx_http_voice_curl_test_callbacks,
                                          ctx, r->connection->log);
    if (ctx->curl == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_voice_curl_test_writer;

    if (ctx->flap_ms) {
        ngx_add_timer(&ctx->timer, ctx->flap_ms);
    }
}


static void
ngx_http_voice_curl_test_timer(ngx_event_t *ev)
{
    ngx_http_voice_curl_test_ctx_t *ctx = ev->data;

    if (ctx->curl == NULL) {
        return;
    }

    if (ctx->flap_ms) {
        /* from the event loop, outside any curl callback */
        ctx->paused = !ctx->paused;
        ctx->pauses += ctx->paused;
        ngx_http_voice_curl_pause(ctx->curl, ctx->paused);
        ngx_add_timer(ev, ctx->flap_ms);
        return;
    }

    ctx->paused = 0;
    ngx_http_voice_curl_pause(ctx->curl, 0);
}


static ngx_int_t
ngx_http_voice_curl_test_header(ngx_http_voice_curl_t *req,
    ngx_uint_t status)
{
    ngx_int_t                        rc;
    ngx_http_request_t              *r;
    ngx_http_voice_curl_test_ctx_t  *ctx;

    ctx = req->data;
    r = ctx->request;

    r->headers_out.status = status;
    r->headers_out.content_length_n = -1;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->expect_trailers = 1;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    ctx->header_sent = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_curl_test_body(ngx_http_voice_curl_t *req, u_char *data,
    size_t len)
{
    ngx_int_t                        rc;
    ngx_buf_t                       *b;
    ngx_str_t                        result;
    ngx_chain_t                      out;
    ngx_http_request_t              *r;
    ngx_http_voice_curl_test_ctx_t  *ctx;

    ctx = req->data;
    r = ctx->request;

    if (ctx->paused) {
        /* the layer promised nothing would come now */
        ctx->late += len;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, data, len);
    b->flush = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_output_filter(r, &out);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_handle_write_event(r->connection->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->received += len;

    if (ctx->cancel_after && ctx->received >= ctx->cancel_after) {
        ngx_http_voice_curl_cancel(req);
        ctx->curl = NULL;

        ngx_str_set(&result, "cancelled");
        ngx_http_voice_curl_test_finish(r, ctx, &result);

        /* whatever is returned now, the cancel stands */
        return NGX_OK;
    }

    if (ctx->abort_after && ctx->received >= ctx->abort_after) {
        return NGX_ERROR;
    }

    if (ctx->pause_every && !ctx->paused
        && ctx->received >= ctx->next_pause)
    {
        ctx->paused = 1;
        ctx->pauses++;
        ctx->next_pause = ctx->received + ctx->pause_every;

        ngx_http_voice_curl_pause(req, 1);
        ngx_add_timer(&ctx->timer, ctx->pause_ms);
    }

    return NGX_OK;
}


static void
ngx_http_voice_curl_test_done(ngx_http_voice_curl_t *req, ngx_int_t rc)
{
    u_char                          *p;
    ngx_str_t                        result;
    ngx_http_request_t              *r;
    ngx_http_voice_curl_test_ctx_t  *ctx;

    ctx = req->data;
    r = ctx->request;

    ctx->curl = NULL;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    p = ngx_pnalloc(r->pool, 128);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    result.data = p;

    switch (rc) {

    case NGX_OK:
        result.len = ngx_sprintf(p, "ok %ui", req->status) - p;
        break;

    case NGX_ABORT:
        ngx_str_set(&result, "abort");
        break;

    default:
        result.len = ngx_snprintf(p, 128, "error %d %s",
                                  (int) req->timedout, req->error)
                     - p;
    }

    ngx_http_voice_curl_test_finish(r, ctx, &result);
}


static void
ngx_http_voice_curl_test_finish(ngx_http_request_t *r,
    ngx_http_voice_curl_test_ctx_t *ctx, ngx_str_t *result)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (r->connection->error) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (ctx->header_sent && ctx->pauses) {
        h = ngx_list_push(&r->headers_out.trailers);
        if (h == NULL) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        h->value.data = ngx_pnalloc(r->pool, 2 * NGX_SIZE_T_LEN + 1);
        if (h->value.data == NULL) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "X-Curl-Pauses");
        h->value.len = ngx_sprintf(h->value.data, "%ui %uz", ctx->pauses,
                                   ctx->late)
                       - h->value.data;
    }

    if (ctx->header_sent) {
        h = ngx_list_push(&r->headers_out.trailers);
        if (h == NULL) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "X-Curl-Result");
        h->value = *result;

        rc = ngx_http_send_special(r, NGX_HTTP_LAST);
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* no response arrived: say why in a 502 */

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Curl-Result");
    h->value = *result;

    b = ngx_create_temp_buf(r->pool, result->len + 1);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    b->last = ngx_cpymem(b->last, result->data, result->len);
    *b->last++ = LF;
    b->last_buf = 1;

    r->headers_out.status = NGX_HTTP_BAD_GATEWAY;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));
}


static void
ngx_http_voice_curl_test_writer(ngx_http_request_t *r)
{
    if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (ngx_handle_write_event(r->connection->write, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


static void
ngx_http_voice_curl_test_cleanup(void *data)
{
    ngx_http_voice_curl_test_ctx_t *ctx = data;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (ctx->curl) {
        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "voice curl test: request ended early, cancelling");

        ngx_http_voice_curl_cancel(ctx->curl);
        ctx->curl = NULL;
    }
}


static size_t
ngx_http_voice_curl_test_arg(ngx_http_request_t *r, char *name)
{
    ssize_t    n;
    ngx_str_t  value;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &value)
        != NGX_OK)
    {
        return 0;
    }

    n = ngx_atosz(value.data, value.len);

    return n > 0 ? (size_t) n : 0;
}


static char *
ngx_http_voice_curl_test(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                      *rv;
    ngx_http_core_loc_conf_t  *clcf;

    rv = ngx_http_set_complex_value_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_voice_curl_test_handler;

    return NGX_CONF_OK;
}


static void *
ngx_http_voice_curl_test_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_voice_curl_test_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_voice_curl_test_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    lcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    lcf->timeout = NGX_CONF_UNSET_MSEC;
    lcf->max_body = NGX_CONF_UNSET_SIZE;
    lcf->headers = NGX_CONF_UNSET_PTR;
    lcf->verify = NGX_CONF_UNSET;

    return lcf;
}


static char *
ngx_http_voice_curl_test_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_voice_curl_test_loc_conf_t *prev = parent;
    ngx_http_voice_curl_test_loc_conf_t *conf = child;

    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              5000);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 0);
    ngx_conf_merge_size_value(conf->max_body, prev->max_body, 0);
    ngx_conf_merge_ptr_value(conf->headers, prev->headers, NULL);
    ngx_conf_merge_str_value(conf->trusted, prev->trusted, "");
    ngx_conf_merge_value(conf->verify, prev->verify, 1);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_voice_curl_test_init_process(ngx_cycle_t *cycle)
{
    return ngx_http_voice_curl_init_process(cycle);
}


static void
ngx_http_voice_curl_test_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_voice_curl_exit_process(cycle);
}
