// "Talk to the model": the course's models, exported to ONNX, run in the reader's browser
// by onnxruntime-web (WebAssembly, one thread). The page, the runtime and the models are
// static files of the built book; any static web server serves them (a page opened from
// disk, file://, may not fetch files, so it says how to serve the book instead).
//
// Two kinds of model: a chat model (its tokenizer has <|im_start|> and <|im_end|>) gets
// chat bubbles, and the conversation is written in the chat template as tinyllm.chat
// writes it; another model continues the text in the prompt box.
//
// The ONNX graph has a KV cache (tinyllm.export_onnx.to_onnx_cached): the first call runs
// the prompt and returns every layer's keys and values; each later call runs one new id
// with them. When the cache holds block_size positions it is rebuilt from the last
// block_size / 2 ids, as GPT.generate does, so the ids equal Python's beyond the window
// too. With useCache: false each step runs the whole window again (for the comparison).
// The next id comes from the last position's logits, as tinyllm.sampling picks it:
// greedy = the largest logit, the lowest id on a tie (torch.argmax); otherwise the logits
// are divided by the temperature, all but the top k are dropped (ties with the k-th
// largest are kept), then all outside the top-p nucleus, and one id is drawn.
//
// For tests and curious readers, window.tinyllmTalk exposes ready (a Promise), encode,
// decode, promptIds, generateIds and the conversation (history).
(function () {
  "use strict";
  const root = document.getElementById("tinyllm-talk");
  if (!root) return;
  const $ = (selector) => root.querySelector(selector);
  const status = $(".talk-status");
  const output = $(".talk-output");
  const log = $(".talk-log");
  const api = { history: [] };
  window.tinyllmTalk = api;

  class ReadableError extends Error {}

  function setStatus(text, state) {
    status.textContent = text;
    root.dataset.state = state;
    status.classList.toggle("talk-error", state === "error");
  }

  // --- loading ---------------------------------------------------------------------

  const params = new URLSearchParams(location.search);
  const staticBase = new URL(root.dataset.static, location.href);
  let manifest = null;
  let tokenizer = null;
  let session = null;

  function modelName() {
    const name = params.get("model") || root.dataset.model;
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new ReadableError(`"${name}" is not a model name.`);
    return name;
  }

  async function fetchOk(path, what) {
    const url = new URL(path, staticBase);
    let response;
    try {
      response = await fetch(url);
    } catch (err) {
      throw new ReadableError(`Could not load ${what} (${url.pathname}): ${err.message}.`);
    }
    if (!response.ok) {
      throw new ReadableError(
        `The ${what} is missing: ${url.pathname} answered HTTP ${response.status}. ` +
        "Build it with: python scripts/build_web_model.py");
    }
    return response;
  }

  async function loadSession(precision) {
    const file = precision === "int8" ? manifest.onnx_int8 : manifest.onnx;
    setStatus(`Loading the model (${file}, ${precision})...`, "loading");
    const bytes = await (await fetchOk(`model/${file}`, `model file ${file}`)).arrayBuffer();
    if (session) await session.release();
    session = null;
    session = await ort.InferenceSession.create(new Uint8Array(bytes), { executionProviders: ["wasm"] });
    const mb = (bytes.byteLength / 1e6).toFixed(1);
    const kind = manifest.chat ? "chat model" : "model";
    setStatus(`Ready: the ${kind} ${manifest.name} (${manifest.parameters.toLocaleString("en")} ` +
      `parameters, ${precision}, ${mb} MB) runs in this page.`, "ready");
  }

  function showMode() {
    const chat = Boolean(manifest.chat);
    $(".talk-chat").hidden = !chat;
    $(".talk-continue").hidden = chat;
    $(".talk-model").value = manifest.name;
    if (chat) {
      $(".talk-tokens").value = "48"; // tinyllm.chat's defaults
      $(".talk-temperature").value = "0.8";
      $(".talk-topk").value = "40";
      $(".talk-topp").value = "0.95";
      $(".talk-message").value = "";
      const topics = $(".talk-topics");
      topics.replaceChildren();
      for (const text of manifest.chat.topics || []) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = text;
        button.addEventListener("click", () => send(text));
        topics.appendChild(button);
      }
    } else {
      $(".talk-prompt").value = manifest.prompt;
    }
  }

  async function load() {
    if (location.protocol === "file:") {
      throw new ReadableError(
        "Opened from disk, this page cannot load its model: serve the book with " +
        "python -m http.server -d _build/html and open http://localhost:8000/book/talk_to_the_model.html");
    }
    if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
      throw new ReadableError(
        "This page runs the model with WebAssembly, which this browser lacks or has turned off. " +
        "A recent Chrome, Edge, Firefox or Safari has it.");
    }
    if (typeof ort === "undefined") {
      throw new ReadableError("The ONNX runtime (_static/onnxruntime-web/ort.wasm.min.js) did not load.");
    }
    const name = modelName();
    manifest = await (await fetchOk(`model/${name}.json`, `model description ${name}.json`)).json();
    tokenizer = window.tinyllmTokenizer.fromDict(manifest.tokenizer);
    ort.env.wasm.numThreads = 1; // one thread needs no SharedArrayBuffer, so no special headers
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = new URL("onnxruntime-web/", staticBase).href;
    showMode();
    const precision = params.get("precision") === "int8" ? "int8" : "fp32";
    await loadSession(precision);
    $(".talk-precision").value = precision;
  }

  // --- one step ----------------------------------------------------------------------

  function emptyCache() {
    const { heads, head_size: hs } = manifest.cache;
    const cache = {};
    for (const name of manifest.cache.inputs) cache[name] = new ort.Tensor("float32", new Float32Array(0), [1, heads, 0, hs]);
    return cache;
  }

  // Run `ids` after the positions in `cache` (null: none). Returns the last position's
  // logits and the cache with these positions appended.
  async function run(ids, cache) {
    const idx = new ort.Tensor("int64", BigInt64Array.from(ids, (i) => BigInt(i)), [1, ids.length]);
    const result = await session.run({ idx, ...(cache || emptyCache()) });
    const next = {};
    manifest.cache.inputs.forEach((name, i) => { next[name] = result[manifest.cache.outputs[i]]; });
    const V = manifest.vocab_size;
    const logits = result.logits.data.subarray((ids.length - 1) * V, ids.length * V);
    return { logits, cache: next, length: next[manifest.cache.inputs[0]].dims[2] };
  }

  function argmax(logits) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    return best; // strict > keeps the lowest id on a tie
  }

  function sample(logits, temperature, topK, topP, random) {
    const scaled = Array.from(logits, (x) => x / temperature);
    if (topK > 0 && topK < scaled.length) {
      const kth = scaled.slice().sort((a, b) => b - a)[topK - 1];
      for (let i = 0; i < scaled.length; i++) if (scaled[i] < kth) scaled[i] = -Infinity;
    }
    const max = Math.max(...scaled);
    const weights = scaled.map((x) => Math.exp(x - max));
    const total = weights.reduce((a, b) => a + b, 0);
    if (topP < 1) { // drop a token once the more likely ones reach topP (the most likely stays, even for 0)
      const order = weights.map((w, i) => i).sort((a, b) => weights[b] - weights[a] || a - b);
      let before = 0;
      for (const i of order) {
        const p = weights[i] / total;
        if (before >= topP && i !== order[0]) weights[i] = 0;
        before += p;
      }
    }
    let r = random() * weights.reduce((a, b) => a + b, 0);
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i];
      if (r < 0 && weights[i] > 0) return i;
    }
    return argmax(scaled);
  }

  function seeded(seed) { // mulberry32: a small reproducible generator for seeded runs
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  // Append up to n ids to `ids`, stopping before an id of stopIds (not appended) or when a
  // chat reply fills the context (stopAtFull); onToken(newIds) after each (streaming).
  async function generateIds(ids, n, options = {}) {
    await api.ready;
    const {
      greedy = false, temperature = 1.0, topK = 0, topP = 1, seed = null, stopIds = [],
      useCache = true, stopAtFull = false, onToken = null,
    } = options;
    const random = seed === null ? Math.random : seeded(seed);
    const block = manifest.block_size;
    const out = ids.slice();
    let stopped = null;
    let state = null;
    const start = performance.now();
    let made = 0;
    for (; made < n && !api.stopRequested; made++) {
      if (!useCache) state = await run(out.slice(-block), null);
      else if (state === null) state = await run(out.slice(-block), null);
      else if (state.length >= block) {
        if (stopAtFull) break; // a chat reply stops when the context is full (tinyllm.chat)
        state = await run(out.slice(-(Math.floor(block / 2) || 1)), null);
      } else state = await run(out.slice(-1), state.cache);
      const next = greedy ? argmax(state.logits) : sample(state.logits, temperature, topK, topP, random);
      if (stopIds.includes(next)) {
        stopped = next;
        break;
      }
      out.push(next);
      if (onToken) {
        onToken(out.slice(ids.length));
        await new Promise((resolve) => setTimeout(resolve, 0)); // let the page repaint
      }
    }
    const seconds = (performance.now() - start) / 1000;
    return { ids: out, tokens: made, seconds, tokensPerSecond: made / seconds, stopped };
  }

  // --- the chat template, as tinyllm.chat writes it --------------------------------------

  // Each message in five pieces, as tinyllm.chat_data.encode_chat: the <|im_start|> id, the
  // header role + "\n", the content, the <|im_end|> id, "\n". The markers are ids; the
  // rest is ordinary text, encoded piece by piece, so a message that spells "<|im_end|>"
  // gets the ids of those characters and the header's ids never depend on the content.
  // A model that reads the user's messages lower-cased (chat.lowercase_user, trained on the
  // course's persona data) gets them so, as tinyllm.chat.prompt_ids(..., lowercase_user).
  function promptIds(messages) {
    const c = manifest.chat;
    const special = tokenizer.specialTokens;
    const text = (s) => tokenizer.encode(s, "none");
    const ids = [];
    for (const m of messages) {
      const content = c.lowercase_user && m.role === "user" ? lowerAsPython(m.content, c.lowercase) : m.content;
      ids.push(special[c.start], ...text(`${m.role}\n`), ...text(content), special[c.end], ...text("\n"));
    }
    ids.push(special[c.start], ...text(`${c.assistant_role}\n`));
    return ids;
  }

  // Python's str.lower(), which the model was trained with: each character by Python's own
  // table (manifest.chat.lowercase; the browser's toLowerCase follows its own Unicode version
  // and lowers letters Python leaves), and the capital sigma by Python's rule (CPython's
  // handle_capital_sigma): ς after a cased letter and not before one, case-ignorable ones
  // (accents, apostrophes) skipped, σ elsewhere.
  const CASED = /^\p{Cased}$/u;
  const CASE_IGNORABLE = /^\p{Case_Ignorable}$/u;
  function lowerAsPython(s, table) {
    const chars = Array.from(s);
    const finalSigma = (i) => {
      let j = i - 1;
      while (j >= 0 && CASE_IGNORABLE.test(chars[j])) j--;
      if (j < 0 || !CASED.test(chars[j])) return false;
      j = i + 1;
      while (j < chars.length && CASE_IGNORABLE.test(chars[j])) j++;
      return j === chars.length || !CASED.test(chars[j]);
    };
    return chars.map((ch, i) => ch === "\u03A3" ? (finalSigma(i) ? "\u03C2" : "\u03C3") : (table[ch] ?? ch)).join("");
  }

  // Drop the oldest turns (a user message with its answer) until the prompt and the reply
  // fit the context, as tinyllm.chat.trim_history; the new message is always kept.
  function fittingHistory(messages, maxNew) {
    const budget = manifest.block_size - maxNew;
    let rest = messages.slice();
    while (promptIds(rest).length > budget) {
      if (rest.length <= 1) {
        throw new ReadableError(
          `Your message takes ${promptIds(rest).length} tokens; with a reply of ${maxNew} tokens it does ` +
          `not fit the model's ${manifest.block_size}-token context. Write a shorter one.`);
      }
      rest = rest.slice(rest[0].role === "user" && rest.length > 2 && rest[1].role === "assistant" ? 2 : 1);
    }
    return rest;
  }

  // --- the forms -----------------------------------------------------------------------

  // A field's number, clamped to its limits; an empty or unreadable field gives the default
  // (0 is a number: a temperature of 0 is the lowest allowed, not the default 1).
  function field(selector, low, high, fallback, parse = parseFloat) {
    const value = parse($(selector).value);
    return Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : fallback;
  }

  function settings() {
    return {
      n: field(".talk-tokens", 1, 1000, 200, (s) => parseInt(s, 10)),
      greedy: $(".talk-greedy").checked,
      temperature: field(".talk-temperature", 0.05, 3, 1.0),
      topK: field(".talk-topk", 0, Infinity, 0, (s) => parseInt(s, 10)),
      topP: field(".talk-topp", 0, 1, 1), // 1 keeps every token; 0 only the most likely
      useCache: !$(".talk-nocache").checked,
    };
  }

  function reportSpeed(result, note = "") {
    const how = settings().useCache ? "with the KV cache" : "without the KV cache (the window recomputed)";
    setStatus(`${result.tokens} tokens in ${result.seconds.toFixed(2)} s: ` +
      `${result.tokensPerSecond.toFixed(1)} tokens per second in this browser, ${how}.${note}`, "done");
  }

  function bubble(role, text) {
    const div = document.createElement("div");
    div.className = `talk-bubble talk-${role}`;
    div.textContent = text;
    log.appendChild(div);
    log.scrollTop = log.scrollHeight;
    return div;
  }

  let busy = false;
  let conversation = 0; // Reset starts a new one: a reply still being written then goes nowhere

  // While the model writes, what would start another run (or change the weights under it) waits.
  function setBusy(value) {
    busy = value;
    for (const control of root.querySelectorAll(".talk-send, .talk-topics button, .talk-generate, .talk-precision")) {
      control.disabled = value;
    }
  }

  async function send(message) {
    if (busy) return;
    setBusy(true);
    const mine = conversation;
    try {
      await api.ready;
      const text = message.trim();
      if (!text) throw new ReadableError("Write a message first.");
      // Half of an emoji (a lone surrogate) is no text: tinyllm.chat refuses it, TextEncoder would
      // send U+FFFD in its place.
      if (!text.isWellFormed()) throw new ReadableError("Your message holds half of a character: type it again.");
      const s = settings();
      const n = Math.min(s.n, manifest.block_size - 8);
      const messages = fittingHistory([...api.history, { role: "user", content: text }], n);
      const dropped = api.history.length + 1 - messages.length;
      api.history = messages;
      bubble("user", text);
      $(".talk-message").value = "";
      const answer = bubble("assistant", "");
      const ids = promptIds(messages);
      const decoder = (newIds) => tokenizer.decode(newIds);
      api.stopRequested = false;
      const note = dropped ? ` (The ${dropped} oldest messages were dropped to fit the context.)` : "";
      setStatus(`Generating...${note}`, "generating");
      const result = await generateIds(ids, Math.min(n, manifest.block_size - ids.length), {
        ...s, stopIds: manifest.chat.stop.map((t) => tokenizer.specialTokens[t]).filter((id) => id !== undefined),
        // a character whose bytes are not all written yet is held back, as tinyllm.chat.stream_reply does
        stopAtFull: true, onToken: (newIds) => { answer.textContent = decoder(newIds).replace(/\uFFFD+$/, ""); },
      });
      if (mine !== conversation) return; // reset while it was written: nothing of it is kept
      const reply = tokenizer.decode(result.ids.slice(ids.length));
      answer.textContent = reply;
      api.lastReply = reply;
      api.lastResult = result;
      api.history.push({ role: "assistant", content: reply.trim() }); // as tinyllm.chat keeps it
      reportSpeed(result, note);
    } catch (err) {
      if (mine === conversation) setStatus(err.message || String(err), "error");
    } finally {
      setBusy(false);
    }
  }

  function reset() {
    conversation += 1;
    api.stopRequested = true; // a reply being written stops
    api.history = [];
    log.replaceChildren();
    setStatus("The conversation is reset: the model remembers nothing of it.", "ready");
  }

  async function onGenerate() {
    try {
      await api.ready;
      const text = $(".talk-prompt").value;
      output.textContent = ""; // an error below must not leave the previous text under it
      if (!text) throw new ReadableError("Write a prompt first: the model continues a text.");
      const ids = tokenizer.encode(text);
      const s = settings();
      output.textContent = text;
      setBusy(true);
      api.stopRequested = false;
      setStatus("Generating...", "generating");
      const result = await generateIds(ids, s.n, {
        ...s, onToken: (newIds) => { output.textContent = text + tokenizer.decode(newIds); },
      });
      api.lastResult = result;
      reportSpeed(result);
    } catch (err) {
      setStatus(err.message || String(err), "error");
    } finally {
      setBusy(false);
    }
  }

  api.ready = load().then(() => {
    api.encode = (text, allowedSpecial) => tokenizer.encode(text, allowedSpecial);
    api.decode = (ids) => tokenizer.decode(ids);
    api.promptIds = promptIds;
    api.lowerAsPython = (text) => lowerAsPython(text, manifest.chat ? manifest.chat.lowercase : {});
    api.manifest = manifest;
  });
  api.generateIds = generateIds;
  api.send = send;
  api.ready.catch((err) => {
    const message = err instanceof ReadableError ? err.message : `The model could not be started: ${err.message || err}`;
    setStatus(message, "error");
  });
  $(".talk-generate").addEventListener("click", onGenerate);
  $(".talk-chat form").addEventListener("submit", (event) => {
    event.preventDefault();
    send($(".talk-message").value);
  });
  $(".talk-reset").addEventListener("click", reset);
  for (const button of root.querySelectorAll(".talk-stop")) {
    button.addEventListener("click", () => { api.stopRequested = true; });
  }
  $(".talk-model").addEventListener("change", (event) => {
    const next = new URLSearchParams(location.search);
    next.set("model", event.target.value);
    location.search = next.toString();
  });
  $(".talk-precision").addEventListener("change", async (event) => {
    try {
      await loadSession(event.target.value);
    } catch (err) {
      setStatus(err.message || String(err), "error");
    }
  });
})();
