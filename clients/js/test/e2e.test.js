// The SDK against a real Colonies server. Skipped unless COLONIES_TEST_URL and the colony's keys are
// given (tests/test_js_sdk.py starts a server and runs this file with them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, ColoniesError, Executor, ProcessState, funcSpec, generatePrivateKey, idOf } from '../src/colonies.js';

const url = process.env.COLONIES_TEST_URL;
const colony = process.env.COLONIES_TEST_COLONY;
const colonyKey = process.env.COLONIES_TEST_COLONY_PRVKEY;
const userKey = process.env.COLONIES_TEST_USER_PRVKEY;
const skip = !(url && colony && colonyKey && userKey) && 'needs COLONIES_TEST_URL and keys (see tests/test_js_sdk.py)';

test('submit, assign long-poll, close, fail, get and list', { skip, timeout: 30000 }, async () => {
  const user = new Client({ url, prvkey: userKey });
  const exKey = generatePrivateKey();
  const ex = new Executor({ url, prvkey: exKey, colony, name: 'js-1', type: 'js' });
  await ex.register(colonyKey);
  const worker = ex.client;

  // nothing to do: a short long-poll ends with null
  assert.equal(await worker.assign(colony, 1), null);

  const a = await user.submit(funcSpec('sum', colony, 'js', { args: [1, 2, 3] }));
  const b = await user.submit(funcSpec('boom', colony, 'js'));
  assert.equal(a.state, ProcessState.WAITING);
  assert.equal(a.initiatorid, idOf(userKey));

  const first = await worker.assign(colony, 5);
  assert.equal(first.processid, a.processid);
  assert.equal(first.assignedexecutorid, idOf(exKey));
  await worker.close(first.processid, [6]);
  const second = await worker.assign(colony, 5);
  await worker.fail(second.processid, ['it broke']);

  const gotA = await user.getProcess(a.processid);
  assert.equal(gotA.state, ProcessState.SUCCESS);
  assert.deepEqual(gotA.out, [6]);
  const gotB = await user.getProcess(b.processid);
  assert.equal(gotB.state, ProcessState.FAILED);
  assert.deepEqual(gotB.errors, ['it broke']);
  const ok = await user.getProcesses(colony, { state: ProcessState.SUCCESS });
  assert.ok(ok.some((p) => p.processid === a.processid));
  const events = await user.processEvents(a.processid);
  assert.ok(events.length >= 3, JSON.stringify(events));

  // errors carry the server's status
  await assert.rejects(user.getProcess('0'.repeat(64)), (e) => e instanceof ColoniesError && e.status === 404);
  const stranger = new Client({ url, prvkey: generatePrivateKey() });
  await assert.rejects(stranger.getProcesses(colony), (e) => e instanceof ColoniesError && e.status === 403);
});

test('an Executor runs JS functions per funcname; a workflow flows through it; /pubsub waits', { skip, timeout: 30000 },
  async () => {
    const user = new Client({ url, prvkey: userKey });
    const ex = new Executor({ url, prvkey: generatePrivateKey(), colony, name: 'js-2', type: 'jsflow', slots: 2,
      pollTimeout: 2 });
    ex.function('emit', (x) => x);
    ex.function('sum', (...xs) => xs.reduce((s, x) => s + x, 0));
    ex.function('fails', () => { throw new Error('no luck'); });
    ex.function('logs', async function logs(text) { await this.log(`got ${text}`); return text.toUpperCase(); });
    await ex.register(colonyKey);
    const functions = (await user.getFunctions(colony, 'js-2')).map((f) => f.funcname).sort();
    assert.deepEqual(functions, ['emit', 'fails', 'logs', 'sum']);
    const running = ex.run();
    try {
      const spec = (nodename, funcname, args, dependencies = []) => funcSpec(funcname, colony, 'jsflow',
        { nodename, args, dependencies });
      const graph = await user.submitWorkflow(colony, [spec('a', 'emit', [1]), spec('b', 'emit', [2]),
        spec('c', 'sum', [], ['a', 'b'])]);
      const cid = graph.processids.find((id) => !graph.rootprocessids.includes(id));
      const c = await user.waitForProcess(cid, 20);
      assert.equal(c.state, ProcessState.SUCCESS);
      assert.deepEqual(c.out, [3]);
      assert.equal((await user.getProcessGraph(graph.processgraphid)).state, ProcessState.SUCCESS);

      const failed = await user.waitForProcess((await user.submit(funcSpec('fails', colony, 'jsflow'))).processid, 20);
      assert.equal(failed.state, ProcessState.FAILED);
      assert.deepEqual(failed.errors, ['no luck']);
      const logged = await user.waitForProcess((await user.submit(funcSpec('logs', colony, 'jsflow', { args: ['hi'] })))
        .processid, 20);
      assert.deepEqual(logged.out, ['HI']);
      const logs = await user.getLogs(colony, { processid: logged.processid });
      assert.deepEqual(logs.map((l) => l.message), ['got hi']);

      // subscribeprocesses: a push when any jsflow process succeeds
      let pushed;
      const gotPush = new Promise((resolve) => { pushed = resolve; });
      const q = { processid: '' };
      const sub = user.subscribeProcesses(colony, 'jsflow', ProcessState.SUCCESS, 10, {
        onProcess: (x) => { if (x.processid === q.processid) pushed(x); },
      });
      await sub.opened;
      q.processid = (await user.submit(funcSpec('emit', colony, 'jsflow', { args: ['x'] }))).processid;
      const push = await Promise.race([gotPush, sub.closed.then(() => null)]);
      sub.close();
      assert.equal(push && push.state, ProcessState.SUCCESS);
    } finally {
      ex.stop();
      await running;
    }
    assert.ok(ex.stats.done >= 5 && ex.stats.failed === 1, JSON.stringify(ex.stats));
  });

test('files and snapshots: the ColonyFS metadata messages', { skip, timeout: 30000 }, async () => {
  const user = new Client({ url, prvkey: userKey });
  const ref = (object) => ({ protocol: 's3', s3object: { server: 's3.example', port: 9000, tls: false, accesskey: '',
    secretkey: '', region: '', encryptionkey: '', encryptionalg: '', object, bucket: 'bkt' } });
  const add = (label, name, object) => user.addFile(colony, { label, name, size: 3, checksum: 'ab'.repeat(32),
    checksumalg: 'SHA256', ref: ref(object) });
  const first = await add('/js', 'a.txt', 'k1');
  const second = await add('/js', 'a.txt', 'k2');
  await add('/js/sub', 'b.txt', 'k3');
  assert.ok(second.sequencenr > first.sequencenr);
  const labels = await user.getFileLabels(colony, { name: '/js', exact: true });
  assert.deepEqual(labels.map((l) => [l.name, l.files]).sort(), [['/js', 2], ['/js/sub', 1]]);
  const files = await user.getFiles(colony, '/js');
  assert.deepEqual(files.map((f) => f.name), ['a.txt']);
  const revisions = await user.getFile(colony, { label: '/js', name: 'a.txt' });
  assert.deepEqual(revisions.map((f) => f.fileid).sort(), [first.fileid, second.fileid].sort());
  const [newest] = await user.getFile(colony, { label: '/js', name: 'a.txt', latest: true });
  assert.equal(newest.fileid, second.fileid);
  assert.equal((await user.getFile(colony, { fileid: first.fileid }))[0].ref.s3object.object, 'k1');

  const snap = await user.createSnapshot(colony, '/js', 'js-snap');
  assert.equal(snap.fileids.length, 2);  // the newest a.txt and the sub-label's b.txt
  assert.ok(snap.fileids.includes(second.fileid) && !snap.fileids.includes(first.fileid));
  assert.equal((await user.getSnapshot(colony, { name: 'js-snap' })).snapshotid, snap.snapshotid);
  assert.ok((await user.getSnapshots(colony)).some((s) => s.snapshotid === snap.snapshotid));
  await assert.rejects(user.createSnapshot(colony, '/js', 'js-snap'), (e) => e instanceof ColoniesError && e.status === 409);
  await user.removeSnapshot(colony, { snapshotid: snap.snapshotid });
  await user.createSnapshot(colony, '/js', 'js-snap-2');
  await user.removeAllSnapshots(colony);
  assert.deepEqual(await user.getSnapshots(colony), []);

  await user.removeFile(colony, { fileid: first.fileid });
  assert.equal((await user.getFile(colony, { label: '/js', name: 'a.txt' })).length, 1);
  await user.removeFile(colony, { label: '/js', name: 'a.txt' });
  assert.deepEqual(await user.getFiles(colony, '/js'), []);
  const stranger = new Client({ url, prvkey: generatePrivateKey() });
  await assert.rejects(stranger.getFileLabels(colony), (e) => e instanceof ColoniesError && e.status === 403);
});

test('locations: the colony owner adds and removes, members read', { skip, timeout: 30000 }, async () => {
  const owner = new Client({ url, prvkey: colonyKey });
  const user = new Client({ url, prvkey: userKey });
  const added = await owner.addLocation(colony, { name: 'js-edge', description: 'a phone', long: 11.97, lat: 57.7 });
  assert.match(added.locationid, /^[0-9a-f]{64}$/);
  assert.deepEqual({ ...added, locationid: '' }, { locationid: '', name: 'js-edge', colonyname: colony,
    description: 'a phone', long: 11.97, lat: 57.7 });
  await owner.addLocation(colony, { name: 'js-cloud' });
  assert.deepEqual(await user.getLocation(colony, 'js-edge'), added);
  const names = (await user.getLocations(colony)).map((l) => l.name);
  assert.ok(names.includes('js-edge') && names.includes('js-cloud'), JSON.stringify(names));
  await assert.rejects(owner.addLocation(colony, { name: 'js-edge' }), (e) => e instanceof ColoniesError && e.status === 409);
  await assert.rejects(owner.addLocation(colony, { name: 'far', lat: 91 }), (e) => e instanceof ColoniesError
    && e.status === 400 && /location\.lat/.test(e.message));
  await assert.rejects(user.addLocation(colony, { name: 'mine' }), (e) => e instanceof ColoniesError && e.status === 403);
  await assert.rejects(owner.getLocations(colony), (e) => e instanceof ColoniesError && e.status === 403);
  await owner.removeLocation(colony, 'js-edge');
  await owner.removeLocation(colony, 'js-cloud');
  await assert.rejects(user.getLocation(colony, 'js-edge'), (e) => e instanceof ColoniesError && e.status === 404);
  await assert.rejects(owner.removeLocation(colony, 'js-edge'), (e) => e instanceof ColoniesError && e.status === 404);
});

test('blueprints: a definition, a blueprint checked against its schema, status and reconcile', { skip, timeout: 30000 }, async () => {
  const owner = new Client({ url, prvkey: colonyKey });
  const user = new Client({ url, prvkey: userKey });
  const definition = { metadata: { name: 'js-deployments', colonyname: colony }, spec: {
    names: { kind: 'JsDeployment' }, handler: { executorType: 'js-reconciler', functionName: 'reconcile' },
    schema: { type: 'object', required: ['replicas'], properties: { replicas: { type: 'integer' } } } } };
  const d = await owner.addBlueprintDefinition(definition);
  assert.match(d.blueprintdefinitionid, /^[0-9a-f]{64}$/);
  assert.ok((await user.getBlueprintDefinitions(colony)).some((x) => x.metadata.name === 'js-deployments'));
  const bp = { kind: 'JsDeployment', metadata: { name: 'js-web', colonyname: colony }, spec: { replicas: 2 } };
  const added = await user.addBlueprint(bp);
  assert.equal(added.metadata.generation, 1);
  await assert.rejects(user.addBlueprint({ ...bp, metadata: { ...bp.metadata, name: 'js-bad' }, spec: { replicas: 'two' } }),
    (e) => e instanceof ColoniesError && e.status === 400 && /spec\.replicas/.test(e.message));
  const updated = await user.updateBlueprint({ ...bp, spec: { replicas: 3 } });
  assert.equal(updated.metadata.generation, 2);
  await user.updateBlueprintStatus(colony, 'js-web', { replicas: 3 });
  assert.deepEqual((await user.getBlueprint(colony, 'js-web')).status, { replicas: 3 });
  assert.deepEqual((await user.getBlueprintHistory(added.blueprintid)).map((x) => x.generation), [2, 1]);
  const p = await user.reconcileBlueprint(colony, 'js-web', { force: true });
  assert.deepEqual(p.spec.kwargs, { kind: 'JsDeployment', blueprintName: 'js-web', force: true });
  assert.deepEqual((await user.getBlueprints(colony, { kind: 'JsDeployment' })).map((x) => x.metadata.name), ['js-web']);
  await assert.rejects(owner.removeBlueprintDefinition(colony, 'js-deployments'), (e) => e instanceof ColoniesError && e.status === 409);
  await user.removeBlueprint(colony, 'js-web');
  await owner.removeBlueprintDefinition(colony, 'js-deployments');
  await assert.rejects(user.getBlueprint(colony, 'js-web'), (e) => e instanceof ColoniesError && e.status === 404);
});
