import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SyncSummary } from '../../src/daemon/sync-engine.js';
import { CliSandbox, type CliServer } from '../support/cli.js';
import { pseudoRandomBytes } from '../support/random.js';
import { WireMeter } from '../support/wire-meter.js';
import { TIME_SCALE } from '../support/time-scale.js';

const PASSWORD = 'correct horse battery staple';
const MiB = 1024 * 1024;

describe('block-level delta sync as processes', () => {
  let sandbox: CliSandbox;
  let server: CliServer;
  let meter: WireMeter;
  let laptop: string;
  let desktop: string;
  let desktopConfig: string;

  beforeEach(async () => {
    sandbox = await CliSandbox.create();
    const dataDir = await sandbox.dir('server-data');
    laptop = await sandbox.dir('laptop');
    desktop = await sandbox.dir('desktop');
    desktopConfig = await sandbox.dir('desktop-config');
    server = await sandbox.startServer(dataDir);
    // Both devices talk to the server through the meter, so every byte they exchange is counted.
    meter = await WireMeter.start(server.url);
    await sandbox.addUserAndLogin({ ...server, url: meter.url }, dataDir, 'alice', PASSWORD);
    await sandbox.json(['login', '--server', meter.url, '--user', 'alice', '--password-stdin', '--device', 'desktop', '--json'], {
      stdin: `${PASSWORD}\n`,
      configDir: desktopConfig,
    });
  });
  afterEach(async () => {
    await meter.close();
    await sandbox.dispose();
  });

  const syncLaptop = () => sandbox.json<SyncSummary>(['sync', laptop, '--once', '--json']);
  const syncDesktop = () => sandbox.json<SyncSummary>(['sync', desktop, '--once', '--json'], { configDir: desktopConfig });

  it(
    'moves 1 KiB inserted in the middle of 100 MiB in under 16 KiB on the wire, both directions, protocol included',
    async () => {
      const original = pseudoRandomBytes(100 * MiB, 31);
      await writeFile(join(laptop, 'video.mov'), original);
      await syncLaptop();
      expect(await syncDesktop()).toMatchObject({ downloaded: 1 });

      const middle = original.length / 2;
      const edited = Buffer.concat([original.subarray(0, middle), pseudoRandomBytes(1024, 32), original.subarray(middle)]);
      await writeFile(join(laptop, 'video.mov'), edited);
      meter.reset();
      const up = await syncLaptop();
      const upWire = meter.bytes;
      const down = await syncDesktop();
      const wire = meter.bytes;

      expect(up).toMatchObject({ uploaded: 1 });
      expect(down).toMatchObject({ downloaded: 1 });
      expect((await readFile(join(desktop, 'video.mov'))).equals(edited)).toBe(true);
      console.info(
        `1 KiB insert into 100 MiB: ${wire} bytes on the wire (up pass ${upWire}, down pass ${wire - upWire}); ` +
          `delta bytes sent ${up.bytesSent}, received ${down.bytesReceived}`,
      );
      expect(up.bytesSent).toBeLessThan(4 * 1024);
      expect(down.bytesReceived).toBeLessThan(4 * 1024);
      expect(wire).toBeLessThanOrEqual(16 * 1024);
    },
    300_000 * TIME_SCALE,
  );
});
