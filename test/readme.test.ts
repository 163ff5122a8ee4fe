import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

// The README's TypeScript examples must run as written. They import 'irqchip', which resolves to
// this package by its own name, so they are written inside the package (test/.readme/, ignored by git).
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
const scratch = new URL('./.readme/', import.meta.url);

test('the README has TypeScript examples', () => {
  assert.ok(examples.length >= 2);
});

examples.forEach((source, index) => {
  test(`README example ${index + 1} runs without throwing`, async () => {
    mkdirSync(scratch, { recursive: true });
    const file = new URL(`example-${index + 1}.ts`, scratch);
    writeFileSync(file, source);
    await import(pathToFileURL(file.pathname).href);
  });
});
