import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { BusMessage, ConsumerOptions, EventBus, EventPayloads, Subscription } from '../../src/infra/bus/event-bus.js';
import { waitFor } from '../support/wait.js';

type Uploaded = EventPayloads['file.uploaded'];

/** A made-up `file.uploaded` payload; `n` tells messages apart. */
function uploaded(n: number): Uploaded {
  return {
    ownerId: 'owner-1',
    fileId: `file-${n}`,
    versionId: `version-${n}`,
    path: `/photos/img-${n}.jpg`,
    contentHash: `sha256-${n}`,
    size: 1000 + n,
  };
}

/** A promise with its resolve function, to hold a handler until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/**
 * The behaviour every EventBus adapter must have. `open` returns a fresh bus over fresh durable
 * state, and `reopen`, which opens another bus over the same state, as a restarted process would.
 * The suite closes every bus it gets; the adapter's test file removes whatever state `open`
 * created. Durable names are random so runs against a shared server never meet.
 */
export function eventBusContract(name: string, open: () => Promise<{ bus: EventBus; reopen: () => Promise<EventBus> }>): void {
  describe(`EventBus contract: ${name}`, () => {
    const openBuses = new Set<EventBus>();

    // Closing a bus is enough: it stops its subscriptions without waiting for handlers a failed
    // case may have left hanging.
    afterEach(async () => {
      await Promise.all([...openBuses].map((bus) => bus.close()));
      openBuses.clear();
    });

    async function start(): Promise<{ bus: EventBus; restart: () => Promise<EventBus> }> {
      const { bus, reopen } = await open();
      openBuses.add(bus);
      return {
        bus,
        restart: async () => {
          const next = await reopen();
          openBuses.add(next);
          return next;
        },
      };
    }

    /** Closes a bus without stopping its subscriptions, leaving their deliveries unacked as a crash would. */
    async function crash(bus: EventBus): Promise<void> {
      openBuses.delete(bus);
      await bus.close();
    }

    function consumer(overrides: Partial<ConsumerOptions> = {}): ConsumerOptions {
      return { durable: `contract-${randomUUID()}`, stream: 'file-uploads', ...overrides };
    }

    /** Subscribes a handler that records what it gets (and acks it). */
    async function collect(
      bus: EventBus,
      options: ConsumerOptions,
      handler: (message: BusMessage) => Promise<void> = async () => {},
    ): Promise<{ received: BusMessage[]; subscription: Subscription }> {
      const received: BusMessage[] = [];
      const subscription = await bus.subscribe(options, async (message) => {
        received.push(message);
        await handler(message);
      });
      return { received, subscription };
    }

    /** Publishes one message to a handler that never finishes, crashes that bus, and restarts it. */
    async function hangThenCrash(options: ConsumerOptions): Promise<{ hung: BusMessage; restarted: EventBus }> {
      const { bus, restart } = await start();
      const hung = await collect(bus, options, () => new Promise<void>(() => {}));
      await bus.publish('file.uploaded', uploaded(1));
      await waitFor(() => hung.received.length === 1);
      await crash(bus);
      return { hung: hung.received[0]!, restarted: await restart() };
    }

    const fileIds = (messages: BusMessage[]) => messages.map((message) => (message.payload as Uploaded).fileId);

    it('delivers a published message to a subscriber on its first attempt with its payload', async () => {
      const { bus } = await start();
      const { received } = await collect(bus, consumer());
      const before = Date.now();
      await bus.publish('file.uploaded', uploaded(1));

      await waitFor(() => received.length === 1);
      const [message] = received;
      expect(message).toMatchObject({ event: 'file.uploaded', payload: uploaded(1), attempt: 1 });
      expect(typeof message?.id).toBe('string');
      expect(message?.publishedAt).toBeInstanceOf(Date);
      expect(message?.publishedAt.getTime()).toBeGreaterThanOrEqual(before - 1_000);
    });

    it('delivers every message to each of two durables on one stream, in publish order', async () => {
      const { bus } = await start();
      const thumbnails = await collect(bus, consumer());
      const metadata = await collect(bus, consumer());
      for (const n of [1, 2, 3]) await bus.publish('file.uploaded', uploaded(n));

      await waitFor(() => thumbnails.received.length === 3 && metadata.received.length === 3);
      expect(fileIds(thumbnails.received)).toEqual(['file-1', 'file-2', 'file-3']);
      expect(fileIds(metadata.received)).toEqual(['file-1', 'file-2', 'file-3']);
      expect(thumbnails.received.map((m) => m.id)).toEqual(metadata.received.map((m) => m.id));
      expect(new Set(thumbnails.received.map((m) => m.id)).size).toBe(3);
    });

    it('delivers each of many publishes made at once exactly once, in publish order, and acks them all', async () => {
      const { bus, restart } = await start();
      const options = consumer({ concurrency: 4 });
      const { received, subscription } = await collect(bus, options);
      const numbers = Array.from({ length: 40 }, (_, i) => i + 1);
      await Promise.all(numbers.map((n) => bus.publish('file.uploaded', uploaded(n))));

      await waitFor(() => received.length === numbers.length);
      expect(new Set(fileIds(received))).toEqual(new Set(numbers.map((n) => `file-${n}`)));
      // Publish order is the order of the publish calls, whatever batches they were stored in.
      expect([...received].sort((a, b) => Number(a.id) - Number(b.id)).map((m) => (m.payload as Uploaded).fileId)).toEqual(
        numbers.map((n) => `file-${n}`),
      );
      await sleep(100);
      await subscription.stop();
      // Acked: a fresh subscription under the same durable gets none of them again.
      const again = await collect(await restart(), options);
      await sleep(300);
      expect(again.received).toEqual([]);
    });

    it('does not deliver messages published before the durable first existed', async () => {
      const { bus } = await start();
      await bus.publish('file.uploaded', uploaded(1));
      const { received } = await collect(bus, consumer());
      await bus.publish('file.uploaded', uploaded(2));

      await waitFor(() => received.length >= 1);
      await sleep(50);
      expect(fileIds(received)).toEqual(['file-2']);
    });

    it('keeps messages for a declared durable that nobody has subscribed to yet', async () => {
      const { bus } = await start();
      const options = consumer();
      await bus.declare(options.durable, options.stream);
      await bus.publish('file.uploaded', uploaded(1));
      const { received } = await collect(bus, options);
      await waitFor(() => received.length === 1);
      expect(fileIds(received)).toEqual(['file-1']);
      await expect(bus.declare(options.durable, 'share-events')).rejects.toMatchObject({ code: 'PV_CONFLICT' });
    });

    it('refuses to subscribe under a durable name that already reads another stream', async () => {
      const { bus } = await start();
      const options = consumer();
      await (await collect(bus, options)).subscription.stop();
      await expect(collect(bus, { ...options, stream: 'share-events' })).rejects.toMatchObject({ code: 'PV_CONFLICT' });
    });

    it('refuses durable names that are not valid on every adapter', async () => {
      const { bus } = await start();
      for (const durable of ['', 'thumbs.v2', 'thumbs v2', 'thumbs*', 'a/b']) {
        await expect(bus.declare(durable, 'file-uploads')).rejects.toMatchObject({ code: 'PV_INVALID_INPUT' });
        await expect(collect(bus, consumer({ durable }))).rejects.toMatchObject({ code: 'PV_INVALID_INPUT' });
      }
    });

    it('delivers messages published while the durable had no subscriber once it subscribes again', async () => {
      const { bus } = await start();
      const options = consumer();
      const first = await collect(bus, options);
      await first.subscription.stop();
      await bus.publish('file.uploaded', uploaded(1));
      await bus.publish('file.uploaded', uploaded(2));

      const second = await collect(bus, options);
      await waitFor(() => second.received.length === 2);
      expect(fileIds(second.received)).toEqual(['file-1', 'file-2']);
      expect(first.received).toEqual([]);
    });

    it('keeps undelivered messages across a restart', async () => {
      const { bus, restart } = await start();
      const options = consumer();
      await (await collect(bus, options)).subscription.stop();
      await bus.publish('file.uploaded', uploaded(1));
      await crash(bus);

      const restarted = await restart();
      await restarted.publish('file.uploaded', uploaded(2));
      const { received } = await collect(restarted, options);
      await waitFor(() => received.length === 2);
      expect(fileIds(received)).toEqual(['file-1', 'file-2']);
      expect(received.map((m) => m.attempt)).toEqual([1, 1]);
    });

    it('redelivers a message whose handler threw, as attempt 2 after the backoff', async () => {
      const { bus } = await start();
      const failedAt: number[] = [];
      const deliveredAt: number[] = [];
      const options = consumer({ backoffMs: [20, 40] });
      const { received } = await collect(bus, options, async (message) => {
        deliveredAt.push(Date.now());
        if (message.attempt < 3) {
          failedAt.push(Date.now());
          throw new Error(`thumbnail failed on attempt ${message.attempt}`);
        }
      });
      await bus.publish('file.uploaded', uploaded(1));

      await waitFor(() => received.length === 3);
      expect(received.map((m) => m.attempt)).toEqual([1, 2, 3]);
      expect(new Set(received.map((m) => m.id)).size).toBe(1);
      expect(received[1]?.payload).toEqual(uploaded(1));
      expect(deliveredAt[1]! - failedAt[0]!).toBeGreaterThanOrEqual(20);
      expect(deliveredAt[2]! - failedAt[1]!).toBeGreaterThanOrEqual(40);
      expect(await bus.deadLetters(options.durable)).toEqual([]);
    });

    it('dead-letters a message after maxDeliver failures, with the last error, and stops delivering it', async () => {
      const { bus } = await start();
      const options = consumer({ maxDeliver: 2, backoffMs: [10] });
      const { received } = await collect(bus, options, async (message) => {
        throw new Error(`corrupt image (attempt ${message.attempt})`);
      });
      await bus.publish('file.uploaded', uploaded(1));

      await waitFor(async () => (await bus.deadLetters(options.durable)).length === 1);
      const [dead] = await bus.deadLetters(options.durable);
      expect(dead?.durable).toBe(options.durable);
      expect(dead?.error).toContain('corrupt image (attempt 2)');
      expect(dead?.message).toMatchObject({ event: 'file.uploaded', payload: uploaded(1), id: received[0]?.id, attempt: 2 });
      await sleep(80);
      expect(received.map((m) => m.attempt)).toEqual([1, 2]);
    });

    it('dead-letters a message whose handler keeps running past ackWait, and stops delivering it', async () => {
      const { bus } = await start();
      // Free slots, so that each redelivery finds one while the earlier attempts still hang.
      const options = consumer({ maxDeliver: 2, ackWaitMs: 100, concurrency: 3 });
      const { received } = await collect(bus, options, () => new Promise<void>(() => {}));
      await bus.publish('file.uploaded', uploaded(1));

      await waitFor(async () => (await bus.deadLetters(options.durable)).length === 1);
      const [dead] = await bus.deadLetters(options.durable);
      expect(dead?.error).toContain('ackWaitMs');
      expect(dead?.message).toMatchObject({ id: received[0]?.id, payload: uploaded(1), attempt: 2 });
      await sleep(150);
      expect(received.map((m) => m.attempt)).toEqual([1, 2]);
    });

    it('dead-letters a last delivery whose process died once ackWait has passed, without running the handler again', async () => {
      const options = consumer({ maxDeliver: 1, ackWaitMs: 100 });
      const { hung, restarted } = await hangThenCrash(options);
      const { received } = await collect(restarted, options);
      await waitFor(async () => (await restarted.deadLetters(options.durable)).length === 1);
      const [dead] = await restarted.deadLetters(options.durable);
      expect(dead?.error).toContain('ackWaitMs');
      expect(dead?.message).toMatchObject({ id: hung.id, payload: uploaded(1), attempt: 1 });
      await sleep(150);
      expect(received).toEqual([]);
    });

    it('redelivers a delivery whose handler never finished after ackWait, across a restart', async () => {
      const options = consumer({ ackWaitMs: 100 });
      const { hung, restarted } = await hangThenCrash(options);
      const { received } = await collect(restarted, options);
      await waitFor(() => received.length === 1);
      expect(received[0]).toMatchObject({ id: hung.id, payload: uploaded(1), attempt: 2 });
    });

    it('does not redeliver a handler running past ackWait while its lease is renewed, but does once its process is gone', async () => {
      const { bus, restart } = await start();
      const options = consumer({ ackWaitMs: 150, renewLease: true });
      const release = gate();
      const slow = await collect(bus, options, () => release.promise);
      await bus.publish('file.uploaded', uploaded(1));
      await waitFor(() => slow.received.length === 1);
      await sleep(600); // four times ackWait
      expect(slow.received).toHaveLength(1);

      await crash(bus);
      const restarted = await restart();
      const { received } = await collect(restarted, options);
      await waitFor(() => received.length === 1);
      expect(received[0]).toMatchObject({ id: slow.received[0]?.id, attempt: 2 });
      release.open();
    });

    it('keeps renewing the leases of handlers in flight while stop() waits for them', async () => {
      const { bus } = await start();
      const options = consumer({ ackWaitMs: 150, renewLease: true });
      const release = gate();
      const slow = await collect(bus, options, () => release.promise);
      await bus.publish('file.uploaded', uploaded(1));
      await waitFor(() => slow.received.length === 1);

      const stopping = slow.subscription.stop();
      const next = await collect(bus, options);
      await sleep(600); // four times ackWait
      release.open();
      await stopping;
      await sleep(200);
      expect(next.received).toEqual([]);
      expect(slow.received).toHaveLength(1);
    });

    it('runs up to `concurrency` handlers at once', async () => {
      const { bus } = await start();
      const release = gate();
      let running = 0;
      let mostAtOnce = 0;
      const { received } = await collect(bus, consumer({ concurrency: 3 }), async () => {
        running++;
        mostAtOnce = Math.max(mostAtOnce, running);
        await release.promise;
        running--;
      });
      for (const n of [1, 2, 3, 4, 5]) await bus.publish('file.uploaded', uploaded(n));

      await waitFor(() => running === 3);
      await sleep(30);
      expect(received).toHaveLength(3);
      release.open();
      await waitFor(() => received.length === 5 && running === 0);
      expect(mostAtOnce).toBe(3);
      expect(new Set(fileIds(received)).size).toBe(5);
    });

    it('stop() waits for handlers in flight, acks them, and takes no new messages', async () => {
      const { bus } = await start();
      const options = consumer();
      const release = gate();
      let finished = false;
      const first = await collect(bus, options, async () => {
        await release.promise;
        finished = true;
      });
      await bus.publish('file.uploaded', uploaded(1));
      await waitFor(() => first.received.length === 1);

      let stopped = false;
      const stopping = first.subscription.stop().then(() => (stopped = true));
      await sleep(30);
      expect(stopped).toBe(false);
      release.open();
      await stopping;
      expect(finished).toBe(true);

      await bus.publish('file.uploaded', uploaded(2));
      await sleep(50);
      expect(first.received).toHaveLength(1);
      // Message 1 was acked before stop() returned, so the next subscriber starts at message 2.
      const second = await collect(bus, options);
      await waitFor(() => second.received.length === 1);
      expect(fileIds(second.received)).toEqual(['file-2']);
    });
  });
}
