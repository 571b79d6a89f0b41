import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import type { UploadMetrics } from '../upload/upload.service.js';

/** The server's Prometheus metrics, in a registry of its own (no process-wide singleton). */
export class ServerMetrics implements UploadMetrics {
  readonly registry = new Registry();
  readonly httpDuration = new Histogram({
    name: 'photovault_http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  private readonly chunkBytes = new Counter({
    name: 'photovault_upload_chunk_bytes_total',
    help: 'Bytes of verified chunks received',
    registers: [this.registry],
  });
  private readonly chunks = new Counter({
    name: 'photovault_upload_chunks_total',
    help: 'Verified chunks received',
    registers: [this.registry],
  });
  private readonly commits = new Counter({
    name: 'photovault_upload_commits_total',
    help: 'File versions committed, by how (whole-file dedup or assembled from chunks)',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  private readonly committedBytes = new Counter({
    name: 'photovault_upload_committed_bytes_total',
    help: 'Bytes of file versions committed, by how',
    labelNames: ['kind'],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'photovault_' });
  }

  chunkReceived(bytes: number): void {
    this.chunks.inc();
    this.chunkBytes.inc(bytes);
  }

  committed(kind: 'whole-file-dedup' | 'assembled', bytes: number): void {
    this.commits.inc({ kind });
    this.committedBytes.inc({ kind }, bytes);
  }
}
