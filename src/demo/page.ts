/**
 * The demo app's one page: a chat whose answers stream over a WebSocket, the
 * provider's picture, and a line saying how the page reached the browser.
 * Inline CSS and script keep the demo a single module with no asset build;
 * the page still makes the browser use the tunnel for HTML, a PNG, JSON
 * polling and a WebSocket.
 */

export interface PageInfo {
  /** the provider's npub */
  provider: string
  /** e.g. `echo (built in)` or `ollama · llama3.2:latest` */
  processor: string
  /** the session price */
  perMinute: number
  /** size of the PNG, for its caption */
  pictureBytes: number
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string)
}

function shortKey(npub: string): string {
  return npub.length > 20 ? `${npub.slice(0, 12)}…${npub.slice(-6)}` : npub
}

const STYLE = `
:root { --bg:#15142b; --card:#1f1d3d; --line:#302d57; --text:#ece9f6; --muted:#a49fc4; --sun:#fcb978; --rose:#c45c78; --ok:#7ad3a0; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--text); font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; }
header { max-width:1040px; margin:0 auto; padding:28px 20px 8px; }
h1 { margin:0; font-size:22px; font-weight:650; letter-spacing:.2px; }
h1 span { color:var(--sun); font-weight:500; }
.tunnel { margin-top:6px; color:var(--muted); font-size:13.5px; }
.tunnel code { color:var(--text); background:var(--card); padding:1px 6px; border-radius:5px; font-size:12.5px; }
.path { margin-top:2px; color:var(--muted); font-size:12.5px; opacity:.85; }
.dot { display:inline-block; width:8px; height:8px; border-radius:50%; background:var(--ok); margin-right:6px; box-shadow:0 0 8px var(--ok); vertical-align:1px; }
main { max-width:1040px; margin:0 auto; padding:12px 20px 32px; display:grid; grid-template-columns:minmax(0,1.35fr) minmax(0,1fr); gap:20px; }
@media (max-width:820px) { main { grid-template-columns:1fr; } }
.card { background:var(--card); border:1px solid var(--line); border-radius:14px; }
.chat { display:flex; flex-direction:column; height:470px; }
#log { flex:1; overflow-y:auto; padding:16px; display:flex; flex-direction:column; gap:10px; }
.msg { max-width:88%; padding:9px 13px; border-radius:12px; white-space:pre-wrap; word-wrap:break-word; }
.msg.you { align-self:flex-end; background:#3a3570; border-bottom-right-radius:4px; }
.msg.bot { align-self:flex-start; background:#272449; border:1px solid var(--line); border-bottom-left-radius:4px; }
.msg.bot[data-state=streaming]::after { content:"▍"; color:var(--sun); animation:blink 1s steps(2) infinite; }
.msg.note { align-self:center; color:var(--muted); font-size:13px; background:none; text-align:center; }
.msg.error { align-self:center; color:#ffb3b3; font-size:13px; }
.meta { display:block; margin-top:4px; color:var(--muted); font-size:11.5px; }
@keyframes blink { to { visibility:hidden; } }
form { display:flex; gap:8px; padding:12px; border-top:1px solid var(--line); }
input { flex:1; background:var(--bg); color:var(--text); border:1px solid var(--line); border-radius:10px; padding:10px 12px; font:inherit; outline:none; }
input:focus { border-color:var(--sun); }
button { background:var(--sun); color:#2a1d12; border:0; border-radius:10px; padding:0 18px; font:inherit; font-weight:600; cursor:pointer; }
button:disabled { opacity:.5; cursor:default; }
figure { margin:0; overflow:hidden; }
figure img { display:block; width:100%; height:auto; }
figcaption { padding:10px 14px; color:var(--muted); font-size:13px; }
.stats { margin-top:16px; padding:14px; font-size:13.5px; color:var(--muted); }
.stats b { color:var(--text); font-variant-numeric:tabular-nums; }
`

/** Runs in the browser: chat over /chat, provider figures from /api/stats. */
const SCRIPT = `
const log = document.getElementById('log')
const form = document.getElementById('ask')
const input = document.getElementById('prompt')
const send = document.getElementById('send')
let ws = null
let current = null
let queued = null

function add(cls, text) {
  const el = document.createElement('div')
  el.className = 'msg ' + cls
  el.textContent = text
  log.appendChild(el)
  log.scrollTop = log.scrollHeight
  return el
}

function connect() {
  ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/chat')
  ws.onopen = () => {
    send.disabled = false
    if (queued) { ws.send(JSON.stringify(queued)); queued = null }
  }
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data)
    if (m.type === 'token' && current) {
      current.firstChild.nodeValue += m.text
      log.scrollTop = log.scrollHeight
    } else if (m.type === 'done' && current) {
      current.dataset.state = 'done'
      const meta = document.createElement('span')
      meta.className = 'meta'
      meta.textContent = m.chunks + ' chunks in ' + (m.ms / 1000).toFixed(1) + ' s, streamed through the tunnel'
      current.appendChild(meta)
      log.scrollTop = log.scrollHeight
      current = null
      send.disabled = false
    } else if (m.type === 'error') {
      if (current) { current.dataset.state = 'error'; current = null }
      add('error', m.message)
      send.disabled = false
    }
  }
  ws.onclose = () => {
    ws = null
    if (current) { current.dataset.state = 'error'; current = null }
    send.disabled = false
  }
}

form.addEventListener('submit', (e) => {
  e.preventDefault()
  const text = input.value.trim()
  if (!text || current) return
  input.value = ''
  add('you', text)
  current = add('bot', '')
  current.appendChild(document.createTextNode(''))
  current.dataset.state = 'streaming'
  send.disabled = true
  const msg = { type: 'ask', text }
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg))
  else { queued = msg; if (!ws) connect() }
})

async function stats() {
  try {
    const r = await fetch('/api/stats', { cache: 'no-store' })
    if (!r.ok) throw new Error(String(r.status))
    const s = await r.json()
    document.getElementById('paid').textContent = s.paid
    document.getElementById('redeemed').textContent = s.redeemed
    document.getElementById('sessions').textContent = s.sessions
  } catch {
    document.getElementById('live').textContent = 'The tunnel is closed: the paid session has ended.'
    return
  }
  setTimeout(stats, 2000)
}

document.getElementById('here').textContent = location.host
connect()
stats()
input.focus()
`

export function renderPage(info: PageInfo): string {
  const kb = (info.pictureBytes / 1024).toFixed(1)
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dvm-agent demo</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>dvm-agent <span>demo</span></h1>
  <div class="tunnel" id="tunnel"><span class="dot"></span>Served through a paid P2P tunnel from provider <code title="${escapeHtml(info.provider)}">${escapeHtml(shortKey(info.provider))}</code>, ${info.perMinute} sats a minute, paid one 1&#8209;sat Cashu proof per tick.</div>
  <div class="path">your browser → local proxy on <span id="here">localhost</span> → encrypted Hyperswarm stream → provider's gateway → this app</div>
</header>
<main>
  <section class="card chat">
    <div id="log"><div class="msg note">Ask anything. The answer streams back as it is generated, over a WebSocket, from the provider's processor: <b>${escapeHtml(info.processor)}</b>.</div></div>
    <form id="ask" autocomplete="off">
      <input id="prompt" name="prompt" placeholder="Type a message…" maxlength="4000">
      <button id="send" type="submit" disabled>Send</button>
    </form>
  </section>
  <aside>
    <figure class="card">
      <img src="/picture.png" width="480" height="270" alt="A dusk landscape drawn by the provider's app">
      <figcaption>A PNG drawn by the provider's app (${kb} kB), fetched through the same tunnel.</figcaption>
    </figure>
    <div class="card stats" id="live">The provider has taken <b id="paid">…</b> sats in ticks over <b id="sessions">…</b> session(s) and redeemed <b id="redeemed">…</b> at its mint. Every request on this page was paid for.</div>
  </aside>
</main>
<script>
${SCRIPT}
</script>
</body>
</html>
`
}
