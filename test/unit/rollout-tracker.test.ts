import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import type { ValidatedBundle } from '../../server/bundle-validator';
import { parseServerConfig, type ServerConfig } from '../../server/config';
import type { DockerClient, SwarmService, SwarmTask } from '../../server/docker-client';
import { createExpectedNodes } from '../../server/expected-nodes';
import { Fleet } from '../../server/fleet';
import { Prover } from '../../server/prover';
import { Reloader } from '../../server/reloader';
import { RolloutHistory } from '../../server/rollout-history';
import { RolloutTracker } from '../../server/rollout-tracker';
import { VersionStore, type BundleVersion } from '../../server/version-store';

// The tracker's decisions over real state (version store and history on disk, the real fleet
// record) with a recording Docker client: the real engine is exercised by the e2e suite.

const validated: ValidatedBundle = {
  leaf: {
    subject: 'CN=x',
    issuer: 'CN=ca',
    dnsNames: ['x'],
    serial: '01',
    notBefore: new Date(0),
    notAfter: new Date(4e12),
    fingerprintSha256: 'ab'.repeat(32),
  },
  chain: [],
  keyType: 'ec P-256',
  warnings: [],
};

/** Records every update; each update replaces the service's running tasks with new ones. */
class RecordingDocker implements DockerClient {
  updates: Array<{ at: number; forceUpdate: number }> = [];
  private generation = 0;
  private forceUpdate = 0;

  async listNodes() {
    return [];
  }
  async listServiceTasks(): Promise<SwarmTask[]> {
    return ['a', 'b'].map((slot) => ({
      id: `g${this.generation}-${slot}`,
      nodeId: slot,
      desiredState: 'running',
      state: 'running',
      error: '',
      createdAt: '',
      addresses: [],
    }));
  }
  async inspectService(name: string): Promise<SwarmService> {
    return {
      id: 'svc1',
      name,
      versionIndex: 10 + this.generation,
      forceUpdate: this.forceUpdate,
      mounts: [],
      updateState: 'completed',
      updateMessage: '',
      updateStartedAt: '',
      spec: { Name: name, TaskTemplate: { ForceUpdate: this.forceUpdate } },
    };
  }
  async updateService(
    _id: string,
    _versionIndex: number,
    spec: { TaskTemplate?: { ForceUpdate?: number } },
  ) {
    this.forceUpdate = spec.TaskTemplate?.ForceUpdate ?? 0;
    this.generation += 1;
    this.updates.push({ at: Date.now(), forceUpdate: this.forceUpdate });
    return [];
  }
}

describe('RolloutTracker', () => {
  let stateDir: string;
  let config: ServerConfig;
  let store: VersionStore;
  let fleet: Fleet;
  let docker: RecordingDocker;
  let clock: number;
  let signalled: string[][];
  const recordSignals = (nodeIds: readonly string[]) => {
    signalled.push([...nodeIds]);
    return nodeIds.map((nodeId) => ({ nodeId, ok: true, containers: [`web.${nodeId}`] }));
  };

  let paused: Set<string>;

  const build = async () => {
    const history = await RolloutHistory.open(stateDir, ['web'], createSilentLogger());
    const now = () => new Date(clock);
    const tracker = new RolloutTracker({
      bundles: config.bundles,
      store,
      fleet,
      expectedNodes: createExpectedNodes(config.fleet, {
        fleet,
        docker: () => docker,
        log: createSilentLogger(),
      }),
      reloader: new Reloader(
        () => docker,
        { signalNodes: async (nodeIds) => recordSignals(nodeIds) },
        createSilentLogger(),
        now,
      ),
      prover: new Prover(() => docker, createSilentLogger(), now),
      history,
      convergeTimeoutMs: config.convergeTimeoutMs,
      distribute: () => undefined,
      log: createSilentLogger(),
      isPaused: (bundle) => paused.has(bundle),
      now,
    });
    await tracker.resume();
    return tracker;
  };

  const accept = async (label: string): Promise<BundleVersion> => {
    const content = Buffer.from(label);
    return store.accept(
      {
        bundle: 'web',
        sourceDir: '/live',
        digest: sha256Hex(label),
        validated,
        files: [
          {
            source: 'c.pem',
            target: 'c.pem',
            mode: 0o600,
            sha256: sha256Hex(content),
            size: content.length,
            content,
          },
        ],
      },
      new Date(clock),
    );
  };

  const confirm = (nodeId: string, version: BundleVersion) => {
    const files = version.files.map((file) => ({
      path: file.target,
      sha256: file.sha256,
      size: file.size,
      mode: file.mode,
    }));
    if (!fleet.get(nodeId)?.connected)
      fleet.connect(
        { nodeId, hostname: nodeId, agentVersion: 't', dir: '/d', files: [] },
        'peer',
        [],
        new Date(clock),
      );
    fleet.recordApply(
      nodeId,
      {
        bundle: 'web',
        version: version.version,
        ok: true,
        files,
        error: undefined,
        filesWritten: 1,
      },
      version,
      new Date(clock),
    );
  };

  const settle = async (tracker: RolloutTracker, state: string) => {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      tracker.evaluateAll();
      await new Promise((resolve) => setTimeout(resolve, 30));
      if (tracker.current('web')?.state === state) return;
    }
    assert.fail(
      `rollout did not reach ${state}; it is ${tracker.current('web')?.state} (${tracker.current('web')?.reason})`,
    );
  };

  beforeEach(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-tracker-'));
    clock = Date.parse('2026-12-04T10:00:00Z');
    config = parseServerConfig({
      insecure: true,
      stateDir,
      convergeTimeoutMs: 5000,
      fleet: { mode: 'static', nodes: ['a', 'b'] },
      bundles: [
        {
          name: 'web',
          source: '/live',
          files: [{ source: 'c.pem', target: 'c.pem' }],
          reload: [{ service: 'vault', action: 'force-update', timeoutMs: 5000 }],
        },
      ],
    });
    store = await VersionStore.open(stateDir, ['web'], 10, createSilentLogger());
    fleet = new Fleet();
    docker = new RecordingDocker();
    signalled = [];
    paused = new Set();
  });

  afterEach(async () => {
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  it('streams every step of a rollout to subscribers, in order', async () => {
    const tracker = await build();
    const seen: string[] = [];
    const unsubscribe = tracker.subscribe('web', (event) => {
      if (event.kind === 'started')
        seen.push(
          `started ${event.rollout.version} expecting ${event.rollout.expectedNodes.join(',')}`,
        );
      if (event.kind === 'node-confirmed') seen.push(`confirmed ${event.nodeId}`);
      if (event.kind === 'transition')
        seen.push(`${event.transition.from}->${event.transition.to}`);
      if (event.kind === 'reload') seen.push(`reload ${event.reload.service} ${event.reload.ok}`);
    });
    const version = await accept('v1');
    await tracker.begin(version, 'accepted');
    confirm('a', version);
    confirm('b', version);
    await settle(tracker, 'done');
    // The state changes first; its event follows once the history is saved.
    for (let attempt = 0; attempt < 100 && !seen.includes('reloading->done'); attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    unsubscribe();
    assert.deepEqual(seen.slice(0, 1), ['started 1 expecting a,b']);
    assert.deepEqual(seen.filter((line) => line.startsWith('confirmed')).sort(), [
      'confirmed a',
      'confirmed b',
    ]);
    assert.deepEqual(seen.slice(3), [
      'distributing->converged',
      'converged->reloading',
      'reload vault true',
      'reloading->done',
    ]);
    await tracker.close();
  });

  it('announces a rollout in its first state even when the nodes confirm while its start is saved', async () => {
    const tracker = await build();
    const seen: string[] = [];
    tracker.subscribe('web', (event) => {
      if (event.kind === 'started') seen.push(`started ${event.rollout.state}`);
      if (event.kind === 'transition')
        seen.push(`${event.transition.from}->${event.transition.to}`);
    });
    const version = await accept('v1');
    // The agents already hold the bytes (the hub pushes as the version is accepted): their
    // reports arrive while the tracker is still writing the new rollout to its history.
    const begun = tracker.begin(version, 'accepted');
    confirm('a', version);
    confirm('b', version);
    tracker.evaluateAll();
    await begun;
    await settle(tracker, 'done');
    for (let attempt = 0; attempt < 100 && !seen.includes('reloading->done'); attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(seen, [
      'started distributing',
      'distributing->converged',
      'converged->reloading',
      'reloading->done',
    ]);
    await tracker.close();
  });

  it('a paused bundle neither converges nor reloads, and refuses rollouts; once resumed it goes on', async () => {
    const tracker = await build();
    const version = await accept('v1');
    paused.add('web');
    await tracker.begin(version, 'accepted');
    confirm('a', version);
    confirm('b', version);
    tracker.evaluateAll();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(tracker.current('web')?.state, 'distributing');
    assert.equal(docker.updates.length, 0, 'nothing reloaded while paused');
    await assert.rejects(tracker.rollout('web', 0), /bundle "web" is paused/);
    assert.throws(() => tracker.reload('web', true), /bundle "web" is paused/);
    await assert.rejects(tracker.rollback('web', 0), /bundle "web" is paused|no earlier version/);

    paused.delete('web');
    await settle(tracker, 'done');
    assert.equal(docker.updates.length, 1);
    await tracker.close();
  });

  it('rollback goes to the newest other version whose rollout finished done, or to the one named', async () => {
    const tracker = await build();
    const done = async (label: string) => {
      const version = await accept(label);
      await tracker.begin(version, 'accepted');
      confirm('a', version);
      confirm('b', version);
      await settle(tracker, 'done');
      return version;
    };
    await done('v1');
    await done('v2');
    const third = await accept('v3');
    await tracker.begin(third, 'accepted');
    clock += 5000;
    await settle(tracker, 'stalled');

    const back = await tracker.rollback('web', 0);
    assert.equal(back.version, 2, 'the newest done version other than the current one');
    assert.equal(back.trigger, 'rollback');
    assert.equal(store.current('web')?.version, 2);
    assert.ok(
      store.isWithdrawn('web', third.digest),
      'the rolled-back version is withdrawn from the watcher',
    );
    // Both nodes still hold version 2, so its rollout converges and reloads at once.
    await settle(tracker, 'done');

    await assert.rejects(tracker.rollback('web', 2), /is at version 2 already/);
    await assert.rejects(tracker.rollback('web', 9), /has no version 9/);
    const named = await tracker.rollback('web', 1);
    assert.equal(named.version, 1);
    assert.equal(store.current('web')?.version, 1);
    await tracker.close();
  });

  it('reloads once, and only after the last expected node confirmed', async () => {
    const tracker = await build();
    const version = await accept('v1');
    await tracker.begin(version, 'accepted');
    confirm('a', version);
    tracker.evaluateAll();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(tracker.current('web')?.state, 'distributing');
    assert.equal(docker.updates.length, 0, 'nothing reloaded while b is missing');

    const lastConfirmMs = Date.now();
    confirm('b', version);
    await settle(tracker, 'done');
    assert.equal(docker.updates.length, 1);
    assert.ok(docker.updates[0]!.at >= lastConfirmMs);
    const reload = tracker.current('web')!.reloads[0]!;
    assert.deepEqual(reload.tasksBefore, ['g0-a', 'g0-b']);
    assert.deepEqual(reload.tasksAfter, ['g1-a', 'g1-b']);
    assert.deepEqual(
      tracker.current('web')!.transitions.map((step) => step.to),
      ['converged', 'reloading', 'done'],
    );
    await tracker.close();
  });

  it('stalls naming the missing node, reloads nothing, and goes on when the node catches up', async () => {
    const tracker = await build();
    const version = await accept('v1');
    await tracker.begin(version, 'accepted');
    confirm('a', version);
    clock += 5000;
    await settle(tracker, 'stalled');
    const stalled = tracker.current('web')!;
    assert.match(stalled.reason, /1 of 2 expected nodes did not confirm within 5000 ms: b/);
    assert.match(stalled.reason, /b: agent never connected/);
    assert.equal(docker.updates.length, 0);

    confirm('b', version);
    await settle(tracker, 'done');
    assert.equal(docker.updates.length, 1);
    await tracker.close();
  });

  it('refuses a plain Reload of a stalled rollout and carries out a forced one', async () => {
    const tracker = await build();
    const version = await accept('v1');
    await tracker.begin(version, 'accepted');
    clock += 5000;
    await settle(tracker, 'stalled');
    assert.throws(
      () => tracker.reload('web', false),
      /2 node\(s\) have not confirmed \(a, b\); reload with force/,
    );
    tracker.reload('web', true);
    await settle(tracker, 'done');
    assert.equal(docker.updates.length, 1);
    assert.match(
      tracker.current('web')!.transitions.find((step) => step.to === 'reloading')!.detail,
      /forced with 2 node\(s\) missing/,
    );
    await tracker.close();
  });

  it('does not reload again after a restart; resumes a cut-off round without repeating a finished reload', async () => {
    const first = await build();
    const version = await accept('v1');
    await first.begin(version, 'accepted');
    confirm('a', version);
    confirm('b', version);
    await settle(first, 'done');
    await first.close();

    const second = await build();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(second.current('web')?.state, 'done');
    assert.equal(
      docker.updates.length,
      1,
      'a restarted server reloads nothing it already reloaded',
    );
    await second.close();

    // A history whose last rollout was still reloading when the server died, after the reload
    // of its only target had finished and been recorded: it goes on to done, no second reload.
    const file = path.join(stateDir, 'rollouts', 'web.json');
    const finished = JSON.parse(await fs.readFile(file, 'utf8')) as Array<{
      state: string;
      transitions: Array<{ to: string }>;
      reloads: unknown[];
      reloadInFlight: string;
    }>;
    const cutAfterReload = structuredClone(finished);
    cutAfterReload.at(-1)!.state = 'reloading';
    cutAfterReload.at(-1)!.transitions = cutAfterReload
      .at(-1)!
      .transitions.filter((step) => step.to !== 'done');
    await fs.writeFile(file, JSON.stringify(cutAfterReload));
    const third = await build();
    await settle(third, 'done');
    assert.equal(docker.updates.length, 1, 'a reload recorded as finished is not run again');
    assert.match(third.current('web')!.transitions.at(-1)!.detail, /1 reload target\(s\) finished/);
    await third.close();

    // Cut off during the Docker call: started (reloadInFlight) but no record. Unknown how far it
    // got, so the rollout fails and nothing is reloaded.
    const cutInFlight = structuredClone(cutAfterReload);
    cutInFlight.at(-1)!.reloads = [];
    cutInFlight.at(-1)!.reloadInFlight = 'vault';
    await fs.writeFile(file, JSON.stringify(cutInFlight));
    const fourth = await build();
    await settle(fourth, 'failed');
    assert.match(fourth.current('web')!.reason, /stopped while reloading vault/);
    assert.equal(docker.updates.length, 1);
    await fourth.close();

    // Converged, reload never started: the successor runs it once.
    const cutBeforeReload = structuredClone(cutInFlight);
    cutBeforeReload.at(-1)!.reloadInFlight = '';
    await fs.writeFile(file, JSON.stringify(cutBeforeReload));
    const fifth = await build();
    await settle(fifth, 'done');
    assert.equal(docker.updates.length, 2, 'a reload that never started runs once');
    await fifth.close();
  });

  it('closes a rollout cut off mid-reload when a newer version followed it, reloading nothing for it', async () => {
    const first = await build();
    const v1 = await accept('v1');
    await first.begin(v1, 'accepted');
    confirm('a', v1);
    confirm('b', v1);
    await settle(first, 'done');
    await first.close();
    assert.equal(docker.updates.length, 1);

    // v1 cut off during its reload (started, no record); v2 accepted behind it, waiting.
    const file = path.join(stateDir, 'rollouts', 'web.json');
    const history = JSON.parse(await fs.readFile(file, 'utf8')) as Array<Record<string, unknown>>;
    const cut = history.at(-1)!;
    cut['state'] = 'reloading';
    cut['transitions'] = (cut['transitions'] as Array<{ to: string }>).filter(
      (step) => step.to !== 'done',
    );
    cut['reloads'] = [];
    cut['reloadInFlight'] = 'vault';
    await fs.writeFile(file, JSON.stringify(history));
    const v2 = await accept('v2');

    const second = await build();
    confirm('a', v2);
    confirm('b', v2);
    await settle(second, 'done');
    const [newest, older] = second.list('web');
    assert.equal(newest?.version, 2);
    assert.equal(older?.version, 1);
    assert.equal(older?.state, 'failed');
    assert.match(older?.reason ?? '', /stopped while reloading it and version 2 followed/);
    assert.equal(docker.updates.length, 2, 'v2 reloaded once; v1 not again');
    await second.close();

    // Read back: the outcome is in the history file, not only in memory.
    const third = await build();
    assert.deepEqual(
      third.list('web').map((rollout) => [rollout.version, rollout.state]),
      [
        [2, 'done'],
        [1, 'failed'],
      ],
    );
    await third.close();
  });

  it('starts a signal reload only when every expected agent is connected', async () => {
    config = parseServerConfig({
      insecure: true,
      stateDir,
      convergeTimeoutMs: 5000,
      fleet: { mode: 'static', nodes: ['a', 'b'] },
      bundles: [
        {
          name: 'web',
          source: '/live',
          files: [{ source: 'c.pem', target: 'c.pem' }],
          reload: [{ service: 'web', action: 'signal' }],
        },
      ],
    });
    const tracker = await build();
    const version = await accept('v1');
    await tracker.begin(version, 'accepted');
    confirm('a', version);
    confirm('b', version);
    fleet.disconnect('b', new Date(clock));
    tracker.evaluateAll();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(
      tracker.current('web')?.state,
      'distributing',
      'b confirmed, but its agent is away',
    );
    assert.deepEqual(signalled, []);

    clock += 6000;
    tracker.evaluateAll();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(tracker.current('web')?.state, 'stalled');
    assert.match(
      tracker.current('web')!.reason,
      /needs these agents connected: b \(b: agent disconnected\)/,
    );

    confirm('b', version);
    await settle(tracker, 'done');
    assert.deepEqual(signalled, [['a', 'b']]);
    await tracker.close();
  });

  it('reloads once after a restart a rollout that had converged but not started its reload', async () => {
    const first = await build();
    const version = await accept('v1');
    await first.begin(version, 'accepted');
    await first.close();
    const file = path.join(stateDir, 'rollouts', 'web.json');
    const saved = JSON.parse(await fs.readFile(file, 'utf8')) as Array<{
      state: string;
      confirmedAt: Record<string, string>;
    }>;
    saved.at(-1)!.state = 'converged';
    saved.at(-1)!.confirmedAt = {
      a: new Date(clock).toISOString(),
      b: new Date(clock).toISOString(),
    };
    await fs.writeFile(file, JSON.stringify(saved));
    assert.equal(docker.updates.length, 0);

    const second = await build();
    await settle(second, 'done');
    assert.equal(docker.updates.length, 1);
    await second.close();
    const third = await build();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(third.current('web')?.state, 'done');
    assert.equal(docker.updates.length, 1, 'and not again after the next restart');
    await third.close();
  });

  it('holds after a failed proof: failed, named, and nothing rolled back', async () => {
    config = parseServerConfig({
      insecure: true,
      stateDir,
      convergeTimeoutMs: 5000,
      fleet: { mode: 'static', nodes: ['a', 'b'] },
      bundles: [
        {
          name: 'web',
          source: '/live',
          files: [{ source: 'c.pem', target: 'c.pem' }],
          // Port 1 on loopback: nothing listens, so no replica can prove anything.
          reload: [
            {
              service: 'vault',
              action: 'force-update',
              timeoutMs: 5000,
              verify: { tls: { port: 1, endpoints: ['127.0.0.1:1'] }, timeoutMs: 1000 },
              onFailure: 'hold',
            },
          ],
        },
      ],
    });
    const tracker = await build();
    const v1 = await accept('v1');
    await tracker.begin(v1, 'accepted');
    confirm('a', v1);
    confirm('b', v1);
    await settle(tracker, 'failed');
    const failed = tracker.current('web')!;
    assert.match(
      failed.reason,
      /1 of 1 replica\(s\) failed the proof: 127\.0\.0\.1:1: .*ECONNREFUSED/,
    );
    assert.match(failed.reason, /onFailure is hold: every node keeps version 1/);
    assert.equal(failed.reloads[0]?.proof?.replicas[0]?.ok, false);
    assert.ok(
      (failed.reloads[0]?.proof?.replicas[0]?.attempts ?? 0) >= 2,
      'the replica was retried',
    );
    assert.equal(docker.updates.length, 1, 'reloaded once, not again');
    assert.deepEqual(
      tracker.list('web').map((rollout) => rollout.state),
      ['failed'],
    );
    await tracker.close();

    // The same rollout as a successor finds it when its predecessor died after the reload and
    // before the proof: the proof runs again (and fails the same way), the reload does not.
    const file = path.join(stateDir, 'rollouts', 'web.json');
    const saved = JSON.parse(await fs.readFile(file, 'utf8')) as Array<{
      state: string;
      reason: string;
      transitions: Array<{ to: string }>;
      reloads: Array<{ ok: boolean; error: string; proof?: unknown }>;
    }>;
    const cut = saved.at(-1)!;
    cut.state = 'reloading';
    cut.transitions = cut.transitions.filter((step) => step.to !== 'failed');
    cut.reloads[0]!.ok = true;
    cut.reloads[0]!.error = '';
    delete cut.reloads[0]!.proof;
    await fs.writeFile(file, JSON.stringify(saved));
    const successor = await build();
    await settle(successor, 'failed');
    assert.match(successor.current('web')!.reason, /1 of 1 replica\(s\) failed the proof/);
    assert.ok(successor.current('web')!.reloads[0]?.proof, 'the proof ran on the successor');
    assert.equal(successor.current('web')!.reloads.length, 1);
    assert.equal(docker.updates.length, 1, 'the successor proved without reloading again');
    await successor.close();
  });

  it('a new version supersedes one still waiting for nodes', async () => {
    const tracker = await build();
    const v1 = await accept('v1');
    const first = await tracker.begin(v1, 'accepted');
    const v2 = await accept('v2');
    await tracker.begin(v2, 'accepted');
    assert.equal(first.state, 'superseded');
    assert.match(first.reason, /version 2/);
    confirm('a', v2);
    confirm('b', v2);
    await settle(tracker, 'done');
    assert.equal(docker.updates.length, 1);
    await tracker.close();
  });
});
