
/*
 * Unit tests of the phrase aggregator (ngx_http_voice_phrase.[ch]).
 *
 * Every buffer handed to the aggregator is followed by guard bytes that
 * are checked after each call, and every piece fed is a heap copy of its
 * exact length, so a byte read or written out of bounds shows up.
 *
 * Each run checks the properties every cut must have: the phrase is the
 * reply's text at its offset, has no whitespace at either end, is not
 * empty, is within the length limit, begins and ends on character
 * boundaries, and the reply has only whitespace between phrases.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ngx_http_voice_phrase.h"


#define TEST_PH_GUARD       32
#define TEST_PH_GUARD_BYTE  0xa5
#define TEST_PH_OUT_MAX     16384
#define TEST_PH_TEXT_MAX    4096


typedef struct {
    ngx_http_voice_phrase_t   p;
    u_char                   *buf;
    size_t                    size;
} test_ph_t;


/* the phrases of one run, joined by '|' */

typedef struct {
    char                      out[TEST_PH_OUT_MAX];
    size_t                    out_len;
    ngx_uint_t                n;
    ngx_uint_t                forced;
} test_ph_result_t;


static void
test_ph_open(test_ph_t *t, size_t size, ngx_uint_t max_chars)
{
    t->buf = malloc(size + TEST_PH_GUARD);
    assert_non_null(t->buf);

    memset(t->buf, TEST_PH_GUARD_BYTE, size + TEST_PH_GUARD);
    t->size = size;

    assert_int_equal(ngx_http_voice_phrase_init(&t->p, t->buf, size,
                                                max_chars),
                     NGX_OK);
}


static void
test_ph_check_guard(test_ph_t *t)
{
    size_t  i;

    for (i = 0; i < TEST_PH_GUARD; i++) {
        assert_int_equal(t->buf[t->size + i], TEST_PH_GUARD_BYTE);
    }
}


static void
test_ph_close(test_ph_t *t)
{
    test_ph_check_guard(t);
    free(t->buf);
    t->buf = NULL;
}


static ngx_uint_t
test_ph_space(u_char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'
           || c == '\f';
}


static ngx_uint_t
test_ph_chars(const u_char *s, size_t len)
{
    size_t      i;
    ngx_uint_t  n;

    n = 0;

    for (i = 0; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            n++;
        }
    }

    return n;
}


/* feeds a piece from a heap copy of exactly its length */

static size_t
test_ph_feed_n(test_ph_t *t, const u_char *s, size_t len)
{
    u_char  *copy;
    size_t   n;

    copy = NULL;

    if (len) {
        copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, s, len);
    }

    n = ngx_http_voice_phrase_feed(&t->p, copy, len);

    free(copy);
    test_ph_check_guard(t);

    assert_true(n <= len);

    return n;
}


/* checks a phrase against the reply and records it */

static void
test_ph_take(test_ph_t *t, ngx_http_voice_phrase_out_t *o,
    const u_char *text, size_t len, size_t *done, ngx_uint_t max_chars,
    test_ph_result_t *r)
{
    size_t  i;

    assert_int_equal(o->index, r->n);
    assert_true(o->text.len > 0);
    assert_true(o->text.data >= t->buf);
    assert_true(o->text.data + o->text.len <= t->buf + t->size);

    assert_true(o->offset >= *done);
    assert_true(o->offset + o->text.len <= len);
    assert_memory_equal(o->text.data, text + o->offset, o->text.len);

    assert_false(test_ph_space(o->text.data[0]));
    assert_false(test_ph_space(o->text.data[o->text.len - 1]));
    assert_true(test_ph_chars(o->text.data, o->text.len) <= max_chars);

    /* character boundaries on both sides */

    assert_true((text[o->offset] & 0xc0) != 0x80);

    if (o->offset + o->text.len < len) {
        assert_true((text[o->offset + o->text.len] & 0xc0) != 0x80);
    }

    /* nothing but whitespace since the previous phrase */

    for (i = *done; i < o->offset; i++) {
        if (!test_ph_space(text[i])) {
            fail_msg("text lost before phrase %lu at byte %zu",
                     (unsigned long) r->n, i);
        }
    }

    *done = o->offset + o->text.len;

    assert_true(r->out_len + o->text.len + 1 < TEST_PH_OUT_MAX);

    if (r->n) {
        r->out[r->out_len++] = '|';
    }

    memcpy(r->out + r->out_len, o->text.data, o->text.len);
    r->out_len += o->text.len;
    r->out[r->out_len] = '\0';
    r->n++;
}


/*
 * One reply fed in pieces that end at the ascending offsets in cuts,
 * then flushed.
 */

static void
test_ph_run(const u_char *text, size_t len, const size_t *cuts,
    ngx_uint_t ncuts, ngx_uint_t max_chars, size_t size, test_ph_result_t *r)
{
    size_t                        from, to, n, done, i;
    ngx_uint_t                    k;
    test_ph_t                     t;
    ngx_http_voice_phrase_out_t   o;

    test_ph_open(&t, size, max_chars);

    r->out_len = 0;
    r->out[0] = '\0';
    r->n = 0;
    done = 0;
    from = 0;

    for (k = 0; k <= ncuts; k++) {
        to = (k < ncuts) ? cuts[k] : len;
        assert_true(to >= from && to <= len);

        if (from == to) {
            assert_int_equal(test_ph_feed_n(&t, text + from, 0), 0);
        }

        while (from < to) {
            n = test_ph_feed_n(&t, text + from, to - from);
            from += n;

            while (ngx_http_voice_phrase_next(&t.p, &o) == NGX_OK) {
                test_ph_check_guard(&t);
                test_ph_take(&t, &o, text, len, &done, max_chars, r);
            }

            /* after NGX_DECLINED the next feed makes progress */

            if (from < to) {
                n = test_ph_feed_n(&t, text + from, 1);
                assert_int_equal(n, 1);
                from += n;

                while (ngx_http_voice_phrase_next(&t.p, &o) == NGX_OK) {
                    test_ph_take(&t, &o, text, len, &done, max_chars, r);
                }
            }
        }
    }

    ngx_http_voice_phrase_flush(&t.p);

    while (ngx_http_voice_phrase_next(&t.p, &o) == NGX_OK) {
        test_ph_check_guard(&t);
        test_ph_take(&t, &o, text, len, &done, max_chars, r);
    }

    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_DECLINED);

    for (i = done; i < len; i++) {
        if (!test_ph_space(text[i])) {
            fail_msg("text lost at the end, byte %zu", i);
        }
    }

    r->forced = t.p.forced;

    test_ph_close(&t);
}


/*
 * The phrases of text must be expected (joined by '|'), fed whole, byte
 * by byte, and in every split into two pieces.
 */

static void
test_ph_expect_max(const char *text, ngx_uint_t max_chars,
    const char *expected)
{
    size_t              len, size, k;
    size_t             *cuts;
    test_ph_result_t   *r;

    len = strlen(text);
    size = NGX_HTTP_VOICE_PHRASE_SIZE(max_chars);

    r = malloc(sizeof(test_ph_result_t));
    assert_non_null(r);

    test_ph_run((u_char *) text, len, NULL, 0, max_chars, size, r);

    if (strcmp(r->out, expected) != 0) {
        fail_msg("text \"%s\"\n got \"%s\"\nwant \"%s\"", text, r->out,
                 expected);
    }

    assert_int_equal(r->forced, 0);

    cuts = malloc((len + 1) * sizeof(size_t));
    assert_non_null(cuts);

    for (k = 0; k + 1 < len; k++) {
        cuts[k] = k + 1;
    }

    test_ph_run((u_char *) text, len, cuts, len ? len - 1 : 0, max_chars,
                size, r);

    if (strcmp(r->out, expected) != 0) {
        fail_msg("byte by byte \"%s\"\n got \"%s\"\nwant \"%s\"", text,
                 r->out, expected);
    }

    for (k = 0; k <= len; k++) {
        cuts[0] = k;
        test_ph_run((u_char *) text, len, cuts, 1, max_chars, size, r);

        if (strcmp(r->out, expected) != 0) {
            fail_msg("split at %zu \"%s\"\n got \"%s\"\nwant \"%s\"", k,
                     text, r->out, expected);
        }
    }

    free(cuts);
    free(r);
}


static void
test_ph_expect(const char *text, const char *expected)
{
    test_ph_expect_max(text, NGX_HTTP_VOICE_PHRASE_MAX_CHARS, expected);
}


/* the tests */


static void
test_ph_init_limits(void **state)
{
    u_char                   buf[NGX_HTTP_VOICE_PHRASE_MIN_SIZE];
    ngx_http_voice_phrase_t  p;

    (void) state;

    assert_int_equal(ngx_http_voice_phrase_init(&p, buf,
                         NGX_HTTP_VOICE_PHRASE_MIN_SIZE - 1, 60),
                     NGX_ERROR);
    assert_int_equal(ngx_http_voice_phrase_init(&p, buf, sizeof(buf), 0),
                     NGX_ERROR);
    assert_int_equal(ngx_http_voice_phrase_init(&p, buf, sizeof(buf), 60),
                     NGX_OK);
}


static void
test_ph_sentences(void **state)
{
    (void) state;

    test_ph_expect("Hello there. How are you? I am fine!",
                   "Hello there.|How are you?|I am fine!");
    test_ph_expect("Really?! Yes!!! Ok.", "Really?!|Yes!!!|Ok.");
    test_ph_expect("First this; then that: done",
                   "First this;|then that:|done");
    test_ph_expect("No end mark here", "No end mark here");
    test_ph_expect("One.Two. Three", "One.Two.|Three");
    test_ph_expect("Tabs.\tAnd\r\nlines.", "Tabs.|And|lines.");
    test_ph_expect("Yahoo! is big", "Yahoo!|is big");
}


static void
test_ph_lines(void **state)
{
    (void) state;

    test_ph_expect("Line one\nLine two\n\nNew paragraph",
                   "Line one|Line two|New paragraph");
    test_ph_expect("Shopping list\n- milk\n- eggs\n",
                   "Shopping list|- milk|- eggs");
    test_ph_expect("Dr.\nWho", "Dr.|Who");
}


static void
test_ph_closers(void **state)
{
    (void) state;

    test_ph_expect("He said \"Stop.\" Then he left.",
                   "He said \"Stop.\"|Then he left.");
    test_ph_expect("(It works.) Yes.", "(It works.)|Yes.");
    test_ph_expect("She asked 'why?' and left",
                   "She asked 'why?'|and left");
    test_ph_expect("\xe2\x80\x9cHi.\xe2\x80\x9d Then \xc2\xabnon!\xc2\xbb ok",
                   "\xe2\x80\x9cHi.\xe2\x80\x9d|Then \xc2\xabnon!\xc2\xbb|ok");
    test_ph_expect("[See above.] More", "[See above.]|More");
    test_ph_expect("**Note:** be careful", "**Note:**|be careful");
    test_ph_expect("\"Stop.\"Then", "\"Stop.\"Then");
}


static void
test_ph_numbers(void **state)
{
    (void) state;

    test_ph_expect("Pi is 3.14 and that costs 1,000 dollars. Next",
                   "Pi is 3.14 and that costs 1,000 dollars.|Next");
    test_ph_expect("Update to v2.0 before 10.30am. Done.",
                   "Update to v2.0 before 10.30am.|Done.");
    test_ph_expect("It is 10:30 now, ratio 3:1. Ok",
                   "It is 10:30 now, ratio 3:1.|Ok");
    test_ph_expect("The total is 42. Thanks", "The total is 42.|Thanks");
    test_ph_expect("Pay $3.50. Bye", "Pay $3.50.|Bye");
}


static void
test_ph_lists(void **state)
{
    (void) state;

    test_ph_expect("Steps:\n1. Open it.\n2. Close it.",
                   "Steps:|1. Open it.|2. Close it.");
    test_ph_expect("Do this: 1. Open it. 2. Close it.",
                   "Do this:|1. Open it.|2. Close it.");
    test_ph_expect("It was 2024. Good", "It was 2024.|Good");
}


static void
test_ph_ellipsis(void **state)
{
    (void) state;

    test_ph_expect("Wait... what happened?", "Wait... what happened?");
    test_ph_expect("Hmm... Let me think.", "Hmm...|Let me think.");
    test_ph_expect("So\xe2\x80\xa6 maybe. Or\xe2\x80\xa6 No.",
                   "So\xe2\x80\xa6 maybe.|Or\xe2\x80\xa6|No.");
    test_ph_expect("Well.. fine", "Well.. fine");
    test_ph_expect("Wait...what", "Wait...what");
    test_ph_expect("And then...", "And then...");
    test_ph_expect("It ends...\nnext line", "It ends...|next line");
    test_ph_expect("Count 1... 2... 3!", "Count 1...|2...|3!");
    test_ph_expect("\"Wait...\" she said", "\"Wait...\" she said");
    test_ph_expect("... and so", "... and so");
}


static void
test_ph_abbreviations(void **state)
{
    (void) state;

    test_ph_expect("Dr. Smith met Mr. Jones and Mrs. Brown. Then",
                   "Dr. Smith met Mr. Jones and Mrs. Brown.|Then");
    test_ph_expect("Ms. Lee lives on Main St. near here.",
                   "Ms. Lee lives on Main St. near here.");
    test_ph_expect("Cats vs. dogs. Ok", "Cats vs. dogs.|Ok");
    test_ph_expect("Fruit, e.g. apples, i.e. food. Yes",
                   "Fruit, e.g. apples, i.e. food.|Yes");
    test_ph_expect("In the U.S. today. Yes", "In the U.S. today.|Yes");
    test_ph_expect("J. R. R. Tolkien wrote it. Yes.",
                   "J. R. R. Tolkien wrote it.|Yes.");
    test_ph_expect("At 9 a.m. sharp.", "At 9 a.m. sharp.");
    test_ph_expect("Ask (Dr. Who) now", "Ask (Dr. Who) now");
    test_ph_expect("DR. NO is here", "DR. NO is here");
    test_ph_expect("The drain. It", "The drain.|It");
    test_ph_expect("I saw it. I left", "I saw it.|I left");
}


static void
test_ph_etc(void **state)
{
    (void) state;

    test_ph_expect("Apples, pears, etc. are fruit. Fine.",
                   "Apples, pears, etc. are fruit.|Fine.");
    test_ph_expect("We need apples, pears, etc. Then we go.",
                   "We need apples, pears, etc.|Then we go.");
    test_ph_expect("Buy apples, pears, etc.", "Buy apples, pears, etc.");
    test_ph_expect("Buy apples, etc.  ", "Buy apples, etc.");
}


static void
test_ph_urls(void **state)
{
    (void) state;

    test_ph_expect("Visit https://example.com/a?b=1. Then mail "
                   "john.doe@example.org. Bye",
                   "Visit https://example.com/a?b=1.|Then mail "
                   "john.doe@example.org.|Bye");
    test_ph_expect("See www.example.co.uk/x.html?q=a:b! Ok",
                   "See www.example.co.uk/x.html?q=a:b!|Ok");
}


static void
test_ph_length(void **state)
{
    (void) state;

    test_ph_expect_max("one two three four five six seven", 20,
                       "one two three four|five six seven");

    /* exactly at the limit, then whitespace: the whole twenty */
    test_ph_expect_max("abcde fghij klmno pq rest", 20,
                       "abcde fghij klmno pq|rest");

    /* a comma wins when it keeps half the limit */
    test_ph_expect_max("alpha beta, gamma delta epsilon", 20,
                       "alpha beta,|gamma delta epsilon");
    test_ph_expect_max("a, bcd efg hij klm nop", 12,
                       "a, bcd efg|hij klm nop");

    /* a word longer than the limit */
    test_ph_expect_max("abcdefghijklmnopqrstuvwxyz", 10,
                       "abcdefghij|klmnopqrst|uvwxyz");
    test_ph_expect_max("go abcdefghijklmnop", 10,
                       "go|abcdefghij|klmnop");

    /* a sentence end past the limit does not count */
    test_ph_expect_max("abcd efgh. ij", 8, "abcd|efgh.|ij");
    test_ph_expect_max("abcd efg. ij", 8, "abcd|efg.|ij");
    test_ph_expect_max("abcd ef. ij", 8, "abcd ef.|ij");
    test_ph_expect_max("abcd e.\" ij", 8, "abcd e.\"|ij");
    test_ph_expect_max("abcd ef.\" ij", 8, "abcd|ef.\"|ij");

    /* whitespace inside a phrase counts */
    test_ph_expect_max("ab    cd    ef", 8, "ab    cd|ef");

    test_ph_expect_max("x", 1, "x");
    test_ph_expect_max("xy z", 1, "x|y|z");
}


static void
test_ph_utf8(void **state)
{
    (void) state;

    /* characters, not bytes: 13 bytes, 11 characters */
    test_ph_expect_max("h\xc3\xa9llo w\xc3\xb6rld", 11,
                       "h\xc3\xa9llo w\xc3\xb6rld");

    test_ph_expect_max("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                       "\xc3\xa9", 5,
                       "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9|"
                       "\xc3\xa9\xc3\xa9");

    /* three-byte characters */
    test_ph_expect_max("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae"
                       "\xe6\x96\x87", 4,
                       "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae|"
                       "\xe6\x96\x87");

    /* four-byte characters */
    test_ph_expect_max("\xf0\x9f\x98\x80\xf0\x9f\x98\x81\xf0\x9f\x98\x82 ok",
                       2,
                       "\xf0\x9f\x98\x80\xf0\x9f\x98\x81|"
                       "\xf0\x9f\x98\x82|ok");

    test_ph_expect("Caf\xc3\xa9. Na\xc3\xafve! \xf0\x9f\x98\x80 Fin.",
                   "Caf\xc3\xa9.|Na\xc3\xafve!|\xf0\x9f\x98\x80 Fin.");
}


static void
test_ph_whitespace(void **state)
{
    (void) state;

    test_ph_expect("", "");
    test_ph_expect("   \n\t  ", "");
    test_ph_expect("  Hello.   World.  ", "Hello.|World.");
    test_ph_expect("\n\nHi\n\n", "Hi");
    /* marks alone never make a phrase of their own */
    test_ph_expect(". ! ?", ". !|?");
    test_ph_expect("! Yes", "! Yes");
}


/* a phrase is given out as soon as the text that decides it is held */

static void
test_ph_timing(void **state)
{
    test_ph_t                     t;
    ngx_http_voice_phrase_out_t   o;

    (void) state;

    test_ph_open(&t, 512, 60);

    test_ph_feed_n(&t, (u_char *) "Hello.", 6);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_DECLINED);

    test_ph_feed_n(&t, (u_char *) " ", 1);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_OK);
    assert_int_equal(o.text.len, 6);
    assert_memory_equal(o.text.data, "Hello.", 6);
    assert_int_equal(o.index, 0);
    assert_int_equal(o.offset, 0);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_DECLINED);

    /* an ellipsis waits for the next word */

    test_ph_feed_n(&t, (u_char *) " Wait... ", 9);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_DECLINED);

    test_ph_feed_n(&t, (u_char *) "W", 1);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_OK);
    assert_int_equal(o.text.len, 7);
    assert_memory_equal(o.text.data, "Wait...", 7);
    assert_int_equal(o.index, 1);
    assert_int_equal(o.offset, 8);

    /* a line break ends a phrase at once */

    test_ph_feed_n(&t, (u_char *) "hy\n", 3);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_OK);
    assert_int_equal(o.text.len, 3);
    assert_memory_equal(o.text.data, "Why", 3);
    assert_int_equal(o.index, 2);
    assert_int_equal(o.offset, 16);

    /* half a character is not cut */

    test_ph_feed_n(&t, (u_char *) "Caf\xc3", 4);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_DECLINED);

    ngx_http_voice_phrase_flush(&t.p);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_OK);
    assert_int_equal(o.text.len, 4);
    assert_int_equal(o.index, 3);
    assert_int_equal(o.offset, 20);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_DECLINED);

    /* nothing is taken after the end of the reply */

    assert_int_equal(test_ph_feed_n(&t, (u_char *) "more", 4), 0);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_DECLINED);

    test_ph_close(&t);
}


static void
test_ph_reset(void **state)
{
    test_ph_t                     t;
    ngx_http_voice_phrase_out_t   o;

    (void) state;

    test_ph_open(&t, 512, 60);

    test_ph_feed_n(&t, (u_char *) "First one. Second half", 22);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_OK);
    assert_int_equal(o.index, 0);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_DECLINED);

    ngx_http_voice_phrase_reset(&t.p);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_DECLINED);

    ngx_http_voice_phrase_flush(&t.p);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_DECLINED);

    /* after a reset the count and the offsets begin again */

    ngx_http_voice_phrase_reset(&t.p);
    assert_int_equal(test_ph_feed_n(&t, (u_char *) "New reply", 9), 9);
    ngx_http_voice_phrase_flush(&t.p);
    assert_int_equal(ngx_http_voice_phrase_next(&t.p, &o), NGX_OK);
    assert_int_equal(o.index, 0);
    assert_int_equal(o.offset, 0);
    assert_int_equal(o.text.len, 9);
    assert_memory_equal(o.text.data, "New reply", 9);

    test_ph_close(&t);
}


/* a full buffer forces phrases out, and the feed goes on */

static void
test_ph_full_buffer(void **state)
{
    const char         *text;
    size_t              len, size;
    test_ph_result_t   *r;

    (void) state;

    r = malloc(sizeof(test_ph_result_t));
    assert_non_null(r);

    text = "abcdefghijklmnopqrstuvwxyz and then some words, more words "
           "here. Wait...        \xf0\x9f\x98\x80\xf0\x9f\x98\x81"
           "\xf0\x9f\x98\x82\xf0\x9f\x98\x83 end";
    len = strlen(text);

    for (size = NGX_HTTP_VOICE_PHRASE_MIN_SIZE; size <= 40; size++) {
        test_ph_run((u_char *) text, len, NULL, 0, 60, size, r);
        assert_true(r->forced > 0);
        assert_true(r->n >= len / size);
    }

    /* with room enough nothing is forced */

    test_ph_run((u_char *) text, len, NULL, 0, 20, 200, r);
    assert_int_equal(r->forced, 0);

    free(r);
}


/* several replies, every split into two and three pieces */

static const char  *test_ph_samples[] = {
    "Sure! Dr. Smith's office opens at 9:30 a.m. on weekdays; the "
    "address is 221B Baker St. in London. Call +44 20 7946 0958, or "
    "e-mail reception@example.co.uk... whichever suits you. Anything "
    "else?",

    "Here are three options:\n\n1. The basic plan costs $4.99 a month.\n"
    "2. The pro plan (v2.0) costs 1,000 credits, i.e. about $10.\n"
    "3. Enterprise... contact sales.\n",

    "\xe2\x80\x9c" "Bonjour!\xe2\x80\x9d dit-il. C'\xc3\xa9tait l'\xc3\xa9t\xc3"
    "\xa9 \xe2\x80\x94 tr\xc3\xa8s chaud\xe2\x80\xa6 Vraiment. "
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe6\x96\x87\xe3\x82"
    "\x82\xe3\x81\x82\xe3\x82\x8a\xe3\x81\xbe\xe3\x81\x99 \xf0\x9f\x98\x80"
    " ok",

    "This is a deliberately long sentence without any punctuation that "
    "goes on and on well past the limit so it must be cut somewhere, "
    "preferably after a comma, and then again at a word boundary",
};


static void
test_ph_splits(void **state)
{
    const char         *text;
    size_t              len, a, b, cuts[2], size;
    ngx_uint_t          k, max;
    test_ph_result_t   *whole, *r;

    (void) state;

    whole = malloc(sizeof(test_ph_result_t));
    r = malloc(sizeof(test_ph_result_t));
    assert_non_null(whole);
    assert_non_null(r);

    for (k = 0; k < sizeof(test_ph_samples) / sizeof(char *); k++) {
        text = test_ph_samples[k];
        len = strlen(text);

        for (max = 8; max <= 68; max += 30) {
            size = NGX_HTTP_VOICE_PHRASE_SIZE(max);

            test_ph_run((u_char *) text, len, NULL, 0, max, size, whole);
            assert_true(whole->n > 1);
            assert_int_equal(whole->forced, 0);

            /* each split into three pieces, two at once included */

            for (a = 0; a <= len; a++) {
                for (b = a; b <= len; b++) {
                    cuts[0] = a;
                    cuts[1] = b;
                    test_ph_run((u_char *) text, len, cuts, 2, max, size, r);

                    if (strcmp(r->out, whole->out) != 0) {
                        fail_msg("sample %lu max %lu cuts %zu %zu\n"
                                 " got \"%s\"\nwant \"%s\"",
                                 (unsigned long) k, (unsigned long) max,
                                 a, b, r->out, whole->out);
                    }
                }
            }
        }
    }

    free(whole);
    free(r);
}


static void
test_ph_sample_phrases(void **state)
{
    (void) state;

    test_ph_expect(test_ph_samples[0],
                   "Sure!|Dr. Smith's office opens at 9:30 a.m. on weekdays;|"
                   "the address is 221B Baker St. in London.|"
                   "Call +44 20 7946 0958, or e-mail "
                   "reception@example.co.uk...|whichever suits you.|"
                   "Anything else?");

    test_ph_expect(test_ph_samples[1],
                   "Here are three options:|"
                   "1. The basic plan costs $4.99 a month.|"
                   "2. The pro plan (v2.0) costs 1,000 credits, i.e. about "
                   "$10.|3. Enterprise... contact sales.");
}


/* random replies of tricky pieces, cut at random */

static uint64_t
test_ph_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;

    return *s;
}


static const char  *test_ph_tokens[] = {
    "hello", "world", "Dr.", "e.g.", "3.5", "1,000", "v2.0", "etc.",
    "Wait...", "the", "U.S.", "J.", "10:30", "x@y.org",
    "https://a.example/b?c=d.", "\"Quote.\"", "(aside)", "yes!", "no?",
    "so;", "note:", "caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
    "\xf0\x9f\x98\x80", "so\xe2\x80\xa6", "\xe2\x80\x9cHi.\xe2\x80\x9d",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz", "1.", "a,",
    "End.", "and", "then"
};

static const char  *test_ph_seps[] = {
    " ", " ", " ", "  ", "\n", "\n\n", "\t", " \r\n", ""
};


static void
test_ph_random(void **state)
{
    u_char             *text;
    size_t              len, size, cuts[64], n, k, c;
    uint64_t            seed;
    ngx_uint_t          round, ncuts, max, i;
    test_ph_result_t   *whole, *r;
    const char         *w;

    (void) state;

    text = malloc(TEST_PH_TEXT_MAX);
    whole = malloc(sizeof(test_ph_result_t));
    r = malloc(sizeof(test_ph_result_t));
    assert_non_null(text);
    assert_non_null(whole);
    assert_non_null(r);

    seed = 0x9e3779b97f4a7c15ULL;

    for (round = 0; round < 1500; round++) {
        len = 0;
        n = 1 + test_ph_rand(&seed) % 60;

        for (k = 0; k < n; k++) {
            w = test_ph_tokens[test_ph_rand(&seed)
                               % (sizeof(test_ph_tokens) / sizeof(char *))];
            c = strlen(w);

            if (len + c + 4 > TEST_PH_TEXT_MAX) {
                break;
            }

            memcpy(text + len, w, c);
            len += c;

            w = test_ph_seps[test_ph_rand(&seed)
                             % (sizeof(test_ph_seps) / sizeof(char *))];
            c = strlen(w);
            memcpy(text + len, w, c);
            len += c;
        }

        max = 1 + test_ph_rand(&seed) % 80;
        size = NGX_HTTP_VOICE_PHRASE_SIZE(max);

        test_ph_run(text, len, NULL, 0, max, size, whole);
        assert_int_equal(whole->forced, 0);

        for (i = 0; i < 4; i++) {
            ncuts = test_ph_rand(&seed) % 64;

            for (k = 0; k < ncuts; k++) {
                cuts[k] = len ? test_ph_rand(&seed) % (len + 1) : 0;
            }

            /* ascending, repeats allowed: empty pieces are fed too */

            for (k = 1; k < ncuts; k++) {
                for (c = k; c > 0 && cuts[c - 1] > cuts[c]; c--) {
                    n = cuts[c];
                    cuts[c] = cuts[c - 1];
                    cuts[c - 1] = n;
                }
            }

            test_ph_run(text, len, cuts, ncuts, max, size, r);

            if (strcmp(r->out, whole->out) != 0) {
                fail_msg("round %lu max %lu\n got \"%s\"\nwant \"%s\"",
                         (unsigned long) round, (unsigned long) max, r->out,
                         whole->out);
            }
        }

        /* a small buffer still keeps every property */

        test_ph_run(text, len, NULL, 0, max,
                    NGX_HTTP_VOICE_PHRASE_MIN_SIZE
                    + test_ph_rand(&seed) % 32, r);
    }

    free(text);
    free(whole);
    free(r);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_ph_init_limits),
        cmocka_unit_test(test_ph_sentences),
        cmocka_unit_test(test_ph_lines),
        cmocka_unit_test(test_ph_closers),
        cmocka_unit_test(test_ph_numbers),
        cmocka_unit_test(test_ph_lists),
        cmocka_unit_test(test_ph_ellipsis),
        cmocka_unit_test(test_ph_abbreviations),
        cmocka_unit_test(test_ph_etc),
        cmocka_unit_test(test_ph_urls),
        cmocka_unit_test(test_ph_length),
        cmocka_unit_test(test_ph_utf8),
        cmocka_unit_test(test_ph_whitespace),
        cmocka_unit_test(test_ph_timing),
        cmocka_unit_test(test_ph_reset),
        cmocka_unit_test(test_ph_full_buffer),
        cmocka_unit_test(test_ph_splits),
        cmocka_unit_test(test_ph_sample_phrases),
        cmocka_unit_test(test_ph_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
