#!/bin/bash
# Build cxpulse-agent-<version>-<arch>.pkg on a Mac (pkgbuild + productbuild; Xcode command-line tools).
#
#   packaging/macos/build.sh [--app DIR] [--out DIR] [--version V]
#
# --app   the frozen folder (packaging/freeze.py output); default: freeze now
# Signing, each optional (without it the step is skipped and this says so):
#   CXPULSE_MACOS_APP_IDENTITY        "Developer ID Application: Example (TEAMID)": codesign every
#                                     executable and library, hardened runtime, secure timestamp
#   CXPULSE_MACOS_INSTALLER_IDENTITY  "Developer ID Installer: Example (TEAMID)": productsign the pkg
#   CXPULSE_NOTARY_PROFILE            a `xcrun notarytool store-credentials` keychain profile:
#                                     notarize the signed pkg and staple the ticket to it
#
# Payload:
#   /Library/Application Support/cxpulse/bin/         cxpulse, cxpulse-trace, _internal/
#   /Library/Application Support/cxpulse/uninstall.sh
#   /Library/LaunchDaemons/com.cxpulse.agent.plist
#   /private/etc/newsyslog.d/com.cxpulse.agent.conf
# Configuration, token and spool (/Library/Application Support/cxpulse/agent.toml, enroll.toml,
# agent/) are written by the agent, never in the payload, so upgrades keep them.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
app="" out="$repo/build/packaging" version=""
while [ $# -gt 0 ]; do
    case "$1" in
        --app) app="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --version) version="$2"; shift 2 ;;
        *) echo "usage: $0 [--app DIR] [--out DIR] [--version V]" >&2; exit 2 ;;
    esac
done
for tool in pkgbuild productbuild; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool not found: this runs on macOS" >&2; exit 2; }
done
if [ -z "$app" ]; then
    "$python" "$repo/packaging/freeze.py" --dist "$repo/build/packaging/dist"
    app="$repo/build/packaging/dist/cxpulse-agent"
fi
[ -x "$app/cxpulse" ] || { echo "build.sh: $app/cxpulse is missing" >&2; exit 2; }
if [ -z "$version" ]; then
    version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/proto/cxpulse/__init__.py")"
fi
arch="$(uname -m)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
support="$root/Library/Application Support/cxpulse"
mkdir -p "$support" "$root/Library/LaunchDaemons" "$root/private/etc/newsyslog.d"
cp -R "$app" "$support/bin"
install -m 0755 "$here/uninstall.sh" "$support/uninstall.sh"
install -m 0644 "$here/com.cxpulse.agent.plist" "$root/Library/LaunchDaemons/com.cxpulse.agent.plist"
install -m 0644 "$here/newsyslog.conf" "$root/private/etc/newsyslog.d/com.cxpulse.agent.conf"
plutil -lint "$root/Library/LaunchDaemons/com.cxpulse.agent.plist" >/dev/null

if [ -n "${CXPULSE_MACOS_APP_IDENTITY:-}" ]; then
    # Inside out: libraries first, the executables last (a signature covers what it loads).
    sign() {
        codesign --force --timestamp --options runtime --entitlements "$here/entitlements.plist" \
            --sign "$CXPULSE_MACOS_APP_IDENTITY" "$@"
    }
    while IFS= read -r -d '' f; do
        if file -b "$f" | grep -q 'Mach-O'; then sign "$f"; fi
    done < <(find "$support/bin/_internal" -type f -print0)
    sign "$support/bin/cxpulse-trace" "$support/bin/cxpulse"
    codesign --verify --strict --verbose=1 "$support/bin/cxpulse"
else
    echo "build.sh: CXPULSE_MACOS_APP_IDENTITY not set: executables left unsigned" >&2
fi

# No bundle in the payload may be relocated by Installer to where a copy already lives.
pkgbuild --analyze --root "$root" "$work/component.plist" >/dev/null
n=0
while /usr/libexec/PlistBuddy -c "Print :$n" "$work/component.plist" >/dev/null 2>&1; do
    /usr/libexec/PlistBuddy -c "Set :$n:BundleIsRelocatable false" "$work/component.plist"
    n=$((n + 1))
done
pkgbuild --root "$root" --component-plist "$work/component.plist" --scripts "$here/scripts" \
    --identifier com.cxpulse.agent --version "$version" --install-location / \
    "$work/cxpulse-agent-component.pkg"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" "$here/distribution.xml" > "$work/distribution.xml"
mkdir -p "$out"
pkg="$(cd "$out" && pwd)/cxpulse-agent-$version-$arch.pkg"
productbuild --distribution "$work/distribution.xml" --package-path "$work" "$work/unsigned.pkg"

if [ -n "${CXPULSE_MACOS_INSTALLER_IDENTITY:-}" ]; then
    productsign --timestamp --sign "$CXPULSE_MACOS_INSTALLER_IDENTITY" "$work/unsigned.pkg" "$pkg"
    pkgutil --check-signature "$pkg"
    if [ -n "${CXPULSE_NOTARY_PROFILE:-}" ]; then
        xcrun notarytool submit "$pkg" --keychain-profile "$CXPULSE_NOTARY_PROFILE" --wait
        xcrun stapler staple "$pkg"
    else
        echo "build.sh: CXPULSE_NOTARY_PROFILE not set: pkg signed but not notarized" >&2
    fi
else
    mv "$work/unsigned.pkg" "$pkg"
    echo "build.sh: CXPULSE_MACOS_INSTALLER_IDENTITY not set: pkg left unsigned (sudo installer -pkg and Jamf policies take it; double-click installs and MDM InstallEnterpriseApplication need it signed)" >&2
fi
echo "$pkg"
