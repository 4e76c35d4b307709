
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

    ON(CONNECTED,    SESSION_START,  STREAMING,    A(SEND_STARTED)),
    ON(CONNECTED,    AGENT_START,    LISTENING,    A(SEND_STARTED),
                                                   A(LISTEN)),
    ON(CONNECTED,    NOTICE,         CONNECTED,    A(NONE)),
    ON(CONNECTED,    BAD_FORMAT,     CLOSED,       A(FAIL_FORMAT),
                                                   A(CLOSE_POLICY)),
    ON(CONNECTED,    AUDIO,          CLOSED,       A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,    COMMIT,         CLOSED,       A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,    MUTE,           CLOSED,       A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,    UNMUTE,         CLOSED,       A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,    TEXT_INPUT,     CLOSED,       A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,    CANCEL,         CLOSED,       A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,    SESSION_END,    CLOSED,       A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,    BAD_MESSAGE,    CLOSED,       A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,    MARK,           CLOSED,       A(FAIL), A(CLOSE_POLICY)),
    ON(CONNECTED,    DTMF,           CLOSED,       A(FAIL), A(CLOSE_POLICY)),

    /* the echo pipeline, before the user has been heard */

    ON(STREAMING,    AUDIO,          STREAMING,    A(AUDIO)),
    ON(STREAMING,    SPEECH_STARTED, TRANSCRIBING, A(SPEECH)),
    ON(STREAMING,    COMMIT,         STREAMING,    A(END_TURN)),
    ON(STREAMING,    MUTE,           STREAMING,    A(MUTE)),
    ON(STREAMING,    UNMUTE,         STREAMING,    A(UNMUTE)),
    ON(STREAMING,    TEXT_INPUT,     STREAMING,    A(NONE)),
    ON(STREAMING,    CANCEL,         STREAMING,    A(CANCEL)),
    ON(STREAMING,    MARK,           STREAMING,    A(MARK)),
    ON(STREAMING,    DTMF,           STREAMING,    A(DTMF)),
    ON(STREAMING,    NOTICE,         STREAMING,    A(NONE)),
    ON(STREAMING,    SESSION_START,  STREAMING,    A(REJECT)),
    ON(STREAMING,    AGENT_START,    STREAMING,    A(REJECT)),
    ON(STREAMING,    BAD_FORMAT,     STREAMING,    A(REJECT)),
    ON(STREAMING,    BAD_MESSAGE,    STREAMING,    A(REJECT)),
    ON(STREAMING,    SESSION_END,    CLOSED,       A(CLOSE_NORMAL)),

    /* waiting for the user to speak */

    ON(LISTENING,    AUDIO,          LISTENING,    A(AUDIO)),
    ON(LISTENING,    SPEECH_STARTED, TRANSCRIBING, A(SPEECH)),
    ON(LISTENING,    SPEECH_ENDED,   LISTENING,    A(SPEECH), A(END_TURN)),
    ON(LISTENING,    MAX_DURATION,   LISTENING,    A(FAIL_DURATION),
                                                   A(END_TURN)),
    ON(LISTENING,    COMMIT,         LISTENING,    A(END_TURN)),
    ON(LISTENING,    MUTE,           LISTENING,    A(MUTE)),
    ON(LISTENING,    UNMUTE,         LISTENING,    A(UNMUTE)),
    ON(LISTENING,    TEXT_INPUT,     LISTENING,    A(TEXT_TURN)),
    ON(LISTENING,    USER_TURN,      THINKING,     A(THINK)),
    ON(LISTENING,    CANCEL,         LISTENING,    A(CANCEL)),
    ON(LISTENING,    MARK,           LISTENING,    A(MARK)),
    ON(LISTENING,    DTMF,           LISTENING,    A(DTMF)),
    ON(LISTENING,    NOTICE,         LISTENING,    A(NONE)),
    ON(LISTENING,    TRANSCRIPT_PARTIAL, LISTENING, A(PARTIAL)),
    ON(LISTENING,    TRANSCRIPT_FINAL, LISTENING,  A(FINAL)),
    ON(LISTENING,    STT_SPEECH,     LISTENING,    A(NONE)),
    ON(LISTENING,    STT_ERROR,      LISTENING,    A(ERROR_STT)),
    ON(LISTENING,    STT_FAILED,     CLOSED,       A(ERROR_STT),
                                                   A(CLOSE_INTERNAL)),
    ON(LISTENING,    SESSION_START,  LISTENING,    A(REJECT)),
    ON(LISTENING,    AGENT_START,    LISTENING,    A(REJECT)),
    ON(LISTENING,    BAD_FORMAT,     LISTENING,    A(REJECT)),
    ON(LISTENING,    BAD_MESSAGE,    LISTENING,    A(REJECT)),
    ON(LISTENING,    SESSION_END,    CLOSED,       A(CLOSE_NORMAL)),

    /*
     * the user is speaking: silence, input.commit or a cap ends the turn;
     * the STT's final may come before that, or after
     */

    ON(TRANSCRIBING, AUDIO,          TRANSCRIBING, A(AUDIO)),
    ON(TRANSCRIBING, SPEECH_ENDED,   LISTENING,    A(SPEECH), A(END_TURN)),
    ON(TRANSCRIBING, COMMIT,         LISTENING,    A(END_TURN)),
    ON(TRANSCRIBING, MAX_DURATION,   LISTENING,    A(FAIL_DURATION),
                                                   A(END_TURN)),
    ON(TRANSCRIBING, MUTE,           TRANSCRIBING, A(MUTE)),
    ON(TRANSCRIBING, UNMUTE,         TRANSCRIBING, A(UNMUTE)),
    ON(TRANSCRIBING, TEXT_INPUT,     TRANSCRIBING, A(TEXT_TURN)),
    ON(TRANSCRIBING, USER_TURN,      THINKING,     A(THINK)),
    ON(TRANSCRIBING, CANCEL,         TRANSCRIBING, A(CANCEL)),
    ON(TRANSCRIBING, MARK,           TRANSCRIBING, A(MARK)),
    ON(TRANSCRIBING, DTMF,           TRANSCRIBING, A(DTMF)),
    ON(TRANSCRIBING, NOTICE,         TRANSCRIBING, A(NONE)),
    ON(TRANSCRIBING, TRANSCRIPT_PARTIAL, TRANSCRIBING, A(PARTIAL)),
    ON(TRANSCRIBING, TRANSCRIPT_FINAL, TRANSCRIBING, A(FINAL)),
    ON(TRANSCRIBING, STT_SPEECH,     TRANSCRIBING, A(NONE)),
    ON(TRANSCRIBING, STT_ERROR,      TRANSCRIBING, A(ERROR_STT)),
    ON(TRANSCRIBING, STT_FAILED,     CLOSED,       A(ERROR_STT),
                                                   A(CLOSE_INTERNAL)),
    ON(TRANSCRIBING, SESSION_START,  TRANSCRIBING, A(REJECT)),
    ON(TRANSCRIBING, AGENT_START,    TRANSCRIBING, A(REJECT)),
    ON(TRANSCRIBING, BAD_FORMAT,     TRANSCRIBING, A(REJECT)),
    ON(TRANSCRIBING, BAD_MESSAGE,    TRANSCRIBING, A(REJECT)),
    ON(TRANSCRIBING, SESSION_END,    CLOSED,       A(CLOSE_NORMAL)),

    /*
     * a reply streams; the user may go on speaking (their audio still
     * goes to the STT), and a new turn or response.cancel stops it
     */

    ON(THINKING,     AUDIO,          THINKING,     A(AUDIO)),
    ON(THINKING,     SPEECH_STARTED, THINKING,     A(SPEECH)),
    ON(THINKING,     SPEECH_ENDED,   THINKING,     A(SPEECH), A(END_TURN)),
    ON(THINKING,     COMMIT,         THINKING,     A(END_TURN)),
    ON(THINKING,     MAX_DURATION,   THINKING,     A(FAIL_DURATION),
                                                   A(END_TURN)),
    ON(THINKING,     TRANSCRIPT_PARTIAL, THINKING, A(PARTIAL)),
    ON(THINKING,     TRANSCRIPT_FINAL, THINKING,   A(FINAL)),
    ON(THINKING,     TEXT_INPUT,     THINKING,     A(TEXT_TURN)),
    ON(THINKING,     USER_TURN,      THINKING,     A(CANCEL_REPLY),
                                                   A(THINK)),
    ON(THINKING,     LLM_TOKEN,      THINKING,     A(DELTA)),
    ON(THINKING,     LLM_TOOL_CALL,  THINKING,     A(TOOL)),
    ON(THINKING,     TOOL_DONE,      THINKING,     A(TOOL_RESULT)),
    ON(THINKING,     LLM_DONE,       THINKING,     A(REPLY_DONE)),
    ON(THINKING,     LLM_FAILED,     LISTENING,    A(ERROR_LLM)),
    ON(THINKING,     LLM_TIMEOUT,    LISTENING,    A(ERROR_LLM)),
    ON(THINKING,     TTS_AUDIO,      SPEAKING,     A(METRICS)),
    ON(THINKING,     TTS_FAILED,     THINKING,     A(ERROR_TTS)),
    ON(THINKING,     REPLY_SPOKEN,   LISTENING,    A(AUDIO_DONE)),
    ON(THINKING,     CANCEL,         LISTENING,    A(CANCEL),
                                                   A(CANCEL_REPLY)),
    ON(THINKING,     STT_SPEECH,     THINKING,     A(NONE)),
    ON(THINKING,     STT_ERROR,      THINKING,     A(ERROR_STT)),
    ON(THINKING,     STT_FAILED,     CLOSED,       A(ERROR_STT),
                                                   A(CLOSE_INTERNAL)),
    ON(THINKING,     MUTE,           THINKING,     A(MUTE)),
    ON(THINKING,     UNMUTE,         THINKING,     A(UNMUTE)),
    ON(THINKING,     MARK,           THINKING,     A(MARK)),
    ON(THINKING,     DTMF,           THINKING,     A(DTMF)),
    ON(THINKING,     NOTICE,         THINKING,     A(NONE)),
    ON(THINKING,     SESSION_START,  THINKING,     A(REJECT)),
    ON(THINKING,     AGENT_START,    THINKING,     A(REJECT)),
    ON(THINKING,     BAD_FORMAT,     THINKING,     A(REJECT)),
    ON(THINKING,     BAD_MESSAGE,    THINKING,     A(REJECT)),
    ON(THINKING,     SESSION_END,    CLOSED,       A(CANCEL_REPLY),
                                                   A(CLOSE_NORMAL)),

    /*
     * the reply is heard: its text may still stream; the user speaking
     * over it for long enough (or response.cancel) interrupts it, which
     * goes through interrupted (the queue is dropped) and cancelling (the
     * streams are torn down) back to listening, in one event-loop turn
     */

    ON(SPEAKING,     AUDIO,          SPEAKING,     A(AUDIO)),
    ON(SPEAKING,     SPEECH_STARTED, SPEAKING,     A(SPEECH), A(BARGE_IN)),
    ON(SPEAKING,     STT_SPEECH,     SPEAKING,     A(BARGE_IN)),
    ON(SPEAKING,     BARGE_IN,       INTERRUPTED,  A(SILENCE)),
    ON(SPEAKING,     CANCEL,         INTERRUPTED,  A(SILENCE)),
    ON(SPEAKING,     SPEECH_ENDED,   SPEAKING,     A(SPEECH), A(END_TURN)),
    ON(SPEAKING,     COMMIT,         SPEAKING,     A(END_TURN)),
    ON(SPEAKING,     MAX_DURATION,   SPEAKING,     A(FAIL_DURATION),
                                                   A(END_TURN)),
    ON(SPEAKING,     TRANSCRIPT_PARTIAL, SPEAKING, A(PARTIAL)),
    ON(SPEAKING,     TRANSCRIPT_FINAL, SPEAKING,   A(FINAL)),
    ON(SPEAKING,     TEXT_INPUT,     SPEAKING,     A(TEXT_TURN)),
    ON(SPEAKING,     USER_TURN,      THINKING,     A(CANCEL_REPLY),
                                                   A(THINK)),
    ON(SPEAKING,     LLM_TOKEN,      SPEAKING,     A(DELTA)),
    ON(SPEAKING,     LLM_TOOL_CALL,  SPEAKING,     A(TOOL)),
    ON(SPEAKING,     TOOL_DONE,      SPEAKING,     A(TOOL_RESULT)),
    ON(SPEAKING,     LLM_DONE,       SPEAKING,     A(REPLY_DONE)),
    ON(SPEAKING,     LLM_FAILED,     LISTENING,    A(ERROR_LLM)),
    ON(SPEAKING,     LLM_TIMEOUT,    LISTENING,    A(ERROR_LLM)),
    ON(SPEAKING,     TTS_FAILED,     SPEAKING,     A(ERROR_TTS)),
    ON(SPEAKING,     REPLY_SPOKEN,   LISTENING,    A(AUDIO_DONE)),
    ON(SPEAKING,     STT_ERROR,      SPEAKING,     A(ERROR_STT)),
    ON(SPEAKING,     STT_FAILED,     CLOSED,       A(ERROR_STT),
                                                   A(CLOSE_INTERNAL)),
    ON(SPEAKING,     MUTE,           SPEAKING,     A(MUTE)),
    ON(SPEAKING,     UNMUTE,         SPEAKING,     A(UNMUTE)),
    ON(SPEAKING,     MARK,           SPEAKING,     A(MARK)),
    ON(SPEAKING,     DTMF,           SPEAKING,     A(DTMF)),
    ON(SPEAKING,     NOTICE,         SPEAKING,     A(NONE)),
    ON(SPEAKING,     SESSION_START,  SPEAKING,     A(REJECT)),
    ON(SPEAKING,     AGENT_START,    SPEAKING,     A(REJECT)),
    ON(SPEAKING,     BAD_FORMAT,     SPEAKING,     A(REJECT)),
    ON(SPEAKING,     BAD_MESSAGE,    SPEAKING,     A(REJECT)),
    ON(SPEAKING,     SESSION_END,    CLOSED,       A(CANCEL_REPLY),
                                                   A(CLOSE_NORMAL)),

    ON(INTERRUPTED,  SILENCED,       CANCELLING,   A(CANCEL_REPLY),
                                                   A(SETTLE)),

    ON(CANCELLING,   CANCELLED,      LISTENING,    A(NONE)),

    /*
     * closing: whatever still arrives is dropped; a flush that takes too
     * long, or nginx quitting, cuts it short
     */

    ON(CLOSED,       AUDIO,          CLOSED,       A(NONE)),
    ON(CLOSED,       SESSION_START,  CLOSED,       A(NONE)),
    ON(CLOSED,       AGENT_START,    CLOSED,       A(NONE)),
    ON(CLOSED,       TRANSCRIPT_PARTIAL, CLOSED,   A(NONE)),
    ON(CLOSED,       TRANSCRIPT_FINAL, CLOSED,     A(NONE)),
    ON(CLOSED,       STT_SPEECH,     CLOSED,       A(NONE)),
    ON(CLOSED,       STT_ERROR,      CLOSED,       A(NONE)),
    ON(CLOSED,       STT_FAILED,     CLOSED,       A(NONE)),
    ON(CLOSED,       USER_TURN,      CLOSED,       A(NONE)),
    ON(CLOSED,       LLM_TOKEN,      CLOSED,       A(NONE)),
    ON(CLOSED,       LLM_TOOL_CALL,  CLOSED,       A(NONE)),
    ON(CLOSED,       TOOL_DONE,      CLOSED,       A(NONE)),
    ON(CLOSED,       LLM_DONE,       CLOSED,       A(NONE)),
    ON(CLOSED,       LLM_FAILED,     CLOSED,       A(NONE)),
    ON(CLOSED,       LLM_TIMEOUT,    CLOSED,       A(NONE)),
    ON(CLOSED,       TTS_AUDIO,      CLOSED,       A(NONE)),
    ON(CLOSED,       TTS_FAILED,     CLOSED,       A(NONE)),
    ON(CLOSED,       REPLY_SPOKEN,   CLOSED,       A(NONE)),
    ON(CLOSED,       BARGE_IN,       CLOSED,       A(NONE)),
    ON(CLOSED,       SILENCED,       CLOSED,       A(NONE)),
    ON(CLOSED,       CANCELLED,      CLOSED,       A(NONE)),
    ON(CLOSED,       COMMIT,         CLOSED,       A(NONE)),
    ON(CLOSED,       MUTE,           CLOSED,       A(NONE)),
    ON(CLOSED,       UNMUTE,         CLOSED,       A(NONE)),
    ON(CLOSED,       TEXT_INPUT,     CLOSED,       A(NONE)),
    ON(CLOSED,       CANCEL,         CLOSED,       A(NONE)),
    ON(CLOSED,       SESSION_END,    CLOSED,       A(NONE)),
    ON(CLOSED,       BAD_MESSAGE,    CLOSED,       A(NONE)),
    ON(CLOSED,       BAD_FORMAT,     CLOSED,       A(NONE)),
    ON(CLOSED,       SPEECH_STARTED, CLOSED,       A(NONE)),
    ON(CLOSED,       SPEECH_ENDED,   CLOSED,       A(NONE)),
    ON(CLOSED,       MAX_DURATION,   CLOSED,       A(NONE)),
    ON(CLOSED,       NOTICE,         CLOSED,       A(NONE)),
    ON(CLOSED,       MARK,           CLOSED,       A(MARK)),
    ON(CLOSED,       DTMF,           CLOSED,       A(NONE)),
    ON(CLOSED,       IDLE_TIMEOUT,   CLOSED,       A(CLOSE_AWAY)),
    ON(CLOSED,       SHUTDOWN,       CLOSED,       A(CLOSE_AWAY)),
    ON(CLOSED,       PEER_CLOSE,     CLOSED,       A(CLOSE_REPLY)),
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
    [ST(CONNECTED)]    = { ST(CONNECTED),    { A(ERROR_INVALID) } },
    [ST(STREAMING)]    = { ST(STREAMING),    { A(ERROR_INVALID) } },
    [ST(LISTENING)]    = { ST(LISTENING),    { A(ERROR_INVALID) } },
    [ST(TRANSCRIBING)] = { ST(TRANSCRIBING), { A(ERROR_INVALID) } },
    [ST(THINKING)]     = { ST(THINKING),     { A(ERROR_INVALID) } },
    [ST(SPEAKING)]     = { ST(SPEAKING),     { A(ERROR_INVALID) } },
    [ST(INTERRUPTED)]  = { ST(INTERRUPTED),  { A(ERROR_INVALID) } },
    [ST(CANCELLING)]   = { ST(CANCELLING),   { A(ERROR_INVALID) } },
    [ST(CLOSED)]       = { ST(CLOSED),       { A(ERROR_INVALID) } },
};


static const char  *ngx_http_voice_state_names[ST(MAX)] = {
    [ST(NONE)]            = "unknown",
    [ST(CONNECTED)]       = "connected",
    [ST(STREAMING)]       = "streaming",
    [ST(LISTENING)]       = "listening",
    [ST(TRANSCRIBING)]    = "transcribing",
    [ST(THINKING)]        = "thinking",
    [ST(SPEAKING)]        = "speaking",
    [ST(INTERRUPTED)]     = "interrupted",
    [ST(CANCELLING)]      = "cancelling",
    [ST(CLOSED)]          = "closed",
};


static const char  *ngx_http_voice_event_names[EV(MAX)] = {
    [EV(SESSION_START)]   = "SESSION_START",
    [EV(AUDIO)]           = "AUDIO_FRAME",
    [EV(COMMIT)]          = "INPUT_COMMIT",
    [EV(MUTE)]            = "INPUT_MUTE",
    [EV(UNMUTE)]          = "INPUT_UNMUTE",
    [EV(TEXT_INPUT)]      = "TEXT_INPUT",
    [EV(CANCEL)]          = "CANCEL",
    [EV(SESSION_END)]     = "SESSION_END",
    [EV(BAD_MESSAGE)]     = "BAD_MESSAGE",
    [EV(BAD_FORMAT)]      = "BAD_FORMAT",
    [EV(SPEECH_STARTED)]  = "SPEECH_STARTED",
    [EV(SPEECH_ENDED)]    = "SPEECH_ENDED",
    [EV(MAX_DURATION)]    = "MAX_DURATION",
    [EV(NOTICE)]          = "NOTICE",
    [EV(MARK)]            = "MARK",
    [EV(DTMF)]            = "DTMF",
    [EV(PEER_CLOSE)]      = "PEER_CLOSE",
    [EV(IDLE_TIMEOUT)]    = "IDLE_TIMEOUT",
    [EV(SHUTDOWN)]        = "SHUTDOWN",
    [EV(AGENT_START)]     = "AGENT_START",
    [EV(TRANSCRIPT_PARTIAL)] = "TRANSCRIPT_PARTIAL",
    [EV(TRANSCRIPT_FINAL)] = "TRANSCRIPT_FINAL",
    [EV(STT_SPEECH)]      = "STT_SPEECH",
    [EV(STT_ERROR)]       = "STT_ERROR",
    [EV(STT_FAILED)]      = "STT_FAILED",
    [EV(USER_TURN)]       = "USER_TURN",
    [EV(LLM_TOKEN)]       = "LLM_TOKEN",
    [EV(LLM_TOOL_CALL)]   = "LLM_TOOL_CALL",
    [EV(TOOL_DONE)]       = "TOOL_DONE",
    [EV(LLM_DONE)]        = "LLM_DONE",
    [EV(LLM_FAILED)]      = "LLM_FAILED",
    [EV(LLM_TIMEOUT)]     = "LLM_TIMEOUT",
    [EV(TTS_AUDIO)]       = "TTS_AUDIO",
    [EV(TTS_FAILED)]      = "TTS_FAILED",
    [EV(REPLY_SPOKEN)]    = "REPLY_SPOKEN",
    [EV(BARGE_IN)]        = "BARGE_IN",
    [EV(SILENCED)]        = "SILENCED",
    [EV(CANCELLED)]       = "CANCELLED",
};


static const char  *ngx_http_voice_action_names[A(MAX)] = {
    [A(NONE)]             = "NONE",
    [A(SEND_STARTED)]     = "SEND_STARTED",
    [A(AUDIO)]            = "AUDIO",
    [A(SPEECH)]           = "SPEECH",
    [A(END_TURN)]         = "END_TURN",
    [A(FAIL_DURATION)]    = "FAIL_DURATION",
    [A(CANCEL)]           = "CANCEL",
    [A(MARK)]             = "MARK",
    [A(DTMF)]             = "DTMF",
    [A(MUTE)]             = "MUTE",
    [A(UNMUTE)]           = "UNMUTE",
    [A(REJECT)]           = "REJECT",
    [A(FAIL)]             = "FAIL",
    [A(FAIL_FORMAT)]      = "FAIL_FORMAT",
    [A(ERROR_INVALID)]    = "ERROR_INVALID",
    [A(INFO_SHUTDOWN)]    = "INFO_SHUTDOWN",
    [A(CLOSE_NORMAL)]     = "CLOSE_NORMAL",
    [A(CLOSE_POLICY)]     = "CLOSE_POLICY",
    [A(CLOSE_AWAY)]       = "CLOSE_AWAY",
    [A(CLOSE_REPLY)]      = "CLOSE_REPLY",
    [A(LISTEN)]           = "LISTEN",
    [A(PARTIAL)]          = "PARTIAL",
    [A(FINAL)]            = "FINAL",
    [A(ERROR_STT)]        = "ERROR_STT",
    [A(CLOSE_INTERNAL)]   = "CLOSE_INTERNAL",
    [A(TEXT_TURN)]        = "TEXT_TURN",
    [A(THINK)]            = "THINK",
    [A(DELTA)]            = "DELTA",
    [A(TOOL)]             = "TOOL",
    [A(TOOL_RESULT)]      = "TOOL_RESULT",
    [A(REPLY_DONE)]       = "REPLY_DONE",
    [A(CANCEL_REPLY)]     = "CANCEL_REPLY",
    [A(ERROR_LLM)]        = "ERROR_LLM",
    [A(ERROR_TTS)]        = "ERROR_TTS",
    [A(AUDIO_DONE)]       = "AUDIO_DONE",
    [A(BARGE_IN)]         = "BARGE_IN",
    [A(SILENCE)]          = "SILENCE",
    [A(SETTLE)]           = "SETTLE",
    [A(METRICS)]          = "METRICS",
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

    return ngx_http_voice_state_names[state]
           ? ngx_http_voice_state_names[state] : "unknown";
}


const char *
ngx_http_voice_event_name(ngx_http_voice_event_e event)
{
    if ((ngx_uint_t) event >= EV(MAX)) {
        return "UNKNOWN";
    }

    return ngx_http_voice_event_names[event]
           ? ngx_http_voice_event_names[event] : "UNKNOWN";
}


const char *
ngx_http_voice_action_name(ngx_http_voice_action_e action)
{
    if ((ngx_uint_t) action >= A(MAX)) {
        return "UNKNOWN";
    }

    return ngx_http_voice_action_names[action]
           ? ngx_http_voice_action_names[action] : "UNKNOWN";
}
