
/*
 * RFC 6455 framing: the incremental frame parser, the frame header
 * writer, payload masking, UTF-8 and close payload validation.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_voice_ws.h"


/*
 * UTF-8 validator state, 0 when no sequence is open: the continuation
 * bytes still due in bits 0-1 and the range the next one must fall in
 * (lowest value in bits 8-15, highest in bits 16-23).  The range is what
 * rules out overlong forms, surrogates and code points past U+10FFFF at
 * the second byte already.
 */
#define NGX_HTTP_VOICE_WS_UTF8_BAD      0x80000000
#define ngx_http_voice_ws_utf8_due(s)   ((s) & 3)

#define NGX_HTTP_VOICE_WS_ASCII_MASK    0x8080808080808080ULL


void
ngx_http_voice_ws_parser_init(ngx_http_voice_ws_parser_t *p,
    ngx_uint_t masked, uint64_t max_frame, uint64_t max_message)
{
    ngx_memzero(p, sizeof(ngx_http_voice_ws_parser_t));

    p->max_frame = max_frame;
    p->max_message = max_message;
    p->masked = masked ? 1 : 0;
}


ngx_int_t
ngx_http_voice_ws_parse(ngx_http_voice_ws_parser_t *p, u_char **pos,
    u_char *last, ngx_http_voice_ws_chunk_t *chunk)
{
    u_char       ch, *b, *data;
    size_t       n;
    ngx_uint_t   code, status;
    const char  *reason;

    enum {
        sw_start = 0,
        sw_length,
        sw_length_16,
        sw_length_64,
        sw_frame,
        sw_mask,
        sw_payload,
        sw_error
    };

    b = *pos;

    for ( ;; ) {

        switch (p->state) {

        case sw_start:

            if (b == last) {
                goto again;
            }

            ch = *b++;

            if (ch & 0x70) {
                /* no extension is ever negotiated */
                reason = "reserved bits set";
                goto protocol_error;
            }

            p->fin = ch >> 7;
            p->frame_opcode = ch & 0x0f;

            switch (p->frame_opcode) {

            case NGX_HTTP_VOICE_WS_CONT:
                if (p->message_opcode == 0) {
                    reason = "continuation without a message";
                    goto protocol_error;
                }

                break;

            case NGX_HTTP_VOICE_WS_TEXT:
            case NGX_HTTP_VOICE_WS_BINARY:
                if (p->message_opcode != 0) {
                    reason = "new message inside a fragmented one";
                    goto protocol_error;
                }

                p->message_opcode = p->frame_opcode;
                p->message_len = 0;
                p->message_start = 1;
                p->utf8 = 0;
                break;

            case NGX_HTTP_VOICE_WS_CLOSE:
            case NGX_HTTP_VOICE_WS_PING:
            case NGX_HTTP_VOICE_WS_PONG:
                if (!p->fin) {
                    reason = "fragmented control frame";
                    goto protocol_error;
                }

                p->control_len = 0;
                break;

            default:
                reason = "reserved opcode";
                goto protocol_error;
            }

            p->state = sw_length;

            /* fall through */

        case sw_length:

            if (b == last) {
                goto again;
            }

            ch = *b++;

            if ((ngx_uint_t) (ch >> 7) != p->masked) {
                reason = p->masked ? "unmasked frame" : "masked frame";
                goto protocol_error;
            }

            p->has_mask = ch >> 7;
            p->remaining = ch & 0x7f;

            if ((p->frame_opcode & 0x8)
                && p->remaining > NGX_HTTP_VOICE_WS_MAX_CONTROL)
            {
                reason = "control frame too long";
                goto protocol_error;
            }

            if (p->remaining == 126) {
                p->remaining = 0;
                p->len_bytes = 2;
                p->state = sw_length_16;
                break;
            }

            if (p->remaining == 127) {
                p->remaining = 0;
                p->len_bytes = 8;
                p->state = sw_length_64;
                break;
            }

            p->state = sw_frame;
            break;

        case sw_length_16:

            while (p->len_bytes) {
                if (b == last) {
                    goto again;
                }

                p->remaining = (p->remaining << 8) | *b++;
                p->len_bytes--;
            }

            if (p->remaining < 126) {
                reason = "length not minimally encoded";
                goto protocol_error;
            }

            p->state = sw_frame;
            break;

        case sw_length_64:

            while (p->len_bytes) {
                if (b == last) {
                    goto again;
                }

                ch = *b++;

                if (p->len_bytes == 8 && (ch & 0x80)) {
                    reason = "length with the top bit set";
                    goto protocol_error;
                }

                p->remaining = (p->remaining << 8) | ch;
                p->len_bytes--;
            }

            if (p->remaining < 65536) {
                reason = "length not minimally encoded";
                goto protocol_error;
            }

            /* fall through */

        case sw_frame:

            /* the length is known: refuse before any payload is read */

            if (p->max_frame && p->remaining > p->max_frame) {
                code = NGX_HTTP_VOICE_WS_TOO_BIG;
                reason = "frame too big";
                goto failed;
            }

            if (!(p->frame_opcode & 0x8)) {

                /* message_len never passes max_message: no overflow */

                if (p->max_message
                    && p->remaining > p->max_message - p->message_len)
                {
                    code = NGX_HTTP_VOICE_WS_TOO_BIG;
                    reason = "message too big";
                    goto failed;
                }

                p->message_len += p->remaining;
            }

            p->mask_bytes = 0;
            p->mask_pos = 0;
            p->state = sw_mask;

            /* fall through */

        case sw_mask:

            if (p->has_mask) {
                while (p->mask_bytes < 4) {
                    if (b == last) {
                        goto again;
                    }

                    p->mask[p->mask_bytes++] = *b++;
                }
            }

            p->state = sw_payload;

            /* fall through */

        case sw_payload:

            n = last - b;

            if (n > p->remaining) {
                n = (size_t) p->remaining;
            }

            if (p->frame_opcode & 0x8) {

                /* a control frame is handed out whole, however it came */

                ngx_memcpy(p->control + p->control_len, b, n);
                p->control_len += n;
                p->remaining -= n;
                b += n;

                if (p->remaining) {
                    goto again;
                }

                if (p->has_mask) {
                    ngx_http_voice_ws_mask(p->control, p->control_len,
                                           p->mask, 0);
                }

                if (p->frame_opcode == NGX_HTTP_VOICE_WS_CLOSE) {
                    code = ngx_http_voice_ws_close_check(p->control,
                                                         p->control_len,
                                                         &status);
                    if (code) {
                        reason = (code == NGX_HTTP_VOICE_WS_INVALID_DATA)
                                 ? "invalid UTF-8 in close reason"
                                 : "invalid close payload";
                        goto failed;
                    }
                }

                chunk->opcode = p->frame_opcode;
                chunk->data = p->control;
                chunk->len = p->control_len;
                chunk->first = 1;
                chunk->last = 1;

                p->state = sw_start;
                *pos = b;

                return NGX_OK;
            }

            if (n == 0) {

                if (p->remaining) {
                    goto again;
                }

                if (!p->fin) {
                    /* an empty fragment has nothing to hand out */
                    p->state = sw_start;
                    break;
                }
            }

            data = b;

            if (p->has_mask) {
                ngx_http_voice_ws_mask(b, n, p->mask, p->mask_pos);
                p->mask_pos = (p->mask_pos + n) & 3;
            }

            p->remaining -= n;
            b += n;

            if (p->message_opcode == NGX_HTTP_VOICE_WS_TEXT) {

                if (ngx_http_voice_ws_utf8(&p->utf8, data, n) == NGX_ERROR) {
                    code = NGX_HTTP_VOICE_WS_INVALID_DATA;
                    reason = "invalid UTF-8";
                    goto failed;
                }

                /* fewer bytes left than the open sequence needs */

                if (p->fin
                    && ngx_http_voice_ws_utf8_due(p->utf8) > p->remaining)
                {
                    code = NGX_HTTP_VOICE_WS_INVALID_DATA;
                    reason = "truncated UTF-8";
                    goto failed;
                }
            }

            chunk->opcode = p->message_opcode;
            chunk->data = data;
            chunk->len = n;
            chunk->first = p->message_start;
            chunk->last = (p->remaining == 0 && p->fin);

            p->message_start = 0;

            if (p->remaining == 0) {
                p->state = sw_start;

                if (p->fin) {
                    p->message_opcode = 0;
                }
            }

            *pos = b;

            return NGX_OK;

        default: /* sw_error */
            return NGX_ERROR;
        }
    }

again:

    *pos = b;

    return NGX_AGAIN;

protocol_error:

    code = NGX_HTTP_VOICE_WS_PROTOCOL_ERROR;

failed:

    /* the stream cannot be resynchronized: stay failed */

    p->state = sw_error;
    p->close_code = code;
    p->error = reason;

    return NGX_ERROR;
}


size_t
ngx_http_voice_ws_header(u_char *buf, ngx_uint_t opcode, ngx_uint_t fin,
    uint64_t len, const u_char *mask)
{
    u_char      *b;
    ngx_uint_t   shift;

    b = buf;

    *b++ = (u_char) ((fin ? 0x80 : 0) | (opcode & 0x0f));

    if (len < 126) {
        *b++ = (u_char) len;

    } else if (len <= 0xffff) {
        *b++ = 126;
        *b++ = (u_char) (len >> 8);
        *b++ = (u_char) len;

    } else {
        *b++ = 127;

        for (shift = 64; shift; /* void */ ) {
            shift -= 8;
            *b++ = (u_char) (len >> shift);
        }
    }

    if (mask != NULL) {
        buf[1] |= 0x80;
        b = ngx_cpymem(b, mask, 4);
    }

    return b - buf;
}


void
ngx_http_voice_ws_mask(u_char *data, size_t len, const u_char *mask,
    ngx_uint_t offset)
{
    u_char      *end, key[8];
    uint64_t     word, k;
    ngx_uint_t   i;

    offset &= 3;
    end = data + len;

    /* bytes up to an 8-byte boundary, so the word loop loads aligned */

    while (data < end && ((uintptr_t) data & 7)) {
        *data++ ^= mask[offset];
        offset = (offset + 1) & 3;
    }

    if (end - data >= 8) {

        for (i = 0; i < 8; i++) {
            key[i] = mask[(offset + i) & 3];
        }

        ngx_memcpy(&k, key, 8);

        /* 8 bytes are two whole turns of the key: offset stays */

        do {
            ngx_memcpy(&word, data, 8);
            word ^= k;
            ngx_memcpy(data, &word, 8);
            data += 8;

        } while (end - data >= 8);
    }

    while (data < end) {
        *data++ ^= mask[offset];
        offset = (offset + 1) & 3;
    }
}


ngx_int_t
ngx_http_voice_ws_utf8(uint32_t *state, const u_char *p, size_t len)
{
    u_char         c;
    uint32_t       due, lo, hi;
    uint64_t       word;
    const u_char  *end;

    if (*state & NGX_HTTP_VOICE_WS_UTF8_BAD) {
        return NGX_ERROR;
    }

    due = ngx_http_voice_ws_utf8_due(*state);
    lo = (*state >> 8) & 0xff;
    hi = (*state >> 16) & 0xff;
    end = p + len;

    while (p < end) {

        if (due) {
            c = *p++;

            if (c < lo || c > hi) {
                goto invalid;
            }

            due--;
            lo = 0x80;
            hi = 0xbf;
            continue;
        }

        /* JSON is mostly ASCII: skip it a word at a time */

        while (end - p >= 8) {
            ngx_memcpy(&word, p, 8);

            if (word & NGX_HTTP_VOICE_WS_ASCII_MASK) {
                break;
            }

            p += 8;
        }

        if (p == end) {
            break;
        }

        c = *p++;

        if (c < 0x80) {
            continue;
        }

        if (c < 0xc2) {
            /* a continuation byte out of place, or C0/C1: always overlong */
            goto invalid;
        }

        lo = 0x80;
        hi = 0xbf;

        if (c < 0xe0) {
            due = 1;

        } else if (c < 0xf0) {
            due = 2;

            if (c == 0xe0) {
                lo = 0xa0;              /* below: fits in two bytes */

            } else if (c == 0xed) {
                hi = 0x9f;              /* above: U+D800..DFFF */
            }

        } else if (c < 0xf5) {
            due = 3;

            if (c == 0xf0) {
                lo = 0x90;              /* below: fits in three bytes */

            } else if (c == 0xf4) {
                hi = 0x8f;              /* above: past U+10FFFF */
            }

        } else {
            goto invalid;
        }
    }

    if (due == 0) {
        *state = 0;
        return NGX_OK;
    }

    *state = due | (lo << 8) | (hi << 16);

    return NGX_AGAIN;

invalid:

    *state = NGX_HTTP_VOICE_WS_UTF8_BAD;

    return NGX_ERROR;
}


ngx_uint_t
ngx_http_voice_ws_close_check(const u_char *data, size_t len,
    ngx_uint_t *code)
{
    uint32_t    state;
    ngx_uint_t  c;

    *code = NGX_HTTP_VOICE_WS_NO_STATUS;

    if (len == 0) {
        return 0;
    }

    if (len == 1) {
        /* half a code */
        return NGX_HTTP_VOICE_WS_PROTOCOL_ERROR;
    }

    c = ((ngx_uint_t) data[0] << 8) | data[1];
    *code = c;

    /*
     * The codes a peer may send: the defined ones (1004 is reserved; 1005,
     * 1006 and 1015 only ever stand for a missing code locally) and the
     * ranges given to libraries and applications.
     */

    if (!((c >= 1000 && c <= 1003)
          || (c >= 1007 && c <= 1014)
          || (c >= 3000 && c <= 4999)))
    {
        return NGX_HTTP_VOICE_WS_PROTOCOL_ERROR;
    }

    state = 0;

    if (ngx_http_voice_ws_utf8(&state, data + 2, len - 2) != NGX_OK) {
        return NGX_HTTP_VOICE_WS_INVALID_DATA;
    }

    return 0;
}


/* the client side's upgrade */


static const char  ngx_http_voice_ws_request_fixed[] =
    "Upgrade: websocket" CRLF
    "Connection: Upgrade" CRLF
    "Sec-WebSocket-Version: 13" CRLF;


static ngx_uint_t ngx_http_voice_ws_token(u_char *p, u_char *last,
    const char *token);
static ngx_uint_t ngx_http_voice_ws_equal(u_char *p, size_t len,
    const char *lower);


size_t
ngx_http_voice_ws_request_size(ngx_str_t *target, ngx_str_t *host,
    ngx_str_t *headers)
{
    return sizeof("GET ") - 1 + (target->len ? target->len : 1)
           + sizeof(" HTTP/1.1" CRLF) - 1
           + sizeof("Host: ") - 1 + host->len + 2
           + sizeof(ngx_http_voice_ws_request_fixed) - 1
           + sizeof("Sec-WebSocket-Key: ") - 1
           + NGX_HTTP_VOICE_WS_KEY_LEN + 2
           + headers->len + 2;
}


u_char *
ngx_http_voice_ws_request(u_char *p, ngx_str_t *target, ngx_str_t *host,
    ngx_str_t *key, ngx_str_t *headers)
{
    p = ngx_cpymem(p, "GET ", 4);

    if (target->len) {
        p = ngx_cpymem(p, target->data, target->len);

    } else {
        *p++ = '/';
    }

    p = ngx_cpymem(p, " HTTP/1.1" CRLF "Host: ",
                   sizeof(" HTTP/1.1" CRLF "Host: ") - 1);
    p = ngx_cpymem(p, host->data, host->len);
    *p++ = CR; *p++ = LF;

    p = ngx_cpymem(p, ngx_http_voice_ws_request_fixed,
                   sizeof(ngx_http_voice_ws_request_fixed) - 1);

    p = ngx_cpymem(p, "Sec-WebSocket-Key: ",
                   sizeof("Sec-WebSocket-Key: ") - 1);
    p = ngx_cpymem(p, key->data, key->len);
    *p++ = CR; *p++ = LF;

    if (headers->len) {
        p = ngx_cpymem(p, headers->data, headers->len);
    }

    *p++ = CR; *p++ = LF;

    return p;
}


ngx_int_t
ngx_http_voice_ws_response(ngx_http_voice_ws_response_t *r, u_char *buf,
    size_t len, ngx_str_t *accept)
{
    u_char      *p, *last, *end, *eol, *colon, *v;
    ngx_uint_t   i, upgrade, connection, accepted;

    r->status = 0;
    r->head_len = 0;
    r->error = NULL;

    /* the head ends with an empty line; bare LF endings are tolerated */

    last = buf + len;
    end = NULL;

    for (p = buf + 1; p < last; p++) {

        if (*p != LF) {
            continue;
        }

        if (p[-1] == LF || (p - buf >= 2 && p[-1] == CR && p[-2] == LF)) {
            end = p + 1;
            break;
        }
    }

    if (end == NULL) {
        return NGX_AGAIN;
    }

    r->head_len = end - buf;

    /* the status line: "HTTP/1.x NNN reason" */

    eol = ngx_strlchr(buf, end, LF);
    p = (eol > buf && eol[-1] == CR) ? eol - 1 : eol;

    if (p - buf < 12
        || ngx_memcmp(buf, "HTTP/1.", 7) != 0
        || buf[7] < '0' || buf[7] > '9'
        || buf[8] != ' '
        || (p - buf > 12 && buf[12] != ' '))
    {
        r->error = "malformed status line";
        return NGX_ERROR;
    }

    for (i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') {
            r->error = "malformed status line";
            return NGX_ERROR;
        }

        r->status = r->status * 10 + (buf[i] - '0');
    }

    if (r->status < 100) {
        r->error = "malformed status line";
        return NGX_ERROR;
    }

    if (r->status != 101) {
        return NGX_DECLINED;
    }

    if (buf[7] == '0') {
        r->error = "101 in an HTTP/1.0 response";
        return NGX_ERROR;
    }

    /* the header lines */

    upgrade = 0;
    connection = 0;
    accepted = 0;

    for (p = eol + 1; /* void */ ; p = eol + 1) {

        eol = ngx_strlchr(p, end, LF);
        last = (eol > p && eol[-1] == CR) ? eol - 1 : eol;

        if (last == p) {
            break;
        }

        if (*p == ' ' || *p == '\t') {
            r->error = "folded header line";
            return NGX_ERROR;
        }

        colon = ngx_strlchr(p, last, ':');

        if (colon == NULL || colon == p) {
            r->error = "malformed header line";
            return NGX_ERROR;
        }

        for (v = p; v < colon; v++) {
            if (*v <= ' ' || *v == 0x7f) {
                r->error = "malformed header name";
                return NGX_ERROR;
            }
        }

        for (v = colon + 1; v < last && (*v == ' ' || *v == '\t'); v++) {
            /* void */
        }

        while (last > v && (last[-1] == ' ' || last[-1] == '\t')) {
            last--;
        }

        if (ngx_http_voice_ws_equal(p, colon - p, "upgrade")) {
            upgrade |= ngx_http_voice_ws_token(v, last, "websocket");

        } else if (ngx_http_voice_ws_equal(p, colon - p, "connection")) {
            connection |= ngx_http_voice_ws_token(v, last, "upgrade");

        } else if (ngx_http_voice_ws_equal(p, colon - p,
                                           "sec-websocket-accept"))
        {
            if ((size_t) (last - v) != accept->len
                || ngx_memcmp(v, accept->data, accept->len) != 0)
            {
                r->error = "Sec-WebSocket-Accept does not match the key";
                return NGX_ERROR;
            }

            accepted++;

        } else if (ngx_http_voice_ws_equal(p, colon - p,
                                           "sec-websocket-extensions"))
        {
            if (last > v) {
                /* none was offered, so none may be in use */
                r->error = "an extension that was not offered";
                return NGX_ERROR;
            }
        }
    }

    if (!upgrade) {
        r->error = "no \"Upgrade: websocket\"";
        return NGX_ERROR;
    }

    if (!connection) {
        r->error = "no \"Connection: upgrade\"";
        return NGX_ERROR;
    }

    if (accepted != 1) {
        r->error = accepted ? "Sec-WebSocket-Accept repeated"
                            : "no Sec-WebSocket-Accept";
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* whether the comma-separated list [p, last) holds token, in any case */

static ngx_uint_t
ngx_http_voice_ws_token(u_char *p, u_char *last, const char *token)
{
    u_char  *start, *end;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p;

        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }

        if (end > start && ngx_http_voice_ws_equal(start, end - start, token))
        {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_http_voice_ws_equal(u_char *p, size_t len, const char *lower)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (lower[i] == '\0' || ngx_tolower(p[i]) != (u_char) lower[i]) {
            return 0;
        }
    }

    return lower[len] == '\0';
}
