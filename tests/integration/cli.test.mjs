// The CLI against a real daemon: --help everywhere, one-line API errors
// with a non-zero exit, HYPEMAN_BASE_URL/HYPEMAN_API_KEY handling, and
// standby, restore, fork and snapshots on a real (TCG) guest.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { waitState } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let d;
before(async () => { d = await startDaemon({ env: { INGRESS_LISTEN_ADDR: '127.0.0.1' } }); });
after(async () => { await d.stop(); });

const env = (extra = {}) => ({ HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: d.token(), ...extra });

test('hypeman --help lists the commands', async () => {
  const r = await runCli(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^Usage: hypeman/);
  for (const c of ['health', 'resources', 'info', 'version']) assert.match(r.stdout, new RegExp(`\\n  ${c} `));
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

test('hypeman info shows the accelerator and every runtime, with why one cannot run', async () => {
  const caps = await (await d.fetch('/capabilities', { token: d.token() })).json();
  const r = await runCli(['info'], { env: env() });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`\nAccelerator: +${caps.accelerator.name} \\(`));
  assert.match(r.stdout, /\nNetwork: +none \(NETWORK_ENABLED=false\)/);
  assert.match(r.stdout, /\nqemu +yes +(tcg|kvm) +disk-io-limit,fork,snapshots,standby\n/);
  assert.match(r.stdout, /\nfirecracker +no +kvm +this build has no firecracker backend/);
  const j = await runCli(['--json', 'info'], { env: env() });
  assert.deepEqual(JSON.parse(j.stdout).runtimes, caps.runtimes);
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

test('standby, restore, fork and snapshot: missing or bad arguments are usage errors (exit 2)', async () => {
  for (const [args, msg] of [
    [['standby'], /^hypeman standby: expected at least one INSTANCE\nTry `hypeman standby --help`\.\n$/],
    [['restore'], /^hypeman restore: expected at least one INSTANCE\n/],
    [['fork', 'src'], /^hypeman fork: expected SOURCE NAME\n/],
    [['fork', '--state', 'Paused', 'src', 'new'], /^hypeman fork: --state wants Stopped, Standby or Running\n/],
    [['snapshot'], /^Usage: hypeman snapshot /],
    [['snapshot', 'frob'], /^hypeman snapshot: unknown subcommand `frob`/],
    [['snapshot', 'create'], /^hypeman snapshot create: expected one INSTANCE\n/],
    [['snapshot', 'create', '--kind', 'Hot', 'inst'], /^hypeman snapshot create: --kind wants Standby or Stopped\n/],
    [['snapshot', 'create', '--tag', 'novalue', 'inst'], /^hypeman snapshot create: --tag wants KEY=VALUE/],
    [['snapshot', 'ls', 'extra'], /^hypeman snapshot ls: unexpected argument `extra`/],
    [['snapshot', 'inspect'], /^hypeman snapshot inspect: expected one SNAPSHOT\n/],
    [['snapshot', 'rm'], /^hypeman snapshot rm: expected at least one SNAPSHOT\n/],
    [['snapshot', 'restore', 'inst'], /^hypeman snapshot restore: expected INSTANCE SNAPSHOT\n/],
    [['snapshot', 'fork', 'snap'], /^hypeman snapshot fork: expected SNAPSHOT NAME\n/],
    [['snapshot', 'fork', '--state'], /^hypeman snapshot fork: option `--state` needs a value\n/],
  ]) {
    const r = await runCli(args, { env: env() });
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, msg, args.join(' '));
  }
  // Each subcommand has its own usage line and description.
  for (const s of ['create', 'ls', 'inspect', 'rm', 'restore', 'fork']) {
    const r = await runCli(['snapshot', s, '--help']);
    assert.equal(r.code, 0, s);
    assert.match(r.stdout, new RegExp(`^Usage: hypeman snapshot ${s}( |\n)`), s);
    assert.match(r.stdout, /^Usage: .*\n\n[A-Z][^\n]*\.\n\nOptions:\n/, s);
  }
});

test('standby of an unknown instance: the server\'s message on one line, exit 1', async () => {
  const r = await runCli(['standby', 'cli-no-such'], { env: env() });
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /^hypeman: instance `cli-no-such` not found \(404 /);
});

test('CLI: standby, restore, snapshot create/ls/rm, fork a running instance', { timeout: 300000 }, async () => {
  const reg = await startRegistry();
  const e = env();
  const token = e.HYPEMAN_API_KEY;
  const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  try {
    await pushFixtures(reg);
    const image = `${reg.host}/test/busybox:latest`;
    let r = await runCli(['run', '-d', '-q', '--name', 'cli-snap', '-m', '256MB', '--cpus', '1', image, 'sleep', '100000'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    assert.match(id, /^[a-z0-9]{24}$/);
    await waitState(d, token, id, ['Running']);

    // standby: prints the name as given; ps (running ones) shows it on Standby.
    r = await runCli(['standby', 'cli-snap'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'cli-snap\n');
    await waitState(d, token, id, ['Standby']);
    r = await runCli(['ps'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${id.slice(0, 12)}\\s+cli-snap\\s+\\S+\\s+Standby\\s`, 'm'));

    r = await runCli(['restore', 'cli-snap'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'cli-snap\n');
    await waitState(d, token, id, ['Running']);

    // A snapshot of a running instance is a Standby one unless --kind says otherwise.
    r = await runCli(['snapshot', 'create', '--name', 's1', 'cli-snap'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    const snapId = r.stdout.trim();
    assert.match(snapId, /^[A-Za-z0-9_-]+$/);
    r = await runCli(['snapshot', 'inspect', snapId], { env: e });
    assert.equal(r.code, 0, r.stderr);
    const snap = JSON.parse(r.stdout);
    assert.deepEqual([snap.id, snap.name, snap.kind, snap.source_instance_id, snap.source_instance_name],
      [snapId, 's1', 'Standby', id, 'cli-snap']);
    r = await runCli(['snapshot', 'ls'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ID +NAME +KIND +SOURCE +SIZE +CREATED\n/);
    assert.match(r.stdout, new RegExp(`^${esc(snapId.slice(0, 12))}\\s+s1\\s+Standby\\s+cli-snap\\s+\\d`, 'm'));
    r = await runCli(['snapshot', 'ls', '--json', '--instance', 'cli-snap', '--kind', 'Standby'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).map((s) => s.id), [snapId]);
    r = await runCli(['snapshot', 'ls', '-q', '--kind', 'Stopped'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.split('\n').includes(snapId), r.stdout);

    // fork --from-running: a new running instance, and the source runs on.
    await waitState(d, token, id, ['Running']);
    r = await runCli(['fork', '--from-running', 'cli-snap', 'cli-snap-fork'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    const forkId = r.stdout.trim();
    assert.match(forkId, /^[a-z0-9]{24}$/);
    assert.notEqual(forkId, id);
    await waitState(d, token, forkId, ['Running']);
    await waitState(d, token, id, ['Running']);
    r = await runCli(['ps'], { env: e });
    assert.match(r.stdout, new RegExp(`^${forkId.slice(0, 12)}\\s+cli-snap-fork\\s+\\S+\\s+Running\\s`, 'm'));

    // snapshot rm by name: prints it, and it is gone.
    r = await runCli(['snapshot', 'rm', 's1'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 's1\n');
    r = await runCli(['snapshot', 'ls', '-q'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.split('\n').includes(snapId), r.stdout);
    r = await runCli(['snapshot', 'inspect', snapId], { env: e });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^hypeman: .*\(404 /);

    r = await runCli(['rm', '-f', 'cli-snap', 'cli-snap-fork'], { env: e });
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(['ps', '-a'], { env: e });
    assert.doesNotMatch(r.stdout, /cli-snap/);
  } finally {
    // After a failure, leave no VM behind for the tests that follow.
    await runCli(['rm', '-f', 'cli-snap', 'cli-snap-fork'], { env: e });
    await reg.stop();
  }
});
