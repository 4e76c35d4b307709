"""A client that stops reading, on /voice-slow (16k voice_send_buffer,
short voice_send_timeout, large echo buffer)."""

import asyncio
import json
import time

import voicetest as vt

# While paused, the stalled client sends this much audio at once: twice
# what the kernel buffers on loopback can hold for a client that does not
# read (the server's socket send buffer grows to 4 MiB), so the server's
# own send queue must overflow.  Each frame is far below the 16k queue of
# /voice-slow, since a frame bigger than the queue could never be sent
# even to a client that reads.
STALL_FRAMES = 2048
STALL_FRAME_BYTES = 4096

# Neighbour echoes that must arrive while the other client is stalled.
NEIGHBOUR_ECHOES_DURING_STALL = 20

# Neighbour frames sent after the stalled client's last frame whose
# echoes must be back before it reads again: by then every echo of the
# stalled client has fallen due and met the full queue.
NEIGHBOUR_FRAMES_AFTER_STALL = 3


def stall_payloads(tag):
    return [vt.audio_frame(tag, seq, STALL_FRAME_BYTES)
            for seq in range(STALL_FRAMES)]


async def stalled_session():
    sock = vt.small_rcvbuf_socket()
    try:
        return await vt.start_session("/voice-slow", sock=sock)
    except BaseException:
        sock.close()
        raise


async def send_all(ws, payloads):
    for payload in payloads:
        await ws.send(payload)


class Neighbour:
    """A second session streaming 20 ms frames and reading its echoes."""

    def __init__(self, ws):
        self.ws = ws
        self.sent = []
        self.got = []
        self.during_stall = 0
        self.stalled = True
        self.changed = asyncio.Condition()
        self.finish = asyncio.Event()
        self.close_code = None

    async def write(self):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        seq = 0
        while not self.finish.is_set():
            payload = vt.audio_frame(2, seq)
            await self.ws.send(payload)
            self.sent.append(payload)
            seq += 1
            await asyncio.sleep(max(0.0, t0 + seq * 0.02 - loop.time()))
        await self.ws.send(json.dumps({"type": "session.end"}))

    async def read(self):
        try:
            while True:
                try:
                    msg = await vt.recv(self.ws)
                except vt.ConnectionClosed:
                    break
                if isinstance(msg, str):
                    continue
                async with self.changed:
                    self.got.append(msg)
                    if self.stalled:
                        self.during_stall += 1
                    self.changed.notify_all()
        finally:
            async with self.changed:
                self.changed.notify_all()
        if self.ws.close_rcvd is not None:
            self.close_code = self.ws.close_rcvd.code

    async def wait_echoes(self, count, reading):
        async with self.changed:
            await self.changed.wait_for(
                lambda: len(self.got) >= count or reading.done())
        if len(self.got) < count:
            raise AssertionError("the neighbour session stopped at %d echoes"
                                 % len(self.got))


class BackpressureTest(vt.VoiceTestCase):

    @vt.timed(60)
    async def test_one_backpressure_info_and_neighbour_unaffected(self):
        stalled, _ = await stalled_session()
        neighbour = Neighbour((await vt.start_session("/voice-slow"))[0])

        stalled.transport.pause_reading()
        reading = asyncio.ensure_future(neighbour.read())
        writing = asyncio.ensure_future(neighbour.write())
        payloads = stall_payloads(1)
        try:
            await send_all(stalled, payloads)
            await neighbour.wait_echoes(
                max(len(neighbour.sent) + NEIGHBOUR_FRAMES_AFTER_STALL,
                    NEIGHBOUR_ECHOES_DURING_STALL), reading)
        finally:
            neighbour.stalled = False
            stalled.transport.resume_reading()

        await stalled.send(json.dumps({"type": "session.end"}))
        messages, code = await vt.collect_until_close(stalled, 30)
        neighbour.finish.set()
        await asyncio.wait_for(writing, vt.WAIT)
        await asyncio.wait_for(reading, vt.WAIT)

        infos = [m for m in vt.texts(messages) if m.get("type") == "info"]
        backpressure = [m for m in infos if m.get("code") == "BACKPRESSURE"]
        echoed = vt.binaries(messages)
        self.assertEqual(len(backpressure), 1,
                         "%d BACKPRESSURE infos for one stall (%d of %d "
                         "frames echoed); infos: %r"
                         % (len(backpressure), len(echoed), len(payloads),
                            infos[:3]))
        self.assertIsInstance(backpressure[0].get("message"), str)

        self.assertLess(len(echoed), len(payloads),
                        "nothing was dropped: the stall did not overflow")
        # What came back is the stream with frames left out, never altered
        # or reordered.
        position = 0
        for payload in echoed:
            while position < len(payloads) and payloads[position] != payload:
                position += 1
            self.assertLess(position, len(payloads),
                            "echo out of order or altered: "
                            + vt.describe_frame(payload))
            position += 1
        self.assertEqual(code, 1000)

        self.assertGreaterEqual(neighbour.during_stall,
                                NEIGHBOUR_ECHOES_DURING_STALL)
        self.assertEqual(len(neighbour.got), len(neighbour.sent),
                         "the neighbour session lost audio")
        self.assertEqual(neighbour.got, neighbour.sent,
                         "the neighbour session's audio came back altered "
                         "or reordered")
        self.assertEqual(neighbour.close_code, 1000)

    @vt.timed(60)
    async def test_stuck_client_is_disconnected_after_send_timeout(self):
        stalled, _ = await stalled_session()
        stalled.transport.pause_reading()
        paused_at = time.monotonic()
        await send_all(stalled, stall_payloads(3))

        # Keep audio flowing, so the server always has echoes waiting for
        # a client that takes none: a stall with nothing pending costs the
        # server nothing and is not what the timeout is for.  Once the
        # server has closed the connection, the next frame is answered
        # with a reset and the client library sees the connection go.
        deadline = paused_at + vt.SLOW_SEND_TIMEOUT + 8
        seq = STALL_FRAMES
        while not stalled.closed and time.monotonic() < deadline:
            try:
                await stalled.send(vt.audio_frame(3, seq, STALL_FRAME_BYTES))
            except vt.ConnectionClosed:
                break
            seq += 1
            try:
                await asyncio.wait_for(asyncio.shield(stalled.wait_closed()),
                                       0.05)
            except asyncio.TimeoutError:
                pass
        closed_at = time.monotonic()
        self.assertTrue(stalled.closed,
                        "a client that never reads is still connected "
                        "%.1fs after it stopped reading"
                        % (closed_at - paused_at))
        self.assertGreaterEqual(closed_at - paused_at,
                                vt.SLOW_SEND_TIMEOUT - vt.TIMER_TOLERANCE,
                                "disconnected before voice_send_timeout")


if __name__ == "__main__":
    import unittest
    unittest.main()
