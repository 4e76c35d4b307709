
/*
 * espeak-probe: what the embedded synthesizer (espeak-ng 1.51) costs,
 * how it streams, how it stops, and whether it can share a process.
 *
 *     espeak-probe [options] ["phrase" ...]
 *
 * Without phrases a built-in set is used: short replies of 5 to 60
 * characters and one long paragraph.  The library runs in synchronous
 * retrieval mode: espeak_Synth() returns when the text is spoken, and
 * the audio reaches a callback in buffers while it is made.
 *
 * Options:
 *     --voice NAME    voice (default en-us+klatt)
 *     --rate WPM      words per minute (default 175)
 *     --pitch N       base pitch 0-100 (default 50)
 *     --buflen MS     buffer length given to the library (default 0: its
 *                     own default)
 *     --repeat N      synthesize each phrase N times for the timings
 *     --events        print the word and sentence events of each phrase
 *     --cancel-at MS  stop each phrase from the callback once MS of audio
 *                     was made; show how long the stop took and what text
 *                     had been spoken
 *     --out DIR       write DIR/tts-NN.wav (native rate), DIR/tts-NN.raw
 *                     (PCM16 16 kHz, for sphinx-probe) and DIR/tts-NN.txt
 *                     (the words, lowercase)
 *     --checks        the process checks: memory, threads, locale, voice
 *                     switch cost, determinism, synthesis from a worker
 *                     thread and from several threads in turn, espeak_Cancel
 *                     in synchronous mode, two threads at once (in a child,
 *                     which may crash), resampling cost
 *
 * Build (Debian 12: libespeak-ng-dev, libsamplerate0-dev):
 *     cc -O2 -g -Wall -Wextra -Werror -pthread -o build/espeak-probe \
 *         tools/espeak-probe.c -lespeak-ng -lsamplerate -lm
 */


#include <ctype.h>
#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/wait.h>

#include <espeak-ng/espeak_ng.h>
#include <espeak-ng/speak_lib.h>
#include <samplerate.h>


#define ESPEAK_PROBE_MAX_PHRASES  64
#define ESPEAK_PROBE_MAX_EVENTS   512
#define ESPEAK_PROBE_MAX_REPEAT   100
#define ESPEAK_PROBE_THREADS      2


typedef struct {
    int            type;
    int            text_position;
    int            length;
    int            audio_position;
    size_t         samples_before;   /* audio delivered before its buffer */
} espeak_probe_event_t;


/* one synthesis: what the callback saw */
typedef struct {
    int16_t               *pcm;
    size_t                 n;
    size_t                 cap;
    uint64_t               start_ns;
    uint64_t               first_ns;
    uint64_t               stop_ns;
    size_t                 calls;
    size_t                 chunks;
    size_t                 min_chunk;
    size_t                 max_chunk;
    size_t                 nevents;
    espeak_probe_event_t   events[ESPEAK_PROBE_MAX_EVENTS];
    size_t                 stop_after;     /* samples; 0: never stop */
    int                    cancel_once;    /* call espeak_Cancel() once */
    int                    ended;          /* the NULL buffer came */
    int                    foreign;        /* user_data was not ours */
} espeak_probe_synth_t;


typedef struct {
    const char            *voice;
    int                    rate;
    int                    pitch;
    int                    buflen;
    int                    repeat;
    int                    events;
    int                    cancel_at;
    const char            *out;
    int                    checks;
    int                    srate;
    size_t                 nphrases;
    const char            *phrases[ESPEAK_PROBE_MAX_PHRASES];
} espeak_probe_conf_t;


typedef struct {
    const char            *text;
    espeak_probe_synth_t  *synth;
    int                    rc;
} espeak_probe_job_t;


static const char  *espeak_probe_default[] = {
    "Hello.",
    "Yes, I can help.",
    "Your order has shipped.",
    "The meeting is at three thirty tomorrow.",
    "I found two flights to Boston leaving before noon on Friday.",
    "Thanks for calling. I looked at your account and I can see that the"
    " last payment arrived on the fourth of March, so the late fee should"
    " not have been charged. I have removed it, and you will see the"
    " corrected balance within one or two business days. Is there anything"
    " else I can help you with today?",
    NULL
};


/* the sentences for the intelligibility check (--out) */
static const char  *espeak_probe_stt_set[] = {
    "Please open the front door.",
    "The weather is cold and windy today.",
    "I would like a cup of coffee.",
    "Turn left at the next street.",
    "My phone number is five five five one two three four.",
    NULL
};


static espeak_probe_conf_t  espeak_probe_conf;


static uint64_t
espeak_probe_ns(clockid_t clock)
{
    struct timespec  ts;

    clock_gettime(clock, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static long
espeak_probe_status_kb(const char *key)
{
    char   line[256];
    long   v;
    FILE  *fp;
    size_t len;

    fp = fopen("/proc/self/status", "r");
    if (fp == NULL) {
        return -1;
    }

    v = -1;
    len = strlen(key);

    while (fgets(line, sizeof(line), fp) != NULL) {
        if (strncmp(line, key, len) == 0 && line[len] == ':') {
            v = strtol(line + len + 1, NULL, 10);
            break;
        }
    }

    fclose(fp);

    return v;
}


static int
espeak_probe_cb(short *wav, int numsamples, espeak_EVENT *events)
{
    size_t                 need;
    int16_t               *p;
    espeak_EVENT          *ev;
    espeak_probe_synth_t  *s;
    espeak_probe_event_t  *e;

    /* the list always holds at least the terminator, which has user_data */
    s = events->user_data;
    if (s == NULL) {
        return 0;
    }

    s->calls++;

    for (ev = events; ev->type != espeakEVENT_LIST_TERMINATED; ev++) {
        if (ev->user_data != s) {
            s->foreign++;
        }

        if (s->nevents < ESPEAK_PROBE_MAX_EVENTS) {
            e = &s->events[s->nevents++];
            e->type = ev->type;
            e->text_position = ev->text_position;
            e->length = ev->length;
            e->audio_position = ev->audio_position;
            e->samples_before = s->n;
        }
    }

    if (wav == NULL) {
        s->ended = 1;
        return 0;
    }

    if (numsamples > 0) {
        if (s->chunks == 0) {
            s->first_ns = espeak_probe_ns(CLOCK_MONOTONIC);
            s->min_chunk = (size_t) numsamples;
        }

        s->chunks++;

        if ((size_t) numsamples < s->min_chunk) {
            s->min_chunk = numsamples;
        }

        if ((size_t) numsamples > s->max_chunk) {
            s->max_chunk = numsamples;
        }

        need = s->n + numsamples;

        if (need > s->cap) {
            s->cap = need * 2 + 22050;
            p = realloc(s->pcm, s->cap * sizeof(int16_t));
            if (p == NULL) {
                return 1;
            }
            s->pcm = p;
        }

        memcpy(s->pcm + s->n, wav, numsamples * sizeof(int16_t));
        s->n = need;
    }

    if (s->cancel_once && s->n > 0) {
        s->cancel_once = 0;
        espeak_Cancel();
    }

    if (s->stop_after && s->n >= s->stop_after) {
        s->stop_ns = espeak_probe_ns(CLOCK_MONOTONIC);
        return 1;
    }

    return 0;
}


static int
espeak_probe_synth(const char *text, espeak_probe_synth_t *s)
{
    espeak_ERROR  rc;

    s->n = 0;
    s->calls = 0;
    s->chunks = 0;
    s->min_chunk = 0;
    s->max_chunk = 0;
    s->nevents = 0;
    s->ended = 0;
    s->foreign = 0;
    s->first_ns = 0;
    s->stop_ns = 0;
    s->start_ns = espeak_probe_ns(CLOCK_MONOTONIC);

    rc = espeak_Synth(text, strlen(text) + 1, 0, POS_CHARACTER, 0,
                      espeakCHARS_UTF8, NULL, s);

    return rc == EE_OK ? 0 : -1;
}


static int
espeak_probe_cmp(const void *a, const void *b)
{
    uint64_t  x, y;

    x = *(const uint64_t *) a;
    y = *(const uint64_t *) b;

    return (x > y) - (x < y);
}


static int
espeak_probe_init(espeak_probe_conf_t *conf)
{
    int                      rate;
    espeak_ng_STATUS         st;
    espeak_ng_ERROR_CONTEXT  ctx;

    /*
     * The espeak_ng_* calls report a missing data directory as a status;
     * espeak_Initialize() would call exit(), not acceptable in a server.
     */
    ctx = NULL;
    espeak_ng_InitializePath(NULL);

    st = espeak_ng_Initialize(&ctx);
    if (st != ENS_OK) {
        espeak_ng_PrintStatusCodeMessage(st, stderr, ctx);
        espeak_ng_ClearErrorContext(&ctx);
        return -1;
    }

    st = espeak_ng_InitializeOutput(ENOUTPUT_MODE_SYNCHRONOUS, conf->buflen,
                                    NULL);
    if (st != ENS_OK) {
        espeak_ng_PrintStatusCodeMessage(st, stderr, NULL);
        return -1;
    }

    rate = espeak_ng_GetSampleRate();
    espeak_SetSynthCallback(espeak_probe_cb);

    return rate;
}


static int
espeak_probe_voice(espeak_probe_conf_t *conf, const char *voice)
{
    if (espeak_SetVoiceByName(voice) != EE_OK) {
        fprintf(stderr, "espeak-probe: no voice \"%s\"\n", voice);
        return -1;
    }

    /* a voice change resets rate and pitch to the voice's own */
    espeak_SetParameter(espeakRATE, conf->rate, 0);
    espeak_SetParameter(espeakPITCH, conf->pitch, 0);

    return 0;
}


/* byte offset of character number chars (0-based) in UTF-8 text */
static size_t
espeak_probe_offset(const char *text, size_t chars)
{
    size_t  i;

    for (i = 0; text[i] != '\0'; i++) {
        if (((unsigned char) text[i] & 0xc0) != 0x80) {
            if (chars == 0) {
                return i;
            }
            chars--;
        }
    }

    return i;
}


/*
 * The text whose words had started when the audio was cut after cut_ms:
 * what a listener heard, as far as the word events tell.
 */
static size_t
espeak_probe_spoken(const char *text, espeak_probe_synth_t *s, int cut_ms,
    int *words)
{
    size_t                 i, end;
    espeak_probe_event_t  *e;

    end = 0;
    *words = 0;

    for (i = 0; i < s->nevents; i++) {
        e = &s->events[i];

        /* punctuation can give a word event of no length: not a word */
        if (e->type != espeakEVENT_WORD || e->length == 0) {
            continue;
        }

        if (e->audio_position > cut_ms) {
            break;
        }

        (*words)++;
        end = espeak_probe_offset(text, e->text_position - 1 + e->length);
    }

    return end;
}


static int
espeak_probe_write_wav(const char *path, int16_t *pcm, size_t n, int rate)
{
    FILE      *fp;
    uint32_t   v32;
    uint16_t   v16;

    fp = fopen(path, "wb");
    if (fp == NULL) {
        perror(path);
        return -1;
    }

    /* canonical 44-byte header, PCM16 mono little-endian (x86 host) */
    fwrite("RIFF", 1, 4, fp);
    v32 = 36 + n * 2;
    fwrite(&v32, 4, 1, fp);
    fwrite("WAVEfmt ", 1, 8, fp);
    v32 = 16;
    fwrite(&v32, 4, 1, fp);
    v16 = 1;
    fwrite(&v16, 2, 1, fp);
    fwrite(&v16, 2, 1, fp);
    v32 = rate;
    fwrite(&v32, 4, 1, fp);
    v32 = rate * 2;
    fwrite(&v32, 4, 1, fp);
    v16 = 2;
    fwrite(&v16, 2, 1, fp);
    v16 = 16;
    fwrite(&v16, 2, 1, fp);
    fwrite("data", 1, 4, fp);
    v32 = n * 2;
    fwrite(&v32, 4, 1, fp);
    fwrite(pcm, 2, n, fp);

    if (fclose(fp) != 0) {
        perror(path);
        return -1;
    }

    return 0;
}


/* converts the whole of pcm to rate `to`; returns samples or -1 */
static long
espeak_probe_resample(int16_t *pcm, size_t n, int from, int to, int type,
    int16_t **out)
{
    int        err;
    size_t     i, cap;
    float     *in, *res;
    SRC_DATA   d;

    cap = (size_t) ((double) n * to / from) + 64;
    in = malloc(n * sizeof(float));
    res = malloc(cap * sizeof(float));
    *out = malloc(cap * sizeof(int16_t));

    if (in == NULL || res == NULL || *out == NULL) {
        free(in);
        free(res);
        free(*out);
        return -1;
    }

    src_short_to_float_array(pcm, in, n);

    memset(&d, 0, sizeof(SRC_DATA));
    d.data_in = in;
    d.input_frames = n;
    d.data_out = res;
    d.output_frames = cap;
    d.src_ratio = (double) to / from;

    err = src_simple(&d, type, 1);
    if (err != 0) {
        fprintf(stderr, "espeak-probe: %s\n", src_strerror(err));
        free(in);
        free(res);
        free(*out);
        return -1;
    }

    for (i = 0; i < (size_t) d.output_frames_gen; i++) {
        res[i] = res[i] * 32768.0f;
        (*out)[i] = res[i] > 32767.0f ? 32767
                    : (res[i] < -32768.0f ? -32768 : (int16_t) res[i]);
    }

    free(in);
    free(res);

    return d.output_frames_gen;
}


static void
espeak_probe_events(const char *text, espeak_probe_synth_t *s, int srate)
{
    size_t                 i, off, end;
    espeak_probe_event_t  *e;
    static const char     *names[] = { "end-of-list", "word", "sentence",
                                       "mark", "play", "end", "msg-end",
                                       "phoneme", "samplerate" };

    for (i = 0; i < s->nevents; i++) {
        e = &s->events[i];

        printf("    %-8s text_pos %3d len %2d audio_pos %5d ms"
               "  (buffer starts at %5.0f ms)",
               e->type <= 8 ? names[e->type] : "?", e->text_position,
               e->length, e->audio_position,
               e->samples_before * 1000.0 / srate);

        if (e->type == espeakEVENT_WORD) {
            off = espeak_probe_offset(text, e->text_position - 1);
            end = espeak_probe_offset(text, e->text_position - 1
                                            + e->length);
            printf("  \"%.*s\"", (int) (end - off), text + off);
        }

        printf("\n");
    }
}


static int
espeak_probe_phrases(espeak_probe_conf_t *conf)
{
    int                    r, words, cut_ms;
    char                   path[1024];
    size_t                 k, i, spoken;
    double                 audio_ms, tot_audio, tot_cpu;
    uint64_t               wall[ESPEAK_PROBE_MAX_REPEAT];
    uint64_t               cpu[ESPEAK_PROBE_MAX_REPEAT];
    uint64_t               first[ESPEAK_PROBE_MAX_REPEAT];
    uint64_t               c0, end_ns;
    long                   n16;
    int16_t               *pcm16;
    FILE                  *fp;
    const char            *text, *t;
    espeak_probe_synth_t  *s;

    s = calloc(1, sizeof(espeak_probe_synth_t));
    if (s == NULL) {
        return -1;
    }

    tot_audio = 0;
    tot_cpu = 0;

    printf("%-4s %5s %8s %6s %8s %8s %8s %6s %12s %6s\n", "#", "chars",
           "audio_ms", "calls", "first_ms", "wall_ms", "cpu_ms", "rtf",
           "chunk_min/max", "words");

    for (k = 0; k < conf->nphrases; k++) {
        text = conf->phrases[k];

        for (r = 0; r < conf->repeat; r++) {
            c0 = espeak_probe_ns(CLOCK_THREAD_CPUTIME_ID);

            if (espeak_probe_synth(text, s) != 0) {
                fprintf(stderr, "espeak-probe: synthesis failed\n");
                free(s->pcm);
                free(s);
                return -1;
            }

            end_ns = espeak_probe_ns(CLOCK_MONOTONIC);
            cpu[r] = espeak_probe_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
            wall[r] = end_ns - s->start_ns;
            first[r] = s->first_ns - s->start_ns;
        }

        qsort(wall, conf->repeat, sizeof(uint64_t), espeak_probe_cmp);
        qsort(cpu, conf->repeat, sizeof(uint64_t), espeak_probe_cmp);
        qsort(first, conf->repeat, sizeof(uint64_t), espeak_probe_cmp);

        audio_ms = s->n * 1000.0 / conf->srate;
        tot_audio += audio_ms;
        tot_cpu += cpu[conf->repeat / 2] / 1e6;

        for (words = 0, t = text; *t; t++) {
            words += (isalnum((unsigned char) *t)
                      && (t == text || !isalnum((unsigned char) t[-1])));
        }

        printf("%-4zu %5zu %8.0f %6zu %8.2f %8.2f %8.2f %6.3f %5zu/%-6zu"
               " %6d%s\n",
               k, strlen(text), audio_ms, s->calls,
               first[conf->repeat / 2] / 1e6, wall[conf->repeat / 2] / 1e6,
               cpu[conf->repeat / 2] / 1e6,
               wall[conf->repeat / 2] / 1e6 / audio_ms,
               s->min_chunk, s->max_chunk, words,
               s->ended ? "" : " (no end call)");

        if (conf->events) {
            espeak_probe_events(text, s, conf->srate);
        }

        if (conf->cancel_at > 0) {
            s->stop_after = (size_t) conf->cancel_at * conf->srate / 1000;

            espeak_probe_synth(text, s);
            end_ns = espeak_probe_ns(CLOCK_MONOTONIC);
            s->stop_after = 0;

            cut_ms = (int) (s->n * 1000 / conf->srate);
            spoken = espeak_probe_spoken(text, s, cut_ms, &words);

            printf("    cancel at %d ms: stopped with %d ms of audio made,"
                   " Synth returned %.3f ms after the callback said stop,"
                   " end call %s; %d words started: \"%.*s\"\n",
                   conf->cancel_at, cut_ms,
                   s->stop_ns ? (end_ns - s->stop_ns) / 1e6 : -1.0,
                   s->ended ? "made" : "not made", words, (int) spoken,
                   text);
        }

        if (conf->out == NULL) {
            continue;
        }

        snprintf(path, sizeof(path), "%s/tts-%02zu.wav", conf->out, k);
        if (espeak_probe_write_wav(path, s->pcm, s->n, conf->srate) != 0) {
            break;
        }

        n16 = espeak_probe_resample(s->pcm, s->n, conf->srate, 16000,
                                    SRC_SINC_MEDIUM_QUALITY, &pcm16);
        if (n16 < 0) {
            break;
        }

        snprintf(path, sizeof(path), "%s/tts-%02zu.raw", conf->out, k);
        fp = fopen(path, "wb");
        if (fp != NULL) {
            fwrite(pcm16, sizeof(int16_t), n16, fp);
            fclose(fp);
        }

        free(pcm16);

        /* the reference for sphinx-probe: lowercase words, no punctuation */
        snprintf(path, sizeof(path), "%s/tts-%02zu.txt", conf->out, k);
        fp = fopen(path, "w");
        if (fp != NULL) {
            for (i = 0; text[i]; i++) {
                fputc(isalnum((unsigned char) text[i]) || text[i] == '\''
                      ? tolower((unsigned char) text[i]) : ' ', fp);
            }
            fputc('\n', fp);
            fclose(fp);
        }
    }

    printf("total: %.0f ms of audio for %.1f ms of CPU: %.1f ms CPU per"
           " second of audio, %.1f real-time streams per core\n",
           tot_audio, tot_cpu, tot_cpu * 1000.0 / tot_audio,
           tot_audio / tot_cpu);

    free(s->pcm);
    free(s);

    return 0;
}


/* the word events in order, as text positions; -1 after the last */
static int
espeak_probe_word(espeak_probe_synth_t *s, size_t *i)
{
    while (*i < s->nevents) {
        if (s->events[(*i)++].type == espeakEVENT_WORD) {
            return s->events[*i - 1].text_position;
        }
    }

    return -1;
}


/*
 * 2: the same samples; 1: the same words and a length within 1% (even one
 * thread alone does not repeat itself sample for sample: pitch flutter and
 * the Klatt noise source keep state from one synthesis to the next);
 * 0: a different result.
 */
static int
espeak_probe_same(espeak_probe_synth_t *a, espeak_probe_synth_t *b)
{
    int     wa, wb;
    size_t  i, k;

    if (a->n == b->n
        && memcmp(a->pcm, b->pcm, a->n * sizeof(int16_t)) == 0)
    {
        return 2;
    }

    if (a->n * 100 < b->n * 99 || b->n * 100 < a->n * 99) {
        return 0;
    }

    i = 0;
    k = 0;

    do {
        wa = espeak_probe_word(a, &i);
        wb = espeak_probe_word(b, &k);

        if (wa != wb) {
            return 0;
        }

    } while (wa != -1);

    return 1;
}


static const char *
espeak_probe_same_text(espeak_probe_synth_t *a, espeak_probe_synth_t *b)
{
    static const char  *names[] = { "DIFFERENT",
                                    "same words, length within 1%",
                                    "identical samples" };

    return names[espeak_probe_same(a, b)];
}


static void *
espeak_probe_job(void *data)
{
    espeak_probe_job_t  *job = data;

    job->rc = espeak_probe_synth(job->text, job->synth);

    return NULL;
}


static int
espeak_probe_threads_now(void)
{
    int             n;
    DIR            *d;
    struct dirent  *de;

    d = opendir("/proc/self/task");
    if (d == NULL) {
        return -1;
    }

    n = 0;

    while ((de = readdir(d)) != NULL) {
        n += (de->d_name[0] != '.');
    }

    closedir(d);

    return n;
}


/* two threads synthesize at once, in a child that may crash */
static void
espeak_probe_concurrent(const char *text, espeak_probe_synth_t *ref)
{
    int                    i, k, status, same, foreign;
    pid_t                  pid;
    pthread_t              tid[ESPEAK_PROBE_THREADS];
    espeak_probe_job_t     job[ESPEAK_PROBE_THREADS];
    espeak_probe_synth_t  *s[ESPEAK_PROBE_THREADS];

    fflush(stdout);

    pid = fork();
    if (pid < 0) {
        perror("fork");
        return;
    }

    if (pid == 0) {
        alarm(60);
        same = 0;
        foreign = 0;

        for (i = 0; i < ESPEAK_PROBE_THREADS; i++) {
            s[i] = calloc(1, sizeof(espeak_probe_synth_t));
            if (s[i] == NULL) {
                _exit(3);
            }
        }

        for (k = 0; k < 20; k++) {
            for (i = 0; i < ESPEAK_PROBE_THREADS; i++) {
                job[i].text = text;
                job[i].synth = s[i];
                pthread_create(&tid[i], NULL, espeak_probe_job, &job[i]);
            }

            for (i = 0; i < ESPEAK_PROBE_THREADS; i++) {
                pthread_join(tid[i], NULL);
                same += (espeak_probe_same(s[i], ref) != 0);
                foreign += s[i]->foreign;
            }
        }

        printf("  two threads at once, 20 rounds: %d of %d outputs equal"
               " the serial one in words and length, %d events carried"
               " the other thread's user_data\n",
               same, 20 * ESPEAK_PROBE_THREADS, foreign);
        fflush(stdout);
        _exit(0);
    }

    waitpid(pid, &status, 0);

    if (WIFSIGNALED(status)) {
        printf("  two threads at once: the child died of signal %d (%s)\n",
               WTERMSIG(status), strsignal(WTERMSIG(status)));
    }
}


static void *
espeak_probe_busy(void *data)
{
    volatile uint64_t  *stop = data;
    volatile double     x;

    x = 1.0;

    while (!*stop) {
        x = x * 1.0000001 + 1e-9;
    }

    return NULL;
}


static int
espeak_probe_checks(espeak_probe_conf_t *conf, const char *text)
{
    int                    i, same, r;
    long                   n16;
    int16_t               *out;
    uint64_t               t0, c0, stop;
    double                 audio_s;
    pthread_t              tid, busy;
    espeak_probe_job_t     job;
    espeak_probe_synth_t  *ref, *s;
    static const char     *sinc_names[] = { "sinc-best", "sinc-medium",
                                            "sinc-fastest", "zoh",
                                            "linear" };

    ref = calloc(1, sizeof(espeak_probe_synth_t));
    s = calloc(1, sizeof(espeak_probe_synth_t));
    if (ref == NULL || s == NULL) {
        return -1;
    }

    printf("checks on phrase \"%.40s...\"\n", text);

    /* the cost of changing voice, as a session with its own voice would */
    t0 = espeak_probe_ns(CLOCK_MONOTONIC);

    for (i = 0; i < 10; i++) {
        espeak_probe_voice(conf, i % 2 ? conf->voice : "en-us");
    }

    printf("  voice switch en-us <-> %s: %.2f ms each\n", conf->voice,
           (espeak_probe_ns(CLOCK_MONOTONIC) - t0) / 1e6 / 10);

    t0 = espeak_probe_ns(CLOCK_MONOTONIC);

    for (i = 0; i < 10; i++) {
        espeak_SetParameter(espeakRATE, conf->rate + (i % 2), 0);
    }

    printf("  rate change: %.4f ms each\n",
           (espeak_probe_ns(CLOCK_MONOTONIC) - t0) / 1e6 / 10);

    espeak_probe_voice(conf, conf->voice);

    /* determinism: the same text and settings give the same samples */
    espeak_probe_synth(text, ref);
    espeak_probe_synth(text, s);
    printf("  same text twice: %s (%zu samples)\n",
           espeak_probe_same_text(ref, s), ref->n);

    /* a voice switch and back leaves no trace */
    espeak_probe_voice(conf, "en-us");
    espeak_probe_synth("Something else first.", s);
    espeak_probe_voice(conf, conf->voice);
    espeak_probe_synth(text, s);
    printf("  after another voice and back: %s\n",
           espeak_probe_same_text(ref, s));

    /* a stopped synthesis leaves no trace in the next one */
    s->stop_after = conf->srate / 4;
    espeak_probe_synth(text, s);
    s->stop_after = 0;
    espeak_probe_synth(text, s);
    printf("  after a synthesis stopped at 250 ms: %s\n",
           espeak_probe_same_text(ref, s));

    /* espeak_Cancel() in synchronous mode, called from the callback */
    s->cancel_once = 1;
    espeak_probe_synth(text, s);
    printf("  espeak_Cancel() from the callback after the first buffer:"
           " %zu of %zu samples still made (%s)\n", s->n, ref->n,
           s->n == ref->n ? "it does not stop synthesis" : "it stopped");

    /* one dedicated thread, while another thread keeps a core busy */
    stop = 0;
    pthread_create(&busy, NULL, espeak_probe_busy, &stop);

    job.text = text;
    job.synth = s;
    pthread_create(&tid, NULL, espeak_probe_job, &job);
    pthread_join(tid, NULL);

    stop = 1;
    pthread_join(busy, NULL);

    printf("  from a worker thread while the main thread is busy: %s\n",
           espeak_probe_same_text(ref, s));

    /* several pool threads in turn, never two at once */
    same = 0;

    for (i = 0; i < 8; i++) {
        pthread_create(&tid, NULL, espeak_probe_job, &job);
        pthread_join(tid, NULL);
        same += (espeak_probe_same(ref, s) != 0);
    }

    printf("  8 different threads in turn: %d of 8 the same words and"
           " length\n", same);

    espeak_probe_concurrent(text, ref);

    /* resampling cost per second of audio */
    audio_s = (double) ref->n / conf->srate;

    for (r = 16000; r <= 24000; r += 8000) {
        for (i = SRC_SINC_MEDIUM_QUALITY; i <= SRC_SINC_FASTEST; i++) {
            c0 = espeak_probe_ns(CLOCK_THREAD_CPUTIME_ID);
            n16 = espeak_probe_resample(ref->pcm, ref->n, conf->srate, r, i,
                                        &out);
            if (n16 < 0) {
                continue;
            }

            printf("  resample %d -> %d %s: %.2f ms CPU per second of"
                   " audio\n", conf->srate, r, sinc_names[i],
                   (espeak_probe_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / 1e6
                   / audio_s);
            free(out);
        }
    }

    free(ref->pcm);
    free(ref);
    free(s->pcm);
    free(s);

    return 0;
}


static int
espeak_probe_args(espeak_probe_conf_t *conf, int argc, char **argv)
{
    int     i;
    char   *a;

    conf->voice = "en-us+klatt";
    conf->rate = 175;
    conf->pitch = 50;
    conf->repeat = 5;

    for (i = 1; i < argc; i++) {
        a = argv[i];

        if (strcmp(a, "--voice") == 0 && i + 1 < argc) {
            conf->voice = argv[++i];

        } else if (strcmp(a, "--rate") == 0 && i + 1 < argc) {
            conf->rate = atoi(argv[++i]);

        } else if (strcmp(a, "--pitch") == 0 && i + 1 < argc) {
            conf->pitch = atoi(argv[++i]);

        } else if (strcmp(a, "--buflen") == 0 && i + 1 < argc) {
            conf->buflen = atoi(argv[++i]);

        } else if (strcmp(a, "--repeat") == 0 && i + 1 < argc) {
            conf->repeat = atoi(argv[++i]);

        } else if (strcmp(a, "--cancel-at") == 0 && i + 1 < argc) {
            conf->cancel_at = atoi(argv[++i]);

        } else if (strcmp(a, "--out") == 0 && i + 1 < argc) {
            conf->out = argv[++i];

        } else if (strcmp(a, "--events") == 0) {
            conf->events = 1;

        } else if (strcmp(a, "--checks") == 0) {
            conf->checks = 1;

        } else if (a[0] != '-' && conf->nphrases < ESPEAK_PROBE_MAX_PHRASES) {
            conf->phrases[conf->nphrases++] = a;

        } else {
            fprintf(stderr, "espeak-probe: bad option \"%s\"\n", a);
            return -1;
        }
    }

    if (conf->repeat < 1 || conf->repeat > ESPEAK_PROBE_MAX_REPEAT
        || conf->buflen < 0 || conf->cancel_at < 0)
    {
        fprintf(stderr, "espeak-probe: bad option value\n");
        return -1;
    }

    return 0;
}


int
main(int argc, char **argv)
{
    int                   i, th0;
    long                  rss0, rss1, rss2, rss3;
    char                  loc0[64];
    const char          **set;
    uint64_t              t0, t1, t2;
    espeak_probe_conf_t  *conf;

    conf = &espeak_probe_conf;

    if (espeak_probe_args(conf, argc, argv) != 0) {
        fprintf(stderr, "usage: espeak-probe [--voice NAME] [--rate WPM]"
                " [--pitch N] [--buflen MS] [--repeat N] [--events]"
                " [--cancel-at MS] [--out DIR] [--checks] [phrase ...]\n");
        return 2;
    }

    if (conf->nphrases == 0) {
        set = conf->out ? espeak_probe_stt_set : espeak_probe_default;

        for (i = 0; set[i] != NULL; i++) {
            conf->phrases[conf->nphrases++] = set[i];
        }
    }

    snprintf(loc0, sizeof(loc0), "%s", setlocale(LC_CTYPE, NULL));
    rss0 = espeak_probe_status_kb("VmRSS");
    th0 = espeak_probe_threads_now();

    t0 = espeak_probe_ns(CLOCK_MONOTONIC);
    conf->srate = espeak_probe_init(conf);
    if (conf->srate < 0) {
        return 1;
    }

    t1 = espeak_probe_ns(CLOCK_MONOTONIC);
    rss1 = espeak_probe_status_kb("VmRSS");

    if (espeak_probe_voice(conf, conf->voice) != 0) {
        return 1;
    }

    t2 = espeak_probe_ns(CLOCK_MONOTONIC);
    rss2 = espeak_probe_status_kb("VmRSS");

    printf("espeak-ng %s, sample rate %d Hz, PCM16 mono native-endian;"
           " voice %s, rate %d wpm, pitch %d, buflen %d ms\n",
           espeak_Info(NULL), conf->srate, conf->voice, conf->rate,
           conf->pitch, conf->buflen);
    printf("init %.2f ms, first voice %.2f ms; RSS %ld kB before, +%ld kB"
           " after init, +%ld kB after voice; threads %d -> %d;"
           " LC_CTYPE \"%s\" -> \"%s\"\n",
           (t1 - t0) / 1e6, (t2 - t1) / 1e6, rss0, rss1 - rss0,
           rss2 - rss1, th0, espeak_probe_threads_now(), loc0,
           setlocale(LC_CTYPE, NULL));

    if (espeak_probe_phrases(conf) != 0) {
        return 1;
    }

    rss3 = espeak_probe_status_kb("VmRSS");
    printf("RSS after the phrases: +%ld kB over the start; VmHWM %ld kB\n",
           rss3 - rss0, espeak_probe_status_kb("VmHWM"));

    if (conf->checks
        && espeak_probe_checks(conf, conf->phrases[conf->nphrases - 1]) != 0)
    {
        return 1;
    }

    espeak_ng_Terminate();

    return 0;
}
