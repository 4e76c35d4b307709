
/*
 * Streaming language models: one interface for every engine.
 *
 * The session keeps the conversation (a system prompt and the last turns)
 * and asks an engine for one reply at a time; the engine streams it back
 * through the ngx_http_voice_llm_*() reports at the end of this file.  The
 * session owns timeouts, retries, cancellation, tool calls and memory: an
 * engine only speaks its provider's wire format.
 */


#ifndef _NGX_HTTP_VOICE_LLM_H_INCLUDED_
#define _NGX_HTTP_VOICE_LLM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_VOICE_LLM_OFF         0
#define NGX_HTTP_VOICE_LLM_EMBEDDED    1
#define NGX_HTTP_VOICE_LLM_OPENAI      2
#define NGX_HTTP_VOICE_LLM_ANTHROPIC   3


typedef struct ngx_http_voice_llm_s  ngx_http_voice_llm_t;


/* a tool the model may call: voice_tool name location schema */
typedef struct {
    ngx_str_t                        name;
    ngx_str_t                        location;     /* an nginx URI */
    ngx_str_t                        schema;       /* JSON Schema text */
    void                            *json;         /* parsed (json_t *) */
} ngx_http_voice_llm_tool_t;


/* per location, from the voice_llm* directives */
typedef struct {
    ngx_uint_t                       engine;       /* NGX_HTTP_VOICE_LLM_* */
    ngx_str_t                        url;          /* the provider endpoint */
    ngx_str_t                        model;
    ngx_str_t                        key;          /* secret, or empty */
    ngx_str_t                        system;       /* the system prompt */
    ngx_uint_t                       history;      /* turns kept */
    size_t                           max_text;     /* one reply's text */
    ngx_uint_t                       max_tokens;
    ngx_uint_t                       temperature;  /* hundredths: 0..200 */
    ngx_msec_t                       first_token_timeout;
    ngx_msec_t                       timeout;      /* the whole reply */
    ngx_uint_t                       retries;      /* before a first token */
    ngx_uint_t                       rate;         /* embedded: tokens/s */
    ngx_array_t                     *tools;        /* ..._llm_tool_t */
    ngx_msec_t                       tool_timeout;

    /* for libcurl: set by the glue from the location */
    ngx_msec_t                       connect_timeout;
    ngx_flag_t                       ssl_verify;
    ngx_str_t                        ssl_trusted_certificate;
} ngx_http_voice_llm_conf_t;


/* one message of the conversation, as engines put it on the wire */
#define NGX_HTTP_VOICE_LLM_USER          1
#define NGX_HTTP_VOICE_LLM_ASSISTANT     2
#define NGX_HTTP_VOICE_LLM_TOOL_CALL     3     /* the assistant called */
#define NGX_HTTP_VOICE_LLM_TOOL_RESULT   4     /* ... and this came back */

typedef struct ngx_http_voice_llm_message_s  ngx_http_voice_llm_message_t;

struct ngx_http_voice_llm_message_s {
    ngx_http_voice_llm_message_t    *next;         /* older to newer */
    ngx_uint_t                       role;
    ngx_str_t                        text;         /* content, result or
                                                      the call's arguments */
    ngx_str_t                        tool_id;      /* TOOL_CALL, _RESULT */
    ngx_str_t                        tool_name;    /* TOOL_CALL */
    ngx_uint_t                       turn;
};


/* a tool call of the reply under way */
typedef struct {
    ngx_str_t                        id;
    ngx_str_t                        name;
    ngx_str_t                        arguments;
    ngx_str_t                        result;
    void                            *handle;       /* the subrequest */
    ngx_http_voice_llm_tool_t       *tool;         /* NULL: unknown */
    void                            *llm;
    unsigned                         done:1;
    unsigned                         failed:1;
} ngx_http_voice_llm_call_t;


#define NGX_HTTP_VOICE_LLM_MAX_CALLS  8


typedef struct {
    const char  *name;

    /* configuration time: checks and prepares conf; NGX_CONF_OK or why */
    char       *(*init_conf)(ngx_conf_t *cf, ngx_http_voice_llm_conf_t *conf);

    /*
     * Starts streaming one reply to llm->messages (oldest first, the
     * newest is the user's turn or a tool result).  NGX_OK: reports
     * follow, ending with exactly one of done or failed.  NGX_ERROR:
     * nothing started, no report follows.
     */
    ngx_int_t   (*start)(ngx_http_voice_llm_t *llm);

    /* tears the stream down now, in this event-loop turn; no report follows */
    void        (*cancel)(ngx_http_voice_llm_t *llm);
} ngx_http_voice_llm_engine_t;


struct ngx_http_voice_llm_s {
    const ngx_http_voice_llm_engine_t  *engine;
    ngx_http_voice_llm_conf_t          *conf;
    void                               *session;   /* the owner */
    ngx_http_request_t                 *request;
    ngx_log_t                          *log;
    void                               *ctx;       /* the engine's, for
                                                      one reply */

    ngx_http_voice_llm_message_t       *messages;  /* the conversation */
    ngx_uint_t                          nturns;

    /* the reply under way */
    ngx_uint_t                          turn;      /* 0: none */
    ngx_str_t                           reply;     /* text so far */
    size_t                              reply_size;
    ngx_uint_t                          attempt;
    ngx_msec_t                          started;   /* when the turn began */
    ngx_event_t                         first_timer;
    ngx_event_t                         total_timer;
    ngx_event_t                         retry_timer;
    ngx_http_voice_llm_message_t       *input;     /* the next user turn */
    ngx_uint_t                          last_turn;
    ngx_http_voice_llm_call_t           calls[NGX_HTTP_VOICE_LLM_MAX_CALLS];
    ngx_uint_t                          ncalls;
    ngx_uint_t                          calls_left;
    const char                         *error_code;
    const char                         *error;
    unsigned                            streaming:1;   /* engine started */
    unsigned                            answered:1;    /* a token went out */
    unsigned                            closed:1;
};


extern const ngx_http_voice_llm_engine_t  ngx_http_voice_llm_embedded;
extern const ngx_http_voice_llm_engine_t  ngx_http_voice_llm_openai;
extern const ngx_http_voice_llm_engine_t  ngx_http_voice_llm_anthropic;


/*
 * Reports from engines.  Each returns NGX_OK, or NGX_ERROR once the reply
 * or the session is over: the engine then returns at once (its cancel
 * has been called, or the session's cleanup will call it).
 */

/* a piece of the reply's text, as it came */
ngx_int_t ngx_http_voice_llm_token(ngx_http_voice_llm_t *llm,
    const u_char *text, size_t len);

/*
 * The model calls a tool: id, name and the whole arguments (JSON text).
 * The engine reports each call once, when its arguments are complete,
 * and then done with finish "tool_calls".
 */
ngx_int_t ngx_http_voice_llm_tool_call(ngx_http_voice_llm_t *llm,
    ngx_str_t *id, ngx_str_t *name, ngx_str_t *arguments);

/* the reply is complete; finish: stop, length, tool_calls, ... */
ngx_int_t ngx_http_voice_llm_done(ngx_http_voice_llm_t *llm,
    ngx_str_t *finish);

/*
 * The reply failed.  retryable: a connection error, 429 or 5xx, which
 * the session may retry if nothing reached the client yet.  message goes
 * to the client: never a secret.
 */
ngx_int_t ngx_http_voice_llm_failed(ngx_http_voice_llm_t *llm,
    ngx_uint_t retryable, const char *message);


/* the session's side */
ngx_http_voice_llm_t *ngx_http_voice_llm_open(
    ngx_http_voice_llm_conf_t *conf, void *session, ngx_http_request_t *r);
ngx_int_t ngx_http_voice_llm_user_turn(ngx_http_voice_llm_t *llm,
    ngx_uint_t turn, u_char *text, size_t len);
ngx_int_t ngx_http_voice_llm_think(ngx_http_voice_llm_t *llm);
ngx_int_t ngx_http_voice_llm_delta(ngx_http_voice_llm_t *llm, u_char *data,
    size_t len);
ngx_int_t ngx_http_voice_llm_run_tools(ngx_http_voice_llm_t *llm);
ngx_int_t ngx_http_voice_llm_tools_done(ngx_http_voice_llm_t *llm);
ngx_int_t ngx_http_voice_llm_finish(ngx_http_voice_llm_t *llm);
ngx_int_t ngx_http_voice_llm_remember(ngx_http_voice_llm_t *llm,
    size_t len);
ngx_int_t ngx_http_voice_llm_interrupt(ngx_http_voice_llm_t *llm,
    const char *reason, size_t spoken);
ngx_int_t ngx_http_voice_llm_error(ngx_http_voice_llm_t *llm);
void ngx_http_voice_llm_close(ngx_http_voice_llm_t *llm);


/* configuration */
void ngx_http_voice_llm_create_conf(ngx_http_voice_llm_conf_t *conf);
char *ngx_http_voice_llm_merge_conf(ngx_conf_t *cf,
    ngx_http_voice_llm_conf_t *prev, ngx_http_voice_llm_conf_t *conf,
    ngx_uint_t agent, ngx_uint_t serves);
char *ngx_http_voice_llm_engine_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_voice_llm_temperature_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_voice_llm_key_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_VOICE_LLM_H_INCLUDED_ */
