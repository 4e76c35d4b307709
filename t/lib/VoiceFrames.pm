package VoiceFrames;

# WebSocket (RFC 6455) bytes for the t/*.t suites: client handshakes and
# frames to send with "--- raw_request eval", server frames to compare
# with "--- response_body eval", and decode(), a response body filter that
# turns the server's frames into one readable line per frame.  Then test
# audio (generated signals, PCM and mu-law bytes), the messages of the
# Twilio and Vonage dialects, and summary(), a filter that folds runs of
# audio frames into one line each.
#
# Test::Base evaluates "eval" sections in its own package, so the tests
# call these functions by their full names (VoiceFrames::text(...)).

use strict;
use warnings;

use JSON::PP ();
use Digest::SHA ();
use MIME::Base64 ();

# The key of the example in RFC 6455, section 1.3; its accept value is
# s3pPLMBiTxaQ9kYGzzhZRbK+xOo=.
our $KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

our $GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

# A fixed mask keeps requests reproducible; it has no zero byte, so a
# server that forgets to unmask sees different bytes.
our $MASK = "\x37\xfa\x21\x3d";

my %OPCODE = (
    cont => 0x0, text => 0x1, binary => 0x2,
    close => 0x8, ping => 0x9, pong => 0xa,
);

my %NAME = reverse %OPCODE;

# handshake(path => '/voice', headers => [...], omit => [...])
#
# A client upgrade request.  "headers" adds or replaces header lines
# ("Name: value"); "omit" drops default headers by name.
sub handshake {
    my %o = @_;

    my $path = $o{path} // '/voice';
    my $method = $o{method} // 'GET';
    my $version = $o{version} // 'HTTP/1.1';

    my @headers = (
        [Host                    => 'localhost'],
        [Upgrade                 => 'websocket'],
        [Connection              => 'Upgrade'],
        ['Sec-WebSocket-Key'     => $KEY],
        ['Sec-WebSocket-Version' => '13'],
    );

    my %omit = map { lc($_) => 1 } @{ $o{omit} // [] };

    for my $line (@{ $o{headers} // [] }) {
        my ($k, $v) = split /:\s*/, $line, 2;
        $omit{lc $k} = 1;
        push @headers, [$k, $v, 1];
    }

    my $req = "$method $path $version\r\n";
    for my $h (@headers) {
        next if $omit{lc $h->[0]} && !$h->[2];
        $req .= "$h->[0]: $h->[1]\r\n";
    }

    return "$req\r\n";
}

sub accept_key {
    my $key = shift // $KEY;
    return MIME::Base64::encode_base64(Digest::SHA::sha1($key . $GUID), '');
}

sub length_bytes {
    my ($len, $first, $form) = @_;

    $form //= $len < 126 ? 7 : $len < 65536 ? 16 : 64;

    return pack('C', $first | $len) if $form == 7;
    return pack('Cn', $first | 126, $len) if $form == 16;
    return pack('CNN', $first | 127, int($len / 2**32), $len % 2**32);
}

# frame($opcode, $payload, fin => 1, rsv => 0, mask => 1, len => 7|16|64)
#
# A client frame.  $opcode is a number or one of cont, text, binary,
# close, ping, pong.  "rsv" is the three reserved bits as a number 0..7;
# "len" forces a length encoding.
sub frame {
    my ($opcode, $payload, %o) = @_;

    $opcode = $OPCODE{$opcode} if exists $OPCODE{$opcode};
    $payload //= '';
    utf8::encode($payload) if utf8::is_utf8($payload);

    my $fin = $o{fin} // 1;
    my $mask = $o{mask} // 1;

    my $out = pack('C', ($fin ? 0x80 : 0) | (($o{rsv} // 0) << 4) | $opcode);
    $out .= length_bytes(length $payload, $mask ? 0x80 : 0, $o{len});

    if ($mask) {
        my $key = $o{key} // $MASK;
        my $k = substr($key x (int(length($payload) / 4) + 1), 0,
                       length $payload);
        $out .= $key . ($payload ^ $k);
    } else {
        $out .= $payload;
    }

    return $out;
}

sub text   { frame('text', @_) }
sub binary { frame('binary', @_) }
sub ping   { frame('ping', @_) }
sub pong   { frame('pong', @_) }
sub cont   { frame('cont', @_) }

# close() without arguments sends an empty close payload.
sub close {
    my ($code, $reason, %o) = @_;
    my $payload = defined $code ? pack('n', $code) . ($reason // '') : '';
    return frame('close', $payload, %o);
}

# The client messages of voice.v1 that most tests send.
sub start { text('{"type":"session.start"}') }
sub end   { text('{"type":"session.end"}') }

# server_frame($opcode, $payload): an unmasked, final frame, as the server
# must send it.
sub server_frame {
    my ($opcode, $payload) = @_;
    $opcode = $OPCODE{$opcode} if exists $OPCODE{$opcode};
    $payload //= '';
    return pack('C', 0x80 | $opcode) . length_bytes(length $payload, 0)
           . $payload;
}

sub server_close {
    my ($code, $reason) = @_;
    return server_frame('close', pack('n', $code) . ($reason // ''));
}

# How decode() shows a binary payload: hex when short, else length and
# SHA-1, so that expected lines stay short.
sub binary_line {
    my $payload = shift;
    return 'binary ' . unpack('H*', $payload) if length $payload <= 32;
    return 'binary ' . length($payload) . ' bytes sha1 '
           . Digest::SHA::sha1_hex($payload);
}

my $JSON = JSON::PP->new->canonical(1);

# decode($bytes): one line per server frame:
#
#   text {"state":"streaming","type":"state"}     JSON with sorted keys
#   text-raw <bytes>                              text that is not JSON
#   binary 00ff10                                 see binary_line()
#   close 1000 "reason"                           reason only when present
#   close                                         empty close payload
#   ping <payload> / pong <payload>
#   truncated <hex>                               an incomplete last frame
#
# Anything a server must not send is shown in brackets after the opcode:
# [fin=0], [rsv=N], [masked], [long-length] (a longer length encoding than
# needed); an unknown opcode shows as "op=N".
sub decode {
    my $buf = shift // '';
    my $out = '';
    my $pos = 0;

    while ($pos < length $buf) {
        my $start = $pos;
        my $avail = length($buf) - $pos;

        if ($avail < 2) {
            $out .= 'truncated ' . unpack('H*', substr($buf, $start)) . "\n";
            last;
        }

        my ($b0, $b1) = unpack('CC', substr($buf, $pos, 2));
        $pos += 2;

        my $len = $b1 & 0x7f;
        my $need = $len == 126 ? 2 : $len == 127 ? 8 : 0;
        my $masked = $b1 & 0x80;
        $need += 4 if $masked;

        if (length($buf) - $pos < $need) {
            $out .= 'truncated ' . unpack('H*', substr($buf, $start)) . "\n";
            last;
        }

        my $long = 0;
        if ($len == 126) {
            $len = unpack('n', substr($buf, $pos, 2));
            $pos += 2;
            $long = $len < 126;
        } elsif ($len == 127) {
            my ($hi, $lo) = unpack('NN', substr($buf, $pos, 8));
            $len = $hi * 2**32 + $lo;
            $pos += 8;
            $long = $len < 65536;
        }

        my $key;
        if ($masked) {
            $key = substr($buf, $pos, 4);
            $pos += 4;
        }

        if (length($buf) - $pos < $len) {
            $out .= 'truncated ' . unpack('H*', substr($buf, $start)) . "\n";
            last;
        }

        my $payload = substr($buf, $pos, $len);
        $pos += $len;

        if ($masked) {
            $payload ^= substr($key x (int($len / 4) + 1), 0, $len);
        }

        my $op = $b0 & 0x0f;
        my $name = $NAME{$op} // "op=$op";

        my @flags;
        push @flags, 'fin=0' unless $b0 & 0x80;
        push @flags, 'rsv=' . (($b0 >> 4) & 7) if $b0 & 0x70;
        push @flags, 'masked' if $masked;
        push @flags, 'long-length' if $long;
        $name .= '[' . join(',', @flags) . ']' if @flags;

        $out .= $name . describe($op, $payload) . "\n";
    }

    return $out;
}

sub describe {
    my ($op, $payload) = @_;

    if ($op == 0x1) {
        my $obj = eval { $JSON->decode($payload) };
        return ' ' . $JSON->encode($obj) if ref $obj;
        return '-raw ' . $payload;
    }

    if ($op == 0x2 || $op == 0x0) {
        (my $line = binary_line($payload)) =~ s/^binary//;
        return $line;
    }

    if ($op == 0x8) {
        return '' if $payload eq '';
        return ' ' . unpack('H*', $payload) if length $payload < 2;
        my $code = unpack('n', $payload);
        my $reason = substr($payload, 2);
        return " $code" . ($reason eq '' ? '' : qq{ "$reason"});
    }

    return $payload eq '' ? '' : " $payload";
}

# expect(@lines): a regex for a whole decode() transcript, one item per
# line: a string is the exact line, a qr// matches the line, an array
# reference [ITEM] is an optional line, and 'STARTED' stands for the two
# lines that open every echo session with the default audio formats
# (started() gives them for other formats).
sub expect {
    my $re = '';

    for my $item (@_) {
        if (ref $item eq 'ARRAY') {
            $re .= '(?:' . line_re($item->[0]) . ')?';
        } else {
            $re .= line_re($item);
        }
    }

    return qr/\A$re\z/;
}

sub line_re {
    my $item = shift;

    return started_re() if !ref $item && $item eq 'STARTED';
    return $$item if ref $item eq 'VoiceFrames::Lines';
    return "(?:$item)\\n" if ref $item eq 'Regexp';
    return quotemeta($item) . "\\n";
}

# The audio formats a session gets without an "audio" object: pcm_s16le,
# 16000 Hz, mono, both ways ("channels" may be left out of the output).
our $DEFAULT_AUDIO = '\{'
    . '"input":\{"channels":1,"encoding":"pcm_s16le","sample_rate":16000\},'
    . '"output":\{(?:"channels":1,)?"encoding":"pcm_s16le",'
    . '"sample_rate":16000\}\}';

sub started_re {
    my $audio = shift // $DEFAULT_AUDIO;
    return 'text \{"audio":' . $audio . ',"protocol":"voice\.v1",'
           . '"session_id":"[^"]+","type":"session\.started"\}\n'
           . 'text \{"state":"streaming","type":"state"\}\n';
}

# started(input => {...}, output => {...}): the two opening lines when the
# effective formats are these exact objects.
sub started {
    my %o = @_;
    my $audio = $JSON->encode({ input => $o{input}, output => $o{output} });
    my $re = started_re(quotemeta $audio);
    return bless \$re, 'VoiceFrames::Lines';
}

# error_line($code, $recoverable): the line of an "error" message with any
# non-empty text.
sub error_line {
    my ($code, $recoverable) = @_;
    my $re = 'text \{"code":"' . quotemeta($code) . '",'
             . '"message":"(?:[^"\\\\]|\\\\.)+",'
             . '"recoverable":' . $recoverable . ',"type":"error"\}';
    return qr/$re/;
}


# ---- audio -------------------------------------------------------------
#
# Test signals as lists of 16-bit samples, and the byte forms the client
# formats give them.  Everything is computed, so a test shows exactly what
# it sends.

use constant PI => 4 * atan2(1, 1);

sub clip16 {
    my $v = int(shift);
    return $v > 32767 ? 32767 : $v < -32768 ? -32768 : $v;
}

sub nsamples {
    my ($rate, $ms) = @_;
    return int($rate * $ms / 1000 + 0.5);
}

# silence($rate, $ms): digital zeros
sub silence {
    my ($rate, $ms) = @_;
    return (0) x nsamples($rate, $ms);
}

# tone($rate, $ms, $freq, $amp): a sine
sub tone {
    my ($rate, $ms, $freq, $amp) = @_;
    return map { clip16($amp * sin(2 * PI * $freq * $_ / $rate)) }
           0 .. nsamples($rate, $ms) - 1;
}

# voiced($rate, $ms, $f0, $amp): a buzz like a held vowel, a pulse train
# at $f0 with its harmonics up to 4 kHz falling off as 1/k (a band-limited
# sawtooth), its peak scaled to $amp.
sub voiced {
    my ($rate, $ms, $f0, $amp) = @_;

    my $top = ($rate / 2 < 4000 ? $rate / 2 : 4000) - 1;
    my $harmonics = int($top / $f0);
    my @s;

    for my $i (0 .. nsamples($rate, $ms) - 1) {
        my $ph = 2 * PI * $f0 * $i / $rate;
        my $v = 0;
        $v += sin($_ * $ph) / $_ for 1 .. $harmonics;
        push @s, $v;
    }

    my $peak = 0;
    for (@s) { $peak = abs $_ if abs $_ > $peak }
    $peak ||= 1;

    return map { clip16($_ * $amp / $peak) } @s;
}

# utterance($rate, $before, $voiced, $after): silence, a held vowel (a
# 150 Hz buzz at amplitude 8000), silence; durations in milliseconds
sub utterance {
    my ($rate, $before, $voiced, $after) = @_;
    return (silence($rate, $before), voiced($rate, $voiced, 150, 8000),
            silence($rate, $after));
}

# pcm(@samples): pcm_s16le bytes
sub pcm {
    return pack('s<*', map { clip16($_) } @_);
}

# ITU-T G.711 mu-law, one sample to one byte: a sign bit, a 3-bit segment
# (the magnitude's octave once biased) and four bits within it, all bits
# inverted on the wire.
sub mulaw_byte {
    my $v = clip16(shift);

    my $sign = $v < 0 ? 0x80 : 0;
    my $mag = $v < 0 ? -$v : $v;
    $mag = 32635 if $mag > 32635;
    $mag += 0x84;

    my $seg = 7;
    $seg-- while $seg > 0 && !($mag & (0x4000 >> (7 - $seg)));

    my $mant = ($mag >> ($seg + 3)) & 0x0f;

    return ~($sign | ($seg << 4) | $mant) & 0xff;
}

sub mulaw_sample {
    my $b = ~(shift) & 0xff;

    my $seg = ($b >> 4) & 7;
    my $mag = (((($b & 0x0f) << 3) + 0x84) << $seg) - 0x84;

    return $b & 0x80 ? -$mag : $mag;
}

# mulaw(@samples): mu-law bytes
sub mulaw {
    return pack('C*', map { mulaw_byte($_) } @_);
}

# frames($bytes, $size): binary frames of $size bytes (the last may be
# shorter), each a client frame ready to send
sub frames {
    my ($bytes, $size) = @_;
    my $out = '';

    for (my $off = 0; $off < length $bytes; $off += $size) {
        $out .= binary(substr($bytes, $off, $size));
    }

    return $out;
}

# split_frames($bytes, @sizes): binary frames cut at these sizes in turn;
# what is left after them goes in one last frame
sub split_frames {
    my ($bytes, @sizes) = @_;
    my $out = '';
    my $off = 0;

    for my $n (@sizes) {
        $out .= binary(substr($bytes, $off, $n));
        $off += $n;
    }

    $out .= binary(substr($bytes, $off)) if $off < length $bytes;

    return $out;
}

# start_with(input => {...}, output => {...}): session.start naming formats
sub start_with {
    my %o = @_;
    my %audio;
    $audio{input} = $o{input} if $o{input};
    $audio{output} = $o{output} if $o{output};
    return text($JSON->encode({ type => 'session.start', audio => \%audio }));
}


# ---- Twilio Media Streams ----------------------------------------------
#
# The messages Twilio sends, shaped as it shapes them (sequence numbers,
# chunks and timestamps as strings).

our $TWILIO_SID = 'MZ18ad3ab5a668481ce02b83e7395059f0';

sub twilio_connected {
    return text('{"event":"connected","protocol":"Call","version":"1.0.0"}');
}

# twilio_start(sid => ..., seq => 1, encoding => 'audio/x-mulaw',
#              rate => 8000, channels => 1, strings => 0|1): sampleRate
# and channels are written as JSON numbers, or as strings with
# strings => 1 (Twilio has sent both).
sub twilio_start {
    my %o = @_;

    my $sid = $o{sid} // $TWILIO_SID;
    my $enc = $o{encoding} // 'audio/x-mulaw';
    my $rate = $o{rate} // 8000;
    my $ch = $o{channels} // 1;

    # bare digits unless strings are asked for; anything else is quoted
    my $num = sub { my $v = shift; $v =~ /^\d+$/ && !$o{strings}
                                   ? $v : qq{"$v"} };

    return text('{"event":"start","sequenceNumber":"' . ($o{seq} // 1)
        . '","start":{"accountSid":"AC0123456789abcdef0123456789abcdef",'
        . '"streamSid":"' . $sid . '",'
        . '"callSid":"CA0123456789abcdef0123456789abcdef",'
        . '"tracks":["inbound"],'
        . '"mediaFormat":{"encoding":"' . $enc . '",'
        . '"sampleRate":' . $num->($rate) . ','
        . '"channels":' . $num->($ch) . '},'
        . '"customParameters":{}},'
        . '"streamSid":"' . $sid . '"}');
}

# twilio_media($seq, $chunk, $bytes, sid => ..., payload => ...): one media
# message carrying $bytes of mu-law ("payload" overrides the base64)
sub twilio_media {
    my ($seq, $chunk, $bytes, %o) = @_;

    my $payload = $o{payload}
                  // MIME::Base64::encode_base64($bytes, '');

    return text('{"event":"media","sequenceNumber":"' . $seq . '",'
        . '"media":{"track":"' . ($o{track} // 'inbound') . '",'
        . '"chunk":"' . $chunk . '",'
        . '"timestamp":"' . (($chunk - 1) * 20) . '",'
        . '"payload":"' . $payload . '"},'
        . '"streamSid":"' . ($o{sid} // $TWILIO_SID) . '"}');
}

# twilio_stream($first_seq, $bytes): media messages of 160 bytes (20 ms)
# each, numbered from $first_seq, chunks from 1
sub twilio_stream {
    my ($seq, $bytes, %o) = @_;
    my $out = '';
    my $chunk = 1;

    for (my $off = 0; $off < length $bytes; $off += 160) {
        $out .= twilio_media($seq++, $chunk++, substr($bytes, $off, 160),
                             %o);
    }

    return $out;
}

sub twilio_mark {
    my ($seq, $name, %o) = @_;
    return text('{"event":"mark","sequenceNumber":"' . $seq . '",'
        . '"streamSid":"' . ($o{sid} // $TWILIO_SID) . '",'
        . '"mark":{"name":"' . $name . '"}}');
}

sub twilio_dtmf {
    my ($seq, $digit, %o) = @_;
    return text('{"event":"dtmf","streamSid":"' . ($o{sid} // $TWILIO_SID)
        . '","sequenceNumber":"' . $seq . '",'
        . '"dtmf":{"track":"inbound_track","digit":"' . $digit . '"}}');
}

sub twilio_stop {
    my ($seq, %o) = @_;
    my $sid = $o{sid} // $TWILIO_SID;
    return text('{"event":"stop","sequenceNumber":"' . $seq . '",'
        . '"stop":{"accountSid":"AC0123456789abcdef0123456789abcdef",'
        . '"callSid":"CA0123456789abcdef0123456789abcdef"},'
        . '"streamSid":"' . $sid . '"}');
}


# ---- Vonage --------------------------------------------------------------

# vonage_connected($content_type, %headers): the first frame, with any
# custom headers the application configured
sub vonage_connected {
    my ($type, %headers) = @_;
    my %msg = (event => 'websocket:connected', 'content-type' => $type,
               %headers);
    return text($JSON->encode(\%msg));
}


# ---- summaries of what the server sent --------------------------------
#
# summary($bytes, content => 0|1): like decode(), but audio is shown by
# size only and runs of alike frames fold into one line:
#
#   binary 960 x5                  five binary frames of 960 bytes
#   media MZ.. 160 x10             ten Twilio media messages for stream
#                                  MZ.., each 160 bytes once decoded
#
# With opus => 1 binary frames are Opus packets, shown by the audio each
# holds ("opus 20ms x5").  With content => 1 the line also gives the SHA-1
# of the run's audio, all frames joined ("binary 640 x5 sha1 ...").  With
# level => 'pcm' or 'mulaw' (binary frames in that format; Twilio media
# is always mu-law) each frame also says "sound" when it has a sample
# louder than 1000, else "quiet": "media MZ.. 160 sound x10".
#
# A Twilio media message is only summarised when it has exactly the
# fields "event", "streamSid" and "media", and "media" only "payload"
# holding canonical base64; anything else shows as its JSON.

sub summary {
    my ($buf, %o) = @_;
    my @lines;

    for my $f (frames_of($buf)) {
        my ($key, $audio, $shown) = summary_key($f, %o);

        if (defined $key && @lines && defined $lines[-1]{key}
            && $lines[-1]{key} eq $key)
        {
            $lines[-1]{n}++;
            $lines[-1]{audio} .= $audio;
            next;
        }

        push @lines, { key => $key, audio => $audio // '', n => 1,
                       shown => $shown };
    }

    my $out = '';

    for my $l (@lines) {
        if (!defined $l->{key}) {
            $out .= $l->{shown};
            next;
        }

        $out .= "$l->{key} x$l->{n}";
        $out .= ' sha1 ' . Digest::SHA::sha1_hex($l->{audio})
            if $o{content};
        $out .= "\n";
    }

    return $out;
}

# (key, audio bytes) for a frame that folds, or (undef, undef, its line);
# only frames decode() shows without flags ("binary ", "text ") fold
sub summary_key {
    my ($f, %o) = @_;

    if ($f->{line} =~ /^binary /) {
        return ('opus ' . opus_duration($f->{payload}), $f->{payload})
            if $o{opus};

        my $key = 'binary ' . length $f->{payload};

        if ($o{level}) {
            my @s = $o{level} eq 'mulaw'
                    ? map { mulaw_sample($_) } unpack('C*', $f->{payload})
                    : unpack('s<*', $f->{payload});
            $key .= loud(@s) ? ' sound' : ' quiet';
        }

        return ($key, $f->{payload});
    }

    if ($f->{line} =~ /^text /) {
        my $m = eval { $JSON->decode($f->{payload}) };

        if (ref $m eq 'HASH' && ($m->{event} // '') eq 'media'
            && join(',', sort keys %$m) eq 'event,media,streamSid'
            && ref $m->{media} eq 'HASH'
            && join(',', keys %{ $m->{media} }) eq 'payload'
            && !ref $m->{media}{payload}
            && canonical_base64($m->{media}{payload}))
        {
            my $audio = MIME::Base64::decode_base64($m->{media}{payload});
            my $key = "media $m->{streamSid} " . length $audio;

            if ($o{level}) {
                $key .= loud(map { mulaw_sample($_) } unpack('C*', $audio))
                        ? ' sound' : ' quiet';
            }

            return ($key, $audio);
        }
    }

    return (undef, undef, $f->{line} . "\n");
}

# some sample louder than 1000: more than the quantisation noise of any
# codec here, far less than the test signals
sub loud {
    for (@_) { return 1 if abs $_ > 1000 }
    return 0;
}

# opus_duration($packet): the audio an Opus packet holds, from its TOC
# byte (RFC 6716, 3.1): "20ms", "2.5ms", ...; "invalid" when the packet
# cannot be one.
sub opus_duration {
    my $p = shift;

    return 'invalid' if length $p == 0;

    my $toc = ord $p;
    my $config = $toc >> 3;

    # tenths of a millisecond per frame, by mode
    my $tenths = $config < 12 ? (100, 200, 400, 600)[$config % 4]
               : $config < 16 ? (100, 200)[$config % 2]
               : (25, 50, 100, 200)[$config % 4];

    my $code = $toc & 3;
    my $count = $code == 0 ? 1 : $code < 3 ? 2
              : length $p < 2 ? 0 : ord(substr $p, 1, 1) & 0x3f;

    return 'invalid' if $count == 0;

    my $ms = $tenths * $count / 10;
    return "${ms}ms";
}

sub canonical_base64 {
    my $s = shift;
    return 0 unless $s =~ m{\A(?:[A-Za-z0-9+/]{4})*
                            (?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\z}x;
    return MIME::Base64::encode_base64(MIME::Base64::decode_base64($s), '')
           eq $s;
}

# the server's frames as records: op, payload and decode()'s line
sub frames_of {
    my $buf = shift // '';
    my @frames;

    my @lines = split /\n/, decode($buf);
    my $pos = 0;

    for my $line (@lines) {
        if ($line =~ /^truncated /) {
            push @frames, { op => -1, payload => '', line => $line };
            last;
        }

        my ($b0, $b1) = unpack('CC', substr($buf, $pos, 2));
        my $len = $b1 & 0x7f;
        my $hdr = 2;

        if ($len == 126) {
            $len = unpack('n', substr($buf, $pos + 2, 2));
            $hdr += 2;
        } elsif ($len == 127) {
            my ($hi, $lo) = unpack('NN', substr($buf, $pos + 2, 8));
            $len = $hi * 2**32 + $lo;
            $hdr += 8;
        }

        my $payload = substr($buf, $pos + $hdr + ($b1 & 0x80 ? 4 : 0),
                             $len);

        # a frame with flags a server must not set (masked, fin=0, ...)
        # never folds: its line says what is wrong with it
        push @frames, { op => $b0 & 0x0f, payload => $payload,
                        line => $line };

        $pos += $hdr + ($b1 & 0x80 ? 4 : 0) + $len;
    }

    return @frames;
}

# started_as(\%input, \%output): the two opening lines of a session
# whose effective formats are these ("channels" may be left out of the
# output, as with the default formats)
sub started_as {
    my ($in, $out) = @_;

    my %o = %$out;
    delete $o{channels};
    my $json = quotemeta $JSON->encode(\%o);
    $json =~ s/^\\\{/\\{(?:"channels":1,)?/;

    my $re = started_re('\{"input":' . quotemeta($JSON->encode($in))
                        . ',"output":' . $json . '\}');
    return bless \$re, 'VoiceFrames::Lines';
}

# lines(@items): several expect() items as one; optional(@items): the
# same, present or not
sub lines {
    my $re = join '', map { line_re($_) } @_;
    return bless \$re, 'VoiceFrames::Lines';
}

sub optional {
    my $re = '(?:' . join('', map { line_re($_) } @_) . ')?';
    return bless \$re, 'VoiceFrames::Lines';
}

# speech_line('started'|'ended', $turn, [$low, $high]): the event with any
# audio_ms in [$low, $high]
sub speech_line {
    my ($what, $turn, $range) = @_;
    my $ms = '\d+';
    $ms = ms_range(@$range) if $range;
    return qr/text \{"audio_ms":$ms,"turn":$turn,"type":"speech\.$what"\}/;
}

# turn_end($turn): how a turn that ran over a cap may end: the cap's
# error, or silence after all
sub turn_end {
    my $turn = shift;
    my $error = error_line('MAX_DURATION_EXCEEDED', 'true');
    my $ended = speech_line('ended', $turn);
    return qr/$error|$ended/;
}

# a regex for the decimal integers from $low to $high ($low > 0): each
# run of numbers that shares all but its last k digits becomes one item
# ("14\d\d" for 1400..1499)
sub ms_range {
    my ($low, $high) = @_;
    my @alt;

    for (my $n = $low; $n <= $high; ) {
        my $k = 0;
        $k++ while $n % 10**($k + 1) == 0 && $n + 10**($k + 1) - 1 <= $high
                   && length($n) > $k + 1;

        push @alt, substr($n, 0, length($n) - $k) . ('\d' x $k);
        $n += 10**$k;
    }

    return '(?:' . join('|', @alt) . ')';
}

1;
