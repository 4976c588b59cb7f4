/**
 * Request counts of the bench's local S3 gateway, read from the gateway's own
 * counters (`scripts/s3-server.sh requests`, its admin socket) between steps.
 *
 * An earlier bench counted through an HTTP proxy on loopback; the proxy ran on
 * the same two cores as the client and the gateway and cost about 1 s of CPU
 * per GiB uploaded, inside the timed step. Reading counters costs nothing while
 * a step runs.
 */
export interface RequestCounts {
  total: number;
  /** GET and PUT as the gateway counts them; `other` is HEAD, POST, DELETE and the rest. */
  byMethod: Record<string, number>;
}

interface GatewayCounters {
  req: number;
  get: number;
  put: number;
}

export class GatewayRequestCounter {
  private last: GatewayCounters;

  /** `read` runs `s3-server.sh requests` for the bench's gateway and returns its output. */
  constructor(private readonly read: () => { ok: boolean; output: string }) {
    this.last = this.now();
  }

  private now(): GatewayCounters {
    const r = this.read();
    if (!r.ok) throw new Error(`cannot read the gateway's request counters: ${r.output.split('\n').slice(-2).join(' | ')}`);
    const rgw = (JSON.parse(r.output) as { rgw?: Partial<GatewayCounters> }).rgw;
    if (typeof rgw?.req !== 'number' || typeof rgw.get !== 'number' || typeof rgw.put !== 'number') {
      throw new Error(`the gateway's counters have no rgw.req/get/put: ${r.output.slice(0, 200)}`);
    }
    return { req: rgw.req, get: rgw.get, put: rgw.put };
  }

  /** Requests since the last call (or since construction). */
  take(): RequestCounts {
    const now = this.now();
    const d = { req: now.req - this.last.req, get: now.get - this.last.get, put: now.put - this.last.put };
    this.last = now;
    return { total: d.req, byMethod: { GET: d.get, PUT: d.put, other: d.req - d.get - d.put } };
  }
}
