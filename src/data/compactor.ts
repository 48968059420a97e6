/**
 * Segment compaction: reclaims the space of packed objects that were
 * overwritten or deleted (ADR 0008).
 *
 * For each segment {@link planCompaction} picks, every record is read in
 * order; a record whose owner's current data is still exactly that record
 * is appended again to the active segment and moved there by a
 * `RelocateData` command, which applies only if the object has not changed
 * meanwhile. Once every record is dead or moved, the file is removed after
 * the reads that may still use it (the {@link Reclaimer}'s epochs).
 *
 * A segment is kept whole when its scan stops short of the records metadata
 * may reference (a damaged header) or when a live record fails its checksum:
 * compaction never turns damage into loss. A crash mid-way leaves records
 * that are either still in the old segment or relocated; the startup sweep
 * removes whatever is no longer referenced.
 *
 * @module
 */
import type { MetaKv } from "../io/mod.ts";
import { keys, type MetaLog, notApplied, type ObjectRecord, sameData } from "../meta/mod.ts";
import type { Reclaimer } from "./reclaim.ts";
import { planCompaction, type SegmentStore } from "./segments.ts";

/** What compaction runs on. */
export interface CompactorDeps {
  segments: SegmentStore;
  kv: MetaKv;
  log: MetaLog;
  reclaimer: Reclaimer;
}

/** What one compaction pass did. */
export interface CompactionReport {
  /** Segments emptied and handed over for removal. */
  compacted: number;
  /** Segments left whole because of damage. */
  kept: number;
  /** What was damaged, one line a segment kept. */
  damage: string[];
  /** Records moved to the active segment. */
  relocated: number;
}

/** The pass running on each segment store: passes never overlap. */
const running = new WeakMap<SegmentStore, Promise<CompactionReport>>();

/**
 * Compacts every segment whose live bytes are under `maxLiveFraction` of its
 * size. A call made while a pass runs on the same store waits for that pass
 * and reports nothing of its own.
 *
 * @throws the disk's or the log's error; segments done before it stay done
 */
export async function compactSegments(
  deps: CompactorDeps,
  maxLiveFraction = 0.5,
): Promise<CompactionReport> {
  const current = running.get(deps.segments);
  if (current) {
    await current.catch(() => {});
    return { compacted: 0, kept: 0, relocated: 0, damage: [] };
  }
  const pass = compactionPass(deps, maxLiveFraction);
  running.set(deps.segments, pass);
  try {
    return await pass;
  } finally {
    running.delete(deps.segments);
  }
}

async function compactionPass(
  deps: CompactorDeps,
  maxLiveFraction: number,
): Promise<CompactionReport> {
  const report: CompactionReport = { compacted: 0, kept: 0, relocated: 0, damage: [] };
  for (const id of planCompaction(deps.segments.stats(), maxLiveFraction)) {
    let damaged: string | null = null;
    const complete = await deps.segments.scan(id, async (rec) => {
      const cur = await deps.kv.get<ObjectRecord>(keys.object(rec.owner.bucket, rec.owner.key));
      const from = cur?.value.data;
      if (
        !from?.segment || from.dataId !== rec.dataId || from.segment.id !== id ||
        from.segment.offsetBytes !== rec.offsetBytes
      ) {
        return;
      }
      if (!rec.intact) {
        damaged ??= `record of data ${rec.dataId} at ${rec.offsetBytes} fails its checksum`;
        return;
      }
      const to = await deps.segments.append(rec.dataId, rec.payload, rec.owner);
      try {
        const result = await deps.log.propose({
          type: "RelocateData",
          bucket: rec.owner.bucket,
          key: rec.owner.key,
          from,
          to,
        });
        deps.reclaimer.retire(result.garbage);
        if (result.garbage.some((g) => sameData(g, from))) report.relocated++;
      } catch (err) {
        // Kept unless the log promises the move is not visible (ADR 0009).
        if (notApplied(err)) deps.reclaimer.retire([to]);
        throw err;
      } finally {
        deps.segments.settle(to);
      }
    });
    if (!complete) damaged ??= "a record header does not decode before the last live record";
    if (damaged !== null) {
      deps.segments.mark(id, "damaged");
      report.damage.push(`segment ${id}: ${damaged}`);
      report.kept++;
      continue;
    }
    deps.segments.mark(id, "retired");
    deps.reclaimer.defer(() => {
      deps.segments.removeSegment(id).catch(() => {
        // left for the startup sweep, which removes unreferenced segments
      });
    });
    report.compacted++;
  }
  return report;
}
