# voice_protocol vonage: the Vonage WebSocket.  The first frame is JSON
# (websocket:connected, naming the L16 rate), then binary 16-bit PCM both
# ways in 20 ms frames; the server sends no JSON of its own.  Echo goes
# through the converted path: at 16 kHz, the pipeline's own rate, the PCM
# comes back sample for sample, re-framed into exact 20 ms frames.
#
# Vonage has no message that ends a stream (a call ends with the client's
# close frame, which drops whatever has not been played), so the blocks
# that expect audio back end on the server's own voice_idle_timeout:
# close 1001, then voice_send_timeout for the client's close reply, and
# the server drops the connection.  The rest end on close 1008.

use Test::Nginx::Socket;

# After Test::Nginx::Socket, so that t/lib cannot shadow an installed one.
use FindBin;
use lib "$FindBin::Bin/lib";
use VoiceFrames;

repeat_each(1);

# status, summarised body, [error] and [alert] absent; and one test for
# each "--- error_log" pattern: 1 in TEST 7, 2 in TEST 8
plan tests => repeat_each() * (blocks() * 4 + 3);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: L16 at 16000 Hz: 20 ms frames of 640 bytes back, the same samples
--- config
    location = /voice {
        voice;
        voice_protocol vonage;
        voice_echo_delay 0;
        voice_idle_timeout 500ms;
        voice_send_timeout 100ms;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::vonage_connected('audio/l16;rate=16000',
                                'X-Caller' => '447700900000', app => 'test')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::tone(16000, 200, 440, 8000)), 640)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], content => 1) }
--- response_body_like eval
VoiceFrames::expect(
    'binary 640 x10 sha1 ' . Digest::SHA::sha1_hex(
        VoiceFrames::pcm(VoiceFrames::tone(16000, 200, 440, 8000))),
    qr/close 1001(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 2: L16 at 8000 Hz: 20 ms frames of 320 bytes
The pipeline runs at 16 kHz, so at 8 kHz the samples come back through
two resamplers: the same sound, not the same bytes, and the resamplers'
few samples of delay keep the last partial frame waiting when the stream
goes idle (9 frames of the 10 sent, or all 10).
--- config
    location = /voice {
        voice;
        voice_protocol vonage;
        voice_echo_delay 0;
        voice_idle_timeout 500ms;
        voice_send_timeout 100ms;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::vonage_connected('audio/l16;rate=8000')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::tone(8000, 200, 440, 8000)), 320)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], level => 'pcm') }
--- response_body_like eval
VoiceFrames::expect(qr/binary 320 sound x(?:9|10)/, qr/close 1001(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 3: L16 at 24000 Hz: 20 ms frames of 960 bytes
--- config
    location = /voice {
        voice;
        voice_protocol vonage;
        voice_echo_delay 0;
        voice_idle_timeout 500ms;
        voice_send_timeout 100ms;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::vonage_connected('audio/l16;rate=24000')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::tone(24000, 200, 440, 8000)), 960)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], level => 'pcm') }
--- response_body_like eval
VoiceFrames::expect(qr/binary 960 sound x(?:9|10)/, qr/close 1001(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 4: frames of other sizes, samples split between them, re-framed exactly
--- config
    location = /voice {
        voice;
        voice_protocol vonage;
        voice_echo_delay 0;
        voice_idle_timeout 500ms;
        voice_send_timeout 100ms;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::vonage_connected('audio/l16;rate=16000')
. VoiceFrames::split_frames(VoiceFrames::pcm(VoiceFrames::tone(16000, 200, 440, 8000)),
                            1, 639, 3, 1001, 555, 1, 1, 2000)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], content => 1) }
--- response_body_like eval
VoiceFrames::expect(
    'binary 640 x10 sha1 ' . Digest::SHA::sha1_hex(
        VoiceFrames::pcm(VoiceFrames::tone(16000, 200, 440, 8000))),
    qr/close 1001(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 5: a content-type other than L16 at a known rate: close 1008
--- config
    location = /voice {
        voice;
        voice_protocol vonage;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::vonage_connected('audio/l16;rate=44100')
. VoiceFrames::binary("\x00\x00" x 441)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect(qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 6: audio before websocket:connected: close 1008
--- config
    location = /voice {
        voice;
        voice_protocol vonage;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::binary("\x00\x00" x 320)
. VoiceFrames::vonage_connected('audio/l16;rate=16000')
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect(qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 7: websocket:dtmf is logged at info, the audio goes on
--- config
    location = /voice {
        voice;
        voice_protocol vonage;
        voice_echo_delay 0;
        voice_idle_timeout 500ms;
        voice_send_timeout 100ms;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::vonage_connected('audio/l16;rate=16000')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::tone(16000, 60, 440, 8000)), 640)
. VoiceFrames::text('{"event":"websocket:dtmf","digit":"#","duration":260}')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::tone(16000, 40, 440, 8000)), 640)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect('binary 640 x5', qr/close 1001(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*(?:dtmf|key|digit).*#/i
--- no_error_log
[error]
[alert]



=== TEST 8: other events, and messages without one, change nothing
An unknown event is ignored; JSON without "event" and text that is not
JSON are logged at info; the audio around them comes back whole.
--- config
    location = /voice {
        voice;
        voice_protocol vonage;
        voice_echo_delay 0;
        voice_idle_timeout 500ms;
        voice_send_timeout 100ms;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::vonage_connected('audio/l16;rate=16000')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::tone(16000, 60, 440, 8000)), 640)
. VoiceFrames::text('{"event":"websocket:media:update","content-type":"audio/l16;rate=8000"}')
. VoiceFrames::text('{"type":"session.end"}')
. VoiceFrames::text('hangup')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::tone(16000, 40, 440, 8000)), 640)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect('binary 640 x5', qr/close 1001(?: "[^"\n]*")?/)
--- error_log eval
[qr/\[info\] .*"event"/, qr/\[info\] .*JSON/]
--- no_error_log
[error]
[alert]



=== TEST 9: a second websocket:connected is not a new stream
The audio goes on at the first rate: still 640-byte frames.
--- config
    location = /voice {
        voice;
        voice_protocol vonage;
        voice_echo_delay 0;
        voice_idle_timeout 500ms;
        voice_send_timeout 100ms;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::vonage_connected('audio/l16;rate=16000')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::tone(16000, 60, 440, 8000)), 640)
. VoiceFrames::vonage_connected('audio/l16;rate=8000')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::tone(16000, 40, 440, 8000)), 640)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect('binary 640 x5', qr/close 1001(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]
