#!/bin/sh
# A short spoken conversation with the agent of conf/nginx.conf:
# turn 1 is spoken and answered; turn 2 is spoken over the reply
# (barge-in) and answered in its turn.  Starts nginx on 127.0.0.1:8080
# when nothing answers there, and stops it again at the end.

set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
NGINX=/usr/sbin/nginx
URL=ws://127.0.0.1:8080/voice
PREFIX=$BUILD/demo
STARTED=

answers() {
    /usr/bin/python3 -c 'import socket,sys
try:
    socket.create_connection(("127.0.0.1", 8080), timeout=1).close()
except OSError:
    sys.exit(1)'
}

stop() {
    if [ -n "$STARTED" ]; then
        "$NGINX" -p "$PREFIX/" -c "$PREFIX/nginx.conf" -s quit || true
    fi
}

trap stop EXIT

if ! answers; then
    mkdir -p "$PREFIX/logs" "$PREFIX/tmp"
    sed -e "s|@MODULE@|$BUILD/ngx_http_voice_module.so|g" \
        -e "s|@ROOT@|$ROOT|g" "$ROOT/conf/nginx.conf" > "$PREFIX/nginx.conf"
    "$NGINX" -p "$PREFIX/" -c "$PREFIX/nginx.conf"
    STARTED=1
    echo "demo: started nginx on 127.0.0.1:8080 (prefix $PREFIX)"
fi

mkdir -p "$PREFIX"
espeak-ng -v en-us+klatt -s 175 -w "$PREFIX/turn1.wav" \
    "What is the weather like in Paris today"
espeak-ng -v en-us+klatt -s 175 -w "$PREFIX/turn2.wav" \
    "Stop please tell me a joke instead"

echo "demo: turn 1: \"What is the weather like in Paris today\""
echo "demo: turn 2, spoken 1 s into the reply:" \
    "\"Stop please tell me a joke instead\""
echo

"$BUILD/voice-client" -i "$PREFIX/turn1.wav" \
    --interrupt 1.0 -I "$PREFIX/turn2.wav" \
    -o "$PREFIX/assistant.wav" "$URL"

echo
echo "demo: the assistant's audio is in $PREFIX/assistant.wav"
