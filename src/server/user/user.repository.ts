import type { Db } from '../../infra/db/database.js';
import type { DeviceRow, TokenKind, TokenRow, UserRow } from '../../infra/db/schema.js';

/** Users, their devices and their tokens. */
export class UserRepository {
  constructor(private readonly db: Db) {}

  async insertUser(user: UserRow): Promise<boolean> {
    const result = await this.db
      .insertInto('users')
      .values(user)
      .onConflict((oc) => oc.column('name').doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  findUserByName(name: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
  }

  findUserById(id: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  }

  listUsers(): Promise<UserRow[]> {
    return this.db.selectFrom('users').selectAll().orderBy('name').execute();
  }

  async setPasswordHash(userId: string, passwordHash: string): Promise<void> {
    await this.db.updateTable('users').set({ password_hash: passwordHash }).where('id', '=', userId).execute();
  }

  async insertDevice(device: DeviceRow): Promise<void> {
    await this.db.insertInto('devices').values(device).execute();
  }

  findDevice(userId: string, deviceId: string): Promise<DeviceRow | undefined> {
    return this.db.selectFrom('devices').selectAll().where('user_id', '=', userId).where('id', '=', deviceId).executeTakeFirst();
  }

  listDevices(userId: string): Promise<DeviceRow[]> {
    return this.db.selectFrom('devices').selectAll().where('user_id', '=', userId).orderBy('created_at').execute();
  }

  /** Marks the device revoked and deletes its tokens, in one transaction; says whether it was active, and which tokens went. */
  async revokeDevice(userId: string, deviceId: string, at: number): Promise<{ revoked: boolean; tokenHashes: string[] }> {
    return this.db.transaction().execute(async (trx) => {
      const result = await trx
        .updateTable('devices')
        .set({ revoked_at: at })
        .where('user_id', '=', userId)
        .where('id', '=', deviceId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      const tokens = await trx
        .deleteFrom('tokens')
        .where('user_id', '=', userId)
        .where('device_id', '=', deviceId)
        .returning('hash')
        .execute();
      return { revoked: Number(result.numUpdatedRows) > 0, tokenHashes: tokens.map((token) => token.hash) };
    });
  }

  async insertToken(token: TokenRow): Promise<void> {
    await this.db.insertInto('tokens').values(token).execute();
  }

  /** The token with this hash, with its user and device, in one read (it runs on every request). */
  findSession(hash: string) {
    return this.db
      .selectFrom('tokens')
      .innerJoin('users', 'users.id', 'tokens.user_id')
      .leftJoin('devices', 'devices.id', 'tokens.device_id')
      .select([
        'tokens.id',
        'tokens.user_id',
        'tokens.device_id',
        'tokens.expires_at',
        'tokens.last_used_at',
        'users.name as user_name',
        'users.is_admin',
        'devices.name as device_name',
      ])
      .where('tokens.hash', '=', hash)
      .executeTakeFirst();
  }

  listTokens(userId: string, kind: TokenKind): Promise<TokenRow[]> {
    return this.db.selectFrom('tokens').selectAll().where('user_id', '=', userId).where('kind', '=', kind).orderBy('created_at').execute();
  }

  /** Deletes the token; the hashes of what went (none for an unknown one). */
  async deleteToken(userId: string, tokenId: string): Promise<string[]> {
    const deleted = await this.db.deleteFrom('tokens').where('user_id', '=', userId).where('id', '=', tokenId).returning('hash').execute();
    return deleted.map((token) => token.hash);
  }

  async touchToken(tokenId: string, deviceId: string | null, at: number): Promise<void> {
    await this.db.updateTable('tokens').set({ last_used_at: at }).where('id', '=', tokenId).execute();
    if (deviceId) await this.db.updateTable('devices').set({ last_seen_at: at }).where('id', '=', deviceId).execute();
  }
}
