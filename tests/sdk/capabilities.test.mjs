// GET /capabilities through the official SDK's client.capabilities.get()
// (@onkernel/hypeman 0.28.0, unmodified), the accelerator decision as the
// daemon logs and reports it (derived here again from the host's own facts),
// ACCEL forced either way, and a create naming a runtime that cannot run
// here: a 400 with the reason, and nothing made.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Hypeman from '@onkernel/hypeman';
import { startDaemon } from '../harness/daemon.mjs';

// What `auto` must choose on this host, from the same evidence, read independently.
function expectedAccel() {
  if (!existsSync('/dev/kvm')) return 'tcg';
  if (existsSync('/sys/module/kvm_pvm')) return 'tcg';
  const flags = readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('flags')).join(' ').split(/\s+/);
  return flags.includes('vmx') || flags.includes('svm') ? 'kvm' : 'tcg';
}

let d, client;
before(async () => {
  d = await startDaemon();
  client = new Hypeman({ baseURL: d.url, apiKey: d.token(), maxRetries: 0 });
});
after(async () => { await d.stop(); });

test('capabilities.get(): runtimes, accelerator, network, platforms and features', async () => {
  const c = await client.capabilities.get();
  assert.equal(c.host.os, 'linux');
  assert.equal(c.host.arch, 'amd64');
  assert.equal(c.server.api_version, c.server.version);
  assert.deepEqual(c.runtimes.map((r) => r.name), ['cloud-hypervisor', 'firecracker', 'qemu', 'qemu-microvm']);
  const qemu = c.runtimes.find((r) => r.name === 'qemu');
  assert.equal(qemu.available, true, qemu.reason);
  assert.deepEqual(qemu.features, ['disk-io-limit', 'fork', 'snapshots', 'standby']);
  assert.deepEqual(c.default_runtime, { name: 'qemu', available: true });
  for (const name of ['cloud-hypervisor', 'firecracker']) {
    const r = c.runtimes.find((x) => x.name === name);
    assert.equal(r.available, false);
    assert.match(r.reason, new RegExp(`no ${name} backend`));
    assert.deepEqual(r.features, []);
  }
  const want = expectedAccel();
  assert.equal(c.accelerator.name, want, c.accelerator.reason);
  assert.equal(qemu.accelerator, want);
  assert.equal(c.accelerator.kvm_usable, want === 'kvm');
  if (want === 'tcg') assert.ok(c.accelerator.kvm_reason.length > 0);
  assert.match(c.accelerator.reason, /^auto: /);
  if (existsSync('/sys/module/kvm_pvm')) assert.match(c.accelerator.reason, /paravirtual KVM \(module kvm_pvm\)/);
  // The daemon logged the same decision at start-up.
  assert.match(d.log, new RegExp(`msg="accelerator" accel=${want} reason="auto: `));
  assert.equal(c.network.model, 'bridge');
  assert.equal(c.network.guest_to_guest, false);
  assert.equal(c.network.gateway, undefined, 'no gateway with NETWORK_ENABLED=false');
  assert.deepEqual(c.images, { platforms: ['linux/amd64'], default_platform: 'linux/amd64' });
  assert.deepEqual(c.features, ['exec', 'images', 'ingress', 'instances', 'logs', 'snapshots', 'volumes']);
});

test('a create naming a runtime that cannot run here is a 400 with its reason; nothing is made', async () => {
  for (const hypervisor of ['firecracker', 'cloud-hypervisor']) {
    await assert.rejects(client.instances.create({ name: `hv-${hypervisor}`, image: 'busybox', hypervisor }), (e) => {
      assert.ok(e instanceof Hypeman.BadRequestError, e.constructor.name);
      assert.equal(e.error.code, 'unsupported_hypervisor');
      assert.match(e.error.message, new RegExp(`\`${hypervisor}\` cannot run on this host: this build has no ${hypervisor} backend`));
      return true;
    });
  }
  const r = await d.fetch('/instances', { method: 'POST', token: d.token(), headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'hv-xen', image: 'busybox', hypervisor: 'xen' }) });
  assert.equal(r.status, 400);
  assert.match((await r.json()).message, /unknown hypervisor `xen`/);
  assert.deepEqual(await client.instances.list(), []);
});

test('ACCEL=tcg is obeyed; ACCEL=kvm starts only where KVM is usable, else refuses naming why', async () => {
  const t = await startDaemon({ env: { ACCEL: 'tcg' } });
  try {
    const c = await new Hypeman({ baseURL: t.url, apiKey: t.token() }).capabilities.get();
    assert.equal(c.accelerator.name, 'tcg');
    assert.equal(c.accelerator.reason, 'ACCEL=tcg');
  } finally { await t.stop(); }
  if (expectedAccel() === 'kvm') {
    const k = await startDaemon({ env: { ACCEL: 'kvm' } });
    try {
      assert.equal((await new Hypeman({ baseURL: k.url, apiKey: k.token() }).capabilities.get()).accelerator.name, 'kvm');
    } finally { await k.stop(); }
  } else {
    await assert.rejects(refusedStart('kvm'), (e) => {
      assert.match(e.message, /daemon exited 1 before listening/);
      assert.match(e.message, /ACCEL=kvm, but KVM is not usable on this host: /);
      return true;
    });
  }
  await assert.rejects(refusedStart('fast'), /ACCEL must be auto, kvm or tcg, got `fast`/);
});

// A start expected to fail, in a data dir removed afterwards.
async function refusedStart(accel) {
  const dir = mkdtempSync(join(tmpdir(), 'hypeman-test-'));
  try {
    const t = await startDaemon({ env: { ACCEL: accel, DATA_DIR: dir } });
    await t.stop();
    throw new Error(`the daemon started with ACCEL=${accel}`);
  } finally { rmSync(dir, { recursive: true, force: true }); }
}
