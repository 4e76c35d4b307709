/*
 * voice-client: a command line client of the voice.v1 protocol.
 *
 * It speaks to the agent the way a phone line would: after session.start
 * it sends one 20 ms frame of 16 kHz PCM16 every 20 ms, speech from a WAV
 * file when there is some to say and silence otherwise.  Text turns go as
 * text.input, each once the previous reply was heard.  Everything the
 * server says is printed as it arrives, and a summary of the turns with
 * their latencies at the end.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <jansson.h>
#include <samplerate.h>
#include <sndfile.h>


#define VC_RATE          16000
#define VC_FRAME         320            /* samples in 20 ms at 16 kHz */
#define VC_TICK_NS       20000000LL
#define VC_MAX_TURNS     64


typedef enum {
    VC_TURN_SPEECH = 0,
    VC_TURN_TEXT,
    VC_TURN_BARGE_IN
} vc_turn_kind_e;


typedef struct {
    vc_turn_kind_e   kind;
    const char      *text;             /* for text turns */
    int16_t         *pcm;              /* for spoken turns */
    size_t           samples;
    int              submitted;
    int64_t          t_end;            /* end of speech sent / text sent */
    int64_t          t_first_audio;
    int              interrupted;
    char            *transcript;
    char            *reply;
    char            *spoken;
    json_t          *metrics;
} vc_turn_t;


typedef struct {
    unsigned char   *data;
    size_t           len;
    size_t           cap;
} vc_buf_t;


static vc_turn_t   vc_turns[VC_MAX_TURNS];
static int         vc_nturns;
static int         vc_reply;           /* the turn whose reply is awaited */
static int64_t     vc_t0;
static int         vc_fd = -1;
static vc_buf_t    vc_out;
static vc_buf_t    vc_in;
static vc_buf_t    vc_msg;
static int         vc_msg_op;
static vc_buf_t    vc_audio;           /* assistant audio, PCM16 */
static int         vc_out_rate = VC_RATE;
static int         vc_partial_open;


static int64_t
vc_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}


static double
vc_ms(int64_t ns)
{
    return ns / 1e6;
}


static void
vc_log(const char *fmt, ...)
{
    va_list  ap;

    if (vc_partial_open) {
        fputc('\n', stdout);
        vc_partial_open = 0;
    }

    printf("[%8.3f] ", vc_ms(vc_now() - vc_t0) / 1000.0);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}


static void
vc_die(const char *fmt, ...)
{
    va_list  ap;

    if (vc_partial_open) {
        fputc('\n', stdout);
    }

    fflush(stdout);
    fprintf(stderr, "voice-client: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}


static void
vc_buf_add(vc_buf_t *b, const void *p, size_t n)
{
    size_t  cap;

    if (b->len + n > b->cap) {
        cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) {
            cap *= 2;
        }

        b->data = realloc(b->data, cap);
        if (b->data == NULL) {
            vc_die("out of memory");
        }

        b->cap = cap;
    }

    memcpy(b->data + b->len, p, n);
    b->len += n;
}


static void
vc_buf_drop(vc_buf_t *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}


/* Reads a WAV (any rate, any channels) as 16 kHz mono PCM16. */

static int16_t *
vc_load_wav(const char *path, size_t *samples)
{
    int        c, err;
    float      v, *raw, *mono, *out;
    double     ratio;
    size_t     i, n, outn;
    int16_t   *pcm;
    SF_INFO    info;
    SNDFILE   *sf;
    SRC_DATA   src;

    memset(&info, 0, sizeof(info));
    sf = sf_open(path, SFM_READ, &info);
    if (sf == NULL) {
        vc_die("%s: %s", path, sf_strerror(NULL));
    }

    n = (size_t) info.frames;
    raw = malloc(n * info.channels * sizeof(float) + 1);
    mono = malloc(n * sizeof(float) + 1);
    if (raw == NULL || mono == NULL) {
        vc_die("out of memory");
    }

    n = (size_t) sf_readf_float(sf, raw, (sf_count_t) n);
    sf_close(sf);

    for (i = 0; i < n; i++) {
        mono[i] = 0;
        for (c = 0; c < info.channels; c++) {
            mono[i] += raw[i * info.channels + c];
        }
        mono[i] /= info.channels;
    }

    free(raw);

    ratio = (double) VC_RATE / info.samplerate;
    outn = (size_t) (n * ratio) + 16;
    out = malloc(outn * sizeof(float));
    if (out == NULL) {
        vc_die("out of memory");
    }

    if (info.samplerate == VC_RATE) {
        memcpy(out, mono, n * sizeof(float));
        outn = n;

    } else {
        memset(&src, 0, sizeof(src));
        src.data_in = mono;
        src.input_frames = (long) n;
        src.data_out = out;
        src.output_frames = (long) outn;
        src.src_ratio = ratio;

        err = src_simple(&src, SRC_SINC_MEDIUM_QUALITY, 1);
        if (err != 0) {
            vc_die("%s: resampling: %s", path, src_strerror(err));
        }

        outn = (size_t) src.output_frames_gen;
    }

    free(mono);

    pcm = malloc(outn * sizeof(int16_t) + 1);
    if (pcm == NULL) {
        vc_die("out of memory");
    }

    for (i = 0; i < outn; i++) {
        v = out[i] * 32767.0f;
        pcm[i] = v > 32767 ? 32767 : v < -32768 ? -32768 : (int16_t) v;
    }

    free(out);
    *samples = outn;
    return pcm;
}


/* Queues one masked client frame. */

static void
vc_send_frame(int op, const void *data, size_t len)
{
    size_t          i, hl;
    unsigned char   hdr[14], mask[4], *p;

    hdr[0] = 0x80 | op;
    if (len < 126) {
        hdr[1] = 0x80 | len;
        hl = 2;

    } else if (len < 65536) {
        hdr[1] = 0x80 | 126;
        hdr[2] = len >> 8;
        hdr[3] = len & 0xff;
        hl = 4;

    } else {
        hdr[1] = 0x80 | 127;
        for (i = 0; i < 8; i++) {
            hdr[2 + i] = ((uint64_t) len >> (56 - 8 * i)) & 0xff;
        }
        hl = 10;
    }

    for (i = 0; i < 4; i++) {
        mask[i] = rand() & 0xff;
        hdr[hl++] = mask[i];
    }

    vc_buf_add(&vc_out, hdr, hl);
    p = vc_out.data + vc_out.len;
    vc_buf_add(&vc_out, data, len);

    for (i = 0; i < len; i++) {
        p[i] ^= mask[i & 3];
    }
}


static void
vc_send_json(const char *fmt, ...)
{
    int      n;
    char     text[4096];
    va_list  ap;

    va_start(ap, fmt);
    n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);

    if (n < 0 || (size_t) n >= sizeof(text)) {
        vc_die("message too long");
    }

    vc_send_frame(0x1, text, n);
}


static void
vc_flush(void)
{
    ssize_t  n;

    while (vc_out.len) {
        n = send(vc_fd, vc_out.data, vc_out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;
            }

            if (errno == EINTR) {
                continue;
            }

            vc_die("send: %s", strerror(errno));
        }

        vc_buf_drop(&vc_out, n);
    }
}


static int
vc_connect(const char *url, int timeout_ms)
{
    int               fd, one, err;
    char              host[256], port[16], path[1024], req[2048], *end;
    const char       *p, *slash, *colon;
    size_t            hl;
    ssize_t           n;
    struct pollfd     pfd;
    struct addrinfo   hints, *ai, *a;
    unsigned char     key[16];
    char              key64[32];
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t            i, j;

    if (strncmp(url, "ws://", 5) != 0) {
        vc_die("only ws:// URLs are supported: %s", url);
    }

    p = url + 5;
    slash = strchr(p, '/');
    if (slash == NULL) {
        slash = p + strlen(p);
    }

    colon = memchr(p, ':', slash - p);
    hl = (colon ? colon : slash) - p;
    if (hl == 0 || hl >= sizeof(host)) {
        vc_die("bad URL: %s", url);
    }

    memcpy(host, p, hl);
    host[hl] = '\0';

    if (colon) {
        if ((size_t) (slash - colon - 1) >= sizeof(port)) {
            vc_die("bad URL: %s", url);
        }
        memcpy(port, colon + 1, slash - colon - 1);
        port[slash - colon - 1] = '\0';

    } else {
        strcpy(port, "80");
    }

    snprintf(path, sizeof(path), "%s", *slash ? slash : "/");

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    err = getaddrinfo(host, port, &hints, &ai);
    if (err != 0) {
        vc_die("%s: %s", host, gai_strerror(err));
    }

    fd = -1;
    for (a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }

    freeaddrinfo(ai);
    if (fd < 0) {
        vc_die("cannot connect to %s:%s", host, port);
    }

    one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    for (i = 0; i < 16; i++) {
        key[i] = rand() & 0xff;
    }

    /* base64 of 16 bytes: 5 full groups and one byte with "==" */
    for (i = 0, j = 0; i < 15; i += 3) {
        key64[j++] = b64[key[i] >> 2];
        key64[j++] = b64[((key[i] & 3) << 4) | (key[i + 1] >> 4)];
        key64[j++] = b64[((key[i + 1] & 15) << 2) | (key[i + 2] >> 6)];
        key64[j++] = b64[key[i + 2] & 63];
    }
    key64[j++] = b64[key[15] >> 2];
    key64[j++] = b64[(key[15] & 3) << 4];
    key64[j++] = '=';
    key64[j++] = '=';
    key64[j] = '\0';

    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s:%s\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: voice.v1\r\n\r\n",
                 path, host, port, key64);

    if (send(fd, req, n, MSG_NOSIGNAL) != n) {
        vc_die("send: %s", strerror(errno));
    }

    /* the response head; whatever follows it is the first frames */
    for ( ;; ) {
        pfd.fd = fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, timeout_ms) <= 0) {
            vc_die("timed out waiting for the handshake");
        }

        vc_buf_add(&vc_in, req, 0);
        if (vc_in.cap - vc_in.len < 1024) {
            vc_buf_add(&vc_in, req, 1024);
            vc_in.len -= 1024;
        }

        n = recv(fd, vc_in.data + vc_in.len, vc_in.cap - vc_in.len - 1, 0);
        if (n <= 0) {
            vc_die("connection closed during the handshake");
        }

        vc_in.len += n;
        vc_in.data[vc_in.len] = '\0';

        end = strstr((char *) vc_in.data, "\r\n\r\n");
        if (end) {
            break;
        }
    }

    if (strncmp((char *) vc_in.data, "HTTP/1.1 101", 12) != 0) {
        *strchr((char *) vc_in.data, '\r') = '\0';
        vc_die("handshake refused: %s", (char *) vc_in.data);
    }

    vc_buf_drop(&vc_in, end + 4 - (char *) vc_in.data);

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    return fd;
}


static const char *
vc_str(json_t *o, const char *key)
{
    const char  *s;

    s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}


static void
vc_set(char **dst, const char *s)
{
    free(*dst);
    *dst = strdup(s);
}


static void
vc_reply_ended(void)
{
    if (vc_reply < vc_nturns) {
        vc_reply++;
    }
}


static int         vc_close_code = -1;
static int         vc_end_sent;
static int         vc_started;
static int         vc_speaking;
static int         vc_progress;        /* an event that resets the timeout */


static void
vc_on_text(const char *text, size_t len)
{
    int           i;
    json_t       *o, *v;
    vc_turn_t    *t;
    const char   *type;
    char         *dump;

    o = json_loadb(text, len, 0, NULL);
    if (o == NULL || !json_is_object(o)) {
        vc_log("bad JSON from the server: %.*s", (int) len, text);
        json_decref(o);
        return;
    }

    type = vc_str(o, "type");
    vc_progress = 1;
    t = vc_reply < vc_nturns ? &vc_turns[vc_reply] : NULL;

    if (strcmp(type, "session.started") == 0) {
        v = json_object_get(json_object_get(json_object_get(o, "audio"),
                                            "output"), "sample_rate");
        if (json_is_integer(v)) {
            vc_out_rate = (int) json_integer_value(v);
        }
        vc_started = 1;
        vc_log("session.started id=%s output=%d Hz",
               vc_str(o, "session_id"), vc_out_rate);

    } else if (strcmp(type, "state") == 0) {
        vc_log("state: %s", vc_str(o, "state"));
        vc_speaking = strcmp(vc_str(o, "state"), "speaking") == 0;

    } else if (strcmp(type, "transcript.partial") == 0) {
        /* on a terminal, each partial replaces the previous one */
        if (!isatty(STDOUT_FILENO)) {
            vc_log("partial: %s", vc_str(o, "text"));

        } else {
            if (vc_partial_open) {
                printf("\r\033[K");
            }
            printf("[%8.3f] partial: %s", vc_ms(vc_now() - vc_t0) / 1000.0,
                   vc_str(o, "text"));
            fflush(stdout);
            vc_partial_open = 1;
        }

    } else if (strcmp(type, "transcript.final") == 0) {
        if (vc_partial_open) {
            printf("\r\033[K");
            vc_partial_open = 0;
        }
        vc_log("transcript.final: %s", vc_str(o, "text"));

        /* the earliest spoken turn without a transcript owns it */
        for (i = vc_reply; i < vc_nturns; i++) {
            if (vc_turns[i].kind != VC_TURN_TEXT
                && vc_turns[i].submitted && vc_turns[i].transcript == NULL)
            {
                vc_set(&vc_turns[i].transcript, vc_str(o, "text"));
                break;
            }
        }

    } else if (strcmp(type, "response.text.delta") == 0) {
        /* printed whole at response.text.done */

    } else if (strcmp(type, "response.text.done") == 0) {
        vc_log("assistant: %s", vc_str(o, "text"));
        if (t) {
            vc_set(&t->reply, vc_str(o, "text"));
        }

    } else if (strcmp(type, "response.audio.done") == 0) {
        vc_log("response.audio.done");
        vc_reply_ended();

    } else if (strcmp(type, "response.interrupted") == 0) {
        vc_log("response.interrupted reason=%s spoken_text=\"%s\"",
               vc_str(o, "reason"), vc_str(o, "spoken_text"));
        if (t) {
            t->interrupted = 1;
            vc_set(&t->spoken, vc_str(o, "spoken_text"));
        }
        vc_reply_ended();

    } else if (strcmp(type, "metrics") == 0) {
        dump = json_dumps(o, JSON_COMPACT);
        vc_log("metrics: %s", dump);
        free(dump);
        if (t) {
            json_decref(t->metrics);
            t->metrics = json_incref(o);
        }

    } else if (strcmp(type, "error") == 0) {
        vc_log("error %s: %s (recoverable=%s)", vc_str(o, "code"),
               vc_str(o, "message"),
               json_is_true(json_object_get(o, "recoverable"))
               ? "true" : "false");

        /* a reply that failed ends without audio */
        if (strncmp(vc_str(o, "code"), "LLM_", 4) == 0) {
            vc_reply_ended();
        }

    } else {
        dump = json_dumps(o, JSON_COMPACT);
        vc_log("%s", dump);
        free(dump);
    }

    json_decref(o);
}


static void
vc_on_audio(const unsigned char *p, size_t len)
{
    vc_turn_t  *t;

    vc_buf_add(&vc_audio, p, len & ~(size_t) 1);

    /* audio counts as progress only while a reply is being spoken */
    if (vc_speaking) {
        vc_progress = 1;
    }

    t = vc_reply < vc_nturns ? &vc_turns[vc_reply] : NULL;
    if (t && t->submitted && t->t_first_audio == 0) {
        t->t_first_audio = vc_now();
        vc_log("first audio of the reply to turn %d (%.0f ms after the"
               " user's turn ended)", vc_reply + 1,
               vc_ms(t->t_first_audio - t->t_end));
    }
}


/* Parses the frames received so far. */

static void
vc_parse(void)
{
    int             fin, op;
    size_t          hl, i;
    uint64_t        len;
    unsigned char  *p, reply[2];

    for ( ;; ) {
        p = vc_in.data;
        if (vc_in.len < 2) {
            return;
        }

        fin = p[0] & 0x80;
        op = p[0] & 0x0f;
        len = p[1] & 0x7f;
        hl = 2;

        if (p[1] & 0x80) {
            vc_die("the server sent a masked frame");
        }

        if (len == 126) {
            if (vc_in.len < 4) {
                return;
            }
            len = (p[2] << 8) | p[3];
            hl = 4;

        } else if (len == 127) {
            if (vc_in.len < 10) {
                return;
            }
            len = 0;
            for (i = 0; i < 8; i++) {
                len = (len << 8) | p[2 + i];
            }
            hl = 10;
        }

        if (vc_in.len < hl + len) {
            return;
        }

        p += hl;

        switch (op) {

        case 0x0:
        case 0x1:
        case 0x2:
            if (op != 0) {
                vc_msg.len = 0;
                vc_msg_op = op;
            }

            vc_buf_add(&vc_msg, p, len);

            if (fin) {
                if (vc_msg_op == 1) {
                    vc_on_text((char *) vc_msg.data, vc_msg.len);

                } else {
                    vc_on_audio(vc_msg.data, vc_msg.len);
                }
                vc_msg.len = 0;
            }
            break;

        case 0x8:
            vc_close_code = len >= 2 ? (p[0] << 8) | p[1] : 1005;
            vc_log("close %d%s%.*s", vc_close_code, len > 2 ? " " : "",
                   (int) (len > 2 ? len - 2 : 0), p + 2);

            /* answer with the same code, then wait for the end of TCP */
            reply[0] = (vc_close_code == 1005 ? 1000 : vc_close_code) >> 8;
            reply[1] = (vc_close_code == 1005 ? 1000 : vc_close_code) & 0xff;
            vc_send_frame(0x8, reply, 2);
            break;

        case 0x9:
            vc_send_frame(0xa, p, len);
            break;

        default:
            break;
        }

        vc_buf_drop(&vc_in, hl + len);

        if (vc_close_code >= 0) {
            return;
        }
    }
}


static void
vc_write_wav(const char *path)
{
    SF_INFO   info;
    SNDFILE  *sf;

    memset(&info, 0, sizeof(info));
    info.samplerate = vc_out_rate;
    info.channels = 1;
    info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;

    sf = sf_open(path, SFM_WRITE, &info);
    if (sf == NULL) {
        vc_die("%s: %s", path, sf_strerror(NULL));
    }

    sf_write_short(sf, (short *) vc_audio.data, vc_audio.len / 2);
    sf_close(sf);
}


static void
vc_metric(vc_turn_t *t, const char *name)
{
    json_t  *v;

    v = t->metrics ? json_object_get(t->metrics, name) : NULL;
    if (json_is_number(v)) {
        printf(" %s=%.0f", name, json_number_value(v));

    } else {
        printf(" %s=-", name);
    }
}


static void
vc_summary(void)
{
    int         i;
    vc_turn_t  *t;

    printf("summary: turns=%d audio_ms=%zu\n", vc_nturns,
           vc_audio.len / 2 * 1000 / (size_t) vc_out_rate);

    for (i = 0; i < vc_nturns; i++) {
        t = &vc_turns[i];
        printf("turn %d: kind=%s", i + 1,
               t->kind == VC_TURN_TEXT ? "text"
               : t->kind == VC_TURN_SPEECH ? "speech" : "barge_in");

        if (t->t_first_audio) {
            printf(" client_first_audio_ms=%.0f",
                   vc_ms(t->t_first_audio - t->t_end));
        } else {
            printf(" client_first_audio_ms=-");
        }

        vc_metric(t, "stt_final_ms");
        vc_metric(t, "llm_first_token_ms");
        vc_metric(t, "tts_first_audio_ms");
        vc_metric(t, "voice_to_voice_ms");
        printf(" interrupted=%d\n", t->interrupted);

        if (t->kind == VC_TURN_TEXT) {
            printf("  user (text): %s\n", t->text);
        } else {
            printf("  user (heard): %s\n",
                   t->transcript ? t->transcript : "");
        }
        printf("  assistant: %s\n", t->reply ? t->reply : "");
        if (t->interrupted) {
            printf("  heard before the interruption: %s\n",
                   t->spoken ? t->spoken : "");
        }
    }

    fflush(stdout);
}


static void
vc_usage(void)
{
    fprintf(stderr,
        "usage: voice-client [-i in.wav]... [-t TEXT]... [-o out.wav]\n"
        "                    [--interrupt SECONDS -I speech.wav]"
        " [--timeout S] ws://host:port/path\n");
    exit(2);
}


int
main(int argc, char **argv)
{
    int             c, timeout_ms, rc, eof, i;
    char           *out_wav, *barge_wav, *enc;
    json_t         *js;
    double          interrupt_s, timeout_s;
    int64_t         now, tick, deadline, barge_at;
    ssize_t         n;
    size_t          pos, k;
    int16_t         frame[VC_FRAME];
    vc_turn_t      *cur, *t;
    struct pollfd   pfd;

    static struct option  opts[] = {
        { "interrupt", required_argument, NULL, 'n' },
        { "timeout",   required_argument, NULL, 'T' },
        { NULL, 0, NULL, 0 }
    };

    out_wav = NULL;
    barge_wav = NULL;
    interrupt_s = -1;
    timeout_s = 30;

    srand((unsigned) time(NULL) ^ (unsigned) getpid());
    vc_t0 = vc_now();

    /* the turns keep the order of the command line */
    vc_nturns = 0;

    while ((c = getopt_long(argc, argv, "i:t:o:I:", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
        case 't':
            if (vc_nturns >= VC_MAX_TURNS - 1) {
                vc_die("too many turns");
            }
            if (c == 'i') {
                vc_turns[vc_nturns].kind = VC_TURN_SPEECH;
                vc_turns[vc_nturns].pcm =
                    vc_load_wav(optarg, &vc_turns[vc_nturns].samples);
            } else {
                vc_turns[vc_nturns].kind = VC_TURN_TEXT;
                vc_turns[vc_nturns].text = optarg;
            }
            vc_nturns++;
            break;
        case 'o':
            out_wav = optarg;
            break;
        case 'I':
            barge_wav = optarg;
            break;
        case 'n':
            interrupt_s = atof(optarg);
            break;
        case 'T':
            timeout_s = atof(optarg);
            break;
        default:
            vc_usage();
        }
    }

    if (optind != argc - 1 || (interrupt_s >= 0) != (barge_wav != NULL)) {
        vc_usage();
    }

    if (vc_nturns == 0) {
        vc_die("nothing to say: give -i or -t");
    }

    if (barge_wav) {
        if (vc_nturns >= VC_MAX_TURNS) {
            vc_die("too many turns");
        }
        memmove(&vc_turns[2], &vc_turns[1],
                (vc_nturns - 1) * sizeof(vc_turn_t));
        memset(&vc_turns[1], 0, sizeof(vc_turn_t));
        vc_turns[1].kind = VC_TURN_BARGE_IN;
        vc_turns[1].pcm = vc_load_wav(barge_wav, &vc_turns[1].samples);
        vc_nturns++;
    }

    timeout_ms = (int) (timeout_s * 1000);
    vc_fd = vc_connect(argv[optind], timeout_ms);
    vc_log("connected to %s", argv[optind]);

    vc_send_json("{\"type\":\"session.start\",\"audio\":{"
                 "\"input\":{\"encoding\":\"pcm_s16le\",\"sample_rate\":%d,"
                 "\"channels\":1},\"output\":{\"encoding\":\"pcm_s16le\","
                 "\"sample_rate\":%d}}}", VC_RATE, VC_RATE);

    eof = 0;
    cur = NULL;
    pos = 0;
    barge_at = 0;
    now = vc_now();
    tick = now + VC_TICK_NS;
    deadline = now + (int64_t) timeout_ms * 1000000;

    while (!eof) {
        vc_flush();

        now = vc_now();
        if (now >= deadline) {
            vc_log("timed out (%.0f s without progress)", timeout_s);
            vc_summary();
            return 1;
        }

        pfd.fd = vc_fd;
        pfd.events = POLLIN | (vc_out.len ? POLLOUT : 0);

        rc = poll(&pfd, 1, now < tick ? (int) ((tick - now) / 1000000) : 0);
        if (rc < 0 && errno != EINTR) {
            vc_die("poll: %s", strerror(errno));
        }

        if (rc > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            for ( ;; ) {
                if (vc_in.cap - vc_in.len < 16384) {
                    vc_in.data = realloc(vc_in.data, vc_in.cap + 65536);
                    if (vc_in.data == NULL) {
                        vc_die("out of memory");
                    }
                    vc_in.cap += 65536;
                }

                n = recv(vc_fd, vc_in.data + vc_in.len,
                         vc_in.cap - vc_in.len, 0);
                if (n > 0) {
                    vc_in.len += n;
                    continue;
                }

                if (n == 0) {
                    eof = 1;
                }

                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                    if (errno == EINTR) {
                        continue;
                    }
                    eof = 1;
                }

                break;
            }

            if (vc_close_code < 0) {
                vc_parse();
            }

            if (vc_progress || eof || vc_close_code >= 0) {
                vc_progress = 0;
                deadline = vc_now() + (int64_t) timeout_ms * 1000000;
            }
        }

        if (vc_close_code >= 0) {
            /* only the end of TCP is awaited now */
            continue;
        }

        now = vc_now();
        if (now < tick) {
            continue;
        }

        tick += VC_TICK_NS;
        if (tick < now) {
            tick = now + VC_TICK_NS;
        }

        if (!vc_started || vc_end_sent) {
            continue;
        }

        /* submit the turns whose time has come */
        for (i = 0; i < vc_nturns; i++) {
            t = &vc_turns[i];
            if (t->submitted) {
                continue;
            }

            if (t->kind == VC_TURN_SPEECH) {
                if (cur == NULL && vc_reply >= i) {
                    t->submitted = 1;
                    cur = t;
                    pos = 0;
                    vc_log("speaking turn %d (%.2f s)", i + 1,
                           (double) t->samples / VC_RATE);
                }

            } else if (t->kind == VC_TURN_BARGE_IN) {
                if (barge_at == 0 && vc_turns[0].t_first_audio) {
                    barge_at = vc_turns[0].t_first_audio
                               + (int64_t) (interrupt_s * 1e9);
                }

                if (barge_at && now >= barge_at && cur == NULL) {
                    t->submitted = 1;
                    cur = t;
                    pos = 0;
                    vc_log("barging in with turn %d (%.2f s)", i + 1,
                           (double) t->samples / VC_RATE);
                }

            } else if (vc_reply >= i && cur == NULL) {
                t->submitted = 1;
                t->t_end = now;
                js = json_string(t->text);
                enc = json_dumps(js, JSON_ENCODE_ANY);
                if (enc == NULL) {
                    vc_die("text is not UTF-8: %s", t->text);
                }
                vc_send_json("{\"type\":\"text.input\",\"text\":%s}",
                             enc);
                free(enc);
                json_decref(js);
                vc_log("text.input turn %d: %s", i + 1, t->text);
            }

            break;
        }

        /* one frame per tick: speech when there is some, else silence */
        memset(frame, 0, sizeof(frame));
        if (cur) {
            k = cur->samples - pos;
            if (k > VC_FRAME) {
                k = VC_FRAME;
            }

            memcpy(frame, cur->pcm + pos, k * sizeof(int16_t));
            pos += k;

            if (pos >= cur->samples) {
                cur->t_end = vc_now() + VC_TICK_NS;
                vc_log("end of the user's speech");
                cur = NULL;
            }
        }

        vc_send_frame(0x2, frame, sizeof(frame));

        if (vc_reply >= vc_nturns && !vc_end_sent) {
            vc_log("all replies heard; session.end");
            vc_send_json("{\"type\":\"session.end\"}");
            vc_end_sent = 1;
        }
    }

    vc_flush();
    close(vc_fd);

    if (out_wav) {
        vc_write_wav(out_wav);
    }

    vc_summary();

    if (vc_close_code != 1000) {
        fprintf(stderr, "voice-client: the session ended with close %d\n",
                vc_close_code);
        return 1;
    }

    if (vc_reply < vc_nturns) {
        fprintf(stderr, "voice-client: %d of %d replies heard\n",
                vc_reply, vc_nturns);
        return 1;
    }

    return 0;
}
