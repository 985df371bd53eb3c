// Unit tests of keys, ids, signatures and envelopes against the protocol spec's test vectors (§1.4).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  base64Decode, base64Encode, envelope, generatePrivateKey, idOf, openReply, recoverId, sha3Hex, sign,
  ColoniesError, funcSpec,
} from '../src/colonies.js';

const VECTORS = [
  ['fcc79953d8a751bf41db661592dc34d30004b1a651ffa0725b03ac227641499d',
    '039231c7644e04b6895471dd5335cf332681c54e27f81fac54f9067b3f2c0103'],
  ['ba949fa134981372d6da62b6a56f336ab4d843b22c02a4257dcf7d0d73097514',
    '4787a5071856a4acf702b2ffcea422e3237a679c681314113d86139461290cf4'],
  ['ddf7f7791208083b6a9ed975a72684f6406a269cfa36f1b1c32045c0a71fff05',
    '3fc05cf3df4b494e95d6a3d297a34f19938f7daa7422ab0d4f794454133341ac'],
];
const PAYLOAD = 'eyJtc2d0eXBlIjoiZ2V0Y29sb25pZXNtc2cifQ==';
const SIGNATURE = '3cf5209e35d24048f67652cb354ded5bed0d56bdce9cab433646942a47760353'
  + '283e65a2cb764e22d9efa37e67a9ba485ade029f1405e5eed13365a82250a87300';
const N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141n;

test('sha3-256 is FIPS-202, not Keccak', () => {
  assert.equal(sha3Hex('hello world'), '644bcc7e564373040999aac89e7622f3ca71fba1d972fd94a31c3bfbf24e3938');
});

test('ids of the spec vectors', () => {
  for (const [prv, id] of VECTORS) assert.equal(idOf(prv), id);
});

test('the spec signature vector: deterministic RFC6979, recovers the signer', () => {
  assert.equal(base64Encode('{"msgtype":"getcoloniesmsg"}'), PAYLOAD);
  assert.equal(sign(PAYLOAD, VECTORS[0][0]), SIGNATURE);
  assert.equal(recoverId(PAYLOAD, SIGNATURE), VECTORS[0][1]);
});

test('random keys sign low-S with v in {0,1} and recover their own id', () => {
  for (let i = 0; i < 20; i++) {
    const prv = generatePrivateKey();
    assert.match(prv, /^[0-9a-f]{64}$/);
    const payload = base64Encode(JSON.stringify({ msgtype: 'x', i }));
    const sig = sign(payload, prv);
    assert.match(sig, /^[0-9a-f]{130}$/);
    assert.ok(BigInt('0x' + sig.slice(64, 128)) <= N >> 1n);
    assert.ok(['00', '01'].includes(sig.slice(128)));
    assert.equal(recoverId(payload, sig), idOf(prv));
  }
});

test('high-S, bad v, wrong length and non-hex signatures are refused', () => {
  const s = BigInt('0x' + SIGNATURE.slice(64, 128));
  const highS = (N - s).toString(16).padStart(64, '0');
  assert.throws(() => recoverId(PAYLOAD, SIGNATURE.slice(0, 64) + highS + '01'), /high s/);
  assert.throws(() => recoverId(PAYLOAD, SIGNATURE.slice(0, 128) + '1b'), /recovery id/);
  assert.throws(() => recoverId(PAYLOAD, SIGNATURE.slice(0, 128)), /65 bytes/);
  assert.throws(() => recoverId(PAYLOAD, 'zz' + SIGNATURE.slice(2)), /hex/);
  // another payload recovers some other id, never the signer's
  assert.notEqual(recoverId(base64Encode('{"msgtype":"other"}'), SIGNATURE), VECTORS[0][1]);
});

test('bad private keys are refused', () => {
  assert.throws(() => idOf('00'.repeat(32)), /private key/);
  assert.throws(() => idOf(N.toString(16)), /private key/);
  assert.throws(() => idOf('abc'), /hex/);
});

test('envelope: payloadtype = msgtype, base64 of UTF-8 JSON, signature over the base64 text', () => {
  const msg = { msgtype: 'submitfuncspecmsg', spec: funcSpec('echo', 'dev', 'demo', { args: ['héllo ✓'] }) };
  const env = envelope(msg, VECTORS[1][0]);
  assert.equal(env.payloadtype, 'submitfuncspecmsg');
  const { timestamp, nonce, ...rest } = JSON.parse(base64Decode(env.payload));
  assert.deepEqual(rest, msg);
  assert.ok(Number.isInteger(timestamp) && Math.abs(timestamp - Date.now() * 1e6) < 5e9, 'timestamp is now, in ns');
  assert.match(nonce, /^[0-9a-f]{32}$/);
  assert.notEqual(JSON.parse(base64Decode(envelope(msg, VECTORS[1][0]).payload)).nonce, nonce);
  assert.match(base64Decode(env.payload), /"timestamp":\d{19},/); // plain digits, no exponent
  assert.equal(recoverId(env.payload, env.signature), VECTORS[1][1]);
  assert.throws(() => envelope({}, VECTORS[1][0]), /msgtype/);
});

test('openReply: payload on success, ColoniesError with the status on failure', () => {
  assert.deepEqual(openReply(JSON.stringify({ payloadtype: 'x', payload: 'e30=', error: false })), {});
  const err = JSON.stringify({ payloadtype: 'error', payload: base64Encode('{"status":403,"message":"nope"}'), error: true });
  assert.throws(() => openReply(err, 403), (e) => e instanceof ColoniesError && e.status === 403 && e.message === 'nope');
  assert.throws(() => openReply('not json', 502), (e) => e instanceof ColoniesError && e.status === 502);
});
