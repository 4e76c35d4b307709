
/*
 * Tool calls as nginx subrequests.
 *
 * The session's request has been upgraded and its socket carries
 * WebSocket frames, so a subrequest must never write to it.  Tool
 * subrequests are therefore background subrequests (they leave c->data,
 * the connection's active request, to the session and never join the
 * postponed output chain), and a header and body filter at the top of
 * the chain keep everything they produce in memory and pass nothing on.
 *
 * A call lives in the main request's pool, which outlives every
 * subrequest: cancelling marks the call gone and never frees what the
 * subrequest still uses.  A proxied tool nobody waits for any more (timed
 * out or cancelled) has its upstream closed; any other content handler
 * finishes on its own, its output discarded.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_http_voice_tool.h"
#include "ngx_http_voice_llm.h"


#define NGX_HTTP_VOICE_TOOL_NAME_MAX  64


struct ngx_http_voice_tool_call_s {
    ngx_http_request_t             *request;     /* the session's */
    ngx_http_request_t             *subrequest;
    ngx_http_voice_tool_done_pt     done;
    void                           *data;
    ngx_http_post_subrequest_t      post;
    ngx_event_t                     timer;
    ngx_event_t                     report;      /* posted: calls done */
    ngx_event_t                     abort;       /* posted: stops it */

    char                           *action;      /* the session's, for
                                                    the shared log */
    u_char                         *body;        /* heap, max bytes */
    size_t                          size;
    size_t                          max;

    ngx_int_t                       rc;
    ngx_uint_t                      status;

    unsigned                        gone:1;      /* reported or cancelled */
    unsigned                        finished:1;  /* the subrequest ended */
    unsigned                        header:1;
    unsigned                        last:1;
    unsigned                        too_big:1;
    unsigned                        unreadable:1;
    unsigned                        released:1;  /* the pool is going */
};


static ngx_int_t ngx_http_voice_tool_headers(ngx_http_request_t *r,
    ngx_http_request_t *sr, size_t len);
static ngx_int_t ngx_http_voice_tool_finished(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_voice_tool_timeout(ngx_event_t *ev);
static void ngx_http_voice_tool_report(ngx_event_t *ev);
static void ngx_http_voice_tool_deliver(ngx_http_voice_tool_call_t *call);
static void ngx_http_voice_tool_stop(ngx_http_voice_tool_call_t *call);
static void ngx_http_voice_tool_abort(ngx_event_t *ev);
static void ngx_http_voice_tool_cleanup(void *data);
static ngx_http_voice_tool_call_t *ngx_http_voice_tool_owner(
    ngx_http_request_t *r);
static void ngx_http_voice_tool_append(ngx_http_voice_tool_call_t *call,
    ngx_buf_t *b);
static ngx_int_t ngx_http_voice_tool_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_voice_tool_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_voice_tool_json_cleanup(void *data);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static ngx_str_t  ngx_http_voice_tool_post = ngx_string("POST");
static ngx_str_t  ngx_http_voice_tool_type = ngx_string("application/json");


ngx_http_voice_tool_call_t *
ngx_http_voice_tool_run(ngx_http_request_t *r, ngx_str_t *location,
    ngx_str_t *args, size_t max, ngx_msec_t timeout,
    ngx_http_voice_tool_done_pt done, void *data)
{
    u_char                      *q;
    ngx_buf_t                   *b;
    ngx_str_t                    uri, query, *qp;
    ngx_chain_t                 *cl;
    ngx_pool_cleanup_t          *cln;
    ngx_http_request_t          *sr;
    ngx_http_voice_tool_call_t  *call;

    r = r->main;

    call = ngx_pcalloc(r->pool, sizeof(ngx_http_voice_tool_call_t));
    if (call == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    call->request = r;
    call->action = r->connection->log->action;
    call->done = done;
    call->data = data;
    call->max = max;

    call->post.handler = ngx_http_voice_tool_finished;
    call->post.data = call;

    call->timer.handler = ngx_http_voice_tool_timeout;
    call->timer.data = call;
    call->timer.log = r->connection->log;
    call->timer.cancelable = 1;

    call->report.handler = ngx_http_voice_tool_report;
    call->report.data = call;
    call->report.log = r->connection->log;

    call->abort.handler = ngx_http_voice_tool_abort;
    call->abort.data = call;
    call->abort.log = r->connection->log;

    /* the call is marked gone until it has really started */

    call->gone = 1;
    cln->handler = ngx_http_voice_tool_cleanup;
    cln->data = call;

    /* the location may carry a query string of its own */

    uri = *location;
    qp = NULL;

    q = ngx_strlchr(uri.data, uri.data + uri.len, '?');

    if (q) {
        query.data = q + 1;
        query.len = uri.data + uri.len - query.data;
        uri.len = q - uri.data;
        qp = &query;
    }

    if (ngx_http_subrequest(r, &uri, qp, &sr, &call->post,
                            NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK)
    {
        return NULL;
    }

    call->subrequest = sr;

    /*
     * From here on the subrequest is posted and counted: it will run and
     * end whatever happens, so failures below turn into a failed call
     * reported later, never into a NULL the caller would take for
     * "nothing started".
     */

    call->gone = 0;
    call->rc = NGX_ERROR;

    sr->method = NGX_HTTP_POST;
    sr->method_name = ngx_http_voice_tool_post;

    sr->request_body = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    b = ngx_create_temp_buf(r->pool, args->len ? args->len : 1);
    cl = ngx_alloc_chain_link(r->pool);

    if (sr->request_body == NULL || b == NULL || cl == NULL
        || ngx_http_voice_tool_headers(r, sr, args->len) != NGX_OK)
    {
        goto failed;
    }

    b->last = ngx_cpymem(b->pos, args->data, args->len);
    b->last_buf = 1;

    cl->buf = b;
    cl->next = NULL;

    sr->request_body->bufs = cl;
    sr->request_body->buf = b;

    ngx_add_timer(&call->timer, timeout);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "voice: tool call \"%V\" with %uz bytes",
                   location, args->len);

    /*
     * The session runs from its own event handlers, not from nginx's
     * request loop, so nobody else would run the posted subrequest.
     */

    ngx_http_run_posted_requests(r->connection);

    r->connection->log->action = call->action;

    return call;

failed:

    /* the subrequest runs anyway; its output goes nowhere */

    call->finished = 1;
    ngx_post_event(&call->report, &ngx_posted_events);

    ngx_http_run_posted_requests(r->connection);

    return call;
}


/*
 * The subrequest sees the client's handshake headers; those that describe
 * a body or the upgraded connection give way to the JSON body's own.
 */

static ngx_int_t
ngx_http_voice_tool_headers(ngx_http_request_t *r, ngx_http_request_t *sr,
    size_t len)
{
    u_char           *p;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    if (ngx_list_init(&sr->headers_in.headers, r->pool, 8,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0
            || (h[i].key.len == sizeof("Connection") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Connection",
                                   h[i].key.len) == 0)
            || (h[i].key.len == sizeof("Upgrade") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Upgrade",
                                   h[i].key.len) == 0)
            || (h[i].key.len == sizeof("Keep-Alive") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Keep-Alive",
                                   h[i].key.len) == 0)
            || (h[i].key.len == sizeof("Expect") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Expect",
                                   h[i].key.len) == 0)
            || (h[i].key.len == sizeof("TE") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "TE",
                                   h[i].key.len) == 0)
            || (h[i].key.len > sizeof("Content-") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Content-",
                                   sizeof("Content-") - 1) == 0)
            || (h[i].key.len == sizeof("Transfer-Encoding") - 1
                && ngx_strncasecmp(h[i].key.data,
                                   (u_char *) "Transfer-Encoding",
                                   h[i].key.len) == 0)
            || (h[i].key.len > sizeof("Sec-WebSocket-") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Sec-WebSocket-",
                                   sizeof("Sec-WebSocket-") - 1) == 0))
        {
            continue;
        }

        nh = ngx_list_push(&sr->headers_in.headers);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        *nh = h[i];
    }

    sr->headers_in.connection = NULL;
    sr->headers_in.upgrade = NULL;
    sr->headers_in.keep_alive = NULL;
    sr->headers_in.expect = NULL;
    sr->headers_in.te = NULL;
    sr->headers_in.transfer_encoding = NULL;
    sr->headers_in.chunked = 0;

    nh = ngx_list_push(&sr->headers_in.headers);
    if (nh == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&nh->key, "Content-Type");
    nh->value = ngx_http_voice_tool_type;
    nh->lowcase_key = (u_char *) "content-type";
    nh->hash = ngx_hash_key(nh->lowcase_key, nh->key.len);

    sr->headers_in.content_type = nh;

    nh = ngx_list_push(&sr->headers_in.headers);
    if (nh == NULL) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&nh->key, "Content-Length");
    nh->value.data = p;
    nh->value.len = ngx_sprintf(p, "%uz", len) - p;
    nh->lowcase_key = (u_char *) "content-length";
    nh->hash = ngx_hash_key(nh->lowcase_key, nh->key.len);

    sr->headers_in.content_length = nh;
    sr->headers_in.content_length_n = len;

    return NGX_OK;
}


void
ngx_http_voice_tool_cancel(ngx_http_voice_tool_call_t *call)
{
    /*
     * The owner may cancel from its own pool cleanup, after ours: then
     * nothing may be posted any more.
     */

    if (call == NULL || call->released) {
        return;
    }

    ngx_http_voice_tool_stop(call);

    /* nobody waits for the answer: a proxied tool need not keep running */

    if (!call->finished && !call->abort.posted) {
        ngx_post_event(&call->abort, &ngx_posted_events);
    }
}


static void
ngx_http_voice_tool_stop(ngx_http_voice_tool_call_t *call)
{
    call->gone = 1;

    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    if (call->report.posted) {
        ngx_delete_posted_event(&call->report);
    }

    if (call->body) {
        ngx_free(call->body);
        call->body = NULL;
    }
}


/*
 * An upstream still working for a call nobody waits for is closed the way
 * nginx closes it when a request is terminated; the subrequest then ends
 * quietly.  Other content handlers finish on their own.
 */

static void
ngx_http_voice_tool_abort(ngx_event_t *ev)
{
    ngx_http_voice_tool_call_t  *call = ev->data;

    ngx_http_request_t   *sr;
    ngx_http_upstream_t  *u;

    sr = call->subrequest;

    if (call->finished || sr == NULL) {
        return;
    }

    u = sr->upstream;

    if (u == NULL || u->cleanup == NULL || *u->cleanup == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "voice: tool \"%V\" abandoned, closing its upstream",
                   &sr->uri);

    /*
     * This may end the main request too, when the session is already
     * over and the subrequest held the last reference: nothing is touched
     * after it.
     */

    (*u->cleanup)(sr);
}


/*
 * Called by nginx when the subrequest ends, from inside its finalization:
 * the result is handed on from a posted event.  Whatever the outcome,
 * the subrequest is let end quietly: an error code returned here would
 * terminate the main request (the session), and a special response would
 * take over the client connection's handlers to send an error page.
 */

static ngx_int_t
ngx_http_voice_tool_finished(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_http_voice_tool_call_t  *call = data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, sr->connection->log, 0,
                   "voice: tool subrequest done rc:%i status:%ui gone:%d",
                   rc, call->status, (int) call->gone);

    if (call->finished) {
        return NGX_OK;
    }

    call->finished = 1;

    if (call->gone) {
        return NGX_OK;
    }

    if (rc == NGX_ERROR
        || rc == NGX_HTTP_REQUEST_TIME_OUT
        || rc == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || rc == NGX_HTTP_CLOSE)
    {
        ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                      "voice: tool \"%V\" ended without a response (%i)",
                      &sr->uri, rc);
        call->rc = NGX_ERROR;

    } else if (!call->header) {

        /* nginx answered by itself: a return code, an upstream error */

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE
            || rc == NGX_HTTP_CREATED
            || rc == NGX_HTTP_NO_CONTENT)
        {
            call->status = rc;
            call->rc = NGX_OK;

        } else {
            ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                          "voice: tool \"%V\" ended without a response",
                          &sr->uri);
            call->rc = NGX_ERROR;
        }

    } else if (!call->last) {
        ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                      "voice: tool \"%V\" sent an incomplete response",
                      &sr->uri);
        call->rc = NGX_ERROR;

    } else if (call->too_big) {
        ngx_log_error(NGX_LOG_WARN, sr->connection->log, 0,
                      "voice: tool \"%V\" sent more than %uz bytes",
                      &sr->uri, call->max);
        call->rc = NGX_ERROR;

    } else if (call->unreadable) {
        call->rc = NGX_ERROR;

    } else {
        call->rc = NGX_OK;
    }

    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    ngx_post_event(&call->report, &ngx_posted_events);

    /* the upstream leaves its own words in the connection's log */

    sr->connection->log->action = call->action;

    return NGX_OK;
}


static void
ngx_http_voice_tool_timeout(ngx_event_t *ev)
{
    ngx_http_voice_tool_call_t  *call = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "voice: tool \"%V\" timed out", &call->subrequest->uri);

    if (call->report.posted) {
        ngx_delete_posted_event(&call->report);
    }

    call->rc = NGX_DECLINED;
    call->status = 0;
    call->size = 0;

    if (!call->finished) {
        ngx_post_event(&call->abort, &ngx_posted_events);
    }

    ngx_http_voice_tool_deliver(call);
}


static void
ngx_http_voice_tool_report(ngx_event_t *ev)
{
    ngx_http_voice_tool_call_t  *call = ev->data;

    ngx_http_voice_tool_deliver(call);
}


/* the one place done is called; the call is not touched after it */

static void
ngx_http_voice_tool_deliver(ngx_http_voice_tool_call_t *call)
{
    u_char                       *p;
    void                         *data;
    ngx_int_t                     rc;
    ngx_str_t                     body;
    ngx_uint_t                    status;
    ngx_http_voice_tool_done_pt   done;

    if (call->gone) {
        return;
    }

    call->gone = 1;

    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    p = call->body;
    call->body = NULL;

    rc = call->rc;
    status = call->status;

    body.data = p;
    body.len = (rc == NGX_OK && p) ? call->size : 0;

    if (body.data == NULL) {
        body.data = (u_char *) "";
    }

    done = call->done;
    data = call->data;

    call->request->connection->log->action = call->action;

    done(data, rc, status, &body);

    if (p) {
        ngx_free(p);
    }
}


/* the session's pool goes: nothing may fire on the call any more */

static void
ngx_http_voice_tool_cleanup(void *data)
{
    ngx_http_voice_tool_call_t  *call = data;

    call->released = 1;

    ngx_http_voice_tool_stop(call);

    if (call->abort.posted) {
        ngx_delete_posted_event(&call->abort);
    }
}


/* the tool call a (sub)request works for, if any */

static ngx_http_voice_tool_call_t *
ngx_http_voice_tool_owner(ngx_http_request_t *r)
{
    /*
     * The post_subrequest handler survives internal redirects, which clear
     * module contexts, so it is what marks a tool's subrequest.
     */

    for ( /* void */ ; r != r->main; r = r->parent) {
        if (r->post_subrequest
            && r->post_subrequest->handler == ngx_http_voice_tool_finished)
        {
            return r->post_subrequest->data;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_voice_tool_header_filter(ngx_http_request_t *r)
{
    ngx_http_voice_tool_call_t  *call;

    call = ngx_http_voice_tool_owner(r);

    if (call == NULL) {
        return ngx_http_next_header_filter(r);
    }

    if (r == call->subrequest && !call->header) {
        call->header = 1;
        call->status = r->headers_out.status;
    }

    /* what the last header filter would have done, minus any output */

    r->header_sent = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_tool_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t                 *cl;
    ngx_http_voice_tool_call_t  *call;

    call = ngx_http_voice_tool_owner(r);

    if (call == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /*
     * Every buffer is consumed here, so that producers (the upstream's
     * event pipe among them) reuse their buffers as if it had been sent.
     * Errors are never returned: they would mark the client's connection
     * as failed and end the session.
     */

    for (cl = in; cl; cl = cl->next) {

        if (!call->gone && !call->finished) {
            ngx_http_voice_tool_append(call, cl->buf);
        }

        if (cl->buf->in_file) {
            cl->buf->file_pos = cl->buf->file_last;
        }

        if (ngx_buf_in_memory(cl->buf)) {
            cl->buf->pos = cl->buf->last;
        }

        if (r == call->subrequest
            && (cl->buf->last_buf || cl->buf->last_in_chain))
        {
            call->last = 1;
        }
    }

    return NGX_OK;
}


static void
ngx_http_voice_tool_append(ngx_http_voice_tool_call_t *call, ngx_buf_t *b)
{
    off_t    size;
    ssize_t  n;

    if (call->too_big || call->unreadable || ngx_buf_special(b)) {
        return;
    }

    size = ngx_buf_size(b);

    if (size == 0) {
        return;
    }

    if ((off_t) (call->max - call->size) < size) {
        call->too_big = 1;
        return;
    }

    if (call->body == NULL) {
        call->body = ngx_alloc(call->max ? call->max : 1,
                               call->request->connection->log);
        if (call->body == NULL) {
            call->unreadable = 1;
            return;
        }
    }

    if (ngx_buf_in_memory(b)) {
        ngx_memcpy(call->body + call->size, b->pos, (size_t) size);
        call->size += (size_t) size;
        return;
    }

    /* a buffered upstream may have spilled the answer to a temporary file */

    n = ngx_read_file(b->file, call->body + call->size, (size_t) size,
                      b->file_pos);

    if (n != (ssize_t) size) {
        ngx_log_error(NGX_LOG_ERR, call->request->connection->log, 0,
                      "voice: tool response could not be read back from "
                      "\"%s\"", b->file->name.data);
        call->unreadable = 1;
        return;
    }

    call->size += (size_t) size;
}


ngx_int_t
ngx_http_voice_tool_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_voice_tool_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_voice_tool_body_filter;

    return NGX_OK;
}


/* voice_tool name location schema */

char *
ngx_http_voice_tool_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    json_t                     *json, *type;
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    json_error_t                err;
    ngx_array_t               **tools;
    ngx_pool_cleanup_t         *cln;
    ngx_http_voice_llm_tool_t  *tool;

    value = cf->args->elts;
    tools = (ngx_array_t **) (p + cmd->offset);

    if (value[1].len == 0 || value[1].len > NGX_HTTP_VOICE_TOOL_NAME_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tool name \"%V\" must have 1 to %d characters",
                           &value[1], NGX_HTTP_VOICE_TOOL_NAME_MAX);
        return NGX_CONF_ERROR;
    }

    /* the providers accept these characters in function names */

    for (i = 0; i < value[1].len; i++) {
        if (!(isalnum(value[1].data[i]) || value[1].data[i] == '_'
              || value[1].data[i] == '-'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "tool name \"%V\" may only have letters, "
                               "digits, \"_\" and \"-\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (value[2].len == 0 || value[2].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tool location \"%V\" must start with \"/\"",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    json = json_loadb((const char *) value[3].data, value[3].len,
                      JSON_REJECT_DUPLICATES, &err);

    if (json == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tool \"%V\": the schema is not JSON: %s "
                           "(at character %d)", &value[1], err.text,
                           err.position);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        json_decref(json);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_voice_tool_json_cleanup;
    cln->data = json;

    type = json_is_object(json) ? json_object_get(json, "type") : NULL;

    if (type == NULL
        || !json_is_string(type)
        || ngx_strcmp(json_string_value(type), "object") != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tool \"%V\": the schema must be a JSON object "
                           "with \"type\":\"object\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (*tools == NULL || *tools == NGX_CONF_UNSET_PTR) {
        *tools = ngx_array_create(cf->pool, 4,
                                  sizeof(ngx_http_voice_llm_tool_t));
        if (*tools == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    tool = (*tools)->elts;

    for (i = 0; i < (*tools)->nelts; i++) {
        if (tool[i].name.len == value[1].len
            && ngx_strncmp(tool[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate tool \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    tool = ngx_array_push(*tools);
    if (tool == NULL) {
        return NGX_CONF_ERROR;
    }

    tool->name = value[1];
    tool->location = value[2];
    tool->schema = value[3];
    tool->json = json;

    return NGX_CONF_OK;
}


static void
ngx_http_voice_tool_json_cleanup(void *data)
{
    json_decref((json_t *) data);
}
