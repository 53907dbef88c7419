#!/bin/sh
# mipo scanner installer, served by ingest at /scanner/install.sh (values below filled in per appliance).
#
# Why piping this into sh is sound:
#  1. The command shown by the manager fetches this script with `curl --cacert <appliance CA>`: TLS is
#     verified against the appliance's own CA only, never the public CA store, so only the appliance
#     (through its edge) can have served it.
#  2. `--ca-sha256` (also from the manager) is the SHA-256 of that CA's DER form. The script refuses to
#     run unless the CA embedded below has exactly that fingerprint, then uses that CA file (and nothing
#     else) for every later request: the agent download and the enrolment.
#  3. agent.pyz must match the SHA-256 embedded below before it is installed.
#  4. The one-time enrolment token is read from the terminal with echo off (or `--token-file FILE`;
#     `--token-file -` reads stdin when this script runs from a file), never from the command line,
#     so it is in neither shell history nor `ps`. Only the permanent key it is exchanged for is stored
#     (root:mipo-scanner, 0640).
#  5. Re-running with a fresh token on an enrolled host keeps the scanner's identity and history: the
#     appliance recognises the host by a hash of /etc/machine-id and its host name (cloned images often
#     share a machine id); the spool of unsent results is kept.
#
# Options: --ca-sha256 HEX  --token-file FILE|-  --root DIR (install under DIR)  --no-systemd (files only)
set -eu

SERVER_URL='@@SERVER_URL@@'
AGENT_SHA256='@@AGENT_SHA256@@'
CA_PEM='@@CA_PEM@@'

die() { echo "mipo install: $*" >&2; exit 1; }

ROOT=""; CA_SHA=""; TOKEN_FILE=""; SYSTEMD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --ca-sha256) [ $# -ge 2 ] || die "--ca-sha256 needs a value"; CA_SHA=$2; shift 2 ;;
        --token-file) [ $# -ge 2 ] || die "--token-file needs a value"; TOKEN_FILE=$2; shift 2 ;;
        --root) [ $# -ge 2 ] || die "--root needs a value"; ROOT=$2; shift 2 ;;
        --no-systemd) SYSTEMD=0; shift ;;
        *) die "unknown option $1 (the token is never an argument: use the prompt or --token-file)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root (sudo)"
command -v python3 >/dev/null || die "python3 (>= 3.11) is required"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || die "python3 >= 3.11 is required"
command -v curl >/dev/null || die "curl is required"

ETC="$ROOT/etc/mipo-scanner"; OPT="$ROOT/opt/mipo-scanner"; VAR="$ROOT/var/lib/mipo-scanner"
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT INT TERM
CURL="curl -fsS --retry 3"

echo "1/6 checking the appliance CA"
if [ -n "$CA_PEM" ]; then
    printf '%s\n' "$CA_PEM" > "$TMP/ca.pem"
    [ -n "$CA_SHA" ] || die "--ca-sha256 is required: copy the whole command from the manager"
    GOT=$(python3 -c 'import hashlib, ssl, sys; print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())).hexdigest())' "$TMP/ca.pem")
    WANT=$(printf '%s' "$CA_SHA" | tr 'A-F' 'a-f' | tr -d ':')
    [ "$GOT" = "$WANT" ] || die "CA fingerprint mismatch (got $GOT): not the appliance you meant; stopping"
    CURL="$CURL --proto =https --cacert $TMP/ca.pem"
fi

echo "2/6 reading the enrolment token"
if [ -n "$TOKEN_FILE" ]; then
    if [ "$TOKEN_FILE" = "-" ]; then IFS= read -r TOKEN || true; else IFS= read -r TOKEN < "$TOKEN_FILE" || true; fi
else
    [ -r /dev/tty ] || die "no terminal to prompt on: use --token-file FILE"
    printf 'Enrolment token (input hidden): ' > /dev/tty
    stty -echo < /dev/tty; IFS= read -r TOKEN < /dev/tty || true; stty echo < /dev/tty; printf '\n' > /dev/tty
fi
[ -n "${TOKEN:-}" ] || die "empty enrolment token"

echo "3/6 fetching and verifying the agent"
$CURL -o "$TMP/agent.pyz" "$SERVER_URL/scanner/agent.pyz"
echo "$AGENT_SHA256  $TMP/agent.pyz" | sha256sum -c --quiet - || die "agent.pyz does not match its SHA-256; stopping"

echo "4/6 installing files"
OWNER=root
if [ "$SYSTEMD" = 1 ]; then
    getent passwd mipo-scanner >/dev/null || \
        useradd --system --user-group --home-dir /var/lib/mipo-scanner --shell /usr/sbin/nologin mipo-scanner
    OWNER=mipo-scanner
fi
install -d -m 0755 "$OPT"
install -m 0644 "$TMP/agent.pyz" "$OPT/agent.pyz.new" && mv -f "$OPT/agent.pyz.new" "$OPT/agent.pyz"
install -d -m 0750 -o root -g "$OWNER" "$ETC"
install -d -m 0700 -o "$OWNER" -g "$OWNER" "$VAR" "$VAR/spool"
CA_LINE=""
if [ -n "$CA_PEM" ]; then
    install -m 0644 "$TMP/ca.pem" "$ETC/ca.pem"
    CA_LINE="ca_file = \"$ETC/ca.pem\""
fi
cat > "$ETC/agent.toml.new" <<TOML
# Written by install.sh; re-running the installer rewrites it.
server_url = "$SERVER_URL"
$CA_LINE
key_file = "$ETC/key"
spool_dir = "$VAR/spool"
TOML
chmod 0640 "$ETC/agent.toml.new"; chgrp "$OWNER" "$ETC/agent.toml.new"; mv -f "$ETC/agent.toml.new" "$ETC/agent.toml"

echo "5/6 enrolling"
printf '%s\n' "$TOKEN" | python3 "$OPT/agent.pyz" --config "$ETC/agent.toml" enrol --token-file - \
    || die "enrolment failed (see above)"
chmod 0640 "$ETC/key"; chgrp "$OWNER" "$ETC/key"

if [ "$SYSTEMD" = 0 ]; then
    echo "6/6 skipped (--no-systemd): run python3 $OPT/agent.pyz --config $ETC/agent.toml run"
    exit 0
fi
echo "6/6 starting mipo-scanner.service"
cat > /etc/systemd/system/mipo-scanner.service <<'UNIT'
[Unit]
Description=mipo scanner agent
After=network-online.target
Wants=network-online.target

[Service]
User=mipo-scanner
Group=mipo-scanner
ExecStart=/usr/bin/python3 /opt/mipo-scanner/agent.pyz --config /etc/mipo-scanner/agent.toml run
Restart=on-failure
RestartSec=5
# Exit 3: the appliance refused this scanner's key (revoked, disabled): restarting cannot help.
RestartPreventExitStatus=3
LimitNOFILE=65536
StateDirectory=mipo-scanner
StateDirectoryMode=0700
ReadWritePaths=/var/lib/mipo-scanner
UMask=0077
# Connect scans need no privilege at all (no CAP_NET_RAW).
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
RemoveIPC=yes
PrivateMounts=yes
PrivateUsers=yes
DevicePolicy=closed
KeyringMode=private

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable mipo-scanner.service >/dev/null
systemctl restart mipo-scanner.service
echo "mipo scanner installed and running (journalctl -u mipo-scanner)"
