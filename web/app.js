/*
 * The voice web client: one WebSocket to /voice (subprotocol voice.v1),
 * the microphone as PCM16 16 kHz in 20 ms frames, the assistant's PCM16
 * played through a jitter buffer, and the session's events on the page.
 *
 * Page options (query string):
 *   turns=N   stop the microphone after N final transcripts
 *   rate=R    output rate asked for, 24000 (default) or 16000
 *   mic=0     no microphone: typed messages only
 */

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const OUTPUT_RATE = params.get('rate') === '16000' ? 16000 : 24000;
const MAX_TURNS = Number(params.get('turns')) || 0;
const USE_MIC = params.get('mic') !== '0';
const LOUD = 1000;                /* |sample| counted as not silent */

/* Figures for whoever watches the page (the end-to-end test does). */
const stats = window.voiceStats = {
    state: 'disconnected', states: [], sessionId: null,
    partials: 0, finals: [], replies: [], interrupted: 0,
    audioFrames: 0, audioSamples: 0, loudSamples: 0, peak: 0,
    playedMs: 0, underruns: 0, micFrames: 0, micStopped: false,
    metrics: {}, errors: [], closes: []
};

let ctx = null;                   /* AudioContext, made on first connect */
let player = null;                /* playback worklet node */
let mic = null;                   /* { stream, source, node } */
let ws = null;
let muted = false;
let assistantLine = null;         /* <p> of the reply being written */

function setState(s) {
    stats.state = s;
    stats.states.push(s);
    $('state').textContent = s;
    $('state').className = 'state ' + s;
}

function status(text) {
    $('status').textContent = text;
}

function showError(text) {
    stats.errors.push(text);
    const e = $('error');
    e.hidden = false;
    e.textContent = e.textContent ? e.textContent + '\n' + text : text;
}

function say(cls, text) {
    const p = document.createElement('p');
    p.className = cls;
    p.textContent = text;
    $('log').append(p);
    $('log').scrollTop = $('log').scrollHeight;
    return p;
}

function controls(connected) {
    $('connect').disabled = connected;
    $('disconnect').disabled = !connected;
    $('text').disabled = !connected;
    $('send').disabled = !connected;
    $('mute').disabled = !connected || !mic;
}

function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify(obj));
    }
}

/* ---- audio ---------------------------------------------------------- */

async function audioSetup() {
    if (!ctx) {
        ctx = new AudioContext({ latencyHint: 'interactive' });
        await ctx.audioWorklet.addModule('worklet.js');
    }
    await ctx.resume();
    if (!player) {
        player = new AudioWorkletNode(ctx, 'voice-playback', {
            numberOfInputs: 0,
            outputChannelCount: [1],
            processorOptions: { rate: OUTPUT_RATE, targetMs: 80 }
        });
        player.port.onmessage = (e) => {
            stats.playedMs = Math.round(e.data.played * 1000 / e.data.rate);
            stats.underruns = e.data.underruns;
        };
        player.connect(ctx.destination);
    }
}

function stopPlayback() {
    if (player) {
        player.port.postMessage({ type: 'clear' });
    }
}

function playAudio(buf) {
    const pcm = new Int16Array(buf);
    stats.audioFrames++;
    stats.audioSamples += pcm.length;
    for (let i = 0; i < pcm.length; i++) {
        const a = Math.abs(pcm[i]);
        if (a >= LOUD) {
            stats.loudSamples++;
        }
        if (a > stats.peak) {
            stats.peak = a;
        }
    }
    if (player) {
        player.port.postMessage(buf, [buf]);
    }
}

async function startMic() {
    let stream;
    try {
        stream = await navigator.mediaDevices.getUserMedia({
            audio: {
                channelCount: 1,
                echoCancellation: true,
                noiseSuppression: true,
                autoGainControl: true
            }
        });
    } catch (err) {
        showError('microphone: ' + err.name + ': ' + err.message
                  + ' (typed messages still work)');
        return;
    }
    if (!ws || ws.readyState !== WebSocket.OPEN) {
        stream.getTracks().forEach((t) => t.stop());
        return;
    }
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, 'voice-capture', {
        numberOfOutputs: 1,
        outputChannelCount: [1]
    });
    node.port.onmessage = (e) => {
        if (ws && ws.readyState === WebSocket.OPEN) {
            ws.send(e.data);
            stats.micFrames++;
        }
    };
    source.connect(node);
    /* the node writes nothing; the connection keeps it processing */
    node.connect(ctx.destination);
    mic = { stream, source, node };
    stats.micStopped = false;
    controls(true);
    status('Connected. Speak, or type below.');
}

function stopMic() {
    if (!mic) {
        return;
    }
    mic.source.disconnect();
    mic.node.disconnect();
    mic.node.port.onmessage = null;
    mic.stream.getTracks().forEach((t) => t.stop());
    mic = null;
    stats.micStopped = true;
    $('mute').disabled = true;
}

/* ---- the session ---------------------------------------------------- */

const handlers = {
    'session.started'(m) {
        stats.sessionId = m.session_id;
        const out = m.audio && m.audio.output;
        if (out && out.sample_rate && out.sample_rate !== OUTPUT_RATE) {
            player.port.postMessage({ type: 'rate', rate: out.sample_rate });
        }
        if (USE_MIC) {
            status('Session ' + m.session_id
                   + '; starting the microphone...');
            startMic();
        } else {
            status('Session ' + m.session_id + '; type below.');
        }
    },

    state(m) {
        setState(m.state);
    },

    'speech.started'() {
        /* don't wait for the server to say the reply was cut */
        if (stats.state === 'speaking') {
            stopPlayback();
        }
    },

    'speech.ended'() {},

    'transcript.partial'(m) {
        stats.partials++;
        $('partial').textContent = m.text;
    },

    'transcript.final'(m) {
        stats.finals.push(m.text);
        $('partial').textContent = '';
        say('user', m.text);
        if (MAX_TURNS && stats.finals.length >= MAX_TURNS) {
            stopMic();
            status('Microphone stopped after ' + MAX_TURNS + ' turn(s).');
        }
    },

    'response.text.delta'(m) {
        if (!assistantLine) {
            assistantLine = say('assistant', '');
        }
        assistantLine.textContent += m.delta;
    },

    'response.text.done'(m) {
        stats.replies.push(m.text);
        if (!assistantLine) {
            assistantLine = say('assistant', '');
        }
        assistantLine.textContent = m.text;
        assistantLine = null;
    },

    'response.audio.done'() {
        if (player) {
            player.port.postMessage({ type: 'end' });
        }
    },

    'response.interrupted'(m) {
        stats.interrupted++;
        stopPlayback();
        if (assistantLine) {
            assistantLine.textContent = m.spoken_text || '';
            assistantLine.classList.add('cut');
            assistantLine = null;
        }
    },

    metrics(m) {
        stats.metrics[m.turn] = m;
        const cols = ['stt_final_ms', 'llm_first_token_ms',
                      'tts_first_audio_ms', 'voice_to_voice_ms'];
        const tr = document.createElement('tr');
        tr.id = 'metrics-' + m.turn;
        for (const v of [m.turn, ...cols.map((c) => m[c])]) {
            const td = document.createElement('td');
            td.textContent = v === undefined ? '-' : String(v);
            tr.append(td);
        }
        const old = document.getElementById(tr.id);
        if (old) {
            old.replaceWith(tr);
        } else {
            $('metrics').tBodies[0].append(tr);
        }
    },

    info(m) {
        status(m.code + ': ' + m.message);
    },

    error(m) {
        showError('error ' + m.code + ': ' + m.message
                  + (m.recoverable ? ' (the session goes on)' : ''));
    }
};

function onMessage(e) {
    if (e.data instanceof ArrayBuffer) {
        playAudio(e.data);
        return;
    }
    let m;
    try {
        m = JSON.parse(e.data);
    } catch (err) {
        showError('bad message from the server: ' + e.data);
        return;
    }
    const h = handlers[m.type];
    if (h) {
        h(m);
    }
}

async function connect() {
    $('connect').disabled = true;
    $('error').hidden = true;
    $('error').textContent = '';
    if (!window.isSecureContext) {
        /* AudioWorklet and getUserMedia exist only in secure contexts */
        showError('this page needs https:// (or http://localhost) for '
                  + 'audio');
        $('connect').disabled = false;
        return;
    }
    try {
        await audioSetup();
    } catch (err) {
        showError('audio: ' + err.name + ': ' + err.message);
        $('connect').disabled = false;
        return;
    }

    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://')
                + location.host + '/voice';
    status('Connecting to ' + url + '...');
    ws = new WebSocket(url, 'voice.v1');
    ws.binaryType = 'arraybuffer';

    ws.onopen = () => {
        controls(true);
        send({
            type: 'session.start',
            audio: {
                input: { encoding: 'pcm_s16le', sample_rate: 16000,
                         channels: 1 },
                output: { encoding: 'pcm_s16le', sample_rate: OUTPUT_RATE }
            }
        });
    };
    ws.onmessage = onMessage;
    ws.onclose = (e) => {
        stats.closes.push(e.code);
        stopMic();
        stopPlayback();
        ws = null;
        muted = false;
        $('mute').textContent = 'Mute';
        controls(false);
        setState('disconnected');
        const text = 'Closed: ' + e.code + (e.reason ? ' ' + e.reason : '');
        if (e.code === 1000) {
            status(text + '.');
        } else {
            showError(text + (e.code === 1006
                              ? ' (no close frame: refused or unreachable)'
                              : ''));
            status('Not connected.');
        }
    };
}

function disconnect() {
    if (!ws) {
        return;
    }
    stopMic();
    stopPlayback();
    if (ws.readyState === WebSocket.OPEN) {
        /* the server answers with state closed and close 1000 */
        send({ type: 'session.end' });
    } else {
        ws.close();
    }
}

$('connect').onclick = connect;
$('disconnect').onclick = disconnect;

$('mute').onclick = () => {
    muted = !muted;
    send({ type: muted ? 'input.mute' : 'input.unmute' });
    $('mute').textContent = muted ? 'Unmute' : 'Mute';
    if (mic) {
        /* the server drops it anyway; stopping it here saves the uplink */
        mic.stream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
    }
};

$('text-form').onsubmit = (e) => {
    e.preventDefault();
    const text = $('text').value.trim();
    if (!text) {
        return;
    }
    send({ type: 'text.input', text });
    say('user', text);
    $('text').value = '';
};
