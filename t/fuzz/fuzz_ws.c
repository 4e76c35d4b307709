
/*
 * Fuzz target: the frame parser, fed arbitrary bytes once whole and once
 * split where the input says, in server and client mode.  Both feedings
 * must agree, and no chunk may point outside what was fed.  Run with
 * make fuzz.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <assert.h>

#include "ngx_http_voice_ws.h"


typedef struct {
    u_char       out[1 << 16];
    size_t       len;
    ngx_int_t    rc;
    ngx_uint_t   code;
    ngx_uint_t   chunks;
} fuzz_ws_run_t;


static void
fuzz_ws_feed(fuzz_ws_run_t *run, ngx_uint_t masked, const uint8_t *data,
    size_t size, size_t split)
{
    u_char                      *buf, *p, *last;
    size_t                       part, off, n;
    ngx_int_t                    rc;
    ngx_http_voice_ws_chunk_t    ch;
    ngx_http_voice_ws_parser_t   parser;

    ngx_http_voice_ws_parser_init(&parser, masked, 4096, 16384);

    run->len = 0;
    run->chunks = 0;
    run->rc = NGX_AGAIN;

    for (off = 0; off < size; off += part) {
        part = split ? split : size;
        part = (part > size - off) ? size - off : part;

        /* an exact copy, so reading past it is caught */
        buf = malloc(part);
        memcpy(buf, data + off, part);

        p = buf;
        last = buf + part;

        for ( ;; ) {
            rc = ngx_http_voice_ws_parse(&parser, &p, last, &ch);

            if (rc != NGX_OK) {
                break;
            }

            assert(p >= buf && p <= last);

            if (ch.opcode == NGX_HTTP_VOICE_WS_TEXT
                || ch.opcode == NGX_HTTP_VOICE_WS_BINARY)
            {
                assert(ch.len == 0 || (ch.data >= buf && ch.data + ch.len <= last));
            }

            n = ch.len;
            if (run->len + n < sizeof(run->out)) {
                memcpy(run->out + run->len, ch.data, n);
                run->len += n;
            }

            run->chunks += ch.last;
        }

        free(buf);

        if (rc == NGX_ERROR) {
            run->rc = NGX_ERROR;
            run->code = parser.close_code;
            return;
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                  split;
    ngx_uint_t              masked;
    static fuzz_ws_run_t    whole, pieces;

    if (size < 2) {
        return 0;
    }

    masked = data[0] & 1;
    split = (data[0] >> 1) + 1;

    fuzz_ws_feed(&whole, masked, data + 1, size - 1, 0);
    fuzz_ws_feed(&pieces, masked, data + 1, size - 1, split);

    assert(whole.rc == pieces.rc);

    if (whole.rc == NGX_ERROR) {
        /*
         * Fed in pieces, the valid start of a broken message goes out
         * before the fault arrives: the whole feeding sees a prefix.
         */
        assert(whole.code == pieces.code);
        assert(whole.len <= pieces.len);
        assert(memcmp(whole.out, pieces.out, whole.len) == 0);
        return 0;
    }

    assert(whole.chunks == pieces.chunks);
    assert(whole.len == pieces.len);
    assert(memcmp(whole.out, pieces.out, whole.len) == 0);

    return 0;
}
