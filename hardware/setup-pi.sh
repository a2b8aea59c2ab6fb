#!/bin/sh
# Installs edge-agent as a systemd service on Raspberry Pi OS 64-bit (Bookworm or later).
# Run from a clone of the repository:  sudo sh hardware/setup-pi.sh [PROFILE]
#   PROFILE: smart-speaker (default), kiosk, push-to-talk, or a path to a config file.
# Safe to run again: it updates the code and the unit and keeps an existing config and key.
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "run as root: sudo sh $0 $*" >&2
    exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
profile=${1:-smart-speaker}
prefix=/opt/edge-agent
etc=/etc/edge-agent

echo "== system packages"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    python3 python3-venv python3-dev gcc \
    portaudio19-dev libasound2-dev alsa-utils \
    python3-picamera2 python3-libcamera \
    python3-lgpio python3-spidev >/dev/null

echo "== service user"
if ! id edge-agent >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/edge-agent --shell /usr/sbin/nologin edge-agent
fi
for group in audio gpio video spi i2c; do
    if getent group "$group" >/dev/null; then
        usermod -a -G "$group" edge-agent
    fi
done

echo "== code and Python environment in $prefix"
mkdir -p "$prefix"
cp -a "$repo/pyproject.toml" "$repo/README.md" "$repo/edge_agent" "$prefix/"
# apt's picamera2 and libcamera must stay visible: a pip copy cannot import libcamera
[ -x "$prefix/.venv/bin/python" ] || python3 -m venv --system-site-packages "$prefix/.venv"
"$prefix/.venv/bin/python" -m pip install -q --upgrade pip
"$prefix/.venv/bin/python" -m pip install -q "${prefix}[pi,metrics,wake]"

echo "== configuration in $etc"
mkdir -p "$etc"
if [ ! -f "$etc/config.toml" ]; then
    case "$profile" in
        */*) cp "$profile" "$etc/config.toml" ;;
        *) cp "$repo/config/$profile.toml" "$etc/config.toml" ;;
    esac
    echo "   wrote $etc/config.toml from $profile"
fi
"$prefix/.venv/bin/edge-agent" check --config "$etc/config.toml" >/dev/null
if [ ! -s "$etc/gemini-api-key" ]; then
    if [ -n "${GEMINI_API_KEY:-}" ]; then
        umask 077
        printf '%s\n' "$GEMINI_API_KEY" > "$etc/gemini-api-key"
        echo "   stored the key from GEMINI_API_KEY in $etc/gemini-api-key (root only)"
    else
        echo "   no key yet: put it in $etc/gemini-api-key (chmod 600), then restart the service"
    fi
fi
chmod 600 "$etc/gemini-api-key" 2>/dev/null || true

if [ ! -f /etc/asound.conf ]; then
    cp "$repo/hardware/asound.conf" /etc/asound.conf
    echo "   installed /etc/asound.conf (edit it for your board; see hardware/README.md)"
fi

echo "== systemd unit"
install -m 0644 "$repo/systemd/edge-agent.service" /etc/systemd/system/edge-agent.service
systemctl daemon-reload
systemctl enable edge-agent.service >/dev/null
systemctl restart edge-agent.service
echo "edge-agent is running: journalctl -u edge-agent -f"
