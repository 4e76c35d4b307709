
/*
 * OpenAI Chat Completions, streaming, and every server that speaks it
 * (vLLM, llama.cpp, Ollama, Groq, ...).
 *
 * Text comes as choices[0].delta.content pieces.  Tool calls come as
 * fragments keyed by index: the first of an index names the call, the
 * others carry pieces of its arguments; the calls are reported whole,
 * in index order, once the choice has a finish reason (or at [DONE]).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_voice_llm.h"
#include "ngx_http_voice_llm_stream.h"
#include "ngx_http_voice_llm_wire.h"


/* tool calls of one reply kept apart; a higher index is malformed */
#define NGX_HTTP_VOICE_OAI_MAX_CALLS  16

#define NGX_HTTP_VOICE_OAI_FINISH     32

#define NGX_HTTP_VOICE_OAI_NOMEM      "out of memory for a tool call"


typedef struct {
    ngx_str_t                    id;
    ngx_str_t                    name;
    ngx_http_voice_llm_buf_t     args;
    unsigned                     used:1;
} ngx_http_voice_oai_call_t;


typedef struct {
    ngx_http_voice_oai_call_t    calls[NGX_HTTP_VOICE_OAI_MAX_CALLS];
    ngx_uint_t                   ncalls;       /* the highest index + 1 */
    size_t                       args;         /* all arguments' bytes */
    u_char                       finish[NGX_HTTP_VOICE_OAI_FINISH];
    size_t                       finish_len;
    unsigned                     reported:1;
} ngx_http_voice_oai_ctx_t;


static char *ngx_http_voice_oai_init_conf(ngx_conf_t *cf,
    ngx_http_voice_llm_conf_t *conf);
static ngx_int_t ngx_http_voice_oai_start(ngx_http_voice_llm_t *llm);
static ngx_int_t ngx_http_voice_oai_event(ngx_http_voice_llm_stream_t *st,
    ngx_http_voice_sse_event_t *ev);
static ngx_int_t ngx_http_voice_oai_choice(ngx_http_voice_llm_stream_t *st,
    json_t *choice);
static ngx_int_t ngx_http_voice_oai_fragments(
    ngx_http_voice_llm_stream_t *st, json_t *calls);
static ngx_int_t ngx_http_voice_oai_report(ngx_http_voice_llm_stream_t *st);
static ngx_int_t ngx_http_voice_oai_end(ngx_http_voice_llm_stream_t *st);


const ngx_http_voice_llm_engine_t  ngx_http_voice_llm_openai = {
    "openai",
    ngx_http_voice_oai_init_conf,
    ngx_http_voice_oai_start,
    ngx_http_voice_llm_stream_cancel
};


static char *
ngx_http_voice_oai_init_conf(ngx_conf_t *cf, ngx_http_voice_llm_conf_t *conf)
{
    return ngx_http_voice_llm_stream_conf(cf, conf,
                              "https://api.openai.com/v1/chat/completions",
                              "gpt-4o-mini");
}


static ngx_int_t
ngx_http_voice_oai_start(ngx_http_voice_llm_t *llm)
{
    json_t                       *body;
    ngx_int_t                     rc;
    ngx_http_voice_llm_stream_t  *st;

    /* a reply still running is the glue's mistake: it goes first */
    ngx_http_voice_llm_stream_cancel(llm);

    st = ngx_http_voice_llm_stream_create(llm, sizeof(ngx_http_voice_oai_ctx_t),
                                          ngx_http_voice_oai_event);
    if (st == NULL) {
        return NGX_ERROR;
    }

    body = ngx_http_voice_llm_wire_openai(llm->conf, llm->messages);
    rc = ngx_http_voice_llm_stream_start(st, body, "Authorization: Bearer ",
                                         NULL);
    json_decref(body);

    return rc;
}


static ngx_int_t
ngx_http_voice_oai_event(ngx_http_voice_llm_stream_t *st,
    ngx_http_voice_sse_event_t *ev)
{
    json_t        *root, *error, *choices;
    ngx_int_t      rc;
    json_error_t   err;

    if (ev->data.len == 6 && ngx_strncmp(ev->data.data, "[DONE]", 6) == 0) {
        return ngx_http_voice_oai_end(st);
    }

    root = json_loadb((const char *) ev->data.data, ev->data.len, 0, &err);

    if (!json_is_object(root)) {
        ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                      "voice: llm openai sent data that is not a JSON "
                      "object: %s", root ? "another value" : err.text);
        json_decref(root);
        return ngx_http_voice_llm_stream_fail(st, 0,
                                              NGX_HTTP_VOICE_LLM_MALFORMED);
    }

    error = json_object_get(root, "error");

    if (error && !json_is_null(error)) {
        rc = ngx_http_voice_llm_stream_error(st, error);
        json_decref(root);
        return rc;
    }

    /* a usage chunk has no choices; the rest has one */

    choices = json_object_get(root, "choices");
    rc = NGX_OK;

    if (json_is_array(choices) && json_array_size(choices)) {
        rc = ngx_http_voice_oai_choice(st, json_array_get(choices, 0));
    }

    json_decref(root);

    return rc;
}


static ngx_int_t
ngx_http_voice_oai_choice(ngx_http_voice_llm_stream_t *st, json_t *choice)
{
    json_t                    *delta, *calls;
    ngx_int_t                  rc;
    ngx_str_t                  s;
    ngx_http_voice_oai_ctx_t  *ctx;

    ctx = st->data;

    if (!json_is_object(choice)) {
        return ngx_http_voice_llm_stream_fail(st, 0,
                                              NGX_HTTP_VOICE_LLM_MALFORMED);
    }

    delta = json_object_get(choice, "delta");

    if (json_is_object(delta)) {

        if (ngx_http_voice_llm_json_str(delta, "content", &s) == NGX_OK) {
            rc = ngx_http_voice_llm_stream_token(st, s.data, s.len);
            if (rc != NGX_OK) {
                return rc;
            }
        }

        calls = json_object_get(delta, "tool_calls");

        if (json_is_array(calls)) {
            rc = ngx_http_voice_oai_fragments(st, calls);
            if (rc != NGX_OK) {
                return rc;
            }
        }
    }

    if (ngx_http_voice_llm_json_str(choice, "finish_reason", &s) == NGX_OK) {
        ctx->finish_len = ngx_min(s.len, NGX_HTTP_VOICE_OAI_FINISH);
        ngx_memcpy(ctx->finish, s.data, ctx->finish_len);

        if (ctx->ncalls && !ctx->reported) {
            return ngx_http_voice_oai_report(st);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_oai_fragments(ngx_http_voice_llm_stream_t *st, json_t *calls)
{
    size_t                      i;
    json_t                     *frag, *index, *fn;
    ngx_int_t                   rc;
    ngx_str_t                   s;
    ngx_uint_t                  n;
    ngx_http_voice_oai_ctx_t   *ctx;
    ngx_http_voice_oai_call_t  *call;

    ctx = st->data;

    json_array_foreach(calls, i, frag) {

        if (!json_is_object(frag)) {
            goto malformed;
        }

        index = json_object_get(frag, "index");

        if (index == NULL) {
            /* some servers leave it out: position in the array then */
            n = i;

        } else if (json_is_integer(index) && json_integer_value(index) >= 0
                   && json_integer_value(index) < NGX_HTTP_VOICE_OAI_MAX_CALLS)
        {
            n = (ngx_uint_t) json_integer_value(index);

        } else {
            goto malformed;
        }

        if (n >= NGX_HTTP_VOICE_OAI_MAX_CALLS) {
            goto malformed;
        }

        if (ctx->reported) {
            /* calls after the finish reason: too late to run them */
            continue;
        }

        call = &ctx->calls[n];
        call->used = 1;
        ctx->ncalls = ngx_max(ctx->ncalls, n + 1);

        if (call->id.len == 0
            && ngx_http_voice_llm_json_str(frag, "id", &s) == NGX_OK
            && s.len)
        {
            call->id.data = ngx_pstrdup(st->pool, &s);
            call->id.len = s.len;

            if (call->id.data == NULL) {
                return ngx_http_voice_llm_stream_fail(st, 0,
                                                      NGX_HTTP_VOICE_OAI_NOMEM);
            }
        }

        fn = json_object_get(frag, "function");

        if (!json_is_object(fn)) {
            continue;
        }

        if (call->name.len == 0
            && ngx_http_voice_llm_json_str(fn, "name", &s) == NGX_OK
            && s.len)
        {
            call->name.data = ngx_pstrdup(st->pool, &s);
            call->name.len = s.len;

            if (call->name.data == NULL) {
                return ngx_http_voice_llm_stream_fail(st, 0,
                                                      NGX_HTTP_VOICE_OAI_NOMEM);
            }
        }

        if (ngx_http_voice_llm_json_str(fn, "arguments", &s) != NGX_OK
            || s.len == 0)
        {
            continue;
        }

        /* all calls' arguments of a reply share the reply's bound */

        if (s.len > st->llm->conf->max_text - ctx->args) {
            ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                          "voice: llm openai tool call arguments are longer "
                          "than voice_llm_max_text");
            return ngx_http_voice_llm_stream_fail(st, 0,
                                          "the LLM tool call is too long");
        }

        rc = ngx_http_voice_llm_buf_add(st->pool, &call->args,
                                        (const char *) s.data, s.len,
                                        st->llm->conf->max_text);
        if (rc != NGX_OK) {
            return ngx_http_voice_llm_stream_fail(st, 0,
                                                  NGX_HTTP_VOICE_OAI_NOMEM);
        }

        ctx->args += s.len;
    }

    return NGX_OK;

malformed:

    ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                  "voice: llm openai sent a bad tool call fragment");

    return ngx_http_voice_llm_stream_fail(st, 0, NGX_HTTP_VOICE_LLM_MALFORMED);
}


/* every call, whole, in index order, once */

static ngx_int_t
ngx_http_voice_oai_report(ngx_http_voice_llm_stream_t *st)
{
    ngx_int_t                   rc;
    ngx_str_t                   args;
    ngx_uint_t                  i;
    ngx_http_voice_oai_ctx_t   *ctx;
    ngx_http_voice_oai_call_t  *call;

    ctx = st->data;
    ctx->reported = 1;

    for (i = 0; i < ctx->ncalls; i++) {
        call = &ctx->calls[i];

        if (!call->used) {
            continue;
        }

        if (call->id.len == 0 || call->name.len == 0) {
            ngx_log_error(NGX_LOG_WARN, st->llm->log, 0,
                          "voice: llm openai tool call %ui has no %s",
                          i, call->id.len ? "name" : "id");
            return ngx_http_voice_llm_stream_fail(st, 0,
                                                  NGX_HTTP_VOICE_LLM_MALFORMED);
        }

        if (call->args.len) {
            args.data = call->args.data;
            args.len = call->args.len;

        } else {
            ngx_str_set(&args, "{}");
        }

        rc = ngx_http_voice_llm_stream_tool_call(st, &call->id, &call->name,
                                                 &args);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


/* data: [DONE] */

static ngx_int_t
ngx_http_voice_oai_end(ngx_http_voice_llm_stream_t *st)
{
    ngx_int_t                  rc;
    ngx_str_t                  finish;
    ngx_http_voice_oai_ctx_t  *ctx;

    ctx = st->data;

    if (ctx->ncalls && !ctx->reported) {
        rc = ngx_http_voice_oai_report(st);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (ctx->ncalls) {
        ngx_str_set(&finish, "tool_calls");

    } else if (ctx->finish_len) {
        finish.data = ctx->finish;
        finish.len = ctx->finish_len;

    } else {
        ngx_str_set(&finish, "stop");
    }

    return ngx_http_voice_llm_stream_done(st, &finish);
}
