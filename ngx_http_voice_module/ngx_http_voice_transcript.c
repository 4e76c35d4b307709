
/*
 * The transcript of one user turn.
 *
 * The buffer holds exactly the hypothesis last reported to the owner:
 * confirmed segments joined by single spaces, then the interim.  A new
 * result is compared byte by byte with that text before it is written,
 * so "unchanged" is exact and needs no hash.
 *
 * The text held is always the longest prefix of the whole turn's text
 * (segments joined, then the interim) that fits the buffer, cut at a
 * UTF-8 character boundary and never ending on a bare separator.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_voice_transcript.h"


/* longest UTF-8 tail of a character after its lead byte */
#define NGX_HTTP_VOICE_TRANSCRIPT_CONT_MAX  3


static size_t ngx_http_voice_transcript_fit(const u_char *p, size_t len,
    size_t room);
static ngx_uint_t ngx_http_voice_transcript_space(u_char c);


void
ngx_http_voice_transcript_init(ngx_http_voice_transcript_t *t, u_char *buf,
    size_t size)
{
    t->data = buf;
    t->size = size;

    ngx_http_voice_transcript_reset(t);
}


ngx_uint_t
ngx_http_voice_transcript_result(ngx_http_voice_transcript_t *t,
    const u_char *text, size_t len, ngx_uint_t is_final, ngx_uint_t end)
{
    u_char      *p;
    size_t       sep, n, room, tail;
    ngx_uint_t   rc, cut, changed;

    /* only ASCII whitespace is trimmed; the inside is kept as it came */

    while (len && ngx_http_voice_transcript_space(text[0])) {
        text++;
        len--;
    }

    while (len && ngx_http_voice_transcript_space(text[len - 1])) {
        len--;
    }

    sep = t->confirmed ? 1 : 0;
    n = 0;
    cut = 0;

    if (len) {

        if (t->full) {
            /* anything after a cut would leave a gap in the text */
            cut = 1;

        } else {
            room = t->size - t->confirmed;

            if (room > sep) {
                n = ngx_http_voice_transcript_fit(text, len, room - sep);
            }

            if (n < len) {
                cut = 1;
            }
        }
    }

    if (n == 0) {
        /* a separator with nothing after it is not text */
        sep = 0;
    }

    tail = sep + n;

    /*
     * Confirmed text never changes, so only the tail is compared; an old
     * tail of the same length began with the same separator.
     */

    changed = (t->confirmed + tail != t->len);

    if (n) {
        p = t->data + t->confirmed;

        if (!changed && ngx_memcmp(p + sep, text, n) != 0) {
            changed = 1;
        }

        if (changed) {

            if (sep) {
                p[0] = ' ';
            }

            ngx_memmove(p + sep, text, n);
        }
    }

    if (is_final) {
        /* the segment takes the place of the interim it confirms */
        t->confirmed += tail;
        t->len = t->confirmed;

        if (cut) {
            t->full = 1;
        }

    } else {
        t->len = t->confirmed + tail;
    }

    if (cut) {
        t->truncated = 1;
    }

    rc = changed ? NGX_HTTP_VOICE_TRANSCRIPT_PARTIAL : 0;

    if (end) {
        rc |= ngx_http_voice_transcript_end(t);
    }

    return rc;
}


ngx_uint_t
ngx_http_voice_transcript_end(ngx_http_voice_transcript_t *t)
{
    /*
     * The first end of a turn with confirmed text makes the final due;
     * an end before any confirmed text leaves the turn open, so a later
     * end can still close it.
     */

    if (t->final || t->confirmed == 0) {
        return 0;
    }

    t->final = 1;

    return NGX_HTTP_VOICE_TRANSCRIPT_FINAL;
}


void
ngx_http_voice_transcript_partial(ngx_http_voice_transcript_t *t,
    ngx_str_t *text)
{
    text->data = t->data;
    text->len = t->len;
}


void
ngx_http_voice_transcript_final(ngx_http_voice_transcript_t *t,
    ngx_str_t *text)
{
    /* an interim never enters the final: only what the STT confirmed */

    text->data = t->data;
    text->len = t->confirmed;
}


void
ngx_http_voice_transcript_reset(ngx_http_voice_transcript_t *t)
{
    t->confirmed = 0;
    t->len = 0;
    t->final = 0;
    t->full = 0;
    t->truncated = 0;
}


static size_t
ngx_http_voice_transcript_fit(const u_char *p, size_t len, size_t room)
{
    size_t      n;
    ngx_uint_t  k;

    if (len <= room) {
        return len;
    }

    /* a cut before a continuation byte would split a character */

    n = room;

    for (k = 0; k < NGX_HTTP_VOICE_TRANSCRIPT_CONT_MAX; k++) {

        if (n == 0 || (p[n] & 0xc0) != 0x80) {
            break;
        }

        n--;
    }

    return n;
}


static ngx_uint_t
ngx_http_voice_transcript_space(u_char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'
           || c == '\f';
}
