// The status page in a real browser (issue 16 item 1): Debian's chromium
// driven by playwright-core. Run by tests/tests/e2e/ui.rs as
//
//   node status.mjs BASE KEY SIM SCREENSHOT
//
// BASE: the replica's HTTP base; KEY: a key with status:read and
// token:read (it logs in with it and reads the values to look for); SIM:
// the simulator's base (its /__admin/revoke kills the token). The env var
// UI_FORBIDDEN holds more values (secrets, keys), one a line, that must
// appear nowhere. Asserts: the login form, then the page with several
// credentials and a failing one; a refresh (token revoked at the
// simulator, then reported through the API) in the timeline within 2 s;
// no value in the DOM or the event stream; the cookie out of scripts'
// reach. Exits 0 when all hold, 1 with the reason otherwise.
import { chromium } from 'playwright-core';

const [base, key, sim, screenshot] = process.argv.slice(2);
if (!base || !key || !sim || !screenshot) {
  console.error('usage: node status.mjs BASE KEY SIM SCREENSHOT');
  process.exit(2);
}
const WITHIN_MS = 2000;
const forbidden = (process.env.UI_FORBIDDEN || '').split('\n').filter((s) => s.length > 0);
forbidden.push(key);

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function api(path, init = {}) {
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const r = await fetch(base + path, { ...init, headers });
  const body = await r.text();
  check(r.ok, `${init.method || 'GET'} ${path}: ${r.status} ${body.slice(0, 200)}`);
  return JSON.parse(body);
}

function assertClean(what, text) {
  for (const value of forbidden) {
    check(!text.includes(value), `${what} holds a secret value (${value.length} chars)`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1600, height: 900 } });
  // Every message the page's EventSource receives, for the value check.
  await context.addInitScript(() => {
    const Native = window.EventSource;
    window.__sse = [];
    window.EventSource = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener('message', (m) => window.__sse.push(m.data));
      }
    };
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => { failed = failed || new Error(`page error: ${e.message}`); });

  const first = await page.goto(`${base}/ui`);
  check(first.status() === 401, `GET /ui without a session: ${first.status()}, not 401`);
  await page.fill('#key', key);
  await Promise.all([page.waitForURL(`${base}/ui`), page.click('form button[type=submit]')]);
  const rows = await page.locator('#credentials tr[data-id]').count();
  check(rows >= 3, `${rows} credential rows after login, expected several`);
  const failing = await page.locator('#credentials tr[data-state="failing"]').count();
  check(failing >= 1, 'no failing credential on the page');
  const healthy = await page.locator('#credentials tr[data-state="healthy"]').count();
  check(healthy >= 2, `${healthy} healthy rows`);
  await page.waitForSelector('#live.up', { timeout: 5000 });
  check((await page.evaluate(() => document.cookie)) === '', 'the session cookie is readable by scripts');

  const old = (await api('/v1/apps/shop/access_token')).access_token;
  const ticket = (await api('/v1/apps/shop/tickets/jsapi')).ticket;
  forbidden.push(old, ticket);
  const refreshedBefore = await page.locator('#timeline li[data-id="shop"][data-event="refreshed"]').count();

  const revoked = await fetch(`${sim}/__admin/revoke?access_token=${encodeURIComponent(old)}`, { method: 'POST' });
  check(revoked.ok, `revoking at the simulator: ${revoked.status}`);
  const t0 = Date.now();
  await api('/v1/apps/shop/access_token/invalidate', {
    method: 'POST',
    body: JSON.stringify({ access_token: old }),
  });
  await page.waitForFunction(
    (n) => document.querySelectorAll('#timeline li[data-id="shop"][data-event="refreshed"]').length > n,
    refreshedBefore,
    { timeout: 10000, polling: 20 },
  );
  const shownAfter = Date.now() - t0;
  check(shownAfter <= WITHIN_MS, `the refresh showed in the timeline after ${shownAfter} ms (limit ${WITHIN_MS})`);

  const fresh = (await api('/v1/apps/shop/access_token')).access_token;
  check(fresh !== old, 'the token was not replaced');
  forbidden.push(fresh);
  const dom = await page.evaluate(() => document.documentElement.outerHTML + '\n' + document.body.innerText);
  assertClean('the DOM', dom);
  const stream = await page.evaluate(() => window.__sse.join('\n'));
  check(stream.includes('"event":"refreshed"'), 'the event stream carried no refresh');
  assertClean('the event stream', stream);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ok: true, rows, failing, healthy, refresh_shown_ms: shownAfter, screenshot }));
} catch (e) {
  failed = failed || e;
} finally {
  await browser.close();
}
if (failed) {
  console.error(`status page test failed: ${failed.message}`);
  process.exit(1);
}
