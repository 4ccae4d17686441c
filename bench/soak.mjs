// bench/soak: lifecycle cycles against one release-build daemon with
// networking (inside a network namespace it makes, `hmk-*`, removed at the
// end), and what the daemon and the host hold before and after: RSS, open
// fds, threads, files under the data dir, TAPs, nftables rules and tmpfs RAM
// files (tests/harness/soak.mjs). Each round is one run cycle (create -> its
// output and end -> delete) and, every STANDBY_EVERY rounds, one standby
// cycle (standby -> restore -> fork of the running instance -> delete it).
// Targets: every count flat, RSS growth under 16 MiB after the warm-up.
// Prints progress every 10% and one JSON summary line; exits non-zero only
// on errors.
// Usage: node bench/soak.mjs [rounds]   (or BENCH_RUNS=N; default 100; the long run: 1000)
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const ROUNDS = Number(process.argv[2] || process.env.BENCH_RUNS || 100);
const STANDBY_EVERY = 4;
const TARGET_RSS_GROWTH_KB = 16 * 1024;
process.env.HYPEMAN_BIN_DIR ||= join(process.cwd(), 'build/rel/bin');
const { startDaemon } = await import('../tests/harness/daemon.mjs');
const { pulledDataDir } = await import('../tests/harness/images.mjs');
const { startRegistry, pushFixtures } = await import('../tests/registry/registry.mjs');
const { settledResources, resources, growth, runCycle, standbyCycle, startCounter } = await import('../tests/harness/soak.mjs');

const NS = `hmk-${randomBytes(3).toString('hex')}`;
const ip = (...a) => execFileSync('ip', a, { encoding: 'utf8' });
ip('netns', 'add', NS);
ip('-n', NS, 'link', 'set', 'lo', 'up');
ip('netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
const reg = await startRegistry();
let d, failed = null, summary;
try {
  await pushFixtures(reg);
  // The registry is on the host's loopback, out of the namespace's reach:
  // the image is pulled first by a daemon without a network (as the tests do).
  const image = `${reg.host}/test/busybox:latest`;
  const DATA_DIR = await pulledDataDir([image]);
  d = await startDaemon({ netns: NS, env: { DATA_DIR, LOG_LEVEL: 'info', SUBNET_CIDR: '10.128.0.0/16', BRIDGE_NAME: 'hmbrk', DNS_SERVER: '10.128.0.1' } });
  const token = d.token();
  const src = await startCounter(d, token, image);
  await runCycle(d, token, image, 0);
  await standbyCycle(d, token, src, 0);
  const start = await settledResources(d, NS);
  let peakRss = start.rss_kb, standbys = 0;
  const t0 = Date.now();
  for (let i = 1; i <= ROUNDS; i++) {
    await runCycle(d, token, image, i);
    if (i % STANDBY_EVERY === 0) { await standbyCycle(d, token, src, i); standbys++; }
    peakRss = Math.max(peakRss, resources(d, NS).rss_kb);
    if (i % Math.max(1, Math.round(ROUNDS / 10)) === 0) console.log(`round ${i}/${ROUNDS}: ${JSON.stringify(resources(d, NS))} (${((Date.now() - t0) / i).toFixed(0)} ms a round)`);
  }
  const end = await settledResources(d, NS);
  const grew = growth(start, end);
  const rssGrowth = end.rss_kb - start.rss_kb;
  await d.fetch(`/instances/${src.id}`, { method: 'DELETE', token });
  console.log(`\nstart: ${JSON.stringify(start)}\nend:   ${JSON.stringify(end)}`);
  console.log(`counts flat: ${Object.keys(grew).length ? `MISS ${JSON.stringify(grew)}` : 'PASS'}`);
  console.log(`RSS growth ${(rssGrowth / 1024).toFixed(1)} MiB (<= ${TARGET_RSS_GROWTH_KB / 1024}) ${rssGrowth <= TARGET_RSS_GROWTH_KB ? 'PASS' : 'MISS'}; peak ${(peakRss / 1024).toFixed(1)} MiB`);
  summary = { rounds: ROUNDS, run_cycles: ROUNDS + 1, standby_cycles: standbys + 1, ms_per_round: Math.round((Date.now() - t0) / ROUNDS), start, end, grew, rss_growth_kb: rssGrowth, peak_rss_kb: peakRss, flat: !Object.keys(grew).length, rss_pass: rssGrowth <= TARGET_RSS_GROWTH_KB };
} catch (e) {
  failed = e;
} finally {
  await d?.stop();
  await reg.stop();
  try { ip('netns', 'del', NS); } catch { /* gone */ }
}
if (failed) {
  console.error(`bench/soak failed: ${failed.stack || failed}`);
  process.exit(1);
}
console.log(`JSON ${JSON.stringify(summary)}`);
