// The blueprints page: what the colony declared (each blueprint's spec, the desired state) beside what its
// reconcilers report (its status, the observed state), the outcome of its last reconcile, and the kinds
// (definitions) with the executors that reconcile them. A status field is marked as differing when the
// reconciler has not caught up (or cannot): a field named in both spec and status with other values, a
// `ready` below the spec's `replicas`, a `generation` (the one it reconciled, the reconciler kit's
// convention) below the blueprint's, or an `error`.
import { h, table, badge, ago } from './dom.js';

function text(v) {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

const has = (obj, k) => obj && Object.prototype.hasOwnProperty.call(obj, k);

/** The status fields compared with what was declared: {key: true when it differs}. */
export function compare(bp) {
  const spec = bp.spec || {};
  const status = bp.status || {};
  const out = {};
  for (const k of Object.keys(spec)) if (has(status, k) && k !== 'generation') out[k] = text(spec[k]) !== text(status[k]);
  if (typeof status.ready === 'number' && typeof spec.replicas === 'number') out.ready = status.ready < spec.replicas;
  if (typeof status.generation === 'number') out.generation = status.generation < (bp.metadata.generation || 0);
  if (has(status, 'error')) out.error = true;
  return out;
}

/** 'yes' (every compared field agrees), 'no' (one differs) or 'unknown' (no status, nothing to compare). */
export function inSync(bp) {
  const compared = compare(bp);
  const keys = Object.keys(compared);
  if (!keys.length) return 'unknown';
  return keys.some((k) => compared[k]) ? 'no' : 'yes';
}

function fields(obj, differs) {
  const keys = Object.keys(obj || {});
  if (!keys.length) return h('span', { class: 'muted' }, 'none');
  return h('span', { class: 'fields' }, keys.map((k) => h('span', {
    class: differs[k] ? 'field differs' : 'field', dataset: { key: k }, title: differs[k] ? 'desired and observed differ' : undefined,
  }, `${k}=${text(obj[k])}`)));
}

function lastReconcile(bp, processes) {
  const md = bp.metadata;
  if (!md.lastReconciliationProcess) return h('span', { class: 'muted' }, 'never');
  const p = processes.get(md.lastReconciliationProcess);
  const link = h('a', { href: `#/process/${md.lastReconciliationProcess}` }, ago(md.lastReconciliationTime));
  return h('span', { class: 'last-reconcile' }, p ? badge(p.state) : h('span', { class: 'muted' }, 'gone'), ' ', link);
}

async function processesOf(c, blueprints) {
  const ids = [...new Set(blueprints.map((b) => b.metadata.lastReconciliationProcess).filter(Boolean))];
  const found = await Promise.all(ids.map((id) => c.getProcess(id).catch(() => null)));
  return new Map(found.filter(Boolean).map((p) => [p.processid, p]));
}

/** #/blueprints */
export async function blueprintsView(view, c, colony) {
  const [blueprints, definitions] = await Promise.all([c.getBlueprints(colony), c.getBlueprintDefinitions(colony)]);
  const processes = await processesOf(c, blueprints);
  const rows = blueprints.map((b) => {
    const md = b.metadata;
    const differs = compare(b);
    return { attrs: { dataset: { name: md.name, kind: b.kind, generation: String(md.generation || 0), sync: inSync(b) } },
      cells: [md.name, b.kind, md.locationname || '', String(md.generation || 0), fields(b.spec, differs),
        fields(b.status, differs), lastReconcile(b, processes)] };
  });
  const defRows = definitions.map((d) => ({ attrs: { dataset: { kind: d.spec.names.kind } }, cells: [
    d.spec.names.kind, d.metadata.name, d.spec.handler.executorType, d.spec.handler.functionName,
    `${d.spec.handler.reconcileInterval || 60} s`, String(blueprints.filter((b) => b.kind === d.spec.names.kind).length)] }));
  view.replaceChildren(
    h('section', { class: 'card' }, h('h2', {}, 'Blueprints in colony ', colony),
      h('p', { class: 'muted' }, 'Desired state (spec) beside observed state (status, as the reconcilers report it). Add one with ',
        h('code', {}, 'colonies blueprint add --spec FILE'), '; check one with ', h('code', {}, 'colonies blueprint doctor --name NAME'), '.'),
      h('div', { id: 'blueprints' },
        table(['name', 'kind', 'location', 'gen', 'desired (spec)', 'observed (status)', 'last reconcile'], rows,
          { empty: 'no blueprints yet', phoneHidden: [2, 3, 6], wrap: [4, 5] }))),
    h('section', { class: 'card' }, h('h2', {}, 'Kinds'),
      h('div', { id: 'blueprint-definitions' }, table(['kind', 'definition', 'reconciled by', 'function', 'every', 'blueprints'],
        defRows, { empty: 'no blueprint definitions yet', phoneHidden: [1, 3, 4] }))));
}
