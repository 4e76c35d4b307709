/*
 * End-to-end test of the web client: nginx with the module serves web/
 * and the voice agent on a free port; headless Chromium opens the page
 * with a spoken WAV as its microphone and with typed text.
 *
 *   node run.mjs          (from t/e2e, after npm ci)
 *
 * Environment: VOICE_E2E_NGINX (/usr/sbin/nginx), VOICE_E2E_CHROMIUM
 * (/usr/bin/chromium), VOICE_E2E_MODULE (build/ngx_http_voice_module.so),
 * VOICE_E2E_CONF (conf/nginx.conf).
 */

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)),
                          '..', '..');
const NGINX = process.env.VOICE_E2E_NGINX || '/usr/sbin/nginx';
const CHROMIUM = process.env.VOICE_E2E_CHROMIUM || '/usr/bin/chromium';
const MODULE = process.env.VOICE_E2E_MODULE
               || path.join(ROOT, 'build', 'ngx_http_voice_module.so');
const CONF = process.env.VOICE_E2E_CONF
             || path.join(ROOT, 'conf', 'nginx.conf');
const OUT = path.join(ROOT, 'build', 'e2e');
const SENTENCE = 'What is the weather like in Paris today';
const CONTENT_WORDS = ['weather', 'like', 'paris', 'today'];
const WAIT = 60000;               /* ms, for any one awaited event */

let passed = 0;
let failed = 0;

function check(name, ok, detail) {
    console.log((ok ? 'ok     ' : 'not ok ') + name
                + (detail ? ': ' + detail : ''));
    if (ok) {
        passed++;
    } else {
        failed++;
    }
    return ok;
}

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

/* Resolves once the port accepts a connection; nginx exiting first or
 * the deadline passing rejects. */
function listening(port, proc, ms) {
    const end = Date.now() + ms;
    return new Promise((resolve, reject) => {
        let exited = false;
        proc.once('exit', (code) => {
            exited = true;
            reject(new Error('nginx exited with ' + code));
        });
        const attempt = () => {
            if (exited) {
                return;
            }
            const s = net.connect(port, '127.0.0.1');
            s.once('connect', () => { s.destroy(); resolve(); });
            s.once('error', () => {
                s.destroy();
                if (Date.now() > end) {
                    reject(new Error('nginx does not listen on ' + port));
                } else {
                    setTimeout(attempt, 50);
                }
            });
        };
        attempt();
    });
}

function makeWav() {
    const raw = path.join(OUT, 'speech-espeak.wav');
    const wav = path.join(OUT, 'speech.wav');
    /* the voice the embedded recogniser hears best (t/stt uses it too) */
    execFileSync('espeak-ng', ['-v', 'en-us+klatt', '-s', '175',
                               '-w', raw, SENTENCE]);
    /* Chromium's fake capture wants 16-bit mono PCM; the file loops, so
     * silence on both sides separates the repeats into turns */
    execFileSync('sox', [raw, '-r', '48000', '-c', '1', '-b', '16',
                         '-e', 'signed-integer', wav, 'pad', '0.5', '5']);
    return wav;
}

async function startNginx(port) {
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'voice-e2e-'));
    fs.mkdirSync(path.join(prefix, 'logs'));
    fs.mkdirSync(path.join(prefix, 'tmp'));
    const conf = fs.readFileSync(CONF, 'utf8')
        .replaceAll('@MODULE@', MODULE)
        .replaceAll('@ROOT@', ROOT)
        .replaceAll('127.0.0.1:8080', '127.0.0.1:' + port);
    const confPath = path.join(prefix, 'nginx.conf');
    fs.writeFileSync(confPath, conf);
    const proc = spawn(NGINX, ['-p', prefix + '/', '-c', confPath,
                               '-g', 'daemon off; master_process on;'],
                       { stdio: ['ignore', 'inherit', 'inherit'] });
    await listening(port, proc, 10000);
    return { proc, prefix };
}

function stopNginx(ngx) {
    return new Promise((resolve) => {
        if (ngx.proc.exitCode !== null) {
            resolve();
            return;
        }
        ngx.proc.once('exit', () => resolve());
        ngx.proc.kill('SIGQUIT');
    });
}

/* Waits for a condition on window.voiceStats; returns false on timeout. */
async function until(page, fn, arg) {
    try {
        await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 100 });
        return true;
    } catch (e) {
        return false;
    }
}

/* Opens the page; false when its script did not run (a module script
 * served with a type other than JavaScript is refused, for one). */
async function open(browser, url) {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.log('# page error: ' + e.message));
    page.on('console', (m) => {
        if (m.type() === 'error') {
            console.log('# console: ' + m.text());
        }
    });
    const res = await page.goto(url);
    const ok = await page.evaluate(() => typeof window.voiceStats === 'object');
    check('the page and its script load', ok,
          'content-type of app.js: ' + (await (await page.request.get(
              new URL('app.js', url).href)).headers()['content-type']));
    if (!ok || !res.ok()) {
        await page.close();
        return null;
    }
    return page;
}

/* speaking, then listening later, among the states seen */
function spokeThenListened(states) {
    const i = states.indexOf('speaking');
    return i >= 0 && states.indexOf('listening', i) > i;
}

async function spokenTurn(browser, base) {
    console.log('# spoken turn: "' + SENTENCE + '"');
    const page = await open(browser, base + '/?turns=1');
    if (!page) {
        return;
    }
    await page.click('#connect');

    const heard = await until(page, () => window.voiceStats.finals.length > 0);
    check('a transcript.final arrives', heard);
    if (!heard) {
        const s = await page.evaluate(() => window.voiceStats);
        console.log('# stats: ' + JSON.stringify(s));
        await page.close();
        return;
    }
    const finalText = await page.evaluate(() => window.voiceStats.finals[0]);
    const words = finalText.toLowerCase().match(/[a-z']+/g) || [];
    const found = CONTENT_WORDS.filter((w) => words.includes(w));
    check('the final has >= 2 of ' + CONTENT_WORDS.join(','),
          found.length >= 2,
          '"' + finalText + '" (found: ' + found.join(', ') + ')');
    const shown = await page.textContent('#log');
    check('the final is shown on the page', shown.includes(finalText));

    const replied = await until(page,
        () => window.voiceStats.replies.length > 0
              && window.voiceStats.states.includes('speaking')
              && window.voiceStats.state === 'listening');
    check('the reply is spoken and the state returns to listening', replied);

    const s = await page.evaluate(() => window.voiceStats);
    const turn = Object.keys(s.metrics)[0];
    const m = s.metrics[turn] || {};
    const loud = s.audioSamples ? s.loudSamples / s.audioSamples : 0;
    check('assistant audio received and not silent',
          s.audioSamples > 0 && s.loudSamples >= 2400,
          s.audioFrames + ' frames, ' + Math.round(s.audioSamples / 24)
          + ' ms, ' + (100 * loud).toFixed(1) + '% above ' + 1000
          + ', peak ' + s.peak);
    check('the audio went through the playback worklet', s.playedMs > 0,
          s.playedMs + ' ms played, ' + s.underruns + ' underruns');

    const row = await page.$$eval('#metrics tbody tr',
        (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
    const numeric = (v) => /^\d+(\.\d+)?$/.test(v);
    check('metrics are shown for the turn',
          row.length >= 1 && numeric(row[0][1]) && numeric(row[0][4]),
          'turn ' + turn + ': stt_final_ms ' + m.stt_final_ms
          + ', llm_first_token_ms ' + m.llm_first_token_ms
          + ', tts_first_audio_ms ' + m.tts_first_audio_ms
          + ', voice_to_voice_ms ' + m.voice_to_voice_ms);
    check('the microphone stopped after the turn',
          s.micStopped && s.finals.length === 1,
          s.micFrames + ' frames sent (' + (s.micFrames * 20) + ' ms)');
    console.log('# reply: "' + s.replies[0] + '"');
    console.log('# states: ' + s.states.join(' '));
    if (s.errors.length) {
        console.log('# errors on the page: ' + s.errors.join('; '));
    }

    await page.screenshot({ path: path.join(OUT, 'screenshot.png'),
                            fullPage: true });
    console.log('# screenshot: ' + path.join(OUT, 'screenshot.png'));
    await page.close();
}

async function typedTurn(browser, base) {
    console.log('# typed turn');
    const page = await open(browser, base + '/?mic=0');
    if (!page) {
        return;
    }
    await page.click('#connect');
    const ready = await until(page,
        () => window.voiceStats.state === 'listening');
    check('the session starts listening', ready);
    if (!ready) {
        await page.close();
        return;
    }
    await page.fill('#text', 'Tell me about the weather in Paris');
    await page.click('#send');

    const done = await until(page,
        (f) => new Function('s', 'return (' + f + ')(s)')(
                   window.voiceStats.states),
        spokeThenListened.toString());
    const s = await page.evaluate(() => window.voiceStats);
    check('state goes speaking -> listening', done, s.states.join(' '));
    check('the typed turn gets a spoken reply',
          s.replies.length === 1 && s.loudSamples >= 2400,
          '"' + (s.replies[0] || '') + '", '
          + Math.round(s.audioSamples / 24) + ' ms of audio');
    check('metrics are shown for the typed turn',
          Object.keys(s.metrics).length === 1,
          JSON.stringify(Object.values(s.metrics)[0] || {}));

    await page.click('#disconnect');
    const closed = await until(page,
        () => window.voiceStats.closes.length > 0);
    const code = await page.evaluate(() => window.voiceStats.closes[0]);
    check('disconnect ends the session with 1000', closed && code === 1000,
          'close ' + code);
    await page.close();
}

async function main() {
    fs.mkdirSync(OUT, { recursive: true });
    const wav = makeWav();
    const port = await freePort();
    const ngx = await startNginx(port);
    const base = 'http://127.0.0.1:' + port;
    let browser = null;

    try {
        browser = await chromium.launch({
            executablePath: CHROMIUM,
            headless: true,
            args: [
                '--no-sandbox',
                '--use-fake-ui-for-media-stream',
                '--use-fake-device-for-media-stream',
                '--use-file-for-fake-audio-capture=' + wav,
                '--autoplay-policy=no-user-gesture-required'
            ]
        });
        await spokenTurn(browser, base);
        await typedTurn(browser, base);
    } catch (e) {
        check('the run completes', false, e.stack || String(e));
    } finally {
        if (browser) {
            await browser.close();
        }
        await stopNginx(ngx);
    }

    const log = fs.readFileSync(path.join(ngx.prefix, 'logs', 'error.log'),
                                'utf8');
    const alerts = log.split('\n').filter((l) => /\[(alert|emerg)\]/.test(l));
    check('no [alert] in the error log', alerts.length === 0,
          alerts.slice(0, 3).join(' | '));
    if (failed === 0) {
        fs.rmSync(ngx.prefix, { recursive: true, force: true });
    } else {
        console.log('# nginx prefix kept: ' + ngx.prefix);
    }

    console.log('e2e: ' + passed + ' passed, ' + failed + ' failed');
    process.exit(failed ? 1 : 0);
}

main().catch((e) => {
    console.error(e);
    console.log('e2e: ' + passed + ' passed, ' + (failed + 1) + ' failed');
    process.exit(1);
});
