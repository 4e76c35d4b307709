
/*
 * Deepgram live transcription, and any server that speaks its protocol.
 *
 * Audio goes up as binary frames of 16 kHz PCM16 mono.  Every sample stays
 * in a bounded replay ring until a final result covers it, so a stream
 * that breaks can be reopened and fed the unconfirmed audio again without
 * the user noticing.  Positions are absolute byte counts of the session's
 * audio: "in" is what the ring got, "out" what the current connection was
 * sent, and "base" where the current connection's clock starts.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_voice_module.h"
#include "ngx_http_voice_stt.h"
#include "ngx_http_voice_ring.h"
#include "ngx_http_voice_ws.h"


#define NGX_HTTP_VOICE_DG_RATE         16000
#define NGX_HTTP_VOICE_DG_BYTES_PER_S  (NGX_HTTP_VOICE_DG_RATE * 2)
#define NGX_HTTP_VOICE_DG_KEEPALIVE    4000
#define NGX_HTTP_VOICE_DG_FLUSH        20
#define NGX_HTTP_VOICE_DG_FRAME        8192



/* the states of a session's stream, in this order */
#define NGX_HTTP_VOICE_DG_IDLE         0     /* waiting to reconnect */
#define NGX_HTTP_VOICE_DG_CONNECTING   1
#define NGX_HTTP_VOICE_DG_OPEN         2
#define NGX_HTTP_VOICE_DG_FAILED       3     /* gave up; the session ends */
#define NGX_HTTP_VOICE_DG_CLOSED       4


typedef struct {
    ngx_http_voice_stt_t          *stt;
    ngx_http_voice_upstream_t     *u;
    ngx_str_t                      target;     /* path?query */

    ngx_http_voice_ring_t          ring;       /* unconfirmed audio */
    uint64_t                       in;         /* bytes put in the ring */
    uint64_t                       out;        /* sent on this connection */
    uint64_t                       base;       /* its clock starts here */
    uint64_t                       finalize_at;  /* Finalize goes here */
    uint64_t                       lost;       /* dropped before sending */
    uint64_t                       dropped;    /* dropped, all told */

    ngx_event_t                    keepalive;
    ngx_event_t                    stall;      /* Finalize unanswered */
    ngx_event_t                    retry;      /* next connect attempt */
    ngx_event_t                    flush;      /* sends backed up */

    ngx_uint_t                     attempt;    /* failures in a row */
    ngx_uint_t                     connections;
    ngx_uint_t                     state;      /* NGX_HTTP_VOICE_DG_* */

    unsigned                       ever_opened:1;
    unsigned                       answered:1; /* a message came */
    unsigned                       finalize_due:1;   /* not yet sent */
    unsigned                       finalize_sent:1;  /* not yet answered */
    unsigned                       connect_failed:1; /* connect gave NULL */
    unsigned                       reported:1; /* start failure told */
    unsigned                       malformed:1;
    unsigned                       overflow:1; /* in a loss episode */
} ngx_http_voice_dg_ctx_t;


static char *ngx_http_voice_dg_init_conf(ngx_conf_t *cf,
    ngx_http_voice_stt_conf_t *conf);
static char *ngx_http_voice_dg_check_params(ngx_conf_t *cf,
    ngx_http_voice_stt_conf_t *conf);
static ngx_int_t ngx_http_voice_dg_open(ngx_http_voice_stt_t *stt);
static ngx_int_t ngx_http_voice_dg_audio(ngx_http_voice_stt_t *stt,
    const int16_t *pcm, size_t n);
static ngx_int_t ngx_http_voice_dg_finalize(ngx_http_voice_stt_t *stt);
static void ngx_http_voice_dg_close(ngx_http_voice_stt_t *stt);
static void ngx_http_voice_dg_cleanup(void *data);
static void ngx_http_voice_dg_teardown(ngx_http_voice_dg_ctx_t *ctx);

static ngx_int_t ngx_http_voice_dg_target(ngx_http_voice_stt_t *stt,
    ngx_http_voice_dg_ctx_t *ctx);
static void ngx_http_voice_dg_connect(ngx_http_voice_dg_ctx_t *ctx);
static ngx_int_t ngx_http_voice_dg_failure(ngx_http_voice_dg_ctx_t *ctx,
    ngx_uint_t opened, ngx_uint_t status);
static void ngx_http_voice_dg_pump(ngx_http_voice_dg_ctx_t *ctx);
static ngx_int_t ngx_http_voice_dg_control(ngx_http_voice_dg_ctx_t *ctx,
    const char *json);
static void ngx_http_voice_dg_confirm(ngx_http_voice_dg_ctx_t *ctx,
    uint64_t upto);
static ngx_int_t ngx_http_voice_dg_results(ngx_http_voice_dg_ctx_t *ctx,
    json_t *msg);
static ngx_int_t ngx_http_voice_dg_malformed(ngx_http_voice_dg_ctx_t *ctx,
    const char *what);

static void ngx_http_voice_dg_on_open(ngx_http_voice_upstream_t *u);
static void ngx_http_voice_dg_on_message(ngx_http_voice_upstream_t *u,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_voice_dg_on_closed(ngx_http_voice_upstream_t *u,
    ngx_http_voice_upstream_end_t *end);

static void ngx_http_voice_dg_keepalive_handler(ngx_event_t *ev);
static void ngx_http_voice_dg_stall_handler(ngx_event_t *ev);
static void ngx_http_voice_dg_retry_handler(ngx_event_t *ev);
static void ngx_http_voice_dg_flush_handler(ngx_event_t *ev);


const ngx_http_voice_stt_engine_t  ngx_http_voice_stt_deepgram = {
    "deepgram",
    ngx_http_voice_dg_init_conf,
    ngx_http_voice_dg_open,
    ngx_http_voice_dg_audio,
    ngx_http_voice_dg_finalize,
    ngx_http_voice_dg_close
};


static ngx_http_voice_upstream_handler_t  ngx_http_voice_dg_handler = {
    ngx_http_voice_dg_on_open,
    ngx_http_voice_dg_on_message,
    ngx_http_voice_dg_on_closed
};


/* frames are copied here before sending: the ring may wrap */
static u_char  ngx_http_voice_dg_frame[NGX_HTTP_VOICE_DG_FRAME];


/* ---- configuration ------------------------------------------------------ */


typedef struct {
    const char  *name;
    const char  *value;
} ngx_http_voice_dg_default_t;


/* what the module asks for unless voice_stt_param names it */
static ngx_http_voice_dg_default_t  ngx_http_voice_dg_defaults[] = {
    { "model",            "nova-3" },
    { "language",         "en" },
    { "interim_results",  "true" },
    { "endpointing",      "300" },
    { "utterance_end_ms", "1000" },
    { "vad_events",       "true" },
    { "smart_format",     "true" },
    { NULL, NULL }
};


static const char  *ngx_http_voice_dg_booleans[] = {
    "detect_entities", "diarize", "dictation", "interim_results",
    "mip_opt_out", "multichannel", "numerals", "profanity_filter",
    "punctuate", "smart_format", "vad_events", NULL
};


static const char  *ngx_http_voice_dg_lists[] = {
    "extra", "keyterm", "keywords", "redact", "replace", "search", "tag",
    NULL
};


static ngx_uint_t
ngx_http_voice_dg_in(const char **names, ngx_str_t *name)
{
    size_t  len;

    for ( /* void */ ; *names; names++) {
        len = ngx_strlen(*names);

        if (len == name->len && ngx_strncmp(*names, name->data, len) == 0) {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_http_voice_dg_digits(ngx_str_t *v)
{
    size_t  i;

    if (v->len == 0 || v->len > 9) {
        return 0;
    }

    for (i = 0; i < v->len; i++) {
        if (v->data[i] < '0' || v->data[i] > '9') {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
ngx_http_voice_dg_is(ngx_str_t *v, const char *s)
{
    size_t  len;

    len = ngx_strlen(s);

    return v->len == len && ngx_strncmp(v->data, s, len) == 0;
}


/* a model name: a letter or digit, then letters, digits and ._:- */
static ngx_uint_t
ngx_http_voice_dg_model(ngx_str_t *v)
{
    size_t  i;
    u_char  c;

    for (i = 0; i < v->len; i++) {
        c = v->data[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9'))
        {
            continue;
        }

        if (i > 0 && (c == '.' || c == '_' || c == ':' || c == '-')) {
            continue;
        }

        return 0;
    }

    return v->len > 0;
}


/* "multi", or a language tag: 2-3 letters, then -subtags of 2-8 */
static ngx_uint_t
ngx_http_voice_dg_language(ngx_str_t *v)
{
    u_char  *p, *last, *start;

    if (ngx_http_voice_dg_is(v, "multi")) {
        return 1;
    }

    p = v->data;
    last = p + v->len;
    start = p;

    while (p < last
           && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
    {
        p++;
    }

    if (p - start < 2 || p - start > 3) {
        return 0;
    }

    while (p < last) {
        if (*p++ != '-') {
            return 0;
        }

        start = p;

        while (p < last
               && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                   || (*p >= '0' && *p <= '9')))
        {
            p++;
        }

        if (p - start < 2 || p - start > 8) {
            return 0;
        }
    }

    return 1;
}


static ngx_http_voice_stt_param_t *
ngx_http_voice_dg_param(ngx_http_voice_stt_conf_t *conf, const char *name)
{
    size_t                       len;
    ngx_uint_t                   i;
    ngx_http_voice_stt_param_t  *p;

    if (conf->params == NULL) {
        return NULL;
    }

    len = ngx_strlen(name);
    p = conf->params->elts;

    for (i = 0; i < conf->params->nelts; i++) {
        if (p[i].name.len == len
            && ngx_strncmp(p[i].name.data, name, len) == 0)
        {
            return &p[i];
        }
    }

    return NULL;
}


/*
 * The glue has parsed voice_stt_url and set up TLS for it (with the
 * location's voice_ssl_* settings) by now: this adds what is Deepgram's.
 */
static char *
ngx_http_voice_dg_init_conf(ngx_conf_t *cf, ngx_http_voice_stt_conf_t *conf)
{
    u_char  *p;

    if (conf->buffer < NGX_HTTP_VOICE_DG_FRAME) {
        return "voice_stt_buffer must be at least 8k for deepgram";
    }

    if (conf->key.len && conf->auth.len == 0) {
        conf->auth.len = sizeof("Authorization: Token " CRLF) - 1
                         + conf->key.len;
        conf->auth.data = ngx_pnalloc(cf->pool, conf->auth.len);
        if (conf->auth.data == NULL) {
            return NGX_CONF_ERROR;
        }

        p = ngx_cpymem(conf->auth.data, "Authorization: Token ",
                       sizeof("Authorization: Token ") - 1);
        p = ngx_cpymem(p, conf->key.data, conf->key.len);
        *p++ = CR; *p = LF;
    }

    return ngx_http_voice_dg_check_params(cf, conf);
}


/*
 * Checks the parameters by the provider's rules, as far as their values
 * are known now: values with variables are checked by the provider.
 */
static char *
ngx_http_voice_dg_check_params(ngx_conf_t *cf,
    ngx_http_voice_stt_conf_t *conf)
{
    u_char                      *c;
    ngx_str_t                   *name, *v;
    ngx_uint_t                   i, j;
    ngx_http_voice_stt_param_t  *p, *ir;

    if (conf->params == NULL) {
        return NGX_CONF_OK;
    }

    p = conf->params->elts;

    for (i = 0; i < conf->params->nelts; i++) {
        name = &p[i].name;
        v = &p[i].value.value;

        if (name->len == 0) {
            return "voice_stt_param needs a parameter name";
        }

        for (c = name->data; c < name->data + name->len; c++) {
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')
                  || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'
                  || *c == '.'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "voice_stt_param: invalid name \"%V\"",
                                   name);
                return NGX_CONF_ERROR;
            }
        }

        if (ngx_http_voice_dg_is(name, "encoding")
            || ngx_http_voice_dg_is(name, "sample_rate")
            || ngx_http_voice_dg_is(name, "channels"))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "voice_stt_param \"%V\" cannot be set: the "
                               "module sends encoding=linear16, "
                               "sample_rate=16000 and channels=1", name);
            return NGX_CONF_ERROR;
        }

        if (!ngx_http_voice_dg_in(ngx_http_voice_dg_lists, name)) {
            for (j = 0; j < i; j++) {
                if (p[j].name.len == name->len
                    && ngx_strncmp(p[j].name.data, name->data, name->len)
                       == 0)
                {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "voice_stt_param \"%V\" is "
                                       "duplicate", name);
                    return NGX_CONF_ERROR;
                }
            }
        }

        /* with variables, the value is known per session only */
        if (p[i].value.lengths != NULL || v->len == 0) {
            continue;
        }

        if (ngx_http_voice_dg_in(ngx_http_voice_dg_booleans, name)) {
            if (!ngx_http_voice_dg_is(v, "true")
                && !ngx_http_voice_dg_is(v, "false"))
            {
                goto invalid;
            }

        } else if (ngx_http_voice_dg_is(name, "endpointing")) {
            if (!ngx_http_voice_dg_is(v, "false")
                && !ngx_http_voice_dg_digits(v))
            {
                goto invalid;
            }

        } else if (ngx_http_voice_dg_is(name, "utterance_end_ms")) {
            if (!ngx_http_voice_dg_digits(v) || ngx_atoi(v->data, v->len) < 1)
            {
                goto invalid;
            }

            ir = ngx_http_voice_dg_param(conf, "interim_results");

            if (ir && ir->value.lengths == NULL
                && !ngx_http_voice_dg_is(&ir->value.value, "true"))
            {
                return "voice_stt_param utterance_end_ms needs "
                       "interim_results true";
            }

        } else if (ngx_http_voice_dg_is(name, "model")) {
            if (!ngx_http_voice_dg_model(v)) {
                goto invalid;
            }

        } else if (ngx_http_voice_dg_is(name, "language")) {
            if (!ngx_http_voice_dg_language(v)) {
                goto invalid;
            }
        }

        continue;

    invalid:

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "voice_stt_param: invalid value \"%V\" for \"%V\"",
                           v, name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* ---- the session ------------------------------------------------------- */


static ngx_int_t
ngx_http_voice_dg_open(ngx_http_voice_stt_t *stt)
{
    ngx_pool_cleanup_t       *cln;
    ngx_http_voice_dg_ctx_t  *ctx;

    ctx = ngx_pcalloc(stt->pool, sizeof(ngx_http_voice_dg_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->stt = stt;

    if (ngx_http_voice_dg_target(stt, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(stt->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    /* the ring is outside the pool: it must be freed however we end */
    cln->handler = ngx_http_voice_dg_cleanup;
    cln->data = ctx;

    ngx_http_voice_ring_init(&ctx->ring, stt->conf->buffer);

    ctx->keepalive.handler = ngx_http_voice_dg_keepalive_handler;
    ctx->stall.handler = ngx_http_voice_dg_stall_handler;
    ctx->retry.handler = ngx_http_voice_dg_retry_handler;
    ctx->flush.handler = ngx_http_voice_dg_flush_handler;

    ctx->keepalive.data = ctx;
    ctx->stall.data = ctx;
    ctx->retry.data = ctx;
    ctx->flush.data = ctx;

    ctx->keepalive.log = stt->log;
    ctx->stall.log = stt->log;
    ctx->retry.log = stt->log;
    ctx->flush.log = stt->log;

    ctx->keepalive.cancelable = 1;
    ctx->stall.cancelable = 1;
    ctx->retry.cancelable = 1;
    ctx->flush.cancelable = 1;

    stt->ctx = ctx;

    ngx_http_voice_dg_connect(ctx);

    return NGX_OK;
}


/*
 * The request target: the configured path, the audio format the module
 * sends, the configured parameters as evaluated for this session, and
 * the defaults of those not configured.
 */
static ngx_int_t
ngx_http_voice_dg_target(ngx_http_voice_stt_t *stt,
    ngx_http_voice_dg_ctx_t *ctx)
{
    size_t                        len;
    u_char                       *p;
    ngx_str_t                    *values, *uri;
    ngx_uint_t                    i, n, sep;
    ngx_http_voice_stt_conf_t    *conf;
    ngx_http_voice_stt_param_t   *param;
    ngx_http_voice_dg_default_t  *d;

    static const char  fixed[] = "encoding=linear16&sample_rate=16000"
                                 "&channels=1";

    conf = stt->conf;
    uri = &conf->upstream.uri;

    n = conf->params ? conf->params->nelts : 0;
    param = n ? conf->params->elts : NULL;

    values = NULL;

    if (n) {
        values = ngx_palloc(stt->pool, n * sizeof(ngx_str_t));
        if (values == NULL) {
            return NGX_ERROR;
        }
    }

    len = (uri->len ? uri->len : 1) + 1 + sizeof(fixed) - 1;

    for (i = 0; i < n; i++) {

        if (param[i].value.lengths == NULL) {
            values[i] = param[i].value.value;

        } else if (stt->request == NULL
                   || ngx_http_complex_value(stt->request, &param[i].value,
                                             &values[i])
                      != NGX_OK)
        {
            ngx_str_null(&values[i]);
        }

        if (values[i].len) {
            len += 1 + param[i].name.len + 1 + values[i].len
                   + 2 * ngx_escape_uri(NULL, values[i].data, values[i].len,
                                        NGX_ESCAPE_ARGS);
        }
    }

    for (d = ngx_http_voice_dg_defaults; d->name; d++) {
        len += 1 + ngx_strlen(d->name) + 1 + ngx_strlen(d->value);
    }

    p = ngx_pnalloc(stt->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->target.data = p;

    if (uri->len) {
        p = ngx_cpymem(p, uri->data, uri->len);
        sep = (ngx_strlchr(uri->data, uri->data + uri->len, '?') != NULL);

    } else {
        *p++ = '/';
        sep = 0;
    }

    *p++ = sep ? '&' : '?';
    p = ngx_cpymem(p, fixed, sizeof(fixed) - 1);

    for (i = 0; i < n; i++) {
        if (values[i].len == 0) {
            continue;
        }

        *p++ = '&';
        p = ngx_cpymem(p, param[i].name.data, param[i].name.len);
        *p++ = '=';
        p = (u_char *) ngx_escape_uri(p, values[i].data, values[i].len,
                                      NGX_ESCAPE_ARGS);
    }

    for (d = ngx_http_voice_dg_defaults; d->name; d++) {
        if (ngx_http_voice_dg_param(conf, d->name)) {
            continue;
        }

        /* Deepgram refuses utterance_end_ms without interim results */
        if (ngx_strcmp(d->name, "utterance_end_ms") == 0
            && ngx_http_voice_dg_param(conf, "interim_results"))
        {
            for (i = 0; i < n; i++) {
                if (ngx_http_voice_dg_is(&param[i].name, "interim_results")
                    && !ngx_http_voice_dg_is(&values[i], "true"))
                {
                    break;
                }
            }

            if (i < n) {
                continue;
            }
        }

        *p++ = '&';
        p = ngx_cpymem(p, d->name, ngx_strlen(d->name));
        *p++ = '=';
        p = ngx_cpymem(p, d->value, ngx_strlen(d->value));
    }

    ctx->target.len = p - ctx->target.data;

    return NGX_OK;
}


static void
ngx_http_voice_dg_connect(ngx_http_voice_dg_ctx_t *ctx)
{
    ngx_str_t                  *auth;
    ngx_http_voice_stt_conf_t  *conf;

    conf = ctx->stt->conf;
    auth = conf->auth.len ? &conf->auth : NULL;

    ctx->state = NGX_HTTP_VOICE_DG_CONNECTING;
    ctx->answered = 0;
    ctx->connections++;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->stt->log, 0,
                   "voice stt deepgram: connecting (#%ui) \"%V\"",
                   ctx->connections, &ctx->target);

    ctx->u = ngx_http_voice_upstream_connect(&conf->upstream, &ctx->target,
                                             auth, &ngx_http_voice_dg_handler,
                                             ctx, ctx->stt->log);
    if (ctx->u == NULL) {
        /* nothing follows from the upstream: fail from an event */
        ctx->connect_failed = 1;
        ngx_add_timer(&ctx->retry, 1);
    }
}


static ngx_int_t
ngx_http_voice_dg_audio(ngx_http_voice_stt_t *stt, const int16_t *pcm,
    size_t n)
{
    size_t                    bytes, drop, sent;
    ngx_int_t                 rc;
    ngx_http_voice_dg_ctx_t  *ctx;
#if !(NGX_HAVE_LITTLE_ENDIAN)
    size_t                    i, k;
    u_char                    le[512];
#endif

    ctx = stt->ctx;

    if (ctx == NULL || ctx->state >= NGX_HTTP_VOICE_DG_FAILED || n == 0) {
        return NGX_OK;
    }

    bytes = n * sizeof(int16_t);

    if (bytes > ctx->ring.max) {
        /* only the newest part can be kept */
        pcm += n - ctx->ring.max / sizeof(int16_t);
        ctx->lost += bytes - ctx->ring.max;
        ctx->dropped += bytes - ctx->ring.max;
        ctx->in += bytes - ctx->ring.max;
        bytes = ctx->ring.max;
    }

    if (bytes > ngx_http_voice_ring_room(&ctx->ring)) {

        /* the oldest audio goes; what was never sent is lost for good */

        drop = bytes - ngx_http_voice_ring_room(&ctx->ring);
        ngx_http_voice_ring_consume(&ctx->ring, drop);

        sent = (ctx->state == NGX_HTTP_VOICE_DG_OPEN)
               ? (size_t) (ctx->out - (ctx->in - ctx->ring.used - drop))
               : 0;

        ctx->dropped += drop;

        if (drop > sent) {
            ctx->lost += drop - sent;

            if (!ctx->overflow) {
                ctx->overflow = 1;
                ngx_log_error(NGX_LOG_WARN, stt->log, 0,
                              "voice stt deepgram: audio buffer full, "
                              "the oldest audio is lost "
                              "(%uL bytes lost so far)", ctx->lost);
            }
        }

    } else {
        ctx->overflow = 0;
    }

#if (NGX_HAVE_LITTLE_ENDIAN)

    rc = ngx_http_voice_ring_write(&ctx->ring, pcm, bytes);

#else

    rc = NGX_OK;

    for (i = 0; i < bytes / 2 && rc == NGX_OK; i += k) {
        for (k = 0; k < sizeof(le) / 2 && i + k < bytes / 2; k++) {
            le[2 * k] = (u_char) ((uint16_t) pcm[i + k] & 0xff);
            le[2 * k + 1] = (u_char) ((uint16_t) pcm[i + k] >> 8);
        }

        rc = ngx_http_voice_ring_write(&ctx->ring, le, 2 * k);
    }

#endif

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->in += bytes;

    if (ctx->state == NGX_HTTP_VOICE_DG_OPEN) {
        ngx_http_voice_dg_pump(ctx);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_dg_finalize(ngx_http_voice_stt_t *stt)
{
    ngx_http_voice_dg_ctx_t  *ctx;

    ctx = stt->ctx;

    if (ctx == NULL || ctx->state >= NGX_HTTP_VOICE_DG_FAILED) {
        return NGX_OK;
    }

    /* after all the audio so far; sent once the stream has it */
    ctx->finalize_at = ctx->in;
    ctx->finalize_due = 1;

    if (ctx->state == NGX_HTTP_VOICE_DG_OPEN) {
        ngx_http_voice_dg_pump(ctx);
    }

    return NGX_OK;
}


static void
ngx_http_voice_dg_close(ngx_http_voice_stt_t *stt)
{
    ngx_http_voice_dg_ctx_t  *ctx;

    ctx = stt->ctx;

    if (ctx == NULL) {
        return;
    }

    ngx_http_voice_dg_teardown(ctx);
}


static void
ngx_http_voice_dg_cleanup(void *data)
{
    ngx_http_voice_dg_ctx_t  *ctx = data;

    ngx_http_voice_dg_teardown(ctx);
}


/* from close, or from the pool's cleanup when the session goes first */
static void
ngx_http_voice_dg_teardown(ngx_http_voice_dg_ctx_t *ctx)
{
    if (ctx->state == NGX_HTTP_VOICE_DG_CLOSED) {
        return;
    }

    if (ctx->u) {
        if (ctx->state == NGX_HTTP_VOICE_DG_OPEN) {
            (void) ngx_http_voice_dg_control(ctx, "{\"type\":\"CloseStream\"}");
        }

        ngx_http_voice_upstream_close(ctx->u, NGX_HTTP_VOICE_WS_NORMAL);
        ctx->u = NULL;
    }

    ctx->state = NGX_HTTP_VOICE_DG_CLOSED;

    if (ctx->keepalive.timer_set) {
        ngx_del_timer(&ctx->keepalive);
    }

    if (ctx->stall.timer_set) {
        ngx_del_timer(&ctx->stall);
    }

    if (ctx->retry.timer_set) {
        ngx_del_timer(&ctx->retry);
    }

    if (ctx->flush.timer_set) {
        ngx_del_timer(&ctx->flush);
    }

    if (ctx->dropped) {
        ngx_log_error(NGX_LOG_INFO, ctx->stt->log, 0,
                      "voice stt deepgram: %uL bytes of audio dropped from "
                      "the replay buffer, %uL of them never sent",
                      ctx->dropped, ctx->lost);
    }

    ngx_http_voice_ring_free(&ctx->ring);
}


/* ---- sending ----------------------------------------------------------- */


/*
 * Sends what the connection has not had yet, in order: audio from the
 * ring, with the Finalize at its place.  Stops when the upstream's queue
 * is full and tries again shortly.
 */
static void
ngx_http_voice_dg_pump(ngx_http_voice_dg_ctx_t *ctx)
{
    size_t     n;
    uint64_t   head, end;
    ngx_int_t  rc;

    head = ctx->in - ctx->ring.used;

    if (ctx->out < head) {
        /* audio dropped unsent: the provider's clock never saw it */
        ctx->base += head - ctx->out;
        ctx->out = head;
    }

    while (ctx->state == NGX_HTTP_VOICE_DG_OPEN) {

        end = ctx->in;

        if (ctx->finalize_due && ctx->finalize_at < end) {
            end = ctx->finalize_at;
        }

        if (ctx->out < end) {
            n = (size_t) ngx_min(end - ctx->out, NGX_HTTP_VOICE_DG_FRAME);

            ngx_http_voice_ring_peek(&ctx->ring, (size_t) (ctx->out - head),
                                     ngx_http_voice_dg_frame, n);

            rc = ngx_http_voice_upstream_send(ctx->u,
                                              NGX_HTTP_VOICE_WS_BINARY,
                                              ngx_http_voice_dg_frame, n);
            if (rc == NGX_DECLINED) {
                break;
            }

            if (rc != NGX_OK) {
                /* closed follows from the event loop */
                return;
            }

            ctx->out += n;

            ngx_add_timer(&ctx->keepalive, NGX_HTTP_VOICE_DG_KEEPALIVE);

            continue;
        }

        if (ctx->finalize_due) {
            rc = ngx_http_voice_dg_control(ctx, "{\"type\":\"Finalize\"}");

            if (rc == NGX_DECLINED) {
                break;
            }

            if (rc != NGX_OK) {
                return;
            }

            ctx->finalize_due = 0;
            ctx->finalize_sent = 1;

            ngx_add_timer(&ctx->stall, ctx->stt->conf->timeout);
        }

        return;
    }

    if (ctx->state == NGX_HTTP_VOICE_DG_OPEN && !ctx->flush.timer_set) {
        ngx_add_timer(&ctx->flush, NGX_HTTP_VOICE_DG_FLUSH);
    }
}


static ngx_int_t
ngx_http_voice_dg_control(ngx_http_voice_dg_ctx_t *ctx, const char *json)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->stt->log, 0,
                   "voice stt deepgram: send %s", json);

    return ngx_http_voice_upstream_send(ctx->u, NGX_HTTP_VOICE_WS_TEXT,
                                        (u_char *) json, ngx_strlen(json));
}


/* the provider settled the audio up to upto bytes of this connection */
static void
ngx_http_voice_dg_confirm(ngx_http_voice_dg_ctx_t *ctx, uint64_t upto)
{
    uint64_t  head, pos;

    head = ctx->in - ctx->ring.used;
    pos = ctx->base + upto;

    /* never past what this connection was sent */
    if (pos > ctx->out) {
        pos = ctx->out;
    }

    if (pos > head) {
        ngx_http_voice_ring_consume(&ctx->ring, (size_t) (pos - head));
    }
}


/* ---- the upstream's events --------------------------------------------- */


static void
ngx_http_voice_dg_on_open(ngx_http_voice_upstream_t *u)
{
    ngx_http_voice_dg_ctx_t  *ctx = u->data;

    if (ctx->connections > 1) {
        ngx_log_error(NGX_LOG_INFO, ctx->stt->log, 0,
                      "voice stt deepgram: stream reopened, replaying %uz "
                      "bytes of audio", ctx->ring.used);
    }

    ctx->state = NGX_HTTP_VOICE_DG_OPEN;
    ctx->ever_opened = 1;

    /* the new connection's clock starts with the oldest unconfirmed audio */
    ctx->base = ctx->in - ctx->ring.used;
    ctx->out = ctx->base;

    if (ctx->finalize_sent) {
        /* its answer was lost with the old stream: ask again */
        ctx->finalize_sent = 0;
        ctx->finalize_due = 1;
    }

    if (ctx->finalize_due && ctx->finalize_at < ctx->base) {
        ctx->finalize_at = ctx->base;
    }

    ngx_add_timer(&ctx->keepalive, NGX_HTTP_VOICE_DG_KEEPALIVE);

    ngx_http_voice_dg_pump(ctx);
}


static void
ngx_http_voice_dg_on_message(ngx_http_voice_upstream_t *u, ngx_uint_t opcode,
    u_char *data, size_t len)
{
    ngx_int_t                 rc;
    const char               *type;
    json_t                   *msg;
    json_error_t              err;
    ngx_http_voice_dg_ctx_t  *ctx = u->data;

    if (ctx->state != NGX_HTTP_VOICE_DG_OPEN) {
        return;
    }

    /* any message is an answer: the stream is alive */
    if (ctx->stall.timer_set) {
        ngx_del_timer(&ctx->stall);
    }

    if (!ctx->answered) {
        ctx->answered = 1;
        ctx->attempt = 0;
    }

    if (opcode != NGX_HTTP_VOICE_WS_TEXT) {
        (void) ngx_http_voice_dg_malformed(ctx, "a binary frame");
        return;
    }

    msg = json_loadb((const char *) data, len, 0, &err);

    if (msg == NULL || !json_is_object(msg)) {
        if (msg) {
            json_decref(msg);
        }

        (void) ngx_http_voice_dg_malformed(ctx, "a message that is not "
                                           "a JSON object");
        return;
    }

    type = json_string_value(json_object_get(msg, "type"));

    if (type == NULL) {
        rc = NGX_OK;
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ctx->stt->log, 0,
                       "voice stt deepgram: a message without type");

    } else if (ngx_strcmp(type, "Results") == 0) {
        rc = ngx_http_voice_dg_results(ctx, msg);

    } else if (ngx_strcmp(type, "SpeechStarted") == 0) {
        rc = ngx_http_voice_stt_speech_started(ctx->stt);

    } else if (ngx_strcmp(type, "UtteranceEnd") == 0) {
        rc = ngx_http_voice_stt_utterance_end(ctx->stt);

    } else if (ngx_strcmp(type, "Metadata") == 0) {
        rc = NGX_OK;
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->stt->log, 0,
                       "voice stt deepgram: metadata, request %s",
                       json_string_value(json_object_get(msg, "request_id")));

    } else {
        rc = NGX_OK;
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->stt->log, 0,
                       "voice stt deepgram: ignored a \"%s\" message", type);
    }

    json_decref(msg);

    (void) rc;
}


static ngx_int_t
ngx_http_voice_dg_results(ngx_http_voice_dg_ctx_t *ctx, json_t *msg)
{
    double       start, duration, end;
    json_t      *alt, *tr;
    ngx_uint_t   is_final, speech_final, from_finalize;
    const char  *text;
    size_t       len;

    is_final = json_is_true(json_object_get(msg, "is_final"));
    speech_final = json_is_true(json_object_get(msg, "speech_final"));
    from_finalize = json_is_true(json_object_get(msg, "from_finalize"));

    alt = json_array_get(json_object_get(json_object_get(msg, "channel"),
                                         "alternatives"), 0);
    tr = json_object_get(alt, "transcript");

    if (!json_is_string(tr)) {
        return ngx_http_voice_dg_malformed(ctx, "Results without a "
                                           "transcript");
    }

    text = json_string_value(tr);
    len = json_string_length(tr);

    if (is_final) {
        start = json_number_value(json_object_get(msg, "start"));
        duration = json_number_value(json_object_get(msg, "duration"));
        end = start + duration;

        if (end > 0) {
            ngx_http_voice_dg_confirm(ctx,
                (uint64_t) (end * NGX_HTTP_VOICE_DG_RATE + 0.5) * 2);
        }
    }

    if (from_finalize) {
        ctx->finalize_sent = 0;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ctx->stt->log, 0,
                   "voice stt deepgram: results final:%ui end:%ui \"%*s\"",
                   is_final, speech_final || from_finalize, len, text);

    return ngx_http_voice_stt_result(ctx->stt, (const u_char *) text, len,
                                     is_final, speech_final || from_finalize);
}


static ngx_int_t
ngx_http_voice_dg_malformed(ngx_http_voice_dg_ctx_t *ctx, const char *what)
{
    ngx_log_error(NGX_LOG_WARN, ctx->stt->log, 0,
                  "voice stt deepgram: the provider sent %s", what);

    if (ctx->malformed) {
        return NGX_OK;
    }

    ctx->malformed = 1;

    return ngx_http_voice_stt_failed(ctx->stt, 1,
                                     "the STT provider sent a malformed "
                                     "message");
}


static void
ngx_http_voice_dg_on_closed(ngx_http_voice_upstream_t *u,
    ngx_http_voice_upstream_end_t *end)
{
    ngx_http_voice_dg_ctx_t  *ctx = u->data;

    ctx->u = NULL;

    if (ctx->state >= NGX_HTTP_VOICE_DG_FAILED) {
        return;
    }

    if (end->opened) {
        ngx_log_error(NGX_LOG_WARN, ctx->stt->log, 0,
                      "voice stt deepgram: stream lost (code %ui, \"%V\"), "
                      "reconnecting", end->code, &end->reason);

    } else {
        ngx_log_error(NGX_LOG_WARN, ctx->stt->log, 0,
                      "voice stt deepgram: connect failed (status %ui, "
                      "\"%V\")", end->status, &end->reason);
    }

    (void) ngx_http_voice_dg_failure(ctx, end->opened, end->status);
}


/*
 * A connection failed or broke: decide between giving up and trying again
 * after a delay.  Returns NGX_ERROR when the session is over.
 */
static ngx_int_t
ngx_http_voice_dg_failure(ngx_http_voice_dg_ctx_t *ctx, ngx_uint_t opened,
    ngx_uint_t status)
{
    ngx_msec_t                 delay;
    ngx_http_voice_stt_conf_t  *conf;

    conf = ctx->stt->conf;

    ctx->state = NGX_HTTP_VOICE_DG_IDLE;

    if (ctx->keepalive.timer_set) {
        ngx_del_timer(&ctx->keepalive);
    }

    if (ctx->stall.timer_set) {
        ngx_del_timer(&ctx->stall);
    }

    if (ctx->flush.timer_set) {
        ngx_del_timer(&ctx->flush);
    }

    if (status == NGX_HTTP_UNAUTHORIZED || status == NGX_HTTP_FORBIDDEN) {
        ctx->state = NGX_HTTP_VOICE_DG_FAILED;
        return ngx_http_voice_stt_failed(ctx->stt, 0,
                                         "the STT provider refused the "
                                         "credentials");
    }

    if (status >= 400 && status < 500 && status != NGX_HTTP_REQUEST_TIME_OUT
        && status != 429)
    {
        /* the request itself is wrong: asking again would not help */
        ctx->state = NGX_HTTP_VOICE_DG_FAILED;
        return ngx_http_voice_stt_failed(ctx->stt, 0,
                                         "the STT provider refused the "
                                         "request");
    }

    /*
     * A stream that broke after it answered starts a new count; one that
     * never answered counts, so a server that always hangs up ends it.
     */
    if (!(opened && ctx->answered)) {
        ctx->attempt++;
    }

    ctx->answered = 0;

    if (ctx->attempt > conf->retries) {
        ctx->state = NGX_HTTP_VOICE_DG_FAILED;

        ngx_log_error(NGX_LOG_ERR, ctx->stt->log, 0,
                      "voice stt deepgram: giving up after %ui attempts",
                      ctx->attempt);

        return ngx_http_voice_stt_failed(ctx->stt, 0,
                                         "the STT provider is unreachable");
    }

    delay = ngx_http_voice_upstream_backoff(ctx->attempt ? ctx->attempt - 1
                                                         : 0);
    ngx_add_timer(&ctx->retry, delay);

    if (!ctx->ever_opened && !ctx->reported) {
        ctx->reported = 1;
        return ngx_http_voice_stt_failed(ctx->stt, 1,
                                         "the STT provider is unavailable, "
                                         "retrying");
    }

    return NGX_OK;
}


/* ---- timers ------------------------------------------------------------ */


static void
ngx_http_voice_dg_keepalive_handler(ngx_event_t *ev)
{
    ngx_int_t                 rc;
    ngx_http_voice_dg_ctx_t  *ctx = ev->data;

    if (ctx->state != NGX_HTTP_VOICE_DG_OPEN) {
        return;
    }

    rc = ngx_http_voice_dg_control(ctx, "{\"type\":\"KeepAlive\"}");

    if (rc == NGX_ERROR) {
        return;
    }

    ngx_add_timer(&ctx->keepalive, NGX_HTTP_VOICE_DG_KEEPALIVE);
}


static void
ngx_http_voice_dg_stall_handler(ngx_event_t *ev)
{
    ngx_http_voice_dg_ctx_t  *ctx = ev->data;

    if (ctx->state != NGX_HTTP_VOICE_DG_OPEN) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ctx->stt->log, 0,
                  "voice stt deepgram: no answer to Finalize in %M ms, "
                  "reconnecting", ctx->stt->conf->timeout);

    ngx_http_voice_upstream_close(ctx->u, NGX_HTTP_VOICE_WS_GOING_AWAY);
    ctx->u = NULL;

    /* the stalled stream counts as a failed attempt */
    ctx->answered = 0;

    (void) ngx_http_voice_dg_failure(ctx, 1, 0);
}


static void
ngx_http_voice_dg_retry_handler(ngx_event_t *ev)
{
    ngx_http_voice_dg_ctx_t  *ctx = ev->data;

    if (ctx->state >= NGX_HTTP_VOICE_DG_FAILED) {
        return;
    }

    if (ctx->connect_failed) {
        ctx->connect_failed = 0;

        ngx_log_error(NGX_LOG_WARN, ctx->stt->log, 0,
                      "voice stt deepgram: could not start connecting");

        (void) ngx_http_voice_dg_failure(ctx, 0, 0);
        return;
    }

    ngx_http_voice_dg_connect(ctx);
}


static void
ngx_http_voice_dg_flush_handler(ngx_event_t *ev)
{
    ngx_http_voice_dg_ctx_t  *ctx = ev->data;

    if (ctx->state == NGX_HTTP_VOICE_DG_OPEN) {
        ngx_http_voice_dg_pump(ctx);
    }
}
