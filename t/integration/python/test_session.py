"""Session lifecycle and control messages of voice.v1."""

import asyncio
import json
import time
import unittest

import voicetest as vt


class SessionTest(vt.VoiceTestCase):

    @vt.timed(20)
    async def test_session_start_reply(self):
        ws = await vt.connect("/voice")
        try:
            await ws.send(json.dumps({"type": "session.start"}))
            started = await vt.recv_json(ws)
            self.assertEqual(started.get("type"), "session.started")
            self.assertIsInstance(started.get("session_id"), str)
            self.assertNotEqual(started["session_id"], "")
            self.assertEqual(started.get("protocol"), "voice.v1")
            audio = started.get("audio")
            self.assertIsInstance(audio, dict)
            inp = audio.get("input")
            out = audio.get("output")
            self.assertIsInstance(inp, dict)
            self.assertIsInstance(out, dict)
            # Nothing was asked for, so both ways are the defaults.
            self.assertEqual(inp.get("encoding"), "pcm_s16le")
            self.assertEqual(inp.get("sample_rate"), 16000)
            self.assertEqual(inp.get("channels"), 1)
            self.assertEqual(out.get("encoding"), "pcm_s16le")
            self.assertEqual(out.get("sample_rate"), 16000)

            state = await vt.recv_json(ws)
            self.assertEqual(state, {"type": "state", "state": "streaming"})
        finally:
            await ws.close()

    @vt.timed(20)
    async def test_session_ids_differ(self):
        a, started_a = await vt.start_session()
        b, started_b = await vt.start_session()
        try:
            self.assertNotEqual(started_a["session_id"],
                                started_b["session_id"])
        finally:
            await a.close()
            await b.close()

    @vt.timed(20)
    async def test_binary_before_start_is_refused(self):
        ws = await vt.connect("/voice")
        await ws.send(b"\x00\x01\x02\x03")
        messages, code = await vt.collect_until_close(ws)
        self.assertEqual(vt.binaries(messages), [],
                         "audio sent before session.start was echoed")
        errors = vt.texts(messages)
        self.assertEqual(len(errors), 1, "messages: %r" % messages)
        self.assertEqual(errors[0].get("type"), "error")
        self.assertEqual(errors[0].get("code"), "PROTOCOL_VIOLATION")
        self.assertIs(errors[0].get("recoverable"), False)
        self.assertIsInstance(errors[0].get("message"), str)
        self.assertEqual(code, 1008)

    @vt.timed(20)
    async def test_bad_json_after_start_is_recoverable(self):
        ws, _ = await vt.start_session()
        try:
            for bad in ('{"type": "session.start"', "not json at all",
                        json.dumps({"type": "no.such.type"})):
                await ws.send(bad)
                err = await vt.recv_json(ws)
                self.assertEqual(err.get("type"), "error", "after %r" % bad)
                self.assertEqual(err.get("code"), "PROTOCOL_VIOLATION")
                self.assertIs(err.get("recoverable"), True)

            # Messages that mean nothing to the echo pipeline get no reply:
            # the next thing to come back is the audio frame.
            for quiet in ({"type": "input.commit"},
                          {"type": "text.input", "text": "hello"},
                          {"type": "response.cancel"}):
                await ws.send(json.dumps(quiet))
            payload = vt.audio_frame(1, 1)
            await ws.send(payload)
            self.assertEqual(await vt.recv(ws), payload)
        finally:
            await ws.close()

    @vt.timed(20)
    async def test_ping_pong(self):
        ws, _ = await vt.start_session()
        try:
            for data in (b"", b"voice-ping", bytes(range(125))):
                waiter = await ws.ping(data)
                # websockets resolves the waiter only for a pong that
                # carries the same payload as the ping.
                await asyncio.wait_for(waiter, vt.WAIT)

            # A ping while echoes are pending: both come back.
            payload = vt.audio_frame(2, 1)
            await ws.send(payload)
            waiter = await ws.ping(b"during-echo")
            await asyncio.wait_for(waiter, vt.WAIT)
            self.assertEqual(await vt.recv(ws), payload)
        finally:
            await ws.close()

    @vt.timed(20)
    async def test_session_end_flushes_then_closes_1000(self):
        ws, _ = await vt.start_session()
        sent = []
        sent_at = []
        for seq in range(20):
            payload = vt.audio_frame(3, seq, 320 + seq)
            sent_at.append(time.monotonic())
            await ws.send(payload)
            sent.append(payload)
        await ws.send(json.dumps({"type": "session.end"}))

        got = []
        got_at = []
        messages = []
        code = None
        while True:
            try:
                msg = await vt.recv(ws)
            except vt.ConnectionClosed:
                break
            messages.append(msg)
            if isinstance(msg, bytes):
                got.append(msg)
                got_at.append(time.monotonic())
        await asyncio.wait_for(ws.wait_closed(), vt.WAIT)
        if ws.close_rcvd is not None:
            code = ws.close_rcvd.code

        self.assertEqual(len(got), len(sent), "echoes after session.end")
        for i, (a, b) in enumerate(zip(got, sent)):
            self.assertEqual(a, b, "echo %d differs" % i)
            self.assertGreaterEqual(
                got_at[i], sent_at[i] + vt.ECHO_DELAY - vt.TIMER_TOLERANCE,
                "echo %d came before its delay" % i)
        self.assertIsInstance(messages[-1], str,
                              "the last message is not the closed state")
        self.assertEqual(json.loads(messages[-1]),
                         {"type": "state", "state": "closed"})
        self.assertEqual(vt.texts(messages), [{"type": "state",
                                               "state": "closed"}])
        self.assertEqual(code, 1000)

    @vt.timed(30)
    async def test_mute_drops_audio_until_unmute(self):
        ws, _ = await vt.start_session()
        before = [vt.audio_frame(4, seq) for seq in range(5)]
        muted = [vt.audio_frame(4, 100 + seq) for seq in range(10)]
        after = [vt.audio_frame(4, 200 + seq) for seq in range(5)]

        for payload in before:
            await ws.send(payload)
        for payload in before:
            self.assertEqual(await vt.recv(ws), payload)

        await ws.send(json.dumps({"type": "input.mute"}))
        for payload in muted:
            await ws.send(payload)
        await ws.send(json.dumps({"type": "input.unmute"}))
        for payload in after:
            await ws.send(payload)
        await ws.send(json.dumps({"type": "session.end"}))

        messages, code = await vt.collect_until_close(ws)
        got = vt.binaries(messages)
        for payload in got:
            self.assertNotIn(payload, muted,
                             "muted " + vt.describe_frame(payload)
                             + " was echoed")
        self.assertEqual(got, after)
        self.assertEqual(code, 1000)


if __name__ == "__main__":
    unittest.main()
