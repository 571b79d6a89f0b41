import { type Kysely, sql } from 'kysely';

// Migrations take Kysely<any>: they describe the schema as it was at their time, not as it is now.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('password_hash', 'text', (c) => c.notNull())
    .addColumn('is_admin', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('devices')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_seen_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .execute();
  await db.schema.createIndex('devices_user').on('devices').columns(['user_id']).execute();

  await db.schema
    .createTable('tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('hash', 'text', (c) => c.notNull().unique())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('device_id', 'text', (c) => c.references('devices.id').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('label', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint')
    .addColumn('last_used_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('tokens_user').on('tokens').columns(['user_id', 'kind']).execute();

  await db.schema
    .createTable('objects')
    .addColumn('hash', 'text', (c) => c.primaryKey())
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('bucket', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('object_chunks')
    .addColumn('object_hash', 'text', (c) => c.notNull().references('objects.hash').onDelete('cascade'))
    .addColumn('offset', 'bigint', (c) => c.notNull())
    .addColumn('chunk_hash', 'text', (c) => c.notNull())
    .addColumn('length', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('object_chunks_pk', ['object_hash', 'offset'])
    .execute();
  await db.schema.createIndex('object_chunks_chunk').on('object_chunks').columns(['chunk_hash']).execute();

  await db.schema
    .createTable('files')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('owner_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('dir', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('head_version_id', 'text')
    .addColumn('content_hash', 'text')
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('mtime', 'bigint', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('deleted_at', 'bigint')
    .addColumn('trash_id', 'text')
    .execute();
  // One live entry per name in a folder; trashed entries keep their path beside a new one.
  await db.schema
    .createIndex('files_live_path')
    .on('files')
    .columns(['owner_id', 'dir', 'name'])
    .unique()
    .where(sql.ref('deleted_at'), 'is', null)
    .execute();
  await db.schema.createIndex('files_trash').on('files').columns(['owner_id', 'trash_id']).execute();

  await db.schema
    .createTable('file_versions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('file_id', 'text', (c) => c.notNull().references('files.id').onDelete('cascade'))
    .addColumn('owner_id', 'text', (c) => c.notNull())
    .addColumn('content_hash', 'text', (c) => c.notNull().references('objects.hash'))
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('mtime', 'bigint', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('device_id', 'text')
    .addColumn('base_version_id', 'text')
    .execute();
  await db.schema.createIndex('file_versions_owner_content').on('file_versions').columns(['owner_id', 'content_hash']).execute();
  await db.schema.createIndex('file_versions_file').on('file_versions').columns(['file_id', 'created_at']).execute();

  await db.schema
    .createTable('trash')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('owner_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('deleted_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('trash_owner').on('trash').columns(['owner_id', 'deleted_at']).execute();

  await db.schema
    .createTable('uploads')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('owner_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('device_id', 'text')
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('mtime', 'bigint', (c) => c.notNull())
    .addColumn('content_hash', 'text', (c) => c.notNull())
    .addColumn('manifest', 'text', (c) => c.notNull())
    .addColumn('base_version_id', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
  // One unfinished upload per content and path: identical negotiations racing each other resume
  // the same upload instead of starting two.
  await db.schema.createIndex('uploads_owner_content_path').on('uploads').columns(['owner_id', 'content_hash', 'path']).unique().execute();
  await db.schema.createIndex('uploads_expiry').on('uploads').columns(['expires_at']).execute();

  // One row per place a needed chunk occupies in the file (a chunk may repeat).
  await db.schema
    .createTable('upload_chunks')
    .addColumn('upload_id', 'text', (c) => c.notNull().references('uploads.id').onDelete('cascade'))
    .addColumn('offset', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('length', 'integer', (c) => c.notNull())
    .addColumn('received_at', 'bigint')
    .addPrimaryKeyConstraint('upload_chunks_pk', ['upload_id', 'offset'])
    .execute();
  await db.schema.createIndex('upload_chunks_hash').on('upload_chunks').columns(['upload_id', 'hash']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of [
    'upload_chunks',
    'uploads',
    'trash',
    'file_versions',
    'files',
    'object_chunks',
    'objects',
    'tokens',
    'devices',
    'users',
  ]) {
    await db.schema.dropTable(table).execute();
  }
}
