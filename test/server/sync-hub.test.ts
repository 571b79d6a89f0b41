import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { describeEachDatabase } from '../support/databases.js';
import { createTestServer, type TestServer } from '../support/server.js';
import { uploadBytes } from '../support/uploads.js';

type Message = { type: string; [key: string]: unknown };

/** A sync socket that queues what the server says, to await message by message. */
class SyncClient {
  private readonly inbox: Message[] = [];
  private waiting: (() => void) | undefined;

  constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      this.inbox.push(JSON.parse(data.toString()) as Message);
      this.waiting?.();
    });
  }

  static async connect(url: string, token: string): Promise<SyncClient> {
    const socket = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    const client = new SyncClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return client;
  }

  /** The next message of this type (earlier ones of other types are skipped), within 5 s. */
  async next(type: string, where: (message: Message) => boolean = () => true): Promise<Message> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const index = this.inbox.findIndex((m) => m.type === type && where(m));
      if (index >= 0) return this.inbox.splice(0, index + 1).at(-1)!;
      if (Date.now() > deadline) throw new Error(`no ${type} message; got ${JSON.stringify(this.inbox)}`);
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
        setTimeout(resolve, 100);
      });
    }
  }

  send(message: object): void {
    this.socket.send(JSON.stringify(message));
  }

  async close(): Promise<void> {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    await new Promise((resolve) => {
      this.socket.once('close', resolve);
      this.socket.close();
    });
  }
}

describeEachDatabase('sync WebSocket', (kind) => {
  let server: TestServer;
  let url: string;
  const clients: SyncClient[] = [];

  beforeAll(async () => {
    server = await createTestServer(kind);
    await server.app.listen({ host: '127.0.0.1', port: 0 });
    const address = server.app.server.address() as { port: number };
    url = `ws://127.0.0.1:${address.port}/api/v1/sync`;
  });
  afterAll(async () => {
    for (const client of clients) await client.close();
    await server.close();
  });

  const connect = async (token: string) => {
    const client = await SyncClient.connect(url, token);
    clients.push(client);
    return client;
  };

  it('pushes "changed up to SEQ" to every device of the user when the feed moves on', async () => {
    const laptop = await server.login('alice', { deviceName: 'laptop' });
    const phone = await server.login('alice', { deviceName: 'phone' });
    const onLaptop = await connect(laptop.token);
    const onPhone = await connect(phone.token);
    const hello = await onLaptop.next('hello');
    expect(hello).toMatchObject({ latest: expect.any(Number), cursor: 0 });
    await onPhone.next('hello');

    await uploadBytes(server.app, laptop.auth, 'pushed.txt', Buffer.from('pushed'));
    const latest = (await server.app.inject({ url: '/api/v1/changes?since=0', headers: laptop.auth })).json().latest;
    expect(await onLaptop.next('changed', (m) => m.latest === latest)).toEqual({ type: 'changed', latest });
    expect(await onPhone.next('changed', (m) => m.latest === latest)).toEqual({ type: 'changed', latest });

    await server.app.inject({ method: 'DELETE', url: '/api/v1/files?path=pushed.txt', headers: phone.auth });
    expect(await onLaptop.next('changed', (m) => m.latest === latest + 1)).toMatchObject({ latest: latest + 1 });
  });

  it("takes cursor acks and tells the user's devices who is online and how far each is", async () => {
    const desk = await server.login('bob', { deviceName: 'desk' });
    const tablet = await server.login('bob', { deviceName: 'tablet' });
    await uploadBytes(server.app, desk.auth, 'b1.txt', Buffer.from('b1'));
    const onDesk = await connect(desk.token);
    await onDesk.next('hello');
    const onTablet = await connect(tablet.token);
    const presence = await onDesk.next('presence', (m) => (m.devices as unknown[]).length === 2);
    expect(presence.devices).toEqual(
      expect.arrayContaining([
        { id: desk.principal.deviceId, online: true, cursor: 0 },
        { id: tablet.principal.deviceId, online: true, cursor: 0 },
      ]),
    );

    onTablet.send({ type: 'ack', seq: 1 });
    const acked = await onDesk.next('presence', (m) => (m.devices as { cursor: number }[]).some((d) => d.cursor === 1));
    expect(acked.devices).toContainEqual({ id: tablet.principal.deviceId, online: true, cursor: 1 });

    await onTablet.close();
    const gone = await onDesk.next('presence', (m) => (m.devices as { online: boolean }[]).some((d) => !d.online));
    expect(gone.devices).toContainEqual({ id: tablet.principal.deviceId, online: false, cursor: 1 });
  });

  it("never tells one user about another user's changes", async () => {
    const carol = await server.login('carol');
    const dave = await server.login('dave');
    const onCarol = await connect(carol.token);
    await onCarol.next('hello');
    await uploadBytes(server.app, dave.auth, 'dave.txt', Buffer.from('dave'));
    await uploadBytes(server.app, carol.auth, 'carol.txt', Buffer.from('carol'));
    // Carol's first change after connecting is her own upload's, not Dave's.
    const changed = await onCarol.next('changed');
    const carolsLatest = (await server.app.inject({ url: '/api/v1/changes?since=0', headers: carol.auth })).json().latest;
    expect(changed.latest).toBe(carolsLatest);
  });

  it('refuses a connection without a valid token', async () => {
    for (const headers of [{}, { authorization: 'Bearer pvs_forged' }]) {
      const socket = new WebSocket(url, { headers });
      // Dropping a socket the server refused reports "closed before established": expected here.
      socket.on('error', () => undefined);
      const status = await new Promise<number>((resolve) => {
        socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
        socket.once('open', () => resolve(101));
      });
      socket.terminate();
      expect(status).toBe(401);
    }
  });

  it('answers a message it cannot take with an error and keeps the connection', async () => {
    const erin = await server.login('erin');
    const onErin = await connect(erin.token);
    await onErin.next('hello');
    onErin.send({ type: 'dance' });
    expect(await onErin.next('error')).toMatchObject({ code: 'PV_INVALID_INPUT' });
    onErin.socket.send('not json');
    expect(await onErin.next('error')).toMatchObject({ code: 'PV_INVALID_INPUT' });
    onErin.send({ type: 'ack', seq: 0 });
    expect(await onErin.next('presence')).toMatchObject({ devices: [{ id: erin.principal.deviceId, online: true, cursor: 0 }] });
  });
});
