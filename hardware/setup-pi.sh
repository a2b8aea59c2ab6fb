#!/bin/sh
# Installs or upgrades edge-agent as a systemd service on Raspberry Pi OS 64-bit (Bookworm or
# later). From a clone of the repository:  sudo sh hardware/setup-pi.sh [OPTIONS] [PROFILE]
#   PROFILE            smart-speaker (default), kiosk, push-to-talk, home-assistant, or a path
#                      to a config file
#   --board NAME       respeaker | voice-bonnet | i2s-amp | usb: install the named ALSA PCMs
#                      edge_mic and edge_speaker for that board (see hardware/wiring.md)
#   --card ID          the board's ALSA card id, when it is not found (`arecord -l`)
#   --alsa-default     also make the board every program's default sound device
#   --credential NAME  add LoadCredential=NAME:/etc/edge-agent/NAME to the unit (repeatable);
#                      each credential:NAME the config names (MCP headers and env, passwords,
#                      [web] credential off loopback) gets one without it. The value comes
#                      from that file or from the environment variable NAME upper-cased with
#                      - as _ (e.g. ha-token from HA_TOKEN)
#   --print-alsa       print the ALSA configuration for --board and exit (needs no root)
#   --root DIR         write the files (config, keys, ALSA, unit) under DIR and change nothing
#                      else: no packages, user, venv or systemctl (tests, images; needs
#                      edge-agent on PATH to read the config)
# Safe to run again: it upgrades the code and the unit in place and keeps the config and the
# keys (GEMINI_API_KEY, when set, replaces the stored key).
set -eu

usage() {
    sed -n '2,/^set /s/^# \{0,1\}//p' "$0" >&2
    exit 2
}
fail() {
    echo "setup-pi: $*" >&2
    exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/edge-agent
etc=/etc/edge-agent # paths as the service sees them; files are written under $root
root=""
profile=smart-speaker
board=""
card=""
alsa_default=no
credentials=""
print_alsa=no
while [ $# -gt 0 ]; do
    case "$1" in
        --board | --card | --credential | --root) [ $# -ge 2 ] || usage ;;
    esac
    case "$1" in
        --board) board=$2; shift 2 ;;
        --card) card=$2; shift 2 ;;
        --alsa-default) alsa_default=yes; shift ;;
        --credential)
            case "$2" in
                "" | *[!a-z0-9-]*) fail "credential names are lower-case letters, digits and -: $2" ;;
            esac
            credentials="$credentials $2"
            shift 2
            ;;
        --print-alsa) print_alsa=yes; shift ;;
        --root)
            case "$2" in /?*) ;; *) fail "--root needs an absolute directory: $2" ;; esac
            [ -d "$2" ] || fail "--root: no directory $2"
            root=${2%/}
            shift 2
            ;;
        -h | --help) usage ;;
        -*) echo "setup-pi: unknown option $1" >&2; usage ;;
        *) profile=$1; shift ;;
    esac
done

# The card id of a board: the one present now, else the name its overlay usually gives it.
find_card() {
    case "$1" in
        respeaker | voice-bonnet) ids="seeed2micvoicec wm8960soundcard" ;;
        i2s-amp) ids="sndrpigooglevoi" ;;
        *) ids="" ;;
    esac
    for dir in /proc/asound/card[0-9]*; do
        [ -f "$dir/id" ] || continue
        id=$(cat "$dir/id")
        if [ "$1" = usb ]; then
            if [ -f "$dir/usbid" ]; then echo "$id"; return; fi
        else
            for wanted in $ids; do
                if [ "$id" = "$wanted" ]; then echo "$id"; return; fi
            done
        fi
    done
    echo "${ids%% *}"
}

alsa_config() {
    sed -e "s/@CARD@/$card/g" -e "s/@BOARD@/$board/g" "$repo/hardware/asound.conf" |
        if [ "$alsa_default" = yes ]; then cat; else sed '/^# ---- only with --alsa-default/,$d'; fi
}

if [ -n "$board" ]; then
    case "$board" in
        respeaker | voice-bonnet | i2s-amp | usb) ;;
        *) fail "unknown board '$board' (respeaker, voice-bonnet, i2s-amp, usb)" ;;
    esac
    [ -n "$card" ] || card=$(find_card "$board")
    [ -n "$card" ] || fail "no USB sound card found: plug it in, or give --card ID (arecord -l)"
    case "$card" in *[!A-Za-z0-9_-]*) fail "not an ALSA card id: $card" ;; esac
elif [ "$alsa_default" = yes ] || [ "$print_alsa" = yes ]; then
    fail "--alsa-default and --print-alsa need --board"
fi
if [ "$print_alsa" = yes ]; then
    alsa_config
    exit 0
fi

if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    echo "run as root: sudo sh $0 $*" >&2
    exit 2
fi
case "$profile" in
    */*) [ -f "$profile" ] || fail "no config file $profile" ;;
    *) [ -f "$repo/config/$profile.toml" ] || fail "no profile $profile (smart-speaker, kiosk, push-to-talk, home-assistant)" ;;
esac
config="$root$etc/config.toml"
if [ -f "$config" ]; then
    source_config=$config
else
    case "$profile" in
        */*) source_config=$profile ;;
        *) source_config="$repo/config/$profile.toml" ;;
    esac
fi
extras=pi,metrics,wake
# MCP servers (Home Assistant) need the mcp package
! grep -q '^[[:space:]]*\[\[mcp\.servers\]\]' "$source_config" || extras=$extras,mcp
# Home Assistant over MQTT needs aiomqtt
if awk '/^[[:space:]]*\[/ { section = $1 }
        section == "[mqtt]" && /^[[:space:]]*enabled[[:space:]]*=[[:space:]]*true/ { on = 1 }
        END { exit !on }' "$source_config"; then
    extras=$extras,mqtt
fi

if [ -n "$root" ]; then
    agent=$(command -v edge-agent) || fail "--root: put edge-agent on PATH (it reads the config)"
    echo "== under $root: no packages, user, Python environment ($extras) or systemctl"
else
    echo "== system packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv python3-dev gcc \
        portaudio19-dev libasound2-dev alsa-utils libfftw3-single3 \
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

    echo "== code and Python environment ($extras) in $prefix"
    mkdir -p "$prefix"
    rm -rf "$prefix/edge_agent" # modules removed upstream must not linger
    cp -a "$repo/pyproject.toml" "$repo/README.md" "$repo/edge_agent" "$prefix/"
    # apt's picamera2 and libcamera must stay visible: a pip copy cannot import libcamera
    [ -x "$prefix/.venv/bin/python" ] || python3 -m venv --system-site-packages "$prefix/.venv"
    "$prefix/.venv/bin/python" -m pip install -q --upgrade pip
    "$prefix/.venv/bin/python" -m pip install -q "${prefix}[$extras]"
    # the same version number would be skipped: always put this copy of the code in place
    "$prefix/.venv/bin/python" -m pip install -q --force-reinstall --no-deps "$prefix"
    agent="$prefix/.venv/bin/edge-agent"
    "$agent" --version
fi

echo "== configuration in $root$etc"
mkdir -p "$root$etc"
if [ ! -f "$config" ]; then
    cp "$source_config" "$config"
    if [ -n "$board" ] && ! grep -q '^input_device' "$config"; then
        if grep -q '^\[audio\]' "$config"; then
            sed -i '/^\[audio\]/a input_device = "edge_mic"\noutput_device = "edge_speaker"' \
                "$config"
        else
            printf '\n[audio]\ninput_device = "edge_mic"\noutput_device = "edge_speaker"\n' \
                >>"$config"
        fi
    fi
    echo "   wrote $config from $profile"
else
    echo "   kept $config"
fi
"$agent" check --config "$config" >/dev/null
# each credential the config reads, besides those named with --credential
for name in $("$agent" check --credentials --config "$config"); do
    case " $credentials " in *" $name "*) ;; *) credentials="$credentials $name" ;; esac
done

umask 077
key="$root$etc/gemini-api-key"
if [ -n "${GEMINI_API_KEY:-}" ]; then # a key given now replaces the stored one
    printf '%s\n' "$GEMINI_API_KEY" >"$key"
    echo "   stored the key from GEMINI_API_KEY in $key (root only)"
fi
token_command=no
if "$agent" check --config "$config" 2>/dev/null | grep -q '^token_command = "[^"]'; then
    token_command=yes
    touch "$key" # LoadCredential= needs the file; tokens come from the command
fi
[ ! -f "$key" ] || chmod 600 "$key"

for name in $credentials; do
    case "$name" in
        "" | .* | *[!A-Za-z0-9_.@-]*) fail "not a credential name: $name" ;;
    esac
    file="$root$etc/$name"
    variable=$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')
    value=$(printenv "$variable" || true)
    if [ -n "$value" ]; then
        printf '%s\n' "$value" >"$file"
        echo "   stored $name from $variable in $file (root only)"
    elif [ ! -s "$file" ]; then
        fail "credential $name: put it in $file (chmod 600) or set $variable, then run again"
    fi
    chmod 600 "$file"
done
umask 022

echo "== sound"
old="$root/etc/asound.conf"
if [ -f "$old" ] && grep -q '^# edge-agent: named ALSA PCMs' "$old"; then
    mv "$old" "$old.edge-agent-old" # an earlier version took the default over
    echo "   moved an earlier $old of edge-agent to $old.edge-agent-old"
fi
if [ -n "$board" ]; then
    mkdir -p "$root/etc/alsa/conf.d"
    alsa_config >"$root/etc/alsa/conf.d/60-edge-agent.conf"
    what="edge_mic and edge_speaker on card $card"
    [ "$alsa_default" = no ] || what="$what, also the system default"
    echo "   $root/etc/alsa/conf.d/60-edge-agent.conf: $what"
else
    echo "   no --board: the config's devices are used as they are (edge-agent devices lists them)"
fi

echo "== systemd unit"
mkdir -p "$root/etc/systemd/system"
install -m 0644 "$repo/systemd/edge-agent.service" "$root/etc/systemd/system/edge-agent.service"
dropin="$root/etc/systemd/system/edge-agent.service.d/credentials.conf"
for name in $credentials; do
    line="LoadCredential=$name:$etc/$name"
    mkdir -p "$(dirname "$dropin")"
    [ -f "$dropin" ] || printf '[Service]\n' >"$dropin"
    grep -qxF "$line" "$dropin" || printf '%s\n' "$line" >>"$dropin"
done
[ ! -f "$dropin" ] || echo "   credentials: $(grep -c '^LoadCredential=' "$dropin") in $dropin"
if [ -z "$root" ]; then
    systemctl daemon-reload
    systemctl enable edge-agent.service >/dev/null
fi

if [ ! -s "$key" ] && [ "$token_command" = no ]; then
    echo "edge-agent is installed but NOT started: it has no API key." >&2
    echo "   put the key in $key (chmod 600), or set [live] token_command," >&2
    echo "   then: sudo systemctl restart edge-agent" >&2
    exit 2
fi
if [ -n "$root" ]; then
    echo "edge-agent is installed under $root (not started)"
    exit 0
fi

echo "== starting (waits for READY)"
systemctl restart edge-agent.service || true
state=$(systemctl show -p ActiveState --value edge-agent.service)
status=$(systemctl show -p StatusText --value edge-agent.service)
if [ "$state" = active ]; then
    echo "edge-agent is running (${status:-no status yet}): journalctl -u edge-agent -f"
else
    result=$(systemctl show -p Result --value edge-agent.service)
    echo "edge-agent did not start: $state ($result). Its last words:" >&2
    journalctl -u edge-agent.service -n 5 --no-pager -o cat >&2 || true
    exit 1
fi
