"""ngx_http_voice_curl.c on nginx's event loop, tested from outside.

nginx loads only the test module (t/curl/ngx_http_voice_curl_test_module.c)
whose locations relay a request through the curl layer to the upstream
server of server.py and stream the answer back piece by piece.  Every
pause is an event the test controls; socket timeouts only bound how long
a failing test hangs.

Environment: VOICE_CURL_NGINX (binary), VOICE_CURL_TEST_MODULE (the .so),
VOICE_CURL_VALGRIND=1 runs nginx under valgrind in one process.
"""

import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import server  # noqa: E402

NGINX = os.environ.get('VOICE_CURL_NGINX', '/usr/sbin/nginx')
MODULE = os.environ.get('VOICE_CURL_TEST_MODULE', os.path.join(
    ROOT, 'build', 'ngx_http_voice_curl_test_module.so'))
VALGRIND = os.environ.get('VOICE_CURL_VALGRIND', '') not in ('', '0')

# how long a broken test may hang before it fails (not a sync device)
WAIT = 60 if VALGRIND else 10

SECRET = 'SECRET-4711-TOKEN'

CONF = r"""
load_module %(module)s;
worker_processes 1;
error_log %(prefix)s/error.log info;
pid %(prefix)s/nginx.pid;
events { worker_connections 2048; }
http {
    access_log off;
    client_body_temp_path %(prefix)s/body;
    proxy_temp_path %(prefix)s/proxy;
    fastcgi_temp_path %(prefix)s/fastcgi;
    uwsgi_temp_path %(prefix)s/uwsgi;
    scgi_temp_path %(prefix)s/scgi;
    client_body_buffer_size 1m;
    client_max_body_size 1m;

    server {
        listen 127.0.0.1:%(port)d;

        location ~ ^/p/(\d+)(/.*)$ {
            voice_curl_test http://127.0.0.1:$1$2$is_args$args;
        }
        location ~ ^/short/(\d+)(/.*)$ {
            voice_curl_test_timeout 1s;
            voice_curl_test http://127.0.0.1:$1$2$is_args$args;
        }
        location ~ ^/ct/(\d+)(/.*)$ {
            voice_curl_test_connect_timeout 300ms;
            voice_curl_test http://127.0.0.1:$1$2$is_args$args;
        }
        location ~ ^/small/(\d+)(/.*)$ {
            voice_curl_test_max_body 1000;
            voice_curl_test http://127.0.0.1:$1$2$is_args$args;
        }
        location ~ ^/hdr/(\d+)(/.*)$ {
            voice_curl_test_header "Authorization: Bearer %(secret)s";
            voice_curl_test_header "X-Voice-Test: yes";
            voice_curl_test http://127.0.0.1:$1$2$is_args$args;
        }
        location ~ ^/tls/(\d+)(/.*)$ {
            voice_curl_test_trusted_certificate %(prefix)s/ca.crt;
            voice_curl_test https://localhost:$1$2$is_args$args;
        }
        location ~ ^/tls-untrusted/(\d+)(/.*)$ {
            voice_curl_test https://localhost:$1$2$is_args$args;
        }
        location ~ ^/tls-wronghost/(\d+)(/.*)$ {
            voice_curl_test_trusted_certificate %(prefix)s/ca.crt;
            voice_curl_test https://127.0.0.1:$1$2$is_args$args;
        }
        location ~ ^/tls-noverify/(\d+)(/.*)$ {
            voice_curl_test_verify off;
            voice_curl_test https://127.0.0.1:$1$2$is_args$args;
        }
        location ~ ^/vm/(\d+)(/.*)$ {
            voice_curl_test http://%(name)s:$1$2$is_args$args;
        }
    }
}
"""

PIECE = re.compile(rb'<([^:<>]+):(\d+):(\d+)>')

# the most curl hands over in one call (CURL_MAX_WRITE_SIZE)
READ = 16384


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_certificates(d):
    """A throw-away CA and a certificate for DNS name localhost."""
    def ossl(*args):
        subprocess.run(('openssl',) + args, cwd=d, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(d, 'ext.cnf'), 'w') as f:
        f.write('subjectAltName=DNS:localhost\n')
    ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
         '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=voice test CA')
    ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key',
         '-out', 'srv.csr', '-subj', '/CN=localhost')
    ossl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.crt', '-CAkey',
         'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'ext.cnf',
         '-out', 'srv.crt')
    os.chmod(os.path.join(d, 'ca.crt'), 0o644)


class Nginx:
    def __init__(self):
        self.prefix = PREFIX
        self.port = free_port()
        self.log = os.path.join(self.prefix, 'error.log')
        self.vglog = os.path.join(self.prefix, 'valgrind.log')
        conf = os.path.join(self.prefix, 'nginx.conf')
        with open(conf, 'w') as f:
            f.write(CONF % {'module': MODULE, 'prefix': self.prefix,
                            'port': self.port, 'secret': SECRET,
                            'name': self.resolvable_name()})
        cmd = [NGINX, '-p', self.prefix + '/', '-c', conf]
        if VALGRIND:
            cmd = ['valgrind', '--log-file=' + self.vglog,
                   '--leak-check=full',
                   '--show-leak-kinds=definite,indirect,possible',
                   '--errors-for-leak-kinds=none',
                   '--num-callers=40'] + cmd + [
                '-g', 'daemon off; master_process off;']
        else:
            cmd += ['-g', 'daemon off;']
        # nginx reads inherited listening sockets from $NGINX
        env = dict(os.environ)
        env.pop('NGINX', None)
        self.proc = subprocess.Popen(cmd, env=env)
        self._wait_listening()

    @staticmethod
    def resolvable_name():
        """A name that is not "localhost" (curl answers that one itself)
        and resolves to 127.0.0.1, so curl's resolver thread is used."""
        for name in ('vm', socket.gethostname()):
            try:
                if socket.gethostbyname(name) == '127.0.0.1':
                    return name
            except OSError:
                pass
        return '127.0.0.1'

    def _wait_listening(self):
        deadline = time.monotonic() + WAIT * 3
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('nginx exited: %s' % self.read_log())
            try:
                socket.create_connection(('127.0.0.1', self.port), 1).close()
                return
            except OSError:
                # nginx starting is the one thing with no event to await
                time.sleep(0.05)
        raise RuntimeError('nginx does not listen')

    def read_log(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        deadline = time.monotonic() + WAIT * 6
        while time.monotonic() < deadline:
            try:
                return self.proc.wait(1)
            except subprocess.TimeoutExpired:
                # one process (valgrind runs): a signal landing just
                # before epoll_wait() is only seen at the next event
                try:
                    socket.create_connection(('127.0.0.1', self.port),
                                             1).close()
                except OSError:
                    pass
        self.proc.kill()
        self.proc.wait()
        return None


class Client:
    """A raw HTTP/1.1 client that sees every chunk as it arrives."""

    def __init__(self, path, method='GET', body=None, headers=()):
        self.sock = socket.create_connection(('127.0.0.1', NG.port), WAIT)
        head = '%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n' % (
            method, path)
        for h in headers:
            head += h + '\r\n'
        if body is not None:
            head += 'Content-Length: %d\r\n' % len(body)
        self.sock.sendall(head.encode() + b'\r\n' + (body or b''))
        self.buf = b''
        self.status = None
        self.headers = {}
        self.trailers = {}
        self.chunked = False
        self.length = None
        self.ended = False

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError('connection closed by nginx')
        self.buf += data

    def _line(self):
        while b'\r\n' not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self):
        self.status = int(self._line().split()[1])
        while True:
            line = self._line()
            if not line:
                break
            k, v = line.decode().split(':', 1)
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = 'chunked' in self.headers.get('transfer-encoding', '')
        if 'content-length' in self.headers:
            self.length = int(self.headers['content-length'])
        return self.status

    def read_chunk(self):
        """Next chunk's data (and its arrival time); None at the end."""
        if self.status is None:
            self.read_head()
        if not self.chunked:
            if self.ended:
                return None, None
            self.ended = True
            return self._exact(self.length), time.monotonic_ns()
        size = int(self._line().split(b';')[0], 16)
        if size == 0:
            while True:
                line = self._line()
                if not line:
                    break
                k, v = line.decode().split(':', 1)
                self.trailers[k.strip().lower()] = v.strip()
            self.ended = True
            return None, None
        data = self._exact(size)
        at = time.monotonic_ns()
        self._exact(2)
        return data, at

    def read_until(self, needle):
        """Reads chunks until the body so far contains needle."""
        got = b''
        while needle not in got:
            data, _ = self.read_chunk()
            if data is None:
                raise AssertionError('body ended without %r' % needle)
            got += data
        return got

    def read_all(self):
        body = b''
        while True:
            data, _ = self.read_chunk()
            if data is None:
                return body
            body += data

    def result(self):
        return self.trailers.get('x-curl-result',
                                 self.headers.get('x-curl-result'))

    def close(self):
        self.sock.close()


def get(path, **kw):
    c = Client(path, **kw)
    body = c.read_all()
    c.close()
    return c, body


NG = None
SRV = None
TLS = None
PREFIX = None


def setUpModule():
    global NG, SRV, TLS, PREFIX
    PREFIX = tempfile.mkdtemp(prefix='voice-curl-')
    os.chmod(PREFIX, 0o755)
    make_certificates(PREFIX)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(PREFIX, 'srv.crt'),
                        os.path.join(PREFIX, 'srv.key'))
    ctx.set_alpn_protocols(['http/1.1'])
    SRV = server.Server()
    SRV.start()
    TLS = server.Server(ssl=ctx)
    TLS.start()
    NG = Nginx()


def tearDownModule():
    rc = NG.stop()
    SRV.stop()
    TLS.stop()
    log = NG.read_log()
    bad = [line for line in log.splitlines()
           if re.search(r'\[(alert|emerg|crit)\]|exited on signal|'
                        r'open socket|core dumped', line)]
    print('\nnginx exit status: %s' % rc, file=sys.stderr)
    if VALGRIND:
        with open(NG.vglog, errors='replace') as f:
            vg = f.read()
        summary = [line for line in vg.splitlines()
                   if re.search(r'definitely lost|indirectly lost|'
                                r'possibly lost|ERROR SUMMARY', line)]
        print('valgrind (%s):\n%s' % (NG.vglog, '\n'.join(summary)),
              file=sys.stderr)
        # nginx itself leaves a few blocks at exit (its environment,
        # pcre2 contexts, pools): only leaks through our code count
        ours = [rec for rec in re.split(r'\n==\d+== \n', vg)
                if re.search(r'are (definitely|indirectly|possibly) lost',
                             rec)
                and re.search(r'ngx_http_voice_curl|libcurl', rec)]
        errors = re.search(r'ERROR SUMMARY: (\d+)', vg)
        if errors is None or int(errors.group(1)) != 0:
            bad.append('valgrind reports memory errors')
        if ours:
            bad.append('valgrind: leaks through the curl layer:\n'
                       + '\n'.join(ours))
    if rc != 0:
        bad.append('nginx exited with %s' % rc)
    if bad:
        raise AssertionError('error log / exit:\n' + '\n'.join(bad))


class Streaming(unittest.TestCase):

    def test_pieces_pass_one_by_one(self):
        c = Client('/p/%d/stream?id=one&n=5' % SRV.port)
        self.assertEqual(c.read_head(), 200)
        for i in range(5):
            got = c.read_until(b'<one:%d:' % i)
            # the server is still holding piece i+1 back: nginx passed
            # piece i on without waiting for more
            self.assertEqual(len(SRV.stream('one').sent), i + 1)
            self.assertEqual([int(m[1]) for m in PIECE.findall(got)], [i])
            if i < 4:
                SRV.release('one')
        self.assertEqual(c.read_all(), b'')
        self.assertEqual(c.result(), 'ok 200')
        c.close()

    def test_many_concurrent_streams_do_not_mix(self):
        n, steps = 100, 4
        ids = ['c%d' % k for k in range(n)]
        clients = [Client('/p/%d/stream?id=%s&n=%d' % (SRV.port, i, steps))
                   for i in ids]
        got = {i: b'' for i in ids}
        for step in range(steps):
            for sid in ids:
                self.assertTrue(SRV.wait_sent(sid, step + 1, WAIT))
            for sid, c in zip(ids, clients):
                got[sid] += c.read_until(b'<%s:%d:' % (sid.encode(), step))
            if step < steps - 1:
                for sid in ids:
                    SRV.release(sid)
        for sid, c in zip(ids, clients):
            got[sid] += c.read_all()
            self.assertEqual(c.status, 200)
            self.assertEqual(c.result(), 'ok 200')
            pieces = PIECE.findall(got[sid])
            self.assertEqual([p[0].decode() for p in pieces], [sid] * steps)
            self.assertEqual([int(p[1]) for p in pieces], list(range(steps)))
            c.close()

    def test_large_bodies_arrive_whole(self):
        for chunked in (1, 0):
            c, body = get('/p/%d/big?n=4000000&chunked=%d'
                          % (SRV.port, chunked))
            self.assertEqual(c.status, 200)
            self.assertEqual(c.result(), 'ok 200')
            self.assertEqual(body, server.pattern(4000000))

    def test_forwarding_latency(self):
        """Prints how long a piece takes from the server to our client."""
        n = 200
        c = Client('/p/%d/stream?id=lat&n=%d&size=64' % (SRV.port, n))
        lat = []
        for i in range(n):
            data, at = c.read_chunk()
            m = PIECE.search(data)
            self.assertEqual(int(m.group(2)), i)
            lat.append((at - int(m.group(3))) / 1e3)
            if i < n - 1:
                SRV.release('lat')
        self.assertEqual(c.read_all(), b'')
        c.close()
        lat.sort()
        print('\nforwarding latency over %d pieces: p50 %.0f us, '
              'p99 %.0f us, max %.0f us'
              % (n, lat[n // 2], lat[int(n * 0.99) - 1], lat[-1]),
              file=sys.stderr)


class Requests(unittest.TestCase):

    def test_status_codes_pass_through(self):
        for code in (401, 500):
            c, body = get('/p/%d/status?code=%d' % (SRV.port, code))
            self.assertEqual(c.status, code)
            self.assertEqual(body, b'status %d\n' % code)
            self.assertEqual(c.result(), 'ok %d' % code)

    def test_post_body_and_headers(self):
        payload = b'{"hello": "world", "n": 42}'
        c, body = get('/hdr/%d/echo' % SRV.port, method='POST', body=payload,
                      headers=['Content-Type: application/json'])
        self.assertEqual(c.result(), 'ok 200')
        echo = json.loads(body)
        self.assertEqual(echo['method'], 'POST')
        self.assertEqual(echo['body'].encode('latin-1'), payload)
        self.assertEqual(echo['headers']['authorization'],
                         'Bearer ' + SECRET)
        self.assertEqual(echo['headers']['x-voice-test'], 'yes')
        self.assertEqual(echo['headers']['content-length'],
                         str(len(payload)))
        self.assertNotIn('expect', echo['headers'])

        c, body = get('/p/%d/echo' % SRV.port)
        echo = json.loads(body)
        self.assertEqual(echo['method'], 'GET')
        self.assertEqual(echo['body'], '')

    def test_connections_are_reused(self):
        own = server.Server()
        own.start()
        try:
            ids = []
            for _ in range(4):
                c, body = get('/p/%d/conn' % own.port)
                self.assertEqual(c.result(), 'ok 200')
                ids.append(int(body))
            self.assertEqual(ids, [1, 1, 1, 1])
            self.assertEqual(own.accepted(), 1)
        finally:
            own.stop()

    def test_host_name_through_resolver(self):
        name = Nginx.resolvable_name()
        if name == '127.0.0.1':
            self.skipTest('no name for 127.0.0.1 but localhost')
        for _ in range(5):
            c, body = get('/vm/%d/status?code=200' % SRV.port)
            self.assertEqual(c.result(), 'ok 200')
            self.assertEqual(body, b'status 200\n')


    def test_interim_responses_are_skipped(self):
        c, body = get('/p/%d/interim' % SRV.port)
        self.assertEqual(c.status, 200)
        self.assertEqual(body, b'after interim\n')
        self.assertEqual(c.result(), 'ok 200')

    def test_redirects_are_not_followed(self):
        c, body = get('/p/%d/redirect' % SRV.port)
        self.assertEqual(c.status, 302)
        self.assertEqual(body, b'moved\n')
        self.assertEqual(c.result(), 'ok 302')


class Tls(unittest.TestCase):

    def test_trusted_stream(self):
        c = Client('/tls/%d/stream?id=tls&n=3' % TLS.port)
        self.assertEqual(c.read_head(), 200)
        for i in range(3):
            c.read_until(b'<tls:%d:' % i)
            self.assertEqual(len(TLS.stream('tls').sent), i + 1)
            if i < 2:
                TLS.release('tls')
        self.assertEqual(c.read_all(), b'')
        self.assertEqual(c.result(), 'ok 200')
        c.close()

    def test_trusted_large_body(self):
        c, body = get('/tls/%d/big?n=3000000&chunked=1' % TLS.port)
        self.assertEqual(c.result(), 'ok 200')
        self.assertEqual(body, server.pattern(3000000))

    def test_untrusted_is_refused(self):
        c, body = get('/tls-untrusted/%d/status?code=200' % TLS.port)
        self.assertEqual(c.status, 502)
        self.assertEqual(c.result(), 'error 0 certificate verification failed')

    def test_wrong_host_is_refused(self):
        c, body = get('/tls-wronghost/%d/status?code=200' % TLS.port)
        self.assertEqual(c.status, 502)
        self.assertEqual(c.result(), 'error 0 certificate verification failed')

    def test_no_verify(self):
        c, body = get('/tls-noverify/%d/status?code=200' % TLS.port)
        self.assertEqual(c.result(), 'ok 200')
        self.assertEqual(body, b'status 200\n')

    def test_cancel_closes_tls_connection(self):
        st = TLS.stream('tlsgone')
        c = Client('/tls/%d/stream?id=tlsgone&n=5' % TLS.port)
        c.read_until(b'<tlsgone:0:')
        c.close()
        self.assertTrue(st.closed.wait(WAIT))
        self.assertEqual(st.sent_when_closed, 1)


class Failures(unittest.TestCase):

    def test_connection_refused(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))        # bound, not listening: refused
        try:
            c, body = get('/p/%d/x' % s.getsockname()[1])
        finally:
            s.close()
        self.assertEqual(c.status, 502)
        self.assertEqual(c.result(), 'error 0 could not connect')

    def test_connect_timeout(self):
        lst = socket.socket()
        lst.bind(('127.0.0.1', 0))
        lst.listen(0)
        port = lst.getsockname()[1]
        fill = socket.create_connection(('127.0.0.1', port))
        probe = socket.socket()
        probe.setblocking(False)
        probe.connect_ex(('127.0.0.1', port))
        try:
            _, w, _ = select.select([], [probe], [], 0.3)
            if w and probe.getsockopt(socket.SOL_SOCKET,
                                      socket.SO_ERROR) == 0:
                self.skipTest('a full accept queue does not stall connect')
            c, body = get('/ct/%d/x' % port)
            self.assertEqual(c.status, 502)
            self.assertEqual(c.result(), 'error 1 connect timed out')
        finally:
            probe.close()
            fill.close()
            lst.close()

    def test_timeout_before_response(self):
        st = SRV.stream('stall')
        c, body = get('/short/%d/stall?id=stall' % SRV.port)
        self.assertEqual(c.status, 502)
        self.assertEqual(c.result(), 'error 1 timed out')
        self.assertTrue(st.closed.wait(WAIT))

    def test_timeout_in_body(self):
        st = SRV.stream('stallb')
        c, body = get('/short/%d/stall_body?id=stallb' % SRV.port)
        self.assertEqual(c.status, 200)
        self.assertIn(b'<stallb:0:', body)
        self.assertEqual(c.result(), 'error 1 timed out in body')
        self.assertTrue(st.closed.wait(WAIT))

    def test_reset_mid_body(self):
        c, body = get('/p/%d/reset?id=rst' % SRV.port)
        self.assertEqual(c.status, 200)
        self.assertIn(b'<rst:0:', body)
        self.assertRegex(c.result(), r'^error 0 ')

    def test_max_body_chunked(self):
        c, body = get('/small/%d/big?n=5000&chunked=1' % SRV.port)
        self.assertEqual(c.status, 200)
        self.assertLessEqual(len(body), 1000)
        self.assertEqual(c.result(), 'error 0 response too large')

    def test_max_body_content_length(self):
        c, body = get('/small/%d/big?n=5000' % SRV.port)
        self.assertEqual(c.status, 502)
        self.assertEqual(c.result(), 'error 0 response too large')

    def test_max_body_exactly(self):
        c, body = get('/small/%d/big?n=1000&chunked=1' % SRV.port)
        self.assertEqual(c.result(), 'ok 200')
        self.assertEqual(body, server.pattern(1000))

    def test_secrets_stay_out_of_the_log(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        try:
            c, body = get('/hdr/%d/x' % port)
        finally:
            s.close()
        self.assertEqual(c.result(), 'error 0 could not connect')
        log = NG.read_log()
        self.assertIn('voice curl: request to "127.0.0.1:%d" failed' % port,
                      log)
        self.assertNotIn(SECRET, log)


class Pause(unittest.TestCase):
    """ngx_http_voice_curl_pause(): nothing reaches the owner while a
    transfer is paused, and every byte comes after it resumes, once and
    in order."""

    def pauses(self, c):
        n, late = c.trailers['x-curl-pauses'].split()
        return int(n), int(late)

    def test_pause_inside_body_callback(self):
        # many pieces per read: the ones after the pausing call are
        # refused, kept by curl and handed over again on resume
        for chunked in (1, 0):
            c, body = get('/p/%d/big?n=2000000&chunked=%d&pause_every=65536'
                          % (SRV.port, chunked))
            self.assertEqual(c.result(), 'ok 200')
            self.assertEqual(len(body), 2000000)
            self.assertEqual(body, server.pattern(2000000))
            n, late = self.pauses(c)
            self.assertGreaterEqual(n, 2000000 // (65536 + READ) - 1)
            self.assertEqual(late, 0)

    def test_pieces_sent_while_paused_arrive_in_order(self):
        st = SRV.stream('pz')
        c = Client('/p/%d/stream?id=pz&n=5&pause_every=1&pause_ms=50'
                   % SRV.port)
        c.read_until(b'<pz:0:')
        # the rest is sent at once, while the transfer is paused
        SRV.release('pz', 4)
        self.assertTrue(SRV.wait_sent('pz', 5, WAIT))
        got = c.read_all()
        self.assertEqual(c.result(), 'ok 200')
        self.assertEqual([int(p[1]) for p in PIECE.findall(got)],
                         [1, 2, 3, 4])
        n, late = self.pauses(c)
        self.assertGreaterEqual(n, 2)
        self.assertEqual(late, 0)
        self.assertTrue(st.complete)
        c.close()

    def test_pause_from_outside_curl(self):
        # big enough to outlast several turns of the 1 ms timer even on
        # an idle loopback, where 3 MB can pass before it fires once
        n = 16000000
        c, body = get('/p/%d/big?n=%d&chunked=1&flap_ms=1' % (SRV.port, n))
        self.assertEqual(c.result(), 'ok 200')
        self.assertEqual(body, server.pattern(n))
        n, late = self.pauses(c)
        self.assertGreater(n, 0)
        self.assertEqual(late, 0)

    def test_pause_over_tls(self):
        # TLS keeps decrypted bytes of its own: the socket alone would
        # not wake curl after the resume
        c, body = get('/tls/%d/big?n=1500000&chunked=1&pause_every=40000'
                      % TLS.port)
        self.assertEqual(c.result(), 'ok 200')
        self.assertEqual(body, server.pattern(1500000))
        n, late = self.pauses(c)
        self.assertGreaterEqual(n, 1500000 // (40000 + READ) - 1)
        self.assertEqual(late, 0)

    def test_many_paused_streams(self):
        n = 20
        clients = [Client('/p/%d/big?n=300000&chunked=1&pause_every=20000'
                          '&pause_ms=2' % SRV.port) for _ in range(n)]
        for c in clients:
            body = c.read_all()
            self.assertEqual(c.result(), 'ok 200')
            self.assertEqual(body, server.pattern(300000))
            self.assertEqual(self.pauses(c)[1], 0)
            c.close()

    def test_cancel_while_paused(self):
        st = SRV.stream('pgone')
        c = Client('/p/%d/stream?id=pgone&n=5&pause_every=1&pause_ms=600000'
                   % SRV.port)
        c.read_until(b'<pgone:0:')
        SRV.release('pgone', 4)
        self.assertTrue(SRV.wait_sent('pgone', 5, WAIT))
        c.close()
        self.assertTrue(st.closed.wait(WAIT))
        # nginx goes on serving
        c, body = get('/p/%d/status?code=200' % SRV.port)
        self.assertEqual(c.result(), 'ok 200')


class Cancel(unittest.TestCase):

    def test_client_going_away_closes_upstream(self):
        st = SRV.stream('gone')
        c = Client('/p/%d/stream?id=gone&n=5' % SRV.port)
        c.read_until(b'<gone:0:')
        c.close()
        self.assertTrue(st.closed.wait(WAIT))
        # it closed while the server still held piece 1 back
        self.assertEqual(st.sent_when_closed, 1)
        self.assertFalse(st.complete)

    def test_many_clients_going_away(self):
        sts = [SRV.stream('away%d' % k) for k in range(30)]
        clients = [Client('/p/%d/stall?id=away%d' % (SRV.port, k))
                   for k in range(30)]
        for k, c in enumerate(clients):
            # the upstream request exists before the client leaves
            self.assertTrue(self._wait_attached(sts[k]))
            c.close()
        for st in sts:
            self.assertTrue(st.closed.wait(WAIT))

    @staticmethod
    def _wait_attached(st):
        with SRV.lock:
            return SRV.lock.wait_for(lambda: st.conn is not None, WAIT)

    def test_cancel_inside_body_callback(self):
        st = SRV.stream('cancel')
        c = Client('/p/%d/stream?id=cancel&n=5&cancel_after=1' % SRV.port)
        body = c.read_all()
        self.assertIn(b'<cancel:0:', body)
        self.assertEqual(c.result(), 'cancelled')
        c.close()
        self.assertTrue(st.closed.wait(WAIT))
        self.assertEqual(st.sent_when_closed, 1)
        self.assertFalse(st.complete)

    def test_abort_from_body_callback(self):
        st = SRV.stream('abort')
        c = Client('/p/%d/stream?id=abort&n=5&abort_after=1' % SRV.port)
        body = c.read_all()
        self.assertIn(b'<abort:0:', body)
        self.assertEqual(c.result(), 'abort')
        c.close()
        self.assertTrue(st.closed.wait(WAIT))
        self.assertEqual(st.sent_when_closed, 1)

    def test_work_goes_on_after_cancels(self):
        c, body = get('/p/%d/status?code=200' % SRV.port)
        self.assertEqual(c.result(), 'ok 200')


if __name__ == '__main__':
    unittest.main(verbosity=2)
