#!/usr/bin/env bash
# Regenerates the Python code committed beside the IDL. tests/test_proto.py
# checks that the committed files equal a fresh generation.
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-.}"
python -m grpc_tools.protoc -I . --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" cxpulse/v1/telemetry.proto
