import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatTable } from './text-table.ts';

describe('formatTable', () => {
  test('heads the columns with the first row’s keys and a rule, right-aligns numbers, left-aligns text, trims line ends', () => {
    assert.equal(
      formatTable([
        { name: 'timer', count: 2004, note: 'x' },
        { name: 'MSI-X', count: 7, note: '' },
      ]),
      ['name   count  note', '-----  -----  ----', 'timer   2004  x', 'MSI-X      7'].join('\n'),
    );
  });

  test('a column is as wide as its widest cell or heading', () => {
    assert.equal(formatTable([{ a: 'wide cell', b: 1 }]), ['a          b', '---------  -', 'wide cell  1'].join('\n'));
  });
});
