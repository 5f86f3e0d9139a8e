// "Talk to the model": the course's model, exported to ONNX, run in the reader's browser
// by onnxruntime-web (WebAssembly, one thread). No server: the page, the runtime and the
// model are static files of the built book.
//
// Each step runs the model on the last block_size ids (no KV cache: the model is tiny)
// and picks the next id from the last position's logits, as GPT.generate does in Python:
// greedy = the largest logit, the lowest id on a tie (torch.argmax); otherwise the logits
// are divided by the temperature, all but the top k are dropped (ties with the k-th
// largest are kept, as tinyllm.sampling.top_k_filter), and one id is drawn from the softmax.
//
// For tests and curious readers, window.tinyllmTalk exposes ready (a Promise), encode,
// decode and generateIds.
(function () {
  "use strict";
  const root = document.getElementById("tinyllm-talk");
  if (!root) return;
  const $ = (selector) => root.querySelector(selector);
  const status = $(".talk-status");
  const output = $(".talk-output");
  const api = {};
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

  async function load() {
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
    $(".talk-prompt").value = manifest.prompt;
    $(".talk-prompt-label").textContent = manifest.chat ? "Your message" : "Prompt (the model continues it)";
    await loadSession(params.get("precision") === "int8" ? "int8" : "fp32");
    $(".talk-precision").value = params.get("precision") === "int8" ? "int8" : "fp32";
  }

  // --- one step ----------------------------------------------------------------------

  async function nextLogits(ids) {
    const window_ = ids.slice(-manifest.block_size);
    const idx = new ort.Tensor("int64", BigInt64Array.from(window_, (i) => BigInt(i)), [1, window_.length]);
    const result = await session.run({ idx });
    const V = manifest.vocab_size;
    const T = window_.length;
    return result.logits.data.subarray((T - 1) * V, T * V);
  }

  function argmax(logits) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    return best; // strict > keeps the lowest id on a tie
  }

  function sample(logits, temperature, topK, random) {
    const scaled = Array.from(logits, (x) => x / temperature);
    if (topK > 0 && topK < scaled.length) {
      const kth = scaled.slice().sort((a, b) => b - a)[topK - 1];
      for (let i = 0; i < scaled.length; i++) if (scaled[i] < kth) scaled[i] = -Infinity;
    }
    const max = Math.max(...scaled);
    const weights = scaled.map((x) => Math.exp(x - max));
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

  // Append up to n ids to `ids`; onToken(newIds) is called after each one (streaming).
  async function generateIds(ids, n, options = {}) {
    await api.ready;
    const { greedy = false, temperature = 1.0, topK = 0, seed = null, stopId = null, onToken = null } = options;
    const random = seed === null ? Math.random : seeded(seed);
    const out = ids.slice();
    const start = performance.now();
    let made = 0;
    for (; made < n && !api.stopRequested; made++) {
      const logits = await nextLogits(out);
      const next = greedy ? argmax(logits) : sample(logits, temperature, topK, random);
      if (next === stopId) break;
      out.push(next);
      if (onToken) {
        onToken(out.slice(ids.length));
        await new Promise((resolve) => setTimeout(resolve, 0)); // let the page repaint
      }
    }
    const seconds = (performance.now() - start) / 1000;
    return { ids: out, tokens: made, seconds, tokensPerSecond: made / seconds };
  }

  // --- the form ------------------------------------------------------------------------

  function promptIds(text) {
    if (!manifest.chat) return tokenizer.encode(text);
    const c = manifest.chat;
    tokenizer.encode(text); // refuses a message that spells a special token such as <|im_end|>
    return tokenizer.encode(c.user_prefix + text + c.user_suffix + c.assistant_prefix, "all");
  }

  async function onGenerate() {
    const button = $(".talk-generate");
    try {
      const text = $(".talk-prompt").value;
      if (!text) throw new ReadableError("Write a prompt first: the model continues a text.");
      const ids = promptIds(text);
      const n = Math.max(1, Math.min(1000, parseInt($(".talk-tokens").value, 10) || 200));
      const greedy = $(".talk-greedy").checked;
      const temperature = Math.max(0.05, parseFloat($(".talk-temperature").value) || 1.0);
      const topK = Math.max(0, parseInt($(".talk-topk").value, 10) || 0);
      const stopId = manifest.chat ? tokenizer.specialTokens[manifest.chat.stop] : null;
      const shown = manifest.chat ? "" : text;
      output.textContent = shown;
      button.disabled = true;
      api.stopRequested = false;
      setStatus("Generating...", "generating");
      const result = await generateIds(ids, n, {
        greedy, temperature, topK, stopId,
        onToken: (newIds) => { output.textContent = shown + tokenizer.decode(newIds); },
      });
      api.lastResult = result;
      setStatus(`${result.tokens} tokens in ${result.seconds.toFixed(2)} s: ` +
        `${result.tokensPerSecond.toFixed(1)} tokens per second, in this browser.`, "done");
    } catch (err) {
      setStatus(err instanceof ReadableError || err instanceof Error ? err.message : String(err), "error");
    } finally {
      button.disabled = false;
    }
  }

  api.ready = load().then(() => {
    api.encode = (text) => tokenizer.encode(text);
    api.decode = (ids) => tokenizer.decode(ids);
    api.manifest = manifest;
  });
  api.generateIds = generateIds;
  api.ready.catch((err) => {
    const message = err instanceof ReadableError ? err.message : `The model could not be started: ${err.message || err}`;
    setStatus(message, "error");
  });
  $(".talk-generate").addEventListener("click", onGenerate);
  $(".talk-stop").addEventListener("click", () => { api.stopRequested = true; });
  $(".talk-precision").addEventListener("change", async (event) => {
    try {
      await loadSession(event.target.value);
    } catch (err) {
      setStatus(err.message || String(err), "error");
    }
  });
})();
