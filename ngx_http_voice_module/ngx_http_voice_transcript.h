
/*
 * The transcript of one user turn, assembled from a streaming STT's
 * results: confirmed segments, and the interim hypothesis that follows
 * them.  It decides when the client gets a new partial (only when the
 * text changed) and when the turn's single final is due.
 *
 * Pure code: no nginx runtime, no allocation; the text lives in a buffer
 * the owner provides, whose size bounds the turn.
 */


#ifndef _NGX_HTTP_VOICE_TRANSCRIPT_H_INCLUDED_
#define _NGX_HTTP_VOICE_TRANSCRIPT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* what a result makes due: bits */
#define NGX_HTTP_VOICE_TRANSCRIPT_PARTIAL  1
#define NGX_HTTP_VOICE_TRANSCRIPT_FINAL    2


typedef struct {
    u_char             *data;       /* confirmed text, then the interim */
    size_t              size;
    size_t              confirmed;  /* bytes of confirmed segments */
    size_t              len;        /* confirmed + interim */
    unsigned            final:1;    /* this turn's final went out */
    unsigned            full:1;     /* confirmed text was cut: frozen */
    unsigned            truncated:1;  /* some text of the turn was cut */
} ngx_http_voice_transcript_t;


void ngx_http_voice_transcript_init(ngx_http_voice_transcript_t *t,
    u_char *buf, size_t size);

/*
 * One result of the STT: an interim hypothesis (is_final 0) replaces the
 * previous interim; a confirmed segment (is_final 1) is appended to the
 * confirmed text; end (speech_final, or the answer to a finalize) closes
 * the turn.  Returns the bits of what is due now.
 */
ngx_uint_t ngx_http_voice_transcript_result(ngx_http_voice_transcript_t *t,
    const u_char *text, size_t len, ngx_uint_t is_final, ngx_uint_t end);

/* the STT says the utterance is over (Deepgram's UtteranceEnd) */
ngx_uint_t ngx_http_voice_transcript_end(ngx_http_voice_transcript_t *t);

/* the text to send: the whole hypothesis so far, or the final */
void ngx_http_voice_transcript_partial(ngx_http_voice_transcript_t *t,
    ngx_str_t *text);
void ngx_http_voice_transcript_final(ngx_http_voice_transcript_t *t,
    ngx_str_t *text);

/* a new turn begins: everything is forgotten */
void ngx_http_voice_transcript_reset(ngx_http_voice_transcript_t *t);


#endif /* _NGX_HTTP_VOICE_TRANSCRIPT_H_INCLUDED_ */
