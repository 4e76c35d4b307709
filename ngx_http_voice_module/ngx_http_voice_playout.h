
/*
 * Paced playout: which outbound audio frames may leave now, and how much
 * of what left the client has played by now.
 *
 * The client plays what it receives at real time.  The scheduler keeps it
 * `lead' samples ahead of its playback, never more, so that a barge-in can
 * silence it at once, and it models the client's playback clock so the
 * session always knows what the user has actually heard.
 *
 * Pure code: times are passed in, nothing is read or allocated.
 */


#ifndef _NGX_HTTP_VOICE_PLAYOUT_H_INCLUDED_
#define _NGX_HTTP_VOICE_PLAYOUT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    /* settings */
    ngx_uint_t          rate;        /* samples per second */
    ngx_uint_t          frame;       /* samples per frame */
    ngx_uint_t          lead;        /* samples kept ahead of playback */

    /* state */
    uint64_t            sent;        /* samples sent so far */
    uint64_t            base;        /* sent when the clock was anchored */
    ngx_msec_t          base_ms;     /* the time it was anchored */
} ngx_http_voice_playout_t;


/* frame_ms and lead_ms in milliseconds; lead is at least one frame */
void ngx_http_voice_playout_init(ngx_http_voice_playout_t *p,
    ngx_uint_t rate, ngx_msec_t frame_ms, ngx_msec_t lead_ms);

/* samples the client has played by `now': never more than were sent */
uint64_t ngx_http_voice_playout_played(ngx_http_voice_playout_t *p,
    ngx_msec_t now);

/*
 * How many whole frames may be sent at `now' when `queued' samples wait.
 * The first frame after the client ran dry may always go.
 */
ngx_uint_t ngx_http_voice_playout_ready(ngx_http_voice_playout_t *p,
    ngx_msec_t now, size_t queued);

/* records n samples sent at `now' (re-anchors the clock after a gap) */
void ngx_http_voice_playout_sent(ngx_http_voice_playout_t *p,
    ngx_msec_t now, size_t n);

/*
 * Milliseconds from `now' until another frame may be sent (0: now), with
 * audio waiting; the session arms its pacing timer with it.
 */
ngx_msec_t ngx_http_voice_playout_wait(ngx_http_voice_playout_t *p,
    ngx_msec_t now);

/*
 * The client drops what it has buffered (barge-in): what it played stays
 * played, the rest counts as never sent.  Returns the samples played.
 */
uint64_t ngx_http_voice_playout_drop(ngx_http_voice_playout_t *p,
    ngx_msec_t now);

/* a gateway confirmed that `played' samples have been played (a mark) */
void ngx_http_voice_playout_confirm(ngx_http_voice_playout_t *p,
    ngx_msec_t now, uint64_t played);


#endif /* _NGX_HTTP_VOICE_PLAYOUT_H_INCLUDED_ */
