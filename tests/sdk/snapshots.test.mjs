// The official @onkernel/hypeman SDK through standby, restore, fork and
// snapshots on real QEMU guests. The guest program keeps a counter in
// memory and prints it with a token it drew once at start:
//   tick <token> <n> end
// so a guest whose memory survived goes on with the same token and the
// next n, while one that booted (or ran the program) again would show a new
// token and start over at 1. Every check on the counter reads the app log
// through client.instances.logs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Hypeman from '@onkernel/hypeman';
import { startDaemon } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, client, image;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  const token = d.token();
  client = new Hypeman({ baseURL: d.url, apiKey: token, maxRetries: 0, timeout: 120000 });
  image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  const { img } = await waitImage(d, token, image);
  assert.equal(img.status, 'ready', img.error);
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

const PROGRAM = ['sh', '-c',
  'r=$(cat /proc/sys/kernel/random/uuid); i=0; while :; do i=$((i+1)); echo "tick $r $i end"; sleep 0.2; done'];
// Only whole lines count: a line cut by a pause is finished after the restore.
const TICK = /^tick (\S+) (\d+) end\r?$/;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function logLines(id) {
  const stream = await client.instances.logs(id, { tail: 1000000, source: 'app' });
  const lines = [];
  for await (const line of stream) lines.push(line);
  return lines;
}
const ticksOf = (lines) => lines.map((l) => TICK.exec(l)).filter(Boolean).map((m) => ({ token: m[1], n: Number(m[2]) }));
const maxN = (ticks) => ticks.reduce((m, t) => Math.max(m, t.n), 0);
const show = (lines) => lines.slice(-40).join('\n');

// Poll the app log until pred(ticks, lines) holds; returns { lines, ticks }.
async function ticksUntil(id, pred, what, ms = 60000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const lines = await logLines(id);
    const ticks = ticksOf(lines);
    if (pred(ticks, lines)) return { lines, ticks };
    if (Date.now() > deadline) assert.fail(`${what}: not in the app log of ${id} after ${ms} ms; its end:\n${show(lines)}`);
    await sleep(200);
  }
}

// The one token the program printed since it first started, checking that
// the counter never restarted, repeated or lost a line: 1, 2, ..., N.
function oneRun(lines, what) {
  const ticks = ticksOf(lines);
  assert.ok(ticks.length > 0, `${what}: no tick lines:\n${show(lines)}`);
  const token = ticks[0].token;
  assert.ok(ticks.every((t) => t.token === token), `${what}: the program started again:\n${show(lines)}`);
  ticks.forEach((t, i) => assert.equal(t.n, i + 1, `${what}: line ${i + 1} of the counter reads ${t.n}:\n${show(lines)}`));
  return token;
}

// After a restore from memory captured when the counter was between lo and
// hi (the highest whole lines seen before and after the capture), the first
// line printed after the restore is lo+1 .. hi+2: hi+1 if the guest was
// sleeping, or hi+2 when the line for hi+1 was half written at the pause.
// `from` is the log's length just before the restore.
async function resumed(id, from, token, lo, hi, what) {
  const { lines, ticks } = await ticksUntil(id, (_, ls) => ticksOf(ls.slice(from)).length > 0, what);
  const first = ticksOf(lines.slice(from))[0];
  assert.equal(first.token, token, `${what}: a new run of the program, not the saved one:\n${show(lines)}`);
  assert.ok(first.n > lo && first.n <= hi + 2, `${what}: resumed at ${first.n}, expected ${lo + 1}..${hi + 2}:\n${show(lines)}`);
  return { lines, ticks, first };
}

async function conflict(p, what) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof Hypeman.ConflictError, `${what}: ${e}`);
    assert.equal(e.status, 409, what);
    assert.equal(typeof e.error?.code, 'string', `${what}: ${JSON.stringify(e.error)}`);
    assert.equal(typeof e.error?.message, 'string', `${what}: ${JSON.stringify(e.error)}`);
    return true;
  }, what);
}
const notFound = (p, what) => assert.rejects(p, (e) => e instanceof Hypeman.NotFoundError && e.status === 404, what);

async function boot(name, made) {
  const inst = await client.instances.create({ name, image, size: '256MB', vcpus: 1, cmd: PROGRAM });
  made.add(inst.id);
  const w = await client.instances.wait(inst.id, { state: 'Running', timeout: '90s' });
  assert.equal(w.state, 'Running');
  const { lines } = await ticksUntil(inst.id, (t) => maxN(t) >= 3, `${name}: the counter reaches 3`);
  return { inst, token: oneRun(lines, name) };
}

// Delete what a test made, whatever happened to it (harness stop() would
// delete the instances too, but not the snapshots).
async function cleanUp(instances, snapshots) {
  for (const id of snapshots) await client.snapshots.delete(id).catch(() => {});
  for (const id of instances) await client.instances.delete(id).catch(() => {});
}

test('standby -> restore keeps memory; fork from running, standby and stopped; wrong states are 409', { timeout: 300000 }, async () => {
  const made = new Set();
  const snaps = new Set();
  try {
    const { inst: src, token } = await boot('snap-src', made);

    // Running: restore, and fork without from_running, are refused.
    // Asking for the state it is in answers the instance, as upstream does.
    assert.equal((await client.instances.restore(src.id)).state, 'Running', 'restore of a Running instance');
    await conflict(client.instances.fork(src.id, { name: 'snap-nope' }), 'fork of a Running source without from_running');
    await notFound(client.instances.get('snap-nope'), 'the refused fork left no instance');

    // Standby: the VM is gone, its memory saved; the counter stands still.
    const sb = await client.instances.standby(src.id);
    assert.equal(sb.state, 'Standby');
    assert.equal(sb.has_snapshot, true);
    const got = await client.instances.get(src.id);
    assert.equal(got.state, 'Standby');
    assert.equal(got.has_snapshot, true);
    assert.equal((await client.instances.standby(src.id)).state, 'Standby', 'standby of a Standby instance');
    await conflict(client.instances.standby(src.id, { compression: { enabled: true } }), 'compressing a standby after the fact');
    let lines = await logLines(src.id);
    const L = maxN(ticksOf(lines));
    await sleep(1000);
    assert.equal(maxN(ticksOf(await logLines(src.id))), L, 'the counter moved while in standby');

    // Restore: the same run of the program goes on from where it was.
    let from = (await logLines(src.id)).length;
    const rs = await client.instances.restore(src.id);
    assert.equal(rs.state, 'Running');
    assert.equal(rs.id, src.id);
    await resumed(src.id, from, token, L, L, 'restore');
    ({ lines } = await ticksUntil(src.id, (t) => maxN(t) >= L + 3, 'the counter after restore'));
    assert.equal(oneRun(lines, 'source after restore'), token);
    assert.equal((await client.instances.get(src.id)).state, 'Running');

    // Fork from Running: a second copy of the same memory; the source keeps running.
    const live = await client.instances.fork(src.id, { name: 'snap-live', from_running: true });
    made.add(live.id);
    assert.equal(live.state, 'Running');
    assert.equal(live.name, 'snap-live');
    assert.notEqual(live.id, src.id);
    assert.equal(live.image, src.image);
    assert.equal((await client.instances.get(src.id)).state, 'Running');
    const atFork = maxN(ticksOf(await logLines(src.id)));
    // Anything the fork's log holds from the source is at most atFork, so a
    // higher n with the source's token was counted by the fork from its copy.
    ({ lines } = await ticksUntil(live.id, (t) => t.some((x) => x.token !== token || x.n > atFork), 'the fork counts on'));
    assert.ok(ticksOf(lines).every((t) => t.token === token), `the fork ran the program again:\n${show(lines)}`);
    await ticksUntil(src.id, (t) => maxN(t) > atFork + 2, 'the source counts on after the fork');
    assert.equal(oneRun(await logLines(src.id), 'source after fork'), token);
    await conflict(client.instances.fork(src.id, { name: 'snap-live', from_running: true }), 'fork to a taken name');
    await conflict(client.instances.fork(live.id, { name: 'snap-src', from_running: true }), 'fork to the source\'s name');

    // Fork from Standby: the fork is in Standby too, and restores to the saved run.
    await client.instances.standby(src.id);
    const Lsb = maxN(ticksOf(await logLines(src.id)));
    const warm = await client.instances.fork(src.id, { name: 'snap-sb' });
    made.add(warm.id);
    assert.equal(warm.state, 'Standby');
    assert.equal(warm.has_snapshot, true);
    assert.notEqual(warm.id, src.id);
    assert.equal((await client.instances.get(src.id)).state, 'Standby');
    // A Standby source takes a Standby snapshot (and stays in Standby), not a Stopped one.
    const fromSb = await client.instances.snapshots.create(src.id, { kind: 'Standby', name: 'from-standby' });
    snaps.add(fromSb.id);
    assert.equal(fromSb.kind, 'Standby');
    assert.equal(fromSb.source_instance_id, src.id);
    assert.equal((await client.instances.get(src.id)).state, 'Standby');
    await conflict(client.instances.snapshots.create(src.id, { kind: 'Stopped' }), 'Stopped snapshot of a Standby instance');
    await client.snapshots.delete(fromSb.id);
    snaps.delete(fromSb.id);
    from = (await logLines(warm.id)).length;
    const wr = await client.instances.restore(warm.id);
    assert.equal(wr.state, 'Running');
    await resumed(warm.id, from, token, Lsb, Lsb, 'restore of the fork made in standby');

    // Stopped: standby and restore are refused; a fork is Stopped and boots afresh.
    await client.instances.restore(src.id);
    const st = await client.instances.stop(src.id);
    assert.equal(st.state, 'Stopped');
    await conflict(client.instances.standby(src.id), 'standby of a Stopped instance');
    await conflict(client.instances.restore(src.id), 'restore of a Stopped instance');
    const cold = await client.instances.fork(src.id, { name: 'snap-cold' });
    made.add(cold.id);
    assert.equal(cold.state, 'Stopped');
    assert.notEqual(cold.id, src.id);
    await client.instances.start(cold.id, {});
    await client.instances.wait(cold.id, { state: 'Running', timeout: '90s' });
    ({ lines } = await ticksUntil(cold.id, (t) => t.some((x) => x.token !== token && x.n >= 2), 'the stopped fork boots and counts from 1'));
    const fresh = ticksOf(lines).filter((x) => x.token !== token);
    assert.deepEqual(fresh.slice(0, 2).map((x) => x.n), [1, 2], show(lines));

    for (const id of [live.id, warm.id, cold.id, src.id]) {
      await client.instances.delete(id);
      made.delete(id);
      await notFound(client.instances.get(id), `deleted instance ${id}`);
    }
  } finally {
    await cleanUp(made, snaps);
  }
});

test('snapshots: create, list, get, fork, restore in place, outlive their source, delete', { timeout: 300000 }, async () => {
  const made = new Set();
  const snaps = new Set();
  try {
    const { inst: base } = await boot('snap-base', made);
    const info = await client.instances.get(base.id);
    const before = await logLines(base.id);
    const token = oneRun(before, 'snap-base');
    const lo = maxN(ticksOf(before));

    // A Standby snapshot of a Running instance: the instance keeps running.
    const warm = await client.instances.snapshots.create(base.id, { kind: 'Standby', name: 'warm', tags: { purpose: 'sdk-test', n: '1' } });
    snaps.add(warm.id);
    const hi = maxN(ticksOf(await logLines(base.id)));
    assert.equal(typeof warm.id, 'string');
    assert.ok(warm.id.length > 0);
    assert.equal(warm.name, 'warm');
    assert.equal(warm.kind, 'Standby');
    assert.deepEqual(warm.tags, { purpose: 'sdk-test', n: '1' });
    assert.equal(warm.source_instance_id, base.id);
    assert.equal(warm.source_instance_name, 'snap-base');
    assert.equal(warm.source_hypervisor, info.hypervisor);
    assert.ok(!Number.isNaN(Date.parse(warm.created_at)), warm.created_at);
    assert.ok(Number.isInteger(warm.size_bytes) && warm.size_bytes > 0, JSON.stringify(warm));
    assert.ok(['none', 'compressing', 'compressed', 'error'].includes(warm.compression_state), JSON.stringify(warm));
    assert.equal((await client.instances.get(base.id)).state, 'Running');
    await ticksUntil(base.id, (t) => maxN(t) > hi + 2, 'the source counts on after the snapshot');

    await conflict(client.instances.snapshots.create(base.id, { kind: 'Standby', name: 'warm' }), 'a second snapshot named warm of the same source');
    await conflict(client.instances.snapshots.create(base.id, { kind: 'Stopped' }), 'Stopped snapshot of a Running instance');

    // get, and list with each filter.
    const g = await client.snapshots.get(warm.id);
    for (const k of ['id', 'name', 'kind', 'tags', 'source_instance_id', 'source_instance_name', 'source_hypervisor', 'created_at', 'size_bytes']) {
      assert.deepEqual(g[k], warm[k], k);
    }
    await notFound(client.snapshots.get('no-such-snapshot'), 'get of an unknown snapshot');
    const ids = (list) => list.map((s) => s.id);
    assert.deepEqual(ids(await client.snapshots.list({ source_instance_id: base.id })), [warm.id]);
    assert.ok(ids(await client.snapshots.list()).includes(warm.id));
    assert.deepEqual(ids(await client.snapshots.list({ name: 'warm' })), [warm.id]);
    assert.deepEqual(ids(await client.snapshots.list({ source_instance_id: base.id, kind: 'Standby' })), [warm.id]);
    assert.deepEqual(await client.snapshots.list({ source_instance_id: base.id, kind: 'Stopped' }), []);
    assert.deepEqual(await client.snapshots.list({ name: 'no-such-name' }), []);

    // Fork from the snapshot: Running by default, with the snapshot's memory.
    const child = await client.snapshots.fork(warm.id, { name: 'snap-child' });
    made.add(child.id);
    assert.equal(child.state, 'Running');
    assert.equal(child.name, 'snap-child');
    assert.notEqual(child.id, base.id);
    const now = maxN(ticksOf(await logLines(base.id)));
    const { lines: cl } = await ticksUntil(child.id, (t) => t.some((x) => x.token !== token || x.n > now), 'the snapshot\'s fork counts on');
    assert.ok(ticksOf(cl).every((t) => t.token === token), `the snapshot's fork ran the program again:\n${show(cl)}`);
    await conflict(client.snapshots.fork(warm.id, { name: 'snap-child' }), 'snapshot fork to a taken name');
    // Snapshot names are unique per source only.
    const childWarm = await client.instances.snapshots.create(child.id, { kind: 'Standby', name: 'warm' });
    snaps.add(childWarm.id);
    assert.equal(childWarm.source_instance_id, child.id);
    assert.deepEqual(ids(await client.snapshots.list({ source_instance_id: base.id })), [warm.id]);
    assert.deepEqual(new Set(ids(await client.snapshots.list({ name: 'warm' }))), new Set([warm.id, childWarm.id]));

    // Restore in place: refused while Running; once Stopped, the instance goes
    // back to the snapshot's moment (the counter rewinds) and runs.
    await conflict(client.instances.snapshots.restore(warm.id, { id: base.id }), 'in-place restore onto a Running instance');
    await client.instances.stop(base.id);
    await conflict(client.instances.snapshots.create(base.id, { kind: 'Standby' }), 'Standby snapshot of a Stopped instance');
    const cold = await client.instances.snapshots.create(base.id, { kind: 'Stopped', name: 'cold' });
    snaps.add(cold.id);
    assert.equal(cold.kind, 'Stopped');
    assert.equal(cold.source_instance_id, base.id);
    assert.deepEqual(ids(await client.snapshots.list({ source_instance_id: base.id, kind: 'Stopped' })), [cold.id]);
    assert.deepEqual(new Set(ids(await client.snapshots.list({ source_instance_id: base.id }))), new Set([warm.id, cold.id]));
    const stoppedAt = maxN(ticksOf(await logLines(base.id)));
    assert.ok(stoppedAt > hi + 2);
    const from = (await logLines(base.id)).length;
    const back = await client.instances.snapshots.restore(warm.id, { id: base.id });
    assert.equal(back.id, base.id);
    assert.equal(back.state, 'Running');
    await resumed(base.id, from, token, lo, hi, 'in-place restore of the Standby snapshot');

    // A fork of a Stopped snapshot is Stopped by default.
    const coldFork = await client.snapshots.fork(cold.id, { name: 'snap-cold-child' });
    made.add(coldFork.id);
    assert.equal(coldFork.state, 'Stopped');

    // The snapshots outlive their source.
    await client.instances.stop(base.id);
    await client.instances.delete(base.id);
    made.delete(base.id);
    await notFound(client.instances.get(base.id), 'the deleted source');
    assert.deepEqual(new Set(ids(await client.snapshots.list({ source_instance_id: base.id }))), new Set([warm.id, cold.id]));
    assert.equal((await client.snapshots.get(warm.id)).source_instance_name, 'snap-base');
    const orphan = await client.snapshots.fork(warm.id, { name: 'snap-orphan', target_state: 'Standby' });
    made.add(orphan.id);
    assert.equal(orphan.state, 'Standby');
    assert.equal(orphan.has_snapshot, true);
    const ofrom = (await logLines(orphan.id)).length;
    const up = await client.instances.restore(orphan.id);
    assert.equal(up.state, 'Running');
    await resumed(orphan.id, ofrom, token, lo, hi, 'restore of a fork made after the source was deleted');

    // Delete: 204, then 404 everywhere.
    const { response } = await client.snapshots.delete(warm.id).withResponse();
    assert.equal(response.status, 204);
    snaps.delete(warm.id);
    await notFound(client.snapshots.get(warm.id), 'get of a deleted snapshot');
    await notFound(client.snapshots.delete(warm.id), 'delete of a deleted snapshot');
    await notFound(client.snapshots.fork(warm.id, { name: 'snap-late' }), 'fork of a deleted snapshot');
    assert.deepEqual(ids(await client.snapshots.list({ source_instance_id: base.id })), [cold.id]);
    for (const id of [cold.id, childWarm.id]) {
      await client.snapshots.delete(id);
      snaps.delete(id);
    }
    assert.deepEqual(await client.snapshots.list({ source_instance_id: base.id }), []);
    assert.deepEqual(await client.snapshots.list({ source_instance_id: child.id }), []);
    // The instances made from the snapshot do not depend on it.
    assert.equal((await client.instances.get(orphan.id)).state, 'Running');
    assert.equal((await client.instances.get(child.id)).state, 'Running');

    for (const id of [child.id, coldFork.id, orphan.id]) {
      await client.instances.delete(id);
      made.delete(id);
      await notFound(client.instances.get(id), `deleted instance ${id}`);
    }
  } finally {
    await cleanUp(made, snaps);
  }
});
