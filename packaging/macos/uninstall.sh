#!/bin/bash
# Remove the cxpulse agent from this Mac: sudo "/Library/Application Support/cxpulse/uninstall.sh"
#
#   --keep-data   keep configuration, enrollment token and spool (a later install carries on)
#
# Without it nothing is left behind: daemon, program, configuration, token, spool, logs and the
# package receipt. Test hooks: CXPULSE_ROOT (a fake /), CXPULSE_LAUNCHCTL, CXPULSE_PKGUTIL.
set -euo pipefail

root="${CXPULSE_ROOT:-}"
launchctl="${CXPULSE_LAUNCHCTL:-/bin/launchctl}"
pkgutil="${CXPULSE_PKGUTIL:-/usr/sbin/pkgutil}"
label=com.cxpulse.agent
support="$root/Library/Application Support/cxpulse"

keep=""
case "${1:-}" in
    --keep-data) keep=1 ;;
    "") ;;
    *) echo "usage: $0 [--keep-data]" >&2; exit 2 ;;
esac
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    echo "uninstall: run with sudo" >&2
    exit 1
fi

"$launchctl" bootout "system/$label" 2>/dev/null || true
rm -f "$root/Library/LaunchDaemons/$label.plist" "$root/private/etc/newsyslog.d/$label.conf"
rm -rf "${support:?}/bin" "$root/Library/Logs/cxpulse"
if [ -z "$keep" ]; then
    rm -rf "$support"
else
    rm -f "$support/uninstall.sh"
fi
"$pkgutil" --forget "$label" >/dev/null 2>&1 || true
echo "cxpulse agent removed${keep:+ (configuration and spool kept in $support)}"
