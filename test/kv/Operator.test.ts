import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import parsePrometheus from "parse-prometheus-text-format"
import { makeCluster, request } from "./cluster.js"

describe("kv operator endpoints", () => {
  it.live("GET /metrics answers Prometheus text a parser reads: Raft's counters and microsecond histograms per node", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      const leader = yield* cluster.leader
      const scraped = yield* Effect.promise(async () => {
        for (let i = 0; i < 5; i++) await request(leader.http, "PUT", `/kv/k${i}`, { value: "v" }, "follow")
        // The last-contact gauge is sampled at the leader's lease checks: scrape until one has happened (5 s at most).
        for (let attempt = 0;; attempt++) {
          const response = await fetch(`http://${leader.http}/metrics`)
          const text = await response.text()
          if (attempt === 50 || text.includes("raft_leader_last_contact_millis")) {
            return { status: response.status, type: response.headers.get("content-type"), text }
          }
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
      })
      yield* cluster.close
      assert.strictEqual(scraped.status, 200)
      assert.match(scraped.type ?? "", /^text\/plain; version=0\.0\.4/)
      const families = parsePrometheus(scraped.text)
      const family = (name: string) => {
        const found = families.find((f) => f.name === name)
        assert.isDefined(found, `${name} in:\n${scraped.text.slice(0, 2000)}`)
        return found!
      }
      const applies = family("raft_apply_total")
      assert.strictEqual(applies.type, "COUNTER")
      const mine = applies.metrics.find((m) => m.labels?.node === leader.id)
      assert.isAtLeast(Number(mine?.value), 5)
      const rpc = family("raft_replication_append_entries_rpc_micros")
      assert.strictEqual(rpc.type, "HISTOGRAM")
      assert.includeMembers(Object.keys(rpc.metrics[0]?.buckets ?? {}), ["10", "50", "500", "1000", "+Inf"])
      // The parser keeps no labels of histogram series: they are read from the lines, one series per follower.
      const series = scraped.text.split("\n").filter((line) =>
        line.startsWith(`raft_replication_append_entries_rpc_micros_count{node="${leader.id}",peer="`)
      )
      assert.strictEqual(series.length, 2, scraped.text)
      for (const line of series) assert.isAbove(Number(line.split(" ")[1]), 0, line)
      assert.strictEqual(family("raft_commit_num_logs").type, "HISTOGRAM")
      assert.strictEqual(family("raft_leader_last_contact_millis").type, "GAUGE")
    }))

  it.live("GET /docs is the API's OpenAPI in Swagger UI, /docs/openapi.json the document; unknown routes answer a JSON 404; GET /status answers any origin", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(1)
      const node = cluster.nodes[0]!
      const result = yield* Effect.promise(async () => {
        const docs = await fetch(`http://${node.http}/docs`)
        const spec = await request(node.http, "GET", "/docs/openapi.json")
        const missing = await request(node.http, "GET", "/no/such/thing?x=1")
        const wrongMethod = await request(node.http, "PATCH", "/status")
        const status = await fetch(`http://${node.http}/status`)
        const kv = await fetch(`http://${node.http}/kv?stale=true`)
        return {
          docs: { status: docs.status, text: await docs.text() },
          spec,
          missing,
          wrongMethod,
          origins: { status: status.headers.get("access-control-allow-origin"), kv: kv.headers.get("access-control-allow-origin") }
        }
      })
      yield* cluster.close
      assert.strictEqual(result.docs.status, 200)
      assert.include(result.docs.text, "SwaggerUIBundle")
      assert.notInclude(result.docs.text, "<script src=\"http", "Swagger UI is served whole, nothing from elsewhere")
      assert.strictEqual(result.spec.status, 200)
      assert.match(result.spec.body.openapi, /^3\./)
      assert.includeMembers(Object.keys(result.spec.body.paths), ["/kv/{key}", "/status", "/cluster/join"])
      assert.strictEqual(result.missing.status, 404)
      assert.deepStrictEqual(result.missing.body, { _tag: "RouteNotFound", method: "GET", path: "/no/such/thing" })
      assert.strictEqual(result.wrongMethod.status, 404)
      assert.strictEqual(result.wrongMethod.body._tag, "RouteNotFound")
      assert.deepStrictEqual(result.origins, { status: "*", kv: null }, "only GET /status answers any origin")
    }))
})
