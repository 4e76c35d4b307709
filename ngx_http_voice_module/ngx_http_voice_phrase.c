
/*
 * The phrase aggregator of a streaming reply.
 *
 * Each call to next() scans the text not yet cut from its beginning and
 * looks for the first phrase end.  Every decision is taken only once the
 * bytes it depends on are held: when they are not, the scan stops and
 * waits for more.  So a decision never changes when more text comes,
 * and the phrases are the same whatever the pieces were.  The text held
 * is short (about one phrase), so scanning it again costs little.
 *
 * Characters are UTF-8: a lead byte and the continuation bytes it
 * announces.  Invalid bytes count as characters of their own, so any
 * input is cut somewhere, and never inside a valid character.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_voice_phrase.h"


/* what the word before a single '.' makes of it */
#define NGX_HTTP_VOICE_PHRASE_ABBR_NONE  0    /* a plain word: an end */
#define NGX_HTTP_VOICE_PHRASE_ABBR_ONLY  1    /* never an end */
#define NGX_HTTP_VOICE_PHRASE_ABBR_LOOK  2    /* the next word decides */


static ngx_int_t ngx_http_voice_phrase_end(ngx_http_voice_phrase_t *p,
    size_t s, size_t i, ngx_uint_t chars, size_t *end);
static ngx_int_t ngx_http_voice_phrase_look(ngx_http_voice_phrase_t *p,
    size_t k);
static ngx_uint_t ngx_http_voice_phrase_abbr(ngx_http_voice_phrase_t *p,
    size_t s, size_t i);
static size_t ngx_http_voice_phrase_cut(ngx_http_voice_phrase_t *p,
    size_t s, size_t limit);
static size_t ngx_http_voice_phrase_char(ngx_http_voice_phrase_t *p,
    size_t i);
static ngx_uint_t ngx_http_voice_phrase_term(ngx_http_voice_phrase_t *p,
    size_t i, size_t n);
static ngx_uint_t ngx_http_voice_phrase_closer(ngx_http_voice_phrase_t *p,
    size_t i, size_t n);
static ngx_uint_t ngx_http_voice_phrase_opener(ngx_http_voice_phrase_t *p,
    size_t i, size_t n);
static ngx_uint_t ngx_http_voice_phrase_is(u_char *word, size_t len,
    u_char *lower, size_t n);
static ngx_uint_t ngx_http_voice_phrase_space(u_char c);


/* abbreviations whose '.' never ends a sentence, in lower case */

static ngx_str_t  ngx_http_voice_phrase_abbrs[] = {
    ngx_string("dr"),
    ngx_string("mr"),
    ngx_string("mrs"),
    ngx_string("ms"),
    ngx_string("st"),
    ngx_string("jr"),
    ngx_string("sr"),
    ngx_string("prof"),
    ngx_string("vs"),
    ngx_null_string
};


ngx_int_t
ngx_http_voice_phrase_init(ngx_http_voice_phrase_t *p, u_char *buf,
    size_t size, ngx_uint_t max_chars)
{
    if (size < NGX_HTTP_VOICE_PHRASE_MIN_SIZE || max_chars == 0) {
        return NGX_ERROR;
    }

    p->buf = buf;
    p->size = size;
    p->max_chars = max_chars;

    ngx_http_voice_phrase_reset(p);

    return NGX_OK;
}


size_t
ngx_http_voice_phrase_feed(ngx_http_voice_phrase_t *p, const u_char *data,
    size_t len)
{
    size_t  n;

    if (p->eof) {
        return 0;
    }

    /* phrases already given out are dropped only now: they stay valid */

    if (p->start) {
        ngx_memmove(p->buf, p->buf + p->start, p->len - p->start);
        p->base += p->start;
        p->len -= p->start;
        p->start = 0;
    }

    n = ngx_min(len, p->size - p->len);

    if (n) {
        ngx_memcpy(p->buf + p->len, data, n);
        p->len += n;
    }

    return n;
}


ngx_int_t
ngx_http_voice_phrase_next(ngx_http_voice_phrase_t *p,
    ngx_http_voice_phrase_out_t *out)
{
    size_t      s, i, n, end, cl;
    ngx_int_t   rc;
    ngx_uint_t  chars, term, prev;

    n = p->len;

    /* whitespace between phrases belongs to none */

    while (p->start < n && ngx_http_voice_phrase_space(p->buf[p->start])) {
        p->start++;
    }

    s = p->start;

    if (s == n) {
        return NGX_DECLINED;
    }

    i = s;
    chars = 0;
    prev = 0;

    for ( ;; ) {

        if (i == n) {

            if (p->eof) {
                end = n;
                goto cut;
            }

            goto wait;
        }

        if (chars == p->max_chars) {
            end = ngx_http_voice_phrase_cut(p, s, i);
            goto cut;
        }

        if (p->buf[i] == '\n') {
            end = i;
            goto cut;
        }

        cl = ngx_http_voice_phrase_char(p, i);

        if (cl == 0) {
            goto wait;
        }

        /* only the first mark of a run like "?!" or "..." is examined */

        term = ngx_http_voice_phrase_term(p, i, i + cl);

        if (term && !prev) {
            rc = ngx_http_voice_phrase_end(p, s, i, chars, &end);

            if (rc == NGX_OK) {
                goto cut;
            }

            if (rc == NGX_AGAIN) {
                goto wait;
            }
        }

        prev = term;
        i += cl;
        chars++;
    }

wait:

    if (p->start != 0 || n != p->size) {
        return NGX_DECLINED;
    }

    /* the buffer is full and has no end: cut within what it holds */

    i = s;
    chars = 0;

    while (i < n && chars < p->max_chars) {
        cl = ngx_http_voice_phrase_char(p, i);

        if (cl == 0) {
            break;
        }

        i += cl;
        chars++;
    }

    if (i == s) {
        /* cannot happen with the minimum size; never stall anyway */
        i = n;
    }

    end = ngx_http_voice_phrase_cut(p, s, i);
    p->forced++;

cut:

    /* the text ends in a non-space character: s is one */

    while (end > s && ngx_http_voice_phrase_space(p->buf[end - 1])) {
        end--;
    }

    out->text.data = p->buf + s;
    out->text.len = end - s;
    out->index = p->index++;
    out->offset = p->base + s;

    p->start = end;

    return NGX_OK;
}


void
ngx_http_voice_phrase_flush(ngx_http_voice_phrase_t *p)
{
    p->eof = 1;
}


void
ngx_http_voice_phrase_reset(ngx_http_voice_phrase_t *p)
{
    p->start = 0;
    p->len = 0;
    p->base = 0;
    p->index = 0;
    p->forced = 0;
    p->eof = 0;
}


/*
 * Is the run of marks beginning at i, the phrase's chars-th character,
 * a sentence end?  NGX_OK with its end (after any closers), NGX_DECLINED
 * when it is not one, NGX_AGAIN when the text held does not tell yet.
 */

static ngx_int_t
ngx_http_voice_phrase_end(ngx_http_voice_phrase_t *p, size_t s, size_t i,
    ngx_uint_t chars, size_t *end)
{
    size_t      j, n, cl;
    ngx_uint_t  run, dots, ellipsis, other, closers;

    n = p->len;
    j = i;
    run = 0;
    dots = 0;
    ellipsis = 0;
    other = 0;
    closers = 0;

    for ( ;; ) {

        if (j == n) {
            /* at the end of the reply the tail is a phrase anyway */
            return p->eof ? NGX_DECLINED : NGX_AGAIN;
        }

        cl = ngx_http_voice_phrase_char(p, j);

        if (cl == 0) {
            return NGX_AGAIN;
        }

        if (closers == 0 && ngx_http_voice_phrase_term(p, j, j + cl)) {

            if (cl > 1) {
                ellipsis = 1;

            } else if (p->buf[j] == '.') {
                dots++;

            } else {
                other++;
            }

        } else if (ngx_http_voice_phrase_closer(p, j, j + cl)) {
            closers++;

        } else {
            break;
        }

        j += cl;
        run++;
    }

    if (!ngx_http_voice_phrase_space(p->buf[j])) {
        /* "3.5", "v2.0", "10:30", "example.com/a?b" */
        return NGX_DECLINED;
    }

    if (chars + run > p->max_chars) {
        /* the phrase would be too long: the length limit cuts it */
        return NGX_DECLINED;
    }

    if (i == s) {
        /* marks alone are no phrase */
        return NGX_DECLINED;
    }

    *end = j;

    if (other) {
        return NGX_OK;
    }

    if (ellipsis || dots > 1) {
        /* "Wait... what": the sentence goes on in lower case */
        return ngx_http_voice_phrase_look(p, j);
    }

    if (closers) {
        return NGX_OK;
    }

    switch (ngx_http_voice_phrase_abbr(p, s, i)) {

    case NGX_HTTP_VOICE_PHRASE_ABBR_ONLY:
        return NGX_DECLINED;

    case NGX_HTTP_VOICE_PHRASE_ABBR_LOOK:
        return ngx_http_voice_phrase_look(p, j);

    default: /* NGX_HTTP_VOICE_PHRASE_ABBR_NONE */
        return NGX_OK;
    }
}


/*
 * A possible end at k, followed by whitespace: it is one unless the next
 * word begins in lower case on the same line.
 */

static ngx_int_t
ngx_http_voice_phrase_look(ngx_http_voice_phrase_t *p, size_t k)
{
    size_t  n;

    n = p->len;

    while (k < n && ngx_http_voice_phrase_space(p->buf[k])) {

        if (p->buf[k] == '\n') {
            return NGX_OK;
        }

        k++;
    }

    if (k == n) {
        return p->eof ? NGX_OK : NGX_AGAIN;
    }

    if (p->buf[k] >= 'a' && p->buf[k] <= 'z') {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the word before the single '.' at i */

static ngx_uint_t
ngx_http_voice_phrase_abbr(ngx_http_voice_phrase_t *p, size_t s, size_t i)
{
    size_t      w, len, k;
    u_char     *word;
    ngx_str_t  *a;
    ngx_uint_t  first, digits;

    w = i;

    while (w > s && !ngx_http_voice_phrase_space(p->buf[w - 1])) {
        w--;
    }

    first = (w == s);

    /* an opening quote or bracket is not part of the word */

    for ( ;; ) {
        k = w + 1;

        while (k < i && (p->buf[k] & 0xc0) == 0x80) {
            k++;
        }

        if (w == i || !ngx_http_voice_phrase_opener(p, w, k)) {
            break;
        }

        w = k;
    }

    word = p->buf + w;
    len = i - w;

    if (len == 0) {
        return NGX_HTTP_VOICE_PHRASE_ABBR_NONE;
    }

    if (ngx_http_voice_phrase_is(word, len, (u_char *) "etc", 3)) {
        return NGX_HTTP_VOICE_PHRASE_ABBR_LOOK;
    }

    for (a = ngx_http_voice_phrase_abbrs; a->len; a++) {

        if (ngx_http_voice_phrase_is(word, len, a->data, a->len)) {
            return NGX_HTTP_VOICE_PHRASE_ABBR_ONLY;
        }
    }

    /* an initial: "J. R. R. Tolkien" */

    if (len == 1 && word[0] >= 'A' && word[0] <= 'Z') {
        return NGX_HTTP_VOICE_PHRASE_ABBR_ONLY;
    }

    /* single letters joined by dots: "e.g", "i.e", "U.S", "a.m" */

    if (len >= 3 && len % 2 == 1) {

        for (k = 0; k < len; k++) {

            if (k % 2) {
                if (word[k] != '.') {
                    break;
                }

            } else if (!((word[k] | 0x20) >= 'a' && (word[k] | 0x20) <= 'z'))
            {
                break;
            }
        }

        if (k == len) {
            return NGX_HTTP_VOICE_PHRASE_ABBR_ONLY;
        }
    }

    /* a list item's number: "1. Open the door" */

    if (first && len <= 3) {
        digits = 0;

        for (k = 0; k < len; k++) {
            if (word[k] >= '0' && word[k] <= '9') {
                digits++;
            }
        }

        if (digits == len) {
            return NGX_HTTP_VOICE_PHRASE_ABBR_ONLY;
        }
    }

    return NGX_HTTP_VOICE_PHRASE_ABBR_NONE;
}


/*
 * The end of a phrase cut at the length limit: limit is a character
 * boundary at most max_chars characters after s, all of them held.
 * The phrase ends at the last word boundary at or before the limit;
 * after a comma when that keeps at least half the limit; at the limit
 * itself when the phrase is one word.
 */

static size_t
ngx_http_voice_phrase_cut(ngx_http_voice_phrase_t *p, size_t s,
    size_t limit)
{
    size_t      i, cl, word, comma;
    ngx_uint_t  chars, comma_chars;

    word = 0;
    comma = 0;
    comma_chars = 0;
    chars = 0;

    for (i = s; i <= limit; i += cl, chars++) {

        if (i == p->len) {
            break;
        }

        if (i > s
            && ngx_http_voice_phrase_space(p->buf[i])
            && !ngx_http_voice_phrase_space(p->buf[i - 1]))
        {
            word = i;

            if (p->buf[i - 1] == ',') {
                comma = i;
                comma_chars = chars;
            }
        }

        if (i == limit) {
            break;
        }

        cl = ngx_http_voice_phrase_char(p, i);

        if (cl == 0) {
            /* only past the limit in a full buffer; not reached */
            break;
        }
    }

    if (comma && 2 * comma_chars >= p->max_chars) {
        return comma;
    }

    if (word) {
        return word;
    }

    return limit;
}


/* bytes of the character at i, 0 when its end is not held yet */

static size_t
ngx_http_voice_phrase_char(ngx_http_voice_phrase_t *p, size_t i)
{
    u_char      c;
    size_t      k, want;

    c = p->buf[i];

    if (c >= 0xf0 && c < 0xf8) {
        want = 3;

    } else if (c >= 0xe0 && c < 0xf0) {
        want = 2;

    } else if (c >= 0xc0 && c < 0xe0) {
        want = 1;

    } else {
        return 1;
    }

    for (k = 1; k <= want; k++) {

        if (i + k == p->len) {
            return p->eof ? k : 0;
        }

        if ((p->buf[i + k] & 0xc0) != 0x80) {
            /* a truncated character ends where the next one begins */
            return k;
        }
    }

    return want + 1;
}


/* the character in [i, n) ends a sentence when whitespace follows */

static ngx_uint_t
ngx_http_voice_phrase_term(ngx_http_voice_phrase_t *p, size_t i, size_t n)
{
    u_char  *c;

    c = p->buf + i;

    if (n - i == 1) {
        return c[0] == '.' || c[0] == '!' || c[0] == '?' || c[0] == ';'
               || c[0] == ':';
    }

    /* U+2026 HORIZONTAL ELLIPSIS */
    return n - i == 3 && c[0] == 0xe2 && c[1] == 0x80 && c[2] == 0xa6;
}


/* a closing quote or bracket in [i, n): it stays with the sentence */

static ngx_uint_t
ngx_http_voice_phrase_closer(ngx_http_voice_phrase_t *p, size_t i,
    size_t n)
{
    u_char  *c;

    c = p->buf + i;

    switch (n - i) {

    case 1:
        return c[0] == '"' || c[0] == '\'' || c[0] == ')' || c[0] == ']'
               || c[0] == '}' || c[0] == '*';

    case 2:
        /* U+00BB */
        return c[0] == 0xc2 && c[1] == 0xbb;

    case 3:
        /* U+2019, U+201D */
        return c[0] == 0xe2 && c[1] == 0x80 && (c[2] == 0x99 || c[2] == 0x9d);

    default:
        return 0;
    }
}


/* an opening quote or bracket in [i, n), before a word */

static ngx_uint_t
ngx_http_voice_phrase_opener(ngx_http_voice_phrase_t *p, size_t i,
    size_t n)
{
    u_char  *c;

    c = p->buf + i;

    switch (n - i) {

    case 1:
        return c[0] == '"' || c[0] == '\'' || c[0] == '(' || c[0] == '['
               || c[0] == '{' || c[0] == '*';

    case 2:
        /* U+00AB */
        return c[0] == 0xc2 && c[1] == 0xab;

    case 3:
        /* U+2018, U+201C */
        return c[0] == 0xe2 && c[1] == 0x80 && (c[2] == 0x98 || c[2] == 0x9c);

    default:
        return 0;
    }
}


static ngx_uint_t
ngx_http_voice_phrase_space(u_char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'
           || c == '\f';
}


/* the word is the lower-case ASCII one, in any case */

static ngx_uint_t
ngx_http_voice_phrase_is(u_char *word, size_t len, u_char *lower, size_t n)
{
    size_t  k;

    if (len != n) {
        return 0;
    }

    for (k = 0; k < n; k++) {

        if (ngx_tolower(word[k]) != lower[k]) {
            return 0;
        }
    }

    return 1;
}
