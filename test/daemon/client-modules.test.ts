import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { assertCliBuilt, REPO_ROOT } from '../support/cli.js';

/**
 * The client's modules take only types from src/core/protocol.ts: its values would load the
 * schemas and TypeBox (some 370 modules, most of a sync or backup's start-up). Checked on the
 * built modules, by what a process that imports them resolves.
 */
describe('the client modules', () => {
  it('load no schema library', async () => {
    assertCliBuilt();
    const entries = ['cli/sync.command.js', 'daemon/sync-daemon.js', 'daemon/sync-engine.js', 'daemon/api-client.js'];
    const script = `
      import { registerHooks } from 'node:module';
      import { pathToFileURL } from 'node:url';
      const resolved = [];
      registerHooks({ resolve: (specifier, context, next) => { const result = next(specifier, context); resolved.push(result.url); return result; } });
      for (const entry of ${JSON.stringify(entries)}) await import(pathToFileURL(${JSON.stringify(join(REPO_ROOT, 'dist', 'src'))} + '/' + entry).href);
      console.log(JSON.stringify(resolved));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO_ROOT });
    const resolved = JSON.parse(stdout) as string[];
    expect(resolved.some((url) => url.endsWith('/daemon/uploader.js'))).toBe(true);
    expect(resolved.filter((url) => url.includes('/node_modules/typebox/') || url.endsWith('/core/protocol.js'))).toEqual([]);
  });
});
