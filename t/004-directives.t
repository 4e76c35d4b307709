# Configuration: every directive refused when its value is wrong (nginx
# must not start, and says why: the bounds, or the value it did not take),
# accepted at the ends of its range and at the http, server and location
# levels, with the inner level winning.

use Test::Nginx::Socket;

# After Test::Nginx::Socket, so that t/lib cannot shadow an installed one.
use FindBin;
use lib "$FindBin::Bin/lib";
use VoiceFrames;

repeat_each(1);

# Configurations that must not start: dies, message, no [alert].  The
# others: status, body, [error], [alert] and [emerg] absent.
my $dying = grep { defined $_->must_die } blocks();

plan tests => repeat_each() * ($dying * 3 + (blocks() - $dying) * 5);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: voice_pipeline takes echo or agent, nothing else
--- config
    location = /voice {
        voice;
        voice_pipeline agents;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "agents" in "voice_pipeline", it must be "echo" or "agent"/
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



=== TEST 21: voice_vad_silence below 300ms
--- config
    location = /voice {
        voice;
        voice_vad_silence 200ms;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*between 300 and 2000 ms/
--- no_error_log
[alert]



=== TEST 22: voice_vad_silence above 2000ms
--- config
    location = /voice {
        voice;
        voice_vad_silence 2500ms;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*between 300 and 2000 ms/
--- no_error_log
[alert]



=== TEST 23: voice_vad_silence not a time
--- config
    location = /voice {
        voice;
        voice_vad_silence soon;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_vad_silence" directive invalid value/
--- no_error_log
[alert]



=== TEST 24: voice_vad_min_speech below 20ms
--- config
    location = /voice {
        voice;
        voice_vad_min_speech 10ms;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*between 20 and 1000 ms/
--- no_error_log
[alert]



=== TEST 25: voice_vad_min_speech above 1000ms
--- config
    location = /voice {
        voice;
        voice_vad_min_speech 1001ms;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*between 20 and 1000 ms/
--- no_error_log
[alert]



=== TEST 26: voice_protocol names a dialect the module does not speak
--- config
    location = /voice {
        voice;
        voice_protocol sip;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "sip"/
--- no_error_log
[alert]



=== TEST 27: voice_protocol twice in a location
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
        voice_protocol vonage;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_protocol" directive is duplicate/
--- no_error_log
[alert]



=== TEST 28: voice_resample_quality not one of the five
--- config
    location = /voice {
        voice;
        voice_resample_quality ultra;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "ultra"/
--- no_error_log
[alert]



=== TEST 29: voice_playout_lead below one frame (20ms)
--- config
    location = /voice {
        voice;
        voice_playout_lead 10ms;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*between 20 and 1000 ms/
--- no_error_log
[alert]



=== TEST 30: voice_playout_lead above 1000ms
--- config
    location = /voice {
        voice;
        voice_playout_lead 2s;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*between 20 and 1000 ms/
--- no_error_log
[alert]



=== TEST 31: voice_playout_buffer below 100ms
--- config
    location = /voice {
        voice;
        voice_playout_buffer 50ms;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*between 100 and 600000 ms/
--- no_error_log
[alert]



=== TEST 32: voice_vad_events is on or off
--- config
    location = /voice {
        voice;
        voice_vad_events yes;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "yes" in "voice_vad_events" directive, it must be "on" or "off"/
--- no_error_log
[alert]



=== TEST 33: voice_max_utterance of zero
--- config
    location = /voice {
        voice;
        voice_max_utterance 0;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*between 1 and/
--- no_error_log
[alert]



=== TEST 34: voice_max_utterance_size not a size
--- config
    location = /voice {
        voice;
        voice_max_utterance_size 1z;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_max_utterance_size" directive invalid value/
--- no_error_log
[alert]



=== TEST 35: voice_max_utterance_size below 1k
--- config
    location = /voice {
        voice;
        voice_max_utterance_size 100;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*between 1024 and/
--- no_error_log
[alert]



=== TEST 36: the new directives at the low ends of their ranges
--- config
    location = /voice {
        voice;
        voice_protocol voice.v1;
        voice_resample_quality best;
        voice_playout_lead 20ms;
        voice_playout_buffer 100ms;
        voice_vad_events on;
        voice_vad_silence 300ms;
        voice_vad_min_speech 20ms;
        voice_max_utterance 1ms;
        voice_max_utterance_size 1k;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', 'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 37: the new directives at the high ends of their ranges
--- config
    location = /voice {
        voice;
        voice_resample_quality zero_order_hold;
        voice_playout_lead 1000ms;
        voice_playout_buffer 600s;
        voice_vad_events off;
        voice_vad_silence 2000ms;
        voice_vad_min_speech 1000ms;
        voice_max_utterance 24h;
        voice_max_utterance_size 64m;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', 'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 38: every new directive at the http, server and location levels
--- http_config
    voice_protocol twilio;
    voice_resample_quality medium;
    voice_playout_lead 40ms;
    voice_playout_buffer 5s;
    voice_vad_events on;
    voice_vad_silence 500ms;
    voice_vad_min_speech 100ms;
    voice_max_utterance 10s;
    voice_max_utterance_size 1m;
--- config
    voice_protocol vonage;
    voice_resample_quality linear;
    voice_playout_lead 60ms;
    voice_playout_buffer 2s;
    voice_vad_events off;
    voice_vad_silence 600ms;
    voice_vad_min_speech 200ms;
    voice_max_utterance 20s;
    voice_max_utterance_size 2m;

    location = /voice {
        voice;
        voice_protocol voice.v1;
        voice_resample_quality fastest;
        voice_playout_lead 100ms;
        voice_playout_buffer 1s;
        voice_vad_events on;
        voice_vad_silence 400ms;
        voice_vad_min_speech 50ms;
        voice_max_utterance 5s;
        voice_max_utterance_size 512k;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', 'text {"state":"closed","type":"state"}',
                    'close 1000')
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 39: voice_protocol set for the server applies in its locations
The location speaks Twilio: a Twilio start is accepted and its media
comes back as media messages.
--- config
    voice_protocol twilio;

    location = /voice {
        voice;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::twilio_connected()
. VoiceFrames::twilio_start()
. VoiceFrames::twilio_stream(2, VoiceFrames::mulaw(VoiceFrames::tone(8000, 40, 440, 8000)))
. VoiceFrames::twilio_stop(4)
. VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect("media $VoiceFrames::TWILIO_SID 160 x2", 'close 1000')
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 40: a location's own voice_protocol wins over the server's
--- config
    voice_protocol twilio;

    location = /voice {
        voice;
        voice_protocol voice.v1;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x01\x02")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', 'binary 0102',
                    'text {"state":"closed","type":"state"}', 'close 1000')
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 41: voice_vad_events from http and voice_vad_silence from the server
Voice, a 500 ms pause, voice: with the server's 300ms of silence that is
two turns (the default 700ms would make it one).
--- http_config
    voice_vad_events on;
--- config
    voice_vad_silence 300ms;

    location = /voice {
        voice;
        voice_echo_delay 100ms;
        voice_echo_buffer 1m;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::utterance(16000, 500, 600, 0),
                                       VoiceFrames::utterance(16000, 500, 600, 1000)), 640)
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect('STARTED',
    VoiceFrames::speech_line('started', 1),
    'text {"state":"transcribing","type":"state"}',
    VoiceFrames::speech_line('ended', 1),
    'text {"state":"listening","type":"state"}',
    VoiceFrames::speech_line('started', 2),
    'text {"state":"transcribing","type":"state"}',
    VoiceFrames::speech_line('ended', 2),
    'text {"state":"listening","type":"state"}',
    'binary 640 x160',
    'text {"state":"closed","type":"state"}',
    'close 1000')
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 42: a location turns off the voice_vad_events it inherits
--- http_config
    voice_vad_events on;
--- config
    location = /voice {
        voice;
        voice_vad_events off;
        voice_echo_delay 100ms;
        voice_echo_buffer 1m;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::utterance(16000, 500, 1000, 800)), 640)
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect('STARTED', 'binary 640 x115',
                    'text {"state":"closed","type":"state"}', 'close 1000')
--- no_error_log
[error]
[alert]
[emerg]
