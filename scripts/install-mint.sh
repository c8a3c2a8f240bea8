#!/usr/bin/env bash
# Install the reference Cashu mint (nutshell, PyPI package `cashu`) into a
# project-local virtualenv so the devnet never depends on a system-wide Python
# setup. Idempotent: a marker file records exactly what was installed, so a
# second run returns at once and any change to the pins below reinstalls.
#
#   bash scripts/install-mint.sh            # venv at <project>/.venv/mint
#   DVM_MINT_VENV=/some/dir bash scripts/install-mint.sh
#   PYTHON=python3.11 bash scripts/install-mint.sh
set -euo pipefail

# 0.20+ depend on a breez-sdk-spark release PyPI does not carry.
CASHU_VERSION="0.19.2"

# cashu 0.19.2 declares loose ranges, and today's newest releases of some of
# its dependencies break it at start-up (marshmallow 4 breaks environs 9.5,
# limits 4 drops the rate-limit strategy slowapi asks for). These pins are the
# set this project runs and tests against; the mint never gets a newer
# transitive dependency by surprise.
read -r -d '' CONSTRAINTS <<'PINS' || true
aiosqlite==0.20.0
annotated-types==0.8.0
anyio==4.16.0
asn1crypto==1.5.1
asyncpg==0.30.0
base58==2.1.1
bech32==1.2.0
bip32==4.0
bitstring==3.1.9
bolt11==2.2.0
brotli==1.2.1
cbor2==5.9.0
certifi==2026.10.18
cffi==2.1.1
click==8.5.1
coincurve==20.0.0
cryptography==43.0.3
Deprecated==1.3.1
ecdsa==0.19.2
environs==9.5.0
fastapi==0.115.14
googleapis-common-protos==1.76.0
greenlet==3.5.6
grpcio==1.85.1
grpcio-tools==1.76.0
h11==0.14.0
httpcore==1.0.8
httpx==0.25.2
idna==3.20
importlib-metadata==6.11.0
Jinja2==3.1.6
limits==3.14.1
loguru==0.7.3
MarkupSafe==3.0.4
marshmallow==3.26.2
mnemonic==0.20
mypy-protobuf==3.7.0
packaging==24.2
protobuf==6.33.6
pycparser==3.12
pycryptodomex==3.24.2
pydantic==2.14.3
pydantic-settings==2.16.3
pydantic_core==2.50.4
PyJWT==2.15.1
python-dotenv==1.2.4
redis==5.3.1
six==1.17.0
slowapi==0.1.10
sniffio==1.3.1
socksio==1.0.0
SQLAlchemy==2.1.9
starlette==0.46.2
types-protobuf==5.29.1.20250403
typing-inspection==0.4.5
typing_extensions==4.16.0
uvicorn==0.31.1
websocket-client==1.9.2
websockets==12.0
wrapt==2.5.2
zipp==4.1.2
zstandard==0.23.0
PINS

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
project="$(cd "$here/.." && pwd)"
venv="${DVM_MINT_VENV:-$project/.venv/mint}"
marker="$venv/.dvm-mint-installed"
python="${PYTHON:-python3}"
want="cashu==$CASHU_VERSION
$CONSTRAINTS"

die() { echo "install-mint: $*" >&2; exit 1; }

if [[ -f "$marker" && -x "$venv/bin/mint" && "$(cat "$marker")" == "$want" ]]; then
  echo "install-mint: nutshell $CASHU_VERSION already installed in $venv"
  exit 0
fi

command -v "$python" >/dev/null 2>&1 ||
  die "$python not found; install Python 3.10-3.12 (e.g. \`apt-get install python3 python3-venv\`) or set PYTHON=/path/to/python3, then run this script again."

"$python" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 13) else 1)' ||
  die "nutshell $CASHU_VERSION needs Python 3.10-3.12 but $python is $("$python" -V 2>&1); set PYTHON=/path/to/python3.11 and run this script again."

"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 ||
  die "$python cannot create virtualenvs (no venv/ensurepip module); install it (e.g. \`apt-get install python3-venv\`) and run this script again."

echo "install-mint: installing nutshell (cashu==$CASHU_VERSION) into $venv"
# A half-made venv from an interrupted run is rebuilt rather than trusted.
rm -f "$marker"
"$python" -m venv --clear "$venv" ||
  die "could not create a virtualenv at $venv; check the directory is writable or set DVM_MINT_VENV elsewhere, then run this script again."

constraints="$venv/constraints.txt"
printf '%s\n' "$CONSTRAINTS" > "$constraints"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$constraints" "cashu==$CASHU_VERSION" ||
  die "pip could not install cashu==$CASHU_VERSION into $venv; read pip's output above (usually network access to PyPI), then run this script again."

# Importing the app module catches a broken dependency set now, not at the
# first devnet start.
"$venv/bin/python" -c 'import cashu.mint.main, cashu.mint.limit' ||
  die "cashu installed but does not import (see the traceback above); delete $venv and run this script again."

printf '%s' "$want" > "$marker"
echo "install-mint: done, nutshell $CASHU_VERSION in $venv"
