
/*
 * A growable, bounded byte FIFO.  Memory comes from malloc so that growth
 * does not strand the old block in a pool; the owner frees it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_http_voice_ring.h"


#define NGX_HTTP_VOICE_RING_MIN  1024


void
ngx_http_voice_ring_init(ngx_http_voice_ring_t *ring, size_t max)
{
    ring->data = NULL;
    ring->size = 0;
    ring->max = max;
    ring->head = 0;
    ring->used = 0;
}


void
ngx_http_voice_ring_free(ngx_http_voice_ring_t *ring)
{
    free(ring->data);

    ring->data = NULL;
    ring->size = 0;
    ring->head = 0;
    ring->used = 0;
}


ngx_int_t
ngx_http_voice_ring_reserve(ngx_http_voice_ring_t *ring, size_t n)
{
    size_t   size, first;
    u_char  *data;

    if (n > ring->max - ring->used) {
        return NGX_DECLINED;
    }

    if (ring->used + n <= ring->size) {
        return NGX_OK;
    }

    size = ring->size ? ring->size : NGX_HTTP_VOICE_RING_MIN;

    while (size < ring->used + n) {

        if (size > ring->max / 2) {
            size = ring->max;
            break;
        }

        size *= 2;
    }

    if (size > ring->max) {
        size = ring->max;
    }

    data = malloc(size);
    if (data == NULL) {
        return NGX_ERROR;
    }

    /* the new block starts linear: head at 0 */

    first = ngx_min(ring->used, ring->size - ring->head);

    if (ring->used) {
        ngx_memcpy(data, ring->data + ring->head, first);
        ngx_memcpy(data + first, ring->data, ring->used - first);
    }

    free(ring->data);

    ring->data = data;
    ring->size = size;
    ring->head = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_voice_ring_write(ngx_http_voice_ring_t *ring, const void *data,
    size_t n)
{
    size_t      tail, first;
    ngx_int_t   rc;

    rc = ngx_http_voice_ring_reserve(ring, n);
    if (rc != NGX_OK) {
        return rc;
    }

    if (n == 0) {
        return NGX_OK;
    }

    tail = (ring->head + ring->used) % ring->size;
    first = ngx_min(n, ring->size - tail);

    ngx_memcpy(ring->data + tail, data, first);
    ngx_memcpy(ring->data, (const u_char *) data + first, n - first);

    ring->used += n;

    return NGX_OK;
}


void
ngx_http_voice_ring_peek(ngx_http_voice_ring_t *ring, size_t at, void *dst,
    size_t n)
{
    size_t  start, first;

    if (n == 0) {
        return;
    }

    start = (ring->head + at) % ring->size;
    first = ngx_min(n, ring->size - start);

    ngx_memcpy(dst, ring->data + start, first);
    ngx_memcpy((u_char *) dst + first, ring->data, n - first);
}


size_t
ngx_http_voice_ring_span(ngx_http_voice_ring_t *ring, u_char **p)
{
    if (ring->used == 0) {
        *p = NULL;
        return 0;
    }

    *p = ring->data + ring->head;

    return ngx_min(ring->used, ring->size - ring->head);
}


void
ngx_http_voice_ring_consume(ngx_http_voice_ring_t *ring, size_t n)
{
    ring->used -= n;

    /* an empty ring restarts at 0, so the next frames are contiguous */
    ring->head = ring->used ? (ring->head + n) % ring->size : 0;
}


ngx_int_t
ngx_http_voice_ring_move(ngx_http_voice_ring_t *dst,
    ngx_http_voice_ring_t *src, size_t n)
{
    size_t     first;
    ngx_int_t  rc;

    rc = ngx_http_voice_ring_reserve(dst, n);
    if (rc != NGX_OK) {
        return rc;
    }

    if (n == 0) {
        return NGX_OK;
    }

    first = ngx_min(n, src->size - src->head);

    (void) ngx_http_voice_ring_write(dst, src->data + src->head, first);
    (void) ngx_http_voice_ring_write(dst, src->data, n - first);

    ngx_http_voice_ring_consume(src, n);

    return NGX_OK;
}
