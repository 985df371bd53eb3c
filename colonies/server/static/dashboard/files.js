// The files page (ColonyFS): labels with their file counts, a label's files with every revision, and
// snapshots. The server holds metadata only; the bytes are in an object store the server never reads
// (S3, or a local directory on the machines that run the work). So a revision's "download" is where its
// bytes are and the command that fetches them (checksum-verified) with the member's own key:
//   * local store: the object's path on the machine of the store (COLONIES_FS_DIR), and the command;
//   * S3: a direct link to the object (path style, `http(s)://endpoint/bucket/key`) — it opens only when
//     the bucket lets this browser read it (public-read or CORS with anonymous GET); a presigned link
//     would need the S3 secret key, which is neither in the page nor on the server — and the command.
import { h, short, when, table } from './dom.js';

const MAX_REVISION_LISTS = 200;  // a label with more files lists the rest without revisions
const MAX_SNAPSHOT_FILES = 200;

export function fileSize(n) {
  let v = Number(n) || 0;
  for (const unit of ['B', 'KiB', 'MiB', 'GiB']) {
    if (v < 1024 || unit === 'GiB') return unit === 'B' ? `${v} B` : `${v.toFixed(1)} ${unit}`;
    v /= 1024;
  }
  return `${v.toFixed(1)} TiB`;
}

/** One label form everywhere: a leading '/', no trailing '/'. */
export function normaliseLabel(label) {
  return `/${String(label || '').replace(/^\/+|\/+$/g, '')}`;
}

/** Where a revision's bytes are: {kind, text, href?} (href only for S3, see the note at the top). */
export function location(file) {
  const ref = file.ref || {};
  const o = ref.s3object || {};
  if (ref.protocol === 'local') return { kind: 'local', text: `${String(o.bucket).replace(/\/+$/, '')}/${o.object}` };
  if (ref.protocol === 's3') {
    const scheme = o.tls ? 'https' : 'http';
    const href = o.server ? `${scheme}://${o.server}${o.port ? `:${o.port}` : ''}/${o.bucket}/${o.object.split('/').map(encodeURIComponent).join('/')}` : '';
    return { kind: 's3', text: `s3://${o.bucket}/${o.object}`, href };
  }
  return { kind: ref.protocol || 'unknown', text: o.object || '' };
}

function fetchCell(file) {
  const loc = location(file);
  const cmd = `colonies fs get -i ${file.fileid} -d .`;
  return h('div', { class: 'fetch', dataset: { kind: loc.kind } },
    loc.href ? h('a', { href: loc.href, target: '_blank', rel: 'noopener noreferrer', class: 'object-link', download: file.name },
      'open object') : '',
    h('div', { class: 'mono object-where' }, loc.text),
    h('code', { class: 'fetch-command' }, cmd));
}

function labelLink(name) {
  return h('a', { href: `#/files/${encodeURIComponent(name)}`, dataset: { label: name } }, name);
}

/** #/files: labels and snapshots. */
export async function filesOverview(view, c, colony) {
  const [labels, snapshots] = await Promise.all([c.getFileLabels(colony), c.getSnapshots(colony)]);
  labels.sort((a, b) => a.name.localeCompare(b.name));
  view.replaceChildren(
    h('section', { class: 'card' }, h('h2', {}, 'Files in colony ', colony),
      h('p', { class: 'muted' }, 'The server keeps metadata only; the bytes are in S3 or a local directory. ',
        'Fetch them with ', h('code', {}, 'colonies fs get'), ' or ', h('code', {}, 'colonies fs sync'), '.'),
      h('div', { id: 'labels' }, table(['label', 'files (revisions)'],
        labels.map((l) => ({ attrs: { dataset: { label: l.name, files: l.files } }, cells: [labelLink(l.name), l.files] })),
        { empty: 'no files yet (colonies fs sync -d DIR -l /label)' }))),
    h('section', { class: 'card' }, h('h2', {}, 'Snapshots'),
      h('div', { id: 'snapshots' }, table(['name', 'label', 'files', 'added', 'snapshot'],
        snapshots.map((s) => ({ attrs: { dataset: { snapshotid: s.snapshotid, name: s.name } }, cells: [
          h('a', { href: `#/snapshot/${s.snapshotid}` }, s.name), labelLink(s.label), (s.fileids || []).length,
          when(s.added), h('span', { class: 'mono' }, short(s.snapshotid))] })),
        { empty: 'no snapshots', phoneHidden: [3, 4] }))),
  );
}

function revisionRows(name, revisions) {
  return revisions.map((f, i) => ({
    attrs: { dataset: { fileid: f.fileid, name, seq: f.sequencenr } },
    cells: [i === 0 ? name : '', f.sequencenr, fileSize(f.size), when(f.added),
      h('span', { class: 'mono', title: f.checksum }, short(f.checksum)), fetchCell(f)],
  }));
}

/** #/files/<label>: the label's sub-labels and files, each file with every revision (newest first). */
export async function labelView(view, c, colony, rawLabel) {
  const label = normaliseLabel(decodeURIComponent(rawLabel));
  const [datas, sub] = await Promise.all([c.getFiles(colony, label), c.getFileLabels(colony, { name: label, exact: true })]);
  datas.sort((a, b) => a.name.localeCompare(b.name));
  const listed = datas.slice(0, MAX_REVISION_LISTS);
  const revs = await Promise.all(listed.map((d) => c.getFile(colony, { label, name: d.name, latest: false })));
  const rows = listed.flatMap((d, i) => revisionRows(d.name, [...revs[i]].sort((a, b) => b.sequencenr - a.sequencenr)));
  for (const d of datas.slice(MAX_REVISION_LISTS)) {
    rows.push({ attrs: { dataset: { name: d.name } }, cells: [d.name, '', fileSize(d.size), '', short(d.checksum), ''] });
  }
  const subs = sub.filter((l) => l.name !== label);
  view.replaceChildren(h('section', { class: 'card' },
    h('h2', {}, 'Label ', h('span', { class: 'mono', id: 'label-name' }, label)),
    h('p', {}, h('a', { href: '#/files' }, '‹ all labels')),
    subs.length ? [h('h3', {}, 'Sub-labels'), h('div', { id: 'sublabels' }, table(['label', 'files'],
      subs.map((l) => ({ cells: [labelLink(l.name), l.files] }))))] : '',
    h('h3', {}, 'Files'),
    h('div', { id: 'files' }, table(['file', 'revision', 'size', 'added', 'sha-256', 'where / fetch'], rows,
      { empty: 'no files with this label', phoneHidden: [1, 3, 4], wrap: [5] })),
    datas.length > MAX_REVISION_LISTS ? h('p', { class: 'muted' },
      `Revisions are listed for the first ${MAX_REVISION_LISTS} files; colonies fs info lists any file's.`) : ''));
}

/** #/snapshot/<id>: a snapshot's frozen revisions. */
export async function snapshotView(view, c, colony, snapshotid) {
  const s = await c.getSnapshot(colony, { snapshotid });
  const ids = (s.fileids || []).slice(0, MAX_SNAPSHOT_FILES);
  const files = await Promise.all(ids.map((fileid) => c.getFile(colony, { fileid }).then((r) => r[0], () => null)));
  view.replaceChildren(h('section', { class: 'card' },
    h('h2', {}, 'Snapshot ', h('span', { id: 'snapshot-name' }, s.name)),
    h('p', {}, h('a', { href: '#/files' }, '‹ files and snapshots')),
    h('dl', { class: 'kv' }, h('dt', {}, 'label'), h('dd', {}, labelLink(s.label)),
      h('dt', {}, 'added'), h('dd', {}, when(s.added)), h('dt', {}, 'files'), h('dd', {}, (s.fileids || []).length),
      h('dt', {}, 'id'), h('dd', { class: 'mono' }, s.snapshotid),
      h('dt', {}, 'download'), h('dd', {}, h('code', {}, `colonies fs snapshot download -i ${s.snapshotid} -d .`))),
    h('h3', {}, 'Files'),
    h('div', { id: 'snapshot-files' }, table(['file', 'label', 'revision', 'size', 'where / fetch'],
      files.map((f, i) => ({ attrs: { dataset: { fileid: ids[i] } }, cells: f
        ? [f.name, f.label, f.sequencenr, fileSize(f.size), fetchCell(f)] : ['(removed)', '', '', '', short(ids[i])] })),
      { empty: 'no files in this snapshot', phoneHidden: [1, 2], wrap: [4] }))));
}
