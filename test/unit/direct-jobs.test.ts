/**
 * A replica's side of requests handed over directly (src/queue/direct-jobs.ts)
 * and the requester's reading of offers (src/queue/reply-sockets.ts): what
 * is offered to whom, how many slots the worker's waits must leave free, and
 * that a line that is not a well-formed job for this worker is refused while
 * a job that reaches a worker no longer taking jobs is given back.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DirectJobs, jobLine, parseJobLine, type DirectJob } from "../../src/queue/direct-jobs.js";
import { parseOffer, type DirectReceiver, type ReplySockets } from "../../src/queue/reply-sockets.js";

/** Connections to requesters, as far as DirectJobs uses them: the lines written to each. */
class Peers {
  receiver: DirectReceiver | undefined;
  readonly written = new Map<string, string[]>();
  receive(receiver: DirectReceiver): void {
    this.receiver = receiver;
  }
  write(peer: string, line: string): boolean {
    this.written.get(peer)?.push(line);
    return this.written.has(peer);
  }
  /** A connection to `peer` is ready: what DirectJobs says on it first. */
  connect(peer: string): void {
    this.written.set(peer, []);
    const offer = this.receiver?.ready(peer);
    if (offer !== undefined) this.written.get(peer)?.push(offer);
  }
}

function setUp(run: (job: DirectJob) => boolean = () => true) {
  const peers = new Peers();
  const givenBack: string[] = [];
  const direct = new DirectJobs({
    sockets: peers as unknown as ReplySockets,
    deployment: "echo",
    worker: "w1",
    lockMs: 15_000,
    run,
    giveBack: async (job) => givenBack.push(job.id),
  });
  return { peers, direct, givenBack };
}

const line = (id: string, token = `w1:d${id}`): string => jobLine(id, token, 1_700_000_000_000, '{"removeOnComplete":true}', '{"kind":"call","payload":{"a b":"c\\nd"}}').trimEnd();

describe("direct jobs", () => {
  it("offers slots to at most the number of requesters asked, withdraws them, and gives a leaving requester's slots to another", () => {
    const { peers, direct } = setUp();
    peers.connect("a");
    assert.deepEqual(peers.written.get("a"), [], "nothing offered before the worker offers");
    direct.offer(2, 2);
    peers.connect("b");
    peers.connect("c");
    assert.deepEqual(peers.written.get("a"), ["offer echo w1 2 15000\n"]);
    assert.deepEqual(peers.written.get("b"), ["offer echo w1 2 15000\n"]);
    assert.deepEqual(peers.written.get("c"), [], "a third requester gets none");
    assert.equal(direct.held(), 4, "the slots offered are held from the waits");
    peers.receiver?.gone("a");
    assert.deepEqual(peers.written.get("c"), ["offer echo w1 2 15000\n"], "the slots of a requester that left go to one that had none");
    direct.offer(0, 0);
    assert.deepEqual(peers.written.get("b")?.at(-1), "offer echo w1 0 15000\n", "withdrawn");
    assert.deepEqual(peers.written.get("c")?.at(-1), "offer echo w1 0 15000\n");
    assert.equal(direct.held(), 0);
  });

  it("counts a slot in use from the job's arrival to its end", () => {
    const ran: DirectJob[] = [];
    const { peers, direct } = setUp((job) => ran.push(job) > 0);
    direct.offer(2, 4);
    peers.connect("a");
    assert.equal(peers.receiver?.line("a", line("7")), true);
    assert.equal(direct.held(), 1);
    assert.deepEqual(ran[0]?.fields.slice(0, 6), ["name", "request", "data", '{"kind":"call","payload":{"a b":"c\\nd"}}', "opts", '{"removeOnComplete":true}'], "the job as the take would have returned it");
    assert.equal(ran[0]?.token, "w1:d7");
    direct.done("a");
    assert.equal(direct.held(), 2);
  });

  it("refuses a line that is not a job for this worker, and gives back a job the worker no longer takes", async () => {
    const { peers, direct, givenBack } = setUp(() => false);
    direct.offer(1, 1);
    peers.connect("a");
    for (const bad of ["j 1 w1:d1 1700000000000", "j x w1:d1 1 {} {}", line("1", "w2:d1"), line("1", "w1"), "hello", `j 1 w1:d1 1 { "spaced": 1 } {}`]) {
      assert.equal(peers.receiver?.line("a", bad), false, `refused: ${bad}`);
      assert.equal(parseJobLine("a", bad, "w1"), undefined);
    }
    assert.equal(peers.receiver?.line("a", line("9")), true);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(givenBack, ["9"]);
    assert.equal(direct.held(), 1, "its slot is free again");
  });

  it("reads only well-formed offers on the requester's side", () => {
    assert.deepEqual(parseOffer("offer echo w-1 2 15000"), { deployment: "echo", worker: "w-1", slots: 2, lockMs: 15_000 });
    assert.deepEqual(parseOffer("offer echo w-1 0 15000")?.slots, 0);
    for (const bad of ["offer echo w-1 2", "offer echo w-1 65 15000", "offer echo w-1 2 10", "offer ../x w 1 15000", "offer echo w 1 15000 extra", "offer  echo w 1 15000"]) {
      assert.equal(parseOffer(bad), undefined, bad);
    }
  });
});
