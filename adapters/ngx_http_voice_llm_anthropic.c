
/*
 * Anthropic Messages, streaming.
 *
 * The reply is a sequence of content blocks: text blocks stream their
 * text as deltas; a tool_use block names a call and streams its input as
 * pieces of JSON, complete at the block's stop.  The stop reason comes in
 * message_delta, the end in message_stop.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_voice_llm.h"
#include "ngx_http_voice_llm_stream.h"
#include "ngx_http_voice_llm_wire.h"


/* tool_use blocks of one reply kept at once */
#define NGX_HTTP_VOICE_ANT_MAX_CALLS  16

#define NGX_HTTP_VOICE_ANT_FINISH     32

#define NGX_HTTP_VOICE_ANT_VERSION    "anthropic-version: 2023-06-01"


typedef struct {
    json_int_t                   index;        /* the block's */
    ngx_str_t                    id;
    ngx_str_t                    name;
    ngx_http_voice_llm_buf_t     input;
    unsigned                     used:1;
    unsigned                     reported:1;
} ngx_http_voice_ant_call_t;


typedef struct {
    ngx_http_voice_ant_call_t    calls[NGX_HTTP_VOICE_ANT_MAX_CALLS];
    ngx_uint_t                   ncalls;
    ngx_uint_t                   reported;
    size_t                       input;        /* all calls' bytes */
    u_char                       finish[NGX_HTTP_VOICE_ANT_FINISH];
    size_t                       finish_len;
} ngx_http_voice_ant_ctx_t;


static char *ngx_http_voice_ant_init_conf(ngx_conf_t *cf,
    ngx_http_voice_llm_conf_t *conf);
static ngx_int_t ngx_http_voice_ant_start(ngx_http_voice_llm_t *llm);
static ngx_int_t ngx_http_voice_ant_event(ngx_http_voice_llm_stream_t *st,
    ngx_http_voice_sse_event_t *ev);
static ngx_int_t ngx_http_voice_ant_dispatch(ngx_http_voice_llm_stream_t *st,
    ngx_str_t *type, json_t *root);
static ngx_int_t ngx_http_voice_ant_block_start(
    ngx_http_voice_llm_stream_t *st, json_t *root);
static ngx_int_t ngx_http_voice_ant_block_delta(
    ngx_http_voice_llm_stream_t *st, json_t *root);
static ngx_int_t ngx_http_voice_ant_block_stop(
    ngx_http_voice_llm_stream_t *st, json_t *root);
static ngx_int_t ngx_http_voice_ant_stop_reason(
    ngx_http_voice_llm_stream_t *st, json_t *root);
static ngx_int_t ngx_http_voice_ant_end(ngx_http_voice_llm_stream_t *st);
static ngx_http_voice_ant_call_t *ngx_http_voice_ant_call(
    ngx_http_voice_ant_ctx_t *ctx, json_t *root);
static ngx_int_t ngx_http_voice_ant_malformed(ngx_http_voice_llm_stream_t *st,
    const char *what);


const ngx_http_voice_llm_engine_t  ngx_http_voice_llm_anthropic = {
    "anthropic",
    ngx_http_voice_ant_init_conf,
    ngx_http_voice_ant_start,
    ngx_http_voice_llm_stream_cancel
};


static char *
ngx_http_voice_ant_init_conf(ngx_conf_t *cf, ngx_http_voice_llm_conf_t *conf)
{
    return ngx_http_voice_llm_stream_conf(cf, conf,
                                       "https://api.anthropic.com/v1/messages",
                                       "claude-3-5-haiku-latest");
}


static ngx_int_t
ngx_http_voice_ant_start(ngx_http_voice_llm_t *llm)
{
    json_t                       *body;
    ngx_int_t                     rc;
    ngx_http_voice_llm_stream_t  *st;

    ngx_http_voice_llm_stream_cancel(llm);

    st = ngx_http_voice_llm_stream_create(llm, sizeof(ngx_http_voice_ant_ctx_t),
                                          ngx_http_voice_ant_event);
    if (st == NULL) {
        return NGX_ERROR;
    }

    body = ngx_http_voice_llm_wire_anthropic(llm->conf, llm->messages);
    rc = ngx_http_voice_llm_stream_start(st, body, "x-api-key: ",
                                         NGX_HTTP_VOICE_ANT_VERSION);
    json_decref(body);

    return rc;
}


static ngx_int_t
ngx_http_voice_ant_event(ngx_http_voice_llm_stream_t *st,
    ngx_http_voice_sse_event_t *ev)
{
    json_t        *root;
    ngx_int_t      rc;
    ngx_str_t      type;
    json_error_t   err;

    root = json_loadb((const char *) ev->data.data, ev->data.len, 0, &err);

    if (!json_is_object(root)) {
        ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                      "voice: llm anthropic sent data that is not a JSON "
                      "object: %s", root ? "another value" : err.text);
        json_decref(root);
        return ngx_http_voice_llm_stream_fail(st, 0,
                                              NGX_HTTP_VOICE_LLM_MALFORMED);
    }

    /* the data's own type says what it is; the event name is a fallback */

    if (ngx_http_voice_llm_json_str(root, "type", &type) != NGX_OK) {
        type = ev->name;
    }

    rc = ngx_http_voice_ant_dispatch(st, &type, root);

    json_decref(root);

    return rc;
}


#define ngx_http_voice_ant_is(type, s)                                       \
    ((type)->len == sizeof(s) - 1                                            \
     && ngx_strncmp((type)->data, s, sizeof(s) - 1) == 0)


static ngx_int_t
ngx_http_voice_ant_dispatch(ngx_http_voice_llm_stream_t *st, ngx_str_t *type,
    json_t *root)
{
    if (ngx_http_voice_ant_is(type, "content_block_delta")) {
        return ngx_http_voice_ant_block_delta(st, root);
    }

    if (ngx_http_voice_ant_is(type, "content_block_start")) {
        return ngx_http_voice_ant_block_start(st, root);
    }

    if (ngx_http_voice_ant_is(type, "content_block_stop")) {
        return ngx_http_voice_ant_block_stop(st, root);
    }

    if (ngx_http_voice_ant_is(type, "message_delta")) {
        return ngx_http_voice_ant_stop_reason(st, root);
    }

    if (ngx_http_voice_ant_is(type, "message_stop")) {
        return ngx_http_voice_ant_end(st);
    }

    if (ngx_http_voice_ant_is(type, "error")) {
        return ngx_http_voice_llm_stream_error(st,
                                               json_object_get(root, "error"));
    }

    /* message_start, ping, and whatever comes later */

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_ant_block_start(ngx_http_voice_llm_stream_t *st, json_t *root)
{
    json_t                     *block, *index;
    ngx_str_t                   type, s;
    ngx_http_voice_ant_ctx_t   *ctx;
    ngx_http_voice_ant_call_t  *call;

    ctx = st->data;

    block = json_object_get(root, "content_block");
    index = json_object_get(root, "index");

    if (!json_is_object(block) || !json_is_integer(index)) {
        return ngx_http_voice_ant_malformed(st, "content_block_start");
    }

    if (ngx_http_voice_llm_json_str(block, "type", &type) != NGX_OK) {
        return ngx_http_voice_ant_malformed(st, "content_block_start");
    }

    if (ngx_http_voice_ant_is(&type, "text")) {
        if (ngx_http_voice_llm_json_str(block, "text", &s) == NGX_OK) {
            return ngx_http_voice_llm_stream_token(st, s.data, s.len);
        }

        return NGX_OK;
    }

    if (!ngx_http_voice_ant_is(&type, "tool_use")) {
        /* thinking and other blocks say nothing to the user */
        return NGX_OK;
    }

    if (ngx_http_voice_ant_call(ctx, root) != NULL
        || ctx->ncalls == NGX_HTTP_VOICE_ANT_MAX_CALLS)
    {
        return ngx_http_voice_ant_malformed(st, "tool_use block");
    }

    call = &ctx->calls[ctx->ncalls++];
    call->used = 1;
    call->index = json_integer_value(index);

    if (ngx_http_voice_llm_json_str(block, "id", &s) != NGX_OK || s.len == 0) {
        return ngx_http_voice_ant_malformed(st, "tool_use block id");
    }

    call->id.data = ngx_pstrdup(st->pool, &s);
    call->id.len = s.len;

    if (ngx_http_voice_llm_json_str(block, "name", &s) != NGX_OK
        || s.len == 0)
    {
        return ngx_http_voice_ant_malformed(st, "tool_use block name");
    }

    call->name.data = ngx_pstrdup(st->pool, &s);
    call->name.len = s.len;

    if (call->id.data == NULL || call->name.data == NULL) {
        return ngx_http_voice_llm_stream_fail(st, 0,
                                              "out of memory for a tool call");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_ant_block_delta(ngx_http_voice_llm_stream_t *st, json_t *root)
{
    json_t                     *delta;
    ngx_int_t                   rc;
    ngx_str_t                   type, s;
    ngx_http_voice_ant_ctx_t   *ctx;
    ngx_http_voice_ant_call_t  *call;

    ctx = st->data;

    delta = json_object_get(root, "delta");

    if (!json_is_object(delta)
        || ngx_http_voice_llm_json_str(delta, "type", &type) != NGX_OK)
    {
        return ngx_http_voice_ant_malformed(st, "content_block_delta");
    }

    if (ngx_http_voice_ant_is(&type, "text_delta")) {
        if (ngx_http_voice_llm_json_str(delta, "text", &s) != NGX_OK) {
            return ngx_http_voice_ant_malformed(st, "text_delta");
        }

        return ngx_http_voice_llm_stream_token(st, s.data, s.len);
    }

    if (!ngx_http_voice_ant_is(&type, "input_json_delta")) {
        return NGX_OK;
    }

    call = ngx_http_voice_ant_call(ctx, root);

    if (call == NULL || call->reported
        || ngx_http_voice_llm_json_str(delta, "partial_json", &s) != NGX_OK)
    {
        return ngx_http_voice_ant_malformed(st, "input_json_delta");
    }

    if (s.len > st->llm->conf->max_text - ctx->input) {
        ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                      "voice: llm anthropic tool call input is longer than "
                      "voice_llm_max_text");
        return ngx_http_voice_llm_stream_fail(st, 0,
                                              "the LLM tool call is too long");
    }

    rc = ngx_http_voice_llm_buf_add(st->pool, &call->input,
                                    (const char *) s.data, s.len,
                                    st->llm->conf->max_text);
    if (rc != NGX_OK) {
        return ngx_http_voice_llm_stream_fail(st, 0,
                                              "out of memory for a tool call");
    }

    ctx->input += s.len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_ant_block_stop(ngx_http_voice_llm_stream_t *st, json_t *root)
{
    ngx_str_t                   input;
    ngx_http_voice_ant_ctx_t   *ctx;
    ngx_http_voice_ant_call_t  *call;

    ctx = st->data;

    call = ngx_http_voice_ant_call(ctx, root);

    if (call == NULL || call->reported) {
        /* a text block, or a repeat */
        return NGX_OK;
    }

    call->reported = 1;
    ctx->reported++;

    if (call->input.len) {
        input.data = call->input.data;
        input.len = call->input.len;

    } else {
        ngx_str_set(&input, "{}");
    }

    return ngx_http_voice_llm_stream_tool_call(st, &call->id, &call->name,
                                               &input);
}


static ngx_int_t
ngx_http_voice_ant_stop_reason(ngx_http_voice_llm_stream_t *st, json_t *root)
{
    json_t                    *delta;
    ngx_str_t                  s;
    ngx_http_voice_ant_ctx_t  *ctx;

    ctx = st->data;

    delta = json_object_get(root, "delta");

    if (!json_is_object(delta)
        || ngx_http_voice_llm_json_str(delta, "stop_reason", &s) != NGX_OK)
    {
        return NGX_OK;
    }

    /* in the words of the other engines */

    if (ngx_http_voice_ant_is(&s, "end_turn")
        || ngx_http_voice_ant_is(&s, "stop_sequence"))
    {
        ngx_str_set(&s, "stop");

    } else if (ngx_http_voice_ant_is(&s, "tool_use")) {
        ngx_str_set(&s, "tool_calls");

    } else if (ngx_http_voice_ant_is(&s, "max_tokens")) {
        ngx_str_set(&s, "length");
    }

    ctx->finish_len = ngx_min(s.len, NGX_HTTP_VOICE_ANT_FINISH);
    ngx_memcpy(ctx->finish, s.data, ctx->finish_len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_ant_end(ngx_http_voice_llm_stream_t *st)
{
    ngx_int_t                   rc;
    ngx_str_t                   finish, input;
    ngx_uint_t                  i;
    ngx_http_voice_ant_ctx_t   *ctx;
    ngx_http_voice_ant_call_t  *call;

    ctx = st->data;

    /* a tool_use block the stream never stopped is complete by now */

    for (i = 0; i < ctx->ncalls; i++) {
        call = &ctx->calls[i];

        if (call->reported) {
            continue;
        }

        call->reported = 1;
        ctx->reported++;

        if (call->input.len) {
            input.data = call->input.data;
            input.len = call->input.len;

        } else {
            ngx_str_set(&input, "{}");
        }

        rc = ngx_http_voice_llm_stream_tool_call(st, &call->id, &call->name,
                                                 &input);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (ctx->reported) {
        ngx_str_set(&finish, "tool_calls");

    } else if (ctx->finish_len) {
        finish.data = ctx->finish;
        finish.len = ctx->finish_len;

    } else {
        ngx_str_set(&finish, "stop");
    }

    return ngx_http_voice_llm_stream_done(st, &finish);
}


/* the tool_use block the event's index names, or NULL */

static ngx_http_voice_ant_call_t *
ngx_http_voice_ant_call(ngx_http_voice_ant_ctx_t *ctx, json_t *root)
{
    json_t      *index;
    json_int_t   n;
    ngx_uint_t   i;

    index = json_object_get(root, "index");

    if (!json_is_integer(index)) {
        return NULL;
    }

    n = json_integer_value(index);

    for (i = 0; i < ctx->ncalls; i++) {
        if (ctx->calls[i].index == n) {
            return &ctx->calls[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_voice_ant_malformed(ngx_http_voice_llm_stream_t *st,
    const char *what)
{
    ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                  "voice: llm anthropic sent a bad %s", what);

    return ngx_http_voice_llm_stream_fail(st, 0, NGX_HTTP_VOICE_LLM_MALFORMED);
}
