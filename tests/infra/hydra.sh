#!/usr/bin/env bash
# A real OAuth2 / OIDC server on loopback: Ory Hydra v2.3.0, built from the Go module proxy (see
# tests/infra/README.md and tools/tools.d/hydra.sh).
#   tests/infra/hydra.sh install                      build it once (cached per user, a few minutes)
#   tests/infra/hydra.sh up     [--port P] [--dir D]  start `hydra serve all --dev`: public API on
#                                                     127.0.0.1:P, admin API on 127.0.0.1:P+1, in-memory
#                                                     store, JWT access tokens; waits for /health/ready,
#                                                     writes D/env and prints its path
#     up --token-hook URL                             Hydra POSTs every token request to URL first (its
#                                                     "token hook"); claims the hook returns under
#                                                     session.access_token land in the token's `ext` claim
#                                                     (how a test gives a client-credentials token groups)
#     up --login-url URL --consent-url URL            Hydra sends a browser's authorization-code flow to
#                                                     these pages (its login & consent provider, e.g.
#                                                     isthmus_core.testing.oidc_login); without them the
#                                                     flow stops at Hydra's own error page
#   tests/infra/hydra.sh down   [--dir D]             stop it (its clients and keys are gone: in-memory)
#   tests/infra/hydra.sh status [--dir D]             "running" + D/env, or "stopped" (exit 1)
#   tests/infra/hydra.sh client [--audience A]... [--name N] [--scope S] [--dir D]
#                                                     a client-credentials client (admin API); prints
#                                                     {"client_id": ..., "client_secret": ...}
#   tests/infra/hydra.sh rotate-keys [--dir D]        a new signing key in the hydra.jwt.access-token set:
#                                                     tokens minted afterwards carry its kid; prints the kid
# D/env (shell syntax) holds ISSUER (exactly the tokens' iss), JWKS_URL, TOKEN_URL, ADMIN_URL, PUBLIC_URL.
# Default D is .tools/hydra (beside bin/hydra), P 24444. Needs Go only to build; curl to talk to it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=v2.3.0
CACHE=${ISTHMUS_TOOLS_CACHE:-$HOME/.cache/isthmus-tools}/hydra-$VERSION
BIN=$CACHE/hydra
PORT=24444
DIR=$ROOT/.tools/hydra
PY=${PYTHON:-$ROOT/.venv/bin/python}
READY_TIMEOUT_S=${HYDRA_READY_TIMEOUT_S:-60}
STOP_TIMEOUT_S=${HYDRA_STOP_TIMEOUT_S:-20}
MARK=.isthmus-hydra # marks files this script made in D: the only ones `down` deletes
FILES=(hydra.yml hydra.pid server.log env env.new port "$MARK")
AUDIENCES=()
NAME=isthmus-test-client
SCOPE=""
TOKEN_HOOK=""
LOGIN_URL=""
CONSENT_URL=""

cmd=${1:-}
shift || true
while [ $# -gt 0 ]; do
  case $1 in
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --audience) AUDIENCES+=("${2:?--audience needs a value}"); shift 2 ;;
    --name) NAME=${2:?--name needs a value}; shift 2 ;;
    --scope) SCOPE=${2?--scope needs a value}; shift 2 ;;
    --token-hook) TOKEN_HOOK=${2:?--token-hook needs a URL}; shift 2 ;;
    --login-url) LOGIN_URL=${2:?--login-url needs a URL}; shift 2 ;;
    --consent-url) CONSENT_URL=${2:?--consent-url needs a URL}; shift 2 ;;
    *) echo "hydra.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $PORT in '' | *[!0-9]*) echo "hydra.sh: --port must be a number, got '$PORT'" >&2; exit 2 ;; esac
if [ "$PORT" -lt 1024 ] || [ "$PORT" -gt 65534 ]; then
  echo "hydra.sh: --port must be in 1024..65534 (the admin API takes P+1), got $PORT" >&2; exit 2
fi
DIR=$(realpath -m "$DIR")
[ -x "$PY" ] || PY=python3

die() { echo "hydra.sh: $*" >&2; exit 1; }

json_string() { "$PY" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }

install() {
  if [ -x "$BIN" ] && [ "$(cat "$CACHE/.version" 2>/dev/null)" = "$VERSION" ]; then
    mkdir -p "$ROOT/.tools/hydra/bin" && ln -sfn "$BIN" "$ROOT/.tools/hydra/bin/hydra"
    return 0
  fi
  bash "$ROOT/tools/tools.d/hydra.sh" >&2
  [ -x "$BIN" ] || die "hydra is not built: install Go 1.24+ (https://go.dev/dl) and run 'make test-setup'"
}

alive() { [ -f "$DIR/hydra.pid" ] && kill -0 "$(cat "$DIR/hydra.pid")" 2>/dev/null; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

admin_url() { echo "http://127.0.0.1:$(($(cat "$DIR/port") + 1))"; }

ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/health/ready")" = 200 ]; }

up() {
  install
  if alive; then # idempotent: already running from this dir
    echo "$DIR/env"; return 0
  fi
  local p
  for p in "$PORT" $((PORT + 1)); do
    port_free "$p" || die "127.0.0.1:$p is already in use (another server? 'make hydra-down', or pass --port)"
  done
  mkdir -p "$DIR"
  rm -f "${FILES[@]/#/$DIR/}"
  touch "$DIR/$MARK"
  echo "$PORT" >"$DIR/port"
  local public="http://127.0.0.1:$PORT" admin="http://127.0.0.1:$((PORT + 1))" secret
  # the system secret encrypts Hydra's own data; the store is in memory, so a fresh one per start
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  local provider=""  # the login & consent pages, when given (JSON strings are valid YAML)
  [ -z "$LOGIN_URL" ] || provider+="  login: $(json_string "$LOGIN_URL")"$'\n'
  [ -z "$CONSENT_URL" ] || provider+="  consent: $(json_string "$CONSENT_URL")"$'\n'
  (umask 077 && cat >"$DIR/hydra.yml" <<YML
dsn: memory
serve:
  public: {host: 127.0.0.1, port: $PORT}
  admin: {host: 127.0.0.1, port: $((PORT + 1))}
urls:
  self: {issuer: $public/}
$provider
strategies: {access_token: jwt}
secrets: {system: ["$secret"]}
log: {level: warn, leak_sensitive_values: false}
YML
  )
  if [ -n "$TOKEN_HOOK" ]; then
    printf 'oauth2:\n  token_hook: "%s"\n' "$TOKEN_HOOK" >>"$DIR/hydra.yml"
  fi
  # --dev: plain HTTP on loopback (no TLS), as every other test server here
  nohup "$BIN" serve all --dev -c "$DIR/hydra.yml" >>"$DIR/server.log" 2>&1 </dev/null &
  echo $! >"$DIR/hydra.pid"
  local i
  for ((i = 0; i < READY_TIMEOUT_S * 5; i++)); do
    alive || { tail -n 40 "$DIR/server.log" >&2; rm -f "$DIR/hydra.pid"; die "hydra exited during start-up"; }
    if ready "$public" && ready "$admin"; then
      write_env "$public" "$admin" || { halt; die "could not read $public/.well-known/openid-configuration"; }
      echo "$DIR/env"
      return 0
    fi
    sleep 0.2
  done
  echo "hydra.sh: not ready within ${READY_TIMEOUT_S}s; last lines of $DIR/server.log:" >&2
  tail -n 40 "$DIR/server.log" >&2
  halt
  exit 1
}

# the issuer exactly as Hydra puts it in tokens (its discovery document), and the endpoints it names
write_env() {
  local public=$1 admin=$2
  curl -sf "$public/.well-known/openid-configuration" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print("ISSUER=" + d["issuer"])
print("JWKS_URL=" + d["jwks_uri"])
print("TOKEN_URL=" + d["token_endpoint"])
print("ADMIN_URL=" + sys.argv[1])
print("PUBLIC_URL=" + sys.argv[2])
' "$admin" "$public" >"$DIR/env.new" || return 1
  mv -f "$DIR/env.new" "$DIR/env"
}

# SIGTERM, then SIGKILL after STOP_TIMEOUT_S
halt() {
  alive || return 0
  local pid i
  pid=$(cat "$DIR/hydra.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT_S * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  echo "hydra.sh: hydra $pid did not stop within ${STOP_TIMEOUT_S}s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

down() {
  [ -f "$DIR/$MARK" ] || { [ ! -e "$DIR/hydra.pid" ] && return 0; }
  [ -f "$DIR/$MARK" ] || die "$DIR/hydra.pid was not made by hydra.sh: not touching it"
  halt
  rm -f "${FILES[@]/#/$DIR/}"
  rmdir "$DIR" 2>/dev/null || true # only if nothing else is in it (the default dir keeps bin/)
}

status() {
  if alive; then
    echo "running (pid $(cat "$DIR/hydra.pid"))"
    cat "$DIR/env" 2>/dev/null || echo "(no $DIR/env yet)"
  else
    echo "stopped"
    return 1
  fi
}

running() { alive || die "no hydra running from $DIR ('make hydra-up' or 'hydra.sh up --dir $DIR')"; }

# POST JSON to the admin API; prints the response body, fails with it on an HTTP error
admin_post() {
  local path=$1 body=$2 out code
  out=$(mktemp)
  code=$(curl -s -o "$out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data "$body" "$(admin_url)$path") || { rm -f "$out"; die "admin API $path unreachable"; }
  if [ "${code:0:1}" != 2 ]; then
    echo "hydra.sh: admin API $path answered $code: $(cat "$out")" >&2
    rm -f "$out"
    exit 1
  fi
  cat "$out"
  rm -f "$out"
}

client() {
  running
  [ ${#AUDIENCES[@]} -gt 0 ] || AUDIENCES=(isthmus)
  local body
  body=$("$PY" -c '
import json, sys
name, scope, *aud = sys.argv[1:]
print(json.dumps({
    "client_name": name,
    "grant_types": ["client_credentials"],
    "response_types": ["token"],
    "audience": aud,
    "scope": scope,
    "token_endpoint_auth_method": "client_secret_basic",
}))' "$NAME" "$SCOPE" "${AUDIENCES[@]}")
  admin_post /admin/clients "$body" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(json.dumps({"client_id": d["client_id"], "client_secret": d["client_secret"]}))'
}

rotate_keys() {
  running
  local kid
  kid="isthmus-$(date -u +%Y%m%dT%H%M%S)-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  admin_post /admin/keys/hydra.jwt.access-token "{\"alg\":\"RS256\",\"use\":\"sig\",\"kid\":\"$kid\"}" >/dev/null
  echo "$kid"
}

case $cmd in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  client) client ;;
  rotate-keys) rotate_keys ;;
  *)
    echo "usage: hydra.sh install|up|down|status|client|rotate-keys [--port P] [--dir D]" \
      "[--token-hook URL] [--login-url URL] [--consent-url URL] [--audience A] [--name N] [--scope S]" >&2
    exit 2
    ;;
esac
