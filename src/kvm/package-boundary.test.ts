import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

const SOURCE_ROOT = new URL('../', import.meta.url);
const KVM_FOLDER = new URL('./', import.meta.url).href;
/** Relative module specifiers in static imports, re-exports, side-effect imports and dynamic imports. */
const RELATIVE_IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

/** Every module reachable from `entry` through relative imports. */
function reachableModules(entry: URL): Set<string> {
  const seen = new Set<string>();
  const pending = [entry.href];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (seen.has(next)) continue;
    seen.add(next);
    const source = readFileSync(new URL(next), 'utf8');
    for (const match of source.matchAll(RELATIVE_IMPORT)) pending.push(new URL(match[1] ?? '', next).href);
  }
  return seen;
}

test('the main entry never reaches src/kvm (so importing the userspace chip never loads the addon)', () => {
  const modules = reachableModules(new URL('index.ts', SOURCE_ROOT));
  assert.ok(modules.size > 20, `the walk found the package's modules (${modules.size})`);
  assert.deepEqual([...modules].filter((module) => module.startsWith(KVM_FOLDER)), []);
});

test("'irqchip/kvm' is the package's subpath export of the KVM backend", async () => {
  const kvm = (await import('irqchip/kvm')) as Record<string, unknown>;
  for (const name of ['KvmVm', 'KvmVcpu', 'VcpuThread', 'KvmKernelIrqChip', 'OsEvent', 'addon', 'kvmUnavailableReason']) assert.ok(name in kvm, `${name} is exported`);
  const main = (await import('irqchip')) as Record<string, unknown>;
  assert.ok(!('KvmKernelIrqChip' in main) && !('OsEvent' in main));
});
