// callmux dashboard: signs in with an org id and key kept in this tab's sessionStorage, reads
// GET /calls/stream with fetch() (EventSource cannot send headers), and draws counts, a chart,
// provider health and the calls table from it; places calls with POST /calls when the key may
// (GET /me), and offers only what the key may do. Everything an upstream sent is set as text
// (textContent), never as markup.
'use strict';

const STORE = 'callmux.session';
const WINDOW_MS = 15 * 60 * 1000;
const SAMPLE_EVERY_MS = 5000;
// How often the webhooks panel asks GET /webhooks.
const WEBHOOKS_EVERY_MS = 5000;
// Keep-alive comments come every 15 s: silence much longer means the connection is gone.
const SILENCE_MS = 45000;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
// Codes that say the credentials themselves are wrong; any other refusal (a 400
// INVALID_CALL_ID, say) is about the request, and the user stays signed in.
const SIGN_OUT_CODES = ['AUTH_FAILURE', 'MISSING_ORG_ID'];
const refusesKey = (code) => SIGN_OUT_CODES.includes(code);
// What a header value may hold; anything else fetch() refuses to send.
const HEADER_SAFE = /^[\x20-\x7e]+$/;

const $ = (id) => document.getElementById(id);
let fragmentProblem = '';
// A sign-in link's single-use token (`#token=...`), exchanged once the page is set up.
let linkToken = '';

const state = {
  session: null,
  calls: new Map(),
  errors: [],
  providers: new Set(),
  failingSince: new Map(),
  samples: [],
  openedAt: Date.now(),
  sort: { key: 'age', dir: 'ascending' },
  lastEventId: null,
  controller: null,
  backoff: BACKOFF_MIN_MS,
  retryTimer: null,
  confirming: null,
  // What the signed-in key may do, from GET /me; null until it has answered, and meanwhile
  // nothing that needs a scope is shown.
  scopes: null,
  // The place-a-call form's submission: its body and the Idempotency-Key it is sent with.
  submission: null,
  placing: false,
};

// ---------------------------------------------------------------- the session

function readSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(STORE) || 'null');
    return s && typeof s.org === 'string' && typeof s.key === 'string' ? s : null;
  } catch {
    return null;
  }
}

function saveSession(org, key) {
  state.session = { org, key };
  sessionStorage.setItem(STORE, JSON.stringify(state.session));
}

function clearSession() {
  state.session = null;
  sessionStorage.removeItem(STORE);
}

// `#token=...` (a single-use sign-in link) or `#org=...&key=...` signs in at once; the
// fragment leaves the address bar before anything else.
function takeFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has('org') && !params.has('key') && !params.has('token')) return;
  history.replaceState(null, '', location.pathname + location.search);
  if (params.has('token')) {
    linkToken = (params.get('token') || '').trim();
    if (!HEADER_SAFE.test(linkToken)) {
      linkToken = '';
      fragmentProblem = 'The sign-in link is damaged: ask for a new one.';
    }
    return;
  }
  const org = (params.get('org') || '').trim();
  const key = params.get('key') || '';
  if (org && key && HEADER_SAFE.test(org) && HEADER_SAFE.test(key)) saveSession(org, key);
  else fragmentProblem = 'The link must carry both #org=... and key=..., in plain ASCII.';
}

// Exchanges a sign-in link's token, once, for the org and key it stands for.
async function useLink(token) {
  let response;
  try {
    response = await fetch('/sign-in', { method: 'POST', headers: { 'x-callmux-sign-in': token }, cache: 'no-store' });
  } catch (e) {
    return showSignIn(`The sign-in link could not be used: callmux is unreachable (${e.message}).`);
  }
  if (!response.ok) {
    const { code, message } = await errorOf(response);
    return showSignIn(`Sign-in link refused: ${message} (${code}).`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: refused below
  }
  if (!body || typeof body.org !== 'string' || typeof body.authorization !== 'string'
      || !HEADER_SAFE.test(body.org) || !HEADER_SAFE.test(body.authorization)) {
    return showSignIn('The sign-in link was answered with something that is not a session.');
  }
  signIn(body.org, body.authorization);
}

function headers() {
  return { authorization: state.session.key, 'x-bland-org-id': state.session.org };
}

function showSignIn(message) {
  stopStream();
  $('board').hidden = true;
  $('session').hidden = true;
  $('sign-in').hidden = false;
  const error = $('sign-in-error');
  error.hidden = !message;
  error.textContent = message || '';
  $('key').value = '';
  ($('org').value ? $('key') : $('org')).focus();
}

function showBoard() {
  $('sign-in').hidden = true;
  $('board').hidden = false;
  $('session').hidden = false;
  $('org-name').textContent = state.session.org;
}

function signIn(org, key) {
  saveSession(org, key);
  resetData();
  showBoard();
  connect();
  refreshWebhooks();
}

function signOut() {
  clearSession();
  resetData();
  showSignIn('');
}

function resetData() {
  state.calls.clear();
  state.errors = [];
  state.providers.clear();
  state.capacity = null;
  state.failingSince.clear();
  state.samples = [];
  state.openedAt = Date.now();
  state.lastEventId = null;
  state.backoff = BACKOFF_MIN_MS;
  $('updated').textContent = '';
  $('action').hidden = true;
  // What the form offers waits for the next GET /me, so a key without `place` never sees it.
  applyScopes([]);
  $('place-form').reset();
  $('place-outcome').hidden = true;
  state.submission = null;
  streamError('');
  render();
}

// ---------------------------------------------------------------- the stream

function stopStream() {
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  if (state.controller) state.controller.abort();
  state.controller = null;
}

function setConnection(text, live) {
  const c = $('connection');
  c.textContent = text;
  c.dataset.live = live ? 'yes' : 'no';
}

function streamError(message) {
  const e = $('stream-error');
  e.hidden = !message;
  e.textContent = message || '';
}

async function connect() {
  stopStream();
  // Asked again at each (re)connection: a reloaded config may have changed the key or routes.
  refreshMe();
  const controller = new AbortController();
  state.controller = controller;
  setConnection('◌ Connecting…', false);
  const h = headers();
  h.accept = 'text/event-stream';
  if (state.lastEventId) h['last-event-id'] = state.lastEventId;
  let response;
  try {
    response = await fetch('/calls/stream', { headers: h, signal: controller.signal, cache: 'no-store' });
  } catch (e) {
    if (controller.signal.aborted) return;
    return retry(`callmux is unreachable (${e.message}).`);
  }
  if (!response.ok) {
    const { code, message } = await errorOf(response);
    if (controller.signal.aborted) return;
    if (refusesKey(code)) {
      clearSession();
      resetData();
      return showSignIn(`Sign-in refused: ${message} (${code}). Check the org id and key.`);
    }
    return retry(`The stream was refused: ${message} (${code}, HTTP ${response.status}).`);
  }
  let reason = 'The stream closed.';
  try {
    await read(response, controller);
  } catch (e) {
    reason = controller.signal.aborted ? 'The stream went silent.' : `The stream broke (${e.message}).`;
  }
  // Signed out, or already reconnecting, meanwhile: nothing more to do here.
  if (state.controller === controller) retry(reason);
}

// The first error of an error body, whichever list shape it is in.
async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall through to the status text
  }
  const item = body && Array.isArray(body.errors) && body.errors[0];
  return {
    code: (item && item.error) || `HTTP_${response.status}`,
    message: (item && item.message) || response.statusText || 'no message',
  };
}

function retry(reason) {
  if (!state.session) return;
  state.controller = null;
  const wait = Math.round(state.backoff * (0.75 + Math.random() * 0.5));
  state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX_MS);
  streamError(`${reason} Reconnecting in ${Math.ceil(wait / 1000)} s; the figures below may be stale.`);
  setConnection('◌ Reconnecting…', false);
  state.retryTimer = setTimeout(connect, wait);
}

// Server-Sent Events, parsed as the HTML standard describes, from a fetch() body.
async function read(response, controller) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let silence = setTimeout(() => controller.abort(), SILENCE_MS);
  let buffer = '';
  let event = { type: '', data: [], id: null };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      clearTimeout(silence);
      silence = setTimeout(() => controller.abort(), SILENCE_MS);
      buffer += value;
      // A trailing \r may be the first half of \r\n: it waits for the next chunk.
      const held = buffer.endsWith('\r') ? '\r' : '';
      const lines = (held ? buffer.slice(0, -1) : buffer).split(/\r\n|\r|\n/);
      buffer = lines.pop() + held;
      for (const line of lines) {
        if (line === '') {
          if (event.id !== null) state.lastEventId = event.id;
          if (event.data.length) dispatch(event.type || 'message', event.data.join('\n'));
          event = { type: '', data: [], id: null };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? '' : line.slice(colon + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (field === 'event') event.type = v;
        else if (field === 'data') event.data.push(v);
        else if (field === 'id' && !v.includes('\0')) event.id = v;
      }
    }
  } finally {
    clearTimeout(silence);
    reader.cancel().catch(() => {});
  }
}

function dispatch(type, data) {
  let body;
  try {
    body = JSON.parse(data);
  } catch {
    return;
  }
  if (type === 'snapshot') {
    state.calls.clear();
    for (const call of body.calls || []) keep(call);
    setErrors(body.errors);
    live();
  } else if (type === 'change') {
    for (const call of body.added || []) keep(call);
    for (const call of body.updated || []) keep(call);
    for (const id of body.ended || []) state.calls.delete(id);
    if ('errors' in body) setErrors(body.errors);
    live();
  } else if (type === 'capacity') {
    state.capacity = body;
  } else if (type === 'end') {
    streamError('');
    stopStream();
    retry(`callmux ended the stream: ${body.reason || 'no reason given'}.`);
    return;
  }
  sample();
  render();
}

function live() {
  state.backoff = BACKOFF_MIN_MS;
  streamError('');
  setConnection('● Live', true);
  $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function keep(call) {
  if (!call || typeof call.call_id !== 'string') return;
  state.calls.set(call.call_id, call);
  if (call.provider) state.providers.add(String(call.provider));
}

function setErrors(errors) {
  state.errors = Array.isArray(errors) ? errors : [];
  const failing = new Set();
  for (const e of state.errors) {
    if (!e || !e.provider) continue;
    failing.add(e.provider);
    state.providers.add(e.provider);
    if (!state.failingSince.has(e.provider)) state.failingSince.set(e.provider, Date.now());
  }
  for (const p of [...state.failingSince.keys()]) if (!failing.has(p)) state.failingSince.delete(p);
}

// ---------------------------------------------------------------- the chart's samples

function sample() {
  const now = Date.now();
  state.samples.push({ t: now, n: state.calls.size });
  // Keep one sample older than the window: it is the line's value at the window's left edge.
  while (state.samples.length > 2 && state.samples[1].t < now - WINDOW_MS) state.samples.shift();
}

// ---------------------------------------------------------------- drawing

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

const STATUS_ICON = { 'in-progress': '●', ringing: '◔', queued: '◌' };

function statusText(status) {
  const s = String(status ?? 'unknown');
  return `${STATUS_ICON[s] || '◇'} ${s}`;
}

function startOf(call) {
  const t = Date.parse(call.started_at || call.created_at || '');
  return Number.isNaN(t) ? null : t;
}

function ageText(start, now) {
  if (start === null) return '—';
  let s = Math.max(0, Math.floor((now - start) / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  s %= 60;
  const two = (n) => String(n).padStart(2, '0');
  if (d) return `${d}d ${two(h)}h`;
  return h ? `${h}h ${two(m)}m` : m ? `${m}m ${two(s)}s` : `${s}s`;
}

function text(v) {
  return v === null || v === undefined || v === '' ? '—' : String(v);
}

function render() {
  renderCounts();
  renderChart();
  renderHealth();
  renderCapacity();
  renderFilters();
  renderTable();
}

function byProvider() {
  const counts = new Map([...state.providers].sort().map((p) => [p, 0]));
  for (const c of state.calls.values()) counts.set(c.provider, (counts.get(c.provider) || 0) + 1);
  return counts;
}

function renderCounts() {
  const n = state.calls.size;
  document.title = state.session ? `(${n}) callmux — live calls` : 'callmux — live calls';
  $('total').textContent = String(n);
  $('total-label').textContent = n === 1 ? 'call' : 'calls';
  const list = $('per-provider');
  list.replaceChildren(
    ...[...byProvider()].map(([p, k]) =>
      el('li', { 'data-provider': p }, el('span', { class: 'provider' }, p), ' ', el('strong', {}, String(k)))),
  );
}

function renderChart() {
  const now = Date.now();
  const since = Math.max(state.openedAt, now - WINDOW_MS);
  const minutes = Math.floor((now - state.openedAt) / 60000);
  $('chart-window').textContent = now - state.openedAt < WINDOW_MS
    ? `Since you opened this page (${minutes < 1 ? 'under a minute' : `${minutes} min`} ago); the chart fills to 15 minutes.`
    : 'The last 15 minutes, as this page saw them.';
  // Drawn at the box's own width, so text and lines are never stretched.
  const W = Math.max(240, Math.round($('chart-box').clientWidth) || 600);
  const H = 160;
  const pad = { l: 34, r: 8, t: 10, b: 22 };
  const points = state.samples.filter((s, i, a) => s.t >= since || (a[i + 1] && a[i + 1].t >= since));
  const peak = Math.max(1, ...points.map((s) => s.n));
  const x = (t) => pad.l + ((Math.max(t, since) - since) / Math.max(1, now - since)) * (W - pad.l - pad.r);
  const y = (n) => pad.t + (1 - n / peak) * (H - pad.t - pad.b);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'chart-svg' });
  const current = state.calls.size;
  const label = svg('title');
  label.textContent = `Active calls over time: ${current} now, at most ${Math.max(0, ...points.map((s) => s.n))} in this window.`;
  root.append(label);
  for (const n of new Set([0, Math.ceil(peak / 2), peak])) {
    root.append(svg('line', { x1: pad.l, x2: W - pad.r, y1: y(n), y2: y(n), class: 'grid' }));
    const t = svg('text', { x: pad.l - 6, y: y(n) + 4, 'text-anchor': 'end', class: 'axis' });
    t.textContent = String(n);
    root.append(t);
  }
  const left = svg('text', { x: pad.l, y: H - 6, class: 'axis' });
  left.textContent = new Date(since).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const right = svg('text', { x: W - pad.r, y: H - 6, 'text-anchor': 'end', class: 'axis' });
  right.textContent = 'now';
  root.append(left, right);
  if (points.length) {
    // A step line: the count holds until the next sample, and up to now.
    let d = `M${x(points[0].t)},${y(points[0].n)}`;
    for (let i = 1; i < points.length; i++) d += ` H${x(points[i].t)} V${y(points[i].n)}`;
    d += ` H${x(now)}`;
    root.append(svg('path', { d, class: 'line' }));
  }
  $('chart-box').replaceChildren(root);
  root.setAttribute('aria-label', label.textContent);
}

function renderHealth() {
  const failing = new Map();
  for (const e of state.errors) if (e && e.provider) failing.set(e.provider, e);
  const unattributed = state.errors.filter((e) => e && !e.provider);
  const items = [...state.providers].sort().map((p) => {
    const e = failing.get(p);
    if (!e) {
      return el('li', { class: 'ok', 'data-provider': p, 'data-health': 'ok' },
        el('span', { class: 'badge' }, '✓ OK'), ' ', el('span', { class: 'provider' }, p));
    }
    const since = state.failingSince.get(p);
    const details = [el('code', {}, text(e.error)), ' ', text(e.message)];
    for (const [k, v] of Object.entries(e)) {
      if (['provider', 'error', 'message'].includes(k) || v === null || typeof v === 'object') continue;
      details.push(el('span', { class: 'extra' }, ` · ${k.replace(/_/g, ' ')}: ${v}`));
    }
    return el('li', { class: 'failing', 'data-provider': p, 'data-health': 'failing' },
      el('span', { class: 'badge' }, '✕ Failing'), ' ', el('span', { class: 'provider' }, p),
      el('div', { class: 'detail' }, ...details),
      since ? el('div', { class: 'hint' }, `failing since ${new Date(since).toLocaleTimeString()}`) : '');
  });
  for (const e of unattributed) {
    items.push(el('li', { class: 'failing', 'data-health': 'failing' },
      el('span', { class: 'badge' }, '✕ Error'), ' ', el('code', {}, text(e.error)), ' ', text(e.message)));
  }
  if (!items.length) items.push(el('li', { class: 'hint' }, 'No provider has reported yet.'));
  $('health').replaceChildren(...items);
}

// The webhooks panel: each endpoint's pending count and last outcome; hidden for an org
// without webhooks, and left as it was when the route cannot be read.
async function refreshWebhooks() {
  if (!state.session) return;
  let body;
  try {
    const response = await fetch('/webhooks', { headers: headers(), cache: 'no-store' });
    if (!response.ok) return;
    body = await response.json();
  } catch {
    return;
  }
  const hooks = Array.isArray(body.webhooks) ? body.webhooks : [];
  $('webhooks-panel').hidden = hooks.length === 0;
  const when = (iso) => (iso ? new Date(iso).toLocaleTimeString() : 'never');
  $('webhooks').replaceChildren(...hooks.map((w) => {
    const failing = w.last_failure && (!w.last_success || w.last_failure.at > w.last_success);
    return el('li', { class: failing ? 'failing' : 'ok', 'data-webhook': w.name, 'data-health': failing ? 'failing' : 'ok' },
      el('span', { class: 'badge' }, failing ? '✕ Failing' : '✓ OK'), ' ', el('span', { class: 'provider' }, w.name),
      el('div', { class: 'detail' }, `${w.pending} pending · last delivered ${when(w.last_success)}`),
      w.last_failure ? el('div', { class: 'hint' }, `last failure ${when(w.last_failure.at)}: ${text(w.last_failure.reason)}`) : '');
  }));
}

// Each provider's active calls against its limit, from the stream's `capacity` events.
function renderCapacity() {
  const providers = (state.capacity && state.capacity.providers) || [];
  const items = providers.map((p) => {
    const active = Number(p.active) || 0;
    const name = el('span', { class: 'provider' }, text(p.provider));
    if (p.limit === null || p.limit === undefined) {
      return el('li', { 'data-provider': p.provider, 'data-capacity': 'no-limit' },
        name, ' ', el('span', { class: 'figures' }, `${active} active · no limit`));
    }
    const limit = Number(p.limit) || 0;
    const full = active >= limit;
    const bar = el('progress', { max: String(limit), value: String(Math.min(active, limit)) });
    bar.setAttribute('aria-label', `${p.provider}: ${active} of ${limit}`);
    return el('li', { class: full ? 'full' : 'room', 'data-provider': p.provider, 'data-capacity': full ? 'full' : 'room' },
      name, ' ', el('span', { class: 'figures' }, `${active} / ${limit}`), ' ',
      full ? el('span', { class: 'badge' }, 'Full') : '', bar);
  });
  if (!items.length) items.push(el('li', { class: 'hint' }, 'No capacity figures yet.'));
  $('capacity').replaceChildren(...items);
}

function setOptions(select, values, all) {
  const chosen = select.value;
  const known = JSON.stringify([...values].sort());
  // Replaced only when the choices change, so an open list is not closed under the user.
  if (select.dataset.known === known) return;
  select.dataset.known = known;
  const options = [el('option', { value: '' }, all)];
  for (const v of [...values].sort()) options.push(el('option', { value: v }, v));
  if (chosen && !values.has(chosen)) options.push(el('option', { value: chosen }, chosen));
  select.replaceChildren(...options);
  select.value = chosen;
}

function renderFilters() {
  setOptions($('filter-provider'), state.providers, 'All providers');
  const statuses = new Set([...state.calls.values()].map((c) => String(c.status ?? 'unknown')));
  setOptions($('filter-status'), statuses, 'All statuses');
}

function visibleCalls(now) {
  const needle = $('filter-text').value.trim().toLowerCase();
  const provider = $('filter-provider').value;
  const status = $('filter-status').value;
  const rows = [...state.calls.values()].filter((c) => {
    if (provider && c.provider !== provider) return false;
    if (status && String(c.status ?? 'unknown') !== status) return false;
    if (!needle) return true;
    return [c.call_id, c.provider, c.from, c.to, c.direction, c.status, c.telephony_id]
      .some((v) => v !== null && v !== undefined && String(v).toLowerCase().includes(needle));
  });
  const { key, dir } = state.sort;
  const sign = dir === 'ascending' ? 1 : -1;
  const value = (c) => (key === 'age' ? (startOf(c) === null ? null : now - startOf(c)) : c[key]);
  rows.sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    const empty = (v) => v === null || v === undefined || v === '';
    // Unknown values go last whichever way the column is sorted.
    if (empty(va) || empty(vb)) return empty(va) - empty(vb) || a.call_id.localeCompare(b.call_id);
    const cmp = typeof va === 'number' ? va - vb : String(va).localeCompare(String(vb), undefined, { numeric: true });
    return sign * cmp || a.call_id.localeCompare(b.call_id);
  });
  return rows;
}

const COLUMNS = [
  ['call_id', 'Call id'], ['provider', 'Provider'], ['from', 'From'], ['to', 'To'],
  ['direction', 'Direction'], ['status', 'Status'], ['age', 'Age'],
];

function renderTable() {
  const now = Date.now();
  const rows = visibleCalls(now);
  const body = $('calls-body');
  // Keep the focused row's button: a redraw must not throw keyboard focus away.
  const focused = document.activeElement && document.activeElement.dataset.callId;
  body.replaceChildren(...rows.map((c) => {
    const cells = COLUMNS.map(([k, label]) => {
      let v;
      if (k === 'age') v = ageText(startOf(c), now);
      else if (k === 'status') v = statusText(c.status);
      else v = text(c[k]);
      const td = el('td', { 'data-label': label, 'data-col': k }, v);
      if (k === 'status') td.dataset.status = String(c.status ?? 'unknown');
      return td;
    });
    if (may('end')) {
      const end = el('button', { type: 'button', class: 'end', 'data-call-id': c.call_id, 'data-scope': 'end' }, 'End call');
      end.setAttribute('aria-label', `End call ${c.call_id}`);
      end.addEventListener('click', () => confirmEnd(c.call_id));
      cells.push(el('td', { 'data-label': '' }, end));
    } else {
      cells.push(el('td', { 'data-label': '' }));
    }
    const tr = el('tr', { 'data-call-id': c.call_id }, ...cells);
    return tr;
  }));
  if (focused) {
    const again = [...body.querySelectorAll('button.end')].find((b) => b.dataset.callId === focused);
    (again || $('calls-heading')).focus();
  }
  $('empty').hidden = rows.length > 0;
  $('shown').textContent = `${rows.length} of ${state.calls.size} calls shown`;
  for (const th of document.querySelectorAll('#calls-table th[data-key]')) {
    th.setAttribute('aria-sort', th.dataset.key === state.sort.key ? state.sort.dir : 'none');
  }
}

// ---------------------------------------------------------------- ending a call

function confirmEnd(id) {
  const call = state.calls.get(id);
  if (!call) return;
  state.confirming = id;
  $('confirm-text').textContent =
    `Call ${id} on ${text(call.provider)}, from ${text(call.from)} to ${text(call.to)}, ${text(call.status)}. The caller is hung up on.`;
  $('confirm').returnValue = '';
  $('confirm').showModal();
}

function onConfirmClosed() {
  const id = state.confirming;
  state.confirming = null;
  if ($('confirm').returnValue === 'end' && id !== null) endCall(id);
  else if (id !== null) refocus(id);
}

function refocus(id) {
  const b = [...document.querySelectorAll('button.end')].find((x) => x.dataset.callId === id);
  (b || $('calls-heading')).focus();
}

function action(message, ok) {
  const a = $('action');
  a.hidden = false;
  a.textContent = message;
  a.className = `notice ${ok ? 'ok' : 'failing'}`;
}

async function endCall(id) {
  if (!state.session) return;
  action(`Ending call ${id}…`, true);
  let response;
  let body = null;
  try {
    response = await fetch(`/api/calls/${encodeURIComponent(id)}/end`, { method: 'POST', headers: headers(), cache: 'no-store' });
    body = await response.json().catch(() => null);
  } catch (e) {
    action(`✕ Could not end call ${id}: callmux is unreachable (${e.message}).`, false);
    refocus(id);
    return;
  }
  if (body && body.success === true) {
    action(`✓ Call ${id} ended${body.provider ? ` (provider ${body.provider})` : ''}. It leaves the list with the next update.`, true);
  } else {
    const message = (body && body.error) || response.statusText || 'no message';
    const code = (body && body.code) || `HTTP_${response.status}`;
    action(`✕ Could not end call ${id}: ${message} (${code}).`, false);
    if (refusesKey(code)) {
      clearSession();
      resetData();
      showSignIn(`Sign-in refused: ${message} (${code}). Check the org id and key.`);
      return;
    }
  }
  refocus(id);
}

// ---------------------------------------------------------------- what the key may do

function may(scope) {
  return Array.isArray(state.scopes) && state.scopes.includes(scope);
}

// Shows each element marked `data-scope` (the place-a-call form, a stop-all control) only to
// a key that holds that scope, and End call in each row only to a key with `end`.
function applyScopes(scopes) {
  state.scopes = scopes;
  for (const node of document.querySelectorAll('[data-scope]')) node.hidden = !may(node.dataset.scope);
  renderTable();
}

// GET /me: the key's scopes and the org's routes. A refusal is left to the stream, which signs
// out on a refused key; anything else leaves the page as it was.
async function refreshMe() {
  const session = state.session;
  if (!session) return;
  let body;
  try {
    const response = await fetch('/me', { headers: headers(), cache: 'no-store' });
    if (!response.ok) return;
    body = await response.json();
  } catch {
    return;
  }
  if (state.session !== session) return;
  const list = (v) => (Array.isArray(v) ? v.map(String) : []);
  applyScopes(list(body.scopes));
  setRoutes(list(body.routes));
}

// ---------------------------------------------------------------- placing a call

// The org's routes, its default first; the form is shown only to an org that has one.
function setRoutes(routes) {
  const select = $('place-route');
  const chosen = select.value;
  select.replaceChildren(...routes.map((r, i) => el('option', { value: r }, i === 0 ? `${r} (default)` : r)));
  if (routes.includes(chosen)) select.value = chosen;
  $('place-form').dataset.routes = routes.length ? 'some' : 'none';
}

// `name=value` a line, blank lines skipped; a line the user must fix is said before anything
// is sent. A Map, so that a name such as `__proto__` stays a plain name.
function parseVariables(textValue) {
  const variables = new Map();
  const lines = textValue.split(/\r\n|\r|\n/);
  for (const [i, line] of lines.entries()) {
    if (!line.trim()) continue;
    const eq = line.indexOf('=');
    const name = eq < 0 ? '' : line.slice(0, eq).trim();
    if (!name) throw new Error(`Variables, line ${i + 1}: write name=value, one a line (not "${line.trim()}").`);
    if (variables.has(name)) throw new Error(`Variables, line ${i + 1}: "${name}" is given twice; keep one.`);
    variables.set(name, line.slice(eq + 1).trim());
  }
  return variables;
}

// A version 4 UUID from getRandomValues, which (unlike randomUUID) works on plain http too.
function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function placeOutcome(outcome, summary, attempts, data) {
  const box = $('place-outcome');
  box.hidden = false;
  box.className = `notice ${outcome === 'placed' ? 'ok' : 'failing'}`;
  for (const k of ['callId', 'provider', 'code']) delete box.dataset[k];
  Object.assign(box.dataset, { outcome, ...data });
  $('place-summary').textContent = summary;
  $('place-attempts').replaceChildren(...(Array.isArray(attempts) ? attempts : []).map((a) =>
    el('li', { 'data-provider': text(a && a.provider) },
      el('span', { class: 'provider' }, text(a && a.provider)), ': ', el('code', {}, text(a && a.error)), ' ', text(a && a.message))));
}

function placeBusy(busy) {
  state.placing = busy;
  const button = $('place-submit');
  button.disabled = busy;
  button.setAttribute('aria-busy', String(busy));
  button.textContent = busy ? 'Placing…' : 'Place call';
}

async function placeCall(e) {
  e.preventDefault();
  if (!state.session || state.placing) return;
  let variables;
  try {
    variables = parseVariables($('place-variables').value);
  } catch (err) {
    placeOutcome('unsent', `✕ Not sent: ${err.message}`, [], {});
    $('place-variables').focus();
    return;
  }
  const request = { to: $('place-to').value.trim(), route: $('place-route').value };
  if (variables.size) request.variables = Object.fromEntries(variables);
  const body = JSON.stringify(request);
  // One Idempotency-Key per submission, sent again while the user retries the same request,
  // so a retry after a lost or unknown answer never places the call twice; a new one once the
  // details change or an answer settled the submission.
  if (!state.submission || state.submission.body !== body) state.submission = { body, key: newKey() };
  const submission = state.submission;
  placeBusy(true);
  let response;
  let answer = null;
  try {
    response = await fetch('/calls', {
      method: 'POST',
      headers: { ...headers(), 'content-type': 'application/json', 'idempotency-key': submission.key },
      body,
      cache: 'no-store',
    });
    answer = await response.json().catch(() => null);
  } catch (err) {
    placeOutcome('unknown', `? No answer from callmux (${err.message}): the call may or may not have been placed. `
      + 'Place call again to retry; the same request key goes with it, so it is never placed twice.', [], {});
    return;
  } finally {
    placeBusy(false);
  }
  if (state.submission !== submission) return;
  const replayed = response.headers.get('idempotent-replayed') === 'true'
    ? ' This submission was answered before: callmux sent that answer again and placed nothing more.' : '';
  if (response.status === 201 && answer && typeof answer.call_id === 'string') {
    state.submission = null;
    $('place-to').value = '';
    const tried = Array.isArray(answer.attempts) ? answer.attempts : [];
    const after = tried.length ? ` after ${tried.length} other target${tried.length === 1 ? '' : 's'} refused (below)` : ', the first target tried';
    placeOutcome('placed', `✓ Placed call ${answer.call_id} on ${text(answer.provider)}${after}, route ${text(answer.route)}, ${text(answer.status)}. `
      + `It shows in the list below as the provider reports it.${replayed}`, tried, { callId: answer.call_id, provider: text(answer.provider) });
    return;
  }
  const item = answer && Array.isArray(answer.errors) && answer.errors[0];
  const code = (item && item.error) || `HTTP_${response.status}`;
  const message = (item && item.message) || response.statusText || 'no message';
  const where = item && item.provider ? ` at ${item.provider}` : '';
  const wait = response.headers.get('retry-after');
  const later = wait ? ` Try again in ${wait} s.` : '';
  // An answer that settles the submission (a refusal of the request, or callmux saying the
  // outcome is unknown, which the user judges from the list) drops its key, so placing again
  // is a new request; one worth retrying as it is (in flight, rate limited, full, a server
  // error) keeps the key, and the retry is never placed twice.
  const settled = code === 'OUTCOME_UNKNOWN'
    || (response.status >= 400 && response.status < 500 && ![409, 429].includes(response.status));
  if (settled) state.submission = null;
  const data = { code, ...(item && item.provider ? { provider: String(item.provider) } : {}) };
  if (code === 'OUTCOME_UNKNOWN') {
    placeOutcome('unknown', `? Outcome unknown${where}: ${message} (${code}). The call may exist: look for it in the list before placing it again.${replayed}`,
      answer && answer.attempts, data);
  } else {
    placeOutcome('refused', `✕ Not placed${where}: ${message} (${code}).${later}${replayed}`, answer && answer.attempts, data);
  }
  if (refusesKey(code)) {
    clearSession();
    resetData();
    showSignIn(`Sign-in refused: ${message} (${code}). Check the org id and key.`);
  }
}

// ---------------------------------------------------------------- wiring

function sortBy(key) {
  const same = state.sort.key === key;
  state.sort = { key, dir: same && state.sort.dir === 'ascending' ? 'descending' : 'ascending' };
  renderTable();
}

function start() {
  takeFragment();
  $('sign-in-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const org = $('org').value.trim();
    const key = $('key').value.trim();
    if (!org || !key) return;
    if (!HEADER_SAFE.test(org) || !HEADER_SAFE.test(key)) {
      showSignIn('The org id and key are sent as HTTP headers, so they can only hold printable ASCII.');
      return;
    }
    signIn(org, key);
  });
  $('sign-out').addEventListener('click', signOut);
  $('place-form').addEventListener('submit', placeCall);
  for (const th of document.querySelectorAll('#calls-table th[data-key]')) {
    th.querySelector('button').addEventListener('click', () => sortBy(th.dataset.key));
  }
  for (const id of ['filter-text', 'filter-provider', 'filter-status']) {
    $(id).addEventListener('input', renderTable);
  }
  $('confirm').addEventListener('close', onConfirmClosed);
  // Ages tick and the chart moves on without any event.
  setInterval(() => {
    if (!state.session) return;
    if (!state.samples.length || Date.now() - state.samples[state.samples.length - 1].t >= SAMPLE_EVERY_MS) {
      if (state.controller) sample();
    }
    renderChart();
    for (const row of $('calls-body').rows) {
      const c = state.calls.get(row.dataset.callId);
      const cell = row.querySelector('td[data-col="age"]');
      if (c && cell) cell.textContent = ageText(startOf(c), Date.now());
    }
  }, 1000);
  setInterval(refreshWebhooks, WEBHOOKS_EVERY_MS);
  state.session = readSession();
  if (linkToken) {
    useLink(linkToken);
  } else if (state.session) {
    showBoard();
    connect();
    refreshWebhooks();
  } else {
    showSignIn(fragmentProblem);
  }
}

start();
