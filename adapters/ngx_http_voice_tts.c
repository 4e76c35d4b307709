
/*
 * The speech of a reply: its text cut into phrases, the phrases spoken by
 * an engine, the audio converted to the client's rate and queued for
 * paced playout, and a record of where each word ends in that audio, so
 * that a barge-in knows what the user heard.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_session.h"
#include "ngx_http_voice_media.h"
#include "ngx_http_voice_tts.h"


#define ngx_http_voice_tts_space(c)                                          \
    ((c) == ' ' || (c) == '\n' || (c) == '\t' || (c) == '\r')


/* audio is converted through a per-worker scratch buffer, in slices */
#define NGX_HTTP_VOICE_TTS_SLICE  2048       /* samples in */


static ngx_int_t ngx_http_voice_tts_next(ngx_http_voice_tts_t *tts);
static ngx_int_t ngx_http_voice_tts_play(ngx_http_voice_tts_t *tts,
    int16_t *pcm, size_t n);
static void ngx_http_voice_tts_anchor(ngx_http_voice_tts_t *tts,
    uint64_t sample, size_t offset);
static size_t ngx_http_voice_tts_word_end(ngx_http_voice_tts_t *tts,
    ngx_uint_t words);
static ngx_uint_t ngx_http_voice_tts_count_words(u_char *p, size_t len);
static ngx_int_t ngx_http_voice_tts_fail(ngx_http_voice_tts_t *tts,
    const char *message);
static ngx_int_t ngx_http_voice_tts_check(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_tts_overdue(ngx_event_t *ev);
static void ngx_http_voice_tts_cleanup(void *data);


static const ngx_http_voice_tts_engine_t  *ngx_http_voice_tts_engines[] = {
    [NGX_HTTP_VOICE_TTS_OFF] = NULL,
    [NGX_HTTP_VOICE_TTS_EMBEDDED] = &ngx_http_voice_tts_embedded,
    [NGX_HTTP_VOICE_TTS_CARTESIA] = &ngx_http_voice_tts_cartesia,
    [NGX_HTTP_VOICE_TTS_ELEVENLABS] = &ngx_http_voice_tts_elevenlabs,
    [NGX_HTTP_VOICE_TTS_OPENAI] = &ngx_http_voice_tts_openai,
};


static int16_t  ngx_http_voice_tts_in[NGX_HTTP_VOICE_TTS_SLICE];
static int16_t  ngx_http_voice_tts_out[NGX_HTTP_VOICE_TTS_SLICE * 6 + 64];


static ngx_conf_enum_t  ngx_http_voice_tts_names[] = {
    { ngx_string("off"), NGX_HTTP_VOICE_TTS_OFF },
    { ngx_string("embedded"), NGX_HTTP_VOICE_TTS_EMBEDDED },
    { ngx_string("cartesia"), NGX_HTTP_VOICE_TTS_CARTESIA },
    { ngx_string("elevenlabs"), NGX_HTTP_VOICE_TTS_ELEVENLABS },
    { ngx_string("openai"), NGX_HTTP_VOICE_TTS_OPENAI },
    { ngx_null_string, 0 }
};




ngx_http_voice_tts_t *
ngx_http_voice_tts_open(ngx_http_voice_tts_conf_t *conf, void *session,
    ngx_http_request_t *r, ngx_uint_t out_rate, ngx_uint_t quality)
{
    size_t                 size;
    ngx_pool_cleanup_t    *cln;
    ngx_http_voice_tts_t  *tts;

    tts = ngx_pcalloc(r->pool, sizeof(ngx_http_voice_tts_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    size = NGX_HTTP_VOICE_PHRASE_SIZE(conf->max_phrase);

    if (tts == NULL || cln == NULL) {
        return NULL;
    }

    tts->phrase_buf = ngx_palloc(r->pool, size);
    if (tts->phrase_buf == NULL) {
        return NULL;
    }

    (void) ngx_http_voice_phrase_init(&tts->phraser, tts->phrase_buf, size,
                                      conf->max_phrase);

    tts->engine = ngx_http_voice_tts_engines[conf->engine];
    tts->conf = conf;
    tts->session = session;
    tts->request = r;
    tts->pool = r->pool;
    tts->log = r->connection->log;
    tts->out_rate = out_rate;

    tts->timer.handler = ngx_http_voice_tts_overdue;
    tts->timer.data = tts;
    tts->timer.log = tts->log;
    tts->timer.cancelable = 1;

    if (tts->engine->open(tts) != NGX_OK) {
        return NULL;
    }

    if (ngx_http_voice_resampler_init(&tts->resampler, tts->rate, out_rate,
                                      quality)
        != NGX_OK)
    {
        tts->engine->close(tts);
        return NULL;
    }

    cln->handler = ngx_http_voice_tts_cleanup;
    cln->data = tts;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice: tts %s open, %ui Hz to %ui Hz", tts->engine->name,
                   tts->rate, out_rate);

    return tts;
}


/* a reply begins: nothing of the last one is left */

ngx_int_t
ngx_http_voice_tts_begin(ngx_http_voice_tts_t *tts, ngx_uint_t turn,
    ngx_str_t *reply)
{
    ngx_http_voice_tts_cancel(tts);

    tts->turn = turn;
    tts->reply = reply;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice: tts reply to turn %ui begins", turn);

    return NGX_OK;
}


/* the reply grew: its complete phrases go to the engine now */

ngx_int_t
ngx_http_voice_tts_text(ngx_http_voice_tts_t *tts)
{
    size_t  n;

    if (tts->turn == 0 || tts->failed || tts->ended) {
        return NGX_OK;
    }

    while (tts->fed < tts->reply->len) {
        n = ngx_http_voice_phrase_feed(&tts->phraser,
                                       tts->reply->data + tts->fed,
                                       tts->reply->len - tts->fed);
        tts->fed += n;

        if (ngx_http_voice_tts_next(tts) != NGX_OK) {
            return NGX_ERROR;
        }

        if (tts->turn == 0 || tts->failed) {
            return NGX_OK;
        }
    }

    return NGX_OK;
}


/* the reply's text is complete: the rest is spoken, then the engine ends */

ngx_int_t
ngx_http_voice_tts_end(ngx_http_voice_tts_t *tts)
{
    if (tts->turn == 0) {
        return NGX_OK;
    }

    if (!tts->failed) {
        if (ngx_http_voice_tts_text(tts) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_http_voice_phrase_flush(&tts->phraser);

        if (ngx_http_voice_tts_next(tts) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (tts->turn == 0) {
        return NGX_OK;
    }

    tts->ended = 1;

    if (tts->phrases == 0 || tts->failed) {
        /* nothing was asked for: nothing will come */
        tts->done = 1;
        return ngx_http_voice_tts_check(tts);
    }

    if (tts->engine->end(tts) != NGX_OK) {
        return ngx_http_voice_tts_fail(tts,
                   "the speech provider could not finish the reply");
    }

    if (!tts->done && !tts->paused) {
        ngx_add_timer(&tts->timer, tts->conf->timeout);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_tts_next(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_tts_phrase_t  ph;
    ngx_http_voice_phrase_out_t  out;

    while (ngx_http_voice_phrase_next(&tts->phraser, &out) == NGX_OK) {

        ph.text = out.text;
        ph.index = out.index;
        ph.offset = out.offset;
        ph.words = tts->words;
        ph.last = 0;

        tts->words += ngx_http_voice_tts_count_words(out.text.data,
                                                      out.text.len);
        tts->ends[out.index % NGX_HTTP_VOICE_TTS_PENDING] =
                                                 out.offset + out.text.len;
        tts->phrases++;

        if (out.index == 0) {
            ((ngx_http_voice_session_t *) tts->session)->reply.phrase =
                                                   ngx_http_voice_media_now();
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                       "voice: tts phrase %ui of turn %ui: \"%V\"",
                       out.index, tts->turn, &out.text);

        if (tts->engine->speak(tts, &ph) != NGX_OK) {
            return ngx_http_voice_tts_fail(tts,
                       "the speech provider could not take the text");
        }

        if (tts->turn == 0 || tts->failed) {
            return NGX_OK;
        }

        /* audio is owed from now: it must begin within the timeout */

        if (!tts->timer.timer_set && !tts->paused) {
            ngx_add_timer(&tts->timer, tts->conf->timeout);
        }
    }

    return NGX_OK;
}


/* ---- reports from engines ----------------------------------------------- */

ngx_int_t
ngx_http_voice_tts_audio(ngx_http_voice_tts_t *tts, const u_char *data,
    size_t len)
{
    size_t                     n, i;
    ngx_http_voice_session_t  *s;

    if (tts->closed) {
        return NGX_ERROR;
    }

    if (tts->turn == 0 || tts->failed || tts->silenced || len == 0) {
        return NGX_OK;
    }

    s = tts->session;

    if (!tts->speaking) {
        tts->speaking = 1;
        tts->start = ngx_http_voice_media_position(s);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                       "voice: tts first audio of turn %ui", tts->turn);

        if (ngx_http_voice_session_event(s, NGX_HTTP_VOICE_EV_TTS_AUDIO,
                                         NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* the overdue timer runs on while the reply's end is awaited */

    if (tts->timer.timer_set) {
        ngx_del_timer(&tts->timer);
    }

    if (tts->ended && !tts->paused) {
        ngx_add_timer(&tts->timer, tts->conf->timeout);
    }

    while (len) {
        i = 0;

        if (tts->carried) {
            ngx_http_voice_tts_in[0] = (int16_t) (tts->odd | (data[0] << 8));
            tts->carried = 0;
            data++;
            len--;
            i = 1;
        }

        n = ngx_min(len / 2, NGX_HTTP_VOICE_TTS_SLICE - i);

        /* little-endian on the wire; the hosts nginx runs on are too */
        ngx_memcpy(&ngx_http_voice_tts_in[i], data, n * 2);

        data += n * 2;
        len -= n * 2;

        if (len == 1) {
            tts->odd = data[0];
            tts->carried = 1;
            len = 0;
        }

        if (ngx_http_voice_tts_play(tts, ngx_http_voice_tts_in, n + i)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_voice_media_queued(s) > tts->high && !tts->paused) {
        tts->paused = 1;

        if (tts->timer.timer_set) {
            ngx_del_timer(&tts->timer);
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                       "voice: tts paused, %uz samples queued",
                       ngx_http_voice_media_queued(s));

        tts->engine->pause(tts);
        return NGX_AGAIN;
    }

    return NGX_OK;
}


/* n samples at the engine's rate: to the client's rate, into the queue */

static ngx_int_t
ngx_http_voice_tts_play(ngx_http_voice_tts_t *tts, int16_t *pcm, size_t n)
{
    ssize_t  m;

    tts->samples += n;

    m = ngx_http_voice_resampler_run(&tts->resampler, pcm, n,
                                     ngx_http_voice_tts_out,
                                     sizeof(ngx_http_voice_tts_out)
                                     / sizeof(int16_t));
    if (m == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, tts->log, 0,
                      "voice: resampling speech failed");
        return NGX_ERROR;
    }

    return ngx_http_voice_media_speak(tts->session, ngx_http_voice_tts_out,
                                      m);
}


ngx_int_t
ngx_http_voice_tts_word(ngx_http_voice_tts_t *tts, ngx_uint_t words,
    uint64_t sample)
{
    size_t  end;

    if (tts->closed) {
        return NGX_ERROR;
    }

    if (tts->turn == 0 || words == 0) {
        return NGX_OK;
    }

    end = ngx_http_voice_tts_word_end(tts, words);

    if (end) {
        ngx_http_voice_tts_anchor(tts, sample * tts->out_rate / tts->rate,
                                  end);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_voice_tts_phrase_done(ngx_http_voice_tts_t *tts, ngx_uint_t index)
{
    if (tts->closed) {
        return NGX_ERROR;
    }

    if (tts->turn == 0 || index >= tts->phrases
        || index + NGX_HTTP_VOICE_TTS_PENDING < tts->phrases)
    {
        return NGX_OK;
    }

    ngx_http_voice_tts_anchor(tts, tts->samples * tts->out_rate / tts->rate,
                              tts->ends[index % NGX_HTTP_VOICE_TTS_PENDING]);

    return NGX_OK;
}


ngx_int_t
ngx_http_voice_tts_done(ngx_http_voice_tts_t *tts)
{
    if (tts->closed) {
        return NGX_ERROR;
    }

    if (tts->turn == 0 || tts->done) {
        return NGX_OK;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice: tts turn %ui done, %uL samples", tts->turn,
                   tts->samples);

    tts->done = 1;

    if (tts->timer.timer_set) {
        ngx_del_timer(&tts->timer);
    }

    /* the whole reply is heard once the queue runs out */

    if (tts->phrases) {
        ngx_http_voice_tts_anchor(tts,
                                  tts->samples * tts->out_rate / tts->rate,
                                  tts->ends[(tts->phrases - 1)
                                            % NGX_HTTP_VOICE_TTS_PENDING]);
    }

    if (ngx_http_voice_media_pad(tts->session) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_voice_tts_check(tts);
}


ngx_int_t
ngx_http_voice_tts_failed(ngx_http_voice_tts_t *tts, const char *message)
{
    if (tts->closed) {
        return NGX_ERROR;
    }

    if (tts->turn == 0 || tts->failed) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_WARN, tts->log, 0,
                  "voice: tts %s failed on turn %ui: %s", tts->engine->name,
                  tts->turn, message);

    return ngx_http_voice_tts_fail(tts, message);
}


/*
 * The reply's speech is over: the client hears what was queued, the text
 * goes on without voice.
 */

static ngx_int_t
ngx_http_voice_tts_fail(ngx_http_voice_tts_t *tts, const char *message)
{
    ngx_http_voice_input_t  in;

    tts->failed = 1;

    if (tts->timer.timer_set) {
        ngx_del_timer(&tts->timer);
    }

    if (tts->paused) {
        tts->paused = 0;
        tts->engine->resume(tts);
    }

    in.data = (u_char *) message;
    in.len = ngx_strlen(message);
    in.msg = NULL;

    if (ngx_http_voice_session_event(tts->session,
                                     NGX_HTTP_VOICE_EV_TTS_FAILED, &in)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the error first: padding may play the reply out to its end */

    if (tts->speaking
        && ngx_http_voice_media_pad(tts->session) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_voice_tts_check(tts);
}


static void
ngx_http_voice_tts_overdue(ngx_event_t *ev)
{
    ngx_http_voice_tts_t      *tts;
    ngx_http_voice_session_t  *s;

    tts = ev->data;
    s = tts->session;

    ngx_log_error(NGX_LOG_WARN, tts->log, 0,
                  "voice: tts %s sent no audio for %M ms on turn %ui",
                  tts->engine->name, tts->conf->timeout, tts->turn);

    tts->engine->cancel(tts);

    if (ngx_http_voice_tts_fail(tts,
            "the speech provider did not answer in time") == NGX_OK
        && !s->done)
    {
        (void) ngx_http_voice_session_send(s);
    }

    ngx_http_run_posted_requests(s->connection);
}


/*
 * Whether the reply has been heard to its end: the engine is done (or
 * failed), the text is complete, and nothing waits to be played.
 */

static ngx_int_t
ngx_http_voice_tts_check(ngx_http_voice_tts_t *tts)
{
    if (tts->turn == 0 || !tts->ended || !(tts->done || tts->failed)
        || tts->heard
        || ngx_http_voice_media_queued((ngx_http_voice_session_t *)
                                       tts->session))
    {
        return NGX_OK;
    }

    tts->heard = 1;

    return ngx_http_voice_session_follow(tts->session,
                                         NGX_HTTP_VOICE_EV_REPLY_SPOKEN);
}


/* the pacer sent frames: the engine may go on, the reply may be over */

ngx_int_t
ngx_http_voice_tts_drained(ngx_http_voice_tts_t *tts, size_t queued)
{
    if (tts->turn == 0) {
        return NGX_OK;
    }

    if (tts->paused && queued < tts->high / 2) {
        tts->paused = 0;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                       "voice: tts resumed, %uz samples queued", queued);

        if (!tts->done && !tts->failed) {
            if (tts->ended) {
                ngx_add_timer(&tts->timer, tts->conf->timeout);
            }

            tts->engine->resume(tts);
        }
    }

    return (queued == 0) ? ngx_http_voice_tts_check(tts) : NGX_OK;
}


/* ---- what the user heard ------------------------------------------------ */

static void
ngx_http_voice_tts_anchor(ngx_http_voice_tts_t *tts, uint64_t sample,
    size_t offset)
{
    ngx_uint_t                    i;
    ngx_http_voice_tts_anchor_t  *a;

    a = tts->anchors;

    if (tts->nanchors && (a[tts->nanchors - 1].offset >= offset
                          || a[tts->nanchors - 1].sample > sample))
    {
        return;
    }

    /* full: every other one goes, the resolution halves */

    if (tts->nanchors == NGX_HTTP_VOICE_TTS_ANCHORS) {
        for (i = 0; i < NGX_HTTP_VOICE_TTS_ANCHORS / 2; i++) {
            a[i] = a[2 * i + 1];
        }

        tts->nanchors = NGX_HTTP_VOICE_TTS_ANCHORS / 2;
    }

    a[tts->nanchors].sample = sample;
    a[tts->nanchors].offset = offset;
    tts->nanchors++;
}


/*
 * Barge-in: the queue is gone and the client played `played' samples of
 * its stream.  Returns how many bytes of the reply it heard: up to the
 * last word end before that point, by the engine's timing where there is
 * some, by the pace of the audio before it where there is not.
 */

size_t
ngx_http_voice_tts_silence(ngx_http_voice_tts_t *tts, uint64_t played)
{
    size_t                        end, est;
    uint64_t                      heard, base, next;
    ngx_uint_t                    i;
    ngx_http_voice_tts_anchor_t  *a;

    if (tts->turn == 0 || tts->silenced) {
        return tts->spoken;
    }

    tts->silenced = 1;
    tts->spoken = 0;

    if (!tts->speaking || played <= tts->start) {
        return 0;
    }

    heard = played - tts->start;
    a = tts->anchors;

    for (i = 0; i < tts->nanchors && a[i].sample <= heard; i++) {
        /* void */
    }

    base = i ? a[i - 1].sample : 0;
    end = i ? a[i - 1].offset : 0;

    if (i < tts->nanchors) {
        next = a[i].sample;
        est = end + (size_t) ((a[i].offset - end) * (heard - base)
                              / ngx_max(next - base, 1));

    } else {
        /* past the last word end known: at about 15 characters a second */
        est = end + (size_t) ((heard - base) * 15 / tts->out_rate);
        est = ngx_min(est, tts->ends[(tts->phrases - 1)
                                     % NGX_HTTP_VOICE_TTS_PENDING]);
    }

    est = ngx_min(est, tts->reply->len);

    /* only whole words: back to the space before the one cut */

    if (est > end && est < tts->reply->len && tts->reply->data[est] != ' ') {
        while (est > end && tts->reply->data[est - 1] != ' ') {
            est--;
        }
    }

    while (est && tts->reply->data[est - 1] == ' ') {
        est--;
    }

    tts->spoken = est;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, tts->log, 0,
                   "voice: tts turn %ui heard %uL samples, %uz bytes",
                   tts->turn, heard, est);

    return est;
}


/* the reply's speech stops now; the engine is ready for the next one */

void
ngx_http_voice_tts_cancel(ngx_http_voice_tts_t *tts)
{
    if (tts->timer.timer_set) {
        ngx_del_timer(&tts->timer);
    }

    if (tts->paused) {
        tts->paused = 0;
        tts->engine->resume(tts);
    }

    if (tts->turn && tts->phrases && !tts->done && !tts->failed) {
        tts->engine->cancel(tts);
    }

    ngx_http_voice_phrase_reset(&tts->phraser);
    ngx_http_voice_resampler_reset(&tts->resampler);

    tts->turn = 0;
    tts->phrases = 0;
    tts->samples = 0;
    tts->fed = 0;
    tts->words = 0;
    tts->nanchors = 0;
    tts->scan_words = 0;
    tts->scan_offset = 0;
    tts->spoken = 0;
    tts->carried = 0;
    tts->speaking = 0;
    tts->ended = 0;
    tts->done = 0;
    tts->failed = 0;
    tts->silenced = 0;
    tts->heard = 0;
}


void
ngx_http_voice_tts_close(ngx_http_voice_tts_t *tts)
{
    if (tts->closed) {
        return;
    }

    if (tts->timer.timer_set) {
        ngx_del_timer(&tts->timer);
    }

    tts->closed = 1;
    tts->engine->close(tts);
    ngx_http_voice_resampler_free(&tts->resampler);
}


static void
ngx_http_voice_tts_cleanup(void *data)
{
    ngx_http_voice_tts_close(data);
}


/*
 * The reply's offset where its n-th word ends (1: the first); 0: unknown.
 * Word ends come in order, so the scan goes on from where the last one
 * stopped.
 */

static size_t
ngx_http_voice_tts_word_end(ngx_http_voice_tts_t *tts, ngx_uint_t words)
{
    u_char  *p, *last;

    if (words < tts->scan_words) {
        tts->scan_words = 0;
        tts->scan_offset = 0;
    }

    p = tts->reply->data + tts->scan_offset;
    last = tts->reply->data + ngx_min(tts->fed, tts->reply->len);

    while (tts->scan_words < words) {

        while (p < last && ngx_http_voice_tts_space(*p)) {
            p++;
        }

        if (p == last) {
            return 0;
        }

        while (p < last && !ngx_http_voice_tts_space(*p)) {
            p++;
        }

        tts->scan_words++;
        tts->scan_offset = p - tts->reply->data;
    }

    return tts->scan_offset;
}


static ngx_uint_t
ngx_http_voice_tts_count_words(u_char *p, size_t len)
{
    ngx_uint_t  n;
    unsigned    in;

    n = 0;
    in = 0;

    while (len--) {
        if (ngx_http_voice_tts_space(*p)) {
            in = 0;

        } else if (!in) {
            in = 1;
            n++;
        }

        p++;
    }

    return n;
}


/* ---- configuration ------------------------------------------------------ */

void
ngx_http_voice_tts_create_conf(ngx_http_voice_tts_conf_t *conf)
{
    conf->engine = NGX_CONF_UNSET_UINT;
    conf->auth = NGX_CONF_UNSET_UINT;
    conf->speed = NGX_CONF_UNSET_UINT;
    conf->max_phrase = NGX_CONF_UNSET_UINT;
    conf->timeout = NGX_CONF_UNSET_MSEC;
}


char *
ngx_http_voice_tts_merge_conf(ngx_conf_t *cf, ngx_http_voice_tts_conf_t *prev,
    ngx_http_voice_tts_conf_t *conf, ngx_uint_t agent, ngx_uint_t serves)
{
    char                               *rv;
    const ngx_http_voice_tts_engine_t  *engine;

    ngx_conf_merge_uint_value(conf->engine, prev->engine,
                              NGX_CONF_UNSET_UINT);
    ngx_conf_merge_str_value(conf->url, prev->url, "");
    ngx_conf_merge_str_value(conf->key, prev->key, "");
    ngx_conf_merge_str_value(conf->voice, prev->voice, "");
    ngx_conf_merge_str_value(conf->model, prev->model, "");
    ngx_conf_merge_str_value(conf->language, prev->language, "en");
    ngx_conf_merge_str_value(conf->version, prev->version, "2024-11-13");
    ngx_conf_merge_uint_value(conf->auth, prev->auth,
                              NGX_HTTP_VOICE_TTS_AUTH_BEARER);
    ngx_conf_merge_uint_value(conf->speed, prev->speed, 100);
    ngx_conf_merge_uint_value(conf->max_phrase, prev->max_phrase,
                              NGX_HTTP_VOICE_PHRASE_MAX_CHARS);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 5000);

    if (conf->max_phrase < 8 || conf->max_phrase > 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_tts_max_phrase\" must be from 8 to 1000");
        return NGX_CONF_ERROR;
    }

    if (conf->engine == NGX_CONF_UNSET_UINT) {
        if (!serves) {
            return NGX_CONF_OK;
        }

        conf->engine = agent ? NGX_HTTP_VOICE_TTS_EMBEDDED
                             : NGX_HTTP_VOICE_TTS_OFF;
    }

    engine = ngx_http_voice_tts_engines[conf->engine];

    if (!serves || !agent || engine == NULL) {
        return NGX_CONF_OK;
    }

    rv = engine->init_conf(cf, conf);

    if (rv != NGX_CONF_OK && rv != NGX_CONF_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"voice_tts %s\": %s",
                           engine->name, rv);
        return NGX_CONF_ERROR;
    }

    return rv;
}


/*
 * For WebSocket engines: conf->url parsed into conf->upstream, with the
 * location's timeouts and TLS settings and the engine's bounds.
 */

char *
ngx_http_voice_tts_upstream(ngx_conf_t *cf, ngx_http_voice_tts_conf_t *conf,
    size_t send_buffer, size_t max_message)
{
    char  *rv;

    rv = ngx_http_voice_upstream_parse_url(cf, &conf->url, &conf->upstream);
    if (rv != NGX_CONF_OK) {
        if (rv != NGX_CONF_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"voice_tts_url\" %s",
                               rv);
        }

        return NGX_CONF_ERROR;
    }

    conf->upstream.ssl_verify = conf->ssl_verify;
    conf->upstream.connect_timeout = conf->connect_timeout;
    conf->upstream.close_timeout = conf->connect_timeout;
    conf->upstream.send_buffer = send_buffer;
    conf->upstream.max_message = max_message;

    if (ngx_http_voice_upstream_ssl(cf, &conf->upstream,
                                    &conf->ssl_trusted_certificate)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_voice_tts_engine_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_voice_tts_conf_t  *tts;

    tts = (ngx_http_voice_tts_conf_t *) (p + cmd->offset);

    if (tts->engine != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_voice_tts_names[i].name.len; i++) {
        if (ngx_strcmp(value[1].data, ngx_http_voice_tts_names[i].name.data)
            == 0)
        {
            tts->engine = ngx_http_voice_tts_names[i].value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\", it must be \"off\", "
                       "\"embedded\", \"cartesia\", \"elevenlabs\" or "
                       "\"openai\"", &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}


char *
ngx_http_voice_tts_key_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_http_voice_tts_conf_t  *tts;

    tts = (ngx_http_voice_tts_conf_t *) (p + cmd->offset);

    if (tts->key.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_voice_read_key(cf, &value[1], &tts->key);
}


/* 0.25 to 4, kept in hundredths */

char *
ngx_http_voice_tts_speed_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_int_t                   n;
    ngx_str_t                  *value;
    ngx_http_voice_tts_conf_t  *tts;

    tts = (ngx_http_voice_tts_conf_t *) (p + cmd->offset);

    if (tts->speed != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atofp(value[1].data, value[1].len, 2);

    if (n == NGX_ERROR || n < 25 || n > 400) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\", it must be a "
                           "number from 0.25 to 4", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    tts->speed = n;

    return NGX_CONF_OK;
}
