#!/bin/sh
# The dev stack's token consumer (docker-compose.yml, service `consumer`):
# every second, read the shared token from a coordinator over the HTTP API
# (round robin over $COORDINATORS, `host` or `host:port`) and use it against wechat-sim's
# /cgi-bin/getcallbackip, printing `ok` or `rejected`. A healthy fleet prints
# only `ok`, and the generation goes up by one per token lifetime.
# Never prints the token itself.
set -u
: "${WXTOKEN_API_KEY:?set WXTOKEN_API_KEY}"
APP_ID=${APP_ID:-shop}
COORDINATORS=${COORDINATORS:-coordinator-1 coordinator-2 coordinator-3}
WECHAT_BASE=${WECHAT_BASE:-http://wechat-sim:9000}
INTERVAL=${INTERVAL:-1}

# field NAME JSON: the value of a top-level string or number field.
field() {
  printf '%s' "$2" | sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"
}

n=0
while :; do
  for c in $COORDINATORS; do
    n=$((n + 1))
    case $c in *:*) addr=$c ;; *) addr=$c:8088 ;; esac
    now=$(date -u +%H:%M:%S)
    body=$(curl -sS --max-time 5 -H "Authorization: Bearer $WXTOKEN_API_KEY" \
      "http://$addr/v1/apps/$APP_ID/access_token" 2>&1)
    token=$(field access_token "$body")
    if [ -z "$token" ]; then
      why=$(field code "$body")
      [ -n "$why" ] || why=$(printf '%s' "$body" | head -c 200)
      echo "$now #$n $c: no token: $why"
      sleep "$INTERVAL"
      continue
    fi
    generation=$(field generation "$body")
    expires_in=$(field expires_in "$body")
    reply=$(curl -sS --max-time 5 "$WECHAT_BASE/cgi-bin/getcallbackip?access_token=$token" 2>&1)
    errcode=$(field errcode "$reply")
    if [ -z "$errcode" ] || [ "$errcode" = 0 ]; then
      echo "$now #$n $c: ok generation=$generation expires_in=${expires_in}s"
    else
      echo "$now #$n $c: REJECTED generation=$generation errcode=$errcode $(field errmsg "$reply")"
    fi
    sleep "$INTERVAL"
  done
done
