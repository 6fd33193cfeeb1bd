import {
  type ChannelCredentials,
  type ChannelOptions,
  credentials,
  type Metadata,
  type StatusObject,
} from '@grpc/grpc-js';
import {
  type AgentHello,
  AgentServiceClient,
  type BundlePush,
  type SignalRequest,
  type SyncResponse,
} from '../common/contract';
import type { Logger } from '../common/log';
import { attemptAfterDisconnect, backoffDelayMs, type BackoffPolicy } from './backoff';
import { waitForChannelReady } from './channel-ready';
import { SyncSession } from './sync-session';

/** Where the agent's link to certsync-server stands. */
export type ConnectionState = 'connecting' | 'connected' | 'backoff' | 'stopped';

/** The only moves the connection makes; anything else is a bug and is refused. */
const ALLOWED_TRANSITIONS: Readonly<Record<ConnectionState, readonly ConnectionState[]>> = {
  stopped: ['connecting'],
  connecting: ['connected', 'backoff', 'stopped'],
  connected: ['backoff', 'stopped'],
  backoff: ['connecting', 'stopped'],
};

/** What the connection asks of the rest of the agent. */
export interface ConnectionHandlers {
  /** Builds the hello for a fresh stream; called after every (re)connect. */
  createHello(): Promise<AgentHello>;
  /** Receives each push in arrival order, with the session the answer must go back on. */
  onPush(push: BundlePush, session: SyncSession): void;
  /** Receives each signal request, likewise in arrival order relative to pushes. */
  onSignal(request: SignalRequest, session: SyncSession): void;
}

export interface AgentConnectionOptions {
  readonly serverAddress: string;
  readonly handlers: ConnectionHandlers;
  readonly logger: Logger;
  readonly reconnect: BackoffPolicy;
  readonly connectTimeoutMs: number;
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
  /** TLS (and client certificate) credentials; plaintext when absent (tests). */
  readonly credentials?: ChannelCredentials;
  /** Extra channel options, e.g. the server name override for the certificate check. */
  readonly channelOptions?: ChannelOptions;
  /** Metadata for each new Sync stream (the bearer token). */
  readonly metadata?: () => Metadata;
  /** Largest message accepted from the server. */
  readonly maxMessageBytes?: number;
  /** How long stop() waits for the server to finish the call before cancelling it. */
  readonly closeGraceMs?: number;
  readonly random?: () => number;
  readonly now?: () => number;
}

/**
 * Keeps one Sync stream open to certsync-server: connects, says hello, hands pushes on, and when
 * the stream ends for any reason waits a jittered, growing delay and starts over with a fresh
 * hello. Files on disk are never touched here, so they stay in place while the server is away.
 */
export class AgentConnection {
  private readonly options: AgentConnectionOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private state: ConnectionState = 'stopped';
  private started = false;
  private attempt = 0;
  private sessionCount = 0;
  private client: AgentServiceClient | undefined;
  private current: SyncSession | undefined;
  private connectedAtMs: number | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(options: AgentConnectionOptions) {
    this.options = options;
    this.log = options.logger.child({ component: 'connection' });
    this.now = options.now ?? Date.now;
  }

  get connectionState(): ConnectionState {
    return this.state;
  }

  /** The open session once the hello is out; undefined while connecting, in backoff or stopped. */
  get session(): SyncSession | undefined {
    return this.state === 'connected' ? this.current : undefined;
  }

  start(): void {
    if (this.started) {
      throw new Error('AgentConnection.start() called twice');
    }
    this.started = true;
    this.connect();
  }

  /** Half-closes the stream (cancelling it after a grace period) and stops reconnecting. */
  async stop(): Promise<void> {
    if (!this.started || this.state === 'stopped') {
      return;
    }
    clearTimeout(this.reconnectTimer);
    this.transition('stopped');
    const session = this.current;
    this.current = undefined;
    await session?.close(this.options.closeGraceMs ?? 1000);
    this.closeClient();
  }

  private connect(): void {
    if (!this.transition('connecting')) {
      return;
    }
    // A fresh client per attempt: a reused channel would add grpc-js's own reconnect backoff
    // (up to two minutes) on top of ours.
    const client = new AgentServiceClient(
      this.options.serverAddress,
      this.options.credentials ?? credentials.createInsecure(),
      this.channelOptions(),
    );
    this.client = client;
    const deadlineMs = this.now() + this.options.connectTimeoutMs;
    waitForChannelReady(client.getChannel(), deadlineMs).then(
      () => this.openSession(client),
      (error: unknown) => {
        if (this.client !== client || this.state !== 'connecting') return;
        this.closeClient();
        this.scheduleReconnect({ err: error }, 'Server unreachable');
      },
    );
  }

  /** Keepalive pings let a silently dead server (or a dropped NAT entry) end the stream. */
  private channelOptions(): ChannelOptions {
    return {
      ...this.options.channelOptions,
      'grpc.keepalive_time_ms': this.options.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': this.options.keepaliveTimeoutMs,
      'grpc.keepalive_permit_without_calls': 1,
      ...(this.options.maxMessageBytes
        ? { 'grpc.max_receive_message_length': this.options.maxMessageBytes }
        : {}),
    };
  }

  private async openSession(client: AgentServiceClient): Promise<void> {
    if (this.client !== client || this.state !== 'connecting') {
      return;
    }
    const call = this.options.metadata ? client.sync(this.options.metadata()) : client.sync();
    const session: SyncSession = new SyncSession(this.sessionCount + 1, call, {
      onResponse: (response) => this.onResponse(response, session),
      onClosed: (status) => this.onSessionClosed(session, status),
    });
    this.sessionCount = session.id;
    this.current = session;

    let hello: AgentHello;
    try {
      hello = await this.options.handlers.createHello();
    } catch (error) {
      this.log.error({ err: error }, 'Hello not built');
      session.cancel();
      return;
    }
    if (this.current !== session || !session.send({ message: { $case: 'hello', value: hello } })) {
      return;
    }
    this.connectedAtMs = this.now();
    this.transition('connected');
    this.log.info({ sessionId: session.id, files: hello.files.length }, 'Hello sent');
  }

  private onResponse(response: SyncResponse, session: SyncSession): void {
    switch (response.message?.$case) {
      case 'push':
        this.options.handlers.onPush(response.message.value, session);
        return;
      case 'signal':
        this.options.handlers.onSignal(response.message.value, session);
        return;
    }
    this.log.warn({ sessionId: session.id }, 'Unknown server message ignored');
  }

  private onSessionClosed(session: SyncSession, status: StatusObject): void {
    if (this.current !== session) {
      return;
    }
    this.current = undefined;
    this.closeClient();
    if (this.state === 'stopped') {
      return;
    }
    const connectedForMs =
      this.connectedAtMs === undefined ? undefined : this.now() - this.connectedAtMs;
    this.connectedAtMs = undefined;
    this.attempt = attemptAfterDisconnect(this.attempt, connectedForMs, this.options.reconnect);
    const fields = {
      sessionId: session.id,
      code: status.code,
      details: status.details,
      connectedForMs,
    };
    this.scheduleReconnect(fields, 'Stream closed');
  }

  private scheduleReconnect(fields: Record<string, unknown>, message: string): void {
    const delayMs = backoffDelayMs(this.attempt, this.options.reconnect, this.options.random);
    this.attempt += 1;
    if (!this.transition('backoff')) {
      return;
    }
    this.log.warn({ ...fields, attempt: this.attempt, delayMs }, message);
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
  }

  private closeClient(): void {
    this.client?.close();
    this.client = undefined;
  }

  /** The one place the state changes; refuses (and logs) a move the table does not allow. */
  private transition(to: ConnectionState): boolean {
    const from = this.state;
    if (!ALLOWED_TRANSITIONS[from].includes(to)) {
      this.log.error({ from, to }, 'Connection state change refused');
      return false;
    }
    this.state = to;
    this.log.info({ from, to }, 'Connection state changed');
    return true;
  }
}
