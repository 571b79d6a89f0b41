import { PvError } from '../core/errors.js';

/**
 * A file that no retry will ever process (corrupt, truncated, not media, undecodable format):
 * the job ends as failed with this reason instead of being retried.
 */
export class UnprocessableMediaError extends PvError {
  constructor(reason: string, details: { fix?: string; [key: string]: unknown } = {}) {
    super('PV_MEDIA_UNPROCESSABLE', reason, details);
    this.name = 'UnprocessableMediaError';
  }
}
