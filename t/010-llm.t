# The language model's directives: what nginx -t refuses and why.  The
# engines are tested against their mock providers in t/llm.

use Test::Nginx::Socket;

# After Test::Nginx::Socket, so that t/lib cannot shadow an installed one.
use FindBin;
use lib "$FindBin::Bin/lib";
use VoiceFrames;

repeat_each(1);

# Configurations that must not start: dies, message, no [alert].
my $dying = grep { defined $_->must_die } blocks();

plan tests => repeat_each() * ($dying * 3 + (blocks() - $dying) * 5);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: voice_llm takes off, embedded, openai or anthropic
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_llm gpt;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "gpt" in "voice_llm", it must be "off", "embedded", "openai" or "anthropic"/
--- no_error_log
[alert]



=== TEST 2: the temperature is a number from 0 to 2
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_llm_temperature 2.5;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "2\.5" in "voice_llm_temperature", it must be a number from 0 to 2/
--- no_error_log
[alert]



=== TEST 3: voice_llm_history has bounds
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_llm_history 5000;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*value must be between 0 and 1000 turns/
--- no_error_log
[alert]



=== TEST 4: a key from an environment variable that is not set
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_llm openai;
        voice_llm_key env:VOICE_TEST_NO_SUCH_VARIABLE;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*environment variable "VOICE_TEST_NO_SUCH_VARIABLE" for the key is not set/
--- no_error_log
[alert]



=== TEST 5: voice_llm_max_text has bounds
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_llm_max_text 100k;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*value must be between 256 and 32768 bytes/
--- no_error_log
[alert]



=== TEST 6: the embedded responder's rate has bounds
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_llm_rate 0;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*value must be between 1 and 1000 tokens per second/
--- no_error_log
[alert]



=== TEST 7: voice_llm twice in one place
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_llm off;
        voice_llm embedded;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_llm" directive is duplicate/
--- no_error_log
[alert]



=== TEST 8: with no language model, text.input is taken and nothing answers
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt off;
        voice_llm off;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::text('{"type":"text.input","text":"hello"}')
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



=== TEST 9: text.input without text is refused, and the session goes on
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt off;
        voice_llm off;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::text('{"type":"text.input","text":""}')
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(
    qr/text \{"audio":\{[^\n]*\},"protocol":"voice\.v1","session_id":"[^"]+","type":"session\.started"\}/,
    'text {"state":"listening","type":"state"}',
    VoiceFrames::error_line('PROTOCOL_VIOLATION', 'true'),
    'text {"state":"closed","type":"state"}',
    'close 1000')
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 10: while a reply streams the user is still heard; session.end interrupts it
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts off;
        voice_stt off;
        voice_llm embedded;
        voice_llm_rate 1;
        voice_vad_events on;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::text('{"type":"text.input","text":"tell me a story"}')
. VoiceFrames::frames(VoiceFrames::pcm(VoiceFrames::utterance(16000, 500, 1000, 800)), 640)
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect(
    qr/text \{"audio":\{[^\n]*\},"protocol":"voice\.v1","session_id":"[^"]+","type":"session\.started"\}/,
    'text {"state":"listening","type":"state"}',
    'text {"state":"thinking","type":"state"}',
    VoiceFrames::speech_line('started', 1, [400, 700]),
    VoiceFrames::speech_line('ended', 1, [1400, 1900]),
    'text {"reason":"cancel","spoken_text":"","turn":1,"type":"response.interrupted"}',
    'text {"state":"closed","type":"state"}',
    'close 1000')
--- no_error_log
[error]
[alert]
[emerg]
