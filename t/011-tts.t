# Speech synthesis and barge-in: what nginx -t refuses and why.  The
# engines are tested against their mock providers in t/tts.

use Test::Nginx::Socket;

# After Test::Nginx::Socket, so that t/lib cannot shadow an installed one.
use FindBin;
use lib "$FindBin::Bin/lib";
use VoiceFrames;

repeat_each(1);

# Configurations that must not start: dies, message, no [alert].
my $dying = grep { defined $_->must_die } blocks();

plan tests => repeat_each() * 3 * blocks();

no_shuffle();
run_tests();

__DATA__

=== TEST 1: voice_tts takes off, embedded, cartesia, elevenlabs or openai
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts polly;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "polly" in "voice_tts", it must be "off", "embedded", "cartesia", "elevenlabs" or "openai"/
--- no_error_log
[alert]



=== TEST 2: the speed is a number from 0.25 to 4
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts_speed 5;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "5" in "voice_tts_speed", it must be a number from 0\.25 to 4/
--- no_error_log
[alert]



=== TEST 3: a phrase is 8 to 1000 characters long
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts_max_phrase 4;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_tts_max_phrase" must be from 8 to 1000/
--- no_error_log
[alert]



=== TEST 4: Cartesia's key goes as a bearer token or as X-API-Key
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts_auth basic;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "basic"/
--- no_error_log
[alert]



=== TEST 5: a key from an environment variable that is not set
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts openai;
        voice_tts_key env:VOICE_TEST_NO_SUCH_VARIABLE;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*VOICE_TEST_NO_SUCH_VARIABLE/
--- no_error_log
[alert]



=== TEST 6: voice_barge_in is a flag
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_barge_in sometimes;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*invalid value "sometimes" in "voice_barge_in" directive, it must be "on" or "off"/
--- no_error_log
[alert]



=== TEST 7: speech is set up only where the agent answers
--- config
    location = /voice {
        voice;
        voice_tts cartesia;
        voice_tts_timeout 2s;
    }
--- request
GET /t
--- error_code: 404
--- no_error_log
[alert]
[emerg]



=== TEST 8: Cartesia and ElevenLabs need a voice
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts cartesia;
        voice_tts_url ws://127.0.0.1:1/tts/websocket;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_tts cartesia": needs voice_tts_voice/
--- no_error_log
[alert]



=== TEST 9: ElevenLabs takes speeds from 0.7 to 1.2
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts elevenlabs;
        voice_tts_voice abc;
        voice_tts_speed 2;
        voice_tts_url ws://127.0.0.1:1/v1/text-to-speech/abc/stream-input;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_tts elevenlabs": voice_tts_speed must be from 0\.7 to 1\.2/
--- no_error_log
[alert]



=== TEST 10: OpenAI speech is spoken over HTTP
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_tts openai;
        voice_tts_url ws://127.0.0.1:1/v1/audio/speech;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"voice_tts openai": the URL must start with http:\/\/ or https:\/\//
--- no_error_log
[alert]



=== TEST 11: an espeak-ng voice that does not exist
--- config
    location = /voice {
        voice;
        voice_pipeline agent;
        voice_stt off;
        voice_tts embedded;
        voice_tts_voice xx-nosuch;
    }
--- must_die
--- suppress_stderr
--- error_log eval
qr/\[emerg\] .*"xx-nosuch" is not an espeak-ng voice/
--- no_error_log
[alert]
