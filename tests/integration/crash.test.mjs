// The kill -9 matrix: the daemon is killed (SIGKILL, as a crash) at several
// moments of each of pull, create, standby, fork, snapshot and delete, and
// the next daemon must find nothing half-made and nothing lost. Inside a
// network namespace this test makes (`hmc-*`: the daemon, its bridge, TAPs
// and guests; deleted at the end).
//
// After each restart:
//   - every image is absent or ends ready (a pull that died is taken up
//     again by the next daemon, never "pulling" forever);
//   - every instance is in a settled state (never Unknown), each Running one
//     runs the VMM its run/vmm.pid names, and no other QEMU of this data dir
//     runs; no TAP is left without a Running instance; no instance folder
//     without its row, and no row of a create that did not finish;
//   - the counter instance that was there before is still there, and still
//     counts on (after a restore where it was left in standby);
//   - each operation can be done again and works.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startDaemon } from '../harness/daemon.mjs';
import { pulledDataDir, waitImage, enc } from '../harness/images.mjs';
import { getInstance, waitState, readLogs, vmmPid, processesWith } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

const tag = randomBytes(3).toString('hex');
const NS = `hmc-${tag}`;
const NETENV = { SUBNET_CIDR: '10.129.0.0/16', BRIDGE_NAME: 'hmbrc', DNS_SERVER: '10.129.0.1' };
const DELAYS_MS = [0, 30, 150]; // after the request is sent
const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const taps = () => ip('-n', NS, '-o', 'link', 'show').split('\n').map((l) => l.split(': ')[1]?.split('@')[0]).filter((n) => n?.startsWith('hm-'));

let reg, d, token, image, env, counter, opts;
before(async () => {
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  ip('netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  reg = await startRegistry();
  await pushFixtures(reg);
  image = `${reg.host}/test/busybox:latest`;
  env = { ...NETENV, DATA_DIR: await pulledDataDir([image]) };
  opts = { netns: NS, env };
  d = await startDaemon(opts);
  token = d.token();
});
after(async () => {
  try {
    await d?.stop();
  } finally {
    await reg?.stop();
    try { ip('netns', 'del', NS); } catch { /* already gone */ }
  }
});

async function api(method, path, body) {
  const r = await d.fetch(path, { method, token, ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}
const COUNTER = ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo n=$i; sleep 0.2; done'];
async function lastCount(id) {
  const c = (await readLogs(d, token, id, { tail: 50 })).map((l) => /^n=(\d+)$/.exec(l.trim())).filter(Boolean);
  return c.length ? Number(c.at(-1)[1]) : 0;
}
async function countsOn(id) {
  const from = await lastCount(id);
  for (let i = 0; i < 150; i++) {
    if ((await lastCount(id)) > from) return;
    await sleep(100);
  }
  assert.fail(`${id} does not count on from ${from}`);
}

// Send the request, kill the daemon delayMs later (the answer, if any, is
// dropped), start the next daemon.
async function crashDuring(method, path, body, delayMs) {
  const p = d.fetch(path, { method, token, ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}) }).catch(() => null);
  await sleep(delayMs);
  await d.kill9();
  await p;
  d = await startDaemon(opts);
  token = d.token();
}

// What must hold after any crash: see the top of the file.
async function checkSettled(what) {
  const list = await api('GET', '/instances');
  assert.equal(list.status, 200);
  const insts = list.body;
  const running = new Set();
  for (const i of insts) {
    assert.ok(['Running', 'Stopped', 'Standby', 'Created', 'Initializing'].includes(i.state), `${what}: ${i.name} is ${i.state}`);
    if (i.state === 'Running' || i.state === 'Initializing') running.add(i.id);
  }
  // QEMUs of this data dir: only those of Running instances (and base builds).
  const pids = new Set([...running].map((id) => vmmPid(d, id)));
  for (const pid of processesWith(opts.env.DATA_DIR)) {
    let cmd = '';
    try { cmd = execFileSync('cat', [`/proc/${pid}/cmdline`], { encoding: 'utf8' }).replaceAll('\0', ' '); } catch { continue; }
    if (!/qemu-system/.test(cmd) || cmd.includes(`${opts.env.DATA_DIR}/bases/`)) continue;
    assert.ok(pids.has(pid), `${what}: a QEMU no Running instance owns: ${cmd.slice(0, 200)}`);
  }
  const ids = new Set(insts.map((i) => i.id));
  for (const t of taps()) assert.ok([...running].some((id) => t === `hm-${id.slice(0, 12)}`), `${what}: TAP ${t} without a Running instance`);
  const dir = join(opts.env.DATA_DIR, 'instances');
  for (const e of existsSync(dir) ? readdirSync(dir) : []) if (!e.startsWith('.')) assert.ok(ids.has(e), `${what}: folder instances/${e} without its instance`);
  // Images: ready or absent.
  // Images: a pull that died is taken up again by the next daemon; it ends.
  for (const im of (await api('GET', '/images')).body) {
    if (im.status !== 'ready' && im.status !== 'failed') await waitImage(d, token, im.name);
    const now = (await api('GET', `/images/${enc(im.name)}`)).body;
    assert.equal(now.status, 'ready', `${what}: image ${im.name} is ${now.status}: ${now.error ?? ''}`);
  }
  // The counter is there and counts (woken where it was left in standby).
  if (!counter) return insts;
  const c = await getInstance(d, token, counter.id);
  assert.equal(c.status, 200, `${what}: the counter is lost`);
  if (c.body.state === 'Standby') assert.equal((await api('POST', `/instances/${counter.id}/restore`)).status, 200, `${what}: restore`);
  else assert.equal(c.body.state, 'Running', `${what}: the counter is ${c.body.state}`);
  await countsOn(counter.id);
  return insts;
}

const byName = (insts, name) => insts.find((i) => i.name === name);

test('kill -9 during create, standby, fork, snapshot and delete: nothing half-made, nothing lost', async () => {
  const c = await api('POST', '/instances', { name: 'counter', image, size: '256MB', vcpus: 1, cmd: COUNTER });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  counter = c.body;
  await waitState(d, token, counter.id, ['Running']);
  await countsOn(counter.id);

  for (const ms of DELAYS_MS) {
    // create: absent, or there and usable
    await crashDuring('POST', '/instances', { name: `made-${ms}`, image, size: '256MB', vcpus: 1, cmd: COUNTER }, ms);
    let insts = await checkSettled(`create +${ms} ms`);
    let m = byName(insts, `made-${ms}`);
    if (m) {
      if (m.state !== 'Running') assert.equal((await api('POST', `/instances/${m.id}/start`)).status, 200);
      await waitState(d, token, m.id, ['Running']);
    } else {
      const again = await api('POST', '/instances', { name: `made-${ms}`, image, size: '256MB', vcpus: 1, cmd: COUNTER });
      assert.equal(again.status, 201, JSON.stringify(again.body));
      m = again.body;
      await waitState(d, token, m.id, ['Running']);
    }
    await countsOn(m.id);

    // standby of the counter: Running or Standby after, restorable
    await crashDuring('POST', `/instances/${counter.id}/standby`, {}, ms);
    await checkSettled(`standby +${ms} ms`);

    // fork of the running counter: the fork is whole or absent
    await crashDuring('POST', `/instances/${counter.id}/fork`, { name: `fork-${ms}`, from_running: true }, ms);
    insts = await checkSettled(`fork +${ms} ms`);
    const f = byName(insts, `fork-${ms}`);
    if (f) {
      if (f.state === 'Standby') assert.equal((await api('POST', `/instances/${f.id}/restore`)).status, 200);
      else if (f.state === 'Stopped') assert.equal((await api('POST', `/instances/${f.id}/start`)).status, 200);
      await waitState(d, token, f.id, ['Running']);
      assert.equal((await api('DELETE', `/instances/${f.id}`)).status, 204);
    }

    // snapshot of the counter: whole (and usable for a fork) or absent
    await crashDuring('POST', `/instances/${counter.id}/snapshots`, { kind: 'Standby', name: `snap-${ms}` }, ms);
    await checkSettled(`snapshot +${ms} ms`);
    const snaps = (await api('GET', '/snapshots')).body;
    const s = snaps.find((x) => x.name === `snap-${ms}`);
    if (s) {
      const sf = await api('POST', `/snapshots/${s.id}/fork`, { name: `from-snap-${ms}` });
      assert.equal(sf.status, 201, `fork of a snapshot a crash left: ${JSON.stringify(sf.body)}`);
      assert.equal((await api('DELETE', `/instances/${sf.body.id}`)).status, 204);
      assert.equal((await api('DELETE', `/snapshots/${s.id}`)).status, 204);
    }

    // delete: gone, or there and deletable
    await crashDuring('DELETE', `/instances/${m.id}`, undefined, ms);
    insts = await checkSettled(`delete +${ms} ms`);
    if (byName(insts, `made-${ms}`)) assert.equal((await api('DELETE', `/instances/${m.id}`)).status, 204);
    assert.ok(!existsSync(join(env.DATA_DIR, 'instances', m.id)) || byName((await api('GET', '/instances')).body, `made-${ms}`) === undefined);
  }
});

test('kill -9 during a pull: the image is absent or its pull is taken up again and ends ready', async () => {
  // A daemon outside the namespace, without a network: the registry is on this host's loopback.
  await d.stop();
  counter = null;
  opts = { env: { DATA_DIR: mkdtempSync(join(tmpdir(), 'hypeman-test-')) } };
  d = await startDaemon(opts);
  token = d.token();
  const name = `${reg.host}/test/layers:latest`;
  for (const ms of DELAYS_MS) {
    await crashDuring('POST', '/images', { name }, ms);
    await checkSettled(`pull +${ms} ms`);
    const g = await api('GET', `/images/${enc(name)}`);
    if (g.status === 404) { // the crash came before the pull was recorded: pull it now
      const p = await api('POST', '/images', { name });
      assert.ok([200, 201, 202].includes(p.status), JSON.stringify(p.body));
      await waitImage(d, token, name);
    }
    assert.equal((await api('GET', `/images/${enc(name)}`)).body.status, 'ready');
    assert.equal((await api('DELETE', `/images/${enc(name)}`)).status, 204);
  }
});
