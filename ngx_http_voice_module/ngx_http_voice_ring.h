
/*
 * A byte FIFO that grows on demand up to a fixed bound.
 *
 * Pure code, no nginx runtime: sessions use one for outbound frames and
 * one for the echo delay line.  Starting small and growing keeps an idle
 * session cheap; the bound keeps a busy one honest.
 */


#ifndef _NGX_HTTP_VOICE_RING_H_INCLUDED_
#define _NGX_HTTP_VOICE_RING_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    u_char             *data;
    size_t              size;       /* allocated */
    size_t              max;        /* bound */
    size_t              head;       /* read offset */
    size_t              used;
} ngx_http_voice_ring_t;


void ngx_http_voice_ring_init(ngx_http_voice_ring_t *ring, size_t max);
void ngx_http_voice_ring_free(ngx_http_voice_ring_t *ring);

/* bytes that could still be written without passing the bound */
#define ngx_http_voice_ring_room(ring)  ((ring)->max - (ring)->used)

/* makes room for n more bytes: NGX_OK, NGX_DECLINED (bound), NGX_ERROR */
ngx_int_t ngx_http_voice_ring_reserve(ngx_http_voice_ring_t *ring,
    size_t n);

/* appends all n bytes or none: NGX_OK, NGX_DECLINED, NGX_ERROR */
ngx_int_t ngx_http_voice_ring_write(ngx_http_voice_ring_t *ring,
    const void *data, size_t n);

/* copies n bytes from offset 'at' past the head; n + at <= used */
void ngx_http_voice_ring_peek(ngx_http_voice_ring_t *ring, size_t at,
    void *dst, size_t n);

/* the contiguous readable span at the head; returns its length */
size_t ngx_http_voice_ring_span(ngx_http_voice_ring_t *ring, u_char **p);

void ngx_http_voice_ring_consume(ngx_http_voice_ring_t *ring, size_t n);

/*
 * moves n bytes (n <= src->used) from src's head to dst:
 * NGX_OK, NGX_DECLINED, NGX_ERROR
 */
ngx_int_t ngx_http_voice_ring_move(ngx_http_voice_ring_t *dst,
    ngx_http_voice_ring_t *src, size_t n);


#endif /* _NGX_HTTP_VOICE_RING_H_INCLUDED_ */
