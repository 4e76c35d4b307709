
/*
 * Unit tests of the request bodies of the HTTP language model engines
 * (ngx_http_voice_llm_wire.[ch]): each body is compared, as JSON, with
 * the one the provider's documentation describes.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ngx_http_voice_llm_wire.h"


#define TEST_WIRE_MAX  16


typedef struct {
    ngx_http_voice_llm_conf_t      conf;
    ngx_http_voice_llm_message_t   m[TEST_WIRE_MAX];
    ngx_uint_t                     n;
    ngx_array_t                    tools;
    ngx_http_voice_llm_tool_t      tool[2];
} test_wire_t;


static void
test_wire_str(ngx_str_t *s, const char *text)
{
    s->data = (u_char *) text;
    s->len = text ? strlen(text) : 0;
}


static void
test_wire_init(test_wire_t *t, const char *system)
{
    memset(t, 0, sizeof(test_wire_t));

    test_wire_str(&t->conf.model, "test-model");
    test_wire_str(&t->conf.system, system);
    t->conf.max_tokens = 512;
    t->conf.temperature = 70;
    t->conf.max_text = 8192;
}


static void
test_wire_add(test_wire_t *t, ngx_uint_t role, const char *text,
    const char *id, const char *name)
{
    ngx_http_voice_llm_message_t  *m;

    assert_true(t->n < TEST_WIRE_MAX);

    m = &t->m[t->n];
    m->role = role;
    test_wire_str(&m->text, text);
    test_wire_str(&m->tool_id, id);
    test_wire_str(&m->tool_name, name);

    if (t->n) {
        t->m[t->n - 1].next = m;
    }

    t->n++;
}


static void
test_wire_tool(test_wire_t *t, const char *name, const char *schema,
    ngx_uint_t parsed)
{
    ngx_http_voice_llm_tool_t  *tool;

    if (t->conf.tools == NULL) {
        t->tools.elts = t->tool;
        t->tools.nelts = 0;
        t->tools.size = sizeof(ngx_http_voice_llm_tool_t);
        t->tools.nalloc = 2;
        t->conf.tools = &t->tools;
    }

    assert_true(t->tools.nelts < 2);

    tool = &t->tool[t->tools.nelts++];
    test_wire_str(&tool->name, name);
    test_wire_str(&tool->location, "/tool");
    test_wire_str(&tool->schema, schema);
    tool->json = parsed ? json_loads(schema, 0, NULL) : NULL;
}


static void
test_wire_done(test_wire_t *t)
{
    ngx_uint_t  i;

    for (i = 0; i < t->tools.nelts; i++) {
        json_decref(t->tool[i].json);
    }
}


static void
test_wire_expect(json_t *got, const char *want)
{
    char          *text;
    json_t        *expected;
    json_error_t   err;

    assert_non_null(got);

    expected = json_loads(want, 0, &err);
    if (expected == NULL) {
        fail_msg("bad expectation: %s", err.text);
    }

    if (!json_equal(got, expected)) {
        text = json_dumps(got, JSON_SORT_KEYS);
        fail_msg("got %s", text);
        free(text);
    }

    json_decref(expected);
    json_decref(got);
}


static json_t *
test_wire_openai(test_wire_t *t)
{
    return ngx_http_voice_llm_wire_openai(&t->conf, t->n ? &t->m[0] : NULL);
}


static json_t *
test_wire_anthropic(test_wire_t *t)
{
    return ngx_http_voice_llm_wire_anthropic(&t->conf,
                                             t->n ? &t->m[0] : NULL);
}


static void
test_wire_openai_basic(void **state)
{
    test_wire_t  t;

    (void) state;

    test_wire_init(&t, "Be brief.");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "hello", NULL, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_ASSISTANT, "Hi there.", NULL, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "caf\xc3\xa9?", NULL, NULL);

    test_wire_expect(test_wire_openai(&t),
        "{\"model\":\"test-model\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},"
        "\"max_tokens\":512,\"temperature\":0.7,"
        "\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"hello\"},"
        "{\"role\":\"assistant\",\"content\":\"Hi there.\"},"
        "{\"role\":\"user\",\"content\":\"caf\\u00e9?\"}]}");

    test_wire_done(&t);
}


static void
test_wire_openai_no_system(void **state)
{
    test_wire_t  t;

    (void) state;

    test_wire_init(&t, NULL);
    t.conf.temperature = 0;
    t.conf.max_tokens = 7;
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "x", NULL, NULL);

    test_wire_expect(test_wire_openai(&t),
        "{\"model\":\"test-model\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},"
        "\"max_tokens\":7,\"temperature\":0.0,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");

    test_wire_done(&t);
}


static void
test_wire_openai_dump(void **state)
{
    char         *text;
    json_t       *body;
    test_wire_t   t;

    (void) state;

    /* temperatures go out as written, not as the nearest double's digits */

    test_wire_init(&t, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "x", NULL, NULL);

    body = test_wire_openai(&t);
    assert_non_null(body);
    text = json_dumps(body, NGX_HTTP_VOICE_LLM_WIRE_DUMP);
    assert_non_null(strstr(text, "\"temperature\":0.7,")
                    ? strstr(text, "\"temperature\":0.7,")
                    : strstr(text, "\"temperature\":0.7}"));
    assert_null(strchr(text, '\n'));
    free(text);
    json_decref(body);

    t.conf.temperature = 133;
    body = test_wire_openai(&t);
    text = json_dumps(body, NGX_HTTP_VOICE_LLM_WIRE_DUMP);
    assert_non_null(strstr(text, "\"temperature\":1.33"));
    free(text);
    json_decref(body);

    test_wire_done(&t);
}


static void
test_wire_openai_tool_calls(void **state)
{
    test_wire_t  t;

    (void) state;

    /* parallel calls join the assistant message before them */

    test_wire_init(&t, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "weather?", NULL, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_ASSISTANT, "Checking.", NULL, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_CALL, "{\"city\":\"Paris\"}",
                  "call_1", "get_weather");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_CALL, NULL, "call_2",
                  "get_time");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_RESULT, "{\"temp_c\":21}",
                  "call_1", "get_weather");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_RESULT, "noon", "call_2",
                  "get_time");

    test_wire_expect(test_wire_openai(&t),
        "{\"model\":\"test-model\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},"
        "\"max_tokens\":512,\"temperature\":0.7,"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":\"weather?\"},"
        "{\"role\":\"assistant\",\"content\":\"Checking.\",\"tool_calls\":["
        "{\"id\":\"call_1\",\"type\":\"function\",\"function\":"
        "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":"
        "\\\"Paris\\\"}\"}},"
        "{\"id\":\"call_2\",\"type\":\"function\",\"function\":"
        "{\"name\":\"get_time\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\","
        "\"content\":\"{\\\"temp_c\\\":21}\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_2\","
        "\"content\":\"noon\"}]}");

    test_wire_done(&t);

    /* a call with its result, then another: each gets its own message */

    test_wire_init(&t, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "q", NULL, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_CALL, "{}", "a", "f");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_RESULT, "1", "a", "f");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_CALL, "{}", "b", "f");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_RESULT, "2", "b", "f");

    test_wire_expect(test_wire_openai(&t),
        "{\"model\":\"test-model\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},"
        "\"max_tokens\":512,\"temperature\":0.7,"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":\"q\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
        "{\"id\":\"a\",\"type\":\"function\",\"function\":"
        "{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"a\",\"content\":\"1\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
        "{\"id\":\"b\",\"type\":\"function\",\"function\":"
        "{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"b\",\"content\":\"2\"}]}");

    test_wire_done(&t);
}


static void
test_wire_openai_tools(void **state)
{
    test_wire_t  t;

    (void) state;

    test_wire_init(&t, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "x", NULL, NULL);

    /* one schema parsed by the configuration, one only as text */
    test_wire_tool(&t, "get_weather",
                   "{\"type\":\"object\",\"description\":\"The weather.\","
                   "\"properties\":{\"city\":{\"type\":\"string\"}}}", 1);
    test_wire_tool(&t, "ping", "{\"type\":\"object\"}", 0);

    test_wire_expect(test_wire_openai(&t),
        "{\"model\":\"test-model\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},"
        "\"max_tokens\":512,\"temperature\":0.7,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
        "\"tools\":["
        "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"description\":\"The weather.\",\"parameters\":"
        "{\"type\":\"object\",\"description\":\"The weather.\","
        "\"properties\":{\"city\":{\"type\":\"string\"}}}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"ping\","
        "\"parameters\":{\"type\":\"object\"}}}]}");

    /* the configuration's schema is not consumed */
    assert_int_equal(((json_t *) t.tool[0].json)->refcount, 1);

    test_wire_done(&t);
}


static void
test_wire_anthropic_basic(void **state)
{
    test_wire_t  t;

    (void) state;

    test_wire_init(&t, "Be brief.");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "hello", NULL, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_ASSISTANT, "Hi.", NULL, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "more", NULL, NULL);

    test_wire_expect(test_wire_anthropic(&t),
        "{\"model\":\"test-model\",\"max_tokens\":512,"
        "\"system\":\"Be brief.\",\"temperature\":0.7,\"stream\":true,"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"hello\"}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\","
        "\"text\":\"Hi.\"}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"more\"}]}]}");

    test_wire_done(&t);

    /* no system prompt: no system field; temperature at most 1 */

    test_wire_init(&t, NULL);
    t.conf.temperature = 150;
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "x", NULL, NULL);

    test_wire_expect(test_wire_anthropic(&t),
        "{\"model\":\"test-model\",\"max_tokens\":512,"
        "\"temperature\":1.0,\"stream\":true,"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"x\"}]}]}");

    test_wire_done(&t);
}


static void
test_wire_anthropic_tools(void **state)
{
    test_wire_t  t;

    (void) state;

    /* same roles in a row merge; results are the user's */

    test_wire_init(&t, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "weather?", NULL, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_ASSISTANT, "Checking.", NULL, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_CALL, "{\"city\":\"Paris\"}",
                  "toolu_1", "get_weather");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_CALL, "not json", "toolu_2",
                  "get_time");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_RESULT, "{\"temp_c\":21}",
                  "toolu_1", "get_weather");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_TOOL_RESULT, "noon", "toolu_2",
                  "get_time");
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_ASSISTANT, "", NULL, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "thanks", NULL, NULL);

    test_wire_tool(&t, "get_weather",
                   "{\"type\":\"object\",\"description\":\"The weather.\"}",
                   1);

    test_wire_expect(test_wire_anthropic(&t),
        "{\"model\":\"test-model\",\"max_tokens\":512,"
        "\"temperature\":0.7,\"stream\":true,"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":"
        "\"The weather.\",\"input_schema\":{\"type\":\"object\","
        "\"description\":\"The weather.\"}}],"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"weather?\"}]},"
        "{\"role\":\"assistant\",\"content\":["
        "{\"type\":\"text\",\"text\":\"Checking.\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\","
        "\"input\":{\"city\":\"Paris\"}},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"get_time\","
        "\"input\":{}}]},"
        "{\"role\":\"user\",\"content\":["
        "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
        "\"content\":\"{\\\"temp_c\\\":21}\"},"
        "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_2\","
        "\"content\":\"noon\"},"
        "{\"type\":\"text\",\"text\":\"thanks\"}]}]}");

    test_wire_done(&t);
}


static void
test_wire_bad_utf8(void **state)
{
    json_t       *s;
    test_wire_t   t;

    (void) state;

    s = ngx_http_voice_llm_wire_string((u_char *) "a\xff" "b\xc3", 4);
    assert_non_null(s);
    assert_string_equal(json_string_value(s),
                        "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    json_decref(s);

    /* overlong, surrogate and too-high sequences are replaced too */
    s = ngx_http_voice_llm_wire_string(
            (u_char *) "\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82\xac", 12);
    assert_non_null(s);
    assert_string_equal(json_string_value(s),
                        "\xef\xbf\xbd\xef\xbf\xbd"
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                        "\xe2\x82\xac");
    json_decref(s);

    test_wire_init(&t, NULL);
    test_wire_add(&t, NGX_HTTP_VOICE_LLM_USER, "x\xfe", NULL, NULL);

    test_wire_expect(test_wire_openai(&t),
        "{\"model\":\"test-model\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},"
        "\"max_tokens\":512,\"temperature\":0.7,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\\ufffd\"}]}");

    test_wire_done(&t);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_wire_openai_basic),
        cmocka_unit_test(test_wire_openai_no_system),
        cmocka_unit_test(test_wire_openai_dump),
        cmocka_unit_test(test_wire_openai_tool_calls),
        cmocka_unit_test(test_wire_openai_tools),
        cmocka_unit_test(test_wire_anthropic_basic),
        cmocka_unit_test(test_wire_anthropic_tools),
        cmocka_unit_test(test_wire_bad_utf8),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
