# The voice.v1 messages: what may come first, errors that end the session
# (close 1008) and errors it survives ("recoverable":true), audio formats,
# and the idle timeout.

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

=== TEST 1: binary before session.start, 1008
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::binary("\x01\x02")
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(VoiceFrames::error_line('PROTOCOL_VIOLATION', 'false'),
                    qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 2: another message type before session.start, 1008
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::text('{"type":"input.commit"}')
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(VoiceFrames::error_line('PROTOCOL_VIOLATION', 'false'),
                    qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 3: a first message that is not JSON, 1008
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::text('session.start')
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(VoiceFrames::error_line('PROTOCOL_VIOLATION', 'false'),
                    qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 4: nothing after the error and close frame, even if the client goes on
The frames after the offending one get no answer.
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::binary("\x01")
. VoiceFrames::start() . VoiceFrames::ping('late')
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(VoiceFrames::error_line('PROTOCOL_VIOLATION', 'false'),
                    qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 5: unknown message type after session.start is survived
--- config
    location = /voice {
        voice;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::text('{"type":"dance"}')
. VoiceFrames::binary("\x42")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    VoiceFrames::error_line('PROTOCOL_VIOLATION', 'true'),
                    'binary 42',
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 6: bad JSON after session.start is survived
--- config
    location = /voice {
        voice;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::text('{"type":"input.commit"')
. VoiceFrames::binary("\x43")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    VoiceFrames::error_line('PROTOCOL_VIOLATION', 'true'),
                    'binary 43',
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 7: a JSON object without "type" after session.start is survived
--- config
    location = /voice {
        voice;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::text('{"text":"hello"}')
. VoiceFrames::binary("\x44")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    VoiceFrames::error_line('PROTOCOL_VIOLATION', 'true'),
                    'binary 44',
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 8: mu-law at 8000 Hz is accepted and reported back
--- config
    location = /voice {
        voice;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::text('{"type":"session.start","audio":{"input":{"encoding":"mulaw","sample_rate":8000,"channels":1},"output":{"encoding":"mulaw","sample_rate":8000}}}')
. VoiceFrames::binary("\xff\x7f")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(
    qr/text \{"audio":\{"input":\{"channels":1,"encoding":"mulaw","sample_rate":8000\},"output":\{(?:"channels":1,)?"encoding":"mulaw","sample_rate":8000\}\},"protocol":"voice\.v1","session_id":"[^"]+","type":"session\.started"\}/,
    'text {"state":"streaming","type":"state"}',
    'binary ff7f',
    'text {"state":"closed","type":"state"}',
    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 9: an encoding the module does not know, UNSUPPORTED_FORMAT and 1008
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::text('{"type":"session.start","audio":{"input":{"encoding":"flac","sample_rate":16000,"channels":1}}}')
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(VoiceFrames::error_line('UNSUPPORTED_FORMAT', 'false'),
                    qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 10: a sample rate pcm_s16le does not come in, UNSUPPORTED_FORMAT and 1008
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::text('{"type":"session.start","audio":{"input":{"encoding":"pcm_s16le","sample_rate":44100,"channels":1}}}')
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(VoiceFrames::error_line('UNSUPPORTED_FORMAT', 'false'),
                    qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 11: no frame for voice_idle_timeout, close 1001
The server then waits voice_send_timeout for the client's close frame and
drops the connection.
--- config
    location = /voice {
        voice;
        voice_idle_timeout 200ms;
        voice_send_timeout 200ms;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
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



=== TEST 12: a second session.start is survived
--- config
    location = /voice {
        voice;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start() . VoiceFrames::start()
. VoiceFrames::binary("\x45")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    VoiceFrames::error_line('PROTOCOL_VIOLATION', 'true'),
                    'binary 45',
                    'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]
