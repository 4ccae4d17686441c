// The CLI against a real daemon: --help everywhere, one-line API errors
// with a non-zero exit, HYPEMAN_BASE_URL/HYPEMAN_API_KEY handling.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon, runCli } from '../harness/daemon.mjs';

let d;
before(async () => { d = await startDaemon({ env: { INGRESS_LISTEN_ADDR: '127.0.0.1' } }); });
after(async () => { await d.stop(); });

const env = (extra = {}) => ({ HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: d.token(), ...extra });

test('hypeman --help lists the commands', async () => {
  const r = await runCli(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^Usage: hypeman/);
  for (const c of ['health', 'resources', 'version']) assert.match(r.stdout, new RegExp(`\\n  ${c} `));
});

test('every command answers --help with its usage and exit 0', async () => {
  const list = (await runCli(['--help'])).stdout.split('Commands:\n')[1]
    .split('\n').filter((l) => /^  \S/.test(l)).map((l) => l.trim().split(/\s+/)[0]);
  assert.ok(list.length >= 3);
  for (const c of list) {
    const r = await runCli([c, '--help']);
    assert.equal(r.code, 0, c);
    assert.match(r.stdout, new RegExp(`^Usage: hypeman ${c}`), c);
  }
});

test('unknown command and unknown option: exit 2 with a hint', async () => {
  let r = await runCli(['frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command `frobnicate`/);
  r = await runCli(['health', '--bogus']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option `--bogus`/);
});

test('health and resources work with a token', async () => {
  let r = await runCli(['health'], { env: env() });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'ok\n');
  r = await runCli(['resources'], { env: env() });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^RESOURCE +CAPACITY/);
  assert.match(r.stdout, /\ncpu +\d+/);
  r = await runCli(['--json', 'resources'], { env: env() });
  assert.equal(r.code, 0);
  assert.equal(JSON.parse(r.stdout).cpu.type, 'cpu');
});

test('API errors print one line and exit 1', async () => {
  let r = await runCli(['resources'], { env: env({ HYPEMAN_API_KEY: '' }) });
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /^hypeman: .*authorization header required \(401 Unauthorized\)/);
  r = await runCli(['resources'], { env: env({ HYPEMAN_API_KEY: d.token({ scopes: ['image:read'] }) }) });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'hypeman: missing required scope: resource:read (403 Forbidden)\n');
});

test('an unreachable daemon is named in the error', async () => {
  const r = await runCli(['health'], { env: { HYPEMAN_BASE_URL: 'http://127.0.0.1:1' } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^hypeman: cannot reach hypeman-api at http:\/\/127\.0\.0\.1:1: /);
});

test('hypeman-token refuses unknown scopes and bad durations', async () => {
  const { spawnSync } = await import('node:child_process');
  const { bin } = await import('../harness/daemon.mjs');
  let r = spawnSync(bin('hypeman-token'), ['--data-dir', d.dataDir, '--scopes', 'instance:reed'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown scope `instance:reed`/);
  r = spawnSync(bin('hypeman-token'), ['--data-dir', d.dataDir, '--duration', '5 weeks'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  r = spawnSync(bin('hypeman-token'), ['--data-dir', '/nonexistent-dir'], { encoding: 'utf8', env: { ...process.env, JWT_SECRET: '' } });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /jwt_secret/);
});

test('ingress create, ls, rm: the port opens and answers by Host, then closes', async () => {
  const net = await import('node:net');
  const port = await new Promise((res) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); }); });
  let r = await runCli(['ingress', 'create', 'cli-ing', '--rule', `site.test:${port}=web:8080`, '--rule', `{instance}.apps.test:${port}={instance}:80`, '-t', 'team=x'], { env: env() });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.trim(), /^[a-z0-9]{24}$/);
  r = await runCli(['ingress', 'ls'], { env: env() });
  assert.match(r.stdout, new RegExp(`cli-ing\\s+site\\.test:${port} -> web:8080, \\{instance\\}\\.apps\\.test:${port} -> \\{instance\\}:80`));
  // A raw request: fetch() may not set Host.
  const get = (host) => new Promise((res) => {
    const c = net.connect(port, '127.0.0.1', () => c.end(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`));
    let b = '';
    c.on('data', (x) => { b += x; });
    c.on('end', () => res(b));
    c.on('error', (e) => res(e.code));
  });
  assert.match(await get('site.test'), /^HTTP\/1\.1 502 .*instance `web` not found/s);
  assert.match(await get('other.test'), /^HTTP\/1\.1 404 /);
  r = await runCli(['ingress', 'create', 'bad', '--rule', 'nonsense'], { env: env() });
  assert.equal(r.code, 2);
  r = await runCli(['ingress', 'rm', 'cli-ing'], { env: env() });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await get('site.test'), 'ECONNREFUSED');
});
