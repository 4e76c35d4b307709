# The echo pipeline: binary frames come back unchanged and in order after
# voice_echo_delay when the formats are the same both ways, converted and
# paced in 20 ms frames when they differ; mute, response.cancel and the
# messages that change nothing, session.end and the client's close, each
# with what happens to echoes still due.
#
# Each request ends with session.end and/or a close frame, so the server
# closes the connection itself and nothing waits on the client timeout.

use Test::Nginx::Socket;

# After Test::Nginx::Socket, so that t/lib cannot shadow an installed one.
use FindBin;
use lib "$FindBin::Bin/lib";
use VoiceFrames;

repeat_each(1);

# status, decoded body, [error] and [alert] absent
plan tests => repeat_each() * (blocks() * 4);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: binary frames echoed in order, then closed state and close 1000
--- config
    location = /voice {
        voice;
        voice_echo_delay 20ms;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x00\x01")
. VoiceFrames::binary("\x02\x03\x04")
. VoiceFrames::binary("hello")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    'binary 0001',
                    'binary 020304',
                    'binary 68656c6c6f',
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 2: the default echo delay, with voice_pipeline echo given
--- config
    location = /voice {
        voice;
        voice_pipeline echo;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\xff\xfe")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    'binary fffe',
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 3: formats that differ: converted and sent as paced 20 ms frames
100 ms of 48 kHz PCM in 20 ms frames comes back as 24 kHz PCM in frames
of exactly 960 bytes (20 ms at 24 kHz): five of them, the last one padded
with silence at session.end, all before the closed state.
--- config
    location = /voice {
        voice;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::text('{"type":"session.start","audio":{"input":{"encoding":"pcm_s16le","sample_rate":48000,"channels":1},"output":{"encoding":"pcm_s16le","sample_rate":24000}}}')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::tone(48000, 100, 440, 8000)), 1920)
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], level => 'pcm') }
--- response_body_like eval
VoiceFrames::expect(
    qr/text \{"audio":\{"input":\{"channels":1,"encoding":"pcm_s16le","sample_rate":48000\},"output":\{(?:"channels":1,)?"encoding":"pcm_s16le","sample_rate":24000\}\},"protocol":"voice\.v1","session_id":"[^"]+","type":"session\.started"\}/,
    'text {"state":"streaming","type":"state"}',
    'binary 960 sound x5',
    'text {"state":"closed","type":"state"}',
    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 4: frames sent while muted are dropped
--- config
    location = /voice {
        voice;
        voice_echo_delay 10ms;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x0a")
. VoiceFrames::text('{"type":"input.mute"}')
. VoiceFrames::binary("\x0b")
. VoiceFrames::binary("\x0c")
. VoiceFrames::text('{"type":"input.unmute"}')
. VoiceFrames::binary("\x0d")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    'binary 0a',
                    'binary 0d',
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 5: response.cancel drops the echo still due; commit and text.input do not
The frame sent before response.cancel is still in the delay line when the
cancel comes, so it never comes back; the one after it does.
--- config
    location = /voice {
        voice;
        voice_echo_delay 200ms;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x01")
. VoiceFrames::text('{"type":"input.commit"}')
. VoiceFrames::text('{"type":"text.input","text":"hello"}')
. VoiceFrames::binary("\x02")
. VoiceFrames::text('{"type":"response.cancel"}')
. VoiceFrames::binary("\x03")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    'binary 03',
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 6: client close answered at once with its code, due echoes dropped
With a 10s echo delay, an answer that waited for the echo would run into
the client timeout.
--- config
    location = /voice {
        voice;
        voice_echo_delay 10s;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x01\x02")
. VoiceFrames::close(1001, 'bye')
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    ['text {"state":"closed","type":"state"}'],
                    qr/close 1001(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 7: client close without a code answered with 1000
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start() . VoiceFrames::close()
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    ['text {"state":"closed","type":"state"}'],
                    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 8: session.end without the client's close frame
The server says closed, sends close 1000, waits voice_send_timeout for the
client's close, then drops the connection.
--- config
    location = /voice {
        voice;
        voice_echo_delay 10ms;
        voice_send_timeout 200ms;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x33")
. VoiceFrames::end()
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    'binary 33',
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 9: many frames, each echoed as the same frame, in order
--- config
    location = /voice {
        voice;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. (CORE::join '', map { VoiceFrames::binary(pack 'n', $_) } 1 .. 50)
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    (map { 'binary ' . unpack('H*', pack 'n', $_) } 1 .. 50),
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 10: an empty binary frame is echoed too
--- config
    location = /voice {
        voice;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary('') . VoiceFrames::binary("\x01")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    'binary ',
                    'binary 01',
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]
