import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RETENTION_MS, STREAMS, type EventBus } from '../../src/infra/bus/event-bus.js';
import type { Announcement } from '../../src/infra/bus/change-fanout.js';
import { DEAD_LETTERS, jetStreamName, NatsEventBus } from '../../src/infra/bus/nats.event-bus.js';
import { deleteStreams, describeWithNats, NATS_URL, testPrefix } from '../support/nats.js';
import { waitFor } from '../support/wait.js';
import { changeFanoutContract } from './change-fanout.contract.js';
import { eventBusContract } from './event-bus.contract.js';

const payload = (n: number) => ({
  ownerId: 'o',
  fileId: `file-${n}`,
  versionId: `v-${n}`,
  path: `/${n}.jpg`,
  contentHash: `h-${n}`,
  size: n,
});

describeWithNats('NatsEventBus', () => {
  const prefixes: string[] = [];

  /** A prefix of the test's own; its streams are deleted after the test. */
  function freshPrefix(): string {
    const prefix = testPrefix();
    prefixes.push(prefix);
    return prefix;
  }

  // Runs after the contracts' own afterEach has closed the buses.
  afterEach(async () => {
    await Promise.all(prefixes.splice(0).map((prefix) => deleteStreams(prefix)));
  });

  eventBusContract('NatsEventBus', async () => {
    const prefix = freshPrefix();
    const reopen = () => NatsEventBus.open({ url: NATS_URL, prefix });
    return { bus: await reopen(), reopen };
  });

  changeFanoutContract('NatsEventBus', (onError) => NatsEventBus.open({ url: NATS_URL, prefix: freshPrefix(), onError }));

  describe('NatsEventBus on JetStream', () => {
    let nc: NatsConnection;
    let jsm: JetStreamManager;
    const buses: EventBus[] = [];

    beforeAll(async () => {
      nc = await connect({ servers: NATS_URL });
      jsm = await jetstreamManager(nc);
    });
    afterAll(async () => {
      await nc.close();
    });
    // Runs before the outer cleanup of the prefixes: buses close, then their streams go.
    afterEach(async () => {
      await Promise.all(buses.splice(0).map((bus) => bus.close()));
    });

    async function open(prefix: string): Promise<NatsEventBus> {
      const bus = await NatsEventBus.open({ url: NATS_URL, prefix });
      buses.push(bus);
      return bus;
    }

    it('creates the five streams and the dead letters with their subjects, the streams keeping 7 days', async () => {
      const prefix = freshPrefix();
      await open(prefix);
      for (const stream of STREAMS) {
        const { config } = await jsm.streams.info(jetStreamName(prefix, stream));
        expect(config).toMatchObject({ subjects: [`${prefix}.${stream}.>`], max_age: nanos(RETENTION_MS), storage: 'file' });
      }
      const { config } = await jsm.streams.info(jetStreamName(prefix, DEAD_LETTERS));
      expect(config).toMatchObject({ subjects: [`${prefix}.dead-letters.>`], max_age: 0 });
      expect(jetStreamName(prefix, 'file-uploads')).toBe(`${prefix.toUpperCase().replaceAll('-', '_')}_FILE_UPLOADS`);
    });

    it('brings an existing stream with other settings up to date, keeping the settings it does not own', async () => {
      const prefix = freshPrefix();
      const name = jetStreamName(prefix, 'file-uploads');
      await jsm.streams.add({ name, subjects: [`${prefix}.file-uploads.old`], max_age: nanos(60 * 60 * 1000), max_msgs: 1_000 });
      await jetstream(nc).publish(`${prefix}.file-uploads.old`, 'kept');

      await open(prefix);
      const { config, state } = await jsm.streams.info(name);
      expect(config).toMatchObject({ subjects: [`${prefix}.file-uploads.>`], max_age: nanos(RETENTION_MS), max_msgs: 1_000 });
      expect(state.messages).toBe(1);
    });

    it('opens from several processes starting at once', async () => {
      const prefix = freshPrefix();
      await Promise.all([open(prefix), open(prefix), open(prefix)]);
      for (const stream of [...STREAMS, DEAD_LETTERS] as const) {
        expect((await jsm.streams.info(jetStreamName(prefix, stream))).config.name).toBe(jetStreamName(prefix, stream));
      }
    });

    it('delivers a message published by one process to a consumer in another', async () => {
      const prefix = freshPrefix();
      const [server, worker] = [await open(prefix), await open(prefix)];
      const received: string[] = [];
      await worker.subscribe({ durable: 'thumbs', stream: 'file-uploads' }, async (message) => {
        received.push((message.payload as { fileId: string }).fileId);
      });
      await server.publish('file.uploaded', payload(1));
      await waitFor(() => received.length === 1);
      expect(received).toEqual(['file-1']);
    });

    it('shares one durable work queue between two processes: each gets a share, none gets a message twice', async () => {
      const prefix = freshPrefix();
      const [first, second] = [await open(prefix), await open(prefix)];
      const got = new Map<EventBus, string[]>([
        [first, []],
        [second, []],
      ]);
      for (const bus of [first, second]) {
        await bus.subscribe({ durable: 'worker-thumbnails', stream: 'processing-jobs', concurrency: 2 }, async (message) => {
          got.get(bus)?.push(message.id);
          await sleep(10); // a job takes a while, so both processes are busy
        });
      }
      for (let n = 0; n < 40; n++)
        await first.publish('processing.requested', { contentHash: `h-${n}`, job: 'thumbnails', mediaKind: 'image' });

      const all = () => [...(got.get(first) ?? []), ...(got.get(second) ?? [])];
      await waitFor(() => all().length >= 40);
      await sleep(100);
      expect(all()).toHaveLength(40);
      expect(new Set(all()).size).toBe(40);
      expect(got.get(first)?.length).toBeGreaterThan(0);
      expect(got.get(second)?.length).toBeGreaterThan(0);
    });

    it('announces a change to the listeners of every process', async () => {
      const prefix = freshPrefix();
      const [committing, connected] = [await open(prefix), await open(prefix)];
      const heard: Announcement[] = [];
      await connected.listen((change) => heard.push(change));
      await committing.announce({ kind: 'feed', userId: 'user-42' });
      await waitFor(() => heard.length === 1);
      expect(heard).toEqual([{ kind: 'feed', userId: 'user-42' }]);
    });

    it('fails to open on an unreachable URL with an error naming it, without its credentials', async () => {
      await expect(NatsEventBus.open({ url: 'nats://127.0.0.1:1' })).rejects.toMatchObject({
        code: 'PV_BACKEND_UNREACHABLE',
        message: expect.stringContaining('nats://127.0.0.1:1'),
      });
      const failure = await NatsEventBus.open({ url: 'nats://photovault:s3cret@127.0.0.1:1' }).catch((error: unknown) => error);
      expect(String((failure as Error).message)).toContain('nats://***@127.0.0.1:1');
      expect(String((failure as Error).message)).not.toContain('s3cret');
    });

    it('refuses a prefix that could not name streams and subjects', async () => {
      for (const prefix of ['', 'Photo', 'a.b', 'a_b', '-a']) {
        await expect(NatsEventBus.open({ url: NATS_URL, prefix })).rejects.toMatchObject({ code: 'PV_INVALID_INPUT' });
      }
    });
  });
});
