// The locations page: the colony's named sites (an HPC centre, a cloud region, an edge device) with
// their coordinates, and the executors at each. An executor names its site with its own `locationname`
// (matched ignoring case, as assign matches it); a name no location record has is listed too, so an
// executor is never hidden because its site was not added (or was removed).
import { h, table, EXECUTOR_STATES } from './dom.js';

/** The executors whose locationname is `name`, ignoring case, by executor name. */
export function executorsAt(executors, name) {
  const key = name.toLowerCase();
  return executors.filter((e) => (e.locationname || '').toLowerCase() === key)
    .sort((a, b) => a.executorname.localeCompare(b.executorname));
}

function executorList(executors) {
  if (!executors.length) return h('span', { class: 'muted' }, 'none');
  return h('span', {}, executors.map((e, i) => [i ? ', ' : '', h('span', { class: 'at', dataset: { name: e.executorname },
    title: `${e.executortype} · ${EXECUTOR_STATES[e.state] || e.state}` }, e.executorname)]));
}

function mapLink(l) {
  const href = `https://www.openstreetmap.org/?mlat=${l.lat}&mlon=${l.long}#map=9/${l.lat}/${l.long}`;
  return h('a', { href, target: '_blank', rel: 'noopener noreferrer', class: 'map-link' }, 'map');
}

/** #/locations */
export async function locationsView(view, c, colony) {
  const [locations, executors] = await Promise.all([c.getLocations(colony), c.getExecutors(colony)]);
  const known = new Set(locations.map((l) => l.name.toLowerCase()));
  const unrecorded = [...new Set(executors.map((e) => e.locationname || '')
    .filter((n) => n && !known.has(n.toLowerCase())))].sort();
  const rows = locations.map((l) => ({ attrs: { dataset: { name: l.name, recorded: 'true' } }, cells: [
    l.name, l.description, l.long.toFixed(4), l.lat.toFixed(4), executorList(executorsAt(executors, l.name)), mapLink(l)] }));
  for (const name of unrecorded) {
    rows.push({ attrs: { dataset: { name, recorded: 'false' } }, cells: [
      name, h('span', { class: 'muted' }, 'no location record'), '', '', executorList(executorsAt(executors, name)), ''] });
  }
  view.replaceChildren(h('section', { class: 'card' }, h('h2', {}, 'Locations in colony ', colony),
    h('p', { class: 'muted' }, 'Sites executors sit at. The colony owner adds them (',
      h('code', {}, 'colonies location add --name NAME --long X --lat Y'), '); an executor names its site when it is added (',
      h('code', {}, 'colonies executor add --location NAME'), ').'),
    h('div', { id: 'locations' }, table(['name', 'description', 'long', 'lat', 'executors', ''], rows,
      { empty: 'no locations yet', phoneHidden: [1, 5], wrap: [1, 4] }))));
}
