import type { ApiClient } from '../daemon/api-client.js';
import type { Credentials } from '../daemon/credentials.js';

/**
 * An API client logged in with the saved credentials; closes itself after the work. Command
 * modules load their dependencies on use (here and in their actions), so `--help` and every
 * command start without loading the others' libraries.
 */
export async function withApi<T>(work: (api: ApiClient, credentials: Credentials) => Promise<T>): Promise<T> {
  const [{ clientConfigDir }, { loadCredentials }, { ApiClient }] = await Promise.all([
    import('../core/client-config.js'),
    import('../daemon/credentials.js'),
    import('../daemon/api-client.js'),
  ]);
  const credentials = await loadCredentials(clientConfigDir());
  const api = new ApiClient(credentials.server, credentials.token);
  try {
    return await work(api, credentials);
  } finally {
    await api.close();
  }
}
