import { randomUUID } from 'node:crypto';
import { PvError } from '../../core/errors.js';
import type { KvStore } from '../../infra/kv/kv-store.js';
import type { DeviceRow, TokenRow, UserRow } from '../../infra/db/schema.js';
import { decoyPasswordHash, hashPassword, verifyPassword } from './password.js';
import { newToken, tokenHash } from './tokens.js';
import type { UserRepository } from './user.repository.js';

/** Who is making a request: resolved from a bearer token. */
export interface Principal {
  userId: string;
  userName: string;
  isAdmin: boolean;
  deviceId: string | null;
  /** Names conflict copies; null for API keys, which belong to no device. */
  deviceName: string | null;
  tokenId: string;
}

export interface UserPolicy {
  sessionDays: number;
  loginAttempts: number;
  loginWindowSeconds: number;
}

export interface User {
  id: string;
  name: string;
  isAdmin: boolean;
  createdAt: Date;
}

export interface Device {
  id: string;
  name: string;
  createdAt: Date;
  lastSeenAt: Date;
  revokedAt: Date | null;
}

export interface ApiKey {
  id: string;
  label: string | null;
  createdAt: Date;
  lastUsedAt: Date;
}

export interface LoginResult {
  token: string;
  user: User;
  device: Device;
  expiresAt: Date;
}

const USER_NAME = /^[\p{L}\p{N}._-]{1,64}$/u;
const MIN_PASSWORD_LENGTH = 8;

const badCredentials = () =>
  new PvError('PV_AUTH_INVALID_CREDENTIALS', 'Wrong user name or password.', { fix: 'Check the user name and password and try again.' });

type SessionRow = NonNullable<Awaited<ReturnType<UserRepository['findSession']>>>;

// Every request authenticates: a resolved token is remembered in the KV store (process memory
// embedded, Redis in the cluster form, where every server process shares it), so most requests
// read no database. A revocation puts a tombstone in its place at once, for every process; a
// request that read the token before the revocation cannot bring it back, as it fills the cache
// with add(), which leaves the tombstone be.
const SESSION_CACHE_MS = 300_000;
const REVOKED = 'revoked';
const sessionKey = (tokenHash: string) => `session:${tokenHash}`;
/** Tokens whose last use this process remembers writing; past it, it forgets them all. */
const TOUCHED_KEPT = 10_000;

/** Users, logins, sessions, API keys and devices. */
export class UserService {
  /** When this process last wrote each token's last use: the cached row's goes stale. */
  private readonly touched = new Map<string, number>();

  constructor(
    private readonly users: UserRepository,
    private readonly kv: KvStore,
    private readonly policy: UserPolicy,
    private readonly now: () => number = Date.now,
  ) {}

  async addUser(name: string, password: string, options: { admin?: boolean } = {}): Promise<User> {
    const normalized = name.normalize('NFC');
    if (!USER_NAME.test(normalized)) {
      throw new PvError('PV_INVALID_INPUT', `Invalid user name ${JSON.stringify(name)}.`, {
        fix: 'Use 1-64 letters, digits, dots, dashes or underscores.',
      });
    }
    checkPassword(password);
    const row: UserRow = {
      id: randomUUID(),
      name: normalized,
      password_hash: await hashPassword(password),
      is_admin: options.admin ? 1 : 0,
      created_at: this.now(),
      change_seq: 0,
    };
    if (!(await this.users.insertUser(row))) {
      throw new PvError('PV_USER_EXISTS', `User ${normalized} already exists.`, {
        fix: 'Pick another name, or use `photovault user passwd`.',
      });
    }
    return toUser(row);
  }

  async listUsers(): Promise<User[]> {
    return (await this.users.listUsers()).map(toUser);
  }

  async setPassword(name: string, password: string): Promise<void> {
    checkPassword(password);
    const user = await this.users.findUserByName(name.normalize('NFC'));
    if (!user) throw new PvError('PV_NOT_FOUND', `No user named ${name}.`, { fix: 'See `photovault user list`.' });
    await this.users.setPasswordHash(user.id, await hashPassword(password));
  }

  /**
   * Checks the password, registers the device (or reuses the caller's known one) and opens a
   * session. Failed attempts per user name and client address are limited in a fixed window.
   */
  async login(input: {
    name: string;
    password: string;
    deviceName: string;
    deviceId?: string;
    clientAddress: string;
  }): Promise<LoginResult> {
    const name = input.name.normalize('NFC');
    const limitKey = `login-failures:${name}:${input.clientAddress}`;
    const failures = Number((await this.kv.get(limitKey)) ?? 0);
    if (failures >= this.policy.loginAttempts) {
      throw new PvError('PV_RATE_LIMITED', 'Too many failed logins; wait before trying again.', {
        retryAfterSeconds: this.policy.loginWindowSeconds,
        fix: `Wait ${Math.ceil(this.policy.loginWindowSeconds / 60)} minutes, then log in with the right password.`,
      });
    }
    const user = await this.users.findUserByName(name);
    // Unknown users cost a full hash too, so timing does not tell which names exist.
    const valid = await verifyPassword(input.password, user?.password_hash ?? (await decoyPasswordHash()));
    if (!user || !valid) {
      await this.kv.increment(limitKey, { ttlMs: this.policy.loginWindowSeconds * 1000 });
      throw badCredentials();
    }
    const at = this.now();
    let device = input.deviceId ? await this.users.findDevice(user.id, input.deviceId) : undefined;
    if (!device || device.revoked_at !== null) {
      device = {
        id: randomUUID(),
        user_id: user.id,
        name: input.deviceName.slice(0, 128) || 'device',
        created_at: at,
        last_seen_at: at,
        revoked_at: null,
      };
      await this.users.insertDevice(device);
    }
    const expiresAt = at + this.policy.sessionDays * 86_400_000;
    const { token } = await this.issueToken(user.id, device.id, 'session', null, expiresAt);
    return { token, user: toUser(user), device: toDevice(device), expiresAt: new Date(expiresAt) };
  }

  /** Resolves a bearer token to its principal; throws PV_AUTH_TOKEN_INVALID or PV_AUTH_TOKEN_EXPIRED. */
  async authenticate(token: string): Promise<Principal> {
    const row = await this.findSession(tokenHash(token));
    if (!row) {
      throw new PvError('PV_AUTH_TOKEN_INVALID', 'The access token is not valid.', { fix: 'Log in again with `photovault login`.' });
    }
    const at = this.now();
    if (row.expires_at !== null && row.expires_at <= at) {
      throw new PvError('PV_AUTH_TOKEN_EXPIRED', 'The session has expired.', { fix: 'Log in again with `photovault login`.' });
    }
    // Writing last-used on every request would make each read a write; a minute's grain is enough.
    if (at - (this.touched.get(row.id) ?? row.last_used_at) > 60_000) {
      await this.users.touchToken(row.id, row.device_id, at);
      if (this.touched.size >= TOUCHED_KEPT) this.touched.clear();
      this.touched.set(row.id, at);
    }
    return {
      userId: row.user_id,
      userName: row.user_name,
      isAdmin: row.is_admin === 1,
      deviceId: row.device_id,
      deviceName: row.device_name,
      tokenId: row.id,
    };
  }

  async logout(principal: Principal): Promise<void> {
    await this.forget(await this.users.deleteToken(principal.userId, principal.tokenId));
  }

  private async findSession(hash: string): Promise<SessionRow | undefined> {
    const cached = await this.kv.get(sessionKey(hash));
    if (cached === REVOKED) return undefined;
    if (cached !== null) return JSON.parse(cached) as SessionRow;
    const row = await this.users.findSession(hash);
    // Unknown tokens are not remembered: guessing would fill the store.
    if (row) await this.kv.add(sessionKey(hash), JSON.stringify(row), { ttlMs: SESSION_CACHE_MS });
    return row;
  }

  /** Ends the remembered sessions of deleted tokens, in every server process. */
  private async forget(tokenHashes: string[]): Promise<void> {
    for (const hash of tokenHashes) await this.kv.set(sessionKey(hash), REVOKED, { ttlMs: SESSION_CACHE_MS });
  }

  async createApiKey(principal: Principal, label: string | null): Promise<{ token: string; apiKey: ApiKey }> {
    const { token, row } = await this.issueToken(principal.userId, null, 'api-key', label, null);
    return { token, apiKey: toApiKey(row) };
  }

  async listApiKeys(principal: Principal): Promise<ApiKey[]> {
    return (await this.users.listTokens(principal.userId, 'api-key')).map(toApiKey);
  }

  async revokeApiKey(principal: Principal, apiKeyId: string): Promise<void> {
    const deleted = await this.users.deleteToken(principal.userId, apiKeyId);
    if (deleted.length === 0) throw new PvError('PV_NOT_FOUND', `No API key ${apiKeyId}.`, { fix: 'See `photovault apikey ls`.' });
    await this.forget(deleted);
  }

  async listDevices(principal: Principal): Promise<Device[]> {
    return (await this.users.listDevices(principal.userId)).map(toDevice);
  }

  async revokeDevice(principal: Principal, deviceId: string): Promise<void> {
    const { revoked, tokenHashes } = await this.users.revokeDevice(principal.userId, deviceId, this.now());
    await this.forget(tokenHashes);
    if (!revoked) throw new PvError('PV_NOT_FOUND', `No active device ${deviceId}.`, { fix: 'See `photovault devices ls`.' });
  }

  private async issueToken(
    userId: string,
    deviceId: string | null,
    kind: TokenRow['kind'],
    label: string | null,
    expiresAt: number | null,
  ) {
    const { token, hash } = newToken(kind);
    const at = this.now();
    const row: TokenRow = {
      id: randomUUID(),
      hash,
      user_id: userId,
      device_id: deviceId,
      kind,
      label,
      created_at: at,
      expires_at: expiresAt,
      last_used_at: at,
    };
    await this.users.insertToken(row);
    return { token, row };
  }
}

function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new PvError('PV_INVALID_INPUT', `Passwords must have at least ${MIN_PASSWORD_LENGTH} characters.`, {
      fix: 'Choose a longer password.',
    });
  }
}

function toUser(row: UserRow): User {
  return { id: row.id, name: row.name, isAdmin: row.is_admin === 1, createdAt: new Date(row.created_at) };
}

function toDevice(row: DeviceRow): Device {
  return {
    id: row.id,
    name: row.name,
    createdAt: new Date(row.created_at),
    lastSeenAt: new Date(row.last_seen_at),
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  };
}

function toApiKey(row: TokenRow): ApiKey {
  return { id: row.id, label: row.label, createdAt: new Date(row.created_at), lastUsedAt: new Date(row.last_used_at) };
}
