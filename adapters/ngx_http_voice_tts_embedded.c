
/*
 * The embedded offline TTS: espeak-ng in nginx's thread pool.
 *
 * espeak-ng keeps one synthesizer per process and is not thread-safe, so
 * a worker runs one synthesis at a time: phrases wait in a worker-level
 * queue and only its head is posted to the thread pool.  A phrase takes a
 * few milliseconds, so sessions interleave phrase by phrase; within a
 * session, phrases are spoken in order, one after the other.
 *
 * A phrase is a job: its text, settings, the audio and word positions
 * the synthesis made.  Jobs live on the heap, not in a session: a session
 * may end while its job is in the thread, and the job is then freed when
 * the thread hands it back.  The audio is reported from the event loop in
 * slices, so that the client's queue can pause it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <espeak-ng/espeak_ng.h>
#include <espeak-ng/speak_lib.h>

#include "ngx_http_voice_session.h"
#include "ngx_http_voice_tts.h"


#define NGX_HTTP_VOICE_TTS_EMB_VOICE    64      /* a voice name's room */
#define NGX_HTTP_VOICE_TTS_EMB_WPM      175     /* espeak-ng's at 1.0 */
#define NGX_HTTP_VOICE_TTS_EMB_RATE     22050   /* until the library says */

/* audio is reported in slices of a tenth of a second */
#define NGX_HTTP_VOICE_TTS_EMB_SLICES   10

#define NGX_HTTP_VOICE_TTS_EMB_FAILED   "the speech synthesizer failed"

/* what separates words, as the glue counts them */
#define ngx_http_voice_tts_emb_space(c)                                       \
    ((c) == ' ' || (c) == '\n' || (c) == '\t' || (c) == '\r')


typedef enum {
    NGX_HTTP_VOICE_TTS_EMB_PENDING = 0,   /* waits for its session's turn */
    NGX_HTTP_VOICE_TTS_EMB_QUEUED,        /* waits for the synthesizer */
    NGX_HTTP_VOICE_TTS_EMB_RUNNING,       /* in the thread pool */
    NGX_HTTP_VOICE_TTS_EMB_READY          /* audio being reported */
} ngx_http_voice_tts_emb_state_e;


typedef struct ngx_http_voice_tts_emb_ctx_s  ngx_http_voice_tts_emb_ctx_t;


/* where the first `words' words of a phrase have been spoken */
typedef struct {
    ngx_uint_t                       words;
    size_t                           sample;   /* from the phrase's start */
} ngx_http_voice_tts_emb_mark_t;


/* one phrase: what its thread task reads and writes */
typedef struct {
    ngx_thread_task_t                task;
    ngx_queue_t                      queue;    /* session's or worker's */
    ngx_http_voice_tts_emb_ctx_t    *owner;    /* NULL: abandoned */
    ngx_http_voice_tts_emb_state_e   state;

    ngx_uint_t                       turn;
    ngx_uint_t                       index;
    ngx_uint_t                       words;    /* reply words before */

    /* the task's input */
    u_char                          *text;     /* NUL-terminated */
    size_t                           len;
    const char                      *voice;
    int                              wpm;
    int                              flags;
    size_t                           max;      /* samples at most */
    ngx_atomic_t                     cancelled;

    /* the task's output */
    int16_t                         *pcm;      /* malloc()ed */
    size_t                           n;
    size_t                           size;
    ngx_http_voice_tts_emb_mark_t   *marks;
    ngx_uint_t                       nmarks;
    ngx_uint_t                       max_marks;
    ngx_uint_t                       truncated;
    ngx_uint_t                       error;

    /* the event loop's, while the audio is reported */
    size_t                           pos;
    uint64_t                         base;     /* reply samples before */
    ngx_uint_t                       mark;     /* next to report */
    unsigned                         started:1;
} ngx_http_voice_tts_emb_job_t;


/* per session */
struct ngx_http_voice_tts_emb_ctx_s {
    ngx_http_voice_tts_t            *tts;
    ngx_queue_t                      pending;  /* jobs after the current */
    ngx_http_voice_tts_emb_job_t    *job;      /* the current one */
    ngx_event_t                      event;    /* reports, posted */
    ngx_uint_t                       gen;      /* bumped by each drop */
    unsigned                         ended:1;
    unsigned                         paused:1;
};


/* per worker */
typedef struct {
    ngx_thread_pool_t               *pool;
    ngx_log_t                       *log;
    ngx_queue_t                      queue;    /* jobs waiting */
    ngx_http_voice_tts_emb_job_t    *running;
    ngx_uint_t                       rate;
    ngx_uint_t                       ready;

    /* the synthesizer's settings: only the thread that runs touches them */
    char                             voice[NGX_HTTP_VOICE_TTS_EMB_VOICE];
    int                              wpm;
} ngx_http_voice_tts_emb_worker_t;


static char *ngx_http_voice_tts_embedded_init_conf(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf);
static ngx_int_t ngx_http_voice_tts_embedded_open(ngx_http_voice_tts_t *tts);
static ngx_int_t ngx_http_voice_tts_embedded_speak(ngx_http_voice_tts_t *tts,
    ngx_http_voice_tts_phrase_t *phrase);
static ngx_int_t ngx_http_voice_tts_embedded_end(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_tts_embedded_pause(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_tts_embedded_resume(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_tts_embedded_cancel(ngx_http_voice_tts_t *tts);
static void ngx_http_voice_tts_embedded_close(ngx_http_voice_tts_t *tts);

static ngx_http_voice_tts_emb_job_t *ngx_http_voice_tts_emb_job(
    ngx_http_voice_tts_emb_ctx_t *ctx, ngx_http_voice_tts_phrase_t *phrase);
static void ngx_http_voice_tts_emb_free(ngx_http_voice_tts_emb_job_t *job);
static void ngx_http_voice_tts_emb_drop(ngx_http_voice_tts_emb_ctx_t *ctx);
static void ngx_http_voice_tts_emb_submit(ngx_http_voice_tts_emb_ctx_t *ctx);
static void ngx_http_voice_tts_emb_run(void);
static void ngx_http_voice_tts_emb_post(ngx_http_voice_tts_emb_ctx_t *ctx);
static void ngx_http_voice_tts_emb_posted(ngx_event_t *ev);
static void ngx_http_voice_tts_emb_done(ngx_event_t *ev);
static void ngx_http_voice_tts_emb_report(ngx_http_voice_tts_emb_ctx_t *ctx);
static ngx_int_t ngx_http_voice_tts_emb_deliver(
    ngx_http_voice_tts_emb_ctx_t *ctx);
static ngx_int_t ngx_http_voice_tts_emb_words(ngx_http_voice_tts_t *tts,
    ngx_http_voice_tts_emb_job_t *job, ngx_uint_t all);
static void ngx_http_voice_tts_emb_thread(void *data, ngx_log_t *log);
static int ngx_http_voice_tts_emb_synth(short *wav, int n,
    espeak_EVENT *events);
static void ngx_http_voice_tts_emb_mark(ngx_http_voice_tts_emb_job_t *job,
    espeak_EVENT *ev);
static ngx_uint_t ngx_http_voice_tts_emb_count(u_char *text, size_t len,
    size_t chars);
static char *ngx_http_voice_tts_emb_check(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf);
static int ngx_http_voice_tts_emb_check_synth(short *wav, int n,
    espeak_EVENT *events);
static espeak_ng_STATUS ngx_http_voice_tts_emb_init(void);


/* per worker: created by init_process */
static ngx_http_voice_tts_emb_worker_t  *ngx_http_voice_tts_emb_worker;


const ngx_http_voice_tts_engine_t  ngx_http_voice_tts_embedded = {
    "embedded",
    ngx_http_voice_tts_embedded_init_conf,
    ngx_http_voice_tts_embedded_open,
    ngx_http_voice_tts_embedded_speak,
    ngx_http_voice_tts_embedded_end,
    ngx_http_voice_tts_embedded_pause,
    ngx_http_voice_tts_embedded_resume,
    ngx_http_voice_tts_embedded_cancel,
    ngx_http_voice_tts_embedded_close
};


static char *
ngx_http_voice_tts_embedded_init_conf(ngx_conf_t *cf,
    ngx_http_voice_tts_conf_t *conf)
{
    u_char  *p;

    if (conf->voice.len == 0) {
        ngx_str_set(&conf->voice, "en-us");
    }

    if (conf->voice.len >= NGX_HTTP_VOICE_TTS_EMB_VOICE
        || ngx_strlchr(conf->voice.data, conf->voice.data + conf->voice.len,
                       '\0')
           != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_tts_voice\" \"%V\" is not an espeak-ng "
                           "voice name", &conf->voice);
        return NGX_CONF_ERROR;
    }

    /* the thread passes it to the library as a C string */

    p = ngx_pnalloc(cf->pool, conf->voice.len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(p, conf->voice.data, conf->voice.len);
    p[conf->voice.len] = '\0';
    conf->voice.data = p;

    return ngx_http_voice_tts_emb_check(cf, conf);
}


static ngx_int_t
ngx_http_voice_tts_embedded_open(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_tts_emb_ctx_t     *ctx;
    ngx_http_voice_tts_emb_worker_t  *w;

    ctx = ngx_pcalloc(tts->pool, sizeof(ngx_http_voice_tts_emb_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->tts = tts;
    ngx_queue_init(&ctx->pending);

    ctx->event.handler = ngx_http_voice_tts_emb_posted;
    ctx->event.data = ctx;
    ctx->event.log = tts->log;

    w = ngx_http_voice_tts_emb_worker;

    /* without a synthesizer, each reply fails on its own; the text goes on */

    tts->rate = (w && w->ready) ? w->rate : NGX_HTTP_VOICE_TTS_EMB_RATE;
    tts->ctx = ctx;

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_tts_embedded_speak(ngx_http_voice_tts_t *tts,
    ngx_http_voice_tts_phrase_t *phrase)
{
    ngx_http_voice_tts_emb_ctx_t     *ctx;
    ngx_http_voice_tts_emb_job_t     *job;
    ngx_http_voice_tts_emb_worker_t  *w;

    ctx = tts->ctx;
    w = ngx_http_voice_tts_emb_worker;

    if (w == NULL || !w->ready) {
        ngx_log_error(NGX_LOG_ERR, tts->log, 0,
                      "voice: the embedded TTS has no synthesizer "
                      "in this process");
        return NGX_ERROR;
    }

    if (phrase->index == 0) {
        /* a new reply: nothing of an earlier one may remain */
        ngx_http_voice_tts_emb_drop(ctx);
    }

    job = ngx_http_voice_tts_emb_job(ctx, phrase);
    if (job == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&ctx->pending, &job->queue);

    if (ctx->job == NULL) {
        ngx_http_voice_tts_emb_submit(ctx);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_voice_tts_embedded_end(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_tts_emb_ctx_t  *ctx;

    ctx = tts->ctx;
    ctx->ended = 1;

    /* all audio may be out already: done is reported from the event loop */

    if (ctx->job == NULL && ngx_queue_empty(&ctx->pending)) {
        ngx_http_voice_tts_emb_post(ctx);
    }

    return NGX_OK;
}


static void
ngx_http_voice_tts_embedded_pause(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_tts_emb_ctx_t  *ctx;

    ctx = tts->ctx;
    ctx->paused = 1;
}


static void
ngx_http_voice_tts_embedded_resume(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_tts_emb_ctx_t  *ctx;

    ctx = tts->ctx;

    if (!ctx->paused) {
        return;
    }

    ctx->paused = 0;

    /* the glue may be in the middle of a cancel: report later, not now */

    ngx_http_voice_tts_emb_post(ctx);
}


static void
ngx_http_voice_tts_embedded_cancel(ngx_http_voice_tts_t *tts)
{
    if (tts->ctx) {
        ngx_http_voice_tts_emb_drop(tts->ctx);
    }
}


static void
ngx_http_voice_tts_embedded_close(ngx_http_voice_tts_t *tts)
{
    ngx_http_voice_tts_emb_ctx_t  *ctx;

    ctx = tts->ctx;

    if (ctx == NULL) {
        return;
    }

    ngx_http_voice_tts_emb_drop(ctx);
    tts->ctx = NULL;
}


/* ---- jobs --------------------------------------------------------------- */

static ngx_http_voice_tts_emb_job_t *
ngx_http_voice_tts_emb_job(ngx_http_voice_tts_emb_ctx_t *ctx,
    ngx_http_voice_tts_phrase_t *phrase)
{
    u_char                           *p, *last;
    size_t                            size;
    ngx_uint_t                        wpm, marks;
    ngx_http_voice_tts_t             *tts;
    ngx_http_voice_tts_conf_t        *conf;
    ngx_http_voice_tts_emb_job_t     *job;
    ngx_http_voice_tts_emb_worker_t  *w;

    tts = ctx->tts;
    conf = tts->conf;
    w = ngx_http_voice_tts_emb_worker;

    /* a mark per word at most: words are at least a character and a space */

    marks = phrase->text.len / 2 + 2;

    size = sizeof(ngx_http_voice_tts_emb_job_t)
           + marks * sizeof(ngx_http_voice_tts_emb_mark_t)
           + phrase->text.len + 1;

    job = ngx_alloc(size, tts->log);
    if (job == NULL) {
        return NULL;
    }

    ngx_memzero(job, sizeof(ngx_http_voice_tts_emb_job_t));

    job->marks = (ngx_http_voice_tts_emb_mark_t *) (job + 1);
    job->max_marks = marks;
    job->text = (u_char *) (job->marks + marks);
    job->len = phrase->text.len;

    ngx_memcpy(job->text, phrase->text.data, phrase->text.len);
    job->text[job->len] = '\0';

    job->owner = ctx;
    job->turn = tts->turn;
    job->index = phrase->index;
    job->words = phrase->words;
    job->voice = (const char *) conf->voice.data;

    wpm = NGX_HTTP_VOICE_TTS_EMB_WPM * conf->speed / 100;
    wpm = ngx_max(wpm, espeakRATE_MINIMUM);
    wpm = ngx_min(wpm, espeakRATE_MAXIMUM);
    job->wpm = (int) wpm;

    /*
     * A phrase that ends a clause keeps its pause; one cut in mid-clause
     * runs on into the next without a gap.
     */

    job->flags = espeakCHARS_UTF8;

    for (last = job->text + job->len; last > job->text; last--) {
        if (!ngx_http_voice_tts_emb_space(last[-1])) {
            break;
        }
    }

    if (last > job->text) {
        p = (u_char *) ngx_strchr(".!?;:,", last[-1]);

        if (p != NULL) {
            job->flags |= espeakENDPAUSE;
        }
    }

    /*
     * A bound against text that expands a lot (long numbers): ten seconds
     * and half a second per character at the slowest rate, scaled to
     * this one.
     */

    job->max = w->rate * (10 + job->len / 2) * espeakRATE_MINIMUM / wpm;

    job->task.ctx = job;
    job->task.handler = ngx_http_voice_tts_emb_thread;
    job->task.event.handler = ngx_http_voice_tts_emb_done;
    job->task.event.data = job;
    job->task.event.log = w->log;

    return job;
}


static void
ngx_http_voice_tts_emb_free(ngx_http_voice_tts_emb_job_t *job)
{
    free(job->pcm);
    ngx_free(job);
}


/*
 * Drops the session's phrases now.  A job in the thread cannot be taken
 * back: it is abandoned, asked to stop, and freed when it returns.
 */

static void
ngx_http_voice_tts_emb_drop(ngx_http_voice_tts_emb_ctx_t *ctx)
{
    ngx_queue_t                   *q;
    ngx_http_voice_tts_emb_job_t  *job;

    while (!ngx_queue_empty(&ctx->pending)) {
        q = ngx_queue_head(&ctx->pending);
        ngx_queue_remove(q);
        ngx_http_voice_tts_emb_free(ngx_queue_data(q,
                                        ngx_http_voice_tts_emb_job_t, queue));
    }

    job = ctx->job;
    ctx->job = NULL;

    if (job) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                       "voice: tts embedded drops phrase %ui in state %d",
                       job->index, job->state);

        switch (job->state) {

        case NGX_HTTP_VOICE_TTS_EMB_RUNNING:
            job->owner = NULL;
            job->cancelled = 1;
            break;

        case NGX_HTTP_VOICE_TTS_EMB_QUEUED:
            ngx_queue_remove(&job->queue);

            /* fall through */

        default:
            ngx_http_voice_tts_emb_free(job);
        }
    }

    if (ctx->event.posted) {
        ngx_delete_posted_event(&ctx->event);
    }

    ctx->gen++;
    ctx->ended = 0;
    ctx->paused = 0;
}


/* the session's next phrase goes to the worker's queue */

static void
ngx_http_voice_tts_emb_submit(ngx_http_voice_tts_emb_ctx_t *ctx)
{
    ngx_queue_t                   *q;
    ngx_http_voice_tts_emb_job_t  *job;

    q = ngx_queue_head(&ctx->pending);
    ngx_queue_remove(q);

    job = ngx_queue_data(q, ngx_http_voice_tts_emb_job_t, queue);
    job->state = NGX_HTTP_VOICE_TTS_EMB_QUEUED;
    ctx->job = job;

    ngx_queue_insert_tail(&ngx_http_voice_tts_emb_worker->queue, &job->queue);

    ngx_http_voice_tts_emb_run();
}


/* the synthesizer is free: the oldest waiting job goes to the thread pool */

static void
ngx_http_voice_tts_emb_run(void)
{
    ngx_queue_t                      *q;
    ngx_http_voice_tts_emb_job_t     *job;
    ngx_http_voice_tts_emb_worker_t  *w;

    w = ngx_http_voice_tts_emb_worker;

    if (w->running || ngx_queue_empty(&w->queue)) {
        return;
    }

    q = ngx_queue_head(&w->queue);
    ngx_queue_remove(q);

    job = ngx_queue_data(q, ngx_http_voice_tts_emb_job_t, queue);
    job->state = NGX_HTTP_VOICE_TTS_EMB_RUNNING;
    w->running = job;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "voice: tts embedded synthesizes phrase %ui, %uz bytes",
                   job->index, job->len);

    if (ngx_thread_task_post(w->pool, &job->task) != NGX_OK) {
        /* it completes with an error, in this turn but not in this call */
        job->error = 1;
        ngx_post_event(&job->task.event, &ngx_posted_events);
    }
}


static void
ngx_http_voice_tts_emb_post(ngx_http_voice_tts_emb_ctx_t *ctx)
{
    if (!ctx->event.posted) {
        ngx_post_event(&ctx->event, &ngx_posted_events);
    }
}


/* ---- event loop side: reports ------------------------------------------- */

static void
ngx_http_voice_tts_emb_posted(ngx_event_t *ev)
{
    ngx_http_voice_tts_emb_report(ev->data);
}


static void
ngx_http_voice_tts_emb_done(ngx_event_t *ev)
{
    ngx_http_voice_tts_emb_job_t     *job;
    ngx_http_voice_tts_emb_ctx_t     *ctx;
    ngx_http_voice_tts_emb_worker_t  *w;

    job = ev->data;
    w = ngx_http_voice_tts_emb_worker;

    if (w->running == job) {
        w->running = NULL;
    }

    ctx = job->owner;

    if (ctx == NULL) {
        /* its session dropped it meanwhile */
        ngx_http_voice_tts_emb_free(job);
        ngx_http_voice_tts_emb_run();
        return;
    }

    job->state = NGX_HTTP_VOICE_TTS_EMB_READY;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ctx->tts->log, 0,
                   "voice: tts embedded phrase %ui: %uz samples, %ui marks, "
                   "error:%ui", job->index, job->n, job->nmarks, job->error);

    if (job->truncated) {
        ngx_log_error(NGX_LOG_WARN, ctx->tts->log, 0,
                      "voice: the embedded TTS cut a phrase at %uz "
                      "seconds of speech", job->max / w->rate);
    }

    /* the next session's phrase is synthesized while this one is reported */

    ngx_http_voice_tts_emb_run();

    ngx_http_voice_tts_emb_report(ctx);
}


/*
 * Reports from the event loop's own handlers: what they queue for the
 * client goes out now, as for the glue's own timers.
 */

static void
ngx_http_voice_tts_emb_report(ngx_http_voice_tts_emb_ctx_t *ctx)
{
    ngx_connection_t          *c;
    ngx_http_voice_session_t  *s;

    s = ctx->tts->session;
    c = s->connection;

    if (ngx_http_voice_tts_emb_deliver(ctx) == NGX_OK && !s->done) {
        (void) ngx_http_voice_session_send(s);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * Reports the audio of the session's phrases, in order, as far as the
 * client's queue takes it; then the next phrase is synthesized, or the
 * reply is done.  NGX_ERROR: the reply or the session is over and nothing
 * of it may be touched.
 */

static ngx_int_t
ngx_http_voice_tts_emb_deliver(ngx_http_voice_tts_emb_ctx_t *ctx)
{
    size_t                         n, slice;
    ngx_int_t                      rc;
    ngx_uint_t                     gen, index;
    ngx_http_voice_tts_t          *tts;
    ngx_http_voice_tts_emb_job_t  *job;

    tts = ctx->tts;
    slice = tts->rate / NGX_HTTP_VOICE_TTS_EMB_SLICES;

    for ( ;; ) {

        if (ctx->paused) {
            return NGX_OK;
        }

        job = ctx->job;

        if (job == NULL) {
            if (!ngx_queue_empty(&ctx->pending)) {
                ngx_http_voice_tts_emb_submit(ctx);
                return NGX_OK;
            }

            if (ctx->ended) {
                ctx->ended = 0;
                return ngx_http_voice_tts_done(tts);
            }

            return NGX_OK;
        }

        if (job->state != NGX_HTTP_VOICE_TTS_EMB_READY) {
            return NGX_OK;
        }

        if (job->turn != tts->turn) {
            /* cannot happen: a new reply drops the old one's phrases */
            ngx_http_voice_tts_emb_drop(ctx);
            return NGX_OK;
        }

        if (job->error) {
            ngx_log_error(NGX_LOG_ERR, tts->log, 0,
                          "voice: the embedded TTS could not speak "
                          "phrase %ui of turn %ui with the voice \"%s\"",
                          job->index, job->turn, job->voice);

            ngx_http_voice_tts_emb_drop(ctx);

            return ngx_http_voice_tts_failed(tts,
                                             NGX_HTTP_VOICE_TTS_EMB_FAILED);
        }

        if (!job->started) {
            job->started = 1;
            job->base = tts->samples;
        }

        gen = ctx->gen;

        while (job->pos < job->n) {
            n = ngx_min(job->n - job->pos, slice);

            rc = ngx_http_voice_tts_audio(tts,
                                          (u_char *) (job->pcm + job->pos),
                                          n * sizeof(int16_t));

            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (ctx->gen != gen) {
                /* dropped while reporting */
                return NGX_OK;
            }

            job->pos += n;

            if (ngx_http_voice_tts_emb_words(tts, job, 0) != NGX_OK) {
                return NGX_ERROR;
            }

            if (rc == NGX_AGAIN) {
                /* paused: resume posts the rest */
                return NGX_OK;
            }
        }

        if (ngx_http_voice_tts_emb_words(tts, job, 1) != NGX_OK) {
            return NGX_ERROR;
        }

        index = job->index;
        ctx->job = NULL;
        ngx_http_voice_tts_emb_free(job);

        if (ngx_http_voice_tts_phrase_done(tts, index) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ctx->gen != gen) {
            return NGX_OK;
        }
    }
}


/*
 * Word ends of the phrase within the audio reported so far; all: the
 * phrase is over, and a mark past its audio (a cut phrase) ends with it.
 */

static ngx_int_t
ngx_http_voice_tts_emb_words(ngx_http_voice_tts_t *tts,
    ngx_http_voice_tts_emb_job_t *job, ngx_uint_t all)
{
    ngx_http_voice_tts_emb_mark_t  *m;

    while (job->mark < job->nmarks) {
        m = &job->marks[job->mark];

        if (m->sample > job->pos && !all) {
            break;
        }

        job->mark++;

        if (ngx_http_voice_tts_word(tts, job->words + m->words,
                                    job->base + ngx_min(m->sample, job->n))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* ---- thread side: only the job and the worker's settings ---------------- */

static void
ngx_http_voice_tts_emb_thread(void *data, ngx_log_t *log)
{
    ngx_http_voice_tts_emb_job_t     *job = data;

#if !(NGX_HAVE_LITTLE_ENDIAN)
    size_t                            i;
#endif
    espeak_ng_STATUS                  st;
    ngx_http_voice_tts_emb_worker_t  *w;

    w = ngx_http_voice_tts_emb_worker;

    if (job->cancelled) {
        return;
    }

    if (ngx_strcmp(w->voice, job->voice) != 0) {
        if (espeak_ng_SetVoiceByName(job->voice) != ENS_OK) {
            w->voice[0] = '\0';
            job->error = 1;
            return;
        }

        (void) ngx_cpystrn((u_char *) w->voice, (u_char *) job->voice,
                           sizeof(w->voice));

        /* a voice comes with its own rate */
        w->wpm = 0;
    }

    if (w->wpm != job->wpm) {
        if (espeak_ng_SetParameter(espeakRATE, job->wpm, 0) != ENS_OK) {
            job->error = 1;
            return;
        }

        w->wpm = job->wpm;
    }

    st = espeak_ng_Synthesize(job->text, job->len + 1, 0, POS_CHARACTER, 0,
                              job->flags, NULL, job);

    if (st != ENS_OK && !job->cancelled && !job->truncated) {
        job->error = 1;
    }

#if !(NGX_HAVE_LITTLE_ENDIAN)

    /* the library speaks the host's order, the glue takes little-endian */

    for (i = 0; i < job->n; i++) {
        job->pcm[i] = (int16_t) (((uint16_t) job->pcm[i] >> 8)
                                 | ((uint16_t) job->pcm[i] << 8));
    }

#endif
}


/* the library's callback, in the thread, with audio as it is made */

static int
ngx_http_voice_tts_emb_synth(short *wav, int n, espeak_EVENT *events)
{
    size_t                         size;
    int16_t                       *p;
    espeak_EVENT                  *ev;
    ngx_http_voice_tts_emb_job_t  *job;

    /* the list ends with a terminator that carries user_data too */

    job = events->user_data;

    if (job == NULL) {
        return 1;
    }

    for (ev = events; ev->type != espeakEVENT_LIST_TERMINATED; ev++) {
        if (ev->type == espeakEVENT_WORD || ev->type == espeakEVENT_END) {
            ngx_http_voice_tts_emb_mark(job, ev);
        }
    }

    /* a dropped phrase stops early: nonzero ends the synthesis */

    if (job->cancelled || job->error) {
        return 1;
    }

    if (wav == NULL || n <= 0) {
        return 0;
    }

    if (job->n + n > job->max) {
        job->truncated = 1;
        return 1;
    }

    if (job->n + n > job->size) {

        /* a first guess of a second plus a second per twelve characters */

        size = ngx_max(job->size * 2,
                       ngx_http_voice_tts_emb_worker->rate
                       * (1 + job->len / 12));
        size = ngx_max(size, job->n + n);
        size = ngx_min(size, job->max);

        p = realloc(job->pcm, size * sizeof(int16_t));
        if (p == NULL) {
            job->error = 1;
            return 1;
        }

        job->pcm = p;
        job->size = size;
    }

    ngx_memcpy(job->pcm + job->n, wav, n * sizeof(int16_t));
    job->n += n;

    return 0;
}


/*
 * A word begins, or a clause ends: the words of the phrase that end
 * before that point of the text have been spoken by that point of the
 * audio.  Positions are in characters from 1; a clause's end points just
 * past its last word.
 */

static void
ngx_http_voice_tts_emb_mark(ngx_http_voice_tts_emb_job_t *job,
    espeak_EVENT *ev)
{
    size_t                          chars, sample;
    ngx_uint_t                      words;
    ngx_http_voice_tts_emb_mark_t  *m;

    if (ev->text_position < 1 || ev->audio_position < 0) {
        return;
    }

    chars = ev->text_position - (ev->type == espeakEVENT_WORD);
    words = ngx_http_voice_tts_emb_count(job->text, job->len, chars);

    sample = (size_t) ev->audio_position
             * ngx_http_voice_tts_emb_worker->rate / 1000;

    if (job->nmarks) {
        m = &job->marks[job->nmarks - 1];

        if (words <= m->words) {
            return;
        }

        sample = ngx_max(sample, m->sample);
    }

    if (words == 0 || job->nmarks == job->max_marks) {
        return;
    }

    m = &job->marks[job->nmarks++];
    m->words = words;
    m->sample = sample;
}


/* whitespace-separated words that end within the first `chars' characters */

static ngx_uint_t
ngx_http_voice_tts_emb_count(u_char *text, size_t len, size_t chars)
{
    size_t      i, end, k;
    ngx_uint_t  n;

    /* the byte where character number `chars' (from 0) begins */

    k = 0;

    for (end = 0; end < len; end++) {
        if ((text[end] & 0xc0) != 0x80) {
            if (k == chars) {
                break;
            }

            k++;
        }
    }

    n = 0;

    for (i = 1; i <= end; i++) {
        if (!ngx_http_voice_tts_emb_space(text[i - 1])
            && (i == len || ngx_http_voice_tts_emb_space(text[i])))
        {
            n++;
        }
    }

    return n;
}


/* ---- configuration and the worker's life -------------------------------- */

/*
 * The library may end the process on data it cannot use, and a missing
 * voice would only show at the first reply: a child loads the data and
 * the voice and speaks a word now, so that nginx -t refuses them.
 */

static char *
ngx_http_voice_tts_emb_check(ngx_conf_t *cf, ngx_http_voice_tts_conf_t *conf)
{
    int        status;
    ngx_pid_t  pid;

    pid = fork();

    if (pid == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "fork() failed");
        return NGX_CONF_ERROR;
    }

    if (pid == 0) {
        if (ngx_http_voice_tts_emb_init() != ENS_OK) {
            _exit(2);
        }

        if (espeak_ng_SetVoiceByName((const char *) conf->voice.data)
            != ENS_OK)
        {
            _exit(3);
        }

        espeak_SetSynthCallback(ngx_http_voice_tts_emb_check_synth);

        status = 0;

        if (espeak_ng_Synthesize("ok", 3, 0, POS_CHARACTER, 0,
                                 espeakCHARS_UTF8, NULL, &status)
            != ENS_OK
            || status == 0)
        {
            _exit(4);
        }

        _exit(0);
    }

    while (waitpid(pid, &status, 0) == -1) {
        if (ngx_errno != NGX_EINTR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "waitpid() failed");
            return NGX_CONF_ERROR;
        }
    }

    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return NGX_CONF_OK;
    }

    if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"voice_tts_voice\" \"%V\" is not an espeak-ng "
                           "voice (\"espeak-ng --voices\" lists them)",
                           &conf->voice);
        return NGX_CONF_ERROR;
    }

    if (WIFEXITED(status) && WEXITSTATUS(status) == 4) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the espeak-ng voice \"%V\" speaks no audio",
                           &conf->voice);
        return NGX_CONF_ERROR;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"voice_tts embedded\" needs espeak-ng and its data "
                       "(the espeak-ng-data package): loading them failed");

    return NGX_CONF_ERROR;
}


static int
ngx_http_voice_tts_emb_check_synth(short *wav, int n, espeak_EVENT *events)
{
    int  *spoken;

    spoken = events->user_data;

    if (wav != NULL && n > 0 && spoken != NULL) {
        *spoken = 1;
    }

    return 0;
}


/*
 * The library starts a thread of its own (idle in synchronous mode): it
 * must not take nginx's signals from the event loop, so it is created
 * with all of them blocked.  Its output setup also probes the sound
 * system, which it never plays to here, and the sound libraries complain
 * on stderr, which is nginx's error log: stderr is muted for that call.
 */

static espeak_ng_STATUS
ngx_http_voice_tts_emb_init(void)
{
    int                      err, fd, null;
    sigset_t                 set, old;
    espeak_ng_STATUS         st;
    espeak_ng_ERROR_CONTEXT  ectx;

    sigfillset(&set);

    err = pthread_sigmask(SIG_SETMASK, &set, &old);
    if (err != 0) {
        /* the library's codes below 256 are errno values */
        return (espeak_ng_STATUS) err;
    }

    ectx = NULL;

    espeak_ng_InitializePath(NULL);

    st = espeak_ng_Initialize(&ectx);

    if (ectx != NULL) {
        espeak_ng_ClearErrorContext(&ectx);
    }

    if (st == ENS_OK) {
        fd = dup(STDERR_FILENO);
        null = open("/dev/null", O_WRONLY);

        if (fd != -1 && null != -1) {
            (void) dup2(null, STDERR_FILENO);
        }

        st = espeak_ng_InitializeOutput(ENOUTPUT_MODE_SYNCHRONOUS, 0, NULL);

        if (fd != -1 && null != -1) {
            (void) dup2(fd, STDERR_FILENO);
        }

        if (fd != -1) {
            (void) close(fd);
        }

        if (null != -1) {
            (void) close(null);
        }
    }

    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    return st;
}


ngx_int_t
ngx_http_voice_tts_embedded_init_process(ngx_cycle_t *cycle,
    ngx_thread_pool_t *pool)
{
    char                              msg[256];
    espeak_ng_STATUS                  st;
    ngx_http_voice_tts_emb_worker_t  *w;

    /* cache managers and loaders have no thread pool and no sessions */

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    w = ngx_pcalloc(cycle->pool, sizeof(ngx_http_voice_tts_emb_worker_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->pool = pool;
    w->log = cycle->log;
    ngx_queue_init(&w->queue);

    ngx_http_voice_tts_emb_worker = w;

    st = ngx_http_voice_tts_emb_init();

    if (st != ENS_OK) {
        espeak_ng_GetStatusCodeMessage(st, msg, sizeof(msg));
        msg[sizeof(msg) - 1] = '\0';

        /* the worker serves on: replies fail, their text goes on */

        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "voice: the embedded TTS is not available: "
                      "espeak-ng: %s", msg);
        return NGX_OK;
    }

    espeak_SetSynthCallback(ngx_http_voice_tts_emb_synth);

    w->rate = espeak_ng_GetSampleRate();
    w->ready = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                   "voice: tts embedded ready, %ui Hz", w->rate);

    return NGX_OK;
}


void
ngx_http_voice_tts_embedded_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_voice_tts_emb_worker_t  *w;

    w = ngx_http_voice_tts_emb_worker;

    if (w == NULL) {
        return;
    }

    /*
     * The thread pool module exits first and its threads finish what
     * they took, so no synthesis runs now.  A job whose session is gone
     * is freed; the others belong to their sessions.
     */

    if (w->running && w->running->owner == NULL) {
        ngx_http_voice_tts_emb_free(w->running);
        w->running = NULL;
    }

    if (w->ready) {
        (void) espeak_ng_Terminate();
    }

    ngx_http_voice_tts_emb_worker = NULL;
}
