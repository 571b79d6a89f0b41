import { describe, expect, it } from 'vitest';
import { tierForAge } from '../../src/core/buckets.js';

const DAY = 86_400_000;
const policy = { warmAfterDays: 30, coldAfterDays: 180 };

describe('tierForAge', () => {
  it.each([
    [0, 'uploads'],
    [30 * DAY - 1, 'uploads'],
    [30 * DAY, 'photos-warm'],
    [180 * DAY - 1, 'photos-warm'],
    [180 * DAY, 'photos-cold'],
    [3650 * DAY, 'photos-cold'],
    [-DAY, 'uploads'],
  ])('an object %i ms old belongs in %s', (age, tier) => {
    expect(tierForAge(age, policy)).toBe(tier);
  });
});
