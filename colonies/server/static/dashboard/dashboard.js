// The Colonies dashboard: sign in with a private key (kept in this tab only; every request is signed
// here), then watch a colony — counts, executors, processes, workflows, throughput — and open a process
// (spec, input, output, errors, attributes, logs, audit trail) or a workflow (its DAG, live over /pubsub);
// the files page (labels, revisions, snapshots) is in files.js, the locations page in locations.js, the
// blueprints page (desired vs observed state) in blueprints.js.
import { Client, ColoniesError, idOf } from 'colonies';
import { h, badge, short, when, ago, json, table, STATES, EXECUTOR_STATES } from './dom.js';
import { drawGraph } from './graph.js';
import { buckets, drawChart } from './chart.js';
import { filesOverview, labelView, snapshotView } from './files.js';
import { locationsView } from './locations.js';
import { blueprintsView } from './blueprints.js';

const $ = (id) => document.getElementById(id);
const SESSION_KEY = 'colonies.dashboard';
const REFRESH_MS = 3000;
const CHART_MS = 15000;
const SUB_TIMEOUT_S = 300;
const PAGE = 20;       // processes per page of the overview's list
const MAX_LIST = 100;  // the most getprocessesmsg returns for one state

const session = { client: null, colony: '', colonies: [], isServer: false };
// Aborted when we leave the current view: its timers and sockets stop, and a view still loading when
// we leave starts none.
let current = new AbortController();

// -- sign in / out -----------------------------------------------------------------------------------------
async function signIn(prvkey, colony) {
  const client = new Client({ url: location.origin, prvkey });
  const id = idOf(prvkey); // throws on a malformed key
  let colonies = [];
  let isServer = false;
  if (colony) {
    await client.getColony(colony); // proves membership
    colonies = [colony];
  } else {
    try {
      colonies = (await client.getColonies()).map((c) => c.name); // only the server's key may list them
      isServer = true;
    } catch (err) {
      if (err instanceof ColoniesError && err.status === 403) throw new Error('name the colony this key belongs to');
      throw err;
    }
  }
  Object.assign(session, { client, colonies, isServer, colony });
  $('who').textContent = `${isServer ? 'server' : 'member'} ${short(id)}${colony ? ` · ${colony}` : ''}`;
  $('signin-card').hidden = true;
  $('nav').hidden = false;
  $('signout').hidden = false;
}

function signOut() {
  sessionStorage.removeItem(SESSION_KEY);
  Object.assign(session, { client: null, colony: '', colonies: [], isServer: false });
  stopView();
  $('view').replaceChildren();
  $('who').textContent = '';
  $('signin-card').hidden = false;
  $('nav').hidden = true;
  $('signout').hidden = true;
}

$('signin').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('signin-error').textContent = '';
  const prvkey = $('key').value.trim().toLowerCase();
  const colony = $('signin-colony').value.trim();
  try {
    await signIn(prvkey, colony);
  } catch (err) {
    $('signin-error').textContent = `could not sign in: ${err.message}`;
    return;
  }
  $('key').value = '';
  // "remember on this tab" (off by default): otherwise the key is only in this page's memory
  if ($('remember').checked) sessionStorage.setItem(SESSION_KEY, JSON.stringify({ prvkey, colony }));
  else sessionStorage.removeItem(SESSION_KEY);
  route();
});
$('signout').addEventListener('click', () => { signOut(); location.hash = '#/'; });

// -- views -------------------------------------------------------------------------------------------------
function stopView() {
  current.abort();
  current = new AbortController();
  return current.signal;
}

function every(signal, ms, fn) {
  if (signal.aborted) return;
  const t = setInterval(fn, ms);
  signal.addEventListener('abort', () => clearInterval(t), { once: true });
}

function showError(where, err) {
  where.replaceChildren(h('p', { class: 'error' }, err.message || String(err)));
}

function link(href, text) {
  return h('a', { href }, text);
}

/** Keep a set of /pubsub subscriptions open while the view lives (the server ends them at their timeout). */
function live(signal, subscriptions, onProcess, status) {
  let sub = null;
  let frames = 0;
  const open = () => {
    if (signal.aborted) return;
    sub = session.client.subscribe(subscriptions(), {
      onProcess: (p) => { frames++; status.dataset.frames = String(frames); onProcess(p); },
    });
    status.dataset.live = 'connecting';
    sub.opened.then(() => { status.dataset.live = 'live'; status.textContent = '● live'; }, () => {});
    sub.closed.then(() => {
      status.dataset.live = 'closed';
      status.textContent = '○ reconnecting';
      if (!signal.aborted) setTimeout(open, 1000);  // the subscription timed out or the server restarted
    });
  };
  open();
  signal.addEventListener('abort', () => { if (sub) sub.close(); }, { once: true });
}

// a pilot allocator reports its allocations (colonies/executors/pilot.py): shown beside its state
const pilotStatus = (e) => {
  const p = e.allocations && e.allocations.projects && e.allocations.projects.pilot;
  if (!p) return '';
  const reason = p.state !== 'ok' && p.reason ? `: ${p.reason}` : '';
  return ` · pilot ${p.state}${reason} (${p.running || 0} running, ${p.queued || 0} queued, ${p.slots || 0} slots)`;
};

// overview: counts, processes (filtered), executors, workflows, throughput
async function overview(view, signal) {
  const c = session.client;
  const colony = session.colony;
  const filter = { state: -1, executortype: '', page: 0 };
  const counts = h('div', { class: 'counts', id: 'counts' });
  const processes = h('div', { id: 'processes' });
  const executors = h('div', { id: 'executors' });
  const workflows = h('div', { id: 'workflows' });
  const chart = h('div', { class: 'chart', id: 'throughput' });
  const stateSelect = h('select', { id: 'state-filter', 'aria-label': 'state',
    onchange: (e) => { filter.state = Number(e.target.value); filter.page = 0; refresh(); } },
  h('option', { value: -1 }, 'all states'), STATES.map((n, i) => h('option', { value: i }, n)));
  const typeInput = h('input', { type: 'text', id: 'type-filter', placeholder: 'executor type', 'aria-label': 'executor type',
    onchange: (e) => { filter.executortype = e.target.value.trim(); filter.page = 0; refresh(); } });
  const pageInfo = h('span', { id: 'page-info', class: 'muted', 'aria-live': 'polite' });
  const pageNote = h('p', { id: 'page-note', class: 'muted', hidden: true });
  const turn = (by) => { filter.page = Math.max(0, filter.page + by); refresh(); };
  const prevButton = h('button', { type: 'button', class: 'secondary', id: 'page-prev', disabled: true, onclick: () => turn(-1) }, '‹ previous');
  const nextButton = h('button', { type: 'button', class: 'secondary', id: 'page-next', disabled: true, onclick: () => turn(1) }, 'next ›');
  const pager = h('div', { class: 'pager' }, prevButton, pageInfo, nextButton);
  if (session.isServer) {
    // the server's key owns the server, not the colonies: it sees the colonies and global counts only
    const st = await c.statistics();
    const n = [st.waitingprocesses, st.runningprocesses, st.successfulprocesses, st.failedprocesses];
    view.replaceChildren(
      h('section', { class: 'card' }, h('h2', {}, 'Server'), h('div', { class: 'counts', id: 'counts' },
        STATES.slice(0, 4).map((name, i) => h('div', { class: `count s${i}`, dataset: { state: name, count: n[i] || 0 } },
          h('b', {}, n[i] || 0), name)),
        h('div', { class: 'count neutral' }, h('b', {}, `${st.colonies || 0}/${st.executors || 0}`),
          'colonies/executors'))),
      h('section', { class: 'card' }, h('h2', {}, 'Colonies'),
        table(['name'], session.colonies.map((name) => ({ cells: [name] })), { empty: 'no colonies yet' }),
        h('p', { class: 'muted' }, 'To watch a colony, sign in with one of its users\' or executors\' keys.')));
    view.dataset.loaded = 'true';
    return;
  }
  view.replaceChildren(
    colony ? h('section', { class: 'card' }, h('h2', {}, 'Colony ', colony), counts) : '',
    colony ? h('section', { class: 'card' }, h('h2', {}, 'Throughput, last hour (finished per minute)'), chart) : '',
    colony ? h('section', { class: 'card' }, h('h2', {}, 'Processes'), h('div', { class: 'filters' }, stateSelect, typeInput),
      processes, pager, pageNote) : '',
    colony ? h('div', { class: 'grid2' }, h('section', { class: 'card' }, h('h2', {}, 'Workflows'), workflows),
      h('section', { class: 'card' }, h('h2', {}, 'Executors'), executors)) : '',
  );
  if (!colony) return;

  let drawing = 0;  // a refresh that a newer one overtakes draws nothing
  async function refresh() {
    const seq = ++drawing;
    const want = { ...filter };
    const states = want.state === -1 ? [0, 1, 2, 3, 4] : [want.state];
    const from = want.page * PAGE;
    const ask = Math.min(MAX_LIST, from + PAGE + 1);  // one more than this page: is there a next one?
    try {
      const [st, lists, execs, graphs] = await Promise.all([
        c.colonyStats(colony),
        Promise.all(states.map((state) => c.getProcesses(colony, { state, count: ask, executortype: want.executortype }))),
        c.getExecutors(colony),
        c.getProcessGraphs(colony, { count: 20 }),
      ]);
      if (seq !== drawing) return;
      const n = [st.waitingprocesses, st.runningprocesses, st.successfulprocesses, st.failedprocesses, st.cancelledprocesses];
      const listed = lists.flat();
      if (want.page > 0 && from >= listed.length) {  // the list shrank under this page
        filter.page = Math.max(0, Math.ceil(listed.length / PAGE) - 1);
        refresh();
        return;
      }
      const procs = listed.slice(from, from + PAGE);
      // M: a state whose list came back short is complete; else its count (the colony's, so not with a type filter)
      let total = 0;
      let known = true;
      states.forEach((state, k) => {
        if (lists[k].length < ask) total += lists[k].length;
        else if (!want.executortype) total += Math.max(n[state] || 0, lists[k].length);
        else { total += lists[k].length; known = false; }
      });
      const more = listed.length > from + PAGE;
      const to = from + procs.length;
      pageInfo.textContent = procs.length ? `${from + 1}–${to} of ${known ? total : `more than ${total}`}` : `0 of ${total}`;
      Object.assign(pageInfo.dataset, { from: from + 1, to, total, key: `${want.state}|${want.executortype}|${want.page}` });
      prevButton.disabled = want.page === 0;
      nextButton.disabled = !more;
      pageNote.hidden = more || to >= total;
      pageNote.textContent = `The server lists at most ${MAX_LIST} processes per state: narrow the list by state or `
        + 'executor type, or use the CLI, to see the others.';
      counts.replaceChildren(...STATES.map((name, i) => h('div', {
        class: `count s${i}${filter.state === i ? ' active' : ''}`, dataset: { state: name, count: n[i] || 0 },
        role: 'button', tabindex: 0, title: `show ${name} processes`,
        onclick: () => { filter.state = filter.state === i ? -1 : i; filter.page = 0; stateSelect.value = String(filter.state); refresh(); },
      }, h('b', {}, n[i] || 0), name)),
      h('div', { class: 'count neutral', dataset: { state: 'workflows' } },
        h('b', {}, `${st.runningworkflows || 0}/${st.successfulworkflows || 0}/${st.failedworkflows || 0}`), 'workflows run/ok/failed'));
      processes.replaceChildren(table(['process', 'function', 'type', 'state', 'submitted', 'executor'],
        procs.map((p) => ({ attrs: { dataset: { processid: p.processid, state: STATES[p.state] } }, cells: [
          link(`#/process/${p.processid}`, short(p.processid)), p.spec.funcname, p.spec.conditions.executortype,
          badge(p.state), when(p.submissiontime), short(p.assignedexecutorid)] })),
        { empty: 'no processes match', phoneHidden: [2, 4, 5] }));
      executors.replaceChildren(table(['name', 'type', 'state', 'last seen'],
        execs.map((e) => ({ cells: [e.executorname, e.executortype,
          (EXECUTOR_STATES[e.state] || e.state) + pilotStatus(e), ago(e.lastheardfromtime)] })),
        { empty: 'no executors', phoneHidden: [1] }));
      workflows.replaceChildren(table(['workflow', 'state', 'processes', 'submitted'],
        graphs.map((g) => ({ attrs: { dataset: { graphid: g.processgraphid, state: STATES[g.state] } }, cells: [
          link(`#/workflow/${g.processgraphid}`, short(g.processgraphid)), badge(g.state), (g.processids || []).length,
          when(g.submissiontime)] })),
        { empty: 'no workflows', phoneHidden: [3] }));
      if (!signal.aborted) view.dataset.loaded = 'true';
    } catch (err) {
      showError(processes, err);
    }
  }
  async function refreshChart() {
    try {
      const [ok, failed] = await Promise.all([2, 3].map((state) => c.processHistory(colony, 3600, { state })));
      chart.replaceChildren(drawChart(buckets(ok, failed)));
    } catch (err) {
      showError(chart, err);
    }
  }
  await Promise.all([refresh(), refreshChart()]);
  every(signal, REFRESH_MS, refresh);
  every(signal, CHART_MS, refreshChart);
}

// one process: spec, input, output, errors, attributes, logs, audit trail; live over /pubsub
async function processView(view, signal, processid) {
  const c = session.client;
  const status = h('span', { class: 'muted', id: 'live' });
  const body = h('div', { id: 'process' });
  view.replaceChildren(h('section', { class: 'card' }, h('h2', {}, 'Process ', h('span', { class: 'mono' }, processid), ' ', status),
    body));
  async function refresh() {
    try {
      const p = await c.getProcess(processid);
      const colony = p.spec.conditions.colonyname;
      const [events, logs] = await Promise.all([
        c.processEvents(processid).catch((err) => [{ event: 'unavailable', detail: err.message }]),
        c.getLogs(colony, { processid, count: 100 }).catch(() => []),
      ]);
      body.dataset.state = STATES[p.state];
      body.replaceChildren(
        h('dl', { class: 'kv' },
          h('dt', {}, 'state'), h('dd', {}, badge(p.state)),
          h('dt', {}, 'function'), h('dd', {}, p.spec.funcname),
          h('dt', {}, 'executor type'), h('dd', {}, p.spec.conditions.executortype),
          h('dt', {}, 'initiator'), h('dd', {}, p.initiatorname || short(p.initiatorid)),
          h('dt', {}, 'assigned to'), h('dd', { class: 'mono' }, p.assignedexecutorid || '—'),
          h('dt', {}, 'submitted'), h('dd', {}, when(p.submissiontime)),
          h('dt', {}, 'started'), h('dd', {}, when(p.starttime) || '—'),
          h('dt', {}, 'ended'), h('dd', {}, when(p.endtime) || '—'),
          h('dt', {}, 'retries'), h('dd', {}, `${p.retries} of ${p.spec.maxretries < 0 ? 'unlimited' : p.spec.maxretries}`),
          p.processgraphid ? [h('dt', {}, 'workflow'), h('dd', {}, link(`#/workflow/${p.processgraphid}`, short(p.processgraphid)))] : ''),
        h('h3', {}, 'Input'), json(p.in || []),
        h('h3', {}, 'Output'), h('div', { id: 'output' }, json(p.out || [])),
        h('h3', {}, 'Errors'), (p.errors || []).length ? h('pre', { class: 'error' }, p.errors.join('\n')) : h('p', { class: 'muted' }, 'none'),
        h('h3', {}, 'Attributes'), table(['key', 'value', 'type'], (p.attributes || []).map((a) => ({
          cells: [a.key, a.value, ['in', 'out', 'err', 'env'][a.attributetype] || a.attributetype] }))),
        h('h3', {}, 'Logs'), logs.length ? h('pre', {}, logs.map((l) => `${when(l.timestamp)}  ${l.executorname}: ${l.message}`).join('\n'))
          : h('p', { class: 'muted' }, 'none'),
        h('h3', {}, 'Audit trail'), table(['#', 'time', 'event', 'actor', 'detail'], events.map((e) => ({
          cells: [e.seq, when(e.timestamp), e.event, short(e.actorid), e.detail] })), { phoneHidden: [0, 3], wrap: [4] }),
        h('h3', {}, 'Spec'), json(p.spec),
      );
    } catch (err) {
      showError(body, err);
    }
  }
  await refresh();
  live(signal, () => [1, 2, 3, 4].map((state) => ({ msgtype: 'subscribeprocessmsg', colonyname: '', processid, executortype: '',
    state, timeout: SUB_TIMEOUT_S })), () => refresh(), status);
}

/**
 * Where a workflow's processes run: the executor that took each (getExecutors, by assignedexecutorid) and
 * that executor's location (its locationname, described by getLocations); for a process no executor took
 * yet, the site it asks for (conditions.locationname). load() fetches again only for an executor id it
 * does not know (true when it fetched); a member may read both lists, anyone else sees no places.
 */
function workflowPlaces(c) {
  const executors = new Map();
  const sites = new Map();
  let fetched = false;
  async function load(colony, processes) {
    const unknown = [...processes].some((p) => p.assignedexecutorid && !executors.has(p.assignedexecutorid));
    if (fetched && !unknown) return false;
    fetched = true;
    const [es, ls] = await Promise.all([c.getExecutors(colony).catch(() => []), c.getLocations(colony).catch(() => [])]);
    for (const e of es) executors.set(e.executorid, e);
    for (const l of ls) sites.set(l.name.toLowerCase(), l);
    return true;
  }
  function where(p) {
    const e = p.assignedexecutorid ? executors.get(p.assignedexecutorid) : null;
    const name = e ? e.locationname || '' : (p.spec.conditions && p.spec.conditions.locationname) || '';
    const site = name ? sites.get(name.toLowerCase()) : null;
    const title = site ? `${site.name}: ${site.description || ''} (${site.lat.toFixed(2)}, ${site.long.toFixed(2)})` : '';
    if (e) return { executor: e.executorname, location: name, title: `${e.executorname} (${e.executortype})${title ? `\n${title}` : ''}` };
    return name ? { executor: '', location: name, title: `waits for an executor at ${title || name}` } : null;
  }
  return { load, where };
}

// one workflow: the DAG coloured by state, recoloured live by /pubsub pushes, with where each node runs
async function workflowView(view, signal, graphid) {
  const c = session.client;
  const status = h('span', { class: 'muted', id: 'live' });
  const stateEl = h('span', { id: 'graph-state' });
  const dag = h('div', { class: 'dag', id: 'dag' });
  const list = h('div', { id: 'graph-processes' });
  view.replaceChildren(h('section', { class: 'card' },
    h('h2', {}, 'Workflow ', h('span', { class: 'mono' }, short(graphid)), ' ', stateEl, ' ', status),
    dag, h('div', { class: 'legend' }, STATES.map((_, i) => badge(i)))),
  h('section', { class: 'card' }, h('h2', {}, 'Processes'), list));
  const processes = new Map();
  let graph;
  let drawn;
  const places = workflowPlaces(c);
  const renderList = () => list.replaceChildren(table(['node', 'function', 'state', 'executor', 'location', 'process'],
    [...processes.values()].map((p) => {
      const at = places.where(p) || {};
      return { cells: [p.spec.nodename, p.spec.funcname, badge(p.state), at.executor || '',
        at.executor ? at.location || '' : '', link(`#/process/${p.processid}`, short(p.processid))] };
    }), { phoneHidden: [1, 4] }));
  async function refreshGraph() {
    graph = await c.getProcessGraph(graphid);
    stateEl.replaceChildren(badge(graph.state));
    dag.dataset.graphState = STATES[graph.state];
  }
  try {
    await refreshGraph();
    const ids = (graph.processids || []).slice(0, 200);
    for (const p of await Promise.all(ids.map((id) => c.getProcess(id)))) processes.set(p.processid, p);
    await places.load(graph.colonyname, processes.values());
    drawn = drawGraph([...processes.values()], (id) => { location.hash = `#/process/${id}`; }, places.where);
    dag.replaceChildren(drawn.svg);
    renderList();
  } catch (err) {
    showError(dag, err);
    return;
  }
  const onPush = (p) => {
    const old = processes.get(p.processid);
    if (!old || (old.state === p.state && old.assignedexecutorid === p.assignedexecutorid)) return;
    processes.set(p.processid, p);
    drawn.update(p);
    renderList();
    refreshGraph().catch(() => {});
    // an executor not seen yet (it joined after the page loaded): fetch it, then relabel
    places.load(graph.colonyname, [p]).then((fetched) => { if (fetched) { drawn.relabel(); renderList(); } }).catch(() => {});
  };
  live(signal, () => [...processes.keys()].flatMap((processid) => [1, 2, 3, 4].map((state) => ({
    msgtype: 'subscribeprocessmsg', colonyname: '', processid, executortype: '', state, timeout: SUB_TIMEOUT_S }))),
  onPush, status);
  // a safety net for pushes missed while reconnecting; the live view does not depend on it
  every(signal, 15000, async () => {
    try {
      for (const p of await Promise.all([...processes.keys()].map((id) => c.getProcess(id)))) onPush(p);
      await refreshGraph();
    } catch { /* shown on the next push */ }
  });
}

// files (labels, revisions, snapshots): members only; the server's key is no member of any colony
async function filesRoute(view, kind, id) {
  if (!session.colony) {
    view.replaceChildren(h('section', { class: 'card' }, h('h2', {}, 'Files'),
      h('p', { class: 'muted' }, 'Files belong to a colony: sign in with one of its users\' or executors\' keys.')));
  } else if (kind === 'snapshot') await snapshotView(view, session.client, session.colony, id);
  else if (id) await labelView(view, session.client, session.colony, id);
  else await filesOverview(view, session.client, session.colony);
  view.dataset.loaded = 'true';
}

// locations (sites and the executors at each): members read them
async function locationsRoute(view) {
  if (!session.colony) {
    view.replaceChildren(h('section', { class: 'card' }, h('h2', {}, 'Locations'),
      h('p', { class: 'muted' }, 'Locations belong to a colony: sign in with one of its users\' or executors\' keys.')));
  } else await locationsView(view, session.client, session.colony);
  view.dataset.loaded = 'true';
}

// blueprints (desired vs observed state): members and the colony owner read them
async function blueprintsRoute(view) {
  if (!session.colony) {
    view.replaceChildren(h('section', { class: 'card' }, h('h2', {}, 'Blueprints'),
      h('p', { class: 'muted' }, 'Blueprints belong to a colony: sign in with one of its users\' or executors\' keys.')));
  } else await blueprintsView(view, session.client, session.colony);
  view.dataset.loaded = 'true';
}

// -- routing -----------------------------------------------------------------------------------------------
async function route() {
  const signal = stopView();
  const view = $('view');
  if (!session.client) { view.replaceChildren(); return; }
  const [, kind, id] = location.hash.split('/');
  view.dataset.view = kind || 'overview';
  delete view.dataset.loaded;
  try {
    if (kind === 'process' && id) await processView(view, signal, id);
    else if (kind === 'workflow' && id) await workflowView(view, signal, id);
    else if (kind === 'files' || (kind === 'snapshot' && id)) await filesRoute(view, kind, id);
    else if (kind === 'locations') await locationsRoute(view);
    else if (kind === 'blueprints') await blueprintsRoute(view);
    else await overview(view, signal);
  } catch (err) {
    showError(view, err);
  }
}

window.addEventListener('hashchange', route);

// restore a session kept in this tab
(async () => {
  const saved = sessionStorage.getItem(SESSION_KEY);
  if (saved) {
    try {
      const { prvkey, colony } = JSON.parse(saved);
      await signIn(prvkey, colony);
    } catch (err) {
      sessionStorage.removeItem(SESSION_KEY);
      $('signin-error').textContent = `session expired: ${err.message}`;
    }
  }
  await route();
  document.body.dataset.ready = 'true';
})();
