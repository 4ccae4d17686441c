// A registry proxy that misbehaves on purpose on GET /v2/<repo>/blobs/<digest>
// for blobs over 1 KiB (everything else passes through):
//   'corrupt'  flips one byte in the middle (same length, so only the digest check catches it)
//   'truncate' sends half, then drops the connection
//   'stall'    sends half, then sends nothing more (until releaseStalled/stop)
//   '5xx-once' answers the first request per blob URL with 503, then behaves
//   'none'     passes everything through
// The mode is read when each upstream response arrives; setMode() changes it.
import http from 'node:http';
import { freePort } from './registry.mjs';

export const FAULT_MODES = ['none', 'corrupt', 'truncate', 'stall', '5xx-once'];
const BLOB_RE = /^\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/;

export async function startFaultProxy(reg, { mode = 'none', minSize = 1024 } = {}) {
  if (!FAULT_MODES.includes(mode)) throw new Error(`unknown fault mode ${mode}`);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let current = mode;
  const failedOnce = new Set();
  const stalled = new Set();
  const log = []; // { method, path, status, fault }
  const upstreamAuth = reg.auth ? 'Basic ' + Buffer.from(`${reg.auth.username}:${reg.auth.password}`).toString('base64') : null;

  const server = http.createServer((req, res) => {
    const path = req.url.split('?')[0];
    const isBlob = req.method === 'GET' && BLOB_RE.test(path);
    const headers = { ...req.headers };
    delete headers.host;
    if (upstreamAuth && !headers.authorization) headers.authorization = upstreamAuth;
    const up = http.request(`${reg.url}${req.url}`, { method: req.method, headers }, (ur) => {
      const h = { ...ur.headers };
      if (h.location) h.location = h.location.replace(reg.url, base);
      const len = Number(ur.headers['content-length'] || 0);
      const m = current;
      const faulty = isBlob && ur.statusCode === 200 && len > minSize && m !== 'none';
      log.push({ method: req.method, path, status: faulty && m === '5xx-once' && !failedOnce.has(path) ? 503 : ur.statusCode, fault: faulty ? m : null });
      if (!faulty || (m === '5xx-once' && failedOnce.has(path))) {
        res.writeHead(ur.statusCode, h);
        ur.pipe(res);
        return;
      }
      if (m === '5xx-once') {
        failedOnce.add(path);
        ur.destroy();
        const body = JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'service unavailable, try again' }] });
        res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      res.writeHead(200, h);
      const half = len >> 1;
      let off = 0;
      let cut = false;
      ur.on('data', (chunk) => {
        if (cut) return;
        if (m === 'corrupt') {
          if (off <= half && half < off + chunk.length) { chunk = Buffer.from(chunk); chunk[half - off] ^= 0xff; }
        } else if (off + chunk.length >= half) {
          // truncate / stall: send exactly half, then cut.
          cut = true;
          const part = chunk.subarray(0, half - off);
          off += chunk.length;
          ur.destroy();
          res.write(part, () => {
            if (m === 'truncate') res.socket?.destroy();
            else stalled.add(res); // silent, open socket until stop()/setMode()
          });
          return;
        }
        off += chunk.length;
        if (!res.write(chunk)) { ur.pause(); res.once('drain', () => ur.resume()); }
      });
      ur.on('end', () => { if (!cut) res.end(); });
    });
    up.on('error', () => res.destroy());
    res.on('close', () => { if (!res.writableFinished) up.destroy(); });
    req.pipe(up);
  });
  await new Promise((r, j) => { server.once('error', j); server.listen(port, '127.0.0.1', r); });
  const releaseStalled = () => { for (const s of stalled) s.socket?.destroy(); stalled.clear(); };
  return {
    url: base, host: `127.0.0.1:${port}`,
    mode: () => current,
    setMode: (m) => {
      if (!FAULT_MODES.includes(m)) throw new Error(`unknown fault mode ${m}`);
      current = m;
    },
    // Drop the connections left stalled (stop() does this too).
    releaseStalled,
    log: () => log.slice(),
    stop: () => new Promise((r) => {
      releaseStalled();
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
