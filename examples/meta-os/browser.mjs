// Step 3's edge device, and someone watching: one headless Chromium (Debian's, driven by playwright-core
// from clients/js/node_modules) with two tabs.
//
//   node examples/meta-os/browser.mjs '<json config>'
//
// * the edge tab opens /executor?colony=..&type=..&name=.., joins with the executor key (an executor the
//   colony owner already added at location `edge` and approved) and pulls work: it runs `predict`;
// * the dashboard tab (when `userKey` and `graphid` are given) signs in with the user's key and opens the
//   workflow before the edge tab joins, so it watches the DAG live: it records every change of a node's
//   state and place (the executor and location shown under it), waits until every node ended and shows
//   where it ran, then saves a screenshot of the page (`screenshot`).
//
// Config: {url, colony, name, type, executorKey, userKey, graphid, screenshot, chromium, timeout (s)}.
// Prints one JSON line with what it saw; exits 1 on failure (with the reason and the pages' errors).
// SIGTERM or SIGINT closes the browser and exits 1.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const require = createRequire(new URL('../../clients/js/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const cfg = JSON.parse(process.argv[2] || '{}');
const TIMEOUT = (cfg.timeout || 90) * 1000;
const pageErrors = [];
let closing = null;

function watch(page, label) {
  page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`${label} console: ${m.text()}`); });
  page.setDefaultTimeout(TIMEOUT);
}

/** The dashboard tab: signed in, showing the workflow, recording each node's changes in window.seen. */
async function openDashboard(context) {
  const page = await context.newPage();
  watch(page, 'dashboard');
  await page.goto(`${cfg.url}/`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.fill('#key', cfg.userKey);
  await page.fill('#signin-colony', cfg.colony);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#view[data-loaded="true"]');
  await page.goto(`${cfg.url}/#/workflow/${cfg.graphid}`);
  await page.waitForSelector('#dag svg g.node');
  await page.waitForSelector('#live[data-live="live"]');
  await page.evaluate(() => {
    const seen = [];
    const look = () => {
      for (const g of document.querySelectorAll('#dag g.node')) {
        const d = g.dataset;
        const last = seen.findLast((x) => x.node === d.node);
        if (!last || last.state !== d.state || last.executor !== d.executor || last.location !== d.location) {
          seen.push({ node: d.node, state: d.state, executor: d.executor, location: d.location, at: Date.now() });
        }
      }
    };
    look();
    new MutationObserver(look).observe(document.getElementById('dag'), { subtree: true, attributes: true, childList: true });
    window.seen = seen;
  });
  return page;
}

/** The edge tab: /executor joined with an approved executor key, pulling work. */
async function openEdge(context) {
  const page = await context.newPage();
  watch(page, 'edge');
  const q = new URLSearchParams({ colony: cfg.colony, type: cfg.type, name: cfg.name });
  await page.goto(`${cfg.url}/executor?${q}`);
  await page.fill('#prvkey', cfg.executorKey);
  await page.click('#start');
  await page.waitForSelector('#status[data-state="running"], #status[data-state="working"]');
  return page;
}

async function main() {
  const profile = mkdtempSync(join(tmpdir(), 'colonies-meta-os-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: cfg.chromium || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1100, height: 760 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  closing = async () => { await context.close().catch(() => {}); rmSync(profile, { recursive: true, force: true }); };
  try {
    const dash = cfg.graphid ? await openDashboard(context) : null;
    const edge = await openEdge(context);
    const result = {};
    if (dash) {
      await dash.bringToFront();
      // every node ended, and every one that succeeded shows the executor that ran it
      await dash.waitForFunction(() => {
        const nodes = [...document.querySelectorAll('#dag g.node')];
        return nodes.length > 0 && nodes.every((g) => ['successful', 'failed', 'cancelled'].includes(g.dataset.state)
          && (g.dataset.state !== 'successful' || g.dataset.executor));
      });
      result.nodes = await dash.locator('#dag g.node').evaluateAll((els) => els.map((g) => ({ ...g.dataset,
        place: g.querySelector('text.place').textContent })));
      result.rows = await dash.locator('#graph-processes tbody tr').evaluateAll((trs) => trs.map((tr) =>
        [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())));
      result.seen = await dash.evaluate(() => window.seen);
      result.frames = Number(await dash.getAttribute('#live', 'data-frames'));
      if (cfg.screenshot) {
        mkdirSync(dirname(cfg.screenshot), { recursive: true });
        await dash.setViewportSize({ width: 1000, height: 420 });  // fullPage grows it to the content
        await dash.screenshot({ path: cfg.screenshot, fullPage: true });
        result.screenshot = cfg.screenshot;
      }
    } else {
      await edge.waitForFunction(() => Number(document.getElementById('done-count').textContent)
        + Number(document.getElementById('failed-count').textContent) >= 1);
    }
    result.done = Number(await edge.textContent('#done-count'));
    result.failed = Number(await edge.textContent('#failed-count'));
    result.log = (await edge.locator('#log div').allTextContents()).reverse();
    await edge.click('#stop');
    await edge.waitForSelector('#status[data-state="stopped"]');
    console.log(JSON.stringify({ ok: true, ...result, pageErrors }));
  } finally {
    await closing();
  }
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    if (closing) await closing();
    process.exit(1);
  });
}

main().catch((err) => {
  console.log(JSON.stringify({ ok: false, error: String((err && err.stack) || err), pageErrors }));
  process.exit(1);
});
