// bench/boot: time from POST /instances to the program's first output line,
// against the raw QEMU command line booting the same kernel, initrd and
// disks to the same line. Both runs watch the same thing: the serial
// console file, polled every 2 ms, for the marker line.
//
//   ours: POST /instances {cmd: [echo, MARK]} -> MARK in logs/app.log
//   raw:  sh -c "<the exact vmm.cmdline the daemon used, paths moved to a
//         copy of the instance's disks>" -> MARK in the copy's console file
//
//   base: the same create on a second daemon whose base VM of that shape is
//         ready (src/instance/bases.c): restored, not booted
//
// Prints each run, the median ratios ours/raw (cold; target <= 1.15) and
// base/raw (target <= 0.25) and base/ours, the absolute medians, and the
// cold boot's phase breakdown from the instance's operations log and the
// guest init's own timestamps. Usage: node bench/boot.mjs [runs] (default 9)
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, existsSync, mkdtempSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const RUNS = Number(process.argv[2] || 9);
process.env.HYPEMAN_BIN_DIR ||= join(process.cwd(), 'build/rel/bin');
const { startDaemon } = await import('../tests/harness/daemon.mjs');
const { waitImage, pull } = await import('../tests/harness/images.mjs');
const { waitState, readLogs, vmmPid } = await import('../tests/harness/instances.mjs');
const { startRegistry, pushFixtures } = await import('../tests/registry/registry.mjs');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForLine(file, mark, t0, timeoutMs = 60000) {
  for (;;) {
    if (existsSync(file) && readFileSync(file, 'utf8').includes(mark)) return Number(process.hrtime.bigint() - t0) / 1e6;
    if (Number(process.hrtime.bigint() - t0) / 1e6 > timeoutMs) throw new Error(`no ${mark} in ${file}`);
    await sleep(2);
  }
}

const reg = await startRegistry();
await pushFixtures(reg);
const d = await startDaemon({ env: { LOG_LEVEL: 'info', BASE_BOOT: 'off' } });
const token = d.token();
const db = await startDaemon({ env: { LOG_LEVEL: 'info' } });
const tokenB = db.token();
const image = `${reg.host}/test/busybox:latest`;
for (const [x, t] of [[d, token], [db, tokenB]]) {
  await pull(x, t, { name: image });
  await waitImage(x, t, image);
}

// One create: the time to the mark line, and the instance.
async function createTo(x, t, name, mark) {
  const t0 = process.hrtime.bigint();
  const r = await x.fetch('/instances', {
    method: 'POST', token: t, headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, image, size: '256MB', vcpus: 1, cmd: ['echo', mark] }),
  });
  const inst = await r.json();
  if (r.status !== 201) throw new Error(JSON.stringify(inst));
  const ms = await waitForLine(join(x.dataDir, 'instances', inst.id, 'logs/app.log'), mark, t0);
  await waitState(x, t, inst.id);
  return { ms, inst };
}

// The base daemon's first create of this shape boots cold and asks for its base.
{
  const { inst } = await createTo(db, tokenB, 'warm', `WARM-${Date.now()}`);
  await db.fetch(`/instances/${inst.id}`, { method: 'DELETE', token: tokenB });
  for (let i = 0; ; i++) {
    const names = existsSync(join(db.dataDir, 'bases')) ? execFileSync('ls', [join(db.dataDir, 'bases')], { encoding: 'utf8' }) : '';
    if (/^c1-m256-wrw-nonet-/m.test(names)) break;
    if (i > 600) throw new Error('no base of shape c1-m256-wrw-nonet after 60 s');
    await sleep(100);
  }
}

const ours = [], raw = [], based = [], phases = [];
const pssOf = {};
try {
  for (let run = 1; run <= RUNS; run++) {
    const mark = `BOOTMARK-${run}-${Date.now()}`;
    const { ms, inst } = await createTo(d, token, `bench-${run}`, mark);
    ours.push(ms);
    const dir = join(d.dataDir, 'instances', inst.id);
    const ops = (await readLogs(d, token, inst.id, { source: 'hypeman', tail: 100 })).join('\n');
    const num = (re) => Number((ops.match(re) || [])[1] || NaN);
    phases.push({
      prepare: num(/overlay_ms=([\d.]+)/) + num(/config_ms=([\d.]+)/),
      vmm: num(/vmm_ms=([\d.]+)/),
      guest_init_up: num(/guest init up" guest_uptime_ms=(\d+)/),
      program_started: num(/program started" pid=\d+ guest_uptime_ms=(\d+)/),
    });

    // The same command line, on copies of the same disks.
    const copy = mkdtempSync(join(tmpdir(), 'bench-raw-'));
    try {
      for (const f of ['config.img', 'overlay.ext4']) execFileSync('cp', ['--sparse=always', join(dir, f), join(copy, f)]);
      execFileSync('mkdir', ['-p', join(copy, 'logs'), join(copy, 'run')]);
      const line = readFileSync(join(dir, 'run/vmm.cmdline'), 'utf8').split(dir).join(copy).replace(/BOOTMARK-[\w-]+/g, mark);
      const t1 = process.hrtime.bigint();
      const q = spawn('sh', ['-c', `exec ${line}`], { stdio: 'ignore' });
      raw.push(await waitForLine(join(copy, 'logs/app.log'), mark, t1));
      await new Promise((res) => { if (q.exitCode !== null) res(); else q.on('exit', res); });
    } finally { rmSync(copy, { recursive: true, force: true }); }
    await d.fetch(`/instances/${inst.id}`, { method: 'DELETE', token });
    const b = await createTo(db, tokenB, `bench-${run}`, `${mark}-B`);
    if (!readFileSync(join(db.dataDir, 'instances', b.inst.id, 'logs/hypeman.log'), 'utf8').includes('from=base')) throw new Error(`run ${run}: the base daemon booted cold`);
    based.push(b.ms);
    await db.fetch(`/instances/${b.inst.id}`, { method: 'DELETE', token: tokenB });
    console.log(`run ${run}: ours cold ${ours.at(-1).toFixed(0)} ms, from base ${based.at(-1).toFixed(0)} ms, raw qemu ${raw.at(-1).toFixed(0)} ms; ` +
      `cold/raw ${(ours.at(-1) / raw.at(-1)).toFixed(2)}, base/raw ${(based.at(-1) / raw.at(-1)).toFixed(2)}`);
  }
  // Host memory of one idle instance of each kind: its VMM's PSS (the guest
  // RAM is a shared mapping of its own file, so it counts in full).
  for (const [x, t, kind] of [[d, token, 'cold'], [db, tokenB, 'base']]) {
    const r = await x.fetch('/instances', {
      method: 'POST', token: t, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: `idle-${kind}`, image, size: '256MB', vcpus: 1, cmd: ['sleep', '1000'] }),
    });
    const inst = await r.json();
    await waitState(x, t, inst.id, ['Running']);
    await sleep(3000);
    const pss = Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${vmmPid(x, inst.id)}/smaps_rollup`, 'utf8'))[1]);
    pssOf[kind] = pss / 1024;
    await x.fetch(`/instances/${inst.id}`, { method: 'DELETE', token: t });
  }
} finally {
  await d.stop();
  await db.stop();
  await reg.stop();
}
const ratio = median(ours) / median(raw);
const bratio = median(based) / median(raw);
console.log(`median: ours cold ${median(ours).toFixed(0)} ms, raw qemu ${median(raw).toFixed(0)} ms, ratio ${ratio.toFixed(2)} (target <= 1.15: ${ratio <= 1.15 ? 'met' : 'MISSED'})`);
console.log(`median: from a base ${median(based).toFixed(0)} ms: base/raw ${bratio.toFixed(2)} (target <= 0.25: ${bratio <= 0.25 ? 'met' : 'MISSED'}), base/our cold ${(median(based) / median(ours)).toFixed(2)}`);
const m = (k) => median(phases.map((p) => p[k]));
const rest = median(ours) - m('prepare') - m('vmm') - m('program_started');
console.log(`phases (medians): prepare disks ${m('prepare').toFixed(0)} ms | VMM spawn to QMP ready ${m('vmm').toFixed(0)} ms | ` +
  `guest kernel to our init ${m('guest_init_up')} ms (guest uptime) | init to program start ${m('program_started') - m('guest_init_up')} ms | ` +
  `the rest ${rest.toFixed(0)} ms (QEMU loading the kernel before guest time starts, program to console)`);
console.log(`host memory of an idle 256 MB instance (its VMM's PSS): cold boot ${pssOf.cold?.toFixed(1)} MB, from a base ${pssOf.base?.toFixed(1)} MB ` +
  '(no page is shared between instances: each has its own copy of the base memory; one from a base never ran the kernel\'s boot, so it touched fewer pages and QEMU translated less code)');
