// The fleet's figures in the daemon's Prometheus registry (issue 17): read
// from the link's status at each scrape, nothing counted twice.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { FleetStatus } from './fleet.js';

/** Counters of the status, by metric name. */
const COUNTERS: [string, keyof FleetStatus, string][] = [
  ['blocklistd_fleet_published_total', 'published', "Publishes and deletes of this host's blocks the NATS server acknowledged"],
  ['blocklistd_fleet_applied_total', 'applied', 'Blocks of other hosts applied'],
  ['blocklistd_fleet_released_total', 'released', 'Blocks of other hosts released (deleted by their origin, ended)'],
  ['blocklistd_fleet_rejected_total', 'rejected', 'Values from the bucket refused: malformed, hostile, of an origin not trusted'],
  ['blocklistd_fleet_allow_listed_total', 'allowListed', 'Blocks of other hosts not applied: a local allow-list rule covers them'],
];
const GAUGES: [string, (s: FleetStatus) => number, string][] = [
  ['blocklistd_fleet_connected', (s) => (s.connected ? 1 : 0), 'Whether the link to the NATS server is up: 1, else 0'],
  ['blocklistd_fleet_pending', (s) => s.pending, 'Publishes and deletes waiting for the NATS server'],
  ['blocklistd_fleet_blocks', (s) => s.blocks, 'Blocks learned from other hosts in force'],
];

export function registerFleetMetrics(registry: Registry, status: () => FleetStatus): void {
  const registers = [registry];
  for (const [name, field, help] of COUNTERS) {
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(status()[field] as number);
      },
    });
  }
  for (const [name, value, help] of GAUGES) {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value(status()));
      },
    });
  }
}
