import type { Kysely } from 'kysely';

// The change feed of DESIGN section 4: every change to a user's namespace, numbered per user.
export async function up(db: Kysely<any>): Promise<void> {
  // The user's last sequence number; incrementing it in the writing transaction serialises
  // appends per user, so numbers have no gaps and commit in order.
  await db.schema
    .alterTable('users')
    .addColumn('change_seq', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();

  await db.schema
    .createTable('changes')
    .addColumn('owner_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('from_path', 'text')
    .addColumn('entry_kind', 'text', (c) => c.notNull())
    .addColumn('file_id', 'text')
    .addColumn('version_id', 'text')
    .addColumn('content_hash', 'text')
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('mtime', 'bigint', (c) => c.notNull())
    .addColumn('device_id', 'text')
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('changes_pk', ['owner_id', 'seq'])
    .execute();

  await db.schema
    .createTable('device_cursors')
    .addColumn('device_id', 'text', (c) => c.primaryKey().references('devices.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('device_cursors').execute();
  await db.schema.dropTable('changes').execute();
  await db.schema.alterTable('users').dropColumn('change_seq').execute();
}
