// Drives Debian's chromium (puppeteer-core; nothing downloaded) through the queen's dashboard:
// a wrong key gets the sign-in prompt back, the fleet shows the node and (after a chat) the
// worker, a chat in the playground streams tokens, a download shows its progress bar, the log
// view tails the worker, its Stop button stops it, and a node SSH cannot reach is refused with
// the SSH test's answer.
// Screenshots go to RBEE_SCREENSHOTS. Prints "all checks passed" at the end.
//
// Environment: RBEE_QUEEN_URL, RBEE_API_KEY, RBEE_MODEL (a model the local hive can load),
// RBEE_DOWNLOAD_MODEL (a reference the stand-in hub serves slowly), RBEE_CHROMIUM,
// RBEE_SCREENSHOTS.
import assert from 'node:assert/strict';
import puppeteer from 'puppeteer-core';

const env = (name) => {
  const v = process.env[name];
  assert.ok(v, `${name} is not set`);
  return v;
};
const base = env('RBEE_QUEEN_URL');
const key = env('RBEE_API_KEY');
const model = env('RBEE_MODEL');
const downloadModel = env('RBEE_DOWNLOAD_MODEL');
const shots = env('RBEE_SCREENSHOTS');

const step = (name) => console.log(`step: ${name}`);

const browser = await puppeteer.launch({
  executablePath: env('RBEE_CHROMIUM'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
const failures = [];
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // Error answers the test provokes (401, an unreachable node) are logged as failed loads.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      failures.push(`console: ${m.text()}`);
    }
  });
  await page.setViewport({ width: 1280, height: 900 });
  const visible = (selector, timeout = 15000) => page.waitForSelector(selector, { visible: true, timeout });
  const text = (selector) => page.$eval(selector, (el) => el.textContent);

  step('no key: the page asks for one');
  await page.goto(base + '/', { waitUntil: 'domcontentloaded' });
  await visible('#login');
  assert.equal(await page.$eval('#app', (el) => el.hidden), true, 'the app is hidden without a key');

  step('a wrong key is refused and the prompt stays');
  await page.type('#api-key', 'wrong-key-0123456789');
  await page.click('#login-form button');
  await page.waitForFunction(
    () => document.querySelector('#login-error').textContent.includes('refused'), { timeout: 10000 });
  assert.equal(await page.$eval('#login', (el) => el.hidden), false);
  assert.equal(await page.evaluate(() => location.href.includes('wrong-key')), false, 'no key in the URL');
  await page.screenshot({ path: `${shots}/login-refused.png` });

  step('the right key opens the fleet with the localhost node');
  await page.$eval('#api-key', (el) => { el.value = ''; });
  await page.type('#api-key', key);
  await page.click('#login-form button');
  await visible('#app');
  await visible('#nodes [data-node="localhost"]');
  await page.waitForFunction(() => document.querySelector('#live').classList.contains('on'));
  assert.equal(await page.evaluate(() => sessionStorage.getItem('rbee.apiKey')), key);

  step('a chat in the playground streams tokens');
  await page.click('#tabs [data-tab="playground"]');
  await visible('#prompt');
  await page.$eval('#model', (el, m) => { el.value = m; }, model);
  await page.$eval('#max_tokens', (el) => { el.value = '48'; });
  await page.$eval('#temperature', (el) => { el.value = '0'; });
  await page.type('#prompt', 'Once upon a time');
  await page.click('#send');
  await page.waitForFunction(() => !document.querySelector('#send').disabled &&
    document.querySelector('#messages .msg.assistant')?.textContent.length > 0, { timeout: 180000 });
  const errors = await page.$$eval('#messages .msg.error', (els) => els.map((e) => e.textContent));
  assert.deepEqual(errors, [], 'the chat failed');
  // The answer came as a stream of deltas (the page counts the SSE chunks it appended).
  const stats = await text('#chat-stats');
  assert.match(stats, /first token after/);
  const chunks = Number(stats.match(/(\d+) chunks ·/)?.[1]);
  assert.ok(chunks >= 10, `the reply was streamed in many chunks: ${stats}`);
  await page.click('#copy-curl');
  const curl = await text('#curl');
  assert.match(curl, /\/v1\/chat\/completions/);
  assert.match(curl, /\$RBEE_API_KEY/);
  assert.ok(!curl.includes(key), 'the copied command never holds the key itself');
  await page.screenshot({ path: `${shots}/playground.png` });

  step('the fleet shows the worker the chat started');
  await page.click('#tabs [data-tab="fleet"]');
  await page.waitForFunction((m) => [...document.querySelectorAll('#workers tbody tr')]
    .some((tr) => tr.textContent.includes(m) && tr.textContent.includes('localhost')), { timeout: 30000 }, model);
  // The table may still hold the row drawn while the worker loaded: its state catches up at
  // the page's next refresh.
  await page.waitForFunction(() => ['idle', 'busy'].includes(
    document.querySelector('#workers tbody tr td .badge')?.textContent), { timeout: 15000 })
    .catch(() => {});
  const state = await page.$eval('#workers tbody tr td .badge', (el) => el.textContent);
  assert.ok(['idle', 'busy'].includes(state), `worker state ${state}`);
  // Once the answer is done the slot is free again and the charts hold its tokens.
  await page.waitForFunction(() => document.querySelector('#sum-active').textContent === '0' &&
    document.querySelector('#sum-ttft').textContent !== '–', { timeout: 15000 });
  await page.screenshot({ path: `${shots}/fleet.png`, fullPage: true });

  step('downloading a model shows its progress');
  await page.click('#tabs [data-tab="models"]');
  await visible('#models[data-loaded]');
  await page.evaluate(() => {
    window.progressValues = [];
    const bar = document.querySelector('#download-progress');
    new MutationObserver(() => window.progressValues.push(bar.value))
      .observe(bar, { attributes: true });
    // value is a property, not always an attribute: sample it too.
    window.progressTimer = setInterval(() => window.progressValues.push(bar.value), 50);
  });
  await page.type('#download input[name="model"]', downloadModel);
  await page.click('#download button');
  await page.waitForFunction(() => document.querySelector('#download-text').textContent.startsWith('✓') ||
    document.querySelector('#download-text').textContent.startsWith('✗'), { timeout: 120000 });
  assert.match(await text('#download-text'), /^✓/);
  const values = await page.evaluate(() => window.progressValues);
  assert.ok(values.some((v) => v > 0 && v < 100), `an intermediate progress value, saw ${[...new Set(values)]}`);
  assert.equal(await page.$eval('#download-progress', (el) => el.value), 100);
  // The catalog lists the new model by its file's name.
  const stem = downloadModel.split(':').pop().replace(/\.gguf$/, '').toLowerCase();
  await page.waitForFunction((name) => document.querySelector('#models tbody').textContent.toLowerCase().includes(name),
    { timeout: 10000 }, stem);
  await page.screenshot({ path: `${shots}/models-download.png`, fullPage: true });

  step('a phone-width screen gets the fleet in one column');
  await page.click('#tabs [data-tab="fleet"]');
  // Switching isMobile makes puppeteer reload the page: the fleet is drawn again from the
  // event feed's first snapshot, so wait for the worker's row before measuring or clicking.
  const workerRowDrawn = () => visible('#workers tbody tr button.quiet');
  await page.setViewport({ width: 390, height: 844, isMobile: true });
  await workerRowDrawn();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no sideways scrolling at phone width (overflow ${overflow}px)`);
  await page.screenshot({ path: `${shots}/fleet-phone.png`, fullPage: true });

  step('the log view tails the worker');
  await page.setViewport({ width: 1280, height: 900 });
  await workerRowDrawn();
  await page.click('#workers tbody tr button.quiet');
  await visible('#tab-logs');
  await page.waitForFunction(() => document.querySelector('#log-lines').textContent.includes('llm-worker-rbee'),
    { timeout: 15000 });
  await page.screenshot({ path: `${shots}/logs.png` });

  step('stopping the worker from its row');
  await page.click('#tabs [data-tab="fleet"]');
  await page.click('#workers tbody tr button.danger');
  await page.waitForFunction(() => document.querySelectorAll('#workers tbody tr').length === 0, { timeout: 30000 });

  step('adding a node that SSH cannot reach shows the SSH test result');
  await page.click('#tab-fleet details summary');
  await page.type('#add-node input[name="node_name"]', 'ghost');
  await page.type('#add-node input[name="ssh_host"]', '127.0.0.1');
  await page.type('#add-node input[name="ssh_user"]', 'nobody');
  await page.type('#add-node input[name="install_path"]', '/opt/rbee');
  await page.$eval('#add-node input[name="ssh_port"]', (el) => { el.value = '1'; });
  await page.click('#add-node button');
  await page.waitForFunction(() => document.querySelector('#add-node-result').textContent.startsWith('✗'),
    { timeout: 60000 });
  const sshResult = await text('#add-node-result');
  assert.match(sshResult, /127\.0\.0\.1|ssh|SSH|connect/i, sshResult);
  assert.equal(await page.$('#nodes [data-node="ghost"]'), null, 'the node was not added');
  await page.screenshot({ path: `${shots}/add-node-refused.png` });

  step('the node card stops and starts its hive');
  const hiveBadge = () => page.$eval('#nodes [data-node="localhost"] header .badge:nth-of-type(2)', (el) => el.textContent);
  const clickNodeButton = (label) => page.$$eval('#nodes [data-node="localhost"] .actions button',
    (buttons, l) => buttons.find((b) => b.textContent === l).click(), label);
  await clickNodeButton('Stop hive');
  await page.waitForFunction(() => document.querySelector('#nodes [data-node="localhost"]').textContent.includes('hive stopped'),
    { timeout: 30000 });
  await clickNodeButton('Start hive');
  await page.waitForFunction(() => document.querySelector('#nodes [data-node="localhost"] .actions').textContent.includes('Stop hive'),
    { timeout: 30000 });
  assert.match(await hiveBadge(), /^hive \d/);

  step('signing out asks for the key again');
  await page.click('#sign-out');
  await visible('#login');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('rbee.apiKey')), null);
} finally {
  await browser.close();
}
assert.deepEqual(failures, [], 'no script errors on the page');
console.log('all checks passed');
