import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChangeFanout, Announcement } from '../../src/infra/bus/change-fanout.js';
import { waitFor } from '../support/wait.js';

type Fanout = ChangeFanout & { close(): Promise<void> };

/**
 * The behaviour every ChangeFanout adapter must have, within one process. `open` returns a fresh
 * fan-out (an EventBus adapter) reporting background failures to `onError`; the suite closes it.
 * Reaching other processes is the cluster adapter's own case.
 */
export function changeFanoutContract(name: string, open: (onError: (error: unknown) => void) => Promise<Fanout>): void {
  describe(`ChangeFanout contract: ${name}`, () => {
    const opened: Fanout[] = [];
    let errors: unknown[] = [];

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((fanout) => fanout.close()));
      errors = [];
    });

    async function start(): Promise<Fanout> {
      const fanout = await open((error) => errors.push(error));
      opened.push(fanout);
      return fanout;
    }

    function recorder(): { heard: Announcement[]; listener: (change: Announcement) => void } {
      const heard: Announcement[] = [];
      return { heard, listener: (change) => heard.push(change) };
    }

    it('tells every listener of the process each change announced, in the order announced', async () => {
      const fanout = await start();
      const hub = recorder();
      const other = recorder();
      await fanout.listen(hub.listener);
      await fanout.listen(other.listener);
      await fanout.announce({ kind: 'feed', userId: 'user-7' });
      await fanout.announce({ kind: 'presence', userId: 'user-2' });
      await fanout.announce({ kind: 'feed', userId: 'user-3' });

      const expected = [
        { kind: 'feed', userId: 'user-7' },
        { kind: 'presence', userId: 'user-2' },
        { kind: 'feed', userId: 'user-3' },
      ];
      await waitFor(() => hub.heard.length === 3 && other.heard.length === 3);
      expect(hub.heard).toEqual(expected);
      expect(other.heard).toEqual(expected);
    });

    it('stops telling a listener once it has stopped, and goes on telling the others', async () => {
      const fanout = await start();
      const stopped = recorder();
      const staying = recorder();
      const stop = await fanout.listen(stopped.listener);
      await fanout.listen(staying.listener);
      await fanout.announce({ kind: 'feed', userId: 'user-1' });
      await waitFor(() => stopped.heard.length === 1 && staying.heard.length === 1);

      stop();
      await fanout.announce({ kind: 'feed', userId: 'user-2' });
      await waitFor(() => staying.heard.length === 2);
      await sleep(30);
      expect(stopped.heard).toEqual([{ kind: 'feed', userId: 'user-1' }]);
    });

    it('reports a throwing listener and still tells the others', async () => {
      const fanout = await start();
      const staying = recorder();
      await fanout.listen(() => {
        throw new Error('socket gone');
      });
      await fanout.listen(staying.listener);
      await fanout.announce({ kind: 'feed', userId: 'user-1' });
      await fanout.announce({ kind: 'feed', userId: 'user-2' });
      await waitFor(() => staying.heard.length === 2);
      expect(errors).toHaveLength(2);
      expect(errors[0]).toMatchObject({ message: 'socket gone' });
    });
  });
}
