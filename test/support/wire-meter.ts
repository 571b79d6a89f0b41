import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a server that counts every byte crossing it, both ways: what a client
 * costs on the wire, HTTP headers, WebSocket frames and all.
 */
export class WireMeter {
  private counted = 0;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    /** The URL clients use instead of the server's. */
    readonly url: string,
  ) {}

  static async start(target: string): Promise<WireMeter> {
    const { hostname, port } = new URL(target);
    let meter: WireMeter | undefined;
    const server = createServer((client) => {
      const upstream = connect(Number(port), hostname);
      for (const socket of [client, upstream]) {
        meter!.sockets.add(socket);
        socket.on('data', (bytes: Buffer) => (meter!.counted += bytes.length));
        socket.on('close', () => meter!.sockets.delete(socket));
        socket.on('error', () => [client, upstream].forEach((s) => s.destroy()));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    meter = new WireMeter(server, `http://127.0.0.1:${(server.address() as { port: number }).port}`);
    return meter;
  }

  /**
   * Bytes both ways since the last reset. Each byte is counted once, on the socket it arrived
   * on: the client's leg for requests, the server's leg for answers.
   */
  get bytes(): number {
    return this.counted;
  }

  reset(): void {
    this.counted = 0;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
