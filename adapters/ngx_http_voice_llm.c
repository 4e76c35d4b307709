
/*
 * The session's side of the language model: the conversation, one reply
 * at a time, its timers and retries, tool calls, and what the client is
 * told.  Engines only speak their provider's wire format.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_session.h"
#include "ngx_http_voice_llm.h"
#include "ngx_http_voice_upstream.h"
#include "ngx_http_voice_tool.h"


/* voice_llm_max_text is bounded so one static buffer holds any message */
#define NGX_HTTP_VOICE_LLM_MAX_TEXT  (32 * 1024)


static ngx_http_voice_llm_message_t *ngx_http_voice_llm_message(
    ngx_uint_t role, ngx_uint_t turn, ngx_str_t *text, ngx_str_t *id,
    ngx_str_t *name);
static void ngx_http_voice_llm_append(ngx_http_voice_llm_t *llm,
    ngx_http_voice_llm_message_t *m);
static void ngx_http_voice_llm_trim(ngx_http_voice_llm_t *llm);
static ngx_int_t ngx_http_voice_llm_start(ngx_http_voice_llm_t *llm);
static void ngx_http_voice_llm_stop(ngx_http_voice_llm_t *llm);
static void ngx_http_voice_llm_free_calls(ngx_http_voice_llm_t *llm);
static ngx_int_t ngx_http_voice_llm_event(ngx_http_voice_llm_t *llm,
    ngx_http_voice_event_e event, u_char *data, size_t len);
static ngx_int_t ngx_http_voice_llm_send(ngx_http_voice_llm_t *llm,
    size_t n);
static void ngx_http_voice_llm_timeout(ngx_event_t *ev);
static void ngx_http_voice_llm_retry(ngx_event_t *ev);
static void ngx_http_voice_llm_tool_done(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);
static void ngx_http_voice_llm_cleanup(void *data);
static ngx_int_t ngx_http_voice_llm_copy(ngx_str_t *dst, ngx_str_t *src);


static const ngx_http_voice_llm_engine_t  *ngx_http_voice_llm_engines[] = {
    [NGX_HTTP_VOICE_LLM_OFF] = NULL,
    [NGX_HTTP_VOICE_LLM_EMBEDDED] = &ngx_http_voice_llm_embedded,
    [NGX_HTTP_VOICE_LLM_OPENAI] = &ngx_http_voice_llm_openai,
    [NGX_HTTP_VOICE_LLM_ANTHROPIC] = &ngx_http_voice_llm_anthropic,
};


static ngx_conf_enum_t  ngx_http_voice_llm_names[] = {
    { ngx_string("off"), NGX_HTTP_VOICE_LLM_OFF },
    { ngx_string("embedded"), NGX_HTTP_VOICE_LLM_EMBEDDED },
    { ngx_string("openai"), NGX_HTTP_VOICE_LLM_OPENAI },
    { ngx_string("anthropic"), NGX_HTTP_VOICE_LLM_ANTHROPIC },
    { ngx_null_string, 0 }
};


static u_char  ngx_http_voice_llm_json[6 * NGX_HTTP_VOICE_LLM_MAX_TEXT + 512];


ngx_http_voice_llm_t *
ngx_http_voice_llm_open(ngx_http_voice_llm_conf_t *conf, void *session,
    ngx_http_request_t *r)
{
    ngx_pool_cleanup_t    *cln;
    ngx_http_voice_llm_t  *llm;

    llm = ngx_pcalloc(r->pool, sizeof(ngx_http_voice_llm_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (llm == NULL || cln == NULL) {
        return NULL;
    }

    llm->reply.data = ngx_pnalloc(r->pool, conf->max_text);
    if (llm->reply.data == NULL) {
        return NULL;
    }

    llm->engine = ngx_http_voice_llm_engines[conf->engine];
    llm->conf = conf;
    llm->session = session;
    llm->request = r;
    llm->log = r->connection->log;
    llm->reply_size = conf->max_text;

    llm->first_timer.handler = ngx_http_voice_llm_timeout;
    llm->total_timer.handler = ngx_http_voice_llm_timeout;
    llm->retry_timer.handler = ngx_http_voice_llm_retry;
    llm->first_timer.data = llm;
    llm->total_timer.data = llm;
    llm->retry_timer.data = llm;
    llm->first_timer.log = llm->log;
    llm->total_timer.log = llm->log;
    llm->retry_timer.log = llm->log;
    llm->first_timer.cancelable = 1;
    llm->total_timer.cancelable = 1;
    llm->retry_timer.cancelable = 1;

    cln->handler = ngx_http_voice_llm_cleanup;
    cln->data = llm;

    return llm;
}


/* a user turn (a final transcript or text.input): the reply is its cue */

ngx_int_t
ngx_http_voice_llm_user_turn(ngx_http_voice_llm_t *llm, ngx_uint_t turn,
    u_char *text, size_t len)
{
    ngx_str_t                      s;
    ngx_http_voice_input_t         in;
    ngx_http_voice_llm_message_t  *m;

    s.data = text;
    s.len = ngx_min(len, llm->conf->max_text);

    if (turn <= llm->last_turn) {
        turn = llm->last_turn + 1;
    }

    m = ngx_http_voice_llm_message(NGX_HTTP_VOICE_LLM_USER, turn, &s, NULL,
                                   NULL);
    if (m == NULL) {
        return NGX_ERROR;
    }

    if (llm->input) {
        ngx_free(llm->input);
    }

    llm->input = m;
    llm->last_turn = turn;

    in.data = NULL;
    in.len = 0;
    in.msg = NULL;

    return ngx_http_voice_session_event(llm->session,
                                        NGX_HTTP_VOICE_EV_USER_TURN, &in);
}


/* the THINK action: the user's turn joins the conversation, a reply starts */

ngx_int_t
ngx_http_voice_llm_think(ngx_http_voice_llm_t *llm)
{
    ngx_http_voice_llm_message_t  *m;

    m = llm->input;
    llm->input = NULL;

    if (m == NULL) {
        return NGX_OK;
    }

    ngx_http_voice_llm_append(llm, m);
    ngx_http_voice_llm_trim(llm);

    llm->turn = m->turn;
    llm->reply.len = 0;
    llm->attempt = 0;
    llm->answered = 0;
    llm->started = ngx_current_msec;

    ngx_add_timer(&llm->first_timer, llm->conf->first_token_timeout);
    ngx_add_timer(&llm->total_timer, llm->conf->timeout);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, llm->log, 0,
                   "voice: llm %s reply to turn %ui", llm->engine->name,
                   llm->turn);

    return ngx_http_voice_llm_start(llm);
}


static ngx_int_t
ngx_http_voice_llm_start(ngx_http_voice_llm_t *llm)
{
    if (llm->engine->start(llm) == NGX_OK) {
        llm->streaming = 1;
        return NGX_OK;
    }

    ngx_http_voice_llm_stop(llm);

    llm->error_code = "LLM_FAIL";
    llm->error = "the language model could not be reached";

    return ngx_http_voice_llm_event(llm, NGX_HTTP_VOICE_EV_LLM_FAILED,
                                    NULL, 0);
}


/* ---- reports from engines ----------------------------------------------- */

ngx_int_t
ngx_http_voice_llm_token(ngx_http_voice_llm_t *llm, const u_char *text,
    size_t len)
{
    size_t  n;

    if (llm->closed || !llm->streaming || len == 0) {
        return llm->closed ? NGX_ERROR : NGX_OK;
    }

    if (!llm->answered) {
        llm->answered = 1;

        if (llm->first_timer.timer_set) {
            ngx_del_timer(&llm->first_timer);
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, llm->log, 0,
                       "voice: llm first token of turn %ui after %M ms",
                       llm->turn, ngx_current_msec - llm->started);
    }

    /* the client gets every piece; memory keeps what fits the bound */

    n = ngx_min(len, llm->reply_size - llm->reply.len);
    ngx_memcpy(llm->reply.data + llm->reply.len, text, n);
    llm->reply.len += n;

    return ngx_http_voice_llm_event(llm, NGX_HTTP_VOICE_EV_LLM_TOKEN,
                                    (u_char *) text, len);
}


ngx_int_t
ngx_http_voice_llm_tool_call(ngx_http_voice_llm_t *llm, ngx_str_t *id,
    ngx_str_t *name, ngx_str_t *arguments)
{
    ngx_uint_t                  i;
    ngx_http_voice_llm_call_t  *call;
    ngx_http_voice_llm_tool_t  *tool;

    if (llm->closed || !llm->streaming) {
        return llm->closed ? NGX_ERROR : NGX_OK;
    }

    for (i = 0; i < llm->ncalls; i++) {
        if (llm->calls[i].id.len == id->len
            && ngx_strncmp(llm->calls[i].id.data, id->data, id->len) == 0)
        {
            /* a call id runs once, whatever the stream repeats */
            return NGX_OK;
        }
    }

    if (llm->ncalls == NGX_HTTP_VOICE_LLM_MAX_CALLS) {
        ngx_log_error(NGX_LOG_WARN, llm->log, 0,
                      "voice: the model called more than %d tools at once, "
                      "\"%V\" ignored", NGX_HTTP_VOICE_LLM_MAX_CALLS, name);
        return NGX_OK;
    }

    call = &llm->calls[llm->ncalls];
    ngx_memzero(call, sizeof(ngx_http_voice_llm_call_t));
    call->llm = llm;

    if (ngx_http_voice_llm_copy(&call->id, id) != NGX_OK
        || ngx_http_voice_llm_copy(&call->name, name) != NGX_OK
        || ngx_http_voice_llm_copy(&call->arguments, arguments) != NGX_OK)
    {
        ngx_http_voice_llm_free_calls(llm);
        return NGX_ERROR;
    }

    llm->ncalls++;

    if (llm->conf->tools) {
        tool = llm->conf->tools->elts;

        for (i = 0; i < llm->conf->tools->nelts; i++) {
            if (tool[i].name.len == name->len
                && ngx_strncmp(tool[i].name.data, name->data, name->len) == 0)
            {
                call->tool = &tool[i];
                break;
            }
        }
    }

    /* the client has heard from the model: no retry from here on */

    llm->answered = 1;

    if (llm->first_timer.timer_set) {
        ngx_del_timer(&llm->first_timer);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_voice_llm_done(ngx_http_voice_llm_t *llm, ngx_str_t *finish)
{
    if (llm->closed) {
        return NGX_ERROR;
    }

    llm->streaming = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, llm->log, 0,
                   "voice: llm reply to turn %ui done: %V", llm->turn,
                   finish);

    if (llm->ncalls) {
        return ngx_http_voice_llm_event(llm, NGX_HTTP_VOICE_EV_LLM_TOOL_CALL,
                                        NULL, 0);
    }

    ngx_http_voice_llm_stop(llm);

    return ngx_http_voice_llm_event(llm, NGX_HTTP_VOICE_EV_LLM_DONE, NULL, 0);
}


ngx_int_t
ngx_http_voice_llm_failed(ngx_http_voice_llm_t *llm, ngx_uint_t retryable,
    const char *message)
{
    ngx_msec_t  delay;

    if (llm->closed) {
        return NGX_ERROR;
    }

    llm->streaming = 0;

    /* what the client has seen cannot be taken back: no retry then */

    if (retryable && !llm->answered && llm->attempt < llm->conf->retries) {
        delay = ngx_http_voice_upstream_backoff(llm->attempt++);

        ngx_log_error(NGX_LOG_WARN, llm->log, 0,
                      "voice: llm reply to turn %ui failed: %s, "
                      "retry %ui in %M ms", llm->turn, message,
                      llm->attempt, delay);

        ngx_add_timer(&llm->retry_timer, delay);
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_WARN, llm->log, 0,
                  "voice: llm reply to turn %ui failed: %s",
                  llm->turn, message);

    ngx_http_voice_llm_stop(llm);

    llm->error_code = "LLM_FAIL";
    llm->error = message;

    return ngx_http_voice_llm_event(llm, NGX_HTTP_VOICE_EV_LLM_FAILED,
                                    NULL, 0);
}


static void
ngx_http_voice_llm_retry(ngx_event_t *ev)
{
    ngx_http_voice_llm_t  *llm;

    llm = ev->data;

    (void) ngx_http_voice_llm_start(llm);
}


static void
ngx_http_voice_llm_timeout(ngx_event_t *ev)
{
    ngx_http_voice_llm_t  *llm;

    llm = ev->data;

    ngx_log_error(NGX_LOG_WARN, llm->log, 0,
                  "voice: llm reply to turn %ui timed out %s",
                  llm->turn, (ev == &llm->first_timer)
                             ? "waiting for its first token"
                             : "before it was complete");

    ngx_http_voice_llm_stop(llm);

    llm->error_code = "LLM_TIMEOUT";
    llm->error = (ev == &llm->first_timer)
                 ? "the language model did not answer in time"
                 : "the language model's reply took too long";

    (void) ngx_http_voice_llm_event(llm, NGX_HTTP_VOICE_EV_LLM_TIMEOUT,
                                    NULL, 0);
}


/* the reply is over, whichever way: nothing of it runs any more */

static void
ngx_http_voice_llm_stop(ngx_http_voice_llm_t *llm)
{
    ngx_uint_t  i;

    if (llm->streaming) {
        llm->streaming = 0;
        llm->engine->cancel(llm);
    }

    for (i = 0; i < llm->ncalls; i++) {
        if (llm->calls[i].handle && !llm->calls[i].done) {
            ngx_http_voice_tool_cancel(llm->calls[i].handle);
            llm->calls[i].handle = NULL;
        }
    }

    if (llm->first_timer.timer_set) {
        ngx_del_timer(&llm->first_timer);
    }

    if (llm->total_timer.timer_set) {
        ngx_del_timer(&llm->total_timer);
    }

    if (llm->retry_timer.timer_set) {
        ngx_del_timer(&llm->retry_timer);
    }
}


/* ---- actions ------------------------------------------------------------ */

ngx_int_t
ngx_http_voice_llm_delta(ngx_http_voice_llm_t *llm, u_char *data, size_t len)
{
    ngx_str_t  text;

    text.data = data;
    text.len = len;

    return ngx_http_voice_llm_send(llm,
               ngx_http_voice_protocol_delta(ngx_http_voice_llm_json,
                                             sizeof(ngx_http_voice_llm_json),
                                             llm->turn, &text));
}


/* the model called tools: the client hears of each, and each runs once */

ngx_int_t
ngx_http_voice_llm_run_tools(ngx_http_voice_llm_t *llm)
{
    ngx_uint_t                  i;
    ngx_http_voice_llm_call_t  *call;

    llm->calls_left = llm->ncalls;

    for (i = 0; i < llm->ncalls; i++) {
        call = &llm->calls[i];

        if (ngx_http_voice_llm_send(llm,
                ngx_http_voice_protocol_tool(ngx_http_voice_llm_json,
                                             sizeof(ngx_http_voice_llm_json),
                                             0, llm->turn, &call->id,
                                             &call->name, &call->arguments))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (call->tool) {
            call->handle = ngx_http_voice_tool_run(llm->request,
                               &call->tool->location, &call->arguments,
                               llm->conf->max_text, llm->conf->tool_timeout,
                               ngx_http_voice_llm_tool_done, call);
        }

        if (call->handle == NULL) {
            ngx_log_error(NGX_LOG_WARN, llm->log, 0,
                          "voice: tool \"%V\" %s", &call->name,
                          call->tool ? "could not run" : "is not configured");
            call->done = 1;
            call->failed = 1;
            llm->calls_left--;
        }
    }

    if (llm->calls_left == 0) {
        return ngx_http_voice_session_event(llm->session,
                                            NGX_HTTP_VOICE_EV_TOOL_DONE,
                                            NULL);
    }

    return NGX_OK;
}


static void
ngx_http_voice_llm_tool_done(void *data, ngx_int_t rc, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_http_voice_llm_call_t  *call = data;

    ngx_http_voice_llm_t  *llm;

    llm = call->llm;
    call->done = 1;
    call->handle = NULL;

    if (rc == NGX_OK && status >= 200 && status < 300 && body->len) {
        if (ngx_http_voice_llm_copy(&call->result, body) != NGX_OK) {
            call->failed = 1;
        }

    } else {
        ngx_log_error(NGX_LOG_WARN, llm->log, 0,
                      "voice: tool \"%V\" %s (status %ui)", &call->name,
                      (rc == NGX_DECLINED) ? "timed out" : "failed", status);
        call->failed = 1;
    }

    if (--llm->calls_left == 0) {
        (void) ngx_http_voice_llm_event(llm, NGX_HTTP_VOICE_EV_TOOL_DONE,
                                        NULL, 0);
    }
}


/* the calls came back: the results join the conversation, the reply goes on */

ngx_int_t
ngx_http_voice_llm_tools_done(ngx_http_voice_llm_t *llm)
{
    ngx_str_t                      failed;
    ngx_uint_t                     i;
    ngx_http_voice_llm_call_t     *call;
    ngx_http_voice_llm_message_t  *m, *r;

    ngx_str_set(&failed, "{\"error\":\"the tool failed\"}");

    for (i = 0; i < llm->ncalls; i++) {
        call = &llm->calls[i];

        if (call->failed) {
            if (ngx_http_voice_session_error(llm->session, "TOOL_FAIL",
                                             "a tool call failed", 1)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (ngx_http_voice_llm_send(llm,
                ngx_http_voice_protocol_tool(ngx_http_voice_llm_json,
                                             sizeof(ngx_http_voice_llm_json),
                                             1, llm->turn, &call->id,
                                             &call->name,
                                             call->failed ? &failed
                                                          : &call->result))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        m = ngx_http_voice_llm_message(NGX_HTTP_VOICE_LLM_TOOL_CALL,
                                       llm->turn, &call->arguments,
                                       &call->id, &call->name);
        r = ngx_http_voice_llm_message(NGX_HTTP_VOICE_LLM_TOOL_RESULT,
                                       llm->turn,
                                       call->failed ? &failed : &call->result,
                                       &call->id, &call->name);
        if (m == NULL || r == NULL) {
            ngx_free(m);
            ngx_free(r);
            return NGX_ERROR;
        }

        ngx_http_voice_llm_append(llm, m);
        ngx_http_voice_llm_append(llm, r);
    }

    ngx_http_voice_llm_free_calls(llm);

    return ngx_http_voice_llm_start(llm);
}


/* the reply's text is complete: the client gets it whole */

ngx_int_t
ngx_http_voice_llm_finish(ngx_http_voice_llm_t *llm)
{
    return ngx_http_voice_llm_send(llm,
               ngx_http_voice_protocol_reply(ngx_http_voice_llm_json,
                                             sizeof(ngx_http_voice_llm_json),
                                             llm->turn, &llm->reply));
}


/*
 * The reply is over: memory keeps the first len bytes of it, all of it
 * when it was heard to its end, what was heard of it when it was cut.
 */

ngx_int_t
ngx_http_voice_llm_remember(ngx_http_voice_llm_t *llm, size_t len)
{
    ngx_str_t                      text;
    ngx_http_voice_llm_message_t  *m;

    text.data = llm->reply.data;
    text.len = ngx_min(len, llm->reply.len);

    if (llm->turn && text.len) {
        m = ngx_http_voice_llm_message(NGX_HTTP_VOICE_LLM_ASSISTANT,
                                       llm->turn, &text, NULL, NULL);
        if (m == NULL) {
            return NGX_ERROR;
        }

        ngx_http_voice_llm_append(llm, m);
    }

    llm->turn = 0;

    return NGX_OK;
}


/* a reply cut short: the client learns what of it was heard */

ngx_int_t
ngx_http_voice_llm_interrupt(ngx_http_voice_llm_t *llm, const char *reason,
    size_t spoken)
{
    ngx_str_t  heard;

    if (llm->turn == 0) {
        return NGX_OK;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, llm->log, 0,
                   "voice: llm reply to turn %ui interrupted: %s, %uz "
                   "bytes heard", llm->turn, reason, spoken);

    ngx_http_voice_llm_stop(llm);
    ngx_http_voice_llm_free_calls(llm);

    heard.data = llm->reply.data;
    heard.len = ngx_min(spoken, llm->reply.len);

    if (ngx_http_voice_llm_send(llm,
            ngx_http_voice_protocol_interrupted(ngx_http_voice_llm_json,
                                                sizeof(ngx_http_voice_llm_json),
                                                llm->turn, reason, &heard))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_voice_llm_remember(llm, spoken);
}


ngx_int_t
ngx_http_voice_llm_error(ngx_http_voice_llm_t *llm)
{
    ngx_http_voice_llm_free_calls(llm);
    llm->turn = 0;

    return ngx_http_voice_session_error(llm->session, llm->error_code,
                                        llm->error, 1);
}


/* ---- the conversation --------------------------------------------------- */

static ngx_http_voice_llm_message_t *
ngx_http_voice_llm_message(ngx_uint_t role, ngx_uint_t turn, ngx_str_t *text,
    ngx_str_t *id, ngx_str_t *name)
{
    u_char                        *p;
    size_t                         size;
    ngx_http_voice_llm_message_t  *m;

    /* one allocation per message: it lives until memory forgets it */

    size = sizeof(ngx_http_voice_llm_message_t) + text->len
           + (id ? id->len : 0) + (name ? name->len : 0);

    m = ngx_alloc(size, ngx_cycle->log);
    if (m == NULL) {
        return NULL;
    }

    ngx_memzero(m, sizeof(ngx_http_voice_llm_message_t));

    m->role = role;
    m->turn = turn;

    p = (u_char *) (m + 1);

    m->text.data = p;
    m->text.len = text->len;
    p = ngx_cpymem(p, text->data, text->len);

    if (id) {
        m->tool_id.data = p;
        m->tool_id.len = id->len;
        p = ngx_cpymem(p, id->data, id->len);
    }

    if (name) {
        m->tool_name.data = p;
        m->tool_name.len = name->len;
        (void) ngx_cpymem(p, name->data, name->len);
    }

    return m;
}


static void
ngx_http_voice_llm_append(ngx_http_voice_llm_t *llm,
    ngx_http_voice_llm_message_t *m)
{
    ngx_http_voice_llm_message_t  **last;

    for (last = &llm->messages; *last; last = &(*last)->next) {
        /* void */
    }

    *last = m;

    if (m->role == NGX_HTTP_VOICE_LLM_USER) {
        llm->nturns++;
    }
}


/* memory keeps the last voice_llm_history turns, whole */

static void
ngx_http_voice_llm_trim(ngx_http_voice_llm_t *llm)
{
    ngx_http_voice_llm_message_t  *m;

    while (llm->nturns > llm->conf->history) {

        do {
            m = llm->messages;
            llm->messages = m->next;
            ngx_free(m);

        } while (llm->messages
                 && llm->messages->role != NGX_HTTP_VOICE_LLM_USER);

        llm->nturns--;
    }
}


static void
ngx_http_voice_llm_free_calls(ngx_http_voice_llm_t *llm)
{
    ngx_uint_t                  i;
    ngx_http_voice_llm_call_t  *call;

    for (i = 0; i < llm->ncalls; i++) {
        call = &llm->calls[i];

        if (call->handle) {
            ngx_http_voice_tool_cancel(call->handle);
        }

        ngx_free(call->id.data);
        ngx_free(call->name.data);
        ngx_free(call->arguments.data);
        ngx_free(call->result.data);
    }

    ngx_memzero(llm->calls, sizeof(llm->calls));
    llm->ncalls = 0;
    llm->calls_left = 0;
}


static ngx_int_t
ngx_http_voice_llm_copy(ngx_str_t *dst, ngx_str_t *src)
{
    dst->len = src->len;
    dst->data = ngx_alloc(src->len + 1, ngx_cycle->log);

    if (dst->data == NULL) {
        dst->len = 0;
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    dst->data[src->len] = '\0';

    return NGX_OK;
}


static void
ngx_http_voice_llm_cleanup(void *data)
{
    ngx_http_voice_llm_close(data);
}


void
ngx_http_voice_llm_close(ngx_http_voice_llm_t *llm)
{
    ngx_http_voice_llm_message_t  *m;

    if (llm->closed) {
        return;
    }

    llm->closed = 1;

    ngx_http_voice_llm_stop(llm);
    ngx_http_voice_llm_free_calls(llm);

    while (llm->messages) {
        m = llm->messages;
        llm->messages = m->next;
        ngx_free(m);
    }

    if (llm->input) {
        ngx_free(llm->input);
        llm->input = NULL;
    }
}


/* ---- to the client ------------------------------------------------------ */

static ngx_int_t
ngx_http_voice_llm_send(ngx_http_voice_llm_t *llm, size_t n)
{
    if (n == 0) {
        ngx_log_error(NGX_LOG_ALERT, llm->log, 0,
                      "voice: reply message could not be written");
        return NGX_ERROR;
    }

    return ngx_http_voice_session_text(llm->session, ngx_http_voice_llm_json,
                                       n);
}


/* events from the provider's side and from timers */

static ngx_int_t
ngx_http_voice_llm_event(ngx_http_voice_llm_t *llm,
    ngx_http_voice_event_e event, u_char *data, size_t len)
{
    ngx_int_t               rc;
    ngx_http_voice_input_t  in;

    in.data = data;
    in.len = len;
    in.msg = NULL;

    rc = ngx_http_voice_session_raise(llm->session, event, &in);

    return llm->closed ? NGX_ERROR : rc;
}


/* ---- configuration ------------------------------------------------------ */

void
ngx_http_voice_llm_create_conf(ngx_http_voice_llm_conf_t *conf)
{
    conf->engine = NGX_CONF_UNSET_UINT;
    conf->history = NGX_CONF_UNSET_UINT;
    conf->max_text = NGX_CONF_UNSET_SIZE;
    conf->max_tokens = NGX_CONF_UNSET_UINT;
    conf->temperature = NGX_CONF_UNSET_UINT;
    conf->first_token_timeout = NGX_CONF_UNSET_MSEC;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->retries = NGX_CONF_UNSET_UINT;
    conf->rate = NGX_CONF_UNSET_UINT;
    conf->tools = NGX_CONF_UNSET_PTR;
    conf->tool_timeout = NGX_CONF_UNSET_MSEC;
}


char *
ngx_http_voice_llm_merge_conf(ngx_conf_t *cf, ngx_http_voice_llm_conf_t *prev,
    ngx_http_voice_llm_conf_t *conf, ngx_uint_t agent, ngx_uint_t serves)
{
    char                               *rv;
    const ngx_http_voice_llm_engine_t  *engine;

    ngx_conf_merge_uint_value(conf->engine, prev->engine,
                              NGX_CONF_UNSET_UINT);
    ngx_conf_merge_str_value(conf->url, prev->url, "");
    ngx_conf_merge_str_value(conf->model, prev->model, "");
    ngx_conf_merge_str_value(conf->key, prev->key, "");
    ngx_conf_merge_str_value(conf->system, prev->system,
                             "You are a helpful voice assistant. "
                             "Answer briefly.");
    ngx_conf_merge_uint_value(conf->history, prev->history, 10);
    ngx_conf_merge_size_value(conf->max_text, prev->max_text, 8192);
    ngx_conf_merge_uint_value(conf->max_tokens, prev->max_tokens, 512);
    ngx_conf_merge_uint_value(conf->temperature, prev->temperature, 70);
    ngx_conf_merge_msec_value(conf->first_token_timeout,
                              prev->first_token_timeout, 5000);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 30000);
    ngx_conf_merge_uint_value(conf->retries, prev->retries, 2);
    ngx_conf_merge_uint_value(conf->rate, prev->rate, 40);
    ngx_conf_merge_ptr_value(conf->tools, prev->tools, NULL);
    ngx_conf_merge_msec_value(conf->tool_timeout, prev->tool_timeout, 5000);

    if (conf->max_text > NGX_HTTP_VOICE_LLM_MAX_TEXT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_llm_max_text\" must be at most %uz",
                           (size_t) NGX_HTTP_VOICE_LLM_MAX_TEXT);
        return NGX_CONF_ERROR;
    }

    if (conf->engine == NGX_CONF_UNSET_UINT) {
        if (!serves) {
            return NGX_CONF_OK;
        }

        conf->engine = agent ? NGX_HTTP_VOICE_LLM_EMBEDDED
                             : NGX_HTTP_VOICE_LLM_OFF;
    }

    engine = ngx_http_voice_llm_engines[conf->engine];

    if (!serves || !agent || engine == NULL) {
        return NGX_CONF_OK;
    }

    /* each engine knows its provider's URL and model when none is given */

    if (conf->engine == NGX_HTTP_VOICE_LLM_ANTHROPIC
        && conf->temperature > 100)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_llm_temperature\" must be at most 1 "
                           "for anthropic");
        return NGX_CONF_ERROR;
    }

    rv = engine->init_conf(cf, conf);

    if (rv != NGX_CONF_OK && rv != NGX_CONF_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"voice_llm %s\": %s",
                           engine->name, rv);
        return NGX_CONF_ERROR;
    }

    return rv;
}


char *
ngx_http_voice_llm_engine_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_voice_llm_conf_t  *llm;

    llm = (ngx_http_voice_llm_conf_t *) (p + cmd->offset);

    if (llm->engine != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_voice_llm_names[i].name.len; i++) {
        if (ngx_strcmp(value[1].data, ngx_http_voice_llm_names[i].name.data)
            == 0)
        {
            llm->engine = ngx_http_voice_llm_names[i].value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\", it must be \"off\", "
                       "\"embedded\", \"openai\" or \"anthropic\"",
                       &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}


/* 0 to 2, kept in hundredths */

char *
ngx_http_voice_llm_temperature_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    ngx_int_t                   n;
    ngx_str_t                  *value;
    ngx_http_voice_llm_conf_t  *llm;

    llm = (ngx_http_voice_llm_conf_t *) (p + cmd->offset);

    if (llm->temperature != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atofp(value[1].data, value[1].len, 2);

    if (n == NGX_ERROR || n > 200) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\", it must be a "
                           "number from 0 to 2", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    llm->temperature = n;

    return NGX_CONF_OK;
}


char *
ngx_http_voice_llm_key_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_http_voice_llm_conf_t  *llm;

    llm = (ngx_http_voice_llm_conf_t *) (p + cmd->offset);

    if (llm->key.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_voice_read_key(cf, &value[1], &llm->key);
}
