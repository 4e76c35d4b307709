
/*
 * RFC 6455 framing, server and client side.
 *
 * Pure code: no I/O, no allocation, no nginx runtime.  The parser is an
 * incremental state machine fed with whatever bytes a read returned; it
 * hands back payload chunks (unmasked in place) and enforces every framing
 * rule, so the session above it deals with whole-message semantics only.
 */


#ifndef _NGX_HTTP_VOICE_WS_H_INCLUDED_
#define _NGX_HTTP_VOICE_WS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_VOICE_WS_CONT            0x0
#define NGX_HTTP_VOICE_WS_TEXT            0x1
#define NGX_HTTP_VOICE_WS_BINARY          0x2
#define NGX_HTTP_VOICE_WS_CLOSE           0x8
#define NGX_HTTP_VOICE_WS_PING            0x9
#define NGX_HTTP_VOICE_WS_PONG            0xa

#define NGX_HTTP_VOICE_WS_NORMAL          1000
#define NGX_HTTP_VOICE_WS_GOING_AWAY      1001
#define NGX_HTTP_VOICE_WS_PROTOCOL_ERROR  1002
#define NGX_HTTP_VOICE_WS_NO_STATUS       1005
#define NGX_HTTP_VOICE_WS_INVALID_DATA    1007
#define NGX_HTTP_VOICE_WS_POLICY          1008
#define NGX_HTTP_VOICE_WS_TOO_BIG         1009
#define NGX_HTTP_VOICE_WS_INTERNAL        1011

#define NGX_HTTP_VOICE_WS_MAX_HEADER      14
#define NGX_HTTP_VOICE_WS_MAX_CONTROL     125

#define NGX_HTTP_VOICE_WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


/* a piece of one message, as far as the bytes at hand reach */
typedef struct {
    ngx_uint_t          opcode;   /* TEXT, BINARY, CLOSE, PING or PONG */
    u_char             *data;     /* payload, unmasked in place */
    size_t              len;
    unsigned            first:1;  /* first chunk of the message */
    unsigned            last:1;   /* the message is complete with it */
} ngx_http_voice_ws_chunk_t;


typedef struct {
    /* settings: set by ngx_http_voice_ws_parser_init() */
    uint64_t            max_frame;      /* payload bytes; 0: no limit */
    uint64_t            max_message;    /* payload bytes; 0: no limit */
    unsigned            masked:1;       /* 1: peer must mask (we are server) */

    /* state: private to the parser */
    ngx_uint_t          state;
    ngx_uint_t          frame_opcode;
    ngx_uint_t          message_opcode; /* 0: no data message open */
    unsigned            fin:1;
    unsigned            has_mask:1;
    ngx_uint_t          len_bytes;      /* extended length bytes left */
    uint64_t            remaining;      /* payload bytes left in frame */
    uint64_t            message_len;    /* payload bytes so far */
    u_char              mask[4];
    ngx_uint_t          mask_bytes;     /* mask bytes read so far */
    ngx_uint_t          mask_pos;       /* payload offset mod 4 */
    uint32_t            utf8;           /* validator state, text only */
    u_char              control[NGX_HTTP_VOICE_WS_MAX_CONTROL];
    size_t              control_len;
    unsigned            message_start:1;

    /* on NGX_ERROR: the close code to send and a static reason */
    ngx_uint_t          close_code;
    const char         *error;
} ngx_http_voice_ws_parser_t;


void ngx_http_voice_ws_parser_init(ngx_http_voice_ws_parser_t *p,
    ngx_uint_t masked, uint64_t max_frame, uint64_t max_message);

/*
 * Consumes bytes from *pos up to last.  NGX_OK: *chunk holds a piece of a
 * message (control frames always come whole, as one chunk); call again
 * with the same *pos.  NGX_AGAIN: every byte was consumed, no chunk.
 * NGX_ERROR: the stream is broken; p->close_code and p->error tell why.
 */
ngx_int_t ngx_http_voice_ws_parse(ngx_http_voice_ws_parser_t *p,
    u_char **pos, u_char *last, ngx_http_voice_ws_chunk_t *chunk);

/*
 * Writes a frame header to buf (NGX_HTTP_VOICE_WS_MAX_HEADER bytes of
 * room), with the mask key when mask is not NULL; returns its length.
 */
size_t ngx_http_voice_ws_header(u_char *buf, ngx_uint_t opcode,
    ngx_uint_t fin, uint64_t len, const u_char *mask);

/* XORs data with the mask key, starting at key offset 'offset' mod 4 */
void ngx_http_voice_ws_mask(u_char *data, size_t len, const u_char *mask,
    ngx_uint_t offset);

/*
 * Incremental UTF-8 validation: *state starts at 0.  NGX_OK: valid and
 * complete; NGX_AGAIN: valid so far, a sequence is open; NGX_ERROR: invalid.
 */
ngx_int_t ngx_http_voice_ws_utf8(uint32_t *state, const u_char *p,
    size_t len);

/*
 * Validates a close frame payload (empty, or a code the peer may send
 * followed by UTF-8); *code gets the code or NGX_HTTP_VOICE_WS_NO_STATUS.
 * Returns 0 when valid, otherwise the close code to answer with.
 */
ngx_uint_t ngx_http_voice_ws_close_check(const u_char *data, size_t len,
    ngx_uint_t *code);


/* the client side's upgrade: request and response head */

#define NGX_HTTP_VOICE_WS_KEY_LEN         24  /* base64 of 16 bytes */
#define NGX_HTTP_VOICE_WS_ACCEPT_LEN      28  /* base64 of a SHA-1 */


/*
 * The size of the upgrade request ngx_http_voice_ws_request() writes:
 * target is the path and query ("/" when empty), host the Host header
 * value, headers extra lines each ending in CRLF (may be empty).
 */
size_t ngx_http_voice_ws_request_size(ngx_str_t *target, ngx_str_t *host,
    ngx_str_t *headers);

/* writes the upgrade request with the base64 key; returns its end */
u_char *ngx_http_voice_ws_request(u_char *p, ngx_str_t *target,
    ngx_str_t *host, ngx_str_t *key, ngx_str_t *headers);


typedef struct {
    ngx_uint_t          status;     /* of the status line */
    size_t              head_len;   /* bytes up to the blank line's end */
    const char         *error;      /* static: why NGX_ERROR */
} ngx_http_voice_ws_response_t;

/*
 * Checks the head of the response to an upgrade request, in buf[0, len).
 * accept is the Sec-WebSocket-Accept value the key calls for.
 * NGX_AGAIN: the head is not complete yet.  NGX_OK: a valid 101 upgrade,
 * frames start at head_len.  NGX_DECLINED: a well-formed head with
 * another status.  NGX_ERROR: malformed, or a 101 that is not a valid
 * upgrade; r->error says why.
 */
ngx_int_t ngx_http_voice_ws_response(ngx_http_voice_ws_response_t *r,
    u_char *buf, size_t len, ngx_str_t *accept);


#endif /* _NGX_HTTP_VOICE_WS_H_INCLUDED_ */
