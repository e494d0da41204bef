// The dashboard's place-a-call form in Debian's headless Chromium, against callmux serving the
// shipped providers.toml (the `demo` org and its `demo` route), driven by tests/it/dashboard.rs:
//
//   node tests/browser/place.mjs '<json>'
//
// {base, org, key, readOnlyKey, chromium, screenshot, failover: {base, org, key, refusing,
// taking}}. It exits 0, printing `passed` last, only when every
// check passed.

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
const WAIT = { timeout: 20000 };

function check(name) {
  console.log(`ok ${name}`);
}

const row = (page, id) => page.locator(`#calls-body tr[data-call-id="${id.replace(/["\\]/g, '\\$&')}"]`);
const link = (key) => `${cfg.base}/#org=${encodeURIComponent(cfg.org)}&key=${encodeURIComponent(key)}`;

// Console errors and CSP violations fail the run; a refused request's own log line does not.
function watch(page, problems) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
  });
}

async function place(page, to, variables) {
  await page.fill('#place-to', to);
  await page.fill('#place-variables', variables);
  await page.click('#place-submit');
}

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
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  // Records each placement the page sends, headers and body, to see its Idempotency-Key.
  await context.addInitScript(() => {
    const real = window.fetch;
    window.placements = [];
    window.fetch = (url, init) => {
      if (String(url) === '/calls') window.placements.push({ headers: { ...init.headers }, body: init.body });
      return real(url, init);
    };
  });
  const page = await context.newPage();
  watch(page, problems);
  await page.goto(link(cfg.key));
  await page.locator('#connection[data-live="yes"]').waitFor(WAIT);
  const form = page.locator('#place-form');
  await form.waitFor({ state: 'visible', ...WAIT });
  assert.equal(await form.getAttribute('data-scope'), 'place');
  assert.deepEqual(await page.locator('#place-route option').evaluateAll((o) => o.map((x) => x.value)), ['demo']);
  assert.equal(await page.inputValue('#place-route'), 'demo');
  check('a key with `place` sees the form, its route select holding the org\'s routes from GET /me');

  const before = await page.locator('#calls-body tr').count();
  await place(page, '+14155550123', 'name=Ada\n\ncompany = Analytical Engines');
  const placed = page.locator('#place-outcome[data-outcome="placed"]');
  await placed.waitFor(WAIT);
  const id = await placed.getAttribute('data-call-id');
  assert.ok(id, 'the outcome names no call id');
  assert.equal(await placed.getAttribute('data-provider'), 'demo-agents');
  const summary = await page.locator('#place-summary').textContent();
  assert.ok(summary.includes(id) && summary.includes('demo-agents'), summary);
  assert.equal(await page.locator('#place-attempts li').count(), 0);
  const sent = await page.evaluate(() => window.placements);
  assert.equal(sent.length, 1);
  assert.deepEqual(JSON.parse(sent[0].body),
    { to: '+14155550123', route: 'demo', variables: { name: 'Ada', company: 'Analytical Engines' } });
  assert.match(sent[0].headers['idempotency-key'], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(sent[0].headers.authorization, cfg.key);
  check(`placing on the demo route shows call ${id} on demo-agents, no attempts before it`);

  await row(page, id).waitFor(WAIT);
  assert.equal(await row(page, id).locator('td[data-col="provider"]').textContent(), 'demo-agents');
  assert.equal(await row(page, id).locator('td[data-col="to"]').textContent(), '+14155550123');
  assert.equal(await page.locator('#calls-body tr').count(), before + 1);
  check('the placed call appears in the list from the stream');

  await place(page, '+1 415 555', '');
  const refused = page.locator('#place-outcome[data-outcome="refused"][data-code="INVALID_BODY"]');
  await refused.waitFor(WAIT);
  const why = await page.locator('#place-summary').textContent();
  assert.match(why, /`to`/);
  assert.match(why, /E\.164/);
  assert.match(why, /\(INVALID_BODY\)/);
  assert.equal(await page.locator('#calls-body tr').count(), before + 1);
  check(`a bad number is refused naming the field: ${why}`);

  await page.fill('#place-to', '+14155550124');
  await page.fill('#place-variables', 'no equals sign here');
  const asked = (await page.evaluate(() => window.placements)).length;
  await page.click('#place-submit');
  await page.locator('#place-outcome[data-outcome="unsent"]').waitFor(WAIT);
  assert.match(await page.locator('#place-summary').textContent(), /line 1: write name=value/);
  assert.equal((await page.evaluate(() => window.placements)).length, asked, 'a malformed variable was sent');
  check('a variables line without `=` is pointed out and nothing is sent');

  // The answer to a placement that reached callmux is lost on the way back: the retry sends
  // the same Idempotency-Key, gets the first answer again, and no second call is placed.
  await page.route((url) => url.pathname === '/calls', async (route) => {
    await route.fetch();
    await route.abort('connectionreset');
  }, { times: 1 });
  await place(page, '+14155550124', '');
  await page.locator('#place-outcome[data-outcome="unknown"]').waitFor(WAIT);
  await page.click('#place-submit');
  const again = page.locator('#place-outcome[data-outcome="placed"]');
  await again.waitFor(WAIT);
  const retried = await again.getAttribute('data-call-id');
  assert.match(await page.locator('#place-summary').textContent(), /answered before: callmux sent that answer again/);
  const keys = (await page.evaluate(() => window.placements)).slice(-2).map((p) => p.headers['idempotency-key']);
  assert.equal(keys[0], keys[1], 'the retry went with another Idempotency-Key');
  await row(page, retried).waitFor(WAIT);
  const to = await page.locator('#calls-body td[data-col="to"]').allTextContents();
  assert.equal(to.filter((t) => t === '+14155550124').length, 1, `placed twice: ${to}`);
  check('a retry after a lost answer sends the same Idempotency-Key and places the call once');

  await place(page, '+14155550124', '');
  await page.waitForFunction((first) => {
    const box = document.getElementById('place-outcome');
    return box.dataset.outcome === 'placed' && box.dataset.callId !== first;
  }, retried, WAIT);
  const last = (await page.evaluate(() => window.placements)).at(-1).headers['idempotency-key'];
  assert.notEqual(last, keys[0]);
  await row(page, await page.locator('#place-outcome').getAttribute('data-call-id')).waitFor(WAIT);
  check('a new submission after a placed call goes with a fresh Idempotency-Key');
  await page.mouse.move(1, 1);
  await page.screenshot({ path: cfg.screenshot, fullPage: true });
  check(`screenshot saved to ${cfg.screenshot}`);
  await context.close();

  // Failover, on another callmux: the default route's only target refuses (429), so the
  // refusal shows the attempt; the other route goes on to its second target, and the call is
  // placed there with the refusal listed before it.
  const f = cfg.failover;
  const over = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const fpage = await over.newPage();
  watch(fpage, problems);
  await fpage.goto(`${f.base}/#org=${encodeURIComponent(f.org)}&key=${encodeURIComponent(f.key)}`);
  await fpage.locator('#place-form').waitFor({ state: 'visible', ...WAIT });
  assert.deepEqual(await fpage.locator('#place-route option').evaluateAll((o) => o.map((x) => x.value)), ['busy', 'failover']);
  await place(fpage, '+14155550125', '');
  const full = fpage.locator('#place-outcome[data-outcome="refused"][data-code="AT_CAPACITY"]');
  await full.waitFor(WAIT);
  assert.match(await fpage.locator('#place-summary').textContent(), /Not placed: .+ \(AT_CAPACITY\)\. Try again in \d+ s\./);
  const tried = fpage.locator(`#place-attempts li[data-provider="${f.refusing}"]`);
  assert.equal(await fpage.locator('#place-attempts li').count(), 1);
  assert.match(await tried.textContent(), new RegExp(`^${f.refusing}: [A-Z_]+ .*429`));
  check(`a route whose every target refuses shows the refusal and the attempt: ${await tried.textContent()}`);

  await fpage.selectOption('#place-route', 'failover');
  await fpage.click('#place-submit');
  const took = fpage.locator(`#place-outcome[data-outcome="placed"][data-provider="${f.taking}"]`);
  await took.waitFor(WAIT);
  assert.match(await fpage.locator('#place-summary').textContent(), /after 1 other target refused/);
  assert.equal(await fpage.locator('#place-attempts li').count(), 1);
  assert.match(await tried.textContent(), /429/);
  await row(fpage, await took.getAttribute('data-call-id')).waitFor(WAIT);
  check(`failing over shows where the call went and the target tried before: ${await tried.textContent()}`);
  await over.close();

  // At phone width the form fits: nothing scrolls sideways.
  const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  watch(small, problems);
  await small.goto(link(cfg.key));
  await small.locator('#place-form').waitFor({ state: 'visible', ...WAIT });
  await place(small, '+1', 'name=Ada');
  await small.locator('#place-outcome[data-code="INVALID_BODY"]').waitFor(WAIT);
  const width = await small.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `the page is ${width} px wide on a 375 px phone`);
  await small.locator('#place-form').screenshot({ path: cfg.screenshot.replace(/\.png$/, '-phone.png') });
  check('at phone width the form and its outcome fit without scrolling sideways');
  await phone.close();

  // A key without `place` never sees the form.
  const reader = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const other = await reader.newPage();
  watch(other, problems);
  await other.goto(link(cfg.readOnlyKey));
  await other.locator('#connection[data-live="yes"]').waitFor(WAIT);
  await row(other, id).waitFor(WAIT);
  // The route select is filled once GET /me has answered: the scopes are applied by then.
  await other.locator('#place-form[data-routes="some"]').waitFor({ state: 'attached', ...WAIT });
  assert.equal(await other.locator('#place-form').isHidden(), true, 'a read-only key sees the form');
  check('a read-only key does not see the form');
  await reader.close();

  assert.deepEqual(problems, [], 'the page logged errors');
  check('no script errors and no Content-Security-Policy violations');
} finally {
  await browser.close();
}
console.log('passed');
process.exit(0);
