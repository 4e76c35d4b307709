/*
 * Audio worklet processors of the voice web client.
 *
 *   voice-capture   microphone at the context rate -> PCM16 16 kHz,
 *                   posted to the page in 20 ms frames (320 samples)
 *   voice-playback  the assistant's PCM16 at the session's output rate ->
 *                   the context rate, through a small jitter buffer
 *
 * Both convert rates with the same streaming windowed-sinc resampler, so
 * nothing is dropped or duplicated and there are no seams between blocks.
 */

class Resampler {
    constructor(inRate, outRate) {
        const zeros = 8;          /* zero crossings of the sinc per side */
        const res = 64;           /* table entries per input sample */
        /* cutoff in cycles per input sample, a little under the lower
         * Nyquist so the transition band stays below it */
        const fc = 0.5 * Math.min(1, outRate / inRate) * 0.92;

        this.step = inRate / outRate;
        this.half = Math.ceil(zeros / (2 * fc));
        this.res = res;
        this.table = new Float32Array(this.half * res + 2);

        for (let i = 0; i < this.table.length; i++) {
            const d = i / res;
            const x = 2 * fc * d;
            const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
            const w = d >= this.half ? 0
                : 0.42 + 0.5 * Math.cos(Math.PI * d / this.half)
                  + 0.08 * Math.cos(2 * Math.PI * d / this.half);
            this.table[i] = 2 * fc * sinc * w;
        }
        this.reset();
    }

    reset() {
        /* half a kernel of silence before the first sample */
        this.buf = new Float32Array(4096);
        this.len = this.half;
        this.t = this.half;
    }

    /* Feeds input samples; returns the output samples now computable. */
    push(input) {
        const out = [];
        const half = this.half, res = this.res, table = this.table;
        const last = this.table.length - 1;

        if (this.len + input.length > this.buf.length) {
            const bigger = new Float32Array(
                Math.max(this.buf.length * 2, this.len + input.length));
            bigger.set(this.buf.subarray(0, this.len));
            this.buf = bigger;
        }
        this.buf.set(input, this.len);
        this.len += input.length;

        const x = this.buf;
        for (;;) {
            const i0 = Math.floor(this.t);
            if (i0 + half >= this.len) {
                break;
            }
            const frac = this.t - i0;
            let acc = 0;
            for (let k = 1 - half; k <= half; k++) {
                const d = Math.abs(frac - k) * res;
                const i = d | 0;
                if (i < last) {
                    acc += x[i0 + k]
                           * (table[i] + (table[i + 1] - table[i]) * (d - i));
                }
            }
            out.push(acc);
            this.t += this.step;
        }

        /* keep only what the next outputs still need */
        const keep = Math.floor(this.t) - half + 1;
        if (keep > 0) {
            x.copyWithin(0, keep, this.len);
            this.len -= keep;
            this.t -= keep;
        }
        return out;
    }
}

const FRAME = 320;                /* 20 ms at 16 kHz */

class CaptureProcessor extends AudioWorkletProcessor {
    constructor() {
        super();
        this.rs = new Resampler(sampleRate, 16000);
        this.frame = new Int16Array(FRAME);
        this.fill = 0;
    }

    process(inputs) {
        const ch = inputs[0] && inputs[0][0];
        if (!ch) {
            return true;
        }
        for (const v of this.rs.push(ch)) {
            const s = Math.max(-1, Math.min(1, v));
            this.frame[this.fill++] = s < 0 ? s * 32768 : s * 32767;
            if (this.fill === FRAME) {
                const buf = this.frame.buffer;
                this.port.postMessage(buf, [buf]);
                this.frame = new Int16Array(FRAME);
                this.fill = 0;
            }
        }
        return true;
    }
}

class PlaybackProcessor extends AudioWorkletProcessor {
    constructor(options) {
        super();
        const o = options.processorOptions || {};
        this.target = Math.round(sampleRate * (o.targetMs || 80) / 1000);
        this.setRate(o.rate || 24000);
        this.clear();
        this.played = 0;
        this.underruns = 0;
        this.blocks = 0;
        this.port.onmessage = (e) => this.onMessage(e.data);
    }

    setRate(rate) {
        this.rs = new Resampler(rate, sampleRate);
    }

    clear() {
        this.queue = [];
        this.head = 0;            /* read position in queue[0] */
        this.queued = 0;
        this.playing = false;     /* false: filling the jitter buffer */
        this.ending = false;      /* the reply's last audio is in */
        if (this.rs) {
            this.rs.reset();
        }
    }

    onMessage(m) {
        if (m instanceof ArrayBuffer) {
            const pcm = new Int16Array(m);
            const f = new Float32Array(pcm.length);
            for (let i = 0; i < pcm.length; i++) {
                f[i] = pcm[i] / 32768;
            }
            const out = this.rs.push(f);
            if (out.length) {
                this.queue.push(Float32Array.from(out));
                this.queued += out.length;
            }
        } else if (m.type === 'clear') {
            this.clear();
            this.report();
        } else if (m.type === 'end') {
            this.ending = true;
        } else if (m.type === 'rate') {
            this.setRate(m.rate);
            this.clear();
        }
    }

    report() {
        this.port.postMessage({
            played: this.played,
            underruns: this.underruns,
            queuedMs: Math.round(this.queued * 1000 / sampleRate),
            rate: sampleRate
        });
    }

    process(inputs, outputs) {
        const out = outputs[0][0];
        let n = 0;

        if (!this.playing && this.queued > 0
            && (this.queued >= this.target || this.ending))
        {
            this.playing = true;
        }

        while (this.playing && n < out.length && this.queued > 0) {
            const chunk = this.queue[0];
            const take = Math.min(out.length - n, chunk.length - this.head);
            out.set(chunk.subarray(this.head, this.head + take), n);
            n += take;
            this.head += take;
            this.queued -= take;
            this.played += take;
            if (this.head === chunk.length) {
                this.queue.shift();
                this.head = 0;
            }
        }

        if (this.playing && this.queued === 0) {
            /* ran dry: refill the jitter buffer before going on, unless
             * this was simply the end of the reply */
            if (!this.ending) {
                this.underruns++;
            }
            this.playing = false;
            this.ending = false;
            this.report();
        }
        /* the rest of the block stays silent */

        if (++this.blocks % 16 === 0) {
            this.report();
        }
        return true;
    }
}

registerProcessor('voice-capture', CaptureProcessor);
registerProcessor('voice-playback', PlaybackProcessor);
