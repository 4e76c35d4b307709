"""Barge-in on phone gateways: a spoken turn gets a spoken reply, and
speech over that reply makes the module send the gateway's own "drop
what you buffered" message (Twilio {"event":"clear"}, Vonage
{"action":"clear"}), after which no audio of that reply follows."""

import asyncio
import audioop
import base64
import json
import os
import subprocess
import tempfile
import time
import unittest
import wave

import websockets

PORT = int(os.environ["VOICE_NGINX_PORT"])


def speech(text, rate):
    """espeak-ng's speech of text as PCM16 mono at rate."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-w", f.name, text], check=True,
                       stderr=subprocess.DEVNULL)
        with wave.open(f.name) as w:
            pcm = w.readframes(w.getnframes())
            src = w.getframerate()
    pcm, _ = audioop.ratecv(pcm, 2, 1, src, rate, None)
    return pcm


class Gateway:
    """What both gateways share: audio sent in real time, and a reader
    that keeps every message with its arrival time."""

    def __init__(self, ws, rate):
        self.ws = ws
        self.rate = rate
        self.events = []          # (wall, kind, message)
        self.reader = asyncio.ensure_future(self.read())

    async def read(self):
        try:
            async for m in self.ws:
                self.events.append((time.time(),) + self.decode(m))
        except websockets.ConnectionClosed:
            pass

    async def talk(self, pcm, silence_s=0.0):
        step = self.rate // 50 * 2
        pcm = pcm + b"\0" * int(silence_s * self.rate) * 2
        start = time.monotonic()
        for i in range(0, len(pcm) - step + 1, step):
            await self.send_audio(pcm[i:i + step])
            # real time, as a phone line delivers it
            delay = start + (i // step + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def wait(self, cond, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for i, e in enumerate(self.events):
                if cond(e):
                    return i
            await asyncio.sleep(0.01)
        raise AssertionError("no %s within %s s; got %r" % (
            what, timeout, [e[1:] for e in self.events if e[1] != "audio"]))


class Twilio(Gateway):
    def decode(self, m):
        d = json.loads(m)
        if d.get("event") == "media":
            return ("audio", d)
        return ("json", d)

    async def start(self):
        await self.ws.send(json.dumps({"event": "connected",
                                       "protocol": "Call",
                                       "version": "1.0.0"}))
        await self.ws.send(json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": "MZtest",
            "start": {"streamSid": "MZtest", "callSid": "CAtest",
                      "accountSid": "ACtest", "tracks": ["inbound"],
                      "customParameters": {},
                      "mediaFormat": {"encoding": "audio/x-mulaw",
                                      "sampleRate": 8000, "channels": 1}}}))

    async def send_audio(self, pcm):
        await self.ws.send(json.dumps({
            "event": "media", "streamSid": "MZtest",
            "media": {"track": "inbound",
                      "payload": base64.b64encode(
                          audioop.lin2ulaw(pcm, 2)).decode()}}))

    @staticmethod
    def is_clear(e):
        return e[1] == "json" and e[2].get("event") == "clear"


class Vonage(Gateway):
    def decode(self, m):
        if isinstance(m, bytes):
            return ("audio", m)
        return ("json", json.loads(m))

    async def start(self):
        await self.ws.send(json.dumps({
            "event": "websocket:connected",
            "content-type": "audio/l16;rate=16000"}))

    async def send_audio(self, pcm):
        await self.ws.send(pcm)

    @staticmethod
    def is_clear(e):
        return e[1] == "json" and e[2].get("action") == "clear"


class PhoneBargeIn(unittest.IsolatedAsyncioTestCase):

    async def barge_in(self, path, cls, rate):
        ask = speech("Please tell me a long story about the sea.", rate)
        over = speech("Stop, stop, wait a moment please.", rate)

        async with websockets.connect("ws://127.0.0.1:%d%s" % (PORT, path),
                                      max_size=None) as ws:
            g = cls(ws, rate)
            await g.start()

            # the question, then silence until the reply's audio comes
            talking = asyncio.ensure_future(g.talk(ask, silence_s=8.0))
            first = await g.wait(lambda e: e[1] == "audio", 20,
                                 "audio of the reply")
            talking.cancel()

            # a second of the reply, then the caller speaks over it
            await asyncio.sleep(1.0)
            said = time.time()
            await g.talk(over[:int(rate * 0.8) * 2])
            clear = await g.wait(cls.is_clear, 5, "clear")
            at = g.events[clear][0]
            self.assertGreater(at, said)
            self.assertGreater(clear, first)

            # the caller falls silent; nothing of the cut reply follows
            await g.talk(b"", silence_s=0.5)
            late = [e for e in g.events[clear + 1:]
                    if e[1] == "audio" and e[0] < at + 0.4]
            self.assertEqual(late, [], "audio right after clear")
            print("    %s: clear %.0f ms after the caller began"
                  % (path, (at - said) * 1000))
            await ws.close()
            g.reader.cancel()

    async def test_twilio_clear(self):
        await self.barge_in("/phone-twilio", Twilio, 8000)

    async def test_vonage_clear(self):
        await self.barge_in("/phone-vonage", Vonage, 16000)


if __name__ == "__main__":
    unittest.main()
