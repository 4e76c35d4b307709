
/*
 * Request bodies of the HTTP language model engines, built from the
 * location's configuration and the conversation.  Pure: jansson only, no
 * nginx runtime, so unit tests build them directly.
 */


#ifndef _NGX_HTTP_VOICE_LLM_WIRE_H_INCLUDED_
#define _NGX_HTTP_VOICE_LLM_WIRE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_http_voice_llm.h"


/* json_dumps() flags: compact, temperatures without float noise */
#define NGX_HTTP_VOICE_LLM_WIRE_DUMP  (JSON_COMPACT | JSON_REAL_PRECISION(4))


/* Chat Completions, streaming; NULL when memory ran out */
json_t *ngx_http_voice_llm_wire_openai(ngx_http_voice_llm_conf_t *conf,
    ngx_http_voice_llm_message_t *messages);

/* Anthropic Messages, streaming; NULL when memory ran out */
json_t *ngx_http_voice_llm_wire_anthropic(ngx_http_voice_llm_conf_t *conf,
    ngx_http_voice_llm_message_t *messages);

/* a JSON string of any bytes: invalid UTF-8 becomes U+FFFD */
json_t *ngx_http_voice_llm_wire_string(const u_char *data, size_t len);


#endif /* _NGX_HTTP_VOICE_LLM_WIRE_H_INCLUDED_ */
