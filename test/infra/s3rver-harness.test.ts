import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { keepDeletesApart } from '../support/s3rver.js';

/** A stand-in for s3rver's store: putObjectMultipart writes the object through this.putObject, as s3rver's does. */
class FakeStore {
  [method: string]: (...args: unknown[]) => Promise<unknown>;
}

describe("the test s3rver's write/delete exclusion", () => {
  it('lets a write the store makes inside another through, while a delete waits for the outer one', async () => {
    const log: string[] = [];
    let releaseMultipart!: () => void;
    const multipartMayWrite = new Promise<void>((resolve) => (releaseMultipart = resolve));
    const store = new FakeStore();
    store.putObject = async (key) => {
      log.push(`put ${key}`);
    };
    store.putObjectMultipart = async function (this: FakeStore, key) {
      await multipartMayWrite;
      await this.putObject!(key);
      log.push(`completed ${key}`);
    };
    store.deleteObject = async (key) => {
      log.push(`delete ${key}`);
    };
    for (const method of ['copyObject', 'initiateUpload', 'putPart']) store[method] = async () => undefined;
    keepDeletesApart(store);

    const multipart = store.putObjectMultipart!('big');
    await sleep(10);
    const removal = store.deleteObject!('other');
    await sleep(10);
    releaseMultipart();
    const outcome = await Promise.race([Promise.all([multipart, removal]).then(() => 'done'), sleep(2_000).then(() => 'deadlocked')]);
    expect(outcome).toBe('done');
    expect(log).toEqual(['put big', 'completed big', 'delete other']);
  });

  it('stops a write that never settles (its client gone mid-body) from holding deletes back after a while', async () => {
    const store = new FakeStore();
    const log: string[] = [];
    store.putPart = () => new Promise(() => undefined);
    store.putObject = async (key) => {
      log.push(`put ${key}`);
    };
    store.deleteObject = async (key) => {
      log.push(`delete ${key}`);
    };
    for (const method of ['copyObject', 'initiateUpload', 'putObjectMultipart']) store[method] = async () => undefined;
    keepDeletesApart(store);

    void store.putPart!('abandoned');
    await sleep(10);
    const removal = store.deleteObject!('other');
    const later = store.putObject!('later');
    const outcome = await Promise.race([Promise.all([removal, later]).then(() => 'done'), sleep(10_000).then(() => 'stuck')]);
    expect(outcome).toBe('done');
    expect(log).toEqual(['delete other', 'put later']);
  });
});
