
/*
 * Unit tests of the bounded byte ring (ngx_http_voice_ring.[ch]).
 *
 * Every check compares the ring with a plain linear buffer holding what
 * the ring should contain, so a byte out of place shows up at once.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ngx_http_voice_ring.h"


#define TEST_RING_MIN  1024


/* a linear model of what a ring must hold */

typedef struct {
    u_char             *data;
    size_t              len;
    size_t              max;
} test_ring_ref_t;


/* a counter that never repeats within a short period: source of bytes */

static uint32_t  test_ring_seq;


const char *__asan_default_options(void);


/*
 * The allocation failure test asks malloc for an impossible block: it
 * must get NULL back rather than a sanitizer abort.
 */

const char *
__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}


static uint64_t
test_ring_rand(uint64_t *s)
{
    uint64_t  z;

    /* splitmix64: small, seedable, good enough to pick operations */

    *s += 0x9e3779b97f4a7c15ULL;
    z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


static size_t
test_ring_below(uint64_t *s, size_t n)
{
    return n ? (size_t) (test_ring_rand(s) % n) : 0;
}


static void
test_ring_gen(u_char *buf, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        test_ring_seq++;
        buf[i] = (u_char) (test_ring_seq ^ (test_ring_seq >> 8) * 131);
    }
}


static void
test_ring_ref_init(test_ring_ref_t *ref, size_t max)
{
    ref->data = malloc(max ? max : 1);
    assert_non_null(ref->data);
    ref->len = 0;
    ref->max = max;
}


static void
test_ring_ref_free(test_ring_ref_t *ref)
{
    free(ref->data);
    ref->data = NULL;
}


static void
test_ring_ref_append(test_ring_ref_t *ref, const u_char *p, size_t n)
{
    assert_true(ref->len + n <= ref->max);
    memcpy(ref->data + ref->len, p, n);
    ref->len += n;
}


static void
test_ring_ref_consume(test_ring_ref_t *ref, size_t n)
{
    assert_true(n <= ref->len);
    memmove(ref->data, ref->data + n, ref->len - n);
    ref->len -= n;
}


/* the structural invariants every ring must keep between calls */

static void
test_ring_invariants(ngx_http_voice_ring_t *ring)
{
    assert_true(ring->size <= ring->max);
    assert_true(ring->used <= ring->size);

    if (ring->size == 0) {
        assert_null(ring->data);
        assert_int_equal(ring->used, 0);
    } else {
        assert_non_null(ring->data);
        assert_true(ring->head < ring->size);
    }

    if (ring->used == 0) {
        assert_int_equal(ring->head, 0);
    }

    assert_int_equal(ngx_http_voice_ring_room(ring), ring->max - ring->used);
}


/* the ring holds exactly the model's bytes, seen through peek and span */

static void
test_ring_check(ngx_http_voice_ring_t *ring, test_ring_ref_t *ref)
{
    size_t   n;
    u_char  *buf, *p;

    test_ring_invariants(ring);

    assert_int_equal(ring->used, ref->len);

    buf = malloc(ref->len + 1);
    assert_non_null(buf);

    ngx_http_voice_ring_peek(ring, 0, buf, ref->len);
    assert_memory_equal(buf, ref->data, ref->len);

    free(buf);

    n = ngx_http_voice_ring_span(ring, &p);

    if (ref->len == 0) {
        assert_int_equal(n, 0);
        assert_null(p);
        return;
    }

    assert_ptr_equal(p, ring->data + ring->head);
    assert_int_equal(n, ngx_min(ring->used, ring->size - ring->head));
    assert_true(n > 0);
    assert_memory_equal(p, ref->data, n);
}


/* write n fresh bytes to both the ring and the model, expecting NGX_OK */

static void
test_ring_put(ngx_http_voice_ring_t *ring, test_ring_ref_t *ref, size_t n)
{
    u_char  *buf;

    buf = malloc(n + 1);
    assert_non_null(buf);

    test_ring_gen(buf, n);

    assert_int_equal(ngx_http_voice_ring_write(ring, buf, n), NGX_OK);
    test_ring_ref_append(ref, buf, n);

    free(buf);
}


static void
test_ring_take(ngx_http_voice_ring_t *ring, test_ring_ref_t *ref, size_t n)
{
    ngx_http_voice_ring_consume(ring, n);
    test_ring_ref_consume(ref, n);
}


/* the size a ring must have after making room for 'need' bytes */

static size_t
test_ring_expected_size(size_t size, size_t max, size_t need)
{
    if (need <= size) {
        return size;
    }

    if (size == 0) {
        size = TEST_RING_MIN;
    }

    while (size < need) {
        size *= 2;
    }

    return ngx_min(size, max);
}


/* ---- init / free -------------------------------------------------------- */


static void
test_init_free(void **state)
{
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    memset(&ring, 0xa5, sizeof(ring));

    ngx_http_voice_ring_init(&ring, 5000);

    assert_null(ring.data);
    assert_int_equal(ring.size, 0);
    assert_int_equal(ring.max, 5000);
    assert_int_equal(ring.head, 0);
    assert_int_equal(ring.used, 0);
    assert_int_equal(ngx_http_voice_ring_room(&ring), 5000);

    /* freeing a ring that never allocated is harmless */

    ngx_http_voice_ring_free(&ring);
    assert_null(ring.data);
    assert_int_equal(ring.size, 0);
    assert_int_equal(ring.used, 0);
    assert_int_equal(ring.max, 5000);

    test_ring_ref_init(&ref, 5000);

    test_ring_put(&ring, &ref, 1500);
    test_ring_take(&ring, &ref, 700);
    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);

    assert_null(ring.data);
    assert_int_equal(ring.size, 0);
    assert_int_equal(ring.used, 0);
    assert_int_equal(ring.head, 0);
    assert_int_equal(ring.max, 5000);
    assert_int_equal(ngx_http_voice_ring_room(&ring), 5000);

    /* a freed ring is an empty ring: it works again */

    ref.len = 0;
    test_ring_put(&ring, &ref, 4000);
    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


/* ---- growth ------------------------------------------------------------- */


static void
test_growth_doubling(void **state)
{
    size_t                 i, expect;
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    ngx_http_voice_ring_init(&ring, 65536);
    test_ring_ref_init(&ref, 65536);

    /* one byte at a time: the size must follow 1024, 2048, ... 65536 */

    expect = 0;

    for (i = 0; i < 65536; i++) {
        test_ring_put(&ring, &ref, 1);

        if (i + 1 > expect) {
            expect = expect ? expect * 2 : TEST_RING_MIN;
        }

        assert_int_equal(ring.size, expect);
        assert_true(ring.size <= ring.max);
    }

    assert_int_equal(ring.size, 65536);
    assert_int_equal(ngx_http_voice_ring_room(&ring), 0);
    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


static void
test_growth_odd_bound(void **state)
{
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    /* a bound that is not a power of two caps the last doubling */

    ngx_http_voice_ring_init(&ring, 3000);
    test_ring_ref_init(&ref, 3000);

    test_ring_put(&ring, &ref, 1);
    assert_int_equal(ring.size, 1024);

    test_ring_put(&ring, &ref, 1023);
    assert_int_equal(ring.size, 1024);

    test_ring_put(&ring, &ref, 1);
    assert_int_equal(ring.size, 2048);

    test_ring_put(&ring, &ref, 1023);
    assert_int_equal(ring.size, 2048);

    test_ring_put(&ring, &ref, 1);
    assert_int_equal(ring.size, 3000);

    test_ring_put(&ring, &ref, 951);
    assert_int_equal(ring.size, 3000);
    assert_int_equal(ngx_http_voice_ring_room(&ring), 0);

    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);

    /* one below a doubling: the block is the bound, not the doubling */

    ngx_http_voice_ring_init(&ring, 2047);
    test_ring_ref_init(&ref, 2047);

    test_ring_put(&ring, &ref, 1024);
    assert_int_equal(ring.size, 1024);

    test_ring_put(&ring, &ref, 1);
    assert_int_equal(ring.size, 2047);

    test_ring_put(&ring, &ref, 1022);
    assert_int_equal(ring.size, 2047);
    assert_int_equal(ngx_http_voice_ring_room(&ring), 0);
    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


static void
test_growth_small_bound(void **state)
{
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    /* below the minimum block the bound itself is the block */

    ngx_http_voice_ring_init(&ring, 100);
    test_ring_ref_init(&ref, 100);

    test_ring_put(&ring, &ref, 1);
    assert_int_equal(ring.size, 100);

    test_ring_put(&ring, &ref, 99);
    assert_int_equal(ring.size, 100);
    test_ring_check(&ring, &ref);

    assert_int_equal(ngx_http_voice_ring_write(&ring, "x", 1), NGX_DECLINED);
    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);

    ngx_http_voice_ring_init(&ring, 1023);
    test_ring_ref_init(&ref, 1023);

    test_ring_put(&ring, &ref, 1);
    assert_int_equal(ring.size, 1023);

    test_ring_put(&ring, &ref, 1022);
    assert_int_equal(ring.size, 1023);
    assert_int_equal(ngx_http_voice_ring_room(&ring), 0);
    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


static void
test_growth_big_write(void **state)
{
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    /* one large write from empty jumps straight to the doubling that fits */

    ngx_http_voice_ring_init(&ring, 1 << 20);
    test_ring_ref_init(&ref, 1 << 20);

    test_ring_put(&ring, &ref, 5000);
    assert_int_equal(ring.size, 8192);

    test_ring_put(&ring, &ref, 3192);
    assert_int_equal(ring.size, 8192);

    test_ring_put(&ring, &ref, 40000);
    assert_int_equal(ring.size, 65536);

    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


static void
test_reserve(void **state)
{
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    ngx_http_voice_ring_init(&ring, 10000);
    test_ring_ref_init(&ref, 10000);

    /* reserving zero from empty allocates nothing */

    assert_int_equal(ngx_http_voice_ring_reserve(&ring, 0), NGX_OK);
    assert_null(ring.data);
    assert_int_equal(ring.size, 0);

    assert_int_equal(ngx_http_voice_ring_reserve(&ring, 3000), NGX_OK);
    assert_int_equal(ring.size, 4096);
    assert_int_equal(ring.used, 0);

    test_ring_put(&ring, &ref, 4000);
    assert_int_equal(ring.size, 4096);

    /* room is counted against the bound, not the allocation */

    assert_int_equal(ngx_http_voice_ring_reserve(&ring, 6001), NGX_DECLINED);
    assert_int_equal(ring.size, 4096);
    test_ring_check(&ring, &ref);

    assert_int_equal(ngx_http_voice_ring_reserve(&ring, 6000), NGX_OK);
    assert_int_equal(ring.size, 10000);
    assert_int_equal(ring.used, 4000);
    test_ring_check(&ring, &ref);

    /* the reserved room is really there: filling it allocates no more */

    test_ring_put(&ring, &ref, 6000);
    assert_int_equal(ring.size, 10000);
    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


static void
test_alloc_failure(void **state)
{
    u_char                *old;
    size_t                 huge;
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    /* a bound no allocator can meet: growth must fail cleanly */

    huge = (size_t) 1 << 60;

    ngx_http_voice_ring_init(&ring, huge);
    test_ring_ref_init(&ref, 4096);

    test_ring_put(&ring, &ref, 1500);
    test_ring_take(&ring, &ref, 1000);
    test_ring_put(&ring, &ref, 900);

    old = ring.data;

    assert_int_equal(ngx_http_voice_ring_reserve(&ring, huge / 2),
                     NGX_ERROR);

    /* nothing changed: same block, same bytes, same place */

    assert_ptr_equal(ring.data, old);
    assert_int_equal(ring.size, 2048);
    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


/* ---- the bound ---------------------------------------------------------- */


static void
test_write_at_bound(void **state)
{
    size_t                 size, head;
    u_char                 big[3001];
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    ngx_http_voice_ring_init(&ring, 3000);
    test_ring_ref_init(&ref, 3000);

    memset(big, 'z', sizeof(big));

    /* bigger than the bound from empty: nothing written, nothing allocated */

    assert_int_equal(ngx_http_voice_ring_write(&ring, big, 3001),
                     NGX_DECLINED);
    assert_null(ring.data);
    assert_int_equal(ring.size, 0);
    assert_int_equal(ring.used, 0);

    test_ring_put(&ring, &ref, 2990);

    size = ring.size;
    head = ring.head;

    /* one byte too many: all or nothing means nothing */

    assert_int_equal(ngx_http_voice_ring_write(&ring, big, 11), NGX_DECLINED);
    assert_int_equal(ring.size, size);
    assert_int_equal(ring.head, head);
    test_ring_check(&ring, &ref);

    test_ring_put(&ring, &ref, 10);
    assert_int_equal(ngx_http_voice_ring_room(&ring), 0);

    assert_int_equal(ngx_http_voice_ring_write(&ring, big, 1), NGX_DECLINED);
    assert_int_equal(ngx_http_voice_ring_write(&ring, big, 3000),
                     NGX_DECLINED);
    test_ring_check(&ring, &ref);

    /* a full ring still accepts nothing at all */

    assert_int_equal(ngx_http_voice_ring_write(&ring, big, 0), NGX_OK);
    test_ring_check(&ring, &ref);

    /* and the same when the contents wrap around the end */

    test_ring_take(&ring, &ref, 2500);
    test_ring_put(&ring, &ref, 2400);
    assert_true(ring.head + ring.used > ring.size);

    head = ring.head;

    assert_int_equal(ngx_http_voice_ring_write(&ring, big, 101),
                     NGX_DECLINED);
    assert_int_equal(ring.head, head);
    test_ring_check(&ring, &ref);

    test_ring_put(&ring, &ref, 100);
    assert_int_equal(ngx_http_voice_ring_room(&ring), 0);
    test_ring_check(&ring, &ref);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


static void
test_zero_bound(void **state)
{
    ngx_http_voice_ring_t  ring;

    (void) state;

    ngx_http_voice_ring_init(&ring, 0);

    assert_int_equal(ngx_http_voice_ring_room(&ring), 0);
    assert_int_equal(ngx_http_voice_ring_write(&ring, "a", 0), NGX_OK);
    assert_int_equal(ngx_http_voice_ring_write(&ring, "a", 1), NGX_DECLINED);
    assert_int_equal(ngx_http_voice_ring_reserve(&ring, 1), NGX_DECLINED);
    assert_null(ring.data);
    assert_int_equal(ring.size, 0);
    assert_int_equal(ring.used, 0);

    ngx_http_voice_ring_free(&ring);
}


/* ---- wrap-around -------------------------------------------------------- */


/*
 * For a ring whose block is exactly 'max' bytes, put the head at every
 * offset, fill the ring across the end, and read it back in every way.
 */

static void
test_ring_wrap_all_offsets(size_t max)
{
    size_t                 h, at, n, first, len;
    u_char                *p, win[17];
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    test_ring_ref_init(&ref, max);

    for (h = 0; h < max; h++) {
        ngx_http_voice_ring_init(&ring, max);
        ref.len = 0;

        /* head at h with one byte left, so the head does not reset */

        test_ring_put(&ring, &ref, h + 1);
        test_ring_take(&ring, &ref, h);

        assert_int_equal(ring.size, max);
        assert_int_equal(ring.head, h);
        assert_int_equal(ring.used, 1);

        /* two writes fill the ring: the second crosses the end */

        len = (max - 1) / 3;
        test_ring_put(&ring, &ref, len);
        test_ring_put(&ring, &ref, max - 1 - len);

        assert_int_equal(ring.size, max);
        assert_int_equal(ring.head, h);
        assert_int_equal(ring.used, max);
        test_ring_check(&ring, &ref);

        /* short windows at every offset, crossing the end somewhere */

        for (at = 0; at + sizeof(win) <= ring.used; at++) {
            ngx_http_voice_ring_peek(&ring, at, win, sizeof(win));
            assert_memory_equal(win, ref.data + at, sizeof(win));
        }

        /* span gives the part up to the end of the block, then the rest */

        n = ngx_http_voice_ring_span(&ring, &p);
        assert_int_equal(n, max - h);
        assert_ptr_equal(p, ring.data + h);
        assert_memory_equal(p, ref.data, n);

        first = n;
        test_ring_take(&ring, &ref, n);

        if (h == 0) {
            assert_int_equal(ring.used, 0);
            assert_int_equal(ring.head, 0);

        } else {
            n = ngx_http_voice_ring_span(&ring, &p);
            assert_int_equal(n, h);
            assert_int_equal(first + n, max);
            assert_ptr_equal(p, ring.data);
            assert_memory_equal(p, ref.data, n);

            test_ring_take(&ring, &ref, n);
        }

        /* consumed to empty: the head is back at the start */

        assert_int_equal(ring.used, 0);
        assert_int_equal(ring.head, 0);
        test_ring_check(&ring, &ref);

        ngx_http_voice_ring_free(&ring);
    }

    test_ring_ref_free(&ref);
}


static void
test_wrap_every_offset(void **state)
{
    (void) state;

    test_ring_wrap_all_offsets(1024);
}


static void
test_wrap_every_offset_odd(void **state)
{
    (void) state;

    test_ring_wrap_all_offsets(1000);
}


static void
test_wrap_partial_writes(void **state)
{
    size_t                 k, tail;
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    /* fill, consume k, write k: past k = 24 the write crosses the end */

    test_ring_ref_init(&ref, 1024);

    for (k = 1; k < 1000; k++) {
        ngx_http_voice_ring_init(&ring, 1024);
        ref.len = 0;

        test_ring_put(&ring, &ref, 1000);
        test_ring_take(&ring, &ref, k);

        tail = (ring.head + ring.used) % ring.size;

        test_ring_put(&ring, &ref, ngx_min(k, 1024 - ring.used));
        test_ring_check(&ring, &ref);

        if (tail + k > 1024) {
            /* the write did cross the end */
            assert_true(ring.head + ring.used > ring.size);
        }

        ngx_http_voice_ring_free(&ring);
    }

    test_ring_ref_free(&ref);
}


static void
test_growth_while_wrapped(void **state)
{
    size_t                 h;
    u_char                *p;
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    test_ring_ref_init(&ref, 8192);

    for (h = 0; h < 1024; h++) {
        ngx_http_voice_ring_init(&ring, 8192);
        ref.len = 0;

        test_ring_put(&ring, &ref, h + 1);
        test_ring_take(&ring, &ref, h);
        test_ring_put(&ring, &ref, 1023);

        assert_int_equal(ring.size, 1024);
        assert_int_equal(ring.head, h);

        /* full and wrapped: the next byte forces a new block */

        test_ring_put(&ring, &ref, 1);

        assert_int_equal(ring.size, 2048);
        assert_int_equal(ring.head, 0);
        assert_int_equal(ring.used, 1025);
        test_ring_check(&ring, &ref);

        /* the new block is linear: one span holds everything */

        assert_int_equal(ngx_http_voice_ring_span(&ring, &p), 1025);
        assert_ptr_equal(p, ring.data);

        ngx_http_voice_ring_free(&ring);
    }

    test_ring_ref_free(&ref);
}


/* ---- span and consume --------------------------------------------------- */


static void
test_span(void **state)
{
    u_char                *p;
    size_t                 n;
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    ngx_http_voice_ring_init(&ring, 1024);
    test_ring_ref_init(&ref, 1024);

    p = (u_char *) &ring;
    assert_int_equal(ngx_http_voice_ring_span(&ring, &p), 0);
    assert_null(p);

    test_ring_put(&ring, &ref, 600);

    n = ngx_http_voice_ring_span(&ring, &p);
    assert_int_equal(n, 600);
    assert_ptr_equal(p, ring.data);

    test_ring_take(&ring, &ref, 500);
    test_ring_put(&ring, &ref, 900);

    /* head at 500, 1000 bytes: 524 up to the end, 476 from the start */

    n = ngx_http_voice_ring_span(&ring, &p);
    assert_int_equal(n, 524);
    assert_ptr_equal(p, ring.data + 500);
    assert_memory_equal(p, ref.data, 524);

    /* a partial consume inside the span keeps the rest contiguous */

    test_ring_take(&ring, &ref, 24);

    n = ngx_http_voice_ring_span(&ring, &p);
    assert_int_equal(n, 500);
    assert_ptr_equal(p, ring.data + 524);
    assert_memory_equal(p, ref.data, 500);

    test_ring_take(&ring, &ref, 500);

    n = ngx_http_voice_ring_span(&ring, &p);
    assert_int_equal(n, 476);
    assert_ptr_equal(p, ring.data);
    assert_memory_equal(p, ref.data, 476);

    test_ring_take(&ring, &ref, 476);

    p = (u_char *) &ring;
    assert_int_equal(ngx_http_voice_ring_span(&ring, &p), 0);
    assert_null(p);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


static void
test_consume_to_empty(void **state)
{
    u_char                *p;
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    ngx_http_voice_ring_init(&ring, 1024);
    test_ring_ref_init(&ref, 1024);

    test_ring_put(&ring, &ref, 100);
    test_ring_take(&ring, &ref, 40);
    assert_int_equal(ring.head, 40);

    /* consuming nothing moves nothing */

    test_ring_take(&ring, &ref, 0);
    assert_int_equal(ring.head, 40);
    assert_int_equal(ring.used, 60);

    test_ring_take(&ring, &ref, 60);
    assert_int_equal(ring.used, 0);
    assert_int_equal(ring.head, 0);

    /* so a full-size write afterwards is one contiguous span */

    test_ring_put(&ring, &ref, 1024);
    assert_int_equal(ngx_http_voice_ring_span(&ring, &p), 1024);
    assert_ptr_equal(p, ring.data);
    test_ring_check(&ring, &ref);

    /* emptying a wrapped ring in small steps also lands at 0 */

    test_ring_take(&ring, &ref, 1000);
    test_ring_put(&ring, &ref, 900);
    assert_true(ring.head + ring.used > ring.size);

    while (ring.used) {
        test_ring_take(&ring, &ref, ngx_min(ring.used, 77));
        test_ring_check(&ring, &ref);
    }

    assert_int_equal(ring.head, 0);

    /* consume of zero on an empty ring is harmless */

    test_ring_take(&ring, &ref, 0);
    assert_int_equal(ring.head, 0);
    assert_int_equal(ring.used, 0);

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


static void
test_zero_length_write(void **state)
{
    u_char                 b;
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    b = 'q';

    ngx_http_voice_ring_init(&ring, 2000);
    test_ring_ref_init(&ref, 2000);

    /* nothing to write allocates nothing */

    assert_int_equal(ngx_http_voice_ring_write(&ring, &b, 0), NGX_OK);
    assert_null(ring.data);
    assert_int_equal(ring.size, 0);
    assert_int_equal(ring.used, 0);

    test_ring_put(&ring, &ref, 1024);
    test_ring_take(&ring, &ref, 1000);

    assert_int_equal(ngx_http_voice_ring_write(&ring, &b, 0), NGX_OK);
    assert_int_equal(ring.size, 1024);
    assert_int_equal(ring.head, 1000);
    test_ring_check(&ring, &ref);

    /* a zero peek touches nothing */

    ngx_http_voice_ring_peek(&ring, 24, &b, 0);
    assert_int_equal(b, 'q');

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


/* ---- move --------------------------------------------------------------- */


static void
test_move_linear(void **state)
{
    ngx_http_voice_ring_t  src, dst;
    test_ring_ref_t        rs, rd;

    (void) state;

    ngx_http_voice_ring_init(&src, 4096);
    ngx_http_voice_ring_init(&dst, 4096);
    test_ring_ref_init(&rs, 4096);
    test_ring_ref_init(&rd, 4096);

    test_ring_put(&src, &rs, 500);

    assert_int_equal(ngx_http_voice_ring_move(&dst, &src, 200), NGX_OK);
    test_ring_ref_append(&rd, rs.data, 200);
    test_ring_ref_consume(&rs, 200);

    test_ring_check(&src, &rs);
    test_ring_check(&dst, &rd);

    /* moving onto existing contents appends */

    test_ring_put(&dst, &rd, 50);

    assert_int_equal(ngx_http_voice_ring_move(&dst, &src, 300), NGX_OK);
    test_ring_ref_append(&rd, rs.data, 300);
    test_ring_ref_consume(&rs, 300);

    test_ring_check(&src, &rs);
    test_ring_check(&dst, &rd);

    /* everything moved: the source is empty and restarts at 0 */

    assert_int_equal(src.used, 0);
    assert_int_equal(src.head, 0);
    assert_int_equal(dst.used, 550);

    ngx_http_voice_ring_free(&src);
    ngx_http_voice_ring_free(&dst);
    test_ring_ref_free(&rs);
    test_ring_ref_free(&rd);
}


static void
test_move_wrapped(void **state)
{
    size_t                 h, n, setup;
    ngx_http_voice_ring_t  src, dst;
    test_ring_ref_t        rs, rd;

    (void) state;

    test_ring_ref_init(&rs, 1024);
    test_ring_ref_init(&rd, 2048);

    /*
     * A wrapped source at many head offsets, moved into a destination
     * that either wraps already or is written across its end.
     */

    for (h = 1; h < 1024; h += 3) {
        for (setup = 0; setup < 2; setup++) {
            ngx_http_voice_ring_init(&src, 1024);
            ngx_http_voice_ring_init(&dst, 2048);
            rs.len = 0;
            rd.len = 0;

            test_ring_put(&src, &rs, h + 1);
            test_ring_take(&src, &rs, h);
            test_ring_put(&src, &rs, 1023);
            assert_int_equal(src.head, h);

            if (setup == 0) {
                test_ring_put(&dst, &rd, 1900);
                test_ring_take(&dst, &rd, 1800);

            } else {
                test_ring_put(&dst, &rd, 2048);
                test_ring_take(&dst, &rd, 2000);
                test_ring_put(&dst, &rd, 100);
                assert_true(dst.head + dst.used > dst.size);
            }

            /* the moved part straddles the end of the source's block */

            n = ngx_min(1124 - h, 1024);
            assert_true(n > src.size - src.head);

            assert_int_equal(ngx_http_voice_ring_move(&dst, &src, n), NGX_OK);
            test_ring_ref_append(&rd, rs.data, n);
            test_ring_ref_consume(&rs, n);

            assert_int_equal(dst.size, 2048);
            test_ring_check(&src, &rs);
            test_ring_check(&dst, &rd);

            ngx_http_voice_ring_free(&src);
            ngx_http_voice_ring_free(&dst);
        }
    }

    test_ring_ref_free(&rs);
    test_ring_ref_free(&rd);
}


static void
test_move_growth(void **state)
{
    ngx_http_voice_ring_t  src, dst;
    test_ring_ref_t        rs, rd;

    (void) state;

    ngx_http_voice_ring_init(&src, 1024);
    ngx_http_voice_ring_init(&dst, 5000);
    test_ring_ref_init(&rs, 1024);
    test_ring_ref_init(&rd, 5000);

    test_ring_put(&src, &rs, 1024);
    test_ring_take(&src, &rs, 600);
    test_ring_put(&src, &rs, 600);

    test_ring_put(&dst, &rd, 1024);
    test_ring_take(&dst, &rd, 1000);
    test_ring_put(&dst, &rd, 1000);

    /* the destination must grow while both rings wrap */

    assert_int_equal(ngx_http_voice_ring_move(&dst, &src, 1024), NGX_OK);
    test_ring_ref_append(&rd, rs.data, 1024);
    test_ring_ref_consume(&rs, 1024);

    assert_int_equal(dst.size, 2048);
    test_ring_check(&src, &rs);
    test_ring_check(&dst, &rd);

    ngx_http_voice_ring_free(&src);
    ngx_http_voice_ring_free(&dst);
    test_ring_ref_free(&rs);
    test_ring_ref_free(&rd);
}


static void
test_move_at_bound(void **state)
{
    size_t                 sh, dh, ss, ds;
    u_char                *sd, *dd;
    ngx_http_voice_ring_t  src, dst;
    test_ring_ref_t        rs, rd;

    (void) state;

    ngx_http_voice_ring_init(&src, 1024);
    ngx_http_voice_ring_init(&dst, 1000);
    test_ring_ref_init(&rs, 1024);
    test_ring_ref_init(&rd, 1000);

    test_ring_put(&src, &rs, 1024);
    test_ring_take(&src, &rs, 1000);
    test_ring_put(&src, &rs, 500);

    test_ring_put(&dst, &rd, 900);

    sh = src.head;
    dh = dst.head;
    ss = src.size;
    ds = dst.size;
    sd = src.data;
    dd = dst.data;

    /* 101 bytes do not fit in the 100 left: neither ring changes */

    assert_int_equal(ngx_http_voice_ring_move(&dst, &src, 101), NGX_DECLINED);

    assert_int_equal(src.head, sh);
    assert_int_equal(dst.head, dh);
    assert_int_equal(src.size, ss);
    assert_int_equal(dst.size, ds);
    assert_ptr_equal(src.data, sd);
    assert_ptr_equal(dst.data, dd);
    test_ring_check(&src, &rs);
    test_ring_check(&dst, &rd);

    /* exactly the room left is fine */

    assert_int_equal(ngx_http_voice_ring_move(&dst, &src, 100), NGX_OK);
    test_ring_ref_append(&rd, rs.data, 100);
    test_ring_ref_consume(&rs, 100);
    test_ring_check(&src, &rs);
    test_ring_check(&dst, &rd);

    /* now full: even one byte is refused, and zero is accepted */

    assert_int_equal(ngx_http_voice_ring_move(&dst, &src, 1), NGX_DECLINED);
    test_ring_check(&src, &rs);
    test_ring_check(&dst, &rd);

    assert_int_equal(ngx_http_voice_ring_move(&dst, &src, 0), NGX_OK);
    test_ring_check(&src, &rs);
    test_ring_check(&dst, &rd);

    ngx_http_voice_ring_free(&src);
    ngx_http_voice_ring_free(&dst);
    test_ring_ref_free(&rs);
    test_ring_ref_free(&rd);
}


static void
test_move_zero(void **state)
{
    ngx_http_voice_ring_t  src, dst;
    test_ring_ref_t        rs, rd;

    (void) state;

    ngx_http_voice_ring_init(&src, 2048);
    ngx_http_voice_ring_init(&dst, 2048);
    test_ring_ref_init(&rs, 2048);
    test_ring_ref_init(&rd, 2048);

    /* between two rings that never allocated */

    assert_int_equal(ngx_http_voice_ring_move(&dst, &src, 0), NGX_OK);
    assert_null(src.data);
    assert_null(dst.data);
    assert_int_equal(src.size, 0);
    assert_int_equal(dst.size, 0);

    /* from a non-empty, wrapped source */

    test_ring_put(&src, &rs, 1024);
    test_ring_take(&src, &rs, 1000);
    test_ring_put(&src, &rs, 500);

    assert_int_equal(ngx_http_voice_ring_move(&dst, &src, 0), NGX_OK);
    assert_int_equal(src.head, 1000);
    assert_null(dst.data);
    test_ring_check(&src, &rs);
    test_ring_check(&dst, &rd);

    ngx_http_voice_ring_free(&src);
    ngx_http_voice_ring_free(&dst);
    test_ring_ref_free(&rs);
    test_ring_ref_free(&rd);
}


/* ---- randomized model --------------------------------------------------- */


/*
 * Random writes, consumes, peeks, reserves and moves between two rings,
 * each checked against its linear model, including the exact block size
 * the growth rule must produce.
 */

static void
test_ring_model_run(uint64_t seed, size_t max_a, size_t max_b, size_t ops)
{
    size_t                 i, n, at, need, room, expect;
    u_char                *buf, *win;
    uint64_t               s;
    ngx_int_t              rc;
    ngx_http_voice_ring_t  rings[2], *r, *o;
    test_ring_ref_t        refs[2], *f, *g;
    unsigned               which, op;

    s = seed;

    ngx_http_voice_ring_init(&rings[0], max_a);
    ngx_http_voice_ring_init(&rings[1], max_b);
    test_ring_ref_init(&refs[0], max_a);
    test_ring_ref_init(&refs[1], max_b);

    n = ngx_max(max_a, max_b) + 2;

    buf = malloc(n);
    win = malloc(n);
    assert_non_null(buf);
    assert_non_null(win);

    for (i = 0; i < ops; i++) {
        which = (unsigned) test_ring_below(&s, 2);
        r = &rings[which];
        o = &rings[!which];
        f = &refs[which];
        g = &refs[!which];

        room = r->max - r->used;
        op = (unsigned) test_ring_below(&s, 100);

        if (op < 35) {

            /* write: mostly small, sometimes exactly at or past the room */

            switch (test_ring_below(&s, 8)) {
            case 0:
                n = room;
                break;
            case 1:
                n = room + 1;
                break;
            case 2:
                n = test_ring_below(&s, r->max + 2);
                break;
            case 3:
                n = 0;
                break;
            default:
                n = test_ring_below(&s, 400);
            }

            test_ring_gen(buf, n);

            need = r->used + n;
            expect = (n <= room) ? test_ring_expected_size(r->size, r->max,
                                                           need)
                                 : r->size;

            rc = ngx_http_voice_ring_write(r, buf, n);

            if (n <= room) {
                assert_int_equal(rc, NGX_OK);
                test_ring_ref_append(f, buf, n);

            } else {
                assert_int_equal(rc, NGX_DECLINED);
            }

            assert_int_equal(r->size, expect);

        } else if (op < 65) {

            /* consume some, sometimes all */

            n = test_ring_below(&s, 4) ? test_ring_below(&s, r->used + 1)
                                       : r->used;
            test_ring_take(r, f, n);

        } else if (op < 75) {

            /* peek an arbitrary window */

            if (r->used) {
                at = test_ring_below(&s, r->used);
                n = test_ring_below(&s, r->used - at + 1);

                ngx_http_voice_ring_peek(r, at, win, n);
                assert_memory_equal(win, f->data + at, n);
            }

        } else if (op < 80) {

            /* reserve: grows like a write, stores nothing */

            n = test_ring_below(&s, room + 50);
            expect = (n <= room)
                     ? test_ring_expected_size(r->size, r->max, r->used + n)
                     : r->size;

            rc = ngx_http_voice_ring_reserve(r, n);
            assert_int_equal(rc, (n <= room) ? NGX_OK : NGX_DECLINED);
            assert_int_equal(r->size, expect);

        } else {

            /* move from r to o */

            n = test_ring_below(&s, 3) ? test_ring_below(&s, r->used + 1)
                                       : r->used;
            room = o->max - o->used;

            expect = (n <= room)
                     ? test_ring_expected_size(o->size, o->max, o->used + n)
                     : o->size;

            rc = ngx_http_voice_ring_move(o, r, n);

            if (n <= room) {
                assert_int_equal(rc, NGX_OK);
                test_ring_ref_append(g, f->data, n);
                test_ring_ref_consume(f, n);

            } else {
                assert_int_equal(rc, NGX_DECLINED);
            }

            assert_int_equal(o->size, expect);
        }

        test_ring_check(&rings[0], &refs[0]);
        test_ring_check(&rings[1], &refs[1]);
    }

    free(buf);
    free(win);

    ngx_http_voice_ring_free(&rings[0]);
    ngx_http_voice_ring_free(&rings[1]);
    test_ring_ref_free(&refs[0]);
    test_ring_ref_free(&refs[1]);
}


static void
test_model_random(void **state)
{
    (void) state;

    /* bounds that are not powers of two, one below the minimum block */

    test_ring_model_run(0x766f696365ULL, 5000, 3333, 40000);
    test_ring_model_run(12345, 1500, 700, 40000);
    test_ring_model_run(987654321, 10007, 2049, 40000);
}


/* a single wrong byte must be visible to the comparisons used above */

static void
test_model_detects_corruption(void **state)
{
    u_char                 buf[524];
    ngx_http_voice_ring_t  ring;
    test_ring_ref_t        ref;

    (void) state;

    ngx_http_voice_ring_init(&ring, 2000);
    test_ring_ref_init(&ref, 2000);

    test_ring_put(&ring, &ref, 1024);
    test_ring_take(&ring, &ref, 1000);
    test_ring_put(&ring, &ref, 500);

    ngx_http_voice_ring_peek(&ring, 0, buf, sizeof(buf));
    assert_memory_equal(buf, ref.data, sizeof(buf));

    ref.data[300] ^= 0x01;
    assert_memory_not_equal(buf, ref.data, sizeof(buf));

    ngx_http_voice_ring_free(&ring);
    test_ring_ref_free(&ref);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_init_free),
        cmocka_unit_test(test_growth_doubling),
        cmocka_unit_test(test_growth_odd_bound),
        cmocka_unit_test(test_growth_small_bound),
        cmocka_unit_test(test_growth_big_write),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_write_at_bound),
        cmocka_unit_test(test_zero_bound),
        cmocka_unit_test(test_wrap_every_offset),
        cmocka_unit_test(test_wrap_every_offset_odd),
        cmocka_unit_test(test_wrap_partial_writes),
        cmocka_unit_test(test_growth_while_wrapped),
        cmocka_unit_test(test_span),
        cmocka_unit_test(test_consume_to_empty),
        cmocka_unit_test(test_zero_length_write),
        cmocka_unit_test(test_move_linear),
        cmocka_unit_test(test_move_wrapped),
        cmocka_unit_test(test_move_growth),
        cmocka_unit_test(test_move_at_bound),
        cmocka_unit_test(test_move_zero),
        cmocka_unit_test(test_model_random),
        cmocka_unit_test(test_model_detects_corruption),
    };

    return cmocka_run_group_tests_name("ngx_http_voice_ring", tests,
                                       NULL, NULL);
}
