
/*
 * Paced playout: a model of the client's playback clock.
 *
 * The clock is an anchor: `base' samples had played at `base_ms', and
 * playback runs on from there at `rate' until everything sent has played.
 * An anchor in the future means a gateway reported the client behind the
 * model: the model holds still until the client catches up with it.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_voice_playout.h"


/*
 * A confirmation far behind the model holds the clock back no longer than
 * a day, which keeps every anchor within wrap-safe reach of `now'.
 */
#define NGX_HTTP_VOICE_PLAYOUT_MAX_HOLD  86400000


static void ngx_http_voice_playout_clock(ngx_http_voice_playout_t *p,
    ngx_msec_t now, uint64_t *played, uint64_t *ahead);
static uint64_t ngx_http_voice_playout_samples(ngx_uint_t rate, uint64_t ms,
    uint64_t max);
static uint64_t ngx_http_voice_playout_ms_up(ngx_uint_t rate,
    uint64_t samples);
static uint64_t ngx_http_voice_playout_ms_down(ngx_uint_t rate,
    uint64_t samples);


void
ngx_http_voice_playout_init(ngx_http_voice_playout_t *p, ngx_uint_t rate,
    ngx_msec_t frame_ms, ngx_msec_t lead_ms)
{
    /* a zero rate would stop the clock and divide by zero */
    p->rate = rate ? rate : 1;

    p->frame = (ngx_uint_t) ((uint64_t) p->rate * frame_ms / 1000);
    if (p->frame == 0) {
        p->frame = 1;
    }

    /* a lead below one frame could never let a frame go */
    p->lead = (ngx_uint_t) ((uint64_t) p->rate * lead_ms / 1000);
    if (p->lead < p->frame) {
        p->lead = p->frame;
    }

    p->sent = 0;
    p->base = 0;
    p->base_ms = 0;
}


uint64_t
ngx_http_voice_playout_played(ngx_http_voice_playout_t *p, ngx_msec_t now)
{
    uint64_t  played, ahead;

    ngx_http_voice_playout_clock(p, now, &played, &ahead);

    return played;
}


ngx_uint_t
ngx_http_voice_playout_ready(ngx_http_voice_playout_t *p, ngx_msec_t now,
    size_t queued)
{
    uint64_t  played, ahead, frames, room;

    frames = queued / p->frame;
    if (frames == 0) {
        return 0;
    }

    ngx_http_voice_playout_clock(p, now, &played, &ahead);

    /*
     * Send while no more than the lead ends up ahead: never over it, not
     * even by a frame.  "Idle" means nothing ahead, a backlog a gateway
     * reported included; as lead >= frame, an idle client gets a frame.
     */

    room = (ahead < p->lead) ? (p->lead - ahead) / p->frame : 0;

    return (ngx_uint_t) ngx_min(frames, room);
}


void
ngx_http_voice_playout_sent(ngx_http_voice_playout_t *p, ngx_msec_t now,
    size_t n)
{
    uint64_t  played, ahead;

    if (n == 0) {
        return;
    }

    ngx_http_voice_playout_clock(p, now, &played, &ahead);

    if (ahead == 0) {
        /* the client ran dry: it starts this audio the moment it arrives */
        p->base = p->sent;
        p->base_ms = now;
    }

    p->sent += n;
}


ngx_msec_t
ngx_http_voice_playout_wait(ngx_http_voice_playout_t *p, ngx_msec_t now)
{
    uint64_t        played, ahead, low, span, hold;
    ngx_msec_int_t  d;

    ngx_http_voice_playout_clock(p, now, &played, &ahead);

    /* one more frame may go once no more than this is ahead */
    low = p->lead - p->frame;

    if (ahead <= low) {
        return 0;
    }

    /* not ready, so something was sent: the clock is anchored */

    span = p->sent - p->base;
    d = (ngx_msec_int_t) (now - p->base_ms);

    if (d >= 0) {
        /* the first D with base + D * rate / 1000 >= sent - low, from now */
        return (ngx_msec_t) (ngx_http_voice_playout_ms_up(p->rate, span - low)
                             - (uint64_t) d);
    }

    hold = ngx_min((uint64_t) (p->base_ms - now),
                   NGX_HTTP_VOICE_PLAYOUT_MAX_HOLD);

    if (span <= low) {
        /* ready while still held, once the backlog is small enough */
        return (ngx_msec_t) (hold
                             - ngx_http_voice_playout_ms_down(p->rate,
                                                              low - span));
    }

    return (ngx_msec_t) (hold
                         + ngx_http_voice_playout_ms_up(p->rate, span - low));
}


uint64_t
ngx_http_voice_playout_drop(ngx_http_voice_playout_t *p, ngx_msec_t now)
{
    uint64_t  played, ahead;

    ngx_http_voice_playout_clock(p, now, &played, &ahead);

    /* the client is idle now, whatever a gateway reported before */

    p->sent = played;
    p->base = played;
    p->base_ms = now;

    return played;
}


void
ngx_http_voice_playout_confirm(ngx_http_voice_playout_t *p, ngx_msec_t now,
    uint64_t played)
{
    uint64_t  model, ahead, hold;

    ngx_http_voice_playout_clock(p, now, &model, &ahead);

    if (played > p->sent) {
        played = p->sent;
    }

    if (played >= model) {
        p->base = played;
        p->base_ms = now;
        return;
    }

    /*
     * Behind the model: played() never goes back, so the model holds
     * still until the client, as confirmed, has caught up with it, and
     * then runs on in step with the gateway.  A confirmation lower than
     * an earlier one is taken the same way, as the client falling further
     * behind; the audio it still has counts as ahead of it meanwhile.
     */

    hold = ngx_http_voice_playout_ms_up(p->rate, model - played);
    hold = ngx_min(hold, NGX_HTTP_VOICE_PLAYOUT_MAX_HOLD);

    p->base = model;
    p->base_ms = now + (ngx_msec_t) hold;
}


static void
ngx_http_voice_playout_clock(ngx_http_voice_playout_t *p, ngx_msec_t now,
    uint64_t *played, uint64_t *ahead)
{
    uint64_t        hold;
    ngx_msec_int_t  d;

    if (p->sent == 0) {
        /* nothing sent: no anchor yet, so init needs no time */
        *played = 0;
        *ahead = 0;
        return;
    }

    d = (ngx_msec_int_t) (now - p->base_ms);

    if (d < 0) {
        /* held (a `now' before the anchor is the same): base plays later */
        hold = ngx_min((uint64_t) (p->base_ms - now),
                       NGX_HTTP_VOICE_PLAYOUT_MAX_HOLD);

        *played = p->base;
        *ahead = p->sent - p->base + (hold * p->rate + 999) / 1000;
        return;
    }

    *played = p->base + ngx_http_voice_playout_samples(p->rate, (uint64_t) d,
                                                       p->sent - p->base);
    *ahead = p->sent - *played;
}


/* ms * rate / 1000 rounded down, at most max, without overflow */

static uint64_t
ngx_http_voice_playout_samples(ngx_uint_t rate, uint64_t ms, uint64_t max)
{
    uint64_t  n;

    if (ms / 1000 > max / rate) {
        return max;
    }

    n = ms / 1000 * rate + ms % 1000 * rate / 1000;

    return ngx_min(n, max);
}


/* samples * 1000 / rate rounded up, without overflow */

static uint64_t
ngx_http_voice_playout_ms_up(ngx_uint_t rate, uint64_t samples)
{
    return samples / rate * 1000 + (samples % rate * 1000 + rate - 1) / rate;
}


/* samples * 1000 / rate rounded down, without overflow */

static uint64_t
ngx_http_voice_playout_ms_down(ngx_uint_t rate, uint64_t samples)
{
    return samples / rate * 1000 + samples % rate * 1000 / rate;
}
