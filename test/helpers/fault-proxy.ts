import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A tiny HTTP proxy on 127.0.0.1 that stands between an S3 client and the real
 * server and misbehaves by rule: S3-style error replies (500, 503 SlowDown, 403),
 * connections reset before the answer or in the middle of the body, and answers
 * that never come (stalls). Requests are forwarded untouched (Host included, so
 * SigV4 signatures stay valid), which makes every fault a real network fault for
 * the client: the SDK's parsing, our error mapping and our retries all run.
 */
export type ProxyAction =
  /** Answer with this status and an S3 XML error body (code defaults by status). */
  | { status: number; code?: string }
  /** Close the connection without any answer. */
  | { reset: 'before' }
  /** Forward the status and headers and `after` bytes of the body (default: half), then cut the connection. */
  | { reset: 'mid-body'; after?: number }
  /** Forward the request and let the server act on it, then cut the connection instead of answering (a lost reply). */
  | { reset: 'after-forward' }
  /** Never answer; the client must give up on its own (its timeout). */
  | { stall: true };

export interface ProxyRule {
  /** HTTP method to match (GET, PUT, HEAD, POST, DELETE); any when absent. */
  method?: string;
  /** Matched against the request path with its query string. */
  path?: RegExp;
  /** Apply to this many matching requests, then let them through (default: every one). */
  times?: number;
  action: ProxyAction;
}

export interface ProxyLogEntry {
  method: string;
  path: string;
  /** The fault injected, if any. */
  fault?: string;
}

const DEFAULT_CODES: Record<number, string> = {
  400: 'BadRequest',
  403: 'AccessDenied',
  404: 'NoSuchKey',
  500: 'InternalError',
  503: 'SlowDown',
};

export class FaultProxy {
  readonly log: ProxyLogEntry[] = [];
  private rules: Array<ProxyRule & { used: number }> = [];
  private readonly sockets = new Set<Socket>();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  private constructor(
    private readonly server: http.Server,
    private readonly target: URL,
    readonly endpoint: string,
  ) {}

  static async start(target: string): Promise<FaultProxy> {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const proxy = new FaultProxy(server, new URL(target), `http://127.0.0.1:${port}`);
    server.on('connection', (socket) => {
      proxy.sockets.add(socket);
      socket.on('close', () => proxy.sockets.delete(socket));
    });
    server.on('request', (req, res) => proxy.handle(req, res));
    return proxy;
  }

  /** Replace the rules (and their use counts). */
  setRules(rules: ProxyRule[]): void {
    this.rules = rules.map((r) => ({ ...r, used: 0 }));
  }

  /** Requests seen so far that match (all when no filter). */
  count(method?: string, path?: RegExp): number {
    return this.log.filter((e) => (!method || e.method === method) && (!path || path.test(e.path))).length;
  }

  /** Faults injected so far. */
  get faults(): number {
    return this.log.filter((e) => e.fault).length;
  }

  private pick(method: string, path: string): ProxyAction | undefined {
    for (const r of this.rules) {
      if (r.method && r.method !== method) continue;
      if (r.path && !r.path.test(path)) continue;
      if (r.times !== undefined && r.used >= r.times) continue;
      r.used++;
      return r.action;
    }
    return undefined;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const action = this.pick(method, path);
    const entry: ProxyLogEntry = { method, path };
    this.log.push(entry);
    if (action && 'status' in action) {
      entry.fault = `${action.status}`;
      const code = action.code ?? DEFAULT_CODES[action.status] ?? 'InternalError';
      const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected by the test proxy</Message><RequestId>proxy</RequestId></Error>`;
      req.resume();
      res.writeHead(action.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }
    if (action && 'reset' in action && action.reset === 'before') {
      entry.fault = 'reset';
      req.socket.destroy();
      return;
    }
    if (action && 'stall' in action) {
      entry.fault = 'stall';
      req.resume(); // swallow the body; never answer
      return;
    }
    const upstream = http.request(
      {
        host: this.target.hostname,
        port: this.target.port,
        method,
        path,
        headers: req.headers,
        agent: this.agent,
      },
      (up) => {
        if (action && 'reset' in action && action.reset === 'after-forward') {
          entry.fault = 'reset-after-forward';
          up.resume();
          up.on('end', () => req.socket.destroy());
          return;
        }
        if (action && 'reset' in action && action.reset === 'mid-body') {
          entry.fault = 'reset-mid-body';
          const declared = Number(up.headers['content-length'] ?? 0);
          const keep = Math.max(0, Math.min(action.after ?? Math.floor(declared / 2), Math.max(0, declared - 1)));
          res.writeHead(up.statusCode ?? 502, up.headers);
          let sent = 0;
          up.on('data', (chunk: Buffer) => {
            if (sent >= keep) return;
            const part = chunk.subarray(0, keep - sent);
            sent += part.length;
            res.write(part);
            if (sent >= keep) {
              up.destroy();
              // Let the bytes leave, then close: the client sees the body end early.
              res.socket?.end();
            }
          });
          up.on('end', () => res.socket?.destroy());
          if (keep === 0) {
            up.destroy();
            res.flushHeaders();
            res.socket?.end();
          }
          return;
        }
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.socket?.destroy());
    req.pipe(upstream);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.agent.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
