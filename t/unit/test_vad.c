
/*
 * Unit tests of voice activity detection and endpointing
 * (ngx_http_voice_vad.[ch]).
 *
 * Most tests run the labelled set that t/vad/gen.py writes (espeak-ng
 * speech, sox noise, clicks) and compare the detector with the labels.
 * The set is found in the directory named by the first argument, else by
 * NGX_HTTP_VOICE_VAD_SET, else in build/vad; without it every test fails
 * and says how to make it.
 *
 * The thresholds were set from measurement with a margin; the figures are
 * printed as the tests run.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <setjmp.h>
#include <math.h>
#include <cmocka.h>

#include "ngx_http_voice_vad.h"


#define TEST_VAD_MAX_FILES    160
#define TEST_VAD_MAX_MARKS    32
#define TEST_VAD_MAX_EVENTS   64
#define TEST_VAD_MS           (NGX_HTTP_VOICE_VAD_RATE / 1000)

/* a gap this close to a silence setting makes the expectation ambiguous */
#define TEST_VAD_MARGIN       (200 * TEST_VAD_MS)


typedef struct {
    char                        name[64];
    char                        kind[16];
    char                        noise[16];
    int                         snr;        /* -1: no noise or no speech */
    int16_t                    *pcm;
    size_t                      n;
    ngx_uint_t                  nspeech;
    uint64_t                    speech[TEST_VAD_MAX_MARKS][2];
    ngx_uint_t                  nutt;
    uint64_t                    utt[TEST_VAD_MAX_MARKS][2];
} test_vad_file_t;


typedef struct {
    ngx_http_voice_vad_event_t  ev[TEST_VAD_MAX_EVENTS];
    ngx_uint_t                  n;
} test_vad_events_t;


/* a frame accuracy condition and what it must reach */

typedef struct {
    const char                 *noise;
    int                         snr;
    double                      accuracy;   /* % of frames right */
    double                      hits;       /* % of speech frames found */
    double                      alarms;     /* % of other frames called
                                               speech */
} test_vad_cond_t;


static const char       *test_vad_dir = "build/vad";
static test_vad_file_t   test_vad_files[TEST_VAD_MAX_FILES];
static ngx_uint_t        test_vad_nfiles;


/* ---- the labelled set --------------------------------------------------- */


static int
test_vad_load_labels(test_vad_file_t *f, const char *path)
{
    char                line[256];
    FILE               *fp;
    unsigned long long  a, b;

    fp = fopen(path, "r");
    if (fp == NULL) {
        return -1;
    }

    while (fgets(line, sizeof(line), fp)) {

        if (sscanf(line, "speech %llu %llu", &a, &b) == 2) {
            if (f->nspeech == TEST_VAD_MAX_MARKS) {
                goto failed;
            }

            f->speech[f->nspeech][0] = a;
            f->speech[f->nspeech][1] = b;
            f->nspeech++;

        } else if (sscanf(line, "utterance %llu %llu", &a, &b) == 2) {
            if (f->nutt == TEST_VAD_MAX_MARKS) {
                goto failed;
            }

            f->utt[f->nutt][0] = a;
            f->utt[f->nutt][1] = b;
            f->nutt++;

        } else if (sscanf(line, "rate %llu", &a) == 1) {
            if (a != NGX_HTTP_VOICE_VAD_RATE) {
                goto failed;
            }

        } else if (sscanf(line, "samples %llu", &a) == 1) {
            if (a != f->n) {
                goto failed;
            }
        }
    }

    fclose(fp);
    return 0;

failed:

    fclose(fp);
    return -1;
}


static int
test_vad_load(test_vad_file_t *f)
{
    char   path[512];
    FILE  *fp;
    long   len;

    snprintf(path, sizeof(path), "%s/%s.raw", test_vad_dir, f->name);

    fp = fopen(path, "rb");
    if (fp == NULL) {
        fprintf(stderr, "test_vad: cannot open %s\n", path);
        return -1;
    }

    if (fseek(fp, 0, SEEK_END) != 0 || (len = ftell(fp)) <= 0
        || fseek(fp, 0, SEEK_SET) != 0)
    {
        fclose(fp);
        return -1;
    }

    f->n = len / 2;
    f->pcm = malloc(f->n * sizeof(int16_t));

    /* the files are little-endian, as is every machine this runs on */

    if (f->pcm == NULL || fread(f->pcm, 2, f->n, fp) != f->n) {
        fclose(fp);
        return -1;
    }

    fclose(fp);

    snprintf(path, sizeof(path), "%s/%s.lab", test_vad_dir, f->name);

    if (test_vad_load_labels(f, path) != 0) {
        fprintf(stderr, "test_vad: bad or missing labels %s\n", path);
        return -1;
    }

    return 0;
}


static int
test_vad_setup(void **state)
{
    char              path[512], line[256], snr[16];
    FILE             *fp;
    test_vad_file_t  *f;

    (void) state;

    snprintf(path, sizeof(path), "%s/index.txt", test_vad_dir);

    fp = fopen(path, "r");
    if (fp == NULL) {
        fprintf(stderr, "test_vad: the labelled set is missing (%s); "
                "make it with: /usr/bin/python3 t/vad/gen.py %s\n",
                path, test_vad_dir);
        return -1;
    }

    while (fgets(line, sizeof(line), fp)) {

        if (line[0] == '#') {
            continue;
        }

        if (test_vad_nfiles == TEST_VAD_MAX_FILES) {
            break;
        }

        f = &test_vad_files[test_vad_nfiles];

        if (sscanf(line, "%63s %15s %15s %15s", f->name, f->kind, f->noise,
                   snr) != 4)
        {
            continue;
        }

        f->snr = (snr[0] >= '0' && snr[0] <= '9') ? atoi(snr) : -1;

        if (test_vad_load(f) != 0) {
            fclose(fp);
            return -1;
        }

        test_vad_nfiles++;
    }

    fclose(fp);

    if (test_vad_nfiles < 50) {
        fprintf(stderr, "test_vad: only %u files in %s\n",
                (unsigned) test_vad_nfiles, path);
        return -1;
    }

    return 0;
}


static int
test_vad_teardown(void **state)
{
    ngx_uint_t  i;

    (void) state;

    for (i = 0; i < test_vad_nfiles; i++) {
        free(test_vad_files[i].pcm);
    }

    return 0;
}


static test_vad_file_t *
test_vad_file(const char *name)
{
    ngx_uint_t  i;

    for (i = 0; i < test_vad_nfiles; i++) {
        if (strcmp(test_vad_files[i].name, name) == 0) {
            return &test_vad_files[i];
        }
    }

    fail_msg("%s is not in the labelled set", name);
    return NULL;
}


/* ---- running the detector ----------------------------------------------- */


/*
 * Feeds a whole file in chunks whose sizes cycle through `chunks', checks
 * the event bound on every call and collects the events; `frames', when
 * given (chunks of one frame only), gets the verdict of every frame.
 */

static void
test_vad_run(const int16_t *pcm, size_t n, ngx_msec_t silence,
    ngx_msec_t min_speech, const size_t *chunks, ngx_uint_t nchunks,
    test_vad_events_t *out, u_char *frames)
{
    size_t                       len, done, bound;
    ngx_uint_t                   i, k, got;
    ngx_http_voice_vad_t         vad;
    ngx_http_voice_vad_event_t   ev[TEST_VAD_MAX_EVENTS];

    assert_int_equal(ngx_http_voice_vad_init(&vad, silence, min_speech),
                     NGX_OK);

    out->n = 0;
    done = 0;

    for (i = 0; done < n; i++) {
        len = ngx_min(chunks[i % nchunks], n - done);
        bound = ngx_http_voice_vad_max_events(len);
        assert_true(bound <= TEST_VAD_MAX_EVENTS);

        got = ngx_http_voice_vad_feed(&vad, pcm + done, len, ev, bound);
        assert_true(got <= bound);

        for (k = 0; k < got; k++) {
            assert_true(out->n < TEST_VAD_MAX_EVENTS);
            out->ev[out->n++] = ev[k];
        }

        done += len;
        assert_int_equal(ngx_http_voice_vad_position(&vad), done);

        if (frames) {
            assert_int_equal(len, NGX_HTTP_VOICE_VAD_FRAME);
            frames[done / NGX_HTTP_VOICE_VAD_FRAME - 1] =
                                             ngx_http_voice_vad_speech(&vad);
        }
    }

    ngx_http_voice_vad_free(&vad);
}


static void
test_vad_run_file(test_vad_file_t *f, ngx_msec_t silence,
    ngx_msec_t min_speech, test_vad_events_t *out)
{
    static const size_t  frame = NGX_HTTP_VOICE_VAD_FRAME * 2;

    test_vad_run(f->pcm, f->n, silence, min_speech, &frame, 1, out, NULL);
}


/* events must alternate STARTED, ENDED, ... and move forward */

static void
test_vad_check_order(test_vad_events_t *e)
{
    ngx_uint_t  i;

    for (i = 0; i < e->n; i++) {
        assert_int_equal(e->ev[i].type, (i % 2 == 0)
                                        ? NGX_HTTP_VOICE_VAD_SPEECH_STARTED
                                        : NGX_HTTP_VOICE_VAD_SPEECH_ENDED);
        assert_true(e->ev[i].speech <= e->ev[i].pos);

        if (i) {
            assert_true(e->ev[i].pos > e->ev[i - 1].pos);
        }
    }
}


/*
 * The utterances the endpointer should find with a given silence: the
 * labelled ones, merged across gaps shorter than the silence.  A gap too
 * close to the setting makes the file unusable for that setting.
 */

static ngx_uint_t
test_vad_expect(test_vad_file_t *f, ngx_msec_t silence,
    uint64_t seg[][2])
{
    uint64_t    gap, s;
    ngx_uint_t  i, n;

    s = silence * TEST_VAD_MS;
    n = 0;

    for (i = 0; i < f->nutt; i++) {

        if (n) {
            gap = f->utt[i][0] - seg[n - 1][1];

            if (gap + TEST_VAD_MARGIN > s && gap < s + TEST_VAD_MARGIN) {
                fail_msg("%s: a gap of %llu ms is too close to %lu ms",
                         f->name, (unsigned long long) gap / TEST_VAD_MS,
                         (unsigned long) silence);
            }

            if (gap < s) {
                seg[n - 1][1] = f->utt[i][1];
                continue;
            }
        }

        seg[n][0] = f->utt[i][0];
        seg[n][1] = f->utt[i][1];
        n++;
    }

    return n;
}


/* ---- the API ------------------------------------------------------------ */


static void
test_vad_init_ranges(void **state)
{
    ngx_http_voice_vad_t  vad;

    (void) state;

    assert_int_equal(ngx_http_voice_vad_init(&vad, 299, 0), NGX_ERROR);
    assert_int_equal(ngx_http_voice_vad_init(&vad, 2001, 0), NGX_ERROR);
    assert_int_equal(ngx_http_voice_vad_init(&vad, 700, 19), NGX_ERROR);
    assert_int_equal(ngx_http_voice_vad_init(&vad, 700, 1001), NGX_ERROR);

    assert_int_equal(ngx_http_voice_vad_init(&vad, 300, 20), NGX_OK);
    assert_int_equal(vad.silence, 30);
    assert_int_equal(vad.min_speech, 2);

    assert_int_equal(ngx_http_voice_vad_init(&vad, 2000, 1000), NGX_OK);
    assert_int_equal(vad.silence, 200);
    assert_int_equal(vad.min_speech, 100);

    /* 0 takes the defaults; a part of a frame counts as a whole one */

    assert_int_equal(ngx_http_voice_vad_init(&vad, 0, 0), NGX_OK);
    assert_int_equal(vad.silence, NGX_HTTP_VOICE_VAD_SILENCE / 10);
    assert_int_equal(vad.min_speech, NGX_HTTP_VOICE_VAD_MIN_SPEECH / 10);

    assert_int_equal(ngx_http_voice_vad_init(&vad, 705, 151), NGX_OK);
    assert_int_equal(vad.silence, 71);
    assert_int_equal(vad.min_speech, 16);

    assert_int_equal(ngx_http_voice_vad_position(&vad), 0);
    assert_false(ngx_http_voice_vad_talking(&vad));

    ngx_http_voice_vad_free(&vad);
}


/*
 * A synthetic vowel: a 150 Hz buzz with falling harmonics, over a faint
 * noise, so the test does not depend on the labelled set.
 */

static void
test_vad_vowel(int16_t *pcm, size_t n, size_t from, size_t to)
{
    double    v, t;
    size_t    i;
    uint32_t  s;
    int       h;

    s = 12345;

    for (i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        v = ((double) (s & 0xffff) / 65536.0 - 0.5) * 60.0;

        if (i >= from && i < to) {
            t = (double) i / NGX_HTTP_VOICE_VAD_RATE;

            for (h = 1; h <= 20; h++) {
                v += 3000.0 / h * sin(2.0 * M_PI * 150.0 * h * t);
            }
        }

        pcm[i] = (int16_t) v;
    }
}


static void
test_vad_min_speech(void **state)
{
    size_t              n, from, to;
    int16_t            *pcm;
    test_vad_events_t   e;

    static const size_t  chunk = 480;

    (void) state;

    n = 4 * NGX_HTTP_VOICE_VAD_RATE;
    pcm = malloc(n * sizeof(int16_t));
    assert_non_null(pcm);

    from = NGX_HTTP_VOICE_VAD_RATE;

    /* 120 ms of vowel is shorter than 150 ms: nothing */

    to = from + 120 * TEST_VAD_MS;
    test_vad_vowel(pcm, n, from, to);
    test_vad_run(pcm, n, 700, 150, &chunk, 1, &e, NULL);
    assert_int_equal(e.n, 0);

    /* 300 ms: a start 150 ms in, an end 700 ms after it stops */

    to = from + 300 * TEST_VAD_MS;
    test_vad_vowel(pcm, n, from, to);
    test_vad_run(pcm, n, 700, 150, &chunk, 1, &e, NULL);
    assert_int_equal(e.n, 2);
    test_vad_check_order(&e);

    assert_in_range(e.ev[0].speech, from - 20 * TEST_VAD_MS,
                    from + 20 * TEST_VAD_MS);
    assert_in_range(e.ev[0].pos, from + 150 * TEST_VAD_MS,
                    from + 180 * TEST_VAD_MS);
    assert_in_range(e.ev[1].speech, to - 20 * TEST_VAD_MS,
                    to + 30 * TEST_VAD_MS);
    assert_in_range(e.ev[1].pos, to + 680 * TEST_VAD_MS,
                    to + 730 * TEST_VAD_MS);
    assert_int_equal(e.ev[1].pos - e.ev[1].speech, 700 * TEST_VAD_MS);

    /* the same vowel needs 400 ms when min_speech says so */

    test_vad_run(pcm, n, 700, 400, &chunk, 1, &e, NULL);
    assert_int_equal(e.n, 0);

    free(pcm);
}


/* snprintf-like: all events are counted, only `max' are stored */

static void
test_vad_event_bound(void **state)
{
    size_t                       n;
    ngx_uint_t                   got, i;
    test_vad_file_t             *f;
    test_vad_events_t            all;
    ngx_http_voice_vad_t         vad;
    ngx_http_voice_vad_event_t   ev[TEST_VAD_MAX_EVENTS + 1];

    (void) state;

    f = test_vad_file("t1-clean");
    test_vad_run_file(f, 300, 0, &all);
    assert_true(all.n >= 8);

    /* the whole file in one call, room for three: the rest is counted */

    n = f->n;
    ngx_memzero(ev, sizeof(ev));

    assert_int_equal(ngx_http_voice_vad_init(&vad, 300, 0), NGX_OK);
    got = ngx_http_voice_vad_feed(&vad, f->pcm, n, ev, 3);

    assert_int_equal(got, all.n);
    assert_true(got <= ngx_http_voice_vad_max_events(n));

    for (i = 0; i < 3; i++) {
        assert_memory_equal(&ev[i], &all.ev[i], sizeof(ev[i]));
    }

    assert_int_equal(ev[3].type, 0);

    /* with max 0 nothing is written and the count is still right */

    assert_int_equal(ngx_http_voice_vad_init(&vad, 300, 0), NGX_OK);
    got = ngx_http_voice_vad_feed(&vad, f->pcm, n, NULL, 0);
    assert_int_equal(got, all.n);
}


/* ---- frame accuracy ----------------------------------------------------- */


static void
test_vad_accuracy(void **state)
{
    double              acc, hit, fa;
    char                names[32];
    u_char             *frames, truth;
    uint64_t            tp, fp, fn, tn;
    ngx_uint_t          i, j, k, nf, files;
    test_vad_file_t    *f;
    test_vad_cond_t    *c;
    test_vad_events_t   e;

    static const size_t  frame = NGX_HTTP_VOICE_VAD_FRAME;

    c = *state;
    tp = fp = fn = tn = 0;

    if (c->snr < 0) {
        snprintf(names, sizeof(names), "clean");

    } else {
        snprintf(names, sizeof(names), "%s %d dB", c->noise, c->snr);
    }
    files = 0;

    for (i = 0; i < test_vad_nfiles; i++) {
        f = &test_vad_files[i];

        if (strcmp(f->kind, "speech") != 0
            || strcmp(f->noise, c->noise) != 0
            || f->snr != c->snr)
        {
            continue;
        }

        files++;
        nf = f->n / NGX_HTTP_VOICE_VAD_FRAME;
        frames = malloc(nf);
        assert_non_null(frames);

        test_vad_run(f->pcm, nf * NGX_HTTP_VOICE_VAD_FRAME, 0, 0, &frame, 1,
                     &e, frames);

        for (k = 0; k < nf; k++) {
            truth = 0;

            for (j = 0; j < f->nspeech; j++) {
                if (k * NGX_HTTP_VOICE_VAD_FRAME >= f->speech[j][0]
                    && k * NGX_HTTP_VOICE_VAD_FRAME < f->speech[j][1])
                {
                    truth = 1;
                }
            }

            if (truth) {
                if (frames[k]) { tp++; } else { fn++; }

            } else {
                if (frames[k]) { fp++; } else { tn++; }
            }
        }

        free(frames);
    }

    assert_true(files >= 5);

    acc = 100.0 * (tp + tn) / (tp + tn + fp + fn);
    hit = 100.0 * tp / (tp + fn);
    fa = 100.0 * fp / (fp + tn);

    print_message("    %s: %u files, accuracy %.1f%%, speech found %.1f%%, "
                  "false speech %.1f%%\n", names, (unsigned) files, acc,
                  hit, fa);

    assert_true(acc >= c->accuracy);
    assert_true(hit >= c->hits);
    assert_true(fa <= c->alarms);
}


/* ---- no speech: no event ------------------------------------------------ */


static void
test_vad_no_speech(void **state)
{
    double              fa;
    u_char             *frames;
    uint64_t            on;
    ngx_uint_t          i, k, nf, files;
    test_vad_file_t    *f;
    test_vad_events_t   e;

    static const size_t  frame = NGX_HTTP_VOICE_VAD_FRAME;

    (void) state;

    files = 0;

    for (i = 0; i < test_vad_nfiles; i++) {
        f = &test_vad_files[i];

        if (strcmp(f->kind, "speech") == 0) {
            continue;
        }

        files++;
        assert_int_equal(f->nspeech, 0);

        /* the shortest speech the endpointer accepts, and the default */

        test_vad_run_file(f, 300, 100, &e);
        if (e.n) {
            fail_msg("%s: speech started at %llu ms", f->name,
                     (unsigned long long) e.ev[0].pos / TEST_VAD_MS);
        }

        test_vad_run_file(f, 0, 0, &e);
        assert_int_equal(e.n, 0);

        nf = f->n / NGX_HTTP_VOICE_VAD_FRAME;
        frames = malloc(nf);
        assert_non_null(frames);

        test_vad_run(f->pcm, nf * NGX_HTTP_VOICE_VAD_FRAME, 0, 0, &frame, 1,
                     &e, frames);

        on = 0;
        for (k = 0; k < nf; k++) {
            on += frames[k];
        }

        free(frames);

        fa = 100.0 * on / nf;
        print_message("    %-16s false speech frames %.1f%%\n", f->name, fa);

        /* steady noise and silence are (almost) never speech */

        if (strcmp(f->kind, "clicks") != 0
            && strcmp(f->name, "noise-pinkramp") != 0)
        {
            assert_true(fa <= 1.0);
        }
    }

    assert_true(files >= 10);
}


/* ---- events per utterance ----------------------------------------------- */


/* what one noise condition must meet, in ms */

typedef struct {
    int                 snr;        /* -1: clean */
    int64_t             start;      /* latest start decision */
    int64_t             onset;      /* latest onset found, less than */
    int64_t             early;      /* end decided at most this before
                                       silence after the true end */
    int64_t             late;       /* ... or at most this after */
    ngx_uint_t          slack;      /* utterances a file may miss or
                                       split; 0: the latencies count */
} test_vad_limits_t;


typedef struct {
    double              start_sum;
    double              end_sum;
    int64_t             start_min, start_max;
    int64_t             end_min, end_max;
    int64_t             onset_max;
    ngx_uint_t          n;
    ngx_uint_t          found;
    ngx_uint_t          expected;
} test_vad_latency_t;


/* from measurement (see the figures printed), with a margin */

static const test_vad_limits_t  test_vad_limits[] = {
    { -1, 250,  10,  30,  30, 0 },
    { 20, 300, 150, 150,  30, 0 },
    { 10, 650, 500, 200,  30, 0 },
    {  5,   0,   0,   0,   0, 1 },
};


/* is [a, b) inside a labelled utterance, give or take `tol' samples */

static ngx_uint_t
test_vad_inside(test_vad_file_t *f, uint64_t a, uint64_t b, uint64_t tol)
{
    ngx_uint_t  i;

    for (i = 0; i < f->nutt; i++) {
        if (a + tol >= f->utt[i][0] && b <= f->utt[i][1] + tol) {
            return 1;
        }
    }

    return 0;
}


/*
 * Runs the speech files of one condition at a silence setting.  Every
 * event must belong to speech: a start whose speech lies inside an
 * utterance, an end whose last speech does.  Where the latencies count,
 * each expected utterance gives exactly one STARTED and one ENDED, the
 * STARTED soon after it begins, the ENDED `silence' after it ends.
 */

static void
test_vad_utterances(ngx_msec_t silence, const char *only,
    const test_vad_limits_t *lim, test_vad_latency_t *l)
{
    int64_t                       d, ms, s;
    uint64_t                      seg[TEST_VAD_MAX_MARKS][2];
    ngx_uint_t                    i, j, n, files, tol;
    test_vad_file_t              *f;
    test_vad_events_t             e;
    ngx_http_voice_vad_event_t   *start, *end;

    ngx_memzero(l, sizeof(test_vad_latency_t));
    l->start_min = l->end_min = INT64_MAX;
    l->start_max = l->end_max = l->onset_max = INT64_MIN;

    files = 0;
    ms = TEST_VAD_MS;
    s = silence * ms;
    tol = 100 * ms;

    for (i = 0; i < test_vad_nfiles; i++) {
        f = &test_vad_files[i];

        if (strcmp(f->kind, "speech") != 0
            || (only && strncmp(f->name, only, strlen(only)) != 0)
            || f->snr != lim->snr)
        {
            continue;
        }

        files++;
        n = test_vad_expect(f, silence, seg);

        test_vad_run_file(f, silence, 0, &e);
        test_vad_check_order(&e);

        /* the stream ends long after the last utterance: all ended */

        assert_true(e.n % 2 == 0);

        l->found += e.n / 2;
        l->expected += n;

        for (j = 0; j < e.n; j += 2) {
            start = &e.ev[j];
            end = &e.ev[j + 1];

            if (!test_vad_inside(f, start->speech, start->speech, tol)
                || !test_vad_inside(f, end->speech, end->speech, tol))
            {
                fail_msg("%s: speech from %llu to %llu ms is no utterance",
                         f->name,
                         (unsigned long long) (start->speech / ms),
                         (unsigned long long) (end->speech / ms));
            }

            assert_int_equal(end->pos - end->speech, s);
        }

        if (lim->slack) {
            if (e.n / 2 + lim->slack < n || e.n / 2 > n + lim->slack) {
                fail_msg("%s at %lu ms: %u utterances found, %u expected",
                         f->name, (unsigned long) silence,
                         (unsigned) e.n / 2, (unsigned) n);
            }

            continue;
        }

        if (e.n != 2 * n) {
            fail_msg("%s at %lu ms: %u events for %u utterances",
                     f->name, (unsigned long) silence, (unsigned) e.n,
                     (unsigned) n);
        }

        for (j = 0; j < n; j++) {
            start = &e.ev[2 * j];
            end = &e.ev[2 * j + 1];

            /* how late the start was decided, and where speech began */

            d = (int64_t) start->pos - (int64_t) seg[j][0];
            l->start_sum += d;
            l->start_min = ngx_min(l->start_min, d);
            l->start_max = ngx_max(l->start_max, d);

            if (d < 0 || d > lim->start * ms) {
                fail_msg("%s: utterance %u started %lld ms after it began",
                         f->name, (unsigned) j, (long long) (d / ms));
            }

            d = (int64_t) start->speech - (int64_t) seg[j][0];
            l->onset_max = ngx_max(l->onset_max, d);

            if (d <= -lim->onset * ms || d >= lim->onset * ms) {
                fail_msg("%s: utterance %u began at %lld ms, found at "
                         "%lld ms", f->name, (unsigned) j,
                         (long long) (seg[j][0] / ms),
                         (long long) (start->speech / ms));
            }

            /* how long after the true end the end was decided */

            d = (int64_t) end->pos - (int64_t) seg[j][1];
            l->end_sum += d;
            l->end_min = ngx_min(l->end_min, d);
            l->end_max = ngx_max(l->end_max, d);
            l->n++;

            if (d < s - lim->early * ms || d > s + lim->late * ms) {
                fail_msg("%s: utterance %u ended %lld ms after its end, "
                         "silence %lu ms", f->name, (unsigned) j,
                         (long long) (d / ms), (unsigned long) silence);
            }
        }
    }

    assert_true(files >= 3);
}


static void
test_vad_latency_print(const test_vad_limits_t *lim, ngx_msec_t silence,
    test_vad_latency_t *l)
{
    int64_t  ms;
    char     what[16];

    ms = TEST_VAD_MS;

    if (lim->snr < 0) {
        snprintf(what, sizeof(what), "clean");

    } else {
        snprintf(what, sizeof(what), "%d dB", lim->snr);
    }

    if (l->n == 0) {
        print_message("    %s, silence %lu ms: %u of %u utterances found\n",
                      what, (unsigned long) silence, (unsigned) l->found,
                      (unsigned) l->expected);
        return;
    }

    print_message("    %s, silence %lu ms, %u utterances: start decided "
                  "%lld..%lld ms (mean %.0f) after speech began, onset "
                  "late by up to %lld ms; end decided %lld..%lld ms "
                  "(mean %.0f) after speech ended\n",
                  what, (unsigned long) silence, (unsigned) l->n,
                  (long long) (l->start_min / ms),
                  (long long) (l->start_max / ms),
                  l->start_sum / l->n / ms,
                  (long long) (l->onset_max / ms),
                  (long long) (l->end_min / ms),
                  (long long) (l->end_max / ms),
                  l->end_sum / l->n / ms);
}


/* the default silence, clean and in noise */

static void
test_vad_endpoints(void **state)
{
    ngx_uint_t          i;
    test_vad_latency_t  l;

    (void) state;

    for (i = 0; i < sizeof(test_vad_limits) / sizeof(test_vad_limits[0]);
         i++)
    {
        test_vad_utterances(700, NULL, &test_vad_limits[i], &l);
        test_vad_latency_print(&test_vad_limits[i], 700, &l);
    }
}


/* pauses shorter than the silence setting end nothing */

static void
test_vad_pauses(void **state)
{
    ngx_uint_t          i;
    test_vad_file_t    *f;
    test_vad_events_t   e;

    static const char  *files[] = {
        "p1-clean", "p1-white20", "p1-pink20", "p1-brown20", "p1-white10",
        "p2-clean", "p2-white20", "p2-pink20", "p2-brown20", "p2-white10"
    };

    (void) state;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        f = test_vad_file(files[i]);
        assert_true(f->nutt >= 2);

        test_vad_run_file(f, 700, 0, &e);

        if (e.n != 2) {
            fail_msg("%s: %u events, one utterance expected", f->name,
                     (unsigned) e.n);
        }

        test_vad_check_order(&e);

        /* the one utterance spans all the sentences */

        assert_true(e.ev[0].pos < f->utt[0][0] + 400 * TEST_VAD_MS);
        assert_true(e.ev[1].pos > f->utt[f->nutt - 1][1]);
    }
}


/* the ends of the silence range: 300 ms splits more, 2000 ms merges more */

static void
test_vad_silence_range(void **state)
{
    ngx_uint_t          i;
    test_vad_latency_t  l;

    (void) state;

    /* the pause files have gaps too close to 300 ms to tell */

    for (i = 0; i < 3; i++) {
        test_vad_utterances(300, "t", &test_vad_limits[i], &l);
        test_vad_latency_print(&test_vad_limits[i], 300, &l);
    }

    for (i = 0; i < 3; i++) {
        test_vad_utterances(2000, NULL, &test_vad_limits[i], &l);
        test_vad_latency_print(&test_vad_limits[i], 2000, &l);
    }
}


/* ---- chunking does not matter ------------------------------------------- */


static void
test_vad_chunks(void **state)
{
    uint64_t            seed;
    size_t              sizes[64];
    ngx_uint_t          i, j, k;
    test_vad_file_t    *f;
    test_vad_events_t   ref, e;

    static const char  *files[] = {
        "t1-clean", "t3-pink10", "p1-white20", "clicks-noise",
        "noise-pinkramp", "t2-brown5"
    };

    static const size_t  fixed[] = {
        1, 7, 80, 159, 161, 240, 320, 333, 480, 960, 1919, 4800
    };

    (void) state;

    seed = 0x5eed;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        f = test_vad_file(files[i]);

        test_vad_run_file(f, 500, 0, &ref);

        if (strcmp(f->kind, "speech") == 0) {
            assert_true(ref.n >= 2);
        }

        for (j = 0; j < sizeof(fixed) / sizeof(fixed[0]); j++) {
            test_vad_run(f->pcm, f->n, 500, 0, &fixed[j], 1, &e, NULL);
            assert_int_equal(e.n, ref.n);
            assert_memory_equal(e.ev, ref.ev, ref.n * sizeof(e.ev[0]));
        }

        /* sizes from 0 to 999 in a fixed pseudo-random order */

        for (k = 0; k < 64; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            sizes[k] = (size_t) (seed >> 33) % 1000;
        }

        sizes[5] = 0;
        sizes[0] = 1;

        test_vad_run(f->pcm, f->n, 500, 0, sizes, 64, &e, NULL);
        assert_int_equal(e.n, ref.n);
        assert_memory_equal(e.ev, ref.ev, ref.n * sizeof(e.ev[0]));
    }
}


/* ---- reset -------------------------------------------------------------- */


static void
test_vad_reset(void **state)
{
    size_t                       done, len, cut;
    ngx_uint_t                   got, i;
    test_vad_file_t             *f;
    test_vad_events_t            ref, e;
    ngx_http_voice_vad_t         vad;
    ngx_http_voice_vad_event_t   ev[4];

    (void) state;

    f = test_vad_file("t1-white20");
    test_vad_run_file(f, 700, 0, &ref);
    assert_true(ref.n >= 4);

    /* reset just after the first start, in the middle of the sentence */

    cut = ref.ev[0].pos + 50 * TEST_VAD_MS;

    assert_int_equal(ngx_http_voice_vad_init(&vad, 700, 0), NGX_OK);

    e.n = 0;
    done = 0;

    while (done < f->n) {
        len = ngx_min(320, f->n - done);

        if (done < cut && done + len > cut) {
            len = cut - done;
        }

        got = ngx_http_voice_vad_feed(&vad, f->pcm + done, len, ev, 4);
        assert_true(got <= 2);

        for (i = 0; i < got; i++) {
            e.ev[e.n++] = ev[i];
        }

        done += len;

        if (done == cut) {
            assert_true(ngx_http_voice_vad_talking(&vad));
            ngx_http_voice_vad_reset(&vad);
            assert_false(ngx_http_voice_vad_talking(&vad));
            assert_int_equal(ngx_http_voice_vad_position(&vad), cut);
        }
    }

    /*
     * The sentence goes on after the reset, so it starts again as a new
     * turn, and every event after that is as before.
     */

    assert_int_equal(e.n, ref.n + 1);
    assert_memory_equal(&e.ev[0], &ref.ev[0], sizeof(e.ev[0]));

    e.n--;
    ngx_memmove(&e.ev[0], &e.ev[1], e.n * sizeof(e.ev[0]));
    test_vad_check_order(&e);

    assert_true(e.ev[0].pos > cut);
    assert_true(e.ev[0].speech >= cut);
    assert_memory_equal(&e.ev[1], &ref.ev[1],
                        (ref.n - 1) * sizeof(e.ev[0]));
}


int
main(int argc, char **argv)
{
    char            *env;
    ngx_uint_t       i;

    static test_vad_cond_t  conds[] = {
        { "none",  -1, 96.0, 97.0, 7.0 },
        { "white", 20, 94.5, 93.0, 6.0 },
        { "white", 10, 91.5, 87.0, 5.0 },
        { "white",  5, 90.0, 84.0, 4.0 },
        { "pink",  20, 95.0, 94.0, 6.0 },
        { "pink",  10, 92.0, 88.0, 4.0 },
        { "pink",   5, 89.0, 80.0, 3.0 },
        { "brown", 20, 96.0, 96.0, 6.0 },
        { "brown", 10, 96.0, 95.0, 5.0 },
        { "brown",  5, 94.5, 93.0, 5.0 },
    };

    static char              names[10][48];

    struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_vad_init_ranges),
        cmocka_unit_test(test_vad_min_speech),
        cmocka_unit_test(test_vad_event_bound),
        { names[0], test_vad_accuracy, NULL, NULL, &conds[0] },
        { names[1], test_vad_accuracy, NULL, NULL, &conds[1] },
        { names[2], test_vad_accuracy, NULL, NULL, &conds[2] },
        { names[3], test_vad_accuracy, NULL, NULL, &conds[3] },
        { names[4], test_vad_accuracy, NULL, NULL, &conds[4] },
        { names[5], test_vad_accuracy, NULL, NULL, &conds[5] },
        { names[6], test_vad_accuracy, NULL, NULL, &conds[6] },
        { names[7], test_vad_accuracy, NULL, NULL, &conds[7] },
        { names[8], test_vad_accuracy, NULL, NULL, &conds[8] },
        { names[9], test_vad_accuracy, NULL, NULL, &conds[9] },
        cmocka_unit_test(test_vad_no_speech),
        cmocka_unit_test(test_vad_endpoints),
        cmocka_unit_test(test_vad_pauses),
        cmocka_unit_test(test_vad_silence_range),
        cmocka_unit_test(test_vad_chunks),
        cmocka_unit_test(test_vad_reset),
    };

    for (i = 0; i < 10; i++) {
        if (conds[i].snr < 0) {
            snprintf(names[i], sizeof(names[i]), "test_vad_accuracy_clean");
        } else {
            snprintf(names[i], sizeof(names[i]), "test_vad_accuracy_%s%d",
                     conds[i].noise, conds[i].snr);
        }
    }

    env = getenv("NGX_HTTP_VOICE_VAD_SET");

    if (argc > 1) {
        test_vad_dir = argv[1];

    } else if (env && *env) {
        test_vad_dir = env;
    }

    return cmocka_run_group_tests_name("ngx_http_voice_vad", tests,
                                       test_vad_setup, test_vad_teardown);
}
