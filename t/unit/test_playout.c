
/*
 * Unit tests of paced playout (ngx_http_voice_playout.[ch]).
 *
 * Most tests drive the scheduler as the session does: a pacing timer
 * fires at now + wait(), sends what ready() allows and records it with
 * sent().  A separate model of the client, kept in elapsed time (no
 * wrap-around) and in units finer than a sample, plays what it receives
 * and tells how far ahead of its playback the scheduler ran, whether it
 * ran dry while audio waited, and what it has really played.  The client
 * may be behind the network, or play a little fast or slow, with a
 * gateway confirming each frame once it has played.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ngx_http_voice_playout.h"


#define TEST_PO_NEVER      ((uint64_t) -1)
#define TEST_PO_FIFO       4096
#define TEST_PO_FRAME_MS   20

/* near the top of ngx_msec_t: sessions started here cross the wrap */
#define TEST_PO_TOP        ((ngx_msec_t) -1 - 30000)


typedef struct {
    ngx_uint_t                 rate;
    ngx_msec_t                 lead_ms;
    ngx_msec_t                 start;      /* `now' at elapsed 0 */
    uint64_t                   duration;   /* ms simulated */
    uint64_t                   jitter;     /* the timer fires up to this late */
    uint64_t                   audio;      /* ms of audio queued at 0 */
    ngx_uint_t                 speed;      /* producer's pace, % real time */
    ngx_uint_t                 barge;      /* % of utterances cut short */
    uint64_t                   tick;       /* client time per sample: 1000 */
    uint64_t                   fwd;        /* ms from us to the client */
    uint64_t                   back;       /* ms from the gateway to us */
    ngx_uint_t                 marks;      /* the gateway confirms frames */
    uint64_t                   seed;
} test_po_conf_t;


typedef struct {
    uint64_t                   sends;
    uint64_t                   frames;
    uint64_t                   gaps;       /* client ran dry, then got audio */
    uint64_t                   starved;    /* ... though audio was waiting */
    uint64_t                   drops;
    uint64_t                   confirms;
    uint64_t                   max_ahead;  /* sent - client played, at sends */
    uint64_t                   late_ahead; /* the same once marks settled */
    uint64_t                   over;       /* model - client, once settled */
    uint64_t                   under;      /* client - model, once settled */
    int64_t                    pace_lo;    /* sent - elapsed * rate */
    int64_t                    pace_hi;
    uint64_t                   produced;
    uint64_t                   sent;
    uint64_t                   queued;
    uint64_t                   hash;
} test_po_stats_t;


typedef struct {
    uint64_t                   at;         /* elapsed ms */
    uint64_t                   n;          /* samples, or a position */
    ngx_uint_t                 prompt;     /* sent as soon as it was there */
} test_po_event_t;


typedef struct {
    test_po_event_t            ev[TEST_PO_FIFO];
    ngx_uint_t                 head;
    ngx_uint_t                 len;
} test_po_fifo_t;


/*
 * The client.  Time is kept as ms * rate, so a sample lasts `tick' units
 * (1000 when its clock is exact) and nothing is ever rounded.
 */

typedef struct {
    uint64_t                   rate;
    uint64_t                   tick;
    uint64_t                   received;
    uint64_t                   seg;        /* received when it (re)started */
    uint64_t                   seg_at;     /* and when */
} test_po_client_t;


typedef struct {
    test_po_conf_t            *conf;
    ngx_http_voice_playout_t   p;
    test_po_client_t           client;
    test_po_fifo_t             arrivals;
    test_po_fifo_t             marks;
    uint64_t                   rnd;
    uint64_t                   t;
    uint64_t                   queued;
    uint64_t                   avail;      /* when a whole frame got queued */
    uint64_t                   timer;
    uint64_t                   produce;
    uint64_t                   cut;
    uint64_t                   left;       /* of the utterance being made */
    uint64_t                   played;     /* last played() */
    uint64_t                   settle;     /* from here marks have taken hold */
    ngx_uint_t                 exact;      /* the model must equal the client */
    test_po_stats_t            st;
} test_po_sim_t;


static uint64_t
test_po_rand(uint64_t *s)
{
    uint64_t  z;

    /* splitmix64: small and seedable */

    *s += 0x9e3779b97f4a7c15ULL;
    z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


static uint64_t
test_po_below(uint64_t *s, uint64_t n)
{
    return n ? test_po_rand(s) % n : 0;
}


static void
test_po_mix(uint64_t *h, uint64_t v)
{
    *h = (*h ^ v) * 0x100000001b3ULL;
}


static void
test_po_push(test_po_fifo_t *f, uint64_t at, uint64_t n, ngx_uint_t prompt)
{
    test_po_event_t  *e;

    assert_true(f->len < TEST_PO_FIFO);

    e = &f->ev[(f->head + f->len) % TEST_PO_FIFO];
    e->at = at;
    e->n = n;
    e->prompt = prompt;
    f->len++;
}


static test_po_event_t *
test_po_peek(test_po_fifo_t *f)
{
    return f->len ? &f->ev[f->head] : NULL;
}


static void
test_po_pop(test_po_fifo_t *f)
{
    f->head = (f->head + 1) % TEST_PO_FIFO;
    f->len--;
}


static uint64_t
test_po_client_end(test_po_client_t *c)
{
    return c->seg_at + (c->received - c->seg) * c->tick;
}


static uint64_t
test_po_client_played(test_po_client_t *c, uint64_t t)
{
    uint64_t  now;

    now = t * c->rate;

    if (now >= test_po_client_end(c)) {
        return c->received;
    }

    return c->seg + (now - c->seg_at) / c->tick;
}


/* n samples arrive at t: returns 1 if the client had run dry before */

static ngx_uint_t
test_po_client_receive(test_po_client_t *c, uint64_t t, uint64_t n)
{
    uint64_t    now, end;
    ngx_uint_t  gap;

    now = t * c->rate;
    end = test_po_client_end(c);
    gap = (now > end);

    if (now >= end) {
        c->seg = c->received;
        c->seg_at = now;
    }

    c->received += n;

    return gap;
}


static uint64_t
test_po_client_drop(test_po_client_t *c, uint64_t t)
{
    uint64_t  played;

    played = test_po_client_played(c, t);

    c->received = played;
    c->seg = played;
    c->seg_at = t * c->rate;

    return played;
}


static ngx_msec_t
test_po_now(test_po_sim_t *s)
{
    return s->conf->start + (ngx_msec_t) s->t;
}


static void
test_po_arrive(test_po_sim_t *s)
{
    uint64_t          end;
    test_po_event_t  *e;

    while ((e = test_po_peek(&s->arrivals)) != NULL && e->at <= s->t) {

        if (test_po_client_receive(&s->client, e->at, e->n)) {
            s->st.gaps++;

            if (!e->prompt) {
                s->st.starved++;
            }
        }

        if (s->conf->marks) {
            /* the gateway reports the frame once it has played */
            end = test_po_client_end(&s->client);
            test_po_push(&s->marks,
                         (end + s->client.rate - 1) / s->client.rate
                         + s->conf->back,
                         s->client.received, 0);
        }

        test_po_pop(&s->arrivals);
    }
}


static void
test_po_pump(test_po_sim_t *s)
{
    uint64_t     n, bytes, played, ahead;
    ngx_msec_t   now, w;
    ngx_uint_t   frame;

    now = test_po_now(s);
    frame = s->p.frame;

    n = ngx_http_voice_playout_ready(&s->p, now, s->queued);

    if (n) {
        bytes = n * frame;
        assert_true(bytes <= s->queued);

        ngx_http_voice_playout_sent(&s->p, now, bytes);
        s->queued -= bytes;
        s->st.sent += bytes;
        assert_int_equal(s->p.sent, s->st.sent);

        test_po_push(&s->arrivals, s->t + s->conf->fwd, bytes,
                     s->t == s->avail);
        test_po_arrive(s);

        s->st.sends++;
        s->st.frames += n;
        test_po_mix(&s->st.hash, s->t);
        test_po_mix(&s->st.hash, n);

        /* the scheduler's own view: never more than the lead ahead */
        played = ngx_http_voice_playout_played(&s->p, now);
        assert_true(s->p.sent - played <= s->p.lead);

        ahead = s->st.sent - test_po_client_played(&s->client, s->t);
        s->st.max_ahead = ngx_max(s->st.max_ahead, ahead);

        if (s->t >= s->settle) {
            s->st.late_ahead = ngx_max(s->st.late_ahead, ahead);
        }
    }

    if (s->queued < frame) {
        s->timer = TEST_PO_NEVER;
        return;
    }

    /* everything allowed went: the next frame waits for the timer */

    assert_int_equal(ngx_http_voice_playout_ready(&s->p, now, s->queued), 0);

    w = ngx_http_voice_playout_wait(&s->p, now);
    assert_true(w >= 1);

    assert_int_equal(ngx_http_voice_playout_ready(&s->p, now + w - 1,
                                                  s->queued), 0);
    assert_true(ngx_http_voice_playout_ready(&s->p, now + w, s->queued) >= 1);

    s->timer = s->t + w + test_po_below(&s->rnd, s->conf->jitter + 1);
}


static void
test_po_produce(test_po_sim_t *s)
{
    uint64_t  period, c, frames, before;

    if (s->left == 0) {
        /* a new utterance of 0.1 s to 8 s */
        frames = 5 + test_po_below(&s->rnd, 396);
        s->left = frames * s->p.frame;

        if (test_po_below(&s->rnd, 100) < s->conf->barge) {
            s->cut = s->t + test_po_below(&s->rnd,
                                          frames * TEST_PO_FRAME_MS * 2);
        }
    }

    period = 5 + test_po_below(&s->rnd, 76);
    c = period * s->conf->rate / 1000 * s->conf->speed / 100;
    c = c / 2 + test_po_below(&s->rnd, c + 1);
    c = ngx_max(c, 1);
    c = ngx_min(c, s->left);

    before = s->queued;
    s->queued += c;
    s->left -= c;
    s->st.produced += c;

    if (before < s->p.frame && s->queued >= s->p.frame) {
        s->avail = s->t;
    }

    if (s->left) {
        s->produce = s->t + period;
        return;
    }

    /*
     * The next one comes after a pause, sometimes none; mostly once what
     * is queued has played (the user answers), sometimes straight on.
     */

    s->produce = s->t + (test_po_below(&s->rnd, 4) == 0
                         ? 0 : test_po_below(&s->rnd, 3000));

    if (test_po_below(&s->rnd, 3)) {
        s->produce += s->queued * 1000 / s->conf->rate;
    }
}


static void
test_po_barge(test_po_sim_t *s)
{
    uint64_t  v;

    v = ngx_http_voice_playout_drop(&s->p, test_po_now(s));

    /* only exact runs barge in: the client is where the model is */
    assert_int_equal(v, test_po_client_played(&s->client, s->t));
    assert_int_equal(v, test_po_client_drop(&s->client, s->t));
    assert_int_equal(s->p.sent, v);
    assert_true(v >= s->played);

    s->st.sent = v;
    s->queued = 0;
    s->left = 0;
    s->cut = TEST_PO_NEVER;
    s->timer = TEST_PO_NEVER;
    s->produce = s->t + test_po_below(&s->rnd, 2000);

    s->st.drops++;
    test_po_mix(&s->st.hash, v);
}


static void
test_po_check(test_po_sim_t *s)
{
    uint64_t  played, client, elapsed;

    played = ngx_http_voice_playout_played(&s->p, test_po_now(s));
    client = test_po_client_played(&s->client, s->t);

    assert_true(played >= s->played);
    assert_true(played <= s->p.sent);
    s->played = played;

    if (s->exact) {
        assert_int_equal(played, client);
    }

    if (s->t >= s->settle) {
        if (played > client) {
            s->st.over = ngx_max(s->st.over, played - client);

        } else {
            s->st.under = ngx_max(s->st.under, client - played);
        }
    }

    if (s->queued >= s->p.frame) {
        elapsed = s->t * s->conf->rate / 1000;
        s->st.pace_lo = ngx_min(s->st.pace_lo,
                                (int64_t) (s->st.sent - elapsed));
        s->st.pace_hi = ngx_max(s->st.pace_hi,
                                (int64_t) (s->st.sent - elapsed));
    }
}


static void
test_po_run(test_po_conf_t *conf, test_po_stats_t *st)
{
    uint64_t          next;
    ngx_uint_t        pump;
    test_po_sim_t    *s;
    test_po_event_t  *e;

    s = calloc(1, sizeof(test_po_sim_t));
    assert_non_null(s);

    s->conf = conf;
    s->rnd = conf->seed;
    s->client.rate = conf->rate;
    s->client.tick = conf->tick ? conf->tick : 1000;
    s->exact = (conf->fwd == 0 && s->client.tick == 1000 && !conf->marks);
    s->timer = TEST_PO_NEVER;
    s->produce = TEST_PO_NEVER;
    s->cut = TEST_PO_NEVER;
    s->settle = conf->marks ? TEST_PO_NEVER : 0;
    s->st.pace_lo = INT64_MAX;
    s->st.pace_hi = INT64_MIN;
    s->st.hash = 0xcbf29ce484222325ULL;

    ngx_http_voice_playout_init(&s->p, conf->rate, TEST_PO_FRAME_MS,
                                conf->lead_ms);

    if (conf->audio) {
        s->queued = conf->audio * conf->rate / 1000 / s->p.frame
                    * s->p.frame;
        s->st.produced = s->queued;
        test_po_pump(s);
    }

    if (conf->speed) {
        s->produce = 0;
    }

    for ( ;; ) {
        next = ngx_min(s->timer, s->produce);
        next = ngx_min(next, s->cut);

        e = test_po_peek(&s->arrivals);
        if (e) {
            next = ngx_min(next, e->at);
        }

        e = test_po_peek(&s->marks);
        if (e) {
            next = ngx_min(next, e->at);
        }

        if (next > conf->duration) {
            break;
        }

        assert_true(next >= s->t);
        s->t = next;
        pump = 0;

        test_po_arrive(s);

        while ((e = test_po_peek(&s->marks)) != NULL && e->at <= s->t) {
            ngx_http_voice_playout_confirm(&s->p, test_po_now(s), e->n);
            test_po_pop(&s->marks);

            if (s->st.confirms++ == 0) {
                /* the model holds at most fwd + back, then a frame */
                s->settle = s->t + conf->fwd + conf->back
                            + TEST_PO_FRAME_MS + 1;
            }

            pump = 1;
        }

        if (s->cut <= s->t) {
            test_po_barge(s);
        }

        if (s->produce <= s->t) {
            test_po_produce(s);
            pump = 1;
        }

        if (s->timer <= s->t || pump) {
            test_po_pump(s);
        }

        test_po_check(s);
    }

    s->st.queued = s->queued;
    *st = s->st;

    free(s);
}


static void
test_po_conf(test_po_conf_t *c, ngx_uint_t rate, ngx_msec_t lead_ms)
{
    ngx_memzero(c, sizeof(test_po_conf_t));

    c->rate = rate;
    c->lead_ms = lead_ms;
    c->start = 1000;
    c->tick = 1000;
    c->seed = rate * 1000 + lead_ms;
}


static const ngx_uint_t  test_po_rates[] = { 8000, 16000, 24000, 48000 };
static const ngx_msec_t  test_po_leads[] = { 20, 40, 60, 100, 200 };


/* ---- the scheduler alone ------------------------------------------------ */


static void
test_init(void **state)
{
    ngx_uint_t                i;
    ngx_http_voice_playout_t  p;

    (void) state;

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {
        ngx_http_voice_playout_init(&p, test_po_rates[i], 20, 100);

        assert_int_equal(p.rate, test_po_rates[i]);
        assert_int_equal(p.frame, test_po_rates[i] / 50);
        assert_int_equal(p.lead, test_po_rates[i] / 10);
        assert_int_equal(p.sent, 0);
        assert_int_equal(p.base, 0);
    }

    /* an idle client takes the whole lead at once, whatever the time */

    ngx_http_voice_playout_init(&p, 16000, 20, 100);
    assert_int_equal(ngx_http_voice_playout_played(&p, 0), 0);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 0, 100000), 5);
    assert_int_equal(ngx_http_voice_playout_ready(&p, TEST_PO_TOP, 100000),
                     5);
    assert_int_equal(ngx_http_voice_playout_ready(&p, (ngx_msec_t) -1,
                                                  100000), 5);
    assert_int_equal(ngx_http_voice_playout_ready(&p,
                         (ngx_msec_t) NGX_MAX_INT_T_VALUE + 7, 100000), 5);
    assert_int_equal(ngx_http_voice_playout_wait(&p, TEST_PO_TOP), 0);
    assert_int_equal(ngx_http_voice_playout_played(&p, TEST_PO_TOP), 0);
}


static void
test_degenerate(void **state)
{
    ngx_http_voice_playout_t  p;

    (void) state;

    ngx_http_voice_playout_init(&p, 8000, 20, 60);

    /* less than a frame waits, whatever the room */
    assert_int_equal(ngx_http_voice_playout_ready(&p, 5, 0), 0);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 5, 1), 0);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 5, 159), 0);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 5, 160), 1);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 5, 319), 1);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 5, 100000), 3);

    /* a lead below a frame is one frame: one in flight, no more */

    ngx_http_voice_playout_init(&p, 8000, 20, 5);
    assert_int_equal(p.lead, p.frame);

    ngx_http_voice_playout_init(&p, 8000, 20, 0);
    assert_int_equal(p.lead, p.frame);

    assert_int_equal(ngx_http_voice_playout_ready(&p, 100, 100000), 1);
    ngx_http_voice_playout_sent(&p, 100, 160);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 100, 100000), 0);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 119, 100000), 0);
    assert_int_equal(ngx_http_voice_playout_wait(&p, 100), 20);
    assert_int_equal(ngx_http_voice_playout_wait(&p, 119), 1);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 120, 100000), 1);
    assert_int_equal(ngx_http_voice_playout_wait(&p, 120), 0);

    /* a leftover smaller than a frame never goes on its own */
    assert_int_equal(ngx_http_voice_playout_ready(&p, 500, 159), 0);

    /* sending nothing changes nothing */
    ngx_http_voice_playout_sent(&p, 130, 0);
    assert_int_equal(p.sent, 160);
    assert_int_equal(p.base_ms, 100);

    /* no rate or no frame length: guarded rather than divided by */

    ngx_http_voice_playout_init(&p, 0, 20, 100);
    assert_true(p.rate > 0 && p.frame > 0 && p.lead >= p.frame);

    ngx_http_voice_playout_init(&p, 16000, 0, 100);
    assert_int_equal(p.frame, 1);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 0, 100000), 1600);
}


static void
test_played_clock(void **state)
{
    ngx_uint_t                i, r;
    ngx_msec_t                t0;
    ngx_http_voice_playout_t  p;

    (void) state;

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {
        r = test_po_rates[i];
        t0 = 77777;

        ngx_http_voice_playout_init(&p, r, 20, 200);
        ngx_http_voice_playout_sent(&p, t0, 10 * p.frame);

        /* the first sample plays the moment it arrives */
        assert_int_equal(ngx_http_voice_playout_played(&p, t0), 0);
        assert_int_equal(ngx_http_voice_playout_played(&p, t0 + 1), r / 1000);
        assert_int_equal(ngx_http_voice_playout_played(&p, t0 + 137),
                         137 * r / 1000);

        /* all of it has played after 200 ms, and never more */
        assert_int_equal(ngx_http_voice_playout_played(&p, t0 + 199),
                         199 * r / 1000);
        assert_int_equal(ngx_http_voice_playout_played(&p, t0 + 200),
                         10 * p.frame);
        assert_int_equal(ngx_http_voice_playout_played(&p, t0 + 100000),
                         10 * p.frame);

        /* a time before the anchor counts as the anchor */
        assert_int_equal(ngx_http_voice_playout_played(&p, t0 - 1), 0);
        assert_int_equal(ngx_http_voice_playout_played(&p, t0 - 5000), 0);
    }

    /* a rate that is no multiple of 1000 rounds down */

    ngx_http_voice_playout_init(&p, 22050, 20, 200);
    ngx_http_voice_playout_sent(&p, 10, 441 * 5);
    assert_int_equal(ngx_http_voice_playout_played(&p, 11), 22);
    assert_int_equal(ngx_http_voice_playout_played(&p, 13), 66);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1010), 441 * 5);
}


static void
test_reanchor_after_gap(void **state)
{
    ngx_http_voice_playout_t  p;

    (void) state;

    ngx_http_voice_playout_init(&p, 16000, 20, 60);

    ngx_http_voice_playout_sent(&p, 1000, 320);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1020), 320);

    /* 480 ms of silence: the next frame starts when it arrives */
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1500, 320), 1);
    assert_int_equal(ngx_http_voice_playout_wait(&p, 1500), 0);
    ngx_http_voice_playout_sent(&p, 1500, 320);
    assert_int_equal(p.base, 320);
    assert_int_equal(p.base_ms, 1500);

    assert_int_equal(ngx_http_voice_playout_played(&p, 1500), 320);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1510), 480);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1520), 640);

    /* the idle client takes the whole lead again */
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1520, 100000), 3);

    /* ending exactly as the next frame arrives is no gap, either way */
    ngx_http_voice_playout_sent(&p, 1520, 320);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1530), 800);
}


static void
test_continuous_keeps_anchor(void **state)
{
    ngx_msec_t                t;
    ngx_http_voice_playout_t  p;

    (void) state;

    ngx_http_voice_playout_init(&p, 48000, 20, 40);

    ngx_http_voice_playout_sent(&p, 500, 960);
    ngx_http_voice_playout_sent(&p, 500, 960);

    /* each frame goes when one has played, the anchor stays put */

    for (t = 520; t < 520 + 60000; t += 20) {
        assert_int_equal(ngx_http_voice_playout_ready(&p, t, 1000000), 1);
        assert_int_equal(ngx_http_voice_playout_wait(&p, t - 1), 1);
        ngx_http_voice_playout_sent(&p, t, 960);

        assert_int_equal(p.base_ms, 500);
        assert_int_equal(ngx_http_voice_playout_played(&p, t),
                         (uint64_t) (t - 500) * 48);
        assert_int_equal(ngx_http_voice_playout_wait(&p, t), 20);
    }
}


static void
test_ready_wait_random(void **state)
{
    uint64_t                  rnd, played, last, c, v;
    ngx_uint_t                i, k, n, op;
    ngx_msec_t                now, w;
    ngx_http_voice_playout_t  p;

    (void) state;

    rnd = 42;

    for (k = 0; k < 200; k++) {
        ngx_http_voice_playout_init(&p,
                     test_po_rates[test_po_below(&rnd, 4)], 20,
                     test_po_below(&rnd, 250));

        now = (k & 1) ? TEST_PO_TOP + test_po_below(&rnd, 40000)
                      : test_po_below(&rnd, 1000000);
        last = 0;

        for (i = 0; i < 2000; i++) {
            now += test_po_below(&rnd, 4) ? test_po_below(&rnd, 30)
                                          : test_po_below(&rnd, 400);
            op = test_po_below(&rnd, 20);

            played = ngx_http_voice_playout_played(&p, now);
            assert_true(played >= last);
            assert_true(played <= p.sent);
            last = played;

            if (op == 0) {
                v = ngx_http_voice_playout_drop(&p, now);
                assert_int_equal(v, played);
                assert_int_equal(p.sent, played);
                continue;
            }

            if (op < 4) {
                /* a gateway near the model, before or after it */
                c = played + test_po_below(&rnd, 2 * p.frame + 1);
                c = (c > p.frame) ? c - p.frame : 0;
                ngx_http_voice_playout_confirm(&p, now, c);

                v = ngx_http_voice_playout_played(&p, now);
                assert_true(v >= played);
                assert_true(v <= p.sent);

                if (c >= played) {
                    assert_int_equal(v, ngx_min(c, p.sent));
                }

                last = v;
            }

            /* the timer fires: ready now exactly when wait says so */

            w = ngx_http_voice_playout_wait(&p, now);
            n = ngx_http_voice_playout_ready(&p, now, 10000000);

            if (w == 0) {
                assert_true(n >= 1);

            } else {
                assert_int_equal(n, 0);
                assert_int_equal(ngx_http_voice_playout_ready(&p, now + w - 1,
                                                              10000000), 0);
                assert_true(ngx_http_voice_playout_ready(&p, now + w,
                                                         10000000) >= 1);
            }

            if (n && test_po_below(&rnd, 4)) {
                ngx_http_voice_playout_sent(&p, now, n * p.frame);

                assert_int_equal(ngx_http_voice_playout_ready(&p, now,
                                                              10000000), 0);
                assert_true(p.sent - ngx_http_voice_playout_played(&p, now)
                            <= p.lead);
            }
        }
    }
}


static void
test_drop(void **state)
{
    ngx_http_voice_playout_t  p;

    (void) state;

    ngx_http_voice_playout_init(&p, 24000, 20, 100);

    ngx_http_voice_playout_sent(&p, 2000, 5 * 480);

    /* 33 ms in: the client played 792 samples, the rest is discarded */
    assert_int_equal(ngx_http_voice_playout_drop(&p, 2033), 792);
    assert_int_equal(p.sent, 792);
    assert_int_equal(ngx_http_voice_playout_played(&p, 2033), 792);
    assert_int_equal(ngx_http_voice_playout_played(&p, 9000), 792);

    /* a second drop finds nothing more */
    assert_int_equal(ngx_http_voice_playout_drop(&p, 2040), 792);

    /* the client is idle: a new answer starts fresh, with the whole lead */
    assert_int_equal(ngx_http_voice_playout_ready(&p, 2050, 100000), 5);
    ngx_http_voice_playout_sent(&p, 2050, 5 * 480);
    assert_int_equal(ngx_http_voice_playout_played(&p, 2050), 792);
    assert_int_equal(ngx_http_voice_playout_played(&p, 2060), 792 + 240);

    /* a drop after everything played returns everything */
    assert_int_equal(ngx_http_voice_playout_drop(&p, 3000), 792 + 2400);
    assert_int_equal(p.sent, 792 + 2400);

    /* and one before anything was sent returns nothing */
    ngx_http_voice_playout_init(&p, 24000, 20, 100);
    assert_int_equal(ngx_http_voice_playout_drop(&p, 5), 0);
    assert_int_equal(p.sent, 0);
}


static void
test_confirm_ahead(void **state)
{
    ngx_http_voice_playout_t  p;

    (void) state;

    ngx_http_voice_playout_init(&p, 16000, 20, 100);
    ngx_http_voice_playout_sent(&p, 1000, 1600);

    assert_int_equal(ngx_http_voice_playout_played(&p, 1020), 320);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1020, 100000), 1);

    /* the client is 20 ms further than the model: move forward */

    ngx_http_voice_playout_confirm(&p, 1020, 640);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1020), 640);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1030), 800);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1020, 100000), 2);

    /* a confirmation past what was sent stops at what was sent */

    ngx_http_voice_playout_confirm(&p, 1040, 99999);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1040), 1600);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1100), 1600);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1040, 100000), 5);

    /* and the client, idle, starts the next frame when it arrives */
    ngx_http_voice_playout_sent(&p, 1050, 320);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1060), 1760);

    /* confirming the model exactly changes nothing */
    ngx_http_voice_playout_confirm(&p, 1060, 1760);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1065), 1840);
}


static void
test_confirm_behind(void **state)
{
    ngx_msec_t                t;
    ngx_http_voice_playout_t  p;

    (void) state;

    ngx_http_voice_playout_init(&p, 16000, 20, 200);
    ngx_http_voice_playout_sent(&p, 1000, 3200);

    assert_int_equal(ngx_http_voice_playout_played(&p, 1100), 1600);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1100, 100000), 5);

    /*
     * The gateway says the client is 20 ms behind.  played() does not go
     * back; it holds until the client catches up, then runs on in step
     * with the gateway; the 20 ms the client still has count as ahead.
     */

    ngx_http_voice_playout_confirm(&p, 1100, 1280);

    assert_int_equal(ngx_http_voice_playout_played(&p, 1100), 1600);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1100, 100000), 4);
    assert_int_equal(ngx_http_voice_playout_wait(&p, 1100), 0);

    for (t = 1100; t <= 1120; t++) {
        assert_int_equal(ngx_http_voice_playout_played(&p, t), 1600);
    }

    for (t = 1120; t <= 1200; t++) {
        assert_int_equal(ngx_http_voice_playout_played(&p, t),
                         1280 + (t - 1100) * 16);
    }

    /* the lead holds on what the gateway said */

    ngx_http_voice_playout_sent(&p, 1100, 4 * 320);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1100, 100000), 0);
    assert_int_equal(ngx_http_voice_playout_wait(&p, 1100), 20);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1119, 100000), 0);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1120, 100000), 1);

    /* the client has all 40 ms left: a frame may go once 20 ms played */

    ngx_http_voice_playout_init(&p, 8000, 20, 40);
    ngx_http_voice_playout_sent(&p, 0, 320);
    ngx_http_voice_playout_confirm(&p, 30, 0);

    assert_int_equal(ngx_http_voice_playout_played(&p, 30), 240);
    assert_int_equal(ngx_http_voice_playout_played(&p, 60), 240);
    assert_int_equal(ngx_http_voice_playout_played(&p, 61), 248);
    assert_int_equal(ngx_http_voice_playout_wait(&p, 30), 20);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 49, 1000), 0);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 50, 1000), 1);

    /* more sent than the room: ready only some time after the hold */

    ngx_http_voice_playout_init(&p, 8000, 20, 60);
    ngx_http_voice_playout_sent(&p, 0, 480);
    ngx_http_voice_playout_confirm(&p, 10, 0);

    assert_int_equal(ngx_http_voice_playout_played(&p, 20), 80);
    assert_int_equal(ngx_http_voice_playout_played(&p, 21), 88);
    assert_int_equal(ngx_http_voice_playout_wait(&p, 10), 20);
    assert_int_equal(ngx_http_voice_playout_wait(&p, 20), 10);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 29, 1000), 0);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 30, 1000), 1);
}


static void
test_confirm_stale(void **state)
{
    ngx_msec_t                t;
    uint64_t                  last, v;
    ngx_http_voice_playout_t  p;

    (void) state;

    ngx_http_voice_playout_init(&p, 16000, 20, 200);
    ngx_http_voice_playout_sent(&p, 1000, 3200);
    ngx_http_voice_playout_confirm(&p, 1100, 1280);

    /*
     * A lower one than before: the client fell further behind.  played()
     * still never goes below the model, nor below the first confirmation.
     */

    ngx_http_voice_playout_confirm(&p, 1105, 1200);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1105), 1600);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1130), 1600);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1131), 1616);

    /* a confirmation of zero, or of anything, never takes played back */

    last = ngx_http_voice_playout_played(&p, 1131);

    for (t = 1131; t < 1400; t += 7) {
        ngx_http_voice_playout_confirm(&p, t, (t * 7919) % 3000);

        v = ngx_http_voice_playout_played(&p, t);
        assert_true(v >= last);
        assert_true(v <= p.sent);
        last = v;
    }

    ngx_http_voice_playout_confirm(&p, 1400, 0);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1400), last);
}


static void
test_confirm_hold_then_send(void **state)
{
    ngx_http_voice_playout_t  p;

    (void) state;

    ngx_http_voice_playout_init(&p, 16000, 20, 100);
    ngx_http_voice_playout_sent(&p, 1000, 320);

    /* the model finished, the gateway says the client has 10 ms left */
    ngx_http_voice_playout_confirm(&p, 1020, 160);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1020), 320);

    /* a frame sent now plays after that backlog, not at once */

    assert_int_equal(ngx_http_voice_playout_ready(&p, 1025, 100000), 4);
    ngx_http_voice_playout_sent(&p, 1025, 320);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1030), 320);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1040), 480);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1050), 640);

    /* a barge-in during a hold reports the model and clears the hold */

    ngx_http_voice_playout_init(&p, 16000, 20, 100);
    ngx_http_voice_playout_sent(&p, 1000, 1600);
    ngx_http_voice_playout_confirm(&p, 1020, 0);

    assert_int_equal(ngx_http_voice_playout_drop(&p, 1025), 320);
    assert_int_equal(p.sent, 320);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 1026, 100000), 5);

    ngx_http_voice_playout_sent(&p, 1026, 320);
    assert_int_equal(ngx_http_voice_playout_played(&p, 1036), 480);
}


static void
test_wrap_direct(void **state)
{
    ngx_msec_t                t0;
    ngx_http_voice_playout_t  p;

    (void) state;

    t0 = (ngx_msec_t) -1 - 9;

    ngx_http_voice_playout_init(&p, 8000, 20, 60);
    ngx_http_voice_playout_sent(&p, t0, 480);

    /* ten ms before the wrap, then after it */
    assert_int_equal(ngx_http_voice_playout_played(&p, t0 + 5), 40);
    assert_int_equal(ngx_http_voice_playout_played(&p, 0), 80);
    assert_int_equal(ngx_http_voice_playout_played(&p, 20), 240);
    assert_int_equal(ngx_http_voice_playout_played(&p, 50), 480);
    assert_int_equal(ngx_http_voice_playout_wait(&p, t0), 20);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 9, 10000), 0);
    assert_int_equal(ngx_http_voice_playout_ready(&p, 10, 10000), 1);

    /* a hold that ends past the wrap */

    ngx_http_voice_playout_confirm(&p, t0 + 5, 0);
    assert_int_equal(ngx_http_voice_playout_played(&p, t0 + 5), 40);
    assert_int_equal(ngx_http_voice_playout_played(&p, 0), 40);
    assert_int_equal(ngx_http_voice_playout_played(&p, 4), 72);
    assert_int_equal(ngx_http_voice_playout_wait(&p, t0 + 5), 20);

    /* a drop right at the wrap */
    assert_int_equal(ngx_http_voice_playout_drop(&p, (ngx_msec_t) -1), 40);
    ngx_http_voice_playout_sent(&p, 1, 160);
    assert_int_equal(ngx_http_voice_playout_played(&p, 11), 120);
}


static void
test_huge_values(void **state)
{
    ngx_uint_t                i;
    unsigned __int128         want;
    ngx_msec_int_t            d;
    ngx_http_voice_playout_t  p;

    static const ngx_msec_int_t  ds[] = {
        1, 999, 1000, 3600000, 36000000, 86400001, 1000000000007LL,
        NGX_MAX_INT_T_VALUE / 48000 - 1, NGX_MAX_INT_T_VALUE / 1000 + 3,
        NGX_MAX_INT_T_VALUE
    };

    (void) state;

    /* a stream of a hundred years at 48 kHz, anchored at its start */

    ngx_http_voice_playout_init(&p, 48000, 20, 100);
    p.sent = 48000ULL * 86400 * 365 * 100;
    p.base = 0;
    p.base_ms = 123;

    for (i = 0; i < sizeof(ds) / sizeof(ds[0]); i++) {
        d = ds[i];
        want = (unsigned __int128) d * 48000 / 1000;

        if (want > p.sent) {
            want = p.sent;
        }

        assert_true(ngx_http_voice_playout_played(&p, 123 + (ngx_msec_t) d)
                    == (uint64_t) want);
    }

    /* the wait for the last frame of it */
    assert_int_equal(ngx_http_voice_playout_wait(&p, 123),
                     (p.sent - (4800 - 960)) / 48);

    /* the same far into a stream that began late: base far from zero */

    p.base = UINT64_MAX / 2;
    p.sent = p.base + 48000ULL * 3600 * 10;
    assert_int_equal(ngx_http_voice_playout_played(&p, 123 + 3600000),
                     p.base + 48000ULL * 3600);
    assert_int_equal(ngx_http_voice_playout_played(&p, 122 + 36000000),
                     p.sent - 48);
    assert_int_equal(ngx_http_voice_playout_played(&p, 123 + 36000000),
                     p.sent);
}


/* ---- the scheduler driven like the session ------------------------------ */


static void
test_sim_paced(void **state)
{
    ngx_uint_t       i, j;
    test_po_conf_t   c;
    test_po_stats_t  st;

    (void) state;

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {
        for (j = 0; j < sizeof(test_po_leads) / sizeof(test_po_leads[0]);
             j++)
        {
            test_po_conf(&c, test_po_rates[i], test_po_leads[j]);
            c.audio = 180000;
            c.duration = 181000;

            test_po_run(&c, &st);

            /* never ahead of the client by more than the lead */
            assert_true(st.max_ahead <= c.rate * c.lead_ms / 1000);
            assert_true(st.max_ahead >= c.rate * c.lead_ms / 1000
                                        - c.rate / 50);

            /* at real-time pace: sent - elapsed * rate within the lead */
            assert_true(st.pace_lo >= 0);
            assert_true(st.pace_hi <= (int64_t) (c.rate * c.lead_ms / 1000));

            /* the client never ran dry, and got everything */
            assert_int_equal(st.gaps, 0);
            assert_int_equal(st.starved, 0);
            assert_int_equal(st.queued, 0);
            assert_int_equal(st.sent, st.produced);
            assert_int_equal(st.frames, 180000 / 20);
        }
    }
}


static void
test_sim_jitter(void **state)
{
    ngx_uint_t       i, j;
    test_po_conf_t   c;
    test_po_stats_t  st;

    (void) state;

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {
        for (j = 1; j < sizeof(test_po_leads) / sizeof(test_po_leads[0]);
             j++)
        {
            test_po_conf(&c, test_po_rates[i], test_po_leads[j]);
            c.audio = 120000;
            c.duration = 121000;
            c.jitter = 15;

            test_po_run(&c, &st);

            assert_int_equal(st.gaps, 0);
            assert_int_equal(st.starved, 0);
            assert_true(st.max_ahead <= c.rate * c.lead_ms / 1000);
            assert_true(st.pace_lo >= 0);
            assert_int_equal(st.sent, st.produced);
        }
    }
}


static void
test_sim_jitter_short_lead(void **state)
{
    ngx_uint_t       i;
    test_po_conf_t   c;
    test_po_stats_t  st;

    (void) state;

    /*
     * One frame of lead cannot absorb a late timer: the client runs dry.
     * This shows the harness does see a client running dry.
     */

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {
        test_po_conf(&c, test_po_rates[i], 20);
        c.audio = 60000;
        c.duration = 100000;
        c.jitter = 15;

        test_po_run(&c, &st);

        assert_true(st.gaps > 100);
        assert_int_equal(st.starved, st.gaps);

        /* still never more than the lead ahead, and everything went */
        assert_true(st.max_ahead <= c.rate / 50);
        assert_int_equal(st.sent, st.produced);
    }
}


static void
test_sim_bursty(void **state)
{
    ngx_uint_t       i, j, k;
    test_po_conf_t   c;
    test_po_stats_t  st;

    static const ngx_uint_t  speeds[] = { 60, 100, 150, 400 };

    (void) state;

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {
        for (j = 0; j < sizeof(test_po_leads) / sizeof(test_po_leads[0]);
             j++)
        {
            for (k = 0; k < sizeof(speeds) / sizeof(speeds[0]); k++) {
                test_po_conf(&c, test_po_rates[i], test_po_leads[j]);
                c.speed = speeds[k];
                c.duration = 120000;
                c.seed += k;

                test_po_run(&c, &st);

                /*
                 * Pauses and a slow producer leave the client idle and
                 * restart it; never while a whole frame was waiting.
                 */

                assert_true(st.gaps > 5);
                assert_int_equal(st.starved, 0);
                assert_true(st.max_ahead <= c.rate * c.lead_ms / 1000);
                assert_int_equal(st.produced, st.sent + st.queued);
            }
        }
    }
}


static void
test_sim_barge_in(void **state)
{
    ngx_uint_t       i, j;
    test_po_conf_t   c;
    test_po_stats_t  st;

    (void) state;

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {
        for (j = 0; j < sizeof(test_po_leads) / sizeof(test_po_leads[0]);
             j++)
        {
            test_po_conf(&c, test_po_rates[i], test_po_leads[j]);
            c.speed = 300;
            c.barge = 60;
            c.duration = 240000;
            c.jitter = (j & 1) ? 15 : 0;

            /* drop() == the client's position is asserted at each one */
            test_po_run(&c, &st);

            assert_true(st.drops > 10);
            assert_true(st.max_ahead <= c.rate * c.lead_ms / 1000);

            if (c.jitter == 0 || c.lead_ms >= 40) {
                assert_int_equal(st.starved, 0);
            }
        }
    }
}


static void
test_sim_gateway_delay(void **state)
{
    uint64_t         lead, ms;
    ngx_uint_t       i, j;
    test_po_conf_t   c;
    test_po_stats_t  st;

    (void) state;

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {
        for (j = 2; j < sizeof(test_po_leads) / sizeof(test_po_leads[0]);
             j++)
        {
            test_po_conf(&c, test_po_rates[i], test_po_leads[j]);
            c.audio = 120000;
            c.duration = 130000;
            c.fwd = 10;
            c.back = 10;
            c.marks = 1;

            test_po_run(&c, &st);

            lead = c.rate * c.lead_ms / 1000;
            ms = c.rate / 1000;

            assert_true(st.confirms > 5000);

            /*
             * The client never ran dry (the one gap is its start, the
             * network away) and is kept within the lead.
             */

            assert_int_equal(st.gaps, 1);
            assert_int_equal(st.starved, 0);
            assert_true(st.late_ahead <= lead + c.rate / 50);

            /*
             * Once the marks took hold, played() never claims what the
             * client has not played (the mark's ms, rounded up, aside),
             * and lags it by about the way back.
             */

            assert_true(st.over <= ms);
            assert_true(st.under <= (c.back + 2) * ms);
            assert_true(st.under >= (c.back - 1) * ms);
            assert_int_equal(st.sent, st.produced);
        }
    }
}


static void
test_sim_gateway_fast_client(void **state)
{
    ngx_uint_t       i;
    test_po_conf_t   c;
    test_po_stats_t  st;

    (void) state;

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {

        /* the client's clock runs 1% fast: the marks keep it fed */

        test_po_conf(&c, test_po_rates[i], 40);
        c.audio = 120000;
        c.duration = 130000;
        c.tick = 990;
        c.marks = 1;

        test_po_run(&c, &st);

        assert_int_equal(st.gaps, 0);
        assert_true(st.confirms > 5000);
        assert_true(st.max_ahead <= c.rate * 40 / 1000);

        /* without them it runs dry, again and again */

        c.marks = 0;
        test_po_run(&c, &st);

        assert_true(st.starved > 100);
    }
}


static void
test_sim_gateway_slow_client(void **state)
{
    uint64_t         lead;
    ngx_uint_t       i;
    test_po_conf_t   c;
    test_po_stats_t  st;

    (void) state;

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {

        /* the client's clock runs 1% slow: the marks hold us back */

        test_po_conf(&c, test_po_rates[i], 60);
        c.audio = 120000;
        c.duration = 200000;
        c.tick = 1010;
        c.marks = 1;

        test_po_run(&c, &st);

        lead = c.rate * 60 / 1000;

        assert_int_equal(st.gaps, 0);
        assert_true(st.late_ahead <= lead + c.rate / 50);
        assert_true(st.over <= c.rate / 1000);
        assert_int_equal(st.sent, st.produced);

        /* without them the client's buffer grows without bound */

        c.marks = 0;
        test_po_run(&c, &st);

        assert_true(st.max_ahead > lead + c.rate);
    }
}


static void
test_sim_wrap(void **state)
{
    ngx_uint_t       i;
    test_po_conf_t   c;
    test_po_stats_t  low, top;

    (void) state;

    /* the same session, started far from and close to the wrap */

    for (i = 0; i < sizeof(test_po_rates) / sizeof(test_po_rates[0]); i++) {
        test_po_conf(&c, test_po_rates[i], 60);
        c.speed = 250;
        c.barge = 40;
        c.jitter = 15;
        c.duration = 120000;

        c.start = 1000;
        test_po_run(&c, &low);

        c.start = TEST_PO_TOP;
        test_po_run(&c, &top);

        assert_true(low.sends > 1000);
        assert_true(low.drops > 2);
        assert_int_equal(top.hash, low.hash);
        assert_int_equal(top.sends, low.sends);
        assert_int_equal(top.sent, low.sent);
        assert_int_equal(top.gaps, low.gaps);
        assert_int_equal(top.max_ahead, low.max_ahead);
        assert_int_equal(top.starved, 0);

        /* and a gateway's marks across the wrap */

        test_po_conf(&c, test_po_rates[i], 60);
        c.audio = 60000;
        c.duration = 70000;
        c.fwd = 10;
        c.back = 10;
        c.marks = 1;

        c.start = 1000;
        test_po_run(&c, &low);

        c.start = TEST_PO_TOP;
        test_po_run(&c, &top);

        assert_int_equal(top.hash, low.hash);
        assert_int_equal(top.under, low.under);
        assert_int_equal(top.gaps, 1);
        assert_int_equal(top.starved, 0);
    }
}


static void
test_sim_hours(void **state)
{
    test_po_conf_t   c;
    test_po_stats_t  st;

    (void) state;

    /* three hours of continuous audio at 48 kHz, started near the wrap */

    test_po_conf(&c, 48000, 100);
    c.audio = 3 * 3600000;
    c.duration = 3 * 3600000 + 1000;
    c.start = TEST_PO_TOP;
    c.jitter = 15;

    test_po_run(&c, &st);

    assert_int_equal(st.gaps, 0);
    assert_int_equal(st.frames, 3 * 3600000 / 20);
    assert_int_equal(st.sent, 48000ULL * 3 * 3600);
    assert_true(st.max_ahead <= 4800);
    assert_true(st.pace_lo >= 0);
    assert_true(st.pace_hi <= 4800);

    /* and two hours of talk with pauses and barge-ins at 8 kHz */

    test_po_conf(&c, 8000, 60);
    c.speed = 200;
    c.barge = 30;
    c.duration = 2 * 3600000;
    c.start = TEST_PO_TOP;

    test_po_run(&c, &st);

    assert_int_equal(st.starved, 0);
    assert_true(st.drops > 100);
    assert_true(st.max_ahead <= 480);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_played_clock),
        cmocka_unit_test(test_reanchor_after_gap),
        cmocka_unit_test(test_continuous_keeps_anchor),
        cmocka_unit_test(test_ready_wait_random),
        cmocka_unit_test(test_drop),
        cmocka_unit_test(test_confirm_ahead),
        cmocka_unit_test(test_confirm_behind),
        cmocka_unit_test(test_confirm_stale),
        cmocka_unit_test(test_confirm_hold_then_send),
        cmocka_unit_test(test_wrap_direct),
        cmocka_unit_test(test_huge_values),
        cmocka_unit_test(test_sim_paced),
        cmocka_unit_test(test_sim_jitter),
        cmocka_unit_test(test_sim_jitter_short_lead),
        cmocka_unit_test(test_sim_bursty),
        cmocka_unit_test(test_sim_barge_in),
        cmocka_unit_test(test_sim_gateway_delay),
        cmocka_unit_test(test_sim_gateway_fast_client),
        cmocka_unit_test(test_sim_gateway_slow_client),
        cmocka_unit_test(test_sim_wrap),
        cmocka_unit_test(test_sim_hours),
    };

    return cmocka_run_group_tests_name("ngx_http_voice_playout", tests,
                                       NULL, NULL);
}
