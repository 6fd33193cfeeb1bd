/** Measures the e2e's phases (engine start, image build, …) for the test's diagnostics. */
export class PhaseTimer {
  private readonly phases: Array<{ name: string; ms: number }> = [];
  private readonly startedAt = Date.now();

  /** Runs `work` and records how long it took under `name` (also when it throws). */
  async time<T>(name: string, work: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      return await work();
    } finally {
      this.phases.push({ name, ms: Date.now() - started });
    }
  }

  /** One line per phase in the order they finished, then the time since the timer was made. */
  lines(): string[] {
    const width = Math.max(...this.phases.map((phase) => phase.name.length), 5);
    const format = (name: string, ms: number) =>
      `${name.padEnd(width)}  ${(ms / 1000).toFixed(1).padStart(6)} s`;
    return [
      ...this.phases.map((phase) => format(phase.name, phase.ms)),
      format('total', Date.now() - this.startedAt),
    ];
  }
}
