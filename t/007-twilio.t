# voice_protocol twilio: Twilio Media Streams.  Twilio is the client and
# speaks JSON text frames only: connected, start, media (base64 mu-law,
# 20 ms each), mark, dtmf, stop.  The server answers in the same dialect
# and nothing else: media messages paced at 20 ms, a mark after every
# tenth, and no voice.v1 event ever.  What Twilio cannot be told (a bad
# message) is logged at info and dropped.
#
# Each request ends with "stop" and a close frame, or with a message that
# ends the stream, so the server closes the connection itself.

use Test::Nginx::Socket;

# After Test::Nginx::Socket, so that t/lib cannot shadow an installed one.
use FindBin;
use lib "$FindBin::Bin/lib";
use VoiceFrames;

repeat_each(1);

# status, summarised body, [error] and [alert] absent; and one test for
# each "--- error_log" pattern: 3 in TEST 3, 1 in TEST 4, 1 in TEST 7
plan tests => repeat_each() * (blocks() * 4 + 5);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a call: connected, start with numbers as strings, media, stop
Half a second of a 440 Hz tone in 25 media messages comes back as 25
media messages of 160 bytes for the same stream, with marks "1" and "2"
after the 10th and the 20th, then close 1000 once all is played.
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
        voice_echo_delay 100ms;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::twilio_connected()
. VoiceFrames::twilio_start(strings => 1)
. VoiceFrames::twilio_stream(2, VoiceFrames::mulaw(VoiceFrames::tone(8000, 500, 440, 8000)))
. VoiceFrames::twilio_stop(27)
. VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], level => 'mulaw') }
--- response_body_like eval
my $sid = $VoiceFrames::TWILIO_SID;
VoiceFrames::expect(
    "media $sid 160 sound x10",
    qq/text {"event":"mark","mark":{"name":"1"},"streamSid":"$sid"}/,
    "media $sid 160 sound x10",
    qq/text {"event":"mark","mark":{"name":"2"},"streamSid":"$sid"}/,
    "media $sid 160 sound x5",
    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 2: start with sampleRate and channels as numbers, another streamSid
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::twilio_connected()
. VoiceFrames::twilio_start(sid => 'MZ00000000000000000000000000000002',
                            rate => 8000, channels => 1)
. VoiceFrames::twilio_stream(2, VoiceFrames::mulaw(VoiceFrames::tone(8000, 100, 300, 8000)),
                             sid => 'MZ00000000000000000000000000000002')
. VoiceFrames::twilio_stop(7, sid => 'MZ00000000000000000000000000000002')
. VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], level => 'mulaw') }
--- response_body_like eval
VoiceFrames::expect(
    'media MZ00000000000000000000000000000002 160 sound x5',
    'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 3: bad base64, bad JSON and a binary frame mid-stream are dropped
Each is logged at info; the media around them is played as if they had
not come, and Twilio is told nothing.
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::twilio_connected()
. VoiceFrames::twilio_start()
. VoiceFrames::twilio_stream(2, VoiceFrames::mulaw(VoiceFrames::tone(8000, 100, 440, 8000)))
. VoiceFrames::twilio_media(7, 6, '', payload => 'not*base64!')
. VoiceFrames::text('{"event":"media","sequenceNumber":"8",')
. VoiceFrames::binary(VoiceFrames::mulaw(VoiceFrames::tone(8000, 20, 440, 8000)))
. VoiceFrames::twilio_stream(9, VoiceFrames::mulaw(VoiceFrames::tone(8000, 100, 440, 8000)))
. VoiceFrames::twilio_stop(14)
. VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], level => 'mulaw') }
--- response_body_like eval
my $sid = $VoiceFrames::TWILIO_SID;
VoiceFrames::expect(
    "media $sid 160 sound x10",
    qq/text {"event":"mark","mark":{"name":"1"},"streamSid":"$sid"}/,
    'close 1000')
--- error_log eval
[qr/\[info\] .*base64/, qr/\[info\] .*JSON/, qr/\[info\] .*binary/]
--- no_error_log
[error]
[alert]



=== TEST 4: dtmf is logged at info, the stream goes on
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::twilio_connected()
. VoiceFrames::twilio_start()
. VoiceFrames::twilio_stream(2, VoiceFrames::mulaw(VoiceFrames::tone(8000, 60, 440, 8000)))
. VoiceFrames::twilio_dtmf(5, '#')
. VoiceFrames::twilio_stream(6, VoiceFrames::mulaw(VoiceFrames::tone(8000, 40, 440, 8000)))
. VoiceFrames::twilio_stop(8)
. VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], level => 'mulaw') }
--- response_body_like eval
VoiceFrames::expect("media $VoiceFrames::TWILIO_SID 160 sound x5", 'close 1000')
--- error_log eval
qr/\[info\] .*(?:dtmf|key|digit).*#/i
--- no_error_log
[error]
[alert]



=== TEST 5: unknown events and Twilio's own marks are taken in stride
A mark Twilio plays back is one the server sent; here it names one that
was never sent, which changes nothing.
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
        voice_echo_delay 0;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::twilio_connected()
. VoiceFrames::twilio_start()
. VoiceFrames::twilio_stream(2, VoiceFrames::mulaw(VoiceFrames::tone(8000, 60, 440, 8000)))
. VoiceFrames::text('{"event":"dance","sequenceNumber":"5","streamSid":"'
                    . $VoiceFrames::TWILIO_SID . '"}')
. VoiceFrames::twilio_mark(6, '41')
. VoiceFrames::twilio_stream(7, VoiceFrames::mulaw(VoiceFrames::tone(8000, 40, 440, 8000)))
. VoiceFrames::twilio_stop(9)
. VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], level => 'mulaw') }
--- response_body_like eval
VoiceFrames::expect("media $VoiceFrames::TWILIO_SID 160 sound x5", 'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 6: stop with audio still in the echo delay line: all of it is played
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
        voice_echo_delay 300ms;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::twilio_connected()
. VoiceFrames::twilio_start()
. VoiceFrames::twilio_stream(2, VoiceFrames::mulaw(VoiceFrames::tone(8000, 100, 440, 8000)))
. VoiceFrames::twilio_stop(7)
. VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
sub { VoiceFrames::summary($_[0], level => 'mulaw') }
--- response_body_like eval
VoiceFrames::expect("media $VoiceFrames::TWILIO_SID 160 sound x5", 'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 7: media before start: close 1008 and nothing else
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::twilio_connected()
. VoiceFrames::twilio_media(2, 1, VoiceFrames::mulaw(VoiceFrames::tone(8000, 20, 440, 8000)))
. VoiceFrames::twilio_start()
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect(qr/close 1008(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*before/
--- no_error_log
[error]
[alert]



=== TEST 8: mediaFormat audio/x-alaw: close 1008
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::twilio_connected()
. VoiceFrames::twilio_start(encoding => 'audio/x-alaw')
. VoiceFrames::twilio_media(2, 1, "\xd5" x 160)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect(qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 9: mu-law at 16000 Hz (as a string): close 1008
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::twilio_connected()
. VoiceFrames::twilio_start(rate => 16000, strings => 1)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect(qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]



=== TEST 10: a voice.v1 session.start means nothing to a Twilio endpoint
It is not a Twilio "start", so the stream never starts: close 1008.
--- config
    location = /voice {
        voice;
        voice_protocol twilio;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::twilio_media(2, 1, "\xff" x 160)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::summary
--- response_body_like eval
VoiceFrames::expect(qr/close 1008(?: "[^"\n]*")?/)
--- no_error_log
[error]
[alert]
