
/*
 * sphinx-probe: what the embedded recognizer (pocketsphinx 5prealpha)
 * costs, and how well it hears.
 *
 *     sphinx-probe [options] [-name value ...] file.raw ...
 *     sphinx-probe --memory N [options] [-name value ...] [file.raw]
 *
 * Each file is PCM16 mono 16 kHz little-endian and is one utterance.  The
 * files are fed to one decoder in chunks, as a session would feed them;
 * a partial hypothesis is asked for at a fixed interval of audio and is
 * printed when it changes; the end of the file is the endpoint, where
 * the final is taken.  Every library call is timed.  When file.txt sits
 * beside file.raw it is the reference, and the word error rate is shown.
 *
 * Options:
 *     --chunk MS      audio per ps_process_raw() call (default 20)
 *     --partial MS    audio between two partials (default 200, 0: none)
 *     --threads N     decode the files in N threads at once, one decoder
 *                     each, and check that they all agree
 *     --reset-cmn     give every file the cepstral mean the decoder had
 *                     when it was new, so files do not affect each other
 *     --brief         no per-file lines, only the summary
 *     --log           keep the library's own log on stderr
 *     --memory N      create N decoders and print the memory after each;
 *                     with files, then decode them on each decoder; the
 *                     last column is private memory per decoder
 *     --fork          with --memory: decode in a child forked after the
 *                     decoders were made, as nginx workers forked from
 *                     a master that made them would, and show what the
 *                     child had to copy
 *     -name value     decoder settings (-hmm, -lm, -dict, -jsgf, -kws,
 *                     -keyphrase, -fwdflat, -bestpath, -mmap, ...);
 *                     the Debian en-us model is the default
 *
 * Build (Debian 12: libpocketsphinx-dev, libsphinxbase-dev, and for the
 * model pocketsphinx-en-us):
 *     cc -O2 -g -Wall -Wextra -Werror -pthread -I/usr/include/pocketsphinx \
 *         -o build/sphinx-probe tools/sphinx-probe.c \
 *         -lpocketsphinx -lsphinxbase
 * <sphinxbase/...> is found in the multiarch include directory; the
 * include path of "pkg-config --cflags sphinxbase" is left out on purpose,
 * since its err.h would hide the system one.
 */


#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include <pocketsphinx.h>
#include <sphinxbase/cmn.h>
#include <sphinxbase/err.h>
#include <sphinxbase/feat.h>


#define SPHINX_PROBE_MODEL     "/usr/share/pocketsphinx/model/en-us"
#define SPHINX_PROBE_RATE      16000
#define SPHINX_PROBE_MAX_ARGS  64
#define SPHINX_PROBE_MAX_FILES 256
#define SPHINX_PROBE_MAX_THR   16
#define SPHINX_PROBE_HYP_LEN   1024
#define SPHINX_PROBE_CEP_LEN   64


typedef struct {
    const char    *path;
    int16_t       *pcm;
    size_t         n;
    char          *ref;
} sphinx_probe_file_t;


typedef struct {
    /* what a decoding of one file cost and produced */
    size_t         chunks;
    uint64_t      *chunk_ns;
    size_t         partials;
    uint64_t      *partial_ns;
    size_t         changes;
    long           first_partial_ms;
    uint64_t       feed_ns;
    uint64_t       feed_cpu_ns;
    uint64_t       max_chunk_ns;
    size_t         max_chunk_at;
    int            max_chunk_frames;
    int            max_frames;
    size_t         slow;
    uint64_t       end_ns;
    uint64_t       final_ns;
    char           hyp[SPHINX_PROBE_HYP_LEN];
} sphinx_probe_run_t;


typedef struct {
    int                   argc;
    char                 *argv[SPHINX_PROBE_MAX_ARGS];
    size_t                chunk;
    size_t                partial;
    int                   reset_cmn;
    int                   brief;
    int                   log;
    int                   threads;
    int                   memory;
    int                   fork;
    size_t                nfiles;
    sphinx_probe_file_t   files[SPHINX_PROBE_MAX_FILES];
} sphinx_probe_conf_t;


typedef struct {
    sphinx_probe_conf_t  *conf;
    int                   verbose;
    uint64_t              init_ns;
    uint64_t              wall_ns;
    uint64_t              cpu_ns;
    sphinx_probe_run_t   *runs;
    int                   failed;
} sphinx_probe_worker_t;


static int sphinx_probe_args(sphinx_probe_conf_t *conf, int argc,
    char **argv);
static int sphinx_probe_load(sphinx_probe_file_t *f);
static ps_decoder_t *sphinx_probe_decoder(sphinx_probe_conf_t *conf);
static int sphinx_probe_decode(sphinx_probe_conf_t *conf, ps_decoder_t *ps,
    sphinx_probe_file_t *f, sphinx_probe_run_t *run, int verbose);
static void *sphinx_probe_worker(void *data);
static int sphinx_probe_memory(sphinx_probe_conf_t *conf);
static void sphinx_probe_report(sphinx_probe_conf_t *conf,
    sphinx_probe_worker_t *w);
static size_t sphinx_probe_words(char *s, char **words, size_t max);
static size_t sphinx_probe_distance(const char *ref, const char *hyp,
    size_t *nref);
static void sphinx_probe_free(sphinx_probe_conf_t *conf,
    sphinx_probe_worker_t *w, int n);
static int sphinx_probe_cmp(const void *a, const void *b);
static uint64_t sphinx_probe_pct(uint64_t *v, size_t n, unsigned pct);


static uint64_t
sphinx_probe_ns(clockid_t clock)
{
    struct timespec  ts;

    clock_gettime(clock, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


int
main(int argc, char **argv)
{
    int                     i, rc, failed;
    size_t                  k;
    pthread_t               tid[SPHINX_PROBE_MAX_THR];
    sphinx_probe_conf_t    *conf;
    sphinx_probe_worker_t   w[SPHINX_PROBE_MAX_THR];

    conf = calloc(1, sizeof(sphinx_probe_conf_t));
    if (conf == NULL) {
        return 1;
    }

    if (sphinx_probe_args(conf, argc, argv) != 0) {
        fprintf(stderr, "usage: sphinx-probe [--chunk MS] [--partial MS]"
                " [--threads N] [--reset-cmn] [--brief] [--log]"
                " [--memory N [--fork]] [-name value ...] file.raw ...\n");
        free(conf);
        return 2;
    }

    if (!conf->log) {
        /*
         * The library logs through one process-wide callback; a NULL
         * callback makes err_msg() return before it formats anything.
         * The configuration dump of cmd_ln_parse_r() bypasses the
         * callback and writes to the log stream, so close that too.
         */
        err_set_callback(NULL, NULL);
        err_set_logfp(NULL);
    }

    memset(w, 0, sizeof(w));

    for (k = 0; k < conf->nfiles; k++) {
        if (sphinx_probe_load(&conf->files[k]) != 0) {
            sphinx_probe_free(conf, w, 0);
            return 1;
        }
    }

    if (conf->memory) {
        rc = sphinx_probe_memory(conf);
        sphinx_probe_free(conf, w, 0);
        return rc == 0 ? 0 : 1;
    }

    if (conf->nfiles == 0) {
        fprintf(stderr, "sphinx-probe: no input file\n");
        sphinx_probe_free(conf, w, 0);
        return 2;
    }

    for (i = 0; i < conf->threads; i++) {
        w[i].conf = conf;
        w[i].verbose = (conf->threads == 1 && !conf->brief);

        rc = pthread_create(&tid[i], NULL, sphinx_probe_worker, &w[i]);
        if (rc != 0) {
            fprintf(stderr, "sphinx-probe: pthread_create: %s\n",
                    strerror(rc));
            exit(1);
        }
    }

    failed = 0;

    for (i = 0; i < conf->threads; i++) {
        pthread_join(tid[i], NULL);
        failed |= w[i].failed;
    }

    if (!failed) {
        sphinx_probe_report(conf, w);
    }

    sphinx_probe_free(conf, w, conf->threads);

    return failed ? 1 : 0;
}


static void
sphinx_probe_free(sphinx_probe_conf_t *conf, sphinx_probe_worker_t *w,
    int n)
{
    int     i;
    size_t  k;

    for (i = 0; i < n; i++) {
        if (w[i].runs == NULL) {
            continue;
        }

        for (k = 0; k < conf->nfiles; k++) {
            free(w[i].runs[k].chunk_ns);
            free(w[i].runs[k].partial_ns);
        }

        free(w[i].runs);
    }

    for (k = 0; k < conf->nfiles; k++) {
        free(conf->files[k].pcm);
        free(conf->files[k].ref);
    }

    free(conf);
}


static int
sphinx_probe_args(sphinx_probe_conf_t *conf, int argc, char **argv)
{
    int     i, user_search, user_hmm, user_dict;
    char   *a;

    conf->chunk = 20;
    conf->partial = 200;
    conf->threads = 1;

    conf->argv[conf->argc++] = argv[0];

    user_search = 0;
    user_hmm = 0;
    user_dict = 0;

    for (i = 1; i < argc; i++) {
        a = argv[i];

        if (strcmp(a, "--chunk") == 0 && i + 1 < argc) {
            conf->chunk = strtoul(argv[++i], NULL, 10);

        } else if (strcmp(a, "--partial") == 0 && i + 1 < argc) {
            conf->partial = strtoul(argv[++i], NULL, 10);

        } else if (strcmp(a, "--threads") == 0 && i + 1 < argc) {
            conf->threads = atoi(argv[++i]);

        } else if (strcmp(a, "--memory") == 0 && i + 1 < argc) {
            conf->memory = atoi(argv[++i]);

        } else if (strcmp(a, "--fork") == 0) {
            conf->fork = 1;

        } else if (strcmp(a, "--reset-cmn") == 0) {
            conf->reset_cmn = 1;

        } else if (strcmp(a, "--brief") == 0) {
            conf->brief = 1;

        } else if (strcmp(a, "--log") == 0) {
            conf->log = 1;

        } else if (a[0] == '-' && a[1] != '-' && a[1] != '\0'
                   && i + 1 < argc)
        {
            if (conf->argc + 2 >= SPHINX_PROBE_MAX_ARGS) {
                fprintf(stderr, "sphinx-probe: too many settings\n");
                return -1;
            }

            if (strcmp(a, "-lm") == 0 || strcmp(a, "-jsgf") == 0
                || strcmp(a, "-kws") == 0 || strcmp(a, "-keyphrase") == 0
                || strcmp(a, "-fsg") == 0 || strcmp(a, "-allphone") == 0)
            {
                user_search = 1;

            } else if (strcmp(a, "-hmm") == 0) {
                user_hmm = 1;

            } else if (strcmp(a, "-dict") == 0) {
                user_dict = 1;
            }

            conf->argv[conf->argc++] = a;
            conf->argv[conf->argc++] = argv[++i];

        } else if (a[0] != '-') {
            if (conf->nfiles == SPHINX_PROBE_MAX_FILES) {
                fprintf(stderr, "sphinx-probe: too many files\n");
                return -1;
            }

            conf->files[conf->nfiles++].path = a;

        } else {
            fprintf(stderr, "sphinx-probe: unknown option \"%s\"\n", a);
            return -1;
        }
    }

    if (conf->chunk == 0 || conf->threads < 1
        || conf->threads > SPHINX_PROBE_MAX_THR
        || conf->memory < 0 || conf->argc + 6 >= SPHINX_PROBE_MAX_ARGS)
    {
        fprintf(stderr, "sphinx-probe: bad option value\n");
        return -1;
    }

    /* the model the Debian package pocketsphinx-en-us installs */

    if (!user_hmm) {
        conf->argv[conf->argc++] = "-hmm";
        conf->argv[conf->argc++] = SPHINX_PROBE_MODEL "/en-us";
    }

    if (!user_dict) {
        conf->argv[conf->argc++] = "-dict";
        conf->argv[conf->argc++] = SPHINX_PROBE_MODEL "/cmudict-en-us.dict";
    }

    if (!user_search) {
        conf->argv[conf->argc++] = "-lm";
        conf->argv[conf->argc++] = SPHINX_PROBE_MODEL "/en-us.lm.bin";
    }

    return 0;
}


static int
sphinx_probe_load(sphinx_probe_file_t *f)
{
    long     size;
    char    *txt, *dot;
    FILE    *fp;
    size_t   len;

    fp = fopen(f->path, "rb");
    if (fp == NULL) {
        perror(f->path);
        return -1;
    }

    if (fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) < 0) {
        perror(f->path);
        fclose(fp);
        return -1;
    }

    rewind(fp);

    f->n = (size_t) size / sizeof(int16_t);
    f->pcm = malloc(f->n * sizeof(int16_t) + 1);

    if (f->pcm == NULL
        || fread(f->pcm, sizeof(int16_t), f->n, fp) != f->n)
    {
        fprintf(stderr, "sphinx-probe: cannot read %s\n", f->path);
        fclose(fp);
        return -1;
    }

    fclose(fp);

    /* the reference transcript, if any: file.txt beside file.raw */

    len = strlen(f->path);
    txt = malloc(len + 5);
    if (txt == NULL) {
        return -1;
    }

    memcpy(txt, f->path, len + 1);
    dot = strrchr(txt, '.');
    if (dot == NULL || strchr(dot, '/') != NULL) {
        dot = txt + len;
    }

    memcpy(dot, ".txt", 5);

    fp = fopen(txt, "r");
    free(txt);

    if (fp == NULL) {
        return 0;
    }

    f->ref = calloc(1, SPHINX_PROBE_HYP_LEN);
    if (f->ref == NULL) {
        fclose(fp);
        return -1;
    }

    if (fgets(f->ref, SPHINX_PROBE_HYP_LEN, fp) == NULL) {
        f->ref[0] = '\0';
    }

    fclose(fp);

    f->ref[strcspn(f->ref, "\r\n")] = '\0';

    return 0;
}


static ps_decoder_t *
sphinx_probe_decoder(sphinx_probe_conf_t *conf)
{
    cmd_ln_t      *config;
    ps_decoder_t  *ps;

    config = cmd_ln_parse_r(NULL, ps_args(), conf->argc, conf->argv, 1);
    if (config == NULL) {
        fprintf(stderr, "sphinx-probe: bad decoder settings\n");
        return NULL;
    }

    ps = ps_init(config);

    /* the decoder holds its own reference to the configuration */
    cmd_ln_free_r(config);

    if (ps == NULL) {
        fprintf(stderr, "sphinx-probe: ps_init() failed\n");
    }

    return ps;
}


static int
sphinx_probe_decode(sphinx_probe_conf_t *conf, ps_decoder_t *ps,
    sphinx_probe_file_t *f, sphinx_probe_run_t *run, int verbose)
{
    int           nfr;
    size_t        at, step, next, len, max;
    uint64_t      t0, t1, c0, c1;
    int32         score;
    const char   *hyp;
    char          last[SPHINX_PROBE_HYP_LEN];

    memset(run, 0, sizeof(sphinx_probe_run_t));

    step = conf->chunk * SPHINX_PROBE_RATE / 1000;
    max = f->n / step + 2;

    run->chunk_ns = calloc(max, sizeof(uint64_t));
    run->partial_ns = calloc(max, sizeof(uint64_t));
    if (run->chunk_ns == NULL || run->partial_ns == NULL) {
        return -1;
    }

    run->first_partial_ms = -1;
    last[0] = '\0';

    if (verbose) {
        printf("%s (%zu ms)\n", f->path, f->n * 1000 / SPHINX_PROBE_RATE);
    }

    if (ps_start_utt(ps) < 0) {
        fprintf(stderr, "sphinx-probe: ps_start_utt() failed\n");
        return -1;
    }

    next = conf->partial * SPHINX_PROBE_RATE / 1000;

    for (at = 0; at < f->n; at += len) {
        len = (f->n - at < step) ? f->n - at : step;

        c0 = sphinx_probe_ns(CLOCK_THREAD_CPUTIME_ID);
        t0 = sphinx_probe_ns(CLOCK_MONOTONIC);

        nfr = ps_process_raw(ps, f->pcm + at, len, 0, 0);
        if (nfr < 0) {
            fprintf(stderr, "sphinx-probe: ps_process_raw() failed\n");
            return -1;
        }

        t1 = sphinx_probe_ns(CLOCK_MONOTONIC);
        c1 = sphinx_probe_ns(CLOCK_THREAD_CPUTIME_ID);

        run->chunk_ns[run->chunks++] = t1 - t0;

        if (t1 - t0 > run->max_chunk_ns) {
            run->max_chunk_ns = t1 - t0;
            run->max_chunk_at = at;
            run->max_chunk_frames = nfr;
        }

        if (nfr > run->max_frames) {
            run->max_frames = nfr;
        }

        /* a call slower than the audio it was given */
        if ((t1 - t0) / 1000 > len * 1000000 / SPHINX_PROBE_RATE) {
            run->slow++;
        }

        run->feed_ns += t1 - t0;
        run->feed_cpu_ns += c1 - c0;

        if (conf->partial == 0 || at + len < next) {
            continue;
        }

        next += conf->partial * SPHINX_PROBE_RATE / 1000;

        t0 = sphinx_probe_ns(CLOCK_MONOTONIC);
        hyp = ps_get_hyp(ps, &score);
        t1 = sphinx_probe_ns(CLOCK_MONOTONIC);

        run->partial_ns[run->partials++] = t1 - t0;

        if (hyp == NULL) {
            hyp = "";
        }

        if (strcmp(hyp, last) == 0) {
            continue;
        }

        /* the string belongs to the decoder until its next call */
        snprintf(last, sizeof(last), "%s", hyp);
        run->changes++;

        if (run->first_partial_ms < 0 && last[0] != '\0') {
            run->first_partial_ms = (at + len) * 1000 / SPHINX_PROBE_RATE;
        }

        if (verbose) {
            printf("  %6zu ms  partial %6.1f us  \"%s\"\n",
                   (at + len) * 1000 / SPHINX_PROBE_RATE,
                   (t1 - t0) / 1000.0, last);
        }
    }

    t0 = sphinx_probe_ns(CLOCK_MONOTONIC);

    if (ps_end_utt(ps) < 0) {
        fprintf(stderr, "sphinx-probe: ps_end_utt() failed\n");
        return -1;
    }

    t1 = sphinx_probe_ns(CLOCK_MONOTONIC);
    hyp = ps_get_hyp(ps, &score);
    run->final_ns = sphinx_probe_ns(CLOCK_MONOTONIC) - t1;
    run->end_ns = t1 - t0;

    snprintf(run->hyp, sizeof(run->hyp), "%s", hyp ? hyp : "");

    if (verbose) {
        printf("  %6zu ms  final   end_utt %.2f ms + hyp %.2f ms  \"%s\"\n",
               f->n * 1000 / SPHINX_PROBE_RATE, run->end_ns / 1e6,
               run->final_ns / 1e6, run->hyp);
        if (f->ref) {
            printf("                    ref                           "
                   "  \"%s\"\n", f->ref);
        }
    }

    return 0;
}


static void *
sphinx_probe_worker(void *data)
{
    sphinx_probe_worker_t  *w = data;

    size_t                  k;
    uint64_t                t0, c0;
    ps_decoder_t           *ps;
    sphinx_probe_conf_t    *conf;
    mfcc_t                  cmn0[SPHINX_PROBE_CEP_LEN];
    feat_t                 *feat;

    conf = w->conf;
    w->failed = 1;

    w->runs = calloc(conf->nfiles, sizeof(sphinx_probe_run_t));
    if (w->runs == NULL) {
        return NULL;
    }

    t0 = sphinx_probe_ns(CLOCK_MONOTONIC);
    ps = sphinx_probe_decoder(conf);
    w->init_ns = sphinx_probe_ns(CLOCK_MONOTONIC) - t0;

    if (ps == NULL) {
        return NULL;
    }

    /*
     * The live cepstral mean adapts at the end of every utterance and
     * survives ps_start_stream(); keeping the initial one lets a reused
     * decoder start each file (session) as if it were new.
     */
    feat = ps_get_feat(ps);
    if (feat->cmn_struct == NULL
        || feat->cmn_struct->veclen > SPHINX_PROBE_CEP_LEN)
    {
        feat = NULL;

    } else {
        cmn_live_get(feat->cmn_struct, cmn0);
    }

    t0 = sphinx_probe_ns(CLOCK_MONOTONIC);
    c0 = sphinx_probe_ns(CLOCK_THREAD_CPUTIME_ID);

    for (k = 0; k < conf->nfiles; k++) {
        if (conf->reset_cmn && feat != NULL) {
            cmn_live_set(feat->cmn_struct, cmn0);
        }

        ps_start_stream(ps);

        if (sphinx_probe_decode(conf, ps, &conf->files[k], &w->runs[k],
                                w->verbose)
            != 0)
        {
            ps_free(ps);
            return NULL;
        }
    }

    w->wall_ns = sphinx_probe_ns(CLOCK_MONOTONIC) - t0;
    w->cpu_ns = sphinx_probe_ns(CLOCK_THREAD_CPUTIME_ID) - c0;

    ps_free(ps);

    w->failed = 0;

    return NULL;
}


static void
sphinx_probe_report(sphinx_probe_conf_t *conf, sphinx_probe_worker_t *w)
{
    int                   i, agree;
    size_t                k, j, nchunk, npart, errs, nref, e, n, nref_all,
                          slow, worst;
    double                audio;
    uint64_t             *chunk, *part, *endv, *finv, feed, feed_cpu;
    sphinx_probe_run_t   *r;
    sphinx_probe_file_t  *f;

    nchunk = 0;
    npart = 0;
    audio = 0;

    for (k = 0; k < conf->nfiles; k++) {
        nchunk += w[0].runs[k].chunks;
        npart += w[0].runs[k].partials;
        audio += (double) conf->files[k].n / SPHINX_PROBE_RATE;
    }

    chunk = calloc(nchunk + 1, sizeof(uint64_t));
    part = calloc(npart + 1, sizeof(uint64_t));
    endv = calloc(conf->nfiles, sizeof(uint64_t));
    finv = calloc(conf->nfiles, sizeof(uint64_t));
    if (chunk == NULL || part == NULL || endv == NULL || finv == NULL) {
        return;
    }

    nchunk = 0;
    npart = 0;
    feed = 0;
    feed_cpu = 0;
    errs = 0;
    nref_all = 0;
    slow = 0;
    worst = 0;

    printf("\n%-28s %5s %4s %s\n", "file", "words", "errs", "hypothesis");

    for (k = 0; k < conf->nfiles; k++) {
        r = &w[0].runs[k];
        f = &conf->files[k];

        memcpy(chunk + nchunk, r->chunk_ns, r->chunks * sizeof(uint64_t));
        nchunk += r->chunks;
        memcpy(part + npart, r->partial_ns, r->partials * sizeof(uint64_t));
        npart += r->partials;
        endv[k] = r->end_ns;
        finv[k] = r->end_ns + r->final_ns;
        feed += r->feed_ns;
        feed_cpu += r->feed_cpu_ns;
        slow += r->slow;

        if (r->max_chunk_ns > w[0].runs[worst].max_chunk_ns) {
            worst = k;
        }

        e = 0;
        nref = 0;

        if (f->ref) {
            e = sphinx_probe_distance(f->ref, r->hyp, &nref);
            errs += e;
            nref_all += nref;
        }

        printf("%-28s %5zu %4zu \"%s\"\n", f->path, nref, e, r->hyp);
    }

    agree = 1;

    for (i = 1; i < conf->threads; i++) {
        for (k = 0; k < conf->nfiles; k++) {
            if (strcmp(w[i].runs[k].hyp, w[0].runs[k].hyp) != 0) {
                agree = 0;
            }
        }
    }

    printf("\naudio                 %.2f s in %zu files\n", audio,
           conf->nfiles);
    printf("decoder               chunk %zu ms, partial every %zu ms%s\n",
           conf->chunk, conf->partial,
           conf->reset_cmn ? ", cmn reset per file" : "");
    printf("ps_init               %.1f ms\n", w[0].init_ns / 1e6);

    if (nref_all) {
        printf("WER                   %.1f %% (%zu errors / %zu words)\n",
               100.0 * errs / nref_all, errs, nref_all);
    }

    printf("feed RTF              %.3f wall, %.3f cpu (ps_process_raw)\n",
           feed / 1e9 / audio, feed_cpu / 1e9 / audio);
    printf("whole RTF             %.3f wall, %.3f cpu (all calls)\n",
           w[0].wall_ns / 1e9 / audio, w[0].cpu_ns / 1e9 / audio);

    qsort(chunk, nchunk, sizeof(uint64_t), sphinx_probe_cmp);
    printf("per chunk             median %.1f us, p95 %.1f us, p99 %.1f us,"
           " max %.1f us (%zu)\n",
           sphinx_probe_pct(chunk, nchunk, 50) / 1e3,
           sphinx_probe_pct(chunk, nchunk, 95) / 1e3,
           sphinx_probe_pct(chunk, nchunk, 99) / 1e3,
           sphinx_probe_pct(chunk, nchunk, 100) / 1e3, nchunk);
    printf("slowest chunk         %.1f ms at %zu ms of %s (%d frames);"
           " %zu calls slower than real time\n",
           w[0].runs[worst].max_chunk_ns / 1e6,
           w[0].runs[worst].max_chunk_at * 1000 / SPHINX_PROBE_RATE,
           conf->files[worst].path, w[0].runs[worst].max_chunk_frames,
           slow);

    j = 0;
    for (k = 0; k < conf->nfiles; k++) {
        if (w[0].runs[k].max_frames > (int) j) {
            j = w[0].runs[k].max_frames;
        }
    }

    printf("frames per call       at most %zu searched by one call"
           " (10 ms each)\n", j);

    if (npart) {
        qsort(part, npart, sizeof(uint64_t), sphinx_probe_cmp);
        printf("partial ps_get_hyp    median %.1f us, p95 %.1f us,"
               " max %.1f us (%zu)\n",
               sphinx_probe_pct(part, npart, 50) / 1e3,
               sphinx_probe_pct(part, npart, 95) / 1e3,
               sphinx_probe_pct(part, npart, 100) / 1e3, npart);
    }

    qsort(endv, conf->nfiles, sizeof(uint64_t), sphinx_probe_cmp);
    qsort(finv, conf->nfiles, sizeof(uint64_t), sphinx_probe_cmp);
    printf("ps_end_utt            median %.2f ms, max %.2f ms\n",
           sphinx_probe_pct(endv, conf->nfiles, 50) / 1e6,
           sphinx_probe_pct(endv, conf->nfiles, 100) / 1e6);
    printf("final (end + hyp)     median %.2f ms, max %.2f ms\n",
           sphinx_probe_pct(finv, conf->nfiles, 50) / 1e6,
           sphinx_probe_pct(finv, conf->nfiles, 100) / 1e6);

    n = 0;
    j = 0;
    e = 0;
    for (k = 0; k < conf->nfiles; k++) {
        e += w[0].runs[k].changes;

        if (w[0].runs[k].first_partial_ms >= 0) {
            /* measured from the start of the file, padding included */
            j += w[0].runs[k].first_partial_ms;
            n++;
        }
    }

    if (n) {
        printf("first partial         mean %.0f ms of audio from the start\n",
               (double) j / n);
    }

    if (npart) {
        printf("partials that changed %zu of %zu\n", e, npart);
    }

    if (conf->threads > 1) {
        for (i = 0; i < conf->threads; i++) {
            printf("thread %d              ps_init %.1f ms, wall %.2f s,"
                   " RTF %.3f wall %.3f cpu\n", i, w[i].init_ns / 1e6,
                   w[i].wall_ns / 1e9, w[i].wall_ns / 1e9 / audio,
                   w[i].cpu_ns / 1e9 / audio);
        }

        printf("threads agree         %s\n", agree ? "yes" : "NO");
    }

    free(chunk);
    free(part);
    free(endv);
    free(finv);
}


static int
sphinx_probe_smaps(long *rss, long *pss, long *priv, long *shared,
    long *anon)
{
    long   v;
    char   line[256], key[64];
    FILE  *fp;

    fp = fopen("/proc/self/smaps_rollup", "r");
    if (fp == NULL) {
        perror("/proc/self/smaps_rollup");
        return -1;
    }

    *rss = 0;
    *pss = 0;
    *priv = 0;
    *shared = 0;
    *anon = 0;

    while (fgets(line, sizeof(line), fp)) {
        if (sscanf(line, "%63s %ld", key, &v) != 2) {
            continue;
        }

        if (strcmp(key, "Rss:") == 0) {
            *rss = v;

        } else if (strcmp(key, "Pss:") == 0) {
            *pss = v;

        } else if (strcmp(key, "Private_Clean:") == 0
                   || strcmp(key, "Private_Dirty:") == 0)
        {
            *priv += v;

        } else if (strcmp(key, "Shared_Clean:") == 0
                   || strcmp(key, "Shared_Dirty:") == 0)
        {
            *shared += v;

        } else if (strcmp(key, "Anonymous:") == 0) {
            *anon = v;
        }
    }

    fclose(fp);

    return 0;
}


static void
sphinx_probe_mem_line(const char *what, int n, int dec, double ms,
    long base_priv)
{
    long              rss, pss, priv, shared, anon;
    struct mallinfo2  mi;

    if (sphinx_probe_smaps(&rss, &pss, &priv, &shared, &anon) != 0) {
        return;
    }

    /* bytes malloc has handed out and not got back */
    mi = mallinfo2();

    printf("%-8s %3d %9.1f %8ld %8ld %8ld %8ld %8ld %8.1f %9.1f\n", what, n,
           ms, rss / 1024, pss / 1024, priv / 1024, shared / 1024,
           anon / 1024, (mi.uordblks + mi.hblkhd) / 1048576.0,
           dec ? (double) (priv - base_priv) / dec / 1024 : 0.0);
}


static int
sphinx_probe_memory(sphinx_probe_conf_t *conf)
{
    int                  i, status;
    long                 rss, pss, priv, shared, anon;
    size_t               k;
    pid_t                pid;
    uint64_t             t0, t;
    ps_decoder_t       **ps;
    sphinx_probe_run_t   run;
    const char          *step;

    ps = calloc(conf->memory, sizeof(ps_decoder_t *));
    if (ps == NULL) {
        return -1;
    }

    if (sphinx_probe_smaps(&rss, &pss, &priv, &shared, &anon) != 0) {
        return -1;
    }

    printf("%-8s %3s %9s %8s %8s %8s %8s %8s %8s %9s\n", "step", "n",
           "init_ms", "rss_MiB", "pss_MiB", "priv_MiB", "shrd_MiB",
           "anon_MiB", "heap_MiB", "priv/dec");

    sphinx_probe_mem_line("start", 0, 0, 0, priv);

    for (i = 0; i < conf->memory; i++) {
        t0 = sphinx_probe_ns(CLOCK_MONOTONIC);
        ps[i] = sphinx_probe_decoder(conf);
        t = sphinx_probe_ns(CLOCK_MONOTONIC) - t0;

        if (ps[i] == NULL) {
            return -1;
        }

        sphinx_probe_mem_line("init", i + 1, i + 1, t / 1e6, priv);
    }

    step = "decoded";
    pid = -1;

    if (conf->fork) {
        fflush(stdout);

        pid = fork();
        if (pid == -1) {
            perror("fork");
            return -1;
        }

        if (pid > 0) {
            if (waitpid(pid, &status, 0) != pid
                || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            {
                fprintf(stderr, "sphinx-probe: the child failed\n");
                return -1;
            }

        } else {
            /* the child starts out sharing every page with its parent */
            if (sphinx_probe_smaps(&rss, &pss, &priv, &shared, &anon)
                != 0)
            {
                _exit(1);
            }

            step = "child";
            sphinx_probe_mem_line("forked", 0, 0, 0, priv);
        }
    }

    if (conf->nfiles && pid <= 0) {
        for (i = 0; i < conf->memory; i++) {
            t0 = sphinx_probe_ns(CLOCK_MONOTONIC);

            for (k = 0; k < conf->nfiles; k++) {
                if (sphinx_probe_decode(conf, ps[i], &conf->files[k], &run,
                                        0)
                    != 0)
                {
                    return -1;
                }

                free(run.chunk_ns);
                free(run.partial_ns);
            }

            t = sphinx_probe_ns(CLOCK_MONOTONIC) - t0;

            sphinx_probe_mem_line(step, i + 1, conf->memory, t / 1e6, priv);
        }
    }

    if (pid == 0) {
        fflush(stdout);
        _exit(0);
    }

    for (i = 0; i < conf->memory; i++) {
        ps_free(ps[i]);
    }

    sphinx_probe_mem_line("freed", 0, 0, 0, priv);

    /* what stays after ps_free() is the heap malloc keeps, not a leak */
    malloc_trim(0);
    sphinx_probe_mem_line("trimmed", 0, 0, 0, priv);

    free(ps);

    return 0;
}


static size_t
sphinx_probe_words(char *s, char **words, size_t max)
{
    size_t  n;
    char   *p, *q;

    /* lower case, letters, digits and apostrophes; the rest separates */

    for (p = s; *p; p++) {
        if (*p >= 'A' && *p <= 'Z') {
            *p = (char) (*p - 'A' + 'a');

        } else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
                     || *p == '\''))
        {
            *p = ' ';
        }
    }

    n = 0;
    p = s;

    while (n < max) {
        while (*p == ' ') {
            p++;
        }

        if (*p == '\0') {
            break;
        }

        q = p;
        while (*q && *q != ' ') {
            q++;
        }

        words[n++] = p;

        if (*q == '\0') {
            break;
        }

        *q = '\0';
        p = q + 1;
    }

    return n;
}


static size_t
sphinx_probe_distance(const char *ref, const char *hyp, size_t *nref)
{
    size_t   nr, nh, i, j, *prev, *cur, *tmp, d, sub;
    char     rbuf[SPHINX_PROBE_HYP_LEN], hbuf[SPHINX_PROBE_HYP_LEN];
    char    *rw[128], *hw[128];

    /* word-level Levenshtein distance: substitutions + deletions + ins. */

    snprintf(rbuf, sizeof(rbuf), "%s", ref);
    snprintf(hbuf, sizeof(hbuf), "%s", hyp);

    nr = sphinx_probe_words(rbuf, rw, 128);
    nh = sphinx_probe_words(hbuf, hw, 128);

    *nref = nr;

    prev = calloc(nh + 1, sizeof(size_t));
    cur = calloc(nh + 1, sizeof(size_t));
    if (prev == NULL || cur == NULL) {
        return nr;
    }

    for (j = 0; j <= nh; j++) {
        prev[j] = j;
    }

    for (i = 1; i <= nr; i++) {
        cur[0] = i;

        for (j = 1; j <= nh; j++) {
            sub = prev[j - 1] + (strcmp(rw[i - 1], hw[j - 1]) != 0);
            d = prev[j] + 1;

            if (cur[j - 1] + 1 < d) {
                d = cur[j - 1] + 1;
            }

            cur[j] = (sub < d) ? sub : d;
        }

        tmp = prev;
        prev = cur;
        cur = tmp;
    }

    d = prev[nh];

    free(prev);
    free(cur);

    return d;
}


static int
sphinx_probe_cmp(const void *a, const void *b)
{
    uint64_t  x = *(const uint64_t *) a;
    uint64_t  y = *(const uint64_t *) b;

    return (x > y) - (x < y);
}


static uint64_t
sphinx_probe_pct(uint64_t *v, size_t n, unsigned pct)
{
    size_t  i;

    if (n == 0) {
        return 0;
    }

    i = (n - 1) * pct / 100;

    return v[i];
}
