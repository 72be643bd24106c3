#!/bin/sh
# Make headless chromium available: tests/test_report_browser.py renders report.html in it, and a
# test that skips because a package was not installed is a hole in the suite, not a pass.
# - If chromium is on PATH already, do nothing.
# - Otherwise, as root on Debian: install Debian's chromium (about a minute).
set -eu
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is not installed; install it (Debian: apt-get install chromium) so the report is rendered in a browser" >&2
  exit 2
fi
echo "[chromium] installing Debian's chromium ..." >&2
apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "chromium did not install; see apt-get's output" >&2; exit 1; }
echo "[chromium] $(chromium --version 2>/dev/null || echo installed)" >&2
