// Drive the Colonies web pages in headless Chromium (Debian's /usr/bin/chromium via playwright-core).
// Used by tests/test_browser.py:
//
//   node tools/browser.mjs executor  '<json>'   the /executor page joins a colony and runs N processes
//   node tools/browser.mjs dashboard '<json>'   the dashboard signs in and watches a workflow complete,
//                                              run by a second tab at /executor; takes screenshots
//   node tools/browser.mjs dashboard-ux '<json>' sign in/out and "remember on this tab", the nav while
//                                              signed out, the process list's pages, the audit trail's width
//   node tools/browser.mjs files '<json>'       the files page: labels, a label's revisions with where
//                                              their bytes are, snapshots; desktop and phone
//   node tools/browser.mjs locations '<json>'   the locations page: sites, coordinates, the executors at
//                                              each (and at names with no record); desktop and phone
//   node tools/browser.mjs blueprints '<json>'  the blueprints page: desired (spec) vs observed (status),
//                                              the last reconcile, the kinds; desktop and phone
//
// Prints one JSON line with what it saw; exits 1 on failure (with the reason and the page's errors).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

const [scenario, rawConfig] = process.argv.slice(2);
const cfg = JSON.parse(rawConfig || '{}');
const TIMEOUT = (cfg.timeout || 30) * 1000;
const pageErrors = [];

async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'colonies-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: cfg.chromium || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 860 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  return { context, close: async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); } };
}

function watch(page, label) {
  page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`${label} console: ${m.text()}`); });
  page.setDefaultTimeout(TIMEOUT);
}

/** Open /executor in `page`, join the colony and start pulling work. */
async function startExecutor(page, { colony, name, type, executorKey, colonyKey }) {
  await page.goto(`${cfg.url}/executor`);
  await page.fill('#colony', colony);
  await page.fill('#name', name);
  await page.fill('#type', type);
  await page.fill('#prvkey', executorKey);
  if (colonyKey) await page.fill('#colonykey', colonyKey);
  await page.click('#start');
  await page.waitForSelector('#status[data-state="running"], #status[data-state="working"]');
}

async function screenshot(page, path) {
  mkdirSync(dirname(path), { recursive: true });
  await page.screenshot({ path, fullPage: true });
  return path;
}

async function executorScenario(context) {
  const page = await context.newPage();
  watch(page, 'executor');
  await startExecutor(page, cfg);
  await page.waitForFunction((n) => Number(document.getElementById('done-count').textContent)
    + Number(document.getElementById('failed-count').textContent) >= n, cfg.expect);
  const result = {
    done: Number(await page.textContent('#done-count')),
    failed: Number(await page.textContent('#failed-count')),
    thumbnails: await page.locator('#log img').count(),
    log: await page.locator('#log div').allTextContents(),
  };
  if (cfg.screenshot) result.screenshot = await screenshot(page, cfg.screenshot);
  await page.click('#stop');
  await page.waitForSelector('#status[data-state="stopped"]');
  return result;
}

async function dashboardScenario(context) {
  const dash = await context.newPage();
  watch(dash, 'dashboard');
  await dash.goto(`${cfg.url}/`);
  await dash.waitForSelector('body[data-ready="true"]');
  await dash.fill('#key', cfg.userKey);
  await dash.fill('#signin-colony', cfg.colony);
  await dash.click('#signin button[type=submit]');
  await dash.waitForSelector('#view[data-loaded="true"]');
  const counts = Object.fromEntries(await dash.locator('#counts .count[data-count]').evaluateAll(
    (els) => els.map((e) => [e.dataset.state, Number(e.dataset.count)])));
  // open the workflow from the list, see its DAG waiting, then let a second tab execute it
  await dash.click(`#workflows tr[data-graphid="${cfg.graphid}"] a`);
  await dash.waitForSelector('#dag svg g.node');
  const nodes = await dash.locator('#dag g.node').count();
  const before = await dash.locator('#dag g.node').evaluateAll((els) => els.map((e) => e.dataset.state));
  await dash.waitForSelector('#live[data-live="live"]');

  const worker = await context.newPage();
  watch(worker, 'executor');
  await startExecutor(worker, cfg);

  await dash.bringToFront();
  await dash.waitForFunction(() => {
    const states = [...document.querySelectorAll('#dag g.node')].map((e) => e.dataset.state);
    return states.length > 0 && states.every((s) => s === 'successful');
  });
  await dash.waitForSelector('#dag[data-graph-state="successful"]');
  const frames = Number(await dash.getAttribute('#live', 'data-frames'));
  const result = { counts, nodes, before, frames, screenshots: [] };
  if (cfg.screenshots) {
    result.screenshots.push(await screenshot(dash, join(cfg.screenshots, 'dashboard-workflow.png')));
    // the process view of one node, and the overview on a phone-sized screen
    await dash.click('#dag g.node');
    await dash.waitForSelector('#process[data-state="successful"]');
    result.auditEvents = await dash.locator('#process table').last().locator('tbody tr').count();
    result.screenshots.push(await screenshot(dash, join(cfg.screenshots, 'dashboard-process.png')));
    await dash.setViewportSize({ width: 390, height: 844 });
    await dash.goto(`${cfg.url}/#/`);
    await dash.waitForSelector('#view[data-loaded="true"]');
    await dash.waitForSelector('#throughput svg');
    result.phoneOverflow = await dash.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    result.screenshots.push(await screenshot(dash, join(cfg.screenshots, 'dashboard-phone.png')));
  }
  await worker.click('#stop');
  await worker.waitForSelector('#status[data-state="stopped"]');
  return result;
}

async function signInDashboard(page, remember) {
  await page.fill('#key', cfg.userKey);
  await page.fill('#signin-colony', cfg.colony);
  await page.setChecked('#remember', remember);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#view[data-loaded="true"]');
}

/** A new tab with the dashboard open and signed in (not remembered). */
async function signedInDashboard(context) {
  const page = await context.newPage();
  watch(page, 'dashboard');
  await page.goto(`${cfg.url}/`);
  await page.waitForSelector('body[data-ready="true"]');
  await signInDashboard(page, false);
  return page;
}

async function reloadDashboard(page) {
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  return page.isVisible('#signout');
}

/** The process list's pager as the user sees it, once the list for `key` (state|type|page) is drawn. */
async function pagerState(page, key) {
  await page.waitForSelector(`#page-info[data-key="${key}"]`);
  return page.evaluate(() => ({
    text: document.getElementById('page-info').textContent,
    rows: document.querySelectorAll('#processes tbody tr').length,
    next: !document.getElementById('page-next').disabled,
    prev: !document.getElementById('page-prev').disabled,
    note: document.getElementById('page-note').hidden ? '' : document.getElementById('page-note').textContent,
  }));
}

async function dashboardUxScenario(context) {
  const page = await context.newPage();
  watch(page, 'dashboard');
  const navShown = () => page.evaluate(() => {
    const nav = document.getElementById('nav');
    return getComputedStyle(nav).display !== 'none' && nav.getBoundingClientRect().height > 0;
  });
  const stored = () => page.evaluate(() => sessionStorage.length);
  await page.goto(`${cfg.url}/`);
  await page.waitForSelector('body[data-ready="true"]');
  const r = { navSignedOut: await navShown(), rememberDefault: await page.isChecked('#remember') };
  // not remembered (the default): the key lives in the page only, and a reload signs out
  await signInDashboard(page, false);
  r.navSignedIn = await navShown();
  r.storedWithout = await stored();
  r.signedInAfterReloadWithout = await reloadDashboard(page);
  r.navAfterReloadWithout = await navShown();
  // remembered: kept for this tab, until sign-out
  await signInDashboard(page, true);
  r.storedWith = await stored();
  r.signedInAfterReloadWith = await reloadDashboard(page);
  await page.waitForSelector('#view[data-loaded="true"]');

  // pages of one state, then all states
  await page.selectOption('#state-filter', String(cfg.pagedState));
  r.pages = [await pagerState(page, `${cfg.pagedState}||0`)];
  while (r.pages[r.pages.length - 1].next && r.pages.length < 20) {
    await page.click('#page-next');
    r.pages.push(await pagerState(page, `${cfg.pagedState}||${r.pages.length}`));
  }
  await page.click('#page-prev');
  r.back = await pagerState(page, `${cfg.pagedState}||${r.pages.length - 2}`);
  await page.selectOption('#state-filter', '-1');
  r.all = await pagerState(page, '-1||0');
  await page.fill('#type-filter', cfg.typeFilter);
  await page.press('#type-filter', 'Enter');
  r.typed = await pagerState(page, `-1|${cfg.typeFilter}|0`);

  // the audit trail of a process with a long error stays inside its card, on a desktop and a phone
  const auditFit = () => page.evaluate(() => {
    const card = document.getElementById('process').closest('section.card');
    const audit = [...document.querySelectorAll('#process table')].pop();
    const inner = card.clientWidth - parseFloat(getComputedStyle(card).paddingLeft) - parseFloat(getComputedStyle(card).paddingRight);
    return { overflow: Math.ceil(audit.getBoundingClientRect().width - inner), rows: audit.querySelectorAll('tbody tr').length };
  });
  await page.evaluate((id) => { location.hash = `#/process/${id}`; }, cfg.failedid);
  await page.waitForSelector('#process[data-state="failed"]');
  r.auditDesktop = await auditFit();
  await page.setViewportSize({ width: 390, height: 844 });
  r.auditPhone = await auditFit();

  await page.click('#signout');
  await page.waitForSelector('#signin-card:not([hidden])');
  r.storedAfterSignOut = await stored();
  r.navAfterSignOut = await navShown();
  return r;
}

/** The rows of a table as the user sees them: each row's data-* attributes and its cells' text. */
function rowsOf(page, selector) {
  return page.locator(selector).evaluateAll((trs) => trs.map((tr) => ({ ...tr.dataset,
    cells: [...tr.querySelectorAll('td')].map((td) => td.textContent.trim()),
    links: [...tr.querySelectorAll('a.object-link')].map((a) => a.href),
    kinds: [...tr.querySelectorAll('.fetch')].map((e) => e.dataset.kind),
    commands: [...tr.querySelectorAll('code.fetch-command')].map((e) => e.textContent) })));
}

async function filesScenario(context) {
  const page = await signedInDashboard(context);
  const loaded = async (view) => {
    await page.waitForSelector(`#view[data-view="${view}"][data-loaded="true"]`);
  };
  await page.click('#nav-files');
  await loaded('files');
  const r = { labels: await rowsOf(page, '#labels tbody tr'), snapshots: await rowsOf(page, '#snapshots tbody tr') };
  await page.click(`#labels a[data-label="${cfg.label}"]`);
  await loaded('files');
  await page.waitForSelector('#label-name');
  r.labelName = await page.textContent('#label-name');
  r.files = await rowsOf(page, '#files tbody tr');
  r.sublabels = await rowsOf(page, '#sublabels tbody tr');
  const fit = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  r.desktopOverflow = await fit();
  if (cfg.screenshots) r.screenshot = await screenshot(page, join(cfg.screenshots, 'dashboard-files.png'));
  await page.setViewportSize({ width: 390, height: 844 });
  r.phoneOverflow = await fit();
  await page.setViewportSize({ width: 1280, height: 860 });
  await page.click('a[href="#/files"]');
  await loaded('files');
  await page.waitForSelector('#snapshots');
  await page.click(`#snapshots tr[data-name="${cfg.snapshot}"] a`);
  await page.waitForSelector('#snapshot-name');
  await loaded('snapshot');
  r.snapshotName = await page.textContent('#snapshot-name');
  r.snapshotFiles = await rowsOf(page, '#snapshot-files tbody tr');
  return r;
}

async function locationsScenario(context) {
  const page = await signedInDashboard(context);
  await page.click('#nav-locations');
  await page.waitForSelector('#view[data-view="locations"][data-loaded="true"]');
  const r = { rows: await page.locator('#locations tbody tr').evaluateAll((trs) => trs.map((tr) => ({ ...tr.dataset,
    cells: [...tr.querySelectorAll('td')].map((td) => td.textContent.trim()),
    at: [...tr.querySelectorAll('.at')].map((e) => e.dataset.name),
    maps: [...tr.querySelectorAll('a.map-link')].map((a) => a.href) }))) };
  const fit = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  r.desktopOverflow = await fit();
  if (cfg.screenshots) r.screenshot = await screenshot(page, join(cfg.screenshots, 'dashboard-locations.png'));
  await page.setViewportSize({ width: 390, height: 844 });
  r.phoneOverflow = await fit();
  return r;
}

async function blueprintsScenario(context) {
  const page = await signedInDashboard(context);
  await page.click('#nav-blueprints');
  await page.waitForSelector('#view[data-view="blueprints"][data-loaded="true"]');
  const rows = (selector) => page.locator(selector).evaluateAll((trs) => trs.map((tr) => ({ ...tr.dataset,
    cells: [...tr.querySelectorAll('td')].map((td) => td.textContent.trim()),
    differs: [...tr.querySelectorAll('.field.differs')].map((e) => e.dataset.key),
    states: [...tr.querySelectorAll('.badge')].map((e) => e.dataset.state),
    links: [...tr.querySelectorAll('a')].map((a) => a.getAttribute('href')) })));
  const r = { rows: await rows('#blueprints tbody tr'), kinds: await rows('#blueprint-definitions tbody tr') };
  const fit = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  r.desktopOverflow = await fit();
  if (cfg.screenshots) r.screenshot = await screenshot(page, join(cfg.screenshots, 'dashboard-blueprints.png'));
  await page.setViewportSize({ width: 390, height: 844 });
  r.phoneOverflow = await fit();
  return r;
}

const SCENARIOS = { executor: executorScenario, dashboard: dashboardScenario, 'dashboard-ux': dashboardUxScenario,
  files: filesScenario, locations: locationsScenario, blueprints: blueprintsScenario };

async function main() {
  if (!SCENARIOS[scenario]) throw new Error(`unknown scenario ${scenario}; one of ${Object.keys(SCENARIOS)}`);
  const { context, close } = await launch();
  try {
    const result = await SCENARIOS[scenario](context);
    result.pageErrors = pageErrors;
    console.log(JSON.stringify({ ok: true, ...result }));
  } finally {
    await close();
  }
}

main().catch((err) => {
  console.log(JSON.stringify({ ok: false, error: String(err && err.stack || err), pageErrors }));
  process.exit(1);
});
