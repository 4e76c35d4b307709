
/*
 * The transition table.  Read it top to bottom: one block per state, one
 * line per event that is valid there.  Events valid in every state live in
 * the second table.  An empty cell is an invalid event.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_voice_state.h"


#define ST(name)   NGX_HTTP_VOICE_ST_##name
#define EV(name)   NGX_HTTP_VOICE_EV_##name
#define A(name)    NGX_HTTP_VOICE_ACT_##name

#define ON(state, event, next, ...)                                          \
    [ST(state)][EV(event)] = { ST(next), { __VA_ARGS__ } }

#define ANY(event, next, ...)                                                \
    [EV(event)] = { ST(next), { __VA_ARGS__ } }


static const ngx_http_voice_transition_t
    ngx_http_voice_table[ST(MAX)][EV(MAX)] =
{
    /* a new connection: session.start must come first */

    ON(CONNECTED,  SESSION_START, STREAMING,  A(SEND_STARTED)),
    ON(CONNECTED,  BAD_FORMAT,    CLOSED,     A(FAIL_FORMAT), A(CLOSE_POLICY)),
    ON(CONNECTED,  AUDIO,         CLOSED,     A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,  COMMIT,        CLOSED,     A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,  MUTE,          CLOSED,     A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,  UNMUTE,        CLOSED,     A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,  TEXT_INPUT,    CLOSED,     A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,  CANCEL,        CLOSED,     A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,  SESSION_END,   CLOSED,     A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,  BAD_MESSAGE,   CLOSED,     A(FAIL), A(CLOSE_POLICY)),

    /* the echo pipeline: audio comes back after voice_echo_delay */

    ON(STREAMING,  AUDIO,         STREAMING,  A(ECHO)),
    ON(STREAMING,  MUTE,          STREAMING,  A(MUTE)),
    ON(STREAMING,  UNMUTE,        STREAMING,  A(UNMUTE)),
    ON(STREAMING,  COMMIT,        STREAMING,  A(NONE)),
    ON(STREAMING,  TEXT_INPUT,    STREAMING,  A(NONE)),
    ON(STREAMING,  CANCEL,        STREAMING,  A(NONE)),
    ON(STREAMING,  SESSION_START, STREAMING,  A(REJECT)),
    ON(STREAMING,  BAD_FORMAT,    STREAMING,  A(REJECT)),
    ON(STREAMING,  BAD_MESSAGE,   STREAMING,  A(REJECT)),
    ON(STREAMING,  SESSION_END,   CLOSED,     A(CLOSE_NORMAL)),

    /* closing: whatever still arrives is dropped */

    ON(CLOSED,     AUDIO,         CLOSED),
    ON(CLOSED,     SESSION_START, CLOSED),
    ON(CLOSED,     COMMIT,        CLOSED),
    ON(CLOSED,     MUTE,          CLOSED),
    ON(CLOSED,     UNMUTE,        CLOSED),
    ON(CLOSED,     TEXT_INPUT,    CLOSED),
    ON(CLOSED,     CANCEL,        CLOSED),
    ON(CLOSED,     SESSION_END,   CLOSED),
    ON(CLOSED,     BAD_MESSAGE,   CLOSED),
    ON(CLOSED,     BAD_FORMAT,    CLOSED),
    ON(CLOSED,     IDLE_TIMEOUT,  CLOSED),
    ON(CLOSED,     SHUTDOWN,      CLOSED),
    ON(CLOSED,     PEER_CLOSE,    CLOSED,     A(CLOSE_REPLY)),
};


/* events that mean the same in every open state */

static const ngx_http_voice_transition_t
    ngx_http_voice_any[EV(MAX)] =
{
    ANY(PEER_CLOSE,    CLOSED,  A(CLOSE_REPLY)),
    ANY(IDLE_TIMEOUT,  CLOSED,  A(CLOSE_AWAY)),
    ANY(SHUTDOWN,      CLOSED,  A(INFO_SHUTDOWN), A(CLOSE_AWAY)),
};


static const ngx_http_voice_transition_t  ngx_http_voice_invalid[ST(MAX)] = {
    [ST(CONNECTED)] = { ST(CONNECTED), { A(ERROR_INVALID) } },
    [ST(STREAMING)] = { ST(STREAMING), { A(ERROR_INVALID) } },
    [ST(CLOSED)]    = { ST(CLOSED),    { A(ERROR_INVALID) } },
};


static const char  *ngx_http_voice_state_names[ST(MAX)] = {
    [ST(NONE)]      = "unknown",
    [ST(CONNECTED)] = "connected",
    [ST(STREAMING)] = "streaming",
    [ST(CLOSED)]    = "closed",
};


static const char  *ngx_http_voice_event_names[EV(MAX)] = {
    [EV(SESSION_START)] = "SESSION_START",
    [EV(AUDIO)]         = "AUDIO_FRAME",
    [EV(COMMIT)]        = "INPUT_COMMIT",
    [EV(MUTE)]          = "INPUT_MUTE",
    [EV(UNMUTE)]        = "INPUT_UNMUTE",
    [EV(TEXT_INPUT)]    = "TEXT_INPUT",
    [EV(CANCEL)]        = "CANCEL",
    [EV(SESSION_END)]   = "SESSION_END",
    [EV(BAD_MESSAGE)]   = "BAD_MESSAGE",
    [EV(BAD_FORMAT)]    = "BAD_FORMAT",
    [EV(PEER_CLOSE)]    = "PEER_CLOSE",
    [EV(IDLE_TIMEOUT)]  = "IDLE_TIMEOUT",
    [EV(SHUTDOWN)]      = "SHUTDOWN",
};


static const char  *ngx_http_voice_action_names[A(MAX)] = {
    [A(NONE)]          = "NONE",
    [A(SEND_STARTED)]  = "SEND_STARTED",
    [A(ECHO)]          = "ECHO",
    [A(MUTE)]          = "MUTE",
    [A(UNMUTE)]        = "UNMUTE",
    [A(REJECT)]        = "REJECT",
    [A(FAIL)]          = "FAIL",
    [A(FAIL_FORMAT)]   = "FAIL_FORMAT",
    [A(ERROR_INVALID)] = "ERROR_INVALID",
    [A(INFO_SHUTDOWN)] = "INFO_SHUTDOWN",
    [A(CLOSE_NORMAL)]  = "CLOSE_NORMAL",
    [A(CLOSE_POLICY)]  = "CLOSE_POLICY",
    [A(CLOSE_AWAY)]    = "CLOSE_AWAY",
    [A(CLOSE_REPLY)]   = "CLOSE_REPLY",
};


const ngx_http_voice_transition_t *
ngx_http_voice_state_next(ngx_http_voice_state_e state,
    ngx_http_voice_event_e event)
{
    const ngx_http_voice_transition_t  *t;

    if ((ngx_uint_t) state >= ST(MAX) || state == ST(NONE)) {
        state = ST(CLOSED);
    }

    if ((ngx_uint_t) event >= EV(MAX)) {
        return &ngx_http_voice_invalid[state];
    }

    t = &ngx_http_voice_table[state][event];

    if (t->next != ST(NONE)) {
        return t;
    }

    t = &ngx_http_voice_any[event];

    if (t->next != ST(NONE)) {
        return t;
    }

    return &ngx_http_voice_invalid[state];
}


const char *
ngx_http_voice_state_name(ngx_http_voice_state_e state)
{
    if ((ngx_uint_t) state >= ST(MAX)) {
        return "unknown";
    }

    return ngx_http_voice_state_names[state];
}


const char *
ngx_http_voice_event_name(ngx_http_voice_event_e event)
{
    if ((ngx_uint_t) event >= EV(MAX)) {
        return "UNKNOWN";
    }

    return ngx_http_voice_event_names[event];
}


const char *
ngx_http_voice_action_name(ngx_http_voice_action_e action)
{
    if ((ngx_uint_t) action >= A(MAX)) {
        return "UNKNOWN";
    }

    return ngx_http_voice_action_names[action];
}
