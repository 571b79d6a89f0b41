import { describe, expect, it } from 'vitest';
import {
  formatTakenAt,
  parseMetadataDate,
  parseSubSeconds,
  parseUtcOffset,
  type WallClockTime,
} from '../../src/workers/metadata/metadata-date.parser.js';

describe('parseMetadataDate', () => {
  it.each<[string, WallClockTime]>([
    ['2008:10:22 16:29:49', { local: '2008-10-22T16:29:49' }],
    ['2008:10:22 16:29:49\0', { local: '2008-10-22T16:29:49' }],
    ['2008-03-15T09:52:01-04:00', { local: '2008-03-15T09:52:01', offsetMinutes: -240 }],
    ['2021-04-11T15:47:53.054+05:30', { local: '2021-04-11T15:47:53', fraction: '054', offsetMinutes: 330 }],
    ['2021-04-11T15:47:53.500Z', { local: '2021-04-11T15:47:53', fraction: '5', offsetMinutes: 0 }],
    ['2008-05-10T20:55+09:00', { local: '2008-05-10T20:55:00', offsetMinutes: 540 }],
    ['2024:02:29 23:59:59', { local: '2024-02-29T23:59:59' }],
  ])('reads %j as the wall-clock it records', (input, expected) => {
    expect(parseMetadataDate(input)).toEqual(expected);
  });

  it.each([
    ['0000:00:00 00:00:00', 'zeros for "not set"'],
    ['    :  :     :  :  ', 'blank fixed-width field'],
    ['', 'empty'],
    ['2008-10-22', 'a date without a time of day'],
    ['2023:02:29 12:00:00', 'not a leap year'],
    ['2008:13:01 12:00:00', 'month 13'],
    ['2008:10:22 24:00:00', 'hour 24'],
    ['2008:10:22 16:29:49+25:00', 'no such offset'],
    ['0099:01:01 12:00:00', 'a two-digit year in disguise'],
  ])('rejects %j (%s)', (input) => {
    expect(parseMetadataDate(input)).toBeUndefined();
  });

  it('rejects values that are not text', () => {
    expect(parseMetadataDate(new Date())).toBeUndefined();
    expect(parseMetadataDate(20081022)).toBeUndefined();
  });
});

describe('parseUtcOffset', () => {
  it.each([
    ['+09:00', 540],
    ['-05:00', -300],
    ['+05:45', 345],
    ['-0330', -210],
    ['+00:00', 0],
    ['+14:00', 840],
  ])('reads %j as %i minutes', (input, minutes) => {
    expect(parseUtcOffset(input)).toBe(minutes);
  });

  it.each(['', '   :  ', '+9:00', '+15:00', '+05:60', 'CET', undefined])('rejects %j', (input) => {
    expect(parseUtcOffset(input)).toBeUndefined();
  });
});

describe('parseSubSeconds', () => {
  it.each([
    ['054', '054'],
    ['50', '5'],
    ['00', undefined],
    [' 12 ', '12'],
    ['1a', undefined],
  ])('reads %j as %j', (input, expected) => {
    expect(parseSubSeconds(input)).toBe(expected);
  });
});

describe('formatTakenAt', () => {
  it.each<[WallClockTime, string]>([
    [{ local: '2008-10-22T16:29:49' }, '2008-10-22T16:29:49'],
    [{ local: '2008-10-22T16:29:49', offsetMinutes: 120 }, '2008-10-22T16:29:49+02:00'],
    [{ local: '2021-04-11T15:47:53', fraction: '054', offsetMinutes: -300 }, '2021-04-11T15:47:53.054-05:00'],
    [{ local: '2021-04-11T15:47:53', offsetMinutes: -570 }, '2021-04-11T15:47:53-09:30'],
    [{ local: '2021-04-11T15:47:53', offsetMinutes: 0 }, '2021-04-11T15:47:53+00:00'],
  ])('writes %j as %j', (time, expected) => {
    expect(formatTakenAt(time)).toBe(expected);
  });
});
