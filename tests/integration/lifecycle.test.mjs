// The instance lifecycle beyond boot, on real TCG guests: stop (graceful,
// through the guest init), start again on the same overlay with a cmd
// override, env updates, wait, stats, stat, admission, a daemon killed
// with SIGKILL and restarted while instances run, and many clients
// creating and deleting at once leaving nothing behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, mkdtempSync, mkdirSync, writeFileSync, readFileSync, renameSync, statSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { createInstance, getInstance, waitState, readLogs, vmmPid, processAlive, processesWith } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, token, image;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  token = d.token();
  image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  assert.equal((await waitImage(d, token, image)).img.status, 'ready');
});
after(async () => {
  if (d) {
    const r = await d.fetch('/instances', { token }).catch(() => null);
    if (r?.status === 200) for (const i of await r.json()) await d.fetch(`/instances/${i.id}`, { method: 'DELETE', token });
    await d.stop();
  }
  await reg?.stop();
});

const small = { size: '256MB', vcpus: 1 };
const post = (path, body) => d.fetch(path, { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });

test('stop is graceful, start reuses the overlay and takes a cmd override; env updates apply on start', async () => {
  const c = await createInstance(d, token, {
    name: 'life', image, ...small,
    cmd: ['sh', '-c', 'echo persisted > /data-file; trap "echo got-term; exit 0" TERM; while :; do sleep 0.1; done'],
  });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  // wait: already Running answers at once; a short timeout on another state times out.
  let w = await (await d.fetch(`/instances/${id}/wait?state=Running&timeout=5s`, { token })).json();
  assert.deepEqual([w.state, w.timed_out], ['Running', false]);
  w = await (await d.fetch(`/instances/${id}/wait?state=Paused&timeout=200ms`, { token })).json();
  assert.deepEqual([w.state, w.timed_out], ['Running', true]);
  assert.equal((await d.fetch(`/instances/${id}/wait?state=Nope`, { token })).status, 400);
  assert.equal((await d.fetch(`/instances/${id}/wait?state=Running&timeout=soon`, { token })).status, 400);
  // Make sure the file is written before stopping.
  for (let i = 0; i < 100 && !(await readLogs(d, token, id, { source: 'hypeman' })).some((l) => l.includes('program started')); i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));

  // stats while running: a live VMM process with memory and CPU time.
  const stats = await (await d.fetch(`/instances/${id}/stats`, { token })).json();
  assert.equal(stats.instance_id, id);
  assert.ok(stats.memory_rss_bytes > 10 << 20, JSON.stringify(stats));
  assert.ok(stats.cpu_seconds > 0, JSON.stringify(stats));
  assert.equal(stats.allocated_vcpus, 1);
  assert.equal(stats.allocated_memory_bytes, 256 << 20);
  // resources count it.
  const res = await (await d.fetch('/resources', { token })).json();
  assert.ok(res.cpu.allocated >= 1 && res.memory.allocated >= 256 << 20, JSON.stringify(res.cpu));

  const pid = vmmPid(d, id);
  let r = await post(`/instances/${id}/stop`);
  assert.equal(r.status, 200);
  let inst = await r.json();
  assert.equal(inst.state, 'Stopped');
  assert.equal(inst.exit_code, 0, inst.exit_message);
  assert.equal(processAlive(pid), false);
  assert.ok((await readLogs(d, token, id)).includes('got-term'));
  assert.ok((await readLogs(d, token, id, { source: 'hypeman' })).some((l) => l.includes('via="guest init"')));
  // Stopping a stopped one answers the instance, as upstream does.
  r = await post(`/instances/${id}/stop`);
  assert.equal(r.status, 200);
  assert.equal((await r.json()).state, 'Stopped');

  r = await d.fetch(`/instances/${id}`, { method: 'PATCH', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ env: { LATER: 'yes' } }) });
  assert.equal(r.status, 200);
  assert.equal((await r.json()).env.LATER, 'yes');
  r = await d.fetch(`/instances/${id}`, { method: 'PATCH', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ env: { 'BAD=': 'x' } }) });
  assert.equal(r.status, 400);

  r = await post(`/instances/${id}/start`, { cmd: ['sh', '-c', 'echo "again: $(cat /data-file) later=$LATER"'] });
  assert.equal(r.status, 200, await r.clone().text());
  inst = await r.json();
  assert.ok(['Initializing', 'Running', 'Stopped'].includes(inst.state));
  assert.equal(inst.exit_code, null);
  ({ inst } = await waitState(d, token, id));
  assert.equal(inst.exit_code, 0, inst.exit_message);
  const logs = await readLogs(d, token, id, { tail: 1000 });
  assert.ok(logs.includes('again: persisted later=yes'), logs.join('\n'));
  // The first boot's output is still in the log: it is appended to.
  assert.ok(logs.includes('got-term'));
  r = await post(`/instances/${id}/start`, { cmd: 'nope' });
  assert.equal(r.status, 400);
  await d.fetch(`/instances/${id}`, { method: 'DELETE', token });
});

test('a program that ignores SIGTERM is killed after the grace period', { timeout: 120000 }, async () => {
  const c = await createInstance(d, token, { name: 'stubborn', image, ...small, cmd: ['sh', '-c', 'trap "" TERM; while :; do sleep 0.1; done'] });
  assert.equal(c.status, 201);
  await waitState(d, token, c.body.id, ['Running']);
  await new Promise((r) => setTimeout(r, 300));
  const t0 = Date.now();
  const r = await post(`/instances/${c.body.id}/stop`);
  assert.equal(r.status, 200);
  const inst = await r.json();
  assert.equal(inst.state, 'Stopped');
  assert.equal(inst.exit_code, 137, inst.exit_message);
  assert.ok(Date.now() - t0 >= 9000, 'waited for the grace period');
  await d.fetch(`/instances/${c.body.id}`, { method: 'DELETE', token });
});

test('stat asks the guest; stat and stop need a running instance', async () => {
  const c = await createInstance(d, token, { name: 'statme', image, ...small, cmd: ['sh', '-c', 'mkdir -p /srv/d; echo hello > /srv/d/f; ln -s /srv/d/f /srv/link; while :; do sleep 1; done'] });
  assert.equal(c.status, 201);
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  await new Promise((r) => setTimeout(r, 500));
  const stat = async (q) => { const r = await d.fetch(`/instances/${id}/stat?${q}`, { token }); return { status: r.status, body: await r.json() }; };
  let s = await stat('path=/srv/d/f');
  assert.equal(s.status, 200, JSON.stringify(s.body));
  assert.equal(s.body.exists, true);
  assert.equal(s.body.is_file, true);
  assert.equal(s.body.size, 6);
  s = await stat('path=/srv/d');
  assert.equal(s.body.is_dir, true);
  s = await stat('path=/srv/link');
  assert.equal(s.body.is_symlink, true);
  assert.equal(s.body.link_target, '/srv/d/f');
  s = await stat('path=/srv/link&follow_links=true');
  assert.equal(s.body.is_file, true);
  s = await stat('path=/no/such');
  assert.equal(s.body.exists, false);
  s = await stat('path=relative');
  assert.equal(s.status, 400);
  await post(`/instances/${id}/stop`);
  s = await stat('path=/srv');
  assert.equal(s.status, 409);
  await d.fetch(`/instances/${id}`, { method: 'DELETE', token });
});

test('CLI: exec (exit codes, piped stdin with -i, env, workdir), cp both ways, stats, inspect, stop, start', { timeout: 180000 }, async () => {
  const env = { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: token };
  let r = await runCli(['run', '-d', '--name', 'cli-life', '-m', '256MB', '--cpus', '1', image, 'sleep', '100000'], { env });
  assert.equal(r.code, 0, r.stderr);
  const id = r.stdout.trim();
  await waitState(d, token, id, ['Running']);
  r = await runCli(['exec', 'cli-life', 'echo', 'hello from exec'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'hello from exec\n');
  r = await runCli(['exec', 'cli-life', 'sh', '-c', 'exit 7'], { env });
  assert.equal(r.code, 7);
  r = await runCli(['exec', '-i', 'cli-life', 'sh', '-c', 'tr a-z A-Z; echo "[$X] $(pwd)"'], { env: { ...env, X: 'from-shell' }, input: 'piped in\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'PIPED IN\n[] /\n');
  r = await runCli(['exec', '-e', 'X=set', '-w', '/etc', 'cli-life', 'sh', '-c', 'echo "[$X] $(pwd)"'], { env });
  assert.equal(r.stdout, '[set] /etc\n');
  // Without -i stdin is closed at once: cat ends instead of hanging.
  r = await runCli(['exec', 'cli-life', 'cat'], { env, input: 'ignored' });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, '');
  // -it on a real terminal: the guest side is a pty, our keystrokes reach it.
  r = await runCli(['exec', '-it', 'cli-life', 'sh', '-c', 'tty; read x; echo "got $x"; exit 5'], { env, tty: true, input: 'typed\r' });
  assert.equal(r.code, 5, r.stdout + r.stderr);
  assert.match(r.stdout, /\/dev\/pts\/\d+/);
  assert.match(r.stdout, /got typed/);
  r = await runCli(['exec', 'cli-life', 'no-such-cmd'], { env });
  assert.equal(r.code, 127);
  assert.match(r.stdout, /Error: .*no-such-cmd/);
  // cp both ways: a tree into an existing guest directory, then back out.
  const tmp = mkdtempSync(join(tmpdir(), 'hm-cp-'));
  mkdirSync(join(tmp, 'site', 'css'), { recursive: true });
  writeFileSync(join(tmp, 'site', 'index.html'), '<h1>hi</h1>\n');
  writeFileSync(join(tmp, 'site', 'css', 'a.css'), 'body{}\n', { mode: 0o600 });
  try {
    r = await runCli(['cp', join(tmp, 'site'), 'cli-life:/srv'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Successfully copied/);
    r = await runCli(['exec', 'cli-life', 'sh', '-c', 'cat /srv/site/index.html /srv/site/css/a.css; stat -c %a /srv/site/css/a.css'], { env });
    assert.equal(r.stdout, '<h1>hi</h1>\nbody{}\n600\n');
    r = await runCli(['cp', 'cli-life:/srv/site', join(tmp, 'back')], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(tmp, 'back', 'css', 'a.css'), 'utf8'), 'body{}\n');
    assert.equal(statSync(join(tmp, 'back', 'css', 'a.css')).mode & 0o777, 0o600);
    r = await runCli(['cp', 'cli-life:/srv/site/index.html', tmp], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(tmp, 'index.html'), 'utf8'), '<h1>hi</h1>\n');
    r = await runCli(['cp', 'cli-life:/no/such', tmp], { env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no such/i);
    r = await runCli(['cp', 'a', 'b'], { env });
    assert.equal(r.code, 2);
  } finally { rmSync(tmp, { recursive: true, force: true }); }
  r = await runCli(['stats', 'cli-life'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^NAME\s+CPU \(s\)/);
  assert.match(r.stdout, /cli-life\s+[\d.]+\s+[\d.]+ MiB\s+[\d.]+ [MG]iB\s+1\s+256\.0 MiB/);
  r = await runCli(['inspect', 'cli-life'], { env });
  assert.equal(JSON.parse(r.stdout).id, id);
  r = await runCli(['stop', 'cli-life'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await getInstance(d, token, id)).body.state, 'Stopped');
  r = await runCli(['exec', 'cli-life', 'true'], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /must be running \(current state: Stopped\)/);
  r = await runCli(['start', 'cli-life', 'sh', '-c', 'echo restarted; exec sleep 1000'], { env });
  assert.equal(r.code, 0, r.stderr);
  await waitState(d, token, id, ['Running']);
  r = await runCli(['exec', 'cli-life', 'true'], { env });
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(['rm', '-f', 'cli-life'], { env });
  assert.equal(r.code, 0);
});

test('admission: a create that does not fit is 409 insufficient_resources', async () => {
  const res = await (await d.fetch('/resources', { token })).json();
  const tooMany = Math.min(64, res.cpu.available + 1);
  if (res.cpu.available + 1 <= 64) {
    const r = await createInstance(d, token, { name: 'greedy', image, size: '256MB', vcpus: tooMany });
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.equal(r.body.code, 'insufficient_resources');
    assert.match(r.body.message, /CPU/);
  }
  assert.equal((await getInstance(d, token, 'greedy')).status, 404);
});

test('kill -9 the daemon with two instances running: both re-adopted; one whose QEMU died shows Stopped', { timeout: 180000 }, async () => {
  const d2 = await startDaemon();
  const t2 = d2.token();
  try {
    await pull(d2, t2, { name: image });
    await waitImage(d2, t2, image);
    const ids = [];
    for (const name of ['keep-a', 'keep-b', 'doomed']) {
      const c = await createInstance(d2, t2, { name, image, ...small, cmd: ['sh', '-c', 'while :; do echo alive; sleep 0.5; done'] });
      assert.equal(c.status, 201);
      ids.push(c.body.id);
    }
    for (const id of ids) await waitState(d2, t2, id, ['Running']);
    const pids = ids.map((id) => vmmPid(d2, id));
    await d2.kill9();
    // While the daemon is down, one VM's QEMU dies.
    process.kill(pids[2], 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(processAlive(pids[0]) && processAlive(pids[1]), 'VMs outlive the daemon');

    const d3 = await startDaemon({ env: { DATA_DIR: d2.dataDir } });
    try {
      const t3 = d3.token();
      for (const id of ids.slice(0, 2)) {
        const { body } = await getInstance(d3, t3, id);
        assert.equal(body.state, 'Running', JSON.stringify(body));
      }
      const { body: dead } = await getInstance(d3, t3, ids[2]);
      assert.equal(dead.state, 'Stopped');
      assert.equal(dead.exit_code, null);
      assert.match(dead.exit_message, /without an exit report/);
      assert.match(d3.log, /re-adopted/);
      // Still usable: stop one gracefully, the other answers stat.
      const r = await d3.fetch(`/instances/${ids[0]}/stop`, { method: 'POST', token: t3 });
      assert.equal(r.status, 200);
      assert.equal((await r.json()).state, 'Stopped');
      const s = await d3.fetch(`/instances/${ids[1]}/stat?path=/bin/sh`, { token: t3 });
      assert.equal(s.status, 200);
      assert.equal((await s.json()).exists, true);
      // Logs continued across the restart.
      const lines = await readLogs(d3, t3, ids[1], { tail: 5 });
      assert.ok(lines.includes('alive'));
      for (const id of ids) assert.equal((await d3.fetch(`/instances/${id}`, { method: 'DELETE', token: t3 })).status, 204);
      for (const p of pids) assert.equal(processAlive(p), false);
    } finally { await d3.stop(); }
  } finally {
    if (d2.child.exitCode === null && d2.child.signalCode === null) await d2.stop();
  }
});

test('a daemon killed during a guest\'s boot: the next one learns the program started and shows Running', { timeout: 180000 }, async () => {
  const d2 = await startDaemon();
  const t2 = d2.token();
  try {
    await pull(d2, t2, { name: image });
    await waitImage(d2, t2, image);
    const c = await createInstance(d2, t2, { name: 'booting', image, ...small, cmd: ['sh', '-c', 'while :; do echo up; sleep 0.5; done'] });
    assert.equal(c.status, 201);
    assert.equal(c.body.state, 'Initializing', 'the create answers before the guest is up');
    const pid = vmmPid(d2, c.body.id);
    await d2.kill9();
    // The guest finishes booting and starts the program while no host listens.
    await new Promise((r) => setTimeout(r, 6000));
    assert.ok(processAlive(pid));
    const d3 = await startDaemon({ env: { DATA_DIR: d2.dataDir } });
    try {
      const t3 = d3.token();
      const { inst } = await waitState(d3, t3, c.body.id, ['Running'], { timeoutMs: 20000 });
      assert.equal(inst.state, 'Running');
      const oplog = readFileSync(join(d2.dataDir, 'instances', c.body.id, 'logs/hypeman.log'), 'utf8');
      assert.match(oplog, /msg="program started" pid=\d+ guest_uptime_ms=0 via=hello/);
      assert.equal((await d3.fetch(`/instances/${c.body.id}`, { method: 'DELETE', token: t3 })).status, 204);
    } finally { await d3.stop(); }
  } finally {
    if (d2.child.exitCode === null && d2.child.signalCode === null) await d2.stop();
  }
});

test('a guest that prints without end: its console log is capped and rotated (LOG_MAX_BYTES)', { timeout: 180000 }, async () => {
  const cap = 256 * 1024;
  const d2 = await startDaemon({ env: { LOG_MAX_BYTES: '256KB' } });
  const t2 = d2.token();
  try {
    await pull(d2, t2, { name: image });
    await waitImage(d2, t2, image);
    const line = 'x'.repeat(100);
    const c = await createInstance(d2, t2, { name: 'chatty', image, ...small, cmd: ['sh', '-c', `i=0; while :; do i=$((i+1)); echo "$i ${line}"; done`] });
    assert.equal(c.status, 201);
    const logs = join(d2.dataDir, 'instances', c.body.id, 'logs');
    const size = (f) => (existsSync(join(logs, f)) ? statSync(join(logs, f)).size : 0);
    let rotated = false;
    for (let i = 0; i < 300 && !rotated; i++) {
      await new Promise((r) => setTimeout(r, 100));
      rotated = existsSync(join(logs, 'app.log.1'));
    }
    assert.ok(rotated, `app.log never rotated (${size('app.log')} bytes)`);
    // It keeps printing; the files stay near the cap (one check interval's output over it at most).
    let most = 0;
    for (let i = 0; i < 40; i++) {
      most = Math.max(most, size('app.log'), size('app.log.1'));
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(most < cap + 2 * 1024 * 1024, `a log reached ${most} bytes with a cap of ${cap}`);
    assert.ok(statSync(join(logs, 'app.log.1')).size >= cap, 'the rotated file holds the old output');
    // The logs API still answers from the current file (the tail, then what came since).
    const tail = await readLogs(d2, t2, c.body.id, { tail: 3 });
    assert.ok(tail.length >= 3, tail.length);
    assert.match(tail[1], new RegExp(`^\\d+ ${line}$`));
    assert.match(d2.log, /msg="log rotated" id=\S+ file=logs\/app.log/);
  } finally {
    await d2.stop();
  }
});

test('a daemon killed in a delete or a create: the next start finishes the delete and undoes the create', { timeout: 180000 }, async () => {
  const d2 = await startDaemon();
  const t2 = d2.token();
  const sql = (q) => execFileSync('sqlite3', [join(d2.dataDir, 'hypeman.db'), q], { encoding: 'utf8' });
  try {
    await pull(d2, t2, { name: image });
    await waitImage(d2, t2, image);
    const ids = [];
    for (const name of ['half-deleted', 'half-created', 'kept']) {
      const c = await createInstance(d2, t2, { name, image, ...small, cmd: ['true'] });
      assert.equal(c.status, 201);
      ids.push(c.body.id);
    }
    for (const id of ids) await waitState(d2, t2, id, ['Stopped']);
    await d2.kill9();
    const dir = (id) => join(d2.dataDir, 'instances', id);
    // A delete that had moved the folder aside (its first step) when the daemon died.
    renameSync(dir(ids[0]), join(d2.dataDir, 'instances', '.deleted', ids[0]));
    // A create that had its row and part of its folder when the daemon died.
    sql(`UPDATE instances SET phase = 'Created', vmm_pid = 0, started_at = NULL WHERE id = '${ids[1]}'`);
    rmSync(join(dir(ids[1]), 'overlay.ext4'));
    const d3 = await startDaemon({ env: { DATA_DIR: d2.dataDir } });
    try {
      const t3 = d3.token();
      assert.equal((await getInstance(d3, t3, ids[0])).status, 404);
      assert.equal((await getInstance(d3, t3, ids[1])).status, 404);
      assert.equal((await getInstance(d3, t3, ids[2])).body.state, 'Stopped');
      assert.ok(!existsSync(dir(ids[1])), 'the partial folder is gone');
      assert.deepEqual(readdirSync(join(d2.dataDir, 'instances', '.deleted')), []);
      assert.match(d3.log, /msg="finished an interrupted delete" id=/);
      assert.match(d3.log, /msg="undid an interrupted create" id=/);
      assert.equal(sql('SELECT count(*) FROM instances').trim(), '1');
      // Their names are free again.
      const again = await createInstance(d3, t3, { name: 'half-created', image, ...small, cmd: ['true'] });
      assert.equal(again.status, 201, JSON.stringify(again.body));
    } finally { await d3.stop(); }
  } finally {
    if (d2.child.exitCode === null && d2.child.signalCode === null) await d2.stop();
  }
});

test('a daemon restarted over instances that exited on their own starts and shows them Stopped', { timeout: 180000 }, async () => {
  const d2 = await startDaemon();
  const t2 = d2.token();
  try {
    await pull(d2, t2, { name: image });
    await waitImage(d2, t2, image);
    const c = await createInstance(d2, t2, { name: 'exits', image, ...small, cmd: ['sh', '-c', 'exit 3'] });
    assert.equal(c.status, 201);
    // Stats polled while the VM exits (its /proc files vanish under the read).
    const e = await createInstance(d2, t2, { name: 'exits-late', image, ...small, cmd: ['sh', '-c', 'sleep 1; exit 0'] });
    assert.equal(e.status, 201);
    for (let i = 0; i < 300; i++) {
      const r = await d2.fetch(`/instances/${e.body.id}/stats`, { token: t2 });
      assert.ok([200, 409].includes(r.status), `stats: ${r.status}`);
      await r.arrayBuffer();
      if ((await getInstance(d2, t2, e.body.id)).body.state === 'Stopped') break;
    }
    for (const id of [c.body.id, e.body.id]) await waitState(d2, t2, id, ['Stopped']);
    assert.ok(!existsSync(join(d2.dataDir, 'instances', c.body.id, 'run/vmm.pid')), 'QEMU removed its pid file');
    // Their RAM files are freed with the VM, not kept until the instance is deleted.
    const shm = readdirSync('/dev/shm').filter((n) => n.startsWith('hypeman-'));
    for (const id of [c.body.id, e.body.id]) {
      assert.deepEqual(shm.filter((n) => existsSync(join('/dev/shm', n, `${id}.ram`))), [], `${id}.ram freed`);
      assert.ok(!existsSync(join(d2.dataDir, 'instances', id, 'memory.ram')));
    }
    await d2.stop({ keepData: true });
    const d3 = await startDaemon({ env: { DATA_DIR: d2.dataDir } });
    try {
      const t3 = d3.token();
      const { body } = await getInstance(d3, t3, c.body.id);
      assert.equal(body.state, 'Stopped');
      assert.equal(body.exit_code, 3);
      assert.equal((await getInstance(d3, t3, e.body.id)).body.exit_code, 0);
      for (const id of [c.body.id, e.body.id]) assert.equal((await d3.fetch(`/instances/${id}`, { method: 'DELETE', token: t3 })).status, 204);
    } finally { await d3.stop(); }
  } finally {
    if (d2.child.exitCode === null && d2.child.signalCode === null) await d2.stop();
  }
});

test('a guest that forges its exit record cannot forge log lines or null the exit message', { timeout: 120000 }, async () => {
  // What a root process in the guest can do: write its own exit record on the
  // config disk (the last 4 KiB of /dev/vda) and power off before init writes one.
  const msg = Buffer.concat([Buffer.from('forged" injected=1\nts=2000-01-01T00:00:00Z msg=evil '), Buffer.from([0xff, 0xfe]), Buffer.from(' end')]);
  const rec = Buffer.concat([Buffer.from(`HYPEMAN-EXIT 1\ncode 1:7\nmessage ${msg.length}:`), msg, Buffer.from('\nend 0:\n')]);
  const fmt = [...rec].map((b) => (/[A-Za-z0-9 .:=-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `\\${b.toString(8).padStart(3, '0')}`)).join('');
  const script = `printf '${fmt}' | dd of=/dev/vda bs=4096 seek=255 conv=notrunc 2>/dev/null; sync; echo o > /proc/sysrq-trigger; sleep 30`;
  const c = await createInstance(d, token, { name: 'forger', image, ...small, cmd: ['sh', '-c', script] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const { inst: body } = await waitState(d, token, c.body.id, ['Stopped']);
  assert.equal(body.exit_code, 7, JSON.stringify(body));
  assert.equal(typeof body.exit_message, 'string', 'the message is a string, not null');
  assert.equal(body.exit_message, 'forged" injected=1\nts=2000-01-01T00:00:00Z msg=evil \ufffd\ufffd end');
  const oplog = readFileSync(join(d.dataDir, 'instances', c.body.id, 'logs/hypeman.log'), 'utf8').split('\n');
  assert.ok(!oplog.some((l) => l.startsWith('ts=2000-01-01')), 'no forged line');
  const stopped = oplog.find((l) => l.includes('msg="vm stopped"'));
  assert.ok(stopped.includes('exit_message="forged\\" injected=1\\nts=2000-01-01T00:00:00Z msg=evil \ufffd\ufffd end"'), stopped);
  assert.equal((await d.fetch(`/instances/${c.body.id}`, { method: 'DELETE', token })).status, 204);
});

test('8 clients create and delete in parallel: no QEMU, disk, socket or row left', { timeout: 300000 }, async () => {
  const before = readdirSync(join(d.dataDir, 'instances')).length;
  const made = [];
  const client = async (k) => {
    for (let round = 0; round < 2; round++) {
      const c = await createInstance(d, token, { name: `par-${k}-${round}`, image, size: '128MB', vcpus: 1, overlay_size: '256MB', cmd: ['sleep', '30'] });
      assert.equal(c.status, 201, JSON.stringify(c.body));
      made.push(c.body.id);
      const pid = vmmPid(d, c.body.id);
      await new Promise((r) => setTimeout(r, 100 * ((k + round) % 4)));
      const del = await d.fetch(`/instances/${c.body.id}`, { method: 'DELETE', token });
      assert.equal(del.status, 204);
      if (pid) assert.equal(processAlive(pid), false);
    }
  };
  await Promise.all([...Array(8).keys()].map(client));
  assert.equal(readdirSync(join(d.dataDir, 'instances')).length, before);
  const list = await (await d.fetch('/instances', { token })).json();
  assert.ok(!list.some((i) => i.name.startsWith('par-')));
  assert.equal(made.length, 16);
  for (const id of made) {
    assert.deepEqual(processesWith(`instances/${id}/`), [], `no QEMU of ${id} runs`);
  }
});
