
/*
 * Streams to providers over raw non-blocking sockets: TCP from the
 * worker's event loop, TLS through nginx's OpenSSL layer, and a WebSocket
 * client on the same frame code as the server side.
 *
 * An upstream has its own pool: it may outlive its owner for the few
 * moments a close handshake takes, and it frees itself.
 */


#ifndef _NGX_HTTP_VOICE_UPSTREAM_H_INCLUDED_
#define _NGX_HTTP_VOICE_UPSTREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>


/* where a provider lives: set at configuration time */
typedef struct {
    ngx_url_t                    url;          /* addresses resolved here */
    ngx_str_t                    host;         /* Host header, SNI, check */
    ngx_str_t                    uri;          /* path, maybe ?query */
    ngx_uint_t                   ssl;          /* wss:// or https:// */
#if (NGX_HTTP_SSL)
    ngx_ssl_t                   *ssl_ctx;      /* NULL for ws:// */
#endif
    ngx_flag_t                   ssl_verify;
    ngx_msec_t                   connect_timeout;  /* TCP + TLS + upgrade */
    ngx_msec_t                   close_timeout;    /* their close reply */
    size_t                       send_buffer;  /* bound of queued frames */
    size_t                       max_message;  /* largest message taken */
} ngx_http_voice_upstream_conf_t;


/* why a stream ended, as far as it is known */
typedef struct {
    ngx_uint_t                   status;   /* HTTP status of a refused
                                              upgrade; 0 otherwise */
    ngx_uint_t                   code;     /* their close code; 0: none
                                              (reset, timeout, error) */
    ngx_str_t                    reason;   /* their close reason, or what
                                              went wrong; static or in
                                              the upstream's pool */
    unsigned                     timedout:1;
    unsigned                     opened:1; /* the upgrade had succeeded */
} ngx_http_voice_upstream_end_t;


typedef struct ngx_http_voice_upstream_s  ngx_http_voice_upstream_t;

/*
 * What the owner hears.  Each is called from an event handler; after
 * "closed" the upstream is gone.  The owner may call send or close from
 * inside any of them.
 */
typedef struct {
    void    (*open)(ngx_http_voice_upstream_t *u);
    void    (*message)(ngx_http_voice_upstream_t *u, ngx_uint_t opcode,
                       u_char *data, size_t len);
    void    (*closed)(ngx_http_voice_upstream_t *u,
                      ngx_http_voice_upstream_end_t *end);
} ngx_http_voice_upstream_handler_t;


struct ngx_http_voice_upstream_s {
    void                                *data;     /* the owner's */
    ngx_log_t                           *log;
    ngx_pool_t                          *pool;     /* the upstream's own */
    ngx_http_voice_upstream_conf_t      *conf;
    ngx_http_voice_upstream_handler_t   *handler;
    void                                *ctx;      /* private */
};


/*
 * Parses a ws://, wss://, http:// or https:// URL into conf (resolving
 * the host now, as proxy_pass does without variables).  Returns
 * NGX_CONF_OK or an error message for nginx -t.
 */
char *ngx_http_voice_upstream_parse_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_http_voice_upstream_conf_t *conf);

/*
 * Sets up TLS for conf when its URL needs it: SNI, and verification of
 * the certificate chain and host name against trusted (a CA file) or the
 * system's store when trusted is empty.
 */
ngx_int_t ngx_http_voice_upstream_ssl(ngx_conf_t *cf,
    ngx_http_voice_upstream_conf_t *conf, ngx_str_t *trusted);

/*
 * Starts connecting and upgrading.  target, when not NULL, replaces the
 * configured URI (path and query).  headers are extra request header
 * lines, each ending in CRLF; they may hold secrets and are never logged.
 * Returns NULL when nothing could be started (no callback follows);
 * otherwise open or closed follows.
 */
ngx_http_voice_upstream_t *ngx_http_voice_upstream_connect(
    ngx_http_voice_upstream_conf_t *conf, ngx_str_t *target,
    ngx_str_t *headers, ngx_http_voice_upstream_handler_t *handler,
    void *data, ngx_log_t *log);

/*
 * Queues one masked frame (TEXT or BINARY) and starts sending it.
 * NGX_OK; NGX_DECLINED when it would pass conf->send_buffer (nothing was
 * queued); NGX_ERROR when the stream is broken (closed follows from the
 * event loop, never from inside this call).
 */
ngx_int_t ngx_http_voice_upstream_send(ngx_http_voice_upstream_t *u,
    ngx_uint_t opcode, u_char *data, size_t len);

/*
 * Stops reading from the provider (pause 1) until resumed (pause 0): its
 * messages wait in the kernel, so TCP slows it down.  A message already
 * read may still be delivered.  Resuming delivers what waits, from the
 * event loop.
 */
void ngx_http_voice_upstream_pause(ngx_http_voice_upstream_t *u,
    ngx_uint_t pause);

/* bytes queued and not yet written to the socket */
size_t ngx_http_voice_upstream_queued(ngx_http_voice_upstream_t *u);

/*
 * The owner is done: sends a close frame with code when the stream is
 * open (0: no frame, the socket is just closed), and frees everything
 * once the peer answered or close_timeout passed.  No callback follows.
 */
void ngx_http_voice_upstream_close(ngx_http_voice_upstream_t *u,
    ngx_uint_t code);

/* the delay before reconnect attempt n (0, 1, ...): 100, 200, 400 ms, ... */
ngx_msec_t ngx_http_voice_upstream_backoff(ngx_uint_t attempt);


#endif /* _NGX_HTTP_VOICE_UPSTREAM_H_INCLUDED_ */
