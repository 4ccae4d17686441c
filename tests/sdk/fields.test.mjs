// No field accepted and ignored, through the official SDK (@onkernel/hypeman
// 0.28.0, unmodified): an upstream field we have not built is a 400
// unsupported_field naming it and why, unless it is at its default; a key no
// schema lists is a 400 unknown_field (raw HTTP: the SDK sends none); the
// documented no-ops pass. Each refusal leaves nothing behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Hypeman from '@onkernel/hypeman';
import { startDaemon } from '../harness/daemon.mjs';

let d, client;
before(async () => {
  d = await startDaemon();
  client = new Hypeman({ baseURL: d.url, apiKey: d.token(), maxRetries: 0 });
});
after(async () => { await d.stop(); });

const refused = async (p, code, re) => assert.rejects(p, (e) => {
  assert.ok(e instanceof Hypeman.BadRequestError, `${e.constructor.name}: ${e.message}`);
  assert.equal(e.error.code, code);
  assert.match(e.error.message, re);
  return true;
});

test('create: each upstream field not built yet is refused by name with its reason', async () => {
  const base = { name: 'fields', image: 'busybox' };
  const cases = [
    [{ hotplug_size: '2GB' }, /`hotplug_size`: memory hotplug/],
    [{ ttl: '1h' }, /`ttl`: instance lifetimes/],
    [{ expires_at: '2030-01-01T00:00:00Z' }, /`expires_at`: instance lifetimes/],
    [{ devices: ['gpu0'] }, /`devices`: device passthrough/],
    [{ gpu: { profile: 'L40S-1Q' } }, /`gpu`: GPU passthrough/],
    [{ snapshot_policy: { compression: { enabled: true } } }, /`snapshot_policy`/],
    [{ auto_standby: { enabled: true, ignore_destination_ports: [22] } }, /`auto_standby.ignore_destination_ports`: ignore lists are not available yet/],
    [{ health_check: { type: 'http', http: { port: 80 } } }, /`health_check`: health checks/],
  ];
  for (const [extra, re] of cases) await refused(client.instances.create({ ...base, ...extra }), 'unsupported_field', re);
  await refused(client.instances.create({ ...base, platform: 'linux/arm64' }), 'unsupported_platform', /linux\/arm64 cannot run here/);
  assert.deepEqual(await client.instances.list(), []);
});

test('create: credentials in the SDK\'s shape are honoured, so their rules answer (the brokered path itself: tests/integration/network.test.mjs)', async () => {
  const base = { name: 'creds', image: 'busybox', env: { REAL_TOKEN: 'v' } };
  const cred = (as, extra = {}) => ({ GITHUB_TOKEN: { source: { env: 'REAL_TOKEN' }, inject: [{ hosts: ['api.github.com'], as }], ...extra } });
  await refused(client.instances.create({ ...base, credentials: cred({ header: 'Authorization', format: 'Bearer ${value}' }) }), 'invalid_field', /set network.egress.enabled to true/);
  await refused(client.instances.create({ ...base, network: { egress: { enabled: true } }, credentials: cred({ header: 'Authorization', format: 'Bearer' }) }), 'invalid_field', /`credentials.GITHUB_TOKEN.inject\[0\].as.format` must contain \$\{value\}/);
  await refused(client.instances.create({ ...base, network: { egress: { enabled: true } }, credentials: cred({ header: 'Authorization', format: '${value}' }, { rotate: true }) }), 'unknown_field', /`credentials.GITHUB_TOKEN.rotate`/);
  assert.deepEqual(await client.instances.list(), []);
});

test('create: a network asked for where the host has none is refused before any pull', async () => {
  // No registry answers at 127.0.0.1:9: a pull first would fail for that instead.
  for (const network of [{ enabled: true }, { egress: { enabled: true } }])
    await refused(client.instances.create({ name: 'nonet', image: '127.0.0.1:9/never/pulled:latest', network }), 'network_unavailable', /NETWORK_ENABLED=false/);
  assert.deepEqual(await client.instances.list(), []);
});

test('create: refused fields at their default, and the documented no-ops, pass the field check', async () => {
  // No registry answers there: the create fails later, for that reason, not for a field.
  const r = client.instances.create({
    name: 'defaults', image: '127.0.0.1:9/never/pulled:latest', credentials: {}, devices: [], ttl: '',
    network: { enabled: false, egress: { enabled: false } }, auto_standby: { enabled: false },
    skip_guest_agent: true, skip_kernel_headers: true, platform: 'linux/amd64',
  });
  await assert.rejects(r, (e) => {
    assert.notEqual(e.error?.code, 'unsupported_field', e.message);
    assert.notEqual(e.error?.code, 'unknown_field', e.message);
    return true;
  });
});

test('other bodies: PATCH, standby, fork, volumes and ingresses follow the same rule', async () => {
  await refused(client.instances.update('nope', { health_check: { type: 'http' } }), 'unsupported_field', /`health_check`/);
  await refused(client.instances.update('nope', { restart_policy: { policy: 'always', tries: 3 } }), 'unknown_field', /`restart_policy.tries`/);
  await refused(client.instances.standby('nope', { compression_delay: '5m' }), 'unsupported_field', /`compression_delay`/);
  // The rest are checked before the instance is looked up: 404 only once the body is right.
  await assert.rejects(client.instances.update('nope', { env: { A: '1' } }), Hypeman.NotFoundError);
});

test('a key no schema lists is 400 unknown_field, at any depth', async () => {
  const t = d.token();
  const post = async (path, body, method = 'POST') => {
    const r = await d.fetch(path, { method, token: t, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, body: await r.json() };
  };
  const cases = [
    ['/instances', { name: 'x', image: 'busybox', colour: 'red' }, '`colour` is not a field'],
    ['/instances', { name: 'x', image: 'busybox', network: { mtu: 9000 } }, '`network.mtu`'],
    ['/instances', { name: 'x', image: 'busybox', network: { egress: { enabled: true, enforcement: { ports: [1] } } } }, '`network.egress.enforcement.ports`'],
    ['/instances', { name: 'x', image: 'busybox', volumes: [{ volume_id: 'v', mount_path: '/d', size: 1 }] }, '`volumes[0].size`'],
    ['/instances/x/stop', { force: true }, '`force` is not a field of this request: it takes none'],
    ['/instances/x/fork', { name: 'y', keep: true }, '`keep`'],
    ['/volumes', { name: 'v', size_gb: 1, fs: 'xfs' }, '`fs`'],
    ['/ingresses', { name: 'i', rules: [{ match: { hostname: 'h', path: '/' }, target: { instance: 'x', port: 80 } }] }, '`rules[0].match.path`'],
    ['/images', { name: 'busybox', pull_policy: 'always' }, '`pull_policy`'],
  ];
  for (const [path, body, msg] of cases) {
    const r = await post(path, body);
    assert.equal(r.status, 400, `${path}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.code, 'unknown_field');
    assert.ok(r.body.message.includes(msg), r.body.message);
  }
  assert.equal((await post('/instances/x/stop', {})).status, 404, 'an empty body passes');
});
