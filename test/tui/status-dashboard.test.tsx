import { render } from 'ink-testing-library';
import { describe, expect, it } from 'vitest';
import type { FolderStatus } from '../../src/daemon/control-socket.js';
import { StatusDashboard } from '../../src/tui/status-dashboard.js';

const pictures: FolderStatus = {
  folder: '/home/alice/Pictures',
  remote: 'Pictures',
  connected: true,
  state: 'syncing',
  lastPassAt: '2026-11-23T22:10:05.000Z',
  rates: { up: 2 * 1024 * 1024, down: 512 },
  totals: { uploaded: 12, downloaded: 3, deleted: 1, conflicts: 1, bytesSent: 40 * 1024 * 1024, bytesReceived: 2048 },
  recent: [
    { at: '2026-11-23T22:10:05.000Z', text: '2 uploaded, 1 conflicts' },
    { at: '2026-11-23T22:09:00.000Z', text: 'connected to the server' },
  ],
};

describe('status dashboard', () => {
  it("shows each folder's connection, state, rates, totals and recent events", () => {
    const { lastFrame, unmount } = render(
      <StatusDashboard statuses={[pictures, { ...pictures, folder: '/home/alice/Docs', connected: false, state: 'idle' }]} />,
    );
    const frame = lastFrame() ?? '';
    expect(frame).toContain('/home/alice/Pictures');
    expect(frame).toContain('● connected');
    expect(frame).toContain('syncing');
    expect(frame).toContain('↑ 2.0 MiB/s');
    expect(frame).toContain('conflicts 1');
    expect(frame).toContain('22:10:05 2 uploaded, 1 conflicts');
    expect(frame).toContain('/home/alice/Docs');
    expect(frame).toContain('○ offline');
    unmount();
  });

  it('says how to start a daemon when none runs', () => {
    const { lastFrame, unmount } = render(<StatusDashboard statuses={[]} />);
    expect(lastFrame()).toContain('photovault sync DIR');
    unmount();
  });
});
