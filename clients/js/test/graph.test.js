// The dashboard's DAG: layering (iterative, so a chain deeper than the JS stack still lays out) and node text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layers, placeText } from '../../../colonies/server/static/dashboard/graph.js';

test('a 200,000-node chain is laid out without recursion', () => {
  const chain = [];
  for (let i = 0; i < 200000; i++) chain.push({ processid: `p${i}`, parents: i ? [`p${i - 1}`] : [] });
  assert.equal(layers(chain).get('p199999'), 199999);
});

test('longest path wins; cycles and unknown parents stay bounded', () => {
  const diamond = [
    { processid: 'a', parents: [] }, { processid: 'b', parents: ['a'] },
    { processid: 'c', parents: ['b', 'a'] }, { processid: 'd', parents: ['c', 'a', 'zz'] },
  ];
  assert.deepEqual(Object.fromEntries(layers(diamond)), { a: 0, b: 1, c: 2, d: 3 });
  const cycle = [{ processid: 'x', parents: ['y'] }, { processid: 'y', parents: ['x'] }];
  assert.deepEqual(Object.fromEntries(layers(cycle)), { x: 0, y: 0 });
});

test("a node's place: the executor and its location once taken, the site asked for while waiting", () => {
  assert.equal(placeText({ executor: 'slurm-1', location: 'hpc-centre' }), 'slurm-1 @ hpc-centre');
  assert.equal(placeText({ executor: 'slurm-1', location: '' }), 'slurm-1');
  assert.equal(placeText({ executor: '', location: 'edge' }), '→ edge');
  assert.equal(placeText(null), '');
  assert.equal(placeText({}), '');
});
