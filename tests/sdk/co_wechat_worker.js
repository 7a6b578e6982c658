'use strict';
/**
 * One co-wechat-api worker: the Node counterpart of wechatpy_worker.py, with
 * the same command line, behaviour and JSON line.
 *
 * It runs co-wechat-api's own `API` (npm `co-wechat-api`, pinned in
 * package.json) and calls a real API through it (`api.getIp()`, i.e.
 * `GET cgi-bin/getcallbackip`) in a loop for `--duration` seconds, then
 * prints one JSON line with its counts:
 *   {"calls":…,"ok":…,"failed":…,"errors":{…},"token_fetches":…}
 *
 * Stock co-wechat-api 3.11.0 (lib/api_common.js), for reference:
 * - `getAccessToken()` GETs `this.prefix + 'token?grant_type=…'` (`prefix`
 *   is `https://api.weixin.qq.com/cgi-bin/`, also the base of every API
 *   call), stores `expireTime = Date.now() + (expires_in - 10) * 1000`
 *   (a 10 s margin) through `saveToken`, and returns the token.
 * - `ensureAccessToken()`, before every API call, asks `getToken()` and
 *   uses that token while `Date.now() < expireTime`, else calls
 *   `getAccessToken()`. Without getToken/saveToken the token lives in the
 *   `API` object (`this.store`): one per process.
 * - `request()` on a reply with errcode 40001 or 42001 (any URL, retry = 3
 *   by default): `saveToken(null)`, `getAccessToken()` (an unconditional
 *   fetch), and the same request again with the new token in its URL; at
 *   most 3 such retries, then it throws. With a shared store, that null
 *   wipes the token every process shares. A 40001 on the token request
 *   itself recurses the same way, without bound (each nested fetch starts
 *   at retry = 3). Unchanged here.
 *
 * What differs from a stock `API`, identically in both modes:
 * - where the token comes from (`--token-url`: a wxtoken coordinator's
 *   WeChat-compatible `/cgi-bin/token`, or the simulator's own) and where
 *   API calls go (`--api-base`, the simulator, set as `api.prefix`);
 * - the refresh margin: the 10 s of `expires_in - 10` is `--margin`
 *   (scaled by the harness like the token lifetime, as wechatpy's 60 s).
 * Both are in `PointedAPI.getAccessToken`, a copy of the stock method in
 * which only the URL and the margin differ, plus a counter
 * (`token_fetches`: every call, i.e. every token request it makes,
 * including the refetches of the 40001/42001 retry). Nothing else is
 * overridden; the HTTP timeout is set to 5 s with the public
 * `api.setOpts({timeout})` (stock: httpx's 3 s), like the Python worker's
 * `timeout=5`.
 *
 * `--redis-url` replaces the in-process store with the getToken/saveToken
 * pair co-wechat-api's README asks multi-process deployments to pass
 * ("store it globally, e.g. in a database or redis"): the token object as
 * JSON (`{"accessToken":…,"expireTime":…}`, no Redis TTL) under
 * `<redis-prefix>:<appid>:access_token` on a shared Redis; what fleets of
 * co-wechat-api processes run today without a coordinator.
 *
 * A failed use is keyed in `errors` by WeChat's errcode when the SDK threw
 * one (e.g. "40001"), else by the error's name (plus its code for Node's
 * system errors, e.g. "Error:ECONNREFUSED"); a reply without a non-empty
 * `ip_list` is "bad_reply".
 *
 * The secret comes from the environment (`WECHAT_SECRET`), never argv, and
 * is never printed (co-wechat-api puts it in the token URL, which some of
 * its error messages quote; messages are never printed either).
 */

const { parseArgs } = require('node:util');
const { setTimeout: sleep } = require('node:timers/promises');
const readline = require('node:readline');
const fs = require('node:fs');

const API = require('co-wechat-api');

const USAGE = `usage: co_wechat_worker.js --appid APPID --token-url URL --api-base URL
                           --margin SECONDS --duration SECONDS [--pause SECONDS]
                           [--redis-url URL] [--redis-prefix PREFIX]
                           [--ready-file PATH]
(the appsecret comes from env WECHAT_SECRET)`;

/** co-wechat-api's API with its token URL, API base and refresh margin set. */
class PointedAPI extends API {
  constructor(appid, secret, getToken, saveToken, { tokenUrl, apiBase, margin }) {
    super(appid, secret, getToken, saveToken);
    this.prefix = apiBase;
    this.tokenUrl = tokenUrl;
    this.margin = margin;
    this.tokenFetches = 0;
  }

  async getAccessToken() {
    // API.prototype.getAccessToken with the URL (`this.prefix + 'token?'`)
    // and the margin (`- 10`) as the only changes.
    this.tokenFetches += 1;
    var url = this.tokenUrl + (this.tokenUrl.includes('?') ? '&' : '?') +
      'grant_type=client_credential&appid=' + this.appid + '&secret=' + this.appsecret;
    var data = await this.request(url);

    var expireTime = Date.now() + (data.expires_in - this.margin) * 1000;
    var token = new API.AccessToken(data.access_token, expireTime);
    await this.saveToken(token);
    return token;
  }
}

function fail(msg) {
  process.stderr.write(`${USAGE}\nco_wechat_worker.js: error: ${msg}\n`);
  process.exit(2);
}

function parse() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        appid: { type: 'string' },
        'token-url': { type: 'string' },
        'api-base': { type: 'string' },
        margin: { type: 'string' },
        duration: { type: 'string' },
        pause: { type: 'string', default: '0.1' },
        'redis-url': { type: 'string' },
        'redis-prefix': { type: 'string', default: 'co-wechat-api' },
        'ready-file': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    fail(e.message);
  }
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  for (const k of ['appid', 'token-url', 'api-base', 'margin', 'duration']) {
    if (values[k] === undefined) fail(`the following argument is required: --${k}`);
  }
  const seconds = (k) => {
    const s = values[k].trim();
    const n = Number(s);
    if (s === '' || !Number.isFinite(n) || n < 0) fail(`--${k}: not a number of seconds: ${values[k]}`);
    return n;
  };
  return {
    appid: values.appid,
    tokenUrl: values['token-url'],
    apiBase: values['api-base'],
    margin: seconds('margin'),
    duration: seconds('duration'),
    pause: seconds('pause'),
    redisUrl: values['redis-url'],
    redisPrefix: values['redis-prefix'],
    readyFile: values['ready-file'],
  };
}

/** Resolves on one line from stdin (or its end), like Python's readline. */
function oneLine() {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      rl.close();
      process.stdin.destroy();
      resolve();
    };
    rl.once('line', finish);
    rl.once('close', finish);
  });
}

function errorKey(e) {
  if (e && e.name === 'WeChatAPIError' && typeof e.code === 'number') return String(e.code);
  if (e instanceof Error) return typeof e.code === 'string' ? `${e.name}:${e.code}` : e.name;
  return typeof e;
}

async function main() {
  const a = parse();
  const secret = process.env.WECHAT_SECRET;
  if (!secret) {
    process.stderr.write('co_wechat_worker.js: error: env WECHAT_SECRET is not set\n');
    process.exit(2);
  }

  let redis = null;
  let getToken;
  let saveToken;
  if (a.redisUrl) {
    const Redis = require('ioredis');
    redis = new Redis(a.redisUrl, { maxRetriesPerRequest: 1 });
    redis.on('error', () => {}); // a failed command rejects; counted as a failed use
    await redis.ping(); // fail here, before the ready file, if Redis is unreachable
    const key = `${a.redisPrefix}:${a.appid}:access_token`;
    // The README's pair, with Redis as the global store.
    getToken = async function () {
      const txt = await redis.get(key);
      return txt === null ? null : JSON.parse(txt);
    };
    saveToken = async function (token) {
      await redis.set(key, JSON.stringify(token));
    };
  }

  const api = new PointedAPI(a.appid, secret, getToken, saveToken, {
    tokenUrl: a.tokenUrl,
    apiBase: a.apiBase,
    margin: a.margin,
  });
  api.setOpts({ timeout: 5000 });

  if (a.readyFile) {
    // All workers start together, like a fleet after a deploy.
    fs.closeSync(fs.openSync(a.readyFile, 'w'));
    await oneLine();
  }

  let calls = 0;
  let ok = 0;
  let failed = 0;
  const errors = {};
  const count = (key) => {
    failed += 1;
    errors[key] = (errors[key] || 0) + 1;
  };
  const until = performance.now() + a.duration * 1000;
  while (performance.now() < until) {
    calls += 1;
    try {
      const reply = await api.getIp();
      if (reply && Array.isArray(reply.ip_list) && reply.ip_list.length > 0) {
        ok += 1;
      } else {
        count('bad_reply');
      }
    } catch (e) {
      count(errorKey(e));
    }
    await sleep(a.pause * 1000);
  }

  if (redis) {
    try {
      await redis.quit();
    } catch {
      redis.disconnect();
    }
  }
  const line = JSON.stringify({
    calls,
    ok,
    failed,
    errors,
    token_fetches: api.tokenFetches,
  });
  process.stdout.write(line + '\n', () => process.exit(0));
}

main().catch((e) => {
  process.stderr.write(`co_wechat_worker.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
