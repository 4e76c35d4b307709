
/*
 * Unit tests of the Server-Sent Events parser (ngx_http_voice_sse.[ch]).
 *
 * The parser's buffer is followed by guard bytes checked after each call,
 * and every piece fed is a heap copy of its exact length, so a byte read
 * or written out of bounds shows up under the address sanitizer.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ngx_http_voice_sse.h"


#define TEST_SSE_GUARD       32
#define TEST_SSE_GUARD_BYTE  0x5a
#define TEST_SSE_MAX_EVENTS  64
#define TEST_SSE_MAX_TEXT    512


typedef struct {
    char                  name[TEST_SSE_MAX_TEXT];
    char                  data[TEST_SSE_MAX_TEXT];
    size_t                name_len;
    size_t                data_len;
} test_sse_ev_t;


typedef struct {
    ngx_http_voice_sse_t  sse;
    u_char               *buf;
    size_t                size;
    test_sse_ev_t         ev[TEST_SSE_MAX_EVENTS];
    ngx_uint_t            nev;
    ngx_uint_t            errors;
} test_sse_t;


static void
test_sse_open(test_sse_t *t, size_t size)
{
    memset(t, 0, sizeof(test_sse_t));

    t->buf = malloc(size + TEST_SSE_GUARD);
    assert_non_null(t->buf);
    memset(t->buf, TEST_SSE_GUARD_BYTE, size + TEST_SSE_GUARD);
    t->size = size;

    ngx_http_voice_sse_init(&t->sse, t->buf, size);
}


static void
test_sse_check_guard(test_sse_t *t)
{
    size_t  i;

    for (i = 0; i < TEST_SSE_GUARD; i++) {
        assert_int_equal(t->buf[t->size + i], TEST_SSE_GUARD_BYTE);
    }
}


static void
test_sse_close(test_sse_t *t)
{
    test_sse_check_guard(t);
    free(t->buf);
}


/* feeds one piece (a heap copy) and collects every event it completes */

static ngx_int_t
test_sse_feed_n(test_sse_t *t, const char *s, size_t len)
{
    u_char                      *copy, *p, *last;
    ngx_int_t                    rc;
    test_sse_ev_t               *e;
    ngx_http_voice_sse_event_t   ev;

    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, s, len);

    p = copy;
    last = copy + len;

    for ( ;; ) {
        rc = ngx_http_voice_sse_parse(&t->sse, &p, last, &ev);
        test_sse_check_guard(t);

        assert_true(p >= copy && p <= last);

        if (rc == NGX_AGAIN) {
            assert_ptr_equal(p, last);
            break;
        }

        if (rc == NGX_ERROR) {
            t->errors++;
            break;
        }

        assert_int_equal(rc, NGX_OK);
        assert_true(t->nev < TEST_SSE_MAX_EVENTS);
        assert_true(ev.name.len < TEST_SSE_MAX_TEXT);
        assert_true(ev.data.len < TEST_SSE_MAX_TEXT);

        e = &t->ev[t->nev++];
        e->name_len = ev.name.len;
        e->data_len = ev.data.len;
        memcpy(e->name, ev.name.data, ev.name.len);
        memcpy(e->data, ev.data.data, ev.data.len);
    }

    free(copy);

    return rc;
}


static ngx_int_t
test_sse_feed(test_sse_t *t, const char *s)
{
    return test_sse_feed_n(t, s, strlen(s));
}


static void
test_sse_expect(test_sse_t *t, ngx_uint_t i, const char *name,
    const char *data)
{
    assert_true(i < t->nev);

    assert_int_equal(t->ev[i].name_len, strlen(name));
    assert_memory_equal(t->ev[i].name, name, strlen(name));

    assert_int_equal(t->ev[i].data_len, strlen(data));
    assert_memory_equal(t->ev[i].data, data, strlen(data));
}


static void
test_sse_same(test_sse_t *a, test_sse_t *b)
{
    ngx_uint_t  i;

    assert_int_equal(a->nev, b->nev);
    assert_int_equal(a->errors, b->errors);

    for (i = 0; i < a->nev; i++) {
        assert_int_equal(a->ev[i].name_len, b->ev[i].name_len);
        assert_memory_equal(a->ev[i].name, b->ev[i].name, a->ev[i].name_len);
        assert_int_equal(a->ev[i].data_len, b->ev[i].data_len);
        assert_memory_equal(a->ev[i].data, b->ev[i].data, a->ev[i].data_len);
    }
}


static void
test_sse_lf(void **state)
{
    test_sse_t  t;

    (void) state;

    test_sse_open(&t, 256);

    assert_int_equal(test_sse_feed(&t, "data: hello\n\ndata:x\n\n"),
                     NGX_AGAIN);
    assert_int_equal(t.nev, 2);
    test_sse_expect(&t, 0, "", "hello");
    test_sse_expect(&t, 1, "", "x");

    test_sse_close(&t);
}


static void
test_sse_space(void **state)
{
    test_sse_t  t;

    (void) state;

    test_sse_open(&t, 256);

    /* only one space goes; others and tabs stay */
    test_sse_feed(&t, "data:  two\n\ndata:\tt\n\ndata: \n\ndata\n\n");
    assert_int_equal(t.nev, 4);
    test_sse_expect(&t, 0, "", " two");
    test_sse_expect(&t, 1, "", "\tt");
    test_sse_expect(&t, 2, "", "");
    test_sse_expect(&t, 3, "", "");

    test_sse_close(&t);
}


static void
test_sse_multiline(void **state)
{
    test_sse_t  t;

    (void) state;

    test_sse_open(&t, 256);

    test_sse_feed(&t, "data: a\ndata:b\ndata\ndata: c\n\n");
    assert_int_equal(t.nev, 1);
    test_sse_expect(&t, 0, "", "a\nb\n\nc");

    test_sse_close(&t);
}


static void
test_sse_names(void **state)
{
    test_sse_t  t;

    (void) state;

    test_sse_open(&t, 256);

    test_sse_feed(&t,
                  "event: message_start\ndata: {\"a\":1}\n\n"
                  "data: unnamed\n\n"
                  "event: one\nevent:two\ndata: last name wins\n\n"
                  "data: x\nevent: after\n\n");
    assert_int_equal(t.nev, 4);
    test_sse_expect(&t, 0, "message_start", "{\"a\":1}");
    test_sse_expect(&t, 1, "", "unnamed");
    test_sse_expect(&t, 2, "two", "last name wins");
    test_sse_expect(&t, 3, "after", "x");

    test_sse_close(&t);
}


static void
test_sse_no_data(void **state)
{
    test_sse_t  t;

    (void) state;

    test_sse_open(&t, 256);

    /* an event without data is not dispatched and its name is forgotten */
    test_sse_feed(&t, "event: ping\n\n\n\nid: 7\nretry: 10\n\ndata: d\n\n");
    assert_int_equal(t.nev, 1);
    test_sse_expect(&t, 0, "", "d");

    test_sse_close(&t);
}


static void
test_sse_comments(void **state)
{
    test_sse_t  t;

    (void) state;

    test_sse_open(&t, 256);

    test_sse_feed(&t, ": keep-alive\n:\ndata: a\n: inside\ndata: b\n\n"
                      ":data: not data\n\n");
    assert_int_equal(t.nev, 1);
    test_sse_expect(&t, 0, "", "a\nb");

    test_sse_close(&t);
}


static void
test_sse_unknown_fields(void **state)
{
    test_sse_t  t;

    (void) state;

    test_sse_open(&t, 256);

    test_sse_feed(&t, "datum: no\nDATA: no\ndata : no\nid\nfoo: bar\n"
                      "data: yes\n\n");
    assert_int_equal(t.nev, 1);
    test_sse_expect(&t, 0, "", "yes");

    test_sse_close(&t);
}


static void
test_sse_crlf_cr(void **state)
{
    test_sse_t  t;

    (void) state;

    test_sse_open(&t, 256);

    test_sse_feed(&t, "event: a\r\ndata: 1\r\n\r\n"
                      "data: 2\rdata: 3\r\r"
                      "data: 4\n\r\n"
                      "data: 5\r\n\n");
    assert_int_equal(t.nev, 4);
    test_sse_expect(&t, 0, "a", "1");
    test_sse_expect(&t, 1, "", "2\n3");
    test_sse_expect(&t, 2, "", "4");
    test_sse_expect(&t, 3, "", "5");

    test_sse_close(&t);
}


static void
test_sse_incomplete(void **state)
{
    test_sse_t  t;

    (void) state;

    test_sse_open(&t, 256);

    /* nothing until the blank line */
    assert_int_equal(test_sse_feed(&t, "data: a\ndata: b\n"), NGX_AGAIN);
    assert_int_equal(t.nev, 0);
    assert_int_equal(test_sse_feed(&t, "data: c"), NGX_AGAIN);
    assert_int_equal(t.nev, 0);
    assert_int_equal(test_sse_feed(&t, "\n"), NGX_AGAIN);
    assert_int_equal(t.nev, 0);
    assert_int_equal(test_sse_feed(&t, "\n"), NGX_AGAIN);
    assert_int_equal(t.nev, 1);
    test_sse_expect(&t, 0, "", "a\nb\nc");

    test_sse_close(&t);
}


static void
test_sse_bound(void **state)
{
    test_sse_t  t;

    (void) state;

    /* "data: " plus 10 bytes fills 16 exactly */
    test_sse_open(&t, 16);
    test_sse_feed(&t, "data: 0123456789\n\n");
    assert_int_equal(t.nev, 1);
    assert_int_equal(t.errors, 0);
    test_sse_expect(&t, 0, "", "0123456789");

    /* the buffer is free again after an event */
    test_sse_feed(&t, "data: abcdefghij\n\n");
    assert_int_equal(t.nev, 2);
    test_sse_expect(&t, 1, "", "abcdefghij");

    /* one byte more is an error, and stays one */
    assert_int_equal(test_sse_feed(&t, "data: 0123456789A\n\n"), NGX_ERROR);
    assert_int_equal(t.nev, 2);
    assert_int_equal(test_sse_feed(&t, "data: x\n\n"), NGX_ERROR);
    assert_int_equal(t.nev, 2);
    test_sse_close(&t);

    /* data kept plus the next raw line count together */
    test_sse_open(&t, 16);
    assert_int_equal(test_sse_feed(&t, "data: 012345678\n"), NGX_AGAIN);
    assert_int_equal(test_sse_feed(&t, "data: 89\n"), NGX_ERROR);
    assert_int_equal(t.nev, 0);
    test_sse_close(&t);

    /* split across pieces, byte by byte */
    test_sse_open(&t, 16);
    {
        const char  *s = "data: 0123456789AB\n\n";
        size_t       i;

        for (i = 0; s[i]; i++) {
            if (test_sse_feed_n(&t, s + i, 1) == NGX_ERROR) {
                break;
            }
        }

        assert_int_equal(i, 16);
        assert_int_equal(t.nev, 0);
    }
    test_sse_close(&t);
}


static void
test_sse_long_comment(void **state)
{
    test_sse_t   t;
    char        *s;
    size_t       n;

    (void) state;

    /* a comment far longer than the buffer costs nothing */
    n = 10000;
    s = malloc(n + 32);
    assert_non_null(s);
    s[0] = ':';
    memset(s + 1, 'c', n - 1);
    strcpy(s + n, "\ndata: ok\n\n");

    test_sse_open(&t, 16);
    assert_int_equal(test_sse_feed(&t, s), NGX_AGAIN);
    assert_int_equal(t.errors, 0);
    assert_int_equal(t.nev, 1);
    test_sse_expect(&t, 0, "", "ok");
    test_sse_close(&t);

    free(s);
}


static void
test_sse_long_name(void **state)
{
    test_sse_t  t;
    char        s[256];

    (void) state;

    test_sse_open(&t, 256);
    strcpy(s, "event: ");
    memset(s + 7, 'n', NGX_HTTP_VOICE_SSE_NAME);
    strcpy(s + 7 + NGX_HTTP_VOICE_SSE_NAME, "\ndata: a\n\n");
    test_sse_feed(&t, s);
    assert_int_equal(t.errors, 0);
    assert_int_equal(t.nev, 1);
    assert_int_equal(t.ev[0].name_len, NGX_HTTP_VOICE_SSE_NAME);
    test_sse_close(&t);

    test_sse_open(&t, 256);
    strcpy(s, "event: ");
    memset(s + 7, 'n', NGX_HTTP_VOICE_SSE_NAME + 1);
    strcpy(s + 8 + NGX_HTTP_VOICE_SSE_NAME, "\ndata: a\n\n");
    assert_int_equal(test_sse_feed(&t, s), NGX_ERROR);
    assert_int_equal(t.nev, 0);
    test_sse_close(&t);
}


/* streams whose events must come out the same however they are split */

static const char  *test_sse_samples[] = {

    /* an OpenAI-style stream */
    "data: {\"choices\":[{\"delta\":{\"content\":\"H\\u00e9\"}}]}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"ll\xc3\xb6 \xe2\x82\xac"
    "\xf0\x9f\x98\x80\"}}]}\n\n"
    ": keep-alive\n\n"
    "data: [DONE]\n\n",

    /* an Anthropic-style stream with CRLF */
    "event: message_start\r\ndata: {\"type\":\"message_start\"}\r\n\r\n"
    "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n"
    "event: content_block_delta\r\n"
    "data: {\"delta\":{\"text\":\"\xe4\xbd\xa0\xe5\xa5\xbd\"}}\r\n\r\n"
    "event: message_stop\r\ndata: {}\r\n\r\n",

    /* every line ending, comments, multi-line data, odd fields */
    "data:a\rdata: b\r\n"
    "data\n"
    ":c\r"
    "\r\n"
    "id: 1\r"
    "event:e\n"
    "data:  x\r\r"
    "event: dropped\n\n"
    "retry: 5\r\ndata: tail\n\n"
    "data: unterminated",
};


static void
test_sse_whole(test_sse_t *t, const char *s)
{
    test_sse_open(t, 256);
    test_sse_feed(t, s);
}


static void
test_sse_splits_one(void **state)
{
    size_t       len, i, k;
    test_sse_t   whole, split;
    const char  *s;

    (void) state;

    for (k = 0; k < sizeof(test_sse_samples) / sizeof(char *); k++) {
        s = test_sse_samples[k];
        len = strlen(s);

        test_sse_whole(&whole, s);
        assert_true(whole.nev >= 3);
        assert_int_equal(whole.errors, 0);

        for (i = 0; i <= len; i++) {
            test_sse_open(&split, 256);
            test_sse_feed_n(&split, s, i);
            test_sse_feed_n(&split, s + i, len - i);
            test_sse_same(&whole, &split);
            test_sse_close(&split);
        }

        /* byte by byte */
        test_sse_open(&split, 256);

        for (i = 0; i < len; i++) {
            test_sse_feed_n(&split, s + i, 1);
        }

        test_sse_same(&whole, &split);
        test_sse_close(&split);

        test_sse_close(&whole);
    }
}


static void
test_sse_splits_two(void **state)
{
    size_t       len, i, j, k;
    test_sse_t   whole, split;
    const char  *s;

    (void) state;

    for (k = 0; k < sizeof(test_sse_samples) / sizeof(char *); k++) {
        s = test_sse_samples[k];
        len = strlen(s);

        test_sse_whole(&whole, s);

        for (i = 0; i <= len; i++) {
            for (j = i; j <= len; j++) {
                test_sse_open(&split, 256);
                test_sse_feed_n(&split, s, i);
                test_sse_feed_n(&split, s + i, j - i);
                test_sse_feed_n(&split, s + j, len - j);
                test_sse_same(&whole, &split);
                test_sse_close(&split);
            }
        }

        test_sse_close(&whole);
    }
}


static void
test_sse_expected_samples(void **state)
{
    test_sse_t  t;

    (void) state;

    test_sse_whole(&t, test_sse_samples[0]);
    assert_int_equal(t.nev, 3);
    test_sse_expect(&t, 0, "",
                    "{\"choices\":[{\"delta\":{\"content\":\"H\\u00e9\"}}]}");
    test_sse_expect(&t, 2, "", "[DONE]");
    test_sse_close(&t);

    test_sse_whole(&t, test_sse_samples[1]);
    assert_int_equal(t.nev, 4);
    test_sse_expect(&t, 0, "message_start", "{\"type\":\"message_start\"}");
    test_sse_expect(&t, 1, "ping", "{\"type\": \"ping\"}");
    test_sse_expect(&t, 2, "content_block_delta",
                    "{\"delta\":{\"text\":\"\xe4\xbd\xa0\xe5\xa5\xbd\"}}");
    test_sse_expect(&t, 3, "message_stop", "{}");
    test_sse_close(&t);

    test_sse_whole(&t, test_sse_samples[2]);
    assert_int_equal(t.nev, 3);
    test_sse_expect(&t, 0, "", "a\nb\n");
    test_sse_expect(&t, 1, "e", " x");
    test_sse_expect(&t, 2, "", "tail");
    test_sse_close(&t);
}


/* a pseudo-random stream cut at pseudo-random places */

static void
test_sse_random(void **state)
{
    static const char  *parts[] = {
        "data: ", "data:", "data", "event: ", "e", ": c", "\r", "\n",
        "\r\n", "x", "\xc3\xa9", "id: 3", " ", ":",
    };

    char         s[2048];
    size_t       len, i, n;
    uint32_t     seed;
    ngx_uint_t   round;
    test_sse_t   whole, split;

    (void) state;

    seed = 12345;

    for (round = 0; round < 2000; round++) {
        len = 0;

        while (len < 300) {
            seed = seed * 1103515245 + 12345;
            i = (seed >> 16) % (sizeof(parts) / sizeof(char *));
            n = strlen(parts[i]);
            memcpy(s + len, parts[i], n);
            len += n;
        }

        test_sse_open(&whole, 64);
        test_sse_feed_n(&whole, s, len);

        test_sse_open(&split, 64);

        for (i = 0; i < len; i += n) {
            seed = seed * 1103515245 + 12345;
            n = 1 + (seed >> 16) % 7;
            n = ngx_min(n, len - i);

            if (test_sse_feed_n(&split, s + i, n) == NGX_ERROR) {
                break;
            }
        }

        test_sse_same(&whole, &split);

        test_sse_close(&split);
        test_sse_close(&whole);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_sse_lf),
        cmocka_unit_test(test_sse_space),
        cmocka_unit_test(test_sse_multiline),
        cmocka_unit_test(test_sse_names),
        cmocka_unit_test(test_sse_no_data),
        cmocka_unit_test(test_sse_comments),
        cmocka_unit_test(test_sse_unknown_fields),
        cmocka_unit_test(test_sse_crlf_cr),
        cmocka_unit_test(test_sse_incomplete),
        cmocka_unit_test(test_sse_bound),
        cmocka_unit_test(test_sse_long_comment),
        cmocka_unit_test(test_sse_long_name),
        cmocka_unit_test(test_sse_expected_samples),
        cmocka_unit_test(test_sse_splits_one),
        cmocka_unit_test(test_sse_splits_two),
        cmocka_unit_test(test_sse_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
