// bench/boot: time from POST /instances to the program's first output line,
// against the raw QEMU command line booting the same kernel, initrd and
// disks to the same line. Both runs watch the same thing: the serial
// console file, polled every 2 ms, for the marker line.
//
//   ours: POST /instances {cmd: [echo, MARK]} -> MARK in logs/app.log
//   raw:  sh -c "<the exact vmm.cmdline the daemon used, paths moved to a
//         copy of the instance's disks>" -> MARK in the copy's console file
//
// Prints each run, the median ratio ours/raw (target <= 1.15), our absolute
// median, and the phase breakdown from the instance's operations log and
// the guest init's own timestamps. Usage: node bench/boot.mjs [runs]
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, existsSync, mkdtempSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const RUNS = Number(process.argv[2] || 7);
process.env.HYPEMAN_BIN_DIR ||= join(process.cwd(), 'build/rel/bin');
const { startDaemon } = await import('../tests/harness/daemon.mjs');
const { waitImage, pull } = await import('../tests/harness/images.mjs');
const { waitState, readLogs } = await import('../tests/harness/instances.mjs');
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
const d = await startDaemon({ env: { LOG_LEVEL: 'info' } });
const token = d.token();
const image = `${reg.host}/test/busybox:latest`;
await pull(d, token, { name: image });
await waitImage(d, token, image);

const ours = [], raw = [], phases = [];
try {
  for (let run = 1; run <= RUNS; run++) {
    const mark = `BOOTMARK-${run}-${Date.now()}`;
    const t0 = process.hrtime.bigint();
    const r = await d.fetch('/instances', {
      method: 'POST', token, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: `bench-${run}`, image, size: '256MB', vcpus: 1, cmd: ['echo', mark] }),
    });
    const inst = await r.json();
    if (r.status !== 201) throw new Error(JSON.stringify(inst));
    const dir = join(d.dataDir, 'instances', inst.id);
    ours.push(await waitForLine(join(dir, 'logs/app.log'), mark, t0));
    await waitState(d, token, inst.id);
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
    console.log(`run ${run}: ours ${ours.at(-1).toFixed(0)} ms, raw qemu ${raw.at(-1).toFixed(0)} ms, ratio ${(ours.at(-1) / raw.at(-1)).toFixed(2)}`);
  }
} finally {
  await d.stop();
  await reg.stop();
}
const ratio = median(ours) / median(raw);
console.log(`median: ours ${median(ours).toFixed(0)} ms, raw qemu ${median(raw).toFixed(0)} ms, ratio ${ratio.toFixed(2)} (target <= 1.15: ${ratio <= 1.15 ? 'met' : 'MISSED'})`);
const m = (k) => median(phases.map((p) => p[k]));
const rest = median(ours) - m('prepare') - m('vmm') - m('program_started');
console.log(`phases (medians): prepare disks ${m('prepare').toFixed(0)} ms | VMM spawn to QMP ready ${m('vmm').toFixed(0)} ms | ` +
  `guest kernel to our init ${m('guest_init_up')} ms (guest uptime) | init to program start ${m('program_started') - m('guest_init_up')} ms | ` +
  `the rest ${rest.toFixed(0)} ms (QEMU loading the kernel before guest time starts, program to console)`);
