// bench/pull: our pull + convert against the pipeline of existing tools,
// on the same image served by a local docker-registry:
//
//   ours:   POST /images -> status ready   (download, verify, unpack, mkfs.erofs)
//   theirs: skopeo copy docker://... oci:DIR  +  umoci unpack  +  mkfs.erofs
//
// Each run starts from nothing (fresh data dir / fresh OCI dir), so both
// sides download every layer. Prints each run and the median ratio
// ours/theirs; the target is <= 0.8. Usage: node bench/pull.mjs [runs]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

const RUNS = Number(process.argv[2] || 5);
// The release build, unless told otherwise (the harness defaults to ASan).
process.env.HYPEMAN_BIN_DIR ||= join(process.cwd(), 'build/rel/bin');
const { startDaemon } = await import('../tests/harness/daemon.mjs');
const { waitImage, pull } = await import('../tests/harness/images.mjs');
const { startRegistry, pushImage, busyboxRoot } = await import('../tests/registry/registry.mjs');

// A made-up but realistic image: a busybox base plus three layers of many
// small and medium text-like files (compressible, like libraries and docs).
function contentLayer(seed, files, avg) {
  const entries = [{ path: `opt/l${seed}/`, type: 'dir', mode: 0o755 }];
  let h = createHash('sha256').update(String(seed)).digest();
  for (let i = 0; i < files; i++) {
    const size = Math.floor(avg / 2 + (h[0] * 256 + h[1]) % avg);
    const words = [];
    let len = 0;
    while (len < size) {
      h = createHash('sha256').update(h).digest();
      const w = h.toString('base64').slice(0, 4 + (h[2] % 8)).toLowerCase();
      words.push(w);
      len += w.length + 1;
    }
    entries.push({ path: `opt/l${seed}/d${i % 32}/f${i}.txt`, type: 'file', mode: 0o644, data: Buffer.from(words.join(' ').slice(0, size)) });
  }
  return entries;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const reg = await startRegistry();
const layers = [busyboxRoot(), contentLayer(1, 3000, 12000), contentLayer(2, 1500, 24000), contentLayer(3, 400, 90000)];
const image = await pushImage(reg, 'bench/app', 'v1', { layers, config: { Cmd: ['/bin/sh'] } });
const name = `${reg.host}/bench/app:v1`;
console.log(`image ${name} ${image.digest}: ${layers.length} layers`);

const ours = [];
const theirs = [];
try {
  for (let run = 1; run <= RUNS; run++) {
    const d = await startDaemon({ env: { LOG_LEVEL: 'info' } }) // the harness waits for the info-level "listening" line;
    try {
      const token = d.token();
      const t0 = process.hrtime.bigint();
      await pull(d, token, { name });
      const { img } = await waitImage(d, token, name, { timeoutMs: 600000 });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (img.status !== 'ready') throw new Error(`our pull failed: ${img.error}`);
      ours.push(ms);
    } finally { await d.stop(); }

    const dir = mkdtempSync(join(tmpdir(), 'bench-tools-'));
    try {
      const t0 = process.hrtime.bigint();
      execFileSync('skopeo', ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', `docker://${name}`, `oci:${dir}/oci:v1`]);
      execFileSync('umoci', ['unpack', '--image', `${dir}/oci:v1`, `${dir}/bundle`], { stdio: 'pipe' });
      execFileSync('mkfs.erofs', ['--quiet', `${dir}/rootfs.erofs`, `${dir}/bundle/rootfs`]);
      theirs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    } finally { rmSync(dir, { recursive: true, force: true }); }
    console.log(`run ${run}: ours ${ours.at(-1).toFixed(0)} ms, skopeo+umoci+mkfs.erofs ${theirs.at(-1).toFixed(0)} ms, ratio ${(ours.at(-1) / theirs.at(-1)).toFixed(2)}`);
  }
} finally {
  await reg.stop();
}
const ratio = median(ours) / median(theirs);
console.log(`median: ours ${median(ours).toFixed(0)} ms, theirs ${median(theirs).toFixed(0)} ms, ratio ${ratio.toFixed(2)} (target <= 0.80: ${ratio <= 0.8 ? 'met' : 'MISSED'})`);
