/**
 * A request-counting HTTP proxy on 127.0.0.1 in front of the local S3 server, so
 * that the bench can count the requests any client (aegis, restic) sends.
 *
 * It forwards every request unchanged, Host header included, so that SigV4
 * signatures (which cover the Host the client connected to) still verify at the
 * server. Only hop-by-hop headers are dropped; `Expect: 100-continue` is answered
 * by the proxy itself (the SDKs never sign it).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'expect']);

export interface RequestCounts {
  total: number;
  byMethod: Record<string, number>;
  bytesUp: number;
  bytesDown: number;
}

export class CountingProxy {
  private server?: http.Server;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  private counts: RequestCounts = CountingProxy.zero();

  constructor(private readonly upstream: URL) {}

  private static zero(): RequestCounts {
    return { total: 0, byMethod: {}, bytesUp: 0, bytesDown: 0 };
  }

  /** Start listening on an ephemeral loopback port; resolves to the proxy's base URL. */
  async start(): Promise<string> {
    const server = http.createServer((req, res) => this.forward(req, res));
    server.keepAliveTimeout = 30_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Counts since the last reset, and start counting afresh. */
  take(): RequestCounts {
    const c = this.counts;
    this.counts = CountingProxy.zero();
    return c;
  }

  async stop(): Promise<void> {
    this.agent.destroy();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method ?? 'GET';
    this.counts.total++;
    this.counts.byMethod[method] = (this.counts.byMethod[method] ?? 0) + 1;
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
    const up = http.request(
      {
        host: this.upstream.hostname,
        port: this.upstream.port,
        method,
        path: req.url,
        headers, // Host stays what the client signed
        agent: this.agent,
      },
      (upRes) => {
        const out: http.OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(upRes.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, out);
        upRes.on('data', (d: Buffer) => (this.counts.bytesDown += d.length));
        upRes.pipe(res);
      },
    );
    up.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`bench proxy: ${err.message}`);
    });
    req.on('data', (d: Buffer) => (this.counts.bytesUp += d.length));
    req.pipe(up);
  }
}
