import { type Kysely, sql } from 'kysely';

// Storage tiering (DESIGN section 7) and the leases that keep one tiering run at a time.
export async function up(db: Kysely<any>): Promise<void> {
  // Set while a tiering move is under way: the other bucket it involves, which may hold a copy that
  // is not the recorded one (the target before the switch, the source after it). Purges leave such
  // rows to the mover; the next run finishes the moves a crash left.
  await db.schema.alterTable('objects').addColumn('extra_copy_bucket', 'text').execute();
  // The tiering job's scan: objects of one bucket older than a cutoff, oldest first.
  await db.schema.createIndex('objects_tier_age').on('objects').columns(['bucket', 'created_at', 'hash']).execute();
  await db.schema
    .createIndex('objects_extra_copy')
    .on('objects')
    .column('extra_copy_bucket')
    .where(sql.ref('extra_copy_bucket'), 'is not', null)
    .execute();

  await db.schema
    .createTable('leases')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('holder', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('leases').execute();
  await db.schema.dropIndex('objects_extra_copy').execute();
  await db.schema.dropIndex('objects_tier_age').execute();
  await db.schema.alterTable('objects').dropColumn('extra_copy_bucket').execute();
}
