// The dashboard end to end in Debian's headless Chromium, driven by tests/it/dashboard.rs,
// which starts callmux and its fake upstreams and passes what this script needs as JSON:
//
//   node tests/browser/dashboard.mjs '<json>'
//
// {base, org, key, chromium, screenshot, calls: {ringing, added, refused, invalid, hostile},
//  providers: {failing}}.
// When the scenario needs an upstream to change, it prints `step <name>` and waits for the
// test to answer `done <name>` on stdin. It exits 0 only when every check passed.

import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
const WAIT = { timeout: 20000 };
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// Asks the Rust side to change an upstream, and waits until it has.
async function step(name) {
  console.log(`step ${name}`);
  const { value, done } = await lines.next();
  assert.equal(done ? null : value.trim(), `done ${name}`);
}

function check(name) {
  console.log(`ok ${name}`);
}

const row = (page, id) => page.locator(`#calls-body tr[data-call-id="${CSS.escape(id)}"]`);

// The page's own storage and address, as a script in it sees them.
const exposure = (page) => page.evaluate(() => ({
  href: location.href,
  cookie: document.cookie,
  local: localStorage.length,
  session: sessionStorage.getItem('callmux.session'),
  text: document.body.innerText,
}));

function noKeyExposed(seen, key) {
  assert.ok(!seen.href.includes(key), `the key is in the address: ${seen.href}`);
  assert.ok(!seen.href.includes('#'), `the address keeps a fragment: ${seen.href}`);
  assert.equal(seen.cookie, '', 'the page set a cookie');
  assert.equal(seen.local, 0, 'the page wrote to localStorage');
  assert.ok(!seen.text.includes(key), 'the key is shown on the page');
}

// Console errors and CSP violations fail the run; a refused request's own log line does not.
function watch(page, problems) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
  });
}

// Elements marked with each scope, as the lead's place-a-call form (data-scope="place") and a
// stop-all button would be: the page must show each only to a key holding its scope.
const SCOPES = ['read', 'end', 'stop_all', 'place'];
const addProbes = (scopes) => document.addEventListener('DOMContentLoaded', () => {
  for (const scope of scopes) {
    const probe = document.createElement('div');
    probe.id = `probe-${scope}`;
    probe.dataset.scope = scope;
    probe.textContent = `needs ${scope}`;
    document.body.append(probe);
  }
});

// Node has no CSS.escape; the ids the test uses need only quotes escaped.
globalThis.CSS = { escape: (s) => s.replace(/["\\]/g, '\\$&') };

// playwright-core gives every launch a fresh profile of its own, removed at close.
const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const problems = [];
try {
  // ------------------------------------------------------------- desktop, signing in by form
  const desk = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  // Records each ask for the stream, headers included, to see what a reconnect sends.
  await desk.addInitScript(() => {
    const real = window.fetch;
    window.streamAsks = [];
    window.fetch = (url, init) => {
      if (String(url).endsWith('/calls/stream')) window.streamAsks.push({ ...((init && init.headers) || {}) });
      return real(url, init);
    };
  });
  await desk.addInitScript(addProbes, SCOPES);
  const page = await desk.newPage();
  watch(page, problems);
  await page.goto(cfg.base);
  await page.locator('#sign-in-form').waitFor(WAIT);
  assert.equal(await page.locator('#board').isHidden(), true);

  await page.fill('#org', cfg.org);
  await page.fill('#key', `${cfg.key}-typed-wrong`);
  await page.press('#key', 'Enter');
  const refusal = page.locator('#sign-in-error');
  await refusal.waitFor({ state: 'visible', ...WAIT });
  assert.match(await refusal.textContent(), /Sign-in refused: .+ \(AUTH_[A-Z_]+\)/);
  assert.equal(await page.locator('#sign-in-form').isVisible(), true);
  assert.equal(await page.locator('#board').isHidden(), true);
  assert.equal((await exposure(page)).session, null, 'a refused key stays in sessionStorage');
  check('a wrong key is refused with a message and the form comes back');

  await page.fill('#key', cfg.key);
  await page.click('#sign-in-form button[type=submit]');
  await page.locator('#connection[data-live="yes"]').waitFor(WAIT);
  await row(page, cfg.calls.ringing).waitFor(WAIT);
  assert.equal(await page.locator('#org-name').textContent(), cfg.org);
  check('the form signs in and the stream goes live');
  for (const scope of SCOPES) await page.locator(`#probe-${scope}`).waitFor({ state: 'visible', ...WAIT });
  await row(page, cfg.calls.ringing).locator('button.end').waitFor({ state: 'visible', ...WAIT });
  check('a key with every scope is offered End call and every element marked with a scope');

  // An upstream's markup is shown as its text.
  const hostile = row(page, cfg.calls.hostile.id).locator('td[data-col="from"]');
  assert.equal(await hostile.textContent(), cfg.calls.hostile.from);
  assert.equal(await page.locator('#calls-body img, #calls-body b, #calls-body script').count(), 0);
  check('what an upstream sent is text, never markup');

  await page.evaluate(() => { window.stillTheSamePage = true; });
  const before = Number(await page.locator('#total').textContent());
  await step('add-call');
  await row(page, cfg.calls.added).waitFor(WAIT);
  await page.waitForFunction((n) => Number(document.getElementById('total').textContent) === n, before + 1, WAIT);
  check('a call the upstream starts listing appears, and the count with it');

  const status = row(page, cfg.calls.ringing).locator('td[data-col="status"]');
  assert.equal(await status.getAttribute('data-status'), 'ringing');
  assert.match(await status.textContent(), /ringing/);
  await step('answer-call');
  await page.locator(`#calls-body tr[data-call-id="${CSS.escape(cfg.calls.ringing)}"] td[data-status="in-progress"]`).waitFor(WAIT);
  assert.match(await status.textContent(), /in-progress/);
  assert.equal(await page.evaluate(() => window.stillTheSamePage), true, 'the page reloaded');
  check('a status change arrives without a reload');

  const failing = page.locator(`#health li[data-provider="${CSS.escape(cfg.providers.failing)}"]`);
  await page.locator(`#health li[data-provider="${CSS.escape(cfg.providers.failing)}"][data-health="failing"]`).waitFor(WAIT);
  const told = await failing.textContent();
  assert.match(told, /Failing/);
  assert.match(told, /UPSTREAM_[A-Z_]+/);
  for (const ok of await page.locator('#health li[data-health="ok"]').all()) assert.match(await ok.textContent(), /OK/);
  check('a failing provider is shown as failing, in words, with its error code');

  // The endpoint answers every delivery: once the changes above went out, it shows a success.
  const hook = page.locator(`#webhooks li[data-webhook="${CSS.escape(cfg.webhook)}"][data-health="ok"]`);
  await page.locator('#webhooks-panel').waitFor(WAIT);
  await page.waitForFunction((name) => {
    const li = document.querySelector(`#webhooks li[data-webhook="${name}"]`);
    return li && !li.textContent.includes('last delivered never');
  }, cfg.webhook, WAIT);
  assert.match(await hook.textContent(), /OK.*pending · last delivered/);
  check('the webhooks panel shows the endpoint and its last delivery');
  const full = page.locator(`#capacity li[data-provider="${CSS.escape(cfg.capacity.full)}"][data-capacity="full"]`);
  await full.waitFor(WAIT);
  assert.match(await full.textContent(), /Full/);
  const unlimited = page.locator(`#capacity li[data-provider="${CSS.escape(cfg.capacity.unlimited)}"][data-capacity="no-limit"]`);
  await unlimited.waitFor(WAIT);
  assert.match(await unlimited.textContent(), /no limit/);
  check('a provider at its limit shows as full, one without a limit shows its count');

  const counts = await page.locator('#per-provider li').allTextContents();
  assert.ok(counts.some((c) => c.startsWith(cfg.providers.failing)), `no count for ${cfg.providers.failing}: ${counts}`);
  const chart = page.locator('#chart-box svg path.line');
  await chart.waitFor(WAIT);
  assert.match(await page.locator('#chart-window').textContent(), /since you opened this page/i);
  check('counts per provider and the chart are drawn');

  // Sorting and filtering.
  const total = await page.locator('#calls-body tr').count();
  await page.click('th[data-key="to"] button');
  assert.equal(await page.getAttribute('th[data-key="to"]', 'aria-sort'), 'ascending');
  // Calls without the field come last, whichever way the column is sorted.
  const tos = await page.locator('#calls-body td[data-col="to"]').allTextContents();
  const known = tos.filter((t) => t !== '—');
  assert.deepEqual(tos, [...[...known].sort((a, b) => a.localeCompare(b, undefined, { numeric: true })), ...tos.filter((t) => t === '—')]);
  await page.click('th[data-key="to"] button');
  assert.equal(await page.getAttribute('th[data-key="to"]', 'aria-sort'), 'descending');
  assert.equal(await page.getAttribute('th[data-key="age"]', 'aria-sort'), 'none');
  await page.fill('#filter-text', cfg.calls.added);
  assert.equal(await page.locator('#calls-body tr').count(), 1);
  await page.fill('#filter-text', '');
  await page.selectOption('#filter-status', 'in-progress');
  const shown = await page.locator('#calls-body td[data-col="status"]').evaluateAll((cells) => cells.map((c) => c.dataset.status));
  assert.ok(shown.length > 0 && shown.length < total && shown.every((s) => s === 'in-progress'), String(shown));
  await page.selectOption('#filter-status', '');
  assert.equal(await page.locator('#calls-body tr').count(), total);
  check('the table sorts by a column (aria-sort) and filters by text and status');

  await page.click('th[data-key="age"] button');
  await page.mouse.move(1, 1);
  await page.screenshot({ path: cfg.screenshot });
  check(`screenshot saved to ${cfg.screenshot}`);

  // End call, by keyboard alone: the row's button, the dialog, its confirm button.
  const end = row(page, cfg.calls.added).locator('button.end');
  await end.focus();
  await page.keyboard.press('Enter');
  const dialog = page.locator('#confirm');
  await dialog.waitFor({ state: 'visible', ...WAIT });
  assert.match(await page.locator('#confirm-text').textContent(), new RegExp(cfg.calls.added));
  assert.equal(await page.evaluate(() => document.activeElement.value), 'cancel', 'the dialog opens on its safe choice');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden', ...WAIT });
  assert.equal(await row(page, cfg.calls.added).count(), 1, 'Escape ended the call');
  await end.focus();
  await page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'visible', ...WAIT });
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.value), 'end');
  await page.keyboard.press('Enter');
  await page.locator('#action.ok', { hasText: `Call ${cfg.calls.added} ended` }).waitFor(WAIT);
  await row(page, cfg.calls.added).waitFor({ state: 'detached', ...WAIT });
  check('End call asks first, ends the call upstream, says so, and the row goes away');

  // An upstream that refuses: the outcome says why, with callmux's code, and the row stays.
  await row(page, cfg.calls.refused).locator('button.end').click();
  await dialog.waitFor({ state: 'visible', ...WAIT });
  await page.click('#confirm button[value="end"]');
  const refused = page.locator('#action.failing', { hasText: `Could not end call ${cfg.calls.refused}` });
  await refused.waitFor(WAIT);
  const why = await refused.textContent();
  assert.match(why, /\([A-Z][A-Z_]+\)\.$/);
  assert.equal(await row(page, cfg.calls.refused).count(), 1);
  check(`an End call the upstream refuses shows its message and code, and the call stays: ${why}`);

  // A 400 that is not about the key (an id callmux will not pass on) keeps the user signed in.
  await row(page, cfg.calls.invalid).locator('button.end').click();
  await dialog.waitFor({ state: 'visible', ...WAIT });
  await page.click('#confirm button[value="end"]');
  await page.locator('#action.failing', { hasText: 'INVALID_CALL_ID' }).waitFor(WAIT);
  assert.equal(await page.locator('#board').isVisible(), true, 'a 400 INVALID_CALL_ID signed the user out');
  assert.equal(await page.locator('#sign-in-form').isHidden(), true);
  assert.notEqual((await exposure(page)).session, null, 'a 400 INVALID_CALL_ID forgot the key');
  check('an End call refused with INVALID_CALL_ID (400) says so and keeps the user signed in');

  const asks = await page.evaluate(() => window.streamAsks.length);
  const rows = await page.locator('#calls-body tr').count();
  await step('restart-server');
  await page.waitForFunction(
    (n) => window.streamAsks.length > n && document.getElementById('connection').dataset.live === 'yes',
    asks, WAIT);
  const resumed = await page.evaluate(() => window.streamAsks.at(-1));
  assert.match(resumed['last-event-id'] || '', /\S/, 'a reconnect without Last-Event-ID');
  assert.equal(await page.locator('#calls-body tr').count(), rows);
  check('when callmux ends the stream, the page reconnects by itself, sending Last-Event-ID');

  noKeyExposed(await exposure(page), cfg.key);
  check('no key in the address, a cookie or localStorage');

  await page.click('#sign-out');
  await page.locator('#sign-in-form').waitFor(WAIT);
  assert.equal((await exposure(page)).session, null);
  check('signing out forgets the key');
  await desk.close();

  // ------------------------------------------------------------- a phone, signing in by link
  const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  watch(small, problems);
  const link = `${cfg.base}/#org=${encodeURIComponent(cfg.org)}&key=${encodeURIComponent(cfg.key)}`;
  await small.goto(link);
  await small.locator('#connection[data-live="yes"]').waitFor(WAIT);
  await row(small, cfg.calls.ringing).waitFor(WAIT);
  const seen = await exposure(small);
  noKeyExposed(seen, cfg.key);
  assert.equal(seen.href, `${cfg.base}/`);
  assert.equal(JSON.parse(seen.session).org, cfg.org);
  check('a #org=&key= link signs in at once and leaves no fragment behind');

  const width = await small.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `the page is ${width} px wide on a 375 px phone`);
  await row(small, cfg.calls.ringing).locator('button.end').waitFor({ state: 'visible', ...WAIT });
  check('at phone width nothing scrolls sideways and End call is at hand');

  await small.reload();
  await small.locator('#connection[data-live="yes"]').waitFor(WAIT);
  check('a reload of the tab stays signed in (sessionStorage)');
  await phone.close();

  // ------------------------------------------------------------- a read-only key
  const wall = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  await wall.addInitScript(addProbes, SCOPES);
  const tv = await wall.newPage();
  watch(tv, problems);
  await tv.goto(`${cfg.base}/#org=${encodeURIComponent(cfg.org)}&key=${encodeURIComponent(cfg.readonly)}`);
  await tv.locator('#connection[data-live="yes"]').waitFor(WAIT);
  await row(tv, cfg.calls.ringing).waitFor(WAIT);
  await tv.locator('#probe-read').waitFor({ state: 'visible', ...WAIT });
  for (const scope of ['end', 'stop_all', 'place']) {
    await tv.locator(`#probe-${scope}`).waitFor({ state: 'hidden', ...WAIT });
  }
  assert.equal(await tv.locator('button.end').count(), 0, 'a read-only key is offered End call');
  assert.ok(await tv.locator('#calls-body tr').count() > 0);
  await wall.close();
  check('a read-only key sees the calls, no End call, and nothing marked end, stop_all or place');

  // ------------------------------------------------------------- a single-use sign-in link
  const minted = await fetch(`${cfg.base}/me/link`, {
    method: 'POST', headers: { authorization: cfg.key, 'x-bland-org-id': cfg.org },
  });
  assert.equal(minted.status, 201);
  const { link: tokenLink, token } = await minted.json();
  assert.ok(!tokenLink.includes(cfg.key), 'the link carries the key');
  const linked = await browser.newContext({ viewport: { width: 1024, height: 700 } });
  const tab = await linked.newPage();
  watch(tab, problems);
  await tab.goto(`${cfg.base}${tokenLink}`);
  await tab.locator('#connection[data-live="yes"]').waitFor(WAIT);
  const after = await exposure(tab);
  noKeyExposed(after, cfg.key);
  assert.ok(!after.href.includes(token), `the token is in the address: ${after.href}`);
  assert.equal(JSON.parse(after.session).org, cfg.org);
  await linked.close();
  const again = await browser.newContext();
  const second = await again.newPage();
  await second.goto(`${cfg.base}${tokenLink}`);
  const spent = second.locator('#sign-in-error');
  await spent.waitFor({ state: 'visible', ...WAIT });
  assert.match(await spent.textContent(), /Sign-in link refused: .*used already.* \(AUTH_FAILURE\)/);
  assert.equal((await exposure(second)).session, null);
  await again.close();
  check('a single-use #token= link signs in once, leaving neither key nor token in the address; used again it is refused');

  assert.deepEqual(problems, [], 'the page logged errors');
  check('no script errors and no Content-Security-Policy violations');
} finally {
  await browser.close();
}
console.log('passed');
process.exit(0);
