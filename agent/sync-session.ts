import type { ClientDuplexStream, StatusObject } from '@grpc/grpc-js';
import type { SyncRequest, SyncResponse } from '../common/contract';

export interface SyncSessionEvents {
  readonly onResponse: (response: SyncResponse) => void;
  /** Called once, when the server (or a cancel) ends the stream. */
  readonly onClosed: (status: StatusObject) => void;
}

/**
 * One open Sync stream. Replies are sent on the session that carried the push they answer: once a
 * stream is gone its session refuses to send, so a report can never land on the next stream ahead
 * of that stream's hello.
 */
export class SyncSession {
  private closed = false;
  private halfClosed = false;

  constructor(
    readonly id: number,
    private readonly call: ClientDuplexStream<SyncRequest, SyncResponse>,
    events: SyncSessionEvents,
  ) {
    call.on('data', (response: SyncResponse) => events.onResponse(response));
    // Every ending emits 'status'; 'error' repeats it for non-OK codes and must have a listener
    // or the stream would throw it.
    call.on('error', () => undefined);
    call.on('status', (status: StatusObject) => {
      if (this.closed) return;
      this.closed = true;
      events.onClosed(status);
    });
  }

  get isOpen(): boolean {
    return !this.closed && !this.halfClosed;
  }

  /** Sends one message; false when the stream is already closed and nothing was sent. */
  send(request: SyncRequest): boolean {
    if (!this.isOpen) {
      return false;
    }
    this.call.write(request);
    return true;
  }

  /** Ends the stream at once; the server sees CANCELLED. */
  cancel(): void {
    this.call.cancel();
  }

  /** Half-closes, gives the server up to graceMs to finish the call, then cancels it. */
  async close(graceMs: number): Promise<void> {
    if (this.closed) return;
    const ended = new Promise<void>((resolve) => this.call.once('status', () => resolve()));
    if (!this.halfClosed) {
      this.halfClosed = true;
      this.call.end();
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([ended, timedOut]);
    clearTimeout(timer);
    if (!this.closed) {
      this.call.cancel();
    }
  }
}
