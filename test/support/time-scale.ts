/**
 * How much longer the same work may take in this run: the cluster run (PHOTOVAULT_TEST_BACKENDS=
 * cluster) stores through s3rver, an S3 server in node that takes milliseconds per request, so
 * its time limits (test timeouts, waits, CLI runs) are three times wider. Limits only: no
 * assertion about what the tests check changes.
 */
export const TIME_SCALE = process.env.PHOTOVAULT_TEST_BACKENDS === 'cluster' ? 3 : 1;
