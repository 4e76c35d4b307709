
/*
 * The embedded offline STT: pocketsphinx decoders in nginx's thread pool.
 *
 * A decoder costs tens of megabytes and a fraction of a second to make,
 * so each worker makes a few when it starts and lends one to a session for
 * one utterance at a time.  Sessions that find none free wait in a queue
 * with their audio buffered, and are fed faster than real time once one
 * frees.  Every pocketsphinx call runs in a thread task; the event loop
 * only copies audio in and text out.
 *
 * What a thread task needs (the decoder, its audio, the text it read)
 * lives in a worker-level slot, never in a session: a session may end
 * while its task runs, and the slot then just goes back to the pool.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <pocketsphinx.h>
#include <sphinxbase/err.h>

#include "ngx_http_voice_module.h"
#include "ngx_http_voice_stt.h"


#define NGX_HTTP_VOICE_EMB_RATE      16000

/* audio kept from before the VAD heard speech: the onset it missed */
#define NGX_HTTP_VOICE_EMB_PREROLL   (NGX_HTTP_VOICE_EMB_RATE * 300 / 1000)

/* a task decodes at least this much audio, unless the utterance ends */
#define NGX_HTTP_VOICE_EMB_CHUNK     (NGX_HTTP_VOICE_EMB_RATE / 10)

/* and at most this much: a backlog is caught up in steps of a second */
#define NGX_HTTP_VOICE_EMB_TASK_MAX  NGX_HTTP_VOICE_EMB_RATE

/* utterances that ended and still wait for their decoder */
#define NGX_HTTP_VOICE_EMB_ENDS      4

#define NGX_HTTP_VOICE_EMB_UNAVAILABLE  "the embedded STT is not available"


typedef enum {
    NGX_HTTP_VOICE_EMB_CREATE = 0,
    NGX_HTTP_VOICE_EMB_DECODE
} ngx_http_voice_emb_op_e;


typedef struct ngx_http_voice_emb_ctx_s  ngx_http_voice_emb_ctx_t;


/* one decoder of the worker, and everything its thread task touches */
typedef struct {
    ngx_queue_t                  queue;      /* in the free list */
    ngx_uint_t                   index;
    ps_decoder_t                *ps;
    ngx_thread_task_t           *task;
    ngx_http_voice_emb_ctx_t    *owner;      /* NULL: free, or owner gone */

    /* the task's input, set before it is posted */
    ngx_http_voice_emb_op_e      op;
    int16_t                     *pcm;        /* TASK_MAX samples */
    size_t                       n;
    unsigned                     begin:1;    /* first of an utterance */
    unsigned                     last:1;     /* and last: the final */

    /* set by the task: no bit fields, the event loop writes those */
    ngx_uint_t                   started;    /* an utterance is open */
    ngx_uint_t                   error;
    char                        *hyp;        /* malloc()ed in the thread */
    size_t                       hyp_len;
    size_t                       hyp_size;

    /* the event loop's */
    unsigned                     busy:1;     /* a task is posted */
    unsigned                     fresh:1;    /* lent, no task posted yet */
    volatile ngx_uint_t          done;       /* the task has returned */
} ngx_http_voice_emb_slot_t;


/* the worker's decoders and the sessions waiting for one */
typedef struct {
    ngx_http_voice_main_conf_t  *vmcf;
    ngx_log_t                   *log;
    ngx_http_voice_emb_slot_t   *slots;
    ngx_uint_t                   nslots;
    ngx_uint_t                   creating;
    ngx_uint_t                   ready;
    ngx_queue_t                  free;
    ngx_queue_t                  waiting;    /* of ngx_http_voice_emb_ctx_t */
    char                        *hmm;
    char                        *lm;
    char                        *dict;
} ngx_http_voice_emb_pool_t;


struct ngx_http_voice_emb_ctx_s {
    ngx_http_voice_stt_t        *stt;
    ngx_queue_t                  queue;      /* in the waiting queue */
    ngx_http_voice_emb_slot_t   *slot;       /* the decoder lent */

    /* recent audio while no utterance is active: a ring */
    int16_t                     *preroll;
    size_t                       pre_pos;
    size_t                       pre_len;

    /*
     * Audio of utterances not yet handed to a decoder, oldest first:
     * ends[] are the offsets where finalized utterances end; an active
     * utterance, if any, runs from the last of them to len.
     */
    int16_t                     *buf;
    size_t                       len;
    size_t                       size;
    size_t                       ends[NGX_HTTP_VOICE_EMB_ENDS];
    ngx_uint_t                   nends;

    ngx_msec_t                   partial_time;
    u_char                      *partial;    /* the last one reported */
    size_t                       partial_len;
    size_t                       partial_size;
    u_char                      *text;       /* a final being reported */
    size_t                       text_size;

    unsigned                     active:1;   /* an utterance is open */
    unsigned                     waiting:1;  /* in the waiting queue */
    unsigned                     dropped:1;  /* this utterance lost audio */
};


static char *ngx_http_voice_stt_embedded_init_conf(ngx_conf_t *cf,
    ngx_http_voice_stt_conf_t *conf);
static ngx_int_t ngx_http_voice_stt_embedded_open(ngx_http_voice_stt_t *stt);
static ngx_int_t ngx_http_voice_stt_embedded_audio(ngx_http_voice_stt_t *stt,
    const int16_t *pcm, size_t n);
static ngx_int_t ngx_http_voice_stt_embedded_finalize(
    ngx_http_voice_stt_t *stt);
static void ngx_http_voice_stt_embedded_close(ngx_http_voice_stt_t *stt);

static void ngx_http_voice_emb_preroll(ngx_http_voice_emb_ctx_t *ctx,
    const int16_t *pcm, size_t n);
static ngx_int_t ngx_http_voice_emb_start(ngx_http_voice_emb_ctx_t *ctx);
static void ngx_http_voice_emb_append(ngx_http_voice_emb_ctx_t *ctx,
    const int16_t *pcm, size_t n);
static ngx_int_t ngx_http_voice_emb_feed(ngx_http_voice_emb_ctx_t *ctx);
static void ngx_http_voice_emb_release(ngx_http_voice_emb_slot_t *slot);
static void ngx_http_voice_emb_lend(ngx_http_voice_emb_slot_t *slot,
    ngx_http_voice_emb_ctx_t *ctx);
static void ngx_http_voice_emb_fail_waiting(void);
static ngx_int_t ngx_http_voice_emb_keep(ngx_http_voice_emb_ctx_t *ctx,
    u_char **buf, size_t *size, ngx_http_voice_emb_slot_t *slot);
static void ngx_http_voice_emb_thread(void *data, ngx_log_t *log);
static void ngx_http_voice_emb_create(ngx_http_voice_emb_slot_t *slot);
static void ngx_http_voice_emb_decode(ngx_http_voice_emb_slot_t *slot);
static void ngx_http_voice_emb_done(ngx_event_t *ev);
static void ngx_http_voice_emb_created(ngx_http_voice_emb_slot_t *slot);
static void ngx_http_voice_emb_decoded(ngx_http_voice_emb_slot_t *slot);
static char *ngx_http_voice_emb_check_load(ngx_conf_t *cf,
    ngx_http_voice_main_conf_t *vmcf);
static char *ngx_http_voice_emb_check_file(ngx_conf_t *cf, ngx_str_t *dir,
    char *name);


/* per worker: created by init_process */
static ngx_http_voice_emb_pool_t  *ngx_http_voice_emb_pool;


const ngx_http_voice_stt_engine_t  ngx_http_voice_stt_embedded = {
    "embedded",
    ngx_http_voice_stt_embedded_init_conf,
    ngx_http_voice_stt_embedded_open,
    ngx_http_voice_stt_embedded_audio,
    ngx_http_voice_stt_embedded_finalize,
    ngx_http_voice_stt_embedded_close
};


static char *
ngx_http_voice_stt_embedded_init_conf(ngx_conf_t *cf,
    ngx_http_voice_stt_conf_t *conf)
{
    /* the buffer holds at least the pre-roll and one task's audio */

    if (conf->buffer < 16 * 1024) {
        return "needs \"voice_stt_buffer\" of at least 16k";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_voice_stt_embedded_open(ngx_http_voice_stt_t *stt)
{
    ngx_http_voice_emb_ctx_t  *ctx;

    if (ngx_http_voice_emb_pool == NULL) {
        ngx_log_error(NGX_LOG_ERR, stt->log, 0,
                      "voice: the embedded STT has no decoders "
                      "in this process");
        return NGX_ERROR;
    }

    ctx = ngx_pcalloc(stt->pool, sizeof(ngx_http_voice_emb_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->size = stt->conf->buffer / sizeof(int16_t);

    ctx->preroll = ngx_palloc(stt->pool,
                              NGX_HTTP_VOICE_EMB_PREROLL * sizeof(int16_t));
    ctx->buf = ngx_palloc(stt->pool, ctx->size * sizeof(int16_t));

    if (ctx->preroll == NULL || ctx->buf == NULL) {
        return NGX_ERROR;
    }

    ctx->stt = stt;
    stt->ctx = ctx;

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_stt_embedded_audio(ngx_http_voice_stt_t *stt,
    const int16_t *pcm, size_t n)
{
    ngx_http_voice_emb_ctx_t  *ctx;

    ctx = stt->ctx;

    if (!ctx->active) {
        if (!stt->talking) {
            ngx_http_voice_emb_preroll(ctx, pcm, n);
            return NGX_OK;
        }

        if (ngx_http_voice_emb_start(ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        if (!ctx->active) {
            /* too many ended utterances queued: this one is lost */
            return NGX_OK;
        }
    }

    ngx_http_voice_emb_append(ctx, pcm, n);

    return ngx_http_voice_emb_feed(ctx);
}


static ngx_int_t
ngx_http_voice_stt_embedded_finalize(ngx_http_voice_stt_t *stt)
{
    ngx_http_voice_emb_ctx_t  *ctx;

    ctx = stt->ctx;

    if (!ctx->active) {
        return NGX_OK;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, stt->log, 0,
                   "voice: stt embedded utterance ends, %uz samples "
                   "not decoded, %ui before it", ctx->len, ctx->nends);

    ctx->active = 0;
    ctx->ends[ctx->nends++] = ctx->len;

    return ngx_http_voice_emb_feed(ctx);
}


static void
ngx_http_voice_stt_embedded_close(ngx_http_voice_stt_t *stt)
{
    ngx_http_voice_emb_ctx_t   *ctx;
    ngx_http_voice_emb_slot_t  *slot;

    ctx = stt->ctx;

    if (ctx == NULL) {
        return;
    }

    stt->ctx = NULL;

    if (ctx->waiting) {
        ngx_queue_remove(&ctx->queue);
        ctx->waiting = 0;
    }

    slot = ctx->slot;

    if (slot == NULL) {
        return;
    }

    ctx->slot = NULL;
    slot->owner = NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, stt->log, 0,
                   "voice: stt embedded decoder #%ui left by its session%s",
                   slot->index, slot->busy ? ", task running" : "");

    /* a running task finds no owner when it completes and frees the slot */

    if (!slot->busy) {
        ngx_http_voice_emb_release(slot);
    }
}


static void
ngx_http_voice_emb_preroll(ngx_http_voice_emb_ctx_t *ctx, const int16_t *pcm,
    size_t n)
{
    size_t  k;

    if (n >= NGX_HTTP_VOICE_EMB_PREROLL) {
        pcm += n - NGX_HTTP_VOICE_EMB_PREROLL;
        n = NGX_HTTP_VOICE_EMB_PREROLL;
    }

    while (n) {
        k = ngx_min(n, NGX_HTTP_VOICE_EMB_PREROLL - ctx->pre_pos);

        ngx_memcpy(ctx->preroll + ctx->pre_pos, pcm, k * sizeof(int16_t));

        ctx->pre_pos = (ctx->pre_pos + k) % NGX_HTTP_VOICE_EMB_PREROLL;
        ctx->pre_len = ngx_min(ctx->pre_len + k, NGX_HTTP_VOICE_EMB_PREROLL);
        pcm += k;
        n -= k;
    }
}


/* the VAD hears speech: an utterance begins, with the pre-roll before it */

static ngx_int_t
ngx_http_voice_emb_start(ngx_http_voice_emb_ctx_t *ctx)
{
    size_t                      first;
    ngx_queue_t                *q;
    ngx_http_voice_stt_t       *stt;
    ngx_http_voice_emb_pool_t  *pool;

    stt = ctx->stt;
    pool = ngx_http_voice_emb_pool;

    if (pool->ready == 0 && pool->creating == 0) {
        return ngx_http_voice_stt_failed(stt, 0,
                                         NGX_HTTP_VOICE_EMB_UNAVAILABLE);
    }

    if (ctx->nends == NGX_HTTP_VOICE_EMB_ENDS) {
        ngx_log_error(NGX_LOG_WARN, stt->log, 0,
                      "voice: the embedded STT is busy, an utterance "
                      "is not transcribed");
        return NGX_OK;
    }

    ctx->active = 1;
    ctx->dropped = 0;

    /* the ring from its oldest sample on */

    first = (ctx->pre_pos + NGX_HTTP_VOICE_EMB_PREROLL - ctx->pre_len)
            % NGX_HTTP_VOICE_EMB_PREROLL;

    if (first + ctx->pre_len > NGX_HTTP_VOICE_EMB_PREROLL) {
        ngx_http_voice_emb_append(ctx, ctx->preroll + first,
                                  NGX_HTTP_VOICE_EMB_PREROLL - first);
        ngx_http_voice_emb_append(ctx, ctx->preroll,
                                  ctx->pre_pos);

    } else {
        ngx_http_voice_emb_append(ctx, ctx->preroll + first, ctx->pre_len);
    }

    ctx->pre_len = 0;
    ctx->pre_pos = 0;

    if (ctx->slot || ctx->waiting) {
        /* the previous utterance still has the decoder, or waits for one */
        return NGX_OK;
    }

    if (!ngx_queue_empty(&pool->free)) {
        q = ngx_queue_head(&pool->free);
        ngx_queue_remove(q);
        ngx_http_voice_emb_lend(ngx_queue_data(q, ngx_http_voice_emb_slot_t,
                                               queue),
                                ctx);
        return NGX_OK;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, stt->log, 0,
                   "voice: stt embedded waits for a decoder");

    ngx_queue_insert_tail(&pool->waiting, &ctx->queue);
    ctx->waiting = 1;

    return NGX_OK;
}


static void
ngx_http_voice_emb_append(ngx_http_voice_emb_ctx_t *ctx, const int16_t *pcm,
    size_t n)
{
    size_t  room;

    room = ctx->size - ctx->len;

    if (n > room) {
        if (!ctx->dropped) {
            ngx_log_error(NGX_LOG_WARN, ctx->stt->log, 0,
                          "voice: the embedded STT is busy and "
                          "\"voice_stt_buffer\" is full, audio of an "
                          "utterance is lost");
            ctx->dropped = 1;
        }

        n = room;
    }

    ngx_memcpy(ctx->buf + ctx->len, pcm, n * sizeof(int16_t));
    ctx->len += n;
}


/*
 * Hands the decoder the next piece of the oldest utterance when no task
 * is running: at least a chunk, or all that is left of one that ended.
 */

static ngx_int_t
ngx_http_voice_emb_feed(ngx_http_voice_emb_ctx_t *ctx)
{
    size_t                      avail, n;
    ngx_uint_t                  i, last;
    ngx_http_voice_emb_slot_t  *slot;

    slot = ctx->slot;

    if (slot == NULL || slot->busy) {
        return NGX_OK;
    }

    if (ctx->nends) {
        avail = ctx->ends[0];
        last = (avail <= NGX_HTTP_VOICE_EMB_TASK_MAX);

    } else {
        avail = ctx->len;
        last = 0;

        if (avail < NGX_HTTP_VOICE_EMB_CHUNK) {
            return NGX_OK;
        }
    }

    n = ngx_min(avail, NGX_HTTP_VOICE_EMB_TASK_MAX);

    /* the task gets its own copy: the session may be gone when it runs */

    ngx_memcpy(slot->pcm, ctx->buf, n * sizeof(int16_t));

    ctx->len -= n;
    ngx_memmove(ctx->buf, ctx->buf + n, ctx->len * sizeof(int16_t));

    for (i = 0; i < ctx->nends; i++) {
        ctx->ends[i] -= n;
    }

    if (last) {
        ctx->nends--;
        ngx_memmove(ctx->ends, ctx->ends + 1, ctx->nends * sizeof(size_t));
    }

    slot->op = NGX_HTTP_VOICE_EMB_DECODE;
    slot->n = n;
    slot->begin = slot->fresh;
    slot->last = last;
    slot->fresh = 0;
    slot->done = 0;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ctx->stt->log, 0,
                   "voice: stt embedded decoder #%ui task: %uz samples%s%s",
                   slot->index, n, slot->begin ? ", first" : "",
                   last ? ", last" : "");

    if (ngx_thread_task_post(ngx_http_voice_emb_pool->vmcf->thread_pool,
                             slot->task)
        != NGX_OK)
    {
        /* the queue of the thread pool is full: nothing will come */
        return ngx_http_voice_stt_failed(ctx->stt, 0,
                                         "the embedded STT is overloaded");
    }

    slot->busy = 1;

    return NGX_OK;
}


/* a decoder is free: the longest waiting session gets it */

static void
ngx_http_voice_emb_release(ngx_http_voice_emb_slot_t *slot)
{
    ngx_queue_t                *q;
    ngx_http_voice_emb_ctx_t   *ctx;
    ngx_http_voice_emb_pool_t  *pool;

    pool = ngx_http_voice_emb_pool;

    slot->owner = NULL;

    if (ngx_queue_empty(&pool->waiting)) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "voice: stt embedded decoder #%ui free", slot->index);

        ngx_queue_insert_tail(&pool->free, &slot->queue);
        return;
    }

    q = ngx_queue_head(&pool->waiting);
    ngx_queue_remove(q);

    ctx = ngx_queue_data(q, ngx_http_voice_emb_ctx_t, queue);
    ctx->waiting = 0;

    ngx_http_voice_emb_lend(slot, ctx);

    /*
     * Its audio was buffered while it waited.  A post that fails here
     * ends that session (it gets a report); this one is not affected.
     */
    (void) ngx_http_voice_emb_feed(ctx);
}


static void
ngx_http_voice_emb_lend(ngx_http_voice_emb_slot_t *slot,
    ngx_http_voice_emb_ctx_t *ctx)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->stt->log, 0,
                   "voice: stt embedded decoder #%ui lent, %uz samples "
                   "waiting", slot->index, ctx->len);

    slot->owner = ctx;
    slot->fresh = 1;
    ctx->slot = slot;
    ctx->partial_time = ngx_current_msec;
    ctx->partial_len = 0;
}


/* no decoder could be made: the sessions waiting for one end */

static void
ngx_http_voice_emb_fail_waiting(void)
{
    ngx_queue_t                *q;
    ngx_http_voice_emb_ctx_t   *ctx;
    ngx_http_voice_emb_pool_t  *pool;

    pool = ngx_http_voice_emb_pool;

    while (!ngx_queue_empty(&pool->waiting)) {
        q = ngx_queue_head(&pool->waiting);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_voice_emb_ctx_t, queue);
        ctx->waiting = 0;

        /* the session ends; its close finds nothing left to undo */
        (void) ngx_http_voice_stt_failed(ctx->stt, 0,
                                         NGX_HTTP_VOICE_EMB_UNAVAILABLE);
    }
}


/* copies the task's text into session memory, which outlives the slot */

static ngx_int_t
ngx_http_voice_emb_keep(ngx_http_voice_emb_ctx_t *ctx, u_char **buf,
    size_t *size, ngx_http_voice_emb_slot_t *slot)
{
    size_t   n;
    u_char  *p;

    if (slot->hyp_len > *size) {
        n = ngx_max(slot->hyp_len, 2 * *size);

        p = ngx_pnalloc(ctx->stt->pool, n);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (*buf) {
            ngx_pfree(ctx->stt->pool, *buf);
        }

        *buf = p;
        *size = n;
    }

    ngx_memcpy(*buf, slot->hyp, slot->hyp_len);

    return NGX_OK;
}


/* ---- thread side: only the slot, never a session ------------------------ */

static void
ngx_http_voice_emb_thread(void *data, ngx_log_t *log)
{
    ngx_http_voice_emb_slot_t  *slot = data;

    if (slot->op == NGX_HTTP_VOICE_EMB_CREATE) {
        ngx_http_voice_emb_create(slot);

    } else {
        ngx_http_voice_emb_decode(slot);
    }

    slot->done = 1;
}


static void
ngx_http_voice_emb_create(ngx_http_voice_emb_slot_t *slot)
{
    cmd_ln_t                   *config;
    ngx_http_voice_emb_pool_t  *pool;

    pool = ngx_http_voice_emb_pool;

    /*
     * The second pass and the lattice search would make the final wait
     * for a rescoring of the whole utterance; the first pass alone has
     * it ready a few milliseconds after the end.
     */

    config = cmd_ln_init(NULL, ps_args(), TRUE,
                         "-hmm", pool->hmm,
                         "-lm", pool->lm,
                         "-dict", pool->dict,
                         "-fwdflat", "no",
                         "-bestpath", "no",
                         NULL);
    if (config == NULL) {
        slot->error = 1;
        return;
    }

    slot->ps = ps_init(config);

    /* the decoder holds its own reference */
    cmd_ln_free_r(config);

    if (slot->ps == NULL) {
        slot->error = 1;
    }
}


static void
ngx_http_voice_emb_decode(ngx_http_voice_emb_slot_t *slot)
{
    size_t       len;
    char        *p;
    int32        score;
    const char  *hyp;

    slot->error = 0;

    if (slot->begin) {
        if (slot->started) {
            /* left open by a session that went away: discard it */
            (void) ps_end_utt(slot->ps);
            slot->started = 0;
        }

        if (ps_start_utt(slot->ps) < 0) {
            slot->error = 1;
            return;
        }

        slot->started = 1;
    }

    if (!slot->started) {
        slot->error = 1;
        return;
    }

    if (slot->n && ps_process_raw(slot->ps, slot->pcm, slot->n, 0, 0) < 0) {
        slot->error = 1;
    }

    if (slot->last) {
        if (ps_end_utt(slot->ps) < 0) {
            slot->error = 1;
        }

        slot->started = 0;
    }

    hyp = ps_get_hyp(slot->ps, &score);
    len = hyp ? ngx_strlen(hyp) : 0;

    if (len > slot->hyp_size) {
        p = malloc(len);
        if (p == NULL) {
            slot->hyp_len = 0;
            slot->error = 1;
            return;
        }

        free(slot->hyp);
        slot->hyp = p;
        slot->hyp_size = len;
    }

    if (len) {
        ngx_memcpy(slot->hyp, hyp, len);
    }

    slot->hyp_len = len;
}


/* ---- event loop side: a task completed ---------------------------------- */

static void
ngx_http_voice_emb_done(ngx_event_t *ev)
{
    ngx_http_voice_emb_slot_t  *slot;

    slot = ev->data;
    slot->busy = 0;

    if (slot->op == NGX_HTTP_VOICE_EMB_CREATE) {
        ngx_http_voice_emb_created(slot);

    } else {
        ngx_http_voice_emb_decoded(slot);
    }
}


static void
ngx_http_voice_emb_created(ngx_http_voice_emb_slot_t *slot)
{
    ngx_http_voice_emb_pool_t  *pool;

    pool = ngx_http_voice_emb_pool;
    pool->creating--;

    if (slot->error) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "voice: the embedded STT could not create a decoder "
                      "from the model \"%V\"", &pool->vmcf->stt_model);

        if (pool->ready == 0 && pool->creating == 0) {
            ngx_http_voice_emb_fail_waiting();
        }

        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "voice: stt embedded decoder #%ui ready", slot->index);

    pool->ready++;

    ngx_http_voice_emb_release(slot);
}


static void
ngx_http_voice_emb_decoded(ngx_http_voice_emb_slot_t *slot)
{
    size_t                     len;
    ngx_http_voice_stt_t      *stt;
    ngx_http_voice_emb_ctx_t  *ctx;

    ctx = slot->owner;

    if (ctx == NULL) {
        /* the session went away: the next utterance closes what is open */
        ngx_http_voice_emb_release(slot);
        return;
    }

    stt = ctx->stt;

    if (slot->error) {
        ngx_log_error(NGX_LOG_ERR, stt->log, 0,
                      "voice: the embedded STT failed to decode "
                      "(decoder #%ui)", slot->index);
    }

    if (slot->last) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, stt->log, 0,
                       "voice: stt embedded final \"%*s\"",
                       slot->hyp_len, slot->hyp);

        len = slot->hyp_len;

        if (ngx_http_voice_emb_keep(ctx, &ctx->text, &ctx->text_size, slot)
            != NGX_OK)
        {
            len = 0;
        }

        /*
         * The decoder goes to the longest waiting session before the
         * report, which may end this one.  If this session spoke again
         * meanwhile, it queues behind the others.
         */

        ctx->slot = NULL;

        if (ctx->nends || ctx->active) {
            ngx_queue_insert_tail(&ngx_http_voice_emb_pool->waiting,
                                  &ctx->queue);
            ctx->waiting = 1;
        }

        /* from here on the slot may be another session's */
        ngx_http_voice_emb_release(slot);

        if (len == 0) {
            return;
        }

        (void) ngx_http_voice_stt_result(stt, ctx->text, len, 1, 1);

        return;
    }

    if (ngx_http_voice_emb_feed(ctx) != NGX_OK) {
        return;
    }

    /* partials only while the turn lasts, at most every partial_interval */

    if (ctx->nends
        || slot->hyp_len == 0
        || ngx_current_msec - ctx->partial_time < stt->conf->partial_interval
        || (slot->hyp_len == ctx->partial_len
            && ngx_memcmp(slot->hyp, ctx->partial, slot->hyp_len) == 0))
    {
        return;
    }

    if (ngx_http_voice_emb_keep(ctx, &ctx->partial, &ctx->partial_size, slot)
        != NGX_OK)
    {
        return;
    }

    ctx->partial_len = slot->hyp_len;
    ctx->partial_time = ngx_current_msec;

    (void) ngx_http_voice_stt_result(stt, ctx->partial, ctx->partial_len,
                                     0, 0);
}


/* ---- configuration and the worker's life -------------------------------- */

char *
ngx_http_voice_stt_embedded_check(ngx_conf_t *cf,
    ngx_http_voice_main_conf_t *vmcf)
{
    if (ngx_conf_full_name(cf->cycle, &vmcf->stt_model, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_voice_emb_check_file(cf, &vmcf->stt_model, "en-us/mdef")
        != NGX_CONF_OK
        || ngx_http_voice_emb_check_file(cf, &vmcf->stt_model, "en-us.lm.bin")
           != NGX_CONF_OK
        || ngx_http_voice_emb_check_file(cf, &vmcf->stt_model,
                                         "cmudict-en-us.dict")
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return ngx_http_voice_emb_check_load(cf, vmcf);
}


/*
 * The library ends the process (exit()) on a model it cannot parse, which
 * in a worker would be a restart loop: a child loads the model once now,
 * so that nginx -t and a reload refuse it instead.
 */

static char *
ngx_http_voice_emb_check_load(ngx_conf_t *cf, ngx_http_voice_main_conf_t *vmcf)
{
    int            status;
    char          *hmm, *lm, *dict;
    ngx_pid_t      pid;
    cmd_ln_t      *config;
    ps_decoder_t  *ps;

    hmm = ngx_pnalloc(cf->temp_pool, vmcf->stt_model.len + 64);
    lm = ngx_pnalloc(cf->temp_pool, vmcf->stt_model.len + 64);
    dict = ngx_pnalloc(cf->temp_pool, vmcf->stt_model.len + 64);

    if (hmm == NULL || lm == NULL || dict == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf((u_char *) hmm, "%V/en-us%Z", &vmcf->stt_model);
    ngx_sprintf((u_char *) lm, "%V/en-us.lm.bin%Z", &vmcf->stt_model);
    ngx_sprintf((u_char *) dict, "%V/cmudict-en-us.dict%Z", &vmcf->stt_model);

    pid = fork();

    if (pid == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "fork() failed");
        return NGX_CONF_ERROR;
    }

    if (pid == 0) {
        err_set_callback(NULL, NULL);
        err_set_logfp(NULL);

        config = cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", hmm, "-lm", lm,
                             "-dict", dict, NULL);
        ps = config ? ps_init(config) : NULL;

        _exit(ps ? 0 : 2);
    }

    while (waitpid(pid, &status, 0) == -1) {
        if (ngx_errno != NGX_EINTR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "waitpid() failed");
            return NGX_CONF_ERROR;
        }
    }

    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_stt_model\" \"%V\" is not a usable "
                           "pocketsphinx model: loading it failed",
                           &vmcf->stt_model);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * A model file must be there and readable now, or only the first session
 * would find out; the acoustic model is a directory, its mdef tells.
 */

static char *
ngx_http_voice_emb_check_file(ngx_conf_t *cf, ngx_str_t *dir, char *name)
{
    u_char    *p;
    ngx_fd_t   fd;

    p = ngx_pnalloc(cf->temp_pool, dir->len + 1 + ngx_strlen(name) + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(p, "%V/%s%Z", dir, name);

    fd = ngx_open_file(p, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"voice_stt_model\" \"%V\" is not a usable "
                           "pocketsphinx model: cannot read \"%s\"",
                           dir, p);
        return NGX_CONF_ERROR;
    }

    ngx_close_file(fd);

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_voice_stt_embedded_init_process(ngx_cycle_t *cycle,
    ngx_http_voice_main_conf_t *vmcf)
{
    ngx_uint_t                  i;
    ngx_http_voice_emb_slot_t  *slot;
    ngx_http_voice_emb_pool_t  *pool;

    /* cache managers and loaders have no thread pool and no sessions */

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    /*
     * The library would print to stderr, which nginx points at its error
     * log; its configuration dump bypasses the callback, hence both.
     */

    err_set_callback(NULL, NULL);
    err_set_logfp(NULL);

    pool = ngx_pcalloc(cycle->pool, sizeof(ngx_http_voice_emb_pool_t));
    if (pool == NULL) {
        return NGX_ERROR;
    }

    pool->vmcf = vmcf;
    pool->log = cycle->log;
    pool->nslots = vmcf->stt_decoders;

    ngx_queue_init(&pool->free);
    ngx_queue_init(&pool->waiting);

    pool->hmm = ngx_pnalloc(cycle->pool, vmcf->stt_model.len + 64);
    pool->lm = ngx_pnalloc(cycle->pool, vmcf->stt_model.len + 64);
    pool->dict = ngx_pnalloc(cycle->pool, vmcf->stt_model.len + 64);
    pool->slots = ngx_pcalloc(cycle->pool, pool->nslots * sizeof(*slot));

    if (pool->hmm == NULL || pool->lm == NULL || pool->dict == NULL
        || pool->slots == NULL)
    {
        return NGX_ERROR;
    }

    ngx_sprintf((u_char *) pool->hmm, "%V/en-us%Z", &vmcf->stt_model);
    ngx_sprintf((u_char *) pool->lm, "%V/en-us.lm.bin%Z", &vmcf->stt_model);
    ngx_sprintf((u_char *) pool->dict, "%V/cmudict-en-us.dict%Z",
                &vmcf->stt_model);

    ngx_http_voice_emb_pool = pool;

    for (i = 0; i < pool->nslots; i++) {
        slot = &pool->slots[i];

        slot->index = i;
        slot->pcm = ngx_palloc(cycle->pool,
                               NGX_HTTP_VOICE_EMB_TASK_MAX * sizeof(int16_t));
        slot->task = ngx_thread_task_alloc(cycle->pool, 0);

        if (slot->pcm == NULL || slot->task == NULL) {
            return NGX_ERROR;
        }

        slot->task->ctx = slot;
        slot->task->handler = ngx_http_voice_emb_thread;
        slot->task->event.handler = ngx_http_voice_emb_done;
        slot->task->event.data = slot;
        slot->task->event.log = cycle->log;

        /* each decoder is made in a thread: they load in parallel */

        slot->op = NGX_HTTP_VOICE_EMB_CREATE;
        slot->done = 0;

        if (ngx_thread_task_post(vmcf->thread_pool, slot->task) != NGX_OK) {
            return NGX_ERROR;
        }

        slot->busy = 1;
        pool->creating++;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                   "voice: stt embedded creating %ui decoders", pool->nslots);

    return NGX_OK;
}


void
ngx_http_voice_stt_embedded_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  i;
    ngx_http_voice_emb_slot_t  *slot;
    ngx_http_voice_emb_pool_t  *pool;

    pool = ngx_http_voice_emb_pool;

    if (pool == NULL) {
        return;
    }

    /*
     * The thread pool module exits first (core modules come before this
     * one) and joins its threads after the tasks queued before, so every
     * task has returned; one that has not is left alone.
     */

    for (i = 0; i < pool->nslots; i++) {
        slot = &pool->slots[i];

        if (slot->busy && !slot->done) {
            continue;
        }

        if (slot->ps) {
            (void) ps_free(slot->ps);
            slot->ps = NULL;
        }

        free(slot->hyp);
        slot->hyp = NULL;
    }

    ngx_http_voice_emb_pool = NULL;
}
