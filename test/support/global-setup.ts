import type { TestProject } from 'vitest/node';
import { startS3rver } from './s3rver.js';

/**
 * Once per run: in the cluster run (PHOTOVAULT_TEST_BACKENDS=cluster) the S3 server every test
 * shares, an s3rver in this process, or PHOTOVAULT_TEST_S3_ENDPOINT's when given (S3RVER's
 * credentials). The S3 adapter's own suites start s3rvers of their own in both runs.
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | void> {
  if (process.env.PHOTOVAULT_TEST_BACKENDS !== 'cluster') {
    project.provide('s3Endpoint', '');
    return;
  }
  const given = process.env.PHOTOVAULT_TEST_S3_ENDPOINT;
  if (given) {
    project.provide('s3Endpoint', given);
    return;
  }
  const s3 = await startS3rver();
  project.provide('s3Endpoint', s3.endpoint);
  return () => s3.close();
}
