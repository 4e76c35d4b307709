"""Upstream HTTP/1.1 server for the curl layer's tests (stdlib only).

It runs an asyncio loop in a thread of the test process; the test drives
it through thread-safe methods, so every pause is an event the test
controls, never a sleep.

Routes (query arguments in brackets):
  /stream [id, n=3, size=0, step=1]  chunked; piece i is
        "<id:i:t>" padded with '.' to size, t = time.monotonic_ns() just
        before the write; with step=1 each piece after the first waits
        for release(id) (or the peer closing)
  /status [code]        that status, a short body with Content-Length
  /stall                reads the request, never answers
  /stall_body [id]      chunked headers and one piece, then nothing
  /reset [id]           chunked headers and one piece, then a TCP reset
  /big [n, chunked=0]   n bytes of a fixed pattern
  /echo                 JSON: method, headers, body of the request
  /conn                 the id of the TCP connection that carried it
  /interim              "100 Continue" and "103 Early Hints", then 200
  /redirect             302 to /status?code=200

Records: per stream id the pieces sent and when the connection that
carried it closed; per TCP connection when it opened and closed.

Run alone (python3 server.py PORT) it serves with step=0 as default.
"""

import asyncio
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse


def pattern(n):
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


class Stream:
    def __init__(self, sid):
        self.id = sid
        self.sent = []                  # (index, monotonic_ns), as written
        self.complete = False
        self.closed = threading.Event()  # its TCP connection closed
        self.sent_when_closed = None
        self.conn = None
        self.queue = None               # asyncio.Queue, loop thread only
        self.credits = 0                # releases before the queue existed


class Conn:
    def __init__(self, cid):
        self.id = cid
        self.opened = time.monotonic_ns()
        self.closed = threading.Event()
        self.closed_at = None
        self.requests = 0
        self.streams = []


class Server:
    def __init__(self, host='127.0.0.1', port=0, step_default=1, ssl=None):
        self.host = host
        self.port = port
        self.ssl = ssl
        self.step_default = step_default
        self.lock = threading.Condition()
        self.streams = {}
        self.conns = []
        self.loop = None
        self.thread = None
        self._server = None

    # ---- control, from the test thread -------------------------------

    def start(self):
        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self._server = self.loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port,
                                     backlog=512, ssl=self.ssl))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait()
        return self.port

    def stop(self):
        async def shutdown():
            self._server.close()
            tasks = [t for t in asyncio.all_tasks()
                     if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def stream(self, sid):
        with self.lock:
            st = self.streams.get(sid)
            if st is None:
                st = self.streams[sid] = Stream(sid)
            return st

    def release(self, sid, count=1):
        """Lets stream sid send its next piece (count of them)."""
        st = self.stream(sid)
        self.loop.call_soon_threadsafe(self._release, st, count)

    def wait_sent(self, sid, n, timeout):
        st = self.stream(sid)
        with self.lock:
            return self.lock.wait_for(lambda: len(st.sent) >= n, timeout)

    def accepted(self):
        with self.lock:
            return len(self.conns)

    # ---- the loop thread ------------------------------------------------

    def _release(self, st, count):
        if st.queue is None:
            st.credits += count
            return
        for _ in range(count):
            st.queue.put_nowait(None)

    def _queue(self, st):
        if st.queue is None:
            st.queue = asyncio.Queue()
            for _ in range(st.credits):
                st.queue.put_nowait(None)
            st.credits = 0
        return st.queue

    async def _handle(self, reader, writer):
        with self.lock:
            conn = Conn(len(self.conns) + 1)
            self.conns.append(conn)
        try:
            while True:
                req = await self._read_request(reader)
                if req is None:
                    break
                conn.requests += 1
                if not await self._route(req, conn, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            with self.lock:
                conn.closed_at = time.monotonic_ns()
                for st in conn.streams:
                    if st.sent_when_closed is None:
                        st.sent_when_closed = len(st.sent)
                    st.closed.set()
                conn.closed.set()
                self.lock.notify_all()
            writer.transport.abort()

    async def _read_request(self, reader):
        line = await reader.readline()
        if not line:
            return None
        method, target, _ = line.decode('latin-1').split(' ', 2)
        headers = {}
        while True:
            h = await reader.readline()
            if h in (b'\r\n', b'\n'):
                break
            if not h:
                raise ConnectionError('eof in headers')
            k, v = h.decode('latin-1').split(':', 1)
            headers[k.strip().lower()] = v.strip()
        body = b''
        if 'content-length' in headers:
            body = await reader.readexactly(int(headers['content-length']))
        elif headers.get('transfer-encoding', '').lower() == 'chunked':
            while True:
                size = int((await reader.readline()).split(b';')[0], 16)
                if size == 0:
                    while (await reader.readline()) not in (b'\r\n', b''):
                        pass
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
        path, _, query = target.partition('?')
        return {'method': method, 'path': path, 'headers': headers,
                'body': body, 'query': dict(urllib.parse.parse_qsl(query))}

    @staticmethod
    async def _send(writer, data):
        writer.write(data)
        await writer.drain()

    @staticmethod
    def _chunk(data):
        return b'%x\r\n%s\r\n' % (len(data), data)

    async def _wait_release_or_eof(self, st, reader):
        """True when released, False when the peer went away."""
        get = asyncio.ensure_future(self._queue(st).get())
        eof = asyncio.ensure_future(reader.read(1))
        done, _ = await asyncio.wait({get, eof},
                                     return_when=asyncio.FIRST_COMPLETED)
        loser = eof if get in done else get
        loser.cancel()
        try:
            await loser
        except asyncio.CancelledError:
            pass
        return get in done

    def _attach(self, conn, sid):
        st = self.stream(sid)
        with self.lock:
            st.conn = conn
            conn.streams.append(st)
            self.lock.notify_all()
        return st

    async def _piece(self, writer, st, i, size):
        t = time.monotonic_ns()
        data = b'<%s:%d:%d>' % (st.id.encode(), i, t)
        if len(data) < size:
            data += b'.' * (size - len(data))
        with self.lock:
            st.sent.append((i, t))
            self.lock.notify_all()
        await self._send(writer, self._chunk(data))

    async def _route(self, req, conn, reader, writer):
        q = req['query']
        path = req['path']
        chunked_head = (b'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n'
                        b'Transfer-Encoding: chunked\r\n\r\n')

        if path == '/stream':
            st = self._attach(conn, q.get('id', 'anon'))
            n = int(q.get('n', 3))
            size = int(q.get('size', 0))
            step = int(q.get('step', self.step_default))
            await self._send(writer, chunked_head)
            for i in range(n):
                if i and step and not await self._wait_release_or_eof(
                        st, reader):
                    return False
                await self._piece(writer, st, i, size)
            await self._send(writer, b'0\r\n\r\n')
            st.complete = True
            return True

        if path == '/status':
            code = int(q.get('code', 200))
            body = b'status %d\n' % code
            await self._send(writer, b'HTTP/1.1 %d Whatever\r\n'
                             b'Content-Length: %d\r\n\r\n%s'
                             % (code, len(body), body))
            return True

        if path in ('/stall', '/stall_body', '/reset'):
            st = self._attach(conn, q.get('id', 'anon'))
            if path != '/stall':
                await self._send(writer, chunked_head)
                await self._piece(writer, st, 0, 0)
            if path == '/reset':
                sock = writer.transport.get_extra_info('socket')
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack('ii', 1, 0))
                return False
            await reader.read()
            return False

        if path == '/big':
            n = int(q.get('n', 0))
            data = pattern(n)
            if int(q.get('chunked', 0)):
                await self._send(writer, chunked_head)
                for i in range(0, n, 16384):
                    await self._send(writer, self._chunk(data[i:i + 16384]))
                await self._send(writer, b'0\r\n\r\n')
            else:
                await self._send(writer, b'HTTP/1.1 200 OK\r\n'
                                 b'Content-Length: %d\r\n\r\n' % n + data)
            return True

        if path in ('/echo', '/conn'):
            if path == '/echo':
                body = json.dumps({
                    'method': req['method'], 'headers': req['headers'],
                    'body': req['body'].decode('latin-1')}).encode()
            else:
                body = b'%d' % conn.id
            await self._send(writer, b'HTTP/1.1 200 OK\r\n'
                             b'Content-Type: application/json\r\n'
                             b'Content-Length: %d\r\n\r\n%s'
                             % (len(body), body))
            return True

        if path == '/interim':
            body = b'after interim\n'
            await self._send(writer, b'HTTP/1.1 100 Continue\r\n\r\n'
                             b'HTTP/1.1 103 Early Hints\r\n'
                             b'Link: </x>; rel=preload\r\n\r\n')
            await self._send(writer, b'HTTP/1.1 200 OK\r\n'
                             b'Content-Length: %d\r\n\r\n%s'
                             % (len(body), body))
            return True

        if path == '/redirect':
            await self._send(writer, b'HTTP/1.1 302 Found\r\n'
                             b'Location: /status?code=200\r\n'
                             b'Content-Length: 6\r\n\r\nmoved\n')
            return True

        await self._send(writer, b'HTTP/1.1 404 Not Found\r\n'
                         b'Content-Length: 0\r\n\r\n')
        return True


if __name__ == '__main__':
    srv = Server(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0,
                 step_default=0)
    print('listening on 127.0.0.1:%d' % srv.start(), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()
