# The WebSocket upgrade: accepted handshakes (101, Sec-WebSocket-Accept,
# subprotocol, origin allow-list) and every refusal with its status,
# header and text/plain body.

use Test::Nginx::Socket;

# After Test::Nginx::Socket, so that t/lib cannot shadow an installed one.
use FindBin;
use lib "$FindBin::Bin/lib";
use VoiceFrames;

repeat_each(1);

# Accepted handshakes: 8 + 6 + 5 + 5 + 5 tests; 11 refusals of 5 tests,
# three of which (405 and the two 426) check one more header.
plan tests => repeat_each() * (8 + 6 + 5 + 5 + 5 + 11 * 5 + 3);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: upgrade accepted, RFC 6455 example key
The client's close frame (code 1000) is answered with the same code, then
the server closes the connection.
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::close(1000)
--- error_code: 101
--- response_headers
Upgrade: websocket
Connection: upgrade
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
!Sec-WebSocket-Protocol
--- response_body eval
VoiceFrames::server_close(1000)
--- no_error_log
[error]
[alert]



=== TEST 2: voice.v1 selected among offered subprotocols
--- config
    location = /voice {
        voice;
        voice_pipeline echo;
    }
--- raw_request eval
VoiceFrames::handshake(headers => ['Sec-WebSocket-Protocol: chat, voice.v1'])
. VoiceFrames::close(1000)
--- error_code: 101
--- response_headers
Sec-WebSocket-Protocol: voice.v1
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
--- response_body eval
VoiceFrames::server_close(1000)
--- no_error_log
[error]
[alert]



=== TEST 3: header values as browsers send them
Connection is a token list ("keep-alive, Upgrade"), and the Upgrade value
is case-insensitive.  Another key gives another accept value.
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake(headers => ['Connection: keep-alive, Upgrade',
                                   'Upgrade: WebSocket',
                                   'Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw=='])
. VoiceFrames::close(1000)
--- error_code: 101
--- response_headers eval
"Sec-WebSocket-Accept: "
. VoiceFrames::accept_key('AAECAwQFBgcICQoLDA0ODw==')
--- response_body eval
VoiceFrames::server_close(1000)
--- no_error_log
[error]
[alert]



=== TEST 4: origin in the allow-list
--- config
    location = /voice {
        voice;
        voice_allow_origin https://a.example https://b.example;
    }
--- raw_request eval
VoiceFrames::handshake(headers => ['Origin: https://b.example'])
. VoiceFrames::close(1000)
--- error_code: 101
--- response_headers
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
--- response_body eval
VoiceFrames::server_close(1000)
--- no_error_log
[error]
[alert]



=== TEST 5: POST refused with 405, Allow naming GET
The refusals keep HTTP keep-alive, so the client half-closes to let the
server end the connection.
--- config
    location = /voice {
        voice;
    }
--- request
POST /voice
--- more_headers
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- shutdown: 1
--- error_code: 405
--- response_headers
Content-Type: text/plain
Allow: GET
--- response_body_like: GET
--- no_error_log
[error]
[alert]



=== TEST 6: HTTP/1.0 refused with 400
--- config
    location = /voice {
        voice;
    }
--- request
GET /voice HTTP/1.0
--- more_headers
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- shutdown: 1
--- error_code: 400
--- response_headers
Content-Type: text/plain
--- response_body_like: HTTP/1\.1
--- no_error_log
[error]
[alert]



=== TEST 7: no Upgrade header, 400
--- config
    location = /voice {
        voice;
    }
--- request
GET /voice
--- more_headers
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- shutdown: 1
--- error_code: 400
--- response_headers
Content-Type: text/plain
--- response_body_like: (?i)upgrade
--- no_error_log
[error]
[alert]



=== TEST 8: Connection without the upgrade token, 400
--- config
    location = /voice {
        voice;
    }
--- request
GET /voice
--- more_headers
Upgrade: websocket
Connection: close
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
--- shutdown: 1
--- error_code: 400
--- response_headers
Content-Type: text/plain
--- response_body_like: Connection
--- no_error_log
[error]
[alert]



=== TEST 9: key decoding to 10 bytes, 400
--- config
    location = /voice {
        voice;
    }
--- request
GET /voice
--- more_headers
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZQ==
Sec-WebSocket-Version: 13
--- shutdown: 1
--- error_code: 400
--- response_headers
Content-Type: text/plain
--- response_body_like: Sec-WebSocket-Key
--- no_error_log
[error]
[alert]



=== TEST 10: key of the right length but not base64, 400
--- config
    location = /voice {
        voice;
    }
--- request
GET /voice
--- more_headers
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!!==
Sec-WebSocket-Version: 13
--- shutdown: 1
--- error_code: 400
--- response_headers
Content-Type: text/plain
--- response_body_like: Sec-WebSocket-Key
--- no_error_log
[error]
[alert]



=== TEST 11: no key, 400
--- config
    location = /voice {
        voice;
    }
--- request
GET /voice
--- more_headers
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Version: 13
--- shutdown: 1
--- error_code: 400
--- response_headers
Content-Type: text/plain
--- response_body_like: Sec-WebSocket-Key
--- no_error_log
[error]
[alert]



=== TEST 12: version 8, 426 naming the version we speak
--- config
    location = /voice {
        voice;
    }
--- request
GET /voice
--- more_headers
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 8
--- shutdown: 1
--- error_code: 426
--- response_headers
Content-Type: text/plain
Sec-WebSocket-Version: 13
--- response_body_like: 13
--- no_error_log
[error]
[alert]



=== TEST 13: no version, 426
--- config
    location = /voice {
        voice;
    }
--- request
GET /voice
--- more_headers
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
--- shutdown: 1
--- error_code: 426
--- response_headers
Content-Type: text/plain
Sec-WebSocket-Version: 13
--- response_body_like: 13
--- no_error_log
[error]
[alert]



=== TEST 14: subprotocols offered without voice.v1, 400
--- config
    location = /voice {
        voice;
    }
--- request
GET /voice
--- more_headers
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
Sec-WebSocket-Protocol: chat, voice.v2
--- shutdown: 1
--- error_code: 400
--- response_headers
Content-Type: text/plain
--- response_body_like: voice\.v1
--- no_error_log
[error]
[alert]



=== TEST 15: origin not in the allow-list, 403
--- config
    location = /voice {
        voice;
        voice_allow_origin https://a.example;
    }
--- request
GET /voice
--- more_headers
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
Sec-WebSocket-Version: 13
Origin: https://evil.example
--- shutdown: 1
--- error_code: 403
--- response_headers
Content-Type: text/plain
--- response_body_like: (?i)origin
--- no_error_log
[error]
[alert]



=== TEST 16: no Origin at all passes an allow-list
Clients outside browsers send no Origin; the allow-list binds browsers.
--- config
    location = /voice {
        voice;
        voice_allow_origin https://a.example;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::close(1000)
--- error_code: 101
--- response_headers
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
--- response_body eval
VoiceFrames::server_close(1000)
--- no_error_log
[error]
[alert]
