import type { ChangePage } from '../../core/protocol.js';
import { PvError } from '../../core/errors.js';
import type { ChangeRow } from '../../infra/db/schema.js';
import type { Principal } from '../user/user.service.js';
import type { ChangeFeedRepository } from './change-feed.repository.js';

const MAX_PAGE = 1000;

/** The change feed as clients read it, and their acknowledgements of how far they applied it. */
export class SyncService {
  constructor(
    private readonly feed: ChangeFeedRepository,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * One page of the user's changes after `since`, oldest first; without processing results if
   * asked. A last page then ends at the latest number read, past any results left out, so a
   * client's cursor reaches the end of the feed.
   */
  async changes(principal: Principal, since: number, limit: number, options: { excludeProcessed?: boolean } = {}): Promise<ChangePage> {
    const pageSize = Math.min(Math.max(limit, 1), MAX_PAGE);
    // Read the latest number first: a page read after it can only be as new or newer, and every
    // change up to it is there to read (a number is taken in the transaction that writes its change).
    const latest = await this.feed.latest(principal.userId);
    const rows = await this.feed.since(principal.userId, since, pageSize + 1, options);
    const page = rows.slice(0, pageSize);
    const hasMore = rows.length > pageSize;
    const last = page.at(-1)?.seq ?? since;
    return {
      changes: page.map(toChange),
      latest: Math.max(latest, last),
      next: hasMore || !options.excludeProcessed ? last : Math.max(latest, last),
      hasMore,
    };
  }

  /** The user's newest sequence number. */
  latest(userId: string): Promise<number> {
    return this.feed.latest(userId);
  }

  /** Each of the user's devices' cursor: how far it has applied the feed. */
  async cursors(userId: string): Promise<Map<string, number>> {
    return new Map((await this.feed.cursors(userId)).map((row) => [row.device_id, row.seq]));
  }

  /** Records that this device has applied every change up to seq. */
  async acknowledge(principal: Principal, seq: number): Promise<number> {
    if (!principal.deviceId) {
      throw new PvError('PV_INVALID_INPUT', 'Only a device session has a sync cursor; API keys belong to no device.', {
        fix: 'Log in as the device (`photovault login`) to sync.',
      });
    }
    const latest = await this.feed.latest(principal.userId);
    return this.feed.acknowledge(principal.userId, principal.deviceId, Math.min(seq, latest), this.now());
  }
}

function toChange(row: ChangeRow) {
  return {
    seq: row.seq,
    kind: row.kind,
    path: row.path,
    fromPath: row.from_path,
    entryKind: row.entry_kind,
    versionId: row.version_id,
    contentHash: row.content_hash,
    size: row.size,
    mtime: row.mtime,
    deviceId: row.device_id,
    at: new Date(row.at).toISOString(),
  };
}
