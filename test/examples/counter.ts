import * as Schema from "effect/Schema"
import { Fsm } from "effect-raft"

// A replicated counter. Commands and responses are Schemas; the state is a plain value.
export const Counter = Fsm.typed({
  command: Schema.Struct({ add: Schema.Number }),
  response: Schema.Number,
  state: Schema.Number, // snapshots: the state's JSON
  initial: 0,
  // Pure: the next state and the response. It runs on every node, in log order.
  apply: (total, { add }) => [total + add, total + add]
})
