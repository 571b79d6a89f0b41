/**
 * The protocol's request limits. Their own module, as API_PREFIX has: the client needs them, and
 * importing them from protocol.ts would load its schemas and TypeBox (some 370 modules, most of a
 * CLI command's start-up).
 */

/** Paths one POST /files/manifests may name. */
export const MANIFESTS_PER_REQUEST_MAX = 256;

/** Negotiations one POST /uploads/batch may carry. */
export const UPLOADS_PER_BATCH_MAX = 64;

/** A file of at most this many bytes may travel whole, with others, in one request (POST /uploads/files). */
export const WHOLE_FILE_MAX_BYTES = 8 * 1024 * 1024;
/** Files one POST /uploads/files or POST /files/contents carries at most. */
export const WHOLE_FILES_PER_REQUEST_MAX = 64;
/** Content bytes one POST /uploads/files carries at most: what the server holds in memory for it. */
export const WHOLE_FILES_REQUEST_MAX_BYTES = 32 * 1024 * 1024;

/** Chunks one request may carry back to back (PUT /uploads/{id}/chunks, or with the commit). */
export const CHUNKS_PER_REQUEST_MAX = 64;
