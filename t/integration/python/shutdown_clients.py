"""Sessions held open across `nginx -s quit` (driven by run.py)."""

import asyncio
import json

import voicetest as vt


async def open_sessions(count, tag):
    """Start `count` sessions and prove each one echoes."""
    sessions = []
    try:
        for i in range(count):
            ws, _ = await vt.start_session("/voice")
            sessions.append(ws)
            payload = vt.audio_frame(tag + i, 0)
            await ws.send(payload)
            echo = await vt.recv(ws)
            if echo != payload:
                raise AssertionError("session %d did not echo before the "
                                     "shutdown" % i)
    except BaseException:
        for ws in sessions:
            ws.transport.abort()
        raise
    return sessions


async def watch(ws, sid, stream, flowing):
    """Read until the server closes, optionally streaming 20 ms frames
    meanwhile; `flowing` is set once the stream's first echo is back (at
    once for a session that does not stream).  Returns a list of
    problems."""
    problems = []
    sent = []
    got = []
    infos = []
    stop = asyncio.Event()

    async def writer():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        seq = 1
        while not stop.is_set():
            payload = vt.audio_frame(sid, seq)
            try:
                await ws.send(payload)
            except vt.ConnectionClosed:
                return
            sent.append(payload)
            seq += 1
            await asyncio.sleep(max(0.0, t0 + seq * 0.02 - loop.time()))

    writing = asyncio.ensure_future(writer()) if stream else None
    if not stream:
        flowing.set()
    try:
        while True:
            try:
                msg = await vt.recv(ws, 30)
            except vt.ConnectionClosed:
                break
            if isinstance(msg, bytes):
                got.append(msg)
                flowing.set()
            else:
                infos.append(json.loads(msg))
    except asyncio.TimeoutError:
        problems.append("no close within 30s of the shutdown")
    finally:
        flowing.set()
        stop.set()
        if writing is not None:
            await writing
    try:
        await asyncio.wait_for(ws.wait_closed(), vt.WAIT)
    except asyncio.TimeoutError:
        problems.append("TCP connection not closed")
    ws.transport.abort()

    shutdown = [m for m in infos if m.get("type") == "info"
                and m.get("code") == "SERVER_SHUTDOWN"]
    if len(shutdown) != 1:
        problems.append("SERVER_SHUTDOWN infos: %d (texts: %r)"
                        % (len(shutdown), infos))
    others = [m for m in infos if m not in shutdown]
    if others:
        problems.append("unexpected text frames %r" % others)
    code = ws.close_rcvd.code if ws.close_rcvd is not None else None
    if code != 1001:
        problems.append("close code %r instead of 1001" % code)
    if got != sent[:len(got)]:
        problems.append("echoes during shutdown lost or reordered")
    return problems
