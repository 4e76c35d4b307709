
/*
 * The audio of a session: client frames decoded to the pipeline format
 * (PCM16 mono 16 kHz) and heard by the VAD; the echo delay line; and the
 * way back, converted to the client's format and paced out in 20 ms
 * frames at real time.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_session.h"
#include "ngx_http_voice_media.h"


/*
 * Audio is converted piece by piece through per-worker scratch buffers:
 * client bytes go in slices, so no frame size needs a bigger one.
 */
#define NGX_HTTP_VOICE_SLICE     1024        /* client bytes, PCM/mu-law */
#define NGX_HTTP_VOICE_SAMPLES   4096


/* a record of the echo delay line, followed by its payload */
typedef struct {
    ngx_msec_t                  due;
    size_t                      len;
} ngx_http_voice_echo_t;


static ngx_int_t ngx_http_voice_media_echo_push(ngx_http_voice_session_t *s,
    u_char *data, size_t len);
static void ngx_http_voice_media_echo(ngx_event_t *ev);
static ngx_int_t ngx_http_voice_media_listen(ngx_http_voice_session_t *s,
    int16_t *pcm, size_t n);
static ngx_int_t ngx_http_voice_media_play(ngx_http_voice_session_t *s,
    int16_t *pcm, size_t n);
static void ngx_http_voice_media_playout(ngx_event_t *ev);
static ngx_int_t ngx_http_voice_media_pace(ngx_http_voice_session_t *s);
static ngx_int_t ngx_http_voice_media_frame(ngx_http_voice_session_t *s,
    int16_t *pcm);
static ngx_msec_t ngx_http_voice_media_clock(void);


static int16_t  ngx_http_voice_pcm[NGX_HTTP_VOICE_SAMPLES];
static int16_t  ngx_http_voice_pcm16k[NGX_HTTP_VOICE_SAMPLES];
static int16_t  ngx_http_voice_pcm_out[NGX_HTTP_VOICE_SAMPLES];
static u_char   ngx_http_voice_out[8192];    /* one encoded frame */


void
ngx_http_voice_media_create(ngx_http_voice_session_t *s)
{
    ngx_log_t  *log;

    log = s->connection->log;

    ngx_http_voice_ring_init(&s->echo, s->conf->echo_buffer
                                       + s->conf->max_message_size
                                       + sizeof(ngx_http_voice_echo_t));

    s->echo_timer.handler = ngx_http_voice_media_echo;
    s->echo_timer.data = s;
    s->echo_timer.log = log;
    s->echo_timer.cancelable = 1;

    s->playout_timer.handler = ngx_http_voice_media_playout;
    s->playout_timer.data = s;
    s->playout_timer.log = log;
    s->playout_timer.cancelable = 1;
}


/*
 * Sets up what the formats need: decoding when audio is listened to or
 * converted, encoding and paced playout when it is converted.  Frames in
 * the client's own format when it is the same both ways go back as they
 * came.
 */

ngx_int_t
ngx_http_voice_media_init(ngx_http_voice_session_t *s)
{
    ngx_http_voice_loc_conf_t  *conf;

    conf = s->conf;
    s->turn = 1;

    s->raw_echo = (conf->pipeline == NGX_HTTP_VOICE_PIPELINE_ECHO
                   && conf->dialect == NGX_HTTP_VOICE_DIALECT_VOICE
                   && s->input.encoding == s->output.encoding
                   && s->input.sample_rate == s->output.sample_rate);

    /* the agent always listens: its turns end where the VAD hears silence */

    if (conf->vad_events
        || conf->pipeline == NGX_HTTP_VOICE_PIPELINE_AGENT)
    {
        s->vad = ngx_palloc(s->request->pool, sizeof(ngx_http_voice_vad_t));
        if (s->vad == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_voice_vad_init(s->vad, conf->vad_silence,
                                    conf->vad_min_speech)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if ((!s->raw_echo || s->vad)
        && (ngx_http_voice_codec_init(&s->decoder, &s->input, 0) != NGX_OK
            || ngx_http_voice_resampler_init(&s->in_rate, s->decoder.rate,
                                             NGX_HTTP_VOICE_RATE,
                                             conf->resample_quality)
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    if (s->raw_echo) {
        return NGX_OK;
    }

    if (ngx_http_voice_codec_init(&s->encoder, &s->output, 1) != NGX_OK
        || ngx_http_voice_resampler_init(&s->out_rate, NGX_HTTP_VOICE_RATE,
                                         s->encoder.rate,
                                         conf->resample_quality)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    s->frame = s->encoder.rate / 50;

    ngx_http_voice_ring_init(&s->playout,
                             conf->playout_buffer * s->encoder.rate / 1000
                             * sizeof(int16_t));

    ngx_http_voice_playout_init(&s->pacer, s->encoder.rate, 20,
                                conf->playout_lead);

    return NGX_OK;
}

/* one client audio frame: decoded, resampled, then on down the pipeline */

ngx_int_t
ngx_http_voice_media_audio(ngx_http_voice_session_t *s, u_char *data,
    size_t len)
{
    size_t   slice;
    ssize_t  n, m;

    if (s->raw_echo) {
        if (ngx_http_voice_media_echo_push(s, data, len) == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (s->vad == NULL) {
            return NGX_OK;
        }
    }

    if (s->vad && ngx_http_voice_vad_talking(s->vad)) {
        s->utterance_size += len;
    }

    do {
        slice = (s->decoder.encoding == NGX_HTTP_VOICE_OPUS)
                ? len : ngx_min(len, NGX_HTTP_VOICE_SLICE);

        n = ngx_http_voice_codec_decode(&s->decoder, data, slice,
                                        ngx_http_voice_pcm,
                                        NGX_HTTP_VOICE_SAMPLES);
        if (n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                          "voice: client sent audio that does not decode "
                          "as %s", ngx_http_voice_encoding_name(
                                       s->decoder.encoding));

            return ngx_http_voice_session_error(s, "PROTOCOL_VIOLATION",
                       "an audio frame could not be decoded", 1);
        }

        data += slice;
        len -= slice;

        m = ngx_http_voice_resampler_run(&s->in_rate, ngx_http_voice_pcm, n,
                                         ngx_http_voice_pcm16k,
                                         NGX_HTTP_VOICE_SAMPLES);
        if (m == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ALERT, s->connection->log, 0,
                          "voice: resampling failed");
            return NGX_ERROR;
        }

        if (ngx_http_voice_media_listen(s, ngx_http_voice_pcm16k, m)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } while (len && !s->close_queued);

    return NGX_OK;
}

/* pipeline audio: the VAD hears it, then the STT or the echo line */

static ngx_int_t
ngx_http_voice_media_listen(ngx_http_voice_session_t *s, int16_t *pcm,
    size_t n)
{
    ngx_uint_t                  i, k;
    ngx_http_voice_event_e      event;
    ngx_http_voice_vad_event_t  ev[4];

    if (s->vad) {
        k = ngx_http_voice_vad_feed(s->vad, pcm, n, ev, 4);

        for (i = 0; i < ngx_min(k, 4); i++) {
            s->speech_pos = ev[i].speech;

            if (ev[i].type == NGX_HTTP_VOICE_VAD_SPEECH_ENDED) {
                /* the user fell silent this long before it was decided */
                s->metrics.heard = ngx_http_voice_media_now()
                                   - (ev[i].pos - ev[i].speech) * 1000000
                                     / NGX_HTTP_VOICE_RATE;
            }

            event = (ev[i].type == NGX_HTTP_VOICE_VAD_SPEECH_STARTED)
                    ? NGX_HTTP_VOICE_EV_SPEECH_STARTED
                    : NGX_HTTP_VOICE_EV_SPEECH_ENDED;

            if (ngx_http_voice_session_event(s, event, NULL) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        if (ngx_http_voice_vad_talking(s->vad)) {
            s->utterance += n;

            /* the detector's hangover is not speech: barge-in counts less */
            if (s->vad->voiced) {
                s->voiced += n;
            }

            /*
             * speech that waits for more than the detector's minimum, or
             * that began before the assistant started speaking
             */

            if (s->state == NGX_HTTP_VOICE_ST_SPEAKING && s->vad->voiced
                && ngx_http_voice_media_barge_in(s, NGX_HTTP_VOICE_EV_AUDIO)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (s->utterance > s->conf->max_utterance * NGX_HTTP_VOICE_RATE
                               / 1000
                || s->utterance_size > s->conf->max_utterance_size)
            {
                if (ngx_http_voice_session_event(s,
                                         NGX_HTTP_VOICE_EV_MAX_DURATION, NULL)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }
        }
    }

    if (s->raw_echo || s->close_queued || n == 0) {
        return NGX_OK;
    }

    if (s->conf->pipeline == NGX_HTTP_VOICE_PIPELINE_AGENT) {
        return s->stt ? ngx_http_voice_stt_audio(s->stt, pcm, n,
                                                 ngx_http_voice_vad_talking(
                                                     s->vad))
                      : NGX_OK;
    }

    return (ngx_http_voice_media_echo_push(s, (u_char *) pcm,
                                             n * sizeof(int16_t))
            == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}

ngx_int_t
ngx_http_voice_media_speech(ngx_http_voice_session_t *s,
    ngx_http_voice_event_e event)
{
    u_char  buf[128];
    size_t  n;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->connection->log, 0,
                   "voice: %s at %uL ms", ngx_http_voice_event_name(event),
                   s->speech_pos * 1000 / NGX_HTTP_VOICE_RATE);

    if (!s->conf->vad_events) {
        return NGX_OK;
    }

    n = ngx_http_voice_protocol_speech(buf, sizeof(buf),
               event == NGX_HTTP_VOICE_EV_SPEECH_STARTED, s->turn,
               s->speech_pos * 1000 / NGX_HTTP_VOICE_RATE);

    return ngx_http_voice_session_text(s, buf, n);
}

void
ngx_http_voice_media_end_turn(ngx_http_voice_session_t *s)
{
    if (s->vad) {
        ngx_http_voice_vad_reset(s->vad);
    }

    s->utterance = 0;
    s->voiced = 0;
    s->utterance_size = 0;
    s->turn++;
}

/* audio for the client: to its rate, into the playout queue, paced out */

static ngx_int_t
ngx_http_voice_media_play(ngx_http_voice_session_t *s, int16_t *pcm,
    size_t n)
{
    size_t   chunk;
    ssize_t  m;

    while (n) {
        chunk = ngx_min(n, NGX_HTTP_VOICE_SAMPLES / 4);

        m = ngx_http_voice_resampler_run(&s->out_rate, pcm, chunk,
                                         ngx_http_voice_pcm_out,
                                         NGX_HTTP_VOICE_SAMPLES);
        if (m == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ALERT, s->connection->log, 0,
                          "voice: resampling failed");
            return NGX_ERROR;
        }

        pcm += chunk;
        n -= chunk;

        if (ngx_http_voice_ring_write(&s->playout, ngx_http_voice_pcm_out,
                                      m * sizeof(int16_t))
            != NGX_OK)
        {
            /* more than voice_playout_buffer waits: the newest goes */
            s->dropped++;
        }
    }

    return ngx_http_voice_media_pace(s);
}

static void
ngx_http_voice_media_playout(ngx_event_t *ev)
{
    ngx_connection_t          *c;
    ngx_http_voice_session_t  *s;

    s = ev->data;
    c = s->connection;

    if (ngx_http_voice_media_pace(s) == NGX_OK) {
        (void) ngx_http_voice_session_end(s);
    }

    if (!s->done) {
        (void) ngx_http_voice_session_send(s);
    }

    ngx_http_run_posted_requests(c);
}

/* sends the frames the client may have now, and waits for the next */

static ngx_int_t
ngx_http_voice_media_pace(ngx_http_voice_session_t *s)
{
    size_t      queued, pad;
    ngx_msec_t  now;
    ngx_uint_t  i, frames;

    static const int16_t  silence[960];

    if (s->close_queued) {
        return NGX_OK;
    }

    now = ngx_http_voice_media_clock();
    queued = s->playout.used / sizeof(int16_t);

    /* the stream ends: its last part frame is filled with silence */

    if (s->ending && s->echo.used == 0 && queued % s->frame) {
        pad = s->frame - queued % s->frame;

        if (ngx_http_voice_ring_write(&s->playout, silence,
                                      pad * sizeof(int16_t))
            != NGX_OK)
        {
            ngx_http_voice_ring_consume(&s->playout,
                                        (queued % s->frame)
                                        * sizeof(int16_t));
        }

        queued = s->playout.used / sizeof(int16_t);
    }

    frames = ngx_http_voice_playout_ready(&s->pacer, now, queued);

    for (i = 0; i < frames; i++) {
        ngx_http_voice_ring_peek(&s->playout, 0, ngx_http_voice_pcm_out,
                                 s->frame * sizeof(int16_t));
        ngx_http_voice_ring_consume(&s->playout, s->frame * sizeof(int16_t));
        ngx_http_voice_playout_sent(&s->pacer, now, s->frame);

        if (ngx_http_voice_media_frame(s, ngx_http_voice_pcm_out)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (s->playout.used >= s->frame * sizeof(int16_t)
        && !s->playout_timer.timer_set)
    {
        ngx_add_timer(&s->playout_timer,
                      ngx_max(ngx_http_voice_playout_wait(&s->pacer, now),
                              1));
    }

    /* room in the queue for more speech, or the reply played out */

    return s->tts ? ngx_http_voice_tts_drained(s->tts,
                                               ngx_http_voice_media_queued(s))
                  : NGX_OK;
}

/* one 20 ms frame in the client's format and dialect */

static ngx_int_t
ngx_http_voice_media_frame(ngx_http_voice_session_t *s, int16_t *pcm)
{
    u_char                 *json;
    size_t                  len;
    ssize_t                 n;
    ngx_http_voice_mark_t  *mark;

    n = ngx_http_voice_codec_encode(&s->encoder, pcm, s->frame,
                                    ngx_http_voice_out,
                                    sizeof(ngx_http_voice_out) / 2);
    if (n == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, s->connection->log, 0,
                      "voice: encoding %s failed",
                      ngx_http_voice_encoding_name(s->encoder.encoding));
        return NGX_ERROR;
    }

    if (s->conf->dialect != NGX_HTTP_VOICE_DIALECT_TWILIO) {
        return (ngx_http_voice_session_queue(s, NGX_HTTP_VOICE_WS_BINARY,
                                             ngx_http_voice_out, n, NULL, 1)
                == NGX_ERROR) ? NGX_ERROR : NGX_OK;
    }

    json = ngx_http_voice_out + sizeof(ngx_http_voice_out) / 2;

    len = ngx_http_voice_protocol_twilio_media(json,
                                               sizeof(ngx_http_voice_out) / 2,
                                               &s->id, ngx_http_voice_out,
                                               n);

    if (ngx_http_voice_session_queue(s, NGX_HTTP_VOICE_WS_TEXT, json, len,
                                     NULL, 1)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    /*
     * A mark every ten frames: Twilio returns each once the audio before
     * it has played, which keeps the playout model honest.
     */

    if (s->pacer.sent % (10 * s->frame) || s->nmarks == NGX_HTTP_VOICE_MARKS)
    {
        return NGX_OK;
    }

    mark = &s->marks[s->nmarks++];
    mark->id = ++s->marks_sent;
    mark->position = s->pacer.sent;

    len = ngx_http_voice_protocol_twilio_mark(json,
                                              sizeof(ngx_http_voice_out) / 2,
                                              &s->id, mark->id);

    return (ngx_http_voice_session_queue(s, NGX_HTTP_VOICE_WS_TEXT, json, len,
                                         NULL, 0)
            == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}

/* Twilio played up to a mark: the model follows, older marks go */

ngx_int_t
ngx_http_voice_media_mark(ngx_http_voice_session_t *s,
    ngx_http_voice_message_t *msg)
{
    ngx_int_t   id;
    ngx_uint_t  i;

    id = ngx_atoi(msg->mark, msg->mark_len);

    for (i = 0; i < s->nmarks; i++) {
        if (s->marks[i].id == (ngx_uint_t) id) {
            break;
        }
    }

    if (id == NGX_ERROR || i == s->nmarks) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, s->connection->log, 0,
                       "voice: a mark that is not ours");
        return NGX_OK;
    }

    ngx_http_voice_playout_confirm(&s->pacer, ngx_http_voice_media_clock(),
                                   s->marks[i].position);

    s->nmarks -= i + 1;
    ngx_memmove(s->marks, &s->marks[i + 1],
                s->nmarks * sizeof(ngx_http_voice_mark_t));

    /* the model moved: the next frame may be due sooner than planned */

    if (s->playout_timer.timer_set) {
        ngx_del_timer(&s->playout_timer);
    }

    return ngx_http_voice_media_pace(s);
}

/*
 * Drops what waits to be played, at once: the echo line, the playout
 * queue, and on phone gateways their own buffer.  What was played stays
 * known for what comes next.
 */

ngx_int_t
ngx_http_voice_media_drop(ngx_http_voice_session_t *s)
{
    u_char    buf[NGX_HTTP_VOICE_MAX_JSON];
    size_t    n;
    uint64_t  played;

    if (s->echo_timer.timer_set) {
        ngx_del_timer(&s->echo_timer);
    }

    ngx_http_voice_ring_consume(&s->echo, s->echo.used);

    if (s->raw_echo) {
        return NGX_OK;
    }

    if (s->playout_timer.timer_set) {
        ngx_del_timer(&s->playout_timer);
    }

    ngx_http_voice_ring_consume(&s->playout, s->playout.used);
    played = ngx_http_voice_playout_drop(&s->pacer,
                                         ngx_http_voice_media_clock());
    s->nmarks = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->connection->log, 0,
                   "voice: playout dropped, %uL samples played", played);

    if (s->tts) {
        (void) ngx_http_voice_tts_silence(s->tts, played);
    }

    if (s->conf->dialect == NGX_HTTP_VOICE_DIALECT_VOICE) {
        return NGX_OK;
    }

    n = ngx_http_voice_protocol_clear(s->conf->dialect, buf, sizeof(buf),
                                      &s->id);

    return (ngx_http_voice_session_queue(s, NGX_HTTP_VOICE_WS_TEXT, buf, n,
                                         NULL, 0)
            == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}

/*
 * The user speaks while the assistant does: once the speech has lasted
 * voice_barge_in_min_speech (the STT's word for it counts at once), the
 * assistant falls silent.
 */

ngx_int_t
ngx_http_voice_media_barge_in(ngx_http_voice_session_t *s,
    ngx_http_voice_event_e event)
{
    ngx_msec_t  heard;

    if (!s->conf->barge_in || s->state != NGX_HTTP_VOICE_ST_SPEAKING) {
        return NGX_OK;
    }

    if (event != NGX_HTTP_VOICE_EV_STT_SPEECH) {
        if (s->vad == NULL || !ngx_http_voice_vad_talking(s->vad)) {
            return NGX_OK;
        }

        /* the VAD declares speech after voice_vad_min_speech of it */
        heard = s->conf->vad_min_speech
                + s->voiced * 1000 / NGX_HTTP_VOICE_RATE;

        if (heard < s->conf->barge_in_min_speech) {
            return NGX_OK;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->connection->log, 0,
                   "voice: barge-in on %s", ngx_http_voice_event_name(event));

    return ngx_http_voice_session_follow(s, NGX_HTTP_VOICE_EV_BARGE_IN);
}


/* speech for the client, at its rate: queued, then paced out */

ngx_int_t
ngx_http_voice_media_speak(ngx_http_voice_session_t *s, int16_t *pcm,
    size_t n)
{
    if (s->close_queued || n == 0) {
        return NGX_OK;
    }

    if (ngx_http_voice_ring_write(&s->playout, pcm, n * sizeof(int16_t))
        != NGX_OK)
    {
        /* the engine was paused at half the bound: this is a bug's mark */
        s->dropped++;
        ngx_log_error(NGX_LOG_WARN, s->connection->log, 0,
                      "voice: playout buffer full, speech dropped");
    }

    if (!s->playout_timer.timer_set && ngx_http_voice_media_pace(s) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* from a provider's event, not the client's: what is due goes now */

    return (s->depth == 0 && !s->done) ? ngx_http_voice_session_send(s)
                                       : NGX_OK;
}


/* the speech ends: its last part frame is filled with silence */

ngx_int_t
ngx_http_voice_media_pad(ngx_http_voice_session_t *s)
{
    size_t  queued, pad;

    static const int16_t  silence[960];

    queued = ngx_http_voice_media_queued(s);

    if (s->frame == 0 || queued % s->frame == 0) {
        return NGX_OK;
    }

    pad = s->frame - queued % s->frame;

    if (ngx_http_voice_ring_write(&s->playout, silence, pad * sizeof(int16_t))
        != NGX_OK)
    {
        ngx_http_voice_ring_consume(&s->playout,
                                    (queued % s->frame) * sizeof(int16_t));
    }

    return (s->playout_timer.timer_set) ? NGX_OK
                                        : ngx_http_voice_media_pace(s);
}


/* where the next sample queued will be in the client's stream */

uint64_t
ngx_http_voice_media_position(ngx_http_voice_session_t *s)
{
    return s->pacer.sent + ngx_http_voice_media_queued(s);
}


/* NGX_OK, NGX_DECLINED when the line is full, NGX_ERROR when over */

static ngx_int_t
ngx_http_voice_media_echo_push(ngx_http_voice_session_t *s, u_char *data,
    size_t len)
{
    ngx_http_voice_echo_t  rec;

    if (s->echo.used && s->echo.used + sizeof(rec) + len > s->conf->echo_buffer)
    {
        s->dropped++;

        if (!s->overflow) {
            s->overflow = 1;

            ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                          "voice: echo buffer full, dropping audio");

            if (ngx_http_voice_session_info(s, "BUFFER_FULL",
                                            "echo buffer full, audio dropped")
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        return NGX_DECLINED;
    }

    if (ngx_http_voice_ring_reserve(&s->echo, sizeof(rec) + len) != NGX_OK) {
        s->fail = 1;
        (void) ngx_http_voice_session_close(s, NGX_HTTP_VOICE_WS_INTERNAL,
                                            "out of memory");
        return NGX_ERROR;
    }

    rec.due = ngx_http_voice_media_clock() + s->conf->echo_delay;
    rec.len = len;

    (void) ngx_http_voice_ring_write(&s->echo, &rec, sizeof(rec));
    (void) ngx_http_voice_ring_write(&s->echo, data, len);

    /* timer keys count from the cached time, rec.due from now */

    if (!s->echo_timer.timer_set) {
        ngx_add_timer(&s->echo_timer, rec.due - ngx_current_msec);
    }

    return NGX_OK;
}

static void
ngx_http_voice_media_echo(ngx_event_t *ev)
{
    size_t                     n;
    ngx_msec_int_t             left;
    ngx_connection_t          *c;
    ngx_http_voice_echo_t      rec;
    ngx_http_voice_session_t  *s;

    s = ev->data;
    c = s->connection;

    while (s->echo.used) {
        ngx_http_voice_ring_peek(&s->echo, 0, &rec, sizeof(rec));

        left = (ngx_msec_int_t) (rec.due - ngx_current_msec);

        if (left > 0) {
            ngx_add_timer(ev, (ngx_msec_t) left);
            break;
        }

        ngx_http_voice_ring_consume(&s->echo, sizeof(rec));

        if (s->raw_echo) {
            if (ngx_http_voice_session_queue(s, NGX_HTTP_VOICE_WS_BINARY,
                                             NULL, rec.len, &s->echo, 1)
                == NGX_ERROR)
            {
                goto done;
            }

            continue;
        }

        /* converted: PCM16 16 kHz on its way to the playout queue */

        while (rec.len) {
            n = ngx_min(rec.len, sizeof(ngx_http_voice_pcm16k));

            ngx_http_voice_ring_peek(&s->echo, 0, ngx_http_voice_pcm16k, n);
            ngx_http_voice_ring_consume(&s->echo, n);
            rec.len -= n;

            if (ngx_http_voice_media_play(s, ngx_http_voice_pcm16k, n / 2)
                == NGX_ERROR)
            {
                goto done;
            }
        }
    }

    if (s->echo.used == 0) {
        s->overflow = 0;
    }

    (void) ngx_http_voice_session_end(s);

done:

    /* what is due goes out, a failed session's close frame included */

    if (!s->done) {
        (void) ngx_http_voice_session_send(s);
    }

    ngx_http_run_posted_requests(c);
}

/*
 * The time now, on the clock of ngx_current_msec.  The cached value lags
 * by however long this pass of the event loop has run, which would let an
 * echo leave early under load.
 */

static ngx_msec_t
ngx_http_voice_media_clock(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_msec_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/* the same clock in microseconds, for the per-turn metrics */

uint64_t
ngx_http_voice_media_now(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/*
 * At the end of a session: NGX_OK once everything due has been played
 * out, NGX_AGAIN while it is still playing, NGX_ERROR once it is over.
 */

ngx_int_t
ngx_http_voice_media_flush(ngx_http_voice_session_t *s)
{
    if (s->echo.used) {
        return NGX_AGAIN;
    }

    /* what is left to play goes first, its last part frame padded */

    if (s->playout.used && !s->playout_timer.timer_set
        && ngx_http_voice_media_pace(s) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return s->playout.used ? NGX_AGAIN : NGX_OK;
}


/* nothing more is played: timers and queues go, codecs stay */

void
ngx_http_voice_media_stop(ngx_http_voice_session_t *s)
{
    if (s->echo_timer.timer_set) {
        ngx_del_timer(&s->echo_timer);
    }

    if (s->playout_timer.timer_set) {
        ngx_del_timer(&s->playout_timer);
    }

    ngx_http_voice_ring_free(&s->echo);
    ngx_http_voice_ring_free(&s->playout);
}


void
ngx_http_voice_media_cleanup(ngx_http_voice_session_t *s)
{
    ngx_http_voice_media_stop(s);

    ngx_http_voice_codec_free(&s->decoder);
    ngx_http_voice_codec_free(&s->encoder);
    ngx_http_voice_resampler_free(&s->in_rate);
    ngx_http_voice_resampler_free(&s->out_rate);
}
