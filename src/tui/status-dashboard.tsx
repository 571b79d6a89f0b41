import { Box, Text } from 'ink';
import type { FolderStatus } from '../daemon/control-socket.js';

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Bytes for people, e.g. 3.4 MiB. */
function bytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/** One synced folder: connection, state, rates, totals, recent events. */
function FolderPanel({ status }: { status: FolderStatus }) {
  return (
    <Box flexDirection="column" borderStyle="round" paddingX={1} marginBottom={1}>
      <Text>
        <Text bold>{status.folder}</Text>
        <Text dimColor> ⇄ /{status.remote}</Text>
      </Text>
      <Text>
        <Text color={status.connected ? 'green' : 'red'}>{status.connected ? '● connected' : '○ offline'}</Text>
        {'  '}
        <Text color={status.state === 'syncing' ? 'yellow' : 'green'}>{status.state}</Text>
        {'  '}↑ {bytes(status.rates.up)}/s ↓ {bytes(status.rates.down)}/s
        {status.lastPassAt ? <Text dimColor> · last pass {status.lastPassAt.slice(11, 19)}</Text> : null}
      </Text>
      <Text>
        uploaded {status.totals.uploaded} · downloaded {status.totals.downloaded} · deleted {status.totals.deleted} ·{' '}
        <Text color={status.totals.conflicts > 0 ? 'magenta' : undefined}>conflicts {status.totals.conflicts}</Text> · sent{' '}
        {bytes(status.totals.bytesSent)} · received {bytes(status.totals.bytesReceived)}
      </Text>
      {status.recent.slice(0, 5).map((event) => (
        <Text key={event.at + event.text} dimColor>
          {event.at.slice(11, 19)} {event.text}
        </Text>
      ))}
    </Box>
  );
}

/** `photovault status` on a terminal: every running sync daemon's folder. */
export function StatusDashboard({ statuses }: { statuses: FolderStatus[] }) {
  if (statuses.length === 0) {
    return <Text>No sync daemon is running. Start one with `photovault sync DIR`.</Text>;
  }
  return (
    <Box flexDirection="column">
      {statuses.map((status) => (
        <FolderPanel key={status.folder} status={status} />
      ))}
      <Text dimColor>q to quit</Text>
    </Box>
  );
}
