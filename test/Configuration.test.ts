import { assert, describe, it } from "@effect/vitest"
import * as Configuration from "../src/Configuration.js"

const server = (id: string, suffrage: Configuration.Suffrage = "Voter", address = `mem://${id}`): Configuration.Server => ({
  id,
  address,
  suffrage
})

describe("Configuration", () => {
  it("encode then decode returns the same configuration", () => {
    const configuration: Configuration.Configuration = {
      servers: [server("a"), server("b", "Nonvoter"), server("c", "Voter", "10.0.0.3:8300")]
    }
    assert.deepStrictEqual(Configuration.decode(Configuration.encode(configuration)), configuration)
    assert.deepStrictEqual(Configuration.decode(Configuration.encode(Configuration.empty)), Configuration.empty)
  })

  it("decode of garbage is undefined", () => {
    const text = (s: string) => new TextEncoder().encode(s)
    assert.isUndefined(Configuration.decode(new Uint8Array([0xff, 0x00, 0x13])))
    assert.isUndefined(Configuration.decode(new Uint8Array(0)))
    assert.isUndefined(Configuration.decode(text("not json")))
    assert.isUndefined(Configuration.decode(text("{\"servers\":[{\"id\":\"a\"}]}")))
    assert.isUndefined(Configuration.decode(text("{\"servers\":[{\"id\":\"a\",\"address\":\"x\",\"suffrage\":\"King\"}]}")))
    assert.isUndefined(Configuration.decode(text("{\"servers\":[{\"id\":\"\",\"address\":\"x\",\"suffrage\":\"Voter\"}]}")))
  })

  it("quorumSize is a majority of the voters, for 1..7 voters with non-voters present", () => {
    const expected = [1, 2, 2, 3, 3, 4, 4]
    for (let n = 1; n <= 7; n++) {
      const servers = [
        ...Array.from({ length: n }, (_, i) => server(`v${i}`)),
        server("n1", "Nonvoter"),
        server("n2", "Nonvoter"),
        server("n3", "Nonvoter")
      ]
      assert.strictEqual(Configuration.quorumSize({ servers }), expected[n - 1], `${n} voters`)
    }
  })

  it("voters builds voters; votersOf, isVoter and find see suffrage", () => {
    const configuration: Configuration.Configuration = {
      servers: [...Configuration.voters([["a", "mem://a"], ["b", "mem://b"]]).servers, server("l", "Nonvoter")]
    }
    assert.deepStrictEqual(Configuration.votersOf(configuration).map((s) => s.id), ["a", "b"])
    assert.isTrue(Configuration.isVoter(configuration, "a"))
    assert.isFalse(Configuration.isVoter(configuration, "l"))
    assert.isFalse(Configuration.isVoter(configuration, "z"))
    assert.deepStrictEqual(Configuration.find(configuration, "l"), server("l", "Nonvoter"))
    assert.isUndefined(Configuration.find(configuration, "z"))
  })

  describe("check", () => {
    it("accepts a configuration with unique ids and addresses and a voter", () => {
      assert.isUndefined(Configuration.check({ servers: [server("a"), server("b", "Nonvoter")] }))
    })

    it("catches duplicate ids", () => {
      const problem = Configuration.check({ servers: [server("a"), server("a", "Voter", "mem://other")] })
      assert.isString(problem)
      assert.include(problem, "duplicate server id")
    })

    it("catches duplicate addresses", () => {
      const problem = Configuration.check({ servers: [server("a", "Voter", "x:1"), server("b", "Nonvoter", "x:1")] })
      assert.isString(problem)
      assert.include(problem, "duplicate server address")
    })

    it("catches a configuration with no voters, including the empty one", () => {
      assert.include(Configuration.check({ servers: [server("a", "Nonvoter")] }) ?? "", "no voter")
      assert.include(Configuration.check(Configuration.empty) ?? "", "no voter")
    })

    it("catches an empty id", () => {
      assert.include(Configuration.check({ servers: [server("", "Voter", "x:1")] }) ?? "", "empty id")
    })
  })
})
