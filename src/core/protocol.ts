import { type Static, Type } from 'typebox';
import {
  CHUNKS_PER_REQUEST_MAX,
  MANIFESTS_PER_REQUEST_MAX,
  UPLOADS_PER_BATCH_MAX,
  WHOLE_FILE_MAX_BYTES,
  WHOLE_FILES_PER_REQUEST_MAX,
} from './protocol-limits.js';

/**
 * The HTTP API's message shapes (DESIGN section 3 and docs/protocol.md), as JSON schemas shared
 * by the server's route validation, the OpenAPI document and the client. Times are epoch
 * milliseconds for file mtimes (exact round trips) and ISO 8601 strings everywhere else.
 */

export { API_PREFIX } from './api-prefix.js';
export * from './protocol-limits.js';

const Hash = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256, lowercase hex' });
const Id = Type.String({ minLength: 1, maxLength: 64 });

export const FileEntrySchema = Type.Object({
  path: Type.String(),
  name: Type.String(),
  kind: Type.Union([Type.Literal('file'), Type.Literal('folder')]),
  size: Type.Integer({ minimum: 0 }),
  contentHash: Type.Union([Hash, Type.Null()]),
  versionId: Type.Union([Id, Type.Null()]),
  mtime: Type.Integer({ description: 'epoch milliseconds' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type FileEntry = Static<typeof FileEntrySchema>;

export const FileVersionSchema = Type.Object({
  id: Id,
  contentHash: Hash,
  size: Type.Integer({ minimum: 0 }),
  mtime: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
  deviceId: Type.Union([Id, Type.Null()]),
});
export type FileVersionView = Static<typeof FileVersionSchema>;

export const VersionManifestSchema = Type.Object({
  version: FileVersionSchema,
  manifest: Type.String({ description: 'compact manifest (docs/protocol.md), base64', contentEncoding: 'base64' }),
});
export type VersionManifest = Static<typeof VersionManifestSchema>;

export const ManifestsRequestSchema = Type.Object({
  paths: Type.Array(Type.String({ maxLength: 4096 }), { minItems: 1, maxItems: MANIFESTS_PER_REQUEST_MAX }),
});

export const ManifestsResultSchema = Type.Object({
  manifests: Type.Array(
    Type.Union([
      Type.Object({ path: Type.String(), ...VersionManifestSchema.properties }),
      Type.Object({ path: Type.String(), code: Type.String(), detail: Type.String() }),
    ]),
    { description: 'one per path, in order: what GET /files/manifest would answer for it, or its error' },
  ),
});
export type ManifestsResult = Static<typeof ManifestsResultSchema>;

export const VersionPatchSchema = Type.Object({
  version: FileVersionSchema,
  manifestDiff: Type.String({
    description: "the manifest as a diff against the base version's (docs/protocol.md), base64",
    contentEncoding: 'base64',
  }),
  deltas: Type.Array(
    Type.Object({
      start: Type.Integer({ minimum: 0, description: 'first manifest entry this delta makes' }),
      count: Type.Integer({ minimum: 1 }),
      baseStart: Type.Integer({ minimum: 0, description: "first entry of the base version's manifest it is applied to" }),
      baseCount: Type.Integer({ minimum: 1 }),
      delta: Type.String({ description: 'binary delta (docs/protocol.md), base64', contentEncoding: 'base64' }),
    }),
  ),
});
export type VersionPatch = Static<typeof VersionPatchSchema>;

export const UploadRequestSchema = Type.Object({
  path: Type.String({ minLength: 1, maxLength: 4096 }),
  size: Type.Integer({ minimum: 0 }),
  mtime: Type.Integer({ minimum: 0 }),
  contentHash: Hash,
  manifest: Type.Optional(Type.String({ description: 'compact manifest (docs/protocol.md), base64', contentEncoding: 'base64' })),
  manifestDiff: Type.Optional(
    Type.String({
      description: 'instead of manifest: the manifest as a diff against the manifest of baseVersionId (docs/protocol.md), base64',
      contentEncoding: 'base64',
    }),
  ),
  baseVersionId: Type.Optional(Type.Union([Id, Type.Null()])),
});
export type UploadRequest = Static<typeof UploadRequestSchema>;

export const UploadStatusSchema = Type.Object({
  uploadId: Type.Union([Id, Type.Null()]),
  state: Type.Union([Type.Literal('pending'), Type.Literal('committed'), Type.Literal('send')], {
    description:
      'pending: an upload is open, PUT its missing chunks and commit; committed: done; send: (asked for with sendWhole) nothing is recorded yet, send the file whole with POST /uploads/files',
  }),
  missing: Type.Array(Hash, { description: 'distinct chunk hashes still to PUT' }),
  missingBytes: Type.Integer({ minimum: 0 }),
  deltaBases: Type.Optional(
    Type.Array(
      Type.Object({
        chunks: Type.Array(Hash, { description: 'missing chunks that may be sent as a delta against this base' }),
        base: Type.Array(Hash, { description: 'the base: these chunks of the base version, back to back' }),
        signature: Type.String({ description: 'the signature of the base (docs/protocol.md), base64', contentEncoding: 'base64' }),
      }),
      { description: 'with a baseVersionId: the replaced bytes to send changed chunks as deltas against' },
    ),
  ),
  file: Type.Optional(FileEntrySchema),
  version: Type.Optional(FileVersionSchema),
  conflictPath: Type.Optional(Type.Union([Type.String(), Type.Null()])),
});
export type UploadStatus = Static<typeof UploadStatusSchema>;

export const UploadBatchRequestSchema = Type.Object({
  uploads: Type.Array(UploadRequestSchema, { minItems: 1, maxItems: UPLOADS_PER_BATCH_MAX }),
  sendWhole: Type.Optional(
    Type.Boolean({
      description: `answer state "send" instead of opening an upload for a new file of at most ${WHOLE_FILE_MAX_BYTES} bytes none of whose chunks you hold`,
    }),
  ),
});
export type UploadBatchRequest = Static<typeof UploadBatchRequestSchema>;

/** One negotiation of a batch that failed on its own, as POST /uploads would have answered it (a problem). */
export const UploadFailureSchema = Type.Object({
  state: Type.Literal('failed'),
  code: Type.String(),
  detail: Type.String(),
  fix: Type.Optional(Type.String()),
});
export type UploadFailure = Static<typeof UploadFailureSchema>;

export const UploadBatchResultSchema = Type.Object({
  results: Type.Array(Type.Union([UploadStatusSchema, UploadFailureSchema]), {
    description: 'one per negotiation, in order: what POST /uploads would have answered for it',
  }),
});
export type UploadBatchResult = Static<typeof UploadBatchResultSchema>;

/** The header of a file sent whole (POST /uploads/files): its negotiation, whose size is the content's length. */
export type WholeFileHeader = UploadRequest;

export const ContentsRequestSchema = Type.Object({
  versions: Type.Array(Id, { minItems: 1, maxItems: WHOLE_FILES_PER_REQUEST_MAX, description: 'file versions, by id' }),
});

/** The header of one version's record in a POST /files/contents answer: the version, or why it is not there (size 0). */
export type ContentRecordHeader =
  { versionId: string; contentHash: string; size: number } | { versionId: string; size: 0; code: string; detail: string };

export const ChunkReceiptSchema = Type.Object({ hash: Hash, stored: Type.Boolean({ description: 'false when it was already stored' }) });
export type ChunkReceipt = Static<typeof ChunkReceiptSchema>;

export const FileListSchema = Type.Object({
  entries: Type.Array(FileEntrySchema),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});
export type FileList = Static<typeof FileListSchema>;

export const TrashEntrySchema = Type.Object({
  id: Id,
  path: Type.String(),
  kind: Type.Union([Type.Literal('file'), Type.Literal('folder')]),
  size: Type.Integer({ minimum: 0 }),
  deletedAt: Type.String({ format: 'date-time' }),
});
export type TrashEntry = Static<typeof TrashEntrySchema>;

export const LoginRequestSchema = Type.Object({
  user: Type.String({ minLength: 1, maxLength: 64 }),
  password: Type.String({ minLength: 1, maxLength: 1024 }),
  deviceName: Type.String({ minLength: 1, maxLength: 128 }),
  deviceId: Type.Optional(Id),
});
export type LoginRequest = Static<typeof LoginRequestSchema>;

export const LoginResponseSchema = Type.Object({
  token: Type.String(),
  expiresAt: Type.String({ format: 'date-time' }),
  user: Type.Object({ id: Id, name: Type.String(), isAdmin: Type.Boolean() }),
  device: Type.Object({ id: Id, name: Type.String() }),
});
export type LoginResponse = Static<typeof LoginResponseSchema>;

export const DeviceSchema = Type.Object({
  id: Id,
  name: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  lastSeenAt: Type.String({ format: 'date-time' }),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  current: Type.Boolean(),
  cursor: Type.Integer({ minimum: 0, description: 'the last change-feed number the device acknowledged' }),
  inSync: Type.Boolean({ description: 'the device has acknowledged the whole feed' }),
});
export type DeviceView = Static<typeof DeviceSchema>;

export const ApiKeySchema = Type.Object({
  id: Id,
  label: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.String({ format: 'date-time' }),
});
export type ApiKeyView = Static<typeof ApiKeySchema>;

/** RFC 9457 problem details, with photovault's stable code and, where the user can act, the fix. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
    fix: Type.Optional(Type.String()),
    instance: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);
export type Problem = Static<typeof ProblemSchema>;

export const ChangeSchema = Type.Object({
  seq: Type.Integer({ minimum: 1 }),
  kind: Type.Union([Type.Literal('upsert'), Type.Literal('delete'), Type.Literal('move'), Type.Literal('processed')], {
    description:
      'upsert: the entry at path now is this version or folder; delete: it (a folder: with its contents) went to the trash; move: the entry at fromPath (a folder: with its contents) is now at path; processed: a processing job finished for the content of the file at path (its thumbnails, metadata or renditions changed, its bytes did not)',
  }),
  path: Type.String(),
  fromPath: Type.Union([Type.String(), Type.Null()]),
  entryKind: Type.Union([Type.Literal('file'), Type.Literal('folder')]),
  versionId: Type.Union([Id, Type.Null()]),
  contentHash: Type.Union([Hash, Type.Null()]),
  size: Type.Integer({ minimum: 0 }),
  mtime: Type.Integer(),
  deviceId: Type.Union([Id, Type.Null()], { description: 'the device that made the change, if any' }),
  at: Type.String({ format: 'date-time' }),
});
export type Change = Static<typeof ChangeSchema>;

export const ChangePageSchema = Type.Object({
  changes: Type.Array(ChangeSchema),
  /** The user's newest sequence number when the page was read. */
  latest: Type.Integer({ minimum: 0 }),
  /** Pass as `since` for the next page; equals the last change's seq, or `since` when none. */
  next: Type.Integer({ minimum: 0 }),
  hasMore: Type.Boolean(),
});
export type ChangePage = Static<typeof ChangePageSchema>;

const Opt = Type.Optional;
const MediaKindSchema = Type.Union([Type.Literal('image'), Type.Literal('video')]);

/** MediaMetadata (src/core/media.ts) on the wire; a field is absent when the file does not say. */
export const MediaMetadataSchema = Type.Object({
  kind: MediaKindSchema,
  takenAt: Opt(
    Type.String({ description: "local wall-clock time, ISO 8601, with the UTC offset when known ('2008-10-22T16:29:49+02:00')" }),
  ),
  utcOffsetMinutes: Opt(Type.Integer()),
  gps: Opt(Type.Object({ latitude: Type.Number(), longitude: Type.Number(), altitude: Opt(Type.Number()) })),
  make: Opt(Type.String()),
  model: Opt(Type.String()),
  lens: Opt(Type.String()),
  width: Opt(Type.Integer({ description: 'as displayed, after orientation or rotation' })),
  height: Opt(Type.Integer()),
  orientation: Opt(Type.Integer({ minimum: 1, maximum: 8 })),
  rotation: Opt(Type.Integer()),
  durationSeconds: Opt(Type.Number()),
  videoCodec: Opt(Type.String()),
  audioCodec: Opt(Type.String()),
});

export const ProcessingJobSchema = Type.Object({
  job: Type.Union([Type.Literal('metadata'), Type.Literal('thumbnails'), Type.Literal('transcode')]),
  state: Type.Union([Type.Literal('pending'), Type.Literal('done'), Type.Literal('failed')]),
  attempts: Type.Integer({ minimum: 0 }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'why a failed job failed' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type ProcessingJob = Static<typeof ProcessingJobSchema>;

/** What the workers derived from a file's content, and where to fetch it. */
export const MediaViewSchema = Type.Object({
  path: Type.String(),
  versionId: Id,
  contentHash: Hash,
  kind: MediaKindSchema,
  metadata: Type.Union([MediaMetadataSchema, Type.Null()], { description: 'null until the metadata job is done' }),
  thumbhash: Type.Union([Type.String(), Type.Null()], { description: 'base64 ThumbHash placeholder' }),
  jobs: Type.Array(ProcessingJobSchema),
  thumbnails: Type.Array(
    Type.Object({
      size: Type.Integer({ description: 'the slot: longest edge 64, 256, 512 or 1920, never upscaled' }),
      width: Type.Integer(),
      height: Type.Integer(),
      bytes: Type.Integer(),
      url: Type.String({ description: 'API path of the WebP' }),
    }),
  ),
  hls: Type.Union(
    [
      Type.Object({
        master: Type.String({ description: 'API path of the master playlist' }),
        renditions: Type.Array(Type.Object({ width: Type.Integer(), height: Type.Integer(), bandwidth: Type.Integer() })),
      }),
      Type.Null(),
    ],
    { description: 'the HLS ladder of a video, once transcoded' },
  ),
});
export type MediaView = Static<typeof MediaViewSchema>;
