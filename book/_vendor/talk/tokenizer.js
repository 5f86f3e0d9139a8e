// The tokenizers of tinyllm in JavaScript: the same ids as the Python package.
//
// fromDict(state) reads the saved form that the Python tokenizer's to_dict() writes
// (the page's model/<name>.json holds it). tests/test_web_page.py checks that encode and
// decode here give exactly the ids and text of the Python package for a list of strings.
(function (root) {
  "use strict";

  // tinyllm.tokenizer.CharTokenizer: one id per character, in the order of `chars`.
  // Python iterates a str by code points; `for (const c of text)` does too (never by
  // UTF-16 units), so a character outside the Basic Multilingual Plane is one token here
  // as there, and positions in error messages agree.
  class CharTokenizer {
    constructor(state) {
      if (!state || state.type !== "char" || !Array.isArray(state.chars)) {
        throw new Error("not a character tokenizer (expected type 'char' and a list 'chars')");
      }
      this.itos = state.chars.slice();
      this.stoi = new Map(this.itos.map((c, i) => [c, i]));
      if (this.stoi.size !== this.itos.length) throw new Error("the vocabulary has repeated characters");
      this.specialTokens = {};
    }

    get vocabSize() {
      return this.itos.length;
    }

    encode(text) {
      const ids = [];
      let position = 0;
      for (const c of text) {
        const id = this.stoi.get(c);
        if (id === undefined) {
          throw new Error(
            `character '${c}' at position ${position} is not in the vocabulary ` +
            `of ${this.vocabSize} characters`);
        }
        ids.push(id);
        position += 1;
      }
      return ids;
    }

    decode(ids) {
      return ids.map((id) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
          throw new Error(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
        }
        return this.itos[id];
      }).join("");
    }
  }

  // tinyllm.tokenizer.BPETokenizer: byte-level BPE with a split pattern and special tokens.
  // state: {type: "bpe", pattern: <regex>, merges: [[a, b], ...] (pair k -> id 256 + k),
  //         special_tokens: {string: id}} (scripts/build_web_model.py writes it).
  // The Python patterns use possessive quantifiers (?+ ++), which JavaScript lacks; in
  // these patterns dropping them changes no match (the optional or repeated class cannot
  // also match what follows it), so `?+` -> `?` and `++` -> `+`. `(?i:...)` is a modifier
  // group, which Chromium 125+ supports; `\p{L}` needs the `u` flag.
  //
  // `\s` differs too: JavaScript's includes U+FEFF and leaves out U+0085 (NEL); Python's
  // `regex` module (Unicode White_Space) does the opposite. toJavaScriptPattern spells
  // `\s` and `\S` out as Python's set, so "\u0085" and "\ufeff" split as in Python.
  const PYTHON_SPACE = "\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

  // Python's split pattern as a JavaScript one: `\s`/`\S` spelled out as Python's set,
  // possessive quantifiers (`?+`, `++`, `*+`, `{m,n}+`) made greedy.
  function toJavaScriptPattern(pattern) {
    let out = "";
    let inClass = false;
    let afterQuantifier = false; // a `+` here makes the quantifier possessive
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i];
      if (c === "\\") {
        const next = pattern[i + 1];
        i += 1;
        if (next === "s") out += inClass ? PYTHON_SPACE : `[${PYTHON_SPACE}]`;
        else if (next === "S" && !inClass) out += `[^${PYTHON_SPACE}]`;
        else if (next === "S") throw new Error("the split pattern has \\S inside a character class");
        else out += c + next;
        afterQuantifier = false;
        continue;
      }
      if (inClass) {
        if (c === "]") inClass = false;
        out += c;
        continue;
      }
      const counted = c === "{" ? /^\{\d+(,\d*)?\}/.exec(pattern.slice(i)) : null;
      if (counted) {
        out += counted[0];
        i += counted[0].length - 1;
        afterQuantifier = true;
      } else if ("?*+".includes(c)) {
        if (afterQuantifier) {
          if (c === "?") out += c; // lazy: JavaScript has it
          afterQuantifier = false; // `+`: possessive, dropped
        } else {
          out += c;
          afterQuantifier = !(c === "?" && out.endsWith("(?")); // `(?` opens a group
        }
      } else {
        if (c === "[") inClass = true;
        out += c;
        afterQuantifier = false;
      }
    }
    return out;
  }

  class BPETokenizer {
    constructor(state) {
      this.split = new RegExp(toJavaScriptPattern(state.pattern), "gu");
      this.ranks = new Map(); // "a,b" -> merged id (= its rank: earlier merges first)
      this.vocab = [];
      for (let i = 0; i < 256; i++) this.vocab.push(Uint8Array.of(i));
      state.merges.forEach(([a, b], k) => {
        this.ranks.set(`${a},${b}`, 256 + k);
        const joined = new Uint8Array(this.vocab[a].length + this.vocab[b].length);
        joined.set(this.vocab[a]);
        joined.set(this.vocab[b], this.vocab[a].length);
        this.vocab.push(joined);
      });
      this.specialTokens = Object.assign({}, state.special_tokens || {});
      const encoder = new TextEncoder();
      for (const [token, id] of Object.entries(this.specialTokens)) this.vocab[id] = encoder.encode(token);
      const ordered = Object.keys(this.specialTokens).sort((x, y) => y.length - x.length);
      const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      this.specialSplit = ordered.length ? new RegExp(`(${ordered.map(escape).join("|")})`, "u") : null;
      this.encoder = encoder;
    }

    get vocabSize() {
      return this.vocab.length;
    }

    encodeChunk(chunk) {
      // Merge the pair with the lowest rank, leftmost first, until no pair is a merge:
      // the order training learned them in (as BPETokenizer._encode_chunk).
      const ids = Array.from(this.encoder.encode(chunk));
      for (;;) {
        let best = Infinity;
        let at = -1;
        for (let i = 0; i + 1 < ids.length; i++) {
          const rank = this.ranks.get(`${ids[i]},${ids[i + 1]}`);
          if (rank !== undefined && rank < best) {
            best = rank;
            at = i;
          }
        }
        if (at < 0) return ids;
        ids.splice(at, 2, best);
      }
    }

    encodeOrdinary(text) {
      const ids = [];
      for (const match of text.matchAll(this.split)) ids.push(...this.encodeChunk(match[0]));
      return ids;
    }

    // allowedSpecial as in Python: "all": special token strings become their ids;
    // "none": they are ordinary text; "none_raise" (the default): they are refused.
    encode(text, allowedSpecial = "none_raise") {
      if (!this.specialSplit || allowedSpecial === "none") return this.encodeOrdinary(text);
      const pieces = text.split(this.specialSplit);
      if (allowedSpecial !== "all") {
        for (let i = 1; i < pieces.length; i += 2) {
          throw new Error(`the text contains the special token '${pieces[i]}'`);
        }
        return this.encodeOrdinary(text);
      }
      const ids = [];
      pieces.forEach((piece, i) => {
        if (i % 2 === 1) ids.push(this.specialTokens[piece]);
        else if (piece) ids.push(...this.encodeOrdinary(piece));
      });
      return ids;
    }

    decode(ids) {
      const parts = ids.map((id) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.vocab.length || !this.vocab[id]) {
          throw new Error(`token id ${id} is outside the vocabulary (0..${this.vocab.length - 1})`);
        }
        return this.vocab[id];
      });
      const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let offset = 0;
      for (const p of parts) {
        bytes.set(p, offset);
        offset += p.length;
      }
      // invalid bytes -> U+FFFD; a leading U+FEFF is text, as in Python (a TextDecoder drops it by default)
      return new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(bytes);
    }
  }

  function fromDict(state) {
    if (state && state.type === "char") return new CharTokenizer(state);
    if (state && state.type === "bpe") return new BPETokenizer(state);
    throw new Error(`this page cannot read tokenizers of type ${JSON.stringify(state && state.type)}`);
  }

  root.tinyllmTokenizer = { CharTokenizer, BPETokenizer, fromDict, toJavaScriptPattern };
})(typeof window !== "undefined" ? window : globalThis);
