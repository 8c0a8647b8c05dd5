#!/usr/bin/env bash
# Install dissect and what it needs. `--test` adds the test dependencies.
# System packages (tshark, tcpdump, nftables, iproute2) are installed with apt-get when
# missing and we are root; without root the tests that need them skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
need=()
command -v tshark  >/dev/null 2>&1 || need+=(tshark)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v nft     >/dev/null 2>&1 || need+=(nftables)
command -v ip      >/dev/null 2>&1 || need+=(iproute2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# a C compiler and the Python headers, for the optional compiled modules
command -v gcc     >/dev/null 2>&1 || need+=(gcc)
python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" 2>/dev/null || need+=(python3-dev)
if [ "${1:-}" = "--test" ]; then
  # the HTML report is checked in headless Chromium
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "not root: skipping Debian packages ${need[*]} (tests that need them will skip)" >&2
  fi
fi
if [ "${1:-}" = "--test" ]; then
  python3 -m pip install -q -e '.[test,fast]'
else
  python3 -m pip install -q -e '.[fast]'
fi
# compile the per-packet modules (same source, ~1.4x faster); without a compiler dissect
# runs as pure Python with the same results
if python3 scripts/build_speedups.py >/tmp/dissect-build-speedups.log 2>&1; then
  tail -n 1 /tmp/dissect-build-speedups.log
else
  echo "compiled modules not built (see /tmp/dissect-build-speedups.log): pure Python" >&2
fi
