/**
 * The throttle as the daemon runs it, on the main thread: every period it
 * samples the sensor, feeds the load to the controller and sets the shared
 * bucket's rate; the workers' ThrottledDevices feel the change at their next
 * piece. `status()` is what `vdbak status` and the API show; `onChange` is
 * called when the mode changes or the rate moves by a noticeable step, for
 * the log (pino), so the log says why without a line per sample.
 *
 * Wiring (one loop per datastore, for the daemon's life or one backup job):
 * - main: `const t = new ThrottleLoop({ paths: [datastore], limits, onChange }).start()`;
 *   each ReadTask carries `throttle: t.bucket.buffer`.
 * - worker: one `BucketSlot` per worker; `slot.use(task.throttle)` at the start
 *   of each task; disks opened as `throttleDisk(openDisk(...), slot)` (the
 *   bottom of the stack, so every layer above is throttled).
 * - restore: `const release = t.bucket.hold()` for the restore's duration
 *   (backups wait, the restore reads unthrottled), `release()` in a finally.
 * - the main thread's own reads (the metadata walk) may go through the same
 *   bucket: they never sleep there, they only put the bucket in debt.
 * - `t.stop()` at the end closes the bucket: readers still waiting go free.
 */
import { type BucketOptions, type BucketStats, TokenBucket } from './bucket.js';
import { type ControllerState, ThrottleController, type ThrottleLimits } from './controller.js';
import { type BlockDeviceId, deriveLoad, IoSensor, type Load, type Sample } from './sensors.js';

/** How often the law runs: the issue asks for a back-off within one second. */
export const DEFAULT_PERIOD_MS = 500;
/** A rate change smaller than this share of the old rate is not logged. */
const LOG_STEP = 0.25;

/** What the loop needs from a sensor (IoSensor, or a simulation in tests). */
export interface LoadSensor {
  sample(): Sample;
}

export interface ThrottleStatus extends ControllerState {
  devices: string[];
  notes: string[];
  bucket: BucketStats;
  updatedAt: number;
}

export interface ThrottleLoopOptions {
  /** Folders whose devices are watched (the datastores); ignored when `sensor` is given. */
  paths?: string[];
  sensor?: LoadSensor;
  limits?: Partial<ThrottleLimits>;
  periodMs?: number;
  bucket?: BucketOptions;
  /** Wall clock (epoch ms) for the quiet windows. */
  now?: () => number;
  /** Local minute of the day of an epoch time (tests use UTC). */
  minuteOfDay?: (epochMs: number) => number;
  onChange?: (s: ThrottleStatus) => void;
}

export class ThrottleLoop {
  readonly bucket: TokenBucket;
  readonly controller: ThrottleController;
  private readonly sensor: LoadSensor;
  private readonly devices: BlockDeviceId[] = [];
  private readonly notes: string[] = [];
  private readonly periodMs: number;
  private readonly now: () => number;
  private prev: Sample | undefined;
  private timer: NodeJS.Timeout | undefined;
  private updatedAt = 0;
  private logged: { mode: string; rate: number } | undefined;

  constructor(private readonly opts: ThrottleLoopOptions = {}) {
    this.controller = new ThrottleController(opts.limits ?? {}, opts.minuteOfDay);
    if (opts.sensor) {
      this.sensor = opts.sensor;
    } else {
      const s = new IoSensor(opts.paths ?? []);
      this.devices.push(...s.devices);
      this.notes.push(...s.notes);
      this.sensor = s;
    }
    this.periodMs = opts.periodMs ?? DEFAULT_PERIOD_MS;
    this.now = opts.now ?? Date.now;
    this.bucket = TokenBucket.create(this.controller.state.rate, opts.bucket);
  }

  /** Starts sampling (the timer does not keep the process alive). */
  start(): this {
    if (this.timer) return this;
    this.prev = this.sensor.sample();
    this.timer = setInterval(() => this.tick(), this.periodMs);
    this.timer.unref();
    return this;
  }

  /** One round of the loop: sample, decide, set the rate. Public so tests can drive it without timers. */
  tick(): ControllerState {
    const cur = this.sensor.sample();
    const load: Load = this.prev ? deriveLoad(this.prev, cur) : { dtMs: 0 };
    this.prev = cur;
    const state = this.controller.step(load, this.now());
    this.bucket.setRate(state.rate);
    this.updatedAt = this.now();
    const last = this.logged;
    if (!last || last.mode !== state.mode || Math.abs(state.rate - last.rate) > last.rate * LOG_STEP) {
      this.logged = { mode: state.mode, rate: state.rate };
      this.opts.onChange?.(this.status());
    }
    return state;
  }

  status(): ThrottleStatus {
    return {
      ...this.controller.state,
      devices: this.devices.map((d) => `${d.name} (${d.major}:${d.minor})`),
      notes: [...this.notes],
      bucket: this.bucket.stats(),
      updatedAt: this.updatedAt,
    };
  }

  /** Stops sampling and releases every reader (the job is over). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.bucket.close();
  }
}
