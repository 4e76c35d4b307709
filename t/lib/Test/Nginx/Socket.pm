package Test::Nginx::Socket;

# A small stand-in for Test::Nginx::Socket (CPAN, openresty/test-nginx),
# used when that module is not installed.  It runs the same t/*.t files
# with the same meaning, but implements only the parts our suites use.
# The POD at the end lists them, with the known differences.

use strict;
use warnings;
use v5.10.1;

# Inherit Test::Base without "-Base": that option would turn on Spiffy's
# source filter for this file.  A test file's "use Test::Nginx::Socket"
# then runs Test::Base's import with this class, which makes it the
# default class for the __DATA__ blocks and exports Test::Base's and our
# functions into the test file.
use Test::Base ();
our @ISA = ('Test::Base');

use Test::More ();
use Test::LongString ();
use HTTP::Response ();
use IO::Socket::INET ();
use IO::Select ();
use File::Spec ();
use File::Path qw(remove_tree);
use List::Util qw(shuffle);
use POSIX qw(:sys_wait_h EAGAIN EINTR EWOULDBLOCK setpgid);
use Time::HiRes qw(sleep time);
use Config ();

our $VERSION = '0.01';

our @EXPORT = qw(
    run_tests repeat_each no_shuffle no_long_string
    log_level master_on master_off master_process_enabled
    workers worker_connections timeout
    server_port server_port_for_client server_addr server_name
    server_root html_dir no_root_location
    env_to_nginx add_block_preprocessor bail_out is_str
);


# ---- settings (same environment variables and defaults as CPAN's) -------

our $ServerAddr       = '127.0.0.1';
our $ServerName       = 'localhost';
our $ServerPort       = $ENV{TEST_NGINX_SERVER_PORT}
                        || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $NginxBinary      = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $LoadModules      = $ENV{TEST_NGINX_LOAD_MODULES};
our $LogLevel         = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcess    = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $Timeout          = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $NoShuffle        = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $Verbose          = $ENV{TEST_NGINX_VERBOSE};
our $Workers          = 1;
our $WorkerConnections = 64;
our $RepeatEach       = 1;
our $NoLongString     = 0;
our $NoRootLocation   = 0;
our @EnvToNginx;
our @BlockPreprocessors;

our $ServRoot = $ENV{TEST_NGINX_SERVROOT}
                || File::Spec->rel2abs('t/servroot');
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";

# The nginx we started (our child) and how far the error log was read.
our $NginxPid;
our $ErrLogPos = 0;
our $CurrentName = '';


# ---- functions a test file may call ---------------------------------------

sub repeat_each {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub no_shuffle ()     { $NoShuffle = 1 }
sub no_long_string () { $NoLongString = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub master_on ()      { $MasterProcess = 'on' }
sub master_off ()     { $MasterProcess = 'off' }

sub master_process_enabled {
    return $MasterProcess unless @_;
    $MasterProcess = shift() ? 'on' : 'off';
}

sub log_level          { @_ ? ($LogLevel = shift) : $LogLevel }
sub workers            { @_ ? ($Workers = shift) : $Workers }
sub worker_connections { @_ ? ($WorkerConnections = shift)
                             : $WorkerConnections }
sub timeout            { @_ ? ($Timeout = shift) : $Timeout }
sub server_port        { @_ ? ($ServerPort = shift) : $ServerPort }
sub server_port_for_client { @_ ? ($ServerPortForClient = shift)
                                 : $ServerPortForClient }
sub server_addr        { @_ ? ($ServerAddr = shift) : $ServerAddr }
sub server_name        { @_ ? ($ServerName = shift) : $ServerName }
sub server_root ()     { $ServRoot }
sub html_dir ()        { $HtmlDir }

sub env_to_nginx {
    for my $v (@_) {
        die "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub add_block_preprocessor (&) {
    unshift @BlockPreprocessors, shift;
}

sub bail_out {
    stop_nginx();
    Test::More::BAIL_OUT(join '', @_);
}

sub is_str {
    my ($got, $expected, $desc) = @_;

    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }

    if ($NoLongString) {
        return Test::More::is($got, $expected, $desc);
    }

    return Test::LongString::is_string($got, $expected, $desc);
}


# ---- the run ---------------------------------------------------------------

sub run_tests () {
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;

    local $SIG{PIPE} = 'IGNORE';

    # nginx runs in its own process group: stop it when we are stopped.
    local $SIG{INT} = sub { stop_nginx(); exit 130 };
    local $SIG{TERM} = sub { stop_nginx(); exit 143 };

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;

    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', "$0 " . $block->name);
        run_block($block);
    }

    stop_nginx();
}

sub run_block {
    my $block = shift;

    return if defined $block->SKIP;

    my $name = $block->name;
    $CurrentName = $name;

    check_eval_sections($block);

    my $config = $block->config;
    if (!defined $config) {
        bail_out("$name - No '--- config' section specified");
    }

    $config = expand_env($config, $name);

    stop_nginx();
    stop_stale_nginx();
    setup_server_root();
    write_config_file($block, $config);

    if (defined $block->must_die) {
        run_must_die($block);
        return;
    }

    start_nginx($block);

    $ErrLogPos = 0;

    for my $i (0 .. $RepeatEach - 1) {
        run_request($block, $i);
    }

    stop_nginx();
    keep_error_log($block);
}

# TEST_NGINX_ERROR_LOG names a file that collects every block's log.
sub keep_error_log {
    my $block = shift;
    my $all = $ENV{TEST_NGINX_ERROR_LOG} or return;

    open my $in, '<', $ErrLogFile or return;
    open my $out, '>>', $all or bail_out("Can't append to $all: $!");
    print $out "\n=== $0 ", $block->name, "\n", <$in>;
    close $out;
    close $in;
}

# Test::Base's "eval" filter hands back Perl's error message as the value
# when the code does not compile; stop there rather than send it as data.
sub check_eval_sections {
    my $block = shift;
    my $map = $block->_section_map || {};

    for my $section (sort keys %$map) {
        next unless ($map->{$section}{filters} // '') =~ /\beval\b/;

        my $value = $block->$section;
        next if !defined $value || ref $value;

        if ($value =~ /at \(eval \d+\) line \d+/) {
            bail_out($block->name . " - the \"--- $section eval\" code "
                     . "failed: $value");
        }
    }
}

sub run_must_die {
    my $block = shift;
    my $name = $block->name;
    my $must_die = $block->must_die;

    for my $i (0 .. $RepeatEach - 1) {
        $ErrLogPos = 0;

        my ($status, $running) = start_nginx($block, 1);

        if ($running) {
            Test::More::fail("$name - die as expected (nginx started)");
            warn "WARNING: $name - nginx must die but it does not; "
                 . "stopping it\n";

        } elsif ($status & 0x7f) {
            Test::More::fail("$name - nginx was killed by signal "
                             . ($status & 0x7f));

        } elsif ($must_die =~ /^\s*(\d+)\s*$/) {
            Test::More::is($status >> 8, $1,
                           "$name - die with the expected exit code");

        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        check_error_log($block, $i, error_log_data());
        stop_nginx();
    }

    keep_error_log($block);
}


# ---- servroot and nginx.conf -----------------------------------------------

sub setup_server_root {
    if (-d $ServRoot) {
        # Remove only what we create, in case the variable points somewhere
        # that holds other files too.
        remove_tree($ConfDir, $LogDir, $HtmlDir,
                    glob("$ServRoot/*_temp"), glob("$ServRoot/*_cache"));
    }

    for my $dir ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        next if -d $dir;
        mkdir $dir or bail_out("Failed to create $dir: $!");
    }

    open my $out, '>', "$HtmlDir/index.html"
        or bail_out("Can't write $HtmlDir/index.html: $!");
    print $out '<html><head><title>It works!</title></head>'
               . '<body>It works!</body></html>';
    close $out;
}

sub expand_env {
    my ($text, $name) = @_;

    return undef unless defined $text;

    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        defined $ENV{$1} ? $ENV{$1}
                         : bail_out("$name - No environment $1 defined.\n")
    }eg;

    return $text;
}

my $NginxV;

sub write_config_file {
    my ($block, $config) = @_;
    my $name = $block->name;

    my $http_config = expand_env($block->http_config // '', $name);
    my $main_config = $block->main_config // '';
    my $post_main_config = expand_env($block->post_main_config // '', $name);
    my $log_level = $block->log_level || $LogLevel;

    if ($LoadModules) {
        my @modules = map { "load_module $_;" } grep { $_ }
                      split /\s+/, $LoadModules;
        $main_config = join ' ', @modules, $main_config;
    }

    $main_config = expand_env($main_config, $name);

    $NginxV //= `$NginxBinary -V 2>&1`;

    my @temp_paths;
    for my $m (qw(fastcgi scgi uwsgi)) {
        push @temp_paths, "${m}_temp_path $ServRoot/${m}_temp;"
            unless $NginxV =~ /--without-http_${m}_module/;
    }
    unshift @temp_paths, "proxy_temp_path $ServRoot/proxy_temp;"
        unless $http_config =~ /\bproxy_temp_path\b/;
    unshift @temp_paths,
            "client_body_temp_path $ServRoot/client_body_temp;"
        unless $http_config =~ /\bclient_body_temp_path\b/;

    my $env = join '', map { my $v = /\s/ ? "'$_'" : $_; "env $v;\n" }
                       @EnvToNginx;

    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    # The same layout as the CPAN module writes: the test's main_config
    # (after the load_module lines), its http_config before the default
    # server on the test port, and its config inside that server.  nginx
    # runs in the foreground here ("daemon off") as our own child process.
    my $user = $> == 0 ? "user root;\n" : '';

    open my $out, '>', $ConfFile or bail_out("Can't write $ConfFile: $!");
    print $out <<"_EOC_";
worker_processes  $Workers;
daemon off;
master_process $MasterProcess;
error_log $ErrLogFile $log_level;
pid       $PidFile;
$env
$main_config

http {
    access_log $AccLogFile; @temp_paths

    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config
    server {
        listen          $ServerPort;
        server_name     '$ServerName';

        client_max_body_size 30M;

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

$post_main_config

events {
    accept_mutex off;

    worker_connections  $WorkerConnections;
}
$user
_EOC_
    close $out;
}


# ---- starting and stopping nginx ------------------------------------------

# Starts nginx and waits until its pid file names it, which nginx writes
# after its listening sockets exist (so connections are queued from then
# on).  With $may_die set, returns (wait status, 0) if nginx exits first,
# or (0, 1) when it came up.  Otherwise a failed start bails out.
sub start_nginx {
    my ($block, $may_die) = @_;
    my $name = $block->name;

    my $found = $NginxBinary =~ m{/}
                ? -x $NginxBinary
                : grep { -x "$_/$NginxBinary" } split /:/, $ENV{PATH} // '';
    bail_out("$name - Cannot find the nginx executable ($NginxBinary)")
        unless $found;

    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile,
               '-e', $ErrLogFile);

    warn "starting: @cmd\n" if $Verbose;

    my $pid = fork();
    bail_out("$name - fork() failed: $!") unless defined $pid;

    if ($pid == 0) {
        # Own process group, so that a Ctrl-C meant for prove does not
        # reach nginx before we stop it ourselves.
        setpgid(0, 0);
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null' if defined $block->suppress_stderr;
        { exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }

    $NginxPid = $pid;

    my $deadline = time + 30;
    my $step = 0.002;

    for (;;) {
        my $r = waitpid($pid, WNOHANG);

        if ($r == $pid) {
            my $status = $?;
            undef $NginxPid;

            return ($status, 0) if $may_die;

            warn "error.log:\n" . log_tail(20);
            bail_out("$name - Cannot start nginx using command \"@cmd\" "
                     . "(status code $status)");
        }

        if (pid_file_names($pid)) {
            return (0, 1);
        }

        if (time > $deadline) {
            bail_out("$name - nginx did not write its pid file in time");
        }

        sleep $step;
        $step *= 2 if $step < 0.05;
    }
}

sub pid_file_names {
    my $pid = shift;

    open my $in, '<', $PidFile or return 0;
    my $content = do { local $/; <$in> } // '';
    close $in;

    return $content =~ /^\s*(\d+)\s*$/ && $1 == $pid;
}

# An nginx left running by an interrupted earlier run would hold the port.
sub stop_stale_nginx {
    return unless -f $PidFile;

    open my $in, '<', $PidFile or return;
    my $pid = do { local $/; <$in> } // '';
    close $in;

    return unless $pid =~ /^\s*(\d+)\s*$/;
    $pid = $1;
    return if defined $NginxPid && $pid == $NginxPid;

    my $cmdline = '';
    if (open my $c, '<', "/proc/$pid/cmdline") {
        $cmdline = do { local $/; <$c> } // '';
        close $c;
    }

    return unless $cmdline =~ /nginx/;

    warn "WARNING: stopping a stale nginx (pid $pid)\n";
    kill 'QUIT', $pid;

    my $deadline = time + $Timeout;
    while (kill(0, $pid) && time < $deadline) {
        sleep 0.02;
    }

    kill 'KILL', $pid if kill 0, $pid;
    unlink $PidFile;
}

# Graceful stop (SIGQUIT, as the CPAN module does), then whatever the
# log gained meanwhile is scanned for alerts: they are reported as
# warnings, never as test results, like the CPAN module's own checks.
sub stop_nginx {
    return unless defined $NginxPid;

    my $pid = $NginxPid;
    undef $NginxPid;

    kill 'QUIT', $pid;

    my $deadline = time + $Timeout;
    my $step = 0.002;
    my $exited = 0;

    for (;;) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid || $r == -1) {
            $exited = 1;
            last;
        }
        last if time > $deadline;
        sleep $step;
        $step *= 2 if $step < 0.05;
    }

    if (!$exited) {
        warn "WARNING: $CurrentName - nginx (pid $pid) did not quit within "
             . "${Timeout}s; killing it\n";
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
        waitpid($pid, 0);

    } elsif ($? & 0x7f) {
        warn "WARNING: $CurrentName - nginx exited on signal "
             . ($? & 0x7f) . " while stopping\n";
    }

    my $lines = error_log_data();
    for my $line (@$lines) {
        if ($line =~ /\[(?:alert|crit|emerg)\]/) {
            warn "WARNING: $CurrentName - at shutdown: " . fmt_str($line)
                 . "\n";
        }
    }
}

# True when nginx and all its processes are blocked waiting for events.
# Everything an event handler logs is written (error_log is unbuffered)
# before the process waits again, so once a response has been read to its
# end, an idle nginx has logged all it will log about that request.
my %WaitSyscalls = (
    x86_64  => { map { $_ => 1 } 7, 23, 34, 61, 130, 232, 270, 271, 281,
                                 441 },
    aarch64 => { map { $_ => 1 } 22, 72, 73, 133, 260, 441 },
);

sub nginx_processes {
    my $root = shift;
    my %parent;

    opendir my $dh, '/proc' or return ($root);
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open my $in, '<', "/proc/$p/stat" or next;
        my $stat = <$in> // '';
        close $in;
        $parent{$p} = $1 if $stat =~ /\)\s+\S\s+(\d+)/;
    }
    closedir $dh;

    my @all = ($root);
    for (my $i = 0; $i < @all; $i++) {
        push @all, grep { $parent{$_} == $all[$i] } keys %parent;
    }

    return @all;
}

sub process_idle {
    my $pid = shift;

    open my $in, '<', "/proc/$pid/stat" or return 1;    # gone
    my $stat = <$in> // '';
    close $in;

    my ($state) = $stat =~ /\)\s+(\S)/;
    return 1 if !defined $state || $state eq 'Z';
    return 0 if $state ne 'S';

    my $arch = $Config::Config{archname} =~ /^(x86_64|aarch64)/ ? $1 : '';

    if ($arch && open my $sc, '<', "/proc/$pid/syscall") {
        my $line = <$sc> // '';
        close $sc;
        return $WaitSyscalls{$arch}{$1} ? 1 : 0 if $line =~ /^(\d+)\s/;
        return 0 if $line =~ /^running/;
    }

    if (open my $wc, '<', "/proc/$pid/wchan") {
        my $wchan = <$wc> // '';
        close $wc;
        return 1 if $wchan =~ /epoll|poll|select|sigsuspend|pause|wait4/;
        return 0 if $wchan =~ /\w/ && $wchan ne '0';
    }

    return undef;
}

sub wait_nginx_idle {
    return unless defined $NginxPid;

    my $deadline = time + $Timeout;
    my $idle_seen = 0;

    for (;;) {
        my $all_idle = 1;
        for my $p (nginx_processes($NginxPid)) {
            my $idle = process_idle($p);
            if (!defined $idle) {
                # No way to look inside the process: give it the short
                # grace time the CPAN module always gives.
                sleep 0.045;
                return;
            }
            $all_idle &&= $idle;
        }

        # Twice in a row, so that an event the kernel is still delivering
        # (our own socket's close) is not missed.
        if ($all_idle) {
            return if ++$idle_seen >= 2;
        } else {
            $idle_seen = 0;
        }

        if (time > $deadline) {
            warn "WARNING: $CurrentName - nginx still busy after "
                 . "${Timeout}s\n";
            return;
        }

        sleep 0.002;
    }
}

sub log_tail {
    my $n = shift;
    open my $in, '<', $ErrLogFile or return "(no error log)\n";
    my @lines = <$in>;
    close $in;
    splice @lines, 0, @lines - $n if @lines > $n;
    return join '', @lines;
}

sub error_log_data {
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogPos, 0 if $ErrLogPos > 0;
    my @lines = <$in>;
    $ErrLogPos = tell $in;
    close $in;
    return \@lines;
}


# ---- one request -----------------------------------------------------------

sub run_request {
    my ($block, $repeat_idx) = @_;
    my $name = $block->name;

    my $bits = request_bits($block);

    my $timeout = parse_time($block->timeout) // $Timeout;

    my ($raw, $head_req) = send_request($block, $bits, $timeout);

    if (!defined $block->ignore_response) {
        my ($res, $raw_headers, $left) = parse_response($name, $raw // '');

        if (defined $left && length $left) {
            (my $l = $left) =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}',
                                                               ord $1)/eg;
            warn "WARNING: $name - unexpected extra bytes after last chunk "
                 . "in response: \"$l\"\n";
        }

        check_error_code($block, $res);
        check_raw_response_headers($block, $raw_headers);
        check_response_headers($block, $res, $raw_headers);
        transform_response_body($block, $res);
        check_response_body($block, $res, $repeat_idx);
    }

    # nginx may still be writing about this request after closing it.
    wait_nginx_idle();

    my $died = 0;
    if (defined $NginxPid && waitpid($NginxPid, WNOHANG) == $NginxPid) {
        $died = $? || 1;
        undef $NginxPid;
    }

    check_error_log($block, $repeat_idx, error_log_data());

    if ($died) {
        Test::More->builder->no_ending(1);
        Test::More::fail("$name - nginx exited during the test (wait "
                         . "status $died)");
        start_nginx($block) if $repeat_idx < $RepeatEach - 1;
    }
}

sub parse_time {
    my $t = shift;
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    return $1 if $t =~ /^([\d.]+)s?$/;
    return $t;
}

# The request as a list of byte strings, written one after another.
sub request_bits {
    my $block = shift;
    my $name = $block->name;

    if (defined $block->raw_request) {
        my $raw = $block->raw_request;
        return ref $raw eq 'ARRAY' ? [@$raw] : [$raw];
    }

    my $request = $block->request;
    bail_out("$name - request empty") unless defined $request;
    bail_out("$name - only a plain string is supported in --- request")
        if ref $request;

    while ($request =~ s/^\s*\#[^\n]+\s+|^\s+//gs) {
        # leading comments and blank space
    }

    my ($first, $content) = split /\n/, $request, 2;
    $content //= '';

    my ($meth, $url, $ver) = $first =~ /^(\S+)(?:\s+(\S+))?(?:\s+(\S+))?\s*$/
        or bail_out("$name - Request line is not valid: \"$first\"");
    $url //= '/';
    $ver //= 'HTTP/1.1';

    my $more = '';
    my $chunked = 0;
    for my $h (split /\n+/, $block->more_headers // '') {
        next if $h =~ /^\s*\#/;
        my ($k, $v) = split /:\s*/, $h, 2;
        $v //= '';
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $more .= "$k: $v\r\n";
    }

    my $len = '';
    if (!$chunked && $content ne '' && $more !~ /(?:^|\n)Content-Length:/) {
        $content =~ s/^\s+|\s+$//gs;
        $len = 'Content-Length: ' . length($content) . "\r\n";
    }

    my $headers = '';
    $headers .= "Host: $ServerName\r\n" if $more !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: close\r\n"
        if $more !~ /(?:^|\n)Connection/msi;

    return ["$meth $url $ver\r\n$headers$more$len\r\n$content"];
}

# Writes the bits and reads until the server closes the connection.  The
# timeout bounds the wait between two socket events, not the total.
sub send_request {
    my ($block, $bits, $timeout) = @_;
    my $name = $block->name;

    my @bits = @$bits;
    my $head_req = (join '', @bits) =~ /^\s*HEAD\s+/ ? 1 : 0;

    my $sock = IO::Socket::INET->new(
        PeerAddr => $ServerAddr,
        PeerPort => $ServerPortForClient,
        Proto    => 'tcp',
        Timeout  => $timeout,
    );

    if (!$sock) {
        Test::More->builder->no_ending(1);
        Test::More::fail("$name - Can't connect to "
                         . "$ServerAddr:$ServerPortForClient: $!\n"
                         . log_tail(10));
        return (undef, $head_req);
    }

    $sock->blocking(0);

    my $resp = '';
    my $wbuf = shift @bits;
    my $woff = 0;
    my $writing = defined $wbuf;
    my $middle_delay = parse_time($block->raw_request_middle_delay);

    my $rsel = IO::Select->new($sock);

    for (;;) {
        my $wsel = $writing ? IO::Select->new($sock) : undef;
        my ($r, $w) = IO::Select->select($rsel, $wsel, undef, $timeout);

        if (!$r && !$w) {
            next if $! == EINTR;

            close $sock;
            if (!defined $block->abort) {
                Test::More->builder->no_ending(1);
                Test::More::fail("ERROR: client socket timed out - $name\n");
            }
            return ($resp, $head_req);
        }

        if ($w && @$w) {
            for (;;) {
                my $rest = length($wbuf) - $woff;

                if ($rest > 0) {
                    my $n = syswrite($sock, $wbuf, $rest, $woff);
                    if (!defined $n) {
                        last if $! == EAGAIN || $! == EWOULDBLOCK;
                        # The server went away early: stop writing, keep
                        # what it said.
                        warn "WARNING: $name - write failed: $!\n";
                        $writing = 0;
                        last;
                    }
                    $woff += $n;
                    next;
                }

                if (!@bits) {
                    $writing = 0;
                    my $how = $block->shutdown;
                    if (defined $how) {
                        $how = 1 if $how !~ /\d/;
                        shutdown($sock, $how);
                    }
                    last;
                }

                $wbuf = shift @bits;
                $woff = 0;
                sleep $middle_delay if $middle_delay;
            }
        }

        if ($r && @$r) {
            for (;;) {
                my $buf;
                my $n = sysread($sock, $buf, 65536);

                if (!defined $n) {
                    last if $! == EAGAIN || $! == EWOULDBLOCK;
                    warn "WARNING: $name - HTTP response read failure: $!\n";
                    close $sock;
                    return ($resp, $head_req);
                }

                if ($n == 0) {
                    close $sock;
                    return ($resp, $head_req);
                }

                $resp .= $buf;
            }
        }
    }
}

sub parse_response {
    my ($name, $raw) = @_;

    my $raw_headers = '';
    $raw_headers = $1 if $raw =~ /(.*?\r\n)\r\n/s;

    my $res = HTTP::Response->parse($raw);
    my $code = $res->code;

    if (defined $code && $code !~ /^\d+$/) {
        undef $code;
        $res->code(undef);
    }

    # After 101 (or 304) the rest is not an HTTP body: keep it as it came.
    return ($res, $raw_headers) if $code && ($code == 101 || $code == 304);

    my $left;
    my $enc = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');

    if (defined $enc && $enc eq 'chunked') {
        my $body = $res->content // '';
        my $decoded = '';

        for (;;) {
            if ($body =~ /\G0[ \t]*\r\n\r\n/gc) {
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }

            if ($body =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                if (length($body) - pos($body) < $size + 2) {
                    Test::More->builder->no_ending(1);
                    Test::More::fail("$name - invalid chunked data "
                                     . "received (not enough octets)");
                    return;
                }
                $decoded .= substr($body, pos($body), $size);
                pos($body) += $size;
                if ($body !~ /\G\r\n/gc) {
                    Test::More->builder->no_ending(1);
                    Test::More::fail("$name - invalid chunked data "
                                     . "received (expected CRLF).");
                    return;
                }
                next;
            }

            Test::More->builder->no_ending(1);
            Test::More::fail("$name - no last chunk found - $body");
            return;
        }

        $res->content($decoded);

    } elsif (defined $len && $len =~ /^\d+$/) {
        my $body = $res->content // '';
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got " . length($body) . "\n";
        } elsif (length $body > $len) {
            $left = substr $body, $len;
            $res->content(substr $body, 0, $len);
        }
    }

    return ($res, $raw_headers, $left);
}


# ---- checks ----------------------------------------------------------------

sub check_error_code {
    my ($block, $res) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';

    if (defined $block->error_code_like) {
        my $pat = $block->error_code_like;
        Test::More::like($got, qr/$pat/sm, "$name - status code ok");

    } elsif (defined $block->error_code) {
        Test::More::is($got, $block->error_code, "$name - status code ok");

    } else {
        Test::More::is($got, 200, "$name - status code ok");
    }
}

sub check_raw_response_headers {
    my ($block, $raw_headers) = @_;
    my $name = $block->name;

    if (defined(my $pat = $block->raw_response_headers_like)) {
        Test::More::like($raw_headers, qr/$pat/s,
                         "$name - raw resp headers like");
    }

    if (defined(my $pat = $block->raw_response_headers_unlike)) {
        Test::More::unlike($raw_headers, qr/$pat/s,
                           "$name - raw resp headers unlike");
    }
}

# "Name: value" lines; "!Name" means the header must be absent.
sub parse_header_lines {
    my $text = shift;
    my @headers;

    for my $line (split /\n/, $text) {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) {
            push @headers, [$line, undef];
        } else {
            my ($k, $v) = split /\s*:\s*/, $line, 2;
            push @headers, [$k, $v // ''];
        }
    }

    return @headers;
}

sub check_response_headers {
    my ($block, $res, $raw_headers) = @_;
    my $name = $block->name;

    if (defined $block->response_headers) {
        for my $h (parse_header_lines($block->response_headers)) {
            my ($key, $val) = @$h;

            if (!defined $val) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                    "$name - header $key not present in the raw headers");
                next;
            }

            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;

            my $got = $res ? $res->header($key) : undef;
            Test::More::is($got // '', $val, "$name - header $key ok");
        }

    } elsif (defined $block->response_headers_like) {
        for my $h (parse_header_lines($block->response_headers_like)) {
            my ($key, $val) = @$h;
            my $got = $res ? $res->header($key) : undef;
            Test::More::like($got // '', qr/^$val$/,
                             "$name - header $key like ok");
        }
    }
}

sub transform_response_body {
    my ($block, $res) = @_;

    return unless $res && defined $res->content;

    my $filters = $block->response_body_filters;
    return unless defined $filters;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//gs;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }

    my %named = (
        uc => sub { uc shift }, lc => sub { lc shift },
        ucfirst => sub { ucfirst shift }, lcfirst => sub { lcfirst shift },
        length => sub { length shift },
    );

    my $content = $res->content;
    for my $f (@$filters) {
        if (ref $f eq 'CODE') {
            $content = $f->($content);
        } elsif (!ref $f && $named{$f}) {
            $content = $named{$f}->($content);
        } else {
            bail_out($block->name . " - unsupported response_body_filters "
                     . "value \"$f\"");
        }
    }

    $res->content($content);
}

sub check_response_body {
    my ($block, $res, $repeat_idx) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;

    if (defined $block->response_body) {
        my $expected = $block->response_body;

        if (!ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $expected = expand_env($expected, $name);
        }

        my $desc = "$name - response_body - response is expected "
                   . "(repeated req $repeat_idx, req 0)";

        if (ref $expected) {
            Test::More::like($content, $expected,
                             "$name - response_body - like (repeated req "
                             . "$repeat_idx, req 0)");
        } elsif ($NoLongString) {
            Test::More::is($content, $expected, $desc);
        } else {
            Test::LongString::is_string($content, $expected, $desc);
        }

    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my $like = defined $block->response_body_like;
        my $pat = $like ? $block->response_body_like
                        : $block->response_body_unlike;

        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;

        my $summary = $content // '';
        $summary =~ s/^\s+|\s+$//g;
        $summary =~ s/\n/ /gs;
        $summary =~ s/\s{2,}/ /gs;

        my $type = $like ? 'like' : 'unlike';
        my $desc = "$name - response_body_$type - response is expected "
                   . "($summary)";

        if ($like) {
            Test::More::like($content, qr/$pat/s, $desc);
        } else {
            Test::More::unlike($content, qr/$pat/s, $desc);
        }
    }
}

sub fmt_str {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub patterns_of {
    my $pats = shift;

    if (!ref $pats) {
        chomp $pats;
        return split /\n+/, $pats;
    }

    return ($pats) if ref $pats eq 'Regexp';
    return @$pats;
}

sub line_matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

sub mentions {
    my ($pats, $what) = @_;
    return 0 unless defined $pats;
    return scalar grep { defined && index("$_", $what) >= 0 }
                  (ref $pats eq 'ARRAY' ? @$pats : ($pats));
}

# --- error_log: one test per pattern, passing when some line of this
# block's part of the log matches it.  --- no_error_log: one test per
# pattern, failing once for every matching line.  Lines with [alert],
# [crit] or [emerg] are only warned about unless a pattern names them.
sub check_error_log {
    my ($block, $repeat_idx, $lines) = @_;
    my $name = $block->name;

    my %warn_for = (alert => 1, crit => 1, emerg => 1);

    for my $section ($block->error_log, $block->no_error_log) {
        for my $level (keys %warn_for) {
            delete $warn_for{$level} if mentions($section, "[$level");
        }
    }

    if (defined $block->error_log) {
        my @pats = patterns_of($block->error_log);

        for my $pat (@pats) {
            next unless defined $pat;
            if (grep { line_matches($_, $pat) } @$lines) {
                Test::More::pass("$name - pattern \"$pat\" matches a line "
                                 . "in error.log (req $repeat_idx)");
            } else {
                Test::More::fail("$name - pattern \"$pat\" should match a "
                                 . "line in error.log (req $repeat_idx)");
            }
        }
    }

    if (defined $block->no_error_log) {
        my @pats = patterns_of($block->no_error_log);

        for my $pat (@pats) {
            next unless defined $pat;
            my $p = fmt_str("$pat");
            my $found = 0;

            for my $i (0 .. $#$lines) {
                next unless line_matches($lines->[$i], $pat);

                Test::More->builder->no_ending(1) if $found++;

                my $end = $i + 9 < $#$lines ? $i + 9 : $#$lines;
                Test::More::fail("$name - pattern \"$p\" should not match "
                    . "any line in error.log but matches line \""
                    . fmt_str($lines->[$i]) . "\" (req $repeat_idx)\n"
                    . join '', @$lines[$i + 1 .. $end]);
            }

            Test::More::pass("$name - pattern \"$p\" does not match a line "
                             . "in error.log (req $repeat_idx)")
                unless $found;
        }
    }

    for my $line (@$lines) {
        for my $level (keys %warn_for) {
            warn "WARNING: $name - " . fmt_str($line) . "\n"
                if index($line, "[$level]") >= 0;
        }

        if ($line =~ /\bAssertion .*?failed\b/) {
            Test::More->builder->no_ending(1);
            Test::More::fail("$name - " . fmt_str($line) . "\n");
        }
    }
}


END {
    stop_nginx();
}

1;

__END__

=head1 NAME

Test::Nginx::Socket - compatible subset of the CPAN module of this name

=head1 SYNOPSIS

    use Test::Nginx::Socket;

    repeat_each(1);
    plan tests => repeat_each() * (blocks() * 3);
    no_shuffle();
    run_tests();

    __DATA__

    === TEST 1: hello
    --- config
        location = /t { return 200 "hello\n"; }
    --- request
    GET /t
    --- response_body
    hello
    --- no_error_log
    [error]

=head1 DESCRIPTION

This runner takes the place of Test::Nginx::Socket from CPAN when that
module is not installed (C<prove -It/lib t/*.t>).  Block parsing, filters
(C<eval>, C<chomp>, ...) and C<--- ONLY> / C<--- SKIP> / C<--- LAST> come
from Test::Base itself, so they behave exactly alike.  Each block counts
the same number of tests as under the CPAN module, so C<plan> lines hold
for both.

=head2 What happens for each block

=over

=item *

The servroot (C<TEST_NGINX_SERVROOT>, default F<t/servroot>) gets fresh
F<conf/>, F<logs/> and F<html/> directories and an F<nginx.conf> laid out
like the CPAN module's: C<load_module> lines from
C<TEST_NGINX_LOAD_MODULES> at the start of C<--- main_config>,
C<--- http_config> in C<http {}>, then a default server listening on
C<TEST_NGINX_SERVER_PORT> (1984) holding C<--- config> and a C<location />
serving F<html/>.  C<error_log> is F<logs/error.log> at level C<debug>
(C<TEST_NGINX_LOG_LEVEL>, C<log_level()>, C<--- log_level>).  The master
process is off unless C<TEST_NGINX_MASTER_PROCESS> or C<master_on()>.

=item *

nginx starts as a child process (C<daemon off>); the block goes on once the
pid file names that process, which nginx writes after it has bound its
listening sockets.

=item *

The request is written to 127.0.0.1 and the response read until the server
closes the connection.  C<--- timeout> (default 3s, C<TEST_NGINX_TIMEOUT>)
bounds the wait between two socket events; when it expires, the test
fails ("client socket timed out") unless C<--- abort> is given.

=item *

The response is split with HTTP::Response; after a C<101> (or C<304>)
status everything past the header is the body, unparsed (WebSocket frames).

=item *

Before the error log is read, the runner waits until every nginx process
is blocked waiting for events (seen in F</proc>), so all lines about the
request have been written.  Only the part of the log written during this
block counts.

=item *

nginx is stopped with SIGQUIT at the end of each block (the CPAN module
restarts nginx for each block by default as well).

=back

=head2 Functions

run_tests, repeat_each, no_shuffle (otherwise blocks run in random order,
like the CPAN module), no_long_string, log_level, master_on, master_off,
master_process_enabled, workers, worker_connections, timeout, server_port,
server_port_for_client, server_addr, server_name, server_root, html_dir,
no_root_location, env_to_nginx, add_block_preprocessor, bail_out, is_str;
and from Test::Base: plan, blocks, is, like, ...

=head2 Sections

config, http_config, main_config, post_main_config (all with
C<$TEST_NGINX_*> expanded from the environment), request (one plain string:
"METHOD [URI [VERSION]]" then an optional body; Host and Connection: close
are added unless given), more_headers, raw_request (a string, or an array
of strings written one after another; sent as is), raw_request_middle_delay,
shutdown, timeout, abort, ignore_response, error_code, error_code_like,
response_headers ("Name: value", "!Name" for absent), response_headers_like,
raw_response_headers_like, raw_response_headers_unlike, response_body
(string, or a regex through C<eval>), response_body_like,
response_body_unlike, response_body_filters (code references and
uc/lc/ucfirst/lcfirst/length), error_log, no_error_log (strings, one per
line, or through C<eval> a regex or an array of strings and regexes),
must_die (optionally an exit code), suppress_stderr, log_level, SKIP.

=head2 Environment

TEST_NGINX_BINARY, TEST_NGINX_LOAD_MODULES, TEST_NGINX_SERVROOT,
TEST_NGINX_SERVER_PORT (or TEST_NGINX_PORT), TEST_NGINX_CLIENT_PORT,
TEST_NGINX_LOG_LEVEL, TEST_NGINX_MASTER_PROCESS, TEST_NGINX_TIMEOUT,
TEST_NGINX_NO_SHUFFLE, TEST_NGINX_VERBOSE, and TEST_NGINX_ERROR_LOG (a file
that collects the error log of every block).  Any other C<$TEST_NGINX_*>
name in a configuration section is replaced by its value; an unset one
stops the run.

=head2 Error log checks

As in the CPAN module, C<[alert]>, C<[crit]> and C<[emerg]> lines in the
error log only produce warnings on stderr unless a C<--- error_log> or
C<--- no_error_log> pattern names them; a line with "Assertion ... failed"
fails the block.

=head2 Known differences from the CPAN module

=over

=item *

Not supported: pipelined_requests, request arrays, curl, HTTP/2 and
HTTP/3, user_files, tcp_listen/udp_listen mock servers, access_log checks,
grep_error_log, stap, valgrind, check-leak, benchmark, HUP reload mode,
TEST_NGINX_RAND_PORT_*.

=item *

The CPAN module reads the error log after a fixed short pause (about 45ms);
this runner waits for nginx to become idle instead.  If F</proc> cannot be
read it falls back to the same short pause.

=item *

If nginx exits during a block (a crash with the master process off), this
runner adds a failing test saying so.  When stopping nginx, alert lines it
logs at shutdown are reported as warnings.

=item *

A C<--- ... eval> section whose code does not compile stops the run (the
CPAN module would use Perl's error message as the section's value).

=item *

A connection refused is reported at once rather than retried, since the
runner knows the listening socket exists.  SIGPIPE is ignored while a
request is written, so a server that closes early cannot kill the test
process; the runner keeps reading what the server sent.

=back

=cut
