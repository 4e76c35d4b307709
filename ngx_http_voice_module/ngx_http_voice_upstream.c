
/*
 * Provider streams over raw sockets: TCP, TLS and the WebSocket client.
 *
 * One upstream is one connection with its own pool and its own copy of
 * the owner's log, so that it can finish a close handshake after its
 * owner is gone.  It moves through connecting, TLS handshaking and
 * upgrading (all under conf->connect_timeout), then streams frames, and
 * ends either by reporting "closed" to its owner or, once the owner has
 * closed it, silently.
 *
 * Callbacks run with ctx->busy raised; whatever would free the upstream
 * meanwhile (the owner closing it from inside a callback) only marks it
 * done, and the code that made the call frees it after it returns.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_sha1.h>

#include <openssl/rand.h>

#include "ngx_http_voice_upstream.h"
#include "ngx_http_voice_ws.h"
#include "ngx_http_voice_ring.h"


/* the largest response head to an upgrade request taken */
#define NGX_HTTP_VOICE_UPSTREAM_HEAD          4096

#define NGX_HTTP_VOICE_UPSTREAM_READ          16384

/*
 * A provider that makes no write progress for this long is given up on.
 * It is fixed rather than tied to connect_timeout: a short connect
 * timeout should not cut a provider that pauses reading for a moment.
 */
#define NGX_HTTP_VOICE_UPSTREAM_SEND_TIMEOUT  10000

/* message bound when the configuration sets none */
#define NGX_HTTP_VOICE_UPSTREAM_MESSAGE       (1024 * 1024)

/* room for one control frame, ours being masked */
#define NGX_HTTP_VOICE_UPSTREAM_CONTROL                                      \
    (NGX_HTTP_VOICE_WS_MAX_HEADER + NGX_HTTP_VOICE_WS_MAX_CONTROL)


typedef enum {
    ngx_http_voice_upstream_connecting = 0,
    ngx_http_voice_upstream_handshaking,
    ngx_http_voice_upstream_upgrading,
    ngx_http_voice_upstream_open,
    ngx_http_voice_upstream_closing,      /* ours sent, theirs awaited */
    ngx_http_voice_upstream_lingering     /* last bytes out, then close */
} ngx_http_voice_upstream_state_e;


typedef struct {
    ngx_http_voice_upstream_t       u;
    ngx_log_t                       log;
    ngx_peer_connection_t           peer;
    ngx_uint_t                      addr;      /* next in conf->url.addrs */
    ngx_uint_t                      state;

    /* connect and close deadlines; a posted failure at the start */
    ngx_event_t                     timer;
    const char                     *failure;

    ngx_str_t                       request;
    size_t                          sent;
    u_char                          accept[NGX_HTTP_VOICE_WS_ACCEPT_LEN];
    u_char                         *head;
    size_t                          head_len;

    u_char                         *buffer;
    ngx_http_voice_ws_parser_t      parser;
    ngx_uint_t                      opcode;    /* of the message assembled */
    ngx_http_voice_ring_t           message;
    ngx_http_voice_ring_t           out;

    ngx_http_voice_upstream_end_t   end;

    /* frames read but not yet processed when the owner paused */
    u_char                         *pending;
    u_char                         *pending_last;

    ngx_uint_t                      busy;      /* callbacks running */
    unsigned                        starting:1;
    unsigned                        paused:1;  /* the owner takes no more */
    unsigned                        gone:1;    /* the owner hears no more */
    unsigned                        done:1;    /* free once not busy */
    unsigned                        finished:1;
    unsigned                        close_sent:1;
    unsigned                        broken:1;
} ngx_http_voice_upstream_ctx_t;


static u_char *ngx_http_voice_upstream_log_error(ngx_log_t *log,
    u_char *buf, size_t len);
static ngx_int_t ngx_http_voice_upstream_request(
    ngx_http_voice_upstream_ctx_t *ctx, ngx_str_t *target,
    ngx_str_t *headers);
static void ngx_http_voice_upstream_connect_peer(
    ngx_http_voice_upstream_ctx_t *ctx);
static void ngx_http_voice_upstream_connected(
    ngx_http_voice_upstream_ctx_t *ctx);
static ngx_err_t ngx_http_voice_upstream_test_connect(ngx_connection_t *c);
#if (NGX_HTTP_SSL)
static void ngx_http_voice_upstream_ssl_init(
    ngx_http_voice_upstream_ctx_t *ctx);
static void ngx_http_voice_upstream_ssl_handshaked(ngx_connection_t *c);
static ngx_int_t ngx_http_voice_upstream_check_host(ngx_connection_t *c,
    ngx_str_t *host);
static void ngx_http_voice_upstream_ssl_closed(ngx_connection_t *c);
#endif
static void ngx_http_voice_upstream_upgrade(
    ngx_http_voice_upstream_ctx_t *ctx);
static void ngx_http_voice_upstream_send_request(
    ngx_http_voice_upstream_ctx_t *ctx);
static void ngx_http_voice_upstream_read_head(
    ngx_http_voice_upstream_ctx_t *ctx);
static void ngx_http_voice_upstream_opened(ngx_http_voice_upstream_ctx_t *ctx,
    u_char *pos, u_char *last);
static void ngx_http_voice_upstream_read_handler(ngx_event_t *rev);
static void ngx_http_voice_upstream_write_handler(ngx_event_t *wev);
static void ngx_http_voice_upstream_timeout(ngx_event_t *ev);
static void ngx_http_voice_upstream_read_frames(
    ngx_http_voice_upstream_ctx_t *ctx);
static ngx_int_t ngx_http_voice_upstream_process(
    ngx_http_voice_upstream_ctx_t *ctx, u_char *pos, u_char *last);
static ngx_int_t ngx_http_voice_upstream_deliver(
    ngx_http_voice_upstream_ctx_t *ctx, ngx_uint_t opcode, u_char *data,
    size_t len);
static void ngx_http_voice_upstream_peer_closed(
    ngx_http_voice_upstream_ctx_t *ctx, u_char *data, size_t len);
static void ngx_http_voice_upstream_bad_frame(
    ngx_http_voice_upstream_ctx_t *ctx);
static void ngx_http_voice_upstream_flush(ngx_http_voice_upstream_ctx_t *ctx);
static ngx_int_t ngx_http_voice_upstream_frame(
    ngx_http_voice_upstream_ctx_t *ctx, ngx_uint_t opcode, u_char *data,
    size_t len);
static ngx_int_t ngx_http_voice_upstream_close_frame(
    ngx_http_voice_upstream_ctx_t *ctx, ngx_uint_t code);
static void ngx_http_voice_upstream_post_write(
    ngx_http_voice_upstream_ctx_t *ctx);
static void ngx_http_voice_upstream_fail(ngx_http_voice_upstream_ctx_t *ctx,
    const char *reason);
static void ngx_http_voice_upstream_report(
    ngx_http_voice_upstream_ctx_t *ctx);
static void ngx_http_voice_upstream_finish(
    ngx_http_voice_upstream_ctx_t *ctx);
static void ngx_http_voice_upstream_free(ngx_http_voice_upstream_ctx_t *ctx);


#define ngx_http_voice_upstream_set_reason(ctx, text)                        \
    do {                                                                     \
        (ctx)->end.reason.data = (u_char *) (text);                          \
        (ctx)->end.reason.len = ngx_strlen(text);                            \
    } while (0)


char *
ngx_http_voice_upstream_parse_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_http_voice_upstream_conf_t *conf)
{
    u_char      *p;
    size_t       skip;
    in_port_t    port;
    ngx_uint_t   ssl;

    if (url->len >= 5
        && ngx_strncasecmp(url->data, (u_char *) "ws://", 5) == 0)
    {
        skip = 5;
        port = 80;
        ssl = 0;

    } else if (url->len >= 6
               && ngx_strncasecmp(url->data, (u_char *) "wss://", 6) == 0)
    {
        skip = 6;
        port = 443;
        ssl = 1;

    } else if (url->len >= 7
               && ngx_strncasecmp(url->data, (u_char *) "http://", 7) == 0)
    {
        skip = 7;
        port = 80;
        ssl = 0;

    } else if (url->len >= 8
               && ngx_strncasecmp(url->data, (u_char *) "https://", 8) == 0)
    {
        skip = 8;
        port = 443;
        ssl = 1;

    } else {
        p = ngx_pnalloc(cf->pool, url->len + 128);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(p, "has an invalid URL \"%V\": it must start with "
                    "ws://, wss://, http:// or https://%Z", url);

        return (char *) p;
    }

    if (url->len == skip) {
        p = ngx_pnalloc(cf->pool, url->len + 64);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(p, "has an invalid URL \"%V\": no host%Z", url);

        return (char *) p;
    }

#if !(NGX_HTTP_SSL)
    if (ssl) {
        return "needs nginx built with TLS for wss:// and https:// URLs";
    }
#endif

    ngx_memzero(&conf->url, sizeof(ngx_url_t));

    conf->url.url.data = url->data + skip;
    conf->url.url.len = url->len - skip;
    conf->url.default_port = port;
    conf->url.uri_part = 1;

    if (ngx_parse_url(cf->pool, &conf->url) != NGX_OK) {

        p = ngx_pnalloc(cf->pool, url->len + 128);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(p, "has an invalid URL \"%V\": %s%Z", url,
                    conf->url.err ? conf->url.err : "cannot be parsed");

        return (char *) p;
    }

    if (conf->url.naddrs == 0 || conf->url.host.len == 0) {
        p = ngx_pnalloc(cf->pool, url->len + 64);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(p, "has a URL with no host address \"%V\"%Z", url);

        return (char *) p;
    }

    conf->host = conf->url.host;
    conf->ssl = ssl;

    if (conf->url.uri.len == 0) {
        ngx_str_set(&conf->uri, "/");

    } else if (conf->url.uri.data[0] != '/') {

        /* "host?query" */

        p = ngx_pnalloc(cf->pool, conf->url.uri.len + 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        *p = '/';
        ngx_memcpy(p + 1, conf->url.uri.data, conf->url.uri.len);

        conf->uri.data = p;
        conf->uri.len = conf->url.uri.len + 1;

    } else {
        conf->uri = conf->url.uri;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_voice_upstream_ssl(ngx_conf_t *cf,
    ngx_http_voice_upstream_conf_t *conf, ngx_str_t *trusted)
{
#if (NGX_HTTP_SSL)
    ngx_ssl_t           *ssl;
    ngx_str_t            ciphers;
    ngx_pool_cleanup_t  *cln;

    if (!conf->ssl) {
        return NGX_OK;
    }

    ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (ssl == NULL) {
        return NGX_ERROR;
    }

    ssl->log = cf->log;

    if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ssl;

    conf->ssl_ctx = ssl;

    ngx_str_set(&ciphers, "DEFAULT");

    if (ngx_ssl_ciphers(cf, ssl, &ciphers, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!conf->ssl_verify) {
        return NGX_OK;
    }

    /*
     * The verify mode stays SSL_VERIFY_NONE, as in nginx's proxy: the
     * chain is still checked during the handshake, and its result and
     * the host name are checked once it is done, so that a failure is
     * logged with the reason instead of a bare handshake alert.
     */

    if (trusted != NULL && trusted->len) {
        return ngx_ssl_trusted_certificate(cf, ssl, trusted, 4);
    }

    if (SSL_CTX_set_default_verify_paths(ssl->ctx) != 1) {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                      "SSL_CTX_set_default_verify_paths() failed");
        return NGX_ERROR;
    }

    SSL_CTX_set_verify_depth(ssl->ctx, 4);

    return NGX_OK;

#else

    return conf->ssl ? NGX_ERROR : NGX_OK;

#endif
}


ngx_http_voice_upstream_t *
ngx_http_voice_upstream_connect(ngx_http_voice_upstream_conf_t *conf,
    ngx_str_t *target, ngx_str_t *headers,
    ngx_http_voice_upstream_handler_t *handler, void *data, ngx_log_t *log)
{
    ngx_pool_t                     *pool;
    ngx_http_voice_upstream_t      *u;
    ngx_http_voice_upstream_ctx_t  *ctx;

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NULL;
    }

    ctx = ngx_pcalloc(pool, sizeof(ngx_http_voice_upstream_ctx_t));
    if (ctx == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    /*
     * The owner's log may go with the owner; a copy keeps its settings
     * and connection number, and names the provider instead.
     */

    ctx->log = *log;
    ctx->log.handler = ngx_http_voice_upstream_log_error;
    ctx->log.data = ctx;
    ctx->log.action = "connecting to the provider";
    pool->log = &ctx->log;

    u = &ctx->u;
    u->data = data;
    u->log = &ctx->log;
    u->pool = pool;
    u->conf = conf;
    u->handler = handler;
    u->ctx = ctx;

    ngx_http_voice_ring_init(&ctx->out,
                             conf->send_buffer
                             + 2 * NGX_HTTP_VOICE_UPSTREAM_CONTROL);
    ngx_http_voice_ring_init(&ctx->message,
                             conf->max_message
                             ? conf->max_message
                             : NGX_HTTP_VOICE_UPSTREAM_MESSAGE);
    ngx_http_voice_ws_parser_init(&ctx->parser, 0, 0, conf->max_message);

    ctx->timer.handler = ngx_http_voice_upstream_timeout;
    ctx->timer.data = ctx;
    ctx->timer.log = &ctx->log;
    ctx->timer.cancelable = 1;

    if (ngx_http_voice_upstream_request(ctx, target, headers) != NGX_OK) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream %p: connecting to %V%V",
                   u, &conf->host, target ? target : &conf->uri);

    /* no callback may run before the owner has the upstream */

    ctx->starting = 1;

    ngx_add_timer(&ctx->timer, conf->connect_timeout);

    ngx_http_voice_upstream_connect_peer(ctx);

    ctx->starting = 0;

    return u;
}


ngx_int_t
ngx_http_voice_upstream_send(ngx_http_voice_upstream_t *u,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    size_t                          size;
    ngx_int_t                       rc;
    ngx_http_voice_upstream_ctx_t  *ctx;

    ctx = u->ctx;

    if (ctx->gone || ctx->close_sent || ctx->broken || ctx->failure
        || ctx->state > ngx_http_voice_upstream_open)
    {
        return NGX_ERROR;
    }

    size = len + 2 + 4 + (len < 126 ? 0 : (len <= 0xffff ? 2 : 8));

    if (size > u->conf->send_buffer
        || ctx->out.used > u->conf->send_buffer - size)
    {
        return NGX_DECLINED;
    }

    rc = ngx_http_voice_upstream_frame(ctx, opcode, data, len);

    if (rc != NGX_OK) {
        /* out of memory: the write handler reports it */
        ctx->broken = 1;
        ngx_http_voice_upstream_post_write(ctx);
        return NGX_ERROR;
    }

    ngx_http_voice_upstream_post_write(ctx);

    return NGX_OK;
}


size_t
ngx_http_voice_upstream_queued(ngx_http_voice_upstream_t *u)
{
    ngx_http_voice_upstream_ctx_t  *ctx;

    ctx = u->ctx;

    return ctx->out.used;
}


void
ngx_http_voice_upstream_close(ngx_http_voice_upstream_t *u, ngx_uint_t code)
{
    ngx_http_voice_upstream_ctx_t  *ctx;

    ctx = u->ctx;

    if (ctx->gone) {
        return;
    }

    ctx->gone = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream %p: closed by its owner, code %ui",
                   u, code);

    if (ctx->paused) {
        /* the close handshake reads again: their close frame may wait */
        ctx->paused = 0;

        if (ctx->peer.connection
            && ctx->state >= ngx_http_voice_upstream_open)
        {
            ngx_post_event(ctx->peer.connection->read, &ngx_posted_events);
        }
    }

    /*
     * A worker that is quitting does not wait for the provider's reply:
     * nothing would keep it alive, and the socket would be left open.
     */

    if (ctx->state == ngx_http_voice_upstream_open
        && code != 0
        && !ngx_exiting && !ngx_terminate && !ngx_quit
        && !ctx->broken
        && !ctx->close_sent
        && ngx_http_voice_upstream_close_frame(ctx, code) == NGX_OK)
    {
        ctx->state = ngx_http_voice_upstream_closing;
        ctx->log.action = "closing the provider stream";

        /* a worker that starts quitting now waits for this one */
        ctx->timer.cancelable = 0;
        ngx_add_timer(&ctx->timer, u->conf->close_timeout);

        ngx_http_voice_upstream_post_write(ctx);

        return;
    }

    ngx_http_voice_upstream_finish(ctx);
}


void
ngx_http_voice_upstream_pause(ngx_http_voice_upstream_t *u, ngx_uint_t pause)
{
    ngx_connection_t               *c;
    ngx_http_voice_upstream_ctx_t  *ctx;

    ctx = u->ctx;

    if (ctx->gone || (ngx_uint_t) ctx->paused == (pause ? 1 : 0)) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream %p: %s", u, pause ? "paused" : "resumed");

    ctx->paused = pause ? 1 : 0;

    c = ctx->peer.connection;

    if (pause || c == NULL || ctx->state < ngx_http_voice_upstream_open) {
        /* the read handler stops at its next turn */
        return;
    }

    /*
     * Events are edge-triggered: what arrived while paused, in the kernel
     * or in the TLS layer, raises no new event.  Read it from the loop,
     * never from inside the owner's call.
     */

    ngx_post_event(c->read, &ngx_posted_events);
}


ngx_msec_t
ngx_http_voice_upstream_backoff(ngx_uint_t attempt)
{
    if (attempt < 3) {
        return 100 << attempt;                   /* 100, 200, 400 ms */
    }

    if (attempt < 6) {
        return 1000 << (attempt - 3);            /* 1, 2, 4 s */
    }

    return 5000;
}


static u_char *
ngx_http_voice_upstream_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                         *p;
    ngx_http_voice_upstream_ctx_t  *ctx;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(buf, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    ctx = log->data;

    /* the host only: the query and the headers may hold secrets */

    p = ngx_snprintf(buf, len, ", provider: %V", &ctx->u.conf->host);
    len -= p - buf;
    buf = p;

    if (ctx->peer.name) {
        p = ngx_snprintf(buf, len, " (%V)", ctx->peer.name);
    }

    return p;
}


static ngx_int_t
ngx_http_voice_upstream_request(ngx_http_voice_upstream_ctx_t *ctx,
    ngx_str_t *target, ngx_str_t *headers)
{
    u_char                          *p, random[16], key[24], digest[20];
    ngx_str_t                        src, dst, acc, host, empty;
    ngx_sha1_t                       sha1;
    ngx_http_voice_upstream_conf_t  *conf;

    conf = ctx->u.conf;

    if (RAND_bytes(random, 16) != 1) {
        ngx_log_error(NGX_LOG_ALERT, &ctx->log, 0, "RAND_bytes() failed");
        return NGX_ERROR;
    }

    src.data = random;
    src.len = 16;
    dst.data = key;
    ngx_encode_base64(&dst, &src);

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, dst.data, dst.len);
    ngx_sha1_update(&sha1, NGX_HTTP_VOICE_WS_GUID,
                    sizeof(NGX_HTTP_VOICE_WS_GUID) - 1);
    ngx_sha1_final(digest, &sha1);

    src.data = digest;
    src.len = 20;
    acc.data = ctx->accept;
    ngx_encode_base64(&acc, &src);

    /* the Host header names the port unless it is the scheme's */

    if (conf->url.port != conf->url.default_port) {
        host.data = ngx_pnalloc(ctx->u.pool,
                                conf->host.len + NGX_INT_T_LEN + 1);
        if (host.data == NULL) {
            return NGX_ERROR;
        }

        host.len = ngx_sprintf(host.data, "%V:%d", &conf->host,
                               (int) conf->url.port)
                   - host.data;

    } else {
        host = conf->host;
    }

    if (target == NULL) {
        target = &conf->uri;
    }

    if (headers == NULL) {
        ngx_str_null(&empty);
        headers = &empty;
    }

    ctx->request.len = ngx_http_voice_ws_request_size(target, &host,
                                                      headers);

    ctx->request.data = ngx_pnalloc(ctx->u.pool, ctx->request.len);
    if (ctx->request.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_http_voice_ws_request(ctx->request.data, target, &host, &dst,
                                  headers);

    ctx->request.len = p - ctx->request.data;

    return NGX_OK;
}


static void
ngx_http_voice_upstream_connect_peer(ngx_http_voice_upstream_ctx_t *ctx)
{
    ngx_int_t                        rc;
    ngx_addr_t                      *addr;
    ngx_connection_t                *c;
    ngx_http_voice_upstream_conf_t  *conf;

    conf = ctx->u.conf;

    for ( ;; ) {

        if (ctx->addr >= conf->url.naddrs) {
            ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                          "could not connect to the provider");
            ngx_http_voice_upstream_fail(ctx, "connect failed");
            return;
        }

        addr = &conf->url.addrs[ctx->addr++];

        ngx_memzero(&ctx->peer, sizeof(ngx_peer_connection_t));

        ctx->peer.sockaddr = addr->sockaddr;
        ctx->peer.socklen = addr->socklen;
        ctx->peer.name = &addr->name;
        ctx->peer.get = ngx_event_get_peer;
        ctx->peer.log = &ctx->log;
        ctx->peer.log_error = NGX_ERROR_INFO;

        ctx->state = ngx_http_voice_upstream_connecting;
        ctx->log.action = "connecting to the provider";

        rc = ngx_event_connect_peer(&ctx->peer);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                       "voice upstream connect to %V: %i", &addr->name, rc);

        if (rc != NGX_OK && rc != NGX_AGAIN) {
            /* the connection, if any, is closed already: try the next */
            ctx->peer.connection = NULL;
            continue;
        }

        c = ctx->peer.connection;

        c->data = ctx;
        c->pool = ctx->u.pool;
        c->read->handler = ngx_http_voice_upstream_read_handler;
        c->write->handler = ngx_http_voice_upstream_write_handler;

        if (rc == NGX_OK) {
            /* connected at once: go on from the event loop */
            ngx_post_event(c->write, &ngx_posted_events);
        }

        return;
    }
}


static void
ngx_http_voice_upstream_connected(ngx_http_voice_upstream_ctx_t *ctx)
{
    ngx_err_t          err;
    ngx_connection_t  *c;

    c = ctx->peer.connection;

    err = ngx_http_voice_upstream_test_connect(c);

    if (err) {
        ngx_log_error(NGX_LOG_WARN, &ctx->log, err,
                      "connect() to the provider failed");

        ngx_close_connection(c);
        ctx->peer.connection = NULL;

        ngx_http_voice_upstream_connect_peer(ctx);
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream connected");

#if (NGX_HTTP_SSL)
    if (ctx->u.conf->ssl) {
        ngx_http_voice_upstream_ssl_init(ctx);
        return;
    }
#endif

    ngx_http_voice_upstream_upgrade(ctx);
}


static ngx_err_t
ngx_http_voice_upstream_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

#if (NGX_HAVE_KQUEUE)

    if (ngx_event_flags & NGX_USE_KQUEUE_EVENT)  {
        if (c->write->pending_eof) {
            return c->write->kq_errno ? c->write->kq_errno : NGX_ECONNRESET;
        }

        if (c->read->pending_eof) {
            return c->read->kq_errno ? c->read->kq_errno : NGX_ECONNRESET;
        }

        return 0;
    }

#endif

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    return err;
}


#if (NGX_HTTP_SSL)

static void
ngx_http_voice_upstream_ssl_init(ngx_http_voice_upstream_ctx_t *ctx)
{
    u_char                          *name;
    ngx_int_t                        rc;
    ngx_connection_t                *c;
    ngx_http_voice_upstream_conf_t  *conf;

    c = ctx->peer.connection;
    conf = ctx->u.conf;

    ctx->state = ngx_http_voice_upstream_handshaking;
    ctx->log.action = "TLS handshaking with the provider";

    if (ngx_ssl_create_connection(conf->ssl_ctx, c, NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_voice_upstream_fail(ctx, "TLS setup failed");
        return;
    }

    /* SNI names hosts, never addresses */

    if (conf->host.data[0] != '['
        && ngx_inet_addr(conf->host.data, conf->host.len) == INADDR_NONE)
    {
        name = ngx_pnalloc(ctx->u.pool, conf->host.len + 1);
        if (name == NULL) {
            ngx_http_voice_upstream_fail(ctx, "out of memory");
            return;
        }

        (void) ngx_cpystrn(name, conf->host.data, conf->host.len + 1);

        if (SSL_set_tlsext_host_name(c->ssl->connection, (char *) name)
            != 1)
        {
            ngx_ssl_error(NGX_LOG_WARN, &ctx->log, 0,
                          "SSL_set_tlsext_host_name(\"%s\") failed", name);
            ngx_http_voice_upstream_fail(ctx, "TLS setup failed");
            return;
        }
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_voice_upstream_ssl_handshaked;
        return;
    }

    ngx_http_voice_upstream_ssl_handshaked(c);
}


static void
ngx_http_voice_upstream_ssl_handshaked(ngx_connection_t *c)
{
    long                             rc;
    ngx_http_voice_upstream_ctx_t   *ctx;
    ngx_http_voice_upstream_conf_t  *conf;

    ctx = c->data;
    conf = ctx->u.conf;

    if (!c->ssl->handshaked) {
        ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                      "TLS handshake with the provider failed");
        c->error = 1;
        ngx_http_voice_upstream_fail(ctx, "TLS handshake failed");
        return;
    }

    if (conf->ssl_verify) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                          "provider certificate verify error: (%l:%s)",
                          rc, X509_verify_cert_error_string(rc));
            c->error = 1;
            ngx_http_voice_upstream_fail(ctx, "certificate verify failed");
            return;
        }

        if (ngx_http_voice_upstream_check_host(c, &conf->host) != NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                          "provider certificate does not match \"%V\"",
                          &conf->host);
            c->error = 1;
            ngx_http_voice_upstream_fail(ctx,
                                    "certificate does not match the host");
            return;
        }
    }

    c->read->handler = ngx_http_voice_upstream_read_handler;
    c->write->handler = ngx_http_voice_upstream_write_handler;

    ngx_http_voice_upstream_upgrade(ctx);
}


/*
 * A name is checked as nginx checks it; an address literal must be one of
 * the certificate's IP addresses (a name check would never match it).
 */

static ngx_int_t
ngx_http_voice_upstream_check_host(ngx_connection_t *c, ngx_str_t *host)
{
    u_char     ip[NGX_SOCKADDR_STRLEN + 1];
    int        rc;
    size_t     len;
    X509      *cert;

    len = host->len;

    if (len && host->data[0] == '[' && host->data[len - 1] == ']') {
        (void) ngx_cpystrn(ip, host->data + 1, ngx_min(len - 1, sizeof(ip)));

    } else if (ngx_inet_addr(host->data, len) != INADDR_NONE
               && len < sizeof(ip))
    {
        (void) ngx_cpystrn(ip, host->data, len + 1);

    } else {
        return ngx_ssl_check_host(c, host);
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);
    if (cert == NULL) {
        return NGX_ERROR;
    }

    rc = X509_check_ip_asc(cert, (char *) ip, 0);

    X509_free(cert);

    return (rc == 1) ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_voice_upstream_ssl_closed(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

    pool = c->pool;

    ngx_close_connection(c);
    ngx_destroy_pool(pool);
}

#endif


static void
ngx_http_voice_upstream_upgrade(ngx_http_voice_upstream_ctx_t *ctx)
{
    ctx->state = ngx_http_voice_upstream_upgrading;
    ctx->log.action = "upgrading the provider connection";

    ctx->head = ngx_pnalloc(ctx->u.pool, NGX_HTTP_VOICE_UPSTREAM_HEAD);
    if (ctx->head == NULL) {
        ngx_http_voice_upstream_fail(ctx, "out of memory");
        return;
    }

    ngx_http_voice_upstream_send_request(ctx);
}


static void
ngx_http_voice_upstream_send_request(ngx_http_voice_upstream_ctx_t *ctx)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = ctx->peer.connection;

    while (ctx->sent < ctx->request.len) {

        n = c->send(c, ctx->request.data + ctx->sent,
                    ctx->request.len - ctx->sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_voice_upstream_fail(ctx, "event error");
            }

            return;
        }

        if (n == NGX_ERROR) {
            c->error = 1;
            ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                          "provider connection failed while sending "
                          "the upgrade request");
            ngx_http_voice_upstream_fail(ctx, "connection reset");
            return;
        }

        ctx->sent += n;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream upgrade request sent: %uz bytes",
                   ctx->request.len);

    if (c->read->ready) {
        ngx_http_voice_upstream_read_head(ctx);
    }
}


static void
ngx_http_voice_upstream_read_head(ngx_http_voice_upstream_ctx_t *ctx)
{
    ssize_t                        n;
    ngx_int_t                      rc;
    ngx_str_t                      accept;
    ngx_connection_t              *c;
    ngx_http_voice_ws_response_t   r;

    c = ctx->peer.connection;

    accept.data = ctx->accept;
    accept.len = NGX_HTTP_VOICE_WS_ACCEPT_LEN;

    for ( ;; ) {

        if (ctx->head_len == NGX_HTTP_VOICE_UPSTREAM_HEAD) {
            ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                          "provider sent a response head longer than %d "
                          "bytes", NGX_HTTP_VOICE_UPSTREAM_HEAD);
            ngx_http_voice_upstream_fail(ctx, "response head too big");
            return;
        }

        n = c->recv(c, ctx->head + ctx->head_len,
                    NGX_HTTP_VOICE_UPSTREAM_HEAD - ctx->head_len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_http_voice_upstream_fail(ctx, "event error");
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            c->error = 1;
            ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                          "provider closed the connection before "
                          "answering the upgrade");
            ngx_http_voice_upstream_fail(ctx, n ? "connection reset"
                                                : "connection closed");
            return;
        }

        ctx->head_len += n;

        rc = ngx_http_voice_ws_response(&r, ctx->head, ctx->head_len,
                                        &accept);

        switch (rc) {

        case NGX_AGAIN:
            continue;

        case NGX_DECLINED:
            ctx->end.status = r.status;
            ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                          "provider refused the upgrade with status %ui",
                          r.status);
            ngx_http_voice_upstream_fail(ctx, "upgrade refused");
            return;

        case NGX_OK:
            ngx_http_voice_upstream_opened(ctx, ctx->head + r.head_len,
                                           ctx->head + ctx->head_len);
            return;

        default: /* NGX_ERROR */
            ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                          "provider sent an invalid upgrade response: %s",
                          r.error);
            ngx_http_voice_upstream_fail(ctx, r.error);
            return;
        }
    }
}


static void
ngx_http_voice_upstream_opened(ngx_http_voice_upstream_ctx_t *ctx,
    u_char *pos, u_char *last)
{
    ngx_http_voice_upstream_t  *u;

    u = &ctx->u;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream %p: open", u);

    ctx->state = ngx_http_voice_upstream_open;
    ctx->log.action = "streaming with the provider";
    ctx->end.opened = 1;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    ctx->buffer = ngx_pnalloc(u->pool, NGX_HTTP_VOICE_UPSTREAM_READ);
    if (ctx->buffer == NULL) {
        ngx_http_voice_upstream_fail(ctx, "out of memory");
        return;
    }

    if (ctx->broken) {
        ngx_http_voice_upstream_fail(ctx, "out of memory");
        return;
    }

    /* frames the owner queued while the upgrade went on */

    if (ctx->out.used) {
        ngx_http_voice_upstream_post_write(ctx);
    }

    ctx->busy++;
    u->handler->open(u);
    ctx->busy--;

    if (ctx->done) {
        ngx_http_voice_upstream_finish(ctx);
        return;
    }

    /* frames that came with the head (the head buffer stays) */

    if (pos < last) {
        ctx->pending = pos;
        ctx->pending_last = last;
    }

    ngx_http_voice_upstream_read_frames(ctx);
}


static void
ngx_http_voice_upstream_read_handler(ngx_event_t *rev)
{
    ngx_connection_t               *c;
    ngx_http_voice_upstream_ctx_t  *ctx;

    c = rev->data;
    ctx = c->data;

    switch (ctx->state) {

    case ngx_http_voice_upstream_connecting:
        ngx_http_voice_upstream_connected(ctx);
        return;

    case ngx_http_voice_upstream_handshaking:
        return;

    case ngx_http_voice_upstream_upgrading:
        ngx_http_voice_upstream_read_head(ctx);
        return;

    default:
        ngx_http_voice_upstream_read_frames(ctx);
        return;
    }
}


static void
ngx_http_voice_upstream_write_handler(ngx_event_t *wev)
{
    ngx_connection_t               *c;
    ngx_http_voice_upstream_ctx_t  *ctx;

    c = wev->data;
    ctx = c->data;

    switch (ctx->state) {

    case ngx_http_voice_upstream_connecting:
        ngx_http_voice_upstream_connected(ctx);
        return;

    case ngx_http_voice_upstream_handshaking:
        return;

    case ngx_http_voice_upstream_upgrading:
        if (ctx->sent < ctx->request.len) {
            ngx_http_voice_upstream_send_request(ctx);
        }

        return;

    default:
        break;
    }

    if (wev->timedout) {
        c->timedout = 1;

        if (ctx->gone) {
            ngx_http_voice_upstream_finish(ctx);
            return;
        }

        ngx_log_error(NGX_LOG_WARN, &ctx->log, NGX_ETIMEDOUT,
                      "provider stopped reading");
        ctx->end.timedout = 1;
        ngx_http_voice_upstream_fail(ctx, "send timed out");
        return;
    }

    if (ctx->broken) {
        ngx_http_voice_upstream_fail(ctx, "out of memory");
        return;
    }

    ngx_http_voice_upstream_flush(ctx);
}


static void
ngx_http_voice_upstream_timeout(ngx_event_t *ev)
{
    const char                     *reason;
    ngx_connection_t               *c;
    ngx_http_voice_upstream_ctx_t  *ctx;

    ctx = ev->data;

    if (ctx->failure) {
        /* a failure found while connect() ran */
        reason = ctx->failure;
        ctx->failure = NULL;
        ngx_http_voice_upstream_fail(ctx, reason);
        return;
    }

    c = ctx->peer.connection;

    if (c) {
        c->timedout = 1;
    }

    switch (ctx->state) {

    case ngx_http_voice_upstream_connecting:
    case ngx_http_voice_upstream_handshaking:
    case ngx_http_voice_upstream_upgrading:
        ngx_log_error(NGX_LOG_WARN, &ctx->log, NGX_ETIMEDOUT,
                      "provider did not answer in time");
        ctx->end.timedout = 1;
        ngx_http_voice_upstream_fail(ctx,
                           ctx->state == ngx_http_voice_upstream_connecting
                           ? "connect timed out"
                           : (ctx->state
                              == ngx_http_voice_upstream_handshaking)
                             ? "TLS handshake timed out"
                             : "upgrade timed out");
        return;

    default:
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                       "voice upstream close handshake timed out");
        ngx_http_voice_upstream_finish(ctx);
        return;
    }
}


static void
ngx_http_voice_upstream_read_frames(ngx_http_voice_upstream_ctx_t *ctx)
{
    u_char            *pos, *last;
    ssize_t            n;
    ngx_connection_t  *c;

    c = ctx->peer.connection;

    for ( ;; ) {

        if (ctx->paused && !ctx->gone) {

            /* level-triggered events would fire on and on meanwhile */

            if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && c->read->active) {
                if (ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
                    c->error = 1;
                    ngx_http_voice_upstream_fail(ctx, "event error");
                }
            }

            /* pause(u, 0) posts the read event */
            return;
        }

        if (ctx->pending) {
            pos = ctx->pending;
            last = ctx->pending_last;
            ctx->pending = NULL;

            if (ngx_http_voice_upstream_process(ctx, pos, last) != NGX_OK) {
                return;
            }

            continue;
        }

        n = c->recv(c, ctx->buffer, NGX_HTTP_VOICE_UPSTREAM_READ);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                c->error = 1;
                ngx_http_voice_upstream_fail(ctx, "event error");
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {

            if (ctx->state != ngx_http_voice_upstream_open || ctx->gone) {
                /* the close handshake is over as far as it matters */
                ngx_http_voice_upstream_finish(ctx);
                return;
            }

            c->error = 1;

            ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                          n ? "provider connection reset"
                            : "provider closed the connection without "
                              "a close frame");

            ngx_http_voice_upstream_fail(ctx, n ? "connection reset"
                                                : "connection closed "
                                                  "without a close frame");
            return;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                       "voice upstream read: %z", n);

        if (ctx->state == ngx_http_voice_upstream_lingering) {
            /* our last close frame is on its way: nothing matters now */
            continue;
        }

        if (ngx_http_voice_upstream_process(ctx, ctx->buffer,
                                            ctx->buffer + n)
            != NGX_OK)
        {
            return;
        }
    }
}


/*
 * NGX_OK: go on reading; NGX_DONE: stop, the upstream may be gone;
 * NGX_AGAIN: the owner paused, the rest is kept in ctx->pending.
 */

static ngx_int_t
ngx_http_voice_upstream_process(ngx_http_voice_upstream_ctx_t *ctx,
    u_char *pos, u_char *last)
{
    u_char                     *p;
    size_t                      n;
    ngx_int_t                   rc;
    ngx_http_voice_ws_chunk_t   ch;

    for ( ;; ) {

        rc = ngx_http_voice_ws_parse(&ctx->parser, &pos, last, &ch);

        if (rc == NGX_AGAIN) {
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            ngx_http_voice_upstream_bad_frame(ctx);
            return NGX_DONE;
        }

        switch (ch.opcode) {

        case NGX_HTTP_VOICE_WS_PING:

            /*
             * A pong may be dropped when the provider does not read
             * (only the latest ping needs one); the room kept for our
             * close frame is never used for it.
             */

            if (!ctx->close_sent
                && ctx->out.used + NGX_HTTP_VOICE_UPSTREAM_CONTROL
                   <= ctx->u.conf->send_buffer
                      + NGX_HTTP_VOICE_UPSTREAM_CONTROL
                && ngx_http_voice_upstream_frame(ctx, NGX_HTTP_VOICE_WS_PONG,
                                                 ch.data, ch.len)
                   == NGX_OK)
            {
                ngx_http_voice_upstream_post_write(ctx);
            }

            continue;

        case NGX_HTTP_VOICE_WS_PONG:
            continue;

        case NGX_HTTP_VOICE_WS_CLOSE:
            ngx_http_voice_upstream_peer_closed(ctx, ch.data, ch.len);
            return NGX_DONE;

        default:
            break;
        }

        if (ctx->gone) {
            /* closing: nobody listens */
            continue;
        }

        if (ch.first && ch.last) {
            /* whole in this read: no copy */

            if (ngx_http_voice_upstream_deliver(ctx, ch.opcode, ch.data,
                                                ch.len)
                != NGX_OK)
            {
                return NGX_DONE;
            }

            if (ctx->paused && !ctx->gone) {
                goto paused;
            }

            continue;
        }

        if (ch.first) {
            ctx->opcode = ch.opcode;
        }

        if (ngx_http_voice_ring_write(&ctx->message, ch.data, ch.len)
            != NGX_OK)
        {
            /* only past the bound when max_message is 0 */
            ctx->parser.close_code = NGX_HTTP_VOICE_WS_TOO_BIG;
            ctx->parser.error = "message too big";
            ngx_http_voice_upstream_bad_frame(ctx);
            return NGX_DONE;
        }

        if (!ch.last) {
            continue;
        }

        /* an emptied ring restarts at 0: the message is contiguous */

        n = ngx_http_voice_ring_span(&ctx->message, &p);

        if (ngx_http_voice_upstream_deliver(ctx, ctx->opcode, p, n)
            != NGX_OK)
        {
            return NGX_DONE;
        }

        ngx_http_voice_ring_consume(&ctx->message, n);

        if (ctx->paused && !ctx->gone) {
            goto paused;
        }
    }

paused:

    /* the read buffer is not reused until this is processed */

    if (pos < last) {
        ctx->pending = pos;
        ctx->pending_last = last;
    }

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_voice_upstream_deliver(ngx_http_voice_upstream_ctx_t *ctx,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream message: opcode %ui, %uz bytes",
                   opcode, len);

    ctx->busy++;
    ctx->u.handler->message(&ctx->u, opcode, data, len);
    ctx->busy--;

    if (ctx->done) {
        ngx_http_voice_upstream_finish(ctx);
        return NGX_DONE;
    }

    return NGX_OK;
}


static void
ngx_http_voice_upstream_peer_closed(ngx_http_voice_upstream_ctx_t *ctx,
    u_char *data, size_t len)
{
    ngx_uint_t  code;

    /* the parser has checked the payload */

    (void) ngx_http_voice_ws_close_check(data, len, &code);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream close frame: %ui", code);

    if (ctx->close_sent) {
        /* the answer to ours */
        ngx_http_voice_upstream_finish(ctx);
        return;
    }

    /* answer with their code, or with no code when they gave none */

    if (ngx_http_voice_upstream_close_frame(ctx,
                              code == NGX_HTTP_VOICE_WS_NO_STATUS ? 0 : code)
        != NGX_OK)
    {
        ctx->peer.connection->error = 1;
        ngx_http_voice_upstream_fail(ctx, "out of memory");
        return;
    }

    ctx->state = ngx_http_voice_upstream_lingering;

    ngx_add_timer(&ctx->timer, ctx->u.conf->close_timeout);

    ngx_http_voice_upstream_post_write(ctx);

    if (ctx->gone) {
        return;
    }

    ctx->end.code = code;

    if (len > 2) {
        ctx->end.reason.data = ngx_pnalloc(ctx->u.pool, len - 2);

        if (ctx->end.reason.data) {
            ngx_memcpy(ctx->end.reason.data, data + 2, len - 2);
            ctx->end.reason.len = len - 2;
        }
    }

    if (code == NGX_HTTP_VOICE_WS_NORMAL) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                       "voice upstream closed by the provider");

    } else {
        ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                      "provider closed the stream with %ui \"%V\"",
                      code, &ctx->end.reason);
    }

    ctx->log.action = "closing the provider stream";

    ngx_http_voice_upstream_report(ctx);
}


static void
ngx_http_voice_upstream_bad_frame(ngx_http_voice_upstream_ctx_t *ctx)
{
    const char  *reason;

    reason = ctx->parser.error;

    if (ctx->gone) {
        ngx_http_voice_upstream_finish(ctx);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                  "provider broke the WebSocket protocol: %s", reason);

    if (ngx_http_voice_upstream_close_frame(ctx, ctx->parser.close_code)
        != NGX_OK)
    {
        ctx->peer.connection->error = 1;
        ngx_http_voice_upstream_fail(ctx, reason);
        return;
    }

    /* no answer is awaited: the socket closes once our frame is out */

    ctx->state = ngx_http_voice_upstream_lingering;
    ctx->log.action = "closing the provider stream";

    ngx_add_timer(&ctx->timer, ctx->u.conf->close_timeout);

    ngx_http_voice_upstream_post_write(ctx);

    ngx_http_voice_upstream_set_reason(ctx, reason);

    ngx_http_voice_upstream_report(ctx);
}


static void
ngx_http_voice_upstream_flush(ngx_http_voice_upstream_ctx_t *ctx)
{
    u_char            *p;
    size_t             size;
    ssize_t            n;
    ngx_uint_t         progress;
    ngx_connection_t  *c;

    c = ctx->peer.connection;
    progress = 0;

    while (ctx->out.used) {

        size = ngx_http_voice_ring_span(&ctx->out, &p);

        n = c->send(c, p, size);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            c->error = 1;

            if (ctx->gone) {
                ngx_http_voice_upstream_finish(ctx);
                return;
            }

            ngx_log_error(NGX_LOG_WARN, &ctx->log, 0,
                          "provider connection failed while sending");
            ngx_http_voice_upstream_fail(ctx, "connection reset");
            return;
        }

        ngx_http_voice_ring_consume(&ctx->out, n);
        progress = 1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream flushed, %uz queued, progress %ui",
                   ctx->out.used, progress);

    if (ctx->out.used) {

        if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
            c->error = 1;
            ngx_http_voice_upstream_fail(ctx, "event error");
            return;
        }

        if (progress || !c->write->timer_set) {
            ngx_add_timer(c->write, NGX_HTTP_VOICE_UPSTREAM_SEND_TIMEOUT);
        }

        return;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (ctx->state == ngx_http_voice_upstream_lingering) {
        ngx_http_voice_upstream_finish(ctx);
    }
}


/*
 * Appends one masked frame to the output queue, whole or not at all:
 * NGX_OK, NGX_DECLINED (no room) or NGX_ERROR.
 */

static ngx_int_t
ngx_http_voice_upstream_frame(ngx_http_voice_upstream_ctx_t *ctx,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    u_char     mask[4], header[NGX_HTTP_VOICE_WS_MAX_HEADER], chunk[1024];
    size_t     n, off, hlen;
    ngx_int_t  rc;

    if (RAND_bytes(mask, 4) != 1) {
        ngx_log_error(NGX_LOG_ALERT, &ctx->log, 0, "RAND_bytes() failed");
        return NGX_ERROR;
    }

    hlen = ngx_http_voice_ws_header(header, opcode, 1, len, mask);

    rc = ngx_http_voice_ring_reserve(&ctx->out, hlen + len);
    if (rc != NGX_OK) {
        return rc;
    }

    (void) ngx_http_voice_ring_write(&ctx->out, header, hlen);

    /* the owner's bytes stay as they are: mask a copy, piece by piece */

    for (off = 0; off < len; off += n) {
        n = ngx_min(len - off, sizeof(chunk));

        ngx_memcpy(chunk, data + off, n);
        ngx_http_voice_ws_mask(chunk, n, mask, off);

        (void) ngx_http_voice_ring_write(&ctx->out, chunk, n);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_upstream_close_frame(ngx_http_voice_upstream_ctx_t *ctx,
    ngx_uint_t code)
{
    u_char  payload[2];

    ctx->close_sent = 1;

    if (code == 0) {
        return ngx_http_voice_upstream_frame(ctx, NGX_HTTP_VOICE_WS_CLOSE,
                                             payload, 0);
    }

    payload[0] = (u_char) (code >> 8);
    payload[1] = (u_char) code;

    return ngx_http_voice_upstream_frame(ctx, NGX_HTTP_VOICE_WS_CLOSE,
                                         payload, 2);
}


static void
ngx_http_voice_upstream_post_write(ngx_http_voice_upstream_ctx_t *ctx)
{
    ngx_connection_t  *c;

    c = ctx->peer.connection;

    /* writes wait for the upgrade; sends are batched per loop turn */

    if (c == NULL || ctx->state < ngx_http_voice_upstream_open) {
        return;
    }

    ngx_post_event(c->write, &ngx_posted_events);
}


static void
ngx_http_voice_upstream_fail(ngx_http_voice_upstream_ctx_t *ctx,
    const char *reason)
{
    if (ctx->starting) {
        /* the owner does not have the upstream yet: report it later */
        ctx->failure = reason;
        ngx_post_event(&ctx->timer, &ngx_posted_events);
        return;
    }

    if (ctx->peer.connection) {
        ctx->peer.connection->error = 1;
    }

    if (!ctx->gone) {
        ngx_http_voice_upstream_set_reason(ctx, reason);
        ngx_http_voice_upstream_report(ctx);
    }

    ngx_http_voice_upstream_finish(ctx);
}


static void
ngx_http_voice_upstream_report(ngx_http_voice_upstream_ctx_t *ctx)
{
    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream %p: closed, status %ui, code %ui, "
                   "timedout %ui, \"%V\"", &ctx->u, ctx->end.status,
                   ctx->end.code, (ngx_uint_t) ctx->end.timedout,
                   &ctx->end.reason);

    /* after "closed" the owner's close and send are no-ops */

    ctx->gone = 1;

    ctx->busy++;
    ctx->u.handler->closed(&ctx->u, &ctx->end);
    ctx->busy--;
}


/* ends the stream now, or as soon as no callback is running */

static void
ngx_http_voice_upstream_finish(ngx_http_voice_upstream_ctx_t *ctx)
{
    if (ctx->busy) {
        ctx->done = 1;
        return;
    }

    if (ctx->finished) {
        return;
    }

    ctx->finished = 1;

    ngx_http_voice_upstream_free(ctx);
}


static void
ngx_http_voice_upstream_free(ngx_http_voice_upstream_ctx_t *ctx)
{
    ngx_connection_t  *c;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &ctx->log, 0,
                   "voice upstream %p: free", &ctx->u);

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (ctx->timer.posted) {
        ngx_delete_posted_event(&ctx->timer);
    }

    ngx_http_voice_ring_free(&ctx->out);
    ngx_http_voice_ring_free(&ctx->message);

    c = ctx->peer.connection;
    ctx->peer.connection = NULL;

    if (c) {

#if (NGX_HTTP_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;

            if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
                /* the pool holds the TLS state and the log until then */
                c->ssl->handler = ngx_http_voice_upstream_ssl_closed;
                return;
            }
        }
#endif

        ngx_close_connection(c);
    }

    ngx_destroy_pool(ctx->u.pool);
}
