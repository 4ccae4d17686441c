// A short soak (the long one is bench/soak.mjs): run cycles (create -> its
// output and end -> delete) and standby cycles (standby -> restore -> fork
// -> delete the fork) against one daemon with networking, inside a network
// namespace this test makes (`hmk-*`: the daemon, its bridge, TAPs and
// guests; deleted at the end). After a warm-up, the daemon's open fds and
// threads, the files under its data dir, the TAPs and nftables rules in its
// namespace and its tmpfs RAM files must be where they started; its RSS is
// reported (this daemon is the ASan build, whose quarantine holds freed
// memory by design: bench/soak.mjs measures RSS on the release build).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { startDaemon } from '../harness/daemon.mjs';
import { pulledDataDir } from '../harness/images.mjs';
import { startRegistry, pushFixtures } from '../registry/registry.mjs';
import { settledResources, growth, runCycle, standbyCycle, startCounter } from '../harness/soak.mjs';

const tag = randomBytes(3).toString('hex');
const NS = `hmk-${tag}`;
const NETENV = { SUBNET_CIDR: '10.128.0.0/16', BRIDGE_NAME: 'hmbrk', DNS_SERVER: '10.128.0.1' };
const RUN_CYCLES = 6, STANDBY_CYCLES = 3;
const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });

let reg, d, token, image;
before(async () => {
  ip('netns', 'add', NS);
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  reg = await startRegistry();
  await pushFixtures(reg);
  image = `${reg.host}/test/busybox:latest`;
  d = await startDaemon({ netns: NS, env: { ...NETENV, DATA_DIR: await pulledDataDir([image]) } });
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

test(`soak: ${RUN_CYCLES} run cycles and ${STANDBY_CYCLES} standby/restore/fork cycles leave nothing behind`, async () => {
  const src = await startCounter(d, token, image);
  // Warm-up: the first of each kind makes what stays for good (a base, a warm VMM, caches).
  await runCycle(d, token, image, 0);
  await standbyCycle(d, token, src, 0);
  const start = await settledResources(d, NS);
  assert.ok(start.taps >= 1 && start.nft_rules > 0, `the counter has its TAP and rules: ${JSON.stringify(start)}`);
  for (let i = 1; i <= RUN_CYCLES; i++) await runCycle(d, token, image, i);
  for (let i = 1; i <= STANDBY_CYCLES; i++) await standbyCycle(d, token, src, i);
  const end = await settledResources(d, NS);
  console.log(`soak: start ${JSON.stringify(start)}\nsoak: end   ${JSON.stringify(end)}`);
  assert.deepEqual(growth(start, end), {}, 'what the daemon holds is flat');
  assert.equal((await d.fetch(`/instances/${src.id}`, { method: 'DELETE', token })).status, 204);
});
