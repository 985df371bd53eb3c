// The browser executor page: joins a colony with a key held only in this page, pulls work and runs
// it here — SHA-256 with WebCrypto, image thumbnails with a canvas, sums, echoes, and a linear or logistic
// model's prediction (the edge device of examples/meta-os).
import { Executor, bytesToHex, generatePrivateKey, idOf } from 'colonies';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
for (const field of ['colony', 'name', 'type']) if (params.get(field)) $(field).value = params.get(field);
if (!$('name').value) $('name').value = `browser-${Math.random().toString(16).slice(2, 8)}`;

/** hex SHA-256 of the args joined by spaces, as `colonies dev`'s demo executor computes it (WebCrypto where
 * available: it needs a secure context, which loopback is). */
async function sha256(...args) {
  const bytes = new TextEncoder().encode(args.map(String).join(' '));
  if (globalThis.crypto && crypto.subtle) return bytesToHex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
  return bytesToHex(nobleSha256(bytes));
}

/** Scale an image (a data: URL or a same-origin URL) to fit `size` px; the thumbnail as a PNG data URL. */
async function thumbnail(src, size = 64) {
  const img = new Image();
  img.src = String(src);
  await img.decode();
  const scale = Math.min(1, size / Math.max(img.naturalWidth, img.naturalHeight));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
  canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
  const g = canvas.getContext('2d');
  g.imageSmoothingQuality = 'high';
  g.drawImage(img, 0, 0, canvas.width, canvas.height);
  // `this` is the executor's context when run as a process: the log goes to the process' logs
  if (this && this.log) await this.log(`thumbnail ${canvas.width}x${canvas.height} of ${img.naturalWidth}x${img.naturalHeight}`);
  return { width: canvas.width, height: canvas.height, source: [img.naturalWidth, img.naturalHeight],
    dataurl: canvas.toDataURL('image/png') };
}

/**
 * The answer of a linear model for one input point. `model` is {weights: [w1..wn], bias, kind}, or an
 * object carrying one as `model` (as a workflow parent's output may: examples/meta-os' evaluate step);
 * `x` is the point, n numbers. score = bias + w1*x1 + ... + wn*xn, summed in that order; kind "logistic"
 * adds probability = 1 / (1 + e^-score) and label = probability >= 0.5 ? 1 : 0.
 */
function predict(model, x) {
  const m = model && typeof model === 'object' && model.model && typeof model.model === 'object' ? model.model : model;
  if (!m || !Array.isArray(m.weights)) throw new Error('predict: the model needs weights (a list of numbers)');
  const xs = (Array.isArray(x) ? x : [x]).map(Number);
  if (xs.length !== m.weights.length) throw new Error(`predict: the model takes ${m.weights.length} features, got ${xs.length}`);
  let score = Number(m.bias || 0);
  m.weights.forEach((w, i) => { score += Number(w) * xs[i]; });
  if (!Number.isFinite(score)) throw new Error('predict: the score is not a finite number');
  if ((m.kind || 'linear') !== 'logistic') return { score };
  const probability = 1 / (1 + Math.exp(-score));
  return { score, probability, label: probability >= 0.5 ? 1 : 0 };
}

const FUNCTIONS = {
  sha256,
  thumbnail,
  predict,
  sum: (...xs) => xs.reduce((a, b) => a + Number(b), 0),
  echo: (...xs) => xs,
};
$('functions').textContent = Object.keys(FUNCTIONS).join(', ');

const MAX_LOG = 200;
function log(text, cls = '', img = null) {
  const line = document.createElement('div');
  line.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  if (cls) line.className = cls;
  if (img) {
    const el = document.createElement('img');
    el.src = img;
    el.alt = 'thumbnail';
    line.append(el);
  }
  $('log').prepend(line);
  while ($('log').childElementCount > MAX_LOG) $('log').lastElementChild.remove();
}

function setStatus(state, text = state) {
  $('status').textContent = text;
  $('status').dataset.state = state;
}

let executor = null;

$('generate').addEventListener('click', () => {
  $('prvkey').value = generatePrivateKey();
  $('prvkey').type = 'text';
});

$('join').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('form-error').textContent = '';
  const prvkey = $('prvkey').value.trim().toLowerCase();
  const colonyKey = $('colonykey').value.trim().toLowerCase();
  try {
    executor = new Executor({ url: location.origin, prvkey, colony: $('colony').value.trim(),
      name: $('name').value.trim(), type: $('type').value.trim(), pollTimeout: 10 });
  } catch (err) {
    $('form-error').textContent = err.message;
    return;
  }
  for (const [name, fn] of Object.entries(FUNCTIONS)) executor.function(name, fn);
  executor.addEventListener('registered', (e) => log(`registered and approved as ${e.detail.name}`));
  executor.addEventListener('assigned', (e) => {
    const p = e.detail.process;
    setStatus('working', `running ${p.spec.funcname}`);
    log(`assigned ${p.spec.funcname} ${p.processid.slice(0, 12)}… args ${JSON.stringify(p.spec.args).slice(0, 80)}`);
  });
  executor.addEventListener('done', (e) => {
    const { process: p, output } = e.detail;
    $('done-count').textContent = String(executor.stats.done);
    const thumb = output[0] && output[0].dataurl ? output[0].dataurl : null;
    const shown = thumb ? `${output[0].width}×${output[0].height} thumbnail` : JSON.stringify(output).slice(0, 100);
    log(`done ${p.spec.funcname} ${p.processid.slice(0, 12)}… → ${shown}`, '', thumb);
    setStatus('running', 'waiting for work');
  });
  executor.addEventListener('failed', (e) => {
    $('failed-count').textContent = String(executor.stats.failed);
    log(`failed ${e.detail.process.spec.funcname}: ${e.detail.error}`, 'error');
    setStatus('running', 'waiting for work');
  });
  executor.addEventListener('error', (e) => log(`error: ${e.detail.error.message || e.detail.error}`, 'error'));
  $('start').disabled = true;
  try {
    $('who').textContent = `executor ${idOf(prvkey).slice(0, 12)}…`;
    if (colonyKey) {
      setStatus('registering');
      await executor.register(colonyKey);
    } else {
      await executor.announce();
    }
  } catch (err) {
    $('form-error').textContent = `could not join: ${err.message}`;
    setStatus('idle');
    $('start').disabled = false;
    return;
  }
  $('colonykey').value = '';  // the owner's key is needed only once
  $('stop').disabled = false;
  setStatus('running', 'waiting for work');
  log(`pulling work for ${executor.type} in colony ${executor.colony}`);
  await executor.run();
  setStatus('stopped');
  log('stopped');
  $('start').disabled = false;
  $('stop').disabled = true;
});

$('stop').addEventListener('click', () => executor && executor.stop());

// for the console: the running executor
globalThis.coloniesExecutor = () => executor;
