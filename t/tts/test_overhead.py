"""What the module itself adds to a turn: text.input to the first audio
frame with both providers answering at once (the LLM mock's first token
without delay, the TTS mock's "fast" script), over 20 turns.  The figures
are printed; only that every turn was spoken is asserted."""

import asyncio
import json
import os
import time
import unittest

import websockets

PORT = int(os.environ["VOICE_NGINX_PORT"])
TURNS = 20


def q(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


class Overhead(unittest.IsolatedAsyncioTestCase):

    async def test_module_share_of_a_turn(self):
        client, mine, v2v = [], [], []
        async with websockets.connect(
                "ws://127.0.0.1:%d/cartesia" % PORT, max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.start"}))
            for turn in range(TURNS):
                # the last reply's tail has played (voice_playout_lead):
                # the pacer holds a new reply's audio behind it until then
                await asyncio.sleep(0.2)
                sent = time.perf_counter()
                await ws.send(json.dumps({
                    "type": "text.input",
                    "text": "mock:say_now mock:fast Turn %d is here" % turn}))
                first = metrics = None
                while True:
                    m = await asyncio.wait_for(ws.recv(), 10)
                    if isinstance(m, bytes):
                        if first is None:
                            first = time.perf_counter()
                        continue
                    d = json.loads(m)
                    if d["type"] == "metrics":
                        metrics = d
                    if d["type"] == "state" and d["state"] == "listening" \
                            and first is not None:
                        break
                self.assertIsNotNone(metrics)
                client.append((first - sent) * 1000)
                v2v.append(metrics["voice_to_voice_ms"])
                # the providers' own time taken out: what is left is the
                # module's (and the loopback's, inside the providers' time)
                mine.append(metrics["voice_to_voice_ms"]
                            - metrics["llm_first_token_ms"]
                            - metrics["tts_first_audio_ms"])
            await ws.send(json.dumps({"type": "session.end"}))

        self.assertEqual(len(client), TURNS)
        for name, v in (("client: text.input -> first audio", client),
                        ("server: voice_to_voice_ms", v2v),
                        ("module: v2v - llm first token - tts first audio",
                         mine)):
            print("    %s p50/p95/max %.2f/%.2f/%.2f ms"
                  % (name, q(v, 0.5), q(v, 0.95), max(v)))


if __name__ == "__main__":
    unittest.main()
