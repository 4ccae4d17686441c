// A hostile guest: a root process in it (tests/fixtures/agentflood.c, built
// static here and copied in) takes over PID 1 with ptrace and makes it write
// binary garbage, an 8 MiB line and a flood of lines of no known type to its
// agent port. The daemon must keep serving (health, lists, the other
// instance's exec and logs) while it happens, and the hostile instance's own
// agent must answer again afterwards. Network off; loopback only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, runCli } from '../harness/daemon.mjs';
import { pulledDataDir } from '../harness/images.mjs';
import { createInstance, waitState, readLogs } from '../harness/instances.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let reg, d, token, image, build;
before(async () => {
  build = mkdtempSync(join(tmpdir(), 'hypeman-agentflood-'));
  // A missing compiler is a failure, not a skip.
  execFileSync('cc', ['-std=gnu11', '-O2', '-static', 'tests/fixtures/agentflood.c', '-o', join(build, 'agentflood')]);
  reg = await startRegistry();
  await pushFixtures(reg);
  image = `${reg.host}/test/busybox:latest`;
  d = await startDaemon({ env: { DATA_DIR: await pulledDataDir([image]) } });
  token = d.token();
});
after(async () => {
  try { await d?.stop(); } finally { await reg?.stop(); rmSync(build, { recursive: true, force: true }); }
});

const cli = (args) => runCli(args, { env: { HYPEMAN_BASE_URL: d.url, HYPEMAN_API_KEY: token } });
const COUNTER = ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo n=$i; sleep 0.2; done'];
async function lastCount(id) {
  const c = (await readLogs(d, token, id, { tail: 50 })).map((l) => /^n=(\d+)$/.exec(l.trim())).filter(Boolean);
  return c.length ? Number(c.at(-1)[1]) : 0;
}

test('a guest flooding its agent port with garbage, a huge line and noise stalls nothing', async () => {
  const h = await createInstance(d, token, { name: 'hostile', image, size: '256MB', vcpus: 1, cmd: ['sleep', '100000'] });
  const b = await createInstance(d, token, { name: 'bystander', image, size: '256MB', vcpus: 1, cmd: COUNTER });
  assert.equal(h.status, 201, JSON.stringify(h.body));
  assert.equal(b.status, 201, JSON.stringify(b.body));
  await waitState(d, token, h.body.id, ['Running']);
  await waitState(d, token, b.body.id, ['Running']);
  const put = await cli(['cp', join(build, 'agentflood'), 'hostile:/agentflood']);
  assert.equal(put.code, 0, put.stderr);

  let done = false;
  const flood = cli(['exec', 'hostile', 'sh', '-c', 'chmod +x /agentflood && /agentflood 8 200000']).finally(() => { done = true; });
  // While it floods: the API answers, and so does the other guest.
  let rounds = 0, worstMs = 0;
  const from = await lastCount(b.body.id);
  while (!done && rounds < 200) {
    const t0 = Date.now();
    assert.equal((await d.fetch('/health')).status, 200);
    assert.equal((await d.fetch('/instances', { token })).status, 200);
    const e = await cli(['exec', 'bystander', 'echo', `alive-${rounds}`]);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(e.stdout.trim(), `alive-${rounds}`);
    worstMs = Math.max(worstMs, Date.now() - t0);
    rounds++;
  }
  const f = await flood;
  console.log(`hostile: flood exec exit ${f.code}, out ${JSON.stringify(f.stdout.slice(0, 80))}, err ${JSON.stringify(f.stderr.slice(0, 200))}; ${rounds} rounds of health+list+exec meanwhile, worst ${worstMs} ms`);
  assert.equal(f.code, 0, `the flood: ${f.stderr}`);
  const sent = Number(/^flooded (\d+)$/m.exec(f.stdout)?.[1] ?? 0);
  assert.ok(sent > 8 * 1048576, `the guest wrote ${sent} bytes to its agent port`);
  assert.ok(d.child.exitCode === null && d.child.signalCode === null, 'the daemon is alive');
  assert.ok((await lastCount(b.body.id)) > from, 'the bystander counted on');
  // The hostile instance's agent answers again (the stream is back in step).
  let after = null;
  for (let i = 0; i < 50; i++) {
    after = await cli(['exec', 'hostile', 'echo', 'after']);
    if (after.code === 0) break;
    await sleep(200);
  }
  assert.equal(after.code, 0, `exec into the hostile guest afterwards: ${after.stderr}`);
  assert.equal(after.stdout.trim(), 'after');
});
