// The page: one WebSocket for what happens (/events), small POSTs for what the user does (/api).
"use strict";

const $ = (id) => document.getElementById(id);
const view = { turn: 0, user: "", agent: "", muted: false, open: false };
let noticeTimer = 0;

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
};

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
connect();
