// A small tar writer (POSIX ustar + pax records) for building image layers
// and archives byte for byte in tests: exact paths (so tests can write
// `../escape`, `/abs` or whiteouts), owners, modes, links, fifos and xattrs.
import { gzipSync } from 'node:zlib';

const BLOCK = 512;
const TYPES = { file: '0', hardlink: '1', symlink: '2', dir: '5', fifo: '6' };
const MAX_OCTAL7 = 0o7777777; // largest value an 8-byte octal field holds

function header(name, { size = 0, mode = 0o644, uid = 0, gid = 0, mtime = 1700000000, typeflag = '0', linkname = '' }) {
  const h = Buffer.alloc(BLOCK);
  const put = (v, off, len) => { const b = Buffer.from(v); b.copy(h, off, 0, Math.min(b.length, len)); };
  const oct = (n, off, len) => put(n.toString(8).padStart(len - 1, '0') + '\0', off, len);
  put(name, 0, 100);
  oct(mode & 0o7777, 100, 8);
  oct(Math.min(uid, MAX_OCTAL7), 108, 8);
  oct(Math.min(gid, MAX_OCTAL7), 116, 8);
  oct(size, 124, 12);
  oct(mtime, 136, 12);
  h.fill(0x20, 148, 156); // checksum placeholder: spaces
  put(typeflag, 156, 1);
  put(linkname, 157, 100);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  let sum = 0;
  for (const b of h) sum += b;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return h;
}

function pad(buf) {
  const rem = buf.length % BLOCK;
  return rem ? Buffer.concat([buf, Buffer.alloc(BLOCK - rem)]) : buf;
}

// One pax record: "<len> <key>=<value>\n", where <len> counts itself.
export function paxRecord(key, value) {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

// The bytes of one entry (pax header if needed, header, data) without the
// end-of-archive blocks; tarBuffer() joins these.
export function tarEntry(e) {
  const type = e.type || 'file';
  if (!(type in TYPES)) throw new Error(`tar: unknown entry type ${type}`);
  const data = type === 'file' ? Buffer.from(e.data ?? '') : Buffer.alloc(0);
  let name = e.path;
  if (type === 'dir' && !name.endsWith('/')) name += '/';
  const linkname = e.linkname || '';
  const uid = e.uid ?? 0, gid = e.gid ?? 0;
  const pax = [];
  if (Buffer.byteLength(name) > 99) pax.push(paxRecord('path', name));
  if (Buffer.byteLength(linkname) > 99) pax.push(paxRecord('linkpath', linkname));
  if (uid > MAX_OCTAL7) pax.push(paxRecord('uid', String(uid)));
  if (gid > MAX_OCTAL7) pax.push(paxRecord('gid', String(gid)));
  for (const [k, v] of Object.entries(e.xattrs || {})) pax.push(paxRecord(`SCHILY.xattr.${k}`, v));
  const parts = [];
  if (pax.length) {
    const body = Buffer.concat(pax);
    parts.push(header('PaxHeader', { size: body.length, typeflag: 'x' }), pad(body));
  }
  const defMode = type === 'dir' ? 0o755 : type === 'symlink' ? 0o777 : 0o644;
  // Truncate by bytes; the pax record above carries the full name.
  const cut = (s) => Buffer.from(s).subarray(0, 99);
  parts.push(header(Buffer.byteLength(name) > 99 ? cut(name) : name, {
    size: data.length, mode: e.mode ?? defMode, uid, gid,
    mtime: e.mtime ?? 1700000000, typeflag: TYPES[type],
    linkname: Buffer.byteLength(linkname) > 99 ? cut(linkname) : linkname,
  }));
  if (data.length) parts.push(pad(data));
  return Buffer.concat(parts);
}

// entries: [{path, type: 'file'|'dir'|'symlink'|'hardlink'|'fifo', mode, uid,
// gid, mtime, data (Buffer|string), linkname, xattrs: {name: value}}] -> Buffer
export function tarBuffer(entries) {
  return Buffer.concat([...entries.map(tarEntry), Buffer.alloc(BLOCK * 2)]);
}

export const gzip = (buf, level = 1) => gzipSync(buf, { level });
