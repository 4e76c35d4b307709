
/*
 * Request bodies for the HTTP language model engines.
 *
 * jansson calls accept NULL in place of a value they consume and fail
 * then, so a body is built straight through and checked once per step:
 * any allocation that failed makes the whole body fail.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_http_voice_llm_wire.h"


#define NGX_HTTP_VOICE_LLM_WIRE_ROLE_USER       1
#define NGX_HTTP_VOICE_LLM_WIRE_ROLE_ASSISTANT  2


static size_t ngx_http_voice_llm_wire_utf8(const u_char *p,
    const u_char *last);
static json_t *ngx_http_voice_llm_wire_str(ngx_str_t *s);
static json_t *ngx_http_voice_llm_wire_schema(ngx_http_voice_llm_tool_t *tool,
    json_t **description);
static json_t *ngx_http_voice_llm_wire_input(ngx_str_t *arguments);
static json_t *ngx_http_voice_llm_wire_tools(ngx_http_voice_llm_conf_t *conf,
    ngx_uint_t openai);


json_t *
ngx_http_voice_llm_wire_openai(ngx_http_voice_llm_conf_t *conf,
    ngx_http_voice_llm_message_t *messages)
{
    json_t                        *body, *msgs, *msg, *calls, *call, *fn;
    json_t                        *opts;
    ngx_uint_t                     fail;
    ngx_http_voice_llm_message_t  *m;

    body = json_object();
    msgs = json_array();

    fail = (body == NULL || msgs == NULL);

    if (!fail && conf->system.len) {
        msg = json_object();
        fail |= json_object_set_new(msg, "role", json_string("system")) != 0;
        fail |= json_object_set_new(msg, "content",
                    ngx_http_voice_llm_wire_str(&conf->system)) != 0;
        fail |= json_array_append_new(msgs, msg) != 0;
    }

    /* the assistant message that tool calls right after it join */
    msg = NULL;

    for (m = messages; m && !fail; m = m->next) {

        switch (m->role) {

        case NGX_HTTP_VOICE_LLM_USER:
        case NGX_HTTP_VOICE_LLM_ASSISTANT:
            msg = json_object();
            fail |= json_object_set_new(msg, "role",
                        json_string(m->role == NGX_HTTP_VOICE_LLM_USER
                                    ? "user" : "assistant")) != 0;
            fail |= json_object_set_new(msg, "content",
                        ngx_http_voice_llm_wire_str(&m->text)) != 0;
            json_incref(msg);
            fail |= json_array_append_new(msgs, msg) != 0;
            json_decref(msg);

            if (m->role == NGX_HTTP_VOICE_LLM_USER) {
                msg = NULL;
            }

            break;

        case NGX_HTTP_VOICE_LLM_TOOL_CALL:

            if (msg == NULL) {
                msg = json_object();
                fail |= json_object_set_new(msg, "role",
                                            json_string("assistant")) != 0;
                fail |= json_object_set_new(msg, "content", json_null())
                        != 0;
                json_incref(msg);
                fail |= json_array_append_new(msgs, msg) != 0;
                json_decref(msg);
            }

            calls = json_object_get(msg, "tool_calls");

            if (calls == NULL) {
                calls = json_array();
                fail |= json_object_set_new(msg, "tool_calls", calls) != 0;
            }

            fn = json_object();
            fail |= json_object_set_new(fn, "name",
                        ngx_http_voice_llm_wire_str(&m->tool_name)) != 0;
            fail |= json_object_set_new(fn, "arguments",
                        m->text.len ? ngx_http_voice_llm_wire_str(&m->text)
                                    : json_string("{}")) != 0;

            call = json_object();
            fail |= json_object_set_new(call, "id",
                        ngx_http_voice_llm_wire_str(&m->tool_id)) != 0;
            fail |= json_object_set_new(call, "type", json_string("function"))
                    != 0;
            fail |= json_object_set_new(call, "function", fn) != 0;
            fail |= json_array_append_new(calls, call) != 0;

            break;

        case NGX_HTTP_VOICE_LLM_TOOL_RESULT:
            msg = json_object();
            fail |= json_object_set_new(msg, "role", json_string("tool"))
                    != 0;
            fail |= json_object_set_new(msg, "tool_call_id",
                        ngx_http_voice_llm_wire_str(&m->tool_id)) != 0;
            fail |= json_object_set_new(msg, "content",
                        ngx_http_voice_llm_wire_str(&m->text)) != 0;
            fail |= json_array_append_new(msgs, msg) != 0;
            msg = NULL;
            break;

        default:
            break;
        }
    }

    fail |= json_object_set_new(body, "model",
                ngx_http_voice_llm_wire_str(&conf->model)) != 0;
    fail |= json_object_set_new(body, "messages", msgs) != 0;
    fail |= json_object_set_new(body, "stream", json_true()) != 0;

    opts = json_object();
    fail |= json_object_set_new(opts, "include_usage", json_true()) != 0;
    fail |= json_object_set_new(body, "stream_options", opts) != 0;

    fail |= json_object_set_new(body, "max_tokens",
                json_integer((json_int_t) conf->max_tokens)) != 0;
    fail |= json_object_set_new(body, "temperature",
                json_real((double) conf->temperature / 100)) != 0;

    if (conf->tools && conf->tools->nelts) {
        fail |= json_object_set_new(body, "tools",
                    ngx_http_voice_llm_wire_tools(conf, 1)) != 0;
    }

    if (fail) {
        json_decref(body);
        return NULL;
    }

    return body;
}


/*
 * The tools as the provider lists them: Anthropic takes {name,
 * description, input_schema}; OpenAI the same under "function", with
 * "parameters" for the schema.
 */

static json_t *
ngx_http_voice_llm_wire_tools(ngx_http_voice_llm_conf_t *conf,
    ngx_uint_t openai)
{
    json_t                     *tools, *tool, *fn, *schema, *description;
    ngx_uint_t                  i, fail;
    ngx_http_voice_llm_tool_t  *t;

    tools = json_array();
    fail = (tools == NULL);
    t = conf->tools->elts;

    for (i = 0; i < conf->tools->nelts && !fail; i++) {
        schema = ngx_http_voice_llm_wire_schema(&t[i], &description);

        fn = json_object();
        fail |= json_object_set_new(fn, "name",
                    ngx_http_voice_llm_wire_str(&t[i].name)) != 0;

        if (description) {
            fail |= json_object_set(fn, "description", description) != 0;
        }

        fail |= json_object_set_new(fn, openai ? "parameters" : "input_schema",
                                    schema) != 0;

        if (openai) {
            tool = json_object();
            fail |= json_object_set_new(tool, "type",
                                        json_string("function")) != 0;
            fail |= json_object_set_new(tool, "function", fn) != 0;

        } else {
            tool = fn;
        }

        fail |= json_array_append_new(tools, tool) != 0;
    }

    if (fail) {
        json_decref(tools);
        return NULL;
    }

    return tools;
}


json_t *
ngx_http_voice_llm_wire_anthropic(ngx_http_voice_llm_conf_t *conf,
    ngx_http_voice_llm_message_t *messages)
{
    json_t                        *body, *msgs, *msg, *content, *block;
    ngx_uint_t                     fail, role, current;
    ngx_http_voice_llm_message_t  *m;

    body = json_object();
    msgs = json_array();

    fail = (body == NULL || msgs == NULL);

    /* the API wants user and assistant to alternate: runs of one merge */
    content = NULL;
    current = 0;
    role = 0;

    for (m = messages; m && !fail; m = m->next) {

        block = json_object();

        switch (m->role) {

        case NGX_HTTP_VOICE_LLM_USER:
        case NGX_HTTP_VOICE_LLM_ASSISTANT:

            if (m->text.len == 0) {
                /* empty text blocks are refused */
                json_decref(block);
                continue;
            }

            role = (m->role == NGX_HTTP_VOICE_LLM_USER)
                   ? NGX_HTTP_VOICE_LLM_WIRE_ROLE_USER
                   : NGX_HTTP_VOICE_LLM_WIRE_ROLE_ASSISTANT;
            fail |= json_object_set_new(block, "type", json_string("text"))
                    != 0;
            fail |= json_object_set_new(block, "text",
                        ngx_http_voice_llm_wire_str(&m->text)) != 0;
            break;

        case NGX_HTTP_VOICE_LLM_TOOL_CALL:
            role = NGX_HTTP_VOICE_LLM_WIRE_ROLE_ASSISTANT;
            fail |= json_object_set_new(block, "type",
                                        json_string("tool_use")) != 0;
            fail |= json_object_set_new(block, "id",
                        ngx_http_voice_llm_wire_str(&m->tool_id)) != 0;
            fail |= json_object_set_new(block, "name",
                        ngx_http_voice_llm_wire_str(&m->tool_name)) != 0;
            fail |= json_object_set_new(block, "input",
                        ngx_http_voice_llm_wire_input(&m->text)) != 0;
            break;

        case NGX_HTTP_VOICE_LLM_TOOL_RESULT:
            role = NGX_HTTP_VOICE_LLM_WIRE_ROLE_USER;
            fail |= json_object_set_new(block, "type",
                                        json_string("tool_result")) != 0;
            fail |= json_object_set_new(block, "tool_use_id",
                        ngx_http_voice_llm_wire_str(&m->tool_id)) != 0;
            fail |= json_object_set_new(block, "content",
                        ngx_http_voice_llm_wire_str(&m->text)) != 0;
            break;

        default:
            json_decref(block);
            continue;
        }

        if (role != current) {
            msg = json_object();
            content = json_array();
            fail |= json_object_set_new(msg, "role",
                        json_string(role == NGX_HTTP_VOICE_LLM_WIRE_ROLE_USER
                                    ? "user" : "assistant")) != 0;
            fail |= json_object_set(msg, "content", content) != 0;
            json_decref(content);
            fail |= json_array_append_new(msgs, msg) != 0;
            current = role;
        }

        fail |= json_array_append_new(content, block) != 0;
    }

    fail |= json_object_set_new(body, "model",
                ngx_http_voice_llm_wire_str(&conf->model)) != 0;
    fail |= json_object_set_new(body, "max_tokens",
                json_integer((json_int_t) conf->max_tokens)) != 0;

    if (conf->system.len) {
        fail |= json_object_set_new(body, "system",
                    ngx_http_voice_llm_wire_str(&conf->system)) != 0;
    }

    fail |= json_object_set_new(body, "messages", msgs) != 0;

    if (conf->tools && conf->tools->nelts) {
        fail |= json_object_set_new(body, "tools",
                    ngx_http_voice_llm_wire_tools(conf, 0)) != 0;
    }

    /* Anthropic takes 0 to 1 */
    fail |= json_object_set_new(body, "temperature",
                json_real((double) ngx_min(conf->temperature, 100) / 100))
            != 0;
    fail |= json_object_set_new(body, "stream", json_true()) != 0;

    if (fail) {
        json_decref(body);
        return NULL;
    }

    return body;
}


/*
 * A new reference to the tool's schema; a "description" at its top
 * (borrowed from the schema) becomes the tool's description.
 */

static json_t *
ngx_http_voice_llm_wire_schema(ngx_http_voice_llm_tool_t *tool,
    json_t **description)
{
    json_t  *schema, *d;

    *description = NULL;

    if (tool->json) {
        schema = json_incref((json_t *) tool->json);

    } else {
        schema = json_loadb((const char *) tool->schema.data,
                            tool->schema.len, 0, NULL);
    }

    if (!json_is_object(schema)) {
        json_decref(schema);
        return json_pack("{s:s, s:{}}", "type", "object", "properties");
    }

    d = json_object_get(schema, "description");

    if (json_is_string(d)) {
        *description = d;
    }

    return schema;
}


/* a tool call's input: its arguments as an object, {} when they are not */

static json_t *
ngx_http_voice_llm_wire_input(ngx_str_t *arguments)
{
    json_t  *input;

    input = NULL;

    if (arguments->len) {
        input = json_loadb((const char *) arguments->data, arguments->len,
                           0, NULL);
    }

    if (!json_is_object(input)) {
        json_decref(input);
        input = json_object();
    }

    return input;
}


static json_t *
ngx_http_voice_llm_wire_str(ngx_str_t *s)
{
    return ngx_http_voice_llm_wire_string(s->data, s->len);
}


json_t *
ngx_http_voice_llm_wire_string(const u_char *data, size_t len)
{
    size_t         n, size;
    json_t        *s;
    u_char        *buf, *b;
    const u_char  *p, *last;

    if (len == 0) {
        return json_string("");
    }

    s = json_stringn((const char *) data, len);

    if (s) {
        return s;
    }

    /* invalid UTF-8: each bad byte becomes U+FFFD (3 bytes) */

    size = len * 3;
    buf = malloc(size);
    if (buf == NULL) {
        return NULL;
    }

    b = buf;
    last = data + len;

    for (p = data; p < last; p += n) {
        n = ngx_http_voice_llm_wire_utf8(p, last);

        if (n) {
            b = ngx_cpymem(b, p, n);

        } else {
            *b++ = 0xef;
            *b++ = 0xbf;
            *b++ = 0xbd;
            n = 1;
        }
    }

    s = json_stringn((const char *) buf, b - buf);
    free(buf);

    return s;
}


/* the length of a valid UTF-8 sequence at p, 0 when it is not one */

static size_t
ngx_http_voice_llm_wire_utf8(const u_char *p, const u_char *last)
{
    size_t    n, i;
    uint32_t  u;

    if (*p < 0x80) {
        return 1;
    }

    if (*p >= 0xc2 && *p <= 0xdf) {
        n = 2;
        u = *p & 0x1f;

    } else if (*p >= 0xe0 && *p <= 0xef) {
        n = 3;
        u = *p & 0x0f;

    } else if (*p >= 0xf0 && *p <= 0xf4) {
        n = 4;
        u = *p & 0x07;

    } else {
        return 0;
    }

    if ((size_t) (last - p) < n) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        u = (u << 6) | (p[i] & 0x3f);
    }

    if ((n == 3 && u < 0x800)
        || (n == 4 && (u < 0x10000 || u > 0x10ffff))
        || (u >= 0xd800 && u <= 0xdfff))
    {
        return 0;
    }

    return n;
}
