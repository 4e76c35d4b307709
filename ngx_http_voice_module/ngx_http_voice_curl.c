
/*
 * libcurl's multi interface on the worker's event loop.
 *
 * Sockets.  A descriptor has an nginx connection (taken from the
 * worker's pool, so stale events are caught by its instance bit) for as
 * long as curl watches it.  Normally curl says "remove" and then closes
 * the socket through our close-socket callback, so the events go before
 * the descriptor does and only one party closes it.  Some curl versions
 * (7.88 on a connect timeout) close a socket themselves and say
 * "remove" afterwards, or never; the kernel then forgot the epoll
 * registration with the descriptor, and the number may already name
 * another socket.  So each tracked descriptor remembers the identity
 * (device, inode) of its socket, and an entry whose socket is gone is
 * dropped without any epoll call on that number.
 *
 * Readiness.  curl does not tell whether it read a socket dry: it may
 * stop early and leave bytes in the kernel.  With edge-triggered
 * events such bytes would never be reported again, so curl's sockets
 * are registered level-triggered (NGX_LEVEL_EVENT) for exactly the
 * directions curl asks for, and unregistered when it stops asking; the
 * kernel then reports a socket again as long as it holds data curl
 * wants.  When curl stops early on purpose it asks for a zero timeout,
 * which becomes a posted event.
 *
 * Reentrancy.  curl forbids multi calls from inside its callbacks, and
 * an owner may cancel or start requests from inside header and body.
 * While curl runs, such requests are only marked; they are removed or
 * added as soon as curl returns, still in the same event-loop turn.
 *
 * Pausing.  Outside curl a pause is curl_easy_pause() at once.  From
 * inside a callback the owner has already taken the data of that call:
 * the pause is only marked, and the write callback refuses the next
 * piece with CURL_WRITEFUNC_PAUSE, which curl keeps and hands over again
 * when unpaused.  Either way nothing reaches the owner while paused.
 * Unpausing makes curl deliver what it kept from inside
 * curl_easy_pause(), so it is done from a posted event of our own, never
 * from the owner's call, and curl is driven right after it: it does not
 * look at the socket again by itself.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <curl/curl.h>

#include "ngx_http_voice_curl.h"


#define NGX_HTTP_VOICE_CURL_MAX_HOST  255

#ifdef CURL_WRITEFUNC_ERROR
#define NGX_HTTP_VOICE_CURL_FAIL      CURL_WRITEFUNC_ERROR
#else
#define NGX_HTTP_VOICE_CURL_FAIL      0
#endif


typedef struct {
    ngx_http_voice_curl_t          req;
    CURL                          *easy;
    struct curl_slist             *headers;
    ngx_queue_t                    queue;
    ngx_str_t                      host;       /* for logs: no user info */
    size_t                         max_body;
    size_t                         received;

    unsigned                       added:1;
    unsigned                       start_failed:1;
    unsigned                       header_sent:1;
    unsigned                       calling:1;  /* in an owner callback
                                                  outside curl */
    unsigned                       cancelled:1;
    unsigned                       aborted:1;
    unsigned                       too_large:1;
    unsigned                       closing:1;  /* done is running */
    unsigned                       paused:1;   /* the owner's wish */
    unsigned                       held:1;     /* curl is paused */

    ngx_event_t                    wake;       /* unpauses */

    char                           errbuf[CURL_ERROR_SIZE];
} ngx_http_voice_curl_ctx_t;


typedef struct {
    ngx_connection_t              *conn;
    dev_t                          dev;        /* which socket the */
    ino_t                          ino;        /* number stood for */
} ngx_http_voice_curl_sock_t;


static ngx_int_t ngx_http_voice_curl_setup(ngx_http_voice_curl_ctx_t *ctx,
    ngx_http_voice_curl_request_t *rq);
static ngx_int_t ngx_http_voice_curl_add(ngx_http_voice_curl_ctx_t *ctx);
static void ngx_http_voice_curl_host(ngx_str_t *url, ngx_str_t *host);
static void ngx_http_voice_curl_perform(ngx_socket_t fd, int mask);
static void ngx_http_voice_curl_settle(void);
static void ngx_http_voice_curl_finish(ngx_http_voice_curl_ctx_t *ctx,
    CURLcode cc);
static const char *ngx_http_voice_curl_error_text(
    ngx_http_voice_curl_ctx_t *ctx, CURLcode cc);
static void ngx_http_voice_curl_destroy(ngx_http_voice_curl_ctx_t *ctx);
static ngx_int_t ngx_http_voice_curl_deliver_header(
    ngx_http_voice_curl_ctx_t *ctx);
static size_t ngx_http_voice_curl_header_cb(char *p, size_t size,
    size_t n, void *data);
static size_t ngx_http_voice_curl_write_cb(char *p, size_t size, size_t n,
    void *data);
static int ngx_http_voice_curl_close_cb(void *data, curl_socket_t s);
static int ngx_http_voice_curl_socket_cb(CURL *easy, curl_socket_t s,
    int what, void *userp, void *socketp);
static int ngx_http_voice_curl_timer_cb(CURLM *multi, long timeout_ms,
    void *userp);
static ngx_connection_t *ngx_http_voice_curl_lookup(ngx_socket_t s);
static ngx_connection_t *ngx_http_voice_curl_track(ngx_socket_t s);
static void ngx_http_voice_curl_release(ngx_socket_t s, ngx_uint_t gone);
static void ngx_http_voice_curl_sweep(void);
static ngx_int_t ngx_http_voice_curl_watch(ngx_connection_t *c,
    ngx_uint_t in, ngx_uint_t out);
static void ngx_http_voice_curl_read_handler(ngx_event_t *rev);
static void ngx_http_voice_curl_write_handler(ngx_event_t *wev);
static void ngx_http_voice_curl_timer_handler(ngx_event_t *ev);
static void ngx_http_voice_curl_wake_handler(ngx_event_t *ev);


/* per worker */
static CURLM                       *ngx_http_voice_curl_multi;
static ngx_event_t                  ngx_http_voice_curl_timer;
static ngx_queue_t                  ngx_http_voice_curl_requests;
static ngx_uint_t                   ngx_http_voice_curl_busy;
static ngx_uint_t                   ngx_http_voice_curl_pending;
static ngx_http_voice_curl_sock_t  *ngx_http_voice_curl_socks;
static ngx_uint_t                   ngx_http_voice_curl_nsocks;
static ngx_uint_t                   ngx_http_voice_curl_global;


ngx_int_t
ngx_http_voice_curl_init_process(ngx_cycle_t *cycle)
{
    CURLM  *multi;

    if (ngx_process == NGX_PROCESS_HELPER
        || ngx_http_voice_curl_multi != NULL)
    {
        return NGX_OK;
    }

    if (!ngx_http_voice_curl_global) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "curl_global_init() failed");
            return NGX_ERROR;
        }

        ngx_http_voice_curl_global = 1;
    }

    multi = curl_multi_init();
    if (multi == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "curl_multi_init() failed");
        return NGX_ERROR;
    }

    if (curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION,
                          ngx_http_voice_curl_socket_cb) != CURLM_OK
        || curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION,
                             ngx_http_voice_curl_timer_cb) != CURLM_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "curl_multi_setopt() failed");
        curl_multi_cleanup(multi);
        return NGX_ERROR;
    }

    ngx_memzero(&ngx_http_voice_curl_timer, sizeof(ngx_event_t));
    ngx_http_voice_curl_timer.handler = ngx_http_voice_curl_timer_handler;
    ngx_http_voice_curl_timer.log = cycle->log;
    ngx_http_voice_curl_timer.data = multi;

    /* curl's timer alone must not hold a worker that is shutting down */
    ngx_http_voice_curl_timer.cancelable = 1;

    ngx_queue_init(&ngx_http_voice_curl_requests);
    ngx_http_voice_curl_busy = 0;
    ngx_http_voice_curl_pending = 0;
    ngx_http_voice_curl_multi = multi;

    return NGX_OK;
}


void
ngx_http_voice_curl_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  i;
    ngx_queue_t                *q;
    ngx_http_voice_curl_ctx_t  *ctx;

    if (ngx_http_voice_curl_multi == NULL) {
        return;
    }

    /* owners are gone by now: requests left over end without callbacks */

    while (!ngx_queue_empty(&ngx_http_voice_curl_requests)) {
        q = ngx_queue_head(&ngx_http_voice_curl_requests);
        ctx = ngx_queue_data(q, ngx_http_voice_curl_ctx_t, queue);
        ngx_http_voice_curl_destroy(ctx);
    }

    /* closes the idle connections through the close-socket callback */
    curl_multi_cleanup(ngx_http_voice_curl_multi);
    ngx_http_voice_curl_multi = NULL;

    if (ngx_http_voice_curl_timer.timer_set) {
        ngx_del_timer(&ngx_http_voice_curl_timer);
    }

    if (ngx_http_voice_curl_timer.posted) {
        ngx_delete_posted_event(&ngx_http_voice_curl_timer);
    }

    /* curl has closed its sockets: only stale entries can be left */

    for (i = 0; i < ngx_http_voice_curl_nsocks; i++) {
        if (ngx_http_voice_curl_lookup((ngx_socket_t) i) != NULL) {
            ngx_http_voice_curl_release((ngx_socket_t) i, 0);
        }
    }

    if (ngx_http_voice_curl_socks) {
        ngx_free(ngx_http_voice_curl_socks);
        ngx_http_voice_curl_socks = NULL;
        ngx_http_voice_curl_nsocks = 0;
    }

    if (ngx_http_voice_curl_global) {
        curl_global_cleanup();
        ngx_http_voice_curl_global = 0;
    }
}


ngx_http_voice_curl_t *
ngx_http_voice_curl_start(ngx_http_voice_curl_request_t *rq,
    ngx_http_voice_curl_handler_t *h, void *data, ngx_log_t *log)
{
    ngx_str_t                   host;
    ngx_http_voice_curl_ctx_t  *ctx;

    if (ngx_http_voice_curl_multi == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "voice curl: not initialised in this process");
        return NULL;
    }

    ngx_http_voice_curl_host(&rq->url, &host);

    ctx = ngx_alloc(sizeof(ngx_http_voice_curl_ctx_t) + host.len, log);
    if (ctx == NULL) {
        return NULL;
    }

    ngx_memzero(ctx, sizeof(ngx_http_voice_curl_ctx_t));

    ctx->req.data = data;
    ctx->req.log = log;
    ctx->req.handler = h;
    ctx->req.ctx = ctx;
    ctx->max_body = rq->max_body;

    ctx->wake.handler = ngx_http_voice_curl_wake_handler;
    ctx->wake.data = ctx;
    ctx->wake.log = log;

    ctx->host.data = (u_char *) ctx + sizeof(ngx_http_voice_curl_ctx_t);
    ctx->host.len = host.len;
    ngx_memcpy(ctx->host.data, host.data, host.len);

    ctx->easy = curl_easy_init();
    if (ctx->easy == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "curl_easy_init() failed");
        ngx_free(ctx);
        return NULL;
    }

    if (ngx_http_voice_curl_setup(ctx, rq) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "voice curl: could not set up request to \"%V\"",
                      &ctx->host);
        curl_easy_cleanup(ctx->easy);
        curl_slist_free_all(ctx->headers);
        ngx_free(ctx);
        return NULL;
    }

    ngx_queue_insert_tail(&ngx_http_voice_curl_requests, &ctx->queue);

    if (ngx_http_voice_curl_busy) {
        /* inside curl: added as soon as it returns */
        ngx_http_voice_curl_pending = 1;
        return &ctx->req;
    }

    if (ngx_http_voice_curl_add(ctx) != NGX_OK) {
        ngx_http_voice_curl_destroy(ctx);
        return NULL;
    }

    return &ctx->req;
}


void
ngx_http_voice_curl_pause(ngx_http_voice_curl_t *req, ngx_uint_t pause)
{
    CURLcode                    cc;
    ngx_http_voice_curl_ctx_t  *ctx;

    ctx = req->ctx;

    if (ctx->cancelled || ctx->closing || ctx->paused == (pause != 0)) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, req->log, 0,
                   "voice curl: %s request to \"%V\"",
                   pause ? "pause" : "resume", &ctx->host);

    if (!pause) {
        ctx->paused = 0;

        if (ctx->held && !ctx->wake.posted) {
            ngx_post_event(&ctx->wake, &ngx_posted_events);
        }

        return;
    }

    ctx->paused = 1;

    if (ctx->wake.posted) {
        /* paused again before the unpause ran: curl is still held */
        ngx_delete_posted_event(&ctx->wake);
    }

    if (ctx->held || !ctx->added || ngx_http_voice_curl_busy
        || ctx->calling)
    {
        /* the write callback refuses the next piece */
        return;
    }

    cc = curl_easy_pause(ctx->easy, CURLPAUSE_RECV);

    if (cc != CURLE_OK) {
        /*
         * curl takes a pause only once the transfer has a connection;
         * before that the write callback holds the first piece back
         */
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, req->log, 0,
                       "voice curl: curl_easy_pause() refused: %s",
                       curl_easy_strerror(cc));
        return;
    }

    ctx->held = 1;
}


static void
ngx_http_voice_curl_wake_handler(ngx_event_t *ev)
{
    ngx_http_voice_curl_ctx_t *ctx = ev->data;

    CURLcode  cc;

    if (ctx->paused || !ctx->held || ctx->cancelled || !ctx->added) {
        return;
    }

    ctx->held = 0;

    /* what curl kept is written from in here: callbacks may run */

    ngx_http_voice_curl_busy++;

    cc = curl_easy_pause(ctx->easy, CURLPAUSE_CONT);

    ngx_http_voice_curl_busy--;

    if (cc != CURLE_OK && !ctx->cancelled) {
        /* the kept data was refused (too large, or the owner aborted) */
        ngx_http_voice_curl_finish(ctx, cc);
        ngx_http_voice_curl_settle();
        return;
    }

    /* drives curl now: the socket may hold data it will not be told of */

    ngx_http_voice_curl_perform(CURL_SOCKET_TIMEOUT, 0);
}


void
ngx_http_voice_curl_cancel(ngx_http_voice_curl_t *req)
{
    ngx_http_voice_curl_ctx_t  *ctx;

    ctx = req->ctx;

    if (ctx->cancelled || ctx->closing) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, req->log, 0,
                   "voice curl: cancel request to \"%V\"", &ctx->host);

    ctx->cancelled = 1;

    if (ngx_http_voice_curl_busy || ctx->calling) {
        /*
         * curl (or our own completion code) is on the stack: the write
         * and header callbacks now fail the transfer, and it is
         * removed right after curl returns
         */
        ngx_http_voice_curl_pending = 1;
        return;
    }

    ngx_http_voice_curl_destroy(ctx);
}


static ngx_int_t
ngx_http_voice_curl_setup(ngx_http_voice_curl_ctx_t *ctx,
    ngx_http_voice_curl_request_t *rq)
{
    int                  fail;
    CURL                *e;
    size_t               size;
    u_char              *tmp;
    ngx_str_t           *hdr;
    ngx_uint_t           i, expect, head, post;
    struct curl_slist   *list;

    e = ctx->easy;

    /* one scratch buffer turns each string into a C string for curl */

    size = ngx_max(rq->url.len, rq->trusted.len);
    size = ngx_max(size, rq->method.len);
    expect = 0;

    for (i = 0; i < rq->nheaders; i++) {
        hdr = &rq->headers[i];
        size = ngx_max(size, hdr->len);

        if (hdr->len >= 7 && ngx_strncasecmp(hdr->data, (u_char *) "Expect:",
                                             7) == 0)
        {
            expect = 1;
        }
    }

    tmp = ngx_alloc(size + 1, ctx->req.log);
    if (tmp == NULL) {
        return NGX_ERROR;
    }

    fail = 0;

    *ngx_cpymem(tmp, rq->url.data, rq->url.len) = '\0';
    fail |= curl_easy_setopt(e, CURLOPT_URL, tmp) != CURLE_OK;

#if (LIBCURL_VERSION_NUM >= 0x075500)
    fail |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https")
            != CURLE_OK;
#else
    fail |= curl_easy_setopt(e, CURLOPT_PROTOCOLS,
                             (long) (CURLPROTO_HTTP|CURLPROTO_HTTPS))
            != CURLE_OK;
#endif

    head = (rq->method.len == 4
            && ngx_strncmp(rq->method.data, "HEAD", 4) == 0);
    post = (rq->body.len > 0
            || (rq->method.len == 4
                && ngx_strncmp(rq->method.data, "POST", 4) == 0));

    if (head) {
        fail |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L) != CURLE_OK;

    } else if (post) {
        fail |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                                 (curl_off_t) rq->body.len) != CURLE_OK;
        fail |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS,
                                 rq->body.len ? (char *) rq->body.data : "")
                != CURLE_OK;

    } else {
        fail |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    }

    if (rq->method.len && !head) {
        *ngx_cpymem(tmp, rq->method.data, rq->method.len) = '\0';
        fail |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, tmp) != CURLE_OK;
    }

    for (i = 0; i < rq->nheaders; i++) {
        hdr = &rq->headers[i];
        *ngx_cpymem(tmp, hdr->data, hdr->len) = '\0';

        list = curl_slist_append(ctx->headers, (char *) tmp);
        if (list == NULL) {
            fail = 1;
            break;
        }

        ctx->headers = list;
    }

    /* a large body would otherwise wait for "100 Continue" */

    if (!expect && !fail) {
        list = curl_slist_append(ctx->headers, "Expect:");
        if (list == NULL) {
            fail = 1;

        } else {
            ctx->headers = list;
        }
    }

    fail |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, ctx->headers)
            != CURLE_OK;

    if (rq->trusted.len) {
        *ngx_cpymem(tmp, rq->trusted.data, rq->trusted.len) = '\0';
        fail |= curl_easy_setopt(e, CURLOPT_CAINFO, tmp) != CURLE_OK;
    }

    ngx_free(tmp);

    fail |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER,
                             rq->verify ? 1L : 0L) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST,
                             rq->verify ? 2L : 0L) != CURLE_OK;

    fail |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                             (long) rq->connect_timeout) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) rq->timeout)
            != CURLE_OK;

    if (rq->max_body) {
        /* refuses a too long Content-Length before any body */
        fail |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                                 (curl_off_t) rq->max_body) != CURLE_OK;
    }

    /* headers may carry secrets: curl must not print them */
    fail |= curl_easy_setopt(e, CURLOPT_VERBOSE, 0L) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_NOPROGRESS, 1L) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L)
            != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                             (long) CURL_HTTP_VERSION_2TLS) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ctx->errbuf)
            != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_PRIVATE, ctx) != CURLE_OK;

    fail |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION,
                             ngx_http_voice_curl_header_cb) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_HEADERDATA, ctx) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION,
                             ngx_http_voice_curl_write_cb) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_WRITEDATA, ctx) != CURLE_OK;

    /*
     * a connection outlives the request that opened it: the callback
     * gets no request data and must not need any
     */
    fail |= curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION,
                             ngx_http_voice_curl_close_cb) != CURLE_OK;
    fail |= curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, NULL) != CURLE_OK;

    return fail ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_http_voice_curl_add(ngx_http_voice_curl_ctx_t *ctx)
{
    CURLMcode  mc;

    mc = curl_multi_add_handle(ngx_http_voice_curl_multi, ctx->easy);

    if (mc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ERR, ctx->req.log, 0,
                      "curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(mc));
        return NGX_ERROR;
    }

    ctx->added = 1;

    return NGX_OK;
}


/* host[:port] of a URL, without any user info, for log lines */

static void
ngx_http_voice_curl_host(ngx_str_t *url, ngx_str_t *host)
{
    u_char  *p, *end, *last, *at;

    p = url->data;
    end = url->data + url->len;

    last = ngx_strlchr(p, end, ':');

    if (last && end - last > 2 && last[1] == '/' && last[2] == '/') {
        p = last + 3;
    }

    at = NULL;

    for (last = p; last < end; last++) {
        if (*last == '/' || *last == '?' || *last == '#') {
            break;
        }

        if (*last == '@') {
            at = last;
        }
    }

    if (at) {
        p = at + 1;
    }

    host->data = p;
    host->len = ngx_min((size_t) (last - p), NGX_HTTP_VOICE_CURL_MAX_HOST);
}


/* the one place curl is driven from */

static void
ngx_http_voice_curl_perform(ngx_socket_t fd, int mask)
{
    int        running;
    CURLMcode  mc;

    ngx_http_voice_curl_busy++;

    mc = curl_multi_socket_action(ngx_http_voice_curl_multi, fd, mask,
                                  &running);

    ngx_http_voice_curl_busy--;

    if (mc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "curl_multi_socket_action() failed: %s",
                      curl_multi_strerror(mc));
    }

    ngx_http_voice_curl_settle();
}


/*
 * Runs right after curl returns: removes cancelled requests, adds those
 * started from inside callbacks, then reports completed transfers.
 */

static void
ngx_http_voice_curl_settle(void)
{
    int                         left;
    char                       *priv;
    CURL                       *easy;
    CURLcode                    cc;
    CURLMsg                    *msg;
    ngx_queue_t                *q, *next;
    ngx_http_voice_curl_ctx_t  *ctx;

    if (ngx_http_voice_curl_busy) {
        return;
    }

    if (ngx_http_voice_curl_pending) {
        ngx_http_voice_curl_pending = 0;

        /* no owner callback runs in this walk */

        for (q = ngx_queue_head(&ngx_http_voice_curl_requests);
             q != ngx_queue_sentinel(&ngx_http_voice_curl_requests);
             q = next)
        {
            next = ngx_queue_next(q);
            ctx = ngx_queue_data(q, ngx_http_voice_curl_ctx_t, queue);

            if (ctx->cancelled && !ctx->calling) {
                ngx_http_voice_curl_destroy(ctx);
                continue;
            }

            if (!ctx->added && !ctx->start_failed
                && ngx_http_voice_curl_add(ctx) != NGX_OK)
            {
                ctx->start_failed = 1;
            }
        }

        /* a done callback may change the list: look again each time */

        for ( ;; ) {
            for (q = ngx_queue_head(&ngx_http_voice_curl_requests);
                 q != ngx_queue_sentinel(&ngx_http_voice_curl_requests);
                 q = ngx_queue_next(q))
            {
                ctx = ngx_queue_data(q, ngx_http_voice_curl_ctx_t, queue);

                if (ctx->start_failed && !ctx->cancelled) {
                    break;
                }
            }

            if (q == ngx_queue_sentinel(&ngx_http_voice_curl_requests)) {
                break;
            }

            ngx_http_voice_curl_finish(ctx, CURLE_FAILED_INIT);
        }
    }

    for ( ;; ) {
        msg = curl_multi_info_read(ngx_http_voice_curl_multi, &left);

        if (msg == NULL) {
            break;
        }

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        /* msg is curl's until the next multi call: copy what we need */

        easy = msg->easy_handle;
        cc = msg->data.result;

        priv = NULL;
        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);

        if (priv == NULL) {
            continue;
        }

        ngx_http_voice_curl_finish((ngx_http_voice_curl_ctx_t *) priv, cc);
    }
}


static void
ngx_http_voice_curl_finish(ngx_http_voice_curl_ctx_t *ctx, CURLcode cc)
{
    ngx_int_t               rc;
    ngx_http_voice_curl_t  *req;

    req = &ctx->req;

    /* back to curl's cache (or closed) before the owner hears of it */

    if (ctx->added) {
        (void) curl_multi_remove_handle(ngx_http_voice_curl_multi,
                                        ctx->easy);
        ctx->added = 0;
    }

    if (ctx->cancelled) {
        ngx_http_voice_curl_destroy(ctx);
        return;
    }

    if (cc == CURLE_OK) {
        rc = NGX_OK;

        if (!ctx->header_sent) {
            /* a response curl never showed us a blank line for */
            ctx->calling = 1;
            rc = ngx_http_voice_curl_deliver_header(ctx);
            ctx->calling = 0;

            if (ctx->cancelled) {
                ngx_http_voice_curl_destroy(ctx);
                return;
            }

            if (rc != NGX_OK) {
                rc = NGX_ABORT;
            }
        }

    } else if (ctx->aborted) {
        rc = NGX_ABORT;

    } else {
        rc = NGX_ERROR;
        req->error = ngx_http_voice_curl_error_text(ctx, cc);

        /* failed connects are where curl may close sockets silently */
        ngx_http_voice_curl_sweep();

        if (ctx->errbuf[0]) {
            ngx_log_error(NGX_LOG_WARN, req->log, 0,
                          "voice curl: request to \"%V\" failed: %s (%s)",
                          &ctx->host, req->error, ctx->errbuf);

        } else {
            ngx_log_error(NGX_LOG_WARN, req->log, 0,
                          "voice curl: request to \"%V\" failed: %s",
                          &ctx->host, req->error);
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, req->log, 0,
                   "voice curl: request to \"%V\" done: %i, status %ui",
                   &ctx->host, rc, req->status);

    ctx->closing = 1;

    req->handler->done(req, rc);

    ngx_http_voice_curl_destroy(ctx);
}


static const char *
ngx_http_voice_curl_error_text(ngx_http_voice_curl_ctx_t *ctx, CURLcode cc)
{
    curl_off_t  connected;

    switch (cc) {

    case CURLE_OPERATION_TIMEDOUT:
        ctx->req.timedout = 1;

        connected = 0;
        (void) curl_easy_getinfo(ctx->easy, CURLINFO_CONNECT_TIME_T,
                                 &connected);

        if (connected == 0) {
            return "connect timed out";
        }

        return ctx->header_sent ? "timed out in body" : "timed out";

    case CURLE_COULDNT_RESOLVE_HOST:
        return "could not resolve host";

    case CURLE_COULDNT_CONNECT:
        return "could not connect";

    case CURLE_PEER_FAILED_VERIFICATION:
        return "certificate verification failed";

    case CURLE_SSL_CONNECT_ERROR:
        return "TLS handshake failed";

    case CURLE_SSL_CACERT_BADFILE:
        return "bad CA file";

    case CURLE_SEND_ERROR:
        return "send failed";

    case CURLE_RECV_ERROR:
        return "receive failed";

    case CURLE_GOT_NOTHING:
        return "empty reply";

    case CURLE_PARTIAL_FILE:
        return "response truncated";

    case CURLE_FILESIZE_EXCEEDED:
        return "response too large";

    case CURLE_WRITE_ERROR:
        return ctx->too_large ? "response too large" : "write failed";

    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return "bad URL";

    case CURLE_OUT_OF_MEMORY:
        return "out of memory";

    case CURLE_FAILED_INIT:
        return "could not start";

    default:
        /* curl's own texts are static too */
        return curl_easy_strerror(cc);
    }
}


static void
ngx_http_voice_curl_destroy(ngx_http_voice_curl_ctx_t *ctx)
{
    if (ctx->added) {
        /*
         * an unfinished HTTP/1.x transfer makes curl close its
         * connection here, through the close-socket callback
         */
        (void) curl_multi_remove_handle(ngx_http_voice_curl_multi,
                                        ctx->easy);
        ctx->added = 0;
    }

    curl_easy_cleanup(ctx->easy);
    curl_slist_free_all(ctx->headers);

    if (ctx->wake.posted) {
        ngx_delete_posted_event(&ctx->wake);
    }

    ngx_queue_remove(&ctx->queue);
    ngx_free(ctx);
}


static ngx_int_t
ngx_http_voice_curl_deliver_header(ngx_http_voice_curl_ctx_t *ctx)
{
    long       code;
    ngx_int_t  rc;

    code = 0;
    (void) curl_easy_getinfo(ctx->easy, CURLINFO_RESPONSE_CODE, &code);

    ctx->header_sent = 1;
    ctx->req.status = (ngx_uint_t) code;

    if (ctx->req.handler->header == NULL) {
        return NGX_OK;
    }

    rc = ctx->req.handler->header(&ctx->req, ctx->req.status);

    if (ctx->cancelled) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        ctx->aborted = 1;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static size_t
ngx_http_voice_curl_header_cb(char *p, size_t size, size_t n, void *data)
{
    ngx_http_voice_curl_ctx_t *ctx = data;

    long    code;
    size_t  len;

    len = size * n;

    if (ctx->cancelled || ctx->aborted) {
        return NGX_HTTP_VOICE_CURL_FAIL;
    }

    /* trailers, and every line but the blank one, are of no interest */

    if (ctx->header_sent
        || !((len == 2 && p[0] == CR && p[1] == LF)
             || (len == 1 && p[0] == LF)))
    {
        return len;
    }

    code = 0;
    (void) curl_easy_getinfo(ctx->easy, CURLINFO_RESPONSE_CODE, &code);

    if (code < 200) {
        /* an interim response (100, 103): the real one follows */
        return len;
    }

    if (ngx_http_voice_curl_deliver_header(ctx) != NGX_OK) {
        return NGX_HTTP_VOICE_CURL_FAIL;
    }

    return len;
}


static size_t
ngx_http_voice_curl_write_cb(char *p, size_t size, size_t n, void *data)
{
    ngx_http_voice_curl_ctx_t *ctx = data;

    size_t     len;
    ngx_int_t  rc;

    len = size * n;

    if (ctx->cancelled || ctx->aborted || ctx->too_large) {
        return NGX_HTTP_VOICE_CURL_FAIL;
    }

    if (!ctx->header_sent
        && ngx_http_voice_curl_deliver_header(ctx) != NGX_OK)
    {
        return NGX_HTTP_VOICE_CURL_FAIL;
    }

    if (len == 0) {
        return 0;
    }

    if (ctx->paused) {
        /* curl keeps this piece and writes it again once unpaused */
        ctx->held = 1;
        return CURL_WRITEFUNC_PAUSE;
    }

    if (ctx->max_body && len > ctx->max_body - ctx->received) {
        ctx->too_large = 1;
        return NGX_HTTP_VOICE_CURL_FAIL;
    }

    ctx->received += len;

    rc = ctx->req.handler->body(&ctx->req, (u_char *) p, len);

    if (ctx->cancelled) {
        return NGX_HTTP_VOICE_CURL_FAIL;
    }

    if (rc != NGX_OK) {
        ctx->aborted = 1;
        return NGX_HTTP_VOICE_CURL_FAIL;
    }

    return len;
}


static int
ngx_http_voice_curl_close_cb(void *data, curl_socket_t s)
{
    if (ngx_http_voice_curl_lookup(s) != NULL) {
        /* curl closes without saying "remove" first: drop events now */
        ngx_http_voice_curl_release(s, 0);
    }

    if (ngx_close_socket(s) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_socket_errno,
                      ngx_close_socket_n " failed");
        return 1;
    }

    return 0;
}


static int
ngx_http_voice_curl_socket_cb(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_connection_t  *c;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "voice curl: socket %d wants %d", (int) s, what);

    c = ngx_http_voice_curl_lookup(s);

    if (what == CURL_POLL_REMOVE) {
        if (c != NULL) {
            ngx_http_voice_curl_release(s, 0);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_http_voice_curl_track(s);
        if (c == NULL) {
            return -1;
        }
    }

    if (ngx_http_voice_curl_watch(c, what & CURL_POLL_IN,
                                  what & CURL_POLL_OUT)
        != NGX_OK)
    {
        return -1;
    }

    return 0;
}


static int
ngx_http_voice_curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_event_t  *ev;

    ev = &ngx_http_voice_curl_timer;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "voice curl: timer %l", timeout_ms);

    if (timeout_ms < 0) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }

        if (ev->posted) {
            ngx_delete_posted_event(ev);
        }

        return 0;
    }

    if (timeout_ms == 0) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }

        /*
         * curl may not be entered from here: act early in the next
         * turn (which polls without waiting), giving other connections
         * their share if curl keeps asking
         */

        if (!ev->posted) {
            ngx_post_event(ev, &ngx_posted_next_events);
        }

        return 0;
    }

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    ngx_add_timer(ev, (ngx_msec_t) timeout_ms);

    return 0;
}


/* the connection of a descriptor, when it still names the same socket */

static ngx_connection_t *
ngx_http_voice_curl_lookup(ngx_socket_t s)
{
    ngx_file_info_t              fi;
    ngx_http_voice_curl_sock_t  *sk;

    if (s < 0 || (ngx_uint_t) s >= ngx_http_voice_curl_nsocks) {
        return NULL;
    }

    sk = &ngx_http_voice_curl_socks[s];

    if (sk->conn == NULL) {
        return NULL;
    }

    if (ngx_fd_info(s, &fi) == NGX_FILE_ERROR
        || fi.st_dev != sk->dev || fi.st_ino != sk->ino)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                       "voice curl: socket %d closed behind our back",
                       (int) s);

        ngx_http_voice_curl_release(s, 1);
        return NULL;
    }

    return sk->conn;
}


static ngx_connection_t *
ngx_http_voice_curl_track(ngx_socket_t s)
{
    size_t                       n;
    ngx_file_info_t              fi;
    ngx_connection_t            *c;
    ngx_http_voice_curl_sock_t  *socks;

    if (ngx_fd_info(s, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                      ngx_fd_info_n " of curl's socket %d failed", (int) s);
        return NULL;
    }

    if ((ngx_uint_t) s >= ngx_http_voice_curl_nsocks) {
        n = ngx_max(64, 2 * (size_t) s);

        socks = ngx_alloc(n * sizeof(ngx_http_voice_curl_sock_t),
                          ngx_cycle->log);
        if (socks == NULL) {
            return NULL;
        }

        ngx_memzero(socks, n * sizeof(ngx_http_voice_curl_sock_t));

        if (ngx_http_voice_curl_socks) {
            ngx_memcpy(socks, ngx_http_voice_curl_socks,
                       ngx_http_voice_curl_nsocks
                       * sizeof(ngx_http_voice_curl_sock_t));
            ngx_free(ngx_http_voice_curl_socks);
        }

        ngx_http_voice_curl_socks = socks;
        ngx_http_voice_curl_nsocks = n;
    }

    c = ngx_get_connection(s, ngx_cycle->log);
    if (c == NULL) {
        return NULL;
    }

    c->read->handler = ngx_http_voice_curl_read_handler;
    c->write->handler = ngx_http_voice_curl_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    ngx_http_voice_curl_socks[s].conn = c;
    ngx_http_voice_curl_socks[s].dev = fi.st_dev;
    ngx_http_voice_curl_socks[s].ino = fi.st_ino;

    return c;
}


/* drops the entries of sockets curl closed without a word */

static void
ngx_http_voice_curl_sweep(void)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_http_voice_curl_nsocks; i++) {
        if (ngx_http_voice_curl_socks[i].conn != NULL) {
            (void) ngx_http_voice_curl_lookup((ngx_socket_t) i);
        }
    }
}


/*
 * Gives the connection back; the descriptor stays curl's.  gone: the
 * socket was already closed, and with it its epoll registration, so
 * the number must not be touched.
 */

static void
ngx_http_voice_curl_release(ngx_socket_t s, ngx_uint_t gone)
{
    ngx_connection_t  *c;

    c = ngx_http_voice_curl_socks[s].conn;
    ngx_http_voice_curl_socks[s].conn = NULL;

    if (gone) {
        c->read->active = 0;
        c->write->active = 0;
    }

    (void) ngx_http_voice_curl_watch(c, 0, 0);

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


static ngx_int_t
ngx_http_voice_curl_watch(ngx_connection_t *c, ngx_uint_t in,
    ngx_uint_t out)
{
    ngx_int_t  rc;

    rc = NGX_OK;

    if (in && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            rc = NGX_ERROR;
        }

    } else if (!in) {
        if (c->read->active
            && ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK)
        {
            rc = NGX_ERROR;
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }
    }

    if (out && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            rc = NGX_ERROR;
        }

    } else if (!out) {
        if (c->write->active
            && ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK)
        {
            rc = NGX_ERROR;
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }
    }

    return rc;
}


static void
ngx_http_voice_curl_read_handler(ngx_event_t *rev)
{
    ngx_connection_t  *c;

    c = rev->data;

    ngx_http_voice_curl_perform(c->fd, CURL_CSELECT_IN);
}


static void
ngx_http_voice_curl_write_handler(ngx_event_t *wev)
{
    ngx_connection_t  *c;

    c = wev->data;

    ngx_http_voice_curl_perform(c->fd, CURL_CSELECT_OUT);
}


static void
ngx_http_voice_curl_timer_handler(ngx_event_t *ev)
{
    ev->timedout = 0;

    ngx_http_voice_curl_perform(CURL_SOCKET_TIMEOUT, 0);
}
