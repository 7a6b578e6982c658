"""One wechatpy worker for the `sdk` e2e test (tests/tests/e2e/sdk.rs).

It runs wechatpy's own `WeChatClient` and calls a real API
(`client.misc.get_wechat_ips()`, i.e. `GET cgi-bin/getcallbackip`) in a loop
for `--duration` seconds, then prints one JSON line with its counts.

Two things differ from a stock client, identically in both modes:
- where the token comes from (`--token-url`: a wxtoken coordinator's
  WeChat-compatible `/cgi-bin/token`, or the simulator's own) and where API
  calls go (`--api-base`, the simulator);
- wechatpy's refresh margin: it refetches a token it fetched itself when
  less than 60 s of it remain, which is longer than a scaled test token
  lives, so the margin is scaled by the same factor as the token lifetime
  (`--margin`).

`--redis-url` switches the session from wechatpy's default in-process
`MemoryStorage` to its `RedisStorage` on a shared Redis: what fleets of
wechatpy processes run today without a coordinator.

The secret comes from the environment (`WECHAT_SECRET`), never argv, and is
never printed.
"""

import argparse
import json
import os
import sys
import time

from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException


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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--appid", required=True)
    p.add_argument("--token-url", required=True)
    p.add_argument("--api-base", required=True)
    p.add_argument("--margin", type=float, required=True, help="seconds")
    p.add_argument("--duration", type=float, required=True, help="seconds")
    p.add_argument("--pause", type=float, default=0.1, help="seconds between calls")
    p.add_argument("--redis-url", help="use RedisStorage on this Redis")
    p.add_argument("--redis-prefix", default="wechatpy")
    p.add_argument(
        "--ready-file",
        help="create this file when set up, then start on a line from stdin",
    )
    a = p.parse_args()

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

    if a.ready_file:
        # All workers start together, like a fleet after a deploy.
        open(a.ready_file, "w").close()
        sys.stdin.readline()

    calls = ok = failed = 0
    errors = {}
    until = time.monotonic() + a.duration
    while time.monotonic() < until:
        calls += 1
        try:
            ips = client.misc.get_wechat_ips()
            if isinstance(ips, list) and ips:
                ok += 1
            else:
                failed += 1
                errors["bad_reply"] = errors.get("bad_reply", 0) + 1
        except WeChatClientException as e:
            failed += 1
            key = str(e.errcode)
            errors[key] = errors.get(key, 0) + 1
        except Exception as e:  # a transport error is a failed use too
            failed += 1
            key = type(e).__name__
            errors[key] = errors.get(key, 0) + 1
        time.sleep(a.pause)

    print(
        json.dumps(
            {
                "calls": calls,
                "ok": ok,
                "failed": failed,
                "errors": errors,
                "token_fetches": client.token_fetches,
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
