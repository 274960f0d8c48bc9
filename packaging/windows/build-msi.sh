#!/usr/bin/env bash
# Build cxpulse-agent-<version>-x64.msi with wixl (msitools) from a frozen Windows agent folder.
#
#   packaging/windows/build-msi.sh --app DIR [--out DIR] [--version V]
#   packaging/windows/build-msi.sh --placeholders [--out DIR]     (Linux check: stand-in files)
#
# --app is the PyInstaller folder built on Windows (packaging/freeze.py on a Windows runner; CI
# copies it to a Linux job, which runs this script: packaging/ci/installers.yml). With
# CXPULSE_SIGN_PFX set, the executables are signed before they go into the MSI and the MSI after.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
app="" out="$repo/build/packaging" version="" placeholders=""
while [ $# -gt 0 ]; do
    case "$1" in
        --app) app="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --version) version="$2"; shift 2 ;;
        --placeholders) placeholders=1; shift ;;
        *) echo "usage: $0 --app DIR | --placeholders [--out DIR] [--version V]" >&2; exit 2 ;;
    esac
done
for tool in wixl msiinfo msibuild; do
    command -v "$tool" >/dev/null || { echo "build-msi: $tool not found (apt-get install wixl msitools)" >&2; exit 2; }
done
if [ -z "$version" ]; then
    version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/proto/cxpulse/__init__.py")"
fi
# MSI versions are a.b.c numbers (each part within 255.255.65535): drop any local suffix.
msi_version="$(printf '%s' "$version" | sed -E 's/^([0-9]+(\.[0-9]+){0,2}).*/\1/')"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -n "$placeholders" ]; then
    "$python" "$here/placeholder_pe.py" "$work/app" >/dev/null
    app="$work/app"
    echo "build-msi: placeholder files (not the agent): this MSI only checks the installer's tables" >&2
else
    [ -n "$app" ] || { echo "build-msi: --app DIR or --placeholders" >&2; exit 2; }
    # A copy: signing rewrites the executables.
    cp -a "$app" "$work/app"
    app="$work/app"
fi
[ -f "$app/cxpulse.exe" ] || { echo "build-msi: $app/cxpulse.exe is missing" >&2; exit 2; }

"$repo/packaging/sign.sh" "$app/cxpulse.exe" "$app/cxpulse-trace.exe"
"$python" "$here/harvest.py" "$app" --exclude cxpulse.exe > "$work/files.wxs"

mkdir -p "$out"
msi="$(cd "$out" && pwd)/cxpulse-agent-${version}-x64.msi"
# wixl resolves File sources relative to the working directory, not as absolute paths.
(cd "$app" && wixl -a x64 -D SourceDir=. -D Version="$msi_version" -o "$msi" \
    "$here/cxpulse-agent.wxs" "$work/files.wxs")
# Mark the public properties secure (see the .wxs): append them to wixl's own list
# (msiinfo ends its lines with CRLF).
secure="$(msiinfo export "$msi" Property | tr -d '\r' | awk -F'\t' '$1 == "SecureCustomProperties" { print $2 }')"
msibuild "$msi" -q "UPDATE \`Property\` SET \`Value\` = '${secure:+$secure;}COLLECTOR;ENROLL_TOKEN;CA_CERT;SITE;KEEP_DATA' WHERE \`Property\` = 'SecureCustomProperties'"
# wixl reads HideTarget but does not set the bit (msidbCustomActionTypeHideTarget, 8192): without
# it the MSI log would show the configure command line, token included.
ca_type="$(msiinfo export "$msi" CustomAction | tr -d '\r' | awk -F'\t' '$1 == "CA_WriteConfig" { print $2 }')"
if [ $((ca_type & 8192)) -eq 0 ]; then
    msibuild "$msi" -q "UPDATE \`CustomAction\` SET \`Type\` = $((ca_type | 8192)) WHERE \`Action\` = 'CA_WriteConfig'"
fi
"$repo/packaging/sign.sh" "$msi"
echo "$msi"
