#!/usr/bin/env bash
# Installs what the tests need beyond Python packages, where this machine allows it.
# Anything that cannot be installed makes the tests that need it skip with a reason.
set -u
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "tests/setup.sh: installing Debian's chromium for the browser tests" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "tests/setup.sh: could not install chromium; browser tests will skip" >&2
fi
if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "tests/setup.sh: installing Debian's dovecot-imapd for the bounce mailbox tests" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null) \
    || echo "tests/setup.sh: could not install dovecot-imapd; bounce mailbox tests will skip" >&2
fi
# axe-core for the console's accessibility test (npm registry; kept in tests/.cache, never committed).
AXE_DIR="$(dirname "$0")/.cache/axe-core"
if [ ! -f "$AXE_DIR/axe.min.js" ] && command -v npm >/dev/null 2>&1; then
  mkdir -p "$AXE_DIR"
  (cd "$AXE_DIR" && npm pack --silent axe-core@4 >/dev/null 2>&1 && tar xzf axe-core-*.tgz package/axe.min.js \
     && mv package/axe.min.js . && rm -rf package axe-core-*.tgz) \
    || echo "tests/setup.sh: could not fetch axe-core; the console accessibility test will skip" >&2
fi
exit 0
