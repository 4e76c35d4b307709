
/*
 * Unit tests of the transcript aggregator (ngx_http_voice_transcript.[ch]).
 *
 * Every buffer handed to the aggregator is followed by guard bytes that
 * are checked after each call, and every input segment is a heap copy of
 * its exact length, so a byte read or written out of bounds shows up.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ngx_http_voice_transcript.h"


#define TEST_TR_GUARD      32
#define TEST_TR_GUARD_BYTE 0xa5
#define TEST_TR_MODEL_MAX  4096

/* the bits a result makes due, short so that expectations read well */

#define P  NGX_HTTP_VOICE_TRANSCRIPT_PARTIAL
#define F  NGX_HTTP_VOICE_TRANSCRIPT_FINAL


/* an aggregator with its buffer and the guard behind it */

typedef struct {
    ngx_http_voice_transcript_t   t;
    u_char                       *buf;
    size_t                        size;
} test_tr_t;


static void
test_tr_open(test_tr_t *tr, size_t size)
{
    tr->buf = malloc(size + TEST_TR_GUARD);
    assert_non_null(tr->buf);

    memset(tr->buf, TEST_TR_GUARD_BYTE, size + TEST_TR_GUARD);
    tr->size = size;

    ngx_http_voice_transcript_init(&tr->t, tr->buf, size);
}


static void
test_tr_check_guard(test_tr_t *tr)
{
    size_t  i;

    for (i = 0; i < TEST_TR_GUARD; i++) {
        assert_int_equal(tr->buf[tr->size + i], TEST_TR_GUARD_BYTE);
    }
}


static void
test_tr_close(test_tr_t *tr)
{
    test_tr_check_guard(tr);
    free(tr->buf);
    tr->buf = NULL;
}


/* feeds a result from a heap copy of exactly its length */

static ngx_uint_t
test_tr_feed_n(test_tr_t *tr, const char *s, size_t len, ngx_uint_t is_final,
    ngx_uint_t end)
{
    u_char      *copy;
    ngx_uint_t   rc;

    copy = NULL;

    if (len) {
        copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, s, len);
    }

    rc = ngx_http_voice_transcript_result(&tr->t, copy, len, is_final, end);

    free(copy);
    test_tr_check_guard(tr);

    return rc;
}


static ngx_uint_t
test_tr_feed(test_tr_t *tr, const char *s, ngx_uint_t is_final,
    ngx_uint_t end)
{
    return test_tr_feed_n(tr, s, strlen(s), is_final, end);
}


static ngx_uint_t
test_tr_interim(test_tr_t *tr, const char *s)
{
    return test_tr_feed(tr, s, 0, 0);
}


static ngx_uint_t
test_tr_confirm(test_tr_t *tr, const char *s)
{
    return test_tr_feed(tr, s, 1, 0);
}


static void
test_tr_expect_n(const ngx_str_t *got, const char *want, size_t len)
{
    assert_int_equal(got->len, len);

    if (len) {
        assert_memory_equal(got->data, want, len);
    }
}


static void
test_tr_expect_partial(test_tr_t *tr, const char *want)
{
    ngx_str_t  s;

    ngx_http_voice_transcript_partial(&tr->t, &s);
    test_tr_expect_n(&s, want, strlen(want));
}


static void
test_tr_expect_final(test_tr_t *tr, const char *want)
{
    ngx_str_t  s;

    ngx_http_voice_transcript_final(&tr->t, &s);
    test_tr_expect_n(&s, want, strlen(want));
}


/* a strict UTF-8 check: no overlongs, surrogates or values past U+10FFFF */

static int
test_tr_utf8_valid(const u_char *p, size_t len)
{
    size_t    i, n, k;
    uint32_t  cp, min;

    i = 0;

    while (i < len) {

        if (p[i] < 0x80) {
            i++;
            continue;
        }

        if ((p[i] & 0xe0) == 0xc0) {
            n = 1;
            cp = p[i] & 0x1f;
            min = 0x80;

        } else if ((p[i] & 0xf0) == 0xe0) {
            n = 2;
            cp = p[i] & 0x0f;
            min = 0x800;

        } else if ((p[i] & 0xf8) == 0xf0) {
            n = 3;
            cp = p[i] & 0x07;
            min = 0x10000;

        } else {
            return 0;
        }

        if (i + n >= len) {
            return 0;
        }

        for (k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (p[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }

        i += n + 1;
    }

    return 1;
}


static void
test_tr_utf8_check_self(void **state)
{
    (void) state;

    /* the checker itself must be able to fail */

    assert_true(test_tr_utf8_valid((u_char *) "a\xc3\xa9\xe2\x82\xac", 6));
    assert_true(test_tr_utf8_valid((u_char *) "\xf0\x9f\x98\x80", 4));
    assert_false(test_tr_utf8_valid((u_char *) "\xc3", 1));
    assert_false(test_tr_utf8_valid((u_char *) "\xe2\x82", 2));
    assert_false(test_tr_utf8_valid((u_char *) "\xf0\x9f\x98", 3));
    assert_false(test_tr_utf8_valid((u_char *) "\x80", 1));
    assert_false(test_tr_utf8_valid((u_char *) "\xc0\xaf", 2));
}


/* ---- interim and confirmed text ---------------------------------------- */


static void
test_tr_interim_replaces(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    assert_int_equal(test_tr_interim(&tr, "hel"), P);
    test_tr_expect_partial(&tr, "hel");

    assert_int_equal(test_tr_interim(&tr, "hello"), P);
    test_tr_expect_partial(&tr, "hello");

    /* a shorter revision replaces, it does not append */

    assert_int_equal(test_tr_interim(&tr, "help"), P);
    test_tr_expect_partial(&tr, "help");

    assert_int_equal(tr.t.confirmed, 0);
    test_tr_expect_final(&tr, "");

    /* an interim alone never ends a turn */

    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), 0);

    test_tr_close(&tr);
}


static void
test_tr_confirmed_accumulates(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    assert_int_equal(test_tr_interim(&tr, "good"), P);
    assert_int_equal(test_tr_confirm(&tr, "good morning"), P);
    test_tr_expect_partial(&tr, "good morning");
    test_tr_expect_final(&tr, "good morning");

    assert_int_equal(test_tr_interim(&tr, "how"), P);
    test_tr_expect_partial(&tr, "good morning how");
    test_tr_expect_final(&tr, "good morning");

    assert_int_equal(test_tr_interim(&tr, "how are"), P);
    test_tr_expect_partial(&tr, "good morning how are");

    assert_int_equal(test_tr_confirm(&tr, "how are you"), P);
    test_tr_expect_partial(&tr, "good morning how are you");

    assert_int_equal(test_tr_feed(&tr, "today", 1, 1), P | F);
    test_tr_expect_final(&tr, "good morning how are you today");
    assert_true(tr.t.final);

    test_tr_close(&tr);
}


static void
test_tr_same_interim_twice(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    assert_int_equal(test_tr_interim(&tr, "one two"), P);
    assert_int_equal(test_tr_interim(&tr, "one two"), 0);

    /* the same text with other surrounding whitespace is the same text */

    assert_int_equal(test_tr_interim(&tr, "  one two\n"), 0);
    test_tr_expect_partial(&tr, "one two");

    assert_int_equal(test_tr_confirm(&tr, "one"), P);
    assert_int_equal(test_tr_interim(&tr, "two"), P);
    assert_int_equal(test_tr_interim(&tr, "two"), 0);
    test_tr_expect_partial(&tr, "one two");

    test_tr_close(&tr);
}


static void
test_tr_final_confirms_interim(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    assert_int_equal(test_tr_confirm(&tr, "first part"), P);
    assert_int_equal(test_tr_interim(&tr, "second part"), P);

    /* the whole text stays "first part second part": nothing new */

    assert_int_equal(test_tr_confirm(&tr, "second part"), 0);
    assert_int_equal(tr.t.confirmed, strlen("first part second part"));

    assert_int_equal(test_tr_interim(&tr, "third"), P);
    assert_int_equal(test_tr_feed(&tr, "third", 1, 1), F);
    test_tr_expect_final(&tr, "first part second part third");

    test_tr_close(&tr);
}


static void
test_tr_final_differs(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    assert_int_equal(test_tr_interim(&tr, "hello wor"), P);
    assert_int_equal(test_tr_feed(&tr, "hello world", 1, 1), P | F);
    test_tr_expect_partial(&tr, "hello world");
    test_tr_expect_final(&tr, "hello world");

    test_tr_close(&tr);
}


static void
test_tr_equal_length_changes(void **state)
{
    char         text[16];
    size_t       i;
    test_tr_t    tr;
    const char  *base;

    (void) state;

    base = "abcdefghijkl";

    test_tr_open(&tr, 256);

    assert_int_equal(test_tr_confirm(&tr, "xy"), P);
    assert_int_equal(test_tr_interim(&tr, base), P);

    /* one byte differs, anywhere: always a new partial */

    for (i = 0; i < strlen(base); i++) {
        strcpy(text, base);
        text[i] = 'Z';

        assert_int_equal(test_tr_interim(&tr, text), P);

        assert_int_equal(test_tr_interim(&tr, base), P);
        test_tr_expect_partial(&tr, "xy abcdefghijkl");
    }

    /* a permutation: same length, same bytes, other order */

    assert_int_equal(test_tr_interim(&tr, "lkjihgfedcba"), P);
    test_tr_expect_partial(&tr, "xy lkjihgfedcba");

    test_tr_close(&tr);
}


static void
test_tr_retraction(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    /* the hypothesis may shrink back to the confirmed text, and grow again */

    assert_int_equal(test_tr_confirm(&tr, "yes"), P);
    assert_int_equal(test_tr_interim(&tr, "please"), P);
    assert_int_equal(test_tr_interim(&tr, ""), P);
    test_tr_expect_partial(&tr, "yes");

    /* equal to a text sent earlier, but not to the last one */

    assert_int_equal(test_tr_interim(&tr, "please"), P);
    test_tr_expect_partial(&tr, "yes please");

    /* an empty confirmed segment drops the interim it was to confirm */

    assert_int_equal(test_tr_confirm(&tr, ""), P);
    test_tr_expect_partial(&tr, "yes");
    test_tr_expect_final(&tr, "yes");

    /* with nothing confirmed, a retraction empties the text */

    ngx_http_voice_transcript_reset(&tr.t);
    assert_int_equal(test_tr_interim(&tr, "uh"), P);
    assert_int_equal(test_tr_interim(&tr, ""), P);
    test_tr_expect_partial(&tr, "");

    test_tr_close(&tr);
}


/* ---- the final: exactly once per turn ---------------------------------- */


enum {
    TEST_TR_SPEECH_FINAL = 0,
    TEST_TR_FINALIZE,
    TEST_TR_UTTERANCE_END
};


static const char  *test_tr_event_names[] = {
    "speech_final", "from_finalize", "UtteranceEnd"
};


/*
 * Runs one turn: optional confirmed text, then end events in the given
 * order.  mask bit 0: the speech_final result carries text; bit 1: the
 * finalize answer does.  Checks that the final is due exactly at the
 * first end event that finds confirmed text, and never again.
 */

static void
test_tr_run_order(test_tr_t *tr, const int *order, size_t n,
    ngx_uint_t mask, ngx_uint_t prior)
{
    char         want[64];
    size_t       i;
    ngx_uint_t   rc, has, finals, due;

    ngx_http_voice_transcript_reset(&tr->t);

    want[0] = '\0';
    has = 0;
    finals = 0;

    if (prior) {
        assert_int_equal(test_tr_confirm(tr, "before"), P);
        strcpy(want, "before");
        has = 1;
    }

    assert_int_equal(test_tr_interim(tr, "pending"), P);

    for (i = 0; i < n; i++) {

        switch (order[i]) {

        case TEST_TR_SPEECH_FINAL:
            rc = test_tr_feed(tr, (mask & 1) ? "sf" : "", 1, 1);

            if (mask & 1) {
                strcat(want, has ? " sf" : "sf");
                has = 1;
            }

            break;

        case TEST_TR_FINALIZE:
            rc = test_tr_feed(tr, (mask & 2) ? "fz" : "", 1, 1);

            if (mask & 2) {
                strcat(want, has ? " fz" : "fz");
                has = 1;
            }

            break;

        default:
            rc = ngx_http_voice_transcript_end(&tr->t);
            break;
        }

        due = (has && finals == 0);

        if ((rc & F) != (due ? F : 0)) {
            fail_msg("event %zu (%s), mask %lu, prior %lu: final %s",
                     i, test_tr_event_names[order[i]], (unsigned long) mask,
                     (unsigned long) prior, due ? "missing" : "unexpected");
        }

        if (rc & F) {
            finals++;
            test_tr_expect_final(tr, want);
        }
    }

    assert_int_equal(finals, has ? 1 : 0);
    assert_int_equal(tr->t.final, has ? 1 : 0);
}


static void
test_tr_final_orders(void **state)
{
    int          order[3];
    size_t       n, scenarios;
    test_tr_t    tr;
    ngx_uint_t   a, b, c, mask, prior;

    (void) state;

    test_tr_open(&tr, 256);

    scenarios = 0;

    /* every ordered arrangement of 1, 2 or 3 distinct end events */

    for (a = 0; a < 3; a++) {
        for (b = 0; b < 4; b++) {
            for (c = 0; c < 4; c++) {

                if (b == 3 && c != 3) {
                    continue;
                }

                if ((b != 3 && b == a)
                    || (c != 3 && (c == a || c == b)))
                {
                    continue;
                }

                order[0] = (int) a;
                n = 1;

                if (b != 3) {
                    order[n++] = (int) b;
                }

                if (c != 3) {
                    order[n++] = (int) c;
                }

                for (mask = 0; mask < 4; mask++) {
                    for (prior = 0; prior < 2; prior++) {
                        test_tr_run_order(&tr, order, n, mask, prior);
                        scenarios++;
                    }
                }
            }
        }
    }

    /* 3 + 6 + 6 arrangements, each with 4 masks and 2 priors */

    assert_int_equal(scenarios, 15 * 4 * 2);

    test_tr_close(&tr);
}


static void
test_tr_repeated_ends(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    assert_int_equal(test_tr_feed(&tr, "stop", 1, 1), P | F);
    assert_int_equal(test_tr_feed(&tr, "", 1, 1), 0);
    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), 0);
    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), 0);
    assert_int_equal(test_tr_feed(&tr, "", 1, 1), 0);
    test_tr_expect_final(&tr, "stop");

    test_tr_close(&tr);
}


static void
test_tr_utterance_end_empty(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), 0);

    /* whitespace only and empty segments confirm nothing */

    assert_int_equal(test_tr_confirm(&tr, "  "), 0);
    assert_int_equal(test_tr_feed(&tr, "", 1, 1), 0);
    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), 0);
    assert_false(tr.t.final);

    /* an empty end leaves the turn open for the real one */

    assert_int_equal(test_tr_confirm(&tr, "late"), P);
    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), F);
    test_tr_expect_final(&tr, "late");

    test_tr_close(&tr);
}


static void
test_tr_end_with_interim_only(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    /* an interim marked as an end is still not confirmed text */

    assert_int_equal(test_tr_feed(&tr, "maybe", 0, 1), P);
    assert_false(tr.t.final);
    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), 0);

    assert_int_equal(test_tr_confirm(&tr, "sure"), P);
    assert_int_equal(test_tr_interim(&tr, "thing"), P);
    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), F);

    /* the final holds what was confirmed, not the pending interim */

    test_tr_expect_final(&tr, "sure");
    test_tr_expect_partial(&tr, "sure thing");

    test_tr_close(&tr);
}


static void
test_tr_after_final_no_reset(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    assert_int_equal(test_tr_feed(&tr, "one", 1, 1), P | F);

    /* text that comes before the owner resets is kept, never re-finalized */

    assert_int_equal(test_tr_feed(&tr, "two", 1, 1), P);
    test_tr_expect_partial(&tr, "one two");
    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), 0);

    test_tr_close(&tr);
}


static void
test_tr_reset(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 8);

    assert_int_equal(test_tr_confirm(&tr, "abcdefghij"), P);
    assert_true(tr.t.truncated);
    assert_true(tr.t.full);
    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), F);

    ngx_http_voice_transcript_reset(&tr.t);

    assert_int_equal(tr.t.len, 0);
    assert_int_equal(tr.t.confirmed, 0);
    assert_false(tr.t.final);
    assert_false(tr.t.full);
    assert_false(tr.t.truncated);
    test_tr_expect_partial(&tr, "");
    test_tr_expect_final(&tr, "");

    /* the next turn starts from nothing: the same text is news again */

    assert_int_equal(test_tr_interim(&tr, "abcdefgh"), P);
    assert_false(tr.t.truncated);
    assert_int_equal(test_tr_feed(&tr, "abcdefgh", 1, 1), F);
    test_tr_expect_final(&tr, "abcdefgh");

    test_tr_close(&tr);
}


/* ---- whitespace --------------------------------------------------------- */


static void
test_tr_whitespace(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    assert_int_equal(test_tr_confirm(&tr, " \t hello \r\n"), P);
    test_tr_expect_partial(&tr, "hello");

    assert_int_equal(test_tr_confirm(&tr, "\v\fthere\t"), P);
    test_tr_expect_partial(&tr, "hello there");

    /* inner whitespace is the STT's and is kept */

    assert_int_equal(test_tr_interim(&tr, "  big\t  world "), P);
    test_tr_expect_partial(&tr, "hello there big\t  world");

    /* whitespace only: an empty interim, the text falls back */

    assert_int_equal(test_tr_interim(&tr, " \n "), P);
    test_tr_expect_partial(&tr, "hello there");

    assert_int_equal(test_tr_feed(&tr, " end ", 1, 1), P | F);
    test_tr_expect_final(&tr, "hello there end");

    test_tr_close(&tr);
}


static void
test_tr_empty_segments(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 256);

    assert_int_equal(test_tr_confirm(&tr, ""), 0);
    assert_int_equal(test_tr_confirm(&tr, "a"), P);
    assert_int_equal(test_tr_confirm(&tr, ""), 0);
    assert_int_equal(test_tr_confirm(&tr, "   "), 0);
    assert_int_equal(test_tr_confirm(&tr, "b"), P);
    assert_int_equal(test_tr_interim(&tr, ""), 0);
    assert_int_equal(test_tr_confirm(&tr, "\t"), 0);
    assert_int_equal(test_tr_confirm(&tr, "c"), P);

    /* no doubled or dangling separators */

    test_tr_expect_final(&tr, "a b c");
    test_tr_expect_partial(&tr, "a b c");

    test_tr_close(&tr);
}


static void
test_tr_null_text(void **state)
{
    test_tr_t   tr;
    ngx_str_t   s;

    (void) state;

    test_tr_open(&tr, 256);

    /* an absent transcript is an empty one */

    assert_int_equal(ngx_http_voice_transcript_result(&tr.t, NULL, 0, 0, 0),
                     0);
    assert_int_equal(ngx_http_voice_transcript_result(&tr.t, NULL, 0, 1, 1),
                     0);

    assert_int_equal(test_tr_confirm(&tr, "hi"), P);
    assert_int_equal(test_tr_interim(&tr, "you"), P);
    assert_int_equal(ngx_http_voice_transcript_result(&tr.t, NULL, 0, 0, 0),
                     P);
    test_tr_expect_partial(&tr, "hi");

    /* a zero-sized buffer holds nothing and is never touched */

    ngx_http_voice_transcript_init(&tr.t, NULL, 0);
    assert_int_equal(ngx_http_voice_transcript_result(&tr.t,
                         (u_char *) "word", 4, 1, 1), 0);
    assert_true(tr.t.truncated);
    ngx_http_voice_transcript_partial(&tr.t, &s);
    assert_int_equal(s.len, 0);

    test_tr_close(&tr);
}


/* ---- bounds ------------------------------------------------------------- */


/* the longest prefix of an ASCII text that fits, with no dangling space */

static size_t
test_tr_ascii_fit(const char *full, size_t size)
{
    size_t  n;

    n = strlen(full);

    if (n <= size) {
        return n;
    }

    n = size;

    if (n && full[n - 1] == ' ') {
        n--;
    }

    return n;
}


static void
test_tr_bounds_ascii(void **state)
{
    size_t       size, n;
    ngx_str_t    s;
    test_tr_t    tr;
    const char  *full, *conf;

    (void) state;

    full = "alpha beta gamma";
    conf = "alpha beta";

    for (size = 0; size <= strlen(full) + 2; size++) {
        test_tr_open(&tr, size);

        (void) test_tr_confirm(&tr, "alpha");
        (void) test_tr_confirm(&tr, "beta");
        (void) test_tr_interim(&tr, "gamma");

        n = test_tr_ascii_fit(full, size);

        ngx_http_voice_transcript_partial(&tr.t, &s);
        assert_true(s.len <= size);
        test_tr_expect_n(&s, full, n);
        assert_int_equal(tr.t.truncated, n < strlen(full));

        n = test_tr_ascii_fit(conf, size);

        ngx_http_voice_transcript_final(&tr.t, &s);
        test_tr_expect_n(&s, conf, n);
        assert_int_equal(tr.t.full, n < strlen(conf));

        test_tr_close(&tr);
    }
}


/* characters of 1 to 4 bytes, so that every kind of cut point occurs */

static const char  *test_tr_chars[] = {
    "a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "b",
    "\xe6\x97\xa5", "\xd0\xb4", "\xf0\x9d\x84\x9e", "z"
};

#define TEST_TR_NCHARS  (sizeof(test_tr_chars) / sizeof(test_tr_chars[0]))


/* the longest whole-character prefix of the test string within room */

static size_t
test_tr_chars_fit(size_t room)
{
    size_t  i, n, c;

    n = 0;

    for (i = 0; i < TEST_TR_NCHARS; i++) {
        c = strlen(test_tr_chars[i]);

        if (n + c > room) {
            break;
        }

        n += c;
    }

    return n;
}


static void
test_tr_bounds_utf8(void **state)
{
    char         str[64], want[80];
    size_t       i, len, size, n, room;
    ngx_str_t    s;
    test_tr_t    tr;
    ngx_uint_t   mode;

    (void) state;

    str[0] = '\0';

    for (i = 0; i < TEST_TR_NCHARS; i++) {
        strcat(str, test_tr_chars[i]);
    }

    len = strlen(str);
    assert_true(test_tr_utf8_valid((u_char *) str, len));

    /* 0: one confirmed segment; 1: an interim; 2: after "x", a separator */

    for (mode = 0; mode < 3; mode++) {
        for (size = 0; size <= len + 3; size++) {
            test_tr_open(&tr, size);

            switch (mode) {

            case 0:
                (void) test_tr_confirm(&tr, str);
                n = test_tr_chars_fit(size);
                memcpy(want, str, n);
                break;

            case 1:
                (void) test_tr_interim(&tr, str);
                n = test_tr_chars_fit(size);
                memcpy(want, str, n);
                break;

            default:
                (void) test_tr_confirm(&tr, "x");
                (void) test_tr_interim(&tr, str);

                room = size > 2 ? size - 2 : 0;
                n = test_tr_chars_fit(room);

                if (n) {
                    memcpy(want, "x ", 2);
                    memcpy(want + 2, str, n);
                    n += 2;

                } else {
                    n = size ? 1 : 0;
                    want[0] = 'x';
                }

                break;
            }

            ngx_http_voice_transcript_partial(&tr.t, &s);

            assert_true(s.len <= size);
            assert_true(test_tr_utf8_valid(s.data, s.len));
            test_tr_expect_n(&s, want, n);

            assert_int_equal(tr.t.truncated,
                             size < (mode == 2 ? len + 2 : len));

            test_tr_close(&tr);
        }
    }
}


static void
test_tr_frozen_no_gap(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 9);

    assert_int_equal(test_tr_confirm(&tr, "abcdef"), P);
    assert_false(tr.t.truncated);

    /* " \xe6\x97\xa5..." needs 4 bytes for its first character: 3 are left */

    assert_int_equal(test_tr_confirm(&tr, "\xe6\x97\xa5\xe6\x9c\xac"), 0);
    assert_true(tr.t.truncated);
    assert_true(tr.t.full);
    test_tr_expect_partial(&tr, "abcdef");

    /* " z" would fit, but would follow a segment that was lost */

    assert_int_equal(test_tr_confirm(&tr, "z"), 0);
    assert_int_equal(test_tr_interim(&tr, "q"), 0);
    test_tr_expect_partial(&tr, "abcdef");

    assert_int_equal(ngx_http_voice_transcript_end(&tr.t), F);
    test_tr_expect_final(&tr, "abcdef");

    test_tr_close(&tr);
}


static void
test_tr_interim_cut_then_fits(void **state)
{
    test_tr_t  tr;

    (void) state;

    test_tr_open(&tr, 10);

    assert_int_equal(test_tr_confirm(&tr, "hello"), P);
    assert_int_equal(test_tr_interim(&tr, "wonderful"), P);
    test_tr_expect_partial(&tr, "hello wond");
    assert_true(tr.t.truncated);
    assert_false(tr.t.full);

    /* a revision past the bound that keeps the same held text */

    assert_int_equal(test_tr_interim(&tr, "wondering"), 0);

    /* a shorter hypothesis fits again; truncated stays for the turn */

    assert_int_equal(test_tr_interim(&tr, "wo"), P);
    test_tr_expect_partial(&tr, "hello wo");
    assert_true(tr.t.truncated);

    assert_int_equal(test_tr_confirm(&tr, "wow"), P);
    test_tr_expect_final(&tr, "hello wow");
    assert_false(tr.t.full);

    test_tr_close(&tr);
}


static void
test_tr_invalid_utf8_bounded(void **state)
{
    size_t      size;
    ngx_str_t   s;
    test_tr_t   tr;

    (void) state;

    /* garbage of continuation bytes: no promise on the text, only bounds */

    for (size = 0; size < 12; size++) {
        test_tr_open(&tr, size);

        (void) test_tr_confirm(&tr, "\x80\x80\x80\x80\x80\x80\x80\x80");
        (void) test_tr_interim(&tr, "\xbf\xbf\xbf\xbf\xbf\xbf");

        ngx_http_voice_transcript_partial(&tr.t, &s);
        assert_true(s.len <= size);
        assert_true(tr.t.confirmed <= tr.t.len);

        test_tr_close(&tr);
    }
}


/* ---- a long random stream against a reference model --------------------- */


typedef struct {
    char                cf[TEST_TR_MODEL_MAX];  /* every confirmed segment */
    u_char              sep[TEST_TR_MODEL_MAX]; /* where separators are */
    size_t              cf_len;
    char                interim[TEST_TR_MODEL_MAX];
    size_t              interim_len;
    char                last[TEST_TR_MODEL_MAX]; /* last hypothesis */
    size_t              last_len;
    size_t              size;
    ngx_uint_t          final;
    ngx_uint_t          truncated;
} test_tr_model_t;


static void
test_tr_model_reset(test_tr_model_t *m)
{
    m->cf_len = 0;
    m->interim_len = 0;
    m->last_len = 0;
    m->final = 0;
    m->truncated = 0;
    memset(m->sep, 0, sizeof(m->sep));
}


/* trims ASCII whitespace: the model's own, simple version */

static size_t
test_tr_model_trim(const char *s, size_t len, const char **out)
{
    while (len && s[0] != '\0' && strchr(" \t\n\r\v\f", s[0]) != NULL) {
        s++;
        len--;
    }

    while (len && s[len - 1] != '\0'
           && strchr(" \t\n\r\v\f", s[len - 1]) != NULL)
    {
        len--;
    }

    *out = s;

    return len;
}


/*
 * The text the aggregator must hold for a whole text with separators at
 * the marked places: the longest prefix within size ending on a character
 * boundary, without a separator left at its end.
 */

static size_t
test_tr_model_cut(const char *full, const u_char *sep, size_t len,
    size_t size)
{
    size_t  n;

    if (len <= size) {
        return len;
    }

    n = size;

    while (n && (((u_char) full[n]) & 0xc0) == 0x80) {
        n--;
    }

    if (n && sep[n - 1]) {
        n--;
    }

    return n;
}


static const char  *test_tr_words[] = {
    "hello", "world", "a", "I", "ok", "caf\xc3\xa9", "na\xc3\xafve",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\xf0\x9f\x98\x80",
    "x\xf0\x9f\x98\x80y", "\xe2\x82\xac\x35", "\xd0\xb4\xd0\xb0",
    "two  spaces", "tab\tinside", "supercalifragilistic"
};

#define TEST_TR_NWORDS  (sizeof(test_tr_words) / sizeof(test_tr_words[0]))

static const size_t  test_tr_sizes[] = {
    0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 100, 1000
};

#define TEST_TR_NSIZES  (sizeof(test_tr_sizes) / sizeof(test_tr_sizes[0]))


static uint64_t
test_tr_rand(uint64_t *s)
{
    uint64_t  z;

    /* splitmix64: small, seedable, good enough to pick operations */

    *s += 0x9e3779b97f4a7c15ULL;
    z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


static size_t
test_tr_below(uint64_t *s, size_t n)
{
    return (size_t) (test_tr_rand(s) % n);
}


/* a segment of 0 to 3 words, sometimes padded with whitespace */

static size_t
test_tr_gen(uint64_t *s, char *out)
{
    size_t              i, words;
    static const char  *pads[] = { "", " ", "  ", "\t", "\n", " \r\n" };

    out[0] = '\0';

    strcat(out, pads[test_tr_below(s, 6)]);

    words = test_tr_below(s, 4);

    for (i = 0; i < words; i++) {
        if (i) {
            strcat(out, " ");
        }

        strcat(out, test_tr_words[test_tr_below(s, TEST_TR_NWORDS)]);
    }

    strcat(out, pads[test_tr_below(s, 6)]);

    return strlen(out);
}


static void
test_tr_random_run(uint64_t seed, size_t steps)
{
    char              full[2 * TEST_TR_MODEL_MAX + 1], seg[128];
    u_char            fsep[2 * TEST_TR_MODEL_MAX + 1];
    size_t            step, len, tlen, flen, n, cn, size;
    uint64_t          rs;
    ngx_str_t         s;
    test_tr_t         tr;
    ngx_uint_t        rc, want, op, is_final, end, nfinals, npartials;
    const char       *t;
    test_tr_model_t  *m;

    m = malloc(sizeof(test_tr_model_t));
    assert_non_null(m);

    rs = seed;
    size = test_tr_sizes[test_tr_below(&rs, TEST_TR_NSIZES)];

    test_tr_open(&tr, size);
    test_tr_model_reset(m);
    m->size = size;

    nfinals = 0;
    npartials = 0;

    for (step = 0; step < steps; step++) {

        op = test_tr_below(&rs, 100);

        if (op >= 93 || m->cf_len + 200 > TEST_TR_MODEL_MAX) {

            /* a new turn, sometimes in a buffer of another size */

            if (test_tr_below(&rs, 3) == 0) {
                test_tr_close(&tr);
                size = test_tr_sizes[test_tr_below(&rs, TEST_TR_NSIZES)];
                test_tr_open(&tr, size);
                m->size = size;

            } else {
                ngx_http_voice_transcript_reset(&tr.t);
            }

            test_tr_model_reset(m);
            continue;
        }

        if (op >= 86) {
            rc = ngx_http_voice_transcript_end(&tr.t);
            end = 1;

        } else {
            len = test_tr_gen(&rs, seg);

            is_final = (op >= 45);
            end = (op >= 72) || (op < 3);

            rc = test_tr_feed_n(&tr, seg, len, is_final, end);

            tlen = test_tr_model_trim(seg, len, &t);

            if (is_final) {
                if (tlen) {
                    if (m->cf_len) {
                        m->sep[m->cf_len] = 1;
                        m->cf[m->cf_len++] = ' ';
                    }

                    memcpy(m->cf + m->cf_len, t, tlen);
                    m->cf_len += tlen;
                }

                m->interim_len = 0;

            } else {
                memcpy(m->interim, t, tlen);
                m->interim_len = tlen;
            }
        }

        /* the whole text: confirmed segments, then the interim */

        memcpy(full, m->cf, m->cf_len);
        memcpy(fsep, m->sep, m->cf_len);
        flen = m->cf_len;

        if (m->interim_len) {
            if (flen) {
                fsep[flen] = 1;
                full[flen++] = ' ';
            }

            memcpy(full + flen, m->interim, m->interim_len);
            memset(fsep + flen, 0, m->interim_len);
            flen += m->interim_len;
        }

        n = test_tr_model_cut(full, fsep, flen, m->size);
        cn = test_tr_model_cut(m->cf, m->sep, m->cf_len, m->size);

        if (n < flen) {
            m->truncated = 1;
        }

        want = 0;

        if (n != m->last_len || memcmp(full, m->last, n) != 0) {
            want |= P;
            memcpy(m->last, full, n);
            m->last_len = n;
        }

        if (end && !m->final && cn) {
            want |= F;
            m->final = 1;
        }

        if (rc != want) {
            fail_msg("seed %llu step %zu size %zu: got %lu, want %lu",
                     (unsigned long long) seed, step, m->size,
                     (unsigned long) rc, (unsigned long) want);
        }

        ngx_http_voice_transcript_partial(&tr.t, &s);
        assert_true(s.len <= m->size);
        assert_true(test_tr_utf8_valid(s.data, s.len));
        test_tr_expect_n(&s, full, n);

        ngx_http_voice_transcript_final(&tr.t, &s);
        assert_true(test_tr_utf8_valid(s.data, s.len));
        test_tr_expect_n(&s, m->cf, cn);

        assert_int_equal(tr.t.truncated, m->truncated);
        assert_int_equal(tr.t.final, m->final);

        nfinals += (rc & F) ? 1 : 0;
        npartials += (rc & P) ? 1 : 0;
    }

    /* the stream must have exercised both kinds of event */

    assert_true(nfinals > steps / 100);
    assert_true(npartials > steps / 10);

    test_tr_close(&tr);
    free(m);
}


static void
test_tr_random_stream(void **state)
{
    uint64_t  seed;

    (void) state;

    for (seed = 1; seed <= 8; seed++) {
        test_tr_random_run(seed * 7919, 40000);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_tr_utf8_check_self),
        cmocka_unit_test(test_tr_interim_replaces),
        cmocka_unit_test(test_tr_confirmed_accumulates),
        cmocka_unit_test(test_tr_same_interim_twice),
        cmocka_unit_test(test_tr_final_confirms_interim),
        cmocka_unit_test(test_tr_final_differs),
        cmocka_unit_test(test_tr_equal_length_changes),
        cmocka_unit_test(test_tr_retraction),
        cmocka_unit_test(test_tr_final_orders),
        cmocka_unit_test(test_tr_repeated_ends),
        cmocka_unit_test(test_tr_utterance_end_empty),
        cmocka_unit_test(test_tr_end_with_interim_only),
        cmocka_unit_test(test_tr_after_final_no_reset),
        cmocka_unit_test(test_tr_reset),
        cmocka_unit_test(test_tr_whitespace),
        cmocka_unit_test(test_tr_empty_segments),
        cmocka_unit_test(test_tr_null_text),
        cmocka_unit_test(test_tr_bounds_ascii),
        cmocka_unit_test(test_tr_bounds_utf8),
        cmocka_unit_test(test_tr_frozen_no_gap),
        cmocka_unit_test(test_tr_interim_cut_then_fits),
        cmocka_unit_test(test_tr_invalid_utf8_bounded),
        cmocka_unit_test(test_tr_random_stream),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
