import { clientConfigDir } from '../core/config.js';
import { ApiClient } from '../daemon/api-client.js';
import { loadCredentials } from '../daemon/credentials.js';

/** An API client logged in with the saved credentials; closes itself after the work. */
export async function withApi<T>(work: (api: ApiClient) => Promise<T>): Promise<T> {
  const credentials = await loadCredentials(clientConfigDir());
  const api = new ApiClient(credentials.server, credentials.token);
  try {
    return await work(api);
  } finally {
    await api.close();
  }
}
