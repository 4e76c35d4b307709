"""Many sessions at once, each streaming real-time sized audio frames."""

import asyncio
import json
import time
import unittest

import voicetest as vt

SESSIONS = 100
FRAME_BYTES = 640          # 20 ms of 16 kHz mono pcm_s16le
FRAME_INTERVAL = 0.020
FRAMES = 500               # 10 seconds


async def stream_one(sid, ws, t0):
    """Send FRAMES frames paced at FRAME_INTERVAL from t0, read every echo,
    end the session.  Returns a list of problems (empty when all is well)."""
    problems = []
    expected = [vt.audio_frame(sid, seq, FRAME_BYTES) for seq in range(FRAMES)]
    got = 0

    async def reader():
        nonlocal got
        while True:
            try:
                msg = await vt.recv(ws, vt.WAIT)
            except vt.ConnectionClosed:
                return
            if isinstance(msg, str):
                event = json.loads(msg)
                if event != {"type": "state", "state": "closed"}:
                    problems.append("unexpected %r" % event)
                continue
            if got >= FRAMES:
                problems.append("extra " + vt.describe_frame(msg))
                continue
            if msg != expected[got]:
                problems.append("echo %d: expected %s, got %s"
                                % (got, vt.describe_frame(expected[got]),
                                   vt.describe_frame(msg)))
                return
            got += 1

    reading = asyncio.ensure_future(reader())
    try:
        loop = asyncio.get_running_loop()
        for seq in range(FRAMES):
            # Pacing of the workload (a fixed schedule from t0), not a wait
            # for the server.
            delay = t0 + seq * FRAME_INTERVAL - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if reading.done():
                break
            await ws.send(expected[seq])
        if not reading.done():
            await ws.send(json.dumps({"type": "session.end"}))
        await asyncio.wait_for(reading, vt.WAIT + 5)
    except Exception as e:  # reported with the session it belongs to
        problems.append("%s: %s" % (type(e).__name__, e))
    finally:
        reading.cancel()
        ws.transport.abort()

    if got != FRAMES and not problems:
        problems.append("got %d of %d echoes" % (got, FRAMES))
    code = ws.close_rcvd.code if ws.close_rcvd is not None else None
    if code != 1000 and not problems:
        problems.append("close code %r instead of 1000" % code)
    return problems


class LoadTest(vt.VoiceTestCase):

    @vt.timed(90)
    async def test_100_sessions_10_seconds_of_20ms_frames(self):
        opened = await asyncio.gather(
            *[vt.start_session() for _ in range(SESSIONS)],
            return_exceptions=True)
        failed = [r for r in opened if isinstance(r, BaseException)]
        sockets = [r[0] for r in opened if not isinstance(r, BaseException)]
        if failed:
            for ws in sockets:
                ws.transport.abort()
            self.fail("%d of %d sessions did not start: %r"
                      % (len(failed), SESSIONS, failed[0]))

        t0 = asyncio.get_running_loop().time() + 0.1
        started = time.monotonic()
        results = await asyncio.gather(
            *[stream_one(sid, ws, t0) for sid, ws in enumerate(sockets)])
        elapsed = time.monotonic() - started

        bad = {sid: p for sid, p in enumerate(results) if p}
        report = "; ".join("session %d: %s" % (sid, ", ".join(p[:3]))
                           for sid, p in list(bad.items())[:5])
        self.assertEqual(bad, {}, "%d sessions failed: %s" % (len(bad),
                                                              report))
        self.assertGreaterEqual(elapsed, FRAMES * FRAME_INTERVAL)


if __name__ == "__main__":
    unittest.main()
