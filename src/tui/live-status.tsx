import { render, useApp, useInput } from 'ink';
import { useEffect, useState } from 'react';
import { type FolderStatus, readStatuses } from '../daemon/control-socket.js';
import { StatusDashboard } from './status-dashboard.js';

function LiveStatus({ runtimeDir, first }: { runtimeDir: string; first: FolderStatus[] }) {
  const [statuses, setStatuses] = useState(first);
  const { exit } = useApp();
  useInput((input, key) => {
    if (input === 'q' || key.escape) exit();
  });
  useEffect(() => {
    const timer = setInterval(() => {
      readStatuses(runtimeDir).then(setStatuses, (error: unknown) => exit(error as Error));
    }, 1000);
    return () => clearInterval(timer);
  }, [runtimeDir, exit]);
  return <StatusDashboard statuses={statuses} />;
}

/** Shows the dashboard, refreshed every second, until the user quits. */
export async function showLiveStatus(runtimeDir: string): Promise<void> {
  const app = render(<LiveStatus runtimeDir={runtimeDir} first={await readStatuses(runtimeDir)} />);
  await app.waitUntilExit();
}
