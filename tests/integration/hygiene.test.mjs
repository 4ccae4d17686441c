// Connection hygiene of the API listener (src/api/http.c): a client that
// hoards sockets with unfinished request heads (slowloris) takes at most its
// per-address share, its connections are closed once the head timeout
// passes, and everyone else is served meanwhile. Loopback only: the hoarder
// connects from 127.0.0.2, the others from 127.0.0.1. No VM is booted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startDaemon, runCli, bin } from '../harness/daemon.mjs';
import { execFileSync } from 'node:child_process';

const HEAD_TIMEOUT_S = 3;
let d, token;
before(async () => {
  d = await startDaemon({ env: { REQUEST_HEAD_TIMEOUT: String(HEAD_TIMEOUT_S), BASE_BOOT: 'off', LOG_LEVEL: 'info' } });
  token = d.token();
});
after(async () => { await d?.stop(); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// n connections from `from`, each sending an unfinished head and nothing more.
function hoard(n, from) {
  const socks = [];
  let open = 0, closed = 0, connected = 0;
  for (let i = 0; i < n; i++) {
    const s = net.connect({ host: '127.0.0.1', port: d.port, localAddress: from });
    s.on('connect', () => { connected++; open++; s.write('GET /health HTTP/1.1\r\nHost: x\r\n'); });
    s.on('error', () => {});
    s.on('close', () => { closed++; if (s.wasOpen) open--; });
    s.on('connect', () => { s.wasOpen = true; });
    socks.push(s);
  }
  return {
    socks,
    get open() { return socks.filter((s) => s.wasOpen && !s.destroyed && s.readyState === 'open').length; },
    get settled() { return socks.filter((s) => s.destroyed || s.readyState === 'open').length; },
    end() { for (const s of socks) s.destroy(); },
  };
}

async function timed(path, auth) {
  const t0 = process.hrtime.bigint();
  const r = await d.fetch(path, { token: auth ? token : undefined, signal: AbortSignal.timeout(2000) });
  await r.text();
  return { status: r.status, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

test('1,200 unfinished heads from one client: the others are served, the hoarder keeps at most its share, and its connections are closed after the head timeout', async () => {
  const h = hoard(1200, '127.0.0.2');
  try {
    for (let i = 0; i < 200 && h.settled < 1200; i++) await sleep(20);
    await sleep(300);
    const held = h.open;
    assert.ok(held <= 64, `the hoarder holds ${held} connections, past MAX_CONNECTIONS_PER_CLIENT (64)`);
    assert.ok(held >= 32, `the hoarder holds only ${held}: the test did not hoard`);
    const times = [];
    for (let i = 0; i < 10; i++) {
      const a = await timed('/health', false);
      const b = await timed('/instances', true);
      assert.equal(a.status, 200);
      assert.equal(b.status, 200);
      times.push(a.ms, b.ms);
    }
    times.sort((x, y) => x - y);
    console.log(`# while one client holds ${held} heads: /health and GET /instances p50 ${times[10].toFixed(1)} ms, max ${times.at(-1).toFixed(1)} ms`);
    // The head timeout ends what the hoarder still holds.
    for (let i = 0; i < (HEAD_TIMEOUT_S + 5) * 10 && h.open > 0; i++) await sleep(100);
    assert.equal(h.open, 0, 'the unfinished heads are closed after REQUEST_HEAD_TIMEOUT');
  } finally { h.end(); }
  assert.equal((await timed('/health', false)).status, 200);
});

test('a request head that arrives in time is served; a kept-alive connection idle past the timeout is closed', async () => {
  const s = net.connect({ host: '127.0.0.1', port: d.port });
  let got = '';
  let closedAt = 0;
  s.on('data', (b) => { got += b; });
  const closed = new Promise((res) => s.on('close', () => { closedAt = Date.now(); res(); }));
  await new Promise((res) => s.on('connect', res));
  // Slow but within the timeout: a byte at a time, 0.5 s apart.
  const head = 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n';
  for (const part of [head.slice(0, 10), head.slice(10, 20), head.slice(20)]) {
    s.write(part);
    await sleep(500);
  }
  for (let i = 0; i < 50 && !got.includes('"status"'); i++) await sleep(20);
  assert.match(got, /^HTTP\/1\.1 200/);
  const answeredAt = Date.now();
  await closed;
  const idle = (closedAt - answeredAt) / 1000;
  assert.ok(idle >= HEAD_TIMEOUT_S - 1 && idle <= HEAD_TIMEOUT_S + 3, `closed ${idle} s after the answer`);
});

test('the limits are settings with checked values, listed in --help', () => {
  const help = execFileSync(bin('hypeman-api'), ['--help'], { encoding: 'utf8' });
  for (const k of ['MAX_CONNECTIONS ', 'MAX_CONNECTIONS_PER_CLIENT', 'REQUEST_HEAD_TIMEOUT']) assert.ok(help.includes(k), k);
  for (const [k, v] of [['MAX_CONNECTIONS', '0'], ['MAX_CONNECTIONS_PER_CLIENT', 'lots'], ['REQUEST_HEAD_TIMEOUT', '99999']]) {
    let out = '';
    try {
      execFileSync(bin('hypeman-api'), [], { env: { ...process.env, [k]: v, DATA_DIR: '/nonexistent-hypeman' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) { out = String(e.stderr); }
    assert.match(out, new RegExp(`${k} must be`), `${k}=${v}: ${out}`);
  }
});
