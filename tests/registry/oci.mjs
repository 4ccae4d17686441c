// Offline image archives for load tests: an OCI image layout directory and
// a classic `docker save` tarball, built with the same image builder the
// registry fixtures use (buildImage in registry.mjs).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildImage } from './registry.mjs';
import { tarBuffer } from './tar.mjs';

// 'host:5000/a/b:tag' -> 'tag'; null without a tag (or with only a digest).
export function tagOf(name) {
  const noDigest = name.split('@')[0];
  const i = noDigest.lastIndexOf(':');
  return i > noDigest.lastIndexOf('/') ? noDigest.slice(i + 1) : null;
}

// opts: buildImage options ({layers, config, platform, gzip, ...}) plus
// name (full reference, written as io.containerd.image.name) and refName
// (org.opencontainers.image.ref.name; default: name's tag, else 'latest').
// Returns buildImage()'s object.
export async function writeOciLayout(dir, { name, refName, ...opts }) {
  const img = buildImage({ ...opts, mediaType: 'oci' });
  const blobDir = join(dir, 'blobs', 'sha256');
  mkdirSync(blobDir, { recursive: true });
  for (const [digest, buf] of img.blobs) writeFileSync(join(blobDir, digest.slice(7)), buf);
  writeFileSync(join(blobDir, img.digest.slice(7)), img.manifestBuf);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const annotations = { 'org.opencontainers.image.ref.name': refName ?? (name && tagOf(name)) ?? 'latest' };
  if (name) annotations['io.containerd.image.name'] = name;
  writeFileSync(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: img.mediaType, digest: img.digest, size: img.manifestBuf.length, platform: img.descriptor.platform, annotations }],
  }));
  return img;
}

// A `docker save` tarball: manifest.json ([{Config, RepoTags, Layers}]),
// <hex>.json config, <diffid-hex>/layer.tar (+ VERSION, json), repositories.
// repoTag: 'repo:tag', an array of them, or null. Returns buildImage()'s object.
export async function writeDockerSave(file, repoTag, opts) {
  const img = buildImage({ ...opts, gzip: false, mediaType: 'docker' });
  const tags = repoTag == null ? [] : [].concat(repoTag);
  const cfgName = `${img.configDigest.slice(7)}.json`;
  const entries = [{ path: cfgName, data: img.configBuf }];
  const seen = new Set();
  let parent = '';
  const layers = img.tars.map((tar, i) => {
    const id = img.diffIds[i].slice(7);
    if (!seen.has(id)) {
      seen.add(id);
      entries.push({ path: id, type: 'dir' }, { path: `${id}/VERSION`, data: '1.0' },
        { path: `${id}/json`, data: JSON.stringify({ id, ...(parent ? { parent } : {}) }) },
        { path: `${id}/layer.tar`, data: tar });
    }
    parent = id;
    return `${id}/layer.tar`;
  });
  const repos = {};
  for (const t of tags) {
    const i = t.lastIndexOf(':');
    (repos[t.slice(0, i)] ||= {})[t.slice(i + 1)] = parent;
  }
  entries.push({ path: 'repositories', data: JSON.stringify(repos) });
  entries.push({ path: 'manifest.json', data: JSON.stringify([{ Config: cfgName, RepoTags: tags.length ? tags : null, Layers: layers }]) });
  writeFileSync(file, tarBuffer(entries));
  return img;
}
