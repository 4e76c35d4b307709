# The agent pipeline and its speech-to-text directives: what nginx -t
# refuses and why, and a session that listens with no STT at all.  The
# STT engines themselves are tested against their mock providers in t/stt.

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

=== TEST 1: voice_stt takes off, embedded or deepgram
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt whisper;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "whisper" in "voice_stt", it must be "off", "embedded" or "deepgram"/
--- no_error_log
[alert]



=== TEST 2: voice_stt twice in one place
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt off;
        voice_stt off;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_stt" directive is duplicate/
--- no_error_log
[alert]



=== TEST 3: a key is never written in the configuration
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt_key dg-0123456789abcdef;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_stt_key" directive must be "env:NAME" or "file:PATH"; keys are not written in the configuration/
--- no_error_log
[alert]



=== TEST 4: a key from an environment variable that is not set
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt_key env:VOICE_TEST_NO_SUCH_VARIABLE;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*environment variable "VOICE_TEST_NO_SUCH_VARIABLE" for the key is not set/
--- no_error_log
[alert]



=== TEST 5: a key file that does not exist
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt_key file:/nonexistent/voice-key;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*open\(\) "\/nonexistent\/voice-key" failed/
--- no_error_log
[alert]



=== TEST 6: parameter names are Deepgram's shape: lower case, digits, _
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt_param Smart-Format true;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid parameter name "Smart-Format" in "voice_stt_param"/
--- no_error_log
[alert]



=== TEST 7: voice_stt_max_text has bounds
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt_max_text 64k;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*value must be between 256 and 16384 bytes/
--- no_error_log
[alert]



=== TEST 8: voice_stt_retries has bounds
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt_retries 1000;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*value must be between 0 and 100 attempts/
--- no_error_log
[alert]



=== TEST 9: voice_stt_partial_interval has bounds
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt_partial_interval 10ms;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*value must be between 50 and 10000 ms/
--- no_error_log
[alert]



=== TEST 10: the embedded decoders are per worker: http level only
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt_decoders 4;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_stt_decoders" directive is not allowed here/
--- no_error_log
[alert]



=== TEST 11: voice_stt_decoders has bounds
--- http_config
    voice_stt_decoders 0;
--- config
    location = /voice {
        voice;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*value must be between 1 and 64 decoders/
--- no_error_log
[alert]



=== TEST 12: the agent pipeline with no STT listens: state listening
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt off;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(
    qr/text \{"audio":\{[^\n]*\},"protocol":"voice\.v1","session_id":"[^"]+","type":"session\.started"\}/,
    'text {"state":"listening","type":"state"}',
    'text {"state":"closed","type":"state"}',
    'close 1000')
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 13: the agent hears the user without echoing: speech, not audio
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt off;
        voice_vad_events on;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::utterance(16000, 500, 1000, 800)), 640)
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(
    qr/text \{"audio":\{[^\n]*\},"protocol":"voice\.v1","session_id":"[^"]+","type":"session\.started"\}/,
    'text {"state":"listening","type":"state"}',
    VoiceFrames::speech_line('started', 1, [400, 700]),
    'text {"state":"transcribing","type":"state"}',
    VoiceFrames::speech_line('ended', 1, [1400, 1900]),
    'text {"state":"listening","type":"state"}',
    'text {"state":"closed","type":"state"}',
    'close 1000')
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 14: voice_stt and its settings are inherited, and harmless in echo
--- http_config
    voice_stt off;
    voice_stt_param model nova-3;
    voice_stt_buffer 64k;
--- config
    location = /voice {
        voice;
        voice_echo_delay 10ms;
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



=== TEST 15: the Deepgram URL must be a WebSocket or HTTP URL
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt deepgram;
        voice_stt_url ftp://127.0.0.1/v1/listen;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_stt_url" has an invalid URL "ftp:\/\/127\.0\.0\.1\/v1\/listen": it must start with ws:\/\/, wss:\/\/, http:\/\/ or https:\/\//
--- no_error_log
[alert]



=== TEST 16: the provider's host is resolved when the configuration is read
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt deepgram;
        voice_stt_url wss://stt.invalid/v1/listen;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_stt_url" has an invalid URL "wss:\/\/stt\.invalid\/v1\/listen": host not found/
--- no_error_log
[alert]



=== TEST 17: the audio format is the module's to say
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt deepgram;
        voice_stt_url ws://127.0.0.1:9/v1/listen;
        voice_stt_param encoding mulaw;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*voice_stt_param "encoding" cannot be set: the module sends encoding=linear16, sample_rate=16000 and channels=1/
--- no_error_log
[alert]



=== TEST 18: Deepgram's booleans are true or false
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt deepgram;
        voice_stt_url ws://127.0.0.1:9/v1/listen;
        voice_stt_param interim_results yes;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*voice_stt_param: invalid value "yes" for "interim_results"/
--- no_error_log
[alert]



=== TEST 19: utterance_end_ms needs interim results
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt deepgram;
        voice_stt_url ws://127.0.0.1:9/v1/listen;
        voice_stt_param interim_results false;
        voice_stt_param utterance_end_ms 1000;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_stt deepgram": voice_stt_param utterance_end_ms needs interim_results true/
--- no_error_log
[alert]



=== TEST 20: a Deepgram location that is valid starts, even with no key
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt deepgram;
        voice_stt_url ws://127.0.0.1:9/v1/listen;
        voice_stt_param model $arg_model;
    }
    location = /ok {
        return 200 "ok\n";
    }
--- request
GET /ok
--- error_code: 200
--- response_body
ok
--- no_error_log
[error]
[alert]
[emerg]
