import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { BenchLineage } from '../lineage';
import { summarize } from '../stats';
import { waitForFiles } from '../target-poll';
import { expectedFiles, type PeerResult } from './peer';

/**
 * Ansible's `copy` module to N hosts with `ansible_connection=local`, each with its own `dest`
 * folder. The time is ansible-playbook's wall time started right after the link swap (Ansible
 * has no detection of its own: someone or something has to start it).
 */
export async function runAnsible(
  workDir: string,
  agents: number,
  runs: number,
  forks: number,
): Promise<PeerResult> {
  const lineage = await BenchLineage.create(path.join(workDir, 'letsencrypt'));
  await lineage.prepare(runs);
  const targetDirs = Array.from({ length: agents }, (_, index) =>
    path.join(workDir, 'targets', `node-${index + 1}`),
  );
  await Promise.all(targetDirs.map((dir) => fs.mkdir(dir, { recursive: true })));
  const inventory = path.join(workDir, 'inventory.ini');
  await fs.writeFile(
    inventory,
    [
      '[nodes]',
      ...targetDirs.map((dir, index) => `node${index + 1} ansible_connection=local dest=${dir}`),
      '',
      '[nodes:vars]',
      'ansible_python_interpreter=/usr/bin/python3',
      '',
    ].join('\n'),
  );
  const playbook = path.join(workDir, 'copy.yml');
  const live = lineage.liveDir;
  await fs.writeFile(
    playbook,
    [
      '- hosts: nodes',
      '  gather_facts: false',
      '  tasks:',
      `    - copy: { src: "${live}/fullchain.pem", dest: "{{ dest }}/fullchain.pem", mode: "0644" }`,
      `    - copy: { src: "${live}/privkey.pem", dest: "{{ dest }}/privkey.pem", mode: "0600" }`,
      '',
    ].join('\n'),
  );
  const names = { fullchain: 'fullchain.pem', privkey: 'privkey.pem' };
  const samplesMs: number[] = [];
  for (let index = 0; index < runs; index += 1) {
    const { swappedAtMs } = await lineage.renew();
    await runPlaybook(workDir, inventory, playbook, forks);
    samplesMs.push(
      (await waitForFiles(expectedFiles(targetDirs, lineage, names), 1_000)) - swappedAtMs,
    );
  }
  return {
    peer: `ansible copy (forks=${forks})`,
    agents,
    setup: `ansible-playbook, ${agents} hosts with ansible_connection=local, 2 copy tasks, forks=${forks}`,
    measures: 'last link swap → ansible-playbook done (started at once)',
    time: summarize(samplesMs),
    missed: 0,
    runs,
  };
}

function runPlaybook(
  workDir: string,
  inventory: string,
  playbook: string,
  forks: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('ansible-playbook', ['-i', inventory, '--forks', String(forks), playbook], {
      env: {
        ...process.env,
        ANSIBLE_LOCAL_TEMP: path.join(workDir, 'ansible-tmp'),
        ANSIBLE_REMOTE_TEMP: path.join(workDir, 'ansible-remote-tmp'),
        ANSIBLE_NOCOLOR: '1',
        ANSIBLE_DEPRECATION_WARNINGS: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`ansible-playbook exited ${code}: ${output.slice(-800)}`)),
    );
  });
}
