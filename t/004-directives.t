# Configuration: every directive refused when its value is wrong (nginx
# must not start, and says why), and accepted at the http, server and
# location levels with the inner level winning.

use Test::Nginx::Socket;

# After Test::Nginx::Socket, so that t/lib cannot shadow an installed one.
use FindBin;
use lib "$FindBin::Bin/lib";
use VoiceFrames;

repeat_each(1);

# 17 configurations that must not start (dies, message, no [alert]) and 3
# that must (status, body, [error], [alert], [emerg] absent).
plan tests => repeat_each() * (17 * 3 + 3 * 5);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: voice_pipeline agent is refused for now
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"?voice_pipeline"? .*agent/
--- no_error_log
[alert]



=== TEST 2: unknown pipeline
--- config
    location = /voice {
        voice;
        voice_pipeline parrot;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "parrot"/
--- no_error_log
[alert]



=== TEST 3: voice_echo_delay not a time
--- config
    location = /voice {
        voice;
        voice_echo_delay soon;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_echo_delay" directive invalid value/
--- no_error_log
[alert]



=== TEST 4: voice_echo_delay negative
--- config
    location = /voice {
        voice;
        voice_echo_delay -5ms;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_echo_delay" directive invalid value/
--- no_error_log
[alert]



=== TEST 5: voice_echo_delay above its bound (60s)
--- config
    location = /voice {
        voice;
        voice_echo_delay 61s;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*\b60000\b/
--- no_error_log
[alert]



=== TEST 6: voice_idle_timeout not a time
--- config
    location = /voice {
        voice;
        voice_idle_timeout 10x;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_idle_timeout" directive invalid value/
--- no_error_log
[alert]



=== TEST 7: voice_send_timeout of zero
--- config
    location = /voice {
        voice;
        voice_send_timeout 0;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*between 1 and/
--- no_error_log
[alert]



=== TEST 8: voice_max_frame_size not a size
--- config
    location = /voice {
        voice;
        voice_max_frame_size 12q;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_max_frame_size" directive invalid value/
--- no_error_log
[alert]



=== TEST 9: voice_max_frame_size below 125, the largest control frame
--- config
    location = /voice {
        voice;
        voice_max_frame_size 100;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*\b125\b/
--- no_error_log
[alert]



=== TEST 10: voice_max_message_size not a size
--- config
    location = /voice {
        voice;
        voice_max_message_size lots;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_max_message_size" directive invalid value/
--- no_error_log
[alert]



=== TEST 11: a message limit smaller than the frame limit
--- config
    location = /voice {
        voice;
        voice_max_frame_size 8k;
        voice_max_message_size 4k;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*voice_max_message_size.*voice_max_frame_size/
--- no_error_log
[alert]



=== TEST 12: voice_send_buffer not a size
--- config
    location = /voice {
        voice;
        voice_send_buffer big;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_send_buffer" directive invalid value/
--- no_error_log
[alert]



=== TEST 13: voice_echo_buffer not a size
--- config
    location = /voice {
        voice;
        voice_echo_buffer 1z;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_echo_buffer" directive invalid value/
--- no_error_log
[alert]



=== TEST 14: voice takes no argument
--- config
    location = /voice {
        voice on;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid number of arguments in "voice" directive/
--- no_error_log
[alert]



=== TEST 15: voice belongs in a location
--- config
    voice;
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice" directive is not allowed here/
--- no_error_log
[alert]



=== TEST 16: the same directive twice in a location
--- config
    location = /voice {
        voice;
        voice_echo_delay 10ms;
        voice_echo_delay 20ms;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_echo_delay" directive is duplicate/
--- no_error_log
[alert]



=== TEST 17: voice_allow_origin needs at least one origin
--- config
    location = /voice {
        voice;
        voice_allow_origin;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid number of arguments in "voice_allow_origin" directive/
--- no_error_log
[alert]



=== TEST 18: every directive at the http, server and location levels
--- http_config
    voice_pipeline echo;
    voice_echo_delay 100ms;
    voice_max_frame_size 32k;
    voice_max_message_size 128k;
    voice_idle_timeout 30s;
    voice_send_timeout 5s;
    voice_send_buffer 128k;
    voice_echo_buffer 128k;
    voice_allow_origin https://a.example;
--- config
    voice_echo_delay 50ms;
    voice_max_frame_size 16k;
    voice_idle_timeout 20s;
    voice_allow_origin https://b.example;

    location = /voice {
        voice;
        voice_echo_delay 1ms;
        voice_max_message_size 64k;
        voice_send_timeout 2s;
        voice_send_buffer 16k;
        voice_echo_buffer 16k;
        voice_allow_origin https://c.example;
    }
--- raw_request eval
VoiceFrames::handshake(headers => ['Origin: https://c.example'])
. VoiceFrames::close(1000)
--- error_code: 101
--- response_body eval
VoiceFrames::server_close(1000)
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 19: a frame limit set for the server applies in its locations
--- config
    voice_max_frame_size 125;

    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x00" x 126)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1009(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 20: a location's own frame limit wins over the server's
--- config
    voice_max_frame_size 125;

    location = /voice {
        voice;
        voice_max_frame_size 1k;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x00" x 126)
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', VoiceFrames::binary_line("\x00" x 126),
                    'text {"state":"closed","type":"state"}', 'close 1000')
--- no_error_log
[error]
[alert]
[emerg]
