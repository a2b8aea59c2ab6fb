// The page: one WebSocket for what happens (/events), small POSTs for what the user does (/api).
"use strict";

const $ = (id) => document.getElementById(id);
const view = { turn: 0, user: "", agent: "", muted: false, open: false };
let noticeTimer = 0;
let timers = []; // what rings, then what is set, soonest first; `ends` on this page's clock
let timersAsked = 0;

function joinWords(text, delta) {
  // transcription arrives in pieces, with or without the spaces between them
  if (text && delta && !/\s$/.test(text) && !/^[\s.,!?;:'’)]/.test(delta)) return text + " " + delta;
  return text + delta;
}

function showState(state) {
  const el = $("state");
  el.textContent = state;
  el.className = "state " + state;
  document.body.dataset.state = state;
}

function showCaptions() {
  $("user").textContent = view.user.trim();
  $("agent").textContent = view.agent.trim();
  const box = $("captions");
  box.scrollTop = box.scrollHeight;
}

function caption(role, text, turn) {
  if (turn !== view.turn) { // a new exchange: the last one is in today's list
    view.turn = turn; view.user = ""; view.agent = "";
  }
  view[role] = joinWords(view[role], text);
  showCaptions();
}

function showLink(connection) {
  const names = { online: "online", offline: "offline", error: "key refused", none: "no session" };
  const el = $("link");
  el.className = "link " + connection.status;
  el.textContent = (names[connection.status] || connection.status) +
    (connection.cause ? " (" + connection.cause + ")" : "");
}

function showConversation(open) {
  view.open = open;
  const button = $("conversation");
  button.textContent = open ? "End" : "Start";
  button.classList.toggle("open", open);
}

function showMuted(muted) {
  view.muted = muted;
  $("mute").setAttribute("aria-pressed", String(muted));
  $("mute").textContent = muted ? "Unmute" : "Mute";
}

function notice(text) {
  $("notice").textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { $("notice").textContent = ""; }, 15000);
}

function addTurn(turn) {
  const item = document.createElement("li");
  const at = document.createElement("span");
  at.className = "at";
  at.textContent = (turn.at || "") + " ";
  const question = document.createElement("div");
  question.className = "q";
  question.textContent = turn.input_transcript || "…";
  const answer = document.createElement("div");
  answer.textContent = (turn.output_transcript || "…") + (turn.interrupted ? " (cut)" : "");
  question.prepend(at);
  item.append(question, answer);
  $("history").prepend(item); // newest first
}

function timeLeft(seconds) {
  const days = Math.floor(seconds / 86400);
  const h = Math.floor(seconds / 3600) % 24, m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  const two = (n) => String(n).padStart(2, "0");
  return (days ? days + "d " : "") + (days || h ? h + ":" + two(m) : m) + ":" + two(s);
}

function showTimers(list) {
  const now = Date.now();
  timers = list.map((timer) => ({ ...timer, ends: now + timer.seconds_left * 1000 }));
  renderTimers();
}

function renderTimers() {
  const now = Date.now();
  const items = timers.map((timer) => {
    const item = document.createElement("li");
    item.className = timer.kind + (timer.ringing ? " ringing" : "");
    const label = document.createElement("span");
    label.textContent = timer.label;
    const left = document.createElement("span");
    left.className = "left";
    if (timer.ringing) left.textContent = "ringing";
    else if (timer.waiting_for_clock) left.textContent = "waiting for the clock";
    else left.textContent = timeLeft(Math.max(0, Math.ceil((timer.ends - now) / 1000)));
    item.append(label, left);
    return item;
  });
  $("timer-list").replaceChildren(...items);
  const ringing = timers.some((timer) => timer.ringing);
  $("stop-ring").hidden = !ringing;
  $("timers").hidden = !timers.length;
  document.body.classList.toggle("ringing", ringing);
}

async function refreshTimers() {
  const asked = ++timersAsked;
  try {
    const response = await fetch("/api/timers", { credentials: "same-origin" });
    if (response.ok && asked === timersAsked) showTimers((await response.json()).timers);
  } catch (error) { /* the stream's next message or reconnect brings them */ }
}

const handlers = {
  snapshot(m) {
    showState(m.state); showMuted(m.muted); showConversation(m.conversation);
    showLink(m.connection);
    view.turn = m.captions.turn; view.user = m.captions.user; view.agent = m.captions.agent;
    showCaptions();
    $("history").replaceChildren();
    m.history.forEach(addTurn);
    handlers.tokens({ today: m.tokens_today });
    $("volume").value = m.volume;
    if (m.errors.length) notice(m.errors[m.errors.length - 1].message);
    showTimers(m.timers);
  },
  state(m) { showState(m.state); showMuted(m.muted); },
  transcript(m) { caption(m.role, m.text, m.turn); },
  turn(m) { addTurn(m); },
  tokens(m) { $("tokens").textContent = m.today.toLocaleString() + " tokens today"; },
  tool_call(m) { notice("⚙ " + m.name + "…"); },
  tool_result(m) { notice("⚙ " + m.name + (m.ok ? " ✓" : " ✗ " + m.result)); },
  connection(m) { showLink(m); },
  conversation(m) { showConversation(m.open); },
  error(m) { notice(m.message); },
  volume(m) { $("volume").value = m.percent; },
  muted(m) { showMuted(m.muted); },
  timer_missed(m) { notice("missed: " + m.timer.label); refreshTimers(); },
};
for (const what of ["set", "ringing", "stopped", "cancelled", "spoken"]) {
  handlers["timer_" + what] = refreshTimers;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/events");
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    const handle = handlers[message.type];
    if (handle) handle(message);
  };
  socket.onclose = () => {
    showLink({ status: "down", cause: "" });
    $("link").textContent = "page not connected";
    setTimeout(connect, 2000);
  };
}

async function command(path, body) {
  try {
    const response = await fetch("/api/" + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const answer = await response.json();
    if (!response.ok) notice(answer.error || response.statusText);
    return response.ok ? answer : null;
  } catch (error) {
    notice("the device did not answer: " + error);
    return null;
  }
}

$("conversation").addEventListener("click", async () => {
  const answer = await command("conversation", { action: view.open ? "stop" : "start" });
  if (answer) showConversation(answer.open);
});
$("mute").addEventListener("click", async () => {
  const answer = await command("mute", { muted: !view.muted });
  if (answer) showMuted(answer.muted);
});
$("volume").addEventListener("change", (event) => {
  command("volume", { percent: Number(event.target.value) });
});
$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  if (await command("text", { text })) $("text").value = "";
});
$("stop-ring").addEventListener("click", async () => {
  if (await command("timers", { action: "stop" })) refreshTimers();
});
setInterval(renderTimers, 1000);
connect();
