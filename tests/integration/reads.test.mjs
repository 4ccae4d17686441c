// Reads are served from published state: with ten guests running, GET
// /instances, GET /instances/{id} and /wait talk to no VMM (GET /metrics
// counts every QMP connection and command the daemon makes), and they keep
// answering while another instance is forked from running or goes to
// standby (the operation holds its VM, not the service). The latencies are
// printed for the record; timing goals live in bench/, not here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { createInstance, waitState } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

const N = 10;
let reg, d, token, ids = [];
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon({ env: { OVERSUB_CPU: '8' } }); // eleven 1-vCPU guests on two cores
  token = d.token();
  const image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  assert.equal((await waitImage(d, token, image)).img.status, 'ready');
  for (let i = 0; i < N; i++) {
    const c = await createInstance(d, token, { name: `reader-${i}`, image, size: '128MB', vcpus: 1, cmd: ['sleep', '100000'] });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    ids.push(c.body.id);
  }
  for (const id of ids) await waitState(d, token, id, ['Running'], { timeoutMs: 180000 });
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

async function metrics() {
  const r = await d.fetch('/metrics', { token });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain/);
  const m = {};
  for (const line of (await r.text()).split('\n')) {
    const x = /^([a-z_]+(?:\{[^}]*\})?) (\d+)$/.exec(line);
    if (x) m[x[1]] = Number(x[2]);
  }
  return m;
}

async function timed(path) {
  const t0 = performance.now();
  const r = await d.fetch(path, { token });
  const body = await r.json();
  return { status: r.status, body, ms: performance.now() - t0 };
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

test('list, get and wait of ten running instances make no QMP connection and send no command', async () => {
  const m0 = await metrics();
  assert.equal(m0['hypeman_instances{state="Running"}'], N);
  assert.ok(m0.hypeman_vmm_control_connections_total > 0, 'the boots did talk to QEMU');
  for (let i = 0; i < 30; i++) {
    const r = await timed('/instances');
    assert.equal(r.status, 200);
    assert.equal(r.body.filter((x) => x.state === 'Running').length, N);
  }
  for (const id of ids) {
    for (let i = 0; i < 5; i++) assert.equal((await timed(`/instances/${id}`)).body.state, 'Running');
    const w = await timed(`/instances/${id}/wait?state=Running&timeout=1s`);
    assert.equal(w.body.state, 'Running');
  }
  const m1 = await metrics();
  assert.equal(m1.hypeman_vmm_control_connections_total, m0.hypeman_vmm_control_connections_total, 'QMP connections during reads');
  assert.equal(m1.hypeman_vmm_control_commands_total, m0.hypeman_vmm_control_commands_total, 'QMP commands during reads');
});

// Lists in a loop while op() runs; every one answers, and the source's state
// is only ever one the operation really passes through.
async function listWhile(op, sourceId, allowed) {
  let done = false;
  const lat = [];
  const seen = new Set();
  const p = op().finally(() => { done = true; });
  while (!done) {
    const r = await timed('/instances');
    assert.equal(r.status, 200);
    lat.push(r.ms);
    seen.add(r.body.find((x) => x.id === sourceId).state);
    const g = await timed(`/instances/${ids[N - 1]}`);
    assert.equal(g.body.state, 'Running');
    lat.push(g.ms);
  }
  const res = await p;
  for (const s of seen) assert.ok(allowed.includes(s), `source seen ${s} (${[...seen]})`);
  return { res, lat, seen: [...seen] };
}

test('reads answer while another instance forks from running, then while one goes to standby', async () => {
  const fork = await listWhile(async () => {
    const r = await d.fetch(`/instances/${ids[0]}/fork`, { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'reader-fork', from_running: true, target_state: 'Stopped' }) });
    return { status: r.status, body: await r.json() };
  }, ids[0], ['Running', 'Paused']);
  assert.equal(fork.res.status, 201, JSON.stringify(fork.res.body));
  const sb = await listWhile(async () => {
    const r = await d.fetch(`/instances/${ids[1]}/standby`, { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: '{}' });
    return { status: r.status, body: await r.json() };
  }, ids[1], ['Running', 'Paused', 'Standby']);
  assert.equal(sb.res.status, 200, JSON.stringify(sb.res.body));
  assert.equal(sb.res.body.state, 'Standby');
  for (const [what, x] of [['fork', fork], ['standby', sb]])
    console.log(`# reads during ${what}: n=${x.lat.length} p50=${pct(x.lat, 50).toFixed(1)} ms p99=${pct(x.lat, 99).toFixed(1)} ms; source seen ${x.seen.join(', ')}`);
});
