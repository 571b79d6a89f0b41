import { formatBytes } from './io.js';

/**
 * A one-line progress bar on stderr, drawn only when stderr is a terminal (quiet under cron and
 * in pipes) and at most ten times a second.
 */
export class ProgressBar {
  private readonly enabled = process.stderr.isTTY === true;
  private readonly started = Date.now();
  private lastDraw = 0;

  update(done: number, total: number, label: string): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastDraw < 100 && done < total) return;
    this.lastDraw = now;
    const width = 30;
    const ratio = total === 0 ? 1 : Math.min(done / total, 1);
    const filled = Math.round(ratio * width);
    const rate = done / Math.max((now - this.started) / 1000, 0.001);
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(total)} ${formatBytes(rate)}/s ${label}`;
    process.stderr.write(`\r${line.slice(0, (process.stderr.columns ?? 100) - 1)}\u001b[K`);
  }

  finish(): void {
    if (this.enabled) process.stderr.write('\n');
  }
}
