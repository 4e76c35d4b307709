
/*
 * A voice session owns an upgraded connection: it reads and parses
 * frames, turns them into events for the state machine, carries out the
 * actions the machine returns, and writes frames back through a bounded
 * outbound queue.
 *
 * Every path that ends a session goes through
 * ngx_http_voice_session_finalize(); after it the session is not touched.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>

#include "ngx_http_voice_session.h"
#include "ngx_http_voice_media.h"


/* room for control frames beyond the audio bound of the outbound queue */
#define NGX_HTTP_VOICE_CONTROL_RESERVE  4096

/* a backpressure episode ends after this long without a dropped frame */
#define NGX_HTTP_VOICE_EPISODE          1000


static void ngx_http_voice_session_read_event(ngx_event_t *rev);
static void ngx_http_voice_session_read(ngx_http_request_t *r);
static void ngx_http_voice_session_write(ngx_http_request_t *r);
static void ngx_http_voice_session_cleanup(void *data);
static void ngx_http_voice_session_finalizer(ngx_event_t *ev);

static ngx_int_t ngx_http_voice_session_process(ngx_http_voice_session_t *s,
    u_char *p, u_char *last);
static ngx_int_t ngx_http_voice_session_chunk(ngx_http_voice_session_t *s,
    ngx_http_voice_ws_chunk_t *ch);
static ngx_int_t ngx_http_voice_session_message(ngx_http_voice_session_t *s,
    ngx_uint_t opcode, u_char *data, size_t len);
static ngx_int_t ngx_http_voice_session_peer_close(
    ngx_http_voice_session_t *s, ngx_http_voice_ws_chunk_t *ch);
static ngx_int_t ngx_http_voice_session_metrics(ngx_http_voice_session_t *s);
static ngx_int_t ngx_http_voice_session_spoken(ngx_http_voice_session_t *s);
static ngx_int_t ngx_http_voice_session_cancel_reply(
    ngx_http_voice_session_t *s, const char *reason);
static ngx_int_t ngx_http_voice_session_act(ngx_http_voice_session_t *s,
    ngx_http_voice_action_e action, ngx_http_voice_event_e event,
    ngx_http_voice_input_t *in);
static ngx_int_t ngx_http_voice_session_started(ngx_http_voice_session_t *s,
    ngx_http_voice_message_t *msg);

static ngx_int_t ngx_http_voice_session_listen(ngx_http_voice_session_t *s);
static ngx_int_t ngx_http_voice_session_flush(ngx_http_voice_session_t *s);
static void ngx_http_voice_session_finalize(ngx_http_voice_session_t *s,
    ngx_int_t rc);


/*
 * One read buffer per worker: frames are parsed as soon as they are read
 * and whatever must outlive a read is copied, so sessions need none.
 */
static u_char  ngx_http_voice_buffer[65536];

/* audio a gateway carries in text (Twilio media), decoded */
static u_char  ngx_http_voice_payload[8192];


ngx_int_t
ngx_http_voice_session_create(ngx_http_request_t *r)
{
    u_char                     rnd[12];
    ngx_http_cleanup_t        *cln;
    ngx_http_voice_session_t  *s;

    s = ngx_pcalloc(r->pool, sizeof(ngx_http_voice_session_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    s->request = r;
    s->connection = r->connection;
    s->conf = ngx_http_get_module_loc_conf(r, ngx_http_voice_module);
    s->state = NGX_HTTP_VOICE_ST_CONNECTED;
    s->follow = NGX_HTTP_VOICE_EV_MAX;

    ngx_http_voice_ws_parser_init(&s->parser, 1, s->conf->max_frame_size,
                                  s->conf->max_message_size);

    /*
     * Audio is held to voice_send_buffer and voice_echo_buffer, but one
     * whole message always fits an empty queue, and control frames have
     * room beyond the audio bound.
     */

    ngx_http_voice_ring_init(&s->message, s->conf->max_message_size);
    ngx_http_voice_ring_init(&s->out, s->conf->send_buffer
                                      + s->conf->max_message_size
                                      + NGX_HTTP_VOICE_WS_MAX_HEADER
                                      + NGX_HTTP_VOICE_CONTROL_RESERVE);

    ngx_http_voice_media_create(s);

    s->close_event.handler = ngx_http_voice_session_finalizer;
    s->close_event.data = s;
    s->close_event.log = r->connection->log;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "voice: RAND_bytes() failed");
        return NGX_ERROR;
    }

    s->id.data = s->id_data;
    s->id.len = ngx_hex_dump(s->id_data, rnd, sizeof(rnd)) - s->id_data;

    cln->handler = ngx_http_voice_session_cleanup;
    cln->data = s;

    ngx_http_set_ctx(r, s, ngx_http_voice_module);

    return NGX_OK;
}


void
ngx_http_voice_session_run(ngx_http_request_t *r)
{
    int                         sndbuf;
    ngx_connection_t           *c;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_voice_session_t   *s;

    s = ngx_http_get_module_ctx(r, ngx_http_voice_module);
    c = r->connection;

    c->log->action = "running voice session";

    r->read_event_handler = ngx_http_voice_session_read;
    r->write_event_handler = ngx_http_voice_session_write;

    /*
     * nginx tells idle connections that it is quitting by setting c->close
     * and calling c->read->handler, which would terminate the request at
     * once; a wrapper turns that into a clean WebSocket close instead.
     */

    s->request_handler = c->read->handler;
    c->read->handler = ngx_http_voice_session_read_event;
    c->idle = 1;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        ngx_http_voice_session_finalize(s, NGX_ERROR);
        return;
    }

    /*
     * Real-time audio is better dropped than queued for seconds in an
     * autotuned kernel buffer, where a stalled client would go unnoticed.
     */

    sndbuf = (int) s->conf->send_buffer;

    if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, (const void *) &sndbuf,
                   sizeof(int))
        == -1)
    {
        ngx_log_error(NGX_LOG_WARN, c->log, ngx_socket_errno,
                      "voice: setsockopt(SO_SNDBUF) failed");
    }

    ngx_add_timer(c->read, s->conf->idle_timeout);

    /* bytes that came with the handshake are waiting in r->header_in */

    ngx_post_event(c->read, &ngx_posted_events);
}


static void
ngx_http_voice_session_read_event(ngx_event_t *rev)
{
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_voice_session_t  *s;

    c = rev->data;
    r = c->data;
    s = ngx_http_get_module_ctx(r, ngx_http_voice_module);

    if (c->close && !s->shutdown) {
        c->close = 0;
        s->shutdown = 1;

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "voice: server shutting down");

        (void) ngx_http_voice_session_raise(s, NGX_HTTP_VOICE_EV_SHUTDOWN,
                                            NULL);

        ngx_http_run_posted_requests(c);
        return;
    }

    s->request_handler(rev);
}


static void
ngx_http_voice_session_read(ngx_http_request_t *r)
{
    u_char                    *p;
    ssize_t                    n;
    ngx_buf_t                 *b;
    ngx_event_t               *rev;
    ngx_connection_t          *c;
    ngx_http_voice_session_t  *s;

    s = ngx_http_get_module_ctx(r, ngx_http_voice_module);
    c = r->connection;
    rev = c->read;

    if (s->done) {
        return;
    }

    if (rev->timedout) {
        rev->timedout = 0;

        if (s->close_queued) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "voice: client did not answer the close frame");
            ngx_http_voice_session_finalize(s, NGX_DONE);
            return;
        }

        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "voice: client idle for %M ms", s->conf->idle_timeout);

        (void) ngx_http_voice_session_raise(s, NGX_HTTP_VOICE_EV_IDLE_TIMEOUT,
                                            NULL);

        return;
    }

    b = r->header_in;

    if (b->pos < b->last) {
        p = b->pos;
        b->pos = b->last;

        if (ngx_http_voice_session_process(s, p, b->last) != NGX_OK) {
            goto closing;
        }
    }

    for ( ;; ) {

        n = c->recv(c, ngx_http_voice_buffer, sizeof(ngx_http_voice_buffer));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            if (!s->peer_closed) {
                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "voice: client closed the connection");
            }

            ngx_http_voice_session_finalize(s, NGX_ERROR);
            return;
        }

        if (ngx_http_voice_session_process(s, ngx_http_voice_buffer,
                                           ngx_http_voice_buffer + n)
            != NGX_OK)
        {
            goto closing;
        }
    }

    if (ngx_http_voice_session_send(s) != NGX_OK) {
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_voice_session_finalize(s, NGX_ERROR);
        return;
    }

    /* while closing, the read timer waits for the client's close frame */

    if (!s->close_queued) {
        ngx_add_timer(rev, s->conf->idle_timeout);
    }

    return;

closing:

    /* a failed session may still have its close frame to send */

    if (!s->done) {
        (void) ngx_http_voice_session_send(s);
    }
}


static void
ngx_http_voice_session_write(ngx_http_request_t *r)
{
    ngx_connection_t          *c;
    ngx_http_voice_session_t  *s;

    s = ngx_http_get_module_ctx(r, ngx_http_voice_module);
    c = r->connection;

    if (s->done) {
        return;
    }

    if (c->write->timedout) {
        c->timedout = 1;
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "voice: client not reading for %M ms, closing",
                      s->conf->send_timeout);
        ngx_http_voice_session_finalize(s, NGX_ERROR);
        return;
    }

    (void) ngx_http_voice_session_send(s);
}


/* parses what was read; NGX_OK, or NGX_ERROR once the session is over */

static ngx_int_t
ngx_http_voice_session_process(ngx_http_voice_session_t *s, u_char *p,
    u_char *last)
{
    ngx_int_t                  rc;
    ngx_http_voice_ws_chunk_t  ch;

    for ( ;; ) {

        rc = ngx_http_voice_ws_parse(&s->parser, &p, last, &ch);

        if (rc == NGX_AGAIN) {
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                          "voice: client sent a bad frame: %s",
                          s->parser.error);

            if (s->close_queued) {
                ngx_http_voice_session_finalize(s, NGX_DONE);
                return NGX_ERROR;
            }

            s->fail = 1;

            if (ngx_http_voice_session_close(s, s->parser.close_code,
                                             s->parser.error)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            (void) ngx_http_voice_session_send(s);

            return NGX_ERROR;
        }

        if (ngx_http_voice_session_chunk(s, &ch) != NGX_OK) {
            return NGX_ERROR;
        }
    }
}


static ngx_int_t
ngx_http_voice_session_chunk(ngx_http_voice_session_t *s,
    ngx_http_voice_ws_chunk_t *ch)
{
    u_char     *data;
    size_t      len;
    ngx_int_t   rc;

    switch (ch->opcode) {

    case NGX_HTTP_VOICE_WS_PING:
        return ngx_http_voice_session_queue(s, NGX_HTTP_VOICE_WS_PONG,
                                            ch->data, ch->len, NULL, 0)
               == NGX_ERROR ? NGX_ERROR : NGX_OK;

    case NGX_HTTP_VOICE_WS_PONG:
        return NGX_OK;

    case NGX_HTTP_VOICE_WS_CLOSE:
        return ngx_http_voice_session_peer_close(s, ch);
    }

    if (s->close_queued) {
        return NGX_OK;
    }

    /* a message in one piece is used where it lies */

    if (ch->first && ch->last) {
        return ngx_http_voice_session_message(s, ch->opcode, ch->data,
                                              ch->len);
    }

    rc = ngx_http_voice_ring_write(&s->message, ch->data, ch->len);

    if (rc != NGX_OK) {
        /* the parser keeps messages within the ring's bound */
        s->fail = 1;
        (void) ngx_http_voice_session_close(s, NGX_HTTP_VOICE_WS_INTERNAL,
                                            "out of memory");
        return NGX_ERROR;
    }

    if (!ch->last) {
        return NGX_OK;
    }

    len = ngx_http_voice_ring_span(&s->message, &data);

    rc = ngx_http_voice_session_message(s, ch->opcode, data, len);

    if (!s->done) {
        ngx_http_voice_ring_consume(&s->message, len);
    }

    return rc;
}


static ngx_int_t
ngx_http_voice_session_message(ngx_http_voice_session_t *s,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_http_voice_input_t     in;
    ngx_http_voice_message_t   msg;

    in.data = data;
    in.len = len;
    in.msg = NULL;

    if (opcode == NGX_HTTP_VOICE_WS_BINARY) {

        if (s->conf->dialect != NGX_HTTP_VOICE_DIALECT_TWILIO) {
            s->frames_in++;
            return ngx_http_voice_session_event(s, NGX_HTTP_VOICE_EV_AUDIO,
                                                &in);
        }

        msg.event = NGX_HTTP_VOICE_EV_BAD_MESSAGE;
        ngx_cpystrn((u_char *) msg.reason,
                    (u_char *) "a binary frame in a Twilio stream",
                    sizeof(msg.reason));

    } else {
        ngx_http_voice_protocol_decode(s->conf->dialect, data, len, &msg,
                                       ngx_http_voice_payload,
                                       sizeof(ngx_http_voice_payload));
    }

    in.msg = &msg;

    if (msg.event == NGX_HTTP_VOICE_EV_SESSION_START
        && s->conf->pipeline == NGX_HTTP_VOICE_PIPELINE_AGENT)
    {
        msg.event = NGX_HTTP_VOICE_EV_AGENT_START;
    }

    if (msg.event == NGX_HTTP_VOICE_EV_AUDIO) {
        s->frames_in++;
        in.data = msg.audio;
        in.len = msg.audio_len;
    }

    if (msg.event == NGX_HTTP_VOICE_EV_BAD_MESSAGE
        || msg.event == NGX_HTTP_VOICE_EV_BAD_FORMAT)
    {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "voice: client sent a bad message: %s", msg.reason);
    }

    return ngx_http_voice_session_event(s, msg.event, &in);
}


static ngx_int_t
ngx_http_voice_session_peer_close(ngx_http_voice_session_t *s,
    ngx_http_voice_ws_chunk_t *ch)
{
    s->peer_closed = 1;
    s->peer_code = (ch->len >= 2) ? (ch->data[0] << 8 | ch->data[1])
                                  : NGX_HTTP_VOICE_WS_NORMAL;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->connection->log, 0,
                   "voice: client close %ui", s->peer_code);

    if (!s->close_queued) {
        return ngx_http_voice_session_event(s, NGX_HTTP_VOICE_EV_PEER_CLOSE,
                                            NULL);
    }

    /* our close went first: the handshake ends once it is out */

    if (s->out.used == 0) {
        ngx_http_voice_session_finalize(s, NGX_DONE);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* runs the state machine; NGX_OK, or NGX_ERROR once the session is over */

ngx_int_t
ngx_http_voice_session_event(ngx_http_voice_session_t *s,
    ngx_http_voice_event_e event, ngx_http_voice_input_t *in)
{
    u_char                              buf[64];
    size_t                              n;
    ngx_int_t                           rc;
    ngx_uint_t                          i;
    ngx_http_voice_state_e              prev;
    const ngx_http_voice_transition_t  *t;

    t = ngx_http_voice_state_next(s->state, event);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, s->connection->log, 0,
                   "voice: %s in %s -> %s",
                   ngx_http_voice_event_name(event),
                   ngx_http_voice_state_name(s->state),
                   ngx_http_voice_state_name(t->next));

    prev = s->state;
    s->state = t->next;
    s->depth++;
    rc = NGX_OK;

    for (i = 0; i < NGX_HTTP_VOICE_MAX_ACTIONS && t->actions[i]; i++) {

        if (ngx_http_voice_session_act(s, t->actions[i], event, in)
            != NGX_OK)
        {
            rc = NGX_ERROR;
            break;
        }
    }

    s->depth--;

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * The client follows every change but the last: that one is a close.
     * An event raised by an action reports its own change, and a change
     * it overtook is not reported after it.
     */

    if (t->next != prev && t->next != NGX_HTTP_VOICE_ST_CLOSED
        && s->state == t->next)
    {
        n = ngx_http_voice_protocol_state(buf, sizeof(buf),
                                          ngx_http_voice_state_name(t->next));

        if (ngx_http_voice_session_text(s, buf, n) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* an event that an action left to follow this one, in its own right */

    if (s->follow != NGX_HTTP_VOICE_EV_MAX) {
        event = s->follow;
        s->follow = NGX_HTTP_VOICE_EV_MAX;

        return ngx_http_voice_session_event(s, event, NULL);
    }

    return NGX_OK;
}


/*
 * An action's event that comes after the one under way, so the client
 * sees each state it passes; outside any event it is raised at once.
 */

ngx_int_t
ngx_http_voice_session_follow(ngx_http_voice_session_t *s,
    ngx_http_voice_event_e event)
{
    if (s->depth == 0) {
        return ngx_http_voice_session_raise(s, event, NULL);
    }

    s->follow = event;

    return NGX_OK;
}


/*
 * An event from a timer or a provider rather than from the client's
 * read: what it queued goes out now, not with the client's next frame.
 */

ngx_int_t
ngx_http_voice_session_raise(ngx_http_voice_session_t *s,
    ngx_http_voice_event_e event, ngx_http_voice_input_t *in)
{
    ngx_int_t  rc;

    rc = ngx_http_voice_session_event(s, event, in);

    if (!s->done && ngx_http_voice_session_send(s) != NGX_OK) {
        return NGX_ERROR;
    }

    return rc;
}


static ngx_int_t
ngx_http_voice_session_act(ngx_http_voice_session_t *s,
    ngx_http_voice_action_e action, ngx_http_voice_event_e event,
    ngx_http_voice_input_t *in)
{
    u_char      text[128];
    ngx_uint_t  code;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->connection->log, 0,
                   "voice: action %s", ngx_http_voice_action_name(action));

    switch (action) {

    case NGX_HTTP_VOICE_ACT_SEND_STARTED:
        return ngx_http_voice_session_started(s, in->msg);

    case NGX_HTTP_VOICE_ACT_AUDIO:
        if (s->muted) {
            return NGX_OK;
        }

        return ngx_http_voice_media_audio(s, in->data, in->len);

    case NGX_HTTP_VOICE_ACT_SPEECH:
        return ngx_http_voice_media_speech(s, event);

    case NGX_HTTP_VOICE_ACT_END_TURN:
        if (event != NGX_HTTP_VOICE_EV_SPEECH_ENDED) {
            s->metrics.heard = ngx_http_voice_media_now();
        }

        s->metrics.voice = 1;
        s->metrics.final = 0;

        if (s->stt && ngx_http_voice_stt_finalize(s->stt, s->turn) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_http_voice_media_end_turn(s);
        return NGX_OK;

    case NGX_HTTP_VOICE_ACT_FAIL_DURATION:
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "voice: utterance over its limits, turn ended");

        return ngx_http_voice_session_error(s, "MAX_DURATION_EXCEEDED",
                   "the utterance is longer than the server accepts", 1);

    case NGX_HTTP_VOICE_ACT_CANCEL:
        return ngx_http_voice_media_drop(s);

    case NGX_HTTP_VOICE_ACT_MARK:
        return ngx_http_voice_media_mark(s, in->msg);

    case NGX_HTTP_VOICE_ACT_DTMF:
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "voice: key \"%c\" pressed", in->msg->digit);
        return NGX_OK;

    case NGX_HTTP_VOICE_ACT_MUTE:
        s->muted = 1;
        return NGX_OK;

    case NGX_HTTP_VOICE_ACT_UNMUTE:
        s->muted = 0;
        return NGX_OK;

    case NGX_HTTP_VOICE_ACT_REJECT:
        return ngx_http_voice_session_error(s, "PROTOCOL_VIOLATION",
                   (in && in->msg && in->msg->reason[0])
                   ? in->msg->reason : "the session has already started", 1);

    case NGX_HTTP_VOICE_ACT_FAIL:
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "voice: client sent %s before the session started",
                      ngx_http_voice_event_name(event));

        return ngx_http_voice_session_error(s, "PROTOCOL_VIOLATION",
                   (in && in->msg && in->msg->reason[0])
                   ? in->msg->reason
                   : "session.start must be the first message", 0);

    case NGX_HTTP_VOICE_ACT_FAIL_FORMAT:
        return ngx_http_voice_session_error(s, "UNSUPPORTED_FORMAT",
                                            in->msg->reason, 0);

    case NGX_HTTP_VOICE_ACT_ERROR_INVALID:
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "voice: %s is not valid in state %s",
                      ngx_http_voice_event_name(event),
                      ngx_http_voice_state_name(s->state));

        *ngx_snprintf(text, sizeof(text) - 1, "%s is not valid in state %s",
                      ngx_http_voice_event_name(event),
                      ngx_http_voice_state_name(s->state)) = '\0';

        return ngx_http_voice_session_error(s, "PROTOCOL_VIOLATION",
                                            (char *) text, 1);

    case NGX_HTTP_VOICE_ACT_INFO_SHUTDOWN:
        return ngx_http_voice_session_info(s, "SERVER_SHUTDOWN",
                                           "the server is shutting down");

    case NGX_HTTP_VOICE_ACT_CLOSE_NORMAL:
        s->ending = 1;
        return ngx_http_voice_session_end(s);

    case NGX_HTTP_VOICE_ACT_CLOSE_POLICY:
        s->fail = 1;
        return ngx_http_voice_session_close(s, NGX_HTTP_VOICE_WS_POLICY,
                                            "policy violation");

    case NGX_HTTP_VOICE_ACT_CLOSE_AWAY:
        return ngx_http_voice_session_close(s, NGX_HTTP_VOICE_WS_GOING_AWAY,
                   (event == NGX_HTTP_VOICE_EV_IDLE_TIMEOUT)
                   ? "idle timeout" : "server shutting down");

    case NGX_HTTP_VOICE_ACT_CLOSE_REPLY:
        if (s->ending) {
            /* session.end came first: its flush finishes, then we answer */
            return NGX_OK;
        }

        code = (s->peer_code == NGX_HTTP_VOICE_WS_NO_STATUS)
               ? NGX_HTTP_VOICE_WS_NORMAL : s->peer_code;

        return ngx_http_voice_session_close(s, code, "");

    case NGX_HTTP_VOICE_ACT_LISTEN:
        return ngx_http_voice_session_listen(s);

    case NGX_HTTP_VOICE_ACT_PARTIAL:
        return ngx_http_voice_stt_send(s->stt, 0, in->data, in->len);

    case NGX_HTTP_VOICE_ACT_FINAL:
        s->metrics.final = ngx_http_voice_media_now();

        if (ngx_http_voice_stt_send(s->stt, 1, in->data, in->len) != NGX_OK) {
            return NGX_ERROR;
        }

        /* the turn's text is the language model's cue */

        return s->llm ? ngx_http_voice_llm_user_turn(s->llm, s->stt->turn,
                                                     in->data, in->len)
                      : NGX_OK;

    case NGX_HTTP_VOICE_ACT_TEXT_TURN:
        s->metrics.heard = ngx_http_voice_media_now();
        s->metrics.voice = 0;

        return s->llm ? ngx_http_voice_llm_user_turn(s->llm, s->turn,
                                                     in->msg->text,
                                                     in->msg->text_len)
                      : NGX_OK;

    case NGX_HTTP_VOICE_ACT_THINK:
        if (s->llm->input) {
            s->reply = s->metrics;
            s->reply.think = ngx_http_voice_media_now();
            s->reply.turn = s->llm->input->turn;
            s->reply.token = 0;
            s->reply.phrase = 0;
            s->reply.audio = 0;
            s->reply.sent = 0;
        }

        if (s->tts && s->llm->input
            && ngx_http_voice_tts_begin(s->tts, s->llm->input->turn,
                                        &s->llm->reply)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_voice_llm_think(s->llm);

    case NGX_HTTP_VOICE_ACT_DELTA:
        if (s->reply.token == 0) {
            s->reply.token = ngx_http_voice_media_now();
        }

        if (ngx_http_voice_llm_delta(s->llm, in->data, in->len) != NGX_OK) {
            return NGX_ERROR;
        }

        return s->tts ? ngx_http_voice_tts_text(s->tts) : NGX_OK;

    case NGX_HTTP_VOICE_ACT_TOOL:
        return ngx_http_voice_llm_run_tools(s->llm);

    case NGX_HTTP_VOICE_ACT_TOOL_RESULT:
        return ngx_http_voice_llm_tools_done(s->llm);

    case NGX_HTTP_VOICE_ACT_REPLY_DONE:
        if (ngx_http_voice_llm_finish(s->llm) != NGX_OK) {
            return NGX_ERROR;
        }

        /* a reply in text only is over with its text */

        return s->tts ? ngx_http_voice_tts_end(s->tts)
                      : ngx_http_voice_session_follow(s,
                                              NGX_HTTP_VOICE_EV_REPLY_SPOKEN);

    case NGX_HTTP_VOICE_ACT_AUDIO_DONE:
        if (!s->reply.sent && ngx_http_voice_session_metrics(s) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_voice_session_spoken(s);

    case NGX_HTTP_VOICE_ACT_METRICS:
        s->reply.audio = ngx_http_voice_media_now();
        return ngx_http_voice_session_metrics(s);

    case NGX_HTTP_VOICE_ACT_BARGE_IN:
        return ngx_http_voice_media_barge_in(s, event);

    case NGX_HTTP_VOICE_ACT_SILENCE:
        s->reason = (event == NGX_HTTP_VOICE_EV_CANCEL) ? "cancel"
                                                         : "barge_in";

        if (ngx_http_voice_media_drop(s) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_voice_session_follow(s, NGX_HTTP_VOICE_EV_SILENCED);

    case NGX_HTTP_VOICE_ACT_CANCEL_REPLY:
        return ngx_http_voice_session_cancel_reply(s,
                   (event == NGX_HTTP_VOICE_EV_SILENCED) ? s->reason
                   : (event == NGX_HTTP_VOICE_EV_USER_TURN) ? "barge_in"
                   : "cancel");

    case NGX_HTTP_VOICE_ACT_SETTLE:
        return ngx_http_voice_session_follow(s, NGX_HTTP_VOICE_EV_CANCELLED);

    case NGX_HTTP_VOICE_ACT_ERROR_LLM:
        if (s->tts) {
            if (ngx_http_voice_media_drop(s) != NGX_OK) {
                return NGX_ERROR;
            }

            ngx_http_voice_tts_cancel(s->tts);
        }

        return ngx_http_voice_llm_error(s->llm);

    case NGX_HTTP_VOICE_ACT_ERROR_TTS:
        return ngx_http_voice_session_error(s, "TTS_FAIL",
                                            (char *) in->data, 1);

    case NGX_HTTP_VOICE_ACT_ERROR_STT:
        return ngx_http_voice_session_error(s, "STT_FAIL", (char *) in->data,
                   event == NGX_HTTP_VOICE_EV_STT_ERROR);

    case NGX_HTTP_VOICE_ACT_CLOSE_INTERNAL:
        return ngx_http_voice_session_close(s, NGX_HTTP_VOICE_WS_INTERNAL,
                                            "speech recognition failed");

    default: /* NGX_HTTP_VOICE_ACT_NONE */
        return NGX_OK;
    }
}


/*
 * How long each stage of the turn took: the transcript after the user's
 * speech ended, the first token after the reply began, the first audio
 * after the first phrase was asked for, and the first audio after the
 * user's speech (or text) ended.
 */

static ngx_int_t
ngx_http_voice_session_metrics(ngx_http_voice_session_t *s)
{
    u_char                     buf[256];
    double                     ms[4];
    ngx_http_voice_metrics_t  *m;

    m = &s->reply;
    m->sent = 1;

    ms[0] = (m->voice && m->final >= m->heard && m->heard)
            ? (double) (m->final - m->heard) / 1000 : -1;
    ms[1] = m->token ? (double) (m->token - m->think) / 1000 : -1;
    ms[2] = (m->audio && m->phrase) ? (double) (m->audio - m->phrase) / 1000
                                    : -1;
    ms[3] = (m->audio && m->heard) ? (double) (m->audio - m->heard) / 1000
                                   : -1;

    return ngx_http_voice_session_text(s, buf,
               ngx_http_voice_protocol_metrics(buf, sizeof(buf), m->turn,
                                               ms));
}


/* the reply has been heard to its end: memory keeps all of it */

static ngx_int_t
ngx_http_voice_session_spoken(ngx_http_voice_session_t *s)
{
    u_char      buf[64];
    ngx_uint_t  turn;

    turn = s->llm->turn;

    if (s->tts) {
        if (s->tts->speaking
            && ngx_http_voice_session_text(s, buf,
                   ngx_http_voice_protocol_audio_done(buf, sizeof(buf),
                                                      turn))
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_http_voice_tts_cancel(s->tts);
    }

    return ngx_http_voice_llm_remember(s->llm, s->llm->reply.len);
}


/*
 * A reply is cut short: its audio stops (unless a barge-in stopped it
 * already), its streams are torn down, and the client learns what of it
 * was heard, which is all that memory keeps.
 */

static ngx_int_t
ngx_http_voice_session_cancel_reply(ngx_http_voice_session_t *s,
    const char *reason)
{
    size_t  spoken;

    if (s->llm == NULL) {
        return NGX_OK;
    }

    spoken = 0;

    if (s->tts && s->tts->turn) {
        if (!s->tts->silenced && ngx_http_voice_media_drop(s) != NGX_OK) {
            return NGX_ERROR;
        }

        spoken = s->tts->spoken;
        ngx_http_voice_tts_cancel(s->tts);
    }

    return ngx_http_voice_llm_interrupt(s->llm, reason, spoken);
}


static ngx_int_t
ngx_http_voice_session_started(ngx_http_voice_session_t *s,
    ngx_http_voice_message_t *msg)
{
    u_char  buf[NGX_HTTP_VOICE_MAX_JSON];
    size_t  n;

    s->input = msg->input;
    s->output = msg->output;

    if (msg->session_id_len) {
        s->id.len = msg->session_id_len;
        ngx_memcpy(s->id_data, msg->session_id, msg->session_id_len);
    }

    if (ngx_http_voice_media_init(s) != NGX_OK) {
        s->fail = 1;
        (void) ngx_http_voice_session_error(s, "INTERNAL",
                                            "audio could not be set up", 0);
        (void) ngx_http_voice_session_close(s, NGX_HTTP_VOICE_WS_INTERNAL,
                                            "internal error");
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                  "voice: session \"%V\" started, %s %ui Hz in, %s %ui Hz out",
                  &s->id, ngx_http_voice_encoding_name(s->input.encoding),
                  s->input.sample_rate,
                  ngx_http_voice_encoding_name(s->output.encoding),
                  s->output.sample_rate);

    n = ngx_http_voice_protocol_started(buf, sizeof(buf), &s->id, &s->input,
                                        &s->output);

    return ngx_http_voice_session_text(s, buf, n);
}


/* the agent pipeline: the user's speech goes to the STT */

static ngx_int_t
ngx_http_voice_session_listen(ngx_http_voice_session_t *s)
{
    if (s->conf->llm.engine != NGX_HTTP_VOICE_LLM_OFF) {
        s->llm = ngx_http_voice_llm_open(&s->conf->llm, s, s->request);

        if (s->llm == NULL) {
            s->fail = 1;
            (void) ngx_http_voice_session_error(s, "INTERNAL",
                       "the language model could not be set up", 0);
            (void) ngx_http_voice_session_close(s,
                       NGX_HTTP_VOICE_WS_INTERNAL, "internal error");
            return NGX_ERROR;
        }
    }

    if (s->llm && s->conf->tts.engine != NGX_HTTP_VOICE_TTS_OFF) {
        s->tts = ngx_http_voice_tts_open(&s->conf->tts, s, s->request,
                                         s->encoder.rate,
                                         s->conf->resample_quality);

        if (s->tts == NULL) {
            ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                          "voice: speech synthesis could not start");

            s->fail = 1;
            (void) ngx_http_voice_session_error(s, "TTS_FAIL",
                       "speech synthesis could not start", 0);
            (void) ngx_http_voice_session_close(s,
                       NGX_HTTP_VOICE_WS_INTERNAL, "internal error");
            return NGX_ERROR;
        }

        /* the engine pauses with half the queue's bound waiting */
        s->tts->high = s->conf->playout_buffer * s->encoder.rate / 2000;
    }

    if (s->conf->stt.engine == NGX_HTTP_VOICE_STT_OFF) {
        return NGX_OK;
    }

    s->stt = ngx_http_voice_stt_open(&s->conf->stt, s, s->request);

    if (s->stt == NULL) {
        ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                      "voice: speech recognition could not start");

        (void) ngx_http_voice_session_error(s, "STT_FAIL",
                   "speech recognition could not start", 0);
        (void) ngx_http_voice_session_close(s, NGX_HTTP_VOICE_WS_INTERNAL,
                                            "internal error");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* session.end: once all that was due has played out, say so and close */

ngx_int_t
ngx_http_voice_session_end(ngx_http_voice_session_t *s)
{
    u_char      buf[64];
    size_t      n;
    ngx_int_t   rc;
    ngx_uint_t  code;

    if (!s->ending || s->close_queued) {
        return NGX_OK;
    }

    rc = ngx_http_voice_media_flush(s);

    if (rc != NGX_OK) {
        return (rc == NGX_AGAIN) ? NGX_OK : NGX_ERROR;
    }

    n = ngx_http_voice_protocol_state(buf, sizeof(buf), "closed");

    if (ngx_http_voice_session_text(s, buf, n) != NGX_OK) {
        return NGX_ERROR;
    }

    code = (s->peer_closed && s->peer_code != NGX_HTTP_VOICE_WS_NO_STATUS)
           ? s->peer_code : NGX_HTTP_VOICE_WS_NORMAL;

    return ngx_http_voice_session_close(s, code, "");
}


ngx_int_t
ngx_http_voice_session_error(ngx_http_voice_session_t *s, const char *code,
    const char *message, ngx_uint_t recoverable)
{
    u_char  buf[NGX_HTTP_VOICE_MAX_JSON];
    size_t  n;

    n = ngx_http_voice_protocol_error(buf, sizeof(buf), code, message,
                                      recoverable);

    if (n == 0) {
        /* the message itself could not be encoded */
        n = ngx_http_voice_protocol_error(buf, sizeof(buf), code,
                                          "invalid message", recoverable);
    }

    return ngx_http_voice_session_text(s, buf, n);
}


ngx_int_t
ngx_http_voice_session_info(ngx_http_voice_session_t *s, const char *code,
    const char *message)
{
    u_char  buf[NGX_HTTP_VOICE_MAX_JSON];
    size_t  n;

    n = ngx_http_voice_protocol_info(buf, sizeof(buf), code, message);

    return ngx_http_voice_session_text(s, buf, n);
}


/*
 * A voice.v1 event for the client.  Phone gateways understand none of
 * them: there, what matters is logged and the rest goes unsaid.
 */

ngx_int_t
ngx_http_voice_session_text(ngx_http_voice_session_t *s, u_char *buf,
    size_t n)
{
    if (s->conf->dialect != NGX_HTTP_VOICE_DIALECT_VOICE || n == 0) {
        return NGX_OK;
    }

    return (ngx_http_voice_session_queue(s, NGX_HTTP_VOICE_WS_TEXT, buf, n,
                                         NULL, 0)
            == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


/* queues our close frame: nothing is sent after it */

ngx_int_t
ngx_http_voice_session_close(ngx_http_voice_session_t *s, ngx_uint_t code,
    const char *reason)
{
    u_char  buf[NGX_HTTP_VOICE_WS_MAX_CONTROL];
    size_t  len;

    if (s->close_queued) {
        return NGX_OK;
    }

    len = ngx_min(ngx_strlen(reason), sizeof(buf) - 2);

    buf[0] = (u_char) (code >> 8);
    buf[1] = (u_char) code;
    ngx_memcpy(buf + 2, reason, len);

    if (ngx_http_voice_session_queue(s, NGX_HTTP_VOICE_WS_CLOSE, buf, len + 2,
                                     NULL, 0)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    s->close_queued = 1;

    /* the echo line and the playout queue have nothing left to say */

    ngx_http_voice_media_stop(s);

    return NGX_OK;
}


/*
 * Queues one frame, its payload from data or moved from src.  Audio is
 * dropped once the queue nears its bound, control frames keep a reserve.
 * NGX_OK, NGX_DECLINED (dropped), or NGX_ERROR once the session is over.
 */

ngx_int_t
ngx_http_voice_session_queue(ngx_http_voice_session_t *s, ngx_uint_t opcode,
    u_char *data, size_t len, ngx_http_voice_ring_t *src, ngx_uint_t audio)
{
    u_char  header[NGX_HTTP_VOICE_WS_MAX_HEADER];
    size_t  n, limit;

    if (s->close_queued) {
        goto drop;
    }

    n = ngx_http_voice_ws_header(header, opcode, 1, len, NULL);

    limit = s->conf->send_buffer;

    /* audio waits only while the socket itself is full */

    if (audio && s->out.used && s->out.used + n + len > limit) {
        if (ngx_http_voice_session_flush(s) == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (s->out.used && s->out.used + n + len > limit) {

            if (s->last_drop == 0
                || ngx_current_msec - s->last_drop >= NGX_HTTP_VOICE_EPISODE)
            {
                ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                              "voice: client reads too slowly, "
                              "dropping audio");

                if (ngx_http_voice_session_info(s, "BACKPRESSURE",
                                                "client reads too slowly, "
                                                "audio dropped")
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            s->dropped++;
            s->last_drop = ngx_current_msec;

            goto drop;
        }
    }

    if (ngx_http_voice_ring_reserve(&s->out, n + len) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "voice: client does not read, outbound queue full");
        ngx_http_voice_session_finalize(s, NGX_ERROR);
        return NGX_ERROR;
    }

    (void) ngx_http_voice_ring_write(&s->out, header, n);

    if (src) {
        (void) ngx_http_voice_ring_move(&s->out, src, len);

    } else {
        (void) ngx_http_voice_ring_write(&s->out, data, len);
    }

    if (audio) {
        s->frames_out++;
    }

    return NGX_OK;

drop:

    if (src) {
        ngx_http_voice_ring_consume(src, len);
    }

    return NGX_DECLINED;
}


/*
 * Writes what is queued: NGX_OK when all is out, NGX_AGAIN when the socket
 * is full, NGX_ERROR once the session is over.
 */

static ngx_int_t
ngx_http_voice_session_flush(ngx_http_voice_session_t *s)
{
    u_char            *p;
    size_t             n;
    ssize_t            sent;
    ngx_connection_t  *c;

    if (s->done) {
        return NGX_ERROR;
    }

    c = s->connection;

    /* the 101 response may still wait in nginx's own output chain */

    if (c->buffered) {
        if (ngx_http_output_filter(s->request, NULL) == NGX_ERROR) {
            ngx_http_voice_session_finalize(s, NGX_ERROR);
            return NGX_ERROR;
        }

        if (c->buffered) {
            return NGX_AGAIN;
        }
    }

    while (s->out.used) {
        n = ngx_http_voice_ring_span(&s->out, &p);

        sent = c->send(c, p, n);

        if (sent == NGX_ERROR) {
            c->error = 1;
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "voice: writing to the client failed");
            ngx_http_voice_session_finalize(s, NGX_ERROR);
            return NGX_ERROR;
        }

        if (sent == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        ngx_http_voice_ring_consume(&s->out, sent);
        s->wrote = 1;

        if ((size_t) sent < n) {
            return NGX_AGAIN;
        }
    }

    return NGX_OK;
}


/* flushes and sets the timers; NGX_OK, or NGX_ERROR once it is over */

ngx_int_t
ngx_http_voice_session_send(ngx_http_voice_session_t *s)
{
    ngx_int_t          rc;
    ngx_event_t       *wev;
    ngx_connection_t  *c;

    rc = ngx_http_voice_session_flush(s);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    c = s->connection;
    wev = c->write;

    if (rc == NGX_AGAIN) {

        /* the send timer measures how long no byte could be written */

        if (s->wrote || !wev->timer_set) {
            if (wev->timer_set) {
                ngx_del_timer(wev);
            }

            ngx_add_timer(wev, s->conf->send_timeout);
        }

        s->wrote = 0;

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_voice_session_finalize(s, NGX_ERROR);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    s->wrote = 0;

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    if (s->close_queued) {

        if (s->fail || s->peer_closed) {
            ngx_http_voice_session_finalize(s, NGX_DONE);
            return NGX_ERROR;
        }

        /* the client has voice_send_timeout to answer our close */

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        ngx_add_timer(c->read, s->conf->send_timeout);
    }

    return NGX_OK;
}


static void
ngx_http_voice_session_finalize(ngx_http_voice_session_t *s, ngx_int_t rc)
{
    ngx_connection_t  *c;

    if (s->done) {
        return;
    }

    s->done = 1;
    c = s->connection;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "voice: session done, frames in:%ui out:%ui dropped:%ui "
                   "rc:%i", s->frames_in, s->frames_out, s->dropped, rc);

    if (s->dropped) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "voice: session \"%V\" dropped %ui of %ui audio frames",
                      &s->id, s->dropped, s->dropped + s->frames_out);
    }

    c->idle = 0;
    c->read->handler = s->request_handler;

    /*
     * The providers stop now: a tool's subrequest may keep the request's
     * pool, and their cleanups with it, alive after the session.
     */

    if (s->llm) {
        ngx_http_voice_llm_close(s->llm);
    }

    if (s->tts) {
        ngx_http_voice_tts_close(s->tts);
    }

    if (s->stt) {
        ngx_http_voice_stt_close(s->stt);
    }

    ngx_http_voice_media_cleanup(s);
    ngx_http_voice_ring_free(&s->message);
    ngx_http_voice_ring_free(&s->out);

    /*
     * Finalizing may free the request's pool, and the session with it:
     * it is done from a posted event, so that whatever called us can still
     * look at s->done on the way out.
     */

    s->rc = rc;
    ngx_post_event(&s->close_event, &ngx_posted_events);
}


static void
ngx_http_voice_session_finalizer(ngx_event_t *ev)
{
    ngx_connection_t          *c;
    ngx_http_voice_session_t  *s;

    s = ev->data;
    c = s->connection;

    ngx_http_finalize_request(s->request, s->rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_voice_session_cleanup(void *data)
{
    ngx_http_voice_session_t  *s = data;

    /* nginx may end the request first, at shutdown or on an error */

    if (s->close_event.posted) {
        ngx_delete_posted_event(&s->close_event);
    }

    ngx_http_voice_media_cleanup(s);

    ngx_http_voice_ring_free(&s->message);
    ngx_http_voice_ring_free(&s->out);
}
