
/*
 * Server-Sent Events, incrementally.
 *
 * The buffer holds the data of the event being built, then the raw bytes
 * of the line being read.  A finished "data" line moves its value down
 * next to the data already kept; comment lines are skipped without being
 * stored, so keep-alive comments of any length cost nothing.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_voice_sse.h"


static ngx_int_t ngx_http_voice_sse_line(ngx_http_voice_sse_t *sse);


void
ngx_http_voice_sse_init(ngx_http_voice_sse_t *sse, u_char *buf, size_t size)
{
    ngx_memzero(sse, sizeof(ngx_http_voice_sse_t));

    sse->buf = buf;
    sse->size = size;
}


ngx_int_t
ngx_http_voice_sse_parse(ngx_http_voice_sse_t *sse, u_char **pos,
    u_char *last, ngx_http_voice_sse_event_t *ev)
{
    u_char     *p, *q;
    size_t      n;
    ngx_int_t   rc;

    if (sse->failed) {
        return NGX_ERROR;
    }

    if (sse->dispatched) {
        sse->dispatched = 0;
        sse->data = 0;
        sse->name_len = 0;
        sse->has_data = 0;
    }

    p = *pos;

    while (p < last) {

        if (sse->cr) {
            /* the LF of a CRLF split from its CR */
            sse->cr = 0;

            if (*p == LF) {
                p++;
                continue;
            }
        }

        if (*p == CR || *p == LF) {
            sse->cr = (*p == CR);
            p++;

            if (sse->comment) {
                sse->comment = 0;
                continue;
            }

            rc = ngx_http_voice_sse_line(sse);

            if (rc == NGX_ERROR) {
                sse->failed = 1;
                *pos = p;
                return NGX_ERROR;
            }

            if (rc == NGX_OK) {
                ev->name.data = sse->name;
                ev->name.len = sse->name_len;
                ev->data.data = sse->buf;
                ev->data.len = sse->data;

                sse->dispatched = 1;
                *pos = p;
                return NGX_OK;
            }

            continue;
        }

        if (sse->line == 0 && !sse->comment && *p == ':') {
            sse->comment = 1;
        }

        for (q = p; q < last && *q != CR && *q != LF; q++) {
            /* void */
        }

        if (!sse->comment) {
            n = q - p;

            if (n > sse->size - sse->data - sse->line) {
                sse->failed = 1;
                *pos = q;
                return NGX_ERROR;
            }

            ngx_memcpy(sse->buf + sse->data + sse->line, p, n);
            sse->line += n;
        }

        p = q;
    }

    *pos = p;

    return NGX_AGAIN;
}


/* NGX_OK: a blank line ends an event; NGX_DECLINED: nothing to report */

static ngx_int_t
ngx_http_voice_sse_line(ngx_http_voice_sse_t *sse)
{
    u_char  *line, *colon, *value;
    size_t   len, name_len, vlen;

    len = sse->line;
    sse->line = 0;

    if (len == 0) {
        if (sse->has_data) {
            return NGX_OK;
        }

        /* an event without data is dropped, its name too */
        sse->name_len = 0;
        sse->data = 0;
        return NGX_DECLINED;
    }

    line = sse->buf + sse->data;

    colon = ngx_strlchr(line, line + len, ':');

    if (colon == NULL) {
        name_len = len;
        value = line + len;
        vlen = 0;

    } else {
        name_len = colon - line;
        value = colon + 1;
        vlen = line + len - value;

        if (vlen && *value == ' ') {
            value++;
            vlen--;
        }
    }

    if (name_len == 4 && ngx_strncmp(line, "data", 4) == 0) {

        if (sse->has_data) {
            /* the value starts at least 4 bytes further: room for LF */
            sse->buf[sse->data++] = LF;
        }

        ngx_memmove(sse->buf + sse->data, value, vlen);
        sse->data += vlen;
        sse->has_data = 1;

        return NGX_DECLINED;
    }

    if (name_len == 5 && ngx_strncmp(line, "event", 5) == 0) {

        if (vlen > NGX_HTTP_VOICE_SSE_NAME) {
            return NGX_ERROR;
        }

        ngx_memcpy(sse->name, value, vlen);
        sse->name_len = vlen;

        return NGX_DECLINED;
    }

    /* id, retry and unknown fields mean nothing here */

    return NGX_DECLINED;
}
