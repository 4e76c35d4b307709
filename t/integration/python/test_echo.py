"""The echo pipeline: content, order, delay and message boundaries."""

import asyncio
import json
import random
import time
import unittest

import voicetest as vt

OP_TEXT = 1
OP_BINARY = 2

# Bytes the client lets sit unanswered.  The server's echo delay line and
# send queue default to 64k; staying under half of that keeps this test
# about order and content, not about the bounds.  A frame bigger than the
# window is sent alone.
WINDOW = 32 * 1024


def echo_sizes(count):
    """Frame sizes covering every header length boundary, the smallest
    frame and the biggest below the default 64k frame limit."""
    edges = [1, 2, 3, 125, 126, 127, 128, 1000, 4095, 4096, 16384, 32767,
             32768, 65534, 65535, 65535]
    rng = random.Random(6455)
    sizes = edges + [rng.choice((rng.randint(2, 700), rng.randint(700, 9000)))
                     for _ in range(count - len(edges))]
    rng.shuffle(sizes)
    return sizes


def distinct_payloads(sizes):
    rng = random.Random(1)
    payloads = []
    seen = set()
    for i, size in enumerate(sizes):
        while True:
            if size >= 2:
                payload = i.to_bytes(2, "big") + rng.randbytes(size - 2)
            else:
                payload = rng.randbytes(1)
            if payload not in seen:
                break
        seen.add(payload)
        payloads.append(payload)
    return payloads


class EchoTest(vt.VoiceTestCase):

    @vt.timed(60)
    async def test_echo_order_content_and_delay(self):
        ws, _ = await vt.start_session()
        payloads = distinct_payloads(echo_sizes(200))
        self.assertEqual(len(set(payloads)), 200)
        sent_at = [0.0] * len(payloads)
        got = []
        got_at = []
        outstanding = 0
        changed = asyncio.Condition()

        async def reader():
            nonlocal outstanding
            try:
                while len(got) < len(payloads):
                    msg = await vt.recv(ws)
                    now = time.monotonic()
                    if not isinstance(msg, bytes):
                        raise AssertionError(
                            "waiting for echo %d (%d bytes), got text %s"
                            % (len(got), len(payloads[len(got)]), msg))
                    got.append(msg)
                    got_at.append(now)
                    async with changed:
                        outstanding -= len(payloads[len(got) - 1])
                        changed.notify_all()
            finally:
                # Wake the sender when reading stops early.
                async with changed:
                    changed.notify_all()

        reading = asyncio.ensure_future(reader())
        try:
            for i, payload in enumerate(payloads):
                async with changed:
                    await changed.wait_for(
                        lambda: reading.done() or outstanding == 0
                        or outstanding + len(payload) <= WINDOW)
                    if reading.done():
                        break
                    outstanding += len(payload)
                sent_at[i] = time.monotonic()
                await ws.send(payload)
            await reading
        finally:
            reading.cancel()

        self.assertEqual(len(got), len(payloads))
        for i, payload in enumerate(got):
            if payload != payloads[i]:
                where = (payloads.index(payload) if payload in payloads
                         else None)
                self.fail("echo %d: expected frame %d (%d bytes), got %s"
                          % (i, i, len(payloads[i]),
                             "frame %d" % where if where is not None
                             else "%d unknown bytes" % len(payload)))
            early = sent_at[i] + vt.ECHO_DELAY - vt.TIMER_TOLERANCE - got_at[i]
            self.assertLessEqual(
                early, 0,
                "frame %d (%d bytes) came back %.1f ms before the echo delay"
                % (i, len(payload), early * 1000))
        await ws.close()

    @vt.timed(20)
    async def test_fragmented_message_comes_back_whole(self):
        ws = await vt.connect("/voice", create_protocol=vt.FrameRecorder)
        try:
            # session.start itself split across three fragments.
            start = json.dumps({"type": "session.start"})
            await ws.send([start[:5], start[5:9], start[9:]])
            started = await vt.recv_json(ws)
            self.assertEqual(started.get("type"), "session.started")
            self.assertEqual(await vt.recv_json(ws),
                             {"type": "state", "state": "streaming"})

            parts = [vt.audio_frame(5, 1, 700), vt.audio_frame(5, 2, 1),
                     b"", vt.audio_frame(5, 3, 3000)]
            whole = b"".join(parts)
            single = vt.audio_frame(5, 4, 50)
            ws.frames_seen.clear()
            await ws.send(parts)
            await ws.send(single)

            self.assertEqual(await vt.recv(ws), whole)
            self.assertEqual(await vt.recv(ws), single)
            self.assertEqual(ws.frames_seen,
                             [(OP_BINARY, True, len(whole)),
                              (OP_BINARY, True, len(single))],
                             "frames as read (opcode, fin, length)")
        finally:
            await ws.close()

    @vt.timed(20)
    async def test_frame_over_max_frame_size_closes_1009(self):
        ws, _ = await vt.start_session()
        await ws.send(bytes(64 * 1024 + 1))
        messages, code = await vt.collect_until_close(ws)
        self.assertEqual(vt.binaries(messages), [])
        self.assertEqual(code, 1009)


if __name__ == "__main__":
    unittest.main()
