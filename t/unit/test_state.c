
/*
 * Unit tests of the conversation state machine (ngx_http_voice_state.[ch]).
 *
 * The expected transitions are written out again here, independently of
 * the module's table, so that an accidental edit of either shows up.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <limits.h>
#include <cmocka.h>

#include "ngx_http_voice_state.h"


#define ST(name)   NGX_HTTP_VOICE_ST_##name
#define EV(name)   NGX_HTTP_VOICE_EV_##name
#define A(name)    NGX_HTTP_VOICE_ACT_##name

#define NACT       NGX_HTTP_VOICE_MAX_ACTIONS


typedef struct {
    ngx_http_voice_state_e   state;
    ngx_http_voice_event_e   event;
    ngx_http_voice_state_e   next;
    ngx_http_voice_action_e  actions[NACT];
} test_state_row_t;


#define ROW(state, event, next, ...)                                         \
    { ST(state), EV(event), ST(next), { __VA_ARGS__ } }

/* a data event that fails a session which has not started yet */
#define FIRST_BAD(event)                                                     \
    ROW(CONNECTED, event, CLOSED, A(FAIL), A(CLOSE_POLICY))

/* what arrives after closing is dropped without a word */
#define DROPPED(event)                                                       \
    ROW(CLOSED, event, CLOSED, A(NONE))

/*
 * An event the session never raises in this state (the detector cannot
 * end speech it has not started): refused, the state stays.
 */
#define INVALID(state, event)                                                \
    ROW(state, event, state, A(ERROR_INVALID))

/* the peer's close, the idle timer and nginx quitting end any open state */
#define CLOSABLE(state)                                                      \
    ROW(state, PEER_CLOSE, CLOSED, A(CLOSE_REPLY)),                          \
    ROW(state, IDLE_TIMEOUT, CLOSED, A(CLOSE_AWAY)),                         \
    ROW(state, SHUTDOWN, CLOSED, A(INFO_SHUTDOWN), A(CLOSE_AWAY))

/* the same messages mean the same in every state of a live session */
#define LIVE(state)                                                          \
    ROW(state, SESSION_START, state, A(REJECT)),                             \
    ROW(state, AUDIO, state, A(AUDIO)),                                      \
    ROW(state, MUTE, state, A(MUTE)),                                        \
    ROW(state, UNMUTE, state, A(UNMUTE)),                                    \
    ROW(state, BAD_MESSAGE, state, A(REJECT)),                               \
    ROW(state, BAD_FORMAT, state, A(REJECT)),                                \
    ROW(state, NOTICE, state, A(NONE)),                                      \
    ROW(state, MARK, state, A(MARK)),                                        \
    ROW(state, DTMF, state, A(DTMF)),                                        \
    CLOSABLE(state)


/* what the STT reports, in the states that listen, but its speech cue */
#define TRANSCRIPTS(state)                                                   \
    ROW(state, AGENT_START, state, A(REJECT)),                               \
    ROW(state, TRANSCRIPT_PARTIAL, state, A(PARTIAL)),                       \
    ROW(state, TRANSCRIPT_FINAL, state, A(FINAL)),                           \
    ROW(state, STT_ERROR, state, A(ERROR_STT)),                              \
    ROW(state, STT_FAILED, CLOSED, A(ERROR_STT), A(CLOSE_INTERNAL))

/* ... and with it, where nothing speaks that it could interrupt */
#define HEARING(state)                                                       \
    TRANSCRIPTS(state),                                                      \
    ROW(state, STT_SPEECH, state, A(NONE))

/* ... where no reply is under way */
#define IDLE(state)                                                          \
    ROW(state, CANCEL, state, A(CANCEL)),                                    \
    ROW(state, SESSION_END, CLOSED, A(CLOSE_NORMAL))

/* the language model's events where no reply is under way */
#define NO_REPLY(state)                                                      \
    INVALID(state, LLM_TOKEN),                                               \
    INVALID(state, LLM_TOOL_CALL),                                           \
    INVALID(state, TOOL_DONE),                                               \
    INVALID(state, LLM_DONE),                                                \
    INVALID(state, LLM_FAILED),                                              \
    INVALID(state, LLM_TIMEOUT)

/* ... and in those that do not: nothing listens there to report */
#define DEAF(state)                                                          \
    INVALID(state, TRANSCRIPT_PARTIAL),                                      \
    INVALID(state, TRANSCRIPT_FINAL),                                        \
    INVALID(state, STT_SPEECH),                                              \
    INVALID(state, STT_ERROR),                                               \
    INVALID(state, STT_FAILED)

/* the speech synthesizer's events where no reply is there to be spoken */
#define MUTED(state)                                                         \
    INVALID(state, TTS_AUDIO),                                               \
    INVALID(state, TTS_FAILED),                                              \
    INVALID(state, REPLY_SPOKEN)

/* the steps of an interruption, where nothing is being interrupted */
#define UNINTERRUPTED(state)                                                 \
    INVALID(state, BARGE_IN),                                                \
    INVALID(state, SILENCED),                                                \
    INVALID(state, CANCELLED)

/*
 * While a reply is under way, thought or heard: the user's side goes on
 * as between turns (a new turn replaces the reply), the model's and the
 * synthesizer's events feed it, and it ends when all of it was played.
 */
#define REPLYING(state)                                                      \
    ROW(state, SPEECH_ENDED, state, A(SPEECH), A(END_TURN)),                 \
    ROW(state, COMMIT, state, A(END_TURN)),                                  \
    ROW(state, MAX_DURATION, state, A(FAIL_DURATION), A(END_TURN)),          \
    ROW(state, TEXT_INPUT, state, A(TEXT_TURN)),                             \
    ROW(state, USER_TURN, THINKING, A(CANCEL_REPLY), A(THINK)),              \
    ROW(state, LLM_TOKEN, state, A(DELTA)),                                  \
    ROW(state, LLM_TOOL_CALL, state, A(TOOL)),                               \
    ROW(state, TOOL_DONE, state, A(TOOL_RESULT)),                            \
    ROW(state, LLM_DONE, state, A(REPLY_DONE)),                              \
    ROW(state, LLM_FAILED, LISTENING, A(ERROR_LLM)),                         \
    ROW(state, LLM_TIMEOUT, LISTENING, A(ERROR_LLM)),                        \
    ROW(state, TTS_FAILED, state, A(ERROR_TTS)),                             \
    ROW(state, REPLY_SPOKEN, LISTENING, A(AUDIO_DONE)),                      \
    ROW(state, SESSION_END, CLOSED, A(CANCEL_REPLY), A(CLOSE_NORMAL))

/*
 * A step of an interruption, taken within one event-loop turn: nothing
 * the client, the detector or a provider says belongs there.  The caller
 * adds the four events an interruption is made of.
 */
#define TRANSIENT(state)                                                     \
    INVALID(state, SESSION_START),                                           \
    INVALID(state, AGENT_START),                                             \
    INVALID(state, AUDIO),                                                   \
    INVALID(state, COMMIT),                                                  \
    INVALID(state, MUTE),                                                    \
    INVALID(state, UNMUTE),                                                  \
    INVALID(state, TEXT_INPUT),                                              \
    INVALID(state, CANCEL),                                                  \
    INVALID(state, SESSION_END),                                             \
    INVALID(state, BAD_MESSAGE),                                             \
    INVALID(state, BAD_FORMAT),                                              \
    INVALID(state, NOTICE),                                                  \
    INVALID(state, MARK),                                                    \
    INVALID(state, DTMF),                                                    \
    INVALID(state, SPEECH_STARTED),                                          \
    INVALID(state, SPEECH_ENDED),                                            \
    INVALID(state, MAX_DURATION),                                            \
    DEAF(state),                                                             \
    INVALID(state, USER_TURN),                                               \
    NO_REPLY(state),                                                         \
    MUTED(state),                                                            \
    CLOSABLE(state)


/* every (state, event) pair, exactly once */

static const test_state_row_t  test_state_expected[] = {

    ROW(CONNECTED, SESSION_START, STREAMING, A(SEND_STARTED)),
    ROW(CONNECTED, AGENT_START, LISTENING, A(SEND_STARTED), A(LISTEN)),
    DEAF(CONNECTED),
    NO_REPLY(CONNECTED),
    MUTED(CONNECTED),
    UNINTERRUPTED(CONNECTED),
    INVALID(CONNECTED, USER_TURN),
    FIRST_BAD(AUDIO),
    FIRST_BAD(COMMIT),
    FIRST_BAD(MUTE),
    FIRST_BAD(UNMUTE),
    FIRST_BAD(TEXT_INPUT),
    FIRST_BAD(CANCEL),
    FIRST_BAD(SESSION_END),
    FIRST_BAD(BAD_MESSAGE),
    FIRST_BAD(MARK),
    FIRST_BAD(DTMF),
    ROW(CONNECTED, BAD_FORMAT, CLOSED, A(FAIL_FORMAT), A(CLOSE_POLICY)),

    /* a gateway's greeting (Twilio "connected") may come before its start */
    ROW(CONNECTED, NOTICE, CONNECTED, A(NONE)),

    INVALID(CONNECTED, SPEECH_STARTED),
    INVALID(CONNECTED, SPEECH_ENDED),
    INVALID(CONNECTED, MAX_DURATION),
    CLOSABLE(CONNECTED),

    /* the echo pipeline, before the user has been heard */

    LIVE(STREAMING),
    ROW(STREAMING, SPEECH_STARTED, TRANSCRIBING, A(SPEECH)),
    ROW(STREAMING, COMMIT, STREAMING, A(END_TURN)),
    INVALID(STREAMING, SPEECH_ENDED),
    INVALID(STREAMING, MAX_DURATION),
    ROW(STREAMING, AGENT_START, STREAMING, A(REJECT)),
    DEAF(STREAMING),
    IDLE(STREAMING),
    NO_REPLY(STREAMING),
    MUTED(STREAMING),
    UNINTERRUPTED(STREAMING),
    ROW(STREAMING, TEXT_INPUT, STREAMING, A(NONE)),
    INVALID(STREAMING, USER_TURN),

    /*
     * between two utterances; speech that began while the assistant
     * spoke (or thought) may end, or run over, only once back here
     */

    LIVE(LISTENING),
    ROW(LISTENING, SPEECH_STARTED, TRANSCRIBING, A(SPEECH)),
    ROW(LISTENING, COMMIT, LISTENING, A(END_TURN)),
    ROW(LISTENING, SPEECH_ENDED, LISTENING, A(SPEECH), A(END_TURN)),
    ROW(LISTENING, MAX_DURATION, LISTENING, A(FAIL_DURATION), A(END_TURN)),
    HEARING(LISTENING),
    IDLE(LISTENING),
    NO_REPLY(LISTENING),
    MUTED(LISTENING),
    UNINTERRUPTED(LISTENING),
    ROW(LISTENING, TEXT_INPUT, LISTENING, A(TEXT_TURN)),
    ROW(LISTENING, USER_TURN, THINKING, A(THINK)),

    /* the user speaks: silence, input.commit or a cap ends the turn */

    LIVE(TRANSCRIBING),
    ROW(TRANSCRIBING, SPEECH_ENDED, LISTENING, A(SPEECH), A(END_TURN)),
    ROW(TRANSCRIBING, COMMIT, LISTENING, A(END_TURN)),
    ROW(TRANSCRIBING, MAX_DURATION, LISTENING, A(FAIL_DURATION),
        A(END_TURN)),
    INVALID(TRANSCRIBING, SPEECH_STARTED),
    HEARING(TRANSCRIBING),
    IDLE(TRANSCRIBING),
    NO_REPLY(TRANSCRIBING),
    MUTED(TRANSCRIBING),
    UNINTERRUPTED(TRANSCRIBING),
    ROW(TRANSCRIBING, TEXT_INPUT, TRANSCRIBING, A(TEXT_TURN)),
    ROW(TRANSCRIBING, USER_TURN, THINKING, A(THINK)),

    /*
     * a reply streams, nothing of it heard yet: the user is still heard;
     * its first audio makes it heard, response.cancel drops it at once
     */

    LIVE(THINKING),
    HEARING(THINKING),
    REPLYING(THINKING),
    ROW(THINKING, SPEECH_STARTED, THINKING, A(SPEECH)),
    ROW(THINKING, TTS_AUDIO, SPEAKING, A(METRICS)),
    ROW(THINKING, CANCEL, LISTENING, A(CANCEL), A(CANCEL_REPLY)),
    UNINTERRUPTED(THINKING),

    /*
     * the reply is heard: as while thinking, but speech over it (from
     * the detector or the STT) may grow into a barge-in, and a barge-in
     * or response.cancel interrupts it; its first audio came already
     */

    LIVE(SPEAKING),
    TRANSCRIPTS(SPEAKING),
    REPLYING(SPEAKING),
    ROW(SPEAKING, STT_SPEECH, SPEAKING, A(BARGE_IN)),
    ROW(SPEAKING, SPEECH_STARTED, SPEAKING, A(SPEECH), A(BARGE_IN)),
    ROW(SPEAKING, BARGE_IN, INTERRUPTED, A(SILENCE)),
    ROW(SPEAKING, CANCEL, INTERRUPTED, A(SILENCE)),
    INVALID(SPEAKING, TTS_AUDIO),
    INVALID(SPEAKING, SILENCED),
    INVALID(SPEAKING, CANCELLED),

    /* the interrupted reply's queued audio is dropped ... */

    TRANSIENT(INTERRUPTED),
    INVALID(INTERRUPTED, BARGE_IN),
    ROW(INTERRUPTED, SILENCED, CANCELLING, A(CANCEL_REPLY), A(SETTLE)),
    INVALID(INTERRUPTED, CANCELLED),

    /* ... then its streams are torn down, and the user has the floor */

    TRANSIENT(CANCELLING),
    INVALID(CANCELLING, BARGE_IN),
    INVALID(CANCELLING, SILENCED),
    ROW(CANCELLING, CANCELLED, LISTENING, A(NONE)),

    DROPPED(SESSION_START),
    DROPPED(AUDIO),
    DROPPED(COMMIT),
    DROPPED(MUTE),
    DROPPED(UNMUTE),
    DROPPED(TEXT_INPUT),
    DROPPED(CANCEL),
    DROPPED(SESSION_END),
    DROPPED(BAD_MESSAGE),
    DROPPED(BAD_FORMAT),
    DROPPED(SPEECH_STARTED),
    DROPPED(SPEECH_ENDED),
    DROPPED(MAX_DURATION),
    DROPPED(NOTICE),
    DROPPED(DTMF),
    DROPPED(AGENT_START),
    DROPPED(TRANSCRIPT_PARTIAL),
    DROPPED(TRANSCRIPT_FINAL),
    DROPPED(STT_SPEECH),
    DROPPED(STT_ERROR),
    DROPPED(STT_FAILED),
    DROPPED(USER_TURN),
    DROPPED(LLM_TOKEN),
    DROPPED(LLM_TOOL_CALL),
    DROPPED(TOOL_DONE),
    DROPPED(LLM_DONE),
    DROPPED(LLM_FAILED),
    DROPPED(LLM_TIMEOUT),
    DROPPED(TTS_AUDIO),
    DROPPED(TTS_FAILED),
    DROPPED(REPLY_SPOKEN),
    DROPPED(BARGE_IN),
    DROPPED(SILENCED),
    DROPPED(CANCELLED),

    /*
     * A flush after session.end that outlives the idle timeout, or that
     * nginx's shutdown interrupts, is cut short with a close 1001.
     */
    ROW(CLOSED, IDLE_TIMEOUT, CLOSED, A(CLOSE_AWAY)),
    ROW(CLOSED, SHUTDOWN, CLOSED, A(CLOSE_AWAY)),

    /*
     * While the last audio plays out after a Twilio "stop", the gateway
     * may still confirm marks: the playout model follows, nothing is sent.
     */
    ROW(CLOSED, MARK, CLOSED, A(MARK)),

    /*
     * The client's close reply while we are closing: the session answers
     * by finishing the close (it has sent, or will send, its own frame).
     */
    ROW(CLOSED, PEER_CLOSE, CLOSED, A(CLOSE_REPLY)),
};


#define TEST_STATE_NROWS                                                     \
    (sizeof(test_state_expected) / sizeof(test_state_expected[0]))


/* events that do not exist, as a caller with a bad value might pass them */

static const long  test_state_bad_events[] = {
    -1, -2, EV(MAX), EV(MAX) + 1, 64, 255, 256, 1000, 65536,
    INT_MAX, INT_MIN, (long) UINT_MAX
};

static const long  test_state_bad_states[] = {
    -1, -2, ST(MAX), ST(MAX) + 1, 16, 255, 1000, 65536,
    INT_MAX, INT_MIN, (long) UINT_MAX
};


static const test_state_row_t *
test_state_lookup(ngx_http_voice_state_e state, ngx_http_voice_event_e event)
{
    size_t  i;

    for (i = 0; i < TEST_STATE_NROWS; i++) {
        if (test_state_expected[i].state == state
            && test_state_expected[i].event == event)
        {
            return &test_state_expected[i];
        }
    }

    return NULL;
}


/* a started session that takes the client's messages */

static int
test_state_is_live(ngx_http_voice_state_e state)
{
    return state == ST(STREAMING) || state == ST(LISTENING)
           || state == ST(TRANSCRIBING) || state == ST(THINKING)
           || state == ST(SPEAKING);
}


/* a step of an interruption, left within the same event-loop turn */

static int
test_state_is_transient(ngx_http_voice_state_e state)
{
    return state == ST(INTERRUPTED) || state == ST(CANCELLING);
}


static int
test_state_is_open(ngx_http_voice_state_e state)
{
    return state == ST(CONNECTED) || test_state_is_live(state)
           || test_state_is_transient(state);
}


/* where a reply exists: from its start until it ends, one way or another */

static int
test_state_has_reply(ngx_http_voice_state_e state)
{
    return state == ST(THINKING) || state == ST(SPEAKING)
           || state == ST(INTERRUPTED);
}


/* the events that mean the same in every open state */

static int
test_state_is_everywhere(ngx_http_voice_event_e event)
{
    return event == EV(PEER_CLOSE) || event == EV(IDLE_TIMEOUT)
           || event == EV(SHUTDOWN);
}


static int
test_state_has_action(const ngx_http_voice_transition_t *t,
    ngx_http_voice_action_e action)
{
    size_t  k;

    for (k = 0; k < NACT && t->actions[k] != A(NONE); k++) {
        if (t->actions[k] == action) {
            return 1;
        }
    }

    return 0;
}


static int
test_state_is_close(ngx_http_voice_action_e action)
{
    return action == A(CLOSE_NORMAL) || action == A(CLOSE_POLICY)
           || action == A(CLOSE_AWAY) || action == A(CLOSE_REPLY)
           || action == A(CLOSE_INTERNAL);
}


/* the shape every answer must have, whatever was asked */

static void
test_state_well_formed(const ngx_http_voice_transition_t *t)
{
    size_t  i;
    int     ended;

    assert_non_null(t);

    assert_true((unsigned) t->next < (unsigned) ST(MAX));
    assert_int_not_equal(t->next, ST(NONE));

    /* actions in range; after the first NONE only NONE follows */

    ended = 0;

    for (i = 0; i < NACT; i++) {
        assert_true((unsigned) t->actions[i] < (unsigned) A(MAX));

        if (t->actions[i] == A(NONE)) {
            ended = 1;

        } else {
            assert_false(ended);
        }
    }
}


/* an answer equals the expected row, action for action */

static void
test_state_matches(const ngx_http_voice_transition_t *t,
    const test_state_row_t *row)
{
    size_t  i;

    if (t->next != row->next) {
        print_error("%s + %s: next %s, expected %s\n",
                    ngx_http_voice_state_name(row->state),
                    ngx_http_voice_event_name(row->event),
                    ngx_http_voice_state_name(t->next),
                    ngx_http_voice_state_name(row->next));
    }

    assert_int_equal(t->next, row->next);

    for (i = 0; i < NACT; i++) {
        if (t->actions[i] != row->actions[i]) {
            print_error("%s + %s: action %zu is %s, expected %s\n",
                        ngx_http_voice_state_name(row->state),
                        ngx_http_voice_event_name(row->event), i,
                        ngx_http_voice_action_name(t->actions[i]),
                        ngx_http_voice_action_name(row->actions[i]));
        }

        assert_int_equal(t->actions[i], row->actions[i]);
    }
}


static void
test_state_expect(ngx_http_voice_state_e state, ngx_http_voice_event_e event,
    ngx_http_voice_state_e next, ngx_http_voice_action_e a0,
    ngx_http_voice_action_e a1)
{
    size_t                              i;
    const ngx_http_voice_transition_t  *t;

    t = ngx_http_voice_state_next(state, event);

    test_state_well_formed(t);

    assert_int_equal(t->next, next);
    assert_int_equal(t->actions[0], a0);
    assert_int_equal(t->actions[1], a1);

    for (i = 2; i < NACT; i++) {
        assert_int_equal(t->actions[i], A(NONE));
    }
}


static uint64_t
test_state_rand(uint64_t *s)
{
    uint64_t  z;

    /* splitmix64 */

    *s += 0x9e3779b97f4a7c15ULL;
    z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


/*
 * The ways into and out of a reply being heard and of its interruption,
 * checked on one step: from cur, event ev gave t.
 */

static void
test_state_check_path(ngx_http_voice_state_e cur, ngx_http_voice_event_e ev,
    const ngx_http_voice_transition_t *t)
{
    /* the assistant is heard once the first audio of its reply is queued */

    if (t->next == ST(SPEAKING) && cur != ST(SPEAKING)) {
        assert_int_equal(cur, ST(THINKING));
        assert_int_equal(ev, EV(TTS_AUDIO));
    }

    /*
     * and stops being heard when all of it was played, when interrupted,
     * when a new turn replaces the reply, when the model fails, or when
     * the session closes
     */

    if (cur == ST(SPEAKING) && t->next != ST(SPEAKING)) {
        switch (t->next) {
        case ST(LISTENING):
            assert_true(ev == EV(REPLY_SPOKEN) || ev == EV(LLM_FAILED)
                        || ev == EV(LLM_TIMEOUT));
            break;
        case ST(INTERRUPTED):
            assert_true(ev == EV(BARGE_IN) || ev == EV(CANCEL));
            break;
        case ST(THINKING):
            assert_int_equal(ev, EV(USER_TURN));
            break;
        case ST(CLOSED):
            break;
        default:
            fail_msg("speaking left for %s on %s",
                     ngx_http_voice_state_name(t->next),
                     ngx_http_voice_event_name(ev));
        }
    }

    /* an interruption starts only there, and only silences the queue */

    if (t->next == ST(INTERRUPTED) && cur != ST(INTERRUPTED)) {
        assert_int_equal(cur, ST(SPEAKING));
        assert_true(ev == EV(BARGE_IN) || ev == EV(CANCEL));
    }

    if (test_state_has_action(t, A(SILENCE))) {
        assert_int_equal(cur, ST(SPEAKING));
        assert_int_equal(t->next, ST(INTERRUPTED));
        assert_int_equal(t->actions[0], A(SILENCE));
        assert_int_equal(t->actions[1], A(NONE));
    }

    /* once silenced, the reply is cancelled and the streams settle */

    if (t->next == ST(CANCELLING) && cur != ST(CANCELLING)) {
        assert_int_equal(cur, ST(INTERRUPTED));
        assert_int_equal(ev, EV(SILENCED));
    }

    if (test_state_has_action(t, A(SETTLE))) {
        assert_int_equal(cur, ST(INTERRUPTED));
        assert_int_equal(t->next, ST(CANCELLING));
    }

    /* a transient state takes its one event or closes; all else is refused */

    if (test_state_is_transient(cur)) {
        if (t->next == cur) {
            assert_int_equal(t->actions[0], A(ERROR_INVALID));

        } else if (t->next == ST(CLOSED)) {
            assert_true(test_state_is_everywhere(ev));

        } else if (cur == ST(INTERRUPTED)) {
            assert_int_equal(t->next, ST(CANCELLING));
            assert_int_equal(ev, EV(SILENCED));

        } else {
            assert_int_equal(t->next, ST(LISTENING));
            assert_int_equal(ev, EV(CANCELLED));
        }
    }

    /* speech over the reply may grow into a barge-in, nothing else does */

    if (test_state_has_action(t, A(BARGE_IN))) {
        assert_int_equal(cur, ST(SPEAKING));
        assert_int_equal(t->next, ST(SPEAKING));
        assert_true(ev == EV(SPEECH_STARTED) || ev == EV(STT_SPEECH));
    }

    /* a reply's audio is over only when it has all been played */

    if (test_state_has_action(t, A(AUDIO_DONE))) {
        assert_int_equal(ev, EV(REPLY_SPOKEN));
        assert_int_equal(t->next, ST(LISTENING));
    }
}


/*
 * A reply starts with THINK and ends exactly once: played out, failed or
 * cancelled.  Given whether one was under way before the step, checks the
 * step's actions and returns whether one is under way after it.
 */

static int
test_state_follow_reply(int open, const ngx_http_voice_transition_t *t)
{
    size_t  k;

    for (k = 0; k < NACT && t->actions[k] != A(NONE); k++) {
        switch (t->actions[k]) {

        case A(THINK):
            assert_false(open);
            open = 1;
            break;

        case A(CANCEL_REPLY):
        case A(AUDIO_DONE):
        case A(ERROR_LLM):
            assert_true(open);
            open = 0;
            break;

        case A(DELTA):
        case A(TOOL):
        case A(TOOL_RESULT):
        case A(REPLY_DONE):
        case A(ERROR_TTS):
        case A(METRICS):
        case A(BARGE_IN):
        case A(SILENCE):
            assert_true(open);
            break;

        case A(SETTLE):
            assert_false(open);
            break;

        default:
            break;
        }
    }

    if (t->next != ST(CLOSED)) {
        assert_int_equal(open, test_state_has_reply(t->next));
    }

    return open;
}


/* ---- the expected table itself ------------------------------------------ */


static void
test_expected_table_complete(void **state)
{
    size_t                  i, j;
    ngx_http_voice_state_e  s;
    ngx_http_voice_event_e  e;

    (void) state;

    /* one row per pair of a state and an event */

    assert_int_equal(TEST_STATE_NROWS,
                     (ST(MAX) - ST(CONNECTED)) * EV(MAX));

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        for (e = 0; e < EV(MAX); e++) {
            assert_non_null(test_state_lookup(s, e));
        }
    }

    for (i = 0; i < TEST_STATE_NROWS; i++) {
        for (j = i + 1; j < TEST_STATE_NROWS; j++) {
            assert_false(test_state_expected[i].state
                             == test_state_expected[j].state
                         && test_state_expected[i].event
                             == test_state_expected[j].event);
        }
    }
}


/* ---- the whole table ---------------------------------------------------- */


static void
test_table_matches(void **state)
{
    size_t                              i;
    const ngx_http_voice_transition_t  *t;

    (void) state;

    for (i = 0; i < TEST_STATE_NROWS; i++) {
        t = ngx_http_voice_state_next(test_state_expected[i].state,
                                      test_state_expected[i].event);

        test_state_well_formed(t);
        test_state_matches(t, &test_state_expected[i]);
    }
}


/* ---- robustness: every argument, valid or not --------------------------- */


static void
test_every_state_every_event(void **state)
{
    long                                s, e;
    const ngx_http_voice_transition_t  *t;

    (void) state;

    /* a wide square around the valid range */

    for (s = -3; s < ST(MAX) + 3; s++) {
        for (e = -3; e < EV(MAX) + 3; e++) {
            t = ngx_http_voice_state_next((ngx_http_voice_state_e) s,
                                          (ngx_http_voice_event_e) e);
            test_state_well_formed(t);
        }
    }
}


static void
test_invalid_events(void **state)
{
    size_t                              i;
    ngx_http_voice_state_e              s;
    const ngx_http_voice_transition_t  *t;

    (void) state;

    /* an event that does not exist: ERROR_INVALID, state unchanged */

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        for (i = 0; i < sizeof(test_state_bad_events) / sizeof(long); i++) {
            t = ngx_http_voice_state_next(s,
                         (ngx_http_voice_event_e) test_state_bad_events[i]);

            test_state_well_formed(t);
            assert_int_equal(t->next, s);
            assert_int_equal(t->actions[0], A(ERROR_INVALID));
            assert_int_equal(t->actions[1], A(NONE));
        }
    }
}


static void
test_invalid_states(void **state)
{
    size_t                              i, k;
    long                                e;
    ngx_http_voice_state_e              s;
    const ngx_http_voice_transition_t  *t;

    (void) state;

    /*
     * A state that does not exist (NONE included) must never open a
     * session: whatever the event, the machine ends up closed.
     */

    for (i = 0; i <= sizeof(test_state_bad_states) / sizeof(long); i++) {
        s = (i == 0) ? ST(NONE)
                     : (ngx_http_voice_state_e) test_state_bad_states[i - 1];

        for (e = 0; e < EV(MAX); e++) {
            t = ngx_http_voice_state_next(s, (ngx_http_voice_event_e) e);

            test_state_well_formed(t);
            assert_int_equal(t->next, ST(CLOSED));

            for (k = 0; k < NACT; k++) {
                assert_int_not_equal(t->actions[k], A(SEND_STARTED));
                assert_int_not_equal(t->actions[k], A(AUDIO));
                assert_int_not_equal(t->actions[k], A(SPEECH));
            }
        }

        for (k = 0; k < sizeof(test_state_bad_events) / sizeof(long); k++) {
            t = ngx_http_voice_state_next(s,
                         (ngx_http_voice_event_e) test_state_bad_events[k]);

            test_state_well_formed(t);
            assert_int_equal(t->next, ST(CLOSED));
            assert_int_equal(t->actions[0], A(ERROR_INVALID));
        }
    }
}


/* ---- properties of the table -------------------------------------------- */


static void
test_close_discipline(void **state)
{
    size_t                              k, closes;
    ngx_http_voice_state_e              s;
    ngx_http_voice_event_e              e;
    const ngx_http_voice_transition_t  *t;

    (void) state;

    /*
     * Leaving an open state for CLOSED always says how (exactly one close
     * action, the last one); staying open never closes.
     */

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        for (e = 0; e < EV(MAX); e++) {
            t = ngx_http_voice_state_next(s, e);

            closes = 0;

            for (k = 0; k < NACT && t->actions[k] != A(NONE); k++) {
                if (test_state_is_close(t->actions[k])) {
                    closes++;
                    assert_true(k + 1 == NACT
                                || t->actions[k + 1] == A(NONE));
                }
            }

            if (test_state_is_open(s) && t->next == ST(CLOSED)) {
                assert_int_equal(closes, 1);

            } else if (test_state_is_open(t->next)) {
                assert_int_equal(closes, 0);
            }

            /* nothing ever goes back to CONNECTED */

            if (s != ST(CONNECTED)) {
                assert_int_not_equal(t->next, ST(CONNECTED));
            }
        }
    }
}


/* ---- the transitions the protocol spells out ---------------------------- */


static void
test_session_start_first(void **state)
{
    (void) state;

    test_state_expect(ST(CONNECTED), EV(SESSION_START), ST(STREAMING),
                      A(SEND_STARTED), A(NONE));
}


static void
test_anything_else_first(void **state)
{
    ngx_http_voice_event_e  e;

    (void) state;

    /*
     * Every client message other than a good session.start ends the
     * session, but a gateway's greeting; the detector's events cannot
     * come yet (see test_detector_events_out_of_place), nor any of the
     * pipeline's, since nothing runs before the start.
     */

    for (e = 0; e < EV(MAX); e++) {
        switch (e) {
        case EV(SESSION_START):
        case EV(AGENT_START):
        case EV(BAD_FORMAT):
        case EV(NOTICE):
        case EV(SPEECH_STARTED):
        case EV(SPEECH_ENDED):
        case EV(MAX_DURATION):
        case EV(PEER_CLOSE):
        case EV(IDLE_TIMEOUT):
        case EV(SHUTDOWN):
            continue;

        case EV(TRANSCRIPT_PARTIAL):
        case EV(TRANSCRIPT_FINAL):
        case EV(STT_SPEECH):
        case EV(STT_ERROR):
        case EV(STT_FAILED):
        case EV(USER_TURN):
        case EV(LLM_TOKEN):
        case EV(LLM_TOOL_CALL):
        case EV(TOOL_DONE):
        case EV(LLM_DONE):
        case EV(LLM_FAILED):
        case EV(LLM_TIMEOUT):
        case EV(TTS_AUDIO):
        case EV(TTS_FAILED):
        case EV(REPLY_SPOKEN):
        case EV(BARGE_IN):
        case EV(SILENCED):
        case EV(CANCELLED):
            test_state_expect(ST(CONNECTED), e, ST(CONNECTED),
                              A(ERROR_INVALID), A(NONE));
            continue;

        default:
            break;
        }

        test_state_expect(ST(CONNECTED), e, ST(CLOSED),
                          A(FAIL), A(CLOSE_POLICY));
    }
}


static void
test_bad_format_first(void **state)
{
    (void) state;

    test_state_expect(ST(CONNECTED), EV(BAD_FORMAT), ST(CLOSED),
                      A(FAIL_FORMAT), A(CLOSE_POLICY));
}


static void
test_audio_flows(void **state)
{
    (void) state;

    /* audio goes down the pipeline whatever the user is doing */

    test_state_expect(ST(STREAMING), EV(AUDIO), ST(STREAMING),
                      A(AUDIO), A(NONE));
    test_state_expect(ST(LISTENING), EV(AUDIO), ST(LISTENING),
                      A(AUDIO), A(NONE));
    test_state_expect(ST(TRANSCRIBING), EV(AUDIO), ST(TRANSCRIBING),
                      A(AUDIO), A(NONE));
    test_state_expect(ST(THINKING), EV(AUDIO), ST(THINKING),
                      A(AUDIO), A(NONE));
    test_state_expect(ST(SPEAKING), EV(AUDIO), ST(SPEAKING),
                      A(AUDIO), A(NONE));

    /* no frame can arrive in the middle of an interruption */

    test_state_expect(ST(INTERRUPTED), EV(AUDIO), ST(INTERRUPTED),
                      A(ERROR_INVALID), A(NONE));
    test_state_expect(ST(CANCELLING), EV(AUDIO), ST(CANCELLING),
                      A(ERROR_INVALID), A(NONE));
}


static void
test_streaming_messages(void **state)
{
    (void) state;

    test_state_expect(ST(STREAMING), EV(MUTE), ST(STREAMING),
                      A(MUTE), A(NONE));
    test_state_expect(ST(STREAMING), EV(UNMUTE), ST(STREAMING),
                      A(UNMUTE), A(NONE));
    test_state_expect(ST(STREAMING), EV(COMMIT), ST(STREAMING),
                      A(END_TURN), A(NONE));
    test_state_expect(ST(STREAMING), EV(TEXT_INPUT), ST(STREAMING),
                      A(NONE), A(NONE));
    test_state_expect(ST(STREAMING), EV(CANCEL), ST(STREAMING),
                      A(CANCEL), A(NONE));

    /* mistakes after the start are recoverable */

    test_state_expect(ST(STREAMING), EV(BAD_MESSAGE), ST(STREAMING),
                      A(REJECT), A(NONE));
    test_state_expect(ST(STREAMING), EV(SESSION_START), ST(STREAMING),
                      A(REJECT), A(NONE));
    test_state_expect(ST(STREAMING), EV(BAD_FORMAT), ST(STREAMING),
                      A(REJECT), A(NONE));
}


static void
test_speech_turns(void **state)
{
    (void) state;

    /* the detector hears the user begin, then fall silent, then again */

    test_state_expect(ST(STREAMING), EV(SPEECH_STARTED), ST(TRANSCRIBING),
                      A(SPEECH), A(NONE));
    test_state_expect(ST(TRANSCRIBING), EV(SPEECH_ENDED), ST(LISTENING),
                      A(SPEECH), A(END_TURN));
    test_state_expect(ST(LISTENING), EV(SPEECH_STARTED), ST(TRANSCRIBING),
                      A(SPEECH), A(NONE));
}


static void
test_turn_ends(void **state)
{
    (void) state;

    /* input.commit ends the turn at once, speaking or not */

    test_state_expect(ST(TRANSCRIBING), EV(COMMIT), ST(LISTENING),
                      A(END_TURN), A(NONE));
    test_state_expect(ST(LISTENING), EV(COMMIT), ST(LISTENING),
                      A(END_TURN), A(NONE));
    test_state_expect(ST(STREAMING), EV(COMMIT), ST(STREAMING),
                      A(END_TURN), A(NONE));

    /* an utterance over its cap: the error first, then the turn ends */

    test_state_expect(ST(TRANSCRIBING), EV(MAX_DURATION), ST(LISTENING),
                      A(FAIL_DURATION), A(END_TURN));
}


static void
test_detector_events_out_of_place(void **state)
{
    ngx_http_voice_state_e  s;

    (void) state;

    /* the echo pipeline never hears speech end or run over */

    test_state_expect(ST(STREAMING), EV(SPEECH_ENDED), ST(STREAMING),
                      A(ERROR_INVALID), A(NONE));
    test_state_expect(ST(STREAMING), EV(MAX_DURATION), ST(STREAMING),
                      A(ERROR_INVALID), A(NONE));

    /* speech does not start twice */

    test_state_expect(ST(TRANSCRIBING), EV(SPEECH_STARTED),
                      ST(TRANSCRIBING), A(ERROR_INVALID), A(NONE));

    /*
     * but speech that began while a reply was under way (the state did
     * not move to transcribing for it) may end, or run over, after the
     * reply ended and the session listens again
     */

    test_state_expect(ST(LISTENING), EV(SPEECH_ENDED), ST(LISTENING),
                      A(SPEECH), A(END_TURN));
    test_state_expect(ST(LISTENING), EV(MAX_DURATION), ST(LISTENING),
                      A(FAIL_DURATION), A(END_TURN));

    /* nor before a session exists, nor in an interruption's steps */

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        if (s != ST(CONNECTED) && !test_state_is_transient(s)) {
            continue;
        }

        test_state_expect(s, EV(SPEECH_STARTED), s,
                          A(ERROR_INVALID), A(NONE));
        test_state_expect(s, EV(SPEECH_ENDED), s,
                          A(ERROR_INVALID), A(NONE));
        test_state_expect(s, EV(MAX_DURATION), s,
                          A(ERROR_INVALID), A(NONE));
    }
}


static void
test_cancel(void **state)
{
    ngx_http_voice_state_e  s;

    (void) state;

    /*
     * response.cancel drops what waits to be played, in every live state;
     * while a reply streams it also stops the reply, and once the reply
     * is heard it interrupts it as a barge-in would
     */

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        if (!test_state_is_live(s) || test_state_has_reply(s)) {
            continue;
        }

        test_state_expect(s, EV(CANCEL), s, A(CANCEL), A(NONE));
    }

    test_state_expect(ST(THINKING), EV(CANCEL), ST(LISTENING), A(CANCEL),
                      A(CANCEL_REPLY));
    test_state_expect(ST(SPEAKING), EV(CANCEL), ST(INTERRUPTED),
                      A(SILENCE), A(NONE));

    /* an interruption under way is not interrupted again */

    test_state_expect(ST(INTERRUPTED), EV(CANCEL), ST(INTERRUPTED),
                      A(ERROR_INVALID), A(NONE));
    test_state_expect(ST(CANCELLING), EV(CANCEL), ST(CANCELLING),
                      A(ERROR_INVALID), A(NONE));
}


static void
test_gateway_messages(void **state)
{
    ngx_http_voice_state_e  s;

    (void) state;

    /* a greeting before the start changes nothing and closes nothing */

    test_state_expect(ST(CONNECTED), EV(NOTICE), ST(CONNECTED),
                      A(NONE), A(NONE));

    /* marks and keys belong to a started stream */

    test_state_expect(ST(CONNECTED), EV(MARK), ST(CLOSED),
                      A(FAIL), A(CLOSE_POLICY));
    test_state_expect(ST(CONNECTED), EV(DTMF), ST(CLOSED),
                      A(FAIL), A(CLOSE_POLICY));

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        if (!test_state_is_live(s)) {
            continue;
        }

        test_state_expect(s, EV(NOTICE), s, A(NONE), A(NONE));
        test_state_expect(s, EV(MARK), s, A(MARK), A(NONE));
        test_state_expect(s, EV(DTMF), s, A(DTMF), A(NONE));
    }
}


static void
test_live_states_alike(void **state)
{
    ngx_http_voice_state_e              s;
    ngx_http_voice_event_e              e;
    const ngx_http_voice_transition_t  *t, *u;

    (void) state;

    /*
     * Client messages other than input.commit mean the same whether the
     * user is speaking or not: same actions, and the state only moves to
     * closed.
     */

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        if (!test_state_is_live(s) || s == ST(STREAMING)) {
            continue;
        }

        for (e = 0; e < EV(MAX); e++) {
            /*
             * the echo pipeline has nothing that transcribes, replies or
             * speaks; and a reply under way is stopped by response.cancel
             * and session.end (see test_cancel, test_session_end)
             */

            if (e == EV(COMMIT) || e == EV(SPEECH_STARTED)
                || e == EV(SPEECH_ENDED) || e == EV(MAX_DURATION)
                || e == EV(TRANSCRIPT_PARTIAL) || e == EV(TRANSCRIPT_FINAL)
                || e == EV(STT_SPEECH) || e == EV(STT_ERROR)
                || e == EV(STT_FAILED) || e == EV(TEXT_INPUT)
                || e == EV(USER_TURN) || e == EV(LLM_TOKEN)
                || e == EV(LLM_TOOL_CALL) || e == EV(TOOL_DONE)
                || e == EV(LLM_DONE) || e == EV(LLM_FAILED)
                || e == EV(LLM_TIMEOUT) || e == EV(TTS_AUDIO)
                || e == EV(TTS_FAILED) || e == EV(REPLY_SPOKEN)
                || e == EV(BARGE_IN) || e == EV(SILENCED)
                || e == EV(CANCELLED)
                || (test_state_has_reply(s)
                    && (e == EV(CANCEL) || e == EV(SESSION_END))))
            {
                continue;
            }

            t = ngx_http_voice_state_next(ST(STREAMING), e);
            u = ngx_http_voice_state_next(s, e);

            assert_memory_equal(t->actions, u->actions, sizeof(t->actions));

            if (t->next == ST(CLOSED)) {
                assert_int_equal(u->next, ST(CLOSED));

            } else {
                assert_int_equal(t->next, ST(STREAMING));
                assert_int_equal(u->next, s);
            }
        }
    }
}


static void
test_turn_discipline(void **state)
{
    size_t                              k;
    ngx_http_voice_state_e              s;
    ngx_http_voice_event_e              e;
    const ngx_http_voice_transition_t  *t;

    (void) state;

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        for (e = 0; e < EV(MAX); e++) {
            t = ngx_http_voice_state_next(s, e);

            for (k = 0; k < NACT && t->actions[k] != A(NONE); k++) {

                /*
                 * a turn ends into listening, where no one spoke, or
                 * where a reply streams on
                 */

                if (t->actions[k] == A(END_TURN)) {
                    assert_true(t->next == ST(LISTENING)
                                || t->next == ST(STREAMING)
                                || t->next == ST(THINKING)
                                || t->next == ST(SPEAKING));
                    assert_int_equal(t->next, s == ST(TRANSCRIBING)
                                              ? ST(LISTENING) : s);
                    assert_true(k + 1 == NACT
                                || t->actions[k + 1] == A(NONE));
                }

                /* the cap's error always ends its turn right after */

                if (t->actions[k] == A(FAIL_DURATION)) {
                    assert_true(k + 1 < NACT);
                    assert_int_equal(t->actions[k + 1], A(END_TURN));
                }

                /* speech events come only from the detector's events */

                if (t->actions[k] == A(SPEECH)) {
                    assert_true(e == EV(SPEECH_STARTED)
                                || e == EV(SPEECH_ENDED));
                }
            }

            /* only the detector makes the user start speaking */

            if (t->next == ST(TRANSCRIBING) && s != ST(TRANSCRIBING)) {
                assert_int_equal(e, EV(SPEECH_STARTED));
            }

            /* a reply starts on a turn's text, and on nothing else */

            if (test_state_has_action(t, A(THINK))) {
                assert_int_equal(e, EV(USER_TURN));
                assert_int_equal(t->next, ST(THINKING));
            }

            if (t->next == ST(THINKING) && s != ST(THINKING)) {
                assert_int_equal(e, EV(USER_TURN));
                assert_true(test_state_has_action(t, A(THINK)));
            }
        }
    }
}


static void
test_speaking_like_thinking(void **state)
{
    ngx_http_voice_event_e              e;
    const ngx_http_voice_transition_t  *t, *u;

    (void) state;

    /*
     * Once heard, a reply goes on as it did while thought: the user's
     * side and the model's events are the same, and so is where they
     * lead, but that staying put now means staying in speaking.
     */

    for (e = 0; e < EV(MAX); e++) {

        /* what barge-in changes, and the reply's first audio */

        if (e == EV(SPEECH_STARTED) || e == EV(STT_SPEECH)
            || e == EV(BARGE_IN) || e == EV(CANCEL) || e == EV(TTS_AUDIO))
        {
            continue;
        }

        t = ngx_http_voice_state_next(ST(THINKING), e);
        u = ngx_http_voice_state_next(ST(SPEAKING), e);

        if (memcmp(t->actions, u->actions, sizeof(t->actions)) != 0) {
            print_error("%s: thinking and speaking differ\n",
                        ngx_http_voice_event_name(e));
        }

        assert_memory_equal(t->actions, u->actions, sizeof(t->actions));

        if (t->next == ST(THINKING) && e != EV(USER_TURN)) {
            assert_int_equal(u->next, ST(SPEAKING));

        } else {
            assert_int_equal(u->next, t->next);
        }
    }

    /* the user's speech over a heard reply may grow into a barge-in */

    test_state_expect(ST(THINKING), EV(SPEECH_STARTED), ST(THINKING),
                      A(SPEECH), A(NONE));
    test_state_expect(ST(SPEAKING), EV(SPEECH_STARTED), ST(SPEAKING),
                      A(SPEECH), A(BARGE_IN));
    test_state_expect(ST(THINKING), EV(STT_SPEECH), ST(THINKING),
                      A(NONE), A(NONE));
    test_state_expect(ST(SPEAKING), EV(STT_SPEECH), ST(SPEAKING),
                      A(BARGE_IN), A(NONE));
}


static void
test_reply_lifecycle(void **state)
{
    (void) state;

    /* the model's text being complete does not end what is to be heard */

    test_state_expect(ST(THINKING), EV(LLM_DONE), ST(THINKING),
                      A(REPLY_DONE), A(NONE));
    test_state_expect(ST(SPEAKING), EV(LLM_DONE), ST(SPEAKING),
                      A(REPLY_DONE), A(NONE));

    /* its first audio makes it heard, and is measured */

    test_state_expect(ST(THINKING), EV(TTS_AUDIO), ST(SPEAKING),
                      A(METRICS), A(NONE));

    /* the reply ends when all of it was played, audio or not */

    test_state_expect(ST(SPEAKING), EV(REPLY_SPOKEN), ST(LISTENING),
                      A(AUDIO_DONE), A(NONE));
    test_state_expect(ST(THINKING), EV(REPLY_SPOKEN), ST(LISTENING),
                      A(AUDIO_DONE), A(NONE));

    /* failed speech is reported; the text goes on */

    test_state_expect(ST(THINKING), EV(TTS_FAILED), ST(THINKING),
                      A(ERROR_TTS), A(NONE));
    test_state_expect(ST(SPEAKING), EV(TTS_FAILED), ST(SPEAKING),
                      A(ERROR_TTS), A(NONE));

    /* the model failing ends the reply, heard or not */

    test_state_expect(ST(SPEAKING), EV(LLM_FAILED), ST(LISTENING),
                      A(ERROR_LLM), A(NONE));
    test_state_expect(ST(SPEAKING), EV(LLM_TIMEOUT), ST(LISTENING),
                      A(ERROR_LLM), A(NONE));

    /* a new turn replaces the reply being heard */

    test_state_expect(ST(SPEAKING), EV(USER_TURN), ST(THINKING),
                      A(CANCEL_REPLY), A(THINK));

    /* a reply's first audio comes once */

    test_state_expect(ST(SPEAKING), EV(TTS_AUDIO), ST(SPEAKING),
                      A(ERROR_INVALID), A(NONE));
}


static void
test_barge_in(void **state)
{
    (void) state;

    /*
     * The user speaks over the reply, long enough: the queue is dropped,
     * the reply cancelled, its streams torn down, and the session listens
     * to the speech that is still going on, which ends there.
     */

    test_state_expect(ST(SPEAKING), EV(SPEECH_STARTED), ST(SPEAKING),
                      A(SPEECH), A(BARGE_IN));
    test_state_expect(ST(SPEAKING), EV(BARGE_IN), ST(INTERRUPTED),
                      A(SILENCE), A(NONE));
    test_state_expect(ST(INTERRUPTED), EV(SILENCED), ST(CANCELLING),
                      A(CANCEL_REPLY), A(SETTLE));
    test_state_expect(ST(CANCELLING), EV(CANCELLED), ST(LISTENING),
                      A(NONE), A(NONE));
    test_state_expect(ST(LISTENING), EV(SPEECH_ENDED), ST(LISTENING),
                      A(SPEECH), A(END_TURN));

    /* a barge-in comes too late once the reply is over or replaced */

    test_state_expect(ST(LISTENING), EV(BARGE_IN), ST(LISTENING),
                      A(ERROR_INVALID), A(NONE));
    test_state_expect(ST(THINKING), EV(BARGE_IN), ST(THINKING),
                      A(ERROR_INVALID), A(NONE));
}


static void
test_interruption_steps(void **state)
{
    ngx_http_voice_state_e              s;
    ngx_http_voice_event_e              e, one;
    const ngx_http_voice_transition_t  *t, *u;

    (void) state;

    /*
     * Interrupted and cancelling each take exactly one event; the peer's
     * close, the idle timer and shutdown act as anywhere else; all else
     * is refused and the state stays.
     */

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        if (!test_state_is_transient(s)) {
            continue;
        }

        one = (s == ST(INTERRUPTED)) ? EV(SILENCED) : EV(CANCELLED);

        for (e = 0; e < EV(MAX); e++) {
            t = ngx_http_voice_state_next(s, e);

            test_state_well_formed(t);

            if (e == one) {
                assert_int_not_equal(t->next, s);
                assert_int_not_equal(t->next, ST(CLOSED));
                continue;
            }

            if (test_state_is_everywhere(e)) {
                u = ngx_http_voice_state_next(ST(LISTENING), e);

                assert_int_equal(t->next, ST(CLOSED));
                assert_memory_equal(t->actions, u->actions,
                                    sizeof(t->actions));
                continue;
            }

            test_state_expect(s, e, s, A(ERROR_INVALID), A(NONE));
        }
    }

    /* and their events mean nothing elsewhere, but after closing */

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        if (s != ST(INTERRUPTED) && s != ST(CLOSED)) {
            test_state_expect(s, EV(SILENCED), s, A(ERROR_INVALID), A(NONE));
        }

        if (s != ST(CANCELLING) && s != ST(CLOSED)) {
            test_state_expect(s, EV(CANCELLED), s,
                              A(ERROR_INVALID), A(NONE));
        }

        if (s != ST(SPEAKING) && s != ST(CLOSED)) {
            test_state_expect(s, EV(BARGE_IN), s, A(ERROR_INVALID), A(NONE));
        }
    }
}


static void
test_reply_discipline(void **state)
{
    ngx_http_voice_state_e              s;
    ngx_http_voice_event_e              e;
    const ngx_http_voice_transition_t  *t;

    (void) state;

    /* every step from every open state keeps to the reply's paths */

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        if (!test_state_is_open(s)) {
            continue;
        }

        for (e = 0; e < EV(MAX); e++) {
            t = ngx_http_voice_state_next(s, e);

            test_state_check_path(s, e, t);
            (void) test_state_follow_reply(test_state_has_reply(s), t);
        }
    }
}


static void
test_session_end(void **state)
{
    ngx_http_voice_state_e  s;

    (void) state;

    /* session.end flushes and closes, whatever the user is doing */

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        if (!test_state_is_live(s) || test_state_has_reply(s)) {
            continue;
        }

        test_state_expect(s, EV(SESSION_END), ST(CLOSED),
                          A(CLOSE_NORMAL), A(NONE));
    }

    /* a reply under way, heard or not, is interrupted first */

    test_state_expect(ST(THINKING), EV(SESSION_END), ST(CLOSED),
                      A(CANCEL_REPLY), A(CLOSE_NORMAL));
    test_state_expect(ST(SPEAKING), EV(SESSION_END), ST(CLOSED),
                      A(CANCEL_REPLY), A(CLOSE_NORMAL));
}


static void
test_peer_close(void **state)
{
    ngx_http_voice_state_e  s;

    (void) state;

    /* in every open state, the interruption's steps included */

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        assert_true(test_state_is_open(s) || s == ST(CLOSED));

        test_state_expect(s, EV(PEER_CLOSE), ST(CLOSED),
                          A(CLOSE_REPLY), A(NONE));
    }
}


static void
test_shutdown(void **state)
{
    ngx_http_voice_state_e  s;

    (void) state;

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        if (!test_state_is_open(s)) {
            continue;
        }

        test_state_expect(s, EV(SHUTDOWN), ST(CLOSED),
                          A(INFO_SHUTDOWN), A(CLOSE_AWAY));
    }

    /* the client was told already, or is being closed anyway */

    test_state_expect(ST(CLOSED), EV(SHUTDOWN), ST(CLOSED),
                      A(CLOSE_AWAY), A(NONE));
}


static void
test_idle(void **state)
{
    ngx_http_voice_state_e  s;

    (void) state;

    for (s = ST(CONNECTED); s < ST(MAX); s++) {
        assert_true(test_state_is_open(s) || s == ST(CLOSED));

        test_state_expect(s, EV(IDLE_TIMEOUT), ST(CLOSED),
                          A(CLOSE_AWAY), A(NONE));
    }
}


static void
test_closed_ignores_data(void **state)
{
    ngx_http_voice_event_e  e;

    (void) state;

    /*
     * Every client message after closing is dropped, not answered; a mark
     * only moves the playout model, which sends nothing.
     */

    for (e = 0; e < EV(MAX); e++) {
        if (e == EV(PEER_CLOSE)
            || e == EV(IDLE_TIMEOUT)
            || e == EV(SHUTDOWN)
            || e == EV(MARK))
        {
            continue;
        }

        test_state_expect(ST(CLOSED), e, ST(CLOSED), A(NONE), A(NONE));
    }

    test_state_expect(ST(CLOSED), EV(MARK), ST(CLOSED), A(MARK), A(NONE));

    test_state_expect(ST(CLOSED), EV(PEER_CLOSE), ST(CLOSED),
                      A(CLOSE_REPLY), A(NONE));
}


/* ---- names -------------------------------------------------------------- */


static void
test_state_names(void **state)
{
    size_t  i;

    (void) state;

    assert_string_equal(ngx_http_voice_state_name(ST(CONNECTED)),
                        "connected");
    assert_string_equal(ngx_http_voice_state_name(ST(STREAMING)),
                        "streaming");
    assert_string_equal(ngx_http_voice_state_name(ST(LISTENING)),
                        "listening");
    assert_string_equal(ngx_http_voice_state_name(ST(TRANSCRIBING)),
                        "transcribing");
    assert_string_equal(ngx_http_voice_state_name(ST(THINKING)),
                        "thinking");
    assert_string_equal(ngx_http_voice_state_name(ST(SPEAKING)),
                        "speaking");
    assert_string_equal(ngx_http_voice_state_name(ST(INTERRUPTED)),
                        "interrupted");
    assert_string_equal(ngx_http_voice_state_name(ST(CANCELLING)),
                        "cancelling");
    assert_string_equal(ngx_http_voice_state_name(ST(CLOSED)), "closed");
    assert_string_equal(ngx_http_voice_state_name(ST(NONE)), "unknown");

    for (i = 0; i < sizeof(test_state_bad_states) / sizeof(long); i++) {
        assert_string_equal(ngx_http_voice_state_name(
                         (ngx_http_voice_state_e) test_state_bad_states[i]),
                            "unknown");
    }
}


static void
test_event_names(void **state)
{
    size_t                  i;
    const char             *name;
    ngx_http_voice_event_e  e, f;

    (void) state;

    for (e = 0; e < EV(MAX); e++) {
        name = ngx_http_voice_event_name(e);

        assert_non_null(name);
        assert_true(name[0] != '\0');
        assert_string_not_equal(name, "UNKNOWN");

        for (f = 0; f < e; f++) {
            assert_string_not_equal(name, ngx_http_voice_event_name(f));
        }
    }

    for (i = 0; i < sizeof(test_state_bad_events) / sizeof(long); i++) {
        assert_string_equal(ngx_http_voice_event_name(
                         (ngx_http_voice_event_e) test_state_bad_events[i]),
                            "UNKNOWN");
    }
}


static void
test_action_names(void **state)
{
    const char              *name;
    ngx_http_voice_action_e  a, b;

    (void) state;

    for (a = 0; a < A(MAX); a++) {
        name = ngx_http_voice_action_name(a);

        assert_non_null(name);
        assert_true(name[0] != '\0');
        assert_string_not_equal(name, "UNKNOWN");

        for (b = 0; b < a; b++) {
            assert_string_not_equal(name, ngx_http_voice_action_name(b));
        }
    }

    assert_string_equal(ngx_http_voice_action_name(A(MAX)), "UNKNOWN");
    assert_string_equal(
        ngx_http_voice_action_name((ngx_http_voice_action_e) -1), "UNKNOWN");
    assert_string_equal(
        ngx_http_voice_action_name((ngx_http_voice_action_e) 1000), "UNKNOWN");
}


/* ---- random walks ------------------------------------------------------- */


/*
 * The event the session raises after these actions: at once for the
 * steps of an interruption; for a barge-in if the speech lasts, and for
 * a new reply's first audio, later and only maybe.  -1 for none.
 */

static long
test_state_followup(const ngx_http_voice_transition_t *t)
{
    if (test_state_has_action(t, A(SILENCE))) {
        return EV(SILENCED);
    }

    if (test_state_has_action(t, A(SETTLE))) {
        return EV(CANCELLED);
    }

    if (test_state_has_action(t, A(BARGE_IN))) {
        return EV(BARGE_IN);
    }

    if (test_state_has_action(t, A(THINK))) {
        return EV(TTS_AUDIO);
    }

    return -1;
}


static void
test_random_walks(void **state)
{
    int                                 open;
    size_t                              walk, step, len, k, settled;
    long                                ev, follow;
    uint64_t                            s;
    ngx_http_voice_state_e              cur;
    const test_state_row_t             *row;
    const ngx_http_voice_transition_t  *t;
    size_t                              reached[ST(MAX)];

    (void) state;

    s = 0x7374617465ULL;
    memset(reached, 0, sizeof(reached));
    settled = 0;

    for (walk = 0; walk < 20000; walk++) {
        cur = ST(CONNECTED);
        open = 0;
        follow = -1;
        len = 1 + (size_t) (test_state_rand(&s) % 48);

        for (step = 0; step < len; step++) {

            /* mostly valid events, some garbage */

            k = (size_t) (test_state_rand(&s) % 20);

            if (follow >= 0 && k < 15) {

                /*
                 * Mostly as the session does: the event an action asks
                 * for comes next.  Otherwise anything may come, and in an
                 * interruption's steps it must be refused or close.
                 */

                ev = follow;

            } else if (k < 16) {
                ev = (long) (test_state_rand(&s) % EV(MAX));

                /* early on, favour the starts so walks get going */

                if (step == 0 && k < 4) {
                    ev = EV(SESSION_START);

                } else if (step == 0 && k < 12) {
                    ev = EV(AGENT_START);
                }

            } else {
                ev = test_state_bad_events[test_state_rand(&s)
                         % (sizeof(test_state_bad_events) / sizeof(long))];
            }

            t = ngx_http_voice_state_next(cur, (ngx_http_voice_event_e) ev);

            test_state_well_formed(t);

            if (ev >= 0 && ev < EV(MAX)) {
                row = test_state_lookup(cur, (ngx_http_voice_event_e) ev);
                assert_non_null(row);
                test_state_matches(t, row);
                test_state_check_path(cur, (ngx_http_voice_event_e) ev, t);

            } else {
                assert_int_equal(t->next, cur);
                assert_int_equal(t->actions[0], A(ERROR_INVALID));
            }

            /* a reply ends once for each start, and only in its states */

            if (cur != ST(CLOSED)) {
                open = test_state_follow_reply(open, t);
            }

            /* closed is final */

            if (cur == ST(CLOSED)) {
                assert_int_equal(t->next, ST(CLOSED));
            }

            if (cur == ST(CANCELLING) && t->next == ST(LISTENING)) {
                settled++;
            }

            /* what is awaited stays awaited while the state stays */

            if (t->next != cur || follow < 0) {
                follow = test_state_followup(t);
            }

            cur = t->next;
            reached[cur]++;
        }
    }

    /* the walks did visit every state, or they proved little */

    for (k = ST(CONNECTED); k < ST(MAX); k++) {
        if (reached[k] == 0) {
            print_error("no walk reached %s\n",
                        ngx_http_voice_state_name(k));
        }

        assert_true(reached[k] > 0);
    }

    /* and went through whole interruptions */

    assert_true(settled > 0);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_expected_table_complete),
        cmocka_unit_test(test_table_matches),
        cmocka_unit_test(test_every_state_every_event),
        cmocka_unit_test(test_invalid_events),
        cmocka_unit_test(test_invalid_states),
        cmocka_unit_test(test_close_discipline),
        cmocka_unit_test(test_session_start_first),
        cmocka_unit_test(test_anything_else_first),
        cmocka_unit_test(test_bad_format_first),
        cmocka_unit_test(test_audio_flows),
        cmocka_unit_test(test_streaming_messages),
        cmocka_unit_test(test_speech_turns),
        cmocka_unit_test(test_turn_ends),
        cmocka_unit_test(test_detector_events_out_of_place),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_gateway_messages),
        cmocka_unit_test(test_live_states_alike),
        cmocka_unit_test(test_turn_discipline),
        cmocka_unit_test(test_speaking_like_thinking),
        cmocka_unit_test(test_reply_lifecycle),
        cmocka_unit_test(test_barge_in),
        cmocka_unit_test(test_interruption_steps),
        cmocka_unit_test(test_reply_discipline),
        cmocka_unit_test(test_session_end),
        cmocka_unit_test(test_peer_close),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_idle),
        cmocka_unit_test(test_closed_ignores_data),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_event_names),
        cmocka_unit_test(test_action_names),
        cmocka_unit_test(test_random_walks),
    };

    return cmocka_run_group_tests_name("ngx_http_voice_state", tests,
                                       NULL, NULL);
}
