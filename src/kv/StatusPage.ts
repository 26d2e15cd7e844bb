/**
 * The status page a key-value node serves at `/`: the cluster at a glance,
 * refreshed every second by the page itself. It asks this node's
 * `GET /status` for the members, then each member's own `GET /status` (they
 * answer any origin, see `Operator.ts`), and shows per member its role, term,
 * commit and applied index, and the leader's view of it (match index, lag
 * behind the leader's last index, when it last answered, failing exchanges),
 * with the leader changes this node saw. A member that does not answer shows
 * as unreachable. One self-contained HTML document: no script or style is
 * loaded from anywhere else.
 */

/** The page. */
export const html: string = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>effect-raft kv: cluster status</title>
<style>
  :root { color-scheme: light; font-family: system-ui, sans-serif; font-size: 15px; color: #1d232a; }
  body { margin: 1.5rem 2rem; background: #f6f7f9; }
  h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
  h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
  .summary { margin: 0 0 1rem; color: #4a5560; }
  .summary b { color: #1d232a; }
  table { border-collapse: collapse; background: white; box-shadow: 0 1px 2px #0002; }
  th, td { padding: .4rem .8rem; text-align: right; border-bottom: 1px solid #e3e6ea; white-space: nowrap; }
  th { background: #eef1f4; font-weight: 600; }
  th:first-child, td:first-child, td.text { text-align: left; }
  .Leader { color: #0b6b2f; font-weight: 600; }
  .Candidate { color: #9a5b00; font-weight: 600; }
  .unreachable { color: #b3261e; font-weight: 600; }
  .lagging { color: #b3261e; }
  ol { background: white; box-shadow: 0 1px 2px #0002; margin: 0; padding: .5rem 1rem .5rem 2.5rem; max-width: 40rem; }
  li { padding: .15rem 0; }
  .muted { color: #7a848e; }
  #error { color: #b3261e; }
</style>
</head>
<body>
<h1>effect-raft key-value cluster</h1>
<p class="summary">Leader <b id="leader">…</b> · term <b id="term">…</b> · configuration index <b id="configuration">…</b>
  · seen from <b id="self">…</b> · <span class="muted" id="updated">loading</span> <span id="error"></span></p>
<table id="members">
  <thead><tr>
    <th>member</th><th>role</th><th>suffrage</th><th>term</th><th>commit</th><th>applied</th>
    <th>match</th><th>lag</th><th>last contact</th><th>replication</th><th>keys</th><th>http</th>
  </tr></thead>
  <tbody></tbody>
</table>
<h2>Recent leader changes <span class="muted">(seen by this node, newest first)</span></h2>
<ol id="leader-changes"><li class="muted">none yet</li></ol>
<script>
"use strict"
const cell = (text, className) => {
  const td = document.createElement("td")
  td.textContent = text === undefined ? "" : String(text)
  if (className) td.className = className
  return td
}
const ago = (millis) => millis === undefined ? "never" : millis < 1000 ? millis + " ms ago" : (millis / 1000).toFixed(1) + " s ago"
const statusOf = async (http, self) => {
  const url = self ? "/status" : "http://" + http + "/status"
  const response = await fetch(url, { signal: AbortSignal.timeout(1500), cache: "no-store" })
  return response.ok ? response.json() : Promise.reject(new Error(url + ": " + response.status))
}
const render = async () => {
  const own = await statusOf(undefined, true)
  const members = [...own.members].sort((a, b) => a.id.localeCompare(b.id))
  const views = await Promise.all(members.map((member) =>
    member.id === own.id ? Promise.resolve(own) : member.http === undefined ? Promise.resolve(undefined)
      : statusOf(member.http, false).catch(() => undefined)))
  const leader = [own, ...views].find((view) => view !== undefined && view.state === "Leader")
  document.getElementById("leader").textContent = leader ? leader.id : "none known"
  document.getElementById("term").textContent = String(leader ? leader.term : own.term)
  document.getElementById("configuration").textContent = String(own.configurationIndex)
  document.getElementById("self").textContent = own.id
  const body = document.querySelector("#members tbody")
  body.replaceChildren(...members.map((member, i) => {
    const view = views[i]
    const isLeader = leader !== undefined && leader.id === member.id
    const peer = leader ? leader.peers.find((p) => p.id === member.id) : undefined
    const match = isLeader ? leader.lastIndex : peer ? peer.matchIndex : undefined
    const lag = leader && match !== undefined ? leader.lastIndex - match : undefined
    const contact = isLeader ? "leader" : peer ? ago(peer.lastContactMillisAgo)
      : view && view.lastContactMillisAgo !== undefined ? "heard leader " + ago(view.lastContactMillisAgo) : ""
    const row = document.createElement("tr")
    row.dataset.member = member.id
    row.dataset.role = view ? view.state : "unreachable"
    row.append(
      cell(member.id, "text"),
      cell(view ? view.state : "unreachable", "text " + (view ? view.state : "unreachable")),
      cell(member.suffrage, "text"),
      cell(view && view.term),
      cell(view && view.commitIndex),
      cell(view && view.appliedIndex),
      cell(match),
      cell(lag, lag !== undefined && lag > 100 ? "lagging" : ""),
      cell(contact),
      cell(isLeader ? "" : peer ? (peer.failures === 0 ? "ok" : "failing (" + peer.failures + ")") : "", peer && peer.failures > 0 ? "text lagging" : "text"),
      cell(view && view.keys),
      cell(member.http ?? "?", "text muted"))
    return row
  }))
  const list = document.getElementById("leader-changes")
  if (own.leaderChanges.length > 0) {
    const nowMillis = new Date().getTime()
    list.replaceChildren(...own.leaderChanges.map((change) => {
      const item = document.createElement("li")
      item.dataset.term = String(change.term)
      item.dataset.leader = change.leader ?? ""
      item.textContent = "term " + change.term + ": " + (change.leader === undefined ? "no leader" : change.leader + " leads") +
        " (" + ago(Math.max(0, nowMillis - change.atMillis)) + ")"
      return item
    }))
  }
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString()
  document.getElementById("error").textContent = ""
}
const loop = () => render().catch((error) => {
  document.getElementById("error").textContent = "cannot reach this node: " + error.message
}).finally(() => AbortSignal.timeout(1000).addEventListener("abort", loop))
loop()
</script>
</body>
</html>
`
