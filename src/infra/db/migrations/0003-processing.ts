import type { Kysely } from 'kysely';

// The processing workers' jobs (DESIGN section 6). Derived files belong to a content, not to a
// version: every version holding the same bytes shares its thumbnails, metadata and renditions.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('processing_jobs')
    .addColumn('content_hash', 'text', (c) => c.notNull())
    .addColumn('job', 'text', (c) => c.notNull())
    .addColumn('media_kind', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('error', 'text')
    .addColumn('output', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('processing_jobs_pk', ['content_hash', 'job'])
    .execute();
  // A finished job tells the owners of every live file holding that content.
  await db.schema.createIndex('files_content_hash').on('files').column('content_hash').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('files_content_hash').execute();
  await db.schema.dropTable('processing_jobs').execute();
}
