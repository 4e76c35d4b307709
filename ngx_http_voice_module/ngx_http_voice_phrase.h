
/*
 * The phrase aggregator of a streaming reply: the LLM's text arrives in
 * pieces split anywhere (inside words, numbers, UTF-8 characters), and
 * it is cut into phrases that go to the TTS as soon as each is complete.
 *
 * A phrase ends
 *   - at a sentence end: a run of '.', '!', '?', ';', ':' or U+2026,
 *     then any closing quotes or brackets, then whitespace; except after
 *     an abbreviation ("Dr.", "vs.", "e.g.", "U.S.", an initial "J."),
 *     a list number at the start of a phrase ("1."), and an ellipsis or
 *     "etc." followed by a word in lower case ("Wait... what");
 *   - at a line break;
 *   - at the length limit (characters, not bytes): at the last word
 *     boundary before it, after a comma when that keeps at least half
 *     the limit, or inside a word longer than the limit, between two
 *     characters;
 *   - at the end of the reply (flush).
 * Text without whitespace ("3.5", "v2.0", "10:30", URLs, e-mail
 * addresses) is never a sentence end.
 *
 * Phrases have no whitespace at either end and are never empty; between
 * two phrases the reply has only whitespace.  The cuts do not depend on
 * how the reply was split into pieces, as long as the buffer is not full.
 *
 * Pure code: no nginx runtime, no allocation; the owner's buffer holds
 * the text not yet cut.
 */


#ifndef _NGX_HTTP_VOICE_PHRASE_H_INCLUDED_
#define _NGX_HTTP_VOICE_PHRASE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_VOICE_PHRASE_MAX_CHARS  60

/* the smallest buffer: it always holds a whole character */
#define NGX_HTTP_VOICE_PHRASE_MIN_SIZE   8

/*
 * A buffer this big is never full in practice: a phrase at the limit in
 * 4-byte characters and room for the text that decides where it ends.
 */
#define NGX_HTTP_VOICE_PHRASE_SIZE(max_chars)  (4 * (max_chars) + 256)


typedef struct {
    ngx_str_t           text;      /* valid until the next feed or reset */
    ngx_uint_t          index;     /* 0 for the first phrase of a reply */
    size_t              offset;    /* bytes of the reply before text */
} ngx_http_voice_phrase_out_t;


typedef struct {
    u_char             *buf;
    size_t              size;
    size_t              start;     /* the text not yet cut begins here */
    size_t              len;       /* bytes held in buf */
    size_t              base;      /* bytes of the reply before buf[0] */
    ngx_uint_t          max_chars;
    ngx_uint_t          index;     /* phrases given out */
    ngx_uint_t          forced;    /* phrases cut because buf was full */
    unsigned            eof:1;     /* the reply is complete */
} ngx_http_voice_phrase_t;


/* NGX_ERROR when size < NGX_HTTP_VOICE_PHRASE_MIN_SIZE or max_chars 0 */
ngx_int_t ngx_http_voice_phrase_init(ngx_http_voice_phrase_t *p,
    u_char *buf, size_t size, ngx_uint_t max_chars);

/*
 * Takes the next piece of the reply; returns how many bytes of it were
 * taken.  Fewer than len only when the buffer is full: the owner then
 * takes phrases with next() until NGX_DECLINED and feeds the rest; after
 * that NGX_DECLINED at least one byte is always taken.  When the buffer
 * is full with no phrase end in it, next() cuts a phrase as at the
 * length limit but within what is held (counted in "forced").
 * Nothing is taken after flush().
 */
size_t ngx_http_voice_phrase_feed(ngx_http_voice_phrase_t *p,
    const u_char *data, size_t len);

/* NGX_OK with the next complete phrase, NGX_DECLINED when none is */
ngx_int_t ngx_http_voice_phrase_next(ngx_http_voice_phrase_t *p,
    ngx_http_voice_phrase_out_t *out);

/* the reply is complete: next() gives out the rest of it */
void ngx_http_voice_phrase_flush(ngx_http_voice_phrase_t *p);

/* everything is dropped (barge-in); a new reply begins */
void ngx_http_voice_phrase_reset(ngx_http_voice_phrase_t *p);


#endif /* _NGX_HTTP_VOICE_PHRASE_H_INCLUDED_ */
