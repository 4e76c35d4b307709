
/*
 * Client dialects: decoding client messages into session events, and
 * building the JSON of server messages.  voice.v1 is the native one;
 * Twilio Media Streams and the Vonage WebSocket map onto the same events.
 * JSON goes through jansson, but for the per-frame Twilio media message.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>

#include "ngx_http_voice_protocol.h"


typedef struct {
    const char              *name;
    ngx_http_voice_event_e   event;
} ngx_http_voice_type_t;


static void ngx_http_voice_protocol_native(json_t *root,
    ngx_http_voice_message_t *m, u_char *buf, size_t cap);
static void ngx_http_voice_protocol_text(json_t *root,
    ngx_http_voice_message_t *m, u_char *buf, size_t cap);
static void ngx_http_voice_protocol_twilio(json_t *root,
    ngx_http_voice_message_t *m, u_char *audio, size_t audio_cap);
static void ngx_http_voice_protocol_twilio_start(json_t *root,
    ngx_http_voice_message_t *m);
static void ngx_http_voice_protocol_vonage(json_t *root,
    ngx_http_voice_message_t *m);
static ngx_int_t ngx_http_voice_protocol_number(json_t *value,
    ngx_uint_t *n);
static ngx_int_t ngx_http_voice_protocol_token(json_t *value, u_char *buf,
    size_t size, size_t *len);
static ngx_int_t ngx_http_voice_protocol_start(json_t *root,
    ngx_http_voice_message_t *m);
static ngx_int_t ngx_http_voice_protocol_format(json_t *obj,
    ngx_http_voice_format_t *f, const char *which,
    ngx_http_voice_message_t *m);
static void ngx_http_voice_protocol_reason(ngx_http_voice_message_t *m,
    const char *fmt, ...);
static size_t ngx_http_voice_protocol_dump(json_t *json, u_char *buf,
    size_t size);


static ngx_http_voice_type_t  ngx_http_voice_types[] = {
    { "session.start",    NGX_HTTP_VOICE_EV_SESSION_START },
    { "input.commit",     NGX_HTTP_VOICE_EV_COMMIT },
    { "input.mute",       NGX_HTTP_VOICE_EV_MUTE },
    { "input.unmute",     NGX_HTTP_VOICE_EV_UNMUTE },
    { "text.input",       NGX_HTTP_VOICE_EV_TEXT_INPUT },
    { "response.cancel",  NGX_HTTP_VOICE_EV_CANCEL },
    { "session.end",      NGX_HTTP_VOICE_EV_SESSION_END },
    { NULL,               NGX_HTTP_VOICE_EV_BAD_MESSAGE }
};


static const char  *ngx_http_voice_encodings[] = {
    NULL,
    "pcm_s16le",
    "mulaw",
    "opus"
};


void
ngx_http_voice_protocol_decode(ngx_uint_t dialect, const u_char *data,
    size_t len, ngx_http_voice_message_t *m, u_char *audio,
    size_t audio_cap)
{
    json_t        *root;
    json_error_t   err;

    m->event = NGX_HTTP_VOICE_EV_BAD_MESSAGE;
    m->session_id_len = 0;
    m->audio = NULL;
    m->audio_len = 0;
    m->mark_len = 0;
    m->text = NULL;
    m->text_len = 0;
    m->digit = 0;
    m->reason[0] = '\0';

    root = json_loadb((const char *) data, len, JSON_REJECT_DUPLICATES, &err);

    if (root == NULL) {
        ngx_http_voice_protocol_reason(m, "invalid JSON: %s", err.text);
        return;
    }

    if (!json_is_object(root)) {
        ngx_http_voice_protocol_reason(m, "a JSON object expected");
        goto done;
    }

    switch (dialect) {

    case NGX_HTTP_VOICE_DIALECT_TWILIO:
        ngx_http_voice_protocol_twilio(root, m, audio, audio_cap);
        break;

    case NGX_HTTP_VOICE_DIALECT_VONAGE:
        ngx_http_voice_protocol_vonage(root, m);
        break;

    default: /* NGX_HTTP_VOICE_DIALECT_VOICE */
        ngx_http_voice_protocol_native(root, m, audio, audio_cap);
    }

done:

    json_decref(root);
}


static void
ngx_http_voice_protocol_native(json_t *root, ngx_http_voice_message_t *m,
    u_char *buf, size_t cap)
{
    json_t                 *type;
    const char             *name;
    ngx_http_voice_type_t  *t;

    type = json_object_get(root, "type");

    if (!json_is_string(type)) {
        ngx_http_voice_protocol_reason(m, "a JSON object with a \"type\" "
                                       "string expected");
        return;
    }

    name = json_string_value(type);

    for (t = ngx_http_voice_types; t->name; t++) {
        if (ngx_strcmp(name, t->name) == 0) {
            break;
        }
    }

    if (t->name == NULL) {
        ngx_http_voice_protocol_reason(m, "unknown message type");
        return;
    }

    m->event = t->event;

    if (m->event == NGX_HTTP_VOICE_EV_SESSION_START) {
        (void) ngx_http_voice_protocol_start(root, m);
    }

    if (m->event == NGX_HTTP_VOICE_EV_TEXT_INPUT) {
        ngx_http_voice_protocol_text(root, m, buf, cap);
    }
}


/* text.input: the user's turn as text, copied out of the JSON */

static void
ngx_http_voice_protocol_text(json_t *root, ngx_http_voice_message_t *m,
    u_char *buf, size_t cap)
{
    size_t   n;
    json_t  *text;

    text = json_object_get(root, "text");

    if (!json_is_string(text) || json_string_length(text) == 0) {
        m->event = NGX_HTTP_VOICE_EV_BAD_MESSAGE;
        ngx_http_voice_protocol_reason(m, "text.input needs a non-empty "
                                       "\"text\" string");
        return;
    }

    n = json_string_length(text);

    if (n > cap) {
        m->event = NGX_HTTP_VOICE_EV_BAD_MESSAGE;
        ngx_http_voice_protocol_reason(m, "text.input text is too long");
        return;
    }

    ngx_memcpy(buf, json_string_value(text), n);

    m->text = buf;
    m->text_len = n;
}


/*
 * Twilio Media Streams: Twilio is the client, every frame is JSON, and
 * numbers often come as strings.  Events it may add later are ignored.
 */

static void
ngx_http_voice_protocol_twilio(json_t *root, ngx_http_voice_message_t *m,
    u_char *audio, size_t audio_cap)
{
    json_t      *event, *obj, *payload;
    ngx_str_t    src, dst;
    const char  *name;

    event = json_object_get(root, "event");
    name = json_string_value(event);

    if (name == NULL) {
        ngx_http_voice_protocol_reason(m, "a Twilio message has an "
                                       "\"event\" string");
        return;
    }

    if (ngx_strcmp(name, "media") == 0) {
        obj = json_object_get(root, "media");
        payload = json_object_get(obj, "payload");

        if (!json_is_string(payload)) {
            ngx_http_voice_protocol_reason(m, "\"media.payload\" missing");
            return;
        }

        /* only the caller's own voice: other tracks are not ours to echo */

        name = json_string_value(json_object_get(obj, "track"));

        if (name && ngx_strcmp(name, "inbound") != 0) {
            m->event = NGX_HTTP_VOICE_EV_NOTICE;
            return;
        }

        src.data = (u_char *) json_string_value(payload);
        src.len = json_string_length(payload);

        if (ngx_base64_decoded_length(src.len) > audio_cap) {
            ngx_http_voice_protocol_reason(m, "\"media.payload\" too long");
            return;
        }

        dst.data = audio;

        if (ngx_decode_base64(&dst, &src) != NGX_OK) {
            ngx_http_voice_protocol_reason(m, "\"media.payload\" is not "
                                           "base64");
            return;
        }

        m->event = NGX_HTTP_VOICE_EV_AUDIO;
        m->audio = audio;
        m->audio_len = dst.len;
        return;
    }

    if (ngx_strcmp(name, "start") == 0) {
        ngx_http_voice_protocol_twilio_start(root, m);
        return;
    }

    if (ngx_strcmp(name, "mark") == 0) {
        obj = json_object_get(json_object_get(root, "mark"), "name");

        if (ngx_http_voice_protocol_token(obj, m->mark, sizeof(m->mark),
                                          &m->mark_len)
            != NGX_OK)
        {
            ngx_http_voice_protocol_reason(m, "\"mark.name\" invalid");
            return;
        }

        m->event = NGX_HTTP_VOICE_EV_MARK;
        return;
    }

    if (ngx_strcmp(name, "dtmf") == 0) {
        name = json_string_value(json_object_get(json_object_get(root, "dtmf"),
                                                 "digit"));
        if (name == NULL || ngx_strlen(name) != 1) {
            ngx_http_voice_protocol_reason(m, "\"dtmf.digit\" invalid");
            return;
        }

        m->event = NGX_HTTP_VOICE_EV_DTMF;
        m->digit = (u_char) name[0];
        return;
    }

    if (ngx_strcmp(name, "stop") == 0) {
        m->event = NGX_HTTP_VOICE_EV_SESSION_END;
        return;
    }

    /* "connected" and whatever else Twilio says in passing */

    m->event = NGX_HTTP_VOICE_EV_NOTICE;
}


static void
ngx_http_voice_protocol_twilio_start(json_t *root,
    ngx_http_voice_message_t *m)
{
    json_t      *start, *format, *sid;
    ngx_uint_t   rate, channels;
    const char  *encoding;

    start = json_object_get(root, "start");
    format = json_object_get(start, "mediaFormat");

    sid = json_object_get(root, "streamSid");

    if (sid == NULL) {
        sid = json_object_get(start, "streamSid");
    }

    if (ngx_http_voice_protocol_token(sid, m->session_id,
                                      sizeof(m->session_id),
                                      &m->session_id_len)
        != NGX_OK)
    {
        ngx_http_voice_protocol_reason(m, "\"streamSid\" invalid");
        return;
    }

    encoding = json_string_value(json_object_get(format, "encoding"));

    if (encoding == NULL
        || ngx_strcmp(encoding, "audio/x-mulaw") != 0
        || ngx_http_voice_protocol_number(json_object_get(format,
                                                          "sampleRate"),
                                          &rate)
           != NGX_OK
        || rate != 8000
        || (json_object_get(format, "channels")
            && (ngx_http_voice_protocol_number(json_object_get(format,
                                                               "channels"),
                                               &channels)
                != NGX_OK
                || channels != 1)))
    {
        m->event = NGX_HTTP_VOICE_EV_BAD_FORMAT;
        ngx_http_voice_protocol_reason(m, "Twilio \"mediaFormat\" must be "
                                       "audio/x-mulaw, 8000 Hz, mono");
        return;
    }

    m->event = NGX_HTTP_VOICE_EV_SESSION_START;
    m->input.encoding = NGX_HTTP_VOICE_MULAW;
    m->input.sample_rate = 8000;
    m->input.channels = 1;
    m->output = m->input;
}


/*
 * The Vonage WebSocket: a JSON first frame names the rate, then binary
 * L16 frames both ways.
 */

static void
ngx_http_voice_protocol_vonage(json_t *root, ngx_http_voice_message_t *m)
{
    u_char      *p;
    ngx_int_t    rate;
    const char  *name, *type;

    name = json_string_value(json_object_get(root, "event"));

    if (name == NULL) {
        ngx_http_voice_protocol_reason(m, "a Vonage message has an "
                                       "\"event\" string");
        return;
    }

    if (ngx_strcmp(name, "websocket:connected") == 0) {
        type = json_string_value(json_object_get(root, "content-type"));
        rate = 0;

        if (type && ngx_strncasecmp((u_char *) type,
                                    (u_char *) "audio/l16;rate=", 15) == 0)
        {
            p = (u_char *) type + 15;
            rate = ngx_atoi(p, ngx_strlen(p));
        }

        if (rate != 8000 && rate != 16000 && rate != 24000) {
            m->event = NGX_HTTP_VOICE_EV_BAD_FORMAT;
            ngx_http_voice_protocol_reason(m, "Vonage \"content-type\" must "
                                           "be audio/l16;rate=8000, 16000 "
                                           "or 24000");
            return;
        }

        m->event = NGX_HTTP_VOICE_EV_SESSION_START;
        m->input.encoding = NGX_HTTP_VOICE_PCM_S16LE;
        m->input.sample_rate = rate;
        m->input.channels = 1;
        m->output = m->input;
        return;
    }

    if (ngx_strcmp(name, "websocket:dtmf") == 0) {
        name = json_string_value(json_object_get(root, "digit"));

        if (name == NULL || ngx_strlen(name) != 1) {
            ngx_http_voice_protocol_reason(m, "\"digit\" invalid");
            return;
        }

        m->event = NGX_HTTP_VOICE_EV_DTMF;
        m->digit = (u_char) name[0];
        return;
    }

    m->event = NGX_HTTP_VOICE_EV_NOTICE;
}


/* a number, or a string holding one: gateways send both */

static ngx_int_t
ngx_http_voice_protocol_number(json_t *value, ngx_uint_t *n)
{
    ngx_int_t    v;
    const char  *s;

    if (json_is_integer(value) && json_integer_value(value) >= 0) {
        *n = (ngx_uint_t) json_integer_value(value);
        return NGX_OK;
    }

    s = json_string_value(value);

    if (s == NULL) {
        return NGX_ERROR;
    }

    v = ngx_atoi((u_char *) s, ngx_strlen(s));

    if (v == NGX_ERROR) {
        return NGX_ERROR;
    }

    *n = (ngx_uint_t) v;

    return NGX_OK;
}


/*
 * An identifier that goes into logs and replies unescaped: letters,
 * digits and "-_.:" only.
 */

static ngx_int_t
ngx_http_voice_protocol_token(json_t *value, u_char *buf, size_t size,
    size_t *len)
{
    u_char  *p;
    size_t   i, n;

    p = (u_char *) json_string_value(value);
    n = p ? json_string_length(value) : 0;

    if (n == 0 || n > size) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9')
              || ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'z')
              || p[i] == '-' || p[i] == '_' || p[i] == '.' || p[i] == ':'))
        {
            return NGX_ERROR;
        }
    }

    ngx_memcpy(buf, p, n);
    *len = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_protocol_start(json_t *root, ngx_http_voice_message_t *m)
{
    json_t  *audio, *id;

    audio = json_object_get(root, "audio");

    if (audio && !json_is_object(audio)) {
        m->event = NGX_HTTP_VOICE_EV_BAD_FORMAT;
        ngx_http_voice_protocol_reason(m, "\"audio\" must be an object");
        return NGX_ERROR;
    }

    if (ngx_http_voice_protocol_format(json_object_get(audio, "input"),
                                       &m->input, "input", m)
        != NGX_OK
        || ngx_http_voice_protocol_format(json_object_get(audio, "output"),
                                          &m->output, "output", m)
           != NGX_OK)
    {
        m->event = NGX_HTTP_VOICE_EV_BAD_FORMAT;
        return NGX_ERROR;
    }

    id = json_object_get(root, "session_id");

    if (id && ngx_http_voice_protocol_token(id, m->session_id,
                                            sizeof(m->session_id),
                                            &m->session_id_len)
              != NGX_OK)
    {
        m->event = NGX_HTTP_VOICE_EV_BAD_MESSAGE;
        ngx_http_voice_protocol_reason(m, "\"session_id\" must be 1 to %d "
                                       "letters, digits or \"-_.:\"",
                                       NGX_HTTP_VOICE_MAX_SESSION_ID);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_protocol_format(json_t *obj, ngx_http_voice_format_t *f,
    const char *which, ngx_http_voice_message_t *m)
{
    json_t      *enc, *rate, *channels;
    ngx_uint_t   i;
    const char  *name;

    f->encoding = NGX_HTTP_VOICE_PCM_S16LE;
    f->sample_rate = 16000;
    f->channels = 1;

    if (obj == NULL) {
        return NGX_OK;
    }

    if (!json_is_object(obj)) {
        ngx_http_voice_protocol_reason(m, "\"audio.%s\" must be an object",
                                       which);
        return NGX_ERROR;
    }

    enc = json_object_get(obj, "encoding");
    rate = json_object_get(obj, "sample_rate");
    channels = json_object_get(obj, "channels");

    if (enc) {
        name = json_string_value(enc);

        for (i = 1; i < sizeof(ngx_http_voice_encodings) / sizeof(char *);
             i++)
        {
            if (name && ngx_strcmp(name, ngx_http_voice_encodings[i]) == 0) {
                break;
            }
        }

        if (i == sizeof(ngx_http_voice_encodings) / sizeof(char *)) {
            ngx_http_voice_protocol_reason(m, "\"audio.%s.encoding\" must be "
                                           "pcm_s16le, mulaw or opus", which);
            return NGX_ERROR;
        }

        f->encoding = i;

        /* each encoding has its own natural rate */

        if (i == NGX_HTTP_VOICE_MULAW) {
            f->sample_rate = 8000;

        } else if (i == NGX_HTTP_VOICE_OPUS) {
            f->sample_rate = 48000;
        }
    }

    if (rate) {
        if (!json_is_integer(rate)) {
            goto bad_rate;
        }

        f->sample_rate = (ngx_uint_t) json_integer_value(rate);
    }

    switch (f->encoding) {

    case NGX_HTTP_VOICE_PCM_S16LE:
        if (f->sample_rate != 8000 && f->sample_rate != 16000
            && f->sample_rate != 24000 && f->sample_rate != 48000)
        {
            goto bad_rate;
        }
        break;

    case NGX_HTTP_VOICE_MULAW:
        if (f->sample_rate != 8000) {
            goto bad_rate;
        }
        break;

    default: /* NGX_HTTP_VOICE_OPUS */
        if (f->sample_rate != 48000) {
            goto bad_rate;
        }
    }

    if (channels
        && (!json_is_integer(channels) || json_integer_value(channels) != 1))
    {
        ngx_http_voice_protocol_reason(m, "\"audio.%s.channels\" must be 1",
                                       which);
        return NGX_ERROR;
    }

    return NGX_OK;

bad_rate:

    ngx_http_voice_protocol_reason(m, "\"audio.%s.sample_rate\" is not "
                                   "supported with %s", which,
                                   ngx_http_voice_encodings[f->encoding]);
    return NGX_ERROR;
}


const char *
ngx_http_voice_encoding_name(ngx_uint_t encoding)
{
    if (encoding == 0
        || encoding >= sizeof(ngx_http_voice_encodings) / sizeof(char *))
    {
        return "unknown";
    }

    return ngx_http_voice_encodings[encoding];
}


static void
ngx_http_voice_protocol_reason(ngx_http_voice_message_t *m,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf((u_char *) m->reason,
                      (u_char *) m->reason + sizeof(m->reason) - 1,
                      fmt, args);
    va_end(args);

    *p = '\0';
}


size_t
ngx_http_voice_protocol_started(u_char *buf, size_t size,
    ngx_str_t *session_id, ngx_http_voice_format_t *in,
    ngx_http_voice_format_t *out)
{
    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:s%, s:s, s:{s:{s:s, s:i, s:i}, s:{s:s, s:i}}}",
                  "type", "session.started",
                  "session_id", session_id->data, session_id->len,
                  "protocol", "voice.v1",
                  "audio",
                  "input",
                  "encoding", ngx_http_voice_encoding_name(in->encoding),
                  "sample_rate", (int) in->sample_rate,
                  "channels", (int) in->channels,
                  "output",
                  "encoding", ngx_http_voice_encoding_name(out->encoding),
                  "sample_rate", (int) out->sample_rate),
        buf, size);
}


size_t
ngx_http_voice_protocol_state(u_char *buf, size_t size, const char *state)
{
    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:s}", "type", "state", "state", state),
        buf, size);
}


size_t
ngx_http_voice_protocol_error(u_char *buf, size_t size, const char *code,
    const char *message, ngx_uint_t recoverable)
{
    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:s, s:s, s:b}", "type", "error", "code", code,
                  "message", message, "recoverable", (int) recoverable),
        buf, size);
}


size_t
ngx_http_voice_protocol_info(u_char *buf, size_t size, const char *code,
    const char *message)
{
    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:s, s:s}", "type", "info", "code", code,
                  "message", message),
        buf, size);
}


size_t
ngx_http_voice_protocol_speech(u_char *buf, size_t size, ngx_uint_t started,
    ngx_uint_t turn, uint64_t audio_ms)
{
    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:i, s:I}",
                  "type", started ? "speech.started" : "speech.ended",
                  "turn", (int) turn,
                  "audio_ms", (json_int_t) audio_ms),
        buf, size);
}


size_t
ngx_http_voice_protocol_transcript(u_char *buf, size_t size,
    ngx_uint_t final, ngx_uint_t turn, ngx_str_t *text)
{
    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:i, s:s%}",
                  "type", final ? "transcript.final" : "transcript.partial",
                  "turn", (int) turn,
                  "text", (char *) text->data, text->len),
        buf, size);
}


size_t
ngx_http_voice_protocol_delta(u_char *buf, size_t size, ngx_uint_t turn,
    ngx_str_t *text)
{
    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:i, s:s%}", "type", "response.text.delta",
                  "turn", (int) turn,
                  "delta", (char *) text->data, text->len),
        buf, size);
}


size_t
ngx_http_voice_protocol_reply(u_char *buf, size_t size, ngx_uint_t turn,
    ngx_str_t *text)
{
    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:i, s:s%}", "type", "response.text.done",
                  "turn", (int) turn,
                  "text", (char *) text->data, text->len),
        buf, size);
}


/* per-stage milliseconds of a turn; a negative one is left out */

size_t
ngx_http_voice_protocol_metrics(u_char *buf, size_t size, ngx_uint_t turn,
    double *ms)
{
    json_t       *o;
    ngx_uint_t    i;

    static const char  *names[] = {
        "stt_final_ms", "llm_first_token_ms", "tts_first_audio_ms",
        "voice_to_voice_ms"
    };

    o = json_pack("{s:s, s:i}", "type", "metrics", "turn", (int) turn);
    if (o == NULL) {
        return 0;
    }

    for (i = 0; i < 4; i++) {
        if (ms[i] >= 0) {
            json_object_set_new(o, names[i],
                                json_real((double) (int64_t) (ms[i] * 100)
                                          / 100));
        }
    }

    return ngx_http_voice_protocol_dump(o, buf, size);
}


size_t
ngx_http_voice_protocol_audio_done(u_char *buf, size_t size, ngx_uint_t turn)
{
    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:i}", "type", "response.audio.done",
                  "turn", (int) turn),
        buf, size);
}


size_t
ngx_http_voice_protocol_interrupted(u_char *buf, size_t size,
    ngx_uint_t turn, const char *reason, ngx_str_t *spoken)
{
    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:i, s:s, s:s%}", "type", "response.interrupted",
                  "turn", (int) turn, "reason", reason,
                  "spoken_text", (char *) spoken->data, spoken->len),
        buf, size);
}


/*
 * tool.call and tool.result: arguments and results are JSON when they
 * parse as JSON, and strings otherwise
 */

size_t
ngx_http_voice_protocol_tool(u_char *buf, size_t size, ngx_uint_t result,
    ngx_uint_t turn, ngx_str_t *id, ngx_str_t *name, ngx_str_t *value)
{
    json_t  *v;

    v = json_loadb((char *) value->data, value->len,
                   JSON_DECODE_ANY|JSON_ALLOW_NUL, NULL);

    if (v == NULL) {
        v = json_stringn((char *) value->data, value->len);
    }

    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:i, s:s%, s:s%, s:o?}",
                  "type", result ? "tool.result" : "tool.call",
                  "turn", (int) turn,
                  "id", (char *) id->data, id->len,
                  "name", (char *) name->data, name->len,
                  result ? "result" : "arguments", v),
        buf, size);
}


/*
 * Twilio media goes out fifty times a second: written directly, since
 * the stream id is a checked token and base64 needs no escaping.
 */

size_t
ngx_http_voice_protocol_twilio_media(u_char *buf, size_t size,
    ngx_str_t *stream, const u_char *audio, size_t len)
{
    u_char     *p, *last;
    ngx_str_t   src, dst;

    if (size < ngx_http_voice_protocol_twilio_size(len)) {
        return 0;
    }

    last = buf + size;

    p = ngx_slprintf(buf, last, "{\"event\":\"media\",\"streamSid\":\"%V\","
                     "\"media\":{\"payload\":\"", stream);

    src.data = (u_char *) audio;
    src.len = len;
    dst.data = p;

    ngx_encode_base64(&dst, &src);

    p = ngx_cpymem(p + dst.len, "\"}}", 3);

    return p - buf;
}


size_t
ngx_http_voice_protocol_twilio_mark(u_char *buf, size_t size,
    ngx_str_t *stream, ngx_uint_t mark)
{
    u_char  name[NGX_INT_T_LEN];
    size_t  n;

    n = ngx_sprintf(name, "%ui", mark) - name;

    return ngx_http_voice_protocol_dump(
        json_pack("{s:s, s:s%, s:{s:s%}}", "event", "mark",
                  "streamSid", stream->data, stream->len,
                  "mark", "name", name, n),
        buf, size);
}


size_t
ngx_http_voice_protocol_clear(ngx_uint_t dialect, u_char *buf, size_t size,
    ngx_str_t *stream)
{
    if (dialect == NGX_HTTP_VOICE_DIALECT_TWILIO) {
        return ngx_http_voice_protocol_dump(
            json_pack("{s:s, s:s%}", "event", "clear",
                      "streamSid", stream->data, stream->len),
            buf, size);
    }

    return ngx_http_voice_protocol_dump(
        json_pack("{s:s}", "action", "clear"), buf, size);
}


static size_t
ngx_http_voice_protocol_dump(json_t *json, u_char *buf, size_t size)
{
    size_t  n;

    if (json == NULL) {
        return 0;
    }

    n = json_dumpb(json, (char *) buf, size,
                   JSON_COMPACT | JSON_REAL_PRECISION(6));

    json_decref(json);

    return (n <= size) ? n : 0;
}
