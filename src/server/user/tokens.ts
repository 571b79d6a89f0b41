import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../../core/hash.js';
import type { TokenKind } from '../../infra/db/schema.js';

// 256 random bits; the prefix tells a leaked token's kind at a glance (and to secret scanners).
const PREFIX: Record<TokenKind, string> = { session: 'pvs_', 'api-key': 'pvk_' };

/** A new bearer token of the kind, and the hash under which it is stored. */
export function newToken(kind: TokenKind): { token: string; hash: string } {
  const token = PREFIX[kind] + randomBytes(32).toString('base64url');
  return { token, hash: tokenHash(token) };
}

/** The stored form of a token: its SHA-256 (tokens are random, so no salt or stretching is needed). */
export function tokenHash(token: string): string {
  return sha256Hex(token);
}
