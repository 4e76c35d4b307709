
/*
 * voice.v1: decoding client messages into session events, and building
 * the JSON of server messages.  JSON goes through jansson both ways.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>

#include "ngx_http_voice_protocol.h"


typedef struct {
    const char              *name;
    ngx_http_voice_event_e   event;
} ngx_http_voice_type_t;


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
ngx_http_voice_protocol_decode(const u_char *data, size_t len,
    ngx_http_voice_message_t *m)
{
    json_t                 *root, *type;
    const char             *name;
    json_error_t            err;
    ngx_http_voice_type_t  *t;

    m->event = NGX_HTTP_VOICE_EV_BAD_MESSAGE;
    m->session_id_len = 0;
    m->reason[0] = '\0';

    root = json_loadb((const char *) data, len, JSON_REJECT_DUPLICATES, &err);

    if (root == NULL) {
        ngx_http_voice_protocol_reason(m, "invalid JSON: %s", err.text);
        return;
    }

    type = json_object_get(root, "type");

    if (!json_is_object(root) || !json_is_string(type)) {
        ngx_http_voice_protocol_reason(m, "a JSON object with a \"type\" "
                                       "string expected");
        goto done;
    }

    name = json_string_value(type);

    for (t = ngx_http_voice_types; t->name; t++) {
        if (ngx_strcmp(name, t->name) == 0) {
            break;
        }
    }

    if (t->name == NULL) {
        ngx_http_voice_protocol_reason(m, "unknown message type");
        goto done;
    }

    m->event = t->event;

    if (m->event == NGX_HTTP_VOICE_EV_SESSION_START) {
        (void) ngx_http_voice_protocol_start(root, m);
    }

done:

    json_decref(root);
}


static ngx_int_t
ngx_http_voice_protocol_start(json_t *root, ngx_http_voice_message_t *m)
{
    u_char      *p;
    size_t       i, len;
    json_t      *audio, *id;
    const char  *s;

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

    if (id == NULL) {
        return NGX_OK;
    }

    /* the id goes into logs and replies: a plain token only */

    s = json_string_value(id);
    len = s ? json_string_length(id) : 0;

    if (len == 0 || len > NGX_HTTP_VOICE_MAX_SESSION_ID) {
        goto invalid;
    }

    p = (u_char *) s;

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9')
              || ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'z')
              || p[i] == '-' || p[i] == '_' || p[i] == '.' || p[i] == ':'))
        {
            goto invalid;
        }
    }

    ngx_memcpy(m->session_id, p, len);
    m->session_id_len = len;

    return NGX_OK;

invalid:

    m->event = NGX_HTTP_VOICE_EV_BAD_MESSAGE;
    ngx_http_voice_protocol_reason(m, "\"session_id\" must be 1 to %d "
                                   "letters, digits or \"-_.:\"",
                                   NGX_HTTP_VOICE_MAX_SESSION_ID);
    return NGX_ERROR;
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


static size_t
ngx_http_voice_protocol_dump(json_t *json, u_char *buf, size_t size)
{
    size_t  n;

    if (json == NULL) {
        return 0;
    }

    n = json_dumpb(json, (char *) buf, size, JSON_COMPACT);

    json_decref(json);

    return (n <= size) ? n : 0;
}
