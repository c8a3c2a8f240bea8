#!/usr/bin/env bash
# Install Debian's `chromium` package so the tunnel's browser test can drive a
# real browser with playwright-core. We never let Playwright download its own
# browser build: this workplace reaches Debian's archive but no browser CDN.
# Idempotent: returns at once when /usr/bin/chromium already runs.
#
#   bash scripts/install-chromium.sh
set -euo pipefail

bin="/usr/bin/chromium"

die() { echo "install-chromium: $*" >&2; exit 1; }

if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
  echo "install-chromium: $("$bin" --version 2>/dev/null) already installed at $bin"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 ||
  die "apt-get not found; this script only knows Debian/Ubuntu. Install Chromium so that $bin exists, then run the tests again."

sudo=""
if [[ "$(id -u)" != "0" ]]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo; run this script as root to apt-get install chromium."
  sudo="sudo"
fi

echo "install-chromium: installing Debian's chromium package"
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine; a failed update
# is retried once because a half-written list makes the install fail too.
$sudo apt-get update -qq || { sleep 2; $sudo apt-get update -qq; }
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null ||
  die "apt-get install chromium failed (see the lines above); fix the package source and run this script again."

[[ -x "$bin" ]] || die "chromium was installed but $bin does not exist; check \`dpkg -L chromium\`."
"$bin" --version >/dev/null 2>&1 || die "$bin is installed but does not start; run \`$bin --version\` to see why."
echo "install-chromium: $("$bin" --version 2>/dev/null) installed at $bin"
