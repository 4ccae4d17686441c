// Standby, restore and fork on real TCG guests with networking, inside a
// network namespace this test makes (`hms-*`: the daemon, its bridge, TAPs
// and guests; traffic goes only there and to loopback; deleted at the end).
// What is checked is what a user would see: a program's memory and files
// survive standby, the guest's clock is right after it, a fork answers on
// its own address with its own MAC and hostname, a restarted daemon can
// still wake a sleeping instance, and every failure leaves the instance
// restorable with nothing left running.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { pulledDataDir } from '../harness/images.mjs';
import { createInstance, getInstance, waitState, readLogs, vmmPid, processAlive } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

const tag = randomBytes(3).toString('hex');
const NS = `hms-${tag}`;
const NETENV = { SUBNET_CIDR: '10.124.0.0/16', BRIDGE_NAME: 'hmbr1', DNS_SERVER: '10.124.0.1' };

const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });
const inNs = (ns, ...a) => execFileSync('ip', ['netns', 'exec', ns, ...a], { encoding: 'utf8' });
const taps = () => ip('-n', NS, '-o', 'link', 'show').split('\n').map((l) => l.split(': ')[1]?.split('@')[0]).filter((n) => n?.startsWith('hm-'));

// GET url from inside the daemon's namespace (as the host would): the body, or null.
function fetchInNs(url) {
  try {
    return inNs(NS, process.execPath, '-e', `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(3000) }).then((r) => r.text()).then((t) => process.stdout.write(t), () => process.exit(3))`);
  } catch { return null; }
}
async function fetchRetry(url) {
  for (let i = 0; i < 50; i++) {
    const b = fetchInNs(url);
    if (b !== null) return b;
    await new Promise((r) => setTimeout(r, 200));
  }
  return null;
}

let reg, d, token, image, env;
before(async () => {
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  inNs(NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  reg = await startRegistry();
  await pushFixtures(reg);
  image = `${reg.host}/test/busybox:latest`;
  env = { ...NETENV, DATA_DIR: await pulledDataDir([image]) };
  d = await startDaemon({ netns: NS, env });
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

const cli = (args) => runCli(args, { env: { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: token } });
const sh = async (name, cmd) => (await cli(['exec', name, 'sh', '-c', cmd])).stdout;
const post = async (path, body) => {
  const r = await d.fetch(path, { method: 'POST', token, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });
  return { status: r.status, body: r.status === 204 ? null : await r.json() };
};
// The counts the program printed so far (`n=<count>` lines), in order.
async function counts(id) {
  return (await readLogs(d, token, id, { tail: 100000 })).map((l) => /^n=(\d+)$/.exec(l.trim())).filter(Boolean).map((m) => Number(m[1]));
}
async function countAbove(id, floor) {
  for (let i = 0; i < 100; i++) {
    const c = await counts(id);
    if (c.length && c.at(-1) > floor) return c;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${id}: the count did not pass ${floor}`);
}

// A web server (its page: the hostname at boot) and a counter that lives in memory only.
const PROGRAM = ['sh', '-c', 'mkdir -p /www && hostname > /www/index.html && httpd -p 8080 -h /www; i=0; while true; do i=$((i+1)); echo n=$i; sleep 0.2; done'];
async function boot(name) {
  const c = await createInstance(d, token, { name, image, size: '256MB', vcpus: 1, cmd: PROGRAM });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  await waitState(d, token, c.body.id, ['Running']);
  await countAbove(c.body.id, 2);
  return c.body;
}

// Warm restores (WARM_RESTORES, default 4) unless this run turned them off.
const WARM = process.env.WARM_RESTORES !== '0';
const ops = (id) => { try { return readFileSync(join(env.DATA_DIR, 'instances', id, 'logs/hypeman.log'), 'utf8'); } catch { return ''; } };
async function waitOps(id, re, from = 0) {
  for (let i = 0; i < 200; i++) {
    const m = re.exec(ops(id).slice(from));
    if (m) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${id}: no ${re} in its operations log: ${ops(id).slice(from).slice(-2000)}`);
}

let src;
test('standby keeps memory, files and address; restore runs on with the right clock', async () => {
  src = await boot('sleeper');
  await sh('sleeper', 'echo written-before > /marker');
  const before = (await counts(src.id)).at(-1);
  const pid = vmmPid(d, src.id);
  const tap = `hm-${src.id.slice(0, 12)}`;
  assert.ok(taps().includes(tap));

  // A cold-booted VM's RAM is on tmpfs (src/instance/memory.c); standby moves it to the instance's folder.
  const dir = join(env.DATA_DIR, 'instances', src.id);
  const ramOnTmpfs = () => readdirSync('/dev/shm').filter((e) => e.startsWith('hypeman-')).some((e) => existsSync(join('/dev/shm', e, `${src.id}.ram`)));
  assert.ok(ramOnTmpfs(), 'RAM on tmpfs while running');
  assert.ok(!existsSync(join(dir, 'memory.ram')));
  const s = await post(`/instances/${src.id}/standby`);
  assert.equal(s.status, 200, JSON.stringify(s.body));
  assert.equal(s.body.state, 'Standby');
  assert.equal(s.body.has_snapshot, true);
  assert.equal(s.body.network.ip, src.network.ip); // the address stays the instance's
  assert.ok(!processAlive(pid), 'the VMM is gone');
  let warmPid = null;
  if (WARM) {
    // A VMM for the restore starts waiting (src/instance/warm.c), with the TAP.
    await waitOps(src.id, /msg="warm restore ready" pid=(\d+)/);
    warmPid = vmmPid(d, src.id);
    assert.ok(warmPid && warmPid !== pid && processAlive(warmPid), 'a VMM waits for the restore');
    assert.ok(taps().includes(tap), 'the waiting VMM has the TAP');
  } else {
    assert.ok(!taps().includes(tap), 'the TAP is gone');
  }
  assert.ok(!ramOnTmpfs(), 'tmpfs released');
  assert.ok(statSync(join(dir, 'memory.ram')).size === 256 * 1024 * 1024, 'RAM saved in the instance folder');
  const frozen = (await counts(src.id)).at(-1);
  assert.ok(frozen >= before);
  await new Promise((r) => setTimeout(r, 3000)); // the guest clock must not lose this
  assert.equal((await counts(src.id)).at(-1), frozen, 'nothing runs in standby');

  const r = await post(`/instances/${src.id}/restore`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.state, 'Running');
  assert.equal(r.body.has_snapshot, false);
  assert.ok(taps().includes(tap));
  assert.match(ops(src.id), new RegExp(`msg=restored running_ms=\\S+ warm=${WARM ? 'yes' : 'no'}`));
  if (WARM) assert.equal(vmmPid(d, src.id), warmPid, 'the waiting VMM runs the guest');
  const after = await countAbove(src.id, frozen);
  // The program went on from where it was: no restart at 1, no gap.
  const resumed = after.slice(after.indexOf(frozen) + 1);
  assert.equal(resumed[0], frozen + 1, `counted on: ${after.slice(-20)}`);
  assert.equal(await sh('sleeper', 'cat /marker'), 'written-before\n');
  const guestNow = Number((await sh('sleeper', 'date +%s')).trim());
  assert.ok(Math.abs(guestNow - Date.now() / 1000) < 2, `guest clock ${guestNow} vs host ${Date.now() / 1000}`);
  assert.equal(await fetchRetry(`http://${src.network.ip}:8080/`), 'sleeper\n');
});

test('three forks of a running instance: each runs with its own address, MAC and hostname', async () => {
  const forks = [];
  for (const name of ['fork-a', 'fork-b', 'fork-c']) {
    const f = await post(`/instances/${src.id}/fork`, { name, from_running: true });
    assert.equal(f.status, 201, JSON.stringify(f.body));
    assert.equal(f.body.state, 'Running');
    forks.push(f.body);
  }
  assert.equal((await getInstance(d, token, src.id)).body.state, 'Running', 'the source runs on');
  const all = [src, ...forks];
  assert.equal(new Set(all.map((i) => i.id)).size, 4);
  assert.equal(new Set(all.map((i) => i.network.ip)).size, 4);
  assert.equal(new Set(all.map((i) => i.network.mac)).size, 4);
  for (const i of all) {
    const inside = await sh(i.name, 'hostname; cat /sys/class/net/eth0/address; ip -4 addr show eth0; cat /etc/machine-id 2>/dev/null; ip route');
    const lines = inside.split('\n');
    assert.equal(lines[0], i.name);
    assert.equal(lines[1], i.network.mac);
    assert.match(inside, new RegExp(`inet ${i.network.ip.replaceAll('.', '\\.')}/16`));
    assert.equal(inside.match(/inet /g).length, 1, inside); // the parent's address is gone
    assert.match(inside, /default via 10\.124\.0\.1/);
    // Each answers on its own address (the page still says what the source's httpd wrote at boot).
    assert.equal(await fetchRetry(`http://${i.network.ip}:8080/`), 'sleeper\n', i.name);
  }
  // Each one's VMM was started while its files were copied, and only loaded the state.
  for (const f of forks) {
    assert.match(ops(f.id), /msg="VMM started during the copy" pid=\d+ ms=[\d.]+/, f.name);
    assert.match(ops(f.id), /msg=restored running_ms=[\d.]+ identity_ms=[^\n]* warm=early\n/, f.name);
  }
  // Each counts on by itself, from the source's count at the fork.
  const now = await Promise.all(all.map(async (i) => (await counts(i.id)).at(-1)));
  await Promise.all(all.map((i, k) => countAbove(i.id, now[k] + 3)));
  for (const f of forks) {
    const r = await d.fetch(`/instances/${f.id}`, { method: 'DELETE', token });
    assert.equal(r.status, 204);
  }
  assert.equal(taps().length, 1);
});

test('a fork without a network is answered without waiting for the guest, and what reaches it next sees its own identity', async () => {
  const c = await createInstance(d, token, { name: 'loner', image, size: '256MB', vcpus: 1, network: { enabled: false }, cmd: ['sh', '-c', 'while true; do sleep 1; done'] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  await waitState(d, token, c.body.id, ['Running']);
  assert.equal(await sh('loner', 'hostname'), 'loner\n');
  const f = await post(`/instances/${c.body.id}/fork`, { name: 'loner-fork', from_running: true });
  assert.equal(f.status, 201, JSON.stringify(f.body));
  assert.equal(f.body.state, 'Running');
  // The identity went out right after the hello, ahead of this exec: the exec sees it applied.
  assert.equal(await sh('loner-fork', 'hostname'), 'loner-fork\n');
  assert.match(ops(f.body.id), /msg=restored running_ms=[\d.]+ warm=early identity=sent/);
  assert.doesNotMatch(ops(f.body.id), /guest agent error/);
  for (const id of [f.body.id, c.body.id]) assert.equal((await d.fetch(`/instances/${id}`, { method: 'DELETE', token })).status, 204);
});

// Spare forks (SPARE_FORKS, default 2): after a fork of a running source
// without a network, the next fork's files and VMM are made ready. The fork
// that takes them must see the source as it is at that fork, not as it was
// when the spare was made; a spare ends with its source, and one a crashed
// daemon left is killed by the next.
test('spare forks: the next fork takes the one made ready and sees the source as it is then; a delete ends one, a crash leaves none', async () => {
  const c = await createInstance(d, token, { name: 'spring', image, size: '256MB', vcpus: 1, network: { enabled: false }, cmd: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo n=$i; sleep 0.2; done'] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  await countAbove(id, 2);
  const spareOf = async (from) => {
    const m = await waitOps(id, /msg="spare fork ready" spare=(\w+) pid=(\d+)/, from);
    return { id: m[1], pid: Number(m[2]), dir: join(env.DATA_DIR, 'instances', m[1]) };
  };
  const del = async (x) => assert.equal((await d.fetch(`/instances/${x}`, { method: 'DELETE', token })).status, 204);

  let mark = ops(id).length;
  const f1 = await post(`/instances/${id}/fork`, { name: 'spring-1', from_running: true });
  assert.equal(f1.status, 201, JSON.stringify(f1.body));
  assert.match(ops(f1.body.id), /msg="forked" [^\n]* spare=no/, 'the first fork finds none');
  let spare = await spareOf(mark);
  assert.ok(processAlive(spare.pid), 'its VMM waits');
  assert.ok(existsSync(join(spare.dir, 'spare')));
  const listed = await (await d.fetch('/instances', { token })).json();
  assert.ok(!listed.some((x) => x.id === spare.id), 'a spare is not an instance');

  // The source moves on after the spare was made: a file on its disk, its count in memory.
  const atSpare = (await counts(id)).at(-1);
  await sh('spring', 'echo after-the-spare > /mark; sync');
  const before = (await countAbove(id, atSpare + 5)).at(-1);
  mark = ops(id).length;
  const f2 = await post(`/instances/${id}/fork`, { name: 'spring-2', from_running: true });
  assert.equal(f2.status, 201, JSON.stringify(f2.body));
  assert.equal(f2.body.id, spare.id, 'the fork is the spare');
  assert.match(ops(f2.body.id), /msg="forked" [^\n]* spare=yes/);
  assert.ok(!existsSync(join(spare.dir, 'spare')), 'its row owns the folder');
  assert.equal(await sh('spring-2', 'hostname; echo 3 > /proc/sys/vm/drop_caches; cat /mark'), 'spring-2\nafter-the-spare\n',
    'its own identity, and the disk as the source had it at the fork (read past the page cache)');
  const forked = await countAbove(f2.body.id, (await countAbove(f2.body.id, 0))[0]);
  assert.ok(forked[0] > before, `its memory is the source's at the fork: it counts on from ${forked[0]}, the source was at ${before} (${atSpare} when the spare was made)`);
  assert.equal(forked[1], forked[0] + 1);

  // The fork that took it had the next one made; a daemon killed meanwhile
  // leaves it, and the next daemon ends it and its folder.
  spare = await spareOf(mark);
  await d.kill9();
  assert.ok(processAlive(spare.pid), 'the crashed daemon left it');
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  assert.ok(!processAlive(spare.pid), 'the next daemon killed it');
  assert.ok(!existsSync(spare.dir), 'and removed its folder');
  assert.equal((await getInstance(d, token, id)).body.state, 'Running');

  // A delete of the source ends its spare.
  mark = ops(id).length;
  const f3 = await post(`/instances/${id}/fork`, { name: 'spring-3', from_running: true });
  assert.equal(f3.status, 201, JSON.stringify(f3.body));
  spare = await spareOf(mark);
  await del(id);
  assert.ok(!processAlive(spare.pid), 'deleted: its spare\'s VMM is gone');
  assert.ok(!existsSync(spare.dir), 'and its folder');
  for (const f of [f1, f2, f3]) await del(f.body.id);
});

// A spare of a source in standby is a whole copy of its files, which do not
// change while it sleeps: the next fork only loads the state. Once the source
// has run and slept again, its files are new and the spare is copied over.
test('spare forks of a source in standby: whole while it sleeps, copied again once it has run', async () => {
  const c = await createInstance(d, token, { name: 'dozer', image, size: '256MB', vcpus: 1, network: { enabled: false }, cmd: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo n=$i; sleep 0.2; done'] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const id = c.body.id;
  await waitState(d, token, id, ['Running']);
  await countAbove(id, 2);
  assert.equal((await post(`/instances/${id}/standby`)).status, 200);
  let frozen = (await counts(id)).at(-1);
  const forks = [];
  const fork = async (name, how) => {
    const mark = ops(id).length;
    const f = await post(`/instances/${id}/fork`, { name, target_state: 'Running' });
    assert.equal(f.status, 201, JSON.stringify(f.body));
    forks.push(f.body.id);
    assert.match(ops(f.body.id), new RegExp(`msg="forked" [^\\n]* spare=${how}`));
    assert.equal(await sh(name, 'hostname'), `${name}\n`);
    const n = await countAbove(f.body.id, (await countAbove(f.body.id, 0))[0]);
    assert.equal(n[0], frozen + 1, `${name} counts on from the source's ${frozen}`);
    assert.equal((await getInstance(d, token, id)).body.state, 'Standby', 'the source sleeps on');
    return mark;
  };
  let mark = await fork('dozer-1', 'no');
  await waitOps(id, /msg="spare fork ready" spare=\w+ pid=\d+ of=Standby whole=yes/, mark);
  mark = await fork('dozer-2', 'whole');
  await waitOps(id, /msg="spare fork ready" spare=\w+ pid=\d+ of=Standby whole=yes/, mark);
  // The source runs and sleeps again: its files are new, the spare is not the copy.
  assert.equal((await post(`/instances/${id}/restore`)).status, 200);
  await countAbove(id, frozen + 5);
  assert.equal((await post(`/instances/${id}/standby`)).status, 200);
  frozen = (await counts(id)).at(-1);
  await fork('dozer-3', 'yes');
  for (const x of [...forks, id]) assert.equal((await d.fetch(`/instances/${x}`, { method: 'DELETE', token })).status, 204);
});

test('a restarted daemon can still wake an instance in standby', async () => {
  const mark = ops(src.id).length;
  assert.equal((await post(`/instances/${src.id}/standby`)).status, 200);
  const frozen = (await counts(src.id)).at(-1);
  let warmPid = null;
  if (WARM) {
    await waitOps(src.id, /msg="warm restore ready"/, mark);
    warmPid = vmmPid(d, src.id);
  }
  await d.stop({ keepData: true });
  if (WARM) assert.ok(!processAlive(warmPid), 'a VMM waiting for a restore ends with its daemon');
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  const g = await getInstance(d, token, src.id);
  assert.equal(g.body.state, 'Standby');
  assert.equal(g.body.has_snapshot, true);
  const r = await post(`/instances/${src.id}/restore`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const after = await countAbove(src.id, frozen);
  assert.equal(after[after.indexOf(frozen) + 1], frozen + 1);
});

// Warm restores: what waits is bounded, ends with what it waited for, and
// what a crashed daemon left waiting is killed by the next one (a daemon
// with WARM_RESTORES=1 whatever this run's setting, then this run's again).
test('warm restores: the oldest is evicted past WARM_RESTORES, a delete ends one, a crash leaves none', async () => {
  await d.stop({ keepData: true });
  d = await startDaemon({ netns: NS, env: { ...env, WARM_RESTORES: '1' } });
  token = d.token();
  const a = await boot('warm-a');
  const b = await boot('warm-b');
  const tapOf = (x) => `hm-${x.id.slice(0, 12)}`;
  assert.equal((await post(`/instances/${a.id}/standby`)).status, 200);
  await waitOps(a.id, /msg="warm restore ready"/);
  const aPid = vmmPid(d, a.id);
  assert.ok(processAlive(aPid));
  const bMark = ops(b.id).length;
  assert.equal((await post(`/instances/${b.id}/standby`)).status, 200);
  await waitOps(b.id, /msg="warm restore ready"/, bMark);
  await waitOps(a.id, /msg="warm restore VMM ended" why=evicted/);
  assert.ok(!processAlive(aPid), 'the older waiting VMM is gone');
  assert.ok(!taps().includes(tapOf(a)), 'with its TAP');
  assert.ok(taps().includes(tapOf(b)));
  // Both restore and count on: a from cold, b on its waiting VMM.
  for (const [x, warm] of [[a, 'no'], [b, 'yes']]) {
    const frozen = (await counts(x.id)).at(-1);
    const mark = ops(x.id).length;
    const r = await post(`/instances/${x.id}/restore`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.match(ops(x.id).slice(mark), new RegExp(`msg=restored running_ms=\\S+ warm=${warm}`));
    const after = await countAbove(x.id, frozen);
    assert.equal(after[after.indexOf(frozen) + 1], frozen + 1);
  }
  // A delete of an instance whose VMM waits ends that VMM and its TAP.
  let mark = ops(a.id).length;
  assert.equal((await post(`/instances/${a.id}/standby`)).status, 200);
  await waitOps(a.id, /msg="warm restore ready"/, mark);
  const waiting = vmmPid(d, a.id);
  assert.equal((await d.fetch(`/instances/${a.id}`, { method: 'DELETE', token })).status, 204);
  assert.ok(!processAlive(waiting), 'deleted: the waiting VMM is gone');
  assert.ok(!taps().includes(tapOf(a)), 'and its TAP');
  // A daemon killed while a VMM waits: the next one kills it; the restore is cold and right.
  mark = ops(b.id).length;
  assert.equal((await post(`/instances/${b.id}/standby`)).status, 200);
  await waitOps(b.id, /msg="warm restore ready"/, mark);
  const left = vmmPid(d, b.id);
  const frozen = (await counts(b.id)).at(-1);
  await d.kill9();
  assert.ok(processAlive(left), 'the crashed daemon left it');
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  assert.ok(!processAlive(left), 'the next daemon killed what waited');
  assert.equal((await getInstance(d, token, b.id)).body.state, 'Standby');
  assert.ok(!taps().includes(tapOf(b)));
  const r = await post(`/instances/${b.id}/restore`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const after = await countAbove(b.id, frozen);
  assert.equal(after[after.indexOf(frozen) + 1], frozen + 1);
  assert.equal((await d.fetch(`/instances/${b.id}`, { method: 'DELETE', token })).status, 204);
});

// What a daemon that died during a standby leaves: its row still says
// Running with the pid of a VMM that is gone, and the saved state is on disk
// (whole, or with the RAM still on tmpfs). The next daemon finishes the
// standby instead of calling the instance Stopped.
test('a daemon that died mid-standby: the next one finds the instance in standby, restorable', async () => {
  for (const ramLeftOnTmpfs of [false, true]) {
    assert.equal((await post(`/instances/${src.id}/standby`)).status, 200);
    const frozen = (await counts(src.id)).at(-1);
    await d.kill9(); // as a crash: nothing runs in the daemon on the way out
    const dir = join(env.DATA_DIR, 'instances', src.id);
    if (ramLeftOnTmpfs) {
      const shm = readdirSync('/dev/shm').filter((e) => e.startsWith('hypeman-')).find((e) => {
        try { return readFileSync(join('/dev/shm', e, 'data_dir'), 'utf8') === env.DATA_DIR; } catch { return false; }
      });
      assert.ok(shm, 'the daemon has a tmpfs folder');
      copyFileSync(join(dir, 'memory.ram'), join('/dev/shm', shm, `${src.id}.ram`));
      renameSync(join(dir, 'memory.ram'), join(dir, 'memory.ram.old'));
    }
    execFileSync('sqlite3', [join(env.DATA_DIR, 'hypeman.db'), `UPDATE instances SET phase = 'Running', vmm_pid = 2147483000 WHERE id = '${src.id}'`]);
    d = await startDaemon({ netns: NS, env });
    token = d.token();
    const g = await getInstance(d, token, src.id);
    assert.equal(g.body.state, 'Standby', JSON.stringify(g.body));
    if (ramLeftOnTmpfs) rmSync(join(dir, 'memory.ram.old'));
    const r = await post(`/instances/${src.id}/restore`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const after = await countAbove(src.id, frozen);
    assert.equal(after[after.indexOf(frozen) + 1], frozen + 1);
  }
});

// QMP by hand, for staging: a few commands on the VMM's socket.
async function qmp(sockPath, cmds) {
  const c = net.connect(sockPath);
  let buf = '';
  const lines = [];
  c.on('data', (b) => { buf += b; let i; while ((i = buf.indexOf('\n')) >= 0) { lines.push(JSON.parse(buf.slice(0, i))); buf = buf.slice(i + 1); } });
  const answers = () => lines.filter((l) => 'return' in l || 'error' in l).length;
  const until = async (n) => { for (let i = 0; i < 200 && answers() < n; i++) await new Promise((r) => setTimeout(r, 10)); };
  await new Promise((res, rej) => { c.once('connect', res); c.once('error', rej); });
  for (const [k, cmd] of ['qmp_capabilities', ...cmds].entries()) {
    c.write(JSON.stringify({ execute: cmd }) + '\n');
    await until(k + 1);
  }
  c.destroy();
  return lines;
}

// What a daemon that died between starting a VMM and recording it leaves:
// a row that records no VMM while one runs. One whose guest runs is adopted
// (the operation had in effect finished); one still paused is killed.
test('a VMM the store does not record: adopted when its guest runs, killed when paused', async () => {
  const sql = (q) => execFileSync('sqlite3', [join(env.DATA_DIR, 'hypeman.db'), q]);
  const x = await boot('unrecorded');
  const pid = vmmPid(d, x.id);
  let frozen = (await counts(x.id)).at(-1);
  await d.kill9();
  sql(`UPDATE instances SET phase = 'Standby', vmm_pid = NULL WHERE id = '${x.id}'`);
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  let g = await getInstance(d, token, x.id);
  assert.equal(g.body.state, 'Running', JSON.stringify(g.body));
  assert.equal(vmmPid(d, x.id), pid, 'the same VMM, adopted');
  await countAbove(x.id, frozen + 2);
  assert.equal(await fetchRetry(`http://${x.network.ip}:8080/`), 'unrecorded\n');

  // Paused, and recorded as stopped: killed, the instance stays Stopped.
  await d.kill9();
  await qmp(join(env.DATA_DIR, 'instances', x.id, 'run', 'qmp.sock'), ['stop']);
  sql(`UPDATE instances SET phase = 'Stopped', vmm_pid = NULL WHERE id = '${x.id}'`);
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  g = await getInstance(d, token, x.id);
  assert.equal(g.body.state, 'Stopped', JSON.stringify(g.body));
  assert.ok(!processAlive(pid), 'the paused VMM is gone');
  assert.ok(!taps().includes(`hm-${x.id.slice(0, 12)}`), 'and its TAP');
  assert.equal((await d.fetch(`/instances/${x.id}`, { method: 'DELETE', token })).status, 204);
});

test('wrong states, taken names, writable volumes: 409; a damaged saved state fails the restore and loses nothing', async () => {
  // The state it is in: the instance, as upstream. Wrong states: 409.
  let r = await post(`/instances/${src.id}/restore`);
  assert.equal(r.status, 200);
  assert.equal(r.body.state, 'Running');
  r = await post(`/instances/${src.id}/fork`, { name: 'nope' });
  assert.equal(r.status, 409);
  assert.match(r.body.message, /from_running/);
  r = await post(`/instances/${src.id}/fork`, { name: 'sleeper', from_running: true });
  assert.equal(r.status, 409);
  r = await post(`/instances/${src.id}/fork`, { name: 'Bad_Name', from_running: true });
  assert.equal(r.status, 400);
  r = await post(`/instances/${src.id}/fork`, { name: 'ok-name', target_state: 'Asleep' });
  assert.equal(r.status, 400);
  const stopped = await createInstance(d, token, { name: 'done', image, size: '256MB', vcpus: 1, cmd: ['true'] });
  await waitState(d, token, stopped.body.id, ['Stopped']);
  r = await post(`/instances/${stopped.body.id}/standby`);
  assert.equal(r.status, 409);
  assert.match(r.body.message, /Stopped/);
  // A read-write volume cannot be shared by a copy.
  const v = await post('/volumes', { name: 'rwvol', size_gb: 1 });
  assert.equal(v.status, 201, JSON.stringify(v.body));
  assert.equal((await post(`/instances/${stopped.body.id}/volumes/${v.body.id}`, { mount_path: '/data' })).status, 200);
  r = await post(`/instances/${stopped.body.id}/fork`, { name: 'done-copy' });
  assert.equal(r.status, 409);
  assert.equal(r.body.code, 'writable_volume');
  assert.equal((await getInstance(d, token, 'done-copy')).status, 404);

  // A damaged device state: the restore fails with QEMU's reason, the instance stays in standby.
  const mark = ops(src.id).length;
  assert.equal((await post(`/instances/${src.id}/standby`)).status, 200);
  // A VMM waiting for the state it was started on is not used on another one.
  if (WARM) await waitOps(src.id, /msg="warm restore ready"/, mark);
  const dir = join(env.DATA_DIR, 'instances', src.id);
  copyFileSync(join(dir, 'vm.state'), join(dir, 'vm.state.good'));
  writeFileSync(join(dir, 'vm.state'), 'this is not a VM state\n');
  const srcTap = `hm-${src.id.slice(0, 12)}`;
  const tapsBefore = taps().filter((t) => t !== srcTap);
  r = await post(`/instances/${src.id}/restore`);
  assert.equal(r.status, 500, JSON.stringify(r.body));
  assert.match(r.body.message, /could not load the VM state/);
  assert.equal((await getInstance(d, token, src.id)).body.state, 'Standby');
  if (WARM) assert.match(ops(src.id).slice(mark), /msg="warm restore VMM ended" why=stale/);
  assert.deepEqual(taps(), tapsBefore, 'no TAP left behind');
  assert.equal(vmmPid(d, src.id), null, 'no VMM left behind');
  // A missing memory file: named in the error.
  renameSync(join(dir, 'vm.state.good'), join(dir, 'vm.state'));
  renameSync(join(dir, 'memory.ram'), join(dir, 'memory.ram.away'));
  r = await post(`/instances/${src.id}/restore`);
  assert.notEqual(r.status, 200);
  assert.match(r.body.message, /memory/);
  assert.equal((await getInstance(d, token, src.id)).body.state, 'Standby');
  renameSync(join(dir, 'memory.ram.away'), join(dir, 'memory.ram'));
  // A state saved under the other accelerator: a clear 409, and nothing is lost.
  const accel = (await (await d.fetch('/capabilities', { token })).json()).accelerator.name;
  assert.equal(readFileSync(join(dir, 'vm.accel'), 'utf8'), accel, 'the state records its accelerator');
  const other = accel === 'kvm' ? 'tcg' : 'kvm';
  writeFileSync(join(dir, 'vm.accel'), other);
  r = await post(`/instances/${src.id}/restore`);
  assert.equal(r.status, 409, JSON.stringify(r.body));
  assert.equal(r.body.code, 'accelerator_mismatch');
  assert.match(r.body.message, new RegExp(`saved under ${other} .* under ${accel}`));
  assert.equal((await getInstance(d, token, src.id)).body.state, 'Standby');
  assert.equal(vmmPid(d, src.id), null, 'no VMM started');
  writeFileSync(join(dir, 'vm.accel'), accel);
  // Both back: it wakes where it was.
  const frozen = (await counts(src.id)).at(-1);
  r = await post(`/instances/${src.id}/restore`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const after = await countAbove(src.id, frozen);
  assert.equal(after[after.indexOf(frozen) + 1], frozen + 1);
  assert.ok(!existsSync(join(dir, 'vm.state')), 'the used state is gone');
});

test('compressed memory: standby and snapshots with zstd come back where they were', async () => {
  let r = await post(`/instances/${src.id}/standby`, { compression: { enabled: true, algorithm: 'lz4' } });
  assert.equal(r.status, 400);
  assert.equal(r.body.code, 'invalid_compression');
  r = await post(`/instances/${src.id}/standby`, { compression: { enabled: true, level: 25 } });
  assert.equal(r.status, 400);
  assert.equal((await getInstance(d, token, src.id)).body.state, 'Running', 'a refused standby changes nothing');

  // Standby with compression: only the compressed file stays; restore unpacks it.
  const dir = join(env.DATA_DIR, 'instances', src.id);
  r = await post(`/instances/${src.id}/standby`, { compression: { enabled: true, algorithm: 'zstd', level: 3 } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.ok(existsSync(join(dir, 'memory.ram.zst')) && !existsSync(join(dir, 'memory.ram')));
  // A snapshot of it carries the compressed memory as it is.
  r = await post(`/instances/${src.id}/snapshots`, { kind: 'Standby' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.compression_state, 'compressed');
  assert.ok(r.body.compressed_size_bytes > 0);
  assert.equal((await d.fetch(`/snapshots/${r.body.id}`, { method: 'DELETE', token })).status, 204);
  let frozen = (await counts(src.id)).at(-1);
  r = await post(`/instances/${src.id}/restore`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  let after = await countAbove(src.id, frozen);
  assert.equal(after[after.indexOf(frozen) + 1], frozen + 1);
  assert.ok(!existsSync(join(dir, 'memory.ram.zst')));

  // A compressed snapshot of the running instance, then a fork of it.
  const lo = (await counts(src.id)).at(-1);
  r = await post(`/instances/${src.id}/snapshots`, { kind: 'Standby', name: 'packed', compression: { enabled: true } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const snap = r.body;
  assert.equal(snap.compression_state, 'compressed');
  assert.deepEqual(snap.compression, { enabled: true, algorithm: 'zstd', level: 1 });
  assert.ok(snap.compressed_size_bytes > 0 && snap.compressed_size_bytes < snap.uncompressed_size_bytes, JSON.stringify(snap));
  assert.ok(existsSync(join(env.DATA_DIR, 'snapshots', snap.id, 'memory.ram.zst')));
  const hi = (await counts(src.id)).at(-1);
  r = await post(`/snapshots/${snap.id}/fork`, { name: 'unpacked' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.equal(r.body.state, 'Running');
  assert.notEqual(r.body.network.ip, src.network.ip);
  // A compressed memory becomes a new file when it is unpacked: no VMM can be started on it ahead.
  assert.doesNotMatch(ops(r.body.id), /VMM started during the copy/);
  assert.match(ops(r.body.id), /msg=restored running_ms=[^\n]* warm=no\n/);
  // Its log starts at the fork: the first count is the source's at the snapshot, plus one.
  after = await countAbove(r.body.id, hi + 2);
  assert.ok(after[0] > lo && after[0] <= hi + 2, `fork counts from ${after[0]}; the snapshot was taken between ${lo} and ${hi}`);
  assert.equal((await d.fetch(`/instances/${r.body.id}`, { method: 'DELETE', token })).status, 204);
  assert.equal((await d.fetch(`/snapshots/${snap.id}`, { method: 'DELETE', token })).status, 204);
  assert.ok(!existsSync(join(env.DATA_DIR, 'snapshots', snap.id)), 'the payload is gone');
  assert.equal((await d.fetch(`/snapshots/${snap.id}`, { token })).status, 404);
});
