
/*
 * The conversation state machine: (state, event) -> (state, actions).
 *
 * Pure: no I/O, no nginx runtime.  The session feeds it events and carries
 * out the actions it returns, in order.  An event that is not valid in a
 * state never crashes anything: it yields the ERROR_INVALID action and
 * leaves the state as it was.
 */


#ifndef _NGX_HTTP_VOICE_STATE_H_INCLUDED_
#define _NGX_HTTP_VOICE_STATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef enum {
    NGX_HTTP_VOICE_ST_NONE = 0,          /* not a state: an empty cell */
    NGX_HTTP_VOICE_ST_CONNECTED,
    NGX_HTTP_VOICE_ST_STREAMING,
    NGX_HTTP_VOICE_ST_LISTENING,
    NGX_HTTP_VOICE_ST_TRANSCRIBING,
    NGX_HTTP_VOICE_ST_THINKING,
    NGX_HTTP_VOICE_ST_SPEAKING,
    NGX_HTTP_VOICE_ST_INTERRUPTED,
    NGX_HTTP_VOICE_ST_CANCELLING,
    NGX_HTTP_VOICE_ST_CLOSED,
    NGX_HTTP_VOICE_ST_MAX
} ngx_http_voice_state_e;


typedef enum {
    NGX_HTTP_VOICE_EV_SESSION_START = 0, /* session.start, valid */
    NGX_HTTP_VOICE_EV_AUDIO,             /* a binary frame */
    NGX_HTTP_VOICE_EV_COMMIT,            /* input.commit */
    NGX_HTTP_VOICE_EV_MUTE,              /* input.mute */
    NGX_HTTP_VOICE_EV_UNMUTE,            /* input.unmute */
    NGX_HTTP_VOICE_EV_TEXT_INPUT,        /* text.input */
    NGX_HTTP_VOICE_EV_CANCEL,            /* response.cancel */
    NGX_HTTP_VOICE_EV_SESSION_END,       /* session.end */
    NGX_HTTP_VOICE_EV_BAD_MESSAGE,       /* unparsable or unknown message */
    NGX_HTTP_VOICE_EV_BAD_FORMAT,        /* session.start, bad audio */
    NGX_HTTP_VOICE_EV_SPEECH_STARTED,    /* the VAD heard the user begin */
    NGX_HTTP_VOICE_EV_SPEECH_ENDED,      /* ... and then fall silent */
    NGX_HTTP_VOICE_EV_MAX_DURATION,      /* an utterance ran over its cap */
    NGX_HTTP_VOICE_EV_NOTICE,            /* a gateway message needing nothing */
    NGX_HTTP_VOICE_EV_MARK,              /* a gateway played up to a mark */
    NGX_HTTP_VOICE_EV_DTMF,              /* a key was pressed */
    NGX_HTTP_VOICE_EV_PEER_CLOSE,        /* close frame from the client */
    NGX_HTTP_VOICE_EV_IDLE_TIMEOUT,
    NGX_HTTP_VOICE_EV_SHUTDOWN,          /* nginx is quitting */
    NGX_HTTP_VOICE_EV_AGENT_START,       /* session.start, agent pipeline */
    NGX_HTTP_VOICE_EV_TRANSCRIPT_PARTIAL, /* the STT's hypothesis changed */
    NGX_HTTP_VOICE_EV_TRANSCRIPT_FINAL,  /* ... and the turn's text is final */
    NGX_HTTP_VOICE_EV_STT_SPEECH,        /* the STT heard speech begin */
    NGX_HTTP_VOICE_EV_STT_ERROR,         /* the STT failed and goes on */
    NGX_HTTP_VOICE_EV_STT_FAILED,        /* the STT gave up */
    NGX_HTTP_VOICE_EV_USER_TURN,         /* a turn's text: the LLM's cue */
    NGX_HTTP_VOICE_EV_LLM_TOKEN,         /* a piece of the reply */
    NGX_HTTP_VOICE_EV_LLM_TOOL_CALL,     /* the model calls a tool */
    NGX_HTTP_VOICE_EV_TOOL_DONE,         /* ... and the calls came back */
    NGX_HTTP_VOICE_EV_LLM_DONE,          /* the reply is complete */
    NGX_HTTP_VOICE_EV_LLM_FAILED,        /* it failed, retries are over */
    NGX_HTTP_VOICE_EV_LLM_TIMEOUT,       /* it took too long */
    NGX_HTTP_VOICE_EV_TTS_AUDIO,         /* the reply's first audio queued */
    NGX_HTTP_VOICE_EV_TTS_FAILED,        /* its speech failed, text goes on */
    NGX_HTTP_VOICE_EV_REPLY_SPOKEN,      /* ... it has all been played */
    NGX_HTTP_VOICE_EV_BARGE_IN,          /* the user speaks over it */
    NGX_HTTP_VOICE_EV_SILENCED,          /* its queued audio is gone */
    NGX_HTTP_VOICE_EV_CANCELLED,         /* its streams are torn down */
    NGX_HTTP_VOICE_EV_MAX
} ngx_http_voice_event_e;


typedef enum {
    NGX_HTTP_VOICE_ACT_NONE = 0,         /* ends an action list */
    NGX_HTTP_VOICE_ACT_SEND_STARTED,     /* session.started */
    NGX_HTTP_VOICE_ACT_AUDIO,            /* audio down the pipeline */
    NGX_HTTP_VOICE_ACT_SPEECH,           /* speech.started or .ended */
    NGX_HTTP_VOICE_ACT_END_TURN,         /* the user's turn is over */
    NGX_HTTP_VOICE_ACT_FAIL_DURATION,    /* error MAX_DURATION_EXCEEDED */
    NGX_HTTP_VOICE_ACT_CANCEL,           /* drop what is queued to play */
    NGX_HTTP_VOICE_ACT_MARK,             /* playout confirmed */
    NGX_HTTP_VOICE_ACT_DTMF,
    NGX_HTTP_VOICE_ACT_MUTE,
    NGX_HTTP_VOICE_ACT_UNMUTE,
    NGX_HTTP_VOICE_ACT_REJECT,           /* error PROTOCOL_VIOLATION */
    NGX_HTTP_VOICE_ACT_FAIL,             /* same, not recoverable */
    NGX_HTTP_VOICE_ACT_FAIL_FORMAT,      /* error UNSUPPORTED_FORMAT */
    NGX_HTTP_VOICE_ACT_ERROR_INVALID,    /* event not valid in this state */
    NGX_HTTP_VOICE_ACT_INFO_SHUTDOWN,    /* info SERVER_SHUTDOWN */
    NGX_HTTP_VOICE_ACT_CLOSE_NORMAL,     /* flush, then close 1000 */
    NGX_HTTP_VOICE_ACT_CLOSE_POLICY,     /* close 1008 */
    NGX_HTTP_VOICE_ACT_CLOSE_AWAY,       /* close 1001 */
    NGX_HTTP_VOICE_ACT_CLOSE_REPLY,      /* answer the client's close */
    NGX_HTTP_VOICE_ACT_LISTEN,           /* open the STT stream */
    NGX_HTTP_VOICE_ACT_PARTIAL,          /* transcript.partial */
    NGX_HTTP_VOICE_ACT_FINAL,            /* transcript.final */
    NGX_HTTP_VOICE_ACT_ERROR_STT,        /* error STT_FAIL */
    NGX_HTTP_VOICE_ACT_CLOSE_INTERNAL,   /* close 1011 */
    NGX_HTTP_VOICE_ACT_TEXT_TURN,        /* text.input as a user turn */
    NGX_HTTP_VOICE_ACT_THINK,            /* start the reply */
    NGX_HTTP_VOICE_ACT_DELTA,            /* response.text.delta */
    NGX_HTTP_VOICE_ACT_TOOL,             /* tool.call, and run it */
    NGX_HTTP_VOICE_ACT_TOOL_RESULT,      /* tool.result, the reply goes on */
    NGX_HTTP_VOICE_ACT_REPLY_DONE,       /* response.text.done, memory */
    NGX_HTTP_VOICE_ACT_CANCEL_REPLY,     /* response.interrupted */
    NGX_HTTP_VOICE_ACT_ERROR_LLM,        /* error LLM_FAIL or LLM_TIMEOUT */
    NGX_HTTP_VOICE_ACT_ERROR_TTS,        /* error TTS_FAIL */
    NGX_HTTP_VOICE_ACT_AUDIO_DONE,       /* response.audio.done, memory */
    NGX_HTTP_VOICE_ACT_BARGE_IN,         /* speech long enough: BARGE_IN */
    NGX_HTTP_VOICE_ACT_SILENCE,          /* drop the queue: SILENCED */
    NGX_HTTP_VOICE_ACT_SETTLE,           /* the reply is gone: CANCELLED */
    NGX_HTTP_VOICE_ACT_METRICS,          /* metrics of the turn */
    NGX_HTTP_VOICE_ACT_MAX
} ngx_http_voice_action_e;


#define NGX_HTTP_VOICE_MAX_ACTIONS  4


typedef struct {
    ngx_http_voice_state_e   next;
    ngx_http_voice_action_e  actions[NGX_HTTP_VOICE_MAX_ACTIONS];
} ngx_http_voice_transition_t;


/* never NULL, whatever the arguments */
const ngx_http_voice_transition_t *ngx_http_voice_state_next(
    ngx_http_voice_state_e state, ngx_http_voice_event_e event);

/* the name clients see in "state" events, "unknown" for no state */
const char *ngx_http_voice_state_name(ngx_http_voice_state_e state);
const char *ngx_http_voice_event_name(ngx_http_voice_event_e event);
const char *ngx_http_voice_action_name(ngx_http_voice_action_e action);


#endif /* _NGX_HTTP_VOICE_STATE_H_INCLUDED_ */
