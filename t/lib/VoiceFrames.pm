package VoiceFrames;

# WebSocket (RFC 6455) bytes for the t/*.t suites: client handshakes and
# frames to send with "--- raw_request eval", server frames to compare
# with "--- response_body eval", and decode(), a response body filter that
# turns the server's frames into one readable line per frame.
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

1;
