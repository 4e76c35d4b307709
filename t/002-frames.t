# RFC 6455 framing: control frames, fragmentation, length encodings, and
# each frame error with the close code it must produce.  Client faults are
# logged at info level, never as [error].
#
# The response body (the server's frames) goes through VoiceFrames::decode,
# one line per frame, before it is matched.

use Test::Nginx::Socket;

# After Test::Nginx::Socket, so that t/lib cannot shadow an installed one.
use FindBin;
use lib "$FindBin::Bin/lib";
use VoiceFrames;

repeat_each(1);

# Every block: status, body, two no_error_log patterns; the 12 blocks of
# frame errors also look for the info line.
plan tests => repeat_each() * (blocks() * 4 + 12);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: ping answered with a pong carrying the same payload
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::ping('hello') . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', 'pong hello',
                    ['text {"state":"closed","type":"state"}'], 'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 2: empty ping, and an unsolicited pong that gets no answer
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::pong('unasked') . VoiceFrames::ping('') . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', 'pong',
                    ['text {"state":"closed","type":"state"}'], 'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 3: a fragmented message with a ping between its fragments
The pong goes out at once; the message is echoed whole, as one frame.
--- config
    location = /voice {
        voice;
        voice_echo_delay 10ms;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x01\x02", fin => 0)
. VoiceFrames::ping('p')
. VoiceFrames::cont("\x03", fin => 0)
. VoiceFrames::cont("\x04\x05")
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', 'pong p', 'binary 0102030405',
                    'text {"state":"closed","type":"state"}', 'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 4: session.start split in three fragments, a UTF-8 character split too
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake()
. VoiceFrames::text('{"type":"sess', fin => 0)
. VoiceFrames::cont(qq{ion.start","note":"\xe2\x82}, fin => 0)
. VoiceFrames::cont("\xac\"}")
. VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    ['text {"state":"closed","type":"state"}'], 'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 5: frames split across TCP segments at awkward places
The frame header, the mask and the payload each arrive in pieces.
--- config
    location = /voice {
        voice;
        voice_echo_delay 10ms;
    }
--- raw_request eval
my $f = VoiceFrames::binary("\x10\x20\x30\x40\x50\x60");
my $tail = VoiceFrames::end() . VoiceFrames::close(1000);
[VoiceFrames::handshake() . VoiceFrames::start(),
 substr($f, 0, 1), substr($f, 1, 3), substr($f, 4, 5), substr($f, 9),
 substr($tail, 0, 7), substr($tail, 7)]
--- raw_request_middle_delay: 0.02
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', 'binary 102030405060',
                    'text {"state":"closed","type":"state"}', 'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 6: 16-bit payload length both ways
--- config
    location = /voice {
        voice;
        voice_echo_delay 10ms;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary(pack 'C*', map { $_ % 256 } 0 .. 299)
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED',
                    VoiceFrames::binary_line(pack 'C*', map { $_ % 256 } 0 .. 299),
                    'text {"state":"closed","type":"state"}', 'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 7: 64-bit payload length both ways
--- config
    location = /voice {
        voice;
        voice_echo_delay 10ms;
        voice_max_frame_size 128k;
        voice_max_message_size 128k;
        voice_echo_buffer 256k;
        voice_send_buffer 256k;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x5a" x 70000)
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', VoiceFrames::binary_line("\x5a" x 70000),
                    'text {"state":"closed","type":"state"}', 'close 1000')
--- no_error_log
[error]
[alert]



=== TEST 8: unmasked client frame, 1002
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x01\x02", mask => 0)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1002(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*mask/i
--- no_error_log
[error]
[alert]



=== TEST 9: reserved bit set, 1002
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x01\x02", rsv => 4)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1002(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*(?:rsv|reserved)/i
--- no_error_log
[error]
[alert]



=== TEST 10: reserved data opcode 0x3, 1002
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::frame(0x3, "\x01")
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1002(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*opcode/i
--- no_error_log
[error]
[alert]



=== TEST 11: reserved control opcode 0xB, 1002
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::frame(0xb, "")
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1002(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*opcode/i
--- no_error_log
[error]
[alert]



=== TEST 12: fragmented ping, 1002
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::ping('ab', fin => 0)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1002(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*control/i
--- no_error_log
[error]
[alert]



=== TEST 13: ping with 126 bytes of payload, 1002
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::ping('x' x 126)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1002(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*control/i
--- no_error_log
[error]
[alert]



=== TEST 14: continuation frame with no message to continue, 1002
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::cont("\x01\x02")
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1002(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*continuation/i
--- no_error_log
[error]
[alert]



=== TEST 15: new data frame while a fragmented message is open, 1002
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x01", fin => 0)
. VoiceFrames::binary("\x02")
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1002(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*(?:continuation|fragment)/i
--- no_error_log
[error]
[alert]



=== TEST 16: invalid UTF-8 in a text frame, 1007
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::text(qq{{"type":"input.commit","x":"\xc3\x28"}})
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1007(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*UTF-?8/i
--- no_error_log
[error]
[alert]



=== TEST 17: UTF-8 made invalid only by the next fragment, 1007
The first fragment ends inside a character; the second does not finish it.
--- config
    location = /voice {
        voice;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::text(qq{{"type":"input.commit","x":"\xe2\x82}, fin => 0)
. VoiceFrames::cont(qq{("}})
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1007(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*UTF-?8/i
--- no_error_log
[error]
[alert]



=== TEST 18: frame bigger than voice_max_frame_size, 1009
--- config
    location = /voice {
        voice;
        voice_max_frame_size 125;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x00" x 126)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1009(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*(?:big|large|size|long)/i
--- no_error_log
[error]
[alert]



=== TEST 19: message bigger than voice_max_message_size, 1009
Each fragment fits voice_max_frame_size; the three together do not fit
the message limit.
--- config
    location = /voice {
        voice;
        voice_max_frame_size 125;
        voice_max_message_size 200;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x00" x 100, fin => 0)
. VoiceFrames::cont("\x00" x 100, fin => 0)
. VoiceFrames::cont("\x00" x 100)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', qr/close 1009(?: "[^"\n]*")?/)
--- error_log eval
qr/\[info\] .*(?:big|large|size|long)/i
--- no_error_log
[error]
[alert]



=== TEST 20: a frame exactly at voice_max_frame_size is fine
--- config
    location = /voice {
        voice;
        voice_max_frame_size 125;
        voice_echo_delay 10ms;
    }
--- raw_request eval
VoiceFrames::handshake() . VoiceFrames::start()
. VoiceFrames::binary("\x07" x 125)
. VoiceFrames::end() . VoiceFrames::close(1000)
--- error_code: 101
--- response_body_filters eval
\&VoiceFrames::decode
--- response_body_like eval
VoiceFrames::expect('STARTED', VoiceFrames::binary_line("\x07" x 125),
                    'text {"state":"closed","type":"state"}', 'close 1000')
--- no_error_log
[error]
[alert]
