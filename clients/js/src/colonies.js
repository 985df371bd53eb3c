// Colonies JavaScript SDK: an ES module for browsers and Node.js (>= 20), no build step.
//
// Wire protocol (see the Colonies protocol spec, section 1): every request is an envelope
// {payloadtype, payload: base64(JSON), signature} signed with ECDSA secp256k1 over
// SHA3-256 of the base64 payload *text*; signature = r || s || v (65 bytes, low-S, v in {0,1});
// id = hex(SHA3-256(ascii hex of the uncompressed 65-byte public key)).
//
// In Node the imports below resolve from node_modules; in a page an import map points them at the
// copies the Colonies server serves under /static/vendor/ (see clients/js/vendor.mjs).
import * as secp from '@noble/secp256k1';
import { sha3_256 } from '@noble/hashes/sha3';
import { sha256 } from '@noble/hashes/sha2';
import { hmac } from '@noble/hashes/hmac';

// RFC6979 needs a synchronous HMAC-SHA256 (WebCrypto's is async and needs a secure context).
secp.etc.hmacSha256Sync = (key, ...msgs) => hmac(sha256, key, secp.etc.concatBytes(...msgs));

export const ProcessState = Object.freeze({ WAITING: 0, RUNNING: 1, SUCCESS: 2, FAILED: 3, CANCELLED: 4 });
export const ExecutorState = Object.freeze({ PENDING: 0, APPROVED: 1, REJECTED: 2, UNREGISTERED: 3 });
export const STATE_NAMES = ['waiting', 'running', 'successful', 'failed', 'cancelled'];

const N = secp.CURVE.n;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// -- bytes, hex, base64 -------------------------------------------------------------------------------------
export function bytesToHex(bytes) {
  return secp.etc.bytesToHex(bytes);
}

export function hexToBytes(hex) {
  if (typeof hex !== 'string' || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new Error('expected an even-length hex string');
  }
  return secp.etc.hexToBytes(hex.toLowerCase());
}

/** SHA3-256 (FIPS-202) of a string's UTF-8 bytes, or of bytes; lowercase hex. */
export function sha3Hex(data) {
  return bytesToHex(sha3_256(typeof data === 'string' ? encoder.encode(data) : data));
}

/** Standard base64 (with padding) of a string's UTF-8 bytes. */
export function base64Encode(text) {
  const bytes = encoder.encode(text);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

/** The UTF-8 text behind standard base64. */
export function base64Decode(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return decoder.decode(bytes);
}

// -- keys, identities, signatures ---------------------------------------------------------------------------
function privateKeyBytes(prvkey) {
  const raw = hexToBytes(prvkey);
  const d = raw.length === 32 ? BigInt('0x' + bytesToHex(raw)) : 0n;
  if (d <= 0n || d >= N) throw new Error('private key must be 32 bytes (64 hex chars) in (0, n)');
  return raw;
}

/** A new random private key: 64 lowercase hex chars. */
export function generatePrivateKey() {
  return bytesToHex(secp.utils.randomPrivateKey());
}

/** The identity of an uncompressed (65-byte) public key. */
export function idOfPublicKey(pubkey65) {
  return sha3Hex(bytesToHex(pubkey65));
}

/** The identity (server, colony, executor or user id) that a private key signs as. */
export function idOf(prvkey) {
  return idOfPublicKey(secp.getPublicKey(privateKeyBytes(prvkey), false));
}

/** Sign the exact payload text (the base64 string); 130 hex chars r || s || v. */
export function sign(payload, prvkey) {
  const sig = secp.sign(sha3_256(encoder.encode(payload)), privateKeyBytes(prvkey), { lowS: true });
  return bytesToHex(sig.toCompactRawBytes()) + sig.recovery.toString(16).padStart(2, '0');
}

/** The id that signed `payload`; throws on a malformed, high-S or unrecoverable signature. */
export function recoverId(payload, signature) {
  const raw = hexToBytes(signature);
  if (raw.length !== 65) throw new Error('signature must be 65 bytes');
  const v = raw[64];
  if (v > 1) throw new Error('invalid signature recovery id');
  const r = BigInt('0x' + bytesToHex(raw.subarray(0, 32)));
  const s = BigInt('0x' + bytesToHex(raw.subarray(32, 64)));
  if (!(r > 0n && r < N && s > 0n && s <= N >> 1n)) throw new Error('invalid signature: r, s out of range or high s');
  const hash = sha3_256(encoder.encode(payload));
  const point = new secp.Signature(r, s, v).recoverPublicKey(hash);
  const pub = point.toRawBytes(false);
  if (!secp.verify(new secp.Signature(r, s), hash, pub, { lowS: true })) throw new Error('signature does not verify');
  return idOfPublicKey(pub);
}

// -- envelopes ----------------------------------------------------------------------------------------------
/** `msg` with a fresh `timestamp` (Unix ns) and `nonce` (32 hex chars), the replay-protection fields our
 * server checks (colonies/replay.py) and other servers ignore. Date.now() * 1e6 stays an exact integer
 * below 2^63, and JSON.stringify writes it in plain digits. */
export function stamp(msg) {
  const nonce = bytesToHex(globalThis.crypto.getRandomValues(new Uint8Array(16)));
  return { ...msg, timestamp: Date.now() * 1e6, nonce };
}

/** A signed request envelope for `msg` (which must carry `msgtype`), stamped with a timestamp and nonce. */
export function envelope(msg, prvkey) {
  if (!msg || typeof msg.msgtype !== 'string') throw new Error('a message needs a msgtype');
  const payload = base64Encode(JSON.stringify(stamp(msg)));
  return { payloadtype: msg.msgtype, payload, signature: sign(payload, prvkey) };
}

/** An error the server answered (status = HTTP status or the error payload's status). */
export class ColoniesError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ColoniesError';
    this.status = status;
  }
}

/** The payload of a reply envelope (parsed JSON text), or a thrown ColoniesError. */
export function openReply(text, httpStatus = 200) {
  let env;
  try {
    env = JSON.parse(text);
  } catch {
    throw new ColoniesError(httpStatus, `not a reply envelope: ${String(text).slice(0, 200)}`);
  }
  const payload = env && typeof env.payload === 'string' && env.payload ? JSON.parse(base64Decode(env.payload)) : null;
  if (env.error || httpStatus >= 400) {
    const status = payload && typeof payload.status === 'number' ? payload.status : httpStatus;
    throw new ColoniesError(status, (payload && payload.message) || `HTTP ${httpStatus}`);
  }
  return payload;
}

// -- specs --------------------------------------------------------------------------------------------------
/** A FunctionSpec with sensible defaults (maxexectime/maxwaittime -1 = no limit). */
export function funcSpec(funcname, colonyname, executortype, { args = [], kwargs = {}, nodename = '', priority = 0,
  maxexectime = -1, maxwaittime = -1, maxretries = 0, dependencies = [], executornames = [], label = '',
  env = {} } = {}) {
  return {
    nodename, funcname, args, kwargs, priority, maxwaittime, maxexectime, maxretries, label, env,
    conditions: { colonyname, executornames, executortype, dependencies },
  };
}

function httpToWs(url) {
  return url.replace(/^http(s?):/, 'ws$1:').replace(/\/+$/, '') + '/pubsub';
}

// -- the client ---------------------------------------------------------------------------------------------
/**
 * new Client({ url: 'http://127.0.0.1:50080', prvkey }) — every method signs with `prvkey`.
 * Options: fetch (default globalThis.fetch), WebSocket (default globalThis.WebSocket; Node 20 needs
 * --experimental-websocket or a `ws` implementation).
 */
export class Client {
  constructor({ url = 'http://127.0.0.1:50080', prvkey, fetch: fetchImpl, WebSocket: wsImpl } = {}) {
    this.url = url.replace(/\/+$/, '');
    this.prvkey = prvkey;
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
    this.WebSocket = wsImpl || globalThis.WebSocket;
  }

  /** The same server with another key. */
  withKey(prvkey) {
    return new Client({ url: this.url, prvkey, fetch: this.fetch, WebSocket: this.WebSocket });
  }

  get id() {
    return idOf(this.prvkey);
  }

  /** Send one message; resolves to the reply payload. `signal` aborts (e.g. a long-poll). */
  async rpc(msg, { signal } = {}) {
    if (!this.prvkey) throw new Error('this client has no private key');
    const res = await this.fetch(`${this.url}/api`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(envelope(msg, this.prvkey)),
      signal,
    });
    return openReply(await res.text(), res.status);
  }

  // colonies, statistics
  addColony(colonyid, name) { return this.rpc({ msgtype: 'addcolonymsg', colony: { colonyid, name } }); }
  getColonies() { return this.rpc({ msgtype: 'getcoloniesmsg' }).then((r) => r || []); }
  getColony(colonyname) { return this.rpc({ msgtype: 'getcolonymsg', colonyname }); }
  colonyStats(colonyname) { return this.rpc({ msgtype: 'getcolonystatsmsg', colonyname }); }
  /** Server-wide statistics (the server's key only). */
  statistics() { return this.rpc({ msgtype: 'getstatisticsmsg' }); }

  // executors, users, functions
  addExecutor(colonyname, executorid, executorname, executortype) {
    return this.rpc({ msgtype: 'addexecutormsg', executor: { executorid, executortype, executorname, colonyname } });
  }
  approveExecutor(colonyname, executorname) { return this.rpc({ msgtype: 'approveexecutormsg', colonyname, executorname }); }
  removeExecutor(colonyname, executorname) { return this.rpc({ msgtype: 'removeexecutormsg', colonyname, executorname }); }
  getExecutors(colonyname) { return this.rpc({ msgtype: 'getexecutorsmsg', colonyname }).then((r) => r || []); }
  getExecutor(colonyname, executorname) { return this.rpc({ msgtype: 'getexecutormsg', colonyname, executorname }); }
  addUser(colonyname, userid, name) { return this.rpc({ msgtype: 'addusermsg', user: { colonyname, userid, name, email: '', phone: '' } }); }
  addFunction(colonyname, executorname, funcname, description = '') {
    return this.rpc({ msgtype: 'addfunctionmsg', fun: { colonyname, executorname, funcname, description } });
  }
  getFunctions(colonyname, executorname = '') {
    return this.rpc({ msgtype: 'getfunctionsmsg', colonyname, executorname }).then((r) => r || []);
  }

  // processes
  submit(spec) { return this.rpc({ msgtype: 'submitfuncspecmsg', spec }); }
  /** Long-poll for work: resolves to a Process, or null when the timeout passed with nothing to do. */
  async assign(colonyname, timeout = 10, { signal, availablecpu = '', availablemem = '' } = {}) {
    try {
      return await this.rpc({ msgtype: 'assignprocessmsg', colonyname, timeout, availablecpu, availablemem }, { signal });
    } catch (err) {
      if (err instanceof ColoniesError && err.status === 404) return null;
      throw err;
    }
  }
  close(processid, out = []) { return this.rpc({ msgtype: 'closesuccessfulmsg', processid, out }); }
  fail(processid, errors = []) { return this.rpc({ msgtype: 'closefailedmsg', processid, errors }); }
  setOutput(processid, out) { return this.rpc({ msgtype: 'setoutputmsg', processid, out }); }
  cancel(processid) { return this.rpc({ msgtype: 'cancelprocessmsg', processid }); }
  getProcess(processid) { return this.rpc({ msgtype: 'getprocessmsg', processid }); }
  getProcesses(colonyname, { state = -1, count = 100, executortype = '', label = '', initiator = '' } = {}) {
    return this.rpc({ msgtype: 'getprocessesmsg', colonyname, count, state, executortype, label, initiator })
      .then((r) => r || []);
  }
  processHistory(colonyname, seconds, { state = -1, executorid = '' } = {}) {
    return this.rpc({ msgtype: 'getprocesshistmsg', colonyname, executorid, seconds, state }).then((r) => r || []);
  }
  processEvents(processid) { return this.rpc({ msgtype: 'getprocesseventsmsg', processid }).then((r) => r || []); }
  addAttribute(targetid, key, value, attributetype = 1) {
    return this.rpc({ msgtype: 'addattributemsg', attribute: { targetid, key, value, attributetype } });
  }
  addLog(processid, message) { return this.rpc({ msgtype: 'addlogmsg', processid, message }); }
  getLogs(colonyname, { processid = '', executorname = '', count = 100, since = 0 } = {}) {
    return this.rpc({ msgtype: 'getlogsmsg', colonyname, processid, executorname, count, since, latest: false })
      .then((r) => r || []);
  }

  // workflows
  submitWorkflow(colonyname, functionspecs) {
    return this.rpc({ msgtype: 'submitworkflowspecmsg', spec: { colonyname, functionspecs } });
  }
  getProcessGraph(processgraphid) { return this.rpc({ msgtype: 'getprocessgraphmsg', processgraphid }); }
  getProcessGraphs(colonyname, { state = -1, count = 100 } = {}) {
    return this.rpc({ msgtype: 'getprocessgraphsmsg', colonyname, count, state }).then((r) => r || []);
  }
  cancelProcessGraph(processgraphid) { return this.rpc({ msgtype: 'cancelprocessgraphmsg', processgraphid }); }

  // files and snapshots (ColonyFS): metadata only; the bytes live in an object store (S3 or a local
  // directory) that clients read themselves — the server never touches them
  /** Register an uploaded object as a new revision: {label, name, size, checksum, checksumalg, ref}. */
  addFile(colonyname, file) { return this.rpc({ msgtype: 'addfilemsg', file: { ...file, colonyname } }); }
  /** Labels with their file counts: all (`name` ''), by string prefix, or `exact` (the label and its sub-labels). */
  getFileLabels(colonyname, { name = '', exact = false } = {}) {
    return this.rpc({ msgtype: 'getfilelabelsmsg', colonyname, name, exact }).then((r) => r || []);
  }
  /** The newest revision of each file under `label`: [{name, checksum, size, s3filename}]. */
  getFiles(colonyname, label) { return this.rpc({ msgtype: 'getfilesmsg', colonyname, label }).then((r) => r || []); }
  /** A file by id, or by label and name (every revision, or only the newest with `latest`): [File]. */
  getFile(colonyname, { fileid = '', label = '', name = '', latest = false } = {}) {
    return this.rpc({ msgtype: 'getfilemsg', colonyname, fileid, label, name, latest }).then((r) => r || []);
  }
  /** Remove one revision (fileid) or every revision of label + name (metadata only: the object stays). */
  removeFile(colonyname, { fileid = '', label = '', name = '' } = {}) {
    return this.rpc({ msgtype: 'removefilemsg', colonyname, fileid, label, name });
  }
  createSnapshot(colonyname, label, name) { return this.rpc({ msgtype: 'createsnapshotmsg', colonyname, label, name }); }
  getSnapshot(colonyname, { snapshotid = '', name = '' } = {}) {
    return this.rpc({ msgtype: 'getsnapshotmsg', colonyname, snapshotid, name });
  }
  getSnapshots(colonyname) { return this.rpc({ msgtype: 'getsnapshotsmsg', colonyname }).then((r) => r || []); }
  removeSnapshot(colonyname, { snapshotid = '', name = '' } = {}) {
    return this.rpc({ msgtype: 'removesnapshotmsg', colonyname, snapshotid, name });
  }
  removeAllSnapshots(colonyname) { return this.rpc({ msgtype: 'removeallsnapshotmsg', colonyname }); }

  // locations: named sites executors sit at (an executor names its own with `locationname`)
  /** Add a site (the colony owner's key); the server sets `locationid`. */
  addLocation(colonyname, { name, description = '', long = 0, lat = 0 }) {
    return this.rpc({ msgtype: 'addlocationmsg', location: { locationid: '', name, colonyname, description, long, lat } });
  }
  /** The colony's sites by name: [{locationid, name, colonyname, description, long, lat}]. */
  getLocations(colonyname) { return this.rpc({ msgtype: 'getlocationsmsg', colonyname }).then((r) => r || []); }
  getLocation(colonyname, name) { return this.rpc({ msgtype: 'getlocationmsg', colonyname, name }); }
  removeLocation(colonyname, name) { return this.rpc({ msgtype: 'removelocationmsg', colonyname, name }); }

  // blueprints: declared state (spec) that reconciler executors make so, reporting status
  /** Add a kind (the colony owner's key): {metadata: {name, colonyname}, spec: {names: {kind}, schema, handler}}. */
  addBlueprintDefinition(definition) { return this.rpc({ msgtype: 'addblueprintdefinitionmsg', blueprintdefinition: definition }); }
  getBlueprintDefinition(colonyname, name) { return this.rpc({ msgtype: 'getblueprintdefinitionmsg', colonyname, name }); }
  getBlueprintDefinitions(colonyname) {
    return this.rpc({ msgtype: 'getblueprintdefinitionsmsg', colonyname }).then((r) => r || []);
  }
  removeBlueprintDefinition(colonyname, name) { return this.rpc({ msgtype: 'removeblueprintdefinitionmsg', namespace: colonyname, name }); }
  /** Add a blueprint {kind, metadata: {name, colonyname, locationname?}, spec}: its spec is checked, a reconcile submitted. */
  addBlueprint(blueprint) { return this.rpc({ msgtype: 'addblueprintmsg', blueprint }); }
  getBlueprint(colonyname, name) { return this.rpc({ msgtype: 'getblueprintmsg', namespace: colonyname, name }); }
  /** The colony's blueprints by name; `kind` and `locationname` filter. */
  getBlueprints(colonyname, { kind = '', locationname = '' } = {}) {
    return this.rpc({ msgtype: 'getblueprintsmsg', namespace: colonyname, kind, locationname }).then((r) => r || []);
  }
  updateBlueprint(blueprint, { forceGeneration = false } = {}) {
    return this.rpc({ msgtype: 'updateblueprintmsg', blueprint, forcegeneration: forceGeneration });
  }
  removeBlueprint(colonyname, name) { return this.rpc({ msgtype: 'removeblueprintmsg', namespace: colonyname, name }); }
  /** Spec changes, newest first. */
  getBlueprintHistory(blueprintid, limit = 0) {
    return this.rpc({ msgtype: 'getblueprinthistorymsg', blueprintid, limit }).then((r) => r || []);
  }
  updateBlueprintStatus(colonyname, blueprintname, status) {
    return this.rpc({ msgtype: 'updateblueprintstatusmsg', colonyname, blueprintname, status });
  }
  /** Submit a reconcile now; resolves to the process. */
  reconcileBlueprint(colonyname, name, { force = false } = {}) {
    return this.rpc({ msgtype: 'reconcileblueprintmsg', namespace: colonyname, name, force });
  }

  // realtime (/pubsub)
  /**
   * Open one /pubsub socket and start the given subscriptions on it. Each subscription is a message such as
   * {msgtype: 'subscribeprocessmsg', processid, executortype: '', state: 2, timeout: 30}.
   * onProcess(process) gets every pushed Process; onError(err) server errors; the returned object has
   * `close()` and `closed` (a promise resolved when the socket closes, e.g. after the timeouts).
   */
  subscribe(subscriptions, { onProcess, onError } = {}) {
    if (!this.WebSocket) throw new Error('no WebSocket implementation (Node 20: run with --experimental-websocket)');
    const ws = new this.WebSocket(httpToWs(this.url));
    const frames = subscriptions.map((m) => JSON.stringify(envelope(m, this.prvkey)));
    let resolveClosed;
    const closed = new Promise((resolve) => { resolveClosed = resolve; });
    const opened = new Promise((resolve, reject) => {
      ws.onopen = () => { for (const f of frames) ws.send(f); resolve(); };
      ws.onerror = () => reject(new Error('pubsub socket error'));
    });
    opened.catch(() => {});
    ws.onmessage = (ev) => {
      let p;
      try {
        p = openReply(typeof ev.data === 'string' ? ev.data : decoder.decode(ev.data));
      } catch (err) {
        if (onError) onError(err);
        return;
      }
      if (onProcess) onProcess(p);
    };
    ws.onclose = () => resolveClosed();
    return { opened, closed, close: () => ws.close(), socket: ws };
  }

  /** Subscribe to one process reaching `state` (executortype '' = the process' own type). */
  subscribeProcess(processid, state, timeout, handlers) {
    return this.subscribe([{ msgtype: 'subscribeprocessmsg', colonyname: '', processid, executortype: '', state, timeout }],
      handlers);
  }

  /** Subscribe to any process of `executortype` in `colonyname` reaching `state`. */
  subscribeProcesses(colonyname, executortype, state, timeout, handlers) {
    return this.subscribe([{ msgtype: 'subscribeprocessesmsg', colonyname, executortype, state, timeout }], handlers);
  }

  /** Resolve with the process once it is SUCCESS or FAILED (or CANCELLED), within `timeout` seconds. */
  async waitForProcess(processid, timeout = 30) {
    const done = (p) => p && p.state >= ProcessState.SUCCESS;
    let result = null;
    const sub = this.subscribe([ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED].map((state) => (
      { msgtype: 'subscribeprocessmsg', colonyname: '', processid, executortype: '', state, timeout })), {
      onProcess: (p) => { if (done(p)) { result = p; sub.close(); } },
    });
    await sub.opened.catch(() => {});
    // the process may have finished before the subscriptions started
    const now = await this.getProcess(processid);
    if (done(now)) { sub.close(); return now; }
    await sub.closed;
    if (result) return result;
    const last = await this.getProcess(processid);
    if (done(last)) return last;
    throw new ColoniesError(408, `process ${processid} did not finish within ${timeout} s`);
  }
}

// -- the executor -------------------------------------------------------------------------------------------
/**
 * An executor that runs one JS function per funcname, in a page or in Node.js.
 *
 *   const ex = new Executor({ url, prvkey, colony: 'dev', name: 'browser-1', type: 'browser' });
 *   ex.function('sum', (...xs) => xs.reduce((a, b) => a + b, 0));
 *   await ex.register(colonyPrvkey);   // once, with the colony owner's key (or have the owner do it)
 *   await ex.run();                     // until ex.stop()
 *
 * A function is called with the process' input (its workflow parents' outputs), then its args; `this` is a context {process, kwargs, log(message)}
 * (use a `function`, not an arrow, to reach it);
 * its return value becomes the output (an array is used as is, anything else is wrapped in [value]);
 * a throw closes the process as failed with the error's message.
 */
export class Executor extends EventTarget {
  constructor({ url, prvkey, colony, name, type, client, pollTimeout = 10, slots = 1 } = {}) {
    super();
    this.client = client || new Client({ url, prvkey });
    this.colony = colony;
    this.name = name;
    this.type = type;
    this.pollTimeout = pollTimeout;
    this.slots = slots;
    this.functions = new Map();
    this.controller = null;
    this.stats = { done: 0, failed: 0 };
  }

  get id() { return this.client.id; }

  /** Register `fn` under `funcname`. */
  function(funcname, fn) {
    this.functions.set(funcname, fn);
    return this;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Add and approve this executor with the colony owner's key, then announce its functions. */
  async register(colonyPrvkey) {
    const owner = this.client.withKey(colonyPrvkey);
    await owner.addExecutor(this.colony, this.id, this.name, this.type);
    await owner.approveExecutor(this.colony, this.name);
    this.emit('registered', { name: this.name, id: this.id });
    await this.announce();
  }

  /** Tell the colony which functions this executor offers (already-announced ones are skipped). */
  async announce() {
    const have = new Set((await this.client.getFunctions(this.colony, this.name)).map((f) => f.funcname));
    for (const funcname of this.functions.keys()) {
      if (!have.has(funcname)) await this.client.addFunction(this.colony, this.name, funcname);
    }
  }

  /** Run one assigned process to its close; returns the closed state. */
  async execute(process) {
    const spec = process.spec || {};
    const fn = this.functions.get(spec.funcname);
    const pid = process.processid;
    this.emit('assigned', { process });
    if (!fn) {
      await this.client.fail(pid, [`no function ${spec.funcname} in executor ${this.name}`]);
      this.stats.failed++;
      this.emit('failed', { process, error: `unknown function ${spec.funcname}` });
      return ProcessState.FAILED;
    }
    const ctx = { process, kwargs: spec.kwargs || {}, log: (message) => this.client.addLog(pid, String(message)),
      executor: this };
    let out;
    try {
      // as the Python executor: a workflow child gets its parents' outputs first, then its own args
      const args = [...(Array.isArray(process.in) ? process.in : []), ...(Array.isArray(spec.args) ? spec.args : [])];
      const result = await fn.call(ctx, ...args);
      out = Array.isArray(result) ? result : result === undefined ? [] : [result];
    } catch (err) {
      const message = err && err.message ? err.message : String(err);
      await this.client.fail(pid, [message]);
      this.stats.failed++;
      this.emit('failed', { process, error: message });
      return ProcessState.FAILED;
    }
    await this.client.close(pid, out);
    this.stats.done++;
    this.emit('done', { process, output: out });
    return ProcessState.SUCCESS;
  }

  async loop(signal) {
    while (!signal.aborted) {
      let process;
      try {
        process = await this.client.assign(this.colony, this.pollTimeout, { signal });
      } catch (err) {
        if (signal.aborted) return;
        this.emit('error', { error: err });
        // back off before retrying a failing server; the wait ends early when stopped
        await new Promise((resolve) => {
          const t = setTimeout(resolve, 1000);
          signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
        });
        continue;
      }
      if (process) {
        try {
          await this.execute(process);
        } catch (err) {
          this.emit('error', { error: err, process });
        }
      }
    }
  }

  /** Pull and run work with `slots` concurrent long-polls until stop(). */
  async run() {
    if (this.controller) throw new Error('already running');
    this.controller = new AbortController();
    const { signal } = this.controller;
    this.emit('started', { name: this.name });
    try {
      await Promise.all(Array.from({ length: this.slots }, () => this.loop(signal)));
    } finally {
      this.controller = null;
      this.emit('stopped', { name: this.name });
    }
  }

  stop() {
    if (this.controller) this.controller.abort();
  }
}
