// The official @onkernel/hypeman SDK against the real daemon booting real
// QEMU guests: create an instance, poll until Running, read its logs over
// SSE, delete it.
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
  client = new Hypeman({ baseURL: d.url, apiKey: token, maxRetries: 0 });
  image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  const { img } = await waitImage(d, token, image);
  assert.equal(img.status, 'ready', img.error);
});
after(async () => {
  await d?.stop();
  await reg?.stop();
});

test('instances.create -> get until Running -> logs (SSE) -> delete', async () => {
  const inst = await client.instances.create({
    name: 'sdk-ticker', image, size: '256MB', vcpus: 1,
    cmd: ['sh', '-c', 'echo sdk-start; while :; do echo sdk-tick; sleep 0.2; done'],
  });
  assert.match(inst.id, /^[a-z0-9]{24}$/);
  assert.equal(inst.name, 'sdk-ticker');
  let state = inst.state;
  const deadline = Date.now() + 90000;
  while (state !== 'Running' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    state = (await client.instances.get(inst.id)).state;
  }
  assert.equal(state, 'Running');
  // Wait for the first line to reach the console, then read it over SSE.
  let lines = [];
  while (!lines.includes('sdk-start') && Date.now() < deadline) {
    const stream = await client.instances.logs(inst.id, { tail: 50 });
    lines = [];
    for await (const line of stream) lines.push(line);
  }
  assert.ok(lines.includes('sdk-start'), lines.join('\n'));
  const list = await client.instances.list();
  assert.ok(list.some((i) => i.id === inst.id));
  await client.instances.delete(inst.id);
  await assert.rejects(client.instances.get(inst.id), (e) => e.status === 404);
});

test('bad input surfaces as typed SDK errors', async () => {
  await assert.rejects(client.instances.create({ name: 'Bad Name', image }), (e) => e.status === 400 && e.error?.code === 'invalid_name');
  await assert.rejects(client.instances.create({ name: 'ghost', image: `${reg.host}/test/nothing:here` }), (e) => e.status === 404);
  await assert.rejects(client.instances.get('no-such-instance'), (e) => e.status === 404);
});

test('restart_policy: always restarts a program that exits, max_attempts in a row, then says why it stopped trying; PATCH changes the policy', { timeout: 300000 }, async () => {
  const inst = await client.instances.create({
    name: 'sdk-restarts', image, size: '128MB', vcpus: 1,
    cmd: ['sh', '-c', 'echo restart-run; exit 0'],
    restart_policy: { policy: 'always', backoff: '1s', max_attempts: 2, stable_after: '1h' },
  });
  assert.deepEqual(inst.restart_policy, { policy: 'always', backoff: '1s', max_attempts: 2, stable_after: '1h0m0s' });
  let got;
  const deadline = Date.now() + 150000;
  do {
    await new Promise((r) => setTimeout(r, 250));
    got = await client.instances.get(inst.id);
  } while (got.restart_status?.blocked_reason !== 'max_attempts_exceeded' && Date.now() < deadline);
  assert.equal(got.restart_status.blocked_reason, 'max_attempts_exceeded', JSON.stringify(got));
  assert.equal(got.restart_status.attempts, 2);
  assert.ok(got.restart_status.last_attempt_at);
  assert.equal(got.restart_status.next_attempt_at, null);
  assert.equal(got.state, 'Stopped');
  assert.equal(got.exit_code, 0);
  // Three runs: the first and two restarts (the console log keeps them all).
  const logs = await fetch(`${d.url}/instances/${inst.id}/logs?tail=100`, { headers: { authorization: `Bearer ${d.token()}` } }).then((r) => r.text());
  assert.equal(logs.match(/restart-run/g)?.length, 3, logs);
  // PATCH: a policy of never removes it; a bad duration is a 400 naming it
  const never = await client.instances.update(inst.id, { restart_policy: { policy: 'never' } });
  assert.equal(never.restart_policy, undefined);
  await assert.rejects(client.instances.update(inst.id, { restart_policy: { policy: 'always', backoff: 'soon' } }),
    (e) => e.status === 400 && /`restart_policy.backoff` must be a duration/.test(e.message));
  await assert.rejects(client.instances.create({ name: 'sdk-bad-policy', image, restart_policy: { policy: 'sometimes' } }),
    (e) => e.status === 400 && /`restart_policy.policy` must be never, always or on_failure/.test(e.message));
  await client.instances.delete(inst.id);
});

test('auto_standby through the SDK: set on create, instances.autoStandby.status and .hold report it, an update turns it off', { timeout: 120000 }, async () => {
  const inst = await client.instances.create({
    name: 'sdk-naps', image, size: '256MB', vcpus: 1, auto_standby: { enabled: true, idle_timeout: '5m' },
    cmd: ['sh', '-c', 'exec sleep 600'],
  });
  assert.deepEqual(inst.auto_standby, { enabled: true, idle_timeout: '5m0s', ignore_source_cidrs: [], ignore_destination_ports: [] });
  let st = await client.instances.autoStandby.status(inst.id);
  assert.equal(st.configured, true);
  assert.equal(st.enabled, true);
  assert.equal(st.idle_timeout, '5m0s');
  // this daemon gives guests no network: no ingress can reach it, so it never sleeps
  assert.equal(st.status, 'ineligible');
  assert.equal(st.reason, 'network_disabled');
  st = await client.instances.autoStandby.hold(inst.id);
  assert.equal(st.status, 'ineligible');
  const after = await client.instances.update(inst.id, { auto_standby: { enabled: false } });
  assert.equal(after.auto_standby.enabled, false);
  st = await client.instances.autoStandby.status(inst.id);
  assert.equal(st.status, 'disabled');
  assert.equal(st.reason, 'policy_disabled');
  await assert.rejects(client.instances.autoStandby.status('no-such-instance'), (e) => e.status === 404);
  await client.instances.delete(inst.id);
});
