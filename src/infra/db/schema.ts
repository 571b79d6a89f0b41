import type { Selectable } from 'kysely';
import type { JobKind, JobState, MediaKind } from '../../core/media.js';

/**
 * The metadata tables, typed once for both dialects. Portable column types only: text ids
 * (UUIDs), integers for booleans and sizes, epoch milliseconds for times (bigint in PostgreSQL,
 * read back as numbers).
 */
export interface Database {
  users: UsersTable;
  devices: DevicesTable;
  tokens: TokensTable;
  objects: ObjectsTable;
  object_chunks: ObjectChunksTable;
  files: FilesTable;
  file_versions: FileVersionsTable;
  trash: TrashTable;
  uploads: UploadsTable;
  upload_chunks: UploadChunksTable;
  changes: ChangesTable;
  device_cursors: DeviceCursorsTable;
  processing_jobs: ProcessingJobsTable;
  leases: LeasesTable;
}

export interface UsersTable {
  id: string;
  name: string;
  password_hash: string;
  is_admin: number;
  created_at: number;
  /** The last change-feed sequence number of this user. */
  change_seq: number;
}

export interface DevicesTable {
  id: string;
  user_id: string;
  name: string;
  created_at: number;
  last_seen_at: number;
  revoked_at: number | null;
}

export type TokenKind = 'session' | 'api-key';

export interface TokensTable {
  id: string;
  /** SHA-256 of the token: the token itself is never stored. */
  hash: string;
  user_id: string;
  device_id: string | null;
  kind: TokenKind;
  label: string | null;
  created_at: number;
  expires_at: number | null;
  last_used_at: number;
}

/** One stored object per distinct content, shared by every version with that content. */
export interface ObjectsTable {
  hash: string;
  size: number;
  /** The bucket holding the recorded copy: the one every reader reads. */
  bucket: string;
  created_at: number;
  /** While a tiering move is under way, the bucket of its other, unrecorded copy (docs/architecture.md). */
  extra_copy_bucket: string | null;
}

/** The chunk index: which chunk lies where in which object. */
export interface ObjectChunksTable {
  object_hash: string;
  offset: number;
  chunk_hash: string;
  length: number;
}

export type EntryKind = 'file' | 'folder';

export interface FilesTable {
  id: string;
  owner_id: string;
  dir: string;
  name: string;
  kind: EntryKind;
  head_version_id: string | null;
  content_hash: string | null;
  size: number;
  mtime: number;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
  trash_id: string | null;
}

export interface FileVersionsTable {
  id: string;
  file_id: string;
  owner_id: string;
  content_hash: string;
  size: number;
  mtime: number;
  created_at: number;
  device_id: string | null;
  base_version_id: string | null;
}

/** One row per delete: everything it removed carries its id, so one restore brings all back. */
export interface TrashTable {
  id: string;
  owner_id: string;
  path: string;
  kind: EntryKind;
  size: number;
  deleted_at: number;
}

export interface UploadsTable {
  id: string;
  owner_id: string;
  device_id: string | null;
  path: string;
  size: number;
  mtime: number;
  content_hash: string;
  /** The compact manifest, base64. */
  manifest: string;
  base_version_id: string | null;
  created_at: number;
  expires_at: number;
}

/**
 * The chunks an upload must receive, one row per offset the chunk takes in the file; received_at
 * is set once the bytes are verified and staged there.
 */
export interface UploadChunksTable {
  upload_id: string;
  offset: number;
  hash: string;
  length: number;
  received_at: number | null;
}

export type ChangeKind = 'upsert' | 'delete' | 'move' | 'processed';

/**
 * One change to a user's namespace. 'upsert': the entry at path now is this file version or this
 * folder. 'delete': the entry at path (a folder: with everything in it) went to the trash.
 * 'move': the entry at from_path (a folder: with everything in it) is now at path.
 * 'processed': a processing job finished for the content of the file at path (derived files or
 * metadata changed; the file itself did not).
 */
export interface ChangesTable {
  owner_id: string;
  seq: number;
  kind: ChangeKind;
  path: string;
  from_path: string | null;
  entry_kind: EntryKind;
  file_id: string | null;
  version_id: string | null;
  content_hash: string | null;
  size: number;
  mtime: number;
  device_id: string | null;
  at: number;
}

/** How far each device has acknowledged its user's change feed. */
export interface DeviceCursorsTable {
  device_id: string;
  user_id: string;
  seq: number;
  updated_at: number;
}

/** One processing job of one content; output is the job's JSON result once done. */
export interface ProcessingJobsTable {
  content_hash: string;
  job: JobKind;
  media_kind: MediaKind;
  state: JobState;
  /** Tries so far, as the last worker to report counted them. */
  attempts: number;
  error: string | null;
  output: string | null;
  created_at: number;
  updated_at: number;
}

/** A named lease: at most one holder at a time, until it expires unless renewed. */
export interface LeasesTable {
  name: string;
  holder: string;
  expires_at: number;
}

export type ChangeRow = Selectable<ChangesTable>;
export type ProcessingJobRow = Selectable<ProcessingJobsTable>;
export type UserRow = Selectable<UsersTable>;
export type DeviceRow = Selectable<DevicesTable>;
export type TokenRow = Selectable<TokensTable>;
export type FileRow = Selectable<FilesTable>;
export type FileVersionRow = Selectable<FileVersionsTable>;
export type TrashRow = Selectable<TrashTable>;
export type UploadRow = Selectable<UploadsTable>;
