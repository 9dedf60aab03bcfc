// The rbee dashboard: one page over the queen's own API. The API key lives in this tab's
// sessionStorage and travels only in the Authorization header (never in a URL), so every
// stream, the fleet feed included, is read with fetch() rather than EventSource.

const KEY_STORAGE = 'rbee.apiKey';
let apiKey = sessionStorage.getItem(KEY_STORAGE) ?? '';
let fleet = { nodes: [], workers: [], totals: {} };

const $ = (id) => document.getElementById(id);

// h('td', {class: 'x', onclick: f}, 'text', child) builds an element (no innerHTML anywhere:
// every value from the fleet is inserted as text).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// ---- formatting ----
function bytes(n) {
  if (!n) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n >= 10 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`;
}
function since(unix) {
  if (!unix) return '–';
  const s = Math.max(0, Date.now() / 1000 - unix);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return new Date(unix * 1000).toLocaleDateString();
}
function until(unix) {
  if (!unix) return '–';
  const s = Math.max(0, unix - Date.now() / 1000);
  if (s < 60) return `in ${Math.round(s)}s`;
  if (s < 3600) return `in ${Math.round(s / 60)}m`;
  return `in ${(s / 3600).toFixed(1)}h`;
}
function parameters(n) {
  if (!n) return '–';
  if (n < 1e6) return `${Math.round(n / 1e3)}K`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)}M`;
  return `${(n / 1e9).toFixed(1)}B`;
}
function date(unix) { return unix ? new Date(unix * 1000).toLocaleString() : '–'; }
function stateClass(state) {
  if (['idle', 'busy', 'reachable', 'running', 'ok'].includes(state)) return 'ok';
  if (['loading', 'spawning', 'draining', 'stopping', 'unknown'].includes(state)) return 'warn';
  return 'bad';
}

// ---- talking to the queen ----
class ApiError extends Error {
  constructor(status, body) {
    const e = body?.error ?? {};
    super(e.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = e.code ?? '';
    this.hint = e.details?.hint ?? '';
  }
}

function authHeaders(extra = {}) {
  return apiKey ? { ...extra, Authorization: `Bearer ${apiKey}` } : extra;
}

async function request(path, { method = 'GET', body, signal, accept = 'application/json' } = {}) {
  const headers = authHeaders({ Accept: accept });
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) {
    const err = new ApiError(res.status, await res.json().catch(() => null));
    if (res.status === 401) showLogin(apiKey ? 'The queen refused this API key.' : '');
    throw err;
  }
  return res;
}

async function api(path, options) {
  return (await request(path, options)).json();
}

// Reads an SSE response: onEvent({event, data}) per frame, data parsed as JSON where it is.
async function readSse(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = '';
      const data = [];
      for (const line of frame.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (!data.length) continue;
      const text = data.join('\n');
      if (text === '[DONE]') return;
      let parsed = text;
      try { parsed = JSON.parse(text); } catch { /* plain text data */ }
      if (onEvent({ event, data: parsed }) === false) return;
    }
  }
}

async function stream(path, options, onEvent) {
  const res = await request(path, { ...options, accept: 'text/event-stream' });
  await readSse(res, onEvent);
}

// ---- sign-in ----
function showLogin(message = '') {
  stopFeed();
  logsAbort?.abort();
  $('app').hidden = true;
  $('tabs').hidden = true;
  $('sign-out').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('api-key').focus();
}

function showApp() {
  if (!$('app').hidden) return;
  $('login').hidden = true;
  $('app').hidden = false;
  $('tabs').hidden = false;
  $('sign-out').hidden = !apiKey;
  loadModelIds();
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  apiKey = $('api-key').value.trim();
  sessionStorage.setItem(KEY_STORAGE, apiKey);
  $('login-error').textContent = 'Checking…';
  startFeed();
});
$('sign-out').addEventListener('click', () => {
  apiKey = '';
  sessionStorage.removeItem(KEY_STORAGE);
  $('api-key').value = '';
  showLogin();
});

// ---- the fleet feed: one SSE stream of snapshots ----
let feed = null;
let retry = null;

function stopFeed() {
  feed?.abort();
  feed = null;
  clearTimeout(retry);
  $('live').classList.remove('on');
  $('live').textContent = 'offline';
}

async function startFeed() {
  stopFeed();
  const controller = new AbortController();
  feed = controller;
  try {
    const res = await request('/v2/events', { signal: controller.signal, accept: 'text/event-stream' });
    showApp();
    $('live').classList.add('on');
    $('live').textContent = 'live';
    await readSse(res, ({ data }) => {
      if (data?.type === 'fleet') renderFleet(data);
    });
  } catch (e) {
    if (controller.signal.aborted || e.status === 401) return;
  }
  if (feed !== controller) return;
  $('live').classList.remove('on');
  $('live').textContent = 'reconnecting';
  retry = setTimeout(startFeed, 2000);
}

// ---- fleet view ----
function deviceRow(d) {
  const total = d.vram_total_bytes ?? d.ram_total_bytes ?? 0;
  const free = d.vram_free_bytes ?? d.ram_free_bytes ?? 0;
  const used = Math.max(0, total - free);
  const pct = total ? Math.round((100 * used) / total) : 0;
  const bar = h('div', { class: 'bar' }, h('span'));
  bar.firstChild.style.width = `${pct}%`;
  const kind = d.backend === 'cuda' ? 'VRAM' : 'RAM';
  return h('div', { class: 'device' },
    h('div', {}, `${d.backend}:${d.device} ${d.name ?? ''} — ${kind} ${bytes(used)} used, ${bytes(free)} free of ${bytes(total)}`),
    bar);
}

async function action(button, fn) {
  button.disabled = true;
  try {
    await fn();
  } catch (e) {
    alert(`${e.message}${e.hint ? `\n${e.hint}` : ''}`);
  } finally {
    button.disabled = false;
  }
}

function nodeCard(n) {
  const running = n.hive?.running;
  const card = h('article', { class: 'node', 'data-node': n.node_name },
    h('header', {},
      h('strong', {}, n.node_name),
      h('span', { class: `badge ${stateClass(n.status)}` }, n.status),
      h('span', { class: `badge ${running ? 'ok' : 'warn'}` }, running ? `hive ${n.hive.version || ''}` : 'hive stopped')),
    h('div', { class: 'muted' }, n.node_name === 'localhost' ? 'this machine' : `${n.ssh_user}@${n.ssh_host}`),
    h('div', {}, `Backends: ${(n.backends ?? []).join(', ') || '–'}`),
    (n.devices ?? []).map(deviceRow),
    n.last_error ? h('div', { class: 'error' }, n.last_error) : null);
  const actions = h('div', { class: 'actions' });
  const post = (path, body) => api(path, { method: 'POST', body });
  if (running) {
    actions.append(h('button', { class: 'quiet', onclick: (e) => action(e.target, () => post('/v2/hives/stop', { node: n.node_name })) }, 'Stop hive'));
  } else {
    actions.append(h('button', { class: 'quiet', onclick: (e) => action(e.target, () => post('/v2/hives/start', { node: n.node_name })) }, 'Start hive'));
  }
  actions.append(h('button', { class: 'quiet', onclick: () => showLogs(n.node_name, '') }, 'Logs'));
  if (n.node_name !== 'localhost') {
    actions.append(h('button', { class: 'quiet', onclick: (e) => action(e.target, () => installNode(n.node_name)) }, 'Install'));
    actions.append(h('button', {
      class: 'danger',
      onclick: (e) => confirm(`Remove node ${n.node_name}?`) &&
        action(e.target, () => post('/v2/registry/beehives/remove', { node_name: n.node_name })),
    }, 'Remove'));
  }
  card.append(actions);
  return card;
}

async function installNode(name) {
  const out = $('add-node-result');
  out.closest('details').open = true;
  out.textContent = `Installing on ${name}…\n`;
  await stream('/v2/registry/beehives/install', { method: 'POST', body: { node_name: name } }, ({ data }) => {
    out.textContent += `${data.human ?? data.message ?? JSON.stringify(data)}\n`;
  });
}

function workerRow(w) {
  const device = `${w.backend}:${w.device}`;
  return h('tr', { 'data-worker': w.worker_id },
    h('td', { class: 'mono' }, w.worker_id),
    h('td', {}, w.node),
    h('td', { class: 'model', title: w.model_ref }, w.model_ref),
    h('td', {}, device),
    h('td', {}, h('span', { class: `badge ${stateClass(w.state)}` }, w.state)),
    h('td', {}, `${w.slots_busy}/${w.slots_total}`),
    h('td', {}, w.ctx || '–'),
    h('td', { title: `estimated ${bytes(w.memory_bytes)}` }, bytes(w.memory_used_bytes || w.memory_bytes)),
    h('td', {}, w.tokens_per_second ? w.tokens_per_second.toFixed(1) : '–'),
    h('td', {}, w.queue ?? 0),
    h('td', { title: date(w.ready_at_unix) }, since(w.ready_at_unix || w.started_at_unix)),
    h('td', { title: w.unload_at_unix ? `unloads when idle until ${date(w.unload_at_unix)}` : '' }, until(w.unload_at_unix)),
    h('td', {},
      h('button', { class: 'quiet', onclick: () => showLogs(w.node, w.worker_id) }, 'Logs'),
      ' ',
      w.state === 'spawning' ? null : h('button', {
        class: 'danger',
        onclick: (e) => action(e.target, () => api('/v2/workers/shutdown', { method: 'POST', body: { worker_id: w.worker_id } })),
      }, 'Stop')));
}

function fillSelect(select, values, keepFirst = false) {
  const current = select.value;
  const first = keepFirst ? select.options[0] : null;
  select.replaceChildren(...(first ? [first] : []), ...values.map(([v, label]) => h('option', { value: v }, label)));
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

function renderFleet(snapshot) {
  fleet = snapshot;
  previousTotals ??= { ...snapshot.totals, at: performance.now() / 1000 };
  $('sum-nodes').textContent = snapshot.nodes.length;
  $('sum-workers').textContent = snapshot.workers.length;
  $('sum-queue').textContent = snapshot.queue_depth;
  $('sum-active').textContent = snapshot.active_tasks;
  $('nodes').replaceChildren(...snapshot.nodes.map(nodeCard));
  $('workers').tBodies[0].replaceChildren(...snapshot.workers.map(workerRow));
  $('no-workers').hidden = snapshot.workers.length > 0;
  const nodeNames = snapshot.nodes.map((n) => [n.node_name, n.node_name]);
  fillSelect($('models-node'), nodeNames);
  fillSelect($('logs-node'), nodeNames);
  fillLogWorkers();
  if (!modelsLoaded && $('models-node').value) loadModels();
}

// ---- live charts: sampled from the feed's running totals ----
const samples = { tps: [], ttft: [] };
let previousTotals = null;

function sampleTotals() {
  const t = fleet.totals ?? {};
  const now = performance.now() / 1000;
  if (previousTotals && t.generated_tokens !== undefined) {
    const dt = now - previousTotals.at;
    const tps = Math.max(0, (t.generated_tokens - previousTotals.generated_tokens) / dt);
    const dCount = t.ttft_count - previousTotals.ttft_count;
    const ttft = dCount > 0 ? (t.ttft_sum_seconds - previousTotals.ttft_sum_seconds) / dCount : null;
    push(samples.tps, tps);
    push(samples.ttft, ttft);
    $('sum-tps').textContent = tps.toFixed(1);
    if (ttft !== null) $('sum-ttft').textContent = `${ttft.toFixed(2)}s`;
    drawChart($('chart-tps'), samples.tps);
    drawChart($('chart-ttft'), samples.ttft);
  }
  previousTotals = { ...t, at: now };
}
function push(list, v) {
  list.push(v);
  if (list.length > 90) list.shift();
}
function drawChart(canvas, values) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const known = values.filter((v) => v !== null);
  const max = Math.max(1e-9, ...known) * 1.15;
  ctx.strokeStyle = '#2b323a';
  ctx.beginPath();
  ctx.moveTo(0, height - 0.5);
  ctx.lineTo(width, height - 0.5);
  ctx.stroke();
  ctx.fillStyle = '#8b949e';
  ctx.font = '11px system-ui';
  ctx.fillText(known.length ? max.toFixed(max < 10 ? 2 : 0) : 'no data yet', 4, 12);
  // One bar per sample: a single sample already shows.
  ctx.fillStyle = '#f2b824';
  const step = width / 90;
  values.forEach((v, i) => {
    if (v === null || v <= 0) return;
    const barHeight = (v / max) * (height - 16);
    ctx.fillRect(i * step, height - barHeight, Math.max(1, step - 1), barHeight);
  });
}
drawChart($('chart-tps'), samples.tps);
drawChart($('chart-ttft'), samples.ttft);
setInterval(sampleTotals, 2000);

// ---- add a node ----
$('add-node').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const body = {};
  for (const [k, v] of form) if (v !== '') body[k] = k === 'ssh_port' ? Number(v) : v;
  const out = $('add-node-result');
  out.textContent = `Testing SSH to ${body.ssh_user}@${body.ssh_host}…`;
  try {
    const r = await api('/v2/registry/beehives/add', { method: 'POST', body });
    out.textContent = `✓ ${r.message}`;
    e.target.reset();
  } catch (err) {
    out.textContent = `✗ ${err.message}${err.hint ? `\n${err.hint}` : ''}`;
  }
});

// ---- models ----
let modelsLoaded = false;

async function loadModels() {
  modelsLoaded = true;
  const node = $('models-node').value;
  const body = $('models').tBodies[0];
  try {
    const r = await api(`/v2/models/list?node=${encodeURIComponent(node)}`);
    body.replaceChildren(...r.models.map((m) => h('tr', {},
      h('td', { class: 'model mono', title: m.local_path }, m.id),
      h('td', {}, m.architecture || '–'),
      h('td', {}, m.quantization || '–'),
      h('td', {}, parameters(m.parameters)),
      h('td', {}, m.context_length || '–'),
      h('td', {}, bytes(m.size_bytes)),
      h('td', { title: date(m.downloaded_at_unix) }, since(m.downloaded_at_unix)),
      h('td', {}, h('button', {
        class: 'danger',
        onclick: (e) => confirm(`Remove ${m.id} from ${node}?`) && action(e.target, async () => {
          await api('/v2/models/remove', { method: 'POST', body: { node, model: m.id } });
          await loadModels();
        }),
      }, 'Remove')))));
    $('models').dataset.loaded = node;
  } catch (e) {
    body.replaceChildren(h('tr', {}, h('td', { colspan: 8, class: 'error' }, e.message)));
  }
}
$('models-node').addEventListener('change', loadModels);
$('models-refresh').addEventListener('click', loadModels);

$('download').addEventListener('submit', async (e) => {
  e.preventDefault();
  const model = new FormData(e.target).get('model');
  const node = $('models-node').value;
  const bar = $('download-progress');
  const text = $('download-text');
  $('download-status').hidden = false;
  bar.value = 0;
  text.textContent = `Starting ${model} on ${node}…`;
  const button = e.target.querySelector('button');
  button.disabled = true;
  try {
    await stream('/v2/models/download', { method: 'POST', body: { node, model } }, ({ data }) => {
      if (data.type === 'error') {
        text.textContent = `✗ ${data.message}`;
        return false;
      }
      if (data.action === 'download_progress' && data.bytes_total) {
        bar.value = (100 * data.bytes_downloaded) / data.bytes_total;
        text.textContent = `${bytes(data.bytes_downloaded)} of ${bytes(data.bytes_total)}`;
      } else if (data.action === 'download_complete' || data.action === 'model_cached') {
        bar.value = 100;
        text.textContent = `✓ ${data.human}`;
      } else if (data.human) {
        text.textContent = data.human;
      }
      return true;
    });
    await loadModels();
    loadModelIds();
  } catch (err) {
    text.textContent = `✗ ${err.message}`;
  } finally {
    button.disabled = false;
  }
});

// ---- playground ----
const history = [];
let chatAbort = null;

async function loadModelIds() {
  try {
    const r = await api('/v1/models');
    $('model-ids').replaceChildren(...r.data.map((m) => h('option', { value: m.id })));
    if (!$('model').value && r.data.length) $('model').value = r.data[0].id;
  } catch { /* the list is a convenience: any reference may be typed */ }
}

function chatBody() {
  const messages = [];
  const system = $('system').value.trim();
  if (system) messages.push({ role: 'system', content: system });
  messages.push(...history);
  const body = { model: $('model').value.trim(), messages, stream: true };
  for (const name of ['temperature', 'top_p', 'max_tokens', 'seed']) {
    const v = $(name).value;
    if (v !== '') body[name] = Number(v);
  }
  return body;
}

function message(role, text) {
  const el = h('div', { class: `msg ${role}` }, text);
  $('messages').append(el);
  el.scrollIntoView({ block: 'end' });
  return el;
}

$('chat-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const prompt = $('prompt').value.trim();
  if (!prompt || chatAbort) return;
  if (!$('model').value.trim()) {
    message('error', 'Pick a model first.');
    return;
  }
  history.push({ role: 'user', content: prompt });
  message('user', prompt);
  $('prompt').value = '';
  const reply = message('assistant', '');
  const body = chatBody();
  chatAbort = new AbortController();
  $('send').disabled = true;
  $('stop').hidden = false;
  const started = performance.now();
  let first = null;
  let chunks = 0;
  try {
    await stream('/v1/chat/completions', { method: 'POST', body, signal: chatAbort.signal }, ({ data }) => {
      if (data?.error) throw new Error(data.error.message ?? 'stream error');
      const delta = data?.choices?.[0]?.delta?.content;
      if (delta) {
        first ??= performance.now();
        chunks++;
        reply.textContent += delta;
        reply.scrollIntoView({ block: 'end' });
      }
    });
    history.push({ role: 'assistant', content: reply.textContent });
    const secs = (performance.now() - (first ?? started)) / 1000;
    $('chat-stats').textContent = first
      ? `first token after ${((first - started) / 1000).toFixed(2)}s · ${chunks} chunks · ${(chunks / Math.max(secs, 1e-3)).toFixed(1)} chunks/s`
      : 'no tokens';
  } catch (err) {
    if (!chatAbort.signal.aborted) message('error', err.message);
    history.pop();
  } finally {
    chatAbort = null;
    $('send').disabled = false;
    $('stop').hidden = true;
  }
});
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('chat-form').requestSubmit();
  }
});
$('stop').addEventListener('click', () => chatAbort?.abort());
$('clear-chat').addEventListener('click', () => {
  history.length = 0;
  $('messages').replaceChildren();
});

// The request as a command line; the key stays an environment variable, never in the text.
function curlCommand() {
  const body = chatBody();
  if (!body.messages.length) body.messages.push({ role: 'user', content: $('prompt').value || 'Hello' });
  const json = JSON.stringify(body, null, 2).replaceAll("'", "'\\''");
  return `curl -N ${location.origin}/v1/chat/completions \\\n  -H "Authorization: Bearer $RBEE_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${json}'`;
}
$('copy-curl').addEventListener('click', async () => {
  const text = curlCommand();
  $('curl').hidden = false;
  $('curl').textContent = text;
  try {
    await navigator.clipboard.writeText(text);
    $('copy-curl').textContent = 'Copied';
    setTimeout(() => { $('copy-curl').textContent = 'Copy as curl'; }, 1500);
  } catch { /* shown above for manual copying */ }
});

// ---- logs ----
let logsAbort = null;

function fillLogWorkers() {
  const node = $('logs-node').value;
  fillSelect($('logs-worker'),
    fleet.workers.filter((w) => w.node === node).map((w) => [w.worker_id, `${w.worker_id} (${w.model_ref})`]), true);
}
$('logs-node').addEventListener('change', fillLogWorkers);

async function followLogs() {
  logsAbort?.abort();
  const controller = new AbortController();
  logsAbort = controller;
  const out = $('log-lines');
  out.textContent = '';
  const params = new URLSearchParams({ node: $('logs-node').value });
  if ($('logs-worker').value) params.set('worker', $('logs-worker').value);
  if ($('logs-follow').checked) params.set('follow', 'true');
  params.set('tail', '500');
  let lines = 0;
  try {
    await stream(`/v2/logs?${params}`, { signal: controller.signal }, ({ data }) => {
      const line = data?.line ?? data?.human ?? data?.message;
      if (line === undefined) return true;
      out.append(`${line}\n`);
      if (++lines > 5000) out.firstChild.remove();
      out.scrollTop = out.scrollHeight;
      return true;
    });
  } catch (e) {
    if (!controller.signal.aborted) out.append(`✗ ${e.message}\n`);
  }
}
$('logs-form').addEventListener('submit', (e) => {
  e.preventDefault();
  followLogs();
});

function showLogs(node, worker) {
  selectTab('logs');
  $('logs-node').value = node;
  fillLogWorkers();
  $('logs-worker').value = worker;
  followLogs();
}

// ---- tabs ----
function selectTab(name) {
  for (const b of $('tabs').querySelectorAll('button')) b.classList.toggle('active', b.dataset.tab === name);
  for (const s of document.querySelectorAll('.tab')) s.hidden = s.id !== `tab-${name}`;
  if (name === 'models') loadModels();
  if (name === 'playground') loadModelIds();
}
$('tabs').addEventListener('click', (e) => {
  if (e.target.dataset.tab) selectTab(e.target.dataset.tab);
});

startFeed();
