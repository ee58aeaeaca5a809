// Benchmark of a distributed attack (issue 13 §4): ATTACKERS (default 2,000)
// addresses reported once each at RATE (default 200) per second, each
// blocked for DURATION (default 40) seconds, through the real helper on
// nftables in a network namespace.  Root only.  Prints and records the time
// to block them all and how long blocks outlive their duration.
import { attack } from '../attack-scenario.js';
import { isRoot } from '../support.js';
import { atMost, record } from './results.js';

const ATTACKERS = Number(process.env.ATTACKERS ?? 2000);
const RATE = Number(process.env.RATE ?? 200);
const DURATION = Number(process.env.DURATION ?? 40);

async function main(): Promise<void> {
  if (!isRoot) {
    console.log('attack: skipped, needs root (nftables in a network namespace)');
    return;
  }
  const f = await attack(ATTACKERS, RATE, DURATION);
  const sending = ATTACKERS / RATE;
  console.log(
    `attack: ${ATTACKERS} attackers reported at ${RATE}/s (${sending.toFixed(0)} s of reports), blocks ` +
      `of ${DURATION} s, helper on nftables`,
  );
  console.log(
    `  all blocked after ${f.blockAll.toFixed(1)} s (${f.blocked} blocks); released ${f.released} at ${f.releaseRate.toFixed(0)}/s`,
  );
  console.log(
    `  blocks outlived their duration by ${f.overshootMedian.toFixed(1)} s (median), ` +
      `${f.overshootMax.toFixed(1)} s at most; ${f.leftInFilter} left in the filter`,
  );
  record({
    id: 'attack.blockall',
    name: `attack, ${ATTACKERS} addresses at ${RATE}/s: seconds until all are blocked`,
    value: f.blockAll,
    unit: 's',
    target: atMost(sending + 2),
  });
  record({
    id: 'attack.overshoot',
    name: `attack: longest a ${DURATION} s block outlived its duration`,
    value: f.overshootMax,
    unit: 's',
    target: atMost(3),
  });
}

await main();
