import type { KvStore } from '../../infra/kv/kv-store.js';

/** How often a process renews the devices it holds (the sync hub's heartbeat). */
export const PRESENCE_RENEWAL_MS = 30_000;
/** How long a device counts as online after its last renewal: two renewals may be missed. */
const PRESENCE_TTL_MS = 2.5 * PRESENCE_RENEWAL_MS;

/**
 * Which of a user's devices hold a sync socket, seen by every server process alike: one key per
 * device (in process memory embedded, in Redis in the cluster) whose TTL the holding process
 * renews on each heartbeat, so the devices of a process that died stop counting after one TTL.
 * A device briefly connected to two processes (a reconnect) may read offline until the next
 * renewal once either socket closes; presence is advisory, cursors are the truth.
 */
export class DevicePresence {
  constructor(
    private readonly kv: KvStore,
    private readonly ttlMs = PRESENCE_TTL_MS,
  ) {}

  /** Marks the device online for ttlMs more. */
  async hold(userId: string, deviceId: string): Promise<void> {
    await this.kv.set(presenceKey(userId, deviceId), '1', { ttlMs: this.ttlMs });
  }

  async release(userId: string, deviceId: string): Promise<void> {
    await this.kv.delete(presenceKey(userId, deviceId));
  }

  /** Those of the given devices that some process holds. */
  async online(userId: string, deviceIds: Iterable<string>): Promise<Set<string>> {
    const ids = [...new Set(deviceIds)];
    const held = await Promise.all(ids.map((id) => this.kv.get(presenceKey(userId, id))));
    return new Set(ids.filter((_, i) => held[i] !== null));
  }
}

function presenceKey(userId: string, deviceId: string): string {
  return `presence:${userId}:${deviceId}`;
}
