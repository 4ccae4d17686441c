// The Unikraft Cloud API under /v1, driven by the official, unmodified
// @unikraft/cloud SDK (UKC_TOKEN and UKC_METRO=<the daemon's URL>, as a user
// points it at a self-hosted server), its porcelain (ukc.instances.*) and its
// generated plumbing (ukc.api.platform.instances.*) for what the porcelain
// does not send, against real QEMU guests. The same instances are seen
// through the Hypeman SDK: one engine, two dialects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import Hypeman from '@onkernel/hypeman';
import { UnikraftCloud, UnikraftCloudError } from '@unikraft/cloud';
import { startDaemon } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, token, image, ukc, P, hm;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  token = d.token();
  image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  const { img } = await waitImage(d, token, image);
  assert.equal(img.status, 'ready', img.error);
  process.env.UKC_TOKEN = token;
  process.env.UKC_METRO = d.url;
  ukc = new UnikraftCloud();
  P = ukc.api.platform.instances;
  hm = new Hypeman({ baseURL: d.url, apiKey: token, maxRetries: 0, timeout: 120000 });
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// A raw /v1 request: status and the parsed envelope.
async function raw(method, path, { body, auth = true, type = 'application/json' } = {}) {
  const headers = {};
  if (auth) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = type;
  const r = await fetch(d.url + path, { method, headers, body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)) });
  const text = await r.text();
  return { status: r.status, env: JSON.parse(text) };
}

// A GET with a JSON body (fetch will not send one): status and the envelope.
function getWithBody(path, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const q = http.request(d.url + path, { method: 'GET', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (r) => {
      let text = '';
      r.on('data', (c) => { text += c; });
      r.on('end', () => resolve({ status: r.statusCode, env: JSON.parse(text) }));
    });
    q.on('error', reject);
    q.end(data);
  });
}

async function names() {
  const { env } = await raw('GET', '/v1/instances?details=false');
  return env.data.instances.map((i) => i.name).sort();
}

async function rejects(promise, status, re) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof UnikraftCloudError, `not a UnikraftCloudError: ${e}`);
    if (status !== undefined) assert.equal(e.status, status, e.message);
    if (re) assert.match(e.message, re);
    return true;
  });
}

function envelopeShape(env) {
  assert.ok(['success', 'error', 'partial_success'].includes(env.status), JSON.stringify(env));
  assert.equal(typeof env.op_time_us, 'number');
  assert.ok(env.op_time_us >= 0);
}

test('the envelope: auth, unknown routes, unreadable bodies, every one with op_time_us', async () => {
  let r = await raw('GET', '/v1/instances', { auth: false });
  assert.equal(r.status, 401);
  envelopeShape(r.env);
  assert.equal(r.env.status, 'error');
  assert.equal(r.env.errors[0].status, 401);
  r = await raw('GET', '/v1/no-such-thing');
  assert.equal(r.status, 404);
  assert.equal(r.env.status, 'error');
  envelopeShape(r.env);
  r = await raw('POST', '/v1/instances', { body: '{"image": ' });
  assert.equal(r.status, 400);
  assert.match(r.env.message, /not valid JSON/);
  r = await raw('POST', '/v1/instances', { body: 'x', type: 'text/plain' });
  assert.equal(r.status, 415);
  envelopeShape(r.env);
  // a token without the scope
  const ro = d.token({ scopes: ['instance:read'] });
  const f = await fetch(d.url + '/v1/instances/stop', { method: 'PUT', headers: { authorization: `Bearer ${ro}`, 'content-type': 'application/json' }, body: '[{"name":"x"}]' });
  assert.equal(f.status, 403);
  assert.match((await f.json()).message, /instance:write/);
  // the Hypeman API keeps its own error shape
  const h = await fetch(d.url + '/instances/nope', { headers: { authorization: `Bearer ${token}` } });
  assert.deepEqual(Object.keys(await h.json()).sort(), ['code', 'message']);
});

test('healthz: public, each check healthy on this host, with versions', async () => {
  const r = await raw('GET', '/v1/healthz', { auth: false });
  assert.equal(r.status, 200);
  envelopeShape(r.env);
  // (this daemon runs with networking off: no network check)
  assert.deepEqual(r.env.data.checks, { api: 'healthy', vmm: 'healthy', guest_kernel: 'healthy' });
  assert.match(r.env.data.versions.hypeman, /\d/);
  const h = await ukc.api.platform.node.healthz();
  assert.equal(h.status, 'success');
  assert.equal(h.data.checks.guest_kernel, 'healthy');
});

test('bad input is a 400 in the envelope naming the field, and nothing is made', async () => {
  const before = await names();
  const cases = [
    [{ image, memory_mb: 'lots' }, /`memory_mb` must be an integer/],
    [{ image, vcpus: 0 }, /`vcpus` must be an integer from 1/],
    [{ image, args: 'sh' }, /`args` must be an array/],
    [{ image, colour: 'red' }, /`colour` is not a field/],
    [{ image, replicas: 17 }, /`replicas` must be an integer from 0 to 16/],
    [{ image, replicas: 1, volumes: [{ name: 'v', size_mb: 8, at: '/v' }] }, /a new volume cannot be made for replicas/],
    [{ image, features: ['autokill'] }, /`features\[0\]`: the one feature is delete-on-stop/],
    [{ image, restart_policy: 'always', features: ['delete-on-stop'] }, /cannot be combined with the delete-on-stop/],
    [{ image, restart_policy: 'sometimes' }, /`restart_policy` must be never, always or on-failure/],
    [{ image, scale_to_zero: { policy: 'sometimes' } }, /`scale_to_zero.policy` must be off, on or idle/],
    [{ image, scale_to_zero: { policy: 'on', stateful: true, notify_time_ms: 100 } }, /`scale_to_zero.notify_time_ms`: notices before a standby/],
    [{ image, scale_to_zero: { policy: 'on', stateful: true, cooldown_time_ms: 10 } }, /`scale_to_zero`: `cooldown_time_ms` must be an integer from 1000/],
    [{ image, scale_to_zero: { policy: 'on', stateful: true }, features: ['delete-on-stop'] }, /`scale_to_zero` cannot be combined with the delete-on-stop/],
    [{ image, timeout_s: 5 }, /needs `autostart: true`/],
    [{ image: { url: image, pull_policy: 'always' } }, /`image.pull_policy`/],
    [{ name: 'Not A Name', image }, /invalid instance name/],
    [{ image, memory_mb: 16 }, /memory of 16MB is out of range/],
    [{ memory_mb: 128 }, /`image` is required/],
    [[{ image }], /must be a CreateInstanceRequest object/],
  ];
  for (const [body, re] of cases) {
    const r = await raw('POST', '/v1/instances', { body });
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.env)}`);
    assert.equal(r.env.status, 'error');
    assert.match(r.env.message, re, JSON.stringify(body));
    envelopeShape(r.env);
  }
  // the SDK surfaces the same as its error, with the status
  await rejects(ukc.instances.create({ image, vcpus: 'two' }), 400, /`vcpus` must be an integer/);
  // bulk bodies: both refs, neither, a wrong type, an object where an array of refs belongs
  for (const [body, re] of [
    [[{ uuid: '0f3e1c9a-8a3b-4d55-9a52-7a8a3c5e1f00', name: 'x' }], /item \[0\]: give one of `uuid` and `name`, not both/],
    [[{}], /item \[0\]: `uuid` or `name` is required/],
    [[{ name: 7 }], /`name` must be a string/],
    [[], /lists no instance/],
    ['{"name": 5}', /`name` must be a string/],
  ]) {
    const r = await raw('PUT', '/v1/instances/stop', { body });
    // a per-entry option error names the entry and says error; a broken list is a 400
    if (r.status === 200) {
      assert.equal(r.env.status, 'error');
      assert.match(r.env.data.instances[0].message, re);
    } else {
      assert.equal(r.status, 400, JSON.stringify(r.env));
      assert.match(r.env.message, re);
    }
  }
  const r = await raw('PUT', '/v1/instances/stop', { body: [{ name: 'x', drain_timeout_ms: -2 }] });
  assert.equal(r.status, 200); // an item's own options fail that item
  assert.match(r.env.data.instances[0].message, /No instance|`drain_timeout_ms` must be an integer from -1/);
  const q = await raw('PUT', '/v1/instances/stop', { body: [{ name: 'x', quick: true }] });
  assert.equal(q.status, 400);
  assert.match(q.env.message, /`\[0\]\.quick`: quick stops are not available yet/);
  assert.deepEqual(await names(), before);
});

test('porcelain: create (autostart, timeout_s) -> get -> list -> logs -> metrics -> stop -> start -> suspend -> start -> delete', { timeout: 300000 }, async () => {
  const made = await ukc.instances.create({
    name: 'ukc-life', image, memory_mb: 256, autostart: true, timeout_s: 90, env: { WHO: 'ukc' }, tags: ['team=core', 'demo'],
    args: ['sh', '-c', 'echo "hello from $WHO"; i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done'],
  });
  assert.match(made.uuid, UUID);
  assert.equal(made.name, 'ukc-life');
  assert.equal(made.state, 'running');
  assert.equal(made.memory_mb, 256);
  assert.equal(made.vcpus, 1);
  assert.equal(made.image, image);
  assert.deepEqual(made.env, { WHO: 'ukc' });
  assert.deepEqual([...made.tags].sort(), ['demo', 'team=core']);
  assert.equal(made.restart_policy, 'never');
  assert.equal(made.metro, d.url); // the SDK's own tag

  // get by name and by uuid (the by-uuid route through the plumbing)
  const got = await ukc.instances.get({ name: 'ukc-life' });
  assert.equal(got.uuid, made.uuid);
  assert.equal(got.state, 'running');
  assert.ok(got.uptime_ms >= 0);
  assert.ok(got.started_at);
  const byUuid = await P.getInstanceByUuid(made.uuid, { details: true });
  assert.equal(byUuid.status, 'success');
  assert.equal(byUuid.data.instances[0].name, 'ukc-life');
  const basic = await P.getInstanceByUuid(made.uuid, { details: false });
  assert.deepEqual(Object.keys(basic.data.instances[0]).sort(), ['name', 'state', 'status', 'uuid']);

  // the Hypeman API sees the same instance
  const h = await hm.instances.get('ukc-life');
  assert.equal(h.state, 'Running');
  assert.equal(h.size, '256MB');

  // logs: base64 byte ranges over the console output
  let out = '', bytes = Buffer.alloc(0);
  for (let i = 0; i < 100 && !/tick 2/.test(out); i++) {
    const lg = await ukc.instances.get({ uuid: made.uuid }).logs();
    bytes = Buffer.from(lg.output, 'base64');
    out = bytes.toString('utf8');
    assert.equal(lg.range.start, 0);
    assert.equal(lg.range.end - lg.range.start, Buffer.from(lg.output, 'base64').length);
    assert.ok(lg.available.end >= lg.range.end);
    if (!/tick 2/.test(out)) await new Promise((r) => setTimeout(r, 200));
  }
  assert.match(out, /hello from ukc/);
  const tail = await ukc.instances.logs({ uuid: made.uuid }, { offset: -8, limit: 4 });
  assert.equal(tail.range.end - tail.range.start, 4);
  assert.equal(tail.range.start, tail.available.end - 8);
  const at = await P.getInstanceLogs({ name: ['ukc-life'], offset: [6], limit: [4] });
  assert.deepEqual(Buffer.from(at.data.instances[0].output, 'base64'), bytes.subarray(6, 10));

  const m = await ukc.instances.metrics({ name: 'ukc-life' });
  assert.ok(m.rss_bytes > 1 << 20, `rss ${m.rss_bytes}`);
  assert.ok(m.cpu_time_ms > 0);
  // the boot as the daemon saw it: VMM up to the program's start, well under the wait
  assert.ok(m.boot_time_us > 1000 && m.boot_time_us < 90e6, `boot_time_us ${m.boot_time_us}`);
  assert.equal(got.boot_time_us, m.boot_time_us);
  // the VMM's own figures: a boot has a start and no load
  assert.ok(got.vmm_start_time_us > 0 && got.vmm_start_time_us < 90e6, `vmm_start_time_us ${got.vmm_start_time_us}`);
  assert.equal(got.vmm_load_time_us, 0);
  assert.equal(got.vmm_ready_time_us, got.vmm_start_time_us);
  assert.deepEqual(got.scale_to_zero, { enabled: false, policy: 'off' });
  assert.equal(typeof m.rx_packets, 'number');
  assert.equal(typeof m.tx_packets, 'number');

  // stop does not block (as UKC's): it answers stopping, with the state it
  // left, and a wait for stopped returns once the VM is gone
  const st = await ukc.instances.get({ uuid: made.uuid }).stop();
  assert.equal(st.state, 'stopping');
  assert.equal(st.previous_state, 'running');
  const w = await ukc.instances.wait({ uuid: made.uuid }, { state: 'stopped', timeoutSeconds: 30 });
  assert.equal(w.state, 'stopped');
  // a wait for running on a stopped instance fails at once instead of hanging
  await rejects(ukc.instances.wait({ uuid: made.uuid }, { state: 'running', timeoutSeconds: 60 }), undefined, /is stopped and will not become running/);
  assert.equal((await ukc.instances.get({ name: 'ukc-life' })).state, 'stopped');
  assert.equal((await hm.instances.get('ukc-life')).state, 'Stopped');

  // start again; then suspend to standby and start (restore) from it
  const s2 = await ukc.instances.start([{ name: 'ukc-life' }]);
  assert.equal(s2[0].previous_state, 'stopped');
  const run = await ukc.instances.wait({ name: 'ukc-life' }, { state: 'running', timeoutSeconds: 90 });
  assert.equal(run.state, 'running');
  const sus = await ukc.instances.get({ name: 'ukc-life' }).suspend();
  assert.equal(sus.state, 'standby');
  assert.equal(sus.previous_state, 'running');
  assert.equal((await hm.instances.get('ukc-life')).state, 'Standby');
  const back = await P.startInstanceByUuid(made.uuid, { body: { timeout_s: 60 } });
  assert.equal(back.status, 'success', JSON.stringify(back));
  assert.equal(back.data.instances[0].state, 'running');
  // a restore: the VMM loaded the saved state; there was no boot to time
  const restored = await ukc.instances.get({ uuid: made.uuid });
  assert.ok(restored.vmm_load_time_us > 0, `vmm_load_time_us ${restored.vmm_load_time_us}`);
  assert.equal(restored.vmm_ready_time_us, restored.vmm_start_time_us + restored.vmm_load_time_us);
  assert.equal(restored.boot_time_us, undefined);

  // delete (force-stops), then it is a 404 through the SDK and gone from both APIs
  const del = await ukc.instances.get({ uuid: made.uuid }).delete();
  assert.equal(del.previous_state, 'running');
  await rejects(ukc.instances.get({ uuid: made.uuid }), 404);
  await rejects(ukc.instances.get({ name: 'ukc-life' }), 404, /No instance with name 'ukc-life'/);
  await assert.rejects(hm.instances.get('ukc-life'), (e) => e.status === 404);
});

test('autostart false makes a stopped instance; a made-up name; start boots it; the default memory is 128 MB; hostname', { timeout: 300000 }, async () => {
  const made = await ukc.instances.create({ image, hostname: 'box-one', args: ['sh', '-c', 'echo "cold-start on $(hostname)"; exec sleep 1000'] });
  assert.match(made.name, /^[a-z]+-[a-z]+-[0-9a-f]{7}$/);
  assert.equal(made.state, 'stopped');
  assert.equal(made.memory_mb, 128);
  assert.equal(made.vcpus, 1);
  assert.equal(made.started_at, undefined);
  const h = await hm.instances.get(made.name);
  assert.equal(h.state, 'Stopped');
  assert.equal(h.started_at, null);
  const s = await P.startInstances({ body: [{ uuid: made.uuid, timeout_s: 90 }] });
  assert.equal(s.status, 'success', JSON.stringify(s));
  assert.equal(s.data.instances[0].state, 'running');
  assert.equal(s.data.instances[0].previous_state, 'stopped');
  const out = await until(async () => {
    const lg = await ukc.instances.logs({ uuid: made.uuid });
    const t = Buffer.from(lg.output, 'base64').toString();
    return /cold-start on/.test(t) ? t : null;
  }, 60000, 'the first line');
  assert.match(out, /cold-start on box-one/);
  const badHost = await raw('POST', '/v1/instances', { body: { image, hostname: 'Not_A_Host' } });
  assert.equal(badHost.status, 400);
  assert.match(badHost.env.message, /invalid host name `Not_A_Host`/);
  // stop with force: at once
  const f = await P.stopInstanceByUuid(made.uuid, { body: { force: true } });
  assert.equal(f.data.instances[0].state, 'stopping');
  const t0 = Date.now();
  assert.equal((await ukc.instances.wait({ uuid: made.uuid }, { state: 'stopped', timeoutSeconds: 30 })).state, 'stopped');
  assert.ok(Date.now() - t0 < 10000, 'a forced stop gives no grace');
  await ukc.instances.delete([{ uuid: made.uuid }]);
});

test('bulk calls mix known and unknown refs: partial_success with per-entry errors (8 = no such instance)', { timeout: 300000 }, async () => {
  const a = await ukc.instances.create({ name: 'ukc-bulk-a', image });
  const b = await ukc.instances.create({ name: 'ukc-bulk-b', image });
  const mixed = await P.deleteInstances({ body: [{ name: 'ukc-bulk-a' }, { name: 'ukc-nope' }, { uuid: 'not-a-uuid' }, { uuid: b.uuid }] });
  assert.equal(mixed.status, 'partial_success');
  assert.equal(mixed.message, 'Failed to perform all operations');
  const [ea, en, eu, eb] = mixed.data.instances;
  assert.equal(ea.status, 'success');
  assert.equal(ea.uuid, a.uuid);
  assert.equal(ea.previous_state, 'stopped');
  assert.equal(en.status, 'error');
  assert.equal(en.error, 8);
  assert.equal(en.name, 'ukc-nope');
  assert.equal(eu.status, 'error');
  assert.match(eu.message, /Invalid uuid 'not-a-uuid'/);
  assert.equal(eb.status, 'success');
  // all failed: error, HTTP 200, and the porcelain throws the entry's 404
  const none = await P.stopInstances({ body: [{ name: 'ukc-nope' }] });
  assert.equal(none.status, 'error');
  assert.equal(none.data.instances[0].error, 8);
  await rejects(ukc.instances.get({ name: 'ukc-nope' }).stop(), 404);
  // a by-uuid route with an unknown uuid, and a name-like ref never matches an id prefix
  const u = await P.getInstanceByUuid('0f3e1c9a-8a3b-4d55-9a52-7a8a3c5e1f00');
  assert.equal(u.status, 'error');
  assert.equal(u.data.instances[0].error, 8);
  const c = await ukc.instances.create({ name: 'ukc-prefix', image });
  const id = (await hm.instances.get('ukc-prefix')).id;
  await rejects(ukc.instances.get({ name: id.slice(0, 6) }), 404);
  await ukc.instances.delete([{ uuid: c.uuid }]);
});

test('list: filters, details, tags, and pages the SDK walks with count and from', { timeout: 300000 }, async () => {
  const made = [];
  for (let i = 0; i < 5; i++) made.push(await ukc.instances.create({ name: `ukc-page-${i}`, image, tags: i % 2 ? ['odd'] : ['even'] }));
  const seen = [];
  for await (const i of ukc.instances.list({ pageSize: 2 })) seen.push(i.name);
  assert.deepEqual(seen.filter((n) => n.startsWith('ukc-page-')), made.map((m) => m.name));
  assert.equal(new Set(seen).size, seen.length);
  const odd = [];
  for await (const i of ukc.instances.list({ tags: ['odd'] })) odd.push(i.name);
  assert.deepEqual(odd, ['ukc-page-1', 'ukc-page-3']);
  const r = await P.getInstances({ name: ['ukc-page-0', 'ukc-page-4'], details: false });
  assert.deepEqual(r.data.instances.map((i) => i.name), ['ukc-page-0', 'ukc-page-4']);
  assert.equal(r.data.instances[0].memory_mb, undefined);
  const desc = await P.getInstances({ order: 'desc', count: 1 });
  assert.equal(desc.data.instances.length, 1);
  // from_uuid, as the API document calls `from`: the page after that instance
  const after1 = await raw('GET', `/v1/instances?from_uuid=${made[1].uuid}&count=2&details=false`);
  const viaFrom = await P.getInstances({ from: made[1].uuid, count: 2, details: false });
  assert.deepEqual(after1.env.data.instances.map((i) => i.name), viaFrom.data.instances.map((i) => i.name));
  assert.deepEqual(after1.env.data.instances.map((i) => i.name).filter((n) => n.startsWith('ukc-page-')), ['ukc-page-2', 'ukc-page-3']);
  const bad = await raw('GET', '/v1/instances?order=sideways');
  assert.equal(bad.status, 400);
  assert.match(bad.env.message, /`order` must be asc or desc/);
  await ukc.instances.delete(made.map((m) => ({ uuid: m.uuid })));
});

test('cross-API: made by the Hypeman API, seen and operated through /v1; names are one namespace', { timeout: 300000 }, async () => {
  const h = await hm.instances.create({ name: 'hm-made', image, size: '256MB', vcpus: 1, cmd: ['sh', '-c', 'exec sleep 1000'] });
  await hm.instances.wait(h.id, { state: 'Running', timeout: '90s' });
  const u = await ukc.instances.get({ name: 'hm-made' });
  assert.match(u.uuid, UUID);
  assert.equal(u.state, 'running');
  assert.equal(u.memory_mb, 256);
  // the Hypeman API finds it by the UUID too
  assert.equal((await hm.instances.get(u.uuid)).id, h.id);
  // a /v1 create cannot take the name
  const dup = await ukc.instances.create({ name: 'hm-made', image }).catch((e) => e);
  assert.ok(dup instanceof UnikraftCloudError);
  assert.match(dup.message, /already exists/);
  // stop through /v1, delete through /instances
  const st = await ukc.instances.stop([{ uuid: u.uuid }]);
  assert.equal(st[0].state, 'stopping');
  await ukc.instances.wait({ uuid: u.uuid }, { state: 'stopped', timeoutSeconds: 30 });
  assert.equal((await hm.instances.get(h.id)).state, 'Stopped');
  await hm.instances.delete(h.id);
  await rejects(ukc.instances.get({ uuid: u.uuid }), 404);

  // and the other way round: made through /v1, listed, forked, stopped and deleted through /instances
  const v = await ukc.instances.create({ name: 'ukc-made', image, autostart: true, timeout_s: 90, args: ['sh', '-c', 'exec sleep 1000'] });
  const listed = (await hm.instances.list()).find((i) => i.name === 'ukc-made');
  assert.equal(listed.state, 'Running');
  const fork = await hm.instances.fork(listed.id, { name: 'ukc-made-fork', from_running: true });
  const seen = await ukc.instances.get({ name: 'ukc-made-fork' });
  assert.match(seen.uuid, UUID);
  assert.notEqual(seen.uuid, v.uuid);
  assert.equal((await hm.instances.stop(listed.id)).state, 'Stopped');
  assert.equal((await ukc.instances.get({ uuid: v.uuid })).state, 'stopped');
  await hm.instances.delete(listed.id);
  await hm.instances.delete(fork.id);
  await rejects(ukc.instances.get({ uuid: v.uuid }), 404);
  await rejects(ukc.instances.get({ name: 'ukc-made-fork' }), 404);
});

test('wait: a time-out is an error naming the state; timeout_s 0 does not wait', { timeout: 300000 }, async () => {
  const made = await ukc.instances.create({ name: 'ukc-wait', image, autostart: true, timeout_s: 90, args: ['sh', '-c', 'exec sleep 1000'] });
  const t0 = Date.now();
  const r = await P.waitInstances({ uuid: [made.uuid], state: ['stopped'], timeout_s: [1] });
  assert.equal(r.status, 'error');
  assert.match(r.data.instances[0].message, /did not become stopped within 1000 ms \(it is running\)/);
  assert.ok(Date.now() - t0 >= 900);
  const now = await P.waitInstances({ uuid: [made.uuid], state: ['running'], timeout_s: [0] });
  assert.equal(now.status, 'success');
  assert.equal(now.data.instances[0].state, 'running');
  const bad = await raw('GET', `/v1/instances/wait?uuid=${made.uuid}&state=draining`);
  assert.equal(bad.status, 400);
  assert.match(bad.env.message, /`draining` cannot be waited for/);
  // the wait as the API document has it: a body of items, each its own state and timeout_ms
  const body = await getWithBody('/v1/instances/wait', [{ name: 'ukc-wait', state: 'running', timeout_ms: 0 }, { uuid: made.uuid, state: 'stopped', timeout_ms: 300 }, { name: 'ukc-no-such' }]);
  assert.equal(body.status, 200);
  assert.equal(body.env.status, 'partial_success', JSON.stringify(body.env));
  assert.deepEqual(body.env.data.instances.map((i) => i.status), ['success', 'error', 'error']);
  assert.match(body.env.data.instances[1].message, /did not become stopped within 300 ms/);
  assert.equal(body.env.data.instances[2].error, 8);
  const one = await getWithBody(`/v1/instances/${made.uuid}/wait`, { timeout_ms: 100, state: 'running' });
  assert.equal(one.env.data.instances[0].state, 'running');
  for (const [path, b, re] of [
    [`/v1/instances/wait?state=running`, [{ name: 'ukc-wait' }], /`state`: give the wait in the body or in the query, not both/],
    ['/v1/instances/wait', [{ name: 'ukc-wait', state: 'draining' }], /item \[0\]: `state`: `draining` cannot be waited for/],
    ['/v1/instances/wait', [{ name: 'ukc-wait', timeout_ms: 'soon' }], /item \[0\]: `timeout_ms` must be an integer/],
    [`/v1/instances/${made.uuid}/wait`, [{ state: 'running' }], /the body must be an object/],
  ]) {
    const x = await getWithBody(path, b);
    assert.equal(x.status, 400, `${path} ${JSON.stringify(b)}: ${JSON.stringify(x.env)}`);
    assert.match(x.env.message, re);
  }
  await ukc.instances.delete([{ uuid: made.uuid }]);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Poll fn until it returns something truthy (or give up with the last value shown).
async function until(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(250);
  }
  assert.fail(`${what}: not within ${ms} ms (last: ${JSON.stringify(last)})`);
}

test('restart policy: on-failure restarts a crashing program with a back-off until a user stops it; a clean exit is not restarted; stop_reason says who stopped', { timeout: 300000 }, async () => {
  const crash = await ukc.instances.create({
    name: 'ukc-crash', image, autostart: true, restart_policy: 'on-failure',
    args: ['sh', '-c', 'echo crash-run; exit 3'],
  });
  const clean = await ukc.instances.create({
    name: 'ukc-clean', image, autostart: true, restart_policy: 'on_failure', // the seed's spelling
    args: ['sh', '-c', 'echo clean-run; exit 0'],
  });
  assert.equal(crash.restart_policy, 'on-failure');
  assert.equal(clean.restart_policy, 'on-failure');
  // The first restart is at once, the second after 5 s: between them the
  // instance is stopped with the next attempt announced.
  const pending = await until(async () => {
    const i = await ukc.instances.get({ name: 'ukc-crash' });
    return i.state === 'stopped' && i.restart?.attempt >= 1 && i.restart?.next_at ? i : null;
  }, 120000, 'a stopped crash with a restart scheduled');
  assert.ok(pending.restart_count >= 1, JSON.stringify(pending));
  assert.ok(pending.start_count >= 2, JSON.stringify(pending));
  assert.equal(pending.exit_code, 3);
  assert.equal(pending.stop_reason, 3); // the program exited, then the kernel
  assert.ok(Date.parse(pending.restart.next_at) > Date.parse(pending.stopped_at));
  const h = await hm.instances.get('ukc-crash');
  assert.equal(h.state, 'Stopped');
  // A user's stop ends the sequence: nothing is scheduled and nothing comes.
  const st = await P.stopInstances({ body: [{ name: 'ukc-crash' }] });
  assert.equal(st.status, 'success', JSON.stringify(st));
  const after = await ukc.instances.get({ name: 'ukc-crash' });
  assert.equal(after.restart?.next_at, undefined, JSON.stringify(after));
  await sleep(6000);
  const later = await ukc.instances.get({ name: 'ukc-crash' });
  assert.equal(later.state, 'stopped');
  assert.equal(later.restart_count, after.restart_count);
  // exit 0 under on-failure: stopped once, never restarted
  const c = await until(async () => {
    const i = await ukc.instances.get({ name: 'ukc-clean' });
    return i.state === 'stopped' ? i : null;
  }, 120000, 'the clean exit');
  assert.equal(c.exit_code, 0);
  assert.equal(c.restart_count, 0);
  assert.equal(c.start_count, 1);
  assert.equal(c.restart, undefined);
  // a user's stop, graceful and forced
  await ukc.instances.delete([{ name: 'ukc-crash' }, { name: 'ukc-clean' }]);
  const s = await ukc.instances.create({ name: 'ukc-stops', image, autostart: true, timeout_s: 90, args: ['sh', '-c', 'exec sleep 1000'] });
  await ukc.instances.get({ uuid: s.uuid }).stop();
  await ukc.instances.wait({ uuid: s.uuid }, { state: 'stopped', timeoutSeconds: 30 });
  assert.equal((await ukc.instances.get({ uuid: s.uuid })).stop_reason, 15); // user: app and kernel ended cleanly
  await P.startInstances({ body: [{ uuid: s.uuid, timeout_s: 90 }] });
  await P.stopInstances({ body: [{ uuid: s.uuid, force: true }] });
  await ukc.instances.wait({ uuid: s.uuid }, { state: 'stopped', timeoutSeconds: 30 });
  assert.equal((await ukc.instances.get({ uuid: s.uuid })).stop_reason, 28); // forced by the user
  assert.equal((await ukc.instances.get({ uuid: s.uuid })).start_count, 2);
  await ukc.instances.delete([{ uuid: s.uuid }]);
  // a restart policy and delete-on-stop do not go together
  const both = await raw('POST', '/v1/instances', { body: { image, restart_policy: 'always', features: ['delete-on-stop'] } });
  assert.equal(both.status, 400);
  assert.match(both.env.message, /cannot be combined with the delete-on-stop/);
  const odd = await raw('POST', '/v1/instances', { body: { image, restart_policy: 'sometimes' } });
  assert.equal(odd.status, 400);
  assert.match(odd.env.message, /`restart_policy` must be never, always or on-failure/);
});

test('delete-on-stop: the instance goes when its program ends; delete_lock refuses deletes from both APIs until unset', { timeout: 300000 }, async () => {
  const d1 = await ukc.instances.create({ name: 'ukc-dos', image, autostart: true, features: ['delete-on-stop'], args: ['sh', '-c', 'echo bye'] });
  assert.deepEqual(d1.features, ['delete-on-stop']);
  await until(async () => !(await names()).includes('ukc-dos'), 120000, 'delete on stop');
  await assert.rejects(hm.instances.get('ukc-dos'), (e) => e.status === 404);

  const l = await ukc.instances.create({ name: 'ukc-locked', image });
  const set = await P.updateInstances({ body: [{ uuid: l.uuid, prop: 'delete_lock', op: 'set', value: true, id: 'lock-1' }] });
  assert.equal(set.status, 'success', JSON.stringify(set));
  assert.equal(set.data.instances[0].id, 'lock-1');
  assert.equal((await ukc.instances.get({ uuid: l.uuid })).delete_lock, true);
  const refused = await P.deleteInstances({ body: [{ uuid: l.uuid }] });
  assert.equal(refused.status, 'error');
  assert.match(refused.data.instances[0].message, /has a delete lock/);
  await assert.rejects(hm.instances.delete((await hm.instances.get('ukc-locked')).id), (e) => e.status === 409 && /delete lock/.test(e.message));
  assert.ok((await names()).includes('ukc-locked'));
  const unset = await P.updateInstanceByUuid(l.uuid, { body: { prop: 'delete_lock', op: 'del' } });
  assert.equal(unset.status, 'success', JSON.stringify(unset));
  await ukc.instances.delete([{ uuid: l.uuid }]);
  assert.ok(!(await names()).includes('ukc-locked'));
});

test('update: props and ops on a stopped instance take effect at its start; a running one takes env and tags only', { timeout: 300000 }, async () => {
  const made = await ukc.instances.create({ name: 'ukc-upd', image, env: { KEEP: 'k', DROP: 'd' }, tags: ['a', 'b=1'], args: ['sh', '-c', 'echo old'] });
  const r = await ukc.instances.edit({ uuid: made.uuid })
    .set({ memory_mb: 192, vcpus: 2, args: ['sh', '-c', 'echo "new $KEEP ${DROP:-none} $ADDED"; exec sleep 1000'] })
    .add({ env: { ADDED: 'yes' }, tags: ['c'] })
    .del({ env: ['DROP'], tags: ['a'] })
    .apply();
  assert.equal(r.status, 'success', JSON.stringify(r));
  const got = await ukc.instances.get({ uuid: made.uuid });
  assert.equal(got.memory_mb, 192);
  assert.equal(got.vcpus, 2);
  assert.deepEqual(got.env, { KEEP: 'k', ADDED: 'yes' });
  assert.deepEqual([...got.tags].sort(), ['b=1', 'c']);
  assert.deepEqual(got.args, ['sh', '-c', 'echo "new $KEEP ${DROP:-none} $ADDED"; exec sleep 1000']);
  // the Hypeman API sees the new sizes
  const h = await hm.instances.get('ukc-upd');
  assert.equal(h.size, '192MB');
  assert.equal(h.vcpus, 2);
  // it boots with them
  await P.startInstances({ body: [{ uuid: made.uuid, timeout_s: 90 }] });
  const out = await until(async () => {
    const lg = await ukc.instances.logs({ uuid: made.uuid });
    const s = Buffer.from(lg.output, 'base64').toString();
    return /new k none yes/.test(s) ? s : null;
  }, 60000, 'the new command');
  assert.doesNotMatch(out, /\bold\b/);
  // running: sizes are refused per entry (nothing changes), env and tags go on
  const mixed = await P.updateInstances({ body: [
    { uuid: made.uuid, prop: 'memory_mb', op: 'set', value: 512 },
    { uuid: made.uuid, prop: 'env', op: 'set', value: { ONLY: 'this' } },
    { uuid: made.uuid, prop: 'colour', op: 'set', value: 1 },
    { name: 'ukc-nope', prop: 'tags', op: 'set', value: [] },
  ] });
  assert.equal(mixed.status, 'partial_success');
  const [m0, m1, m2, m3] = mixed.data.instances;
  assert.equal(m0.status, 'error');
  assert.match(m0.message, /only while it is Stopped/);
  assert.equal(m1.status, 'success');
  assert.equal(m2.status, 'error');
  assert.match(m2.message, /`prop` must be one of/);
  assert.equal(m3.error, 8);
  const now = await ukc.instances.get({ uuid: made.uuid });
  assert.equal(now.memory_mb, 192);
  assert.deepEqual(now.env, { ONLY: 'this' });
  // scale_to_zero is the engine's auto-standby: set through /v1, seen through both APIs, del turns it off
  const stz = await P.updateInstanceByUuid(made.uuid, { body: { prop: 'scale_to_zero', op: 'set', value: { policy: 'on', stateful: true, cooldown_time_ms: 90000 } } });
  assert.equal(stz.status, 'success', JSON.stringify(stz));
  assert.deepEqual((await ukc.instances.get({ uuid: made.uuid })).scale_to_zero, { enabled: true, policy: 'on', stateful: true, cooldown_time_ms: 90000 });
  assert.deepEqual((await hm.instances.get(made.uuid)).auto_standby, { enabled: true, idle_timeout: '1m30s', ignore_source_cidrs: [], ignore_destination_ports: [] });
  // without stateful (false by default): stopped when idle, booted by traffic
  const stz2 = await P.updateInstanceByUuid(made.uuid, { body: { prop: 'scale_to_zero', op: 'set', value: { policy: 'on' } } });
  assert.equal(stz2.status, 'success', JSON.stringify(stz2));
  assert.deepEqual((await ukc.instances.get({ uuid: made.uuid })).scale_to_zero, { enabled: true, policy: 'on', stateful: false, cooldown_time_ms: 1000 });
  assert.equal((await P.updateInstanceByUuid(made.uuid, { body: { prop: 'scale_to_zero', op: 'del' } })).status, 'success');
  assert.deepEqual((await ukc.instances.get({ uuid: made.uuid })).scale_to_zero, { enabled: false, policy: 'off' });
  // an unreadable body is a 400 for all
  const bad = await raw('PATCH', '/v1/instances', { body: [{ uuid: made.uuid, prop: 'env', op: 'set', value: {}, extra: 1 }] });
  assert.equal(bad.status, 400);
  assert.match(bad.env.message, /`\[0\]\.extra`/);
  await ukc.instances.delete([{ uuid: made.uuid }]);
});

test('branch_from: a create that forks a running instance (its own uuid and name, the source runs on); a stopped one makes a stopped copy; other fields are refused', { timeout: 300000 }, async () => {
  const src = await ukc.instances.create({
    name: 'ukc-src', image, autostart: true, timeout_s: 90, env: { FROM: 'src' }, memory_mb: 192,
    args: ['sh', '-c', 'echo "branch $FROM"; exec sleep 1000'],
  });
  const br = await ukc.instances.create({ name: 'ukc-branch', branch_from: { name: 'ukc-src' }, autostart: true, timeout_s: 90 });
  assert.match(br.uuid, UUID);
  assert.notEqual(br.uuid, src.uuid);
  assert.equal(br.state, 'running');
  assert.equal(br.memory_mb, 192);
  assert.deepEqual(br.env, { FROM: 'src' });
  assert.equal((await ukc.instances.get({ uuid: src.uuid })).state, 'running');
  // the copy runs the same program, its own process: exec-free check through the Hypeman API
  const h = await hm.instances.get('ukc-branch');
  assert.equal(h.state, 'Running');
  assert.notEqual(h.id, (await hm.instances.get('ukc-src')).id);
  // from a stopped source, without autostart: a stopped copy with a made-up name
  await ukc.instances.stop([{ uuid: src.uuid }]);
  await ukc.instances.wait({ uuid: src.uuid }, { state: 'stopped', timeoutSeconds: 30 });
  const cold = await ukc.instances.create({ branch_from: { uuid: src.uuid } });
  assert.match(cold.name, /^[a-z]+-[a-z]+-[0-9a-f]{7}$/);
  assert.equal(cold.state, 'stopped');
  // refused: other fields, an unknown source (entry error 8), a bad ref
  for (const [body, re] of [
    [{ branch_from: { name: 'ukc-src' }, image }, /`image` cannot be combined with `branch_from`/],
    [{ branch_from: { name: 'ukc-src' }, memory_mb: 256 }, /`memory_mb` cannot be combined/],
    [{ branch_from: 'ukc-src' }, /`branch_from` must be an object with a `uuid` or a `name`/],
  ]) {
    const r = await raw('POST', '/v1/instances', { body });
    assert.equal(r.status, 400, JSON.stringify(r.env));
    assert.match(r.env.message, re);
  }
  const nope = await P.createInstance({ body: { branch_from: { name: 'ukc-nope' } } });
  assert.equal(nope.status, 'error');
  assert.equal(nope.data.instances[0].error, 8);
  await ukc.instances.delete([{ uuid: br.uuid }, { uuid: cold.uuid }, { uuid: src.uuid }]);
});

test('templates: a stopped instance becomes a template (never runs, listed apart); creates from it are running copies; only tags and the lock change; delete', { timeout: 300000 }, async () => {
  const base = await ukc.instances.create({ name: 'ukc-tmpl', image, env: { T: 'tmpl' }, args: ['sh', '-c', 'echo "from $T"; exec sleep 1000'] });
  const running = await ukc.instances.create({ name: 'ukc-tmpl-busy', image, autostart: true, timeout_s: 90, args: ['sh', '-c', 'exec sleep 1000'] });
  const made = await P.createTemplateInstances({ body: [{ uuid: base.uuid }, { uuid: running.uuid }] });
  assert.equal(made.status, 'partial_success', JSON.stringify(made));
  assert.equal(made.data.instances[0].state, 'template');
  assert.equal(made.data.instances[0].previous_state, 'stopped');
  assert.match(made.data.instances[1].message, /only a Stopped instance can become a template/);
  // listed apart
  const tl = await P.getTemplateInstances({});
  assert.deepEqual(tl.data.instances.map((i) => i.name), ['ukc-tmpl']);
  assert.ok(!(await names()).includes('ukc-tmpl'));
  assert.equal((await P.getTemplateInstanceByUuid(base.uuid)).data.instances[0].state, 'template');
  assert.equal((await P.getTemplateInstanceByUuid(running.uuid)).data.instances[0].error, 8);
  // it never runs, through either API
  const st = await P.startInstances({ body: [{ uuid: base.uuid }] });
  assert.equal(st.status, 'error');
  assert.match(st.data.instances[0].message, /is a template: it cannot be started/);
  await assert.rejects(hm.instances.start((await hm.instances.get('ukc-tmpl')).id), (e) => e.status === 409);
  // create from it: a copy with its own identity, running its program
  const c = await ukc.instances.create({ name: 'ukc-from-tmpl', template: { name: 'ukc-tmpl' }, autostart: true, timeout_s: 90 });
  assert.equal(c.state, 'running');
  assert.notEqual(c.uuid, base.uuid);
  assert.deepEqual(c.env, { T: 'tmpl' });
  await until(async () => /from tmpl/.test(Buffer.from((await ukc.instances.logs({ uuid: c.uuid })).output, 'base64').toString()), 60000, 'the copy runs');
  const notT = await P.createInstance({ body: { template: { uuid: running.uuid } } });
  assert.equal(notT.status, 'error');
  assert.equal(notT.data.instances[0].error, 8);
  // updates: tags and the lock only
  const up = await P.updateTemplateInstances({ body: [
    { uuid: base.uuid, prop: 'tags', op: 'set', value: ['golden'] },
    { uuid: base.uuid, prop: 'memory_mb', op: 'set', value: 256 },
  ] });
  assert.equal(up.status, 'partial_success');
  assert.match(up.data.instances[1].message, /a template's `prop` is tags or delete_lock/);
  assert.deepEqual((await P.getTemplateInstanceByUuid(base.uuid)).data.instances[0].tags, ['golden']);
  // delete: a template through the template routes; an instance there is an entry error
  const del = await P.deleteTemplateInstances({ body: [{ uuid: base.uuid }, { uuid: c.uuid }] });
  assert.equal(del.status, 'partial_success');
  assert.equal(del.data.instances[0].status, 'success');
  assert.equal(del.data.instances[1].error, 8);
  assert.equal((await P.getTemplateInstances({})).data.instances.length, 0);
  await ukc.instances.delete([{ uuid: c.uuid }, { uuid: running.uuid }]);
});

test('the by-uuid routes: get, log, metrics, wait, update and delete of an instance, and get, update and delete of a template', { timeout: 120000 }, async () => {
  const a = await ukc.instances.create({ name: 'ukc-by-uuid', image });
  const lg = await P.getInstanceLogsByUuid(a.uuid);
  assert.equal(lg.status, 'success', JSON.stringify(lg));
  assert.equal(lg.data.instances[0].output, ''); // never started: nothing logged
  assert.deepEqual(lg.data.instances[0].range, { start: 0, end: 0 });
  const m = await P.getInstanceMetricsByUuid(a.uuid);
  assert.equal(m.data.instances[0].rss_bytes, 0);
  assert.equal(m.data.instances[0].boot_time_us, 0);
  const w = await P.waitInstanceByUuid(a.uuid); // default: running; a stopped instance will not get there unasked
  assert.equal(w.status, 'error');
  assert.match(w.data.instances[0].message, /is stopped and will not become running/);
  const u = await P.updateInstanceByUuid(a.uuid, { body: { prop: 'vcpus', op: 'set', value: 2 } });
  assert.equal(u.status, 'success', JSON.stringify(u));
  assert.equal((await ukc.instances.get({ uuid: a.uuid })).vcpus, 2);
  // as a template: by uuid too
  const t = await P.createTemplateInstances({ body: [{ uuid: a.uuid }] });
  assert.equal(t.status, 'success', JSON.stringify(t));
  const tu = await P.updateTemplateInstanceByUuid(a.uuid, { body: { prop: 'delete_lock', op: 'set', value: true } });
  assert.equal(tu.status, 'success', JSON.stringify(tu));
  const locked = await P.deleteTemplateInstanceByUuid(a.uuid);
  assert.equal(locked.status, 'error');
  assert.match(locked.data.instances[0].message, /delete lock/);
  await P.updateTemplateInstanceByUuid(a.uuid, { body: { prop: 'delete_lock', op: 'del' } });
  const gone = await P.deleteTemplateInstanceByUuid(a.uuid);
  assert.equal(gone.status, 'success', JSON.stringify(gone));
  // an instance by uuid
  const b = await ukc.instances.create({ name: 'ukc-by-uuid-2', image });
  const del = await P.deleteInstanceByUuid(b.uuid);
  assert.equal(del.status, 'success', JSON.stringify(del));
  assert.equal(del.data.instances[0].previous_state, 'stopped');
  assert.ok(!(await names()).includes('ukc-by-uuid-2'));
  assert.equal((await P.getInstanceByUuid(b.uuid)).data.instances[0].error, 8);
});

// The console output of an instance once it matches re (polled through /v1 logs).
async function logMatching(uuid, re, tries = 150) {
  let out = '';
  for (let i = 0; i < tries; i++) {
    const lg = await ukc.instances.logs({ uuid });
    out = Buffer.from(lg.output, 'base64').toString('utf8');
    if (re.test(out)) return out;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`no ${re} in the log of ${uuid}: ${out}`);
}

test('volumes: create and list through /v1, an instance made with an existing and a new volume mounts both, attach and detach, the Hypeman API sees the same volumes, bad input makes nothing', { timeout: 300000 }, async () => {
  const V = ukc.api.platform.volumes;
  const vol = await ukc.volumes.create({ name: 'ukc-data', size_mb: 16, tags: ['kind=data'] });
  assert.match(vol.uuid, UUID);
  assert.equal(vol.name, 'ukc-data');
  assert.equal(vol.state, 'available');
  assert.equal(vol.size_mb, 16);
  assert.deepEqual(vol.tags, ['kind=data']);
  assert.deepEqual(vol.attached_to, []);
  // the same volume through the Hypeman API (its size in whole GB, rounded up)
  const hv = await hm.volumes.get('ukc-data');
  assert.equal(hv.size_gb, 1);
  assert.deepEqual(hv.tags, { kind: 'data' });
  // get by uuid (the by-uuid route), list with a tag filter, details off
  const byUuid = await V.getVolumeByUuid(vol.uuid, { details: true });
  assert.equal(byUuid.data.volumes[0].name, 'ukc-data');
  const tagged = await V.getVolumes({ tags: 'kind=data' });
  assert.deepEqual(tagged.data.volumes.map((v) => v.name), ['ukc-data']);
  const basic = await V.getVolumes({ name: 'ukc-data', details: false });
  assert.deepEqual(Object.keys(basic.data.volumes[0]).sort(), ['name', 'state', 'status', 'uuid']);

  // an instance with the existing volume and a new one made with it
  const a = await ukc.instances.create({
    name: 'ukc-vol-a', image, autostart: true, timeout_s: 90,
    volumes: [{ name: 'ukc-data', at: '/data' }, { name: 'ukc-scratch', size_mb: 8, at: '/scratch' }],
    args: ['sh', '-c', 'echo kept > /data/note; grep -E " /(data|scratch) " /proc/mounts | cut -d" " -f2 | sort | tr "\\n" " "; echo mounted; exec sleep 1000'],
  });
  assert.equal(a.state, 'running');
  assert.deepEqual(a.volumes.map((v) => [v.name, v.at, v.readonly]).sort(), [['ukc-data', '/data', false], ['ukc-scratch', '/scratch', false]]);
  await logMatching(a.uuid, /\/data \/scratch mounted/);
  const scratch = (await V.getVolumes({ name: 'ukc-scratch' })).data.volumes[0];
  assert.equal(scratch.size_mb, 8);
  assert.equal(scratch.state, 'mounted');
  assert.deepEqual(scratch.mounted_by, [{ uuid: a.uuid, name: 'ukc-vol-a', readonly: false }]);
  assert.deepEqual((await hm.instances.get('ukc-vol-a')).volumes.map((v) => v.mount_path).sort(), ['/data', '/scratch']);

  // an attached volume is not deleted: per entry, beside an unknown one (8)
  let r = await raw('DELETE', '/v1/volumes', { body: [{ name: 'ukc-data' }, { name: 'ukc-no-such' }] });
  assert.equal(r.status, 200);
  assert.equal(r.env.status, 'error');
  assert.match(r.env.data.volumes[0].message, /attached to instance/);
  assert.equal(r.env.data.volumes[1].error, 8);

  // stopped: the volume is idle; detach from that instance, then attach to another (read-only) that reads what the first wrote
  await ukc.instances.stop({ uuid: a.uuid });
  await ukc.instances.wait({ uuid: a.uuid }, { state: 'stopped', timeout_s: 60 });
  assert.equal((await V.getVolumeByUuid(vol.uuid)).data.volumes[0].state, 'idle');
  const det = await ukc.volumes.get({ name: 'ukc-data' }).detach({ from: { uuid: a.uuid } });
  assert.equal(det.name, 'ukc-data');
  assert.equal((await V.getVolumeByUuid(vol.uuid)).data.volumes[0].state, 'available');
  const b = await ukc.instances.create({ name: 'ukc-vol-b', image, args: ['sh', '-c', 'echo "read $(cat /data/note)"; touch /data/x 2>/dev/null || echo refused; exec sleep 1000'] });
  const att = await V.attachVolumeByUuid(vol.uuid, { body: { attach_to: { name: 'ukc-vol-b' }, at: '/data', readonly: true } });
  assert.equal(att.data.volumes[0].status, 'success', JSON.stringify(att));
  // attaching to a running instance is that entry's error
  r = await raw('PUT', '/v1/volumes/attach', { body: [{ name: 'ukc-scratch', attach_to: { name: 'ukc-vol-b' }, at: '/s' }, { name: 'ukc-scratch', attach_to: { name: 'ukc-no-such' }, at: '/s' }] });
  assert.equal(r.env.status, 'error');
  assert.equal(r.env.data.volumes[1].error, 8);
  await ukc.instances.start({ uuid: b.uuid });
  await logMatching(b.uuid, /read kept\s+refused/);
  assert.deepEqual((await ukc.instances.get({ uuid: b.uuid })).volumes, [{ uuid: vol.uuid, name: 'ukc-data', at: '/data', readonly: true }]);

  // bad input: a 400 naming the field, and no volume is made
  const vbefore = (await V.getVolumes({ details: false })).data.volumes.map((v) => v.name).sort();
  for (const [body, re] of [
    [{ name: 'ukc-v-bad' }, /`size_mb` is required/],
    [{ name: 'ukc-v-bad', size_mb: 0 }, /`size_mb` must be an integer from 1/],
    [{ name: 'ukc-v-bad', size_mb: 8, host_path: '/srv' }, /`host_path`/],
    [{ name: 'ukc-v-bad', size_mb: 8, filesystem: 'xfs' }, /`filesystem`: only `ext4`/],
    [{ name: 'Bad Name', size_mb: 8 }, /invalid volume name/],
    [[{ name: 'ukc-v-bad', size_mb: 8 }], /must be a CreateVolumeRequest object/],
  ]) {
    r = await raw('POST', '/v1/volumes', { body });
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.env)}`);
    assert.match(r.env.message, re);
  }
  // an instance create that fails after its new volume was made takes the volume back
  r = await raw('POST', '/v1/instances', { body: { name: 'ukc-vol-c', image, memory_mb: 16, volumes: [{ name: 'ukc-v-orphan', size_mb: 8, at: '/o' }] } });
  assert.equal(r.status, 400);
  r = await raw('POST', '/v1/instances', { body: { name: 'ukc-vol-c', image, volumes: [{ name: 'ukc-v-new', size_mb: 8, at: '/o' }, { name: 'ukc-no-such', at: '/p' }] } });
  assert.equal(r.env.status, 'error');
  assert.match(r.env.data.instances[0].message, /No volume with name 'ukc-no-such'/);
  r = await raw('POST', '/v1/instances', { body: { image, volumes: [{ uuid: vol.uuid, name: 'ukc-data', at: '/d' }] } });
  assert.equal(r.status, 400);
  r = await raw('POST', '/v1/instances', { body: { image, volumes: [{ name: 'x', size_mb: 8 }] } });
  assert.equal(r.status, 400);
  assert.match(r.env.message, /`at` is required/);
  assert.deepEqual((await V.getVolumes({ details: false })).data.volumes.map((v) => v.name).sort(), vbefore);
  assert.ok(!(await names()).includes('ukc-vol-c'));

  // delete: the instances, then the volumes (by uuid and in bulk)
  await ukc.instances.delete([{ uuid: a.uuid }, { uuid: b.uuid }]);
  const dv = await V.deleteVolumeByUuid(vol.uuid);
  assert.equal(dv.data.volumes[0].status, 'success');
  const bulk = await V.deleteVolumes({ body: [{ name: 'ukc-scratch' }] });
  assert.equal(bulk.status, 'success');
  await assert.rejects(hm.volumes.get('ukc-data'), (e) => e.status === 404);
  assert.deepEqual((await V.getVolumes({ name: 'ukc-scratch' })).data.volumes[0].error, 8);
});

test('images: the ready images listed through /v1 (filters by digest and tag); a pin pulls and waits; never takes only what is here; bad items make nothing', { timeout: 300000 }, async () => {
  const I = ukc.api.platform.images;
  const all = await I.getImages();
  assert.equal(all.status, 'success');
  const bb = all.data.images.find((i) => i.url === image);
  assert.ok(bb, JSON.stringify(all.data.images));
  assert.equal(bb.persistent, true);
  assert.equal(bb.initrd_or_rom, false);
  assert.ok(bb.size_in_bytes > 0);
  assert.ok(Array.isArray(bb.args));
  const h = await hm.images.get(image);
  assert.deepEqual(bb.args, h.cmd ?? []);
  assert.deepEqual((await I.getImages({ digest: h.digest })).data.images.map((i) => i.url), [image]);
  assert.deepEqual((await I.getImages({ digest: h.digest.replace(/^sha256:/, '') })).data.images.map((i) => i.url), [image]);
  assert.deepEqual((await I.getImages({ digest: 'sha256:' + '0'.repeat(64) })).data.images, []);
  assert.deepEqual((await I.getImages({ tag: 'no-such=tag' })).data.images, []);

  // pin = pull, waited for; the Hypeman API sees the pulled image
  const layers = `${reg.host}/test/layers:latest`;
  let r = await raw('GET', '/v1/images');
  assert.ok(!r.env.data.images.some((i) => i.url === layers));
  // pull_policy never: only what is here (layers is not), beside a pin of what is
  const never = await I.pinImages({ body: [{ url: layers, timeout_s: 60, pull_policy: 'never' }, { url: image, timeout_s: 60, pull_policy: 'never' }] });
  assert.equal(never.status, 'partial_success');
  assert.equal(never.data.images[0].error, 8);
  assert.equal(never.data.images[1].state, 'ready');
  const pin = await I.pinImages({ body: [{ url: layers, timeout_s: 120 }] });
  assert.equal(pin.status, 'success', JSON.stringify(pin));
  assert.equal(pin.data.images[0].url, layers);
  assert.equal(pin.data.images[0].state, 'ready');
  assert.equal((await hm.images.get(layers)).status, 'ready');
  assert.ok((await I.getImages()).data.images.some((i) => i.url === layers));
  // a registry without the image: that item's error
  const missing = await I.pinImages({ body: [{ url: `${reg.host}/test/no-such:latest`, timeout_s: 60 }] });
  assert.equal(missing.status, 'error');
  assert.match(missing.data.images[0].message, /could not be pulled/);

  // bad items: a 400 naming the field; nothing is pulled, not even the good item beside it
  const large = `${reg.host}/test/large:latest`;
  for (const [body, re] of [
    [[{ url: large, timeout_s: 60 }, { url: layers }], /item \[1\]: `timeout_s` is required/],
    [[{ url: large, timeout_s: 60 }, { url: 'Not//A Ref', timeout_s: 5 }], /item \[1\]: `url` `Not\/\/A Ref` is not an image reference/],
    [[{ url: large, timeout_s: 60, pull_policy: 'always' }], /`pull_policy` is if_not_present or never/],
    [[{ url: large, timeout_s: 60, merge_requests: false }], /always merged/],
    [[{ url: large, timeout_s: 60, headers: { a: 'b' } }], /`\[0\]\.headers`|headers/],
    [[{ timeout_s: 60 }], /`url` is required/],
    [[], /must be an array/],
  ]) {
    r = await raw('POST', '/v1/images', { body });
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.env)}`);
    assert.match(r.env.message, re);
  }
  await assert.rejects(hm.images.get(large), (e) => e.status === 404);
});

test('replicas: one create makes the instance and its replicas (<name>-1, ...), each its own; a replica that cannot be made is its own entry', { timeout: 300000 }, async () => {
  const made = await P.createInstance({ body: { name: 'ukc-rep', image, replicas: 2, autostart: true, timeout_s: 90, args: ['sh', '-c', 'echo "replica on $(hostname)"; exec sleep 1000'] } });
  assert.equal(made.status, 'success', JSON.stringify(made));
  const got = made.data.instances;
  assert.deepEqual(got.map((i) => i.name), ['ukc-rep', 'ukc-rep-1', 'ukc-rep-2']);
  assert.equal(new Set(got.map((i) => i.uuid)).size, 3);
  for (const i of got) {
    assert.equal(i.state, 'running');
    await logMatching(i.uuid, new RegExp(`replica on ${i.name}\\b`));
  }
  const hmNames = (await hm.instances.list()).map((i) => i.name);
  for (const n of ['ukc-rep', 'ukc-rep-1', 'ukc-rep-2']) assert.ok(hmNames.includes(n), n);
  // a replica whose name is taken: that entry's error, the rest are made (stopped: no autostart)
  const partial = await P.createInstance({ body: { name: 'ukc-rep', image, replicas: 1 } });
  assert.equal(partial.status, 'error');
  const p2 = await P.createInstance({ body: { name: 'ukc-rep-x', image, replicas: 2 } });
  assert.equal(p2.status, 'success');
  const p3 = await P.createInstance({ body: { name: 'ukc-rep-x-1', image, replicas: 1 } });
  assert.equal(p3.status, 'partial_success', JSON.stringify(p3));
  assert.equal(p3.data.instances[0].status, 'error');
  assert.match(p3.data.instances[0].message, /already/);
  assert.equal(p3.data.instances[1].name, 'ukc-rep-x-1-1');
  assert.equal(p3.data.instances[1].state, 'stopped');
  // no name: each a made-up one
  const anon = await P.createInstance({ body: { image, replicas: 1 } });
  assert.equal(anon.data.instances.length, 2);
  assert.notEqual(anon.data.instances[0].name, anon.data.instances[1].name);
  for (const i of anon.data.instances) assert.match(i.name, /^[a-z]+-[a-z]+-[0-9a-f]{7}$/);
  const all = [...got, ...p2.data.instances, p3.data.instances[1], ...anon.data.instances].map((i) => ({ uuid: i.uuid }));
  const del = await P.deleteInstances({ body: all });
  assert.equal(del.status, 'success', JSON.stringify(del));
});

test('checkpoints: a running instance checkpointed (its memory), listed apart and as a Hypeman snapshot, in its history; an instance made from it runs on from there; one of a stopped instance boots cold; bad input; delete', { timeout: 300000 }, async () => {
  const src = await ukc.instances.create({ name: 'ukc-ck', image, autostart: true, timeout_s: 90, args: ['sh', '-c', 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.3; done'] });
  await logMatching(src.uuid, /tick 3\b/);
  const made = await P.createCheckpointInstances({ body: [{ from: { uuid: src.uuid }, name: 'ukc-ck-1', tags: ['k=v'] }] });
  assert.equal(made.status, 'success', JSON.stringify(made));
  const ck = made.data.instances[0];
  assert.match(ck.uuid, UUID);
  assert.equal(ck.name, 'ukc-ck-1');
  assert.equal(ck.state, 'checkpoint');
  assert.equal((await ukc.instances.get({ uuid: src.uuid })).state, 'running'); // the source runs on
  // the same object through the Hypeman API: a Standby snapshot of the source
  const hs = (await hm.snapshots.list()).find((s) => s.name === 'ukc-ck-1');
  assert.equal(hs.kind, 'Standby');
  assert.equal(hs.source_instance_name, 'ukc-ck');
  // get by uuid, list, history; not an instance
  const g = (await P.getCheckpointInstanceByUuid(ck.uuid, { details: true })).data.instances[0];
  assert.equal(g.stateful, true);
  assert.equal(g.image, image);
  assert.deepEqual(g.tags, ['k=v']);
  assert.ok((await P.getCheckpointInstances()).data.instances.some((c) => c.uuid === ck.uuid));
  assert.deepEqual((await P.getInstanceHistoryByUuid(src.uuid)).data.instances[0].history.map((h) => h.uuid), [ck.uuid]);
  assert.deepEqual((await P.getInstanceHistory({ name: 'ukc-ck' })).data.instances[0].history.map((h) => h.name), ['ukc-ck-1']);
  assert.ok(!(await names()).includes('ukc-ck-1'));

  // made from it: runs on from the count it had (a restore, not a boot: no boot time, no tick 0)
  const from = await ukc.instances.create({ name: 'ukc-from-ck', checkpoint: { uuid: ck.uuid }, autostart: true, timeout_s: 90 });
  assert.equal(from.state, 'running');
  assert.notEqual(from.uuid, src.uuid);
  assert.equal(from.boot_time_us, undefined);
  const fl = await logMatching(from.uuid, /tick \d+/);
  assert.ok(Number(/tick (\d+)/.exec(fl)[1]) >= 3, fl);

  // of a stopped instance: its disks; an instance from it boots (tick 0)
  await ukc.instances.stop({ uuid: src.uuid });
  await ukc.instances.wait({ uuid: src.uuid }, { state: 'stopped', timeout_s: 60 });
  const cold = await P.createCheckpointInstances({ body: { from: { name: 'ukc-ck' } } });
  const cc = cold.data.instances[0];
  assert.match(cc.name, /^[a-z]+-[a-z]+-[0-9a-f]{7}$/);
  assert.equal((await P.getCheckpointInstanceByUuid(cc.uuid)).data.instances[0].stateful, false);
  const boot = await ukc.instances.create({ name: 'ukc-from-cold', checkpoint: { name: cc.name }, autostart: true, timeout_s: 90 });
  assert.match(await logMatching(boot.uuid, /tick 0\b/), /tick 0\b/);

  // bad input: a 400 naming the field and nothing made; unknown refs are entry errors (8)
  const before = (await hm.snapshots.list()).length;
  let r = await raw('POST', '/v1/instances/checkpoints', { body: [{ from: { name: 'ukc-ck' } }, { from: 'ukc-ck' }] });
  assert.equal(r.status, 400);
  assert.match(r.env.message, /item \[1\]: `from` must name the instance/);
  r = await raw('POST', '/v1/instances/checkpoints', { body: [{ from: { name: 'ukc-ck' } }, { from: { name: 'ukc-ck' }, name: 'Bad Name' }] });
  assert.equal(r.status, 400);
  assert.match(r.env.message, /item \[1\].*invalid checkpoint name/);
  r = await raw('POST', '/v1/instances/checkpoints', { body: [{ from: { name: 'ukc-ck' }, autokill: { time_ms: 1000 } }] });
  assert.equal(r.status, 400);
  r = await raw('POST', '/v1/instances/checkpoints', { body: [{ from: { name: 'ukc-ck' }, timeout_s: 0 }] });
  assert.equal(r.status, 400);
  assert.match(r.env.message, /item \[0\]: `timeout_s` 0 .* is not available/);
  assert.equal((await hm.snapshots.list()).length, before);
  r = await raw('POST', '/v1/instances/checkpoints', { body: [{ from: { name: 'ukc-nope' } }] });
  assert.equal(r.env.status, 'error');
  assert.equal(r.env.data.instances[0].error, 8);
  r = await raw('POST', '/v1/instances', { body: { checkpoint: { name: 'ukc-ck-1' }, image } });
  assert.equal(r.status, 400);
  assert.match(r.env.message, /`image` cannot be combined with `checkpoint`/);
  const nope = await P.createInstance({ body: { checkpoint: { uuid: '00000000-0000-4000-8000-000000000000' } } });
  assert.equal(nope.data.instances[0].error, 8);

  // delete: by uuid and in bulk; gone from the Hypeman API too
  assert.equal((await P.deleteCheckpointInstanceByUuid(ck.uuid)).status, 'success');
  assert.equal((await P.deleteCheckpointInstances({ body: [{ uuid: cc.uuid }] })).status, 'success');
  assert.ok(!(await hm.snapshots.list()).some((s) => s.name === 'ukc-ck-1' || s.name === cc.name));
  assert.equal((await P.getCheckpointInstanceByUuid(ck.uuid)).data.instances[0].error, 8);
  await ukc.instances.delete([{ uuid: src.uuid }, { uuid: from.uuid }, { uuid: boot.uuid }]);
});
