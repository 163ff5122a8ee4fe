/**
 * Node platform layer: starting worker threads on the package's TypeScript modules.
 *
 * The core (`src/base` … `src/device`) runs anywhere SharedArrayBuffer does; what only Node has
 * lives under `src/node/`.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts a worker on a TypeScript module. Node 20 does not apply `--import tsx` to a worker's entry
 * module, so a small bootstrap registers tsx's loader first and then imports the module.
 */
export function startTypeScriptWorker(moduleUrl: URL, options: WorkerOptions = {}): Worker {
  const bootstrap = `import(${JSON.stringify(TSX_API)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(moduleUrl.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

const TSX_API = import.meta.resolve('tsx/esm/api');
