// Instances end to end, on real QEMU guests under TCG: an image from a real
// registry, booted by the daemon with our kernel, initrd and guest init, the
// program's outcome read back through the API (state, exit code, message,
// logs), and nothing left behind after a delete.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { waitImage, pull } from '../harness/images.mjs';
import { createInstance, getInstance, waitState, readLogs, vmmPid, processAlive } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

let reg, d, token, image;
before(async () => {
  reg = await startRegistry();
  await pushFixtures(reg);
  d = await startDaemon();
  token = d.token();
  image = `${reg.host}/test/busybox:latest`;
  await pull(d, token, { name: image });
  const { img } = await waitImage(d, token, image);
  assert.equal(img.status, 'ready', img.error);
});
after(async () => {
  // Delete whatever a failed test left running, so no QEMU outlives the suite.
  if (d) {
    const r = await d.fetch('/instances', { token });
    if (r.status === 200) for (const i of await r.json()) await d.fetch(`/instances/${i.id}`, { method: 'DELETE', token });
    await d.stop();
  }
  await reg?.stop();
});

// Boot `body` (name and image filled in), wait until it stops, return it and its console.
async function runToEnd(name, body) {
  const c = await createInstance(d, token, { name, image, size: '256MB', vcpus: 1, ...body });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const { inst, seen } = await waitState(d, token, c.body.id);
  const logs = await readLogs(d, token, c.body.id, { tail: 1000 });
  return { created: c.body, inst, seen, logs };
}

test('a program that prints and exits 0: Stopped, exit 0 "success", output in the app log', async () => {
  const { created, inst, seen, logs } = await runToEnd('hello', { cmd: ['echo', 'hello from the guest'] });
  assert.match(created.id, /^[a-z][a-z0-9]{23}$/);
  assert.equal(created.name, 'hello');
  assert.ok(['Initializing', 'Running', 'Stopped'].includes(created.state), created.state);
  assert.equal(created.vcpus, 1);
  assert.equal(created.size, '256MB');
  assert.equal(created.overlay_size, '10GB');
  assert.equal(inst.state, 'Stopped');
  assert.equal(inst.exit_code, 0);
  assert.equal(inst.exit_message, 'success');
  assert.ok(inst.stopped_at);
  assert.ok(logs.includes('hello from the guest'), logs.join('\n'));
  assert.ok(seen.includes('Stopped'));
  // The VMM is gone once Stopped.
  const pid = vmmPid(d, inst.id);
  if (pid) assert.equal(processAlive(pid), false);
});

test('exit 3 is reported as exit status 3', async () => {
  const { inst } = await runToEnd('exit-three', { cmd: ['sh', '-c', 'echo about to fail; exit 3'] });
  assert.equal(inst.exit_code, 3);
  assert.equal(inst.exit_message, 'exit status 3');
});

test('a program killed by a signal: 137, killed by signal 9 (SIGKILL)', async () => {
  const { inst } = await runToEnd('killed', { cmd: ['sh', '-c', 'kill -9 $$'] });
  assert.equal(inst.exit_code, 137);
  assert.equal(inst.exit_message, 'killed by signal 9 (SIGKILL)');
});

test('a program that is not there: 127, command not found', async () => {
  const { inst } = await runToEnd('missing', { cmd: ['/no/such/program'] });
  assert.equal(inst.exit_code, 127);
  assert.match(inst.exit_message, /^command not found/);
  assert.match(inst.exit_message, /\/no\/such\/program/);
});

test('env, workdir and cmd: the image env with overrides, the image workdir', async () => {
  const { inst, logs } = await runToEnd('env-check', {
    env: { GREETING: 'hi there', FOO: 'overridden' },
    cmd: ['sh', '-c', 'echo "greeting=$GREETING foo=$FOO"; echo "pwd=$(pwd)"; echo "host=$(hostname)"'],
  });
  assert.equal(inst.exit_code, 0, logs.join('\n'));
  assert.ok(logs.includes('greeting=hi there foo=overridden'), logs.join('\n'));
  assert.ok(logs.includes('pwd=/srv'), logs.join('\n'));
  assert.ok(logs.includes('host=env-check'), logs.join('\n'));
  assert.deepEqual(inst.env, { GREETING: 'hi there', FOO: 'overridden' });
});

test('entrypoint override drops the image cmd; cmd appends to it', async () => {
  const { inst, logs } = await runToEnd('entry', { entrypoint: ['/bin/echo', 'from-entrypoint'], cmd: ['and', 'cmd'] });
  assert.equal(inst.exit_code, 0);
  assert.deepEqual(inst.command, ['/bin/echo', 'from-entrypoint', 'and', 'cmd']);
  assert.ok(logs.includes('from-entrypoint and cmd'), logs.join('\n'));
});

test('a long-running program: Running, logs follow, delete kills its QEMU and removes its files', async () => {
  const c = await createInstance(d, token, { name: 'ticker', image, size: '256MB', vcpus: 1, cmd: ['sh', '-c', 'i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done'] });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const id = c.body.id;
  const { inst, seen } = await waitState(d, token, id, ['Running']);
  assert.equal(inst.state, 'Running');
  assert.ok(!seen.includes('Stopped'));
  // Followed logs deliver lines as they come; read a few then let go.
  const ctl = new AbortController();
  const r = await d.fetch(`/instances/${id}/logs?follow=true&tail=0`, { token, signal: ctl.signal });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /text\/event-stream/);
  const reader = r.body.getReader();
  let text = '';
  while ((text.match(/data: "tick \d+"/g) || []).length < 3) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
  }
  ctl.abort();
  assert.ok((text.match(/data: "tick \d+"/g) || []).length >= 3, text);
  // By name and by id prefix too.
  assert.equal((await getInstance(d, token, 'ticker')).body.id, id);
  assert.equal((await getInstance(d, token, id.slice(0, 8))).body.id, id);
  const pid = vmmPid(d, id);
  assert.ok(pid && processAlive(pid), 'its QEMU runs');
  const del = await d.fetch(`/instances/${id}`, { method: 'DELETE', token });
  assert.equal(del.status, 204);
  assert.equal(processAlive(pid), false, 'its QEMU is gone');
  assert.equal(existsSync(join(d.dataDir, 'instances', id)), false, 'its folder is gone');
  assert.equal((await getInstance(d, token, id)).status, 404);
});

test('hypeman and vmm log sources', async () => {
  const { inst } = await runToEnd('sources', { cmd: ['true'] });
  // The state is Stopped as soon as the VMM is gone; its monitor logs the end just after.
  let ops = [];
  for (let i = 0; i < 50 && !ops.some((l) => l.includes('msg="vm stopped"')); i++) {
    if (i) await new Promise((r) => setTimeout(r, 100));
    ops = await readLogs(d, token, inst.id, { source: 'hypeman' });
  }
  assert.ok(ops.some((l) => l.includes('msg="vm started"')), ops.join('\n'));
  assert.ok(ops.some((l) => l.includes('msg="vm stopped"')), ops.join('\n'));
  const vmm = await readLogs(d, token, inst.id, { source: 'vmm' });
  assert.ok(Array.isArray(vmm));
  const tail1 = await readLogs(d, token, inst.id, { source: 'hypeman', tail: 1 });
  assert.equal(tail1.length, 1);
  const r = await d.fetch(`/instances/${inst.id}/logs?source=nope`, { token });
  assert.equal(r.status, 400);
  const r2 = await d.fetch(`/instances/${inst.id}/logs?tail=-1`, { token });
  assert.equal(r2.status, 400);
});

test('bad input: 400 for names, sizes and fields; 404 unknown image; 409 duplicate name; nothing left', async () => {
  const before = readdirSync(join(d.dataDir, 'instances')).length;
  const cases = [
    [{ name: 'Bad_Name', image }, 400, 'invalid_name'],
    [{ name: '-dash', image }, 400, 'invalid_name'],
    [{ name: 'x'.repeat(64), image }, 400, 'invalid_name'],
    [{ image }, 400, 'missing_field'],
    [{ name: 'noimage' }, 400, 'missing_field'],
    [{ name: 'big', image, size: '1000TB' }, 400, 'invalid_field'],
    [{ name: 'tiny', image, size: '1MB' }, 400, 'invalid_field'],
    [{ name: 'cpus', image, vcpus: 1000 }, 400, 'invalid_field'],
    [{ name: 'cpus0', image, vcpus: 0 }, 400, 'invalid_field'],
    [{ name: 'ovl', image, overlay_size: '1PB' }, 400, 'invalid_field'],
    [{ name: 'sizestr', image, size: 'lots' }, 400, 'invalid_field'],
    [{ name: 'envbad', image, env: { A: 1 } }, 400, 'invalid_field'],
    [{ name: 'envkey', image, env: { 'A=B': 'x' } }, 400, 'invalid_field'],
    [{ name: 'cmdbad', image, cmd: 'echo hi' }, 400, 'invalid_field'],
    [{ name: 'hv', image, hypervisor: 'firecracker' }, 400, 'unsupported_hypervisor'],
    [{ name: 'unknown-image', image: `${reg.host}/test/nothing:here` }, 404, null],
  ];
  for (const [body, status, code] of cases) {
    const r = await createInstance(d, token, body);
    assert.equal(r.status, status, `${JSON.stringify(body).slice(0, 80)} -> ${JSON.stringify(r.body)}`);
    if (code) assert.equal(r.body.code, code, JSON.stringify(r.body));
    assert.ok(r.body.message.length > 0);
  }
  const c = await createInstance(d, token, { name: 'twice', image, size: '256MB', vcpus: 1, cmd: ['sleep', '30'] });
  assert.equal(c.status, 201);
  const dup = await createInstance(d, token, { name: 'twice', image, cmd: ['true'] });
  assert.equal(dup.status, 409);
  assert.equal(dup.body.code, 'name_conflict');
  await d.fetch(`/instances/${c.body.id}`, { method: 'DELETE', token });
  assert.equal(readdirSync(join(d.dataDir, 'instances')).length, before, 'no folder left by failed creates');
  const r = await d.fetch('/instances?state=Bogus', { token });
  assert.equal(r.status, 400);
});

test('list filters by state and tags', async () => {
  const { inst } = await runToEnd('tagged', { cmd: ['true'], tags: { team: 'infra' } });
  let r = await d.fetch('/instances?state=Stopped', { token });
  const stopped = await r.json();
  assert.ok(stopped.some((i) => i.id === inst.id));
  assert.ok(stopped.every((i) => i.state === 'Stopped'));
  r = await d.fetch('/instances?tags[team]=infra', { token });
  const tagged = await r.json();
  assert.deepEqual(tagged.map((i) => i.id), [inst.id]);
  r = await d.fetch('/instances?state=Running', { token });
  assert.ok(!(await r.json()).some((i) => i.id === inst.id));
});

test('CLI: run follows output and returns the exit code; ps, logs, rm', async () => {
  const env = { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: token };
  let r = await runCli(['run', '--name', 'cli-hello', '-m', '256MB', '--cpus', '1', image, 'echo', 'hi from cli'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /hi from cli/);
  r = await runCli(['run', '--name', 'cli-three', '-m', '256MB', '--cpus', '1', image, 'sh', '-c', 'exit 3'], { env });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /exit status 3/);
  r = await runCli(['run', '-d', '--name', 'cli-bg', '-m', '256MB', '--cpus', '1', image, 'sleep', '60'], { env });
  assert.equal(r.code, 0, r.stderr);
  const bgId = r.stdout.trim();
  assert.match(bgId, /^[a-z0-9]{24}$/);
  r = await runCli(['ps'], { env });
  assert.match(r.stdout, /cli-bg/);
  assert.doesNotMatch(r.stdout, /cli-hello/);
  r = await runCli(['ps', '-a'], { env });
  assert.match(r.stdout, /cli-hello/);
  assert.match(r.stdout, /Stopped \(3\)/);
  r = await runCli(['logs', 'cli-hello'], { env });
  assert.equal(r.code, 0);
  assert.match(r.stdout, /hi from cli/);
  r = await runCli(['rm', 'cli-bg'], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /rm -f/);
  r = await runCli(['rm', '-f', 'cli-bg', 'cli-hello', 'cli-three'], { env });
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(['ps', '-a'], { env });
  assert.doesNotMatch(r.stdout, /cli-/);
  r = await runCli(['rm', 'nope'], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not found/);
});
