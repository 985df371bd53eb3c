// Copy the ES modules the SDK needs from node_modules into the server's static files
// (colonies/server/static/vendor/), so pages load them from the Colonies server itself:
// nothing is fetched from a CDN at run time. Run after `npm ci`: `node vendor.mjs` (or `npm run vendor`).
// The copies are committed, so the Python server works without npm; re-run after upgrading a package.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, 'node_modules');
const out = join(here, '..', '..', 'colonies', 'server', 'static', 'vendor');

// package -> [files relative to the package root]; each lands in vendor/<dir>/<basename>.
const FILES = {
  '@noble/secp256k1': { dir: 'noble-secp256k1', files: ['index.js', 'LICENSE'] },
  '@noble/hashes': {
    dir: 'noble-hashes',
    files: ['esm/sha3.js', 'esm/sha2.js', 'esm/hmac.js', 'esm/_md.js', 'esm/_u64.js', 'esm/utils.js',
            'esm/crypto.js', 'LICENSE'],
  },
};

const versions = {};
for (const [pkg, { dir, files }] of Object.entries(FILES)) {
  const root = join(modules, pkg);
  versions[pkg] = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
  mkdirSync(join(out, dir), { recursive: true });
  for (const f of files) {
    const src = join(root, f);
    const dst = join(out, dir, f.split('/').pop());
    if (f.endsWith('.js')) {
      // drop the source-map comment: the .map files are not vendored
      writeFileSync(dst, readFileSync(src, 'utf8').replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n'));
    } else {
      copyFileSync(src, dst);
    }
  }
}
writeFileSync(join(out, 'VERSIONS.json'), JSON.stringify(versions, null, 2) + '\n');
console.log(`vendored ${Object.entries(versions).map(([p, v]) => `${p}@${v}`).join(', ')} into ${out}`);
