"""One wechatpy worker for the `sdk` e2e tests (tests/tests/e2e/sdk.rs) and
the bench's `alternative` section, driven by tests/src/sdk.rs.

It runs wechatpy's own `WeChatClient` for `--duration` seconds, then prints
one JSON line with its counts. What it does in a loop (`--work`):
- `api`: calls a real API (`client.misc.get_wechat_ips()`, i.e.
  `GET cgi-bin/getcallbackip`);
- `jsapi`: what a web page's backend does for `wx.config`: gets the JS-SDK
  ticket (`client.jsapi.get_jsapi_ticket()`, which caches it in the session
  under `{appid}_jsapi_ticket` with its expiry), signs a page URL with it
  (`client.jsapi.get_jsapi_signature`) and submits the signature to the
  simulator's `/__admin/jsapi_check` (`--check-url`), which verifies it as
  the browser's `wx.config` would: with the app's current, still-valid
  ticket. It counts accepted and refused signatures and records every
  ticket it saw;
- `send`: sends a customer-service text message
  (`client.message.send_text(openid, "hello")`, i.e.
  `POST cgi-bin/message/custom/send`), with the API base a coordinator's
  drop-in API base (`http://replica/cgi-bin/`). It also counts the replies
  naming a token error (40001 / 40014 / 42001) that reached wechatpy, which
  wechatpy heals itself (refetch, retry) before its caller sees anything:
  observed, not changed.

Three things differ from a stock client, identically in every mode:
- where the token comes from (`--token-url`: a wxtoken coordinator's
  WeChat-compatible `/cgi-bin/token`, or the simulator's own; wechatpy
  1.8.18 hard-codes `https://api.weixin.qq.com/cgi-bin/token` in
  `WeChatClient.fetch_access_token`) and where API calls go (`--api-base`:
  the simulator, or for tickets a coordinator, which serves
  `ticket/getticket`);
- wechatpy's token refresh margin: it refetches a token it fetched itself
  when less than 60 s of it remain, which is longer than a scaled test token
  lives, so the margin is scaled by the same factor as the token lifetime
  (`--margin`);
- wechatpy's ticket clock (`--tick`): `get_jsapi_ticket` has no margin; it
  stores `int(time.time()) + expires_in` and refetches once
  `expires_at < int(time.time())`, so it counts in whole seconds and keeps
  a ticket until up to a second past the expiry it computed. Against
  7200 s tickets that second is noise; against scaled ones it is a quarter
  of a life. `--tick` is that second scaled like the margin (`1` runs
  wechatpy's own method unchanged).

`--redis-url` switches the session from wechatpy's default in-process
`MemoryStorage` to its `RedisStorage` on a shared Redis, configured as
wechatpy's docs show (docs/quickstart.rst, "Storage"): what fleets of
wechatpy processes run today without a coordinator. Token and ticket then
live in that shared session.

The secret comes from the environment (`WECHAT_SECRET`), never argv, and is
never printed. Pointed at a coordinator it may be the app's stand-in
`compat_secret` rather than the appsecret: wechatpy sends it to the
coordinator's `/cgi-bin/token` and nowhere else.
"""

import argparse
import json
import math
import os
import sys
import time

import requests
from wechatpy import WeChatClient
from wechatpy.client.api import WeChatJSAPI
from wechatpy.exceptions import WeChatClientException
from wechatpy.utils import random_string

# The page whose `wx.config` the worker signs (no #fragment: the signature
# covers the URL without it, and wechatpy signs what it is given).
PAGE_URL = "https://shop.example.com/pay?order=42&from=wxtoken-e2e"


class PointedClient(WeChatClient):
    """wechatpy's client with its token URL, API base and refresh margin set."""

    def __init__(self, appid, secret, token_url, api_base, margin, **kwargs):
        super().__init__(appid, secret, **kwargs)
        self.API_BASE_URL = api_base
        self.token_url = token_url
        self.margin = margin
        self.token_fetches = 0

    def fetch_access_token(self):
        # WeChatClient.fetch_access_token with the URL as the only change.
        self.token_fetches += 1
        return self._fetch_access_token(
            url=self.token_url,
            params={
                "grant_type": "client_credential",
                "appid": self.appid,
                "secret": self.secret,
            },
        )

    @property
    def access_token(self):
        # BaseWeChatClient.access_token with `> 60` replaced by `> self.margin`.
        access_token = self.session.get(self.access_token_key)
        if access_token:
            if not self.expires_at:
                return access_token
            if self.expires_at - time.time() > self.margin:
                return access_token
        self.fetch_access_token()
        return self.session.get(self.access_token_key)


class ToCoordinator(requests.Session):
    """README's wechatpy session for the gateway, line for line: every
    request wechatpy makes (token fetch included) goes to the coordinator."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def request(self, method, url, *args, **kwargs):
        url = url.replace("https://api.weixin.qq.com", self.base, 1)
        return super().request(method, url, *args, **kwargs)


class TickedJSAPI(WeChatJSAPI):
    """WeChatJSAPI.get_jsapi_ticket of wechatpy 1.8.18, line for line, with
    its whole-second clock `int(time.time())` ticking every `tick` seconds."""

    def __init__(self, client, tick):
        super().__init__(client)
        self.tick = tick

    def _now(self):
        return math.floor(time.time() / self.tick) * self.tick

    def get_jsapi_ticket(self):
        ticket_key = "{0}_jsapi_ticket".format(self.appid)
        expires_at_key = "{0}_jsapi_ticket_expires_at".format(self.appid)
        ticket = self.session.get(ticket_key)
        expires_at = self.session.get(expires_at_key, 0)
        if not ticket or expires_at < self._now():
            jsapi_ticket_response = self.get_ticket("jsapi")
            ticket = jsapi_ticket_response["ticket"]
            expires_at = self._now() + int(jsapi_ticket_response["expires_in"])
            self.session.set(ticket_key, ticket)
            self.session.set(expires_at_key, expires_at)
        return ticket


class Counts:
    """Uses (API calls, or signatures) and why some failed."""

    def __init__(self):
        self.calls = self.ok = self.failed = 0
        self.errors = {}

    def fail(self, key):
        self.failed += 1
        self.errors[key] = self.errors.get(key, 0) + 1


def error_key(e):
    if isinstance(e, WeChatClientException):
        return str(e.errcode)
    return type(e).__name__  # a transport error is a failed use too


def run_api(client, a, counts):
    until = time.monotonic() + a.duration
    while time.monotonic() < until:
        counts.calls += 1
        try:
            ips = client.misc.get_wechat_ips()
            if isinstance(ips, list) and ips:
                counts.ok += 1
            else:
                counts.fail("bad_reply")
        except Exception as e:
            counts.fail(error_key(e))
        time.sleep(a.pause)
    return {}


# WeChat's errcodes refusing the token (wechatpy's INVALID_CREDENTIAL,
# INVALID_ACCESS_TOKEN, EXPIRED_ACCESS_TOKEN).
TOKEN_REJECTED = (40001, 40014, 42001)


def observe_token_rejections(client):
    """Counts the replies refusing the token that reach wechatpy's
    `_handle_result` (its own retries included), then lets it handle them as
    it always does."""
    seen = [0]
    handle = client._handle_result

    def observed(res, method=None, url=None, result_processor=None, **kwargs):
        try:
            result = res if isinstance(res, dict) else res.json()
            errcode = int(result.get("errcode", 0)) if isinstance(result, dict) else 0
        except Exception:
            errcode = 0
        if errcode in TOKEN_REJECTED:
            seen[0] += 1
        return handle(res, method, url, result_processor, **kwargs)

    client._handle_result = observed
    return seen


def run_send(client, a, counts):
    rejections = observe_token_rejections(client)
    until = time.monotonic() + a.duration
    while time.monotonic() < until:
        counts.calls += 1
        try:
            res = client.message.send_text(a.openid, "hello")
            if isinstance(res, dict) and res.get("errcode", 0) == 0:
                counts.ok += 1
            else:
                counts.fail("bad_reply")
        except Exception as e:
            counts.fail(error_key(e))
        time.sleep(a.pause)
    return {"token_rejections": rejections[0]}


def run_jsapi(client, a, counts):
    if a.tick != 1:
        client.jsapi = TickedJSAPI(client, a.tick)
    # Count the ticket fetches wechatpy begins (get_jsapi_ticket calls
    # self.get_ticket, which finds this instance attribute first); its
    # retries after a 40001 happen inside one.
    ticket_fetches = [0]
    get_ticket = client.jsapi.get_ticket

    def counted_get_ticket(type="jsapi"):
        ticket_fetches[0] += 1
        return get_ticket(type)

    client.jsapi.get_ticket = counted_get_ticket
    check = requests.Session()
    refused = {}
    tickets = []  # every ticket seen, in order of first sight
    max_wait = 0.0
    until = time.monotonic() + a.duration
    while time.monotonic() < until:
        counts.calls += 1
        started = time.monotonic()
        try:
            ticket = client.jsapi.get_jsapi_ticket()
        except Exception as e:
            counts.fail(error_key(e))
            time.sleep(a.pause)
            continue
        max_wait = max(max_wait, time.monotonic() - started)
        if ticket not in tickets:
            tickets.append(ticket)
        noncestr = random_string(16)
        timestamp = int(time.time())
        signature = client.jsapi.get_jsapi_signature(noncestr, ticket, timestamp, PAGE_URL)
        try:
            r = check.post(
                a.check_url,
                json={
                    "kind": "jsapi",
                    "appid": a.appid,
                    "url": PAGE_URL,
                    "noncestr": noncestr,
                    "timestamp": timestamp,
                    "signature": signature,
                },
                timeout=5,
            )
            r.raise_for_status()
            verdict = r.json()
        except Exception as e:
            counts.fail("check_" + type(e).__name__)
            time.sleep(a.pause)
            continue
        if verdict.get("ok") is True:
            counts.ok += 1
        else:
            reason = str(verdict.get("reason", "refused"))
            counts.fail("refused: " + reason)
            refused[reason] = refused.get(reason, 0) + 1
        time.sleep(a.pause)
    return {
        "refused": refused,
        "tickets": tickets,
        "ticket_fetches": ticket_fetches[0],
        "max_ticket_wait_ms": max_wait * 1000.0,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--appid", required=True)
    p.add_argument("--token-url", required=True)
    p.add_argument("--api-base", required=True)
    p.add_argument("--margin", type=float, required=True, help="seconds")
    p.add_argument("--duration", type=float, required=True, help="seconds")
    p.add_argument("--pause", type=float, default=0.1, help="seconds between calls")
    p.add_argument("--work", choices=["api", "jsapi", "send"], default="api")
    p.add_argument("--openid", default="oE2eUser", help="the recipient (send work)")
    p.add_argument("--check-url", help="the simulator's /__admin/jsapi_check (jsapi work)")
    p.add_argument(
        "--tick",
        type=float,
        default=1.0,
        help="seconds per tick of get_jsapi_ticket's whole-second clock",
    )
    p.add_argument(
        "--session-base",
        help="rewrite WeChat's host to this in wechatpy's HTTP session (README's ToCoordinator)",
    )
    p.add_argument("--redis-url", help="use RedisStorage on this Redis")
    p.add_argument("--redis-prefix", default="wechatpy")
    p.add_argument(
        "--ready-file",
        help="create this file when set up, then start on a line from stdin",
    )
    a = p.parse_args()
    if a.work == "jsapi" and not a.check_url:
        p.error("--work jsapi needs --check-url")
    if a.tick <= 0:
        p.error("--tick must be positive")

    session = None
    if a.redis_url:
        import redis
        from wechatpy.session.redisstorage import RedisStorage

        session = RedisStorage(redis.Redis.from_url(a.redis_url), prefix=a.redis_prefix)

    client = PointedClient(
        a.appid,
        os.environ["WECHAT_SECRET"],
        token_url=a.token_url,
        api_base=a.api_base,
        margin=a.margin,
        session=session,
        timeout=5,
    )

    if a.session_base:
        client._http = ToCoordinator(a.session_base)

    if a.ready_file:
        # All workers start together, like a fleet after a deploy.
        open(a.ready_file, "w").close()
        sys.stdin.readline()

    counts = Counts()
    run = {"api": run_api, "jsapi": run_jsapi, "send": run_send}[a.work]
    extra = run(client, a, counts)
    report = {
        "calls": counts.calls,
        "ok": counts.ok,
        "failed": counts.failed,
        "errors": counts.errors,
        "token_fetches": client.token_fetches,
    }
    report.update(extra)
    print(json.dumps(report))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
