#!/bin/sh
# Installs what edge-agent needs on Debian or Raspberry Pi OS 64-bit: system packages and a
# Python environment in .venv with the package and its dev tools. Safe to run again.
set -eu
cd "$(dirname "$0")/.."

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

had_mosquitto=no
if dpkg -s mosquitto >/dev/null 2>&1; then had_mosquitto=yes; fi
$sudo_cmd apt-get update -qq
# jack_wait and jack_lsp (the JACK-paced tests): in jackd2 on Debian 12, in jack-example-tools
# from Debian 13 on
jack_tools=""
if apt-cache show jack-example-tools >/dev/null 2>&1; then
    jack_tools=jack-example-tools
fi
$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    python3 python3-venv python3-dev gcc \
    portaudio19-dev libasound2-dev alsa-utils libfftw3-single3 \
    espeak-ng sox jackd2 ${jack_tools:+"$jack_tools"} libasound2-plugins \
    shellcheck systemd chromium chromium-driver mosquitto >/dev/null
# The tests start their own mosquitto on a free port: the broker Debian's package starts on 1883
# is not left running, unless it was there before.
if [ "$had_mosquitto" = no ] && command -v systemctl >/dev/null; then
    $sudo_cmd systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi

# On a Pi with a camera, picamera2 comes from apt: keep the system site packages visible.
venv_flags=""
if python3 -c "import picamera2" 2>/dev/null; then
    venv_flags="--system-site-packages"
fi
[ -x .venv/bin/python ] || python3 -m venv $venv_flags .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,metrics,camera,mcp,wake,mqtt]'
echo "edge-agent installed in .venv (run .venv/bin/edge-agent --help)"
