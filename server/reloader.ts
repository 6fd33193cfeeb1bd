import path from 'node:path';
import type { Logger } from '../common/log';
import type { ReloadTargetConfig } from './config';
import type { DockerClient, ServiceMount } from './docker-client';
import { forceUpdateService, ReloadError } from './force-update';
import type { ReloadRecordData } from './rollout';

/** One node's answer to a signal reload (see signal-dispatcher.ts). */
export interface NodeSignalOutcome {
  nodeId: string;
  ok: boolean;
  containers: string[];
  error?: string;
}

/** Asks agents to signal a service's containers on their nodes and waits for every answer. */
export interface SignalSender {
  signalNodes(
    nodeIds: readonly string[],
    request: {
      service: string;
      signal: string;
      bundle: string;
      version: number;
      timeoutMs: number;
    },
  ): Promise<NodeSignalOutcome[]>;
}

/** What a reload needs to know about the rollout it belongs to. */
export interface ReloadContext {
  bundle: string;
  version: number;
  /** Nodes whose agents are asked to signal (the rollout's expected set). */
  nodeIds: readonly string[];
  /** The bundle's target paths, relative to the agents' folders. */
  managedTargets: readonly string[];
}

/**
 * Bind mounts whose source is one managed file rather than its folder. The agent replaces a file
 * by renaming a new one over it; a container that bind-mounted the old file keeps seeing the old
 * inode until it is recreated, so a signal reload would reload the old certificate.
 */
export function singleFileMountWarnings(
  service: string,
  mounts: readonly ServiceMount[],
  managedTargets: readonly string[],
): string[] {
  return mounts
    .filter(
      (mount) =>
        mount.type === 'bind' &&
        managedTargets.some(
          (target) =>
            mount.source.endsWith(`/${target}`) ||
            path.basename(mount.source) === path.basename(target),
        ),
    )
    .map(
      (mount) =>
        `service "${service}" bind-mounts the single file ${mount.source} (at ${mount.target}); it will not see the new file after an atomic rename until its containers are recreated — mount the folder instead`,
    );
}

/** Runs one reload target and returns its record; a failure is recorded, never thrown. */
export class Reloader {
  constructor(
    private readonly docker: () => DockerClient,
    private readonly signals: SignalSender,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async run(target: ReloadTargetConfig, context: ReloadContext): Promise<ReloadRecordData> {
    const record: ReloadRecordData = {
      service: target.service,
      action: target.action,
      signal: target.action === 'signal' ? target.signal : '',
      startedAt: this.now(),
      finishedAt: undefined,
      ok: false,
      error: '',
      tasksBefore: [],
      tasksAfter: [],
      signals: [],
      warnings: [],
      proof: undefined,
    };
    const fields = {
      bundle: context.bundle,
      version: context.version,
      service: target.service,
      action: target.action,
    };
    this.log.info(fields, 'Reload started');
    try {
      record.warnings = await this.mountWarnings(target.service, context.managedTargets);
      for (const warning of record.warnings)
        this.log.warn({ ...fields, warning }, 'Reload target mounts a single file');
      if (target.action === 'force-update') await this.forceUpdate(target, record);
      else await this.signal(target, context, record);
    } catch (error) {
      record.ok = false;
      record.error =
        error instanceof ReloadError
          ? error.message
          : `reload of "${target.service}" failed: ${(error as Error).message}`;
      if (error instanceof ReloadError && record.tasksBefore.length === 0)
        record.tasksBefore = error.tasksBefore;
    }
    record.finishedAt = this.now();
    const durationMs = record.finishedAt.getTime() - record.startedAt.getTime();
    if (record.ok)
      this.log.info(
        { ...fields, durationMs, tasksAfter: record.tasksAfter.length },
        'Reload finished',
      );
    else this.log.error({ ...fields, durationMs, error: record.error }, 'Reload failed');
    return record;
  }

  private async forceUpdate(
    target: Extract<ReloadTargetConfig, { action: 'force-update' }>,
    record: ReloadRecordData,
  ) {
    const result = await forceUpdateService(this.docker(), target.service, {
      timeoutMs: target.timeoutMs,
      log: this.log,
    });
    record.tasksBefore = result.tasksBefore;
    record.tasksAfter = result.tasksAfter;
    record.warnings.push(...result.dockerWarnings);
    record.ok = true;
  }

  private async signal(
    target: Extract<ReloadTargetConfig, { action: 'signal' }>,
    context: ReloadContext,
    record: ReloadRecordData,
  ) {
    const outcomes = await this.signals.signalNodes(context.nodeIds, {
      service: target.service,
      signal: target.signal,
      bundle: context.bundle,
      version: context.version,
      timeoutMs: target.timeoutMs,
    });
    record.signals = outcomes.map((outcome) => ({ ...outcome, error: outcome.error ?? '' }));
    const failed = outcomes.filter((outcome) => !outcome.ok);
    record.ok = failed.length === 0;
    if (!record.ok) {
      record.error = `${target.signal} to "${target.service}" failed on ${failed.map((outcome) => `${outcome.nodeId} (${outcome.error ?? 'no reason given'})`).join(', ')}`;
    }
  }

  /** Inspects the service for single-file bind mounts; a service Docker cannot show is a warning here, not a failure. */
  private async mountWarnings(
    service: string,
    managedTargets: readonly string[],
  ): Promise<string[]> {
    try {
      const inspected = await this.docker().inspectService(service);
      return singleFileMountWarnings(service, inspected.mounts, managedTargets);
    } catch (error) {
      return [
        `could not inspect service "${service}" for single-file mounts: ${(error as Error).message}`,
      ];
    }
  }
}
