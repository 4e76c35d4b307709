"""Phone gateway clients for the integration tests: Twilio Media Streams
and the Vonage WebSocket, each speaking as the real gateway does."""

import asyncio
import base64
import binascii
import json

import audiotest as at
import voicetest as vt

MARK_EVERY = 10


class TwilioCall:
    """One call's media stream, as Twilio would drive it."""

    def __init__(self, ws, tag):
        self.ws = ws
        self.stream_sid = "MZ%030x" % (0x5eed0000 + tag)
        self.call_sid = "CA%030x" % (0xca110000 + tag)
        self.account_sid = "AC%030x" % 0xacc0
        self.seq = 0
        self.chunk = 0
        self.received = []      # every message as it came
        self.problems = []      # anything Twilio would not understand
        self.media = []         # decoded payloads, in order
        self.marks = []         # (name, media frames before it)
        self.acked = []
        self.played_until = 0.0
        self.acks = []
        self.reading = None

    def next_seq(self):
        self.seq += 1
        return str(self.seq)

    async def send(self, message):
        await self.ws.send(json.dumps(message))

    async def connected(self):
        await self.send({"event": "connected", "protocol": "Call",
                         "version": "1.0.0"})

    async def start(self, rate=8000, channels=1,
                    encoding="audio/x-mulaw"):
        await self.send({
            "event": "start",
            "sequenceNumber": self.next_seq(),
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": encoding, "sampleRate": rate,
                                "channels": channels},
                "customParameters": {"caller": "integration"},
            },
            "streamSid": self.stream_sid,
        })

    def media_message(self, payload):
        self.chunk += 1
        return json.dumps({
            "event": "media",
            "sequenceNumber": self.next_seq(),
            "media": {"track": "inbound", "chunk": str(self.chunk),
                      "timestamp": str((self.chunk - 1) * at.FRAME_MS),
                      "payload": base64.b64encode(payload).decode()},
            "streamSid": self.stream_sid,
        })

    async def dtmf(self, digit):
        await self.send({"event": "dtmf", "streamSid": self.stream_sid,
                         "sequenceNumber": self.next_seq(),
                         "dtmf": {"track": "inbound_track", "digit": digit}})

    async def stop(self):
        await self.send({"event": "stop", "sequenceNumber": self.next_seq(),
                         "streamSid": self.stream_sid,
                         "stop": {"accountSid": self.account_sid,
                                  "callSid": self.call_sid}})

    def listen(self):
        self.reading = asyncio.ensure_future(self._read())

    async def _read(self):
        loop = asyncio.get_running_loop()
        try:
            while True:
                msg = await self.ws.recv()
                self.received.append(msg)
                self._take(msg, loop)
        except vt.ConnectionClosed:
            pass

    def _take(self, msg, loop):
        if not isinstance(msg, str):
            self.problems.append("binary frame of %d bytes" % len(msg))
            return
        try:
            event = json.loads(msg)
        except ValueError:
            self.problems.append("not JSON: %r" % msg[:80])
            return
        kind = event.get("event")
        if event.get("streamSid") != self.stream_sid:
            self.problems.append("streamSid of %r" % msg[:120])
        if kind == "media":
            if set(event) != {"event", "streamSid", "media"} \
                    or set(event["media"]) != {"payload"}:
                self.problems.append("media shape %r" % msg[:120])
                return
            try:
                payload = base64.b64decode(event["media"]["payload"],
                                           validate=True)
            except (binascii.Error, TypeError):
                self.problems.append("payload is not base64")
                return
            if len(payload) != 160:
                self.problems.append("payload of %d bytes" % len(payload))
            self.media.append(payload)
            # Twilio plays each 20 ms chunk after the ones before it.
            self.played_until = max(self.played_until, loop.time()) \
                + at.FRAME_MS / 1000.0
        elif kind == "mark":
            if set(event) != {"event", "streamSid", "mark"} \
                    or set(event["mark"]) != {"name"}:
                self.problems.append("mark shape %r" % msg[:120])
                return
            name = event["mark"]["name"]
            self.marks.append((name, len(self.media)))
            # Answered once the audio before it has played, as Twilio does.
            loop.call_at(self.played_until, self._ack, name)
        else:
            self.problems.append("unexpected message %r" % msg[:120])

    def _ack(self, name):
        if self.ws.closed:
            return
        self.acked.append(name)
        self.acks.append(asyncio.ensure_future(self.send(
            {"event": "mark", "sequenceNumber": self.next_seq(),
             "streamSid": self.stream_sid, "mark": {"name": name}})))

    async def finish(self):
        """After stop: everything up to the close.  Returns the code."""
        await asyncio.wait_for(self.reading, vt.WAIT)
        await asyncio.wait_for(self.ws.wait_closed(), vt.WAIT)
        await asyncio.gather(*self.acks, return_exceptions=True)
        return self.ws.close_rcvd.code if self.ws.close_rcvd else None

    def check_marks(self):
        """Marks are 1, 2, 3... each after ten more media frames."""
        problems = []
        for i, (name, before) in enumerate(self.marks):
            if name != str(i + 1):
                problems.append("mark %d is named %r" % (i, name))
            if before != MARK_EVERY * (i + 1):
                problems.append("mark %r came after %d media frames"
                                % (name, before))
        if len(self.marks) != len(self.media) // MARK_EVERY:
            problems.append("%d marks for %d media frames"
                            % (len(self.marks), len(self.media)))
        return problems


async def open_call(tag, path="/twilio"):
    ws = await vt.connect(path, subprotocols=None)
    call = TwilioCall(ws, tag)
    call.listen()
    await call.connected()
    return call


# ---- Vonage -------------------------------------------------------------

def vonage_connected(rate, **headers):
    message = {"event": "websocket:connected",
               "content-type": "audio/l16;rate=%d" % rate}
    message.update(headers)
    return json.dumps(message)


async def vonage_call(rate, freq, short=0, seconds=1.0, tail=0.2,
                      tag="call"):
    """Connect as Vonage does, stream a tone then `tail` s of silence
    (with a DTMF event and an unknown event half way), read until all but
    `short` frames are back, and hang up with a close frame.  Returns
    (frames sent, frames received, text messages, close code)."""
    ws = await vt.connect("/vonage", subprotocols=None)
    await ws.send(vonage_connected(rate, **{"X-Call-Id": tag,
                                            "caller": "447700900000"}))
    audio = at.tone(freq, rate, seconds)
    audio.extend(at.silence(rate, tail))
    frames = at.frames_of("pcm%dk" % (rate // 1000), audio)
    got = []
    texts = []
    enough = asyncio.Event()

    async def reader():
        try:
            while True:
                msg = await ws.recv()
                if isinstance(msg, str):
                    texts.append(msg)
                    continue
                got.append(msg)
                if len(got) >= len(frames) - short:
                    enough.set()
        except vt.ConnectionClosed:
            enough.set()

    reading = asyncio.ensure_future(reader())
    try:
        half = len(frames) // 2
        start = await at.send_paced(ws, frames[:half])
        await ws.send(json.dumps({"event": "websocket:dtmf",
                                  "digit": "5", "duration": 260}))
        await ws.send(json.dumps({"event": "websocket:something-new"}))
        await at.send_paced(ws, frames[half:],
                            start=start + half * at.FRAME_MS / 1000.0)
        await asyncio.wait_for(enough.wait(), vt.WAIT)
        await ws.close(1000)
        await asyncio.wait_for(reading, vt.WAIT)
    finally:
        reading.cancel()
    code = ws.close_rcvd.code if ws.close_rcvd is not None else None
    return frames, got, texts, code
