import type { TestProject } from 'vitest/node';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

/**
 * Runs once per `vitest run`. Builds dist/ so tests that spawn `bin/aegis` or
 * worker threads run the code under test. Servers shared by many files (the S3
 * server) are started in their own setup modules listed below.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const root = path.resolve(import.meta.dirname, '../..');
  // Type errors are reported by `npm test` (scripts/test.sh) before vitest starts;
  // here tsc only has to emit JavaScript, which it does despite them.
  try {
    execFileSync('npx', ['--no-install', 'tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'pipe' });
  } catch (err) {
    process.stderr.write(`tsc reported errors (the build was still emitted):\n${(err as { stdout?: Buffer }).stdout?.toString() ?? ''}\n`);
  }
  const teardowns: Array<() => Promise<void>> = [];
  for (const mod of await setupModules()) {
    const t = await mod(project);
    if (t) teardowns.push(t);
  }
  return async () => {
    for (const t of teardowns.reverse()) await t();
  };
}

type SetupModule = (project: TestProject) => Promise<(() => Promise<void>) | void>;

/** Each shared test service adds its starter here. */
async function setupModules(): Promise<SetupModule[]> {
  return [(await import('./s3-server.js')).default];
}
