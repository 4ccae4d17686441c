// Creates from a pre-booted base (src/instance/bases.c) on real TCG guests,
// with networking, inside a network namespace this test makes (`hmb-*`: the
// daemon, its bridge, TAPs and guests; traffic only there and to loopback;
// deleted at the end). What is checked is that an instance restored from a
// base is the instance a cold boot makes: its own disks at their real sizes,
// its own address, MAC, hostname and randomness, exec and cp at once, volumes,
// standby, fork; and that a base is built for each new shape, never used once
// the initrd changed, kept across a daemon restart, and off with BASE_BOOT=off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { pulledDataDir, diskPath } from '../harness/images.mjs';
import { createInstance, getInstance, waitState, readLogs } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

const tag = randomBytes(3).toString('hex');
const NS = `hmb-${tag}`;
const NETENV = { SUBNET_CIDR: '10.127.0.0/16', BRIDGE_NAME: 'hmbrb', DNS_SERVER: '10.127.0.1', BASE_BOOT: 'on' };
const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });

let reg, d, token, image, env;
before(async () => {
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
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
const sh = async (name, cmd) => {
  const r = await cli(['exec', name, 'sh', '-c', cmd]);
  assert.equal(r.code, 0, `exec in ${name}: ${r.stderr}`);
  return r.stdout;
};
const call = async (method, path, body) => {
  const r = await d.fetch(path, { method, token, headers: { 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined });
  return { status: r.status, body: r.status === 204 ? null : await r.json() };
};
const post = (path, body) => call('POST', path, body ?? {});
const del = async (path) => (await call('DELETE', path)).status;
const basesDir = () => join(env.DATA_DIR, 'bases');
// The ready bases: folder name -> base.json.
function bases() {
  const out = {};
  for (const n of readdirSync(basesDir())) {
    if (n.startsWith('.')) continue;
    try { out[n] = JSON.parse(readFileSync(join(basesDir(), n, 'base.json'), 'utf8')); } catch { /* being written */ }
  }
  return out;
}
async function waitBase(pred, what, ms = 90000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const hit = Object.entries(bases()).find(([, b]) => pred(b));
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error(`no base ${what} after ${ms} ms: ${JSON.stringify(bases())}\n${d.log.split('\n').filter((l) => /base/.test(l)).join('\n')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
const isDefault = (b) => b.vcpus === 2 && b.mem_bytes === 2 ** 30 && b.disks === 'wrw' && b.nic;
async function run(name, body) {
  const c = await createInstance(d, token, { name, image, ...body });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const { inst } = await waitState(d, token, c.body.id, ['Stopped']);
  const lines = (await readLogs(d, token, c.body.id)).filter((l) => !/^\[\s*\d+\.\d+\]/.test(l));
  return { created: c.body, inst, lines };
}

test('the default shape is built at start-up; a create from it is the instance a cold boot makes', async () => {
  const [dir, b] = await waitBase(isDefault, 'of the default shape');
  assert.equal(b.fingerprint.split(' ').length, 2);
  assert.ok(existsSync(join(basesDir(), dir, 'memory.ram')) && existsSync(join(basesDir(), dir, 'vm.state')));
  assert.deepEqual(readdirSync(join(basesDir(), dir)).sort(), ['base.json', 'console.log', 'memory.ram', 'run', 'vm.state', 'vmm.log']);
  // A program's exit code, env, workdir, disks and identity, from a base.
  const overlay = 300 * 1024 * 1024 + 4096; // not the placeholder's size, not a round one
  const r = await run('from-base', {
    overlay_size: String(overlay), env: { GREETING: 'hi there' },
    cmd: ['sh', '-c', 'echo "$GREETING"; pwd; hostname; blockdev --getsize64 /dev/vdb; blockdev --getsize64 /dev/vdc; cat /sys/class/net/eth0/address; ip -4 addr show eth0 | grep -o "inet [0-9./]*"; ip route | grep default; df -k / | tail -1 | tr -s " " | cut -d" " -f2; exit 7'],
  });
  assert.equal(r.created.boot, 'base', JSON.stringify(r.created));
  assert.equal(r.inst.exit_code, 7, r.lines.join('\n'));
  assert.equal(r.inst.exit_message, 'exit status 7');
  const [greeting, pwd, host, root, ovl, mac, inet, route, dfk] = r.lines;
  assert.equal(greeting, 'hi there');
  assert.equal(pwd, '/srv'); // the fixture's WorkingDir
  assert.equal(host, 'from-base');
  const img = await (await d.fetch(`/images/${encodeURIComponent(image)}`, { token })).json();
  assert.equal(Number(root), statSync(diskPath(d, img.digest)).size);
  assert.equal(Number(ovl), overlay);
  assert.equal(mac, r.created.network.mac);
  assert.equal(inet, `inet ${r.created.network.ip}/16`);
  assert.match(route, /default via 10\.127\.0\.1/);
  assert.ok(Number(dfk) > 250 * 1024, `overlay filesystem of ${dfk} KiB`);
  assert.equal(r.inst.boot, undefined, 'a stopped instance has no boot');
  const ops = readFileSync(join(env.DATA_DIR, 'instances', r.inst.id, 'logs/hypeman.log'), 'utf8');
  assert.match(ops, /msg="from base" copy_ms=/);
  assert.match(ops, /msg="attach sent"/);
  assert.equal(await del(`/instances/${r.inst.id}`), 204);
});

test('exec and cp right after the create; standby, restore and a fork of a base-booted instance', async () => {
  await waitBase(isDefault, 'of the default shape');
  const c = await createInstance(d, token, { name: 'sleeper', image, cmd: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo n=$i; sleep 0.2; done'] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  assert.equal(c.body.boot, 'base');
  // The exec goes out the moment the program runs (before that it is a 409, as for a cold boot).
  await waitState(d, token, c.body.id, ['Running'], { timeoutMs: 30000 });
  const early = await sh('sleeper', 'echo early; cat /proc/cmdline');
  assert.match(early, /^early\n.* hypeman\.base=1\n$/);
  const put = await cli(['cp', '/etc/hostname', 'sleeper:/tmp/copied']);
  assert.equal(put.code, 0, put.stderr);
  assert.equal(await sh('sleeper', 'cat /tmp/copied'), readFileSync('/etc/hostname', 'utf8'));
  await sh('sleeper', 'echo kept > /marker');
  let r = await post(`/instances/${c.body.id}/standby`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  r = await post(`/instances/${c.body.id}/restore`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(await sh('sleeper', 'cat /marker'), 'kept\n');
  const f = await post(`/instances/${c.body.id}/fork`, { name: 'sleeper-fork', from_running: true });
  assert.equal(f.status, 201, JSON.stringify(f.body));
  const inside = await sh('sleeper-fork', 'hostname; cat /sys/class/net/eth0/address; cat /marker');
  assert.equal(inside, `sleeper-fork\n${f.body.network.mac}\nkept\n`);
  assert.notEqual(f.body.network.ip, c.body.network.ip);
  assert.equal(await del(`/instances/${f.body.id}`), 204);
  assert.equal(await del(`/instances/${c.body.id}`), 204);
});

test('a new shape: the first create boots cold and asks for a base; the next ones use it, volumes at their real size', async () => {
  const v = await post('/volumes', { name: 'data', size_gb: 1 });
  assert.equal(v.status, 201, JSON.stringify(v.body));
  const shape = (b) => b.vcpus === 1 && b.mem_bytes === 256 * 2 ** 20 && b.disks === 'wrwr';
  const body = (cmd) => ({ vcpus: 1, size: '256MB', volumes: [{ volume_id: 'data', mount_path: '/data', readonly: true }], cmd: ['sh', '-c', cmd] });
  // The first holds the volume (read-only) while the next ones come from the base.
  const c = await createInstance(d, token, { name: 'shape-1', image, ...body('ls -a /data; blockdev --getsize64 /dev/vdd; sleep 1000') });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  assert.equal(c.body.boot, 'cold', 'no base of this shape yet: the create does not wait for one');
  await waitState(d, token, c.body.id, ['Running']);
  await waitBase(shape, 'of shape c1-m256-wrwr');
  for (const name of ['shape-2', 'shape-3']) {
    const r = await run(name, body('ls -a /data; blockdev --getsize64 /dev/vdd; grep " /data " /proc/mounts | cut -d" " -f4 | cut -d, -f1'));
    assert.equal(r.created.boot, 'base', name);
    assert.equal(r.inst.exit_code, 0, r.lines.join('\n'));
    assert.deepEqual(r.lines.slice(-2), [String(2 ** 30), 'ro']);
    assert.match(r.lines[0], /lost\+found/, r.lines.join('\n'));
    assert.equal(await del(`/instances/${r.inst.id}`), 204);
  }
  const first = (await readLogs(d, token, c.body.id)).filter((l) => !/^\[\s*\d+\.\d+\]/.test(l));
  assert.ok(first.includes(String(2 ** 30)), first.join('\n'));
  assert.equal(await del(`/instances/${c.body.id}`), 204);
  assert.equal(await del('/volumes/data'), 204);
});

test('20 concurrent creates from one base: each its own address, MAC, hostname and randomness', async () => {
  await waitBase((b) => b.vcpus === 1 && b.mem_bytes === 256 * 2 ** 20 && b.disks === 'wrw' && b.nic, 'c1-m256', 1).catch(async () => {
    // Ask for the shape with one create (cold), then wait for its base.
    const warm = await run('warm', { vcpus: 1, size: '256MB', cmd: ['true'] });
    assert.equal(warm.inst.exit_code, 0);
    await del(`/instances/${warm.inst.id}`);
    await waitBase((b) => b.vcpus === 1 && b.mem_bytes === 256 * 2 ** 20 && b.disks === 'wrw' && b.nic, 'c1-m256');
  });
  const names = Array.from({ length: 20 }, (_, i) => `many-${i}`);
  const cmd = 'hostname; cat /sys/class/net/eth0/address; ip -4 addr show eth0 | grep -o "inet [0-9.]*"; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; cat /proc/sys/kernel/random/boot_id';
  const all = await Promise.all(names.map((n) => run(n, { vcpus: 1, size: '256MB', cmd: ['sh', '-c', cmd] })));
  const rand = new Set();
  const bootIds = new Set();
  for (const [k, r] of all.entries()) {
    assert.equal(r.created.boot, 'base', names[k]);
    assert.equal(r.inst.exit_code, 0, r.lines.join('\n'));
    const [host, mac, inet, rnd, bootId] = r.lines;
    bootIds.add(bootId);
    assert.equal(host, names[k]);
    assert.equal(mac, r.created.network.mac);
    assert.equal(inet, `inet ${r.created.network.ip}`);
    assert.match(rnd, /^[0-9a-f]{32}$/);
    rand.add(rnd);
  }
  assert.equal(rand.size, 20, 'every guest draws its own random bytes');
  assert.equal(bootIds.size, 20, 'and has its own boot id');
  assert.equal(new Set(all.map((r) => r.created.network.ip)).size, 20);
  await Promise.all(all.map((r) => del(`/instances/${r.inst.id}`)));
});

test('a base whose restore fails is dropped: that create boots cold, and a new base is made', async () => {
  const [oldDir] = await waitBase(isDefault, 'of the default shape');
  writeFileSync(join(basesDir(), oldDir, 'vm.state'), 'not a VM state\n');
  const r = await run('fallback', { cmd: ['sh', '-c', 'echo fine'] });
  assert.equal(r.created.boot, 'cold');
  assert.equal(r.inst.exit_code, 0);
  assert.deepEqual(r.lines, ['fine']);
  assert.match(d.log, /boot from base failed, booting cold/);
  const ops = readFileSync(join(env.DATA_DIR, 'instances', r.inst.id, 'logs/hypeman.log'), 'utf8');
  assert.match(ops, /boot from base failed/);
  assert.ok(!existsSync(join(basesDir(), oldDir)), 'the broken base is removed');
  const [newDir] = await waitBase(isDefault, 'made again');
  assert.notEqual(newDir, oldDir);
  const again = await run('fallback-2', { cmd: ['true'] });
  assert.equal(again.created.boot, 'base');
  for (const i of [r, again]) assert.equal(await del(`/instances/${i.inst.id}`), 204);
});

test('a changed initrd: its bases are never used, and rebuilt', async () => {
  const [oldDir, old] = await waitBase(isDefault, 'of the default shape');
  // The initrd the daemon boots: touching it changes its fingerprint.
  const initrd = old.fingerprint && readdirSync(join(env.DATA_DIR, 'system/initrd')).map((n) => join(env.DATA_DIR, 'system/initrd', n)).find((p) => p.endsWith('.cpio'));
  const now = new Date();
  utimesSync(initrd, now, now);
  const r = await run('after-touch', { cmd: ['true'] });
  assert.equal(r.created.boot, 'cold', 'a base of another initrd is not used');
  assert.equal(r.inst.exit_code, 0);
  const [newDir] = await waitBase((b) => isDefault(b) && b.fingerprint !== old.fingerprint, 'for the new initrd');
  assert.notEqual(newDir, oldDir);
  // The builder swaps the new one in just after moving it into place.
  for (let i = 0; i < 50 && existsSync(join(basesDir(), oldDir)); i++) await new Promise((res) => setTimeout(res, 100));
  assert.ok(!existsSync(join(basesDir(), oldDir)), 'the old base is removed once replaced');
  const again = await run('after-rebuild', { cmd: ['true'] });
  assert.equal(again.created.boot, 'base');
  for (const i of [r, again]) assert.equal(await del(`/instances/${i.inst.id}`), 204);
});

test('a daemon killed right after a create from a base: the next one adopts the guest, which runs', async () => {
  await waitBase(isDefault, 'of the default shape');
  const c = await createInstance(d, token, { name: 'orphan', image, cmd: ['sh', '-c', 'echo up; sleep 1000'] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  assert.equal(c.body.boot, 'base');
  await d.kill9();
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  const { inst } = await waitState(d, token, c.body.id, ['Running'], { timeoutMs: 30000 });
  assert.equal(inst.boot, 'base');
  assert.equal(await sh('orphan', 'hostname; cat /sys/class/net/eth0/address'), `orphan\n${c.body.network.mac}\n`);
  assert.ok(!existsSync(join(env.DATA_DIR, 'instances', c.body.id, 'run/attach.json')), 'the kept attach goes once the guest is up');
  assert.equal(await del(`/instances/${c.body.id}`), 204);
});

test('a daemon killed while it builds a base: the next one stops that build and leaves nothing of it', async () => {
  // A shape nobody asked for yet: its build starts with this create.
  const shape = (b) => b.vcpus === 1 && b.mem_bytes === 192 * 2 ** 20;
  const c = await createInstance(d, token, { name: 'asks', image, vcpus: 1, size: '192MB', cmd: ['true'] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const build = () => readdirSync(basesDir()).filter((n) => n.startsWith('.build-c1-m192'));
  for (let i = 0; i < 100 && !build().length; i++) await new Promise((res) => setTimeout(res, 20));
  assert.equal(build().length, 1, 'the build is under way');
  const qemuOf = (dir) => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir); } catch { return false; }
  });
  const buildDir = join(basesDir(), build()[0]);
  for (let i = 0; i < 100 && !qemuOf(buildDir).length; i++) await new Promise((res) => setTimeout(res, 20));
  assert.equal(qemuOf(buildDir).length, 1, 'its VMM runs');
  await d.kill9();
  assert.equal(qemuOf(buildDir).length, 1, 'a base VMM outlives its daemon, as every VMM does');
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  assert.deepEqual(qemuOf(buildDir), [], 'the next daemon stopped it');
  assert.deepEqual(build(), []);
  assert.doesNotMatch(ip('-n', NS, '-o', 'link', 'show'), /hmb-/);
  assert.match(d.log, /left base build stopped/);
  assert.equal(await del(`/instances/${c.body.id}`), 204);
  // Asked for again, it is made.
  const again = await run('asks-again', { vcpus: 1, size: '192MB', cmd: ['true'] });
  assert.equal(again.inst.exit_code, 0);
  await waitBase(shape, 'of shape c1-m192');
  assert.equal(await del(`/instances/${again.inst.id}`), 204);
});

test('a restarted daemon keeps its bases; BASE_BOOT=off boots cold and builds none', async () => {
  // Those of the current initrd (the touch above made the others stale: removed at the restart).
  const fp = (await waitBase(isDefault, 'of the default shape'))[1].fingerprint;
  const before = Object.entries(bases()).filter(([, b]) => b.fingerprint === fp).map(([n]) => n).sort();
  await d.stop({ keepData: true });
  d = await startDaemon({ netns: NS, env });
  token = d.token();
  assert.deepEqual(Object.keys(bases()).sort(), before, 'kept, not rebuilt');
  const r = await run('after-restart', { cmd: ['true'] });
  assert.equal(r.created.boot, 'base');
  assert.equal(await del(`/instances/${r.inst.id}`), 204);
  assert.doesNotMatch(d.log, /base ready/);

  await d.stop({ keepData: true });
  d = await startDaemon({ netns: NS, env: { ...env, BASE_BOOT: 'off' } });
  token = d.token();
  const c = await run('cold-only', { cmd: ['sh', '-c', 'cat /proc/cmdline'] });
  assert.equal(c.created.boot, 'cold');
  assert.doesNotMatch(c.lines.join('\n'), /hypeman\.base/);
  assert.equal(await del(`/instances/${c.inst.id}`), 204);
  assert.doesNotMatch(d.log, /base ready|base not built/);
  // No build runs now: none of the builds before left its TAP behind.
  assert.doesNotMatch(ip('-n', NS, '-o', 'link', 'show'), /hmb-/);
  assert.deepEqual(Object.keys(bases()).sort(), before, 'off: left alone, not removed');
});
