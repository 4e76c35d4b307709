
/*
 * Unit tests of the RFC 6455 framing code (ngx_http_voice_ws.c): the
 * parser under every split of its input, each framing rule with its close
 * code, UTF-8 and close payload validation, the header writer, masking.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_voice_ws.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>


#define WS_FIN          0x80
#define WS_TEXT         NGX_HTTP_VOICE_WS_TEXT
#define WS_BINARY       NGX_HTTP_VOICE_WS_BINARY
#define WS_CONT         NGX_HTTP_VOICE_WS_CONT
#define WS_CLOSE        NGX_HTTP_VOICE_WS_CLOSE
#define WS_PING         NGX_HTTP_VOICE_WS_PING
#define WS_PONG         NGX_HTTP_VOICE_WS_PONG

#define WS_MAX_MSGS     64

/* splits of longer streams are sampled (see ws_check_splits) */
#define WS_SPLIT_ALL    600
#define WS_SPLIT_3WAY   48


/* a growing byte buffer the tests build streams in */
typedef struct {
    u_char             *data;
    size_t              len;
    size_t              size;
} ws_buf_t;


/* a message as the parser handed it out, chunk after chunk */
typedef struct {
    ngx_uint_t          opcode;
    u_char             *data;
    size_t              len;
    size_t              size;
    ngx_uint_t          chunks;
} ws_msg_t;


/* everything one run of the parser produced */
typedef struct {
    ws_msg_t            msgs[WS_MAX_MSGS];  /* in order of completion */
    ngx_uint_t          nmsgs;
    ws_msg_t            open;               /* data message in progress */
    ngx_uint_t          open_active;
    ngx_int_t           rc;                 /* NGX_AGAIN or NGX_ERROR */
    ngx_uint_t          close_code;
} ws_trace_t;


typedef struct {
    ngx_uint_t          masked;
    uint64_t            max_frame;
    uint64_t            max_message;
} ws_conf_t;


static const u_char  ws_key[4] = { 0x37, 0xfa, 0x21, 0x3d };
static const u_char  ws_key2[4] = { 0x00, 0xff, 0x80, 0x01 };

static const ws_conf_t  ws_server = { 1, 0, 0 };
static const ws_conf_t  ws_client = { 0, 0, 0 };


/* ---- helpers ----------------------------------------------------------- */


static void
ws_buf_add(ws_buf_t *b, const void *data, size_t len)
{
    if (b->len + len > b->size) {
        b->size = (b->len + len) * 2 + 64;
        b->data = realloc(b->data, b->size);
        assert_non_null(b->data);
    }

    if (len) {
        memcpy(b->data + b->len, data, len);
        b->len += len;
    }
}


static void
ws_buf_free(ws_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->size = 0;
}


/*
 * Appends a frame built by hand, independently of the header writer
 * under test: b0 is the raw first byte, the length is encoded minimally,
 * the payload is masked with key when key is not NULL.
 */
static void
ws_frame(ws_buf_t *b, u_char b0, const void *payload, uint64_t len,
    const u_char *key)
{
    u_char         h[14], m;
    size_t         n, i;
    const u_char  *s;

    h[0] = b0;
    m = key ? 0x80 : 0;

    if (len < 126) {
        h[1] = m | (u_char) len;
        n = 2;

    } else if (len < 65536) {
        h[1] = m | 126;
        h[2] = (u_char) (len / 256);
        h[3] = (u_char) (len % 256);
        n = 4;

    } else {
        h[1] = m | 127;

        for (i = 0; i < 8; i++) {
            h[9 - i] = (u_char) (len >> (8 * i));
        }

        n = 10;
    }

    if (key) {
        memcpy(h + n, key, 4);
        n += 4;
    }

    ws_buf_add(b, h, n);

    s = payload;

    for (i = 0; i < len; i++) {
        m = s[i] ^ (key ? key[i % 4] : 0);
        ws_buf_add(b, &m, 1);
    }
}


/* a frame of the peer: masked when the parser is server side */
static void
ws_peer(ws_buf_t *b, const ws_conf_t *conf, u_char b0, const void *payload,
    uint64_t len)
{
    ws_frame(b, b0, payload, len, conf->masked ? ws_key : NULL);
}


static u_char *
ws_pattern(size_t len, ngx_uint_t seed)
{
    u_char  *p;
    size_t   i;

    p = malloc(len ? len : 1);
    assert_non_null(p);

    for (i = 0; i < len; i++) {
        p[i] = (u_char) (i * 7 + seed * 13 + (i >> 8));
    }

    return p;
}


static void
ws_trace_init(ws_trace_t *t)
{
    memset(t, 0, sizeof(ws_trace_t));
    t->rc = NGX_AGAIN;
}


static void
ws_trace_free(ws_trace_t *t)
{
    ngx_uint_t  i;

    for (i = 0; i < t->nmsgs; i++) {
        free(t->msgs[i].data);
    }

    free(t->open.data);
    ws_trace_init(t);
}


static void
ws_msg_append(ws_msg_t *m, const u_char *data, size_t len)
{
    if (m->data == NULL || m->len + len > m->size) {
        m->size = (m->len + len) * 2 + 16;
        m->data = realloc(m->data, m->size);
        assert_non_null(m->data);
    }

    if (len) {
        memcpy(m->data + m->len, data, len);
    }

    m->len += len;
    m->chunks++;
}


/*
 * Records one chunk and checks it against the contract: control chunks
 * come whole from p->control; data chunks point into the bytes just fed,
 * carry first only on a message's first chunk and last only on its last,
 * and are never empty unless they end the message.
 */
static void
ws_trace_chunk(ws_trace_t *t, ngx_http_voice_ws_parser_t *p,
    ngx_http_voice_ws_chunk_t *c, u_char *start, u_char *end)
{
    ws_msg_t  *m;

    assert_true(t->nmsgs < WS_MAX_MSGS);

    if (c->opcode & 0x8) {
        assert_true(c->opcode == WS_CLOSE || c->opcode == WS_PING
                    || c->opcode == WS_PONG);
        assert_true(c->first);
        assert_true(c->last);
        assert_ptr_equal(c->data, p->control);
        assert_true(c->len <= NGX_HTTP_VOICE_WS_MAX_CONTROL);

        m = &t->msgs[t->nmsgs++];
        memset(m, 0, sizeof(ws_msg_t));
        m->opcode = c->opcode;
        ws_msg_append(m, c->data, c->len);
        return;
    }

    assert_true(c->opcode == WS_TEXT || c->opcode == WS_BINARY);
    assert_true(c->data >= start && c->data + c->len <= end);
    assert_true(c->len > 0 || c->last);

    if (c->first) {
        assert_false(t->open_active);
        memset(&t->open, 0, sizeof(ws_msg_t));
        t->open.opcode = c->opcode;
        t->open_active = 1;

    } else {
        assert_true(t->open_active);
        assert_int_equal(c->opcode, t->open.opcode);
    }

    ws_msg_append(&t->open, c->data, c->len);

    if (c->last) {
        t->msgs[t->nmsgs++] = t->open;
        memset(&t->open, 0, sizeof(ws_msg_t));
        t->open_active = 0;
    }
}


/*
 * Feeds one read's worth of bytes from a buffer of exactly that size, so
 * the sanitizer sees any access past the slice.
 */
static void
ws_feed(ws_trace_t *t, ngx_http_voice_ws_parser_t *p, const u_char *data,
    size_t len)
{
    u_char                     *buf, *pos, *prev;
    ngx_int_t                   rc;
    ngx_http_voice_ws_chunk_t   c;

    if (t->rc == NGX_ERROR || len == 0) {
        return;
    }

    buf = malloc(len);
    assert_non_null(buf);
    memcpy(buf, data, len);

    pos = buf;

    for ( ;; ) {
        prev = pos;
        memset(&c, 0xa5, sizeof(c));

        rc = ngx_http_voice_ws_parse(p, &pos, buf + len, &c);

        if (rc == NGX_AGAIN) {
            assert_ptr_equal(pos, buf + len);
            break;
        }

        if (rc == NGX_ERROR) {
            assert_non_null(p->error);
            t->rc = NGX_ERROR;
            t->close_code = p->close_code;
            break;
        }

        assert_int_equal(rc, NGX_OK);

        /* every chunk ends a frame or carries bytes: progress is made */
        assert_true(pos > prev && pos <= buf + len);

        ws_trace_chunk(t, p, &c, buf, buf + len);
    }

    free(buf);
}


/* one run: the stream cut at a and b (0 <= a <= b <= len) */
static void
ws_run(ws_trace_t *t, const ws_conf_t *conf, const u_char *s, size_t len,
    size_t a, size_t b)
{
    ngx_http_voice_ws_parser_t  p;

    ws_trace_init(t);
    ngx_http_voice_ws_parser_init(&p, conf->masked, conf->max_frame,
                                  conf->max_message);

    ws_feed(t, &p, s, a);
    ws_feed(t, &p, s + a, b - a);
    ws_feed(t, &p, s + b, len - b);
}


/* one run: the stream fed 'step' bytes at a time */
static void
ws_run_step(ws_trace_t *t, const ws_conf_t *conf, const u_char *s,
    size_t len, size_t step)
{
    size_t                      off, n;
    ngx_http_voice_ws_parser_t  p;

    ws_trace_init(t);
    ngx_http_voice_ws_parser_init(&p, conf->masked, conf->max_frame,
                                  conf->max_message);

    for (off = 0; off < len; off += n) {
        n = ngx_min(step, len - off);
        ws_feed(t, &p, s + off, n);
    }
}


static void
ws_trace_compare(const ws_trace_t *ref, const ws_trace_t *t)
{
    ngx_uint_t  i;

    assert_int_equal(t->rc, ref->rc);
    assert_int_equal(t->close_code, ref->close_code);
    assert_int_equal(t->nmsgs, ref->nmsgs);

    for (i = 0; i < ref->nmsgs; i++) {
        assert_int_equal(t->msgs[i].opcode, ref->msgs[i].opcode);
        assert_int_equal(t->msgs[i].len, ref->msgs[i].len);

        if (ref->msgs[i].len) {
            assert_memory_equal(t->msgs[i].data, ref->msgs[i].data,
                                ref->msgs[i].len);
        }

        /* an empty message is always exactly one chunk */
        if (ref->msgs[i].len == 0) {
            assert_int_equal(t->msgs[i].chunks, 1);
        }
    }

    if (ref->rc == NGX_AGAIN) {
        assert_int_equal(t->open_active, ref->open_active);
    }
}


static ngx_uint_t
ws_is_cut(size_t i, size_t len)
{
    return len <= WS_SPLIT_ALL || i < 24 || i + 24 > len || i % 997 == 0;
}


/*
 * Parses the stream in one piece into *ref, then again byte by byte, in
 * every 2-way split and (for short streams) every 3-way split, and
 * requires the same messages, result and close code each time.  Streams
 * longer than WS_SPLIT_ALL are cut at every position near both ends and
 * at a stride in between.
 */
static void
ws_check_splits(const ws_conf_t *conf, const u_char *s, size_t len,
    ws_trace_t *ref)
{
    size_t      a, b, step;
    ws_trace_t  t;

    ws_run(ref, conf, s, len, len, len);

    for (step = 1; step <= 3; step++) {
        ws_run_step(&t, conf, s, len, step);
        ws_trace_compare(ref, &t);
        ws_trace_free(&t);
    }

    for (a = 0; a <= len; a++) {
        if (!ws_is_cut(a, len)) {
            continue;
        }

        ws_run(&t, conf, s, len, a, len);
        ws_trace_compare(ref, &t);
        ws_trace_free(&t);
    }

    if (len > WS_SPLIT_3WAY) {
        return;
    }

    for (a = 0; a <= len; a++) {
        for (b = a; b <= len; b++) {
            ws_run(&t, conf, s, len, a, b);
            ws_trace_compare(ref, &t);
            ws_trace_free(&t);
        }
    }
}


static void
ws_expect_msg(const ws_trace_t *t, ngx_uint_t i, ngx_uint_t opcode,
    const void *data, size_t len)
{
    assert_true(i < t->nmsgs);
    assert_int_equal(t->msgs[i].opcode, opcode);
    assert_int_equal(t->msgs[i].len, len);

    if (len) {
        assert_memory_equal(t->msgs[i].data, data, len);
    }
}


/* the stream fails with 'code' however it is split */
static void
ws_expect_error(const ws_conf_t *conf, ws_buf_t *b, ngx_uint_t code,
    ngx_uint_t msgs_before)
{
    ws_trace_t  ref;

    ws_check_splits(conf, b->data, b->len, &ref);

    assert_int_equal(ref.rc, NGX_ERROR);
    assert_int_equal(ref.close_code, code);
    assert_int_equal(ref.nmsgs, msgs_before);

    ws_trace_free(&ref);
}


/* a parser fed 'len' bytes at once: its result, and the chunk if any */
static ngx_int_t
ws_parse_once(ngx_http_voice_ws_parser_t *p, u_char *data, size_t len,
    ngx_http_voice_ws_chunk_t *c, u_char **pos)
{
    *pos = data;

    return ngx_http_voice_ws_parse(p, pos, data + len, c);
}


/* ---- UTF-8 ------------------------------------------------------------- */


/*
 * Reference validator written another way: decode each sequence to its
 * code point and judge the value; for a sequence cut short by the end of
 * the input, ask whether any completion could still be valid.
 */
static ngx_uint_t
ws_ref_range_ok(uint32_t lo, uint32_t hi, uint32_t min)
{
    lo = ngx_max(lo, min);
    hi = ngx_min(hi, 0x10ffff);

    if (lo > hi) {
        return 0;
    }

    if (lo >= 0xd800 && hi <= 0xdfff) {
        return 0;
    }

    return 1;
}


static ngx_int_t
ws_ref_utf8(const u_char *s, size_t len)
{
    size_t    i, k, n, have;
    uint32_t  cp, lo, hi, min;

    i = 0;

    while (i < len) {

        if (s[i] < 0x80) {
            i++;
            continue;
        }

        if ((s[i] & 0xe0) == 0xc0) {
            n = 1;
            cp = s[i] & 0x1f;
            min = 0x80;

        } else if ((s[i] & 0xf0) == 0xe0) {
            n = 2;
            cp = s[i] & 0x0f;
            min = 0x800;

        } else if ((s[i] & 0xf8) == 0xf0) {
            n = 3;
            cp = s[i] & 0x07;
            min = 0x10000;

        } else {
            return NGX_ERROR;
        }

        have = ngx_min(n, len - i - 1);

        for (k = 1; k <= have; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return NGX_ERROR;
            }

            cp = (cp << 6) | (s[i + k] & 0x3f);
        }

        if (have < n) {
            lo = cp;
            hi = cp;

            for (k = have; k < n; k++) {
                lo = lo << 6;
                hi = (hi << 6) | 0x3f;
            }

            return ws_ref_range_ok(lo, hi, min) ? NGX_AGAIN : NGX_ERROR;
        }

        if (!ws_ref_range_ok(cp, cp, min)) {
            return NGX_ERROR;
        }

        i += n + 1;
    }

    return NGX_OK;
}


static ngx_int_t
ws_utf8(const void *s, size_t len)
{
    uint32_t  state;

    state = 0;

    return ngx_http_voice_ws_utf8(&state, s, len);
}


/* the same input fed in two calls, cut at every position */
static void
ws_utf8_all_splits(const u_char *s, size_t len, ngx_int_t expect)
{
    size_t     a;
    uint32_t   state;
    ngx_int_t  rc;

    for (a = 0; a <= len; a++) {
        state = 0;
        rc = ngx_http_voice_ws_utf8(&state, s, a);

        if (rc != NGX_ERROR) {
            rc = ngx_http_voice_ws_utf8(&state, s + a, len - a);
        }

        assert_int_equal(rc, expect);
    }
}


typedef struct {
    const char         *s;
    ngx_int_t           rc;
} ws_utf8_case_t;


static const ws_utf8_case_t  ws_utf8_cases[] = {
    { "", NGX_OK },
    { "plain ascii {\"type\":\"session.start\"}", NGX_OK },
    { "\x7f", NGX_OK },
    { "\xc2\x80", NGX_OK },                     /* U+0080 */
    { "\xdf\xbf", NGX_OK },                     /* U+07FF */
    { "\xe0\xa0\x80", NGX_OK },                 /* U+0800 */
    { "\xed\x9f\xbf", NGX_OK },                 /* U+D7FF */
    { "\xee\x80\x80", NGX_OK },                 /* U+E000 */
    { "\xef\xbf\xbf", NGX_OK },                 /* U+FFFF */
    { "\xf0\x90\x80\x80", NGX_OK },             /* U+10000 */
    { "\xf4\x8f\xbf\xbf", NGX_OK },             /* U+10FFFF */
    { "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x8e\xa4!", NGX_OK },
    { "\xc3", NGX_AGAIN },
    { "\xe2\x82", NGX_AGAIN },
    { "\xf0\x9f\x8e", NGX_AGAIN },
    { "ok\xf4", NGX_AGAIN },
    { "\x80", NGX_ERROR },                      /* stray continuation */
    { "\xbf", NGX_ERROR },
    { "a\x80z", NGX_ERROR },
    { "\xc3\xa9\xa9", NGX_ERROR },
    { "\xc0\x80", NGX_ERROR },                  /* overlong NUL */
    { "\xc1\xbf", NGX_ERROR },                  /* overlong U+007F */
    { "\xc0", NGX_ERROR },
    { "\xe0\x80\x80", NGX_ERROR },              /* overlong 3-byte */
    { "\xe0\x9f\xbf", NGX_ERROR },              /* overlong U+07FF */
    { "\xe0\x9f", NGX_ERROR },
    { "\xf0\x80\x80\x80", NGX_ERROR },          /* overlong 4-byte */
    { "\xf0\x8f\xbf\xbf", NGX_ERROR },          /* overlong U+FFFF */
    { "\xed\xa0\x80", NGX_ERROR },              /* U+D800 */
    { "\xed\xbf\xbf", NGX_ERROR },              /* U+DFFF */
    { "\xed\xa0\x80\xed\xb0\x80", NGX_ERROR },  /* surrogate pair */
    { "\xed\xa0", NGX_ERROR },
    { "\xf4\x90\x80\x80", NGX_ERROR },          /* U+110000 */
    { "\xf4\x90", NGX_ERROR },
    { "\xf5\x80\x80\x80", NGX_ERROR },
    { "\xf7\xbf\xbf\xbf", NGX_ERROR },
    { "\xf8\x88\x80\x80\x80", NGX_ERROR },
    { "\xfe", NGX_ERROR },
    { "\xff", NGX_ERROR },
    { "\xe2\x82" "A", NGX_ERROR },              /* sequence cut by ASCII */
    { "\xe2" "A", NGX_ERROR },
    { "\xf0\x9f\x8e" "A", NGX_ERROR },
    { "\xc3\xc3\xa9", NGX_ERROR },
};


static void
test_utf8_cases(void **state)
{
    size_t      i, len;
    ngx_int_t   rc;
    const char *s;

    (void) state;

    for (i = 0; i < sizeof(ws_utf8_cases) / sizeof(ws_utf8_cases[0]); i++) {
        s = ws_utf8_cases[i].s;
        len = strlen(s);

        /* the reference agrees with the table, so the table is right */
        assert_int_equal(ws_ref_utf8((u_char *) s, len), ws_utf8_cases[i].rc);

        rc = ws_utf8(s, len);
        assert_int_equal(rc, ws_utf8_cases[i].rc);

        ws_utf8_all_splits((u_char *) s, len, ws_utf8_cases[i].rc);
    }
}


static void
test_utf8_byte_by_byte(void **state)
{
    size_t       i, k, len;
    uint32_t     st;
    ngx_int_t    rc, expect;
    const char  *s;

    (void) state;

    for (i = 0; i < sizeof(ws_utf8_cases) / sizeof(ws_utf8_cases[0]); i++) {
        s = ws_utf8_cases[i].s;
        len = strlen(s);
        st = 0;
        rc = NGX_OK;

        for (k = 0; k < len; k++) {
            rc = ngx_http_voice_ws_utf8(&st, (u_char *) s + k, 1);

            /* the verdict on each prefix, as early as it can be given */
            expect = ws_ref_utf8((u_char *) s, k + 1);
            assert_int_equal(rc, expect);

            if (rc == NGX_ERROR) {
                break;
            }
        }

        assert_int_equal(rc, ws_utf8_cases[i].rc);
    }
}


/* every 1- and 2-byte input, and all 3- and 4-byte inputs near the edges */
static void
test_utf8_exhaustive(void **state)
{
    u_char      s[4];
    uint32_t    a, b, c, d, st;
    ngx_int_t   rc;

    static const u_char  last[] = {
        0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff
    };

    (void) state;

    for (a = 0; a < 256; a++) {
        s[0] = (u_char) a;
        assert_int_equal(ws_utf8(s, 1), ws_ref_utf8(s, 1));

        for (b = 0; b < 256; b++) {
            s[1] = (u_char) b;
            rc = ws_ref_utf8(s, 2);
            assert_int_equal(ws_utf8(s, 2), rc);

            /* and the same two bytes in two calls */
            st = 0;
            if (ngx_http_voice_ws_utf8(&st, s, 1) != NGX_ERROR) {
                assert_int_equal(ngx_http_voice_ws_utf8(&st, s + 1, 1), rc);
            } else {
                assert_int_equal(rc, NGX_ERROR);
            }
        }
    }

    for (a = 0xe0; a <= 0xf4; a++) {
        for (b = 0; b < 256; b++) {
            for (c = 0; c < 256; c++) {
                s[0] = (u_char) a;
                s[1] = (u_char) b;
                s[2] = (u_char) c;
                assert_int_equal(ws_utf8(s, 3), ws_ref_utf8(s, 3));
            }
        }
    }

    for (a = 0xf0; a <= 0xf7; a++) {
        for (b = 0x70; b <= 0xc8; b++) {
            for (c = 0x7e; c <= 0xc1; c++) {
                for (d = 0; d < sizeof(last); d++) {
                    s[0] = (u_char) a;
                    s[1] = (u_char) b;
                    s[2] = (u_char) c;
                    s[3] = last[d];
                    assert_int_equal(ws_utf8(s, 4), ws_ref_utf8(s, 4));
                }
            }
        }
    }
}


/* the ASCII fast path: a bad or multi-byte character at every offset */
static void
test_utf8_offsets(void **state)
{
    u_char      s[80];
    size_t      i, len;
    uint32_t    st;

    (void) state;

    for (len = 1; len < 70; len++) {
        for (i = 0; i < len; i++) {
            memset(s, 'a', len);
            s[i] = 0x80;
            assert_int_equal(ws_utf8(s, len), NGX_ERROR);

            s[i] = 0xff;
            assert_int_equal(ws_utf8(s, len), NGX_ERROR);

            s[i] = 0xe2;
            assert_int_equal(ws_utf8(s, len),
                             i == len - 1 ? NGX_AGAIN : NGX_ERROR);
        }

        for (i = 0; i + 3 <= len; i++) {
            memset(s, 'a', len);
            memcpy(s + i, "\xe2\x82\xac", 3);
            assert_int_equal(ws_utf8(s, len), NGX_OK);

            /* and the euro sign cut across two calls right in it */
            st = 0;
            assert_int_equal(ngx_http_voice_ws_utf8(&st, s, i + 1),
                             NGX_AGAIN);
            assert_int_equal(ngx_http_voice_ws_utf8(&st, s + i + 1,
                                                    len - i - 1),
                             NGX_OK);
        }
    }
}


static void
test_utf8_error_sticks(void **state)
{
    uint32_t  st;

    (void) state;

    st = 0;
    assert_int_equal(ngx_http_voice_ws_utf8(&st, (u_char *) "\xc0", 1),
                     NGX_ERROR);
    assert_int_equal(ngx_http_voice_ws_utf8(&st, (u_char *) "abc", 3),
                     NGX_ERROR);
    assert_int_equal(ngx_http_voice_ws_utf8(&st, (u_char *) "", 0),
                     NGX_ERROR);

    /* a state left open stays open across an empty call */
    st = 0;
    assert_int_equal(ngx_http_voice_ws_utf8(&st, (u_char *) "\xf0\x9f", 2),
                     NGX_AGAIN);
    assert_int_equal(ngx_http_voice_ws_utf8(&st, (u_char *) "", 0),
                     NGX_AGAIN);
    assert_int_equal(ngx_http_voice_ws_utf8(&st, (u_char *) "\x8e", 1),
                     NGX_AGAIN);
    assert_int_equal(ngx_http_voice_ws_utf8(&st, (u_char *) "\xa4", 1),
                     NGX_OK);
    assert_int_equal(st, 0);
}


/* ---- close payload ----------------------------------------------------- */


static ngx_uint_t
ws_close(ngx_uint_t status, const char *reason, size_t rlen,
    ngx_uint_t *code)
{
    u_char  buf[128];

    buf[0] = (u_char) (status >> 8);
    buf[1] = (u_char) status;
    memcpy(buf + 2, reason, rlen);

    return ngx_http_voice_ws_close_check(buf, 2 + rlen, code);
}


static void
test_close_check(void **state)
{
    u_char      *one;
    ngx_uint_t   i, code, rc, valid;

    static const ngx_uint_t  good[] = {
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
        1014, 3000, 3999, 4000, 4999
    };

    static const ngx_uint_t  bad[] = {
        0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
        9999, 65535
    };

    (void) state;

    code = 0;
    assert_int_equal(ngx_http_voice_ws_close_check((u_char *) "", 0, &code),
                     0);
    assert_int_equal(code, NGX_HTTP_VOICE_WS_NO_STATUS);

    /* one byte, alone in its buffer: nothing past it may be read */
    one = malloc(1);
    assert_non_null(one);
    one[0] = 0x03;
    assert_int_equal(ngx_http_voice_ws_close_check(one, 1, &code),
                     NGX_HTTP_VOICE_WS_PROTOCOL_ERROR);
    free(one);

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        code = 0;
        assert_int_equal(ws_close(good[i], "", 0, &code), 0);
        assert_int_equal(code, good[i]);
        assert_int_equal(ws_close(good[i], "bye \xe2\x82\xac", 7, &code), 0);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ws_close(bad[i], "", 0, &code),
                         NGX_HTTP_VOICE_WS_PROTOCOL_ERROR);
    }

    /* every code: exactly the ranges above pass */
    for (i = 0; i < 65536; i++) {
        valid = (i >= 1000 && i <= 1003) || (i >= 1007 && i <= 1014)
                || (i >= 3000 && i <= 4999);
        rc = ws_close(i, "x", 1, &code);
        assert_int_equal(rc, valid ? 0 : NGX_HTTP_VOICE_WS_PROTOCOL_ERROR);
    }

    /* the reason must be complete, valid UTF-8 */
    assert_int_equal(ws_close(1000, "\xc0\x80", 2, &code),
                     NGX_HTTP_VOICE_WS_INVALID_DATA);
    assert_int_equal(ws_close(1000, "\xed\xa0\x80", 3, &code),
                     NGX_HTTP_VOICE_WS_INVALID_DATA);
    assert_int_equal(ws_close(1001, "ok\xe2\x82", 4, &code),
                     NGX_HTTP_VOICE_WS_INVALID_DATA);
    assert_int_equal(ws_close(4000, "\xf4\x90\x80\x80", 4, &code),
                     NGX_HTTP_VOICE_WS_INVALID_DATA);
}


/* ---- header writer and mask ------------------------------------------- */


static void
test_header_lengths(void **state)
{
    u_char      buf[NGX_HTTP_VOICE_WS_MAX_HEADER + 2];
    size_t      n;
    ngx_uint_t  i;

    static const struct {
        uint64_t      len;
        size_t        size;
        const char   *bytes;
    } cases[] = {
        { 0, 2, "\x82\x00" },
        { 1, 2, "\x82\x01" },
        { 125, 2, "\x82\x7d" },
        { 126, 4, "\x82\x7e\x00\x7e" },
        { 127, 4, "\x82\x7e\x00\x7f" },
        { 1920, 4, "\x82\x7e\x07\x80" },
        { 65535, 4, "\x82\x7e\xff\xff" },
        { 65536, 10, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" },
        { 0x0102030405060708ULL, 10,
          "\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08" },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(buf, 0xee, sizeof(buf));

        n = ngx_http_voice_ws_header(buf, WS_BINARY, 1, cases[i].len, NULL);
        assert_int_equal(n, cases[i].size);
        assert_memory_equal(buf, cases[i].bytes, n);
        assert_int_equal(buf[n], 0xee);

        /* masked: the same plus the mask bit and the key */
        memset(buf, 0xee, sizeof(buf));

        n = ngx_http_voice_ws_header(buf, WS_BINARY, 1, cases[i].len, ws_key);
        assert_int_equal(n, cases[i].size + 4);
        assert_int_equal(buf[0], 0x82);
        assert_int_equal(buf[1], (u_char) cases[i].bytes[1] | 0x80);
        assert_memory_equal(buf + 2, cases[i].bytes + 2, cases[i].size - 2);
        assert_memory_equal(buf + cases[i].size, ws_key, 4);
        assert_int_equal(buf[n], 0xee);
    }
}


static void
test_header_opcode_fin(void **state)
{
    u_char  buf[NGX_HTTP_VOICE_WS_MAX_HEADER];

    (void) state;

    assert_int_equal(ngx_http_voice_ws_header(buf, WS_TEXT, 1, 5, NULL), 2);
    assert_int_equal(buf[0], 0x81);

    assert_int_equal(ngx_http_voice_ws_header(buf, WS_TEXT, 0, 5, NULL), 2);
    assert_int_equal(buf[0], 0x01);

    assert_int_equal(ngx_http_voice_ws_header(buf, WS_CONT, 0, 5, NULL), 2);
    assert_int_equal(buf[0], 0x00);

    assert_int_equal(ngx_http_voice_ws_header(buf, WS_CLOSE, 1, 2, NULL), 2);
    assert_int_equal(buf[0], 0x88);
    assert_int_equal(buf[1], 0x02);

    assert_int_equal(ngx_http_voice_ws_header(buf, WS_PING, 1, 0, NULL), 2);
    assert_int_equal(buf[0], 0x89);

    assert_int_equal(ngx_http_voice_ws_header(buf, WS_PONG, 1, 125, ws_key),
                     6);
    assert_int_equal(buf[0], 0x8a);
    assert_int_equal(buf[1], 0xfd);
}


/*
 * Frames written with the header writer (and masked with the mask
 * function) come back whole through a parser of the other side.
 */
static void
test_header_round_trip(void **state)
{
    u_char                      *payload, *frame, *pos;
    size_t                       hlen, size;
    ngx_int_t                    rc;
    ngx_uint_t                   i, side;
    ngx_http_voice_ws_chunk_t    c;
    ngx_http_voice_ws_parser_t   p;

    static const uint64_t  lens[] = { 0, 1, 125, 126, 127, 65535, 65536 };
    static const size_t    hsize[] = { 2, 2, 2, 4, 4, 4, 10 };

    (void) state;

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (side = 0; side < 2; side++) {

            payload = ws_pattern(lens[i], i);
            frame = malloc(NGX_HTTP_VOICE_WS_MAX_HEADER + lens[i]);
            assert_non_null(frame);

            /* side 0: we write as server, a client parser reads */
            hlen = ngx_http_voice_ws_header(frame, WS_BINARY, 1, lens[i],
                                            side ? ws_key2 : NULL);
            assert_int_equal(hlen, hsize[i] + (side ? 4 : 0));

            memcpy(frame + hlen, payload, lens[i]);

            if (side) {
                ngx_http_voice_ws_mask(frame + hlen, lens[i], ws_key2, 0);
            }

            size = hlen + lens[i];

            ngx_http_voice_ws_parser_init(&p, side, 0, 0);
            rc = ws_parse_once(&p, frame, size, &c, &pos);

            assert_int_equal(rc, NGX_OK);
            assert_int_equal(c.opcode, WS_BINARY);
            assert_true(c.first);
            assert_true(c.last);
            assert_int_equal(c.len, lens[i]);
            assert_ptr_equal(c.data, frame + hlen);
            assert_ptr_equal(pos, frame + size);

            if (lens[i]) {
                assert_memory_equal(c.data, payload, lens[i]);
            }

            rc = ngx_http_voice_ws_parse(&p, &pos, frame + size, &c);
            assert_int_equal(rc, NGX_AGAIN);

            free(frame);
            free(payload);
        }
    }
}


static void
test_mask(void **state)
{
    u_char       *data, *ref;
    size_t        len, start, i, cut;
    ngx_uint_t    off;

    (void) state;

    data = malloc(200);
    ref = malloc(200);
    assert_non_null(data);
    assert_non_null(ref);

    for (start = 0; start < 8; start++) {
        for (len = 0; len < 80; len++) {
            for (off = 0; off < 6; off++) {

                for (i = 0; i < len; i++) {
                    data[start + i] = (u_char) (i * 31 + 5);
                    ref[i] = data[start + i] ^ ws_key[(off + i) % 4];
                }

                ngx_http_voice_ws_mask(data + start, len, ws_key, off);

                if (len) {
                    assert_memory_equal(data + start, ref, len);
                }

                /* twice restores the original */
                ngx_http_voice_ws_mask(data + start, len, ws_key, off);

                for (i = 0; i < len; i++) {
                    assert_int_equal(data[start + i], (u_char) (i * 31 + 5));
                }

                /* in two pieces, the second going on at the key offset */
                cut = len / 3;
                ngx_http_voice_ws_mask(data + start, cut, ws_key, off);
                ngx_http_voice_ws_mask(data + start + cut, len - cut, ws_key,
                                       off + cut);

                if (len) {
                    assert_memory_equal(data + start, ref, len);
                }
            }
        }
    }

    free(data);
    free(ref);
}


/* ---- parser: well-formed streams under every split ------------------- */


static void
test_parse_lengths(void **state)
{
    u_char           *payload;
    ngx_uint_t        i, side, opcode;
    ws_buf_t          b;
    ws_trace_t        ref;
    const ws_conf_t  *conf;

    static const size_t  lens[] = { 0, 1, 125, 126, 127, 65535, 65536 };

    (void) state;

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (side = 0; side < 2; side++) {
            conf = side ? &ws_server : &ws_client;
            memset(&b, 0, sizeof(ws_buf_t));

            /* text of ASCII on the client side, binary on the server */
            opcode = side ? WS_BINARY : WS_TEXT;
            payload = ws_pattern(lens[i], i);

            if (opcode == WS_TEXT) {
                memset(payload, 'v', lens[i]);
            }

            ws_peer(&b, conf, WS_FIN | opcode, payload, lens[i]);

            assert_int_equal(b.len, lens[i]
                             + (lens[i] < 126 ? 2 : lens[i] < 65536 ? 4 : 10)
                             + (side ? 4 : 0));

            ws_check_splits(conf, b.data, b.len, &ref);

            assert_int_equal(ref.rc, NGX_AGAIN);
            assert_int_equal(ref.nmsgs, 1);
            assert_false(ref.open_active);
            ws_expect_msg(&ref, 0, opcode, payload, lens[i]);

            ws_trace_free(&ref);
            ws_buf_free(&b);
            free(payload);
        }
    }
}


static void
test_parse_fragments(void **state)
{
    ngx_uint_t        side;
    ws_buf_t          b;
    ws_trace_t        ref;
    const ws_conf_t  *conf;

    (void) state;

    for (side = 0; side < 2; side++) {
        conf = side ? &ws_server : &ws_client;
        memset(&b, 0, sizeof(ws_buf_t));

        ws_peer(&b, conf, WS_TEXT, "Hel", 3);
        ws_peer(&b, conf, WS_CONT, "lo, ", 4);
        ws_peer(&b, conf, WS_CONT, "", 0);
        ws_peer(&b, conf, WS_FIN | WS_CONT, "world", 5);
        ws_peer(&b, conf, WS_BINARY, "\x00\x01", 2);
        ws_peer(&b, conf, WS_FIN | WS_CONT, "\x02", 1);
        ws_peer(&b, conf, WS_FIN | WS_BINARY, "\xff", 1);

        ws_check_splits(conf, b.data, b.len, &ref);

        assert_int_equal(ref.rc, NGX_AGAIN);
        assert_int_equal(ref.nmsgs, 3);
        ws_expect_msg(&ref, 0, WS_TEXT, "Hello, world", 12);
        ws_expect_msg(&ref, 1, WS_BINARY, "\x00\x01\x02", 3);
        ws_expect_msg(&ref, 2, WS_BINARY, "\xff", 1);

        ws_trace_free(&ref);
        ws_buf_free(&b);
    }
}


static void
test_parse_control_between_fragments(void **state)
{
    u_char            big[125];
    ngx_uint_t        side;
    ws_buf_t          b;
    ws_trace_t        ref;
    const ws_conf_t  *conf;

    (void) state;

    memset(big, 'p', sizeof(big));

    for (side = 0; side < 2; side++) {
        conf = side ? &ws_server : &ws_client;
        memset(&b, 0, sizeof(ws_buf_t));

        ws_peer(&b, conf, WS_TEXT, "ab", 2);
        ws_peer(&b, conf, WS_FIN | WS_PING, "p1", 2);
        ws_peer(&b, conf, WS_CONT, "cd", 2);
        ws_peer(&b, conf, WS_FIN | WS_PONG, "", 0);
        ws_peer(&b, conf, WS_FIN | WS_PING, big, sizeof(big));
        ws_peer(&b, conf, WS_FIN | WS_CONT, "ef", 2);
        ws_peer(&b, conf, WS_FIN | WS_CLOSE, "\x03\xe8" "bye", 5);

        ws_check_splits(conf, b.data, b.len, &ref);

        assert_int_equal(ref.rc, NGX_AGAIN);
        assert_int_equal(ref.nmsgs, 5);
        ws_expect_msg(&ref, 0, WS_PING, "p1", 2);
        ws_expect_msg(&ref, 1, WS_PONG, "", 0);
        ws_expect_msg(&ref, 2, WS_PING, big, sizeof(big));
        ws_expect_msg(&ref, 3, WS_TEXT, "abcdef", 6);
        ws_expect_msg(&ref, 4, WS_CLOSE, "\x03\xe8" "bye", 5);

        ws_trace_free(&ref);
        ws_buf_free(&b);
    }
}


/* a character cut across fragments, with a control frame in the middle */
static void
test_parse_utf8_across_fragments(void **state)
{
    ws_buf_t    b;
    ws_trace_t  ref;

    (void) state;

    memset(&b, 0, sizeof(ws_buf_t));

    ws_peer(&b, &ws_server, WS_TEXT, "x\xf0", 2);
    ws_peer(&b, &ws_server, WS_CONT, "\x9f", 1);
    ws_peer(&b, &ws_server, WS_FIN | WS_PING, "", 0);
    ws_peer(&b, &ws_server, WS_CONT, "\x8e", 1);
    ws_peer(&b, &ws_server, WS_FIN | WS_CONT, "\xa4\xe2\x82\xac", 4);

    ws_check_splits(&ws_server, b.data, b.len, &ref);

    assert_int_equal(ref.rc, NGX_AGAIN);
    assert_int_equal(ref.nmsgs, 2);
    ws_expect_msg(&ref, 0, WS_PING, "", 0);
    ws_expect_msg(&ref, 1, WS_TEXT, "x\xf0\x9f\x8e\xa4\xe2\x82\xac", 8);

    ws_trace_free(&ref);
    ws_buf_free(&b);
}


/* the hot path: audio frames of 20 ms, with JSON between them */
static void
test_parse_audio_stream(void **state)
{
    u_char      *a1, *a2;
    ws_buf_t     b;
    ws_trace_t   ref;

    static const char  json[] = "{\"type\":\"input.commit\"}";

    (void) state;

    a1 = ws_pattern(320, 1);
    a2 = ws_pattern(1920, 2);

    memset(&b, 0, sizeof(ws_buf_t));

    ws_peer(&b, &ws_server, WS_FIN | WS_BINARY, a1, 320);
    ws_peer(&b, &ws_server, WS_FIN | WS_TEXT, json, sizeof(json) - 1);
    ws_peer(&b, &ws_server, WS_FIN | WS_BINARY, a2, 1920);
    ws_peer(&b, &ws_server, WS_FIN | WS_BINARY, a1, 320);

    ws_check_splits(&ws_server, b.data, b.len, &ref);

    assert_int_equal(ref.rc, NGX_AGAIN);
    assert_int_equal(ref.nmsgs, 4);
    ws_expect_msg(&ref, 0, WS_BINARY, a1, 320);
    ws_expect_msg(&ref, 1, WS_TEXT, json, sizeof(json) - 1);
    ws_expect_msg(&ref, 2, WS_BINARY, a2, 1920);
    ws_expect_msg(&ref, 3, WS_BINARY, a1, 320);

    ws_trace_free(&ref);
    ws_buf_free(&b);
    free(a1);
    free(a2);
}


/* chunk by chunk: flags, in-place unmasking, and what an empty frame gives */
static void
test_parse_chunks(void **state)
{
    u_char                      *payload, *pos;
    size_t                       off, n;
    ngx_int_t                    rc;
    ngx_uint_t                   count;
    ws_buf_t                     b;
    ngx_http_voice_ws_chunk_t    c;
    ngx_http_voice_ws_parser_t   p;

    (void) state;

    /* a 1000-byte frame read 100 bytes at a time: ten chunks */

    payload = ws_pattern(1000, 3);
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_BINARY, payload, 1000, ws_key);
    assert_int_equal(b.len, 1008);

    ngx_http_voice_ws_parser_init(&p, 1, 0, 0);

    rc = ws_parse_once(&p, b.data, 8, &c, &pos);
    assert_int_equal(rc, NGX_AGAIN);

    count = 0;

    for (off = 8; off < b.len; off += 100) {
        n = ngx_min(100, b.len - off);
        rc = ws_parse_once(&p, b.data + off, n, &c, &pos);

        assert_int_equal(rc, NGX_OK);
        assert_ptr_equal(c.data, b.data + off);
        assert_int_equal(c.len, n);
        assert_int_equal(c.first, off == 8);
        assert_int_equal(c.last, off + n == b.len);
        assert_memory_equal(c.data, payload + off - 8, n);
        count++;

        rc = ngx_http_voice_ws_parse(&p, &pos, b.data + off + n, &c);
        assert_int_equal(rc, NGX_AGAIN);
    }

    assert_int_equal(count, 10);

    ws_buf_free(&b);
    free(payload);

    /* an empty message: one chunk, first and last */

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_TEXT, "", 0, NULL);
    ngx_http_voice_ws_parser_init(&p, 0, 0, 0);

    rc = ws_parse_once(&p, b.data, b.len, &c, &pos);
    assert_int_equal(rc, NGX_OK);
    assert_int_equal(c.opcode, WS_TEXT);
    assert_int_equal(c.len, 0);
    assert_true(c.first);
    assert_true(c.last);
    assert_ptr_equal(pos, b.data + b.len);
    ws_buf_free(&b);

    /* empty fragments: still one chunk, first and last */

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_BINARY, "", 0, NULL);
    ws_frame(&b, WS_CONT, "", 0, NULL);
    ws_frame(&b, WS_FIN | WS_CONT, "", 0, NULL);
    ngx_http_voice_ws_parser_init(&p, 0, 0, 0);

    rc = ws_parse_once(&p, b.data, b.len, &c, &pos);
    assert_int_equal(rc, NGX_OK);
    assert_int_equal(c.opcode, WS_BINARY);
    assert_int_equal(c.len, 0);
    assert_true(c.first);
    assert_true(c.last);
    assert_ptr_equal(pos, b.data + b.len);
    ws_buf_free(&b);

    /* data, then an empty final fragment: its own chunk, last only */

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_TEXT, "ab", 2, ws_key);
    ws_frame(&b, WS_FIN | WS_CONT, "", 0, ws_key);
    ngx_http_voice_ws_parser_init(&p, 1, 0, 0);

    rc = ws_parse_once(&p, b.data, b.len, &c, &pos);
    assert_int_equal(rc, NGX_OK);
    assert_int_equal(c.len, 2);
    assert_memory_equal(c.data, "ab", 2);
    assert_true(c.first);
    assert_false(c.last);

    rc = ngx_http_voice_ws_parse(&p, &pos, b.data + b.len, &c);
    assert_int_equal(rc, NGX_OK);
    assert_int_equal(c.opcode, WS_TEXT);
    assert_int_equal(c.len, 0);
    assert_false(c.first);
    assert_true(c.last);

    rc = ngx_http_voice_ws_parse(&p, &pos, b.data + b.len, &c);
    assert_int_equal(rc, NGX_AGAIN);
    ws_buf_free(&b);
}


/* a control frame read a byte at a time comes out once, whole */
static void
test_parse_control_split(void **state)
{
    u_char                      *pos, ping[125];
    size_t                       i;
    ngx_int_t                    rc;
    ngx_uint_t                   chunks;
    ws_buf_t                     b;
    ngx_http_voice_ws_chunk_t    c;
    ngx_http_voice_ws_parser_t   p;

    (void) state;

    for (i = 0; i < sizeof(ping); i++) {
        ping[i] = (u_char) (200 + i);
    }

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_PING, ping, sizeof(ping), ws_key);

    ngx_http_voice_ws_parser_init(&p, 1, 0, 0);
    chunks = 0;

    for (i = 0; i < b.len; i++) {
        rc = ws_parse_once(&p, b.data + i, 1, &c, &pos);

        if (i + 1 < b.len) {
            assert_int_equal(rc, NGX_AGAIN);
            continue;
        }

        assert_int_equal(rc, NGX_OK);
        assert_int_equal(c.opcode, WS_PING);
        assert_true(c.first);
        assert_true(c.last);
        assert_ptr_equal(c.data, p.control);
        assert_int_equal(c.len, sizeof(ping));
        assert_memory_equal(c.data, ping, sizeof(ping));
        chunks++;
    }

    assert_int_equal(chunks, 1);
    ws_buf_free(&b);
}


/* a 64-bit length is read whole, not cut to 32 bits */
static void
test_parse_huge_length(void **state)
{
    u_char                      *pos, frame[32];
    ngx_int_t                    rc;
    ngx_http_voice_ws_chunk_t    c;
    ngx_http_voice_ws_parser_t   p;

    (void) state;

    /* 2^32 + 3 bytes announced, 10 arrive */
    memcpy(frame, "\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x03", 10);
    memcpy(frame + 10, "0123456789", 10);

    ngx_http_voice_ws_parser_init(&p, 0, 0, 0);

    rc = ws_parse_once(&p, frame, 10, &c, &pos);
    assert_int_equal(rc, NGX_AGAIN);

    rc = ws_parse_once(&p, frame + 10, 10, &c, &pos);
    assert_int_equal(rc, NGX_OK);
    assert_int_equal(c.len, 10);
    assert_true(c.first);
    assert_false(c.last);
    assert_int_equal(p.remaining, 0x100000003ULL - 10);

    /* and a limit just below it refuses it */
    ngx_http_voice_ws_parser_init(&p, 0, 0x100000002ULL, 0);
    rc = ws_parse_once(&p, frame, 10, &c, &pos);
    assert_int_equal(rc, NGX_ERROR);
    assert_int_equal(p.close_code, NGX_HTTP_VOICE_WS_TOO_BIG);

    ngx_http_voice_ws_parser_init(&p, 0, 0x100000003ULL, 0x100000003ULL);
    rc = ws_parse_once(&p, frame, 10, &c, &pos);
    assert_int_equal(rc, NGX_AGAIN);
}


/* ---- parser: every rule with its close code --------------------------- */


static void
test_rule_masking(void **state)
{
    ws_buf_t    b;
    ws_trace_t  ref;

    (void) state;

    /* a server parser refuses unmasked frames, data and control */

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_BINARY, "abc", 3, NULL);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_PING, "", 0, NULL);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    /* a fine masked frame first, then an unmasked continuation */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_TEXT, "ok", 2, ws_key);
    ws_frame(&b, WS_TEXT, "a", 1, ws_key);
    ws_frame(&b, WS_FIN | WS_CONT, "b", 1, NULL);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 1);
    ws_buf_free(&b);

    /* a client parser refuses masked frames */

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_BINARY, "abc", 3, ws_key);
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CLOSE, "", 0, ws_key);
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    /* and each accepts its own kind, a zero key included */

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_BINARY, "abc", 3, (u_char *) "\0\0\0\0");
    ws_check_splits(&ws_server, b.data, b.len, &ref);
    assert_int_equal(ref.rc, NGX_AGAIN);
    ws_expect_msg(&ref, 0, WS_BINARY, "abc", 3);
    ws_trace_free(&ref);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_BINARY, "abc", 3, NULL);
    ws_check_splits(&ws_client, b.data, b.len, &ref);
    assert_int_equal(ref.rc, NGX_AGAIN);
    ws_expect_msg(&ref, 0, WS_BINARY, "abc", 3);
    ws_trace_free(&ref);
    ws_buf_free(&b);
}


static void
test_rule_reserved_bits(void **state)
{
    ngx_uint_t  bit;
    ws_buf_t    b;

    (void) state;

    for (bit = 0x10; bit <= 0x40; bit <<= 1) {
        memset(&b, 0, sizeof(ws_buf_t));
        ws_frame(&b, WS_FIN | WS_TEXT, "ok", 2, ws_key);
        ws_frame(&b, (u_char) (WS_FIN | bit | WS_BINARY), "x", 1, ws_key);
        ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 1);
        ws_buf_free(&b);

        /* on a control frame as well */
        memset(&b, 0, sizeof(ws_buf_t));
        ws_frame(&b, (u_char) (WS_FIN | bit | WS_PING), "", 0, NULL);
        ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
        ws_buf_free(&b);
    }
}


static void
test_rule_reserved_opcodes(void **state)
{
    ngx_uint_t  op, fin;
    ws_buf_t    b;

    (void) state;

    for (op = 0; op < 16; op++) {
        if (op <= WS_BINARY || (op >= WS_CLOSE && op <= WS_PONG)) {
            continue;
        }

        for (fin = 0; fin <= WS_FIN; fin += WS_FIN) {
            memset(&b, 0, sizeof(ws_buf_t));
            ws_frame(&b, (u_char) (fin | op), "x", 1, ws_key);
            ws_expect_error(&ws_server, &b,
                            NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
            ws_buf_free(&b);
        }

        /* also in the middle of a fragmented message */
        memset(&b, 0, sizeof(ws_buf_t));
        ws_frame(&b, WS_BINARY, "x", 1, NULL);
        ws_frame(&b, (u_char) (WS_FIN | op), "", 0, NULL);
        ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
        ws_buf_free(&b);
    }
}


static void
test_rule_control_frames(void **state)
{
    u_char      big[126];
    ngx_uint_t  i;
    ws_buf_t    b;

    static const u_char  ops[] = { WS_CLOSE, WS_PING, WS_PONG };

    (void) state;

    memset(big, 'x', sizeof(big));

    for (i = 0; i < sizeof(ops); i++) {

        /* FIN clear */
        memset(&b, 0, sizeof(ws_buf_t));
        ws_frame(&b, ops[i], "", 0, ws_key);
        ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
        ws_buf_free(&b);

        /* 126 bytes, with the 16-bit length */
        memset(&b, 0, sizeof(ws_buf_t));
        ws_frame(&b, WS_FIN | ops[i], big, 126, ws_key);
        ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
        ws_buf_free(&b);

        /* the 64-bit length code, whatever follows */
        memset(&b, 0, sizeof(ws_buf_t));
        ws_buf_add(&b, "\x80\x7f\x00\x00\x00\x00\x00\x00\x00\x05", 10);
        b.data[0] |= ops[i];
        ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
        ws_buf_free(&b);

        /* the 16-bit code with a small value */
        memset(&b, 0, sizeof(ws_buf_t));
        ws_buf_add(&b, "\x80\x7e\x00\x05" "abcde", 9);
        b.data[0] |= ops[i];
        ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
        ws_buf_free(&b);
    }
}


static void
test_rule_continuation(void **state)
{
    ws_buf_t  b;

    (void) state;

    /* nothing open */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CONT, "x", 1, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_CONT, "", 0, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    /* the message already ended */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_TEXT, "a", 1, ws_key);
    ws_frame(&b, WS_FIN | WS_CONT, "b", 1, ws_key);
    ws_frame(&b, WS_FIN | WS_CONT, "c", 1, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 1);
    ws_buf_free(&b);

    /* after a whole unfragmented message, with a ping between */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_BINARY, "a", 1, NULL);
    ws_frame(&b, WS_FIN | WS_PING, "", 0, NULL);
    ws_frame(&b, WS_CONT, "b", 1, NULL);
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 2);
    ws_buf_free(&b);
}


static void
test_rule_new_message_while_open(void **state)
{
    ngx_uint_t  first, second;
    ws_buf_t    b;

    (void) state;

    for (first = WS_TEXT; first <= WS_BINARY; first++) {
        for (second = WS_TEXT; second <= WS_BINARY; second++) {
            memset(&b, 0, sizeof(ws_buf_t));
            ws_frame(&b, (u_char) first, "a", 1, ws_key);
            ws_frame(&b, WS_FIN | WS_PONG, "", 0, ws_key);
            ws_frame(&b, (u_char) (WS_FIN | second), "b", 1, ws_key);
            ws_expect_error(&ws_server, &b,
                            NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 1);
            ws_buf_free(&b);
        }
    }
}


static void
test_rule_lengths(void **state)
{
    u_char      *payload;
    ws_buf_t     b;
    ws_trace_t   ref;

    (void) state;

    /* the top bit of the 64-bit length */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_buf_add(&b, "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x01", 10);
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);

    /* seen at its first byte already */
    b.len = 3;
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_buf_add(&b, "\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    /* non-minimal: 16 bits for less than 126 */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_buf_add(&b, "\x82\x7e\x00\x00", 4);
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_buf_add(&b, "\x82\x7e\x00\x7d", 4);
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    /* non-minimal: 64 bits for less than 65536 */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_buf_add(&b, "\x82\x7f\x00\x00\x00\x00\x00\x00\xff\xff", 10);
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_buf_add(&b, "\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x05", 10);
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    /* the smallest lengths of each encoding pass */
    payload = ws_pattern(65536, 9);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_buf_add(&b, "\x82\x7e\x00\x7e", 4);
    ws_buf_add(&b, payload, 126);
    ws_check_splits(&ws_client, b.data, b.len, &ref);
    assert_int_equal(ref.rc, NGX_AGAIN);
    ws_expect_msg(&ref, 0, WS_BINARY, payload, 126);
    ws_trace_free(&ref);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_buf_add(&b, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    ws_buf_add(&b, payload, 65536);
    ws_run(&ref, &ws_client, b.data, b.len, 10, b.len);
    assert_int_equal(ref.rc, NGX_AGAIN);
    ws_expect_msg(&ref, 0, WS_BINARY, payload, 65536);
    ws_trace_free(&ref);
    ws_buf_free(&b);

    free(payload);
}


static void
test_rule_max_frame(void **state)
{
    u_char     *payload;
    ws_buf_t    b;
    ws_trace_t  ref;
    ws_conf_t   conf = { 1, 1920, 0 };

    (void) state;

    payload = ws_pattern(4000, 4);

    /* exactly the limit */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_peer(&b, &conf, WS_FIN | WS_BINARY, payload, 1920);
    ws_check_splits(&conf, b.data, b.len, &ref);
    assert_int_equal(ref.rc, NGX_AGAIN);
    ws_expect_msg(&ref, 0, WS_BINARY, payload, 1920);
    ws_trace_free(&ref);
    ws_buf_free(&b);

    /* one more, refused from its header alone */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_peer(&b, &conf, WS_FIN | WS_BINARY, payload, 1921);
    ws_expect_error(&conf, &b, NGX_HTTP_VOICE_WS_TOO_BIG, 0);
    b.len = 4;
    ws_expect_error(&conf, &b, NGX_HTTP_VOICE_WS_TOO_BIG, 0);
    ws_buf_free(&b);

    /* a message of many frames, each within the limit, passes */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_peer(&b, &conf, WS_BINARY, payload, 1920);
    ws_peer(&b, &conf, WS_CONT, payload + 1920, 1920);
    ws_peer(&b, &conf, WS_FIN | WS_CONT, payload + 3840, 160);
    ws_check_splits(&conf, b.data, b.len, &ref);
    assert_int_equal(ref.rc, NGX_AGAIN);
    ws_expect_msg(&ref, 0, WS_BINARY, payload, 4000);
    ws_trace_free(&ref);
    ws_buf_free(&b);

    /* a continuation frame over the limit */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_peer(&b, &conf, WS_TEXT, "a", 1);
    ws_peer(&b, &conf, WS_FIN | WS_CONT, payload, 2000);
    ws_expect_error(&conf, &b, NGX_HTTP_VOICE_WS_TOO_BIG, 0);
    ws_buf_free(&b);

    /* a control frame over a small limit */
    conf.max_frame = 10;
    memset(&b, 0, sizeof(ws_buf_t));
    ws_peer(&b, &conf, WS_FIN | WS_PING, "0123456789x", 11);
    ws_expect_error(&conf, &b, NGX_HTTP_VOICE_WS_TOO_BIG, 0);
    ws_buf_free(&b);

    free(payload);
}


static void
test_rule_max_message(void **state)
{
    u_char     *payload;
    ws_buf_t    b;
    ws_trace_t  ref;
    ws_conf_t   conf = { 1, 0, 20 };

    (void) state;

    payload = ws_pattern(64, 5);

    /* 10 + 10 with a ping between (not counted), then a new message */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_peer(&b, &conf, WS_BINARY, payload, 10);
    ws_peer(&b, &conf, WS_FIN | WS_PING, payload, 30);
    ws_peer(&b, &conf, WS_FIN | WS_CONT, payload + 10, 10);
    ws_peer(&b, &conf, WS_FIN | WS_BINARY, payload, 20);
    ws_check_splits(&conf, b.data, b.len, &ref);
    assert_int_equal(ref.rc, NGX_AGAIN);
    assert_int_equal(ref.nmsgs, 3);
    ws_expect_msg(&ref, 1, WS_BINARY, payload, 20);
    ws_expect_msg(&ref, 2, WS_BINARY, payload, 20);
    ws_trace_free(&ref);
    ws_buf_free(&b);

    /* 10 + 11: refused at the second frame's header */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_peer(&b, &conf, WS_TEXT, payload, 0);
    ws_peer(&b, &conf, WS_CONT, "abcdefghij", 10);
    ws_peer(&b, &conf, WS_FIN | WS_CONT, "abcdefghijk", 11);
    ws_expect_error(&conf, &b, NGX_HTTP_VOICE_WS_TOO_BIG, 0);
    b.len = 6 + 16 + 6;
    ws_expect_error(&conf, &b, NGX_HTTP_VOICE_WS_TOO_BIG, 0);
    ws_buf_free(&b);

    /* one frame over the message limit */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_peer(&b, &conf, WS_FIN | WS_BINARY, payload, 21);
    ws_expect_error(&conf, &b, NGX_HTTP_VOICE_WS_TOO_BIG, 0);
    ws_buf_free(&b);

    free(payload);
}


static void
test_rule_utf8(void **state)
{
    u_char      text[300];
    ws_buf_t    b;
    ws_trace_t  ref;

    (void) state;

    /* invalid inside one frame */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_TEXT, "ok", 2, ws_key);
    ws_frame(&b, WS_FIN | WS_TEXT, "a\xed\xa0\x80z", 5, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_INVALID_DATA, 1);
    ws_buf_free(&b);

    /* seen as soon as the bad byte arrives, long before the end */
    memset(text, 'a', sizeof(text));
    text[3] = 0xc0;
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_TEXT, text, sizeof(text), ws_key);
    b.len = 8 + 4;
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_INVALID_DATA, 0);
    ws_buf_free(&b);

    /* invalid across fragments: E0 then 80 is overlong */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_TEXT, "x\xe0", 2, ws_key);
    ws_frame(&b, WS_FIN | WS_PING, "", 0, ws_key);
    ws_frame(&b, WS_FIN | WS_CONT, "\x80\x80", 2, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_INVALID_DATA, 1);
    ws_buf_free(&b);

    /* past U+10FFFF, across fragments */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_TEXT, "\xf4", 1, NULL);
    ws_frame(&b, WS_FIN | WS_CONT, "\x90\x80\x80", 3, NULL);
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_INVALID_DATA, 0);
    ws_buf_free(&b);

    /* the message ends inside a sequence */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_TEXT, "ok\xe2\x82", 4, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_INVALID_DATA, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_TEXT, "ok\xe2\x82", 4, ws_key);
    ws_frame(&b, WS_FIN | WS_CONT, "", 0, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_INVALID_DATA, 0);
    ws_buf_free(&b);

    /* ... known once fewer bytes remain than the sequence needs */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_TEXT, "a\xf0\x9f\x8e", 4, ws_key);
    b.len = 6 + 2;
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_INVALID_DATA, 0);
    ws_buf_free(&b);

    /* ... but not while more fragments may follow */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_TEXT, "a\xf0\x9f\x8e", 4, ws_key);
    ws_check_splits(&ws_server, b.data, b.len, &ref);
    assert_int_equal(ref.rc, NGX_AGAIN);
    assert_int_equal(ref.nmsgs, 0);
    assert_true(ref.open_active);
    ws_trace_free(&ref);
    ws_buf_free(&b);

    /* binary is never checked; a text message resets the validator */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_BINARY, "\xff\xc0\xe2", 3, ws_key);
    ws_frame(&b, WS_FIN | WS_TEXT, "\xe2\x82\xac", 3, ws_key);
    ws_check_splits(&ws_server, b.data, b.len, &ref);
    assert_int_equal(ref.rc, NGX_AGAIN);
    ws_expect_msg(&ref, 0, WS_BINARY, "\xff\xc0\xe2", 3);
    ws_expect_msg(&ref, 1, WS_TEXT, "\xe2\x82\xac", 3);
    ws_trace_free(&ref);
    ws_buf_free(&b);
}


static void
test_rule_close_payload(void **state)
{
    ws_buf_t    b;
    ws_trace_t  ref;

    (void) state;

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CLOSE, "\x03", 1, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    /* one byte after a valid close frame left 1000 in the buffer */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CLOSE, "\x03\xe8", 2, ws_key);
    ws_frame(&b, WS_FIN | WS_CLOSE, "\x03", 1, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 1);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CLOSE, "\x03\xe7", 2, ws_key);      /* 999 */
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CLOSE, "\x03\xed", 2, NULL);        /* 1005 */
    ws_expect_error(&ws_client, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CLOSE, "\x13\x88", 2, ws_key);      /* 5000 */
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CLOSE, "\x03\xe8" "a\xff", 4, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_INVALID_DATA, 0);
    ws_buf_free(&b);

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CLOSE, "\x03\xe8" "\xe2\x82", 4, ws_key);
    ws_expect_error(&ws_server, &b, NGX_HTTP_VOICE_WS_INVALID_DATA, 0);
    ws_buf_free(&b);

    /* empty and well-formed close frames pass */
    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CLOSE, "", 0, ws_key);
    ws_frame(&b, WS_FIN | WS_CLOSE, "\x0f\xa0" "caf\xc3\xa9", 7, ws_key);
    ws_check_splits(&ws_server, b.data, b.len, &ref);
    assert_int_equal(ref.rc, NGX_AGAIN);
    ws_expect_msg(&ref, 0, WS_CLOSE, "", 0);
    ws_expect_msg(&ref, 1, WS_CLOSE, "\x0f\xa0" "caf\xc3\xa9", 7);
    ws_trace_free(&ref);
    ws_buf_free(&b);
}


/* once failed, always failed, with the first reason kept */
static void
test_error_sticks(void **state)
{
    u_char                      *pos, good[16];
    ngx_int_t                    rc;
    const char                  *reason;
    ws_buf_t                     b;
    ngx_http_voice_ws_chunk_t    c;
    ngx_http_voice_ws_parser_t   p;

    (void) state;

    memset(&b, 0, sizeof(ws_buf_t));
    ws_frame(&b, WS_FIN | WS_CONT, "x", 1, NULL);

    ngx_http_voice_ws_parser_init(&p, 0, 0, 0);
    rc = ws_parse_once(&p, b.data, b.len, &c, &pos);
    assert_int_equal(rc, NGX_ERROR);
    assert_int_equal(p.close_code, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR);
    assert_non_null(p.error);
    reason = p.error;

    memcpy(good, "\x81\x02ok", 4);

    rc = ws_parse_once(&p, good, 4, &c, &pos);
    assert_int_equal(rc, NGX_ERROR);
    rc = ws_parse_once(&p, good, 0, &c, &pos);
    assert_int_equal(rc, NGX_ERROR);
    assert_int_equal(p.close_code, NGX_HTTP_VOICE_WS_PROTOCOL_ERROR);
    assert_ptr_equal(p.error, reason);

    ws_buf_free(&b);
}


static void
test_parser_init(void **state)
{
    u_char                      *pos;
    ngx_int_t                    rc;
    ngx_http_voice_ws_chunk_t    c;
    ngx_http_voice_ws_parser_t   p;

    (void) state;

    memset(&p, 0xff, sizeof(p));
    ngx_http_voice_ws_parser_init(&p, 5, 100, 200);

    assert_int_equal(p.masked, 1);
    assert_int_equal(p.max_frame, 100);
    assert_int_equal(p.max_message, 200);
    assert_int_equal(p.message_opcode, 0);
    assert_int_equal(p.close_code, 0);
    assert_null(p.error);

    /* nothing to read: nothing happens */
    rc = ws_parse_once(&p, (u_char *) "", 0, &c, &pos);
    assert_int_equal(rc, NGX_AGAIN);
}


/* the client side's upgrade request and response head */

/* RFC 6455 section 1.3: this key calls for this accept value */
#define WS_KEY     "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT  "s3pPLMBiTxaQ9kydGzzhZRbK+xOo="

#define WS_GOOD_101                                                          \
    "HTTP/1.1 101 Switching Protocols\r\n"                                   \
    "Upgrade: websocket\r\n"                                                 \
    "Connection: Upgrade\r\n"                                                \
    "Sec-WebSocket-Accept: " WS_ACCEPT "\r\n"                                \
    "\r\n"


static void
test_request(void **state)
{
    u_char     buf[512], *end;
    size_t     size;
    ngx_str_t  target, host, key, headers;

    (void) state;

    ngx_str_set(&target, "/v1/listen?model=nova-3&encoding=linear16");
    ngx_str_set(&host, "api.example.com:8443");
    ngx_str_set(&key, WS_KEY);
    ngx_str_set(&headers, "Authorization: Token abc\r\nX-Other: 1\r\n");

    size = ngx_http_voice_ws_request_size(&target, &host, &headers);
    assert_true(size <= sizeof(buf));

    memset(buf, '#', sizeof(buf));
    end = ngx_http_voice_ws_request(buf, &target, &host, &key, &headers);

    assert_int_equal((size_t) (end - buf), size);
    assert_int_equal(buf[size], '#');

    assert_memory_equal(buf,
        "GET /v1/listen?model=nova-3&encoding=linear16 HTTP/1.1\r\n"
        "Host: api.example.com:8443\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: " WS_KEY "\r\n"
        "Authorization: Token abc\r\nX-Other: 1\r\n"
        "\r\n", size);

    /* no target, no extra headers */

    target.len = 0;
    headers.len = 0;
    ngx_str_set(&host, "h");

    size = ngx_http_voice_ws_request_size(&target, &host, &headers);
    end = ngx_http_voice_ws_request(buf, &target, &host, &key, &headers);

    assert_int_equal((size_t) (end - buf), size);
    assert_memory_equal(buf,
        "GET / HTTP/1.1\r\nHost: h\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: " WS_KEY "\r\n\r\n", size);
}


static ngx_int_t
ws_response(const char *head, ngx_http_voice_ws_response_t *r)
{
    u_char     buf[1024];
    size_t     len;
    ngx_str_t  accept;

    ngx_str_set(&accept, WS_ACCEPT);

    len = strlen(head);
    assert_true(len <= sizeof(buf));
    memcpy(buf, head, len);

    return ngx_http_voice_ws_response(r, buf, len, &accept);
}


static void
test_response_good(void **state)
{
    size_t                         len, i;
    ngx_str_t                      accept;
    ngx_http_voice_ws_response_t   r;
    u_char                         buf[512];
    static const char              frames[] = "\x81\x02hi";

    (void) state;

    assert_int_equal(ws_response(WS_GOOD_101, &r), NGX_OK);
    assert_int_equal(r.status, 101);
    assert_int_equal(r.head_len, sizeof(WS_GOOD_101) - 1);
    assert_null(r.error);

    /* every prefix short of the blank line's end is incomplete */

    ngx_str_set(&accept, WS_ACCEPT);
    len = sizeof(WS_GOOD_101) - 1;
    memcpy(buf, WS_GOOD_101, len);
    memcpy(buf + len, frames, sizeof(frames) - 1);

    for (i = 0; i < len; i++) {
        assert_int_equal(ngx_http_voice_ws_response(&r, buf, i, &accept),
                         NGX_AGAIN);
    }

    /* frames right behind the head are not part of it */

    assert_int_equal(ngx_http_voice_ws_response(&r, buf,
                                                len + sizeof(frames) - 1,
                                                &accept),
                     NGX_OK);
    assert_int_equal(r.head_len, len);

    /* names in any case, tokens in lists, spaces, bare LF, other headers */

    assert_int_equal(ws_response(
        "HTTP/1.1 101\n"
        "server: x\n"
        "CONNECTION:keep-alive ,  UPGRADE\n"
        "upgrade:\tWebSocket \n"
        "sec-websocket-accept:   " WS_ACCEPT "  \n"
        "Sec-WebSocket-Protocol: token\n"
        "Sec-WebSocket-Extensions:\n"
        "\n", &r), NGX_OK);
    assert_int_equal(r.status, 101);
}


static void
test_response_refused(void **state)
{
    ngx_http_voice_ws_response_t  r;

    (void) state;

    assert_int_equal(ws_response(
        "HTTP/1.1 401 Unauthorized\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 2\r\n\r\n{}", &r), NGX_DECLINED);
    assert_int_equal(r.status, 401);
    assert_int_equal(r.head_len, sizeof("HTTP/1.1 401 Unauthorized\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 2\r\n\r\n") - 1);

    assert_int_equal(ws_response("HTTP/1.0 500 Oops\r\n\r\n", &r),
                     NGX_DECLINED);
    assert_int_equal(r.status, 500);

    assert_int_equal(ws_response("HTTP/1.1 200 OK\r\n\r\n", &r),
                     NGX_DECLINED);
    assert_int_equal(r.status, 200);

    /* a refusal is still incomplete without its blank line */

    assert_int_equal(ws_response("HTTP/1.1 503 Busy\r\nRetry-After: 1\r\n",
                                 &r), NGX_AGAIN);
}


static void
test_response_bad(void **state)
{
    ngx_uint_t                     i;
    ngx_http_voice_ws_response_t   r;

    static const struct {
        const char  *head;
        const char  *error;
    } cases[] = {
        { "HTTP/1.1 1O1 Switching\r\n\r\n", "malformed status line" },
        { "HTTP/2 101 Switching\r\n\r\n", "malformed status line" },
        { "ICY 101 x\r\n\r\n", "malformed status line" },
        { "HTTP/1.1 1011\r\n\r\n", "malformed status line" },
        { "HTTP/1.1 099 x\r\n\r\n", "malformed status line" },
        { "HTTP/1.1 101\r\n\r\n", "no \"Upgrade: websocket\"" },
        { "HTTP/1.0 101 x\r\n" "Upgrade: websocket\r\n"
          "Connection: upgrade\r\n"
          "Sec-WebSocket-Accept: " WS_ACCEPT "\r\n\r\n",
          "101 in an HTTP/1.0 response" },
        { "HTTP/1.1 101 x\r\n" "Upgrade: h2c\r\n"
          "Connection: upgrade\r\n"
          "Sec-WebSocket-Accept: " WS_ACCEPT "\r\n\r\n",
          "no \"Upgrade: websocket\"" },
        { "HTTP/1.1 101 x\r\n" "Upgrade: websockets\r\n"
          "Connection: upgrade\r\n"
          "Sec-WebSocket-Accept: " WS_ACCEPT "\r\n\r\n",
          "no \"Upgrade: websocket\"" },
        { "HTTP/1.1 101 x\r\n" "Upgrade: websocket\r\n"
          "Connection: keep-alive\r\n"
          "Sec-WebSocket-Accept: " WS_ACCEPT "\r\n\r\n",
          "no \"Connection: upgrade\"" },
        { "HTTP/1.1 101 x\r\n" "Upgrade: websocket\r\n"
          "Connection: upgraded\r\n"
          "Sec-WebSocket-Accept: " WS_ACCEPT "\r\n\r\n",
          "no \"Connection: upgrade\"" },
        { "HTTP/1.1 101 x\r\n" "Upgrade: websocket\r\n"
          "Connection: upgrade\r\n\r\n",
          "no Sec-WebSocket-Accept" },
        { "HTTP/1.1 101 x\r\n" "Upgrade: websocket\r\n"
          "Connection: upgrade\r\n"
          "Sec-WebSocket-Accept: " WS_ACCEPT "\r\n"
          "Sec-WebSocket-Accept: " WS_ACCEPT "\r\n\r\n",
          "Sec-WebSocket-Accept repeated" },
        { "HTTP/1.1 101 x\r\n" "Upgrade: websocket\r\n"
          "Connection: upgrade\r\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kydGzzhZRbK+xOO=\r\n\r\n",
          "Sec-WebSocket-Accept does not match the key" },
        { "HTTP/1.1 101 x\r\n" "Upgrade: websocket\r\n"
          "Connection: upgrade\r\n"
          "Sec-WebSocket-Accept: " WS_ACCEPT "x\r\n\r\n",
          "Sec-WebSocket-Accept does not match the key" },
        { "HTTP/1.1 101 x\r\n" "Upgrade: websocket\r\n"
          "Connection: upgrade\r\n"
          "Sec-WebSocket-Accept: " WS_ACCEPT "\r\n"
          "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
          "an extension that was not offered" },
        { "HTTP/1.1 101 x\r\n" "Upgrade: websocket\r\n"
          " Connection: upgrade\r\n\r\n",
          "folded header line" },
        { "HTTP/1.1 101 x\r\n" "Upgrade websocket\r\n\r\n",
          "malformed header line" },
        { "HTTP/1.1 101 x\r\n" ": websocket\r\n\r\n",
          "malformed header line" },
        { "HTTP/1.1 101 x\r\n" "Up grade: websocket\r\n\r\n",
          "malformed header name" },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(ws_response(cases[i].head, &r), NGX_ERROR);
        assert_non_null(r.error);
        assert_string_equal(r.error, cases[i].error);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_utf8_cases),
        cmocka_unit_test(test_utf8_byte_by_byte),
        cmocka_unit_test(test_utf8_exhaustive),
        cmocka_unit_test(test_utf8_offsets),
        cmocka_unit_test(test_utf8_error_sticks),
        cmocka_unit_test(test_close_check),
        cmocka_unit_test(test_header_lengths),
        cmocka_unit_test(test_header_opcode_fin),
        cmocka_unit_test(test_header_round_trip),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_parser_init),
        cmocka_unit_test(test_parse_lengths),
        cmocka_unit_test(test_parse_fragments),
        cmocka_unit_test(test_parse_control_between_fragments),
        cmocka_unit_test(test_parse_utf8_across_fragments),
        cmocka_unit_test(test_parse_audio_stream),
        cmocka_unit_test(test_parse_chunks),
        cmocka_unit_test(test_parse_control_split),
        cmocka_unit_test(test_parse_huge_length),
        cmocka_unit_test(test_rule_masking),
        cmocka_unit_test(test_rule_reserved_bits),
        cmocka_unit_test(test_rule_reserved_opcodes),
        cmocka_unit_test(test_rule_control_frames),
        cmocka_unit_test(test_rule_continuation),
        cmocka_unit_test(test_rule_new_message_while_open),
        cmocka_unit_test(test_rule_lengths),
        cmocka_unit_test(test_rule_max_frame),
        cmocka_unit_test(test_rule_max_message),
        cmocka_unit_test(test_rule_utf8),
        cmocka_unit_test(test_rule_close_payload),
        cmocka_unit_test(test_error_sticks),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_response_good),
        cmocka_unit_test(test_response_refused),
        cmocka_unit_test(test_response_bad),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
