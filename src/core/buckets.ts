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
