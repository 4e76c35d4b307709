
/*
 * The embedded responder: needs no provider and no key.  It answers with
 * a few sentences about what the user said, built only from the text, so
 * the same words always give the same reply, and streams it a word at a
 * time at voice_llm_rate tokens per second like a real model would.  It
 * never calls tools, but answers a tool result if one comes last.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_voice_llm.h"


/* how much of the user's words or a tool result the reply repeats */
#define NGX_HTTP_VOICE_EMB_ECHO  300


typedef struct {
    ngx_http_voice_llm_t          *llm;
    ngx_pool_t                    *pool;
    ngx_event_t                    timer;
    ngx_msec_t                     interval;
    ngx_uint_t                    *gone;       /* set when freed */

    u_char                        *reply;
    size_t                         len;
    size_t                         size;
    size_t                         pos;        /* streamed so far */
} ngx_http_voice_emb_ctx_t;


static char *ngx_http_voice_emb_init_conf(ngx_conf_t *cf,
    ngx_http_voice_llm_conf_t *conf);
static ngx_int_t ngx_http_voice_emb_start(ngx_http_voice_llm_t *llm);
static void ngx_http_voice_emb_cancel(ngx_http_voice_llm_t *llm);
static void ngx_http_voice_emb_free(ngx_http_voice_emb_ctx_t *ctx);
static void ngx_http_voice_emb_tick(ngx_event_t *ev);
static void ngx_http_voice_emb_compose(ngx_http_voice_emb_ctx_t *ctx,
    ngx_http_voice_llm_message_t *messages);
static void ngx_http_voice_emb_user(ngx_http_voice_emb_ctx_t *ctx,
    ngx_str_t *text);
static void ngx_http_voice_emb_result(ngx_http_voice_emb_ctx_t *ctx,
    ngx_http_voice_llm_message_t *messages,
    ngx_http_voice_llm_message_t *result);
static void ngx_http_voice_emb_add(ngx_http_voice_emb_ctx_t *ctx,
    const u_char *data, size_t len);
static void ngx_http_voice_emb_echo(ngx_http_voice_emb_ctx_t *ctx,
    const u_char *data, size_t len);
static void ngx_http_voice_emb_word(ngx_str_t *text, ngx_uint_t last,
    ngx_str_t *word);


#define ngx_http_voice_emb_lit(ctx, s)                                       \
    ngx_http_voice_emb_add(ctx, (u_char *) s, sizeof(s) - 1)

#define ngx_http_voice_emb_space(c)                                          \
    ((c) == ' ' || (c) == '\t' || (c) == CR || (c) == LF)


const ngx_http_voice_llm_engine_t  ngx_http_voice_llm_embedded = {
    "embedded",
    ngx_http_voice_emb_init_conf,
    ngx_http_voice_emb_start,
    ngx_http_voice_emb_cancel
};


static char *
ngx_http_voice_emb_init_conf(ngx_conf_t *cf, ngx_http_voice_llm_conf_t *conf)
{
    /* nothing to reach and nothing to check: the directives bound it all */
    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_voice_emb_start(ngx_http_voice_llm_t *llm)
{
    ngx_pool_t                *pool;
    ngx_http_voice_emb_ctx_t  *ctx;

    ngx_http_voice_emb_cancel(llm);

    pool = ngx_create_pool(1024, llm->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    ctx = ngx_pcalloc(pool, sizeof(ngx_http_voice_emb_ctx_t));
    if (ctx == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ctx->size = llm->conf->max_text;
    ctx->reply = ngx_pnalloc(pool, ctx->size);
    if (ctx->reply == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ctx->llm = llm;
    ctx->pool = pool;
    ctx->interval = ngx_max(1000 / llm->conf->rate, 1);

    ctx->timer.handler = ngx_http_voice_emb_tick;
    ctx->timer.data = ctx;
    ctx->timer.log = llm->log;
    ctx->timer.cancelable = 1;

    ngx_http_voice_emb_compose(ctx, llm->messages);

    llm->ctx = ctx;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, llm->log, 0,
                   "voice: llm embedded reply of %uz bytes, a token every "
                   "%M ms", ctx->len, ctx->interval);

    /* the first token comes after one interval, as from a real model */
    ngx_add_timer(&ctx->timer, ctx->interval);

    return NGX_OK;
}


static void
ngx_http_voice_emb_cancel(ngx_http_voice_llm_t *llm)
{
    if (llm->ctx) {
        ngx_http_voice_emb_free(llm->ctx);
    }
}


static void
ngx_http_voice_emb_free(ngx_http_voice_emb_ctx_t *ctx)
{
    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (ctx->gone) {
        *ctx->gone = 1;
    }

    if (ctx->llm->ctx == ctx) {
        ctx->llm->ctx = NULL;
    }

    ngx_destroy_pool(ctx->pool);
}


/* one token: a word with the spaces after it */

static void
ngx_http_voice_emb_tick(ngx_event_t *ev)
{
    ngx_http_voice_emb_ctx_t  *ctx = ev->data;

    size_t                 start;
    ngx_int_t              rc;
    ngx_str_t              finish;
    ngx_uint_t             gone;
    ngx_http_voice_llm_t  *llm;

    llm = ctx->llm;
    start = ctx->pos;

    while (ctx->pos < ctx->len
           && !ngx_http_voice_emb_space(ctx->reply[ctx->pos]))
    {
        ctx->pos++;
    }

    while (ctx->pos < ctx->len
           && ngx_http_voice_emb_space(ctx->reply[ctx->pos]))
    {
        ctx->pos++;
    }

    gone = 0;
    ctx->gone = &gone;

    rc = ngx_http_voice_llm_token(llm, ctx->reply + start, ctx->pos - start);

    if (gone) {
        return;
    }

    ctx->gone = NULL;

    if (rc != NGX_OK) {
        ngx_http_voice_emb_free(ctx);
        return;
    }

    if (ctx->pos < ctx->len) {
        ngx_add_timer(&ctx->timer, ctx->interval);
        return;
    }

    ngx_http_voice_emb_free(ctx);

    ngx_str_set(&finish, "stop");

    (void) ngx_http_voice_llm_done(llm, &finish);
}


/* ---- the reply ---------------------------------------------------------- */

static void
ngx_http_voice_emb_compose(ngx_http_voice_emb_ctx_t *ctx,
    ngx_http_voice_llm_message_t *messages)
{
    ngx_http_voice_llm_message_t  *m, *last;

    last = NULL;

    for (m = messages; m; m = m->next) {
        last = m;
    }

    if (last && last->role == NGX_HTTP_VOICE_LLM_USER) {
        ngx_http_voice_emb_user(ctx, &last->text);

    } else if (last && last->role == NGX_HTTP_VOICE_LLM_TOOL_RESULT) {
        ngx_http_voice_emb_result(ctx, messages, last);

    } else {
        ngx_http_voice_emb_lit(ctx, "Hello! What would you like to talk "
                                    "about?");
    }
}


static void
ngx_http_voice_emb_user(ngx_http_voice_emb_ctx_t *ctx, ngx_str_t *text)
{
    u_char      *p, *last, buf[NGX_INT_T_LEN];
    uint32_t     hash;
    ngx_str_t    t, first, final;
    ngx_uint_t   words, inword;

    /* the text without the spaces around it */

    p = text->data;
    last = text->data + text->len;

    while (p < last && ngx_http_voice_emb_space(*p)) {
        p++;
    }

    while (last > p && ngx_http_voice_emb_space(last[-1])) {
        last--;
    }

    t.data = p;
    t.len = last - p;

    if (t.len == 0) {
        ngx_http_voice_emb_lit(ctx, "I did not catch that. "
                                    "Could you say it again?");
        return;
    }

    words = 0;
    inword = 0;
    hash = 5381;

    for (p = t.data; p < last; p++) {
        if (ngx_http_voice_emb_space(*p)) {
            inword = 0;

        } else if (!inword) {
            inword = 1;
            words++;
        }

        hash = hash * 33 + *p;
    }

    ngx_http_voice_emb_word(&t, 0, &first);
    ngx_http_voice_emb_word(&t, 1, &final);

    /* what they said, without the final stop: we add ours */

    while (t.len && (t.data[t.len - 1] == '.' || t.data[t.len - 1] == '!'
                     || t.data[t.len - 1] == '?'))
    {
        t.len--;
    }

    ngx_http_voice_emb_lit(ctx, "You said: ");
    ngx_http_voice_emb_echo(ctx, t.data, t.len);
    ngx_http_voice_emb_lit(ctx, ". ");

    if (words == 1) {
        ngx_http_voice_emb_lit(ctx, "That is one word. ");

    } else {
        ngx_http_voice_emb_lit(ctx, "That is ");
        ngx_http_voice_emb_add(ctx, buf,
                               ngx_sprintf(buf, "%ui", words) - buf);
        ngx_http_voice_emb_lit(ctx, " words, from \"");
        ngx_http_voice_emb_echo(ctx, first.data, first.len);
        ngx_http_voice_emb_lit(ctx, "\" to \"");
        ngx_http_voice_emb_echo(ctx, final.data, final.len);
        ngx_http_voice_emb_lit(ctx, "\". ");
    }

    if (text->len && last[-1] == '?') {
        ngx_http_voice_emb_lit(ctx, "That sounds like a question, and I am "
                                    "only an offline responder. ");
    }

    switch (hash % 3) {

    case 0:
        ngx_http_voice_emb_lit(ctx, "What else would you like to say about ");
        ngx_http_voice_emb_echo(ctx, final.data, final.len);
        ngx_http_voice_emb_lit(ctx, "?");
        break;

    case 1:
        ngx_http_voice_emb_lit(ctx, "Shall we talk more about ");
        ngx_http_voice_emb_echo(ctx, first.data, first.len);
        ngx_http_voice_emb_lit(ctx, "?");
        break;

    default:
        ngx_http_voice_emb_lit(ctx, "How can I help you with that?");
        break;
    }
}


static void
ngx_http_voice_emb_result(ngx_http_voice_emb_ctx_t *ctx,
    ngx_http_voice_llm_message_t *messages,
    ngx_http_voice_llm_message_t *result)
{
    ngx_str_t                     *name;
    ngx_http_voice_llm_message_t  *m;

    name = NULL;

    for (m = messages; m; m = m->next) {
        if (m->role == NGX_HTTP_VOICE_LLM_TOOL_CALL
            && m->tool_id.len == result->tool_id.len
            && ngx_strncmp(m->tool_id.data, result->tool_id.data,
                           m->tool_id.len) == 0)
        {
            name = &m->tool_name;
        }
    }

    if (name && name->len) {
        ngx_http_voice_emb_lit(ctx, "The ");
        ngx_http_voice_emb_echo(ctx, name->data, name->len);
        ngx_http_voice_emb_lit(ctx, " tool answered: ");

    } else {
        ngx_http_voice_emb_lit(ctx, "The tool answered: ");
    }

    ngx_http_voice_emb_echo(ctx, result->text.data, result->text.len);
    ngx_http_voice_emb_lit(ctx, ". Is there anything else?");
}


/* the first or the last word, without the punctuation around it */

static void
ngx_http_voice_emb_word(ngx_str_t *text, ngx_uint_t last, ngx_str_t *word)
{
    u_char  *p, *q, *start, *end;

    start = text->data;
    end = text->data + text->len;

    if (last) {
        for (p = end; p > start && !ngx_http_voice_emb_space(p[-1]); p--) {
            /* void */
        }

        q = end;

    } else {
        p = start;

        for (q = start; q < end && !ngx_http_voice_emb_space(*q); q++) {
            /* void */
        }
    }

    word->data = p;
    word->len = q - p;

    while (word->len && ngx_strchr(".,;:!?\"'()", word->data[0]) != NULL) {
        word->data++;
        word->len--;
    }

    while (word->len
           && ngx_strchr(".,;:!?\"'()", word->data[word->len - 1]) != NULL)
    {
        word->len--;
    }

    if (word->len == 0) {
        word->data = p;
        word->len = q - p;
    }
}


/* repeats some of the user's bytes, bounded, on a character boundary */

static void
ngx_http_voice_emb_echo(ngx_http_voice_emb_ctx_t *ctx, const u_char *data,
    size_t len)
{
    size_t  n;

    if (len <= NGX_HTTP_VOICE_EMB_ECHO) {
        ngx_http_voice_emb_add(ctx, data, len);
        return;
    }

    n = NGX_HTTP_VOICE_EMB_ECHO;

    while (n && (data[n] & 0xc0) == 0x80) {
        n--;
    }

    ngx_http_voice_emb_add(ctx, data, n);
    ngx_http_voice_emb_lit(ctx, "...");
}


/* the reply stops at voice_llm_max_text, on a character boundary */

static void
ngx_http_voice_emb_add(ngx_http_voice_emb_ctx_t *ctx, const u_char *data,
    size_t len)
{
    size_t  n;

    n = ngx_min(len, ctx->size - ctx->len);

    if (n < len) {
        while (n && (data[n] & 0xc0) == 0x80) {
            n--;
        }

        /* nothing more goes in after a cut */
        ctx->size = ctx->len + n;
    }

    ngx_memcpy(ctx->reply + ctx->len, data, n);
    ctx->len += n;
}
