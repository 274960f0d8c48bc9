#!/usr/bin/env bash
# Authenticode-sign Windows files (.exe, .dll, .msi) in place with osslsigncode, when keys are given.
#
#   packaging/sign.sh FILE...
#
#   CXPULSE_SIGN_PFX            PKCS#12 file with the code-signing certificate and its key
#   CXPULSE_SIGN_PASS           its password (taken from the environment, passed on stdin: never
#                               on a command line, where every local user could read it)
#   CXPULSE_SIGN_TIMESTAMP_URL  RFC 3161 time-stamp server; set it for releases, so signatures
#                               stay valid after the certificate expires
#
# Without CXPULSE_SIGN_PFX the files stay unsigned and this says so (exit 0): developer and CI
# builds work without keys. On a Windows machine, signtool does the same job; osslsigncode lets
# the Linux job that builds the MSI sign everything.
#
# macOS is signed in packaging/macos/build.sh: codesign (Developer ID Application, hardened
# runtime) for the executables, productsign (Developer ID Installer) for the .pkg, then
# `xcrun notarytool submit --wait` and `xcrun stapler staple` (CXPULSE_MACOS_* variables there).
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 FILE..." >&2; exit 2; }
if [ -z "${CXPULSE_SIGN_PFX:-}" ]; then
    echo "sign: CXPULSE_SIGN_PFX not set; left unsigned: $*" >&2
    exit 0
fi
command -v osslsigncode >/dev/null || { echo "sign: osslsigncode not found (apt-get install osslsigncode)" >&2; exit 2; }
[ -r "$CXPULSE_SIGN_PFX" ] || { echo "sign: cannot read $CXPULSE_SIGN_PFX" >&2; exit 2; }

ts=()
[ -z "${CXPULSE_SIGN_TIMESTAMP_URL:-}" ] || ts=(-ts "$CXPULSE_SIGN_TIMESTAMP_URL")
for f in "$@"; do
    printf '%s' "${CXPULSE_SIGN_PASS:-}" | osslsigncode sign -pkcs12 "$CXPULSE_SIGN_PFX" -readpass - \
        -h sha256 -n "cxpulse agent" "${ts[@]}" -in "$f" -out "$f.signed" >/dev/null
    mv -f "$f.signed" "$f"
    echo "sign: signed $f" >&2
done
