import { runCluster } from "./cluster.ts";
import { measureThroughput } from "./throughput.ts";

let seed = 1;

Deno.bench({
  name: "runCluster(): one seeded 3- or 5-node schedule (3 s of faults + recovery)",
  n: 40,
  warmup: 2,
  fn: async () => {
    await runCluster(seed++);
  },
});

Deno.bench({
  name: "measureThroughput(): 3 voters, 16 clients, 2 virtual s",
  n: 3,
  warmup: 1,
  fn: async () => {
    await measureThroughput({ voters: 3, clients: 16 });
  },
});
