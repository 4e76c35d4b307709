
/*
 * voice-bench: load generator for the voice.v1 WebSocket endpoint.
 *
 * It opens many concurrent sessions against the echo pipeline, sends
 * binary audio frames at a fixed cadence and measures what comes back:
 * the round trip minus the server's echo delay (the time the server
 * adds), ordering, loss, backpressure events, and the memory the nginx
 * workers need per session.
 *
 * Each I/O thread runs one epoll loop.  Every session has exactly one
 * deadline (the next frame to send, or the timeout of the state it waits
 * in) kept in a binary heap, and the loop sleeps in epoll_pwait2() until
 * the earliest one, so frames leave on absolute deadlines instead of
 * per-session sleeps.  When the loop is late anyway, the lateness is
 * measured and reported as generator lag, so that a slow generator is
 * never mistaken for a slow server.
 *
 * The main thread only samples the workers' memory from /proc, so that
 * reading /proc never delays a frame.
 *
 * When the server converts the audio (the input and output formats
 * differ, or a phone dialect is spoken) the echo is no longer the bytes
 * that were sent: each output frame is then counted, its size checked,
 * and its arrival timed, which gives the pacing figures (the interval
 * between output frames and how far the received audio runs ahead of
 * real time).  Input frames then carry a steady tone in the input
 * format; an Opus packet of it is encoded once at start, with libopus
 * loaded at run time, so that only Opus input needs the library.
 *
 * Text turns (--text-turns) drive the agent's language model instead of
 * audio: each session sends text.input, reads the streamed reply
 * (response.text.delta ... response.text.done), checks that the deltas
 * add up to the whole text, and sends the next turn.
 */


#define _GNU_SOURCE

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <opus/opus.h>


#define VB_OK                  0
#define VB_ERROR              -1
#define VB_AGAIN              -2
#define VB_DONE               -4

#define VB_USEC                1000LL
#define VB_MSEC                1000000LL
#define VB_NSEC                1000000000LL

#define VB_WS_GUID             "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define VB_WS_CONT             0x0
#define VB_WS_TEXT             0x1
#define VB_WS_BINARY           0x2
#define VB_WS_CLOSE            0x8
#define VB_WS_PING             0x9
#define VB_WS_PONG             0xa

#define VB_OPEN_TIMEOUT        (10 * VB_NSEC)  /* connect to streaming */
#define VB_CLOSE_TIMEOUT       (5 * VB_NSEC)   /* close reply to TCP close */
#define VB_END_GRACE           (1 * VB_NSEC)   /* beyond the echo delay */
#define VB_SEND_SLACK          (200 * VB_USEC) /* a frame may leave early */
#define VB_LATE                (1 * VB_MSEC)   /* lag counted as late */
#define VB_TICK                (100 * VB_MSEC) /* sampler wake-ups */
#define VB_PEAK_EVERY          (1 * VB_NSEC)   /* RSS samples for the peak */

#define VB_HEADER_MAX          8192            /* handshake response */
#define VB_FRAME_MAX           (4 * 1024 * 1024)
#define VB_OUT_MAX             (4 * 1024 * 1024)
#define VB_READ_MIN            16384
#define VB_PAYLOAD_MIN         16              /* sequence + timestamp */
#define VB_EVENTS              1024
#define VB_FAILURES_SHOWN      10
#define VB_TEXT_MAX            1024            /* a message we compose */

/* formats, dialects and the converted echo */
#define VB_ENC_PCM             1
#define VB_ENC_MULAW           2
#define VB_ENC_OPUS            3

#define VB_DIALECT_VOICE       0
#define VB_DIALECT_TWILIO      1
#define VB_DIALECT_VONAGE      2

#define VB_OUT_FRAME           (20 * VB_MSEC)  /* audio per output frame */
#define VB_OUT_SLACK           2               /* frames a stream may lack */
#define VB_STEADY              (1 * VB_NSEC)   /* lead counted after this */
#define VB_DRY                 (1 * VB_MSEC)   /* a gap a player would hear */
#define VB_OPUS_MAX            1275            /* bytes of one Opus frame */
#define VB_TONE_HZ             400             /* 8 periods in 20 ms */
#define VB_TONE_LEVEL          8000
#define VB_MARKS               64              /* Twilio marks in flight */
#define VB_SID                 "MZ%032" PRIx64 /* Twilio stream id */

/*
 * Histograms: 0.01 ms buckets from -100 ms to 10 s; values outside are
 * clamped, the exact minimum and maximum are kept apart.
 */
#define VB_HIST_UNIT           (10 * VB_USEC)
#define VB_HIST_LOW            (-100 * VB_MSEC)
#define VB_HIST_HIGH           (10 * VB_NSEC)
#define VB_HIST_BUCKETS        ((VB_HIST_HIGH - VB_HIST_LOW) / VB_HIST_UNIT)

#define VB_UNQUEUED            ((size_t) -1)

#define VB_OPT_CHURN           256
#define VB_OPT_CHURN_FRAMES    257
#define VB_OPT_NGINX_PID       258
#define VB_OPT_RSS_EVERY       259
#define VB_OPT_JSON            260
#define VB_OPT_SELF_TEST       261
#define VB_OPT_INPUT           262
#define VB_OPT_OUTPUT          263
#define VB_OPT_START           264
#define VB_OPT_DIALECT         265
#define VB_OPT_COUNT           266
#define VB_OPT_LISTEN          267
#define VB_OPT_QUERY           268
#define VB_OPT_TRANSCRIPTS     269
#define VB_OPT_TEXT_TURNS      270
#define VB_OPT_TEXT            271
#define VB_OPT_TURNS           272

#define VB_LISTEN_END          (5 * VB_NSEC)   /* session.end to closed */
#define VB_REQUEST_MAX         4096
#define VB_REPLY_TIMEOUT       (30 * VB_NSEC)  /* text.input to text.done */
#define VB_REPLY_MAX           8192            /* one reply's text */


typedef struct vb_thread_s   vb_thread_t;
typedef struct vb_session_s  vb_session_t;


typedef struct {
    u_char                  *data;
    size_t                   pos;      /* first byte not consumed yet */
    size_t                   last;     /* end of the valid bytes */
    size_t                   size;
} vb_buf_t;


typedef struct {
    uint32_t                *counts;
    uint64_t                 n;
    int64_t                  min;
    int64_t                  max;
    double                   sum;
} vb_hist_t;


typedef struct {
    uint64_t                 sessions_ok;
    uint64_t                 sessions_failed;
    uint64_t                 frames_sent;
    uint64_t                 frames_received;
    uint64_t                 frames_lost;
    uint64_t                 frames_reordered;
    uint64_t                 frames_corrupt;
    uint64_t                 frames_late;
    uint64_t                 protocol_errors;
    uint64_t                 backpressure;
    uint64_t                 buffer_full;  /* echo line overflowed */
    uint64_t                 info_other;
    uint64_t                 shutdown;
    uint64_t                 send_blocked;

    /* agent sessions (--listen) */
    uint64_t                 partials;
    uint64_t                 finals;
    uint64_t                 states_other; /* listening, transcribing */
    uint64_t                 stt_errors;
    uint64_t                 audio_unexpected;

    /* text turns (--text-turns) */
    uint64_t                 turns_done;
    uint64_t                 deltas;
    vb_hist_t                first_delta;  /* text.input to first delta */
    vb_hist_t                reply;        /* text.input to text.done */

    vb_hist_t                rtt;      /* added round trip, at read */
    vb_hist_t                arrival;  /* the same, at kernel arrival */
    vb_hist_t                lag;      /* generator lateness per frame */
    vb_hist_t                setup;    /* connect to state "streaming" */

    /* counted (converted) output */
    uint64_t                 out_expected;
    uint64_t                 out_extra;    /* beyond the slack */
    uint64_t                 underruns;    /* playback ran dry, > 1 ms */
    uint64_t                 marks;
    uint64_t                 marks_answered;
    uint64_t                 clears;
    vb_hist_t                interval;     /* between output frames */
    vb_hist_t                interval_read;
    vb_hist_t                lead;         /* audio received - time taken */
    vb_hist_t                buffered;     /* the client's playback queue */
} vb_stats_t;


typedef enum {
    VB_IDLE = 0,
    VB_CONNECTING,
    VB_HANDSHAKE,
    VB_STARTING,
    VB_STREAMING,
    VB_ENDING,
    VB_CLOSING,
    VB_FINISHED
} vb_state_e;


struct vb_session_s {
    vb_thread_t             *thread;
    vb_state_e               state;
    int                      fd;
    uint32_t                 events;   /* registered with epoll */
    uint64_t                 id;
    int64_t                  deadline;
    size_t                   heap_index;

    int64_t                  opened;
    int64_t                  stream_end;
    int64_t                  next_send;
    int64_t                  last_send;
    int64_t                  arrival;  /* of the bytes read last */
    uint64_t                 seq;      /* next to send = frames sent */
    uint64_t                 received;
    uint64_t                 expected; /* one past the highest seen */
    uint64_t                 frames_left;

    char                     accept[32];

    vb_buf_t                 in;
    vb_buf_t                 out;
    vb_buf_t                 msg;      /* a fragmented message */
    u_char                   msg_opcode;

    int64_t                  wake;     /* the state's own deadline */

    /* counted output: arrivals of the first and the last frame */
    int64_t                  first_out;
    int64_t                  last_out;
    int64_t                  last_out_read;
    int64_t                  play_end; /* the client's playback runs dry */

    /* Twilio */
    uint64_t                 twilio_seq;
    unsigned                 mark_head;
    unsigned                 nmarks;
    struct {
        int64_t              due;      /* when the audio before it played */
        char                 name[16];
    }                        marks[VB_MARKS];

    /* text turns: the reply in progress */
    uint64_t                 turns;    /* replies complete */
    int64_t                  turn_sent;
    int64_t                  first_arrival;  /* CLOCK_REALTIME ns */
    int64_t                  first_read;
    long                     server_turn;
    char                    *reply;    /* VB_REPLY_MAX bytes, kept */
    size_t                   reply_len;
    unsigned                 turn_busy:1;
    unsigned                 reply_over:1;

    unsigned                 failed:1;
    unsigned                 started:1;
    unsigned                 closed_state:1;
};


struct vb_thread_s {
    pthread_t                tid;
    int                      epfd;
    vb_session_t            *slots;
    size_t                   nslots;
    size_t                   active;   /* slots that may still run */
    vb_session_t           **heap;
    size_t                   nheap;
    uint64_t                 rng;
    u_char                  *scratch;
    vb_stats_t               stats;
};


typedef struct {
    double                   t;
    long                     rss;
    long                     anon;
    uint64_t                 streaming;
    double                   cpu;      /* the workers' CPU seconds so far */
} vb_sample_t;


typedef struct {
    const char              *url;
    char                     host[256];
    char                     port[16];
    char                     path[1024];
    char                     authority[300];
    struct sockaddr_storage  addr;
    socklen_t                addrlen;

    uint64_t                 sessions;
    size_t                   frame_size;
    size_t                   scratch_size;
    int64_t                  interval;
    int64_t                  duration;
    int64_t                  delay;
    double                   ramp;
    unsigned                 threads;
    uint64_t                 churn;
    uint64_t                 churn_frames;
    pid_t                    nginx_pid;
    int64_t                  rss_every;
    unsigned                 json:1;
    unsigned                 verbose:1;
    unsigned                 frame_size_set:1;

    /* agent sessions: silence in, transcripts out */
    unsigned                 listen:1;
    const char              *query;    /* "{n}": the session's number */
    FILE                    *transcripts;
    u_char                  *silence;

    /* text turns: text.input, then the streamed reply */
    unsigned                 text_mode:1;
    uint64_t                 text_turns;   /* 0: as many as -d allows */
    const char              *text;     /* "{n}" session, "{t}" turn */
    FILE                    *turns_log;

    /* the formats and the dialect */
    unsigned                 dialect;
    unsigned                 in_enc;
    unsigned                 in_rate;
    unsigned                 out_enc;
    unsigned                 out_rate;
    unsigned                 count:1;  /* output counted, not matched */
    const char              *start;    /* session.start as given */
    char                     start_msg[VB_TEXT_MAX];
    double                   in_ms;    /* audio in one input frame */
    size_t                   out_size; /* of an output frame; 0: Opus */
    u_char                  *audio;    /* one input frame of the tone */
    size_t                   audio_len;
    char                    *payload64;  /* the same in base64 */

    int64_t                  t0;
} vb_conf_t;


typedef struct {
    pid_t                    pids[64];
    unsigned                 n;
    unsigned                 changed:1;
} vb_workers_t;


static vb_conf_t              vb_conf;
static vb_workers_t           vb_workers;
static atomic_uint_fast64_t   vb_streaming;
static atomic_uint_fast64_t   vb_finished;
static atomic_int_fast64_t    vb_churn_left;
static atomic_uint_fast64_t   vb_next_id;
static atomic_uint            vb_failures;
static atomic_uint            vb_running;
static volatile sig_atomic_t  vb_stop;

static const char  *vb_state_names[] = {
    "idle", "connecting", "handshake", "starting", "streaming", "ending",
    "closing", "done"
};

static const char  *vb_dialect_names[] = { "voice.v1", "twilio", "vonage" };

static const struct {
    const char              *name;
    unsigned                 enc;
    unsigned                 rate;
} vb_formats[] = {
    { "pcm8k",  VB_ENC_PCM,    8000 },
    { "pcm16k", VB_ENC_PCM,   16000 },
    { "pcm24k", VB_ENC_PCM,   24000 },
    { "pcm48k", VB_ENC_PCM,   48000 },
    { "mulaw",  VB_ENC_MULAW,  8000 },
    { "opus",   VB_ENC_OPUS,  48000 },
    { NULL, 0, 0 }
};


static int64_t
vb_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * VB_NSEC + ts.tv_nsec;
}


static uint64_t
vb_rand(vb_thread_t *t)
{
    /* xorshift64*: masks and phases need speed, not secrecy */
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;

    return t->rng * 0x2545f4914f6cdd1dULL;
}


static void
vb_put64(u_char *p, uint64_t v)
{
    int  i;

    for (i = 0; i < 8; i++) {
        p[i] = (u_char) (v >> (8 * i));
    }
}


static uint64_t
vb_get64(const u_char *p)
{
    uint64_t  v;
    int       i;

    v = 0;

    for (i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }

    return v;
}


/* SHA-1 (FIPS 180-4), only for Sec-WebSocket-Accept */

static uint32_t
vb_rol(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}


static void
vb_sha1_block(uint32_t h[5], const u_char *p)
{
    uint32_t  w[80], a, b, c, d, e, f, k, tmp;
    int       i;

    for (i = 0; i < 16; i++) {
        w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16
               | (uint32_t) p[4 * i + 2] << 8 | (uint32_t) p[4 * i + 3];
    }

    for (i = 16; i < 80; i++) {
        w[i] = vb_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }

    a = h[0];
    b = h[1];
    c = h[2];
    d = h[3];
    e = h[4];

    for (i = 0; i < 80; i++) {

        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;

        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;

        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;

        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }

        tmp = vb_rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = vb_rol(b, 30);
        b = a;
        a = tmp;
    }

    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}


static void
vb_sha1(const u_char *data, size_t len, u_char digest[20])
{
    u_char    tail[128];
    size_t    full, rest, tlen, i;
    uint32_t  h[5];
    uint64_t  bits;

    h[0] = 0x67452301;
    h[1] = 0xefcdab89;
    h[2] = 0x98badcfe;
    h[3] = 0x10325476;
    h[4] = 0xc3d2e1f0;

    full = len & ~(size_t) 63;

    for (i = 0; i < full; i += 64) {
        vb_sha1_block(h, data + i);
    }

    /* the 0x80 marker and the 64-bit bit length may need a second block */
    rest = len - full;
    tlen = (rest < 56) ? 64 : 128;

    memcpy(tail, data + full, rest);
    tail[rest] = 0x80;
    memset(tail + rest + 1, 0, tlen - rest - 1);

    bits = (uint64_t) len * 8;

    for (i = 0; i < 8; i++) {
        tail[tlen - 1 - i] = (u_char) (bits >> (8 * i));
    }

    vb_sha1_block(h, tail);

    if (tlen == 128) {
        vb_sha1_block(h, tail + 64);
    }

    for (i = 0; i < 5; i++) {
        digest[4 * i] = (u_char) (h[i] >> 24);
        digest[4 * i + 1] = (u_char) (h[i] >> 16);
        digest[4 * i + 2] = (u_char) (h[i] >> 8);
        digest[4 * i + 3] = (u_char) h[i];
    }
}


static size_t
vb_base64(char *dst, const u_char *src, size_t len)
{
    char                *d;
    static const char    tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    d = dst;

    while (len >= 3) {
        d[0] = tab[src[0] >> 2];
        d[1] = tab[((src[0] & 0x03) << 4) | (src[1] >> 4)];
        d[2] = tab[((src[1] & 0x0f) << 2) | (src[2] >> 6)];
        d[3] = tab[src[2] & 0x3f];
        src += 3;
        len -= 3;
        d += 4;
    }

    if (len) {
        d[0] = tab[src[0] >> 2];

        if (len == 1) {
            d[1] = tab[(src[0] & 0x03) << 4];
            d[2] = '=';

        } else {
            d[1] = tab[((src[0] & 0x03) << 4) | (src[1] >> 4)];
            d[2] = tab[(src[1] & 0x0f) << 2];
        }

        d[3] = '=';
        d += 4;
    }

    *d = '\0';

    return (size_t) (d - dst);
}


static void
vb_ws_accept(const char *key, char *accept)
{
    u_char  digest[20];
    char    buf[128];
    size_t  n;

    n = (size_t) snprintf(buf, sizeof(buf), "%s%s", key, VB_WS_GUID);

    vb_sha1((u_char *) buf, n, digest);
    vb_base64(accept, digest, sizeof(digest));
}


/* histograms */

static int
vb_hist_init(vb_hist_t *h)
{
    h->counts = calloc(VB_HIST_BUCKETS, sizeof(uint32_t));
    if (h->counts == NULL) {
        return VB_ERROR;
    }

    h->n = 0;
    h->min = INT64_MAX;
    h->max = INT64_MIN;
    h->sum = 0;

    return VB_OK;
}


static void
vb_hist_add(vb_hist_t *h, int64_t v)
{
    int64_t  i;

    i = (v - VB_HIST_LOW) / VB_HIST_UNIT;

    if (i < 0) {
        i = 0;

    } else if (i >= VB_HIST_BUCKETS) {
        i = VB_HIST_BUCKETS - 1;
    }

    h->counts[i]++;
    h->n++;
    h->sum += (double) v;

    if (v < h->min) {
        h->min = v;
    }

    if (v > h->max) {
        h->max = v;
    }
}


static void
vb_hist_merge(vb_hist_t *dst, vb_hist_t *src)
{
    int64_t  i;

    for (i = 0; i < VB_HIST_BUCKETS; i++) {
        dst->counts[i] += src->counts[i];
    }

    dst->n += src->n;
    dst->sum += src->sum;

    if (src->min < dst->min) {
        dst->min = src->min;
    }

    if (src->max > dst->max) {
        dst->max = src->max;
    }
}


/* the q-quantile in ms: the upper edge of its bucket, within min..max */

static double
vb_hist_ms(vb_hist_t *h, double q)
{
    int64_t   i, v;
    uint64_t  rank, seen;

    if (h->n == 0) {
        return 0;
    }

    if (q >= 1.0) {
        return (double) h->max / VB_MSEC;
    }

    rank = (uint64_t) ceil(q * (double) h->n);

    if (rank == 0) {
        rank = 1;
    }

    seen = 0;

    for (i = 0; i < VB_HIST_BUCKETS - 1; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            break;
        }
    }

    v = VB_HIST_LOW + (i + 1) * VB_HIST_UNIT;

    if (v > h->max) {
        v = h->max;
    }

    if (v < h->min) {
        v = h->min;
    }

    return (double) v / VB_MSEC;
}


static double
vb_hist_mean_ms(vb_hist_t *h)
{
    return h->n ? h->sum / (double) h->n / VB_MSEC : 0;
}


/* buffers */

static int
vb_buf_reserve(vb_buf_t *b, size_t need)
{
    u_char  *p;
    size_t   size;

    if (b->pos == b->last) {
        b->pos = 0;
        b->last = 0;

    } else if (b->pos && b->size - b->last < need) {
        memmove(b->data, b->data + b->pos, b->last - b->pos);
        b->last -= b->pos;
        b->pos = 0;
    }

    if (b->size - b->last >= need) {
        return VB_OK;
    }

    size = b->size ? b->size : VB_READ_MIN;

    while (size - b->last < need) {
        size *= 2;
    }

    p = realloc(b->data, size);
    if (p == NULL) {
        return VB_ERROR;
    }

    b->data = p;
    b->size = size;

    return VB_OK;
}


static int
vb_buf_append(vb_buf_t *b, const u_char *data, size_t len)
{
    if (vb_buf_reserve(b, len) != VB_OK) {
        return VB_ERROR;
    }

    memcpy(b->data + b->last, data, len);
    b->last += len;

    return VB_OK;
}


/* the timer heap: one deadline per session, earliest on top */

static void
vb_heap_swap(vb_thread_t *t, size_t i, size_t j)
{
    vb_session_t  *s;

    s = t->heap[i];
    t->heap[i] = t->heap[j];
    t->heap[j] = s;

    t->heap[i]->heap_index = i;
    t->heap[j]->heap_index = j;
}


static void
vb_heap_up(vb_thread_t *t, size_t i)
{
    size_t  parent;

    while (i > 0) {
        parent = (i - 1) / 2;

        if (t->heap[parent]->deadline <= t->heap[i]->deadline) {
            break;
        }

        vb_heap_swap(t, i, parent);
        i = parent;
    }
}


static void
vb_heap_down(vb_thread_t *t, size_t i)
{
    size_t  l, r, m;

    for ( ;; ) {
        l = 2 * i + 1;
        r = l + 1;
        m = i;

        if (l < t->nheap && t->heap[l]->deadline < t->heap[m]->deadline) {
            m = l;
        }

        if (r < t->nheap && t->heap[r]->deadline < t->heap[m]->deadline) {
            m = r;
        }

        if (m == i) {
            return;
        }

        vb_heap_swap(t, i, m);
        i = m;
    }
}


static void
vb_timer_del(vb_session_t *s)
{
    size_t        i;
    vb_thread_t  *t;

    if (s->heap_index == VB_UNQUEUED) {
        return;
    }

    t = s->thread;
    i = s->heap_index;
    s->heap_index = VB_UNQUEUED;

    t->nheap--;

    if (i == t->nheap) {
        return;
    }

    t->heap[i] = t->heap[t->nheap];
    t->heap[i]->heap_index = i;

    vb_heap_up(t, i);
    vb_heap_down(t, t->heap[i]->heap_index);
}


/*
 * A session wakes at its state's deadline, or earlier when a Twilio mark
 * is due to be answered.
 */

static void
vb_timer_place(vb_session_t *s)
{
    int64_t       deadline;
    vb_thread_t  *t;

    vb_timer_del(s);

    deadline = s->wake;

    if (s->nmarks && s->marks[s->mark_head].due < deadline) {
        deadline = s->marks[s->mark_head].due;
    }

    t = s->thread;
    s->deadline = deadline;
    s->heap_index = t->nheap;
    t->heap[t->nheap++] = s;

    vb_heap_up(t, s->heap_index);
}


static void
vb_timer_set(vb_session_t *s, int64_t deadline)
{
    s->wake = deadline;

    vb_timer_place(s);
}


/* diagnostics */

static void
vb_report_problem(vb_session_t *s, const char *kind, const char *fmt,
    va_list args)
{
    char  buf[512];

    if (atomic_fetch_add(&vb_failures, 1) >= VB_FAILURES_SHOWN
        && !vb_conf.verbose)
    {
        return;
    }

    vsnprintf(buf, sizeof(buf), fmt, args);

    fprintf(stderr, "voice-bench: session %" PRIu64 " %s (%s): %s\n",
            s->id, kind, vb_state_names[s->state], buf);
}


static int vb_session_finish(vb_session_t *s, int64_t now);
static int vb_hang_up(vb_session_t *s);
static int vb_session_begin(vb_session_t *s);
static int vb_stream_start(vb_session_t *s, int64_t now);
static int vb_stream_end(vb_session_t *s, int64_t now);
static int vb_text_send(vb_session_t *s);


/* a fault of the server that the session survives */

static void
vb_session_fault(vb_session_t *s, const char *fmt, ...)
{
    va_list  args;

    s->thread->stats.protocol_errors++;

    va_start(args, fmt);
    vb_report_problem(s, "protocol error", fmt, args);
    va_end(args);
}


/* a failure that ends the session at once */

static int
vb_session_fail(vb_session_t *s, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    vb_report_problem(s, "failed", fmt, args);
    va_end(args);

    s->failed = 1;

    return vb_session_finish(s, vb_now());
}


static int
vb_session_want(vb_session_t *s, uint32_t events)
{
    struct epoll_event  ev;

    if (s->events == events) {
        return VB_OK;
    }

    ev.events = events;
    ev.data.ptr = s;

    if (epoll_ctl(s->thread->epfd, EPOLL_CTL_MOD, s->fd, &ev) == -1) {
        return vb_session_fail(s, "epoll_ctl: %s", strerror(errno));
    }

    s->events = events;

    return VB_OK;
}


static int
vb_session_write(vb_session_t *s, const u_char *data, size_t len)
{
    ssize_t  n;

    if (s->out.pos == s->out.last) {
        n = send(s->fd, data, len, MSG_NOSIGNAL);

        if (n == (ssize_t) len) {
            return VB_OK;
        }

        if (n == -1) {
            if (errno != EAGAIN && errno != EINTR) {
                return vb_session_fail(s, "send: %s", strerror(errno));
            }

            n = 0;
        }

        data += n;
        len -= (size_t) n;

        s->thread->stats.send_blocked++;
    }

    if (s->out.last - s->out.pos + len > VB_OUT_MAX) {
        return vb_session_fail(s, "the server stopped reading "
                               "(%zu bytes queued)", s->out.last - s->out.pos);
    }

    if (vb_buf_append(&s->out, data, len) != VB_OK) {
        return vb_session_fail(s, "out of memory");
    }

    return vb_session_want(s, EPOLLIN | EPOLLOUT);
}


static int
vb_session_flush(vb_session_t *s)
{
    ssize_t  n;

    while (s->out.pos < s->out.last) {
        n = send(s->fd, s->out.data + s->out.pos, s->out.last - s->out.pos,
                 MSG_NOSIGNAL);

        if (n == -1) {
            if (errno == EAGAIN) {
                return VB_AGAIN;
            }

            if (errno == EINTR) {
                continue;
            }

            return vb_session_fail(s, "send: %s", strerror(errno));
        }

        s->out.pos += (size_t) n;
    }

    s->out.pos = 0;
    s->out.last = 0;

    return vb_session_want(s, EPOLLIN);
}


/* client frames: always masked, with a fresh key each */

static size_t
vb_frame_header(u_char *p, u_char opcode, size_t len, uint32_t mask)
{
    size_t  n, i;

    p[0] = 0x80 | opcode;

    if (len < 126) {
        p[1] = 0x80 | (u_char) len;
        n = 2;

    } else if (len < 65536) {
        p[1] = 0x80 | 126;
        p[2] = (u_char) (len >> 8);
        p[3] = (u_char) len;
        n = 4;

    } else {
        p[1] = 0x80 | 127;

        for (i = 0; i < 8; i++) {
            p[2 + i] = (u_char) ((uint64_t) len >> (56 - 8 * i));
        }

        n = 10;
    }

    memcpy(p + n, &mask, 4);

    return n + 4;
}


static void
vb_mask(u_char *p, size_t len, uint32_t mask)
{
    size_t    i;
    u_char    key[4];
    uint64_t  w, m;

    memcpy(key, &mask, 4);

    /* the key repeats every 4 bytes, so 8 bytes at a time keep phase */
    m = (uint64_t) mask | (uint64_t) mask << 32;

    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&w, p + i, 8);
        w ^= m;
        memcpy(p + i, &w, 8);
    }

    for ( /* void */ ; i < len; i++) {
        p[i] ^= key[i & 3];
    }
}


static int
vb_send_frame(vb_session_t *s, u_char opcode, const void *data, size_t len)
{
    u_char    *p;
    size_t     h;
    uint32_t   mask;

    p = s->thread->scratch;
    mask = (uint32_t) vb_rand(s->thread);

    h = vb_frame_header(p, opcode, len, mask);
    memcpy(p + h, data, len);
    vb_mask(p + h, len, mask);

    return vb_session_write(s, p, h + len);
}


static int
vb_send_close(vb_session_t *s, unsigned code)
{
    u_char  payload[2];

    payload[0] = (u_char) (code >> 8);
    payload[1] = (u_char) code;

    return vb_send_frame(s, VB_WS_CLOSE, payload, 2);
}


/* the filler after sequence and timestamp, checked on the way back */

static u_char
vb_filler(uint64_t seq, size_t i)
{
    return (u_char) (seq * 131 + i);
}


static int
vb_send_text(vb_session_t *s, const char *fmt, ...)
{
    int      n;
    char     buf[VB_TEXT_MAX];
    va_list  args;

    va_start(args, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);

    if (n < 0 || (size_t) n >= sizeof(buf)) {
        return vb_session_fail(s, "a message to send is too long");
    }

    return vb_send_frame(s, VB_WS_TEXT, buf, (size_t) n);
}


/* converted audio: one frame of the tone, in the client's framing */

static int
vb_send_tone(vb_session_t *s)
{
    int64_t  now;

    now = vb_now();

    s->seq++;
    s->last_send = now;

    if (vb_conf.dialect != VB_DIALECT_TWILIO) {
        return vb_send_frame(s, VB_WS_BINARY, vb_conf.audio,
                             vb_conf.audio_len);
    }

    return vb_send_text(s, "{\"event\":\"media\",\"sequenceNumber\":\"%"
                        PRIu64 "\",\"media\":{\"track\":\"inbound\","
                        "\"chunk\":\"%" PRIu64 "\",\"timestamp\":\"%.0f\","
                        "\"payload\":\"%s\"},\"streamSid\":\"" VB_SID "\"}",
                        s->twilio_seq++, s->seq,
                        (double) (s->seq - 1) * vb_conf.in_ms,
                        vb_conf.payload64, s->id);
}


static int
vb_send_audio(vb_session_t *s)
{
    u_char    *p, *payload;
    size_t     h, i, size;
    int64_t    now;
    uint32_t   mask;

    if (vb_conf.count) {
        return vb_send_tone(s);
    }

    if (vb_conf.listen) {
        /* the speech recogniser is scripted: only the amount counts */
        s->seq++;
        s->last_send = vb_now();

        return vb_send_frame(s, VB_WS_BINARY, vb_conf.silence,
                             vb_conf.frame_size);
    }

    size = vb_conf.frame_size;
    p = s->thread->scratch;
    mask = (uint32_t) vb_rand(s->thread);

    h = vb_frame_header(p, VB_WS_BINARY, size, mask);
    payload = p + h;

    for (i = VB_PAYLOAD_MIN; i < size; i++) {
        payload[i] = vb_filler(s->seq, i);
    }

    vb_put64(payload, s->seq);

    /* the stamp is taken as late as possible: it is what RTT counts from */
    now = vb_now();
    vb_put64(payload + 8, (uint64_t) now);

    vb_mask(payload, size, mask);

    s->seq++;
    s->last_send = now;

    return vb_session_write(s, p, h + size);
}


/* session lifecycle */

static void
vb_session_reset(vb_session_t *s)
{
    s->fd = -1;
    s->events = 0;
    s->seq = 0;
    s->received = 0;
    s->expected = 0;
    s->frames_left = 0;
    s->in.pos = 0;
    s->in.last = 0;
    s->out.pos = 0;
    s->out.last = 0;
    s->msg.pos = 0;
    s->msg.last = 0;
    s->msg_opcode = 0;
    s->failed = 0;
    s->started = 0;
    s->closed_state = 0;
    s->first_out = 0;
    s->last_out = 0;
    s->last_out_read = 0;
    s->play_end = 0;
    s->twilio_seq = 1;
    s->mark_head = 0;
    s->nmarks = 0;
    s->turns = 0;
    s->turn_busy = 0;
    s->reply_len = 0;
    s->reply_over = 0;
    s->first_arrival = 0;
    s->server_turn = -1;
}


/* output frames a converted stream owes for the input sent */

static uint64_t
vb_out_expected(vb_session_t *s)
{
    return (uint64_t) ((double) s->seq * vb_conf.in_ms * VB_MSEC
                       / VB_OUT_FRAME + 1e-6);
}


static int
vb_session_finish(vb_session_t *s, int64_t now)
{
    uint64_t     expected;
    vb_stats_t  *st;

    st = &s->thread->stats;

    if (s->state == VB_STREAMING) {
        atomic_fetch_sub(&vb_streaming, 1);
    }

    st->frames_sent += s->seq;
    st->frames_received += s->received;

    if (vb_conf.count) {
        /*
         * The resamplers hold a few milliseconds back and the last part
         * frame may or may not be padded out: a stream may come a frame
         * or two short (or long) of the input without anything lost.
         */
        expected = vb_out_expected(s);
        st->out_expected += expected;

        if (s->received + VB_OUT_SLACK < expected) {
            st->frames_lost += expected - s->received - VB_OUT_SLACK;
        }

        if (s->received > expected + VB_OUT_SLACK) {
            st->out_extra += s->received - expected - VB_OUT_SLACK;
        }

    } else if (!vb_conf.listen && s->received < s->seq) {
        st->frames_lost += s->seq - s->received;
    }

    if (s->failed) {
        st->sessions_failed++;

    } else {
        st->sessions_ok++;
    }

    if (s->fd != -1) {
        close(s->fd);
    }

    vb_timer_del(s);
    vb_session_reset(s);

    atomic_fetch_add(&vb_finished, 1);

    if (vb_conf.churn && !vb_stop) {
        /*
         * The slot runs the next session once the current epoll batch,
         * which may still hold events of the old socket, is over.
         */
        s->state = VB_IDLE;
        vb_timer_set(s, now);

    } else {
        s->state = VB_FINISHED;
        s->thread->active--;
    }

    return VB_DONE;
}


/*
 * The request target: the URL's path, then --query with each "{n}" the
 * session's number, so that every session can name its own script.
 */

static int
vb_session_path(vb_session_t *s, char *buf, size_t size)
{
    int          n;
    size_t       len;
    const char  *q;

    len = strlen(vb_conf.path);

    if (len >= size) {
        return VB_ERROR;
    }

    memcpy(buf, vb_conf.path, len + 1);

    if (vb_conf.query == NULL) {
        return VB_OK;
    }

    if (len + 1 >= size) {
        return VB_ERROR;
    }

    buf[len++] = strchr(vb_conf.path, '?') ? '&' : '?';

    for (q = vb_conf.query; *q; q++) {

        if (strncmp(q, "{n}", 3) == 0) {
            n = snprintf(buf + len, size - len, "%" PRIu64, s->id);
            if (n < 0 || (size_t) n >= size - len) {
                return VB_ERROR;
            }

            len += (size_t) n;
            q += 2;
            continue;
        }

        if (len + 1 >= size) {
            return VB_ERROR;
        }

        buf[len++] = *q;
    }

    buf[len] = '\0';

    return VB_OK;
}


static int
vb_session_open(vb_session_t *s, int64_t now)
{
    int                  fd, one;
    u_char               raw[16];
    char                 key[32];
    char                 path[VB_REQUEST_MAX / 2];
    struct epoll_event   ev;

    if (vb_stop
        || (vb_conf.churn && atomic_fetch_sub(&vb_churn_left, 1) <= 0))
    {
        s->state = VB_FINISHED;
        s->thread->active--;
        return VB_DONE;
    }

    vb_session_reset(s);

    s->id = atomic_fetch_add(&vb_next_id, 1);
    s->opened = now;
    s->state = VB_CONNECTING;

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t) sizeof(raw)) {
        return vb_session_fail(s, "getrandom: %s", strerror(errno));
    }

    vb_base64(key, raw, sizeof(raw));
    vb_ws_accept(key, s->accept);

    fd = socket(vb_conf.addr.ss_family,
                SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return vb_session_fail(s, "socket: %s", strerror(errno));
    }

    s->fd = fd;

    /* audio frames are small and must not wait for each other */
    one = 1;
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    /*
     * Receive timestamps tell when an echo reached this host, so that the
     * time it then waited for this process (a busy loop, a descheduled
     * thread) can be told apart from the server's.
     */
    (void) setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));

    if (connect(fd, (struct sockaddr *) &vb_conf.addr, vb_conf.addrlen) == -1
        && errno != EINPROGRESS)
    {
        return vb_session_fail(s, "connect: %s", strerror(errno));
    }

    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = s;

    if (epoll_ctl(s->thread->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        return vb_session_fail(s, "epoll_ctl: %s", strerror(errno));
    }

    s->events = ev.events;

    /* the request is built now; it goes out once connect() completes */
    s->out.pos = 0;
    s->out.last = 0;

    if (vb_buf_reserve(&s->out, VB_REQUEST_MAX) != VB_OK) {
        return vb_session_fail(s, "out of memory");
    }

    if (vb_session_path(s, path, sizeof(path)) != VB_OK) {
        return vb_session_fail(s, "the request path is too long");
    }

    /* phone gateways offer no subprotocol */
    s->out.last = (size_t) snprintf((char *) s->out.data, VB_REQUEST_MAX,
                      "GET %s HTTP/1.1\r\n"
                      "Host: %s\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\n"
                      "%s"
                      "User-Agent: voice-bench\r\n"
                      "\r\n",
                      path, vb_conf.authority, key,
                      vb_conf.dialect == VB_DIALECT_VOICE
                      ? "Sec-WebSocket-Protocol: voice.v1\r\n" : "");

    vb_timer_set(s, now + VB_OPEN_TIMEOUT);

    return VB_OK;
}


static int
vb_session_connected(vb_session_t *s)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(err);

    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
        err = errno;
    }

    if (err) {
        return vb_session_fail(s, "connect: %s", strerror(err));
    }

    s->state = VB_HANDSHAKE;

    return vb_session_flush(s);
}


static int
vb_stream_start(vb_session_t *s, int64_t now)
{
    int64_t  first;

    s->state = VB_STREAMING;
    atomic_fetch_add(&vb_streaming, 1);

    vb_hist_add(&s->thread->stats.setup, now - s->opened);

    /* independent clients speak with independent phases */
    first = now + (int64_t) (vb_rand(s->thread)
                             % (uint64_t) vb_conf.interval);

    s->next_send = first;
    s->last_send = now;
    s->stream_end = first + vb_conf.duration;
    s->frames_left = vb_conf.churn_frames;

    vb_timer_set(s, first);

    return VB_OK;
}


static int
vb_stream_end(vb_session_t *s, int64_t now)
{
    static const char  end[] = "{\"type\":\"session.end\"}";

    atomic_fetch_sub(&vb_streaming, 1);
    s->state = VB_ENDING;

    /* a gateway confirms no playback once the call is over */
    s->nmarks = 0;

    if (vb_conf.listen || vb_conf.text_mode) {
        /* the last transcripts come once the provider has answered */
        vb_timer_set(s, now + VB_LISTEN_END);

    } else {
        /* every echo is due by last_send + delay; a second more is grace */
        vb_timer_set(s, (s->seq ? s->last_send : now) + vb_conf.delay
                        + VB_END_GRACE);
    }

    switch (vb_conf.dialect) {

    case VB_DIALECT_TWILIO:
        return vb_send_text(s, "{\"event\":\"stop\",\"sequenceNumber\":"
                            "\"%" PRIu64 "\",\"streamSid\":\"" VB_SID "\","
                            "\"stop\":{\"accountSid\":\"AC%032" PRIx64 "\","
                            "\"callSid\":\"CA%032" PRIx64 "\"}}",
                            s->twilio_seq++, s->id, s->id, s->id);

    case VB_DIALECT_VONAGE:
        /* Vonage hangs up with a close frame once the echo is back */
        return (s->received >= vb_out_expected(s)) ? vb_hang_up(s) : VB_OK;

    default:
        return vb_send_frame(s, VB_WS_TEXT, end, sizeof(end) - 1);
    }
}


/*
 * Vonage has no session.end: the gateway closes.  Anything still waiting
 * on the server's side would be dropped, so this comes once every echo
 * is back, or at the deadline.
 */

static int
vb_hang_up(vb_session_t *s)
{
    int  rc;

    rc = vb_send_close(s, 1000);
    if (rc != VB_OK) {
        return rc;
    }

    s->state = VB_CLOSING;
    vb_timer_set(s, vb_now() + VB_CLOSE_TIMEOUT);

    return VB_OK;
}


/* Twilio: marks whose audio has played by now go back */

static int
vb_marks_due(vb_session_t *s, int64_t now)
{
    int       rc;
    unsigned  i;

    while (s->nmarks) {
        i = s->mark_head;

        if (s->marks[i].due > now + VB_SEND_SLACK) {
            break;
        }

        s->mark_head = (i + 1) % VB_MARKS;
        s->nmarks--;

        rc = vb_send_text(s, "{\"event\":\"mark\",\"sequenceNumber\":\"%"
                          PRIu64 "\",\"streamSid\":\"" VB_SID "\","
                          "\"mark\":{\"name\":\"%s\"}}", s->twilio_seq++,
                          s->id, s->marks[i].name);
        if (rc != VB_OK) {
            return rc;
        }

        s->thread->stats.marks_answered++;
    }

    return VB_OK;
}


static int
vb_stream_over(vb_session_t *s)
{
    if (vb_stop) {
        return 1;
    }

    if (vb_conf.churn) {
        return s->frames_left == 0;
    }

    return s->next_send >= s->stream_end;
}


/*
 * Text turns: the next text.input, once the reply to the last one is
 * complete; no new turn after -d (but always one), then session.end once
 * -d is over.
 */

static int
vb_text_due(vb_session_t *s, int64_t now)
{
    if (s->turn_busy) {
        return vb_session_fail(s, "no response.text.done within %lld s of "
                               "text.input (turn %" PRIu64 ")",
                               (long long) (VB_REPLY_TIMEOUT / VB_NSEC),
                               s->turns + 1);
    }

    if (!vb_stop
        && (vb_conf.text_turns == 0 || s->turns < vb_conf.text_turns)
        && (s->turns == 0 || now < s->stream_end))
    {
        return vb_text_send(s);
    }

    if (vb_stop || now + VB_SEND_SLACK >= s->stream_end) {
        return vb_stream_end(s, now);
    }

    vb_timer_set(s, s->stream_end);

    return VB_OK;
}


static int
vb_text_send(vb_session_t *s)
{
    int          n;
    size_t       len;
    char         text[VB_TEXT_MAX];
    const char  *q;

    if (s->reply == NULL) {
        s->reply = malloc(VB_REPLY_MAX);
        if (s->reply == NULL) {
            return vb_session_fail(s, "out of memory");
        }
    }

    len = 0;

    for (q = vb_conf.text; *q; q++) {

        if (strncmp(q, "{n}", 3) == 0 || strncmp(q, "{t}", 3) == 0) {
            n = snprintf(text + len, sizeof(text) - len, "%" PRIu64,
                         q[1] == 'n' ? s->id : s->turns + 1);
            if (n < 0 || (size_t) n >= sizeof(text) - len) {
                return vb_session_fail(s, "the --text is too long");
            }

            len += (size_t) n;
            q += 2;
            continue;
        }

        if (len + 1 >= sizeof(text)) {
            return vb_session_fail(s, "the --text is too long");
        }

        text[len++] = *q;
    }

    text[len] = '\0';

    s->turn_busy = 1;
    s->reply_len = 0;
    s->reply_over = 0;
    s->first_arrival = 0;
    s->server_turn = -1;
    s->turn_sent = vb_now();

    vb_timer_set(s, s->turn_sent + VB_REPLY_TIMEOUT);

    return vb_send_text(s, "{\"type\":\"text.input\",\"text\":\"%s\"}",
                        text);
}


static int
vb_stream_due(vb_session_t *s, int64_t now)
{
    int          rc;
    int64_t      lag;
    vb_stats_t  *st;

    if (vb_conf.text_mode) {
        return vb_text_due(s, now);
    }

    st = &s->thread->stats;

    for ( ;; ) {

        if (vb_stream_over(s)) {
            return vb_stream_end(s, now);
        }

        if (s->next_send > now + VB_SEND_SLACK) {
            break;
        }

        /*
         * A frame that is late still goes out (a microphone does not stop
         * either), several in a row if the loop fell behind by more than
         * an interval; the lateness is what the lag figures show.
         */

        lag = now - s->next_send;

        if (lag < 0) {
            lag = 0;
        }

        vb_hist_add(&st->lag, lag);

        if (lag > VB_LATE) {
            st->frames_late++;
        }

        rc = vb_send_audio(s);
        if (rc != VB_OK) {
            return rc;
        }

        s->next_send += vb_conf.interval;

        if (s->frames_left) {
            s->frames_left--;
        }

        now = s->last_send;
    }

    vb_timer_set(s, s->next_send);

    return VB_OK;
}


static int
vb_session_timer(vb_session_t *s, int64_t now)
{
    int  rc;

    if (s->nmarks) {
        rc = vb_marks_due(s, now);
        if (rc != VB_OK) {
            return rc;
        }

        if (s->wake > now + VB_SEND_SLACK) {
            /* woken for a mark only */
            vb_timer_place(s);
            return VB_OK;
        }
    }

    switch (s->state) {

    case VB_IDLE:
        return vb_session_open(s, now);

    case VB_STREAMING:
        return vb_stream_due(s, now);

    case VB_CONNECTING:
    case VB_HANDSHAKE:
    case VB_STARTING:
        return vb_session_fail(s, "no progress for %lld s",
                               (long long) (VB_OPEN_TIMEOUT / VB_NSEC));

    case VB_ENDING:
        if (vb_conf.dialect == VB_DIALECT_VONAGE) {
            return vb_hang_up(s);
        }

        if (vb_conf.listen || vb_conf.text_mode) {
            return vb_session_fail(s, "no close within %lld s of "
                                   "session.end",
                                   (long long) (VB_LISTEN_END / VB_NSEC));
        }

        return vb_session_fail(s, "no close within echo delay + 1 s of the "
                               "last frame (%" PRIu64 " of %" PRIu64
                               " echoes back%s)", s->received, s->seq,
                               s->closed_state ? ", state closed seen" : "");

    case VB_CLOSING:
        return vb_session_fail(s, "the server kept the connection open "
                               "after the close handshake");

    default:
        return VB_OK;
    }
}


/* inbound: the handshake response */

static const u_char *
vb_find_nocase(const u_char *p, size_t len, const char *needle)
{
    size_t  n, i;

    n = strlen(needle);

    for (i = 0; i + n <= len; i++) {
        if (strncasecmp((const char *) p + i, needle, n) == 0) {
            return p + i;
        }
    }

    return NULL;
}


static int
vb_header_is(const u_char *name, size_t nlen, const char *want)
{
    return nlen == strlen(want)
           && strncasecmp((const char *) name, want, nlen) == 0;
}


static int
vb_handshake_parse(vb_session_t *s)
{
    char           body[121];
    size_t         nlen, vlen, lnlen, n;
    unsigned       upgrade, connection, accept, protocol;
    const u_char  *p, *end, *hend, *eol, *colon, *name, *value;

    p = s->in.data + s->in.pos;
    end = s->in.data + s->in.last;

    hend = memmem(p, (size_t) (end - p), "\r\n\r\n", 4);

    if (hend == NULL) {
        if (end - p > VB_HEADER_MAX) {
            return vb_session_fail(s, "handshake response too long");
        }

        return VB_AGAIN;
    }

    eol = memmem(p, (size_t) (hend + 2 - p), "\r\n", 2);
    lnlen = (size_t) (eol - p);

    if (lnlen < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
        /* the refusal's body says why; show what is at hand, on one line */
        n = 0;

        for (value = hend + 4; value < end && n < sizeof(body) - 1; value++) {
            body[n++] = isprint(*value) ? (char) *value : ' ';
        }

        body[n] = '\0';

        return vb_session_fail(s, "handshake refused: \"%.*s\" %s",
                               (int) lnlen, p, body);
    }

    upgrade = 0;
    connection = 0;
    accept = 0;
    protocol = 0;

    for (p = eol + 2; p < hend; p = eol + 2) {
        eol = memmem(p, (size_t) (hend + 2 - p), "\r\n", 2);

        colon = memchr(p, ':', (size_t) (eol - p));
        if (colon == NULL) {
            return vb_session_fail(s, "malformed response header \"%.*s\"",
                                   (int) (eol - p), p);
        }

        name = p;
        nlen = (size_t) (colon - p);

        for (value = colon + 1; value < eol && *value == ' '; value++) {
            /* void */
        }

        vlen = (size_t) (eol - value);

        while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t')) {
            vlen--;
        }

        if (vb_header_is(name, nlen, "upgrade")) {
            upgrade = vb_header_is(value, vlen, "websocket");

        } else if (vb_header_is(name, nlen, "connection")) {
            connection = vb_find_nocase(value, vlen, "upgrade") != NULL;

        } else if (vb_header_is(name, nlen, "sec-websocket-accept")) {
            accept = vlen == strlen(s->accept)
                     && memcmp(value, s->accept, vlen) == 0;

            if (!accept) {
                return vb_session_fail(s, "wrong Sec-WebSocket-Accept "
                                       "\"%.*s\", expected \"%s\"",
                                       (int) vlen, value, s->accept);
            }

        } else if (vb_header_is(name, nlen, "sec-websocket-protocol")) {
            protocol = vlen == 8 && memcmp(value, "voice.v1", 8) == 0;
        }
    }

    /* only voice.v1 was offered a subprotocol */
    if (vb_conf.dialect != VB_DIALECT_VOICE) {
        protocol = 1;
    }

    if (!upgrade || !connection || !accept || !protocol) {
        return vb_session_fail(s, "101 response lacks%s%s%s%s",
                               upgrade ? "" : " Upgrade: websocket",
                               connection ? "" : " Connection: upgrade",
                               accept ? "" : " Sec-WebSocket-Accept",
                               protocol ? "" : " Sec-WebSocket-Protocol: "
                                               "voice.v1");
    }

    s->in.pos = (size_t) (hend + 4 - s->in.data);
    s->state = VB_STARTING;

    return vb_session_begin(s);
}


/*
 * The first messages of the dialect.  voice.v1 streams once the server
 * says so; the phone gateways hear nothing back and stream at once.
 */

static int
vb_session_begin(vb_session_t *s)
{
    int  rc;

    switch (vb_conf.dialect) {

    case VB_DIALECT_TWILIO:
        rc = vb_send_text(s, "{\"event\":\"connected\",\"protocol\":"
                          "\"Call\",\"version\":\"1.0.0\"}");
        if (rc != VB_OK) {
            return rc;
        }

        rc = vb_send_text(s, "{\"event\":\"start\",\"sequenceNumber\":"
                          "\"%" PRIu64 "\",\"start\":{\"accountSid\":"
                          "\"AC%032" PRIx64 "\",\"streamSid\":\"" VB_SID
                          "\",\"callSid\":\"CA%032" PRIx64 "\","
                          "\"tracks\":[\"inbound\"],\"customParameters\":{},"
                          "\"mediaFormat\":{\"encoding\":\"audio/x-mulaw\","
                          "\"sampleRate\":8000,\"channels\":1}},"
                          "\"streamSid\":\"" VB_SID "\"}",
                          s->twilio_seq++, s->id, s->id, s->id, s->id);
        if (rc != VB_OK) {
            return rc;
        }

        return vb_stream_start(s, vb_now());

    case VB_DIALECT_VONAGE:
        rc = vb_send_text(s, "{\"event\":\"websocket:connected\","
                          "\"content-type\":\"audio/l16;rate=%u\","
                          "\"caller\":\"voice-bench\",\"session\":\"%"
                          PRIu64 "\"}", vb_conf.in_rate, s->id);
        if (rc != VB_OK) {
            return rc;
        }

        return vb_stream_start(s, vb_now());

    default:
        return vb_send_frame(s, VB_WS_TEXT, vb_conf.start_msg,
                             strlen(vb_conf.start_msg));
    }
}


/*
 * The string value of a top-level-looking "key" in a JSON object.  The
 * server's messages are flat and short; a key is only taken where a colon
 * follows it, so "state" as a value does not match "state" the key.
 */

static int
vb_json_string(const u_char *p, size_t len, const char *key, char *out,
    size_t size)
{
    char           quoted[64];
    size_t         qlen, n;
    const u_char  *end, *q;

    qlen = (size_t) snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    end = p + len;

    while ((q = memmem(p, (size_t) (end - p), quoted, qlen)) != NULL) {
        p = q + qlen;

        while (p < end && isspace(*p)) {
            p++;
        }

        if (p == end || *p != ':') {
            continue;
        }

        for (p++; p < end && isspace(*p); p++) {
            /* void */
        }

        if (p == end || *p != '"') {
            return VB_ERROR;
        }

        n = 0;

        for (p++; p < end && *p != '"'; p++) {
            if (*p == '\\' && p + 1 < end) {
                p++;
            }

            if (n + 1 < size) {
                out[n++] = (char) *p;
            }
        }

        out[n] = '\0';

        return p < end ? VB_OK : VB_ERROR;
    }

    return VB_ERROR;
}


/* inbound: messages */

/*
 * A transcript event of an agent session: counted, and logged with the
 * wall clock time it reached this host, so that whoever wrote the
 * provider's side (on the same host) can tell how long it took.
 */

static int
vb_transcript_received(vb_session_t *s, const char *type, const u_char *p,
    size_t len, int64_t now)
{
    char              text[VB_TEXT_MAX];
    int64_t           arrival, read;
    const u_char     *q;
    unsigned long     turn;
    struct timespec   ts;

    if (s->state != VB_STREAMING && s->state != VB_ENDING) {
        vb_session_fault(s, "%s before the session listens", type);
        return VB_OK;
    }

    if (type[11] == 'p') {
        s->thread->stats.partials++;

    } else {
        s->thread->stats.finals++;
    }

    if (vb_conf.transcripts == NULL) {
        return VB_OK;
    }

    if (vb_json_string(p, len, "text", text, sizeof(text)) != VB_OK) {
        vb_session_fault(s, "%s without a text: %.*s", type,
                         (int) (len > 200 ? 200 : len), p);
        return VB_OK;
    }

    q = memmem(p, len, "\"turn\":", 7);
    turn = q ? strtoul((const char *) q + 7, NULL, 10) : 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    read = (int64_t) ts.tv_sec * VB_NSEC + ts.tv_nsec;
    arrival = read - (now - s->arrival);

    /* one line a message; stdio locks the stream for the threads */
    fprintf(vb_conf.transcripts, "%" PRIu64 " %" PRId64 " %" PRId64
            " %s %lu %s\n", s->id, arrival, read, type + 11, turn, text);

    return VB_OK;
}


/*
 * A piece of the streamed reply to a text turn.  The first delta's arrival
 * is timed (kernel stamp, monotonic from text.input, and CLOCK_REALTIME
 * for the --turns log, to be joined with the provider's send times); the
 * deltas must add up to response.text.done's text and all carry the same
 * turn number.
 */

static int
vb_reply_received(vb_session_t *s, const char *type, const u_char *p,
    size_t len, int64_t now)
{
    int               done;
    long              turn;
    size_t            n;
    int64_t           read;
    const u_char     *q;
    vb_stats_t       *st;
    struct timespec   ts;
    char              text[VB_REPLY_MAX];

    st = &s->thread->stats;
    done = (strcmp(type, "response.text.done") == 0);

    if (s->state != VB_STREAMING || !s->turn_busy) {
        vb_session_fault(s, "%s outside a turn", type);
        return VB_OK;
    }

    if (vb_json_string(p, len, done ? "text" : "delta", text, sizeof(text))
        != VB_OK)
    {
        vb_session_fault(s, "%s without its text: %.*s", type,
                         (int) (len > 200 ? 200 : len), p);
        return VB_OK;
    }

    q = memmem(p, len, "\"turn\":", 7);
    turn = q ? strtol((const char *) q + 7, NULL, 10) : -1;

    if (s->server_turn == -1) {
        s->server_turn = turn;

    } else if (turn != s->server_turn) {
        vb_session_fault(s, "%s of turn %ld in the reply to turn %ld", type,
                         turn, s->server_turn);
    }

    clock_gettime(CLOCK_REALTIME, &ts);
    read = (int64_t) ts.tv_sec * VB_NSEC + ts.tv_nsec;

    if (!done) {
        st->deltas++;

        if (s->first_arrival == 0) {
            s->first_read = read;
            s->first_arrival = read - (now - s->arrival);
            vb_hist_add(&st->first_delta, s->arrival - s->turn_sent);
        }

        n = strlen(text);

        if (s->reply_len + n >= VB_REPLY_MAX) {
            s->reply_over = 1;

        } else {
            memcpy(s->reply + s->reply_len, text, n);
            s->reply_len += n;
        }

        return VB_OK;
    }

    if (s->first_arrival == 0) {
        vb_session_fault(s, "response.text.done without a delta before it");

    } else if (s->reply_over || s->reply_len != strlen(text)
               || memcmp(s->reply, text, s->reply_len) != 0)
    {
        vb_session_fault(s, "the deltas of turn %ld do not add up to its "
                         "text: %.*s", turn, (int) strlen(text), text);
    }

    vb_hist_add(&st->reply, s->arrival - s->turn_sent);
    st->turns_done++;

    s->turns++;
    s->turn_busy = 0;

    if (vb_conf.turns_log) {
        /* one line a turn; stdio locks the stream for the threads */
        fprintf(vb_conf.turns_log, "%" PRIu64 " %" PRIu64 " %ld %" PRId64
                " %" PRId64 " %" PRId64 " %s\n", s->id, s->turns, turn,
                s->first_arrival, s->first_read, read - (now - s->arrival),
                text);
    }

    return vb_text_due(s, now);
}


static int
vb_text_received(vb_session_t *s, const u_char *p, size_t len, int64_t now)
{
    char         type[64], value[64], message[256];
    vb_stats_t  *st;

    st = &s->thread->stats;

    if (vb_json_string(p, len, "type", type, sizeof(type)) != VB_OK) {
        vb_session_fault(s, "text message without a type: %.*s",
                         (int) (len > 200 ? 200 : len), p);
        return VB_OK;
    }

    if (strcmp(type, "session.started") == 0) {

        if (s->state != VB_STARTING || s->started) {
            vb_session_fault(s, "unexpected session.started");
            return VB_OK;
        }

        if (vb_json_string(p, len, "protocol", value, sizeof(value)) != VB_OK
            || strcmp(value, "voice.v1") != 0)
        {
            vb_session_fault(s, "session.started without protocol "
                             "voice.v1: %.*s", (int) len, p);
        }

        s->started = 1;

        return VB_OK;
    }

    if (strcmp(type, "state") == 0) {

        if (vb_json_string(p, len, "state", value, sizeof(value)) != VB_OK) {
            vb_session_fault(s, "state message without a state: %.*s",
                             (int) len, p);
            return VB_OK;
        }

        if (strcmp(value, (vb_conf.listen || vb_conf.text_mode)
                          ? "listening" : "streaming") == 0
            && s->state == VB_STARTING)
        {
            if (!s->started) {
                vb_session_fault(s, "unexpected state %s", value);
                return VB_OK;
            }

            return vb_stream_start(s, now);
        }

        if ((vb_conf.listen || vb_conf.text_mode)
            && (strcmp(value, "listening") == 0
                || strcmp(value, "transcribing") == 0
                || (vb_conf.text_mode && strcmp(value, "thinking") == 0)))
        {
            st->states_other++;
            return VB_OK;
        }

        if (strcmp(value, "closed") == 0) {

            if (s->state != VB_ENDING) {
                vb_session_fault(s, "state closed before session.end");
            }

            s->closed_state = 1;
            return VB_OK;
        }

        vb_session_fault(s, "unexpected state \"%s\" in %s", value,
                         (vb_conf.listen || vb_conf.text_mode)
                         ? "an agent session" : "echo");

        return VB_OK;
    }

    if (strcmp(type, "info") == 0) {

        if (vb_json_string(p, len, "code", value, sizeof(value)) != VB_OK) {
            value[0] = '\0';
        }

        if (strcmp(value, "BACKPRESSURE") == 0) {
            st->backpressure++;

        } else if (strcmp(value, "BUFFER_FULL") == 0) {
            st->buffer_full++;

        } else if (strcmp(value, "SERVER_SHUTDOWN") == 0) {
            st->shutdown++;

        } else {
            st->info_other++;
        }

        if (vb_conf.verbose) {
            fprintf(stderr, "voice-bench: session %" PRIu64 " info: %.*s\n",
                    s->id, (int) len, p);
        }

        return VB_OK;
    }

    if (strcmp(type, "error") == 0) {

        if (vb_json_string(p, len, "message", message, sizeof(message))
            != VB_OK)
        {
            message[0] = '\0';
        }

        if (vb_json_string(p, len, "code", value, sizeof(value)) != VB_OK) {
            value[0] = '\0';
        }

        if (strcmp(value, "STT_FAIL") == 0) {
            st->stt_errors++;
        }

        vb_session_fault(s, "server error %s: %s", value, message);

        return VB_OK;
    }

    if (vb_conf.listen
        && (strcmp(type, "transcript.partial") == 0
            || strcmp(type, "transcript.final") == 0))
    {
        return vb_transcript_received(s, type, p, len, now);
    }

    if (vb_conf.text_mode
        && (strcmp(type, "response.text.delta") == 0
            || strcmp(type, "response.text.done") == 0))
    {
        return vb_reply_received(s, type, p, len, now);
    }

    vb_session_fault(s, "unexpected message: %.*s",
                     (int) (len > 200 ? 200 : len), p);

    return VB_OK;
}


static int
vb_echo_received(vb_session_t *s, const u_char *p, size_t len, int64_t now)
{
    size_t       i;
    int64_t      sent;
    uint64_t     seq;
    vb_stats_t  *st;

    st = &s->thread->stats;

    if (vb_conf.listen || vb_conf.text_mode) {
        /* the agent has nothing to say yet */
        st->audio_unexpected++;
        vb_session_fault(s, "audio from an agent session (%zu bytes)", len);
        return VB_OK;
    }

    if (s->state != VB_STREAMING && s->state != VB_ENDING) {
        vb_session_fault(s, "audio frame before the session streams");
        return VB_OK;
    }

    if (len != vb_conf.frame_size) {
        st->frames_corrupt++;
        vb_session_fault(s, "echo of %zu bytes, sent %zu", len,
                         vb_conf.frame_size);
        return VB_OK;
    }

    seq = vb_get64(p);
    sent = (int64_t) vb_get64(p + 8);

    if (seq >= s->seq || sent > now) {
        st->frames_corrupt++;
        vb_session_fault(s, "echo with a sequence never sent (%" PRIu64 ")",
                         seq);
        return VB_OK;
    }

    for (i = VB_PAYLOAD_MIN; i < len; i++) {
        if (p[i] != vb_filler(seq, i)) {
            st->frames_corrupt++;
            vb_session_fault(s, "echo %" PRIu64 " differs at byte %zu",
                             seq, i);
            return VB_OK;
        }
    }

    vb_hist_add(&st->rtt, now - sent - vb_conf.delay);
    vb_hist_add(&st->arrival, s->arrival - sent - vb_conf.delay);

    /* a lower sequence than one already seen is out of order */
    if (seq < s->expected) {
        st->frames_reordered++;

    } else {
        s->expected = seq + 1;
    }

    s->received++;

    return VB_OK;
}


/*
 * One output frame of a converted stream: its size is checked, its arrival
 * timed.  The client is modelled as a phone would play the audio: at real
 * time from the moment a frame arrives, without gaps while frames keep
 * coming in time.
 */

static int
vb_output_received(vb_session_t *s, size_t len, int64_t now)
{
    int64_t      at, since;
    vb_stats_t  *st;

    st = &s->thread->stats;

    if (s->state == VB_CLOSING) {
        /* our close crossed the server's last frames */
        return VB_OK;
    }

    if (s->state != VB_STREAMING && s->state != VB_ENDING) {
        vb_session_fault(s, "audio frame before the session streams");
        return VB_OK;
    }

    if (vb_conf.out_size ? len != vb_conf.out_size
                         : (len == 0 || len > VB_OPUS_MAX))
    {
        st->frames_corrupt++;
        vb_session_fault(s, "output frame of %zu bytes, expected %zu", len,
                         vb_conf.out_size);
        return VB_OK;
    }

    at = s->arrival;

    if (s->received == 0) {
        s->first_out = at;
        s->play_end = at;

    } else {
        vb_hist_add(&st->interval, at - s->last_out);
        vb_hist_add(&st->interval_read, now - s->last_out_read);

        if (at > s->play_end + VB_DRY) {
            st->underruns++;
        }
    }

    s->last_out = at;
    s->last_out_read = now;

    if (at > s->play_end) {
        s->play_end = at;
    }

    s->play_end += VB_OUT_FRAME;
    s->received++;

    /* past the first burst: what the pacing keeps up in steady state */
    since = at - s->first_out;

    if (since >= VB_STEADY) {
        vb_hist_add(&st->lead, (int64_t) s->received * VB_OUT_FRAME - since);
        vb_hist_add(&st->buffered, s->play_end - at);
    }

    if (vb_conf.dialect == VB_DIALECT_VONAGE && s->state == VB_ENDING
        && s->received >= vb_out_expected(s))
    {
        return vb_hang_up(s);
    }

    return VB_OK;
}


/* bytes that base64 text decodes to, or -1 if it is not base64 */

static ssize_t
vb_base64_decoded(const char *p, size_t len)
{
    size_t  i, pad;

    if (len % 4) {
        return -1;
    }

    pad = 0;

    for (i = 0; i < len; i++) {
        if (p[i] == '=' && i + 2 >= len) {
            pad++;
            continue;
        }

        if (pad || !(isalnum((u_char) p[i]) || p[i] == '+' || p[i] == '/')) {
            return -1;
        }
    }

    return (ssize_t) (len / 4 * 3 - pad);
}


static int
vb_twilio_received(vb_session_t *s, const u_char *p, size_t len,
    int64_t now)
{
    char         event[32], payload[VB_TEXT_MAX];
    ssize_t      n;
    unsigned     i;
    vb_stats_t  *st;

    st = &s->thread->stats;

    if (vb_json_string(p, len, "event", event, sizeof(event)) != VB_OK) {
        vb_session_fault(s, "Twilio message without an event: %.*s",
                         (int) (len > 200 ? 200 : len), p);
        return VB_OK;
    }

    if (strcmp(event, "media") == 0) {

        if (vb_json_string(p, len, "payload", payload, sizeof(payload))
            != VB_OK
            || (n = vb_base64_decoded(payload, strlen(payload))) < 0)
        {
            st->frames_corrupt++;
            vb_session_fault(s, "media without a base64 payload");
            return VB_OK;
        }

        return vb_output_received(s, (size_t) n, now);
    }

    if (strcmp(event, "mark") == 0) {
        st->marks++;

        if (s->state != VB_STREAMING) {
            /* the call is over: no confirmations come any more */
            return VB_OK;
        }

        if (s->nmarks == VB_MARKS) {
            return vb_session_fail(s, "more than %d marks unanswered",
                                   VB_MARKS);
        }

        i = (s->mark_head + s->nmarks) % VB_MARKS;

        if (vb_json_string(p, len, "name", s->marks[i].name,
                           sizeof(s->marks[i].name))
            != VB_OK)
        {
            vb_session_fault(s, "mark without a name: %.*s", (int) len, p);
            return VB_OK;
        }

        /* it is confirmed once everything received before it has played */
        s->marks[i].due = s->play_end > now ? s->play_end : now;
        s->nmarks++;

        if (s->nmarks == 1) {
            vb_timer_place(s);
        }

        return VB_OK;
    }

    if (strcmp(event, "clear") == 0) {
        st->clears++;
        return VB_OK;
    }

    vb_session_fault(s, "unexpected Twilio message: %.*s",
                     (int) (len > 200 ? 200 : len), p);

    return VB_OK;
}


static int
vb_vonage_received(vb_session_t *s, const u_char *p, size_t len)
{
    char  action[32];

    if (vb_json_string(p, len, "action", action, sizeof(action)) == VB_OK
        && strcmp(action, "clear") == 0)
    {
        s->thread->stats.clears++;
        return VB_OK;
    }

    vb_session_fault(s, "unexpected Vonage message: %.*s",
                     (int) (len > 200 ? 200 : len), p);

    return VB_OK;
}


static int
vb_close_received(vb_session_t *s, const u_char *p, size_t len)
{
    unsigned  code;
    int       rc;

    code = len >= 2 ? (unsigned) p[0] << 8 | p[1] : 1005;

    if (s->state == VB_ENDING && code == 1000) {

        /* only voice.v1 says "closed" before it closes */
        if (!s->closed_state && vb_conf.dialect == VB_DIALECT_VOICE) {
            vb_session_fault(s, "close 1000 without state closed before it");
        }

        rc = vb_send_close(s, 1000);
        if (rc != VB_OK) {
            return rc;
        }

        s->state = VB_CLOSING;
        vb_timer_set(s, vb_now() + VB_CLOSE_TIMEOUT);

        return VB_OK;
    }

    if (s->state == VB_CLOSING) {
        return VB_OK;
    }

    return vb_session_fail(s, "the server closed with %u \"%.*s\"", code,
                           (int) (len > 2 ? len - 2 : 0), p + 2);
}


static int
vb_message_received(vb_session_t *s, u_char opcode, const u_char *p,
    size_t len, int64_t now)
{
    if (opcode == VB_WS_BINARY) {

        if (vb_conf.dialect == VB_DIALECT_TWILIO) {
            s->thread->stats.frames_corrupt++;
            vb_session_fault(s, "a binary frame in a Twilio stream");
            return VB_OK;
        }

        if (vb_conf.count) {
            return vb_output_received(s, len, now);
        }

        return vb_echo_received(s, p, len, now);
    }

    switch (vb_conf.dialect) {

    case VB_DIALECT_TWILIO:
        return vb_twilio_received(s, p, len, now);

    case VB_DIALECT_VONAGE:
        return vb_vonage_received(s, p, len);

    default:
        return vb_text_received(s, p, len, now);
    }
}


static int
vb_frame_received(vb_session_t *s, unsigned fin, u_char opcode,
    const u_char *p, size_t len, int64_t now)
{
    int  rc;

    switch (opcode) {

    case VB_WS_CONT:
        if (s->msg_opcode == 0) {
            return vb_session_fail(s, "continuation without a message");
        }

        if (vb_buf_append(&s->msg, p, len) != VB_OK) {
            return vb_session_fail(s, "out of memory");
        }

        if (!fin) {
            return VB_OK;
        }

        rc = vb_message_received(s, s->msg_opcode, s->msg.data, s->msg.last,
                                 now);
        s->msg.pos = 0;
        s->msg.last = 0;
        s->msg_opcode = 0;

        return rc;

    case VB_WS_TEXT:
    case VB_WS_BINARY:
        if (s->msg_opcode) {
            return vb_session_fail(s, "new message inside a fragmented one");
        }

        if (fin) {
            return vb_message_received(s, opcode, p, len, now);
        }

        s->msg_opcode = opcode;

        if (vb_buf_append(&s->msg, p, len) != VB_OK) {
            return vb_session_fail(s, "out of memory");
        }

        return VB_OK;

    case VB_WS_CLOSE:
        if (!fin || len > 125 || len == 1) {
            return vb_session_fail(s, "malformed close frame");
        }

        return vb_close_received(s, p, len);

    case VB_WS_PING:
        if (!fin || len > 125) {
            return vb_session_fail(s, "malformed ping frame");
        }

        return vb_send_frame(s, VB_WS_PONG, p, len);

    case VB_WS_PONG:
        return VB_OK;

    default:
        return vb_session_fail(s, "unknown opcode 0x%x", opcode);
    }
}


static int
vb_frames_parse(vb_session_t *s, int64_t now)
{
    int        rc;
    size_t     avail, hlen, i;
    u_char    *p, opcode;
    uint64_t   len;
    unsigned   fin;

    for ( ;; ) {
        p = s->in.data + s->in.pos;
        avail = s->in.last - s->in.pos;

        if (avail < 2) {
            return VB_OK;
        }

        fin = p[0] & 0x80;
        opcode = p[0] & 0x0f;

        if (p[0] & 0x70) {
            return vb_session_fail(s, "frame with reserved bits set");
        }

        if (p[1] & 0x80) {
            return vb_session_fail(s, "masked frame from the server");
        }

        len = p[1] & 0x7f;
        hlen = 2;

        if (len == 126) {
            if (avail < 4) {
                return VB_OK;
            }

            len = (uint64_t) p[2] << 8 | p[3];
            hlen = 4;

        } else if (len == 127) {
            if (avail < 10) {
                return VB_OK;
            }

            len = 0;

            for (i = 0; i < 8; i++) {
                len = len << 8 | p[2 + i];
            }

            hlen = 10;
        }

        if (len > VB_FRAME_MAX) {
            return vb_session_fail(s, "frame of %" PRIu64 " bytes", len);
        }

        if (avail < hlen + len) {
            if (vb_buf_reserve(&s->in, hlen + len - avail) != VB_OK) {
                return vb_session_fail(s, "out of memory");
            }

            return VB_OK;
        }

        s->in.pos += hlen + len;

        rc = vb_frame_received(s, fin, opcode, p + hlen, len, now);
        if (rc != VB_OK) {
            return rc;
        }
    }
}


/*
 * When the last of the bytes just read reached the host, on the monotonic
 * clock.  For TCP the kernel stamps a read with its last segment, so for
 * earlier frames of the same read the figure errs late, never early.
 */

static int64_t
vb_arrival(struct msghdr *mh, int64_t now)
{
    int64_t           real, at;
    struct cmsghdr   *cm;
    struct timespec   ts, rnow;

    for (cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {

        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_TIMESTAMPNS)
        {
            continue;
        }

        memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
        clock_gettime(CLOCK_REALTIME, &rnow);

        real = (int64_t) rnow.tv_sec * VB_NSEC + rnow.tv_nsec;
        at = now - (real - ((int64_t) ts.tv_sec * VB_NSEC + ts.tv_nsec));

        return at < now ? at : now;
    }

    return now;
}


static int
vb_session_read(vb_session_t *s)
{
    int            rc;
    size_t         room;
    int64_t        now;
    ssize_t        n;
    struct iovec   iov;
    struct msghdr  mh;
    union {
        struct cmsghdr  align;
        u_char          buf[CMSG_SPACE(sizeof(struct timespec)) * 2];
    } control;

    for ( ;; ) {

        if (vb_buf_reserve(&s->in, VB_READ_MIN / 4) != VB_OK) {
            return vb_session_fail(s, "out of memory");
        }

        room = s->in.size - s->in.last;

        iov.iov_base = s->in.data + s->in.last;
        iov.iov_len = room;

        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof(control.buf);

        n = recvmsg(s->fd, &mh, 0);

        if (n == 0) {
            if (s->state == VB_CLOSING) {
                return vb_session_finish(s, vb_now());
            }

            return vb_session_fail(s, "the server closed the connection "
                                   "without a close frame");
        }

        if (n == -1) {
            if (errno == EAGAIN) {
                return VB_OK;
            }

            if (errno == EINTR) {
                continue;
            }

            if (s->state == VB_CLOSING) {
                return vb_session_finish(s, vb_now());
            }

            return vb_session_fail(s, "recv: %s", strerror(errno));
        }

        s->in.last += (size_t) n;

        rc = (s->state == VB_HANDSHAKE) ? vb_handshake_parse(s) : VB_OK;

        if (rc == VB_OK && s->state != VB_HANDSHAKE) {
            now = vb_now();
            s->arrival = vb_arrival(&mh, now);

            rc = vb_frames_parse(s, now);
        }

        if (rc == VB_DONE || rc == VB_ERROR) {
            return rc;
        }

        if ((size_t) n < room) {
            return VB_OK;
        }
    }
}


static void
vb_session_io(vb_session_t *s, uint32_t events)
{
    int  rc;

    if (s->state == VB_IDLE || s->state == VB_FINISHED) {
        /* a stale event of a socket closed earlier in this batch */
        return;
    }

    if (s->state == VB_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            return;
        }

        if (vb_session_connected(s) == VB_DONE) {
            return;
        }

    } else if ((events & EPOLLOUT) && s->out.pos < s->out.last) {
        rc = vb_session_flush(s);
        if (rc == VB_DONE) {
            return;
        }
    }

    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        (void) vb_session_read(s);
    }
}


static void *
vb_thread_run(void *data)
{
    int                  n, i;
    int64_t              now, wait;
    vb_thread_t         *t;
    vb_session_t        *s;
    struct timespec      ts, *tsp;
    struct epoll_event   events[VB_EVENTS];

    t = data;

    for ( ;; ) {
        now = vb_now();

        while (t->nheap && t->heap[0]->deadline <= now + VB_SEND_SLACK) {
            s = t->heap[0];
            vb_timer_del(s);
            (void) vb_session_timer(s, now);
            now = vb_now();
        }

        if (t->active == 0) {
            break;
        }

        tsp = NULL;

        if (t->nheap) {
            wait = t->heap[0]->deadline - now;
            if (wait < 0) {
                wait = 0;
            }

            ts.tv_sec = wait / VB_NSEC;
            ts.tv_nsec = wait % VB_NSEC;
            tsp = &ts;
        }

        n = epoll_pwait2(t->epfd, events, VB_EVENTS, tsp, NULL);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            fprintf(stderr, "voice-bench: epoll_pwait2: %s\n",
                    strerror(errno));
            exit(2);
        }

        for (i = 0; i < n; i++) {
            vb_session_io(events[i].data.ptr, events[i].events);
        }
    }

    atomic_fetch_sub(&vb_running, 1);

    return NULL;
}


static int
vb_thread_init(vb_thread_t *t, size_t nslots)
{
    size_t  i;

    t->nslots = nslots;
    t->active = nslots;
    t->nheap = 0;

    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (t->epfd == -1) {
        return VB_ERROR;
    }

    t->slots = calloc(nslots ? nslots : 1, sizeof(vb_session_t));
    t->heap = calloc(nslots ? nslots : 1, sizeof(vb_session_t *));
    t->scratch = malloc(vb_conf.scratch_size);

    if (t->slots == NULL || t->heap == NULL || t->scratch == NULL
        || vb_hist_init(&t->stats.rtt) != VB_OK
        || vb_hist_init(&t->stats.arrival) != VB_OK
        || vb_hist_init(&t->stats.lag) != VB_OK
        || vb_hist_init(&t->stats.setup) != VB_OK
        || vb_hist_init(&t->stats.interval) != VB_OK
        || vb_hist_init(&t->stats.interval_read) != VB_OK
        || vb_hist_init(&t->stats.lead) != VB_OK
        || vb_hist_init(&t->stats.buffered) != VB_OK
        || vb_hist_init(&t->stats.first_delta) != VB_OK
        || vb_hist_init(&t->stats.reply) != VB_OK)
    {
        return VB_ERROR;
    }

    if (getrandom(&t->rng, sizeof(t->rng), 0) != sizeof(t->rng)) {
        return VB_ERROR;
    }

    t->rng |= 1;

    for (i = 0; i < nslots; i++) {
        t->slots[i].thread = t;
        t->slots[i].heap_index = VB_UNQUEUED;
        t->slots[i].state = VB_IDLE;
        vb_session_reset(&t->slots[i]);
    }

    return VB_OK;
}


/* server side figures from /proc */

static unsigned
vb_workers_find(pid_t master, pid_t *pids, unsigned max)
{
    int       fd;
    char      path[64], buf[4096], cmd[64], *p, *end;
    long      pid;
    ssize_t   n;
    unsigned  count;

    snprintf(path, sizeof(path), "/proc/%d/task/%d/children",
             (int) master, (int) master);

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return 0;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);

    if (n <= 0) {
        return 0;
    }

    buf[n] = '\0';
    count = 0;

    for (p = buf; count < max; p = end) {
        pid = strtol(p, &end, 10);
        if (end == p) {
            break;
        }

        /* only workers: a cache manager would not carry sessions */
        snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd == -1) {
            continue;
        }

        n = read(fd, cmd, sizeof(cmd) - 1);
        close(fd);

        if (n > 0) {
            cmd[n] = '\0';

            if (strstr(cmd, "worker process") != NULL) {
                pids[count++] = (pid_t) pid;
            }
        }
    }

    return count;
}


/*
 * VmRSS and its anonymous part: VmRSS also counts the pages of shared
 * libraries a worker touches for the first time (the first handshake
 * pulls in libcrypto's SHA-1, for one), which is not session memory.
 */

static long
vb_proc_rss(pid_t pid, long *anon)
{
    FILE  *f;
    char   path[64], line[256];
    long   kib;

    *anon = -1;

    snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);

    f = fopen(path, "re");
    if (f == NULL) {
        return -1;
    }

    kib = -1;

    while (fgets(line, sizeof(line), f) != NULL) {

        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);

        } else if (strncmp(line, "RssAnon:", 8) == 0) {
            *anon = strtol(line + 8, NULL, 10);
            break;
        }
    }

    fclose(f);

    return kib;
}


static double
vb_proc_cpu(pid_t pid)
{
    FILE                *f;
    char                 path[64], line[1024], *p;
    unsigned long long   utime, stime;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);

    f = fopen(path, "re");
    if (f == NULL) {
        return 0;
    }

    p = fgets(line, sizeof(line), f);
    fclose(f);

    if (p == NULL || (p = strrchr(line, ')')) == NULL) {
        return 0;
    }

    /* after the command: state and 10 more fields, then utime, stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &utime, &stime) != 2)
    {
        return 0;
    }

    return (double) (utime + stime) / (double) sysconf(_SC_CLK_TCK);
}


/* the workers' summed VmRSS; notes when the set of workers changed */

static long
vb_rss_sample(long *anon)
{
    long      sum, kib, a;
    pid_t     pids[64];
    unsigned  n, i;

    *anon = -1;

    if (vb_conf.nginx_pid == 0) {
        return -1;
    }

    n = vb_workers_find(vb_conf.nginx_pid, pids, 64);

    if (n != vb_workers.n
        || memcmp(pids, vb_workers.pids, n * sizeof(pid_t)) != 0)
    {
        if (!vb_workers.changed) {
            fprintf(stderr, "voice-bench: the nginx workers changed "
                    "(%u -> %u processes): a worker exited or was "
                    "replaced\n", vb_workers.n, n);
        }

        vb_workers.changed = 1;
    }

    sum = 0;
    *anon = 0;

    for (i = 0; i < n; i++) {
        kib = vb_proc_rss(pids[i], &a);

        if (kib > 0) {
            sum += kib;
        }

        if (a > 0) {
            *anon += a;
        }
    }

    return sum;
}


static double
vb_workers_cpu(void)
{
    double    sum;
    unsigned  i;

    sum = 0;

    for (i = 0; i < vb_workers.n; i++) {
        sum += vb_proc_cpu(vb_workers.pids[i]);
    }

    return sum;
}


static double
vb_self_cpu(void)
{
    struct rusage  ru;

    getrusage(RUSAGE_SELF, &ru);

    return (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
           + (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}


/* options */

static void
vb_usage(FILE *f)
{
    fprintf(f,
        "usage: voice-bench [options] ws://host:port/path\n"
        "\n"
        "  -n, --sessions N       concurrent sessions (default 1)\n"
        "  -s, --frame-size B     bytes per audio frame (default 640,\n"
        "                         20 ms of 16 kHz PCM16; at least 16)\n"
        "  -i, --interval MS      time between frames (default 20)\n"
        "  -d, --duration S       seconds each session streams (default 10)\n"
        "  -D, --delay MS         the server's echo delay (default 500)\n"
        "  -r, --ramp N           sessions opened per second (default 0:\n"
        "                         all at once)\n"
        "  -t, --threads N        I/O threads (default 1)\n"
        "      --churn N          open and close N sessions, -n at a time,\n"
        "                         each streaming --churn-frames frames\n"
        "      --churn-frames N   frames per churned session (default 5)\n"
        "      --nginx-pid PID    nginx master: sample its workers' memory\n"
        "      --rss-every S      memory timeline period (default 10)\n"
        "      --input FORMAT     audio the sessions send: pcm8k, pcm16k,\n"
        "                         pcm24k, pcm48k, mulaw or opus (default\n"
        "                         pcm16k); frames of 20 ms of a tone\n"
        "      --output FORMAT    audio the sessions ask for (default: as\n"
        "                         the input); when it differs the server\n"
        "                         converts and output frames are counted\n"
        "      --start JSON       the session.start message to send instead\n"
        "                         of the one built from the formats\n"
        "      --dialect NAME     voice.v1 (default), twilio (mu-law in JSON\n"
        "                         media messages, marks answered as played)\n"
        "                         or vonage (a JSON first frame, then L16\n"
        "                         at the --input rate: 8k, 16k or 24k);\n"
        "                         twilio ignores --input and --output\n"
        "      --count            count output frames instead of matching\n"
        "                         them with what was sent (implied by a\n"
        "                         conversion or a phone dialect)\n"
        "      --listen           agent sessions: expect state listening,\n"
        "                         send silence (pcm16k, -s bytes a frame)\n"
        "                         in real time, expect no audio back and\n"
        "                         count transcript.partial and .final\n"
        "      --query Q          append Q to each request's query, every\n"
        "                         \"{n}\" in it replaced by the session's\n"
        "                         number (0, 1, ...)\n"
        "      --transcripts FILE with --listen, write a line per transcript\n"
        "                         event: session, arrival and read time\n"
        "                         (CLOCK_REALTIME ns), partial or final,\n"
        "                         turn, text\n"
        "      --text-turns N     agent sessions driven by text: after\n"
        "                         state listening send text.input, read\n"
        "                         the streamed reply to response.text.done\n"
        "                         (its deltas must add up to its text),\n"
        "                         repeat N times (0: until -d is over), then\n"
        "                         wait out -d and end; no audio\n"
        "      --text T           the text of each turn, \"{n}\" replaced by\n"
        "                         the session's number, \"{t}\" by the turn's\n"
        "                         (1, 2, ...; default \"hello s{n}t{t}\")\n"
        "      --turns FILE       with --text-turns, write a line per reply:\n"
        "                         session, turn, server turn, first delta's\n"
        "                         arrival and read time and the done's\n"
        "                         arrival (CLOCK_REALTIME ns), text\n"
        "      --json             print one JSON summary line\n"
        "  -v, --verbose          print every problem and info event\n"
        "      --self-test        check the handshake digest and exit\n"
        "\n"
        "Counted output: a stream may come %d frames short or long of\n"
        "its input (resampler delay, the padded last frame); more is lost\n"
        "or extra.\n"
        "\n"
        "Exits 1 on a functional failure (sessions that failed, frames\n"
        "lost, reordered or corrupted, protocol errors, a worker that\n"
        "went away), 2 on a usage error, 0 otherwise.\n", VB_OUT_SLACK);
}


static int
vb_parse_url(const char *url)
{
    int               rc;
    size_t            n;
    const char       *p, *host, *hend, *slash;
    struct addrinfo   hints, *res;

    if (strncmp(url, "ws://", 5) != 0) {
        fprintf(stderr, "voice-bench: only ws:// URLs are supported\n");
        return VB_ERROR;
    }

    p = url + 5;
    slash = strchr(p, '/');

    if (slash == NULL) {
        slash = p + strlen(p);
    }

    n = (size_t) (slash - p);

    if (n == 0 || n >= sizeof(vb_conf.authority)) {
        fprintf(stderr, "voice-bench: bad host in \"%s\"\n", url);
        return VB_ERROR;
    }

    memcpy(vb_conf.authority, p, n);
    vb_conf.authority[n] = '\0';

    snprintf(vb_conf.path, sizeof(vb_conf.path), "%s",
             *slash ? slash : "/");

    host = vb_conf.authority;

    if (*host == '[') {
        host++;
        hend = strchr(host, ']');

        if (hend == NULL) {
            fprintf(stderr, "voice-bench: bad host in \"%s\"\n", url);
            return VB_ERROR;
        }

        p = (hend[1] == ':') ? hend + 2 : NULL;

    } else {
        hend = strchr(host, ':');
        p = hend ? hend + 1 : NULL;

        if (hend == NULL) {
            hend = host + strlen(host);
        }
    }

    snprintf(vb_conf.host, sizeof(vb_conf.host), "%.*s",
             (int) (hend - host), host);
    snprintf(vb_conf.port, sizeof(vb_conf.port), "%s", p ? p : "80");

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;

    rc = getaddrinfo(vb_conf.host, vb_conf.port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "voice-bench: %s:%s: %s\n", vb_conf.host,
                vb_conf.port, gai_strerror(rc));
        return VB_ERROR;
    }

    memcpy(&vb_conf.addr, res->ai_addr, res->ai_addrlen);
    vb_conf.addrlen = res->ai_addrlen;

    freeaddrinfo(res);

    return VB_OK;
}


static int
vb_number(const char *arg, const char *name, double min, double max,
    double *out)
{
    char    *end;
    double   v;

    errno = 0;
    v = strtod(arg, &end);

    if (errno || end == arg || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "voice-bench: invalid %s \"%s\"\n", name, arg);
        return VB_ERROR;
    }

    *out = v;

    return VB_OK;
}


static int
vb_format(const char *name, unsigned *enc, unsigned *rate)
{
    unsigned  i;

    for (i = 0; vb_formats[i].name; i++) {
        if (strcmp(name, vb_formats[i].name) == 0) {
            *enc = vb_formats[i].enc;
            *rate = vb_formats[i].rate;
            return VB_OK;
        }
    }

    fprintf(stderr, "voice-bench: unknown format \"%s\" (pcm8k, pcm16k, "
            "pcm24k, pcm48k, mulaw, opus)\n", name);

    return VB_ERROR;
}


static const char *
vb_format_name(unsigned enc, unsigned rate)
{
    unsigned  i;

    for (i = 0; vb_formats[i].name; i++) {
        if (vb_formats[i].enc == enc && vb_formats[i].rate == rate) {
            return vb_formats[i].name;
        }
    }

    return "?";
}


static const char *
vb_encoding_name(unsigned enc)
{
    return enc == VB_ENC_MULAW ? "mulaw" : enc == VB_ENC_OPUS ? "opus"
                                                              : "pcm_s16le";
}


/* G.711 mu-law of one sample: sign, 3-bit segment, 4-bit step, inverted */

static u_char
vb_mulaw(int16_t sample)
{
    int      v, sign, seg;
    u_char   step;

    v = sample;
    sign = (v < 0) ? 0x80 : 0;

    if (v < 0) {
        v = -v;
    }

    if (v > 32635) {
        v = 32635;
    }

    v += 0x84;

    for (seg = 7; seg > 0 && !(v & (0x80 << seg)); seg--) {
        /* void */
    }

    step = (u_char) ((v >> (seg + 3)) & 0x0f);

    return (u_char) ~(sign | (seg << 4) | step);
}


/*
 * One 20 ms Opus packet of the tone at 48 kHz.  The encoder runs a few
 * frames first so that the packet is one from the middle of a stream.
 */

static int
vb_opus_tone(const int16_t *pcm, size_t n)
{
    int            err, i;
    void          *lib;
    u_char         packet[VB_OPUS_MAX];
    opus_int32     len;
    OpusEncoder   *enc;
    OpusEncoder *(*create)(opus_int32, int, int, int *);
    int          (*ctl)(OpusEncoder *, int, ...);
    opus_int32   (*encode)(OpusEncoder *, const opus_int16 *, int,
                           unsigned char *, opus_int32);
    void         (*destroy)(OpusEncoder *);

    lib = dlopen("libopus.so.0", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "voice-bench: Opus input needs libopus: %s\n",
                dlerror());
        return VB_ERROR;
    }

    create = (OpusEncoder *(*)(opus_int32, int, int, int *))
             dlsym(lib, "opus_encoder_create");
    ctl = (int (*)(OpusEncoder *, int, ...)) dlsym(lib, "opus_encoder_ctl");
    encode = (opus_int32 (*)(OpusEncoder *, const opus_int16 *, int,
                             unsigned char *, opus_int32))
             dlsym(lib, "opus_encode");
    destroy = (void (*)(OpusEncoder *)) dlsym(lib, "opus_encoder_destroy");

    if (create == NULL || ctl == NULL || encode == NULL || destroy == NULL) {
        fprintf(stderr, "voice-bench: libopus lacks the encoder\n");
        dlclose(lib);
        return VB_ERROR;
    }

    enc = create(48000, 1, OPUS_APPLICATION_VOIP, &err);
    if (enc == NULL || err != OPUS_OK) {
        fprintf(stderr, "voice-bench: opus_encoder_create failed (%d)\n",
                err);
        dlclose(lib);
        return VB_ERROR;
    }

    (void) ctl(enc, OPUS_SET_BITRATE(24000));

    len = 0;

    for (i = 0; i < 5; i++) {
        len = encode(enc, pcm, (int) n, packet, sizeof(packet));
        if (len <= 0) {
            fprintf(stderr, "voice-bench: opus_encode failed (%d)\n",
                    (int) len);
            destroy(enc);
            dlclose(lib);
            return VB_ERROR;
        }
    }

    destroy(enc);
    dlclose(lib);

    vb_conf.audio = malloc((size_t) len);
    if (vb_conf.audio == NULL) {
        return VB_ERROR;
    }

    memcpy(vb_conf.audio, packet, (size_t) len);
    vb_conf.audio_len = (size_t) len;

    return VB_OK;
}


/*
 * What the formats and the dialect mean for the frames: the input frame
 * (a tone, whose 8 periods in 20 ms repeat seamlessly at every rate), the
 * output frame size, whether output is matched or counted, and the
 * session.start message.
 */

static int
vb_audio_setup(void)
{
    int       n;
    size_t    i, samples;
    int16_t  *pcm;

    switch (vb_conf.dialect) {

    case VB_DIALECT_TWILIO:
        /* whatever --input and --output said */
        vb_conf.in_enc = VB_ENC_MULAW;
        vb_conf.in_rate = 8000;
        vb_conf.out_enc = VB_ENC_MULAW;
        vb_conf.out_rate = 8000;
        break;

    case VB_DIALECT_VONAGE:
        if (vb_conf.in_enc != VB_ENC_PCM || vb_conf.in_rate == 48000) {
            fprintf(stderr, "voice-bench: Vonage speaks L16 at 8, 16 or "
                    "24 kHz only\n");
            return VB_ERROR;
        }

        vb_conf.out_enc = VB_ENC_PCM;
        vb_conf.out_rate = vb_conf.in_rate;
        break;

    default:
        if (vb_conf.out_enc == 0) {
            vb_conf.out_enc = vb_conf.in_enc;
            vb_conf.out_rate = vb_conf.in_rate;
        }
    }

    /* the server converts: what comes back is other bytes */
    if (vb_conf.dialect != VB_DIALECT_VOICE
        || vb_conf.in_enc != vb_conf.out_enc
        || vb_conf.in_rate != vb_conf.out_rate)
    {
        vb_conf.count = 1;
    }

    if (vb_conf.count && vb_conf.interval != VB_OUT_FRAME) {
        fprintf(stderr, "voice-bench: counted output needs 20 ms frames "
                "(-i 20)\n");
        return VB_ERROR;
    }

    /* matched frames: -s bytes (640 by default) of sequence and filler */

    vb_conf.in_ms = 20;

    if (!vb_conf.count) {
        if (!vb_conf.frame_size_set && vb_conf.in_enc != VB_ENC_OPUS) {
            vb_conf.frame_size = (vb_conf.in_enc == VB_ENC_MULAW)
                                 ? 160 : vb_conf.in_rate / 50 * 2;
        }

        goto start;
    }

    if (vb_conf.frame_size_set) {
        fprintf(stderr, "voice-bench: -s does not apply to counted output: "
                "frames are 20 ms of the input format\n");
        return VB_ERROR;
    }

    samples = vb_conf.in_rate / 50;

    pcm = malloc(samples * sizeof(int16_t));
    if (pcm == NULL) {
        return VB_ERROR;
    }

    for (i = 0; i < samples; i++) {
        pcm[i] = (int16_t) lrint(VB_TONE_LEVEL
                                 * sin(2 * M_PI * VB_TONE_HZ * (double) i
                                       / vb_conf.in_rate));
    }

    switch (vb_conf.in_enc) {

    case VB_ENC_OPUS:
        if (vb_opus_tone(pcm, samples) != VB_OK) {
            free(pcm);
            return VB_ERROR;
        }
        break;

    case VB_ENC_MULAW:
        vb_conf.audio = malloc(samples);
        if (vb_conf.audio == NULL) {
            free(pcm);
            return VB_ERROR;
        }

        for (i = 0; i < samples; i++) {
            vb_conf.audio[i] = vb_mulaw(pcm[i]);
        }

        vb_conf.audio_len = samples;
        break;

    default:
        vb_conf.audio = malloc(samples * 2);
        if (vb_conf.audio == NULL) {
            free(pcm);
            return VB_ERROR;
        }

        for (i = 0; i < samples; i++) {
            vb_conf.audio[2 * i] = (u_char) (pcm[i] & 0xff);
            vb_conf.audio[2 * i + 1] = (u_char) ((uint16_t) pcm[i] >> 8);
        }

        vb_conf.audio_len = samples * 2;
    }

    free(pcm);

    vb_conf.frame_size = vb_conf.audio_len;

    vb_conf.payload64 = malloc(vb_conf.audio_len / 3 * 4 + 8);
    if (vb_conf.payload64 == NULL) {
        return VB_ERROR;
    }

    vb_base64(vb_conf.payload64, vb_conf.audio, vb_conf.audio_len);

    switch (vb_conf.out_enc) {

    case VB_ENC_OPUS:
        vb_conf.out_size = 0;
        break;

    case VB_ENC_MULAW:
        vb_conf.out_size = 160;
        break;

    default:
        vb_conf.out_size = vb_conf.out_rate / 50 * 2;
    }

start:

    vb_conf.scratch_size = (vb_conf.frame_size > VB_TEXT_MAX
                            ? vb_conf.frame_size : VB_TEXT_MAX) + 64;

    if (vb_conf.start) {
        n = snprintf(vb_conf.start_msg, sizeof(vb_conf.start_msg), "%s",
                     vb_conf.start);

    } else {
        n = snprintf(vb_conf.start_msg, sizeof(vb_conf.start_msg),
                     "{\"type\":\"session.start\",\"audio\":{"
                     "\"input\":{\"encoding\":\"%s\",\"sample_rate\":%u,"
                     "\"channels\":1},"
                     "\"output\":{\"encoding\":\"%s\",\"sample_rate\":%u}}}",
                     vb_encoding_name(vb_conf.in_enc), vb_conf.in_rate,
                     vb_encoding_name(vb_conf.out_enc), vb_conf.out_rate);
    }

    if (n < 0 || (size_t) n >= sizeof(vb_conf.start_msg)) {
        fprintf(stderr, "voice-bench: --start is too long\n");
        return VB_ERROR;
    }

    return VB_OK;
}


static int
vb_self_test(void)
{
    char  accept[32];

    /* the example of RFC 6455, section 1.3 */
    vb_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", accept);

    if (strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0) {
        fprintf(stderr, "voice-bench: self-test failed: %s\n", accept);
        return 1;
    }

    printf("voice-bench: self-test ok\n");

    return 0;
}


static int
vb_options(int argc, char **argv)
{
    int          c;
    double       v;
    unsigned     i;
    const char  *transcripts, *turns;

    static const struct option  options[] = {
        { "sessions",     required_argument, NULL, 'n' },
        { "frame-size",   required_argument, NULL, 's' },
        { "interval",     required_argument, NULL, 'i' },
        { "duration",     required_argument, NULL, 'd' },
        { "delay",        required_argument, NULL, 'D' },
        { "ramp",         required_argument, NULL, 'r' },
        { "threads",      required_argument, NULL, 't' },
        { "churn",        required_argument, NULL, VB_OPT_CHURN },
        { "churn-frames", required_argument, NULL, VB_OPT_CHURN_FRAMES },
        { "nginx-pid",    required_argument, NULL, VB_OPT_NGINX_PID },
        { "rss-every",    required_argument, NULL, VB_OPT_RSS_EVERY },
        { "input",        required_argument, NULL, VB_OPT_INPUT },
        { "output",       required_argument, NULL, VB_OPT_OUTPUT },
        { "start",        required_argument, NULL, VB_OPT_START },
        { "dialect",      required_argument, NULL, VB_OPT_DIALECT },
        { "count",        no_argument,       NULL, VB_OPT_COUNT },
        { "listen",       no_argument,       NULL, VB_OPT_LISTEN },
        { "query",        required_argument, NULL, VB_OPT_QUERY },
        { "transcripts",  required_argument, NULL, VB_OPT_TRANSCRIPTS },
        { "text-turns",   required_argument, NULL, VB_OPT_TEXT_TURNS },
        { "text",         required_argument, NULL, VB_OPT_TEXT },
        { "turns",        required_argument, NULL, VB_OPT_TURNS },
        { "json",         no_argument,       NULL, VB_OPT_JSON },
        { "verbose",      no_argument,       NULL, 'v' },
        { "self-test",    no_argument,       NULL, VB_OPT_SELF_TEST },
        { "help",         no_argument,       NULL, 'h' },
        { NULL,           0,                 NULL, 0 }
    };

    vb_conf.sessions = 1;
    vb_conf.frame_size = 640;
    vb_conf.interval = 20 * VB_MSEC;
    vb_conf.duration = 10 * VB_NSEC;
    vb_conf.delay = 500 * VB_MSEC;
    vb_conf.threads = 1;
    vb_conf.churn_frames = 5;
    vb_conf.rss_every = 10 * VB_NSEC;
    vb_conf.in_enc = VB_ENC_PCM;
    vb_conf.in_rate = 16000;
    transcripts = NULL;
    turns = NULL;
    vb_conf.text = "hello s{n}t{t}";

    while ((c = getopt_long(argc, argv, "n:s:i:d:D:r:t:vh", options, NULL))
           != -1)
    {
        switch (c) {

        case 'n':
            if (vb_number(optarg, "session count", 1, 1e6, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.sessions = (uint64_t) v;
            break;

        case 's':
            if (vb_number(optarg, "frame size", VB_PAYLOAD_MIN,
                          VB_FRAME_MAX, &v) != VB_OK)
            {
                return VB_ERROR;
            }

            vb_conf.frame_size = (size_t) v;
            vb_conf.frame_size_set = 1;
            break;

        case 'i':
            if (vb_number(optarg, "interval", 0.1, 60000, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.interval = (int64_t) (v * VB_MSEC);
            break;

        case 'd':
            if (vb_number(optarg, "duration", 0, 1e7, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.duration = (int64_t) (v * VB_NSEC);
            break;

        case 'D':
            if (vb_number(optarg, "delay", 0, 600000, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.delay = (int64_t) (v * VB_MSEC);
            break;

        case 'r':
            if (vb_number(optarg, "ramp", 0, 1e6, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.ramp = v;
            break;

        case 't':
            if (vb_number(optarg, "thread count", 1, 64, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.threads = (unsigned) v;
            break;

        case VB_OPT_CHURN:
            if (vb_number(optarg, "churn count", 1, 1e9, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.churn = (uint64_t) v;
            break;

        case VB_OPT_CHURN_FRAMES:
            if (vb_number(optarg, "churn frames", 0, 1e6, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.churn_frames = (uint64_t) v;
            break;

        case VB_OPT_NGINX_PID:
            if (vb_number(optarg, "pid", 1, 1e9, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.nginx_pid = (pid_t) v;
            break;

        case VB_OPT_RSS_EVERY:
            if (vb_number(optarg, "rss period", 0, 1e6, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.rss_every = (int64_t) (v * VB_NSEC);
            break;

        case VB_OPT_INPUT:
            if (vb_format(optarg, &vb_conf.in_enc, &vb_conf.in_rate)
                != VB_OK)
            {
                return VB_ERROR;
            }
            break;

        case VB_OPT_OUTPUT:
            if (vb_format(optarg, &vb_conf.out_enc, &vb_conf.out_rate)
                != VB_OK)
            {
                return VB_ERROR;
            }
            break;

        case VB_OPT_START:
            vb_conf.start = optarg;
            break;

        case VB_OPT_DIALECT:
            for (i = 0; i < 3; i++) {
                if (strcmp(optarg, vb_dialect_names[i]) == 0
                    || (i == 0 && strcmp(optarg, "voice") == 0))
                {
                    break;
                }
            }

            if (i == 3) {
                fprintf(stderr, "voice-bench: unknown dialect \"%s\"\n",
                        optarg);
                return VB_ERROR;
            }

            vb_conf.dialect = i;
            break;

        case VB_OPT_COUNT:
            vb_conf.count = 1;
            break;

        case VB_OPT_LISTEN:
            vb_conf.listen = 1;
            break;

        case VB_OPT_QUERY:
            vb_conf.query = optarg;
            break;

        case VB_OPT_TRANSCRIPTS:
            transcripts = optarg;
            break;

        case VB_OPT_TEXT_TURNS:
            if (vb_number(optarg, "text turns", 0, 1e6, &v) != VB_OK) {
                return VB_ERROR;
            }

            vb_conf.text_mode = 1;
            vb_conf.text_turns = (uint64_t) v;
            break;

        case VB_OPT_TEXT:
            vb_conf.text = optarg;
            break;

        case VB_OPT_TURNS:
            turns = optarg;
            break;

        case VB_OPT_JSON:
            vb_conf.json = 1;
            break;

        case 'v':
            vb_conf.verbose = 1;
            break;

        case VB_OPT_SELF_TEST:
            exit(vb_self_test());

        case 'h':
            vb_usage(stdout);
            exit(0);

        default:
            vb_usage(stderr);
            return VB_ERROR;
        }
    }

    if (optind != argc - 1) {
        vb_usage(stderr);
        return VB_ERROR;
    }

    vb_conf.url = argv[optind];

    if (vb_audio_setup() != VB_OK) {
        return VB_ERROR;
    }

    if (vb_conf.listen) {
        if (vb_conf.count || vb_conf.in_rate != 16000
            || vb_conf.in_enc != VB_ENC_PCM)
        {
            fprintf(stderr, "voice-bench: --listen sends pcm16k in "
                    "voice.v1 and expects no output\n");
            return VB_ERROR;
        }

        vb_conf.silence = calloc(1, vb_conf.frame_size);
        if (vb_conf.silence == NULL) {
            fprintf(stderr, "voice-bench: out of memory\n");
            return VB_ERROR;
        }
    }

    if (transcripts) {
        if (!vb_conf.listen) {
            fprintf(stderr, "voice-bench: --transcripts needs --listen\n");
            return VB_ERROR;
        }

        vb_conf.transcripts = fopen(transcripts, "w");
        if (vb_conf.transcripts == NULL) {
            fprintf(stderr, "voice-bench: %s: %s\n", transcripts,
                    strerror(errno));
            return VB_ERROR;
        }

        /* written from the I/O loops: a large buffer keeps them off disk */
        (void) setvbuf(vb_conf.transcripts, NULL, _IOFBF, 1 << 20);
    }

    if (vb_conf.text_mode) {
        if (vb_conf.listen || vb_conf.count
            || vb_conf.dialect != VB_DIALECT_VOICE)
        {
            fprintf(stderr, "voice-bench: --text-turns speaks voice.v1 "
                    "without audio\n");
            return VB_ERROR;
        }

        /* sent as it is inside a JSON string */
        for (i = 0; vb_conf.text[i]; i++) {
            if (vb_conf.text[i] == '"' || vb_conf.text[i] == '\\'
                || (u_char) vb_conf.text[i] < 0x20)
            {
                fprintf(stderr, "voice-bench: --text may not hold quotes, "
                        "backslashes or control characters\n");
                return VB_ERROR;
            }
        }
    }

    if (turns) {
        if (!vb_conf.text_mode) {
            fprintf(stderr, "voice-bench: --turns needs --text-turns\n");
            return VB_ERROR;
        }

        vb_conf.turns_log = fopen(turns, "w");
        if (vb_conf.turns_log == NULL) {
            fprintf(stderr, "voice-bench: %s: %s\n", turns, strerror(errno));
            return VB_ERROR;
        }

        (void) setvbuf(vb_conf.turns_log, NULL, _IOFBF, 1 << 20);
    }

    if (vb_conf.churn && vb_conf.sessions > vb_conf.churn) {
        vb_conf.sessions = vb_conf.churn;
    }

    if (vb_conf.threads > vb_conf.sessions) {
        vb_conf.threads = (unsigned) vb_conf.sessions;
    }

    return vb_parse_url(vb_conf.url);
}


static void
vb_signal(int signo)
{
    (void) signo;

    vb_stop = 1;
}


static int
vb_limits(void)
{
    struct rlimit  rl;
    uint64_t       need;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        return VB_ERROR;
    }

    need = vb_conf.sessions + 64;

    if (rl.rlim_cur < need && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = (rl.rlim_max < need) ? rl.rlim_max : need;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
        (void) getrlimit(RLIMIT_NOFILE, &rl);
    }

    if (rl.rlim_cur < need) {
        fprintf(stderr, "voice-bench: %" PRIu64 " sessions need %" PRIu64
                " descriptors, the limit is %llu (raise ulimit -n)\n",
                vb_conf.sessions, need, (unsigned long long) rl.rlim_cur);
        return VB_ERROR;
    }

    return VB_OK;
}


/* the report */

typedef struct {
    vb_stats_t     stats;
    double         elapsed;
    double         cpu;
    double         server_cpu;
    long           rss_before;
    long           rss_peak;
    long           rss_warm;
    long           rss_after;
    long           anon_before;
    long           anon_peak;
    long           anon_warm;
    long           anon_after;
    unsigned       peak_full:1;
    vb_sample_t   *samples;
    size_t         nsamples;

    /* the workers' CPU while every session streamed */
    int64_t        full_t0;
    int64_t        full_t1;
    double         full_cpu0;
    double         full_cpu1;
} vb_result_t;


static void
vb_json_long(const char *name, long v, const char *sep)
{
    if (v < 0) {
        printf("\"%s\":null%s", name, sep);

    } else {
        printf("\"%s\":%ld%s", name, v, sep);
    }
}


static void
vb_json_hist(const char *name, vb_hist_t *h)
{
    printf("\"%s\":{\"n\":%" PRIu64 ",\"p50\":%.2f,\"p95\":%.2f,"
           "\"p99\":%.2f,\"max\":%.2f,\"min\":%.2f,\"mean\":%.3f},",
           name, h->n, vb_hist_ms(h, 0.50), vb_hist_ms(h, 0.95),
           vb_hist_ms(h, 0.99), h->n ? (double) h->max / VB_MSEC : 0,
           h->n ? (double) h->min / VB_MSEC : 0, vb_hist_mean_ms(h));
}


static void
vb_report_json(vb_result_t *r, int ok)
{
    double       per;
    size_t       i;
    unsigned     w;
    vb_stats_t  *st;

    st = &r->stats;

    printf("{\"mode\":\"%s\",\"sessions\":%" PRIu64 ",\"churn\":%" PRIu64
           ",\"frame_size\":%zu,\"interval_ms\":%.3f,\"duration_s\":%.3f,"
           "\"delay_ms\":%.3f,\"threads\":%u,",
           vb_conf.churn ? "churn" : "stream", vb_conf.sessions,
           vb_conf.churn, vb_conf.frame_size,
           (double) vb_conf.interval / VB_MSEC,
           (double) vb_conf.duration / VB_NSEC,
           (double) vb_conf.delay / VB_MSEC, vb_conf.threads);

    printf("\"sessions_ok\":%" PRIu64 ",\"sessions_failed\":%" PRIu64 ","
           "\"frames_sent\":%" PRIu64 ",\"frames_received\":%" PRIu64 ","
           "\"frames_lost\":%" PRIu64 ",\"frames_reordered\":%" PRIu64 ","
           "\"frames_corrupt\":%" PRIu64 ",\"protocol_errors\":%" PRIu64 ","
           "\"backpressure\":%" PRIu64 ",\"buffer_full\":%" PRIu64 ","
           "\"info_other\":%" PRIu64 ",\"server_shutdown\":%" PRIu64 ","
           "\"frames_late\":%" PRIu64 ",\"send_blocked\":%" PRIu64 ",",
           st->sessions_ok, st->sessions_failed, st->frames_sent,
           st->frames_received, st->frames_lost, st->frames_reordered,
           st->frames_corrupt, st->protocol_errors, st->backpressure,
           st->buffer_full, st->info_other, st->shutdown, st->frames_late,
           st->send_blocked);

    printf("\"listen\":%s,\"transcript_partials\":%" PRIu64 ","
           "\"transcript_finals\":%" PRIu64 ",\"states_other\":%" PRIu64
           ",\"stt_errors\":%" PRIu64 ",\"audio_unexpected\":%" PRIu64 ",",
           vb_conf.listen ? "true" : "false", st->partials, st->finals,
           st->states_other, st->stt_errors, st->audio_unexpected);

    printf("\"text_mode\":%s,\"turns_done\":%" PRIu64 ",\"deltas\":%"
           PRIu64 ",", vb_conf.text_mode ? "true" : "false",
           st->turns_done, st->deltas);

    printf("\"dialect\":\"%s\",\"input\":\"%s\",\"output\":\"%s\","
           "\"counted\":%s,\"input_frame_bytes\":%zu,"
           "\"output_frame_bytes\":%zu,",
           vb_dialect_names[vb_conf.dialect],
           vb_format_name(vb_conf.in_enc, vb_conf.in_rate),
           vb_format_name(vb_conf.out_enc, vb_conf.out_rate),
           vb_conf.count ? "true" : "false",
           vb_conf.count ? vb_conf.audio_len : vb_conf.frame_size,
           vb_conf.count ? vb_conf.out_size : vb_conf.frame_size);

    printf("\"output_expected\":%" PRIu64 ",\"output_extra\":%" PRIu64 ","
           "\"underruns\":%" PRIu64 ",\"marks\":%" PRIu64 ","
           "\"marks_answered\":%" PRIu64 ",\"clears\":%" PRIu64 ",",
           st->out_expected, st->out_extra, st->underruns, st->marks,
           st->marks_answered, st->clears);

    vb_json_hist("rtt_added_ms", &st->rtt);
    vb_json_hist("rtt_arrival_ms", &st->arrival);
    vb_json_hist("setup_ms", &st->setup);
    vb_json_hist("lag_ms", &st->lag);
    vb_json_hist("interval_ms", &st->interval);
    vb_json_hist("interval_read_ms", &st->interval_read);
    vb_json_hist("lead_ms", &st->lead);
    vb_json_hist("buffered_ms", &st->buffered);
    vb_json_hist("first_delta_ms", &st->first_delta);
    vb_json_hist("reply_ms", &st->reply);

    printf("\"elapsed_s\":%.3f,\"gen_cpu_s\":%.3f,\"gen_cpu_pct\":%.1f,",
           r->elapsed, r->cpu, r->elapsed > 0 ? 100 * r->cpu / r->elapsed : 0);

    printf("\"workers\":[");

    for (w = 0; w < vb_workers.n; w++) {
        printf("%s%d", w ? "," : "", (int) vb_workers.pids[w]);
    }

    printf("],\"workers_changed\":%s,",
           vb_workers.changed ? "true" : "false");

    /* the CPU time of a worker that went away is lost with it */
    if (vb_conf.nginx_pid && !vb_workers.changed) {
        printf("\"server_cpu_s\":%.3f,\"server_cpu_pct\":%.1f,",
               r->server_cpu,
               r->elapsed > 0 ? 100 * r->server_cpu / r->elapsed : 0);

        if (r->full_t1 - r->full_t0 >= VB_NSEC) {
            per = 100 * (r->full_cpu1 - r->full_cpu0)
                  / ((double) (r->full_t1 - r->full_t0) / VB_NSEC);
            printf("\"server_cpu_streaming_pct\":%.2f,"
                   "\"server_cpu_streaming_s\":%.1f,"
                   "\"server_cpu_per_session_pct\":%.4f,", per,
                   (double) (r->full_t1 - r->full_t0) / VB_NSEC,
                   per / (double) vb_conf.sessions);
        }
    }

    printf("\"rss_kib\":{");
    vb_json_long("before", r->rss_before, ",");
    vb_json_long("peak", r->rss_peak, ",");
    vb_json_long("warm", r->rss_warm, ",");
    vb_json_long("after", r->rss_after, ",");
    printf("\"peak_all_streaming\":%s},", r->peak_full ? "true" : "false");

    printf("\"rss_anon_kib\":{");
    vb_json_long("before", r->anon_before, ",");
    vb_json_long("peak", r->anon_peak, ",");
    vb_json_long("warm", r->anon_warm, ",");
    vb_json_long("after", r->anon_after, "},");

    if (r->rss_before >= 0 && r->rss_peak >= 0) {
        per = (double) (r->rss_peak - r->rss_before)
              / (double) vb_conf.sessions;
        printf("\"rss_per_session_kib\":%.2f,", per);

        per = (double) (r->anon_peak - r->anon_before)
              / (double) vb_conf.sessions;
        printf("\"rss_anon_per_session_kib\":%.2f,", per);

    } else {
        printf("\"rss_per_session_kib\":null,"
               "\"rss_anon_per_session_kib\":null,");
    }

    /*
     * [seconds, VmRSS KiB, sessions streaming, anonymous KiB, the
     * workers' CPU seconds so far]
     */
    printf("\"rss_samples\":[");

    for (i = 0; i < r->nsamples; i++) {
        printf("%s[%.1f,%ld,%" PRIu64 ",%ld,%.2f]", i ? "," : "",
               r->samples[i].t, r->samples[i].rss, r->samples[i].streaming,
               r->samples[i].anon, r->samples[i].cpu);
    }

    printf("],\"ok\":%s}\n", ok ? "true" : "false");
}


static void
vb_report_text(vb_result_t *r, int ok)
{
    size_t       i;
    unsigned     w;
    vb_stats_t  *st;

    st = &r->stats;

    if (vb_conf.text_mode) {
        if (vb_conf.churn) {
            printf("voice-bench: %" PRIu64 " sessions opened and closed, %"
                   PRIu64 " at a time,", vb_conf.churn, vb_conf.sessions);

        } else {
            printf("voice-bench: %" PRIu64 " sessions,", vb_conf.sessions);
        }

        printf(" %" PRIu64 " text turns each (0: for -d), open %.1f s at "
               "least, text \"%s\"\n", vb_conf.text_turns,
               (double) vb_conf.duration / VB_NSEC, vb_conf.text);

    } else if (vb_conf.churn) {
        printf("voice-bench: %" PRIu64 " sessions opened and closed, %"
               PRIu64 " at a time, %" PRIu64 " frames of %zu B each, "
               "echo delay %.0f ms\n", vb_conf.churn, vb_conf.sessions,
               vb_conf.churn_frames, vb_conf.frame_size,
               (double) vb_conf.delay / VB_MSEC);

    } else {
        printf("voice-bench: %" PRIu64 " sessions, %zu B every %.1f ms for "
               "%.1f s, echo delay %.0f ms, %u thread%s\n",
               vb_conf.sessions, vb_conf.frame_size,
               (double) vb_conf.interval / VB_MSEC,
               (double) vb_conf.duration / VB_NSEC,
               (double) vb_conf.delay / VB_MSEC, vb_conf.threads,
               vb_conf.threads > 1 ? "s" : "");
    }

    if (vb_conf.listen) {
        printf("  transcripts     %" PRIu64 " partial, %" PRIu64 " final; "
               "STT errors %" PRIu64 ", audio back %" PRIu64 "\n",
               st->partials, st->finals, st->stt_errors,
               st->audio_unexpected);
    }

    if (vb_conf.text_mode) {
        printf("  text turns      %" PRIu64 " replies, %" PRIu64 " deltas\n",
               st->turns_done, st->deltas);
    }

    printf("  sessions        %" PRIu64 " ok, %" PRIu64 " failed\n",
           st->sessions_ok, st->sessions_failed);
    printf("  frames          sent %" PRIu64 ", received %" PRIu64
           ", lost %" PRIu64 ", reordered %" PRIu64 ", corrupt %" PRIu64
           "\n", st->frames_sent, st->frames_received, st->frames_lost,
           st->frames_reordered, st->frames_corrupt);
    printf("  server events   backpressure %" PRIu64 ", buffer full %"
           PRIu64 ", other info %" PRIu64 ", shutdown %" PRIu64
           ", protocol errors %" PRIu64 "\n", st->backpressure,
           st->buffer_full, st->info_other, st->shutdown,
           st->protocol_errors);
    printf("  added RTT ms    p50 %.2f  p95 %.2f  p99 %.2f  max %.2f  "
           "(min %.2f, mean %.2f, %" PRIu64 " echoes)\n",
           vb_hist_ms(&st->rtt, 0.50), vb_hist_ms(&st->rtt, 0.95),
           vb_hist_ms(&st->rtt, 0.99),
           st->rtt.n ? (double) st->rtt.max / VB_MSEC : 0,
           st->rtt.n ? (double) st->rtt.min / VB_MSEC : 0,
           vb_hist_mean_ms(&st->rtt), st->rtt.n);
    printf("  at arrival ms   p50 %.2f  p95 %.2f  p99 %.2f  max %.2f  "
           "(kernel receive time: without the wait for this process)\n",
           vb_hist_ms(&st->arrival, 0.50), vb_hist_ms(&st->arrival, 0.95),
           vb_hist_ms(&st->arrival, 0.99),
           st->arrival.n ? (double) st->arrival.max / VB_MSEC : 0);
    if (vb_conf.count) {
        printf("  output          %s %s -> %s, %" PRIu64 " frames of %" PRIu64
               " expected (%" PRIu64 " over the slack), %" PRIu64
               " underruns, marks %" PRIu64 " (%" PRIu64 " answered), "
               "clears %" PRIu64 "\n",
               vb_dialect_names[vb_conf.dialect],
               vb_format_name(vb_conf.in_enc, vb_conf.in_rate),
               vb_format_name(vb_conf.out_enc, vb_conf.out_rate),
               st->frames_received, st->out_expected, st->out_extra,
               st->underruns, st->marks, st->marks_answered, st->clears);
        printf("  interval ms     p50 %.2f  p99 %.2f  max %.2f  min %.2f "
               "(between output frames, at arrival; read: p99 %.2f)\n",
               vb_hist_ms(&st->interval, 0.50),
               vb_hist_ms(&st->interval, 0.99),
               st->interval.n ? (double) st->interval.max / VB_MSEC : 0,
               st->interval.n ? (double) st->interval.min / VB_MSEC : 0,
               vb_hist_ms(&st->interval_read, 0.99));
        printf("  lead ms         p50 %.2f  p99 %.2f  max %.2f  min %.2f "
               "(audio received minus time since the first frame)\n",
               vb_hist_ms(&st->lead, 0.50), vb_hist_ms(&st->lead, 0.99),
               st->lead.n ? (double) st->lead.max / VB_MSEC : 0,
               st->lead.n ? (double) st->lead.min / VB_MSEC : 0);
    }

    printf("  setup ms        p50 %.2f  p99 %.2f  max %.2f "
           "(connect to state streaming)\n",
           vb_hist_ms(&st->setup, 0.50), vb_hist_ms(&st->setup, 0.99),
           st->setup.n ? (double) st->setup.max / VB_MSEC : 0);
    printf("  generator       lag p99 %.2f ms, max %.2f ms, %" PRIu64
           " frames >1 ms late, %" PRIu64 " blocked sends; CPU %.2f s "
           "(%.1f%% of a core) in %.1f s\n",
           vb_hist_ms(&st->lag, 0.99),
           st->lag.n ? (double) st->lag.max / VB_MSEC : 0,
           st->frames_late, st->send_blocked, r->cpu,
           r->elapsed > 0 ? 100 * r->cpu / r->elapsed : 0, r->elapsed);

    if (vb_conf.nginx_pid) {
        printf("  server workers ");

        for (w = 0; w < vb_workers.n; w++) {
            printf(" %d", (int) vb_workers.pids[w]);
        }

        if (vb_workers.changed) {
            printf(" (CHANGED during the run)\n");

        } else {
            printf("; CPU %.2f s (%.1f%% of a core)", r->server_cpu,
                   r->elapsed > 0 ? 100 * r->server_cpu / r->elapsed : 0);

            if (r->full_t1 - r->full_t0 >= VB_NSEC) {
                printf(", %.1f%% while all streamed",
                       100 * (r->full_cpu1 - r->full_cpu0)
                       / ((double) (r->full_t1 - r->full_t0) / VB_NSEC));
            }

            printf("\n");
        }

        printf("  server RSS KiB  before %ld, peak %ld%s, after %ld",
               r->rss_before, r->rss_peak,
               r->peak_full ? "" : " (not all sessions streaming)",
               r->rss_after);

        if (r->rss_warm >= 0) {
            printf(", after 10%% (warm) %ld", r->rss_warm);
        }

        printf("; per session %.2f\n",
               (double) (r->rss_peak - r->rss_before)
               / (double) vb_conf.sessions);

        printf("  anonymous KiB   before %ld, peak %ld, after %ld",
               r->anon_before, r->anon_peak, r->anon_after);

        if (r->anon_warm >= 0) {
            printf(", after 10%% (warm) %ld", r->anon_warm);
        }

        printf("; per session %.2f\n",
               (double) (r->anon_peak - r->anon_before)
               / (double) vb_conf.sessions);

        printf("  RSS samples     ");

        for (i = 0; i < r->nsamples; i++) {
            printf("%s%.0fs %ld (%" PRIu64 ")", i ? ", " : "",
                   r->samples[i].t, r->samples[i].rss,
                   r->samples[i].streaming);

            if (i % 6 == 5 && i + 1 < r->nsamples) {
                printf("\n                  ");
            }
        }

        printf("\n");
    }

    if (st->lag.n && vb_hist_ms(&st->lag, 0.99) > 1.0) {
        printf("  WARNING: the generator fell behind (lag p99 %.2f ms): "
               "RTT figures include its own delay\n",
               vb_hist_ms(&st->lag, 0.99));
    }

    printf("  result          %s\n", ok ? "ok" : "FAILED");
}


static int
vb_sample_add(vb_result_t *r, int64_t now, long rss, long anon)
{
    vb_sample_t  *p;

    if ((r->nsamples & (r->nsamples - 1)) == 0) {
        p = realloc(r->samples, (r->nsamples ? 2 * r->nsamples : 16)
                                * sizeof(vb_sample_t));
        if (p == NULL) {
            return VB_ERROR;
        }

        r->samples = p;
    }

    p = &r->samples[r->nsamples++];
    p->t = (double) (now - vb_conf.t0) / VB_NSEC;
    p->rss = rss;
    p->anon = anon;
    p->streaming = atomic_load(&vb_streaming);
    p->cpu = vb_workers_cpu();

    if (vb_conf.verbose) {
        fprintf(stderr, "voice-bench: t=%.1fs rss %ld KiB (anonymous %ld), "
                "%" PRIu64 " streaming\n", p->t, p->rss, p->anon,
                p->streaming);
    }

    return VB_OK;
}


/*
 * The main thread samples the workers while the I/O threads run: the
 * peak is the highest sample taken while every session streamed (in
 * churn mode, the highest at all).
 */

static void
vb_sample_loop(vb_result_t *r)
{
    int              full, seen_full;
    long             rss, anon, any_peak, any_anon;
    int64_t          now, next_tick, next_peak, next_line;
    uint64_t         warm_at;
    struct timespec  ts;

    seen_full = 0;
    any_peak = r->rss_before;
    any_anon = r->anon_before;
    next_tick = vb_conf.t0;
    next_peak = vb_conf.t0 + VB_PEAK_EVERY;
    next_line = vb_conf.t0 + vb_conf.rss_every;
    warm_at = vb_conf.churn / 10;

    while (atomic_load(&vb_running) > 0) {
        next_tick += VB_TICK;
        ts.tv_sec = next_tick / VB_NSEC;
        ts.tv_nsec = next_tick % VB_NSEC;

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)
               == EINTR)
        {
            /* void */
        }

        if (vb_conf.nginx_pid == 0) {
            continue;
        }

        now = vb_now();
        full = !vb_conf.churn
               && atomic_load(&vb_streaming) == vb_conf.sessions;
        rss = -1;

        /* the steady state: from all streaming to the first one ending */

        if (full && r->full_t0 == 0) {
            r->full_t0 = now;
            r->full_cpu0 = vb_workers_cpu();

        } else if (!full && r->full_t0 && r->full_t1 == 0) {
            r->full_t1 = now;
            r->full_cpu1 = vb_workers_cpu();
        }

        if ((full && !seen_full) || now >= next_peak
            || (vb_conf.rss_every && now >= next_line)
            || (vb_conf.churn && r->rss_warm < 0
                && atomic_load(&vb_finished) >= warm_at))
        {
            rss = vb_rss_sample(&anon);
        }

        if (rss < 0) {
            continue;
        }

        while (now >= next_peak) {
            next_peak += VB_PEAK_EVERY;
        }

        if (full || vb_conf.churn) {
            seen_full = 1;
            r->peak_full = 1;

            if (rss > r->rss_peak) {
                r->rss_peak = rss;
            }

            if (anon > r->anon_peak) {
                r->anon_peak = anon;
            }
        }

        if (rss > any_peak) {
            any_peak = rss;
        }

        if (anon > any_anon) {
            any_anon = anon;
        }

        if (vb_conf.churn && r->rss_warm < 0
            && atomic_load(&vb_finished) >= warm_at)
        {
            r->rss_warm = rss;
            r->anon_warm = anon;
        }

        if (vb_conf.rss_every && now >= next_line) {
            (void) vb_sample_add(r, now, rss, anon);

            while (now >= next_line) {
                next_line += vb_conf.rss_every;
            }
        }
    }

    if (!r->peak_full) {
        r->rss_peak = any_peak;
        r->anon_peak = any_anon;
    }

    if (r->full_t0 && r->full_t1 == 0) {
        r->full_t1 = vb_now();
        r->full_cpu1 = vb_workers_cpu();
    }
}


static int
vb_ok(vb_result_t *r)
{
    vb_stats_t  *st;

    st = &r->stats;

    return st->sessions_failed == 0
           && st->frames_lost == 0
           && st->frames_reordered == 0
           && st->frames_corrupt == 0
           && st->out_extra == 0
           && st->protocol_errors == 0
           && !vb_workers.changed
           && st->sessions_ok > 0;
}


int
main(int argc, char **argv)
{
    int                ok;
    size_t             i, nslots;
    int64_t            open_at;
    unsigned           k;
    uint64_t           id;
    vb_thread_t       *threads, *t;
    vb_result_t        r;
    struct sigaction   sa;
    double             cpu0, server_cpu0;

    if (vb_options(argc, argv) != VB_OK) {
        return 2;
    }

    if (vb_limits() != VB_OK) {
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = vb_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* wake-ups close to the deadline, not up to 50 us after it */
    (void) prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);

    memset(&r, 0, sizeof(r));
    r.rss_before = -1;
    r.rss_peak = -1;
    r.rss_warm = -1;
    r.rss_after = -1;
    r.anon_before = -1;
    r.anon_peak = -1;
    r.anon_warm = -1;
    r.anon_after = -1;

    if (vb_conf.nginx_pid) {
        vb_workers.n = vb_workers_find(vb_conf.nginx_pid, vb_workers.pids,
                                       64);
        if (vb_workers.n == 0) {
            fprintf(stderr, "voice-bench: no nginx worker is a child of "
                    "pid %d\n", (int) vb_conf.nginx_pid);
            return 2;
        }

        r.rss_before = vb_rss_sample(&r.anon_before);
    }

    threads = calloc(vb_conf.threads, sizeof(vb_thread_t));
    if (threads == NULL) {
        return 2;
    }

    atomic_store(&vb_churn_left, (int_fast64_t) vb_conf.churn);

    for (k = 0; k < vb_conf.threads; k++) {
        nslots = vb_conf.sessions / vb_conf.threads
                 + (k < vb_conf.sessions % vb_conf.threads);

        if (vb_thread_init(&threads[k], nslots) != VB_OK) {
            fprintf(stderr, "voice-bench: cannot set up thread %u: %s\n",
                    k, strerror(errno));
            return 2;
        }
    }

    cpu0 = vb_self_cpu();
    server_cpu0 = vb_workers_cpu();
    vb_conf.t0 = vb_now();

    /* session i opens at t0 + i / ramp, whichever thread runs it */
    for (k = 0; k < vb_conf.threads; k++) {
        t = &threads[k];

        for (i = 0; i < t->nslots; i++) {
            id = i * vb_conf.threads + k;
            open_at = vb_conf.t0;

            if (vb_conf.ramp > 0 && !vb_conf.churn) {
                open_at += (int64_t) ((double) id * VB_NSEC / vb_conf.ramp);
            }

            vb_timer_set(&t->slots[i], open_at);
        }
    }

    if (vb_conf.nginx_pid && vb_conf.rss_every) {
        (void) vb_sample_add(&r, vb_conf.t0, r.rss_before, r.anon_before);
    }

    atomic_store(&vb_running, vb_conf.threads);

    for (k = 0; k < vb_conf.threads; k++) {
        if (pthread_create(&threads[k].tid, NULL, vb_thread_run, &threads[k])
            != 0)
        {
            fprintf(stderr, "voice-bench: pthread_create failed\n");
            return 2;
        }
    }

    vb_sample_loop(&r);

    for (k = 0; k < vb_conf.threads; k++) {
        pthread_join(threads[k].tid, NULL);
    }

    r.elapsed = (double) (vb_now() - vb_conf.t0) / VB_NSEC;
    r.cpu = vb_self_cpu() - cpu0;

    if (vb_conf.nginx_pid) {
        r.server_cpu = vb_workers_cpu() - server_cpu0;
        r.rss_after = vb_rss_sample(&r.anon_after);

        if (vb_conf.rss_every) {
            (void) vb_sample_add(&r, vb_now(), r.rss_after, r.anon_after);
        }
    }

    /* thread 0's statistics collect everybody's */
    r.stats = threads[0].stats;

    for (k = 1; k < vb_conf.threads; k++) {
        t = &threads[k];

        r.stats.sessions_ok += t->stats.sessions_ok;
        r.stats.sessions_failed += t->stats.sessions_failed;
        r.stats.frames_sent += t->stats.frames_sent;
        r.stats.frames_received += t->stats.frames_received;
        r.stats.frames_lost += t->stats.frames_lost;
        r.stats.frames_reordered += t->stats.frames_reordered;
        r.stats.frames_corrupt += t->stats.frames_corrupt;
        r.stats.frames_late += t->stats.frames_late;
        r.stats.protocol_errors += t->stats.protocol_errors;
        r.stats.backpressure += t->stats.backpressure;
        r.stats.buffer_full += t->stats.buffer_full;
        r.stats.info_other += t->stats.info_other;
        r.stats.shutdown += t->stats.shutdown;
        r.stats.send_blocked += t->stats.send_blocked;
        r.stats.partials += t->stats.partials;
        r.stats.finals += t->stats.finals;
        r.stats.states_other += t->stats.states_other;
        r.stats.stt_errors += t->stats.stt_errors;
        r.stats.audio_unexpected += t->stats.audio_unexpected;
        r.stats.turns_done += t->stats.turns_done;
        r.stats.deltas += t->stats.deltas;

        r.stats.out_expected += t->stats.out_expected;
        r.stats.out_extra += t->stats.out_extra;
        r.stats.underruns += t->stats.underruns;
        r.stats.marks += t->stats.marks;
        r.stats.marks_answered += t->stats.marks_answered;
        r.stats.clears += t->stats.clears;

        vb_hist_merge(&r.stats.rtt, &t->stats.rtt);
        vb_hist_merge(&r.stats.arrival, &t->stats.arrival);
        vb_hist_merge(&r.stats.lag, &t->stats.lag);
        vb_hist_merge(&r.stats.setup, &t->stats.setup);
        vb_hist_merge(&r.stats.interval, &t->stats.interval);
        vb_hist_merge(&r.stats.interval_read, &t->stats.interval_read);
        vb_hist_merge(&r.stats.lead, &t->stats.lead);
        vb_hist_merge(&r.stats.buffered, &t->stats.buffered);
        vb_hist_merge(&r.stats.first_delta, &t->stats.first_delta);
        vb_hist_merge(&r.stats.reply, &t->stats.reply);
    }

    if (atomic_load(&vb_failures) > VB_FAILURES_SHOWN && !vb_conf.verbose) {
        fprintf(stderr, "voice-bench: %u problems, the first %d shown "
                "(-v shows all)\n", atomic_load(&vb_failures),
                VB_FAILURES_SHOWN);
    }

    ok = vb_ok(&r);

    if (vb_conf.transcripts && fclose(vb_conf.transcripts) != 0) {
        fprintf(stderr, "voice-bench: writing the transcripts: %s\n",
                strerror(errno));
        ok = 0;
    }

    if (vb_conf.turns_log && fclose(vb_conf.turns_log) != 0) {
        fprintf(stderr, "voice-bench: writing the turns: %s\n",
                strerror(errno));
        ok = 0;
    }

    if (vb_conf.json) {
        vb_report_json(&r, ok);

    } else {
        vb_report_text(&r, ok);
    }

    return ok ? 0 : 1;
}
