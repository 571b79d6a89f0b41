/** The buckets of DESIGN section 7. Each may live on its own disk or endpoint. */
export const BUCKETS = ['uploads', 'photos-warm', 'photos-cold', 'thumbnails', 'videos-transcoded'] as const;
export type Bucket = (typeof BUCKETS)[number];

/** The buckets that hold originals, hottest first: the tiering job moves objects down this list as they age. */
export const TIER_BUCKETS = ['uploads', 'photos-warm', 'photos-cold'] as const;
export type TierBucket = (typeof TIER_BUCKETS)[number];

export interface TierPolicy {
  warmAfterDays: number;
  coldAfterDays: number;
}

const DAY_MS = 86_400_000;

/** The tier an object stored for ageMs belongs in. */
export function tierForAge(ageMs: number, policy: TierPolicy): TierBucket {
  if (ageMs >= policy.coldAfterDays * DAY_MS) return 'photos-cold';
  if (ageMs >= policy.warmAfterDays * DAY_MS) return 'photos-warm';
  return 'uploads';
}

/** True when a move from one tier to the other goes colder (objects never move back up). */
export function isColder(to: TierBucket, from: TierBucket): boolean {
  return TIER_BUCKETS.indexOf(to) > TIER_BUCKETS.indexOf(from);
}

/** True when the bucket is one of the tiers (not a bucket of derived files). */
export function isTierBucket(bucket: string): bucket is TierBucket {
  return (TIER_BUCKETS as readonly string[]).includes(bucket);
}
